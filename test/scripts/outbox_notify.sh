#!/usr/bin/env bash
# Outbox notifications are sent at commit, by the backend's own queue
# (src/outbox.c), not by pg_notify during the call (which made the caller's
# transaction impossible to PREPARE: sql/outbox_prepare.sql).  A session that
# LISTENs on wallet_events and writes rows itself sees, in psql's
# "Asynchronous notification" lines (with the PID cut off):
#   - nothing before its transaction commits, then one {"id", "kind"} per row,
#     in the order the rows were written (C writers: a decline, a spend-cap
#     decline; SQL writers: low_balance, recharge; a batch);
#   - nothing for a rolled-back savepoint that wrote a row, one for a released
#     savepoint's row, nothing for a rolled-back transaction;
#   - nothing for a prepared transaction, at PREPARE or COMMIT PREPARED: its
#     rows are there for claiming (docs/notifications.md);
#   - the rows of the next transaction only, after one that prepared.
set -euo pipefail
source "$WALLET_ROOT/test/lib.sh"
start_cluster onote
export PGHOST=$onote_HOST PGPORT=$onote_PORT PGDATABASE=postgres
work=$(mktemp -d)
at_exit "rm -rf '$work'"

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('on', 0);
SELECT wallet_create('on-a'), wallet_grant('on-a', 'on', 100);
SELECT wallet_set_alert('on-a', 'on', 50);
SELECT wallet_set_recharge('on-a', 'on', 20, 100);
SELECT wallet_create('on-b'), wallet_grant('on-b', 'on', 100);
SELECT wallet_set_cap('on-b', 'on', 10, 'day');
SELECT wallet_create('on-c');
SELECT wallet_create('on-d'), wallet_grant('on-d', 'on', 100);
SELECT wallet_set_alert('on-d', 'on', 50);
SELECT wallet_create('on-e'), wallet_grant('on-e', 'on', 100);
SELECT wallet_set_alert('on-e', 'on', 50);
SELECT wallet_create('on-f');
SELECT wallet_set_price('on.call', 'on', '{"model": "per_unit", "unit_price": "1"}', now() - interval '1 minute');
SQL

# psql prints the notifications that arrived after each statement
if ! psql -X -q -At -v ON_ERROR_STOP=1 >"$work/out" 2>&1 <<'SQL'
LISTEN wallet_events;
\echo -- 1 autocommit: low_balance
SELECT balance FROM wallet_debit('on-a', 'on', 60, 'on-1');
\echo -- 2 one transaction: decline (C), recharge (SQL), spend-cap decline (C)
BEGIN;
SELECT reason FROM wallet_debit('on-a', 'on', 1000, 'on-2');
SELECT balance FROM wallet_debit('on-a', 'on', 25, 'on-3');
SELECT reason FROM wallet_debit('on-b', 'on', 11, 'on-4');
\echo -- 2 commit
COMMIT;
\echo -- 3 savepoints: rolled back, then released
BEGIN;
SAVEPOINT s1;
SELECT reason FROM wallet_debit('on-c', 'on', 1, 'on-5');
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
SELECT reason FROM wallet_debit('on-c', 'on', 2, 'on-6');
RELEASE SAVEPOINT s2;
\echo -- 3 commit
COMMIT;
\echo -- 4 a rolled-back transaction
BEGIN;
SELECT balance FROM wallet_debit('on-d', 'on', 60, 'on-8');
ROLLBACK;
\echo -- 5 a prepared transaction, then one that commits
BEGIN;
SELECT balance FROM wallet_debit('on-d', 'on', 60, 'on-9');
PREPARE TRANSACTION 'on_prep';
COMMIT PREPARED 'on_prep';
SELECT reason FROM wallet_debit('on-d', 'on', 1000, 'on-10');
\echo -- 6 a batch in a transaction
BEGIN;
SELECT count(*) FROM wallet_ingest($$[
	{"customer": "on-e", "meter": "on.call", "quantity": 60, "idempotency_key": "on-b1"},
	{"customer": "on-e", "meter": "on.call", "quantity": 1000, "idempotency_key": "on-b2"},
	{"customer": "on-e", "meter": "on.nope", "quantity": 1, "idempotency_key": "on-b3"},
	{"customer": "on-f", "meter": "on.call", "quantity": 1, "idempotency_key": "on-b4"}]$$);
\echo -- 6 commit
COMMIT;
\echo -- rows
SELECT id, customer, kind FROM wallet.outbox ORDER BY id;
SQL
then
	echo "outbox_notify: psql failed:" >&2
	cat "$work/out" >&2
	exit 1
fi
sed -i -E 's/^(Asynchronous notification "wallet_events" with payload ".*" received) from server process with PID [0-9]+\.$/\1/' "$work/out"

cat >"$work/want" <<'EOF'
-- 1 autocommit: low_balance
40
Asynchronous notification "wallet_events" with payload "{"id" : 1, "kind" : "low_balance"}" received
-- 2 one transaction: decline (C), recharge (SQL), spend-cap decline (C)
insufficient_funds
15
spend_cap
-- 2 commit
Asynchronous notification "wallet_events" with payload "{"id" : 2, "kind" : "declined"}" received
Asynchronous notification "wallet_events" with payload "{"id" : 3, "kind" : "recharge"}" received
Asynchronous notification "wallet_events" with payload "{"id" : 4, "kind" : "declined"}" received
-- 3 savepoints: rolled back, then released
insufficient_funds
insufficient_funds
-- 3 commit
Asynchronous notification "wallet_events" with payload "{"id" : 6, "kind" : "declined"}" received
-- 4 a rolled-back transaction
40
-- 5 a prepared transaction, then one that commits
40
insufficient_funds
Asynchronous notification "wallet_events" with payload "{"id" : 9, "kind" : "declined"}" received
-- 6 a batch in a transaction
4
-- 6 commit
Asynchronous notification "wallet_events" with payload "{"id" : 10, "kind" : "low_balance"}" received
Asynchronous notification "wallet_events" with payload "{"id" : 11, "kind" : "declined"}" received
Asynchronous notification "wallet_events" with payload "{"id" : 12, "kind" : "declined"}" received
-- rows
1|on-a|low_balance
2|on-a|declined
3|on-a|recharge
4|on-b|declined
6|on-c|declined
8|on-d|low_balance
9|on-d|declined
10|on-e|low_balance
11|on-e|declined
12|on-f|declined
EOF
if ! diff -u "$work/want" "$work/out"; then
	echo "outbox_notify: notifications differ from the above" >&2
	exit 1
fi
echo "outbox_notify: notifications at commit only, in order, none for a rolled-back savepoint or a prepared transaction"
