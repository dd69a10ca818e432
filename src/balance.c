/*
 * balance.c
 *	  Reading balances: wallet_balance, wallet_balances.
 *
 * Reads take no lock and write nothing: resets and expiries are applied to
 * what is read, as of the transaction's time.
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(wallet_balance);
PG_FUNCTION_INFO_V1(wallet_balances);

typedef struct BalanceRow
{
	int64		available;
	int64		held;
	int64		granted;
	int64		overdraft;
} BalanceRow;

/* the balance rows of a wallet (one asset, or all when asset is NULL) */
static SPITupleTable *
ReadAccounts(int64 wallet_id, const char *asset, uint64 *n)
{
	static const Oid argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = "  ";

	values[0] = Int64GetDatum(wallet_id);
	values[1] = asset ? CStringGetTextDatum(asset) : (Datum) 0;
	nulls[1] = asset ? ' ' : 'n';
	WalletExec(PLAN_READ_ACCOUNTS,
			   "SELECT asset, overdraft, held, holds_open FROM wallet.account "
			   " WHERE wallet_id OPERATOR(pg_catalog.=) $1 "
			   "   AND ($2::pg_catalog.text IS NULL OR asset OPERATOR(pg_catalog.=) $2) ORDER BY asset",
			   2, argtypes, values, nulls, true, SPI_OK_SELECT);
	*n = SPI_processed;
	return SPI_tuptable;
}

/* the balance of one balance row, as of now */
static void
BalanceOf(int64 wallet_id, HeapTuple tup, TupleDesc desc, TimestampTz now, BalanceRow *b,
		  const AssetInfo **asset_out)
{
	Account		acct = {0};
	GrantSet	set;
	bool		isnull;
	const AssetInfo *asset = AssetLookup(SpiGetText(tup, desc, 1, &isnull));

	acct.wallet_id = wallet_id;
	strlcpy(acct.asset, asset->code, sizeof(acct.asset));
	acct.scale = asset->scale;
	acct.overdraft = SpiGetInt64(tup, desc, 2, &isnull);
	acct.held = SpiGetInt64(tup, desc, 3, &isnull);
	acct.holds_open = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
	GrantsLoad(&acct, now, false, &set);
	b->held = set.held;
	b->overdraft = acct.overdraft;
	b->available = Available(&acct, &set, now, 0);

	/*
	 * what grants hold: the live ones' remaining, and what open holds still
	 * reserve on grants expired or voided since (it leaves at the release),
	 * so that available = granted - held - overdraft always
	 */
	b->granted = AddMinor(AddMinor(b->available, b->held), b->overdraft);
	*asset_out = asset;
}

/* wallet_balance(customer, asset): available now */
Datum
wallet_balance(PG_FUNCTION_ARGS)
{
	char	   *customer = ArgCString(fcinfo, 0, "customer");
	char	   *code = ArgCString(fcinfo, 1, "asset");
	const AssetInfo *asset;
	SPITupleTable *tt;
	uint64		n;
	int64		wallet_id;
	BalanceRow	b = {0};

	SPI_connect();
	asset = AssetLookup(code);
	wallet_id = WalletIdOf(customer, false, NULL);
	tt = ReadAccounts(wallet_id, asset->code, &n);
	if (n > 0)
		BalanceOf(wallet_id, tt->vals[0], tt->tupdesc, WalletNow(), &b, &asset);
	SPI_finish();
	PG_RETURN_NUMERIC(MinorToNumeric(b.available, asset->scale));
}

/* wallet_balances(customer): every asset the wallet has a balance in */
Datum
wallet_balances(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *customer = ArgCString(fcinfo, 0, "customer");
	SPITupleTable *tt;
	uint64		n;
	int64		wallet_id;
	TimestampTz now = WalletNow();

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	wallet_id = WalletIdOf(customer, false, NULL);
	tt = ReadAccounts(wallet_id, NULL, &n);
	for (uint64 i = 0; i < n; i++)
	{
		BalanceRow	b;
		const AssetInfo *asset;
		Datum		values[5];
		bool		nulls[5] = {false};

		BalanceOf(wallet_id, tt->vals[i], tt->tupdesc, now, &b, &asset);
		values[0] = CStringGetTextDatum(asset->code);
		values[1] = NumericGetDatum(MinorToNumeric(b.available, asset->scale));
		values[2] = NumericGetDatum(MinorToNumeric(b.held, asset->scale));
		values[3] = NumericGetDatum(MinorToNumeric(b.granted, asset->scale));
		values[4] = NumericGetDatum(MinorToNumeric(b.overdraft, asset->scale));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
