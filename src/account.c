/*
 * account.c
 *	  Finding a wallet and locking its balance row.
 *
 * Lock order (DESIGN.md #2): a call locks one balance row, wallet.account for
 * (wallet, asset), and only then reads or writes that pair's grants, holds and
 * events.  Under READ COMMITTED the lock is a row lock (FOR NO KEY UPDATE),
 * and everything read under it is read with a fresh snapshot.  Under
 * REPEATABLE READ it is an update (touches + 1), so that a caller whose
 * snapshot is older than a change gets a serialization failure instead of
 * drawing from that snapshot (a READ COMMITTED debit's change shows up the
 * same way, on the grant row or the overdraft it wrote).  It is taken
 * directly on the table (hotpath.c); creating a missing balance row is SQL.
 *
 * wallet_ingest locks many balance rows, each once, with AccountLockMany: in
 * the order it is given (wallet id, then asset), which is the same in every
 * batch, so two batches never wait for each other in a circle.  An UPDATE
 * cannot be ordered; SELECT ... ORDER BY ... FOR NO KEY UPDATE takes the
 * same row lock as the single call, one row after the other in that order
 * (under REPEATABLE READ it fails on a concurrent update of the row, and a
 * batch fails on the grant rows a concurrent READ COMMITTED debit wrote).
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#define ACCOUNT_COLUMNS \
	"w.id, w.customer, w.status, a.overdraft_limit, a.low_balance, a.max_holds, " \
	"a.overdraft, a.held, a.holds_open, a.caps"

/* AccountLockMany: the balance rows of (k.kw, k.ka), locked in the order k.ki */
#define LOCK_MANY_FROM \
	"  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.text[])) " \
	"       WITH ORDINALITY AS k(kw, ka, ki) " \
	"  JOIN wallet.account a ON a.wallet_id OPERATOR(pg_catalog.=) k.kw AND a.asset OPERATOR(pg_catalog.=) k.ka " \
	"  JOIN wallet.wallet w ON w.id OPERATOR(pg_catalog.=) a.wallet_id " \
	" ORDER BY k.ki FOR NO KEY UPDATE OF a"

/*
 * The 1.1 levels of a balance row besides low_balance (alert_back, then
 * alert_until) from columns col and col + 1 of an SPI row.
 */
void
AccountReadLevels11(HeapTuple tup, TupleDesc desc, int col, Account *acct)
{
	bool		isnull;

	acct->alert_back = SpiGetInt64(tup, desc, col, &isnull);
	acct->has_alert_back = !isnull;
	acct->alert_until = DatumGetTimestampTz(SPI_getbinval(tup, desc, col + 1, &isnull));
	acct->has_alert_until = !isnull;
}

/* the balance row without locking it; a wallet without one reads as zeros */
static const char *read_sql =
"SELECT " ACCOUNT_COLUMNS " FROM wallet.wallet w "
"  LEFT JOIN wallet.account a ON a.wallet_id OPERATOR(pg_catalog.=) w.id "
"   AND a.asset OPERATOR(pg_catalog.=) $2 "
" WHERE w.customer OPERATOR(pg_catalog.=) $1";

/* an Account from a row of ACCOUNT_COLUMNS (nulls read as 0) */
static void
ReadAccountRow(HeapTuple tup, TupleDesc desc, const AssetInfo *asset, Account *acct)
{
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
	acct->has_alert_back = false;	/* (AccountLockMany reads them on a 1.1 schema) */
	acct->alert_back = 0;
	acct->has_alert_until = false;
	acct->alert_until = 0;
	acct->max_holds = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	acct->has_max_holds = !isnull;
	acct->overdraft = SpiGetInt64(tup, desc, 7, &isnull);
	acct->held = SpiGetInt64(tup, desc, 8, &isnull);
	acct->holds_open = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
	acct->caps = DatumGetInt32(SPI_getbinval(tup, desc, 10, &isnull));
	acct->locked = true;
	acct->no_holds = 0;			/* HotKeyFind looks a key up among holds too */
}

/* an Account from the first row SPI returned */
static void
ReadAccount(const AssetInfo *asset, Account *acct)
{
	ReadAccountRow(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, asset, acct);
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
			WalletRowSkipped("wallet.account");	/* inserted just above */
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

/*
 * Lock the balance rows (wallet_ids[i], assets[i]) one after the other, in
 * the order given, creating those that do not exist first (in the same order,
 * before any is locked); accts[i] is the row of pair i.  Every wallet must
 * exist.
 */
void
AccountLockMany(int n, const int64 *wallet_ids, const AssetInfo *const *assets, Account *accts)
{
	static const Oid argtypes[2] = {INT8ARRAYOID, TEXTARRAYOID};
	const char **codes = palloc(sizeof(char *) * Max(n, 1));
	Datum		values[2];
	SPITupleTable *tt;
	int			icol;
	bool		v11;

	for (int i = 0; i < n; i++)
		codes[i] = assets[i]->code;
	values[0] = Int8ArrayDatum(wallet_ids, n);
	values[1] = TextArrayDatum(codes, n);
	WalletExec(PLAN_CREATE_ACCOUNTS,
			   "INSERT INTO wallet.account (wallet_id, asset) "
			   "SELECT k.kw, k.ka "
			   "  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.text[])) "
			   "       WITH ORDINALITY AS k(kw, ka, ki) "
			   " WHERE NOT EXISTS (SELECT FROM wallet.account a WHERE a.wallet_id OPERATOR(pg_catalog.=) k.kw "
			   "                      AND a.asset OPERATOR(pg_catalog.=) k.ka) "
			   " ORDER BY k.ki "
			   "ON CONFLICT DO NOTHING",
			   2, argtypes, values, NULL, false, SPI_OK_INSERT);
	/* 1.1: with the levels besides low_balance (another session may have set an alert on a new row) */
	v11 = WalletSchemaVersion() >= 11;
	if (v11)
		WalletExec(PLAN_LOCK_MANY11,
				   "SELECT " ACCOUNT_COLUMNS ", a.alert_back, a.alert_until, k.ki " LOCK_MANY_FROM,
				   2, argtypes, values, NULL, false, SPI_OK_SELECT);
	else
		WalletExec(PLAN_LOCK_MANY, "SELECT " ACCOUNT_COLUMNS ", k.ki " LOCK_MANY_FROM,
				   2, argtypes, values, NULL, false, SPI_OK_SELECT);
	tt = SPI_tuptable;
	if (SPI_processed != (uint64) n)
		WalletRowSkipped("wallet.account");	/* every missing row was inserted just above */
	icol = tt->tupdesc->natts;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		i = SpiGetInt64(tt->vals[r], tt->tupdesc, icol, &isnull) - 1;

		if (i != (int64) r)
			elog(ERROR, "wallet: balance rows locked out of order");
		ReadAccountRow(tt->vals[r], tt->tupdesc, assets[i], &accts[i]);
		if (v11)
			AccountReadLevels11(tt->vals[r], tt->tupdesc, icol - 2, &accts[i]);
	}
	SPI_freetuptable(tt);
}

/*
 * Read the balance row of customer's wallet in asset without locking it (a
 * missing row reads as zeros: nothing granted, no limits); WL001 if no wallet.
 */
void
AccountRead(const char *customer, const AssetInfo *asset, Account *acct)
{
	static const Oid argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(customer), CStringGetTextDatum(asset->code)};

	WalletExec(PLAN_READ_ACCOUNT, read_sql, 2, argtypes, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_NO_WALLET),
				 errmsg("no wallet for customer \"%s\"", customer),
				 errhint("Create it with wallet_create().")));
	ReadAccount(asset, acct);
}

/*
 * write back what a call changed on the (locked) balance row: directly
 * (hotpath.c), or by UPDATE when wallet.account has an UPDATE trigger
 */
void
AccountSave(Account *acct)
{
	static const Oid argtypes[5] = {INT8OID, TEXTOID, INT8OID, INT8OID, INT4OID};
	Datum		values[5];

	if (HotAccountSave(acct))
		return;

	values[0] = Int64GetDatum(acct->wallet_id);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = Int64GetDatum(acct->overdraft);
	values[3] = Int64GetDatum(acct->held);
	values[4] = Int32GetDatum(acct->holds_open);
	WalletExec(PLAN_ACCOUNT_UPDATE,
			   "UPDATE wallet.account SET overdraft = $3, held = $4, holds_open = $5 "
			   " WHERE wallet_id OPERATOR(pg_catalog.=) $1 AND asset OPERATOR(pg_catalog.=) $2",
			   5, argtypes, values, NULL, false, SPI_OK_UPDATE);
	WalletExpectRows(1, "wallet.account");
}
