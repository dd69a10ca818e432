-- bench/peer.sql: the PL/pgSQL peer of wallet_authorize_debit.
--
-- What a competent team would write without the extension: the same model
-- (wallets, grants in drawdown order, versioned prices, idempotent events, a
-- ledger line per grant drawn), amounts as bigint minor units, one function.
-- Its indexes serve what the extension's serve: events by wallet and key
-- (unique) and by id, ledger lines by event (refunds) and by wallet
-- (statements), a wallet's open grants; its ledger has a primary key besides.
-- Loaded by bench/run into schema peer; it is the yardstick of the benchmark,
-- not part of the extension.

CREATE SCHEMA peer;

CREATE TABLE peer.wallets (
	id			bigserial PRIMARY KEY,
	customer	text NOT NULL UNIQUE,
	status		text NOT NULL DEFAULT 'active'
);

-- versioned prices: per_unit only (quantity / per * unit_price), a
-- customer's own price winning over the default
CREATE TABLE peer.prices (
	id				bigserial PRIMARY KEY,
	meter			text NOT NULL,
	asset			text NOT NULL,
	scale			int NOT NULL,
	unit_price		numeric NOT NULL,
	per				bigint NOT NULL DEFAULT 1,
	effective_at	timestamptz NOT NULL,
	customer		text
);
CREATE INDEX prices_meter ON peer.prices (meter, effective_at);

CREATE TABLE peer.grants (
	id				bigserial PRIMARY KEY,
	wallet_id		bigint NOT NULL REFERENCES peer.wallets (id),
	asset			text NOT NULL,
	category		text NOT NULL,		-- paid, bundled, promotional
	priority		int NOT NULL DEFAULT 100,
	amount			bigint NOT NULL,
	remaining		bigint NOT NULL CHECK (remaining >= 0),
	effective_at	timestamptz NOT NULL DEFAULT now(),
	expires_at		timestamptz,
	voided_at		timestamptz
);
-- the drawdown index: a wallet's grants that still hold value
CREATE INDEX grants_open ON peer.grants (wallet_id, asset) WHERE remaining > 0 AND voided_at IS NULL;

CREATE TABLE peer.events (
	id				bigserial PRIMARY KEY,
	wallet_id		bigint NOT NULL,
	idempotency_key	text NOT NULL,
	meter			text NOT NULL,
	quantity		numeric NOT NULL,
	asset			text NOT NULL,
	amount			bigint NOT NULL,
	price_id		bigint NOT NULL,
	occurred_at		timestamptz NOT NULL,
	recorded_at		timestamptz NOT NULL DEFAULT now(),
	balance_after	bigint NOT NULL,
	UNIQUE (wallet_id, idempotency_key)
);

CREATE TABLE peer.ledger (
	id			bigserial PRIMARY KEY,
	at			timestamptz NOT NULL DEFAULT now(),
	wallet_id	bigint NOT NULL,
	grant_id	bigint NOT NULL,
	event_id	bigint NOT NULL,
	amount		bigint NOT NULL
);
CREATE INDEX ledger_event ON peer.ledger (event_id);		-- a debit's lines (refunds)
CREATE INDEX ledger_wallet ON peer.ledger (wallet_id);		-- a customer's statement

CREATE TYPE peer.result AS (
	approved	boolean,
	replayed	boolean,
	reason		text,
	event_id	bigint,
	asset		text,
	amount		bigint,
	balance		bigint
);

-- price, check and debit usage in one step, idempotent per (customer, key)
CREATE FUNCTION peer.authorize_debit(p_customer text, p_meter text, p_quantity numeric,
	p_key text, p_occurred_at timestamptz DEFAULT now())
RETURNS peer.result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w		peer.wallets;
	e		peer.events;
	p		peer.prices;
	g		record;
	amt		bigint;
	avail	bigint;
	left_	bigint;
	take	bigint;
	eid		bigint;
BEGIN
	SELECT * INTO w FROM peer.wallets WHERE customer = p_customer FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no wallet for customer "%"', p_customer USING ERRCODE = 'WL001';
	END IF;

	SELECT * INTO e FROM peer.events WHERE wallet_id = w.id AND idempotency_key = p_key;
	IF FOUND THEN
		IF e.meter <> p_meter OR e.quantity <> p_quantity THEN
			RAISE EXCEPTION 'idempotency key "%" was used for a different request', p_key
				USING ERRCODE = 'WL004';
		END IF;
		RETURN (true, true, NULL, e.id, e.asset, e.amount, e.balance_after)::peer.result;
	END IF;

	SELECT * INTO p FROM peer.prices
	 WHERE meter = p_meter AND effective_at <= p_occurred_at
	   AND (customer IS NULL OR customer = p_customer)
	 ORDER BY customer IS NULL, effective_at DESC LIMIT 1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no price for meter "%"', p_meter USING ERRCODE = 'WL003';
	END IF;
	amt := round(p_quantity * p.unit_price / p.per * 10::numeric ^ p.scale)::bigint;

	SELECT coalesce(sum(remaining), 0) INTO avail FROM peer.grants
	 WHERE wallet_id = w.id AND asset = p.asset AND remaining > 0 AND voided_at IS NULL
	   AND effective_at <= now() AND (expires_at IS NULL OR expires_at > now());
	IF w.status <> 'active' OR avail < amt THEN
		RETURN (false, false, CASE WHEN w.status <> 'active' THEN 'wallet_' || w.status
								   ELSE 'insufficient_funds' END,
				NULL, p.asset, NULL, avail)::peer.result;
	END IF;

	INSERT INTO peer.events (wallet_id, idempotency_key, meter, quantity, asset, amount,
							 price_id, occurred_at, balance_after)
	VALUES (w.id, p_key, p_meter, p_quantity, p.asset, amt, p.id, p_occurred_at, avail - amt)
	RETURNING id INTO eid;

	left_ := amt;
	FOR g IN
		SELECT id, remaining FROM peer.grants
		 WHERE wallet_id = w.id AND asset = p.asset AND remaining > 0 AND voided_at IS NULL
		   AND effective_at <= now() AND (expires_at IS NULL OR expires_at > now())
		 ORDER BY priority, expires_at NULLS LAST,
				  CASE category WHEN 'promotional' THEN 0 WHEN 'bundled' THEN 1 ELSE 2 END,
				  effective_at, id
	LOOP
		EXIT WHEN left_ = 0;
		take := least(g.remaining, left_);
		UPDATE peer.grants SET remaining = remaining - take WHERE id = g.id;
		INSERT INTO peer.ledger (wallet_id, grant_id, event_id, amount)
		VALUES (w.id, g.id, eid, -take);
		left_ := left_ - take;
	END LOOP;

	RETURN (true, false, NULL, eid, p.asset, amt, avail - amt)::peer.result;
END
$$;
