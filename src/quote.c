/*
 * quote.c
 *	  wallet_quote: what wallet_authorize_debit would charge now, and whether
 *	  it would approve, without changing or locking anything.
 *
 * The quote goes through the debit's own steps, in the same order and with the
 * same checks: the price version in force at occurred_at (customer, plan,
 * default), the tier position of the usage counter, the rounding, and then
 * DebitDecide with write = false, so status, spend caps, open holds and the
 * overdraft limit decide exactly as they would for the debit.  The balance row
 * is read with a plain SELECT (AccountRead): no row lock, and since nothing is
 * written the transaction does not even get an xid.  Resets that time has made
 * are applied to what is read, not written down.
 */
#include "wallet.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(wallet_quote);

/*
 * wallet_quote(customer, meter, quantity, dimensions, occurred_at)
 *	  RETURNS TABLE (asset, amount, price_id, balance, would_approve)
 */
Datum
wallet_quote(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *customer = ArgCString(fcinfo, 0, "customer");
	char	   *meter = ArgCString(fcinfo, 1, "meter");
	Numeric		quantity = ArgNumeric(fcinfo, 2, "quantity");
	DebitRequest req = {0};
	const PriceVersion *pv;
	Account		acct;
	Decision	d;
	UsageToRecord usage;
	Dec			q;
	Datum		values[5];
	bool		nulls[5] = {false};

	req.customer = customer;
	req.meter = meter;
	req.quantity = quantity;
	req.dims = ArgDimensions(fcinfo, 3);
	req.occurred_at = ArgOccurredAt(fcinfo, 4);
	q = QuantityDec(quantity);
	CheckOccurredAt(req.occurred_at);

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	pv = PriceFind(customer, meter, req.occurred_at);
	AccountRead(customer, AssetLookup(pv->asset.code), &acct);
	req.price_id = pv->id;
	req.amount = PriceEvaluate(pv, acct.wallet_id, meter, q, req.dims, req.occurred_at, &usage);
	DebitDecide(&acct, &req, WalletNow(), 0, false, &d);
	SPI_finish();

	values[0] = CStringGetTextDatum(pv->asset.code);
	values[1] = NumericGetDatum(MinorToNumeric(req.amount, pv->asset.scale));
	values[2] = Int64GetDatum(req.price_id);
	values[3] = NumericGetDatum(MinorToNumeric(d.available, pv->asset.scale));
	values[4] = BoolGetDatum(d.decline == NULL);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
