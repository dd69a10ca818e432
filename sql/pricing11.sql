-- pricing11: the pricing additions of 1.1 (#20): counters keyed by rate, tier
-- flat fees, package free units and round down, quantity_transform,
-- percentage, cost_plus, max_per_period, matrix usability, validation that
-- names the fix.  Exact amounts on every path: debit, quote, capture, ingest.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('USD', 2, 1);
SELECT wallet_create(c) > 0 FROM unnest(ARRAY['p1', 'p2', 'p3', 'p4']) c;
SELECT wallet_grant(c, 'USD', 100000) > 0 FROM unnest(ARRAY['p1', 'p2', 'p3', 'p4']) c;

CREATE SEQUENCE k11;
CREATE FUNCTION charge11(customer text, meter text, quantity numeric, dims jsonb DEFAULT '{}',
	cost numeric DEFAULT NULL) RETURNS numeric LANGUAGE sql AS $$
	SELECT amount FROM wallet_authorize_debit(customer, meter, quantity, 'k' || nextval('k11'), dims, now(), cost)
$$;

-- all events of this file fall in the current UTC month, day and hour: the
-- periods of tiered counters start with the file (unless it runs across a boundary)

-- the counter bug of 1.0: usage of tiered rates inside a matrix was kept by the
-- rate's position.  v1 lists in, out; a customer uses 10 in; v2 lists out, in.
SELECT wallet_set_price('tok', 'USD', '{"model": "matrix", "dimensions": ["direction"], "rates": [
	{"match": {"direction": "in"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "0.4"}, {"unit_price": "0.2"}]}},
	{"match": {"direction": "out"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1.6"}, {"unit_price": "0.8"}]}}]}',
	now() - interval '1 hour') > 0 AS v1;
SELECT charge11('p1', 'tok', 10, '{"direction": "in"}') AS "10 in, first tier: 4.00";
SELECT wallet_set_price('tok', 'USD', '{"model": "matrix", "dimensions": ["direction"], "rates": [
	{"match": {"direction": "out"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1.6"}, {"unit_price": "0.8"}]}},
	{"match": {"direction": "in"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "0.4"}, {"unit_price": "0.2"}]}}]}') > 0 AS v2;
SELECT charge11('p1', 'tok', 10, '{"direction": "out"}') AS "10 out, first tier: 16.00",
	   charge11('p1', 'tok', 10, '{"direction": "in"}') AS "10 in, second tier: 2.00";

-- wrapping a graduated rule into a matrix default keeps its count
SELECT wallet_set_price('wrap', 'USD', '{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1"}, {"unit_price": "0.5"}]}',
	now() - interval '1 hour') > 0 AS v1;
SELECT charge11('p1', 'wrap', 10) AS "10 at 1: 10.00";
SELECT wallet_set_price('wrap', 'USD', '{"model": "matrix", "dimensions": ["region"], "rates": [
	{"match": {"region": "eu"}, "rule": {"model": "flat", "price": "3"}}],
	"default": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1"}, {"unit_price": "0.5"}]}}') > 0 AS v2;
SELECT charge11('p1', 'wrap', 10) AS "10 at 0.5: 5.00";
SELECT meter, counter, quantity FROM wallet.usage_counter c JOIN wallet.wallet w ON w.id = c.wallet_id
 WHERE w.customer = 'p1' ORDER BY meter, counter;

-- every path, one helper: the quote first, then the charge by debit, by
-- hold-and-capture or by a one-element batch; "quote x, charged y"
CREATE FUNCTION run11(path text, cust text, meter text, qty numeric, dims jsonb DEFAULT '{}',
	cost numeric DEFAULT NULL, asset text DEFAULT 'USD') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	q numeric;
	a numeric;
	h bigint;
	err text;
	key text := 'r' || nextval('k11');
BEGIN
	IF cost IS NULL THEN
		SELECT amount INTO q FROM wallet_quote(cust, meter, qty, dims);
	END IF;
	IF path = 'debit' THEN
		SELECT amount INTO a FROM wallet_authorize_debit(cust, meter, qty, key, dims, now(), cost);
	ELSIF path = 'capture' THEN
		SELECT hold_id INTO h FROM wallet_hold(cust, asset, 1000, key);
		SELECT amount INTO a FROM wallet_capture(h, meter, qty, dims, cost);
	ELSE
		SELECT amount, error INTO a, err FROM wallet_ingest(jsonb_build_array(jsonb_build_object(
			'customer', cust, 'meter', meter, 'quantity', qty, 'idempotency_key', key,
			'dimensions', dims, 'cost', cost)));
	END IF;
	RETURN path || ': ' || CASE WHEN cost IS NULL THEN 'quote ' || q || ', ' ELSE '' END ||
		coalesce('charged ' || a, 'error ' || err);
END
$$;

-- tier flat_price, graduated: once per period, by the event whose usage first reaches the tier
SELECT wallet_set_price('g.flat', 'USD', '{"model": "graduated", "tiers": [
	{"up_to": 100, "unit_price": "0", "flat_price": "5"},
	{"up_to": 1000, "unit_price": "0.01", "flat_price": "20"},
	{"unit_price": "0.005"}]}') > 0 AS set;
SELECT run11('debit', 'p2', 'g.flat', 50) AS "first tier's fee: 5.00";
SELECT run11('capture', 'p2', 'g.flat', 100) AS "50 free + 50 x 0.01 + second fee: 20.50";
SELECT run11('ingest', 'p2', 'g.flat', 100) AS "100 x 0.01: 1.00";
SELECT run11('debit', 'p2', 'g.flat', 900) AS "750 x 0.01 + 150 x 0.005: 8.25";
-- one event across two tiers pays both fees
SELECT run11('ingest', 'p3', 'g.flat', 150) AS "5 + 50 x 0.01 + 20: 25.50";

-- tier flat_price, volume: the fee of the tier the event lands in, when it is the first there
SELECT wallet_set_price('v.flat', 'USD', '{"model": "volume", "tiers": [
	{"up_to": 100, "unit_price": "0.1", "flat_price": "2"}, {"unit_price": "0.05", "flat_price": "10"}]}') > 0 AS set;
SELECT run11('capture', 'p2', 'v.flat', 50) AS "50 x 0.1 + 2: 7.00";
SELECT run11('debit', 'p2', 'v.flat', 40) AS "40 x 0.1: 4.00";
SELECT run11('ingest', 'p2', 'v.flat', 20) AS "20 x 0.05 + 10: 11.00";
SELECT run11('capture', 'p2', 'v.flat', 10) AS "10 x 0.05: 0.50";
-- a tier of flat_price alone (unit_price defaults to 0)
SELECT wallet_set_price('v.fee', 'USD', '{"model": "volume", "tiers": [{"up_to": 10, "flat_price": "1"}, {"flat_price": "3"}]}') > 0 AS set;
SELECT run11('debit', 'p2', 'v.fee', 5) AS "1.00", run11('debit', 'p2', 'v.fee', 5) AS "0.00",
	   run11('debit', 'p2', 'v.fee', 5) AS "3.00";

-- package free_units: the first units of each period are free; round up (default) charges started packages
SELECT wallet_set_price('pk.free', 'USD', '{"model": "package", "size": 50, "price": "1", "free_units": 100}') > 0 AS set;
SELECT run11('debit', 'p2', 'pk.free', 80) AS "free: 0.00";
SELECT run11('capture', 'p2', 'pk.free', 40) AS "20 billable, 1 package: 1.00";
SELECT run11('ingest', 'p2', 'pk.free', 60) AS "2 packages: 2.00";
-- round down: complete packages only
SELECT wallet_set_price('pk.down', 'USD', '{"model": "package", "size": 50, "price": "1", "round": "down"}') > 0 AS set;
SELECT run11('debit', 'p2', 'pk.down', 120) AS "2 complete: 2.00";
SELECT run11('capture', 'p2', 'pk.down', 49) AS "none complete: 0.00";
SELECT run11('ingest', 'p2', 'pk.down', 50) AS "1 complete: 1.00";
SELECT wallet_set_price('pk.both', 'USD', '{"model": "package", "size": 10, "price": "0.5", "free_units": 5, "round": "down"}') > 0 AS set;
SELECT run11('debit', 'p2', 'pk.both', 29) AS "24 billable, 2 complete: 1.00",
	   run11('ingest', 'p2', 'pk.both', 10) AS "1 complete: 0.50";

-- quantity_transform: divide with rounding, or multiply, before the rule prices the quantity
SELECT wallet_set_price('qt.up', 'USD', '{"model": "per_unit", "unit_price": "0.5", "quantity_transform": {"divide_by": 1000, "round": "up"}}') > 0,
	   wallet_set_price('qt.down', 'USD', '{"model": "per_unit", "unit_price": "0.5", "quantity_transform": {"divide_by": 1000, "round": "down"}}') > 0,
	   wallet_set_price('qt.none', 'USD', '{"model": "per_unit", "unit_price": "0.5", "quantity_transform": {"divide_by": 1000, "round": "none"}}') > 0,
	   wallet_set_price('qt.mul', 'USD', '{"model": "per_unit", "unit_price": "0.01", "quantity_transform": {"multiply_by": 60}}') > 0;
SELECT run11('debit', 'p2', 'qt.up', 1500) AS "2 blocks: 1.00", run11('capture', 'p2', 'qt.down', 1500) AS "1 block: 0.50",
	   run11('ingest', 'p2', 'qt.none', 1500) AS "1.5 blocks: 0.75", run11('debit', 'p2', 'qt.mul', 1.5) AS "90 minutes: 0.90";
-- round none keeps the fraction: a third of a unit is priced as "per": 3 prices it, rounded once
SELECT wallet_create_asset('qt12', 12, 1) IS NOT NULL AS created;
SELECT wallet_set_price('qt.third', 'qt12', '{"model": "per_unit", "unit_price": "10", "quantity_transform": {"divide_by": 3, "round": "none"}}') > 0,
	   wallet_set_price('qt.per3', 'qt12', '{"model": "per_unit", "unit_price": "10", "per": 3}') > 0,
	   wallet_set_price('qt.big', 'USD', '{"model": "per_unit", "unit_price": "300000000000", "quantity_transform": {"divide_by": 3, "round": "none"}}') > 0;
SELECT (SELECT amount FROM wallet_quote('p2', 'qt.third', 1)) AS third,
	   (SELECT amount FROM wallet_quote('p2', 'qt.per3', 1)) AS per3,
	   (SELECT amount FROM wallet_quote('p2', 'qt.big', 1)) AS "100000000000.00";
-- on a tiered rule the counter counts transformed units
SELECT wallet_set_price('qt.grad', 'USD', '{"model": "graduated", "quantity_transform": {"divide_by": 1000, "round": "up"},
	"tiers": [{"up_to": 2, "unit_price": "0"}, {"unit_price": "1"}]}') > 0 AS set;
SELECT run11('debit', 'p2', 'qt.grad', 1500) AS "2 free blocks: 0.00", run11('ingest', 'p2', 'qt.grad', 10) AS "1 block: 1.00",
	   run11('capture', 'p2', 'qt.grad', 2001) AS "3 blocks: 3.00";
SELECT meter, quantity FROM wallet.usage_counter c JOIN wallet.wallet w ON w.id = c.wallet_id
 WHERE w.customer = 'p2' AND meter = 'qt.grad';

-- percentage: quantity is a transaction's value in the asset; rate + fixed_fee per event
SELECT wallet_set_price('pay', 'USD', '{"model": "percentage", "rate": "0.029", "fixed_fee": "0.30"}') > 0 AS set;
SELECT run11('debit', 'p2', 'pay', 100) AS "2.90 + 0.30: 3.20", run11('capture', 'p2', 'pay', 33.33) AS "0.96657 + 0.30: 1.27",
	   run11('ingest', 'p2', 'pay', 1) AS "0.029 + 0.30: 0.33";

-- cost_plus: cost x (1 + markup) in the asset at its unit_value, plus fixed_fee
SELECT wallet_create_asset('credits', 0, 0.001);
SELECT wallet_grant('p2', 'credits', 100000) > 0 AS granted;
SELECT wallet_set_price('llm.pass', 'USD', '{"model": "cost_plus", "markup": "0.25", "fixed_fee": "0.01"}') > 0,
	   wallet_set_price('llm.credits', 'credits', '{"model": "cost_plus", "markup": "0.2"}') > 0;
SELECT run11('debit', 'p2', 'llm.pass', 1, cost => 0.0123) AS "0.015375 + 0.01: 0.03",
	   run11('capture', 'p2', 'llm.pass', 1, cost => 4) AS "5 + 0.01: 5.01",
	   run11('ingest', 'p2', 'llm.pass', 1, cost => 2) AS "2.5 + 0.01: 2.51";
-- 0.0123 USD x 1.2 = 0.01476 USD = 14.76 credits at 0.001 USD each: 15
SELECT run11('debit', 'p2', 'llm.credits', 1, cost => 0.0123, asset => 'credits') AS "15",
	   run11('capture', 'p2', 'llm.credits', 1, cost => 1, asset => 'credits') AS "1200",
	   run11('ingest', 'p2', 'llm.credits', 1, cost => 0.01, asset => 'credits') AS "12";
SELECT cost, amount FROM wallet.events WHERE meter = 'llm.credits' ORDER BY id;
-- without cost: 22023 on every path (the quote has no cost)
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT amount FROM wallet_authorize_debit('p2', 'llm.pass', 1, 'no-cost');
SELECT amount FROM wallet_quote('p2', 'llm.pass', 1);
SELECT error FROM wallet_ingest('[{"customer": "p2", "meter": "llm.pass", "quantity": 1, "idempotency_key": "no-cost"}]');
\set VERBOSITY terse

-- max_per_period: one customer's charges for the meter stop at the maximum in each UTC period
SELECT wallet_set_price('capped', 'USD', '{"model": "per_unit", "unit_price": "1", "max_per_period": "25", "period": "day"}') > 0 AS set;
SELECT run11('debit', 'p2', 'capped', 10) AS "10.00", run11('capture', 'p2', 'capped', 10) AS "10.00",
	   run11('ingest', 'p2', 'capped', 10) AS "5.00", run11('debit', 'p2', 'capped', 10) AS "0.00";
SELECT run11('debit', 'p3', 'capped', 30) AS "another customer: 25.00";
-- on a tiered rule and on a matrix rate; a matrix's own maximum covers all its rates
SELECT wallet_set_price('capped.m', 'USD', '{"model": "matrix", "dimensions": ["model"], "max_per_period": "50", "rates": [
	{"match": {"model": "a"}, "rule": {"model": "per_unit", "unit_price": "1", "max_per_period": "20"}},
	{"match": {"model": "b"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "2"}, {"unit_price": "1"}], "max_per_period": "100"}}]}') > 0 AS set;
SELECT run11('debit', 'p2', 'capped.m', 30, '{"model": "a"}') AS "a at its 20: 20.00",
	   run11('ingest', 'p2', 'capped.m', 10, '{"model": "a"}') AS "a: 0.00",
	   run11('capture', 'p2', 'capped.m', 20, '{"model": "b"}') AS "b 30, matrix room 30: 30.00",
	   run11('debit', 'p2', 'capped.m', 5, '{"model": "b"}') AS "matrix full: 0.00";

-- matrix dimension values compare as text: {"tier": 1} matches "1", 1 and 1.0
SELECT wallet_set_price('mx.text', 'USD', '{"model": "matrix", "dimensions": ["tier", "beta"], "rates": [
	{"match": {"tier": 1}, "rule": {"model": "flat", "price": "1"}},
	{"match": {"tier": "2"}, "rule": {"model": "flat", "price": "2"}},
	{"match": {"beta": true}, "rule": {"model": "flat", "price": "3"}}]}') > 0 AS set;
SELECT charge11('p3', 'mx.text', 1, '{"tier": "1"}') AS "1", charge11('p3', 'mx.text', 1, '{"tier": 1.0}') AS "1",
	   charge11('p3', 'mx.text', 1, '{"tier": 2}') AS "2", charge11('p3', 'mx.text', 1, '{"beta": "true"}') AS "3";
-- an unmatched event: WL003 names the values it saw
\set VERBOSITY default
SELECT charge11('p3', 'mx.text', 1, '{"tier": 3, "beta": {"x": 1}}');
SELECT charge11('p3', 'mx.text', 1, '{"tier": "gold"}');
SELECT * FROM wallet_quote('p3', 'mx.text', 1);

-- validation that names the fix (22023, nothing stored)
SELECT wallet_set_price('bad', 'USD', '{"model": "matrix", "dimensions": ["model"], "rates": []}');
SELECT wallet_set_price('bad', 'USD', '{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1"}, {"up_to": "inf", "unit_price": "0.5"}]}');
SELECT wallet_set_price('bad', 'USD', '{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1", "flat_amount": "5"}, {"unit_price": "0.5"}]}');
SELECT wallet_set_price('bad', 'USD', '{"model": "package", "size": 1000, "price": "2", "rounding": "down"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "percentage", "rate": "0.03", "flat_fee": "0.3"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "transform_quantity": {"divide_by": 10}}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "quantity_transform": {"divide_by": 10}}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "quantity_transform": {"divide_by": 10, "round": "nearest"}}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "quantity_transform": {"divide_by": 10, "multiply_by": 2}}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "quantity_transform": {"multiply_by": 2, "round": "up"}}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "quantity_transform": {"divide_by": 0, "round": "up"}}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "period": "day"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "max_per_period": "1.001"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1", "max_per_period": "10", "period": "year"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "package", "size": 10, "price": "1", "round": "nearest"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "cost_plus"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "percentage", "rate": "-0.1"}');
SELECT wallet_set_price('bad', 'USD', '{"model": "per_unit", "unit_price": "1e400"}');
SELECT wallet_set_price('bad', 'USD', jsonb_build_object('model', 'matrix', 'dimensions', jsonb_build_array('d'),
	'rates', jsonb_build_array(jsonb_build_object('match', jsonb_build_object('d', repeat('x', 1100)),
		'rule', jsonb_build_object('model', 'flat', 'price', 1)))));
SELECT count(*) AS nothing_stored FROM wallet.price WHERE meter = 'bad';
\set VERBOSITY terse
-- a package rounding that does round the amount is kept: the price has more decimals than the asset
SELECT wallet_set_price('pk.r', 'USD', '{"model": "package", "size": 3, "price": "0.125", "rounding": "down"}') > 0 AS set;
SELECT charge11('p3', 'pk.r', 1) AS "0.125 down: 0.12";
-- a string in scientific notation is accepted as a json number is
SELECT wallet_set_price('sci', 'USD', '{"model": "per_unit", "unit_price": "1e-3", "min_charge": "2.5E-1"}') > 0 AS set;
SELECT charge11('p3', 'sci', 1000) AS "1.00", charge11('p3', 'sci', 10) AS "min 0.25";

-- the price-change window (concurrency: test/isolation/specs/pricing_window.spec): a price
-- set for now takes effect at its commit, also when wallet_admin sets it
SET ROLE wallet_admin;
SELECT wallet_set_price('win', 'USD', '{"model": "flat", "price": "1"}') > 0 AS set;
RESET ROLE;
SELECT effective_at > created_at AS from_its_commit FROM wallet.price WHERE meter = 'win';
-- a version backdated on purpose keeps its effective_at, and prices late events
SELECT wallet_set_price('win', 'USD', '{"model": "flat", "price": "2"}', now() - interval '1 day') > 0 AS set;
SELECT effective_at = created_at - interval '1 day' AS kept FROM wallet.price WHERE meter = 'win' ORDER BY id DESC LIMIT 1;
SELECT amount FROM wallet_authorize_debit('p4', 'win', 1, 'win-late', occurred_at => now() - interval '1 hour');
SELECT amount FROM wallet_authorize_debit('p4', 'win', 1, 'win-now');

SELECT * FROM wallet_verify();

-- a meter may be named like a 1.0 counter key ("gpu[0]"): wallet_verify reports nothing of it
SELECT wallet_create('p11-brackets') > 0;
SELECT wallet_grant('p11-brackets', 'credits', 100) > 0;
SELECT wallet_set_price('p11gpu', 'credits', '{"model": "per_unit", "unit_price": "1"}', now() - interval '1 hour') > 0;
SELECT wallet_set_price('p11gpu[0]', 'credits', '{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1"}, {"unit_price": "2"}]}', now() - interval '1 hour') > 0;
SELECT approved, amount FROM wallet_authorize_debit('p11-brackets', 'p11gpu[0]', 3, 'p11-br-1');
SELECT count(*) AS problems FROM wallet_verify();
