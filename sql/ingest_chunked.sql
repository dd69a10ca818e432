-- wallet_ingest_chunked (#22, throughput): a batch in committed chunks gives, element by
-- element, what wallet_ingest gives for the same events; a retry replays the
-- committed chunks; it refuses to run inside a transaction block.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('tp_credits', 0);
SELECT wallet_set_price('tp.call', 'tp_credits', '{"model": "per_unit", "unit_price": "2"}',
	now() - interval '1 day');
SELECT wallet_set_price('tp.gpu', 'tp_credits',
	'{"model": "graduated", "tiers": [{"up_to": 3, "unit_price": "0"}, {"unit_price": "1"}]}',
	now() - interval '1 day');
-- two identical worlds: _w gets wallet_ingest, _c the chunked procedure
SELECT count(wallet_create(c || w)), count(wallet_grant(c || w, 'tp_credits', 20))
  FROM unnest(ARRAY['tp_a', 'tp_b', 'tp_c']) c, unnest(ARRAY['_w', '_c']) w;
SELECT wallet_set_limit(c, 'tp_credits', low_balance => 10) FROM unnest(ARRAY['tp_b_w', 'tp_b_c']) c;

-- 11 events: replays and a wrong replay across chunk boundaries (chunks of 3),
-- an error, a decline, graduated tiers that read the usage counter
CREATE TEMP TABLE tp_events AS SELECT $$[
 {"customer": "tp_a@", "meter": "tp.call", "quantity": 2, "idempotency_key": "k1"},
 {"customer": "tp_b@", "meter": "tp.gpu", "quantity": 2, "idempotency_key": "k1"},
 {"customer": "tp_c@", "meter": "tp.call", "quantity": 1, "idempotency_key": "k1"},
 {"customer": "tp_a@", "meter": "tp.call", "quantity": 2, "idempotency_key": "k1"},
 {"customer": "tp_b@", "meter": "tp.gpu", "quantity": 4, "idempotency_key": "k2"},
 {"customer": "tp_a@", "meter": "tp.call", "quantity": -1, "idempotency_key": "k3"},
 {"customer": "tp_nobody@", "meter": "tp.call", "quantity": 1, "idempotency_key": "k1"},
 {"customer": "tp_c@", "meter": "tp.call", "quantity": 50, "idempotency_key": "k2"},
 {"customer": "tp_a@", "meter": "tp.call", "quantity": 3, "idempotency_key": "k1"},
 {"customer": "tp_b@", "meter": "tp.call", "quantity": 4, "idempotency_key": "k3"},
 {"customer": "tp_c@", "meter": "tp.call", "quantity": 1, "idempotency_key": "k3"}
]$$::text AS template;

CREATE TEMP TABLE tp_batch AS
SELECT * FROM wallet_ingest((SELECT replace(template, '@', '_w')::jsonb FROM tp_events));
-- (a CALL's arguments cannot hold a subquery: the events go through a psql variable)
SELECT replace(template, '@', '_c') AS events FROM tp_events \gset
CALL wallet_ingest_chunked(:'events', 3) \gset
CREATE TEMP TABLE tp_chunked AS
SELECT r.* FROM jsonb_to_recordset(:'results') AS r(idx int, approved boolean, replayed boolean,
	reason text, error text, event_id bigint, asset text, amount numeric, balance numeric);

-- the chunked results, element by element
SELECT idx, approved, replayed, reason, error, event_id IS NOT NULL AS event, asset, amount, balance
  FROM tp_chunked ORDER BY idx;
-- identical to wallet_ingest's, element by element (event ids aside) ...
SELECT count(*) AS elements,
	   count(*) FILTER (WHERE (b.approved, b.replayed, b.reason, b.error, b.event_id IS NULL, b.asset, b.amount, b.balance)
						 IS NOT DISTINCT FROM
						 (c.approved, c.replayed, c.reason, c.error, c.event_id IS NULL, c.asset, c.amount, c.balance)) AS identical
  FROM tp_batch b JOIN tp_chunked c USING (idx);
-- ... a replay in a later chunk returns the event of the first call ...
SELECT c.idx, c.event_id = f.event_id AS same_event
  FROM tp_chunked c JOIN tp_chunked f ON f.idx = 0 WHERE c.idx = 3;
-- ... and in balances, events and outbox rows
SELECT c.customer, c.available, c.available = w.available AS same
  FROM wallet.balances c JOIN wallet.balances w ON w.customer = regexp_replace(c.customer, '_c$', '_w')
 WHERE c.customer LIKE 'tp\__\_c' ORDER BY 1;
SELECT (SELECT count(*) FROM wallet.events WHERE customer LIKE '%\_c') AS events_c,
	   (SELECT count(*) FROM wallet.events WHERE customer LIKE '%\_w') AS events_w,
	   (SELECT count(*) FROM wallet.outbox WHERE customer LIKE '%\_c') AS outbox_c,
	   (SELECT count(*) FROM wallet.outbox WHERE customer LIKE '%\_w') AS outbox_w;

-- a retry of the same events (after a failure, say) replays what was approved
CALL wallet_ingest_chunked(:'events', 3) \gset
SELECT r.idx, r.approved, r.replayed, r.reason, r.error, r.amount, r.balance
  FROM jsonb_to_recordset(:'results') AS r(idx int, approved boolean, replayed boolean,
	reason text, error text, amount numeric, balance numeric) ORDER BY idx;
SELECT count(*) AS events_c FROM wallet.events WHERE customer LIKE '%\_c';

-- one chunk (chunk_size at least the batch), an empty array
CALL wallet_ingest_chunked('[{"customer": "tp_a_c", "meter": "tp.call", "quantity": 1, "idempotency_key": "one"}]', 100);
CALL wallet_ingest_chunked('[]');

-- bad arguments
CALL wallet_ingest_chunked('{"customer": "tp_a_c"}');
CALL wallet_ingest_chunked(NULL);
CALL wallet_ingest_chunked('[]', 0);
-- it commits, so not inside a transaction block (nothing is written)
BEGIN;
CALL wallet_ingest_chunked('[{"customer": "tp_a_c", "meter": "tp.call", "quantity": 1, "idempotency_key": "tx"}]');
ROLLBACK;
SELECT count(*) AS tx_events FROM wallet.events WHERE idempotency_key = 'tx';

-- wallet_app may call it; the ledger stays consistent
SELECT has_function_privilege('wallet_app', 'wallet_ingest_chunked(jsonb, int, jsonb)', 'EXECUTE') AS app,
	   has_function_privilege('public', 'wallet_ingest_chunked(jsonb, int, jsonb)', 'EXECUTE') AS public;
SELECT count(*) AS problems FROM wallet_verify();
