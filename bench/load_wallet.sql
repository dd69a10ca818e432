-- bench/load_wallet.sql: the extension's side of the benchmark data, through
-- its public API (psql -v wallets=N): :wallets customers named '1' .. ':wallets',
-- each with two grants (one expiring promotional, one paid that never expires),
-- and a per-unit price of 1 credit per call.  Used by bench/load.sql
-- (bench/run) and bench/ingest.sh.
CREATE EXTENSION wallet;
SELECT wallet_create_asset('credits', 0, 0.01) \g /dev/null
SELECT wallet_set_price('api.call', 'credits', '{"model": "per_unit", "unit_price": "1"}',
						now() - interval '1 day') \g /dev/null
SELECT count(wallet_create(i::text)) FROM generate_series(1, :wallets) i \g /dev/null
SELECT count(wallet_grant(i::text, 'credits', 1000000000, category => 'promotional',
						  expires_at => now() + interval '1 year'))
  FROM generate_series(1, :wallets) i \g /dev/null
SELECT count(wallet_grant(i::text, 'credits', 1000000000))
  FROM generate_series(1, :wallets) i \g /dev/null
