-- bench/load.sql: the data of bench/run (psql -v wallets=N -f bench/load.sql).
-- Each contender gets :wallets customers named '1' .. ':wallets', each with
-- two grants (one expiring promotional, one paid that never expires) and a
-- per-unit price of 1 credit per call.
SET client_min_messages = warning;

-- floor: one balance row per wallet and an append-only log
CREATE SCHEMA floor;
CREATE TABLE floor.balance (id int PRIMARY KEY, amount bigint NOT NULL);
CREATE TABLE floor.log (balance_id int NOT NULL, delta bigint NOT NULL,
						balance_after bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
INSERT INTO floor.balance SELECT i, 2000000000 FROM generate_series(1, :wallets) i;

-- ext: the extension, through its public API
\i bench/load_wallet.sql

-- peer: the same model in PL/pgSQL
\i bench/peer.sql
INSERT INTO peer.prices (meter, asset, scale, unit_price, effective_at)
VALUES ('api.call', 'credits', 0, 1, now() - interval '1 day');
INSERT INTO peer.wallets (customer) SELECT i::text FROM generate_series(1, :wallets) i;
INSERT INTO peer.grants (wallet_id, asset, category, amount, remaining, expires_at)
SELECT id, 'credits', 'promotional', 1000000000, 1000000000, now() + interval '1 year'
  FROM peer.wallets;
INSERT INTO peer.grants (wallet_id, asset, category, amount, remaining)
SELECT id, 'credits', 'paid', 1000000000, 1000000000 FROM peer.wallets;
VACUUM ANALYZE;
CHECKPOINT;
