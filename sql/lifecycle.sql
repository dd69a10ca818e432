-- Grant lifecycle: expiry at read time and by sweep (breakage), recurring
-- resets with rollover (one and several missed periods), refunds (partial,
-- full, onto grants expired or used up since, overdraft, beyond the charge),
-- voids, idempotent top-ups, the outbox.  Runs in a database of its own, so
-- the sweep's counts are this file's alone.
--
-- Time: one transaction at t0 sets everything up (grants effective a little
-- before t0, so their boundaries fall at exact offsets from t0); the test then
-- sleeps until t0 + 5.5 s and looks again.  Times are shown as offsets from t0.
\set VERBOSITY sqlstate
\pset null '-'
SET client_min_messages = warning;
\set origdb :DBNAME
DROP DATABASE IF EXISTS wallet_lifecycle;
CREATE DATABASE wallet_lifecycle;
\c wallet_lifecycle
SET client_min_messages = warning;
SET IntervalStyle = postgres;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('credits', 0, 0.01);
SELECT wallet_create_asset('usd', 2, 1);
SELECT count(wallet_create(c)) FROM unnest(array['exp', 'rec1', 'rec3', 'recexp', 'back',
	'ref', 'ref2', 'od', 'od2', 'void', 'topup', 'low', 'cap']) c;
SELECT wallet_set_limit('od', 'credits', overdraft => 50);
SELECT wallet_set_limit('od2', 'credits', overdraft => 50);
SELECT wallet_set_price('job', 'credits', '{"model": "per_unit", "unit_price": "1"}');

---------------------------------------------------------------- t0
BEGIN;
SELECT now() AS t0 \gset
-- exp: 100 paid expiring at t0+2s (drawn first: it expires first), 50 promotional
SELECT wallet_grant('exp', 'credits', 100, expires_at => now() + interval '2 s') AS exp_paid \gset
SELECT wallet_grant('exp', 'credits', 50, category => 'promotional') AS exp_promo \gset
SELECT approved, amount, balance FROM wallet_debit('exp', 'credits', 30, 'e1');
SELECT approved, amount, balance, hold_id AS exp_hold FROM wallet_hold('exp', 'credits', 10, 'h1', '2 s') \gset
-- the expiry is at read time: one microsecond before it the grant counts, at it it does not
SELECT wallet_grant('exp', 'credits', 7, category => 'promotional',
	effective_at => now() - interval '1 hour', expires_at => now() + interval '1 microsecond') AS exp_edge1 \gset
-- (1.1: one expiring at now is refused, 22023: it was never usable)
SAVEPOINT edge2;
SELECT wallet_grant('exp', 'credits', 9, category => 'promotional',
	effective_at => now() - interval '1 hour', expires_at => now()) AS exp_edge2 \gset
ROLLBACK TO SAVEPOINT edge2;
SELECT wallet_balance('exp', 'credits');   -- 70 + 50 - 10 held + 7 (the 9 expired at t0)
-- rec1: 100 bundled a minute, up to 30 rolled over; boundary at t0+5s; 60 spent before it
SELECT wallet_grant('rec1', 'credits', 100, category => 'bundled', recurrence => '1 minute',
	rollover_max => 30, effective_at => now() - interval '55 s') AS rec1 \gset
SELECT approved, amount, balance FROM wallet_debit('rec1', 'credits', 60, 'b1');
-- rec3: 100 every 2 s, up to 150 rolled over; boundaries at t0+1s, 3s, 5s, 7s; 70 spent
SELECT wallet_grant('rec3', 'credits', 100, category => 'bundled', recurrence => '2 s',
	rollover_max => 150, effective_at => now() - interval '1 s') AS rec3 \gset
SELECT approved, amount, balance FROM wallet_debit('rec3', 'credits', 70, 'c1');
-- recexp: 100 paid every 2 s, no rollover, expiring at t0+4s; all of it spent
SELECT wallet_grant('recexp', 'credits', 100, recurrence => '2 s',
	effective_at => now() - interval '1 s', expires_at => now() + interval '4 s') AS recexp \gset
SELECT approved, amount, balance FROM wallet_debit('recexp', 'credits', 100, 'x1');
-- back: created 10.5 s into its recurrence (every 3 s, rollover 150): the three
-- boundaries before its creation are folded into it (1.1): 100 -> 200 -> 250 -> 250
-- held at creation, its grant line is 250 and no line of it precedes that
SELECT wallet_grant('back', 'credits', 100, category => 'promotional', recurrence => '3 s',
	rollover_max => 150, effective_at => now() - interval '10.5 s') AS back \gset
SELECT wallet_balance('back', 'credits');
SELECT grant_id, kind, at - :'t0' AS at, amount FROM wallet.ledger
 WHERE customer = 'back' ORDER BY at;
-- ref: 50 paid, 40 promotional expiring at t0+2s; an event of 60 draws 40 + 20
SELECT wallet_grant('ref', 'credits', 50) AS ref_paid \gset
SELECT wallet_grant('ref', 'credits', 40, category => 'promotional',
	expires_at => now() + interval '2 s') AS ref_promo \gset
SELECT approved, amount, balance FROM wallet_debit('ref', 'credits', 60, 'r1');
-- ref2: 50 paid, used up
SELECT wallet_grant('ref2', 'credits', 50) AS ref2 \gset
SELECT approved, amount, balance FROM wallet_debit('ref2', 'credits', 50, 'u1');
-- od: 30 paid and overdraft: an event of 50 takes 30 + 20 overdraft
SELECT wallet_grant('od', 'credits', 30) AS od \gset
SELECT approved, amount, balance FROM wallet_debit('od', 'credits', 50, 'o1');
-- od2: 10 paid, 20 overdraft; then 100 promotional repays the overdraft
SELECT wallet_grant('od2', 'credits', 10) AS od2_paid \gset
SELECT approved, amount, balance FROM wallet_debit('od2', 'credits', 30, 'p1');
SELECT wallet_grant('od2', 'credits', 100, category => 'promotional') AS od2_promo \gset
SELECT * FROM wallet_balances('od2');
-- void: 100 paid (30 spent), 40 paid expiring at t0+2s (drawn last: priority
-- 200), 50 promotional effective in an hour, 20 bundled every 2 s (priority 300)
SELECT wallet_grant('void', 'credits', 100) AS v1 \gset
SELECT wallet_grant('void', 'credits', 40, priority => 200, expires_at => now() + interval '2 s') AS v3 \gset
SELECT wallet_grant('void', 'credits', 50, category => 'promotional',
	effective_at => now() + interval '1 hour') AS v2 \gset
SELECT wallet_grant('void', 'credits', 20, category => 'bundled', recurrence => '2 s', priority => 300,
	effective_at => now() - interval '1 s') AS v4 \gset
SELECT approved, amount, balance FROM wallet_debit('void', 'credits', 30, 'v1');
-- cap: 50 paid expiring at t0+2s, 60 promotional, 40 held for a minute
SELECT wallet_grant('cap', 'credits', 50, expires_at => now() + interval '2 s') AS cap_paid \gset
SELECT wallet_grant('cap', 'credits', 60, category => 'promotional') AS cap_promo \gset
SELECT approved, amount, balance, hold_id AS cap_hold FROM wallet_hold('cap', 'credits', 40, 'k1', '1 minute') \gset
SELECT customer, available, held, granted, overdraft FROM wallet.balances ORDER BY customer;
SELECT count(*) AS problems FROM wallet_verify();
COMMIT;

SELECT pg_sleep_until(:'t0'::timestamptz + interval '5.5 s');

---------------------------------------------------------------- t1 = t0 + 5.5 s
BEGIN;
-- balances move with time, nothing written yet: exp's paid grant (70 left) and
-- its hold expired at t0+2s; rec1 reset at t0+5s to 100 + min(40, 30); rec3
-- reset three times (30 -> 130 -> 230 -> 250); recexp refilled at t0+1s and
-- expired at t0+4s; ref's promotional grant expired empty; void's expiring grant too
SELECT customer, available, held, granted, overdraft FROM wallet.balances ORDER BY customer;
-- what time did and nobody wrote down yet: the lines the ledger view shows with a null id
SELECT customer, grant_id, kind, at - :'t0' AS at, amount FROM wallet.ledger
 WHERE id IS NULL ORDER BY customer, grant_id, at;
SELECT id, customer, amount, remaining FROM wallet.grants
 WHERE customer IN ('exp', 'rec1', 'rec3', 'recexp') ORDER BY id;
-- expired value does not count for a debit or a hold either
SELECT approved, reason, amount, balance FROM wallet_debit('exp', 'credits', 45, 'e2');
SELECT approved, reason, amount, balance FROM wallet_debit('exp', 'credits', 10, 'e3');
SELECT approved, reason, amount, balance FROM wallet_hold('exp', 'credits', 10, 'h2');
-- a hold binds (1.1): cap's hold of 40 reserved the paid grant, which expired
-- under it; the capture still draws those 40, and only the part above the
-- hold is checked against the 60 promotional: 110 declines (the hold stays
-- open: balance 60), 70 is drawn
SELECT approved, reason, amount, balance FROM wallet_capture(:cap_hold, 'job', 110);
SELECT approved, reason, amount, balance FROM wallet_capture(:cap_hold, 'job', 70);
SELECT grant_id, kind, amount FROM wallet.line
 WHERE event_id = (SELECT event_id FROM wallet.hold WHERE id = :cap_hold) ORDER BY id;
-- the first touch of rec1 after its boundary writes the reset, then debits
SELECT approved, amount, balance FROM wallet_debit('rec1', 'credits', 10, 'b2');
SELECT id IS NOT NULL AS written, kind, CASE WHEN kind = 'reset' THEN at - :'t0' END AS at, amount
  FROM wallet.ledger WHERE customer = 'rec1' ORDER BY id;
-- voids: what is left leaves the balance and is returned
SELECT wallet_void_grant(:v1, 'chargeback');          -- 70
SELECT wallet_void_grant(:v1, 'chargeback');          -- voided already: 0
SELECT wallet_void_grant(:v3);                        -- expired at t0+2s: 0 (its expiry is written down)
SELECT wallet_void_grant(:v2, 'not yet effective');   -- 50
SELECT wallet_void_grant(:v4);                        -- 20, and no more resets
SELECT id, amount, remaining, voided_at IS NOT NULL AS voided, void_reason
  FROM wallet.grant_block WHERE id IN (:v1, :v2, :v3, :v4) ORDER BY id;
SELECT grant_id, kind, amount FROM wallet.line
 WHERE wallet_id = (SELECT id FROM wallet.wallet WHERE customer = 'void') ORDER BY id;
SELECT * FROM wallet_balances('void');
SELECT count(*) AS pending FROM wallet._pending(now()) WHERE grant_id IN (:v1, :v2, :v3, :v4);
SELECT count(*) AS problems FROM wallet_verify();
COMMIT;
-- an expired hold cannot be captured or released
SELECT wallet_release(:exp_hold);

---------------------------------------------------------------- sweep
-- not ahead of time, not null
SELECT * FROM wallet_sweep(now() + interval '1 s');
SELECT * FROM wallet_sweep(NULL);
-- as of t0+2.5s: exp's paid grant (70 left: breakage), exp's two edge
-- grants, cap's paid grant (50 left) and ref's promotional grant (empty)
-- expired; exp's hold expired; rec3 and recexp reset at t0+1s;
-- back's two unwritten resets; three grants used up (ref2, od, od2's paid)
SELECT * FROM wallet_sweep(:'t0'::timestamptz + interval '2.5 s');
-- now: rec3's resets at t0+3s and t0+5s, recexp's expiry at t0+4s
SELECT * FROM wallet_sweep();
SELECT * FROM wallet_sweep();   -- nothing left to write
-- (a hold's ttl runs from the clock at the call, a moment after t0: its lines to the second)
SELECT w.customer, l.grant_id, l.hold_id, l.kind,
       CASE WHEN l.hold_id IS NULL THEN l.at - :'t0' ELSE date_trunc('second', l.at - :'t0') END AS at,
       l.amount
  FROM wallet.line l JOIN wallet.wallet w ON w.id = l.wallet_id
 WHERE l.kind IN ('reset', 'expiry')
    OR l.kind = 'release' AND l.hold_id IN (SELECT id FROM wallet.hold WHERE status = 'expired')
 ORDER BY w.customer, l.id;
SELECT count(*) AS pending FROM wallet._pending(now());
SELECT status, closed_at IS NOT NULL AS closed FROM wallet.hold WHERE id = :exp_hold;
SELECT customer, available, held, granted, overdraft FROM wallet.balances ORDER BY customer;
-- breakage: what paid grants held when they expired or were voided, at their unit_revenue
SELECT w.customer, l.kind, -l.amount AS left_over, -l.amount * g.unit_revenue AS breakage
  FROM wallet.line l JOIN wallet.grant_block g ON g.id = l.grant_id
  JOIN wallet.wallet w ON w.id = l.wallet_id
 WHERE l.kind IN ('expiry', 'void') AND g.category = 'paid' ORDER BY l.id;
SELECT count(*) AS problems FROM wallet_verify();

---------------------------------------------------------------- refunds
-- errors: unknown event, null, not positive, too many decimals, beyond the charge
SELECT * FROM wallet_refund(999999);
SELECT * FROM wallet_refund(NULL);
SELECT * FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'r1'), 0);
SELECT * FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'r1'), -5);
SELECT * FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'r1'), 'NaN');
SELECT * FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'r1'), 1.5);
SELECT * FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'r1'), 61);
-- ref's r1 took 40 from the promotional grant (expired since) and then 20 from
-- the paid one: newest drawdown first, so 10 + 10 go back to the paid grant,
-- then the promotional part goes to new promotional grants
SELECT approved, replayed, amount, balance FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'r1'), 10, 'partial');
SELECT approved, replayed, amount, balance FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'r1'), 30);
SELECT wallet_set_status('ref', 'frozen');   -- refunds still land
SELECT approved, replayed, amount, balance FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'r1'));
SELECT approved, replayed, amount, balance FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'r1'));  -- nothing left: 0
SELECT * FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'r1'), 1);
SELECT l.grant_id, g.category, g.amount, g.remaining, g.expires_at IS NOT NULL AS expires, l.kind, l.amount
  FROM wallet.line l JOIN wallet.grant_block g ON g.id = l.grant_id
 WHERE l.event_id = (SELECT id FROM wallet.event WHERE idempotency_key = 'r1') ORDER BY l.id;
SELECT amount, revenue, refunded FROM wallet.events WHERE idempotency_key = 'r1';
SELECT amount, revenue, reason FROM wallet.refund
 WHERE event_id = (SELECT id FROM wallet.event WHERE idempotency_key = 'r1') ORDER BY id;
-- exp's e1 came from the paid grant that expired: all of it to a new paid grant
SELECT approved, amount, balance FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'e1'));
SELECT g.category, g.amount, g.unit_revenue, g.expires_at, l.kind, l.amount
  FROM wallet.line l JOIN wallet.grant_block g ON g.id = l.grant_id
 WHERE l.event_id = (SELECT id FROM wallet.event WHERE idempotency_key = 'e1') AND l.kind = 'refund';
SELECT amount, revenue, refunded FROM wallet.events WHERE idempotency_key = 'e1';
-- ref2's grant was used up and closed by the sweep: a refund reopens it
SELECT closed_at IS NOT NULL AS closed FROM wallet.grant_block WHERE id = :ref2;
SELECT approved, amount, balance FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'u1'), 20);
SELECT remaining, closed_at IS NOT NULL AS closed FROM wallet.grant_block WHERE id = :ref2;
SELECT approved, amount, balance FROM wallet_debit('ref2', 'credits', 5, 'u2');
SELECT grant_id, kind, amount FROM wallet.line
 WHERE event_id = (SELECT id FROM wallet.event WHERE idempotency_key = 'u2');
-- od's o1: the newest 20 were overdraft: paid back first, then the grant
SELECT approved, amount, balance FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'o1'), 10);
SELECT * FROM wallet_balances('od');
SELECT approved, amount, balance FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'o1'), 15);
SELECT * FROM wallet_balances('od');
-- od2's p1: its overdraft was repaid by the promotional grant since, so that
-- part goes to a new promotional grant; the paid part back to its (reopened) grant
SELECT wallet_set_status('od2', 'closed');   -- refunds still land
SELECT approved, amount, balance FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'p1'));
SELECT l.grant_id, g.category, l.kind, l.amount
  FROM wallet.line l LEFT JOIN wallet.grant_block g ON g.id = l.grant_id
 WHERE l.event_id = (SELECT id FROM wallet.event WHERE idempotency_key = 'p1') ORDER BY l.id;
SELECT * FROM wallet_balances('od2');
-- rec1's b1 (60): its recurring grant holds 120 of at most 130: 10 back to
-- it, 50 to a new bundled grant
SELECT approved, amount, balance FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'b1'));
SELECT g.id = :rec1 AS same_grant, g.category, g.recurrence, g.remaining, l.amount
  FROM wallet.line l JOIN wallet.grant_block g ON g.id = l.grant_id
 WHERE l.event_id = (SELECT id FROM wallet.event WHERE idempotency_key = 'b1') AND l.kind = 'refund'
 ORDER BY l.id;
SELECT count(*) AS problems FROM wallet_verify();

---------------------------------------------------------------- voids: errors
SELECT wallet_void_grant(999999);
SELECT wallet_void_grant(NULL);

---------------------------------------------------------------- idempotent top-ups
SELECT wallet_grant('topup', 'usd', 25, external_ref => 'pay_1') AS pay_1 \gset
SELECT wallet_grant('topup', 'usd', 25, external_ref => 'pay_1') = :pay_1 AS same_grant;
SELECT wallet_grant('topup', 'usd', 25.5, external_ref => 'pay_1');
SELECT wallet_grant('topup', 'usd', 25, category => 'promotional', external_ref => 'pay_1');
SELECT wallet_grant('topup', 'credits', 25, external_ref => 'pay_1');
SELECT wallet_grant('low', 'usd', 25, external_ref => 'pay_1');	-- 1.1: refs are per customer, a grant of its own
SELECT wallet_balance('topup', 'usd');
SELECT count(*) AS grants FROM wallet.grants WHERE external_ref = 'pay_1';

---------------------------------------------------------------- outbox
SELECT wallet_set_limit('low', 'credits', low_balance => 20);
SELECT wallet_grant('low', 'credits', 100);
SELECT approved, balance FROM wallet_debit('low', 'credits', 70, 'l1');   -- 30: above
-- crossing, rolled back: no row survives
BEGIN;
SELECT approved, balance FROM wallet_debit('low', 'credits', 15, 'l2');
SELECT count(*) FROM wallet.outbox;
ROLLBACK;
SELECT count(*) FROM wallet.outbox;
-- crossing in a savepoint rolled back: none either
BEGIN;
SAVEPOINT s;
SELECT approved, balance FROM wallet_debit('low', 'credits', 15, 'l2');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT count(*) FROM wallet.outbox;
SELECT approved, balance FROM wallet_debit('low', 'credits', 15, 'l2');   -- 30 -> 15: a row
SELECT approved, balance FROM wallet_debit('low', 'credits', 5, 'l3');    -- 15 -> 10: still below, no row
SELECT approved, reason, balance FROM wallet_debit('low', 'credits', 50, 'l4');   -- declined: a row
SELECT wallet_grant('low', 'credits', 100, external_ref => 'topup-low-1');   -- 110
SELECT approved, balance, hold_id AS low_hold FROM wallet_hold('low', 'credits', 95, 'l5') \gset
-- a hold crossing wrote a row; capturing 92 of it leaves 18: still below, no row
SELECT approved, amount, balance FROM wallet_capture(:low_hold, 'job', 92);
SELECT id, customer, asset, kind, available, threshold, detail, acked_at IS NOT NULL AS acked
  FROM wallet.outbox ORDER BY id;
SELECT wallet_outbox_ack(min(id)) FROM wallet.outbox;
SELECT wallet_outbox_ack(min(id)) FROM wallet.outbox;   -- again: still acked, once
SELECT wallet_outbox_ack(999999);
SELECT id, kind, acked_at IS NOT NULL AS acked FROM wallet.outbox ORDER BY id;

---------------------------------------------------------------- the end
SELECT * FROM wallet_sweep();   -- the grants used up since
SELECT * FROM wallet_sweep();
SELECT count(*) AS problems FROM wallet_verify();
\c :origdb
DROP DATABASE wallet_lifecycle;
