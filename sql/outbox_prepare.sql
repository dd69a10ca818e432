-- A transaction that wrote outbox rows can be prepared (two-phase commit).
-- The rows were written with pg_notify in the caller's transaction, and
-- PostgreSQL refuses PREPARE TRANSACTION after NOTIFY (0A000): the debit was
-- lost, and a retry crossed the same threshold again.  The notifications are
-- now queued in the backend and sent at commit; a prepared transaction sends
-- none, and its rows commit with COMMIT PREPARED.  (That notifications still
-- arrive at commit, and not for a rolled-back savepoint, is checked by
-- test/scripts/outbox_notify.sh: psql prints a backend's PID with them.)
-- Needs max_prepared_transactions > 0, as coherence does (test/lib.sh sets 10).
\set VERBOSITY sqlstate
SET client_min_messages = warning;
SELECT wallet_create_asset('obp', 0);
SELECT wallet_create('obp-a') > 0 AS created;
SELECT wallet_grant('obp-a', 'obp', 100) > 0 AS granted;
SELECT wallet_set_alert('obp-a', 'obp', 50);
SELECT wallet_set_recharge('obp-a', 'obp', 20, 100);

-- a debit that crosses an alert: a low_balance row (wallet._outbox_put)
BEGIN;
SELECT approved, balance FROM wallet_debit('obp-a', 'obp', 60, 'obp-1');
PREPARE TRANSACTION 'obp_cross';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'obp_cross';
COMMIT PREPARED 'obp_cross';
SELECT wallet_balance('obp-a', 'obp');

-- a decline for funds (written in C), and a debit that opens a recharge
BEGIN;
SELECT approved, reason FROM wallet_debit('obp-a', 'obp', 1000, 'obp-2');
SELECT approved, balance FROM wallet_debit('obp-a', 'obp', 25, 'obp-3');
PREPARE TRANSACTION 'obp_decline';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'obp_decline';
COMMIT PREPARED 'obp_decline';

-- a decline for a spend cap (written by the caps' own code)
SELECT wallet_create('obp-c') > 0 AS created;
SELECT wallet_grant('obp-c', 'obp', 100) > 0 AS granted;
SELECT wallet_set_cap('obp-c', 'obp', 10, 'day') IS NOT NULL AS capped;
BEGIN;
SELECT approved, reason FROM wallet_debit('obp-c', 'obp', 11, 'obp-4');
PREPARE TRANSACTION 'obp_cap';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'obp_cap';
COMMIT PREPARED 'obp_cap';

-- a batch: one element crosses, one is declined, one fails
SELECT wallet_set_price('obp.call', 'obp', '{"model": "per_unit", "unit_price": "1"}',
	now() - interval '1 minute') > 0 AS priced;
SELECT wallet_create('obp-b') > 0 AS created;
SELECT wallet_grant('obp-b', 'obp', 100) > 0 AS granted;
SELECT wallet_set_alert('obp-b', 'obp', 50);
BEGIN;
SELECT idx, approved, reason, error, balance FROM wallet_ingest($$[
	{"customer": "obp-b", "meter": "obp.call", "quantity": 60, "idempotency_key": "obp-b1"},
	{"customer": "obp-b", "meter": "obp.call", "quantity": 500, "idempotency_key": "obp-b2"},
	{"customer": "obp-b", "meter": "obp.nope", "quantity": 1, "idempotency_key": "obp-b3"}]$$) ORDER BY idx;
PREPARE TRANSACTION 'obp_batch';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'obp_batch';
COMMIT PREPARED 'obp_batch';

-- rolled back after PREPARE: the row is gone with the debit
SELECT wallet_create('obp-d') > 0 AS created;
BEGIN;
SELECT approved, reason FROM wallet_debit('obp-d', 'obp', 1000, 'obp-5');
PREPARE TRANSACTION 'obp_rollback';
ROLLBACK PREPARED 'obp_rollback';

-- every prepared row committed; one row per notice-worthy change
SELECT customer, kind, available, threshold, detail - 'external_ref' - 'period_start' AS detail
  FROM wallet.outbox WHERE customer LIKE 'obp-%' ORDER BY id;
SELECT customer, wallet_balance(customer, 'obp') AS balance
  FROM (VALUES ('obp-a'), ('obp-b'), ('obp-c'), ('obp-d')) v(customer);

-- a savepoint that wrote a row and rolled back, then one released: prepares,
-- and the released one's row commits (the first one's is gone: the second
-- decline is not held back by it)
BEGIN;
SAVEPOINT s1;
SELECT approved, reason FROM wallet_debit('obp-d', 'obp', 1000, 'obp-6');
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
SELECT approved, reason FROM wallet_debit('obp-d', 'obp', 1000, 'obp-7');
RELEASE SAVEPOINT s2;
PREPARE TRANSACTION 'obp_savepoints';
COMMIT PREPARED 'obp_savepoints';
SELECT customer, kind, detail->>'reason' AS reason FROM wallet.outbox
 WHERE customer LIKE 'obp-%' AND kind = 'declined' ORDER BY id;

-- a transaction that commits directly after one that prepared still works
SELECT approved, balance FROM wallet_debit('obp-c', 'obp', 5, 'obp-8');
SELECT count(*) AS unacked FROM wallet.outbox WHERE customer LIKE 'obp-%' AND acked_at IS NULL;
