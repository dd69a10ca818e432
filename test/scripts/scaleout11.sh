#!/usr/bin/env bash
# Scale-out of wallet 1.1: two shard clusters and a router (wallet_proxy 1.1).
# The calls 1.1 adds or changes (a hold with dimensions under a member cap,
# authorize_hold, capture_lines, extend_hold, the single-limit setters,
# alerts and recharge, limits, scoped grants, available, credits, usage, a
# paged statement) run through the
# router and on one plain database: every outcome and the resulting state
# must be the same.  For a few customers the reads through the router must
# equal the same reads on the customer's own shard, line ids included; each
# call must have reached that shard (holds, extension, outbox rows of alerts).
# Then a 1.0 router is upgraded (CREATE EXTENSION wallet_proxy VERSION '1.0',
# ALTER EXTENSION wallet_proxy UPDATE): its functions (signature, result,
# arguments, body, privileges, comment) and members must be those of a fresh
# 1.1 router, and it must route the 1.1 calls.
#
# Run by make test (which builds and installs first), or by hand after
# make install: PGBIN=... bash test/scripts/scaleout11.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

N=16
work=$(mktemp -d /tmp/wallet-scaleout11.XXXXXX)
at_exit "rm -rf '$work'"
[[ -z ${SCALEOUT_KEEP:-} ]] || at_exit "cp -r '$work/.' '$SCALEOUT_KEEP'"	# outputs, to read

source "$(dirname "${BASH_SOURCE[0]}")/../suite.sh"

start_cluster shard0
start_cluster shard1
start_cluster router

# ---------------------------------------------------------------- set-up
for k in 0 1; do
  q "shard$k" postgres -c 'CREATE DATABASE wallet' \
    -c "ALTER DATABASE wallet SET wallet.shard = $k" \
    -c 'ALTER DATABASE wallet SET wallet.shards = 2'
  q "shard$k" wallet -c 'CREATE EXTENSION wallet'
done
q router postgres -c 'CREATE DATABASE single' -c 'CREATE DATABASE wallet' -c 'CREATE DATABASE old'
q router single -c 'CREATE EXTENSION wallet'
make_router router wallet shard0 shard1
check "a fresh router is wallet_proxy 1.1" 1.1 \
  "$(v router wallet "SELECT extversion FROM pg_extension WHERE extname = 'wallet_proxy'")"
check "wallet_outbox_claim is not routed" f \
  "$(v router wallet "SELECT to_regproc('public.wallet_outbox_claim') IS NOT NULL")"

# the end of the usage window: one value for every run
until=$(v router postgres "SELECT (now() + interval '1 hour')::text")

# ---------------------------------------------------------------- workload
# Only API calls, so the same text runs on the router and on one database;
# outcomes are printed without ids (a shard's ids carry routing bits).
workload() {
  cat <<'SQL'
SET client_min_messages = warning;
CREATE SCHEMA t;
SELECT wallet_create_asset('credits', 0, 0.01, 'API credits');
SELECT wallet_set_price('llm.in', 'credits', '{"model":"per_unit","unit_price":"1","per":1000}', '2020-01-01');
SELECT wallet_set_price('llm.out', 'credits', '{"model":"per_unit","unit_price":"4","per":1000}', '2020-01-01');
CREATE TABLE t.c AS
SELECT i, format('team-%s', lpad(i::text, 3, '0')) AS customer FROM generate_series(1, :n) i;
SELECT count(*) AS wallets FROM t.c, LATERAL wallet_create(c.customer) w;
SELECT count(*) AS grants FROM t.c, LATERAL wallet_grant(c.customer, 'credits', 500, external_ref => 'pay-' || c.i) g;
-- every member may spend 100 a day
SELECT count(*) AS caps FROM t.c, LATERAL wallet_set_cap(c.customer, 'credits', 100, 'day', 'member') s;

-- holds with dimensions: alice's second hold passes her cap when i % 3 = 2
CREATE TABLE t.h AS
SELECT s.i, s.k, r.*
  FROM (SELECT c.i, c.customer, k FROM t.c, generate_series(1, 3) k ORDER BY c.i, k) s,
	   LATERAL wallet_hold(s.customer, 'credits', 45 + (s.i % 3) * 5, format('h-%s-%s', s.i, s.k), '1 hour',
						   jsonb_build_object('member', CASE WHEN s.k < 3 THEN 'alice' ELSE 'bob' END)) r;
SELECT i, k, approved, replayed, reason, amount, balance FROM t.h ORDER BY i, k;
-- replayed by key
SELECT s.i, r.approved, r.replayed, r.reason, r.amount, r.hold_id = h.hold_id AS same_hold
  FROM (SELECT c.i, c.customer FROM t.c WHERE c.i % 4 = 1 ORDER BY c.i) s
  JOIN t.h ON h.i = s.i AND h.k = 1,
	   LATERAL wallet_hold(s.customer, 'credits', 45 + (s.i % 3) * 5, format('h-%s-1', s.i), '1 hour',
						   '{"member": "alice"}') r
 ORDER BY s.i;
SELECT c.i, x.asset, x.period, x.dimension, x.dim_value, x.cap, x.spent, x.remaining
  FROM (SELECT * FROM t.c WHERE i <= 3 ORDER BY i) c, LATERAL wallet_caps(c.customer) x
 ORDER BY c.i, x.asset, x.dim_value NULLS FIRST;
-- bob's holds: a heartbeat of 3 days for some, a release for others
SELECT h.i, r.approved, r.replayed, r.reason, r.amount, r.balance, r.hold_id = h.hold_id AS same_hold
  FROM (SELECT * FROM t.h WHERE k = 3 AND approved AND i % 2 = 0 ORDER BY i) h,
	   LATERAL wallet_extend_hold(h.hold_id, '3 days') r
 ORDER BY h.i;
SELECT h.i, r.approved, r.amount, r.balance
  FROM (SELECT * FROM t.h WHERE k = 3 AND approved AND i % 2 = 1 ORDER BY i) h,
	   LATERAL wallet_release(h.hold_id) r
 ORDER BY h.i;

-- priced holds for carol (80 + 4 i, under her cap of 100 only up to i = 5), captured in two lines
CREATE TABLE t.ah AS
SELECT s.i, r.*
  FROM (SELECT c.i, c.customer FROM t.c ORDER BY c.i) s,
	   LATERAL wallet_authorize_hold(s.customer, 'llm.out', 20000 + s.i * 1000, 'ah-' || s.i,
									 '{"member": "carol"}', '10 minutes') r;
SELECT i, approved, replayed, reason, asset, amount, balance FROM t.ah ORDER BY i;
SELECT h.i, r.approved, r.reason, r.amount, r.balance
  FROM (SELECT * FROM t.ah WHERE approved ORDER BY i) h, LATERAL wallet_extend_hold(h.hold_id, '1 hour') r
 ORDER BY h.i;
CREATE TABLE t.lines AS
SELECT h.i, h.hold_id,
	   jsonb_build_array(
		 jsonb_build_object('meter', 'llm.in', 'quantity', 12000, 'dimensions', '{"member": "carol"}'::jsonb),
		 jsonb_build_object('meter', 'llm.out', 'quantity', 10000 + h.i * 1000 * (h.i % 2),
							'dimensions', '{"member": "carol"}'::jsonb, 'cost', 0.01 * h.i)) AS lines
  FROM t.ah h WHERE h.approved;
SELECT l.i, r.ordinality, r.approved, r.replayed, r.reason, r.asset, r.amount, r.balance,
	   r.hold_id = l.hold_id AS same_hold
  FROM (SELECT * FROM t.lines ORDER BY i) l, LATERAL wallet_capture_lines(l.hold_id, l.lines) WITH ORDINALITY r
 ORDER BY l.i, r.ordinality;
-- asked again: the stored results
SELECT l.i, r.ordinality, r.approved, r.replayed, r.amount, r.balance
  FROM (SELECT * FROM t.lines WHERE i % 2 = 1 ORDER BY i) l,
	   LATERAL wallet_capture_lines(l.hold_id, l.lines) WITH ORDINALITY r
 ORDER BY l.i, r.ordinality;

-- limits one at a time, alerts, recharge
SELECT count(*) AS overdrafts FROM t.c, LATERAL wallet_set_overdraft(c.customer, 'credits', 25) s WHERE c.i % 2 = 0;
SELECT count(*) AS max_holds FROM t.c, LATERAL wallet_set_max_holds(c.customer, 'credits', 3) s WHERE c.i % 3 = 0;
SELECT count(*) AS alerts FROM t.c, LATERAL wallet_set_alert(c.customer, 'credits', 300) s;
SELECT count(*) AS alerts FROM t.c, LATERAL wallet_set_alert(c.customer, 'credits', 100) s WHERE c.i % 2 = 1;
SELECT count(*) AS alerts_off FROM t.c, LATERAL wallet_set_alert(c.customer, 'credits', 300, false) s WHERE c.i % 4 = 1;
SELECT count(*) AS recharges FROM t.c, LATERAL wallet_set_recharge(c.customer, 'credits', 50, 400, 1000) s
 WHERE c.i % 5 = 0;
SELECT c.i, l.* FROM t.c, LATERAL wallet_limits(c.customer) l ORDER BY c.i, l.asset;
-- spend down (each debit a member of its own, so the caps do not stop it): alerts, overdraft
CREATE TABLE t.d AS
SELECT s.i, s.k, r.*
  FROM (SELECT c.i, c.customer, k FROM t.c, generate_series(1, 6) k ORDER BY c.i, k) s,
	   LATERAL wallet_debit(s.customer, 'credits', 70 + s.i % 4, format('d-%s-%s', s.i, s.k),
							jsonb_build_object('member', 'm' || s.k)) r;
SELECT i, k, approved, reason, amount, balance FROM t.d ORDER BY i, k;
SELECT c.i, l.* FROM t.c, LATERAL wallet_limits(c.customer) l WHERE c.i % 5 = 0 ORDER BY c.i, l.asset;

-- scoped credits: 50 that serve only llm.* of model gpt, drawn first by such a debit
SELECT count(*) AS scoped FROM t.c,
	   LATERAL wallet_grant(c.customer, 'credits', 50, priority => 10, external_ref => 'scoped-' || c.i,
							scope => '{"meters": ["llm.*"], "dimensions": {"model": "gpt"}}') g
 WHERE c.i % 2 = 0;
SELECT s.i, r.approved, r.reason, r.amount, r.balance
  FROM (SELECT c.i, c.customer FROM t.c ORDER BY c.i) s,
	   LATERAL wallet_authorize_debit(s.customer, 'llm.in', 30000, 'scoped-use-' || s.i,
									  '{"model": "gpt", "member": "erin"}') r
 ORDER BY s.i;
SELECT c.i, a.* FROM t.c, LATERAL wallet_available(c.customer, 'llm.in', '{"model": "gpt"}') a
 ORDER BY c.i, a.asset;
SELECT c.i, a.* FROM t.c, LATERAL wallet_available(c.customer, NULL) a ORDER BY c.i, a.asset;
SELECT c.i, x.ordinality, x.asset, x.category, x.amount, x.remaining, x.reserved, x.expires_at, x.scope
  FROM t.c, LATERAL wallet_credits(c.customer) WITH ORDINALITY x ORDER BY c.i, x.ordinality;

-- reads for billing pages
SELECT c.i, u.key, u.asset, u.events, u.quantity, u.amount
  FROM t.c, LATERAL wallet_usage(c.customer, '-infinity', :'until', 'month', 'meter') u
 WHERE c.i % 3 = 1 ORDER BY c.i, u.key, u.asset;
SELECT c.i, u.key, u.events, u.quantity, u.amount
  FROM t.c, LATERAL wallet_usage(c.customer, '-infinity', :'until', 'month', group_by => 'member') u
 WHERE c.i % 3 = 2 ORDER BY c.i, u.key;
SELECT r.ordinality, r.asset, r.kind, r.amount, r.balance
  FROM wallet_statement('team-004', max_lines => 4) WITH ORDINALITY r ORDER BY r.ordinality;
SELECT r.line_id AS last FROM wallet_statement('team-004', max_lines => 4) WITH ORDINALITY r
 WHERE r.line_id IS NOT NULL ORDER BY r.ordinality DESC LIMIT 1 \gset
SELECT r.ordinality, r.asset, r.kind, r.amount, r.balance
  FROM wallet_statement('team-004', after_line => :last, max_lines => 4) WITH ORDINALITY r ORDER BY r.ordinality;
SELECT c.i, b.* FROM t.c, LATERAL wallet_balances(c.customer) b ORDER BY c.i, b.asset;

-- errors keep their SQLSTATE through the router
\set ON_ERROR_STOP 0
\set VERBOSITY sqlstate
SELECT * FROM wallet_extend_hold((SELECT hold_id FROM t.ah WHERE approved ORDER BY i LIMIT 1), '1 hour');
SELECT * FROM wallet_capture_lines(12345, '[{"meter": "llm.in", "quantity": 1}]');
SELECT * FROM wallet_hold('team-001', 'credits', 1, 'bad-dims', '1 hour', '[1, 2]');
SELECT wallet_set_overdraft('team-002', 'credits', 0);
SELECT wallet_set_alert('team-001', 'nope', 1);
SELECT * FROM wallet_statement('team-001', max_lines => 0);
SELECT * FROM wallet_usage('team-001', now(), now() - interval '1 day');
\set VERBOSITY default
\set ON_ERROR_STOP 1
SQL
}

# What must match between the router and the plain database.
state() {
  cat <<'SQL'
SET client_min_messages = warning;
SELECT customer, asset, available, held, granted, overdraft FROM wallet.balances ORDER BY customer, asset;
SELECT customer, asset, meter, count(*), sum(amount), sum(cost), sum(refunded) FROM wallet.events
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT customer, asset, kind, count(*), sum(amount) FROM wallet.ledger GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT customer, asset, category, scope, count(*), sum(amount), sum(remaining) FROM wallet.grants
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, scope::text NULLS FIRST;
SELECT count(*) AS problems FROM wallet_verify();
SQL
}

# run CLUSTER DB OUT: the workload
run() {
  workload | q "$1" "$2" -A -v n="$N" -v until="$until" >"$3" 2>&1 ||
    { echo "workload on $1/$2 failed:"; cat "$3"; exit 1; }
}

run router wallet "$work/router.out"
run router single "$work/single.out"
same "1.1 calls: every outcome through the router equals one database" "$work/single.out" "$work/router.out"
grep -q 'spend_cap' "$work/single.out" && ok "the member cap declines a hold" || fail "no spend_cap decline"
grep -q '{"meters": \["llm.\*"\]' "$work/single.out" && ok "scoped grants are listed with their scope" ||
  fail "no scope in wallet_credits"
grep -q '|t|t|' "$work/single.out" && ok "replays are replayed" || fail "nothing replayed"
for code in WL005 WL007 22023 WL002; do
  grep -q "ERROR:  $code" "$work/router.out" && ok "router error $code" || fail "router error $code missing"
done
state | q router wallet -A >"$work/router_state.out"
state | q router single -A >"$work/single_state.out"
same "1.1 calls: balances, events and ledger equal one database" "$work/single_state.out" "$work/router_state.out"
check "router: wallet_verify clean" 0 "$(v router wallet 'SELECT count(*) FROM wallet_verify()')"
for k in 0 1; do
  check "shard $k: wallet_verify clean" 0 "$(v "shard$k" wallet 'SELECT count(*) FROM wallet_verify()')"
  check "shard $k: wallet_shard_check clean" 0 "$(v "shard$k" wallet 'SELECT count(*) FROM wallet_shard_check()')"
done

# the outbox rows (alerts, recharges, declines) were written on the customers' shards
outbox='SELECT customer, kind, count(*) FROM wallet.outbox GROUP BY 1, 2'
{ v shard0 wallet "$outbox"; v shard1 wallet "$outbox"; } | sort >"$work/router_outbox.out"
v router single "$outbox" | sort >"$work/single_outbox.out"
same "outbox rows on the shards equal one database's" "$work/single_outbox.out" "$work/router_outbox.out"
grep -q '|low_balance|' "$work/single_outbox.out" && ok "alerts fired" || fail "no low_balance row"
grep -q '|recharge|' "$work/single_outbox.out" && ok "recharges opened" || fail "no recharge row"

# ------------------------------------------- the router reads the shard's own numbers
reads() {
  cat <<'SQL'
SET client_min_messages = warning;
SELECT * FROM wallet_limits(:'c');
SELECT * FROM wallet_balances(:'c');
SELECT * FROM wallet_caps(:'c') ORDER BY asset, dim_value NULLS FIRST;
SELECT * FROM wallet_credits(:'c');
SELECT * FROM wallet_available(:'c', 'llm.in', '{"model": "gpt"}');
SELECT * FROM wallet_available(:'c', NULL);
SELECT * FROM wallet_usage(:'c', '-infinity', :'until', 'day', 'member');
SELECT * FROM wallet_usage(:'c', '-infinity', :'until', 'hour', 'meter');
SELECT r.ordinality, r.asset, CASE WHEN r.kind = 'closing' THEN NULL ELSE r.at END AS at, r.kind, r.description,
	   r.amount, r.balance, r.line_id, r.grant_id, r.event_id, r.hold_id
  FROM wallet_statement(:'c', max_lines => 5) WITH ORDINALITY r ORDER BY r.ordinality;
SELECT r.line_id AS last FROM wallet_statement(:'c', max_lines => 5) WITH ORDINALITY r
 WHERE r.line_id IS NOT NULL ORDER BY r.ordinality DESC LIMIT 1 \gset
SELECT r.ordinality, r.asset, CASE WHEN r.kind = 'closing' THEN NULL ELSE r.at END AS at, r.kind, r.description,
	   r.amount, r.balance, r.line_id, r.grant_id, r.event_id, r.hold_id
  FROM wallet_statement(:'c', after_line => :last, max_lines => 5) WITH ORDINALITY r ORDER BY r.ordinality;
SQL
}
seen=
for c in team-001 team-002 team-003 team-004 team-005 team-006; do
  owner=$(v shard0 wallet "SELECT wallet._shard_owner('$c')")
  seen+=$owner
  reads | q router wallet -A -v c="$c" -v until="$until" >"$work/router_$c.out" 2>&1 || true
  reads | q "shard$owner" wallet -A -v c="$c" -v until="$until" >"$work/shard_$c.out" 2>&1 || true
  same "$c: limits, balances, caps, usage and statement pages through the router equal shard $owner's" \
    "$work/shard_$c.out" "$work/router_$c.out"
  check "$c: only shard $owner has the wallet" "1 0" \
    "$(v "shard$owner" wallet "SELECT count(*) FROM wallet.wallet WHERE customer = '$c'") $(v "shard$((1 - owner))" wallet "SELECT count(*) FROM wallet.wallet WHERE customer = '$c'")"
done
[[ $seen == *0* && $seen == *1* ]] && ok "the customers compared live on both shards" || fail "all on one shard: $seen"
check "team-004: both statement pages open with a balance" 2 "$(grep -c '|opening|' "$work/router_team-004.out")"

# the heartbeat and the holds' dimensions reached the owner's shard
ext=0
for k in 0 1; do
  ext=$((ext + $(v "shard$k" wallet "SELECT count(*) FROM wallet.hold
	WHERE status = 'open' AND expires_at > now() + interval '2 days'")))
done
check "extended holds expire in 3 days on their shards" "$(v router single "SELECT count(*) FROM wallet.hold
	WHERE status = 'open' AND expires_at > now() + interval '2 days'")" "$ext"
((ext > 0)) && ok "some holds were extended" || fail "no hold extended"
dims=0
for k in 0 1; do
  dims=$((dims + $(v "shard$k" wallet "SELECT count(*) FROM wallet.hold WHERE dimensions ->> 'member' = 'alice'")))
done
check "holds keep their dimensions on the shards" \
  "$(v router single "SELECT count(*) FROM wallet.hold WHERE dimensions ->> 'member' = 'alice'")" "$dims"

# the router's privileges: wallet_app holds and reads, wallet_finance reads, only wallet_admin sets limits
for name in shard0 shard1 router; do
  q "$name" postgres -c 'CREATE ROLE app_user LOGIN IN ROLE wallet_app' \
    -c 'CREATE ROLE finance_user LOGIN IN ROLE wallet_finance'
done
q router wallet -c 'GRANT USAGE ON FOREIGN SERVER wallet_cluster TO wallet_app, wallet_finance'
as_role() { psql -X -q -At -h "$router_HOST" -p "$router_PORT" -U "$1" -d wallet -c '\set VERBOSITY sqlstate' -c "$2" 2>&1; }
check "wallet_app holds with dimensions through the router" t \
  "$(as_role app_user "SELECT approved FROM wallet_hold('team-007', 'credits', 1, 'as-app', '1 minute', '{\"member\": \"zoe\"}')")"
check "wallet_app reads its limits" 1 "$(as_role app_user "SELECT count(*) FROM wallet_limits('team-007')")"
check "wallet_app reads its credits" t "$(as_role app_user "SELECT count(*) > 0 FROM wallet_credits('team-008')")"
check "wallet_app may not grant (42501)" "ERROR:  42501" \
  "$(as_role app_user "SELECT wallet_grant('team-007', 'credits', 5, scope => '{}')")"
check "wallet_finance sees the scopes of every shard's grants" "$((N / 2))" \
  "$(as_role finance_user "SELECT count(*) FROM wallet.grants WHERE scope IS NOT NULL")"
check "wallet_app may not set an alert (42501)" "ERROR:  42501" \
  "$(as_role app_user "SELECT wallet_set_alert('team-007', 'credits', 5)")"
check "wallet_finance reads a statement page" t \
  "$(as_role finance_user "SELECT count(*) > 0 FROM wallet_statement('team-007', max_lines => 2)")"
check "wallet_finance may not capture (42501)" "ERROR:  42501" \
  "$(as_role finance_user "SELECT * FROM wallet_capture_lines(1, '[]')")"

# ------------------------------------------------------ upgrading a 1.0 router
q router old >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION wallet_proxy VERSION '1.0' CASCADE;
CREATE SERVER wallet_cluster FOREIGN DATA WRAPPER plproxy OPTIONS (
	p0 'host=$shard0_HOST port=$shard0_PORT dbname=wallet', p1 'host=$shard1_HOST port=$shard1_PORT dbname=wallet');
CREATE USER MAPPING FOR PUBLIC SERVER wallet_cluster;
SQL
check "the old router is 1.0" "1.0|wallet_hold(text,text,numeric,text,interval)" \
  "$(v router old "SELECT extversion, 'wallet_hold(text,text,numeric,text,interval)'::regprocedure
	FROM pg_extension WHERE extname = 'wallet_proxy'" | tr -d ' ')"
check "a 1.0 router in front of 1.1 shards holds" "t|45" \
  "$(v router old "SELECT wallet_create('upgraded-1'), wallet_grant('upgraded-1', 'credits', 300),
	wallet_set_cap('upgraded-1', 'credits', 50, 'day', 'member')" >/dev/null
	v router old "SELECT approved, amount FROM wallet_hold('upgraded-1', 'credits', 45, 'old-router', '1 minute')")"
q router old -c 'ALTER EXTENSION wallet_proxy UPDATE'
check "ALTER EXTENSION wallet_proxy UPDATE makes it 1.1" 1.1 \
  "$(v router old "SELECT extversion FROM pg_extension WHERE extname = 'wallet_proxy'")"
catalog() {
  cat <<'SQL'
SELECT p.oid::regprocedure, pg_get_function_result(p.oid), pg_get_function_arguments(p.oid), p.proacl,
	   obj_description(p.oid, 'pg_proc'), l.lanname, p.provolatile, p.prosecdef, p.proconfig, md5(p.prosrc)
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wallet_proxy'
  JOIN pg_language l ON l.oid = p.prolang
 ORDER BY p.oid::regprocedure::text;
SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wallet_proxy'
 WHERE d.deptype = 'e' ORDER BY 1;
SELECT c.relname, c.relacl, obj_description(c.oid, 'pg_class') FROM pg_class c
 WHERE c.relnamespace = 'wallet'::regnamespace ORDER BY 1;
SQL
}
catalog | q router old -A >"$work/upgraded_catalog.out"
catalog | q router wallet -A >"$work/fresh_catalog.out"
same "upgraded router: functions, privileges, comments and members equal a fresh 1.1 router's" \
  "$work/fresh_catalog.out" "$work/upgraded_catalog.out"
grep -q '^wallet_capture_lines(bigint,jsonb)|SETOF wallet_result|hold_id bigint, lines jsonb|{' "$work/fresh_catalog.out" &&
  ok "the catalog lists the 1.1 functions" || fail "wallet_capture_lines missing from the catalog"
check "no 1.1 router function is open to PUBLIC" 0 "$(v router wallet "SELECT count(*) FROM pg_proc p
	JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wallet_proxy'
	WHERE p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0)")"
check "the upgraded router routes a hold with dimensions" "t|45" \
  "$(v router old "SELECT approved, amount
	FROM wallet_hold('upgraded-1', 'credits', 45, 'old-router-2', '1 minute', '{\"member\": \"alice\"}')")"
check "... and alice's next hold passes her member cap" "f|spend_cap" \
  "$(v router old "SELECT approved, reason
	FROM wallet_hold('upgraded-1', 'credits', 10, 'old-router-3', '1 minute', '{\"member\": \"alice\"}')")"
check "the upgraded router routes a capture of lines" "t|t" \
  "$(v router old "SELECT bool_and(approved), bool_and(hold_id IS NOT NULL) FROM wallet_capture_lines(
	(SELECT hold_id FROM wallet_authorize_hold('upgraded-1', 'llm.in', 1000, 'old-router-4')),
	'[{\"meter\": \"llm.in\", \"quantity\": 500}]')")"
check "router: wallet_verify clean at the end" 0 "$(v router old 'SELECT count(*) FROM wallet_verify()')"

((failures == 0)) || { echo "$failures failed"; exit 1; }
echo "all passed"
