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
) WITH (fillfactor = 70);
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
	void_reason		text,
	closed_at		timestamptz,
	external_ref	text UNIQUE,
	metadata		jsonb NOT NULL DEFAULT '{}',
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	FOREIGN KEY (wallet_id, asset) REFERENCES wallet.account (wallet_id, asset)
) WITH (fillfactor = 70);
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

/*
 * Column order: fixed-width columns first, then the variable-width ones (no
 * alignment padding between them), and last the ones a debit most often
 * leaves null or at their default.  The hot path stores a row without its
 * trailing columns when they hold what reading past the end of a row gives
 * (null, or the missing value of a column added by ALTER TABLE ... DEFAULT;
 * hotpath.c): refunded is added that way so that it reads 0 when left out.
 * A debit without hold, cost and dimensions is then stored without them and
 * without refunded: no null bitmap, 16 bytes less.
 */
CREATE TABLE wallet.event (
	id				bigserial PRIMARY KEY,
	wallet_id		bigint NOT NULL,
	occurred_at		timestamptz NOT NULL,
	recorded_at		timestamptz NOT NULL,
	amount			bigint NOT NULL CHECK (amount >= 0),
	price_id		bigint,
	balance_after	bigint NOT NULL,
	line_id			bigint,			/* a debit drawn from one source: its ledger line (below) */
	line_grant_id	bigint,
	idempotency_key	text,
	meter			text,
	asset			text NOT NULL,
	quantity		numeric,
	revenue			numeric NOT NULL DEFAULT 0,
	hold_id			bigint,
	cost			numeric,
	dimensions		jsonb,
	cost_dimensions	jsonb
);
ALTER TABLE wallet.event ADD COLUMN refunded bigint NOT NULL DEFAULT 0,
	ADD CONSTRAINT event_check CHECK (refunded BETWEEN 0 AND amount);
COMMENT ON TABLE wallet.event IS 'one priced, debited usage record (a debit, an authorized debit or a capture)';
CREATE UNIQUE INDEX event_key ON wallet.event (wallet_id, idempotency_key);

/*
 * The ledger: the wallet's side of every movement, signed, append-only.
 * A line with grant_id null moves overdraft.
 *
 * wallet.line is a view over two stores.  Most lines are rows of
 * wallet.line_stored.  A debit drawn from a single source (one grant, or
 * overdraft alone: most debits) has exactly one line, and that line is
 * carried on the event row itself (event.line_id, event.line_grant_id; the
 * other columns are the event's): a debit then writes one row and two index
 * entries fewer.  The line id comes from the same sequence, so lines still
 * sort in the order they were written.  A debit drawn from several sources
 * stores its lines.  Readers use wallet.line and cannot tell the difference.
 */
CREATE TABLE wallet.line_stored (
	id			bigserial,
	at			timestamptz NOT NULL,
	wallet_id	bigint NOT NULL,
	grant_id	bigint,
	event_id	bigint,
	amount		bigint NOT NULL,
	asset		text NOT NULL,
	kind		text NOT NULL CHECK (kind IN ('grant', 'debit', 'refund', 'expiry', 'reset',
										 'void', 'hold', 'release', 'repay')),
	hold_id		bigint			/* last: a debit's line is stored without it (hotpath.c) */
);
ALTER SEQUENCE wallet.line_stored_id_seq RENAME TO line_id_seq;
COMMENT ON TABLE wallet.line_stored IS
	'append-only ledger lines, but those carried on their event rows; never updated or deleted (read wallet.line)';
CREATE INDEX line_event ON wallet.line_stored (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX line_wallet ON wallet.line_stored (wallet_id, asset);

CREATE VIEW wallet.line AS
SELECT l.id, l.at, l.wallet_id, l.grant_id, l.event_id, l.amount, l.asset, l.kind, l.hold_id
  FROM wallet.line_stored l
UNION ALL
SELECT e.line_id, e.recorded_at, e.wallet_id, e.line_grant_id, e.id, -e.amount, e.asset,
	   'debit'::text, e.hold_id
  FROM wallet.event e
 WHERE e.line_id IS NOT NULL;
COMMENT ON VIEW wallet.line IS
	'append-only ledger lines: wallet.line_stored and the single-source debit lines carried on wallet.event';

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
SELECT pg_catalog.pg_extension_config_dump('wallet.line_stored', '');
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
CREATE TRIGGER line_append_only BEFORE UPDATE OR DELETE ON wallet.line_stored
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._append_only();
CREATE TRIGGER line_no_truncate BEFORE TRUNCATE ON wallet.line_stored
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._append_only();
/* the view takes no writes either (lines are written by the extension's functions only) */
CREATE TRIGGER line_append_only INSTEAD OF INSERT OR UPDATE OR DELETE ON wallet.line
	FOR EACH ROW EXECUTE FUNCTION wallet._append_only();

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
		RAISE EXCEPTION 'no wallet for customer "%"', left(customer, 100) USING ERRCODE = 'WL001',
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
	IF overdraft IS NULL OR overdraft < 0 THEN
		RAISE EXCEPTION 'overdraft must be zero or positive: %', overdraft
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 0 for no overdraft.';
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
	IF od < (SELECT a.overdraft FROM wallet.account a WHERE a.wallet_id = w AND a.asset = wallet_set_limit.asset) THEN
		RAISE EXCEPTION 'overdraft limit % is below the overdraft in use', overdraft
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Customer "%s" uses %s of overdraft in %s.', left(customer, 100),
								  (SELECT wallet._major(a.asset, a.overdraft) FROM wallet.account a
									WHERE a.wallet_id = w AND a.asset = wallet_set_limit.asset), asset),
				  HINT = 'Freeze the wallet (wallet_set_status) to stop further debits until it is repaid.';
	END IF;
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
	ceiling numeric;
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

	/* the balance must stay countable in 64 bits, whatever recurring grants refill to */
	SELECT coalesce(sum(gb.remaining + CASE WHEN gb.recurrence IS NULL THEN 0 ELSE gb.amount + gb.rollover_max END), 0)
		   + amt + CASE WHEN wallet_grant.recurrence IS NULL THEN 0 ELSE amt + roll END
	  INTO ceiling
	  FROM wallet.grant_block gb
	 WHERE gb.wallet_id = w AND gb.asset = wallet_grant.asset AND gb.closed_at IS NULL;
	IF ceiling > 9223372036854775807 THEN
		RAISE EXCEPTION 'grant of % % would take the balance of customer "%" out of range', amount, asset, left(customer, 100)
			USING ERRCODE = 'numeric_value_out_of_range',
				  DETAIL = 'A balance is kept as a signed 64-bit count of minor units.';
	END IF;

	INSERT INTO wallet.grant_block (wallet_id, asset, category, priority, amount, remaining,
		unit_revenue, effective_at, expires_at, recurrence, rollover_max, external_ref, metadata)
	VALUES (w, asset, category, priority, amt, amt, rev, eff, expires_at, recurrence, roll,
		external_ref, metadata)
	RETURNING * INTO g;
	INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
	VALUES (greatest(now(), eff), w, asset, g.id, 'grant', amt);

	/* a new grant first repays overdraft, when it is live now */
	SELECT * INTO acct FROM wallet.account a WHERE a.wallet_id = w AND a.asset = wallet_grant.asset;
	IF acct.overdraft > 0 AND eff <= now() AND (expires_at IS NULL OR expires_at > now()) THEN
		repay := least(acct.overdraft, amt);
		UPDATE wallet.grant_block gb SET remaining = remaining - repay WHERE gb.id = g.id;
		UPDATE wallet.account a SET overdraft = overdraft - repay
		 WHERE a.wallet_id = w AND a.asset = wallet_grant.asset;
		INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
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
	ON CONFLICT ON CONSTRAINT plan_assignment_pkey DO UPDATE SET plan = excluded.plan;
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
SELECT e.id, w.customer, e.meter, e.quantity,
	   coalesce(e.dimensions, '{}') || coalesce(e.cost_dimensions, '{}') AS dimensions,
	   e.occurred_at, e.recorded_at, e.idempotency_key, e.asset,
	   wallet._major(e.asset, e.amount) AS amount, e.price_id, e.cost, e.revenue, e.hold_id,
	   wallet._major(e.asset, e.refunded) AS refunded
  FROM wallet.event e
  JOIN wallet.wallet w ON w.id = e.wallet_id;
COMMENT ON VIEW wallet.events IS
	'priced, debited usage events; dimensions are the request''s and those wallet_record_cost added';

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
	/*
	 * no debit takes a balance below its overdraft limit: the overdraft in use
	 * never exceeds the limit.  (available itself can dip lower through time
	 * alone: a grant expiring under an open hold.  The hold then cannot be
	 * captured beyond the limit, and frees the value when it expires.)
	 */
	SELECT 'overdraft_limit', format('customer %s asset %s: overdraft in use %s, limit %s',
			w.customer, a.asset, wallet._major(a.asset, a.overdraft), wallet._major(a.asset, a.overdraft_limit))
	  FROM wallet.account a
	  JOIN wallet.wallet w ON w.id = a.wallet_id
	 WHERE a.overdraft > a.overdraft_limit
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

/* ------------------------------------------------------------ lifecycle */

/*
 * Grant lifecycle: refunds, voids and the sweep.  Time's own effects (expiry,
 * recurring resets, hold timeouts) are applied at read time by the C code
 * (src/grant.c); what is here corrects balances (refund, void) and writes
 * time's effects down (sweep).  Each function locks the balance row first with
 * wallet._touch, which also writes down the resets time has made by now.
 */

COMMENT ON COLUMN wallet.grant_block.void_reason IS 'why the grant was voided (wallet_void_grant)';

/* one row per refund: what was given back, the revenue it reversed, and why */
CREATE TABLE wallet.refund (
	id			bigserial PRIMARY KEY,
	event_id	bigint NOT NULL REFERENCES wallet.event (id),
	wallet_id	bigint NOT NULL,
	asset		text NOT NULL,
	amount		bigint NOT NULL CHECK (amount > 0),
	revenue		numeric NOT NULL CHECK (revenue >= 0),
	reason		text,
	at			timestamptz NOT NULL
);
COMMENT ON TABLE wallet.refund IS
	'refunds of events: amount given back (minor units), revenue reversed (reporting currency), reason';
COMMENT ON COLUMN wallet.refund.revenue IS
	'revenue recognized on the refunded part, reversed: wallet.event.revenue is net of it';
CREATE INDEX refund_event ON wallet.refund (event_id);
SELECT pg_catalog.pg_extension_config_dump('wallet.refund', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.refund_id_seq', '');

CREATE FUNCTION wallet._advance(wallet_id bigint, asset text, as_of timestamptz)
RETURNS bigint AS 'MODULE_PATHNAME', 'wallet_advance' LANGUAGE C STRICT;
COMMENT ON FUNCTION wallet._advance(bigint, text, timestamptz) IS
	'locks the balance row and writes down the resets time has made by as_of; returns the reset lines written';

/*
 * A grant made by a refund, for value whose grant can no longer take it back
 * (expired or voided since, or a recurring grant already full).  Its first
 * line is a 'refund' line of the event, not a 'grant' line.  Like every new
 * grant it first repays outstanding overdraft.  The caller holds the lock.
 */
CREATE FUNCTION wallet._refund_grant(w bigint, asset text, event_id bigint, source bigint,
	category text, priority int, unit_revenue numeric, amount bigint)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	gid bigint;
	od bigint;
	repay bigint;
BEGIN
	INSERT INTO wallet.grant_block AS gb (wallet_id, asset, category, priority, amount, remaining,
		unit_revenue, effective_at, metadata)
	VALUES (w, asset, category, priority, amount, amount, unit_revenue, now(),
		jsonb_strip_nulls(jsonb_build_object('refund_of_event', event_id, 'refund_of_grant', source)))
	RETURNING gb.id INTO gid;
	INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, event_id, kind, amount)
	VALUES (now(), w, asset, gid, event_id, 'refund', amount);

	SELECT a.overdraft INTO od FROM wallet.account a
	 WHERE a.wallet_id = w AND a.asset = _refund_grant.asset;
	IF od > 0 THEN
		repay := least(od, amount);
		UPDATE wallet.grant_block gb SET remaining = gb.remaining - repay WHERE gb.id = gid;
		UPDATE wallet.account a SET overdraft = a.overdraft - repay
		 WHERE a.wallet_id = w AND a.asset = _refund_grant.asset;
		INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
		VALUES (now(), w, asset, gid, 'repay', -repay), (now(), w, asset, NULL, 'repay', repay);
	END IF;
	RETURN gid;
END
$$;
COMMENT ON FUNCTION wallet._refund_grant(bigint, text, bigint, bigint, text, int, numeric, bigint) IS
	'a new grant holding refunded value whose own grant cannot take it back';

/*
 * Refund (part of) an event.  The event's debit lines are given back newest
 * first; what earlier refunds gave back is skipped, so refunds in parts add up
 * to one whole refund.  A slice goes back to its grant while that grant is
 * live (reopened if a sweep closed it used up; a recurring grant up to amount
 * + rollover_max); otherwise to a new grant of the same category, priority and
 * unit_revenue.  The overdraft slice pays overdraft back; what of it a grant
 * has repaid since goes to a new grant like the newest grant that repaid
 * overdraft.  Revenue recognized on the refunded part is taken off the event.
 */
CREATE FUNCTION @extschema@.wallet_refund(event_id bigint, amount numeric DEFAULT NULL,
	reason text DEFAULT NULL)
RETURNS @extschema@.wallet_result LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	e wallet.event;
	g wallet.grant_block;
	d record;
	cust text;
	want bigint;
	skip bigint;
	todo bigint;
	x bigint;
	back bigint;
	od bigint;
	rev numeric := 0;
	unit numeric;
	res @extschema@.wallet_result;
BEGIN
	IF event_id IS NULL THEN
		RAISE EXCEPTION 'event_id must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO e FROM wallet.event ev WHERE ev.id = wallet_refund.event_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no event with id %', event_id USING ERRCODE = 'WL007';
	END IF;
	PERFORM wallet._touch(e.wallet_id, e.asset);
	SELECT * INTO e FROM wallet.event ev WHERE ev.id = wallet_refund.event_id;

	IF amount IS NULL THEN
		want := e.amount - e.refunded;
	ELSE
		want := wallet._minor(e.asset, amount);
		IF want > e.amount - e.refunded THEN
			RAISE EXCEPTION 'refund of % exceeds what is left of event %', amount, event_id
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('The event charged %s, of which %s is refunded already.',
									  wallet._major(e.asset, e.amount), wallet._major(e.asset, e.refunded));
		END IF;
	END IF;

	unit := wallet._major(e.asset, 1);
	skip := e.refunded;
	todo := want;
	FOR d IN SELECT l.grant_id, -l.amount AS took FROM wallet.line l
			  WHERE l.event_id = e.id AND l.kind = 'debit' ORDER BY l.id DESC
	LOOP
		EXIT WHEN todo = 0;
		IF skip >= d.took THEN
			skip := skip - d.took;
			CONTINUE;
		END IF;
		x := least(d.took - skip, todo);
		skip := 0;
		todo := todo - x;

		IF d.grant_id IS NULL THEN
			/* the overdraft slice: pay overdraft back */
			SELECT a.overdraft INTO od FROM wallet.account a
			 WHERE a.wallet_id = e.wallet_id AND a.asset = e.asset;
			back := least(x, od);
			IF back > 0 THEN
				UPDATE wallet.account a SET overdraft = a.overdraft - back
				 WHERE a.wallet_id = e.wallet_id AND a.asset = e.asset;
				INSERT INTO wallet.line_stored (at, wallet_id, asset, event_id, kind, amount)
				VALUES (now(), e.wallet_id, e.asset, e.id, 'refund', back);
			END IF;
			IF x > back THEN
				/* a grant repaid that overdraft since: the value goes to one like it */
				SELECT gb.* INTO g FROM wallet.line l JOIN wallet.grant_block gb ON gb.id = l.grant_id
				 WHERE l.wallet_id = e.wallet_id AND l.asset = e.asset AND l.kind = 'repay'
				 ORDER BY l.id DESC LIMIT 1;
				PERFORM wallet._refund_grant(e.wallet_id, e.asset, e.id, g.id,
					coalesce(g.category, 'paid'), coalesce(g.priority, 100),
					coalesce(g.unit_revenue, 0), x - back);
			END IF;
			CONTINUE;
		END IF;

		SELECT * INTO g FROM wallet.grant_block gb WHERE gb.id = d.grant_id;
		IF g.category = 'paid' THEN		/* only paid value was revenue */
			rev := rev + x * g.unit_revenue * unit;
		END IF;
		back := 0;
		IF g.voided_at IS NULL AND g.effective_at <= now()
		   AND (g.expires_at IS NULL OR g.expires_at > now()) THEN
			back := greatest(0, least(x, g.amount - g.remaining
				+ CASE WHEN g.recurrence IS NULL THEN 0 ELSE g.rollover_max END));
			IF back > 0 THEN
				UPDATE wallet.grant_block gb SET remaining = gb.remaining + back, closed_at = NULL
				 WHERE gb.id = g.id;
				INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, event_id, kind, amount)
				VALUES (now(), e.wallet_id, e.asset, g.id, e.id, 'refund', back);
			END IF;
		END IF;
		IF x > back THEN
			PERFORM wallet._refund_grant(e.wallet_id, e.asset, e.id, g.id, g.category, g.priority,
				g.unit_revenue, x - back);
		END IF;
	END LOOP;
	IF todo <> 0 THEN
		RAISE EXCEPTION 'wallet: debit lines of event % do not cover its amount', e.id;
	END IF;

	IF want > 0 THEN
		UPDATE wallet.event ev SET refunded = ev.refunded + want, revenue = ev.revenue - rev
		 WHERE ev.id = e.id;
		INSERT INTO wallet.refund (event_id, wallet_id, asset, amount, revenue, reason, at)
		VALUES (e.id, e.wallet_id, e.asset, want, rev, reason, now());
		/* spend caps: the refunded part is spend given back to the period the debit was in */
		PERFORM wallet._cap_giveback(e.id, want);
	END IF;

	SELECT ww.customer INTO cust FROM wallet.wallet ww WHERE ww.id = e.wallet_id;
	res := ROW(true, false, NULL, e.id, NULL, e.asset, wallet._major(e.asset, want),
			   @extschema@.wallet_balance(cust, e.asset));
	RETURN res;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_refund(bigint, numeric, text) IS
	'gives back (part of) a debit to the grants it came from, newest drawdown first';

/*
 * Void a grant: what is left of it now leaves the balance, with a 'void'
 * line.  A grant that has expired has nothing left to void (its expiry is
 * written down instead); voiding twice voids nothing the second time.
 */
CREATE FUNCTION @extschema@.wallet_void_grant(grant_id bigint, reason text DEFAULT NULL)
RETURNS numeric LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	g wallet.grant_block;
	v bigint := 0;
BEGIN
	IF grant_id IS NULL THEN
		RAISE EXCEPTION 'grant_id must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO g FROM wallet.grant_block gb WHERE gb.id = wallet_void_grant.grant_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no grant with id %', grant_id USING ERRCODE = 'WL007';
	END IF;
	PERFORM wallet._touch(g.wallet_id, g.asset);
	SELECT * INTO g FROM wallet.grant_block gb WHERE gb.id = wallet_void_grant.grant_id;
	IF g.voided_at IS NOT NULL THEN
		RETURN wallet._major(g.asset, 0);
	END IF;

	IF g.expires_at <= now() THEN
		IF g.closed_at IS NULL AND g.remaining > 0 THEN
			INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
			VALUES (g.expires_at, g.wallet_id, g.asset, g.id, 'expiry', -g.remaining);
		END IF;
	ELSIF g.remaining > 0 THEN
		v := g.remaining;
		/* a grant not yet effective: the void shows when its grant line does */
		INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
		VALUES (greatest(now(), g.effective_at), g.wallet_id, g.asset, g.id, 'void', -v);
	END IF;
	UPDATE wallet.grant_block gb SET remaining = 0, voided_at = now(),
		closed_at = coalesce(gb.closed_at, now()), void_reason = reason
	 WHERE gb.id = g.id;
	RETURN wallet._major(g.asset, v);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_void_grant(bigint, text) IS
	'takes what is left of a grant out of the balance; returns the amount voided (0 when nothing is left)';

/*
 * Write down what time has done by as_of (not after now: time cannot be
 * written down before it happens), one balance row at a time, in (wallet,
 * asset) order, each under its lock: recurring resets, expired grants (an
 * 'expiry' line for what was left: breakage when paid), grants used up (closed,
 * no line), expired holds (closed, a 'release' line).  Balances never wait for
 * it; a second run finds nothing to do.
 */
CREATE FUNCTION @extschema@.wallet_sweep(as_of timestamptz DEFAULT now())
RETURNS TABLE (action text, count bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
	g record;
	n bigint;
	amt bigint;
	n_expired bigint := 0;
	n_resets bigint := 0;
	n_holds bigint := 0;
	n_closed bigint := 0;
BEGIN
	IF as_of IS NULL OR as_of IN ('infinity', '-infinity') THEN
		RAISE EXCEPTION 'as_of must be a finite time' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF as_of > now() THEN
		RAISE EXCEPTION 'as_of % is in the future', as_of USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The sweep writes down what time has done; it cannot run ahead of it.';
	END IF;

	FOR r IN
		SELECT p.wallet_id, p.asset FROM wallet._pending(as_of) p
		UNION
		SELECT gb.wallet_id, gb.asset FROM wallet.grant_block gb
		 WHERE gb.closed_at IS NULL
		   AND (gb.expires_at <= as_of OR (gb.remaining = 0 AND gb.recurrence IS NULL))
		UNION
		SELECT a.wallet_id, a.asset FROM wallet.account a
		 WHERE a.holds_open > 0
		   AND EXISTS (SELECT 1 FROM wallet.hold h
						WHERE h.wallet_id = a.wallet_id AND h.asset = a.asset
						  AND h.status = 'open' AND h.expires_at <= as_of)
		ORDER BY 1, 2
	LOOP
		n_resets := n_resets + wallet._advance(r.wallet_id, r.asset, as_of);

		/* expired grants: what was left at expiry (after its resets) leaves */
		FOR g IN SELECT gb.id, gb.remaining, gb.expires_at FROM wallet.grant_block gb
				  WHERE gb.wallet_id = r.wallet_id AND gb.asset = r.asset
					AND gb.closed_at IS NULL AND gb.expires_at <= as_of
				  ORDER BY gb.id
		LOOP
			IF g.remaining > 0 THEN
				INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
				VALUES (g.expires_at, r.wallet_id, r.asset, g.id, 'expiry', -g.remaining);
			END IF;
			UPDATE wallet.grant_block gb SET remaining = 0, closed_at = now() WHERE gb.id = g.id;
			n_expired := n_expired + 1;
		END LOOP;

		/* used up and never refilled: out of the drawdown index (a refund reopens it) */
		UPDATE wallet.grant_block gb SET closed_at = now()
		 WHERE gb.wallet_id = r.wallet_id AND gb.asset = r.asset AND gb.closed_at IS NULL
		   AND gb.remaining = 0 AND gb.recurrence IS NULL;
		GET DIAGNOSTICS n = ROW_COUNT;
		n_closed := n_closed + n;

		/* expired holds: closed, their value released as of their expiry */
		n := 0;
		amt := 0;
		FOR g IN SELECT h.id, h.amount, h.expires_at FROM wallet.hold h
				  WHERE h.wallet_id = r.wallet_id AND h.asset = r.asset
					AND h.status = 'open' AND h.expires_at <= as_of
				  ORDER BY h.id
		LOOP
			UPDATE wallet.hold h SET status = 'expired', closed_at = now() WHERE h.id = g.id;
			INSERT INTO wallet.line_stored (at, wallet_id, asset, hold_id, kind, amount)
			VALUES (g.expires_at, r.wallet_id, r.asset, g.id, 'release', g.amount);
			n := n + 1;
			amt := amt + g.amount;
		END LOOP;
		IF n > 0 THEN
			UPDATE wallet.account a SET held = a.held - amt, holds_open = a.holds_open - n
			 WHERE a.wallet_id = r.wallet_id AND a.asset = r.asset;
			n_holds := n_holds + n;
		END IF;
	END LOOP;

	/* spend-cap counters of periods that have ended are no longer read */
	PERFORM wallet._cap_prune(as_of);

	RETURN QUERY VALUES ('expired_grants'::text, n_expired), ('resets', n_resets),
		('expired_holds', n_holds), ('closed_grants', n_closed);
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_sweep(timestamptz) IS
	'writes down what time has done by as_of: resets, expired grants (breakage), used-up grants, expired holds';

/* ------------------------------------------------------------- finance */

/*
 * Finance: what serving each event cost, what it earned, and what the
 * customer's money is doing.  Everything here is read from the ledger at query
 * time; nothing on the hot path keeps a running total (DESIGN.md #1).
 *
 * Valuing a ledger line (wallet.revenue_lines): value in asset units (the
 * line's amount) times a rate in the reporting currency, by the category of
 * the line's grant:
 *	 paid		 at the grant's unit_revenue.  Grant lines (and refills of
 *				 recurring grants) are sold; debit, refund and repay lines are
 *				 recognized revenue (negated: a debit is negative); expiry, void
 *				 and net forfeiting resets are breakage.  What live paid grants
 *				 still hold is deferred revenue, so per grant
 *				 sold = recognized + breakage + deferred.
 *	 promotional, bundled  at the asset's unit_value: debit, refund and repay
 *				 lines are promotional or bundled value given, never revenue.
 *	 no grant	 (overdraft lines) nothing yet: overdraft becomes revenue when a
 *				 grant repays it, at that grant's rate.
 * Expiries time has made but no sweep has written count at once (the ledger
 * view shows them with a null id).  Days are UTC calendar days of the line.
 */

COMMENT ON COLUMN wallet.event.cost IS
	'what serving the event cost, in the reporting currency (wallet_record_cost may set it later)';
COMMENT ON COLUMN wallet.event.revenue IS
	'revenue recognized on the event: value drawn from paid grants at their unit_revenue, net of refunds';
COMMENT ON COLUMN wallet.event.cost_dimensions IS
	'dimensions added after the fact by wallet_record_cost; the request''s own dimensions never change';

/*
 * History is immutable.  An event's request, amount and drawdown never
 * change: only its cost and added dimensions (wallet_record_cost) and what
 * refunds took back (refunded up, revenue down).  Row trigger on UPDATE only:
 * the hot path inserts events and never updates them.
 */
CREATE FUNCTION wallet._event_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	free CONSTANT text[] := '{cost,cost_dimensions,refunded,revenue}';
BEGIN
	IF pg_catalog.to_jsonb(NEW) OPERATOR(pg_catalog.-) free
	   IS DISTINCT FROM pg_catalog.to_jsonb(OLD) OPERATOR(pg_catalog.-) free THEN
		RAISE EXCEPTION 'event % is immutable', OLD.id USING ERRCODE = 'insufficient_privilege',
			DETAIL = 'Only the cost and added dimensions (wallet_record_cost) and refunds (wallet_refund) change an event.',
			HINT = 'Corrections are new lines: refund, void or grant.';
	END IF;
	IF NEW.refunded < OLD.refunded OR NEW.revenue > OLD.revenue THEN
		RAISE EXCEPTION 'a refund of event % cannot be taken back', OLD.id
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION wallet._event_guard() IS
	'rejects changes to an event but its cost, added dimensions and refunds';
CREATE TRIGGER event_immutable BEFORE UPDATE ON wallet.event
	FOR EACH ROW EXECUTE FUNCTION wallet._event_guard();
CREATE TRIGGER event_no_delete BEFORE DELETE ON wallet.event
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._append_only();
CREATE TRIGGER event_no_truncate BEFORE TRUNCATE ON wallet.event
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._append_only();
CREATE TRIGGER refund_append_only BEFORE UPDATE OR DELETE ON wallet.refund
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._append_only();
CREATE TRIGGER refund_no_truncate BEFORE TRUNCATE ON wallet.refund
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._append_only();

/*
 * Cost known only after the fact (a provider's bill): sets the event's cost,
 * replacing what was recorded, and adds dimensions to it.  Added dimensions
 * may not contradict the request's own (those are what a retry of the request
 * is compared with); they may replace ones added earlier.
 */
CREATE FUNCTION @extschema@.wallet_record_cost(event_id bigint, cost numeric,
	dimensions jsonb DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	e wallet.event;
	clash text;
	added jsonb;
BEGIN
	IF event_id IS NULL THEN
		RAISE EXCEPTION 'event_id must not be null' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF cost IS NULL OR cost = 'NaN' OR cost IN ('Infinity', '-Infinity') OR cost < 0 THEN
		RAISE EXCEPTION 'invalid cost %', coalesce(cost::text, 'null') USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'A cost is a finite amount of the reporting currency, zero or more.';
	END IF;
	IF dimensions IS NOT NULL AND jsonb_typeof(dimensions) <> 'object' THEN
		RAISE EXCEPTION 'dimensions must be a json object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO e FROM wallet.event ev WHERE ev.id = wallet_record_cost.event_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no event with id %', event_id USING ERRCODE = 'WL007';
	END IF;
	added := e.cost_dimensions;
	IF dimensions IS NOT NULL AND dimensions <> '{}' THEN
		SELECT d.key INTO clash FROM jsonb_each(dimensions) d
		 WHERE e.dimensions ? d.key AND e.dimensions -> d.key <> d.value
		 ORDER BY d.key LIMIT 1;
		IF clash IS NOT NULL THEN
			RAISE EXCEPTION 'dimension "%" of event % is already %', left(clash, 100), event_id,
				left((e.dimensions -> clash)::text, 100)
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'The dimensions the event was debited with never change.';
		END IF;
		/* keys the request already has, with the same value, add nothing */
		added := coalesce(added, '{}') || (dimensions - ARRAY(SELECT jsonb_object_keys(coalesce(e.dimensions, '{}'))));
		IF added = '{}' THEN
			added := e.cost_dimensions;
		ELSIF pg_column_size(coalesce(e.dimensions, '{}') || added) > 4096 THEN
			RAISE EXCEPTION 'dimensions of event % would be larger than 4096 bytes', event_id
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	UPDATE wallet.event ev SET cost = wallet_record_cost.cost, cost_dimensions = added
	 WHERE ev.id = e.id;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_record_cost(bigint, numeric, jsonb) IS
	'sets what serving an event cost (reporting currency), replacing what was recorded; adds dimensions';

/* every ledger line but holds, valued in the reporting currency (see above) */
CREATE VIEW wallet.revenue_lines AS
SELECT l.id, l.at, (l.at AT TIME ZONE 'UTC')::date AS day, w.customer, l.asset, l.grant_id,
	   l.event_id, l.kind, g.category, v.amount,
	   CASE WHEN g.category = 'paid' AND (l.kind = 'grant' OR (l.kind = 'reset' AND l.amount > 0))
			THEN v.amount * g.unit_revenue ELSE 0 END AS sold,
	   CASE WHEN g.category = 'paid' AND l.kind IN ('debit', 'refund', 'repay')
			THEN -v.amount * g.unit_revenue ELSE 0 END AS recognized,
	   CASE WHEN g.category = 'paid' AND (l.kind IN ('expiry', 'void') OR (l.kind = 'reset' AND l.amount < 0))
			THEN -v.amount * g.unit_revenue ELSE 0 END AS breakage,
	   CASE WHEN g.category = 'promotional' AND l.kind IN ('debit', 'refund', 'repay')
			THEN -v.amount * a.unit_value ELSE 0 END AS promotional,
	   CASE WHEN g.category = 'bundled' AND l.kind IN ('debit', 'refund', 'repay')
			THEN -v.amount * a.unit_value ELSE 0 END AS bundled,
	   CASE WHEN g.category = 'paid' THEN v.amount * g.unit_revenue ELSE 0 END AS deferred
  FROM (SELECT ln.id, ln.at, ln.wallet_id, ln.asset, ln.grant_id, ln.event_id, ln.kind, ln.amount
		  FROM wallet.line ln
		 WHERE ln.at <= now() AND ln.kind NOT IN ('hold', 'release')
		UNION ALL
		SELECT NULL, p.at, p.wallet_id, p.asset, p.grant_id, NULL, p.kind, p.amount
		  FROM wallet._pending(now()) p) l
  JOIN wallet.wallet w ON w.id = l.wallet_id
  JOIN (SELECT ac.code, ac.unit_value, wallet._major(ac.code, 1) AS unit FROM wallet.asset ac) a
	ON a.code = l.asset
  LEFT JOIN wallet.grant_block g ON g.id = l.grant_id
  CROSS JOIN LATERAL (SELECT l.amount * a.unit AS amount) v;
COMMENT ON VIEW wallet.revenue_lines IS
	'every ledger line but holds, valued in the reporting currency: sold, recognized, breakage, promotional, bundled, change in deferred';

/* recognized revenue, breakage and value given away, by UTC day and asset */
CREATE VIEW wallet.revenue AS
SELECT r.day, r.asset, sum(r.recognized) AS recognized, sum(r.breakage) AS breakage,
	   sum(r.promotional) AS promotional, sum(r.bundled) AS bundled, sum(r.sold) AS sold
  FROM wallet.revenue_lines r
 GROUP BY r.day, r.asset
HAVING sum(r.recognized) <> 0 OR sum(r.breakage) <> 0 OR sum(r.promotional) <> 0
	OR sum(r.bundled) <> 0 OR sum(r.sold) <> 0
 ORDER BY r.day, r.asset;
COMMENT ON VIEW wallet.revenue IS
	'by UTC day and asset: recognized revenue, breakage, promotional and bundled value drawn, paid value sold (reporting currency)';

/* what live paid grants still owe their customers */
CREATE VIEW wallet.deferred_revenue AS
SELECT g.customer, g.asset, sum(g.remaining * g.unit_revenue) AS amount, sum(g.remaining) AS remaining
  FROM wallet.grants g
 WHERE g.category = 'paid' AND g.voided_at IS NULL AND g.remaining > 0
   AND g.effective_at <= now() AND (g.expires_at IS NULL OR g.expires_at > now())
 GROUP BY g.customer, g.asset
 ORDER BY amount DESC, g.customer, g.asset;
COMMENT ON VIEW wallet.deferred_revenue IS
	'what live paid grants still hold: amount at their unit_revenue (reporting currency), remaining in asset units';

/*
 * Margin by customer and UTC day: recognized revenue less the cost of the
 * events recorded that day.  Biggest losses first.
 */
CREATE VIEW wallet.customer_margin AS
WITH r AS (
	SELECT rl.customer, rl.day, sum(rl.recognized) AS revenue, sum(rl.breakage) AS breakage,
		   sum(rl.promotional) AS promotional, sum(rl.bundled) AS bundled
	  FROM wallet.revenue_lines rl
	 GROUP BY rl.customer, rl.day),
c AS (
	SELECT w.customer, (e.recorded_at AT TIME ZONE 'UTC')::date AS day,
		   coalesce(sum(e.cost), 0) AS cost, count(*) AS events
	  FROM wallet.event e
	  JOIN wallet.wallet w ON w.id = e.wallet_id
	 GROUP BY w.customer, (e.recorded_at AT TIME ZONE 'UTC')::date)
SELECT coalesce(r.customer, c.customer) AS customer, coalesce(r.day, c.day) AS day,
	   coalesce(r.revenue, 0) AS revenue, coalesce(c.cost, 0) AS cost,
	   coalesce(r.revenue, 0) - coalesce(c.cost, 0) AS margin,
	   coalesce(r.breakage, 0) AS breakage, coalesce(r.promotional, 0) AS promotional,
	   coalesce(r.bundled, 0) AS bundled, coalesce(c.events, 0) AS events
  FROM r
  FULL JOIN c ON c.customer = r.customer AND c.day = r.day
 WHERE c.events > 0 OR r.revenue <> 0 OR r.breakage <> 0 OR r.promotional <> 0 OR r.bundled <> 0
 ORDER BY margin, day, customer;
COMMENT ON VIEW wallet.customer_margin IS
	'by customer and UTC day: recognized revenue, cost of the events recorded, margin; biggest losses first';

/* customers whose serving has cost more than it earned, all time, biggest losses first */
CREATE VIEW wallet.unprofitable_customers AS
SELECT m.customer, sum(m.revenue) AS revenue, sum(m.cost) AS cost, sum(m.margin) AS margin,
	   sum(m.promotional) AS promotional, sum(m.events) AS events,
	   min(m.day) AS first_day, max(m.day) AS last_day
  FROM wallet.customer_margin m
 GROUP BY m.customer
HAVING sum(m.margin) < 0
 ORDER BY margin, customer;
COMMENT ON VIEW wallet.unprofitable_customers IS
	'customers with a negative margin over all time, biggest losses first';

/*
 * Margin cut by one dimension of the events (model, feature, agent, ...), for
 * lines and events in [since, until): revenue of the event's lines in the
 * window, cost of the events recorded in it.  value null: events without that
 * dimension, and revenue of no event (overdraft a grant repaid), so that the
 * rows add up to the whole.  Biggest losses first.
 */
CREATE FUNCTION wallet.margin_by_dimension(key text, since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT 'infinity')
RETURNS TABLE (value text, revenue numeric, cost numeric, margin numeric, events bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
	IF key IS NULL OR key = '' THEN
		RAISE EXCEPTION 'key must name a dimension' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF since IS NULL OR until IS NULL OR until < since THEN
		RAISE EXCEPTION 'invalid window [%, %)', since, until USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN QUERY
	WITH r AS (
		SELECT rl.event_id, sum(rl.recognized) AS revenue
		  FROM wallet.revenue_lines rl
		 WHERE rl.at >= since AND rl.at < until AND rl.recognized <> 0
		 GROUP BY rl.event_id),
	c AS (
		SELECT e.id, coalesce(e.cost, 0) AS cost
		  FROM wallet.event e
		 WHERE e.recorded_at >= since AND e.recorded_at < until),
	x AS (
		SELECT coalesce(c.id, r.event_id) AS event_id, coalesce(r.revenue, 0) AS revenue,
			   coalesce(c.cost, 0) AS cost, c.id IS NOT NULL AS counted
		  FROM r FULL JOIN c ON c.id = r.event_id)
	SELECT (coalesce(ev.dimensions, '{}') || coalesce(ev.cost_dimensions, '{}')) ->> key, sum(x.revenue), sum(x.cost),
		   sum(x.revenue) - sum(x.cost) AS margin, count(*) FILTER (WHERE x.counted)
	  FROM x
	  LEFT JOIN wallet.event ev ON ev.id = x.event_id
	 GROUP BY 1
	 ORDER BY 4, 1;
END
$$;
COMMENT ON FUNCTION wallet.margin_by_dimension(text, timestamptz, timestamptz) IS
	'revenue, cost and margin by the value of one event dimension in [since, until); biggest losses first';

/*
 * Conservation, per customer and asset, from the ledger up (asset units):
 *	 granted + reset = (available + held) + debited_net + expired + voided
 * granted: grant lines; reset: net refills of recurring grants; debited_net:
 * debits less refunds; expired, voided: what left unused.  available + held is
 * what live grants hold less the overdraft in use; repay lines move value
 * between a grant and the overdraft and net to zero.  difference is 0.
 */
CREATE VIEW wallet.conservation AS
SELECT b.customer, b.asset,
	   coalesce(l.granted, 0) AS granted, coalesce(l.reset, 0) AS reset,
	   b.available, b.held, b.overdraft,
	   coalesce(l.debited, 0) - coalesce(l.refunded, 0) AS debited_net,
	   coalesce(l.expired, 0) AS expired, coalesce(l.voided, 0) AS voided,
	   coalesce(l.granted, 0) + coalesce(l.reset, 0) - (b.available + b.held)
	   - (coalesce(l.debited, 0) - coalesce(l.refunded, 0))
	   - coalesce(l.expired, 0) - coalesce(l.voided, 0) AS difference
  FROM wallet.balances b
  LEFT JOIN (
	SELECT ld.customer, ld.asset,
		   sum(ld.amount) FILTER (WHERE ld.kind = 'grant') AS granted,
		   sum(ld.amount) FILTER (WHERE ld.kind = 'reset') AS reset,
		   -sum(ld.amount) FILTER (WHERE ld.kind = 'debit') AS debited,
		   sum(ld.amount) FILTER (WHERE ld.kind = 'refund') AS refunded,
		   -sum(ld.amount) FILTER (WHERE ld.kind = 'expiry') AS expired,
		   -sum(ld.amount) FILTER (WHERE ld.kind = 'void') AS voided
	  FROM wallet.ledger ld
	 GROUP BY ld.customer, ld.asset) l ON l.customer = b.customer AND l.asset = b.asset
 ORDER BY b.customer, b.asset;
COMMENT ON VIEW wallet.conservation IS
	'granted + reset = available + held + debited_net + expired + voided, per customer and asset; difference is 0';

/*
 * An account statement of one customer, per asset: an opening row (the
 * balance at since), every ledger line in [since, until) in order with the
 * balance after it, and a closing row.  The balance is available + held of
 * wallet_balances: what live grants hold less the overdraft in use.  Holds
 * reserve part of it without moving it: their lines are listed, the balance
 * stays.  until null: everything up to now, this transaction's lines included.
 */
CREATE FUNCTION @extschema@.wallet_statement(customer text, since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT NULL)
RETURNS TABLE (asset text, at timestamptz, kind text, description text, amount numeric,
	balance numeric, line_id bigint, grant_id bigint, event_id bigint, hold_id bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	w bigint := wallet._wallet_id(customer);
BEGIN
	IF since IS NULL THEN
		RAISE EXCEPTION 'since must not be null' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use ''-infinity'' for the whole history.';
	END IF;
	IF until < since THEN
		RAISE EXCEPTION 'until % is before since %', until, since USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN QUERY
	WITH m AS (
		SELECT ln.id, ln.at, ln.asset, ln.grant_id, ln.event_id, ln.hold_id, ln.kind, ln.amount,
			   CASE WHEN ln.kind IN ('hold', 'release') THEN 0 ELSE ln.amount END AS delta
		  FROM wallet.line ln
		 WHERE ln.wallet_id = w AND ln.at <= now()
		UNION ALL
		SELECT NULL, p.at, p.asset, p.grant_id, NULL, NULL, p.kind, p.amount, p.amount
		  FROM wallet._pending(now(), w) p),
	o AS (
		SELECT a.asset, coalesce(sum(m.delta) FILTER (WHERE m.at < since), 0)::bigint AS bal
		  FROM wallet.account a
		  LEFT JOIN m ON m.asset = a.asset
		 WHERE a.wallet_id = w
		 GROUP BY a.asset),
	p AS (
		SELECT m.*, (o.bal + sum(m.delta) OVER (win ROWS UNBOUNDED PRECEDING))::bigint AS running,
			   row_number() OVER win AS n
		  FROM m JOIN o ON o.asset = m.asset
		 WHERE m.at >= since AND (until IS NULL OR m.at < until)
		WINDOW win AS (PARTITION BY m.asset ORDER BY m.at, m.id NULLS LAST, m.grant_id, m.kind)),
	s AS (
		SELECT o.asset, 0 AS part, 0::bigint AS n, since AS at, 'opening' AS kind,
			   'opening balance' AS description, NULL::bigint AS amount, o.bal AS balance,
			   NULL::bigint AS line_id, NULL::bigint AS grant_id, NULL::bigint AS event_id,
			   NULL::bigint AS hold_id
		  FROM o
		UNION ALL
		SELECT p.asset, 1, p.n, p.at, p.kind,
			   CASE p.kind
			   WHEN 'grant' THEN format('%s grant %s', g.category, p.grant_id)
					|| coalesce(' (' || g.external_ref || ')', '')
			   WHEN 'debit' THEN coalesce(e.meter || ' ' || e.quantity::text, 'debit')
					|| format(' (event %s)', p.event_id)
					|| CASE WHEN p.grant_id IS NULL THEN ' on overdraft'
							ELSE format(' from %s grant %s', g.category, p.grant_id) END
			   WHEN 'refund' THEN format('refund of event %s', p.event_id)
					|| CASE WHEN p.grant_id IS NULL THEN ' pays back overdraft'
							ELSE format(' to %s grant %s', g.category, p.grant_id) END
			   WHEN 'repay' THEN CASE WHEN p.grant_id IS NULL THEN 'overdraft repaid'
							ELSE format('%s grant %s repays overdraft', g.category, p.grant_id) END
			   WHEN 'reset' THEN format('%s grant %s renewed', g.category, p.grant_id)
			   WHEN 'expiry' THEN format('%s grant %s expired unused', g.category, p.grant_id)
			   WHEN 'void' THEN format('%s grant %s voided', g.category, p.grant_id)
					|| coalesce(': ' || g.void_reason, '')
			   WHEN 'hold' THEN format('hold %s reserves (the balance does not move)', p.hold_id)
			   WHEN 'release' THEN format('hold %s released', p.hold_id)
			   ELSE p.kind END,
			   p.amount, p.running, p.id, p.grant_id, p.event_id, p.hold_id
		  FROM p
		  LEFT JOIN wallet.grant_block g ON g.id = p.grant_id
		  LEFT JOIN wallet.event e ON e.id = p.event_id
		UNION ALL
		SELECT o.asset, 2, 0, coalesce(until, now()), 'closing', 'closing balance', NULL,
			   o.bal + coalesce((SELECT sum(p.delta) FROM p WHERE p.asset = o.asset), 0)::bigint,
			   NULL, NULL, NULL, NULL
		  FROM o)
	SELECT s.asset, s.at, s.kind, s.description, wallet._major(s.asset, s.amount),
		   wallet._major(s.asset, s.balance), s.line_id, s.grant_id, s.event_id, s.hold_id
	  FROM s
	 ORDER BY s.asset, s.part, s.n;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz) IS
	'account statement per asset: opening balance, every ledger line in [since, until) with the balance after it, closing balance';

/* ------------------------------------------------------- spend controls */

/*
 * Spend caps: at most amount of an asset per UTC calendar period, for the whole
 * wallet (dimension null) or for each value of one dimension of the events
 * (dimension 'user': each user separately).  A cap belongs to a balance row and
 * is read and changed under its lock.  account.caps counts the caps of the
 * balance row, so the hot path looks for caps only where there are some.
 */
ALTER TABLE wallet.account ADD COLUMN caps int NOT NULL DEFAULT 0 CHECK (caps >= 0);
COMMENT ON COLUMN wallet.account.caps IS
	'how many spend caps (wallet.cap) the balance row has; 0 = the hot path skips the cap check';

CREATE TABLE wallet.cap (
	wallet_id	bigint NOT NULL,
	asset		text NOT NULL,
	period		text NOT NULL CHECK (period IN ('hour', 'day', 'week', 'month')),
	dimension	text CHECK (dimension <> ''),
	amount		bigint NOT NULL CHECK (amount >= 0),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	FOREIGN KEY (wallet_id, asset) REFERENCES wallet.account (wallet_id, asset),
	UNIQUE NULLS NOT DISTINCT (wallet_id, asset, period, dimension)
);
COMMENT ON TABLE wallet.cap IS
	'spend caps: at most amount per UTC calendar period, for the wallet (dimension null) or per dimension value';

/*
 * What was spent per cap, period and dimension value.  dimension is '' for a
 * whole-wallet cap; dim_value is the event's value of the dimension as text
 * (dimensions ->> dimension), '' for a whole-wallet cap and for the shared
 * bucket of events without the dimension (absent, null or "").
 */
CREATE TABLE wallet.cap_spend (
	wallet_id		bigint NOT NULL,
	asset			text NOT NULL,
	period			text NOT NULL,
	dimension		text NOT NULL,
	dim_value		text NOT NULL,
	period_start	timestamptz NOT NULL,
	spent			bigint NOT NULL CHECK (spent >= 0),
	PRIMARY KEY (wallet_id, asset, period, period_start, dimension, dim_value)
);
COMMENT ON TABLE wallet.cap_spend IS
	'spend counted against caps, per cap, UTC period (by the debit''s recorded_at) and dimension value';

SELECT pg_catalog.pg_extension_config_dump('wallet.cap', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.cap_spend', '');

CREATE FUNCTION @extschema@.wallet_set_cap(customer text, asset text, amount numeric, period text,
	dimension text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w bigint := wallet._wallet_id(customer);
	amt bigint;
BEGIN
	PERFORM wallet._minor(asset, 1, 'asset');	/* 22023 for null, WL002 for an unknown asset */
	IF period IS NULL OR period NOT IN ('hour', 'day', 'week', 'month') THEN
		RAISE EXCEPTION 'unknown cap period "%"', period USING ERRCODE = 'invalid_parameter_value',
			HINT = 'The periods are hour, day, week and month (UTC calendar).';
	END IF;
	IF dimension = '' OR length(dimension) > 127 THEN
		RAISE EXCEPTION 'invalid cap dimension "%"', left(dimension, 64) USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'A dimension is 1 to 127 characters, or null for the whole wallet.';
	END IF;
	IF amount IS NOT NULL THEN
		IF amount < 0 THEN
			RAISE EXCEPTION 'cap amount must not be negative: %', amount USING ERRCODE = 'invalid_parameter_value';
		END IF;
		amt := CASE WHEN amount = 0 THEN 0 ELSE wallet._minor(asset, amount, 'amount') END;
	END IF;

	PERFORM wallet._touch(w, asset);	/* the balance row's lock */
	IF amount IS NULL THEN
		DELETE FROM wallet.cap c
		 WHERE c.wallet_id = w AND c.asset = wallet_set_cap.asset AND c.period = wallet_set_cap.period
		   AND c.dimension IS NOT DISTINCT FROM wallet_set_cap.dimension;
		IF FOUND THEN
			DELETE FROM wallet.cap_spend s
			 WHERE s.wallet_id = w AND s.asset = wallet_set_cap.asset AND s.period = wallet_set_cap.period
			   AND s.dimension = coalesce(wallet_set_cap.dimension, '');
		END IF;
	ELSE
		UPDATE wallet.cap c SET amount = amt, updated_at = now()
		 WHERE c.wallet_id = w AND c.asset = wallet_set_cap.asset AND c.period = wallet_set_cap.period
		   AND c.dimension IS NOT DISTINCT FROM wallet_set_cap.dimension;
		IF NOT FOUND THEN
			INSERT INTO wallet.cap (wallet_id, asset, period, dimension, amount)
			VALUES (w, asset, period, dimension, amt);
		END IF;
	END IF;
	UPDATE wallet.account a
	   SET caps = (SELECT count(*) FROM wallet.cap c WHERE c.wallet_id = w AND c.asset = wallet_set_cap.asset)
	 WHERE a.wallet_id = w AND a.asset = wallet_set_cap.asset;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_set_cap(text, text, numeric, text, text) IS
	'at most amount of asset per UTC calendar period (hour, day, week, month), for the wallet or per dimension value; null amount removes the cap';

/*
 * The caps of a wallet in the current UTC period.  One row per cap with
 * dim_value null: for a whole-wallet cap it is the wallet's spend; for a
 * per-dimension cap it stands for every value that has spent nothing yet this
 * period (spent 0, remaining = cap).  Then one row per dimension value that has
 * spent in the period (dim_value '' is the shared bucket of events without the
 * dimension).  remaining is never below 0 (a cap lowered below what was spent).
 */
CREATE FUNCTION @extschema@.wallet_caps(customer text)
RETURNS TABLE (asset text, period text, dimension text, dim_value text, cap numeric, spent numeric,
	remaining numeric, period_start timestamptz, period_end timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	WITH c AS (
		SELECT c.wallet_id, c.asset, c.period, c.dimension, c.amount,
			   date_trunc(c.period, now(), 'UTC') AS ps
		  FROM wallet.cap c
		 WHERE c.wallet_id = wallet._wallet_id(wallet_caps.customer)
	), r AS (
		SELECT c.asset, c.period, c.dimension, NULL::text AS dim_value, c.amount,
			   coalesce(s.spent, 0) AS spent, c.ps
		  FROM c
		  LEFT JOIN wallet.cap_spend s
			ON c.dimension IS NULL AND s.wallet_id = c.wallet_id AND s.asset = c.asset
		   AND s.period = c.period AND s.period_start = c.ps AND s.dimension = '' AND s.dim_value = ''
		UNION ALL
		SELECT c.asset, c.period, c.dimension, s.dim_value, c.amount, s.spent, c.ps
		  FROM c
		  JOIN wallet.cap_spend s
			ON s.wallet_id = c.wallet_id AND s.asset = c.asset AND s.period = c.period
		   AND s.period_start = c.ps AND s.dimension = c.dimension
	)
	SELECT r.asset, r.period, r.dimension, r.dim_value,
		   wallet._major(r.asset, r.amount), wallet._major(r.asset, r.spent),
		   wallet._major(r.asset, greatest(r.amount - r.spent, 0)),
		   r.ps, (r.ps AT TIME ZONE 'UTC' + ('1 ' || r.period)::interval) AT TIME ZONE 'UTC'
	  FROM r
	 ORDER BY r.asset, array_position('{hour,day,week,month}'::text[], r.period),
			  r.dimension NULLS FIRST, r.dim_value NULLS FIRST
$$;
COMMENT ON FUNCTION @extschema@.wallet_caps(text) IS
	'each spend cap of a wallet: spent and remaining in the current UTC period, per dimension value';

/*
 * Give amount (minor units) of spend back to the caps an event was counted in:
 * the buckets of its period (by recorded_at) and dimension values, for the caps
 * that existed when it was recorded; never below 0.  For wallet_refund, which
 * holds the balance row's lock.
 */
CREATE FUNCTION wallet._cap_giveback(event_id bigint, amount bigint)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	e wallet.event;
BEGIN
	IF _cap_giveback.amount IS NULL OR _cap_giveback.amount < 0 THEN
		RAISE EXCEPTION 'amount to give back must be zero or positive: %', _cap_giveback.amount
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO e FROM wallet.event ev WHERE ev.id = _cap_giveback.event_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no event with id %', _cap_giveback.event_id USING ERRCODE = 'WL007';
	END IF;
	IF _cap_giveback.amount = 0 THEN
		RETURN;
	END IF;
	UPDATE wallet.cap_spend s SET spent = greatest(s.spent - _cap_giveback.amount, 0)
	  FROM wallet.cap c
	 WHERE c.wallet_id = e.wallet_id AND c.asset = e.asset AND c.created_at <= e.recorded_at
	   AND s.wallet_id = c.wallet_id AND s.asset = c.asset AND s.period = c.period
	   AND s.period_start = date_trunc(c.period, e.recorded_at, 'UTC')
	   AND s.dimension = coalesce(c.dimension, '')
	   AND s.dim_value = coalesce(e.dimensions ->> c.dimension, '');
END
$$;
COMMENT ON FUNCTION wallet._cap_giveback(bigint, bigint) IS
	'gives spend back to the cap buckets an event was counted in (for refunds); never below 0';

/*
 * Counters of periods that have ended: no debit reads them again (a refund of
 * an old debit gives back to a period that no longer matters).  For
 * wallet_sweep, to keep wallet.cap_spend small.  Returns the rows deleted.
 */
CREATE FUNCTION wallet._cap_prune(as_of timestamptz DEFAULT now())
RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	WITH d AS (
		DELETE FROM wallet.cap_spend s
		 WHERE (s.period_start AT TIME ZONE 'UTC' + ('1 ' || s.period)::interval) AT TIME ZONE 'UTC'
			   <= coalesce(_cap_prune.as_of, now())
		RETURNING 1)
	SELECT count(*) FROM d
$$;
COMMENT ON FUNCTION wallet._cap_prune(timestamptz) IS
	'deletes spend counters of periods ended by as_of (for wallet_sweep); returns how many';

/* ------------------------------------------------- quotes and batches */

CREATE FUNCTION @extschema@.wallet_quote(customer text, meter text, quantity numeric,
	dimensions jsonb DEFAULT '{}', occurred_at timestamptz DEFAULT now())
RETURNS TABLE (asset text, amount numeric, price_id bigint, balance numeric, would_approve boolean)
AS 'MODULE_PATHNAME', 'wallet_quote' LANGUAGE C STABLE;
COMMENT ON FUNCTION @extschema@.wallet_quote(text, text, numeric, jsonb, timestamptz) IS
	'what wallet_authorize_debit would charge now and whether it would approve; locks and writes nothing';

CREATE FUNCTION @extschema@.wallet_ingest(events jsonb)
RETURNS TABLE (idx int, approved boolean, replayed boolean, reason text, error text,
	event_id bigint, asset text, amount numeric, balance numeric)
AS 'MODULE_PATHNAME', 'wallet_ingest' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.wallet_ingest(jsonb) IS
	'a json array of wallet_authorize_debit calls, each processed in order as the single call would; one row per element, an invalid one gets its SQLSTATE in error';

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

/* ------------------------------------------------------------ hot path */

/*
 * The debit hot path (src/hotpath.c) keeps each customer's wallet id and
 * status per backend.  A change to a wallet row (wallet_set_status, a
 * shard's prune) invalidates wallet.wallet's relcache entry at commit, and
 * with it what every backend kept.
 */
CREATE FUNCTION wallet._relation_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'wallet_prices_changed' LANGUAGE C;
COMMENT ON FUNCTION wallet._relation_changed() IS
	'sends a relcache invalidation of the trigger''s table at commit: backends drop what they cached of its rows';
CREATE TRIGGER wallet_cache AFTER UPDATE OR DELETE OR TRUNCATE ON wallet.wallet
	FOR EACH STATEMENT EXECUTE FUNCTION wallet._relation_changed();

/* ------------------------------------------------- roles and privileges */

/*
 * Keep this section last: it closes every function of the extension to
 * PUBLIC and gives the API functions the owner's rights, so it must see all
 * of them.
 *
 *	 wallet_app		the application: hot path and reading functions (and
 *					wallet_record_cost, wallet_outbox_ack); no table, no view.
 *	 wallet_finance	reads every table and view of schema wallet; reading
 *					functions; writes nothing.
 *	 wallet_admin	configuration (assets, wallets, prices, plans, limits, caps),
 *					grants, refunds, voids, costs, the sweep; reading functions;
 *					no table, no view.
 * PUBLIC gets nothing.  No role may write a table: every change goes through
 * a function that runs with the owner's rights (SECURITY DEFINER).  Those
 * written in SQL or PL/pgSQL pin search_path and qualify every name; the C
 * ones qualify every name in the SQL they run and skip the search_path
 * setting, which would cost a GUC save and restore on every hot-path call.
 * The roles are cluster-wide: created if missing, never dropped.
 */
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM (VALUES
		('wallet_app', 'wallet: the application''s hot path and reading functions'),
		('wallet_finance', 'wallet: reads the ledger, the finance views and every table'),
		('wallet_admin', 'wallet: configuration, grants, refunds, voids, costs and the sweep')) AS v(name, note)
	LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r.name) THEN
			BEGIN
				EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r.name);
				EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', r.name, r.note);
			EXCEPTION WHEN duplicate_object OR unique_violation THEN
				NULL;		/* created meanwhile by an install in another database */
			END;
		END IF;
	END LOOP;
END
$$;

REVOKE ALL ON SCHEMA wallet FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA wallet FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA wallet FROM PUBLIC;
REVOKE ALL ON TYPE @extschema@.wallet_result FROM PUBLIC;

/*
 * Every function of the extension: closed to PUBLIC.  Those in the
 * extension's schema (the API) run with the owner's rights; any that is not
 * in C must pin search_path, or the install fails.
 */
DO $$
DECLARE
	f record;
BEGIN
	FOR f IN
		SELECT p.oid::pg_catalog.regprocedure AS fn, p.pronamespace, l.lanname, p.proconfig
		  FROM pg_catalog.pg_depend d
		  JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.objid
		  JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
		 WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
		   AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
		   AND d.deptype OPERATOR(pg_catalog.=) 'e'
		   AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension e
												   WHERE e.extname OPERATOR(pg_catalog.=) 'wallet')
	LOOP
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.fn);
		IF f.pronamespace OPERATOR(pg_catalog.=) '@extschema@'::pg_catalog.regnamespace THEN
			IF f.lanname OPERATOR(pg_catalog.<>) 'c' AND NOT EXISTS (
				SELECT 1 FROM pg_catalog.unnest(f.proconfig) c WHERE c LIKE 'search\_path=%') THEN
				RAISE EXCEPTION 'function % would run with the owner''s rights without a pinned search_path', f.fn;
			END IF;
			EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY DEFINER', f.fn);
		END IF;
	END LOOP;
END
$$;

/* finance reads everything in schema wallet, and the helpers its views call */
GRANT USAGE ON SCHEMA wallet TO wallet_finance;
GRANT SELECT ON ALL TABLES IN SCHEMA wallet TO wallet_finance;
GRANT USAGE ON TYPE @extschema@.wallet_result TO wallet_app, wallet_finance, wallet_admin;

/*
 * Function by function.  Functions marked later are added by work merged
 * after this section was written: skipped while they do not exist.
 */
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN SELECT * FROM (VALUES
		/* hot path */
		('@extschema@.wallet_authorize_debit(text, text, numeric, text, jsonb, timestamptz, numeric)', '{wallet_app}', false),
		('@extschema@.wallet_debit(text, text, numeric, text, jsonb, numeric)', '{wallet_app}', false),
		('@extschema@.wallet_hold(text, text, numeric, text, interval)', '{wallet_app}', false),
		('@extschema@.wallet_capture(bigint, text, numeric, jsonb, numeric)', '{wallet_app}', false),
		('@extschema@.wallet_release(bigint)', '{wallet_app}', false),
		('@extschema@.wallet_ingest(jsonb)', '{wallet_app}', true),
		('@extschema@.wallet_record_cost(bigint, numeric, jsonb)', '{wallet_app,wallet_admin}', false),
		('@extschema@.wallet_outbox_ack(bigint)', '{wallet_app,wallet_admin}', false),
		/* reading */
		('@extschema@.wallet_balance(text, text)', '{wallet_app,wallet_finance,wallet_admin}', false),
		('@extschema@.wallet_balances(text)', '{wallet_app,wallet_finance,wallet_admin}', false),
		('@extschema@.wallet_quote(text, text, numeric, jsonb, timestamptz)', '{wallet_app,wallet_admin}', true),
		('@extschema@.wallet_caps(text)', '{wallet_app,wallet_finance,wallet_admin}', true),
		('@extschema@.wallet_statement(text, timestamptz, timestamptz)', '{wallet_app,wallet_finance,wallet_admin}', false),
		('@extschema@.wallet_verify()', '{wallet_finance,wallet_admin}', false),
		('wallet.margin_by_dimension(text, timestamptz, timestamptz)', '{wallet_finance}', false),
		('wallet._major(text, bigint)', '{wallet_finance}', false),
		('wallet._pending(timestamptz, bigint)', '{wallet_finance}', false),
		/* configuration */
		('@extschema@.wallet_create_asset(text, int, numeric, text)', '{wallet_admin}', false),
		('@extschema@.wallet_create(text, jsonb)', '{wallet_admin}', false),
		('@extschema@.wallet_set_limit(text, text, numeric, numeric, int)', '{wallet_admin}', false),
		('@extschema@.wallet_set_status(text, text)', '{wallet_admin}', false),
		('@extschema@.wallet_set_price(text, text, jsonb, timestamptz, text, text)', '{wallet_admin}', false),
		('@extschema@.wallet_assign_plan(text, text, timestamptz)', '{wallet_admin}', false),
		('@extschema@.wallet_set_cap(text, text, numeric, text, text)', '{wallet_admin}', true),
		('@extschema@.wallet_grant(text, text, numeric, int, timestamptz, timestamptz, text, numeric, text, interval, numeric, jsonb)', '{wallet_admin}', false),
		/* corrections and upkeep */
		('@extschema@.wallet_refund(bigint, numeric, text)', '{wallet_admin}', false),
		('@extschema@.wallet_void_grant(bigint, text)', '{wallet_admin}', false),
		('@extschema@.wallet_sweep(timestamptz)', '{wallet_admin}', false),
		/* scale-out */
		('@extschema@.wallet_shard_check()', '{wallet_finance,wallet_admin}', true),
		('@extschema@.wallet_shard_prune()', '{wallet_admin}', true)
	) AS v(fn, roles, later)
	LOOP
		IF pg_catalog.to_regprocedure(g.fn) IS NULL THEN
			IF g.later THEN
				CONTINUE;
			END IF;
			RAISE EXCEPTION 'no function %', g.fn;
		END IF;
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', g.fn,
			(SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r), ', ') FROM pg_catalog.unnest(g.roles::text[]) r));
	END LOOP;
END
$$;
