-- binding holds (#16) on an upgraded database: a 1.0 database has open holds
-- that reserve nothing; ALTER EXTENSION wallet UPDATE back-fills them from the
-- live grants in drawdown order (the rest is overdraft room), and capturing
-- such a hold then works like capturing any other.
\set VERBOSITY sqlstate
\pset null '(null)'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet VERSION '1.0';

SELECT wallet_create_asset('up', 0, 0.01);
SELECT wallet_set_price('up.call', 'up', '{"model": "per_unit", "unit_price": "1"}',
						effective_at => now() - interval '1 day') > 0 AS priced;
SELECT wallet_create('up-a') > 0 AS created;
SELECT wallet_grant('up-a', 'up', 50, expires_at => now() + interval '2 seconds') AS up_soon \gset
SELECT wallet_grant('up-a', 'up', 100) AS up_paid \gset
SELECT wallet_set_limit('up-a', 'up', overdraft => 30);
SELECT hold_id AS up_h1 FROM wallet_hold('up-a', 'up', 70, 'up-h1', '1 hour') \gset
SELECT hold_id AS up_h2 FROM wallet_hold('up-a', 'up', 100, 'up-h2', '1 hour') \gset
SELECT hold_id AS up_h3 FROM wallet_hold('up-a', 'up', 5, 'up-h3', '1 hour') \gset
SELECT hold_id AS up_h4 FROM wallet_hold('up-a', 'up', 1, 'up-h4', '1 microsecond') \gset
SELECT * FROM wallet_balances('up-a');

ALTER EXTENSION wallet UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'wallet';
-- each open hold now reserves: h1 the 50 expiring first and 20 of the other;
-- h2 the 80 left and 20 of overdraft room; h3 the rest of the room (the lapsed h4 nothing)
SELECT h.idempotency_key, r.grant_id = :up_soon AS soon, r.amount
  FROM wallet.hold_grant r JOIN wallet.hold h ON h.id = r.hold_id ORDER BY h.id, r.grant_id;
SELECT idempotency_key, overdraft FROM wallet.hold ORDER BY id;
SELECT * FROM wallet_balances('up-a');
SELECT * FROM wallet_verify();
-- another debit finds only the 5 of overdraft room no hold reserved
SELECT approved, reason FROM wallet_debit('up-a', 'up', 6, 'up-d0');
SELECT approved, reason FROM wallet_debit('up-a', 'up', 1, 'up-d1');
SELECT pg_sleep(2.2);
-- the grant expired under h1: its capture within the hold is approved
SELECT approved, reason, amount, balance FROM wallet_capture(:up_h1, 'up.call', 60);
SELECT approved, replayed, amount FROM wallet_capture(:up_h1, 'up.call', 60);
SELECT approved, amount, balance FROM wallet_capture(:up_h2, 'up.call', 100);
SELECT approved, amount, balance FROM wallet_release(:up_h3);
SELECT action, count FROM wallet_sweep() ORDER BY action;
SELECT * FROM wallet_balances('up-a');
SELECT kind, amount FROM wallet.ledger WHERE customer = 'up-a' ORDER BY id;
SELECT * FROM wallet_verify();
