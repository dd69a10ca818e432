#!/usr/bin/env bash
# pg_dump round trip: a dump restored into a fresh database with the extension
# installed gives the same balances, ledger and events, and a clean wallet_verify().
set -euo pipefail
src=dump_src_$$ dst=dump_dst_$$ out=$(mktemp -d)
cleanup() { dropdb --if-exists "$src"; dropdb --if-exists "$dst"; rm -rf "$out"; }
trap cleanup EXIT
createdb "$src"
psql -X -q -v ON_ERROR_STOP=1 -d "$src" >/dev/null <<'SQL'
CREATE EXTENSION wallet;
SELECT wallet_create_asset('credits', 0, 0.01);
SELECT wallet_create_asset('USD', 6);
SELECT wallet_create(c) FROM unnest(ARRAY['acme', 'globex', 'initech']) c;
SELECT wallet_grant('acme', 'credits', 500, external_ref => 'pay-1');
SELECT wallet_grant('acme', 'credits', 100, category => 'promotional', expires_at => now() + interval '7 days');
SELECT wallet_grant('globex', 'USD', 10.5);
-- an expired grant (1.1 refuses one expired at creation: this one expires 0.2 s after it)
SELECT wallet_grant('globex', 'USD', 3, effective_at => now() - interval '2 days', expires_at => now() + interval '0.2 s');
SELECT pg_sleep(0.3);
SELECT wallet_grant('initech', 'credits', 30, category => 'bundled', recurrence => interval '1 month',
                    effective_at => now() - interval '40 days');
SELECT wallet_set_limit('initech', 'credits', overdraft => 50, low_balance => 10);
SELECT wallet_set_price('chat', 'credits', '{"model": "flat", "price": "12"}');
SELECT wallet_set_price('tokens', 'USD', '{"model": "graduated", "tiers": [{"up_to": 1000, "unit_price": "0"}, {"unit_price": "0.001"}]}');
SELECT wallet_assign_plan('acme', 'pro');
SELECT * FROM wallet_authorize_debit('acme', 'chat', 1, 'r1');
SELECT * FROM wallet_authorize_debit('globex', 'tokens', 1500, 't1');
SELECT * FROM wallet_debit('initech', 'credits', 60, 'd1');
SELECT * FROM wallet_hold('acme', 'credits', 40, 'h1');
SQL
q="SELECT customer, asset, available, held, granted, overdraft FROM wallet.balances ORDER BY 1, 2"
psql -X -At -d "$src" -c "$q" >"$out/before"
psql -X -At -d "$src" -c "SELECT count(*), sum(amount) FROM wallet.line" >>"$out/before"
psql -X -At -d "$src" -c "SELECT id, customer, amount FROM wallet.events ORDER BY id" >>"$out/before"

pg_dump -d "$src" -f "$out/dump.sql"
createdb "$dst"
psql -X -q -v ON_ERROR_STOP=1 -d "$dst" -f "$out/dump.sql" >/dev/null

psql -X -At -d "$dst" -c "$q" >"$out/after"
psql -X -At -d "$dst" -c "SELECT count(*), sum(amount) FROM wallet.line" >>"$out/after"
psql -X -At -d "$dst" -c "SELECT id, customer, amount FROM wallet.events ORDER BY id" >>"$out/after"
if ! diff -u "$out/before" "$out/after"; then
  echo "pgdump: restored database differs" >&2; exit 1
fi
[ "$(wc -l <"$out/before")" -ge 7 ] || { echo "pgdump: too little data compared" >&2; exit 1; }

problems=$(psql -X -At -d "$dst" -c "SELECT count(*) FROM wallet_verify()")
[ "$problems" = 0 ] || { psql -X -d "$dst" -c "SELECT * FROM wallet_verify()"; exit 1; }
# ids continue after the restored ones: the sequences came along
psql -X -q -v ON_ERROR_STOP=1 -d "$dst" -At -c "SELECT event_id > 2 FROM wallet_authorize_debit('acme', 'chat', 1, 'r2')" | grep -qx t
# a replay of a pre-dump key is still a replay
psql -X -q -v ON_ERROR_STOP=1 -d "$dst" -At -c "SELECT replayed FROM wallet_authorize_debit('acme', 'chat', 1, 'r1')" | grep -qx t
echo "pgdump: $(wc -l <"$out/before") rows identical after restore, verify clean"
