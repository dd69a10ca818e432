#!/usr/bin/env bash
# bench/caps.sh: what spend caps cost on the hot path.  Run by hand (not part
# of make test):
#
#   PGBIN=/usr/lib/postgresql/15/bin bash bench/caps.sh [SECONDS [CLIENTS [ROUNDS]]]
#   BASELINE=<git rev> PGBIN=... bash bench/caps.sh ...
#   SECONDS 0 skips pgbench; CONFIGS="nocap cap1" picks configurations;
#   CPU_DEBITS sets the debits of the CPU measure (default 5000).
#
# Builds and installs this tree, starts a throwaway cluster and times
# wallet_debit with pgbench (each client debits its own wallet, so clients do
# not queue on one lock) in these configurations, interleaved ROUNDS times:
#   nocap  wallets without caps (the hot path must not pay for caps here)
#   cap1   one whole-wallet day cap
#   cap3   an hour cap, a month cap and a per-user day cap
#   base   (with BASELINE) the given revision, built and installed beside this
#          one as extension wallet_base, wallets without caps
# Caps are large enough never to decline: every debit is checked and counted.
# Three measures, each the median over rounds: pgbench tps (wall clock: noisy
# on a shared machine); the server CPU time one backend spends per
# wallet_debit (CPU_DEBITS debits, default 5000), with its ratio to nocap
# measured in the same round (steadier); and how many statements wallet_debit
# runs inside (pg_stat_statements, nested), which does not depend on load.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source test/lib.sh

secs=${1:-10}
clients=${2:-2}
rounds=${3:-3}

build_install
if [[ -n ${BASELINE:-} ]]; then
  base_dir=$(mktemp -d /tmp/wallet_base.XXXXXX)
  at_exit "rm -rf $base_dir"
  git archive "$BASELINE" | tar -x -C "$base_dir"
  # the same code as extension wallet_base (its own library, control and script)
  sed -i 's/^EXTENSION = wallet$/EXTENSION = wallet_base/; s/^MODULE_big = wallet$/MODULE_big = wallet_base/;
          s/^DATA = wallet--1.0.sql$/DATA = wallet_base--1.0.sql/' "$base_dir/Makefile"
  sed 's|\$libdir/wallet|$libdir/wallet_base|' "$base_dir/wallet.control" >"$base_dir/wallet_base.control"
  mv "$base_dir/wallet--1.0.sql" "$base_dir/wallet_base--1.0.sql"
  make -s -C "$base_dir" PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s -C "$base_dir" PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
start_cluster bench -c synchronous_commit=off -c max_connections=40 \
  -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all

# setup DB EXTENSION PREFIX...: a wallet per client, 1e9 USD each
setup() {
  local db=$1 ext=$2
  shift 2
  createdb "$db"
  psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<SQL
SET client_min_messages = warning;
CREATE EXTENSION $ext;
CREATE EXTENSION pg_stat_statements;
SELECT wallet_create_asset('USD', 2);
SELECT wallet_create(p || '-' || c), wallet_grant(p || '-' || c, 'USD', 1000000000)
  FROM unnest(string_to_array('$*', ' ')) p, generate_series(0, $clients - 1) c;
SQL
}

setup bench wallet nocap cap1 cap3
psql -X -q -v ON_ERROR_STOP=1 -d bench <<SQL
SELECT wallet_set_cap('cap1-' || c, 'USD', 1e12, 'day') FROM generate_series(0, $clients - 1) c;
SELECT wallet_set_cap('cap3-' || c, 'USD', 1e12, 'hour'),
       wallet_set_cap('cap3-' || c, 'USD', 1e12, 'month'),
       wallet_set_cap('cap3-' || c, 'USD', 1e12, 'day', 'user')
  FROM generate_series(0, $clients - 1) c;
SQL
configs=(${CONFIGS:-nocap cap1 cap3})
if [[ -n ${BASELINE:-} ]]; then
  setup bench_base wallet_base base
  configs+=(base)
fi

script=$(mktemp)
at_exit "rm -f $script"
cat >"$script" <<'SQL'
\set k random(1, 1000000000000000)
\set u random(1, 20)
SELECT wallet_debit(':w' || '-' || :client_id, 'USD', 0.01, 'k' || :k,
                    jsonb_build_object('user', 'u' || :u));
SQL
chmod 644 "$script"

# server CPU (user + system) of one backend per wallet_debit, in microseconds:
# N debits, one transaction each, from one psql session.  Unlike tps, CPU time
# hardly moves when other work shares the machine.
cpu_per_debit() {
  local db=$1 cfg=$2 n=$3 tag=$4 f i
  f=$(mktemp)
  {
    echo "SELECT pg_backend_pid() AS pid \\gset"
    for ((i = 0; i < 50; i++)); do    # warm up: plans prepared, caches filled
      echo "SELECT wallet_debit('$cfg-0', 'USD', 0.01, 'warm-$tag-$i', '{\"user\": \"u$((i % 20))\"}');"
    done
    echo "SELECT pg_stat_statements_reset() \\g /dev/null"
    echo "\\setenv BPID :pid"
    echo "\\! awk '{ print \$14 + \$15 }' /proc/\$BPID/stat > $f.0"
    for ((i = 0; i < n; i++)); do
      echo "SELECT wallet_debit('$cfg-0', 'USD', 0.01, 'cpu-$tag-$i', '{\"user\": \"u$((i % 20))\"}');"
    done
    echo "\\! awk '{ print \$14 + \$15 }' /proc/\$BPID/stat > $f.1"
    echo "\\pset tuples_only on"
    echo "\\pset format unaligned"
    # statements run inside wallet_debit (SPI), per debit
    echo "SELECT round(sum(calls)::numeric / $n, 2) FROM pg_stat_statements"
    echo " WHERE NOT toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \\g $f.2"
  } >"$f.sql"
  psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$db" -f "$f.sql"
  awk -v a="$(cat "$f.0")" -v b="$(cat "$f.1")" -v hz="$(getconf CLK_TCK)" -v n="$n" \
    'BEGIN { printf "%.1f", (b - a) * 1000000 / hz / n }'
  printf ' %s\n' "$(cat "$f.2")"
  rm -f "$f" "$f.sql" "$f.0" "$f.1" "$f.2"
}

declare -A tps cpu ratio stmts
for ((r = 1; r <= rounds; r++)); do
  for cfg in "${configs[@]}"; do
    db=bench
    [[ $cfg != base ]] || db=bench_base
    t=0
    if ((secs > 0)); then
      t=$(pgbench -n -T "$secs" -c "$clients" -j "$clients" -f "$script" -D w="$cfg" "$db" 2>&1 |
          awk '/^tps = / { print $3; exit }')
    fi
    read -r c st < <(cpu_per_debit "$db" "$cfg" "${CPU_DEBITS:-5000}" "$r")
    [[ $cfg != nocap ]] || round_nocap=$c
    echo "round $r $cfg: $t tps, $c us CPU per debit, $st statements per debit"
    tps[$cfg]="${tps[$cfg]:-} $t"
    cpu[$cfg]="${cpu[$cfg]:-} $c"
    stmts[$cfg]=$st
    ratio[$cfg]="${ratio[$cfg]:-} $(awk -v a="$c" -v b="$round_nocap" 'BEGIN { print (b > 0) ? a / b : 0 }')"
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "median of $rounds rounds: pgbench ${secs}s with $clients clients (one wallet each; 0 = not run),"
echo "server CPU per debit over ${CPU_DEBITS:-5000} debits from one session, and its ratio to"
echo "nocap in the same round; statements wallet_debit runs (SPI) per debit:"
nocap_t=$(median <<<"${tps[nocap]}")
for cfg in "${configs[@]}"; do
  t=$(median <<<"${tps[$cfg]}")
  printf '  %-6s %9.1f tps (%5.3f x nocap)  %7.1f us CPU/debit (%5.3f x nocap)  %s statements\n' "$cfg" \
    "$t" "$(awk -v a="$t" -v b="$nocap_t" 'BEGIN { print (b > 0) ? a / b : 0 }')" \
    "$(median <<<"${cpu[$cfg]}")" "$(median <<<"${ratio[$cfg]}")" "${stmts[$cfg]}"
done
