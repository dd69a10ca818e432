/* wallet--1.0--1.1.sql: everything of release 1.1, applied to a 1.0 database */

\echo Use "ALTER EXTENSION wallet UPDATE TO '1.1'" to load this file. \quit

/*
 * How this file is kept.  wallet--1.0.sql is released and never edited: every
 * schema change of 1.1 is written here, and a fresh CREATE EXTENSION runs
 * wallet--1.0.sql and then this file (there is no wallet--1.1.sql), so an
 * upgraded database and a fresh one are built by the very same statements.
 *
 * Rules, as for the install script: every name schema-qualified, every new
 * object followed by COMMENT ON, privileges granted explicitly, and every new
 * table that holds data registered with pg_extension_config_dump.  A
 * statement here must also be correct on a populated 1.0 database: new
 * columns get defaults or a backfill from the existing rows.
 *
 * Sections below, one per part of the release, in the order they landed.
 */

/* ------------------------------------------------------------ release */

/*
 * Before anything else, while the C library still reads a 1.0 schema (there
 * is no wallet._schema_version yet, WalletSchemaVersion asks the catalog on
 * every call): the resets that recurring grants' boundaries made under 1.0
 * and that no sweep or debit wrote down yet are written now, by 1.0's rules.
 * Read later, by 1.1's rules, they would repay overdraft (API.md,
 * "Lifecycle"), moving granted, overdraft and revenue of days before the
 * upgrade and writing repay lines dated before it.
 */
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT DISTINCT gb.wallet_id, gb.asset FROM wallet.grant_block gb
			  WHERE gb.recurrence IS NOT NULL AND gb.closed_at IS NULL
			  ORDER BY 1, 2
	LOOP
		PERFORM wallet._touch(r.wallet_id, r.asset);
	END LOOP;
END
$$;

/* the C library reads this to tell a 1.1 schema from a 1.0 one (WalletSchemaVersion) */
CREATE FUNCTION wallet._schema_version() RETURNS int
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS 'SELECT 11';
COMMENT ON FUNCTION wallet._schema_version() IS
	'the schema release of the installed wallet scripts, as major*10+minor (1.1 = 11)';
REVOKE ALL ON FUNCTION wallet._schema_version() FROM PUBLIC;

/* ------------------------------------------------------------ coherence (#15) */

/*
 * Each backend keeps the scale of the assets it has read (src/asset.c) and
 * the prices compiled for that scale (src/price.c), under the rule of
 * src/coherence.c: a change to an asset row invalidates them in every
 * backend at commit, as a change to wallet.price or wallet.wallet does.
 */
CREATE TRIGGER asset_cache AFTER UPDATE OR DELETE OR TRUNCATE ON wallet.asset
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._relation_changed();

/*
 * The cache triggers fire whatever session_replication_role says: a session
 * that sets replica to get past the append-only triggers (wallet_shard_prune)
 * still reaches what every backend keeps.  A logical replication apply worker
 * fires row triggers only (and only those enabled ALWAYS or REPLICA): their
 * row-level twins, enabled REPLICA, send the same invalidation for the rows
 * it applies.  They only send invalidations.
 */
ALTER TABLE wallet.wallet ENABLE ALWAYS TRIGGER wallet_cache;
ALTER TABLE wallet.price ENABLE ALWAYS TRIGGER price_cache;
ALTER TABLE wallet.asset ENABLE ALWAYS TRIGGER asset_cache;
CREATE TRIGGER wallet_cache_applied AFTER UPDATE OR DELETE ON wallet.wallet
	FOR EACH ROW EXECUTE FUNCTION wallet._relation_changed();
CREATE TRIGGER price_cache_applied AFTER INSERT OR UPDATE OR DELETE ON wallet.price
	FOR EACH ROW EXECUTE FUNCTION wallet._relation_changed();
CREATE TRIGGER asset_cache_applied AFTER UPDATE OR DELETE ON wallet.asset
	FOR EACH ROW EXECUTE FUNCTION wallet._relation_changed();
ALTER TABLE wallet.wallet ENABLE REPLICA TRIGGER wallet_cache_applied;
ALTER TABLE wallet.price ENABLE REPLICA TRIGGER price_cache_applied;
ALTER TABLE wallet.asset ENABLE REPLICA TRIGGER asset_cache_applied;

/* ------------------------------------------------------------ binding holds (#16) */

/*
 * A hold reserves value, not a number (src/hold.c has the model).  Each open
 * hold is backed by reservations on specific grants (wallet.hold_grant, taken
 * in drawdown order) and by overdraft room (hold.overdraft); its dimensions
 * reserve room under the spend caps.  Reserved value stays in the grant's
 * remaining (so it is still deferred revenue) but no other debit draws it, and
 * neither a void nor an expiry takes it while the hold is open: what of it is
 * not captured leaves when the hold is released or expires.
 */
ALTER TABLE wallet.hold
	ADD COLUMN dimensions jsonb,
	ADD COLUMN overdraft bigint NOT NULL DEFAULT 0,
	ADD COLUMN meter text,
	ADD COLUMN quantity numeric,
	ADD COLUMN release_balance bigint,
	ADD CONSTRAINT hold_overdraft_check CHECK (overdraft BETWEEN 0 AND amount);
COMMENT ON COLUMN wallet.hold.dimensions IS
	'the hold''s dimensions: it reserves room under the spend caps of their values';
COMMENT ON COLUMN wallet.hold.overdraft IS
	'the part of the hold backed by overdraft room rather than by grants (minor units)';
COMMENT ON COLUMN wallet.hold.meter IS 'wallet_authorize_hold: the meter priced (null for wallet_hold)';
COMMENT ON COLUMN wallet.hold.quantity IS 'wallet_authorize_hold: the quantity priced (null for wallet_hold)';
COMMENT ON COLUMN wallet.hold.release_balance IS
	'available right after wallet_release, replayed when the release is asked again';
CREATE INDEX hold_open ON wallet.hold (wallet_id, asset) WHERE status = 'open';

CREATE TABLE wallet.hold_grant (
	hold_id		bigint NOT NULL,
	grant_id	bigint NOT NULL,
	amount		bigint NOT NULL CHECK (amount >= 0),
	resets		bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (hold_id, grant_id)
);
COMMENT ON TABLE wallet.hold_grant IS
	'value an open hold reserves on a grant (minor units); deleted when the hold is resolved';
COMMENT ON COLUMN wallet.hold_grant.resets IS
	'the grant''s resets when the value was reserved: a recurring grant reset since lets it go at the release';
/*
 * No index on grant_id: what is reserved on a grant is found through the open
 * holds of its balance (hold_open, then the primary key), which saves a hold
 * an index entry (docs/holds.md, "What a hold costs").
 */
SELECT pg_catalog.pg_extension_config_dump('wallet.hold_grant', '');
REVOKE ALL ON wallet.hold_grant FROM PUBLIC;
GRANT SELECT ON wallet.hold_grant TO wallet_finance;

/* what the holds open at as_of reserve on a grant (minor units) */
CREATE FUNCTION wallet._reserved(grant_id bigint, as_of timestamptz DEFAULT now())
RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(sum(r.amount), 0)::bigint
	  FROM wallet.grant_block g
	  JOIN wallet.hold h ON h.wallet_id = g.wallet_id AND h.asset = g.asset
	  JOIN wallet.hold_grant r ON r.hold_id = h.id AND r.grant_id = g.id
	 WHERE g.id = _reserved.grant_id AND h.status = 'open' AND h.expires_at > _reserved.as_of
$$;
COMMENT ON FUNCTION wallet._reserved(bigint, timestamptz) IS
	'value reserved on a grant by the holds open at as_of (minor units)';
REVOKE ALL ON FUNCTION wallet._reserved(bigint, timestamptz) FROM PUBLIC;

/* the resets a recurring grant has had by at, as grant.c counts them (its boundaries before expiry) */
CREATE FUNCTION wallet._boundaries_by(effective_at timestamptz, expires_at timestamptz,
	recurrence interval, at timestamptz) RETURNS bigint
AS 'MODULE_PATHNAME', 'wallet_boundaries_by' LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION wallet._boundaries_by(timestamptz, timestamptz, interval, timestamptz) IS
	'resets of a recurring grant by at: its boundaries in (effective_at, at] before expires_at';
REVOKE ALL ON FUNCTION wallet._boundaries_by(timestamptz, timestamptz, interval, timestamptz) FROM PUBLIC;

/*
 * A hold is resolved (captured, released, expired) at "at": what it still
 * reserves goes back to its grants, but the part on a grant voided or expired
 * meanwhile leaves now, with a 'void' or 'expiry' line dated at (breakage
 * for a paid grant), and so does the part on a recurring grant reset since
 * (a 'reset' line: the reset carried it for the hold).  Resolved now (a
 * capture, a release), that is a reset written since; expired at "at" in the
 * past (the sweep), a boundary between the reservation and "at", written or
 * not: a reset written after the expiry carried it too (grant.c
 * HoldCarried), one whose boundary came after did not.  The caller holds the
 * balance lock and has written the resets down.
 */
CREATE FUNCTION wallet._hold_settle(hold_id bigint, at timestamptz)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
	part bigint;
	gone bigint := 0;
BEGIN
	FOR r IN SELECT hg.grant_id, hg.amount, g.remaining, g.voided_at, g.expires_at, g.wallet_id, g.asset,
					g.recurrence IS NOT NULL
					AND CASE WHEN at < now()
							 THEN wallet._boundaries_by(g.effective_at, g.expires_at, g.recurrence, at)
							 ELSE g.resets END > hg.resets AS reset
			   FROM wallet.hold_grant hg JOIN wallet.grant_block g ON g.id = hg.grant_id
			  WHERE hg.hold_id = _hold_settle.hold_id AND hg.amount > 0
			  ORDER BY hg.grant_id
	LOOP
		part := least(r.amount, r.remaining);
		CONTINUE WHEN part <= 0 OR (r.voided_at IS NULL AND (r.expires_at IS NULL OR r.expires_at > at)
									AND NOT r.reset);
		/*
		 * a hold that expired (at, in the past: the sweep) before its grant
		 * was voided: the void took this part then, as it was no longer
		 * reserved; it does not leave twice.  (A capture or a release is
		 * resolved now, its hold open: a void dated after that, by a later
		 * clock, left the part to it.)
		 */
		CONTINUE WHEN at < now() AND r.voided_at >= at;
		INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, hold_id, kind, amount)
		VALUES (at, r.wallet_id, r.asset, r.grant_id, _hold_settle.hold_id,
				CASE WHEN r.voided_at IS NOT NULL THEN 'void'
					 WHEN r.expires_at IS NOT NULL AND r.expires_at <= at THEN 'expiry'
					 ELSE 'reset' END, -part);
		UPDATE wallet.grant_block g SET remaining = g.remaining - part,
			closed_at = CASE WHEN g.voided_at IS NOT NULL AND g.remaining = part
							 THEN coalesce(g.closed_at, now()) ELSE g.closed_at END
		 WHERE g.id = r.grant_id;
		gone := gone + part;
	END LOOP;
	DELETE FROM wallet.hold_grant hg WHERE hg.hold_id = _hold_settle.hold_id;
	RETURN gone;
END
$$;
COMMENT ON FUNCTION wallet._hold_settle(bigint, timestamptz) IS
	'a resolved hold''s reservations go back to their grants; the part on a voided or expired grant leaves';
REVOKE ALL ON FUNCTION wallet._hold_settle(bigint, timestamptz) FROM PUBLIC;

/*
 * A 1.0 database has open holds that reserve nothing: each takes what it holds
 * from the live grants in drawdown order, as far as their value not reserved
 * yet allows (holds in id order); the rest is overdraft room, as far as the
 * overdraft limit leaves room (less the overdraft in use and the room of the
 * holds before it).  1.0 let a grant expire or be voided under an open hold,
 * its value gone: such a hold may find less than its amount.  It is cut to
 * what backs it (to 0 when nothing does), and account.held with it: the 1.1
 * guarantee covers no more than that, and a capture of the rest is checked as
 * a debit is (src/hold.c, CaptureCover), as 1.0 checked every capture.
 * Available rises by the cut (1.0 counted all of the hold off it, below
 * -overdraft_limit), held falls by as much; the hold's 1.0 'hold' line stays.
 */
ALTER TABLE wallet.hold DROP CONSTRAINT hold_amount_check,
	ADD CONSTRAINT hold_amount_check CHECK (amount >= 0);
DO $$
DECLARE
	h record;
	g record;
	want bigint;
	t bigint;
	room bigint;
	cut bigint;
	last_pair text := '';
BEGIN
	FOR h IN SELECT ho.id, ho.wallet_id, ho.asset, ho.amount FROM wallet.hold ho
			  WHERE ho.status = 'open' AND ho.expires_at > pg_catalog.now()
			  ORDER BY ho.wallet_id, ho.asset, ho.id
	LOOP
		IF last_pair <> h.wallet_id || '/' || h.asset THEN
			PERFORM wallet._touch(h.wallet_id, h.asset);	/* resets written down first */
			last_pair := h.wallet_id || '/' || h.asset;
			SELECT pg_catalog.int8larger(a.overdraft_limit OPERATOR(pg_catalog.-) a.overdraft, 0) INTO room
			  FROM wallet.account a
			 WHERE a.wallet_id OPERATOR(pg_catalog.=) h.wallet_id AND a.asset OPERATOR(pg_catalog.=) h.asset;
		END IF;
		want := h.amount;
		FOR g IN SELECT gb.id, gb.resets, (gb.remaining OPERATOR(pg_catalog.-)
								coalesce((SELECT pg_catalog.sum(r.amount)
											FROM wallet.hold ho2 JOIN wallet.hold_grant r
											  ON r.hold_id OPERATOR(pg_catalog.=) ho2.id
										   WHERE ho2.wallet_id OPERATOR(pg_catalog.=) h.wallet_id
											 AND ho2.asset OPERATOR(pg_catalog.=) h.asset
											 AND ho2.status OPERATOR(pg_catalog.=) 'open'
											 AND r.grant_id OPERATOR(pg_catalog.=) gb.id), 0))::pg_catalog.int8 AS free
				   FROM wallet.grant_block gb
				  WHERE gb.wallet_id OPERATOR(pg_catalog.=) h.wallet_id
					AND gb.asset OPERATOR(pg_catalog.=) h.asset
					AND gb.closed_at IS NULL AND gb.voided_at IS NULL
					AND gb.effective_at OPERATOR(pg_catalog.<=) pg_catalog.now()
					AND (gb.expires_at IS NULL OR gb.expires_at OPERATOR(pg_catalog.>) pg_catalog.now())
				  ORDER BY gb.priority, gb.expires_at NULLS LAST,
						   CASE gb.category WHEN 'promotional' THEN 0 WHEN 'bundled' THEN 1 ELSE 2 END,
						   gb.effective_at, gb.id
		LOOP
			EXIT WHEN want OPERATOR(pg_catalog.=) 0;
			t := pg_catalog.int8smaller(want, g.free);
			IF t OPERATOR(pg_catalog.>) 0 THEN
				INSERT INTO wallet.hold_grant (hold_id, grant_id, amount, resets) VALUES (h.id, g.id, t, g.resets);
				want := want OPERATOR(pg_catalog.-) t;
			END IF;
		END LOOP;
		t := pg_catalog.int8smaller(want, room);
		room := room OPERATOR(pg_catalog.-) t;
		cut := want OPERATOR(pg_catalog.-) t;
		UPDATE wallet.hold ho SET overdraft = t, amount = ho.amount OPERATOR(pg_catalog.-) cut
		 WHERE ho.id OPERATOR(pg_catalog.=) h.id;
		IF cut OPERATOR(pg_catalog.>) 0 THEN
			UPDATE wallet.account a SET held = a.held OPERATOR(pg_catalog.-) cut
			 WHERE a.wallet_id OPERATOR(pg_catalog.=) h.wallet_id AND a.asset OPERATOR(pg_catalog.=) h.asset;
		END IF;
	END LOOP;
END
$$;

/* wallet_hold gains dimensions (its caps' room is reserved) */
DROP FUNCTION @extschema@.wallet_hold(text, text, numeric, text, interval);
CREATE FUNCTION @extschema@.wallet_hold(customer text, asset text, amount numeric,
	idempotency_key text, ttl interval DEFAULT '15 minutes', dimensions jsonb DEFAULT '{}')
RETURNS @extschema@.wallet_result AS 'MODULE_PATHNAME', 'wallet_hold' LANGUAGE C SECURITY DEFINER;
COMMENT ON FUNCTION @extschema@.wallet_hold(text, text, numeric, text, interval, jsonb) IS
	'reserves value from specific grants (and overdraft room) and spend-cap room, for ttl';

CREATE FUNCTION @extschema@.wallet_authorize_hold(customer text, meter text, quantity numeric,
	idempotency_key text, dimensions jsonb DEFAULT '{}', ttl interval DEFAULT '15 minutes')
RETURNS @extschema@.wallet_result AS 'MODULE_PATHNAME', 'wallet_authorize_hold' LANGUAGE C SECURITY DEFINER;
COMMENT ON FUNCTION @extschema@.wallet_authorize_hold(text, text, numeric, text, jsonb, interval) IS
	'prices an upper estimate of the usage and reserves that amount in the price''s asset';

CREATE FUNCTION @extschema@.wallet_capture_lines(hold_id bigint, lines jsonb)
RETURNS SETOF @extschema@.wallet_result AS 'MODULE_PATHNAME', 'wallet_capture_lines' LANGUAGE C SECURITY DEFINER;
COMMENT ON FUNCTION @extschema@.wallet_capture_lines(bigint, jsonb) IS
	'captures several meters of one hold at once (one event per line), all approved or all declined';

CREATE FUNCTION @extschema@.wallet_extend_hold(hold_id bigint, ttl interval)
RETURNS @extschema@.wallet_result AS 'MODULE_PATHNAME', 'wallet_extend_hold' LANGUAGE C SECURITY DEFINER;
COMMENT ON FUNCTION @extschema@.wallet_extend_hold(bigint, interval) IS
	'an open hold now expires at clock_timestamp() + ttl (a heartbeat for long jobs)';

REVOKE ALL ON FUNCTION @extschema@.wallet_hold(text, text, numeric, text, interval, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.wallet_authorize_hold(text, text, numeric, text, jsonb, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.wallet_capture_lines(bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.wallet_extend_hold(bigint, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_hold(text, text, numeric, text, interval, jsonb) TO wallet_app;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_authorize_hold(text, text, numeric, text, jsonb, interval) TO wallet_app;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_capture_lines(bigint, jsonb) TO wallet_app;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_extend_hold(bigint, interval) TO wallet_app;

/*
 * wallet_caps: remaining is also less the room open holds reserve in each
 * bucket (what the cap check counts: every open hold whose ttl has not passed,
 * in the bucket of its dimensions in the current period), and a dimension
 * value that only an open hold has used so far gets its own row.
 */
CREATE OR REPLACE FUNCTION @extschema@.wallet_caps(customer text)
RETURNS TABLE (asset text, period text, dimension text, dim_value text, cap numeric, spent numeric,
	remaining numeric, period_start timestamptz, period_end timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	WITH c AS (
		SELECT c.wallet_id, c.asset, c.period, c.dimension, c.amount,
			   date_trunc(c.period, now(), 'UTC') AS ps
		  FROM wallet.cap c
		 WHERE c.wallet_id = wallet._wallet_id(wallet_caps.customer)
	), h AS (
		SELECT h.asset, h.dimensions, h.amount
		  FROM wallet.hold h
		 WHERE h.wallet_id = wallet._wallet_id(wallet_caps.customer)
		   AND h.status = 'open' AND h.expires_at > now()
	), v AS (
		SELECT c.asset, c.period, c.dimension, s.dim_value
		  FROM c
		  JOIN wallet.cap_spend s
			ON s.wallet_id = c.wallet_id AND s.asset = c.asset AND s.period = c.period
		   AND s.period_start = c.ps AND s.dimension = c.dimension
		UNION
		SELECT c.asset, c.period, c.dimension, coalesce(h.dimensions ->> c.dimension, '')
		  FROM c JOIN h ON h.asset = c.asset
		 WHERE c.dimension IS NOT NULL
	), r AS (
		SELECT c.asset, c.period, c.dimension, NULL::text AS dim_value, c.amount,
			   coalesce(s.spent, 0) AS spent,
			   CASE WHEN c.dimension IS NULL
					THEN coalesce((SELECT sum(h.amount) FROM h WHERE h.asset = c.asset), 0)::bigint
					ELSE 0 END AS held,
			   c.ps
		  FROM c
		  LEFT JOIN wallet.cap_spend s
			ON c.dimension IS NULL AND s.wallet_id = c.wallet_id AND s.asset = c.asset
		   AND s.period = c.period AND s.period_start = c.ps AND s.dimension = '' AND s.dim_value = ''
		UNION ALL
		SELECT c.asset, c.period, c.dimension, v.dim_value, c.amount, coalesce(s.spent, 0),
			   coalesce((SELECT sum(h.amount) FROM h
						  WHERE h.asset = c.asset
							AND coalesce(h.dimensions ->> c.dimension, '') = v.dim_value), 0)::bigint,
			   c.ps
		  FROM c
		  JOIN v ON v.asset = c.asset AND v.period = c.period AND v.dimension = c.dimension
		  LEFT JOIN wallet.cap_spend s
			ON s.wallet_id = c.wallet_id AND s.asset = c.asset AND s.period = c.period
		   AND s.period_start = c.ps AND s.dimension = c.dimension AND s.dim_value = v.dim_value
	)
	SELECT r.asset, r.period, r.dimension, r.dim_value,
		   wallet._major(r.asset, r.amount), wallet._major(r.asset, r.spent),
		   wallet._major(r.asset, greatest(r.amount - r.spent - r.held, 0)),
		   r.ps, (r.ps AT TIME ZONE 'UTC' + ('1 ' || r.period)::interval) AT TIME ZONE 'UTC'
	  FROM r
	 ORDER BY r.asset, array_position('{hour,day,week,month}'::text[], r.period),
			  r.dimension NULLS FIRST, r.dim_value NULLS FIRST
$$;
COMMENT ON FUNCTION @extschema@.wallet_caps(text) IS
	'each spend cap of a wallet: spent and remaining (less what open holds reserve) in the current UTC period, per dimension value';

/*
 * Void a grant: what is left of it and not reserved by an open hold leaves now,
 * with a 'void' line; the reserved part leaves when its hold is resolved
 * (wallet._hold_settle), so a capture within the hold still draws it.  The
 * grant stays open (closed_at null) while it backs a hold.  Its reason is held
 * to 1024 bytes here, before anything is done (hardening, #17): a grant is
 * updated by the hot path, which honours no UPDATE trigger, so the check
 * cannot be a trigger.
 */
CREATE OR REPLACE FUNCTION @extschema@.wallet_void_grant(grant_id bigint, reason text DEFAULT NULL)
RETURNS numeric LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	g wallet.grant_block;
	v bigint := 0;
	res bigint;
BEGIN
	IF grant_id IS NULL THEN
		RAISE EXCEPTION 'grant_id must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF octet_length(reason) > 1024 THEN
		RAISE EXCEPTION 'reason is longer than 1024 bytes' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('It is %s bytes.', octet_length(reason));
	END IF;
	SELECT * INTO g FROM wallet.grant_block gb WHERE gb.id = wallet_void_grant.grant_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no grant with id %', grant_id USING ERRCODE = 'WL007';
	END IF;
	PERFORM wallet._touch(g.wallet_id, g.asset);
	SELECT * INTO g FROM wallet.grant_block gb WHERE gb.id = wallet_void_grant.grant_id;
	IF g.voided_at IS NOT NULL THEN
		RETURN wallet._major(g.asset, 0);
	END IF;
	res := least(wallet._reserved(g.id, now()), g.remaining);

	IF g.expires_at <= now() THEN
		IF g.closed_at IS NULL AND g.remaining > res THEN
			INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
			VALUES (g.expires_at, g.wallet_id, g.asset, g.id, 'expiry', res - g.remaining);
		END IF;
	ELSIF g.remaining > res THEN
		v := g.remaining - res;
		/* a grant not yet effective: the void shows when its grant line does */
		INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
		VALUES (greatest(now(), g.effective_at), g.wallet_id, g.asset, g.id, 'void', -v);
	END IF;
	UPDATE wallet.grant_block gb SET remaining = res, voided_at = now(),
		closed_at = CASE WHEN res = 0 THEN coalesce(gb.closed_at, now()) END, void_reason = reason
	 WHERE gb.id = g.id;
	RETURN wallet._major(g.asset, v);
END
$$;

/*
 * Spend-cap counters are pruned only once no running transaction can debit
 * into their period.  A debit counts in the period of its transaction's time
 * (now(), the event's recorded_at), however long after the period's end it
 * runs: a counter deleted under a transaction that began in its period would
 * make that transaction's debit find no spend and pass the cap.  So a counter
 * goes when its period ended by as_of and by the start of the oldest
 * transaction running (wallet._settled(), src/reads.c: the same horizon the
 * usage sums and statement marks keep to; this transaction's own start
 * included).  When that cannot be known (a backend with track_activities off,
 * a read-only or REPEATABLE READ sweep, a standby) nothing is pruned: a later
 * sweep does it.  (wallet._settled is defined with the reads section, later
 * in this script: hence plpgsql, whose body is bound when it runs.)
 */
CREATE FUNCTION wallet._cap_prune_upto(as_of timestamptz DEFAULT now())
RETURNS timestamptz LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	settled timestamptz := wallet._settled();
BEGIN
	RETURN CASE WHEN settled IS NULL THEN '-infinity' ELSE least(coalesce(as_of, now()), settled) END;
END
$$;
COMMENT ON FUNCTION wallet._cap_prune_upto(timestamptz) IS
	'as_of, or the start of the oldest transaction running when earlier (-infinity when unknown): wallet._cap_prune deletes the counters of periods ended by then';
REVOKE ALL ON FUNCTION wallet._cap_prune_upto(timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION wallet._cap_prune(as_of timestamptz DEFAULT now())
RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	WITH d AS (
		DELETE FROM wallet.cap_spend s
		 WHERE (s.period_start AT TIME ZONE 'UTC' + ('1 ' || s.period)::interval) AT TIME ZONE 'UTC'
			   <= (SELECT wallet._cap_prune_upto(_cap_prune.as_of))
		RETURNING 1)
	SELECT count(*) FROM d
$$;
COMMENT ON FUNCTION wallet._cap_prune(timestamptz) IS
	'deletes spend counters of periods ended by as_of and before every running transaction of the database began (for wallet_sweep); returns how many';

/*
 * The sweep of 1.0, with binding holds: expired holds are settled first (their
 * reservations go back; the part on voided or expired grants leaves, dated at
 * the hold's expiry), then an expired grant loses what no open hold reserves
 * and stays open while a hold still does.
 */
CREATE OR REPLACE FUNCTION @extschema@.wallet_sweep(as_of timestamptz DEFAULT now())
RETURNS TABLE (action text, count bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
	g record;
	n bigint;
	amt bigint;
	res bigint;
	n_expired bigint := 0;
	n_resets bigint := 0;
	n_holds bigint := 0;
	n_closed bigint := 0;
BEGIN
	IF as_of IS NULL OR as_of IN ('infinity', '-infinity') THEN
		RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF as_of > now() THEN
		RAISE EXCEPTION 'as_of % is in the future', as_of USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The sweep writes down what time has done; it cannot run ahead of it.';
	END IF;

	FOR r IN
		SELECT p.wallet_id, p.asset FROM wallet._pending(as_of) p
		UNION
		SELECT gb.wallet_id, gb.asset FROM wallet.grant_block gb
		 WHERE gb.closed_at IS NULL
		   AND (gb.expires_at <= as_of OR (gb.remaining = 0 AND gb.recurrence IS NULL))
		UNION
		SELECT a.wallet_id, a.asset FROM wallet.account a
		 WHERE a.holds_open > 0
		   AND EXISTS (SELECT 1 FROM wallet.hold h
						WHERE h.wallet_id = a.wallet_id AND h.asset = a.asset
						  AND h.status = 'open' AND h.expires_at <= as_of)
		ORDER BY 1, 2
	LOOP
		n_resets := n_resets + wallet._advance(r.wallet_id, r.asset, as_of);

		/* expired holds: closed, their value released as of their expiry */
		n := 0;
		amt := 0;
		FOR g IN SELECT h.id, h.amount, h.expires_at FROM wallet.hold h
				  WHERE h.wallet_id = r.wallet_id AND h.asset = r.asset
					AND h.status = 'open' AND h.expires_at <= as_of
				  ORDER BY h.id
		LOOP
			UPDATE wallet.hold h SET status = 'expired', closed_at = now() WHERE h.id = g.id;
			INSERT INTO wallet.line_stored (at, wallet_id, asset, hold_id, kind, amount)
			VALUES (g.expires_at, r.wallet_id, r.asset, g.id, 'release', g.amount);
			PERFORM wallet._hold_settle(g.id, g.expires_at);
			n := n + 1;
			amt := amt + g.amount;
		END LOOP;
		IF n > 0 THEN
			UPDATE wallet.account a SET held = a.held - amt, holds_open = a.holds_open - n
			 WHERE a.wallet_id = r.wallet_id AND a.asset = r.asset;
			n_holds := n_holds + n;
		END IF;

		/* expired grants: what was left at expiry (after its resets) and is not held leaves */
		FOR g IN SELECT gb.id, gb.remaining, gb.expires_at FROM wallet.grant_block gb
				  WHERE gb.wallet_id = r.wallet_id AND gb.asset = r.asset
					AND gb.closed_at IS NULL AND gb.expires_at <= as_of
				  ORDER BY gb.id
		LOOP
			res := least(wallet._reserved(g.id, as_of), g.remaining);
			IF g.remaining > res THEN
				INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
				VALUES (g.expires_at, r.wallet_id, r.asset, g.id, 'expiry', res - g.remaining);
			END IF;
			UPDATE wallet.grant_block gb SET remaining = res,
				closed_at = CASE WHEN res = 0 THEN now() END
			 WHERE gb.id = g.id;
			IF res = 0 THEN
				n_expired := n_expired + 1;
			END IF;
		END LOOP;

		/* used up and never refilled: out of the drawdown index (a refund reopens it) */
		UPDATE wallet.grant_block gb SET closed_at = now()
		 WHERE gb.wallet_id = r.wallet_id AND gb.asset = r.asset AND gb.closed_at IS NULL
		   AND gb.remaining = 0 AND gb.recurrence IS NULL
		   AND NOT EXISTS (SELECT 1 FROM wallet.hold h JOIN wallet.hold_grant hg ON hg.hold_id = h.id
							WHERE h.wallet_id = gb.wallet_id AND h.asset = gb.asset
							  AND h.status = 'open' AND hg.grant_id = gb.id);
		GET DIAGNOSTICS n = ROW_COUNT;
		n_closed := n_closed + n;
	END LOOP;

	/* spend-cap counters of periods that have ended are no longer read */
	PERFORM wallet._cap_prune(as_of);

	RETURN QUERY VALUES ('expired_grants'::text, n_expired), ('resets', n_resets),
		('expired_holds', n_holds), ('closed_grants', n_closed);
END
$$;

/* what live paid grants still owe, reserved value included (deferred until captured) */
CREATE OR REPLACE VIEW wallet.deferred_revenue AS
SELECT g.customer, g.asset, sum(g.remaining * g.unit_revenue) AS amount, sum(g.remaining) AS remaining
  FROM wallet.grants g
 WHERE g.category = 'paid' AND g.remaining > 0 AND g.effective_at <= now()
 GROUP BY g.customer, g.asset
 ORDER BY amount DESC, g.customer, g.asset;

/* wallet_verify: defined with the last section (it reads what the later sections add) */

/* ------------------------------------------------------------ hardening (#17) */

/*
 * Byte limits of the text inputs that are stored (docs/security.md), checked
 * by BEFORE triggers on the tables, so that whatever function writes the row
 * a value too long for its index or its lookups is 22023 before any index
 * can refuse it (54000).  The C entry points check the same limits (wallet.h)
 * before their lookups.  TG_ARGV: column, bytes, column, bytes, ...
 */
/*
 * Every call of 1.1 refuses a customer longer than 256 bytes and a meter
 * longer than 127 (docs/security.md), so a wallet or a price that 1.0 stored
 * with a longer one could not be used, read or verified after the upgrade
 * (wallet.balances and wallet_verify() call wallet_balances for every
 * wallet).  Such a database is refused here, with what to rename; the upgrade
 * runs in one transaction, so it stays as it was.
 */
DO $$
DECLARE
	bad text;
BEGIN
	SELECT string_agg(x, '; ') INTO bad FROM (
		SELECT format('wallet %s: customer of %s bytes', w.id, octet_length(w.customer))
		  FROM wallet.wallet w WHERE octet_length(w.customer) > 256
		UNION ALL
		SELECT format('price %s: meter of %s bytes', p.id, octet_length(p.meter))
		  FROM wallet.price p WHERE octet_length(p.meter) > 127
		UNION ALL
		SELECT format('price %s: plan of %s bytes', p.id, octet_length(p.plan))
		  FROM wallet.price p WHERE octet_length(p.plan) > 256
		UNION ALL
		SELECT format('price %s: customer of %s bytes', p.id, octet_length(p.customer))
		  FROM wallet.price p WHERE octet_length(p.customer) > 256
		LIMIT 20) t(x);
	IF bad IS NOT NULL THEN
		RAISE EXCEPTION 'wallet 1.1 takes customers and plans of at most 256 bytes and meters of at most 127: %', bad
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give them shorter names (UPDATE wallet.wallet SET customer = ..., UPDATE wallet.price SET meter = ..., as the tables'' owner), then run ALTER EXTENSION wallet UPDATE again.';
	END IF;
END
$$;

CREATE FUNCTION wallet._text_limits() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	row jsonb := to_jsonb(NEW);
	was jsonb := CASE TG_OP WHEN 'UPDATE' THEN to_jsonb(OLD) END;
	v text;
BEGIN
	FOR i IN 0 .. TG_NARGS - 1 BY 2 LOOP
		v := row ->> TG_ARGV[i];
		/* a value an update leaves as it was (one 1.0 stored, say) is not checked again */
		IF octet_length(v) > TG_ARGV[i + 1]::int AND v IS DISTINCT FROM was ->> TG_ARGV[i] THEN
			RAISE EXCEPTION '% is longer than % bytes', TG_ARGV[i], TG_ARGV[i + 1]
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('It is %s bytes.', octet_length(v));
		END IF;
	END LOOP;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION wallet._text_limits() IS
	'refuses (22023) a text column longer than its byte limit; arguments: column, bytes, ...';
REVOKE ALL ON FUNCTION wallet._text_limits() FROM PUBLIC;

CREATE TRIGGER text_limits BEFORE INSERT OR UPDATE OF customer ON wallet.wallet
	FOR EACH ROW EXECUTE FUNCTION wallet._text_limits('customer', '256');
CREATE TRIGGER text_limits BEFORE INSERT OR UPDATE OF meter, plan, customer ON wallet.price
	FOR EACH ROW EXECUTE FUNCTION wallet._text_limits('meter', '127', 'plan', '256', 'customer', '256');
CREATE TRIGGER text_limits BEFORE INSERT OR UPDATE OF dimension ON wallet.cap
	FOR EACH ROW EXECUTE FUNCTION wallet._text_limits('dimension', '127');
COMMENT ON TRIGGER text_limits ON wallet.wallet IS 'customer <= 256 bytes (22023)';
COMMENT ON TRIGGER text_limits ON wallet.price IS 'meter <= 127 bytes, plan and customer <= 256 (22023)';
COMMENT ON TRIGGER text_limits ON wallet.cap IS 'dimension <= 127 bytes (22023)';
CREATE TRIGGER text_limits BEFORE INSERT OR UPDATE OF description ON wallet.asset
	FOR EACH ROW EXECUTE FUNCTION wallet._text_limits('description', '1024');
COMMENT ON TRIGGER text_limits ON wallet.asset IS 'description <= 1024 bytes (22023)';
/* a refund row is only ever inserted: wallet_refund stores its reason there */
CREATE TRIGGER text_limits BEFORE INSERT ON wallet.refund
	FOR EACH ROW EXECUTE FUNCTION wallet._text_limits('reason', '1024');
COMMENT ON TRIGGER text_limits ON wallet.refund IS 'reason <= 1024 bytes (22023)';

/*
 * The byte limits of jsonb columns, by the size of the value as stored
 * before compression (pg_column_size of the value itself): metadata that
 * compresses well is held to the same limit as any other.  TG_ARGV: column,
 * bytes, column, bytes, ...
 */
CREATE FUNCTION wallet._jsonb_limits() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	row jsonb := to_jsonb(NEW);
	was jsonb := CASE TG_OP WHEN 'UPDATE' THEN to_jsonb(OLD) END;
	n int;
BEGIN
	FOR i IN 0 .. TG_NARGS - 1 BY 2 LOOP
		/* -> gives the column's value whole and uncompressed, of the same size */
		n := pg_column_size(row -> TG_ARGV[i]);
		/* a value an update leaves as it was (one 1.0 stored, say) is not checked again */
		IF n > TG_ARGV[i + 1]::int AND row -> TG_ARGV[i] IS DISTINCT FROM was -> TG_ARGV[i] THEN
			RAISE EXCEPTION '% is larger than % bytes', TG_ARGV[i], TG_ARGV[i + 1]
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('It is %s bytes as stored.', n);
		END IF;
	END LOOP;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION wallet._jsonb_limits() IS
	'refuses (22023) a jsonb column larger than its byte limit as stored; arguments: column, bytes, ...';
REVOKE ALL ON FUNCTION wallet._jsonb_limits() FROM PUBLIC;

CREATE TRIGGER jsonb_limits BEFORE INSERT OR UPDATE OF metadata ON wallet.wallet
	FOR EACH ROW EXECUTE FUNCTION wallet._jsonb_limits('metadata', '4096');
COMMENT ON TRIGGER jsonb_limits ON wallet.wallet IS 'metadata <= 4096 bytes as stored (22023)';
/*
 * On INSERT only: the debit hot path updates grants and honours no UPDATE
 * trigger; metadata and scope (added by the scoped-credits section) are
 * written when a grant is made and never changed.
 */
CREATE TRIGGER jsonb_limits BEFORE INSERT ON wallet.grant_block
	FOR EACH ROW EXECUTE FUNCTION wallet._jsonb_limits('metadata', '4096', 'scope', '4096');
COMMENT ON TRIGGER jsonb_limits ON wallet.grant_block IS 'metadata and scope <= 4096 bytes as stored (22023)';

/*
 * A customer longer than any wallet_create accepts is 22023 in every
 * function that looks a wallet up by it, as in the C entry points, not WL001.
 */
CREATE OR REPLACE FUNCTION wallet._wallet_id(customer text) RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint;
BEGIN
	IF customer IS NULL THEN
		RAISE EXCEPTION 'customer must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF octet_length(customer) > 256 THEN
		RAISE EXCEPTION 'customer is longer than 256 bytes' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('It is %s bytes.', octet_length(customer));
	END IF;
	SELECT id INTO w FROM wallet.wallet WHERE wallet.wallet.customer = _wallet_id.customer;
	IF w IS NULL THEN
		RAISE EXCEPTION 'no wallet for customer "%"', left(customer, 100) USING ERRCODE = 'WL001',
			HINT = 'Create it with wallet_create().';
	END IF;
	RETURN w;
END
$$;

/* margin_by_dimension: its key is a dimension key, of 127 bytes at most (22023) */
CREATE OR REPLACE FUNCTION wallet.margin_by_dimension(key text, since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT 'infinity')
RETURNS TABLE (value text, revenue numeric, cost numeric, margin numeric, events bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
	IF key IS NULL OR key = '' THEN
		RAISE EXCEPTION 'key must name a dimension' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF octet_length(key) > 127 THEN
		RAISE EXCEPTION 'key is longer than 127 bytes' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('It is %s bytes; no dimension key is longer.', octet_length(key));
	END IF;
	IF since IS NULL OR until IS NULL OR until < since THEN
		RAISE EXCEPTION 'invalid window [%, %)', since, until USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN QUERY
	WITH r AS (
		SELECT rl.event_id, sum(rl.recognized) AS revenue
		  FROM wallet.revenue_lines rl
		 WHERE rl.at >= since AND rl.at < until AND rl.recognized <> 0
		 GROUP BY rl.event_id),
	c AS (
		SELECT e.id, coalesce(e.cost, 0) AS cost
		  FROM wallet.event e
		 WHERE e.recorded_at >= since AND e.recorded_at < until),
	x AS (
		SELECT coalesce(c.id, r.event_id) AS event_id, coalesce(r.revenue, 0) AS revenue,
			   coalesce(c.cost, 0) AS cost, c.id IS NOT NULL AS counted
		  FROM r FULL JOIN c ON c.id = r.event_id)
	SELECT (coalesce(ev.dimensions, '{}') || coalesce(ev.cost_dimensions, '{}')) ->> key, sum(x.revenue), sum(x.cost),
		   sum(x.revenue) - sum(x.cost) AS margin, count(*) FILTER (WHERE x.counted)
	  FROM x
	  LEFT JOIN wallet.event ev ON ev.id = x.event_id
	 GROUP BY 1
	 ORDER BY 4, 1;
END
$$;

/*
 * A plan name has the byte limit wallet.price gives it (256): a customer put
 * on a longer one could never be priced by it and would silently pay default
 * prices.  Plan assignments written by 1.0 are left as they are.
 */
CREATE OR REPLACE FUNCTION @extschema@.wallet_assign_plan(customer text, plan text,
	effective_at timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
BEGIN
	IF effective_at IS NULL OR effective_at IN ('infinity', '-infinity') THEN
		RAISE EXCEPTION 'effective_at must be a finite time' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF plan = '' THEN
		RAISE EXCEPTION 'plan must not be empty' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use null to move the customer back to default prices.';
	END IF;
	IF octet_length(plan) > 256 THEN
		RAISE EXCEPTION 'plan is longer than 256 bytes'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s bytes; wallet_set_price takes plans of at most 256.', octet_length(plan));
	END IF;
	INSERT INTO wallet.plan_assignment AS pa (wallet_id, effective_at, plan)
	VALUES (w, effective_at, plan)
	ON CONFLICT ON CONSTRAINT plan_assignment_pkey DO UPDATE SET plan = excluded.plan;
END
$$;

/*
 * A grant's recurrence: every field >= 0 (a month and minus 30 days is not a
 * period: its boundaries go back and forth), and its external_ref at most 255
 * bytes (checked on INSERT only: the debit hot path, which updates grants,
 * honours no UPDATE trigger).  Grants written by 1.0 with a negative field
 * are left as they are: they never refill (grant.c).
 */
CREATE FUNCTION wallet._grant_checks() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NEW.recurrence IS NOT NULL AND (
		   date_trunc('month', NEW.recurrence) < interval '0'
		OR date_trunc('day', NEW.recurrence) - date_trunc('month', NEW.recurrence) < interval '0'
		OR NEW.recurrence - date_trunc('day', NEW.recurrence) < interval '0'
		OR NEW.recurrence <= interval '0') THEN
		RAISE EXCEPTION 'recurrence must be a positive interval with no negative field: %', NEW.recurrence
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Write the period with fields of one sign, e.g. ''1 month'' or ''29 days 23:59:59''.';
	END IF;
	IF octet_length(NEW.external_ref) > 255 THEN
		RAISE EXCEPTION 'external_ref is longer than 255 bytes'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION wallet._grant_checks() IS
	'refuses (22023) a recurrence with a negative field and an external_ref over 255 bytes';
REVOKE ALL ON FUNCTION wallet._grant_checks() FROM PUBLIC;
CREATE TRIGGER grant_checks BEFORE INSERT ON wallet.grant_block
	FOR EACH ROW EXECUTE FUNCTION wallet._grant_checks();
COMMENT ON TRIGGER grant_checks ON wallet.grant_block IS 'recurrence fields >= 0, external_ref <= 255 bytes (22023)';

/*
 * external_ref is unique per customer (1.0: across customers, so one
 * customer's top-up waited on another's and was told its grant id).  The
 * refs of a 1.0 database are unique across customers, so per customer too.
 */
ALTER TABLE wallet.grant_block DROP CONSTRAINT grant_block_external_ref_key;
ALTER TABLE wallet.grant_block ADD CONSTRAINT grant_block_external_ref_key UNIQUE (wallet_id, external_ref);

/* wallet_grant looks external_ref up in the customer's own grants: the scoped-credits section re-creates it whole */

/* wallet_record_cost: a clash names the key, never another customer's value */
CREATE OR REPLACE FUNCTION @extschema@.wallet_record_cost(event_id bigint, cost numeric,
	dimensions jsonb DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	e wallet.event;
	clash text;
	n int;
	added jsonb;
BEGIN
	IF event_id IS NULL THEN
		RAISE EXCEPTION 'event_id must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF cost IS NULL OR cost = 'NaN' OR cost IN ('Infinity', '-Infinity') OR cost < 0 THEN
		RAISE EXCEPTION 'invalid cost %', coalesce(cost::text, 'null') USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'A cost is a finite amount of the reporting currency, zero or more.';
	END IF;
	IF dimensions IS NOT NULL AND jsonb_typeof(dimensions) <> 'object' THEN
		RAISE EXCEPTION 'dimensions must be a json object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	/* each key and value within an event's limits (docs/security.md) */
	SELECT d.key, octet_length(d.key) INTO clash, n FROM jsonb_each(dimensions) d
	 WHERE octet_length(d.key) > 127 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'a dimension key is longer than 127 bytes' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('It is %s bytes.', n);
	END IF;
	SELECT d.key, octet_length(d.value #>> '{}') INTO clash, n FROM jsonb_each(dimensions) d
	 WHERE octet_length(d.value #>> '{}') > 1024 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'the value of dimension "%" is longer than 1024 bytes', clash
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s bytes as text.', n);
	END IF;
	clash := NULL;
	SELECT * INTO e FROM wallet.event ev WHERE ev.id = wallet_record_cost.event_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no event with id %', event_id USING ERRCODE = 'WL007';
	END IF;
	added := e.cost_dimensions;
	IF dimensions IS NOT NULL AND dimensions <> '{}' THEN
		SELECT d.key INTO clash FROM jsonb_each(dimensions) d
		 WHERE e.dimensions ? d.key AND e.dimensions -> d.key <> d.value
		 ORDER BY d.key LIMIT 1;
		IF clash IS NOT NULL THEN
			/* the stored value is not shown: the caller may not be the event's customer (1.1) */
			RAISE EXCEPTION 'dimension "%" of event % already has another value', left(clash, 100), event_id
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'The dimensions the event was debited with never change.';
		END IF;
		/* keys the request already has, with the same value, add nothing */
		added := coalesce(added, '{}') || (dimensions - ARRAY(SELECT jsonb_object_keys(coalesce(e.dimensions, '{}'))));
		IF added = '{}' THEN
			added := e.cost_dimensions;
		ELSIF pg_column_size(coalesce(e.dimensions, '{}') || added) > 4096 THEN
			RAISE EXCEPTION 'dimensions of event % would be larger than 4096 bytes', event_id
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	UPDATE wallet.event ev SET cost = wallet_record_cost.cost, cost_dimensions = added
	 WHERE ev.id = e.id;
END
$$;

/*
 * The append-only triggers of the ledger stop mistakes; this event trigger
 * stops the tables' owner, when it is not a superuser, from disabling,
 * renaming or dropping them (ALTER TABLE ... DISABLE TRIGGER, DROP TRIGGER)
 * and then deleting lines.  It checks the triggers' state after each such
 * command and undoes the command by raising.  A superuser is not stopped
 * (docs/security.md says who can still change the ledger).  It reads only the
 * catalogs, by name: every role's DDL fires it, with or without USAGE on
 * schema wallet.
 */
CREATE FUNCTION wallet._ledger_guard() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	missing text;
BEGIN
	IF (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		RETURN;
	END IF;
	SELECT string_agg(format('%s on wallet.%s', t.tgname, t.relname), ', ') INTO missing
	  FROM (VALUES ('line_stored', 'line_append_only'), ('line_stored', 'line_no_truncate'),
				   ('event', 'event_immutable'), ('event', 'event_no_delete'),
				   ('event', 'event_no_truncate'), ('refund', 'refund_append_only'),
				   ('refund', 'refund_no_truncate')) AS t(relname, tgname)
	 WHERE NOT EXISTS (SELECT FROM pg_trigger tg
						 JOIN pg_class c ON c.oid = tg.tgrelid
						 JOIN pg_namespace n ON n.oid = c.relnamespace
						WHERE n.nspname = 'wallet' AND c.relname = t.relname
						  AND tg.tgname = t.tgname AND tg.tgenabled IN ('O', 'A'));
	IF missing IS NOT NULL THEN
		RAISE EXCEPTION 'the ledger''s append-only triggers cannot be disabled or dropped: %', missing
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Only a superuser can change them (docs/security.md).';
	END IF;
END
$$;
COMMENT ON FUNCTION wallet._ledger_guard() IS
	'event trigger: refuses a command by a non-superuser that disabled or dropped an append-only trigger of the ledger';
REVOKE ALL ON FUNCTION wallet._ledger_guard() FROM PUBLIC;
CREATE EVENT TRIGGER wallet_ledger_guard ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE', 'DROP TRIGGER', 'ALTER TRIGGER')
	EXECUTE FUNCTION wallet._ledger_guard();
COMMENT ON EVENT TRIGGER wallet_ledger_guard IS
	'keeps the ledger''s append-only triggers in place against the tables'' owner when it is not a superuser';

/*
 * A rewrite (ALTER TABLE ... ALTER COLUMN ... TYPE ... USING) changes stored
 * rows without firing a row trigger: refused on the ledger's tables, as a
 * DELETE or UPDATE is, for an owner who is not a superuser.
 */
CREATE FUNCTION wallet._ledger_rewrite_guard() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	rel oid := pg_event_trigger_table_rewrite_oid();
BEGIN
	IF (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		RETURN;
	END IF;
	/* by name: any role's rewrite of its own tables comes here, without USAGE on the schema */
	IF EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE c.oid = rel AND n.nspname = 'wallet'
				  AND c.relname IN ('line_stored', 'event', 'refund')) THEN
		RAISE EXCEPTION 'the ledger''s table % cannot be rewritten', rel::regclass
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'A rewrite changes rows without their append-only triggers; only a superuser can do it (docs/security.md).';
	END IF;
END
$$;
COMMENT ON FUNCTION wallet._ledger_rewrite_guard() IS
	'event trigger: refuses a rewrite of a ledger table by a non-superuser';
REVOKE ALL ON FUNCTION wallet._ledger_rewrite_guard() FROM PUBLIC;
CREATE EVENT TRIGGER wallet_ledger_rewrite_guard ON table_rewrite
	EXECUTE FUNCTION wallet._ledger_rewrite_guard();
COMMENT ON EVENT TRIGGER wallet_ledger_rewrite_guard IS
	'keeps the ledger''s rows from being rewritten by the tables'' owner when it is not a superuser';

/* ------------------------------------------------------------ top-up loop (#18) */

/*
 * Alerts, recharges and the outbox's upkeep.  Several thresholds per wallet
 * and asset live in wallet.alert, the recharge rule in wallet.recharge.  The
 * hot path reads three columns of the balance row for all of them, kept by
 * wallet._alert_eval: low_balance holds, from 1.1 on, the highest level whose
 * crossing has something to say (an alert not yet below, a recharge that may
 * open); alert_back the lowest threshold of an alert that is below;
 * alert_until, while a recharge_limit holds the recharge back, the start of
 * the next UTC month.  A debit or hold that leaves available below
 * low_balance, or finds it at or above alert_back before its change (value
 * came back by time alone: a reset, an expired hold, a grant taking effect),
 * or runs at or after alert_until calls wallet._alert_eval, which writes the
 * rows and stores the next levels; every other debit pays those comparisons
 * (a balance row with no alert and no recharge: three null tests).  What
 * raises a balance (a grant, a refund, a release, a sweep) evaluates the
 * alerts of its wallet and asset for the way back up.
 */

CREATE TABLE wallet.alert (
	wallet_id	bigint NOT NULL,
	asset		text NOT NULL,
	threshold	bigint NOT NULL,
	enabled		boolean NOT NULL DEFAULT true,
	below		boolean NOT NULL DEFAULT false,
	from_limit	boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (wallet_id, asset, threshold),
	FOREIGN KEY (wallet_id, asset) REFERENCES wallet.account (wallet_id, asset)
);
COMMENT ON TABLE wallet.alert IS
	'low-balance alerts: low_balance when available crosses below threshold (minor units), recovered when back';
COMMENT ON COLUMN wallet.alert.below IS
	'the last low_balance of this alert has had no recovered yet';
COMMENT ON COLUMN wallet.alert.from_limit IS
	'set by wallet_set_limit(..., low_balance): the next wallet_set_limit replaces it';
SELECT pg_catalog.pg_extension_config_dump('wallet.alert', '');

CREATE TABLE wallet.recharge (
	wallet_id		bigint NOT NULL,
	asset			text NOT NULL,
	threshold		bigint NOT NULL,
	target			bigint NOT NULL,
	max_per_month	bigint CHECK (max_per_month > 0),
	open_ref		text,
	open_outbox		bigint,
	landed_at		timestamptz,
	month_start		timestamptz,
	month_total		bigint NOT NULL DEFAULT 0 CHECK (month_total >= 0),
	limited_month	timestamptz,
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (wallet_id, asset),
	FOREIGN KEY (wallet_id, asset) REFERENCES wallet.account (wallet_id, asset),
	CHECK (target > threshold)
);
COMMENT ON TABLE wallet.recharge IS
	'auto top-up: below threshold, a recharge outbox row asks for target - available (minor units)';
COMMENT ON COLUMN wallet.recharge.open_ref IS
	'external_ref of the last recharge: open until a grant with it lands or its outbox row is acked (then null)';
COMMENT ON COLUMN wallet.recharge.landed_at IS
	'when the grant of open_ref took effect: a debit whose transaction began before it still counts the recharge open';
COMMENT ON COLUMN wallet.recharge.month_total IS
	'what recharges requested in the UTC month starting at month_start';
SELECT pg_catalog.pg_extension_config_dump('wallet.recharge', '');

ALTER TABLE wallet.account ADD COLUMN alert_back bigint, ADD COLUMN alert_until timestamptz;
COMMENT ON COLUMN wallet.account.alert_back IS
	'lowest threshold of an alert that is below: a debit or hold that finds available at or above it before its change evaluates the alerts (value came back by time); kept by wallet._alert_eval';
COMMENT ON COLUMN wallet.account.alert_until IS
	'while a recharge_limit of this UTC month holds the recharge back: the start of the next month, from which a debit or hold evaluates again; kept by wallet._alert_eval';

/* the last declined row of a wallet, asset and reason, found without a scan */
CREATE INDEX outbox_declined ON wallet.outbox (customer, asset, at) WHERE kind = 'declined';

COMMENT ON TABLE wallet.outbox IS
	'notifications written in the caller''s own transaction (low_balance, recovered, declined, recharge, recharge_limit); a wallet_events notification at commit (none at PREPARE TRANSACTION)';

/* available of a wallet in an asset now, in minor units (the caller holds the balance row's lock) */
CREATE FUNCTION wallet._available(w bigint, asset text) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT (@extschema@.wallet_balance(ww.customer, a.code) * (10::numeric ^ a.scale))::bigint
	  FROM wallet.wallet ww, wallet.asset a
	 WHERE ww.id OPERATOR(pg_catalog.=) w AND a.code OPERATOR(pg_catalog.=) _available.asset
$$;
COMMENT ON FUNCTION wallet._available(bigint, text) IS 'available now in minor units';

/* an asset amount with a sign, in minor units (wallet._minor takes no sign) */
CREATE FUNCTION wallet._minor_signed(asset text, amount numeric, field text) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN amount OPERATOR(pg_catalog.=) 0 THEN wallet._minor(asset, 1, field) * 0
				ELSE wallet._minor(asset, abs(amount), field) * sign(amount)::int END
$$;
COMMENT ON FUNCTION wallet._minor_signed(text, numeric, text) IS 'wallet._minor keeping the sign';

/*
 * What the hot path compares with (wallet.account's low_balance, alert_back
 * and alert_until): the highest threshold of an alert not yet below or of a
 * recharge that may open; the lowest threshold of an alert below; while a
 * recharge_limit of this UTC month holds the recharge back, the start of the
 * next month, when it may open again.
 */
CREATE FUNCTION wallet._alert_levels(w bigint, asset text,
	OUT level bigint, OUT back bigint, OUT until timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT
	  (SELECT max(l.t) FROM (
		SELECT al.threshold FROM wallet.alert al
		 WHERE al.wallet_id OPERATOR(pg_catalog.=) w AND al.asset OPERATOR(pg_catalog.=) _alert_levels.asset
		   AND al.enabled AND NOT al.below
		UNION ALL
		SELECT r.threshold FROM wallet.recharge r
		 WHERE r.wallet_id OPERATOR(pg_catalog.=) w AND r.asset OPERATOR(pg_catalog.=) _alert_levels.asset
		   AND (r.open_ref IS NULL OR r.landed_at IS NOT NULL)
		   AND (r.limited_month IS NULL OR r.limited_month OPERATOR(pg_catalog.<) date_trunc('month', now(), 'UTC'))
	  ) l(t)),
	  (SELECT min(al.threshold) FROM wallet.alert al
		WHERE al.wallet_id OPERATOR(pg_catalog.=) w AND al.asset OPERATOR(pg_catalog.=) _alert_levels.asset
		  AND al.enabled AND al.below),
	  (SELECT ((r.limited_month AT TIME ZONE 'UTC') OPERATOR(pg_catalog.+) interval '1 month') AT TIME ZONE 'UTC'
		 FROM wallet.recharge r
		WHERE r.wallet_id OPERATOR(pg_catalog.=) w AND r.asset OPERATOR(pg_catalog.=) _alert_levels.asset
		  AND (r.open_ref IS NULL OR r.landed_at IS NOT NULL)
		  AND r.limited_month OPERATOR(pg_catalog.>=) date_trunc('month', now(), 'UTC'))
$$;
COMMENT ON FUNCTION wallet._alert_levels(bigint, text) IS
	'highest threshold of an alert not yet below or of a recharge that may open (null: nothing to watch); lowest threshold of an alert below; when a limited recharge may open again';

/* store wallet._alert_levels on the balance row (the caller holds its lock) and return them */
CREATE FUNCTION wallet._alert_store(w bigint, asset text,
	OUT level bigint, OUT back bigint, OUT until timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	SELECT l.level, l.back, l.until INTO level, back, until FROM wallet._alert_levels(w, asset) l;
	UPDATE wallet.account a SET low_balance = level, alert_back = back, alert_until = until
	 WHERE a.wallet_id = w AND a.asset = _alert_store.asset
	   AND (a.low_balance, a.alert_back, a.alert_until) IS DISTINCT FROM (level, back, until);
END
$$;
COMMENT ON FUNCTION wallet._alert_store(bigint, text) IS
	'stores the levels the hot path compares with on the balance row, and returns them';

/*
 * A notification on wallet_events, queued in the backend and sent when the
 * transaction commits (src/outbox.c): pg_notify in the call would make the
 * caller's transaction impossible to PREPARE.  Dropped with a subtransaction
 * that aborts; a transaction that prepares sends none.
 */
CREATE FUNCTION wallet._outbox_notify(payload text) RETURNS void
AS 'MODULE_PATHNAME', 'wallet_outbox_notify' LANGUAGE C STRICT;
COMMENT ON FUNCTION wallet._outbox_notify(text) IS
	'queues a wallet_events notification sent at commit (none at PREPARE TRANSACTION)';

/* an outbox row, and its notice at commit ({"id", "kind"}) */
CREATE FUNCTION wallet._outbox_put(customer text, asset text, kind text, available bigint,
	threshold bigint, detail jsonb) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	row_id bigint;
BEGIN
	INSERT INTO wallet.outbox (customer, asset, kind, available, threshold, detail)
	VALUES (customer, asset, kind, wallet._major(asset, available), wallet._major(asset, threshold),
			jsonb_strip_nulls(detail))
	RETURNING id INTO row_id;
	PERFORM wallet._outbox_notify(json_build_object('id', row_id, 'kind', kind)::text);
	RETURN row_id;
END
$$;
COMMENT ON FUNCTION wallet._outbox_put(text, text, text, bigint, bigint, jsonb) IS
	'writes an outbox row (amounts in minor units) and queues its wallet_events notification (id and kind) for commit';

/*
 * Evaluate the alerts and the recharge of a balance row at available (minor
 * units); the caller holds the row's lock.  Writes low_balance, recovered,
 * recharge or recharge_limit rows, and stores and returns the next levels.
 * before, when given, is available before a debit or hold took it to
 * available, and at or above an alert below: value came back by time alone
 * (a reset, an expired hold) since the last evaluation.  The alerts below
 * that before is at or above recover first, at before; then available is
 * judged as always (so a debit from there to below writes the new crossing).
 */
CREATE FUNCTION wallet._alert_eval(w bigint, asset text, available bigint, before bigint DEFAULT NULL,
	OUT level bigint, OUT back bigint, OUT until timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cust text := (SELECT ww.customer FROM wallet.wallet ww WHERE ww.id = w);
	al record;
	r wallet.recharge;
	mon timestamptz := date_trunc('month', now(), 'UTC');
	amt bigint;
	row_id bigint;
BEGIN
	IF before IS NOT NULL THEN
		FOR al IN
			SELECT x.threshold FROM wallet.alert x
			 WHERE x.wallet_id = w AND x.asset = _alert_eval.asset AND x.enabled
			   AND x.below AND before >= x.threshold
			 ORDER BY x.threshold DESC
			   FOR UPDATE
		LOOP
			PERFORM wallet._outbox_put(cust, asset, 'recovered', before, al.threshold, '{}');
			UPDATE wallet.alert x SET below = false
			 WHERE x.wallet_id = w AND x.asset = _alert_eval.asset AND x.threshold = al.threshold;
		END LOOP;
	END IF;
	FOR al IN
		SELECT x.threshold, x.below FROM wallet.alert x
		 WHERE x.wallet_id = w AND x.asset = _alert_eval.asset AND x.enabled
		   AND (x.below AND available >= x.threshold OR NOT x.below AND available < x.threshold)
		 ORDER BY x.threshold DESC
		   FOR UPDATE
	LOOP
		PERFORM wallet._outbox_put(cust, asset, CASE WHEN al.below THEN 'recovered' ELSE 'low_balance' END,
								   available, al.threshold, '{}');
		UPDATE wallet.alert x SET below = NOT al.below
		 WHERE x.wallet_id = w AND x.asset = _alert_eval.asset AND x.threshold = al.threshold;
	END LOOP;

	SELECT * INTO r FROM wallet.recharge x WHERE x.wallet_id = w AND x.asset = _alert_eval.asset FOR UPDATE;
	IF FOUND AND (r.open_ref IS NULL OR r.landed_at <= now()) AND available < r.threshold THEN
		IF r.month_start IS DISTINCT FROM mon THEN
			r.month_start := mon;
			r.month_total := 0;
		END IF;
		amt := r.target - available;
		IF r.max_per_month IS NOT NULL AND r.month_total + amt > r.max_per_month THEN
			IF r.limited_month IS DISTINCT FROM mon THEN
				PERFORM wallet._outbox_put(cust, asset, 'recharge_limit', available, r.threshold,
					jsonb_build_object('amount', wallet._major(asset, amt),
									   'target', wallet._major(asset, r.target),
									   'max_per_month', wallet._major(asset, r.max_per_month),
									   'recharged', wallet._major(asset, r.month_total),
									   'month', to_char(mon AT TIME ZONE 'UTC', 'YYYY-MM')));
				UPDATE wallet.recharge x SET limited_month = mon, month_start = r.month_start,
					month_total = r.month_total
				 WHERE x.wallet_id = w AND x.asset = _alert_eval.asset;
			END IF;
		ELSE
			row_id := wallet._outbox_put(cust, asset, 'recharge', available, r.threshold,
				jsonb_build_object('amount', wallet._major(asset, amt),
								   'target', wallet._major(asset, r.target)));
			UPDATE wallet.outbox o
			   SET detail = o.detail || jsonb_build_object('external_ref', 'wallet-recharge-' || row_id)
			 WHERE o.id = row_id;
			UPDATE wallet.recharge x SET open_ref = 'wallet-recharge-' || row_id, open_outbox = row_id,
				landed_at = NULL, month_start = r.month_start, month_total = r.month_total + amt, limited_month = NULL
			 WHERE x.wallet_id = w AND x.asset = _alert_eval.asset;
		END IF;
	END IF;

	SELECT l.level, l.back, l.until INTO level, back, until FROM wallet._alert_store(w, asset) l;
END
$$;
COMMENT ON FUNCTION wallet._alert_eval(bigint, text, bigint, bigint) IS
	'writes the alert and recharge rows that available (minor units), and before it, call for; stores and returns the next levels';

/* evaluate at available now, when the balance row has anything to watch (the caller holds its lock) */
CREATE FUNCTION wallet._alert_check(w bigint, asset text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM wallet.alert x WHERE x.wallet_id = w AND x.asset = _alert_check.asset AND x.enabled)
	   OR EXISTS (SELECT 1 FROM wallet.recharge x WHERE x.wallet_id = w AND x.asset = _alert_check.asset) THEN
		PERFORM wallet._alert_eval(w, asset, wallet._available(w, asset));
	END IF;
END
$$;
COMMENT ON FUNCTION wallet._alert_check(bigint, text) IS
	'evaluates the alerts and recharge of a balance row at available now, if it has any';

/* available rose to available (a release; the caller holds the lock): alerts below it recover */
CREATE FUNCTION wallet._alert_raised(w bigint, asset text, available bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM wallet.alert x
				WHERE x.wallet_id = w AND x.asset = _alert_raised.asset AND x.enabled AND x.below
				  AND x.threshold <= available) THEN
		PERFORM wallet._alert_eval(w, asset, available);
	END IF;
END
$$;
COMMENT ON FUNCTION wallet._alert_raised(bigint, text, bigint) IS
	'after a release: evaluates the alerts of the balance row when one of them recovers';

/*
 * A refund gives back to the usage counters of the price that priced the
 * event (refund.c): the amount refunded to every max_per_period counter it
 * was counted in, and, by the refund that completes the event, its quantity
 * to the usage counters of tiers and free units.  Never below 0; a counter of
 * a period already pruned needs nothing.
 */
CREATE FUNCTION wallet._usage_giveback(event_id bigint, amount bigint) RETURNS void
	AS 'MODULE_PATHNAME', 'wallet_usage_giveback' LANGUAGE C;
COMMENT ON FUNCTION wallet._usage_giveback(bigint, bigint) IS
	'after a refund of amount (minor units) of the event, under its balance lock: gives back to its price''s max_per_period counters, and its usage when the event is refunded in full';
REVOKE ALL ON FUNCTION wallet._usage_giveback(bigint, bigint) FROM PUBLIC;

/*
 * What raises a balance evaluates its alerts in the function that raises it,
 * never in an INSERT trigger on wallet.grant_block or wallet.refund: a
 * restore loads those tables with COPY before the dump sets the sequences,
 * and a trigger would write outbox rows and reset lines there with ids the
 * restored rows still need (test/scripts/pgdump.sh).  wallet_grant closes
 * the recharge its external_ref answers and evaluates the alerts.  A grant
 * a refund makes (wallet._refund_grant) is one part of that refund: the
 * balance is judged once the refund is whole, not halfway, where it may look
 * low enough to ask for a recharge: 1.0's wallet_refund, left as it is,
 * calls wallet._cap_giveback right after its wallet.refund row, with every
 * change of value made and the balance row locked, and 1.1's
 * wallet._cap_giveback evaluates the alerts there.
 */
CREATE OR REPLACE FUNCTION wallet._cap_giveback(event_id bigint, amount bigint)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	e wallet.event;
BEGIN
	IF _cap_giveback.amount IS NULL OR _cap_giveback.amount < 0 THEN
		RAISE EXCEPTION 'amount to give back must be zero or positive: %', _cap_giveback.amount
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO e FROM wallet.event ev WHERE ev.id = _cap_giveback.event_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no event with id %', _cap_giveback.event_id USING ERRCODE = 'WL007';
	END IF;
	IF _cap_giveback.amount = 0 THEN
		RETURN;
	END IF;
	UPDATE wallet.cap_spend s SET spent = greatest(s.spent - _cap_giveback.amount, 0)
	  FROM wallet.cap c
	 WHERE c.wallet_id = e.wallet_id AND c.asset = e.asset AND c.created_at <= e.recorded_at
	   AND s.wallet_id = c.wallet_id AND s.asset = c.asset AND s.period = c.period
	   AND s.period_start = date_trunc(c.period, e.recorded_at, 'UTC')
	   AND s.dimension = coalesce(c.dimension, '')
	   AND s.dim_value = coalesce(e.dimensions ->> c.dimension, '');
	/* pricing (1.1): the max_per_period spend, and the usage of a refund that completes the event */
	PERFORM wallet._usage_giveback(e.id, _cap_giveback.amount);
	/* the refund is whole (1.1): alerts may recover */
	PERFORM wallet._alert_check(e.wallet_id, e.asset);
END
$$;
COMMENT ON FUNCTION wallet._cap_giveback(bigint, bigint) IS
	'after a refund (wallet_refund, which holds the balance row''s lock): gives spend back to the cap buckets the event was counted in, never below 0, gives back to its price''s usage counters (wallet._usage_giveback), and evaluates the alerts of its balance row';

/* a recharge row acked without its grant: the recharge is closed, the next debit below may open one */
CREATE FUNCTION wallet._alert_on_ack() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r wallet.recharge;
BEGIN
	SELECT x.* INTO r FROM wallet.recharge x WHERE x.open_outbox = NEW.id AND x.landed_at IS NULL;
	IF FOUND THEN
		PERFORM wallet._touch(r.wallet_id, r.asset);	/* the balance row's lock first, as a debit */
		UPDATE wallet.recharge x SET open_ref = NULL, open_outbox = NULL
		 WHERE x.wallet_id = r.wallet_id AND x.asset = r.asset AND x.open_outbox = NEW.id AND x.landed_at IS NULL;
		PERFORM wallet._alert_store(r.wallet_id, r.asset);
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION wallet._alert_on_ack() IS 'after a recharge row is acked: closes its recharge';
CREATE TRIGGER alert_on_ack AFTER UPDATE OF acked_at ON wallet.outbox
	FOR EACH ROW WHEN (OLD.acked_at IS NULL AND NEW.acked_at IS NOT NULL AND NEW.kind = 'recharge')
	EXECUTE FUNCTION wallet._alert_on_ack();

/* the alerts of 1.0's low_balance column, with their state now */
INSERT INTO wallet.alert (wallet_id, asset, threshold, from_limit, below)
SELECT a.wallet_id, a.asset, a.low_balance, true, wallet._available(a.wallet_id, a.asset) < a.low_balance
  FROM wallet.account a WHERE a.low_balance IS NOT NULL;
UPDATE wallet.account a SET (low_balance, alert_back, alert_until) =
	(SELECT l.level, l.back, l.until FROM wallet._alert_levels(a.wallet_id, a.asset) l)
 WHERE a.low_balance IS NOT NULL;
COMMENT ON COLUMN wallet.account.low_balance IS
	'the level a debit compares available with after it (highest alert not yet below, or recharge that may open); kept by wallet._alert_eval';

/* wallet_set_limit keeps its 1.0 meaning: all three limits; low_balance is one alert among the others */
CREATE OR REPLACE FUNCTION @extschema@.wallet_set_limit(customer text, asset text, overdraft numeric DEFAULT 0,
	low_balance numeric DEFAULT NULL, max_holds int DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
	lb bigint;
BEGIN
	IF overdraft IS NULL OR overdraft < 0 THEN
		RAISE EXCEPTION 'overdraft must be zero or positive: %', overdraft
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 0 for no overdraft.';
	END IF;
	IF overdraft IN ('NaN', 'Infinity') THEN
		RAISE EXCEPTION 'overdraft must be a finite number: %', overdraft
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 0 for no overdraft.';
	END IF;
	IF low_balance IN ('NaN', 'Infinity', '-Infinity') THEN
		RAISE EXCEPTION 'low_balance must be a finite number: %', low_balance
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use null for no low-balance alert.';
	END IF;
	IF low_balance IS NOT NULL THEN
		lb := wallet._minor_signed(asset, low_balance, 'low_balance');
	END IF;
	PERFORM @extschema@.wallet_set_overdraft(customer, asset, overdraft);
	PERFORM @extschema@.wallet_set_max_holds(customer, asset, max_holds);
	DELETE FROM wallet.alert al
	 WHERE al.wallet_id = w AND al.asset = wallet_set_limit.asset AND al.from_limit
	   AND al.threshold IS DISTINCT FROM lb;
	IF lb IS NOT NULL THEN
		INSERT INTO wallet.alert AS al (wallet_id, asset, threshold, from_limit)
		VALUES (w, asset, lb, true)
		ON CONFLICT ON CONSTRAINT alert_pkey DO UPDATE SET from_limit = true, enabled = true,
			below = al.below AND al.enabled;
	END IF;
	PERFORM wallet._alert_eval(w, asset, wallet._available(w, asset));
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_set_limit(text, text, numeric, numeric, int) IS
	'overdraft limit, low-balance alert and open-hold cap of a wallet in one asset, all three at once';

/* one limit, the others left as they are */
CREATE FUNCTION @extschema@.wallet_set_overdraft(customer text, asset text, overdraft_limit numeric)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
	od bigint;
	used bigint;
	reserved bigint;
BEGIN
	IF overdraft_limit IS NULL OR overdraft_limit < 0 THEN
		RAISE EXCEPTION 'overdraft limit must be zero or positive: %', overdraft_limit
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 0 for no overdraft.';
	END IF;
	IF overdraft_limit IN ('NaN', 'Infinity') THEN
		RAISE EXCEPTION 'overdraft limit must be a finite number: %', overdraft_limit
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 0 for no overdraft.';
	END IF;
	PERFORM wallet._minor(asset, 1, 'asset');	/* WL002 for an unknown asset */
	od := CASE WHEN overdraft_limit = 0 THEN 0 ELSE wallet._minor(asset, overdraft_limit, 'overdraft_limit') END;
	PERFORM wallet._touch(w, asset);
	SELECT a.overdraft INTO used FROM wallet.account a WHERE a.wallet_id = w AND a.asset = wallet_set_overdraft.asset;
	/*
	 * Overdraft room an open hold reserved is the hold's (binding holds): the
	 * limit cannot go below it any more than below the overdraft in use, so a
	 * capture within a hold never takes a balance past the limit.
	 */
	SELECT coalesce(sum(h.overdraft), 0) INTO reserved FROM wallet.hold h
	 WHERE h.wallet_id = w AND h.asset = wallet_set_overdraft.asset
	   AND h.status = 'open' AND h.expires_at > pg_catalog.now();
	IF od < used THEN
		RAISE EXCEPTION 'overdraft limit % is below the overdraft in use', overdraft_limit
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Customer "%s" uses %s of overdraft in %s.', left(customer, 100),
								  wallet._major(asset, used), asset),
				  HINT = 'Freeze the wallet (wallet_set_status) to stop further debits until it is repaid.';
	END IF;
	IF od < used + reserved THEN
		RAISE EXCEPTION 'overdraft limit % is below the overdraft room open holds reserve', overdraft_limit
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Customer "%s" uses %s of overdraft in %s, and open holds reserve %s more.',
								  left(customer, 100), wallet._major(asset, used), asset,
								  wallet._major(asset, reserved)),
				  HINT = 'A capture within its hold may use that room: release or capture the holds, then lower the limit.';
	END IF;
	UPDATE wallet.account a SET overdraft_limit = od
	 WHERE a.wallet_id = w AND a.asset = wallet_set_overdraft.asset;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_set_overdraft(text, text, numeric) IS
	'the overdraft limit of a wallet in one asset; other limits unchanged';

CREATE FUNCTION @extschema@.wallet_set_max_holds(customer text, asset text, max_holds int)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
BEGIN
	IF max_holds IS NOT NULL AND max_holds < 0 THEN
		RAISE EXCEPTION 'max_holds must not be negative: %', max_holds USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use null for no cap.';
	END IF;
	PERFORM wallet._minor(asset, 1, 'asset');	/* WL002 for an unknown asset */
	PERFORM wallet._touch(w, asset);
	UPDATE wallet.account a SET max_holds = wallet_set_max_holds.max_holds
	 WHERE a.wallet_id = w AND a.asset = wallet_set_max_holds.asset;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_set_max_holds(text, text, int) IS
	'the cap on open holds of a wallet in one asset (null: none); other limits unchanged';

CREATE FUNCTION @extschema@.wallet_set_alert(customer text, asset text, threshold numeric, enabled boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
	t bigint;
BEGIN
	IF threshold IS NULL OR enabled IS NULL THEN
		RAISE EXCEPTION 'threshold and enabled must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF threshold IN ('NaN', 'Infinity', '-Infinity') THEN
		RAISE EXCEPTION 'threshold must be a finite number: %', threshold
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give the balance the alert fires below; enabled => false turns an alert off.';
	END IF;
	t := wallet._minor_signed(asset, threshold, 'threshold');
	PERFORM wallet._touch(w, asset);
	INSERT INTO wallet.alert AS al (wallet_id, asset, threshold, enabled)
	VALUES (w, asset, t, wallet_set_alert.enabled)
	ON CONFLICT ON CONSTRAINT alert_pkey DO UPDATE SET enabled = excluded.enabled,
		below = al.below AND al.enabled AND excluded.enabled;
	PERFORM wallet._alert_eval(w, asset, wallet._available(w, asset));
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_set_alert(text, text, numeric, boolean) IS
	'a low-balance alert at threshold (any number per asset): low_balance below it, recovered back at or above it';

CREATE FUNCTION @extschema@.wallet_set_recharge(customer text, asset text, threshold numeric, target numeric,
	max_per_month numeric DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
	t bigint;
	tg bigint;
	mx bigint;
BEGIN
	PERFORM wallet._minor(asset, 1, 'asset');	/* WL002 for an unknown asset */
	PERFORM wallet._touch(w, asset);
	IF threshold IS NULL THEN
		DELETE FROM wallet.recharge x WHERE x.wallet_id = w AND x.asset = wallet_set_recharge.asset;
		PERFORM wallet._alert_eval(w, asset, wallet._available(w, asset));
		RETURN;
	END IF;
	IF target IS NULL THEN
		RAISE EXCEPTION 'target must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF threshold IN ('NaN', 'Infinity', '-Infinity') THEN
		RAISE EXCEPTION 'threshold must be a finite number: %', threshold
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use a null threshold to remove the recharge.';
	END IF;
	IF target IN ('NaN', 'Infinity', '-Infinity') THEN
		RAISE EXCEPTION 'target must be a finite number: %', target
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Give the balance a recharge tops up to.';
	END IF;
	t := wallet._minor_signed(asset, threshold, 'threshold');
	tg := wallet._minor_signed(asset, target, 'target');
	IF tg <= t THEN
		RAISE EXCEPTION 'target % is not above threshold %', target, threshold
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF max_per_month IS NOT NULL THEN
		IF max_per_month IN ('NaN', 'Infinity') THEN
			RAISE EXCEPTION 'max_per_month must be a finite number: %', max_per_month
				USING ERRCODE = 'invalid_parameter_value', HINT = 'Use null for no maximum.';
		END IF;
		IF max_per_month <= 0 THEN
			RAISE EXCEPTION 'max_per_month must be positive: %', max_per_month
				USING ERRCODE = 'invalid_parameter_value', HINT = 'Use null for no maximum.';
		END IF;
		mx := wallet._minor(asset, max_per_month, 'max_per_month');
	END IF;
	INSERT INTO wallet.recharge AS x (wallet_id, asset, threshold, target, max_per_month)
	VALUES (w, asset, t, tg, mx)
	ON CONFLICT ON CONSTRAINT recharge_pkey DO UPDATE SET threshold = excluded.threshold, target = excluded.target,
		max_per_month = excluded.max_per_month, limited_month = NULL, updated_at = now();
	PERFORM wallet._alert_eval(w, asset, wallet._available(w, asset));
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_set_recharge(text, text, numeric, numeric, numeric) IS
	'auto top-up: below threshold, a recharge outbox row for target - available; null threshold removes it';

CREATE FUNCTION @extschema@.wallet_limits(customer text)
RETURNS TABLE (asset text, overdraft_limit numeric, max_holds int, alerts numeric[],
	recharge_threshold numeric, recharge_target numeric, recharge_max_per_month numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT a.asset, wallet._major(a.asset, a.overdraft_limit), a.max_holds,
		   coalesce((SELECT array_agg(wallet._major(a.asset, al.threshold) ORDER BY al.threshold DESC)
					   FROM wallet.alert al
					  WHERE al.wallet_id = a.wallet_id AND al.asset = a.asset AND al.enabled), '{}'),
		   wallet._major(a.asset, r.threshold), wallet._major(a.asset, r.target),
		   wallet._major(a.asset, r.max_per_month)
	  FROM wallet.account a
	  LEFT JOIN wallet.recharge r ON r.wallet_id = a.wallet_id AND r.asset = a.asset
	 WHERE a.wallet_id = wallet._wallet_id(wallet_limits.customer)
	 ORDER BY a.asset
$$;
COMMENT ON FUNCTION @extschema@.wallet_limits(text) IS
	'the limits of a wallet per asset: overdraft, open-hold cap, alert thresholds, recharge rule';

CREATE FUNCTION @extschema@.wallet_outbox_claim(max_rows int DEFAULT 100, kinds text[] DEFAULT NULL)
RETURNS SETOF wallet.outbox
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF max_rows IS NULL OR max_rows < 1 THEN
		RAISE EXCEPTION 'max_rows must be positive: %', max_rows USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT FROM unnest(kinds) k WHERE octet_length(k) > 64) THEN
		RAISE EXCEPTION 'a kind is longer than 64 bytes' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The kinds are low_balance, recovered, declined, recharge and recharge_limit.';
	END IF;
	RETURN QUERY
	SELECT o.* FROM wallet.outbox o
	 WHERE o.acked_at IS NULL AND (kinds IS NULL OR o.kind = ANY (kinds))
	 ORDER BY o.id
	 LIMIT max_rows
	   FOR UPDATE SKIP LOCKED;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_outbox_claim(int, text[]) IS
	'unacked outbox rows, oldest first, locked (SKIP LOCKED) until the caller''s transaction ends';

/*
 * wallet_sweep also prunes the outbox and looks at alerts time may have moved:
 * the sweep of the release before is kept as wallet._sweep_balances, and the
 * API function adds its rows to that one's.
 */
ALTER FUNCTION @extschema@.wallet_sweep(timestamptz) RENAME TO _sweep_balances;
ALTER FUNCTION @extschema@._sweep_balances(timestamptz) SET SCHEMA wallet;
ALTER FUNCTION wallet._sweep_balances(timestamptz) SECURITY INVOKER;
REVOKE ALL ON FUNCTION wallet._sweep_balances(timestamptz) FROM PUBLIC, wallet_admin;
COMMENT ON FUNCTION wallet._sweep_balances(timestamptz) IS
	'what time has done to balances (expiries, resets, holds), written down; wallet_sweep calls it';

CREATE FUNCTION @extschema@.wallet_sweep(as_of timestamptz DEFAULT now())
RETURNS TABLE (action text, count bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
	x record;
BEGIN
	RETURN QUERY SELECT * FROM wallet._sweep_balances(as_of);
	DELETE FROM wallet.outbox o
	 WHERE o.acked_at IS NOT NULL
	   AND o.acked_at < (as_of AT TIME ZONE 'UTC' - current_setting('wallet.outbox_retention')::interval) AT TIME ZONE 'UTC';
	GET DIAGNOSTICS n = ROW_COUNT;
	/* expiries may have lowered balances, expired holds raised them */
	FOR x IN
		SELECT DISTINCT al.wallet_id, al.asset FROM wallet.alert al WHERE al.enabled
		UNION
		SELECT r.wallet_id, r.asset FROM wallet.recharge r WHERE r.open_ref IS NULL OR r.landed_at IS NOT NULL
		 ORDER BY 1, 2
	LOOP
		PERFORM wallet._touch(x.wallet_id, x.asset);
		PERFORM wallet._alert_eval(x.wallet_id, x.asset, wallet._available(x.wallet_id, x.asset));
	END LOOP;
	action := 'pruned_outbox';
	count := n;
	RETURN NEXT;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_sweep(timestamptz) IS
	'writes down what time has done (expiries, resets, expired holds), evaluates alerts, prunes acked outbox rows';

DO $$
DECLARE
	g record;
BEGIN
	FOR g IN SELECT * FROM (VALUES
		('@extschema@.wallet_set_limit(text, text, numeric, numeric, int)', 'wallet_admin'),
		('@extschema@.wallet_set_overdraft(text, text, numeric)', 'wallet_admin'),
		('@extschema@.wallet_set_max_holds(text, text, int)', 'wallet_admin'),
		('@extschema@.wallet_set_alert(text, text, numeric, boolean)', 'wallet_admin'),
		('@extschema@.wallet_set_recharge(text, text, numeric, numeric, numeric)', 'wallet_admin'),
		('@extschema@.wallet_limits(text)', 'wallet_app, wallet_finance, wallet_admin'),
		('@extschema@.wallet_outbox_claim(int, text[])', 'wallet_app, wallet_admin'),
		('@extschema@.wallet_sweep(timestamptz)', 'wallet_admin')) AS v(fn, roles)
	LOOP
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', g.fn);
		EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY DEFINER', g.fn);
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', g.fn, g.roles);
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION wallet._available(bigint, text), wallet._minor_signed(text, numeric, text),
	wallet._alert_levels(bigint, text), wallet._alert_store(bigint, text),
	wallet._outbox_put(text, text, text, bigint, bigint, jsonb), wallet._outbox_notify(text),
	wallet._alert_eval(bigint, text, bigint, bigint), wallet._alert_check(bigint, text),
	wallet._alert_raised(bigint, text, bigint), wallet._alert_on_ack() FROM PUBLIC;
GRANT SELECT ON wallet.alert, wallet.recharge TO wallet_finance;

/*
 * A backdated grant is recorded as of its creation (API.md 1.1, "Lifecycle"):
 * no line of it is dated before its grant line.  A grant already expired when
 * created is refused (22023; an external_ref replay still returns the grant
 * it made).  A recurring one counts the boundaries that fell before its
 * creation as applied and holds what the reset and rollover rules give at
 * creation with nothing drawn (wallet._grant_fold, the rule of grant.c): its
 * grant line is that, and its recurrence continues from there.  Grants of 1.0
 * keep their stored state and read as they did.
 */
CREATE FUNCTION wallet._grant_fold(amount bigint, effective_at timestamptz, expires_at timestamptz,
	recurrence interval, rollover_max bigint, as_of timestamptz, OUT resets bigint, OUT remaining bigint)
AS 'MODULE_PATHNAME', 'wallet_grant_fold' LANGUAGE C STABLE;
COMMENT ON FUNCTION wallet._grant_fold(bigint, timestamptz, timestamptz, interval, bigint, timestamptz) IS
	'a grant created at as_of: the resets before as_of counted as applied, and what it holds then';
REVOKE ALL ON FUNCTION wallet._grant_fold(bigint, timestamptz, timestamptz, interval, bigint, timestamptz) FROM PUBLIC;

/* wallet_grant records a grant as of its creation with wallet._grant_fold: in the scoped-credits section, which re-creates it */

/* ------------------------------------------------------------ scoped credits (#19) */

/*
 * A grant may serve only some debits: scope {"meters": [...], "dimensions":
 * {...}} (src/scope.c).  Null (every 1.0 grant) serves every debit.  The
 * drawdown reads it with the grant and takes the grants that do not serve a
 * debit out of both its availability check and its draw; among those that
 * do, a scoped grant goes before an unscoped one of the same priority and
 * expiry.  A scoped grant does not repay overdraft: the debt may have come
 * from a debit it could not have served.
 */
ALTER TABLE wallet.grant_block ADD COLUMN scope jsonb;
COMMENT ON COLUMN wallet.grant_block.scope IS
	'null: serves every debit; else {"meters": [exact or prefix.*], "dimensions": {key: text}} as wallet._scope_check stored it';

CREATE FUNCTION wallet._scope_check(scope jsonb) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'wallet_scope_check' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wallet._scope_check(jsonb) IS
	'the stored form of a grant scope (null for null or {}), or 22023 naming the malformed field';
REVOKE ALL ON FUNCTION wallet._scope_check(jsonb) FROM PUBLIC;

/*
 * wallet_grant gains scope as its last argument: the 12-argument signature
 * goes (an overload would make every call of it ambiguous), its calls still
 * bind.  This is 1.1's one wallet_grant: 1.0's body with external_ref looked
 * up in the customer's own grants (hardening), the grant recorded as of its
 * creation (top-up loop: wallet._grant_fold), the recharge it answers closed
 * and the alerts evaluated (top-up loop), and the scope checked, compared,
 * stored, and kept from repaying overdraft.
 */
DROP FUNCTION @extschema@.wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text,
	numeric, text, interval, numeric, jsonb);
CREATE FUNCTION @extschema@.wallet_grant(customer text, asset text, amount numeric,
	priority int DEFAULT 100, expires_at timestamptz DEFAULT NULL,
	effective_at timestamptz DEFAULT now(), category text DEFAULT 'paid',
	unit_revenue numeric DEFAULT NULL, external_ref text DEFAULT NULL,
	recurrence interval DEFAULT NULL, rollover_max numeric DEFAULT 0,
	metadata jsonb DEFAULT '{}', scope jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
	amt bigint := wallet._minor(asset, amount);
	sc jsonb := wallet._scope_check(scope);
	fold record;
	roll bigint;
	rev numeric;
	g wallet.grant_block;
	acct wallet.account;
	st text;
	repay bigint;
	ceiling numeric;
	eff timestamptz := coalesce(effective_at, now());
BEGIN
	IF category IS NULL OR category NOT IN ('paid', 'bundled', 'promotional') THEN
		RAISE EXCEPTION 'unknown grant category "%"', left(category, 64) USING ERRCODE = 'invalid_parameter_value',
			HINT = 'The categories are paid, bundled and promotional.';
	END IF;
	IF priority IS NULL THEN
		RAISE EXCEPTION 'priority must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF expires_at IS NOT NULL AND expires_at IN ('infinity', '-infinity') OR eff IN ('infinity', '-infinity') THEN
		RAISE EXCEPTION 'grant times must be finite' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF expires_at IS NOT NULL AND expires_at <= eff THEN
		RAISE EXCEPTION 'expires_at % is not after effective_at %', expires_at, eff
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF recurrence IS NOT NULL AND (recurrence <= interval '0' OR eff + recurrence <= eff) THEN
		RAISE EXCEPTION 'recurrence must be a positive interval: %', recurrence
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF rollover_max IS NULL OR rollover_max < 0 THEN
		RAISE EXCEPTION 'rollover_max must be zero or positive: %', rollover_max
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	roll := CASE WHEN rollover_max = 0 THEN 0 ELSE wallet._minor(asset, rollover_max, 'rollover_max') END;
	IF unit_revenue IS NOT NULL AND (unit_revenue = 'NaN' OR unit_revenue IN ('Infinity', '-Infinity') OR unit_revenue < 0) THEN
		RAISE EXCEPTION 'invalid unit_revenue %', unit_revenue USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF metadata IS NULL OR jsonb_typeof(metadata) <> 'object' THEN
		RAISE EXCEPTION 'metadata must be a json object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	rev := coalesce(unit_revenue, CASE WHEN category = 'paid'
		THEN (SELECT a.unit_value FROM wallet.asset a WHERE a.code = wallet_grant.asset) ELSE 0 END);

	SELECT ww.status INTO st FROM wallet.wallet ww WHERE ww.id = w;
	IF st = 'closed' THEN
		RAISE EXCEPTION 'wallet of customer "%" is closed', customer USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;

	PERFORM wallet._touch(w, asset);

	IF external_ref IS NOT NULL THEN
		/* per customer (1.1): another customer's use of the ref is neither waited on nor named */
		SELECT * INTO g FROM wallet.grant_block gb
		 WHERE gb.wallet_id = w AND gb.external_ref = wallet_grant.external_ref;
		IF FOUND THEN
			IF g.asset <> wallet_grant.asset OR g.amount <> amt
			   OR g.category <> wallet_grant.category OR g.priority <> wallet_grant.priority
			   OR g.expires_at IS DISTINCT FROM wallet_grant.expires_at
			   OR g.recurrence IS DISTINCT FROM wallet_grant.recurrence
			   OR g.rollover_max <> roll OR g.unit_revenue <> rev
			   OR g.scope IS DISTINCT FROM sc THEN
				RAISE EXCEPTION 'external_ref "%" was used for a different grant', external_ref
					USING ERRCODE = 'WL004', DETAIL = format('It is grant %s.', g.id);
			END IF;
			RETURN g.id;
		END IF;
	END IF;

	/*
	 * the balance must stay countable in 64 bits, whatever recurring grants
	 * refill to: a reset carries what open holds reserve on a grant (at most
	 * what it holds) whole, on top of a full refill (grant.c, GrantAdvance), so
	 * a recurring grant counts twice its amount + rollover_max (or what it
	 * holds and one refill, when more); a hold keeps its grants within that
	 * (hold.c, HoldCarryFits)
	 */
	SELECT coalesce(sum(CASE WHEN gb.recurrence IS NULL THEN gb.remaining
							 ELSE greatest(gb.remaining, gb.amount + gb.rollover_max) + gb.amount + gb.rollover_max END), 0)
		   + CASE WHEN wallet_grant.recurrence IS NULL THEN amt ELSE 2 * (amt + roll::numeric) END
	  INTO ceiling
	  FROM wallet.grant_block gb
	 WHERE gb.wallet_id = w AND gb.asset = wallet_grant.asset AND gb.closed_at IS NULL;
	IF ceiling > 9223372036854775807 THEN
		RAISE EXCEPTION 'grant of % % would take the balance of customer "%" out of range', amount, asset, left(customer, 100)
			USING ERRCODE = 'numeric_value_out_of_range',
				  DETAIL = 'A balance is kept as a signed 64-bit count of minor units.';
	END IF;

	/* recorded as of its creation (1.1): one never usable is refused */
	IF expires_at IS NOT NULL AND expires_at <= now() THEN
		RAISE EXCEPTION 'grant already expired at creation: expires_at % is not after now', expires_at
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A grant that was never usable holds nothing: give an expires_at after now().';
	END IF;
	/* the resets whose boundaries fell before now are folded into what it holds (wallet._grant_fold) */
	SELECT f.resets, f.remaining INTO fold
	  FROM wallet._grant_fold(amt, eff, expires_at, recurrence, roll, now()) f;

	INSERT INTO wallet.grant_block (wallet_id, asset, category, priority, amount, remaining,
		unit_revenue, effective_at, expires_at, recurrence, rollover_max, external_ref, metadata, scope, resets)
	VALUES (w, asset, category, priority, amt, fold.remaining, rev, eff, expires_at, recurrence, roll,
		external_ref, metadata, sc, fold.resets)
	RETURNING * INTO g;
	INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
	VALUES (greatest(now(), eff), w, asset, g.id, 'grant', g.remaining);

	/* a new grant first repays overdraft, when it is live now and serves every debit */
	SELECT * INTO acct FROM wallet.account a WHERE a.wallet_id = w AND a.asset = wallet_grant.asset;
	IF acct.overdraft > 0 AND sc IS NULL AND eff <= now() AND (expires_at IS NULL OR expires_at > now()) THEN
		repay := least(acct.overdraft, g.remaining);
		UPDATE wallet.grant_block gb SET remaining = remaining - repay WHERE gb.id = g.id;
		UPDATE wallet.account a SET overdraft = overdraft - repay
		 WHERE a.wallet_id = w AND a.asset = wallet_grant.asset;
		INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
		VALUES (now(), w, asset, g.id, 'repay', -repay), (now(), w, asset, NULL, 'repay', repay);
	END IF;

	/* top-up loop: the grant closes the recharge it answers, and may bring alerts back */
	IF external_ref IS NOT NULL THEN
		UPDATE wallet.recharge x SET landed_at = greatest(eff, now())
		 WHERE x.wallet_id = w AND x.asset = wallet_grant.asset AND x.open_ref = wallet_grant.external_ref
		   AND x.landed_at IS NULL;
	END IF;
	PERFORM wallet._alert_check(w, asset);
	RETURN g.id;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text,
	numeric, text, interval, numeric, jsonb, jsonb) IS
	'adds a block of value, serving only the debits its scope names (null: all); idempotent per external_ref; an unscoped grant repays overdraft first';

/*
 * Refunded value whose grant can no longer take it back goes to a new grant
 * of the same category and the same scope (1.0 made it unscoped).  Like every
 * new unscoped grant it first repays outstanding overdraft.  The caller holds
 * the lock.
 */
CREATE OR REPLACE FUNCTION wallet._refund_grant(w bigint, asset text, event_id bigint, source bigint,
	category text, priority int, unit_revenue numeric, amount bigint)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	gid bigint;
	od bigint;
	repay bigint;
	sc jsonb := (SELECT gb.scope FROM wallet.grant_block gb WHERE gb.id = source);
BEGIN
	INSERT INTO wallet.grant_block AS gb (wallet_id, asset, category, priority, amount, remaining,
		unit_revenue, effective_at, metadata, scope)
	VALUES (w, asset, category, priority, amount, amount, unit_revenue, now(),
		jsonb_strip_nulls(jsonb_build_object('refund_of_event', event_id, 'refund_of_grant', source)), sc)
	RETURNING gb.id INTO gid;
	INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, event_id, kind, amount)
	VALUES (now(), w, asset, gid, event_id, 'refund', amount);

	SELECT a.overdraft INTO od FROM wallet.account a
	 WHERE a.wallet_id = w AND a.asset = _refund_grant.asset;
	IF od > 0 AND sc IS NULL THEN
		repay := least(od, amount);
		UPDATE wallet.grant_block gb SET remaining = gb.remaining - repay WHERE gb.id = gid;
		UPDATE wallet.account a SET overdraft = a.overdraft - repay
		 WHERE a.wallet_id = w AND a.asset = _refund_grant.asset;
		INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
		VALUES (now(), w, asset, gid, 'repay', -repay), (now(), w, asset, NULL, 'repay', repay);
	END IF;
	RETURN gid;
END
$$;

/* finance sees each grant's scope (a column added at the end: the others keep their meaning) */
CREATE OR REPLACE VIEW wallet.grants AS
SELECT g.id, w.customer, g.asset, g.category, g.priority,
	   wallet._major(g.asset, g.amount) AS amount,
	   wallet._major(g.asset, g.remaining OPERATOR(pg_catalog.+) coalesce(p.amount, 0)) AS remaining,
	   g.unit_revenue, g.effective_at, g.expires_at, g.voided_at, g.recurrence,
	   wallet._major(g.asset, g.rollover_max) AS rollover_max, g.external_ref, g.metadata, g.created_at,
	   g.scope
  FROM wallet.grant_block g
  JOIN wallet.wallet w ON w.id OPERATOR(pg_catalog.=) g.wallet_id
  LEFT JOIN (SELECT pp.grant_id, pg_catalog.sum(pp.amount)::bigint AS amount
			   FROM wallet._pending(pg_catalog.now()) pp GROUP BY pp.grant_id) p
	ON p.grant_id OPERATOR(pg_catalog.=) g.id;
COMMENT ON VIEW wallet.grants IS
	'grants, with remaining as of now (resets applied, expired ones at 0) and the scope of each (null: serves every debit)';

CREATE FUNCTION @extschema@.wallet_available(customer text, meter text, dimensions jsonb DEFAULT '{}')
RETURNS TABLE (asset text, available numeric)
	AS 'MODULE_PATHNAME', 'wallet_available' LANGUAGE C STABLE;
COMMENT ON FUNCTION @extschema@.wallet_available(text, text, jsonb) IS
	'per asset, the value a debit of that meter (null: wallet_debit) with those dimensions sees now: the grants that serve it, less holds and overdraft in use (not spend caps nor overdraft room: wallet_quote''s would_approve judges an amount)';

CREATE FUNCTION @extschema@.wallet_credits(customer text)
RETURNS TABLE (grant_id bigint, asset text, category text, amount numeric, remaining numeric,
	reserved numeric, expires_at timestamptz, next_reset timestamptz, scope jsonb)
	AS 'MODULE_PATHNAME', 'wallet_credits' LANGUAGE C STABLE;
COMMENT ON FUNCTION @extschema@.wallet_credits(text) IS
	'the live grants with value left, per asset in drawdown order: remaining, reserved by open holds, expiry, next reset, scope';

DO $$
DECLARE
	g record;
BEGIN
	FOR g IN SELECT * FROM (VALUES
		('@extschema@.wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text, numeric, text, interval, numeric, jsonb, jsonb)', 'wallet_admin'),
		('@extschema@.wallet_available(text, text, jsonb)', 'wallet_app, wallet_finance, wallet_admin'),
		('@extschema@.wallet_credits(text)', 'wallet_app, wallet_finance, wallet_admin')) AS v(fn, roles)
	LOOP
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', g.fn);
		EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY DEFINER', g.fn);
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', g.fn, g.roles);
	END LOOP;
END
$$;

/* ------------------------------------------------------------ pricing (#20) */

/*
 * Usage counters of tiered rules inside a matrix: 1.0 kept them under the
 * rate's position ("llm[0]", "llm[1][default]"), so a version that reordered
 * the rates gave one rate's usage to another.  1.1 keys them by the rate's
 * match ('llm{"direction":"in"}'; a default counts on its matrix's own key).
 * Each 1.0 counter moves to the key of the rate its position named in the
 * version that priced the period's last event of its meter (wallet.event's
 * price_id; the event that occurred last, the last recorded among those),
 * adding to what is there already: every number is kept.  A counter without
 * such an event (none is left to read) goes by the version in force at the
 * period's end or now (the customer's own, its plan's, else the default).
 * Not the version in force alone: one set since the period's last event may
 * list the rates in another order.
 */
/* debits that read a counter finish first; those that come later wait for the move */
LOCK TABLE wallet.usage_counter IN ACCESS EXCLUSIVE MODE;

/*
 * A counter's key is its meter and, apart, the counter of the meter's rule
 * (counter: '' the rule's own usage, '{"direction":"in"}' a matrix rate's,
 * '#max:USD' what max_per_period counted).  1.0 appended the suffix to the
 * meter, and a meter named like another meter's counter ('api#max:USD',
 * 'tok{"direction":"in"}') counted on it.
 */
ALTER TABLE wallet.usage_counter ADD COLUMN counter text NOT NULL DEFAULT '',
	DROP CONSTRAINT usage_counter_pkey,
	ADD PRIMARY KEY (wallet_id, meter, counter, period, period_start);
COMMENT ON COLUMN wallet.usage_counter.counter IS
	'which counter of the meter''s rule: '''' its own usage, a matrix rate''s match, #max:ASSET for max_per_period';

/*
 * A max_per_period counter that the 1.1 library kept on a 1.0 schema (meter
 * || '{match}...#max:ASSET') splits at the longest meter with a
 * max_per_period price that the key extends so.
 */
UPDATE wallet.usage_counter u
   SET meter = m.base,
	   counter = pg_catalog.substr(u.meter, pg_catalog.length(m.base) OPERATOR(pg_catalog.+) 1)
  FROM (SELECT u2.ctid AS row_id,
			   (SELECT p.meter
				  FROM (SELECT DISTINCT pr.meter FROM wallet.price pr
						 WHERE pr.rule OPERATOR(pg_catalog.@?) '$.**.max_per_period') p
				 WHERE pg_catalog.length(p.meter) OPERATOR(pg_catalog.<) pg_catalog.length(u2.meter)
				   AND pg_catalog.left(u2.meter, pg_catalog.length(p.meter)) OPERATOR(pg_catalog.=) p.meter
				   AND pg_catalog.substr(u2.meter, pg_catalog.length(p.meter) OPERATOR(pg_catalog.+) 1)
					   OPERATOR(pg_catalog.~) '^(\{.*\})?#max:[^#]+$'
				 ORDER BY pg_catalog.length(p.meter) DESC LIMIT 1) AS base
		  FROM wallet.usage_counter u2
		 WHERE u2.meter OPERATOR(pg_catalog.~) '#max:[^#]+$') m
 WHERE u.ctid OPERATOR(pg_catalog.=) m.row_id AND m.base IS NOT NULL;

CREATE FUNCTION wallet._counter_suffix_11(rule jsonb, asset text, legacy text) RETURNS text
	AS 'MODULE_PATHNAME', 'wallet_counter_suffix_11' LANGUAGE C STABLE STRICT;

DO $migrate$
DECLARE
	c record;
	base text;
	at timestamptz;
	v record;
	suffix text;
BEGIN
	FOR c IN
		/*
		 * the legacy counters with their meter's base (the longest price meter
		 * the key extends), then the price of the period's last event of that
		 * meter, all found in one pass over the events of those wallets
		 */
		WITH legacy AS (
			SELECT u.wallet_id, u.meter, u.period, u.period_start, u.quantity, w.customer,
				   (SELECT p.meter
					  FROM (SELECT DISTINCT pr.meter FROM wallet.price pr) p
					 WHERE pg_catalog.left(u.meter, pg_catalog.length(p.meter)) OPERATOR(pg_catalog.=) p.meter
					   AND pg_catalog.substr(u.meter, pg_catalog.length(p.meter) OPERATOR(pg_catalog.+) 1)
						   OPERATOR(pg_catalog.~) '^(\[([0-9]+|default)\])+$'
					 ORDER BY pg_catalog.length(p.meter) DESC LIMIT 1) AS base
			  FROM wallet.usage_counter u JOIN wallet.wallet w ON w.id OPERATOR(pg_catalog.=) u.wallet_id
			 WHERE u.counter OPERATOR(pg_catalog.=) '' AND u.meter OPERATOR(pg_catalog.~) '\]$'),
		periods AS (
			SELECT DISTINCT l.wallet_id, l.base, l.period, l.period_start FROM legacy l
			 WHERE l.base IS NOT NULL),
		last_priced AS MATERIALIZED (
			/*
			 * an event counts in the UTC calendar period its occurred_at is in
			 * (price.c, PeriodStart): each event's start of each kind of
			 * period is computed once and the last event of each period
			 * kept, then matched to the counters by equality (a hash join:
			 * matching every event against every counter period grew as
			 * their product)
			 */
			SELECT DISTINCT ON (e.wallet_id, e.meter, kinds.period, x.ps)
				   e.wallet_id, e.meter AS base, kinds.period, x.ps AS period_start, e.price_id
			  FROM (SELECT DISTINCT pk.period FROM periods pk) kinds
			 CROSS JOIN wallet.event e
			 CROSS JOIN LATERAL (SELECT pg_catalog.timezone('UTC', pg_catalog.date_trunc(kinds.period,
									pg_catalog.timezone('UTC', e.occurred_at))) AS ps) x
			 WHERE e.price_id IS NOT NULL
			   AND (e.wallet_id, e.meter) IN (SELECT pw.wallet_id, pw.base FROM periods pw)
			 ORDER BY e.wallet_id, e.meter, kinds.period, x.ps, e.occurred_at DESC, e.id DESC)
		SELECT l.*, lp.price_id
		  FROM legacy l
		  LEFT JOIN last_priced lp
			ON lp.wallet_id OPERATOR(pg_catalog.=) l.wallet_id AND lp.base OPERATOR(pg_catalog.=) l.base
		   AND lp.period OPERATOR(pg_catalog.=) l.period AND lp.period_start OPERATOR(pg_catalog.=) l.period_start
	LOOP
		base := c.base;
		CONTINUE WHEN base IS NULL;
		SELECT p.rule, p.asset INTO v FROM wallet.price p WHERE p.id OPERATOR(pg_catalog.=) c.price_id;
		IF NOT FOUND THEN
			/* the period's last instant, in UTC calendar arithmetic (whatever the TimeZone) */
			at := LEAST(pg_catalog.now(), pg_catalog.timezone('UTC', pg_catalog.timezone('UTC', c.period_start)
						OPERATOR(pg_catalog.+) ('1 ' OPERATOR(pg_catalog.||) c.period)::interval)
						OPERATOR(pg_catalog.-) interval '1 microsecond');
			SELECT p.rule, p.asset INTO v
			  FROM wallet.price p
			 WHERE p.meter OPERATOR(pg_catalog.=) base AND p.effective_at OPERATOR(pg_catalog.<=) at
			   AND (p.customer OPERATOR(pg_catalog.=) c.customer
					OR p.plan OPERATOR(pg_catalog.=) (
						SELECT pa.plan FROM wallet.plan_assignment pa
						 WHERE pa.wallet_id OPERATOR(pg_catalog.=) c.wallet_id
						   AND pa.effective_at OPERATOR(pg_catalog.<=) at
						 ORDER BY pa.effective_at DESC LIMIT 1)
					OR (p.plan IS NULL AND p.customer IS NULL))
			 ORDER BY p.customer IS NOT NULL DESC, p.plan IS NOT NULL DESC, p.effective_at DESC, p.id DESC
			 LIMIT 1;
			CONTINUE WHEN NOT FOUND;
		END IF;
		suffix := wallet._counter_suffix_11(v.rule, v.asset,
			pg_catalog.substr(c.meter, pg_catalog.length(base) OPERATOR(pg_catalog.+) 1));
		CONTINUE WHEN suffix IS NULL;
		DELETE FROM wallet.usage_counter u
		 WHERE u.wallet_id OPERATOR(pg_catalog.=) c.wallet_id AND u.meter OPERATOR(pg_catalog.=) c.meter
		   AND u.counter OPERATOR(pg_catalog.=) ''
		   AND u.period OPERATOR(pg_catalog.=) c.period AND u.period_start OPERATOR(pg_catalog.=) c.period_start;
		INSERT INTO wallet.usage_counter AS u (wallet_id, meter, counter, period, period_start, quantity)
		VALUES (c.wallet_id, base, suffix, c.period, c.period_start, c.quantity)
		ON CONFLICT (wallet_id, meter, counter, period, period_start)
		DO UPDATE SET quantity = u.quantity OPERATOR(pg_catalog.+) excluded.quantity;
	END LOOP;
END
$migrate$;

DROP FUNCTION wallet._counter_suffix_11(jsonb, text, text);

/*
 * The price-change window: a version takes effect at the later of its
 * effective_at and its commit.  Events priced before the commit cannot see
 * it, so one set for now (the default, its transaction's start) or for a time
 * that passes before it commits is stored as effective from its commit (the
 * clock read as the transaction commits): an event is then priced by its
 * occurred_at alone, however its pricing and the commit interleave.  A version
 * backdated on purpose (effective_at before its transaction began) keeps it.
 */
CREATE FUNCTION wallet._price_in_force() RETURNS trigger
	AS 'MODULE_PATHNAME', 'wallet_price_in_force' LANGUAGE C;
COMMENT ON FUNCTION wallet._price_in_force() IS
	'at commit: a price version set for now (or a time already passed) takes effect at its commit';
REVOKE ALL ON FUNCTION wallet._price_in_force() FROM PUBLIC;
CREATE CONSTRAINT TRIGGER price_in_force AFTER INSERT ON wallet.price
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wallet._price_in_force();
COMMENT ON TRIGGER price_in_force ON wallet.price IS
	'a version takes effect at the later of its effective_at and its commit';

/*
 * The same window for plans: wallet_assign_plan is effective-dated like
 * prices, so an assignment set for now (the default, its transaction's
 * start) or for a time that passes before it commits is stored as effective
 * from its commit (plan.c).  One backdated on purpose keeps its effective_at.
 */
CREATE FUNCTION wallet._plan_in_force() RETURNS trigger
	AS 'MODULE_PATHNAME', 'wallet_plan_in_force' LANGUAGE C;
COMMENT ON FUNCTION wallet._plan_in_force() IS
	'at commit: a plan assignment set for now (or a time already passed) takes effect at its commit';
REVOKE ALL ON FUNCTION wallet._plan_in_force() FROM PUBLIC;
CREATE CONSTRAINT TRIGGER plan_in_force AFTER INSERT ON wallet.plan_assignment
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wallet._plan_in_force();
COMMENT ON TRIGGER plan_in_force ON wallet.plan_assignment IS
	'an assignment takes effect at the later of its effective_at and its commit';

/*
 * Every backend compiled its prices for a 1.0 schema (1.0 counter keys): the
 * price trigger empties their caches at commit, and each reads the schema
 * release again with its next price.
 */
UPDATE wallet.price SET meter = meter WHERE false;

/* ------------------------------------------------------------ reads (#21) */

/*
 * Reads for billing pages: paged statements and usage, at any history size.
 *
 * Both read what they have summed once instead of the whole history:
 *	 wallet.statement_mark	the balance of a wallet and asset before a time,
 *							every few hundred lines;
 *	 wallet.usage_sum		events, quantity and amount per UTC hour and per
 *							UTC day, meter and dimensions, of the events
 *							recorded (and refunds made) before a wallet's
 *							usage_mark.upto.
 * The reads write them (they run with the owner's rights) for times that are
 * settled: before the start of the oldest transaction running
 * (wallet._settled(), src/reads.c), so no line or event can still appear
 * there.  That holds because every line, event and refund is dated at or
 * after the start of the transaction that writes it, but lines time has made
 * (expiries, resets, which the reads compute whether written down or not) and
 * hold and release lines (which move no balance): a new kind of line dated
 * in the past must be one of those, or drop the marks after it.
 *
 * The debit writes nothing for them: both are caches of the ledger and the
 * events, rebuilt on demand when missing (after an upgrade, on a restore), and
 * a read that may not write (read only, a standby, REPEATABLE READ) uses what
 * is there and sums the rest.  The debit gains two index entries on
 * wallet.event: (wallet_id, recorded_at) finds a wallet's lines and events by
 * time, (line_id) the line a page goes on after.
 */

CREATE INDEX event_wallet_recorded ON wallet.event (wallet_id, recorded_at);

/*
 * A page's cursor is a line id, and a line carried on an event must be found
 * by it.  From 1.1 events take their ids from the lines' sequence and the line
 * an event carries has the event's id (line_id = id; src/hotpath.c,
 * EventIdsShared): event_pkey finds it, and the debit writes no index entry
 * for it.  event_line holds the lines carried before (1.0's, line_id <> id),
 * and any a writer gave an id of its own.  The sequence starts past every id
 * of both, so no event id is ever a line id of another row.
 */
CREATE INDEX event_line ON wallet.event (line_id) WHERE line_id IS NOT NULL AND line_id <> id;
/*
 * Every line id and event id so far came from one of the two sequences (a
 * fresh install has used neither: its first id stays 1).  On a shard an
 * event id also carries its customer's routing bits (48..62, src/shard.c),
 * which the sequence must not take: its next value would carry one
 * customer's bits, and the routing trigger keeps bits it finds.
 */
SELECT pg_catalog.setval('wallet.line_id_seq', greatest(
	(SELECT last_value FROM wallet.line_id_seq), (SELECT last_value FROM wallet.event_id_seq),
	(SELECT max(id OPERATOR(pg_catalog.&) 281474976710655) FROM wallet.event)),
	(SELECT is_called FROM wallet.line_id_seq) OR (SELECT is_called FROM wallet.event_id_seq)
	OR EXISTS (SELECT FROM wallet.event));
ALTER TABLE wallet.event ALTER COLUMN id SET DEFAULT pg_catalog.nextval('wallet.line_id_seq'::regclass);
/* a wallet's stored lines by time, and a line by id (line_wallet's columns lead the first) */
CREATE INDEX line_wallet_at ON wallet.line_stored (wallet_id, asset, at, id);
CREATE INDEX line_stored_id ON wallet.line_stored (id);
DROP INDEX wallet.line_wallet;
CREATE INDEX refund_wallet ON wallet.refund (wallet_id, at);

CREATE TABLE wallet.statement_mark (
	wallet_id	bigint NOT NULL,
	asset		text NOT NULL,
	at			timestamptz NOT NULL,
	balance		bigint NOT NULL,
	PRIMARY KEY (wallet_id, asset, at)
);
COMMENT ON TABLE wallet.statement_mark IS
	'cache for wallet_statement: balance = the sum of the ledger lines of the wallet and asset dated before at (holds and releases count 0)';

CREATE TABLE wallet.usage_mark (
	wallet_id	bigint PRIMARY KEY,
	upto		timestamptz NOT NULL
);
COMMENT ON TABLE wallet.usage_mark IS
	'cache for wallet_usage: the events of the wallet recorded before upto, and its refunds made before upto, are summed in wallet.usage_sum';

CREATE TABLE wallet.usage_sum (
	wallet_id	bigint NOT NULL,
	span		text NOT NULL CHECK (span IN ('hour', 'day')),
	at			timestamptz NOT NULL,
	asset		text NOT NULL,
	meter		text,
	dimensions	jsonb NOT NULL,
	events		bigint NOT NULL,
	quantity	numeric,
	amount		numeric NOT NULL,
	UNIQUE NULLS NOT DISTINCT (wallet_id, span, at, asset, meter, dimensions)
);
COMMENT ON TABLE wallet.usage_sum IS
	'cache for wallet_usage: events, quantity and amount (minor units) net of refunds, per UTC hour and per UTC day (span) of occurred_at, asset, meter and request dimensions';

SELECT pg_catalog.pg_extension_config_dump('wallet.statement_mark', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.usage_mark', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.usage_sum', '');
REVOKE ALL ON wallet.statement_mark, wallet.usage_mark, wallet.usage_sum FROM PUBLIC;
GRANT SELECT ON wallet.statement_mark, wallet.usage_mark, wallet.usage_sum TO wallet_finance;

CREATE FUNCTION wallet._settled() RETURNS timestamptz
AS 'MODULE_PATHNAME', 'wallet_settled' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION wallet._settled() IS
	'start of the oldest transaction running: no line or event can still appear before it; null when this transaction must not write caches';
REVOKE ALL ON FUNCTION wallet._settled() FROM PUBLIC;

/* the settled time, or null while a prepared transaction may still commit lines */
/*
 * The running backends first, then the prepared transactions: a transaction
 * is listed as prepared before its backend stops reporting it as running, so
 * one that prepares between the two reads is seen by one of them (asked the
 * other way round, neither saw it: test/scripts/settled_prepare.sh).
 */
CREATE FUNCTION wallet._settled_time() RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	settled timestamptz := wallet._settled();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts) THEN
		RETURN NULL;
	END IF;
	RETURN settled;
END
$$;
COMMENT ON FUNCTION wallet._settled_time() IS
	'wallet._settled(), null while a prepared transaction exists';
REVOKE ALL ON FUNCTION wallet._settled_time() FROM PUBLIC;

/*
 * The ledger lines of a wallet and asset dated in [lo, hi) and not after now,
 * as wallet_statement reads them: stored lines, the debit lines carried on
 * events, and the lines time has made that no sweep has written (id null).
 * delta is what the line does to the balance (holds and releases: 0).
 */
CREATE FUNCTION wallet._lines(w bigint, a text, lo timestamptz, hi timestamptz)
RETURNS TABLE (id bigint, at timestamptz, grant_id bigint, event_id bigint, hold_id bigint,
	kind text, amount bigint, delta bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT l.id, l.at, l.grant_id, l.event_id, l.hold_id, l.kind, l.amount,
		   CASE WHEN l.kind IN ('hold', 'release') THEN 0 ELSE l.amount END
	  FROM wallet.line_stored l
	 WHERE l.wallet_id = _lines.w AND l.asset = _lines.a
	   AND l.at >= _lines.lo AND l.at < _lines.hi AND l.at <= now()
	UNION ALL
	SELECT e.line_id, e.recorded_at, e.line_grant_id, e.id, e.hold_id, 'debit', -e.amount, -e.amount
	  FROM wallet.event e
	 WHERE e.wallet_id = _lines.w AND e.asset = _lines.a AND e.line_id IS NOT NULL
	   AND e.recorded_at >= _lines.lo AND e.recorded_at < _lines.hi AND e.recorded_at <= now()
	UNION ALL
	SELECT NULL, p.at, p.grant_id, NULL, NULL, p.kind, p.amount, p.amount
	  FROM wallet._pending(now(), _lines.w) p
	 WHERE p.asset = _lines.a AND p.at >= _lines.lo AND p.at < _lines.hi
$$;
COMMENT ON FUNCTION wallet._lines(bigint, text, timestamptz, timestamptz) IS
	'ledger lines of a wallet and asset dated in [lo, hi), written or not, with what each does to the balance';
REVOKE ALL ON FUNCTION wallet._lines(bigint, text, timestamptz, timestamptz) FROM PUBLIC;

/*
 * Extend the statement marks of a wallet and asset up to settled: one mark
 * every 500 lines after the last one.  A mark never passes a reset that no
 * sweep has written (the time of a pending reset that adds up several periods
 * moves on with the clock).  One writer per wallet and asset at a time: a
 * reader that finds another one writing goes on without (a read never waits
 * for another).
 */
CREATE FUNCTION wallet._statement_marks(w bigint, a text, settled timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	last_at timestamptz := '-infinity';
	last_bal bigint := 0;
	upto timestamptz := settled;
BEGIN
	IF settled IS NULL THEN
		RETURN;
	END IF;
	SELECT least(upto, min(p.at)) INTO upto
	  FROM wallet._pending(now(), w) p WHERE p.asset = a AND p.kind = 'reset';
	/*
	 * nor the start of a hold whose ttl has passed and that no sweep has
	 * closed: the sweep writes what it reserved on a grant expired or voided
	 * meanwhile at the hold's expiry, where wallet._pending dates all of the
	 * grant's rest at the grant's expiry or void
	 */
	SELECT least(upto, min(h.created_at)) INTO upto
	  FROM wallet.hold h
	 WHERE h.wallet_id = w AND h.asset = a AND h.status = 'open' AND h.expires_at <= now();
	SELECT m.at, m.balance INTO last_at, last_bal
	  FROM wallet.statement_mark m
	 WHERE m.wallet_id = w AND m.asset = a ORDER BY m.at DESC LIMIT 1;
	IF NOT FOUND THEN
		last_at := '-infinity';
		last_bal := 0;
	END IF;
	IF upto <= last_at THEN
		RETURN;
	END IF;
	IF NOT pg_try_advisory_xact_lock(hashtext('wallet.statement_mark'), hashtext(w::text || '/' || a)) THEN
		RETURN;
	END IF;
	INSERT INTO wallet.statement_mark (wallet_id, asset, at, balance)
	SELECT w, a, t.at, last_bal + t.before
	  FROM (SELECT s.at, s.n_before,
				   (sum(s.d) OVER win - s.d)::bigint AS before,
				   lag(s.n_before) OVER (ORDER BY s.at) AS n_prev
			  FROM (SELECT g.at, g.d, g.n, (sum(g.n) OVER (ORDER BY g.at) - g.n)::bigint AS n_before
					  FROM (SELECT l.at, sum(l.delta) AS d, count(*) AS n
							  FROM wallet._lines(w, a, last_at, upto) l GROUP BY l.at) g) s
			WINDOW win AS (ORDER BY s.at)) t
	 WHERE t.n_prev IS NOT NULL AND t.n_before / 500 > t.n_prev / 500
	ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION wallet._statement_marks(bigint, text, timestamptz) IS
	'writes statement marks of a wallet and asset, every 500 lines, up to a settled time';
REVOKE ALL ON FUNCTION wallet._statement_marks(bigint, text, timestamptz) FROM PUBLIC;

/* the balance of a wallet and asset before time x: the last mark, then the lines after it */
CREATE FUNCTION wallet._balance_before(w bigint, a text, x timestamptz)
RETURNS bigint LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m_at timestamptz := '-infinity';
	m_bal bigint := 0;
BEGIN
	SELECT m.at, m.balance INTO m_at, m_bal
	  FROM wallet.statement_mark m
	 WHERE m.wallet_id = w AND m.asset = a AND m.at <= x ORDER BY m.at DESC LIMIT 1;
	IF NOT FOUND THEN
		m_at := '-infinity';
		m_bal := 0;
	END IF;
	RETURN m_bal + coalesce((SELECT sum(l.delta) FROM wallet._lines(w, a, m_at, x) l), 0)::bigint;
END
$$;
COMMENT ON FUNCTION wallet._balance_before(bigint, text, timestamptz) IS
	'balance of a wallet and asset from its lines dated before x, from the last statement mark';
REVOKE ALL ON FUNCTION wallet._balance_before(bigint, text, timestamptz) FROM PUBLIC;

/*
 * The account statement, paged (1.0 had no after_line and max_lines: called
 * without them it returns what 1.0 did).  Lines are in the order of 1.0: per
 * asset, by time, then line id (lines time has made that no sweep has written
 * have no id and come after the others of their time).  A page:
 *	 - starts after the line after_line (of this customer) or at since, in the
 *	   asset of that line, and goes on through the next assets;
 *	 - holds at most max_lines lines, but never ends on a line without id:
 *	   such lines at its end are followed up to the next line with an id
 *	   (into the next asset if need be), so that the last line_id of a page
 *	   is always the next page's after_line; only the statement's last page
 *	   can end on one;
 *	 - per asset it reaches: an opening row, the balance just before the
 *	   asset's first line on the page (at: since, or the time of after_line);
 *	   its lines with the balance after each; a closing row when the asset's
 *	   lines end on this page.  An asset whose lines all came before
 *	   after_line is left out.
 * The opening balance comes from the last statement mark before it, so a page
 * costs what its lines and the few hundred lines before it cost, whatever the
 * history.
 */
DROP FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz);
CREATE FUNCTION @extschema@.wallet_statement(customer text, since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT NULL, after_line bigint DEFAULT NULL, max_lines int DEFAULT NULL)
RETURNS TABLE (asset text, at timestamptz, kind text, description text, amount numeric,
	balance numeric, line_id bigint, grant_id bigint, event_id bigint, hold_id bigint)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	w bigint := wallet._wallet_id(customer);
	settled timestamptz;
	cur_asset text;
	cur_at timestamptz;
	a text;
	open_at timestamptz;
	bal bigint;
	lim bigint;					/* bigint: max_lines + 1 + pending fits */
	left_lines bigint := max_lines;
	npending int;
	n int;
	r record;
	complete boolean;
	hi timestamptz;
	last_id bigint;
BEGIN
	IF since IS NULL THEN
		RAISE EXCEPTION 'since must not be null' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use ''-infinity'' for the whole history.';
	END IF;
	IF until < since THEN
		RAISE EXCEPTION 'until % is before since %', until, since USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF max_lines < 1 THEN
		RAISE EXCEPTION 'max_lines must be at least 1: %', max_lines USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF after_line IS NOT NULL THEN
		SELECT l.asset, l.at INTO cur_asset, cur_at
		  FROM wallet.line_stored l WHERE l.id = after_line AND l.wallet_id = w;
		IF NOT FOUND THEN
			/* a line carried on its event: the event's id (1.1), or found by event_line */
			SELECT e.asset, e.recorded_at INTO cur_asset, cur_at
			  FROM wallet.event e WHERE e.id = after_line AND e.line_id = after_line AND e.wallet_id = w;
		END IF;
		IF NOT FOUND THEN
			SELECT e.asset, e.recorded_at INTO cur_asset, cur_at
			  FROM wallet.event e
			 WHERE e.line_id = after_line AND e.line_id <> e.id AND e.wallet_id = w;
		END IF;
		IF cur_asset IS NULL THEN
			RAISE EXCEPTION 'line % is not a ledger line of customer "%"', after_line, left(customer, 100)
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Pass the line_id of the last line of the page before.';
		END IF;
	END IF;
	settled := wallet._settled_time();
	hi := CASE WHEN until IS NULL THEN 'infinity' ELSE until END;

	FOR a IN SELECT ac.asset FROM wallet.account ac
			  WHERE ac.wallet_id = w AND (cur_asset IS NULL OR ac.asset >= cur_asset)
			  ORDER BY ac.asset
	LOOP
		EXIT WHEN left_lines <= 0;
		CONTINUE WHEN a = cur_asset AND cur_at >= hi;	/* after_line is past until */
		/* marks up to where the page starts (a page never pays for the history after it) */
		PERFORM wallet._statement_marks(w, a,
			CASE WHEN settled IS NOT NULL THEN least(settled,
				CASE WHEN a = cur_asset AND cur_at >= since THEN cur_at ELSE since END) END);
		IF a = cur_asset AND cur_at >= since THEN
			open_at := cur_at;
			bal := wallet._balance_before(w, a, cur_at)
				   + coalesce((SELECT sum(l.delta) FROM wallet._lines(w, a, cur_at, cur_at + interval '1 microsecond') l
							   WHERE l.id <= after_line), 0)::bigint;
		ELSE
			open_at := since;
			bal := wallet._balance_before(w, a, since);
		END IF;

		SELECT count(*) INTO npending FROM wallet._pending(now(), w) p WHERE p.asset = a;
		lim := CASE WHEN left_lines IS NULL THEN NULL ELSE left_lines + 1 + npending END;
		n := 0;
		complete := true;
		FOR r IN
			SELECT l.*,
				   CASE l.kind
				   WHEN 'grant' THEN format('%s grant %s', g.category, l.grant_id)
						|| coalesce(' (' || g.external_ref || ')', '')
				   WHEN 'debit' THEN coalesce(e.meter || ' ' || e.quantity::text, 'debit')
						|| format(' (event %s)', l.event_id)
						|| CASE WHEN l.grant_id IS NULL THEN ' on overdraft'
								ELSE format(' from %s grant %s', g.category, l.grant_id) END
				   WHEN 'refund' THEN format('refund of event %s', l.event_id)
						|| CASE WHEN l.grant_id IS NULL THEN ' pays back overdraft'
								ELSE format(' to %s grant %s', g.category, l.grant_id) END
				   WHEN 'repay' THEN CASE WHEN l.grant_id IS NULL THEN 'overdraft repaid'
								ELSE format('%s grant %s repays overdraft', g.category, l.grant_id) END
				   WHEN 'reset' THEN format('%s grant %s renewed', g.category, l.grant_id)
				   WHEN 'expiry' THEN format('%s grant %s expired unused', g.category, l.grant_id)
				   WHEN 'void' THEN format('%s grant %s voided', g.category, l.grant_id)
						|| coalesce(': ' || g.void_reason, '')
				   WHEN 'hold' THEN format('hold %s reserves (the balance does not move)', l.hold_id)
				   WHEN 'release' THEN format('hold %s released', l.hold_id)
				   ELSE l.kind END AS description
			  FROM (SELECT x.* FROM (
						(SELECT s.id, s.at, s.grant_id, s.event_id, s.hold_id, s.kind, s.amount,
								CASE WHEN s.kind IN ('hold', 'release') THEN 0 ELSE s.amount END AS delta
						   FROM wallet.line_stored s
						  WHERE s.wallet_id = w AND s.asset = a AND s.at <= now() AND s.at < hi
							AND s.at >= open_at
							AND (open_at > cur_at OR a IS DISTINCT FROM cur_asset OR s.at > cur_at
								 OR s.id > after_line)
						  ORDER BY s.at, s.id LIMIT lim)
						UNION ALL
						(SELECT ev.line_id, ev.recorded_at, ev.line_grant_id, ev.id, ev.hold_id, 'debit',
								-ev.amount, -ev.amount
						   FROM wallet.event ev
						  WHERE ev.wallet_id = w AND ev.asset = a AND ev.line_id IS NOT NULL
							AND ev.recorded_at <= now() AND ev.recorded_at < hi AND ev.recorded_at >= open_at
							AND (open_at > cur_at OR a IS DISTINCT FROM cur_asset OR ev.recorded_at > cur_at
								 OR ev.line_id > after_line)
						  ORDER BY ev.recorded_at, ev.line_id LIMIT lim)
						UNION ALL
						SELECT NULL, p.at, p.grant_id, NULL, NULL, p.kind, p.amount, p.amount
						  FROM wallet._pending(now(), w) p
						 WHERE p.asset = a AND p.at >= open_at AND p.at < hi) x
					 ORDER BY x.at, x.id NULLS LAST, x.grant_id, x.kind
					 LIMIT lim) l
			  LEFT JOIN wallet.grant_block g ON g.id = l.grant_id
			  LEFT JOIN wallet.event e ON e.id = l.event_id
			 ORDER BY l.at, l.id NULLS LAST, l.grant_id, l.kind
		LOOP
			IF left_lines IS NOT NULL AND n >= left_lines AND last_id IS NOT NULL THEN
				complete := false;		/* the page is full and ends on a line with an id */
				EXIT;
			END IF;
			last_id := r.id;
			IF n = 0 THEN
				RETURN QUERY SELECT a, open_at, 'opening'::text, 'opening balance'::text, NULL::numeric,
					wallet._major(a, bal), NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint;
			END IF;
			bal := bal + r.delta;
			n := n + 1;
			RETURN QUERY SELECT a, r.at, r.kind, r.description, wallet._major(a, r.amount),
				wallet._major(a, bal), r.id, r.grant_id, r.event_id, r.hold_id;
		END LOOP;

		IF n = 0 THEN
			/* nothing after after_line in its asset: that asset ended on the page before */
			CONTINUE WHEN a = cur_asset AND open_at = cur_at;
			RETURN QUERY SELECT a, open_at, 'opening'::text, 'opening balance'::text, NULL::numeric,
				wallet._major(a, bal), NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint;
		END IF;
		IF complete THEN
			RETURN QUERY SELECT a, coalesce(until, now()), 'closing'::text, 'closing balance'::text,
				NULL::numeric, wallet._major(a, bal), NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint;
		END IF;
		left_lines := left_lines - n;
		EXIT WHEN NOT complete;
		/*
		 * the asset ended on lines without id (and filled the page): the page
		 * may not end there, or the next one, after its last line_id, would
		 * show them again; it goes on to the next asset's first line (only the
		 * statement's last page can end on a line without id)
		 */
		IF left_lines <= 0 AND n > 0 AND last_id IS NULL THEN
			left_lines := 1;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz, bigint, int) IS
	'account statement per asset, paged: opening balance, ledger lines in [since, until) after after_line (at most max_lines) with the balance after each, closing balance';
REVOKE ALL ON FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz, bigint, int) FROM PUBLIC;
ALTER FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz, bigint, int) SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz, bigint, int)
	TO wallet_app, wallet_finance, wallet_admin;

/*
 * Roll the usage of a wallet up to the last whole UTC hour before settled:
 * the events recorded and the refunds made since usage_mark.upto are added
 * to wallet.usage_sum, per hour and per day, once an hour at most.  A refund
 * counts in the hour of its event: its amount negative, and the event's count
 * and quantity negative when it is the refund that completes the event.  A
 * caller that finds another one rolling leaves it to it.
 */
CREATE FUNCTION wallet._usage_roll(w bigint, settled timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	target timestamptz := date_trunc('hour', settled, 'UTC');
	from_at timestamptz;
BEGIN
	IF settled IS NULL THEN
		RETURN;
	END IF;
	SELECT m.upto INTO from_at FROM wallet.usage_mark m WHERE m.wallet_id = w;
	IF from_at >= target THEN
		RETURN;					/* the common case: nothing to write */
	END IF;
	/* one writer per wallet at a time; the others read without waiting */
	IF NOT pg_try_advisory_xact_lock(hashtext('wallet.usage_sum'), hashtext(w::text)) THEN
		RETURN;
	END IF;
	INSERT INTO wallet.usage_mark (wallet_id, upto) VALUES (w, '-infinity') ON CONFLICT DO NOTHING;
	SELECT m.upto INTO from_at FROM wallet.usage_mark m WHERE m.wallet_id = w FOR UPDATE;
	IF from_at >= target THEN
		RETURN;
	END IF;
	INSERT INTO wallet.usage_sum AS us (wallet_id, span, at, asset, meter, dimensions, events, quantity, amount)
	SELECT w, sp.span, date_trunc(sp.span, b.h, 'UTC'), b.asset, b.meter, b.d, sum(b.n), sum(b.q), sum(b.amt)
	  FROM (SELECT date_trunc('hour', e.occurred_at, 'UTC') AS h, e.asset, e.meter,
				   coalesce(e.dimensions, '{}') AS d, 1 AS n, e.quantity AS q, e.amount::numeric AS amt
			  FROM wallet.event e
			 WHERE e.wallet_id = w AND e.recorded_at >= from_at AND e.recorded_at < target
			UNION ALL
			SELECT date_trunc('hour', e.occurred_at, 'UTC'), e.asset, e.meter, coalesce(e.dimensions, '{}'),
				   CASE WHEN x.completes THEN -1 ELSE 0 END, CASE WHEN x.completes THEN -e.quantity END,
				   -x.amount
			  FROM (SELECT r.event_id, r.amount,
						   (SELECT sum(r2.amount) FROM wallet.refund r2
							 WHERE r2.event_id = r.event_id AND r2.id <= r.id) = ev.amount AS completes
					  FROM wallet.refund r JOIN wallet.event ev ON ev.id = r.event_id
					 WHERE r.wallet_id = w AND r.at >= from_at AND r.at < target OFFSET 0) x
			  JOIN wallet.event e ON e.id = x.event_id) b,
		   (VALUES ('hour'), ('day')) sp(span)
	 GROUP BY 2, 3, 4, 5, 6
	ON CONFLICT (wallet_id, span, at, asset, meter, dimensions) DO UPDATE
	   SET events = us.events + excluded.events,
		   quantity = CASE WHEN us.quantity IS NULL AND excluded.quantity IS NULL THEN NULL
						   ELSE coalesce(us.quantity, 0) + coalesce(excluded.quantity, 0) END,
		   amount = us.amount + excluded.amount;
	UPDATE wallet.usage_mark m SET upto = target WHERE m.wallet_id = w;
END
$$;
COMMENT ON FUNCTION wallet._usage_roll(bigint, timestamptz) IS
	'adds the events recorded and refunds made since a wallet''s usage mark to wallet.usage_sum, up to the last whole hour before settled';
REVOKE ALL ON FUNCTION wallet._usage_roll(bigint, timestamptz) FROM PUBLIC;

/*
 * Usage per UTC hour, day or month of occurred_at, per meter (group_by
 * 'meter') or per value of one dimension of the request (null when an event
 * has none), and per asset.  Net of refunds: amount less what was refunded;
 * an event refunded in full counts for neither events nor quantity.  Usage is
 * kept per hour: since is taken down and until up to a whole UTC hour.  The
 * events recorded and the refunds made before the wallet's usage mark are
 * read from wallet.usage_sum (whole UTC days from its day sums, the hours at
 * the edges from its hour sums), the later ones from wallet.event and
 * wallet.refund: the cost is the days and edge hours of the window, times the
 * meters and dimension values seen in each, and the last hour's events.
 */
CREATE FUNCTION @extschema@.wallet_usage(customer text, since timestamptz, until timestamptz DEFAULT now(),
	bucket text DEFAULT 'day', group_by text DEFAULT 'meter')
RETURNS TABLE (bucket_start timestamptz, key text, asset text, events bigint, quantity numeric,
	amount numeric)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	w bigint := wallet._wallet_id(customer);
	s timestamptz;
	u timestamptz;
	ds timestamptz;
	de timestamptz;
	seen timestamptz;
BEGIN
	IF since IS NULL OR until IS NULL THEN
		RAISE EXCEPTION 'since and until must not be null' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use ''-infinity'' for the whole history.';
	END IF;
	IF until < since THEN
		RAISE EXCEPTION 'until % is before since %', until, since USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF bucket IS NULL OR bucket NOT IN ('hour', 'day', 'month') THEN
		RAISE EXCEPTION 'unknown bucket "%"', left(bucket, 64) USING ERRCODE = 'invalid_parameter_value',
			HINT = 'The buckets are hour, day and month (UTC).';
	END IF;
	IF group_by IS NULL OR group_by = '' OR octet_length(group_by) > 127 THEN
		RAISE EXCEPTION 'invalid group_by "%"', left(group_by, 64) USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'group_by is ''meter'' or the name of a dimension (1 to 127 bytes).';
	END IF;
	s := date_trunc('hour', since, 'UTC');
	u := date_trunc('hour', until, 'UTC');
	IF u < until THEN
		u := u + interval '1 hour';
	END IF;
	/* [ds, de): the whole UTC days inside [s, u), read from the day sums */
	ds := date_trunc('day', s, 'UTC');
	IF ds < s THEN
		ds := ds + interval '24 hours';	/* a UTC day (+ '1 day' is the session's TimeZone's) */
	END IF;
	de := date_trunc('day', u, 'UTC');
	IF bucket = 'hour' OR ds >= de THEN
		ds := u;
		de := u;
	END IF;
	PERFORM wallet._usage_roll(w, wallet._settled_time());
	/*
	 * The query below reads the mark again, in its own snapshot, with the sums
	 * it covers; seen (never after it: marks only move on) tells the planner
	 * that few events and refunds come after it.
	 */
	seen := coalesce((SELECT um.upto FROM wallet.usage_mark um WHERE um.wallet_id = w), '-infinity');

	RETURN QUERY
	WITH m AS (
		SELECT coalesce((SELECT um.upto FROM wallet.usage_mark um WHERE um.wallet_id = w), '-infinity') AS upto),
	x AS (
		SELECT h.at AS hour, h.asset, h.meter, h.dimensions, h.events, h.quantity, h.amount
		  FROM wallet.usage_sum h
		 WHERE h.wallet_id = w AND h.span = 'hour' AND h.at >= s AND h.at < ds
		UNION ALL
		SELECT h.at, h.asset, h.meter, h.dimensions, h.events, h.quantity, h.amount
		  FROM wallet.usage_sum h
		 WHERE h.wallet_id = w AND h.span = 'day' AND h.at >= ds AND h.at < de
		UNION ALL
		SELECT h.at, h.asset, h.meter, h.dimensions, h.events, h.quantity, h.amount
		  FROM wallet.usage_sum h
		 WHERE h.wallet_id = w AND h.span = 'hour' AND h.at >= de AND h.at < u
		UNION ALL
		SELECT date_trunc('hour', e.occurred_at, 'UTC'), e.asset, e.meter, coalesce(e.dimensions, '{}'),
			   1, e.quantity, e.amount
		  FROM wallet.event e, m
		 WHERE e.wallet_id = w AND e.recorded_at >= seen AND e.recorded_at >= m.upto
		   AND e.occurred_at >= s AND e.occurred_at < u
		UNION ALL
		SELECT date_trunc('hour', e.occurred_at, 'UTC'), e.asset, e.meter, coalesce(e.dimensions, '{}'),
			   CASE WHEN y.completes THEN -1 ELSE 0 END,
			   CASE WHEN y.completes THEN -e.quantity ELSE 0 END, -y.amount
		  FROM (SELECT r.event_id, r.amount,
					   (SELECT sum(r2.amount) FROM wallet.refund r2
						 WHERE r2.event_id = r.event_id AND r2.id <= r.id) = ev.amount AS completes
				  FROM wallet.refund r JOIN wallet.event ev ON ev.id = r.event_id, m
				 WHERE r.wallet_id = w AND r.at >= seen AND r.at >= m.upto OFFSET 0) y
		  JOIN wallet.event e ON e.id = y.event_id
		 WHERE e.occurred_at >= s AND e.occurred_at < u)
	SELECT date_trunc(bucket, x.hour, 'UTC') AS b,
		   CASE WHEN group_by = 'meter' THEN x.meter ELSE x.dimensions ->> group_by END AS k,
		   x.asset, sum(x.events)::bigint, sum(x.quantity), wallet._major(x.asset, sum(x.amount)::bigint)
	  FROM x
	 GROUP BY 1, 2, 3
	HAVING sum(x.events) <> 0 OR sum(x.amount) <> 0
	 ORDER BY 1, 2, 3;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_usage(text, timestamptz, timestamptz, text, text) IS
	'usage per UTC hour, day or month and per meter or dimension value: events, quantity, amount net of refunds';
REVOKE ALL ON FUNCTION @extschema@.wallet_usage(text, timestamptz, timestamptz, text, text) FROM PUBLIC;
ALTER FUNCTION @extschema@.wallet_usage(text, timestamptz, timestamptz, text, text) SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_usage(text, timestamptz, timestamptz, text, text)
	TO wallet_app, wallet_finance, wallet_admin;

/* ------------------------------------------------------------ throughput (#22) */

/*
 * wallet_ingest_chunked: a batch in chunks, each committed.  wallet_ingest
 * locks every balance row of its batch until the caller commits, so two
 * concurrent batches of random customers that share a few wallets run one
 * after the other whole.  This procedure hands chunk_size elements at a time
 * (in array order) to wallet_ingest and commits after each: a chunk locks only
 * its own wallets, for the time of one chunk.  Each element is still
 * processed exactly as a single call, in array order per customer; what is
 * given up is atomicity with the caller (it must be CALLed outside a
 * transaction block): after a failure, the chunks before it are committed and
 * a retry of the same events replays them (replayed = true) and goes on.
 * SECURITY INVOKER and without SET clauses, so that it may commit; it runs
 * nothing but wallet_ingest (SECURITY DEFINER), with every name qualified.
 */
CREATE PROCEDURE @extschema@.wallet_ingest_chunked(events jsonb, chunk_size int DEFAULT 100,
												   INOUT results jsonb DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
	n int;
	i int := 0;
	part jsonb;
	done jsonb;
	parts jsonb[] := '{}';
BEGIN
	IF events IS NULL OR pg_catalog.jsonb_typeof(events) OPERATOR(pg_catalog.<>) 'array' THEN
		RAISE EXCEPTION 'events must be a json array' USING ERRCODE = '22023';
	END IF;
	IF chunk_size IS NULL OR chunk_size OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'chunk_size must be at least 1' USING ERRCODE = '22023';
	END IF;
	n := pg_catalog.jsonb_array_length(events);
	WHILE i OPERATOR(pg_catalog.<) n LOOP
		SELECT pg_catalog.jsonb_agg(events OPERATOR(pg_catalog.->) k ORDER BY k) INTO part
		  FROM pg_catalog.generate_series(i, LEAST(i OPERATOR(pg_catalog.+) chunk_size, n) OPERATOR(pg_catalog.-) 1) k;
		SELECT COALESCE(pg_catalog.jsonb_agg(
				 pg_catalog.jsonb_build_object('idx', r.idx OPERATOR(pg_catalog.+) i, 'approved', r.approved,
					 'replayed', r.replayed, 'reason', r.reason, 'error', r.error, 'event_id', r.event_id,
					 'asset', r.asset, 'amount', r.amount, 'balance', r.balance) ORDER BY r.idx), '[]')
		  INTO done
		  FROM @extschema@.wallet_ingest(part) r;
		COMMIT;
		-- each chunk's results apart, joined once at the end (|| on the whole
		-- results would copy them again at every chunk)
		parts := pg_catalog.array_append(parts, done);
		i := i OPERATOR(pg_catalog.+) chunk_size;
	END LOOP;
	SELECT COALESCE(pg_catalog.jsonb_agg(e.v ORDER BY p.o, e.o), '[]') INTO results
	  FROM pg_catalog.unnest(parts) WITH ORDINALITY AS p(a, o),
		   pg_catalog.jsonb_array_elements(p.a) WITH ORDINALITY AS e(v, o);
END
$$;
COMMENT ON PROCEDURE @extschema@.wallet_ingest_chunked(jsonb, int, jsonb) IS
	'wallet_ingest in chunks of chunk_size elements, each committed (CALL outside a transaction block): a chunk locks only its own wallets; results is a json array of wallet_ingest''s rows; a retry replays the committed chunks';
REVOKE ALL ON PROCEDURE @extschema@.wallet_ingest_chunked(jsonb, int, jsonb) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.wallet_ingest_chunked(jsonb, int, jsonb) TO wallet_app;

/*
 * An idempotency key names one request of a wallet, a debit or a hold, so a
 * debit with a new key looked it up among the wallet's holds too: two more
 * relations locked and an index searched on every debit, almost always for
 * nothing.  wallet.holds_made says whether a hold was ever placed on the
 * wallet (a trigger on wallet.hold sets it, in the hold's transaction, once
 * per wallet); the hot path keeps it with the wallet's id and status (the
 * wallet_cache trigger drops those copies when it changes) and searches the
 * holds only when it is set.  That a hold placed by another session is seen
 * follows from the order of commit: its invalidation is sent before its
 * locks are released, and a debit of the same balance row reads the
 * invalidations again once it holds the row lock (src/hotpath.c,
 * HotAccountLock).
 */
ALTER TABLE wallet.wallet ADD COLUMN holds_made boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN wallet.wallet.holds_made IS
	'a hold was ever placed on the wallet: a debit''s idempotency key is then looked up among its holds too';
UPDATE wallet.wallet w SET holds_made = true
 WHERE EXISTS (SELECT FROM wallet.hold h WHERE h.wallet_id = w.id);

CREATE FUNCTION wallet._hold_marks_wallet() RETURNS trigger
AS 'MODULE_PATHNAME', 'wallet_hold_marks_wallet' LANGUAGE C;
COMMENT ON FUNCTION wallet._hold_marks_wallet() IS
	'BEFORE INSERT on wallet.hold: sets wallet.holds_made of the hold''s wallet when it is not set (src/hotpath.c)';
REVOKE ALL ON FUNCTION wallet._hold_marks_wallet() FROM PUBLIC;
CREATE TRIGGER hold_marks_wallet BEFORE INSERT ON wallet.hold
	FOR EACH ROW EXECUTE FUNCTION wallet._hold_marks_wallet();


/* ------------------------------------------------------------ scale-out */

/*
 * A router finds an id made before its database became a shard (no routing
 * bits) by asking every shard whose it is (wallet_proxy's wallet._route_all).
 * 1.0's wallet._id_route compared the outbox row's own kind column where it
 * meant its argument (a column wins over a parameter in SQL), so an outbox
 * row was never found; and the router ran it as the calling role, to which a
 * shard opens neither the schema nor the function: wallet_app's capture of an
 * old hold and wallet_admin's refund of an old event failed with 42501.  The
 * router now asks wallet_id_route, which runs with the owner's rights.
 */
CREATE OR REPLACE FUNCTION wallet._id_route(kind text, id bigint) RETURNS int
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT wallet._route_hash(w.customer)
	  FROM wallet.wallet w
	 WHERE w.id = CASE _id_route.kind
				  WHEN 'hold' THEN (SELECT h.wallet_id FROM wallet.hold h WHERE h.id = _id_route.id)
				  WHEN 'event' THEN (SELECT e.wallet_id FROM wallet.event e WHERE e.id = _id_route.id)
				  WHEN 'grant' THEN (SELECT g.wallet_id FROM wallet.grant_block g WHERE g.id = _id_route.id)
				  END
	UNION ALL
	SELECT wallet._route_hash(o.customer) FROM wallet.outbox o
	 WHERE _id_route.kind = 'outbox' AND o.id = _id_route.id
	LIMIT 1
$$;

CREATE FUNCTION @extschema@.wallet_id_route(kind text, id bigint) RETURNS int
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT wallet._id_route(wallet_id_route.kind, wallet_id_route.id)
$$;
COMMENT ON FUNCTION @extschema@.wallet_id_route(text, bigint) IS
	'on a shard, for a router: the routing bits of the customer of a hold, event, grant or outbox row here; null when it is not here';
REVOKE ALL ON FUNCTION @extschema@.wallet_id_route(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_id_route(text, bigint) TO wallet_app, wallet_admin;

/*
 * wallet_shard_prune of 1.0, and the reservations of the holds it deletes:
 * wallet.hold_grant (1.1) has neither wallet_id nor customer, and the prune
 * runs as replica, where no foreign key cascades.
 */
CREATE OR REPLACE FUNCTION @extschema@.wallet_shard_prune()
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET session_replication_role = replica AS $$
DECLARE
	shard int;
	ids bigint[];
	customers text[];
	t record;
BEGIN
	IF wallet._shard_owner('') IS NULL THEN
		RAISE EXCEPTION 'this database is not a shard' USING ERRCODE = 'object_not_in_prerequisite_state',
			HINT = 'Set wallet.shard and wallet.shards first.';
	END IF;
	shard := current_setting('wallet.shard')::int;
	SELECT array_agg(w.id), array_agg(w.customer) INTO ids, customers
	  FROM wallet.wallet w WHERE wallet._shard_owner(w.customer) <> shard;
	IF ids IS NULL THEN
		RETURN 0;
	END IF;
	DELETE FROM wallet.hold_grant r USING wallet.hold h WHERE h.id = r.hold_id AND h.wallet_id = ANY (ids);
	FOR t IN
		SELECT c.oid::regclass AS rel, a.attname::text AS col
		  FROM pg_class c
		  JOIN pg_namespace n ON n.oid = c.relnamespace
		  JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
		 WHERE n.nspname = 'wallet' AND c.relkind IN ('r', 'p')
		   AND c.relname NOT IN ('wallet', 'price') AND a.attname IN ('wallet_id', 'customer')
		 ORDER BY c.relname, a.attname
	LOOP
		IF t.col = 'wallet_id' THEN
			EXECUTE format('DELETE FROM %s WHERE wallet_id = ANY ($1)', t.rel) USING ids;
		ELSE
			EXECUTE format('DELETE FROM %s WHERE customer = ANY ($1)', t.rel) USING customers;
		END IF;
	END LOOP;
	DELETE FROM wallet.wallet w WHERE w.id = ANY (ids);
	RETURN cardinality(ids);
END
$$;

/* ------------------------------------------------------------ finance: refunds of repaid overdraft */

/*
 * Revenue from repaid overdraft belongs to no event (docs/finance.md): a grant
 * that repays overdraft recognizes it with repay lines, which name no event.
 * Refunding the overdraft slice of an event after a grant repaid it puts that
 * value on a new grant like the newest that repaid (wallet_refund,
 * wallet._refund_grant), with a refund line of the event: the revenue that
 * line reverses is the repayment's, and wallet.refund and wallet.event.revenue
 * rightly take nothing off the event.  1.0's wallet.revenue_lines gave the
 * line's value to the event all the same, so the event's lines no longer
 * added up to its revenue, and margin_by_dimension moved the repayment's
 * reversal onto the event's dimension values.
 *
 * The line keeps its event in the ledger (wallet.line, wallet.ledger,
 * statements); wallet.revenue_lines shows it with a null event_id.  Such a
 * line is told from the ledger alone, 1.0's history included: a refund line
 * on a grant made by a refund of the same event (metadata refund_of_event)
 * whose place in the event's refunds falls in the event's overdraft slice
 * (wallet._refund_reverses_repay).
 */

/*
 * Whether refund line line_id of event event_id is given back from the
 * event's overdraft slice.  wallet_refund gives an event's debit lines back
 * newest first, each slice as written in line order (first what goes back to
 * the slice's grant or to the overdraft, then what goes to a new grant),
 * skipping what earlier refunds gave back; so the refund lines of the event
 * before it, summed, are where it starts in the debit lines taken newest
 * first.  COST 1: wallet.revenue_lines calls it only for the few refund lines
 * on a grant that a refund of the same event made, not for every line the
 * planner counts it on.
 */
CREATE FUNCTION wallet._refund_reverses_repay(event_id bigint, line_id bigint)
RETURNS boolean LANGUAGE sql STABLE COST 1 SET search_path = pg_catalog, pg_temp AS $$
	SELECT d.grant_id IS NULL
	  FROM (SELECT dl.grant_id, sum(-dl.amount) OVER (ORDER BY dl.id DESC) AS upto
			  FROM wallet.line dl
			 WHERE dl.event_id = _refund_reverses_repay.event_id AND dl.kind = 'debit') d
	 WHERE d.upto > (SELECT coalesce(sum(rl.amount), 0) FROM wallet.line rl
					  WHERE rl.event_id = _refund_reverses_repay.event_id AND rl.kind = 'refund'
						AND rl.id < _refund_reverses_repay.line_id)
	 ORDER BY d.upto LIMIT 1
$$;
COMMENT ON FUNCTION wallet._refund_reverses_repay(bigint, bigint) IS
	'whether a refund line of an event gives back part of the event''s overdraft slice (on a new grant: it reverses repaid overdraft)';
REVOKE ALL ON FUNCTION wallet._refund_reverses_repay(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallet._refund_reverses_repay(bigint, bigint) TO wallet_finance;

CREATE OR REPLACE VIEW wallet.revenue_lines AS
SELECT l.id, l.at, (l.at AT TIME ZONE 'UTC')::date AS day, w.customer, l.asset, l.grant_id,
	   CASE WHEN l.kind <> 'refund' OR l.grant_id IS NULL OR l.event_id IS NULL
				 OR g.metadata ->> 'refund_of_event' IS DISTINCT FROM l.event_id::text
			THEN l.event_id
			WHEN wallet._refund_reverses_repay(l.event_id, l.id) THEN NULL
			ELSE l.event_id END AS event_id,
	   l.kind, g.category, v.amount,
	   CASE WHEN g.category = 'paid' AND (l.kind = 'grant' OR (l.kind = 'reset' AND l.amount > 0))
			THEN v.amount * g.unit_revenue ELSE 0 END AS sold,
	   CASE WHEN g.category = 'paid' AND l.kind IN ('debit', 'refund', 'repay')
			THEN -v.amount * g.unit_revenue ELSE 0 END AS recognized,
	   CASE WHEN g.category = 'paid' AND (l.kind IN ('expiry', 'void') OR (l.kind = 'reset' AND l.amount < 0))
			THEN -v.amount * g.unit_revenue ELSE 0 END AS breakage,
	   CASE WHEN g.category = 'promotional' AND l.kind IN ('debit', 'refund', 'repay')
			THEN -v.amount * a.unit_value ELSE 0 END AS promotional,
	   CASE WHEN g.category = 'bundled' AND l.kind IN ('debit', 'refund', 'repay')
			THEN -v.amount * a.unit_value ELSE 0 END AS bundled,
	   CASE WHEN g.category = 'paid' THEN v.amount * g.unit_revenue ELSE 0 END AS deferred
  FROM (SELECT ln.id, ln.at, ln.wallet_id, ln.asset, ln.grant_id, ln.event_id, ln.kind, ln.amount
		  FROM wallet.line ln
		 WHERE ln.at <= now() AND ln.kind NOT IN ('hold', 'release')
		UNION ALL
		SELECT NULL, p.at, p.wallet_id, p.asset, p.grant_id, NULL, p.kind, p.amount
		  FROM wallet._pending(now()) p) l
  JOIN wallet.wallet w ON w.id = l.wallet_id
  JOIN (SELECT ac.code, ac.unit_value, wallet._major(ac.code, 1) AS unit FROM wallet.asset ac) a
	ON a.code = l.asset
  LEFT JOIN wallet.grant_block g ON g.id = l.grant_id
  CROSS JOIN LATERAL (SELECT l.amount * a.unit AS amount) v;
COMMENT ON VIEW wallet.revenue_lines IS
	'every ledger line but holds, valued in the reporting currency: sold, recognized, breakage, promotional, bundled, change in deferred; event_id is the event the value belongs to (null for repaid overdraft and a refund that reverses it)';

/* ------------------------------------------------------------ wallet_verify */

/*
 * wallet_verify of 1.0, and: reservations equal open holds, no balance below
 * -overdraft_limit, and no rows of a 1.0 dump restored into a 1.1 install
 * (defined last: it reads what every section adds)
 */
CREATE OR REPLACE FUNCTION @extschema@.wallet_verify()
RETURNS TABLE (problem text, detail text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	/* conservation: ledger lines (but holds) sum to available + held */
	SELECT 'conservation', format('customer %s asset %s: ledger %s, available + held %s',
			b.customer, b.asset, coalesce(l.amount, 0), b.available + b.held)
	  FROM wallet.balances b
	  LEFT JOIN (SELECT customer, asset, sum(amount) AS amount FROM wallet.ledger
				  WHERE kind NOT IN ('hold', 'release') GROUP BY 1, 2) l
		ON l.customer = b.customer AND l.asset = b.asset
	 WHERE coalesce(l.amount, 0) <> b.available + b.held
	UNION ALL
	/* no debit takes a balance below its overdraft limit: the overdraft in use never exceeds the limit */
	SELECT 'overdraft_limit', format('customer %s asset %s: overdraft in use %s, limit %s',
			w.customer, a.asset, wallet._major(a.asset, a.overdraft), wallet._major(a.asset, a.overdraft_limit))
	  FROM wallet.account a
	  JOIN wallet.wallet w ON w.id = a.wallet_id
	 WHERE a.overdraft > a.overdraft_limit
	UNION ALL
	/* overdraft in use is what the grant-less lines say */
	SELECT 'overdraft', format('wallet %s asset %s: overdraft %s, lines say %s',
			a.wallet_id, a.asset, a.overdraft, -coalesce(l.amount, 0))
	  FROM wallet.account a
	  LEFT JOIN (SELECT wallet_id, asset, sum(amount) AS amount FROM wallet.line
				  WHERE grant_id IS NULL AND kind NOT IN ('hold', 'release') GROUP BY 1, 2) l
		ON l.wallet_id = a.wallet_id AND l.asset = a.asset
	 WHERE a.overdraft <> -coalesce(l.amount, 0)
	UNION ALL
	/*
	 * every grant: 0 <= remaining <= its ceiling (and what open holds carried
	 * through resets: every open hold, also one whose ttl has passed, whose
	 * carried value stays until the sweep settles it), and its lines sum to it
	 */
	SELECT 'grant_remaining', format('grant %s: remaining %s, amount %s, lines %s',
			g.id, g.remaining, g.amount, coalesce(l.amount, 0))
	  FROM wallet.grant_block g
	  LEFT JOIN (SELECT grant_id, sum(amount) AS amount FROM wallet.line
				  WHERE grant_id IS NOT NULL GROUP BY 1) l ON l.grant_id = g.id
	 WHERE g.remaining < 0
		OR g.remaining > g.amount + CASE WHEN g.recurrence IS NULL THEN 0
										 ELSE g.rollover_max + wallet._reserved(g.id, '-infinity') END
		OR g.remaining <> coalesce(l.amount, 0)
	UNION ALL
	/* every event: its debit lines sum to its amount, refunds to what was refunded */
	SELECT 'event_lines', format('event %s: amount %s refunded %s, debit lines %s, refund lines %s',
			e.id, e.amount, e.refunded, -coalesce(l.debits, 0), coalesce(l.refunds, 0))
	  FROM wallet.event e
	  LEFT JOIN (SELECT event_id,
						sum(amount) FILTER (WHERE kind = 'debit') AS debits,
						sum(amount) FILTER (WHERE kind = 'refund') AS refunds
				   FROM wallet.line WHERE event_id IS NOT NULL GROUP BY 1) l ON l.event_id = e.id
	 WHERE coalesce(l.debits, 0) <> -e.amount OR coalesce(l.refunds, 0) <> e.refunded
		OR e.refunded < 0 OR e.refunded > e.amount
	UNION ALL
	/* every event: its refund rows sum to what it says was refunded */
	SELECT 'refunds', format('event %s: refunded %s, refund rows %s', e.id, e.refunded, coalesce(r.amount, 0))
	  FROM wallet.event e
	  LEFT JOIN (SELECT event_id, sum(amount) AS amount FROM wallet.refund GROUP BY 1) r ON r.event_id = e.id
	 WHERE coalesce(r.amount, 0) <> e.refunded
	UNION ALL
	/*
	 * every event: its lines in wallet.revenue_lines recognize its revenue
	 * (docs/finance.md); of the events whose lines all are dated by now, as
	 * that view's are
	 */
	SELECT 'event_revenue', format('event %s: revenue %s, its revenue lines %s',
			e.id, e.revenue, coalesce(r.recognized, 0))
	  FROM wallet.event e
	  LEFT JOIN (SELECT event_id, sum(recognized) AS recognized FROM wallet.revenue_lines
				  WHERE event_id IS NOT NULL GROUP BY 1) r ON r.event_id = e.id
	 WHERE coalesce(r.recognized, 0) <> e.revenue AND e.recorded_at <= now()
	   AND NOT EXISTS (SELECT FROM wallet.refund f WHERE f.event_id = e.id AND f.at > now())
	UNION ALL
	/* holds: one hold line each, one release line once resolved, none while open */
	SELECT 'hold_lines', format('hold %s (%s): hold lines %s, release lines %s',
			h.id, h.status, coalesce(l.holds, 0), coalesce(l.releases, 0))
	  FROM wallet.hold h
	  LEFT JOIN (SELECT hold_id,
						count(*) FILTER (WHERE kind = 'hold') AS holds,
						count(*) FILTER (WHERE kind = 'release') AS releases
				   FROM wallet.line WHERE hold_id IS NOT NULL AND kind IN ('hold', 'release')
				  GROUP BY 1) l ON l.hold_id = h.id
	 WHERE coalesce(l.holds, 0) <> 1
		OR coalesce(l.releases, 0) <> CASE WHEN h.status = 'open' THEN 0 ELSE 1 END
		OR (h.status = 'captured') <> (h.event_id IS NOT NULL)
	UNION ALL
	/* the balance row's hold totals match the open holds */
	SELECT 'held', format('wallet %s asset %s: held %s (%s open), holds say %s (%s open)',
			a.wallet_id, a.asset, a.held, a.holds_open, coalesce(h.amount, 0), coalesce(h.n, 0))
	  FROM wallet.account a
	  LEFT JOIN (SELECT wallet_id, asset, sum(amount) AS amount, count(*) AS n FROM wallet.hold
				  WHERE status = 'open' GROUP BY 1, 2) h
		ON h.wallet_id = a.wallet_id AND h.asset = a.asset
	 WHERE a.held <> coalesce(h.amount, 0) OR a.holds_open <> coalesce(h.n, 0)
	UNION ALL
	/* binding holds: every hold open now is backed by reservations and overdraft room equal to it */
	SELECT 'reservations', format('hold %s: amount %s, reserved on grants %s, overdraft room %s',
			h.id, h.amount, coalesce(r.amount, 0), h.overdraft)
	  FROM wallet.hold h
	  LEFT JOIN (SELECT hold_id, sum(amount) AS amount FROM wallet.hold_grant GROUP BY 1) r ON r.hold_id = h.id
	 WHERE h.status = 'open' AND h.expires_at > now()
	   AND coalesce(r.amount, 0) + h.overdraft <> h.amount
	UNION ALL
	/* a resolved hold reserves nothing */
	SELECT 'reservations', format('hold %s (%s) still reserves %s on grant %s', h.id, h.status, r.amount, r.grant_id)
	  FROM wallet.hold_grant r JOIN wallet.hold h ON h.id = r.hold_id
	 WHERE h.status <> 'open'
	UNION ALL
	/* no grant has more reserved than it holds */
	SELECT 'reserved', format('grant %s: remaining %s, reserved by open holds %s', g.id, g.remaining, r.amount)
	  FROM wallet.grant_block g
	  JOIN (SELECT hg.grant_id, sum(hg.amount) AS amount FROM wallet.hold_grant hg
			  JOIN wallet.hold h ON h.id = hg.hold_id
			 WHERE h.status = 'open' AND h.expires_at > now() GROUP BY 1) r ON r.grant_id = g.id
	 WHERE r.amount > g.remaining
	UNION ALL
	/* no balance is below -overdraft_limit */
	SELECT 'balance_floor', format('customer %s asset %s: available %s, overdraft limit %s',
			b.customer, b.asset, b.available, wallet._major(b.asset, a.overdraft_limit))
	  FROM wallet.balances b
	  JOIN wallet.wallet w ON w.customer = b.customer
	  JOIN wallet.account a ON a.wallet_id = w.id AND a.asset = b.asset
	 WHERE b.available < -wallet._major(b.asset, a.overdraft_limit)
	UNION ALL
	/* an idempotency key names one request: an event or a hold, not both */
	SELECT 'idempotency', format('wallet %s key %s is both an event and a hold', e.wallet_id, e.idempotency_key)
	  FROM wallet.event e
	  JOIN wallet.hold h ON h.wallet_id = e.wallet_id AND h.idempotency_key = e.idempotency_key
	UNION ALL
	/*
	 * the rows of a 1.0 dump restored into a 1.1 install (pg_restore creates
	 * the newest version, then loads 1.0's rows without the upgrade's
	 * migrations), seen by what no 1.1 database has: an open hold (its ttl
	 * not passed) that reserves nothing, a low_balance level with no alert or
	 * recharge behind it.  (Not by usage counters under 1.0's positional keys:
	 * an upgrade leaves those of a rate its last price no longer has, and a
	 * meter may be named like one.)
	 */
	SELECT 'not_upgraded', format('customer %s: %s; the rows of a wallet 1.0 dump restored into a 1.1 install? '
			'Restore a 1.0 dump into CREATE EXTENSION wallet VERSION ''1.0'', then ALTER EXTENSION wallet UPDATE',
			w.customer, x.what)
	  FROM wallet.wallet w
	  JOIN LATERAL (
		SELECT format('open hold %s reserves nothing', h.id) AS what
		  FROM wallet.hold h
		 WHERE h.wallet_id = w.id AND h.status = 'open' AND h.expires_at > now()
		   AND h.amount > 0 AND h.overdraft = 0
		   AND NOT EXISTS (SELECT FROM wallet.hold_grant r WHERE r.hold_id = h.id)
		UNION ALL
		SELECT format('asset %s: low_balance %s but no alert', a.asset, wallet._major(a.asset, a.low_balance))
		  FROM wallet.account a
		 WHERE a.wallet_id = w.id AND a.low_balance IS NOT NULL
		   AND NOT EXISTS (SELECT FROM wallet.alert al WHERE al.wallet_id = a.wallet_id AND al.asset = a.asset)
		   AND NOT EXISTS (SELECT FROM wallet.recharge r WHERE r.wallet_id = a.wallet_id AND r.asset = a.asset)
) x ON true
$$;
