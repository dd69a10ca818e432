#!/usr/bin/env bash
# Auto top-up end to end: the example listener (test/listener.c), logged in
# as a member of wallet_app and wallet_admin (not the owner), LISTENs on
# wallet_events and claims rows with wallet_outbox_claim.  Part 1: it tops
# customers up when a debit takes them below their low_balance.  Checks: one
# outbox row and one notification per crossing, none for a rolled-back debit,
# none while the balance stays below; the listener grants once per row
# (external_ref topup-<row id>), acks the row, and picks up rows written while
# it was down.  Part 2: recharges to a target (wallet_set_recharge) land
# exactly once under concurrent debits.  Part 3: the outbox stays bounded
# under a long decline storm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source test/lib.sh

build_install
start_cluster pg

work=$(mktemp -d)
at_exit "rm -rf '$work'"
chmod 755 "$work"
cc -Wall -Wextra -Werror -O2 -o "$work/listener" test/listener.c \
  -I"$("$PG_CONFIG" --includedir)" -L"$("$PG_CONFIG" --libdir)" -lpq

q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
fail() { echo "FAIL: $*" >&2; echo "-- listener log:" >&2; cat "$work/log" >&2 || true; exit 1; }
expect() { # expect WHAT GOT WANT
  [[ $2 == "$3" ]] || fail "$1: got '$2', want '$3'"
  echo "ok - $1"
}

q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('credits', 0, 0.01);
SELECT wallet_create('acme');
SELECT wallet_grant('acme', 'credits', 100);
SELECT wallet_set_limit('acme', 'credits', low_balance => 20);
-- the listener and the application: logins in the API roles, not the owner
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'topup_listener') THEN
    CREATE ROLE topup_listener LOGIN IN ROLE wallet_app, wallet_admin;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'topup_app') THEN
    CREATE ROLE topup_app LOGIN IN ROLE wallet_app;
  END IF;
END $$;
SQL

listener_pid=
start_listener() {
  "$work/listener" "host=$PGHOST port=$PGPORT user=topup_listener dbname=postgres" 100 120 \
    >>"$work/log" 2>&1 &
  listener_pid=$!
  for _ in $(seq 100); do
    grep -q '^listening' "$work/log" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "the listener did not start"
}
stop_listener() {
  [[ -z $listener_pid ]] || kill "$listener_pid" 2>/dev/null || true
  [[ -z $listener_pid ]] || wait "$listener_pid" 2>/dev/null || true
  listener_pid=
}
at_exit stop_listener

# wait_for SQL WANT: poll until the query returns WANT (10 s at most)
wait_for() {
  local got
  for _ in $(seq 100); do
    got=$(q -c "$1")
    [[ $got == "$2" ]] && return 0
    sleep 0.1
  done
  fail "waited for '$1' = '$2', last got '$got'"
}

: >"$work/log"
start_listener

# 1. A debit that stays above the threshold: nothing.
q -c "SELECT approved FROM wallet_debit('acme', 'credits', 70, 'd1')" >/dev/null
sleep 0.5
expect "no outbox row above the threshold" "$(q -c 'SELECT count(*) FROM wallet.outbox')" 0

# 2. A crossing rolled back: no row, no notification, no top-up.
q >/dev/null <<'SQL'
BEGIN;
SELECT approved FROM wallet_debit('acme', 'credits', 15, 'd2');
ROLLBACK;
SQL
sleep 0.5
expect "no outbox row for a rolled-back debit" "$(q -c 'SELECT count(*) FROM wallet.outbox')" 0
expect "no notification for a rolled-back debit" "$(grep -c '^notify' "$work/log" || true)" 0

# 3. The crossing committed: 30 -> 15 < 20.  One row, one notification, one top-up.
q -c "SELECT approved FROM wallet_debit('acme', 'credits', 15, 'd3')" >/dev/null
row=$(q -c "SELECT id FROM wallet.outbox WHERE kind = 'low_balance'")
expect "one low_balance row" "$(q -c "SELECT count(*) FROM wallet.outbox WHERE kind = 'low_balance'")" 1
wait_for "SELECT acked_at IS NOT NULL FROM wallet.outbox WHERE id = $row" t
payloads=$(grep '^notify.*"kind" *: *"low_balance"' "$work/log" | sed 's/^notify //')
expect "one low_balance notification" "$(grep -c '^notify.*"kind" *: *"low_balance"' "$work/log")" 1
# (1.1: the payload is the row's id and kind, nothing else)
expect "the notification named the row" "$(q -v p="$payloads" <<'SQL'
SELECT concat_ws(' ', j->>'id', j->>'kind', (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(j) k))
  FROM (SELECT :'p'::jsonb AS j) s;
SQL
)" "$row low_balance id,kind"
expect "one grant for the payment" \
  "$(q -c "SELECT count(*) || ' ' || min(amount) FROM wallet.grants WHERE external_ref = 'topup-$row'")" "1 100"
expect "balance topped up" "$(q -c "SELECT wallet_balance('acme', 'credits')")" 115

# 4. The listener handles the row once: a second look changes nothing.
sleep 0.5
expect "still one top-up" "$(grep -c '^topup' "$work/log")" 1
expect "still one grant" "$(q -c "SELECT count(*) FROM wallet.grants WHERE customer = 'acme' AND external_ref LIKE 'topup-%'")" 1

# 5. Below the threshold and staying there: no repeat row.  115 -> 10 crosses
#    (row 2); the listener tops up to 110; nothing else crosses.
q -c "SELECT approved FROM wallet_debit('acme', 'credits', 105, 'd4')" >/dev/null
wait_for "SELECT count(*) FILTER (WHERE acked_at IS NOT NULL) || '/' || count(*) FROM wallet.outbox WHERE kind = 'low_balance'" 2/2
expect "balance after the second top-up" "$(q -c "SELECT wallet_balance('acme', 'credits')")" 110

# 6. While the listener is down, a crossing and then more debits below the
#    threshold: one row; the listener picks it up when it comes back.
stop_listener
q <<'SQL' >/dev/null
SELECT approved FROM wallet_debit('acme', 'credits', 95, 'd5');   -- 110 -> 15: a row
SELECT approved FROM wallet_debit('acme', 'credits', 5, 'd6');    -- 15 -> 10: still below, no row
SELECT approved FROM wallet_debit('acme', 'credits', 50, 'd7');   -- declined for funds: a row
SQL
expect "rows while down" "$(q -c "SELECT string_agg(kind, ',' ORDER BY id) FROM wallet.outbox WHERE acked_at IS NULL AND kind IN ('low_balance', 'declined')")" \
  "low_balance,declined"
start_listener
wait_for "SELECT count(*) FROM wallet.outbox WHERE kind = 'low_balance' AND acked_at IS NULL" 0
expect "balance after the backlog top-up" "$(q -c "SELECT wallet_balance('acme', 'credits')")" 110
expect "three top-ups in all, one per low_balance row" \
  "$(q -c "SELECT count(*) FROM wallet.grants g JOIN wallet.outbox o ON g.external_ref = 'topup-' || o.id WHERE o.kind = 'low_balance'")" 3
expect "the declined row is left for others" \
  "$(q -c "SELECT count(*) FROM wallet.outbox WHERE kind = 'declined' AND acked_at IS NULL")" 1

# 7. A replayed payment (the webhook fires twice) is the same grant.
g1=$(q -c "SELECT id FROM wallet.grants WHERE external_ref = 'topup-$row'")
expect "replayed top-up is the same grant" \
  "$(q -c "SELECT wallet_grant('acme', 'credits', 100, external_ref => 'topup-$row')")" "$g1"
expect "balance unchanged by the replay" "$(q -c "SELECT wallet_balance('acme', 'credits')")" 110

# 8. The listener is not the owner: the outbox table itself is closed to it.
expect "the listener cannot read wallet.outbox" \
  "$(psql -X -q -At -U topup_listener -c 'SELECT count(*) FROM wallet.outbox' 2>&1 | grep -c 'permission denied')" 1

# 9. Recharge to a target under concurrent debits.  rc: 1000, recharge below
#    300 to 1000.  Four application sessions (topup_app) debit 7 at a time,
#    each debit its own transaction; the listener grants what each recharge
#    row asks for, with the row's external_ref.
q >/dev/null <<'SQL'
SELECT wallet_create('rc');
SELECT wallet_grant('rc', 'credits', 1000);
SELECT wallet_set_recharge('rc', 'credits', 300, 1000);
SQL
for c in 1 2 3 4; do
  for i in $(seq 150); do
    echo "SELECT approved FROM wallet_debit('rc', 'credits', 7, 'rc-$c-$i');"
  done >"$work/debits-$c.sql"
done
pids=()
for c in 1 2 3 4; do
  psql -X -q -At -U topup_app -f "$work/debits-$c.sql" >"$work/debits-$c.out" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a debit session failed: $(cat "$work"/debits-*.out | grep -v '^[tf]$' | head -3)"; done
wait_for "SELECT count(*) FROM wallet.outbox WHERE customer = 'rc' AND kind = 'recharge' AND acked_at IS NULL" 0
nrc=$(q -c "SELECT count(*) FROM wallet.outbox WHERE customer = 'rc' AND kind = 'recharge'")
(( nrc >= 2 )) || fail "expected at least two recharges, got $nrc"
echo "ok - $nrc recharges"
expect "every recharge landed exactly once, for the amount it asked" "$(q <<'SQL'
SELECT count(*) FROM wallet.outbox o
 WHERE o.customer = 'rc' AND o.kind = 'recharge'
   AND (SELECT count(*) || ' ' || sum(g.amount) FROM wallet.grants g
		 WHERE g.customer = 'rc' AND g.external_ref = o.detail->>'external_ref')
	   IS DISTINCT FROM '1 ' || (o.detail->>'amount');
SQL
)" 0
expect "no other grants" "$(q -c "SELECT count(*) FROM wallet.grants WHERE customer = 'rc' AND external_ref IS NOT NULL")" "$nrc"
expect "every recharge asked for target - available, below the threshold" \
  "$(q -c "SELECT count(*) FROM wallet.outbox WHERE customer = 'rc' AND kind = 'recharge' AND (available >= 300 OR (detail->>'amount')::numeric <> 1000 - available)")" 0
expect "one open at a time: the balance never passed the target" "$(q <<'SQL'
SELECT max(s) <= 1000 FROM (SELECT sum(amount) OVER (ORDER BY id) s FROM wallet.ledger
							 WHERE customer = 'rc' AND kind NOT IN ('hold', 'release')) l;
SQL
)" t
expect "balance = 1000 + recharges - debits" "$(q <<'SQL'
SELECT wallet_balance('rc', 'credits') = 1000
	   + (SELECT sum(amount) FROM wallet.grants WHERE customer = 'rc' AND external_ref IS NOT NULL)
	   - (SELECT sum(amount) FROM wallet.events WHERE customer = 'rc');
SQL
)" t
# (a debit may decline if the listener is slower than the drain: a decline is a result)
expect "every debit answered" "$(cat "$work"/debits-*.out | grep -c '^[tf]$')" 600
expect "the approved ones are the events" "$(cat "$work"/debits-*.out | grep -c '^t$')" \
  "$(q -c "SELECT count(*) FROM wallet.events WHERE customer = 'rc'")"

# 10. A decline storm: two sessions, 1,000 declined debits each.  At most one
#     declined row per wallet, asset and reason per minute; then acked rows
#     are pruned by the sweep.
q -c "SELECT wallet_create('storm')" >/dev/null
start=$(date +%s)
pids=()
for c in 1 2; do
  for i in $(seq 1000); do
    echo "SELECT approved FROM wallet_debit('storm', 'credits', 1, 'storm-$c-$i');"
  done >"$work/storm-$c.sql"
  psql -X -q -At -U topup_app -f "$work/storm-$c.sql" >"$work/storm-$c.out" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a storm session failed"; done
minutes=$(( ($(date +%s) - start) / 60 + 1 ))
expect "2,000 declines" "$(cat "$work"/storm-*.out | grep -c '^f$')" 2000
ndec=$(q -c "SELECT count(*) FROM wallet.outbox WHERE customer = 'storm'")
(( ndec >= 1 && ndec <= minutes + 1 )) || fail "declined rows in the storm: $ndec over $minutes minute(s)"
echo "ok - $ndec declined row(s) for 2,000 declines"
q -c "SELECT count(wallet_outbox_ack(id)) FROM wallet.outbox WHERE acked_at IS NULL" >/dev/null
acked=$(q -c "SELECT count(*) FROM wallet.outbox")
expect "the sweep prunes acked rows past the retention" \
  "$(q -c "SET wallet.outbox_retention = 0" -c "SELECT count FROM wallet_sweep() WHERE action = 'pruned_outbox'")" "$acked"
expect "the outbox is empty" "$(q -c "SELECT count(*) FROM wallet.outbox")" 0

stop_listener
expect "wallet_verify is clean" "$(q -c 'SELECT count(*) FROM wallet_verify()')" 0
echo "autotopup: all ok"
