-- wallet_ingest (#22, throughput): what the batch's direct paths must still
-- get right.
SET client_min_messages = warning;
SELECT wallet_create_asset('tp_credits', 0);
SELECT wallet_set_price('tp.call', 'tp_credits', '{"model": "per_unit", "unit_price": "1"}',
						now() - interval '1 hour') IS NOT NULL AS priced;
SELECT wallet_create('tp-a') IS NOT NULL AS a, wallet_create('tp-gone') IS NOT NULL AS gone;
SELECT wallet_grant('tp-a', 'tp_credits', 100) IS NOT NULL AS granted;

-- a batch finds the wallets (the backend keeps them), creates the balance
-- row tp-gone lacks, and declines it
SELECT idx, approved, reason, error, amount, balance FROM wallet_ingest('[
  {"customer": "tp-a", "meter": "tp.call", "quantity": 1, "idempotency_key": "tp-1"},
  {"customer": "tp-gone", "meter": "tp.call", "quantity": 1, "idempotency_key": "tp-2"}
]');

-- the wallet goes as a shard's prune takes it: without triggers, so without
-- telling the backends that keep it
SET session_replication_role = replica;
DELETE FROM wallet.outbox WHERE customer = 'tp-gone';
DELETE FROM wallet.account WHERE wallet_id = (SELECT id FROM wallet.wallet WHERE customer = 'tp-gone');
DELETE FROM wallet.wallet WHERE customer = 'tp-gone';
RESET session_replication_role;

-- the wallet kept is looked up again: WL001 for its element, as a single
-- call gets; the others apply
SELECT idx, approved, reason, error, amount, balance FROM wallet_ingest('[
  {"customer": "tp-gone", "meter": "tp.call", "quantity": 1, "idempotency_key": "tp-3"},
  {"customer": "tp-a", "meter": "tp.call", "quantity": 2, "idempotency_key": "tp-4"}
]');
SELECT approved FROM wallet_authorize_debit('tp-gone', 'tp.call', 1, 'tp-5');

-- a batch larger than one flush of grant updates: a grant written by the
-- first flush is found again by id for the second (its version read at the
-- start is no longer current)
SELECT wallet_create('tp-big') IS NOT NULL AS created;
SELECT wallet_grant('tp-big', 'tp_credits', 100000) IS NOT NULL AS granted;
SELECT count(*) FILTER (WHERE approved) AS approved, min(balance) AS last_balance
  FROM wallet_ingest((SELECT jsonb_agg(jsonb_build_object('customer', 'tp-big', 'meter', 'tp.call',
												   'quantity', 1, 'idempotency_key', 'big-' || i))
						FROM generate_series(1, 9000) i));
SELECT customer, available FROM wallet.balances WHERE customer LIKE 'tp-%' ORDER BY customer;
SELECT remaining FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
 WHERE w.customer = 'tp-big';
SELECT count(*) AS problems FROM wallet_verify();
