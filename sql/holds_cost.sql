-- The cost work on holds (#16, "What a hold costs" in docs/holds.md): each
-- shortcut keeps the answers it skips work for.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('hc', 0);
SELECT wallet_set_price('hc.x', 'hc', '{"model": "per_unit", "unit_price": "1"}') > 0 AS priced;
SELECT wallet_create('hca');
SELECT wallet_grant('hca', 'hc', 100) > 0 AS granted;

-- wallet.holds_made: a hold whose balance lock found the wallet marked does
-- not read it again; a mark undone by a rollback to a savepoint is made again
BEGIN;
SAVEPOINT a;
SELECT approved FROM wallet_hold('hca', 'hc', 5, 'hc1');
SELECT approved FROM wallet_hold('hca', 'hc', 5, 'hc2');
ROLLBACK TO a;
SELECT holds_made FROM wallet.wallet WHERE customer = 'hca';
-- a row written by SQL after the rollback marks it too
SAVEPOINT b;
SELECT approved FROM wallet_hold('hca', 'hc', 5, 'hc1');
SELECT approved FROM wallet_hold('hca', 'hc', 5, 'hc2');
ROLLBACK TO b;
INSERT INTO wallet.hold (wallet_id, asset, amount, idempotency_key, created_at, expires_at, balance_after)
SELECT id, 'hc', 1, 'hc-sql', now(), now() + interval '1 minute', 99 FROM wallet.wallet WHERE customer = 'hca';
SELECT holds_made FROM wallet.wallet WHERE customer = 'hca';
ROLLBACK;
SELECT holds_made FROM wallet.wallet WHERE customer = 'hca';
BEGIN;
SAVEPOINT a;
SELECT approved FROM wallet_hold('hca', 'hc', 5, 'hc1');
ROLLBACK TO a;
SELECT approved FROM wallet_hold('hca', 'hc', 5, 'hc3');
COMMIT;
SELECT holds_made FROM wallet.wallet WHERE customer = 'hca';
-- so a debit with the hold's key is WL004, and one with a key rolled back debits
SELECT approved FROM wallet_debit('hca', 'hc', 1, 'hc3');
SELECT approved, amount FROM wallet_debit('hca', 'hc', 1, 'hc1');
SELECT * FROM wallet_verify();

-- a capture finds its wallet by id among the wallets the backend keeps: a
-- change of the wallet (frozen, then active) is seen at once (another
-- session's: binding_freeze.spec)
SELECT wallet_create('hcb');
SELECT wallet_grant('hcb', 'hc', 100) > 0 AS granted;
SELECT hold_id AS hb1 FROM wallet_hold('hcb', 'hc', 10, 'hcb1') \gset
SELECT approved, amount FROM wallet_capture_lines(:hb1, '[{"meter": "hc.x", "quantity": 1}]');
SELECT hold_id AS hb2 FROM wallet_hold('hcb', 'hc', 10, 'hcb2') \gset
SELECT hold_id AS hb3 FROM wallet_hold('hcb', 'hc', 10, 'hcb3') \gset
SELECT wallet_set_status('hcb', 'frozen');
SELECT approved, reason FROM wallet_capture(:hb2, 'hc.x', 20);
SELECT wallet_set_status('hcb', 'active');
SELECT approved, reason, amount FROM wallet_capture(:hb2, 'hc.x', 20);
SELECT * FROM wallet_verify();
