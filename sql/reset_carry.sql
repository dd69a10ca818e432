-- A recurring grant's reset carries what open holds reserve on it whole, on
-- top of its refill (grant.c, GrantAdvance).  That must stay countable in 64
-- bits: else every read of the balance fails (and its release, and
-- wallet_sweep for every customer, and wallet_verify).
-- wallet_grant refuses a recurring grant unless twice (amount + rollover_max)
-- fits: a full refill with a full one carried.  (It took 3,000,000,000 tokens
-- kept to 9 decimals with as much rollover: a hold of the rolled-over
-- 6,000,000,000 made the next reset 12e18 minor units, which wrapped.)
SET client_min_messages = warning;
DROP EXTENSION wallet CASCADE;
CREATE EXTENSION wallet;
\set VERBOSITY terse
SELECT wallet_create_asset('tok9', 9);
SELECT wallet_create('big') > 0 AS created;
SELECT wallet_grant('big', 'tok9', 3000000000, category => 'bundled', recurrence => '1 day',
					rollover_max => 3000000000);
-- 2 x (2,300,000,000 + 2,300,000,000) tokens fit
SELECT wallet_grant('big', 'tok9', 2300000000, category => 'bundled', recurrence => '1 day',
					rollover_max => 2300000000) > 0 AS granted;
-- ... and nothing more on the same balance
SELECT wallet_grant('big', 'tok9', 30000000);
SELECT wallet_balance('big', 'tok9');

-- Holds stacked across resets: each reset carries the holds and refills
-- beside them, and a hold may reserve the refill.  A hold that would make the
-- next reset carry more than fits with a full refill is 22003.  (Time moves
-- by moving the grant's start back a day per reset.)
SELECT wallet_create('stack') > 0 AS created;
SELECT wallet_grant('stack', 'tok9', 2000000000, category => 'bundled', recurrence => '1 day',
					rollover_max => 2000000000, effective_at => now() - interval '12 hours') > 0 AS granted;
CREATE FUNCTION pg_temp.days_pass(n int) RETURNS void LANGUAGE sql AS $$
	UPDATE wallet.grant_block gb SET effective_at = gb.effective_at - n * interval '1 day'
	  FROM wallet.wallet w WHERE w.id = gb.wallet_id AND w.customer = 'stack'
$$;
SELECT approved, balance FROM wallet_hold('stack', 'tok9', 2000000000, 'h1', ttl => '30 days');
SELECT pg_temp.days_pass(1);
SELECT wallet_balance('stack', 'tok9');
SELECT approved, balance FROM wallet_hold('stack', 'tok9', 2000000000, 'h2', ttl => '30 days');
SELECT pg_temp.days_pass(2);
SELECT wallet_balance('stack', 'tok9');
SELECT remaining FROM wallet.grants WHERE customer = 'stack';
-- 8e18 held: with this hold's 4e18 the next reset would carry 12e18
SELECT approved, balance FROM wallet_hold('stack', 'tok9', 4000000000, 'h3', ttl => '30 days');
SELECT pg_temp.days_pass(1);
SELECT wallet_balance('stack', 'tok9');
SELECT remaining FROM wallet.grants WHERE customer = 'stack';
SELECT r.approved, r.balance FROM wallet.hold h, wallet_release(h.id) r
 WHERE h.idempotency_key IN ('h1', 'h2', 'h3') ORDER BY h.id;
SELECT action, count FROM wallet_sweep() WHERE action = 'expired_holds';
SELECT wallet_balance('stack', 'tok9');

-- A grant stored before these checks (its amount raised here by hand) whose
-- reset would still overflow: a clear 22003 naming it, never a wrapped count
SELECT wallet_create('old') > 0 AS created;
SELECT wallet_grant('old', 'tok9', 2000000000, category => 'bundled', recurrence => '1 day',
					effective_at => now() - interval '12 hours') > 0 AS granted;
SELECT approved, balance FROM wallet_hold('old', 'tok9', 2000000000, 'o1', ttl => '30 days');
UPDATE wallet.grant_block gb SET amount = 8000000000000000000, effective_at = gb.effective_at - interval '1 day'
  FROM wallet.wallet w WHERE w.id = gb.wallet_id AND w.customer = 'old';
\set VERBOSITY default
SELECT wallet_balance('old', 'tok9');
\set VERBOSITY terse
UPDATE wallet.grant_block gb SET amount = 2000000000000000000
  FROM wallet.wallet w WHERE w.id = gb.wallet_id AND w.customer = 'old';
SELECT wallet_balance('old', 'tok9');
SELECT r.approved, r.balance FROM wallet.hold h, wallet_release(h.id) r WHERE h.idempotency_key = 'o1';
SELECT * FROM wallet_verify();

-- a wallet with no recurring grant: nothing is carried by a reset, so a hold
-- is judged as a debit is (a scale-12 asset: 6,000,000 units are 6e18 minor
-- units, and a hold of 4,000,000 of them is no nearer the 64-bit edge than a
-- debit of as much)
SELECT wallet_create_asset('eth12', 12, 1);
SELECT wallet_create('oneoff') > 0 AS created;
SELECT wallet_grant('oneoff', 'eth12', 6000000) > 0 AS granted;
SELECT approved, reason, amount FROM wallet_hold('oneoff', 'eth12', 4000000, 'oh1', '1 hour');
SELECT approved, reason, amount FROM wallet_debit('oneoff', 'eth12', 1000000, 'od1');
SELECT * FROM wallet_verify();
