-- Every number a 1.0 database holds, through the 1.0 contract's columns only,
-- so that the same query reads a 1.0 and a 1.1 database.  Sorted, one line each.
\pset footer off
SELECT 'balance', customer, asset, available, held, granted, overdraft FROM wallet.balances ORDER BY 2, 3;
SELECT 'grant', id, customer, asset, category, priority, amount, remaining, unit_revenue,
	effective_at, expires_at, voided_at, recurrence, external_ref FROM wallet.grants ORDER BY 2;
SELECT 'event', id, customer, meter, quantity, dimensions, occurred_at, recorded_at, idempotency_key,
	asset, amount, price_id, cost, revenue, hold_id, refunded FROM wallet.events ORDER BY 2;
SELECT 'ledger', id, at, customer, asset, grant_id, event_id, hold_id, kind, amount FROM wallet.ledger ORDER BY 2;
SELECT 'hold', id, status, amount, expires_at FROM wallet.hold ORDER BY 2;
SELECT 'revenue', day, asset, recognized, breakage, promotional, bundled FROM wallet.revenue ORDER BY 2, 3;
SELECT 'deferred', customer, asset, amount FROM wallet.deferred_revenue ORDER BY 2, 3;
SELECT 'margin', customer, day, revenue, cost, margin FROM wallet.customer_margin ORDER BY 2, 3;
SELECT 'caps', c.* FROM unnest(ARRAY['acme', 'globex']) cu, LATERAL wallet_caps(cu) c ORDER BY 2, 3, 4;
SELECT 'outbox', id, kind, customer, asset, acked_at FROM wallet.outbox ORDER BY 2;
SELECT 'statement', s.asset, CASE WHEN s.kind = 'closing' THEN NULL ELSE s.at END, s.kind, s.description, s.amount,
	s.balance, s.line_id, s.grant_id, s.event_id, s.hold_id FROM wallet_statement('acme') s;
SELECT 'verify', * FROM wallet_verify();
SELECT 'status', customer, status FROM wallet.wallet ORDER BY 2;
