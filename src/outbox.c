/*
 * outbox.c
 *	  Notifications: low balance and declines.
 *
 * A row in wallet.outbox is written in the caller's transaction, so it is never
 * lost and never sent for a rolled-back debit; pg_notify('wallet_events') with
 * {"id", "kind"} of the row is delivered at commit: no customer data reaches a
 * listener (any role may LISTEN), who reads the row with its own privileges.
 * The application tops the customer up (wallet_grant with the payment id as
 * external_ref) and acks.
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "utils/builtins.h"

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
	Async_Notify("wallet_events",
				 SpiGetText(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
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
