#!/usr/bin/env bash
# Docs that run: every ```sql block of README.md, then of each docs/*.md (in
# name order), runs as a reader would paste it, and shown output is compared.
#
#   README.md   all its blocks in order, in ONE session of one fresh database
#               (CREATE EXTENSION wallet first, unless its first block does it)
#   docs/X.md   all its blocks in order, in one session of its own fresh
#               database where only CREATE EXTENSION wallet has been done
#
# Conventions (also in docs/README.md):
#   ```sql        runs; psql -X with ON_ERROR_STOP=1, PGTZ=UTC, default
#                 (aligned) output; a block must end its last statement
#   ```sql-norun  shown, never run (needs several clusters, a file, ...)
#   ```output     right after a ```sql block (blank lines between allowed):
#                 the exact psql output of that block (stdout: result tables
#                 with their "(N rows)" footers; notices are not part of it),
#                 compared line by line; blanks at line ends and blank lines
#                 at the start and end are ignored
# A failure names the file, the block number (1 = its first ```sql block), the
# line of the block in the file, and psql's error or the diff.
#
# Run by make test (which builds and installs first), or by hand after
# make install: PGBIN=... bash test/scripts/docs.sh [FILE.md ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source test/lib.sh

start_cluster pg
work=$(mktemp -d)
at_exit "rm -rf '$work'"
chmod 755 "$work"
export PGTZ=UTC

if (($#)); then
  files=("$@")
else
  files=(README.md)
  for f in docs/*.md; do
    [[ -e $f ]] && files+=("$f")
  done
fi

# extract MD DIR: DIR/script.sql (every block, each after an \echo marker),
# DIR/map ("N SCRIPT_FIRST SCRIPT_LAST MD_LINE" per block), DIR/expect.N
# (the ```output of block N), DIR/first.sql (block 1); fails on an
# unterminated fence or a block whose last statement has no semicolon
extract() {
  awk -v dir="$2" '
    function flush_block(   i, last) {
      last = ""
      for (i = nlines; i >= 1; i--) {
        t = lines[i]
        sub(/--.*$/, "", t)            # a trailing comment (naive: strings with -- are rare)
        gsub(/[ \t]+$/, "", t)
        if (t != "") { last = t; break }
      }
      if (last != "" && last !~ /;$/ && last !~ /\\/) {   # ; or a psql command (\gset)
        printf "line %d: block %d does not end its last statement with a semicolon\n", start, n > "/dev/stderr"
        bad = 1
      }
      printf "\\echo @@docs-block %d\n", n > script
      sline += 1
      first = sline + 1
      for (i = 1; i <= nlines; i++) {
        print lines[i] > script
        if (n == 1) print lines[i] > (dir "/first.sql")
      }
      sline += nlines
      printf "%d %d %d %d\n", n, first, sline, start > (dir "/map")
    }
    BEGIN { script = dir "/script.sql"; state = 0; n = 0; sline = 0; pending = 0 }
    {
      line = $0
      if (state == 0) {
        if (line ~ /^[ \t]*```/) {
          ind = line; sub(/```.*$/, "", ind)
          tag = line; sub(/^[ \t]*```/, "", tag); gsub(/[ \t]+$/, "", tag)
          if (tag == "output" && pending) {
            state = 2; start = NR; out = dir "/expect." n; printf "" > out
          } else if (tag == "sql") {
            state = 1; n++; start = NR; nlines = 0
          } else {
            state = 3; start = NR
          }
          pending = 0
        } else if (line !~ /^[ \t]*$/) {
          pending = 0
        }
        next
      }
      if (line ~ /^[ \t]*```[ \t]*$/) {
        if (state == 1) { flush_block(); pending = 1 }
        else if (state == 2) close(out)
        state = 0
        next
      }
      if (ind != "" && substr(line, 1, length(ind)) == ind) line = substr(line, length(ind) + 1)
      if (state == 1) lines[++nlines] = line
      else if (state == 2) print line > out
    }
    END {
      if (state != 0) { printf "line %d: fence not closed\n", start > "/dev/stderr"; bad = 1 }
      printf "" > (dir "/map")
      exit bad
    }' "$1"
}

# normalize FILE: without trailing blanks on each line, and without blank
# lines at the start and end (psql ends every result with one)
normalize() {
  sed -E 's/[ \t]+$//' "$1" | awk 'NF { while (blank > 0) { print ""; blank-- }; seen = 1; print; next }
                                   seen { blank++ }'
}

failed=0
fail() { echo "FAIL $1" >&2; failed=$((failed + 1)); }

# run MD DB: run the blocks of MD in database DB, compare shown output
run_doc() {
  local md=$1 db=$2 dir rc=0 n first last mdline errline got
  dir=$work/$(echo "$md" | tr '/.' '__')
  mkdir -p "$dir"
  if ! extract "$md" "$dir" 2>"$dir/xerr"; then
    fail "$md: $(cat "$dir/xerr")"
    return
  fi
  if [[ ! -s $dir/map ]]; then
    echo "$md: no sql blocks"
    return
  fi
  psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$dir/script.sql" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
  if ((rc != 0)); then
    errline=$(grep -m1 -oE "^psql:[^:]*script\.sql:[0-9]+: (ERROR|FATAL|error)" "$dir/stderr" |
      sed -E 's/^psql:[^:]*:([0-9]+):.*/\1/' || true)
    while read -r n first last mdline; do
      if [[ -n $errline ]] && ((errline >= first && errline <= last)); then
        fail "$md: block $n (line $mdline of $md) failed:"
        sed 's/^/    /' "$dir/stderr" >&2
        return
      fi
    done <"$dir/map"
    fail "$md: psql exited with $rc:"
    sed 's/^/    /' "$dir/stderr" >&2
    return
  fi
  # split stdout at the markers: got.N is block N's output
  awk -v dir="$dir" '/^@@docs-block [0-9]+$/ { if (f) close(f); f = dir "/got." $2; printf "" > f; next }
                     f { print > f }' "$dir/stdout"
  while read -r n first last mdline; do
    [[ -e $dir/expect.$n ]] || continue
    got=$dir/got.$n
    [[ -e $got ]] || : >"$got"
    if ! diff -u <(normalize "$dir/expect.$n") <(normalize "$got") \
        --label "$md block $n (line $mdline): shown" --label "$md block $n: psql output" >"$dir/diff.$n"; then
      fail "$md: block $n (line $mdline of $md): output differs from what the doc shows:"
      sed 's/^/    /' "$dir/diff.$n" >&2
    fi
  done <"$dir/map"
  echo "$md: $(wc -l <"$dir/map") blocks, $(find "$dir" -name 'expect.*' | wc -l) outputs compared"
}

q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
q -d postgres -c 'CREATE DATABASE docs_template' >/dev/null
q -d docs_template -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION wallet' >/dev/null

# The harness checks itself first: a chapter whose second block fails, one
# whose shown output is wrong and one missing a semicolon must each be reported.
selftest() { # selftest NAME WANT_IN_REPORT: the doc in $work/NAME.md must fail so
  local before=$failed report
  q -d postgres -c "CREATE DATABASE self_$1 TEMPLATE docs_template" >/dev/null
  run_doc "$work/$1.md" "self_$1" >"$work/$1.report" 2>&1
  report=$(cat "$work/$1.report")
  if ((failed != before + 1)) || [[ $report != *"$2"* ]]; then
    echo "FAIL self-test $1: want one failure naming '$2', got:" >&2
    echo "$report" >&2
    failed=$((before + 1))
  else
    failed=$before
  fi
}
printf '%s\n' '# x' '```sql' 'SELECT 1;' '```' '' '```sql' 'SELECT no_such_function();' '```' >"$work/err.md"
selftest err "block 2 (line 6 of $work/err.md) failed"
printf '%s\n' '```sql' "SELECT 'shown' AS x;" '```' '```output' ' x' '---' ' not shown' '(1 row)' '```' >"$work/out.md"
selftest out "block 1 (line 1 of $work/out.md): output differs"
printf '%s\n' '```sql-norun' 'SELECT no_such_function();' '```' '```sql' 'SELECT 1' '```' >"$work/semi.md"
selftest semi "block 1 does not end its last statement with a semicolon"
((failed)) || echo "docs: the self-test caught a failing block, a wrong output and a missing semicolon"

k=0
for md in "${files[@]}"; do
  k=$((k + 1))
  db=docs_$k
  if [[ $md == README.md || $md == */README.md ]] && [[ $(basename "$(dirname "$md")") != docs ]]; then
    # the README: one fresh database; the extension first unless its first block creates it
    dir=$work/probe_$k
    mkdir -p "$dir"
    if extract "$md" "$dir" 2>/dev/null && [[ -e $dir/first.sql ]] &&
        grep -qiE 'create[[:space:]]+extension[[:space:]]+(if[[:space:]]+not[[:space:]]+exists[[:space:]]+)?"?wallet"?([[:space:]]|;|$)' "$dir/first.sql"; then
      q -d postgres -c "CREATE DATABASE $db" >/dev/null
    else
      q -d postgres -c "CREATE DATABASE $db TEMPLATE docs_template" >/dev/null
    fi
  else
    q -d postgres -c "CREATE DATABASE $db TEMPLATE docs_template" >/dev/null
  fi
  run_doc "$md" "$db"
done

if ((failed)); then
  echo "docs: $failed failure(s)" >&2
  exit 1
fi
echo "docs: every example ran"
