-- pricing_keys: a usage counter belongs to one meter.  The counters of a
-- meter's rule (a matrix rate's, max_per_period's) are keyed by the meter and,
-- apart, the rule's counter: a meter named like another meter's counter
-- ('api#max:USD', 'mx{"model":"a"}') never reaches it.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('USD', 2, 1);
SELECT wallet_create('acme') > 0;
SELECT wallet_grant('acme', 'USD', 10000) > 0;

-- max_per_period of api counts what api charged, not the usage of meter 'api#max:USD'
SELECT wallet_set_price('api', 'USD', '{"model": "per_unit", "unit_price": "1", "max_per_period": "100"}') > 0;
SELECT wallet_set_price('api#max:USD', 'USD', '{"model": "graduated", "tiers": [{"unit_price": "0"}]}') > 0;
SELECT amount AS other_meter_free FROM wallet_authorize_debit('acme', 'api#max:USD', 100, 'x1');
SELECT amount AS ten FROM wallet_authorize_debit('acme', 'api', 10, 'x2');
SELECT amount AS ninety_left FROM wallet_authorize_debit('acme', 'api', 1000, 'x3');

-- a matrix rate's tiers count that rate's usage, not meter 'mx{"model":"a"}'
SELECT wallet_set_price('mx', 'USD', '{"model": "matrix", "dimensions": ["model"], "rates": [{"match": {"model": "a"},
   "rule": {"model": "graduated", "tiers": [{"up_to": 100, "unit_price": "0"}, {"unit_price": "1"}]}}]}') > 0;
SELECT wallet_set_price('mx{"model":"a"}', 'USD', '{"model": "graduated", "tiers": [{"unit_price": "0"}]}') > 0;
SELECT amount FROM wallet_authorize_debit('acme', 'mx{"model":"a"}', 100, 'y1');
SELECT amount AS free_tier FROM wallet_authorize_debit('acme', 'mx', 10, 'y2', '{"model": "a"}');
SELECT amount AS second_tier FROM wallet_authorize_debit('acme', 'mx', 100, 'y3', '{"model": "a"}');

-- quotes read the same counters
SELECT amount AS quote_second_tier FROM wallet_quote('acme', 'mx', 5, '{"model": "a"}');
SELECT amount AS quote_nothing_left FROM wallet_quote('acme', 'api', 5);

SELECT meter, counter, quantity FROM wallet.usage_counter ORDER BY meter, counter;
SELECT count(*) AS problems FROM wallet_verify();
