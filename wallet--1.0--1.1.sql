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

/* the C library reads this to tell a 1.1 schema from a 1.0 one (WalletSchemaVersion) */
CREATE FUNCTION wallet._schema_version() RETURNS int
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS 'SELECT 11';
COMMENT ON FUNCTION wallet._schema_version() IS
	'the schema release of the installed wallet scripts, as major*10+minor (1.1 = 11)';
REVOKE ALL ON FUNCTION wallet._schema_version() FROM PUBLIC;

/* ------------------------------------------------------------ coherence (#15) */

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
CREATE INDEX hold_grant_grant ON wallet.hold_grant (grant_id);
SELECT pg_catalog.pg_extension_config_dump('wallet.hold_grant', '');
REVOKE ALL ON wallet.hold_grant FROM PUBLIC;
GRANT SELECT ON wallet.hold_grant TO wallet_finance;

/* what the holds open at as_of reserve on a grant (minor units) */
CREATE FUNCTION wallet._reserved(grant_id bigint, as_of timestamptz DEFAULT now())
RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(sum(r.amount), 0)::bigint
	  FROM wallet.hold_grant r JOIN wallet.hold h ON h.id = r.hold_id
	 WHERE r.grant_id = _reserved.grant_id AND h.status = 'open' AND h.expires_at > _reserved.as_of
$$;
COMMENT ON FUNCTION wallet._reserved(bigint, timestamptz) IS
	'value reserved on a grant by the holds open at as_of (minor units)';
REVOKE ALL ON FUNCTION wallet._reserved(bigint, timestamptz) FROM PUBLIC;

/*
 * A hold is resolved (captured, released, expired) at "at": what it still
 * reserves goes back to its grants, but the part on a grant voided or expired
 * meanwhile leaves now, with a 'void' or 'expiry' line dated at (breakage
 * for a paid grant), and so does the part on a recurring grant reset since
 * (a 'reset' line: the reset carried it for the hold).  The caller holds the
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
					g.recurrence IS NOT NULL AND g.resets > hg.resets AS reset
			   FROM wallet.hold_grant hg JOIN wallet.grant_block g ON g.id = hg.grant_id
			  WHERE hg.hold_id = _hold_settle.hold_id AND hg.amount > 0
			  ORDER BY hg.grant_id
	LOOP
		part := least(r.amount, r.remaining);
		CONTINUE WHEN part <= 0 OR (r.voided_at IS NULL AND (r.expires_at IS NULL OR r.expires_at > at)
									AND NOT r.reset);
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
 * yet allows (holds in id order); the rest is overdraft room.
 */
DO $$
DECLARE
	h record;
	g record;
	want bigint;
	t bigint;
	last_pair text := '';
BEGIN
	FOR h IN SELECT ho.id, ho.wallet_id, ho.asset, ho.amount FROM wallet.hold ho
			  WHERE ho.status = 'open' AND ho.expires_at > pg_catalog.now()
			  ORDER BY ho.wallet_id, ho.asset, ho.id
	LOOP
		IF last_pair <> h.wallet_id || '/' || h.asset THEN
			PERFORM wallet._touch(h.wallet_id, h.asset);	/* resets written down first */
			last_pair := h.wallet_id || '/' || h.asset;
		END IF;
		want := h.amount;
		FOR g IN SELECT gb.id, gb.resets, (gb.remaining OPERATOR(pg_catalog.-)
								coalesce((SELECT pg_catalog.sum(r.amount) FROM wallet.hold_grant r
										   WHERE r.grant_id OPERATOR(pg_catalog.=) gb.id), 0))::pg_catalog.int8 AS free
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
		UPDATE wallet.hold ho SET overdraft = want WHERE ho.id OPERATOR(pg_catalog.=) h.id;
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
	'an open hold now expires at now() + ttl (a heartbeat for long jobs)';

REVOKE ALL ON FUNCTION @extschema@.wallet_hold(text, text, numeric, text, interval, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.wallet_authorize_hold(text, text, numeric, text, jsonb, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.wallet_capture_lines(bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.wallet_extend_hold(bigint, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_hold(text, text, numeric, text, interval, jsonb) TO wallet_app;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_authorize_hold(text, text, numeric, text, jsonb, interval) TO wallet_app;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_capture_lines(bigint, jsonb) TO wallet_app;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_extend_hold(bigint, interval) TO wallet_app;

/*
 * Void a grant: what is left of it and not reserved by an open hold leaves now,
 * with a 'void' line; the reserved part leaves when its hold is resolved
 * (wallet._hold_settle), so a capture within the hold still draws it.  The
 * grant stays open (closed_at null) while it backs a hold.
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
		   AND NOT EXISTS (SELECT 1 FROM wallet.hold_grant hg WHERE hg.grant_id = gb.id);
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

/* wallet_verify of 1.0, and: reservations equal open holds, no balance below -overdraft_limit */
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
	/* every grant: 0 <= remaining <= its ceiling (and what open holds carried through resets), and its lines sum to it */
	SELECT 'grant_remaining', format('grant %s: remaining %s, amount %s, lines %s',
			g.id, g.remaining, g.amount, coalesce(l.amount, 0))
	  FROM wallet.grant_block g
	  LEFT JOIN (SELECT grant_id, sum(amount) AS amount FROM wallet.line
				  WHERE grant_id IS NOT NULL GROUP BY 1) l ON l.grant_id = g.id
	 WHERE g.remaining < 0
		OR g.remaining > g.amount + CASE WHEN g.recurrence IS NULL THEN 0
										 ELSE g.rollover_max + wallet._reserved(g.id, now()) END
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
$$;

/* ------------------------------------------------------------ hardening (#17) */

/* ------------------------------------------------------------ top-up loop (#18) */

/* ------------------------------------------------------------ scoped credits (#19) */

/* ------------------------------------------------------------ pricing (#20) */

/* ------------------------------------------------------------ reads (#21) */

/* ------------------------------------------------------------ throughput (#22) */
