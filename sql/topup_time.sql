-- Alerts and recharges after value or a month came back by time alone: a
-- recurring grant's reset, an expired hold, a new UTC month after a
-- recharge_limit.  No call raised the balance, yet the next debit or hold that
-- sees it writes what docs/notifications.md says (recovered, then a new
-- low_balance; a recharge in the new month).
\set VERBOSITY sqlstate
\pset null '-'
SET client_min_messages = warning;
-- a fresh extension: earlier files' outbox rows do not count here
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('at', 0);
SELECT count(wallet_create(c)) FROM unnest(array['reset', 'held', 'capt', 'both', 'deep', 'batch', 'month', 'quiet']) c;
SELECT wallet_set_price('at.call', 'at', '{"model": "per_unit", "unit_price": "1"}',
						effective_at => now() - interval '1 day') > 0 AS priced;

-- outbox rows of a customer, oldest first, without ids or times
CREATE FUNCTION pg_temp.outbox(c text) RETURNS TABLE (kind text, available numeric, threshold numeric, detail jsonb)
LANGUAGE sql AS $$
	SELECT o.kind, o.available, o.threshold, o.detail - 'external_ref' - 'month'
	  FROM wallet.outbox o WHERE o.customer = c ORDER BY o.id
$$;

---------------------------------------------------------------- a recurring allowance resets
-- 100 every 3 seconds, the period started 2 seconds ago: it resets in 1 second
SELECT wallet_grant('reset', 'at', 100, category => 'bundled', recurrence => '3 seconds',
					effective_at => now() - interval '2 seconds') > 0 AS granted;
SELECT wallet_set_alert('reset', 'at', 50);
SELECT balance FROM wallet_debit('reset', 'at', 60, 'r1');		-- 40: low_balance
SELECT pg_sleep(1.2);											-- the reset: 100
SELECT balance FROM wallet_debit('reset', 'at', 10, 'r2');		-- 90: recovered (at 100)
SELECT balance FROM wallet_debit('reset', 'at', 60, 'r3');		-- 30: low_balance again
SELECT * FROM pg_temp.outbox('reset');

---------------------------------------------------------------- an expired hold gives value back
SELECT wallet_grant('held', 'at', 100) > 0 AS granted;
SELECT wallet_set_alert('held', 'at', 50);
SELECT balance FROM wallet_hold('held', 'at', 60, 'h1', ttl => '0.5 second');	-- 40: low_balance
SELECT pg_sleep(0.7);															-- expired: 100
-- 100 -> 30 in one debit: the recovery and the new crossing, in that order
SELECT balance FROM wallet_debit('held', 'at', 70, 'd1');
SELECT * FROM pg_temp.outbox('held');
-- below and staying below: nothing more
SELECT balance FROM wallet_debit('held', 'at', 5, 'd2');
SELECT count(*) FROM wallet.outbox WHERE customer = 'held';

-- a hold notices it as a debit does
SELECT wallet_grant('capt', 'at', 100) > 0 AS granted;
SELECT wallet_set_alert('capt', 'at', 50);
SELECT balance FROM wallet_hold('capt', 'at', 60, 'c0', ttl => '0.5 second');	-- 40: low_balance
SELECT pg_sleep(0.7);															-- expired: 100
SELECT balance FROM wallet_hold('capt', 'at', 20, 'c1');						-- 80: recovered
SELECT balance FROM wallet_hold('capt', 'at', 40, 'c2');						-- 40: low_balance
SELECT * FROM pg_temp.outbox('capt');

-- several alerts: those back at or above recover, one still below stays quiet
SELECT wallet_grant('both', 'at', 100) > 0 AS granted;
SELECT wallet_set_alert('both', 'at', 50);
SELECT wallet_set_alert('both', 'at', 20);
SELECT balance FROM wallet_hold('both', 'at', 25, 'b0', ttl => '0.5 second');	-- 75
SELECT balance FROM wallet_debit('both', 'at', 65, 'b1');						-- 10: below both
SELECT pg_sleep(0.7);															-- 35: 20 is back, 50 is not
SELECT balance FROM wallet_debit('both', 'at', 10, 'b2');						-- 25: 20 recovered
SELECT balance FROM wallet_debit('both', 'at', 10, 'b3');						-- 15: 20 low again
SELECT * FROM pg_temp.outbox('both');
SELECT threshold, below FROM wallet.alert al JOIN wallet.wallet w ON w.id = al.wallet_id
 WHERE w.customer = 'both' ORDER BY threshold;

-- came back only part of the way: an alert still below writes nothing
SELECT wallet_grant('deep', 'at', 100) > 0 AS granted;
SELECT wallet_set_alert('deep', 'at', 50);
SELECT balance FROM wallet_hold('deep', 'at', 30, 'x0', ttl => '0.5 second');	-- 70
SELECT balance FROM wallet_debit('deep', 'at', 60, 'x1');						-- 10: low_balance
SELECT pg_sleep(0.7);															-- 40: still below 50
SELECT balance FROM wallet_debit('deep', 'at', 5, 'x2');						-- 35
SELECT * FROM pg_temp.outbox('deep');

-- a batch: one balance row locked once for all its debits; the first one
-- notices the return, the next ones judge by the levels it left
SELECT wallet_grant('batch', 'at', 100) > 0 AS granted;
SELECT wallet_set_alert('batch', 'at', 50);
SELECT balance FROM wallet_hold('batch', 'at', 60, 'i0', ttl => '0.5 second');	-- 40: low_balance
SELECT pg_sleep(0.7);															-- expired: 100
SELECT idx, approved, balance FROM wallet_ingest($$[
	{"customer": "batch", "meter": "at.call", "quantity": 10, "idempotency_key": "i1"},
	{"customer": "batch", "meter": "at.call", "quantity": 50, "idempotency_key": "i2"},
	{"customer": "batch", "meter": "at.call", "quantity": 5, "idempotency_key": "i3"}]$$);
SELECT * FROM pg_temp.outbox('batch');

---------------------------------------------------------------- the month after a recharge_limit
SELECT wallet_grant('month', 'at', 100) > 0 AS granted;
SELECT wallet_set_recharge('month', 'at', 30, 100, max_per_month => 150);
SELECT balance FROM wallet_debit('month', 'at', 80, 'm1');		-- 20: recharge of 80
SELECT wallet_grant('month', 'at', 80, external_ref => (SELECT detail->>'external_ref' FROM wallet.outbox
	 WHERE customer = 'month' AND kind = 'recharge')) > 0 AS landed;
SELECT balance FROM wallet_debit('month', 'at', 75, 'm2');		-- 25: 80 + 75 > 150: recharge_limit
SELECT balance FROM wallet_debit('month', 'at', 1, 'm3');		-- 24: the same month: nothing
SELECT * FROM pg_temp.outbox('month');
-- held back until the next UTC month
SELECT low_balance, alert_until = (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
	   AS next_month
  FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id WHERE w.customer = 'month';
-- time travel: the recharge_limit was written last month.  Every time the
-- wallet keeps of its recharge goes one UTC month back (the month columns
-- hold the first instant of a UTC month).
CREATE FUNCTION pg_temp.month_back(t timestamptz) RETURNS timestamptz
LANGUAGE sql AS $$ SELECT ((t AT TIME ZONE 'UTC') - interval '1 month') AT TIME ZONE 'UTC' $$;
UPDATE wallet.recharge r SET limited_month = pg_temp.month_back(r.limited_month),
	   month_start = pg_temp.month_back(r.month_start), landed_at = pg_temp.month_back(r.landed_at)
  FROM wallet.wallet w WHERE w.id = r.wallet_id AND w.customer = 'month';
UPDATE wallet.outbox SET at = pg_temp.month_back(at) WHERE customer = 'month';
-- (and whatever the balance row keeps of the month, when it keeps anything)
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'wallet.account'::regclass
				AND attname = 'alert_until' AND NOT attisdropped) THEN
		EXECUTE $u$UPDATE wallet.account a SET alert_until = pg_temp.month_back(a.alert_until)
					 FROM wallet.wallet w WHERE w.id = a.wallet_id AND w.customer = 'month'$u$;
	END IF;
END $$;
-- the new month: a debit below the threshold, no recharge open: a recharge row
SELECT balance FROM wallet_debit('month', 'at', 4, 'm4');		-- 20: recharge of 80
SELECT balance FROM wallet_debit('month', 'at', 5, 'm5');		-- 15: one open, nothing more
SELECT * FROM pg_temp.outbox('month');
SELECT month_total, limited_month IS NULL AS unlimited FROM wallet.recharge r
  JOIN wallet.wallet w ON w.id = r.wallet_id WHERE w.customer = 'month';

---------------------------------------------------------------- no alert: nothing is evaluated
SELECT wallet_grant('quiet', 'at', 100) > 0 AS granted;
SELECT balance FROM wallet_debit('quiet', 'at', 90, 'q1');
SELECT count(*) FROM wallet.outbox WHERE customer = 'quiet';

-- the levels each balance row keeps: low_balance (debits judge after), alert_back
-- (the lowest alert below: debits judge before), alert_until (a month held back)
SELECT w.customer, a.low_balance, a.alert_back, a.alert_until IS NOT NULL AS until
  FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id ORDER BY 1;

SELECT * FROM wallet_verify();
