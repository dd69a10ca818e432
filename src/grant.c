/*
 * grant.c
 *	  What time does to grants, and the drawdown order.
 *
 * Time is read, not scheduled (DESIGN.md #3).  A grant's stored remaining is as
 * of its last applied reset; GrantAdvance computes its state at any instant:
 * the recurring resets whose boundaries have passed (each boundary k is
 * effective_at + k * recurrence, in UTC calendar arithmetic, so months do not
 * drift), and whether it has expired.  The hot path writes resets down the
 * first time it touches a grant after a boundary; wallet._pending() shows what
 * nobody has written down yet; wallet_sweep() writes all of it.
 */
#include "wallet.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(wallet_touch);
PG_FUNCTION_INFO_V1(wallet_pending);
PG_FUNCTION_INFO_V1(wallet_advance);
PG_FUNCTION_INFO_V1(wallet_grant_fold);
PG_FUNCTION_INFO_V1(wallet_boundaries_by);

#define GRANT_COLUMNS \
	"id, category, priority, amount, remaining, effective_at, expires_at, recurrence, " \
	"rollover_max, resets, unit_revenue, wallet_id, asset"

/* one reset written or shown: the balance moved by delta at a boundary */
typedef struct ResetStep
{
	TimestampTz at;
	int64		delta;
} ResetStep;

/* boundary k of a recurring grant, in UTC calendar arithmetic */
static TimestampTz
Boundary(const GrantRow *g, int64 k)
{
	Interval	iv;
	int64		m,
				d,
				t;

	if (pg_mul_s64_overflow(g->recurrence.month, k, &m) || m > PG_INT32_MAX ||
		pg_mul_s64_overflow(g->recurrence.day, k, &d) || d > PG_INT32_MAX ||
		pg_mul_s64_overflow(g->recurrence.time, k, &t))
		return DT_NOEND;
	iv.month = (int32) m;
	iv.day = (int32) d;
	iv.time = t;
	return DatumGetTimestamp(DirectFunctionCall2(timestamp_pl_interval,
												 TimestampGetDatum(g->effective_at),
												 IntervalPGetDatum(&iv)));
}

/*
 * How many boundaries lie in (effective_at, t] (and before expiry).
 *
 * Computed, never stepped: with every field of the recurrence >= 0 (what
 * wallet_grant accepts), Boundary(k) grows with k, and a month is at least 28
 * days, so k lies in [0, (t - effective_at) / shortest period] and a binary
 * search finds it in at most 64 evaluations, however many boundaries passed.
 * A stored recurrence with a negative field (accepted by 1.0) has no
 * boundaries: it never refills, and reads, voids and sweeps still work.
 */
static int64
BoundariesBy(const GrantRow *g, TimestampTz t)
{
	int64		lo,
				hi;
	int128		shortest;

	if (t <= g->effective_at)
		return 0;
	if (g->recurrence.month < 0 || g->recurrence.day < 0 || g->recurrence.time < 0)
		return 0;
	if (g->has_expiry && t >= g->expires_at)
		t = g->expires_at - 1;	/* a boundary at expiry does not refill */
	if (t <= g->effective_at)
		return 0;
	/* the shortest a period can be (in 128 bits: months of 28 days overflow 64) */
	shortest = (int128) g->recurrence.time + (int128) g->recurrence.day * USECS_PER_DAY +
		(int128) g->recurrence.month * 28 * USECS_PER_DAY;
	if (shortest <= 0)
		return 0;
	if (shortest > (int128) (t - g->effective_at))
		return 0;				/* not even one period has passed */
	if (g->recurrence.month == 0 && g->recurrence.day == 0)
		return (int64) ((t - g->effective_at) / shortest);
	/* lo is a count of boundaries passed, hi one that is not */
	lo = 0;
	hi = (int64) ((t - g->effective_at) / shortest) + 1;
	while (hi - lo > 1)
	{
		int64		mid = lo + (hi - lo) / 2;

		CHECK_FOR_INTERRUPTS();
		if (Boundary(g, mid) <= t)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Advance a grant to time t: apply the resets whose boundaries have passed.
 * Each boundary sets remaining to amount + min(left, rollover_max); what open
 * holds reserve on the grant (g->reserved, 1.1) is not "left" but carried
 * whole, and leaves when its hold is resolved (wallet._hold_settle).  Steps that
 * change the balance are stored in steps (at most 3: growth, cap, steady state).
 * Returns how many steps were stored.
 */
static int
GrantAdvance(GrantRow *g, TimestampTz t, ResetStep *steps)
{
	int64		n;
	int64		k;
	int64		carried;
	int64		sum;
	int			nsteps = 0;

	if (!g->recurring)
		return 0;
	n = BoundariesBy(g, t);
	k = g->resets;
	/*
	 * Never step back: a transaction whose time is older than a reset another
	 * one has already written (or a sweep as of the past) leaves it alone.
	 */
	if (n <= k)
		return 0;
	/*
	 * what open holds reserve is carried through resets: the rule applies to
	 * the rest; so is what was carried for holds expired since (it left at
	 * their expiry, and wallet._hold_settle writes it down)
	 */
	carried = Min(AddMinor(g->reserved, g->carried_gone), g->remaining);
	g->remaining -= carried;
	while (k < n)
	{
		int64		cur = g->remaining;
		int64		next;
		int64		periods = 1;

		if (cur <= g->rollover_max)
		{
			/* all of it rolls over; it grows by amount each period until past the cap */
			periods = Min(n - k, (g->rollover_max - cur) / g->amount + 1);
			next = AddMinor(cur, (int64) periods * g->amount);
		}
		else
			next = AddMinor(g->amount, g->rollover_max);
		k += periods;
		if (next == cur)
		{
			k = n;				/* steady: every later boundary changes nothing */
			break;
		}
		steps[nsteps].at = Boundary(g, k);
		steps[nsteps].delta = next - cur;
		nsteps++;
		g->remaining = next;
		Assert(nsteps <= 3);
	}
	/*
	 * wallet_grant's ceiling (a full carry on a full refill fits) and the
	 * hold's (HoldCarryFits) keep this in range; a grant stored before them may
	 * not be: say so rather than wrap
	 */
	if (pg_add_s64_overflow(g->remaining, carried, &sum))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("the reset of grant " INT64_FORMAT " would take it out of range", g->id),
				 errdetail("It refills to " INT64_FORMAT " and carries " INT64_FORMAT
						   " that open holds reserve (minor units); a grant is kept as a signed 64-bit count.",
						   g->remaining, carried)));
	g->remaining = sum;
	g->resets = n;
	return nsteps;
}

static void WriteResets(const Account *acct, GrantRow *g, ResetStep *steps, int nsteps);

/*
 * Resets repay overdraft (API.md 1.1, "Lifecycle"): value a reset adds first
 * repays overdraft in use, as a new grant does.  While overdraft is left,
 * every boundary of a recurring grant adds the same value (what it adds is
 * repaid, so what the grant holds does not change), so the boundaries of all
 * the recurring grants of a balance, taken in order of time (grant id at the
 * same instant), repay it until the boundary where it is paid off, found by
 * a binary search over time, never by stepping through boundaries.  From
 * there on GrantAdvance applies the resets as usual.  The result depends only
 * on the stored state and the time: the hot path, a read, _pending and the
 * sweep (as_of in the past, then now) all agree.
 */
typedef struct RepayStep
{
	int			row;			/* index of the grant in the rows */
	TimestampTz at;				/* the last boundary applied */
	int64		added;			/* what its resets added */
	int64		repaid;			/* of which repaid overdraft */
} RepayStep;

/* what one boundary of g adds when what it adds is repaid (see GrantAdvance) */
static int64
ResetAdds(const GrantRow *g)
{
	int64		cur = g->remaining - Min(AddMinor(g->reserved, g->carried_gone), g->remaining);

	return SubMinor(AddMinor(g->amount, Min(cur, g->rollover_max)), cur);
}

/* boundaries of g passed by t that are not applied yet (at most n in all) */
static int64
PassedBy(const GrantRow *g, TimestampTz t, int64 n)
{
	int64		b = Min(BoundariesBy(g, t), n);

	return b > g->resets ? b - g->resets : 0;
}

/* what the pending boundaries by t add, with per-boundary adds d (0: not counted) */
static int128
AddedBy(const GrantRow *rows, int nrows, const int64 *n, const int64 *d, TimestampTz t)
{
	int128		sum = 0;

	for (int i = 0; i < nrows; i++)
		if (d[i] > 0)
			sum += (int128) d[i] * PassedBy(&rows[i], t, n[i]);
	return sum;
}

/* order of grant ids, for the boundaries at one instant */
static int
RowIdCmp(const void *a, const void *b, void *arg)
{
	const GrantRow *rows = arg;
	int64		x = rows[*(const int *) a].id;
	int64		y = rows[*(const int *) b].id;

	return (x > y) - (x < y);
}

/* repay steps by time, then grant id (arg: the grant rows) */
static int
RepayStepCmp(const void *a, const void *b, void *arg)
{
	const RepayStep *x = a;
	const RepayStep *y = b;
	const GrantRow *rows = arg;

	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	return (rows[x->row].id > rows[y->row].id) - (rows[x->row].id < rows[y->row].id);
}

/*
 * Apply to rows the resets by t that repay *overdraft, lowering it; one step
 * per grant that changed in out (room for nrows).  Returns how many.  Scoped
 * grants take no part: their resets refill them as in 1.0.
 */
static int
RepayResets(GrantRow *rows, int nrows, TimestampTz t, int64 *overdraft, RepayStep *out)
{
	int64		od = *overdraft;
	int64	   *n;
	int64	   *d;
	int		   *order;
	int			norder = 0;
	int			nout = 0;
	TimestampTz lo = DT_NOEND;

	if (od <= 0 || nrows == 0)
		return 0;
	n = palloc0(sizeof(int64) * nrows);
	d = palloc0(sizeof(int64) * nrows);
	order = palloc(sizeof(int) * nrows);
	for (int i = 0; i < nrows; i++)
	{
		GrantRow   *g = &rows[i];

		if (!g->recurring || g->amount <= 0 || Boundary(g, g->resets + 1) > t)
			continue;			/* (the usual case: no boundary pending, one addition) */
		/* a scoped grant repays nothing, as a new one does not (scope.c) */
		if (g->scope != NULL)
			continue;
		n[i] = BoundariesBy(g, t);
		if (n[i] <= g->resets)
			continue;
		d[i] = ResetAdds(g);
		if (d[i] <= 0)
		{
			d[i] = 0;
			continue;
		}
		lo = Min(lo, Boundary(g, g->resets + 1) - 1);
		order[norder++] = i;
	}
	/* 1.1 (API.md, "Lifecycle"); a database still at 1.0 keeps 1.0's rule: the debt stays */
	if (norder == 0 || WalletSchemaVersion() < 11)
		return 0;
	if (AddedBy(rows, nrows, n, d, t) > od)
	{
		/* the first instant by which the boundaries add up to the overdraft */
		TimestampTz hi = t;

		while (hi - lo > 1)
		{
			TimestampTz mid = lo + (hi - lo) / 2;

			CHECK_FOR_INTERRUPTS();
			if (AddedBy(rows, nrows, n, d, mid) >= od)
				hi = mid;
			else
				lo = mid;
		}
		t = hi;
	}
	qsort_arg(order, norder, sizeof(int), RowIdCmp, rows);
	/* the boundaries before t repay in full (they add up to less than the overdraft) */
	for (int j = 0; j < norder; j++)
	{
		int			i = order[j];
		int64		m = PassedBy(&rows[i], t - 1, n[i]);

		out[j].row = i;
		out[j].added = out[j].repaid = (int64) ((int128) m * d[i]);
		od -= out[j].repaid;
		n[i] = m;				/* from here: how many applied */
	}
	Assert(od >= 0);
	/* those at t in order of grant id, while overdraft is left */
	for (int j = 0; j < norder; j++)
	{
		int			i = order[j];
		GrantRow   *g = &rows[i];
		int64		part;

		if (PassedBy(g, t, BoundariesBy(g, t)) > n[i])
		{
			part = Min(od, d[i]);
			od -= part;
			out[j].added += d[i];
			out[j].repaid += part;
			n[i]++;
		}
		if (n[i] == 0)
			continue;
		g->resets += n[i];
		g->remaining = AddMinor(g->remaining, out[j].added - out[j].repaid);
		out[nout] = out[j];
		out[nout].at = Boundary(g, g->resets);
		nout++;
	}
	*overdraft = od;
	return nout;
}

/*
 * RepayResets on the grants of a balance read under its lock or not: the
 * balance's overdraft in memory follows (acct is the caller's, loaded for this
 * call), and with write the resets and repay lines are written down as
 * wallet_grant writes a repay (repay lines a microsecond after the reset, so
 * that no statement shows the balance below where it was).
 */
static void
ResetsRepay(const Account *acct, TimestampTz now, bool write, GrantSet *set, int nrows)
{
	Account    *a = (Account *) acct;
	RepayStep  *steps;
	int64		od = acct->overdraft;
	int			k;

	if (od <= 0)
		return;
	steps = palloc(sizeof(RepayStep) * Max(nrows, 1));
	k = RepayResets(set->rows, nrows, now, &od, steps);
	/*
	 * written in time order (grant id at one instant), so that line ids follow
	 * the times they describe: wallet_refund gives what a grant repaid since to
	 * one like the grant whose repay line is last
	 */
	qsort_arg(steps, k, sizeof(RepayStep), RepayStepCmp, set->rows);
	for (int j = 0; j < k && write; j++)
	{
		GrantRow   *g = &set->rows[steps[j].row];
		ResetStep	rs = {steps[j].at, steps[j].added};

		WriteResets(acct, g, &rs, 1);
		set->resets_written++;
		if (steps[j].repaid > 0)
		{
			LineWrite(acct, steps[j].at + 1, g->id, 0, 0, "repay", -steps[j].repaid);
			LineWrite(acct, steps[j].at + 1, 0, 0, 0, "repay", steps[j].repaid);
		}
	}
	if (od != acct->overdraft)
	{
		a->overdraft = od;
		if (write)
			AccountSave(a);
	}
}

static bool
GrantLive(const GrantRow *g, TimestampTz t)
{
	return g->effective_at <= t && (!g->has_expiry || g->expires_at > t);
}

static int
CategoryRank(const char *category)
{
	if (strcmp(category, "promotional") == 0)
		return 0;
	if (strcmp(category, "bundled") == 0)
		return 1;
	return 2;
}

/* drawdown order: priority, expiry (never last), scoped before unscoped, category, effective_at, id */
static int
DrawdownCmp(const void *a, const void *b)
{
	const GrantRow *x = a;
	const GrantRow *y = b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if (x->has_expiry != y->has_expiry)
		return x->has_expiry ? -1 : 1;
	if (x->has_expiry && x->expires_at != y->expires_at)
		return x->expires_at < y->expires_at ? -1 : 1;
	/* a grant that serves fewer debits goes first: what serves all stays for the rest */
	if ((x->scope != NULL) != (y->scope != NULL))
		return x->scope != NULL ? -1 : 1;
	if (x->category_rank != y->category_rank)
		return x->category_rank < y->category_rank ? -1 : 1;
	if (x->effective_at != y->effective_at)
		return x->effective_at < y->effective_at ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/* the columns of GRANT_COLUMNS where a result row of SPI has them (no scope) */
static const int spi_grant_columns[HOT_GRANT_COLUMNS + 1] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0};
/* wallet._pending's 1.1 statement: voided_at and reserved, then the scope */
static const int spi_pending_columns11[HOT_GRANT_COLUMNS + 1] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16};

/*
 * A grant row: cols[i] is the column of tup holding the i-th of
 * GRANT_COLUMNS (a row of SPI, or of the table itself), and
 * cols[GRANT_SCOPE_COLUMN] its scope (0: not read).  The row is deformed
 * once; unit_revenue points into it.
 */
static void
ReadGrant(HeapTuple tup, TupleDesc desc, const int *cols, GrantRow *g)
{
	Datum	   *v = palloc(sizeof(Datum) * desc->natts);
	bool	   *n = palloc(sizeof(bool) * desc->natts);

#define V(i) v[cols[(i)] - 1]
#define N(i) n[cols[(i)] - 1]
	heap_deform_tuple(tup, desc, v, n);
	memset(g, 0, sizeof(*g));
	g->id = DatumGetInt64(V(0));
	g->category_rank = CategoryRank(TextDatumGetCString(V(1)));
	g->priority = DatumGetInt32(V(2));
	g->amount = DatumGetInt64(V(3));
	g->remaining = g->stored_remaining = DatumGetInt64(V(4));
	g->effective_at = DatumGetTimestampTz(V(5));
	g->has_expiry = !N(6);
	g->expires_at = N(6) ? DT_NOEND : DatumGetTimestampTz(V(6));
	g->recurring = !N(7);
	if (!N(7))
		g->recurrence = *DatumGetIntervalP(V(7));
	g->rollover_max = DatumGetInt64(V(8));
	g->resets = g->stored_resets = DatumGetInt64(V(9));
	g->unit_revenue = DatumGetNumeric(V(10));
	if (cols[GRANT_SCOPE_COLUMN] > 0 && !N(GRANT_SCOPE_COLUMN))
		g->scope = ScopeParse(DatumGetJsonbPCopy(V(GRANT_SCOPE_COLUMN)));
	ItemPointerSetInvalid(&g->tid);
#undef V
#undef N
	pfree(v);
	pfree(n);
}

/* write a ledger line */
void
LineWrite(const Account *acct, TimestampTz at, int64 grant_id, int64 event_id,
		  int64 hold_id, const char *kind, int64 amount)
{
	static const Oid argtypes[8] = {TIMESTAMPTZOID, INT8OID, TEXTOID, INT8OID, INT8OID,
	INT8OID, TEXTOID, INT8OID};
	Datum		values[8];
	char		nulls[8] = "        ";

	values[0] = TimestampTzGetDatum(at);
	values[1] = Int64GetDatum(acct->wallet_id);
	values[2] = CStringGetTextDatum(acct->asset);
	values[3] = Int64GetDatum(grant_id);
	nulls[3] = grant_id ? ' ' : 'n';
	values[4] = Int64GetDatum(event_id);
	nulls[4] = event_id ? ' ' : 'n';
	values[5] = Int64GetDatum(hold_id);
	nulls[5] = hold_id ? ' ' : 'n';
	values[6] = CStringGetTextDatum(kind);
	values[7] = Int64GetDatum(amount);
	WalletExec(PLAN_LINE,
			   "INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, event_id, hold_id, kind, amount) "
			   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			   8, argtypes, values, nulls, false, SPI_OK_INSERT);
	WalletExpectRows(1, "wallet.line_stored");
}

/* write down the resets of one grant (caller holds the balance lock) */
static void
WriteResets(const Account *acct, GrantRow *g, ResetStep *steps, int nsteps)
{
	static const Oid argtypes[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3];

	values[0] = Int64GetDatum(g->id);
	values[1] = Int64GetDatum(g->remaining);
	values[2] = Int64GetDatum(g->resets);
	WalletExec(PLAN_APPLY_RESET,
			   "UPDATE wallet.grant_block SET remaining = $2, resets = $3 WHERE id OPERATOR(pg_catalog.=) $1",
			   3, argtypes, values, NULL, false, SPI_OK_UPDATE);
	WalletExpectRows(1, "wallet.grant_block");
	for (int i = 0; i < nsteps; i++)
		LineWrite(acct, steps[i].at, g->id, 0, 0, "reset", steps[i].delta);
	g->stored_remaining = g->remaining;
	g->stored_resets = g->resets;
	ItemPointerSetInvalid(&g->tid);	/* a new version: the writer finds it by id */
}

/*
 * Bring the grant at set->rows[i] to now: apply the resets time has made
 * (written down when write_resets: the caller holds the lock), then keep it,
 * at set->rows[set->n], if it is live and has something left.
 */
static void
GrantKeepIfLive(const Account *acct, TimestampTz now, bool write_resets, GrantSet *set, int i)
{
	GrantRow   *g = &set->rows[i];
	ResetStep	steps[4];
	int			nsteps = GrantAdvance(g, now, steps);

	if (write_resets && g->resets != g->stored_resets)
	{
		WriteResets(acct, g, steps, nsteps);
		set->resets_written += nsteps;
	}
	if (!GrantLive(g, now) || g->remaining == 0)
		return;
	set->total = AddMinor(set->total, g->remaining);
	if (g->scope != NULL)
		set->nscoped++;
	if (set->n != i)
		set->rows[set->n] = *g;
	set->n++;
}

/* what HoldsLoad applies the open holds to: the grant rows read (not yet counted) */
typedef struct HoldsLoadArg
{
	GrantSet   *set;
	int			nrows;
	bool		locked;
	TimestampTz now;			/* a hold whose ttl has passed by then reserves nothing */
	TimestampTz last_boundary;	/* the latest boundary of a recurring grant by now
								 * (DT_NOBEGIN: none): a reset can have carried only
								 * for a hold placed before it (HoldCarried) */
} HoldsLoadArg;

static void HoldApply(const HotHold *h, int n, const HotHoldGrant *rows, HoldsLoadArg *a);

/* HotGrantsRead's callback: one more grant row into the set (not yet counted) */
static void
GrantRead(HeapTuple tup, TupleDesc desc, const int *cols, ItemPointer tid, void *arg)
{
	GrantSet   *set = arg;
	GrantRow   *g;

	if ((set->n & (set->n - 1)) == 0 && set->n >= 4)
		set->rows = repalloc(set->rows, sizeof(GrantRow) * set->n * 2);
	g = &set->rows[set->n++];
	ReadGrant(tup, desc, cols, g);
	g->unit_revenue = DatumGetNumericCopy(NumericGetDatum(g->unit_revenue));
	g->tid = *tid;
}

static void GrantsLoadRead(const Account *acct, TimestampTz now, bool write_resets,
						   const HeldOnly *only, GrantSet *set);

/*
 * The live grants of a balance at now, in drawdown order, with the resets
 * time has made applied (and written down when write_resets: the caller holds
 * the lock).
 */
void
GrantsLoad(const Account *acct, TimestampTz now, bool write_resets, GrantSet *set)
{
	GrantsLoadHeld(acct, now, write_resets, NULL, set);
}

/*
 * GrantsLoad with write_resets for the n balance rows of accts the caller has
 * locked (wallet_ingest; sets[i] for accts[i], left alone where not
 * accts[i].locked): the grants of all read at once (HotGrantsReadMany), then
 * each balance's holds and resets as GrantsLoad applies them.  The balance
 * rows' grants are distinct rows: writing the resets of one after reading
 * all reads what reading each in turn would.
 */
void
GrantsLoadMany(int n, const Account *accts, TimestampTz now, GrantSet *sets)
{
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	const char **assets = palloc(sizeof(char *) * Max(n, 1));
	void	  **args = palloc(sizeof(void *) * Max(n, 1));
	int			m = 0;

	for (int i = 0; i < n; i++)
	{
		if (!accts[i].locked)
			continue;
		memset(&sets[i], 0, sizeof(GrantSet));
		sets[i].rows = palloc(sizeof(GrantRow) * 4);
		ids[m] = accts[i].wallet_id;
		assets[m] = accts[i].asset;
		args[m++] = &sets[i];
	}
	HotGrantsReadMany(m, ids, assets, GrantRead, args);
	for (int i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (accts[i].locked)
			GrantsLoadRead(&accts[i], now, true, NULL, &sets[i]);
	}
	pfree(ids);
	pfree(assets);
	pfree(args);
}

/*
 * GrantsLoad, where the caller knows the only open hold of the balance (a
 * capture or release of it, under the lock, when the balance row counts one
 * open hold: acct->holds_open is 1): what it reserves need not be looked up
 * again (only: its amount, overdraft room and rows of wallet.hold_grant).
 * only NULL: look the open holds up (HoldsLoad).
 */
void
GrantsLoadHeld(const Account *acct, TimestampTz now, bool write_resets, const HeldOnly *only,
			   GrantSet *set)
{
	memset(set, 0, sizeof(*set));
	set->rows = palloc(sizeof(GrantRow) * 4);
	HotGrantsRead(acct->wallet_id, acct->asset, write_resets, GrantRead, set);
	GrantsLoadRead(acct, now, write_resets, only, set);
}

/* GrantsLoadHeld after the grants were read into set */
static void
GrantsLoadRead(const Account *acct, TimestampTz now, bool write_resets, const HeldOnly *only,
			   GrantSet *set)
{
	int			n = set->n;

	set->n = 0;
	if (only != NULL && acct->holds_open == 1 && WalletSchemaVersion() >= 11)
	{
		HotHold		h = {0};
		HoldsLoadArg a = {set, n, true};

		h.amount = only->amount;
		h.overdraft = only->overdraft;
		set->binding = true;
		HoldApply(&h, only->nrows, only->rows, &a);
	}
	else
		HoldsLoad(acct, now, set, n);
	ResetsRepay(acct, now, write_resets, set, n);
	for (int i = 0; i < n; i++)
		GrantKeepIfLive(acct, now, write_resets, set, i);
	qsort(set->rows, set->n, sizeof(GrantRow), DrawdownCmp);
	HoldsTakeOff(set);
}

/* the next reset of a grant after those applied, or DT_NOEND (none before its expiry) */
TimestampTz
GrantNextReset(const GrantRow *g)
{
	TimestampTz next;

	if (!g->recurring)
		return DT_NOEND;
	next = Boundary(g, g->resets + 1);
	if (g->has_expiry && next >= g->expires_at)
		return DT_NOEND;
	return next;
}

/*
 * sum and count of holds open at now (the balance row's held counts expired
 * ones too).  Under the lock the query takes a fresh snapshot: a hold
 * committed while this call waited for the lock must count.
 */
int64
LiveHeld(const Account *acct, TimestampTz now, int32 *count)
{
	static const Oid argtypes[3] = {INT8OID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[3];
	bool		isnull;
	int64		sum;

	if (acct->holds_open == 0)
	{
		if (count)
			*count = 0;
		return 0;
	}
	values[0] = Int64GetDatum(acct->wallet_id);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = TimestampTzGetDatum(now);
	WalletExec(PLAN_LIVE_HOLDS,
			   "SELECT coalesce(pg_catalog.sum(amount), 0)::pg_catalog.int8, pg_catalog.count(*)::pg_catalog.int4 FROM wallet.hold "
			   " WHERE wallet_id OPERATOR(pg_catalog.=) $1 AND asset OPERATOR(pg_catalog.=) $2 "
			   "   AND status OPERATOR(pg_catalog.=) 'open' AND expires_at OPERATOR(pg_catalog.>) $3",
			   3, argtypes, values, NULL, !acct->locked, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "wallet: an aggregate returned %llu rows", (unsigned long long) SPI_processed);
	sum = SpiGetInt64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (count)
		*count = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	return sum;
}

/* one open hold and its rows of wallet.hold_grant, applied to the set (HoldsLoad) */
static void
HoldApply(const HotHold *h, int n, const HotHoldGrant *rows, HoldsLoadArg *a)
{
	GrantSet   *set = a->set;

	set->held = AddMinor(set->held, h->amount);
	set->unbacked = AddMinor(set->unbacked, h->overdraft);
	set->holds_live++;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < a->nrows; j++)
			if (set->rows[j].id == rows[i].grant_id)
			{
				set->rows[j].reserved = AddMinor(set->rows[j].reserved, rows[i].amount);
				break;
			}
}

/*
 * A reservation of a hold that expired at expired_at, not swept yet, on the
 * grant row g: a reset that came while the hold was open carried it (its
 * boundary is after the reservation's resets and before the expiry, written
 * or not), and what it carried left at the expiry; else it went back to the
 * grant then.
 */
static void
HoldCarried(TimestampTz expired_at, int64 grant_id, int64 amount, int64 resets, HoldsLoadArg *a)
{
	for (int j = 0; j < a->nrows; j++)
	{
		GrantRow   *g = &a->set->rows[j];

		if (g->id != grant_id)
			continue;
		if (g->recurring && BoundariesBy(g, expired_at) > resets)
			g->carried_gone = AddMinor(g->carried_gone, amount);
		break;
	}
}

/*
 * HotOpenHoldsRead's callback (HoldsLoad): one open hold and what it
 * reserves; for one whose ttl has passed, what resets carried for it
 * (HoldCarried), read only when a recurring grant of the balance has had a
 * boundary since the hold was placed
 */
static void
HoldLoaded(const HotHold *h, void *arg)
{
	HoldsLoadArg *a = arg;
	HotHoldGrant *rows;
	int			n;

	if (h->expires_at <= a->now)
	{
		/* no boundary since it was placed: no reset carried anything for it */
		if (h->created_at >= a->last_boundary)
			return;
		n = HotHoldGrantsRead(h->id, a->locked, &rows);
		for (int i = 0; i < n; i++)
			HoldCarried(h->expires_at, rows[i].grant_id, rows[i].amount, rows[i].resets, a);
		return;
	}
	n = HotHoldGrantsRead(h->id, a->locked, &rows);
	HoldApply(h, n, rows, a);
}

/*
 * What the open holds of a balance do to its grants (GrantsLoad calls this on
 * the nrows grant rows read, before time is applied to them, and HoldsTakeOff
 * after).  With the 1.1 schema each open hold reserves value on specific
 * grants (wallet.hold_grant) and overdraft room (hold.overdraft): each row
 * gets what is reserved on it (carried through resets, GrantAdvance), and
 * HoldsTakeOff takes that off the live rows and the total, so that a debit
 * draws only what is not reserved; the overdraft room is what available
 * counts off besides.  Reservations on grants that are no longer live
 * (expired or voided under the hold) are backed by those grants and count
 * nowhere here.  A hold whose ttl has passed reserves nothing, at once, but
 * what a reset carried for it while it was open left at its expiry
 * (HoldCarried: carried_gone, taken off too until the sweep writes it).  With
 * the 1.0 schema a hold reserves a number: all of it counts off available.
 * No open holds (the balance row says so): no query.
 */
void
HoldsLoad(const Account *acct, TimestampTz now, GrantSet *set, int nrows)
{
	static const Oid argtypes[3] = {INT8OID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[3];
	SPITupleTable *tt;
	int64		last = 0;
	HoldsLoadArg a;

	set->held = 0;
	set->holds_live = 0;
	set->reserved_live = 0;
	set->unbacked = 0;
	set->binding = false;
	if (acct->holds_open == 0)
		return;
	if (WalletSchemaVersion() < 11)
	{
		set->held = set->unbacked = LiveHeld(acct, now, &set->holds_live);
		return;
	}
	set->binding = true;
	a.set = set;
	a.nrows = nrows;
	a.locked = acct->locked;
	a.now = now;
	a.last_boundary = DT_NOBEGIN;
	for (int j = 0; j < nrows; j++)
	{
		const GrantRow *g = &set->rows[j];
		int64		k;

		if (!g->recurring || (k = BoundariesBy(g, now)) == 0)
			continue;
		a.last_boundary = Max(a.last_boundary, Boundary(g, k));
	}
	if (HotHoldsReady())
	{
		/* directly (hotpath.c): the open holds, then what each reserves */
		HotOpenHoldsRead(acct->wallet_id, acct->asset, acct->locked, HoldLoaded, &a);
		return;
	}
	values[0] = Int64GetDatum(acct->wallet_id);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = TimestampTzGetDatum(now);
	WalletExec(PLAN_HOLD_RESERVED,
			   "SELECT h.id, h.amount, h.overdraft, r.grant_id, r.amount, "
			   "       h.expires_at OPERATOR(pg_catalog.<=) $3, h.expires_at, r.resets FROM wallet.hold h "
			   "  LEFT JOIN wallet.hold_grant r ON r.hold_id OPERATOR(pg_catalog.=) h.id "
			   " WHERE h.wallet_id OPERATOR(pg_catalog.=) $1 AND h.asset OPERATOR(pg_catalog.=) $2 "
			   "   AND h.status OPERATOR(pg_catalog.=) 'open' "
			   " ORDER BY h.id",
			   3, argtypes, values, NULL, !acct->locked, SPI_OK_SELECT);
	tt = SPI_tuptable;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		hold_id = SpiGetInt64(tt->vals[i], tt->tupdesc, 1, &isnull);
		int64		grant_id;
		int64		amount;

		if (DatumGetBool(SPI_getbinval(tt->vals[i], tt->tupdesc, 6, &isnull)))
		{
			/* its ttl has passed (see HoldLoaded) */
			grant_id = SpiGetInt64(tt->vals[i], tt->tupdesc, 4, &isnull);
			if (!isnull && a.last_boundary != DT_NOBEGIN)
				HoldCarried(DatumGetTimestampTz(SPI_getbinval(tt->vals[i], tt->tupdesc, 7, &isnull)),
							grant_id, SpiGetInt64(tt->vals[i], tt->tupdesc, 5, &isnull),
							SpiGetInt64(tt->vals[i], tt->tupdesc, 8, &isnull), &a);
			continue;
		}
		if (hold_id != last)
		{
			set->held = AddMinor(set->held, SpiGetInt64(tt->vals[i], tt->tupdesc, 2, &isnull));
			set->unbacked = AddMinor(set->unbacked, SpiGetInt64(tt->vals[i], tt->tupdesc, 3, &isnull));
			set->holds_live++;
			last = hold_id;
		}
		grant_id = SpiGetInt64(tt->vals[i], tt->tupdesc, 4, &isnull);
		if (isnull)
			continue;
		amount = SpiGetInt64(tt->vals[i], tt->tupdesc, 5, &isnull);
		for (int j = 0; j < nrows; j++)
			if (set->rows[j].id == grant_id)
			{
				set->rows[j].reserved = AddMinor(set->rows[j].reserved, amount);
				break;
			}
	}
	SPI_freetuptable(tt);
}

/* take what open holds reserve off the live grants of the set (see HoldsLoad) */
void
HoldsTakeOff(GrantSet *set)
{
	if (!set->binding)
		return;
	for (int j = 0; j < set->n; j++)
	{
		GrantRow   *g = &set->rows[j];
		/* a grant holds at least what is reserved on it; if not, count the rest off too */
		int64		t = Min(g->reserved, g->remaining);

		if (g->reserved > 0)
		{
			g->remaining -= t;
			set->total -= t;
			set->reserved_live = AddMinor(set->reserved_live, t);
			set->unbacked = AddMinor(set->unbacked, g->reserved - t);
		}
		/* what was carried for expired holds has left: no one may draw it */
		t = Min(g->carried_gone, g->remaining);
		g->remaining -= t;
		set->total -= t;
	}
}

/*
 * wallet._touch(wallet_id, asset): lock the balance row, creating it if
 * missing, and write down the resets time has made.  The SQL-side functions
 * (grant, void, refund, sweep) call it before they change a balance.
 */
Datum
wallet_touch(PG_FUNCTION_ARGS)
{
	int64		wallet_id = PG_GETARG_INT64(0);
	const AssetInfo *asset = AssetLookup(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	Account		acct;
	GrantSet	set;

	SPI_connect();
	AccountLockById(wallet_id, asset, &acct);
	GrantsLoad(&acct, WalletNow(), true, &set);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * wallet._advance(wallet_id, asset, as_of): lock the balance row and write
 * down the resets time has made by as_of (not after now: the caller checks).
 * Returns how many reset lines were written.  wallet_sweep() calls it.
 */
Datum
wallet_advance(PG_FUNCTION_ARGS)
{
	int64		wallet_id = PG_GETARG_INT64(0);
	const AssetInfo *asset = AssetLookup(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(2);
	Account		acct;
	GrantSet	set;

	if (as_of > WalletNow())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("as_of %s is in the future",
						timestamptz_to_str(as_of))));
	SPI_connect();
	AccountLockById(wallet_id, asset, &acct);
	GrantsLoad(&acct, as_of, true, &set);
	SPI_finish();
	PG_RETURN_INT64(set.resets_written);
}

/* what resets carried on a grant for holds whose ttl has passed, not swept yet (wallet._pending) */
typedef struct Carried
{
	int			n;
	int64	   *amounts;
	TimestampTz *at;			/* the hold's expiry: it left then */
} Carried;

/*
 * From wallet._pending's row of a recurring grant g: the reservations of
 * open holds whose ttl had passed by as_of (columns 17 to 19: amounts,
 * resets, expiries), those a reset carried (HoldCarried's rule) into c and
 * g->carried_gone.
 */
static void
PendingCarried(HeapTuple tup, TupleDesc desc, GrantRow *g, Carried *c)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, 17, &isnull);
	Datum	   *amounts;
	Datum	   *resets;
	Datum	   *expiries;
	int			n;
	int			n2;
	int			n3;

	if (isnull || !g->recurring)
		return;
	deconstruct_array(DatumGetArrayTypeP(d), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &amounts, NULL, &n);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 18, &isnull)), INT8OID, 8,
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &resets, NULL, &n2);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 19, &isnull)), TIMESTAMPTZOID, 8,
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &expiries, NULL, &n3);
	if (n2 != n || n3 != n)
		elog(ERROR, "wallet: the reservations of expired holds came in arrays of %d, %d and %d", n, n2, n3);
	c->amounts = palloc(sizeof(int64) * Max(n, 1));
	c->at = palloc(sizeof(TimestampTz) * Max(n, 1));
	for (int k = 0; k < n; k++)
	{
		TimestampTz at = DatumGetTimestampTz(expiries[k]);

		if (BoundariesBy(g, at) <= DatumGetInt64(resets[k]))
			continue;
		c->amounts[c->n] = DatumGetInt64(amounts[k]);
		c->at[c->n++] = at;
		g->carried_gone = AddMinor(g->carried_gone, DatumGetInt64(amounts[k]));
	}
}

/*
 * wallet._pending's statements, each in two kept plans: for one wallet
 * (only_wallet given: an index scan of that wallet's rows, as every read of
 * one customer needs) and for all of them (the sweep and finance views).  One
 * plan for both, filtering on "$1 IS NULL OR wallet_id = $1", could never use
 * an index: as a generic plan it scanned every wallet's grants and balances
 * for a page of one customer.
 */
#define PENDING_GRANTS11_SQL(only_wallet, at) \
	"SELECT " GRANT_COLUMNS ", voided_at, " \
	"       COALESCE((SELECT pg_catalog.sum(r.amount) FROM wallet.hold h " \
	"                   JOIN wallet.hold_grant r ON r.hold_id OPERATOR(pg_catalog.=) h.id " \
	"                  WHERE h.wallet_id OPERATOR(pg_catalog.=) g.wallet_id " \
	"                    AND h.asset OPERATOR(pg_catalog.=) g.asset " \
	"                    AND r.grant_id OPERATOR(pg_catalog.=) g.id " \
	"                    AND h.status OPERATOR(pg_catalog.=) 'open' " \
	"                    AND h.expires_at OPERATOR(pg_catalog.>) " at "), 0)::pg_catalog.int8, " \
	"       g.scope, x.c_amounts, x.c_resets, x.c_expiries " \
	"  FROM wallet.grant_block g " \
	"  LEFT JOIN LATERAL (" \
	"       SELECT pg_catalog.array_agg(r.amount ORDER BY h.expires_at, h.id) AS c_amounts, " \
	"              pg_catalog.array_agg(r.resets ORDER BY h.expires_at, h.id) AS c_resets, " \
	"              pg_catalog.array_agg(h.expires_at ORDER BY h.expires_at, h.id) AS c_expiries " \
	"         FROM wallet.hold h " \
	"         JOIN wallet.hold_grant r ON r.hold_id OPERATOR(pg_catalog.=) h.id " \
	"        WHERE g.recurrence IS NOT NULL " \
	"          AND h.wallet_id OPERATOR(pg_catalog.=) g.wallet_id " \
	"          AND h.asset OPERATOR(pg_catalog.=) g.asset " \
	"          AND r.grant_id OPERATOR(pg_catalog.=) g.id " \
	"          AND h.status OPERATOR(pg_catalog.=) 'open' " \
	"          AND h.expires_at OPERATOR(pg_catalog.<=) " at ") x ON true " \
	" WHERE closed_at IS NULL " \
	"   AND (recurrence IS NOT NULL OR expires_at IS NOT NULL OR voided_at IS NOT NULL) " \
	only_wallet \
	" ORDER BY wallet_id, asset COLLATE \"C\", id"
#define PENDING_GRANTS_SQL(only_wallet) \
	"SELECT " GRANT_COLUMNS " FROM wallet.grant_block " \
	" WHERE closed_at IS NULL AND voided_at IS NULL " \
	"   AND (recurrence IS NOT NULL OR expires_at IS NOT NULL) " \
	only_wallet \
	" ORDER BY wallet_id, asset COLLATE \"C\", id"
#define PENDING_OVERDRAFT_SQL(only_wallet) \
	"SELECT wallet_id, asset, overdraft FROM wallet.account " \
	" WHERE overdraft OPERATOR(pg_catalog.>) 0 " \
	only_wallet \
	" ORDER BY wallet_id, asset COLLATE \"C\""
#define PENDING_ONE_WALLET "   AND wallet_id OPERATOR(pg_catalog.=) $1 "

/*
 * wallet._pending(as_of, only_wallet): the lines time has made by as_of that
 * are not written yet: resets of recurring grants and expiries.  only_wallet
 * null: of every wallet.
 */
Datum
wallet_pending(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz as_of = PG_ARGISNULL(0) ? WalletNow() : PG_GETARG_TIMESTAMPTZ(0);
	bool		one = !PG_ARGISNULL(1);
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	SPITupleTable *tt;
	SPITupleTable *ot;
	uint64		n;
	uint64		nod;
	uint64		o = 0;
	bool		binding;
	GrantRow   *rows;
	Carried    *carried;
	bool	   *voided;
	TimestampTz *voided_at;
	RepayStep  *steps;

	InitMaterializedSRF(fcinfo, 0);
	args[0] = one ? PG_GETARG_DATUM(1) : (Datum) 0;

	SPI_connect();
	binding = WalletSchemaVersion() >= 11;
	if (binding)
	{
		/*
		 * 1.1: what open holds reserve stays (an expired grant loses only the
		 * rest), and a voided grant that still backs a hold loses the rest of
		 * it once that hold is no longer open; grants of one balance together
		 * (resets repay its overdraft)
		 */
		if (one)
		{
			Oid			argtypes11[2] = {INT8OID, TIMESTAMPTZOID};
			Datum		args11[2] = {args[0], TimestampTzGetDatum(as_of)};

			WalletExec(PLAN_PENDING_GRANTS11_WALLET, PENDING_GRANTS11_SQL(PENDING_ONE_WALLET, "$2"),
					   2, argtypes11, args11, NULL, true, SPI_OK_SELECT);
		}
		else
		{
			Oid			argtypes11[1] = {TIMESTAMPTZOID};
			Datum		args11[1] = {TimestampTzGetDatum(as_of)};

			WalletExec(PLAN_PENDING_GRANTS11, PENDING_GRANTS11_SQL("", "$1"),
					   1, argtypes11, args11, NULL, true, SPI_OK_SELECT);
		}
	}
	else if (one)
		WalletExec(PLAN_PENDING_GRANTS_WALLET, PENDING_GRANTS_SQL(PENDING_ONE_WALLET),
				   1, argtypes, args, NULL, true, SPI_OK_SELECT);
	else
		WalletExec(PLAN_PENDING_GRANTS, PENDING_GRANTS_SQL(""),
				   0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	tt = SPI_tuptable;
	n = SPI_processed;
	/* the balances with overdraft in use, in the same order */
	if (one)
		WalletExec(PLAN_PENDING_OVERDRAFT_WALLET, PENDING_OVERDRAFT_SQL(PENDING_ONE_WALLET),
				   1, argtypes, args, NULL, true, SPI_OK_SELECT);
	else
		WalletExec(PLAN_PENDING_OVERDRAFT, PENDING_OVERDRAFT_SQL(""),
				   0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	ot = SPI_tuptable;
	nod = SPI_processed;

	rows = palloc(sizeof(GrantRow) * Max(n, 1));
	carried = palloc0(sizeof(Carried) * Max(n, 1));
	voided = palloc0(sizeof(bool) * Max(n, 1));
	voided_at = palloc0(sizeof(TimestampTz) * Max(n, 1));
	steps = palloc(sizeof(RepayStep) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		/* 1.1: the scope is column 16 (a scoped grant's resets repay nothing) */
		ReadGrant(tt->vals[i], tt->tupdesc, binding ? spi_pending_columns11 : spi_grant_columns, &rows[i]);
		if (binding)
		{
			voided_at[i] = DatumGetTimestampTz(SPI_getbinval(tt->vals[i], tt->tupdesc, 14, &isnull));
			voided[i] = !isnull;
			rows[i].reserved = SpiGetInt64(tt->vals[i], tt->tupdesc, 15, &isnull);
			PendingCarried(tt->vals[i], tt->tupdesc, &rows[i], &carried[i]);
		}
	}
	for (uint64 i = 0; i < n;)
	{
		bool		isnull;
		int64		wallet_id = SpiGetInt64(tt->vals[i], tt->tupdesc, 12, &isnull);
		Datum		asset = SPI_getbinval(tt->vals[i], tt->tupdesc, 13, &isnull);
		char	   *code = TextDatumGetCString(asset);
		uint64		end = i;
		int64		od = 0;
		int			nsteps = 0;
		int			nlive = 0;
		GrantRow   *live;
		int		   *at_row;

		/* the grants of this balance: rows[i, end) */
		while (end < n && SpiGetInt64(tt->vals[end], tt->tupdesc, 12, &isnull) == wallet_id &&
			   strcmp(TextDatumGetCString(SPI_getbinval(tt->vals[end], tt->tupdesc, 13, &isnull)), code) == 0)
			end++;
		/* its overdraft in use */
		while (o < nod)
		{
			int64		ow = SpiGetInt64(ot->vals[o], ot->tupdesc, 1, &isnull);
			int			c = ow != wallet_id ? (ow < wallet_id ? -1 : 1) :
				strcmp(TextDatumGetCString(SPI_getbinval(ot->vals[o], ot->tupdesc, 2, &isnull)), code);

			if (c < 0)
				o++;
			else
			{
				if (c == 0)
					od = SpiGetInt64(ot->vals[o], ot->tupdesc, 3, &isnull);
				break;
			}
		}
		/* resets that repay it, on the grants not voided */
		live = palloc(sizeof(GrantRow) * (end - i));
		at_row = palloc(sizeof(int) * (end - i));
		for (uint64 j = i; j < end; j++)
			if (!voided[j])
			{
				at_row[nlive] = (int) (j - i);
				live[nlive++] = rows[j];
			}
		if (od > 0)
			nsteps = RepayResets(live, nlive, as_of, &od, steps);
		for (int s = 0; s < nsteps; s++)
		{
			GrantRow   *g = &live[steps[s].row];
			Datum		values[7];
			bool		rnulls[7] = {false};

			values[0] = Int64GetDatum(wallet_id);
			values[1] = asset;
			values[2] = Int64GetDatum(g->id);
			values[3] = CStringGetTextDatum("reset");
			values[4] = TimestampTzGetDatum(steps[s].at);
			values[5] = Int64GetDatum(steps[s].added);
			values[6] = Int64GetDatum(g->resets);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, rnulls);
			if (steps[s].repaid == 0)
				continue;
			values[3] = CStringGetTextDatum("repay");
			values[4] = TimestampTzGetDatum(steps[s].at + 1);
			values[5] = Int64GetDatum(-steps[s].repaid);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, rnulls);
			rnulls[2] = rnulls[6] = true;
			values[5] = Int64GetDatum(steps[s].repaid);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, rnulls);
		}
		for (int j = 0; j < nlive; j++)
			rows[i + at_row[j]] = live[j];

		for (uint64 r = i; r < end; r++)
		{
			GrantRow   *g = &rows[r];
			ResetStep	rsteps[4];
			int			ns;
			Datum		values[7];
			bool		rnulls[7] = {false};
			int64		reserved = g->reserved;

			values[0] = Int64GetDatum(wallet_id);
			values[1] = asset;
			values[2] = Int64GetDatum(g->id);
			values[6] = Int64GetDatum(g->resets);
			if (voided[r])
			{
				/* what a resolved hold left on a voided grant: its void, not yet written */
				if (g->remaining > reserved)
				{
					values[3] = CStringGetTextDatum("void");
					values[4] = TimestampTzGetDatum(voided_at[r]);
					values[5] = Int64GetDatum(reserved - g->remaining);
					tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, rnulls);
				}
				continue;
			}
			ns = GrantAdvance(g, as_of, rsteps);
			values[6] = Int64GetDatum(g->resets);
			for (int s = 0; s < ns; s++)
			{
				values[3] = CStringGetTextDatum("reset");
				values[4] = TimestampTzGetDatum(rsteps[s].at);
				values[5] = Int64GetDatum(rsteps[s].delta);
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, rnulls);
			}
			/*
			 * what resets carried for holds expired since left at their
			 * expiry, as wallet._hold_settle will write it: an expiry if the
			 * grant had expired by then, else a reset
			 */
			for (int k = 0; k < carried[r].n; k++)
			{
				int64		part = Min(carried[r].amounts[k], g->remaining);

				if (part <= 0)
					continue;
				g->remaining -= part;
				values[3] = CStringGetTextDatum(g->has_expiry && g->expires_at <= carried[r].at[k] ?
												"expiry" : "reset");
				values[4] = TimestampTzGetDatum(carried[r].at[k]);
				values[5] = Int64GetDatum(-part);
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, rnulls);
			}
			if (g->has_expiry && g->expires_at <= as_of && g->remaining > reserved)
			{
				values[3] = CStringGetTextDatum("expiry");
				values[4] = TimestampTzGetDatum(g->expires_at);
				values[5] = Int64GetDatum(reserved - g->remaining);
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, rnulls);
			}
		}
		i = end;
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * wallet._grant_fold(amount, effective_at, expires_at, recurrence,
 * rollover_max, as_of): a recurring grant created at as_of with its
 * effective_at in the past, recorded as of its creation (API.md 1.1,
 * "Lifecycle"): the boundaries that fell before as_of are counted as applied
 * (resets) and what it holds is what the reset and rollover rules give from
 * amount with nothing drawn (remaining).  Computed as GrantAdvance computes
 * any reset, so the recurrence continues from there exactly as it would.
 */
Datum
wallet_grant_fold(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	GrantRow	g;
	ResetStep	steps[4];
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "wallet: _grant_fold must return a composite");
	memset(&g, 0, sizeof(g));
	g.amount = PG_GETARG_INT64(0);
	g.remaining = g.amount;
	g.effective_at = PG_GETARG_TIMESTAMPTZ(1);
	g.has_expiry = !PG_ARGISNULL(2);
	g.expires_at = g.has_expiry ? PG_GETARG_TIMESTAMPTZ(2) : DT_NOEND;
	g.recurring = !PG_ARGISNULL(3);
	if (g.recurring)
		g.recurrence = *PG_GETARG_INTERVAL_P(3);
	g.rollover_max = PG_GETARG_INT64(4);
	if (g.recurring && g.amount > 0)
		(void) GrantAdvance(&g, PG_GETARG_TIMESTAMPTZ(5), steps);
	values[0] = Int64GetDatum(g.resets);
	values[1] = Int64GetDatum(g.remaining);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * wallet._boundaries_by(effective_at, expires_at, recurrence, at): the resets
 * a recurring grant has had by at (its boundaries in (effective_at, at],
 * before expiry), as GrantAdvance counts them.  wallet._hold_settle asks it
 * whether a reset came while a hold was open.
 */
Datum
wallet_boundaries_by(PG_FUNCTION_ARGS)
{
	GrantRow	g;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_NULL();
	memset(&g, 0, sizeof(g));
	g.effective_at = PG_GETARG_TIMESTAMPTZ(0);
	g.has_expiry = !PG_ARGISNULL(1);
	g.expires_at = g.has_expiry ? PG_GETARG_TIMESTAMPTZ(1) : DT_NOEND;
	g.recurring = true;
	g.recurrence = *PG_GETARG_INTERVAL_P(2);
	PG_RETURN_INT64(BoundariesBy(&g, PG_GETARG_TIMESTAMPTZ(3)));
}
