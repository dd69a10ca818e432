#!/usr/bin/env bash
# Short stress run (make test): many clients, a random mix of debits, holds,
# captures, releases, refunds, grants and replays on a few hot wallets with
# overdraft limits; then every invariant and the balance floor are checked.
# Then binding holds (test/stress/binding.sql): holds with member caps,
# captures within and above them, grants expiring in seconds, voids, freezes
# and lowered caps; no capture within its hold may be declined.
# Longer runs by hand: STRESS_SECONDS=120 STRESS_CLIENTS=16 bash test/scripts/stress.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${STRESS_SECONDS:-8}
clients=${STRESS_CLIENTS:-8}
wallets=${STRESS_WALLETS:-4}
db=stress_$$
trap 'dropdb --if-exists "$db" >/dev/null 2>&1 || true' EXIT
createdb "$db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION wallet" -f "$here/stress/stress.sql" \
	-c "SELECT stress_setup($wallets)" >/dev/null
script=$(mktemp)
echo "SELECT stress_step($wallets, :client_id);" >"$script"
out=$(pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" -f "$script" "$db" 2>&1) || {
	echo "$out"; echo "stress: pgbench failed" >&2; exit 1; }
rm -f "$script"
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
if grep -q "aborted" <<<"$out"; then echo "$out"; echo "stress: a client aborted" >&2; exit 1; fi

psql -X -q -d "$db" -c "SELECT op, outcome, sum(n) AS n FROM stress_outcome GROUP BY 1, 2 ORDER BY 1, 2"
problems=$(psql -X -At -d "$db" -c "SELECT count(*) FROM wallet_verify()")
floor=$(psql -X -At -d "$db" -c "SELECT count(*) FROM wallet.balances b JOIN wallet.wallet w ON w.customer = b.customer
	JOIN wallet.account a ON a.wallet_id = w.id AND a.asset = b.asset
	WHERE b.available < -wallet._major(a.asset, a.overdraft_limit)")
approved=$(psql -X -At -d "$db" -c "SELECT coalesce(sum(n), 0) FROM stress_outcome WHERE outcome = 'approved'")
echo "stress: $clients clients, ${seconds}s, ${done_tx:-?} operations (${tps:-?}/s), ${failed:-0} failed; approved $approved; invariant violations: $problems; below floor: $floor"
if [ "$problems" != 0 ]; then psql -X -d "$db" -c "SELECT * FROM wallet_verify() LIMIT 20"; exit 1; fi
[ "$floor" = 0 ] || exit 1
[ "$approved" -gt 0 ] || { echo "stress: nothing was approved" >&2; exit 1; }

# binding holds: no capture within its hold declined, and every invariant holds
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$here/stress/binding.sql" -c "SELECT binding_setup($wallets)" >/dev/null
script=$(mktemp)
echo "SELECT binding_step($wallets, :client_id);" >"$script"
out=$(pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" -f "$script" "$db" 2>&1) || {
	echo "$out"; echo "stress: binding pgbench failed" >&2; exit 1; }
rm -f "$script"
if grep -q "aborted" <<<"$out"; then echo "$out"; echo "stress: a binding client aborted" >&2; exit 1; fi
done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
psql -X -q -d "$db" -c "SELECT op, outcome, sum(n) AS n FROM binding_outcome GROUP BY 1, 2 ORDER BY 1, 2"
within_declined=$(psql -X -At -d "$db" -c "SELECT coalesce(sum(n), 0) FROM binding_outcome WHERE outcome = 'within_declined'")
within_ok=$(psql -X -At -d "$db" -c "SELECT coalesce(sum(n), 0) FROM binding_outcome WHERE op = 'capture_within' AND outcome = 'approved'")
problems=$(psql -X -At -d "$db" -c "SELECT count(*) FROM wallet_verify()")
echo "stress (binding holds): ${done_tx:-?} operations; captures within their hold approved $within_ok, declined $within_declined; invariant violations: $problems"
if [ "$problems" != 0 ]; then psql -X -d "$db" -c "SELECT * FROM wallet_verify() LIMIT 20"; exit 1; fi
[ "$within_declined" = 0 ] || exit 1
[ "$within_ok" -gt 0 ] || { echo "stress: no capture within a hold was approved" >&2; exit 1; }
