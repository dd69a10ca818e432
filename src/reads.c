/*
 * reads.c
 *	  The settled time of the reads for billing pages (wallet 1.1).
 *
 * wallet_statement and wallet_usage keep what they have summed once: the
 * balance before a time (wallet.statement_mark) and usage per hour and day
 * (wallet.usage_sum).  Such a sum may only cover a time before which no line,
 * event or refund can still appear.  Every one is dated at or after the start
 * of the transaction that writes it, but for the lines time has made
 * (expiries, resets: the reads compute them from the grants whether written
 * down or not) and hold and release lines (which move no balance).  So
 * nothing can still appear before the start of the oldest transaction
 * running, which wallet._settled() returns.  What is left: a backend reports
 * a statement's start a few instructions after it took that time, when the
 * statement arrived (postgres.c: SetCurrentStatementStartTimestamp, then
 * pgstat_report_activity); a transaction its statement begins in those
 * instructions is not seen.
 */
#include "wallet.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "pgstat.h"
#include "utils/backend_status.h"

PG_FUNCTION_INFO_V1(wallet_settled);

/*
 * wallet._settled() RETURNS timestamptz
 *	  The start of the oldest transaction running (this one included), or null
 *	  when this transaction must not write what it read or the time cannot be
 *	  known: read only, on a standby, under a transaction snapshot (taken before
 *	  the backends were looked at), or a backend that does not report its
 *	  transactions (track_activities off).  Prepared transactions are the
 *	  caller's to check (pg_prepared_xacts).
 */
Datum
wallet_settled(PG_FUNCTION_ARGS)
{
	TimestampTz settled = GetCurrentTransactionStartTimestamp();
	int			n;

	if (RecoveryInProgress() || XactReadOnly || IsolationUsesXactSnapshot() ||
		!pgstat_track_activities)
		PG_RETURN_NULL();

	n = pgstat_fetch_stat_numbackends();
	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
		PgBackendStatus *be;

		if (local == NULL)
			continue;
		be = &local->backendStatus;
		if (be->st_state == STATE_DISABLED)
			PG_RETURN_NULL();
		if (be->st_xact_start_timestamp != 0 && be->st_xact_start_timestamp < settled)
			settled = be->st_xact_start_timestamp;
		/*
		 * A transaction's start is its first statement's, reported as the
		 * statement's start before the transaction starts and reports its
		 * own (postgres.c, xact.c: StartTransaction): a running statement may
		 * begin a transaction dated then.  Only a session's or a background
		 * worker's: a walsender's START_REPLICATION runs for days.
		 */
		if ((be->st_backendType == B_BACKEND || be->st_backendType == B_BG_WORKER) &&
			(be->st_state == STATE_RUNNING || be->st_state == STATE_FASTPATH) &&
			be->st_activity_start_timestamp != 0 && be->st_activity_start_timestamp < settled)
			settled = be->st_activity_start_timestamp;
	}
	PG_RETURN_TIMESTAMPTZ(settled);
}
