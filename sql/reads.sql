-- Reads for billing pages (#21): paged statements and usage.
-- Times change with the clock: rows show no timestamps, only what follows
-- from the history (kinds, amounts, balances, ids).
\set VERBOSITY sqlstate
\pset null '(null)'
SET client_min_messages = warning;
-- every suite starts from a fresh extension: ids and data do not leak between files
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('rc', 0, 0.01);
SELECT wallet_create_asset('rusd', 2, 1);
SELECT wallet_create(c) FROM unnest(ARRAY['ann', 'bob', 'big', 'hist']) c;
SELECT wallet_set_price('llm', 'rc', '{"model": "per_unit", "unit_price": "1"}') > 0 AS priced;
SELECT wallet_set_price('img', 'rc', '{"model": "flat", "price": "5"}') > 0 AS priced;

-- ann: two grants, debits across them (one draws from both: its lines are
-- stored), a hold and its release, a refund, a second asset
SELECT wallet_grant('ann', 'rc', 10, priority => 1, external_ref => 'ann-1');
SELECT wallet_grant('ann', 'rc', 100, external_ref => 'ann-2');
SELECT approved, amount, balance FROM wallet_authorize_debit('ann', 'llm', 4, 'a1', '{"model": "m1"}');
SELECT approved, amount, balance FROM wallet_authorize_debit('ann', 'llm', 9, 'a2', '{"model": "m2"}');
SELECT approved, amount, balance FROM wallet_authorize_debit('ann', 'img', 1, 'a3', '{"model": "m1"}');
SELECT approved, hold_id FROM wallet_hold('ann', 'rc', 20, 'a4');
SELECT approved, amount FROM wallet_release(1);
SELECT approved, amount FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'a3'));
SELECT approved, amount, balance FROM wallet_authorize_debit('ann', 'llm', 7, 'a5', '{"model": "m2"}');
SELECT wallet_grant('ann', 'rusd', 3.5, external_ref => 'ann-3');
SELECT approved, amount, balance FROM wallet_debit('ann', 'rusd', 1.25, 'a6');

-- line and event ids come from one sequence (events carry the id of their
-- line): the n-th line of a statement is named by what it is, not by a number
CREATE FUNCTION pg_temp.nth_line(cust text, n int) RETURNS bigint LANGUAGE sql AS $$
	SELECT s.line_id FROM wallet_statement(cust) WITH ORDINALITY s
	 WHERE s.line_id IS NOT NULL ORDER BY s.ordinality OFFSET n - 1 LIMIT 1
$$;
SELECT pg_temp.nth_line('ann', 5) AS ann5, pg_temp.nth_line('ann', 8) AS ann8,
	   pg_temp.nth_line('ann', 10) AS ann10, pg_temp.nth_line('ann', 11) AS ann11,
	   pg_temp.nth_line('ann', 12) AS ann12 \gset

-- the whole statement (the 1.0 call), without times
SELECT asset, kind, description, amount, balance, line_id
  FROM wallet_statement('ann');
SELECT asset, kind, amount, balance, line_id
  FROM wallet_statement('ann', now() - interval '1 hour', now() + interval '1 hour');

-- paging: three lines a page
SELECT asset, kind, amount, balance, line_id FROM wallet_statement('ann', max_lines => 3);
SELECT asset, kind, amount, balance, line_id FROM wallet_statement('ann', after_line => :ann5, max_lines => 3);
SELECT asset, kind, amount, balance, line_id FROM wallet_statement('ann', after_line => :ann8, max_lines => 3);
SELECT asset, kind, amount, balance, line_id FROM wallet_statement('ann', after_line => :ann11, max_lines => 3);
-- after the last line of an asset (its closing row was on that page): the next asset
SELECT asset, kind, amount, balance, line_id FROM wallet_statement('ann', after_line => :ann10, max_lines => 3);
-- after the last line of all: nothing
SELECT asset, kind, amount, balance, line_id FROM wallet_statement('ann', after_line => :ann12, max_lines => 3);
-- after_line past until: nothing of that asset
SELECT asset, kind, amount, balance FROM wallet_statement('ann', until => now() - interval '1 hour', after_line => :ann5);

-- every page size walks the same lines with the same balances, and every
-- opening row is the running balance just before the page's first line
CREATE FUNCTION pg_temp.walk(cust text, page int)
RETURNS TABLE (pages int, lines int, same boolean, openings_ok boolean) LANGUAGE plpgsql AS $$
DECLARE
	cursor_line bigint;
	got int;
	r record;
	prev numeric;
	ok boolean := true;
	acc text[] := '{}';
	whole text[];
	tail_no_id boolean := false;
BEGIN
	pages := 0;
	CREATE TEMP TABLE IF NOT EXISTS whole_stmt AS SELECT * FROM wallet_statement(cust) WITH NO DATA;
	TRUNCATE whole_stmt;
	INSERT INTO whole_stmt SELECT * FROM wallet_statement(cust);
	SELECT array_agg(format('%s %s %s %s', s.asset, s.kind, s.amount, s.balance) ORDER BY s.asset, s.at, s.line_id)
	  INTO whole FROM whole_stmt s WHERE s.kind NOT IN ('opening', 'closing');
	LOOP
		got := 0;
		FOR r IN SELECT * FROM wallet_statement(cust, after_line => cursor_line, max_lines => page) LOOP
			IF r.kind = 'opening' THEN
				/* the balance after the line before, or the asset's opening */
				SELECT s.balance INTO prev FROM whole_stmt s
				 WHERE s.asset = r.asset AND s.line_id = cursor_line;
				IF NOT FOUND THEN
					SELECT s.balance INTO prev FROM whole_stmt s WHERE s.asset = r.asset AND s.kind = 'opening';
				END IF;
				ok := ok AND prev = r.balance;
			ELSIF r.kind <> 'closing' THEN
				acc := acc || format('%s %s %s %s', r.asset, r.kind, r.amount, r.balance);
				cursor_line := coalesce(r.line_id, cursor_line);
				tail_no_id := r.line_id IS NULL;
				got := got + 1;
			END IF;
		END LOOP;
		IF got > 0 THEN
			pages := pages + 1;
		END IF;
		/* only the statement's last page ends on a line without id */
		EXIT WHEN got = 0 OR tail_no_id OR pages > 50;
	END LOOP;
	lines := cardinality(acc);
	same := acc = whole;
	openings_ok := ok;
	RETURN NEXT;
END
$$;
SELECT p AS page_size, w.* FROM generate_series(1, 5) p, pg_temp.walk('ann', p) w;

-- refusals
SELECT * FROM wallet_statement('ann', max_lines => 0);
SELECT * FROM wallet_statement('ann', after_line => 999999);
SELECT wallet_grant('bob', 'rc', 5, external_ref => 'bob-1');
SELECT * FROM wallet_statement('bob', after_line => :ann5);	-- ann's line
SELECT * FROM wallet_statement('nobody');
SELECT * FROM wallet_statement('ann', since => NULL);

-- a grant that expires while nobody sweeps: its expiry is a line without id,
-- the same on every page size, and a page never ends on it
SELECT wallet_grant('bob', 'rc', 7, expires_at => now() + interval '1 second', external_ref => 'bob-2');
SELECT pg_sleep(1.2);
SELECT approved, balance FROM wallet_debit('bob', 'rc', 1, 'b1');
SELECT kind, amount, balance, line_id FROM wallet_statement('bob');
SELECT kind, amount, balance, line_id FROM wallet_statement('bob', max_lines => 2);
SELECT pg_temp.nth_line('bob', 2) AS bob2 \gset
SELECT kind, amount, balance, line_id FROM wallet_statement('bob', after_line => :bob2, max_lines => 1);
SELECT p AS page_size, w.* FROM generate_series(1, 3) p, pg_temp.walk('bob', p) w;
-- two assets, the first ending on two expiries no sweep has written: a page those fill goes
-- on into the next asset (it may not end on them, or the next page would show them again),
-- every page size walks the same lines once, and a page as large as max_lines allows is no error
SELECT wallet_create('pg2') > 0 AS created;
SELECT wallet_grant('pg2', 'rc', 100, external_ref => 'pg2-1') > 0 AS granted,
	   wallet_grant('pg2', 'rc', 7, expires_at => now() + interval '1 second', external_ref => 'pg2-2') > 0 AS granted,
	   wallet_grant('pg2', 'rc', 8, expires_at => now() + interval '1 second', external_ref => 'pg2-3') > 0 AS granted,
	   wallet_grant('pg2', 'rusd', 50, external_ref => 'pg2-4') > 0 AS granted;
SELECT approved FROM wallet_debit('pg2', 'rusd', 5, 'pg2-d');
SELECT pg_sleep(1.2);
SELECT asset, kind, amount, balance, line_id IS NULL AS no_id FROM wallet_statement('pg2', max_lines => 4);
SELECT asset, kind, amount, balance, line_id IS NULL AS no_id FROM wallet_statement('pg2', max_lines => 5);
SELECT p AS page_size, w.* FROM generate_series(1, 6) p, pg_temp.walk('pg2', p) w;
SELECT count(*) AS rows FROM wallet_statement('pg2', max_lines => 2147483647);

-- a long history: 1,200 debits, one transaction each (each its own time)
SELECT wallet_grant('big', 'rc', 100000, external_ref => 'big-1');
CREATE PROCEDURE pg_temp.debits(n int) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..n LOOP
		PERFORM wallet_debit('big', 'rc', 1 + i % 3, 'big-' || i, jsonb_build_object('model', 'm' || i % 2));
		COMMIT;
	END LOOP;
END
$$;
CALL pg_temp.debits(1200);
SELECT count(*) AS lines FROM wallet_statement('big') WHERE kind = 'debit';
-- the whole statement needs no mark; a page far into it leaves marks up to it
SELECT count(*) AS marks FROM wallet.statement_mark;
SELECT pg_temp.nth_line('big', 685) AS big685, pg_temp.nth_line('big', 1085) AS big1085 \gset
CREATE TEMP TABLE big_page AS
SELECT * FROM wallet_statement('big', after_line => :big685, max_lines => 4);
SELECT count(*) > 0 AS marked, max(m.at) <= (SELECT b.at FROM big_page b WHERE b.kind = 'opening') AS up_to_it
  FROM wallet.statement_mark m JOIN wallet.wallet w ON w.id = m.wallet_id
 WHERE w.customer = 'big';
-- every mark is the balance of the lines before it
-- (wallet.ledger: the lines written and those time has made)
SELECT count(*) > 0 AS marked,
	   count(*) FILTER (WHERE wallet._major(m.asset, m.balance) <>
		   (SELECT coalesce(sum(l.amount), 0) FROM wallet.ledger l JOIN wallet.wallet w ON w.customer = l.customer
			 WHERE w.id = m.wallet_id AND l.asset = m.asset AND l.at < m.at
			   AND l.kind NOT IN ('hold', 'release'))) AS wrong_marks
  FROM wallet.statement_mark m;
-- pages with and without marks agree with the whole statement
SELECT kind, amount, balance, line_id FROM big_page;
SELECT b.balance = (SELECT s.balance FROM wallet_statement('big') s WHERE s.line_id = :big685) AS opening_is_running
  FROM big_page b WHERE b.kind = 'opening';
DELETE FROM wallet.statement_mark;
SELECT count(*) AS same_without_marks FROM (
	SELECT kind, amount, balance, line_id FROM big_page
	INTERSECT
	SELECT kind, amount, balance, line_id FROM wallet_statement('big', after_line => :big685, max_lines => 4)) x;
-- a read-only transaction reads and writes no mark
DELETE FROM wallet.statement_mark;
BEGIN TRANSACTION READ ONLY;
SELECT kind, amount, balance, line_id FROM wallet_statement('big', after_line => :big1085, max_lines => 2);
COMMIT;
SELECT count(*) AS marks FROM wallet.statement_mark;
SELECT kind, amount, balance, line_id FROM wallet_statement('big', after_line => :big1085, max_lines => 2);
SELECT count(*) > 0 AS marked FROM wallet.statement_mark;
-- a hold whose ttl passed after its grant expired, not swept: the sweep will write what it
-- reserved at the hold's expiry, where the lines not yet written date all the grant's rest at
-- the grant's expiry; no mark is kept past the hold's start, so marks stay right after the sweep
SELECT wallet_create('hx') > 0 AS created;
SELECT wallet_grant('hx', 'rc', 10, expires_at => now() + interval '1.5 seconds', external_ref => 'hx-1') > 0 AS granted,
	   wallet_grant('hx', 'rc', 100000, external_ref => 'hx-2') > 0 AS granted;
SELECT approved FROM wallet_hold('hx', 'rc', 8, 'hx-h', ttl => '3 seconds');
SELECT pg_sleep(1.7);
CREATE PROCEDURE pg_temp.hx_debits(n int) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..n LOOP
		PERFORM wallet_debit('hx', 'rc', 1, 'hx-' || i);
		COMMIT;
	END LOOP;
END
$$;
CALL pg_temp.hx_debits(700);
SELECT pg_sleep(1.5);
SELECT pg_temp.nth_line('hx', 700) AS hx700 \gset
SELECT count(*) AS page_rows FROM wallet_statement('hx', after_line => :hx700, max_lines => 1);
SELECT count(*) FILTER (WHERE action = 'expired_holds' AND count = 1) AS swept FROM wallet_sweep();
SELECT count(*) FILTER (WHERE wallet._major(m.asset, m.balance) <>
		   (SELECT coalesce(sum(l.amount), 0) FROM wallet.ledger l
			 WHERE l.customer = 'hx' AND l.asset = m.asset AND l.at < m.at
			   AND l.kind NOT IN ('hold', 'release'))) AS wrong_marks
  FROM wallet.statement_mark m JOIN wallet.wallet w ON w.id = m.wallet_id WHERE w.customer = 'hx';
SELECT p.kind, p.balance = w.balance AS paged_is_whole
  FROM wallet_statement('hx', after_line => :hx700, max_lines => 1) p
  JOIN wallet_statement('hx') w ON w.line_id = p.line_id;

-- usage: per meter and per model, net of refunds (a3's event was refunded in full)
SELECT key, asset, events, quantity, amount
  FROM wallet_usage('ann', now() - interval '1 day', bucket => 'month');
SELECT key, asset, events, quantity, amount
  FROM wallet_usage('ann', now() - interval '1 day', group_by => 'model');
SELECT approved, amount FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'a2'), 4);	-- part of a2 (9)
SELECT key, asset, events, quantity, amount
  FROM wallet_usage('ann', now() - interval '1 day', group_by => 'model');
-- buckets are whole UTC hours, days, months
SELECT count(*) = count(DISTINCT bucket_start) AS one_row_per_bucket,
	   bool_and(bucket_start = date_trunc('hour', bucket_start, 'UTC')) AS hours
  FROM wallet_usage('big', now() - interval '1 day', bucket => 'hour', group_by => 'nothing');
SELECT key, events, quantity, amount
  FROM wallet_usage('big', '-infinity', 'infinity', 'month', 'model');
-- a window that ends before the events: nothing
SELECT count(*) FROM wallet_usage('big', now() - interval '3 days', now() - interval '2 days');
-- refusals
SELECT * FROM wallet_usage('ann', now(), bucket => 'week');
SELECT * FROM wallet_usage('ann', now(), group_by => '');
SELECT * FROM wallet_usage('ann', NULL);
SELECT * FROM wallet_usage('ann', now(), now() - interval '1 day');
SELECT * FROM wallet_usage('nobody', now());

-- history recorded hours ago is summed into wallet.usage_sum once (per hour
-- and per day), and
-- read from there; refunds after that still net out
SELECT wallet_grant('hist', 'rc', 1000, external_ref => 'hist-1');
SELECT count(*) FROM generate_series(1, 30) i,
	LATERAL wallet_authorize_debit('hist', CASE WHEN i % 3 = 0 THEN 'img' ELSE 'llm' END, i, 'h' || i,
		jsonb_build_object('model', 'm' || i % 2)) d WHERE d.approved;
ALTER TABLE wallet.event DISABLE TRIGGER event_immutable;
UPDATE wallet.event e SET recorded_at = e.recorded_at - interval '5 hours',
						  occurred_at = e.occurred_at - interval '5 hours'
  FROM wallet.wallet w WHERE w.id = e.wallet_id AND w.customer = 'hist' AND e.idempotency_key <> 'h30';
ALTER TABLE wallet.event ENABLE TRIGGER event_immutable;
CREATE FUNCTION pg_temp.truth(cust text, grp text)
RETURNS TABLE (key text, events bigint, quantity numeric, amount numeric) LANGUAGE sql AS $$
	SELECT CASE WHEN grp = 'meter' THEN e.meter ELSE e.dimensions ->> grp END,
		   count(*) FILTER (WHERE e.refunded < e.amount OR e.amount = 0),
		   sum(e.quantity) FILTER (WHERE e.refunded < e.amount OR e.amount = 0),
		   sum(e.amount - e.refunded)
	  FROM wallet.events e WHERE e.customer = cust GROUP BY 1 ORDER BY 1
$$;
SELECT * FROM pg_temp.truth('hist', 'model');
SELECT key, events, quantity, amount FROM wallet_usage('hist', '-infinity', 'infinity', 'month', 'model');
SELECT count(*) > 0 AS rolled_up FROM wallet.usage_sum h JOIN wallet.wallet w ON w.id = h.wallet_id
 WHERE w.customer = 'hist';
SELECT approved, amount FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'h4'));
SELECT approved, amount FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'h7'), 2);
SELECT * FROM pg_temp.truth('hist', 'meter');
SELECT key, events, quantity, amount FROM wallet_usage('hist', '-infinity', 'infinity', 'month');
-- refunds made hours ago are summed too (rows of their own, negative): the
-- cache rebuilt from scratch agrees
ALTER TABLE wallet.refund DISABLE TRIGGER refund_append_only;
UPDATE wallet.refund SET at = at - interval '4 hours';
ALTER TABLE wallet.refund ENABLE TRIGGER refund_append_only;
DELETE FROM wallet.usage_sum;
DELETE FROM wallet.usage_mark;
SELECT key, events, quantity, amount FROM wallet_usage('hist', '-infinity', 'infinity', 'month');
SELECT key, events, quantity, amount FROM wallet_usage('hist', '-infinity', 'infinity', 'month', 'model');
SELECT * FROM pg_temp.truth('hist', 'model');
-- the day sums add up to the hour sums
SELECT sum(h.events) FILTER (WHERE span = 'day') = sum(h.events) FILTER (WHERE span = 'hour') AS same_events,
	   sum(h.amount) FILTER (WHERE span = 'day') = sum(h.amount) FILTER (WHERE span = 'hour') AS same_amount
  FROM wallet.usage_sum h JOIN wallet.wallet w ON w.id = h.wallet_id WHERE w.customer = 'hist';
-- windows that cut days: whole days from the day sums, the edges from the hour sums
SELECT w.since, sum(u.events) = t.events AS events_ok, sum(u.amount) = t.amount AS amount_ok
  FROM (VALUES (interval '2 days'), (interval '26 hours'), (interval '6 hours')) w(since)
 CROSS JOIN (SELECT sum(events) AS events, sum(amount) AS amount FROM pg_temp.truth('hist', 'meter')) t
 CROSS JOIN LATERAL wallet_usage('hist', now() - w.since) u
 GROUP BY w.since, t.events, t.amount ORDER BY 1;
SELECT count(*) AS outside FROM wallet_usage('hist', now() - interval '30 days', now() - interval '7 hours');
-- the same per hour: the events of five hours ago and those of now
SELECT now() - bucket_start > interval '4 hours' AS hours_ago, key, events, amount
  FROM wallet_usage('hist', now() - interval '1 day', bucket => 'hour');

SELECT * FROM wallet_verify() WHERE problem <> 'conservation' OR detail NOT LIKE '%hist%';

-- an upgraded 1.0 database: the 1.0 call returns what 1.0 returned, and its
-- existing history pages (nothing was backfilled: the reads write their caches)
DROP EXTENSION wallet CASCADE;
CREATE EXTENSION wallet VERSION '1.0';
SELECT wallet_create_asset('up', 0, 0.01);
SELECT wallet_create('old');
SELECT wallet_set_price('up.call', 'up', '{"model": "per_unit", "unit_price": "1"}') > 0 AS priced;
SELECT wallet_grant('old', 'up', 5, priority => 1, external_ref => 'old-1');
SELECT wallet_grant('old', 'up', 50, external_ref => 'old-2');
SELECT approved FROM wallet_authorize_debit('old', 'up.call', 3, 'o1', '{"model": "x"}');
SELECT approved FROM wallet_authorize_debit('old', 'up.call', 4, 'o2', '{"model": "y"}');
SELECT approved FROM wallet_hold('old', 'up', 10, 'o3');
SELECT approved FROM wallet_refund((SELECT id FROM wallet.event WHERE idempotency_key = 'o2'), 1);
SELECT approved FROM wallet_authorize_debit('old', 'up.call', 6, 'o4', '{"model": "x"}');
CREATE TEMP TABLE s10 AS SELECT * FROM wallet_statement('old') WHERE kind <> 'closing';
SELECT extversion FROM pg_extension WHERE extname = 'wallet';
ALTER EXTENSION wallet UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'wallet';
SELECT count(*) AS lines,
	   count(*) FILTER (WHERE s.line_id IS NULL OR t.line_id IS NULL) AS differ
  FROM (SELECT * FROM s10 WHERE kind <> 'opening') s
  FULL JOIN (SELECT * FROM wallet_statement('old') WHERE kind NOT IN ('opening', 'closing')) t
	ON t.line_id = s.line_id AND t.balance = s.balance AND t.amount = s.amount
   AND t.description = s.description AND t.at = s.at;
SELECT p AS page_size, w.* FROM generate_series(1, 3) p, pg_temp.walk('old', p) w;
SELECT key, events, quantity, amount FROM wallet_usage('old', now() - interval '1 day', group_by => 'model');
SELECT * FROM wallet_verify();
-- from 1.1 an event carries its line under its own id (the 1.0 ones keep
-- theirs, found through event_line), and pages walk across both
SELECT approved FROM wallet_authorize_debit('old', 'up.call', 2, 'o5', '{"model": "x"}');
SELECT count(*) FILTER (WHERE e.line_id = e.id) AS carried_as_event_id,
	   count(*) FILTER (WHERE e.line_id <> e.id) AS carried_in_1_0
  FROM wallet.event e JOIN wallet.wallet w ON w.id = e.wallet_id WHERE w.customer = 'old';
SELECT p AS page_size, w.* FROM generate_series(1, 3) p, pg_temp.walk('old', p) w;
