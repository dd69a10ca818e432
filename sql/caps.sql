-- Spend controls: caps per period and per dimension value, and max_holds.
-- Everything that depends on the current UTC period runs inside one
-- transaction (one now(), one period), so the test does not depend on the
-- time of day it runs at.  Period rollover is shown by moving counters into
-- the previous period, as time would.
\set VERBOSITY sqlstate
\pset null '(null)'
SET client_min_messages = warning;
-- every suite starts from a fresh extension: ids and data do not leak between files
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
-- every declined row, not one per minute (sql/topup.sql tests the interval)
SET wallet.decline_notice_interval = 0;

SELECT wallet_create_asset('capusd', 2, 1);
SELECT wallet_set_price('caps.call', 'capusd', '{"model": "per_unit", "unit_price": "1"}',
						effective_at => now() - interval '1 day') > 0 AS priced;
SELECT wallet_set_price('caps.free', 'capusd', '{"model": "flat", "price": "0"}') > 0 AS priced;

-- the caps of a wallet, without the times that change with the clock
CREATE FUNCTION pg_temp.caps(customer text)
RETURNS TABLE (period text, dimension text, dim_value text, cap numeric, spent numeric,
			   remaining numeric, current boolean)
LANGUAGE sql AS $$
	SELECT period, dimension, dim_value, cap, spent, remaining,
		   period_start = date_trunc(period, now(), 'UTC')
	   AND period_end = (date_trunc(period, now(), 'UTC') AT TIME ZONE 'UTC'
						 + ('1 ' || period)::interval) AT TIME ZONE 'UTC'
	  FROM wallet_caps(customer)
$$;

-- a debit, short
CREATE FUNCTION pg_temp.debit(customer text, amount numeric, key text, dims jsonb DEFAULT '{}')
RETURNS TABLE (approved boolean, replayed boolean, reason text, amount numeric, balance numeric)
LANGUAGE sql AS $$
	SELECT r.approved, r.replayed, r.reason, r.amount, r.balance
	  FROM wallet_debit(customer, 'capusd', amount, key, dims) r
$$;

------------------------------------------------------------------ arguments
SELECT wallet_create('caps-org') > 0 AS created;
SELECT wallet_grant('caps-org', 'capusd', 1000) > 0 AS granted;
SELECT wallet_set_cap('caps-org', 'capusd', 10, 'fortnight');	-- 22023
SELECT wallet_set_cap('caps-org', 'capusd', 10, NULL);			-- 22023
SELECT wallet_set_cap('caps-org', 'capusd', -1, 'day');			-- 22023
SELECT wallet_set_cap('caps-org', 'capusd', 'NaN', 'day');		-- 22023
SELECT wallet_set_cap('caps-org', 'capusd', 1.001, 'day');		-- WL006
SELECT wallet_set_cap('caps-org', 'capusd', 1e30, 'day');		-- 22003
SELECT wallet_set_cap('caps-org', 'nosuch', 1, 'day');			-- WL002
SELECT wallet_set_cap('caps-org', NULL, 1, 'day');				-- 22023
SELECT wallet_set_cap('nobody', 'capusd', 1, 'day');			-- WL001
SELECT wallet_set_cap('caps-org', 'capusd', 1, 'day', '');		-- 22023
SELECT * FROM wallet_caps('nobody');							-- WL001
SELECT wallet._cap_giveback(-1, 1);								-- WL007
SELECT wallet._cap_giveback(NULL, 1);							-- WL007
-- no caps: nothing listed, the balance row counts none
SELECT * FROM wallet_caps('caps-org');
SELECT a.caps FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id
 WHERE w.customer = 'caps-org' AND a.asset = 'capusd';

BEGIN;
---------------------------------------------------- a whole-wallet day cap
SELECT wallet_set_cap('caps-org', 'capusd', 10, 'day');
SELECT a.caps FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id
 WHERE w.customer = 'caps-org' AND a.asset = 'capusd';
SELECT * FROM pg_temp.caps('caps-org');
SELECT * FROM pg_temp.debit('caps-org', 6, 'org-1');
-- the balance covers it, the cap does not
SELECT * FROM pg_temp.debit('caps-org', 5, 'org-2');
SELECT * FROM pg_temp.debit('caps-org', 4, 'org-3');
SELECT * FROM pg_temp.debit('caps-org', 0.01, 'org-4');
SELECT * FROM pg_temp.caps('caps-org');
-- a replay is the stored result: it is not counted again
SELECT * FROM pg_temp.debit('caps-org', 6, 'org-1');
-- each cap decline wrote an outbox row naming the cap
SELECT kind, available, threshold, detail - 'period_start' AS detail,
	   (detail->>'period_start')::timestamptz = date_trunc('day', now(), 'UTC') AS this_day
  FROM wallet.outbox WHERE customer = 'caps-org' ORDER BY id;
-- setting it again replaces the amount and keeps what was spent
SELECT wallet_set_cap('caps-org', 'capusd', 12, 'day');
SELECT * FROM pg_temp.caps('caps-org');
SELECT * FROM pg_temp.debit('caps-org', 2, 'org-5');
-- a cap lowered below what was spent: nothing left, never negative
SELECT wallet_set_cap('caps-org', 'capusd', 5, 'day');
SELECT * FROM pg_temp.caps('caps-org');
SELECT * FROM pg_temp.debit('caps-org', 0.01, 'org-6');
-- cap 0: nothing may be spent, but free usage (amount 0) still passes
SELECT wallet_set_cap('caps-org', 'capusd', 0, 'day');
SELECT approved, reason, amount FROM wallet_authorize_debit('caps-org', 'caps.free', 1, 'org-free');
SELECT approved, reason, amount FROM wallet_authorize_debit('caps-org', 'caps.call', 1, 'org-call');
-- removed: the wallet has no cap, its counters are gone, debits pass
SELECT wallet_set_cap('caps-org', 'capusd', NULL, 'day');
SELECT wallet_set_cap('caps-org', 'capusd', NULL, 'day');	-- removing no cap: nothing happens
SELECT * FROM wallet_caps('caps-org');
SELECT a.caps FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id
 WHERE w.customer = 'caps-org' AND a.asset = 'capusd';
SELECT count(*) AS counters FROM wallet.cap_spend s JOIN wallet.wallet w ON w.id = s.wallet_id
 WHERE w.customer = 'caps-org';
SELECT * FROM pg_temp.debit('caps-org', 50, 'org-7');

------------------------------------------- several caps at once, per member
SELECT wallet_create('caps-team') > 0 AS created;
SELECT wallet_grant('caps-team', 'capusd', 1000) > 0 AS granted;
SELECT wallet_set_cap('caps-team', 'capusd', 25, 'hour');
SELECT wallet_set_cap('caps-team', 'capusd', 10, 'day', 'user');
SELECT wallet_set_cap('caps-team', 'capusd', 30, 'month');
SELECT * FROM pg_temp.caps('caps-team');
SELECT * FROM pg_temp.debit('caps-team', 6, 'team-1', '{"user": "alice"}');
-- alice's own daily cap stops her; the wallet's caps have room
SELECT * FROM pg_temp.debit('caps-team', 5, 'team-2', '{"user": "alice", "agent": "a1"}');
SELECT * FROM pg_temp.debit('caps-team', 4, 'team-3', '{"user": "alice"}');
-- other members have their own 10 each
SELECT * FROM pg_temp.debit('caps-team', 9, 'team-4', '{"user": "bob"}');
SELECT * FROM pg_temp.debit('caps-team', 6, 'team-5', '{"user": "carol"}');
-- dave has spent nothing, but the hour cap (25) is at 25
SELECT * FROM pg_temp.debit('caps-team', 1, 'team-6', '{"user": "dave"}');
SELECT * FROM pg_temp.caps('caps-team');
SELECT detail - 'period_start' AS detail FROM wallet.outbox WHERE customer = 'caps-team' ORDER BY id;
-- a wider hour cap: now the month cap (30) binds, for everyone
SELECT wallet_set_cap('caps-team', 'capusd', 100, 'hour');
SELECT * FROM pg_temp.debit('caps-team', 5, 'team-7', '{"user": "dave"}');
SELECT * FROM pg_temp.debit('caps-team', 1, 'team-8', '{"user": "erin"}');
SELECT detail->>'period' AS period, detail->>'cap' AS cap, detail->>'spent' AS spent
  FROM wallet.outbox WHERE customer = 'caps-team' ORDER BY id DESC LIMIT 1;

----------------------------- events without the dimension share one bucket
SELECT wallet_create('caps-shared') > 0 AS created;
SELECT wallet_grant('caps-shared', 'capusd', 1000) > 0 AS granted;
SELECT wallet_set_cap('caps-shared', 'capusd', 10, 'week', 'agent');
SELECT * FROM pg_temp.debit('caps-shared', 3, 'sh-1');
SELECT * FROM pg_temp.debit('caps-shared', 3, 'sh-2', '{"agent": null}');
SELECT * FROM pg_temp.debit('caps-shared', 3, 'sh-3', '{"agent": "", "user": "x"}');
SELECT * FROM pg_temp.debit('caps-shared', 3, 'sh-4', '{"user": "y"}');
-- a value is its text: 7 and "7" are one agent
SELECT * FROM pg_temp.debit('caps-shared', 6, 'sh-5', '{"agent": 7}');
SELECT * FROM pg_temp.debit('caps-shared', 6, 'sh-6', '{"agent": "7"}');
SELECT * FROM pg_temp.debit('caps-shared', 4, 'sh-7', '{"agent": "7"}');
SELECT * FROM pg_temp.caps('caps-shared');
SELECT extract(isodow FROM period_start AT TIME ZONE 'UTC') AS starts_on,
	   period_end - period_start AS length
  FROM wallet_caps('caps-shared') WHERE dim_value IS NULL;

------------------------------------ a rolled-back debit leaves no trace
SELECT wallet_create('caps-rb') > 0 AS created;
SELECT wallet_grant('caps-rb', 'capusd', 100) > 0 AS granted;
SELECT wallet_set_cap('caps-rb', 'capusd', 10, 'month', 'api_key');
SELECT * FROM pg_temp.debit('caps-rb', 6, 'rb-1', '{"api_key": "k1"}');
SAVEPOINT before;
SELECT * FROM pg_temp.debit('caps-rb', 4, 'rb-2', '{"api_key": "k1"}');
SELECT * FROM pg_temp.caps('caps-rb');
ROLLBACK TO SAVEPOINT before;
SELECT * FROM pg_temp.caps('caps-rb');
SELECT * FROM pg_temp.debit('caps-rb', 4, 'rb-3', '{"api_key": "k1"}');
SELECT * FROM pg_temp.debit('caps-rb', 0.01, 'rb-4', '{"api_key": "k1"}');
SELECT extract(day FROM period_start AT TIME ZONE 'UTC') AS starts_on_day,
	   period_end = (period_start AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC' AS one_month
  FROM wallet_caps('caps-rb') WHERE dim_value IS NULL;
-- spend caps decline before funds: a top-up would not help
SELECT * FROM pg_temp.debit('caps-rb', 500, 'rb-5', '{"api_key": "k1"}');
SELECT * FROM pg_temp.debit('caps-rb', 500, 'rb-6', '{"api_key": "k2"}');

------------------------------------------------- captures and authorizations
SELECT wallet_create('caps-agent') > 0 AS created;
SELECT wallet_grant('caps-agent', 'capusd', 100) > 0 AS granted;
SELECT wallet_set_cap('caps-agent', 'capusd', 10, 'day', 'agent');
SELECT approved, reason, amount, balance
  FROM wallet_authorize_debit('caps-agent', 'caps.call', 5, 'ag-1', '{"agent": "planner"}');
-- a hold reserves room under the caps of its dimensions (1.1): the planner's 5 left
SELECT approved, reason, amount, balance FROM wallet_hold('caps-agent', 'capusd', 5, 'ag-hold', '15 minutes', '{"agent": "planner"}') \gset hold_
SELECT :'hold_approved' AS approved, :'hold_amount' AS amount, :'hold_balance' AS balance;
SELECT id AS hold_id FROM wallet.hold WHERE idempotency_key = 'ag-hold' \gset
-- capturing 7 for the planner would pass its 10 (the 2 above the hold is checked): declined, the hold stays open
SELECT approved, reason, hold_id = :hold_id AS same_hold, amount, balance
  FROM wallet_capture(:hold_id, 'caps.call', 7, '{"agent": "planner"}');
SELECT status FROM wallet.hold WHERE id = :hold_id;
SELECT approved, reason, amount, balance
  FROM wallet_capture(:hold_id, 'caps.call', 5, '{"agent": "planner"}');
SELECT status FROM wallet.hold WHERE id = :hold_id;
-- an event dated two hours back counts in the period of its recording (now)
SELECT approved, reason, amount
  FROM wallet_authorize_debit('caps-agent', 'caps.call', 3, 'ag-2', '{"agent": "coder"}',
							  now() - interval '2 hours');
SELECT * FROM pg_temp.caps('caps-agent');
SELECT detail - 'period_start' AS detail FROM wallet.outbox WHERE customer = 'caps-agent' ORDER BY id;

------------------------ period rollover, and refunds to the debit's period
SELECT wallet_create('caps-roll') > 0 AS created;
SELECT wallet_grant('caps-roll', 'capusd', 100) > 0 AS granted;
SELECT wallet_set_cap('caps-roll', 'capusd', 10, 'hour');
SELECT wallet_set_cap('caps-roll', 'capusd', 10, 'hour', 'user');
SELECT * FROM pg_temp.debit('caps-roll', 6, 'roll-1', '{"user": "ann"}');
SELECT * FROM pg_temp.debit('caps-roll', 8, 'roll-2', '{"user": "ann"}');
-- the hour ends: move roll-1 and its counters one hour back, as time would
UPDATE wallet.cap_spend s SET period_start = period_start - interval '1 hour'
  FROM wallet.wallet w WHERE w.id = s.wallet_id AND w.customer = 'caps-roll';
-- (events are immutable: only a replica-mode session, as here, can move one in time)
SET session_replication_role = replica;
UPDATE wallet.event e SET recorded_at = recorded_at - interval '1 hour'
 WHERE e.idempotency_key = 'roll-1';
RESET session_replication_role;
UPDATE wallet.cap c SET created_at = c.created_at - interval '1 hour'
  FROM wallet.wallet w WHERE w.id = c.wallet_id AND w.customer = 'caps-roll';
-- a new hour, new counters: 8 fits now
SELECT * FROM pg_temp.caps('caps-roll');
SELECT * FROM pg_temp.debit('caps-roll', 8, 'roll-2', '{"user": "ann"}');
SELECT * FROM pg_temp.debit('caps-roll', 3, 'roll-3', '{"user": "ann"}');
SELECT * FROM pg_temp.caps('caps-roll');
-- the counters of both hours
CREATE TEMP VIEW roll_counters AS
SELECT CASE s.period_start WHEN date_trunc('hour', now(), 'UTC') THEN 'this hour'
		   WHEN date_trunc('hour', now(), 'UTC') - interval '1 hour' THEN 'last hour' END AS hour,
	   s.dimension, s.dim_value, s.spent
  FROM wallet.cap_spend s JOIN wallet.wallet w ON w.id = s.wallet_id
 WHERE w.customer = 'caps-roll' ORDER BY 1, 2, 3;
SELECT * FROM roll_counters;
-- a refund of 4 of roll-1 gives spend back to last hour, not this one
SELECT id AS roll1 FROM wallet.event WHERE idempotency_key = 'roll-1' \gset
SELECT id AS roll2 FROM wallet.event WHERE idempotency_key = 'roll-2' \gset
SELECT wallet._cap_giveback(:roll1, 400);
SELECT * FROM roll_counters;
-- a refund of 2 of roll-2 makes room this hour
SELECT wallet._cap_giveback(:roll2, 200);
SELECT * FROM roll_counters;
SELECT * FROM pg_temp.debit('caps-roll', 3, 'roll-3', '{"user": "ann"}');
-- never below 0; 0 gives nothing back
SELECT wallet._cap_giveback(:roll1, 10000);
SELECT wallet._cap_giveback(:roll2, 0);
SELECT * FROM roll_counters;
-- the counters of an hour that has ended can go (wallet_sweep); this hour's stay
SELECT wallet._cap_prune(date_trunc('hour', now(), 'UTC') - interval '1 second') >= 0 AS pruned;
SELECT * FROM roll_counters;
SELECT wallet._cap_prune() >= 2 AS pruned;
SELECT * FROM roll_counters;
COMMIT;
SELECT wallet._cap_giveback(:roll1, -1);	-- 22023

-- a cap set after a debit was recorded gets nothing back from its refund
BEGIN;
SELECT wallet_create('caps-late') > 0 AS created;
SELECT wallet_grant('caps-late', 'capusd', 100) > 0 AS granted;
SELECT * FROM pg_temp.debit('caps-late', 5, 'late-1');
SET session_replication_role = replica;
UPDATE wallet.event SET recorded_at = recorded_at - interval '1 second' WHERE idempotency_key = 'late-1';
RESET session_replication_role;
SELECT wallet_set_cap('caps-late', 'capusd', 10, 'month');
SELECT * FROM pg_temp.debit('caps-late', 4, 'late-2');
SELECT id AS late1 FROM wallet.event WHERE idempotency_key = 'late-1' \gset
SELECT wallet._cap_giveback(:late1, 300);
SELECT * FROM pg_temp.caps('caps-late');
COMMIT;

--------------------------------------------------------------- max_holds
SELECT wallet_create('caps-jobs') > 0 AS created;
SELECT wallet_grant('caps-jobs', 'capusd', 100) > 0 AS granted;
SELECT wallet_set_limit('caps-jobs', 'capusd', max_holds => -1);	-- 22023
SELECT wallet_set_limit('caps-jobs', 'capusd', max_holds => 2);
CREATE FUNCTION pg_temp.hold(key text, amount numeric, ttl interval DEFAULT '1 hour')
RETURNS TABLE (approved boolean, reason text, amount numeric, balance numeric, hold_id bigint)
LANGUAGE sql AS $$
	SELECT r.approved, r.reason, r.amount, r.balance, r.hold_id
	  FROM wallet_hold('caps-jobs', 'capusd', amount, key, ttl) r
$$;
BEGIN;
SELECT approved, reason, amount, balance FROM pg_temp.hold('job-a', 10);
SELECT approved, reason, amount, balance FROM pg_temp.hold('job-b', 20, '1 second');
-- a third concurrent job: declined, whatever the balance
SELECT approved, reason, amount, balance FROM pg_temp.hold('job-c', 5);
COMMIT;
SELECT count(*) AS declines_in_outbox FROM wallet.outbox WHERE customer = 'caps-jobs';
SELECT pg_sleep(1.2);
-- job-b's ttl has passed: its slot (and its 20) are free at once, before any sweep
SELECT approved, reason, amount, balance FROM pg_temp.hold('job-c', 5);
SELECT a.holds_open, a.held FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id
 WHERE w.customer = 'caps-jobs' AND a.asset = 'capusd';
SELECT approved, reason FROM pg_temp.hold('job-d', 5);
-- releasing or capturing a hold frees its slot
SELECT approved, amount, balance FROM wallet_release((SELECT id FROM wallet.hold WHERE idempotency_key = 'job-a'));
SELECT approved, reason, amount, balance FROM pg_temp.hold('job-d', 5);
SELECT approved, reason FROM pg_temp.hold('job-e', 5);
SELECT approved, amount, balance
  FROM wallet_capture((SELECT id FROM wallet.hold WHERE idempotency_key = 'job-c'), 'caps.call', 2);
SELECT approved, reason, amount, balance FROM pg_temp.hold('job-e', 5);
-- a replay of an approved hold is not a new hold
SELECT approved, reason, amount FROM pg_temp.hold('job-d', 5);
-- 0: no holds at all; null: no limit
SELECT wallet_set_limit('caps-jobs', 'capusd', max_holds => 0);
SELECT approved, reason FROM pg_temp.hold('job-f', 1);
SELECT wallet_set_limit('caps-jobs', 'capusd', max_holds => NULL);
SELECT approved, reason FROM pg_temp.hold('job-f', 1);
SELECT approved, reason FROM pg_temp.hold('job-g', 1);
SELECT approved, reason FROM pg_temp.hold('job-h', 1);

SELECT * FROM wallet_verify();
