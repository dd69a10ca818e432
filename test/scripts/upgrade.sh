#!/usr/bin/env bash
# Upgrade from 1.0 to 1.1 on a populated database (test/upgrade/):
#  1. wallet 1.0 (wallet--1.0.sql, frozen) with a realistic scenario, served by
#     the current C library;
#  2. ALTER EXTENSION wallet UPDATE;
#  3. every number read through the 1.0 contract is unchanged, wallet_verify()
#     is clean, the hold left open by 1.0 captures and replays;
#  4. the upgraded schema is the same as a fresh CREATE EXTENSION's;
#  5. a pg_dump of the upgraded database restores into a fresh one with the
#     same numbers;
#  6. the whole pg_regress suite passes on a database upgraded from 1.0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
here=test/upgrade
out=$(mktemp -d)
db=upg_$$ fresh=upg_fresh_$$ rst=upg_restore_$$ reg=upg_regress_$$
cleanup() {
  for d in "$db" "$fresh" "$rst" "$reg"; do dropdb --if-exists "$d" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT
run() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
fail() { echo "upgrade: $*" >&2; exit 1; }
version() { psql -X -At -d "$1" -c "SELECT extversion FROM pg_extension WHERE extname = 'wallet'"; }
numbers() { psql -X -At -v ON_ERROR_STOP=1 -d "$1" -f "$here/numbers.sql"; }
verify_clean() {
  local n
  n=$(psql -X -At -d "$1" -c "SELECT count(*) FROM wallet_verify()")
  [[ $n == 0 ]] || { psql -X -d "$1" -c "SELECT * FROM wallet_verify()"; fail "wallet_verify() not clean in $1"; }
}

# 1. a 1.0 database, populated
createdb "$db"
run -d "$db" -c "CREATE EXTENSION wallet VERSION '1.0'"
[[ $(version "$db") == 1.0 ]] || fail "not at 1.0"
run -d "$db" -f "$here/scenario.sql" >"$out/scenario.log"
numbers "$db" >"$out/before"
verify_clean "$db"
# what only 1.1 can do refuses on a 1.0 schema, naming the fix (the 1.1 library's
# entry point, reached through a function made for the test)
msg=$(psql -X -At -d "$db" 2>&1 <<'SQL' || true
SET client_min_messages = warning;
\set VERBOSITY verbose
CREATE FUNCTION pg_temp.extend(bigint, interval) RETURNS wallet_result
	AS '$libdir/wallet', 'wallet_extend_hold' LANGUAGE C;
SELECT * FROM pg_temp.extend((SELECT id FROM wallet.hold WHERE idempotency_key = 'h-open'), '1 hour');
SQL
)
[[ $msg == *"55000"*"needs wallet 1.1"*"ALTER EXTENSION wallet UPDATE"* ]] ||
  fail "a 1.1 function on a 1.0 schema did not name the upgrade: $msg"
(($(grep -c '' "$out/before") >= 60)) || fail "too few numbers to compare: $(grep -c '' "$out/before")"
grep -q '^hold|.*|open|' "$out/before" || fail "the scenario left no open hold"
grep -q '^outbox|' "$out/before" || fail "the scenario wrote no outbox row"

# 2. the upgrade
run -d "$db" -c "ALTER EXTENSION wallet UPDATE"
[[ $(version "$db") == 1.1 ]] || fail "not at 1.1 after the update: $(version "$db")"

# 3. every number kept
numbers "$db" >"$out/after"
diff -u "$out/before" "$out/after" || fail "numbers changed by the upgrade"
verify_clean "$db"
hold=$(psql -X -At -d "$db" -c "SELECT id FROM wallet.hold WHERE idempotency_key = 'h-open'")
res=$(psql -X -At -v ON_ERROR_STOP=1 -d "$db" -c "SELECT approved, replayed, amount FROM wallet_capture($hold, 'chat', 1)")
[[ $res == 't|f|12' ]] || fail "capture of the 1.0 hold: $res"
res=$(psql -X -At -v ON_ERROR_STOP=1 -d "$db" -c "SELECT approved, replayed, amount FROM wallet_capture($hold, 'chat', 1)")
[[ $res == 't|t|12' ]] || fail "replayed capture of the 1.0 hold: $res"
res=$(psql -X -At -v ON_ERROR_STOP=1 -d "$db" -c "SELECT approved, replayed FROM wallet_authorize_debit('acme', 'chat', 1, 'a1', '{\"user\": \"ann\"}', cost => 0.02)")
[[ $res == 't|t' ]] || fail "replay of a 1.0 debit: $res"
verify_clean "$db"

# the key of a 1.0 hold is still a hold's for a debit (wallet.holds_made set by the upgrade)
res=$(psql -X -At -d "$db" -c "SELECT count(*) FILTER (WHERE customer = 'acme' AND holds_made) || '|' ||
                                        count(*) FILTER (WHERE holds_made IS DISTINCT FROM
                                          EXISTS (SELECT FROM wallet.hold h WHERE h.wallet_id = w.id))
                                   FROM wallet.wallet w")
[[ $res == '1|0' ]] || fail "holds_made after the upgrade (acme set, wrong ones): $res"
msg=$(psql -X -At -d "$db" -c "\\set VERBOSITY sqlstate" -c "SELECT * FROM wallet_debit('acme', 'credits', 1, 'h-done')" 2>&1 || true)
[[ $msg == *WL004* ]] || fail "a debit with a 1.0 hold's key: $msg"

# pages of a statement cross the upgrade: a line carried on a 1.0 event (its own
# line id, found through event_line) and on a 1.1 event (the event's id)
run -d "$db" -c "SELECT approved FROM wallet_authorize_debit('acme', 'chat', 1, 'after-upgrade')" >/dev/null
carried=$(psql -X -At -d "$db" -c "SELECT count(*) FILTER (WHERE line_id <> id) || '|' || count(*) FILTER (WHERE line_id = id)
                                     FROM wallet.event WHERE wallet_id = wallet._wallet_id('acme')")
[[ $carried =~ ^[1-9][0-9]*\|[1-9][0-9]*$ ]] || fail "want lines carried on 1.0 and on 1.1 events: $carried"
whole=$(psql -X -At -d "$db" -c "SELECT line_id FROM wallet_statement('acme') WHERE line_id IS NOT NULL")
paged= after=NULL
while :; do
  page=$(psql -X -At -v ON_ERROR_STOP=1 -d "$db" \
    -c "SELECT line_id FROM wallet_statement('acme', after_line => $after, max_lines => 2) WHERE line_id IS NOT NULL")
  [[ -n $page ]] || break
  paged+=$page$'\n'
  after=$(tail -n 1 <<<"$page")
done
[[ $whole == "${paged%$'\n'}" ]] || fail "statement pages after the upgrade differ from the whole statement:
$whole
--
$paged"

# 4. the same schema as a fresh install
createdb "$fresh"
run -d "$fresh" -c "CREATE EXTENSION wallet"
[[ $(version "$fresh") == 1.1 ]] || fail "a fresh install is not 1.1"
psql -X -At -v ON_ERROR_STOP=1 -d "$db" -f "$here/schema.sql" >"$out/schema.upgraded"
psql -X -At -v ON_ERROR_STOP=1 -d "$fresh" -f "$here/schema.sql" >"$out/schema.fresh"
diff -u "$out/schema.fresh" "$out/schema.upgraded" || fail "upgraded schema differs from a fresh install"
(($(grep -c '^function|' "$out/schema.fresh") >= 30)) || fail "schema comparison read too little"

# 5. pg_dump of the upgraded database restores
numbers "$db" >"$out/dumped"
pg_dump -d "$db" -f "$out/dump.sql"
createdb "$rst"
run -d "$rst" -f "$out/dump.sql" >/dev/null
numbers "$rst" >"$out/restored"
diff -u "$out/dumped" "$out/restored" || fail "restored database differs"
verify_clean "$rst"

# 6. the regression suite on a database upgraded from 1.0
createdb "$reg"
run -d "$reg" -c "CREATE EXTENSION wallet VERSION '1.0'" -c "ALTER EXTENSION wallet UPDATE"
pgxs_dir=$(dirname "$("$PG_CONFIG" --pgxs)")
mapfile -t tests < <(ls sql/*.sql | xargs -n1 basename | sed 's/\.sql$//' | sort)
if ! "$pgxs_dir/../test/regress/pg_regress" --bindir="$PGBIN" --use-existing --dbname="$reg" \
    --inputdir=. --outputdir="$out/regress" "${tests[@]}" >"$out/regress.log" 2>&1; then
  cat "$out/regress.log"
  head -n 200 "$out/regress/regression.diffs" 2>/dev/null || true
  fail "pg_regress on the upgraded database"
fi
echo "upgrade: $(grep -c '' "$out/before") numbers kept, schema as fresh, dump restores, ${#tests[@]} regression files pass"
