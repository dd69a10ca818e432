#!/usr/bin/env bash
# Scale-out suite: two shard clusters and one router cluster (PL/Proxy,
# extension wallet_proxy), each on its own unix socket.  The same workload
# (a few hundred customers: grants, limits, debits, authorized debits,
# replays, spend caps, holds, captures, releases, costs, refunds, voids, the sweep,
# errors) runs through the router and against one plain database; every
# call's outcome, every customer's balances, events, ledger and statement,
# and the finance views must be the same.  The roles keep their rights
# through the router.  Then shard 0 is
# split in two (2 -> 4 partitions, shard 1 listed twice), each half prunes
# the other's customers, and a second workload (captures of holds made before
# the split, refunds of old events, new customers) must again match the
# plain database.  wallet_verify must be clean on every shard.
#
# Run by make test (which builds and installs first), or by hand after
# make install: PGBIN=... bash test/scripts/scaleout.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

N=${SCALEOUT_CUSTOMERS:-300}		# customers of the first workload
N2=$((N + 40))					# customers after the second
work=$(mktemp -d /tmp/wallet-scaleout.XXXXXX)
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
q router postgres -c 'CREATE DATABASE single' -c 'CREATE DATABASE wallet'
q router single -c 'CREATE EXTENSION wallet'
make_router router wallet shard0 shard1
check "wallet.shard of shard 1" 1 "$(v shard1 wallet 'SHOW wallet.shard')"


# ------------------------------------------------------------- workloads
# Only API calls, so the same text runs on the router and on one database.
# Outcomes are printed without ids (ids differ: a shard's carry routing bits);
# ids the workload needs later are kept in tables of schema t.
workload1() {
  cat <<'SQL'
SET client_min_messages = warning;
CREATE SCHEMA t;
SELECT wallet_create_asset('credits', 0, 0.01, 'API credits');
SELECT wallet_create_asset('USD', 2);
SELECT wallet_set_price('chat', 'credits', '{"model":"per_unit","unit_price":"3","per":1000}', '2020-01-01');
SELECT wallet_set_price('render', 'USD', '{"model":"flat","price":"0.25"}', '2020-01-01');

CREATE TABLE t.c AS
SELECT i, format('cust-%s', lpad(i::text, 4, '0')) AS customer FROM generate_series(1, :n) i;
SELECT count(*) AS wallets FROM t.c, LATERAL wallet_create(c.customer, jsonb_build_object('i', c.i)) w;

CREATE TABLE t.g AS
SELECT c.i, 'paid' AS kind, wallet_grant(c.customer, 'credits', 100 + (c.i % 7) * 10, external_ref => 'pay-' || c.i) AS id
  FROM t.c
UNION ALL
SELECT c.i, 'promo', wallet_grant(c.customer, 'credits', 20, priority => 50, category => 'promotional')
  FROM t.c WHERE c.i % 3 = 0
UNION ALL
SELECT c.i, 'usd', wallet_grant(c.customer, 'USD', 5.00, external_ref => 'usd-' || c.i)
  FROM t.c WHERE c.i % 5 = 0;
SELECT kind, count(*) FROM t.g GROUP BY kind ORDER BY kind;
-- a payment replayed by external_ref is the same grant
SELECT count(*) AS same_grant
  FROM t.c JOIN t.g ON g.i = c.i AND g.kind = 'paid',
	   LATERAL wallet_grant(c.customer, 'credits', 100 + (c.i % 7) * 10, external_ref => 'pay-' || c.i) r
 WHERE r = g.id;

SELECT count(*) AS limits FROM t.c, LATERAL wallet_set_limit(c.customer, 'credits', overdraft => 15, low_balance => 40) l
 WHERE c.i % 4 = 0;
SELECT count(*) AS frozen FROM t.c, LATERAL wallet_set_status(c.customer, 'frozen') s WHERE c.i % 50 = 7;
SELECT count(*) AS caps FROM t.c, LATERAL wallet_set_cap(c.customer, 'credits', 40, 'day') s WHERE c.i % 9 = 4;

-- debits: four per customer, in order; some run out of funds
CREATE TABLE t.d AS
SELECT s.i, s.k, r.*
  FROM (SELECT c.i, c.customer, k FROM t.c, generate_series(1, 4) k ORDER BY c.i, k) s,
	   LATERAL wallet_debit(s.customer, 'credits', (s.i * s.k) % 37 + 1, format('d-%s-%s', s.i, s.k),
							jsonb_build_object('k', s.k)) r;
SELECT i, k, approved, replayed, reason, asset, amount, balance FROM t.d ORDER BY i, k;
-- replays: same key, same request
SELECT s.i, r.approved, r.replayed, r.reason, r.amount, r.balance, r.event_id = d.event_id AS same_event
  FROM (SELECT c.i, c.customer FROM t.c WHERE c.i % 10 = 1 ORDER BY c.i) s
  JOIN t.d ON d.i = s.i AND d.k = 1,
	   LATERAL wallet_debit(s.customer, 'credits', s.i % 37 + 1, format('d-%s-1', s.i), '{"k": 1}') r
 ORDER BY s.i;

-- priced usage
CREATE TABLE t.a AS
SELECT s.i, r.*
  FROM (SELECT c.i, c.customer FROM t.c ORDER BY c.i) s,
	   LATERAL wallet_authorize_debit(s.customer, 'chat', 1000 * (s.i % 5 + 1), 'chat-' || s.i) r;
SELECT i, approved, replayed, reason, asset, amount, balance FROM t.a ORDER BY i;
-- costs known later, by event id
SELECT count(*) AS costs
  FROM (SELECT * FROM t.a WHERE approved AND i % 3 <> 2 ORDER BY i) s,
	   LATERAL wallet_record_cost(s.event_id, 0.01 * (s.i % 7), jsonb_build_object('model', 'm' || s.i % 3)) r;
SELECT s.i, r.approved, r.reason, r.amount, r.balance
  FROM (SELECT c.i, c.customer FROM t.c WHERE c.i % 5 = 0 ORDER BY c.i) s,
	   LATERAL wallet_authorize_debit(s.customer, 'render', 1, 'render-' || s.i) r
 ORDER BY s.i;

-- holds, then captures and releases; the rest stay open
CREATE TABLE t.h AS
SELECT s.i, r.*
  FROM (SELECT c.i, c.customer FROM t.c WHERE c.i % 2 = 0 ORDER BY c.i) s,
	   LATERAL wallet_hold(s.customer, 'credits', 10 + s.i % 5, 'h-' || s.i, '1 day') r;
SELECT i, approved, reason, amount, balance FROM t.h ORDER BY i;
SELECT h.i, r.approved, r.reason, r.amount, r.balance, r.hold_id = h.hold_id AS same_hold
  FROM (SELECT * FROM t.h WHERE approved AND i % 4 = 0 ORDER BY i) h,
	   LATERAL wallet_capture(h.hold_id, 'chat', 2000 + (h.i % 3) * 1000) r
 ORDER BY h.i;
SELECT h.i, r.approved, r.amount, r.balance
  FROM (SELECT * FROM t.h WHERE approved AND i % 4 = 2 AND i % 3 = 0 ORDER BY i) h,
	   LATERAL wallet_release(h.hold_id) r
 ORDER BY h.i;

SELECT c.i, b.* FROM t.c, LATERAL wallet_balances(c.customer) b WHERE c.i % 25 = 3 ORDER BY c.i, b.asset;
SELECT c.i, wallet_balance(c.customer, 'credits') FROM t.c WHERE c.i % 30 = 11 ORDER BY c.i;

CREATE TABLE t.rf AS
SELECT s.i, r.*
  FROM (SELECT * FROM t.d WHERE approved AND k = 1 AND i % 3 = 1 ORDER BY i) s,
	   LATERAL wallet_refund(s.event_id, CASE WHEN s.i % 2 = 0 THEN NULL ELSE 1 END, 'scale-out test') r;
SELECT i, approved, replayed, reason, asset, amount, balance FROM t.rf ORDER BY i;
SELECT g.i, wallet_void_grant(g.id, 'scale-out test') AS voided
  FROM (SELECT * FROM t.g WHERE kind = 'usd' AND i % 10 = 0 ORDER BY i) g
 ORDER BY g.i;

-- errors keep their SQLSTATE through the router
\set ON_ERROR_STOP 0
\set VERBOSITY sqlstate
SELECT * FROM wallet_debit('nobody', 'credits', 1, 'x');
SELECT * FROM wallet_debit(NULL, 'credits', 1, 'x');
SELECT * FROM wallet_debit('cust-0001', 'credits', 1, 'd-1-1');
SELECT * FROM wallet_capture((SELECT hold_id FROM t.h WHERE approved AND i % 4 = 0 ORDER BY i LIMIT 1), 'chat', 1);
SELECT * FROM wallet_release(12345);
SELECT * FROM wallet_capture(NULL, 'chat', 1);
SELECT wallet_create_asset('bad code!');
\set VERBOSITY default
\set ON_ERROR_STOP 1
SELECT * FROM wallet_sweep() ORDER BY action;
SQL
}

# After the split: the holds left open, the events and grants of phase one, new customers.
workload2() {
  cat <<'SQL'
SET client_min_messages = warning;
SELECT h.i, r.approved, r.reason, r.amount, r.balance
  FROM (SELECT * FROM t.h WHERE approved AND i % 4 = 2 AND i % 3 <> 0 AND i % 8 = 2 ORDER BY i) h,
	   LATERAL wallet_capture(h.hold_id, 'chat', 1000) r
 ORDER BY h.i;
SELECT h.i, r.approved, r.amount, r.balance
  FROM (SELECT * FROM t.h WHERE approved AND i % 4 = 2 AND i % 3 <> 0 AND i % 8 = 6 ORDER BY i) h,
	   LATERAL wallet_release(h.hold_id) r
 ORDER BY h.i;
INSERT INTO t.c SELECT i, format('cust-%s', lpad(i::text, 4, '0')) FROM generate_series(:n + 1, :n2) i;
SELECT count(*) AS wallets FROM t.c, LATERAL wallet_create(c.customer) w WHERE c.i > :n;
SELECT count(*) AS grants FROM t.c, LATERAL wallet_grant(c.customer, 'credits', 50) g WHERE c.i > :n;
SELECT s.i, r.approved, r.reason, r.amount, r.balance
  FROM (SELECT c.i, c.customer FROM t.c WHERE c.i % 3 = 2 ORDER BY c.i) s,
	   LATERAL wallet_authorize_debit(s.customer, 'chat', 7000, 'late-' || s.i) r
 ORDER BY s.i;
SELECT s.i, r.approved, r.reason, r.amount, r.balance
  FROM (SELECT * FROM t.a WHERE approved AND i % 7 = 3 ORDER BY i) s,
	   LATERAL wallet_refund(s.event_id) r
 ORDER BY s.i;
SELECT g.i, wallet_void_grant(g.id) AS voided
  FROM (SELECT * FROM t.g WHERE kind IN ('usd', 'paid') AND i % 20 = 5 ORDER BY i, kind) g
 ORDER BY g.i, g.kind;
SELECT * FROM wallet_sweep() ORDER BY action;
SQL
}

# What must match between the router and the plain database.
state() {
  cat <<'SQL'
SET client_min_messages = warning;
SELECT customer, asset, available, held, granted, overdraft FROM wallet.balances ORDER BY customer, asset;
SELECT customer, asset, count(*), sum(amount), sum(refunded) FROM wallet.events GROUP BY 1, 2 ORDER BY 1, 2;
SELECT customer, asset, kind, count(*), sum(amount) FROM wallet.ledger GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT customer, asset, category, count(*), sum(amount), sum(remaining) FROM wallet.grants GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT count(*) AS problems FROM wallet_verify();
-- finance, summed over the shards on the router (not by day: both runs must agree at midnight too)
SELECT asset, sum(recognized), sum(breakage), sum(promotional), sum(bundled), sum(sold)
  FROM wallet.revenue GROUP BY asset ORDER BY asset;
SELECT customer, asset, amount, remaining FROM wallet.deferred_revenue ORDER BY customer, asset;
SELECT customer, sum(revenue), sum(cost), sum(margin), sum(events) FROM wallet.customer_margin
 GROUP BY customer ORDER BY customer;
SELECT customer, revenue, cost, margin, events FROM wallet.unprofitable_customers ORDER BY customer;
SELECT * FROM wallet.margin_by_dimension('model');
SELECT count(*) AS rows, count(*) FILTER (WHERE difference <> 0) AS unbalanced FROM wallet.conservation;
SELECT asset, kind, amount, balance FROM wallet_statement('cust-0006') ORDER BY asset, at, line_id;
SELECT c.i, x.asset, x.period, x.cap, x.spent, x.remaining
  FROM (SELECT * FROM t.c WHERE i % 9 = 4 ORDER BY i) c, LATERAL wallet_caps(c.customer) x ORDER BY c.i, x.asset;
SQL
}

# run WORKLOAD CLUSTER DB OUT
run() {
  "$1" | q "$2" "$3" -A -v n="$N" -v n2="$N2" \
    >"$4" 2>&1 || { echo "$1 on $2/$3 failed:"; cat "$4"; exit 1; }
}

# Checks on each shard directly: invariants, ownership, ids that carry their customer's bits.
shard_checks() {
  local name=$1 db=$2 label=$3
  check "$label: wallet_verify clean" 0 "$(v "$name" "$db" 'SELECT count(*) FROM wallet_verify()')"
  check "$label: wallet_shard_check clean" 0 "$(v "$name" "$db" 'SELECT count(*) FROM wallet_shard_check()')"
  check "$label: ids carry their customer's routing bits" 0 "$(v "$name" "$db" "
	SELECT (SELECT count(*) FROM wallet.grant_block x JOIN wallet.wallet w ON w.id = x.wallet_id
			 WHERE x.id >> 48 <> wallet._route_hash(w.customer))
		 + (SELECT count(*) FROM wallet.hold x JOIN wallet.wallet w ON w.id = x.wallet_id
			 WHERE x.id >> 48 <> wallet._route_hash(w.customer))
		 + (SELECT count(*) FROM wallet.event x JOIN wallet.wallet w ON w.id = x.wallet_id
			 WHERE x.id >> 48 <> wallet._route_hash(w.customer))
		 + (SELECT count(*) FROM wallet.outbox x WHERE x.id >> 48 <> wallet._route_hash(x.customer))")"
}

# ------------------------------------------------------------ phase one
run workload1 router wallet "$work/router1.out"
run workload1 router single "$work/single1.out"
same "phase one: every call's outcome through the router equals one database" "$work/single1.out" "$work/router1.out"
grep -q 'insufficient_funds' "$work/single1.out" && ok "phase one has declines" || fail "phase one has no declines"
grep -q 'wallet_frozen' "$work/single1.out" && ok "phase one has frozen wallets" || fail "phase one has no frozen wallets"
grep -q 'spend_cap' "$work/single1.out" && ok "phase one has spend caps" || fail "phase one hit no spend cap"
for code in WL001 22023 WL004 WL005 WL007; do
  grep -q "ERROR:  $code" "$work/router1.out" && ok "router error $code" || fail "router error $code missing"
done

state | q router wallet -A >"$work/router_state1.out"
state | q router single -A >"$work/single_state1.out"
same "phase one: balances, events, ledger and grants equal one database" "$work/single_state1.out" "$work/router_state1.out"
check "single database: wallet_verify clean" 0 "$(v router single 'SELECT count(*) FROM wallet_verify()')"
check "router: wallet_verify clean" 0 "$(v router wallet 'SELECT count(*) FROM wallet_verify()')"

w0=$(v shard0 wallet 'SELECT count(*) FROM wallet.wallet')
w1=$(v shard1 wallet 'SELECT count(*) FROM wallet.wallet')
echo "# customers: shard 0 has $w0, shard 1 has $w1"
((w0 > N / 4 && w1 > N / 4)) && ok "both shards got customers" || fail "customers not spread: $w0 / $w1"
check "every customer on one shard" "$N" "$((w0 + w1))"
check "router balances list every customer" "$N" "$(v router wallet 'SELECT count(DISTINCT customer) FROM wallet.balances')"
for k in 0 1; do shard_checks "shard$k" wallet "shard $k"; done
check "plain database keeps plain ids" 0 "$(v router single 'SELECT count(*) FROM wallet.event WHERE id >= 281474976710656')"

# a shard refuses a customer another shard owns
other=$(v shard0 wallet "SELECT customer FROM (SELECT 'cust-' || i AS customer FROM generate_series(1, 100) i) c
						  WHERE wallet._shard_owner(customer) = 1 LIMIT 1")
check "shard 0 refuses a customer of shard 1 (WL008)" WL008 \
  "$(printf '\\set VERBOSITY sqlstate\nSELECT wallet_create(%s);\n' "'$other'" | q shard0 wallet 2>&1 | grep -o 'WL008' || true)"

# an outbox row is acknowledged through the router by its id
ob=$(v shard1 wallet 'SELECT min(id) FROM wallet.outbox')
if [[ -n $ob ]]; then
  v router wallet "SELECT wallet_outbox_ack($ob)" >/dev/null
  check "outbox row acknowledged on its shard" t "$(v shard1 wallet "SELECT acked_at IS NOT NULL FROM wallet.outbox WHERE id = $ob")"
else
  fail "no outbox row on shard 1"
fi

# roles: the router checks the caller's rights, and each shard checks them again
for name in shard0 shard1 router; do
  q "$name" postgres -c 'CREATE ROLE app_user LOGIN IN ROLE wallet_app' \
    -c 'CREATE ROLE finance_user LOGIN IN ROLE wallet_finance'
done
q router wallet -c 'GRANT USAGE ON FOREIGN SERVER wallet_cluster TO wallet_app, wallet_finance'
as_role() { psql -X -q -At -h "$router_HOST" -p "$router_PORT" -U "$1" -d wallet -c '\set VERBOSITY sqlstate' -c "$2" 2>&1; }
check "wallet_app debits through the router" t \
  "$(as_role app_user "SELECT approved FROM wallet_debit('cust-0002', 'credits', 1, 'as-app')")"
check "wallet_app may not create assets (42501)" "ERROR:  42501" \
  "$(as_role app_user "SELECT wallet_create_asset('nope')")"
check "wallet_app may not read the finance views (42501)" "ERROR:  42501" \
  "$(as_role app_user 'SELECT count(*) FROM wallet.balances')"
check "wallet_finance reads every shard's balances" "$N" \
  "$(as_role finance_user 'SELECT count(DISTINCT customer) FROM wallet.balances')"
check "wallet_finance may not debit (42501)" "ERROR:  42501" \
  "$(as_role finance_user "SELECT * FROM wallet_debit('cust-0002', 'credits', 1, 'as-fin')")"
# the same debit in the reference, so the states still agree
q router single -c "SELECT approved FROM wallet_debit('cust-0002', 'credits', 1, 'as-app')" >/dev/null

# ------------------------------------------------------ split shard 0
# 2 -> 4 partitions: shard 0 is copied to shard 2 (here a database in the same
# cluster; in production a copy on a new server), shard 1 is listed twice.
q shard0 postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'wallet'" >/dev/null
q shard0 postgres -c 'CREATE DATABASE wallet2 TEMPLATE wallet' \
  -c 'ALTER DATABASE wallet SET wallet.shards = 4' \
  -c 'ALTER DATABASE wallet2 SET wallet.shard = 2' -c 'ALTER DATABASE wallet2 SET wallet.shards = 4'
q router wallet -c "ALTER SERVER wallet_cluster OPTIONS (
	ADD p2 'host=$shard0_HOST port=$shard0_PORT dbname=wallet2',
	ADD p3 'host=$shard1_HOST port=$shard1_PORT dbname=wallet')"
check "before pruning, verify lists the customers of the other half" "$w0" \
  "$(v router wallet "SELECT count(*) FROM wallet_verify() WHERE problem = 'misplaced'")"
p0=$(v shard0 wallet 'SELECT wallet_shard_prune()')
p2=$(v shard0 wallet2 'SELECT wallet_shard_prune()')
echo "# split: shard 0 kept $((w0 - p0)), shard 2 took $((w0 - p2))"
check "the split moves every customer of shard 0 once" "$w0" "$((p0 + p2))"
((p0 > 0 && p2 > 0)) && ok "both halves have customers" || fail "split uneven: pruned $p0 / $p2"
check "router: wallet_verify clean after the split" 0 "$(v router wallet 'SELECT count(*) FROM wallet_verify()')"
state | q router wallet -A >"$work/router_state2.out"
state | q router single -A >"$work/single_state2.out"
same "after the split: same balances, events, ledger and grants" "$work/single_state2.out" "$work/router_state2.out"

# ------------------------------------------------------------ phase two
run workload2 router wallet "$work/router2.out"
run workload2 router single "$work/single2.out"
same "phase two (holds, events and grants from before the split): outcomes equal one database" \
  "$work/single2.out" "$work/router2.out"
grep -q '^[0-9]*|t|' "$work/single2.out" && ok "phase two approves calls" || fail "phase two approved nothing"
state | q router wallet -A >"$work/router_state3.out"
state | q router single -A >"$work/single_state3.out"
same "phase two: balances, events, ledger and grants equal one database" "$work/single_state3.out" "$work/router_state3.out"
check "router balances list every customer" "$N2" "$(v router wallet 'SELECT count(DISTINCT customer) FROM wallet.balances')"
shard_checks shard0 wallet "shard 0"
shard_checks shard0 wallet2 "shard 2"
shard_checks shard1 wallet "shard 1"
check "router: wallet_verify clean" 0 "$(v router wallet 'SELECT count(*) FROM wallet_verify()')"

((failures == 0)) || { echo "$failures failed"; exit 1; }
echo "all passed"
