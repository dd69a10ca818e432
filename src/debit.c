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
 * The lock, the key probe, the grants and the writes go to the tables
 * directly (hotpath.c); the rest is SQL through kept plans.
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(wallet_debit);
PG_FUNCTION_INFO_V1(wallet_authorize_debit);

#define MAX_KEY_LENGTH 255

/* checks shared by the hot-path entry points */
char *
ArgKey(FunctionCallInfo fcinfo, int n)
{
	char	   *key = ArgCString(fcinfo, n, "idempotency_key");

	if (strlen(key) > MAX_KEY_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency_key is longer than %d bytes", MAX_KEY_LENGTH)));
	return key;
}

/* cost: null, or a finite amount of the reporting currency, not negative */
Numeric
ArgCost(FunctionCallInfo fcinfo, int n)
{
	Numeric		cost;
	Dec			d;

	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return NULL;
	cost = PG_GETARG_NUMERIC(n);
	d = DecFromNumeric(cost, "cost");
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
 * The stored result of an earlier call with this key, if any.  req is the
 * debit being asked for, or NULL for a hold of hold_amount.  A different
 * request under the same key is WL004.
 */
bool
Replayed(Account *acct, const char *key, const DebitRequest *req,
		 int64 hold_amount, WalletResult *res)
{
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *kind;
	char	   *meter;
	char	   *asset;
	int64		amount;
	const AssetInfo *stored_asset;

	if (!HotKeyFind(acct->wallet_id, key, &tup, &desc))
		return false;
	kind = SpiGetText(tup, desc, 1, &isnull);
	meter = SpiGetText(tup, desc, 3, &isnull);
	asset = SpiGetText(tup, desc, 6, &isnull);
	amount = SpiGetInt64(tup, desc, 7, &isnull);

	if (req == NULL)
	{
		if (strcmp(kind, "hold") != 0)
			KeyReused(key, "kind of request (a debit, not a hold)");
		if (strcmp(asset, acct->asset) != 0)
			KeyReused(key, "asset");
		if (amount != hold_amount)
			KeyReused(key, "amount");
	}
	else
	{
		Datum		qty;
		Datum		dims;
		bool		dnull;

		if (strcmp(kind, "event") != 0)
			KeyReused(key, "kind of request (a hold, not a debit)");
		if ((meter == NULL) != (req->meter == NULL) ||
			(meter && strcmp(meter, req->meter) != 0))
			KeyReused(key, "meter");
		if (req->meter == NULL)
		{
			if (strcmp(asset, acct->asset) != 0)
				KeyReused(key, "asset");
			if (amount != req->amount)
				KeyReused(key, "amount");
		}
		else
		{
			qty = SPI_getbinval(tup, desc, 4, &isnull);
			if (isnull || !DatumGetBool(DirectFunctionCall2(numeric_eq, qty,
															NumericGetDatum(req->quantity))))
				KeyReused(key, "quantity");
		}
		dims = SPI_getbinval(tup, desc, 5, &dnull);
		if (!DimsEqual(dnull ? NULL : DatumGetJsonbP(dims), req->dims))
			KeyReused(key, "dimensions");
	}

	stored_asset = AssetLookup(asset);
	memset(res, 0, sizeof(*res));
	res->approved = true;
	res->replayed = true;
	if (req != NULL)
	{
		res->event_id = SpiGetInt64(tup, desc, 2, &isnull);
		res->hold_id = SpiGetInt64(tup, desc, 9, &isnull);
	}
	else
		res->hold_id = SpiGetInt64(tup, desc, 2, &isnull);
	res->asset = stored_asset->code;
	res->scale = stored_asset->scale;
	res->has_amount = true;
	res->amount = amount;
	res->has_balance = true;
	res->balance = SpiGetInt64(tup, desc, 8, &isnull);
	return true;
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

/* available now, from the loaded grants; release_first is a hold being captured */
int64
Available(const Account *acct, const GrantSet *set, TimestampTz now, int64 release_first)
{
	int64		held = SubMinor(LiveHeld(acct, now, NULL), release_first);

	return SubMinor(SubMinor(set->total, held), acct->overdraft);
}

/*
 * Decide a debit of req->amount without writing anything but the resets time
 * has made (and not even those when write is false: a quote).  The caller
 * holds the lock (or, for a quote, takes none) and has checked the key.
 * release_first is the amount of a hold being captured (0 otherwise): it
 * counts as available.  Sets d->decline to the reason, or NULL to approve.
 */
void
DebitDecide(Account *acct, const DebitRequest *req, TimestampTz now,
			int64 release_first, bool write, Decision *d)
{
	GrantsLoad(acct, now, write, &d->set);
	d->available = Available(acct, &d->set, now, release_first);
	d->decline = StatusDecline(acct);
	if (d->decline == NULL && SubMinor(d->available, req->amount) < -acct->overdraft_limit)
		d->decline = "insufficient_funds";
	d->after = d->decline ? d->available : d->available - req->amount;
}

/*
 * Write an approved debit: draw in drawdown order (what the grants cannot
 * cover is overdraft) and write the event, the grant updates and the ledger
 * lines (hotpath.c).  The caller saves the balance row if it changed
 * (DebitApply does; a capture saves it with the hold).
 */
static void
DebitWrite(Account *acct, const DebitRequest *req, TimestampTz now, Decision *d,
		   WalletResult *res)
{
	GrantSet   *set = &d->set;
	int64		left = req->amount;
	int			nlines = 0;
	int64	   *ids = palloc(sizeof(int64) * (set->n + 1));
	ItemPointerData *tids = palloc(sizeof(ItemPointerData) * (set->n + 1));
	int64	   *takes = palloc(sizeof(int64) * (set->n + 1));
	Numeric    *revs = palloc(sizeof(Numeric) * (set->n + 1));
	HotDebit	w;

	for (int i = 0; i < set->n && left > 0; i++)
	{
		GrantRow   *g = &set->rows[i];
		int64		take = Min(g->remaining, left);

		if (take == 0)
			continue;
		ids[nlines] = g->id;
		tids[nlines] = g->tid;
		takes[nlines] = take;
		revs[nlines] = g->unit_revenue;
		nlines++;
		left -= take;
	}
	if (left > 0)
	{
		ids[nlines] = 0;
		ItemPointerSetInvalid(&tids[nlines]);
		takes[nlines] = left;
		revs[nlines] = MinorToNumeric(0, 0);
		nlines++;
		acct->overdraft = AddMinor(acct->overdraft, left);
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
	w.balance_after = d->after;
	w.minor_unit = MinorToNumeric(1, acct->scale);
	w.nlines = nlines;
	w.grant_ids = ids;
	w.tids = tids;
	w.takes = takes;
	w.unit_revenues = revs;

	memset(res, 0, sizeof(*res));
	res->approved = true;
	res->event_id = HotDebitWrite(&w);
	res->hold_id = req->hold_id;
	res->asset = AssetLookup(acct->asset)->code;
	res->scale = acct->scale;
	res->has_amount = true;
	res->amount = req->amount;
	res->has_balance = true;
	res->balance = d->after;
	OutboxLowBalance(acct, d->available, d->after);
}

/*
 * Decide and, if approved, write a debit (the caller holds the lock and has
 * checked the key).  A decline for funds writes an outbox row.  Returns
 * approved.
 */
bool
DebitApply(Account *acct, DebitRequest *req, TimestampTz now,
		   int64 release_first, WalletResult *res)
{
	Decision	d;
	int64		overdraft_before = acct->overdraft;

	DebitDecide(acct, req, now, release_first, true, &d);
	if (d.decline != NULL)
	{
		if (strcmp(d.decline, "insufficient_funds") == 0)
			OutboxDeclined(acct, d.decline, d.available, req->amount);
		Decline(acct, d.decline, d.available, res);
		return false;
	}
	DebitWrite(acct, req, now, &d, res);
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
	if (PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("occurred_at must not be null")));
	req.occurred_at = PG_GETARG_TIMESTAMPTZ(5);
	req.cost = ArgCost(fcinfo, 6);
	q = QuantityDec(quantity);
	CheckOccurredAt(req.occurred_at);

	SPI_connect();
	pv = PriceFind(customer, meter, req.occurred_at);
	AccountLockByCustomer(customer, pv->asset, &acct);
	if (!Replayed(&acct, key, &req, 0, &res))
	{
		req.price_id = pv->id;
		req.amount = PriceEvaluate(pv, acct.wallet_id, meter, q, req.dims, req.occurred_at, &usage);
		if (DebitApply(&acct, &req, WalletNow(), 0, &res))
			UsageRecord(&usage, acct.wallet_id, q);
	}
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}
