-- Finance: one customer's year in a second, and every number finance reads
-- from it.  acme buys credits at a discount, gets promotional credits, runs
-- events with costs, a paid grant expires half used, one event is partly
-- refunded, a grant is voided (a chargeback), usage runs into overdraft and a
-- new purchase repays it.  bolt lives on a plan allowance (bundled), cobalt
-- on promotional credits only.  Each statement commits on its own: a grant
-- must expire between the debits, so time has to pass (about a second).
--
-- tokens: scale 0, list price (unit_value) 0.01 USD.
--   P1 paid 1000 at 0.008 (20% off), expires in 1 s     sold  8.00
--   PR promotional 200
--   P2 paid 500 at 0.01                                 sold  5.00
--   e1 300 from P1, cost 1.50            revenue 2.40 (gpt-4o, chat)
--   e2 400 from P1, cost 0.20            revenue 3.20 (gpt-4o-mini, chat)
--   P1 expires with 300 left             breakage 2.40
--   e3 250: PR 200 + P2 50, cost 3.00    revenue 0.50, promotional 2.00 (gpt-4o, search)
--   e4 100 from P2, cost later 0.05      revenue 1.00 (gpt-4o-mini, feature agent added later)
--   refund 100 of e3: P2 50, PR 50       revenue -0.50, promotional -0.50
--   void P2 (400 left)                   breakage 4.00
--   e5 80: PR 50 + 30 overdraft, 0.40    promotional 0.50 (gpt-4o)
--   P3 paid 1000 at 0.009, repays 30     sold 9.00, revenue 0.27 (no event)
--   e6 10 from P3 (priced), cost 0.02    revenue 0.09 (gpt-4o-mini)
--   acme: sold 22.00 = recognized 6.96 + breakage 6.40 + deferred 8.64 (960 left in P3)
--         cost 5.17, margin 1.79
--   bolt: bundled 100, b1 40 cost 0.10   bundled 0.40, margin -0.10 (claude)
--   cobalt: promotional 50 (unit_revenue set to 0.02: still not revenue),
--         c1 50 cost 2.00                promotional 0.50, margin -2.00 (gpt-4o)
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
SELECT plan(66);

SELECT wallet_create_asset('tokens', 0, 0.01) \g /dev/null
SELECT wallet_create(c) FROM unnest(array['acme', 'bolt', 'cobalt']) c \g /dev/null
SELECT wallet_set_price('chat', 'tokens', '{"model":"flat","price":"10"}', now() - interval '1 hour') \g /dev/null

---------------------------------------------------------------- the year
SELECT wallet_grant('acme', 'tokens', 1000, unit_revenue => 0.008,
	expires_at => now() + interval '1 second', external_ref => 'pay-1') AS p1 \gset
SELECT wallet_grant('acme', 'tokens', 200, category => 'promotional') AS pr \gset
SELECT wallet_grant('acme', 'tokens', 500, external_ref => 'pay-2') AS p2 \gset
SELECT event_id AS e1 FROM wallet_debit('acme', 'tokens', 300, 'e1', '{"model":"gpt-4o","feature":"chat"}', 1.50) \gset
SELECT event_id AS e2 FROM wallet_debit('acme', 'tokens', 400, 'e2', '{"model":"gpt-4o-mini","feature":"chat"}', 0.20) \gset
-- P1 expires
SELECT pg_sleep(greatest(0, extract(epoch FROM
	(SELECT expires_at FROM wallet.grant_block WHERE id = :p1) - clock_timestamp()))::float8 + 0.05) \g /dev/null
SELECT event_id AS e3 FROM wallet_debit('acme', 'tokens', 250, 'e3', '{"model":"gpt-4o","feature":"search"}', 3.00) \gset
SELECT event_id AS e4 FROM wallet_debit('acme', 'tokens', 100, 'e4', '{"model":"gpt-4o-mini"}') \gset
SELECT wallet_record_cost(:e4, 0.05, '{"feature":"agent","model":"gpt-4o-mini"}') \g /dev/null
SELECT wallet_refund(:e3, 100, 'bad answer') \g /dev/null
SELECT wallet_void_grant(:p2, 'chargeback') \g /dev/null
SELECT wallet_set_limit('acme', 'tokens', overdraft => 100) \g /dev/null
SELECT event_id AS e5 FROM wallet_debit('acme', 'tokens', 80, 'e5', '{"model":"gpt-4o"}', 0.40) \gset
SELECT wallet_grant('acme', 'tokens', 1000, unit_revenue => 0.009, external_ref => 'pay-3') AS p3 \gset
SELECT event_id AS e6 FROM wallet_authorize_debit('acme', 'chat', 1, 'e6', '{"model":"gpt-4o-mini"}', cost => 0.02) \gset
SELECT hold_id AS h1 FROM wallet_hold('acme', 'tokens', 60, 'h1') \gset
SELECT wallet_grant('bolt', 'tokens', 100, category => 'bundled') \g /dev/null
SELECT event_id AS b1 FROM wallet_debit('bolt', 'tokens', 40, 'b1', '{"model":"claude"}', 0.10) \gset
SELECT wallet_grant('cobalt', 'tokens', 50, category => 'promotional', unit_revenue => 0.02) \g /dev/null
SELECT event_id AS c1 FROM wallet_debit('cobalt', 'tokens', 50, 'c1', '{"model":"gpt-4o"}', 2.00) \gset

---------------------------------------------------------------- events
SELECT results_eq(
	$$SELECT id, revenue, cost, refunded, dimensions FROM wallet.events ORDER BY id$$,
	format($$VALUES (%s::bigint, 2.40::numeric, 1.50::numeric, 0::numeric, '{"model":"gpt-4o","feature":"chat"}'::jsonb),
		(%s, 3.20, 0.20, 0, '{"model":"gpt-4o-mini","feature":"chat"}'),
		(%s, 0, 3.00, 100, '{"model":"gpt-4o","feature":"search"}'),
		(%s, 1.00, 0.05, 0, '{"model":"gpt-4o-mini","feature":"agent"}'),
		(%s, 0, 0.40, 0, '{"model":"gpt-4o"}'),
		(%s, 0.09, 0.02, 0, '{"model":"gpt-4o-mini"}'),
		(%s, 0, 0.10, 0, '{"model":"claude"}'),
		(%s, 0, 2.00, 0, '{"model":"gpt-4o"}')$$, :e1, :e2, :e3, :e4, :e5, :e6, :b1, :c1),
	'each event records its revenue (paid draws at unit_revenue, net of refunds) and cost');
SELECT is((SELECT revenue FROM wallet.event WHERE id = :c1), 0::numeric,
	'a promotional grant''s unit_revenue is not revenue');
SELECT is((SELECT dimensions FROM wallet.event WHERE id = :e4), '{"model":"gpt-4o-mini"}'::jsonb,
	'the request''s own dimensions are kept apart from those added later');
-- nor does refunding it reverse any revenue (tried, then rolled back)
BEGIN;
SELECT wallet_refund(:c1, 10) \g /dev/null
SELECT revenue AS c1_revenue, (SELECT revenue FROM wallet.refund WHERE event_id = :c1) AS c1_reversed
  FROM wallet.event WHERE id = :c1 \gset
ROLLBACK;
SELECT is(ARRAY[:c1_revenue, :c1_reversed]::numeric[], '{0,0}'::numeric[],
	'refunding promotional value reverses no revenue');

---------------------------------------------------------------- before the sweep
-- P1's expiry is not written down yet: finance counts it already
SELECT results_eq(
	$$SELECT kind, amount FROM wallet.ledger WHERE id IS NULL$$,
	$$VALUES ('expiry'::text, -300::numeric)$$,
	'the expiry is pending (no sweep yet)');
CREATE TEMP VIEW totals AS
SELECT asset, sum(recognized) AS recognized, sum(breakage) AS breakage,
	   sum(promotional) AS promotional, sum(bundled) AS bundled, sum(sold) AS sold
  FROM wallet.revenue GROUP BY asset;
SELECT results_eq('SELECT * FROM totals',
	$$VALUES ('tokens'::text, 6.96::numeric, 6.40::numeric, 2.50::numeric, 0.40::numeric, 22.00::numeric)$$,
	'revenue: recognized, breakage (expiry 2.40 + void 4.00), promotional, bundled, sold');
SELECT results_eq('SELECT * FROM wallet.deferred_revenue',
	$$VALUES ('acme'::text, 'tokens'::text, 8.64::numeric, 960::numeric)$$,
	'deferred revenue: 960 left in P3 at 0.009');
SELECT is((SELECT sold - recognized - breakage FROM totals),
	(SELECT sum(amount) FROM wallet.deferred_revenue),
	'sold = recognized + breakage + deferred');
SELECT is((SELECT sum(deferred) FROM wallet.revenue_lines),
	(SELECT sum(amount) FROM wallet.deferred_revenue),
	'the lines'' changes of deferred revenue add up to deferred revenue');
SELECT is((SELECT sum(revenue) FROM wallet.events),
	6.69::numeric, 'the events carry 6.69 of it ...');
SELECT results_eq(
	$$SELECT kind, recognized FROM wallet.revenue_lines WHERE event_id IS NULL AND recognized <> 0$$,
	$$VALUES ('repay'::text, 0.270::numeric)$$,
	'... and the repayment of overdraft by P3 the other 0.27');
SELECT results_eq(
	$$SELECT kind, grant_id, breakage FROM wallet.revenue_lines WHERE breakage <> 0 ORDER BY kind$$,
	format($$VALUES ('expiry'::text, %s::bigint, 2.40::numeric), ('void', %s, 4.00)$$, :p1, :p2),
	'breakage: what P1 left at expiry and P2 at the void, at their unit_revenue');
SELECT is_empty(
	$$SELECT * FROM wallet.revenue_lines WHERE grant_id IS NULL
	   AND (sold, recognized, breakage, promotional, bundled, deferred) <> (0, 0, 0, 0, 0, 0)$$,
	'overdraft lines are worth nothing until a grant repays them');

---------------------------------------------------------------- margin
CREATE TEMP VIEW margins AS
SELECT customer, sum(revenue) AS revenue, sum(cost) AS cost, sum(margin) AS margin,
	   sum(breakage) AS breakage, sum(promotional) AS promotional, sum(bundled) AS bundled,
	   sum(events) AS events
  FROM wallet.customer_margin GROUP BY customer;
SELECT results_eq('SELECT * FROM margins ORDER BY margin',
	$$VALUES ('cobalt'::text, 0::numeric, 2.00::numeric, -2.00::numeric, 0::numeric, 0.50::numeric, 0::numeric, 1::numeric),
		('bolt', 0, 0.10, -0.10, 0, 0, 0.40, 1),
		('acme', 6.96, 5.17, 1.79, 6.40, 2.00, 0, 6)$$,
	'customer margin: revenue, cost, margin, breakage, promotional, bundled, events');
SELECT is((SELECT customer FROM wallet.customer_margin LIMIT 1), 'cobalt',
	'the biggest loss comes first');
SELECT results_eq('SELECT customer, revenue, cost, margin FROM wallet.unprofitable_customers',
	$$VALUES ('cobalt'::text, 0::numeric, 2.00::numeric, -2.00::numeric), ('bolt', 0, 0.10, -0.10)$$,
	'unprofitable customers, biggest losses first');
SELECT is((SELECT sum(revenue) FROM margins), (SELECT recognized FROM totals),
	'customer revenue adds up to recognized revenue');
SELECT is((SELECT sum(cost) FROM margins), (SELECT sum(cost) FROM wallet.events),
	'customer cost adds up to the events'' cost (7.27)');
SELECT results_eq('SELECT * FROM wallet.margin_by_dimension(''model'')',
	$$VALUES ('gpt-4o'::text, 2.40::numeric, 6.90::numeric, -4.50::numeric, 4::bigint),
		('claude', 0, 0.10, -0.10, 1),
		(NULL, 0.27, 0, 0.27, 0),
		('gpt-4o-mini', 4.29, 0.27, 4.02, 3)$$,
	'margin by model, biggest losses first; null: the repayment, which no event carries');
SELECT results_eq('SELECT * FROM wallet.margin_by_dimension(''feature'')',
	$$VALUES ('search'::text, 0::numeric, 3.00::numeric, -3.00::numeric, 1::bigint),
		(NULL, 0.36, 2.52, -2.16, 4),
		('agent', 1.00, 0.05, 0.95, 1),
		('chat', 5.60, 1.70, 3.90, 2)$$,
	'margin by feature: agent was added by wallet_record_cost');
SELECT is((SELECT sum(margin) FROM wallet.margin_by_dimension('feature')),
	(SELECT sum(margin) FROM margins), 'the cut adds up to the whole margin (-0.31)');
SELECT results_eq(
	$$SELECT * FROM wallet.margin_by_dimension('model', now() - interval '1 hour', now() - interval '30 minutes')$$,
	$$SELECT NULL::text, 0::numeric, 0::numeric, 0::numeric, 0::bigint WHERE false$$,
	'nothing happened in a window an hour ago');
SELECT throws_ok($$SELECT * FROM wallet.margin_by_dimension(NULL)$$, '22023', NULL, 'a key is needed');
SELECT throws_ok($$SELECT * FROM wallet.margin_by_dimension('model', now(), now() - interval '1 day')$$,
	'22023', NULL, 'the window must not end before it starts');

---------------------------------------------------------------- conservation
SELECT results_eq(
	$$SELECT customer, granted, reset, available, held, overdraft, debited_net, expired, voided, difference
		FROM wallet.conservation$$,
	$$VALUES ('acme'::text, 2700::numeric, 0::numeric, 900::numeric, 60::numeric, 0::numeric, 1040::numeric, 300::numeric, 400::numeric, 0::numeric),
		('bolt', 100, 0, 60, 0, 0, 40, 0, 0, 0),
		('cobalt', 50, 0, 0, 0, 0, 50, 0, 0, 0)$$,
	'granted = available + held + net debits + expired + voided');

---------------------------------------------------------------- the sweep writes the expiry down
SELECT results_eq($$SELECT * FROM wallet_sweep() WHERE action = 'expired_grants'$$,
	$$VALUES ('expired_grants'::text, 1::bigint)$$, 'the sweep writes P1''s expiry down');
SELECT is_empty('SELECT * FROM wallet.ledger WHERE id IS NULL', 'nothing pending any more');
SELECT results_eq('SELECT * FROM totals',
	$$VALUES ('tokens'::text, 6.96::numeric, 6.40::numeric, 2.50::numeric, 0.40::numeric, 22.00::numeric)$$,
	'the same revenue after the sweep');
SELECT results_eq('SELECT amount FROM wallet.deferred_revenue', $$VALUES (8.64::numeric)$$,
	'the same deferred revenue');
SELECT is_empty('SELECT * FROM wallet.conservation WHERE difference <> 0', 'conservation still ties out');

---------------------------------------------------------------- statement
SELECT results_eq(
	$$SELECT kind, description, amount, balance FROM wallet_statement('acme')$$,
	format($$VALUES ('opening'::text, 'opening balance'::text, NULL::numeric, 0::numeric),
		('grant', 'paid grant %1$s (pay-1)', 1000, 1000),
		('grant', 'promotional grant %2$s', 200, 1200),
		('grant', 'paid grant %3$s (pay-2)', 500, 1700),
		('debit', 'debit (event %5$s) from paid grant %1$s', -300, 1400),
		('debit', 'debit (event %6$s) from paid grant %1$s', -400, 1000),
		('expiry', 'paid grant %1$s expired unused', -300, 700),
		('debit', 'debit (event %7$s) from promotional grant %2$s', -200, 500),
		('debit', 'debit (event %7$s) from paid grant %3$s', -50, 450),
		('debit', 'debit (event %8$s) from paid grant %3$s', -100, 350),
		('refund', 'refund of event %7$s to paid grant %3$s', 50, 400),
		('refund', 'refund of event %7$s to promotional grant %2$s', 50, 450),
		('void', 'paid grant %3$s voided: chargeback', -400, 50),
		('debit', 'debit (event %9$s) from promotional grant %2$s', -50, 0),
		('debit', 'debit (event %9$s) on overdraft', -30, -30),
		('grant', 'paid grant %4$s (pay-3)', 1000, 970),
		('repay', 'paid grant %4$s repays overdraft', -30, 940),
		('repay', 'overdraft repaid', 30, 970),
		('debit', 'chat 1 (event %10$s) from paid grant %4$s', -10, 960),
		('hold', 'hold %11$s reserves (the balance does not move)', -60, 960),
		('closing', 'closing balance', NULL, 960)$$,
		:p1, :pr, :p2, :p3, :e1, :e2, :e3, :e4, :e5, :e6, :h1),
	'the statement: opening, every line with the balance after it, closing');
SELECT is((SELECT balance FROM wallet_statement('acme') WHERE kind = 'closing'),
	(SELECT available + held FROM wallet_balances('acme')),
	'the closing balance is available + held (900 + 60)');
SELECT is((SELECT balance FROM wallet_statement('acme', '-infinity', now() + interval '1 microsecond') WHERE kind = 'closing'),
	960::numeric, 'also with until just after now');
SELECT is((SELECT balance FROM wallet_statement('bolt') WHERE kind = 'closing'),
	(SELECT available + held FROM wallet_balances('bolt')), 'and for bolt');
-- a window that starts at the void: its opening is the balance before it
SELECT results_eq(
	format($$SELECT kind, amount, balance FROM wallet_statement('acme',
		(SELECT at FROM wallet.line WHERE kind = 'void'), (SELECT at FROM wallet.line WHERE grant_id = %s AND kind = 'grant'))$$, :p3),
	$$VALUES ('opening'::text, NULL::numeric, 450::numeric), ('void', -400, 50), ('debit', -50, 0),
		('debit', -30, -30), ('closing', NULL, -30)$$,
	'a window: opening at since, lines in [since, until), closing before until');
SELECT is((SELECT count(*) FROM wallet_statement('acme', now() + interval '1 day')), 2::bigint,
	'a window in the future: opening and closing only');
SELECT throws_ok($$SELECT * FROM wallet_statement('nobody')$$, 'WL001', NULL, 'no such customer');
SELECT throws_ok($$SELECT * FROM wallet_statement('acme', NULL)$$, '22023', NULL, 'since must not be null');
SELECT throws_ok($$SELECT * FROM wallet_statement('acme', now(), now() - interval '1 s')$$, '22023', NULL,
	'until must not be before since');

---------------------------------------------------------------- wallet_record_cost
SELECT lives_ok(format('SELECT wallet_record_cost(%s, 0.06)', :e4), 'a later bill replaces the cost');
SELECT is((SELECT cost FROM wallet.event WHERE id = :e4), 0.06::numeric, 'the cost is replaced');
SELECT is((SELECT dimensions FROM wallet.events WHERE id = :e4), '{"model":"gpt-4o-mini","feature":"agent"}'::jsonb,
	'dimensions added earlier stay');
SELECT results_eq(
	$$SELECT approved, replayed, amount FROM wallet_debit('acme', 'tokens', 100, 'e4', '{"model":"gpt-4o-mini"}')$$,
	$$VALUES (true, true, 100::numeric)$$,
	'a retry of the request still replays after dimensions were added');
SELECT throws_ok(format($$SELECT wallet_record_cost(%s, 0.1, '{"model":"gpt-4o"}')$$, :e4), '22023', NULL,
	'added dimensions cannot contradict the request''s');
SELECT throws_ok('SELECT wallet_record_cost(NULL, 1)', '22023', NULL, 'event_id must not be null');
SELECT throws_ok('SELECT wallet_record_cost(-1, 1)', 'WL007', NULL, 'no such event');
SELECT throws_ok(format('SELECT wallet_record_cost(%s, -1)', :e4), '22023', NULL, 'a cost is not negative');
SELECT throws_ok(format('SELECT wallet_record_cost(%s, ''NaN'')', :e4), '22023', NULL, 'nor NaN');
SELECT throws_ok(format('SELECT wallet_record_cost(%s, NULL)', :e4), '22023', NULL, 'nor null');
SELECT throws_ok(format($$SELECT wallet_record_cost(%s, 1, '[1]')$$, :e4), '22023', NULL,
	'dimensions are a json object');
SELECT throws_ok(format($$SELECT wallet_record_cost(%s, 1, jsonb_build_object('big', repeat('x', 5000)))$$, :e4),
	'22023', NULL, 'dimensions stay small');
SELECT throws_ok($$SELECT * FROM wallet_debit('acme', 'tokens', 1, 'neg', cost => -0.01)$$, '22023', NULL,
	'the hot path refuses a negative cost too');

---------------------------------------------------------------- history is immutable
SELECT throws_ok(format('UPDATE wallet.event SET amount = 1 WHERE id = %s', :e1), '42501', NULL,
	'an event''s amount cannot change, not even for the owner');
SELECT throws_ok(format('UPDATE wallet.event SET dimensions = ''{}'' WHERE id = %s', :e1), '42501', NULL,
	'nor its dimensions');
SELECT throws_ok(format('UPDATE wallet.event SET refunded = 0 WHERE id = %s', :e3), '42501', NULL,
	'a refund cannot be taken back');
SELECT throws_ok(format('UPDATE wallet.event SET revenue = 99 WHERE id = %s', :e1), '42501', NULL,
	'revenue does not grow');
SELECT throws_ok('DELETE FROM wallet.event', '42501', NULL, 'events are never deleted');
SELECT throws_ok('TRUNCATE wallet.event CASCADE', '42501', NULL, 'nor truncated');
SELECT throws_ok('UPDATE wallet.line SET amount = 0', '42501', NULL, 'ledger lines are never updated');
SELECT throws_ok('DELETE FROM wallet.line', '42501', NULL, 'nor deleted');
SELECT throws_ok('TRUNCATE wallet.line', '42809', NULL, 'nor truncated (wallet.line is a view)');
-- the stored lines under the view: the same
SELECT throws_ok('UPDATE wallet.line_stored SET amount = 0', '42501', NULL, 'stored lines are never updated');
SELECT throws_ok('DELETE FROM wallet.line_stored', '42501', NULL, 'nor deleted');
SELECT throws_ok('TRUNCATE wallet.line_stored', '42501', NULL, 'nor truncated');
SELECT throws_ok('UPDATE wallet.refund SET reason = NULL', '42501', NULL, 'refunds are never changed');

SELECT is_empty('SELECT * FROM wallet_verify()', 'consistent');
SELECT * FROM finish();
