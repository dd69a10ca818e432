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

/*
 * Each backend keeps the scale of the assets it has read (src/asset.c) and
 * the prices compiled for that scale (src/price.c), under the rule of
 * src/coherence.c: a change to an asset row invalidates them in every
 * backend at commit, as a change to wallet.price or wallet.wallet does.
 */
CREATE TRIGGER asset_cache AFTER UPDATE OR DELETE OR TRUNCATE ON wallet.asset
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._relation_changed();

/* ------------------------------------------------------------ binding holds (#16) */

/* ------------------------------------------------------------ hardening (#17) */

/* ------------------------------------------------------------ top-up loop (#18) */

/* ------------------------------------------------------------ scoped credits (#19) */

/* ------------------------------------------------------------ pricing (#20) */

/* ------------------------------------------------------------ reads (#21) */

/* ------------------------------------------------------------ throughput (#22) */
