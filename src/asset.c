/*
 * asset.c
 *	  The asset cache.
 *
 * Each backend keeps the scale of the assets it has read, under the rule of
 * coherence.c: an asset may be created again with another scale after a
 * rollback (of a prepared transaction too) or a new CREATE EXTENSION, and a
 * statement trigger on wallet.asset (1.1) invalidates every backend's copy
 * when a row changes.
 */
#include "wallet.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

static HTAB *assets;
static Coherence coherence;
static Oid	asset_relid = InvalidOid;

/*
 * A cache entry.  Entries are never freed: callers keep pointers to them for
 * a call (a batch of wallet_ingest).  An entry is used while its stamp is the
 * cache's generation, and read again otherwise.
 */
typedef struct AssetEntry
{
	AssetInfo	info;			/* first: info.code is the hash key */
	uint64		stamp;			/* coherence.generation when read; 0: never */
} AssetEntry;

/* a change to wallet.asset (or to every relation): read every entry again */
static void
AssetInval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == asset_relid)
		CoherenceInvalidate(&coherence);
}

/* the asset with this code; WL002 when there is none */
const AssetInfo *
AssetLookup(const char *code)
{
	AssetEntry *entry;
	bool		found;
	char		key[NAMEDATALEN];
	uint64		ticket;

	if (strlen(code) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_NO_ASSET),
				 errmsg("no asset \"%.32s...\"", code)));
	if (assets == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(AssetEntry);
		ctl.hcxt = TopMemoryContext;
		assets = hash_create("wallet assets", 16, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(AssetInval, (Datum) 0);
	}
	ticket = CoherenceAccept(&coherence);
	memset(key, 0, sizeof(key));
	strlcpy(key, code, NAMEDATALEN);
	entry = hash_search(assets, key, HASH_FIND, NULL);
	if (entry == NULL || entry->stamp != ticket)
	{
		Oid			argtypes[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(code)};
		bool		isnull;
		int			scale;
		int			rc;
		Oid			nsp = get_namespace_oid("wallet", true);

		asset_relid = OidIsValid(nsp) ? get_relname_relid("asset", nsp) : InvalidOid;
		SPI_connect();
		CoherencePushSnapshot();
		rc = SPI_execute_with_args("SELECT scale FROM wallet.asset WHERE code OPERATOR(pg_catalog.=) $1",
								   1, argtypes, values, NULL, true, 1);
		PopActiveSnapshot();
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "wallet: asset lookup failed");
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_WALLET_NO_ASSET),
					 errmsg("no asset \"%s\"", code),
					 errhint("Create it with wallet_create_asset().")));
		scale = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();
		entry = hash_search(assets, key, HASH_ENTER, &found);
		entry->info.scale = scale;
		entry->stamp = ticket;
		CoherenceFilled(&coherence);
	}
	return &entry->info;
}
