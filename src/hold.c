/*
 * hold.c
 *	  Two-phase debits: wallet_hold, wallet_capture, wallet_release.
 *
 * A hold reserves value (it counts against available) until it is captured,
 * released, or its ttl passes.  An expired hold stops counting at once, at
 * read time; wallet_sweep writes its status down later.  A hold resolves once:
 * capturing or releasing a hold that is not open is WL005.
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(wallet_hold);
PG_FUNCTION_INFO_V1(wallet_capture);
PG_FUNCTION_INFO_V1(wallet_release);

typedef struct HoldRow
{
	int64		id;
	int64		wallet_id;
	const AssetInfo *asset;
	int64		amount;
	char		status[16];
	TimestampTz expires_at;
} HoldRow;

/* read a hold; WL007 when there is no such hold */
static void
HoldGet(int64 hold_id, HoldRow *h)
{
	static const Oid argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(hold_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

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
	h->id = hold_id;
	h->wallet_id = SpiGetInt64(tup, desc, 1, &isnull);
	h->asset = AssetLookup(SpiGetText(tup, desc, 2, &isnull));
	h->amount = SpiGetInt64(tup, desc, 3, &isnull);
	strlcpy(h->status, SpiGetText(tup, desc, 4, &isnull), sizeof(h->status));
	h->expires_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
}

/*
 * Find a hold and lock its balance row, then read the hold again under the
 * lock: it must still be open.
 */
static void
HoldLockOpen(int64 hold_id, TimestampTz now, HoldRow *h, Account *acct)
{
	HoldGet(hold_id, h);
	AccountLockById(h->wallet_id, h->asset, acct);
	HoldGet(hold_id, h);
	if (strcmp(h->status, "open") != 0 || h->expires_at <= now)
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_HOLD_CLOSED),
				 errmsg("hold " INT64_FORMAT " is not open", hold_id),
				 errdetail("It is %s.", strcmp(h->status, "open") == 0 ? "expired" : h->status)));
}

/* close an open hold: status, a release line, the balance row */
static void
HoldClose(Account *acct, const HoldRow *h, const char *status, int64 event_id, TimestampTz now)
{
	static const Oid argtypes[4] = {INT8OID, TEXTOID, TIMESTAMPTZOID, INT8OID};
	Datum		values[4];
	char		nulls[4] = "    ";

	values[0] = Int64GetDatum(h->id);
	values[1] = CStringGetTextDatum(status);
	values[2] = TimestampTzGetDatum(now);
	values[3] = Int64GetDatum(event_id);
	nulls[3] = event_id ? ' ' : 'n';
	WalletExec(PLAN_HOLD_CLOSE,
			   "UPDATE wallet.hold SET status = $2, closed_at = $3, event_id = $4 "
			   " WHERE id OPERATOR(pg_catalog.=) $1",
			   4, argtypes, values, nulls, false, SPI_OK_UPDATE);
	WalletExpectRows(1, "wallet.hold");
	LineWrite(acct, now, 0, event_id, h->id, "release", h->amount);
	acct->held = SubMinor(acct->held, h->amount);
	acct->holds_open--;
	AccountSave(acct);
}

/* wallet_hold(customer, asset, amount, idempotency_key, ttl) */
Datum
wallet_hold(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[7] = {INT8OID, TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID,
	TIMESTAMPTZOID, INT8OID};
	char	   *customer = ArgCString(fcinfo, 0, "customer");
	char	   *code = ArgCString(fcinfo, 1, "asset");
	Numeric		amount_arg = ArgNumeric(fcinfo, 2, "amount");
	char	   *key = ArgKey(fcinfo, 3);
	Interval   *ttl;
	TimestampTz now = WalletNow();
	TimestampTz expires_at;
	const AssetInfo *asset;
	Account		acct;
	WalletResult res;
	int64		amount;

	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must not be null")));
	ttl = PG_GETARG_INTERVAL_P(4);
	if (
		(expires_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															   TimestampTzGetDatum(now),
															   IntervalPGetDatum(ttl)))) <= now)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must be a positive interval")));

	SPI_connect();
	asset = AssetLookup(code);
	amount = AmountToMinor(amount_arg, asset->scale, asset->code, "amount");
	AccountLockByCustomer(customer, asset, &acct);
	if (!Replayed(&acct, key, NULL, amount, &res))
	{
		GrantSet	set;
		int32		open_holds;
		int64		held;
		int64		available;
		const char *decline;

		GrantsLoad(&acct, now, true, &set);
		held = LiveHeld(&acct, now, &open_holds);
		available = SubMinor(SubMinor(set.total, held), acct.overdraft);
		decline = StatusDecline(&acct);
		if (decline == NULL && acct.has_max_holds && open_holds >= acct.max_holds)
			decline = "hold_limit";
		if (decline == NULL && SubMinor(available, amount) < -acct.overdraft_limit)
		{
			decline = "insufficient_funds";
			OutboxDeclined(&acct, decline, available, amount);
		}
		if (decline)
			Decline(&acct, decline, available, &res);
		else
		{
			Datum		values[7];
			bool		isnull;

			values[0] = Int64GetDatum(acct.wallet_id);
			values[1] = CStringGetTextDatum(asset->code);
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
			WalletExpectRows(1, "wallet.hold or wallet.line_stored");
			memset(&res, 0, sizeof(res));
			res.approved = true;
			res.hold_id = SpiGetInt64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			res.asset = asset->code;
			res.scale = asset->scale;
			res.has_amount = true;
			res.amount = amount;
			res.has_balance = true;
			res.balance = available - amount;
			acct.held = AddMinor(acct.held, amount);
			acct.holds_open++;
			AccountSave(&acct);
			OutboxLowBalance(&acct, available, available - amount);
		}
	}
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}

/* wallet_capture(hold_id, meter, quantity, dimensions, cost) */
Datum
wallet_capture(PG_FUNCTION_ARGS)
{
	int64		hold_id;
	char	   *meter = ArgCString(fcinfo, 1, "meter");
	Numeric		quantity = ArgNumeric(fcinfo, 2, "quantity");
	TimestampTz now = WalletNow();
	DebitRequest req = {0};
	const PriceVersion *pv;
	HoldRow		h;
	Account		acct;
	WalletResult res;
	Dec			q;
	UsageToRecord usage;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hold_id must not be null")));
	hold_id = PG_GETARG_INT64(0);
	req.meter = meter;
	req.quantity = quantity;
	req.dims = ArgDimensions(fcinfo, 3);
	req.cost = ArgCost(fcinfo, 4);
	req.occurred_at = now;
	req.hold_id = hold_id;
	q = QuantityDec(quantity);

	SPI_connect();
	HoldLockOpen(hold_id, now, &h, &acct);
	req.customer = acct.customer;
	pv = PriceFind(acct.customer, meter, now);
	if (strcmp(pv->asset.code, h.asset->code) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meter \"%.100s\" is priced in \"%s\", hold " INT64_FORMAT " is in \"%s\"",
						meter, pv->asset.code, hold_id, h.asset->code)));
	req.price_id = pv->id;
	req.amount = PriceEvaluate(pv, acct.wallet_id, meter, q, req.dims, now, &usage);
	if (DebitApply(&acct, &req, now, h.amount, &res))
	{
		UsageRecord(&usage, acct.wallet_id, q);
		HoldClose(&acct, &h, "captured", res.event_id, now);
	}
	else
		res.hold_id = hold_id;
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}

/* wallet_release(hold_id) */
Datum
wallet_release(PG_FUNCTION_ARGS)
{
	int64		hold_id;
	TimestampTz now = WalletNow();
	HoldRow		h;
	Account		acct;
	GrantSet	set;
	WalletResult res = {0};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hold_id must not be null")));
	hold_id = PG_GETARG_INT64(0);

	SPI_connect();
	HoldLockOpen(hold_id, now, &h, &acct);
	HoldClose(&acct, &h, "released", 0, now);
	GrantsLoad(&acct, now, true, &set);
	res.approved = true;
	res.hold_id = hold_id;
	res.asset = h.asset->code;
	res.scale = h.asset->scale;
	res.has_amount = true;
	res.amount = h.amount;
	res.has_balance = true;
	res.balance = Available(&acct, &set, now, 0);
	SPI_finish();
	PG_RETURN_DATUM(WalletResultDatum(fcinfo, &res));
}
