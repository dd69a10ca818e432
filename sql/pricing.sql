-- pricing: every rule model, rounding, min/max, versions, plans, late and future events, validation
\set VERBOSITY terse
SET client_min_messages = warning;
-- every suite starts from a fresh extension: ids and data do not leak between files
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('USD', 6);
SELECT wallet_create_asset('credits', 0);
SELECT wallet_create(c) > 0 FROM unnest(ARRAY['acme', 'globex', 'initech', 'hooli']) c;
SELECT wallet_grant(c, a, 1000000) > 0
  FROM unnest(ARRAY['acme', 'globex', 'initech', 'hooli']) c, unnest(ARRAY['USD', 'credits']) a;

-- a helper: what one event costs (a fresh key each time)
CREATE SEQUENCE k;
CREATE FUNCTION charge(customer text, meter text, quantity numeric, dims jsonb DEFAULT '{}',
	at timestamptz DEFAULT now()) RETURNS numeric LANGUAGE sql AS $$
	SELECT amount FROM wallet_authorize_debit(customer, meter, quantity, 'k' || nextval('k'), dims, at)
$$;

-- per_unit: quantity / per x unit_price, the common case is a price per million tokens
SELECT wallet_set_price('llm.tokens', 'USD', '{"model": "per_unit", "unit_price": "3", "per": 1000000}') AS p_tokens \gset
SELECT charge('acme', 'llm.tokens', 1000000) AS one_million, charge('acme', 'llm.tokens', 1234567) AS more,
	   charge('acme', 'llm.tokens', 1) AS one_token;
SELECT price_id = :p_tokens AS records_version FROM wallet.events ORDER BY id DESC LIMIT 1;
SELECT wallet_set_price('gpu.hours', 'USD', '{"model": "per_unit", "unit_price": 2.5}');
SELECT charge('acme', 'gpu.hours', 0.25) AS quarter_hour;

-- flat: per event, whatever the quantity
SELECT wallet_set_price('chat.response', 'credits', '{"model": "flat", "price": "12"}');
SELECT charge('acme', 'chat.response', 1) AS one, charge('acme', 'chat.response', 500) AS many;

-- package: per started package of size units
SELECT wallet_set_price('api.calls', 'USD', '{"model": "package", "size": 1000, "price": "2"}');
SELECT charge('acme', 'api.calls', 1) AS one_call, charge('acme', 'api.calls', 1000) AS one_package,
	   charge('acme', 'api.calls', 1001) AS two_packages;

-- rounding, once, to the asset's scale: each mode at .5 and at 1.5
SELECT wallet_set_price('r.' || m, 'credits', jsonb_build_object('model', 'per_unit', 'unit_price', '0.5', 'rounding', m))
  FROM unnest(ARRAY['half_up', 'up', 'down', 'half_even']) m;
SELECT m AS rounding, charge('acme', 'r.' || m, 1) AS "0.5", charge('acme', 'r.' || m, 3) AS "1.5",
	   charge('acme', 'r.' || m, 5) AS "2.5"
  FROM unnest(ARRAY['half_up', 'up', 'down', 'half_even']) m;
-- the default is half_up
SELECT wallet_set_price('r.default', 'credits', '{"model": "per_unit", "unit_price": "0.5"}');
SELECT charge('acme', 'r.default', 1) AS "0.5";

-- min_charge and max_charge per event
SELECT wallet_set_price('bounded', 'USD', '{"model": "per_unit", "unit_price": "0.01", "min_charge": "0.05", "max_charge": "1"}');
SELECT charge('acme', 'bounded', 1) AS below_min, charge('acme', 'bounded', 50) AS between,
	   charge('acme', 'bounded', 1000) AS above_max;

-- graduated: each unit priced by the tier the customer's usage in the period has reached;
-- one event can span tiers.  All events on one fixed day, so the test does not depend on the clock.
\set day 'date_trunc(''day'', now() - interval ''2 days'') + interval ''12 hours'''
SELECT wallet_set_price('grad', 'USD', '{"model": "graduated", "period": "day", "tiers": [
	{"up_to": 100, "unit_price": "0"}, {"up_to": 1000, "unit_price": "0.01"}, {"unit_price": "0.005"}]}',
	now() - interval '30 days');
-- 50 free units
SELECT charge('globex', 'grad', 50, at => :day) AS first_50;
-- 2000 more: 50 free + 900 at 0.01 + 1050 at 0.005 = 9 + 5.25, spanning three tiers
SELECT charge('globex', 'grad', 2000, at => :day) AS spans_three_tiers;
-- then all in the last tier
SELECT charge('globex', 'grad', 100, at => :day) AS last_tier;
-- another day, another period: free again
SELECT charge('globex', 'grad', 100, at => :day - interval '1 day') AS new_period;
-- usage is per customer
SELECT charge('initech', 'grad', 100, at => :day) AS other_customer;
SELECT meter, period, period_start = date_trunc('day', (:day) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS utc_day, quantity
  FROM wallet.usage_counter c JOIN wallet.wallet w ON w.id = c.wallet_id
 WHERE w.customer = 'globex' ORDER BY period_start;

-- volume: the whole event at the unit price of the tier reached including this event
SELECT wallet_set_price('vol', 'USD', '{"model": "volume", "period": "day", "tiers": [
	{"up_to": 100, "unit_price": "1"}, {"up_to": 200, "unit_price": "0.5"}, {"unit_price": "0.25"}]}',
	now() - interval '30 days');
SELECT charge('hooli', 'vol', 60, at => :day) AS "60 at 1";
-- cumulative 100: still the first tier at the boundary
SELECT charge('hooli', 'vol', 40, at => :day) AS "40 at 1, boundary";
-- cumulative 101: the second tier, no repricing of earlier events
SELECT charge('hooli', 'vol', 1, at => :day) AS "1 at 0.5";
SELECT charge('hooli', 'vol', 150, at => :day) AS "150 at 0.25";

-- a declined event leaves no usage behind
SELECT wallet_create('poor');
SELECT approved, reason FROM wallet_authorize_debit('poor', 'grad', 500, 'poor-1', occurred_at => :day);
SELECT count(*) AS counters FROM wallet.usage_counter c JOIN wallet.wallet w ON w.id = c.wallet_id WHERE w.customer = 'poor';

-- matrix: the first rate whose match equals the event's dimensions prices it with its own rule
SELECT wallet_set_price('llm', 'USD', '{"model": "matrix", "dimensions": ["model", "direction"], "rates": [
	{"match": {"model": "gpt-4o", "direction": "input"}, "rule": {"model": "per_unit", "unit_price": "2.5", "per": 1000000}},
	{"match": {"model": "gpt-4o", "direction": "output"}, "rule": {"model": "per_unit", "unit_price": "10", "per": 1000000}},
	{"match": {"model": "mini"}, "rule": {"model": "flat", "price": "0.001"}}],
	"default": {"model": "per_unit", "unit_price": "1", "per": 1000000}}');
SELECT charge('acme', 'llm', 1000000, '{"model": "gpt-4o", "direction": "input"}') AS gpt4o_in,
	   charge('acme', 'llm', 1000000, '{"model": "gpt-4o", "direction": "output", "user": "u1"}') AS gpt4o_out,
	   charge('acme', 'llm', 1000000, '{"model": "mini", "direction": "output"}') AS mini,
	   charge('acme', 'llm', 1000000, '{"model": "claude"}') AS by_default;
SELECT wallet_set_price('llm.strict', 'USD', '{"model": "matrix", "dimensions": ["model"], "rates": [
	{"match": {"model": "gpt-4o"}, "rule": {"model": "flat", "price": "1"}}]}');
SELECT charge('acme', 'llm.strict', 1, '{"model": "gpt-4o"}') AS hit;
SELECT charge('acme', 'llm.strict', 1, '{"model": "other"}') AS miss;
SELECT charge('acme', 'llm.strict', 1) AS no_dimensions;

-- versions: an event is priced by the version in force at its occurred_at
SELECT wallet_set_price('ver', 'credits', '{"model": "flat", "price": "1"}', now() - interval '20 days') AS v1 \gset
SELECT wallet_set_price('ver', 'credits', '{"model": "flat", "price": "2"}', now() - interval '10 days') AS v2 \gset
SELECT wallet_set_price('ver', 'credits', '{"model": "flat", "price": "3"}', now() + interval '1 day') AS v3 \gset
\set VERBOSITY sqlstate
SELECT charge('acme', 'ver', 1, at => now() - interval '25 days') AS before_any;
\set VERBOSITY terse
SELECT charge('acme', 'ver', 1, at => now() - interval '15 days') AS first_version,
	   charge('acme', 'ver', 1, at => now() - interval '5 days') AS second_version,
	   charge('acme', 'ver', 1) AS now_still_second;
SELECT price_id = :v2 AS records_second FROM wallet.events ORDER BY id DESC LIMIT 1;
-- a new version takes effect on the next event, without a deploy
SELECT wallet_set_price('ver', 'credits', '{"model": "flat", "price": "7"}');
SELECT charge('acme', 'ver', 1) AS new_price;

-- late and future events: up to wallet.max_backdate in the past, wallet.max_future ahead
SELECT charge('acme', 'ver', 1, at => now() - interval '19 days') AS late_ok;
\set VERBOSITY sqlstate
SELECT charge('acme', 'ver', 1, at => now() - interval '36 days') AS too_late;
\set VERBOSITY terse
SELECT charge('acme', 'ver', 1, at => now() + interval '4 minutes') AS near_future_ok;
\set VERBOSITY sqlstate
SELECT charge('acme', 'ver', 1, at => now() + interval '6 minutes') AS too_far_ahead;
\set VERBOSITY terse
SET wallet.max_backdate = '40 days';
SELECT wallet_set_price('ver', 'credits', '{"model": "flat", "price": "9"}', now() - interval '60 days');
SELECT charge('acme', 'ver', 1, at => now() - interval '36 days') AS late_with_setting;
RESET wallet.max_backdate;
SET wallet.max_backdate = 'forever';
SET wallet.max_future = '-1 minute';

-- plans and negotiated rates: the customer's own price, else its plan's, else the default
SELECT wallet_set_price('seat', 'credits', '{"model": "flat", "price": "100"}', now() - interval '30 days');
SELECT wallet_set_price('seat', 'credits', '{"model": "flat", "price": "80"}', now() - interval '30 days', plan => 'pro');
SELECT wallet_set_price('seat', 'credits', '{"model": "flat", "price": "50"}', now() - interval '30 days', customer => 'acme');
SELECT wallet_assign_plan('acme', 'pro', now() - interval '30 days');
SELECT wallet_assign_plan('globex', 'pro', now() - interval '30 days');
SELECT charge('acme', 'seat', 1) AS own_beats_plan, charge('globex', 'seat', 1) AS plan_beats_default,
	   charge('initech', 'seat', 1) AS default_price;
-- a plan change mid-period: late events are priced on the plan the customer was on then
SELECT wallet_set_price('seat', 'credits', '{"model": "flat", "price": "60"}', now() - interval '30 days', plan => 'team');
SELECT wallet_assign_plan('globex', 'team', now() - interval '3 days');
SELECT charge('globex', 'seat', 1, at => now() - interval '5 days') AS on_pro_then,
	   charge('globex', 'seat', 1) AS on_team_now;
-- back to defaults
SELECT wallet_assign_plan('globex', NULL, now() - interval '1 day');
SELECT charge('globex', 'seat', 1) AS back_to_default;
-- a negotiated rate that starts later does not apply before
SELECT wallet_set_price('seat', 'credits', '{"model": "flat", "price": "40"}', now() - interval '2 days', customer => 'initech');
SELECT charge('initech', 'seat', 1, at => now() - interval '4 days') AS before_deal,
	   charge('initech', 'seat', 1) AS with_deal;

-- validation on the way in: 22023 naming the bad field
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT wallet_set_price('bad', 'USD', '"flat"');
SELECT wallet_set_price('bad', 'USD', '[]');
SELECT wallet_set_price('bad', 'USD', '{"price": "1"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "tiered"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "flat"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "flat", "price": "-1"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "flat", "price": "abc"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "flat", "price": true}');
SELECT wallet_set_price('bad', 'USD', '{"model": "flat", "price": "1", "unit_price": "2"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "per": 0}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "per": 1.5}');
SELECT wallet_set_price('bad', 'USD', '{"model": "package", "size": 0, "price": "1"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "flat", "price": "1", "rounding": "nearest"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "flat", "price": "1", "min_charge": "2", "max_charge": "1"}');
SELECT wallet_set_price('bad', 'credits', '{"model": "flat", "price": "1", "min_charge": "0.5"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "graduated", "period": "year", "tiers": [{"unit_price": "1"}]}');
SELECT wallet_set_price('bad', 'USD', '{"model": "graduated", "tiers": []}');
SELECT wallet_set_price('bad', 'USD', '{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1"}, {"up_to": 5, "unit_price": "1"}, {"unit_price": "1"}]}');
SELECT wallet_set_price('bad', 'USD', '{"model": "volume", "tiers": [{"up_to": 10, "unit_price": "1"}]}');
SELECT wallet_set_price('bad', 'USD', '{"model": "volume", "tiers": [{"unit_price": "1"}, {"unit_price": "2"}]}');
SELECT wallet_set_price('bad', 'USD', '{"model": "volume", "tiers": [{"up_to": 10}, {"unit_price": "2"}]}');
SELECT wallet_set_price('bad', 'USD', '{"model": "matrix", "dimensions": [], "rates": []}');
SELECT wallet_set_price('bad', 'USD', '{"model": "matrix", "dimensions": ["model"], "rates": [{"match": {"region": "eu"}, "rule": {"model": "flat", "price": "1"}}]}');
SELECT wallet_set_price('bad', 'USD', '{"model": "matrix", "dimensions": ["model"], "rates": [{"match": {"model": "x"}, "rule": "flat"}]}');
SELECT wallet_set_price('bad', 'USD', '{"model": "matrix", "dimensions": ["model"], "rates": [{"match": {"model": "x"}, "rule": {"model": "flat", "price": "-2"}}]}');
-- nesting too deep
SELECT wallet_set_price('bad', 'USD', (SELECT r FROM (
	WITH RECURSIVE n(i, r) AS (SELECT 0, '{"model": "flat", "price": "1"}'::jsonb
		UNION ALL SELECT i + 1, jsonb_build_object('model', 'matrix', 'dimensions', jsonb_build_array('d'), 'rates', jsonb_build_array(), 'default', r) FROM n WHERE i < 20)
	SELECT r FROM n ORDER BY i DESC LIMIT 1) x));
SELECT wallet_set_price('bad', 'doubloons', '{"model": "flat", "price": "1"}');
SELECT wallet_set_price(NULL, 'USD', '{"model": "flat", "price": "1"}');
SELECT wallet_set_price('bad', 'USD', NULL);
SELECT wallet_set_price('bad', 'USD', '{"model": "flat", "price": "1"}', plan => 'p', customer => 'acme');
SELECT count(*) AS nothing_stored FROM wallet.price WHERE meter = 'bad';
\set VERBOSITY terse

SELECT * FROM wallet_verify();
