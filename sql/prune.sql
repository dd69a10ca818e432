-- Pruning on the hot path (src/hotpath.c, IndexNextLazyPrune): the grant read
-- prunes a page only when it runs short of room, or when the row it found is
-- too wide for its next version to fit.  Either way each debit's grant update
-- stays HOT, on the page the grant was inserted on.  Rows of 1 kB and 1.5 kB
-- (wide metadata) are widths at which pruning only below BLCKSZ / 8 of free
-- space sent updates to new pages (300 debits made the table 400 kB), and at
-- which a prune between two searches of one chain once lost a grant from
-- its index (the second search started from the version the first found).
SET client_min_messages = warning;

-- from a fresh extension: three wallets whose grants share a page, each row
-- about `width` bytes wide, then 300 debits, each in its own transaction
CREATE PROCEDURE pg_temp.debits(width int)
LANGUAGE plpgsql AS $$
BEGIN
	DROP EXTENSION IF EXISTS wallet CASCADE;
	CREATE EXTENSION wallet;
	PERFORM wallet_create_asset('pr', 0);
	PERFORM wallet_set_price('pr.call', 'pr', '{"model": "per_unit", "unit_price": "1"}');
	PERFORM wallet_create('w' || w) FROM generate_series(1, 3) w;
	PERFORM wallet_grant('w' || w, 'pr', 100000,
						 metadata => jsonb_build_object('note', repeat(md5(w::text), width / 32)))
	   FROM generate_series(1, 3) w;
	COMMIT;
	FOR i IN 1..300 LOOP
		PERFORM wallet_authorize_debit('w' || (i % 3 + 1), 'pr.call', 1, 'k' || i);
		COMMIT;
	END LOOP;
END $$;

-- what the debits did: updates not HOT, the table's pages, balances, events
CREATE FUNCTION pg_temp.outcome()
RETURNS TABLE (not_hot bigint, pages bigint, balances text, events bigint)
LANGUAGE sql AS $$
	SELECT n_tup_upd - n_tup_hot_upd, pg_relation_size('wallet.grant_block') / 8192,
		   (SELECT string_agg(customer || ' ' || available || '/' || granted, ', ' ORDER BY customer)
			  FROM wallet.balances),
		   (SELECT count(*) FROM wallet.event)
	  FROM pg_stat_user_tables WHERE relid = 'wallet.grant_block'::regclass
$$;

CALL pg_temp.debits(1024);
SELECT pg_stat_force_next_flush();
SELECT * FROM pg_temp.outcome();

CALL pg_temp.debits(1536);
SELECT pg_stat_force_next_flush();
SELECT * FROM pg_temp.outcome();

SELECT * FROM wallet_verify();
