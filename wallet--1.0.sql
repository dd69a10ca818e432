/* wallet--1.0.sql: real-time usage billing */

\echo Use "CREATE EXTENSION wallet" to load this file. \quit

/*
 * Layout.  Tables live in schema wallet and are named in the singular
 * (wallet.grant_block, wallet.event, wallet.line); the finance views over them
 * carry the plural names of the contract (wallet.grants, wallet.events,
 * wallet.ledger).  Functions live in the extension's schema (@extschema@).
 * Helpers the public functions share are in schema wallet, named _like_this.
 *
 * Every amount column holds minor units of its asset as bigint.
 */

CREATE SCHEMA IF NOT EXISTS wallet;
COMMENT ON SCHEMA wallet IS 'wallet: tables, finance views and internal helpers';

/* ---------------------------------------------------------------- tables */

CREATE TABLE wallet.asset (
	code		text PRIMARY KEY CHECK (code ~ '^[A-Za-z][A-Za-z0-9_.:-]{0,31}$'),
	scale		int NOT NULL CHECK (scale BETWEEN 0 AND 12),
	unit_value	numeric NOT NULL CHECK (unit_value >= 0),
	description	text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE wallet.asset IS 'units balances are kept in; scale = decimal places kept exactly';

CREATE TABLE wallet.wallet (
	id			bigserial PRIMARY KEY,
	customer	text NOT NULL UNIQUE,
	status		text NOT NULL DEFAULT 'active'
				CHECK (status IN ('active', 'frozen', 'closed')),
	metadata	jsonb NOT NULL DEFAULT '{}',
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE wallet.wallet IS 'one wallet per customer';

/*
 * One row per wallet and asset.  Every call that changes a wallet's value in an
 * asset first UPDATEs this row (the lock), so calls on one balance serialize
 * and REPEATABLE READ callers get a serialization failure instead of a stale
 * read.  Grants, holds and events of the pair are only written under it.
 */
CREATE TABLE wallet.account (
	wallet_id		bigint NOT NULL REFERENCES wallet.wallet (id),
	asset			text NOT NULL REFERENCES wallet.asset (code),
	overdraft_limit	bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
	low_balance		bigint,
	max_holds		int CHECK (max_holds >= 0),
	overdraft		bigint NOT NULL DEFAULT 0 CHECK (overdraft >= 0),
	held			bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
	holds_open		int NOT NULL DEFAULT 0 CHECK (holds_open >= 0),
	touches			bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (wallet_id, asset)
);
COMMENT ON TABLE wallet.account IS
	'balance row per wallet and asset: limits, overdraft in use, open holds; the lock of the hot path';
COMMENT ON COLUMN wallet.account.held IS
	'sum of holds with status open, including those whose ttl has passed but which no sweep has closed';

CREATE TABLE wallet.grant_block (
	id				bigserial PRIMARY KEY,
	wallet_id		bigint NOT NULL,
	asset			text NOT NULL,
	category		text NOT NULL CHECK (category IN ('paid', 'bundled', 'promotional')),
	priority		int NOT NULL,
	amount			bigint NOT NULL CHECK (amount > 0),
	remaining		bigint NOT NULL CHECK (remaining >= 0),
	unit_revenue	numeric NOT NULL CHECK (unit_revenue >= 0),
	effective_at	timestamptz NOT NULL,
	expires_at		timestamptz CHECK (expires_at > effective_at),
	recurrence		interval,
	rollover_max	bigint NOT NULL DEFAULT 0 CHECK (rollover_max >= 0),
	resets			bigint NOT NULL DEFAULT 0,
	voided_at		timestamptz,
	closed_at		timestamptz,
	external_ref	text UNIQUE,
	metadata		jsonb NOT NULL DEFAULT '{}',
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	FOREIGN KEY (wallet_id, asset) REFERENCES wallet.account (wallet_id, asset)
);
COMMENT ON TABLE wallet.grant_block IS
	'blocks of value in a wallet; remaining is as of the last reset applied (resets = boundaries applied)';
COMMENT ON COLUMN wallet.grant_block.closed_at IS
	'set when the grant can no longer change the balance (voided, expiry recorded, used up); leaves the drawdown index';
CREATE INDEX grant_block_open ON wallet.grant_block (wallet_id, asset) WHERE closed_at IS NULL;

CREATE TABLE wallet.hold (
	id				bigserial PRIMARY KEY,
	wallet_id		bigint NOT NULL,
	asset			text NOT NULL,
	amount			bigint NOT NULL CHECK (amount > 0),
	idempotency_key	text NOT NULL,
	status			text NOT NULL DEFAULT 'open'
					CHECK (status IN ('open', 'captured', 'released', 'expired')),
	created_at		timestamptz NOT NULL,
	expires_at		timestamptz NOT NULL,
	closed_at		timestamptz,
	event_id		bigint,
	balance_after	bigint NOT NULL,
	UNIQUE (wallet_id, idempotency_key)
);
COMMENT ON TABLE wallet.hold IS 'value reserved before work runs; open until captured, released or expired';

CREATE TABLE wallet.event (
	id				bigserial PRIMARY KEY,
	wallet_id		bigint NOT NULL,
	idempotency_key	text,
	meter			text,
	quantity		numeric,
	dimensions		jsonb,
	occurred_at		timestamptz NOT NULL,
	recorded_at		timestamptz NOT NULL,
	asset			text NOT NULL,
	amount			bigint NOT NULL CHECK (amount >= 0),
	price_id		bigint,
	cost			numeric,
	revenue			numeric NOT NULL DEFAULT 0,
	hold_id			bigint,
	refunded		bigint NOT NULL DEFAULT 0,
	balance_after	bigint NOT NULL,
	CHECK (refunded BETWEEN 0 AND amount)
);
COMMENT ON TABLE wallet.event IS 'one priced, debited usage record (a debit, an authorized debit or a capture)';
CREATE UNIQUE INDEX event_key ON wallet.event (wallet_id, idempotency_key);

/*
 * The ledger: the wallet's side of every movement, signed, append-only.
 * A line with grant_id null moves overdraft.
 */
CREATE TABLE wallet.line (
	id			bigserial,
	at			timestamptz NOT NULL,
	wallet_id	bigint NOT NULL,
	asset		text NOT NULL,
	grant_id	bigint,
	event_id	bigint,
	hold_id		bigint,
	kind		text NOT NULL CHECK (kind IN ('grant', 'debit', 'refund', 'expiry', 'reset',
										 'void', 'hold', 'release', 'repay')),
	amount		bigint NOT NULL
);
COMMENT ON TABLE wallet.line IS 'append-only ledger lines; never updated or deleted';
CREATE INDEX line_event ON wallet.line (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX line_wallet ON wallet.line (wallet_id, asset);

CREATE TABLE wallet.price (
	id				bigserial PRIMARY KEY,
	meter			text NOT NULL,
	asset			text NOT NULL REFERENCES wallet.asset (code),
	rule			jsonb NOT NULL,
	effective_at	timestamptz NOT NULL,
	plan			text,
	customer		text,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK (plan IS NULL OR customer IS NULL)
);
COMMENT ON TABLE wallet.price IS 'price versions per meter; validated and compiled by wallet_set_price';
CREATE INDEX price_meter ON wallet.price (meter, effective_at);

CREATE TABLE wallet.plan_assignment (
	wallet_id		bigint NOT NULL REFERENCES wallet.wallet (id),
	effective_at	timestamptz NOT NULL,
	plan			text,
	PRIMARY KEY (wallet_id, effective_at)
);
COMMENT ON TABLE wallet.plan_assignment IS 'which plan a wallet is on from when (null plan: defaults)';

CREATE TABLE wallet.usage_counter (
	wallet_id		bigint NOT NULL,
	meter			text NOT NULL,
	period			text NOT NULL,
	period_start	timestamptz NOT NULL,
	quantity		numeric NOT NULL,
	PRIMARY KEY (wallet_id, meter, period, period_start)
);
COMMENT ON TABLE wallet.usage_counter IS 'cumulative usage per meter and UTC period, for graduated and volume prices';

CREATE TABLE wallet.outbox (
	id			bigserial PRIMARY KEY,
	at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	customer	text NOT NULL,
	asset		text NOT NULL,
	kind		text NOT NULL,
	available	numeric,
	threshold	numeric,
	detail		jsonb NOT NULL DEFAULT '{}',
	acked_at	timestamptz
);
COMMENT ON TABLE wallet.outbox IS
	'notifications written in the debit''s own transaction (low_balance, declined); pg_notify(''wallet_events'') at commit';
CREATE INDEX outbox_pending ON wallet.outbox (id) WHERE acked_at IS NULL;

/* pg_dump keeps the data of every table and the position of every sequence */
SELECT pg_catalog.pg_extension_config_dump('wallet.asset', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.wallet', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.wallet_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.account', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.grant_block', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.grant_block_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.hold', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.hold_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.event', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.line', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.line_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.price', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.price_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.plan_assignment', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.usage_counter', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.outbox_id_seq', '');

/* ledger lines are never updated or deleted, not even by the owner */
CREATE FUNCTION wallet._append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'wallet.% is append-only', TG_TABLE_NAME
		USING ERRCODE = 'insufficient_privilege',
			  HINT = 'Corrections are new lines: refund, void or grant.';
END
$$;
CREATE TRIGGER line_append_only BEFORE UPDATE OR DELETE ON wallet.line
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._append_only();
CREATE TRIGGER line_no_truncate BEFORE TRUNCATE ON wallet.line
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._append_only();

/* ---------------------------------------------------------------- types */

CREATE TYPE @extschema@.wallet_result AS (
	approved	boolean,
	replayed	boolean,
	reason		text,
	event_id	bigint,
	hold_id		bigint,
	asset		text,
	amount		numeric,
	balance		numeric
);
COMMENT ON TYPE @extschema@.wallet_result IS 'outcome of a hot-path call; a decline is a result, not an error';

/* ------------------------------------------------------- C: amounts, time */

CREATE FUNCTION wallet._minor(asset text, amount numeric, field text DEFAULT 'amount')
RETURNS bigint AS 'MODULE_PATHNAME', 'wallet_minor' LANGUAGE C STABLE;
COMMENT ON FUNCTION wallet._minor(text, numeric, text) IS
	'an amount in asset units as minor units; 22023, 22003, WL002, WL006 as the contract says';

CREATE FUNCTION wallet._major(asset text, minor bigint)
RETURNS numeric AS 'MODULE_PATHNAME', 'wallet_major' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION wallet._major(text, bigint) IS 'minor units as numeric at exactly the asset''s scale';

CREATE FUNCTION wallet._touch(wallet_id bigint, asset text)
RETURNS void AS 'MODULE_PATHNAME', 'wallet_touch' LANGUAGE C STRICT;
COMMENT ON FUNCTION wallet._touch(bigint, text) IS
	'locks the balance row (creating it if missing) and writes down the resets time has made';

CREATE FUNCTION wallet._pending(as_of timestamptz, only_wallet bigint DEFAULT NULL)
RETURNS TABLE (wallet_id bigint, asset text, grant_id bigint, kind text, at timestamptz, amount bigint, resets bigint)
AS 'MODULE_PATHNAME', 'wallet_pending' LANGUAGE C STABLE;
COMMENT ON FUNCTION wallet._pending(timestamptz, bigint) IS
	'ledger lines time has made by as_of (resets, expiries) that nobody has written down yet';

CREATE FUNCTION wallet._prices_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'wallet_prices_changed' LANGUAGE C;
COMMENT ON FUNCTION wallet._prices_changed() IS 'drops every backend''s compiled price cache at commit';
CREATE TRIGGER price_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON wallet.price
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._prices_changed();

CREATE FUNCTION wallet._check_rule(rule jsonb, asset text)
RETURNS void AS 'MODULE_PATHNAME', 'wallet_check_rule' LANGUAGE C STABLE;
COMMENT ON FUNCTION wallet._check_rule(jsonb, text) IS 'validates a price rule: 22023 naming the bad field';

/* -------------------------------------------------------- configuration */

CREATE FUNCTION wallet._wallet_id(customer text) RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint;
BEGIN
	IF customer IS NULL THEN
		RAISE EXCEPTION 'customer must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT id INTO w FROM wallet.wallet WHERE wallet.wallet.customer = _wallet_id.customer;
	IF w IS NULL THEN
		RAISE EXCEPTION 'no wallet for customer "%"', customer USING ERRCODE = 'WL001',
			HINT = 'Create it with wallet_create().';
	END IF;
	RETURN w;
END
$$;

CREATE FUNCTION @extschema@.wallet_create_asset(code text, scale int DEFAULT 2,
	unit_value numeric DEFAULT NULL, description text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old wallet.asset;
BEGIN
	IF code IS NULL OR code !~ '^[A-Za-z][A-Za-z0-9_.:-]{0,31}$' THEN
		RAISE EXCEPTION 'invalid asset code "%"', code USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'An asset code is 1 to 32 letters, digits or _.:- and starts with a letter.';
	END IF;
	IF scale IS NULL OR scale NOT BETWEEN 0 AND 12 THEN
		RAISE EXCEPTION 'invalid scale % for asset "%"', scale, code
			USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The scale is 0 to 12 decimal places.';
	END IF;
	IF unit_value IS NOT NULL AND (unit_value = 'NaN' OR unit_value IN ('Infinity', '-Infinity') OR unit_value < 0) THEN
		RAISE EXCEPTION 'invalid unit_value % for asset "%"', unit_value, code
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO old FROM wallet.asset a WHERE a.code = wallet_create_asset.code;
	IF FOUND THEN
		IF old.scale <> scale THEN
			RAISE EXCEPTION 'asset "%" exists with scale %', code, old.scale
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'The scale of an asset cannot change once amounts are kept in it.';
		END IF;
		UPDATE wallet.asset a SET unit_value = coalesce(wallet_create_asset.unit_value, a.unit_value),
			description = coalesce(wallet_create_asset.description, a.description)
		 WHERE a.code = wallet_create_asset.code;
		RETURN;
	END IF;
	INSERT INTO wallet.asset (code, scale, unit_value, description)
	VALUES (code, scale, coalesce(unit_value, 1), description);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_create_asset(text, int, numeric, text) IS
	'creates an asset (or updates unit_value and description of an existing one; the scale is fixed)';

CREATE FUNCTION @extschema@.wallet_create(customer text, metadata jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint;
BEGIN
	IF customer IS NULL OR customer = '' OR length(customer) > 256 THEN
		RAISE EXCEPTION 'invalid customer "%"', left(customer, 64) USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'A customer id is 1 to 256 characters.';
	END IF;
	IF metadata IS NULL OR jsonb_typeof(metadata) <> 'object' THEN
		RAISE EXCEPTION 'metadata must be a json object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO wallet.wallet (customer, metadata) VALUES (customer, metadata)
	ON CONFLICT ON CONSTRAINT wallet_customer_key DO NOTHING
	RETURNING id INTO w;
	IF w IS NULL THEN
		SELECT id INTO w FROM wallet.wallet ww WHERE ww.customer = wallet_create.customer;
	END IF;
	RETURN w;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_create(text, jsonb) IS 'the wallet id of a customer; idempotent';

CREATE FUNCTION @extschema@.wallet_set_limit(customer text, asset text, overdraft numeric DEFAULT 0,
	low_balance numeric DEFAULT NULL, max_holds int DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
	od bigint;
	lb bigint;
BEGIN
	IF overdraft IS NULL THEN
		RAISE EXCEPTION 'overdraft must not be null' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use 0 for no overdraft.';
	END IF;
	od := CASE WHEN overdraft = 0 THEN 0 ELSE wallet._minor(asset, overdraft, 'overdraft') END;
	PERFORM wallet._minor(asset, 1, 'asset');	/* WL002 for an unknown asset */
	IF low_balance IS NOT NULL THEN
		lb := CASE WHEN low_balance = 0 THEN 0 ELSE wallet._minor(asset, abs(low_balance), 'low_balance') * sign(low_balance)::int END;
	END IF;
	IF max_holds IS NOT NULL AND max_holds < 0 THEN
		RAISE EXCEPTION 'max_holds must not be negative: %', max_holds USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM wallet._touch(w, asset);
	UPDATE wallet.account a SET overdraft_limit = od, low_balance = lb,
		max_holds = wallet_set_limit.max_holds
	 WHERE a.wallet_id = w AND a.asset = wallet_set_limit.asset;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_set_limit(text, text, numeric, numeric, int) IS
	'overdraft limit, low-balance threshold and open-hold cap of a wallet in one asset';

CREATE FUNCTION @extschema@.wallet_set_status(customer text, status text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
BEGIN
	IF status IS NULL OR status NOT IN ('active', 'frozen', 'closed') THEN
		RAISE EXCEPTION 'unknown wallet status "%"', status USING ERRCODE = 'invalid_parameter_value',
			HINT = 'The statuses are active, frozen and closed.';
	END IF;
	UPDATE wallet.wallet ww SET status = wallet_set_status.status WHERE ww.id = w;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_set_status(text, text) IS
	'active; frozen (debits and holds decline, grants and refunds land); closed (debits, holds and grants refused)';

/*
 * A grant.  Repays overdraft of its asset first when it is live now.
 */
CREATE FUNCTION @extschema@.wallet_grant(customer text, asset text, amount numeric,
	priority int DEFAULT 100, expires_at timestamptz DEFAULT NULL,
	effective_at timestamptz DEFAULT now(), category text DEFAULT 'paid',
	unit_revenue numeric DEFAULT NULL, external_ref text DEFAULT NULL,
	recurrence interval DEFAULT NULL, rollover_max numeric DEFAULT 0,
	metadata jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
	amt bigint := wallet._minor(asset, amount);
	roll bigint;
	rev numeric;
	g wallet.grant_block;
	acct wallet.account;
	st text;
	repay bigint;
	eff timestamptz := coalesce(effective_at, now());
BEGIN
	IF category IS NULL OR category NOT IN ('paid', 'bundled', 'promotional') THEN
		RAISE EXCEPTION 'unknown grant category "%"', category USING ERRCODE = 'invalid_parameter_value',
			HINT = 'The categories are paid, bundled and promotional.';
	END IF;
	IF priority IS NULL THEN
		RAISE EXCEPTION 'priority must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF expires_at IS NOT NULL AND expires_at IN ('infinity', '-infinity') OR eff IN ('infinity', '-infinity') THEN
		RAISE EXCEPTION 'grant times must be finite' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF expires_at IS NOT NULL AND expires_at <= eff THEN
		RAISE EXCEPTION 'expires_at % is not after effective_at %', expires_at, eff
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF recurrence IS NOT NULL AND (recurrence <= interval '0' OR eff + recurrence <= eff) THEN
		RAISE EXCEPTION 'recurrence must be a positive interval: %', recurrence
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF rollover_max IS NULL OR rollover_max < 0 THEN
		RAISE EXCEPTION 'rollover_max must be zero or positive: %', rollover_max
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	roll := CASE WHEN rollover_max = 0 THEN 0 ELSE wallet._minor(asset, rollover_max, 'rollover_max') END;
	IF unit_revenue IS NOT NULL AND (unit_revenue = 'NaN' OR unit_revenue IN ('Infinity', '-Infinity') OR unit_revenue < 0) THEN
		RAISE EXCEPTION 'invalid unit_revenue %', unit_revenue USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF metadata IS NULL OR jsonb_typeof(metadata) <> 'object' THEN
		RAISE EXCEPTION 'metadata must be a json object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	rev := coalesce(unit_revenue, CASE WHEN category = 'paid'
		THEN (SELECT a.unit_value FROM wallet.asset a WHERE a.code = wallet_grant.asset) ELSE 0 END);

	SELECT ww.status INTO st FROM wallet.wallet ww WHERE ww.id = w;
	IF st = 'closed' THEN
		RAISE EXCEPTION 'wallet of customer "%" is closed', customer USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;

	PERFORM wallet._touch(w, asset);

	IF external_ref IS NOT NULL THEN
		SELECT * INTO g FROM wallet.grant_block gb WHERE gb.external_ref = wallet_grant.external_ref;
		IF FOUND THEN
			IF g.wallet_id <> w OR g.asset <> wallet_grant.asset OR g.amount <> amt
			   OR g.category <> wallet_grant.category OR g.priority <> wallet_grant.priority
			   OR g.expires_at IS DISTINCT FROM wallet_grant.expires_at
			   OR g.recurrence IS DISTINCT FROM wallet_grant.recurrence
			   OR g.rollover_max <> roll OR g.unit_revenue <> rev THEN
				RAISE EXCEPTION 'external_ref "%" was used for a different grant', external_ref
					USING ERRCODE = 'WL004', DETAIL = format('It is grant %s.', g.id);
			END IF;
			RETURN g.id;
		END IF;
	END IF;

	INSERT INTO wallet.grant_block (wallet_id, asset, category, priority, amount, remaining,
		unit_revenue, effective_at, expires_at, recurrence, rollover_max, external_ref, metadata)
	VALUES (w, asset, category, priority, amt, amt, rev, eff, expires_at, recurrence, roll,
		external_ref, metadata)
	RETURNING * INTO g;
	INSERT INTO wallet.line (at, wallet_id, asset, grant_id, kind, amount)
	VALUES (greatest(now(), eff), w, asset, g.id, 'grant', amt);

	/* a new grant first repays overdraft, when it is live now */
	SELECT * INTO acct FROM wallet.account a WHERE a.wallet_id = w AND a.asset = wallet_grant.asset;
	IF acct.overdraft > 0 AND eff <= now() AND (expires_at IS NULL OR expires_at > now()) THEN
		repay := least(acct.overdraft, amt);
		UPDATE wallet.grant_block gb SET remaining = remaining - repay WHERE gb.id = g.id;
		UPDATE wallet.account a SET overdraft = overdraft - repay
		 WHERE a.wallet_id = w AND a.asset = wallet_grant.asset;
		INSERT INTO wallet.line (at, wallet_id, asset, grant_id, kind, amount)
		VALUES (now(), w, asset, g.id, 'repay', -repay), (now(), w, asset, NULL, 'repay', repay);
	END IF;
	RETURN g.id;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text,
	numeric, text, interval, numeric, jsonb) IS
	'adds a block of value; idempotent per external_ref; repays overdraft first';

/* ------------------------------------------------------------- hot path */

CREATE FUNCTION @extschema@.wallet_debit(customer text, asset text, amount numeric,
	idempotency_key text, dimensions jsonb DEFAULT '{}', cost numeric DEFAULT NULL)
RETURNS @extschema@.wallet_result AS 'MODULE_PATHNAME', 'wallet_debit' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.wallet_debit(text, text, numeric, text, jsonb, numeric) IS
	'debits a known amount in drawdown order, atomically and idempotently';

CREATE FUNCTION @extschema@.wallet_authorize_debit(customer text, meter text, quantity numeric,
	idempotency_key text, dimensions jsonb DEFAULT '{}', occurred_at timestamptz DEFAULT now(),
	cost numeric DEFAULT NULL)
RETURNS @extschema@.wallet_result AS 'MODULE_PATHNAME', 'wallet_authorize_debit' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.wallet_authorize_debit(text, text, numeric, text, jsonb, timestamptz, numeric) IS
	'prices usage with the price in force at occurred_at, checks the live balance and debits it, in one step';

CREATE FUNCTION @extschema@.wallet_hold(customer text, asset text, amount numeric,
	idempotency_key text, ttl interval DEFAULT '15 minutes')
RETURNS @extschema@.wallet_result AS 'MODULE_PATHNAME', 'wallet_hold' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.wallet_hold(text, text, numeric, text, interval) IS
	'reserves value before the work runs, for ttl';

CREATE FUNCTION @extschema@.wallet_capture(hold_id bigint, meter text, quantity numeric,
	dimensions jsonb DEFAULT '{}', cost numeric DEFAULT NULL)
RETURNS @extschema@.wallet_result AS 'MODULE_PATHNAME', 'wallet_capture' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.wallet_capture(bigint, text, numeric, jsonb, numeric) IS
	'prices the actual usage, debits it and releases the rest of the hold';

CREATE FUNCTION @extschema@.wallet_release(hold_id bigint)
RETURNS @extschema@.wallet_result AS 'MODULE_PATHNAME', 'wallet_release' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.wallet_release(bigint) IS 'frees a hold without charging';

/* -------------------------------------------------------------- reading */

CREATE FUNCTION @extschema@.wallet_balance(customer text, asset text)
RETURNS numeric AS 'MODULE_PATHNAME', 'wallet_balance' LANGUAGE C STABLE;
COMMENT ON FUNCTION @extschema@.wallet_balance(text, text) IS 'available now: live grants - open holds - overdraft used';

CREATE FUNCTION @extschema@.wallet_balances(customer text)
RETURNS TABLE (asset text, available numeric, held numeric, granted numeric, overdraft numeric)
AS 'MODULE_PATHNAME', 'wallet_balances' LANGUAGE C STABLE;
COMMENT ON FUNCTION @extschema@.wallet_balances(text) IS 'every asset of a wallet: available, held, granted, overdraft';

/* -------------------------------------------------------------- pricing */

CREATE FUNCTION @extschema@.wallet_set_price(meter text, asset text, rule jsonb,
	effective_at timestamptz DEFAULT now(), plan text DEFAULT NULL, customer text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	id bigint;
BEGIN
	IF meter IS NULL OR meter = '' OR length(meter) > 127 THEN
		RAISE EXCEPTION 'invalid meter "%"', left(meter, 64) USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'A meter name is 1 to 127 characters.';
	END IF;
	IF effective_at IS NULL OR effective_at IN ('infinity', '-infinity') THEN
		RAISE EXCEPTION 'effective_at must be a finite time' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF plan IS NOT NULL AND customer IS NOT NULL THEN
		RAISE EXCEPTION 'a price is for a plan or for a customer, not both'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF plan = '' OR customer = '' THEN
		RAISE EXCEPTION 'plan and customer must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM wallet._check_rule(rule, asset);
	INSERT INTO wallet.price (meter, asset, rule, effective_at, plan, customer)
	VALUES (meter, asset, rule, effective_at, plan, customer)
	RETURNING wallet.price.id INTO id;
	RETURN id;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_set_price(text, text, jsonb, timestamptz, text, text) IS
	'adds a price version for a meter (default, a plan''s, or one customer''s negotiated rate)';

CREATE FUNCTION @extschema@.wallet_assign_plan(customer text, plan text,
	effective_at timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
BEGIN
	IF effective_at IS NULL OR effective_at IN ('infinity', '-infinity') THEN
		RAISE EXCEPTION 'effective_at must be a finite time' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF plan = '' THEN
		RAISE EXCEPTION 'plan must not be empty' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use null to move the customer back to default prices.';
	END IF;
	INSERT INTO wallet.plan_assignment AS pa (wallet_id, effective_at, plan)
	VALUES (w, effective_at, plan)
	ON CONFLICT (wallet_id, effective_at) DO UPDATE SET plan = excluded.plan;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_assign_plan(text, text, timestamptz) IS
	'puts a customer on a plan from effective_at (null: back to default prices)';

/* ------------------------------------------------------------ outbox */

CREATE FUNCTION @extschema@.wallet_outbox_ack(id bigint)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE wallet.outbox o SET acked_at = coalesce(o.acked_at, now()) WHERE o.id = wallet_outbox_ack.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no outbox row %', id USING ERRCODE = 'WL007';
	END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_outbox_ack(bigint) IS 'marks an outbox row handled';

/* ------------------------------------------------------------- views */

CREATE VIEW wallet.balances AS
SELECT w.customer, b.asset, b.available, b.held, b.granted, b.overdraft
  FROM wallet.wallet w, LATERAL @extschema@.wallet_balances(w.customer) b;
COMMENT ON VIEW wallet.balances IS 'every wallet and asset: available, held, granted (live grants), overdraft in use';

CREATE VIEW wallet.grants AS
SELECT g.id, w.customer, g.asset, g.category, g.priority,
	   wallet._major(g.asset, g.amount) AS amount,
	   wallet._major(g.asset, g.remaining + coalesce(p.amount, 0)) AS remaining,
	   g.unit_revenue, g.effective_at, g.expires_at, g.voided_at, g.recurrence,
	   wallet._major(g.asset, g.rollover_max) AS rollover_max, g.external_ref, g.metadata, g.created_at
  FROM wallet.grant_block g
  JOIN wallet.wallet w ON w.id = g.wallet_id
  LEFT JOIN (SELECT pp.grant_id, sum(pp.amount)::bigint AS amount
			   FROM wallet._pending(now()) pp GROUP BY pp.grant_id) p ON p.grant_id = g.id;
COMMENT ON VIEW wallet.grants IS 'grants, with remaining as of now (resets applied, expired ones at 0)';

CREATE VIEW wallet.events AS
SELECT e.id, w.customer, e.meter, e.quantity, coalesce(e.dimensions, '{}') AS dimensions,
	   e.occurred_at, e.recorded_at, e.idempotency_key, e.asset,
	   wallet._major(e.asset, e.amount) AS amount, e.price_id, e.cost, e.revenue, e.hold_id,
	   wallet._major(e.asset, e.refunded) AS refunded
  FROM wallet.event e
  JOIN wallet.wallet w ON w.id = e.wallet_id;
COMMENT ON VIEW wallet.events IS 'priced, debited usage events';

CREATE VIEW wallet.ledger AS
SELECT l.id, l.at, w.customer, l.asset, l.grant_id, l.event_id, l.hold_id, l.kind,
	   wallet._major(l.asset, l.amount) AS amount
  FROM wallet.line l
  JOIN wallet.wallet w ON w.id = l.wallet_id
 WHERE l.at <= now()
UNION ALL
SELECT NULL, p.at, w.customer, p.asset, p.grant_id, NULL, NULL, p.kind,
	   wallet._major(p.asset, p.amount)
  FROM wallet._pending(now()) p
  JOIN wallet.wallet w ON w.id = p.wallet_id;
COMMENT ON VIEW wallet.ledger IS
	'every movement of every balance, signed; lines time has made but no sweep has written yet have a null id';

/* ---------------------------------------------------------- invariants */

CREATE FUNCTION @extschema@.wallet_verify()
RETURNS TABLE (problem text, detail text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	/* conservation: ledger lines (but holds) sum to available + held */
	SELECT 'conservation', format('customer %s asset %s: ledger %s, available + held %s',
			b.customer, b.asset, coalesce(l.amount, 0), b.available + b.held)
	  FROM wallet.balances b
	  LEFT JOIN (SELECT customer, asset, sum(amount) AS amount FROM wallet.ledger
				  WHERE kind NOT IN ('hold', 'release') GROUP BY 1, 2) l
		ON l.customer = b.customer AND l.asset = b.asset
	 WHERE coalesce(l.amount, 0) <> b.available + b.held
	UNION ALL
	/* no balance below its overdraft limit */
	SELECT 'overdraft_limit', format('customer %s asset %s: available %s, limit %s',
			b.customer, b.asset, b.available, wallet._major(a.asset, a.overdraft_limit))
	  FROM wallet.balances b
	  JOIN wallet.wallet w ON w.customer = b.customer
	  JOIN wallet.account a ON a.wallet_id = w.id AND a.asset = b.asset
	 WHERE b.available < -wallet._major(a.asset, a.overdraft_limit)
	UNION ALL
	/* overdraft in use is what the grant-less lines say */
	SELECT 'overdraft', format('wallet %s asset %s: overdraft %s, lines say %s',
			a.wallet_id, a.asset, a.overdraft, -coalesce(l.amount, 0))
	  FROM wallet.account a
	  LEFT JOIN (SELECT wallet_id, asset, sum(amount) AS amount FROM wallet.line
				  WHERE grant_id IS NULL AND kind NOT IN ('hold', 'release') GROUP BY 1, 2) l
		ON l.wallet_id = a.wallet_id AND l.asset = a.asset
	 WHERE a.overdraft <> -coalesce(l.amount, 0)
	UNION ALL
	/* every grant: 0 <= remaining <= its ceiling, and its lines sum to it */
	SELECT 'grant_remaining', format('grant %s: remaining %s, amount %s, lines %s',
			g.id, g.remaining, g.amount, coalesce(l.amount, 0))
	  FROM wallet.grant_block g
	  LEFT JOIN (SELECT grant_id, sum(amount) AS amount FROM wallet.line
				  WHERE grant_id IS NOT NULL GROUP BY 1) l ON l.grant_id = g.id
	 WHERE g.remaining < 0
		OR g.remaining > g.amount + CASE WHEN g.recurrence IS NULL THEN 0 ELSE g.rollover_max END
		OR g.remaining <> coalesce(l.amount, 0)
	UNION ALL
	/* every event: its debit lines sum to its amount, refunds to what was refunded */
	SELECT 'event_lines', format('event %s: amount %s refunded %s, debit lines %s, refund lines %s',
			e.id, e.amount, e.refunded, -coalesce(l.debits, 0), coalesce(l.refunds, 0))
	  FROM wallet.event e
	  LEFT JOIN (SELECT event_id,
						sum(amount) FILTER (WHERE kind = 'debit') AS debits,
						sum(amount) FILTER (WHERE kind = 'refund') AS refunds
				   FROM wallet.line WHERE event_id IS NOT NULL GROUP BY 1) l ON l.event_id = e.id
	 WHERE coalesce(l.debits, 0) <> -e.amount OR coalesce(l.refunds, 0) <> e.refunded
		OR e.refunded < 0 OR e.refunded > e.amount
	UNION ALL
	/* holds: one hold line each, one release line once resolved, none while open */
	SELECT 'hold_lines', format('hold %s (%s): hold lines %s, release lines %s',
			h.id, h.status, coalesce(l.holds, 0), coalesce(l.releases, 0))
	  FROM wallet.hold h
	  LEFT JOIN (SELECT hold_id,
						count(*) FILTER (WHERE kind = 'hold') AS holds,
						count(*) FILTER (WHERE kind = 'release') AS releases
				   FROM wallet.line WHERE hold_id IS NOT NULL AND kind IN ('hold', 'release')
				  GROUP BY 1) l ON l.hold_id = h.id
	 WHERE coalesce(l.holds, 0) <> 1
		OR coalesce(l.releases, 0) <> CASE WHEN h.status = 'open' THEN 0 ELSE 1 END
		OR (h.status = 'captured') <> (h.event_id IS NOT NULL)
	UNION ALL
	/* the balance row's hold totals match the open holds */
	SELECT 'held', format('wallet %s asset %s: held %s (%s open), holds say %s (%s open)',
			a.wallet_id, a.asset, a.held, a.holds_open, coalesce(h.amount, 0), coalesce(h.n, 0))
	  FROM wallet.account a
	  LEFT JOIN (SELECT wallet_id, asset, sum(amount) AS amount, count(*) AS n FROM wallet.hold
				  WHERE status = 'open' GROUP BY 1, 2) h
		ON h.wallet_id = a.wallet_id AND h.asset = a.asset
	 WHERE a.held <> coalesce(h.amount, 0) OR a.holds_open <> coalesce(h.n, 0)
	UNION ALL
	/* an idempotency key names one request: an event or a hold, not both */
	SELECT 'idempotency', format('wallet %s key %s is both an event and a hold', e.wallet_id, e.idempotency_key)
	  FROM wallet.event e
	  JOIN wallet.hold h ON h.wallet_id = e.wallet_id AND h.idempotency_key = e.idempotency_key
$$;
COMMENT ON FUNCTION @extschema@.wallet_verify() IS
	'every invariant checked from the ledger up; no rows means consistent';

/* ------------------------------------------------------------ scale-out */

/*
 * Scale-out (src/shard.c; the router side is the wallet_proxy extension).
 * A shard is a database with wallet.shards > 0: it owns the customers whose
 * hashtext(customer) & (wallet.shards - 1) is wallet.shard.  Its ids that a
 * router routes by (wallets, grants, holds, events, outbox rows) carry their
 * customer's routing bits, hashtext(customer) & 32767, in bits 48..62, so that
 * (id >> 48) & (partitions - 1) names the customer's partition.  With
 * wallet.shards = 0 (the default) nothing changes: ids stay plain, and the
 * triggers on the hot-path tables do not even fire.
 */
CREATE FUNCTION wallet._sharded() RETURNS boolean
AS 'MODULE_PATHNAME', 'wallet_sharded' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wallet._sharded() IS 'whether this database is a shard (wallet.shards > 0)';

CREATE FUNCTION wallet._route_id() RETURNS trigger
AS 'MODULE_PATHNAME', 'wallet_route_id' LANGUAGE C;
COMMENT ON FUNCTION wallet._route_id() IS
	'BEFORE INSERT: puts the routing bits of the row''s customer (argument: customer or wallet_id) into its id';

CREATE TRIGGER route_id BEFORE INSERT ON wallet.wallet
	FOR EACH ROW EXECUTE FUNCTION wallet._route_id('customer', 'owner');
CREATE TRIGGER route_id BEFORE INSERT ON wallet.outbox
	FOR EACH ROW EXECUTE FUNCTION wallet._route_id('customer');
CREATE TRIGGER route_id BEFORE INSERT ON wallet.grant_block
	FOR EACH ROW WHEN (NEW.wallet_id > 281474976710655 OR wallet._sharded()) EXECUTE FUNCTION wallet._route_id('wallet_id');
CREATE TRIGGER route_id BEFORE INSERT ON wallet.hold
	FOR EACH ROW WHEN (NEW.wallet_id > 281474976710655 OR wallet._sharded()) EXECUTE FUNCTION wallet._route_id('wallet_id');
CREATE TRIGGER route_id BEFORE INSERT ON wallet.event
	FOR EACH ROW WHEN (NEW.wallet_id > 281474976710655 OR wallet._sharded()) EXECUTE FUNCTION wallet._route_id('wallet_id');

CREATE FUNCTION wallet._route_hash(customer text) RETURNS int
AS 'MODULE_PATHNAME', 'wallet_route_hash' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wallet._route_hash(text) IS
	'the routing bits of a customer: hashtext(customer) & 32767, what its ids carry in bits 48..62';

CREATE FUNCTION wallet._shard_owner(customer text) RETURNS int
AS 'MODULE_PATHNAME', 'wallet_shard_owner' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wallet._shard_owner(text) IS
	'the shard that owns a customer under wallet.shards (hashtext & (shards - 1)); null when not sharded';

CREATE FUNCTION @extschema@.wallet_shard_check()
RETURNS TABLE (problem text, detail text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	shards int;
	shard int;
BEGIN
	IF wallet._shard_owner('') IS NULL THEN		/* not a shard (this also loads the settings) */
		RETURN;
	END IF;
	shards := current_setting('wallet.shards')::int;
	shard := current_setting('wallet.shard')::int;
	/* customers another shard owns: left by a split until wallet_shard_prune() */
	RETURN QUERY
	SELECT 'misplaced', format('customer %s belongs to shard %s, this is shard %s of %s',
			w.customer, wallet._shard_owner(w.customer), shard, shards)
	  FROM wallet.wallet w
	 WHERE wallet._shard_owner(w.customer) <> shard;
	/* ids with routing bits that are not their customer's (plain ids, from before, are found by search) */
	RETURN QUERY
	SELECT 'route_bits', format('%s %s of customer %s: the id routes by %s, the customer by %s',
			x.kind, x.id, w.customer, x.id >> 48, wallet._route_hash(w.customer))
	  FROM (SELECT 'wallet' AS kind, ww.id, ww.id AS wallet_id FROM wallet.wallet ww
			UNION ALL SELECT 'grant', g.id, g.wallet_id FROM wallet.grant_block g
			UNION ALL SELECT 'hold', h.id, h.wallet_id FROM wallet.hold h
			UNION ALL SELECT 'event', e.id, e.wallet_id FROM wallet.event e) x
	  JOIN wallet.wallet w ON w.id = x.wallet_id
	 WHERE (x.id >> 48) <> 0 AND (x.id >> 48) <> wallet._route_hash(w.customer);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_shard_check() IS
	'on a shard: customers another shard owns, and ids whose routing bits are not their customer''s; no rows means in place';

/*
 * A router finds a plain id (made before the database became a shard, so
 * without routing bits) by asking every shard: the one that has the row
 * answers with its customer's routing bits.
 */
CREATE FUNCTION wallet._id_route(kind text, id bigint) RETURNS int
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT wallet._route_hash(w.customer)
	  FROM wallet.wallet w
	 WHERE w.id = CASE kind
				  WHEN 'hold' THEN (SELECT h.wallet_id FROM wallet.hold h WHERE h.id = _id_route.id)
				  WHEN 'event' THEN (SELECT e.wallet_id FROM wallet.event e WHERE e.id = _id_route.id)
				  WHEN 'grant' THEN (SELECT g.wallet_id FROM wallet.grant_block g WHERE g.id = _id_route.id)
				  END
	UNION ALL
	SELECT wallet._route_hash(o.customer) FROM wallet.outbox o WHERE kind = 'outbox' AND o.id = _id_route.id
	LIMIT 1
$$;
COMMENT ON FUNCTION wallet._id_route(text, bigint) IS
	'the routing bits of the customer of a hold, event, grant or outbox row on this shard; null when it is not here';

/*
 * After a split (the shard was copied and wallet.shard / wallet.shards set on
 * both copies), each copy removes the customers the other one owns.  Ledger
 * lines are append-only, so this runs with session_replication_role =
 * replica, which needs a superuser.
 */
CREATE FUNCTION @extschema@.wallet_shard_prune()
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET session_replication_role = replica AS $$
DECLARE
	shard int;
	ids bigint[];
	customers text[];
	t record;
BEGIN
	IF wallet._shard_owner('') IS NULL THEN
		RAISE EXCEPTION 'this database is not a shard' USING ERRCODE = 'object_not_in_prerequisite_state',
			HINT = 'Set wallet.shard and wallet.shards first.';
	END IF;
	shard := current_setting('wallet.shard')::int;
	SELECT array_agg(w.id), array_agg(w.customer) INTO ids, customers
	  FROM wallet.wallet w WHERE wallet._shard_owner(w.customer) <> shard;
	IF ids IS NULL THEN
		RETURN 0;
	END IF;
	FOR t IN
		SELECT c.oid::regclass AS rel, a.attname::text AS col
		  FROM pg_class c
		  JOIN pg_namespace n ON n.oid = c.relnamespace
		  JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
		 WHERE n.nspname = 'wallet' AND c.relkind IN ('r', 'p')
		   AND c.relname NOT IN ('wallet', 'price') AND a.attname IN ('wallet_id', 'customer')
		 ORDER BY c.relname, a.attname
	LOOP
		IF t.col = 'wallet_id' THEN
			EXECUTE format('DELETE FROM %s WHERE wallet_id = ANY ($1)', t.rel) USING ids;
		ELSE
			EXECUTE format('DELETE FROM %s WHERE customer = ANY ($1)', t.rel) USING customers;
		END IF;
	END LOOP;
	DELETE FROM wallet.wallet w WHERE w.id = ANY (ids);
	RETURN cardinality(ids);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_shard_prune() IS
	'after a split: deletes every row of the customers another shard owns; returns how many wallets went';
