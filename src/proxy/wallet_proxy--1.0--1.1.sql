/* wallet_proxy--1.0--1.1.sql: the router of wallet 1.1, applied to a 1.0 router */

\echo Use "ALTER EXTENSION wallet_proxy UPDATE TO '1.1'" to load this file. \quit

/*
 * wallet_proxy--1.0.sql is released and never edited: a fresh CREATE
 * EXTENSION wallet_proxy runs it and then this file (there is no
 * wallet_proxy--1.1.sql), so a fresh 1.1 router and an upgraded one are built
 * by the same statements.
 *
 * The router offers every call of wallet 1.1 that concerns one customer or
 * one id, with the same name, arguments, defaults and result as on a shard:
 *
 *	- by customer, hashtext(customer) & (partitions - 1): wallet_hold (with
 *	  dimensions), wallet_authorize_hold, wallet_set_overdraft,
 *	  wallet_set_max_holds, wallet_set_alert, wallet_set_recharge,
 *	  wallet_limits, wallet_usage, the paged wallet_statement, wallet_grant
 *	  (with scope), wallet_available, wallet_credits;
 *	- by hold id, on the partition in its routing bits (wallet._route, as
 *	  wallet_capture of 1.0): wallet_capture_lines, wallet_extend_hold.
 *
 * wallet_outbox_claim is not routed: its SKIP LOCKED row locks last until the
 * claiming transaction ends, and a remote call through PL/Proxy commits (and
 * so unlocks) when it returns.  A listener claims on each shard directly, in
 * its own transaction there, and may acknowledge through the router
 * (wallet_outbox_ack routes by the row's id) or on the shard.
 *
 * The finance view wallet.grants shows each grant's scope, as on a shard.
 *
 * The shards must run wallet 1.1 before the router is updated: the changed
 * calls (wallet_hold, wallet_statement, wallet_grant) pass their new
 * arguments, and wallet.grants reads the scope, which a 1.0 shard does not
 * have.
 */

/* ------------------------------------------------------- holds, by customer */

/* wallet_hold gains dimensions (a hold reserves room under the caps they meet) */
DROP FUNCTION @extschema@.wallet_hold(text, text, numeric, text, interval);
CREATE FUNCTION @extschema@.wallet_hold(customer text, asset text, amount numeric,
	idempotency_key text, ttl interval DEFAULT '15 minutes', dimensions jsonb DEFAULT '{}')
RETURNS @extschema@.wallet_result AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_hold(text, text, numeric, text, interval, jsonb) IS
	'reserves value and spend-cap room before the work runs, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_authorize_hold(customer text, meter text, quantity numeric,
	idempotency_key text, dimensions jsonb DEFAULT '{}', ttl interval DEFAULT '15 minutes')
RETURNS @extschema@.wallet_result AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_authorize_hold(text, text, numeric, text, jsonb, interval) IS
	'prices an upper estimate of the usage and reserves it, on the customer''s shard';

/* ------------------------------------------------------ holds, by hold id */

CREATE FUNCTION wallet._capture_lines(route int, hold_id bigint, lines jsonb)
RETURNS SETOF @extschema@.wallet_result AS $$
	CLUSTER 'wallet_cluster';
	RUN ON route;
	SELECT r.* FROM @extschema@.wallet_capture_lines(hold_id, lines) r;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._capture_lines(int, bigint, jsonb) IS
	'wallet_capture_lines on the partition of route';

CREATE FUNCTION wallet._extend_hold(route int, hold_id bigint, ttl interval)
RETURNS @extschema@.wallet_result AS $$
	CLUSTER 'wallet_cluster';
	RUN ON route;
	SELECT r.* FROM @extschema@.wallet_extend_hold(hold_id, ttl) r;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._extend_hold(int, bigint, interval) IS
	'wallet_extend_hold on the partition of route';

/* the rows in line order, as the shard returned them (one remote call, one shard) */
CREATE FUNCTION @extschema@.wallet_capture_lines(hold_id bigint, lines jsonb)
RETURNS SETOF @extschema@.wallet_result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RETURN QUERY SELECT r.* FROM wallet._capture_lines(wallet._route('hold', hold_id), hold_id, lines) r;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_capture_lines(bigint, jsonb) IS
	'captures several meters of one hold at once, on the shard its id routes to';

CREATE FUNCTION @extschema@.wallet_extend_hold(hold_id bigint, ttl interval)
RETURNS @extschema@.wallet_result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RETURN wallet._extend_hold(wallet._route('hold', hold_id), hold_id, ttl);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_extend_hold(bigint, interval) IS
	'an open hold now expires at now() + ttl, on the shard its id routes to';

/* ------------------------------------------------- limits, by customer */

CREATE FUNCTION @extschema@.wallet_set_overdraft(customer text, asset text, overdraft_limit numeric)
RETURNS void AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_set_overdraft(text, text, numeric) IS
	'the overdraft limit of a wallet in one asset, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_set_max_holds(customer text, asset text, max_holds int)
RETURNS void AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_set_max_holds(text, text, int) IS
	'the cap on open holds of a wallet in one asset, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_set_alert(customer text, asset text, threshold numeric,
	enabled boolean DEFAULT true)
RETURNS void AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_set_alert(text, text, numeric, boolean) IS
	'a low-balance alert at threshold, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_set_recharge(customer text, asset text, threshold numeric,
	target numeric, max_per_month numeric DEFAULT NULL)
RETURNS void AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_set_recharge(text, text, numeric, numeric, numeric) IS
	'auto top-up below threshold to target, on the customer''s shard; null threshold removes it';

CREATE FUNCTION @extschema@.wallet_limits(customer text)
RETURNS TABLE (asset text, overdraft_limit numeric, max_holds int, alerts numeric[],
	recharge_threshold numeric, recharge_target numeric, recharge_max_per_month numeric) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_limits(text) IS
	'the limits of a wallet per asset, on the customer''s shard';

/* ------------------------------------------------- reading, by customer */

/* wallet_statement pages (after_line, max_lines) */
DROP FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz);
CREATE FUNCTION @extschema@.wallet_statement(customer text, since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT NULL, after_line bigint DEFAULT NULL, max_lines int DEFAULT NULL)
RETURNS TABLE (asset text, at timestamptz, kind text, description text, amount numeric,
	balance numeric, line_id bigint, grant_id bigint, event_id bigint, hold_id bigint) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz, bigint, int) IS
	'account statement per asset, paged, on the customer''s shard';

/* until defaults to the router's now(), the time of the router's transaction */
CREATE FUNCTION @extschema@.wallet_usage(customer text, since timestamptz, until timestamptz DEFAULT now(),
	bucket text DEFAULT 'day', group_by text DEFAULT 'meter')
RETURNS TABLE (bucket_start timestamptz, key text, asset text, events bigint, quantity numeric,
	amount numeric) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_usage(text, timestamptz, timestamptz, text, text) IS
	'usage per UTC hour, day or month and per meter or dimension value, on the customer''s shard';

/* ------------------------------------------------ scoped credits, by customer */

/* wallet_grant gains scope as its last argument (the 12-argument router function goes, as on a shard) */
DROP FUNCTION @extschema@.wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text,
	numeric, text, interval, numeric, jsonb);
CREATE FUNCTION @extschema@.wallet_grant(customer text, asset text, amount numeric,
	priority int DEFAULT 100, expires_at timestamptz DEFAULT NULL,
	effective_at timestamptz DEFAULT now(), category text DEFAULT 'paid',
	unit_revenue numeric DEFAULT NULL, external_ref text DEFAULT NULL,
	recurrence interval DEFAULT NULL, rollover_max numeric DEFAULT 0,
	metadata jsonb DEFAULT '{}', scope jsonb DEFAULT NULL)
RETURNS bigint AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text,
	numeric, text, interval, numeric, jsonb, jsonb) IS
	'adds a block of value, scoped or not, on the customer''s shard (external_ref is unique per customer)';

CREATE FUNCTION @extschema@.wallet_available(customer text, meter text, dimensions jsonb DEFAULT '{}')
RETURNS TABLE (asset text, available numeric) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_available(text, text, jsonb) IS
	'per asset, the value a debit of that meter with those dimensions sees now (not spend caps nor overdraft room), on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_credits(customer text)
RETURNS TABLE (grant_id bigint, asset text, category text, amount numeric, remaining numeric,
	reserved numeric, expires_at timestamptz, next_reset timestamptz, scope jsonb) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_credits(text) IS
	'the live grants with value left, in drawdown order, on the customer''s shard';

/* the grants of every shard, with their scope (the view is rebuilt over the new function) */
DROP VIEW wallet.grants;
DROP FUNCTION wallet.cluster_grants();
CREATE FUNCTION wallet.cluster_grants()
RETURNS TABLE (id bigint, customer text, asset text, category text, priority int, amount numeric,
	remaining numeric, unit_revenue numeric, effective_at timestamptz, expires_at timestamptz,
	voided_at timestamptz, recurrence interval, rollover_max numeric, external_ref text,
	metadata jsonb, created_at timestamptz, scope jsonb, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT g.id, g.customer, g.asset, g.category, g.priority, g.amount, g.remaining, g.unit_revenue,
		   g.effective_at, g.expires_at, g.voided_at, g.recurrence, g.rollover_max, g.external_ref,
		   g.metadata, g.created_at, g.scope, pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.grants g;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_grants() IS 'wallet.grants of every shard';

CREATE VIEW wallet.grants AS
SELECT id, customer, asset, category, priority, amount, remaining, unit_revenue, effective_at,
	   expires_at, voided_at, recurrence, rollover_max, external_ref, metadata, created_at, scope, shard
  FROM wallet.cluster_grants();
COMMENT ON VIEW wallet.grants IS 'grants of every shard, with the scope of each (null: serves every debit)';
REVOKE ALL ON wallet.grants FROM PUBLIC;
GRANT SELECT ON wallet.grants TO wallet_finance;

/* ------------------------------------------------- roles and privileges */

/*
 * Keep this section last.  As in 1.0: closed to PUBLIC, then opened to the
 * roles that may call the function on a shard (the router's functions run
 * with the caller's rights; each shard checks the call again).
 */
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN SELECT * FROM (VALUES
		/* hot path */
		('@extschema@.wallet_hold(text, text, numeric, text, interval, jsonb)', '{wallet_app}'),
		('@extschema@.wallet_authorize_hold(text, text, numeric, text, jsonb, interval)', '{wallet_app}'),
		('@extschema@.wallet_capture_lines(bigint, jsonb)', '{wallet_app}'),
		('wallet._capture_lines(int, bigint, jsonb)', '{wallet_app}'),
		('@extschema@.wallet_extend_hold(bigint, interval)', '{wallet_app}'),
		('wallet._extend_hold(int, bigint, interval)', '{wallet_app}'),
		/* reading */
		('@extschema@.wallet_statement(text, timestamptz, timestamptz, bigint, int)', '{wallet_app,wallet_finance,wallet_admin}'),
		('@extschema@.wallet_usage(text, timestamptz, timestamptz, text, text)', '{wallet_app,wallet_finance,wallet_admin}'),
		('@extschema@.wallet_limits(text)', '{wallet_app,wallet_finance,wallet_admin}'),
		('@extschema@.wallet_available(text, text, jsonb)', '{wallet_app,wallet_finance,wallet_admin}'),
		('@extschema@.wallet_credits(text)', '{wallet_app,wallet_finance,wallet_admin}'),
		('wallet.cluster_grants()', '{wallet_finance}'),
		/* configuration */
		('@extschema@.wallet_set_overdraft(text, text, numeric)', '{wallet_admin}'),
		('@extschema@.wallet_set_max_holds(text, text, int)', '{wallet_admin}'),
		('@extschema@.wallet_set_alert(text, text, numeric, boolean)', '{wallet_admin}'),
		('@extschema@.wallet_set_recharge(text, text, numeric, numeric, numeric)', '{wallet_admin}'),
		('@extschema@.wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text, numeric, text, interval, numeric, jsonb, jsonb)', '{wallet_admin}')
	) AS v(fn, roles)
	LOOP
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', g.fn);
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', g.fn,
			(SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r), ', ') FROM pg_catalog.unnest(g.roles::text[]) r));
	END LOOP;
END
$$;

/* ------------------------------------------------------- routing by id */

/*
 * An id made before its database became a shard is looked for on every
 * shard by wallet_id_route (wallet 1.1), which runs with the owner's rights:
 * 1.0's router ran wallet._id_route there as the calling role, to which a
 * shard opens neither, so wallet_app and wallet_admin got 42501 for every
 * such id (test/scripts/scaleout_roles.sh).
 */
CREATE OR REPLACE FUNCTION wallet._route_all(kind text, id bigint)
RETURNS SETOF int AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT @extschema@.wallet_id_route(kind, id) AS route;
$$ LANGUAGE plproxy;

/* ---------------------------------------------------------------- batches */

/*
 * A batch over wallet_ingest's limit goes whole to one shard, which refuses it
 * (22023) as one database does: split, each shard's share was under the limit,
 * and the shares commit on their own.
 */
CREATE OR REPLACE FUNCTION @extschema@.wallet_ingest(events jsonb)
RETURNS TABLE (idx int, approved boolean, replayed boolean, reason text, error text,
	event_id bigint, asset text, amount numeric, balance numeric)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF events IS NULL OR jsonb_typeof(events) <> 'array' OR jsonb_array_length(events) = 0
	   OR jsonb_array_length(events) > 100000 THEN
		/* nothing to split: one shard answers (or reports the error) */
		RETURN QUERY SELECT o.* FROM wallet._ingest_one(0, events) o;
		RETURN;
	END IF;
	RETURN QUERY
	SELECT s.* FROM wallet._ingest_split(
		ARRAY(SELECT hashtext(coalesce(e.value ->> 'customer', '') COLLATE "C")
				FROM jsonb_array_elements(events) WITH ORDINALITY e ORDER BY e.ordinality),
		ARRAY(SELECT e.value FROM jsonb_array_elements(events) WITH ORDINALITY e ORDER BY e.ordinality),
		ARRAY(SELECT (e.ordinality - 1)::int
				FROM jsonb_array_elements(events) WITH ORDINALITY e ORDER BY e.ordinality)) s
	ORDER BY s.idx;
END
$$;
