-- wallet_quote: what wallet_authorize_debit would charge now and whether it
-- would approve, without writing or locking anything.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
-- every suite starts from a fresh extension: ids and data do not leak between files
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('quo_credits', 0, 0.01);
SELECT wallet_create_asset('quo_usd', 2);
SELECT count(wallet_create(c)) FROM unnest(ARRAY['quo_a', 'quo_low', 'quo_frozen', 'quo_od', 'quo_hold',
	'quo_new', 'quo_plan', 'quo_vip', 'quo_tier', 'quo_reset']) c;
SELECT wallet_grant('quo_a', 'quo_credits', 100) > 0 AS granted;
SELECT wallet_grant('quo_a', 'quo_usd', 10) > 0 AS granted;
SELECT wallet_grant('quo_low', 'quo_credits', 5) > 0 AS granted;
SELECT wallet_grant('quo_frozen', 'quo_credits', 100) > 0 AS granted;
SELECT wallet_set_status('quo_frozen', 'frozen');
SELECT wallet_set_limit('quo_od', 'quo_credits', overdraft => 50);
SELECT wallet_grant('quo_hold', 'quo_credits', 100) > 0 AS granted;
SELECT approved, amount, balance FROM wallet_hold('quo_hold', 'quo_credits', 90, 'quo-h1');
SELECT wallet_grant('quo_plan', 'quo_credits', 100) > 0 AS granted;
-- (wallet_assign_plan fails with 42702, an ambiguous column; the row it would write)
INSERT INTO wallet.plan_assignment (wallet_id, effective_at, plan)
SELECT id, now() - interval '3 days', 'pro' FROM wallet.wallet WHERE customer = 'quo_plan';
SELECT wallet_grant('quo_vip', 'quo_credits', 100) > 0 AS granted;
SELECT wallet_grant('quo_tier', 'quo_credits', 100) > 0 AS granted;
-- a recurring grant whose first boundary has passed: the first debit writes the reset down
SELECT wallet_grant('quo_reset', 'quo_credits', 40, effective_at => now() - interval '36 hours',
	recurrence => interval '1 day') > 0 AS granted;
-- (1.1 folds the boundary before its creation into the grant: resets = 0 makes it the
-- grant created before its boundary that this test is about)
UPDATE wallet.grant_block g SET resets = 0 FROM wallet.wallet w
 WHERE w.id = g.wallet_id AND w.customer = 'quo_reset';

-- prices: two versions of quo.chat, a plan's and a customer's rate, tokens in
-- dollars (rounded), a graduated meter and a matrix without a default
SELECT wallet_set_price('quo.chat', 'quo_credits', '{"model": "per_unit", "unit_price": "3"}',
	now() - interval '2 days') AS chat_v1 \gset
SELECT wallet_set_price('quo.chat', 'quo_credits', '{"model": "per_unit", "unit_price": "4"}',
	now() - interval '1 hour') AS chat_v2 \gset
SELECT wallet_set_price('quo.chat', 'quo_credits', '{"model": "per_unit", "unit_price": "2"}',
	now() - interval '2 days', plan => 'pro') AS chat_pro \gset
SELECT wallet_set_price('quo.chat', 'quo_credits', '{"model": "per_unit", "unit_price": "1"}',
	now() - interval '2 days', customer => 'quo_vip') AS chat_vip \gset
SELECT wallet_set_price('quo.tokens', 'quo_usd',
	'{"model": "per_unit", "unit_price": "2.5", "per": 1000}', now() - interval '1 day') AS tokens \gset
SELECT wallet_set_price('quo.gpu', 'quo_credits',
	'{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "0"}, {"unit_price": "1"}]}',
	now() - interval '1 day') AS gpu \gset
SELECT wallet_set_price('quo.llm', 'quo_credits',
	'{"model": "matrix", "dimensions": ["model"], "rates": [{"match": {"model": "big"}, "rule": {"model": "flat", "price": "9"}}]}',
	now() - interval '1 day') AS llm \gset

-- the quote, then the debit: same asset, amount and price version; the
-- quote's balance is the debit's balance before
SELECT asset, amount, price_id = :chat_v2 AS v2, balance, would_approve
  FROM wallet_quote('quo_a', 'quo.chat', 2);
SELECT approved, asset, amount, balance FROM wallet_authorize_debit('quo_a', 'quo.chat', 2, 'quo-1');
SELECT price_id = :chat_v2 AS v2 FROM wallet.events WHERE customer = 'quo_a' AND idempotency_key = 'quo-1';

-- a late event is priced at the version in force then
SELECT asset, amount, price_id = :chat_v1 AS v1, balance, would_approve
  FROM wallet_quote('quo_a', 'quo.chat', 2, occurred_at => now() - interval '1 day');
SELECT approved, amount, balance
  FROM wallet_authorize_debit('quo_a', 'quo.chat', 2, 'quo-2', occurred_at => now() - interval '1 day');
SELECT price_id = :chat_v1 AS v1 FROM wallet.events WHERE customer = 'quo_a' AND idempotency_key = 'quo-2';

-- plan and customer rates
SELECT amount, price_id = :chat_pro AS pro, balance, would_approve FROM wallet_quote('quo_plan', 'quo.chat', 5);
SELECT approved, amount, balance FROM wallet_authorize_debit('quo_plan', 'quo.chat', 5, 'quo-3');
SELECT amount, price_id = :chat_vip AS vip, balance, would_approve FROM wallet_quote('quo_vip', 'quo.chat', 5);
SELECT approved, amount, balance FROM wallet_authorize_debit('quo_vip', 'quo.chat', 5, 'quo-4');

-- rounding to the asset's scale: 1234 tokens at 2.5 per 1000 = 3.085 -> 3.09
SELECT asset, amount, price_id = :tokens AS tokens, balance, would_approve FROM wallet_quote('quo_a', 'quo.tokens', 1234);
SELECT approved, asset, amount, balance FROM wallet_authorize_debit('quo_a', 'quo.tokens', 1234, 'quo-5');

-- tiers: the quote reads the usage counter as the debit does
SELECT amount, balance, would_approve FROM wallet_quote('quo_tier', 'quo.gpu', 8);
SELECT approved, amount, balance FROM wallet_authorize_debit('quo_tier', 'quo.gpu', 8, 'quo-6');
SELECT amount, balance, would_approve FROM wallet_quote('quo_tier', 'quo.gpu', 5);
SELECT approved, amount, balance FROM wallet_authorize_debit('quo_tier', 'quo.gpu', 5, 'quo-7');
SELECT amount, balance, would_approve FROM wallet_quote('quo_tier', 'quo.gpu', 4);

-- matrix: the matching rate, and WL003 when none matches
SELECT amount, price_id = :llm AS llm, would_approve FROM wallet_quote('quo_a', 'quo.llm', 1, '{"model": "big"}');
SELECT * FROM wallet_quote('quo_a', 'quo.llm', 1, '{"model": "small"}');

-- would_approve = false, and the debit declines for the same reason
SELECT amount, balance, would_approve FROM wallet_quote('quo_low', 'quo.chat', 2);
SELECT approved, reason, balance FROM wallet_authorize_debit('quo_low', 'quo.chat', 2, 'quo-8');
SELECT amount, balance, would_approve FROM wallet_quote('quo_frozen', 'quo.chat', 1);
SELECT approved, reason, balance FROM wallet_authorize_debit('quo_frozen', 'quo.chat', 1, 'quo-9');
-- an open hold counts against the balance
SELECT amount, balance, would_approve FROM wallet_quote('quo_hold', 'quo.chat', 3);
SELECT approved, reason, balance FROM wallet_authorize_debit('quo_hold', 'quo.chat', 3, 'quo-10');
SELECT amount, balance, would_approve FROM wallet_quote('quo_hold', 'quo.chat', 2);
SELECT approved, amount, balance FROM wallet_authorize_debit('quo_hold', 'quo.chat', 2, 'quo-11');
-- the overdraft limit: 0 available, 50 allowed below
SELECT amount, balance, would_approve FROM wallet_quote('quo_od', 'quo.chat', 12);
SELECT approved, amount, balance FROM wallet_authorize_debit('quo_od', 'quo.chat', 12, 'quo-12');
SELECT amount, balance, would_approve FROM wallet_quote('quo_od', 'quo.chat', 1);
SELECT approved, reason, balance FROM wallet_authorize_debit('quo_od', 'quo.chat', 1, 'quo-13');

-- a wallet without a balance row in the asset: 0 available; a free tier still approves
SELECT asset, amount, balance, would_approve FROM wallet_quote('quo_new', 'quo.chat', 1);
SELECT asset, amount, balance, would_approve FROM wallet_quote('quo_new', 'quo.gpu', 3);
SELECT count(*) AS balance_rows FROM wallet_balances('quo_new');

-- nothing is written, not even the reset time has made; no xid, so no row lock either
SELECT resets AS resets_before FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
 WHERE w.customer = 'quo_reset';
CREATE TEMP TABLE quo_counts AS
SELECT (SELECT count(*) FROM wallet.event) AS events, (SELECT count(*) FROM wallet.line) AS lines,
	   (SELECT count(*) FROM wallet.outbox) AS outbox, (SELECT count(*) FROM wallet.account) AS accounts,
	   (SELECT coalesce(sum(quantity), 0) FROM wallet.usage_counter) AS usage;
BEGIN;
SELECT amount, balance, would_approve FROM wallet_quote('quo_reset', 'quo.chat', 3);
SELECT amount, balance, would_approve FROM wallet_quote('quo_low', 'quo.chat', 9);
SELECT amount, balance, would_approve FROM wallet_quote('quo_tier', 'quo.gpu', 100);
SELECT amount, balance, would_approve FROM wallet_quote('quo_new', 'quo.tokens', 1000);
SELECT txid_current_if_assigned() IS NULL AS no_xid;
COMMIT;
SELECT (SELECT count(*) FROM wallet.event) = events AS same_events,
	   (SELECT count(*) FROM wallet.line) = lines AS same_lines,
	   (SELECT count(*) FROM wallet.outbox) = outbox AS same_outbox,
	   (SELECT count(*) FROM wallet.account) = accounts AS same_accounts,
	   (SELECT coalesce(sum(quantity), 0) FROM wallet.usage_counter) = usage AS same_usage
  FROM quo_counts;
SELECT resets AS resets_after_quote FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
 WHERE w.customer = 'quo_reset';
-- the debit itself does write the reset down
SELECT approved, amount, balance FROM wallet_authorize_debit('quo_reset', 'quo.chat', 3, 'quo-14');
SELECT resets AS resets_after_debit FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
 WHERE w.customer = 'quo_reset';

-- the same argument checks and errors as wallet_authorize_debit
SELECT * FROM wallet_quote('quo_nobody', 'quo.chat', 1);
SELECT * FROM wallet_quote('quo_a', 'quo.nothing', 1);
SELECT * FROM wallet_quote(NULL, 'quo.chat', 1);
SELECT * FROM wallet_quote('', 'quo.chat', 1);
SELECT * FROM wallet_quote('quo_a', NULL, 1);
SELECT * FROM wallet_quote('quo_a', 'quo.chat', NULL);
SELECT * FROM wallet_quote('quo_a', 'quo.chat', 0);
SELECT * FROM wallet_quote('quo_a', 'quo.chat', -1);
SELECT * FROM wallet_quote('quo_a', 'quo.chat', 'NaN');
SELECT * FROM wallet_quote('quo_a', 'quo.chat', 1, '[1]');
SELECT * FROM wallet_quote('quo_a', 'quo.chat', 1, occurred_at => NULL);
SELECT * FROM wallet_quote('quo_a', 'quo.chat', 1, occurred_at => now() - interval '40 days');
SELECT * FROM wallet_quote('quo_a', 'quo.chat', 1, occurred_at => now() + interval '1 hour');
SELECT * FROM wallet_quote('quo_a', 'quo.chat', 1e30);
SELECT * FROM wallet_authorize_debit('quo_a', 'quo.chat', 1e30, 'quo-15');

SELECT * FROM wallet_verify();
