-- binding holds (#16): a hold reserves value from specific grants and cap room,
-- so a capture within the held amount cannot be declined.
\set VERBOSITY sqlstate
\pset null '(null)'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('bh', 0, 0.01);
SELECT wallet_set_price('bh.call', 'bh', '{"model": "per_unit", "unit_price": "1"}',
						effective_at => now() - interval '1 day') > 0 AS priced;
SELECT wallet_set_price('bh.out', 'bh', '{"model": "per_unit", "unit_price": "2"}',
						effective_at => now() - interval '1 day') > 0 AS priced;

-------------------------------------------- defect 1: a grant expires under a hold
SELECT wallet_create('bh-exp') > 0 AS created;
SELECT wallet_grant('bh-exp', 'bh', 100, expires_at => now() + interval '1 second') > 0 AS granted;
SELECT hold_id AS exp_hold, approved, amount, balance FROM wallet_hold('bh-exp', 'bh', 80, 'exp-h') \gset
SELECT :'approved' AS approved, :'amount' AS amount, :'balance' AS balance;
SELECT pg_sleep(1.2);
-- the 80 held is still there; the 20 not held expired
SELECT wallet_balance('bh-exp', 'bh') AS available;
SELECT * FROM wallet_balances('bh-exp');
-- another debit cannot draw the reserved value
SELECT approved, reason FROM wallet_debit('bh-exp', 'bh', 1, 'exp-d');
-- the capture within the hold is approved
SELECT approved, reason, amount, balance FROM wallet_capture(:exp_hold, 'bh.call', 50);
-- the 30 of the hold not used leaves now, as the grant's expiry (breakage)
SELECT kind, amount FROM wallet.ledger WHERE customer = 'bh-exp' ORDER BY id NULLS LAST, kind;
SELECT wallet_balance('bh-exp', 'bh') AS available;
SELECT * FROM wallet_verify();

-------------------------------------------- defect 1b: a grant is voided under a hold
SELECT wallet_create('bh-void') > 0 AS created;
SELECT wallet_grant('bh-void', 'bh', 100) AS void_grant \gset
SELECT hold_id AS void_hold FROM wallet_hold('bh-void', 'bh', 80, 'void-h') \gset
-- the void takes only what is not held
SELECT wallet_void_grant(:void_grant, 'chargeback') AS voided;
SELECT wallet_balance('bh-void', 'bh') AS available;
SELECT approved, reason, amount, balance FROM wallet_capture(:void_hold, 'bh.call', 50);
SELECT kind, amount FROM wallet.ledger WHERE customer = 'bh-void' ORDER BY id;
SELECT remaining FROM wallet.grants WHERE id = :void_grant;
SELECT * FROM wallet_verify();

-------------------------------------------- defect 2: a hold reserves spend-cap room
SELECT wallet_create('bh-cap') > 0 AS created;
SELECT wallet_grant('bh-cap', 'bh', 1000) > 0 AS granted;
SELECT wallet_set_cap('bh-cap', 'bh', 100, 'month', 'user');
SELECT hold_id AS cap_hold, approved FROM wallet_hold('bh-cap', 'bh', 60, 'cap-h', '15 minutes', '{"user": "ann"}') \gset
SELECT :'approved' AS approved;
-- ann's other spending cannot take the room her hold reserved
SELECT approved, reason FROM wallet_authorize_debit('bh-cap', 'bh.call', 50, 'cap-d1', '{"user": "ann"}');
SELECT approved, reason FROM wallet_authorize_debit('bh-cap', 'bh.call', 40, 'cap-d2', '{"user": "ann"}');
-- bob's bucket is his own
SELECT approved, reason FROM wallet_authorize_debit('bh-cap', 'bh.call', 90, 'cap-d3', '{"user": "bob"}');
-- the capture within the hold is approved, even with the cap lowered meanwhile
SELECT wallet_set_cap('bh-cap', 'bh', 10, 'month', 'user');
SELECT approved, reason, amount FROM wallet_capture(:cap_hold, 'bh.call', 55, '{"user": "ann"}');
SELECT dimension, dim_value, cap, spent FROM wallet_caps('bh-cap') ORDER BY dim_value;
SELECT * FROM wallet_verify();

-- a whole-wallet cap, hold without dimensions: its room is reserved too
SELECT wallet_create('bh-capw') > 0 AS created;
SELECT wallet_grant('bh-capw', 'bh', 1000) > 0 AS granted;
SELECT wallet_set_cap('bh-capw', 'bh', 100, 'month');
SELECT hold_id AS capw_hold FROM wallet_hold('bh-capw', 'bh', 60, 'capw-h') \gset
SELECT approved, reason FROM wallet_debit('bh-capw', 'bh', 50, 'capw-d1');
SELECT approved, reason FROM wallet_debit('bh-capw', 'bh', 40, 'capw-d2');
SELECT approved, reason, amount FROM wallet_capture(:capw_hold, 'bh.call', 60);
SELECT spent FROM wallet_caps('bh-capw');

-------------------------------------------- defect 3: resolving twice replays
SELECT wallet_create('bh-twice') > 0 AS created;
SELECT wallet_grant('bh-twice', 'bh', 100) > 0 AS granted;
SELECT hold_id AS tw_hold FROM wallet_hold('bh-twice', 'bh', 30, 'tw-h') \gset
SELECT approved, replayed, amount, balance, event_id AS tw_event FROM wallet_capture(:tw_hold, 'bh.call', 20) \gset
SELECT :'approved' AS approved, :'replayed' AS replayed, :'amount' AS amount, :'balance' AS balance;
-- the same capture again (a lost response): the stored result
SELECT approved, replayed, amount, balance, event_id = :tw_event AS same_event, hold_id = :tw_hold AS same_hold
  FROM wallet_capture(:tw_hold, 'bh.call', 20);
-- a different request on the captured hold: WL005
SELECT approved FROM wallet_capture(:tw_hold, 'bh.call', 21);
SELECT approved FROM wallet_release(:tw_hold);
-- release twice: the stored result; a capture after it: WL005
SELECT hold_id AS tw_hold2 FROM wallet_hold('bh-twice', 'bh', 10, 'tw-h2') \gset
SELECT approved, replayed, amount, balance FROM wallet_release(:tw_hold2);
SELECT approved, replayed, amount, balance FROM wallet_release(:tw_hold2);
SELECT approved FROM wallet_capture(:tw_hold2, 'bh.call', 1);
SELECT wallet_balance('bh-twice', 'bh') AS available;
SELECT * FROM wallet_verify();
