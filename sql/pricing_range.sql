-- pricing_range: amounts that fit are priced; what cannot price is refused
-- when set (22023), not at every event; a hold of an estimate of 0.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
-- the SQLSTATE and message of a statement that fails
CREATE FUNCTION err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;

SELECT wallet_create_asset('nano', 12, 0.000000001);
SELECT wallet_create_asset('USD', 2, 1);
SELECT wallet_create('acme') > 0;
SELECT wallet_grant('acme', 'nano', 100) > 0, wallet_grant('acme', 'USD', 100) > 0;

-- max_charge bounds an amount that does not fit in int64 minor units before it
SELECT wallet_set_price('capped', 'nano', '{"model": "per_unit", "unit_price": "1", "max_charge": "5"}') > 0;
SELECT amount AS five FROM wallet_quote('acme', 'capped', 10000000);
SELECT amount AS five FROM wallet_authorize_debit('acme', 'capped', 10000000, 'cap-1');
SELECT wallet_set_price('floor', 'nano', '{"model": "per_unit", "unit_price": "1", "max_per_period": "7"}') > 0;
SELECT amount AS seven FROM wallet_authorize_debit('acme', 'floor', 10000000, 'cap-2');
SELECT amount AS nothing_left FROM wallet_authorize_debit('acme', 'floor', 10000000, 'cap-3');
-- a per_unit product over 38 digits whose amount fits: exact, rounded once
SELECT wallet_set_price('fine', 'USD', '{"model": "per_unit", "unit_price": "0.1234567890123456789012"}') > 0;
SELECT amount AS exact FROM wallet_quote('acme', 'fine', 12345678901.23456789);
SELECT wallet_set_price('fine_up', 'USD', '{"model": "per_unit", "unit_price": "0.1234567890123456789012", "rounding": "up", "per": 7}') > 0;
SELECT amount AS exact_up FROM wallet_quote('acme', 'fine_up', 12345678901.23456789);
-- elsewhere the error says which product overflowed
SELECT wallet_set_price('fine_tiers', 'USD', '{"model": "graduated", "tiers": [{"unit_price": "0.1234567890123456789012"}]}') > 0;
SELECT err($$SELECT amount FROM wallet_quote('acme', 'fine_tiers', 12345678901.23456789)$$);
-- an amount that does not fit after the bounds is still 22003
SELECT err($$SELECT amount FROM wallet_quote('acme', 'fine', 123456789012345678901.23456789)$$);

-- refused when set, 22023, whatever the notation
SELECT err($$SELECT wallet_set_price('huge', 'USD', '{"model": "flat", "price": "9999999999999999999"}')$$);
SELECT err($$SELECT wallet_set_price('huge', 'USD', '{"model": "flat", "price": 1e400}')$$);
SELECT err($$SELECT wallet_set_price('huge', 'USD', '{"model": "flat", "price": "1e400"}')$$);
SELECT err($$SELECT wallet_set_price('huge', 'USD', '{"model": "flat", "price": "123456789012345678901234567890123456789"}')$$);
SELECT err($$SELECT wallet_set_price('huge', 'USD', '{"model": "package", "size": 1, "price": "1e20"}')$$);
SELECT err($$SELECT wallet_set_price('huge', 'USD', '{"model": "graduated", "tiers": [{"flat_price": "1e20"}]}')$$);
SELECT err($$SELECT wallet_set_price('huge', 'USD', '{"model": "percentage", "rate": "0.1", "fixed_fee": "1e20"}')$$);
SELECT err($$SELECT wallet_set_price('huge', 'USD', '{"model": "flat", "price": "1", "max_charge": "1e30"}')$$);
SELECT err($$SELECT wallet_set_price('huge', 'USD', '{"model": "per_unit", "unit_price": "1e-31"}')$$);
SELECT count(*) AS nothing_stored FROM wallet.price WHERE meter = 'huge';
-- the largest flat price is priced
SELECT wallet_set_price('largest', 'USD', '{"model": "flat", "price": "92233720368547758.07"}') > 0;
SELECT amount FROM wallet_quote('acme', 'largest', 1);

-- an estimate of 0 (a free tier) is an approved hold of 0
SELECT wallet_set_price('llm', 'USD', '{"model": "graduated", "tiers": [{"up_to": 100000, "unit_price": "0"}, {"unit_price": "0.001"}]}') > 0;
SELECT amount AS quote FROM wallet_quote('acme', 'llm', 4000);
SELECT approved, amount, balance FROM wallet_authorize_hold('acme', 'llm', 4000, 'free-1');
SELECT approved, amount, balance, replayed FROM wallet_authorize_hold('acme', 'llm', 4000, 'free-1');
SELECT hold_id AS h1 FROM wallet_authorize_hold('acme', 'llm', 4000, 'free-1') \gset
-- captured within the free tier: 0; above it: checked as a debit, all of it above the hold
SELECT approved, amount FROM wallet_capture(:h1, 'llm', 3000);
SELECT hold_id AS h2 FROM wallet_authorize_hold('acme', 'llm', 4000, 'free-2') \gset
SELECT approved, amount, balance FROM wallet_capture(:h2, 'llm', 100000);
SELECT hold_id AS h3 FROM wallet_authorize_hold('acme', 'llm', 1, 'free-3') \gset
SELECT wallet_set_price('llm', 'USD', '{"model": "graduated", "tiers": [{"up_to": 1000000, "unit_price": "0"}, {"unit_price": "0.001"}]}') > 0;
SELECT hold_id AS h4 FROM wallet_authorize_hold('acme', 'llm', 1, 'free-4') \gset
SELECT approved, amount FROM wallet_release(:h4);
-- declined as a debit of 0 would be: a frozen wallet
SELECT wallet_set_status('acme', 'frozen');
SELECT approved, amount, reason FROM wallet_authorize_hold('acme', 'llm', 4000, 'free-5');
SELECT wallet_set_status('acme', 'active');
SELECT status, amount FROM wallet.hold ORDER BY id;
SELECT kind, amount FROM wallet.line WHERE hold_id IS NOT NULL ORDER BY id;
SELECT count(*) AS problems FROM wallet_verify();

-- a cost_plus meter: wallet_authorize_hold has no cost to price it with (22023)
SELECT wallet_set_price('gpu', 'USD', '{"model": "cost_plus", "markup": "0.5"}') > 0;
SELECT err($$SELECT wallet_authorize_hold('acme', 'gpu', 1, 'gpu-1')$$);
SELECT err($$SELECT amount FROM wallet_quote('acme', 'gpu', 1)$$);
