-- The top-up loop (#18): one limit at a time and reading limits back,
-- several alerts with recovered, declined rows at most once per interval,
-- claiming and pruning the outbox, recharges to a target.
\set VERBOSITY sqlstate
\pset null '-'
SET client_min_messages = warning;
-- a fresh extension: earlier files' outbox rows do not count here
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('tc', 0, 0.01);
SELECT wallet_create_asset('td', 2, 1);
SELECT count(wallet_create(c)) FROM unnest(array['lim', 'al', 'above', 'dec', 'rc', 'rc2', 'od', 'up', 'capd']) c;

-- outbox rows of a customer, newest last, without ids or times
CREATE FUNCTION pg_temp.outbox(c text) RETURNS TABLE (kind text, available numeric, threshold numeric, detail jsonb)
LANGUAGE sql AS $$
	SELECT o.kind, o.available, o.threshold, o.detail - 'external_ref' - 'month'
	  FROM wallet.outbox o WHERE o.customer = c ORDER BY o.id
$$;

---------------------------------------------------------------- one limit at a time
SELECT wallet_set_limit('lim', 'tc', overdraft => 5, max_holds => 3);
-- an alert leaves the overdraft and the hold cap alone (1.0 reset the overdraft to 0)
SELECT wallet_set_alert('lim', 'tc', 10);
SELECT * FROM wallet_limits('lim');
SELECT wallet_set_overdraft('lim', 'tc', 7);
SELECT wallet_set_max_holds('lim', 'tc', 2);
SELECT * FROM wallet_limits('lim');
SELECT wallet_set_max_holds('lim', 'tc', NULL);
SELECT overdraft_limit, max_holds FROM wallet_limits('lim');
SELECT wallet_set_overdraft('lim', 'tc', -1);
SELECT wallet_set_overdraft('lim', 'tc', NULL);
SELECT wallet_set_overdraft('lim', 'tc', 1.5);
SELECT wallet_set_overdraft('lim', 'nope', 1);
SELECT wallet_set_overdraft('nobody', 'tc', 1);
SELECT wallet_set_max_holds('lim', 'tc', -1);
-- wallet_set_limit keeps its 1.0 meaning: all three (its low_balance is one alert among the others)
SELECT wallet_set_limit('lim', 'tc', low_balance => 3);
SELECT * FROM wallet_limits('lim');
SELECT wallet_set_limit('lim', 'tc', low_balance => 4);
SELECT alerts FROM wallet_limits('lim');
SELECT wallet_set_limit('lim', 'tc');
SELECT alerts FROM wallet_limits('lim');
-- the overdraft in use bounds the limit
SELECT wallet_set_overdraft('od', 'td', 10);
SELECT approved, balance FROM wallet_debit('od', 'td', 4, 'od1');
SELECT wallet_set_overdraft('od', 'td', 3.99);
SELECT wallet_set_overdraft('od', 'td', 4);
-- the application reads limits (and nothing else of the account)
SET ROLE wallet_app;
SELECT asset, overdraft_limit FROM wallet_limits('lim');
SELECT * FROM wallet.account;
SELECT wallet_set_overdraft('lim', 'tc', 1);
RESET ROLE;

---------------------------------------------------------------- alerts
SELECT wallet_grant('al', 'tc', 100) > 0 AS granted;
SELECT wallet_set_alert('al', 'tc', 50);
SELECT wallet_set_alert('al', 'tc', 20);
SELECT alerts FROM wallet_limits('al');
SELECT balance FROM wallet_debit('al', 'tc', 60, 'al1');	-- 40: below 50
SELECT balance FROM wallet_debit('al', 'tc', 5, 'al2');		-- 35: nothing new
SELECT balance FROM wallet_debit('al', 'tc', 30, 'al3');	-- 5: below 20
-- a top-up that stays below 50 recovers 20 only
SELECT wallet_grant('al', 'tc', 20) > 0 AS granted;			-- 25
SELECT balance FROM wallet_debit('al', 'tc', 10, 'al4');	-- 15: below 20 again
SELECT wallet_grant('al', 'tc', 45) > 0 AS granted;			-- 60: both recover
-- set while already below: at once
SELECT wallet_set_alert('al', 'tc', 80);
-- disabled: no row, and it is gone from the limits
SELECT wallet_set_alert('al', 'tc', 80, false);
SELECT alerts FROM wallet_limits('al');
-- a hold crosses too
SELECT approved, balance FROM wallet_hold('al', 'tc', 45, 'alh1');	-- 15
SELECT * FROM pg_temp.outbox('al');
SELECT wallet_set_alert('al', 'tc', NULL);
SELECT wallet_set_alert('al', 'tc', 1.5);
SELECT wallet_set_alert('al', 'nope', 1);

-- a low_balance threshold set above the balance fires at once (1.0: never)
SELECT wallet_grant('above', 'tc', 5) > 0 AS granted;
SELECT wallet_set_limit('above', 'tc', low_balance => 10);
SELECT balance FROM wallet_debit('above', 'tc', 1, 'ab1');
SELECT * FROM pg_temp.outbox('above');

---------------------------------------------------------------- declined, at most once per interval
SELECT approved, reason FROM generate_series(1, 5) i, wallet_debit('dec', 'tc', 1, 'd' || i);
SELECT kind, detail->>'reason' AS reason, count(*) FROM wallet.outbox WHERE customer = 'dec' GROUP BY 1, 2;
SELECT approved, reason FROM wallet_hold('dec', 'tc', 1, 'dh1');
SELECT count(*) FROM wallet.outbox WHERE customer = 'dec';
SET wallet.decline_notice_interval = 0;
SELECT approved, reason FROM generate_series(1, 3) i, wallet_debit('dec', 'tc', 1, 'e' || i);
SELECT count(*) FROM wallet.outbox WHERE customer = 'dec';
RESET wallet.decline_notice_interval;
SET wallet.decline_notice_interval = 'soon';
-- a spend cap's declines: one row per reason too (one transaction: one UTC day)
BEGIN;
SELECT wallet_grant('capd', 'tc', 100) > 0 AS granted;
SELECT wallet_set_cap('capd', 'tc', 5, 'day');
SELECT approved, reason FROM generate_series(1, 4) i, wallet_debit('capd', 'tc', 2, 'cd' || i);
SELECT approved, reason FROM generate_series(1, 2) i, wallet_hold('capd', 'tc', 500, 'cd-hold' || i);
SELECT detail->>'reason' AS reason, count(*) FROM wallet.outbox WHERE customer = 'capd' GROUP BY 1 ORDER BY 1;
COMMIT;

---------------------------------------------------------------- claim and ack
SET ROLE wallet_app;
SELECT kind, count(*) FROM wallet_outbox_claim(100, '{low_balance,recovered}') WHERE customer = 'al' GROUP BY 1 ORDER BY 1;
SELECT count(*) FROM wallet_outbox_claim(2);
-- only this file's wallets: earlier files' declines (ingest's) stay in the outbox
SELECT count(*) FROM wallet_outbox_claim(1000, '{declined}') WHERE customer IN ('dec', 'capd');
SELECT count(*) FROM wallet_outbox_claim(0);
SELECT count(wallet_outbox_ack(id)) FROM wallet_outbox_claim(1000) WHERE customer IN ('al', 'dec');
SELECT count(*) FROM wallet_outbox_claim() WHERE customer IN ('al', 'dec');
RESET ROLE;
SET ROLE wallet_admin;
SELECT count(*) > 0 AS claims FROM wallet_outbox_claim();
RESET ROLE;

---------------------------------------------------------------- the sweep prunes acked rows
UPDATE wallet.outbox SET acked_at = now() - interval '31 days' WHERE customer = 'al';
SELECT * FROM wallet_sweep() WHERE action = 'pruned_outbox';
SELECT count(*) FROM wallet.outbox WHERE customer = 'al';
SELECT count(*) FROM wallet.outbox WHERE customer = 'dec';
SET wallet.outbox_retention = 0;
SELECT * FROM wallet_sweep() WHERE action = 'pruned_outbox';
RESET wallet.outbox_retention;

---------------------------------------------------------------- recharge to a target
SELECT wallet_grant('rc', 'td', 100) > 0 AS granted;
SELECT wallet_set_recharge('rc', 'td', 30, 100, 150);
SELECT recharge_threshold, recharge_target, recharge_max_per_month FROM wallet_limits('rc');
SELECT balance FROM wallet_debit('rc', 'td', 80, 'r1');		-- 20: recharge 80
SELECT balance FROM wallet_debit('rc', 'td', 5, 'r2');		-- 15: one open at a time
SELECT detail->>'external_ref' AS ref, (detail->>'amount')::numeric AS amount
  FROM wallet.outbox WHERE customer = 'rc' AND kind = 'recharge' \gset
SELECT :'ref' LIKE 'wallet-recharge-%' AS ref_ok, :amount;
-- the listener charges the card and grants with the ref: the recharge closes
SELECT wallet_grant('rc', 'td', :amount, external_ref => :'ref') > 0 AS granted;	-- 95
SELECT wallet_grant('rc', 'td', :amount, external_ref => :'ref') > 0 AS granted;	-- replay: nothing new
SELECT wallet_balance('rc', 'td');
-- 80 requested this month: 75 more would pass 150
SELECT balance FROM wallet_debit('rc', 'td', 70, 'r3');		-- 25: recharge_limit
SELECT balance FROM wallet_debit('rc', 'td', 1, 'r4');		-- 24: said once
SELECT * FROM pg_temp.outbox('rc');
-- a new rule lifts the limit and asks at once
SELECT wallet_set_recharge('rc', 'td', 30, 100);
SELECT kind, available, detail->>'amount' AS amount FROM wallet.outbox WHERE customer = 'rc' ORDER BY id DESC LIMIT 1;
-- removed
SELECT wallet_set_recharge('rc', 'td', NULL, NULL);
SELECT recharge_threshold FROM wallet_limits('rc');
SELECT wallet_set_recharge('rc', 'td', 30, 30);
SELECT wallet_set_recharge('rc', 'td', 30, 40, 0);
SELECT wallet_set_recharge('rc', 'td', 30, NULL);

-- acked without a grant (the card failed): closed, the next debit below asks again
SELECT wallet_grant('rc2', 'tc', 50) > 0 AS granted;
SELECT wallet_set_recharge('rc2', 'tc', 10, 50);
SELECT balance FROM wallet_debit('rc2', 'tc', 45, 'q1');	-- 5: recharge 45
SELECT balance FROM wallet_debit('rc2', 'tc', 1, 'q2');		-- 4: open
SELECT wallet_outbox_ack(id) FROM wallet.outbox WHERE customer = 'rc2' AND kind = 'recharge';
SELECT balance FROM wallet_debit('rc2', 'tc', 1, 'q3');		-- 3: recharge 47
SELECT kind, available, detail->>'amount' AS amount FROM wallet.outbox WHERE customer = 'rc2' ORDER BY id;

---------------------------------------------------------------- what raises a balance recovers
SELECT wallet_grant('up', 'tc', 100) > 0 AS granted;
SELECT wallet_set_alert('up', 'tc', 50);
SELECT approved, balance, hold_id AS up_hold FROM wallet_hold('up', 'tc', 60, 'uph1') \gset
SELECT (wallet_release(:up_hold)).approved AS released;			-- 100: recovered
SELECT balance, event_id AS up_event FROM wallet_debit('up', 'tc', 70, 'upd1') \gset
-- as wallet_admin, committed
SET ROLE wallet_admin;
BEGIN;
SELECT approved, balance FROM wallet_refund(:up_event, 40);		-- 70: recovered
COMMIT;
RESET ROLE;
SELECT count(*) FROM wallet.outbox WHERE customer = 'up' AND kind = 'recovered';
SELECT wallet_balance('up', 'tc');
SELECT * FROM pg_temp.outbox('up');
-- a capture below its hold gives the rest back, as a release does: recovered, and the next
-- crossing is reported again
SELECT wallet_create('up-cap') > 0 AS created, wallet_grant('up-cap', 'tc', 100) > 0 AS granted;
SELECT wallet_set_price('tc.call', 'tc', '{"model": "per_unit", "unit_price": "1"}', now() - interval '1 minute') > 0 AS priced;
SELECT wallet_set_alert('up-cap', 'tc', 50);
-- 15: low_balance
SELECT balance, hold_id AS upc_hold FROM wallet_hold('up-cap', 'tc', 85, 'upc-h') \gset
SELECT amount, balance FROM wallet_capture(:upc_hold, 'tc.call', 10);			-- 90: recovered
SELECT balance FROM wallet_debit('up-cap', 'tc', 75, 'upc-d');					-- 15: low_balance
SELECT * FROM pg_temp.outbox('up-cap');

---------------------------------------------------------------- a refund asks for no recharge
-- the recharge the debit asked for failed (acked without its grant), the grant it drew last is
-- voided (a chargeback): the refund gives 5 to a new grant, then 90 back to the first. It is
-- one change of the balance, from 0 to 95, above the threshold: no recharge
SELECT wallet_create('rf') > 0 AS created;
SELECT wallet_grant('rf', 'tc', 90, priority => 1) > 0 AS granted;
SELECT wallet_grant('rf', 'tc', 10, priority => 2) AS rf_g2 \gset
SELECT wallet_set_recharge('rf', 'tc', 30, 100);
-- 5: recharge 95
SELECT balance, event_id AS rf_event FROM wallet_debit('rf', 'tc', 95, 'rf-d') \gset
SELECT count(wallet_outbox_ack(id)) AS acked FROM wallet.outbox WHERE customer = 'rf' AND kind = 'recharge';
SELECT wallet_void_grant(:rf_g2, 'chargeback') AS voided;
SELECT balance FROM wallet_refund(:rf_event, reason => 'job failed');				-- 95
SELECT kind, available, detail->>'amount' AS amount FROM wallet.outbox WHERE customer = 'rf' ORDER BY id;

SELECT * FROM wallet_verify();

---------------------------------------------------------------- upgrading a 1.0 database
\set origdb :DBNAME
DROP DATABASE IF EXISTS wallet_topup_upgrade;
CREATE DATABASE wallet_topup_upgrade;
\c wallet_topup_upgrade
SET client_min_messages = warning;
CREATE EXTENSION wallet VERSION '1.0';
SELECT wallet_create_asset('tc', 0, 0.01);
SELECT count(wallet_create(c)) FROM unnest(array['u1', 'u2']) c;
SELECT wallet_grant('u1', 'tc', 100) > 0 AS granted, wallet_grant('u2', 'tc', 10) > 0 AS granted;
SELECT wallet_set_limit('u1', 'tc', low_balance => 50), wallet_set_limit('u2', 'tc', low_balance => 50);
SELECT balance FROM wallet_debit('u1', 'tc', 60, 'u1a');		-- 40: 1.0 writes its row
SELECT customer, kind, available, threshold FROM wallet.outbox ORDER BY id;
ALTER EXTENSION wallet UPDATE;
-- both alerts kept, both known to be below: nothing more until they recover
SELECT customer, threshold, below, from_limit FROM wallet.alert al JOIN wallet.wallet w ON w.id = al.wallet_id ORDER BY 1;
SELECT alerts FROM wallet_limits('u1');
SELECT balance FROM wallet_debit('u1', 'tc', 1, 'u1b');
SELECT wallet_grant('u1', 'tc', 20) > 0 AS granted;				-- 59: recovered
SELECT balance FROM wallet_debit('u1', 'tc', 10, 'u1c');		-- 49: low_balance
SELECT customer, kind, available, threshold FROM wallet.outbox ORDER BY id;
SELECT * FROM wallet_verify();
\c :origdb
DROP DATABASE wallet_topup_upgrade;
