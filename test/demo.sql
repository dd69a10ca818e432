-- make demo: a customer's credits from top-up to audit, through the public API only.
-- Run by test/demo.sh (psql, database "demo", cwd = repo root).
\set ON_ERROR_STOP 1
\set QUIET 1
\pset null '-'
SET client_min_messages = warning;

\echo
\echo '== 1. Install, define an asset, open a wallet'
\echo '   credits: whole units (scale 0), each worth 0.01 USD'
CREATE EXTENSION wallet;
SELECT wallet_create_asset('credits', 0, 0.01, 'AI credits') \g /dev/null
SELECT wallet_create('acme') AS wallet_id;
SELECT * FROM wallet_balances('acme');

\echo
\echo '== 2. Top up: 480 paid credits (payment pay_001) and 100 promotional ones for 30 days'
SELECT wallet_grant('acme', 'credits', 480, external_ref => 'pay_001') AS paid_grant;
SELECT wallet_grant('acme', 'credits', 100, category => 'promotional',
                    expires_at => now() + interval '30 days') AS promo_grant;
\echo '   the payment webhook fires twice: same grant, no double credit'
SELECT wallet_grant('acme', 'credits', 480, external_ref => 'pay_001') AS paid_grant;
SELECT * FROM wallet_balances('acme');

\echo
\echo '== 3. A price: 12 credits per chat response'
SELECT wallet_set_price('chat.response', 'credits',
                        '{"model": "per_unit", "unit_price": "12"}') AS price_id;
\echo '   what one response would cost acme right now'
SELECT * FROM wallet_quote('acme', 'chat.response', 1);

\echo
\echo '== 4. Three responses served: each authorized and debited in one call'
SELECT approved, replayed, reason, amount, balance
  FROM wallet_authorize_debit('acme', 'chat.response', 1, 'req-1');
SELECT approved, replayed, reason, amount, balance
  FROM wallet_authorize_debit('acme', 'chat.response', 1, 'req-2');
SELECT approved, replayed, reason, amount, balance
  FROM wallet_authorize_debit('acme', 'chat.response', 1, 'req-3');
\echo '   the expiring promotional credits are drawn first; the paid grant is untouched'
SELECT id, category, amount, remaining, expires_at IS NOT NULL AS expires
  FROM wallet.grants WHERE customer = 'acme' ORDER BY id;
SELECT * FROM wallet_balances('acme');

\echo
\echo '== 5. The client times out and retries req-1: the stored result is replayed'
SELECT approved, replayed, reason, amount, balance
  FROM wallet_authorize_debit('acme', 'chat.response', 1, 'req-1');
\echo '   balance unchanged'
SELECT * FROM wallet_balances('acme');

\echo
\echo '== 6. A race is resolved: solo has 12 credits, two requests arrive at once'
SELECT wallet_create('solo') AS wallet_id;
SELECT wallet_grant('solo', 'credits', 12) AS grant_id;
-- test/demo.sh race runs the two sessions (\copy fails the demo if they do)
CREATE TEMP TABLE race (outcome text);
\copy race FROM PROGRAM 'bash test/demo.sh race'
SELECT outcome FROM race ORDER BY outcome;
\echo '   exactly one was approved; the wallet is empty, not negative'
SELECT * FROM wallet_balances('solo');

\echo
\echo '== 7. A long job: hold 50 credits first, capture what it used'
SELECT approved, hold_id, amount, balance
  FROM wallet_hold('acme', 'credits', 50, 'job-7') \gset hold_
\echo '   hold' :hold_hold_id 'approved:' :hold_approved ' held:' :hold_amount ' available:' :hold_balance
SELECT * FROM wallet_balances('acme');
\echo '   the job produced 2 responses: 24 credits captured, the other 26 released'
SELECT approved, hold_id, amount, balance
  FROM wallet_capture(:hold_hold_id, 'chat.response', 2);
SELECT * FROM wallet_balances('acme');

\echo
\echo '== 8. A debit larger than the promotional remainder is split across grants'
SELECT approved, replayed, reason, amount, balance
  FROM wallet_authorize_debit('acme', 'chat.response', 4, 'req-4');
SELECT id, category, amount, remaining
  FROM wallet.grants WHERE customer = 'acme' ORDER BY id;
SELECT * FROM wallet_balances('acme');

\echo
\echo '== 9. Insufficient funds: a decline is a result, not an error'
SELECT wallet_create('tiny') AS wallet_id;
SELECT wallet_grant('tiny', 'credits', 5) AS grant_id;
SELECT approved, replayed, reason, amount, balance
  FROM wallet_authorize_debit('tiny', 'chat.response', 1, 'req-1');
SELECT * FROM wallet_balances('tiny');

\echo
\echo '== 10. Audit: acme''s ledger explains every movement'
SELECT id, kind, asset, grant_id, event_id, hold_id, amount
  FROM wallet.ledger WHERE customer = 'acme' ORDER BY at, id;
\echo '   ledger total (without holds and releases) = available + held'
SELECT l.asset,
       sum(l.amount) FILTER (WHERE l.kind NOT IN ('hold', 'release')) AS ledger_total,
       b.available + b.held AS available_plus_held
  FROM wallet.ledger l JOIN wallet_balances('acme') b USING (asset)
 WHERE l.customer = 'acme'
 GROUP BY l.asset, b.available, b.held;
\echo '   every invariant checked from the ledger up: no rows means consistent'
SELECT * FROM wallet_verify();
