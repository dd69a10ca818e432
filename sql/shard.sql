-- shard: the settings wallet.shard and wallet.shards, routing bits in ids,
-- ownership (WL008), a wallet from before the database became a shard,
-- wallet_shard_check and wallet_shard_prune.  The router side (PL/Proxy) is
-- test/scripts/scaleout.sh and scaleout_migrate.sh.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('credits', 0);
SELECT wallet_set_price('job', 'credits', '{"model": "per_unit", "unit_price": "2"}', '2020-01-01');

-- not a shard (the default): plain ids, no check
SHOW wallet.shards;
SELECT wallet_create('before') AS wallet_id;
SELECT wallet_grant('before', 'credits', 100) AS grant_id;
SELECT event_id FROM wallet_debit('before', 'credits', 1, 'b1');

-- the routing bits of a few customers, and who owns them among 2 and 4 shards
SELECT c, wallet._route_hash(c) AS bits, hashtext(c) & 32767 = wallet._route_hash(c) AS is_hashtext,
	   hashtext(c) & 1 AS of_2, hashtext(c) & 3 AS of_4
  FROM unnest(array['a', 'b', 'c', 'd', 'before']) c ORDER BY c;
SELECT wallet._shard_owner('a') AS not_a_shard;

-- settings: a power of two up to 32768; the shard below it
SET wallet.shards = 3;
SET wallet.shards = 65536;
SET wallet.shard = 32768;
SET wallet.shards = 2;
SET wallet.shard = 2;
SELECT wallet_create('b');
SET wallet.shard = 0;
SELECT wallet._shard_owner('a') AS owner_a, wallet._shard_owner('b') AS owner_b;

-- shard 0 of 2: owns b, c and d, not a
SELECT wallet_create('a');
SELECT wallet_create('b') AS wallet_id, wallet_create('b') >> 48 AS bits;
SELECT wallet_grant('b', 'credits', 100) >> 48 AS grant_bits;
SELECT event_id >> 48 AS event_bits, amount, balance FROM wallet_debit('b', 'credits', 5, 'k1');
SELECT hold_id >> 48 AS hold_bits, amount, balance FROM wallet_hold('b', 'credits', 10, 'h1');
SELECT event_id >> 48 AS event_bits, hold_id >> 48 AS hold_bits, amount, balance
  FROM wallet_capture((SELECT max(id) FROM wallet.hold), 'job', 3);
SELECT event_id >> 48 AS event_bits, amount, balance FROM wallet_refund(
	(SELECT max(id) FROM wallet.event WHERE idempotency_key = 'k1'), 2);
SELECT wallet_set_limit('b', 'credits', low_balance => 90);
SELECT approved, balance FROM wallet_debit('b', 'credits', 2, 'k2');
SELECT id >> 48 AS outbox_bits, customer, kind FROM wallet.outbox;

-- a wallet from before: its id stays plain, its new rows get its customer's bits
SELECT wallet._shard_owner('before') AS owner_before;
SELECT event_id >> 48 AS event_bits, amount, balance FROM wallet_debit('before', 'credits', 1, 'b2');
SELECT wallet_grant('before', 'credits', 5) >> 48 AS grant_bits;
SELECT count(*) AS plain_events FROM wallet.event WHERE id >> 48 = 0;
SELECT * FROM wallet_shard_check();

-- a split to 4: this half keeps hash & 3 = 0, 'before' and 'b' belong to shard 2
SET wallet.shards = 4;
SELECT customer, wallet._shard_owner(customer) AS owner FROM wallet.wallet ORDER BY customer;
SELECT problem, detail FROM wallet_shard_check() ORDER BY detail;
SELECT count(*) AS problems FROM wallet_verify();
SELECT wallet_shard_prune();
SELECT customer FROM wallet.wallet ORDER BY customer;
-- this session's hot path had 'before' cached: once pruned, it has no wallet here
-- (WL001, not a foreign key error from the balance row the debit would create)
SELECT * FROM wallet_debit('before', 'credits', 1, 'after-prune');
SELECT count(*) AS lines FROM wallet.line;
SELECT count(*) AS events FROM wallet.event;
SELECT * FROM wallet_shard_check();
SELECT count(*) AS problems FROM wallet_verify();
SELECT wallet_shard_prune();
-- pruning needs a shard
SET wallet.shards = 0;
SELECT wallet_shard_prune();

-- an id that already has bits (a restore, a copy) is kept
SET wallet.shards = 2;
INSERT INTO wallet.wallet (id, customer) VALUES ((7::bigint << 48) | 12345, 'c');
SELECT id >> 48 AS bits, id & 281474976710655 AS seq FROM wallet.wallet WHERE customer = 'c';
SELECT problem FROM wallet_shard_check();
DELETE FROM wallet.wallet WHERE customer = 'c';

-- only a superuser may set the shard or prune
CREATE ROLE wallet_shard_user;
SET ROLE wallet_shard_user;
SET wallet.shard = 1;
SELECT wallet_shard_prune();
RESET ROLE;
DROP ROLE wallet_shard_user;
RESET wallet.shard;
RESET wallet.shards;
SELECT count(*) AS problems FROM wallet_verify();
