# shellcheck shell=bash
# Assertions and psql shorthands for shell suites that start their own clusters
# (test/scripts/scaleout*.sh).  Source after test/lib.sh; needs $work, a scratch
# directory.  Each assertion prints "ok - NAME" or "not ok - NAME" and counts
# failures in $failures; a suite ends with: exit $((failures > 0))
failures=0
ok() { echo "ok - $1"; }
fail() { echo "not ok - $1"; failures=$((failures + 1)); }
# check NAME EXPECTED ACTUAL
check() {
  if [[ $2 == "$3" ]]; then ok "$1"; else fail "$1: expected '$2', got '$3'"; fi
}
# same NAME FILE1 FILE2: two outputs are identical (the diff is shown when not)
same() {
  if diff -u "$2" "$3" >"$work/diff"; then
    ok "$1 ($(wc -l <"$2") lines)"
  else
    fail "$1"
    head -n 60 "$work/diff"
  fi
}
# q NAME DB ARGS...: psql on a cluster's database, quiet, stopping at errors
q() {
  local h=${1}_HOST p=${1}_PORT db=$2
  shift 2
  psql -X -q -v ON_ERROR_STOP=1 -h "${!h}" -p "${!p}" -U postgres -d "$db" "$@"
}
# v NAME DB SQL: one value
v() { q "$1" "$2" -At -c "$3"; }
