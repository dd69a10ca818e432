#!/usr/bin/env bash
# Crash recovery: clients debit in a loop; the server is killed (pg_ctl stop -m
# immediate) under load and restarted.  Every debit a client saw committed must
# be there, with its ledger lines; nothing half-done may be visible; verify is clean.
set -euo pipefail
source "$WALLET_ROOT/test/lib.sh"
start_cluster crash
export PGHOST=$crash_HOST PGPORT=$crash_PORT PGDATABASE=postgres
clients=4 per_client=4000 work=$(mktemp -d)
at_exit "rm -rf '$work'"

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE EXTENSION wallet;
SELECT wallet_create_asset('credits', 0);
SELECT wallet_set_price('api.call', 'credits', '{"model": "per_unit", "unit_price": "1"}');
SELECT wallet_create('c' || i), wallet_grant('c' || i, 'credits', 1000000) FROM generate_series(1, 4) i;
SQL

# each client: a stream of autocommit debits; psql prints a key only after the
# server answered, i.e. after its commit
for c in $(seq 1 $clients); do
	for i in $(seq 1 $per_client); do
		if (( i % 2 )); then
			echo "SELECT 'committed c$c-$i ' || amount FROM wallet_debit('c$c', 'credits', $(( i % 9 + 1 )), 'c$c-$i');"
		else
			echo "SELECT 'committed c$c-$i ' || amount FROM wallet_authorize_debit('c$c', 'api.call', $(( i % 9 + 1 )), 'c$c-$i');"
		fi
	done >"$work/script$c.sql"
	psql -X -At -f "$work/script$c.sql" >"$work/out$c" 2>/dev/null &
done
sleep 3
stop_cluster crash immediate
wait || true
restart_cluster crash

seen=$(cat "$work"/out* | grep -c '^committed ' || true)
[ "$seen" -gt 100 ] || { echo "crash: only $seen debits ran before the crash" >&2; exit 1; }
cat "$work"/out* | awk '/^committed /{print $2 "\t" $3}' >"$work/seen.tsv"
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE TEMP TABLE seen (key text, amount numeric);
\copy seen FROM '$work/seen.tsv'
\o $work/check
SELECT 'missing', count(*) FROM seen s LEFT JOIN wallet.events e ON e.idempotency_key = s.key AND e.amount = s.amount
 WHERE e.id IS NULL;
SELECT 'verify', count(*) FROM wallet_verify();
SQL
missing=$(awk '$1=="missing"{print $3}' "$work/check")
problems=$(awk '$1=="verify"{print $3}' "$work/check")
total=$(psql -X -At -c "SELECT count(*) FROM wallet.event")
# every committed key replays after recovery
replayed=$(psql -X -At -c "SELECT replayed FROM wallet_debit('c1', 'credits', 2, 'c1-1')")
echo "crash: $clients clients, $seen debits acknowledged before the kill, $total events after recovery; missing: $missing; invariant violations: $problems; replay after recovery: $replayed"
[ "$missing" = 0 ] && [ "$problems" = 0 ] && [ "$replayed" = t ]
