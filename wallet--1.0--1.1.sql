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

/* ------------------------------------------------------------ top-up loop (#18) */

/* ------------------------------------------------------------ scoped credits (#19) */

/* ------------------------------------------------------------ pricing (#20) */

/* ------------------------------------------------------------ reads (#21) */

/*
 * Reads for billing pages: paged statements and usage, at any history size.
 *
 * Both read what they have summed once instead of the whole history:
 *	 wallet.statement_mark	the balance of a wallet and asset before a time,
 *							every few hundred lines;
 *	 wallet.usage_sum		events, quantity and amount per UTC hour and per
 *							UTC day, meter and dimensions, of the events
 *							recorded (and refunds made) before a wallet's
 *							usage_mark.upto.
 * The reads write them (they run with the owner's rights) for times that are
 * settled: before the start of the oldest transaction running
 * (wallet._settled(), src/reads.c), so no line or event can still appear
 * there.  That holds because every line, event and refund is dated at or
 * after the start of the transaction that writes it, but lines time has made
 * (expiries, resets, which the reads compute whether written down or not) and
 * hold and release lines (which move no balance): a new kind of line dated
 * in the past must be one of those, or drop the marks after it.
 *
 * The debit writes nothing for them: both are caches of the ledger and the
 * events, rebuilt on demand when missing (after an upgrade, on a restore), and
 * a read that may not write (read only, a standby, REPEATABLE READ) uses what
 * is there and sums the rest.  The debit gains two index entries on
 * wallet.event: (wallet_id, recorded_at) finds a wallet's lines and events by
 * time, (line_id) the line a page goes on after.
 */

CREATE INDEX event_wallet_recorded ON wallet.event (wallet_id, recorded_at);
CREATE INDEX event_line ON wallet.event (line_id) WHERE line_id IS NOT NULL;
/* a wallet's stored lines by time, and a line by id (line_wallet's columns lead the first) */
CREATE INDEX line_wallet_at ON wallet.line_stored (wallet_id, asset, at, id);
CREATE INDEX line_stored_id ON wallet.line_stored (id);
DROP INDEX wallet.line_wallet;
CREATE INDEX refund_wallet ON wallet.refund (wallet_id, at);

CREATE TABLE wallet.statement_mark (
	wallet_id	bigint NOT NULL,
	asset		text NOT NULL,
	at			timestamptz NOT NULL,
	balance		bigint NOT NULL,
	PRIMARY KEY (wallet_id, asset, at)
);
COMMENT ON TABLE wallet.statement_mark IS
	'cache for wallet_statement: balance = the sum of the ledger lines of the wallet and asset dated before at (holds and releases count 0)';

CREATE TABLE wallet.usage_mark (
	wallet_id	bigint PRIMARY KEY,
	upto		timestamptz NOT NULL
);
COMMENT ON TABLE wallet.usage_mark IS
	'cache for wallet_usage: the events of the wallet recorded before upto, and its refunds made before upto, are summed in wallet.usage_sum';

CREATE TABLE wallet.usage_sum (
	wallet_id	bigint NOT NULL,
	span		text NOT NULL CHECK (span IN ('hour', 'day')),
	at			timestamptz NOT NULL,
	asset		text NOT NULL,
	meter		text,
	dimensions	jsonb NOT NULL,
	events		bigint NOT NULL,
	quantity	numeric,
	amount		numeric NOT NULL,
	UNIQUE NULLS NOT DISTINCT (wallet_id, span, at, asset, meter, dimensions)
);
COMMENT ON TABLE wallet.usage_sum IS
	'cache for wallet_usage: events, quantity and amount (minor units) net of refunds, per UTC hour and per UTC day (span) of occurred_at, asset, meter and request dimensions';

SELECT pg_catalog.pg_extension_config_dump('wallet.statement_mark', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.usage_mark', '');
SELECT pg_catalog.pg_extension_config_dump('wallet.usage_sum', '');
REVOKE ALL ON wallet.statement_mark, wallet.usage_mark, wallet.usage_sum FROM PUBLIC;
GRANT SELECT ON wallet.statement_mark, wallet.usage_mark, wallet.usage_sum TO wallet_finance;

CREATE FUNCTION wallet._settled() RETURNS timestamptz
AS 'MODULE_PATHNAME', 'wallet_settled' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION wallet._settled() IS
	'start of the oldest transaction running: no line or event can still appear before it; null when this transaction must not write caches';
REVOKE ALL ON FUNCTION wallet._settled() FROM PUBLIC;

/* the settled time, or null while a prepared transaction may still commit lines */
CREATE FUNCTION wallet._settled_time() RETURNS timestamptz
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts) THEN NULL
				ELSE wallet._settled() END
$$;
COMMENT ON FUNCTION wallet._settled_time() IS
	'wallet._settled(), null while a prepared transaction exists';
REVOKE ALL ON FUNCTION wallet._settled_time() FROM PUBLIC;

/*
 * The ledger lines of a wallet and asset dated in [lo, hi) and not after now,
 * as wallet_statement reads them: stored lines, the debit lines carried on
 * events, and the lines time has made that no sweep has written (id null).
 * delta is what the line does to the balance (holds and releases: 0).
 */
CREATE FUNCTION wallet._lines(w bigint, a text, lo timestamptz, hi timestamptz)
RETURNS TABLE (id bigint, at timestamptz, grant_id bigint, event_id bigint, hold_id bigint,
	kind text, amount bigint, delta bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT l.id, l.at, l.grant_id, l.event_id, l.hold_id, l.kind, l.amount,
		   CASE WHEN l.kind IN ('hold', 'release') THEN 0 ELSE l.amount END
	  FROM wallet.line_stored l
	 WHERE l.wallet_id = _lines.w AND l.asset = _lines.a
	   AND l.at >= _lines.lo AND l.at < _lines.hi AND l.at <= now()
	UNION ALL
	SELECT e.line_id, e.recorded_at, e.line_grant_id, e.id, e.hold_id, 'debit', -e.amount, -e.amount
	  FROM wallet.event e
	 WHERE e.wallet_id = _lines.w AND e.asset = _lines.a AND e.line_id IS NOT NULL
	   AND e.recorded_at >= _lines.lo AND e.recorded_at < _lines.hi AND e.recorded_at <= now()
	UNION ALL
	SELECT NULL, p.at, p.grant_id, NULL, NULL, p.kind, p.amount, p.amount
	  FROM wallet._pending(now(), _lines.w) p
	 WHERE p.asset = _lines.a AND p.at >= _lines.lo AND p.at < _lines.hi
$$;
COMMENT ON FUNCTION wallet._lines(bigint, text, timestamptz, timestamptz) IS
	'ledger lines of a wallet and asset dated in [lo, hi), written or not, with what each does to the balance';
REVOKE ALL ON FUNCTION wallet._lines(bigint, text, timestamptz, timestamptz) FROM PUBLIC;

/*
 * Extend the statement marks of a wallet and asset up to settled: one mark
 * every 500 lines after the last one.  A mark never passes a reset that no
 * sweep has written (the time of a pending reset that adds up several periods
 * moves on with the clock).  One writer per wallet and asset at a time: a
 * reader that finds another one writing goes on without (a read never waits
 * for another).
 */
CREATE FUNCTION wallet._statement_marks(w bigint, a text, settled timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	last_at timestamptz := '-infinity';
	last_bal bigint := 0;
	upto timestamptz := settled;
BEGIN
	IF settled IS NULL THEN
		RETURN;
	END IF;
	SELECT least(upto, min(p.at)) INTO upto
	  FROM wallet._pending(now(), w) p WHERE p.asset = a AND p.kind = 'reset';
	SELECT m.at, m.balance INTO last_at, last_bal
	  FROM wallet.statement_mark m
	 WHERE m.wallet_id = w AND m.asset = a ORDER BY m.at DESC LIMIT 1;
	IF NOT FOUND THEN
		last_at := '-infinity';
		last_bal := 0;
	END IF;
	IF upto <= last_at THEN
		RETURN;
	END IF;
	IF NOT pg_try_advisory_xact_lock(hashtext('wallet.statement_mark'), hashtext(w::text || '/' || a)) THEN
		RETURN;
	END IF;
	INSERT INTO wallet.statement_mark (wallet_id, asset, at, balance)
	SELECT w, a, t.at, last_bal + t.before
	  FROM (SELECT s.at, s.n_before,
				   (sum(s.d) OVER win - s.d)::bigint AS before,
				   lag(s.n_before) OVER (ORDER BY s.at) AS n_prev
			  FROM (SELECT g.at, g.d, g.n, (sum(g.n) OVER (ORDER BY g.at) - g.n)::bigint AS n_before
					  FROM (SELECT l.at, sum(l.delta) AS d, count(*) AS n
							  FROM wallet._lines(w, a, last_at, upto) l GROUP BY l.at) g) s
			WINDOW win AS (ORDER BY s.at)) t
	 WHERE t.n_prev IS NOT NULL AND t.n_before / 500 > t.n_prev / 500
	ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION wallet._statement_marks(bigint, text, timestamptz) IS
	'writes statement marks of a wallet and asset, every 500 lines, up to a settled time';
REVOKE ALL ON FUNCTION wallet._statement_marks(bigint, text, timestamptz) FROM PUBLIC;

/* the balance of a wallet and asset before time x: the last mark, then the lines after it */
CREATE FUNCTION wallet._balance_before(w bigint, a text, x timestamptz)
RETURNS bigint LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m_at timestamptz := '-infinity';
	m_bal bigint := 0;
BEGIN
	SELECT m.at, m.balance INTO m_at, m_bal
	  FROM wallet.statement_mark m
	 WHERE m.wallet_id = w AND m.asset = a AND m.at <= x ORDER BY m.at DESC LIMIT 1;
	IF NOT FOUND THEN
		m_at := '-infinity';
		m_bal := 0;
	END IF;
	RETURN m_bal + coalesce((SELECT sum(l.delta) FROM wallet._lines(w, a, m_at, x) l), 0)::bigint;
END
$$;
COMMENT ON FUNCTION wallet._balance_before(bigint, text, timestamptz) IS
	'balance of a wallet and asset from its lines dated before x, from the last statement mark';
REVOKE ALL ON FUNCTION wallet._balance_before(bigint, text, timestamptz) FROM PUBLIC;

/*
 * The account statement, paged (1.0 had no after_line and max_lines: called
 * without them it returns what 1.0 did).  Lines are in the order of 1.0: per
 * asset, by time, then line id (lines time has made that no sweep has written
 * have no id and come after the others of their time).  A page:
 *	 - starts after the line after_line (of this customer) or at since, in the
 *	   asset of that line, and goes on through the next assets;
 *	 - holds at most max_lines lines, but never ends on a line without id:
 *	   such lines at its end are followed up to the next line with an id, so
 *	   that the last line_id of a page is always the next page's after_line;
 *	 - per asset it reaches: an opening row, the balance just before the
 *	   asset's first line on the page (at: since, or the time of after_line);
 *	   its lines with the balance after each; a closing row when the asset's
 *	   lines end on this page.  An asset whose lines all came before
 *	   after_line is left out.
 * The opening balance comes from the last statement mark before it, so a page
 * costs what its lines and the few hundred lines before it cost, whatever the
 * history.
 */
DROP FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz);
CREATE FUNCTION @extschema@.wallet_statement(customer text, since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT NULL, after_line bigint DEFAULT NULL, max_lines int DEFAULT NULL)
RETURNS TABLE (asset text, at timestamptz, kind text, description text, amount numeric,
	balance numeric, line_id bigint, grant_id bigint, event_id bigint, hold_id bigint)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	w bigint := wallet._wallet_id(customer);
	settled timestamptz;
	cur_asset text;
	cur_at timestamptz;
	a text;
	open_at timestamptz;
	bal bigint;
	lim int;
	left_lines int := max_lines;
	npending int;
	n int;
	r record;
	complete boolean;
	hi timestamptz;
	last_id bigint;
BEGIN
	IF since IS NULL THEN
		RAISE EXCEPTION 'since must not be null' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use ''-infinity'' for the whole history.';
	END IF;
	IF until < since THEN
		RAISE EXCEPTION 'until % is before since %', until, since USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF max_lines < 1 THEN
		RAISE EXCEPTION 'max_lines must be at least 1: %', max_lines USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF after_line IS NOT NULL THEN
		SELECT l.asset, l.at INTO cur_asset, cur_at
		  FROM wallet.line_stored l WHERE l.id = after_line AND l.wallet_id = w;
		IF NOT FOUND THEN
			SELECT e.asset, e.recorded_at INTO cur_asset, cur_at
			  FROM wallet.event e WHERE e.line_id = after_line AND e.wallet_id = w;
		END IF;
		IF cur_asset IS NULL THEN
			RAISE EXCEPTION 'line % is not a ledger line of customer "%"', after_line, left(customer, 100)
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Pass the line_id of the last line of the page before.';
		END IF;
	END IF;
	settled := wallet._settled_time();
	hi := CASE WHEN until IS NULL THEN 'infinity' ELSE until END;

	FOR a IN SELECT ac.asset FROM wallet.account ac
			  WHERE ac.wallet_id = w AND (cur_asset IS NULL OR ac.asset >= cur_asset)
			  ORDER BY ac.asset
	LOOP
		EXIT WHEN left_lines = 0;
		CONTINUE WHEN a = cur_asset AND cur_at >= hi;	/* after_line is past until */
		/* marks up to where the page starts (a page never pays for the history after it) */
		PERFORM wallet._statement_marks(w, a,
			CASE WHEN settled IS NOT NULL THEN least(settled,
				CASE WHEN a = cur_asset AND cur_at >= since THEN cur_at ELSE since END) END);
		IF a = cur_asset AND cur_at >= since THEN
			open_at := cur_at;
			bal := wallet._balance_before(w, a, cur_at)
				   + coalesce((SELECT sum(l.delta) FROM wallet._lines(w, a, cur_at, cur_at + interval '1 microsecond') l
							   WHERE l.id <= after_line), 0)::bigint;
		ELSE
			open_at := since;
			bal := wallet._balance_before(w, a, since);
		END IF;

		SELECT count(*) INTO npending FROM wallet._pending(now(), w) p WHERE p.asset = a;
		lim := CASE WHEN left_lines IS NULL THEN NULL ELSE left_lines + 1 + npending END;
		n := 0;
		complete := true;
		FOR r IN
			SELECT l.*,
				   CASE l.kind
				   WHEN 'grant' THEN format('%s grant %s', g.category, l.grant_id)
						|| coalesce(' (' || g.external_ref || ')', '')
				   WHEN 'debit' THEN coalesce(e.meter || ' ' || e.quantity::text, 'debit')
						|| format(' (event %s)', l.event_id)
						|| CASE WHEN l.grant_id IS NULL THEN ' on overdraft'
								ELSE format(' from %s grant %s', g.category, l.grant_id) END
				   WHEN 'refund' THEN format('refund of event %s', l.event_id)
						|| CASE WHEN l.grant_id IS NULL THEN ' pays back overdraft'
								ELSE format(' to %s grant %s', g.category, l.grant_id) END
				   WHEN 'repay' THEN CASE WHEN l.grant_id IS NULL THEN 'overdraft repaid'
								ELSE format('%s grant %s repays overdraft', g.category, l.grant_id) END
				   WHEN 'reset' THEN format('%s grant %s renewed', g.category, l.grant_id)
				   WHEN 'expiry' THEN format('%s grant %s expired unused', g.category, l.grant_id)
				   WHEN 'void' THEN format('%s grant %s voided', g.category, l.grant_id)
						|| coalesce(': ' || g.void_reason, '')
				   WHEN 'hold' THEN format('hold %s reserves (the balance does not move)', l.hold_id)
				   WHEN 'release' THEN format('hold %s released', l.hold_id)
				   ELSE l.kind END AS description
			  FROM (SELECT x.* FROM (
						(SELECT s.id, s.at, s.grant_id, s.event_id, s.hold_id, s.kind, s.amount,
								CASE WHEN s.kind IN ('hold', 'release') THEN 0 ELSE s.amount END AS delta
						   FROM wallet.line_stored s
						  WHERE s.wallet_id = w AND s.asset = a AND s.at <= now() AND s.at < hi
							AND s.at >= open_at
							AND (open_at > cur_at OR a IS DISTINCT FROM cur_asset OR s.at > cur_at
								 OR s.id > after_line)
						  ORDER BY s.at, s.id LIMIT lim)
						UNION ALL
						(SELECT ev.line_id, ev.recorded_at, ev.line_grant_id, ev.id, ev.hold_id, 'debit',
								-ev.amount, -ev.amount
						   FROM wallet.event ev
						  WHERE ev.wallet_id = w AND ev.asset = a AND ev.line_id IS NOT NULL
							AND ev.recorded_at <= now() AND ev.recorded_at < hi AND ev.recorded_at >= open_at
							AND (open_at > cur_at OR a IS DISTINCT FROM cur_asset OR ev.recorded_at > cur_at
								 OR ev.line_id > after_line)
						  ORDER BY ev.recorded_at, ev.line_id LIMIT lim)
						UNION ALL
						SELECT NULL, p.at, p.grant_id, NULL, NULL, p.kind, p.amount, p.amount
						  FROM wallet._pending(now(), w) p
						 WHERE p.asset = a AND p.at >= open_at AND p.at < hi) x
					 ORDER BY x.at, x.id NULLS LAST, x.grant_id, x.kind
					 LIMIT lim) l
			  LEFT JOIN wallet.grant_block g ON g.id = l.grant_id
			  LEFT JOIN wallet.event e ON e.id = l.event_id
			 ORDER BY l.at, l.id NULLS LAST, l.grant_id, l.kind
		LOOP
			IF left_lines IS NOT NULL AND n >= left_lines AND last_id IS NOT NULL THEN
				complete := false;		/* the page is full and ends on a line with an id */
				EXIT;
			END IF;
			last_id := r.id;
			IF n = 0 THEN
				RETURN QUERY SELECT a, open_at, 'opening'::text, 'opening balance'::text, NULL::numeric,
					wallet._major(a, bal), NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint;
			END IF;
			bal := bal + r.delta;
			n := n + 1;
			RETURN QUERY SELECT a, r.at, r.kind, r.description, wallet._major(a, r.amount),
				wallet._major(a, bal), r.id, r.grant_id, r.event_id, r.hold_id;
		END LOOP;

		IF n = 0 THEN
			/* nothing after after_line in its asset: that asset ended on the page before */
			CONTINUE WHEN a = cur_asset AND open_at = cur_at;
			RETURN QUERY SELECT a, open_at, 'opening'::text, 'opening balance'::text, NULL::numeric,
				wallet._major(a, bal), NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint;
		END IF;
		IF complete THEN
			RETURN QUERY SELECT a, coalesce(until, now()), 'closing'::text, 'closing balance'::text,
				NULL::numeric, wallet._major(a, bal), NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint;
		END IF;
		left_lines := left_lines - n;
		EXIT WHEN NOT complete;
	END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz, bigint, int) IS
	'account statement per asset, paged: opening balance, ledger lines in [since, until) after after_line (at most max_lines) with the balance after each, closing balance';
REVOKE ALL ON FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz, bigint, int) FROM PUBLIC;
ALTER FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz, bigint, int) SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_statement(text, timestamptz, timestamptz, bigint, int)
	TO wallet_app, wallet_finance, wallet_admin;

/*
 * Roll the usage of a wallet up to the last whole UTC hour before settled:
 * the events recorded and the refunds made since usage_mark.upto are added
 * to wallet.usage_sum, per hour and per day, once an hour at most.  A refund
 * counts in the hour of its event: its amount negative, and the event's count
 * and quantity negative when it is the refund that completes the event.  A
 * caller that finds another one rolling leaves it to it.
 */
CREATE FUNCTION wallet._usage_roll(w bigint, settled timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	target timestamptz := date_trunc('hour', settled, 'UTC');
	from_at timestamptz;
BEGIN
	IF settled IS NULL THEN
		RETURN;
	END IF;
	SELECT m.upto INTO from_at FROM wallet.usage_mark m WHERE m.wallet_id = w;
	IF from_at >= target THEN
		RETURN;					/* the common case: nothing to write */
	END IF;
	/* one writer per wallet at a time; the others read without waiting */
	IF NOT pg_try_advisory_xact_lock(hashtext('wallet.usage_sum'), hashtext(w::text)) THEN
		RETURN;
	END IF;
	INSERT INTO wallet.usage_mark (wallet_id, upto) VALUES (w, '-infinity') ON CONFLICT DO NOTHING;
	SELECT m.upto INTO from_at FROM wallet.usage_mark m WHERE m.wallet_id = w FOR UPDATE;
	IF from_at >= target THEN
		RETURN;
	END IF;
	INSERT INTO wallet.usage_sum AS us (wallet_id, span, at, asset, meter, dimensions, events, quantity, amount)
	SELECT w, sp.span, date_trunc(sp.span, b.h, 'UTC'), b.asset, b.meter, b.d, sum(b.n), sum(b.q), sum(b.amt)
	  FROM (SELECT date_trunc('hour', e.occurred_at, 'UTC') AS h, e.asset, e.meter,
				   coalesce(e.dimensions, '{}') AS d, 1 AS n, e.quantity AS q, e.amount::numeric AS amt
			  FROM wallet.event e
			 WHERE e.wallet_id = w AND e.recorded_at >= from_at AND e.recorded_at < target
			UNION ALL
			SELECT date_trunc('hour', e.occurred_at, 'UTC'), e.asset, e.meter, coalesce(e.dimensions, '{}'),
				   CASE WHEN x.completes THEN -1 ELSE 0 END, CASE WHEN x.completes THEN -e.quantity END,
				   -x.amount
			  FROM (SELECT r.event_id, r.amount,
						   (SELECT sum(r2.amount) FROM wallet.refund r2
							 WHERE r2.event_id = r.event_id AND r2.id <= r.id) = ev.amount AS completes
					  FROM wallet.refund r JOIN wallet.event ev ON ev.id = r.event_id
					 WHERE r.wallet_id = w AND r.at >= from_at AND r.at < target OFFSET 0) x
			  JOIN wallet.event e ON e.id = x.event_id) b,
		   (VALUES ('hour'), ('day')) sp(span)
	 GROUP BY 2, 3, 4, 5, 6
	ON CONFLICT (wallet_id, span, at, asset, meter, dimensions) DO UPDATE
	   SET events = us.events + excluded.events,
		   quantity = CASE WHEN us.quantity IS NULL AND excluded.quantity IS NULL THEN NULL
						   ELSE coalesce(us.quantity, 0) + coalesce(excluded.quantity, 0) END,
		   amount = us.amount + excluded.amount;
	UPDATE wallet.usage_mark m SET upto = target WHERE m.wallet_id = w;
END
$$;
COMMENT ON FUNCTION wallet._usage_roll(bigint, timestamptz) IS
	'adds the events recorded and refunds made since a wallet''s usage mark to wallet.usage_sum, up to the last whole hour before settled';
REVOKE ALL ON FUNCTION wallet._usage_roll(bigint, timestamptz) FROM PUBLIC;

/*
 * Usage per UTC hour, day or month of occurred_at, per meter (group_by
 * 'meter') or per value of one dimension of the request (null when an event
 * has none), and per asset.  Net of refunds: amount less what was refunded;
 * an event refunded in full counts for neither events nor quantity.  Usage is
 * kept per hour: since is taken down and until up to a whole UTC hour.  The
 * events recorded and the refunds made before the wallet's usage mark are
 * read from wallet.usage_sum (whole UTC days from its day sums, the hours at
 * the edges from its hour sums), the later ones from wallet.event and
 * wallet.refund: the cost is the days and edge hours of the window, times the
 * meters and dimension values seen in each, and the last hour's events.
 */
CREATE FUNCTION @extschema@.wallet_usage(customer text, since timestamptz, until timestamptz DEFAULT now(),
	bucket text DEFAULT 'day', group_by text DEFAULT 'meter')
RETURNS TABLE (bucket_start timestamptz, key text, asset text, events bigint, quantity numeric,
	amount numeric)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	w bigint := wallet._wallet_id(customer);
	s timestamptz;
	u timestamptz;
	ds timestamptz;
	de timestamptz;
	seen timestamptz;
BEGIN
	IF since IS NULL OR until IS NULL THEN
		RAISE EXCEPTION 'since and until must not be null' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use ''-infinity'' for the whole history.';
	END IF;
	IF until < since THEN
		RAISE EXCEPTION 'until % is before since %', until, since USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF bucket IS NULL OR bucket NOT IN ('hour', 'day', 'month') THEN
		RAISE EXCEPTION 'unknown bucket "%"', left(bucket, 64) USING ERRCODE = 'invalid_parameter_value',
			HINT = 'The buckets are hour, day and month (UTC).';
	END IF;
	IF group_by IS NULL OR group_by = '' OR octet_length(group_by) > 127 THEN
		RAISE EXCEPTION 'invalid group_by "%"', left(group_by, 64) USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'group_by is ''meter'' or the name of a dimension (1 to 127 bytes).';
	END IF;
	s := date_trunc('hour', since, 'UTC');
	u := date_trunc('hour', until, 'UTC');
	IF u < until THEN
		u := u + interval '1 hour';
	END IF;
	/* [ds, de): the whole UTC days inside [s, u), read from the day sums */
	ds := date_trunc('day', s, 'UTC');
	IF ds < s THEN
		ds := ds + interval '1 day';
	END IF;
	de := date_trunc('day', u, 'UTC');
	IF bucket = 'hour' OR ds >= de THEN
		ds := u;
		de := u;
	END IF;
	PERFORM wallet._usage_roll(w, wallet._settled_time());
	/*
	 * The query below reads the mark again, in its own snapshot, with the sums
	 * it covers; seen (never after it: marks only move on) tells the planner
	 * that few events and refunds come after it.
	 */
	seen := coalesce((SELECT um.upto FROM wallet.usage_mark um WHERE um.wallet_id = w), '-infinity');

	RETURN QUERY
	WITH m AS (
		SELECT coalesce((SELECT um.upto FROM wallet.usage_mark um WHERE um.wallet_id = w), '-infinity') AS upto),
	x AS (
		SELECT h.at AS hour, h.asset, h.meter, h.dimensions, h.events, h.quantity, h.amount
		  FROM wallet.usage_sum h
		 WHERE h.wallet_id = w AND h.span = 'hour' AND h.at >= s AND h.at < ds
		UNION ALL
		SELECT h.at, h.asset, h.meter, h.dimensions, h.events, h.quantity, h.amount
		  FROM wallet.usage_sum h
		 WHERE h.wallet_id = w AND h.span = 'day' AND h.at >= ds AND h.at < de
		UNION ALL
		SELECT h.at, h.asset, h.meter, h.dimensions, h.events, h.quantity, h.amount
		  FROM wallet.usage_sum h
		 WHERE h.wallet_id = w AND h.span = 'hour' AND h.at >= de AND h.at < u
		UNION ALL
		SELECT date_trunc('hour', e.occurred_at, 'UTC'), e.asset, e.meter, coalesce(e.dimensions, '{}'),
			   1, e.quantity, e.amount
		  FROM wallet.event e, m
		 WHERE e.wallet_id = w AND e.recorded_at >= seen AND e.recorded_at >= m.upto
		   AND e.occurred_at >= s AND e.occurred_at < u
		UNION ALL
		SELECT date_trunc('hour', e.occurred_at, 'UTC'), e.asset, e.meter, coalesce(e.dimensions, '{}'),
			   CASE WHEN y.completes THEN -1 ELSE 0 END,
			   CASE WHEN y.completes THEN -e.quantity ELSE 0 END, -y.amount
		  FROM (SELECT r.event_id, r.amount,
					   (SELECT sum(r2.amount) FROM wallet.refund r2
						 WHERE r2.event_id = r.event_id AND r2.id <= r.id) = ev.amount AS completes
				  FROM wallet.refund r JOIN wallet.event ev ON ev.id = r.event_id, m
				 WHERE r.wallet_id = w AND r.at >= seen AND r.at >= m.upto OFFSET 0) y
		  JOIN wallet.event e ON e.id = y.event_id
		 WHERE e.occurred_at >= s AND e.occurred_at < u)
	SELECT date_trunc(bucket, x.hour, 'UTC') AS b,
		   CASE WHEN group_by = 'meter' THEN x.meter ELSE x.dimensions ->> group_by END AS k,
		   x.asset, sum(x.events)::bigint, sum(x.quantity), wallet._major(x.asset, sum(x.amount)::bigint)
	  FROM x
	 GROUP BY 1, 2, 3
	HAVING sum(x.events) <> 0 OR sum(x.amount) <> 0
	 ORDER BY 1, 2, 3;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_usage(text, timestamptz, timestamptz, text, text) IS
	'usage per UTC hour, day or month and per meter or dimension value: events, quantity, amount net of refunds';
REVOKE ALL ON FUNCTION @extschema@.wallet_usage(text, timestamptz, timestamptz, text, text) FROM PUBLIC;
ALTER FUNCTION @extschema@.wallet_usage(text, timestamptz, timestamptz, text, text) SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION @extschema@.wallet_usage(text, timestamptz, timestamptz, text, text)
	TO wallet_app, wallet_finance, wallet_admin;

/* ------------------------------------------------------------ throughput (#22) */
