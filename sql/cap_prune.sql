-- wallet._cap_prune (wallet_sweep): the spend counters of periods that ended
-- before the oldest running transaction began are deleted;
-- the others stay, even when as_of is later: a transaction that began in a
-- period debits into that period's counter however long it runs (this one's
-- own included).  When that horizon cannot be known (a backend with
-- track_activities off) nothing is pruned.
SET client_min_messages = warning;
SELECT wallet_create_asset('cpr', 0);
SELECT wallet_create('cpr-a') > 0 AS created;
SELECT wallet_grant('cpr-a', 'cpr', 1000) > 0 AS granted;
SELECT wallet_set_cap('cpr-a', 'cpr', 50, 'hour');
SELECT wallet_set_cap('cpr-a', 'cpr', 500, 'month');
SELECT approved FROM wallet_debit('cpr-a', 'cpr', 20, 'p-1');
-- counters of periods long over
CREATE FUNCTION pg_temp.old_counters() RETURNS void LANGUAGE sql AS $$
	INSERT INTO wallet.cap_spend (wallet_id, asset, period, dimension, dim_value, period_start, spent)
	SELECT w.id, 'cpr', p.period, '', '', '2020-01-01 00:00+00', 5
	  FROM wallet.wallet w, (VALUES ('hour'), ('month')) p(period) WHERE w.customer = 'cpr-a'
$$;
SELECT pg_temp.old_counters();
SELECT count(*) AS counters FROM wallet.cap_spend;
-- as of now: the two of 2020 go, this hour's and this month's stay
SELECT wallet._cap_prune() AS pruned;
SELECT period, spent FROM wallet.cap_spend ORDER BY period;
-- as of later than now: this transaction began in this hour and month, and
-- may still debit into them: they stay
SELECT wallet._cap_prune(now() + interval '2 months') AS pruned;
SELECT period, spent FROM wallet.cap_spend ORDER BY period;
-- a backend whose transaction cannot be seen: nothing is pruned
SELECT pg_temp.old_counters();
SET track_activities = off;
SELECT wallet._cap_prune() AS pruned_unseen;
RESET track_activities;
SELECT wallet._cap_prune() AS pruned;
SELECT count(*) AS counters FROM wallet.cap_spend;
SELECT * FROM wallet_verify();
