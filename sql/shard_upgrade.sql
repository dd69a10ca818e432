-- ALTER EXTENSION wallet UPDATE on a shard.  1.1 draws event ids from
-- wallet.line_id_seq and moves that sequence past every id used so far; an
-- event id of a shard carries its customer's routing bits (bits 48..62,
-- src/shard.c), which are not part of the sequence's count.  Moving the
-- sequence past max(event.id) put one customer's bits into every later id,
-- and the routing trigger keeps an id that already has bits: the events of
-- every other customer were then routed (wallet_refund through the router)
-- by that customer's hash.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
SET wallet.shards = 1;		-- a shard: every customer is this shard's, ids carry routing bits
CREATE EXTENSION wallet VERSION '1.0';

SELECT wallet_create_asset('a5s', 0, 0.01);
SELECT wallet_set_price('a5s.call', 'a5s', '{"model": "per_unit", "unit_price": "1"}',
						effective_at => now() - interval '1 day') > 0 AS priced;
-- two customers whose routing bits differ
SELECT wallet._route_hash('a5s-b') <> wallet._route_hash('a5s-c') AS bits_differ;
SELECT wallet_create('a5s-b') > 0 AS created, wallet_create('a5s-c') > 0 AS created;
SELECT wallet_grant('a5s-b', 'a5s', 100) > 0 AS granted, wallet_grant('a5s-c', 'a5s', 100) > 0 AS granted;
SELECT approved FROM wallet_authorize_debit('a5s-b', 'a5s.call', 1, 'a5s-b1');
SELECT approved FROM wallet_authorize_debit('a5s-c', 'a5s.call', 1, 'a5s-c1');

ALTER EXTENSION wallet UPDATE;
-- the shared sequence counts ids, not routing bits
SELECT last_value < 281474976710656 AS seq_plain FROM wallet.line_id_seq;

SELECT approved FROM wallet_authorize_debit('a5s-b', 'a5s.call', 1, 'a5s-b2');
SELECT approved FROM wallet_authorize_debit('a5s-c', 'a5s.call', 1, 'a5s-c2');
SELECT approved FROM wallet_hold('a5s-c', 'a5s', 5, 'a5s-h1', '1 hour');
SELECT approved FROM wallet_ingest('[{"customer": "a5s-c", "meter": "a5s.call", "quantity": 1, "idempotency_key": "a5s-c3"},
									 {"customer": "a5s-b", "meter": "a5s.call", "quantity": 1, "idempotency_key": "a5s-b3"}]');
-- every event, before and after the upgrade, routes to its own customer
SELECT w.customer, e.idempotency_key, (e.id >> 48) = wallet._route_hash(w.customer) AS routes_home
  FROM wallet.event e JOIN wallet.wallet w ON w.id = e.wallet_id ORDER BY e.idempotency_key;
-- and every id, line or event, is still one of a kind
SELECT count(*) = count(DISTINCT id) AS ids_unique FROM wallet.line;
-- a page cursor on a line carried after the upgrade still finds its line
SELECT count(*) > 0 AS paged
  FROM wallet_statement('a5s-c', after_line => (SELECT max(e.line_id) FROM wallet.event e
												  JOIN wallet.wallet w ON w.id = e.wallet_id
												 WHERE w.customer = 'a5s-c' AND e.idempotency_key = 'a5s-c2'));
SELECT * FROM wallet_verify();
RESET wallet.shards;
