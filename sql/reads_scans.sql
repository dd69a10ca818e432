-- Reads of one customer cost what they return, not what the other customers
-- hold: with a few thousand other wallets (each with expiring and recurring
-- grants, overdraft in use, a cap, a debit and an open hold) and their
-- statistics, no read of one customer scans a large wallet table whole.
-- Checked without timing: the sequential scans each read makes, counted by
-- pg_stat_xact_user_tables before and after it within one statement.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('ix', 0);
SELECT wallet_set_price('ix.m', 'ix', '{"model": "per_unit", "unit_price": "1"}') > 0 AS priced;
SELECT wallet_create('me') > 0 AS created;
SELECT wallet_set_overdraft('me', 'ix', 50);
SELECT wallet_grant('me', 'ix', 10, expires_at => now() + interval '30 days', category => 'promotional') > 0 AS granted;
SELECT wallet_grant('me', 'ix', 10, recurrence => '1 month') > 0 AS granted;
SELECT wallet_set_cap('me', 'ix', 500, 'day', 'user');
SELECT approved FROM wallet_authorize_debit('me', 'ix.m', 25, 'me-1', '{"user": "u1"}');
SELECT approved FROM wallet_hold('me', 'ix', 1, 'me-h');
SELECT count(*) FROM generate_series(1, 2000) i,
  LATERAL (SELECT wallet_create('other' || i)) a,
  LATERAL (SELECT wallet_set_overdraft('other' || i, 'ix', 10)) o,
  LATERAL (SELECT wallet_grant('other' || i, 'ix', 10, expires_at => now() + interval '30 days')) g1,
  LATERAL (SELECT wallet_grant('other' || i, 'ix', 10, recurrence => '1 month')) g2,
  LATERAL (SELECT wallet_set_cap('other' || i, 'ix', 500, 'day', 'user')) c,
  LATERAL (SELECT wallet_authorize_debit('other' || i, 'ix.m', 25, 'o-' || i, '{"user": "u1"}')) d,
  LATERAL (SELECT wallet_hold('other' || i, 'ix', 1, 'h-' || i)) h;
ANALYZE;

-- the large tables: what every other customer holds rows in
SELECT c.relname FROM pg_catalog.pg_class c
 WHERE c.relnamespace = 'wallet'::regnamespace AND c.relkind = 'r' AND c.reltuples >= 1000
 ORDER BY 1;

-- scans(sql): runs sql; the large wallet tables it scanned sequentially, and
-- those it read through an index
CREATE FUNCTION pg_temp.scans(sql text, OUT seq_scanned text[], OUT idx_scanned text[])
LANGUAGE plpgsql AS $$
DECLARE
	seq0 jsonb;
	idx0 jsonb;
BEGIN
	SELECT coalesce(jsonb_object_agg(t.relname, t.seq_scan), '{}'),
		   coalesce(jsonb_object_agg(t.relname, coalesce(t.idx_scan, 0)), '{}') INTO seq0, idx0
	  FROM pg_stat_xact_user_tables t WHERE t.schemaname = 'wallet';
	EXECUTE sql;
	SELECT coalesce(array_agg(t.relname::text ORDER BY t.relname)
						FILTER (WHERE t.seq_scan > coalesce((seq0 ->> t.relname)::bigint, 0)), '{}'),
		   coalesce(array_agg(t.relname::text ORDER BY t.relname)
						FILTER (WHERE t.idx_scan > coalesce((idx0 ->> t.relname)::bigint, 0)), '{}')
	  INTO seq_scanned, idx_scanned
	  FROM pg_stat_xact_user_tables t
	  JOIN pg_catalog.pg_class c ON c.oid = t.relid
	 WHERE t.schemaname = 'wallet' AND c.reltuples >= 1000;
END
$$;

-- the lines time has made for one wallet: its grants and balances by index
SELECT seq_scanned, idx_scanned @> '{account,grant_block}' AS grants_and_balances_by_index
  FROM pg_temp.scans('SELECT count(*) FROM wallet._pending(now(), wallet._wallet_id(''me''))');

-- every read of one customer: no large table scanned whole
SELECT r AS read, s.seq_scanned FROM unnest(ARRAY[
	'SELECT count(*) FROM wallet_statement(''me'', max_lines => 50)',
	'SELECT count(*) FROM wallet_statement(''me'')',
	'SELECT count(*) FROM wallet_credits(''me'')',
	'SELECT count(*) FROM wallet_balances(''me'')',
	'SELECT wallet_balance(''me'', ''ix'')',
	'SELECT count(*) FROM wallet_available(''me'', ''ix.m'')',
	'SELECT count(*) FROM wallet_quote(''me'', ''ix.m'', 1)',
	'SELECT count(*) FROM wallet_caps(''me'')',
	'SELECT count(*) FROM wallet_limits(''me'')',
	'SELECT count(*) FROM wallet_usage(''me'', now() - interval ''2 days'')',
	'SELECT count(*) FROM wallet._lines(wallet._wallet_id(''me''), ''ix'', ''-infinity'', ''infinity'')',
	'SELECT wallet._balance_before(wallet._wallet_id(''me''), ''ix'', now())'
	]) r, LATERAL pg_temp.scans(r) s;

-- what the reads of "me" return (the page of a customer among thousands)
SELECT kind, amount, balance FROM wallet_statement('me');
