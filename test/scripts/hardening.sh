#!/usr/bin/env bash
# Hardening (#17), what needs a listener: any role may LISTEN on wallet_events,
# so a notification names the outbox row ({"id", "kind"}) and nothing else: no
# customer, balance, threshold or capped member reaches a listener that may not
# read the row.  Checked for a low_balance row, a funds decline and a spend-cap
# decline, received by a role with no wallet role at all.  And wallet_app cannot
# widen wallet.max_backdate, even by setting it before the library is loaded.
set -euo pipefail
source "$WALLET_ROOT/test/lib.sh"
start_cluster hard
export PGHOST=$hard_HOST PGPORT=$hard_PORT PGDATABASE=postgres

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wallet;
CREATE ROLE stranger LOGIN;
SELECT wallet_create_asset('credits', 0);
SELECT wallet_create('alice@example.com'), wallet_grant('alice@example.com', 'credits', 30);
SELECT wallet_set_limit('alice@example.com', 'credits', low_balance => 20);
SELECT wallet_set_cap('alice@example.com', 'credits', 16, 'day', 'user');
SQL

work=$(mktemp -d)
at_exit "rm -rf '$work'"
# the stranger listens; psql prints what arrived after each statement
{
	echo "LISTEN wallet_events;"
	echo "SELECT pg_sleep(4);"
	echo "SELECT 1;"
} | psql -X -At -U stranger >"$work/listen" 2>&1 &
listener=$!
sleep 1
psql -X -q -At -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT wallet_debit('alice@example.com', 'credits', 15, 'd1', '{"user": "bob@example.com"}');	-- 30 -> 15: low_balance
SELECT wallet_debit('alice@example.com', 'credits', 16, 'd2', '{"user": "carol@example.com"}');	-- declined: funds (within carol's cap)
SELECT wallet_debit('alice@example.com', 'credits', 5, 'd3', '{"user": "bob@example.com"}');	-- declined: spend_cap
SQL
wait "$listener"

sed -n 's/^Asynchronous notification "wallet_events" with payload "\(.*\)" received from server process with PID [0-9]*\.$/\1/p' \
	"$work/listen" >"$work/payloads"
cat "$work/payloads"
n=$(wc -l <"$work/payloads")
[[ $n == 3 ]] || { echo "hardening: $n notifications, want 3" >&2; cat "$work/listen" >&2; exit 1; }
if grep -q 'example.com\|available\|threshold\|customer' "$work/payloads"; then
	echo "hardening: a notification carried customer data" >&2
	exit 1
fi
# each is exactly {"id", "kind"}, and names a row that exists
bad=$(psql -X -At -v ON_ERROR_STOP=1 -v p="$(paste -sd '|' "$work/payloads")" <<'SQL'
SELECT count(*) FROM unnest(string_to_array(:'p', '|')) s(t)
 WHERE (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(t::jsonb) k) <> '{id,kind}'
	OR NOT EXISTS (SELECT FROM wallet.outbox o WHERE o.id = (t::jsonb ->> 'id')::bigint
												 AND o.kind = t::jsonb ->> 'kind');
SQL
)
[[ $bad == 0 ]] || { echo "hardening: $bad payloads are not {id, kind} of an outbox row" >&2; exit 1; }
echo "hardening: 3 notifications, each {id, kind} only"

# wallet.max_backdate is a superuser setting, also when the application sets it
# first thing in a new session, before the library is loaded (a placeholder:
# PostgreSQL drops it with a warning when the library defines the setting)
psql -X -q -v ON_ERROR_STOP=1 -c "GRANT wallet_app TO stranger" \
	-c "SELECT wallet_set_price('old', 'credits', '{\"model\": \"flat\", \"price\": \"0\"}', effective_at => now() - interval '6 years')" >/dev/null
got=$(psql -X -At -U stranger 2>&1 <<'SQL' || true
SET wallet.max_backdate = '10 years';
SELECT approved FROM wallet_authorize_debit('alice@example.com', 'old', 1, 'old-1', occurred_at => now() - interval '5 years');
SQL
)
echo "$got"
if ! grep -q 'older than wallet.max_backdate allows' <<<"$got"; then
	echo "hardening: wallet_app widened its own backdate window" >&2
	exit 1
fi
echo "hardening: wallet_app cannot widen wallet.max_backdate"
