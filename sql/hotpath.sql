-- The debit hot path end to end: what each call writes (event, grant rows,
-- ledger lines, balance row), replays, declines, overdraft, resets, captures.
-- Pins the behaviour the performance work must keep.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
-- every suite starts from a fresh extension: ids and data do not leak between files
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;
-- (\c after an error or a rollback: a new session.  Until the asset cache
-- keeps its entries across an abort, a backend's price cache points into
-- freed memory after one.)
SELECT wallet_create_asset('cr', 0, 0.01) \g /dev/null
SELECT wallet_create_asset('usd', 6, 1) \g /dev/null
SELECT wallet_set_price('call', 'cr', '{"model": "per_unit", "unit_price": "3"}',
						now() - interval '1 hour') \g /dev/null
SELECT wallet_set_price('tok', 'usd', '{"model": "per_unit", "unit_price": "0.002", "per": 1000}',
						now() - interval '1 hour') \g /dev/null
SELECT wallet_create('alice') > 0 AS created;

-- two grants: the expiring promotional one is drawn first
SELECT wallet_grant('alice', 'cr', 10, category => 'promotional',
					expires_at => now() + interval '1 day') AS g_promo \gset
SELECT wallet_grant('alice', 'cr', 100) AS g_paid \gset

-- 1 call = 3 credits, from the promotional grant
SELECT approved, replayed, reason, event_id IS NOT NULL AS has_event, hold_id, asset, amount, balance
  FROM wallet_authorize_debit('alice', 'call', 1, 'k1');
-- 4 calls = 12 credits: 7 left on the promotional grant, 5 from the paid one
SELECT approved, replayed, reason, asset, amount, balance
  FROM wallet_authorize_debit('alice', 'call', 4, 'k2', '{"user": "u1"}', cost => 0.05);
SELECT g.id = :g_promo AS promo, g.remaining FROM wallet.grant_block g
 WHERE g.wallet_id = (SELECT id FROM wallet.wallet WHERE customer = 'alice') ORDER BY g.id;
SELECT e.idempotency_key, e.meter, e.quantity, e.dimensions, e.asset, e.amount, e.cost,
	   e.revenue, e.balance_after, e.hold_id, e.refunded, e.price_id IS NOT NULL AS priced,
	   e.occurred_at = e.recorded_at AS at_now
  FROM wallet.event e ORDER BY e.id;
SELECT l.kind, l.grant_id = :g_promo AS promo, l.event_id IS NOT NULL AS has_event, l.amount
  FROM wallet.line l WHERE l.kind = 'debit' ORDER BY l.id;
-- where the lines live: k1 drew one grant, so its line is carried on the event
-- row and nothing is stored; k2 drew two, so both its lines are stored
SELECT e.idempotency_key, e.line_id IS NOT NULL AS carried, e.line_grant_id = :g_promo AS promo,
	   (SELECT count(*) FROM wallet.line_stored s WHERE s.event_id = e.id) AS stored
  FROM wallet.event e ORDER BY e.id;
SELECT wallet_balance('alice', 'cr');

-- replay: the stored result, nothing written
SELECT approved, replayed, reason, amount, balance,
	   event_id = (SELECT id FROM wallet.event WHERE idempotency_key = 'k2') AS same_event
  FROM wallet_authorize_debit('alice', 'call', 4, 'k2', '{"user": "u1"}', cost => 0.05);
SELECT count(*) AS events, (SELECT count(*) FROM wallet.line) AS lines FROM wallet.event;
-- the same key for a different request
SELECT * FROM wallet_authorize_debit('alice', 'call', 5, 'k2', '{"user": "u1"}');
SELECT * FROM wallet_authorize_debit('alice', 'call', 4, 'k2', '{"user": "u2"}');
SELECT * FROM wallet_authorize_debit('alice', 'call', 4, 'k2');
SELECT * FROM wallet_debit('alice', 'cr', 12, 'k2', '{"user": "u1"}');
-- wallet_debit replays by asset and amount
SELECT approved, replayed, amount, balance FROM wallet_debit('alice', 'cr', 2, 'd1');
SELECT approved, replayed, amount, balance FROM wallet_debit('alice', 'cr', 2, 'd1');
SELECT * FROM wallet_debit('alice', 'cr', 3, 'd1');
\c
SET client_min_messages = warning;
-- a hold's key is not a debit's
SELECT approved, amount, balance FROM wallet_hold('alice', 'cr', 5, 'h1');
SELECT * FROM wallet_authorize_debit('alice', 'call', 1, 'h1');
\c
SET client_min_messages = warning;
SELECT * FROM wallet_hold('alice', 'cr', 5, 'k1');
\c
SET client_min_messages = warning;

-- a decline is a result; nothing is stored under the key
SELECT approved, replayed, reason, event_id, amount, balance
  FROM wallet_authorize_debit('alice', 'call', 1000, 'big');
SELECT kind, available, detail FROM wallet.outbox ORDER BY id;
SELECT count(*) FROM wallet.event WHERE idempotency_key = 'big';

-- capture: prices the usage, draws it, releases the hold
SELECT approved, amount, balance, event_id IS NOT NULL AS has_event
  FROM wallet_capture((SELECT id FROM wallet.hold WHERE idempotency_key = 'h1'), 'call', 1);
SELECT status, event_id IS NOT NULL AS has_event FROM wallet.hold;
SELECT wallet_balance('alice', 'cr');

-- overdraft: what the grants cannot cover, up to the limit
SELECT wallet_create('bob') > 0 AS created;
SELECT wallet_grant('bob', 'cr', 5) AS g_bob \gset
SELECT wallet_set_limit('bob', 'cr', overdraft => 10);
SELECT approved, reason, amount, balance FROM wallet_authorize_debit('bob', 'call', 3, 'b1');
SELECT approved, reason, amount, balance FROM wallet_authorize_debit('bob', 'call', 2, 'b2');
SELECT overdraft FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id WHERE w.customer = 'bob';
SELECT l.kind, l.grant_id IS NULL AS overdraft_side, l.amount FROM wallet.line l
 WHERE l.wallet_id = (SELECT id FROM wallet.wallet WHERE customer = 'bob') ORDER BY l.id;
-- b1 drew the grant and overdraft (two stored lines); b2 overdraft alone (its
-- line carried, without a grant)
SELECT e.idempotency_key, e.line_id IS NOT NULL AS carried, e.line_grant_id IS NULL AS no_grant,
	   (SELECT count(*) FROM wallet.line_stored s WHERE s.event_id = e.id) AS stored
  FROM wallet.event e WHERE e.idempotency_key IN ('b1', 'b2') ORDER BY e.id;
SELECT * FROM wallet_balances('bob');

-- status: frozen and closed wallets decline
SELECT wallet_set_status('bob', 'frozen');
SELECT approved, reason, amount, balance FROM wallet_authorize_debit('bob', 'call', 1, 'b3');
SELECT wallet_set_status('bob', 'active');
-- a status set in the same transaction counts at once, and not after a rollback
SELECT wallet_grant('bob', 'cr', 20) IS NOT NULL AS granted;
BEGIN;
SELECT approved, reason, amount, balance FROM wallet_authorize_debit('bob', 'call', 1, 'b4');
SELECT wallet_set_status('bob', 'closed');
SELECT approved, reason, amount, balance FROM wallet_authorize_debit('bob', 'call', 1, 'b5');
ROLLBACK;
SELECT approved, reason, amount, balance FROM wallet_authorize_debit('bob', 'call', 1, 'b5');

-- no wallet; a wallet without a balance row in the asset gets one
SELECT * FROM wallet_authorize_debit('nobody', 'call', 1, 'x');
\c
SET client_min_messages = warning;
SELECT wallet_create('carol') > 0 AS created;
SELECT approved, reason, amount, balance FROM wallet_authorize_debit('carol', 'tok', 1500, 'c1');
SELECT count(*) FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id WHERE w.customer = 'carol';
SELECT wallet_grant('carol', 'usd', 1) IS NOT NULL AS granted;
SELECT approved, reason, amount, balance FROM wallet_authorize_debit('carol', 'tok', 1500, 'c1');
SELECT approved, replayed, amount, balance FROM wallet_authorize_debit('carol', 'tok', 1500, 'c1');

-- a voided grant and an expired one are not drawn; a used-up one is skipped
SELECT wallet_create('dave') > 0 AS created;
SELECT wallet_grant('dave', 'cr', 3, priority => 1) AS g_first \gset
-- (1.1: a grant cannot be created expired; this one expires 0.2 s after it is made)
SELECT wallet_grant('dave', 'cr', 50, priority => 5, effective_at => now() - interval '2 days',
					expires_at => now() + interval '0.2 s') AS g_expired \gset
SELECT pg_sleep(0.3);
SELECT wallet_grant('dave', 'cr', 50, priority => 5) AS g_void \gset
UPDATE wallet.grant_block SET voided_at = now(), closed_at = now() WHERE id = :g_void;
INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
SELECT now(), wallet_id, asset, id, 'void', -remaining FROM wallet.grant_block WHERE id = :g_void;
UPDATE wallet.grant_block SET remaining = 0 WHERE id = :g_void;
SELECT wallet_grant('dave', 'cr', 20, priority => 9) AS g_last \gset
SELECT approved, amount, balance FROM wallet_authorize_debit('dave', 'call', 1, 'd1');
SELECT approved, amount, balance FROM wallet_authorize_debit('dave', 'call', 2, 'd2');
SELECT CASE l.grant_id WHEN :g_first THEN 'first' WHEN :g_last THEN 'last' ELSE 'other' END AS grant_,
	   l.amount
  FROM wallet.line l JOIN wallet.event e ON e.id = l.event_id
 WHERE e.wallet_id = (SELECT id FROM wallet.wallet WHERE customer = 'dave') ORDER BY l.id;
SELECT remaining FROM wallet.grant_block WHERE id IN (:g_first, :g_last) ORDER BY id;

-- a recurring grant whose boundary has passed: the debit writes the reset down first
SELECT wallet_create('erin') > 0 AS created;
SELECT wallet_grant('erin', 'cr', 10, effective_at => now() - interval '25 hours',
					recurrence => interval '1 day') AS g_rec \gset
-- (1.1 folds the boundary before its creation into the grant: resets = 0 makes it the
-- grant created before its boundary that this test is about)
UPDATE wallet.grant_block SET remaining = 4, resets = 0 WHERE id = :g_rec;
INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
SELECT now() - interval '25 hours', wallet_id, asset, id, 'debit', -6 FROM wallet.grant_block WHERE id = :g_rec;
SELECT approved, amount, balance FROM wallet_authorize_debit('erin', 'call', 1, 'e1');
SELECT kind, amount FROM wallet.line WHERE grant_id = :g_rec ORDER BY id;
SELECT remaining, resets FROM wallet.grant_block WHERE id = :g_rec;

-- the balance row is the lock: under READ COMMITTED a row lock, which writes no
-- new version of the row; under REPEATABLE READ an update (touches + 1)
SELECT a.touches AS touches_read_committed, a.xmax::text <> '0' AS locked
  FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id WHERE w.customer = 'alice';
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT approved FROM wallet_authorize_debit('alice', 'call', 1, 'rr-touch');
SELECT a.touches AS touches_repeatable_read
  FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id WHERE w.customer = 'alice';
ROLLBACK;

-- rolled back: nothing happened
BEGIN;
SELECT approved, amount FROM wallet_authorize_debit('alice', 'call', 1, 'rb');
ROLLBACK;
\c
SET client_min_messages = warning;
SELECT count(*) FROM wallet.event WHERE idempotency_key = 'rb';
SELECT wallet_balance('alice', 'cr');

-- within one transaction a later call sees an earlier one
BEGIN;
SELECT amount, balance FROM wallet_authorize_debit('alice', 'call', 1, 't1');
SELECT amount, balance FROM wallet_authorize_debit('alice', 'call', 1, 't2');
SELECT replayed, balance FROM wallet_authorize_debit('alice', 'call', 1, 't1');
COMMIT;

-- an error inside a subtransaction leaves the outer work intact
BEGIN;
SELECT amount, balance FROM wallet_authorize_debit('alice', 'call', 1, 's1');
SAVEPOINT sp;
SELECT * FROM wallet_authorize_debit('alice', 'call', 2, 's1');
ROLLBACK TO sp;
SELECT amount, balance FROM wallet_authorize_debit('alice', 'call', 1, 's2');
COMMIT;
SELECT wallet_balance('alice', 'cr');

-- a release gives the hold back; releasing it again replays the stored result (1.1)
SELECT approved, amount, balance FROM wallet_hold('alice', 'cr', 10, 'h2');
SELECT approved, hold_id IS NOT NULL AS has_hold, amount, balance
  FROM wallet_release((SELECT id FROM wallet.hold WHERE idempotency_key = 'h2'));
SELECT * FROM wallet_release((SELECT id FROM wallet.hold WHERE idempotency_key = 'h2'));
\c
SET client_min_messages = warning;
SELECT wallet_balance('alice', 'cr');

-- several calls in one statement: each sees the one before (a repeated key replays)
SELECT g, r.approved, r.replayed, r.amount, r.balance
  FROM generate_series(1, 3) g,
	   LATERAL wallet_authorize_debit('alice', 'call', 1, CASE WHEN g = 3 THEN 'm1' ELSE 'm' || g END) r
 ORDER BY g;

-- a read-only transaction cannot debit
BEGIN READ ONLY;
SELECT * FROM wallet_authorize_debit('alice', 'call', 1, 'ro');
ROLLBACK;
\c
SET client_min_messages = warning;

-- an event too big for a page row is toasted (values of at most 1024 bytes); a replay compares its dimensions
SELECT approved, amount FROM wallet_authorize_debit('alice', 'call', 1, 'big-dims',
	jsonb_build_object('note', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 32) i),
		'note2', (SELECT string_agg(md5(i::text), '') FROM generate_series(33, 64) i),
		'note3', (SELECT string_agg(md5(i::text), '') FROM generate_series(65, 96) i), 'user', 'u9'));
SELECT length(dimensions ->> 'note'), dimensions ->> 'user', refunded, hold_id, cost
  FROM wallet.event WHERE idempotency_key = 'big-dims';
SELECT approved, replayed, amount FROM wallet_authorize_debit('alice', 'call', 1, 'big-dims',
	jsonb_build_object('note', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 32) i),
		'note2', (SELECT string_agg(md5(i::text), '') FROM generate_series(33, 64) i),
		'note3', (SELECT string_agg(md5(i::text), '') FROM generate_series(65, 96) i), 'user', 'u9'));

-- a BEFORE ROW INSERT trigger on the event table fires (with its WHEN);
-- an AFTER trigger fires too (the debit then writes through SQL statements)
CREATE FUNCTION pg_temp.tag_cost() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN NEW.cost := 0.5; RETURN NEW; END $$;
CREATE TRIGGER tag_cost BEFORE INSERT ON wallet.event
	FOR EACH ROW WHEN (NEW.amount > 3) EXECUTE FUNCTION pg_temp.tag_cost();
SELECT approved, amount FROM wallet_authorize_debit('alice', 'call', 1, 'tg1');
SELECT approved, amount FROM wallet_authorize_debit('alice', 'call', 2, 'tg2');
SELECT idempotency_key, amount, cost FROM wallet.event WHERE idempotency_key IN ('tg1', 'tg2') ORDER BY 1;
DROP TRIGGER tag_cost ON wallet.event;
CREATE FUNCTION pg_temp.nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER after_event AFTER INSERT ON wallet.event
	FOR EACH ROW EXECUTE FUNCTION pg_temp.nothing();
SELECT * FROM wallet_authorize_debit('alice', 'call', 1, 'tg3');
SELECT * FROM wallet_debit('alice', 'cr', 1, 'tg4');
DROP TRIGGER after_event ON wallet.event;
\c
SET client_min_messages = warning;
SELECT approved, amount FROM wallet_authorize_debit('alice', 'call', 1, 'tg3');

-- a call takes the lock its write needs once: no AccessShareLock on the event
-- table, its key index or the grants beside the RowExclusiveLock
SELECT approved FROM wallet_authorize_debit('alice', 'call', 1, 'lk1');
BEGIN;
SELECT approved FROM wallet_authorize_debit('alice', 'call', 1, 'lk2');
SELECT relation::regclass, mode FROM pg_locks
 WHERE pid = pg_backend_pid()
   AND relation IN ('wallet.event'::regclass, 'wallet.event_key'::regclass,
					'wallet.grant_block'::regclass)
 ORDER BY relation::regclass::text, mode;
COMMIT;

-- the tables a debit updates in place keep room on their pages for the new
-- row versions (HOT updates)
SELECT relname, reloptions FROM pg_class
 WHERE oid IN ('wallet.account'::regclass, 'wallet.grant_block'::regclass) ORDER BY 1;

-- the grant read prunes a page only when it runs short of room, but it does
-- prune: 400 debits of one grant, each in its own transaction, leave the
-- grants' table its size (every update HOT, on the page it started on)
SELECT wallet_create('pruned') > 0 AS created;
SELECT wallet_grant('pruned', 'cr', 10000) > 0 AS granted;
SELECT pg_relation_size('wallet.grant_block') AS grants_size \gset
DO $$
BEGIN
	FOR i IN 1..400 LOOP
		PERFORM wallet_authorize_debit('pruned', 'call', 1, 'pr' || i);
		COMMIT;
	END LOOP;
END $$;
SELECT pg_relation_size('wallet.grant_block') = :grants_size AS same_size,
	   (SELECT remaining FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
		 WHERE w.customer = 'pruned') AS remaining;

-- a partial index gets the rows its predicate holds for (the hot path opens
-- and locks a partial index only for a row in it): an index the owner adds,
-- read back through that index
CREATE INDEX event_big ON wallet.event (amount) WHERE amount >= 9;
SELECT approved, amount FROM wallet_authorize_debit('alice', 'call', 1, 'pi1');
SELECT approved, amount FROM wallet_authorize_debit('alice', 'call', 3, 'pi2');
BEGIN;
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT idempotency_key FROM wallet.event WHERE amount >= 9 ORDER BY amount;
SELECT idempotency_key, amount FROM wallet.event WHERE amount >= 9 ORDER BY amount, idempotency_key;
ROLLBACK;
SELECT idempotency_key, amount FROM wallet.event WHERE amount >= 9 ORDER BY amount, idempotency_key;
BEGIN;
SELECT approved FROM wallet_authorize_debit('alice', 'call', 1, 'pi3');
SELECT count(*) AS locked_event_big FROM pg_locks
 WHERE pid = pg_backend_pid() AND relation = 'wallet.event_big'::regclass;
COMMIT;
DROP INDEX wallet.event_big;

SELECT * FROM wallet_verify();
