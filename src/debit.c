/*
 * debit.c
 *	  The debit engine: wallet_debit and wallet_authorize_debit.
 *
 * One call, under one lock (the balance row of the wallet in the asset):
 *	 1. replay: the idempotency key's stored result, if there is one;
 *	 2. status: frozen and closed wallets decline;
 *	 3. price (authorize only): the version in force at occurred_at;
 *	 4. balance: live grants (resets applied) - open holds - overdraft;
 *	 5. decline, or draw in drawdown order and write the event, the grant
 *		updates and the ledger lines.
 * The steps are functions wallet_ingest reuses (ReplayMatch, DebitJudge,
 * DebitFinish); for it, DebitWrite writes each event as the single call does
 * and queues the grant updates in a DebitBuffer, written a few thousand
 * debits per statement.  A single call's lock, key probe,
 * grants and writes go to the tables directly (hotpath.c).
 */
#include "wallet.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(wallet_debit);
PG_FUNCTION_INFO_V1(wallet_authorize_debit);

/*
 * The grant updates of many debits at once (wallet_ingest): each grant
 * updated once, by what all the debits written since the last flush drew from
 * it (the events and their ledger lines were written one by one, through
 * HotDebitWrite).
 */
static const char *take_grants_sql =
"WITH g AS (UPDATE wallet.grant_block b SET remaining = b.remaining OPERATOR(pg_catalog.-) s.take "
"             FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.int8[])) "
"                  AS s(grant_id, take) "
"            WHERE b.id OPERATOR(pg_catalog.=) s.grant_id "
"           RETURNING 1) "
"SELECT pg_catalog.count(*)::pg_catalog.int8 FROM g";

/* checks shared by the hot-path entry points */
char *
ArgKey(FunctionCallInfo fcinfo, int n)
{
	return KeyCheck(ArgCString(fcinfo, n, "idempotency_key"));
}

/* an idempotency key (not null, not empty): at most WALLET_MAX_KEY_LENGTH bytes */
char *
KeyCheck(char *key)
{
	if (strlen(key) > WALLET_MAX_KEY_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency_key is longer than %d bytes", WALLET_MAX_KEY_LENGTH)));
	return key;
}

/* cost: null, or a finite amount of the reporting currency, not negative */
Numeric
ArgCost(FunctionCallInfo fcinfo, int n)
{
	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return NULL;
	return CostCheck(PG_GETARG_NUMERIC(n));
}

/* a cost that is not null: finite and not negative */
Numeric
CostCheck(Numeric cost)
{
	Dec			d = DecFromNumeric(cost, "cost");

	if (d.v < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cost must not be negative")));
	return cost;
}

static bool
DimsEqual(Jsonb *a, Jsonb *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return compareJsonbContainers(&a->root, &b->root) == 0;
}

static pg_attribute_noreturn() void
KeyReused(const char *key, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_WALLET_KEY_REUSED),
			 errmsg("idempotency key \"%s\" was used for a different request", key),
			 errdetail("The %s differs from the first request's.", what)));
}

/*
 * A StoredRequest from the columns of idempotency_sql starting at col (kind,
 * id, meter, quantity, dimensions, asset, amount, balance_after, hold_id),
 * copied into the current memory context.
 */
static void
StoredFromTuple(HeapTuple tup, TupleDesc desc, int col, StoredRequest *st)
{
	bool		isnull;
	Datum		d;
	char	   *kind = SpiGetText(tup, desc, col, &isnull);

	memset(st, 0, sizeof(*st));
	st->is_hold = strcmp(kind, "hold") == 0;
	st->id = SpiGetInt64(tup, desc, col + 1, &isnull);
	st->meter = SpiGetText(tup, desc, col + 2, &isnull);
	d = SPI_getbinval(tup, desc, col + 3, &isnull);
	st->quantity = isnull ? NULL : DatumGetNumericCopy(d);
	d = SPI_getbinval(tup, desc, col + 4, &isnull);
	st->dims = isnull ? NULL : DatumGetJsonbPCopy(d);
	st->asset = SpiGetText(tup, desc, col + 5, &isnull);
	st->amount = SpiGetInt64(tup, desc, col + 6, &isnull);
	st->balance_after = SpiGetInt64(tup, desc, col + 7, &isnull);
	st->hold_id = SpiGetInt64(tup, desc, col + 8, &isnull);
}

/*
 * The stored result of an earlier call with this key, if any.  req is the
 * debit being asked for, or NULL for a hold of hold_amount (-1: any amount,
 * for wallet_authorize_hold, whose request is its meter and quantity).  A
 * different request under the same key is WL004.
 */
bool
Replayed(Account *acct, const char *key, const DebitRequest *req,
		 int64 hold_amount, WalletResult *res)
{
	HeapTuple	tup;
	TupleDesc	desc;
	StoredRequest st;

	if (!HotKeyFind(acct, key, &tup, &desc))
		return false;
	StoredFromTuple(tup, desc, 1, &st);
	ReplayMatch(acct, key, req, hold_amount, &st, res);
	return true;
}

/*
 * The replay of what key stored, st: WL004 unless req (or, when req is NULL,
 * a hold of hold_amount) is the same request; else the stored result.
 */
void
ReplayMatch(const Account *acct, const char *key, const DebitRequest *req,
			int64 hold_amount, const StoredRequest *st, WalletResult *res)
{
	const AssetInfo *stored_asset;

	if (req == NULL)
	{
		if (!st->is_hold)
			KeyReused(key, "kind of request (a debit, not a hold)");
		if (strcmp(st->asset, acct->asset) != 0)
			KeyReused(key, "asset");
		if (hold_amount >= 0 && st->amount != hold_amount)
			KeyReused(key, "amount");
	}
	else
	{
		if (st->is_hold)
			KeyReused(key, "kind of request (a hold, not a debit)");
		if ((st->meter == NULL) != (req->meter == NULL) ||
			(st->meter && strcmp(st->meter, req->meter) != 0))
			KeyReused(key, "meter");
		if (req->meter == NULL)
		{
			if (strcmp(st->asset, acct->asset) != 0)
				KeyReused(key, "asset");
			if (st->amount != req->amount)
				KeyReused(key, "amount");
		}
		else if (st->quantity == NULL ||
				 !DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(st->quantity),
												   NumericGetDatum(req->quantity))))
			KeyReused(key, "quantity");
		if (!DimsEqual(st->dims, req->dims))
			KeyReused(key, "dimensions");
	}

	stored_asset = AssetLookup(st->asset);
	memset(res, 0, sizeof(*res));
	res->approved = true;
	res->replayed = true;
	if (req != NULL)
	{
		res->event_id = st->id;
		res->hold_id = st->hold_id;
	}
	else
		res->hold_id = st->id;
	res->asset = stored_asset->code;
	res->scale = stored_asset->scale;
	res->has_amount = true;
	res->amount = st->amount;
	res->has_balance = true;
	res->balance = st->balance_after;
}

/*
 * The stored requests of n keys (wallet_ids[i], keys[i]), an index probe each
 * (HotKeyFindMany; among holds only where holds[i], or everywhere when holds
 * is NULL): found[i] is NULL or the request, allocated in cxt.
 */
void
StoredFetchMany(int n, const int64 *wallet_ids, const char *const *keys, const bool *holds,
				StoredRequest **found, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	HeapTuple  *tups = palloc(sizeof(HeapTuple) * Max(n, 1));
	TupleDesc	desc;

	HotKeyFindMany(n, wallet_ids, keys, holds, tups, &desc);
	for (int i = 0; i < n; i++)
	{
		found[i] = NULL;
		if (tups[i] == NULL)
			continue;
		found[i] = palloc(sizeof(StoredRequest));
		StoredFromTuple(tups[i], desc, 1, found[i]);
	}
	pfree(tups);
	MemoryContextSwitchTo(old);
}

/* a decline: a result, not an error */
void
Decline(const Account *acct, const char *reason, int64 available, WalletResult *res)
{
	memset(res, 0, sizeof(*res));
	res->approved = false;
	res->reason = reason;
	res->asset = AssetLookup(acct->asset)->code;
	res->scale = acct->scale;
	res->has_balance = true;
	res->balance = available;
}

/* frozen and closed wallets decline every debit and hold */
const char *
StatusDecline(const Account *acct)
{
	if (strcmp(acct->status, "frozen") == 0)
		return "wallet_frozen";
	if (strcmp(acct->status, "closed") == 0)
		return "wallet_closed";
	return NULL;
}

/*
 * available now, from the loaded grants (GrantsLoad applied the open holds:
 * what they reserve on live grants is off set->total, the rest is
 * set->unbacked); release_first is a hold being captured (1.0 schema only)
 */
int64
Available(const Account *acct, const GrantSet *set, TimestampTz now, int64 release_first)
{
	int64		held = SubMinor(set->unbacked, release_first);

	return SubMinor(SubMinor(set->total, held), acct->overdraft);
}

/*
 * Decide a debit of req->amount without writing anything but the resets time
 * has made (and not even those when write is false: a quote).  The caller
 * holds the lock (or, for a quote, takes none) and has checked the key.
 * release_first is the amount of a hold being captured (0 otherwise): it
 * counts as available.  Sets d->decline to the reason, or NULL to approve.
 * Spend caps are checked only when the balance row says there are some
 * (acct->caps), so a wallet without caps pays no extra query.
 */
void
DebitDecide(Account *acct, const DebitRequest *req, TimestampTz now,
			int64 release_first, bool write, Decision *d)
{
	GrantsLoad(acct, now, write, &d->set);
	DebitJudge(acct, req, now, release_first, d);
}

/*
 * The decision of DebitDecide from the live grants already in d->set: loaded
 * under the lock just now, or kept by wallet_ingest across a batch's debits
 * (DebitWrite takes what it draws off the set).  Only the grants that serve
 * the debit's meter and dimensions count (ScopeSelect): d->available is what
 * wallet_available says for them.
 */
void
DebitJudge(Account *acct, const DebitRequest *req, TimestampTz now,
		   int64 release_first, Decision *d)
{
	ScopeSelect(&d->set, req->meter, req->dims);
	d->available = Available(acct, &d->set, now, release_first);
	d->caps.n = 0;
	d->caps.blocked = -1;
	d->decline = StatusDecline(acct);
	/* a cap says no before the balance does: a top-up would not help */
	if (d->decline == NULL && acct->caps > 0 &&
		!CapCheck(acct, req->dims, req->amount, now, &d->caps))
		d->decline = "spend_cap";
	if (d->decline == NULL && BelowFloor(d->available, req->amount, acct->overdraft_limit))
		d->decline = "insufficient_funds";
	d->after = d->decline ? d->available : d->available - req->amount;
}

/* ------------------------------------------------------------ deferred writes */

/*
 * wallet_ingest writes each approved debit's event and ledger lines at once,
 * as the single call does (HotDebitWrite), but not its grant updates: those
 * are summed here per grant and written with take_grants_sql, one update per
 * grant for a few thousand debits (one wallet's thousand debits would
 * otherwise leave a thousand versions of the same grant row).  Nothing in a
 * debit's own path reads grant rows back: wallet_ingest loaded them before
 * the batch's first debit and keeps them in memory.
 */
static int64 DebitWriteHot(const Account *acct, const DebitRequest *req, TimestampTz now,
						   int64 balance_after, int nlines, Datum *ids, bool *idnulls,
						   Datum *takes, Datum *revs, const ItemPointerData *tids,
						   HotDebitBatch *batch, bool grants_later);

struct DebitBuffer
{
	MemoryContext cxt;
	int			n;				/* debits since the last flush */
	HTAB	   *grants;			/* grant id -> what they drew */
	HotDebitBatch *writer;		/* writes the events (HotDebitWrite) */
};

typedef struct GrantTake
{
	int64		grant_id;
	int64		take;
	ItemPointerData tid;		/* where it was read, or invalid */
} GrantTake;

/* the grants drawn from by the debits, in the buffer's memory */
static void
BufferGrantsCreate(DebitBuffer *buf)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(GrantTake);
	ctl.hcxt = buf->cxt;
	buf->grants = hash_create("wallet debit buffer grants", 256, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* an empty buffer, in a memory context of its own under cxt */
DebitBuffer *
DebitBufferCreate(MemoryContext cxt)
{
	DebitBuffer *buf = MemoryContextAllocZero(cxt, sizeof(DebitBuffer));

	buf->cxt = AllocSetContextCreate(cxt, "wallet debit buffer", ALLOCSET_DEFAULT_SIZES);
	BufferGrantsCreate(buf);
	buf->writer = HotDebitBatchCreate(cxt);
	return buf;
}

/* after the last debit and flush: close the event writer */
void
DebitBufferClose(DebitBuffer *buf)
{
	HotDebitBatchEnd(buf->writer);
}

/* how many debits drew since the last flush */
int
DebitBufferCount(const DebitBuffer *buf)
{
	return buf->n;
}

/* what one debit drew from each grant (ids null: the overdraft part) */
static void
DebitBufferTake(DebitBuffer *buf, int nlines, const Datum *ids, const bool *idnulls,
				const Datum *takes, const ItemPointerData *tids)
{
	for (int i = 0; i < nlines; i++)
	{
		int64		grant_id;
		bool		found;
		GrantTake  *g;

		if (idnulls[i])
			continue;
		grant_id = DatumGetInt64(ids[i]);
		g = hash_search(buf->grants, &grant_id, HASH_ENTER, &found);
		g->take = found ? AddMinor(g->take, DatumGetInt64(takes[i])) : DatumGetInt64(takes[i]);
		if (!found)
			g->tid = tids[i];
	}
	buf->n++;
}

/* write the grant updates the buffer holds (the caller is connected to SPI) and empty it */
void
DebitBufferFlush(DebitBuffer *buf, TimestampTz now)
{
	static const Oid argtypes[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		values[2];
	long		ng = hash_get_num_entries(buf->grants);
	int64	   *gids;
	int64	   *gtakes;
	ItemPointerData *gtids;
	HASH_SEQ_STATUS seq;
	GrantTake  *g;
	int			i = 0;
	bool		isnull;

	if (ng == 0)
	{
		buf->n = 0;
		return;
	}
	gids = MemoryContextAlloc(buf->cxt, sizeof(int64) * ng);
	gtakes = MemoryContextAlloc(buf->cxt, sizeof(int64) * ng);
	gtids = MemoryContextAlloc(buf->cxt, sizeof(ItemPointerData) * ng);
	hash_seq_init(&seq, buf->grants);
	while ((g = hash_seq_search(&seq)) != NULL)
	{
		gids[i] = g->grant_id;
		gtids[i] = g->tid;
		gtakes[i++] = g->take;
	}
	if (HotGrantsTake(i, gids, gtids, gtakes))
	{
		MemoryContextReset(buf->cxt);
		BufferGrantsCreate(buf);
		buf->n = 0;
		return;
	}
	/* an UPDATE trigger on grants: the statement fires it */
	values[0] = Int8ArrayDatum(gids, i);
	values[1] = Int8ArrayDatum(gtakes, i);
	WalletExec(PLAN_WRITE_DEBITS, take_grants_sql, 2, argtypes, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "wallet: the grant update returned %llu rows", (unsigned long long) SPI_processed);
	/* a BEFORE trigger that skipped a row would leave the grant's remaining wrong */
	if (SpiGetInt64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull) != i)
		WalletRowSkipped("wallet.grant_block");
	SPI_freetuptable(SPI_tuptable);
	MemoryContextReset(buf->cxt);
	BufferGrantsCreate(buf);
	buf->n = 0;
}

/*
 * Write one debit now, directly to the tables (hotpath.c): the event, the
 * grant updates and the ledger lines (ids, takes and revenues per unit, in
 * drawdown order; tids where each grant was read, or invalid: found by id).
 * Returns the event id.  A capture of a binding hold (hold.c) writes its
 * events with it too.
 */
int64
DebitWriteNow(const Account *acct, const DebitRequest *req, TimestampTz now, int64 balance_after,
			  int nlines, Datum *ids, bool *idnulls, Datum *takes, Datum *revs,
			  const ItemPointerData *tids)
{
	return DebitWriteHot(acct, req, now, balance_after, nlines, ids, idnulls, takes, revs, tids,
						 NULL, false);
}

/*
 * DebitWriteNow; grants_later: without the grant updates (the caller queued
 * them), through batch's writer when not NULL
 */
static int64
DebitWriteHot(const Account *acct, const DebitRequest *req, TimestampTz now, int64 balance_after,
			  int nlines, Datum *ids, bool *idnulls, Datum *takes, Datum *revs,
			  const ItemPointerData *tids, HotDebitBatch *batch, bool grants_later)
{
	HotDebit	w;
	int64	   *gids = palloc(sizeof(int64) * Max(nlines, 1));
	int64	   *gtakes = palloc(sizeof(int64) * Max(nlines, 1));
	Numeric    *grevs = palloc(sizeof(Numeric) * Max(nlines, 1));

	memset(&w, 0, sizeof(w));
	for (int i = 0; i < nlines; i++)
	{
		gids[i] = idnulls[i] ? 0 : DatumGetInt64(ids[i]);
		gtakes[i] = DatumGetInt64(takes[i]);
		grevs[i] = DatumGetNumeric(revs[i]);
	}
	w.wallet_id = acct->wallet_id;
	w.key = req->key;
	w.meter = req->meter;
	w.quantity = req->quantity;
	w.dims = req->dims;
	w.occurred_at = req->occurred_at;
	w.now = now;
	w.asset = acct->asset;
	w.amount = req->amount;
	w.price_id = req->price_id;
	w.cost = req->cost;
	w.hold_id = req->hold_id;
	w.balance_after = balance_after;
	w.minor_unit = MinorToNumeric(1, acct->scale);
	w.nlines = nlines;
	w.grant_ids = gids;
	w.tids = tids;
	w.takes = gtakes;
	w.unit_revenues = grevs;
	w.grants_later = grants_later;
	w.batch = batch;
	return HotDebitWrite(&w);
}

/*
 * Write an approved debit: draw in drawdown order (what the grants cannot
 * cover is overdraft) and write the event, the grant updates and the ledger
 * lines (the grant updates queued in req->defer when set).  What is drawn is taken
 * off d->set.  The caller saves the balance row if it changed (DebitApply
 * does; a capture saves it with the hold).
 */
static void
DebitWrite(Account *acct, const DebitRequest *req, TimestampTz now, Decision *d,
		   WalletResult *res)
{
	GrantSet   *set = &d->set;
	int64		left = req->amount;
	int			nlines = 0;
	Datum	   *ids = palloc(sizeof(Datum) * (set->n + 1));
	bool	   *idnulls = palloc0(sizeof(bool) * (set->n + 1));
	Datum	   *takes = palloc(sizeof(Datum) * (set->n + 1));
	Datum	   *revs = palloc(sizeof(Datum) * (set->n + 1));
	ItemPointerData *tids = palloc(sizeof(ItemPointerData) * (set->n + 1));
	int64		event_id;
	Datum		zero = NumericGetDatum(MinorToNumeric(0, 0));

	for (int i = 0; i < set->n && left > 0; i++)
	{
		GrantRow   *g = &set->rows[i];
		int64		take = Min(g->remaining, left);

		if (take == 0 || g->excluded)
			continue;
		g->remaining -= take;
		set->total -= take;
		ids[nlines] = Int64GetDatum(g->id);
		takes[nlines] = Int64GetDatum(take);
		/* only value drawn from paid grants is revenue */
		revs[nlines] = g->category_rank == 2 ? NumericGetDatum(g->unit_revenue) : zero;
		tids[nlines] = g->tid;
		nlines++;
		left -= take;
	}
	if (left > 0)
	{
		ids[nlines] = (Datum) 0;
		idnulls[nlines] = true;
		takes[nlines] = Int64GetDatum(left);
		revs[nlines] = zero;
		ItemPointerSetInvalid(&tids[nlines]);
		nlines++;
		acct->overdraft = AddMinor(acct->overdraft, left);
	}

	if (req->defer != NULL)
	{
		event_id = DebitWriteHot(acct, req, now, d->after, nlines, ids, idnulls, takes, revs, tids,
								 req->defer->writer, true);
		DebitBufferTake(req->defer, nlines, ids, idnulls, takes, tids);
	}
	else
		event_id = DebitWriteNow(acct, req, now, d->after, nlines, ids, idnulls, takes, revs, tids);
	if (d->caps.n > 0)
		CapRecord(acct, req->dims, req->amount, now);

	memset(res, 0, sizeof(*res));
	res->approved = true;
	res->event_id = event_id;
	res->hold_id = req->hold_id;
	res->asset = AssetLookup(acct->asset)->code;
	res->scale = acct->scale;
	res->has_amount = true;
	res->amount = req->amount;
	res->has_balance = true;
	res->balance = d->after;
}

/*
 * Decide and, if approved, write a debit (the caller holds the lock and has
 * checked the key).  A decline for funds or for a spend cap writes an outbox
 * row.  Returns approved.
 */
bool
DebitApply(Account *acct, DebitRequest *req, TimestampTz now,
		   int64 release_first, WalletResult *res)
{
	Decision	d;

	DebitDecide(acct, req, now, release_first, true, &d);
	return DebitFinish(acct, req, now, release_first, &d, res);
}

/*
 * The writes of a debit DebitDecide (write = true) has decided, under the same
 * lock: the outbox row of a decline for funds, or the debit itself.  Split
 * from DebitApply so that wallet_ingest can decide inside a subtransaction
 * that writes nothing and write outside it.  Returns approved.
 */
bool
DebitFinish(Account *acct, DebitRequest *req, TimestampTz now,
			int64 release_first, Decision *d, WalletResult *res)
{
	int64		overdraft_before = acct->overdraft;

	/* results and notices speak of the whole balance: scoped grants that did not serve still count */
	if (d->set.excluded != 0)
	{
		d->available = AddMinor(d->available, d->set.excluded);
		d->after = AddMinor(d->after, d->set.excluded);
	}
	if (d->decline != NULL)
	{
		/* a declined capture leaves its hold open: it still counts */
		d->available = SubMinor(d->available, release_first);
		if (strcmp(d->decline, "insufficient_funds") == 0)
			OutboxDeclined(acct, d->decline, d->available, req->amount);
		else if (strcmp(d->decline, "spend_cap") == 0)
			CapDeclined(acct, &d->caps, d->available, req->amount);
		Decline(acct, d->decline, d->available, res);
		return false;
	}
	DebitWrite(acct, req, now, d, res);
	/* a capture: the hold already counted against available before it */
	OutboxLowBalance(acct, SubMinor(d->available, release_first), d->after);
	if (acct->overdraft != overdraft_before && release_first == 0)
		AccountSave(acct);
	return true;
}

/* wallet_debit(customer, asset, amount, idempotency_key, dimensions, cost) */
Datum
wallet_debit(PG_FUNCTION_ARGS)
{
	char	   *customer = ArgCString(fcinfo, 0, "customer");
	char	   *code = ArgCString(fcinfo, 1, "asset");
	Numeric		amount = ArgNumeric(fcinfo, 2, "amount");
	char	   *key = ArgKey(fcinfo, 3);
	const AssetInfo *asset;
	DebitRequest req = {0};
	Account		acct;
	WalletResult res;

	req.customer = customer;
	req.key = key;
	req.dims = ArgDimensions(fcinfo, 4);
	req.cost = ArgCost(fcinfo, 5);
	req.occurred_at = WalletNow();

	SPI_connect();
	asset = AssetLookup(code);
	req.amount = AmountToMinor(amount, asset->scale, asset->code, "amount");
	AccountLockByCustomer(customer, asset, &acct);
	if (!Replayed(&acct, key, &req, 0, &res))
		DebitApply(&acct, &req, WalletNow(), 0, &res);
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}

/*
 * wallet_authorize_debit(customer, meter, quantity, idempotency_key,
 *						  dimensions, occurred_at, cost)
 */
Datum
wallet_authorize_debit(PG_FUNCTION_ARGS)
{
	char	   *customer = ArgCString(fcinfo, 0, "customer");
	char	   *meter = ArgCString(fcinfo, 1, "meter");
	Numeric		quantity = ArgNumeric(fcinfo, 2, "quantity");
	char	   *key = ArgKey(fcinfo, 3);
	DebitRequest req = {0};
	Account		acct;
	WalletResult res;
	const PriceVersion *pv;
	Dec			q;
	UsageToRecord usage;

	req.customer = customer;
	req.meter = meter;
	req.quantity = quantity;
	req.key = key;
	req.dims = ArgDimensions(fcinfo, 4);
	req.occurred_at = ArgOccurredAt(fcinfo, 5);
	req.cost = ArgCost(fcinfo, 6);
	q = QuantityDec(quantity);
	CheckOccurredAt(req.occurred_at);

	SPI_connect();
	pv = PriceFind(customer, meter, req.occurred_at);
	AccountLockByCustomer(customer, &pv->asset, &acct);
	if (!Replayed(&acct, key, &req, 0, &res))
	{
		req.price_id = pv->id;
		req.amount = PriceEvaluateCost(pv, acct.wallet_id, meter, q, req.dims, req.occurred_at,
									   req.cost, &usage);
		if (DebitApply(&acct, &req, WalletNow(), 0, &res))
			UsageRecord(&usage, acct.wallet_id, q);
	}
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}
