/*
 * ingest.c
 *	  wallet_ingest: many usage events in one call, each exactly as
 *	  wallet_authorize_debit would process it.
 *
 * The single call spends much of its time on what a batch does once: a
 * statement's start-up, opening relations, a snapshot per step.  A batch:
 *	 1. resolve: parse each element and check it as the single call checks its
 *		arguments, and find its price version (which says the asset); then the
 *		wallets of all customers, with their statuses (HotWalletIds).  An
 *		element failing here gets its SQLSTATE and is skipped.  This writes
 *		nothing, so one subtransaction spans the pass and is begun again only
 *		after an element fails.
 *	 2. lock every distinct balance row (wallet, asset) of the valid elements,
 *		once, one after the other in one global order (wallet id, then asset
 *		code), directly (HotAccountLockMany); a balance row that does not exist
 *		yet is created and locked in its place in that order.  A batch only
 *		ever waits for a row that comes after every row it holds, so two
 *		batches that share wallets wait for each other at most; they cannot
 *		deadlock.  Then, under the locks: the live grants of every balance row,
 *		as the single call reads them (GrantsLoadMany: an index probe each,
 *		through one scan, the resets time has made written down), and what
 *		every idempotency key holds, an index probe each (HotKeyFindMany;
 *		among holds only in wallets that had one).  (Statements joining the
 *		batch's arrays to the tables were planned as hash joins over whole
 *		tables once the batches were large.)
 *	 3. apply, in array order: replay (WL004), price (tiers read the usage
 *		counter), decide (status, spend caps, holds, funds) with DebitJudge on
 *		the grants kept in memory, in a subtransaction that writes nothing (it
 *		takes no xid and costs well under a microsecond); an error rolls it back
 *		and the element gets its SQLSTATE.  Then, outside it, DebitFinish as the
 *		single call: a decline writes its outbox row; an approved debit writes
 *		its event and ledger lines at once, through the single call's
 *		HotDebitWrite (with one writer for the batch, HotDebitBatch: the
 *		tables and executor state opened once), takes what it draws off the
 *		grants in memory, and writes the rest of what the single call writes
 *		(low-balance outbox row, usage counter), where later elements read it.
 *		A later element with the same key replays it.
 *	 4. write the grant updates, summed per grant: one update per grant
 *		(HotGrantsTake), also during pass 3 every INGEST_FLUSH_EVENTS debits.
 *
 * Only data errors become an element's error (SQLSTATE class 22 and the
 * contract's WLxxx); anything else (a cancel, a serialization failure, out of
 * memory, a bug) aborts the whole call.
 */
#include "wallet.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(wallet_ingest);

#define CUSTOMER_KEY_LENGTH 257	/* wallet_create allows 256 characters */
#define INGEST_FLUSH_EVENTS 4096	/* debits whose grant updates are written together */
#define INGEST_MAX_EVENTS 100000	/* elements per call: memory about 1 kB each (#17) */

/* a balance row the batch touches: locked once, its grants kept in memory */
typedef struct Pair
{
	int64		wallet_id;		/* hash key, with asset */
	const AssetInfo *asset;
	int			index;			/* in the lock order */
	const char *customer;		/* the wallet's, and its status before the lock */
	char		status[16];
	bool		cached;			/* wallet id and status from the backend's cache */
	bool		holds_made;		/* the wallet may have holds (HotWalletIds) */
	bool		gone;			/* the wallet was not there any more (WL001) */
} Pair;

/* an idempotency key of the batch and what it holds so far */
typedef struct KeyEntry
{
	int64		wallet_id;		/* hash key, with key */
	char		key[WALLET_MAX_KEY_LENGTH + 1];
	StoredRequest *st;			/* NULL: nothing (yet) */
} KeyEntry;

/* one element of the array */
typedef struct Event
{
	DebitRequest req;
	Dec			q;
	const PriceVersion *pv;		/* found in pass 1 ... */
	uint64		generation;		/* ... valid while PriceCacheGeneration is this */
	const AssetInfo *asset;		/* pv's (asset entries stay put in a transaction) */
	Pair	   *pair;
	KeyEntry   *key;
	int			sqlerrcode;		/* 0: none */
	WalletResult res;
} Event;

/* a customer of the batch, and its place in the wallet lookup */
typedef struct CustomerEntry
{
	char		customer[CUSTOMER_KEY_LENGTH];
	int			index;
} CustomerEntry;

/* the state of one call */
typedef struct Batch
{
	MemoryContext cxt;			/* lives for the call */
	int			n;
	Event	   *items;
	HTAB	   *pairs;			/* (wallet id, asset) -> Pair */
	int			npairs;
	Account    *accts;			/* by Pair.index */
	GrantSet   *sets;			/* by Pair.index */
	HTAB	   *keys;			/* (wallet id, key) -> KeyEntry */
	DebitBuffer *buf;
	uint64		wallets_ticket; /* of HotWalletIds, for HotWalletsSame */
} Batch;

/* ------------------------------------------------------------- parsing */

/* 22023 naming the field of the element */
static pg_attribute_noreturn() void
BadElement(const char *field, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s %s", field, problem)));
}

/* a field of the element; NULL when absent */
static JsonbValue *
ElementField(JsonbContainer *obj, const char *key)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

/* a required string field, not empty (as ArgCString) */
static char *
StringField(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = ElementField(obj, key);
	char	   *s;

	if (v == NULL || v->type == jbvNull)
		BadElement(key, "must not be null");
	if (v->type != jbvString)
		BadElement(key, "must be a json string");
	if (v->val.string.len == 0)
		BadElement(key, "must not be empty");
	s = pnstrdup(v->val.string.val, v->val.string.len);
	TextLimitCheck(key, s);
	return s;
}

/* a numeric field: a json number or a string holding a number; NULL if null */
static Numeric
NumericField(JsonbValue *v, const char *key)
{
	char	   *s;

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvNumeric)
		return DatumGetNumericCopy(NumericGetDatum(v->val.numeric));
	if (v->type != jbvString)
		BadElement(key, "must be a json number or a string holding a number");
	s = pnstrdup(v->val.string.val, v->val.string.len);
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

/* refuse a field wallet_authorize_debit does not have: a typo must not bill silently */
static void
CheckFields(JsonbContainer *obj, int known)
{
	static const char *const fields[] = {"customer", "meter", "quantity", "idempotency_key",
	"dimensions", "occurred_at", "cost"};
	char	   *unknown;

	if (JsonContainerSize(obj) == known)
		return;
	unknown = JsonUnknownField(obj, fields, lengthof(fields));
	if (unknown != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown field \"%s\" in event", unknown),
				 errhint("An event has the arguments of wallet_authorize_debit: customer, meter, "
						 "quantity, idempotency_key, dimensions, occurred_at, cost.")));
}

/*
 * Element i as the arguments of wallet_authorize_debit, checked in the same
 * order.  An absent optional field takes the function's default; an explicit
 * null is a SQL null (an error for occurred_at, none for dimensions and cost).
 */
static void
ParseElement(Jsonb *events, int i, Event *item)
{
	JsonbValue *elem = getIthJsonbValueFromContainer(&events->root, i);
	JsonbContainer *obj;
	JsonbValue *v;
	DebitRequest *req = &item->req;
	int			known = 4;

	if (elem == NULL || elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event %d is not a json object", i)));
	obj = elem->val.binary.data;

	req->customer = StringField(obj, "customer");
	req->meter = StringField(obj, "meter");
	req->quantity = NumericField(ElementField(obj, "quantity"), "quantity");
	if (req->quantity == NULL)
		BadElement("quantity", "must not be null");
	req->key = KeyCheck(StringField(obj, "idempotency_key"));

	v = ElementField(obj, "dimensions");
	if (v != NULL)
	{
		known++;
		if (v->type == jbvBinary)
			req->dims = DimensionsCheck(JsonbValueToJsonb(v));
		else if (v->type != jbvNull)
			BadElement("dimensions", "must be a json object");
	}

	v = ElementField(obj, "occurred_at");
	if (v == NULL)
		req->occurred_at = WalletNow();
	else
	{
		known++;
		if (v->type == jbvNull)
			BadElement("occurred_at", "must not be null");
		if (v->type != jbvString)
			BadElement("occurred_at", "must be a json string holding a time");
		req->occurred_at =
			DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
													CStringGetDatum(pnstrdup(v->val.string.val, v->val.string.len)),
													ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	}

	v = ElementField(obj, "cost");
	if (v != NULL)
	{
		known++;
		req->cost = NumericField(v, "cost");
		if (req->cost)
			CostCheck(req->cost);
	}
	CheckFields(obj, known);

	item->q = QuantityDec(req->quantity);
	CheckOccurredAt(req->occurred_at);
}

/* ------------------------------------------------------ subtransactions */

/* errors that belong to one element: bad data (class 22) and the contract's WLxxx */
static bool
ElementError(int sqlerrcode)
{
	char	   *state = unpack_sql_state(sqlerrcode);

	return (state[0] == '2' && state[1] == '2') || (state[0] == 'W' && state[1] == 'L');
}

/*
 * After an error inside a subtransaction begun with BeginInternalSubTransaction
 * (cxt and owner are what was current before): roll it back and either return
 * the element's SQLSTATE or re-throw.
 */
static int
SubxactFailed(MemoryContext cxt, ResourceOwner owner)
{
	ErrorData  *edata;
	int			sqlerrcode;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (!ElementError(edata->sqlerrcode))
		ReThrowError(edata);
	ereport(DEBUG1,
			(errmsg_internal("wallet_ingest: event refused: %s", edata->message)));
	/* only the SQLSTATE is kept: an element's memory stays bounded (#17) */
	sqlerrcode = edata->sqlerrcode;
	FreeErrorData(edata);
	return sqlerrcode;
}

/* ---------------------------------------------------------- pass 1: resolve */

/* parse element i and find its price version (the caller is connected to SPI) */
static void
Resolve(Batch *b, Jsonb *events, int i)
{
	Event	   *item = &b->items[i];
	MemoryContext old = MemoryContextSwitchTo(b->cxt);

	ParseElement(events, i, item);
	item->pv = PriceFind(item->req.customer, item->req.meter, item->req.occurred_at);
	item->generation = PriceCacheGeneration;
	item->asset = AssetLookup(item->pv->asset.code);
	MemoryContextSwitchTo(old);
}

/*
 * Parse and price every element in one subtransaction, begun again after each
 * element that fails (it writes nothing, so rolling it back loses nothing).
 */
static void
ResolveAll(Batch *b, Jsonb *events)
{
	int			i = 0;

	while (i < b->n)
	{
		MemoryContext cxt = CurrentMemoryContext;
		ResourceOwner owner = CurrentResourceOwner;
		volatile int cur = i;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			/* one SPI connection for the pass; an error's rollback ends it */
			SPI_connect();
			for (; cur < b->n; cur++)
				Resolve(b, events, cur);
			SPI_finish();
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			b->items[cur].sqlerrcode = SubxactFailed(cxt, owner);
			cur++;
		}
		PG_END_TRY();
		i = cur;
	}
}

/*
 * The wallets of all customers in one lookup (WL001 for an element whose
 * customer has none, as the single call finds after the price), and the
 * balance rows the valid elements touch.
 */
static void
ResolveWallets(Batch *b)
{
	HASHCTL		ctl;
	HTAB	   *customers;
	const char **names = MemoryContextAllocHuge(b->cxt, sizeof(char *) * Max(b->n, 1));
	int64	   *ids;
	char		(*statuses)[16];
	bool	   *cached;
	bool	   *holds_made;
	int			n = 0;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = CUSTOMER_KEY_LENGTH;
	ctl.entrysize = sizeof(CustomerEntry);
	ctl.hcxt = b->cxt;
	customers = hash_create("wallet_ingest customers", 256, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (int i = 0; i < b->n; i++)
	{
		Event	   *item = &b->items[i];
		CustomerEntry *e;
		bool		found;

		if (item->sqlerrcode != 0 || strlen(item->req.customer) >= CUSTOMER_KEY_LENGTH)
			continue;
		e = hash_search(customers, item->req.customer, HASH_ENTER, &found);
		if (!found)
		{
			e->index = n;
			names[n++] = item->req.customer;
		}
	}
	ids = MemoryContextAllocHuge(b->cxt, sizeof(int64) * Max(n, 1));
	statuses = MemoryContextAllocHuge(b->cxt, sizeof(*statuses) * Max(n, 1));
	cached = MemoryContextAllocHuge(b->cxt, sizeof(bool) * Max(n, 1));
	holds_made = MemoryContextAllocHuge(b->cxt, sizeof(bool) * Max(n, 1));
	b->wallets_ticket = HotWalletIds(n, names, true, ids, statuses, cached, holds_made);

	for (int i = 0; i < b->n; i++)
	{
		Event	   *item = &b->items[i];
		CustomerEntry *e = NULL;
		Pair		key;
		bool		found;

		if (item->sqlerrcode != 0)
			continue;
		if (strlen(item->req.customer) < CUSTOMER_KEY_LENGTH)
			e = hash_search(customers, item->req.customer, HASH_FIND, NULL);
		if (e == NULL || ids[e->index] == 0)
		{
			ereport(DEBUG1,
					(errmsg_internal("wallet_ingest: event refused: no wallet for customer \"%s\"",
									 item->req.customer)));
			item->sqlerrcode = ERRCODE_WALLET_NO_WALLET;
			continue;
		}
		memset(&key, 0, sizeof(key));
		key.wallet_id = ids[e->index];
		key.asset = item->asset;
		item->pair = hash_search(b->pairs, &key, HASH_ENTER, &found);
		if (!found)
		{
			item->pair->customer = item->req.customer;
			strlcpy(item->pair->status, statuses[e->index], sizeof(item->pair->status));
			item->pair->cached = cached[e->index];
			item->pair->holds_made = holds_made[e->index];
			item->pair->gone = false;
			b->npairs++;
		}
	}
}

/* ------------------------------------------------- pass 2: lock and read */

/* the global lock order: wallet id, then asset code */
static int
PairCmp(const void *a, const void *b)
{
	const Pair *x = *(Pair *const *) a;
	const Pair *y = *(Pair *const *) b;

	if (x->wallet_id != y->wallet_id)
		return x->wallet_id < y->wallet_id ? -1 : 1;
	return strcmp(x->asset->code, y->asset->code);
}

/*
 * Lock every balance row of the batch once, in the global order, directly
 * (HotAccountLockMany); a pair without a balance row yet is created and
 * locked in its place in that order (AccountLockMany), so that a batch only
 * ever waits for a row that comes after every row it holds.
 */
static void
LockAll(Batch *b)
{
	Pair	  **order = MemoryContextAllocHuge(b->cxt, sizeof(Pair *) * Max(b->npairs, 1));
	int64	   *wallet_ids = MemoryContextAllocHuge(b->cxt, sizeof(int64) * Max(b->npairs, 1));
	const AssetInfo **assets = MemoryContextAllocHuge(b->cxt, sizeof(AssetInfo *) * Max(b->npairs, 1));
	HASH_SEQ_STATUS seq;
	Pair	   *p;
	int			n = 0;

	hash_seq_init(&seq, b->pairs);
	while ((p = hash_seq_search(&seq)) != NULL)
		order[n++] = p;
	qsort(order, n, sizeof(Pair *), PairCmp);
	for (int i = 0; i < n; i++)
	{
		order[i]->index = i;
		wallet_ids[i] = order[i]->wallet_id;
		assets[i] = order[i]->asset;
	}
	b->accts = MemoryContextAllocHuge(b->cxt, sizeof(Account) * Max(n, 1));
	b->sets = MemoryContextAllocHuge(b->cxt, sizeof(GrantSet) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		memset(&b->accts[i], 0, sizeof(Account));
		b->accts[i].wallet_id = wallet_ids[i];
		b->accts[i].customer = (char *) order[i]->customer;
		strlcpy(b->accts[i].status, order[i]->status, sizeof(b->accts[i].status));
	}
	SPI_connect();
	for (int i = 0; (i = HotAccountLockMany(i, n, assets, b->accts)) < n; i++)
	{
		if (order[i]->cached || b->accts[i].row_deleted)
		{
			/*
			 * No balance row for a wallet id this backend kept, or one deleted
			 * while its lock waited: the wallet may be gone (a shard's prune
			 * runs without triggers).  Look again.
			 */
			int64		id;
			char		status[1][16];

			HotWalletIds(1, &order[i]->customer, false, &id, status, NULL, NULL);
			order[i]->holds_made = true;
			if (id == 0)
			{
				order[i]->gone = true;
				continue;
			}
			if (id != wallet_ids[i])
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("the wallet of customer \"%.100s\" changed during the batch",
								order[i]->customer),
						 errhint("Retry the transaction.")));
		}
		AccountLockMany(1, &wallet_ids[i], &assets[i], &b->accts[i]);
		b->accts[i].customer = MemoryContextStrdup(b->cxt, b->accts[i].customer);
	}
	SPI_finish();
	for (int i = 0; i < b->n; i++)
	{
		Event	   *item = &b->items[i];

		if (item->sqlerrcode == 0 && item->pair->gone)
		{
			ereport(DEBUG1,
					(errmsg_internal("wallet_ingest: event refused: no wallet for customer \"%s\"",
									 item->req.customer)));
			item->sqlerrcode = ERRCODE_WALLET_NO_WALLET;
		}
	}
}

/* hash of a KeyEntry's key: the wallet and the key's bytes, not the whole buffer */
static uint32
KeyHash(const void *key, Size keysize)
{
	const KeyEntry *k = key;

	return hash_combine(hash_bytes_uint32((uint32) k->wallet_id ^ (uint32) (k->wallet_id >> 32)),
						hash_bytes((const unsigned char *) k->key, strlen(k->key)));
}

/* KeyEntry keys equal: 0 */
static int
KeyMatch(const void *a, const void *b, Size keysize)
{
	const KeyEntry *x = a;
	const KeyEntry *y = b;

	return x->wallet_id == y->wallet_id ? strcmp(x->key, y->key) : 1;
}

/*
 * Under the locks: the live grants of every balance row, and what every key
 * of the batch holds (the first element with a key looks it up; the others
 * share its entry).  A key is looked up among holds only if its wallet had
 * any when HotWalletIds read it and no wallet changed since (HotWalletsSame,
 * after the locks, as the single call checks after its lock).
 */
static void
ReadAll(Batch *b)
{
	HASHCTL		ctl;
	int64	   *wallet_ids = MemoryContextAllocHuge(b->cxt, sizeof(int64) * Max(b->n, 1));
	const char **keys = MemoryContextAllocHuge(b->cxt, sizeof(char *) * Max(b->n, 1));
	KeyEntry  **entries = MemoryContextAllocHuge(b->cxt, sizeof(KeyEntry *) * Max(b->n, 1));
	StoredRequest **found = MemoryContextAllocHuge(b->cxt, sizeof(StoredRequest *) * Max(b->n, 1));
	bool	   *holds = MemoryContextAllocHuge(b->cxt, sizeof(bool) * Max(b->n, 1));
	bool		same = HotWalletsSame(b->wallets_ticket);
	TimestampTz now = WalletNow();
	MemoryContext old;
	int			n = 0;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = offsetof(KeyEntry, st);
	ctl.entrysize = sizeof(KeyEntry);
	ctl.hash = KeyHash;
	ctl.match = KeyMatch;
	ctl.hcxt = b->cxt;
	b->keys = hash_create("wallet_ingest keys", 1024, &ctl,
						  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	for (int i = 0; i < b->n; i++)
	{
		Event	   *item = &b->items[i];
		KeyEntry	probe;
		bool		seen;

		if (item->sqlerrcode != 0)
			continue;
		probe.wallet_id = item->pair->wallet_id;
		strlcpy(probe.key, item->req.key, sizeof(probe.key));
		item->key = hash_search(b->keys, &probe, HASH_ENTER, &seen);
		if (!seen)
		{
			item->key->st = NULL;
			wallet_ids[n] = probe.wallet_id;
			keys[n] = item->req.key;
			/*
			 * as the single call (HotAccountLock): an open hold on the locked
			 * balance row is a hold, whatever the wallet's copy said before the
			 * lock (a hold committed a moment before its invalidation is sent)
			 */
			holds[n] = !same || item->pair->holds_made || b->accts[item->pair->index].holds_open > 0;
			entries[n++] = item->key;
		}
	}

	SPI_connect();
	old = MemoryContextSwitchTo(b->cxt);
	GrantsLoadMany(b->npairs, b->accts, now, b->sets);
	MemoryContextSwitchTo(old);
	StoredFetchMany(n, wallet_ids, keys, holds, found, b->cxt);
	SPI_finish();
	for (int i = 0; i < n; i++)
		entries[i]->st = found[i];
}

/* ----------------------------------------------------------- pass 3: apply */

/*
 * The checks of one element, in a subtransaction that writes nothing.
 * Returns false when the element failed (its SQLSTATE is set).  Sets
 * *replayed (and the result), or fills d for DebitFinish.
 */
static bool
Check(Batch *b, Event *item, Decision *d, UsageToRecord *usage, bool *replayed)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int			p = item->pair->index;
	Account    *acct = &b->accts[p];
	DebitRequest *req = &item->req;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		const PriceVersion *pv = item->pv;

		/* see what earlier elements wrote (usage counters, spend) */
		UpdateActiveSnapshotCommandId();
		if (item->generation != PriceCacheGeneration)
		{
			pv = PriceFind(req->customer, req->meter, req->occurred_at);
			if (strcmp(pv->asset.code, item->asset->code) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("the price of meter \"%s\" moved to asset \"%s\" during the batch",
								req->meter, pv->asset.code),
						 errhint("Retry the transaction.")));
		}
		*replayed = item->key->st != NULL;
		if (*replayed)
			ReplayMatch(acct, req->key, req, 0, item->key->st, &item->res);
		else
		{
			req->price_id = pv->id;
			req->amount = PriceEvaluateCost(pv, acct->wallet_id, req->meter, item->q, req->dims,
											req->occurred_at, req->cost, usage);
			d->set = b->sets[p];
			DebitJudge(acct, req, WalletNow(), 0, d);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		item->sqlerrcode = SubxactFailed(cxt, owner);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* what an approved element leaves under its key, for a later one to replay */
static StoredRequest *
StoredFromEvent(Batch *b, const Event *item, const Account *acct)
{
	StoredRequest *st = MemoryContextAllocZero(b->cxt, sizeof(StoredRequest));

	st->id = item->res.event_id;
	st->meter = item->req.meter;
	st->quantity = item->req.quantity;
	st->dims = item->req.dims;
	st->asset = MemoryContextStrdup(b->cxt, acct->asset);
	st->amount = item->req.amount;
	st->balance_after = item->res.balance;
	return st;
}

/* each valid element in array order: check, then write as the single call does */
static void
ApplyAll(Batch *b)
{
	TimestampTz now = WalletNow();

	for (int i = 0; i < b->n; i++)
	{
		Event	   *item = &b->items[i];
		int			p;
		Decision	d;
		UsageToRecord usage;
		bool		replayed;

		if (item->sqlerrcode != 0)
			continue;
		p = item->pair->index;
		SPI_connect();
		if (Check(b, item, &d, &usage, &replayed) && !replayed)
		{
			item->req.defer = b->buf;
			if (DebitFinish(&b->accts[p], &item->req, now, 0, &d, &item->res))
			{
				UsageRecord(&usage, b->accts[p].wallet_id, item->q);
				item->key->st = StoredFromEvent(b, item, &b->accts[p]);
			}
			b->sets[p] = d.set;
			if (DebitBufferCount(b->buf) >= INGEST_FLUSH_EVENTS)
				DebitBufferFlush(b->buf, now);
		}
		SPI_finish();
	}
	SPI_connect();
	DebitBufferFlush(b->buf, now);
	SPI_finish();
	DebitBufferClose(b->buf);
}

/* ----------------------------------------------------------------- entry */

/* one result row per element */
static void
EmitResults(FunctionCallInfo fcinfo, Batch *b)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	for (int i = 0; i < b->n; i++)
	{
		Event	   *item = &b->items[i];
		WalletResult *r = &item->res;
		Datum		values[9];
		bool		nulls[9] = {false};

		values[0] = Int32GetDatum(i);
		if (item->sqlerrcode != 0)
		{
			values[1] = BoolGetDatum(false);
			values[2] = BoolGetDatum(false);
			nulls[3] = true;
			values[4] = CStringGetTextDatum(unpack_sql_state(item->sqlerrcode));
			nulls[5] = nulls[6] = nulls[7] = nulls[8] = true;
		}
		else
		{
			values[1] = BoolGetDatum(r->approved);
			values[2] = BoolGetDatum(r->replayed);
			nulls[3] = r->reason == NULL;
			values[3] = r->reason ? CStringGetTextDatum(r->reason) : (Datum) 0;
			nulls[4] = true;
			nulls[5] = r->event_id == 0;
			values[5] = Int64GetDatum(r->event_id);
			nulls[6] = r->asset == NULL;
			values[6] = r->asset ? CStringGetTextDatum(r->asset) : (Datum) 0;
			nulls[7] = !r->has_amount;
			values[7] = r->has_amount ? NumericGetDatum(MinorToNumeric(r->amount, r->scale)) : (Datum) 0;
			nulls[8] = !r->has_balance;
			values[8] = r->has_balance ? NumericGetDatum(MinorToNumeric(r->balance, r->scale)) : (Datum) 0;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * wallet_ingest(events jsonb) RETURNS TABLE (idx, approved, replayed, reason,
 *											  error, event_id, asset, amount, balance)
 */
Datum
wallet_ingest(PG_FUNCTION_ARGS)
{
	Jsonb	   *events;
	Batch		b;
	HASHCTL		ctl;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be null")));
	events = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_ARRAY(events) || JB_ROOT_IS_SCALAR(events))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a json array"),
				 errhint("Pass [{\"customer\": ..., \"meter\": ..., \"quantity\": ..., \"idempotency_key\": ...}, ...].")));

	if (JB_ROOT_COUNT(events) > INGEST_MAX_EVENTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events has %d elements, more than the %d one call takes",
						JB_ROOT_COUNT(events), INGEST_MAX_EVENTS),
				 errhint("Split the batch: a call keeps about 1 kB per element until it returns.")));

	InitMaterializedSRF(fcinfo, 0);
	memset(&b, 0, sizeof(b));
	b.cxt = AllocSetContextCreate(CurrentMemoryContext, "wallet_ingest", ALLOCSET_DEFAULT_SIZES);
	b.n = JB_ROOT_COUNT(events);
	b.items = MemoryContextAllocHuge(b.cxt, sizeof(Event) * Max(b.n, 1));
	memset(b.items, 0, sizeof(Event) * Max(b.n, 1));
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = offsetof(Pair, index);
	ctl.entrysize = sizeof(Pair);
	ctl.hcxt = b.cxt;
	b.pairs = hash_create("wallet_ingest balances", 256, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	b.buf = DebitBufferCreate(b.cxt);

	ResolveAll(&b, events);
	ResolveWallets(&b);
	LockAll(&b);
	PushActiveSnapshot(GetTransactionSnapshot());
	ReadAll(&b);
	ApplyAll(&b);
	PopActiveSnapshot();
	EmitResults(fcinfo, &b);
	MemoryContextDelete(b.cxt);
	return (Datum) 0;
}
