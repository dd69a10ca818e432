-- The top-up loop's lifecycle (#18): a backdated grant is recorded as of its
-- creation (no line of it before its grant line, no breakage before it
-- existed, already expired at creation is 22023).
\set VERBOSITY sqlstate
\pset null '-'
SET client_min_messages = warning;
SELECT wallet_create_asset('tl', 0, 0.01);
SELECT count(wallet_create(c)) FROM unnest(array['bd', 'bd2']) c;

-- already expired when created: refused, nothing written
SELECT wallet_grant('bd', 'tl', 100, effective_at => now() - interval '400 days',
					expires_at => now() - interval '30 days');
SELECT wallet_grant('bd', 'tl', 100, effective_at => now() - interval '400 days', expires_at => now());
SELECT count(*) FROM wallet.grants WHERE customer = 'bd';

-- a grant that started 10 days and an hour ago, resetting daily: it holds 100 now,
-- its next reset is the coming boundary, and none of its lines precedes its grant line
SELECT wallet_grant('bd', 'tl', 100, effective_at => now() - interval '10 days 1 hour',
					recurrence => '1 day', rollover_max => 50) AS bd_grant \gset
SELECT wallet_balance('bd', 'tl');
SELECT balance FROM wallet_debit('bd', 'tl', 30, 'bd1');
SELECT l.kind, l.amount, l.at >= g.created_at AS at_creation
  FROM wallet.ledger l JOIN wallet.grant_block g ON g.id = l.grant_id WHERE l.customer = 'bd' ORDER BY l.id;
SELECT kind, amount, balance FROM wallet_statement('bd') ORDER BY line_id, kind;
SELECT count(*) AS pending FROM wallet._pending(now()) p JOIN wallet.wallet w ON w.id = p.wallet_id
 WHERE w.customer = 'bd';
SELECT g.amount, g.remaining, g.resets FROM wallet.grant_block g WHERE g.id = :bd_grant;
-- monthly, from 400 days ago: the boundaries passed, counted in calendar months
SELECT wallet_grant('bd', 'tl', 5, effective_at => now() - interval '400 days',
					recurrence => '1 month') AS bd_monthly \gset
SELECT g.resets = (SELECT count(*) FROM generate_series(1, 20) k
					WHERE (g.effective_at AT TIME ZONE 'UTC' + k * interval '1 month') AT TIME ZONE 'UTC' <= now())
	   AS resets_counted, g.remaining
  FROM wallet.grant_block g WHERE g.id = :bd_monthly;
SELECT count(*) AS pending FROM wallet._pending(now()) p JOIN wallet.wallet w ON w.id = p.wallet_id
 WHERE w.customer = 'bd';

-- one that started 400 days ago and expires in a month: no expiry, no breakage dated before it
SELECT wallet_grant('bd2', 'tl', 100, effective_at => now() - interval '400 days',
					expires_at => now() + interval '30 days') > 0 AS granted;
SELECT l.kind, l.amount, l.at >= g.created_at AS at_creation
  FROM wallet.ledger l JOIN wallet.grant_block g ON g.id = l.grant_id WHERE l.customer = 'bd2' ORDER BY l.id;
SELECT count(*) AS breakage_before FROM wallet.revenue_lines r WHERE r.day < current_date - 1;
SELECT * FROM wallet_sweep() WHERE count > 0;
SELECT * FROM wallet_verify();
