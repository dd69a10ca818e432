#!/usr/bin/env bash
# Upgrade from 1.0 when 1.0 stored a customer, plan or meter longer than 1.1's
# limits (256, 256 and 127 bytes): every 1.1 call refuses such a name, so the
# wallet could not be used, read or verified after the upgrade (wallet_verify
# itself failed).  ALTER EXTENSION wallet UPDATE refuses with 22023 naming the
# rows, the database stays at 1.0 with every number; renamed, it upgrades.
# (The 1.1 library refuses such names in every call, on a 1.0 schema too: the
# 1.0 data is written here as 1.0's library wrote it, by updating the rows.)
set -euo pipefail
db=upgrade_limits_$$
cleanup() { dropdb --if-exists "$db"; }
trap cleanup EXIT
createdb "$db"
fail() { echo "upgrade_limits: $*" >&2; exit 1; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wallet VERSION '1.0';
SELECT wallet_create_asset('credits', 0);
SELECT wallet_create('long');
SELECT wallet_grant('long', 'credits', 10);
SELECT wallet_debit('long', 'credits', 3, 'k1');
SELECT wallet_set_price('m', 'credits', '{"model": "per_unit", "unit_price": "1"}');
-- what the 1.0 library stored (this one refuses such names in every call)
UPDATE wallet.wallet SET customer = repeat('é', 200) WHERE customer = 'long';
UPDATE wallet.price SET meter = repeat('m', 130) WHERE meter = 'm';
SQL

err=$(q -c "ALTER EXTENSION wallet UPDATE" 2>&1) && fail "the upgrade went through: $err"
[[ $err == *"customers and plans of at most 256 bytes and meters of at most 127"* &&
   $err == *"wallet 1: customer of 400 bytes"* && $err == *"price 1: meter of 130 bytes"* ]] ||
  fail "unexpected error: $err"
[[ $(q -c "SELECT extversion FROM pg_extension WHERE extname = 'wallet'") == 1.0 ]] ||
  fail "the extension is no longer at 1.0"
[[ $(q -c "SELECT sum(remaining) FROM wallet.grant_block") == 7 ]] || fail "the grant moved"

q >/dev/null <<'SQL'
UPDATE wallet.wallet SET customer = 'renamed' WHERE customer = repeat('é', 200);
UPDATE wallet.price SET meter = 'm' WHERE meter = repeat('m', 130);
ALTER EXTENSION wallet UPDATE;
SQL
[[ $(q -c "SELECT wallet_balance('renamed', 'credits')") == 7 ]] || fail "the balance after the upgrade"
[[ $(q -c "SELECT count(*) FROM wallet_verify()") == 0 ]] || fail "wallet_verify() not clean"
echo "upgrade_limits: ok"
