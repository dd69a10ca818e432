#!/usr/bin/env bash
# make valgrind: run the pg_regress suites (and the isolation specs unless
# VALGRIND_ISOLATION=0) against a server running under valgrind memcheck, then
# scan the logs.  Fails if any valgrind error has a frame in wallet.so (our
# code), in its own stack or in the stack where an uninitialised value was
# created; other errors (PostgreSQL, libc) are counted and reported.
# Builds wallet.so with -O0 -g for exact stacks and rebuilds it normally at exit.
# Logs stay in output_valgrind/ (one valgrind.PID.log per process).
#   VALGRIND_REGRESS='core hostile'  run only these sql/ files (default: all)
#   VALGRIND_ISOLATION=0             skip the isolation specs; or a list of specs
# shellcheck disable=SC2154  # vg_DIR, vg_HOST, vg_PORT: set by start_cluster
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source test/lib.sh

out=$WALLET_ROOT/output_valgrind
supp=$WALLET_ROOT/test/valgrind.supp
started=$SECONDS
skip_isolation="capture_expiry reset_race"

# valgrind comes from Debian, installed the way ensure_deps installs the rest
ensure_valgrind() {
  command -v valgrind >/dev/null && return 0
  if [[ $EUID -ne 0 ]]; then
    echo "valgrind.sh: valgrind is missing and not root" >&2
    return 1
  fi
  { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; } >/dev/null 2>&1 ||
    { echo "valgrind.sh: could not install valgrind" >&2; return 1; }
}

# Value of a variable of the Makefile (after PGXS), as in test/run.sh.
make_var() {
  # shellcheck disable=SC2016
  printf 'print-%%:\n\t@:$(info $($*))\n' |
    make -s --no-print-directory PG_CONFIG="$PG_CONFIG" -f Makefile -f - "print-$1"
}

# Rebuild and install wallet.so with extra compiler flags (none: the normal build).
rebuild() {
  make -s --no-print-directory -C "$WALLET_ROOT" PG_CONFIG="$PG_CONFIG" clean >/dev/null &&
    make -s --no-print-directory -C "$WALLET_ROOT" PG_CONFIG="$PG_CONFIG" ${1:+COPT="$1"} >/dev/null &&
    make -s --no-print-directory -C "$WALLET_ROOT" PG_CONFIG="$PG_CONFIG" install >/dev/null
}

ensure_deps
ensure_valgrind
echo "== build (-O0 -g)"
rebuild '-O0 -g'
at_exit "rebuild"

# a normal cluster first (initdb, port, cleanup at exit), then the same data
# directory restarted with the postmaster under valgrind
start_cluster vg
stop_cluster vg
rm -rf "$out"
mkdir -p "$out"
chmod 777 "$out"
echo "== postgres under valgrind (logs in output_valgrind/)"
# Backends are forked, not exec'd; --trace-children covers anything exec'd.
# Leak checking is off: memory contexts free everything at once.  No
# --error-exitcode: a server process exiting with it can make the postmaster
# restart them all as after a crash; the logs are scanned instead.
as_pg valgrind --tool=memcheck --trace-children=yes --track-origins=yes \
  --read-var-info=yes --leak-check=no --error-limit=no --num-callers=30 --fullpath-after= \
  --error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END \
  --suppressions="$supp" --log-file="$out/valgrind.%p.log" \
  "$PGBIN/postgres" -D "$vg_DIR/data" -k "$vg_DIR" -c listen_addresses='' -p "$vg_PORT" \
  -c fsync=off -c max_prepared_transactions=10 -c shared_preload_libraries='' \
  -c max_connections=20 -c autovacuum=off -c jit=off \
  >"$vg_DIR/log" 2>&1 </dev/null &
for ((i = 0; i < 240; i++)); do
  pg_isready -q -h "$vg_HOST" -p "$vg_PORT" && break
  sleep 1
done
pg_isready -q -h "$vg_HOST" -p "$vg_PORT" || { echo "valgrind.sh: server did not start" >&2; cat "$vg_DIR/log" >&2; exit 1; }

pgxs_dir=$(dirname "$("$PG_CONFIG" --pgxs)")
# run_suite NAME BINARY ARGS...: a pg_regress-style runner into output_valgrind/NAME/,
# its output in output_valgrind/NAME.out, its time in output_valgrind/NAME.time
run_suite() {
  local name=$1 bin=$2 t=$SECONDS rc=0
  shift 2
  "$bin" --bindir="$PGBIN" --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" \
    --outputdir="$out/$name" "$@" >"$out/$name.out" 2>&1 || rc=$?
  echo "$((SECONDS - t))" >"$out/$name.time"
  return "$rc"
}
# show_suite NAME RC: its result lines, or everything and the diffs if it failed
show_suite() {
  echo "== $1 ($(cat "$out/$1.time")s)"
  if (($2 == 0)); then
    grep -E '\.\.\. ' "$out/$1.out" || true
  else
    cat "$out/$1.out"
    [[ ! -s $out/$1/regression.diffs ]] || head -n 200 "$out/$1/regression.diffs"
  fi
}

regress=${VALGRIND_REGRESS:-$(make_var REGRESS)}
isolation=${VALGRIND_ISOLATION:-$(make_var ISOLATION)}
[[ $isolation != 0 ]] || isolation=
# Specs that race a wall-clock deadline (a 2-second hold ttl) cannot keep it
# at valgrind's speed: left out here, they run in make test.
isolation=$(for s in $isolation; do [[ " $skip_isolation " == *" $s "* ]] || echo "$s"; done)

# Both runners at once (databases contrib_regression and isolation_regression):
# valgrind runs each process on one CPU, and the specs spend time waiting.
echo "== running: pg_regress ${regress//$'\n'/ }; isolation ${isolation//$'\n'/ }"
pids=() names=()
if [[ -n $regress ]]; then
  # shellcheck disable=SC2046,SC2086
  run_suite pg_regress "$pgxs_dir/../test/regress/pg_regress" \
    --inputdir=. $(make_var REGRESS_OPTS) $regress &
  pids+=($!) names+=(pg_regress)
fi
if [[ -n $isolation ]]; then
  # shellcheck disable=SC2046,SC2086
  run_suite isolation "$pgxs_dir/../../src/test/isolation/pg_isolation_regress" \
    $(make_var ISOLATION_OPTS) $isolation &
  pids+=($!) names+=(isolation)
fi
failed=0
for i in "${!pids[@]}"; do
  rc=0
  wait "${pids[i]}" || rc=$?
  show_suite "${names[i]}" "$rc"
  ((rc == 0)) || failed=1
done

stop_cluster vg
wait || true
cp "$vg_DIR/log" "$out/postgres.log"

# Each error is one VALGRINDERROR-BEGIN..END block.  It is ours if any line of
# it is in wallet.so or our sources: its stack, or the stack that created an
# uninitialised value it used (so our bytes reaching a PostgreSQL write count).
# Others are summed up by kind and by the function that created the value.
awk -v root="$WALLET_ROOT/src/" -v ours_file="$out/ours.txt" -v kinds_file="$out/kinds.txt" '
  /VALGRINDERROR-BEGIN/ { inerr = 1; block = ""; kind = ""; origin = ""; want = 0; ours = 0; next }
  /VALGRINDERROR-END/ {
    inerr = 0
    if (ours) { nours++; printf "%s:\n%s\n", FILENAME, block > ours_file }
    else { nother++; print kind (origin == "" ? "" : "; created by " origin) > kinds_file }
    next
  }
  !inerr { next }
  {
    block = block $0 "\n"
    if (index($0, "wallet.so") || index($0, root)) ours = 1
    line = $0; sub(/^==[0-9]+== +/, "", line)
    if (kind == "") kind = line
    else if (line ~ /was created by/) want = 1
    else if (want && line ~ /^(at|by) /) {
      # the first named frame that is not the allocator
      fn = line; sub(/^(at|by) 0x[0-9A-Fa-f]+: /, "", fn); sub(/ \(.*/, "", fn)
      if (fn !~ /^(\?\?\?|malloc|realloc|calloc|palloc0?|repalloc|MemoryContextAlloc.*|AllocSet.*)$/) { origin = fn; want = 0 }
      else if (origin == "" && match(line, /\(in [^)]*\)/)) { origin = substr(line, RSTART + 4, RLENGTH - 5); sub(/.*\//, "", origin) }
    }
  }
  END { print nours + 0, nother + 0 }
' "$out"/valgrind.*.log >"$out/counts"
read -r ours other <"$out/counts"
procs=$(find "$out" -name 'valgrind.*.log' | wc -l)
suppressed=$(cat "$out"/valgrind.*.log | sed -n 's/.*ERROR SUMMARY:.*suppressed: \([0-9]*\) from.*/\1/p' |
  awk '{ n += $1 } END { print n + 0 }')
if ((ours > 0)); then
  echo "-- errors in wallet.so (all in output_valgrind/ours.txt):"
  head -n 400 "$out/ours.txt"
fi
if ((other > 0)); then
  echo "-- errors outside wallet.so, by kind:"
  sort "$out/kinds.txt" | uniq -c | sort -rn
fi
echo "valgrind: $procs processes, $ours errors in wallet.so, $other other errors" \
  "($suppressed more suppressed by test/valgrind.supp), $((SECONDS - started))s"
((failed == 0)) || { echo "valgrind.sh: a suite failed under valgrind" >&2; exit 1; }
((ours == 0))
