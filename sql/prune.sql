-- Pruning on the hot path (src/hotpath.c, IndexNextLazyPrune): the grant read
-- prunes a page only when it runs short of room, or when the row it found is
-- too wide for its next version to fit.  Either way each debit's grant update
-- stays HOT, on the page the grant was inserted on.  Rows of 1 kB and 1.5 kB
-- (wide metadata) are widths at which pruning only below BLCKSZ / 8 of free
-- space sent updates to new pages (300 debits made the table 400 kB), and at
-- which a prune between two searches of one chain once lost a grant from
-- its index (the second search started from the version the first found).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('pr', 0) \g /dev/null
SELECT wallet_set_price('pr.call', 'pr', '{"model": "per_unit", "unit_price": "1"}') > 0 AS priced;


-- three wallets whose grants share a page, each row about 1 kB wide
SELECT wallet_create('a' || w) > 0 AS created FROM generate_series(1, 3) w;
SELECT wallet_grant('a' || w, 'pr', 100000,
					metadata => jsonb_build_object('note', repeat(md5(w::text), 1024 / 32))) > 0 AS granted
  FROM generate_series(1, 3) w;
SELECT pg_stat_force_next_flush();
SELECT n_tup_upd - n_tup_hot_upd AS non_hot_before
  FROM pg_stat_user_tables WHERE relid = 'wallet.grant_block'::regclass \gset
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		PERFORM wallet_authorize_debit('a' || (i % 3 + 1), 'pr.call', 1, 'a-k' || i);
		COMMIT;
	END LOOP;
END $$;
SELECT pg_stat_force_next_flush();
SELECT n_tup_upd - n_tup_hot_upd - :non_hot_before AS not_hot,
	   pg_relation_size('wallet.grant_block') / 8192 AS pages
  FROM pg_stat_user_tables WHERE relid = 'wallet.grant_block'::regclass;
SELECT customer, available, granted FROM wallet.balances ORDER BY customer;
SELECT count(*) AS events FROM wallet.event;

-- the same with rows of about 1.5 kB, from a fresh table
DROP EXTENSION wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('pr', 0) \g /dev/null
SELECT wallet_set_price('pr.call', 'pr', '{"model": "per_unit", "unit_price": "1"}') > 0 AS priced;
SELECT wallet_create('b' || w) > 0 AS created FROM generate_series(1, 3) w;
SELECT wallet_grant('b' || w, 'pr', 100000,
					metadata => jsonb_build_object('note', repeat(md5(w::text), 1536 / 32))) > 0 AS granted
  FROM generate_series(1, 3) w;
SELECT pg_stat_force_next_flush();
SELECT coalesce(n_tup_upd - n_tup_hot_upd, 0) AS non_hot_before
  FROM pg_stat_user_tables WHERE relid = 'wallet.grant_block'::regclass \gset
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		PERFORM wallet_authorize_debit('b' || (i % 3 + 1), 'pr.call', 1, 'b-k' || i);
		COMMIT;
	END LOOP;
END $$;
SELECT pg_stat_force_next_flush();
SELECT n_tup_upd - n_tup_hot_upd - :non_hot_before AS not_hot,
	   pg_relation_size('wallet.grant_block') / 8192 AS pages
  FROM pg_stat_user_tables WHERE relid = 'wallet.grant_block'::regclass;
SELECT customer, available, granted FROM wallet.balances ORDER BY customer;
SELECT count(*) AS events FROM wallet.event;

SELECT * FROM wallet_verify();
