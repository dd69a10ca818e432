-- A refund gives back to the usage counters of the price that priced the event
-- (1.1): the amount refunded to its period's max_per_period counter, and, by
-- the refund that completes the event, its quantity to the tier counters.  A
-- partial refund leaves the usage, as wallet_usage counts it.  The concurrent
-- case is test/isolation/specs/refund_usage.spec.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('USD', 2, 1);
SELECT wallet_create('acme') > 0 AS created;
SELECT wallet_grant('acme', 'USD', 10000) > 0 AS granted;
CREATE FUNCTION ev(key text) RETURNS bigint LANGUAGE sql AS
	$$ SELECT id FROM wallet.event WHERE idempotency_key = key $$;
CREATE FUNCTION counters() RETURNS TABLE (meter text, counter text, period text, quantity numeric) LANGUAGE sql AS
	$$ SELECT meter, counter, period, quantity FROM wallet.usage_counter ORDER BY meter, counter, period $$;

-- "unlimited after 100 USD a month": charged 100, refunded in full, the month
-- is back to 0 spent
SELECT wallet_set_price('capped', 'USD', '{"model": "per_unit", "unit_price": "1", "max_per_period": "100"}');
SELECT amount FROM wallet_authorize_debit('acme', 'capped', 100, 'c1');
SELECT amount FROM wallet_refund(ev('c1'), NULL, 'failed job');
SELECT amount AS after_full_refund FROM wallet_authorize_debit('acme', 'capped', 30, 'c2');
-- a refund gives back exactly what it refunds: c2's 30 (0 spent again); 60
-- and 50 on the cap of 100 charge 60 and 40; 25 of c3 refunded is room for 25
SELECT amount FROM wallet_refund(ev('c2'), 30);
SELECT amount FROM wallet_authorize_debit('acme', 'capped', 60, 'c3');
SELECT amount FROM wallet_authorize_debit('acme', 'capped', 50, 'c4');
SELECT amount FROM wallet_refund(ev('c3'), 25);
SELECT amount AS room_25 FROM wallet_authorize_debit('acme', 'capped', 40, 'c5');
SELECT * FROM counters() WHERE meter LIKE 'capped%';

-- first 100 calls a month free, then 1 each: a full refund takes the event's
-- units off the month's usage
SELECT wallet_set_price('grad', 'USD', '{"model": "graduated", "tiers": [{"up_to": 100, "unit_price": "0"}, {"unit_price": "1"}]}');
SELECT amount FROM wallet_authorize_debit('acme', 'grad', 150, 'g1');
SELECT amount FROM wallet_refund(ev('g1'), NULL, 'duplicate');
SELECT amount AS free_again FROM wallet_authorize_debit('acme', 'grad', 10, 'g2');
-- a partial refund leaves the usage (160); so 5 more are paid; the refund that
-- completes the event (the last of two parts) takes its 150 units off (15 left)
SELECT amount FROM wallet_authorize_debit('acme', 'grad', 150, 'g3');
SELECT amount FROM wallet_refund(ev('g3'), 20);
SELECT * FROM counters() WHERE meter = 'grad';
SELECT amount AS still_paid FROM wallet_authorize_debit('acme', 'grad', 5, 'g4');
SELECT amount FROM wallet_refund(ev('g3'), 40);
SELECT * FROM counters() WHERE meter = 'grad';
SELECT amount AS free_again FROM wallet_authorize_debit('acme', 'grad', 5, 'g5');
-- wallet_usage net of refunds agrees: g1 and g3, refunded in full, count for
-- nothing; g2, g4 and g5 are the 20 units of the counter
SELECT key, events, quantity, amount FROM wallet_usage('acme', now() - interval '1 day', group_by => 'meter')
 WHERE key = 'grad';
-- an event that charged nothing cannot be refunded: its usage stays
SELECT amount FROM wallet_refund(ev('g5'));
SELECT * FROM counters() WHERE meter = 'grad';

-- the counters of the version that priced the event, whatever is in force
-- now: a matrix rate with its own max_per_period and a tiered rate counting
-- blocks of 1,000 tokens, then a new version
SELECT wallet_set_price('llm', 'USD', '{"model": "matrix", "dimensions": ["model"], "rates": [
	{"match": {"model": "big"}, "rule": {"model": "per_unit", "unit_price": "1", "max_per_period": "50", "period": "day"}},
	{"match": {"model": "small"}, "rule": {"model": "graduated", "quantity_transform": {"divide_by": 1000, "round": "up"},
		"tiers": [{"up_to": 10, "unit_price": "0"}, {"unit_price": "1"}]}}]}');
SELECT amount FROM wallet_authorize_debit('acme', 'llm', 40, 'm1', '{"model": "big"}');
SELECT amount FROM wallet_authorize_debit('acme', 'llm', 12500, 'm2', '{"model": "small"}');
SELECT * FROM counters() WHERE meter LIKE 'llm%';
SELECT wallet_set_price('llm', 'USD', '{"model": "flat", "price": "1"}') > 0 AS new_version;
SELECT amount FROM wallet_refund(ev('m1'), 15);
SELECT amount FROM wallet_refund(ev('m2'));
SELECT * FROM counters() WHERE meter LIKE 'llm%';

-- free units of a package
SELECT wallet_set_price('sms', 'USD', '{"model": "package", "size": 100, "price": "1", "free_units": 250}');
SELECT amount FROM wallet_authorize_debit('acme', 'sms', 400, 's1');
SELECT amount FROM wallet_refund(ev('s1'));
SELECT amount AS free_again FROM wallet_authorize_debit('acme', 'sms', 250, 's2');

-- a late event counts in its own period, and its refund gives back there
SELECT wallet_set_price('late', 'USD', '{"model": "per_unit", "unit_price": "1", "max_per_period": "10", "period": "day"}',
	now() - interval '10 days');
SELECT amount FROM wallet_authorize_debit('acme', 'late', 10, 'l1', occurred_at => now() - interval '2 days');
SELECT amount FROM wallet_authorize_debit('acme', 'late', 10, 'l2');
SELECT amount FROM wallet_refund(ev('l1'), 4);
SELECT period_start < date_trunc('day', now(), 'UTC') AS earlier_day, quantity
  FROM wallet.usage_counter WHERE meter LIKE 'late%' ORDER BY period_start;
-- a counter no longer there (its period pruned) needs nothing
DELETE FROM wallet.usage_counter WHERE meter LIKE 'late%' AND period_start < date_trunc('day', now(), 'UTC');
SELECT amount FROM wallet_refund(ev('l1'));
SELECT count(*) AS counters FROM wallet.usage_counter WHERE meter LIKE 'late%';

-- the counters are found without pricing the event again at today's usage:
-- the first 100 at 1, then 1e17 each; after a second event reached the dear
-- tier, pricing the first again would not fit (22003), and its refund must
-- still go through and give its 100 units back
SELECT wallet_create_asset('pts', 0, 1);
SELECT wallet_create('dear') > 0 AS created;
SELECT wallet_grant('dear', 'pts', 9000000000000000000) > 0 AS granted;
SELECT wallet_set_price('dear.m', 'pts', '{"model": "graduated", "tiers": [{"up_to": 100, "unit_price": "1"}, {"unit_price": "100000000000000000"}]}') > 0 AS priced;
SELECT amount FROM wallet_authorize_debit('dear', 'dear.m', 100, 'dear-a');
SELECT amount FROM wallet_authorize_debit('dear', 'dear.m', 1, 'dear-b');
SELECT amount FROM wallet_refund(ev('dear-a'));
SELECT meter, counter, quantity FROM wallet.usage_counter WHERE meter = 'dear.m';

-- wallet_debit's events have no price: nothing to give back
SELECT amount FROM wallet_refund((wallet_debit('acme', 'USD', 3, 'd1')).event_id);
-- nobody but the owner calls the helper
SELECT has_function_privilege('wallet_admin', 'wallet._usage_giveback(bigint, bigint)', 'EXECUTE') AS admin_may;
SELECT * FROM wallet_verify();
