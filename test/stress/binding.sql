-- Stress workload for binding holds (#16): holds with member caps, captures
-- within and above their holds, grants that expire in seconds, voids, freezes
-- and lowered caps, on a few hot wallets.  A capture within its hold must never
-- be declined: such a decline is tallied as 'within_declined' and fails the run.

CREATE TABLE binding_outcome (client int, op text, outcome text, n bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (client, op, outcome));

CREATE FUNCTION binding_note(client int, op text, outcome text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO binding_outcome AS s VALUES (client, op, outcome, 1)
	ON CONFLICT (client, op, outcome) DO UPDATE SET n = s.n + 1
$$;

CREATE FUNCTION binding_setup(wallets int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM wallet_create_asset('bcredits', 0, 0.01);
	PERFORM wallet_set_price('b.call', 'bcredits', '{"model": "per_unit", "unit_price": "3"}');
	FOR i IN 1..wallets LOOP
		PERFORM wallet_create('bh' || i);
		PERFORM wallet_grant('bh' || i, 'bcredits', 1000);
		PERFORM wallet_grant('bh' || i, 'bcredits', 300, expires_at => now() + interval '3 seconds');
		PERFORM wallet_set_limit('bh' || i, 'bcredits', overdraft => 100, max_holds => 8);
		PERFORM wallet_set_cap('bh' || i, 'bcredits', 2000, 'day', 'user');
	END LOOP;
END
$$;

CREATE FUNCTION binding_step(wallets int, client int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	c text := 'bh' || (1 + floor(random() * wallets))::int;
	r int := floor(random() * 100)::int;
	k int := floor(random() * 100000)::int;
	dims jsonb := jsonb_build_object('user', 'u' || (k % 3));
	res wallet_result;
	h record;
	g bigint;
	q int;
	op text;
BEGIN
	IF r < 30 THEN
		op := 'hold';
		res := wallet_hold(c, 'bcredits', 5 + k % 40, 'h' || k, interval '3 seconds', dims);
	ELSIF r < 55 THEN
		/* capture a random open hold: within it mostly, above it sometimes */
		SELECT ho.id, ho.amount, ho.dimensions INTO h FROM wallet.hold ho
		 WHERE ho.wallet_id = (SELECT id FROM wallet.wallet WHERE customer = c) AND ho.status = 'open'
		 ORDER BY random() LIMIT 1;
		IF h.id IS NULL THEN
			PERFORM binding_note(client, 'capture', 'no_open_hold');
			RETURN;
		END IF;
		IF k % 5 = 0 THEN
			op := 'capture_above';
			q := h.amount / 3 + 1 + k % 10;
		ELSE
			op := 'capture_within';
			q := 1 + k % greatest(1, h.amount / 3);
		END IF;
		res := wallet_capture(h.id, 'b.call', q, coalesce(h.dimensions, '{}'));
		IF op = 'capture_within' AND NOT res.approved THEN
			PERFORM binding_note(client, op, 'within_declined');
			RETURN;
		END IF;
	ELSIF r < 62 THEN
		op := 'release';
		SELECT ho.id INTO g FROM wallet.hold ho
		 WHERE ho.wallet_id = (SELECT id FROM wallet.wallet WHERE customer = c) AND ho.status = 'open'
		 ORDER BY random() LIMIT 1;
		IF g IS NULL THEN
			PERFORM binding_note(client, op, 'no_open_hold');
			RETURN;
		END IF;
		res := wallet_release(g);
	ELSIF r < 77 THEN
		op := 'debit';
		res := wallet_debit(c, 'bcredits', 1 + k % 30, 'd' || k, dims);
	ELSIF r < 84 THEN
		op := 'grant';
		PERFORM wallet_grant(c, 'bcredits', 20 + k % 200,
			expires_at => CASE WHEN k % 2 = 0 THEN now() + (1 + k % 4) * interval '1 second' END,
			external_ref => 'pay-' || c || '-' || k);
		PERFORM binding_note(client, op, 'ok');
		RETURN;
	ELSIF r < 89 THEN
		op := 'void';
		SELECT gb.id INTO g FROM wallet.grant_block gb
		 WHERE gb.wallet_id = (SELECT id FROM wallet.wallet WHERE customer = c)
		   AND gb.closed_at IS NULL AND gb.voided_at IS NULL
		 ORDER BY random() LIMIT 1;
		IF g IS NOT NULL THEN
			PERFORM wallet_void_grant(g, 'stress');
		END IF;
		PERFORM binding_note(client, op, 'ok');
		RETURN;
	ELSIF r < 93 THEN
		op := 'status';
		PERFORM wallet_set_status(c, CASE WHEN k % 4 = 0 THEN 'frozen' ELSE 'active' END);
		PERFORM binding_note(client, op, 'ok');
		RETURN;
	ELSIF r < 96 THEN
		op := 'cap';
		PERFORM wallet_set_cap(c, 'bcredits', 100 + k % 3000, 'day', 'user');
		PERFORM binding_note(client, op, 'ok');
		RETURN;
	ELSE
		op := 'sweep';
		PERFORM wallet_sweep();
		PERFORM binding_note(client, op, 'ok');
		RETURN;
	END IF;
	PERFORM binding_note(client, op, CASE WHEN res.replayed THEN 'replayed'
								  WHEN res.approved THEN 'approved' ELSE res.reason END);
EXCEPTION
	WHEN SQLSTATE 'WL004' OR SQLSTATE 'WL005' THEN
		-- a key reused for another amount; a hold resolved or expired under us
		PERFORM binding_note(client, op, SQLSTATE);
END
$$;
