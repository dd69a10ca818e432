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

/* ------------------------------------------------------------ hardening (#17) */

/* ------------------------------------------------------------ top-up loop (#18) */

/* ------------------------------------------------------------ scoped credits (#19) */

/* ------------------------------------------------------------ pricing (#20) */

/*
 * Usage counters of tiered rules inside a matrix: 1.0 kept them under the
 * rate's position ("llm[0]", "llm[1][default]"), so a version that reordered
 * the rates gave one rate's usage to another.  1.1 keys them by the rate's
 * match ('llm{"direction":"in"}'; a default counts on its matrix's own key).
 * Each 1.0 counter moves to the key of the rate its position named in the
 * version that priced the period's last events (the customer's own, its
 * plan's, else the default, in force at the period's end or now), adding to
 * what is there already: every number is kept.
 */
/* debits that read a counter finish first; those that come later wait for the move */
LOCK TABLE wallet.usage_counter IN ACCESS EXCLUSIVE MODE;

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
		SELECT u.wallet_id, u.meter, u.period, u.period_start, u.quantity, w.customer
		  FROM wallet.usage_counter u JOIN wallet.wallet w ON w.id OPERATOR(pg_catalog.=) u.wallet_id
		 WHERE u.meter OPERATOR(pg_catalog.~) '\]$'
	LOOP
		SELECT p.meter INTO base
		  FROM (SELECT DISTINCT meter FROM wallet.price) p
		 WHERE pg_catalog.left(c.meter, pg_catalog.length(p.meter)) OPERATOR(pg_catalog.=) p.meter
		   AND pg_catalog.substr(c.meter, pg_catalog.length(p.meter) OPERATOR(pg_catalog.+) 1)
			   OPERATOR(pg_catalog.~) '^(\[([0-9]+|default)\])+$'
		 ORDER BY pg_catalog.length(p.meter) DESC LIMIT 1;
		CONTINUE WHEN base IS NULL;
		at := LEAST(pg_catalog.now(), c.period_start OPERATOR(pg_catalog.+)
					('1 ' OPERATOR(pg_catalog.||) c.period)::interval OPERATOR(pg_catalog.-) interval '1 microsecond');
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
		suffix := wallet._counter_suffix_11(v.rule, v.asset,
			pg_catalog.substr(c.meter, pg_catalog.length(base) OPERATOR(pg_catalog.+) 1));
		CONTINUE WHEN suffix IS NULL;
		DELETE FROM wallet.usage_counter u
		 WHERE u.wallet_id OPERATOR(pg_catalog.=) c.wallet_id AND u.meter OPERATOR(pg_catalog.=) c.meter
		   AND u.period OPERATOR(pg_catalog.=) c.period AND u.period_start OPERATOR(pg_catalog.=) c.period_start;
		INSERT INTO wallet.usage_counter AS u (wallet_id, meter, period, period_start, quantity)
		VALUES (c.wallet_id, base OPERATOR(pg_catalog.||) suffix, c.period, c.period_start, c.quantity)
		ON CONFLICT (wallet_id, meter, period, period_start)
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
 * Every backend compiled its prices for a 1.0 schema (1.0 counter keys): the
 * price trigger empties their caches at commit, and each reads the schema
 * release again with its next price.
 */
UPDATE wallet.price SET meter = meter WHERE false;

/* ------------------------------------------------------------ reads (#21) */

/* ------------------------------------------------------------ throughput (#22) */
