-- wallet_ingest and wallet_authorize_debit find a balance row where the
-- backend last locked it (a hint), and through the index when it moved: a
-- batch or a debit after the row changed (a new limit), in the same
-- transaction or not, after the table was rewritten, after the row was
-- deleted, or after VACUUM cut the table short of where it was, sees what the
-- index finds.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('th', 0);
SELECT wallet_set_price('th.call', 'th', '{"model": "per_unit", "unit_price": "1"}',
	now() - interval '1 day');
SELECT wallet_create(c) > 0 AS created FROM unnest(ARRAY['tha', 'thb', 'thc']) c;
SELECT wallet_grant(c, 'th', 10) > 0 AS granted FROM unnest(ARRAY['tha', 'thb', 'thc']) c;
CREATE FUNCTION pg_temp.batch(tag text, qty int, VARIADIC customers text[])
RETURNS TABLE (idx int, approved boolean, reason text, error text, amount numeric, balance numeric)
LANGUAGE sql AS $$
	SELECT idx, approved, reason, error, amount, balance FROM wallet_ingest(
		(SELECT jsonb_agg(jsonb_build_object('customer', c, 'meter', 'th.call', 'quantity', qty,
											 'idempotency_key', tag || '-' || o))
		   FROM unnest(customers) WITH ORDINALITY AS u(c, o)))
$$;
SELECT * FROM pg_temp.batch('b1', 4, 'tha', 'thb', 'thc');
-- the balance rows change: an overdraft for tha, none for thb
SELECT wallet_set_limit('tha', 'th', overdraft => 5);
SELECT * FROM pg_temp.batch('b2', 4, 'tha', 'thb', 'tha', 'thb');
-- in one transaction: a batch, a change, a batch
BEGIN;
SELECT * FROM pg_temp.batch('b3', 4, 'thc');
SELECT wallet_set_limit('thc', 'th', overdraft => 3);
SELECT * FROM pg_temp.batch('b4', 4, 'thc', 'thc');
COMMIT;
-- the table rewritten: the rows move (each wallet's own limit still holds)
VACUUM FULL wallet.account;
SELECT * FROM pg_temp.batch('b5', 1, 'thb', 'tha', 'thc');
-- a wallet without grants (its balance row made by its first batch), then
-- gone as a shard's prune takes it, without triggers
SELECT wallet_create('thd') > 0 AS created;
SELECT * FROM pg_temp.batch('b6', 4, 'thd');
SET session_replication_role = replica;
DELETE FROM wallet.outbox WHERE customer = 'thd';
DELETE FROM wallet.account WHERE wallet_id = (SELECT id FROM wallet.wallet WHERE customer = 'thd');
DELETE FROM wallet.wallet WHERE customer = 'thd';
RESET session_replication_role;
SELECT * FROM pg_temp.batch('b7', 4, 'thd', 'tha');
-- single calls: the same changes
SELECT approved, amount, balance FROM wallet_authorize_debit('thb', 'th.call', 1, 's1');
SELECT wallet_set_limit('thb', 'th', overdraft => 2);
SELECT approved, amount, balance FROM wallet_authorize_debit('thb', 'th.call', 1, 's2');
BEGIN;
SELECT approved, amount, balance FROM wallet_authorize_debit('thb', 'th.call', 1, 's3');
SELECT wallet_set_limit('thb', 'th', overdraft => 5);
SELECT approved, amount, balance FROM wallet_authorize_debit('thb', 'th.call', 3, 's4');
COMMIT;
VACUUM FULL wallet.account;
SELECT approved, amount, balance FROM wallet_authorize_debit('tha', 'th.call', 1, 's5');
-- 3,000 balance rows after these, the last of them hinted; all but that one
-- gone (a shard's prune) and the table rewritten short: the hint points past
-- the table's end, and the debit finds the row through the index
SELECT count(*) AS created FROM (SELECT wallet_create('thx' || i) FROM generate_series(1, 3000) i) w;
SELECT count(*) AS granted FROM (SELECT wallet_grant('thx' || i, 'th', 5) FROM generate_series(1, 3000) i) g;
SELECT approved, amount, balance FROM wallet_authorize_debit('thx3000', 'th.call', 1, 's6');
SELECT pg_relation_size('wallet.account') / 8192 AS pages_before \gset
SET session_replication_role = replica;
DELETE FROM wallet.grant_block WHERE wallet_id IN (SELECT id FROM wallet.wallet WHERE customer LIKE 'thx%' AND customer <> 'thx3000');
DELETE FROM wallet.outbox WHERE customer LIKE 'thx%' AND customer <> 'thx3000';
DELETE FROM wallet.account WHERE wallet_id IN (SELECT id FROM wallet.wallet WHERE customer LIKE 'thx%' AND customer <> 'thx3000');
DELETE FROM wallet.wallet WHERE customer LIKE 'thx%' AND customer <> 'thx3000';
RESET session_replication_role;
VACUUM FULL wallet.account;
SELECT pg_relation_size('wallet.account') / 8192 < :pages_before AS cut_short;
SELECT approved, amount, balance FROM wallet_authorize_debit('thx3000', 'th.call', 1, 's7');
SELECT approved, amount, balance FROM wallet_authorize_debit('tha', 'th.call', 1, 's8');
SELECT c, wallet_balance(c, 'th') FROM unnest(ARRAY['tha', 'thb', 'thc']) c;
SELECT * FROM wallet_verify();
