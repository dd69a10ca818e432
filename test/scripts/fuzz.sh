#!/usr/bin/env bash
# Fuzz: for a bounded time (WALLET_FUZZ_SECONDS, default 60), random calls of
# the public functions with random and hostile arguments (empty, huge, control
# characters, NaN, infinities, many decimals, negative interval fields, json of
# any shape, times at infinity).  Checks: the server never crashes, no error is
# XX000 or without a specific SQLSTATE (P0001, 54000 from an index), and
# wallet_verify() stays clean.  The seed is printed; WALLET_FUZZ_SEED=<seed>
# replays the same sequence of calls.
set -euo pipefail
source "$WALLET_ROOT/test/lib.sh"
start_cluster fuzz
export PGHOST=$fuzz_HOST PGPORT=$fuzz_PORT PGDATABASE=postgres
seed=${WALLET_FUZZ_SEED:-$((RANDOM % 10000))}
seconds=${WALLET_FUZZ_SECONDS:-60}
echo "fuzz: seed $seed (replay with WALLET_FUZZ_SEED=$seed), $seconds s"

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('credits', 0), wallet_create_asset('usd', 6), wallet_create_asset('nano', 12);
SELECT wallet_create('c' || i), wallet_grant('c' || i, 'credits', 1000), wallet_grant('c' || i, 'usd', 50)
  FROM generate_series(1, 5) i;
SELECT wallet_set_price('flat', 'credits', '{"model": "flat", "price": "1"}');
SELECT wallet_set_price('grad', 'credits', '{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "0"}, {"unit_price": "0.5"}]}');
SELECT wallet_set_price('mx', 'usd', '{"model": "matrix", "dimensions": ["model"], "rates": [{"match": {"model": "a"}, "rule": {"model": "per_unit", "unit_price": "0.001"}}], "default": {"model": "flat", "price": "0.01"}}');
SELECT wallet_set_cap('c1', 'credits', 50, 'day', 'user'), wallet_set_limit('c2', 'credits', low_balance => 900);

-- pools of values: per kind of argument the valid ones, and the hostile ones
-- any argument gets a quarter of the time
CREATE TABLE fz_text (kind text, v text);
INSERT INTO fz_text SELECT 'customer', v FROM unnest(ARRAY['c1', 'c2', 'c3', 'c4', 'c5', 'nobody']) v;
INSERT INTO fz_text SELECT 'asset', v FROM unnest(ARRAY['credits', 'credits', 'usd', 'nano']) v;
INSERT INTO fz_text SELECT 'meter', v FROM unnest(ARRAY['flat', 'grad', 'mx', 'none']) v;
INSERT INTO fz_text SELECT 'category', v FROM unnest(ARRAY['paid', 'bundled', 'promotional']) v;
INSERT INTO fz_text SELECT 'period', v FROM unnest(ARRAY['day', 'hour', 'week', 'month']) v;
INSERT INTO fz_text SELECT 'dimension', v FROM unnest(ARRAY['user', 'model', NULL]) v;
INSERT INTO fz_text SELECT 'status', v FROM unnest(ARRAY['active', 'active', 'active', 'frozen', 'closed']) v;
INSERT INTO fz_text SELECT 'ref', v FROM unnest(ARRAY['pay-1', 'pay-2', NULL, NULL]) v;
INSERT INTO fz_text SELECT 'plan', v FROM unnest(ARRAY['gold', 'silver']) v;
INSERT INTO fz_text SELECT 'hostile', v FROM unnest(ARRAY[NULL, '', ' ', 'k', repeat('x', 255), repeat('x', 256),
	repeat('x', 257), repeat('y', 3000), repeat('z', 100000), repeat(chr(1), 2000), repeat(U&'\+01F600', 70),
	repeat(U&'\+01F600', 127), E'\n\t\\"''%s%n', 'Robert''); DROP TABLE wallet.event;--', 'c1 ', 'C1']) v;
CREATE TABLE fz_num (v numeric);
INSERT INTO fz_num VALUES (NULL), (0), (-0), (1), (2), (7), (-1), (0.5), (0.000001), (1e-30), (1e-31),
	(1e-400), (1e400), (9223372036854775807), (9223372036854775808), (-9223372036854775808),
	('NaN'), ('Infinity'), ('-Infinity'), (1000000), (10000000000), (('1.' || repeat('0', 40))::numeric),
	(123456789.123456789123456789), (100), (3);
CREATE TABLE fz_json (v jsonb);
INSERT INTO fz_json VALUES (NULL), ('{}'), ('[]'), ('"s"'), ('1'), ('null'), ('{"user": "u1"}'),
	('{"user": "u2", "model": "a"}'), ('{"model": "a"}'), ('{"model": "b"}'), ('{"user": null}'),
	('{"user": [1, 2, {"a": "b"}]}'), ('{"user": {"deep": {"deeper": 1}}}'),
	(jsonb_build_object('user', repeat('v', 1024))), (jsonb_build_object('user', repeat('v', 1025))),
	(jsonb_build_object(repeat('k', 128), 1)), (jsonb_build_object('user', repeat(chr(1), 1000))),
	(('{"a":' || repeat('[', 3000) || repeat(']', 3000) || '}')::jsonb),
	('{"model": "flat", "price": "1"}'), ('{"model": "per_unit", "unit_price": "0.0000001", "per": 3}'),
	('{"model": "graduated", "tiers": [{"up_to": 1, "unit_price": "1"}, {"unit_price": "2"}]}'),
	('{"model": "volume", "tiers": [{"up_to": "inf", "unit_price": "1"}]}'),
	('{"model": "package", "size": 0, "price": "1"}'), ('{"model": "matrix", "dimensions": ["model"], "rates": []}'),
	('{"model": "flat", "price": "1e400"}'), ('{"model": "flat", "price": "NaN"}'), ('{"model": "nope"}'),
	(jsonb_build_object('model', 'graduated', 'tiers',
		(SELECT jsonb_agg(jsonb_build_object('up_to', i, 'unit_price', '1')) FROM generate_series(1, 2000) i)));
CREATE TABLE fz_iv (v interval);
INSERT INTO fz_iv VALUES (NULL), ('1 second'), ('1 day'), ('1 month'), ('1 month -30 days 1 microsecond'),
	('1 day -23:59:59.999999'), ('-1 day'), ('0'), ('100 years'), ('1 microsecond'), ('1 mon 1 day');
CREATE TABLE fz_ts (v timestamptz);
INSERT INTO fz_ts VALUES (NULL), ('infinity'), ('-infinity'), ('4713-01-01 BC'), ('294276-12-31'),
	(now()), (now() - interval '1 day'), (now() - interval '40 days'), (now() + interval '1 hour'),
	(now() - interval '20 days');
CREATE TABLE fz_seen (fn text, state text, msg text);
GRANT SELECT ON fz_text, fz_num, fz_json, fz_iv, fz_ts TO wallet_app;
GRANT INSERT ON fz_seen TO wallet_app;
SQL

# one call of a random function with random arguments; its SQLSTATE (or ok) goes to fz_seen
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE FUNCTION fz_t(k text) RETURNS text LANGUAGE sql AS $$
	SELECT CASE WHEN k = 'key' AND random() < 0.75 THEN 'k' || floor(random() * 100000)::text
				ELSE (SELECT v FROM fz_text WHERE kind = CASE WHEN random() < 0.75 THEN k ELSE 'hostile' END
					   ORDER BY random() LIMIT 1) END
$$;
CREATE FUNCTION fz_n() RETURNS numeric LANGUAGE sql AS $$
	SELECT CASE WHEN random() < 0.6 THEN (1 + floor(random() * 20))::numeric
				ELSE (SELECT v FROM fz_num ORDER BY random() LIMIT 1) END
$$;
CREATE FUNCTION fz_j() RETURNS jsonb LANGUAGE sql AS 'SELECT v FROM fz_json ORDER BY random() LIMIT 1';
CREATE FUNCTION fz_i() RETURNS interval LANGUAGE sql AS 'SELECT v FROM fz_iv ORDER BY random() LIMIT 1';
CREATE FUNCTION fz_ts() RETURNS timestamptz LANGUAGE sql AS $$
	SELECT CASE WHEN random() < 0.5 THEN now() ELSE (SELECT v FROM fz_ts ORDER BY random() LIMIT 1) END
$$;
CREATE FUNCTION fz_id() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS
	$$SELECT (ARRAY[NULL, 0, 1, 2, 3, 5, 10, -1, 9223372036854775807, (SELECT max(id) FROM wallet.event),
	                (SELECT max(id) FROM wallet.hold), (SELECT max(id) FROM wallet.grant_block)])[1 + floor(random() * 12)::int]$$;

CREATE FUNCTION fz_call() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	fn int := floor(random() * 22)::int;
	name text;
	st text;
	m text;
BEGIN
	BEGIN
		CASE fn
		WHEN 0 THEN name := 'create'; PERFORM wallet_create(fz_t('customer'), fz_j());
		WHEN 1 THEN name := 'grant'; PERFORM wallet_grant(fz_t('customer'), fz_t('asset'), fz_n(), expires_at => fz_ts(),
			effective_at => fz_ts(), category => fz_t('category'), external_ref => fz_t('ref'), recurrence => fz_i(),
			rollover_max => fz_n());
		WHEN 2 THEN name := 'debit'; PERFORM wallet_debit(fz_t('customer'), fz_t('asset'), fz_n(), fz_t('key'), fz_j(), fz_n());
		WHEN 3 THEN name := 'authorize_debit'; PERFORM wallet_authorize_debit(fz_t('customer'), fz_t('meter'), fz_n(), fz_t('key'),
			fz_j(), fz_ts(), fz_n());
		WHEN 4 THEN name := 'hold'; PERFORM wallet_hold(fz_t('customer'), fz_t('asset'), fz_n(), fz_t('key'), fz_i());
		WHEN 5 THEN name := 'capture'; PERFORM wallet_capture(fz_id(), fz_t('meter'), fz_n(), fz_j(), fz_n());
		WHEN 6 THEN name := 'release'; PERFORM wallet_release(fz_id());
		WHEN 7 THEN name := 'refund'; PERFORM wallet_refund(fz_id(), fz_n());
		WHEN 8 THEN name := 'void_grant'; PERFORM wallet_void_grant(fz_id(), fz_t('hostile'));
		WHEN 9 THEN name := 'set_price'; PERFORM wallet_set_price(fz_t('meter'), fz_t('asset'), fz_j(), fz_ts());
		WHEN 10 THEN name := 'set_cap'; PERFORM wallet_set_cap(fz_t('customer'), fz_t('asset'), fz_n(), fz_t('period'), fz_t('dimension'));
		WHEN 11 THEN name := 'set_limit'; PERFORM wallet_set_limit(fz_t('customer'), fz_t('asset'), fz_n(), fz_n());
		WHEN 12 THEN name := 'set_status'; PERFORM wallet_set_status(fz_t('customer'), fz_t('status'));
		WHEN 13 THEN name := 'quote'; PERFORM wallet_quote(fz_t('customer'), fz_t('meter'), fz_n(), fz_j());
		WHEN 14 THEN name := 'ingest'; PERFORM * FROM wallet_ingest(
			(SELECT jsonb_agg(jsonb_build_object('customer', fz_t('customer'), 'meter', fz_t('meter'), 'quantity', fz_n(),
												 'idempotency_key', fz_t('key'), 'dimensions', fz_j()))
			   FROM generate_series(1, 1 + floor(random() * 5)::int)));
		WHEN 15 THEN name := 'balance'; PERFORM wallet_balance(fz_t('customer'), fz_t('asset'));
		WHEN 16 THEN name := 'balances'; PERFORM * FROM wallet_balances(fz_t('customer'));
		WHEN 17 THEN name := 'statement'; PERFORM * FROM wallet_statement(fz_t('customer'), fz_ts());
		WHEN 18 THEN name := 'record_cost'; PERFORM wallet_record_cost(fz_id(), fz_n(), fz_j());
		WHEN 19 THEN name := 'sweep'; PERFORM wallet_sweep(fz_ts());
		WHEN 20 THEN name := 'assign_plan'; PERFORM wallet_assign_plan(fz_t('customer'), fz_t('plan'));
		ELSE name := 'create_asset'; PERFORM wallet_create_asset(fz_t('asset'), floor(random() * 20)::int - 3);
		END CASE;
		INSERT INTO fz_seen VALUES (name, 'ok', NULL);
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT;
		INSERT INTO fz_seen VALUES (name, st, left(m, 200));
	END;
END
$$;
SQL

# batches of calls, one transaction each, until the time is up, every other one
# as wallet_app (whose calls of admin functions are 42501); a crash ends psql
# with an error
deadline=$((SECONDS + seconds))
batch=0
while ((SECONDS < deadline)); do
	role=$( ((batch % 2)) && echo wallet_app || echo postgres)
	timeout 120 psql -X -q -v ON_ERROR_STOP=1 -c "SET ROLE $role" \
		-c "SELECT setseed(($seed * 1000 + $batch) % 2000000 / 2000000.0)" \
		-c "SET statement_timeout = '30s'" -c "SELECT fz_call() FROM generate_series(1, 50)" >/dev/null || {
		echo "fuzz: batch $batch of seed $seed failed (a crash, or a call past statement_timeout)" >&2
		exit 1
	}
	batch=$((batch + 1))
done

out=$(mktemp)
at_exit "rm -f '$out'"
psql -X -At -v ON_ERROR_STOP=1 <<'SQL' >"$out"
SELECT 'calls ' || count(*) || ', errors ' || count(*) FILTER (WHERE state <> 'ok') FROM fz_seen;
SELECT 'state ' || state || ' ' || count(*) || ' (' || min(fn || ': ' || coalesce(msg, '')) || ')'
  FROM fz_seen GROUP BY state ORDER BY state;
SELECT 'bad ' || fn || ' ' || state || ' ' || msg FROM fz_seen
 WHERE state IN ('XX000', 'P0001', '54000') OR state LIKE '58%' OR state LIKE 'XX%';
SELECT 'verify ' || count(*) FROM wallet_verify();
SQL
cat "$out"
echo "fuzz: seed $seed, $batch batches"
if grep -q '^bad ' "$out" || ! grep -qx 'verify 0' "$out"; then
	echo "fuzz: FAILED (replay with WALLET_FUZZ_SEED=$seed)" >&2
	exit 1
fi
