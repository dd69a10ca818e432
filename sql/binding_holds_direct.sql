-- binding holds on direct paths (#16): a hold is placed, read and resolved
-- without SQL statements in the common case (hotpath.c: HotHoldInsert,
-- HotHoldRead, HotOpenHoldsRead, HotHoldGrantsRead, HotHoldClose,
-- HotAccountSave); what that cannot tell or do goes through SQL as before:
-- reservations on a grant voided, expired or wholly reserved (wallet._hold_settle),
-- and tables with triggers the direct writes do not fire.  Same results either way.
\set VERBOSITY sqlstate
\pset null '(null)'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('hd', 0, 0.01);
SELECT wallet_set_price('hd.call', 'hd', '{"model": "per_unit", "unit_price": "1"}',
						effective_at => now() - interval '1 day') > 0 AS priced;

-------------------------------------------- the common case: nothing leaves
SELECT wallet_create('hd-a') > 0 AS created;
SELECT wallet_grant('hd-a', 'hd', 100, category => 'promotional', expires_at => now() + interval '1 day') AS a_promo \gset
SELECT wallet_grant('hd-a', 'hd', 100, unit_revenue => 0.01) AS a_paid \gset
-- 130 reserved: 100 from the promotional grant (drawdown order), 30 from the paid one
SELECT hold_id AS a_hold, approved, amount, balance
  FROM wallet_authorize_hold('hd-a', 'hd.call', 130, 'a-h', '{"user": "ann"}') \gset
SELECT :'approved' AS approved, :'amount' AS amount, :'balance' AS balance;
SELECT wallet_id > 0 AS has_wallet, asset, amount, status, overdraft, meter, quantity, dimensions,
	   balance_after, expires_at > now() AS open_ahead
  FROM wallet.hold WHERE id = :a_hold;
SELECT grant_id = :a_promo AS promo, amount FROM wallet.hold_grant WHERE hold_id = :a_hold ORDER BY grant_id;
SELECT kind, amount FROM wallet.line WHERE hold_id = :a_hold ORDER BY id;
SELECT held, holds_open FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id WHERE w.customer = 'hd-a';
-- another debit cannot draw what is reserved
SELECT wallet_balance('hd-a', 'hd') AS available;
SELECT approved, reason FROM wallet_debit('hd-a', 'hd', 71, 'a-d1');
SELECT approved, balance FROM wallet_debit('hd-a', 'hd', 10, 'a-d2');
-- capture 120 of the 130: 100 from the promotional reservation, 20 from the paid one
SELECT approved, reason, amount, balance FROM wallet_capture(:a_hold, 'hd.call', 120);
SELECT status, event_id IS NOT NULL AS has_event, closed_at IS NOT NULL AS closed, release_balance
  FROM wallet.hold WHERE id = :a_hold;
SELECT count(*) AS reservations_left FROM wallet.hold_grant WHERE hold_id = :a_hold;
SELECT kind, grant_id = :a_promo AS promo, amount FROM wallet.line
 WHERE hold_id = :a_hold OR event_id = (SELECT event_id FROM wallet.hold WHERE id = :a_hold)
 ORDER BY kind, amount;
SELECT revenue FROM wallet.event WHERE id = (SELECT event_id FROM wallet.hold WHERE id = :a_hold);
SELECT remaining FROM wallet.grant_block WHERE id IN (:a_promo, :a_paid) ORDER BY id;
SELECT held, holds_open FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id WHERE w.customer = 'hd-a';
SELECT wallet_balance('hd-a', 'hd') AS available;
-- asked again, the same capture replays
SELECT approved, replayed, amount, balance FROM wallet_capture(:a_hold, 'hd.call', 120);
SELECT * FROM wallet_verify();

-------------------------------------------- two open holds: each reserves its own
SELECT wallet_create('hd-b') > 0 AS created;
SELECT wallet_grant('hd-b', 'hd', 100) AS b_grant \gset
SELECT hold_id AS b_h1 FROM wallet_hold('hd-b', 'hd', 40, 'b-h1') \gset
SELECT hold_id AS b_h2, balance FROM wallet_hold('hd-b', 'hd', 50, 'b-h2') \gset
SELECT :'balance' AS balance;
-- 10 free: a hold of 11 is declined, a debit of 10 is not
SELECT approved, reason, balance FROM wallet_hold('hd-b', 'hd', 11, 'b-h3');
SELECT approved, balance FROM wallet_debit('hd-b', 'hd', 10, 'b-d1');
-- the first capture leaves the second hold's reservation alone
SELECT approved, amount, balance FROM wallet_capture(:b_h1, 'hd.call', 30);
SELECT hold_id = :b_h2 AS second, amount FROM wallet.hold_grant WHERE hold_id IN (:b_h1, :b_h2);
SELECT approved, reason FROM wallet_debit('hd-b', 'hd', 11, 'b-d2');
-- released: all 50 comes back, and a release asked again replays it
SELECT approved, amount, balance FROM wallet_release(:b_h2);
SELECT approved, replayed, balance FROM wallet_release(:b_h2);
SELECT status, release_balance FROM wallet.hold WHERE id = :b_h2;
SELECT count(*) AS reservations_left FROM wallet.hold_grant WHERE hold_id IN (:b_h1, :b_h2);
SELECT remaining FROM wallet.grant_block WHERE id = :b_grant;
SELECT kind, amount FROM wallet.line WHERE wallet_id = (SELECT id FROM wallet.wallet WHERE customer = 'hd-b')
 ORDER BY id;
SELECT * FROM wallet_verify();

-------------------------------------------- overdraft room
SELECT wallet_create('hd-o') > 0 AS created;
SELECT wallet_grant('hd-o', 'hd', 20) > 0 AS granted;
SELECT wallet_set_limit('hd-o', 'hd', 50);
SELECT hold_id AS o_hold, balance FROM wallet_hold('hd-o', 'hd', 60, 'o-h') \gset
SELECT :'balance' AS balance;
SELECT overdraft, amount FROM wallet.hold WHERE id = :o_hold;
SELECT approved, amount, balance FROM wallet_capture(:o_hold, 'hd.call', 45);
SELECT overdraft FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id WHERE w.customer = 'hd-o';
SELECT wallet_balance('hd-o', 'hd') AS available;
SELECT * FROM wallet_verify();

-------------------------------------------- a grant wholly reserved: read through SQL, same result
SELECT wallet_create('hd-w') > 0 AS created;
SELECT wallet_grant('hd-w', 'hd', 50) AS w_grant \gset
SELECT hold_id AS w_hold, balance FROM wallet_hold('hd-w', 'hd', 50, 'w-h') \gset
SELECT :'balance' AS balance;
SELECT approved, amount, balance FROM wallet_capture(:w_hold, 'hd.call', 35);
SELECT remaining FROM wallet.grant_block WHERE id = :w_grant;
SELECT count(*) AS reservations_left FROM wallet.hold_grant WHERE hold_id = :w_hold;
SELECT wallet_balance('hd-w', 'hd') AS available;
SELECT * FROM wallet_verify();

-------------------------------------------- a reserved grant voided: settled through SQL
SELECT wallet_create('hd-v') > 0 AS created;
SELECT wallet_grant('hd-v', 'hd', 100, unit_revenue => 0.01) AS v_grant \gset
SELECT hold_id AS v_hold FROM wallet_hold('hd-v', 'hd', 60, 'v-h') \gset
SELECT wallet_void_grant(:v_grant, 'chargeback') AS voided;
SELECT wallet_balance('hd-v', 'hd') AS available;
-- the capture draws 25 of the reservation; the other 35 leaves with a void line
SELECT approved, amount, balance FROM wallet_capture(:v_hold, 'hd.call', 25);
SELECT kind, amount FROM wallet.line WHERE grant_id = :v_grant OR hold_id = :v_hold ORDER BY id;
SELECT remaining, closed_at IS NOT NULL AS closed FROM wallet.grant_block WHERE id = :v_grant;
SELECT count(*) AS reservations_left FROM wallet.hold_grant WHERE hold_id = :v_hold;
SELECT wallet_balance('hd-v', 'hd') AS available;
SELECT * FROM wallet_verify();

-------------------------------------------- a reserved grant expired: released through SQL
SELECT wallet_create('hd-x') > 0 AS created;
SELECT wallet_grant('hd-x', 'hd', 100, expires_at => now() + interval '1 second') AS x_grant \gset
SELECT wallet_grant('hd-x', 'hd', 10) > 0 AS granted;
SELECT hold_id AS x_hold FROM wallet_hold('hd-x', 'hd', 70, 'x-h') \gset
SELECT pg_sleep(1.2);
SELECT approved, amount, balance FROM wallet_release(:x_hold);
SELECT kind, amount FROM wallet.line WHERE grant_id = :x_grant OR hold_id = :x_hold ORDER BY id;
SELECT count(*) AS reservations_left FROM wallet.hold_grant WHERE hold_id = :x_hold;
SELECT wallet_balance('hd-x', 'hd') AS available;
SELECT * FROM wallet_verify();

-------------------------------------------- triggers the direct writes do not fire: SQL writes them
CREATE TABLE hd_log (tbl text, op text);
CREATE FUNCTION hd_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.hd_log VALUES (TG_TABLE_NAME, TG_OP);
	RETURN NULL;
END
$$;
CREATE TRIGGER hd_log AFTER INSERT OR UPDATE ON wallet.hold FOR EACH ROW EXECUTE FUNCTION hd_log();
CREATE TRIGGER hd_log AFTER INSERT OR DELETE ON wallet.hold_grant FOR EACH ROW EXECUTE FUNCTION hd_log();
CREATE TRIGGER hd_log AFTER UPDATE ON wallet.account FOR EACH ROW EXECUTE FUNCTION hd_log();
SELECT wallet_create('hd-t') > 0 AS created;
SELECT wallet_grant('hd-t', 'hd', 100) AS t_grant \gset
TRUNCATE hd_log;
SELECT hold_id AS t_hold, balance FROM wallet_authorize_hold('hd-t', 'hd.call', 40, 't-h') \gset
SELECT :'balance' AS balance;
SELECT approved, amount, balance FROM wallet_capture(:t_hold, 'hd.call', 30);
SELECT tbl, op, count(*) FROM hd_log GROUP BY 1, 2 ORDER BY 1, 2;
SELECT kind, amount FROM wallet.line WHERE hold_id = :t_hold OR grant_id = :t_grant ORDER BY id;
SELECT count(*) AS reservations_left FROM wallet.hold_grant WHERE hold_id = :t_hold;
SELECT held, holds_open FROM wallet.account a JOIN wallet.wallet w ON w.id = a.wallet_id WHERE w.customer = 'hd-t';
SELECT * FROM wallet_verify();
-- a DELETE trigger on the reservations alone: the capture's settle deletes them through SQL
DROP TRIGGER hd_log ON wallet.hold;
DROP TRIGGER hd_log ON wallet.account;
DROP TRIGGER hd_log ON wallet.hold_grant;
CREATE TRIGGER hd_log AFTER DELETE ON wallet.hold_grant FOR EACH ROW EXECUTE FUNCTION hd_log();
TRUNCATE hd_log;
SELECT hold_id AS t_hold2 FROM wallet_hold('hd-t', 'hd', 20, 't-h2') \gset
SELECT approved, amount, balance FROM wallet_capture(:t_hold2, 'hd.call', 5);
SELECT tbl, op, count(*) FROM hd_log GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS reservations_left FROM wallet.hold_grant WHERE hold_id = :t_hold2;
SELECT wallet_balance('hd-t', 'hd') AS available;
SELECT * FROM wallet_verify();
DROP TRIGGER hd_log ON wallet.hold_grant;
-- an AFTER INSERT trigger on the ledger: the hold's and the release's lines go through SQL
CREATE TRIGGER hd_log AFTER INSERT ON wallet.line_stored FOR EACH ROW EXECUTE FUNCTION hd_log();
TRUNCATE hd_log;
SELECT hold_id AS t_hold3 FROM wallet_hold('hd-t', 'hd', 10, 't-h3') \gset
SELECT approved, amount, balance FROM wallet_release(:t_hold3);
SELECT tbl, op, count(*) FROM hd_log GROUP BY 1, 2 ORDER BY 1, 2;
SELECT kind, amount FROM wallet.line WHERE hold_id = :t_hold3 ORDER BY id;
SELECT * FROM wallet_verify();
DROP TRIGGER hd_log ON wallet.line_stored;
