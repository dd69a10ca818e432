/*
 * refund.c
 *	  What a refund gives back to the usage counters of the price that
 *	  priced the event (1.1).
 *
 * A priced event added to counters (price.c): the amount it charged to the
 * max_per_period counter of its period, and its (transformed) quantity to the
 * usage counter of a graduated or volume rule, or a package's free units.
 * wallet_refund calls wallet._usage_giveback once the refund is written, with
 * the balance row locked (as every debit that reads those counters does):
 *
 *	- every max_per_period counter the event was counted in gets back the
 *	  amount refunded: refunds in parts add up to what the event charged, so
 *	  the period's spend is net of refunds;
 *	- the refund that completes the event (a whole refund, or the last of
 *	  refunds in parts) takes its quantity off the usage counters it added to;
 *	  a partial refund leaves the usage, as wallet_usage counts it.
 *
 * The counters and what the event added to its usage counters are found by
 * walking its price's rule as pricing it did (its version, quantity,
 * dimensions and occurred_at: price.c, PriceCounterKeys), without pricing it
 * again: at today's usage the amounts may differ, or not fit.  A counter
 * of a period already pruned is not there and needs nothing.  No counter goes
 * below 0.
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(wallet_usage_giveback);

static void
CounterTakeOff(int64 wallet_id, const CounterAdd *a, Dec off)
{
	static const Oid argtypes[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, NUMERICOID};
	Datum		values[6];

	/* the 1.1 key (meter, counter): this runs only on the 1.1 schema */
	if (a->counter == NULL)
		elog(ERROR, "wallet: a refund found a counter of the 1.0 schema");
	values[0] = Int64GetDatum(wallet_id);
	values[1] = CStringGetTextDatum(a->meter);
	values[2] = CStringGetTextDatum(a->counter);
	values[3] = CStringGetTextDatum(a->period);
	values[4] = TimestampTzGetDatum(a->period_start);
	values[5] = NumericGetDatum(DecToNumeric(off));
	WalletExec(PLAN_USAGE_GIVEBACK,
			   "UPDATE wallet.usage_counter u "
			   "   SET quantity = GREATEST(u.quantity OPERATOR(pg_catalog.-) $6, 0::pg_catalog.numeric) "
			   " WHERE u.wallet_id OPERATOR(pg_catalog.=) $1 AND u.meter OPERATOR(pg_catalog.=) $2 "
			   "   AND u.counter OPERATOR(pg_catalog.=) $3 "
			   "   AND u.period OPERATOR(pg_catalog.=) $4 AND u.period_start OPERATOR(pg_catalog.=) $5",
			   6, argtypes, values, NULL, false, SPI_OK_UPDATE);
}

/*
 * wallet._usage_giveback(event_id, amount): after a refund of amount (minor
 * units, > 0) of the event, written already (wallet.event.refunded includes
 * it); the caller holds the event's balance row lock.
 */
Datum
wallet_usage_giveback(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[1] = {INT8OID};
	Datum		values[1];
	int64		event_id;
	int64		amount;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int64		wallet_id;
	char	   *meter;
	int64		price_id;
	Numeric		quantity;
	Jsonb	   *dims = NULL;
	TimestampTz occurred_at;
	int64		charged;
	int64		refunded;
	const PriceVersion *pv;
	UsageToRecord usage;
	bool		whole;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_id and amount must not be null")));
	event_id = PG_GETARG_INT64(0);
	amount = PG_GETARG_INT64(1);
	if (amount <= 0)
		PG_RETURN_VOID();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "wallet: SPI_connect failed");
	values[0] = Int64GetDatum(event_id);
	WalletExec(PLAN_USAGE_GIVEBACK_EVENT,
			   "SELECT wallet_id, meter, price_id, quantity, dimensions, occurred_at, amount, refunded "
			   "  FROM wallet.event WHERE id OPERATOR(pg_catalog.=) $1",
			   1, argtypes, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_NOT_FOUND),
				 errmsg("no event with id " INT64_FORMAT, event_id)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	wallet_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	meter = SPI_getvalue(tup, desc, 2);
	price_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	if (meter == NULL || isnull)
	{
		/* wallet_debit's events have no price and counted nowhere */
		SPI_finish();
		PG_RETURN_VOID();
	}
	quantity = DatumGetNumeric(SPI_getbinval(tup, desc, 4, &isnull));
	if (isnull)
	{
		SPI_finish();
		PG_RETURN_VOID();
	}
	{
		Datum		d = SPI_getbinval(tup, desc, 5, &isnull);

		if (!isnull)
			dims = DatumGetJsonbP(d);
	}
	occurred_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
	charged = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
	refunded = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
	whole = refunded == charged;

	pv = PriceVersionById(meter, price_id);
	if (pv == NULL)
	{
		SPI_finish();
		PG_RETURN_VOID();
	}
	/* the counters its price adds to, and what it adds to the usage counters */
	PriceCounterKeys(pv, wallet_id, meter, QuantityDec(quantity), dims, occurred_at, &usage);
	for (int i = 0; i < usage.n; i++)
	{
		const CounterAdd *a = &usage.adds[i];

		if (a->charged)
		{
			Dec			back;

			back.v = amount;
			back.scale = pv->asset.scale;
			CounterTakeOff(wallet_id, a, back);
		}
		else if (whole && a->add.v != 0)
			CounterTakeOff(wallet_id, a, a->add);
	}
	SPI_finish();
	PG_RETURN_VOID();
}
