-- Roles: what wallet_app, wallet_finance and wallet_admin can and cannot do,
-- table by table and function by function.  Each attempt runs under SET ROLE
-- (the role's own privileges) inside a subtransaction that is rolled back, so
-- attempts that succeed change nothing.  Denied is 42501.
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
BEGIN;
SELECT * FROM no_plan();

-- 'ok', or the SQLSTATE the statement raised as role r
CREATE FUNCTION pg_temp.try_as(r name, q text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		EXECUTE format('SET LOCAL ROLE %I', r);
		EXECUTE q;
		RAISE SQLSTATE 'WLTOK';
	EXCEPTION WHEN OTHERS THEN
		RETURN CASE SQLSTATE WHEN 'WLTOK' THEN 'ok' ELSE SQLSTATE END;
	END;
END
$$;

SELECT wallet_create_asset('tokens', 0, 0.01) \g /dev/null
SELECT wallet_create('acme') \g /dev/null
SELECT wallet_set_price('chat', 'tokens', '{"model":"flat","price":"1"}', now() - interval '1 minute') \g /dev/null
SELECT wallet_grant('acme', 'tokens', 1000) AS g1 \gset
SELECT event_id AS e1 FROM wallet_debit('acme', 'tokens', 5, 'e1', '{"model":"m"}', 0.01) \gset
SELECT hold_id AS h1 FROM wallet_hold('acme', 'tokens', 5, 'h1') \gset
SELECT wallet_debit('acme', 'tokens', 1000000, 'declined') \g /dev/null
SELECT id AS o1 FROM wallet.outbox LIMIT 1 \gset

---------------------------------------------------------------- the roles
SELECT results_eq(
	$$SELECT rolname::text COLLATE "default", rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls
		FROM pg_roles WHERE rolname IN ('wallet_app', 'wallet_finance', 'wallet_admin') ORDER BY 1$$,
	$$VALUES ('wallet_admin'::text, false, false, false, false, false),
		('wallet_app', false, false, false, false, false),
		('wallet_finance', false, false, false, false, false)$$,
	'the extension''s three roles exist, NOLOGIN, with no attributes');

---------------------------------------------------------------- PUBLIC gets nothing
CREATE TEMP VIEW members AS
SELECT d.classid, d.objid
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'wallet');
SELECT is_empty(
	$$SELECT p.oid::regprocedure FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
	   WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a WHERE a.grantee = 0)$$,
	'PUBLIC may execute no function of the extension');
SELECT is_empty(
	$$SELECT c.oid::regclass FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
	   WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a WHERE a.grantee = 0)$$,
	'PUBLIC has no privilege on any table, view or sequence');
SELECT is_empty(
	$$SELECT n.nspname FROM pg_namespace n
	   WHERE n.nspname = 'wallet'
	     AND EXISTS (SELECT 1 FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a WHERE a.grantee = 0)$$,
	'nor on schema wallet');
SELECT is_empty(
	$$SELECT t.typname FROM pg_type t JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
	   WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(t.typacl, acldefault('T', t.typowner))) a WHERE a.grantee = 0)$$,
	'nor on the wallet_result type');

---------------------------------------------------------------- table by table
-- every relation of schema wallet: finance may SELECT it, nobody else may;
-- nobody may INSERT, UPDATE, DELETE or TRUNCATE a table, or use a sequence
CREATE TEMP TABLE rel_attempt AS
SELECT c.relname, c.relkind, a.action, a.sql
  FROM pg_class c
 CROSS JOIN LATERAL (
	SELECT * FROM (VALUES
		('select', format('SELECT 1 FROM wallet.%I LIMIT 1', c.relname), c.relkind IN ('r', 'v')),
		('insert', format('INSERT INTO wallet.%I SELECT * FROM wallet.%I WHERE false', c.relname, c.relname), c.relkind = 'r'),
		('update', format('UPDATE wallet.%1$I SET %2$I = %2$I WHERE false', c.relname,
			(SELECT attname FROM pg_attribute WHERE attrelid = c.oid AND attnum = 1)), c.relkind = 'r'),
		('delete', format('DELETE FROM wallet.%I WHERE false', c.relname), c.relkind = 'r'),
		('truncate', format('TRUNCATE wallet.%I', c.relname), c.relkind = 'r'),
		('nextval', format('SELECT nextval(%L)', 'wallet.' || c.relname), c.relkind = 'S'),
		('setval', format('SELECT setval(%L, 1000000)', 'wallet.' || c.relname), c.relkind = 'S')
	) v(action, sql, applies) WHERE v.applies) a
 WHERE c.relnamespace = 'wallet'::regnamespace AND c.relkind IN ('r', 'v', 'S');
SELECT cmp_ok((SELECT count(DISTINCT relname) FROM rel_attempt WHERE relkind = 'r'), '>=', 12::bigint,
	'the tables are all there');
SELECT is(pg_temp.try_as(r.role, a.sql),
		  CASE WHEN r.role = 'wallet_finance' AND a.action = 'select' THEN 'ok' ELSE '42501' END,
		  format('%s %s %s on wallet.%s', r.role,
				 CASE WHEN r.role = 'wallet_finance' AND a.action = 'select' THEN 'may' ELSE 'may not' END,
				 a.action, a.relname))
  FROM rel_attempt a
 CROSS JOIN (VALUES ('wallet_app'::name), ('wallet_finance'), ('wallet_admin')) r(role)
 ORDER BY a.relname, a.action, r.role;

---------------------------------------------------------------- function by function
-- The matrix: who may execute what.  Functions added by work not merged yet
-- are skipped while they do not exist.  Helpers of schema wallet not listed
-- here are for no role.
CREATE TEMP TABLE matrix (fn text, app boolean, finance boolean, admin boolean);
INSERT INTO matrix VALUES
	('wallet_authorize_debit(text, text, numeric, text, jsonb, timestamptz, numeric)', true, false, false),
	('wallet_debit(text, text, numeric, text, jsonb, numeric)', true, false, false),
	('wallet_hold(text, text, numeric, text, interval, jsonb)', true, false, false),
	('wallet_authorize_hold(text, text, numeric, text, jsonb, interval)', true, false, false),
	('wallet_capture_lines(bigint, jsonb)', true, false, false),
	('wallet_extend_hold(bigint, interval)', true, false, false),
	('wallet_capture(bigint, text, numeric, jsonb, numeric)', true, false, false),
	('wallet_release(bigint)', true, false, false),
	('wallet_ingest(jsonb)', true, false, false),
	('wallet_ingest_chunked(jsonb, int, jsonb)', true, false, false),
	('wallet_record_cost(bigint, numeric, jsonb)', true, false, true),
	('wallet_outbox_ack(bigint)', true, false, true),
	('wallet_balance(text, text)', true, true, true),
	('wallet_balances(text)', true, true, true),
	('wallet_available(text, text, jsonb)', true, true, true),
	('wallet_credits(text)', true, true, true),
	('wallet_quote(text, text, numeric, jsonb, timestamptz)', true, false, true),
	('wallet_caps(text)', true, true, true),
	('wallet_statement(text, timestamptz, timestamptz, bigint, int)', true, true, true),
	('wallet_usage(text, timestamptz, timestamptz, text, text)', true, true, true),
	('wallet_verify()', false, true, true),
	('wallet.margin_by_dimension(text, timestamptz, timestamptz)', false, true, false),
	('wallet._major(text, bigint)', false, true, false),
	('wallet._pending(timestamptz, bigint)', false, true, false),
	('wallet._refund_reverses_repay(bigint, bigint)', false, true, false),
	('wallet_create_asset(text, int, numeric, text)', false, false, true),
	('wallet_create(text, jsonb)', false, false, true),
	('wallet_set_limit(text, text, numeric, numeric, int)', false, false, true),
	('wallet_set_overdraft(text, text, numeric)', false, false, true),
	('wallet_set_max_holds(text, text, int)', false, false, true),
	('wallet_set_alert(text, text, numeric, boolean)', false, false, true),
	('wallet_set_recharge(text, text, numeric, numeric, numeric)', false, false, true),
	('wallet_limits(text)', true, true, true),
	('wallet_outbox_claim(int, text[])', true, false, true),
	('wallet_set_status(text, text)', false, false, true),
	('wallet_set_price(text, text, jsonb, timestamptz, text, text)', false, false, true),
	('wallet_assign_plan(text, text, timestamptz)', false, false, true),
	('wallet_set_cap(text, text, numeric, text, text)', false, false, true),
	('wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text, numeric, text, interval, numeric, jsonb, jsonb)', false, false, true),
	('wallet_refund(bigint, numeric, text)', false, false, true),
	('wallet_void_grant(bigint, text)', false, false, true),
	('wallet_sweep(timestamptz)', false, false, true),
	('wallet_shard_check()', false, true, true),
	('wallet_shard_prune()', false, false, true),
	('wallet_id_route(text, bigint)', true, false, true);
CREATE TEMP VIEW fns AS
SELECT p.oid::regprocedure AS fn, p.prosecdef, l.lanname, p.proconfig, p.prokind,
	   n.nspname = 'wallet' AND p.proname LIKE '\_%' AS helper,
	   coalesce(x.app, false) AS app, coalesce(x.finance, false) AS finance,
	   coalesce(x.admin, false) AS admin, x.fn IS NOT NULL AS listed,
	   format(CASE p.prokind WHEN 'p' THEN 'CALL %s(%s)' ELSE 'SELECT %s(%s)' END, p.oid::regproc,
		   /* (a CALL's arguments cannot hold subqueries, and nothing folds them) */
		   (SELECT string_agg(CASE p.prokind WHEN 'p' THEN 'NULL::' || format_type(t, NULL)
							  ELSE '(SELECT NULL::' || format_type(t, NULL) || ')' END, ', ' ORDER BY i)
			  FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i))) AS null_call
  FROM pg_proc p
  JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
  LEFT JOIN matrix x ON to_regprocedure(x.fn) = p.oid;

SELECT is_empty($$SELECT fn FROM fns WHERE NOT listed AND NOT helper$$,
	'every API function of the extension is in the matrix');
SELECT is_empty($$SELECT fn FROM matrix WHERE to_regprocedure(fn) IS NULL
	AND fn NOT IN ('wallet_ingest(jsonb)', 'wallet_quote(text, text, numeric, jsonb, timestamptz)',
				   'wallet_caps(text)', 'wallet_set_cap(text, text, numeric, text, text)',
				   'wallet_shard_check()', 'wallet_shard_prune()')$$,
	'every function of the matrix exists (but those still being merged)');
-- (but a procedure that commits, which cannot: wallet_ingest_chunked runs
-- nothing but wallet_ingest, which does)
SELECT is_empty($$SELECT fn FROM fns WHERE (app OR admin) AND NOT prosecdef AND prokind <> 'p'$$,
	'every function the app or admin may call runs with the owner''s rights');
SELECT is_empty($$SELECT fn FROM fns WHERE prosecdef AND lanname <> 'c'
	AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (proconfig), false)$$,
	'those not in C pin search_path to pg_catalog, pg_temp');
SELECT is_empty($$SELECT fn FROM fns WHERE helper AND prosecdef$$,
	'no helper runs with the owner''s rights');

-- each role against each function, called with null arguments (from
-- subqueries: the planner would fold a strict function of null constants
-- away before any privilege check): denied is 42501; allowed gets past the
-- privilege check (and usually fails on the nulls)
SELECT CASE WHEN allowed
			THEN isnt(pg_temp.try_as(role, null_call), '42501', format('%s may execute %s', role, fn))
			ELSE is(pg_temp.try_as(role, null_call), '42501', format('%s may not execute %s', role, fn)) END
  FROM (SELECT f.fn, f.null_call, r.role,
			   CASE r.role WHEN 'wallet_app' THEN f.app WHEN 'wallet_finance' THEN f.finance ELSE f.admin END AS allowed
		  FROM fns f
		 CROSS JOIN (VALUES ('wallet_app'::name), ('wallet_finance'), ('wallet_admin')) r(role)) x
 ORDER BY fn::text, role;

---------------------------------------------------------------- what each role really does
CREATE TEMP TABLE works (role name, sql text, expect text);
INSERT INTO works VALUES
	-- the application: its hot path and its reads work
	('wallet_app', $$SELECT * FROM wallet_debit('acme', 'tokens', 2, 'app-1', '{"model":"m"}', 0.01)$$, 'ok'),
	('wallet_app', $$SELECT * FROM wallet_authorize_debit('acme', 'chat', 1, 'app-2')$$, 'ok'),
	('wallet_app', $$SELECT * FROM wallet_hold('acme', 'tokens', 2, 'app-3')$$, 'ok'),
	('wallet_app', format($$SELECT * FROM wallet_capture(%s, 'chat', 1)$$, :h1), 'ok'),
	('wallet_app', format($$SELECT * FROM wallet_release(%s)$$, :h1), 'ok'),
	('wallet_app', $$SELECT wallet_balance('acme', 'tokens')$$, 'ok'),
	('wallet_app', $$SELECT * FROM wallet_balances('acme')$$, 'ok'),
	('wallet_app', $$SELECT * FROM wallet_statement('acme')$$, 'ok'),
	('wallet_app', $$SELECT * FROM wallet_statement('acme', max_lines => 2)$$, 'ok'),
	('wallet_app', $$SELECT * FROM wallet_usage('acme', now() - interval '1 day', group_by => 'model')$$, 'ok'),
	('wallet_app', format($$SELECT wallet_record_cost(%s, 0.02)$$, :e1), 'ok'),
	('wallet_app', format($$SELECT wallet_outbox_ack(%s)$$, :o1), 'ok'),
	-- but nothing else
	('wallet_app', $$SELECT wallet_grant('acme', 'tokens', 1000000)$$, '42501'),
	('wallet_app', format($$SELECT * FROM wallet_refund(%s)$$, :e1), '42501'),
	('wallet_app', format($$SELECT wallet_void_grant(%s)$$, :g1), '42501'),
	('wallet_app', $$SELECT wallet_set_limit('acme', 'tokens', 1000000)$$, '42501'),
	('wallet_app', $$SELECT wallet_set_price('chat', 'tokens', '{"model":"flat","price":"0"}')$$, '42501'),
	('wallet_app', $$SELECT * FROM wallet_sweep()$$, '42501'),
	('wallet_app', $$SELECT * FROM wallet_verify()$$, '42501'),
	('wallet_app', $$SELECT * FROM wallet.balances$$, '42501'),
	('wallet_app', $$SELECT * FROM wallet.customer_margin$$, '42501'),
	('wallet_app', $$SELECT wallet._touch(1, 'tokens')$$, '42501'),
	('wallet_app', $$INSERT INTO wallet.line (at, wallet_id, asset, kind, amount) VALUES (now(), 1, 'tokens', 'grant', 1000000)$$, '42501'),
	('wallet_app', $$UPDATE wallet.grant_block SET remaining = 1000000$$, '42501'),
	-- finance: reads everything, changes nothing
	('wallet_finance', $$SELECT * FROM wallet.balances$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet.grants$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet.events$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet.ledger$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet.revenue_lines$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet.revenue$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet.deferred_revenue$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet.customer_margin$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet.unprofitable_customers$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet.conservation$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet.margin_by_dimension('model')$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet_verify()$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet_statement('acme')$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet_balances('acme')$$, 'ok'),
	('wallet_finance', $$SELECT * FROM wallet_debit('acme', 'tokens', 2, 'fin-1')$$, '42501'),
	('wallet_finance', $$SELECT wallet_grant('acme', 'tokens', 1)$$, '42501'),
	('wallet_finance', format($$SELECT wallet_record_cost(%s, 0)$$, :e1), '42501'),
	('wallet_finance', $$SELECT * FROM wallet_sweep()$$, '42501'),
	('wallet_finance', $$SELECT wallet._touch(1, 'tokens')$$, '42501'),
	('wallet_finance', $$SELECT wallet._minor('tokens', 1)$$, '42501'),
	('wallet_finance', $$UPDATE wallet.account SET overdraft_limit = 1000000$$, '42501'),
	-- admin: configuration, grants, corrections, upkeep
	('wallet_admin', $$SELECT wallet_create_asset('gems', 0, 1)$$, 'ok'),
	('wallet_admin', $$SELECT wallet_create('newco')$$, 'ok'),
	('wallet_admin', $$SELECT wallet_set_limit('acme', 'tokens', 10)$$, 'ok'),
	('wallet_admin', $$SELECT wallet_set_status('acme', 'frozen')$$, 'ok'),
	('wallet_admin', $$SELECT wallet_set_price('chat', 'tokens', '{"model":"flat","price":"2"}')$$, 'ok'),
	('wallet_admin', $$SELECT wallet_assign_plan('acme', 'pro')$$, 'ok'),
	('wallet_admin', $$SELECT wallet_grant('acme', 'tokens', 10, external_ref => 'pay-admin')$$, 'ok'),
	('wallet_admin', format($$SELECT * FROM wallet_refund(%s, 1, 'goodwill')$$, :e1), 'ok'),
	('wallet_admin', format($$SELECT wallet_void_grant(%s, 'test')$$, :g1), 'ok'),
	('wallet_admin', $$SELECT * FROM wallet_sweep()$$, 'ok'),
	('wallet_admin', format($$SELECT wallet_record_cost(%s, 0.03)$$, :e1), 'ok'),
	('wallet_admin', $$SELECT * FROM wallet_verify()$$, 'ok'),
	('wallet_admin', $$SELECT * FROM wallet_statement('acme')$$, 'ok'),
	('wallet_admin', $$SELECT * FROM wallet_debit('acme', 'tokens', 2, 'adm-1')$$, '42501'),
	('wallet_admin', $$SELECT * FROM wallet_hold('acme', 'tokens', 2, 'adm-2')$$, '42501'),
	('wallet_admin', $$SELECT * FROM wallet.ledger$$, '42501'),
	('wallet_admin', $$SELECT * FROM wallet.asset$$, '42501'),
	('wallet_admin', $$INSERT INTO wallet.asset (code, scale, unit_value) VALUES ('x', 0, 1)$$, '42501'),
	('wallet_admin', $$DELETE FROM wallet.price$$, '42501');
SELECT is(pg_temp.try_as(role, sql), expect,
	format('%s %s: %s', role, CASE expect WHEN 'ok' THEN 'can' ELSE 'cannot' END, sql)) FROM works;

-- a login is given a role by membership
CREATE ROLE wallet_test_login LOGIN IN ROLE wallet_app;
SELECT is(pg_temp.try_as('wallet_test_login', $$SELECT * FROM wallet_debit('acme', 'tokens', 1, 'login-1')$$),
	'ok', 'a login that is a member of wallet_app can debit');
SELECT is(pg_temp.try_as('wallet_test_login', $$SELECT * FROM wallet.line$$),
	'42501', 'and cannot read the ledger');

-- the app's calls run as the owner but leave the same trail as anyone's
SET ROLE wallet_app;
SELECT results_eq($$SELECT approved, amount, balance FROM wallet_debit('acme', 'tokens', 3, 'app-real', '{"model":"m"}', 0.04)$$,
	$$VALUES (true, 3::numeric, 987::numeric)$$, 'wallet_app debits for real');
RESET ROLE;
SELECT results_eq($$SELECT cost, dimensions FROM wallet.events WHERE idempotency_key = 'app-real'$$,
	$$VALUES (0.04::numeric, '{"model":"m"}'::jsonb)$$, 'its event is recorded with its cost');

SELECT is_empty('SELECT * FROM wallet_verify()', 'consistent');
SELECT * FROM finish();
ROLLBACK;
