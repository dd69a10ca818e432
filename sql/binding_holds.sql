-- binding holds (#16): a hold reserves value from specific grants and cap room,
-- so a capture within the held amount cannot be declined.
\set VERBOSITY sqlstate
\pset null '(null)'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wallet CASCADE;
CREATE EXTENSION wallet;

SELECT wallet_create_asset('bh', 0, 0.01);
SELECT wallet_set_price('bh.call', 'bh', '{"model": "per_unit", "unit_price": "1"}',
						effective_at => now() - interval '1 day') > 0 AS priced;
SELECT wallet_set_price('bh.out', 'bh', '{"model": "per_unit", "unit_price": "2"}',
						effective_at => now() - interval '1 day') > 0 AS priced;

-------------------------------------------- defect 1: a grant expires under a hold
SELECT wallet_create('bh-exp') > 0 AS created;
SELECT wallet_grant('bh-exp', 'bh', 100, expires_at => now() + interval '1 second') > 0 AS granted;
SELECT hold_id AS exp_hold, approved, amount, balance FROM wallet_hold('bh-exp', 'bh', 80, 'exp-h') \gset
SELECT :'approved' AS approved, :'amount' AS amount, :'balance' AS balance;
SELECT pg_sleep(1.2);
-- the 80 held is still there; the 20 not held expired
SELECT wallet_balance('bh-exp', 'bh') AS available;
SELECT * FROM wallet_balances('bh-exp');
-- granted counts what the hold still reserves on the expired grant: available = granted - held - overdraft
SELECT count(*) AS off_identity FROM wallet.balances WHERE available <> granted - held - overdraft;
-- another debit cannot draw the reserved value
SELECT approved, reason FROM wallet_debit('bh-exp', 'bh', 1, 'exp-d');
-- the capture within the hold is approved
SELECT approved, reason, amount, balance FROM wallet_capture(:exp_hold, 'bh.call', 50);
-- the 30 of the hold not used leaves now, as the grant's expiry (breakage)
SELECT kind, amount FROM wallet.ledger WHERE customer = 'bh-exp' ORDER BY id NULLS LAST, kind;
SELECT wallet_balance('bh-exp', 'bh') AS available;
SELECT * FROM wallet_verify();
-- a refund of that capture: its grant has expired, so the value goes to a new grant
SELECT approved, amount, balance FROM wallet_refund((SELECT event_id FROM wallet.hold WHERE id = :exp_hold), 10);
SELECT category, amount, remaining FROM wallet.grants WHERE customer = 'bh-exp' ORDER BY id;
SELECT * FROM wallet_verify();

-------------------------------------------- defect 1b: a grant is voided under a hold
SELECT wallet_create('bh-void') > 0 AS created;
SELECT wallet_grant('bh-void', 'bh', 100) AS void_grant \gset
SELECT hold_id AS void_hold FROM wallet_hold('bh-void', 'bh', 80, 'void-h') \gset
-- the void takes only what is not held
SELECT wallet_void_grant(:void_grant, 'chargeback') AS voided;
SELECT wallet_balance('bh-void', 'bh') AS available;
SELECT approved, reason, amount, balance FROM wallet_capture(:void_hold, 'bh.call', 50);
SELECT kind, amount FROM wallet.ledger WHERE customer = 'bh-void' ORDER BY id;
SELECT remaining FROM wallet.grants WHERE id = :void_grant;
SELECT * FROM wallet_verify();

-------------------------------------------- defect 2: a hold reserves spend-cap room
SELECT wallet_create('bh-cap') > 0 AS created;
SELECT wallet_grant('bh-cap', 'bh', 1000) > 0 AS granted;
SELECT wallet_set_cap('bh-cap', 'bh', 100, 'month', 'user');
SELECT hold_id AS cap_hold, approved FROM wallet_hold('bh-cap', 'bh', 60, 'cap-h', '15 minutes', '{"user": "ann"}') \gset
SELECT :'approved' AS approved;
-- the billing page shows the room the hold reserves as gone: ann 40 left, other members 100
SELECT dimension, dim_value, cap, spent, remaining FROM wallet_caps('bh-cap');
-- ann's other spending cannot take the room her hold reserved
SELECT approved, reason FROM wallet_authorize_debit('bh-cap', 'bh.call', 50, 'cap-d1', '{"user": "ann"}');
SELECT approved, reason FROM wallet_authorize_debit('bh-cap', 'bh.call', 40, 'cap-d2', '{"user": "ann"}');
-- bob's bucket is his own
SELECT approved, reason FROM wallet_authorize_debit('bh-cap', 'bh.call', 90, 'cap-d3', '{"user": "bob"}');
-- the capture within the hold is approved, even with the cap lowered meanwhile
SELECT wallet_set_cap('bh-cap', 'bh', 10, 'month', 'user');
SELECT approved, reason, amount FROM wallet_capture(:cap_hold, 'bh.call', 55, '{"user": "ann"}');
SELECT dimension, dim_value, cap, spent FROM wallet_caps('bh-cap') ORDER BY dim_value;
SELECT * FROM wallet_verify();

-- a whole-wallet cap, hold without dimensions: its room is reserved too
SELECT wallet_create('bh-capw') > 0 AS created;
SELECT wallet_grant('bh-capw', 'bh', 1000) > 0 AS granted;
SELECT wallet_set_cap('bh-capw', 'bh', 100, 'month');
SELECT hold_id AS capw_hold FROM wallet_hold('bh-capw', 'bh', 60, 'capw-h') \gset
SELECT cap, spent, remaining FROM wallet_caps('bh-capw');
SELECT approved, reason FROM wallet_debit('bh-capw', 'bh', 50, 'capw-d1');
SELECT approved, reason FROM wallet_debit('bh-capw', 'bh', 40, 'capw-d2');
SELECT approved, reason, amount FROM wallet_capture(:capw_hold, 'bh.call', 60);
SELECT spent FROM wallet_caps('bh-capw');

-------------------------------------------- defect 3: resolving twice replays
SELECT wallet_create('bh-twice') > 0 AS created;
SELECT wallet_grant('bh-twice', 'bh', 100) > 0 AS granted;
SELECT hold_id AS tw_hold FROM wallet_hold('bh-twice', 'bh', 30, 'tw-h') \gset
SELECT approved, replayed, amount, balance, event_id AS tw_event FROM wallet_capture(:tw_hold, 'bh.call', 20) \gset
SELECT :'approved' AS approved, :'replayed' AS replayed, :'amount' AS amount, :'balance' AS balance;
-- the same capture again (a lost response): the stored result
SELECT approved, replayed, amount, balance, event_id = :tw_event AS same_event, hold_id = :tw_hold AS same_hold
  FROM wallet_capture(:tw_hold, 'bh.call', 20);
-- a different request on the captured hold: WL005
SELECT approved FROM wallet_capture(:tw_hold, 'bh.call', 21);
SELECT approved FROM wallet_release(:tw_hold);
-- release twice: the stored result; a capture after it: WL005
SELECT hold_id AS tw_hold2 FROM wallet_hold('bh-twice', 'bh', 10, 'tw-h2') \gset
SELECT approved, replayed, amount, balance FROM wallet_release(:tw_hold2);
SELECT approved, replayed, amount, balance FROM wallet_release(:tw_hold2);
SELECT approved FROM wallet_capture(:tw_hold2, 'bh.call', 1);
SELECT wallet_balance('bh-twice', 'bh') AS available;
SELECT * FROM wallet_verify();

-------------------------------------------- reservations: specific grants, drawdown order
SELECT wallet_create('bh-order') > 0 AS created;
SELECT wallet_grant('bh-order', 'bh', 50, priority => 10) AS g_first \gset
SELECT wallet_grant('bh-order', 'bh', 100) AS g_second \gset
SELECT hold_id AS ord_hold, balance FROM wallet_hold('bh-order', 'bh', 80, 'ord-h') \gset
SELECT :'balance' AS balance;
SELECT grant_id = :g_first AS first, amount FROM wallet.hold_grant WHERE hold_id = :ord_hold ORDER BY grant_id;
-- the reserved value stays in the grants (deferred revenue) but no debit draws it
SELECT remaining FROM wallet.grants WHERE customer = 'bh-order' ORDER BY id;
SELECT * FROM wallet_balances('bh-order');
SELECT amount FROM wallet.deferred_revenue WHERE customer = 'bh-order';
SELECT approved, reason FROM wallet_debit('bh-order', 'bh', 71, 'ord-d1');
SELECT * FROM wallet_quote('bh-order', 'bh.call', 70);
SELECT approved, reason, balance FROM wallet_debit('bh-order', 'bh', 70, 'ord-d2');
-- wallet_ingest draws only unreserved value too
SELECT idx, approved, reason, balance FROM wallet_ingest('[{"customer": "bh-order", "meter": "bh.call", "quantity": 1, "idempotency_key": "ord-i1"}]');
-- a second hold finds nothing left to reserve
SELECT approved, reason FROM wallet_hold('bh-order', 'bh', 1, 'ord-h2');
-- the capture draws the hold's own grants, in drawdown order
SELECT approved, amount, balance FROM wallet_capture(:ord_hold, 'bh.call', 80);
SELECT l.grant_id = :g_first AS first, l.amount FROM wallet.ledger l
  JOIN wallet.events e ON e.id = l.event_id WHERE e.hold_id = :ord_hold ORDER BY l.grant_id;
SELECT count(*) AS reservations_left FROM wallet.hold_grant WHERE hold_id = :ord_hold;
SELECT * FROM wallet_verify();

-------------------------------------------- overdraft room, a lowered limit, a frozen wallet
SELECT wallet_create('bh-od') > 0 AS created;
SELECT wallet_grant('bh-od', 'bh', 10) > 0 AS granted;
SELECT wallet_set_limit('bh-od', 'bh', overdraft => 20);
SELECT hold_id AS od_hold, balance FROM wallet_hold('bh-od', 'bh', 30, 'od-h') \gset
SELECT :'balance' AS balance;
SELECT overdraft FROM wallet.hold WHERE id = :od_hold;
-- the overdraft room is the hold's: a debit finds none
SELECT approved, reason FROM wallet_debit('bh-od', 'bh', 1, 'od-d1');
-- the limit cannot go below the room the hold reserved (as not below the overdraft in use)
SELECT wallet_set_limit('bh-od', 'bh', overdraft => 0);
SELECT wallet_set_overdraft('bh-od', 'bh', 19);
SELECT wallet_set_status('bh-od', 'frozen');
-- above the hold: checked as a debit (frozen), declined, the hold stays open
SELECT approved, reason, hold_id = :od_hold AS same_hold FROM wallet_capture(:od_hold, 'bh.call', 31);
SELECT status FROM wallet.hold WHERE id = :od_hold;
-- within the hold: approved, frozen notwithstanding, and within the limit
SELECT approved, reason, amount, balance FROM wallet_capture(:od_hold, 'bh.call', 30);
SELECT * FROM wallet_balances('bh-od');
SELECT * FROM wallet_verify();
SELECT wallet_set_status('bh-od', 'active');
SELECT * FROM wallet_verify();

-------------------------------------------- above the hold: checked and drawn as a debit
SELECT wallet_create('bh-above') > 0 AS created;
SELECT wallet_grant('bh-above', 'bh', 100) > 0 AS granted;
SELECT hold_id AS ab_hold FROM wallet_hold('bh-above', 'bh', 30, 'ab-h') \gset
SELECT approved, reason, balance FROM wallet_capture(:ab_hold, 'bh.call', 101);
SELECT approved, reason, amount, balance FROM wallet_capture(:ab_hold, 'bh.call', 100);
SELECT * FROM wallet_verify();

-------------------------------------------- release gives value back; extend; errors
SELECT wallet_create('bh-rel') > 0 AS created;
SELECT wallet_grant('bh-rel', 'bh', 100) > 0 AS granted;
SELECT hold_id AS rel_hold FROM wallet_hold('bh-rel', 'bh', 40, 'rel-h') \gset
SELECT approved, amount, balance FROM wallet_extend_hold(:rel_hold, '1 hour');
SELECT expires_at > now() + interval '59 minutes' AS extended FROM wallet.hold WHERE id = :rel_hold;
SELECT approved FROM wallet_extend_hold(:rel_hold, '-1 hour');			-- 22023
SELECT approved FROM wallet_extend_hold(-1, '1 hour');					-- WL007
SELECT approved, replayed, amount, balance FROM wallet_release(:rel_hold);
SELECT approved FROM wallet_extend_hold(:rel_hold, '1 hour');			-- WL005
SELECT wallet_balance('bh-rel', 'bh') AS available;
-- a hold replayed with other dimensions is another request: WL004
SELECT approved FROM wallet_hold('bh-rel', 'bh', 40, 'rel-h', '15 minutes', '{"user": "x"}');
SELECT approved, replayed FROM wallet_hold('bh-rel', 'bh', 40, 'rel-h');
SELECT * FROM wallet_verify();

-------------------------------------------- wallet_authorize_hold and wallet_capture_lines
SELECT wallet_create('bh-llm') > 0 AS created;
SELECT wallet_grant('bh-llm', 'bh', 100) > 0 AS granted;
-- an estimate of 30 output units at 2 each: 60 held
SELECT hold_id AS llm_hold, approved, amount, balance FROM wallet_authorize_hold('bh-llm', 'bh.out', 30, 'llm-h') \gset
SELECT :'approved' AS approved, :'amount' AS amount, :'balance' AS balance;
SELECT approved, replayed, amount FROM wallet_authorize_hold('bh-llm', 'bh.out', 30, 'llm-h');
SELECT approved FROM wallet_authorize_hold('bh-llm', 'bh.call', 60, 'llm-h');	-- WL004
-- a retry after the price changed is still the same request: replayed
SELECT wallet_set_price('bh.est', 'bh', '{"model": "flat", "price": "3"}',
						effective_at => now() - interval '1 day') > 0 AS priced;
SELECT approved, amount FROM wallet_authorize_hold('bh-llm', 'bh.est', 1, 'llm-est');
SELECT wallet_set_price('bh.est', 'bh', '{"model": "flat", "price": "4"}') > 0 AS repriced;
SELECT approved, replayed, amount FROM wallet_authorize_hold('bh-llm', 'bh.est', 1, 'llm-est');
SELECT approved, amount FROM wallet_release((SELECT id FROM wallet.hold WHERE idempotency_key = 'llm-est'));
SELECT approved FROM wallet_authorize_hold('bh-llm', 'nosuch', 1, 'llm-x');		-- WL003
SELECT approved FROM wallet_capture_lines(:llm_hold, '{}');						-- 22023
SELECT approved FROM wallet_capture_lines(:llm_hold, '[]');						-- 22023
SELECT approved FROM wallet_capture_lines(:llm_hold, '[{"quantity": 1}]');		-- 22023
SELECT approved FROM wallet_capture_lines(:llm_hold, '[{"meter": "bh.call", "quantity": 0}]');	-- 22023
-- a misspelt field is refused, as wallet_ingest refuses one: it must not bill without dimensions
SELECT approved FROM wallet_capture_lines(:llm_hold, '[{"meter": "bh.call", "quantity": 1, "dimension": {"model": "m1"}}]');	-- 22023
-- at most 1000 lines (the call holds the balance lock throughout)
SELECT approved FROM wallet_capture_lines(:llm_hold, (SELECT jsonb_agg(jsonb_build_object('meter', 'bh.call', 'quantity', 1)) FROM generate_series(1, 1001)));	-- 22023
-- two meters above what the balance allows: both declined, nothing written, the hold open
SELECT approved, reason, amount FROM wallet_capture_lines(:llm_hold,
	'[{"meter": "bh.call", "quantity": 50}, {"meter": "bh.out", "quantity": 30}]');
SELECT status, (SELECT count(*) FROM wallet.event WHERE hold_id = :llm_hold) AS events
  FROM wallet.hold WHERE id = :llm_hold;
-- input and output tokens of one call: one event per line, all approved
SELECT approved, replayed, amount, balance FROM wallet_capture_lines(:llm_hold,
	'[{"meter": "bh.call", "quantity": 12, "dimensions": {"model": "m1"}},
	  {"meter": "bh.out", "quantity": 20, "cost": "0.02"}]');
SELECT meter, quantity, dimensions, amount, cost FROM wallet.events WHERE hold_id = :llm_hold ORDER BY id;
-- the same lines again: replayed; other lines: WL005
SELECT approved, replayed, amount, balance FROM wallet_capture_lines(:llm_hold,
	'[{"meter": "bh.call", "quantity": 12, "dimensions": {"model": "m1"}},
	  {"meter": "bh.out", "quantity": 20, "cost": "0.02"}]');
SELECT approved FROM wallet_capture_lines(:llm_hold, '[{"meter": "bh.call", "quantity": 12}]');
SELECT wallet_balance('bh-llm', 'bh') AS available;
SELECT * FROM wallet_verify();

-------------------------------------------- time: a hold's ttl, the sweep, breakage at release
SELECT wallet_create('bh-time') > 0 AS created;
SELECT wallet_grant('bh-time', 'bh', 100) > 0 AS granted;
SELECT wallet_grant('bh-time', 'bh', 50, expires_at => now() + interval '1 second') AS g_soon \gset
-- a short hold on the expiring grant, a long one too
SELECT hold_id AS t_short FROM wallet_hold('bh-time', 'bh', 30, 't-short', '1 second') \gset
SELECT hold_id AS t_long FROM wallet_hold('bh-time', 'bh', 40, 't-long', '1 hour') \gset
SELECT grant_id = :g_soon AS soon, amount FROM wallet.hold_grant WHERE hold_id IN (:t_short, :t_long) ORDER BY hold_id, grant_id;
SELECT wallet_balance('bh-time', 'bh') AS available;
SELECT pg_sleep(1.2);
-- the short hold reserves nothing now; the long one still holds 20 of the expired grant
SELECT * FROM wallet_balances('bh-time');
SELECT amount FROM wallet.deferred_revenue WHERE customer = 'bh-time';
SELECT approved FROM wallet_capture(:t_short, 'bh.call', 1);			-- WL005
SELECT action, count FROM wallet_sweep() ORDER BY action;
SELECT id = :t_short AS short, status FROM wallet.hold WHERE id IN (:t_short, :t_long) ORDER BY id;
SELECT remaining, closed_at IS NULL AS open FROM wallet.grant_block WHERE id = :g_soon;
SELECT * FROM wallet_verify();
-- finance agrees: the reserved 20 of the expired grant is still deferred, by the ledger too
SELECT d.amount = (SELECT sum(r.deferred) FROM wallet.revenue_lines r WHERE r.customer = 'bh-time')
	   AS deferred_matches_ledger
  FROM wallet.deferred_revenue d WHERE d.customer = 'bh-time';
SELECT count(*) AS unbalanced FROM wallet.conservation WHERE difference <> 0;
-- released: the 20 reserved on the expired grant leaves now, as breakage
SELECT approved, amount, balance FROM wallet_release(:t_long);
SELECT kind, amount, hold_id = :t_long AS at_release FROM wallet.ledger
 WHERE customer = 'bh-time' AND grant_id = :g_soon ORDER BY id;
SELECT sum(breakage) AS breakage FROM wallet.revenue WHERE asset = 'bh' AND day = (now() AT TIME ZONE 'UTC')::date;
SELECT * FROM wallet_balances('bh-time');
SELECT * FROM wallet_verify();
-------------------------------------------- a recurring grant resets under a hold
SELECT wallet_create('bh-rec') > 0 AS created;
SELECT wallet_grant('bh-rec', 'bh', 50, category => 'bundled', recurrence => '2 seconds',
					effective_at => now() - interval '0.2 second') AS g_rec \gset
SELECT hold_id AS rec_hold FROM wallet_hold('bh-rec', 'bh', 40, 'rec-h', '1 hour') \gset
SELECT approved, balance FROM wallet_debit('bh-rec', 'bh', 5, 'rec-d');
SELECT pg_sleep(2);
-- the reset refills the 5 not held to 50 and carries the 40 held whole
SELECT * FROM wallet_balances('bh-rec');
SELECT * FROM wallet_verify();
SELECT approved, amount, balance FROM wallet_capture(:rec_hold, 'bh.call', 30);
-- the 10 held but not captured was last period's: it leaves at the capture, as a reset
SELECT kind, amount, hold_id = :rec_hold AS at_release FROM wallet.ledger
 WHERE customer = 'bh-rec' AND kind IN ('reset', 'debit') ORDER BY id;
SELECT * FROM wallet_balances('bh-rec');
SELECT * FROM wallet_verify();

-------------------------------------------- capture lines: each line's part above the hold checked as its own debit
-- bob is at his monthly cap; ann's hold of 10 is captured with a line of ann's and one of bob's:
-- bob's 50, all above the hold, would pass his cap (whichever line comes first)
SELECT wallet_create('bh-lines') > 0 AS created;
SELECT wallet_grant('bh-lines', 'bh', 1000) > 0 AS granted;
SELECT wallet_set_cap('bh-lines', 'bh', 100, 'month', 'user');
SELECT approved FROM wallet_authorize_debit('bh-lines', 'bh.call', 100, 'bob-1', '{"user": "bob"}');
SELECT hold_id AS ann_h FROM wallet_hold('bh-lines', 'bh', 10, 'ann-h', '15 minutes', '{"user": "ann"}') \gset
SELECT approved, reason FROM wallet_capture_lines(:ann_h,
  '[{"meter": "bh.call", "quantity": 10, "dimensions": {"user": "ann"}},
    {"meter": "bh.call", "quantity": 50, "dimensions": {"user": "bob"}}]');
SELECT approved, reason FROM wallet_capture_lines(:ann_h,
  '[{"meter": "bh.call", "quantity": 50, "dimensions": {"user": "bob"}},
    {"meter": "bh.call", "quantity": 10, "dimensions": {"user": "ann"}}]');
-- two lines of ann's above her hold count together under her cap: 10 + 45 + 50 passes 100
SELECT approved, reason FROM wallet_capture_lines(:ann_h,
  '[{"meter": "bh.call", "quantity": 55, "dimensions": {"user": "ann"}},
    {"meter": "bh.call", "quantity": 50, "dimensions": {"user": "ann"}}]');
SELECT approved, amount FROM wallet_capture_lines(:ann_h,
  '[{"meter": "bh.call", "quantity": 55, "dimensions": {"user": "ann"}},
    {"meter": "bh.call", "quantity": 45, "dimensions": {"user": "ann"}}]');
SELECT dim_value, cap, spent FROM wallet_caps('bh-lines') ORDER BY dim_value;

-------------------------------------------- capture lines are priced in order, as debits one after another
-- the second line of a graduated meter reaches the tier the first did not; a per-period
-- maximum counts what the first line charged
SELECT wallet_set_price('bh.tier', 'bh', '{"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "0"}, {"unit_price": "1", "flat_price": "5"}]}',
						now() - interval '1 minute') > 0 AS priced;
SELECT wallet_set_price('bh.max', 'bh', '{"model": "per_unit", "unit_price": "1", "max_per_period": "10"}',
						now() - interval '1 minute') > 0 AS priced;
SELECT wallet_create('bh-order') > 0 AS created, wallet_create('bh-order-d') > 0 AS created;
SELECT wallet_grant('bh-order', 'bh', 1000) > 0 AS granted, wallet_grant('bh-order-d', 'bh', 1000) > 0 AS granted;
SELECT hold_id AS ord_h FROM wallet_hold('bh-order', 'bh', 100, 'ord-1') \gset
SELECT amount FROM wallet_capture_lines(:ord_h, '[{"meter": "bh.tier", "quantity": 8}, {"meter": "bh.tier", "quantity": 8}]');
SELECT hold_id AS ord_h2 FROM wallet_hold('bh-order', 'bh', 100, 'ord-2') \gset
SELECT amount FROM wallet_capture_lines(:ord_h2, '[{"meter": "bh.max", "quantity": 8}, {"meter": "bh.max", "quantity": 8}]');
-- the same usage as four debits
SELECT amount FROM wallet_authorize_debit('bh-order-d', 'bh.tier', 8, 'ord-d1');
SELECT amount FROM wallet_authorize_debit('bh-order-d', 'bh.tier', 8, 'ord-d2');
SELECT amount FROM wallet_authorize_debit('bh-order-d', 'bh.max', 8, 'ord-d3');
SELECT amount FROM wallet_authorize_debit('bh-order-d', 'bh.max', 8, 'ord-d4');
-- a declined capture counts nothing: the next capture is priced as if it had not been asked
SELECT hold_id AS ord_h3 FROM wallet_hold('bh-order', 'bh', 1, 'ord-3') \gset
SELECT approved, reason FROM wallet_capture_lines(:ord_h3, '[{"meter": "bh.tier", "quantity": 1}, {"meter": "bh.call", "quantity": 5000}]');
SELECT approved, amount FROM wallet_capture(:ord_h3, 'bh.tier', 1);

-------------------------------------------- a hold near the overdraft limit of a fine-grained asset
-- 5,000,000 of an asset of scale 12 is 5e18 minor units: the capture within the hold is approved
SELECT wallet_create_asset('bh_fine', 12, 0.000001);
SELECT wallet_set_price('bh.fine', 'bh_fine', '{"model": "per_unit", "unit_price": "1"}',
						now() - interval '1 minute') > 0 AS priced;
SELECT wallet_create('bh-fine') > 0 AS created;
SELECT wallet_set_overdraft('bh-fine', 'bh_fine', 5000000);
SELECT hold_id AS fine_h, balance FROM wallet_hold('bh-fine', 'bh_fine', 5000000, 'fine-1') \gset
SELECT :'balance' AS balance;
SELECT approved, amount, balance FROM wallet_capture(:fine_h, 'bh.fine', 5000000);
SELECT * FROM wallet_verify();

-------------------------------------------- a hold that a reset carried, then expired unused
-- 100 every 6 s, no rollover; a hold of 30 for 9 s: the reset at 6 s carries it whole (it is
-- reserved), and at 9 s, when the hold expires, what was carried for it leaves. The balance is
-- 100 whether or not the reset was written while the hold was open, before and after the sweep
SELECT wallet_create('bh-quiet') > 0 AS created, wallet_create('bh-touched') > 0 AS created;
SELECT wallet_grant(c, 'bh', 100, recurrence => '6 seconds') > 0 AS granted
  FROM unnest(ARRAY['bh-quiet', 'bh-touched']) c;
SELECT approved FROM unnest(ARRAY['bh-quiet', 'bh-touched']) c, wallet_hold(c, 'bh', 30, c || '-h', '9 seconds');
SELECT pg_sleep(7.5);
-- between the reset and the hold's expiry, one wallet is used: its reset is written, carrying 30
SELECT approved, balance FROM wallet_debit('bh-touched', 'bh', 1, 'touched-poke');
SELECT pg_sleep(3);
SELECT customer, available, held FROM wallet.balances WHERE customer IN ('bh-quiet', 'bh-touched') ORDER BY 1;
SELECT approved, reason FROM wallet_debit('bh-touched', 'bh', 100, 'touched-all');
SELECT count(*) AS unbalanced FROM wallet.conservation WHERE difference <> 0;
SELECT * FROM wallet_verify();
SELECT action, count FROM wallet_sweep() WHERE action = 'expired_holds';
SELECT customer, available, held FROM wallet.balances WHERE customer IN ('bh-quiet', 'bh-touched') ORDER BY 1;
SELECT customer, kind, amount, hold_id IS NOT NULL AS of_hold FROM wallet.ledger
 WHERE customer IN ('bh-quiet', 'bh-touched') AND kind IN ('reset', 'debit') ORDER BY customer, id;
SELECT approved, balance FROM wallet_debit('bh-touched', 'bh', 99, 'touched-rest');
SELECT * FROM wallet_verify();
-- the grant expires between the reset and the hold's expiry: what the reset carried leaves at
-- the hold's expiry as an expiry, in the lines not yet written as in those the sweep writes
SELECT wallet_create('bh-kx') > 0 AS created;
SELECT wallet_grant('bh-kx', 'bh', 100, recurrence => '2 seconds', expires_at => now() + interval '3 seconds') AS kx_g \gset
SELECT approved FROM wallet_hold('bh-kx', 'bh', 30, 'kx-h', '4 seconds');
SELECT pg_sleep(4.5);
CREATE TEMP TABLE kx_before AS
SELECT kind, amount, at FROM wallet.ledger WHERE customer = 'bh-kx' AND grant_id = :kx_g;
SELECT kind, amount FROM kx_before ORDER BY at, kind;
SELECT action, count FROM wallet_sweep() WHERE action = 'expired_holds';
SELECT count(*) AS differ FROM (
	(SELECT kind, amount, at FROM kx_before EXCEPT ALL
	 SELECT kind, amount, at FROM wallet.ledger WHERE customer = 'bh-kx' AND grant_id = :kx_g)
	UNION ALL
	(SELECT kind, amount, at FROM wallet.ledger WHERE customer = 'bh-kx' AND grant_id = :kx_g EXCEPT ALL
	 SELECT kind, amount, at FROM kx_before)) d;
SELECT reset, expired, difference FROM wallet.conservation WHERE customer = 'bh-kx';
-- a grant voided after one of its holds expired and before the sweep: the void takes the expired
-- hold's part then (it is no longer reserved), and the sweep does not take it again from what the
-- open hold still reserves
SELECT wallet_create('bh-vx') > 0 AS created;
SELECT wallet_grant('bh-vx', 'bh', 100) AS vx_g \gset
SELECT wallet_grant('bh-vx', 'bh', 100) > 0 AS granted;
SELECT approved FROM wallet_hold('bh-vx', 'bh', 30, 'vx-1', '1 second');
SELECT approved FROM wallet_hold('bh-vx', 'bh', 150, 'vx-2', '1 hour');
SELECT pg_sleep(1.2);
SELECT wallet_void_grant(:vx_g) AS voided;
SELECT * FROM wallet_verify();
SELECT action, count FROM wallet_sweep() WHERE action = 'expired_holds';
SELECT * FROM wallet_verify();
SELECT * FROM wallet_balances('bh-vx');

SELECT count(*) AS unbalanced FROM wallet.conservation WHERE difference <> 0;
SELECT count(*) AS off_identity FROM wallet.balances WHERE available <> granted - held - overdraft;

-- a hold placed in a transaction older than its ttl is open for its ttl from the call's clock
-- (the ttl is judged by the clock: from the transaction's start it was born expired)
SELECT wallet_create('bh-doa') > 0 AS created;
SELECT wallet_grant('bh-doa', 'bh', 100) > 0 AS granted;
BEGIN;
SELECT pg_sleep(1.1);
SELECT hold_id AS doa_hold FROM wallet_hold('bh-doa', 'bh', 10, 'doa-1', interval '1 second') \gset
SELECT approved, amount FROM wallet_capture(:doa_hold, 'bh.call', 5);
COMMIT;
