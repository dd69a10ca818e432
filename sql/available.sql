-- wallet_available: what a debit of a meter could draw now (grants that serve it
-- and overdraft room), checked as wallet_quote and wallet_authorize_debit check
-- their arguments; spend caps are room of their own (wallet_caps), not part of it.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

-- the SQLSTATE and message of a statement, or 'ok'
CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SELECT wallet_create_asset('av', 0);
SELECT wallet_set_price('av.chat', 'av', '{"model": "per_unit", "unit_price": "1"}') > 0 AS priced;
SELECT wallet_create('av-1') > 0 AS created;
SELECT wallet_grant('av-1', 'av', 100) > 0 AS granted;

-- an empty meter is 22023 in all three, as no price can have it; null is wallet_debit's view
SELECT f, pg_temp.err(q) FROM (VALUES
	('wallet_available', $$SELECT * FROM wallet_available('av-1', '')$$),
	('wallet_quote', $$SELECT * FROM wallet_quote('av-1', '', 1)$$),
	('wallet_authorize_debit', $$SELECT * FROM wallet_authorize_debit('av-1', '', 1, 'av-k0')$$)) v(f, q);
SELECT * FROM wallet_available('av-1', NULL);

-- a cap of 5 a day: wallet_available still says what the grants hold (100);
-- what a debit may take now is also bounded by the cap's room (wallet_caps),
-- and wallet_quote's would_approve answers for one amount with both
SELECT wallet_set_cap('av-1', 'av', 5, 'day', 'user');
SELECT * FROM wallet_available('av-1', 'av.chat', '{"user": "u1"}');
SELECT dimension, cap, spent, remaining FROM wallet_caps('av-1');
SELECT amount, balance, would_approve FROM wallet_quote('av-1', 'av.chat', 6, '{"user": "u1"}');
SELECT amount, balance, would_approve FROM wallet_quote('av-1', 'av.chat', 5, '{"user": "u1"}');
SELECT approved, reason FROM wallet_authorize_debit('av-1', 'av.chat', 6, 'av-k1', '{"user": "u1"}');
SELECT approved, amount, balance FROM wallet_authorize_debit('av-1', 'av.chat', 5, 'av-k2', '{"user": "u1"}');
SELECT * FROM wallet_available('av-1', 'av.chat', '{"user": "u1"}');
SELECT dimension, dim_value, cap, spent, remaining FROM wallet_caps('av-1');
