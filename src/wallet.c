/*
 * wallet.c
 *	  Module init, settings, kept SPI plans and result rows.
 */
#include "wallet.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "catalog/namespace.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* settings */
static char *max_backdate_text;
static char *max_future_text;
Interval   *wallet_max_backdate;
Interval   *wallet_max_future;
char	   *wallet_reporting_currency;

static SPIPlanPtr plans[PLAN__COUNT];

/* dimensions are stored on every event: keep them small */
#define MAX_DIMENSIONS_SIZE 4096

/* an interval setting that must not be negative: parsed once when set (extra) */
bool
WalletCheckInterval(char **newval, void **extra, GucSource source)
{
	Interval   *iv;
	Interval   *copy;

	PG_TRY();
	{
		iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(*newval),
												   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		FlushErrorState();
		GUC_check_errdetail("\"%s\" is not an interval.", *newval);
		return false;
	}
	PG_END_TRY();
	if (iv->time < 0 || iv->day < 0 || iv->month < 0)
	{
		GUC_check_errdetail("The interval must not be negative.");
		return false;
	}
	copy = malloc(sizeof(Interval));
	if (copy == NULL)
		return false;
	*copy = *iv;
	*extra = copy;
	return true;
}

static void
AssignBackdate(const char *newval, void *extra)
{
	wallet_max_backdate = (Interval *) extra;
}

static void
AssignFuture(const char *newval, void *extra)
{
	wallet_max_future = (Interval *) extra;
}

/*
 * Module init.  The backdate and future windows are PGC_SUSET: the
 * application's role cannot widen its own window (and price an event at an
 * old price); a superuser sets them, or ALTER DATABASE / ALTER ROLE, or a
 * GRANT SET ON PARAMETER.
 */
void
_PG_init(void)
{
	DefineCustomStringVariable("wallet.max_backdate",
							   "How far in the past an event's occurred_at may lie.",
							   "Older events are refused (22023); newer ones are priced at the version in force then.",
							   &max_backdate_text, "35 days", PGC_SUSET, 0,
							   WalletCheckInterval, AssignBackdate, NULL);
	DefineCustomStringVariable("wallet.max_future",
							   "How far ahead of now an event's occurred_at may lie.",
							   NULL,
							   &max_future_text, "5 minutes", PGC_SUSET, 0,
							   WalletCheckInterval, AssignFuture, NULL);
	DefineCustomStringVariable("wallet.reporting_currency",
							   "The currency of revenue, cost and margin in the finance views.",
							   NULL,
							   &wallet_reporting_currency, "USD", PGC_USERSET, 0,
							   NULL, NULL, NULL);
	ShardInit();
	AlertInit();
	MarkGUCPrefixReserved("wallet");
}

/*
 * The release of the schema installed in this database.  The C library of 1.1
 * serves a 1.0 schema not yet upgraded as well: what needs a 1.1 object asks
 * here first.  The answer comes from the system caches on every call (two hash
 * lookups), so an ALTER EXTENSION wallet UPDATE committed by another session
 * is seen by the next call, as any catalog change is: nothing is kept here.
 */
int
WalletSchemaVersion(void)
{
	Oid			nsp = get_namespace_oid("wallet", true);
	oidvector  *noargs;

	if (!OidIsValid(nsp))
		return 0;
	noargs = buildoidvector(NULL, 0);
	if (SearchSysCacheExists3(PROCNAMEARGSNSP, CStringGetDatum("_schema_version"),
							  PointerGetDatum(noargs), ObjectIdGetDatum(nsp)))
		return 11;
	return 10;
}

/* refuse what needs a newer schema than the one installed, naming the fix */
void
WalletRequireSchema(int version, const char *what)
{
	if (WalletSchemaVersion() < version)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs wallet %d.%d, but this database has wallet 1.0 installed",
						what, version / 10, version % 10),
				 errhint("Run ALTER EXTENSION wallet UPDATE.")));
}

/*
 * The kept plan for a slot, prepared on first use, always as a generic plan.
 * Every statement is a short lookup by primary key or unique index, whose plan
 * does not depend on the values: a custom plan made anew on each call cost
 * more than running the statement (the debit write most of all).  And the
 * statements of wallet_ingest take arrays of a batch's rows: a custom plan sees
 * the array's length and, on tables of some thousands of rows, prefers
 * scanning them whole into a hash, which costs more and grows with the table.
 */
SPIPlanPtr
WalletPlan(PlanId id, const char *sql, int nargs, const Oid *argtypes)
{
	SPIPlanPtr	plan = plans[id];

	if (plan == NULL)
	{
		plan = SPI_prepare_cursor(sql, nargs, (Oid *) argtypes, CURSOR_OPT_GENERIC_PLAN);
		if (plan == NULL)
			elog(ERROR, "wallet: SPI_prepare failed for plan %d: %s", id,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "wallet: SPI_keepplan failed");
		plans[id] = plan;
	}
	return plan;
}

/*
 * Run a kept plan.  expect >= 0 is the SPI result code wanted
 * (SPI_OK_SELECT, SPI_OK_UPDATE_RETURNING, ...).
 *
 * read_only must be false for every query made under the balance lock: only
 * then does SPI take a fresh snapshot, which (in READ COMMITTED) sees what the
 * transaction we waited for committed.  read_only = true reuses the caller's
 * snapshot and would miss it.
 */
void
WalletExec(PlanId id, const char *sql, int nargs, const Oid *argtypes,
		   Datum *values, const char *nulls, bool read_only, int expect)
{
	SPIPlanPtr	plan = WalletPlan(id, sql, nargs, argtypes);
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);

	if (rc < 0 || (expect >= 0 && rc != expect))
		elog(ERROR, "wallet: SPI_execute_plan (plan %d) returned %s", id,
			 SPI_result_code_string(rc));
}

/*
 * WalletExec in a connection of its own, as the owner of rel: for a trigger
 * that writes what the caller's role may not (as PostgreSQL's RI triggers
 * do).  Arguments are never null.
 */
void
WalletExecAsOwner(Relation rel, PlanId id, const char *sql, int nargs, const Oid *argtypes,
				  Datum *values, int expect)
{
	Oid			save_userid;
	int			save_sec;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(RelationGetForm(rel)->relowner,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "wallet: SPI_connect failed");
	WalletExec(id, sql, nargs, argtypes, values, NULL, false, expect);
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
}

/*
 * A row the wallet writes was not written: a BEFORE trigger added to one of
 * its tables returned NULL.  The wallet cannot keep its books without the
 * row, so the call fails, naming the table (never a crash, never XX000).
 */
void
WalletRowSkipped(const char *table)
{
	ereport(ERROR,
			(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
			 errmsg("a trigger on %s skipped a row the wallet must write", table),
			 errdetail("A BEFORE trigger on %s returned NULL.", table),
			 errhint("Triggers on the wallet's tables must not skip rows; drop or fix that trigger.")));
}

/* the last SPI statement wrote or returned fewer than want rows: a trigger skipped one */
void
WalletExpectRows(uint64 want, const char *table)
{
	if (SPI_processed < want)
		WalletRowSkipped(table);
}

/* n bigints as an int8[] datum: a parameter of a batch statement */
Datum
Int8ArrayDatum(const int64 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
}

/* n strings as a text[] datum: a parameter of a batch statement */
Datum
TextArrayDatum(const char *const *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(values[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* the transaction's time: what "now" means for expiry, holds and resets */
TimestampTz
WalletNow(void)
{
	return GetCurrentTransactionStartTimestamp();
}

static pg_attribute_noreturn() void
NullArgument(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s must not be null", name)));
}

text *
ArgText(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		NullArgument(name);
	return PG_GETARG_TEXT_PP(n);
}

char *
ArgCString(FunctionCallInfo fcinfo, int n, const char *name)
{
	char	   *s = text_to_cstring(ArgText(fcinfo, n, name));

	if (s[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	TextLimitCheck(name, s);
	return s;
}

/*
 * The byte limit of a named text input (customer, meter), checked before any
 * lookup: a value no wallet_create or wallet_set_price can have accepted is
 * 22023, counted in bytes as the tables count them.
 */
void
TextLimitCheck(const char *name, const char *s)
{
	int			limit;

	if (strcmp(name, "customer") == 0)
		limit = WALLET_MAX_CUSTOMER_LENGTH;
	else if (strcmp(name, "meter") == 0)
		limit = WALLET_MAX_METER_LENGTH;
	else
		return;
	if (strlen(s) > (size_t) limit)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is longer than %d bytes", name, limit),
				 errdetail("It is %zu bytes.", strlen(s))));
}

Numeric
ArgNumeric(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		NullArgument(name);
	return PG_GETARG_NUMERIC(n);
}

/* occurred_at: a time, never null (its default is now()) */
TimestampTz
ArgOccurredAt(FunctionCallInfo fcinfo, int n)
{
	if (PG_ARGISNULL(n))
		NullArgument("occurred_at");
	return PG_GETARG_TIMESTAMPTZ(n);
}

/* dimensions: a json object, or null/{} for none (returned as NULL) */
Jsonb *
ArgDimensions(FunctionCallInfo fcinfo, int n)
{
	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return NULL;
	return DimensionsCheck(PG_GETARG_JSONB_P(n));
}

static void DimensionsLimits(Jsonb *j);

/* the first key of the json object obj that is not one of fields, or NULL */
char *
JsonUnknownField(JsonbContainer *obj, const char *const *fields, int nfields)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		ok = false;

		if (tok != WJB_KEY)
			continue;
		for (int i = 0; i < nfields && !ok; i++)
			ok = strlen(fields[i]) == (size_t) v.val.string.len &&
				memcmp(fields[i], v.val.string.val, v.val.string.len) == 0;
		if (!ok)
			return pnstrdup(v.val.string.val, v.val.string.len);
	}
	return NULL;
}

/* dimensions that are not null: a json object; {} is none (NULL) */
Jsonb *
DimensionsCheck(Jsonb *j)
{
	if (!JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions must be a json object")));
	if (JB_ROOT_COUNT(j) == 0)
		return NULL;
	if (VARSIZE(j) > MAX_DIMENSIONS_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions are larger than %d bytes", MAX_DIMENSIONS_SIZE),
				 errdetail("Dimensions label an event (model, feature, user); they are stored with it.")));
	DimensionsLimits(j);
	return j;
}

/*
 * Each dimension's key and value (as text, what ->> gives and a spend cap
 * keys its member by) within their byte limits: a cap's bucket is then always
 * small enough for its index, and a decline is a result, never 54000.
 */
static void
DimensionsLimits(Jsonb *j)
{
	JsonbIterator *it = JsonbIteratorInit(&j->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			keylen = 0;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		size_t		len;

		if (tok == WJB_KEY)
		{
			keylen = v.val.string.len;
			if (keylen > WALLET_MAX_DIMENSION_KEY_LENGTH)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("a dimension key is longer than %d bytes", WALLET_MAX_DIMENSION_KEY_LENGTH)));
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		if (v.type == jbvString)
			len = v.val.string.len;
		else if (v.type == jbvNull || v.type == jbvBool)
			len = 5;
		else if (v.type == jbvNumeric)
			len = strlen(DatumGetCString(DirectFunctionCall1(numeric_out,
															 NumericGetDatum(v.val.numeric))));
		else
		{
			/* an array or object: its text, as ->> would give it */
			JsonbValue	wrapped = v;
			Jsonb	   *sub = JsonbValueToJsonb(&wrapped);

			len = strlen(JsonbToCString(NULL, &sub->root, VARSIZE(sub)));
		}
		if (len > WALLET_MAX_DIMENSION_VALUE_LENGTH)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the value of a dimension is longer than %d bytes", WALLET_MAX_DIMENSION_VALUE_LENGTH),
					 errdetail("A dimension value labels an event (a model, a user); a spend cap keys its member by it.")));
	}
}

char *
SpiGetText(HeapTuple tup, TupleDesc desc, int col, bool *isnull)
{
	Datum		d = SPI_getbinval(tup, desc, col, isnull);

	return *isnull ? NULL : TextDatumGetCString(d);
}

int64
SpiGetInt64(HeapTuple tup, TupleDesc desc, int col, bool *isnull)
{
	Datum		d = SPI_getbinval(tup, desc, col, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

/* a wallet_result row */
Datum
WalletResultDatum(FunctionCallInfo fcinfo, const WalletResult *r)
{
	Oid			typid = get_fn_expr_rettype(fcinfo->flinfo);
	TupleDesc	desc;
	Datum		values[8];
	bool		nulls[8] = {false};
	HeapTuple	tuple;

	/* the row type's descriptor from the type cache (no copy), when known */
	if (OidIsValid(typid) && typid != RECORDOID)
		desc = lookup_rowtype_tupdesc(typid, -1);
	else
	{
		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "wallet: return type must be a row type");
		desc = BlessTupleDesc(desc);
		PinTupleDesc(desc);
	}

	values[0] = BoolGetDatum(r->approved);
	values[1] = BoolGetDatum(r->replayed);
	nulls[2] = r->reason == NULL;
	values[2] = r->reason ? CStringGetTextDatum(r->reason) : (Datum) 0;
	nulls[3] = r->event_id == 0;
	values[3] = Int64GetDatum(r->event_id);
	nulls[4] = r->hold_id == 0;
	values[4] = Int64GetDatum(r->hold_id);
	nulls[5] = r->asset == NULL;
	values[5] = r->asset ? CStringGetTextDatum(r->asset) : (Datum) 0;
	nulls[6] = !r->has_amount;
	values[6] = r->has_amount ? NumericGetDatum(MinorToNumeric(r->amount, r->scale)) : (Datum) 0;
	nulls[7] = !r->has_balance;
	values[7] = r->has_balance ? NumericGetDatum(MinorToNumeric(r->balance, r->scale)) : (Datum) 0;

	tuple = heap_form_tuple(desc, values, nulls);
	ReleaseTupleDesc(desc);
	return HeapTupleGetDatum(tuple);
}
