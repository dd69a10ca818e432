#!/usr/bin/env bash
# a debit must see a hold committed before it locked the balance row.
# A debit skips looking its key up among holds when its wallet had none
# (wallet.holds_made, kept with the wallet's copy, dropped by the invalidation
# the first hold's commit sends).  A commit is visible to new snapshots, and
# its row locks no longer make anyone wait, a moment before that invalidation
# is sent (xact.c: ProcArrayEndTransaction, then AtEOXact_Inval).  A debit in
# that moment, with the hold's key, was approved and charged: a second request
# under one key, where the API says WL004.  gdb holds the hold's session in
# that moment (a breakpoint at AtEOXact_Inval).  Run for a single call
# (wallet_debit) and for a batch (wallet_ingest), which had the same gap.
set -euo pipefail
source "$WALLET_ROOT/test/lib.sh"
start_cluster hmw
export PGHOST=$hmw_HOST PGPORT=$hmw_PORT PGDATABASE=postgres

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE EXTENSION wallet;
SELECT wallet_create_asset('hw', 0);
SELECT wallet_set_price('hw.call', 'hw', '{"model": "per_unit", "unit_price": "1"}', now() - interval '1 minute');
SELECT wallet_create('hw-a'), wallet_create('hw-b');
SELECT wallet_grant('hw-a', 'hw', 100), wallet_grant('hw-b', 'hw', 100);
SQL

# debit_sql KIND CUSTOMER KEY: a statement that debits 1 under KEY and prints
# approved, or the SQLSTATE of its refusal
debit_sql() {
  if [[ $1 == single ]]; then
    echo "SELECT approved FROM wallet_debit('$2', 'hw', 1, '$3');"
  else
    echo "SELECT coalesce(error, approved::text) FROM wallet_ingest('[{\"customer\": \"$2\", \"meter\": \"hw.call\", \"quantity\": 1, \"idempotency_key\": \"$3\"}]');"
  fi
}

# window_case KIND CUSTOMER
window_case() {
  local kind=$1 c=$2 work bpid got held charged refused
  work=$(mktemp -d)
  chmod 755 "$work"
  at_exit "touch '$work/go'; rm -rf '$work'"

  coproc B { psql_session; }
  echo "SELECT pg_backend_pid();" >&"${B[1]}"
  bpid=$(read_answer "${B[0]}")
  # stop B at its next commit, after the commit is visible and before its invalidations go
  gdb_hold "$bpid" 'AtEOXact_Inval' "$work"

  coproc A { psql_session; }
  # A keeps the wallet, with holds_made false
  debit_sql "$kind" "$c" "$c-d1" >&"${A[1]}"
  got=$(read_answer "${A[0]}")
  [[ $got == t || $got == true ]] || { echo "$kind: the first debit was not approved: $got" >&2; return 1; }

  # B places the wallet's first hold, under key $c-k, and stops in its commit
  echo "BEGIN; SELECT approved FROM wallet_hold('$c', 'hw', 5, '$c-k'); COMMIT;" >&"${B[1]}"
  for _ in $(seq 150); do [[ -f $work/hit ]] && break; sleep 0.2; done
  [[ -f $work/hit ]] || { echo "the hold's commit did not reach AtEOXact_Inval" >&2; cat "$work/gdb.log" >&2; return 1; }

  # A debits under the hold's key: WL004, not a charge
  debit_sql "$kind" "$c" "$c-k" >&"${A[1]}"
  got=$(read_answer "${A[0]}")
  touch "$work/go"
  wait "$gdb_pid" || true
  echo '\q' >&"${A[1]}"
  echo '\q' >&"${B[1]}"
  wait || true

  held=$(psql -X -At -c "SELECT count(*) FROM wallet.hold WHERE idempotency_key = '$c-k'")
  charged=$(psql -X -At -c "SELECT count(*) FROM wallet.event WHERE idempotency_key = '$c-k'")
  echo "$kind: debit under the hold's key: $got; holds with the key: $held; events with the key: $charged"
  [[ $held == 1 ]] || { echo "$kind: the hold did not commit" >&2; return 1; }
  refused=ERROR:\ \ WL004
  [[ $kind == single ]] || refused=WL004
  [[ $got == "$refused" && $charged == 0 ]] || {
    echo "$kind: a debit under a committed hold's key was not refused (WL004)" >&2
    return 1
  }
}

window_case single hw-a
window_case batch hw-b
