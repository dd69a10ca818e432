-- wallet.holds_made: set by a wallet's first hold, so that a debit looks its
-- key up among holds only on a wallet that had one.  Only the first hold
-- changes wallet.wallet: a change there (even an UPDATE of no row) makes
-- every backend drop its copies of the wallets.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('hm', 0);
SELECT wallet_create('hma');
SELECT wallet_grant('hma', 'hm', 100) > 0 AS granted;
SELECT holds_made FROM wallet.wallet WHERE customer = 'hma';
SELECT approved, amount FROM wallet_debit('hma', 'hm', 1, 'd1');
SET track_functions = 'all';
BEGIN;
SELECT approved, amount FROM wallet_hold('hma', 'hm', 5, 'h1');
SELECT calls AS cache_drops FROM pg_stat_xact_user_functions WHERE funcname = '_relation_changed';
SELECT approved, amount FROM wallet_hold('hma', 'hm', 5, 'h2');
SELECT calls AS cache_drops FROM pg_stat_xact_user_functions WHERE funcname = '_relation_changed';
COMMIT;
RESET track_functions;
SELECT holds_made FROM wallet.wallet WHERE customer = 'hma';
-- a hold's key is WL004 for a debit; the debit's own key replays; a new one debits
SELECT approved, amount FROM wallet_debit('hma', 'hm', 1, 'h1');
SELECT approved, replayed, amount FROM wallet_debit('hma', 'hm', 1, 'd1');
SELECT approved, amount, balance FROM wallet_debit('hma', 'hm', 1, 'd2');
SELECT * FROM wallet_verify();
