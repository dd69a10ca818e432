#!/usr/bin/env bash
# make test: build, install, start a throwaway cluster, run every suite.
# Last line of output is always "N passed, N failed".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source test/lib.sh

total_pass=0 total_fail=0
summary=()

# tally SUITE PASSED FAILED
tally() {
  summary+=("$(printf '%-11s %5d passed, %d failed' "$1" "$2" "$3")")
  total_pass=$((total_pass + $2))
  total_fail=$((total_fail + $3))
}

finish() {
  echo
  echo "== summary"
  printf '%s\n' "${summary[@]}"
  echo "$total_pass passed, $total_fail failed"
  ((total_fail == 0))
}

abort() {
  echo "run.sh: $1" >&2
  tally "$2" 0 1
  finish || exit 1
}

# Value of a variable of the Makefile (after PGXS), e.g. make_var REGRESS.
make_var() {
  # shellcheck disable=SC2016
  printf 'print-%%:\n\t@:$(info $($*))\n' |
    make -s --no-print-directory PG_CONFIG="$PG_CONFIG" -f Makefile -f - "print-$1"
}

# Count pg_regress result lines (PG15 "... ok/FAILED", PG16+ TAP "ok N - / not ok N -").
count_regress() {
  awk '/\.\.\. +ok( |$)/ || /^ok [0-9]+ +[-+] /  { p++ }
       /\.\.\. +(FAILED|failed)/ || /^not ok [0-9]+ / { f++ }
       END { print p + 0, f + 0 }' "$1"
}

# run_regress SUITE BINARY DIFFS ARGS...
run_regress() {
  local suite=$1 bin=$2 diffs=$3 log rc=0 p f
  shift 3
  log=$(mktemp)
  echo "== $suite"
  "$bin" --bindir="$PGBIN" --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" "$@" >"$log" 2>&1 || rc=$?
  read -r p f < <(count_regress "$log")
  if ((rc != 0 && f == 0)); then
    echo "run.sh: $suite exited with $rc" >&2
    f=1
  fi
  if ((f == 0)); then
    grep -E '\.\.\. |^(not )?ok [0-9]+|^parallel group' "$log" || true
  else
    cat "$log"
    if [[ -s $diffs ]]; then
      echo "-- $diffs"
      head -n 300 "$diffs"
    fi
  fi
  rm -f "$log"
  tally "$suite" "$p" "$f"
}

# Count one pg_prove --verbose output: ok/not ok lines, TODO failures pass,
# planned but missing tests fail.
count_tap() {
  awk '/^1\.\.[0-9]+/ { plan = substr($1, 4) + 0 }
       /^ok [0-9]+/ { p++ }
       /^not ok [0-9]+/ { if ($0 ~ /# *TODO/) p++; else f++ }
       END { if (plan > p + f) f += plan - p - f; print p + 0, f + 0 }' "$1"
}

run_pgtap() {
  local files=(test/pgtap/*.sql) file log rc p f sp=0 sf=0
  [[ -e ${files[0]} ]] || { tally pgtap 0 0; return; }
  echo "== pgtap"
  log=$(mktemp)
  if ! { createdb tap_template &&
         psql -X -q -v ON_ERROR_STOP=1 -d tap_template -c 'SET client_min_messages = warning' \
           -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION wallet'; }; then
    echo "run.sh: cannot create the pgTAP template database" >&2
    tally pgtap 0 1
    return
  fi
  for file in "${files[@]}"; do
    if ! createdb -T tap_template tap_test; then
      echo "$file: cannot create database tap_test"
      sf=$((sf + 1))
      continue
    fi
    rc=0
    pg_prove --psql-bin "$PGBIN/psql" --nocolor --verbose -d tap_test "$file" >"$log" 2>&1 || rc=$?
    dropdb tap_test || true
    read -r p f < <(count_tap "$log")
    ((rc == 0 || f > 0)) || f=1
    printf '%-40s %4d passed, %d failed\n' "$file" "$p" "$f"
    ((f == 0)) || sed 's/^/    /' "$log"
    sp=$((sp + p)) sf=$((sf + f))
  done
  rm -f "$log"
  tally pgtap "$sp" "$sf"
}

run_scripts() {
  local files=(test/scripts/*.sh) file log rc sp=0 sf=0
  [[ -e ${files[0]} ]] || { tally scripts 0 0; return; }
  echo "== scripts"
  log=$(mktemp)
  for file in "${files[@]}"; do
    rc=0
    timeout --foreground -k 30 "${WALLET_SCRIPT_TIMEOUT:-900}" bash "$file" </dev/null >"$log" 2>&1 || rc=$?
    ((rc != 130 && rc != 143)) || exit "$rc"  # interrupted: stop here
    if ((rc == 0)); then
      echo "$file ... ok"
      sp=$((sp + 1))
    else
      echo "$file ... FAILED (exit $rc$( ((rc != 124)) || echo ', timed out'))"
      sed 's/^/    /' "$log"
      sf=$((sf + 1))
    fi
  done
  rm -f "$log"
  tally scripts "$sp" "$sf"
}

# released install scripts are frozen: their checksums are recorded once, at release
echo "== release"
if sha256sum --quiet -c test/released.sha256; then
  echo "released scripts unchanged"
  tally release 1 0
else
  echo "run.sh: a released install script was edited; put the change in wallet--1.0--1.1.sql" >&2
  tally release 0 1
fi

ensure_deps || abort "missing dependencies" deps
echo "== build"
build_install || abort "build or install failed" build
start_cluster pg || abort "could not start a cluster" cluster

pgxs_dir=$(dirname "$("$PG_CONFIG" --pgxs)")
regress=$(make_var REGRESS) || abort "cannot read REGRESS from Makefile" pg_regress
isolation=$(make_var ISOLATION) || abort "cannot read ISOLATION from Makefile" isolation

if [[ -n $regress ]]; then
  rm -rf results regression.diffs regression.out
  # shellcheck disable=SC2046,SC2086
  run_regress pg_regress "$pgxs_dir/../test/regress/pg_regress" regression.diffs \
    --inputdir=. $(make_var REGRESS_OPTS) $regress
else
  tally pg_regress 0 0
fi

if [[ -n $isolation ]]; then
  rm -rf output_iso
  # shellcheck disable=SC2046,SC2086
  run_regress isolation "$pgxs_dir/../../src/test/isolation/pg_isolation_regress" output_iso/regression.diffs \
    --inputdir=. --outputdir=output_iso $(make_var ISOLATION_OPTS) $isolation
else
  tally isolation 0 0
fi

run_pgtap
run_scripts

finish || exit 1
