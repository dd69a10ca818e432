/*
 * account.c
 *	  Finding a wallet and locking its balance row.
 *
 * Lock order (DESIGN.md #2): a call locks one balance row, wallet.account for
 * (wallet, asset), and only then reads or writes that pair's grants, holds and
 * events.  The lock is an update (touches + 1), not only a row lock: under
 * REPEATABLE READ a concurrent change then raises a serialization failure
 * instead of letting the caller draw from a stale snapshot.  It is taken
 * directly on the table (hotpath.c); creating a missing balance row is SQL.
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

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
				 errmsg("no wallet for customer \"%s\"", customer),
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
	HotLockResult r = HotAccountLock(customer, 0, asset, acct);

	if (r == HOT_NO_WALLET)
	{
		WalletIdOf(customer, false, NULL);	/* WL001 */
		elog(ERROR, "wallet: wallet of \"%s\" vanished", customer);
	}
	if (r == HOT_NO_ACCOUNT)
	{
		CreateAccount(acct->wallet_id, asset);
		if (HotAccountLock(customer, 0, asset, acct) != HOT_LOCKED)
			elog(ERROR, "wallet: balance row of \"%s\" in \"%s\" vanished", customer, asset->code);
	}
}

/* lock the balance row of a wallet (known to exist) in asset */
void
AccountLockById(int64 wallet_id, const AssetInfo *asset, Account *acct)
{
	HotLockResult r = HotAccountLock(NULL, wallet_id, asset, acct);

	if (r == HOT_NO_ACCOUNT)
	{
		CreateAccount(wallet_id, asset);
		r = HotAccountLock(NULL, wallet_id, asset, acct);
	}
	if (r != HOT_LOCKED)
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_NO_WALLET),
				 errmsg("no wallet with id " INT64_FORMAT, wallet_id)));
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
