-- Calendar arithmetic is UTC whatever the session's TimeZone, as recurrences
-- are (grant.c, Boundary):
-- wallet_usage: the whole UTC days of a window are read from the day sums; the
-- first one was found by adding '1 day' in the session's TimeZone, so across
-- a DST change it started an hour late and the day sum at its UTC midnight
-- was left out (America/New_York left DST on 2025-11-02 at 06:00 UTC).
-- A hold's ttl (wallet_hold, wallet_authorize_hold, wallet_extend_hold) was
-- added in the session's TimeZone: '120 days' lived 119 days 23:00 or
-- 120 days 01:00 across a DST change.
SET client_min_messages = warning;
SELECT wallet_create_asset('utc', 0);
SELECT wallet_create('utc-a') > 0 AS created;
SELECT wallet_grant('utc-a', 'utc', 1000) > 0 AS granted;
SELECT wallet_set_price('utc.m', 'utc', '{"model":"per_unit","unit_price":"1"}', effective_at => '2025-10-01') > 0 AS priced;
SET wallet.max_backdate = '100 years';
SELECT approved FROM wallet_authorize_debit('utc-a', 'utc.m', 1, 'u1', '{}', '2025-11-02 13:00+00');
SELECT approved FROM wallet_authorize_debit('utc-a', 'utc.m', 2, 'u2', '{}', '2025-11-03 12:00+00');
SELECT approved FROM wallet_authorize_debit('utc-a', 'utc.m', 4, 'u3', '{}', '2025-11-04 11:00+00');
RESET wallet.max_backdate;
-- the events summed as they are an hour after they were recorded
SELECT wallet._usage_roll(w.id, now() + interval '2 hours') FROM wallet.wallet w WHERE w.customer = 'utc-a';
SELECT span, count(*) FROM wallet.usage_sum GROUP BY 1 ORDER BY 1;
SET TimeZone = 'UTC';
SELECT * FROM wallet_usage('utc-a', '2025-11-02 12:00+00', '2025-11-06 00:00+00');
SET TimeZone = 'America/New_York';
SELECT bucket_start AT TIME ZONE 'UTC' AS utc_day, key, events, amount
  FROM wallet_usage('utc-a', '2025-11-02 12:00+00', '2025-11-06 00:00+00');
SELECT bucket_start AT TIME ZONE 'UTC' AS utc_month, key, events, amount
  FROM wallet_usage('utc-a', '2025-11-02 12:00+00', '2025-11-06 00:00+00', 'month');
RESET TimeZone;

-- wallet_sweep prunes acked outbox rows older than wallet.outbox_retention, in
-- UTC days: as of 2025-11-02 12:00 UTC, one day back is 2025-11-01 12:00 UTC
-- (in New York's TimeZone it was 11:00 UTC, the day of the DST change being 25 hours)
INSERT INTO wallet.outbox (customer, asset, kind, available, threshold, detail, acked_at)
VALUES ('utc-a', 'utc', 'low_balance', 1, 2, '{"test": "older"}', '2025-11-01 11:30+00'),
	   ('utc-a', 'utc', 'low_balance', 1, 2, '{"test": "newer"}', '2025-11-01 12:30+00');
SET wallet.outbox_retention = '1 day';
SET TimeZone = 'America/New_York';
SELECT count FROM wallet_sweep('2025-11-02 12:00+00') WHERE action = 'pruned_outbox';
RESET TimeZone;
RESET wallet.outbox_retention;
SELECT detail ->> 'test' AS kept FROM wallet.outbox WHERE detail ? 'test';

-- holds: the same ttl gives the same life in every TimeZone.  Besides New
-- York, two POSIX zones with summer time from day 1 to 183 and from day 91 to
-- 274 of each year: one of them changes its offset once (never twice) within
-- any 120 days, so whenever this runs a ttl added in the session's TimeZone
-- would be an hour off in one of them.
SELECT wallet_grant('utc-a', 'utc', 100) > 0 AS granted;
CREATE FUNCTION pg_temp.hold_in(tz text, key text, extend boolean) RETURNS interval
LANGUAGE plpgsql AS $$
DECLARE
	hid bigint;
BEGIN
	PERFORM set_config('TimeZone', tz, true);
	SELECT h.hold_id INTO hid FROM wallet_hold('utc-a', 'utc', 1, key, ttl => '120 days') h;
	IF extend THEN
		PERFORM wallet_extend_hold(hid, '120 days');
	END IF;
	RETURN (SELECT (h.expires_at AT TIME ZONE 'UTC') - (clock_timestamp() AT TIME ZONE 'UTC')
			  FROM wallet.hold h WHERE h.id = hid);
END
$$;
-- the hours each hold has left (its clock is a moment before clock_timestamp())
SELECT tz, extend, round(extract(epoch FROM pg_temp.hold_in(tz, tz || extend::text, extend)) / 3600) AS hours
  FROM (VALUES ('UTC'), ('America/New_York'), ('AAA0BBB,J1,J183'), ('CCC0DDD,J91,J274')) z(tz),
	   (VALUES (false), (true)) e(extend)
 ORDER BY 2, 1;
SELECT * FROM wallet_verify();
