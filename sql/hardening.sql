-- hardening (#17): each defect of the security review, as it must behave now
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

-- runs a statement, answers 'ok' or the SQLSTATE and message it raised
CREATE FUNCTION try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;

SELECT wallet_create_asset('credits', 0);
SELECT wallet_create('acme') > 0;
SELECT wallet_grant('acme', 'credits', 5) > 0, wallet_grant('acme', 'credits', 5) > 0;
SELECT wallet_set_limit('acme', 'credits', low_balance => 5);
SELECT wallet_set_price('tok', 'credits', '{"model": "graduated", "tiers": [{"up_to": 1000000000, "unit_price": "0"}, {"unit_price": "1"}]}') > 0;

-- 1. a recurrence with fields of opposite signs is refused (22023)
SELECT r, try(format('SELECT wallet_grant(%L, %L, 1, recurrence => %L)', 'acme', 'credits', r))
  FROM unnest(ARRAY['1 month -30 days 1 microsecond', '1 day -23:59:59.999999', '-1 month 31 days',
				   '1 month 1 day', '1 second']) r;
-- a 1.0 database may hold one: it never refills, and reads, voids and the sweep work at once
SELECT wallet_create('legacy') > 0, wallet_grant('legacy', 'credits', 1) > 0;
SET session_replication_role = replica;		-- as 1.0 wrote it, without 1.1's check
INSERT INTO wallet.grant_block (wallet_id, asset, category, priority, amount, remaining, unit_revenue,
								effective_at, recurrence)
SELECT w.id, 'credits', 'promotional', 100, 7, 7, 0, now() - interval '400 days', '1 day -23:59:59.999999'
  FROM wallet.wallet w WHERE w.customer = 'legacy';
INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
SELECT now() - interval '400 days', g.wallet_id, 'credits', g.id, 'grant', 7 FROM wallet.grant_block g
 WHERE g.recurrence = '1 day -23:59:59.999999';
RESET session_replication_role;
SET statement_timeout = '60s';
SELECT wallet_balance('legacy', 'credits');
SELECT (wallet_debit('legacy', 'credits', 2, 'legacy-1')).approved;
SELECT count(*) FROM wallet_verify();
SELECT wallet_void_grant(g.id) FROM wallet.grant_block g WHERE g.recurrence = '1 day -23:59:59.999999';
-- no work per boundary: a 1-second recurrence 20 days back (1.7 million boundaries), a monthly one 100 years back
SELECT wallet_create('second') > 0;
SELECT wallet_grant('second', 'credits', 3, effective_at => now() - interval '20 days', recurrence => '1 second',
					rollover_max => 2) > 0;
SELECT wallet_balance('second', 'credits');
SELECT (wallet_debit('second', 'credits', 1, 'second-1')).balance;
SELECT resets BETWEEN 1728000 AND 1728600 AS resets_counted FROM wallet.grant_block g
  JOIN wallet.wallet w ON w.id = g.wallet_id WHERE w.customer = 'second';
SELECT wallet_create('century') > 0;
SELECT wallet_grant('century', 'credits', 4, effective_at => date_trunc('month', now()) - interval '1200 months' + interval '30 days',
					recurrence => '1 month') > 0;
SELECT (wallet_debit('century', 'credits', 1, 'century-1')).balance;
-- boundary k is effective_at + k months: the last one passed is exactly countable
SELECT g.resets = (SELECT max(k) FROM generate_series(0, 1300) k
					WHERE g.effective_at AT TIME ZONE 'UTC' + k * interval '1 month' <= now() AT TIME ZONE 'UTC') AS resets_exact
  FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id WHERE w.customer = 'century';
-- periods of hundreds of thousands of years: no boundary has passed; past the end of time: 22008
SELECT wallet_create('eon') > 0;
SELECT r, try(format('SELECT wallet_grant(%L, %L, 2, effective_at => now() - interval %L, recurrence => %L)',
					 'eon', 'credits', '1 day', r))
  FROM unnest(ARRAY['250000 years', '100000000 days', '170000000 years']) r;
SELECT wallet_balance('eon', 'credits'), (wallet_debit('eon', 'credits', 1, 'eon-1')).balance;
SELECT count(*) FROM wallet_verify();
RESET statement_timeout;

-- 2. a BEFORE trigger that skips a row the wallet writes: 09000 naming the table, never a crash
CREATE FUNCTION skip_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TABLE skip_case (tbl text, stmt text);
INSERT INTO skip_case VALUES
	('wallet.event', $$SELECT wallet_debit('acme', 'credits', 1, 'skip-1')$$),
	('wallet.line_stored', $$SELECT wallet_debit('acme', 'credits', 7, 'skip-2')$$),
	('wallet.hold', $$SELECT wallet_hold('acme', 'credits', 1, 'skip-3')$$),
	('wallet.outbox', $$SELECT wallet_debit('acme', 'credits', 1000, 'skip-4')$$),
	('wallet.usage_counter', $$SELECT wallet_authorize_debit('acme', 'tok', 1, 'skip-5')$$),
	('wallet.account', $$SELECT wallet_debit('acme', 'other', 1, 'skip-6')$$);
SELECT wallet_create_asset('other', 0);
CREATE FUNCTION try_skipping(tbl text, stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE format('CREATE TRIGGER skip BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION skip_row()', tbl);
	r := try(stmt);
	EXECUTE format('DROP TRIGGER skip ON %s', tbl);
	RETURN r;
END
$$;
SELECT tbl, try_skipping(tbl, stmt) FROM skip_case;
-- a spend cap's decline notice (CapDeclined)
SELECT wallet_set_cap('acme', 'credits', 1, 'day');
SELECT try_skipping('wallet.outbox', $$SELECT wallet_debit('acme', 'credits', 2, 'skip-7')$$);
-- a spend cap's bucket
SELECT wallet_set_cap('acme', 'credits', 100, 'day');
SELECT try_skipping('wallet.cap_spend', $$SELECT wallet_debit('acme', 'credits', 1, 'skip-8')$$);
SELECT wallet_set_cap('acme', 'credits', NULL, 'day');
-- closing a hold: a BEFORE UPDATE trigger that skips
SELECT (wallet_hold('acme', 'credits', 1, 'skip-hold')).hold_id AS hold \gset
CREATE TRIGGER skip BEFORE UPDATE ON wallet.hold FOR EACH ROW EXECUTE FUNCTION skip_row();
SELECT try(format('SELECT wallet_release(%s)', :hold));
DROP TRIGGER skip ON wallet.hold;
SELECT (wallet_release(:hold)).approved;
SELECT count(*) FROM wallet_verify();

-- 3. the notification payload is {"id", "kind"}: see test/scripts/hardening.sh (it needs a listener)

-- 4. every text input has a byte limit, 22023 before any index refuses it; a decline stays a result
SELECT what, try(stmt) FROM (VALUES
	('customer 257 bytes', $$SELECT wallet_debit(repeat('c', 257), 'credits', 1, 'k')$$),
	('customer 65 four-byte characters', $$SELECT wallet_create(repeat(U&'\+01F600', 65))$$),
	('meter 128 bytes', $$SELECT wallet_authorize_debit('acme', repeat('m', 128), 1, 'k')$$),
	('price meter of 127 four-byte characters', $$SELECT wallet_set_price(repeat(U&'\+01F600', 127), 'credits', '{"model": "flat", "price": "1"}')$$),
	('price meter of 31 four-byte characters', $$SELECT wallet_set_price(repeat(U&'\+01F600', 31), 'credits', '{"model": "flat", "price": "1"}')$$),
	('key 256 bytes', $$SELECT wallet_debit('acme', 'credits', 1, repeat('k', 256))$$),
	('dimension key 128 bytes', $$SELECT wallet_debit('acme', 'credits', 1, 'k', jsonb_build_object(repeat('d', 128), 'x'))$$),
	('dimension value 1025 bytes', $$SELECT wallet_debit('acme', 'credits', 1, 'k', jsonb_build_object('user', repeat('u', 1025)))$$),
	('dimension value as an object over 1024 bytes', $$SELECT wallet_debit('acme', 'credits', 1, 'k', jsonb_build_object('user', jsonb_build_object('a', repeat(chr(1), 200))))$$),
	('dimension value, a number of 1100 digits', $$SELECT wallet_debit('acme', 'credits', 1, 'k', ('{"user": 1' || repeat('0', 1100) || '}')::jsonb)$$),
	('external_ref 256 bytes', $$SELECT wallet_grant('acme', 'credits', 1, external_ref => repeat('r', 256))$$),
	('cap dimension 128 bytes', $$SELECT wallet_set_cap('acme', 'credits', 1, 'day', repeat('d', 128))$$)
) t(what, stmt);
-- a per-member cap with member values at the limit, even of control characters: declines are results
SELECT wallet_create('members') > 0, wallet_grant('members', 'credits', 1000) > 0;
SELECT wallet_set_cap('members', 'credits', 5, 'day', 'user');
SELECT wallet_set_price('call', 'credits', '{"model": "flat", "price": "1"}') > 0;
-- member values that do not compress: 1.0 gave 54000 (cap_spend's index) and 22023 (payload string too long)
CREATE FUNCTION noise(n int) RETURNS text LANGUAGE sql AS $$
	SELECT left(string_agg(md5(i::text), ''), n) FROM generate_series(1, n / 32 + 1) i
$$;
SELECT try($$SELECT wallet_debit('members', 'credits', 1, 'm0', jsonb_build_object('user', noise(3000)))$$);
SELECT try($$SELECT wallet_debit('members', 'credits', 9, 'm0', jsonb_build_object('user', repeat(chr(1), 1400)))$$);
SELECT (r).approved, (r).reason FROM (VALUES
	(wallet_debit('members', 'credits', 4, 'm1', jsonb_build_object('user', noise(1024)))),
	(wallet_debit('members', 'credits', 4, 'm2', jsonb_build_object('user', noise(1024)))),
	(wallet_debit('members', 'credits', 4, 'm3', jsonb_build_object('user', repeat(chr(1), 1024)))),
	(wallet_debit('members', 'credits', 4, 'm4', jsonb_build_object('user', repeat(chr(1), 1024))))) t(r);
-- in wallet_ingest, an element over a limit fails alone
SELECT idx, approved, reason, error FROM wallet_ingest(jsonb_build_array(
	jsonb_build_object('customer', 'members', 'meter', 'call', 'quantity', 1, 'idempotency_key', 'i1',
					   'dimensions', jsonb_build_object('user', noise(3000))),
	jsonb_build_object('customer', 'members', 'meter', repeat('m', 200), 'quantity', 1, 'idempotency_key', 'i2'),
	jsonb_build_object('customer', 'members', 'meter', 'call', 'quantity', 1, 'idempotency_key', 'i3',
					   'dimensions', jsonb_build_object('user', repeat(chr(1), 1024))),
	jsonb_build_object('customer', 'members', 'meter', 'call', 'quantity', 1, 'idempotency_key', 'i4',
					   'dimensions', jsonb_build_object('user', repeat(chr(1), 1024))),
	jsonb_build_object('customer', 'members', 'meter', 'call', 'quantity', 1, 'idempotency_key', 'i5')));

-- 5. the backdate and future windows are not the application's to widen
SET ROLE wallet_app;
SELECT try($$SET wallet.max_backdate = '10 years'$$) AS backdate, try($$SET wallet.max_future = '10 years'$$) AS future;
RESET ROLE;

-- 6. external_ref is unique per customer (waiting: test/isolation/specs/hardening_external_ref.spec)
SELECT wallet_create('bravo') > 0;
SELECT wallet_grant('acme', 'credits', 10, external_ref => 'pay-1') AS acme_grant \gset
SELECT wallet_grant('bravo', 'credits', 20, external_ref => 'pay-1') <> :acme_grant AS own_grant;
SELECT wallet_grant('acme', 'credits', 10, external_ref => 'pay-1') = :acme_grant AS replayed;
SELECT try($$SELECT wallet_grant('bravo', 'credits', 30, external_ref => 'pay-1')$$) AS bravo_reuse;
SELECT wallet_balance('bravo', 'credits');

-- 7. wallet_record_cost's errors do not show another customer's event
SELECT (wallet_debit('acme', 'credits', 1, 'secret', '{"user": "alice@example.com"}')).event_id AS ev \gset
SELECT try(format($$SELECT wallet_record_cost(%s, 1, '{"user": "mallory"}')$$, :ev));

-- 8. sizes: a price rule has at most 1000 tiers and rates and 64 kB; wallet_ingest takes at most 100000 elements
SELECT n, try(format('SELECT wallet_set_price(%L, %L, %L)', 'big' || n, 'credits',
	jsonb_build_object('model', 'graduated', 'tiers',
		(SELECT jsonb_agg(CASE WHEN i < n THEN jsonb_build_object('up_to', i, 'unit_price', '1')
							   ELSE jsonb_build_object('unit_price', '1') END) FROM generate_series(1, n) i))))
  FROM unnest(ARRAY[1000, 1001, 300000]) n;
SELECT try(format('SELECT wallet_set_price(%L, %L, %L)', 'bigmx', 'credits',
	jsonb_build_object('model', 'matrix', 'dimensions', jsonb_build_array('m'), 'rates',
		(SELECT jsonb_agg(jsonb_build_object('match', jsonb_build_object('m', i::text),
											 'rule', jsonb_build_object('model', 'graduated', 'tiers',
												 '[{"up_to": 1, "unit_price": "1"}, {"unit_price": "2"}]'::jsonb)))
		   FROM generate_series(1, 340) i)))) AS tiers_in_rates;
SELECT try(format('SELECT wallet_set_price(%L, %L, %L)', 'bigjunk', 'credits',
	jsonb_build_object('model', 'flat', 'price', '1', 'rounding', repeat('x', 70000)))) AS large;
SELECT try($$SELECT count(*) FROM wallet_ingest((SELECT jsonb_agg(1) FROM generate_series(1, 100001)))$$) AS ingest_100001;
SELECT count(*), min(error) FROM wallet_ingest((SELECT jsonb_agg(1) FROM generate_series(1, 1000)));

-- 9. exact decimals: trailing zeros are not significant; dust does not poison a period
SELECT wallet_create('dust') > 0, wallet_grant('dust', 'credits', 1000000) > 0;
SELECT (wallet_debit('dust', 'credits', ('1.' || repeat('0', 40))::numeric, 'd1')).amount;
SELECT wallet._minor('credits', ('7.' || repeat('0', 60))::numeric);
SELECT wallet_set_price('dusty', 'credits', '{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "0"}, {"unit_price": "0.0001"}]}') > 0;
SELECT (wallet_authorize_debit('dust', 'dusty', 1e-30, 'd2')).amount;
SELECT (wallet_authorize_debit('dust', 'dusty', 10000000, 'd3')).amount;
SELECT (wallet_authorize_debit('dust', 'dusty', 100000000, 'd4')).amount;
SELECT (wallet_authorize_debit('dust', 'dusty', 1, 'd5')).amount;
SELECT count(*) FROM wallet_verify();

-- 10. the tables' owner, when not a superuser, cannot disable or drop the ledger's triggers
DO $$ BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wallet_hardening_owner') THEN
		CREATE ROLE wallet_hardening_owner NOLOGIN;
	END IF;
END $$;
GRANT USAGE ON SCHEMA wallet TO wallet_hardening_owner;
ALTER TABLE wallet.line_stored OWNER TO wallet_hardening_owner;
ALTER TABLE wallet.event OWNER TO wallet_hardening_owner;
ALTER TABLE wallet.refund OWNER TO wallet_hardening_owner;
SET ROLE wallet_hardening_owner;
SELECT stmt, try(stmt) FROM (VALUES
	('ALTER TABLE wallet.line_stored DISABLE TRIGGER line_append_only'),
	('ALTER TABLE wallet.line_stored DISABLE TRIGGER ALL'),
	('DROP TRIGGER event_no_delete ON wallet.event'),
	('ALTER TRIGGER line_no_truncate ON wallet.line_stored RENAME TO x'),
	('ALTER TABLE wallet.event ADD COLUMN note text'),
	('DELETE FROM wallet.line_stored'),
	-- a rewrite fires no row trigger: refused too
	('ALTER TABLE wallet.refund ALTER COLUMN amount TYPE bigint USING 1'),
	('ALTER TABLE wallet.event ALTER COLUMN balance_after TYPE bigint USING -999')) t(stmt);
RESET ROLE;
ALTER TABLE wallet.event DROP COLUMN note;
ALTER TABLE wallet.line_stored OWNER TO CURRENT_USER;
ALTER TABLE wallet.event OWNER TO CURRENT_USER;
ALTER TABLE wallet.refund OWNER TO CURRENT_USER;
REVOKE USAGE ON SCHEMA wallet FROM wallet_hardening_owner;
DROP ROLE wallet_hardening_owner;
-- any other role's DDL on its own tables goes on (it fires the event trigger too)
DO $$ BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wallet_hardening_plain') THEN
		CREATE ROLE wallet_hardening_plain NOLOGIN;
	END IF;
END $$;
GRANT CREATE ON SCHEMA public TO wallet_hardening_plain;
SET ROLE wallet_hardening_plain;
CREATE TABLE hardening_plain (a int);
CREATE FUNCTION hardening_plain_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER plain BEFORE INSERT ON hardening_plain FOR EACH ROW EXECUTE FUNCTION hardening_plain_f();
ALTER TABLE hardening_plain ADD COLUMN b int;
ALTER TABLE hardening_plain ALTER COLUMN b TYPE bigint USING 1;
ALTER TABLE hardening_plain DISABLE TRIGGER plain;
DROP TRIGGER plain ON hardening_plain;
DROP TABLE hardening_plain;
DROP FUNCTION hardening_plain_f();
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM wallet_hardening_plain;
DROP ROLE wallet_hardening_plain;
-- a superuser is not stopped
ALTER TABLE wallet.line_stored DISABLE TRIGGER line_append_only;
ALTER TABLE wallet.line_stored ENABLE TRIGGER line_append_only;
SELECT count(*) FROM wallet_verify();
-- and wallet_verify finds refund rows that no longer add up to what their event says was refunded
SELECT (wallet_refund((wallet_debit('dust', 'credits', 1, 'd6')).event_id, reason => 'r')).amount;
CREATE TEMP TABLE refund_copy AS SELECT * FROM wallet.refund;
ALTER TABLE wallet.refund DISABLE TRIGGER refund_append_only;
UPDATE wallet.refund SET amount = amount + 1 WHERE id = (SELECT max(id) FROM wallet.refund);
SELECT problem FROM wallet_verify();
UPDATE wallet.refund r SET amount = c.amount FROM refund_copy c WHERE c.id = r.id;
ALTER TABLE wallet.refund ENABLE TRIGGER refund_append_only;
SELECT count(*) FROM wallet_verify();

-- the suites share a database: leave nothing behind
DROP FUNCTION try(text), try_skipping(text, text), skip_row(), noise(int);
DROP TABLE skip_case;
