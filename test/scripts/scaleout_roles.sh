#!/usr/bin/env bash
# Scale-out from one database (docs/scale-out.md), as the application's roles:
# after the copy, the prune and the router, wallet_app captures a hold and
# wallet_admin refunds an event made before the move (ids without routing
# bits, looked for on every shard), and an outbox row made before it is acked
# through the router.  (The router asked each shard as the calling role, to
# which a shard opens neither the schema nor wallet._id_route: 42501; and
# _id_route never found an outbox row.)  Then: the prune leaves no
# reservation of the other shard's holds behind, and a batch over
# wallet_ingest's limit is refused through the router as on one database,
# with nothing charged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
start_cluster so
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$@"; }
fail() { echo "scaleout_roles: $*" >&2; exit 1; }

q postgres -c 'CREATE DATABASE s0'
q s0 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('credits', 0);
SELECT wallet_set_price('m', 'credits', '{"model": "per_unit", "unit_price": "1"}', now() - interval '1 hour');
SELECT wallet_create('c-' || i), wallet_grant('c-' || i, 'credits', 100) FROM generate_series(1, 8) i;
SELECT wallet_hold('c-' || i, 'credits', 30, 'h-' || i, '1 day') FROM generate_series(1, 8) i;
SELECT wallet_debit('c-' || i, 'credits', 5, 'd-' || i) FROM generate_series(1, 8) i;
SELECT wallet_set_alert('c-' || i, 'credits', 80) FROM generate_series(1, 8) i;
SQL
q postgres -c 'CREATE DATABASE s1 TEMPLATE s0' \
  -c 'ALTER DATABASE s0 SET wallet.shard = 0' -c 'ALTER DATABASE s0 SET wallet.shards = 2' \
  -c 'ALTER DATABASE s1 SET wallet.shard = 1' -c 'ALTER DATABASE s1 SET wallet.shards = 2'
q s0 -c 'SELECT wallet_shard_prune()' >/dev/null
q s1 -c 'SELECT wallet_shard_prune()' >/dev/null
for s in s0 s1; do
  orphans=$(q $s -c 'SELECT count(*) FROM wallet.hold_grant r WHERE NOT EXISTS (SELECT FROM wallet.hold h WHERE h.id = r.hold_id)')
  [[ $orphans == 0 ]] || fail "$s keeps $orphans reservations of holds the prune deleted"
  [[ $(q $s -c 'SELECT count(*) FROM wallet_verify()') == 0 ]] || fail "$s: wallet_verify() not clean"
done

q postgres -c 'CREATE DATABASE router'
q router >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION wallet_proxy CASCADE;
CREATE SERVER wallet_cluster FOREIGN DATA WRAPPER plproxy
	OPTIONS (p0 'host=$PGHOST port=$PGPORT dbname=s0', p1 'host=$PGHOST port=$PGPORT dbname=s1');
CREATE USER MAPPING FOR PUBLIC SERVER wallet_cluster;
GRANT USAGE ON FOREIGN SERVER wallet_cluster TO wallet_app, wallet_finance, wallet_admin;
SQL
q postgres -c 'CREATE ROLE so_api LOGIN IN ROLE wallet_app' -c 'CREATE ROLE so_ops LOGIN IN ROLE wallet_admin'
as() { psql -X -q -At -v ON_ERROR_STOP=1 -U "$1" -d router -c "$2"; }

# every customer's hold, event and outbox row, made before the move
for i in 1 2 3 4 5 6 7 8; do
  s=$(q router -c "SELECT 's' || (hashtext('c-$i') & 1)")
  hold=$(q $s -c "SELECT id FROM wallet.hold WHERE idempotency_key = 'h-$i'")
  event=$(q $s -c "SELECT id FROM wallet.event WHERE idempotency_key = 'd-$i'")
  row=$(q $s -c "SELECT min(o.id) FROM wallet.outbox o WHERE o.customer = 'c-$i' AND o.acked_at IS NULL")
  (( hold >> 48 == 0 && event >> 48 == 0 )) || fail "c-$i: ids made before the move carry routing bits"
  [[ $(as so_api "SELECT approved FROM wallet_capture($hold, 'm', 10)") == t ]] ||
    fail "wallet_app could not capture hold $hold of c-$i through the router"
  [[ $(as so_ops "SELECT approved FROM wallet_refund($event)") == t ]] ||
    fail "wallet_admin could not refund event $event of c-$i through the router"
  as so_ops "SELECT wallet_outbox_ack($row)" >/dev/null ||
    fail "wallet_admin could not ack outbox row $row of c-$i through the router"
  [[ $(q $s -c "SELECT acked_at IS NOT NULL FROM wallet.outbox WHERE id = $row") == t ]] ||
    fail "outbox row $row of c-$i not acked on $s"
done

# a batch over the limit: 22023 as on one database, nothing charged on either shard
err=$(as so_api "SELECT count(*) FROM wallet_ingest((SELECT jsonb_agg(jsonb_build_object('customer', 'c-' || (i % 8 + 1),
	'meter', 'm', 'quantity', 1, 'idempotency_key', 'big-' || i)) FROM generate_series(1, 100001) i))" 2>&1) &&
  fail "a batch of 100,001 elements went through the router: $err"
[[ $err == *"more than the 100000 one call takes"* ]] || fail "unexpected error: $err"
for s in s0 s1; do
  [[ $(q $s -c "SELECT count(*) FROM wallet.event WHERE idempotency_key LIKE 'big-%'") == 0 ]] ||
    fail "$s charged part of a refused batch"
  [[ $(q $s -c 'SELECT count(*) FROM wallet_verify()') == 0 ]] || fail "$s: wallet_verify() not clean at the end"
done
echo "scaleout_roles: ok"
