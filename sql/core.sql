-- core: assets, wallets, grants, drawdown, debits, replays, holds, overdraft, status, errors
\set VERBOSITY terse
SET client_min_messages = warning;
-- every suite starts from a fresh extension: ids and data do not leak between files
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('credits', 0, 0.01, 'AI credits');
SELECT wallet_create_asset('USD', 6);
SELECT wallet_create_asset('gpu_hours', 3, 2.5);
SELECT code, scale, unit_value FROM wallet.asset ORDER BY code;

-- wallets are idempotent per customer
SELECT wallet_create('acme') = wallet_create('acme') AS same_wallet;
SELECT wallet_create('globex', '{"tier": "pro"}') > 0 AS created;

-- amounts come back at exactly the asset's scale
SELECT wallet_grant('globex', 'USD', 0.5) > 0 AS granted;
SELECT wallet_balance('globex', 'USD');
SELECT * FROM wallet_balances('globex');

-- drawdown order: priority, then expiry (never last), then category, then creation
SELECT wallet_grant('acme', 'credits', 100, external_ref => 'paid-late', priority => 100) AS g_paid \gset
SELECT wallet_grant('acme', 'credits', 100, category => 'promotional', expires_at => now() + interval '10 days') AS g_promo_far \gset
SELECT wallet_grant('acme', 'credits', 100, category => 'paid', expires_at => now() + interval '5 days') AS g_paid_soon \gset
SELECT wallet_grant('acme', 'credits', 100, category => 'bundled') AS g_bundled \gset
SELECT wallet_grant('acme', 'credits', 100, category => 'promotional') AS g_promo \gset
SELECT wallet_grant('acme', 'credits', 100, priority => 10) AS g_first \gset
SELECT wallet_balance('acme', 'credits');

-- 600 drains every grant in order; watch which grant each line draws from
SELECT approved, reason, amount, balance FROM wallet_debit('acme', 'credits', 600, 'order-1');
SELECT CASE l.grant_id
		 WHEN :g_first THEN 'priority 10'
		 WHEN :g_paid_soon THEN 'expires in 5 days'
		 WHEN :g_promo_far THEN 'expires in 10 days'
		 WHEN :g_promo THEN 'promotional, never expires'
		 WHEN :g_bundled THEN 'bundled, never expires'
		 WHEN :g_paid THEN 'paid, never expires' END AS drawn_from,
	   -l.amount AS taken
  FROM wallet.ledger l JOIN wallet.events e ON e.id = l.event_id
 WHERE e.idempotency_key = 'order-1' ORDER BY l.id;
SELECT wallet_balance('acme', 'credits');

-- a decline is a result, not an error, and it is not stored under the key
SELECT approved, replayed, reason, event_id, amount, balance FROM wallet_debit('acme', 'credits', 1, 'order-2');
SELECT wallet_grant('acme', 'credits', 5);
SELECT approved, replayed, reason, amount, balance FROM wallet_debit('acme', 'credits', 1, 'order-2');

-- idempotent replay: same key, same request: the stored result, nothing changes
SELECT approved, replayed, amount, balance FROM wallet_debit('acme', 'credits', 1, 'order-2');
SELECT wallet_balance('acme', 'credits');
SELECT count(*) AS events FROM wallet.events WHERE customer = 'acme';
-- same key, different request: WL004
SELECT * FROM wallet_debit('acme', 'credits', 2, 'order-2');
SELECT * FROM wallet_debit('acme', 'credits', 1, 'order-2', '{"user": "x"}');
SELECT * FROM wallet_debit('acme', 'USD', 1, 'order-2');
-- keys are per customer: another customer may use the same key
SELECT approved, replayed FROM wallet_debit('globex', 'USD', 0.25, 'order-2');

-- priced debits (per_unit and flat) and their replays
SELECT wallet_set_price('chat.response', 'credits', '{"model": "flat", "price": "12"}') > 0 AS priced;
SELECT wallet_set_price('render.seconds', 'credits', '{"model": "per_unit", "unit_price": "12"}') > 0 AS priced;
SELECT wallet_set_price('llm.tokens', 'USD', '{"model": "per_unit", "unit_price": "3", "per": 1000000}') > 0 AS priced;
SELECT wallet_grant('acme', 'credits', 480, external_ref => 'pay_001') AS g_pay \gset
SELECT approved, amount, balance FROM wallet_authorize_debit('acme', 'chat.response', 1, 'resp-1');
SELECT approved, replayed, amount, balance FROM wallet_authorize_debit('acme', 'chat.response', 1, 'resp-1');
SELECT * FROM wallet_authorize_debit('acme', 'chat.response', 2, 'resp-1');
SELECT approved, amount, balance FROM wallet_authorize_debit('globex', 'llm.tokens', 12345, 'tok-1');
SELECT meter, quantity, asset, amount, price_id IS NOT NULL AS has_price FROM wallet.events WHERE idempotency_key = 'tok-1';

-- overdraft: the limit lets available go negative, no further
SELECT wallet_create('initech');
SELECT wallet_grant('initech', 'credits', 10);
SELECT wallet_set_limit('initech', 'credits', overdraft => 20);
SELECT approved, reason, amount, balance FROM wallet_debit('initech', 'credits', 25, 'od-1');
SELECT approved, reason, amount, balance FROM wallet_debit('initech', 'credits', 6, 'od-2');
SELECT approved, reason, amount, balance FROM wallet_debit('initech', 'credits', 5, 'od-3');
SELECT * FROM wallet_balances('initech');
-- the limit cannot be lowered below the overdraft in use
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT wallet_set_limit('initech', 'credits', overdraft => 10);
\set VERBOSITY terse
\set SHOW_CONTEXT errors
-- a new grant repays overdraft first
SELECT wallet_grant('initech', 'credits', 8) AS g_repay \gset
SELECT * FROM wallet_balances('initech');
SELECT kind, grant_id IS NOT NULL AS on_grant, amount FROM wallet.ledger
 WHERE customer = 'initech' AND kind = 'repay' ORDER BY id;
SELECT wallet_grant('initech', 'credits', 100);
SELECT * FROM wallet_balances('initech');
-- a grant that is not live yet does not repay
SELECT approved, balance FROM wallet_debit('initech', 'credits', 100, 'od-4');
SELECT wallet_grant('initech', 'credits', 50, effective_at => now() + interval '1 day');
SELECT * FROM wallet_balances('initech');

-- frozen wallets decline debits and holds; grants still land; closed wallets take no grants
SELECT wallet_set_status('acme', 'frozen');
SELECT approved, reason, amount, balance FROM wallet_debit('acme', 'credits', 1, 'frozen-1');
SELECT approved, reason FROM wallet_hold('acme', 'credits', 1, 'frozen-2');
SELECT approved, reason FROM wallet_authorize_debit('acme', 'chat.response', 1, 'frozen-3');
-- a replay of an earlier approval still answers
SELECT approved, replayed FROM wallet_debit('acme', 'credits', 1, 'order-2');
SELECT wallet_grant('acme', 'credits', 1) > 0 AS granted_while_frozen;
SELECT wallet_set_status('acme', 'active');
SELECT approved FROM wallet_debit('acme', 'credits', 1, 'active-again');
SELECT wallet_create('umbrella');
SELECT wallet_set_status('umbrella', 'closed');
SELECT approved, reason FROM wallet_debit('umbrella', 'credits', 1, 'closed-1');
SELECT wallet_grant('umbrella', 'credits', 1);

-- holds: reserve, capture the actual usage, release the rest
SELECT wallet_balance('acme', 'credits') AS before_hold;
SELECT hold_id AS h1, approved, amount, balance FROM wallet_hold('acme', 'credits', 50, 'job-1') \gset
SELECT :'approved', :'amount', :'balance';
SELECT approved, replayed, hold_id = :h1 AS same_hold FROM wallet_hold('acme', 'credits', 50, 'job-1');
SELECT * FROM wallet_hold('acme', 'credits', 51, 'job-1');
SELECT * FROM wallet_debit('acme', 'credits', 50, 'job-1');
SELECT * FROM wallet_balances('acme');
SELECT approved, amount, balance, hold_id = :h1 AS same_hold, event_id IS NOT NULL AS has_event
  FROM wallet_capture(:h1, 'chat.response', 2);
SELECT * FROM wallet_balances('acme');
-- a hold resolves once
SELECT * FROM wallet_capture(:h1, 'chat.response', 1);
SELECT * FROM wallet_release(:h1);
-- release frees it all
SELECT hold_id AS h2 FROM wallet_hold('acme', 'credits', 30, 'job-2') \gset
SELECT approved, amount, balance FROM wallet_release(:h2);
SELECT status FROM wallet.hold WHERE id = :h2;
-- capture above the hold: debited if the balance allows, else declined and the hold stays open
SELECT hold_id AS h3 FROM wallet_hold('acme', 'credits', 12, 'job-3') \gset
SELECT approved, amount, balance FROM wallet_capture(:h3, 'render.seconds', 3);
SELECT hold_id AS h4 FROM wallet_hold('acme', 'credits', 12, 'job-4') \gset
SELECT approved, reason, hold_id = :h4 AS same_hold, balance FROM wallet_capture(:h4, 'render.seconds', 100);
SELECT status FROM wallet.hold WHERE id = :h4;
SELECT approved, amount FROM wallet_release(:h4);
-- a hold larger than available declines; max_holds caps open holds
SELECT approved, reason, amount, balance FROM wallet_hold('acme', 'credits', 100000, 'job-5');
SELECT wallet_set_limit('acme', 'credits', max_holds => 1);
SELECT approved FROM wallet_hold('acme', 'credits', 1, 'job-6');
SELECT approved, reason FROM wallet_hold('acme', 'credits', 1, 'job-7');
SELECT wallet_set_limit('acme', 'credits');
-- an expired hold stops counting at once
SELECT hold_id AS h8 FROM wallet_hold('globex', 'USD', 0.1, 'job-8', '1 microsecond') \gset
SELECT pg_sleep(0.01);
SELECT * FROM wallet_balances('globex');
SELECT * FROM wallet_capture(:h8, 'llm.tokens', 1);

-- expiry at read time: an expired grant no longer counts
SELECT wallet_create('hooli');
-- (1.1: a grant cannot be created expired; this one expires 0.2 s after it is made)
SELECT wallet_grant('hooli', 'credits', 40, effective_at => now() - interval '2 days', expires_at => now() + interval '0.2 s');
SELECT pg_sleep(0.3);
SELECT wallet_grant('hooli', 'credits', 7);
SELECT * FROM wallet_balances('hooli');
SELECT approved, reason, balance FROM wallet_debit('hooli', 'credits', 8, 'exp-1');

-- rollback leaves no trace
BEGIN;
SELECT approved, balance FROM wallet_debit('hooli', 'credits', 6, 'rb-1');
SELECT hold_id IS NOT NULL AS held FROM wallet_hold('hooli', 'credits', 1, 'rb-2');
ROLLBACK;
SELECT * FROM wallet_balances('hooli');
SELECT (SELECT count(*) FROM wallet.events WHERE idempotency_key IN ('rb-1', 'rb-2'))
	 + (SELECT count(*) FROM wallet.hold WHERE idempotency_key IN ('rb-1', 'rb-2')) AS traces;
SELECT approved, replayed, balance FROM wallet_debit('hooli', 'credits', 6, 'rb-1');

-- external_ref makes a grant idempotent
SELECT wallet_grant('acme', 'credits', 480, external_ref => 'pay_001') = :g_pay AS same_grant;
SELECT wallet_grant('acme', 'credits', 481, external_ref => 'pay_001');

-- errors: the contract's SQLSTATEs, lower-case messages naming the value
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT wallet_debit('nobody', 'credits', 1, 'k');
SELECT wallet_debit('acme', 'doubloons', 1, 'k');
SELECT wallet_debit('acme', 'credits', 1.5, 'k');
SELECT wallet_debit('acme', 'credits', 0, 'k');
SELECT wallet_debit('acme', 'credits', -3, 'k');
SELECT wallet_debit('acme', 'credits', 'NaN', 'k');
SELECT wallet_debit('acme', 'credits', 'Infinity', 'k');
SELECT wallet_debit('acme', 'credits', 1e30, 'k');
SELECT wallet_debit('acme', 'credits', 9223372036854775808, 'k');
SELECT wallet_debit(NULL, 'credits', 1, 'k');
SELECT wallet_debit('acme', 'credits', 1, NULL);
SELECT wallet_debit('acme', 'credits', 1, '');
SELECT wallet_debit('acme', 'credits', 1, 'k', '[1, 2]');
SELECT wallet_debit('acme', 'credits', 1, 'k', cost => -1);
\set VERBOSITY sqlstate
SELECT wallet_authorize_debit('acme', 'no.such.meter', 1, 'k');
\set VERBOSITY default
SELECT wallet_authorize_debit('acme', 'chat.response', 0, 'k');
SELECT wallet_authorize_debit('acme', 'chat.response', 1, 'k', occurred_at => NULL);
SELECT wallet_hold('acme', 'credits', 1, 'k', '-1 minute');
SELECT wallet_capture(999999, 'chat.response', 1);
SELECT wallet_release(NULL);
SELECT wallet_grant('acme', 'credits', 1, category => 'gift');
SELECT wallet_grant('acme', 'credits', 1.5);
\set VERBOSITY sqlstate
SELECT wallet_grant('acme', 'credits', 1, expires_at => now() - interval '1 day');
\set VERBOSITY default
SELECT wallet_grant('acme', 'credits', 1, recurrence => '-1 day');
SELECT wallet_set_status('acme', 'sleeping');
SELECT wallet_create_asset('bad code');
SELECT wallet_create_asset('tokens', 13);
SELECT wallet_create_asset('credits', 2);
SELECT wallet_set_limit('acme', 'credits', overdraft => -5);
SELECT wallet_set_limit('nobody', 'credits');
SELECT wallet_balance('nobody', 'credits');
SELECT wallet_balance('acme', 'doubloons');
SELECT wallet_outbox_ack(999999);
-- the ledger is append-only, even for the owner
UPDATE wallet.line SET amount = 0;
DELETE FROM wallet.line;
\set VERBOSITY terse

-- every invariant holds
SELECT * FROM wallet_verify();
