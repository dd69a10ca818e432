-- Release 1.1 leftovers: NaN and infinite amounts are 22023 with a message
-- that names the fix, for every amount argument of the API; small contract
-- fixes found by the audit of API.md.
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
\pset null '-'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('pc', 2, 1) \g /dev/null
SELECT wallet_create('pol') > 0 AS created;
SELECT wallet_grant('pol', 'pc', 100) > 0 AS granted;

---------------------------------------------------------------- limits, alerts, recharges: message and hint
\set VERBOSITY default
SELECT wallet_set_limit('pol', 'pc', 0, 'NaN');
SELECT wallet_set_limit('pol', 'pc', 0, 'Infinity');
SELECT wallet_set_limit('pol', 'pc', 0, '-Infinity');
SELECT wallet_set_limit('pol', 'pc', 'NaN');
SELECT wallet_set_limit('pol', 'pc', 'Infinity');
SELECT wallet_set_overdraft('pol', 'pc', 'NaN');
SELECT wallet_set_overdraft('pol', 'pc', 'Infinity');
SELECT wallet_set_alert('pol', 'pc', 'NaN');
SELECT wallet_set_alert('pol', 'pc', '-Infinity');
SELECT wallet_set_recharge('pol', 'pc', 'NaN', 10);
SELECT wallet_set_recharge('pol', 'pc', 1, 'Infinity');
SELECT wallet_set_recharge('pol', 'pc', 1, 10, 'Infinity');
SELECT wallet_set_recharge('pol', 'pc', 1, 10, 'NaN');
\set VERBOSITY sqlstate
-- nothing was set
SELECT * FROM wallet_limits('pol');
-- negative zero is zero
SELECT wallet_set_limit('pol', 'pc', '-0', '-0');
SELECT * FROM wallet_limits('pol');
SELECT wallet_set_limit('pol', 'pc');

---------------------------------------------------------------- every other amount: NaN and infinities are 22023
SELECT wallet_set_price('pol.m', 'pc', '{"model":"per_unit","unit_price":"1"}', now() - interval '1 hour') > 0 AS priced;
SELECT approved FROM wallet_debit('pol', 'pc', 5, 'pol-d0');
SELECT approved FROM wallet_hold('pol', 'pc', 5, 'pol-h0');
CREATE FUNCTION pg_temp.code(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;
SELECT v, q, pg_temp.code(format(q, v)) AS sqlstate
  FROM unnest(array['NaN', 'Infinity', '-Infinity']) v,
	   unnest(array[
		$$SELECT wallet_grant('pol', 'pc', %L)$$,
		$$SELECT wallet_grant('pol', 'pc', 1, unit_revenue => %L)$$,
		$$SELECT wallet_grant('pol', 'pc', 1, recurrence => '1 day', rollover_max => %L)$$,
		$$SELECT wallet_create_asset('pol_x', 2, %L)$$,
		$$SELECT wallet_set_cap('pol', 'pc', %L, 'day')$$,
		$$SELECT wallet_debit('pol', 'pc', %L, 'pol-d1')$$,
		$$SELECT wallet_debit('pol', 'pc', 1, 'pol-d2', cost => %L)$$,
		$$SELECT wallet_authorize_debit('pol', 'pol.m', %L, 'pol-a1')$$,
		$$SELECT wallet_authorize_debit('pol', 'pol.m', 1, 'pol-a2', cost => %L)$$,
		$$SELECT wallet_hold('pol', 'pc', %L, 'pol-h1')$$,
		$$SELECT wallet_authorize_hold('pol', 'pol.m', %L, 'pol-h2')$$,
		$$SELECT wallet_capture((SELECT max(id) FROM wallet.hold), 'pol.m', %L)$$,
		$$SELECT wallet_capture((SELECT max(id) FROM wallet.hold), 'pol.m', 1, cost => %L)$$,
		$$SELECT wallet_capture_lines((SELECT max(id) FROM wallet.hold), jsonb_build_array(jsonb_build_object('meter', 'pol.m', 'quantity', %L)))$$,
		$$SELECT wallet_refund((SELECT max(id) FROM wallet.events), %L)$$,
		$$SELECT wallet_record_cost((SELECT max(id) FROM wallet.events), %L)$$,
		$$SELECT wallet_quote('pol', 'pol.m', %L)$$,
		$$SELECT wallet_set_price('pol.p', 'pc', jsonb_build_object('model', 'per_unit', 'unit_price', %L))$$,
		$$SELECT wallet_set_price('pol.p', 'pc', jsonb_build_object('model', 'per_unit', 'unit_price', 1, 'per', %L))$$,
		$$SELECT wallet_set_price('pol.p', 'pc', jsonb_build_object('model', 'percentage', 'rate', %L))$$,
		$$SELECT wallet_set_price('pol.p', 'pc', jsonb_build_object('model', 'cost_plus', 'markup', %L))$$,
		$$SELECT wallet_set_price('pol.p', 'pc', jsonb_build_object('model', 'flat', 'price', 1, 'max_charge', %L))$$,
		$$SELECT wallet_set_price('pol.p', 'pc', jsonb_build_object('model', 'flat', 'price', 1, 'quantity_transform', jsonb_build_object('multiply_by', %L)))$$
	   ]) q
 WHERE pg_temp.code(format(q, v)) <> '22023';
SELECT v, r.approved, r.error
  FROM unnest(array['NaN', 'Infinity', '-Infinity']) v,
	   wallet_ingest(jsonb_build_array(jsonb_build_object('customer', 'pol', 'meter', 'pol.m', 'quantity', v, 'idempotency_key', 'pol-i1')) ||
					 jsonb_build_array(jsonb_build_object('customer', 'pol', 'meter', 'pol.m', 'quantity', 1, 'cost', v, 'idempotency_key', 'pol-i2'))) r;
-- negative zero is zero: 22023 where an amount must be positive, else the meaning of 0
SELECT v, q, pg_temp.code(format(q, v)) AS sqlstate
  FROM unnest(array['-0', '-0.00']) v,
	   unnest(array[
		$$SELECT wallet_grant('pol', 'pc', %L)$$,
		$$SELECT wallet_debit('pol', 'pc', %L, 'pol-d3')$$,
		$$SELECT wallet_hold('pol', 'pc', %L, 'pol-h3')$$,
		$$SELECT wallet_authorize_debit('pol', 'pol.m', %L, 'pol-a3')$$,
		$$SELECT wallet_refund((SELECT max(id) FROM wallet.events), %L)$$,
		$$SELECT wallet_quote('pol', 'pol.m', %L)$$
	   ]) q
 WHERE pg_temp.code(format(q, v)) <> '22023';
SELECT wallet_set_overdraft('pol', 'pc', '-0');
SELECT wallet_set_cap('pol', 'pc', '-0', 'day');
SELECT overdraft_limit FROM wallet_limits('pol');
SELECT asset, period, cap, remaining FROM wallet_caps('pol');
SELECT wallet_set_cap('pol', 'pc', NULL, 'day');
-- nothing changed
SELECT * FROM wallet_balances('pol');
SELECT count(*) AS grants FROM wallet.grants WHERE customer = 'pol';
SELECT count(*) AS events FROM wallet.events WHERE customer = 'pol';
SELECT * FROM wallet_verify();

---------------------------------------------------------------- audit: a plan name has the byte limit prices give it
-- wallet_set_price refuses a plan over 256 bytes, so a customer put on one
-- would silently get default prices: 22023 when assigned, as for prices
SELECT wallet_assign_plan('pol', repeat('p', 257));
SELECT wallet_assign_plan('pol', repeat('é', 129));
SELECT wallet_assign_plan('pol', repeat('p', 256));
SELECT wallet_set_price('pol.m', 'pc', '{"model":"per_unit","unit_price":"2"}', now() - interval '1 hour', plan => repeat('p', 256)) > 0 AS priced;
SELECT amount FROM wallet_quote('pol', 'pol.m', 1);
SELECT wallet_assign_plan('pol', NULL);
SELECT amount FROM wallet_quote('pol', 'pol.m', 1);

---------------------------------------------------------------- audit: a scope entry no debit could match is 22023
-- a meter is at most 127 bytes, a dimension key 127 and a value 1024: a scope
-- entry over them would serve nothing (a malformed scope is 22023)
SELECT wallet_grant('pol', 'pc', 1, scope => jsonb_build_object('meters', jsonb_build_array(repeat('m', 128))));
SELECT wallet_grant('pol', 'pc', 1, scope => jsonb_build_object('meters', jsonb_build_array(repeat('m', 127) || '.*')));
SELECT wallet_grant('pol', 'pc', 1, scope => jsonb_build_object('dimensions', jsonb_build_object(repeat('k', 128), 'v')));
SELECT wallet_grant('pol', 'pc', 1, scope => jsonb_build_object('dimensions', jsonb_build_object('k', repeat('v', 1025))));
-- at the limits: granted
SELECT wallet_grant('pol', 'pc', 1, scope => jsonb_build_object('meters', jsonb_build_array(repeat('m', 127)),
	'dimensions', jsonb_build_object(repeat('k', 127), repeat('v', 1024)))) > 0 AS granted;
SELECT wallet_grant('pol', 'pc', 1, scope => jsonb_build_object('meters', jsonb_build_array(repeat('m', 125) || '.*'))) > 0 AS granted;
