/* wallet--1.0--1.1.sql: everything of release 1.1, applied to a 1.0 database */

\echo Use "ALTER EXTENSION wallet UPDATE TO '1.1'" to load this file. \quit

/*
 * How this file is kept.  wallet--1.0.sql is released and never edited: every
 * schema change of 1.1 is written here, and a fresh CREATE EXTENSION runs
 * wallet--1.0.sql and then this file (there is no wallet--1.1.sql), so an
 * upgraded database and a fresh one are built by the very same statements.
 *
 * Rules, as for the install script: every name schema-qualified, every new
 * object followed by COMMENT ON, privileges granted explicitly, and every new
 * table that holds data registered with pg_extension_config_dump.  A
 * statement here must also be correct on a populated 1.0 database: new
 * columns get defaults or a backfill from the existing rows.
 *
 * Sections below, one per part of the release, in the order they landed.
 */

/* ------------------------------------------------------------ release */

/* the C library reads this to tell a 1.1 schema from a 1.0 one (WalletSchemaVersion) */
CREATE FUNCTION wallet._schema_version() RETURNS int
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS 'SELECT 11';
COMMENT ON FUNCTION wallet._schema_version() IS
	'the schema release of the installed wallet scripts, as major*10+minor (1.1 = 11)';
REVOKE ALL ON FUNCTION wallet._schema_version() FROM PUBLIC;

/* ------------------------------------------------------------ coherence (#15) */

/* ------------------------------------------------------------ binding holds (#16) */

/* ------------------------------------------------------------ hardening (#17) */

/*
 * Byte limits of the text inputs that are stored (docs/security.md), checked
 * by BEFORE triggers on the tables, so that whatever function writes the row
 * a value too long for its index or its lookups is 22023 before any index
 * can refuse it (54000).  The C entry points check the same limits (wallet.h)
 * before their lookups.  TG_ARGV: column, bytes, column, bytes, ...
 */
CREATE FUNCTION wallet._text_limits() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	row jsonb := to_jsonb(NEW);
	v text;
BEGIN
	FOR i IN 0 .. TG_NARGS - 1 BY 2 LOOP
		v := row ->> TG_ARGV[i];
		IF octet_length(v) > TG_ARGV[i + 1]::int THEN
			RAISE EXCEPTION '% is longer than % bytes', TG_ARGV[i], TG_ARGV[i + 1]
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('It is %s bytes.', octet_length(v));
		END IF;
	END LOOP;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION wallet._text_limits() IS
	'refuses (22023) a text column longer than its byte limit; arguments: column, bytes, ...';
REVOKE ALL ON FUNCTION wallet._text_limits() FROM PUBLIC;

CREATE TRIGGER text_limits BEFORE INSERT OR UPDATE OF customer ON wallet.wallet
	FOR EACH ROW EXECUTE FUNCTION wallet._text_limits('customer', '256');
CREATE TRIGGER text_limits BEFORE INSERT OR UPDATE OF meter, plan, customer ON wallet.price
	FOR EACH ROW EXECUTE FUNCTION wallet._text_limits('meter', '127', 'plan', '256', 'customer', '256');
CREATE TRIGGER text_limits BEFORE INSERT OR UPDATE OF dimension ON wallet.cap
	FOR EACH ROW EXECUTE FUNCTION wallet._text_limits('dimension', '127');
COMMENT ON TRIGGER text_limits ON wallet.wallet IS 'customer <= 256 bytes (22023)';
COMMENT ON TRIGGER text_limits ON wallet.price IS 'meter <= 127 bytes, plan and customer <= 256 (22023)';
COMMENT ON TRIGGER text_limits ON wallet.cap IS 'dimension <= 127 bytes (22023)';

/*
 * A grant's recurrence: every field >= 0 (a month and minus 30 days is not a
 * period: its boundaries go back and forth), and its external_ref at most 255
 * bytes (checked on INSERT only: the debit hot path, which updates grants,
 * honours no UPDATE trigger).  Grants written by 1.0 with a negative field
 * are left as they are: they never refill (grant.c).
 */
CREATE FUNCTION wallet._grant_checks() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NEW.recurrence IS NOT NULL AND (
		   date_trunc('month', NEW.recurrence) < interval '0'
		OR date_trunc('day', NEW.recurrence) - date_trunc('month', NEW.recurrence) < interval '0'
		OR NEW.recurrence - date_trunc('day', NEW.recurrence) < interval '0'
		OR NEW.recurrence <= interval '0') THEN
		RAISE EXCEPTION 'recurrence must be a positive interval with no negative field: %', NEW.recurrence
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Write the period with fields of one sign, e.g. ''1 month'' or ''29 days 23:59:59''.';
	END IF;
	IF octet_length(NEW.external_ref) > 255 THEN
		RAISE EXCEPTION 'external_ref is longer than 255 bytes'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION wallet._grant_checks() IS
	'refuses (22023) a recurrence with a negative field and an external_ref over 255 bytes';
REVOKE ALL ON FUNCTION wallet._grant_checks() FROM PUBLIC;
CREATE TRIGGER grant_checks BEFORE INSERT ON wallet.grant_block
	FOR EACH ROW EXECUTE FUNCTION wallet._grant_checks();
COMMENT ON TRIGGER grant_checks ON wallet.grant_block IS 'recurrence fields >= 0, external_ref <= 255 bytes (22023)';

/*
 * external_ref is unique per customer (1.0: across customers, so one
 * customer's top-up waited on another's and was told its grant id).  The
 * refs of a 1.0 database are unique across customers, so per customer too.
 */
ALTER TABLE wallet.grant_block DROP CONSTRAINT grant_block_external_ref_key;
ALTER TABLE wallet.grant_block ADD CONSTRAINT grant_block_external_ref_key UNIQUE (wallet_id, external_ref);

/* wallet_grant: the external_ref lookup is the customer's own (otherwise as 1.0; SECURITY DEFINER as the 1.0 install made it) */
CREATE OR REPLACE FUNCTION @extschema@.wallet_grant(customer text, asset text, amount numeric,
	priority int DEFAULT 100, expires_at timestamptz DEFAULT NULL,
	effective_at timestamptz DEFAULT now(), category text DEFAULT 'paid',
	unit_revenue numeric DEFAULT NULL, external_ref text DEFAULT NULL,
	recurrence interval DEFAULT NULL, rollover_max numeric DEFAULT 0,
	metadata jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
		/* per customer (1.1): another customer's use of the ref is neither waited on nor named */
		SELECT * INTO g FROM wallet.grant_block gb
		 WHERE gb.wallet_id = w AND gb.external_ref = wallet_grant.external_ref;
		IF FOUND THEN
			IF g.asset <> wallet_grant.asset OR g.amount <> amt
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

/* wallet_record_cost: a clash names the key, never another customer's value */
CREATE OR REPLACE FUNCTION @extschema@.wallet_record_cost(event_id bigint, cost numeric,
	dimensions jsonb DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
			/* the stored value is not shown: the caller may not be the event's customer (1.1) */
			RAISE EXCEPTION 'dimension "%" of event % already has another value', left(clash, 100), event_id
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

/*
 * The append-only triggers of the ledger stop mistakes; this event trigger
 * stops the tables' owner, when it is not a superuser, from disabling,
 * renaming or dropping them (ALTER TABLE ... DISABLE TRIGGER, DROP TRIGGER)
 * and then deleting lines.  It checks the triggers' state after each such
 * command and undoes the command by raising.  A superuser is not stopped
 * (docs/security.md says who can still change the ledger).  It reads only the
 * catalogs, by name: every role's DDL fires it, with or without USAGE on
 * schema wallet.
 */
CREATE FUNCTION wallet._ledger_guard() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	missing text;
BEGIN
	IF (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		RETURN;
	END IF;
	SELECT string_agg(format('%s on wallet.%s', t.tgname, t.relname), ', ') INTO missing
	  FROM (VALUES ('line_stored', 'line_append_only'), ('line_stored', 'line_no_truncate'),
				   ('event', 'event_immutable'), ('event', 'event_no_delete'),
				   ('event', 'event_no_truncate'), ('refund', 'refund_append_only'),
				   ('refund', 'refund_no_truncate')) AS t(relname, tgname)
	 WHERE NOT EXISTS (SELECT FROM pg_trigger tg
						 JOIN pg_class c ON c.oid = tg.tgrelid
						 JOIN pg_namespace n ON n.oid = c.relnamespace
						WHERE n.nspname = 'wallet' AND c.relname = t.relname
						  AND tg.tgname = t.tgname AND tg.tgenabled IN ('O', 'A'));
	IF missing IS NOT NULL THEN
		RAISE EXCEPTION 'the ledger''s append-only triggers cannot be disabled or dropped: %', missing
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Only a superuser can change them (docs/security.md).';
	END IF;
END
$$;
COMMENT ON FUNCTION wallet._ledger_guard() IS
	'event trigger: refuses a command by a non-superuser that disabled or dropped an append-only trigger of the ledger';
REVOKE ALL ON FUNCTION wallet._ledger_guard() FROM PUBLIC;
CREATE EVENT TRIGGER wallet_ledger_guard ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE', 'DROP TRIGGER', 'ALTER TRIGGER')
	EXECUTE FUNCTION wallet._ledger_guard();
COMMENT ON EVENT TRIGGER wallet_ledger_guard IS
	'keeps the ledger''s append-only triggers in place against the tables'' owner when it is not a superuser';

/* ------------------------------------------------------------ top-up loop (#18) */

/* ------------------------------------------------------------ scoped credits (#19) */

/* ------------------------------------------------------------ pricing (#20) */

/* ------------------------------------------------------------ reads (#21) */

/* ------------------------------------------------------------ throughput (#22) */
