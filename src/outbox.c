/*
 * outbox.c
 *	  Notifications: low balance and declines.
 *
 * A row in wallet.outbox is written in the caller's transaction, so it is never
 * lost and never sent for a rolled-back debit; a notification on
 * wallet_events with {"id", "kind"} of the row is delivered at commit: no
 * customer data reaches a listener (any role may LISTEN), who reads the row
 * with its own privileges.  The application tops the customer up
 * (wallet_grant with the payment id as external_ref) and acks.
 *
 * The notification is not sent during the call (Async_Notify, pg_notify):
 * PostgreSQL refuses PREPARE TRANSACTION after NOTIFY, and a two-phase caller
 * could then never commit a debit that wrote a row.  OutboxNotify queues the
 * payload in backend memory instead, with the subtransaction that wrote the
 * row: dropped when that subtransaction aborts, handed to its parent when it
 * commits, dropped when the transaction aborts.  At commit the
 * XACT_EVENT_PRE_COMMIT callback sends the queue in order with Async_Notify,
 * which xact.c then delivers (CommitTransaction calls the callbacks before
 * PreCommit_Notify; deferred triggers have fired by then).  A transaction
 * that prepares sends none (XACT_EVENT_PRE_PREPARE drops the queue): its rows
 * commit with COMMIT PREPARED, and listeners find them by claiming, as they
 * do rows whose notification they missed (docs/notifications.md).
 */
#include "wallet.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(wallet_outbox_notify);

#define OUTBOX_CHANNEL "wallet_events"
/* async.c's NOTIFY_PAYLOAD_MAX_LENGTH (not in its header): refused when queued, not at commit */
#define OUTBOX_PAYLOAD_MAX (BLCKSZ - NAMEDATALEN - 128)

/* a notification waiting for its transaction's commit */
typedef struct OutboxNotice
{
	SubTransactionId subid;		/* the subtransaction it belongs to */
	char		payload[FLEXIBLE_ARRAY_MEMBER];
} OutboxNotice;

/*
 * The queue, in TopTransactionContext, oldest first.  The notices of the
 * current subtransaction (and of its committed children, handed up to it)
 * are always at its end: a subtransaction's notices are queued after its
 * parent's of before it began, and a child's are resolved before it ends.
 */
static List *notices = NIL;
static LocalTransactionId notices_lxid = InvalidLocalTransactionId;
static bool notice_callbacks = false;

static void
OutboxXactCallback(XactEvent event, void *arg)
{
	List	   *send;
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/* cleared first: an error while sending aborts, which must not send again */
			send = notices;
			notices = NIL;
			foreach(lc, send)
				Async_Notify(OUTBOX_CHANNEL, ((OutboxNotice *) lfirst(lc))->payload);
			break;
		case XACT_EVENT_PRE_PREPARE:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			notices = NIL;		/* (its memory goes with the transaction's) */
			break;
		default:
			break;
	}
}

static void
OutboxSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	int			n;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	if (notices == NIL || notices_lxid != MyProc->lxid)
		return;
	for (n = list_length(notices); n > 0; n--)
	{
		OutboxNotice *nt = (OutboxNotice *) list_nth(notices, n - 1);

		if (nt->subid != mySubid)
			break;
		if (event == SUBXACT_EVENT_COMMIT_SUB)
			nt->subid = parentSubid;
	}
	/* the notices from n on were mySubid's: an abort drops them */
	if (event == SUBXACT_EVENT_ABORT_SUB)
		notices = list_truncate(notices, n);
}

/*
 * Queue payload for wallet_events, sent when the current transaction commits
 * (in the order queued), never if the subtransaction that queued it or the
 * transaction aborts, nor if the transaction prepares.
 */
void
OutboxNotify(const char *payload)
{
	MemoryContext old;
	OutboxNotice *nt;
	size_t		len = strlen(payload);

	if (len >= OUTBOX_PAYLOAD_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payload string too long")));
	if (!notice_callbacks)
	{
		RegisterXactCallback(OutboxXactCallback, NULL);
		RegisterSubXactCallback(OutboxSubXactCallback, NULL);
		notice_callbacks = true;
	}
	/* a queue left by another transaction is gone with its memory */
	if (notices_lxid != MyProc->lxid)
	{
		notices = NIL;
		notices_lxid = MyProc->lxid;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	nt = palloc(offsetof(OutboxNotice, payload) + len + 1);
	nt->subid = GetCurrentSubTransactionId();
	memcpy(nt->payload, payload, len + 1);
	notices = lappend(notices, nt);
	MemoryContextSwitchTo(old);
}

/* wallet._outbox_notify(payload text): OutboxNotify for the extension's SQL (wallet._outbox_put) */
Datum
wallet_outbox_notify(PG_FUNCTION_ARGS)
{
	OutboxNotify(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}

static void
OutboxWrite(const Account *acct, const char *kind, int64 available, bool has_threshold,
			int64 threshold, const char *reason, int64 amount)
{
	static const Oid argtypes[7] = {TEXTOID, TEXTOID, TEXTOID, NUMERICOID, NUMERICOID, TEXTOID, NUMERICOID};
	Datum		values[7];
	char		nulls[7] = "       ";
	bool		isnull;

	values[0] = CStringGetTextDatum(acct->customer);
	values[1] = CStringGetTextDatum(acct->asset);
	values[2] = CStringGetTextDatum(kind);
	values[3] = NumericGetDatum(MinorToNumeric(available, acct->scale));
	values[4] = has_threshold ? NumericGetDatum(MinorToNumeric(threshold, acct->scale)) : (Datum) 0;
	nulls[4] = has_threshold ? ' ' : 'n';
	values[5] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[5] = reason ? ' ' : 'n';
	values[6] = amount ? NumericGetDatum(MinorToNumeric(amount, acct->scale)) : (Datum) 0;
	nulls[6] = amount ? ' ' : 'n';
	WalletExec(PLAN_OUTBOX,
			   "INSERT INTO wallet.outbox AS o (customer, asset, kind, available, threshold, detail) "
			   "VALUES ($1, $2, $3, $4, $5, pg_catalog.jsonb_strip_nulls("
			   "        pg_catalog.jsonb_build_object('reason', $6, 'amount', $7))) "
			   "RETURNING pg_catalog.json_build_object('id', o.id, 'kind', o.kind)::pg_catalog.text",
			   7, argtypes, values, nulls, false, SPI_OK_INSERT_RETURNING);
	WalletExpectRows(1, "wallet.outbox");
	OutboxNotify(SpiGetText(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * A debit or hold took available from before to after.  1.0: a low_balance
 * row when it crossed the threshold.  1.1: the levels of the alerts and the
 * recharge (alert.c) say when they decide: after below low_balance; before
 * at or above alert_back, an alert below (value came back by time alone
 * since they last decided: a reset, an expired hold); a transaction that
 * began at or after alert_until (a recharge held back by the last month's
 * recharge_limit).  A balance row with neither alert nor recharge has none
 * of the three: three tests of a flag.
 */
void
OutboxLowBalance(Account *acct, int64 before, int64 after)
{
	if (acct->has_alert_back && before >= acct->alert_back)
		AlertEval(acct, after, &before);
	else if ((acct->has_low_balance && after < acct->low_balance) ||
			 (acct->has_alert_until && WalletNow() >= acct->alert_until))
	{
		/* (a 1.0 schema has neither alert_back nor alert_until) */
		if (WalletSchemaVersion() >= 11)
			AlertEval(acct, after, NULL);
		else if (before >= acct->low_balance)
			OutboxWrite(acct, "low_balance", after, true, acct->low_balance, NULL, 0);
	}
}

/* a debit or hold was declined (for funds, or a spend cap) */
void
OutboxDeclined(const Account *acct, const char *reason, int64 available, int64 amount)
{
	if (!DeclineNoticeDue(acct, reason))
		return;
	OutboxWrite(acct, "declined", available, acct->has_low_balance, acct->low_balance, reason, amount);
}
