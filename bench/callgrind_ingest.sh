#!/usr/bin/env bash
# bench/callgrind_ingest.sh: instructions per event of wallet_ingest, next to
# one wallet_authorize_debit and the batch floor, counted by valgrind's
# callgrind in one backend.
#
#   bench/callgrind_ingest.sh [--keep] [--only "single spread hot chunk20 floor"]
#
# Instruction counts do not depend on what else the machine is doing.  Loads
# bench/load.sql with 10,000 wallets (as bench/ingest.sh), stops the server
# and runs a single-user backend (postgres --single) under callgrind twice per
# contender, with 2 warm-up batches and then 1, and then 4, more:
#   single  1,000 wallet_authorize_debit calls per "batch" (a prepared
#           statement, customers spread over the 10,000)
#   spread  wallet_ingest of 1,000 events, customers spread over the 10,000
#   warm    as spread, but each measured batch names the customers of a
#           warm-up batch (a consumer that has seen its customers before:
#           the backend keeps their wallets)
#   hot     wallet_ingest of 1,000 events of one customer
#   chunkN  the spread batch through CALL wallet_ingest_chunked(events, N),
#           for N in --chunks (default "20 100"): a wallet_ingest call and a
#           commit per chunk
#   floor   the batch floor of bench/ingest.sh on the spread arrays: one
#           statement that parses the array, locks the balance rows in id
#           order, updates each once and inserts one log row per element
# Both runs of a contender start from one copy of the database
# (callgrind_count in test/lib.sh), and what single-user mode spends printing
# result rows (single prints one per call) is left out.  The difference of the
# two totals over 3,000 events is the cost of one event, with start-up and
# warm-up cancelled out.  Prints each and the ratios.
# --keep leaves the callgrind files in bench/out/ for callgrind_annotate
# (bench/out/cgi-NAME-4.out is the run with 4 measured batches).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source test/lib.sh

keep=0 only="single spread warm hot chunk20 chunk100 floor"
while (($#)); do
  case $1 in
    --keep) keep=1 ;;
    --only) only=$2; shift ;;
    *) echo "bench/callgrind_ingest.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
command -v valgrind >/dev/null || { echo "bench/callgrind_ingest.sh: needs valgrind" >&2; exit 2; }

out=$PWD/bench/out
mkdir -p "$out"
chmod 777 "$out"
wallets=10000 size=1000

echo "== build and install into $PGBIN"
build_install
start_cluster cgi
createdb cg
psql -X -q -At -v ON_ERROR_STOP=1 -v wallets=$wallets -d cg -f bench/load.sql
stop_cluster cgi
data=$cgi_DIR/data

# array NAME BATCH RUN: a json array of $size events, keys unique per batch and run
array() {
  awk -v kind="$1" -v b="$2" -v r="$3" -v n=$size -v w=$wallets 'BEGIN {
    printf "[";
    for (i = 1; i <= n; i++) {
      c = (kind == "hot") ? 1 : (((kind == "warm" ? (b - 1) % 2 + 1 : b) * n + i) * 7919) % w + 1;
      printf "%s{\"customer\": \"%d\", \"meter\": \"api.call\", \"quantity\": 1, \"idempotency_key\": \"%s-%d-%d-%d\"}",
             (i > 1 ? ", " : ""), c, kind, r, b, i;
    }
    printf "]";
  }'
}

# statements NAME BATCHES: 2 warm-up batches, then BATCHES more
statements() {
  local name=$1 n=$2 b i c
  case $name in
    single) echo "PREPARE s(text, text) AS SELECT * FROM wallet_authorize_debit(\$1, 'api.call', 1, \$2)" ;;
    spread|warm|hot) echo "PREPARE s(jsonb) AS SELECT count(*) FILTER (WHERE approved) FROM wallet_ingest(\$1)" ;;
    chunk*) ;;
    floor) echo "PREPARE s(jsonb) AS WITH j AS (SELECT (e->>'customer')::int AS c FROM jsonb_array_elements(\$1) e), l AS (SELECT id FROM floor.balance WHERE id IN (SELECT c FROM j) ORDER BY id FOR NO KEY UPDATE), s AS (SELECT c, count(*) AS n FROM j GROUP BY c), u AS (UPDATE floor.balance b SET amount = b.amount - s.n FROM s JOIN l ON l.id = s.c WHERE b.id = s.c RETURNING b.id, b.amount) INSERT INTO floor.log (balance_id, delta, balance_after) SELECT j.c, -1, u.amount FROM j JOIN u ON u.id = j.c" ;;
  esac
  for ((b = 1; b <= 2 + n; b++)); do
    if [[ $name == single ]]; then
      for ((i = 1; i <= size; i++)); do
        c=$(( ((b * size + i) * 7919) % wallets + 1 ))
        echo "EXECUTE s('$c', 'cg-$n-$b-$i')"
      done
    elif [[ $name == chunk* ]]; then
      echo "CALL wallet_ingest_chunked('$(array "$name" "$b" "$n")', ${name#chunk}, NULL)"
    else
      echo "EXECUTE s('$(array "$name" "$b" "$n")')"
    fi
  done
}

declare -A per_event=()
for name in $only; do
  declare -A total=()
  for n in 1 4; do
    statements "$name" "$n" >"$out/cgi-$name-$n.sql"
    chmod 644 "$out/cgi-$name-$n.sql"
    total[$n]=$(callgrind_count "$data" cg "$out/cgi-$name-$n.sql" "$out/cgi-$name-$n")
    if grep -q ERROR "$out/cgi-$name-$n.log"; then
      echo "bench/callgrind_ingest.sh: $name failed:" >&2
      grep -m3 ERROR "$out/cgi-$name-$n.log" >&2
      exit 1
    fi
  done
  per_event[$name]=$(( (total[4] - total[1]) / (3 * size) ))
  unset total
  printf '%-8s %8d instructions per event\n' "$name" "${per_event[$name]}"
done
if [[ -n ${per_event[single]:-} && -n ${per_event[spread]:-} ]]; then
  awk -v s="${per_event[single]}" -v b="${per_event[spread]}" -v h="${per_event[hot]:-0}" -v f="${per_event[floor]:-0}" 'BEGIN {
    printf "single/spread %.2f, single/hot %.2f (events per instruction, batch against single)\n", s / b, h ? s / h : 0;
    if (f) printf "floor/spread %.2f (batch against its floor)\n", f / b;
  }'
fi
((keep)) || rm -f "$out"/cgi-*
