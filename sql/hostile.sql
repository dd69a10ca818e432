-- hostile input: every bad value gets a documented SQLSTATE and the backend never crashes
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('credits', 0);
SELECT wallet_create_asset('USD', 6);
SELECT wallet_create_asset('nano', 12);
SELECT wallet_create('acme') > 0;
SELECT wallet_grant('acme', 'credits', 1000) > 0;
SELECT wallet_grant('acme', 'USD', 1000) > 0;
SELECT wallet_set_price('chat', 'credits', '{"model": "flat", "price": "1"}') > 0;

-- runs a statement, answers 'ok' or the SQLSTATE it raised
CREATE FUNCTION try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

-- numbers: NaN, infinities, -0, huge, tiny, the int64 edges of minor units
SELECT v AS amount, try(format('SELECT wallet_debit(%L, %L, %s, %L)', 'acme', a, v, 'n-' || a || v)) AS sqlstate
  FROM (VALUES ('credits', '''NaN''::numeric'), ('credits', '''Infinity''::numeric'),
			   ('credits', '''-Infinity''::numeric'), ('credits', '''-0''::numeric'), ('credits', '-1'),
			   ('credits', '1e400'), ('credits', '1e-400'), ('credits', '0.1'),
			   ('credits', '9223372036854775807'), ('credits', '9223372036854775808'),
			   ('credits', '-9223372036854775808'), ('nano', '9223372.036854775807'),
			   ('nano', '9223372.036854775808'), ('nano', '0.000000000001'),
			   ('nano', '0.0000000000001'), ('USD', '1.0000000'), ('USD', '1.00000000000000000000000000000000000001')) t(a, v);
SELECT v AS quantity, try(format('SELECT wallet_authorize_debit(%L, %L, %s, %L)', 'acme', 'chat', v, 'q-' || v)) AS sqlstate
  FROM unnest(ARRAY['''NaN''::numeric', '''Infinity''::numeric', '0', '-0.5', '1e400', '1e-400', '0.5',
					 '1.0000000000000000000000000000000000000001']) v;
-- a balance stays countable in 64 bits
SELECT wallet_create('whale') > 0;
SELECT try($$SELECT wallet_grant('whale', 'credits', 9223372036854775807)$$) AS max_grant,
	   try($$SELECT wallet_grant('whale', 'credits', 1)$$) AS one_more,
	   try($$SELECT wallet_debit('whale', 'credits', 9223372036854775807, 'all')$$) AS debit_all;
SELECT wallet_balance('whale', 'credits');
SELECT try($$SELECT wallet_set_limit('whale', 'credits', overdraft => 9223372036854775807)$$) AS max_overdraft,
	   try($$SELECT wallet_debit('whale', 'credits', 9223372036854775807, 'deep')$$) AS into_overdraft,
	   try($$SELECT wallet_debit('whale', 'credits', 9223372036854775807, 'deeper')$$) AS past_it;
-- past a limit of 2^63 - 1: declined for funds, not an overflow
SELECT approved, reason FROM wallet_debit('whale', 'credits', 9223372036854775807, 'deeper');
SELECT wallet_balance('whale', 'credits');

-- strings: empty and 100 kB
SELECT what, try(stmt) AS sqlstate FROM (VALUES
	('empty customer', $$SELECT wallet_debit('', 'credits', 1, 'k')$$),
	('empty key', $$SELECT wallet_debit('acme', 'credits', 1, '')$$),
	('empty meter', $$SELECT wallet_authorize_debit('acme', '', 1, 'k')$$),
	('empty asset', $$SELECT wallet_debit('acme', '', 1, 'k')$$),
	('empty wallet', $$SELECT wallet_create('')$$),
	('empty asset code', $$SELECT wallet_create_asset('')$$),
	('100 kB customer', $$SELECT wallet_debit(repeat('c', 100000), 'credits', 1, 'k')$$),
	('100 kB key', $$SELECT wallet_debit('acme', 'credits', 1, repeat('k', 100000))$$),
	('100 kB meter', $$SELECT wallet_authorize_debit('acme', repeat('m', 100000), 1, 'k')$$),
	('100 kB asset', $$SELECT wallet_debit('acme', repeat('a', 100000), 1, 'k')$$),
	('100 kB wallet', $$SELECT wallet_create(repeat('w', 100000))$$),
	('100 kB price meter', $$SELECT wallet_set_price(repeat('m', 100000), 'credits', '{"model": "flat", "price": "1"}')$$),
	('100 kB model name', $$SELECT wallet_set_price('m', 'credits', jsonb_build_object('model', repeat('x', 100000)))$$),
	('100 kB external_ref', $$SELECT wallet_grant('acme', 'credits', 1, external_ref => repeat('r', 100000))$$)
) t(what, stmt);

-- json of the wrong shape, and nested thousands deep
SELECT what, try(stmt) AS sqlstate FROM (VALUES
	('dimensions array', $$SELECT wallet_debit('acme', 'credits', 1, 'j1', '[1]')$$),
	('dimensions scalar', $$SELECT wallet_debit('acme', 'credits', 1, 'j2', '"user"')$$),
	('dimensions 10000 deep', $$SELECT wallet_debit('acme', 'credits', 1, 'j3', ('{"a":' || repeat('[', 10000) || repeat(']', 10000) || '}')::jsonb)$$),
	('rule 10000 deep', $$SELECT wallet_set_price('deep', 'credits', (repeat('{"model": "matrix", "dimensions": ["d"], "rates": [], "default": ', 10000) || '{}' || repeat('}', 10000))::jsonb)$$),
	('rule with deep junk', $$SELECT wallet_set_price('deep', 'credits', ('{"model": "flat", "price": "1", "x": ' || repeat('[', 5000) || repeat(']', 5000) || '}')::jsonb)$$),
	('rule tiers object', $$SELECT wallet_set_price('deep', 'credits', '{"model": "graduated", "tiers": {"up_to": 1}}')$$),
	('rule rates scalar', $$SELECT wallet_set_price('deep', 'credits', '{"model": "matrix", "dimensions": ["d"], "rates": 7}')$$),
	('rule match array', $$SELECT wallet_set_price('deep', 'credits', '{"model": "matrix", "dimensions": ["d"], "rates": [{"match": [1], "rule": {"model": "flat", "price": "1"}}]}')$$),
	('metadata array', $$SELECT wallet_create('meta', '[]')$$),
	('grant metadata string', $$SELECT wallet_grant('acme', 'credits', 1, metadata => '"x"')$$)
) t(what, stmt);

-- negative and zero intervals, and times at infinity
SELECT what, try(stmt) AS sqlstate FROM (VALUES
	('negative ttl', $$SELECT wallet_hold('acme', 'credits', 1, 'h1', '-1 minute')$$),
	('zero ttl', $$SELECT wallet_hold('acme', 'credits', 1, 'h2', '0')$$),
	('negative recurrence', $$SELECT wallet_grant('acme', 'credits', 1, recurrence => '-1 day')$$),
	('zero recurrence', $$SELECT wallet_grant('acme', 'credits', 1, recurrence => '0')$$),
	('mixed-sign recurrence', $$SELECT wallet_grant('acme', 'credits', 1, recurrence => '1 month -40 days')$$),
	('infinite expiry', $$SELECT wallet_grant('acme', 'credits', 1, expires_at => 'infinity')$$),
	('infinite occurred_at', $$SELECT wallet_authorize_debit('acme', 'chat', 1, 'i1', occurred_at => 'infinity')$$),
	('infinite price time', $$SELECT wallet_set_price('chat', 'credits', '{"model": "flat", "price": "1"}', '-infinity')$$),
	('negative max_backdate', $$SET wallet.max_backdate = '-1 day'$$),
	('garbage max_future', $$SET wallet.max_future = 'soon'$$),
	('unknown wallet setting', $$SET wallet.no_such_setting = 1$$)
) t(what, stmt);

-- unknown ids, statuses and categories
SELECT what, try(stmt) AS sqlstate FROM (VALUES
	('unknown hold capture', $$SELECT wallet_capture(-1, 'chat', 1)$$),
	('unknown hold release', $$SELECT wallet_release(9223372036854775807)$$),
	('unknown outbox row', $$SELECT wallet_outbox_ack(0)$$),
	('unknown status', $$SELECT wallet_set_status('acme', 'ACTIVE')$$),
	('unknown category', $$SELECT wallet_grant('acme', 'credits', 1, category => 'free')$$),
	('unknown customer', $$SELECT wallet_balance('ghost', 'credits')$$),
	('unknown asset', $$SELECT wallet_balance('acme', 'gold')$$),
	('unknown meter', $$SELECT wallet_authorize_debit('acme', 'ghost', 1, 'u1')$$),
	('unknown plan (allowed: no prices yet)', $$SELECT wallet_assign_plan('acme', 'ghost')$$)
) t(what, stmt);

-- null in every argument of every function: 'ok' where null means "none" or "default"
-- (open holds for the capture and release calls to use)
SELECT count(*) FROM generate_series(1, 8) i, wallet_hold('acme', 'credits', 1, 'open-' || i) h WHERE h.approved;
CREATE TABLE calls (fn text, args text[]);
INSERT INTO calls VALUES
	('wallet_create_asset', ARRAY['''tok''', '2', '1', '''d''']),
	('wallet_create', ARRAY['''nul''', '''{}''']),
	('wallet_set_limit', ARRAY['''acme''', '''credits''', '0', '1', '5']),
	('wallet_set_status', ARRAY['''acme''', '''active''']),
	('wallet_set_price', ARRAY['''nm''', '''credits''', '''{"model": "flat", "price": "1"}''', 'now()', '''p''', 'NULL']),
	('wallet_assign_plan', ARRAY['''acme''', '''p''', 'now()']),
	('wallet_grant', ARRAY['''acme''', '''credits''', '1', '100', 'now() + interval ''1 day''', 'now()', '''paid''', '0.01', 'NULL', 'NULL', '0', '''{}''']),
	('wallet_debit', ARRAY['''acme''', '''credits''', '1', '''nd''', '''{}''', '0.1']),
	('wallet_authorize_debit', ARRAY['''acme''', '''chat''', '1', '''na''', '''{}''', 'now()', '0.1']),
	('wallet_hold', ARRAY['''acme''', '''credits''', '1', '''nh''', '''1 minute''']),
	('wallet_capture', ARRAY['(SELECT max(id) FROM wallet.hold WHERE status = ''open'')', '''chat''', '1', '''{}''', '0.1']),
	('wallet_release', ARRAY['(SELECT max(id) FROM wallet.hold WHERE status = ''open'')']),
	('wallet_balance', ARRAY['''acme''', '''credits''']),
	('wallet_balances', ARRAY['''acme''']),
	('wallet_outbox_ack', ARRAY['1']);
SELECT c.fn, i AS arg,
	   try(format('SELECT * FROM %s(%s)', c.fn,
				  array_to_string(c.args[1:i - 1] || 'NULL'::text || c.args[i + 1:], ', '))) AS sqlstate
  FROM calls c, generate_subscripts(c.args, 1) i
 ORDER BY c.fn, i;

-- after all of it: the backend is alive and every invariant holds
SELECT 'alive' AS backend;
SELECT * FROM wallet_verify();
