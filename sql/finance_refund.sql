-- Refunds and revenue attribution (docs/finance.md): revenue from repaid
-- overdraft belongs to no event, and so does the refund that reverses it.  An
-- event debited on overdraft carries no revenue; a paid grant that repays the
-- overdraft later recognizes it, for no event; refunding the event then puts
-- that value on a new grant like the one that repaid (docs/lifecycle.md), and
-- the revenue this reverses is the repayment's, not the event's.  The ledger
-- line stays the event's refund line (wallet.line, wallet.ledger);
-- wallet.revenue_lines attributes its value to no event, so an event's lines
-- there always add up to wallet.events.revenue.
\set VERBOSITY sqlstate
\pset null '-'
SET client_min_messages = warning;
-- a database of its own (wallet_verify and the finance views look at every wallet)
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('fr', 0, 0.01);

-- the finance identities checked after each step: every event's lines in
-- revenue_lines add up to its revenue, the refund rows to what its refund
-- lines reversed, recognized revenue = events' revenue + revenue of no event,
-- and margin_by_dimension adds up to the whole
-- (a function: it outlives the DROP EXTENSION of part 3)
CREATE FUNCTION pg_temp.identities()
RETURNS TABLE (events_off bigint, refunds_off bigint, total_ok boolean, dimension_ok boolean, problems bigint)
LANGUAGE sql AS $$
SELECT (SELECT count(*) FROM wallet.events e
		  LEFT JOIN (SELECT event_id, sum(recognized) AS rev FROM wallet.revenue_lines
					  WHERE event_id IS NOT NULL GROUP BY 1) x ON x.event_id = e.id
		 WHERE e.revenue <> coalesce(x.rev, 0)) AS events_off,
	   (SELECT count(*) FROM (SELECT event_id, sum(revenue) AS rv FROM wallet.refund GROUP BY 1) f
		  LEFT JOIN (SELECT event_id, -sum(recognized) AS rl FROM wallet.revenue_lines
					  WHERE kind = 'refund' AND event_id IS NOT NULL GROUP BY 1) l USING (event_id)
		 WHERE f.rv <> coalesce(l.rl, 0)) AS refunds_off,
	   (SELECT coalesce(sum(recognized), 0) FROM wallet.revenue_lines)
	   = (SELECT coalesce(sum(revenue), 0) FROM wallet.events)
		 + (SELECT coalesce(sum(recognized), 0) FROM wallet.revenue_lines WHERE event_id IS NULL) AS total_ok,
	   (SELECT sum(revenue) FROM wallet.margin_by_dimension('model'))
	   = (SELECT sum(recognized) FROM wallet.revenue_lines) AS dimension_ok,
	   (SELECT count(*) FROM wallet_verify()) AS problems
$$;

-- 1. The whole event was on overdraft; a paid grant repaid it; the event is refunded.
SELECT wallet_create('od1') > 0 AS created;
SELECT wallet_set_limit('od1', 'fr', overdraft => 100);
SELECT event_id AS e1 FROM wallet_debit('od1', 'fr', 10, 'e1', '{"model":"gpt"}', 0.05) \gset
SELECT wallet_grant('od1', 'fr', 100, unit_revenue => 0.02) AS g1 \gset
SELECT approved, amount, balance FROM wallet_refund(:e1);
SELECT amount, refunded, revenue FROM wallet.events WHERE id = :e1;
SELECT amount, revenue FROM wallet.refund WHERE event_id = :e1;
-- the refund line is the event's in the ledger ...
SELECT kind, grant_id = :g1 AS repaid_by_g1, event_id = :e1 AS of_e1, amount
  FROM wallet.ledger WHERE customer = 'od1' ORDER BY id;
-- ... its value reverses the repayment (0.20 recognized for no event): no event's
SELECT kind, grant_id = :g1 AS g1, category, event_id = :e1 AS of_e1, amount, recognized, deferred
  FROM wallet.revenue_lines WHERE customer = 'od1' ORDER BY id;
SELECT value, revenue, cost, margin, events FROM wallet.margin_by_dimension('model');
SELECT customer, revenue, cost, margin, events FROM wallet.customer_margin WHERE customer = 'od1';
SELECT * FROM pg_temp.identities();

-- 2. A debit partly from a paid grant, partly on overdraft; a grant repays part
-- of the overdraft; the event is refunded in parts, and its paid grant is
-- voided in between (that part then goes to a new grant like it, which stays
-- the event's).
SELECT wallet_create('od2') > 0 AS created;
SELECT wallet_grant('od2', 'fr', 5, unit_revenue => 0.01) AS a2 \gset
SELECT wallet_set_limit('od2', 'fr', overdraft => 100);
SELECT event_id AS e2 FROM wallet_debit('od2', 'fr', 15, 'e2', '{"model":"llama"}', 0.03) \gset
SELECT wallet_grant('od2', 'fr', 4, unit_revenue => 0.02) AS b2 \gset
SELECT overdraft FROM wallet.balances WHERE customer = 'od2';
-- 7 of the overdraft slice (newest first): 6 pay the overdraft back, 1 goes to a grant like b2
SELECT approved, amount FROM wallet_refund(:e2, 7);
SELECT wallet_void_grant(:a2, 'chargeback');
-- the other 3 of the overdraft slice go to a grant like b2, the 5 drawn from a2 to one like a2
SELECT approved, amount FROM wallet_refund(:e2, 8);
SELECT amount, refunded, revenue FROM wallet.events WHERE id = :e2;
SELECT amount, revenue FROM wallet.refund WHERE event_id = :e2 ORDER BY id;
SELECT kind, g.unit_revenue AS grant_rate, l.event_id = :e2 AS of_e2, l.amount
  FROM wallet.ledger l LEFT JOIN wallet.grant_block g ON g.id = l.grant_id
 WHERE l.customer = 'od2' ORDER BY l.id;
SELECT kind, grant_id = :a2 AS a2, (SELECT unit_revenue FROM wallet.grant_block WHERE id = r.grant_id) AS grant_rate,
	   event_id = :e2 AS of_e2, amount, recognized
  FROM wallet.revenue_lines r WHERE customer = 'od2' AND kind IN ('debit', 'refund') ORDER BY id;
SELECT value, revenue, cost, margin, events FROM wallet.margin_by_dimension('model');
SELECT * FROM pg_temp.identities();

-- 3. The grant that repaid is the one the event drew from: a recurring paid grant
-- whose reset repays the overdraft.  Both new grants the refund makes are
-- "like" it, with the same metadata: the first (the overdraft slice, newest)
-- reverses the repayment, the second (what the grant cannot take back) the
-- event's own revenue.
SELECT wallet_create('od4') > 0 AS created;
-- (its reset comes 6 s after the grant: the debit must come before it, even on
-- a slow machine)
SELECT wallet_grant('od4', 'fr', 10, unit_revenue => 0.01, recurrence => interval '1 day',
					effective_at => now() - interval '1 day' + interval '6 seconds') AS r4 \gset
SELECT wallet_set_limit('od4', 'fr', overdraft => 50);
SELECT event_id AS e4 FROM wallet_debit('od4', 'fr', 15, 'e4', '{"model":"mistral"}', 0.01) \gset
SELECT pg_sleep(greatest(0, extract(epoch FROM
	(SELECT effective_at + recurrence FROM wallet.grant_block WHERE id = :r4) - clock_timestamp()))::float8 + 0.1);
-- the refund writes the reset first: it repays the 5 of overdraft
SELECT approved, amount FROM wallet_refund(:e4);
SELECT amount, refunded, revenue FROM wallet.events WHERE id = :e4;
SELECT amount, revenue FROM wallet.refund WHERE event_id = :e4;
SELECT kind, grant_id = :r4 AS r4, g.metadata ->> 'refund_of_grant' = :'r4' AS like_r4,
	   r.event_id = :e4 AS of_e4, r.amount, r.recognized
  FROM wallet.revenue_lines r LEFT JOIN wallet.grant_block g ON g.id = r.grant_id
 WHERE r.customer = 'od4' ORDER BY r.id;
SELECT value, revenue, cost, margin, events FROM wallet.margin_by_dimension('model');
SELECT * FROM pg_temp.identities();

-- 4. The same history made under 1.0 reads by the rule once upgraded.
DROP EXTENSION wallet CASCADE;
CREATE EXTENSION wallet VERSION '1.0';
SELECT wallet_create_asset('fr', 0, 0.01);
SELECT wallet_create('od3') > 0 AS created;
SELECT wallet_set_limit('od3', 'fr', overdraft => 100);
SELECT event_id AS e3 FROM wallet_debit('od3', 'fr', 10, 'e3', '{"model":"gpt"}', 0.05) \gset
SELECT wallet_grant('od3', 'fr', 100, unit_revenue => 0.02) AS g3 \gset
SELECT approved, amount FROM wallet_refund(:e3);
ALTER EXTENSION wallet UPDATE;
SELECT kind, grant_id = :g3 AS g3, event_id = :e3 AS of_e3, amount, recognized
  FROM wallet.revenue_lines WHERE customer = 'od3' ORDER BY id;
SELECT event_id = :e3 AS of_e3, kind, amount FROM wallet.ledger WHERE customer = 'od3' AND kind = 'refund';
SELECT value, revenue, cost, margin, events FROM wallet.margin_by_dimension('model');
SELECT * FROM pg_temp.identities();

DROP EXTENSION wallet CASCADE;
CREATE EXTENSION wallet;
