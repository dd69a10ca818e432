/* wallet_proxy--1.0.sql: the router of a scaled-out wallet */

\echo Use "CREATE EXTENSION wallet_proxy" to load this file. \quit

/*
 * The router database has this extension instead of wallet.  It has the same
 * functions, with the same arguments and results, as wallet; each one sends
 * the call with PL/Proxy to the shard (a database with the wallet extension
 * and the settings wallet.shard, wallet.shards) that owns the customer:
 *
 *	- a call that names a customer goes to partition
 *	  hashtext(customer) & (partitions - 1);
 *	- a call that names only an id (a hold, an event, a grant, an outbox row)
 *	  goes to partition (id >> 48) & (partitions - 1): a shard's ids carry
 *	  their customer's hashtext & 32767 in bits 48..62, so this is the same
 *	  partition, without a lookup table (an id without the bits, made before
 *	  its database became a shard, is looked for on every shard);
 *	- configuration every shard needs (assets, prices) goes to all shards;
 *	- wallet_verify, wallet_sweep and the finance views run on all shards and
 *	  return the union (sums, where a view sums across customers).
 *
 * The cluster is PL/Proxy's SQL/MED server wallet_cluster, which the
 * administrator creates (it is configuration, not part of the extension):
 *
 *	CREATE SERVER wallet_cluster FOREIGN DATA WRAPPER plproxy
 *		OPTIONS (p0 'host=... dbname=...', p1 'host=... dbname=...');
 *	CREATE USER MAPPING FOR PUBLIC SERVER wallet_cluster;
 *
 * Partition pk must be the database with wallet.shard = k (for k below
 * wallet.shards; partitions above repeat the shard that owns them).  Install
 * wallet_proxy in the same schema as wallet on the shards (public by default):
 * the remote calls name the functions in it.
 *
 * Each remote call commits on its own on the shard (PL/Proxy autocommit):
 * rolling back the caller's transaction on the router does not undo it.
 */

CREATE SCHEMA IF NOT EXISTS wallet;
COMMENT ON SCHEMA wallet IS 'wallet router: finance views over all shards and internal helpers';

CREATE TYPE @extschema@.wallet_result AS (
	approved	boolean,
	replayed	boolean,
	reason		text,
	event_id	bigint,
	hold_id		bigint,
	asset		text,
	amount		numeric,
	balance		numeric
);
COMMENT ON TYPE @extschema@.wallet_result IS 'outcome of a hot-path call; a decline is a result, not an error';

/* ------------------------------------------------ configuration: all shards */

CREATE FUNCTION wallet._create_asset_all(code text, scale int, unit_value numeric, description text)
RETURNS SETOF int AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT 1 AS n FROM @extschema@.wallet_create_asset(code, scale, unit_value, description);
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._create_asset_all(text, int, numeric, text) IS 'wallet_create_asset on every shard';

CREATE FUNCTION @extschema@.wallet_create_asset(code text, scale int DEFAULT 2,
	unit_value numeric DEFAULT NULL, description text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM count(*) FROM wallet._create_asset_all(code, scale, unit_value, description);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_create_asset(text, int, numeric, text) IS
	'creates (or updates) an asset on every shard';

CREATE FUNCTION wallet._set_price_all(meter text, asset text, rule jsonb, effective_at timestamptz,
	plan text, customer text)
RETURNS SETOF bigint AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT @extschema@.wallet_set_price(meter, asset, rule, effective_at, plan, customer) AS price_id;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._set_price_all(text, text, jsonb, timestamptz, text, text) IS
	'wallet_set_price on every shard';

/*
 * Prices go to every shard, a customer's own price too (it is inert where the
 * customer does not live), so the shards' price ids advance together: set
 * through the router only, a price has the same id everywhere.
 */
CREATE FUNCTION @extschema@.wallet_set_price(meter text, asset text, rule jsonb,
	effective_at timestamptz DEFAULT now(), plan text DEFAULT NULL, customer text DEFAULT NULL)
RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT min(p) FROM wallet._set_price_all(meter, asset, rule, effective_at, plan, customer) p;
$$;
COMMENT ON FUNCTION @extschema@.wallet_set_price(text, text, jsonb, timestamptz, text, text) IS
	'adds a price version on every shard; returns its id (the lowest, if the shards disagree)';

/* ------------------------------------------ configuration: the customer's shard */

CREATE FUNCTION @extschema@.wallet_create(customer text, metadata jsonb DEFAULT '{}')
RETURNS bigint AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_create(text, jsonb) IS
	'the wallet id of a customer, on its shard; idempotent';

CREATE FUNCTION @extschema@.wallet_set_limit(customer text, asset text, overdraft numeric DEFAULT 0,
	low_balance numeric DEFAULT NULL, max_holds int DEFAULT NULL)
RETURNS void AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_set_limit(text, text, numeric, numeric, int) IS
	'overdraft limit, low-balance threshold and open-hold cap, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_set_status(customer text, status text)
RETURNS void AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_set_status(text, text) IS
	'active, frozen or closed, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_assign_plan(customer text, plan text,
	effective_at timestamptz DEFAULT now())
RETURNS void AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_assign_plan(text, text, timestamptz) IS
	'puts a customer on a plan, on its shard';

CREATE FUNCTION @extschema@.wallet_set_cap(customer text, asset text, amount numeric, period text,
	dimension text DEFAULT NULL)
RETURNS void AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_set_cap(text, text, numeric, text, text) IS
	'a spend cap per period, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_grant(customer text, asset text, amount numeric,
	priority int DEFAULT 100, expires_at timestamptz DEFAULT NULL,
	effective_at timestamptz DEFAULT now(), category text DEFAULT 'paid',
	unit_revenue numeric DEFAULT NULL, external_ref text DEFAULT NULL,
	recurrence interval DEFAULT NULL, rollover_max numeric DEFAULT 0,
	metadata jsonb DEFAULT '{}')
RETURNS bigint AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text,
	numeric, text, interval, numeric, jsonb) IS
	'adds a block of value, on the customer''s shard (external_ref is unique per shard)';

/* ------------------------------------------------------ routing by id */

CREATE FUNCTION wallet._route_all(kind text, id bigint)
RETURNS SETOF int AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT wallet._id_route(kind, id) AS route;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._route_all(text, bigint) IS
	'every shard''s answer to: whose is this id (the customer''s routing bits, or null)';

/*
 * The routing hash of an id: its bits 48..62, its customer's routing bits.
 * An id without them (made before its database became a shard) is looked for
 * on every shard; not found, the call goes to partition 0, which reports it
 * missing.
 */
CREATE FUNCTION wallet._route(kind text, id bigint) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF id IS NULL OR id >> 48 <> 0 THEN
		RETURN coalesce(id >> 48, 0)::int;
	END IF;
	RETURN coalesce((SELECT min(r) FROM wallet._route_all(kind, id) r), 0);
END
$$;
COMMENT ON FUNCTION wallet._route(text, bigint) IS
	'the routing hash of a hold, event, grant or outbox id: its routing bits, or found on every shard';

/* the id-routed calls, on the partition of a routing hash */

CREATE FUNCTION wallet._capture(route int, hold_id bigint, meter text, quantity numeric,
	dimensions jsonb, cost numeric)
RETURNS @extschema@.wallet_result AS $$
	CLUSTER 'wallet_cluster';
	RUN ON route;
	SELECT r.* FROM @extschema@.wallet_capture(hold_id, meter, quantity, dimensions, cost) r;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._capture(int, bigint, text, numeric, jsonb, numeric) IS
	'wallet_capture on the partition of route';

CREATE FUNCTION wallet._release(route int, hold_id bigint)
RETURNS @extschema@.wallet_result AS $$
	CLUSTER 'wallet_cluster';
	RUN ON route;
	SELECT r.* FROM @extschema@.wallet_release(hold_id) r;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._release(int, bigint) IS 'wallet_release on the partition of route';

CREATE FUNCTION wallet._refund(route int, event_id bigint, amount numeric, reason text)
RETURNS @extschema@.wallet_result AS $$
	CLUSTER 'wallet_cluster';
	RUN ON route;
	SELECT r.* FROM @extschema@.wallet_refund(event_id, amount, reason) r;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._refund(int, bigint, numeric, text) IS 'wallet_refund on the partition of route';

CREATE FUNCTION wallet._void_grant(route int, grant_id bigint, reason text)
RETURNS numeric AS $$
	CLUSTER 'wallet_cluster';
	RUN ON route;
	SELECT @extschema@.wallet_void_grant(grant_id, reason) AS voided;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._void_grant(int, bigint, text) IS 'wallet_void_grant on the partition of route';

CREATE FUNCTION wallet._outbox_ack(route int, id bigint)
RETURNS void AS $$
	CLUSTER 'wallet_cluster';
	RUN ON route;
	SELECT @extschema@.wallet_outbox_ack(id) AS acked;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._outbox_ack(int, bigint) IS 'wallet_outbox_ack on the partition of route';

CREATE FUNCTION wallet._record_cost(route int, event_id bigint, cost numeric, dimensions jsonb)
RETURNS void AS $$
	CLUSTER 'wallet_cluster';
	RUN ON route;
	SELECT @extschema@.wallet_record_cost(event_id, cost, dimensions) AS recorded;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._record_cost(int, bigint, numeric, jsonb) IS 'wallet_record_cost on the partition of route';

/* ------------------------------------------------------------- hot path */

CREATE FUNCTION @extschema@.wallet_debit(customer text, asset text, amount numeric,
	idempotency_key text, dimensions jsonb DEFAULT '{}', cost numeric DEFAULT NULL)
RETURNS @extschema@.wallet_result AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_debit(text, text, numeric, text, jsonb, numeric) IS
	'debits a known amount, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_authorize_debit(customer text, meter text, quantity numeric,
	idempotency_key text, dimensions jsonb DEFAULT '{}', occurred_at timestamptz DEFAULT now(),
	cost numeric DEFAULT NULL)
RETURNS @extschema@.wallet_result AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_authorize_debit(text, text, numeric, text, jsonb, timestamptz, numeric) IS
	'prices, checks and debits usage in one step, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_hold(customer text, asset text, amount numeric,
	idempotency_key text, ttl interval DEFAULT '15 minutes')
RETURNS @extschema@.wallet_result AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_hold(text, text, numeric, text, interval) IS
	'reserves value before the work runs, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_capture(hold_id bigint, meter text, quantity numeric,
	dimensions jsonb DEFAULT '{}', cost numeric DEFAULT NULL)
RETURNS @extschema@.wallet_result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RETURN wallet._capture(wallet._route('hold', hold_id), hold_id, meter, quantity, dimensions, cost);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_capture(bigint, text, numeric, jsonb, numeric) IS
	'captures a hold, on the shard its id routes to';

CREATE FUNCTION @extschema@.wallet_release(hold_id bigint)
RETURNS @extschema@.wallet_result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RETURN wallet._release(wallet._route('hold', hold_id), hold_id);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_release(bigint) IS
	'frees a hold without charging, on the shard its id routes to';



/* one partition's share of a batch: the elements, and where they were in the batch */
CREATE FUNCTION wallet._ingest_split(hashes int[], elements jsonb[], positions int[])
RETURNS TABLE (idx int, approved boolean, replayed boolean, reason text, error text,
	event_id bigint, asset text, amount numeric, balance numeric) AS $$
	CLUSTER 'wallet_cluster';
	SPLIT hashes, elements, positions;
	RUN ON hashes;
	SELECT (positions)[r.idx + 1] AS idx, r.approved, r.replayed, r.reason, r.error, r.event_id,
		   r.asset, r.amount, r.balance
	  FROM @extschema@.wallet_ingest(pg_catalog.to_jsonb(elements)) r;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._ingest_split(int[], jsonb[], int[]) IS
	'wallet_ingest of the elements of a batch on their customers'' shards, idx mapped back to the batch';

CREATE FUNCTION wallet._ingest_one(hash int, events jsonb)
RETURNS TABLE (idx int, approved boolean, replayed boolean, reason text, error text,
	event_id bigint, asset text, amount numeric, balance numeric) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON hash;
	SELECT r.idx, r.approved, r.replayed, r.reason, r.error, r.event_id, r.asset, r.amount, r.balance
	  FROM @extschema@.wallet_ingest(events) r;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._ingest_one(int, jsonb) IS 'wallet_ingest of a whole batch on one shard';

/*
 * A batch is split by customer: each shard gets its customers' elements in
 * batch order (so duplicate keys replay as they would in one database), and
 * the rows come back in batch order.  Each shard's share commits on its own.
 */
CREATE FUNCTION @extschema@.wallet_ingest(events jsonb)
RETURNS TABLE (idx int, approved boolean, replayed boolean, reason text, error text,
	event_id bigint, asset text, amount numeric, balance numeric)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF events IS NULL OR jsonb_typeof(events) <> 'array' OR jsonb_array_length(events) = 0 THEN
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
COMMENT ON FUNCTION @extschema@.wallet_ingest(jsonb) IS
	'a batch of authorized debits, each on its customer''s shard; rows in batch order';

/* -------------------------------------------------------------- reading */

CREATE FUNCTION @extschema@.wallet_quote(customer text, meter text, quantity numeric,
	dimensions jsonb DEFAULT '{}', occurred_at timestamptz DEFAULT now())
RETURNS TABLE (asset text, amount numeric, price_id bigint, balance numeric, would_approve boolean) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_quote(text, text, numeric, jsonb, timestamptz) IS
	'what wallet_authorize_debit would charge, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_balance(customer text, asset text)
RETURNS numeric AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_balance(text, text) IS 'available now, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_balances(customer text)
RETURNS TABLE (asset text, available numeric, held numeric, granted numeric, overdraft numeric) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_balances(text) IS 'every asset of a wallet, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_statement(customer text, since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT NULL)
RETURNS TABLE (asset text, at timestamptz, kind text, description text, amount numeric,
	balance numeric, line_id bigint, grant_id bigint, event_id bigint, hold_id bigint) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz) IS
	'account statement per asset, on the customer''s shard';

CREATE FUNCTION @extschema@.wallet_caps(customer text)
RETURNS TABLE (asset text, period text, dimension text, dim_value text, cap numeric, spent numeric,
	remaining numeric, period_start timestamptz, period_end timestamptz) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON pg_catalog.hashtext(coalesce(customer, '') COLLATE "C");
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_caps(text) IS 'spend caps and what is spent, on the customer''s shard';

/* ------------------------------------------------- corrections and upkeep */

CREATE FUNCTION @extschema@.wallet_refund(event_id bigint, amount numeric DEFAULT NULL,
	reason text DEFAULT NULL)
RETURNS @extschema@.wallet_result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RETURN wallet._refund(wallet._route('event', event_id), event_id, amount, reason);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_refund(bigint, numeric, text) IS
	'gives back (part of) a debit, on the shard the event id routes to';

CREATE FUNCTION @extschema@.wallet_void_grant(grant_id bigint, reason text DEFAULT NULL)
RETURNS numeric
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RETURN wallet._void_grant(wallet._route('grant', grant_id), grant_id, reason);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_void_grant(bigint, text) IS
	'voids a grant, on the shard the grant id routes to';

CREATE FUNCTION @extschema@.wallet_outbox_ack(id bigint)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM wallet._outbox_ack(wallet._route('outbox', id), id);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_outbox_ack(bigint) IS
	'marks an outbox row handled, on the shard its id routes to';

CREATE FUNCTION @extschema@.wallet_record_cost(event_id bigint, cost numeric, dimensions jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM wallet._record_cost(wallet._route('event', event_id), event_id, cost, dimensions);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_record_cost(bigint, numeric, jsonb) IS
	'sets what serving an event cost, on the shard the event id routes to';




CREATE FUNCTION wallet._sweep_all(as_of timestamptz)
RETURNS TABLE (action text, count bigint) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT s.action, s.count FROM @extschema@.wallet_sweep(as_of) s;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet._sweep_all(timestamptz) IS 'wallet_sweep on every shard, a row per shard and action';

CREATE FUNCTION @extschema@.wallet_sweep(as_of timestamptz DEFAULT now())
RETURNS TABLE (action text, count bigint)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT s.action, sum(s.count)::bigint FROM wallet._sweep_all(as_of) s GROUP BY s.action ORDER BY s.action;
$$;
COMMENT ON FUNCTION @extschema@.wallet_sweep(timestamptz) IS
	'records what time has done, on every shard; counts summed over the shards';

/*
 * Every shard's invariants, and that its customers are its own
 * (wallet_shard_check); the detail names the shard.
 */
CREATE FUNCTION @extschema@.wallet_verify()
RETURNS TABLE (problem text, detail text) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT v.problem, pg_catalog.format('shard %s: %s', pg_catalog.current_setting('wallet.shard', true),
										v.detail) AS detail
	  FROM (SELECT * FROM @extschema@.wallet_verify()
			UNION ALL
			SELECT * FROM @extschema@.wallet_shard_check()) v;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION @extschema@.wallet_verify() IS
	'every invariant of every shard, and customers on a shard that does not own them; no rows means consistent';

/* ------------------------------------------------- finance: all shards */

/*
 * wallet.cluster_X() reads view wallet.X of every shard (the union, with the
 * shard's number); the views of the contract's names on the router read
 * those, and sum where a view sums across customers, so finance queries run
 * unchanged.  A customer lives on one shard: per-customer rows are the union.
 */
CREATE FUNCTION wallet.cluster_balances()
RETURNS TABLE (customer text, asset text, available numeric, held numeric, granted numeric,
	overdraft numeric, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT b.customer, b.asset, b.available, b.held, b.granted, b.overdraft,
		   pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.balances b;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_balances() IS 'wallet.balances of every shard';

CREATE FUNCTION wallet.cluster_grants()
RETURNS TABLE (id bigint, customer text, asset text, category text, priority int, amount numeric,
	remaining numeric, unit_revenue numeric, effective_at timestamptz, expires_at timestamptz,
	voided_at timestamptz, recurrence interval, rollover_max numeric, external_ref text,
	metadata jsonb, created_at timestamptz, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT g.id, g.customer, g.asset, g.category, g.priority, g.amount, g.remaining, g.unit_revenue,
		   g.effective_at, g.expires_at, g.voided_at, g.recurrence, g.rollover_max, g.external_ref,
		   g.metadata, g.created_at, pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.grants g;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_grants() IS 'wallet.grants of every shard';

CREATE FUNCTION wallet.cluster_events()
RETURNS TABLE (id bigint, customer text, meter text, quantity numeric, dimensions jsonb,
	occurred_at timestamptz, recorded_at timestamptz, idempotency_key text, asset text,
	amount numeric, price_id bigint, cost numeric, revenue numeric, hold_id bigint,
	refunded numeric, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT e.id, e.customer, e.meter, e.quantity, e.dimensions, e.occurred_at, e.recorded_at,
		   e.idempotency_key, e.asset, e.amount, e.price_id, e.cost, e.revenue, e.hold_id, e.refunded,
		   pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.events e;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_events() IS 'wallet.events of every shard';

CREATE FUNCTION wallet.cluster_ledger()
RETURNS TABLE (id bigint, at timestamptz, customer text, asset text, grant_id bigint, event_id bigint,
	hold_id bigint, kind text, amount numeric, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT l.id, l.at, l.customer, l.asset, l.grant_id, l.event_id, l.hold_id, l.kind, l.amount,
		   pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.ledger l;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_ledger() IS 'wallet.ledger of every shard (line ids are unique per shard)';

CREATE FUNCTION wallet.cluster_revenue_lines()
RETURNS TABLE (id bigint, at timestamptz, day date, customer text, asset text, grant_id bigint,
	event_id bigint, kind text, category text, amount numeric, sold numeric, recognized numeric,
	breakage numeric, promotional numeric, bundled numeric, deferred numeric, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT r.id, r.at, r.day, r.customer, r.asset, r.grant_id, r.event_id, r.kind, r.category,
		   r.amount, r.sold, r.recognized, r.breakage, r.promotional, r.bundled, r.deferred,
		   pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.revenue_lines r;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_revenue_lines() IS 'wallet.revenue_lines of every shard';

CREATE FUNCTION wallet.cluster_revenue()
RETURNS TABLE (day date, asset text, recognized numeric, breakage numeric, promotional numeric,
	bundled numeric, sold numeric, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT r.day, r.asset, r.recognized, r.breakage, r.promotional, r.bundled, r.sold,
		   pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.revenue r;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_revenue() IS 'wallet.revenue of every shard, a row per shard, day and asset';

CREATE FUNCTION wallet.cluster_deferred_revenue()
RETURNS TABLE (customer text, asset text, amount numeric, remaining numeric, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT d.customer, d.asset, d.amount, d.remaining,
		   pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.deferred_revenue d;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_deferred_revenue() IS 'wallet.deferred_revenue of every shard';

CREATE FUNCTION wallet.cluster_customer_margin()
RETURNS TABLE (customer text, day date, revenue numeric, cost numeric, margin numeric,
	breakage numeric, promotional numeric, bundled numeric, events bigint, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT m.customer, m.day, m.revenue, m.cost, m.margin, m.breakage, m.promotional, m.bundled,
		   m.events, pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.customer_margin m;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_customer_margin() IS 'wallet.customer_margin of every shard';

CREATE FUNCTION wallet.cluster_conservation()
RETURNS TABLE (customer text, asset text, granted numeric, reset numeric, available numeric,
	held numeric, overdraft numeric, debited_net numeric, expired numeric, voided numeric,
	difference numeric, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT c.customer, c.asset, c.granted, c.reset, c.available, c.held, c.overdraft, c.debited_net,
		   c.expired, c.voided, c.difference, pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.conservation c;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_conservation() IS 'wallet.conservation of every shard';

CREATE FUNCTION wallet.cluster_margin_by_dimension(key text, since timestamptz, until timestamptz)
RETURNS TABLE (value text, revenue numeric, cost numeric, margin numeric, events bigint, shard int) AS $$
	CLUSTER 'wallet_cluster';
	RUN ON ALL;
	SELECT m.value, m.revenue, m.cost, m.margin, m.events,
		   pg_catalog.current_setting('wallet.shard', true)::int AS shard
	  FROM wallet.margin_by_dimension(key, since, until) m;
$$ LANGUAGE plproxy;
COMMENT ON FUNCTION wallet.cluster_margin_by_dimension(text, timestamptz, timestamptz) IS
	'wallet.margin_by_dimension of every shard, a row per shard and value';

CREATE FUNCTION wallet.margin_by_dimension(key text, since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT 'infinity')
RETURNS TABLE (value text, revenue numeric, cost numeric, margin numeric, events bigint)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT m.value, sum(m.revenue), sum(m.cost), sum(m.margin), sum(m.events)::bigint
	  FROM wallet.cluster_margin_by_dimension(key, since, until) m
	 GROUP BY m.value
	 ORDER BY 4, 1 NULLS LAST;
$$;
COMMENT ON FUNCTION wallet.margin_by_dimension(text, timestamptz, timestamptz) IS
	'margin cut by one dimension of the events, summed over the shards; biggest losses first';

/* the finance views under their own names */

CREATE VIEW wallet.balances AS
SELECT customer, asset, available, held, granted, overdraft, shard FROM wallet.cluster_balances();
COMMENT ON VIEW wallet.balances IS 'every wallet and asset of every shard';

CREATE VIEW wallet.grants AS
SELECT id, customer, asset, category, priority, amount, remaining, unit_revenue, effective_at,
	   expires_at, voided_at, recurrence, rollover_max, external_ref, metadata, created_at, shard
  FROM wallet.cluster_grants();
COMMENT ON VIEW wallet.grants IS 'grants of every shard';

CREATE VIEW wallet.events AS
SELECT id, customer, meter, quantity, dimensions, occurred_at, recorded_at, idempotency_key, asset,
	   amount, price_id, cost, revenue, hold_id, refunded, shard
  FROM wallet.cluster_events();
COMMENT ON VIEW wallet.events IS 'priced, debited usage events of every shard';

CREATE VIEW wallet.ledger AS
SELECT id, at, customer, asset, grant_id, event_id, hold_id, kind, amount, shard
  FROM wallet.cluster_ledger();
COMMENT ON VIEW wallet.ledger IS 'ledger lines of every shard; (shard, id) identifies a line';

CREATE VIEW wallet.revenue_lines AS
SELECT id, at, day, customer, asset, grant_id, event_id, kind, category, amount, sold, recognized,
	   breakage, promotional, bundled, deferred, shard
  FROM wallet.cluster_revenue_lines();
COMMENT ON VIEW wallet.revenue_lines IS 'ledger lines of every shard valued in the reporting currency';

CREATE VIEW wallet.revenue AS
SELECT day, asset, sum(recognized) AS recognized, sum(breakage) AS breakage,
	   sum(promotional) AS promotional, sum(bundled) AS bundled, sum(sold) AS sold
  FROM wallet.cluster_revenue()
 GROUP BY day, asset
 ORDER BY day, asset;
COMMENT ON VIEW wallet.revenue IS 'revenue per UTC day and asset, summed over the shards';

CREATE VIEW wallet.deferred_revenue AS
SELECT customer, asset, amount, remaining FROM wallet.cluster_deferred_revenue()
 ORDER BY amount DESC, customer, asset;
COMMENT ON VIEW wallet.deferred_revenue IS 'what live paid grants still hold, per customer and asset, of every shard';

CREATE VIEW wallet.customer_margin AS
SELECT customer, day, revenue, cost, margin, breakage, promotional, bundled, events
  FROM wallet.cluster_customer_margin()
 ORDER BY margin, day, customer;
COMMENT ON VIEW wallet.customer_margin IS 'revenue, cost and margin per customer and UTC day, of every shard';

CREATE VIEW wallet.unprofitable_customers AS
SELECT m.customer, sum(m.revenue) AS revenue, sum(m.cost) AS cost, sum(m.margin) AS margin,
	   sum(m.promotional) AS promotional, sum(m.events) AS events,
	   min(m.day) AS first_day, max(m.day) AS last_day
  FROM wallet.customer_margin m
 GROUP BY m.customer
HAVING sum(m.margin) < 0
 ORDER BY margin, customer;
COMMENT ON VIEW wallet.unprofitable_customers IS 'customers of every shard with a negative margin over all time';

CREATE VIEW wallet.conservation AS
SELECT customer, asset, granted, reset, available, held, overdraft, debited_net, expired, voided,
	   difference, shard
  FROM wallet.cluster_conservation()
 ORDER BY customer, asset;
COMMENT ON VIEW wallet.conservation IS 'conservation per customer and asset, of every shard; difference is 0';

/* ------------------------------------------------- roles and privileges */

/*
 * Keep this section last.  The roles of the wallet extension, with the same
 * rights on the router: wallet_app the hot path and reading functions,
 * wallet_finance the views and reading functions, wallet_admin configuration,
 * corrections and upkeep.  PUBLIC gets nothing.  The router's functions run
 * with the caller's rights (not SECURITY DEFINER): PL/Proxy connects to the
 * shards as the calling role, so each shard checks the call again.  The
 * roles also need USAGE on server wallet_cluster, which the administrator
 * grants once the server exists.
 */
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM (VALUES
		('wallet_app', 'wallet: the application''s hot path and reading functions'),
		('wallet_finance', 'wallet: reads the ledger, the finance views and every table'),
		('wallet_admin', 'wallet: configuration, grants, refunds, voids, costs and the sweep')) AS v(name, note)
	LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r.name) THEN
			BEGIN
				EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r.name);
				EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', r.name, r.note);
			EXCEPTION WHEN duplicate_object OR unique_violation THEN
				NULL;
			END;
		END IF;
	END LOOP;
END
$$;

REVOKE ALL ON SCHEMA wallet FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA wallet FROM PUBLIC;
REVOKE ALL ON TYPE @extschema@.wallet_result FROM PUBLIC;
GRANT USAGE ON SCHEMA wallet TO wallet_app, wallet_finance, wallet_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA wallet TO wallet_finance;
GRANT USAGE ON TYPE @extschema@.wallet_result TO wallet_app, wallet_finance, wallet_admin;

/* every function of the extension: closed to PUBLIC, then opened role by role */
DO $$
DECLARE
	f record;
	g record;
BEGIN
	FOR f IN
		SELECT p.oid::pg_catalog.regprocedure AS fn
		  FROM pg_catalog.pg_depend d
		  JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.objid
		 WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
		   AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
		   AND d.deptype OPERATOR(pg_catalog.=) 'e'
		   AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension e
												   WHERE e.extname OPERATOR(pg_catalog.=) 'wallet_proxy')
	LOOP
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.fn);
	END LOOP;

	FOR g IN SELECT * FROM (VALUES
		/* hot path */
		('@extschema@.wallet_authorize_debit(text, text, numeric, text, jsonb, timestamptz, numeric)', '{wallet_app}'),
		('@extschema@.wallet_debit(text, text, numeric, text, jsonb, numeric)', '{wallet_app}'),
		('@extschema@.wallet_hold(text, text, numeric, text, interval)', '{wallet_app}'),
		('@extschema@.wallet_capture(bigint, text, numeric, jsonb, numeric)', '{wallet_app}'),
		('wallet._capture(int, bigint, text, numeric, jsonb, numeric)', '{wallet_app}'),
		('@extschema@.wallet_release(bigint)', '{wallet_app}'),
		('wallet._release(int, bigint)', '{wallet_app}'),
		('@extschema@.wallet_ingest(jsonb)', '{wallet_app}'),
		('wallet._ingest_split(int[], jsonb[], int[])', '{wallet_app}'),
		('wallet._ingest_one(int, jsonb)', '{wallet_app}'),
		('@extschema@.wallet_record_cost(bigint, numeric, jsonb)', '{wallet_app,wallet_admin}'),
		('wallet._record_cost(int, bigint, numeric, jsonb)', '{wallet_app,wallet_admin}'),
		('@extschema@.wallet_outbox_ack(bigint)', '{wallet_app,wallet_admin}'),
		('wallet._outbox_ack(int, bigint)', '{wallet_app,wallet_admin}'),
		('wallet._route(text, bigint)', '{wallet_app,wallet_admin}'),
		('wallet._route_all(text, bigint)', '{wallet_app,wallet_admin}'),
		/* reading */
		('@extschema@.wallet_balance(text, text)', '{wallet_app,wallet_finance,wallet_admin}'),
		('@extschema@.wallet_balances(text)', '{wallet_app,wallet_finance,wallet_admin}'),
		('@extschema@.wallet_quote(text, text, numeric, jsonb, timestamptz)', '{wallet_app,wallet_admin}'),
		('@extschema@.wallet_statement(text, timestamptz, timestamptz)', '{wallet_app,wallet_finance,wallet_admin}'),
		('@extschema@.wallet_caps(text)', '{wallet_app,wallet_finance,wallet_admin}'),
		('@extschema@.wallet_verify()', '{wallet_finance,wallet_admin}'),
		('wallet.margin_by_dimension(text, timestamptz, timestamptz)', '{wallet_finance}'),
		('wallet.cluster_margin_by_dimension(text, timestamptz, timestamptz)', '{wallet_finance}'),
		('wallet.cluster_balances()', '{wallet_finance}'),
		('wallet.cluster_grants()', '{wallet_finance}'),
		('wallet.cluster_events()', '{wallet_finance}'),
		('wallet.cluster_ledger()', '{wallet_finance}'),
		('wallet.cluster_revenue_lines()', '{wallet_finance}'),
		('wallet.cluster_revenue()', '{wallet_finance}'),
		('wallet.cluster_deferred_revenue()', '{wallet_finance}'),
		('wallet.cluster_customer_margin()', '{wallet_finance}'),
		('wallet.cluster_conservation()', '{wallet_finance}'),
		/* configuration */
		('@extschema@.wallet_create_asset(text, int, numeric, text)', '{wallet_admin}'),
		('wallet._create_asset_all(text, int, numeric, text)', '{wallet_admin}'),
		('@extschema@.wallet_create(text, jsonb)', '{wallet_admin}'),
		('@extschema@.wallet_set_limit(text, text, numeric, numeric, int)', '{wallet_admin}'),
		('@extschema@.wallet_set_status(text, text)', '{wallet_admin}'),
		('@extschema@.wallet_set_price(text, text, jsonb, timestamptz, text, text)', '{wallet_admin}'),
		('wallet._set_price_all(text, text, jsonb, timestamptz, text, text)', '{wallet_admin}'),
		('@extschema@.wallet_assign_plan(text, text, timestamptz)', '{wallet_admin}'),
		('@extschema@.wallet_set_cap(text, text, numeric, text, text)', '{wallet_admin}'),
		('@extschema@.wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text, numeric, text, interval, numeric, jsonb)', '{wallet_admin}'),
		/* corrections and upkeep */
		('@extschema@.wallet_refund(bigint, numeric, text)', '{wallet_admin}'),
		('wallet._refund(int, bigint, numeric, text)', '{wallet_admin}'),
		('@extschema@.wallet_void_grant(bigint, text)', '{wallet_admin}'),
		('wallet._void_grant(int, bigint, text)', '{wallet_admin}'),
		('@extschema@.wallet_sweep(timestamptz)', '{wallet_admin}'),
		('wallet._sweep_all(timestamptz)', '{wallet_admin}')
	) AS v(fn, roles)
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', g.fn,
			(SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r), ', ') FROM pg_catalog.unnest(g.roles::text[]) r));
	END LOOP;
END
$$;
