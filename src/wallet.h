/*
 * wallet.h
 *	  Declarations shared by the parts of the wallet extension.
 *
 * The parts, one file each:
 *	  wallet.c	 module init, settings, kept SPI plans, result rows
 *	  amount.c	 exact decimals (int128) and minor-unit conversion
 *	  coherence.c the rule every per-backend cache follows
 *	  asset.c	 the asset cache
 *	  account.c	 finding a wallet and locking its balance row
 *	  grant.c	 what time does to grants (expiry, resets) and drawdown order
 *	  price.c	 price rules: validate, compile, cache, evaluate
 *	  debit.c	 the debit engine: wallet_debit, wallet_authorize_debit
 *	  hold.c	 wallet_hold, wallet_capture, wallet_release
 *	  balance.c	 wallet_balance, wallet_balances
 *	  outbox.c	 low-balance and decline notifications
 *	  alert.c	 alerts, recharges and declined notices of 1.1 (the SQL decides)
 *	  hotpath.c	 direct table access for the debit hot path
 *	  cap.c		 spend caps per period and per member
 *	  quote.c	 wallet_quote: what a debit would do, without doing it
 *	  ingest.c	 wallet_ingest: many debits in one call
 *	  shard.c	 scale-out: wallet.shard, wallet.shards, routing bits in ids
 *	  scope.c	 scoped grants: which debits a grant serves; wallet_available, wallet_credits
 *	  reads.c	 the settled time of the billing reads' caches (wallet._settled)
 */
#ifndef WALLET_H
#define WALLET_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

/* SQLSTATEs of the contract */
#define ERRCODE_WALLET_NO_WALLET	MAKE_SQLSTATE('W','L','0','0','1')
#define ERRCODE_WALLET_NO_ASSET		MAKE_SQLSTATE('W','L','0','0','2')
#define ERRCODE_WALLET_NO_PRICE		MAKE_SQLSTATE('W','L','0','0','3')
#define ERRCODE_WALLET_KEY_REUSED	MAKE_SQLSTATE('W','L','0','0','4')
#define ERRCODE_WALLET_HOLD_CLOSED	MAKE_SQLSTATE('W','L','0','0','5')
#define ERRCODE_WALLET_SCALE		MAKE_SQLSTATE('W','L','0','0','6')
#define ERRCODE_WALLET_NOT_FOUND	MAKE_SQLSTATE('W','L','0','0','7')
#define ERRCODE_WALLET_OTHER_SHARD	MAKE_SQLSTATE('W','L','0','0','8')

#define WALLET_MAX_SCALE	12
#define WALLET_MAX_KEY_LENGTH 255	/* bytes of an idempotency key */

/* byte limits of the text inputs (docs/security.md); 22023 beyond them */
#define WALLET_MAX_CUSTOMER_LENGTH 256
#define WALLET_MAX_METER_LENGTH 127
#define WALLET_MAX_DIMENSION_KEY_LENGTH 127	/* as a cap's dimension */
#define WALLET_MAX_DIMENSION_VALUE_LENGTH 1024	/* its text, as a cap's member */

/* ---- amount.c: exact decimals ---- */

/* value = v / 10^scale, exactly */
typedef struct Dec
{
	int128		v;
	int			scale;
} Dec;

typedef enum Rounding
{
	ROUND_HALF_UP,
	ROUND_UP,
	ROUND_DOWN,
	ROUND_HALF_EVEN
} Rounding;

extern Dec	DecFromNumeric(Numeric num, const char *field);
extern bool DecFromString(const char *s, Dec *out);
extern bool DecDigitsFit(const char *s);
extern Dec	DecFromInt(int64 v);
extern Dec	DecFromTotal(Numeric num, const char *field);
extern Dec	DecTotalFor(Dec total, Dec b);
extern Dec	DecMul(Dec a, Dec b);
extern Dec	DecAdd(Dec a, Dec b);
extern Dec	DecSub(Dec a, Dec b);
extern int	DecCmp(Dec a, Dec b);
extern Dec	DecMin(Dec a, Dec b);
extern Dec	DecMax(Dec a, Dec b);
extern int64 DecToMinor(Dec x, int64 divisor, int scale, Rounding rounding);
extern int128 DecToMinorWide(Dec x, int64 divisor, int scale, Rounding rounding);
extern int128 DecDivToMinorWide(Dec x, Dec d, int scale, Rounding rounding);
extern int128 DecMulToMinorWide(Dec a, Dec b, int64 divisor, int scale, Rounding rounding);
extern int64 MinorFromWide(int128 r);
extern int64 DecCeilDiv(Dec a, Dec b);
extern int64 DecDivToMinor(Dec x, Dec d, int scale, Rounding rounding);
extern Dec	DecDiv(Dec a, Dec b, int scale, Rounding rounding);
extern Numeric DecToNumeric(Dec x);
extern int64 AmountToMinor(Numeric amount, int scale, const char *asset, const char *field);
extern Numeric MinorToNumeric(int64 minor, int scale);
extern int64 AddMinor(int64 a, int64 b);
extern bool BelowFloor(int64 available, int64 amount, int64 limit);
extern int64 SubMinor(int64 a, int64 b);

/* ---- coherence.c: the rule of every per-backend cache ---- */

/* one cache's state under the rule (zero-initialised: static) */
typedef struct Coherence
{
	uint64		generation;		/* moves at each invalidation; stamps equal to it are valid */
	LocalTransactionId inval_lxid;	/* the transaction that read the last invalidation */
	TransactionId inval_xid;	/* the next xid when it was read (or the cache registered) */
	bool		xact_only;		/* filled under an old transaction snapshot: drop at its end */
	bool		subabort_kept;	/* set by the cache: every change of its rows sends an
								 * invalidation, which a subtransaction's abort replays */
	bool		registered;
	struct Coherence *next;
} Coherence;

extern void CoherenceInvalidate(Coherence *cc);
extern uint64 CoherenceAccept(Coherence *cc);
extern Snapshot CoherencePushSnapshot(void);
extern void CoherenceFilled(Coherence *cc);

/* ---- asset.c ---- */

typedef struct AssetInfo
{
	char		code[NAMEDATALEN];
	int			scale;
} AssetInfo;

extern const AssetInfo *AssetLookup(const char *code);

/* ---- wallet.c: settings, plans, results ---- */

extern Interval *wallet_max_backdate;
extern Interval *wallet_max_future;
extern char *wallet_reporting_currency;

/* GUC check hook of a non-negative interval setting; extra is the parsed Interval */
extern bool WalletCheckInterval(char **newval, void **extra, GucSource source);

/* kept SPI plans, one slot each */
typedef enum PlanId
{
	PLAN_FIND_WALLET,
	PLAN_CREATE_ACCOUNT,
	PLAN_ACCOUNT_UPDATE,
	PLAN_LIVE_HOLDS,
	PLAN_APPLY_RESET,
	PLAN_READ_ACCOUNTS,
	PLAN_HOLD_INSERT,
	PLAN_HOLD_GET,
	PLAN_HOLD_CLOSE,
	PLAN_LINE,
	PLAN_PRICES,
	PLAN_PLAN_AT,
	PLAN_COUNTER_GET,
	PLAN_COUNTER_ADD,
	PLAN_COUNTER_GET10,
	PLAN_COUNTER_ADD10,
	PLAN_OUTBOX,
	PLAN_PENDING_GRANTS,
	PLAN_CAP_CHECK,
	PLAN_CAP_RECORD,
	PLAN_CAP_OUTBOX,
	PLAN_READ_ACCOUNT,
	PLAN_CREATE_ACCOUNTS,
	PLAN_LOCK_MANY,
	PLAN_LOCK_MANY11,
	PLAN_WRITE_DEBITS,
	PLAN_ROUTE_CUSTOMER,
	PLAN_UNIT_VALUE,
	PLAN_PRICE_IN_FORCE,
	PLAN_ALERT_EVAL,
	PLAN_ALERT_EVAL_BACK,
	PLAN_DECLINE_DUE,
	PLAN_ALERT_RAISED,
	PLAN_ALERT_BELOW,
	PLAN_HOT_EVENT_INSERT,
	PLAN_HOT_EVENT_INSERT_ID,
	PLAN_HOLD_MARKS_WALLET,
	PLAN_HOT_GRANT_TAKE,
	PLAN_HOT_LINE_INSERT,
	PLAN_SCOPE_ACCOUNTS,
	PLAN_HOLD_RESERVED,
	PLAN_PENDING_GRANTS11,
	PLAN_CAP_CHECK_HELD,
	PLAN_HOLD_GET11,
	PLAN_HOLD_INSERT11,
	PLAN_HOLD_GRANTS,
	PLAN_HOLD_CONSUME,
	PLAN_HOLD_SETTLE,
	PLAN_HOLD_CLOSE11,
	PLAN_HOLD_EVENTS,
	PLAN_HOLD_EXTEND,
	PLAN_HOLD_REPLAY,
	PLAN_PENDING_OVERDRAFT,
	PLAN_PENDING_GRANTS_WALLET,
	PLAN_PENDING_GRANTS11_WALLET,
	PLAN_PENDING_OVERDRAFT_WALLET,
	PLAN_PLAN_IN_FORCE,
	PLAN_USAGE_GIVEBACK,
	PLAN_USAGE_GIVEBACK_EVENT,
	PLAN__COUNT
} PlanId;

extern SPIPlanPtr WalletPlan(PlanId id, const char *sql, int nargs, const Oid *argtypes);

/* the installed schema's release: 10 for 1.0, 11 for 1.1 (see wallet--1.0--1.1.sql) */
extern int	WalletSchemaVersion(void);
extern void WalletRequireSchema(int version, const char *what);
extern void WalletExec(PlanId id, const char *sql, int nargs, const Oid *argtypes,
					   Datum *values, const char *nulls, bool read_only, int expect);
extern void WalletExecAsOwner(Relation rel, PlanId id, const char *sql, int nargs,
							  const Oid *argtypes, Datum *values, int expect);
extern pg_attribute_noreturn() void WalletRowSkipped(const char *table);
extern void WalletExpectRows(uint64 want, const char *table);
extern Datum Int8ArrayDatum(const int64 *values, int n);
extern Datum TextArrayDatum(const char *const *values, int n);

/* a result row, built after SPI_finish */
typedef struct WalletResult
{
	bool		approved;
	bool		replayed;
	const char *reason;
	int64		event_id;		/* 0 = null */
	int64		hold_id;		/* 0 = null */
	const char *asset;
	int			scale;
	bool		has_amount;
	int64		amount;
	bool		has_balance;
	int64		balance;
} WalletResult;

extern Datum WalletResultDatum(FunctionCallInfo fcinfo, const WalletResult *r);
extern TimestampTz WalletNow(void);
extern text *ArgText(FunctionCallInfo fcinfo, int n, const char *name);
extern char *ArgCString(FunctionCallInfo fcinfo, int n, const char *name);
extern void TextLimitCheck(const char *name, const char *s);
extern Numeric ArgNumeric(FunctionCallInfo fcinfo, int n, const char *name);
extern Jsonb *ArgDimensions(FunctionCallInfo fcinfo, int n);
extern TimestampTz ArgOccurredAt(FunctionCallInfo fcinfo, int n);
extern Jsonb *DimensionsCheck(Jsonb *j);
extern char *JsonUnknownField(JsonbContainer *obj, const char *const *fields, int nfields);
extern char *SpiGetText(HeapTuple tup, TupleDesc desc, int col, bool *isnull);
extern int64 SpiGetInt64(HeapTuple tup, TupleDesc desc, int col, bool *isnull);

/* ---- account.c ---- */

typedef struct Account
{
	int64		wallet_id;
	char	   *customer;
	char		status[16];
	char		asset[NAMEDATALEN];
	int			scale;
	int64		overdraft_limit;
	bool		has_low_balance;
	int64		low_balance;	/* 1.1: evaluate when available falls below it */
	bool		has_alert_back;
	int64		alert_back;		/* 1.1: ... when available was at or above it before */
	bool		has_alert_until;
	TimestampTz alert_until;	/* 1.1: ... when the transaction began at or after it */
	bool		has_max_holds;
	int32		max_holds;
	int64		overdraft;		/* in use */
	int64		held;			/* open holds, expired ones included */
	int32		holds_open;
	int32		caps;			/* spend caps set on this wallet and asset */
	bool		locked;			/* read under the lock: later reads take a fresh
								 * snapshot, to see what the call before committed */
	uint64		no_holds;		/* nonzero: the wallet had no hold when HotAccountLock
								 * locked this row (HotKeyFind skips holds); 0: unknown */
	bool		row_deleted;	/* HotAccountLockMany: the row was deleted while the
								 * lock waited (a shard's prune) */
} Account;

extern void AccountLockByCustomer(const char *customer, const AssetInfo *asset, Account *acct);
extern void AccountLockById(int64 wallet_id, const AssetInfo *asset, Account *acct);
extern void AccountRead(const char *customer, const AssetInfo *asset, Account *acct);
extern void AccountReadLevels11(HeapTuple tup, TupleDesc desc, int col, Account *acct);
extern void AccountLockMany(int n, const int64 *wallet_ids, const AssetInfo *const *assets,
							Account *accts);
extern int64 WalletIdOf(const char *customer, bool missing_ok, char *status_out);
extern void AccountSave(Account *acct);

/* ---- grant.c ---- */

typedef struct Scope Scope;		/* scope.c */

typedef struct GrantRow
{
	int64		id;
	int			category_rank;	/* promotional 0, bundled 1, paid 2 */
	int32		priority;
	int64		amount;
	int64		remaining;		/* after the resets time has made */
	int64		stored_remaining;
	TimestampTz effective_at;
	bool		has_expiry;
	TimestampTz expires_at;
	bool		recurring;
	Interval	recurrence;
	int64		rollover_max;
	int64		resets;			/* boundaries applied, after time's */
	int64		stored_resets;
	Numeric		unit_revenue;
	int64		take;			/* drawn by the current debit */
	const Scope *scope;			/* NULL: serves every debit */
	bool		excluded;		/* does not serve the debit at hand (ScopeSelect) */
	int64		reserved;		/* what open holds reserve on it (1.1) */
	int64		carried_gone;	/* what resets carried for holds expired since, not swept
								 * yet: it left at their expiry (1.1) */
	ItemPointerData tid;		/* where it was read (invalid: written since) */
} GrantRow;

typedef struct GrantSet
{
	int			n;
	GrantRow   *rows;			/* live grants, in drawdown order */
	int64		total;			/* sum of remaining of live grants, less what
								 * open holds reserve on them: what a debit can draw */
	int			resets_written; /* reset lines GrantsLoad wrote */
	int			nscoped;		/* live grants with a scope */
	int64		excluded;		/* what the excluded grants hold (off total) */
	int64		held;			/* open holds (ttl not passed) */
	int32		holds_live;		/* how many */
	int64		reserved_live;	/* what they reserve on live grants (off total) */
	int64		unbacked;		/* what available counts off besides: the holds'
								 * overdraft room (1.0 schema: all of held) */
	bool		binding;		/* reservations applied (1.1 schema) */
} GrantSet;

extern void GrantsLoad(const Account *acct, TimestampTz now, bool write_resets, GrantSet *set);
extern void GrantsLoadMany(int n, const Account *accts, TimestampTz now, GrantSet *sets);
extern int64 LiveHeld(const Account *acct, TimestampTz now, int32 *count);
extern TimestampTz GrantNextReset(const GrantRow *g);
extern void HoldsLoad(const Account *acct, TimestampTz now, GrantSet *set, int nrows);
extern void HoldsTakeOff(GrantSet *set);
extern void LineWrite(const Account *acct, TimestampTz at, int64 grant_id, int64 event_id,
					  int64 hold_id, const char *kind, int64 amount);

/* ---- price.c ---- */

typedef struct PricedUsage
{
	const AssetInfo *asset;
	int64		price_id;
	int64		amount;			/* minor units */
} PricedUsage;

typedef struct Rule Rule;
typedef struct PriceVersion
{
	int64		id;
	AssetInfo	asset;			/* a copy: the asset cache is dropped on abort */
	Rule	   *rule;
} PriceVersion;

/* one counter a price read (usage of a tier or package, or what max_per_period counted) */
typedef struct CounterAdd
{
	const char *meter;			/* wallet.usage_counter.meter */
	const char *counter;		/* wallet.usage_counter.counter (the rule's counter in the
								 * meter's rule, '' its own); NULL on a 1.0 schema, whose
								 * key is meter alone (the suffix appended) */
	const char *period;
	TimestampTz period_start;
	Dec			add;			/* units, or the amount charged in asset units */
	bool		charged;		/* a max_per_period counter (add: the amount charged) */
} CounterAdd;

/* at most a usage counter and a max_per_period counter per level of a rule */
#define PRICE_MAX_COUNTERS 20

/* the counters a price read, to add to once the debit is approved */
typedef struct UsageToRecord
{
	int			n;
	CounterAdd	adds[PRICE_MAX_COUNTERS];
} UsageToRecord;

extern uint64 PriceCacheGeneration;
extern const PriceVersion *PriceFind(const char *customer, const char *meter, TimestampTz at);
extern int64 PriceEvaluate(const PriceVersion *pv, int64 wallet_id, const char *meter,
						   Dec quantity, Jsonb *dims, TimestampTz occurred_at, UsageToRecord *usage);
extern int64 PriceEvaluateCost(const PriceVersion *pv, int64 wallet_id, const char *meter,
							   Dec quantity, Jsonb *dims, TimestampTz occurred_at, Numeric cost,
							   UsageToRecord *usage);
extern int64 PriceEvaluateAfter(const PriceVersion *pv, int64 wallet_id, const char *meter,
								Dec quantity, Jsonb *dims, TimestampTz occurred_at, Numeric cost,
								const UsageToRecord *const *earlier, int nearlier,
								UsageToRecord *usage);
extern void UsageRecord(const UsageToRecord *u, int64 wallet_id, Dec quantity);
extern const PriceVersion *PriceVersionById(const char *meter, int64 price_id);
extern bool InForceAtCommit(TimestampTz effective_at, bool plan);
extern void PriceCounterKeys(const PriceVersion *pv, int64 wallet_id, const char *meter, Dec quantity,
							 Jsonb *dims, TimestampTz occurred_at, UsageToRecord *usage);
extern Dec	QuantityDec(Numeric quantity);
extern void CheckOccurredAt(TimestampTz occurred_at);

/* ---- debit.c ---- */

/* what wallet_ingest's debits drew from each grant, written in bulk */
typedef struct DebitBuffer DebitBuffer;

typedef struct DebitRequest
{
	const char *customer;
	const char *meter;			/* null for wallet_debit */
	Numeric		quantity;		/* null for wallet_debit */
	const char *key;			/* null for a capture */
	Jsonb	   *dims;
	TimestampTz occurred_at;
	Numeric		cost;
	int64		hold_id;		/* 0 unless a capture */
	int64		price_id;		/* 0 = none */
	int64		amount;
	DebitBuffer *defer;			/* set: DebitWrite queues the grant updates here */
} DebitRequest;

/* what an idempotency key holds: the event or hold of the first request */
typedef struct StoredRequest
{
	bool		is_hold;
	int64		id;				/* the event's, or the hold's */
	int64		hold_id;		/* the hold an event captured; 0 = none */
	const char *meter;		/* NULL for wallet_debit's events and for holds */
	Numeric		quantity;		/* NULL when there is no meter */
	Jsonb	   *dims;			/* NULL: none */
	char	   *asset;
	int64		amount;
	int64		balance_after;
} StoredRequest;

extern char *ArgKey(FunctionCallInfo fcinfo, int n);
extern Numeric ArgCost(FunctionCallInfo fcinfo, int n);
extern char *KeyCheck(char *key);
extern Numeric CostCheck(Numeric cost);
extern void Decline(const Account *acct, const char *reason, int64 available, WalletResult *res);
extern const char *StatusDecline(const Account *acct);
extern int64 Available(const Account *acct, const GrantSet *set, TimestampTz now, int64 release_first);

/* ---- cap.c (declared here: a Decision carries the caps it checked) ---- */

/* one spend cap as it applies to one debit: its bucket in the current period */
typedef struct CapUse
{
	char	   *period;			/* hour, day, week, month */
	char	   *dimension;		/* NULL: the whole wallet */
	char	   *dim_value;		/* the event's value ("" when it has none) */
	TimestampTz period_start;
	int64		cap;
	int64		spent;			/* before this debit */
	int64		held;			/* room reserved by open holds (1.1) */
} CapUse;

typedef struct CapSet
{
	int			n;				/* 0: no caps checked (none set) */
	CapUse	   *rows;
	int			blocked;		/* the first cap the debit would pass, or -1 */
} CapSet;

extern bool CapCheck(const Account *acct, Jsonb *dims, int64 amount, TimestampTz now,
					 CapSet *caps);
extern void CapCheckCurrent(const Account *acct, Jsonb *dims, TimestampTz now,
							const CapSet *caps);
extern bool CapCheckMany(const Account *acct, int n, Jsonb *const *dims, const int64 *amounts,
						 Jsonb *freed_dims, int64 freed, TimestampTz now, CapSet *caps);
extern void CapRecord(const Account *acct, Jsonb *dims, int64 amount, TimestampTz now);
extern void CapDeclined(const Account *acct, const CapSet *caps, int64 available, int64 amount);

/* what a debit would do: decided before anything is written */
typedef struct Decision
{
	GrantSet	set;
	CapSet		caps;			/* the caps checked (n = 0 when none are set) */
	int64		available;		/* before */
	int64		after;
	const char *decline;		/* NULL: approve */
} Decision;

extern void DebitDecide(Account *acct, const DebitRequest *req, TimestampTz now,
						int64 release_first, bool write, Decision *d);
extern bool DebitApply(Account *acct, DebitRequest *req, TimestampTz now,
					   int64 release_first, WalletResult *res);
extern bool DebitFinish(Account *acct, DebitRequest *req, TimestampTz now,
						int64 release_first, Decision *d, WalletResult *res);
extern bool Replayed(Account *acct, const char *key, const DebitRequest *req,
					 int64 hold_amount, WalletResult *res);
extern void ReplayMatch(const Account *acct, const char *key, const DebitRequest *req,
						int64 hold_amount, const StoredRequest *st, WalletResult *res);
extern void StoredFetchMany(int n, const int64 *wallet_ids, const char *const *keys,
							const bool *holds, StoredRequest **found, MemoryContext cxt);
extern void DebitJudge(Account *acct, const DebitRequest *req, TimestampTz now,
					   int64 release_first, Decision *d);
extern int64 DebitWriteNow(const Account *acct, const DebitRequest *req, TimestampTz now,
						   int64 balance_after, int nlines, Datum *ids, bool *idnulls,
						   Datum *takes, Datum *revs, const ItemPointerData *tids);
extern DebitBuffer *DebitBufferCreate(MemoryContext cxt);
extern int	DebitBufferCount(const DebitBuffer *buf);
extern void DebitBufferFlush(DebitBuffer *buf, TimestampTz now);
extern void DebitBufferClose(DebitBuffer *buf);

/* ---- outbox.c ---- */

extern void OutboxLowBalance(Account *acct, int64 before, int64 after);
extern void OutboxDeclined(const Account *acct, const char *reason, int64 available, int64 amount);
extern void OutboxNotify(const char *payload);

/* ---- alert.c ---- */

extern void AlertInit(void);
extern void AlertEval(Account *acct, int64 available, const int64 *before);
extern bool DeclineNoticeDue(const Account *acct, const char *reason);
extern void AlertRaised(const Account *acct, int64 available);

/* ---- hotpath.c ---- */

typedef enum HotLockResult
{
	HOT_LOCKED,
	HOT_NO_WALLET,
	HOT_NO_ACCOUNT
} HotLockResult;

/* the columns of GRANT_COLUMNS (grant.c) */
#define HOT_GRANT_COLUMNS 13
/* cols[GRANT_SCOPE_COLUMN]: where the scope column is (1.1), or 0; cols has HOT_GRANT_COLUMNS + 1 */
#define GRANT_SCOPE_COLUMN HOT_GRANT_COLUMNS

/* called by HotGrantsRead for each open grant */
typedef void (*HotGrantFn) (HeapTuple tup, TupleDesc desc, const int *cols,
							ItemPointer tid, void *arg);

/* an approved debit to write */
typedef struct HotDebitBatch HotDebitBatch;	/* a batch's event writer (hotpath.c) */

typedef struct HotDebit
{
	int64		wallet_id;
	const char *key;			/* NULL for a capture */
	const char *meter;			/* NULL for wallet_debit */
	Numeric		quantity;		/* NULL for wallet_debit */
	Jsonb	   *dims;
	TimestampTz occurred_at;
	TimestampTz now;
	const char *asset;
	int64		amount;
	int64		price_id;		/* 0 = none */
	Numeric		cost;
	int64		hold_id;		/* 0 = none */
	int64		balance_after;
	Numeric		minor_unit;		/* one minor unit of the asset */
	int			nlines;
	const int64 *grant_ids;		/* 0: the overdraft part */
	const ItemPointerData *tids;
	const int64 *takes;
	const Numeric *unit_revenues;
	bool		grants_later;	/* the caller updates the drawn grants (wallet_ingest) */
	HotDebitBatch *batch;		/* with grants_later: the batch's writer, or NULL */
} HotDebit;

extern HotLockResult HotAccountLock(const char *customer, int64 wallet_id,
									const AssetInfo *asset, Account *acct);
extern bool HotKeyFind(const Account *acct, const char *key, HeapTuple *tup, TupleDesc *desc);
extern void HotKeyFindMany(int n, const int64 *wallet_ids, const char *const *keys,
						   const bool *holds, HeapTuple *tups, TupleDesc *desc);
extern void HotGrantsReadMany(int n, const int64 *wallet_ids, const char *const *assets,
							  HotGrantFn fn, void *const *args);
extern void HotGrantsRead(int64 wallet_id, const char *asset, bool locked, HotGrantFn fn,
						  void *arg);
extern void HotGrantsCurrent(const GrantSet *set);
extern int64 HotDebitWrite(const HotDebit *w);
extern HotDebitBatch *HotDebitBatchCreate(MemoryContext cxt);
extern void HotDebitBatchEnd(HotDebitBatch *b);
extern bool HotGrantsTake(int n, const int64 *grant_ids, const ItemPointerData *tids,
						  const int64 *takes);
extern uint64 HotWalletIds(int n, const char *const *customers, bool use_cache,
						   int64 *wallet_ids, char (*statuses)[16], bool *cached,
						   bool *holds_made);
extern bool HotWalletsSame(uint64 ticket);
extern int	HotAccountLockMany(int from, int n, const AssetInfo *const *assets, Account *accts);

/* a hold as read (1.1 schema) */
typedef struct HotHold
{
	int64		id;
	int64		wallet_id;
	char	   *asset;
	int64		amount;
	char		status[16];
	TimestampTz created_at;
	TimestampTz expires_at;
	int64		overdraft;
	Jsonb	   *dims;
	bool		has_release_balance;
	int64		release_balance;
	ItemPointerData tid;		/* where it was read (invalid: read through SQL, hold.c) */
	const AssetInfo *info;		/* hold.c: the asset looked up (hotpath.c leaves it) */
} HotHold;

/* a hold to place (1.1 schema) */
typedef struct HotHoldNew
{
	int64		wallet_id;
	const char *asset;
	int64		amount;
	const char *key;
	TimestampTz now;
	TimestampTz expires_at;
	int64		balance_after;
	Jsonb	   *dims;
	int64		overdraft;
	const char *meter;			/* NULL for wallet_hold */
	Numeric		quantity;		/* NULL for wallet_hold */
	int			ngrants;
	const int64 *grant_ids;
	const int64 *amounts;
	const int64 *resets;
} HotHoldNew;

/* a row of wallet.hold_grant */
typedef struct HotHoldGrant
{
	int64		grant_id;
	int64		amount;
	int64		resets;
	ItemPointerData tid;
} HotHoldGrant;

/* the only open hold of a balance, as its capture or release read it (grant.c) */
typedef struct HeldOnly
{
	int64		amount;
	int64		overdraft;
	int			nrows;			/* its rows of wallet.hold_grant */
	const HotHoldGrant *rows;
} HeldOnly;

extern void GrantsLoadHeld(const Account *acct, TimestampTz now, bool write_resets,
						   const HeldOnly *only, GrantSet *set);

/* called by HotOpenHoldsRead for each open hold */
typedef void (*HotHoldFn) (const HotHold *h, void *arg);

extern bool HotHoldsReady(void);
extern bool HotHoldRead(int64 hold_id, const ItemPointerData *at, HotHold *h);
extern int	HotHoldGrantsRead(int64 hold_id, bool locked, HotHoldGrant **rows);
extern void HotOpenHoldsRead(int64 wallet_id, const char *asset, bool locked,
							 HotHoldFn fn, void *arg);
extern bool HotHoldInsert(const HotHoldNew *n, int64 *hold_id);
extern bool HotHoldClose(const HotHold *h, const char *status, TimestampTz at, int64 event_id,
						 bool has_balance, int64 balance, int nres, const ItemPointerData *tids);
extern bool HotAccountSave(const Account *acct);

/* ---- scope.c ---- */

extern Scope *ScopeParse(Jsonb *j);
extern Jsonb *ScopeJson(const Scope *s);
extern bool ScopeApplies(const Scope *s, const char *meter, Jsonb *dims);
extern void ScopeSelect(GrantSet *set, const char *meter, Jsonb *dims);

/* ---- shard.c ---- */

extern void ShardInit(void);

#endif							/* WALLET_H */
