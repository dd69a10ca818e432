#!/usr/bin/env bash
# wallet._settled_time() must see a transaction that prepares while it runs.
# It asked pg_prepared_xacts first and the running backends (wallet._settled)
# second: a transaction that prepared between the two was seen by neither (no
# longer running, not yet prepared when asked), a statement page wrote its
# marks past that transaction's start, and the line it then committed (COMMIT
# PREPARED) was left out of every opening balance after them.  It now asks the
# backends first: a transaction is listed as prepared before its backend stops
# reporting it.  gdb holds the reader at wallet._settled's C function while
# the other transaction prepares.
set -euo pipefail
source "$WALLET_ROOT/test/lib.sh"
start_cluster stp
export PGHOST=$stp_HOST PGPORT=$stp_PORT PGDATABASE=postgres
work=$(mktemp -d)
chmod 755 "$work"
at_exit "touch '$work/go'; rm -rf '$work'"

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE EXTENSION wallet;
SELECT wallet_create_asset('sp', 0);
SELECT wallet_create('sp-a');
SELECT wallet_grant('sp-a', 'sp', 100000);
SQL

# T: a transaction that starts now and debits later, then prepares
coproc T { psql_session; }
echo "BEGIN;" >&"${T[1]}"
read_answer "${T[0]}" >/dev/null   # BEGIN
for i in $(seq 600); do echo "SELECT 1 FROM wallet_debit('sp-a', 'sp', 1, 'sp-$i');"; done >"$work/debits.sql"
psql -X -q -At -v ON_ERROR_STOP=1 -f "$work/debits.sql" >/dev/null
echo "SELECT approved FROM wallet_debit('sp-a', 'sp', 1000, 'sp-late');" >&"${T[1]}"
[[ $(read_answer "${T[0]}") == t ]] || { echo "T's debit was not approved" >&2; exit 1; }

# R: a statement page, held inside wallet._settled_time() at wallet._settled
PGAPPNAME=sp-reader psql -X -q -At -c "LOAD 'wallet'" -c "SELECT pg_sleep(3)" \
  -c "SELECT count(*) FROM wallet_statement('sp-a', since => now())" >"$work/r.out" 2>&1 &
rjob=$!
for _ in $(seq 50); do
  rpid=$(psql -X -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'sp-reader' AND query LIKE '%pg_sleep%'")
  [[ -n $rpid ]] && break
  sleep 0.1
done
[[ -n $rpid ]] || { echo "R did not start" >&2; exit 1; }
gdb_hold "$rpid" wallet_settled "$work"
for _ in $(seq 150); do [[ -f $work/hit ]] && break; sleep 0.2; done
[[ -f $work/hit ]] || { echo "R did not stop in wallet._settled" >&2; cat "$work/gdb.log" >&2; exit 1; }

# T prepares while R is held, R goes on, then T commits
echo "PREPARE TRANSACTION 'sp-late';" >&"${T[1]}"
sleep 1
touch "$work/go"
wait "$gdb_pid" || true
wait "$rjob" || true
psql -X -q -c "COMMIT PREPARED 'sp-late'"
echo '\q' >&"${T[1]}"
wait || true

marks=$(psql -X -At -c "SELECT count(*) FROM wallet.statement_mark")
opening=$(psql -X -At -c "SELECT balance FROM wallet_statement('sp-a', since => now()) WHERE kind = 'opening'")
balance=$(psql -X -At -c "SELECT available FROM wallet_balances('sp-a')")
echo "statement marks written: $marks; opening balance now: $opening; balance: $balance"
[[ $opening == "$balance" ]] || {
	echo "the statement's opening balance left out a line committed (COMMIT PREPARED) after its marks" >&2
	exit 1
}
