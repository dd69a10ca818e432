/*
 * account.c
 *	  Finding a wallet and locking its balance row.
 *
 * Lock order (DESIGN.md #2): a call locks one balance row, wallet.account for
 * (wallet, asset), and only then reads or writes that pair's grants, holds and
 * events.  The lock is an UPDATE, not SELECT FOR UPDATE: under REPEATABLE READ
 * a concurrent change then raises a serialization failure instead of letting
 * the caller draw from a stale snapshot.
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#define ACCOUNT_COLUMNS \
	"w.id, w.customer, w.status, a.overdraft_limit, a.low_balance, a.max_holds, " \
	"a.overdraft, a.held, a.holds_open, a.caps"

static const char *lock_by_customer_sql =
"UPDATE wallet.account a SET touches = a.touches OPERATOR(pg_catalog.+) 1 "
"  FROM wallet.wallet w "
" WHERE w.customer OPERATOR(pg_catalog.=) $1 AND a.wallet_id OPERATOR(pg_catalog.=) w.id "
"   AND a.asset OPERATOR(pg_catalog.=) $2 "
"RETURNING " ACCOUNT_COLUMNS;

static const char *lock_by_id_sql =
"UPDATE wallet.account a SET touches = a.touches OPERATOR(pg_catalog.+) 1 "
"  FROM wallet.wallet w "
" WHERE a.wallet_id OPERATOR(pg_catalog.=) $1 AND w.id OPERATOR(pg_catalog.=) a.wallet_id "
"   AND a.asset OPERATOR(pg_catalog.=) $2 "
"RETURNING " ACCOUNT_COLUMNS;

static void
ReadAccount(const AssetInfo *asset, Account *acct)
{
	HeapTuple	tup = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	char	   *status;

	acct->wallet_id = SpiGetInt64(tup, desc, 1, &isnull);
	acct->customer = SpiGetText(tup, desc, 2, &isnull);
	status = SpiGetText(tup, desc, 3, &isnull);
	strlcpy(acct->status, status, sizeof(acct->status));
	strlcpy(acct->asset, asset->code, sizeof(acct->asset));
	acct->scale = asset->scale;
	acct->overdraft_limit = SpiGetInt64(tup, desc, 4, &isnull);
	acct->low_balance = SpiGetInt64(tup, desc, 5, &isnull);
	acct->has_low_balance = !isnull;
	acct->max_holds = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	acct->has_max_holds = !isnull;
	acct->overdraft = SpiGetInt64(tup, desc, 7, &isnull);
	acct->held = SpiGetInt64(tup, desc, 8, &isnull);
	acct->holds_open = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
	acct->caps = DatumGetInt32(SPI_getbinval(tup, desc, 10, &isnull));
	acct->locked = true;
}

/* the wallet id of a customer (0 when missing_ok and there is none) */
int64
WalletIdOf(const char *customer, bool missing_ok, char *status_out)
{
	static const Oid argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(customer)};
	bool		isnull;

	WalletExec(PLAN_FIND_WALLET,
			   "SELECT id, status FROM wallet.wallet WHERE customer OPERATOR(pg_catalog.=) $1",
			   1, argtypes, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		if (missing_ok)
			return 0;
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_NO_WALLET),
				 errmsg("no wallet for customer \"%.100s\"", customer),
				 errhint("Create it with wallet_create().")));
	}
	if (status_out)
		strlcpy(status_out, SpiGetText(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull), 16);
	return SpiGetInt64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

/* the balance row of a wallet in an asset did not exist yet: make it */
static void
CreateAccount(int64 wallet_id, const AssetInfo *asset)
{
	static const Oid argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(wallet_id), CStringGetTextDatum(asset->code)};

	WalletExec(PLAN_CREATE_ACCOUNT,
			   "INSERT INTO wallet.account (wallet_id, asset) VALUES ($1, $2) ON CONFLICT DO NOTHING",
			   2, argtypes, values, NULL, false, SPI_OK_INSERT);
}

/* lock the balance row of customer's wallet in asset; WL001 if no wallet */
void
AccountLockByCustomer(const char *customer, const AssetInfo *asset, Account *acct)
{
	static const Oid argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(customer), CStringGetTextDatum(asset->code)};

	WalletExec(PLAN_LOCK_BY_CUSTOMER, lock_by_customer_sql, 2, argtypes, values, NULL,
			   false, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
	{
		CreateAccount(WalletIdOf(customer, false, NULL), asset);
		WalletExec(PLAN_LOCK_BY_CUSTOMER, lock_by_customer_sql, 2, argtypes, values, NULL,
				   false, SPI_OK_UPDATE_RETURNING);
		if (SPI_processed != 1)
			elog(ERROR, "wallet: balance row of \"%s\" in \"%s\" vanished", customer, asset->code);
	}
	ReadAccount(asset, acct);
}

/* lock the balance row of a wallet (known to exist) in asset */
void
AccountLockById(int64 wallet_id, const AssetInfo *asset, Account *acct)
{
	static const Oid argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(wallet_id), CStringGetTextDatum(asset->code)};

	WalletExec(PLAN_LOCK_BY_ID, lock_by_id_sql, 2, argtypes, values, NULL,
			   false, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
	{
		CreateAccount(wallet_id, asset);
		WalletExec(PLAN_LOCK_BY_ID, lock_by_id_sql, 2, argtypes, values, NULL,
				   false, SPI_OK_UPDATE_RETURNING);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_WALLET_NO_WALLET),
					 errmsg("no wallet with id " INT64_FORMAT, wallet_id)));
	}
	ReadAccount(asset, acct);
}

/* write back what a call changed on the (locked) balance row */
void
AccountSave(Account *acct)
{
	static const Oid argtypes[5] = {INT8OID, TEXTOID, INT8OID, INT8OID, INT4OID};
	Datum		values[5];

	values[0] = Int64GetDatum(acct->wallet_id);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = Int64GetDatum(acct->overdraft);
	values[3] = Int64GetDatum(acct->held);
	values[4] = Int32GetDatum(acct->holds_open);
	WalletExec(PLAN_ACCOUNT_UPDATE,
			   "UPDATE wallet.account SET overdraft = $3, held = $4, holds_open = $5 "
			   " WHERE wallet_id OPERATOR(pg_catalog.=) $1 AND asset OPERATOR(pg_catalog.=) $2",
			   5, argtypes, values, NULL, false, SPI_OK_UPDATE);
}
