/*
 * shard.c
 *	  Scale-out support on a shard: the settings wallet.shard and
 *	  wallet.shards, and the routing bits in ids.
 *
 * A router (the wallet_proxy extension, PL/Proxy) sends a call that names a
 * customer to partition hashtext(customer) & (partitions - 1).  A call that
 * names only an id (wallet_capture(hold_id), wallet_refund(event_id),
 * wallet_void_grant(grant_id), wallet_outbox_ack(id)) is sent by the id's
 * routing bits, bits 48..62, which hold hashtext(customer) & 32767 of the
 * customer the row belongs to.  (id >> 48) & (partitions - 1) is then the
 * customer's own partition for every power-of-two partition count up to
 * 32768, so ids keep routing right when a shard is split and its customers
 * move, rows and ids unchanged, to the new one.
 *
 * The bits are set by a BEFORE INSERT trigger: wallet.wallet and
 * wallet.outbox hash their customer (only when wallet.shards > 0, so a
 * database that is not a shard keeps plain small ids); wallet.grant_block,
 * wallet.hold and wallet.event copy the bits of their wallet_id (the trigger
 * fires only WHEN the wallet id has bits or the database is a shard, so an
 * unsharded database pays one cheap test per row).  A wallet made before its
 * database became a shard has a plain id; its new rows get the bits of its
 * customer, looked up.  A shard owns the customers whose hashtext(customer) &
 * (wallet.shards - 1) is wallet.shard, and refuses to create any other.
 */
#include "wallet.h"

#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(wallet_route_id);
PG_FUNCTION_INFO_V1(wallet_route_hash);
PG_FUNCTION_INFO_V1(wallet_shard_owner);
PG_FUNCTION_INFO_V1(wallet_sharded);

#define ROUTE_SHIFT		48
#define ROUTE_HASH_MASK	INT64CONST(0x7FFF)
#define ROUTE_MASK		(ROUTE_HASH_MASK << ROUTE_SHIFT)
#define MAX_SHARDS		32768

static int	wallet_shard = 0;
static int	wallet_shards = 0;

/* wallet.shards: 0 (not a shard) or a power of two up to 32768 */
static bool
CheckShards(int *newval, void **extra, GucSource source)
{
	if (*newval != 0 && (*newval & (*newval - 1)) != 0)
	{
		GUC_check_errdetail("wallet.shards must be 0 or a power of two, like PL/Proxy's partition count.");
		return false;
	}
	return true;
}

/* define the settings; called from _PG_init */
void
ShardInit(void)
{
	DefineCustomIntVariable("wallet.shard",
							"This database's shard number in a scaled-out cluster.",
							"The shard owns the customers whose hashtext(customer) & (wallet.shards - 1) "
							"is this number.",
							&wallet_shard, 0, 0, MAX_SHARDS - 1, PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wallet.shards",
							"Number of shards the customers are split over; 0 when not sharded.",
							"When not 0, ids carry their customer's routing bits (hashtext & 32767) in bits 48..62.",
							&wallet_shards, 0, 0, MAX_SHARDS, PGC_SUSET, 0,
							CheckShards, NULL, NULL);
}

/* hashtext(customer) as PL/Proxy's router computes it */
static int32
CustomerHash(Datum customer)
{
	return DatumGetInt32(DirectFunctionCall1Coll(hashtext, C_COLLATION_OID, customer));
}

/* the shard that owns a hash under the current settings; -1 when not sharded */
static int
ShardOf(int32 hash)
{
	if (wallet_shards == 0)
		return -1;
	if (wallet_shard >= wallet_shards)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wallet.shard %d is not below wallet.shards %d", wallet_shard, wallet_shards)));
	return (int) ((uint32) hash & (uint32) (wallet_shards - 1));
}

/* the routing bits of a customer, in place */
static int64
RouteBits(int32 hash)
{
	return ((int64) ((uint32) hash & ROUTE_HASH_MASK)) << ROUTE_SHIFT;
}

/* the routing bits of the customer of a wallet (0 when there is no such wallet) */
static int64
WalletRouteBits(int64 wallet_id)
{
	static const Oid argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(wallet_id)};
	int64		bits = 0;
	bool		isnull;

	SPI_connect();
	WalletExec(PLAN_ROUTE_CUSTOMER,
			   "SELECT customer FROM wallet.wallet WHERE id OPERATOR(pg_catalog.=) $1",
			   1, argtypes, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		Datum		customer = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			bits = RouteBits(CustomerHash(customer));
	}
	SPI_finish();
	return bits;
}

/*
 * wallet._route_id(): BEFORE INSERT trigger putting routing bits into NEW.id.
 * TG_ARGV[0] names where the bits come from: 'customer' (its hash, when this
 * database is a shard) or 'wallet_id' (its bits).  With TG_ARGV[1] = 'owner'
 * the customer must belong to this shard (WL008).  An id that already has
 * bits (a restore, a copy) is kept as it is.
 */
Datum
wallet_route_id(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Trigger    *trig;
	TupleDesc	desc;
	HeapTuple	tup;
	int			id_col;
	int			src_col;
	bool		isnull;
	int64		id;
	int64		bits;
	Datum		src;
	Datum		newval;
	bool		newnull = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event) ||
		td->tg_trigger->tgnargs < 1)
		elog(ERROR, "wallet._route_id() must be a BEFORE INSERT row trigger with an argument");
	trig = td->tg_trigger;
	tup = td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);
	id_col = SPI_fnumber(desc, "id");
	src_col = SPI_fnumber(desc, trig->tgargs[0]);
	if (id_col <= 0 || src_col <= 0)
		elog(ERROR, "wallet._route_id(): no column id or %s", trig->tgargs[0]);

	id = DatumGetInt64(heap_getattr(tup, id_col, desc, &isnull));
	if (isnull)
		return PointerGetDatum(tup);
	src = heap_getattr(tup, src_col, desc, &isnull);
	if (isnull)
		return PointerGetDatum(tup);

	if (strcmp(trig->tgargs[0], "wallet_id") == 0)
	{
		bits = DatumGetInt64(src) & ROUTE_MASK;
		if (bits == 0 && wallet_shards > 0 && (id & ROUTE_MASK) == 0)
			bits = WalletRouteBits(DatumGetInt64(src));		/* a wallet from before */
	}
	else
	{
		int32		hash;
		int			owner;

		if (wallet_shards == 0)
			return PointerGetDatum(tup);
		hash = CustomerHash(src);
		owner = ShardOf(hash);
		if (trig->tgnargs > 1 && strcmp(trig->tgargs[1], "owner") == 0 && owner != wallet_shard)
			ereport(ERROR,
					(errcode(ERRCODE_WALLET_OTHER_SHARD),
					 errmsg("customer \"%s\" belongs to shard %d, not to this shard %d",
							TextDatumGetCString(src), owner, wallet_shard),
					 errdetail("This database is shard %d of %d (settings wallet.shard, wallet.shards).",
							   wallet_shard, wallet_shards),
					 errhint("Call through the router, and check that partition p%d of server wallet_cluster "
							 "is the database with wallet.shard = %d.", owner, owner)));
		bits = RouteBits(hash);
	}

	if (bits == 0 || (id & ROUTE_MASK) != 0)
		return PointerGetDatum(tup);
	newval = Int64GetDatum(id | bits);
	tup = heap_modify_tuple_by_cols(tup, desc, 1, &id_col, &newval, &newnull);
	return PointerGetDatum(tup);
}

/* wallet._route_hash(customer): the routing bits of a customer, hashtext & 32767 */
Datum
wallet_route_hash(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32((int32) ((uint32) CustomerHash(PG_GETARG_DATUM(0)) & ROUTE_HASH_MASK));
}

/* wallet._shard_owner(customer): the shard that owns a customer; null when not sharded */
Datum
wallet_shard_owner(PG_FUNCTION_ARGS)
{
	int			owner = ShardOf(CustomerHash(PG_GETARG_DATUM(0)));

	if (owner < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(owner);
}

/* wallet._sharded(): whether this database is a shard (wallet.shards > 0) */
Datum
wallet_sharded(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(wallet_shards > 0);
}
