#!/usr/bin/env bash
# bench/scaleout.sh: the wallet through a PL/Proxy router with 2 shards, next to
# one database used directly.
#
#   bench/scaleout.sh [--quick] [--rounds R] [--seconds S] [--clients C] [--wallets N]
#
# Builds and installs into $PGBIN's PostgreSQL (default: the system's 15),
# starts four throwaway clusters on their own unix sockets: direct (one plain
# database), shard0 and shard1 (wallet.shard 0 and 1 of 2) and router
# (wallet_proxy, server wallet_cluster), loads N wallets (default 10,000; a
# grant and a per-unit price) into direct and, through the router, into the
# shards, then runs pgbench (-M prepared, synchronous_commit=off) on
#   debit    SELECT * FROM wallet_authorize_debit(customer, 'api.call', 1, key)
#   balance  SELECT wallet_balance(customer, 'credits')
# against direct and against the router: C clients for tps, then one client for
# the latency of a call; the difference is the cost of the hop.  All four
# clusters share this machine's cores, so the router's tps here shows its
# cost, not the gain of shards on their own servers.  R interleaved rounds
# (default 3) of 10 s per run, medians (about 5 minutes); --quick: one round
# of 3 s.  Results: stdout and bench/out/scaleout.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source test/lib.sh

rounds=3 seconds=10 clients=8 wallets=10000
while (($#)); do
  case $1 in
    --quick) rounds=1 seconds=3 ;;
    --rounds) rounds=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --clients) clients=$2; shift ;;
    --wallets) wallets=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench/scaleout.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

out=$PWD/bench/out
mkdir -p "$out"
chmod 777 "$out"	# pgbench runs as postgres and writes its scripts' logs here
results=$out/scaleout.txt
: >"$results"
say() { echo "$*" | tee -a "$results"; }

echo "== build and install into $PGBIN"
build_install

settings=(-c synchronous_commit=off -c shared_buffers=256MB -c max_wal_size=4GB
          -c checkpoint_timeout=30min -c max_connections=100)
for name in direct shard0 shard1 router; do
  start_cluster "$name" "${settings[@]}"
done

# q NAME ARGS...: psql on a cluster's bench database
q() {
  local h=${1}_HOST p=${1}_PORT
  shift
  psql -X -q -At -v ON_ERROR_STOP=1 -h "${!h}" -p "${!p}" -U postgres -d bench "$@"
}
for name in direct shard0 shard1 router; do
  h=${name}_HOST p=${name}_PORT
  createdb -h "${!h}" -p "${!p}" -U postgres bench
done
for k in 0 1; do
  q "shard$k" -c "ALTER DATABASE bench SET wallet.shard = $k" -c 'ALTER DATABASE bench SET wallet.shards = 2'
  q "shard$k" -c 'CREATE EXTENSION wallet'
done
q direct -c 'CREATE EXTENSION wallet'
make_router router bench shard0 shard1

# the same API calls load both: directly, and through the router
load() {
  cat <<SQL
SELECT wallet_create_asset('credits', 0, 0.01);
SELECT wallet_set_price('api.call', 'credits', '{"model": "per_unit", "unit_price": "1"}', now() - interval '1 day');
SELECT count(wallet_create(i::text)) FROM generate_series(1, $wallets) i;
SELECT count(wallet_grant(i::text, 'credits', 1000000000)) FROM generate_series(1, $wallets) i;
SQL
}
echo "== load: $wallets wallets, directly and through the router"
t0=$SECONDS
load | q direct >/dev/null
load | q router >/dev/null
for name in direct shard0 shard1; do q "$name" -c 'VACUUM ANALYZE' -c 'CHECKPOINT'; done
echo "   loaded in $((SECONDS - t0)) s; shard 0 has $(q shard0 -c 'SELECT count(*) FROM wallet.wallet'), shard 1 $(q shard1 -c 'SELECT count(*) FROM wallet.wallet') wallets"

cat >"$out/scaleout-debit.pgb" <<'EOF'
\set c random(1, :wallets)
\set k random(1, 9000000000000000000)
SELECT * FROM wallet_authorize_debit(:c, 'api.call', 1, :k);
EOF
cat >"$out/scaleout-balance.pgb" <<'EOF'
\set c random(1, :wallets)
SELECT wallet_balance(:c, 'credits');
EOF
chmod 644 "$out"/scaleout-*.pgb

# run TARGET SCRIPT CLIENTS: prints "tps latency_ms"
run() {
  local h=${1}_HOST p=${1}_PORT log=$out/scaleout-$1-$2-c$3.log
  if ! as_pg pgbench -n -M prepared -c "$3" -j "$(($3 < 2 ? 1 : 2))" -T "$seconds" \
      -h "${!h}" -p "${!p}" -U postgres -D wallets="$wallets" -f "$out/scaleout-$2.pgb" bench >"$log" 2>&1 ||
     grep -q 'failed: [1-9]\|aborted' "$log"; then
    cat "$log" >&2
    exit 1
  fi
  echo "$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$log")" \
       "$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$log")"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# interleaved rounds; the median of each
declare -A tps=() lat=() all_t=() all_l=()
echo "== $rounds rounds x (debit, balance) x ($clients clients, 1 client) x (direct, router), ${seconds}s each"
for ((r = 1; r <= rounds; r++)); do
  for script in debit balance; do
    for c in "$clients" 1; do
      for target in direct router; do
        read -r t l < <(run "$target" "$script" "$c")
        all_t[$target-$script-$c]+="$t " all_l[$target-$script-$c]+="$l "
        printf '   round %d %-8s %-7s %2d clients: %8.0f tps, %7.3f ms\n' "$r" "$script" "$target" "$c" "$t" "$l"
      done
    done
  done
done
for k in "${!all_t[@]}"; do
  tps[$k]=$(tr ' ' '\n' <<<"${all_t[$k]}" | grep . | median)
  lat[$k]=$(tr ' ' '\n' <<<"${all_l[$k]}" | grep . | median)
done

# The hop alone: 20,000 wallet_balance calls in one statement, directly and
# through the router.  Wall time (the fastest round) and CPU time: what every
# process of the clusters involved used (clock ticks of the postmasters'
# children, living and exited, from /proc), which other load on the machine
# inflates far less than wall time.
calls=20000
cpu_ticks() {
  local name d pm
  for name in "$@"; do
    d=${name}_DIR
    pm=$(head -n 1 "${!d}/data/postmaster.pid")
    awk '{ print $16 + $17 }' "/proc/$pm/stat"		# children that have exited
    for c in $(ps -o pid= --ppid "$pm"); do
      awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || true
    done
  done | awk '{ s += $1 } END { print s + 0 }'
}
# loop TARGET CLUSTERS...: prints "wall_us cpu_us" per call
loop() {
  local target=$1 best="" ms t0 t1 cpu=""
  shift
  for ((r = 1; r <= rounds + 2; r++)); do
    t0=$(cpu_ticks "$@")
    ms=$(q "$target" -c '\timing on' \
           -c "SELECT count(wallet_balance((i % $wallets + 1)::text, 'credits')) FROM generate_series(1, $calls) i" |
         sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
    t1=$(cpu_ticks "$@")
    best=$(awk -v a="$ms" -v b="$best" 'BEGIN { print (b == "" || a < b) ? a : b }')
    cpu=$(awk -v a="$((t1 - t0))" -v b="$cpu" 'BEGIN { print (b == "" || a < b) ? a : b }')
  done
  awk -v ms="$best" -v ticks="$cpu" -v hz="$(getconf CLK_TCK)" -v n="$calls" \
    'BEGIN { printf "%.1f %.1f\n", ms * 1000 / n, ticks / hz * 1e6 / n }'
}
read -r loop_direct cpu_direct < <(loop direct direct)
read -r loop_router cpu_router < <(loop router router shard0 shard1)
echo "   loop: wallet_balance directly $loop_direct us wall, $cpu_direct us cpu per call; through the router $loop_router us wall, $cpu_router us cpu"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
hop() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (a - b) * 1000 }'; }

say
say "== results ($(date -u +%Y-%m-%dT%H:%MZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
say "machine:  $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); the four clusters share them"
say "postgres: $(q direct -c 'SHOW server_version'), ${settings[*]} fsync=off; $wallets wallets"
say "pgbench:  -M prepared, $rounds rounds x ${seconds}s per run interleaved, medians"
say
say "$(printf '%-8s %12s %12s %8s   %14s %14s %8s' '' "direct tps" "router tps" ratio "direct 1c ms" "router 1c ms" "hop us")"
for script in debit balance; do
  say "$(printf '%-8s %12.0f %12.0f %8s   %14.3f %14.3f %8s' "$script" \
    "${tps[direct-$script-$clients]}" "${tps[router-$script-$clients]}" \
    "$(ratio "${tps[router-$script-$clients]}" "${tps[direct-$script-$clients]}")" \
    "${lat[direct-$script-1]}" "${lat[router-$script-1]}" \
    "$(hop "${lat[router-$script-1]}" "${lat[direct-$script-1]}")")"
done
say "(tps at $clients clients; latency and hop at 1 client: router minus direct)"
say "hop in a loop ($calls wallet_balance calls in one statement, fastest of $((rounds + 2)) rounds), per call:"
say "  wall: direct $loop_direct us, router $loop_router us: $(awk -v a="$loop_router" -v b="$loop_direct" 'BEGIN { printf "%.0f", a - b }') us per hop"
say "  cpu (all processes of the clusters): direct $cpu_direct us, router + shards $cpu_router us: $(awk -v a="$cpu_router" -v b="$cpu_direct" 'BEGIN { printf "%.0f", a - b }') us per hop"

problems=$(q router -c 'SELECT count(*) FROM wallet_verify()')
say "wallet_verify() on every shard: $problems problems"
((problems == 0))
