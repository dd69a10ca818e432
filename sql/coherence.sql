-- Coherence (#15): every call sees every committed change, whatever this
-- backend cached.  The concurrent cases are isolation specs
-- (test/isolation/specs/coherence_*.spec); these need one session.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

-- an asset created in a prepared transaction that is rolled back, then
-- created again with another scale: amounts use the new scale (the cache
-- must not keep what the transaction that prepared read of its own writes)
BEGIN;
SELECT wallet_create_asset('cohx', 2) \g /dev/null
SELECT wallet_create('coh-a') > 0 AS created;
SELECT wallet_grant('coh-a', 'cohx', 1) > 0 AS granted;
PREPARE TRANSACTION 'coh_asset';
ROLLBACK PREPARED 'coh_asset';
SELECT wallet_create_asset('cohx', 0) \g /dev/null
SELECT wallet_create('coh-a') > 0 AS created;
SELECT wallet_grant('coh-a', 'cohx', 100) > 0 AS granted;
SELECT g.amount, g.remaining, wallet_balance('coh-a', 'cohx') AS balance
  FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
 WHERE w.customer = 'coh-a';

-- a price set to take effect at its commit cannot be prepared (the version would take
-- effect at PREPARE, while events priced until COMMIT PREPARED used the one before);
-- one set for a later time, or backdated, can
BEGIN;
SELECT wallet_set_price('coh.2pc', 'cohx', '{"model": "per_unit", "unit_price": "5"}') > 0 AS set;
PREPARE TRANSACTION 'coh_price_now';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'coh_price_now';
ROLLBACK PREPARED 'coh_price_now';		-- 42704: nothing was prepared
BEGIN;
SELECT wallet_set_price('coh.2pc', 'cohx', '{"model": "per_unit", "unit_price": "5"}', now() + interval '1 hour') > 0 AS set;
PREPARE TRANSACTION 'coh_price_later';
COMMIT PREPARED 'coh_price_later';
SELECT count(*) AS versions FROM wallet.price WHERE meter = 'coh.2pc';

-- the extension dropped and created again: the asset is read again
SELECT wallet_create_asset('cohy', 2) \g /dev/null
SELECT wallet_create('coh-b') > 0 AS created;
SELECT wallet_grant('coh-b', 'cohy', 1) > 0 AS granted;
DROP EXTENSION wallet;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('cohy', 0) \g /dev/null
SELECT wallet_create('coh-b') > 0 AS created;
SELECT wallet_grant('coh-b', 'cohy', 100) > 0 AS granted;
SELECT g.amount, wallet_balance('coh-b', 'cohy') AS balance
  FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
 WHERE w.customer = 'coh-b';

-- an asset row changed by SQL (a repair by its owner): the change reaches
-- the cache of every backend at commit
SELECT wallet_create_asset('cohz', 2) \g /dev/null
SELECT wallet_create('coh-c') > 0 AS created;
SELECT wallet_grant('coh-c', 'cohz', 1) > 0 AS granted;
UPDATE wallet.asset SET scale = 0 WHERE code = 'cohz';
SELECT wallet_grant('coh-c', 'cohz', 100) > 0 AS granted;
SELECT g.amount FROM wallet.grant_block g JOIN wallet.wallet w ON w.id = g.wallet_id
 WHERE w.customer = 'coh-c' ORDER BY g.id;

-- one transaction alternating status changes and debits keeps one generation
-- of the hot path's cache (a wallet row change drops the wallets only), and
-- a change that makes it look everything up again frees what it replaced
SELECT wallet_create_asset('cohm', 0) \g /dev/null
SELECT wallet_create('coh-m') > 0 AS created;
SELECT wallet_grant('coh-m', 'cohm', 1000000) > 0 AS granted;
BEGIN;
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		PERFORM wallet_set_status('coh-m', 'active');
		PERFORM wallet_debit('coh-m', 'cohm', 1, 'coh-m-' || i);
	END LOOP;
	FOR i IN 1..50 LOOP
		EXECUTE format('ALTER TABLE wallet.event ALTER COLUMN meter SET STATISTICS %s', 100 + i);
		PERFORM wallet_debit('coh-m', 'cohm', 1, 'coh-m-alter-' || i);
	END LOOP;
END $$;
SELECT count(*) <= 2 AS few_generations, sum(total_bytes) < 4000000 AS small
  FROM pg_backend_memory_contexts WHERE name = 'wallet hot path';
COMMIT;
SELECT wallet_balance('coh-m', 'cohm') AS balance;

-- the direct writes check every constraint, as UPDATE would: under
-- REPEATABLE READ the balance row's update (touches + 1) checks those of
-- wallet.account; a grant drawn from checks those that do not mention
-- remaining too (added NOT VALID, so the rows already there break them)
SELECT wallet_create_asset('cohk', 0) \g /dev/null
SELECT wallet_create('coh-k') > 0 AS created;
SELECT wallet_grant('coh-k', 'cohk', 100, priority => 5) > 0 AS granted;
BEGIN ISOLATION LEVEL REPEATABLE READ;
ALTER TABLE wallet.account ADD CONSTRAINT coh_touches CHECK (touches < 0) NOT VALID;
SELECT approved FROM wallet_debit('coh-k', 'cohk', 1, 'coh-k-1');
ROLLBACK;
BEGIN;
ALTER TABLE wallet.grant_block ADD CONSTRAINT coh_priority CHECK (priority > 10) NOT VALID;
SELECT approved FROM wallet_debit('coh-k', 'cohk', 1, 'coh-k-2');
ROLLBACK;
-- ... and what SQL would accept, they accept
BEGIN ISOLATION LEVEL REPEATABLE READ;
ALTER TABLE wallet.account ADD CONSTRAINT coh_touches CHECK (touches >= 0) NOT VALID;
ALTER TABLE wallet.grant_block ADD CONSTRAINT coh_priority CHECK (priority > 0) NOT VALID;
SELECT approved, balance FROM wallet_debit('coh-k', 'cohk', 1, 'coh-k-3');
ROLLBACK;
SELECT wallet_balance('coh-k', 'cohk') AS balance;

-- triggers and row level security on the tables the hot path writes: what
-- the statements would fire, the debits fire (they write through statements
-- then); a disabled trigger changes nothing; row level security that the
-- owner's functions bypass, as they bypass it in SQL, changes nothing
SELECT wallet_create_asset('coht', 0) \g /dev/null
SELECT wallet_set_price('coht.call', 'coht', '{"model": "per_unit", "unit_price": 2}',
						now() - interval '1 hour') \g /dev/null
SELECT wallet_create('coh-t') > 0 AS created;
SELECT wallet_grant('coh-t', 'coht', 1000) > 0 AS granted;
SELECT wallet_grant('coh-t', 'coht', 1, priority => 1) > 0 AS granted_first;
CREATE TABLE coh_audit (tbl text, op text, detail text);
CREATE FUNCTION coh_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_LEVEL = 'ROW' AND TG_OP = 'UPDATE' THEN
		INSERT INTO coh_audit VALUES (TG_TABLE_NAME, TG_OP, OLD.remaining || '->' || NEW.remaining);
	ELSIF TG_LEVEL = 'ROW' AND TG_TABLE_NAME = 'event' THEN
		INSERT INTO coh_audit VALUES (TG_TABLE_NAME, TG_OP, NEW.idempotency_key || ' ' || NEW.amount);
	ELSIF TG_LEVEL = 'ROW' THEN
		INSERT INTO coh_audit VALUES (TG_TABLE_NAME, TG_OP, NEW.amount::text);
	ELSE
		INSERT INTO coh_audit VALUES (TG_TABLE_NAME, TG_OP || ' statement', NULL);
	END IF;
	RETURN NULL;
END $$;
-- disabled: ignored
CREATE TRIGGER coh_event_audit AFTER INSERT ON wallet.event
	FOR EACH ROW EXECUTE FUNCTION coh_audit();
ALTER TABLE wallet.event DISABLE TRIGGER coh_event_audit;
SELECT approved, amount, balance FROM wallet_authorize_debit('coh-t', 'coht.call', 1, 'coh-t-1');
SELECT count(*) AS audited FROM coh_audit;
-- enabled: fired by the single calls as by wallet_ingest
ALTER TABLE wallet.event ENABLE TRIGGER coh_event_audit;
CREATE TRIGGER coh_line_audit AFTER INSERT ON wallet.line_stored
	FOR EACH ROW EXECUTE FUNCTION coh_audit();
CREATE TRIGGER coh_event_stmt AFTER INSERT ON wallet.event
	FOR EACH STATEMENT EXECUTE FUNCTION coh_audit();
CREATE TRIGGER coh_grant_audit AFTER UPDATE ON wallet.grant_block
	FOR EACH ROW EXECUTE FUNCTION coh_audit();
SELECT approved, amount, balance FROM wallet_authorize_debit('coh-t', 'coht.call', 1, 'coh-t-2');
SELECT approved, amount, balance FROM wallet_debit('coh-t', 'coht', 3, 'coh-t-3');
SELECT approved, amount, balance FROM wallet_authorize_debit('coh-t', 'coht.call', 1, 'coh-t-2');
SELECT approved, amount, balance FROM wallet_ingest('[{"customer": "coh-t", "meter": "coht.call", "quantity": 1, "idempotency_key": "coh-t-4"}]');
SELECT tbl, op, detail FROM coh_audit ORDER BY tbl, op, detail;
SELECT kind, amount FROM wallet.line l JOIN wallet.wallet w ON w.id = l.wallet_id
 WHERE w.customer = 'coh-t' AND kind = 'debit' ORDER BY l.id;
SELECT count(*) AS problems FROM wallet_verify();
DROP TRIGGER coh_event_audit ON wallet.event;
DROP TRIGGER coh_line_audit ON wallet.line_stored;
DROP TRIGGER coh_event_stmt ON wallet.event;
DROP TRIGGER coh_grant_audit ON wallet.grant_block;
-- rules (DO ALSO) on the tables the direct paths write: the writes go through SQL, where they
-- fire, or where PostgreSQL refuses them (0A000: not for data-modifying statements in WITH),
-- never silently skipped
SELECT hold_id AS coh_rule_hold FROM wallet_hold('coh-t', 'coht', 5, 'coh-t-r0') \gset
CREATE TABLE coh_ruled (tbl text, n bigint);
CREATE RULE coh_event_rule AS ON INSERT TO wallet.event DO ALSO INSERT INTO coh_ruled VALUES ('event', NEW.amount);
CREATE RULE coh_grant_rule AS ON UPDATE TO wallet.grant_block DO ALSO INSERT INTO coh_ruled VALUES ('grant', NEW.remaining);
SELECT approved, amount FROM wallet_authorize_debit('coh-t', 'coht.call', 1, 'coh-t-r1');
SELECT approved, amount FROM wallet_ingest('[{"customer": "coh-t", "meter": "coht.call", "quantity": 1, "idempotency_key": "coh-t-r2"}]');
DROP RULE coh_grant_rule ON wallet.grant_block;
SELECT approved, amount FROM wallet_ingest('[{"customer": "coh-t", "meter": "coht.call", "quantity": 1, "idempotency_key": "coh-t-r2"}]');
CREATE RULE coh_hg_rule AS ON DELETE TO wallet.hold_grant DO ALSO INSERT INTO coh_ruled VALUES ('hold_grant', OLD.amount);
SELECT approved, amount FROM wallet_capture(:coh_rule_hold, 'coht.call', 1);
DROP RULE coh_hg_rule ON wallet.hold_grant;
CREATE RULE coh_hold_rule AS ON INSERT TO wallet.hold DO ALSO INSERT INTO coh_ruled VALUES ('hold', NEW.amount);
SELECT approved, amount FROM wallet_hold('coh-t', 'coht', 5, 'coh-t-r3');
DROP RULE coh_hold_rule ON wallet.hold;
DROP RULE coh_event_rule ON wallet.event;
-- a rule on another event (DELETE) changes nothing the direct paths do: REPEATABLE READ debits go on
CREATE RULE coh_account_rule AS ON DELETE TO wallet.account DO ALSO INSERT INTO coh_ruled VALUES ('account', OLD.overdraft);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT approved, amount FROM wallet_debit('coh-t', 'coht', 1, 'coh-t-r4');
COMMIT;
DROP RULE coh_account_rule ON wallet.account;
SELECT tbl, n FROM coh_ruled ORDER BY tbl, n;
SELECT count(*) AS problems FROM wallet_verify();
DROP TABLE coh_ruled;
-- row level security that the functions bypass (they run as the tables' owner)
ALTER TABLE wallet.event ENABLE ROW LEVEL SECURITY;
ALTER TABLE wallet.grant_block ENABLE ROW LEVEL SECURITY;
SELECT approved, amount, balance FROM wallet_authorize_debit('coh-t', 'coht.call', 1, 'coh-t-5');
ALTER TABLE wallet.event DISABLE ROW LEVEL SECURITY;
ALTER TABLE wallet.grant_block DISABLE ROW LEVEL SECURITY;
SELECT approved, amount, balance FROM wallet_authorize_debit('coh-t', 'coht.call', 1, 'coh-t-6');
-- a stored generated column on a table the debit updates is computed, as UPDATE computes it:
-- the grant's through SQL statements; under REPEATABLE READ, where the balance row is updated,
-- a generated column there is refused (0A000), not left stale
BEGIN;
ALTER TABLE wallet.grant_block ADD COLUMN coh_used bigint GENERATED ALWAYS AS (amount - remaining) STORED;
SELECT approved, amount FROM wallet_authorize_debit('coh-t', 'coht.call', 1, 'coh-t-7');
SELECT approved, amount FROM wallet_debit('coh-t', 'coht', 2, 'coh-t-8');
SELECT approved FROM wallet_ingest('[{"customer": "coh-t", "meter": "coht.call", "quantity": 1, "idempotency_key": "coh-t-9"}]');
SELECT count(*) AS stale FROM wallet.grant_block WHERE coh_used <> amount - remaining;
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
ALTER TABLE wallet.account ADD COLUMN coh_touches2 bigint GENERATED ALWAYS AS (touches * 2) STORED;
SELECT approved FROM wallet_debit('coh-t', 'coht', 1, 'coh-t-10');
ROLLBACK;

-- changes made with session_replication_role = replica (a logical replication apply worker, or
-- a session getting past the append-only triggers) still reach every backend's cache: a wallet
-- frozen and a price raised that way are seen by the next call
SELECT wallet_create('coh-rep') > 0 AS created;
SELECT wallet_grant('coh-rep', 'coht', 100) > 0 AS granted;
SELECT wallet_set_price('coht.rep', 'coht', '{"model": "per_unit", "unit_price": 2}',
						now() - interval '1 minute') > 0 AS priced;
SELECT approved, amount FROM wallet_authorize_debit('coh-rep', 'coht.rep', 1, 'coh-rep-1');
SET session_replication_role = replica;
UPDATE wallet.price SET rule = jsonb_set(rule, '{unit_price}', '3') WHERE meter = 'coht.rep';
RESET session_replication_role;
SELECT approved, amount FROM wallet_authorize_debit('coh-rep', 'coht.rep', 1, 'coh-rep-2');
SET session_replication_role = replica;
UPDATE wallet.wallet SET status = 'frozen' WHERE customer = 'coh-rep';
RESET session_replication_role;
SELECT approved, reason FROM wallet_authorize_debit('coh-rep', 'coht.rep', 1, 'coh-rep-3');

-- replica identity: where a publication makes UPDATE refuse a table, the
-- debit that would update it refuses too (55000)
SET client_min_messages = error;
SELECT wallet_create('coh-r') > 0 AS created;
SELECT wallet_grant('coh-r', 'coht', 100) > 0 AS granted;
BEGIN;
ALTER TABLE wallet.grant_block REPLICA IDENTITY NOTHING;
CREATE PUBLICATION coh_pub FOR ALL TABLES;
SAVEPOINT a;
UPDATE wallet.grant_block SET remaining = remaining WHERE id = -1;
ROLLBACK TO a;
SELECT approved FROM wallet_authorize_debit('coh-r', 'coht.call', 1, 'coh-r-1');
ROLLBACK;
-- ... a row filter on a column outside the replica identity
BEGIN;
CREATE PUBLICATION coh_pub FOR TABLE wallet.grant_block WHERE (category = 'paid');
SAVEPOINT a;
UPDATE wallet.grant_block SET remaining = remaining WHERE id = -1;
ROLLBACK TO a;
SELECT approved FROM wallet_authorize_debit('coh-r', 'coht.call', 1, 'coh-r-2');
ROLLBACK;
-- ... under REPEATABLE READ, the balance row's update
BEGIN ISOLATION LEVEL REPEATABLE READ;
ALTER TABLE wallet.account REPLICA IDENTITY NOTHING;
CREATE PUBLICATION coh_pub FOR TABLE wallet.account;
SELECT approved FROM wallet_debit('coh-r', 'coht', 1, 'coh-r-3');
ROLLBACK;
-- a publication that does not publish updates changes nothing
BEGIN;
ALTER TABLE wallet.grant_block REPLICA IDENTITY NOTHING;
CREATE PUBLICATION coh_pub FOR ALL TABLES WITH (publish = 'insert');
SELECT approved, balance FROM wallet_authorize_debit('coh-r', 'coht.call', 1, 'coh-r-4');
ROLLBACK;
SET client_min_messages = warning;
