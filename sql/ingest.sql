-- wallet_ingest: a batch gives what the same events give as single
-- wallet_authorize_debit calls, element by element, with the same balances.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
-- every suite starts from a fresh extension: ids and data do not leak between files
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('ing_credits', 0, 0.01);
SELECT wallet_create_asset('ing_usd', 2);

-- two identical worlds: customers ing_X_b get the batch, ing_X_s the single calls
CREATE FUNCTION pg_temp.world(sfx text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM wallet_create('ing_a' || sfx), wallet_create('ing_b' || sfx), wallet_create('ing_c' || sfx),
			wallet_create('ing_d' || sfx), wallet_create('ing_e' || sfx), wallet_create('ing_f' || sfx),
			wallet_create('ing_g' || sfx);	/* g: no balance row yet */
	PERFORM wallet_grant('ing_a' || sfx, 'ing_credits', 100, category => 'promotional',
						 expires_at => now() + interval '30 days');
	PERFORM wallet_grant('ing_a' || sfx, 'ing_credits', 100);
	PERFORM wallet_grant('ing_a' || sfx, 'ing_usd', 10);
	PERFORM wallet_grant('ing_b' || sfx, 'ing_credits', 10);
	PERFORM wallet_set_limit('ing_b' || sfx, 'ing_credits', low_balance => 8);
	PERFORM wallet_grant('ing_c' || sfx, 'ing_credits', 100);
	PERFORM wallet_grant('ing_d' || sfx, 'ing_credits', 100);
	PERFORM wallet_set_status('ing_d' || sfx, 'frozen');
	PERFORM wallet_set_limit('ing_e' || sfx, 'ing_credits', overdraft => 20);
	PERFORM wallet_grant('ing_f' || sfx, 'ing_credits', 30);
	PERFORM wallet_hold('ing_f' || sfx, 'ing_credits', 25, 'ing-hold');
	-- a key used before the batch
	PERFORM wallet_authorize_debit('ing_a' || sfx, 'ing.chat', 1, 'pre-1');
END
$$;
SELECT wallet_set_price('ing.chat', 'ing_credits', '{"model": "per_unit", "unit_price": "3"}',
	now() - interval '2 days');
SELECT wallet_set_price('ing.chat', 'ing_credits', '{"model": "per_unit", "unit_price": "4"}',
	now() - interval '1 hour');
SELECT wallet_set_price('ing.gpu', 'ing_credits',
	'{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "0"}, {"unit_price": "1"}]}',
	now() - interval '1 day');
SELECT wallet_set_price('ing.llm', 'ing_usd',
	'{"model": "matrix", "dimensions": ["model"], "rates": [{"match": {"model": "big"}, "rule": {"model": "per_unit", "unit_price": "2.5", "per": 1000}}]}',
	now() - interval '1 day');
SELECT pg_temp.world('_b'), pg_temp.world('_s');

-- the events; @ stands for the world
CREATE TEMP TABLE ing_events AS SELECT $$[
 {"customer": "ing_a@", "meter": "ing.chat", "quantity": 2, "idempotency_key": "k1"},
 {"customer": "ing_b@", "meter": "ing.chat", "quantity": 1, "idempotency_key": "k1"},
 {"customer": "ing_a@", "meter": "ing.chat", "quantity": 2, "idempotency_key": "k1"},
 {"customer": "ing_a@", "meter": "ing.chat", "quantity": 3, "idempotency_key": "k1"},
 {"customer": "ing_b@", "meter": "ing.chat", "quantity": 2, "idempotency_key": "k2"},
 {"customer": "ing_nobody@", "meter": "ing.chat", "quantity": 1, "idempotency_key": "k3"},
 {"customer": "ing_a@", "meter": "ing.nothing", "quantity": 1, "idempotency_key": "k4"},
 {"customer": "ing_a@", "meter": "ing.chat", "quantity": -1, "idempotency_key": "k5"},
 {"customer": "ing_c@", "meter": "ing.gpu", "quantity": 8, "idempotency_key": "g1"},
 {"customer": "ing_c@", "meter": "ing.gpu", "quantity": 5, "idempotency_key": "g2"},
 {"customer": "ing_c@", "meter": "ing.gpu", "quantity": 4, "idempotency_key": "g3"},
 {"customer": "ing_a@", "meter": "ing.llm", "quantity": 1, "idempotency_key": "l1", "dimensions": {"model": "small"}},
 {"customer": "ing_a@", "meter": "ing.llm", "quantity": 1234, "idempotency_key": "l2", "dimensions": {"model": "big"}, "cost": "0.0123"},
 {"customer": "ing_d@", "meter": "ing.chat", "quantity": 1, "idempotency_key": "d1"},
 {"customer": "ing_e@", "meter": "ing.chat", "quantity": 4, "idempotency_key": "e1"},
 {"customer": "ing_e@", "meter": "ing.chat", "quantity": 2, "idempotency_key": "e2"},
 {"customer": "ing_e@", "meter": "ing.chat", "quantity": 1, "idempotency_key": "e2"},
 {"customer": "ing_f@", "meter": "ing.chat", "quantity": 2, "idempotency_key": "f1"},
 {"customer": "ing_f@", "meter": "ing.chat", "quantity": 1, "idempotency_key": "f2"},
 {"customer": "ing_a@", "meter": "ing.chat", "quantity": 1, "idempotency_key": "pre-1"},
 {"customer": "ing_a@", "meter": "ing.chat", "quantity": "2.0", "idempotency_key": "k6", "occurred_at": "2000-01-01"},
 {"customer": "ing_a@", "meter": "ing.chat", "quantity": 1e20, "idempotency_key": "k7"},
 {"customer": "ing_a@", "meter": "ing.chat", "quantity": 2, "idempotency_key": "k1"},
 {"customer": "ing_a@", "meter": "ing.chat", "quantity": 60, "idempotency_key": "k8"},
 {"customer": "ing_a@", "meter": "ing.chat", "quantity": "1.5", "idempotency_key": "k9", "dimensions": {"user": "u1"}},
 {"customer": "ing_g@", "meter": "ing.chat", "quantity": 1, "idempotency_key": "g1"},
 {"customer": "ing_g@", "meter": "ing.gpu", "quantity": 3, "idempotency_key": "g2"}
]$$::text AS template;
-- a late event, priced at the version of a day ago
UPDATE ing_events SET template = replace(template, '"2000-01-01"', to_json(now() - interval '1 day')::text);

-- the reference: each element as a single call, an error rolled back alone
CREATE FUNCTION pg_temp.singles(events jsonb)
RETURNS TABLE (idx int, approved boolean, replayed boolean, reason text, error text,
	event_id bigint, asset text, amount numeric, balance numeric)
LANGUAGE plpgsql AS $$
DECLARE
	e jsonb;
	r wallet_result;
BEGIN
	idx := 0;
	FOR e IN SELECT value FROM jsonb_array_elements(events) LOOP
		BEGIN
			r := wallet_authorize_debit(e ->> 'customer', e ->> 'meter', (e ->> 'quantity')::numeric,
				e ->> 'idempotency_key', coalesce(e -> 'dimensions', '{}'),
				coalesce((e ->> 'occurred_at')::timestamptz, now()), (e ->> 'cost')::numeric);
			SELECT r.approved, r.replayed, r.reason, NULL, r.event_id, r.asset, r.amount, r.balance
			  INTO approved, replayed, reason, error, event_id, asset, amount, balance;
		EXCEPTION WHEN OTHERS THEN
			SELECT false, false, NULL, SQLSTATE, NULL, NULL, NULL, NULL
			  INTO approved, replayed, reason, error, event_id, asset, amount, balance;
		END;
		RETURN NEXT;
		idx := idx + 1;
	END LOOP;
END
$$;

CREATE TEMP TABLE ing_batch AS
SELECT * FROM wallet_ingest((SELECT replace(template, '@', '_b')::jsonb FROM ing_events));
CREATE TEMP TABLE ing_single AS
SELECT * FROM pg_temp.singles((SELECT replace(template, '@', '_s')::jsonb FROM ing_events));

-- the batch, element by element
SELECT idx, approved, replayed, reason, error, event_id IS NOT NULL AS event, asset, amount, balance
  FROM ing_batch ORDER BY idx;
-- a replay returns the event of the first call
SELECT b.idx, b.event_id = f.event_id AS same_event
  FROM ing_batch b JOIN ing_batch f ON f.idx = 0 WHERE b.idx IN (2, 22);

-- identical to the single calls, element by element (event ids aside) ...
SELECT count(*) AS elements,
	   count(*) FILTER (WHERE (b.approved, b.replayed, b.reason, b.error, b.event_id IS NULL, b.asset, b.amount, b.balance)
						 IS NOT DISTINCT FROM
						 (s.approved, s.replayed, s.reason, s.error, s.event_id IS NULL, s.asset, s.amount, s.balance)) AS identical
  FROM ing_batch b JOIN ing_single s USING (idx);
-- ... in balances ...
SELECT b.customer, b.asset, b.available, b.held, b.granted, b.overdraft,
	   (b.available, b.held, b.granted, b.overdraft) = (s.available, s.held, s.granted, s.overdraft) AS same
  FROM wallet.balances b
  JOIN wallet.balances s ON s.customer = replace(b.customer, '_b', '_s') AND s.asset = b.asset
 WHERE b.customer LIKE 'ing\__\_b' ORDER BY 1, 2;
-- ... in events, ledger lines, usage counters and outbox rows
CREATE FUNCTION pg_temp.trail(sfx text)
RETURNS TABLE (what text, row_text text) LANGUAGE sql AS $$
	SELECT 'event', format('%s %s %s %s %s %s %s %s %s', left(e.customer, -length(sfx)), e.idempotency_key, e.meter,
		   e.quantity, e.dimensions, e.asset, e.amount, e.cost, e.revenue)
	  FROM wallet.events e WHERE e.customer LIKE 'ing\__' || sfx
	UNION ALL
	SELECT 'line', format('%s %s %s %s', left(l.customer, -length(sfx)), l.kind, l.amount,
		   (SELECT e.idempotency_key FROM wallet.event e WHERE e.id = l.event_id))
	  FROM wallet.ledger l WHERE l.customer LIKE 'ing\__' || sfx
	UNION ALL
	SELECT 'usage', format('%s %s %s', u.meter, u.period, u.quantity)
	  FROM wallet.usage_counter u JOIN wallet.wallet w ON w.id = u.wallet_id WHERE w.customer LIKE 'ing\__' || sfx
	UNION ALL
	SELECT 'outbox', format('%s %s %s %s %s', left(o.customer, -length(sfx)), o.kind, o.available, o.threshold, o.detail)
	  FROM wallet.outbox o WHERE o.customer LIKE 'ing\__' || sfx
$$;
SELECT what, count(*) AS rows FROM pg_temp.trail('_b') GROUP BY what ORDER BY what;
(SELECT * FROM pg_temp.trail('_b') EXCEPT ALL SELECT * FROM pg_temp.trail('_s'))
UNION ALL
(SELECT * FROM pg_temp.trail('_s') EXCEPT ALL SELECT * FROM pg_temp.trail('_b'));
SELECT * FROM pg_temp.trail('_b') WHERE what IN ('usage', 'outbox') ORDER BY 1, 2;

-- the same batch again: what was approved replays (e2 now names the request
-- that was approved, so its first form is WL004); what declined declines again
SELECT idx, approved, replayed, reason, error, amount, balance
  FROM wallet_ingest((SELECT replace(template, '@', '_b')::jsonb FROM ing_events)) ORDER BY idx;

-- errors only the json form can make, one element each; the valid one applies
SELECT idx, approved, replayed, reason, error, amount, balance FROM wallet_ingest($$[
 5,
 [1],
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1, "idempotency_key": "j1", "typo": 1},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": true, "idempotency_key": "j2"},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": "two", "idempotency_key": "j3"},
 {"customer": 17, "meter": "ing.chat", "quantity": 1, "idempotency_key": "j4"},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1, "idempotency_key": ""},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": null, "idempotency_key": "j5"},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1, "idempotency_key": "j6", "dimensions": [1]},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1, "idempotency_key": "j7", "occurred_at": null},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1, "idempotency_key": "j8", "occurred_at": "soon"},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1, "idempotency_key": "j9", "cost": -1},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": "NaN", "idempotency_key": "j10"},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1, "idempotency_key": "j11", "occurred_at": "2999-01-01"},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1, "idempotency_key": "j12", "dimensions": null, "cost": null}
]$$) ORDER BY idx;
SELECT * FROM wallet_ingest((SELECT jsonb_build_array(jsonb_build_object('customer', 'ing_c_b',
	'meter', 'ing.chat', 'quantity', 1, 'idempotency_key', repeat('x', 256)))));

-- not an array: an error for the call
SELECT * FROM wallet_ingest('{"customer": "ing_c_b"}');
SELECT * FROM wallet_ingest('5');
SELECT * FROM wallet_ingest(NULL);
SELECT count(*) FROM wallet_ingest('[]');

-- an element that fails under the lock leaves no trace; the batch rolls back whole
CREATE TEMP TABLE ing_counts AS
SELECT (SELECT count(*) FROM wallet.event) AS events, (SELECT count(*) FROM wallet.line) AS lines,
	   (SELECT count(*) FROM wallet.outbox) AS outbox,
	   (SELECT sum(quantity) FROM wallet.usage_counter) AS usage;
SELECT idx, error FROM wallet_ingest($$[
 {"customer": "ing_c_b", "meter": "ing.gpu", "quantity": 1e20, "idempotency_key": "n1"},
 {"customer": "ing_a_b", "meter": "ing.llm", "quantity": 1, "idempotency_key": "n2", "dimensions": {"model": "tiny"}},
 {"customer": "ing_a_b", "meter": "ing.chat", "quantity": 9, "idempotency_key": "k1"}
]$$);
BEGIN;
SELECT idx, approved, amount, balance FROM wallet_ingest($$[
 {"customer": "ing_c_b", "meter": "ing.gpu", "quantity": 3, "idempotency_key": "n3"},
 {"customer": "ing_b_b", "meter": "ing.chat", "quantity": 9, "idempotency_key": "n4"}
]$$);
ROLLBACK;
SELECT (SELECT count(*) FROM wallet.event) = events AS same_events,
	   (SELECT count(*) FROM wallet.line) = lines AS same_lines,
	   (SELECT count(*) FROM wallet.outbox) = outbox AS same_outbox,
	   (SELECT sum(quantity) FROM wallet.usage_counter) = usage AS same_usage
  FROM ing_counts;

-- with other calls in the same transaction: the batch finds the lock already held
BEGIN;
SELECT approved, amount, balance FROM wallet_authorize_debit('ing_c_b', 'ing.chat', 1, 'm1');
SELECT idx, approved, replayed, amount, balance FROM wallet_ingest($$[
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1, "idempotency_key": "m1"},
 {"customer": "ing_c_b", "meter": "ing.chat", "quantity": 1, "idempotency_key": "m2"}
]$$);
SELECT approved, replayed, amount, balance FROM wallet_authorize_debit('ing_c_b', 'ing.chat', 1, 'm2');
COMMIT;

-- a batch larger than one write (4096 debits), over three wallets
SELECT wallet_create('ing_big_' || i) > 0 AS created FROM generate_series(1, 3) i;
SELECT wallet_grant('ing_big_' || i, 'ing_credits', 100000) > 0 AS granted FROM generate_series(1, 3) i;
SELECT count(*) AS elements, count(*) FILTER (WHERE approved) AS approved,
	   count(*) FILTER (WHERE replayed) AS replayed, sum(amount) AS amount,
	   count(DISTINCT event_id) AS events
  FROM wallet_ingest((SELECT jsonb_agg(jsonb_build_object('customer', 'ing_big_' || (1 + i % 5000 % 3),
	'meter', 'ing.chat', 'quantity', 1 + i % 5000 % 2, 'idempotency_key', 'big-' || (i % 5000)) ORDER BY i)
	FROM generate_series(1, 6000) i));
SELECT customer, available FROM wallet.balances WHERE customer LIKE 'ing\_big\_%' ORDER BY 1;
SELECT e.customer, count(*) AS events, sum(e.amount) AS amount
  FROM wallet.events e WHERE e.customer LIKE 'ing\_big\_%' GROUP BY 1 ORDER BY 1;

SELECT * FROM wallet_verify();
