#!/usr/bin/env bash
# wallet._settled() (src/reads.c) must not pass the start of a
# transaction that can still write lines.  A transaction's start (now(), the
# date of its lines) is the time its first statement arrived; the backend
# reports it (pg_stat_activity.xact_start) only once the transaction has
# started, a moment later.  A statement page read in that moment wrote its
# statement marks past that time, and the line the transaction then committed
# before them was left out of every opening balance after it.  gdb holds the
# debit's backend in that moment (a breakpoint at pgstat_report_xact_timestamp
# with a time, in StartTransaction).
set -euo pipefail
source "$WALLET_ROOT/test/lib.sh"
start_cluster stw
export PGHOST=$stw_HOST PGPORT=$stw_PORT PGDATABASE=postgres
work=$(mktemp -d)
chmod 755 "$work"
at_exit "touch '$work/go'; rm -rf '$work'"

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE EXTENSION wallet;
SELECT wallet_create_asset('sw', 0);
SELECT wallet_create('sw-a');
SELECT wallet_grant('sw-a', 'sw', 100000);
SQL


coproc X { psql_session; }
echo "SELECT pg_backend_pid();" >&"${X[1]}"
xpid=$(read_answer "${X[0]}")
# stop X when it starts its next transaction, before it reports the start (first argument, rdi)
gdb_hold "$xpid" 'pgstat_report_xact_timestamp if $rdi != 0' "$work"

# X's debit: its transaction's time is now, its line is written later
echo "SELECT approved FROM wallet_debit('sw-a', 'sw', 7, 'sw-x');" >&"${X[1]}"
for _ in $(seq 150); do [[ -f $work/hit ]] && break; sleep 0.2; done
[[ -f $work/hit ]] || { echo "X did not stop in StartTransaction" >&2; cat "$work/gdb.log" >&2; exit 1; }

# 600 lines after X's time, then a statement page that writes its marks
for i in $(seq 600); do echo "SELECT 1 FROM wallet_debit('sw-a', 'sw', 1, 'sw-$i');"; done >"$work/debits.sql"
psql -X -q -At -v ON_ERROR_STOP=1 -f "$work/debits.sql" >/dev/null
psql -X -q -At -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM wallet_statement('sw-a', since => now())" >/dev/null
marks=$(psql -X -At -c "SELECT count(*) FROM wallet.statement_mark")

# X goes on and commits its debit
touch "$work/go"
wait "$gdb_pid" || true
got=$(read_answer "${X[0]}")
echo '\q' >&"${X[1]}"
wait || true
[[ $got == t ]] || { echo "X's debit: $got" >&2; exit 1; }

opening=$(psql -X -At -c "SELECT balance FROM wallet_statement('sw-a', since => now()) WHERE kind = 'opening'")
balance=$(psql -X -At -c "SELECT available FROM wallet_balances('sw-a')")
echo "statement marks written: $marks; opening balance now: $opening; balance: $balance"
[[ $opening == "$balance" ]] || {
	echo "the statement's opening balance left out a line committed after its marks" >&2
	exit 1
}
