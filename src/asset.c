/*
 * asset.c
 *	  The asset cache.
 *
 * An asset's scale never changes once it exists (wallet_create_asset refuses
 * it), so each backend keeps what it has read.  Entries are never freed:
 * other caches (compiled prices) keep pointers to them, and callers compare
 * those pointers.
 */
#include "wallet.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

/* a cache entry: the AssetInfo handed out (its code is the key) */
typedef struct AssetEntry
{
	AssetInfo	info;
	bool		stale;			/* read again before use */
} AssetEntry;

static HTAB *assets;

/*
 * An asset read inside a transaction that aborts may never have existed (or
 * exist later with another scale): read every entry again before its next
 * use, in place, so that pointers to it stay valid.
 */
static void
ForgetOnAbort(XactEvent event, void *arg)
{
	HASH_SEQ_STATUS seq;
	AssetEntry *entry;

	if (event != XACT_EVENT_ABORT || assets == NULL)
		return;
	hash_seq_init(&seq, assets);
	while ((entry = hash_seq_search(&seq)) != NULL)
		entry->stale = true;
}

/* the asset with this code; WL002 when there is none */
const AssetInfo *
AssetLookup(const char *code)
{
	AssetEntry *entry;
	bool		found;
	char		key[NAMEDATALEN];

	if (strlen(code) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_NO_ASSET),
				 errmsg("no asset \"%.32s...\"", code)));
	if (assets == NULL)
	{
		HASHCTL		ctl;
		static bool registered = false;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(AssetEntry);
		ctl.hcxt = TopMemoryContext;
		assets = hash_create("wallet assets", 16, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		if (!registered)
		{
			RegisterXactCallback(ForgetOnAbort, NULL);
			registered = true;
		}
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, code, NAMEDATALEN);
	entry = hash_search(assets, key, HASH_FIND, NULL);
	if (entry == NULL || entry->stale)
	{
		Oid			argtypes[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(code)};
		bool		isnull;
		int			scale;

		SPI_connect();
		if (SPI_execute_with_args("SELECT scale FROM wallet.asset WHERE code OPERATOR(pg_catalog.=) $1",
								  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
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
		entry->stale = false;
	}
	return &entry->info;
}
