#!/usr/bin/env bash
# bench/callgrind.sh: instructions per call of the floor and of
# wallet_authorize_debit, counted by valgrind's callgrind in one backend.
#
#   bench/callgrind.sh [--keep] [CONTENDER...]
#
# Instruction counts do not depend on what else the machine is doing, so they
# show what a change to the hot path saves where tps on a shared machine
# cannot.  Loads bench/load.sql (WALLETS wallets, default 1,000), stops the
# server and runs a single-user backend (postgres --single) under callgrind
# twice per contender, each time on a fresh copy of that database: WARM
# warm-up calls (default 300) then 200, and the same calls then 1,000 more, of
# a prepared statement (customers spread over the wallets); the difference of
# the two totals over 1,000 calls is the cost of one call, with start-up and
# warm-up cancelled out.  Single-user mode reads each EXECUTE as a
# statement, so both counts include that parse (about the same for both); what
# it spends printing result rows to its stdout (debugStartup, debugtup: about
# 36,000 instructions per row of wallet_result), which a client's backend does
# not, is left out.  Prints both and the ratio.
# WALLETS=10000 WARM=10000 counts at bench/run's scale: as many wallets, each
# already seen by the backend, and indexes of that size (about 90 s for floor
# and ext).  The default, smaller and quicker, is the one the figures in
# docs/performance.md follow from change to change.
# The hold contender is bench/run's pair of calls, wallet_authorize_hold then
# wallet_capture of that hold (found by currval of the hold sequence): one
# "call" there is the pair, two statements, compared with one debit; a pair
# on each wallet runs first, not counted (each wallet's first hold sets
# wallet.holds_made, once: a steady load has long done that).
# CONTENDER... picks some of floor, ext and hold (default: all three).
# --keep leaves the callgrind files in bench/out/ for callgrind_annotate.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source test/lib.sh

keep=0
wallets=${WALLETS:-1000} warm=${WARM:-300}
# call i goes to customer (i * 7919) % WALLETS + 1: every wallet in turn unless
# WALLETS is a multiple of the prime 7919
if ! [[ $wallets =~ ^[1-9][0-9]*$ && $warm =~ ^[0-9]+$ ]] || ((wallets % 7919 == 0)); then
  echo "bench/callgrind.sh: WALLETS must be a positive integer not a multiple of 7919, WARM a count" >&2
  exit 2
fi
[[ ${1:-} == --keep ]] && { keep=1; shift; }
contenders=("$@")
((${#contenders[@]})) || contenders=(floor ext hold)
command -v valgrind >/dev/null || { echo "bench/callgrind.sh: needs valgrind" >&2; exit 2; }

out=$PWD/bench/out
mkdir -p "$out"
chmod 777 "$out"

echo "== build and install into $PGBIN"
build_install
start_cluster cg
createdb cg
psql -X -q -At -v ON_ERROR_STOP=1 -v wallets="$wallets" -d cg -f bench/load.sql
stop_cluster cg
data=$cg_DIR/data

# statements NAME CALLS: the prepared statement, WARM warm-up calls, CALLS more
statements() {
  local name=$1 n=$2 i c warm=$warm
  [[ $name == hold-first ]] && warm=0
  if [[ $name == ext ]]; then
    echo "PREPARE s(text, text) AS SELECT * FROM wallet_authorize_debit(\$1, 'api.call', 1, \$2)"
  elif [[ $name == hold* ]]; then
    echo "PREPARE s(text, text) AS SELECT hold_id FROM wallet_authorize_hold(\$1, 'api.call', 1, \$2)"
    echo "PREPARE t AS SELECT * FROM wallet_capture(pg_catalog.currval('wallet.hold_id_seq'), 'api.call', 1)"
  else
    echo "PREPARE s(int) AS WITH u AS (UPDATE floor.balance SET amount = amount - 1 WHERE id = \$1 RETURNING id, amount) INSERT INTO floor.log (balance_id, delta, balance_after) SELECT id, -1, amount FROM u"
  fi
  for ((i = 1; i <= warm + n; i++)); do
    c=$(( (i * 7919) % wallets + 1 ))
    if [[ $name == ext ]]; then
      echo "EXECUTE s('$c', 'cg-$i')"
    elif [[ $name == hold* ]]; then
      echo "EXECUTE s('$c', 'cg$name-$i')"
      echo "EXECUTE t"
    else
      echo "EXECUTE s($c)"
    fi
  done
}

declare -A per_call=()
for name in "${contenders[@]}"; do
  declare -A total=()
  if [[ $name == hold ]]; then
    # A wallet's first hold sets wallet.holds_made (an update of wallet.wallet
    # that makes the backend drop the wallets it keeps), once per wallet: a
    # pair on each wallet first, not counted, so that neither run has one.
    statements hold-first "$wallets" >"$out/callgrind-hold-first.sql"
    chmod 644 "$out/callgrind-hold-first.sql"
    as_pg "$PGBIN/postgres" --single -D "$data" -c fsync=off cg \
      <"$out/callgrind-hold-first.sql" >/dev/null 2>"$out/callgrind-hold-first.err"
    if grep -q ' ERROR: ' "$out/callgrind-hold-first.err"; then
      echo "bench/callgrind.sh: hold's first pairs failed: see $out/callgrind-hold-first.err" >&2
      exit 1
    fi
  fi
  for n in 200 1200; do
    statements "$name" "$n" >"$out/callgrind-$name-$n.sql"
    chmod 644 "$out/callgrind-$name-$n.sql"
    # both runs start from the same state, so that the second is the first
    # and 1,000 calls more
    total[$n]=$(callgrind_count "$data" cg "$out/callgrind-$name-$n.sql" "$out/callgrind-$name-$n")
    if grep -q ' ERROR: ' "$out/callgrind-$name-$n.err"; then
      echo "bench/callgrind.sh: $name failed: see $out/callgrind-$name-$n.err" >&2
      exit 1
    fi
  done
  per_call[$name]=$(( (total[1200] - total[200]) / 1000 ))
  unset total
  printf '%-6s %8d instructions per %s\n' "$name" "${per_call[$name]}" "$([[ $name == hold ]] && echo pair || echo call)"
done
[[ -n ${per_call[floor]:-} && -n ${per_call[ext]:-} ]] &&
  awk -v f="${per_call[floor]}" -v e="${per_call[ext]}" 'BEGIN { printf "ext/floor  %.2f (instructions)\n", e / f }'
[[ -n ${per_call[hold]:-} && -n ${per_call[ext]:-} ]] &&
  awk -v h="${per_call[hold]}" -v e="${per_call[ext]}" 'BEGIN { printf "hold/ext   %.2f (instructions per pair over per debit)\n", h / e }'
((keep)) || rm -f "$out"/callgrind-*
