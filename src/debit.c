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
 *		updates and the ledger lines in one statement.
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

static const char *idempotency_sql =
"SELECT 'event', e.id, e.meter, e.quantity, e.dimensions, e.asset, e.amount, e.balance_after, e.hold_id "
"  FROM wallet.event e "
" WHERE e.wallet_id OPERATOR(pg_catalog.=) $1 AND e.idempotency_key OPERATOR(pg_catalog.=) $2 "
"UNION ALL "
"SELECT 'hold', h.id, NULL, NULL, NULL, h.asset, h.amount, h.balance_after, h.id "
"  FROM wallet.hold h "
" WHERE h.wallet_id OPERATOR(pg_catalog.=) $1 AND h.idempotency_key OPERATOR(pg_catalog.=) $2";

static const char *write_debit_sql =
"WITH d AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($14::pg_catalog.int8[]), "
"                                    pg_catalog.unnest($15::pg_catalog.int8[]), "
"                                    pg_catalog.unnest($16::pg_catalog.numeric[])) AS d(grant_id, take, unit_revenue)), "
"e AS (INSERT INTO wallet.event (wallet_id, idempotency_key, meter, quantity, dimensions, occurred_at, "
"                                recorded_at, asset, amount, price_id, cost, revenue, hold_id, balance_after) "
"      SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
"             coalesce(pg_catalog.sum(d.take OPERATOR(pg_catalog.*) d.unit_revenue), 0) "
"               OPERATOR(pg_catalog.*) $17, $12, $13 FROM d "
"      RETURNING id), "
"g AS (UPDATE wallet.grant_block b SET remaining = b.remaining OPERATOR(pg_catalog.-) d.take "
"        FROM d WHERE b.id OPERATOR(pg_catalog.=) d.grant_id), "
"l AS (INSERT INTO wallet.line (at, wallet_id, asset, grant_id, event_id, hold_id, kind, amount) "
"      SELECT $7, $1, $8, d.grant_id, e.id, $12, 'debit', OPERATOR(pg_catalog.-) d.take FROM d, e) "
"SELECT id FROM e";

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
	static const Oid argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *kind;
	char	   *meter;
	char	   *asset;
	int64		amount;
	const AssetInfo *stored_asset;

	values[0] = Int64GetDatum(acct->wallet_id);
	values[1] = CStringGetTextDatum(key);
	WalletExec(PLAN_IDEMPOTENCY, idempotency_sql, 2, argtypes, values, NULL, !acct->locked, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
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
 * Spend caps are checked only when the balance row says there are some
 * (acct->caps), so a wallet without caps pays no extra query.
 */
void
DebitDecide(Account *acct, const DebitRequest *req, TimestampTz now,
			int64 release_first, bool write, Decision *d)
{
	GrantsLoad(acct, now, write, &d->set);
	d->available = Available(acct, &d->set, now, release_first);
	d->caps.n = 0;
	d->caps.blocked = -1;
	d->decline = StatusDecline(acct);
	/* a cap says no before the balance does: a top-up would not help */
	if (d->decline == NULL && acct->caps > 0 &&
		!CapCheck(acct, req->dims, req->amount, now, &d->caps))
		d->decline = "spend_cap";
	if (d->decline == NULL && SubMinor(d->available, req->amount) < -acct->overdraft_limit)
		d->decline = "insufficient_funds";
	d->after = d->decline ? d->available : d->available - req->amount;
}

/*
 * Write an approved debit: draw in drawdown order (what the grants cannot
 * cover is overdraft) and write the event, the grant updates and the ledger
 * lines in one statement.  The caller saves the balance row if it changed
 * (DebitApply does; a capture saves it with the hold).
 */
static void
DebitWrite(Account *acct, const DebitRequest *req, TimestampTz now, Decision *d,
		   WalletResult *res)
{
	static const Oid argtypes[17] = {INT8OID, TEXTOID, TEXTOID, NUMERICOID, JSONBOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, INT8OID, INT8OID, NUMERICOID, INT8OID,
	INT8OID, INT8ARRAYOID, INT8ARRAYOID, NUMERICARRAYOID, NUMERICOID};
	GrantSet   *set = &d->set;
	int64		left = req->amount;
	int			nlines = 0;
	Datum	   *ids = palloc(sizeof(Datum) * (set->n + 1));
	bool	   *idnulls = palloc0(sizeof(bool) * (set->n + 1));
	Datum	   *takes = palloc(sizeof(Datum) * (set->n + 1));
	Datum	   *revs = palloc(sizeof(Datum) * (set->n + 1));
	Datum		values[17];
	char		nulls[17];
	bool		isnull;
	int			dims[1];
	int			lbs[1] = {1};
	Datum		zero = NumericGetDatum(MinorToNumeric(0, 0));
	int64		event_id;

	for (int i = 0; i < set->n && left > 0; i++)
	{
		GrantRow   *g = &set->rows[i];
		int64		take = Min(g->remaining, left);

		if (take == 0)
			continue;
		ids[nlines] = Int64GetDatum(g->id);
		takes[nlines] = Int64GetDatum(take);
		/* only value drawn from paid grants is revenue */
		revs[nlines] = g->category_rank == 2 ? NumericGetDatum(g->unit_revenue) : zero;
		nlines++;
		left -= take;
	}
	if (left > 0)
	{
		ids[nlines] = (Datum) 0;
		idnulls[nlines] = true;
		takes[nlines] = Int64GetDatum(left);
		revs[nlines] = zero;
		nlines++;
		acct->overdraft = AddMinor(acct->overdraft, left);
	}

	dims[0] = nlines;
	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(acct->wallet_id);
	values[1] = req->key ? CStringGetTextDatum(req->key) : (Datum) 0;
	nulls[1] = req->key ? ' ' : 'n';
	values[2] = req->meter ? CStringGetTextDatum(req->meter) : (Datum) 0;
	nulls[2] = req->meter ? ' ' : 'n';
	values[3] = req->quantity ? NumericGetDatum(req->quantity) : (Datum) 0;
	nulls[3] = req->quantity ? ' ' : 'n';
	values[4] = req->dims ? JsonbPGetDatum(req->dims) : (Datum) 0;
	nulls[4] = req->dims ? ' ' : 'n';
	values[5] = TimestampTzGetDatum(req->occurred_at);
	values[6] = TimestampTzGetDatum(now);
	values[7] = CStringGetTextDatum(acct->asset);
	values[8] = Int64GetDatum(req->amount);
	values[9] = Int64GetDatum(req->price_id);
	nulls[9] = req->price_id ? ' ' : 'n';
	values[10] = req->cost ? NumericGetDatum(req->cost) : (Datum) 0;
	nulls[10] = req->cost ? ' ' : 'n';
	values[11] = Int64GetDatum(req->hold_id);
	nulls[11] = req->hold_id ? ' ' : 'n';
	values[12] = Int64GetDatum(d->after);
	values[13] = PointerGetDatum(construct_md_array(ids, idnulls, 1, dims, lbs, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[14] = PointerGetDatum(construct_array(takes, nlines, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[15] = PointerGetDatum(construct_array(revs, nlines, NUMERICOID, -1, false, TYPALIGN_INT));
	values[16] = NumericGetDatum(MinorToNumeric(1, acct->scale));
	WalletExec(PLAN_WRITE_DEBIT, write_debit_sql, 17, argtypes, values, nulls, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "wallet: event insert returned no id");
	event_id = SpiGetInt64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
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
	int64		overdraft_before = acct->overdraft;

	DebitDecide(acct, req, now, release_first, true, &d);
	if (d.decline != NULL)
	{
		/* a declined capture leaves its hold open: it still counts */
		d.available = SubMinor(d.available, release_first);
		if (strcmp(d.decline, "insufficient_funds") == 0)
			OutboxDeclined(acct, d.decline, d.available, req->amount);
		else if (strcmp(d.decline, "spend_cap") == 0)
			CapDeclined(acct, &d.caps, d.available, req->amount);
		Decline(acct, d.decline, d.available, res);
		return false;
	}
	DebitWrite(acct, req, now, &d, res);
	/* a capture: the hold already counted against available before it */
	OutboxLowBalance(acct, SubMinor(d.available, release_first), d.after);
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
	AccountLockByCustomer(customer, &pv->asset, &acct);
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
