#!/usr/bin/env bash
# pg_dump round trip: a dump restored into a fresh database with the extension
# installed gives the same balances, ledger and events, every row of every table the
# extension registers for pg_dump (ids included) and a clean wallet_verify(); the restore
# writes nothing of its own (no trigger of the extension evaluates alerts or writes down
# resets while the data is loaded, before the dump sets the sequences), in one transaction
# that stops at the first error, as a plain script (psql -1) and as pg_restore -1 of -Fc.
set -euo pipefail
src=dump_src_$$ dst=dump_dst_$$ dst2=dump_dst2_$$ out=$(mktemp -d)
cleanup() { dropdb --if-exists "$src"; dropdb --if-exists "$dst"; dropdb --if-exists "$dst2"; rm -rf "$out"; }
trap cleanup EXIT
createdb "$src"
psql -X -q -v ON_ERROR_STOP=1 -d "$src" >/dev/null <<'SQL'
CREATE EXTENSION wallet;
SELECT wallet_create_asset('credits', 0, 0.01);
SELECT wallet_create_asset('USD', 6);
SELECT wallet_create(c) FROM unnest(ARRAY['acme', 'globex', 'initech', 'hooli', 'umbrella']) c;
SELECT wallet_grant('acme', 'credits', 500, external_ref => 'pay-1');
SELECT wallet_grant('acme', 'credits', 100, category => 'promotional', expires_at => now() + interval '7 days');
SELECT wallet_grant('globex', 'USD', 10.5);
-- an expired grant (1.1 refuses one expired at creation: this one expires 0.2 s after it)
SELECT wallet_grant('globex', 'USD', 3, effective_at => now() - interval '2 days', expires_at => now() + interval '0.2 s');
-- hooli: an alert judged while a promotional grant was live (150, not below 120); the grant
-- expires before the dump, so the alert state no longer matches available (100) and only the
-- next call that evaluates it may write low_balance; a declined debit leaves an unacked row
SELECT wallet_grant('hooli', 'credits', 100);
SELECT wallet_grant('hooli', 'credits', 50, category => 'promotional', expires_at => now() + interval '0.2 s');
SELECT wallet_set_alert('hooli', 'credits', 120);
SELECT * FROM wallet_debit('hooli', 'credits', 1000, 'too-much');
-- umbrella: a refund, and a recurring grant whose next reset falls before the dump unwritten
SELECT wallet_grant('umbrella', 'credits', 50, category => 'bundled', recurrence => interval '1 second');
SELECT * FROM wallet_debit('umbrella', 'credits', 10, 'u1');
SELECT * FROM wallet_refund((SELECT id FROM wallet.events WHERE idempotency_key = 'u1'), 3);
SELECT pg_sleep(1.1);
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
# the source has what a restore that ran the extension's logic would disturb
psql -X -At -d "$src" -c "SELECT (SELECT count(*) FROM wallet.outbox WHERE acked_at IS NULL) > 0,
    (SELECT count(*) FROM wallet.alert WHERE below) > 0, (SELECT count(*) FROM wallet.refund) > 0" | grep -qx 't|t|t'
q="SELECT customer, asset, available, held, granted, overdraft FROM wallet.balances ORDER BY 1, 2"
psql -X -At -d "$src" -c "$q" >"$out/before"
psql -X -At -d "$src" -c "SELECT count(*), sum(amount) FROM wallet.line" >>"$out/before"
psql -X -At -d "$src" -c "SELECT id, customer, amount FROM wallet.events ORDER BY id" >>"$out/before"
# every row of every table registered for pg_dump, as text, and where each sequence is
tables="SELECT format(CASE c.relkind WHEN 'S' THEN 'SELECT %1\$L, last_value, is_called FROM %1\$s;'
                    ELSE 'SELECT %1\$L, t::text FROM %1\$s t ORDER BY 2;' END, c.oid::regclass)
          FROM pg_extension e, unnest(e.extconfig) x JOIN pg_class c ON c.oid = x
         WHERE e.extname = 'wallet' ORDER BY c.relname"
dump_rows() { psql -X -At -d "$1" -c "$tables" | psql -X -At -d "$1" -v ON_ERROR_STOP=1; }
dump_rows "$src" >>"$out/before"

pg_dump -d "$src" -f "$out/dump.sql"
pg_dump -Fc -d "$src" -f "$out/dump.custom"
createdb "$dst"
psql -X -q -1 -v ON_ERROR_STOP=1 -d "$dst" -f "$out/dump.sql" >/dev/null
createdb "$dst2"
pg_restore --exit-on-error --single-transaction -d "$dst2" "$out/dump.custom"

for db in "$dst" "$dst2"; do
  psql -X -At -d "$db" -c "$q" >"$out/after"
  psql -X -At -d "$db" -c "SELECT count(*), sum(amount) FROM wallet.line" >>"$out/after"
  psql -X -At -d "$db" -c "SELECT id, customer, amount FROM wallet.events ORDER BY id" >>"$out/after"
  dump_rows "$db" >>"$out/after"
  if ! diff -u "$out/before" "$out/after"; then
    echo "pgdump: restored database $db differs" >&2; exit 1
  fi
  problems=$(psql -X -At -d "$db" -c "SELECT count(*) FROM wallet_verify()")
  [ "$problems" = 0 ] || { psql -X -d "$db" -c "SELECT * FROM wallet_verify()"; exit 1; }
done
[ "$(wc -l <"$out/before")" -ge 60 ] || { echo "pgdump: too little data compared ($(wc -l <"$out/before") lines)" >&2; exit 1; }
# the rows the alerts and the outbox live in are among those compared
for t in wallet.outbox wallet.alert wallet.line_stored wallet.refund; do
  grep -q "^$t|" "$out/before" || { echo "pgdump: no rows of $t compared" >&2; exit 1; }
done

# the restored database still evaluates alerts: a grant takes hooli's alert below (the
# expired grant is seen) and another brings it back; a refund recovers initech's alert
psql -X -q -v ON_ERROR_STOP=1 -d "$dst" -At >"$out/alerts" <<'SQL'
SELECT max(id) AS before FROM wallet.outbox \gset
SELECT wallet_grant('hooli', 'credits', 5) > 0;
SELECT wallet_grant('hooli', 'credits', 20) > 0;
SELECT (wallet_refund((SELECT id FROM wallet.events WHERE idempotency_key = 'd1'))).approved;
SELECT customer, kind, available, threshold FROM wallet.outbox WHERE id > :before ORDER BY id;
SQL
cat >"$out/alerts_expected" <<'EOF'
t
t
t
hooli|low_balance|105|120
hooli|recovered|125|120
initech|recovered|30|10
EOF
if ! diff -u "$out/alerts_expected" "$out/alerts"; then
  echo "pgdump: alerts of the restored database" >&2; exit 1
fi
# ids continue after the restored ones: the sequences came along
psql -X -q -v ON_ERROR_STOP=1 -d "$dst" -At -c "SELECT event_id > 2 FROM wallet_authorize_debit('acme', 'chat', 1, 'r2')" | grep -qx t
# a replay of a pre-dump key is still a replay
psql -X -q -v ON_ERROR_STOP=1 -d "$dst" -At -c "SELECT replayed FROM wallet_authorize_debit('acme', 'chat', 1, 'r1')" | grep -qx t
echo "pgdump: $(wc -l <"$out/before") rows identical after restore, verify clean"
