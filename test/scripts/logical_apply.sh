#!/usr/bin/env bash
# what a logical replication apply worker changes reaches every backend's cache.
# A subscriber's copy of wallet.wallet and wallet.price changes through the
# apply worker, which fires only row triggers (and those only when enabled
# ALWAYS or REPLICA): a backend that kept the wallet and the price must see a
# freeze and a new price that arrive that way, as it sees local changes.
set -euo pipefail
source "$WALLET_ROOT/test/lib.sh"
start_cluster lap -c wal_level=logical
export PGHOST=$lap_HOST PGPORT=$lap_PORT

for d in pub sub; do
  createdb "$d"
  psql -X -q -v ON_ERROR_STOP=1 -d "$d" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('lx', 0);
SELECT wallet_set_price('lx.call', 'lx', '{"model": "per_unit", "unit_price": "1"}', now() - interval '1 minute');
SELECT wallet_create('lc');
SELECT wallet_grant('lc', 'lx', 100);
SQL
done
# publisher and subscriber share the cluster: the slot is made first (a subscription that
# made it itself would wait for its own transaction)
psql -X -q -v ON_ERROR_STOP=1 -d pub -c "CREATE PUBLICATION lap FOR TABLE wallet.wallet, wallet.price" \
  -c "SELECT pg_create_logical_replication_slot('lap', 'pgoutput')" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d sub -c "SET client_min_messages = warning" \
  -c "CREATE SUBSCRIPTION lap CONNECTION 'host=$PGHOST port=$PGPORT dbname=pub user=postgres' PUBLICATION lap WITH (create_slot = false, slot_name = 'lap', copy_data = false)" >/dev/null

ask() { echo "$2" >&"$1"; read_answer "$3"; }
coproc S { psql -X -q -At -v VERBOSITY=sqlstate -d sub 2>&1; }
# the backend keeps the wallet and the price
got=$(ask "${S[1]}" "SELECT approved || ' ' || amount FROM wallet_authorize_debit('lc', 'lx.call', 1, 'l1');" "${S[0]}")
[[ $got == "true 1" ]] || { echo "the first debit: $got" >&2; exit 1; }

# the price and then the status change on the publisher, and arrive by the apply worker
psql -X -q -v ON_ERROR_STOP=1 -d pub -c "UPDATE wallet.price SET rule = jsonb_set(rule, '{unit_price}', '\"4\"') WHERE meter = 'lx.call'" >/dev/null
for _ in $(seq 150); do
  [[ $(psql -X -At -d sub -c "SELECT rule->>'unit_price' FROM wallet.price WHERE meter = 'lx.call'") == 4 ]] && break
  sleep 0.2
done
priced=$(ask "${S[1]}" "SELECT approved || ' ' || amount FROM wallet_authorize_debit('lc', 'lx.call', 1, 'l2');" "${S[0]}")
psql -X -q -v ON_ERROR_STOP=1 -d pub -c "SELECT wallet_set_status('lc', 'frozen')" >/dev/null
for _ in $(seq 150); do
  [[ $(psql -X -At -d sub -c "SELECT status FROM wallet.wallet WHERE customer = 'lc'") == frozen ]] && break
  sleep 0.2
done
frozen=$(ask "${S[1]}" "SELECT approved || ' ' || coalesce(reason, '') FROM wallet_authorize_debit('lc', 'lx.call', 1, 'l3');" "${S[0]}")
echo '\q' >&"${S[1]}"

echo "after the new price arrived: $priced; after the freeze arrived: $frozen"
[[ $priced == "true 4" ]] || { echo "a price changed by the apply worker was not seen" >&2; exit 1; }
[[ $frozen == "false wallet_frozen" ]] || { echo "a freeze applied by the apply worker was not seen" >&2; exit 1; }
