/*
 * alert.c
 *	  The top-up loop on the hot path: alerts, recharges, declined notices.
 *
 * From wallet 1.1 the alerts and the recharge rule of a balance row are kept
 * in SQL (wallet--1.0--1.1.sql, "top-up loop"), and wallet.account.low_balance
 * holds the one level a debit compares available with.  A debit that leaves
 * available below it calls wallet._alert_eval, which writes the rows and
 * stores the next level; every other debit pays that one comparison.  A
 * declined row is written at most once per wallet, asset and reason per
 * wallet.decline_notice_interval.
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
 * available (minor units) is below the level of a 1.1 balance row (the caller
 * holds its lock): wallet._alert_eval writes what the alerts and the recharge
 * call for, and acct gets the next level.
 */
void
AlertEval(Account *acct, int64 available)
{
	static const Oid argtypes[3] = {INT8OID, TEXTOID, INT8OID};
	Datum		values[3];
	bool		isnull;

	values[0] = Int64GetDatum(acct->wallet_id);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = Int64GetDatum(available);
	WalletExec(PLAN_ALERT_EVAL, "SELECT wallet._alert_eval($1, $2, $3)",
			   3, argtypes, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "wallet: wallet._alert_eval returned " UINT64_FORMAT " rows", SPI_processed);
	/* the next level, for the next debit of a batch under the same lock */
	acct->low_balance = SpiGetInt64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	acct->has_low_balance = !isnull;
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
