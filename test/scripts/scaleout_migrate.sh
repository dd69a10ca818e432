#!/usr/bin/env bash
# Scale-out from an existing database: a plain wallet database (ids without
# routing bits) becomes shard 0 of 2; a pg_dump of it, restored on a second
# cluster, becomes shard 1; each prunes the other's customers, and a router
# (wallet_proxy) is put in front.  Then holds, events and grants made before
# the move are captured, released, refunded and voided through the router by
# their old ids (found by asking every shard), old customers debit again (their
# new ids carry routing bits) and new customers arrive.  Every outcome and the
# final balances, events and ledger must equal the same calls on one plain
# database, and wallet_verify must be clean on both shards.
#
# Run by make test (which builds and installs first), or by hand after
# make install: PGBIN=... bash test/scripts/scaleout_migrate.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

N=120
work=$(mktemp -d /tmp/wallet-migrate.XXXXXX)
at_exit "rm -rf '$work'"
[[ -z ${SCALEOUT_KEEP:-} ]] || at_exit "cp -r '$work/.' '$SCALEOUT_KEEP'"	# outputs, to read

source "$(dirname "${BASH_SOURCE[0]}")/../suite.sh"

start_cluster old
start_cluster new
start_cluster router


q old postgres -c 'CREATE DATABASE wallet'
q old wallet -c 'CREATE EXTENSION wallet'
q router postgres -c 'CREATE DATABASE single' -c 'CREATE DATABASE wallet'
q router single -c 'CREATE EXTENSION wallet'


# before: a plain database in use; the ids the application keeps are in schema t
before() {
  cat <<'SQL'
SET client_min_messages = warning;
CREATE SCHEMA t;
SELECT wallet_create_asset('credits', 0, 0.01);
SELECT wallet_set_price('chat', 'credits', '{"model":"per_unit","unit_price":"3","per":1000}', '2020-01-01');
CREATE TABLE t.c AS SELECT i, format('old-%s', lpad(i::text, 4, '0')) AS customer FROM generate_series(1, :n) i;
SELECT count(*) AS wallets FROM t.c, LATERAL wallet_create(c.customer) w;
CREATE TABLE t.g AS
SELECT c.i, wallet_grant(c.customer, 'credits', 200, external_ref => 'pay-' || c.i) AS id FROM t.c
UNION ALL
SELECT c.i, wallet_grant(c.customer, 'credits', 30, category => 'promotional', priority => 10) FROM t.c WHERE c.i % 4 = 1;
CREATE TABLE t.d AS
SELECT s.i, r.*
  FROM (SELECT c.i, c.customer FROM t.c ORDER BY c.i) s,
	   LATERAL wallet_authorize_debit(s.customer, 'chat', 1000 * (s.i % 9 + 1), 'old-' || s.i) r;
SELECT i, approved, reason, amount, balance FROM t.d ORDER BY i;
CREATE TABLE t.h AS
SELECT s.i, r.*
  FROM (SELECT c.i, c.customer FROM t.c WHERE c.i % 2 = 0 ORDER BY c.i) s,
	   LATERAL wallet_hold(s.customer, 'credits', 25, 'hold-' || s.i, '1 day') r;
SELECT i, approved, reason, amount, balance FROM t.h ORDER BY i;
SQL
}

# after: through the router (or on the one database), by the old ids and with new ones
after() {
  cat <<'SQL'
SET client_min_messages = warning;
SELECT h.i, r.approved, r.reason, r.amount, r.balance, r.hold_id = h.hold_id AS same_hold
  FROM (SELECT * FROM t.h WHERE approved AND i % 4 = 0 ORDER BY i) h,
	   LATERAL wallet_capture(h.hold_id, 'chat', 5000) r
 ORDER BY h.i;
SELECT h.i, r.approved, r.amount, r.balance
  FROM (SELECT * FROM t.h WHERE approved AND i % 4 = 2 ORDER BY i) h,
	   LATERAL wallet_release(h.hold_id) r
 ORDER BY h.i;
SELECT s.i, r.approved, r.reason, r.amount, r.balance
  FROM (SELECT * FROM t.d WHERE approved AND i % 5 = 0 ORDER BY i) s,
	   LATERAL wallet_refund(s.event_id, NULL, 'after the move') r
 ORDER BY s.i;
SELECT g.i, wallet_void_grant(g.id) AS voided
  FROM (SELECT * FROM t.g WHERE i % 8 = 1 ORDER BY i, id) g
 ORDER BY g.i, g.id;
-- old customers go on; their new holds and events carry routing bits
CREATE TABLE t.h2 AS
SELECT s.i, r.*
  FROM (SELECT c.i, c.customer FROM t.c WHERE c.i % 3 = 0 ORDER BY c.i) s,
	   LATERAL wallet_hold(s.customer, 'credits', 10, 'hold2-' || s.i) r;
SELECT h.i, r.approved, r.reason, r.amount, r.balance
  FROM (SELECT * FROM t.h2 WHERE approved ORDER BY i) h,
	   LATERAL wallet_capture(h.hold_id, 'chat', 2000) r
 ORDER BY h.i;
SELECT s.i, r.approved, r.reason, r.amount, r.balance
  FROM (SELECT c.i, c.customer FROM t.c ORDER BY c.i) s,
	   LATERAL wallet_debit(s.customer, 'credits', s.i % 11 + 1, 'new-' || s.i) r
 ORDER BY s.i;
-- new customers
SELECT count(*) AS wallets FROM generate_series(1, 30) i, LATERAL wallet_create('new-' || i) w;
SELECT count(*) AS grants FROM generate_series(1, 30) i, LATERAL wallet_grant('new-' || i, 'credits', 40) g;
SELECT i, r.approved, r.reason, r.amount, r.balance
  FROM generate_series(1, 30) i, LATERAL wallet_debit('new-' || i, 'credits', i * 2, 'first') r ORDER BY i;
\set ON_ERROR_STOP 0
\set VERBOSITY sqlstate
SELECT * FROM wallet_capture(123456, 'chat', 1);
SELECT * FROM wallet_capture((SELECT hold_id FROM t.h WHERE approved AND i % 4 = 0 ORDER BY i LIMIT 1), 'chat', 1);
\set VERBOSITY default
\set ON_ERROR_STOP 1
SQL
}

state() {
  cat <<'SQL'
SET client_min_messages = warning;
SELECT customer, asset, available, held, granted, overdraft FROM wallet.balances ORDER BY customer, asset;
SELECT customer, asset, count(*), sum(amount), sum(refunded) FROM wallet.events GROUP BY 1, 2 ORDER BY 1, 2;
SELECT customer, asset, kind, count(*), sum(amount) FROM wallet.ledger GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT count(*) AS problems FROM wallet_verify();
SQL
}

run() {
  "$1" | q "$2" "$3" -A -v n="$N" \
    >"$4" 2>&1 || { echo "$1 on $2/$3 failed:"; cat "$4"; exit 1; }
}

# ------------------------------------------------------- a plain database
run before old wallet "$work/old.out"
run before router single "$work/single_before.out"
same "before: the database to move and the reference agree" "$work/single_before.out" "$work/old.out"
check "plain ids before the move" 0 "$(v old wallet 'SELECT count(*) FROM wallet.event WHERE id >= 281474976710656')"
old_events=$(v old wallet 'SELECT count(*) FROM wallet.event')

# ------------------------------------------------------------ the move
# The database becomes shard 0 of 2; a copy of it (pg_dump, restored before the
# settings are set, so the restore keeps every row) becomes shard 1.
q old postgres -c 'ALTER DATABASE wallet SET wallet.shard = 0' -c 'ALTER DATABASE wallet SET wallet.shards = 2'
q new postgres -c 'CREATE DATABASE wallet'
pg_dump -Fc -h "$old_HOST" -p "$old_PORT" -U postgres -d wallet -f "$work/wallet.dump"
pg_restore --exit-on-error -h "$new_HOST" -p "$new_PORT" -U postgres -d wallet "$work/wallet.dump"
q new postgres -c 'ALTER DATABASE wallet SET wallet.shard = 1' -c 'ALTER DATABASE wallet SET wallet.shards = 2'
check "the copy has every customer" "$N" "$(v new wallet 'SELECT count(*) FROM wallet.wallet')"
check "before pruning, each shard lists the other's customers" "$N" \
  "$(( $(v old wallet 'SELECT count(*) FROM wallet_shard_check()') + $(v new wallet 'SELECT count(*) FROM wallet_shard_check()') ))"
p0=$(v old wallet 'SELECT wallet_shard_prune()')
p1=$(v new wallet 'SELECT wallet_shard_prune()')
check "each customer stays on exactly one shard" "$N" "$((p0 + p1))"
((p0 > 0 && p1 > 0)) && ok "both shards keep customers ($((N - p0)) / $((N - p1)))" || fail "uneven: pruned $p0 / $p1"

make_router router wallet old new
# the application's own record of ids goes along (here: schema t)
pg_dump -h "$old_HOST" -p "$old_PORT" -U postgres -d wallet -n t | q router wallet >/dev/null
check "router: wallet_verify clean after the move" 0 "$(v router wallet 'SELECT count(*) FROM wallet_verify()')"
state | q router wallet -A >"$work/router_state1.out"
state | q router single -A >"$work/single_state1.out"
same "after the move: balances, events and ledger unchanged" "$work/single_state1.out" "$work/router_state1.out"

# ------------------------------------------------- through the router
run after router wallet "$work/router_after.out"
run after router single "$work/single_after.out"
same "old ids and new calls through the router equal one database" "$work/single_after.out" "$work/router_after.out"
grep -q '^[0-9]*|t||[0-9]*|[0-9-]*|t$' "$work/router_after.out" && ok "old holds captured by their old ids" ||
  fail "no old hold captured"
for code in WL007 WL005; do
  grep -q "ERROR:  $code" "$work/router_after.out" && ok "router error $code" || fail "router error $code missing"
done
state | q router wallet -A >"$work/router_state2.out"
state | q router single -A >"$work/single_state2.out"
same "final balances, events and ledger equal one database" "$work/single_state2.out" "$work/router_state2.out"

plain=0
for name in old new; do
  label=$([[ $name == old ]] && echo "shard 0" || echo "shard 1")
  check "$label: wallet_verify clean" 0 "$(v "$name" wallet 'SELECT count(*) FROM wallet_verify()')"
  check "$label: wallet_shard_check clean" 0 "$(v "$name" wallet 'SELECT count(*) FROM wallet_shard_check()')"
  plain=$((plain + $(v "$name" wallet 'SELECT count(*) FROM wallet.event WHERE id < 281474976710656')))
  check "$label: new events of old wallets carry routing bits" 0 "$(v "$name" wallet "
	SELECT count(*) FROM wallet.event e JOIN wallet.wallet w ON w.id = e.wallet_id
	 WHERE e.idempotency_key LIKE 'new-%' AND e.id >> 48 <> wallet._route_hash(w.customer)")"
done
check "the only plain event ids are the old ones" "$old_events" "$plain"

((failures == 0)) || { echo "$failures failed"; exit 1; }
echo "all passed"
