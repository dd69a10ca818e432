#!/usr/bin/env bash
# what a transaction with an imported snapshot cached must not outlive it.
# A backend reads another session's freeze and new price (their
# invalidations), then runs a REPEATABLE READ transaction on a snapshot
# exported before them (SET TRANSACTION SNAPSHOT): its calls see the old
# status and price, as every query of that transaction does.  After it
# commits, the backend's next call must see the freeze and the new price;
# it used to keep what that transaction had cached, approving debits on the
# frozen wallet at the old price until some other invalidation came.
set -euo pipefail
source "$WALLET_ROOT/test/lib.sh"
start_cluster isn
export PGHOST=$isn_HOST PGPORT=$isn_PORT PGDATABASE=postgres

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE EXTENSION wallet;
SELECT wallet_create_asset('isn', 0);
SELECT wallet_set_price('isn.call', 'isn', '{"model": "per_unit", "unit_price": "1"}', now() - interval '1 hour');
SELECT wallet_create('isn-a'), wallet_create('isn-b');
SELECT wallet_grant('isn-a', 'isn', 1000), wallet_grant('isn-b', 'isn', 1000);
SQL

session() { psql -X -q -At -v VERBOSITY=sqlstate 2>&1; }
ask() { echo "$2" >&"$1"; read_answer "$3"; }

coproc E { session; }
coproc A { session; }
# E exports a snapshot from before the changes
echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM wallet.wallet;" >&"${E[1]}"
read_answer "${E[0]}" >/dev/null
snap=$(ask "${E[1]}" "SELECT pg_export_snapshot();" "${E[0]}")

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT wallet_set_status('isn-a', 'frozen');
SELECT wallet_set_price('isn.call', 'isn', '{"model": "per_unit", "unit_price": "5"}', now() - interval '1 second');
SQL

# A reads the invalidations in a transaction of its own, then debits on E's snapshot
ask "${A[1]}" "SELECT 1;" "${A[0]}" >/dev/null
old=$(ask "${A[1]}" "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '$snap'; SELECT approved || ' ' || amount FROM wallet_authorize_debit('isn-a', 'isn.call', 1, 'isn-old'); COMMIT;" "${A[0]}")
echo "COMMIT;" >&"${E[1]}"
# the next calls of A, under READ COMMITTED
after1=$(ask "${A[1]}" "SELECT approved || ' ' || coalesce(reason, amount::text) FROM wallet_authorize_debit('isn-a', 'isn.call', 1, 'isn-after-1');" "${A[0]}")
after2=$(ask "${A[1]}" "SELECT approved || ' ' || amount FROM wallet_authorize_debit('isn-b', 'isn.call', 1, 'isn-after-2');" "${A[0]}")
echo '\q' >&"${A[1]}"
echo '\q' >&"${E[1]}"
wait || true

echo "on the imported snapshot: $old; after it, the frozen wallet: $after1; another wallet: $after2"
[[ $old == "true 1" ]] || { echo "the debit on the imported snapshot did not see that snapshot" >&2; exit 1; }
[[ $after1 == "false wallet_frozen" ]] || { echo "a debit after the imported snapshot's transaction did not see the freeze" >&2; exit 1; }
[[ $after2 == "true 5" ]] || { echo "a debit after the imported snapshot's transaction did not see the new price" >&2; exit 1; }
