#!/usr/bin/env bash
# Pricing 1.1 (#20) upgrade: usage counters that 1.0 kept by a matrix rate's
# position ("tok[0]") move to the rate's match ('tok{"direction":"in"}') on
# ALTER EXTENSION wallet UPDATE, every number kept, so the tiers go on where
# they were; a session that priced before the upgrade uses the new keys after.
# A counter moves by the version that priced its period's last event, not by a
# newer one set before the upgrade that lists the rates in another order.  1.1
# keys a counter by meter and, apart, the rule's counter (wallet.usage_counter.
# counter); a max_per_period counter the 1.1 library kept on the 1.0 schema
# ('cap{"d":"x"}#max:USD') splits there too.
set -euo pipefail
db=pricing_upgrade_$$
cleanup() { dropdb --if-exists "$db"; }
trap cleanup EXIT
createdb "$db"
fail() { echo "pricing_upgrade: $*" >&2; exit 1; }

out=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wallet VERSION '1.0';
SELECT wallet_create_asset('USD', 2) IS NOT NULL;
SELECT wallet_create('acme') > 0;
SELECT wallet_grant('acme', 'USD', 1000) > 0;
-- v1 prices in and out tokens with tiers, by position [0], [1]; wrap prices by a default
SELECT wallet_set_price('tok', 'USD', '{"model": "matrix", "dimensions": ["direction"], "rates": [
	{"match": {"direction": "in"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "0.4"}, {"unit_price": "0.2"}]}},
	{"match": {"direction": "out"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1.6"}, {"unit_price": "0.8"}]}}]}',
	now() - interval '1 hour') > 0;
SELECT wallet_set_price('wrap', 'USD', '{"model": "matrix", "dimensions": ["region"], "rates": [],
	"default": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1"}, {"unit_price": "0.5"}]}}',
	now() - interval '1 hour') > 0;
SELECT amount FROM wallet_authorize_debit('acme', 'tok', 10, 'a1', '{"direction": "in"}');
SELECT amount FROM wallet_authorize_debit('acme', 'tok', 4, 'a2', '{"direction": "out"}');
SELECT amount FROM wallet_authorize_debit('acme', 'wrap', 10, 'a3');
-- gen: 15 "big" units priced by v1 (position 0), then a v2 that lists the rates the other
-- way round, same prices, set before the upgrade and pricing no event yet
SELECT wallet_set_price('gen', 'USD', '{"model": "matrix", "dimensions": ["model"], "rates": [
	{"match": {"model": "big"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "5"}, {"unit_price": "1"}]}},
	{"match": {"model": "small"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "2"}, {"unit_price": "1"}]}}]}',
	now() - interval '1 hour') > 0;
SELECT amount FROM wallet_authorize_debit('acme', 'gen', 15, 'g1', '{"model": "big"}');
SELECT wallet_set_price('gen', 'USD', '{"model": "matrix", "dimensions": ["model"], "rates": [
	{"match": {"model": "small"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "2"}, {"unit_price": "1"}]}},
	{"match": {"model": "big"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "5"}, {"unit_price": "1"}]}}]}') > 0;
SELECT wallet_set_price('cap', 'USD', '{"model": "matrix", "dimensions": ["d"], "rates": [
	{"match": {"d": "x"}, "rule": {"model": "per_unit", "unit_price": "1", "max_per_period": "5"}}]}',
	now() - interval '1 hour') > 0;
SELECT amount FROM wallet_authorize_debit('acme', 'cap', 3, 'm1', '{"d": "x"}');
SELECT string_agg(meter || '=' || quantity, ' ' ORDER BY meter) FROM wallet.usage_counter;
ALTER EXTENSION wallet UPDATE;
-- this session cached the prices under 1.0: the upgrade empties the cache
SELECT amount FROM wallet_authorize_debit('acme', 'tok', 1, 'a4', '{"direction": "in"}');
SELECT string_agg(meter || '|' || counter || '=' || quantity, ' ' ORDER BY meter, counter) FROM wallet.usage_counter;
-- 3 of cap's 5 were charged before the upgrade
SELECT amount FROM wallet_authorize_debit('acme', 'cap', 3, 'm2', '{"d": "x"}');
-- big goes on in its second tier (15 used), small starts in its first
SELECT amount FROM wallet_authorize_debit('acme', 'gen', 1, 'g2', '{"model": "big"}');
SELECT amount FROM wallet_authorize_debit('acme', 'gen', 1, 'g3', '{"model": "small"}');
-- v2 lists the rates the other way round, and unwraps the default
SELECT wallet_set_price('tok', 'USD', '{"model": "matrix", "dimensions": ["direction"], "rates": [
	{"match": {"direction": "out"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1.6"}, {"unit_price": "0.8"}]}},
	{"match": {"direction": "in"}, "rule": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "0.4"}, {"unit_price": "0.2"}]}}]}') > 0;
SELECT wallet_set_price('wrap', 'USD', '{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1"}, {"unit_price": "0.5"}]}') > 0;
-- out: 6 x 1.6 + 4 x 0.8 = 12.80; in: 10 x 0.2 = 2.00; wrap: 10 x 0.5 = 5.00
SELECT amount FROM wallet_authorize_debit('acme', 'tok', 10, 'b1', '{"direction": "out"}');
SELECT amount FROM wallet_authorize_debit('acme', 'tok', 10, 'b2', '{"direction": "in"}');
SELECT amount FROM wallet_authorize_debit('acme', 'wrap', 10, 'b3');
SELECT count(*) FROM wallet_verify();
SQL
)
expected='t
t
t
t
t
4.00
6.40
10.00
t
55.00
t
t
3.00
cap{"d":"x"}#max:USD=3.00 gen[0]=15 tok[0]=10 tok[1]=4 wrap[default]=10
0.20
cap|{"d":"x"}#max:USD=3.00 gen|{"model":"big"}=15 tok|{"direction":"in"}=11 tok|{"direction":"out"}=4 wrap|=10
2.00
1.00
2.00
t
t
12.80
2.00
5.00
0'
[[ $out == "$expected" ]] || fail "got:
$out
expected:
$expected"

# another session, after the upgrade, goes on from the same counters
out=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c \
  "SELECT amount FROM wallet_authorize_debit('acme', 'tok', 1, 'c1', '{\"direction\": \"out\"}')")
[[ $out == 0.80 ]] || fail "second session: got $out, expected 0.80"
echo "pricing_upgrade: ok"
