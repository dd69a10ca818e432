-- wallet_ingest looks a key up among holds only for a wallet that had one
-- (wallet.holds_made, read with the wallet before the batch's locks), as the
-- single call does: a hold's key is WL004 for an event of the batch however
-- the hold came (before the batch, in the same transaction, after the
-- backend kept the wallet), and a debit's own key replays.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('tk', 0);
SELECT wallet_set_price('tk.call', 'tk', '{"model": "per_unit", "unit_price": "1"}',
	now() - interval '1 day');
SELECT wallet_create('tka'), wallet_create('tkb'), wallet_create('tkc');
SELECT wallet_grant(c, 'tk', 100) > 0 AS granted FROM unnest(ARRAY['tka', 'tkb', 'tkc']) c;
-- tka has a hold before the batch; tkb and tkc none
SELECT approved FROM wallet_hold('tka', 'tk', 5, 'tk-h1');
SELECT customer, holds_made FROM wallet.wallet WHERE customer LIKE 'tk_' ORDER BY customer;
SELECT idx, approved, replayed, error, amount, balance FROM wallet_ingest('[
 {"customer": "tka", "meter": "tk.call", "quantity": 1, "idempotency_key": "tk-h1"},
 {"customer": "tka", "meter": "tk.call", "quantity": 1, "idempotency_key": "tk-e1"},
 {"customer": "tkb", "meter": "tk.call", "quantity": 1, "idempotency_key": "tk-h1"},
 {"customer": "tkb", "meter": "tk.call", "quantity": 1, "idempotency_key": "tk-e1"}
]');
-- the backend keeps tkb's wallet (no holds); a hold placed then, in the same transaction
BEGIN;
SELECT approved FROM wallet_hold('tkb', 'tk', 5, 'tk-h2');
SELECT idx, approved, replayed, error, amount, balance FROM wallet_ingest('[
 {"customer": "tkb", "meter": "tk.call", "quantity": 1, "idempotency_key": "tk-h2"},
 {"customer": "tkb", "meter": "tk.call", "quantity": 1, "idempotency_key": "tk-e1"},
 {"customer": "tkc", "meter": "tk.call", "quantity": 1, "idempotency_key": "tk-e2"}
]');
COMMIT;
-- and in a transaction of its own, then a batch in the next one
SELECT approved FROM wallet_hold('tkc', 'tk', 5, 'tk-h3');
SELECT idx, approved, replayed, error, amount, balance FROM wallet_ingest('[
 {"customer": "tkc", "meter": "tk.call", "quantity": 1, "idempotency_key": "tk-e2"},
 {"customer": "tkc", "meter": "tk.call", "quantity": 1, "idempotency_key": "tk-h3"},
 {"customer": "tkc", "meter": "tk.call", "quantity": 2, "idempotency_key": "tk-e3"}
]');
-- the single call agrees
SELECT approved FROM wallet_authorize_debit('tkc', 'tk.call', 1, 'tk-h3');
SELECT customer, holds_made FROM wallet.wallet WHERE customer LIKE 'tk_' ORDER BY customer;
SELECT * FROM wallet_verify();
