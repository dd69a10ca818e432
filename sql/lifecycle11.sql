-- Lifecycle that reads true (#18, API.md 1.1 "Lifecycle").
\set VERBOSITY sqlstate
\pset null '-'
SET client_min_messages = warning;
-- a database of its own (the sweep and wallet_verify look at every wallet)
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('lc', 0, 0.01);
SELECT count(wallet_create(c)) FROM unnest(array['bd', 'bd2', 'bd3', 'rp', 'rp2', 'rp3', 'rp4', 'rf', 'rf2']) c;

-- 1. Backdated grants are recorded as of their creation.
-- already expired when created: 22023, nothing written
SELECT wallet_grant('bd', 'lc', 100, effective_at => now() - interval '400 days',
					expires_at => now() - interval '30 days');
SELECT wallet_grant('bd', 'lc', 100, effective_at => now() - interval '1 hour', expires_at => now());
SELECT count(*) AS grants, (SELECT count(*) FROM wallet.ledger WHERE customer = 'bd') AS lines
  FROM wallet.grants WHERE customer = 'bd';

-- daily with rollover 50, from 10 days and an hour ago: the 10 boundaries passed are folded:
-- 100 + min(100, 50) = 150 at creation (what the rules give with nothing drawn), next reset tomorrow
SELECT wallet_grant('bd', 'lc', 100, effective_at => now() - interval '10 days 1 hour',
					recurrence => '1 day', rollover_max => 50) AS bd_grant \gset
SELECT wallet_balance('bd', 'lc');
SELECT balance FROM wallet_debit('bd', 'lc', 30, 'bd1');
SELECT g.amount, g.remaining, g.resets FROM wallet.grant_block g WHERE g.id = :bd_grant;
SELECT l.kind, l.amount, l.at >= g.created_at AS at_creation
  FROM wallet.ledger l JOIN wallet.grant_block g ON g.id = l.grant_id
 WHERE l.customer = 'bd' ORDER BY l.id;
SELECT kind, amount, balance FROM wallet_statement('bd') ORDER BY line_id NULLS FIRST, kind;
SELECT count(*) AS pending FROM wallet.ledger WHERE customer = 'bd' AND id IS NULL;

-- monthly from 400 days ago, no rollover: the boundaries passed (calendar months) counted, 5 held
SELECT wallet_grant('bd', 'lc', 5, effective_at => now() - interval '400 days',
					recurrence => '1 month') AS bd_monthly \gset
SELECT g.resets = (SELECT count(*) FROM generate_series(1, 20) k
					WHERE (g.effective_at AT TIME ZONE 'UTC' + k * interval '1 month') AT TIME ZONE 'UTC' <= now())
	   AS resets_counted, g.remaining
  FROM wallet.grant_block g WHERE g.id = :bd_monthly;

-- a paid grant that started 400 days ago and expires in a month: no line and no breakage before it was sold
SELECT wallet_grant('bd2', 'lc', 100, effective_at => now() - interval '400 days',
					expires_at => now() + interval '30 days') > 0 AS granted;
SELECT l.kind, l.amount, l.at >= g.created_at AS at_creation
  FROM wallet.ledger l JOIN wallet.grant_block g ON g.id = l.grant_id
 WHERE l.customer = 'bd2' ORDER BY l.id;
SELECT count(*) FILTER (WHERE r.at < g.created_at) AS lines_before_sale,
	   coalesce(sum(r.breakage), 0) AS breakage
  FROM wallet.revenue_lines r JOIN wallet.grant_block g ON g.id = r.grant_id
 WHERE r.customer IN ('bd', 'bd2');

-- the issue's case: a recurring grant backdated into last year with an expiry in the past
-- year's boundaries is refused; one with an expiry ahead never dips the statement
SELECT wallet_set_overdraft('bd3', 'lc', 10);
SELECT wallet_grant('bd3', 'lc', 100, effective_at => now() - interval '400 days',
					recurrence => '1 month', expires_at => now() - interval '10 days');
SELECT wallet_grant('bd3', 'lc', 100, effective_at => now() - interval '400 days',
					recurrence => '1 month', rollover_max => 50, expires_at => now() + interval '10 days') > 0 AS granted;
SELECT min(s.balance) >= -10 AS never_below_limit,
	   count(*) FILTER (WHERE s.at < g.created_at) AS lines_before, count(*) AS lines
  FROM wallet_statement('bd3') s JOIN wallet.grant_block g ON g.id = s.grant_id;

-- an external_ref replay after the grant expired still returns it (not 22023)
SELECT wallet_grant('bd2', 'lc', 7, expires_at => now() + interval '0.2 s', external_ref => 'lc-exp') AS exp_ref \gset
SELECT pg_sleep(0.3);
SELECT wallet_grant('bd2', 'lc', 7, expires_at => g.expires_at, effective_at => g.effective_at,
					external_ref => 'lc-exp') = :exp_ref AS replayed
  FROM wallet.grants g WHERE g.id = :exp_ref;

SELECT * FROM wallet_sweep() WHERE count > 0 AND action NOT IN ('expired_grants', 'closed_grants');
SELECT * FROM wallet_verify();

-- 2. Resets repay overdraft, whenever the balance is read, debited or swept.
-- rp and rp2 alike, made in one transaction (same boundaries): 10 every second, 35 debited:
-- 25 of overdraft.  rp3 and rp4 alike: 10 every second and 7 every 1.5 seconds, 47 debited: 30.
BEGIN;
SELECT wallet_set_overdraft(c, 'lc', 100) FROM unnest(array['rp', 'rp2', 'rp3', 'rp4']) c;
SELECT wallet_grant(c, 'lc', 10, category => 'bundled', recurrence => '1 second') > 0 AS granted FROM unnest(array['rp', 'rp2']) c;
SELECT wallet_grant(c, 'lc', 10, category => 'bundled', recurrence => '1 second') > 0 AS granted FROM unnest(array['rp3', 'rp4']) c;
SELECT wallet_grant(c, 'lc', 7, category => 'paid', recurrence => '1.5 seconds') > 0 AS granted FROM unnest(array['rp3', 'rp4']) c;
SELECT customer, balance FROM unnest(array['rp', 'rp2']) customer, wallet_debit(customer, 'lc', 35, 'rp-d1');
SELECT customer, balance FROM unnest(array['rp3', 'rp4']) customer, wallet_debit(customer, 'lc', 47, 'rp-d1');
SELECT now() AS eff, (SELECT id FROM wallet.wallet WHERE customer = 'rp') AS rp_w,
	   (SELECT id FROM wallet.wallet WHERE customer = 'rp3') AS rp3_w \gset
COMMIT;
SELECT pg_sleep(greatest(0, extract(epoch FROM :'eff'::timestamptz + interval '3.6 s' - clock_timestamp())));

-- rp written down in two sweeps of its balance (as of 1.5 s and 3.5 s), rp2 never: the same lines.
-- Boundary 1 repays 10, boundary 2 10, boundary 3 the last 5 (the grant keeps 5 of its 10).
SELECT wallet._advance(:rp_w, 'lc', :'eff'::timestamptz + interval '1.5 s') AS written;
SELECT wallet._advance(:rp_w, 'lc', :'eff'::timestamptz + interval '3.5 s') AS written;
SELECT customer, kind, at - :'eff' AS after, amount, grant_id IS NULL AS overdraft, id IS NULL AS pending
  FROM wallet.ledger
 WHERE customer IN ('rp', 'rp2') AND at > :'eff' AND at <= :'eff'::timestamptz + interval '3.5 s'
 ORDER BY customer, at, grant_id NULLS LAST, kind;
-- rp3 swept as of 1.7 s and then 3.2 s, rp4 as of 3.2 s at once: the same lines; in order of time
-- the boundaries repay 10 (1 s), 7 (1.5 s), 10 (2 s), then at 3 s the first grant the last 3 and
-- the second one keeps its reset
SELECT wallet._advance(:rp3_w, 'lc', :'eff'::timestamptz + interval '1.7 s') AS written;
SELECT wallet._advance(:rp3_w, 'lc', :'eff'::timestamptz + interval '3.2 s') AS written;
SELECT wallet._advance(w.id, 'lc', :'eff'::timestamptz + interval '3.2 s') AS written
  FROM wallet.wallet w WHERE w.customer = 'rp4';
SELECT customer, kind, at - :'eff' AS after, amount, grant_id IS NULL AS overdraft
  FROM wallet.ledger
 WHERE customer IN ('rp3', 'rp4') AND at > :'eff' AND at <= :'eff'::timestamptz + interval '3.2 s'
 ORDER BY customer, at, grant_id NULLS LAST, kind, amount;
-- whatever was written when, the grants and balances agree now; no overdraft is left
SELECT array_agg(g.remaining ORDER BY g.id) FILTER (WHERE g.customer = 'rp3')
	 = array_agg(g.remaining ORDER BY g.id) FILTER (WHERE g.customer = 'rp4') AS grants_agree
  FROM wallet.grants g WHERE g.customer IN ('rp3', 'rp4');
SELECT x.customer, x.y, (SELECT row(b.available, b.granted, b.overdraft) FROM wallet_balances(x.customer) b WHERE b.asset = 'lc')
	 = (SELECT row(b.available, b.granted, b.overdraft) FROM wallet_balances(x.y) b WHERE b.asset = 'lc') AS agree,
	   (SELECT b.overdraft FROM wallet_balances(x.customer) b WHERE b.asset = 'lc') AS overdraft
  FROM (VALUES ('rp', 'rp2'), ('rp3', 'rp4')) x(customer, y);
-- the repaid overdraft is revenue of the paid grant that repaid it (recognized), not breakage
SELECT r.customer, r.kind, sum(r.recognized) AS recognized, sum(r.breakage) AS breakage
  FROM wallet.revenue_lines r JOIN wallet.grant_block g ON g.id = r.grant_id
 WHERE r.customer IN ('rp3', 'rp4') AND g.category = 'paid' AND r.kind = 'repay'
 GROUP BY 1, 2 ORDER BY 1;
-- a debit now writes the rest down; the sweep then finds no reset to write
-- (rp2 had none written: its debit writes the repay down first)
SELECT customer, approved FROM unnest(array['rp2', 'rp3']) customer, wallet_debit(customer, 'lc', 1, 'rp-d2');
SELECT b.customer, b.overdraft FROM wallet.balances b
 WHERE b.customer IN ('rp2', 'rp3') AND b.asset = 'lc' ORDER BY b.customer;
SELECT customer, count(*) AS repay_lines_written FROM wallet.ledger
 WHERE customer IN ('rp', 'rp2', 'rp3') AND kind = 'repay' AND id IS NOT NULL GROUP BY 1 ORDER BY 1;
SELECT * FROM wallet_verify();
SELECT action, count > 0 AS some FROM wallet_sweep() WHERE action = 'resets';
SELECT * FROM wallet_verify();

-- A refund of a debit's overdraft part that a grant has repaid since goes to a new grant like
-- the one that repaid last, in time: the paid grant whose boundary (6 s) came after the
-- bundled one's (4 s), whether a sweep wrote the first repay down in between (rf) or one
-- touch wrote both (rf2, where the bundled grant's lines come last).
SELECT wallet_set_limit(c, 'lc', overdraft => 100) FROM unnest(array['rf', 'rf2']) c;
SELECT wallet_grant(c, 'lc', 5, category => 'paid', recurrence => '6 seconds') > 0 AS paid,
	   wallet_grant(c, 'lc', 5, category => 'bundled', recurrence => '4 seconds') > 0 AS bundled
  FROM unnest(array['rf', 'rf2']) c;
SELECT event_id AS rf_event FROM wallet_debit('rf', 'lc', 30, 'rf-1') \gset
SELECT event_id AS rf2_event FROM wallet_debit('rf2', 'lc', 30, 'rf2-1') \gset
SELECT pg_sleep(5);
-- rf's balance row is touched (as any write does): the bundled grant's repay is written now
SELECT wallet._touch(wallet._wallet_id('rf'), 'lc');
SELECT pg_sleep(2);
SELECT amount FROM wallet_refund(:rf_event);
SELECT amount FROM wallet_refund(:rf2_event);
SELECT customer, category, amount, (metadata->>'refund_of_grant')::bigint = (
		SELECT g.id FROM wallet.grants g WHERE g.customer = gs.customer AND g.category = 'paid'
		 ORDER BY g.id LIMIT 1) AS like_the_paid_one
  FROM wallet.grants gs WHERE customer IN ('rf', 'rf2') AND metadata ? 'refund_of_event' ORDER BY 1;
SELECT * FROM wallet_verify();

-- A database still at 1.0 keeps 1.0's rule (the debt stays), and so do the boundaries
-- that passed under 1.0 without being written (the upgrade writes them first, by 1.0's
-- rule: no repay line is dated before the upgrade, the debt is still there); once the
-- grant is drawn again, the next boundary repays.
DROP EXTENSION wallet CASCADE;
CREATE EXTENSION wallet VERSION '1.0';
SELECT wallet_create_asset('lc', 0, 0.01);
SELECT wallet_create('old') > 0 AS created;
SELECT wallet_set_limit('old', 'lc', overdraft => 100);
SELECT wallet_grant('old', 'lc', 10, category => 'bundled', recurrence => '1 second') > 0 AS granted;
SELECT balance FROM wallet_debit('old', 'lc', 15, 'old-1');
SELECT pg_sleep(1.1);
SELECT overdraft FROM wallet_balances('old');
SELECT count(*) AS repay_lines FROM wallet.ledger WHERE kind = 'repay';
SELECT now() AS upgrading \gset
ALTER EXTENSION wallet UPDATE;
SELECT count(*) AS repaid_before_upgrade FROM wallet.ledger WHERE kind = 'repay' AND at <= :'upgrading';
SELECT overdraft FROM wallet_balances('old');
SELECT balance FROM wallet_debit('old', 'lc', 10, 'old-2');
SELECT pg_sleep(1.1);
SELECT overdraft FROM wallet_balances('old');
SELECT kind, amount FROM wallet.ledger WHERE kind = 'repay' ORDER BY grant_id NULLS LAST;
SELECT * FROM wallet_verify();
