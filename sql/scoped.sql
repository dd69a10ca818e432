-- Scoped grants (#19): a grant that serves only some meters or dimensions.
\set VERBOSITY sqlstate
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

SELECT wallet_create_asset('sc', 0, 0.01);
SELECT count(wallet_create(c)) FROM unnest(ARRAY['sc_a', 'sc_b', 'sc_c', 'sc_d', 'sc_e', 'sc_f',
	'sc_g', 'sc_h']) c;
SELECT wallet_set_price('image.generate', 'sc', '{"model":"per_unit","unit_price":"10"}') > 0 AS priced;
SELECT wallet_set_price('chat.response', 'sc', '{"model":"per_unit","unit_price":"1"}') > 0 AS priced;
SELECT wallet_set_price('llm.gpt4o', 'sc', '{"model":"per_unit","unit_price":"1"}') > 0 AS priced;
SELECT wallet_set_price('llm', 'sc', '{"model":"per_unit","unit_price":"1"}') > 0 AS priced;
SELECT wallet_set_price('llmx.a', 'sc', '{"model":"per_unit","unit_price":"1"}') > 0 AS priced;

-- a grant's lines and what it has left
CREATE FUNCTION pg_temp.drawn(e bigint) RETURNS TABLE (grant_id bigint, amount numeric)
LANGUAGE sql AS $$ SELECT l.grant_id, l.amount FROM wallet.ledger l WHERE l.event_id = e AND l.kind = 'debit' ORDER BY l.id $$;

---------------------------------------------------------------- validation
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '[]')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '"image"')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"meter": ["image.generate"]}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"meters": "image.generate"}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"meters": []}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"meters": [1]}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"meters": [""]}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"meters": ["llm*"]}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"meters": ["*"]}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"meters": ["a.*.b"]}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"dimensions": ["model"]}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"dimensions": {"model": null}}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"dimensions": {"model": ["a"]}}')$$);
-- nothing was granted by the failures
SELECT count(*) AS grants FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
 WHERE w.customer = 'sc_h';

-- stored form: {} and null serve everything; dimension values become text
SELECT wallet_grant('sc_h', 'sc', 1, scope => '{}') AS h1 \gset
SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"dimensions": {}}') AS h2 \gset
SELECT wallet_grant('sc_h', 'sc', 1, scope => '{"dimensions": {"tier": 1.0, "beta": true}, "meters": ["llm.*"]}') AS h3 \gset
SELECT id = :h1 AS h1, id = :h2 AS h2, scope FROM wallet.grant_block WHERE id IN (:h1, :h2, :h3) ORDER BY id;

-- the 1.0 signature's calls still bind (positional and named)
SELECT wallet_grant('sc_h', 'sc', 1, 100, NULL, now(), 'paid', NULL, 'sc-ref-10', NULL, 0, '{}') > 0 AS positional;
SELECT wallet_grant('sc_h', 'sc', 1, category => 'promotional') > 0 AS named;

-- external_ref: the same scope is the same grant; another scope is WL004
SELECT wallet_grant('sc_h', 'sc', 5, external_ref => 'sc-ref-1', scope => '{"meters": ["image.generate"]}') AS r1 \gset
SELECT wallet_grant('sc_h', 'sc', 5, external_ref => 'sc-ref-1', scope => '{"meters": ["image.generate"]}') = :r1 AS same;
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 5, external_ref => 'sc-ref-1', scope => '{"meters": ["chat.response"]}')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 5, external_ref => 'sc-ref-1')$$);
SELECT pg_temp.err($$SELECT wallet_grant('sc_h', 'sc', 1, external_ref => 'sc-ref-10', scope => '{"meters": ["chat.response"]}')$$);

---------------------------------------------------------------- who is served
-- sc_a: 100 promotional credits for images only, 20 paid credits for anything
SELECT wallet_grant('sc_a', 'sc', 100, category => 'promotional',
	scope => '{"meters": ["image.generate"]}') AS a_img \gset
SELECT wallet_grant('sc_a', 'sc', 20) AS a_any \gset
-- a chat debit cannot be approved on the strength of the image credit
SELECT approved, reason, amount, balance FROM wallet_authorize_debit('sc_a', 'chat.response', 30, 'sc-a-1');
SELECT asset, available FROM wallet_available('sc_a', 'chat.response');
SELECT asset, available FROM wallet_available('sc_a', 'image.generate');
SELECT asset, available FROM wallet_available('sc_a', NULL);
SELECT asset, amount, balance, would_approve FROM wallet_quote('sc_a', 'chat.response', 30);
SELECT asset, amount, balance, would_approve FROM wallet_quote('sc_a', 'chat.response', 20);
SELECT asset, amount, balance, would_approve FROM wallet_quote('sc_a', 'image.generate', 12);
-- chat draws only the unscoped grant; the result's balance is the whole balance
SELECT approved, amount, balance, event_id AS a_e1 FROM wallet_authorize_debit('sc_a', 'chat.response', 15, 'sc-a-2') \gset
SELECT :'approved', :'amount', :'balance';
SELECT grant_id = :a_any AS unscoped, amount FROM pg_temp.drawn(:a_e1);
-- an image draws the scoped grant first (same priority and expiry)
SELECT approved, amount, balance, event_id AS a_e2 FROM wallet_authorize_debit('sc_a', 'image.generate', 3, 'sc-a-3') \gset
SELECT :'approved', :'amount', :'balance';
SELECT grant_id = :a_img AS scoped, amount FROM pg_temp.drawn(:a_e2);
-- wallet_debit has no meter: only the unscoped grant serves it
SELECT approved, reason, balance FROM wallet_debit('sc_a', 'sc', 6, 'sc-a-4');
SELECT approved, amount, balance FROM wallet_debit('sc_a', 'sc', 5, 'sc-a-5');
-- a hold has no meter either
SELECT approved, reason, balance FROM wallet_hold('sc_a', 'sc', 1, 'sc-a-6');
-- an image debit larger than the image grant goes on into the unscoped one... which is empty
SELECT approved, reason, balance FROM wallet_authorize_debit('sc_a', 'image.generate', 8, 'sc-a-7');
SELECT approved, amount, balance FROM wallet_authorize_debit('sc_a', 'image.generate', 6, 'sc-a-8');
-- wallet_balances keeps its meaning: all value
SELECT asset, available, held, granted, overdraft FROM wallet_balances('sc_a');
SELECT grant_id = :a_img AS img, category, amount, remaining, reserved, expires_at, next_reset, scope
  FROM wallet_credits('sc_a');

---------------------------------------------------------------- order
-- sc_b: at equal priority and expiry a scoped grant goes before an unscoped
-- one, whatever the categories; priority and expiry still come first
SELECT wallet_grant('sc_b', 'sc', 10, category => 'promotional') AS b_promo \gset
SELECT wallet_grant('sc_b', 'sc', 10, category => 'paid', scope => '{"meters": ["llm.*"]}') AS b_llm \gset
SELECT wallet_grant('sc_b', 'sc', 10, priority => 50) AS b_first \gset
SELECT wallet_grant('sc_b', 'sc', 10, expires_at => now() + interval '1 day') AS b_soon \gset
SELECT CASE grant_id WHEN :b_promo THEN 'promo' WHEN :b_llm THEN 'llm' WHEN :b_first THEN 'priority 50'
	   WHEN :b_soon THEN 'expires' END AS grant, remaining, scope
  FROM wallet_credits('sc_b');
SELECT event_id AS b_e1 FROM wallet_authorize_debit('sc_b', 'llm.gpt4o', 35, 'sc-b-1') \gset
SELECT CASE grant_id WHEN :b_promo THEN 'promo' WHEN :b_llm THEN 'llm' WHEN :b_first THEN 'priority 50'
	   WHEN :b_soon THEN 'expires' END AS grant, amount
  FROM pg_temp.drawn(:b_e1);
-- a prefix ends at the dot: llm.* serves llm.gpt4o, not llm or llmx.a
SELECT wallet_grant('sc_c', 'sc', 10, scope => '{"meters": ["llm.*"]}') > 0 AS granted;
SELECT meter, (SELECT available FROM wallet_available('sc_c', meter)) FROM unnest(ARRAY['llm.gpt4o', 'llm', 'llmx.a']) meter;
SELECT approved, reason FROM wallet_authorize_debit('sc_c', 'llm', 1, 'sc-c-1');
SELECT approved, amount FROM wallet_authorize_debit('sc_c', 'llm.gpt4o', 1, 'sc-c-2');

---------------------------------------------------------------- dimensions
-- sc_d: prepaid credit of one team; values compare as text
SELECT wallet_grant('sc_d', 'sc', 50, scope => '{"dimensions": {"team": "research", "tier": 2}}') AS d_team \gset
SELECT dims, (SELECT available FROM wallet_available('sc_d', 'chat.response', dims::jsonb))
  FROM unnest(ARRAY['{"team": "research", "tier": "2"}', '{"team": "research", "tier": 2.0, "user": "x"}',
	'{"team": "research"}', '{"team": "ops", "tier": 2}', '{}']) dims;
SELECT approved, reason FROM wallet_authorize_debit('sc_d', 'chat.response', 5, 'sc-d-1', '{"team": "ops", "tier": 2}');
SELECT approved, amount, balance FROM wallet_authorize_debit('sc_d', 'chat.response', 5, 'sc-d-2', '{"team": "research", "tier": 2}');
-- wallet_debit with the team's dimensions is served (no meters in the scope)
SELECT approved, amount, balance FROM wallet_debit('sc_d', 'sc', 5, 'sc-d-3', '{"team": "research", "tier": "2"}');
SELECT approved, reason FROM wallet_debit('sc_d', 'sc', 5, 'sc-d-4');

---------------------------------------------------------------- batches
-- sc_e: wallet_ingest keeps the grants across the batch; each element sees its own
SELECT wallet_grant('sc_e', 'sc', 30, scope => '{"meters": ["image.generate"]}') > 0 AS granted;
SELECT wallet_grant('sc_e', 'sc', 5) > 0 AS granted;
SELECT idx, approved, reason, error, amount, balance FROM wallet_ingest('[
	{"customer": "sc_e", "meter": "chat.response", "quantity": 4, "idempotency_key": "sc-e-1"},
	{"customer": "sc_e", "meter": "image.generate", "quantity": 2, "idempotency_key": "sc-e-2"},
	{"customer": "sc_e", "meter": "chat.response", "quantity": 2, "idempotency_key": "sc-e-3"},
	{"customer": "sc_e", "meter": "chat.response", "quantity": 1, "idempotency_key": "sc-e-4"},
	{"customer": "sc_e", "meter": "image.generate", "quantity": 1, "idempotency_key": "sc-e-5"},
	{"customer": "sc_e", "meter": "image.generate", "quantity": 1, "idempotency_key": "sc-e-6"}
]');
SELECT remaining, scope FROM wallet_credits('sc_e');

---------------------------------------------------------------- holds and captures
-- sc_f: wallet_hold has no meter, so only the unscoped grant backs it (reserves on it)
SELECT wallet_grant('sc_f', 'sc', 40, scope => '{"meters": ["image.generate"]}') AS f_img \gset
SELECT wallet_grant('sc_f', 'sc', 10) AS f_any \gset
SELECT approved, reason FROM wallet_hold('sc_f', 'sc', 11, 'sc-f-1');
SELECT approved, amount, balance, hold_id AS f_h FROM wallet_hold('sc_f', 'sc', 10, 'sc-f-2') \gset
SELECT :'approved', :'amount', :'balance';
SELECT grant_id = :f_img AS img, remaining, reserved FROM wallet_credits('sc_f');
SELECT asset, available FROM wallet_available('sc_f', 'image.generate');
SELECT approved, amount, balance FROM wallet_release(:f_h);
-- wallet_authorize_hold of an image reserves the image credit first; its capture draws it
SELECT approved, amount, balance, hold_id AS f_h2 FROM wallet_authorize_hold('sc_f', 'image.generate', 3, 'sc-f-3') \gset
SELECT :'approved', :'amount', :'balance';
SELECT grant_id = :f_img AS img, remaining, reserved FROM wallet_credits('sc_f');
-- a chat hold cannot reserve the image credit
SELECT approved, reason FROM wallet_authorize_hold('sc_f', 'chat.response', 11, 'sc-f-4');
SELECT approved, amount, balance, event_id AS f_e FROM wallet_capture(:f_h2, 'image.generate', 3) \gset
SELECT :'approved', :'amount', :'balance';
SELECT grant_id = :f_img AS scoped, amount FROM pg_temp.drawn(:f_e);

-- capture lines: the part above the hold draws only grants that serve each line
SELECT count(wallet_create(c)) FROM unnest(ARRAY['sc_i', 'sc_j']) c;
SELECT wallet_grant(c, 'sc', 20, scope => '{"meters": ["image.generate"]}') > 0 AS granted,
	   wallet_grant(c, 'sc', 5) > 0 AS granted FROM unnest(ARRAY['sc_i', 'sc_j']) c;
SELECT hold_id AS i_h FROM wallet_hold('sc_i', 'sc', 5, 'sc-i-1') \gset
SELECT approved, reason, amount, balance, event_id IS NOT NULL AS event
  FROM wallet_capture_lines(:i_h, '[{"meter": "image.generate", "quantity": 1}, {"meter": "image.generate", "quantity": 1}]');
SELECT CASE WHEN g.scope IS NULL THEN 'unscoped' ELSE 'image' END AS grant, l.amount
  FROM wallet.ledger l JOIN wallet.grant_block g ON g.id = l.grant_id
 WHERE l.customer = 'sc_i' AND l.kind = 'debit' ORDER BY l.event_id, l.id;
-- the chat line finds nothing: the image credit does not serve it, the unscoped one is the hold's
SELECT hold_id AS j_h FROM wallet_hold('sc_j', 'sc', 5, 'sc-j-1') \gset
SELECT approved, reason, amount, balance
  FROM wallet_capture_lines(:j_h, '[{"meter": "image.generate", "quantity": 1}, {"meter": "chat.response", "quantity": 7}]');
SELECT asset, available FROM wallet_available('sc_j', 'chat.response');

-- a reservation serves only the lines its grant serves: an image hold's image credit does not
-- pay a chat capture, nor a research-only credit a capture for sales; what no reservation
-- serves is checked as the part above the hold (here nothing else pays it: declined)
SELECT count(wallet_create(c)) FROM unnest(ARRAY['sc_k', 'sc_l', 'sc_m']) c;
SELECT wallet_grant('sc_k', 'sc', 100, scope => '{"meters": ["image.generate"]}') > 0 AS granted;
SELECT hold_id AS k_h FROM wallet_authorize_hold('sc_k', 'image.generate', 5, 'sc-k-1') \gset
SELECT approved, reason, amount FROM wallet_capture(:k_h, 'chat.response', 50);
SELECT kind, amount FROM wallet.ledger WHERE customer = 'sc_k' AND kind = 'debit';
SELECT approved, amount, balance FROM wallet_capture(:k_h, 'image.generate', 5);
SELECT wallet_grant('sc_l', 'sc', 100, scope => '{"dimensions": {"team": "research"}}') > 0 AS granted;
SELECT hold_id AS l_h FROM wallet_hold('sc_l', 'sc', 40, 'sc-l-1', dimensions => '{"team": "research"}') \gset
SELECT approved, reason FROM wallet_capture(:l_h, 'chat.response', 40, '{"team": "sales"}');
SELECT approved, amount, balance FROM wallet_capture(:l_h, 'chat.response', 40, '{"team": "research"}');
-- each line draws the grants that serve it, as two debits would: the image credit the image
-- line, the unscoped credit the chat line
SELECT wallet_grant('sc_m', 'sc', 60, scope => '{"meters": ["image.generate"]}') > 0 AS granted,
	   wallet_grant('sc_m', 'sc', 6) > 0 AS granted;
SELECT hold_id AS m_h FROM wallet_hold('sc_m', 'sc', 1, 'sc-m-1') \gset
SELECT approved, reason, amount, balance
  FROM wallet_capture_lines(:m_h, '[{"meter": "image.generate", "quantity": 6}, {"meter": "chat.response", "quantity": 5}]');
SELECT CASE WHEN g.scope IS NULL THEN 'unscoped' ELSE 'image' END AS grant, e.meter, l.amount
  FROM wallet.ledger l JOIN wallet.grant_block g ON g.id = l.grant_id JOIN wallet.event e ON e.id = l.event_id
 WHERE l.customer = 'sc_m' AND l.kind = 'debit' ORDER BY l.event_id, l.id;
SELECT problem, detail FROM wallet_verify();
-- under a spend cap, the room an image hold keeps and a chat capture does not take is given up:
-- 60 of chat above a hold of 100 is 60 of spend, as a debit after a release would be
SELECT wallet_create('sc_n') > 0 AS created;
SELECT wallet_grant('sc_n', 'sc', 100, scope => '{"meters": ["image.generate"]}') > 0 AS granted,
	   wallet_grant('sc_n', 'sc', 1000) > 0 AS granted;
SELECT wallet_set_cap('sc_n', 'sc', 150, 'month');
SELECT hold_id AS n_h FROM wallet_authorize_hold('sc_n', 'image.generate', 10, 'sc-n-1') \gset
SELECT approved, reason, amount FROM wallet_capture(:n_h, 'chat.response', 60);
SELECT cap, spent FROM wallet_caps('sc_n');

---------------------------------------------------------------- refunds, voids, overdraft
-- refunds go back to the grant drawn
SELECT amount, balance FROM wallet_refund(:f_e, 10);
SELECT grant_id = :f_img AS scoped, remaining FROM wallet_credits('sc_f');
-- a voided scoped grant's refund goes to a new grant of the same scope
SELECT wallet_void_grant(:f_img) AS voided;
SELECT amount, balance FROM wallet_refund(:f_e, 20);
SELECT grant_id = :f_img AS same, remaining, scope FROM wallet_credits('sc_f');
-- sc_g: a scoped grant does not repay overdraft that an unscoped debit ran up
SELECT wallet_set_limit('sc_g', 'sc', overdraft => 10);
SELECT approved, amount, balance FROM wallet_authorize_debit('sc_g', 'chat.response', 4, 'sc-g-1');
SELECT wallet_grant('sc_g', 'sc', 30, scope => '{"meters": ["image.generate"]}') > 0 AS granted;
SELECT asset, available, granted, overdraft FROM wallet_balances('sc_g');
SELECT meter, (SELECT available FROM wallet_available('sc_g', meter)) FROM unnest(ARRAY['chat.response', 'image.generate']) meter;
-- an unscoped one does
SELECT wallet_grant('sc_g', 'sc', 5) > 0 AS granted;
SELECT asset, available, granted, overdraft FROM wallet_balances('sc_g');

---------------------------------------------------------------- recurrence
-- a monthly allowance of 30 credits for images, started 40 days ago: reset once, scope kept
SELECT wallet_grant('sc_h', 'sc', 30, category => 'bundled', effective_at => now() - interval '40 days',
	recurrence => interval '30 days', scope => '{"meters": ["image.generate"]}') AS h_rec \gset
SELECT approved, amount FROM wallet_authorize_debit('sc_h', 'image.generate', 1, 'sc-h-1');
SELECT remaining, next_reset = (SELECT effective_at + interval '60 days' FROM wallet.grant_block WHERE id = :h_rec) AS next_reset,
	   scope FROM wallet_credits('sc_h') WHERE grant_id = :h_rec;

---------------------------------------------------------------- the books
-- finance sees the scope of each grant; revenue and deferred revenue are those of any grant
SELECT category, amount, remaining, scope FROM wallet.grants WHERE customer = 'sc_a' ORDER BY id;
SELECT asset, amount FROM wallet.deferred_revenue WHERE customer = 'sc_a';
SELECT problem, detail FROM wallet_verify();
SELECT customer, available, granted FROM wallet.balances WHERE customer LIKE 'sc\_%' ORDER BY customer;

-- a scoped recurring grant's reset repays no overdraft, as a new scoped grant does not:
-- wallet_debit has no meter, so it drew overdraft; the image credit refills at its boundary
SELECT wallet_create('sc_rr') > 0 AS created;
SELECT wallet_set_limit('sc_rr', 'sc', overdraft => 50);
SELECT wallet_grant('sc_rr', 'sc', 10, recurrence => '1 second', effective_at => now(),
	scope => '{"meters": ["image.*"]}') > 0 AS granted;
SELECT approved, amount, balance FROM wallet_debit('sc_rr', 'sc', 30, 'rr1');
SELECT approved, amount FROM wallet_authorize_debit('sc_rr', 'image.generate', 1, 'rr2');
SELECT pg_sleep(1.2);
SELECT available, granted, overdraft FROM wallet_balances('sc_rr');
SELECT kind, amount FROM wallet.ledger WHERE customer = 'sc_rr' AND kind IN ('reset', 'repay') ORDER BY id;
SELECT problem, detail FROM wallet_verify();
