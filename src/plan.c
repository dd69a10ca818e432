/*
 * plan.c
 *	  The plan-change window (1.1): a plan assignment takes effect at the later
 *	  of its effective_at and its commit, as a price version does
 *	  (wallet_price_in_force in price.c).
 *
 * wallet_assign_plan(customer, plan) writes a wallet.plan_assignment row
 * effective from now(), its transaction's start.  Events priced before the
 * commit cannot see it; had it kept that effective_at, a late event with the
 * same occurred_at priced after the commit (or a quote for that time) would
 * get the new plan's price where the first got the old one.  So a row set for
 * now, or for a time that passes before it commits, is moved to the clock
 * read as its transaction commits: an event is then priced by its
 * occurred_at alone.  A row backdated on purpose (effective_at before its
 * transaction began) keeps it; so does one still ahead at the commit.
 */
#include "wallet.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(wallet_plan_in_force);

/*
 * Deferred trigger on wallet.plan_assignment (1.1), at commit: a row set for
 * now (its transaction's start, the default) or for a time already passed
 * takes effect at its commit.  Runs as the table's owner, as
 * wallet_price_in_force does.
 */
Datum
wallet_plan_in_force(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[2] = {INT8OID, TIMESTAMPTZOID};
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tup;
	bool		isnull;
	bool		wisnull;
	TimestampTz effective_at;
	Datum		values[2];

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "wallet: plan_in_force must be a row trigger on insert");
	desc = RelationGetDescr(trigdata->tg_relation);
	tup = trigdata->tg_trigtuple;
	values[0] = heap_getattr(tup, SPI_fnumber(desc, "wallet_id"), desc, &wisnull);
	values[1] = heap_getattr(tup, SPI_fnumber(desc, "effective_at"), desc, &isnull);
	if (isnull || wisnull)
		return PointerGetDatum(NULL);
	effective_at = DatumGetTimestampTz(values[1]);
	/* (a transaction that does so cannot be prepared: price.c, InForceAtCommit) */
	if (!InForceAtCommit(effective_at, true))
		return PointerGetDatum(NULL);
	/* (wallet_id, effective_at) is the key: the row as it is now, whatever plan it was updated to */
	WalletExecAsOwner(trigdata->tg_relation, PLAN_PLAN_IN_FORCE,
					  "UPDATE wallet.plan_assignment SET effective_at = pg_catalog.clock_timestamp() "
					  " WHERE wallet_id OPERATOR(pg_catalog.=) $1 AND effective_at OPERATOR(pg_catalog.=) $2 "
					  "   AND effective_at OPERATOR(pg_catalog.<) pg_catalog.clock_timestamp()",
					  2, argtypes, values, SPI_OK_UPDATE);
	return PointerGetDatum(NULL);
}
