/*
 * asset.c
 *	  The asset cache.
 *
 * An asset's scale never changes once it exists (wallet_create_asset refuses
 * it), so each backend keeps what it has read.
 */
#include "wallet.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

static HTAB *assets;

/*
 * A cache entry.  Entries are never freed: the price cache keeps pointers to
 * them for the backend's life.  An entry read in a (sub)transaction that
 * aborts may name an asset that never existed; it is read again before use.
 */
typedef struct AssetEntry
{
	AssetInfo	info;			/* first: info.code is the hash key */
	bool		checked;		/* read, and no abort since */
} AssetEntry;

/* after an abort, read every entry again before trusting it */
static void
UncheckAll(void)
{
	HASH_SEQ_STATUS seq;
	AssetEntry *entry;

	if (assets == NULL)
		return;
	hash_seq_init(&seq, assets);
	while ((entry = hash_seq_search(&seq)) != NULL)
		entry->checked = false;
}

static void
ForgetOnAbort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT)
		UncheckAll();
}

static void
ForgetOnSubAbort(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		UncheckAll();
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

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(AssetEntry);
		ctl.hcxt = TopMemoryContext;
		assets = hash_create("wallet assets", 16, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		RegisterXactCallback(ForgetOnAbort, NULL);
		RegisterSubXactCallback(ForgetOnSubAbort, NULL);
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, code, NAMEDATALEN);
	entry = hash_search(assets, key, HASH_FIND, NULL);
	if (entry == NULL || !entry->checked)
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
		entry->checked = true;
	}
	return &entry->info;
}
