-- Byte limits of the text and jsonb inputs the hardening audit found
-- unbounded (docs/security.md): each is 22023 naming the argument, its size
-- and the limit, counted in bytes, and a value at the limit is accepted.
\set VERBOSITY default
\set SHOW_CONTEXT never
\pset null '-'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('lim', 2, 1) \g /dev/null
SELECT wallet_create('lim-a') > 0 AS created;
SELECT wallet_grant('lim-a', 'lim', 100) > 0 AS granted;
SELECT wallet_set_price('lim.m', 'lim', '{"model":"per_unit","unit_price":"1"}', now() - interval '1 hour') > 0 AS priced;
SELECT event_id AS ev FROM wallet_authorize_debit('lim-a', 'lim.m', 10, 'lim-1') \gset

---------------------------------------------------------------- an asset's description: 1024 bytes
SELECT wallet_create_asset('lim2', 2, 1, repeat('d', 1025));
SELECT wallet_create_asset('lim2', 2, 1, repeat(U&'\+01F600', 257));	-- 1028 bytes
SELECT wallet_create_asset('lim2', 2, 1, repeat('d', 1024));
SELECT octet_length(description) FROM wallet.asset WHERE code = 'lim2';
-- an existing asset's description is held to it too
SELECT wallet_create_asset('lim2', 2, 1, repeat('e', 1025));
SELECT left(description, 1) AS kept FROM wallet.asset WHERE code = 'lim2';
-- a description stored before the limit (by 1.0) is kept, and the asset's
-- unit value can still change
ALTER TABLE wallet.asset DISABLE TRIGGER text_limits;
UPDATE wallet.asset SET description = repeat('o', 2000) WHERE code = 'lim2';
ALTER TABLE wallet.asset ENABLE TRIGGER text_limits;
SELECT wallet_create_asset('lim2', 2, 3);
SELECT unit_value, octet_length(description) FROM wallet.asset WHERE code = 'lim2';
SELECT wallet_create_asset('lim2', 2, 3, repeat('o', 2001));

---------------------------------------------------------------- a wallet's metadata: 4096 bytes as stored
SELECT wallet_create('lim-b', jsonb_build_object('note', repeat('m', 5000)));
SELECT wallet_create('lim-b', jsonb_build_object('note', repeat('m', 4000))) > 0 AS created;
-- (the 5000 bytes above compress to far less: the limit is on the value)
SELECT wallet_create('lim-c', (SELECT jsonb_object_agg('k' || g, g) FROM generate_series(1, 400) g));
SELECT count(*) AS wallets FROM wallet.wallet WHERE customer IN ('lim-b', 'lim-c');

---------------------------------------------------------------- a grant's metadata: 4096 bytes as stored
SELECT wallet_grant('lim-a', 'lim', 1, metadata => jsonb_build_object('note', repeat('m', 5000)));
SELECT wallet_grant('lim-a', 'lim', 1, metadata => jsonb_build_object('note', repeat('m', 4000))) > 0 AS granted;

---------------------------------------------------------------- a grant's scope: 4096 bytes as stored
SELECT wallet_grant('lim-a', 'lim', 1, scope => jsonb_build_object('meters',
	(SELECT jsonb_agg('lim.meter.' || g) FROM generate_series(1, 300) g)));
SELECT wallet_grant('lim-a', 'lim', 1, scope => jsonb_build_object('meters',
	(SELECT jsonb_agg('lim.meter.' || g) FROM generate_series(1, 100) g))) > 0 AS granted;

---------------------------------------------------------------- a refund's reason: 1024 bytes
SELECT approved FROM wallet_refund(:ev, 1, repeat('r', 1025));
SELECT approved FROM wallet_refund(:ev, 1, repeat(U&'\+01F600', 257));
-- nothing was refunded
SELECT count(*) AS refunds FROM wallet.refund;
SELECT approved, amount FROM wallet_refund(:ev, 1, repeat('r', 1024));
SELECT octet_length(reason) FROM wallet.refund;

---------------------------------------------------------------- a void's reason: 1024 bytes
SELECT wallet_grant('lim-a', 'lim', 7) AS g \gset
SELECT wallet_void_grant(:g, repeat('v', 1025));
SELECT voided_at IS NULL AS not_voided, remaining FROM wallet.grant_block WHERE id = :g;
SELECT wallet_void_grant(:g, repeat('v', 1024));
SELECT voided_at IS NOT NULL AS voided, octet_length(void_reason) FROM wallet.grant_block WHERE id = :g;

---------------------------------------------------------------- a cost's dimensions: as an event's
SELECT wallet_record_cost(:ev, 1, jsonb_build_object(repeat('k', 128), 'x'));
SELECT wallet_record_cost(:ev, 1, jsonb_build_object('k', repeat('x', 1025)));
SELECT wallet_record_cost(:ev, 1, jsonb_build_object(repeat('k', 127), repeat('x', 1024)));
SELECT octet_length(cost_dimensions::text) > 1151 AS recorded FROM wallet.event WHERE id = :ev;

---------------------------------------------------------------- wallet_available: a meter of 127 bytes, as wallet_quote
SELECT * FROM wallet_available('lim-a', repeat('m', 128));
SELECT * FROM wallet_available('lim-a', repeat(U&'\+01F600', 32));
SELECT * FROM wallet_quote('lim-a', repeat('m', 128), 1);
SELECT * FROM wallet_available('lim-a', repeat('m', 127));

---------------------------------------------------------------- a customer over 256 bytes is 22023 everywhere, not WL001
\set VERBOSITY sqlstate
SELECT wallet_set_limit(repeat('c', 257), 'lim', 1);
SELECT * FROM wallet_limits(repeat('c', 257));
SELECT * FROM wallet_caps(repeat('c', 257));
SELECT * FROM wallet_statement(repeat('c', 257));
SELECT * FROM wallet_usage(repeat('c', 257), now() - interval '1 day');
SELECT wallet_grant(repeat('c', 257), 'lim', 1);
SELECT wallet_assign_plan(repeat(U&'\+01F600', 65), 'p');
SELECT wallet_balance(repeat('c', 257), 'lim');
-- one at the limit is an unknown customer
SELECT * FROM wallet_limits(repeat('c', 256));
\set VERBOSITY default
SELECT * FROM wallet_limits(repeat('c', 257));

---------------------------------------------------------------- margin_by_dimension: a dimension key of 127 bytes
SELECT * FROM wallet.margin_by_dimension(repeat('k', 128));
SELECT count(*) AS groups FROM wallet.margin_by_dimension(repeat('k', 127));

---------------------------------------------------------------- capture_lines: a line's meter of 127 bytes; outbox kinds of 64
\set VERBOSITY sqlstate
SELECT wallet_set_price('lim.call', 'lim', '{"model": "per_unit", "unit_price": "1"}') > 0 AS priced;
SELECT hold_id AS lim_hold FROM wallet_hold('lim-a', 'lim', 5, 'lim-h1') \gset
SELECT approved FROM wallet_capture_lines(:lim_hold, jsonb_build_array(jsonb_build_object('meter', repeat('m', 128), 'quantity', 1)));
SELECT approved FROM wallet_capture_lines(:lim_hold, jsonb_build_array(jsonb_build_object('meter', repeat('m', 127), 'quantity', 1)));
SELECT count(*) FROM wallet_outbox_claim(10, ARRAY[repeat('k', 65)]);
SELECT count(*) >= 0 AS claimed FROM wallet_outbox_claim(10, ARRAY[repeat('k', 64)]);
\set VERBOSITY default

---------------------------------------------------------------- an unknown grant category is named in at most 64 characters
DO $$
BEGIN
	PERFORM wallet_grant('lim-a', 'lim', 1, category => repeat('c', 100000));
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING '%: message of % characters: %', SQLSTATE, length(SQLERRM), left(SQLERRM, 40);
END $$;

SELECT * FROM wallet_verify();
