#!/usr/bin/env bash
# bench/ingest.sh: wallet_ingest batches next to single wallet_authorize_debit
# calls, in events per second.
#
#   bench/ingest.sh [--quick] [--rounds N] [--seconds S] [--clients C]
#                   [--size N] [--sizes "N N ..."] [--generic] [--chunks "N N ..."]
#
# Builds and installs the extension into $PGBIN's PostgreSQL (default: the
# system's 15), starts a throwaway cluster, loads 10,000 wallets (two grants
# each, one expiring; a per-unit price of 1 credit per call) and runs pgbench
# (-M prepared, C clients, synchronous_commit=off), interleaved over N rounds
# of S seconds each:
#   single spread  wallet_authorize_debit on a customer drawn from the 10,000
#   batch spread   wallet_ingest of --size events (default 1000), customers
#                  drawn from the 10,000
#   single hot     wallet_authorize_debit on one customer
#   batch hot      wallet_ingest of --size events, all for that customer
#   batch part     as batch spread, but each client has its own eighth of the
#                  wallets (consumers partitioned by customer): no two
#                  concurrent batches share a wallet
#   chunked N      as batch spread, through CALL wallet_ingest_chunked(events,
#                  N), for each N of --chunks (default "20 100"): each chunk
#                  committed, so a chunk locks only its own wallets, for its
#                  own time
#   floor spread, floor part, floor hot
#                  the batch floor on the same json arrays: one plain-SQL
#                  statement that parses the array, locks the balance rows it
#                  names in id order (FOR NO KEY UPDATE, as wallet_ingest does,
#                  so that concurrent batches cannot deadlock), updates each
#                  once and inserts one log row per element (what PostgreSQL
#                  itself needs to apply the batch's events to a balance)
# and prints the median events per second of each and the ratios batch/single
# and batch/floor.
# The batches are json text the server parses (::jsonb), as from a client:
# templates generated at load, each run with fresh idempotency keys (the
# template's @ replaced by a random number).
# --sizes "10 100 1000 10000" also measures each batch size (one round each)
# to find the best one.  --generic also runs the single calls with
# plan_cache_mode=force_generic_plan (what they would do without replanning
# their write statement on every call).
# Default: 3 rounds of 12 s, about 3 minutes.  --quick: 1 round of 5 s.
# Results go to stdout and bench/out/ingest.txt.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source test/lib.sh

rounds=3 seconds=12 clients=8 size=1000 sizes="" generic=0 chunks="20 100"
while (($#)); do
  case $1 in
    --quick) rounds=1 seconds=5 ;;
    --rounds) rounds=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --clients) clients=$2; shift ;;
    --size) size=$2; shift ;;
    --sizes) sizes=$2; shift ;;
    --generic) generic=1 ;;
    --chunks) chunks=$2; shift ;;
    -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
    *) echo "bench/ingest.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

wallets=10000
templates=20
out=$PWD/bench/out
mkdir -p "$out"
results=$out/ingest.txt
: >"$results"
say() { echo "$*" | tee -a "$results"; }

echo "== build and install into $PGBIN"
build_install

settings=(-c synchronous_commit=off -c shared_buffers=512MB -c max_wal_size=8GB
          -c checkpoint_timeout=30min -c max_connections=50)
start_cluster ingestbench "${settings[@]}"
createdb bench
export PGDATABASE=bench

q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

echo "== load: $wallets wallets"
t0=$SECONDS
q -v wallets=$wallets <<'EOF'
SET client_min_messages = warning;
\i bench/load_wallet.sql
CREATE SCHEMA bench_ingest;
CREATE SCHEMA floor;
CREATE TABLE floor.balance (id int PRIMARY KEY, amount bigint NOT NULL);
CREATE TABLE floor.log (balance_id int NOT NULL, delta bigint NOT NULL,
						balance_after bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
INSERT INTO floor.balance SELECT i, 2000000000 FROM generate_series(1, :wallets) i;
CREATE TABLE bench_ingest.template (kind text, size int, n int, body text, PRIMARY KEY (kind, size, n));
EOF

# templates KIND SIZE: json arrays of SIZE events, keys "@-i": $templates
# (spread, hot) or $templates per client (part: template c * $templates + t
# draws from the c-th of $clients equal ranges of wallets)
templates() {
  q -v kind="$1" -v size="$2" -v n=$templates -v wallets=$wallets -v clients="$clients" <<'EOF'
INSERT INTO bench_ingest.template
SELECT :'kind', :size, t, '[' || string_agg(format(
		'{"customer": "%s", "meter": "api.call", "quantity": 1, "idempotency_key": "@-%s"}',
		CASE :'kind' WHEN 'hot' THEN 1
			 WHEN 'part' THEN (t - 1) / :n * (:wallets / :clients) + 1 + (random() * (:wallets / :clients - 1))::int
			 ELSE 1 + (random() * (:wallets - 1))::int END, i), ', ') || ']'
  FROM generate_series(1, CASE :'kind' WHEN 'part' THEN :n * :clients ELSE :n END) t,
	   generate_series(1, :size) i
 GROUP BY t
ON CONFLICT DO NOTHING;
EOF
}
templates part "$size"
for s in $size $sizes; do
  templates spread "$s"
  templates hot "$s"
done
q -c 'VACUUM ANALYZE' -c 'CHECKPOINT'
echo "   loaded in $((SECONDS - t0)) s"

cat >"$out/single.pgb" <<'EOF'
\set c random(:lo, :hi)
\set k random(1, 9000000000000000000)
SELECT * FROM wallet_authorize_debit(:c, 'api.call', 1, :k);
EOF
cat >"$out/batch.pgb" <<'EOF'
\set t random(1, :templates)
\set k random(1, 9000000000000000000)
SELECT count(*) FILTER (WHERE approved) FROM wallet_ingest((SELECT replace(body, '@', :k::text) FROM bench_ingest.template WHERE kind = :kind AND size = :size AND n = :t)::jsonb);
EOF
cat >"$out/part.pgb" <<'EOF'
\set t :client_id * :templates + random(1, :templates)
\set k random(1, 9000000000000000000)
SELECT count(*) FILTER (WHERE approved) FROM wallet_ingest((SELECT replace(body, '@', :k::text) FROM bench_ingest.template WHERE kind = 'part' AND size = :size AND n = :t)::jsonb);
EOF
# the chunked procedure: a CALL's arguments cannot hold a subquery, so the
# body comes to the client first (-M prepared passes it as a parameter)
cat >"$out/chunked.pgb" <<'EOF'
\set t random(1, :templates)
\set k random(1, 9000000000000000000)
SELECT replace(body, '@', :k::text) AS body FROM bench_ingest.template WHERE kind = :kind AND size = :size AND n = :t \gset
CALL wallet_ingest_chunked(:body::jsonb, :chunk, NULL);
EOF
# the batch floor: the same template, parsed, its rows locked in id order,
# each updated once, one log row per element
cat >"$out/floor.pgb" <<'EOF'
\set t random(1, :templates)
\set k random(1, 9000000000000000000)
WITH j AS (SELECT (e->>'customer')::int AS c FROM jsonb_array_elements((SELECT replace(body, '@', :k::text) FROM bench_ingest.template WHERE kind = :kind AND size = :size AND n = :t)::jsonb) e), l AS (SELECT id FROM floor.balance WHERE id IN (SELECT c FROM j) ORDER BY id FOR NO KEY UPDATE), s AS (SELECT c, count(*) AS n FROM j GROUP BY c), u AS (UPDATE floor.balance b SET amount = b.amount - s.n FROM s JOIN l ON l.id = s.c WHERE b.id = s.c RETURNING b.id, b.amount) INSERT INTO floor.log (balance_id, delta, balance_after) SELECT j.c, -1, u.amount FROM j JOIN u ON u.id = j.c;
EOF
cat >"$out/floorpart.pgb" <<'EOF'
\set t :client_id * :templates + random(1, :templates)
\set k random(1, 9000000000000000000)
WITH j AS (SELECT (e->>'customer')::int AS c FROM jsonb_array_elements((SELECT replace(body, '@', :k::text) FROM bench_ingest.template WHERE kind = 'part' AND size = :size AND n = :t)::jsonb) e), l AS (SELECT id FROM floor.balance WHERE id IN (SELECT c FROM j) ORDER BY id FOR NO KEY UPDATE), s AS (SELECT c, count(*) AS n FROM j GROUP BY c), u AS (UPDATE floor.balance b SET amount = b.amount - s.n FROM s JOIN l ON l.id = s.c WHERE b.id = s.c RETURNING b.id, b.amount) INSERT INTO floor.log (balance_id, delta, balance_after) SELECT j.c, -1, u.amount FROM j JOIN u ON u.id = j.c;
EOF
chmod 644 "$out"/*.pgb

# run_pgbench SCRIPT CLIENTS SECONDS -D ...: prints transactions per second
run_pgbench() {
  local script=$1 c=$2 s=$3 log
  shift 3
  log=$out/ingest-$RANDOM.log
  if ! pgbench -n -M prepared -c "$c" -j "$(( c < 2 ? 1 : 2 ))" -T "$s" -f "$out/$script.pgb" "$@" >"$log" 2>&1; then
    cat "$log" >&2
    return 1
  fi
  if grep -q 'failed: [1-9]\|aborted\|error' "$log"; then
    echo "bench/ingest.sh: $script had failed transactions:" >&2
    cat "$log" >&2
    return 1
  fi
  sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$log"
  rm -f "$log"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
eps() { awk -v t="$1" -v n="$2" 'BEGIN { printf "%.0f", t * n }'; }

# events per second of one run
single_eps() { run_pgbench single "$clients" "$1" -D lo="$2" -D hi="$3"; }
batch_eps() {
  local t
  t=$(run_pgbench batch "$clients" "$1" -D kind="$2" -D size="$3" -D templates=$templates)
  eps "$t" "$3"
}
part_eps() {
  local t
  t=$(run_pgbench part "$clients" "$1" -D size="$2" -D templates=$templates)
  eps "$t" "$2"
}
chunked_eps() {
  local t
  t=$(run_pgbench chunked "$clients" "$1" -D kind="$2" -D size="$3" -D templates=$templates -D chunk="$4")
  eps "$t" "$3"
}
floor_eps() {
  local t
  t=$(run_pgbench floor "$clients" "$1" -D kind="$2" -D size="$3" -D templates=$templates)
  eps "$t" "$3"
}
floorpart_eps() {
  local t
  t=$(run_pgbench floorpart "$clients" "$1" -D size="$2" -D templates=$templates)
  eps "$t" "$2"
}

declare -A all=()
names=(single_spread batch_spread)
for c in $chunks; do names+=("chunked_$c"); done
names+=(floor_spread batch_part floor_part single_hot batch_hot floor_hot)
((generic)) && names+=(generic_spread generic_hot)
echo "== $rounds rounds x (${names[*]}), $clients clients, ${seconds}s each, batches of $size"
for ((r = 1; r <= rounds; r++)); do
  printf '   round %d:' "$r"
  for name in "${names[@]}"; do
    case $name in
      single_spread) e=$(single_eps "$seconds" 1 $wallets) ;;
      batch_spread) e=$(batch_eps "$seconds" spread "$size") ;;
      batch_part) e=$(part_eps "$seconds" "$size") ;;
      chunked_*) e=$(chunked_eps "$seconds" spread "$size" "${name#chunked_}") ;;
      floor_spread) e=$(floor_eps "$seconds" spread "$size") ;;
      floor_part) e=$(floorpart_eps "$seconds" "$size") ;;
      floor_hot) e=$(floor_eps "$seconds" hot "$size") ;;
      single_hot) e=$(single_eps "$seconds" 1 1) ;;
      batch_hot) e=$(batch_eps "$seconds" hot "$size") ;;
      generic_spread) e=$(PGOPTIONS="-c plan_cache_mode=force_generic_plan" single_eps "$seconds" 1 $wallets) ;;
      generic_hot) e=$(PGOPTIONS="-c plan_cache_mode=force_generic_plan" single_eps "$seconds" 1 1) ;;
    esac
    all[$name]+="$e "
    printf ' %s %.0f' "$name" "$e"
  done
  echo
done
declare -A med=()
for name in "${names[@]}"; do
  med[$name]=$(tr ' ' '\n' <<<"${all[$name]}" | grep . | median)
done

declare -A sweep=()
if [[ -n $sizes ]]; then
  echo "== batch sizes: ${sizes}, one run of ${seconds}s each"
  for s in $sizes; do
    sweep[spread $s]=$(batch_eps "$seconds" spread "$s")
    sweep[hot $s]=$(batch_eps "$seconds" hot "$s")
    echo "   $s: spread ${sweep[spread $s]} hot ${sweep[hot $s]} events/s"
  done
fi

say
say "== results ($(date -u +%Y-%m-%dT%H:%MZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
say "machine:  $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "postgres: $(q -c 'SHOW server_version'), ${settings[*]} fsync=off"
say "pgbench:  -M prepared -c $clients -j 2, $rounds rounds x ${seconds}s interleaved, median events/s"
say "          (chunk N: spread batches through wallet_ingest_chunked, chunks of N, each committed;"
say "           part.: spread batches, each client on its own $((wallets / clients)) wallets)"
say
say "$(printf '%-10s %14s %14s %14s %12s %12s' '' 'single calls' "batches of $size" 'batch floor' 'batch/single' 'batch/floor')"
row() { say "$(printf '%-10s %14.0f %14.0f %14.0f %12s %12s' "$1" "$2" "$3" "$4" "$(ratio "$3" "$2")" "$(ratio "$3" "$4")")"; }
row spread "${med[single_spread]}" "${med[batch_spread]}" "${med[floor_spread]}"
for c in $chunks; do
  row "  chunk $c" "${med[single_spread]}" "${med[chunked_$c]}" "${med[floor_spread]}"
done
row '  part.' "${med[single_spread]}" "${med[batch_part]}" "${med[floor_part]}"
row hot "${med[single_hot]}" "${med[batch_hot]}" "${med[floor_hot]}"
if ((generic)); then
  say
  say "single calls with generic plans: spread $(printf %.0f "${med[generic_spread]}"), hot $(printf %.0f "${med[generic_hot]}"); batch ratios" \
      "against them: spread $(ratio "${med[batch_spread]}" "${med[generic_spread]}")," \
      "hot $(ratio "${med[batch_hot]}" "${med[generic_hot]}")"
fi
if [[ -n $sizes ]]; then
  say
  say "$(printf '%-8s' 'size')$(for s in $sizes; do printf ' %10s' "$s"; done)"
  say "$(printf '%-8s' 'spread')$(for s in $sizes; do printf ' %10s' "${sweep[spread $s]}"; done)"
  say "$(printf '%-8s' 'hot')$(for s in $sizes; do printf ' %10s' "${sweep[hot $s]}"; done)"
fi
say
say "targets: spread >= 3x single: $(ratio "${med[batch_spread]}" "${med[single_spread]}")," \
    "spread >= 0.5 of the batch floor: $(ratio "${med[batch_spread]}" "${med[floor_spread]}")" \
    "(chunked: $(for c in $chunks; do printf '%s: %s, %s; ' "$c" "$(ratio "${med[chunked_$c]}" "${med[single_spread]}")" "$(ratio "${med[chunked_$c]}" "${med[floor_spread]}")"; done))," \
    "one wallet >= 10x single hot: $(ratio "${med[batch_hot]}" "${med[single_hot]}")," \
    "partitioned >= 10x single spread: $(ratio "${med[batch_part]}" "${med[single_spread]}")"

problems=$(q -c 'SELECT count(*) FROM wallet_verify()')
say "wallet_verify(): $problems problems"
((problems == 0))
