-- The plan-change window (1.1): a plan assignment takes effect at the later of
-- its effective_at and its commit, as a price version does (coherence.sql;
-- the concurrent cases are test/isolation/specs/plan_window.spec).
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('USD', 2, 1);
SELECT wallet_create('pw-a') > 0 AS created;
SELECT wallet_create('pw-b') > 0 AS created;
SELECT wallet_grant('pw-a', 'USD', 100) > 0 AS granted;
SELECT wallet_set_price('pw', 'USD', '{"model": "flat", "price": "1"}', now() - interval '1 day') > 0 AS set;
SELECT wallet_set_price('pw', 'USD', '{"model": "flat", "price": "5"}', now() - interval '1 day', plan => 'gold') > 0 AS set;

-- assigned for now: effective from its commit, not its transaction's start
BEGIN;
SELECT wallet_assign_plan('pw-a', 'gold');
SELECT now() AS xact_start \gset
-- the transaction's own events see it, as they see every change of their own
SELECT amount AS own_event FROM wallet_quote('pw-a', 'pw', 1);
COMMIT;
SELECT effective_at > :'xact_start' AS from_its_commit FROM wallet.plan_assignment;
SELECT amount AS at_xact_start FROM wallet_quote('pw-a', 'pw', 1, occurred_at => :'xact_start');
SELECT amount AS now FROM wallet_quote('pw-a', 'pw', 1);

-- backdated on purpose: keeps its effective_at; one still ahead at the commit too
BEGIN;
SELECT wallet_assign_plan('pw-b', 'gold', now() - interval '1 hour');
SELECT wallet_assign_plan('pw-b', NULL, now() + interval '1 hour');
SELECT now() AS xact_start \gset
COMMIT;
SELECT plan, effective_at - :'xact_start' AS after_xact_start FROM wallet.plan_assignment pa
  JOIN wallet.wallet w ON w.id = pa.wallet_id WHERE w.customer = 'pw-b' ORDER BY effective_at;

-- a plan assigned to take effect at its commit cannot be prepared (it would
-- take effect at PREPARE, while events priced until COMMIT PREPARED used the
-- plan before); one set for a later time, or backdated, can
BEGIN;
SELECT wallet_assign_plan('pw-b', 'silver');
PREPARE TRANSACTION 'pw_plan_now';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'pw_plan_now';
ROLLBACK PREPARED 'pw_plan_now';		-- 42704: nothing was prepared
BEGIN;
SELECT wallet_assign_plan('pw-b', 'silver', now() + interval '2 hours');
PREPARE TRANSACTION 'pw_plan_later';
COMMIT PREPARED 'pw_plan_later';
SELECT count(*) AS assignments FROM wallet.plan_assignment pa
  JOIN wallet.wallet w ON w.id = pa.wallet_id WHERE w.customer = 'pw-b';
-- after the refusal the next transaction prepares as before
BEGIN;
SELECT wallet_assign_plan('pw-b', 'silver', now() - interval '2 hours');
PREPARE TRANSACTION 'pw_plan_back';
COMMIT PREPARED 'pw_plan_back';
SELECT count(*) AS assignments FROM wallet.plan_assignment pa
  JOIN wallet.wallet w ON w.id = pa.wallet_id WHERE w.customer = 'pw-b';
