-- A realistic 1.0 database, made by the 1.0 scripts before the upgrade:
-- wallets in two assets, paid, promotional, bundled and recurring grants, an
-- expired grant, priced events of several models, an open hold and a captured
-- one, a refund, a void, spend caps with member dimensions, overdraft, and
-- outbox rows (a decline and a low-balance crossing).  Times are relative to
-- now(), so the scenario never leaves the backdate window.
SET client_min_messages = warning;
SELECT wallet_create_asset('credits', 0, 0.01);
SELECT wallet_create_asset('USD', 6);
SELECT wallet_create(c) FROM unnest(ARRAY['acme', 'globex', 'initech', 'umbrella']) c;
SELECT wallet_set_price('chat', 'credits', '{"model": "flat", "price": "12"}', now() - interval '10 days');
SELECT wallet_set_price('tokens', 'USD', '{"model": "graduated", "tiers": [{"up_to": 1000, "unit_price": "0"}, {"unit_price": "0.001"}]}',
	now() - interval '10 days');
SELECT wallet_set_price('llm', 'credits', '{"model": "matrix", "dimensions": ["model"], "rates": [
	{"match": {"model": "big"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "2"}, {"unit_price": "1"}]}},
	{"match": {"model": "small"}, "rule": {"model": "per_unit", "unit_price": "1", "per": 10}}]}', now() - interval '10 days');
SELECT wallet_set_price('chat', 'credits', '{"model": "flat", "price": "8"}', now() - interval '10 days', plan => 'pro');
SELECT wallet_assign_plan('globex', 'pro', now() - interval '5 days');

-- acme: paid with an external ref, promotional expiring in a week, a voided grant
SELECT wallet_grant('acme', 'credits', 500, external_ref => 'pay-1');
SELECT wallet_grant('acme', 'credits', 100, category => 'promotional', expires_at => now() + interval '7 days');
SELECT wallet_grant('acme', 'credits', 70, priority => 300) AS acme_void \gset
SELECT wallet_void_grant(:acme_void, 'chargeback');
SELECT wallet_set_limit('acme', 'credits', overdraft => 0, low_balance => 450, max_holds => 3);
SELECT * FROM wallet_authorize_debit('acme', 'chat', 1, 'a1', '{"user": "ann"}', cost => 0.02);
SELECT * FROM wallet_authorize_debit('acme', 'llm', 25, 'a2', '{"model": "big", "user": "ann"}', cost => 0.05);
SELECT * FROM wallet_authorize_debit('acme', 'llm', 95, 'a3', '{"model": "small", "user": "bob"}');
SELECT * FROM wallet_authorize_debit('acme', 'chat', 1, 'a4', occurred_at => now() - interval '3 days');
SELECT * FROM wallet_debit('acme', 'credits', 100000, 'too-much');          -- declined: outbox row
SELECT * FROM wallet_refund((SELECT id FROM wallet.events WHERE idempotency_key = 'a2'), 10, 'bad answer');
-- an open hold, and a hold captured in 1.0
SELECT * FROM wallet_hold('acme', 'credits', 40, 'h-open', '1 day');
SELECT * FROM wallet_hold('acme', 'credits', 30, 'h-done', '1 day');
SELECT * FROM wallet_capture((SELECT id FROM wallet.hold WHERE idempotency_key = 'h-done'), 'chat', 1);
SELECT * FROM wallet_hold('acme', 'credits', 5, 'h-released', '1 day');
SELECT * FROM wallet_release((SELECT id FROM wallet.hold WHERE idempotency_key = 'h-released'));

-- globex: USD, an expired grant (breakage), graduated tokens, a cap per member
SELECT wallet_grant('globex', 'USD', 10.5);
SELECT wallet_grant('globex', 'USD', 3, effective_at => now() - interval '2 days', expires_at => now() - interval '1 day');
SELECT wallet_set_cap('globex', 'USD', 1, 'month', 'user');
SELECT wallet_set_cap('globex', 'USD', 5, 'day');
SELECT * FROM wallet_authorize_debit('globex', 'tokens', 1500, 't1', '{"user": "carol"}');
SELECT * FROM wallet_authorize_debit('globex', 'tokens', 1200, 't2', '{"user": "carol"}');   -- passes carol's cap: declined
SELECT * FROM wallet_authorize_debit('globex', 'chat', 1, 'g1');

-- initech: bundled recurring allowance 40 days in, overdraft in use
SELECT wallet_grant('initech', 'credits', 30, category => 'bundled', recurrence => interval '1 month',
	rollover_max => 10, effective_at => now() - interval '40 days');
SELECT wallet_set_limit('initech', 'credits', overdraft => 50, low_balance => 10);
SELECT * FROM wallet_debit('initech', 'credits', 60, 'd1');

-- umbrella: frozen after use
SELECT wallet_grant('umbrella', 'credits', 20, category => 'promotional');
SELECT * FROM wallet_debit('umbrella', 'credits', 5, 'u1');
SELECT wallet_set_status('umbrella', 'frozen');
SELECT * FROM wallet_debit('umbrella', 'credits', 5, 'u2');                  -- declined wallet_frozen

SELECT wallet_sweep();
