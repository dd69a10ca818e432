/*
 * hotpath.c
 *	  Direct table access for the debit hot path.
 *
 * A debit is a handful of single-row operations: lock the balance row, probe
 * the idempotency key, read the grants, write the event, the grant rows and
 * the ledger lines.  Run as SPI statements, each paid a statement's fixed
 * cost (plan cache, executor start and end, CHECK expressions parsed again,
 * snapshots), and that fixed cost was most of a debit's time.  Here the same
 * operations go to the table and index access methods directly, doing what
 * the executor would have done on the way:
 *	 - privileges are checked as the statements would have checked them;
 *	 - the balance row is locked as SELECT ... FOR NO KEY UPDATE locks it
 *	   under READ COMMITTED (waiting for a concurrent writer, then locking the
 *	   latest version), and updated as UPDATE updates it under REPEATABLE
 *	   READ (failing with a serialization error after a concurrent change);
 *	 - a debit drawn from one source carries its one ledger line on the event
 *	   row (wallet.line is a view; wallet--1.0.sql) instead of storing a row;
 *	 - what is read under the lock is read with a snapshot taken after it,
 *	   so a call that waited sees what the call before it committed;
 *	 - inserts fill unset columns from their defaults, fire BEFORE ROW INSERT
 *	   triggers, check NOT NULL and CHECK constraints and maintain every
 *	   index (unique ones included); updates check replica identity and the
 *	   constraints they can break, and insert index entries unless the
 *	   update was HOT.
 * Relations, indexes, column numbers, CHECK, default and trigger WHEN
 * expressions, index infos and customers' wallets are looked up once per
 * backend (by name in schema wallet) and again after any change to those
 * relations, under the rule of coherence.c.  What the direct writes do not
 * do (an AFTER ROW or a statement-level INSERT trigger, an UPDATE trigger on
 * grants, a stored generated column) sends the debit's writes through SQL
 * statements (DebitWriteSql); what the hot path cannot honour at all (row
 * level security that applies, a column of another type than expected) is an
 * error, not a silent shortcut: whoever adds one adapts this file.
 *
 * Binding holds (1.1; hold.c) use the same machinery: a hold, its
 * reservations and its ledger lines are written, read and resolved directly
 * too (the holds section at the end), with SQL where a table has what the
 * direct writes do not do.
 */
#include "wallet.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "rewrite/rewriteManip.h"
#include "storage/bufmgr.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

/* the tables the hot path reads and writes */
typedef enum HotTable
{
	T_WALLET,
	T_ACCOUNT,
	T_GRANT,
	T_EVENT,
	T_LINE,
	T_HOLD,
	T_HOLD_GRANT,				/* 1.1: missing from a schema not upgraded */
	T__COUNT
} HotTable;

/* the indexes it finds rows by */
typedef enum HotIndex
{
	I_WALLET_CUSTOMER,
	I_WALLET_PKEY,
	I_ACCOUNT_PKEY,
	I_GRANT_OPEN,
	I_GRANT_PKEY,
	I_EVENT_KEY,
	I_HOLD_KEY,
	I_HOLD_PKEY,
	I_HOLD_OPEN,				/* 1.1 */
	I_HOLD_GRANT_PKEY,			/* 1.1 */
	I__COUNT
} HotIndex;

#define MAX_COLUMNS 20

/* a column the hot path uses: its name and type */
typedef struct HotColumn
{
	const char *name;
	Oid			type;
} HotColumn;

/* wallet.wallet */
enum
{
	W_ID, W_CUSTOMER, W_STATUS
};
/* wallet.account */
enum
{
	A_WALLET_ID, A_ASSET, A_OVERDRAFT_LIMIT, A_LOW_BALANCE, A_MAX_HOLDS, A_OVERDRAFT,
	A_HELD, A_HOLDS_OPEN, A_TOUCHES, A_CAPS
};
/* wallet.grant_block: the first 13 in the order of GRANT_COLUMNS (grant.c) */
enum
{
	G_ID, G_CATEGORY, G_PRIORITY, G_AMOUNT, G_REMAINING, G_EFFECTIVE_AT, G_EXPIRES_AT,
	G_RECURRENCE, G_ROLLOVER_MAX, G_RESETS, G_UNIT_REVENUE, G_WALLET_ID, G_ASSET,
	G_CLOSED_AT, G_VOIDED_AT
};
/* wallet.event */
enum
{
	E_ID, E_WALLET_ID, E_KEY, E_METER, E_QUANTITY, E_DIMENSIONS, E_OCCURRED_AT,
	E_RECORDED_AT, E_ASSET, E_AMOUNT, E_PRICE_ID, E_COST, E_REVENUE, E_HOLD_ID,
	E_BALANCE_AFTER, E_LINE_ID, E_LINE_GRANT_ID
};
/* wallet.line_stored */
enum
{
	L_AT, L_WALLET_ID, L_ASSET, L_GRANT_ID, L_EVENT_ID, L_HOLD_ID, L_KIND, L_AMOUNT
};
/* wallet.hold */
enum
{
	H_ID, H_WALLET_ID, H_KEY, H_ASSET, H_AMOUNT, H_BALANCE_AFTER, H_STATUS, H_CREATED_AT,
	H_EXPIRES_AT, H_CLOSED_AT, H_EVENT_ID
};
/* wallet.hold_grant (1.1) */
enum
{
	HG_HOLD_ID, HG_GRANT_ID, HG_AMOUNT, HG_RESETS
};

static const struct
{
	const char *name;
	HotColumn	columns[MAX_COLUMNS];	/* ends at a NULL name */
}			table_defs[T__COUNT] =
{
	[T_WALLET] = {"wallet", {{"id", INT8OID}, {"customer", TEXTOID}, {"status", TEXTOID}}},
	[T_ACCOUNT] = {"account", {{"wallet_id", INT8OID}, {"asset", TEXTOID},
			{"overdraft_limit", INT8OID}, {"low_balance", INT8OID}, {"max_holds", INT4OID},
			{"overdraft", INT8OID}, {"held", INT8OID}, {"holds_open", INT4OID},
	{"touches", INT8OID}, {"caps", INT4OID}}},
	[T_GRANT] = {"grant_block", {{"id", INT8OID}, {"category", TEXTOID}, {"priority", INT4OID},
			{"amount", INT8OID}, {"remaining", INT8OID}, {"effective_at", TIMESTAMPTZOID},
			{"expires_at", TIMESTAMPTZOID}, {"recurrence", INTERVALOID},
			{"rollover_max", INT8OID}, {"resets", INT8OID}, {"unit_revenue", NUMERICOID},
			{"wallet_id", INT8OID}, {"asset", TEXTOID}, {"closed_at", TIMESTAMPTZOID},
	{"voided_at", TIMESTAMPTZOID}}},
	[T_EVENT] = {"event", {{"id", INT8OID}, {"wallet_id", INT8OID}, {"idempotency_key", TEXTOID},
			{"meter", TEXTOID}, {"quantity", NUMERICOID}, {"dimensions", JSONBOID},
			{"occurred_at", TIMESTAMPTZOID}, {"recorded_at", TIMESTAMPTZOID},
			{"asset", TEXTOID}, {"amount", INT8OID}, {"price_id", INT8OID},
			{"cost", NUMERICOID}, {"revenue", NUMERICOID}, {"hold_id", INT8OID},
	{"balance_after", INT8OID}, {"line_id", INT8OID}, {"line_grant_id", INT8OID}}},
	[T_LINE] = {"line_stored", {{"at", TIMESTAMPTZOID}, {"wallet_id", INT8OID}, {"asset", TEXTOID},
			{"grant_id", INT8OID}, {"event_id", INT8OID}, {"hold_id", INT8OID},
	{"kind", TEXTOID}, {"amount", INT8OID}}},
	[T_HOLD] = {"hold", {{"id", INT8OID}, {"wallet_id", INT8OID}, {"idempotency_key", TEXTOID},
			{"asset", TEXTOID}, {"amount", INT8OID}, {"balance_after", INT8OID},
			{"status", TEXTOID}, {"created_at", TIMESTAMPTZOID}, {"expires_at", TIMESTAMPTZOID},
	{"closed_at", TIMESTAMPTZOID}, {"event_id", INT8OID}}},
	[T_HOLD_GRANT] = {"hold_grant", {{"hold_id", INT8OID}, {"grant_id", INT8OID},
	{"amount", INT8OID}, {"resets", INT8OID}}},
};

static const struct
{
	const char *name;
	HotTable	table;
	int			nkeys;
	int			keys[2];		/* columns of table_defs[table] */
}			index_defs[I__COUNT] =
{
	[I_WALLET_CUSTOMER] = {"wallet_customer_key", T_WALLET, 1, {W_CUSTOMER}},
	[I_WALLET_PKEY] = {"wallet_pkey", T_WALLET, 1, {W_ID}},
	[I_ACCOUNT_PKEY] = {"account_pkey", T_ACCOUNT, 2, {A_WALLET_ID, A_ASSET}},
	[I_GRANT_OPEN] = {"grant_block_open", T_GRANT, 2, {G_WALLET_ID, G_ASSET}},
	[I_GRANT_PKEY] = {"grant_block_pkey", T_GRANT, 1, {G_ID}},
	[I_EVENT_KEY] = {"event_key", T_EVENT, 2, {E_WALLET_ID, E_KEY}},
	[I_HOLD_KEY] = {"hold_wallet_id_idempotency_key_key", T_HOLD, 2, {H_WALLET_ID, H_KEY}},
	[I_HOLD_PKEY] = {"hold_pkey", T_HOLD, 1, {H_ID}},
	[I_HOLD_OPEN] = {"hold_open", T_HOLD, 2, {H_WALLET_ID, H_ASSET}},
	[I_HOLD_GRANT_PKEY] = {"hold_grant_pkey", T_HOLD_GRANT, 2, {HG_HOLD_ID, HG_GRANT_ID}},
};

/* the 1.1 columns of wallet.hold (the holds section below), found when they are there */
enum
{
	HX_DIMENSIONS, HX_OVERDRAFT, HX_METER, HX_QUANTITY, HX_RELEASE_BALANCE, HX__COUNT
};
static const HotColumn hold11_columns[HX__COUNT] = {
	{"dimensions", JSONBOID}, {"overdraft", INT8OID}, {"meter", TEXTOID},
	{"quantity", NUMERICOID}, {"release_balance", INT8OID}
};

/* a table or index of the 1.1 schema: missing until ALTER EXTENSION wallet UPDATE */
#define SINCE_11_TABLE(t) ((t) == T_HOLD_GRANT)
#define SINCE_11_INDEX(i) ((i) == I_HOLD_OPEN || (i) == I_HOLD_GRANT_PKEY)
/* the tables the hot path inserts rows into (defaults, BEFORE ROW triggers, indexes) */
#define INSERTED(t) ((t) == T_EVENT || (t) == T_LINE || (t) == T_HOLD || (t) == T_HOLD_GRANT)

/*
 * A lock this backend knows it holds on a relation: taken in this
 * (sub)transaction, so opening the relation again needs no trip to the lock
 * manager.  A subtransaction that aborts releases its locks: its id then is
 * no longer the current one.
 */
typedef struct HeldLock
{
	LocalTransactionId lxid;
	SubTransactionId subxid;
	LOCKMODE	mode;
} HeldLock;

/* what is known of a table, per backend */
typedef struct TableCache
{
	Oid			relid;
	HeldLock	held;
	AttrNumber	att[MAX_COLUMNS];	/* by the table's column enum */
	int			ncheck;
	ExprState **checks;			/* CHECK constraints, in relcache order */
	ExprState **update_checks;	/* those an update of the hot path can break (others NULL) */
	ExprState **defaults;		/* by attnum - 1; NULL: no default */
	ExprState **trigger_whens;	/* WHEN of each trigger (rel->trigdesc order), or NULL */
	TupleDesc  *short_descs;	/* [k]: the first k columns, for rows stored short */
	/* the indexes of a table the hot path writes, ready for index inserts */
	int			nindexes;
	Oid		   *index_oids;
	IndexInfo **index_infos;	/* predicate and expression states built */
	HeldLock   *index_held;
	bool		rls;			/* row level security is enabled: may apply (CheckRowSecurity) */
	bool		by_sql;			/* written through SQL statements (CheckTable) */
} TableCache;

static struct
{
	bool		valid;
	MemoryContext cxt;
	TableCache	tables[T__COUNT];
	Oid			indexes[I__COUNT];
	HeldLock	index_held[I__COUNT];
	/* the lock record of each: the write target's when it is one of those */
	HeldLock   *index_lock[I__COUNT];
	Oid			line_seq;		/* wallet.line_id_seq: ids of lines carried on events */
	bool		event_ids_shared;	/* event ids come from line_seq too (1.1: EventIdsShared) */
	AttrNumber	grant_scope;	/* wallet.grant_block.scope (1.1), or 0 */
	AttrNumber	account_alert_back; /* wallet.account.alert_back (1.1), or 0 */
	AttrNumber	account_alert_until;	/* wallet.account.alert_until (1.1), or 0 */
	AttrNumber	wallet_holds_made;	/* wallet.wallet.holds_made (1.1), or 0 */
	AttrNumber	hold11[HX__COUNT];	/* wallet.hold's 1.1 columns, or 0 */
	bool		hold_grant_deletes; /* a DELETE trigger on wallet.hold_grant */
	HTAB	   *wallets;		/* WalletEntry by customer, or NULL */
	HTAB	   *wallet_ids;		/* WalletIdEntry by wallet id, or NULL (with wallets) */
	uint64		wallets_stamp;	/* wallet_coherence.generation they were read at */
	bool		wallet_recheck; /* wallet.wallet changed: check its columns again */
}			cache;

/*
 * A customer's wallet, as last read: the hot path need not find it again on
 * every call.  The wallets follow the rule of coherence.c: a trigger on
 * wallet.wallet sends a relcache invalidation when a wallet row changes or
 * goes (wallet_set_status, a shard's prune), which drops all of them (and
 * only them: the columns of wallet.wallet are checked again, nothing else is
 * looked up again); an abort drops them too, since the wallet read may have
 * been created by the aborted work.  Customers of 64 bytes or more are not
 * cached.
 */
#define WALLET_KEY_SIZE 64
#define MAX_WALLETS 65536

typedef struct WalletEntry
{
	char		customer[WALLET_KEY_SIZE];	/* hash key */
	int64		wallet_id;
	char		status[16];
	bool		holds_made;		/* wallet.holds_made (true on a 1.0 schema) */
} WalletEntry;

/* the customer of a wallet kept, by its id (a capture finds its wallet by id) */
typedef struct WalletIdEntry
{
	int64		wallet_id;		/* hash key */
	char		customer[WALLET_KEY_SIZE];
} WalletIdEntry;

/*
 * The last balance lock that found its wallet without holds (wallet.holds_made
 * false, as of the lock: HotAccountLock), so that HotKeyFind need not look a
 * key up among the wallet's holds.  The Account it filled carries the stamp
 * (Account.no_holds); no other does, and the next lock takes a new one.  It
 * holds in this transaction while the wallets kept are of the same
 * generation: a hold this transaction places later changes wallet.wallet,
 * whose invalidation moves it.
 */
static struct
{
	uint64		stamp;
	int64		wallet_id;
	LocalTransactionId lxid;
	uint64		generation;
}			no_holds;

/*
 * The last balance lock that found its wallet with wallet.holds_made set, in
 * this subtransaction and generation of the wallets kept: the hold it places
 * need not read the wallet again to know it is marked (wallet_hold_marks_wallet).
 * The flag is never cleared; only an abort of this (sub)transaction could undo
 * a mark it read, and an abort moves the generation or the subtransaction.
 */
static struct
{
	int64		wallet_id;
	LocalTransactionId lxid;
	SubTransactionId subxid;
	uint64		generation;
}			holds_seen;

static bool callback_registered = false;
static List *retired = NIL;		/* older generations of the cache, not yet freed */
static int	calls = 0;			/* hot path calls under way (HotEnter) */
static TupleDesc key_desc = NULL;	/* the row HotKeyFind returns (lives as long as the backend) */
static Coherence wallet_coherence;	/* of the wallets kept (coherence.c) */

/*
 * Where this transaction last saw the balance row it locked (HotAccountLock,
 * HotAccountSave): HotAccountSave reads it there rather than through the
 * index, when that version is still the one a fresh snapshot sees.
 */
static struct
{
	LocalTransactionId lxid;
	int64		wallet_id;
	char		asset[NAMEDATALEN];
	ItemPointerData tid;
}			account_seen;

/* remember where the balance row of acct was just locked or written */
static void
AccountRowSeen(const Account *acct, ItemPointer tid)
{
	account_seen.lxid = MyProc->lxid;
	account_seen.wallet_id = acct->wallet_id;
	strlcpy(account_seen.asset, acct->asset, sizeof(account_seen.asset));
	account_seen.tid = *tid;
}

/*
 * A relcache invalidation of one of ours (or of all): look everything up
 * again; of wallet.wallet (a wallet row changed, or the table did): forget
 * the wallets and check its columns again.
 */
static void
HotInval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cache.tables[T_WALLET].relid)
		CoherenceInvalidate(&wallet_coherence);
	if (!cache.valid)
		return;
	if (relid == InvalidOid)
	{
		cache.valid = false;
		return;
	}
	if (relid == cache.tables[T_WALLET].relid)
		cache.wallet_recheck = true;
	for (int t = 0; t < T__COUNT; t++)
		if (t != T_WALLET && cache.tables[t].relid == relid)
			cache.valid = false;
	for (int i = 0; i < I__COUNT; i++)
		if (cache.indexes[i] == relid)
			cache.valid = false;
}

static pg_attribute_noreturn() void
Unsupported(const char *table, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("wallet.%s has %s, which the debit hot path does not honour", table, what),
			 errhint("Adapt src/hotpath.c to it.")));
}

/* compile an expression of a table's catalog entry for evaluation in any call */
static ExprState *
Compile(Expr *expr)
{
	return ExecInitExpr(expression_planner(expr), NULL);
}

/* has rel a rule on event (CMD_INSERT, CMD_UPDATE, CMD_DELETE)? */
static bool
HasRule(Relation rel, CmdType event)
{
	for (int i = 0; rel->rd_rules != NULL && i < rel->rd_rules->numLocks; i++)
		if (rel->rd_rules->rules[i]->event == event)
			return true;
	return false;
}

/*
 * What the direct writes do not do on a table, which SQL statements do: an
 * AFTER ROW or statement-level INSERT trigger (or one with a transition
 * table), a stored generated column or a rule (on a table it inserts into or
 * updates); an UPDATE trigger of its own on a table it updates (without
 * changing keys, so the internal foreign key triggers have nothing to
 * do).  Then tc->by_sql: the debit writes that table through
 * statements (DebitWriteSql), which do all of it, as wallet_ingest does.  A
 * disabled trigger never fires and changes nothing.  inserted: the hot path
 * inserts into the table; updated: it updates it.  Row level security is
 * checked on every call (CheckRowSecurity): whether it applies depends on the
 * role.
 */
static void
CheckTable(Relation rel, bool inserted, bool updated, TableCache *tc)
{
	TriggerDesc *td = rel->trigdesc;

	tc->rls = rel->rd_rel->relrowsecurity;
	tc->by_sql = (inserted || updated) && rel->rd_att->constr && rel->rd_att->constr->has_generated_stored;
	/* a rule (DO ALSO, DO INSTEAD) rewrites the statements the direct writes stand for */
	if (HasRule(rel, CMD_INSERT) && inserted)
		tc->by_sql = true;
	if (HasRule(rel, CMD_UPDATE) && updated)
		tc->by_sql = true;
	for (int i = 0; td != NULL && i < td->numtriggers; i++)
	{
		Trigger    *tg = &td->triggers[i];

		if (tg->tgenabled == TRIGGER_DISABLED)
			continue;
		if (inserted && TRIGGER_FOR_INSERT(tg->tgtype) &&
			!(TRIGGER_FOR_ROW(tg->tgtype) && TRIGGER_FOR_BEFORE(tg->tgtype)))
			tc->by_sql = true;
		if (updated && TRIGGER_FOR_UPDATE(tg->tgtype) &&
			!(tg->tgisinternal && TRIGGER_FOR_ROW(tg->tgtype)))
			tc->by_sql = true;
	}
}

/*
 * Row level security on one of our tables: the functions run as the tables'
 * owner, who bypasses it unless it is forced, as in SQL.  Where the policies
 * would apply, the direct reads cannot apply them: refuse.
 */
static void
CheckRowSecurity(HotTable t)
{
	if (check_enable_rls(cache.tables[t].relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("row level security applies to wallet.%s for role %s, which the debit hot path does not honour",
						table_defs[t].name, GetUserNameFromId(GetUserId(), false)),
				 errhint("Let the extension's owner bypass it (no FORCE ROW LEVEL SECURITY), or give it BYPASSRLS.")));
}

/*
 * The indexes of a table the hot path writes to, with their IndexInfo built
 * once (ExecOpenIndices builds it on every call) and the states of their
 * predicates and expressions compiled for evaluation in any call.
 */
static void
IndexesBuild(Relation rel, TableCache *tc)
{
	List	   *oids = RelationGetIndexList(rel);
	ListCell   *lc;
	int			i = 0;

	tc->nindexes = list_length(oids);
	tc->index_oids = palloc0(sizeof(Oid) * Max(tc->nindexes, 1));
	tc->index_infos = palloc0(sizeof(IndexInfo *) * Max(tc->nindexes, 1));
	tc->index_held = palloc0(sizeof(HeldLock) * Max(tc->nindexes, 1));
	foreach(lc, oids)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		IndexInfo  *ii = BuildIndexInfo(idx);

		if (ii->ii_Predicate != NIL)
			ii->ii_PredicateState = ExecInitQual((List *) expression_planner((Expr *) ii->ii_Predicate),
												 NULL);
		if (ii->ii_Expressions != NIL)
		{
			ListCell   *e;

			foreach(e, ii->ii_Expressions)
				ii->ii_ExpressionsState = lappend(ii->ii_ExpressionsState,
												  Compile((Expr *) lfirst(e)));
		}
		tc->index_oids[i] = lfirst_oid(lc);
		tc->index_infos[i] = ii;
		i++;
		index_close(idx, NoLock);
	}
}

/* forget the wallets read */
static void
ForgetWallets(void)
{
	if (cache.wallets != NULL)
	{
		hash_destroy(cache.wallets);
		cache.wallets = NULL;
	}
	if (cache.wallet_ids != NULL)
	{
		hash_destroy(cache.wallet_ids);
		cache.wallet_ids = NULL;
	}
}

/* free the generations of the cache that were replaced */
static void
FreeRetired(void)
{
	ListCell   *lc;

	foreach(lc, retired)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(retired);
	retired = NIL;
}

/*
 * A call of the hot path (HotAccountLock, HotKeyFind, HotGrantsRead,
 * HotDebitWrite) begins: when no other is under way (one may be, below a
 * trigger), nothing uses a replaced generation any more, so it is freed now
 * rather than at the end of a transaction that may alternate many changes
 * and calls.  A call that fails leaves calls raised: then they are freed at
 * the end of the transaction.
 */
static inline void
HotEnter(void)
{
	if (calls == 0 && retired != NIL)
		FreeRetired();
	calls++;
}

/* a call of the hot path returns */
static inline void
HotLeave(void)
{
	calls--;
}

/* end of a transaction: no call is under way; free old cache generations */
static void
HotXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		calls = 0;
		if (retired != NIL)
			FreeRetired();
	}
}

/* look everything up again (after an invalidation, or the first time) */
static void CacheBuildGeneration(void);

/*
 * Does wallet.event's id default draw from wallet.line_id_seq (1.1), so that
 * an event and the ledger lines share one sequence of ids?  Then the line an
 * event carries takes the event's own id (line_id = id), and the event_pkey
 * finds it: the partial index event_line holds only lines carried before
 * (line_id <> id).  A 1.0 schema gives event ids from wallet.event_id_seq:
 * the line then takes its own id, as in 1.0.
 */
static bool
EventIdsShared(Relation rel, AttrNumber id_att, Oid nsp)
{
	Node	   *d = build_column_default(rel, id_att);
	FuncExpr   *f = (FuncExpr *) d;
	Const	   *seq;

	if (d == NULL || !IsA(d, FuncExpr) || f->funcid != F_NEXTVAL || list_length(f->args) != 1 ||
		!IsA(linitial(f->args), Const))
		return false;
	seq = (Const *) linitial(f->args);
	return !seq->constisnull && seq->consttype == REGCLASSOID &&
		DatumGetObjectId(seq->constvalue) == get_relname_relid("line_id_seq", nsp);
}

static void
CacheBuild(void)
{
	PG_TRY();
	{
		CacheBuildGeneration();
	}
	PG_CATCH();
	{
		/* a half-built generation must not be used: try again next time */
		cache.valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* CacheBuild's work: a new generation of everything the hot path looks up */
static void
CacheBuildGeneration(void)
{
	Oid			nsp;
	MemoryContext old;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(HotInval, (Datum) 0);
		RegisterXactCallback(HotXactCallback, NULL);
		callback_registered = true;
	}
	/*
	 * A new generation: the call under way may still use what it took from
	 * the old one (an invalidation can arrive whenever a lock is taken, by
	 * ANALYZE of one of our tables for instance), so that is freed when no
	 * call is under way (HotEnter).
	 */
	cache.wallets = NULL;
	cache.wallet_ids = NULL;
	cache.wallet_recheck = false;
	if (cache.cxt != NULL)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		retired = lappend(retired, cache.cxt);
		MemoryContextSwitchTo(old);
	}
	cache.cxt = AllocSetContextCreate(CacheMemoryContext, "wallet hot path",
									  ALLOCSET_SMALL_SIZES);
	cache.valid = false;
	old = MemoryContextSwitchTo(cache.cxt);
	nsp = get_namespace_oid("wallet", false);

	/* invalidations that arrive while we open the tables make us start over */
	cache.valid = true;
	for (int t = 0; t < T__COUNT; t++)
	{
		TableCache *tc = &cache.tables[t];
		const char *name = table_defs[t].name;
		Relation	rel;
		TupleDesc	desc;
		TupleConstr *constr;

		tc->relid = get_relname_relid(name, nsp);
		if (!OidIsValid(tc->relid) && SINCE_11_TABLE(t))
		{
			memset(tc, 0, sizeof(*tc));
			continue;
		}
		if (!OidIsValid(tc->relid))
			elog(ERROR, "wallet: table wallet.%s is missing", name);
		rel = table_open(tc->relid, AccessShareLock);
		desc = RelationGetDescr(rel);
		constr = desc->constr;
		for (int c = 0; table_defs[t].columns[c].name; c++)
		{
			const HotColumn *cd = &table_defs[t].columns[c];
			AttrNumber	a = get_attnum(tc->relid, cd->name);

			if (a <= 0 || TupleDescAttr(desc, a - 1)->atttypid != cd->type)
				elog(ERROR, "wallet: column wallet.%s.%s is missing or not of type %s",
					 name, cd->name, format_type_be(cd->type));
			tc->att[c] = a;
		}
		if (t == T_WALLET)
		{
			/* a 1.0 schema has no holds_made: a key is always looked up among holds */
			AttrNumber	a = get_attnum(tc->relid, "holds_made");

			cache.wallet_holds_made = a > 0 && TupleDescAttr(desc, a - 1)->atttypid == BOOLOID ? a : 0;
		}
		if (t == T_ACCOUNT)
		{
			/* a 1.0 schema has neither: its low_balance is the only level */
			AttrNumber	a = get_attnum(tc->relid, "alert_back");

			cache.account_alert_back = a > 0 && TupleDescAttr(desc, a - 1)->atttypid == INT8OID ? a : 0;
			a = get_attnum(tc->relid, "alert_until");
			cache.account_alert_until = a > 0 && TupleDescAttr(desc, a - 1)->atttypid == TIMESTAMPTZOID ? a : 0;
		}
		if (t == T_GRANT)
		{
			/* a 1.0 schema has no scope: every grant serves every debit */
			AttrNumber	a = get_attnum(tc->relid, "scope");

			cache.grant_scope = a > 0 && TupleDescAttr(desc, a - 1)->atttypid == JSONBOID ? a : 0;
		}
		if (t == T_HOLD)
		{
			/* a 1.0 schema has none of these: holds then go through SQL (hold.c) */
			for (int c = 0; c < HX__COUNT; c++)
			{
				AttrNumber	a = get_attnum(tc->relid, hold11_columns[c].name);

				cache.hold11[c] = a > 0 && TupleDescAttr(desc, a - 1)->atttypid == hold11_columns[c].type ? a : 0;
			}
		}
		if (t == T_HOLD_GRANT)
		{
			cache.hold_grant_deletes = HasRule(rel, CMD_DELETE);
			for (int i = 0; rel->trigdesc && i < rel->trigdesc->numtriggers; i++)
				if (rel->trigdesc->triggers[i].tgenabled != TRIGGER_DISABLED &&
					TRIGGER_FOR_DELETE(rel->trigdesc->triggers[i].tgtype))
					cache.hold_grant_deletes = true;
		}
		CheckTable(rel, INSERTED(t), t == T_ACCOUNT || t == T_GRANT || t == T_HOLD, tc);

		tc->ncheck = constr ? constr->num_check : 0;
		tc->checks = palloc0(sizeof(ExprState *) * Max(tc->ncheck, 1));
		tc->update_checks = palloc0(sizeof(ExprState *) * Max(tc->ncheck, 1));
		for (int i = 0; i < tc->ncheck; i++)
		{
			Node	   *expr = stringToNode(constr->check[i].ccbin);
			Bitmapset  *cols = NULL;
			AttrNumber	updated = t == T_GRANT ? tc->att[G_REMAINING] :
				t == T_ACCOUNT ? tc->att[A_TOUCHES] : InvalidAttrNumber;

			tc->checks[i] = Compile((Expr *) expr);
			pull_varattnos(expr, 1, &cols);

			/*
			 * UPDATE checks every constraint on the new row.  The hot path's
			 * updates set one column (remaining, touches): a constraint that
			 * reads only other columns gives on the new row what it gave on
			 * the old one, which passed it, when it is validated (every row
			 * there passed it) and immutable (as PostgreSQL requires of a
			 * CHECK, but does not enforce).  The others are checked.
			 */
			if (updated != InvalidAttrNumber &&
				(bms_is_member(updated - FirstLowInvalidHeapAttributeNumber, cols) ||
				 bms_is_member(InvalidAttrNumber - FirstLowInvalidHeapAttributeNumber, cols) ||
				 !constr->check[i].ccvalid || contain_mutable_functions(expr)))
				tc->update_checks[i] = tc->checks[i];
		}
		tc->defaults = palloc0(sizeof(ExprState *) * desc->natts);
		if (INSERTED(t))
			for (int a = 0; a < desc->natts; a++)
			{
				Node	   *d;

				if (TupleDescAttr(desc, a)->attisdropped)
					continue;
				d = build_column_default(rel, a + 1);
				if (d)
					tc->defaults[a] = Compile((Expr *) d);
			}
		if (t == T_EVENT)
			cache.event_ids_shared = EventIdsShared(rel, tc->att[E_ID], nsp);
		tc->short_descs = palloc0(sizeof(TupleDesc) * (desc->natts + 1));
		tc->trigger_whens = NULL;
		if (rel->trigdesc != NULL && INSERTED(t))
		{
			/* compiled as TriggerEnabled does, once instead of on every call */
			TriggerDesc *td = rel->trigdesc;

			tc->trigger_whens = palloc0(sizeof(ExprState *) * td->numtriggers);
			for (int i = 0; i < td->numtriggers; i++)
			{
				Node	   *qual;

				if (td->triggers[i].tgqual == NULL)
					continue;
				qual = stringToNode(td->triggers[i].tgqual);
				ChangeVarNodes(qual, PRS2_OLD_VARNO, INNER_VAR, 0);
				ChangeVarNodes(qual, PRS2_NEW_VARNO, OUTER_VAR, 0);
				qual = (Node *) make_ands_implicit((Expr *) qual);
				tc->trigger_whens[i] = ExecInitQual((List *) expression_planner((Expr *) qual), NULL);
			}
		}
		memset(&tc->held, 0, sizeof(tc->held));
		if (t == T_ACCOUNT || t == T_GRANT || INSERTED(t))
			IndexesBuild(rel, tc);
		table_close(rel, NoLock);
	}
	memset(cache.index_held, 0, sizeof(cache.index_held));
	for (int i = 0; i < I__COUNT; i++)
	{
		const TableCache *tc = &cache.tables[index_defs[i].table];
		Relation	idx;

		cache.indexes[i] = get_relname_relid(index_defs[i].name, nsp);
		if (SINCE_11_INDEX(i) && (!OidIsValid(cache.indexes[i]) || !OidIsValid(tc->relid)))
		{
			cache.indexes[i] = InvalidOid;
			cache.index_lock[i] = &cache.index_held[i];
			continue;
		}
		if (!OidIsValid(cache.indexes[i]))
			elog(ERROR, "wallet: index wallet.%s is missing", index_defs[i].name);
		/* one record per index, so that a lock taken to read it counts for the write */
		cache.index_lock[i] = &cache.index_held[i];
		for (int k = 0; k < tc->nindexes; k++)
			if (tc->index_oids[k] == cache.indexes[i])
				cache.index_lock[i] = &tc->index_held[k];
		idx = index_open(cache.indexes[i], AccessShareLock);
		if (idx->rd_index->indrelid != tc->relid || idx->rd_rel->relam != BTREE_AM_OID ||
			idx->rd_index->indnkeyatts < index_defs[i].nkeys)
			elog(ERROR, "wallet: index wallet.%s is not the btree the hot path expects",
				 index_defs[i].name);
		for (int k = 0; k < index_defs[i].nkeys; k++)
			if (idx->rd_index->indkey.values[k] != tc->att[index_defs[i].keys[k]])
				elog(ERROR, "wallet: index wallet.%s is not on the columns the hot path expects",
						index_defs[i].name);
		index_close(idx, NoLock);
	}

	cache.line_seq = get_relname_relid("line_id_seq", nsp);
	if (!OidIsValid(cache.line_seq))
		elog(ERROR, "wallet: sequence wallet.line_id_seq is missing");

	MemoryContextSwitchTo(old);
	if (key_desc == NULL)
	{
		/* the caller of HotKeyFind keeps it: not in a generation */
		old = MemoryContextSwitchTo(TopMemoryContext);
		key_desc = CreateTemplateTupleDesc(9);
		TupleDescInitEntry(key_desc, 1, "kind", TEXTOID, -1, 0);
		TupleDescInitEntry(key_desc, 2, "id", INT8OID, -1, 0);
		TupleDescInitEntry(key_desc, 3, "meter", TEXTOID, -1, 0);
		TupleDescInitEntry(key_desc, 4, "quantity", NUMERICOID, -1, 0);
		TupleDescInitEntry(key_desc, 5, "dimensions", JSONBOID, -1, 0);
		TupleDescInitEntry(key_desc, 6, "asset", TEXTOID, -1, 0);
		TupleDescInitEntry(key_desc, 7, "amount", INT8OID, -1, 0);
		TupleDescInitEntry(key_desc, 8, "balance_after", INT8OID, -1, 0);
		TupleDescInitEntry(key_desc, 9, "hold_id", INT8OID, -1, 0);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Open a relation with a lock; when this (sub)transaction already took at
 * least that lock on it (held says), straight from the relcache.
 */
static Relation
OpenRelation(Oid relid, LOCKMODE mode, HeldLock *held)
{
	Relation	rel;

	if (held->lxid == MyProc->lxid && held->subxid == GetCurrentSubTransactionId() &&
		held->mode >= mode)
	{
		rel = RelationIdGetRelation(relid);
		if (!RelationIsValid(rel))
			elog(ERROR, "could not open relation with OID %u", relid);
		return rel;
	}
	rel = relation_open(relid, mode);
	held->lxid = MyProc->lxid;
	held->subxid = GetCurrentSubTransactionId();
	held->mode = mode;
	return rel;
}

/*
 * After an invalidation of wallet.wallet (most often a wallet row changed):
 * is it still the table the hot path knows, same columns, same row security?
 * Then nothing else need be looked up again.
 */
static bool
WalletTableSame(void)
{
	const TableCache *tc = &cache.tables[T_WALLET];
	Oid			nsp = get_namespace_oid("wallet", true);
	HeapTuple	tup;
	bool		same;

	cache.wallet_recheck = false;
	if (!OidIsValid(nsp) || get_relname_relid(table_defs[T_WALLET].name, nsp) != tc->relid)
		return false;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(tc->relid));
	if (!HeapTupleIsValid(tup))
		return false;
	same = ((Form_pg_class) GETSTRUCT(tup))->relrowsecurity == tc->rls;
	ReleaseSysCache(tup);
	for (int c = 0; same && table_defs[T_WALLET].columns[c].name; c++)
	{
		AttrNumber	a = get_attnum(tc->relid, table_defs[T_WALLET].columns[c].name);

		same = a == tc->att[c] && get_atttype(tc->relid, a) == table_defs[T_WALLET].columns[c].type;
	}
	if (same)
	{
		/* the optional holds_made: there as it was, or absent as it was */
		AttrNumber	a = get_attnum(tc->relid, "holds_made");

		same = (a > 0 && get_atttype(tc->relid, a) == BOOLOID ? a : 0) == cache.wallet_holds_made;
	}
	return same;
}

/*
 * open a table (rebuilding what we know of it first if it changed: the
 * invalidations that locking it accepts may say so)
 */
static Relation
OpenTable(HotTable t, LOCKMODE mode)
{
	for (;;)
	{
		Relation	rel;

		if (!cache.valid)
			CacheBuild();
		if (t == T_WALLET && cache.wallet_recheck && !WalletTableSame())
			cache.valid = false;
		if (!cache.valid)
			continue;
		rel = OpenRelation(cache.tables[t].relid, mode, &cache.tables[t].held);
		if (cache.valid)
		{
			if (cache.tables[t].rls)
				CheckRowSecurity(t);
			return rel;
		}
		relation_close(rel, NoLock);
	}
}

/*
 * open an index of ours to read (mode: AccessShareLock, or RowExclusiveLock
 * when this call will insert into it too); the caller has opened its table
 */
static Relation
OpenIndex(HotIndex i, LOCKMODE mode)
{
	/* an invalidation meanwhile is for the next call: this one goes on */
	return OpenRelation(cache.indexes[i], mode, cache.index_lock[i]);
}

#define ATT(t, c) (cache.tables[(t)].att[(c)])

/* the privilege a statement would have needed (a superuser has them all) */
static void
CheckPrivilege(HotTable t, AclMode mode)
{
	if (!superuser() &&
		pg_class_aclcheck(cache.tables[t].relid, GetUserId(), mode) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, table_defs[t].name);
}

/*
 * A snapshot for reading under the lock: what a new statement would see, our
 * own earlier writes included.  The caller pops it.
 */
static Snapshot
PushFreshSnapshot(void)
{
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	return GetActiveSnapshot();
}

/* a scan key on an index column, in the index's collation */
static void
Key(ScanKey key, Relation idx, int col, RegProcedure eqproc, Datum value)
{
	ScanKeyEntryInitialize(key, 0, col + 1, BTEqualStrategyNumber, InvalidOid,
						   idx->rd_indcollation[col], eqproc, value);
}

/*
 * index_getnext_slot for the tables whose rows the hot path updates in place
 * (HOT): grants on every debit, balance rows and holds on holds.  The heap's
 * own fetch prunes a page whenever its free space is below the fillfactor's
 * reserve, which a page filled to its fillfactor is again after one update:
 * so every read pruned the one dead version the update before it left (about
 * 15k instructions and a WAL record per debit).  Here the page is pruned (by
 * the same heap_page_prune_opt) only once its free space is below
 * LAZY_PRUNE_FREE, still room for a few new versions, or when the row found
 * is too wide for its next version to fit: one prune then clears the dead
 * versions of several updates.  Pruning is physical upkeep only;
 * when it happens changes no result.  *buf is the pin the scan holds
 * (InvalidBuffer at first; the caller releases it).  A table moved to
 * another access method, or a snapshot that may see several versions of a
 * row (not MVCC), is read by index_getnext_slot.
 */
#define LAZY_PRUNE_FREE (BLCKSZ / 8)

static bool
IndexNextLazyPrune(IndexScanDesc scan, TupleTableSlot *slot, Buffer *buf)
{
	BufferHeapTupleTableSlot *bslot = (BufferHeapTupleTableSlot *) slot;
	Relation	rel = scan->heapRelation;

	if (!TTS_IS_BUFFERTUPLE(slot) || rel->rd_tableam != GetHeapamTableAmRoutine() ||
		!IsMVCCSnapshot(scan->xs_snapshot))
		return index_getnext_slot(scan, ForwardScanDirection, slot);
	for (;;)
	{
		ItemPointer tid = index_getnext_tid(scan, ForwardScanDirection);
		ItemPointerData root;
		BlockNumber blk;
		bool		found;
		bool		all_dead = false;

		if (tid == NULL)
			return false;
		blk = ItemPointerGetBlockNumber(tid);
		if (!BufferIsValid(*buf) || BufferGetBlockNumber(*buf) != blk)
		{
			*buf = ReleaseAndReadBuffer(*buf, rel, blk);
			if (PageGetHeapFreeSpace(BufferGetPage(*buf)) < LAZY_PRUNE_FREE)
				heap_page_prune_opt(rel, *buf);
		}
		root = *tid;
		LockBuffer(*buf, BUFFER_LOCK_SHARE);
		found = heap_hot_search_buffer(tid, rel, *buf, scan->xs_snapshot, &bslot->base.tupdata,
									   &all_dead, true);
		if (found && PageGetHeapFreeSpace(BufferGetPage(*buf)) < MAXALIGN(bslot->base.tupdata.t_len))
		{
			/*
			 * A wide row whose next version would not fit: prune now, then
			 * find it again from the root of its chain (the search moved
			 * *tid to the version found, where no search may start).
			 */
			LockBuffer(*buf, BUFFER_LOCK_UNLOCK);
			heap_page_prune_opt(rel, *buf);
			*tid = root;
			LockBuffer(*buf, BUFFER_LOCK_SHARE);
			found = heap_hot_search_buffer(tid, rel, *buf, scan->xs_snapshot,
										   &bslot->base.tupdata, &all_dead, true);
		}
		LockBuffer(*buf, BUFFER_LOCK_UNLOCK);
		if (found)
		{
			ExecStoreBufferHeapTuple(&bslot->base.tupdata, slot, *buf);
			pgstat_count_heap_fetch(scan->indexRelation);
			return true;
		}
		/* as index_fetch_heap: a chain dead to everyone lets the index mark its entry */
		if (!scan->xactStartedInRecovery)
			scan->kill_prior_tuple = all_dead;
	}
}

/* the first row an index finds for the keys, into slot; false if none */
static bool
IndexFetch(Relation rel, Relation idx, Snapshot snap, ScanKey keys, int nkeys,
		   TupleTableSlot *slot)
{
	IndexScanDesc scan = index_beginscan(rel, idx, snap, nkeys, 0);
	Buffer		buf = InvalidBuffer;
	bool		found;

	index_rescan(scan, keys, nkeys, NULL, 0);
	found = IndexNextLazyPrune(scan, slot, &buf);
	index_endscan(scan);
	if (BufferIsValid(buf))
		ReleaseBuffer(buf);
	return found;
}

/* a bigint column of a slot (0 when null) */
static int64
SlotInt64(TupleTableSlot *slot, AttrNumber att, bool *isnull)
{
	Datum		d = slot_getattr(slot, att, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

/* a text column of a slot, as a C string (NULL when null) */
static char *
SlotText(TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * A copy of a row with one bigint column set to value.  When the column is
 * stored (not null, not past the end of a short row) the row's layout does
 * not change: the copy gets the new value where the old one was, instead of
 * being deformed and formed anew as heap_modify_tuple_by_cols does.
 */
static HeapTuple
WithInt64(HeapTuple tup, TupleDesc desc, int attnum, int64 value)
{
	HeapTuple	copy;
	char	   *tp;
	bits8	   *bp;
	bool		hasnulls = HeapTupleHasNulls(tup);
	uint32		off = 0;
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);

	Assert(att->attlen == sizeof(int64) && att->attbyval);
	if (attnum > HeapTupleHeaderGetNatts(tup->t_data) ||
		(hasnulls && att_isnull(attnum - 1, tup->t_data->t_bits)))
	{
		Datum		d = Int64GetDatum(value);
		bool		isnull = false;

		return heap_modify_tuple_by_cols(tup, desc, 1, &attnum, &d, &isnull);
	}
	copy = heap_copytuple(tup);
	tp = (char *) copy->t_data + copy->t_data->t_hoff;
	bp = copy->t_data->t_bits;
	for (int i = 0; i < attnum - 1; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (hasnulls && att_isnull(i, bp))
			continue;
		off = att_align_pointer(off, a->attalign, a->attlen, tp + off);
		off = att_addlength_pointer(off, a->attlen, tp + off);
	}
	off = att_align_nominal(off, att->attalign);
	store_att_byval(tp + off, Int64GetDatum(value), sizeof(int64));
	return copy;
}

/* --------------------------------------------- write targets, the lock */

/*
 * An executor state for writing to rel: its indexes open when indexes, its
 * CHECK constraints compiled already, and its BEFORE ROW INSERT triggers
 * ready to fire when inserts (an update fires none).
 */
static ResultRelInfo *
Target(EState *estate, Relation rel, HotTable t, bool inserts, bool indexes)
{
	ResultRelInfo *rri = makeNode(ResultRelInfo);

	if (inserts && rel->trigdesc && rel->trigdesc->trig_insert_before_row && INSERTED(t))
	{
		InitResultRelInfo(rri, rel, 0, NULL, 0);
		if (cache.tables[t].trigger_whens != NULL)
			memcpy(rri->ri_TrigWhenExprs, cache.tables[t].trigger_whens,
				   sizeof(ExprState *) * rri->ri_TrigDesc->numtriggers);
	}
	else
	{
		/* no trigger fires here: skip copying the trigger descriptor */
		rri->ri_RelationDesc = rel;
	}
	if (cache.tables[t].ncheck > 0)
		rri->ri_ConstraintExprs = cache.tables[t].checks;
	if (indexes)
	{
		/* ExecOpenIndices, with the IndexInfos built once */
		TableCache *tc = &cache.tables[t];

		rri->ri_NumIndices = tc->nindexes;
		rri->ri_IndexRelationDescs = palloc0(sizeof(Relation) * Max(tc->nindexes, 1));
		rri->ri_IndexRelationInfo = tc->index_infos;
		/* a partial index is opened by IndexesFor, if the row is in it */
		for (int i = 0; i < tc->nindexes; i++)
			if (tc->index_infos[i]->ii_Predicate == NIL)
				rri->ri_IndexRelationDescs[i] = OpenRelation(tc->index_oids[i], RowExclusiveLock,
															 &tc->index_held[i]);
	}
	return rri;
}

/*
 * Before ExecInsertIndexTuples (which skips an index left NULL): open the
 * partial indexes of rri whose predicate the row in slot satisfies.  A row
 * outside a partial index (a debit's event is outside event_line) then
 * neither opens nor locks it; nothing can change the predicate of an index
 * but a new index, which the table's lock and invalidation cover.
 */
static void
IndexesFor(ResultRelInfo *rri, HotTable t, TupleTableSlot *slot, EState *estate)
{
	TableCache *tc = &cache.tables[t];
	ExprContext *econtext = NULL;

	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		IndexInfo  *ii = rri->ri_IndexRelationInfo[i];

		if (rri->ri_IndexRelationDescs[i] != NULL || ii->ii_Predicate == NIL)
			continue;
		if (econtext == NULL)
		{
			econtext = GetPerTupleExprContext(estate);
			econtext->ecxt_scantuple = slot;
		}
		if (ExecQual(ii->ii_PredicateState, econtext))
			rri->ri_IndexRelationDescs[i] = OpenRelation(tc->index_oids[i], RowExclusiveLock,
														 &tc->index_held[i]);
	}
}

/* Target for an insert into rel, or for the constraints of an update (indexes false) */
static ResultRelInfo *
WriteTarget(EState *estate, Relation rel, HotTable t, bool indexes)
{
	return Target(estate, rel, t, true, indexes);
}

/* close what Target opened (keeping the locks, which held records) */
static void
CloseTarget(ResultRelInfo *rri)
{
	for (int i = 0; i < rri->ri_NumIndices; i++)
		if (rri->ri_IndexRelationDescs[i] != NULL)
			index_close(rri->ri_IndexRelationDescs[i], NoLock);
	rri->ri_NumIndices = 0;
}

/*
 * the index entries of an updated row that did not stay on its HOT chain (an
 * update: no INSERT trigger state)
 */
static void
IndexNewVersion(Relation rel, HotTable t, TupleTableSlot *slot, EState *estate)
{
	EState	   *own = estate ? NULL : CreateExecutorState();
	ResultRelInfo *rri = Target(estate ? estate : own, rel, t, false, true);

	IndexesFor(rri, t, slot, estate ? estate : own);
	ExecInsertIndexTuples(rri, slot, estate ? estate : own, false, false, NULL, NIL);
	CloseTarget(rri);
	if (own)
		FreeExecutorState(own);
}

/*
 * Replace the row version at *tid (of table t) by newslot's tuple, as
 * ExecUpdate does after its checks: under REPEATABLE READ and SERIALIZABLE a
 * change committed since the snapshot is a serialization failure (under READ
 * COMMITTED the caller holds the balance lock, so a concurrent change is a
 * broken invariant); the new version gets index entries unless it stayed on
 * its HOT chain.
 */
static void
UpdateVersion(Relation rel, HotTable t, ItemPointer tid, TupleTableSlot *newslot,
			  Snapshot snap, CommandId cid, EState *estate)
{
	TM_FailureData tmfd;
	TM_Result	tm;
	LockTupleMode lockmode;
	bool		update_indexes;

	tm = table_tuple_update(rel, tid, newslot, cid, snap, InvalidSnapshot, true,
							&tmfd, &lockmode, &update_indexes);
	if ((tm == TM_Updated || tm == TM_Deleted) && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
	if (tm != TM_Ok)
		elog(ERROR, "wallet: a row of wallet.%s changed under the balance lock (%d)",
			 table_defs[t].name, tm);
	if (update_indexes)
		IndexNewVersion(rel, t, newslot, estate);
}

/*
 * HotWalletIds' index scan of the wallets by customer, begun once and
 * started again for each customer it looks up (NULL outside HotWalletIds)
 */
static IndexScanDesc wallet_scan = NULL;

/* IndexFetch of a wallet, through wallet_scan when it is one of that index and snapshot */
static bool
WalletIndexFetch(Relation wrel, Relation widx, Snapshot snap, ScanKey key, TupleTableSlot *slot)
{
	if (wallet_scan == NULL || wallet_scan->indexRelation != widx ||
		wallet_scan->xs_snapshot != snap)
		return IndexFetch(wrel, widx, snap, key, 1, slot);
	index_rescan(wallet_scan, key, 1, NULL, 0);
	return index_getnext_slot(wallet_scan, ForwardScanDirection, slot);
}

/*
 * The wallet of a customer (when not NULL) or with an id: its id, customer
 * and status into acct, whether a hold was ever placed on it into
 * *holds_made.  False if there is none.  *cached: it came from what this
 * backend kept (the caller may ask again with use_cache false).  A wallet
 * read by id is kept as one read by its customer, and found by id again
 * through wallet_ids (a capture, a release).
 */
static bool
WalletFind(const char *customer, int64 wallet_id, Snapshot snap, uint64 ticket, Account *acct,
		   bool use_cache, bool *cached, bool *holds_made)
{
	Relation	wrel;
	Relation	widx;
	TupleTableSlot *wslot;
	ScanKeyData key;
	WalletEntry *we = NULL;
	bool		isnull;
	bool		cacheable = customer != NULL && strlen(customer) < WALLET_KEY_SIZE;
	char		ckey[WALLET_KEY_SIZE];

	*cached = false;
	if (cache.wallets != NULL && cache.wallets_stamp != wallet_coherence.generation)
		ForgetWallets();
	if (cacheable)
	{
		memset(ckey, 0, sizeof(ckey));
		strlcpy(ckey, customer, sizeof(ckey));
		if (cache.wallets != NULL)
			we = hash_search(cache.wallets, ckey, use_cache ? HASH_FIND : HASH_REMOVE, NULL);
		if (we != NULL && use_cache)
		{
			*cached = true;
			acct->wallet_id = we->wallet_id;
			acct->customer = pstrdup(customer);
			strlcpy(acct->status, we->status, sizeof(acct->status));
			*holds_made = we->holds_made;
			return true;
		}
	}
	else if (customer == NULL && cache.wallet_ids != NULL)
	{
		/* by id: the customer kept for it, then its entry (dropped too when !use_cache) */
		WalletIdEntry *wi = hash_search(cache.wallet_ids, &wallet_id, HASH_FIND, NULL);

		if (wi != NULL)
		{
			we = hash_search(cache.wallets, wi->customer, use_cache ? HASH_FIND : HASH_REMOVE, NULL);
			if (we != NULL && use_cache && we->wallet_id == wallet_id)
			{
				*cached = true;
				acct->wallet_id = wallet_id;
				acct->customer = pstrdup(wi->customer);
				strlcpy(acct->status, we->status, sizeof(acct->status));
				*holds_made = we->holds_made;
				return true;
			}
			hash_search(cache.wallet_ids, &wallet_id, HASH_REMOVE, NULL);
		}
	}

	wrel = OpenTable(T_WALLET, AccessShareLock);
	widx = OpenIndex(customer ? I_WALLET_CUSTOMER : I_WALLET_PKEY, AccessShareLock);
	wslot = table_slot_create(wrel, NULL);
	if (customer)
		Key(&key, widx, 0, F_TEXTEQ, CStringGetTextDatum(customer));
	else
		Key(&key, widx, 0, F_INT8EQ, Int64GetDatum(wallet_id));
	if (!WalletIndexFetch(wrel, widx, snap, &key, wslot))
	{
		ExecDropSingleTupleTableSlot(wslot);
		index_close(widx, NoLock);
		table_close(wrel, NoLock);
		return false;
	}
	acct->wallet_id = SlotInt64(wslot, ATT(T_WALLET, W_ID), &isnull);
	acct->customer = SlotText(wslot, ATT(T_WALLET, W_CUSTOMER));
	strlcpy(acct->status, SlotText(wslot, ATT(T_WALLET, W_STATUS)), sizeof(acct->status));
	*holds_made = cache.wallet_holds_made == 0 ||
		DatumGetBool(slot_getattr(wslot, cache.wallet_holds_made, &isnull)) || isnull;
	ExecDropSingleTupleTableSlot(wslot);
	index_close(widx, NoLock);
	table_close(wrel, NoLock);

	/* one read by id is kept as one read by its customer would be */
	if (customer == NULL && strlen(acct->customer) < WALLET_KEY_SIZE)
	{
		memset(ckey, 0, sizeof(ckey));
		strlcpy(ckey, acct->customer, sizeof(ckey));
		cacheable = true;
	}

	/* kept only if no invalidation came since the one read before snap was taken */
	if (cacheable && cache.valid && ticket == wallet_coherence.generation)
	{
		WalletIdEntry *wi;

		if (cache.wallets != NULL && hash_get_num_entries(cache.wallets) >= MAX_WALLETS)
			ForgetWallets();
		if (cache.wallets == NULL)
		{
			HASHCTL		ctl;

			ctl.keysize = WALLET_KEY_SIZE;
			ctl.entrysize = sizeof(WalletEntry);
			ctl.hcxt = cache.cxt;
			cache.wallets = hash_create("wallet hot path wallets", 1024, &ctl,
										HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
			ctl.keysize = sizeof(int64);
			ctl.entrysize = sizeof(WalletIdEntry);
			cache.wallet_ids = hash_create("wallet hot path wallet ids", 1024, &ctl,
										   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
			cache.wallets_stamp = ticket;
		}
		we = hash_search(cache.wallets, ckey, HASH_ENTER, NULL);
		we->wallet_id = acct->wallet_id;
		strlcpy(we->status, acct->status, sizeof(we->status));
		we->holds_made = *holds_made;
		wi = hash_search(cache.wallet_ids, &acct->wallet_id, HASH_ENTER, NULL);
		memcpy(wi->customer, ckey, sizeof(wi->customer));
		CoherenceFilled(&wallet_coherence);
	}
	return true;
}

/*
 * The balance row in slot, locked as SELECT ... FOR NO KEY UPDATE locks it
 * under READ COMMITTED (nodeLockRows.c): waiting for a concurrent writer,
 * then its latest version, which goes into slot.  Returns slot.  A row
 * deleted meanwhile (a shard's prune took the wallet away) is WL001, as a
 * call that started a moment later gets.
 */
static bool
AccountRowTryLock(Relation arel, TupleTableSlot *slot, Snapshot snap, CommandId cid)
{
	ItemPointerData tid = slot->tts_tid;
	TM_FailureData tmfd;
	TM_Result	tm;

	tm = table_tuple_lock(arel, &tid, snap, slot, cid, LockTupleNoKeyExclusive,
						  LockWaitBlock, TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
	if (tm == TM_Deleted)
	{
		/* the wallets kept may name it: look them up again */
		CoherenceInvalidate(&wallet_coherence);
		return false;
	}
	if (tm != TM_Ok)
		elog(ERROR, "wallet: unexpected result %d locking a balance row", tm);
	return true;
}

/* AccountRowTryLock, WL001 when the row was deleted */
static TupleTableSlot *
AccountRowLock(Relation arel, TupleTableSlot *slot, Snapshot snap, CommandId cid,
			   const Account *acct)
{
	if (!AccountRowTryLock(arel, slot, snap, cid))
	{
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_NO_WALLET),
				 acct->customer ? errmsg("no wallet for customer \"%.100s\"", acct->customer) :
				 errmsg("no wallet with id " INT64_FORMAT, acct->wallet_id),
				 errdetail("The wallet's balance row was deleted while this call waited for it.")));
	}
	return slot;
}

/*
 * The balance row in slot, updated as `UPDATE wallet.account SET touches =
 * touches + 1` updates it under REPEATABLE READ or SERIALIZABLE
 * (nodeModifyTable.c): its replica identity and constraints checked,
 * waiting for a concurrent writer, and failing if that one committed a
 * change.  Returns the new version, in a new slot.
 */
static TupleTableSlot *
AccountTouch(Relation arel, TupleTableSlot *slot, Snapshot snap, CommandId cid)
{
	ItemPointerData tid = slot->tts_tid;
	int			touches_col = ATT(T_ACCOUNT, A_TOUCHES);
	TupleTableSlot *newslot = MakeSingleTupleTableSlot(RelationGetDescr(arel), &TTSOpsHeapTuple);
	bool		isnull;
	int64		t;

	if (pg_add_s64_overflow(SlotInt64(slot, touches_col, &isnull), 1, &t))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("bigint out of range")));
	ExecStoreHeapTuple(WithInt64(ExecFetchSlotHeapTuple(slot, false, NULL), RelationGetDescr(arel),
								 touches_col, t),
					   newslot, true);
	CheckCmdReplicaIdentity(arel, CMD_UPDATE);
	if (RelationGetDescr(arel)->constr)
	{
		/* the constraints the update can break (CacheBuildGeneration) */
		EState	   *estate = CreateExecutorState();
		ResultRelInfo *rri = WriteTarget(estate, arel, T_ACCOUNT, false);

		rri->ri_ConstraintExprs = cache.tables[T_ACCOUNT].update_checks;
		ExecConstraints(rri, newslot, estate);
		FreeExecutorState(estate);
	}
	/* only under REPEATABLE READ and SERIALIZABLE: a concurrent change fails */
	UpdateVersion(arel, T_ACCOUNT, &tid, newslot, snap, cid, NULL);
	return newslot;
}

/*
 * Where this backend last locked each balance row under READ COMMITTED (a
 * debit, HotAccountLock; a batch, HotAccountLockMany): a backend names the
 * same customers again and again.  Only a hint: the row there is used when it is the version the
 * snapshot sees and has the key (the primary key lets one version of a key be
 * visible), else the index finds it.  Emptied when full.
 */
typedef struct AccountTid
{
	int64		wallet_id;		/* hash key, with asset */
	char		asset[NAMEDATALEN];
	ItemPointerData tid;
} AccountTid;

#define MAX_ACCOUNT_TIDS 65536

static HTAB *account_tids = NULL;

/* the hint's entry of a balance row (a zeroed key) */
static AccountTid *
AccountTidEntry(int64 wallet_id, const char *asset, bool enter)
{
	AccountTid	key;

	if (account_tids == NULL || (enter && hash_get_num_entries(account_tids) >= MAX_ACCOUNT_TIDS))
	{
		HASHCTL		ctl;

		if (account_tids != NULL)
			hash_destroy(account_tids);
		account_tids = NULL;
		if (!enter)
			return NULL;
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = offsetof(AccountTid, tid);
		ctl.entrysize = sizeof(AccountTid);
		ctl.hcxt = TopMemoryContext;
		account_tids = hash_create("wallet balance row hints", 1024, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.wallet_id = wallet_id;
	strlcpy(key.asset, asset, sizeof(key.asset));
	return hash_search(account_tids, &key, enter ? HASH_ENTER : HASH_FIND, NULL);
}

/*
 * The balance row (wallet_id, asset) where the hint says, into slot, if it is
 * there: the version snap sees, with that key.  nblocks: the table's length
 * (it cannot shrink while the caller holds its lock; 0: no hint).  *hint: the
 * hint's entry, NULL if none.
 */
static bool
AccountAtHint(Relation arel, Snapshot snap, BlockNumber nblocks, int64 wallet_id,
			  const char *asset, TupleTableSlot *slot, AccountTid **hint)
{
	AccountTid *h = nblocks > 0 ? AccountTidEntry(wallet_id, asset, false) : NULL;
	ItemPointerData tid;
	bool		isnull;
	char	   *code;
	bool		same;

	*hint = h;
	if (h == NULL || ItemPointerGetBlockNumber(&h->tid) >= nblocks)
		return false;
	tid = h->tid;
	if (!table_tuple_fetch_row_version(arel, &tid, snap, slot))
		return false;
	same = SlotInt64(slot, ATT(T_ACCOUNT, A_WALLET_ID), &isnull) == wallet_id && !isnull;
	if (same)
	{
		code = SlotText(slot, ATT(T_ACCOUNT, A_ASSET));
		same = code != NULL && strcmp(code, asset) == 0;
	}
	if (!same)
		ExecClearTuple(slot);
	return same;
}

/* the 1.1 levels of a balance row besides low_balance (a 1.0 schema has none) */
static void
AccountAlertLevels(TupleTableSlot *slot, Account *acct)
{
	bool		isnull = true;

	acct->alert_back = cache.account_alert_back ?
		SlotInt64(slot, cache.account_alert_back, &isnull) : 0;
	acct->has_alert_back = !isnull;
	isnull = true;
	acct->alert_until = cache.account_alert_until ?
		DatumGetTimestampTz(slot_getattr(slot, cache.account_alert_until, &isnull)) : 0;
	acct->has_alert_until = !isnull;
}

/*
 * Lock the balance row of a wallet in an asset, found by customer (when not
 * NULL) or by wallet id, and read it into acct.  Under READ COMMITTED the row
 * is locked as `SELECT ... FOR NO KEY UPDATE` locks it (waiting for a
 * concurrent writer, then locking its latest version): every read under the
 * lock takes a fresh snapshot, and a lock writes no new row version (no
 * dead row for pruning to clear, less WAL).  Under REPEATABLE READ and
 * SERIALIZABLE it is updated, as `UPDATE wallet.account SET touches =
 * touches + 1` would, so that a later caller with an older snapshot fails
 * instead of drawing from what that snapshot saw.  (A READ COMMITTED debit
 * committed after such a snapshot changed a grant row or the overdraft, which
 * the older caller then fails to write: the same serialization failure.)
 * Returns HOT_LOCKED, HOT_NO_WALLET or HOT_NO_ACCOUNT (the wallet has no
 * balance row in the asset yet).
 */
HotLockResult
HotAccountLock(const char *customer, int64 wallet_id, const AssetInfo *asset, Account *acct)
{
	Relation	arel;
	Relation	aidx = NULL;
	TupleTableSlot *slot;
	TupleTableSlot *newslot = NULL;
	AccountTid *hint = NULL;
	BlockNumber nblocks;
	TupleTableSlot *row;
	ScanKeyData keys[2];
	Snapshot	snap;
	bool		isnull;
	bool		use_cache = true;
	bool		cached;
	bool		holds_made = true;
	bool		marked;
	CommandId	cid;
	uint64		ticket;

	HotEnter();
	PreventCommandIfReadOnly("UPDATE");
	PreventCommandIfParallelMode("UPDATE");
	/* the invalidations first, then the snapshot the wallet is read with */
	ticket = CoherenceAccept(&wallet_coherence);
	snap = PushFreshSnapshot();
	arel = OpenTable(T_ACCOUNT, RowExclusiveLock);
	CheckPrivilege(T_WALLET, ACL_SELECT);
	CheckPrivilege(T_ACCOUNT, ACL_SELECT | ACL_UPDATE);
	slot = table_slot_create(arel, NULL);
	/* under READ COMMITTED, where this backend last locked the row (REPEATABLE READ: the index) */
	nblocks = IsolationUsesXactSnapshot() ? 0 : RelationGetNumberOfBlocks(arel);
	for (;;)
	{
		HotLockResult none = HOT_NO_WALLET;

		/* the wallet, then its balance row in the asset */
		if (WalletFind(customer, wallet_id, snap, ticket, acct, use_cache, &cached, &holds_made))
		{
			if (AccountAtHint(arel, snap, nblocks, acct->wallet_id, asset->code, slot, &hint))
				break;
			if (aidx == NULL)
				aidx = OpenIndex(I_ACCOUNT_PKEY, AccessShareLock);
			Key(&keys[0], aidx, 0, F_INT8EQ, Int64GetDatum(acct->wallet_id));
			Key(&keys[1], aidx, 1, F_TEXTEQ, CStringGetTextDatum(asset->code));
			if (IndexFetch(arel, aidx, snap, keys, 2, slot))
				break;
			none = HOT_NO_ACCOUNT;
		}
		if (!cached)
		{
			ExecDropSingleTupleTableSlot(slot);
			if (aidx != NULL)
				index_close(aidx, NoLock);
			table_close(arel, NoLock);
			PopActiveSnapshot();
			HotLeave();
			return none;
		}

		/*
		 * No balance row for the wallet id this backend kept: that wallet
		 * may be gone (a shard's prune runs without triggers, so no
		 * invalidation said so).  Look it up again.
		 */
		use_cache = false;
	}

	cid = GetCurrentCommandId(true);
	if (IsolationUsesXactSnapshot() && cache.tables[T_ACCOUNT].by_sql)
		Unsupported("account",
					"an UPDATE trigger, a rule or a stored generated column (under REPEATABLE READ the balance row is updated)");
	if (IsolationUsesXactSnapshot())
		row = newslot = AccountTouch(arel, slot, snap, cid);
	else
	{
		row = AccountRowLock(arel, slot, snap, cid, acct);
		if (hint == NULL)
			hint = AccountTidEntry(acct->wallet_id, asset->code, true);
		hint->tid = row->tts_tid;
	}

	strlcpy(acct->asset, asset->code, sizeof(acct->asset));
	acct->scale = asset->scale;
	acct->overdraft_limit = SlotInt64(row, ATT(T_ACCOUNT, A_OVERDRAFT_LIMIT), &isnull);
	acct->low_balance = SlotInt64(row, ATT(T_ACCOUNT, A_LOW_BALANCE), &isnull);
	acct->has_low_balance = !isnull;
	AccountAlertLevels(row, acct);
	acct->max_holds = DatumGetInt32(slot_getattr(row, ATT(T_ACCOUNT, A_MAX_HOLDS), &isnull));
	acct->has_max_holds = !isnull;
	acct->overdraft = SlotInt64(row, ATT(T_ACCOUNT, A_OVERDRAFT), &isnull);
	acct->held = SlotInt64(row, ATT(T_ACCOUNT, A_HELD), &isnull);
	acct->holds_open = DatumGetInt32(slot_getattr(row, ATT(T_ACCOUNT, A_HOLDS_OPEN), &isnull));
	acct->caps = DatumGetInt32(slot_getattr(row, ATT(T_ACCOUNT, A_CAPS), &isnull));
	acct->locked = true;
	AccountRowSeen(acct, &row->tts_tid);

	/*
	 * Holds of the wallet, for HotKeyFind.  What holds_made says was read
	 * before the lock, which may have waited for a session that placed the
	 * wallet's first hold: that session's invalidation was sent before it
	 * released the lock, so it is here now.  If one came, read the wallet
	 * again, under a snapshot taken after the lock.  The lock need not have
	 * waited: a commit no longer makes anyone wait a moment before its
	 * invalidation is sent (xact.c: ProcArrayEndTransaction, then
	 * AtEOXact_Inval), so a hold committed in that moment is seen on the
	 * locked row alone: an open hold in the asset is a hold.
	 */
	no_holds.stamp++;
	acct->no_holds = 0;
	holds_seen.lxid = InvalidLocalTransactionId;
	marked = holds_made;
	if (acct->holds_open > 0)
		holds_made = true;
	if (!holds_made && CoherenceAccept(&wallet_coherence) != ticket)
	{
		Account		again;
		uint64		t = wallet_coherence.generation;
		Snapshot	fresh = PushFreshSnapshot();

		if (!WalletFind(NULL, acct->wallet_id, fresh, t, &again, false, &cached, &holds_made))
			holds_made = true;
		else
			marked = holds_made;
		PopActiveSnapshot();
	}
	if (!holds_made)
	{
		acct->no_holds = no_holds.stamp;
		no_holds.wallet_id = acct->wallet_id;
		no_holds.lxid = MyProc->lxid;
		no_holds.generation = wallet_coherence.generation;
	}
	else if (marked && cache.wallet_holds_made != 0)
	{
		/* the wallet's row says so (an open hold alone is no mark: HotHoldInsert's trigger reads it) */
		holds_seen.wallet_id = acct->wallet_id;
		holds_seen.lxid = MyProc->lxid;
		holds_seen.subxid = GetCurrentSubTransactionId();
		holds_seen.generation = wallet_coherence.generation;
	}

	if (newslot != NULL)
		ExecDropSingleTupleTableSlot(newslot);
	ExecDropSingleTupleTableSlot(slot);
	if (aidx != NULL)
		index_close(aidx, NoLock);
	table_close(arel, NoLock);
	PopActiveSnapshot();
	HotLeave();
	return HOT_LOCKED;
}

/*
 * The wallet ids and statuses of n customers (0 and "" where there is none),
 * read as HotAccountLock reads a wallet before its lock (wallet_ingest, before
 * it locks any): from the wallets this backend keeps when use_cache (then
 * cached[i] says which came from there: such a wallet may be gone, see
 * HotAccountLock), else an index probe each.  holds_made[i] (when not NULL):
 * whether the wallet may have holds, as of this read.  A statement joining
 * the customers to wallet.wallet was planned as a hash join over the whole
 * table.  Returns the ticket HotWalletsSame takes after the locks.
 */
uint64
HotWalletIds(int n, const char *const *customers, bool use_cache, int64 *wallet_ids,
			 char (*statuses)[16], bool *cached, bool *holds_made)
{
	Relation	wrel;
	Relation	widx;
	Snapshot	snap;
	uint64		ticket;

	HotEnter();
	ticket = CoherenceAccept(&wallet_coherence);
	snap = PushFreshSnapshot();
	wrel = OpenTable(T_WALLET, AccessShareLock);
	widx = OpenIndex(I_WALLET_CUSTOMER, AccessShareLock);
	CheckPrivilege(T_WALLET, ACL_SELECT);
	/* one index scan for the customers not among the wallets kept */
	if (n > 1)
		wallet_scan = index_beginscan(wrel, widx, snap, 1, 0);
	PG_TRY();
	{
		for (int i = 0; i < n; i++)
		{
			Account		acct;
			bool		kept;
			bool		made = true;

			CHECK_FOR_INTERRUPTS();
			wallet_ids[i] = 0;
			statuses[i][0] = '\0';
			if (cached)
				cached[i] = false;
			if (WalletFind(customers[i], 0, snap, ticket, &acct, use_cache, &kept, &made))
			{
				if (cached)
					cached[i] = kept;
				wallet_ids[i] = acct.wallet_id;
				strlcpy(statuses[i], acct.status, sizeof(statuses[i]));
			}
			if (holds_made)
				holds_made[i] = made;
		}
	}
	PG_CATCH();
	{
		/* the abort releases what the scan holds */
		wallet_scan = NULL;
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (wallet_scan != NULL)
		index_endscan(wallet_scan);
	wallet_scan = NULL;
	index_close(widx, NoLock);
	table_close(wrel, NoLock);
	PopActiveSnapshot();
	HotLeave();
	return ticket;
}

/*
 * After the balance locks: whether no change of a wallet (its first hold
 * among them) came since HotWalletIds returned ticket, so that what it said
 * of holds_made still holds, as HotAccountLock checks after its lock.
 */
bool
HotWalletsSame(uint64 ticket)
{
	return CoherenceAccept(&wallet_coherence) == ticket;
}

/*
 * Lock the balance rows (accts[i].wallet_id, assets[i]) for i from `from`,
 * one after the other in the order given (wallet_ingest's global order), and
 * read each into accts[i]; the caller has set wallet_id, customer and status
 * (read before the lock, as HotAccountLock reads them).  Under READ
 * COMMITTED each row is locked as HotAccountLock locks it (waiting for a
 * concurrent writer, then locking its latest version); under REPEATABLE READ
 * and SERIALIZABLE as SELECT ... FOR NO KEY UPDATE locks it there (a
 * concurrent update since the snapshot is a serialization failure), which is
 * what wallet_ingest's statement did.  Returns the index of the first pair
 * that has no balance row, or whose row was deleted while the lock waited for
 * it (row_deleted: a shard's prune; the caller looks its wallet up again), n
 * when every pair is locked: the caller creates
 * that one and goes on from the next, so that rows are created and locked in
 * the one order.
 */
int
HotAccountLockMany(int from, int n, const AssetInfo *const *assets, Account *accts)
{
	Relation	arel;
	Relation	aidx;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	Snapshot	snap;
	CommandId	cid;
	BlockNumber nblocks;
	int			i;

	if (from >= n)
		return n;
	HotEnter();
	PreventCommandIfReadOnly("SELECT FOR NO KEY UPDATE");
	PreventCommandIfParallelMode("SELECT FOR NO KEY UPDATE");
	snap = PushFreshSnapshot();
	arel = OpenTable(T_ACCOUNT, RowExclusiveLock);
	aidx = OpenIndex(I_ACCOUNT_PKEY, AccessShareLock);
	CheckPrivilege(T_WALLET, ACL_SELECT);
	CheckPrivilege(T_ACCOUNT, ACL_SELECT | ACL_UPDATE);
	slot = table_slot_create(arel, NULL);
	cid = GetCurrentCommandId(true);
	/* one index scan for all, started again per balance row */
	scan = index_beginscan(arel, aidx, snap, 2, 0);
	/* under READ COMMITTED, where each row was last locked (REPEATABLE READ: the index) */
	nblocks = IsolationUsesXactSnapshot() ? 0 : RelationGetNumberOfBlocks(arel);
	for (i = from; i < n; i++)
	{
		Account    *acct = &accts[i];
		ScanKeyData keys[2];
		AccountTid *hint;
		bool		isnull;

		CHECK_FOR_INTERRUPTS();
		if (!AccountAtHint(arel, snap, nblocks, acct->wallet_id, assets[i]->code, slot, &hint))
		{
			Key(&keys[0], aidx, 0, F_INT8EQ, Int64GetDatum(acct->wallet_id));
			Key(&keys[1], aidx, 1, F_TEXTEQ, CStringGetTextDatum(assets[i]->code));
			index_rescan(scan, keys, 2, NULL, 0);
			if (!index_getnext_slot(scan, ForwardScanDirection, slot))
				break;
		}
		if (IsolationUsesXactSnapshot())
		{
			/* nodeLockRows.c under REPEATABLE READ: no following the update chain */
			ItemPointerData tid = slot->tts_tid;
			TM_FailureData tmfd;
			TM_Result	tm;

			tm = table_tuple_lock(arel, &tid, snap, slot, cid, LockTupleNoKeyExclusive,
								  LockWaitBlock, TUPLE_LOCK_FLAG_LOCK_UPDATE_IN_PROGRESS, &tmfd);
			if (tm == TM_Updated || tm == TM_Deleted)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update")));
			if (tm != TM_Ok)
				elog(ERROR, "wallet: unexpected result %d locking a balance row", tm);
		}
		else
		{
			/* deleted while the lock waited: the caller looks the wallet up again */
			if (!AccountRowTryLock(arel, slot, snap, cid))
			{
				acct->row_deleted = true;
				break;
			}
			if (hint == NULL)
				hint = AccountTidEntry(acct->wallet_id, assets[i]->code, true);
			hint->tid = slot->tts_tid;
		}

		strlcpy(acct->asset, assets[i]->code, sizeof(acct->asset));
		acct->scale = assets[i]->scale;
		acct->overdraft_limit = SlotInt64(slot, ATT(T_ACCOUNT, A_OVERDRAFT_LIMIT), &isnull);
		acct->low_balance = SlotInt64(slot, ATT(T_ACCOUNT, A_LOW_BALANCE), &isnull);
		acct->has_low_balance = !isnull;
		AccountAlertLevels(slot, acct);
		acct->max_holds = DatumGetInt32(slot_getattr(slot, ATT(T_ACCOUNT, A_MAX_HOLDS), &isnull));
		acct->has_max_holds = !isnull;
		acct->overdraft = SlotInt64(slot, ATT(T_ACCOUNT, A_OVERDRAFT), &isnull);
		acct->held = SlotInt64(slot, ATT(T_ACCOUNT, A_HELD), &isnull);
		acct->holds_open = DatumGetInt32(slot_getattr(slot, ATT(T_ACCOUNT, A_HOLDS_OPEN), &isnull));
		acct->caps = DatumGetInt32(slot_getattr(slot, ATT(T_ACCOUNT, A_CAPS), &isnull));
		acct->locked = true;
		acct->no_holds = 0;		/* HotKeyFind looks a key up among holds too */
		ExecClearTuple(slot);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(aidx, NoLock);
	table_close(arel, NoLock);
	PopActiveSnapshot();
	HotLeave();
	return i;
}

/* ------------------------------------------------------- idempotency */

/*
 * The relations and index scans of key lookups (KeyProbeScans): a scan is
 * begun at its first lookup and started again for each next one.
 */
typedef struct KeyScans
{
	Relation	erel;
	Relation	hrel;			/* NULL: holds are not searched */
	Relation	eidx;
	Relation	hidx;
	Snapshot	snap;
	IndexScanDesc escan;
	IndexScanDesc hscan;
	TupleTableSlot *eslot;
	TupleTableSlot *hslot;
} KeyScans;

/*
 * The row of (wallet_id, key) in the index of a KeyScans pair (the events',
 * or the holds'), into *slot: its scan and slot made at the first use, the
 * scan started again for each key.
 */
static bool
KeyScanOne(IndexScanDesc *scan, TupleTableSlot **slot, Relation rel, Relation idx,
		   Snapshot snap, int64 wallet_id, const char *key)
{
	ScanKeyData keys[2];

	if (*scan == NULL)
	{
		*slot = table_slot_create(rel, NULL);
		*scan = index_beginscan(rel, idx, snap, 2, 0);
	}
	Key(&keys[0], idx, 0, F_INT8EQ, Int64GetDatum(wallet_id));
	Key(&keys[1], idx, 1, F_TEXTEQ, CStringGetTextDatum(key));
	index_rescan(*scan, keys, 2, NULL, 0);
	return index_getnext_slot(*scan, ForwardScanDirection, *slot);
}

/*
 * The event or hold of a wallet's key, as HotKeyFind returns it, through the
 * scans of ks (holds searched when holds and ks->hrel)
 */
static bool
KeyProbeScans(KeyScans *ks, bool holds, int64 wallet_id, const char *key, HeapTuple *tup)
{
	TupleTableSlot *slot;
	Datum		values[9];
	bool		nulls[9];
	bool		found;

	found = KeyScanOne(&ks->escan, &ks->eslot, ks->erel, ks->eidx, ks->snap, wallet_id, key);
	slot = ks->eslot;
	if (found)
	{
		static const int cols[8] = {E_ID, E_METER, E_QUANTITY, E_DIMENSIONS, E_ASSET, E_AMOUNT,
		E_BALANCE_AFTER, E_HOLD_ID};

		slot_getallattrs(slot);
		values[0] = CStringGetTextDatum("event");
		nulls[0] = false;
		for (int i = 0; i < 8; i++)
		{
			AttrNumber	a = ATT(T_EVENT, cols[i]);

			values[i + 1] = slot->tts_values[a - 1];
			nulls[i + 1] = slot->tts_isnull[a - 1];
		}
		*tup = heap_form_tuple(key_desc, values, nulls);
	}
	ExecClearTuple(slot);
	if (!found && holds && ks->hrel != NULL)
	{
		found = KeyScanOne(&ks->hscan, &ks->hslot, ks->hrel, ks->hidx, ks->snap, wallet_id, key);
		slot = ks->hslot;
		if (found)
		{
			bool		isnull;

			memset(nulls, true, sizeof(nulls));
			values[0] = CStringGetTextDatum("hold");
			nulls[0] = false;
			values[1] = slot_getattr(slot, ATT(T_HOLD, H_ID), &nulls[1]);
			values[5] = slot_getattr(slot, ATT(T_HOLD, H_ASSET), &nulls[5]);
			values[6] = slot_getattr(slot, ATT(T_HOLD, H_AMOUNT), &nulls[6]);
			values[7] = slot_getattr(slot, ATT(T_HOLD, H_BALANCE_AFTER), &nulls[7]);
			values[8] = slot_getattr(slot, ATT(T_HOLD, H_ID), &isnull);
			nulls[8] = isnull;
			*tup = heap_form_tuple(key_desc, values, nulls);
		}
		ExecClearTuple(slot);
	}
	return found;
}

/* end the scans of ks (not the relations) */
static void
KeyScansEnd(KeyScans *ks)
{
	if (ks->escan != NULL)
	{
		index_endscan(ks->escan);
		ExecDropSingleTupleTableSlot(ks->eslot);
	}
	if (ks->hscan != NULL)
	{
		index_endscan(ks->hscan);
		ExecDropSingleTupleTableSlot(ks->hslot);
	}
}

/*
 * The event or hold of a wallet's key, as HotKeyFind returns it, with the
 * relations and indexes open and the snapshot taken (hrel NULL: holds are
 * not searched)
 */
static bool
KeyProbe(Relation erel, Relation hrel, Relation eidx, Relation hidx, Snapshot snap,
		 int64 wallet_id, const char *key, HeapTuple *tup)
{
	KeyScans	ks = {erel, hrel, eidx, hidx, snap, NULL, NULL, NULL, NULL};
	bool		found = KeyProbeScans(&ks, true, wallet_id, key, tup);

	KeyScansEnd(&ks);
	return found;
}

/*
 * Under REPEATABLE READ and SERIALIZABLE, a key the transaction's snapshot
 * does not know may have been used by a transaction that committed since
 * (the balance lock waited for it, or it took the lock after the snapshot):
 * writing it again would fail on the unique index with 23505.  Probe with a
 * snapshot taken now, and fail as a write that met a concurrent update does
 * (40001): the retry replays the stored result.
 */
static void
KeyCommittedSince(Relation erel, Relation hrel, Relation eidx, Relation hidx, int64 wallet_id,
				  const char *key)
{
	Snapshot	latest;
	HeapTuple	tup;
	bool		found;

	if (!IsolationUsesXactSnapshot())
		return;
	latest = RegisterSnapshot(GetLatestSnapshot());
	found = KeyProbe(erel, hrel, eidx, hidx, latest, wallet_id, key, &tup);
	UnregisterSnapshot(latest);
	if (found)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update"),
				 errdetail("The idempotency key was used by a transaction that committed after this transaction's snapshot.")));
}

/*
 * The event or hold the idempotency key names in acct's wallet, as one row
 * of (kind, id, meter, quantity, dimensions, asset, amount, balance_after,
 * hold_id) into *tup and *desc; false if the key is new.  Read under the
 * lock with a fresh snapshot, so a call that waited for another with the
 * same key finds what that one committed.  Holds are not searched when the
 * lock found the wallet without any (acct->no_holds).
 */
bool
HotKeyFind(const Account *acct, const char *key, HeapTuple *tup, TupleDesc *desc)
{
	int64		wallet_id = acct->wallet_id;
	Relation	erel;
	Relation	hrel = NULL;
	Relation	eidx;
	Relation	hidx = NULL;
	Snapshot	snap = PushFreshSnapshot();
	bool		found;

	HotEnter();

	/*
	 * Every caller holds a balance lock, and a debit writes an event when the
	 * key is new: taking the write's lock now makes one trip to the lock
	 * manager instead of two (a hold takes that lock without writing an event:
	 * it only makes a CREATE INDEX on the table wait, as the hold's own write
	 * to wallet.hold does there).
	 */
	erel = OpenTable(T_EVENT, RowExclusiveLock);
	eidx = OpenIndex(I_EVENT_KEY, RowExclusiveLock);
	CheckPrivilege(T_EVENT, ACL_SELECT);
	/* a wallet that never had a hold (its balance lock said so): no key of a hold */
	if (!(acct->no_holds != 0 && acct->no_holds == no_holds.stamp &&
		  no_holds.wallet_id == wallet_id && no_holds.lxid == MyProc->lxid &&
		  no_holds.generation == wallet_coherence.generation))
	{
		hrel = OpenTable(T_HOLD, AccessShareLock);
		hidx = OpenIndex(I_HOLD_KEY, AccessShareLock);
		CheckPrivilege(T_HOLD, ACL_SELECT);
	}

	found = KeyProbe(erel, hrel, eidx, hidx, snap, wallet_id, key, tup);
	if (!found)
		KeyCommittedSince(erel, hrel, eidx, hidx, wallet_id, key);
	*desc = key_desc;

	index_close(eidx, NoLock);
	table_close(erel, NoLock);
	if (hrel != NULL)
	{
		index_close(hidx, NoLock);
		table_close(hrel, NoLock);
	}
	PopActiveSnapshot();
	HotLeave();
	return found;
}

/*
 * HotKeyFind for n keys (wallet_ids[i], keys[i]) at once (wallet_ingest, which
 * holds the balance locks of every wallet): tups[i] is the row or NULL.  An
 * index probe per key, whatever the planner would think of the tables; among
 * holds only where holds[i] (holds NULL: everywhere), false for a wallet that
 * had none (HotWalletIds, HotWalletsSame).
 */
void
HotKeyFindMany(int n, const int64 *wallet_ids, const char *const *keys, const bool *holds,
			   HeapTuple *tups, TupleDesc *desc)
{
	Relation	erel;
	Relation	hrel = NULL;
	Relation	eidx;
	Relation	hidx = NULL;
	Snapshot	snap = PushFreshSnapshot();
	bool		any_holds = holds == NULL;
	KeyScans	ks = {0};

	for (int i = 0; i < n && !any_holds; i++)
		any_holds = holds[i];
	HotEnter();
	erel = OpenTable(T_EVENT, RowExclusiveLock);
	eidx = OpenIndex(I_EVENT_KEY, RowExclusiveLock);
	CheckPrivilege(T_EVENT, ACL_SELECT);
	if (any_holds)
	{
		hrel = OpenTable(T_HOLD, AccessShareLock);
		hidx = OpenIndex(I_HOLD_KEY, AccessShareLock);
		CheckPrivilege(T_HOLD, ACL_SELECT);
	}
	ks.erel = erel;
	ks.hrel = hrel;
	ks.eidx = eidx;
	ks.hidx = hidx;
	ks.snap = snap;
	for (int i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		tups[i] = NULL;
		if (!KeyProbeScans(&ks, holds == NULL || holds[i], wallet_ids[i], keys[i], &tups[i]))
		{
			tups[i] = NULL;
			KeyCommittedSince(erel, holds == NULL || holds[i] ? hrel : NULL, eidx, hidx,
							  wallet_ids[i], keys[i]);
		}
	}
	KeyScansEnd(&ks);
	*desc = key_desc;
	index_close(eidx, NoLock);
	table_close(erel, NoLock);
	if (hrel != NULL)
	{
		index_close(hidx, NoLock);
		table_close(hrel, NoLock);
	}
	PopActiveSnapshot();
	HotLeave();
}

/* ------------------------------------------------------------- grants */

/*
 * The open grants of n balance rows (wallet_ids[i], assets[i]): fn(...,
 * args[i]) for each, through one index scan started again per row (the
 * rows' pages pruned only when short of room, IndexNextLazyPrune).  locked:
 * the caller holds the balance locks, so read with a fresh snapshot and take
 * the lock the grants' update needs; otherwise the statement's snapshot.
 */
static void
GrantsRead(int n, const int64 *wallet_ids, const char *const *assets, bool locked,
		   HotGrantFn fn, void *const *args)
{
	Relation	grel;
	Relation	gidx;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	Snapshot	snap = locked ? PushFreshSnapshot() : GetActiveSnapshot();
	int			cols[HOT_GRANT_COLUMNS + 1];
	Buffer		buf = InvalidBuffer;

	HotEnter();
	/* under the balance lock, the grants read are then written: take that lock now */
	grel = OpenTable(T_GRANT, locked ? RowExclusiveLock : AccessShareLock);
	gidx = OpenIndex(I_GRANT_OPEN, AccessShareLock);
	CheckPrivilege(T_GRANT, ACL_SELECT);
	for (int c = 0; c < HOT_GRANT_COLUMNS; c++)
		cols[c] = ATT(T_GRANT, c);
	cols[GRANT_SCOPE_COLUMN] = cache.grant_scope;

	slot = table_slot_create(grel, NULL);
	scan = index_beginscan(grel, gidx, snap, 2, 0);
	for (int i = 0; i < n; i++)
	{
		ScanKeyData keys[2];

		CHECK_FOR_INTERRUPTS();
		Key(&keys[0], gidx, 0, F_INT8EQ, Int64GetDatum(wallet_ids[i]));
		Key(&keys[1], gidx, 1, F_TEXTEQ, CStringGetTextDatum(assets[i]));
		index_rescan(scan, keys, 2, NULL, 0);
		while (IndexNextLazyPrune(scan, slot, &buf))
		{
			bool		not_closed;
			bool		not_voided;

			slot_getattr(slot, ATT(T_GRANT, G_CLOSED_AT), &not_closed);
			slot_getattr(slot, ATT(T_GRANT, G_VOIDED_AT), &not_voided);
			if (!not_closed || !not_voided)
				continue;
			fn(ExecFetchSlotHeapTuple(slot, false, NULL), RelationGetDescr(grel), cols,
			   &slot->tts_tid, args[i]);
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	if (BufferIsValid(buf))
		ReleaseBuffer(buf);
	index_close(gidx, NoLock);
	table_close(grel, NoLock);
	if (locked)
		PopActiveSnapshot();
	HotLeave();
}

/*
 * The open grants of a wallet in an asset (closed_at and voided_at null):
 * fn(tuple, descriptor, cols, tid, arg) for each, while the row is in the
 * buffer (fn copies what it keeps).  cols maps the positions of
 * GRANT_COLUMNS to the table's attribute numbers.  locked: the caller holds
 * the balance lock, so read with a fresh snapshot; otherwise with the
 * statement's.
 */
void
HotGrantsRead(int64 wallet_id, const char *asset, bool locked, HotGrantFn fn, void *arg)
{
	GrantsRead(1, &wallet_id, &asset, locked, fn, &arg);
}

/*
 * The isolation rule for what a call reads and does not write.  Under
 * REPEATABLE READ and SERIALIZABLE the hot path reads under the transaction's
 * snapshot, and a change committed since is found when the call writes the
 * row changed (UpdateVersion: 40001).  A hold writes no grant row: it only
 * reserves from the grants it read.  A READ COMMITTED debit or void changes
 * grant rows under the balance lock without writing the balance row (it only
 * locks it), so the hold's own update of the balance row does not meet it.
 * So a hold (and a capture or release, which may settle what a void left on
 * a grant without writing it) checks that every grant version it read into
 * set is still the newest (rows written since have no tid): visible to a
 * snapshot taken now (the caller holds the balance lock, under which grants
 * change), else 40001, as the write would have failed.
 */
void
HotGrantsCurrent(const GrantSet *set)
{
	Relation	grel;
	TupleTableSlot *slot;
	Snapshot	latest;

	if (!IsolationUsesXactSnapshot() || set->n == 0)
		return;
	HotEnter();
	grel = OpenTable(T_GRANT, RowExclusiveLock);
	slot = table_slot_create(grel, NULL);
	CommandCounterIncrement();
	latest = RegisterSnapshot(GetLatestSnapshot());
	for (int i = 0; i < set->n; i++)
	{
		ItemPointerData tid = set->rows[i].tid;

		if (ItemPointerIsValid(&tid) &&
			!table_tuple_fetch_row_version(grel, &tid, latest, slot))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update"),
					 errdetail("A grant this call read changed after this transaction's snapshot.")));
	}
	UnregisterSnapshot(latest);
	ExecDropSingleTupleTableSlot(slot);
	table_close(grel, NoLock);
	HotLeave();
}

/*
 * HotGrantsRead under the balance locks for n balance rows (wallet_ids[i],
 * assets[i]) at once (wallet_ingest, which holds them all): fn(..., args[i])
 * for each open grant of row i.  One fresh snapshot, taken after the locks,
 * and one index scan, started again per balance row.
 */
void
HotGrantsReadMany(int n, const int64 *wallet_ids, const char *const *assets, HotGrantFn fn,
				  void *const *args)
{
	if (n > 0)
		GrantsRead(n, wallet_ids, assets, true, fn, args);
}

/* ------------------------------------------------------------- writes */

/*
 * Insert a row whose set columns the caller stored in slot (tts_values and
 * tts_isnull, by attnum - 1; set[attnum - 1] true): the others get their
 * defaults.  Then BEFORE ROW triggers, constraints, the row, its index
 * entries: what ExecInsert does.
 *
 * Trailing columns are left out of the stored row when they hold what
 * reading past the end of a row gives, as for rows stored before an ALTER
 * TABLE ADD COLUMN: null, or the column's missing value (atthasmissing, set
 * by ADD COLUMN ... DEFAULT), exactly.  A row of wallet.line without a hold
 * then needs no null bitmap, and its header is 8 bytes smaller; an event
 * without hold, cost and dimensions and not refunded (refunded was added with
 * DEFAULT 0 for this) has no bitmap either and 8 bytes less of data.
 */
static void
InsertRow(EState *estate, ResultRelInfo *rri, HotTable t, TupleTableSlot *slot,
		  const bool *set, CommandId cid)
{
	Relation	rel = rri->ri_RelationDesc;
	TupleDesc	desc = RelationGetDescr(rel);
	ExprContext *econtext = GetPerTupleExprContext(estate);
	TupleTableSlot *stored = slot;
	int			natts;

	for (int a = 0; a < desc->natts; a++)
	{
		if (set[a])
			continue;
		if (cache.tables[t].defaults[a])
			slot->tts_values[a] = ExecEvalExpr(cache.tables[t].defaults[a], econtext,
											   &slot->tts_isnull[a]);
		else
		{
			slot->tts_values[a] = (Datum) 0;
			slot->tts_isnull[a] = true;
		}
	}
	ExecStoreVirtualTuple(slot);
	if (rri->ri_TrigDesc && rri->ri_TrigDesc->trig_insert_before_row &&
		!ExecBRInsertTriggers(estate, rri, slot))
		WalletRowSkipped(psprintf("wallet.%s", table_defs[t].name));
	if (desc->constr)
		ExecConstraints(rri, slot, estate);

	slot_getallattrs(slot);
	for (natts = desc->natts; natts > 1; natts--)
	{
		Form_pg_attribute att = TupleDescAttr(desc, natts - 1);
		bool		missing_null;
		Datum		missing = getmissingattr(desc, natts, &missing_null);

		if (slot->tts_isnull[natts - 1] != missing_null ||
			(!missing_null && !datumIsEqual(slot->tts_values[natts - 1], missing,
											att->attbyval, att->attlen)))
			break;
	}
	if (natts < desc->natts)
	{
		TupleDesc  *sd = &cache.tables[t].short_descs[natts];
		HeapTuple	tup;

		if (*sd == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(cache.cxt);

			*sd = CreateTemplateTupleDesc(natts);
			for (int a = 1; a <= natts; a++)
				TupleDescCopyEntry(*sd, a, desc, a);
			MemoryContextSwitchTo(old);
		}
		tup = heap_form_tuple(*sd, slot->tts_values, slot->tts_isnull);
		stored = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
		ExecStoreHeapTuple(tup, stored, true);
	}
	table_tuple_insert(rel, stored, cid, 0, NULL);
	if (rri->ri_NumIndices > 0)
	{
		IndexesFor(rri, t, stored, estate);
		ExecInsertIndexTuples(rri, stored, estate, false, false, NULL, NIL);
	}
	if (stored != slot)
		ExecDropSingleTupleTableSlot(stored);
}

/*
 * Column col of table t in the row being built for InsertRow: slot's value
 * and null flag, and set[] (the caller's locals slot and set).  value is not
 * evaluated when null is true.
 */
#define SET_COLUMN(t, col, value, null) \
	do { \
		AttrNumber a_ = ATT((t), (col)) - 1; \
		slot->tts_isnull[a_] = (null); \
		slot->tts_values[a_] = (null) ? (Datum) 0 : (value); \
		set[a_] = true; \
	} while (0)

/* one row of wallet.line_stored per draw of a debit (HotDebitWrite) */
static void
StoreLines(EState *estate, ResultRelInfo *lrri, const HotDebit *w, int64 event_id, CommandId cid)
{
	Relation	lrel = lrri->ri_RelationDesc;
	TupleDesc	desc = RelationGetDescr(lrel);
	TupleTableSlot *slot = table_slot_create(lrel, NULL);
	bool		set[MaxHeapAttributeNumber];

	for (int i = 0; i < w->nlines; i++)
	{
		ExecClearTuple(slot);
		memset(set, 0, sizeof(bool) * desc->natts);
		SET_COLUMN(T_LINE, L_AT, TimestampTzGetDatum(w->now), false);
		SET_COLUMN(T_LINE, L_WALLET_ID, Int64GetDatum(w->wallet_id), false);
		SET_COLUMN(T_LINE, L_ASSET, CStringGetTextDatum(w->asset), false);
		SET_COLUMN(T_LINE, L_GRANT_ID, Int64GetDatum(w->grant_ids[i]), w->grant_ids[i] == 0);
		SET_COLUMN(T_LINE, L_EVENT_ID, Int64GetDatum(event_id), false);
		SET_COLUMN(T_LINE, L_HOLD_ID, Int64GetDatum(w->hold_id), w->hold_id == 0);
		SET_COLUMN(T_LINE, L_KIND, CStringGetTextDatum("debit"), false);
		SET_COLUMN(T_LINE, L_AMOUNT, Int64GetDatum(-w->takes[i]), false);
		InsertRow(estate, lrri, T_LINE, slot, set, cid);
		ResetPerTupleExprContext(estate);
	}
	ExecDropSingleTupleTableSlot(slot);
}

/* a debit's revenue: sum(take * unit_revenue) * one minor unit, as numeric */
static Numeric
DebitRevenue(const HotDebit *w)
{
	Numeric		revenue = NULL;

	for (int i = 0; i < w->nlines; i++)
	{
		Datum		term = DirectFunctionCall2(numeric_mul,
											   NumericGetDatum(int64_to_numeric(w->takes[i])),
											   NumericGetDatum(w->unit_revenues[i]));

		/* 0 + term is term, to the digit and the scale: the first needs no add */
		revenue = revenue == NULL ? DatumGetNumeric(term) :
			DatumGetNumeric(DirectFunctionCall2(numeric_add, NumericGetDatum(revenue), term));
	}
	if (revenue == NULL)
		revenue = int64_to_numeric(0);
	return DatumGetNumeric(DirectFunctionCall2(numeric_mul, NumericGetDatum(revenue),
											   NumericGetDatum(w->minor_unit)));
}

/*
 * HotDebitWrite through SQL statements, when a table it writes has what the
 * direct writes do not do (CheckTable): the same rows, each statement firing
 * its triggers and computing its generated columns, as wallet_ingest's
 * statements do.  carried: the event carries its one line.  The caller is
 * connected to SPI.
 */
static int64
DebitWriteSql(const HotDebit *w, bool carried)
{
	static const Oid etypes[17] = {INT8OID, TEXTOID, TEXTOID, NUMERICOID, JSONBOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, INT8OID, INT8OID, NUMERICOID, NUMERICOID,
	INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
	static const Oid gtypes[2] = {INT8OID, INT8OID};
	static const Oid ltypes[7] = {TIMESTAMPTZOID, INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		v[17];
	char		n[17];
	bool		isnull;
	int64		event_id;

	memset(n, ' ', sizeof(n));
	v[0] = Int64GetDatum(w->wallet_id);
	v[1] = w->key ? CStringGetTextDatum(w->key) : (Datum) 0;
	n[1] = w->key ? ' ' : 'n';
	v[2] = w->meter ? CStringGetTextDatum(w->meter) : (Datum) 0;
	n[2] = w->meter ? ' ' : 'n';
	v[3] = NumericGetDatum(w->quantity);
	n[3] = w->quantity ? ' ' : 'n';
	v[4] = JsonbPGetDatum(w->dims);
	n[4] = w->dims ? ' ' : 'n';
	v[5] = TimestampTzGetDatum(w->occurred_at);
	v[6] = TimestampTzGetDatum(w->now);
	v[7] = CStringGetTextDatum(w->asset);
	v[8] = Int64GetDatum(w->amount);
	v[9] = Int64GetDatum(w->price_id);
	n[9] = w->price_id ? ' ' : 'n';
	v[10] = NumericGetDatum(w->cost);
	n[10] = w->cost ? ' ' : 'n';
	v[11] = NumericGetDatum(DebitRevenue(w));
	v[12] = Int64GetDatum(w->hold_id);
	n[12] = w->hold_id ? ' ' : 'n';
	v[13] = Int64GetDatum(w->balance_after);
	v[15] = Int64GetDatum(w->grant_ids[0]);
	n[15] = carried && w->grant_ids[0] != 0 ? ' ' : 'n';
	if (cache.event_ids_shared)
	{
		/* the event's id is the id of the line it carries (EventIdsShared) */
		v[16] = Int64GetDatum(nextval_internal(cache.line_seq, true));
		n[16] = ' ';
		v[14] = v[16];
		n[14] = carried ? ' ' : 'n';
		WalletExec(PLAN_HOT_EVENT_INSERT_ID,
				   "INSERT INTO wallet.event (wallet_id, idempotency_key, meter, quantity, dimensions, "
				   "  occurred_at, recorded_at, asset, amount, price_id, cost, revenue, hold_id, "
				   "  balance_after, line_id, line_grant_id, id) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) "
				   "RETURNING id",
				   17, etypes, v, n, false, SPI_OK_INSERT_RETURNING);
	}
	else
	{
		v[14] = carried ? Int64GetDatum(nextval_internal(cache.line_seq, true)) : (Datum) 0;
		n[14] = carried ? ' ' : 'n';
		WalletExec(PLAN_HOT_EVENT_INSERT,
				   "INSERT INTO wallet.event (wallet_id, idempotency_key, meter, quantity, dimensions, "
				   "  occurred_at, recorded_at, asset, amount, price_id, cost, revenue, hold_id, "
				   "  balance_after, line_id, line_grant_id) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
				   16, etypes, v, n, false, SPI_OK_INSERT_RETURNING);
	}
	if (SPI_processed != 1)
		elog(ERROR, "wallet: a trigger skipped a row of wallet.event");
	event_id = SpiGetInt64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_freetuptable(SPI_tuptable);

	for (int i = 0; i < w->nlines; i++)
	{
		Datum		g[2] = {Int64GetDatum(w->grant_ids[i]), Int64GetDatum(w->takes[i])};

		if (w->grant_ids[i] == 0 || w->grants_later)
			continue;
		WalletExec(PLAN_HOT_GRANT_TAKE,
				   "UPDATE wallet.grant_block SET remaining = remaining OPERATOR(pg_catalog.-) $2 "
				   " WHERE id OPERATOR(pg_catalog.=) $1",
				   2, gtypes, g, NULL, false, SPI_OK_UPDATE);
		if (SPI_processed != 1)
			elog(ERROR, "wallet: grant " INT64_FORMAT " vanished", w->grant_ids[i]);
	}
	for (int i = 0; i < w->nlines && !carried; i++)
	{
		Datum		l[7];
		char		ln[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

		l[0] = TimestampTzGetDatum(w->now);
		l[1] = Int64GetDatum(w->wallet_id);
		l[2] = CStringGetTextDatum(w->asset);
		l[3] = Int64GetDatum(w->grant_ids[i]);
		ln[3] = w->grant_ids[i] ? ' ' : 'n';
		l[4] = Int64GetDatum(event_id);
		l[5] = Int64GetDatum(w->hold_id);
		ln[5] = w->hold_id ? ' ' : 'n';
		l[6] = Int64GetDatum(-w->takes[i]);
		WalletExec(PLAN_HOT_LINE_INSERT,
				   "INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, event_id, hold_id, kind, amount) "
				   "VALUES ($1, $2, $3, $4, $5, $6, 'debit', $7)",
				   7, ltypes, l, ln, false, SPI_OK_INSERT);
	}
	CommandCounterIncrement();
	return event_id;
}

/*
 * Whether the new version of a row that an update of the hot path changed
 * only in columns set not null passes the CHECK constraints the update can
 * break (rri->ri_ConstraintExprs, the others NULL): the NOT NULL ones hold,
 * the other columns being the old version's.  When it does not,
 * ExecConstraints says so, with its error.
 */
static bool
UpdateChecksPass(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate)
{
	TupleConstr *constr = RelationGetDescr(rri->ri_RelationDesc)->constr;
	ExprContext *econtext;

	if (constr->num_check == 0 || rri->ri_ConstraintExprs == NULL)
		return constr->num_check == 0;
	econtext = GetPerTupleExprContext(estate);
	econtext->ecxt_scantuple = slot;
	for (int i = 0; i < constr->num_check; i++)
		if (!ExecCheck(rri->ri_ConstraintExprs[i], econtext))
			return false;
	return true;
}

/*
 * The grant row in gslot, updated as UPDATE ... SET remaining = remaining -
 * take would update it under the balance lock (grri: the constraints the
 * update can break), through gnew; a change by a concurrent READ COMMITTED
 * debit is a serialization failure under REPEATABLE READ.
 */
static void
GrantTake(Relation grel, ResultRelInfo *grri, EState *estate, TupleTableSlot *gslot,
		  TupleTableSlot *gnew, Snapshot snap, CommandId cid, int64 take)
{
	int			rem_col = ATT(T_GRANT, G_REMAINING);
	int64		r;
	bool		isnull;

	if (pg_sub_s64_overflow(SlotInt64(gslot, rem_col, &isnull), take, &r))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("bigint out of range")));
	ExecStoreHeapTuple(WithInt64(ExecFetchSlotHeapTuple(gslot, false, NULL),
								 RelationGetDescr(grel), rem_col, r),
					   gnew, true);
	if (RelationGetDescr(grel)->constr && !UpdateChecksPass(grri, gnew, estate))
		ExecConstraints(grri, gnew, estate);
	UpdateVersion(grel, T_GRANT, &gslot->tts_tid, gnew, snap, cid, estate);
}

/*
 * The event row of a debit, into slot, with the line it carries (carried):
 * its BEFORE ROW triggers, constraints, index entries.  Returns its id.
 */
static int64
EventInsert(EState *estate, ResultRelInfo *erri, TupleTableSlot *slot, const HotDebit *w,
			bool carried, CommandId cid)
{
	TupleDesc	desc = RelationGetDescr(erri->ri_RelationDesc);
	bool		set[MaxHeapAttributeNumber];
	Numeric		revenue = DebitRevenue(w);
	int64		event_id;
	bool		isnull;

	ExecClearTuple(slot);
	memset(set, 0, sizeof(bool) * desc->natts);
	SET_COLUMN(T_EVENT, E_WALLET_ID, Int64GetDatum(w->wallet_id), false);
	SET_COLUMN(T_EVENT, E_KEY, w->key ? CStringGetTextDatum(w->key) : 0, w->key == NULL);
	SET_COLUMN(T_EVENT, E_METER, w->meter ? CStringGetTextDatum(w->meter) : 0, w->meter == NULL);
	SET_COLUMN(T_EVENT, E_QUANTITY, NumericGetDatum(w->quantity), w->quantity == NULL);
	SET_COLUMN(T_EVENT, E_DIMENSIONS, JsonbPGetDatum(w->dims), w->dims == NULL);
	SET_COLUMN(T_EVENT, E_OCCURRED_AT, TimestampTzGetDatum(w->occurred_at), false);
	SET_COLUMN(T_EVENT, E_RECORDED_AT, TimestampTzGetDatum(w->now), false);
	SET_COLUMN(T_EVENT, E_ASSET, CStringGetTextDatum(w->asset), false);
	SET_COLUMN(T_EVENT, E_AMOUNT, Int64GetDatum(w->amount), false);
	SET_COLUMN(T_EVENT, E_PRICE_ID, Int64GetDatum(w->price_id), w->price_id == 0);
	SET_COLUMN(T_EVENT, E_COST, NumericGetDatum(w->cost), w->cost == NULL);
	SET_COLUMN(T_EVENT, E_REVENUE, NumericGetDatum(revenue), false);
	SET_COLUMN(T_EVENT, E_HOLD_ID, Int64GetDatum(w->hold_id), w->hold_id == 0);
	SET_COLUMN(T_EVENT, E_BALANCE_AFTER, Int64GetDatum(w->balance_after), false);
	/*
	 * The line it carries, when it has one line: an id in the order of all
	 * lines, the event's own when they share the sequence (EventIdsShared).
	 */
	if (cache.event_ids_shared)
	{
		event_id = nextval_internal(cache.line_seq, true);
		SET_COLUMN(T_EVENT, E_ID, Int64GetDatum(event_id), false);
		SET_COLUMN(T_EVENT, E_LINE_ID, Int64GetDatum(event_id), !carried);
	}
	else
		SET_COLUMN(T_EVENT, E_LINE_ID, Int64GetDatum(nextval_internal(cache.line_seq, true)),
				   !carried);
	SET_COLUMN(T_EVENT, E_LINE_GRANT_ID, Int64GetDatum(w->grant_ids[0]),
			   !carried || w->grant_ids[0] == 0);
	InsertRow(estate, erri, T_EVENT, slot, set, cid);
	event_id = DatumGetInt64(slot_getattr(slot, ATT(T_EVENT, E_ID), &isnull));
	if (isnull)
		elog(ERROR, "wallet: event inserted without an id");
	return event_id;
}

/*
 * The event writer of a batch (wallet_ingest): what HotDebitWrite opens and
 * builds for each debit (the event table and its indexes, the executor
 * state, the insert target with its triggers, the privilege checks), done
 * once and kept while the hot path's cache is the one it was built from.
 * Only for debits whose grants the caller updates (grants_later).
 */
struct HotDebitBatch
{
	MemoryContext cxt;			/* where the executor state lives */
	MemoryContext gen;			/* cache.cxt when opened; NULL: not open */
	Relation	erel;
	Relation	lrel;			/* wallet.line_stored, once a debit needs it */
	EState	   *estate;
	ResultRelInfo *erri;
	ResultRelInfo *lrri;
	TupleTableSlot *slot;
	bool		grants_checked; /* the privileges on grants a draw needs */
};

/* a writer, not open yet, in cxt */
HotDebitBatch *
HotDebitBatchCreate(MemoryContext cxt)
{
	HotDebitBatch *b = MemoryContextAllocZero(cxt, sizeof(HotDebitBatch));

	b->cxt = cxt;
	return b;
}

/* close what BatchOpen opened (the locks stay) */
static void
BatchClose(HotDebitBatch *b)
{
	if (b->gen == NULL)
		return;
	ExecDropSingleTupleTableSlot(b->slot);
	CloseTarget(b->erri);
	if (b->lrri != NULL)
	{
		CloseTarget(b->lrri);
		table_close(b->lrel, NoLock);
	}
	FreeExecutorState(b->estate);
	table_close(b->erel, NoLock);
	b->gen = NULL;
	b->erel = b->lrel = NULL;
	b->estate = NULL;
	b->erri = b->lrri = NULL;
	b->slot = NULL;
	HotLeave();
}

/*
 * Open the writer as HotDebitWrite opens for one debit; false (nothing open)
 * when a table needs the SQL statements (CheckTable): then HotDebitWrite
 * writes each debit as for a single call.
 */
static bool
BatchOpen(HotDebitBatch *b)
{
	MemoryContext cxt = b->cxt;
	MemoryContext old;
	Relation	erel;
	Relation	grel;

	HotEnter();
	erel = OpenTable(T_EVENT, RowExclusiveLock);
	grel = OpenTable(T_GRANT, RowExclusiveLock);
	table_close(grel, NoLock);
	if (cache.tables[T_EVENT].by_sql || cache.tables[T_GRANT].by_sql ||
		cache.tables[T_LINE].by_sql)
	{
		table_close(erel, NoLock);
		HotLeave();
		return false;
	}
	CheckPrivilege(T_EVENT, ACL_INSERT);
	old = MemoryContextSwitchTo(cxt);
	b->estate = CreateExecutorState();
	MemoryContextSwitchTo(b->estate->es_query_cxt);
	b->erel = erel;
	b->erri = WriteTarget(b->estate, erel, T_EVENT, true);
	b->slot = table_slot_create(erel, NULL);
	MemoryContextSwitchTo(old);
	b->gen = cache.cxt;
	return true;
}

/*
 * HotDebitWrite of a debit of a batch through its writer: the same rows.
 * False when the writer cannot (BatchOpen): the caller writes it alone.
 */
static bool
BatchWrite(HotDebitBatch *b, const HotDebit *w, int64 *event_id)
{
	bool		carried = w->nlines == 1 && w->takes[0] == w->amount;
	CommandId	cid;

	/* a new generation of the cache (an invalidation): open again from it */
	if (b->gen != NULL && (!cache.valid || cache.cxt != b->gen))
		BatchClose(b);
	if (b->gen == NULL && !BatchOpen(b))
		return false;
	if (w->nlines > 0 && !b->grants_checked)
	{
		CheckPrivilege(T_GRANT, ACL_SELECT | ACL_UPDATE);
		b->grants_checked = true;
	}
	if (w->nlines > 0 && !carried && b->lrri == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(b->estate->es_query_cxt);

		b->lrel = OpenTable(T_LINE, RowExclusiveLock);
		CheckPrivilege(T_LINE, ACL_INSERT);
		b->lrri = WriteTarget(b->estate, b->lrel, T_LINE, true);
		MemoryContextSwitchTo(old);
	}
	PushFreshSnapshot();
	cid = GetCurrentCommandId(true);
	b->estate->es_output_cid = cid;
	*event_id = EventInsert(b->estate, b->erri, b->slot, w, carried, cid);
	ResetPerTupleExprContext(b->estate);
	if (w->nlines > 0 && !carried)
		StoreLines(b->estate, b->lrri, w, *event_id, cid);
	ExecClearTuple(b->slot);
	PopActiveSnapshot();
	CommandCounterIncrement();
	return true;
}

/* the batch is written: close its writer */
void
HotDebitBatchEnd(HotDebitBatch *b)
{
	BatchClose(b);
}

/*
 * Write an approved debit: the event, each drawn grant's new remaining and
 * one ledger line per draw (grant_id 0: the overdraft part), as the write
 * statement of debit.c did.  A debit drawn from one source has one line,
 * carried on the event row (line_id, line_grant_id; wallet.line shows it):
 * no row of wallet.line_stored.  Returns the event id.
 */
int64
HotDebitWrite(const HotDebit *w)
{
	Relation	erel;
	Relation	grel;
	Relation	lrel = NULL;
	Relation	gpk = NULL;
	EState	   *estate;
	ResultRelInfo *erri;
	ResultRelInfo *lrri = NULL;
	ResultRelInfo *grri = NULL;
	TupleTableSlot *slot;
	TupleTableSlot *gslot;
	TupleTableSlot *gnew;
	Snapshot	snap;
	CommandId	cid;
	int64		event_id;
	bool		carried = w->nlines == 1 && w->takes[0] == w->amount;

	if (w->batch != NULL && w->grants_later && BatchWrite(w->batch, w, &event_id))
		return event_id;
	HotEnter();
	snap = PushFreshSnapshot();
	erel = OpenTable(T_EVENT, RowExclusiveLock);
	grel = OpenTable(T_GRANT, RowExclusiveLock);
	if (cache.tables[T_EVENT].by_sql || cache.tables[T_GRANT].by_sql ||
		(cache.tables[T_LINE].by_sql && w->nlines > 0 && !carried))
	{
		table_close(erel, NoLock);
		table_close(grel, NoLock);
		PopActiveSnapshot();
		event_id = DebitWriteSql(w, carried);
		HotLeave();
		return event_id;
	}
	CheckPrivilege(T_EVENT, ACL_INSERT);
	if (w->nlines > 0)
		CheckPrivilege(T_GRANT, ACL_SELECT | ACL_UPDATE);
	cid = GetCurrentCommandId(true);
	estate = CreateExecutorState();
	estate->es_output_cid = cid;
	erri = WriteTarget(estate, erel, T_EVENT, true);
	if (w->nlines > 0 && !carried)
	{
		lrel = OpenTable(T_LINE, RowExclusiveLock);
		CheckPrivilege(T_LINE, ACL_INSERT);
		lrri = WriteTarget(estate, lrel, T_LINE, true);
	}

	/* the event */
	slot = table_slot_create(erel, NULL);
	event_id = EventInsert(estate, erri, slot, w, carried, cid);
	ExecDropSingleTupleTableSlot(slot);

	/* the grants drawn: remaining - take */
	gslot = table_slot_create(grel, NULL);
	gnew = MakeSingleTupleTableSlot(RelationGetDescr(grel), &TTSOpsHeapTuple);
	for (int i = 0; i < w->nlines; i++)
	{
		ItemPointerData tid = w->tids[i];

		if (w->grant_ids[i] == 0 || w->grants_later)
			continue;
		if (grri == NULL)
		{
			/* what the executor checks before an UPDATE: replica identity, publications' row filters */
			CheckCmdReplicaIdentity(grel, CMD_UPDATE);
			/* the constraints the update can break (CacheBuildGeneration) */
			grri = WriteTarget(estate, grel, T_GRANT, false);
			grri->ri_ConstraintExprs = cache.tables[T_GRANT].update_checks;
		}
		if (!ItemPointerIsValid(&tid))
		{
			/* written since it was read (a reset): find it again by id */
			ScanKeyData key;

			if (gpk == NULL)
				gpk = OpenIndex(I_GRANT_PKEY, AccessShareLock);
			Key(&key, gpk, 0, F_INT8EQ, Int64GetDatum(w->grant_ids[i]));
			if (!IndexFetch(grel, gpk, snap, &key, 1, gslot))
				elog(ERROR, "wallet: grant " INT64_FORMAT " vanished", w->grant_ids[i]);
		}
		else if (!table_tuple_fetch_row_version(grel, &tid, snap, gslot))
			elog(ERROR, "wallet: grant " INT64_FORMAT " changed under the balance lock",
				 w->grant_ids[i]);
		GrantTake(grel, grri, estate, gslot, gnew, snap, cid, w->takes[i]);
	}
	ExecDropSingleTupleTableSlot(gnew);
	ExecDropSingleTupleTableSlot(gslot);

	/* the ledger lines (none to store when the event carries its line) */
	if (lrel != NULL)
	{
		StoreLines(estate, lrri, w, event_id, cid);
		CloseTarget(lrri);
		table_close(lrel, NoLock);
	}

	CloseTarget(erri);
	FreeExecutorState(estate);
	if (gpk)
		index_close(gpk, NoLock);
	table_close(erel, NoLock);
	table_close(grel, NoLock);
	PopActiveSnapshot();
	CommandCounterIncrement();
	HotLeave();
	return event_id;
}

/* ------------------------------------------------------------- holds */

/*
 * The binding holds of 1.1 (hold.c) go to the tables directly too: a hold
 * is placed (its row, its reservations in wallet.hold_grant, its 'hold'
 * line), read back by id, found among the open holds of a balance, and
 * resolved (its row updated, its reservations deleted, its 'release' line),
 * and the balance row it changes is written back.  Each write function
 * returns false without writing anything when a table it writes has what the
 * direct writes do not do (CheckTable; a DELETE trigger on wallet.hold_grant;
 * an UPDATE trigger on wallet.hold or wallet.account): the caller then runs
 * its SQL statements, which do all of it.
 */

/*
 * Whether the 1.1 objects of holds are there (a schema not upgraded has
 * none: then hold.c uses SQL).  Created by ALTER EXTENSION ... UPDATE after
 * the cache was built, they are looked up again.
 */
static bool
HoldObjects(void)
{
	for (int pass = 0; pass < 2; pass++)
	{
		if (!cache.valid)
			CacheBuild();
		if (OidIsValid(cache.tables[T_HOLD_GRANT].relid) && OidIsValid(cache.indexes[I_HOLD_OPEN]) &&
			OidIsValid(cache.indexes[I_HOLD_GRANT_PKEY]) && cache.hold11[HX_OVERDRAFT] != 0 &&
			cache.hold11[HX_DIMENSIONS] != 0 && cache.hold11[HX_RELEASE_BALANCE] != 0 &&
			cache.hold11[HX_METER] != 0 && cache.hold11[HX_QUANTITY] != 0)
			return true;
		cache.valid = false;
	}
	return false;
}

/* whether the 1.1 schema's holds can be read and written here (see HoldObjects) */
bool
HotHoldsReady(void)
{
	bool		ready;

	HotEnter();
	ready = HoldObjects();
	HotLeave();
	return ready;
}

/* a hold row in slot into h */
static void
HoldFromSlot(TupleTableSlot *slot, HotHold *h)
{
	bool		isnull;
	Datum		d;
	char	   *status;

	memset(h, 0, sizeof(*h));
	h->id = SlotInt64(slot, ATT(T_HOLD, H_ID), &isnull);
	h->wallet_id = SlotInt64(slot, ATT(T_HOLD, H_WALLET_ID), &isnull);
	h->asset = SlotText(slot, ATT(T_HOLD, H_ASSET));
	h->amount = SlotInt64(slot, ATT(T_HOLD, H_AMOUNT), &isnull);
	status = SlotText(slot, ATT(T_HOLD, H_STATUS));
	strlcpy(h->status, status ? status : "", sizeof(h->status));
	h->created_at = DatumGetTimestampTz(slot_getattr(slot, ATT(T_HOLD, H_CREATED_AT), &isnull));
	h->expires_at = DatumGetTimestampTz(slot_getattr(slot, ATT(T_HOLD, H_EXPIRES_AT), &isnull));
	h->overdraft = SlotInt64(slot, cache.hold11[HX_OVERDRAFT], &isnull);
	d = slot_getattr(slot, cache.hold11[HX_DIMENSIONS], &isnull);
	h->dims = isnull ? NULL : DatumGetJsonbPCopy(d);
	h->release_balance = SlotInt64(slot, cache.hold11[HX_RELEASE_BALANCE], &isnull);
	h->has_release_balance = !isnull;
	h->tid = slot->tts_tid;
}

/*
 * Read a hold (1.1 schema) by id into h, with a fresh snapshot (what a new
 * statement would see); false if there is none.  at, when valid, is where it
 * was read before: read there if that version is still the one the snapshot
 * sees (else it changed meanwhile: found by id).
 */
bool
HotHoldRead(int64 hold_id, const ItemPointerData *at, HotHold *h)
{
	Relation	hrel;
	Relation	hidx;
	TupleTableSlot *slot;
	ScanKeyData key;
	Snapshot	snap = PushFreshSnapshot();
	bool		found;

	HotEnter();
	if (!HoldObjects())
		elog(ERROR, "wallet: the hold tables of the 1.1 schema are missing");
	/*
	 * read to be resolved or extended: take the write's locks now (one trip to
	 * the lock manager), but in a read-only transaction (a standby) only read,
	 * so that the error is the write's, as through SQL
	 */
	hrel = OpenTable(T_HOLD, XactReadOnly ? AccessShareLock : RowExclusiveLock);
	hidx = OpenIndex(I_HOLD_PKEY, XactReadOnly ? AccessShareLock : RowExclusiveLock);
	CheckPrivilege(T_HOLD, ACL_SELECT);
	slot = table_slot_create(hrel, NULL);
	found = at != NULL && ItemPointerIsValid(at) &&
		table_tuple_fetch_row_version(hrel, (ItemPointer) at, snap, slot);
	if (found)
	{
		bool		isnull;

		found = SlotInt64(slot, ATT(T_HOLD, H_ID), &isnull) == hold_id;
	}
	if (!found)
	{
		Key(&key, hidx, 0, F_INT8EQ, Int64GetDatum(hold_id));
		found = IndexFetch(hrel, hidx, snap, &key, 1, slot);
	}
	if (found)
		HoldFromSlot(slot, h);
	ExecDropSingleTupleTableSlot(slot);
	index_close(hidx, NoLock);
	table_close(hrel, NoLock);
	PopActiveSnapshot();
	HotLeave();
	return found;
}

/*
 * What a hold reserves (1.1 schema): its rows of wallet.hold_grant, in grant
 * id order, into *rows (palloc'd); returns how many.  locked: read with a
 * fresh snapshot (the caller holds the balance lock), else the active one.
 */
int
HotHoldGrantsRead(int64 hold_id, bool locked, HotHoldGrant **rows)
{
	Relation	rel;
	Relation	idx;
	TupleTableSlot *slot;
	ScanKeyData key;
	IndexScanDesc scan;
	Snapshot	snap = locked ? PushFreshSnapshot() : GetActiveSnapshot();
	int			n = 0;
	int			cap = 4;
	Buffer		buf = InvalidBuffer;

	HotEnter();
	if (!HoldObjects())
		elog(ERROR, "wallet: the hold tables of the 1.1 schema are missing");
	rel = OpenTable(T_HOLD_GRANT, locked ? RowExclusiveLock : AccessShareLock);
	idx = OpenIndex(I_HOLD_GRANT_PKEY, AccessShareLock);
	CheckPrivilege(T_HOLD_GRANT, ACL_SELECT);
	*rows = palloc(sizeof(HotHoldGrant) * cap);
	slot = table_slot_create(rel, NULL);
	Key(&key, idx, 0, F_INT8EQ, Int64GetDatum(hold_id));
	scan = index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (IndexNextLazyPrune(scan, slot, &buf))
	{
		bool		isnull;
		HotHoldGrant *r;

		if (n == cap)
		{
			cap *= 2;
			*rows = repalloc(*rows, sizeof(HotHoldGrant) * cap);
		}
		r = &(*rows)[n++];
		r->grant_id = SlotInt64(slot, ATT(T_HOLD_GRANT, HG_GRANT_ID), &isnull);
		r->amount = SlotInt64(slot, ATT(T_HOLD_GRANT, HG_AMOUNT), &isnull);
		r->resets = SlotInt64(slot, ATT(T_HOLD_GRANT, HG_RESETS), &isnull);
		r->tid = slot->tts_tid;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	if (BufferIsValid(buf))
		ReleaseBuffer(buf);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	if (locked)
		PopActiveSnapshot();
	HotLeave();
	return n;
}

/*
 * The open holds of a balance (1.1 schema), in id order, those whose ttl has
 * passed too (fn tells them by expires_at): fn(hold, arg) for each.  locked:
 * read with a fresh snapshot (the caller holds the balance lock), else the
 * active one.
 */
void
HotOpenHoldsRead(int64 wallet_id, const char *asset, bool locked,
				 HotHoldFn fn, void *arg)
{
	Relation	hrel;
	Relation	hidx;
	TupleTableSlot *slot;
	ScanKeyData keys[2];
	IndexScanDesc scan;
	Snapshot	snap = locked ? PushFreshSnapshot() : GetActiveSnapshot();
	HotHold    *holds = NULL;
	int			n = 0;
	int			cap = 0;
	Buffer		buf = InvalidBuffer;

	HotEnter();
	if (!HoldObjects())
		elog(ERROR, "wallet: the hold tables of the 1.1 schema are missing");
	hrel = OpenTable(T_HOLD, AccessShareLock);
	hidx = OpenIndex(I_HOLD_OPEN, AccessShareLock);
	CheckPrivilege(T_HOLD, ACL_SELECT);
	slot = table_slot_create(hrel, NULL);
	Key(&keys[0], hidx, 0, F_INT8EQ, Int64GetDatum(wallet_id));
	Key(&keys[1], hidx, 1, F_TEXTEQ, CStringGetTextDatum(asset));
	scan = index_beginscan(hrel, hidx, snap, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (IndexNextLazyPrune(scan, slot, &buf))
	{
		HotHold		h;

		HoldFromSlot(slot, &h);
		/* the index is partial (status = 'open'): the row version read says */
		if (strcmp(h.status, "open") != 0)
			continue;
		if (n == cap)
		{
			cap = Max(4, cap * 2);
			holds = holds ? repalloc(holds, sizeof(HotHold) * cap) : palloc(sizeof(HotHold) * cap);
		}
		holds[n++] = h;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	if (BufferIsValid(buf))
		ReleaseBuffer(buf);
	index_close(hidx, NoLock);
	table_close(hrel, NoLock);
	if (locked)
		PopActiveSnapshot();
	HotLeave();

	/* in id order, as the statement this replaces returned them */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && holds[j - 1].id > holds[j].id; j--)
		{
			HotHold		t = holds[j];

			holds[j] = holds[j - 1];
			holds[j - 1] = t;
		}
	for (int i = 0; i < n; i++)
		fn(&holds[i], arg);
}

/* a ledger line of a hold (kind 'hold' or 'release'), no grant */
static void
InsertHoldLine(EState *estate, ResultRelInfo *lrri, int64 wallet_id, const char *asset,
			   TimestampTz at, int64 event_id, int64 hold_id, const char *kind, int64 amount,
			   CommandId cid)
{
	Relation	lrel = lrri->ri_RelationDesc;
	TupleDesc	desc = RelationGetDescr(lrel);
	TupleTableSlot *slot = table_slot_create(lrel, NULL);
	bool		set[MaxHeapAttributeNumber];

	ExecClearTuple(slot);
	memset(set, 0, sizeof(bool) * desc->natts);
	SET_COLUMN(T_LINE, L_AT, TimestampTzGetDatum(at), false);
	SET_COLUMN(T_LINE, L_WALLET_ID, Int64GetDatum(wallet_id), false);
	SET_COLUMN(T_LINE, L_ASSET, CStringGetTextDatum(asset), false);
	SET_COLUMN(T_LINE, L_GRANT_ID, (Datum) 0, true);
	SET_COLUMN(T_LINE, L_EVENT_ID, Int64GetDatum(event_id), event_id == 0);
	SET_COLUMN(T_LINE, L_HOLD_ID, Int64GetDatum(hold_id), false);
	SET_COLUMN(T_LINE, L_KIND, CStringGetTextDatum(kind), false);
	SET_COLUMN(T_LINE, L_AMOUNT, Int64GetDatum(amount), false);
	InsertRow(estate, lrri, T_LINE, slot, set, cid);
	ResetPerTupleExprContext(estate);
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * Place a hold (1.1 schema): its row (id and status from their defaults,
 * BEFORE ROW triggers fired), one row of wallet.hold_grant per reservation
 * and its 'hold' line, as hold.c's statement did.  *hold_id gets its id.
 * False, having written nothing, when a table has what the direct writes do
 * not do: then the caller writes through SQL.
 */
bool
HotHoldInsert(const HotHoldNew *n, int64 *hold_id)
{
	Relation	hrel;
	Relation	grel;
	Relation	lrel;
	EState	   *estate;
	ResultRelInfo *hrri;
	ResultRelInfo *grri = NULL;
	ResultRelInfo *lrri;
	TupleTableSlot *slot;
	TupleDesc	desc;
	CommandId	cid;
	bool		set[MaxHeapAttributeNumber];
	bool		isnull;

	HotEnter();
	if (!HoldObjects())
	{
		HotLeave();
		return false;
	}
	PushFreshSnapshot();
	hrel = OpenTable(T_HOLD, RowExclusiveLock);
	grel = OpenTable(T_HOLD_GRANT, RowExclusiveLock);
	lrel = OpenTable(T_LINE, RowExclusiveLock);
	if (cache.tables[T_HOLD].by_sql || cache.tables[T_HOLD_GRANT].by_sql ||
		cache.tables[T_LINE].by_sql || !HoldObjects())
	{
		table_close(hrel, NoLock);
		table_close(grel, NoLock);
		table_close(lrel, NoLock);
		PopActiveSnapshot();
		HotLeave();
		return false;
	}
	CheckPrivilege(T_HOLD, ACL_INSERT);
	CheckPrivilege(T_LINE, ACL_INSERT);
	if (n->ngrants > 0)
		CheckPrivilege(T_HOLD_GRANT, ACL_INSERT);
	cid = GetCurrentCommandId(true);
	estate = CreateExecutorState();
	estate->es_output_cid = cid;
	hrri = WriteTarget(estate, hrel, T_HOLD, true);
	lrri = WriteTarget(estate, lrel, T_LINE, true);

	/* the hold */
	desc = RelationGetDescr(hrel);
	slot = table_slot_create(hrel, NULL);
	ExecClearTuple(slot);
	memset(set, 0, sizeof(bool) * desc->natts);
	SET_COLUMN(T_HOLD, H_WALLET_ID, Int64GetDatum(n->wallet_id), false);
	SET_COLUMN(T_HOLD, H_ASSET, CStringGetTextDatum(n->asset), false);
	SET_COLUMN(T_HOLD, H_AMOUNT, Int64GetDatum(n->amount), false);
	SET_COLUMN(T_HOLD, H_KEY, CStringGetTextDatum(n->key), false);
	SET_COLUMN(T_HOLD, H_CREATED_AT, TimestampTzGetDatum(n->now), false);
	SET_COLUMN(T_HOLD, H_EXPIRES_AT, TimestampTzGetDatum(n->expires_at), false);
	SET_COLUMN(T_HOLD, H_BALANCE_AFTER, Int64GetDatum(n->balance_after), false);
#define SET_HOLD11(c, value, null) \
	do { \
		AttrNumber a_ = cache.hold11[(c)] - 1; \
		slot->tts_isnull[a_] = (null); \
		slot->tts_values[a_] = (null) ? (Datum) 0 : (value); \
		set[a_] = true; \
	} while (0)
	SET_HOLD11(HX_DIMENSIONS, JsonbPGetDatum(n->dims), n->dims == NULL);
	SET_HOLD11(HX_OVERDRAFT, Int64GetDatum(n->overdraft), false);
	SET_HOLD11(HX_METER, CStringGetTextDatum(n->meter ? n->meter : ""), n->meter == NULL);
	SET_HOLD11(HX_QUANTITY, NumericGetDatum(n->quantity), n->quantity == NULL);
#undef SET_HOLD11
	InsertRow(estate, hrri, T_HOLD, slot, set, cid);
	ResetPerTupleExprContext(estate);
	*hold_id = DatumGetInt64(slot_getattr(slot, ATT(T_HOLD, H_ID), &isnull));
	if (isnull)
		elog(ERROR, "wallet: hold inserted without an id");
	ExecDropSingleTupleTableSlot(slot);

	/* what it reserves, grant by grant */
	if (n->ngrants > 0)
	{
		grri = WriteTarget(estate, grel, T_HOLD_GRANT, true);
		desc = RelationGetDescr(grel);
		slot = table_slot_create(grel, NULL);
		for (int i = 0; i < n->ngrants; i++)
		{
			ExecClearTuple(slot);
			memset(set, 0, sizeof(bool) * desc->natts);
			SET_COLUMN(T_HOLD_GRANT, HG_HOLD_ID, Int64GetDatum(*hold_id), false);
			SET_COLUMN(T_HOLD_GRANT, HG_GRANT_ID, Int64GetDatum(n->grant_ids[i]), false);
			SET_COLUMN(T_HOLD_GRANT, HG_AMOUNT, Int64GetDatum(n->amounts[i]), false);
			SET_COLUMN(T_HOLD_GRANT, HG_RESETS, Int64GetDatum(n->resets[i]), false);
			InsertRow(estate, grri, T_HOLD_GRANT, slot, set, cid);
			ResetPerTupleExprContext(estate);
		}
		ExecDropSingleTupleTableSlot(slot);
		CloseTarget(grri);
	}

	/* its line */
	InsertHoldLine(estate, lrri, n->wallet_id, n->asset, n->now, 0, *hold_id, "hold", -n->amount, cid);

	CloseTarget(lrri);
	CloseTarget(hrri);
	FreeExecutorState(estate);
	table_close(hrel, NoLock);
	table_close(grel, NoLock);
	table_close(lrel, NoLock);
	PopActiveSnapshot();
	CommandCounterIncrement();
	HotLeave();
	return true;
}

/*
 * Update the row of rel at *tid (read with snap) as UPDATE would: the
 * columns atts[0..n-1] set to values/nulls, replica identity and every CHECK
 * constraint checked, index entries when the new version is not HOT.  The
 * caller holds the balance lock, so no one else can have changed the row.
 */
static void
UpdateRow(EState *estate, Relation rel, HotTable t, ItemPointer tid, Snapshot snap, CommandId cid,
		  int n, int *atts, Datum *values, bool *nulls, ItemPointer newtid)
{
	TupleTableSlot *oldslot = table_slot_create(rel, NULL);
	TupleTableSlot *newslot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);

	if (!table_tuple_fetch_row_version(rel, tid, snap, oldslot))
		elog(ERROR, "wallet: a row of wallet.%s changed under the balance lock", table_defs[t].name);
	ExecStoreHeapTuple(heap_modify_tuple_by_cols(ExecFetchSlotHeapTuple(oldslot, false, NULL),
												 RelationGetDescr(rel), n, atts, values, nulls),
					   newslot, true);
	CheckCmdReplicaIdentity(rel, CMD_UPDATE);
	if (RelationGetDescr(rel)->constr)
		ExecConstraints(Target(estate, rel, t, false, false), newslot, estate);
	UpdateVersion(rel, t, &oldslot->tts_tid, newslot, snap, cid, estate);
	if (newtid)
		*newtid = newslot->tts_tid;
	ExecDropSingleTupleTableSlot(newslot);
	ExecDropSingleTupleTableSlot(oldslot);
}

/*
 * Resolve a hold (1.1 schema) whose reservations all go back to their grants
 * (none was voided, expired or reset meanwhile: nothing leaves): its row gets
 * status, closed_at = at, event_id (0: null) and release_balance (when
 * has_balance), its nres rows of wallet.hold_grant (at tids, as
 * HotHoldGrantsRead found them) are deleted, and its 'release' line of
 * +h->amount is written.  False, having written nothing, when a table has
 * what the direct writes do not do.
 */
bool
HotHoldClose(const HotHold *h, const char *status, TimestampTz at, int64 event_id,
			 bool has_balance, int64 balance, int nres, const ItemPointerData *tids)
{
	Relation	hrel;
	Relation	grel;
	Relation	lrel;
	EState	   *estate;
	ResultRelInfo *lrri;
	Snapshot	snap;
	CommandId	cid;
	int			atts[4];
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	HotEnter();
	if (!HoldObjects())
	{
		HotLeave();
		return false;
	}
	snap = PushFreshSnapshot();
	hrel = OpenTable(T_HOLD, RowExclusiveLock);
	grel = OpenTable(T_HOLD_GRANT, RowExclusiveLock);
	lrel = OpenTable(T_LINE, RowExclusiveLock);
	if (cache.tables[T_HOLD].by_sql || cache.tables[T_LINE].by_sql ||
		(nres > 0 && cache.hold_grant_deletes) || !HoldObjects())
	{
		table_close(hrel, NoLock);
		table_close(grel, NoLock);
		table_close(lrel, NoLock);
		PopActiveSnapshot();
		HotLeave();
		return false;
	}
	CheckPrivilege(T_HOLD, ACL_SELECT | ACL_UPDATE);
	CheckPrivilege(T_LINE, ACL_INSERT);
	if (nres > 0)
		CheckPrivilege(T_HOLD_GRANT, ACL_SELECT | ACL_DELETE);
	cid = GetCurrentCommandId(true);
	estate = CreateExecutorState();
	estate->es_output_cid = cid;

	/* the hold */
	atts[0] = ATT(T_HOLD, H_STATUS);
	values[0] = CStringGetTextDatum(status);
	atts[1] = ATT(T_HOLD, H_CLOSED_AT);
	values[1] = TimestampTzGetDatum(at);
	atts[2] = ATT(T_HOLD, H_EVENT_ID);
	values[2] = Int64GetDatum(event_id);
	nulls[2] = event_id == 0;
	atts[3] = cache.hold11[HX_RELEASE_BALANCE];
	values[3] = Int64GetDatum(balance);
	nulls[3] = !has_balance;
	UpdateRow(estate, hrel, T_HOLD, (ItemPointer) &h->tid, snap, cid, 4, atts, values, nulls, NULL);

	/* its reservations: none left */
	if (nres > 0)
		CheckCmdReplicaIdentity(grel, CMD_DELETE);
	for (int i = 0; i < nres; i++)
	{
		TM_FailureData tmfd;
		TM_Result	tm = table_tuple_delete(grel, (ItemPointer) &tids[i], cid, snap, InvalidSnapshot,
											true, &tmfd, false);

		if ((tm == TM_Updated || tm == TM_Deleted) && IsolationUsesXactSnapshot())
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update")));
		if (tm != TM_Ok)
			elog(ERROR, "wallet: a reservation of hold " INT64_FORMAT " changed under the balance lock (%d)",
				 h->id, tm);
	}

	/* its line */
	lrri = WriteTarget(estate, lrel, T_LINE, true);
	InsertHoldLine(estate, lrri, h->wallet_id, h->asset, at, event_id, h->id, "release", h->amount, cid);
	CloseTarget(lrri);

	FreeExecutorState(estate);
	table_close(hrel, NoLock);
	table_close(grel, NoLock);
	table_close(lrel, NoLock);
	PopActiveSnapshot();
	CommandCounterIncrement();
	HotLeave();
	return true;
}

/*
 * Write back what a call changed on the locked balance row (overdraft, held,
 * holds_open), as AccountSave's UPDATE does.  False, having written nothing,
 * when wallet.account has an UPDATE trigger (then AccountSave does it).
 */
bool
HotAccountSave(const Account *acct)
{
	Relation	arel;
	TupleTableSlot *slot;
	ScanKeyData keys[2];
	EState	   *estate;
	Snapshot	snap;
	CommandId	cid;
	ItemPointerData newtid;
	int			atts[3];
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	HotEnter();
	snap = PushFreshSnapshot();
	arel = OpenTable(T_ACCOUNT, RowExclusiveLock);
	/* an UPDATE trigger, or a stored generated column UPDATE would compute */
	if (cache.tables[T_ACCOUNT].by_sql ||
		(RelationGetDescr(arel)->constr && RelationGetDescr(arel)->constr->has_generated_stored))
	{
		table_close(arel, NoLock);
		PopActiveSnapshot();
		HotLeave();
		return false;
	}
	CheckPrivilege(T_ACCOUNT, ACL_SELECT | ACL_UPDATE);
	slot = table_slot_create(arel, NULL);
	/* where it was locked, if that version is still the one a fresh snapshot sees; else by key */
	if (account_seen.lxid != MyProc->lxid || account_seen.wallet_id != acct->wallet_id ||
		strcmp(account_seen.asset, acct->asset) != 0 ||
		!table_tuple_fetch_row_version(arel, &account_seen.tid, snap, slot))
	{
		Relation	aidx = OpenIndex(I_ACCOUNT_PKEY, AccessShareLock);

		Key(&keys[0], aidx, 0, F_INT8EQ, Int64GetDatum(acct->wallet_id));
		Key(&keys[1], aidx, 1, F_TEXTEQ, CStringGetTextDatum(acct->asset));
		if (!IndexFetch(arel, aidx, snap, keys, 2, slot))
			elog(ERROR, "wallet: the balance row of wallet " INT64_FORMAT " vanished under its lock",
				 acct->wallet_id);
		index_close(aidx, NoLock);
	}
	cid = GetCurrentCommandId(true);
	estate = CreateExecutorState();
	estate->es_output_cid = cid;
	atts[0] = ATT(T_ACCOUNT, A_OVERDRAFT);
	values[0] = Int64GetDatum(acct->overdraft);
	atts[1] = ATT(T_ACCOUNT, A_HELD);
	values[1] = Int64GetDatum(acct->held);
	atts[2] = ATT(T_ACCOUNT, A_HOLDS_OPEN);
	values[2] = Int32GetDatum(acct->holds_open);
	UpdateRow(estate, arel, T_ACCOUNT, &slot->tts_tid, snap, cid, 3, atts, values, nulls, &newtid);
	AccountRowSeen(acct, &newtid);
	/* the hint follows the row it moved (a hold's capture finds it there) */
	AccountTidEntry(acct->wallet_id, acct->asset, true)->tid = newtid;
	FreeExecutorState(estate);
	ExecDropSingleTupleTableSlot(slot);
	table_close(arel, NoLock);
	PopActiveSnapshot();
	CommandCounterIncrement();
	HotLeave();
	return true;
}

/* ------------------------------------------------------- holds_made */

PG_FUNCTION_INFO_V1(wallet_hold_marks_wallet);

/*
 * BEFORE INSERT trigger on wallet.hold (1.1): sets wallet.holds_made of the
 * hold's wallet, which makes a debit look its key up among holds (HotKeyFind).
 * Only when it is not set yet, as of now: an UPDATE of wallet.wallet, even of
 * no row, fires its wallet_cache trigger, which makes every backend drop its
 * copies of the wallets.  Two first holds at once both update; the second
 * waits for the first and then changes nothing.  Runs as the table's owner,
 * as wallet_price_in_force does.
 */
Datum
wallet_hold_marks_wallet(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[1] = {INT8OID};
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	Datum		wallet_id;
	bool		isnull;
	bool		made = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "wallet: hold_marks_wallet must be a BEFORE INSERT row trigger");
	desc = RelationGetDescr(td->tg_relation);
	wallet_id = heap_getattr(td->tg_trigtuple, SPI_fnumber(desc, "wallet_id"), desc, &isnull);
	if (isnull)
		return PointerGetDatum(td->tg_trigtuple);

	HotEnter();
	if (!cache.valid)
		CacheBuild();
	/* the balance lock of this call found it marked (holds_seen) */
	if (cache.wallet_holds_made != 0 && holds_seen.lxid == MyProc->lxid &&
		holds_seen.subxid == GetCurrentSubTransactionId() &&
		holds_seen.wallet_id == DatumGetInt64(wallet_id) &&
		holds_seen.generation == wallet_coherence.generation)
		made = true;
	else if (cache.wallet_holds_made != 0)
	{
		Relation	wrel = OpenTable(T_WALLET, AccessShareLock);
		Relation	widx = OpenIndex(I_WALLET_PKEY, AccessShareLock);
		TupleTableSlot *slot = table_slot_create(wrel, NULL);
		Snapshot	snap = PushFreshSnapshot();
		ScanKeyData key;

		Key(&key, widx, 0, F_INT8EQ, wallet_id);
		if (IndexFetch(wrel, widx, snap, &key, 1, slot))
		{
			made = DatumGetBool(slot_getattr(slot, cache.wallet_holds_made, &isnull)) && !isnull;
		}
		PopActiveSnapshot();
		ExecDropSingleTupleTableSlot(slot);
		index_close(widx, NoLock);
		table_close(wrel, NoLock);
	}
	HotLeave();

	if (!made)
	{
		Datum		values[1] = {wallet_id};

		WalletExecAsOwner(td->tg_relation, PLAN_HOLD_MARKS_WALLET,
						  "UPDATE wallet.wallet SET holds_made = true "
						  " WHERE id OPERATOR(pg_catalog.=) $1 AND NOT holds_made",
						  1, argtypes, values, SPI_OK_UPDATE);
	}
	return PointerGetDatum(td->tg_trigtuple);
}

/*
 * What many debits drew from grants, each grant updated once: remaining -
 * takes[i] for grant_ids[i], found where it was read (tids[i]) if that is
 * still its current version, else by primary key (wallet_ingest, whose
 * debits were written by HotDebitWrite with grants_later).  The caller holds
 * the balance locks of every grant's wallet.  Returns false, writing
 * nothing, when an UPDATE trigger on grants needs the SQL statement.
 */
bool
HotGrantsTake(int n, const int64 *grant_ids, const ItemPointerData *tids, const int64 *takes)
{
	Relation	grel;
	Relation	gpk;
	EState	   *estate;
	ResultRelInfo *grri;
	TupleTableSlot *gslot;
	TupleTableSlot *gnew;
	Snapshot	snap;
	CommandId	cid;

	if (n == 0)
		return true;
	HotEnter();
	snap = PushFreshSnapshot();
	grel = OpenTable(T_GRANT, RowExclusiveLock);
	if (cache.tables[T_GRANT].by_sql)
	{
		table_close(grel, NoLock);
		PopActiveSnapshot();
		HotLeave();
		return false;
	}
	CheckPrivilege(T_GRANT, ACL_SELECT | ACL_UPDATE);
	gpk = OpenIndex(I_GRANT_PKEY, AccessShareLock);
	cid = GetCurrentCommandId(true);
	estate = CreateExecutorState();
	estate->es_output_cid = cid;
	/* what the executor checks before an UPDATE: replica identity, publications' row filters */
	CheckCmdReplicaIdentity(grel, CMD_UPDATE);
	/* the constraints the update can break (CacheBuildGeneration) */
	grri = WriteTarget(estate, grel, T_GRANT, false);
	grri->ri_ConstraintExprs = cache.tables[T_GRANT].update_checks;
	gslot = table_slot_create(grel, NULL);
	gnew = MakeSingleTupleTableSlot(RelationGetDescr(grel), &TTSOpsHeapTuple);
	for (int i = 0; i < n; i++)
	{
		ScanKeyData key;
		ItemPointerData tid;
		bool		isnull;

		CHECK_FOR_INTERRUPTS();
		tid = tids[i];
		/* the version read, unless written since (a reset, an earlier flush of this batch) */
		if (!ItemPointerIsValid(&tid) ||
			!table_tuple_fetch_row_version(grel, &tid, snap, gslot) ||
			SlotInt64(gslot, ATT(T_GRANT, G_ID), &isnull) != grant_ids[i])
		{
			Key(&key, gpk, 0, F_INT8EQ, Int64GetDatum(grant_ids[i]));
			if (!IndexFetch(grel, gpk, snap, &key, 1, gslot))
				elog(ERROR, "wallet: grant " INT64_FORMAT " vanished", grant_ids[i]);
		}
		GrantTake(grel, grri, estate, gslot, gnew, snap, cid, takes[i]);
		ExecClearTuple(gnew);
		ResetPerTupleExprContext(estate);
	}
	ExecDropSingleTupleTableSlot(gnew);
	ExecDropSingleTupleTableSlot(gslot);
	FreeExecutorState(estate);
	index_close(gpk, NoLock);
	table_close(grel, NoLock);
	PopActiveSnapshot();
	CommandCounterIncrement();
	HotLeave();
	return true;
}
