/*
 * coherence.c
 *	  The rule every per-backend cache of the extension follows.
 *
 * A backend keeps copies of table rows so that a call need not read them
 * again: customers' wallets (id, status; hotpath.c), compiled prices
 * (price.c), assets (asset.c).  A copy may be used only while it is what the
 * call would have read (DESIGN.md #9; API.md, "Every call sees every
 * committed change").  The rule that guarantees it is PostgreSQL's own for
 * its catalog caches (inval.c, AcceptInvalidationMessages), written down here
 * once; every cache follows it through the functions below.
 *
 *	 1. Every change to a row a cache copies sends an invalidation, which
 *		PostgreSQL delivers to every backend (and to this one at its next
 *		command): a statement trigger on the table calls
 *		CacheInvalidateRelcacheByRelid (wallet._relation_changed,
 *		wallet._prices_changed), and DDL on the table sends the same.  The
 *		cache's relcache callback calls CoherenceInvalidate, which moves the
 *		cache's generation: everything stamped with an older one is stale.
 *	 2. A cached lookup first calls CoherenceAccept, which reads the
 *		invalidations waiting for this backend.  PostgreSQL reads them only
 *		when a lock is taken for the first time in a transaction: a
 *		transaction that already holds its locks would never see a commit of
 *		another session through its caches.
 *	 3. A stale cache is filled again only from what is read under a snapshot
 *		taken after that accept, and what is filled is stamped with the
 *		generation CoherenceAccept returned: under READ COMMITTED a new one
 *		(CoherencePushSnapshot), never the statement's, which may be older
 *		than a commit whose invalidation was just read.  An invalidation that
 *		arrives while the cache is being filled moves the generation past the
 *		ticket, so what was filled is stale at once.
 *	 4. Under REPEATABLE READ and SERIALIZABLE a call reads the transaction's
 *		snapshot, which may be older than a change whose invalidation this
 *		transaction read, or, imported with SET TRANSACTION SNAPSHOT, older
 *		than one an earlier transaction read: what is filled then
 *		(CoherenceFilled) is this transaction's view only, and is dropped
 *		when it ends.
 *	 5. What a transaction read may be its own uncommitted writes: every
 *		cache is dropped when a transaction aborts, and when one prepares (a
 *		prepared transaction rolled back later sends nothing), and when a
 *		subtransaction aborts, unless every change of its rows sends an
 *		invalidation (subabort_kept: PostgreSQL replays those of aborted work).
 *
 * A new cache: a static Coherence, a relcache callback calling
 * CoherenceInvalidate for the tables it copies (each with a statement trigger
 * calling wallet._relation_changed), CoherenceAccept before every lookup,
 * CoherencePushSnapshot to read what it fills, CoherenceFilled after.
 *
 * Not a copy, so outside the rule: where a row was last found (the balance
 * rows' hints, hotpath.c AccountAtHint).  A hint is only a place to look
 * first; what is found there is used only when it is the version the call's
 * snapshot sees and has the key sought, and the index is read otherwise.
 *
 * The SPI plans wallet.c keeps are PostgreSQL's plan cache's: checked against
 * the catalogs at every execution, they follow the same rule already.  What
 * this leaves open: a commit is visible to new snapshots a moment before its
 * invalidation is sent (xact.c: ProcArrayEndTransaction, then AtEOXact_Inval),
 * and a call that starts in that moment still uses the copy; the next one
 * does not.
 */
#include "wallet.h"

#include "access/transam.h"
#include "access/xact.h"
#include "storage/proc.h"
#include "utils/inval.h"
#include "utils/snapmgr.h"

static Coherence *caches = NULL;	/* every cache, once it has been used */
static bool callbacks_registered = false;

/* a transaction ends: drop what it alone may use, and everything if it did not commit */
static void
CoherenceXactCallback(XactEvent event, void *arg)
{
	bool		all;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			all = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			all = true;
			break;
		default:
			return;
	}
	for (Coherence *cc = caches; cc != NULL; cc = cc->next)
	{
		if (all || cc->xact_only)
			cc->generation++;
		cc->xact_only = false;
	}
}

/*
 * A subtransaction aborts: what was read in it may have been its own writes.
 * A cache whose every change sends an invalidation is told by PostgreSQL,
 * which replays the aborted work's invalidations locally (inval.c); the
 * others are dropped (wallet_ingest aborts a subtransaction per failed
 * element: the price cache is kept through those).
 */
static void
CoherenceSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	for (Coherence *cc = caches; cc != NULL; cc = cc->next)
		if (!cc->subabort_kept)
			cc->generation++;
}

/* make the end-of-transaction rules apply to a cache (idempotent) */
static void
CoherenceRegister(Coherence *cc)
{
	if (cc->registered)
		return;
	if (!callbacks_registered)
	{
		RegisterXactCallback(CoherenceXactCallback, NULL);
		RegisterSubXactCallback(CoherenceSubXactCallback, NULL);
		callbacks_registered = true;
	}
	cc->next = caches;
	caches = cc;
	cc->registered = true;
	/* it has heard of every commit before now, whose invalidations it never reads (rule 4) */
	cc->inval_xid = ReadNextTransactionId();
	if (cc->generation == 0)
		cc->generation = 1;		/* 0 stamps nothing valid */
}

/* rule 1: what the cache holds is stale (from its relcache callback) */
void
CoherenceInvalidate(Coherence *cc)
{
	cc->generation++;
	cc->inval_lxid = MyProc->lxid;
	/* the commit it announces has an xid below this (rule 4) */
	cc->inval_xid = ReadNextTransactionId();
}

/*
 * Rules 2 and 3: read the invalidations waiting for this backend, then return
 * the generation to stamp what is filled from a snapshot taken after this.
 * A stamp is valid while it equals cc->generation.
 */
uint64
CoherenceAccept(Coherence *cc)
{
	CoherenceRegister(cc);
	AcceptInvalidationMessages();
	return cc->generation;
}

/*
 * Rule 3: the snapshot to fill a cache from, pushed as the active one (the
 * caller pops it): a new one under READ COMMITTED, the transaction's under
 * REPEATABLE READ and SERIALIZABLE; both see this transaction's earlier
 * commands.
 */
Snapshot
CoherencePushSnapshot(void)
{
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	return GetActiveSnapshot();
}

/*
 * Rule 4: the cache was filled from a snapshot taken after CoherenceAccept.
 * Under a transaction snapshot that may miss a change this backend heard of,
 * what it holds is dropped at the transaction's end: when the invalidation
 * was read in this transaction, or when the snapshot is not newer than the
 * last one read or than the cache itself (its xmax not past the next xid as
 * it was then: a snapshot imported with SET TRANSACTION SNAPSHOT can be older
 * than invalidations an earlier transaction read, or than commits made
 * before the cache was first used, whose invalidations it never reads).
 */
void
CoherenceFilled(Coherence *cc)
{
	if (!IsolationUsesXactSnapshot())
		return;
	if (cc->inval_lxid == MyProc->lxid ||
		(TransactionIdIsValid(cc->inval_xid) &&
		 !TransactionIdFollows(GetTransactionSnapshot()->xmax, cc->inval_xid)))
		cc->xact_only = true;
}
