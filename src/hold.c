/*
 * hold.c
 *	  Two-phase debits: wallet_hold, wallet_authorize_hold, wallet_capture,
 *	  wallet_capture_lines, wallet_release, wallet_extend_hold.
 *
 * A hold reserves value, not a number (1.1; DESIGN.md #10).  The model:
 *
 *	 - An approved hold takes its amount from the live grants in drawdown
 *	   order, as far as their value not reserved by other open holds allows:
 *	   one wallet.hold_grant row (hold, grant, amount) per grant.  The rest is
 *	   overdraft room (hold.overdraft), within the overdraft limit.  The grant
 *	   rows do not change: reserved value stays in remaining (still deferred
 *	   revenue, still the grant's), but GrantsLoad takes what open holds
 *	   reserve off the rows it hands to a debit (HoldsLoad, grant.c), so no
 *	   other debit draws it.  A wallet without open holds (account.holds_open
 *	   = 0) pays no query for any of this.
 *	 - Reserved value cannot be voided or expired while its hold is open:
 *	   wallet_void_grant and wallet_sweep take only what is not reserved, and
 *	   read-time expiry (wallet._pending) does the same; a recurring grant's
 *	   reset carries it whole (GrantAdvance).
 *	 - The hold's dimensions reserve room under every spend cap that applies to
 *	   them: a cap check counts the amounts of the open holds in its bucket
 *	   (cap.c).
 *	 - The capture guarantee: a capture whose total is within the held amount
 *	   is approved whatever happened since (grants expired or voided, wallet
 *	   frozen, caps or overdraft limit lowered): it draws the hold's own
 *	   reservations (expired and voided grants included); the rest (its
 *	   overdraft room) comes from unreserved value if there is some by then,
 *	   else from overdraft.  Only the part above the hold is checked, as a
 *	   debit is (status, caps, funds), and drawn the same way.
 *	 - On capture, release or expiry what the hold still reserves goes back to
 *	   its grants; the part on a grant voided, expired or reset meanwhile
 *	   leaves then, with a 'void', 'expiry' or 'reset' line dated at the
 *	   release (wallet._hold_settle).
 *	 - A hold whose ttl has passed stops reserving at once (time is read);
 *	   wallet_sweep settles it later.
 *	 - A hold resolves once.  Capturing or releasing a hold already resolved
 *	   by the same request returns the stored result (replayed); another
 *	   request is WL005.
 *
 * A 1.0 schema not yet upgraded keeps 1.0's holds: a number counted off
 * available, no reservations (WalletSchemaVersion).
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(wallet_hold);
PG_FUNCTION_INFO_V1(wallet_authorize_hold);
PG_FUNCTION_INFO_V1(wallet_capture);
PG_FUNCTION_INFO_V1(wallet_capture_lines);
PG_FUNCTION_INFO_V1(wallet_release);
PG_FUNCTION_INFO_V1(wallet_extend_hold);

/* a hold as this file reads it: directly (hotpath.c) or through SQL, its asset looked up */
typedef HotHold HoldRow;

/*
 * How a resolved hold's reservations go back (1.1): in the common case none
 * was voided, expired or reset meanwhile, so nothing leaves and its rows of
 * wallet.hold_grant are simply deleted, directly (HotHoldClose); otherwise
 * wallet._hold_settle writes what leaves.
 */
typedef struct Settle
{
	bool		direct;			/* nothing leaves: HotHoldClose may do it */
	int			nrows;			/* the hold's rows of wallet.hold_grant */
	ItemPointerData *tids;
} Settle;

/* one line of a capture: a meter's usage, priced */
typedef struct CaptureLine
{
	char	   *meter;
	Numeric		quantity;
	Jsonb	   *dims;
	Numeric		cost;
	Dec			q;
	int64		price_id;
	int64		amount;
	UsageToRecord usage;
} CaptureLine;

/* what a hold reserves on one grant, as the capture finds it */
typedef struct Reservation
{
	int64		grant_id;
	int64		amount;			/* reserved */
	int64		avail;			/* of it, what the grant still holds */
	int64		covered;		/* of amount, what this capture's lines took (CaptureCover) */
	int64		consumed;		/* drawn by this capture: covered, as far as avail goes */
	bool		gone;			/* the grant was voided, has expired or was reset since */
	bool		paid;
	Numeric		unit_revenue;
	const Scope *scope;			/* the grant's: the lines it serves */
} Reservation;

/* the debit lines of one event, merged by grant (0: overdraft) */
typedef struct DrawLines
{
	int			n;
	int			cap;
	Datum	   *ids;
	bool	   *idnulls;
	Datum	   *takes;
	Datum	   *revs;
	ItemPointerData *tids;
} DrawLines;

static bool
Binding(void)
{
	return WalletSchemaVersion() >= 11;
}

/*
 * read a hold (again, where h->tid says it was read, when valid); WL007 when
 * there is no such hold
 */
static void
HoldGet(int64 hold_id, bool binding, HoldRow *h)
{
	static const Oid argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(hold_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	if (binding && HotHoldsReady())
	{
		/* read directly (hotpath.c) */
		HotHold		hh;

		if (!HotHoldRead(hold_id, &h->tid, &hh))
			ereport(ERROR,
					(errcode(ERRCODE_WALLET_NOT_FOUND),
					 errmsg("no hold with id " INT64_FORMAT, hold_id)));
		*h = hh;
		h->id = hold_id;
		h->info = AssetLookup(hh.asset);
		return;
	}
	if (binding)
		WalletExec(PLAN_HOLD_GET11,
				   "SELECT wallet_id, asset, amount, status, expires_at, overdraft, dimensions, "
				   "       release_balance FROM wallet.hold WHERE id OPERATOR(pg_catalog.=) $1",
				   1, argtypes, values, NULL, false, SPI_OK_SELECT);
	else
		WalletExec(PLAN_HOLD_GET,
				   "SELECT wallet_id, asset, amount, status, expires_at FROM wallet.hold "
				   " WHERE id OPERATOR(pg_catalog.=) $1",
				   1, argtypes, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_NOT_FOUND),
				 errmsg("no hold with id " INT64_FORMAT, hold_id)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(h, 0, sizeof(*h));
	h->id = hold_id;
	ItemPointerSetInvalid(&h->tid);
	h->wallet_id = SpiGetInt64(tup, desc, 1, &isnull);
	h->info = AssetLookup(SpiGetText(tup, desc, 2, &isnull));
	h->asset = (char *) h->info->code;
	h->amount = SpiGetInt64(tup, desc, 3, &isnull);
	strlcpy(h->status, SpiGetText(tup, desc, 4, &isnull), sizeof(h->status));
	h->expires_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
	if (binding)
	{
		h->overdraft = SpiGetInt64(tup, desc, 6, &isnull);
		d = SPI_getbinval(tup, desc, 7, &isnull);
		h->dims = isnull ? NULL : DatumGetJsonbPCopy(d);
		h->release_balance = SpiGetInt64(tup, desc, 8, &isnull);
		h->has_release_balance = !isnull;
	}
}

/* find a hold and lock its balance row, then read the hold again under the lock */
static void
HoldLock(int64 hold_id, bool binding, HoldRow *h, Account *acct)
{
	ItemPointerSetInvalid(&h->tid);
	HoldGet(hold_id, binding, h);
	AccountLockById(h->wallet_id, h->info, acct);
	HoldGet(hold_id, binding, h);
}

/*
 * The clock a hold's ttl is set and judged by: now, not the transaction's
 * start (now): a debit treats a hold whose ttl passed by its own clock as
 * gone and draws what it reserved, writing nothing on the hold, so a
 * transaction begun before that must not capture or extend the hold after;
 * and a hold placed late in a long transaction is open for its whole ttl.
 */
static TimestampTz
HoldClock(TimestampTz now)
{
	return Max(now, GetCurrentTimestamp());
}

/* WL005 unless the hold is open and its ttl has not passed (by HoldClock, under the balance lock) */
static void
HoldMustBeOpen(const HoldRow *h, TimestampTz now)
{
	if (strcmp(h->status, "open") != 0 || h->expires_at <= HoldClock(now))
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_HOLD_CLOSED),
				 errmsg("hold " INT64_FORMAT " is not open", h->id),
				 errdetail("It is %s.", strcmp(h->status, "open") == 0 ? "expired" : h->status)));
}

/* WL005 for a resolved hold asked to resolve by another request */
static pg_attribute_noreturn() void
HoldResolvedOtherwise(const HoldRow *h, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_WALLET_HOLD_CLOSED),
			 errmsg("hold " INT64_FORMAT " is not open", h->id),
			 errdetail("It is %s, by a different request than this %s.", h->status, what)));
}

/*
 * A reset carries what open holds reserve on a recurring grant whole, on top
 * of its refill (grant.c, GrantAdvance), and the reservations stay until the
 * holds are resolved.  So with this hold's parts (gids, gamts) what each
 * recurring grant reserves, plus a full refill (amount + rollover_max), must
 * fit in 64 bits, and so must the balance counted that way: else a reset
 * while the holds are open could not be counted, and every read of the
 * balance (and its release, and the sweep) would fail.  22003 for a hold that
 * would break that, as wallet_grant refuses a grant that would.
 */
static void
HoldCarryFits(const GrantSet *set, const int64 *gids, const int64 *gamts, int ng)
{
	int128		total = 0;

	for (int i = 0; i < set->n; i++)
	{
		const GrantRow *g = &set->rows[i];
		int128		held = (int128) g->reserved + g->carried_gone;
		int128		worst;

		for (int j = 0; j < ng; j++)
			if (gids[j] == g->id)
				held += gamts[j];
		/*
		 * a grant that does not recur keeps what it reserves inside its
		 * remaining, and no reset ever adds to it
		 */
		worst = g->recurring ? (int128) g->amount + g->rollover_max + held : (int128) g->remaining;
		if (g->recurring && worst > PG_INT64_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("hold would take grant " INT64_FORMAT " out of range at its next reset", g->id),
					 errdetail("A reset carries what open holds reserve on top of a full refill; a grant is kept as a signed 64-bit count of minor units.")));
		total += worst;
	}
	if (total > PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("hold would take the balance out of range at the next reset of its grants"),
				 errdetail("A reset carries what open holds reserve on top of a full refill; a balance is kept as a signed 64-bit count of minor units.")));
}

/*
 * Find a hold and lock its balance row, then read the hold again under the
 * lock: it must still be open (1.0 schema).
 */
static void
HoldLockOpen(int64 hold_id, TimestampTz now, HoldRow *h, Account *acct)
{
	HoldLock(hold_id, false, h, acct);
	HoldMustBeOpen(h, now);
}

/*
 * close an open hold: status, a release line, the balance row (and, 1.1,
 * what it reserves goes back: directly when nothing leaves, st->direct, else
 * wallet._hold_settle)
 */
static void
HoldClose(Account *acct, const HoldRow *h, const char *status, int64 event_id, TimestampTz now,
		  bool binding, bool has_balance, int64 balance, const Settle *st)
{
	Datum		values[5];
	char		nulls[5] = "     ";

	if (binding && st != NULL && st->direct && ItemPointerIsValid(&h->tid))
	{
		if (HotHoldClose(h, status, now, event_id, has_balance, balance, st->nrows, st->tids))
		{
			acct->held = SubMinor(acct->held, h->amount);
			acct->holds_open--;
			AccountSave(acct);
			return;
		}
	}

	values[0] = Int64GetDatum(h->id);
	values[1] = CStringGetTextDatum(status);
	values[2] = TimestampTzGetDatum(now);
	values[3] = Int64GetDatum(event_id);
	nulls[3] = event_id ? ' ' : 'n';
	values[4] = Int64GetDatum(balance);
	nulls[4] = has_balance ? ' ' : 'n';
	if (binding)
	{
		static const Oid argtypes[5] = {INT8OID, TEXTOID, TIMESTAMPTZOID, INT8OID, INT8OID};
		static const Oid settle_types[2] = {INT8OID, TIMESTAMPTZOID};
		Datum		settle[2];

		settle[0] = values[0];
		settle[1] = values[2];
		WalletExec(PLAN_HOLD_CLOSE11,
				   "UPDATE wallet.hold SET status = $2, closed_at = $3, event_id = $4, release_balance = $5 "
				   " WHERE id OPERATOR(pg_catalog.=) $1",
				   5, argtypes, values, nulls, false, SPI_OK_UPDATE);
		WalletExpectRows(1, "wallet.hold");
		WalletExec(PLAN_HOLD_SETTLE, "SELECT wallet._hold_settle($1, $2)",
				   2, settle_types, settle, NULL, false, SPI_OK_SELECT);
	}
	else
	{
		static const Oid argtypes[4] = {INT8OID, TEXTOID, TIMESTAMPTZOID, INT8OID};

		WalletExec(PLAN_HOLD_CLOSE,
				   "UPDATE wallet.hold SET status = $2, closed_at = $3, event_id = $4 "
				   " WHERE id OPERATOR(pg_catalog.=) $1",
				   4, argtypes, values, nulls, false, SPI_OK_UPDATE);
		WalletExpectRows(1, "wallet.hold");
	}
	LineWrite(acct, now, 0, event_id, h->id, "release", h->amount);
	acct->held = SubMinor(acct->held, h->amount);
	acct->holds_open--;
	AccountSave(acct);
}

/*
 * The live grants for resolving an open hold h under the lock, into set.
 * When the balance row counts one open hold, it is h: what h reserves is
 * read once, here, for both GrantsLoadHeld and HoldReservations, and
 * returned in *only; else NULL (GrantsLoad looks the open holds up).
 */
static const HeldOnly *
HoldGrantsLoad(Account *acct, const HoldRow *h, TimestampTz now, GrantSet *set, HeldOnly *only)
{
	if (acct->holds_open == 1 && HotHoldsReady())
	{
		HotHoldGrant *rows;

		only->amount = h->amount;
		only->overdraft = h->overdraft;
		only->nrows = HotHoldGrantsRead(h->id, true, &rows);
		only->rows = rows;
		GrantsLoadHeld(acct, now, true, only, set);
		return only;
	}
	GrantsLoad(acct, now, true, set);
	return NULL;
}

/*
 * a ttl: positive; the hold then expires at HoldClock + ttl, in UTC calendar
 * arithmetic as recurrences are (grant.c, Boundary): a ttl of days or months
 * gives the same expiry whatever the session's TimeZone (timestamptz + interval
 * would add them in it, an hour off across a DST change)
 */
static TimestampTz
HoldExpiry(FunctionCallInfo fcinfo, int n, TimestampTz now)
{
	Interval   *ttl;
	TimestampTz expires_at;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must not be null")));
	ttl = PG_GETARG_INTERVAL_P(n);
	now = HoldClock(now);
	expires_at = DatumGetTimestamp(DirectFunctionCall2(timestamp_pl_interval,
													   TimestampGetDatum(now),
													   IntervalPGetDatum(ttl)));
	if (expires_at <= now)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must be a positive interval")));
	return expires_at;
}

static bool
JsonbSame(Jsonb *a, Jsonb *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return compareJsonbContainers(&a->root, &b->root) == 0;
}

static bool
NumericSame(Numeric a, Numeric b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(a), NumericGetDatum(b)));
}

/*
 * The replay of a hold (1.1): the key's hold must also have the same meter,
 * quantity and dimensions, else WL004.
 */
static void
HoldReplayCheck(int64 hold_id, const char *key, const char *meter, Numeric quantity, Jsonb *dims)
{
	static const Oid argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(hold_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *st_meter;
	Datum		d;
	const char *what = NULL;

	WalletExec(PLAN_HOLD_REPLAY,
			   "SELECT meter, quantity, dimensions FROM wallet.hold WHERE id OPERATOR(pg_catalog.=) $1",
			   1, argtypes, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "wallet: hold " INT64_FORMAT " of key \"%s\" vanished", hold_id, key);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	st_meter = SpiGetText(tup, desc, 1, &isnull);
	if ((st_meter == NULL) != (meter == NULL) || (meter && strcmp(st_meter, meter) != 0))
		what = "meter";
	else
	{
		d = SPI_getbinval(tup, desc, 2, &isnull);
		if (!NumericSame(isnull ? NULL : DatumGetNumeric(d), quantity))
			what = "quantity";
		else
		{
			d = SPI_getbinval(tup, desc, 3, &isnull);
			if (!JsonbSame(isnull ? NULL : DatumGetJsonbP(d), dims))
				what = "dimensions";
		}
	}
	if (what)
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_KEY_REUSED),
				 errmsg("idempotency key \"%s\" was used for a different request", key),
				 errdetail("The %s differs from the first request's.", what)));
}

/*
 * Place a hold of amount on a locked balance row (the key is new): decline,
 * or reserve value in drawdown order (then overdraft room) and cap room, and
 * write the hold.  meter and quantity are wallet_authorize_hold's.
 */
static void
HoldPlace(Account *acct, int64 amount, const char *key, TimestampTz expires_at, Jsonb *dims,
		  const char *meter, Numeric quantity, TimestampTz now, bool binding, WalletResult *res)
{
	GrantSet	set;
	CapSet		caps = {0};
	int64		available;
	const char *decline;
	bool		isnull;
	int64	   *gids = NULL;
	int64	   *gamts = NULL;
	int64	   *gresets = NULL;
	int			ng = 0;
	int64		left = amount;
	bool		placed = false;
	int64		hold_id = 0;

	caps.blocked = -1;
	GrantsLoad(acct, now, true, &set);
	/* only grants that serve the hold's meter (none for wallet_hold) and dimensions back it */
	ScopeSelect(&set, meter, dims);
	available = Available(acct, &set, now, 0);
	decline = StatusDecline(acct);
	if (decline == NULL && acct->has_max_holds && set.holds_live >= acct->max_holds)
		decline = "hold_limit";
	if (decline == NULL && binding && acct->caps > 0 && !CapCheck(acct, dims, amount, now, &caps))
		decline = "spend_cap";
	if (decline == NULL && BelowFloor(available, amount, acct->overdraft_limit))
		decline = "insufficient_funds";
	/* results and notices speak of the whole balance: grants that do not serve it still count */
	available = AddMinor(available, set.excluded);
	if (decline)
	{
		if (strcmp(decline, "insufficient_funds") == 0)
			OutboxDeclined(acct, decline, available, amount);
		else if (strcmp(decline, "spend_cap") == 0)
			CapDeclined(acct, &caps, available, amount);
		Decline(acct, decline, available, res);
		return;
	}

	if (binding)
	{
		/* under REPEATABLE READ: what the snapshot showed must still be so */
		HotGrantsCurrent(&set);
		CapCheckCurrent(acct, dims, now, &caps);
	}
	if (binding)
	{
		gids = palloc(sizeof(int64) * Max(set.n, 1));
		gamts = palloc(sizeof(int64) * Max(set.n, 1));
		gresets = palloc(sizeof(int64) * Max(set.n, 1));

		/* reserve in drawdown order, then overdraft room */
		for (int i = 0; i < set.n && left > 0; i++)
		{
			int64		t = Min(set.rows[i].remaining, left);

			if (t <= 0 || set.rows[i].excluded)
				continue;
			gids[ng] = set.rows[i].id;
			gresets[ng] = set.rows[i].resets;
			gamts[ng++] = t;
			left -= t;
		}
		HoldCarryFits(&set, gids, gamts, ng);
		if (HotHoldsReady())
		{
			/* directly (hotpath.c), unless a table has what that does not do */
			HotHoldNew	hn = {0};

			hn.wallet_id = acct->wallet_id;
			hn.asset = acct->asset;
			hn.amount = amount;
			hn.key = key;
			hn.now = now;
			hn.expires_at = expires_at;
			hn.balance_after = available - amount;
			hn.dims = dims;
			hn.overdraft = left;
			hn.meter = meter;
			hn.quantity = quantity;
			hn.ngrants = ng;
			hn.grant_ids = gids;
			hn.amounts = gamts;
			hn.resets = gresets;
			placed = HotHoldInsert(&hn, &hold_id);
		}
	}
	if (binding && !placed)
	{
		static const Oid argtypes[14] = {INT8OID, TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID,
			TIMESTAMPTZOID, INT8OID, JSONBOID, INT8OID, TEXTOID, NUMERICOID, INT8ARRAYOID,
		INT8ARRAYOID, INT8ARRAYOID};
		Datum		values[14];
		char		nulls[14];

		memset(nulls, ' ', sizeof(nulls));
		values[0] = Int64GetDatum(acct->wallet_id);
		values[1] = CStringGetTextDatum(acct->asset);
		values[2] = Int64GetDatum(amount);
		values[3] = CStringGetTextDatum(key);
		values[4] = TimestampTzGetDatum(now);
		values[5] = TimestampTzGetDatum(expires_at);
		values[6] = Int64GetDatum(available - amount);
		values[7] = dims ? JsonbPGetDatum(dims) : (Datum) 0;
		nulls[7] = dims ? ' ' : 'n';
		values[8] = Int64GetDatum(left);
		values[9] = meter ? CStringGetTextDatum(meter) : (Datum) 0;
		nulls[9] = meter ? ' ' : 'n';
		values[10] = quantity ? NumericGetDatum(quantity) : (Datum) 0;
		nulls[10] = quantity ? ' ' : 'n';
		values[11] = Int8ArrayDatum(gids, ng);
		values[12] = Int8ArrayDatum(gamts, ng);
		values[13] = Int8ArrayDatum(gresets, ng);
		WalletExec(PLAN_HOLD_INSERT11,
				   "WITH h AS (INSERT INTO wallet.hold (wallet_id, asset, amount, idempotency_key, "
				   "                created_at, expires_at, balance_after, dimensions, overdraft, meter, quantity) "
				   "           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id), "
				   "r AS (INSERT INTO wallet.hold_grant (hold_id, grant_id, amount, resets) "
				   "      SELECT h.id, x.g, x.a, x.r FROM h, ROWS FROM (pg_catalog.unnest($12::pg_catalog.int8[]), "
				   "                                         pg_catalog.unnest($13::pg_catalog.int8[]), "
				   "                                         pg_catalog.unnest($14::pg_catalog.int8[])) AS x(g, a, r)) "
				   "INSERT INTO wallet.line_stored (at, wallet_id, asset, hold_id, kind, amount) "
				   "SELECT $5, $1, $2, h.id, 'hold', OPERATOR(pg_catalog.-) $3 FROM h RETURNING hold_id",
				   14, argtypes, values, nulls, false, SPI_OK_INSERT_RETURNING);
	}
	else if (!binding)
	{
		static const Oid argtypes[7] = {INT8OID, TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, INT8OID};
		Datum		values[7];

		values[0] = Int64GetDatum(acct->wallet_id);
		values[1] = CStringGetTextDatum(acct->asset);
		values[2] = Int64GetDatum(amount);
		values[3] = CStringGetTextDatum(key);
		values[4] = TimestampTzGetDatum(now);
		values[5] = TimestampTzGetDatum(expires_at);
		values[6] = Int64GetDatum(available - amount);
		WalletExec(PLAN_HOLD_INSERT,
				   "WITH h AS (INSERT INTO wallet.hold (wallet_id, asset, amount, idempotency_key, "
				   "                created_at, expires_at, balance_after) "
				   "           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id) "
				   "INSERT INTO wallet.line_stored (at, wallet_id, asset, hold_id, kind, amount) "
				   "SELECT $5, $1, $2, h.id, 'hold', OPERATOR(pg_catalog.-) $3 FROM h RETURNING hold_id",
				   7, argtypes, values, NULL, false, SPI_OK_INSERT_RETURNING);
	}
	if (!placed)
	{
		WalletExpectRows(1, "wallet.hold or wallet.line_stored");
		hold_id = SpiGetInt64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	}
	memset(res, 0, sizeof(*res));
	res->approved = true;
	res->hold_id = hold_id;
	res->asset = AssetLookup(acct->asset)->code;
	res->scale = acct->scale;
	res->has_amount = true;
	res->amount = amount;
	res->has_balance = true;
	res->balance = available - amount;
	acct->held = AddMinor(acct->held, amount);
	acct->holds_open++;
	AccountSave(acct);
	OutboxLowBalance(acct, available, available - amount);
}

/* wallet_hold(customer, asset, amount, idempotency_key, ttl, dimensions) */
Datum
wallet_hold(PG_FUNCTION_ARGS)
{
	char	   *customer = ArgCString(fcinfo, 0, "customer");
	char	   *code = ArgCString(fcinfo, 1, "asset");
	Numeric		amount_arg = ArgNumeric(fcinfo, 2, "amount");
	char	   *key = ArgKey(fcinfo, 3);
	Jsonb	   *dims = ArgDimensions(fcinfo, 5);
	TimestampTz now = WalletNow();
	TimestampTz expires_at = HoldExpiry(fcinfo, 4, now);
	const AssetInfo *asset;
	Account		acct;
	WalletResult res;
	int64		amount;
	bool		binding;

	SPI_connect();
	binding = Binding();
	asset = AssetLookup(code);
	amount = AmountToMinor(amount_arg, asset->scale, asset->code, "amount");
	AccountLockByCustomer(customer, asset, &acct);
	if (Replayed(&acct, key, NULL, amount, &res))
	{
		if (binding)
			HoldReplayCheck(res.hold_id, key, NULL, NULL, dims);
	}
	else
		HoldPlace(&acct, amount, key, expires_at, dims, NULL, NULL, now, binding, &res);
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}

/* wallet_authorize_hold(customer, meter, quantity, idempotency_key, dimensions, ttl) */
Datum
wallet_authorize_hold(PG_FUNCTION_ARGS)
{
	char	   *customer = ArgCString(fcinfo, 0, "customer");
	char	   *meter = ArgCString(fcinfo, 1, "meter");
	Numeric		quantity = ArgNumeric(fcinfo, 2, "quantity");
	char	   *key = ArgKey(fcinfo, 3);
	Jsonb	   *dims = ArgDimensions(fcinfo, 4);
	TimestampTz now = WalletNow();
	TimestampTz expires_at = HoldExpiry(fcinfo, 5, now);
	Dec			q = QuantityDec(quantity);
	const PriceVersion *pv;
	Account		acct;
	WalletResult res;
	UsageToRecord usage;
	int64		amount;

	SPI_connect();
	WalletRequireSchema(11, "wallet_authorize_hold");
	pv = PriceFind(customer, meter, now);
	AccountLockByCustomer(customer, &pv->asset, &acct);
	/* the same meter, quantity and dimensions replay, whatever the price is now */
	if (Replayed(&acct, key, NULL, -1, &res))
		HoldReplayCheck(res.hold_id, key, meter, quantity, dims);
	else
	{
		/*
		 * an estimate: priced as a debit now would be, but no usage is
		 * counted.  An estimate of 0 (a free tier) is a hold of 0, approved
		 * or declined as a debit of 0 would be: it reserves nothing, and its
		 * capture is checked as a debit, all of it above the hold.
		 */
		amount = PriceEvaluate(pv, acct.wallet_id, meter, q, dims, now, &usage);
		HoldPlace(&acct, amount, key, expires_at, dims, meter, quantity, now, true, &res);
	}
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}

/* ------------------------------------------------------------ capture */

/* one more debit line (grant_id 0: overdraft), merged with the event's line of that grant */
static void
DrawAdd(DrawLines *dl, int64 grant_id, int64 take, Numeric unit_revenue)
{
	Datum		zero = NumericGetDatum(MinorToNumeric(0, 0));

	if (take <= 0)
		return;
	for (int i = 0; i < dl->n; i++)
	{
		if ((grant_id == 0) == dl->idnulls[i] &&
			(grant_id == 0 || DatumGetInt64(dl->ids[i]) == grant_id))
		{
			dl->takes[i] = Int64GetDatum(AddMinor(DatumGetInt64(dl->takes[i]), take));
			return;
		}
	}
	if (dl->n == dl->cap)
	{
		dl->cap = Max(8, dl->cap * 2);
		dl->ids = dl->ids ? repalloc(dl->ids, sizeof(Datum) * dl->cap) : palloc(sizeof(Datum) * dl->cap);
		dl->idnulls = dl->idnulls ? repalloc(dl->idnulls, sizeof(bool) * dl->cap) : palloc(sizeof(bool) * dl->cap);
		dl->takes = dl->takes ? repalloc(dl->takes, sizeof(Datum) * dl->cap) : palloc(sizeof(Datum) * dl->cap);
		dl->revs = dl->revs ? repalloc(dl->revs, sizeof(Datum) * dl->cap) : palloc(sizeof(Datum) * dl->cap);
		dl->tids = dl->tids ? repalloc(dl->tids, sizeof(ItemPointerData) * dl->cap) :
			palloc(sizeof(ItemPointerData) * dl->cap);
	}
	dl->ids[dl->n] = Int64GetDatum(grant_id);
	dl->idnulls[dl->n] = grant_id == 0;
	dl->takes[dl->n] = Int64GetDatum(take);
	dl->revs[dl->n] = unit_revenue ? NumericGetDatum(unit_revenue) : zero;
	/* found again by id: an earlier event of the capture may have written it */
	ItemPointerSetInvalid(&dl->tids[dl->n]);
	dl->n++;
}

/*
 * draw up to want of unreserved value in drawdown order, from the grants that
 * serve the line (ScopeSelect); returns what is left
 */
static int64
DrawFree(GrantSet *set, DrawLines *dl, int64 want)
{
	for (int i = 0; i < set->n && want > 0; i++)
	{
		GrantRow   *g = &set->rows[i];
		int64		t = Min(g->remaining, want);

		if (t <= 0 || g->excluded)
			continue;
		g->remaining -= t;
		set->total -= t;
		DrawAdd(dl, g->id, t, g->category_rank == 2 ? g->unit_revenue : NULL);
		want -= t;
	}
	return want;
}

/*
 * What a hold reserves, read directly, from the live grants just loaded (set,
 * in drawdown order): NULL when that cannot tell it all, that is when one of
 * its reservations is on a grant that is not among them (voided, expired,
 * closed), on one reset since, or on one whose stored remaining the set no
 * longer shows (all of its value reserved).  st says how to settle: directly,
 * since nothing leaves.
 */
static Reservation *
HoldReservationsDirect(const HoldRow *h, const GrantSet *set, const HeldOnly *only, int *n,
					   Settle *st)
{
	const HotHoldGrant *rows;
	HotHoldGrant *read;
	int			nrows;
	int			live = 0;
	int			k = 0;
	Reservation *rs;

	if (!HotHoldsReady())
		return NULL;
	if (only != NULL)
	{
		rows = only->rows;
		nrows = only->nrows;
	}
	else
	{
		nrows = HotHoldGrantsRead(h->id, true, &read);
		rows = read;
	}
	rs = palloc0(sizeof(Reservation) * Max(nrows, 1));
	for (int j = 0; j < nrows; j++)
		if (rows[j].amount > 0)
			live++;
	for (int i = 0; i < set->n && k < live; i++)
	{
		const GrantRow *g = &set->rows[i];

		for (int j = 0; j < nrows; j++)
		{
			if (rows[j].grant_id != g->id || rows[j].amount <= 0)
				continue;
			/* what the set shows is what is stored less what all open holds reserve */
			if (g->remaining <= 0 || (g->recurring && g->resets > rows[j].resets))
				return NULL;
			rs[k].grant_id = g->id;
			rs[k].amount = rows[j].amount;
			rs[k].avail = rows[j].amount;
			rs[k].gone = false;
			rs[k].paid = g->category_rank == 2;
			rs[k].unit_revenue = g->unit_revenue;
			rs[k].scope = g->scope;
			k++;
		}
	}
	if (k != live)
		return NULL;
	*n = k;
	st->direct = true;
	st->nrows = nrows;
	st->tids = palloc(sizeof(ItemPointerData) * Max(nrows, 1));
	for (int j = 0; j < nrows; j++)
		st->tids[j] = rows[j].tid;
	return rs;
}

/*
 * what a hold reserves, grant by grant, in the drawdown order of the grants
 * (set: the live grants just loaded; only: its rows of wallet.hold_grant,
 * read already, or NULL); st says how to settle the hold
 */
static Reservation *
HoldReservations(const HoldRow *h, const GrantSet *set, const HeldOnly *only, TimestampTz now,
				 int *n, Settle *st)
{
	static const Oid argtypes[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		values[2] = {Int64GetDatum(h->id), TimestampTzGetDatum(now)};
	SPITupleTable *tt;
	Reservation *rs;

	memset(st, 0, sizeof(*st));
	rs = HoldReservationsDirect(h, set, only, n, st);
	if (rs != NULL)
		return rs;
	memset(st, 0, sizeof(*st));

	WalletExec(PLAN_HOLD_GRANTS,
			   "SELECT r.grant_id, r.amount, g.remaining, "
			   "       (g.voided_at IS NOT NULL OR g.expires_at OPERATOR(pg_catalog.<=) $2 "
			   "        OR (g.recurrence IS NOT NULL AND g.resets OPERATOR(pg_catalog.>) r.resets)), "
			   "       g.category OPERATOR(pg_catalog.=) 'paid', g.unit_revenue, g.scope "
			   "  FROM wallet.hold_grant r JOIN wallet.grant_block g ON g.id OPERATOR(pg_catalog.=) r.grant_id "
			   " WHERE r.hold_id OPERATOR(pg_catalog.=) $1 AND r.amount OPERATOR(pg_catalog.>) 0 "
			   " ORDER BY g.priority, g.expires_at NULLS LAST, g.scope IS NULL, "
			   "          CASE g.category WHEN 'promotional' THEN 0 WHEN 'bundled' THEN 1 ELSE 2 END, "
			   "          g.effective_at, g.id",
			   2, argtypes, values, NULL, false, SPI_OK_SELECT);
	tt = SPI_tuptable;
	*n = (int) SPI_processed;
	rs = palloc0(sizeof(Reservation) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		bool		isnull;
		Datum		scope;

		rs[i].grant_id = SpiGetInt64(tt->vals[i], tt->tupdesc, 1, &isnull);
		rs[i].amount = SpiGetInt64(tt->vals[i], tt->tupdesc, 2, &isnull);
		rs[i].avail = Max(0, Min(rs[i].amount, SpiGetInt64(tt->vals[i], tt->tupdesc, 3, &isnull)));
		rs[i].gone = DatumGetBool(SPI_getbinval(tt->vals[i], tt->tupdesc, 4, &isnull));
		rs[i].paid = DatumGetBool(SPI_getbinval(tt->vals[i], tt->tupdesc, 5, &isnull));
		rs[i].unit_revenue = DatumGetNumericCopy(SPI_getbinval(tt->vals[i], tt->tupdesc, 6, &isnull));
		scope = SPI_getbinval(tt->vals[i], tt->tupdesc, 7, &isnull);
		rs[i].scope = isnull ? NULL : ScopeParse(DatumGetJsonbPCopy(scope));
	}
	SPI_freetuptable(tt);
	return rs;
}

/*
 * What the hold gives back to available when it is resolved (a capture then
 * takes off what it drew beyond the reservations): what it reserved on live
 * grants and did not draw, and its overdraft room; what it reserved on grants
 * voided, expired or reset since leaves.
 */
static int64
ReleasedBack(const Reservation *rs, int nres, int64 overdraft_room)
{
	int64		back = overdraft_room;

	for (int i = 0; i < nres; i++)
		if (!rs[i].gone)
			back = AddMinor(back, rs[i].amount - rs[i].consumed);
	return back;
}

/*
 * Lines per wallet_capture_lines call.  An LLM call is a few meters; each line
 * is priced after the lines before it and written under the balance lock,
 * which the call holds throughout.
 */
#define CAPTURE_MAX_LINES 1000

/* the lines of a wallet_capture_lines call: a non-empty json array of objects */
static CaptureLine *
LinesParse(Jsonb *lines, int *n)
{
	static const char *const fields[] = {"meter", "quantity", "dimensions", "cost"};
	CaptureLine *cl;

	if (!JB_ROOT_IS_ARRAY(lines) || JB_ROOT_IS_SCALAR(lines) || JB_ROOT_COUNT(lines) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lines must be a non-empty json array of objects")));
	if (JB_ROOT_COUNT(lines) > CAPTURE_MAX_LINES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lines has %d elements, more than the %d one capture takes",
						JB_ROOT_COUNT(lines), CAPTURE_MAX_LINES),
				 errhint("A capture holds the balance lock while it prices and writes every line: capture the rest above the hold as debits, or in a batch (wallet_ingest).")));
	*n = JB_ROOT_COUNT(lines);
	cl = palloc0(sizeof(CaptureLine) * *n);
	for (int i = 0; i < *n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(&lines->root, i);
		JsonbValue	v;
		JsonbContainer *o;
		char	   *unknown;

		CHECK_FOR_INTERRUPTS();
		if (e == NULL || e->type != jbvBinary || !JsonContainerIsObject(e->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("line %d of lines is not a json object", i)));
		o = e->val.binary.data;
		unknown = JsonUnknownField(o, fields, lengthof(fields));
		if (unknown != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown field \"%s\" in line %d of lines", unknown, i),
					 errhint("A line has the arguments of wallet_capture: meter, quantity, dimensions, cost.")));
		if (!getKeyJsonValueFromContainer(o, "meter", 5, &v) || v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("line %d of lines has no meter (a string)", i)));
		cl[i].meter = pnstrdup(v.val.string.val, v.val.string.len);
		TextLimitCheck("meter", cl[i].meter);
		if (!getKeyJsonValueFromContainer(o, "quantity", 8, &v) ||
			(v.type != jbvNumeric && v.type != jbvString))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("line %d of lines has no quantity (a number)", i)));
		cl[i].quantity = v.type == jbvNumeric ? v.val.numeric :
			DatumGetNumeric(DirectFunctionCall3(numeric_in,
												CStringGetDatum(pnstrdup(v.val.string.val, v.val.string.len)),
												ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
		cl[i].q = QuantityDec(cl[i].quantity);
		if (getKeyJsonValueFromContainer(o, "dimensions", 10, &v) && v.type != jbvNull)
		{
			if (v.type != jbvBinary)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("dimensions must be a json object")));
			cl[i].dims = DimensionsCheck(JsonbValueToJsonb(&v));
		}
		if (getKeyJsonValueFromContainer(o, "cost", 4, &v) && v.type != jbvNull)
		{
			if (v.type == jbvNumeric)
				cl[i].cost = CostCheck(v.val.numeric);
			else if (v.type == jbvString)
				cl[i].cost = CostCheck(DatumGetNumeric(DirectFunctionCall3(numeric_in,
																			CStringGetDatum(pnstrdup(v.val.string.val, v.val.string.len)),
																			ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1))));
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("line %d of lines has a cost that is not a number", i)));
		}
	}
	return cl;
}

/*
 * A captured hold asked to capture again: the same lines (meter, quantity,
 * dimensions, in order) replay the stored events; other lines are WL005.
 */
static void
CaptureReplay(const HoldRow *h, const CaptureLine *cl, int n, WalletResult *res)
{
	static const Oid argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(h->id)};
	SPITupleTable *tt;

	WalletExec(PLAN_HOLD_EVENTS,
			   "SELECT id, meter, quantity, dimensions, amount, balance_after FROM wallet.event "
			   " WHERE hold_id OPERATOR(pg_catalog.=) $1 ORDER BY id",
			   1, argtypes, values, NULL, false, SPI_OK_SELECT);
	tt = SPI_tuptable;
	if (SPI_processed != (uint64) n)
		HoldResolvedOtherwise(h, "capture");
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		char	   *meter = SpiGetText(tt->vals[i], tt->tupdesc, 2, &isnull);
		Datum		q = SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull);
		Datum		d;

		if (meter == NULL || strcmp(meter, cl[i].meter) != 0 ||
			!NumericSame(isnull ? NULL : DatumGetNumeric(q), cl[i].quantity))
			HoldResolvedOtherwise(h, "capture");
		d = SPI_getbinval(tt->vals[i], tt->tupdesc, 4, &isnull);
		if (!JsonbSame(isnull ? NULL : DatumGetJsonbP(d), cl[i].dims))
			HoldResolvedOtherwise(h, "capture");
		memset(&res[i], 0, sizeof(WalletResult));
		res[i].approved = true;
		res[i].replayed = true;
		res[i].event_id = SpiGetInt64(tt->vals[i], tt->tupdesc, 1, &isnull);
		res[i].hold_id = h->id;
		res[i].asset = h->info->code;
		res[i].scale = h->info->scale;
		res[i].has_amount = true;
		res[i].amount = SpiGetInt64(tt->vals[i], tt->tupdesc, 5, &isnull);
		res[i].has_balance = true;
		res[i].balance = SpiGetInt64(tt->vals[i], tt->tupdesc, 6, &isnull);
	}
}

/*
 * What hold h covers of each of a capture's n lines, in line order: its
 * reservations on grants that serve the line (a scoped grant serves only
 * the meters and dimensions of its scope), in drawdown order, then its
 * overdraft room, which serves any line.  Reserved value a line takes is
 * drawn into dls[i] (rs[].consumed); what the hold covers beyond it (room,
 * or what a grant reset since no longer holds) goes into room[i], and the
 * rest of the line, above the hold, into above[i].
 */
static void
CaptureCover(const HoldRow *h, Reservation *rs, int nres, const CaptureLine *cl, int n,
			 DrawLines *dls, int64 *room, int64 *above)
{
	int64		room_left = h->overdraft;

	for (int i = 0; i < n; i++)
	{
		int64		need = cl[i].amount;
		int64		t;

		for (int r = 0; r < nres && need > 0; r++)
		{
			int64		g;

			t = Min(rs[r].amount - rs[r].covered, need);
			if (t <= 0 || !ScopeApplies(rs[r].scope, cl[i].meter, cl[i].dims))
				continue;
			g = Min(rs[r].avail - rs[r].consumed, t);
			if (g > 0)
			{
				DrawAdd(&dls[i], rs[r].grant_id, g, rs[r].paid ? rs[r].unit_revenue : NULL);
				rs[r].consumed += g;
			}
			rs[r].covered += t;
			room[i] += t - g;
			need -= t;
		}
		t = Min(room_left, need);
		room_left -= t;
		room[i] += t;
		above[i] = need - t;
	}
}

/*
 * Capture a binding hold (1.1): n lines, one event each, all approved or all
 * declined; res gets one result per line.
 */
static void
CaptureBinding(int64 hold_id, CaptureLine *cl, int n, TimestampTz now, WalletResult *res)
{
	HoldRow		h;
	Account		acct;
	GrantSet	set;
	Reservation *rs;
	int			nres;
	int64		total = 0;
	int64		excess = 0;
	int64		drawn_free = 0;
	int64		overdraft_new = 0;
	int64	   *room;
	int64	   *above;
	DrawLines  *dls;
	CapSet		caps = {0};
	const char *decline;
	const UsageToRecord **earlier;
	int64		available;
	int64		after;
	int64		first_event = 0;
	int64	   *cgids;
	int64	   *ctakes;
	int			nc = 0;
	const AssetInfo *asset;
	Settle		st;
	HeldOnly	only;
	const HeldOnly *onlyp;

	HoldLock(hold_id, true, &h, &acct);
	if (strcmp(h.status, "captured") == 0)
	{
		CaptureReplay(&h, cl, n, res);
		return;
	}
	if (strcmp(h.status, "open") != 0)
		HoldResolvedOtherwise(&h, "capture");
	HoldMustBeOpen(&h, now);
	asset = h.info;
	earlier = palloc(sizeof(UsageToRecord *) * n);

	for (int i = 0; i < n; i++)
	{
		const PriceVersion *pv;

		CHECK_FOR_INTERRUPTS();
		pv = PriceFind(acct.customer, cl[i].meter, now);

		if (strcmp(pv->asset.code, asset->code) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("meter \"%.100s\" is priced in \"%s\", hold " INT64_FORMAT " is in \"%s\"",
							cl[i].meter, pv->asset.code, hold_id, asset->code)));
		cl[i].price_id = pv->id;
		/* priced as if the lines before it were recorded: as debits one after another */
		cl[i].amount = PriceEvaluateAfter(pv, acct.wallet_id, cl[i].meter, cl[i].q, cl[i].dims, now,
										  cl[i].cost, earlier, i, &cl[i].usage);
		earlier[i] = &cl[i].usage;
		total = AddMinor(total, cl[i].amount);
	}
	onlyp = HoldGrantsLoad(&acct, &h, now, &set, &only);
	HotGrantsCurrent(&set);
	available = Available(&acct, &set, now, 0);
	rs = HoldReservations(&h, &set, onlyp, now, &nres, &st);
	room = palloc0(sizeof(int64) * n);
	above = palloc0(sizeof(int64) * n);
	dls = palloc0(sizeof(DrawLines) * n);
	CaptureCover(&h, rs, nres, cl, n, dls, room, above);
	for (int i = 0; i < n; i++)
		excess = AddMinor(excess, above[i]);

	/* only the part above the hold is checked, as a debit is: status, caps, then funds */
	decline = excess > 0 ? StatusDecline(&acct) : NULL;
	caps.blocked = -1;
	if (decline == NULL && excess > 0 && acct.caps > 0)
	{
		Jsonb	  **capdims = palloc(sizeof(Jsonb *) * n);

		for (int i = 0; i < n; i++)
			capdims[i] = cl[i].dims ? cl[i].dims : h.dims;
		/* the room the hold still counts and the capture does not take is given up */
		if (!CapCheckMany(&acct, n, capdims, above, h.dims, SubMinor(h.amount, SubMinor(total, excess)),
						  now, &caps))
			decline = "spend_cap";
	}

	/*
	 * Each line draws what the hold covers beyond reserved value (its overdraft
	 * room, or what its grants no longer hold) from unreserved value that
	 * serves it, if there is some now, then overdraft, whatever the limit says
	 * now; then its part above the hold, as a debit would: unreserved value
	 * that serves it, then overdraft within the limit.  The hold's own room
	 * no longer counts off available once a line has taken it.
	 */
	for (int i = 0; i < n && decline == NULL; i++)
	{
		int64		t;

		CHECK_FOR_INTERRUPTS();
		ScopeSelect(&set, cl[i].meter, cl[i].dims);
		t = DrawFree(&set, &dls[i], room[i]);
		DrawAdd(&dls[i], 0, t, NULL);
		overdraft_new = AddMinor(overdraft_new, t);
		if (above[i] > 0)
		{
			int64		can = SubMinor(SubMinor(set.total, SubMinor(set.unbacked, h.overdraft)),
									   AddMinor(acct.overdraft, overdraft_new));

			if (BelowFloor(can, above[i], acct.overdraft_limit))
				decline = "insufficient_funds";
			t = DrawFree(&set, &dls[i], above[i]);
			DrawAdd(&dls[i], 0, t, NULL);
			overdraft_new = AddMinor(overdraft_new, t);
		}
		drawn_free = AddMinor(drawn_free, AddMinor(room[i], above[i]));
	}
	if (decline)
	{
		if (strcmp(decline, "insufficient_funds") == 0)
			OutboxDeclined(&acct, decline, available, total);
		else if (strcmp(decline, "spend_cap") == 0)
			CapDeclined(&acct, &caps, available, total);
		for (int i = 0; i < n; i++)
		{
			Decline(&acct, decline, available, &res[i]);
			res[i].hold_id = hold_id;
		}
		return;
	}

	/* both terms fit, where available less drawn_free alone may not (a hold near the limit) */
	after = AddMinor(available, SubMinor(ReleasedBack(rs, nres, h.overdraft), drawn_free));
	acct.overdraft = AddMinor(acct.overdraft, overdraft_new);
	for (int i = 0; i < n; i++)
	{
		DebitRequest req = {0};
		int64		event_id;

		CHECK_FOR_INTERRUPTS();
		req.customer = acct.customer;
		req.meter = cl[i].meter;
		req.quantity = cl[i].quantity;
		req.dims = cl[i].dims;
		req.occurred_at = now;
		req.cost = cl[i].cost;
		req.hold_id = hold_id;
		req.price_id = cl[i].price_id;
		req.amount = cl[i].amount;
		event_id = DebitWriteNow(&acct, &req, now, after, dls[i].n, dls[i].ids, dls[i].idnulls,
								 dls[i].takes, dls[i].revs, dls[i].tids);
		if (first_event == 0)
			first_event = event_id;
		if (acct.caps > 0)
			CapRecord(&acct, cl[i].dims, cl[i].amount, now);
		UsageRecord(&cl[i].usage, acct.wallet_id, cl[i].q);
		memset(&res[i], 0, sizeof(WalletResult));
		res[i].approved = true;
		res[i].event_id = event_id;
		res[i].hold_id = hold_id;
		res[i].asset = asset->code;
		res[i].scale = asset->scale;
		res[i].has_amount = true;
		res[i].amount = cl[i].amount;
		res[i].has_balance = true;
		res[i].balance = after;
	}

	/* what was drawn of each reservation no longer backs the hold */
	cgids = palloc(sizeof(int64) * Max(nres, 1));
	ctakes = palloc(sizeof(int64) * Max(nres, 1));
	for (int i = 0; i < nres; i++)
		if (rs[i].consumed > 0)
		{
			cgids[nc] = rs[i].grant_id;
			ctakes[nc++] = rs[i].consumed;
		}
	/* (when nothing leaves, the rows go as they are: wallet._hold_settle would only delete them) */
	if (nc > 0 && !st.direct)
	{
		static const Oid argtypes[3] = {INT8OID, INT8ARRAYOID, INT8ARRAYOID};
		Datum		values[3];

		values[0] = Int64GetDatum(hold_id);
		values[1] = Int8ArrayDatum(cgids, nc);
		values[2] = Int8ArrayDatum(ctakes, nc);
		WalletExec(PLAN_HOLD_CONSUME,
				   "UPDATE wallet.hold_grant r SET amount = r.amount OPERATOR(pg_catalog.-) c.take "
				   "  FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.int8[]), "
				   "                  pg_catalog.unnest($3::pg_catalog.int8[])) AS c(g, take) "
				   " WHERE r.hold_id OPERATOR(pg_catalog.=) $1 AND r.grant_id OPERATOR(pg_catalog.=) c.g",
				   3, argtypes, values, NULL, false, SPI_OK_UPDATE);
	}
	HoldClose(&acct, &h, "captured", first_event, now, true, false, 0, &st);
	OutboxLowBalance(&acct, available, after);
	/* what the capture did not use goes back, as a release's does: alerts it crosses back recover */
	if (after > available)
		AlertRaised(&acct, after);
}

/* wallet_capture(hold_id, meter, quantity, dimensions, cost) of a 1.0 schema */
static void
CaptureLegacy(int64 hold_id, CaptureLine *cl, TimestampTz now, WalletResult *res)
{
	DebitRequest req = {0};
	const PriceVersion *pv;
	HoldRow		h;
	Account		acct;

	req.meter = cl->meter;
	req.quantity = cl->quantity;
	req.dims = cl->dims;
	req.cost = cl->cost;
	req.occurred_at = now;
	req.hold_id = hold_id;
	HoldLockOpen(hold_id, now, &h, &acct);
	req.customer = acct.customer;
	pv = PriceFind(acct.customer, cl->meter, now);
	if (strcmp(pv->asset.code, h.info->code) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meter \"%.100s\" is priced in \"%s\", hold " INT64_FORMAT " is in \"%s\"",
						cl->meter, pv->asset.code, hold_id, h.info->code)));
	req.price_id = pv->id;
	req.amount = PriceEvaluateCost(pv, acct.wallet_id, cl->meter, cl->q, req.dims, now, cl->cost,
								   &cl->usage);
	if (DebitApply(&acct, &req, now, h.amount, res))
	{
		UsageRecord(&cl->usage, acct.wallet_id, cl->q);
		HoldClose(&acct, &h, "captured", res->event_id, now, false, false, 0, NULL);
	}
	else
		res->hold_id = hold_id;
}

static int64
ArgHoldId(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hold_id must not be null")));
	return PG_GETARG_INT64(0);
}

/* wallet_capture(hold_id, meter, quantity, dimensions, cost) */
Datum
wallet_capture(PG_FUNCTION_ARGS)
{
	int64		hold_id = ArgHoldId(fcinfo);
	TimestampTz now = WalletNow();
	CaptureLine cl = {0};
	WalletResult res;

	cl.meter = ArgCString(fcinfo, 1, "meter");
	cl.quantity = ArgNumeric(fcinfo, 2, "quantity");
	cl.dims = ArgDimensions(fcinfo, 3);
	cl.cost = ArgCost(fcinfo, 4);
	cl.q = QuantityDec(cl.quantity);

	SPI_connect();
	if (Binding())
		CaptureBinding(hold_id, &cl, 1, now, &res);
	else
		CaptureLegacy(hold_id, &cl, now, &res);
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}

/* wallet_capture_lines(hold_id, lines): one result row per line */
Datum
wallet_capture_lines(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		hold_id = ArgHoldId(fcinfo);
	TimestampTz now = WalletNow();
	CaptureLine *cl;
	WalletResult *res;
	int			n;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lines must not be null")));
	cl = LinesParse(PG_GETARG_JSONB_P(1), &n);
	res = palloc0(sizeof(WalletResult) * n);
	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	WalletRequireSchema(11, "wallet_capture_lines");
	CaptureBinding(hold_id, cl, n, now, res);
	SPI_finish();
	for (int i = 0; i < n; i++)
	{
		HeapTupleHeader row = DatumGetHeapTupleHeader(WalletResultDatum(fcinfo, &res[i]));
		HeapTupleData tup;

		tup.t_len = HeapTupleHeaderGetDatumLength(row);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = row;
		tuplestore_puttuple(rsinfo->setResult, &tup);
	}
	return (Datum) 0;
}

/* wallet_release(hold_id) */
Datum
wallet_release(PG_FUNCTION_ARGS)
{
	int64		hold_id = ArgHoldId(fcinfo);
	TimestampTz now = WalletNow();
	HoldRow		h;
	Account		acct;
	GrantSet	set;
	WalletResult res = {0};
	bool		binding;

	SPI_connect();
	binding = Binding();
	res.approved = true;
	res.hold_id = hold_id;
	if (!binding)
	{
		HoldLockOpen(hold_id, now, &h, &acct);
		HoldClose(&acct, &h, "released", 0, now, false, false, 0, NULL);
		GrantsLoad(&acct, now, true, &set);
		res.balance = Available(&acct, &set, now, 0);
		res.has_balance = true;
	}
	else
	{
		HoldLock(hold_id, true, &h, &acct);
		if (strcmp(h.status, "released") == 0)
		{
			/* released before: the stored result */
			res.replayed = true;
			res.has_balance = h.has_release_balance;
			res.balance = h.release_balance;
		}
		else
		{
			Reservation *rs;
			int			nres;
			Settle		st;
			HeldOnly	only;
			const HeldOnly *onlyp;

			if (strcmp(h.status, "open") != 0)
				HoldResolvedOtherwise(&h, "release");
			HoldMustBeOpen(&h, now);
			onlyp = HoldGrantsLoad(&acct, &h, now, &set, &only);
			HotGrantsCurrent(&set);
			rs = HoldReservations(&h, &set, onlyp, now, &nres, &st);
			res.has_balance = true;
			res.balance = AddMinor(Available(&acct, &set, now, 0), ReleasedBack(rs, nres, h.overdraft));
			HoldClose(&acct, &h, "released", 0, now, true, true, res.balance, &st);
		}
	}
	/* value released raises the balance: alerts it crosses back recover */
	if (!res.replayed)
		AlertRaised(&acct, res.balance);
	res.asset = h.info->code;
	res.scale = h.info->scale;
	res.has_amount = true;
	res.amount = h.amount;
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}

/* wallet_extend_hold(hold_id, ttl): an open hold now expires at now + ttl */
Datum
wallet_extend_hold(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[2] = {INT8OID, TIMESTAMPTZOID};
	int64		hold_id = ArgHoldId(fcinfo);
	TimestampTz now = WalletNow();
	TimestampTz expires_at = HoldExpiry(fcinfo, 1, now);
	Datum		values[2];
	HoldRow		h;
	Account		acct;
	GrantSet	set;
	WalletResult res = {0};

	SPI_connect();
	WalletRequireSchema(11, "wallet_extend_hold");
	HoldLock(hold_id, true, &h, &acct);
	HoldMustBeOpen(&h, now);
	values[0] = Int64GetDatum(hold_id);
	values[1] = TimestampTzGetDatum(expires_at);
	WalletExec(PLAN_HOLD_EXTEND,
			   "UPDATE wallet.hold SET expires_at = $2 WHERE id OPERATOR(pg_catalog.=) $1",
			   2, argtypes, values, NULL, false, SPI_OK_UPDATE);

	/*
	 * The balance row is written too, though nothing on it changes: a
	 * REPEATABLE READ call whose snapshot is older than this extension (and
	 * whose clock has passed the old ttl) would take the hold for expired and
	 * spend what it reserves; its update of the balance row meets this one
	 * instead (40001), as it meets a new hold's.  (Under REPEATABLE READ the
	 * lock was that write already.)
	 */
	if (!IsolationUsesXactSnapshot())
		AccountSave(&acct);
	GrantsLoad(&acct, now, true, &set);
	res.approved = true;
	res.hold_id = hold_id;
	res.asset = h.info->code;
	res.scale = h.info->scale;
	res.has_amount = true;
	res.amount = h.amount;
	res.has_balance = true;
	res.balance = Available(&acct, &set, now, 0);
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}
