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
#  6. the whole pg_regress suite passes on a database upgraded from 1.0;
#  7. edge cases, in a database of their own: a recurring grant's boundary that
#     passed under 1.0 and was not written down yet keeps 1.0's rule (the debt
#     stays), and 1.0 holds whose grants were voided meanwhile keep only what
#     is backed;
#  8. a pg_dump of the 1.0 database: restored where 1.1 is the default version it
#     loads 1.0's rows into a 1.1 schema, which wallet_verify() names
#     (not_upgraded); restored into CREATE EXTENSION wallet VERSION '1.0' and
#     then updated (docs/operations.md) it gives the numbers of 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
here=test/upgrade
out=$(mktemp -d)
db=upg_$$ fresh=upg_fresh_$$ rst=upg_restore_$$ reg=upg_regress_$$ edge=upg_edge_$$ r10=upg_r10_$$ r10u=upg_r10u_$$
cleanup() {
  for d in "$db" "$fresh" "$rst" "$reg" "$edge" "$r10" "$r10u"; do dropdb --if-exists "$d" 2>/dev/null || true; done
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

# 7 (set up first, so that the boundary passes while 1. to 3. run): r1 has a
# daily bundled grant whose next boundary is 2 seconds away, 10 of overdraft in
# use; v1's only grant (100) is voided under a hold of 80, v2's under a hold of
# 80 that its other grant (10) and its overdraft room (30) back in part.
createdb "$edge"
run -d "$edge" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wallet VERSION '1.0';
SELECT wallet_create_asset('credits', 0, 0.01);
SELECT wallet_create(c) FROM unnest(ARRAY['r1', 'v1', 'v2']) c;
SELECT wallet_set_price('x', 'credits', '{"model": "per_unit", "unit_price": "1"}', now() - interval '1 hour');
SELECT wallet_grant('r1', 'credits', 20, category => 'bundled', recurrence => interval '1 day',
                    effective_at => now() - interval '1 day' + interval '2 seconds');
SELECT wallet_set_limit('r1', 'credits', overdraft => 50);
SELECT * FROM wallet_debit('r1', 'credits', 30, 'd1');
SELECT wallet_grant('v1', 'credits', 100) AS v1g \gset
SELECT * FROM wallet_hold('v1', 'credits', 80, 'h1', '1 day');
SELECT wallet_void_grant(:v1g, 'chargeback');
SELECT wallet_set_limit('v2', 'credits', overdraft => 30);
SELECT wallet_grant('v2', 'credits', 100) AS v2g \gset
SELECT wallet_grant('v2', 'credits', 10, priority => 200);
SELECT * FROM wallet_hold('v2', 'credits', 80, 'h2', '1 day');
SELECT wallet_void_grant(:v2g, 'chargeback');
SQL

# 1. a 1.0 database, populated
createdb "$db"
run -d "$db" -c "CREATE EXTENSION wallet VERSION '1.0'"
[[ $(version "$db") == 1.0 ]] || fail "not at 1.0"
run -d "$db" -f "$here/scenario.sql" >"$out/scenario.log"
numbers "$db" >"$out/before"
verify_clean "$db"
pg_dump -Fc -d "$db" -f "$out/v10.dump"
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

# 7. the edge cases (set up before 1.)
run -d "$edge" -c "SELECT pg_sleep(extract(epoch FROM effective_at + recurrence - clock_timestamp()) + 0.1)
                     FROM wallet.grants WHERE customer = 'r1'" >/dev/null
edge_numbers() {
  psql -X -At -v ON_ERROR_STOP=1 -d "$edge" <<'SQL'
SELECT 'balance', customer, available, held, granted, overdraft FROM wallet.balances WHERE customer = 'r1';
SELECT 'revenue', day, recognized, breakage, promotional, bundled FROM wallet.revenue ORDER BY 2;
SELECT 'ledger', at, grant_id, kind, amount FROM wallet.ledger WHERE customer = 'r1' ORDER BY at, kind, amount;
SELECT 'grant', id, remaining FROM wallet.grants WHERE customer = 'r1';
SQL
}
edge_numbers >"$out/edge.before"
grep -q '^ledger|.*|reset|20$' "$out/edge.before" || fail "r1's boundary has not passed under 1.0: $(cat "$out/edge.before")"
# 1.0 let v1 and v2 go below the limit through the void, its wallet_verify() is clean
res=$(psql -X -At -d "$edge" -c "SELECT string_agg(customer || ':' || available || '/' || held, ' ' ORDER BY customer)
                                   FROM wallet.balances WHERE customer LIKE 'v_'")
[[ $res == 'v1:-80/80 v2:-70/80' ]] || fail "1.0 balances of v1, v2: $res"
verify_clean "$edge"
run -d "$edge" -c "ALTER EXTENSION wallet UPDATE"
# a boundary that passed under 1.0 keeps 1.0's rule: nothing repaid, no number of the past moves
edge_numbers >"$out/edge.after"
diff -u "$out/edge.before" "$out/edge.after" || fail "the upgrade changed what a reset of 1.0 did"
# a 1.0 hold keeps what backs it (v1: nothing; v2: 10 reserved and 30 of overdraft room), no more
res=$(psql -X -At -d "$edge" -c "SELECT string_agg(w.customer || ':' || h.amount || '/' || h.overdraft || '/' ||
                                          (SELECT coalesce(sum(r.amount), 0) FROM wallet.hold_grant r WHERE r.hold_id = h.id),
                                          ' ' ORDER BY w.customer)
                                   FROM wallet.hold h JOIN wallet.wallet w ON w.id = h.wallet_id")
[[ $res == 'v1:0/0/0 v2:40/30/10' ]] || fail "1.0 holds after the upgrade (amount/overdraft/reserved): $res"
res=$(psql -X -At -d "$edge" -c "SELECT string_agg(customer || ':' || available || '/' || held, ' ' ORDER BY customer)
                                   FROM wallet.balances WHERE customer LIKE 'v_'")
[[ $res == 'v1:0/0 v2:-30/40' ]] || fail "balances of v1, v2 after the upgrade: $res"
verify_clean "$edge"
# what is not backed is checked as a debit at capture (as 1.0 did): declined without funds ...
res=$(psql -X -At -d "$edge" -c "SELECT approved, reason FROM wallet_capture((SELECT id FROM wallet.hold WHERE idempotency_key = 'h2'), 'x', 50)" 2>&1 || true)
[[ $res == 'f|insufficient_funds' ]] || fail "capture of v2's hold beyond what backs it: $res"
# ... what is backed is captured; a capture of v1's hold draws funds that came since
res=$(psql -X -At -v ON_ERROR_STOP=1 -d "$edge" \
  -c "SELECT approved, amount, balance FROM wallet_capture((SELECT id FROM wallet.hold WHERE idempotency_key = 'h2'), 'x', 40)" \
  -c "SELECT wallet_grant('v1', 'credits', 100) > 0" \
  -c "SELECT approved, amount, balance FROM wallet_capture((SELECT id FROM wallet.hold WHERE idempotency_key = 'h1'), 'x', 80)")
[[ $res == $'t|40|-30\nt\nt|80|20' ]] || fail "captures of the 1.0 holds: $res"
verify_clean "$edge"

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

# 8. the 1.0 dump: restored as it is where 1.1 is the default, then as docs/operations.md says
createdb "$r10"
pg_restore -d "$r10" "$out/v10.dump"
[[ $(version "$r10") == 1.1 ]] || fail "the 1.0 dump did not restore as 1.1: $(version "$r10")"
res=$(psql -X -At -d "$r10" -c "SELECT count(*) FILTER (WHERE problem = 'not_upgraded' AND detail LIKE '%ALTER EXTENSION wallet UPDATE%')
                                  FROM wallet_verify()")
((res > 0)) || { psql -X -d "$r10" -c "SELECT * FROM wallet_verify()"; fail "wallet_verify() did not name a 1.0 dump restored into 1.1"; }
createdb "$r10u"
run -d "$r10u" -c "CREATE EXTENSION wallet VERSION '1.0'"
pg_restore -d "$r10u" "$out/v10.dump"
run -d "$r10u" -c "ALTER EXTENSION wallet UPDATE"
numbers "$r10u" >"$out/r10u"
diff -u "$out/before" "$out/r10u" || fail "the 1.0 dump restored into 1.0 and updated differs"
verify_clean "$r10u"

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
