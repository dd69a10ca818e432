#!/usr/bin/env bash
# make demo: walk through the wallet API (test/demo.sql) on a throwaway cluster.
# `demo.sh race` is the concurrent step, called from demo.sql via \copy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source test/lib.sh

# Two sessions debit the same 12-credit wallet at once; each holds its
# transaction open a moment so the other has to wait on it.
race() {
  local out pids=() k rc=0
  out=$(mktemp -d)
  for k in race-a race-b; do
    psql -X -q -At -v ON_ERROR_STOP=1 -d demo >"$out/$k" 2>&1 <<SQL &
BEGIN;
SELECT CASE WHEN approved THEN 'approved' ELSE 'declined (' || reason || ')' END
       || ', balance ' || balance
  FROM wallet_authorize_debit('solo', 'chat.response', 1, '$k');
SELECT pg_sleep(0.5) \\g /dev/null
COMMIT;
SQL
    pids+=($!)
  done
  for k in "${pids[@]}"; do
    wait "$k" || rc=1
  done
  if ((rc)); then
    cat "$out"/* >&2
  else
    cat "$out"/*
  fi
  rm -rf "$out"
  return "$rc"
}

if [[ ${1:-} == race ]]; then
  race
  exit
fi

ensure_deps
build_install
start_cluster pg
createdb demo
psql -X -v ON_ERROR_STOP=1 -d demo -f test/demo.sql
