/*
 * alert.c
 *	  The top-up loop on the hot path: alerts, recharges, declined notices.
 *
 * From wallet 1.1 the alerts and the recharge rule of a balance row are kept
 * in SQL (wallet--1.0--1.1.sql, "top-up loop"), and wallet.account.low_balance
 * holds the level a debit compares available with, alert_back and
 * alert_until the two that say when value or a month came back by time
 * alone (outbox.c).  A debit past one of them calls wallet._alert_eval,
 * which writes the rows and stores the next levels; every other debit pays
 * those comparisons.  A declined row is written at most once per wallet,
 * asset and reason per wallet.decline_notice_interval.
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

static char *outbox_retention_text = NULL;
static char *decline_notice_interval_text = NULL;

/* the settings of the outbox (called from _PG_init) */
void
AlertInit(void)
{
	DefineCustomStringVariable("wallet.outbox_retention",
							   "How long wallet_sweep keeps acked outbox rows.",
							   NULL,
							   &outbox_retention_text, "30 days", PGC_SUSET, 0,
							   WalletCheckInterval, NULL, NULL);
	DefineCustomStringVariable("wallet.decline_notice_interval",
							   "At most one declined outbox row per wallet, asset and reason in this interval.",
							   NULL,
							   &decline_notice_interval_text, "1 minute", PGC_SUSET, 0,
							   WalletCheckInterval, NULL, NULL);
}

/*
 * A debit or hold of a 1.1 balance row (the caller holds its lock) took
 * available to available (minor units), below low_balance, or from *before
 * at or above alert_back, or at or after alert_until (outbox.c):
 * wallet._alert_eval writes what the alerts and the recharge call for (the
 * alerts *before is at or above recover first), and acct gets the next
 * levels.
 */
void
AlertEval(Account *acct, int64 available, const int64 *before)
{
	static const Oid argtypes[4] = {INT8OID, TEXTOID, INT8OID, INT8OID};
	Datum		values[4];
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	values[0] = Int64GetDatum(acct->wallet_id);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = Int64GetDatum(available);
	if (before != NULL)
	{
		values[3] = Int64GetDatum(*before);
		WalletExec(PLAN_ALERT_EVAL_BACK,
				   "SELECT e.level, e.back, e.until FROM wallet._alert_eval($1, $2, $3, $4) e",
				   4, argtypes, values, NULL, false, SPI_OK_SELECT);
	}
	else
		WalletExec(PLAN_ALERT_EVAL,
				   "SELECT e.level, e.back, e.until FROM wallet._alert_eval($1, $2, $3) e",
				   3, argtypes, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "wallet: wallet._alert_eval returned " UINT64_FORMAT " rows", SPI_processed);
	/* the next levels, for the next debit of a batch under the same lock */
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	acct->low_balance = SpiGetInt64(tup, desc, 1, &isnull);
	acct->has_low_balance = !isnull;
	AccountReadLevels11(tup, desc, 2, acct);
}

/*
 * A release raised available (minor units) of a 1.1 balance row (the caller
 * holds its lock): alerts below it may recover.  Not on the debit path.
 */
void
AlertRaised(const Account *acct, int64 available)
{
	static const Oid argtypes[3] = {INT8OID, TEXTOID, INT8OID};
	Datum		values[3];

	if (WalletSchemaVersion() < 11)
		return;
	values[0] = Int64GetDatum(acct->wallet_id);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = Int64GetDatum(available);
	/* most balances have no alert below: one index probe says so (a capture calls this too) */
	WalletExec(PLAN_ALERT_BELOW,
			   "SELECT 1 FROM wallet.alert "
			   " WHERE wallet_id OPERATOR(pg_catalog.=) $1 AND asset OPERATOR(pg_catalog.=) $2 "
			   "   AND threshold OPERATOR(pg_catalog.<=) $3 AND enabled AND below LIMIT 1",
			   3, argtypes, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	WalletExec(PLAN_ALERT_RAISED, "SELECT wallet._alert_raised($1, $2, $3)",
			   3, argtypes, values, NULL, false, SPI_OK_SELECT);
}

/*
 * Is a declined row for this reason due: none written for the wallet, asset
 * and reason within wallet.decline_notice_interval?  (Under the balance row's
 * lock, so two declines cannot both see none.)  A 1.0 schema writes every one.
 */
bool
DeclineNoticeDue(const Account *acct, const char *reason)
{
	static const Oid argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];

	if (WalletSchemaVersion() < 11)
		return true;
	values[0] = CStringGetTextDatum(acct->customer);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = CStringGetTextDatum(reason);
	WalletExec(PLAN_DECLINE_DUE,
			   "SELECT 1 FROM wallet.outbox o "
			   " WHERE o.kind OPERATOR(pg_catalog.=) 'declined' "
			   "   AND o.customer OPERATOR(pg_catalog.=) $1 AND o.asset OPERATOR(pg_catalog.=) $2 "
			   "   AND o.at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) "
			   "       pg_catalog.current_setting('wallet.decline_notice_interval')::pg_catalog.interval) "
			   "   AND (o.detail OPERATOR(pg_catalog.->>) 'reason') OPERATOR(pg_catalog.=) $3 "
			   " LIMIT 1",
			   3, argtypes, values, NULL, false, SPI_OK_SELECT);
	return SPI_processed == 0;
}
