-- Grant lifecycle, in one transaction (time stands still at now()): expiry at
-- the instant, backdated recurrences, the sweep and breakage, refunds, voids,
-- idempotent top-ups, the outbox.  sql/lifecycle.sql covers time passing.
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
BEGIN;
SELECT plan(77);

SELECT wallet_create_asset('credits', 0, 0.01) \g /dev/null
SELECT wallet_create_asset('usd', 2, 1) \g /dev/null
SELECT wallet_create(c) FROM unnest(array['edge', 'edgeh', 'rec', 'mon', 'recx', 'r', 'rv', 'rod',
	'v', 'top', 'other', 'low']) c \g /dev/null

---------------------------------------------------------------- expiry at the instant
-- 7 expire one microsecond after now, 9 exactly now: the 9 no longer count.  A grant
-- cannot be created expired (1.1): in this transaction time stands still, so the 9 are
-- made valid for an hour and then given the expiry they would have reached (as for 5 and 100 below)
SELECT wallet_grant('edge', 'credits', 7, effective_at => now() - interval '1 hour',
	expires_at => now() + interval '1 microsecond') \g /dev/null
SELECT throws_ok($$SELECT wallet_grant('edge', 'credits', 9, effective_at => now() - interval '1 hour',
	expires_at => now())$$, '22023', NULL, 'a grant already expired at creation is refused');
SELECT wallet_grant('edge', 'credits', 9, effective_at => now() - interval '1 hour',
	expires_at => now() + interval '1 hour') AS edge9 \gset
UPDATE wallet.grant_block SET expires_at = now() WHERE id = :edge9;
SELECT is(wallet_balance('edge', 'credits'), 7::numeric, 'a grant expiring now does not count');
SELECT is((SELECT granted FROM wallet_balances('edge')), 7::numeric, 'nor in granted');
SELECT is((SELECT reason FROM wallet_debit('edge', 'credits', 8, 'e1')), 'insufficient_funds',
	'a debit cannot draw from it');
SELECT is((SELECT balance FROM wallet_debit('edge', 'credits', 7, 'e2')), 0::numeric,
	'a debit draws from the live one');
SELECT wallet_grant('edgeh', 'credits', 5, effective_at => now() - interval '1 hour',
	expires_at => now() + interval '1 hour') AS edgeh5 \gset
UPDATE wallet.grant_block SET expires_at = now() WHERE id = :edgeh5;
SELECT is((SELECT reason FROM wallet_hold('edgeh', 'credits', 1, 'h1')), 'insufficient_funds',
	'a hold cannot reserve it');
SELECT results_eq(
	$$SELECT kind, amount FROM wallet.ledger WHERE customer = 'edge' AND id IS NULL$$,
	$$VALUES ('expiry'::text, -9::numeric)$$,
	'the ledger shows the expiry not yet written down');
SELECT is((SELECT sum(remaining) FROM wallet.grants WHERE customer = 'edge'), 0::numeric,
	'wallet.grants shows both at 0 remaining');
SELECT is_empty('SELECT * FROM wallet_verify()', 'consistent before the sweep');

---------------------------------------------------------------- recurrence, backdated
-- 100 every 3 s, up to 150 rolled over, 10.5 s old: the three boundaries before its
-- creation are folded into it (1.1): 100 -> 200 -> 250 -> 250 held at creation
SELECT wallet_grant('rec', 'credits', 100, category => 'bundled', recurrence => '3 s',
	rollover_max => 150, effective_at => now() - interval '10.5 s') \g /dev/null
SELECT is(wallet_balance('rec', 'credits'), 250::numeric, 'three missed periods with rollover');
SELECT results_eq(
	$$SELECT kind, at - now(), amount FROM wallet.ledger WHERE customer = 'rec' ORDER BY at$$,
	$$VALUES ('grant'::text, interval '0 s', 250::numeric)$$,
	'folded into its grant line: no line of it dated before its creation');
SELECT is((SELECT balance FROM wallet_debit('rec', 'credits', 10, 'r1')), 240::numeric,
	'the first touch draws from it');
SELECT is_empty(
	$$SELECT l.kind, l.amount FROM wallet.line l JOIN wallet.wallet w ON w.id = l.wallet_id
	   WHERE w.customer = 'rec' AND l.kind = 'reset' ORDER BY l.id$$,
	'and writes no reset');
SELECT is((SELECT resets FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
			WHERE w.customer = 'rec'), 3::bigint, 'three boundaries applied');
SELECT is_empty($$SELECT * FROM wallet.ledger WHERE customer = 'rec' AND id IS NULL$$,
	'nothing pending after the touch');
-- months: 10 a month, up to 5 rolled over, two months and a day old
SELECT wallet_grant('mon', 'usd', 10, recurrence => '1 month', rollover_max => 5,
	effective_at => now() - interval '2 months 1 day') \g /dev/null
SELECT is(wallet_balance('mon', 'usd'), 15.00::numeric, 'monthly: 10 + 5 rolled over');
SELECT is((SELECT g.resets FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
			WHERE w.customer = 'mon'), 2::bigint, 'its two boundaries counted at creation');
-- a boundary at the expiry instant does not refill: 3 s periods from 10 s
-- ago, expired 1 s ago (at the third boundary): spent at creation, never touched
-- (made valid, then given the expiry and the unapplied resets it would have had)
SELECT wallet_grant('recx', 'credits', 100, recurrence => '3 s',
	effective_at => now() - interval '10 s', expires_at => now() + interval '1 hour') AS recx \gset
UPDATE wallet.grant_block SET expires_at = now() - interval '1 s', resets = 0 WHERE id = :recx;
SELECT is(wallet_balance('recx', 'credits'), 0::numeric, 'an expired recurring grant counts nothing');
SELECT results_eq(
	$$SELECT kind, amount FROM wallet.ledger WHERE customer = 'recx' AND id IS NULL$$,
	$$VALUES ('expiry'::text, -100::numeric)$$,
	'its expiry is pending, with no reset at the expiry instant');

---------------------------------------------------------------- sweep
SELECT throws_ok($$SELECT * FROM wallet_sweep(now() + interval '1 second')$$, '22023',
	NULL, 'the sweep does not run ahead of time');
SELECT throws_ok($$SELECT * FROM wallet_sweep(NULL)$$, '22023', NULL, 'as_of must not be null');
SELECT results_eq($$SELECT * FROM wallet_sweep()$$,
	$$VALUES ('expired_grants'::text, 3::bigint), ('resets', 0), ('expired_holds', 0), ('closed_grants', 1),
			 ('pruned_outbox', 0)$$,
	'the sweep: three expired grants (edge 9, edgeh 5, recx 100), one used up (edge 7); mon''s resets were folded at creation');
SELECT results_eq($$SELECT * FROM wallet_sweep()$$,
	$$VALUES ('expired_grants'::text, 0::bigint), ('resets', 0), ('expired_holds', 0), ('closed_grants', 0),
			 ('pruned_outbox', 0)$$,
	'a second sweep finds nothing');
SELECT results_eq(
	$$SELECT w.customer, l.amount, l.amount * g.unit_revenue
		FROM wallet.line l JOIN wallet.grant_block g ON g.id = l.grant_id JOIN wallet.wallet w ON w.id = l.wallet_id
	   WHERE l.kind = 'expiry' ORDER BY l.id$$,
	$$VALUES ('edge'::text, -9::bigint, -0.09::numeric), ('edgeh', -5, -0.05), ('recx', -100, -1.00)$$,
	'expiry lines: what was left, breakage at unit_revenue');
SELECT is_empty($$SELECT * FROM wallet.ledger WHERE id IS NULL$$, 'nothing pending after the sweep');
SELECT is((SELECT count(*) FROM wallet.grant_block WHERE closed_at IS NULL AND remaining = 0 AND recurrence IS NULL),
	0::bigint, 'no open used-up grant');
SELECT is(wallet_balance('edge', 'credits'), 0::numeric, 'balances unchanged by the sweep');
SELECT is_empty('SELECT * FROM wallet_verify()', 'consistent after the sweep');

---------------------------------------------------------------- refunds
SELECT wallet_grant('r', 'credits', 100) AS rg \gset
SELECT event_id AS re FROM wallet_debit('r', 'credits', 40, 'r1') \gset
SELECT throws_ok('SELECT wallet_refund(999999)', 'WL007', NULL, 'unknown event');
SELECT throws_ok('SELECT wallet_refund(NULL)', '22023', NULL, 'null event');
SELECT throws_ok(format('SELECT wallet_refund(%s, 0)', :re), '22023', NULL, 'zero amount');
SELECT throws_ok(format('SELECT wallet_refund(%s, -1)', :re), '22023', NULL, 'negative amount');
SELECT throws_ok(format('SELECT wallet_refund(%s, 0.5)', :re), 'WL006', NULL, 'too many decimals');
SELECT throws_ok(format('SELECT wallet_refund(%s, 41)', :re), '22023', NULL, 'more than the charge');
SELECT results_eq(format('SELECT approved, replayed, reason, event_id, hold_id, asset, amount, balance FROM wallet_refund(%s, 10, %L)', :re, 'goodwill'),
	format('VALUES (true, false, NULL::text, %s::bigint, NULL::bigint, %L::text, 10::numeric, 70::numeric)', :re, 'credits'),
	'a partial refund');
SELECT throws_ok(format('SELECT wallet_refund(%s, 31)', :re), '22023', NULL, 'more than what is left');
SELECT is((SELECT amount FROM wallet_refund(:re)), 30::numeric, 'the rest');
SELECT is((SELECT amount FROM wallet_refund(:re)), 0::numeric, 'nothing left: 0');
SELECT is(wallet_balance('r', 'credits'), 100::numeric, 'all of it back');
SELECT results_eq(format('SELECT refunded, revenue FROM wallet.events WHERE id = %s', :re),
	$$VALUES (40::numeric, 0.00::numeric)$$, 'refunded, and the revenue reversed');
SELECT results_eq(format('SELECT grant_id, kind, amount FROM wallet.line WHERE event_id = %s ORDER BY id', :re),
	format('VALUES (%s::bigint, %L::text, -40::bigint), (%s, %L, 10), (%s, %L, 30)', :rg, 'debit', :rg, 'refund', :rg, 'refund'),
	'refund lines onto the grant it came from');
SELECT results_eq(format('SELECT amount, revenue, reason FROM wallet.refund WHERE event_id = %s ORDER BY id', :re),
	$$VALUES (10::bigint, 0.10::numeric, 'goodwill'::text), (30, 0.30, NULL)$$, 'the refunds recorded');
-- a grant voided since gets nothing back: a new grant of its kind does
SELECT wallet_grant('rv', 'credits', 50, priority => 7, category => 'promotional', unit_revenue => 0.002) AS rvg \gset
SELECT event_id AS rve FROM wallet_debit('rv', 'credits', 20, 'rv1') \gset
SELECT is(wallet_void_grant(:rvg), 30::numeric, 'void the rest');
SELECT is((SELECT balance FROM wallet_refund(:rve, 15)), 15::numeric, 'the refund lands');
SELECT results_eq(format($$SELECT g.category, g.priority, g.unit_revenue, g.amount, g.remaining, g.expires_at IS NULL,
								 l.kind, l.event_id = %s
							FROM wallet.grant_block g JOIN wallet.line l ON l.grant_id = g.id
						   WHERE g.wallet_id = (SELECT id FROM wallet.wallet WHERE customer = 'rv') AND g.id <> %s$$, :rve, :rvg),
	$$VALUES ('promotional'::text, 7, 0.002::numeric, 15::bigint, 15::bigint, true, 'refund'::text, true)$$,
	'on a new grant like the voided one, created by a refund line');
-- the overdraft part goes first (it was drawn last)
SELECT wallet_set_limit('rod', 'credits', overdraft => 100) \g /dev/null
SELECT wallet_grant('rod', 'credits', 10) \g /dev/null
SELECT event_id AS rode FROM wallet_debit('rod', 'credits', 40, 'rod1') \gset
SELECT is((SELECT overdraft FROM wallet_balances('rod')), 30::numeric, '30 of overdraft');
SELECT is((SELECT balance FROM wallet_refund(:rode, 35)), 5::numeric, 'refund 35');
SELECT results_eq($$SELECT granted, overdraft FROM wallet_balances('rod')$$,
	$$VALUES (5::numeric, 0::numeric)$$, 'overdraft paid back first, then the grant');
SELECT is_empty('SELECT * FROM wallet_verify()', 'consistent after the refunds');

---------------------------------------------------------------- voids
SELECT wallet_grant('v', 'credits', 100) AS vg \gset
SELECT wallet_debit('v', 'credits', 30, 'v1') \g /dev/null
SELECT throws_ok('SELECT wallet_void_grant(999999)', 'WL007', NULL, 'unknown grant');
SELECT throws_ok('SELECT wallet_void_grant(NULL)', '22023', NULL, 'null grant');
SELECT is(wallet_void_grant(:vg, 'fraud'), 70::numeric, 'voids what is left');
SELECT is(wallet_void_grant(:vg, 'again'), 0::numeric, 'a second void voids nothing');
SELECT results_eq(format('SELECT remaining, voided_at = now(), closed_at IS NOT NULL, void_reason FROM wallet.grant_block WHERE id = %s', :vg),
	$$VALUES (0::bigint, true, true, 'fraud'::text)$$, 'voided, closed, with its reason');
SELECT is(wallet_balance('v', 'credits'), 0::numeric, 'out of the balance');
SELECT results_eq(format('SELECT kind, amount FROM wallet.line WHERE grant_id = %s ORDER BY id', :vg),
	$$VALUES ('grant'::text, 100::bigint), ('debit', -30), ('void', -70)$$, 'a void line');
SELECT is((SELECT voided_at IS NOT NULL FROM wallet.grants WHERE id = :vg), true, 'wallet.grants shows it voided');
-- a voided recurring grant resets no more
SELECT wallet_grant('v', 'credits', 10, category => 'bundled', recurrence => '1 s',
	effective_at => now() - interval '0.5 s') AS vr \gset
SELECT is(wallet_void_grant(:vr), 10::numeric, 'void a recurring grant');
SELECT is_empty(format('SELECT * FROM wallet._pending(now() + interval %L) WHERE grant_id = %s', '1 hour', :vr),
	'no resets after it');

---------------------------------------------------------------- idempotent top-ups
SELECT wallet_grant('top', 'usd', 20, external_ref => 'pay_42') AS tg \gset
SELECT is(wallet_grant('top', 'usd', 20, external_ref => 'pay_42'), :tg::bigint, 'the same payment is the same grant');
SELECT is(wallet_balance('top', 'usd'), 20.00::numeric, 'credited once');
SELECT throws_ok($$SELECT wallet_grant('top', 'usd', 21, external_ref => 'pay_42')$$, 'WL004', NULL, 'other amount');
SELECT throws_ok($$SELECT wallet_grant('top', 'usd', 20, priority => 1, external_ref => 'pay_42')$$, 'WL004', NULL, 'other priority');
SELECT throws_ok($$SELECT wallet_grant('top', 'usd', 20, expires_at => now() + interval '1 day', external_ref => 'pay_42')$$,
	'WL004', NULL, 'other expiry');
SELECT throws_ok($$SELECT wallet_grant('top', 'credits', 20, external_ref => 'pay_42')$$, 'WL004', NULL, 'other asset');
-- 1.1: external_ref is unique per customer: another customer's ref is a grant of its own
SELECT lives_ok($$SELECT wallet_grant('other', 'usd', 20, external_ref => 'pay_42')$$, 'other customer');

---------------------------------------------------------------- outbox
-- (1.1: an alert set while already below fires at once, so the grant comes first)
SELECT wallet_grant('low', 'credits', 100) \g /dev/null
SELECT wallet_set_limit('low', 'credits', low_balance => 50) \g /dev/null
-- 60: above
SELECT wallet_debit('low', 'credits', 40, 'l1') \g /dev/null
SELECT is((SELECT count(*) FROM wallet.outbox WHERE customer = 'low'), 0::bigint, 'no row above the threshold');
SAVEPOINT crossing;
-- 40: below
SELECT wallet_debit('low', 'credits', 20, 'l2') \g /dev/null
SELECT is((SELECT count(*) FROM wallet.outbox WHERE customer = 'low'), 1::bigint, 'a row in the same transaction');
ROLLBACK TO SAVEPOINT crossing;
SELECT is((SELECT count(*) FROM wallet.outbox WHERE customer = 'low'), 0::bigint, 'none after a rollback');
-- 50: at the threshold is not below it
SELECT wallet_debit('low', 'credits', 10, 'l3') \g /dev/null
SELECT is((SELECT count(*) FROM wallet.outbox WHERE customer = 'low'), 0::bigint, 'none at the threshold');
-- 49: below
SELECT wallet_debit('low', 'credits', 1, 'l4') \g /dev/null
-- 40: still below
SELECT wallet_debit('low', 'credits', 9, 'l5') \g /dev/null
-- 30: still below
SELECT wallet_hold('low', 'credits', 10, 'l6') \g /dev/null
SELECT results_eq($$SELECT kind, available, threshold FROM wallet.outbox WHERE customer = 'low'$$,
	$$VALUES ('low_balance'::text, 49::numeric, 50::numeric)$$, 'one row while the balance stays below');
SELECT is((SELECT reason FROM wallet_debit('low', 'credits', 31, 'l7')), 'insufficient_funds', 'a decline');
SELECT results_eq($$SELECT kind, available, detail FROM wallet.outbox WHERE customer = 'low' ORDER BY id$$,
	$$VALUES ('low_balance'::text, 49::numeric, '{}'::jsonb),
			 ('declined', 30, '{"reason": "insufficient_funds", "amount": 31}')$$, 'writes a row too');
SELECT lives_ok(format('SELECT wallet_outbox_ack(%s)', (SELECT min(id) FROM wallet.outbox WHERE customer = 'low')), 'ack');
SELECT is((SELECT count(*) FROM wallet.outbox WHERE customer = 'low' AND acked_at IS NOT NULL), 1::bigint, 'acked');
SELECT throws_ok('SELECT wallet_outbox_ack(999999)', 'WL007', NULL, 'unknown outbox row');

SELECT is_empty('SELECT * FROM wallet_verify()', 'wallet_verify is clean at the end');
SELECT * FROM finish();
ROLLBACK;
