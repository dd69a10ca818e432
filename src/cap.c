/*
 * cap.c
 *	  Spend caps: at most so much of an asset per UTC calendar period (hour,
 *	  day, week, month), for the whole wallet or for each value of one of the
 *	  event's dimensions (each user, agent, api key).
 *
 * A cap belongs to a balance row (wallet, asset) and is read and changed only
 * under its lock, so the check and the spend it records see the same numbers
 * and concurrent debits queue like any others.  What was spent is kept in
 * wallet.cap_spend, one row per cap, period and dimension value, written in the
 * debit's own statement sequence: a rolled-back debit leaves no trace.  The
 * period a debit counts in is that of the transaction's time (the event's
 * recorded_at), not occurred_at.  An event without the cap's dimension (or
 * with it null or "") counts in one shared bucket, dim_value "".
 *
 * The hot path asks only when the balance row says there are caps
 * (wallet.account.caps, kept by wallet_set_cap): no caps, no query.
 *
 * Open holds reserve room (1.1): a bucket's room is its cap less what was
 * spent less the amounts of the open holds whose dimensions fall in it; a
 * capture within its hold is not checked again (it was, when the hold was
 * placed), only the part above the hold is.
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

/*
 * The caps of a balance row with what their buckets hold for this event.  The
 * spend is a correlated subquery so that it is one probe of cap_spend's
 * primary key per cap, however many periods the table keeps.
 */
static const char *cap_check_sql =
"SELECT c.period, c.dimension, v.dim_value, c.amount, p.start, "
"       COALESCE((SELECT s.spent FROM wallet.cap_spend s "
"                  WHERE s.wallet_id OPERATOR(pg_catalog.=) $1 AND s.asset OPERATOR(pg_catalog.=) $2 "
"                    AND s.period OPERATOR(pg_catalog.=) c.period "
"                    AND s.period_start OPERATOR(pg_catalog.=) p.start "
"                    AND s.dimension OPERATOR(pg_catalog.=) COALESCE(c.dimension, '') "
"                    AND s.dim_value OPERATOR(pg_catalog.=) v.dim_value), 0) "
"  FROM wallet.cap c "
"  CROSS JOIN LATERAL (SELECT pg_catalog.date_trunc(c.period, $4, 'UTC') AS start) p "
"  CROSS JOIN LATERAL (SELECT COALESCE($3 OPERATOR(pg_catalog.->>) c.dimension, '') AS dim_value) v "
" WHERE c.wallet_id OPERATOR(pg_catalog.=) $1 AND c.asset OPERATOR(pg_catalog.=) $2 "
" ORDER BY pg_catalog.array_position('{hour,day,week,month}'::pg_catalog.text[], c.period), "
"          c.dimension NULLS FIRST";

/*
 * cap_check_sql, and the room that open holds reserve in each bucket (1.1): a
 * hold's amount counts in the bucket of its dimensions in the current period
 * until it is resolved or its ttl passes, whatever period it was placed in
 * (it will be captured now or later).  Used only when the balance row has
 * open holds.
 */
static const char *cap_check_held_sql =
"SELECT c.period, c.dimension, v.dim_value, c.amount, p.start, "
"       COALESCE((SELECT s.spent FROM wallet.cap_spend s "
"                  WHERE s.wallet_id OPERATOR(pg_catalog.=) $1 AND s.asset OPERATOR(pg_catalog.=) $2 "
"                    AND s.period OPERATOR(pg_catalog.=) c.period "
"                    AND s.period_start OPERATOR(pg_catalog.=) p.start "
"                    AND s.dimension OPERATOR(pg_catalog.=) COALESCE(c.dimension, '') "
"                    AND s.dim_value OPERATOR(pg_catalog.=) v.dim_value), 0), "
"       COALESCE((SELECT pg_catalog.sum(h.amount) FROM wallet.hold h "
"                  WHERE h.wallet_id OPERATOR(pg_catalog.=) $1 AND h.asset OPERATOR(pg_catalog.=) $2 "
"                    AND h.status OPERATOR(pg_catalog.=) 'open' AND h.expires_at OPERATOR(pg_catalog.>) $4 "
"                    AND (c.dimension IS NULL OR "
"                         COALESCE(h.dimensions OPERATOR(pg_catalog.->>) c.dimension, '') "
"                           OPERATOR(pg_catalog.=) v.dim_value)), 0)::pg_catalog.int8 "
"  FROM wallet.cap c "
"  CROSS JOIN LATERAL (SELECT pg_catalog.date_trunc(c.period, $4, 'UTC') AS start) p "
"  CROSS JOIN LATERAL (SELECT COALESCE($3 OPERATOR(pg_catalog.->>) c.dimension, '') AS dim_value) v "
" WHERE c.wallet_id OPERATOR(pg_catalog.=) $1 AND c.asset OPERATOR(pg_catalog.=) $2 "
" ORDER BY pg_catalog.array_position('{hour,day,week,month}'::pg_catalog.text[], c.period), "
"          c.dimension NULLS FIRST";

/*
 * Add a debit to the bucket of every cap of the balance row; answers how many
 * caps there are and how many buckets were written (fewer: a trigger skipped one).
 */
static const char *cap_record_sql =
"WITH c AS (SELECT c.wallet_id, c.asset, c.period, c.dimension FROM wallet.cap c "
"            WHERE c.wallet_id OPERATOR(pg_catalog.=) $1 AND c.asset OPERATOR(pg_catalog.=) $2), "
"w AS (INSERT INTO wallet.cap_spend AS s (wallet_id, asset, period, dimension, dim_value, period_start, spent) "
"      SELECT c.wallet_id, c.asset, c.period, COALESCE(c.dimension, ''), "
"             COALESCE($3 OPERATOR(pg_catalog.->>) c.dimension, ''), "
"             pg_catalog.date_trunc(c.period, $4, 'UTC'), $5 "
"        FROM c "
"      ON CONFLICT (wallet_id, asset, period, period_start, dimension, dim_value) "
"      DO UPDATE SET spent = s.spent OPERATOR(pg_catalog.+) excluded.spent "
"      RETURNING 1) "
"SELECT (SELECT pg_catalog.count(*) FROM c)::pg_catalog.int8, (SELECT pg_catalog.count(*) FROM w)::pg_catalog.int8";

static const char *cap_outbox_sql =
"INSERT INTO wallet.outbox AS o (customer, asset, kind, available, threshold, detail) "
"VALUES ($1, $2, 'declined', $3, $4, pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
"        'reason', 'spend_cap'::pg_catalog.text, 'amount', $5, 'period', $6, 'dimension', $7, "
"        'dim_value', $8, 'cap', $9, 'spent', $10, 'period_start', $11))) "
"RETURNING pg_catalog.json_build_object('id', o.id, 'kind', o.kind)::pg_catalog.text";

/* the first four parameters of the cap statements: wallet, asset, dimensions, time */
static void
CapArgs(const Account *acct, Jsonb *dims, TimestampTz now, Datum *values, char *nulls)
{
	values[0] = Int64GetDatum(acct->wallet_id);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = dims ? JsonbPGetDatum(dims) : (Datum) 0;
	nulls[2] = dims ? ' ' : 'n';
	values[3] = TimestampTzGetDatum(now);
}

/*
 * Would a debit of amount with these dimensions, at now, keep within every cap
 * of the balance row?  Reads only: a quote may call it without the lock (then
 * it reads the statement's snapshot; under the lock, a fresh one, so that the
 * spend of a debit committed while this one waited for the lock counts).
 * Fills caps with each cap's bucket; caps->blocked is the first cap (shortest
 * period first, the whole wallet before a dimension) it would pass.
 */
bool
CapCheck(const Account *acct, Jsonb *dims, int64 amount, TimestampTz now, CapSet *caps)
{
	static const Oid argtypes[4] = {INT8OID, TEXTOID, JSONBOID, TIMESTAMPTZOID};
	Datum		values[4];
	char		nulls[4] = "    ";
	SPITupleTable *tt;
	bool		with_holds;

	caps->n = 0;
	caps->rows = NULL;
	caps->blocked = -1;
	if (acct->caps == 0)
		return true;

	CapArgs(acct, dims, now, values, nulls);
	with_holds = acct->holds_open > 0 && WalletSchemaVersion() >= 11;
	if (with_holds)
		WalletExec(PLAN_CAP_CHECK_HELD, cap_check_held_sql, 4, argtypes, values, nulls,
				   !acct->locked, SPI_OK_SELECT);
	else
		WalletExec(PLAN_CAP_CHECK, cap_check_sql, 4, argtypes, values, nulls, !acct->locked,
				   SPI_OK_SELECT);
	tt = SPI_tuptable;
	caps->rows = palloc(sizeof(CapUse) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		CapUse	   *c = &caps->rows[caps->n++];
		bool		isnull;
		int64		after;

		c->period = SpiGetText(tt->vals[i], tt->tupdesc, 1, &isnull);
		c->dimension = SpiGetText(tt->vals[i], tt->tupdesc, 2, &isnull);
		c->dim_value = SpiGetText(tt->vals[i], tt->tupdesc, 3, &isnull);
		c->cap = SpiGetInt64(tt->vals[i], tt->tupdesc, 4, &isnull);
		c->period_start = DatumGetTimestampTz(SPI_getbinval(tt->vals[i], tt->tupdesc, 5, &isnull));
		c->spent = SpiGetInt64(tt->vals[i], tt->tupdesc, 6, &isnull);
		c->held = with_holds ? SpiGetInt64(tt->vals[i], tt->tupdesc, 7, &isnull) : 0;
		/* a debit of nothing passes even a cap lowered below what was spent */
		if (caps->blocked < 0 && amount > 0 &&
			(pg_add_s64_overflow(c->spent, amount, &after) ||
			 pg_add_s64_overflow(after, c->held, &after) || after > c->cap))
			caps->blocked = caps->n - 1;
	}
	SPI_freetuptable(tt);
	return caps->blocked < 0;
}

/*
 * Under REPEATABLE READ and SERIALIZABLE, CapCheck read the buckets under the
 * transaction's snapshot.  A hold counts them without writing them, and a READ
 * COMMITTED debit adds to them under the balance lock without writing the
 * balance row, so nothing else would find a debit committed since (a debit of
 * this snapshot finds it when it records its own spend: 40001).  The hold asks
 * here: the same buckets read with a snapshot taken now must hold what caps
 * says, else 40001.  (Holds placed since changed the balance row, which this
 * transaction's update of it has met already.)
 */
void
CapCheckCurrent(const Account *acct, Jsonb *dims, TimestampTz now, const CapSet *caps)
{
	static const Oid argtypes[4] = {INT8OID, TEXTOID, JSONBOID, TIMESTAMPTZOID};
	Datum		values[4];
	char		nulls[4] = "    ";
	Snapshot	latest;
	int			rc;
	bool		same;

	if (!IsolationUsesXactSnapshot() || acct->caps == 0)
		return;
	CapArgs(acct, dims, now, values, nulls);
	CommandCounterIncrement();
	latest = RegisterSnapshot(GetLatestSnapshot());
	rc = SPI_execute_snapshot(WalletPlan(PLAN_CAP_CHECK, cap_check_sql, 4, argtypes), values, nulls,
							  latest, InvalidSnapshot, true, false, 0);
	UnregisterSnapshot(latest);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "wallet: SPI_execute_snapshot returned %s", SPI_result_code_string(rc));
	same = SPI_processed == (uint64) caps->n;
	for (uint64 i = 0; same && i < SPI_processed; i++)
	{
		bool		isnull;

		same = SpiGetInt64(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull) == caps->rows[i].cap &&
			SpiGetInt64(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 6, &isnull) == caps->rows[i].spent;
	}
	SPI_freetuptable(SPI_tuptable);
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update"),
				 errdetail("A spend cap's bucket changed after this transaction's snapshot.")));
}

/* the same bucket of the same cap: a's and b's debits add up under it */
static bool
CapSameBucket(const CapUse *a, const CapUse *b)
{
	return strcmp(a->period, b->period) == 0 && a->period_start == b->period_start &&
		(a->dimension == NULL) == (b->dimension == NULL) &&
		(a->dimension == NULL ||
		 (strcmp(a->dimension, b->dimension) == 0 && strcmp(a->dim_value, b->dim_value) == 0));
}

/*
 * CapCheck for n debits at once, each of amounts[i] with dims[i] (the parts
 * above its hold of a capture's lines): each is checked with what the ones
 * before it add to the buckets it shares with them.  freed (> 0) is room an
 * open hold of freed_dims still counts in its buckets but gives up now (what
 * of it the capture does not take): it is off those buckets.  A debit of
 * nothing is not checked.  False, with caps as CapCheck sets them for the
 * first debit that would pass a cap.
 */
bool
CapCheckMany(const Account *acct, int n, Jsonb *const *dims, const int64 *amounts,
			 Jsonb *freed_dims, int64 freed, TimestampTz now, CapSet *caps)
{
	CapSet	   *sets = palloc0(sizeof(CapSet) * Max(n, 1));
	CapSet		hold = {0};

	caps->n = 0;
	caps->rows = NULL;
	caps->blocked = -1;
	if (freed > 0)
		CapCheck(acct, freed_dims, 0, now, &hold);	/* only its buckets: checks nothing */
	for (int i = 0; i < n; i++)
	{
		if (amounts[i] <= 0)
			continue;
		CapCheck(acct, dims[i], amounts[i], now, &sets[i]);
		sets[i].blocked = -1;
		for (int k = 0; k < sets[i].n && sets[i].blocked < 0; k++)
		{
			const CapUse *c = &sets[i].rows[k];
			int64		after = amounts[i];

			for (int j = 0; j < i; j++)
				for (int m = 0; m < sets[j].n; m++)
					if (CapSameBucket(c, &sets[j].rows[m]) &&
						pg_add_s64_overflow(after, amounts[j], &after))
						after = PG_INT64_MAX;
			for (int m = 0; m < hold.n; m++)
				if (CapSameBucket(c, &hold.rows[m]) && after != PG_INT64_MAX)
					after -= Min(freed, c->held);
			if (pg_add_s64_overflow(after, c->spent, &after) ||
				pg_add_s64_overflow(after, c->held, &after) || after > c->cap)
				sets[i].blocked = k;
		}
		if (sets[i].blocked >= 0)
		{
			*caps = sets[i];
			return false;
		}
	}
	return true;
}

/*
 * Count an approved debit in the current period's bucket of every cap of the
 * balance row (the caller holds the lock and has checked with CapCheck).
 */
void
CapRecord(const Account *acct, Jsonb *dims, int64 amount, TimestampTz now)
{
	static const Oid argtypes[5] = {INT8OID, TEXTOID, JSONBOID, TIMESTAMPTZOID, INT8OID};
	Datum		values[5];
	char		nulls[5] = "     ";
	bool		isnull;

	if (amount == 0)
		return;
	CapArgs(acct, dims, now, values, nulls);
	values[4] = Int64GetDatum(amount);
	WalletExec(PLAN_CAP_RECORD, cap_record_sql, 5, argtypes, values, nulls, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "wallet: the cap record returned %llu rows", (unsigned long long) SPI_processed);
	if (SpiGetInt64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull) <
		SpiGetInt64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull))
		WalletRowSkipped("wallet.cap_spend");
}

/*
 * A debit was declined for a spend cap: an outbox row (kind 'declined',
 * reason 'spend_cap') naming the cap and its bucket, sent at commit.
 */
void
CapDeclined(const Account *acct, const CapSet *caps, int64 available, int64 amount)
{
	static const Oid argtypes[11] = {TEXTOID, TEXTOID, NUMERICOID, NUMERICOID, NUMERICOID,
		TEXTOID, TEXTOID, TEXTOID, NUMERICOID, NUMERICOID, TIMESTAMPTZOID};
	const CapUse *c;
	Datum		values[11];
	char		nulls[11];
	bool		isnull;

	if (caps->blocked < 0)
		elog(ERROR, "wallet: spend_cap decline without a cap");
	if (!DeclineNoticeDue(acct, "spend_cap"))
		return;
	c = &caps->rows[caps->blocked];
	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(acct->customer);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = NumericGetDatum(MinorToNumeric(available, acct->scale));
	values[3] = acct->has_low_balance ? NumericGetDatum(MinorToNumeric(acct->low_balance, acct->scale)) : (Datum) 0;
	nulls[3] = acct->has_low_balance ? ' ' : 'n';
	values[4] = NumericGetDatum(MinorToNumeric(amount, acct->scale));
	values[5] = CStringGetTextDatum(c->period);
	values[6] = c->dimension ? CStringGetTextDatum(c->dimension) : (Datum) 0;
	nulls[6] = c->dimension ? ' ' : 'n';
	values[7] = c->dimension ? CStringGetTextDatum(c->dim_value) : (Datum) 0;
	nulls[7] = c->dimension ? ' ' : 'n';
	values[8] = NumericGetDatum(MinorToNumeric(c->cap, acct->scale));
	values[9] = NumericGetDatum(MinorToNumeric(c->spent, acct->scale));
	values[10] = TimestampTzGetDatum(c->period_start);
	WalletExec(PLAN_CAP_OUTBOX, cap_outbox_sql, 11, argtypes, values, nulls, false,
			   SPI_OK_INSERT_RETURNING);
	WalletExpectRows(1, "wallet.outbox");
	OutboxNotify(SpiGetText(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}
