-- Stress workload: a random mix of hot-path calls on a few hot wallets.
-- Loaded into the stress database; pgbench calls stress_step() from many clients.
-- Expected outcomes of a race (a hold someone else just captured, a key reused for
-- another amount) are counted, not raised, so pgbench keeps every client running.

-- one row per client, operation and outcome: the tally must not be a hot row itself
CREATE TABLE stress_outcome (client int, op text, outcome text, n bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (client, op, outcome));

CREATE FUNCTION stress_note(client int, op text, outcome text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO stress_outcome AS s VALUES (client, op, outcome, 1)
	ON CONFLICT (client, op, outcome) DO UPDATE SET n = s.n + 1
$$;

CREATE FUNCTION stress_setup(wallets int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM wallet_create_asset('credits', 0, 0.01);
	PERFORM wallet_set_price('api.call', 'credits', '{"model": "per_unit", "unit_price": "3"}');
	PERFORM wallet_set_price('tokens', 'credits', '{"model": "graduated", "period": "day",
		"tiers": [{"up_to": 500, "unit_price": "0"}, {"unit_price": "1"}]}');
	FOR i IN 1..wallets LOOP
		PERFORM wallet_create('hot' || i);
		PERFORM wallet_grant('hot' || i, 'credits', 2000);
		PERFORM wallet_grant('hot' || i, 'credits', 500, category => 'promotional',
							 expires_at => now() + interval '1 hour');
		PERFORM wallet_set_limit('hot' || i, 'credits', overdraft => 300, low_balance => 100, max_holds => 5);
	END LOOP;
END
$$;

-- one random operation; keys come from a small space so that retries (replays) happen
CREATE FUNCTION stress_step(wallets int, client int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	c text := 'hot' || (1 + floor(random() * wallets))::int;
	r int := floor(random() * 100)::int;
	k int := floor(random() * 5000)::int;
	res wallet_result;
	h bigint;
	e bigint;
	op text;
BEGIN
	IF r < 35 THEN
		op := 'debit';
		res := wallet_debit(c, 'credits', 1 + k % 7, 'd' || k);
	ELSIF r < 55 THEN
		op := 'authorize';
		res := wallet_authorize_debit(c, CASE WHEN k % 2 = 0 THEN 'api.call' ELSE 'tokens' END, 1 + k % 40, 'a' || k);
	ELSIF r < 67 THEN
		op := 'hold';
		res := wallet_hold(c, 'credits', 5 + k % 20, 'h' || k, interval '2 seconds');
	ELSIF r < 84 THEN
		/* capture or release a random open hold of the wallet */
		op := CASE WHEN r < 77 THEN 'capture' ELSE 'release' END;
		SELECT id INTO h FROM wallet.hold
		 WHERE wallet_id = (SELECT id FROM wallet.wallet WHERE customer = c) AND status = 'open'
		 ORDER BY random() LIMIT 1;
		IF h IS NULL THEN
			PERFORM stress_note(client, op, 'no_open_hold');
			RETURN;
		END IF;
		IF op = 'capture' THEN
			res := wallet_capture(h, 'api.call', 1 + k % 8);
		ELSE
			res := wallet_release(h);
		END IF;
	ELSIF r < 91 AND to_regprocedure('wallet_refund(bigint,numeric,text)') IS NOT NULL THEN
		op := 'refund';
		SELECT id INTO e FROM wallet.event
		 WHERE wallet_id = (SELECT id FROM wallet.wallet WHERE customer = c) AND refunded < amount
		 ORDER BY random() LIMIT 1;
		IF e IS NULL THEN
			PERFORM stress_note(client, op, 'nothing_to_refund');
			RETURN;
		END IF;
		EXECUTE 'SELECT * FROM wallet_refund($1, 1)' INTO res USING e;
	ELSIF r < 97 THEN
		op := 'grant';
		PERFORM wallet_grant(c, 'credits', 1 + k % 50, external_ref => 'pay-' || c || '-' || k);
		PERFORM stress_note(client, op, 'ok');
		RETURN;
	ELSE
		op := 'balance';
		PERFORM wallet_balances(c);
		PERFORM stress_note(client, op, 'ok');
		RETURN;
	END IF;
	PERFORM stress_note(client, op, CASE WHEN res.replayed THEN 'replayed'
								 WHEN res.approved THEN 'approved' ELSE res.reason END);
EXCEPTION
	WHEN SQLSTATE 'WL004' OR SQLSTATE 'WL005' OR SQLSTATE '22023' THEN
		-- a key reused for another amount; a hold resolved or expired under us; a refund
		-- larger than what is left: the contract's answers to a race, counted
		PERFORM stress_note(client, op, SQLSTATE);
END
$$;
