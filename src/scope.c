/*
 * scope.c
 *	  Scoped grants: which debits a grant serves.
 *
 * A grant's scope (wallet.grant_block.scope, 1.1) is null, serving every
 * debit as in 1.0, or {"meters": [...], "dimensions": {...}}: a meter entry
 * is exact or a prefix ending in ".*", and every dimension pair must be held
 * by the debit's dimensions, compared as text.  wallet_debit and wallet_hold
 * have no meter: a grant with "meters" never serves them.
 *
 * A scope is checked and normalized once, on the way in (wallet._scope_check,
 * called by wallet_grant): dimension values are stored as strings.  The
 * drawdown (grant.c, debit.c) reads each live grant's scope with the grant;
 * ScopeSelect then marks the grants that do not serve the debit at hand and
 * takes their value off set->total, so that the availability check and the
 * draw see only the grants that apply.  A balance without scoped grants
 * (set->nscoped == 0) pays one comparison.
 */
#include "wallet.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(wallet_scope_check);
PG_FUNCTION_INFO_V1(wallet_available);
PG_FUNCTION_INFO_V1(wallet_credits);

/* a parsed scope; json is the stored (normalized) form */
struct Scope
{
	Jsonb	   *json;
	int			nmeters;
	char	  **meters;			/* a prefix entry keeps its ".": "llm." */
	bool	   *prefix;
	int			ndims;
	char	  **dim_keys;
	char	  **dim_values;
};

static pg_attribute_noreturn() void
BadScope(const char *field, const char *problem, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("scope %s %s", field, problem),
			 hint ? errhint("%s", hint) : 0));
}

/* a dimension value as text: strings unquoted, numbers normalized (1.0 is 1), booleans */
static char *
ScalarText(const JsonbValue *v)
{
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return numeric_normalize(v->val.numeric);
	if (v->type == jbvBool)
		return pstrdup(v->val.boolean ? "true" : "false");
	return NULL;
}

/* a meter entry of a scope: exact, or a prefix ending in ".*" */
static void
MeterEntryCheck(const char *m, int i)
{
	const char *star = strchr(m, '*');
	size_t		len = strlen(m);

	if (len == 0)
		BadScope(psprintf("meters[%d]", i), "is empty", NULL);
	/* no meter is longer than WALLET_MAX_METER_LENGTH: such an entry would serve nothing */
	if ((star != NULL ? len - 1 : len) > WALLET_MAX_METER_LENGTH)
		BadScope(psprintf("meters[%d]", i), psprintf("is longer than %d bytes", WALLET_MAX_METER_LENGTH),
				 "No meter is longer: the entry would serve nothing.");
	if (star != NULL &&
		(star != m + len - 1 || len < 3 || m[len - 2] != '.'))
		BadScope(psprintf("meters[%d]", i), psprintf("\"%s\" is not a meter or a prefix ending in \".*\"", m),
				 "Give an exact meter (\"image.generate\") or a prefix ending in \".*\" (\"llm.*\").");
}

/*
 * Check a scope as given to wallet_grant and return its stored form: null for
 * null or {} (serves everything), else an object with "meters" (a non-empty
 * array of strings) and/or "dimensions" (an object of text values).
 */
static Jsonb *
ScopeNormalize(Jsonb *j)
{
	JsonbParseState *st = NULL;
	JsonbValue *meters;
	JsonbValue *dims;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	JsonbValue	k;
	int			nkeys = 0;

	if (j == NULL)
		return NULL;
	if (!JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scope must be a json object"),
				 errhint("For example {\"meters\": [\"image.generate\"], \"dimensions\": {\"team\": \"research\"}}.")));
	/* only the two fields */
	it = JsonbIteratorInit(&j->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_KEY)
		{
			char	   *key = pnstrdup(v.val.string.val, v.val.string.len);

			if (strcmp(key, "meters") != 0 && strcmp(key, "dimensions") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("scope has no field \"%s\"", key),
						 errhint("The fields are meters and dimensions.")));
			nkeys++;
		}
	if (nkeys == 0)
		return NULL;

	meters = getKeyJsonValueFromContainer(&j->root, "meters", 6, NULL);
	dims = getKeyJsonValueFromContainer(&j->root, "dimensions", 10, NULL);

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (meters != NULL)
	{
		int			n = 0;

		if (meters->type != jbvBinary || !JsonContainerIsArray(meters->val.binary.data))
			BadScope("meters", "must be a json array of meters", NULL);
		k.type = jbvString;
		k.val.string.val = "meters";
		k.val.string.len = 6;
		pushJsonbValue(&st, WJB_KEY, &k);
		pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
		it = JsonbIteratorInit(meters->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (v.type != jbvString)
				BadScope(psprintf("meters[%d]", n), "must be a string", NULL);
			MeterEntryCheck(pnstrdup(v.val.string.val, v.val.string.len), n);
			pushJsonbValue(&st, WJB_ELEM, &v);
			n++;
		}
		if (n == 0)
			BadScope("meters", "is empty: such a grant would serve nothing",
					 "Leave meters out to serve every meter.");
		pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	}
	if (dims != NULL)
	{
		int			n = 0;

		if (dims->type != jbvBinary || !JsonContainerIsObject(dims->val.binary.data))
			BadScope("dimensions", "must be a json object", NULL);
		if (JsonContainerSize(dims->val.binary.data) > 0)
		{
			k.type = jbvString;
			k.val.string.val = "dimensions";
			k.val.string.len = 10;
			pushJsonbValue(&st, WJB_KEY, &k);
			pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
			it = JsonbIteratorInit(dims->val.binary.data);
			while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			{
				if (tok == WJB_KEY)
				{
					if (v.val.string.len > WALLET_MAX_DIMENSION_KEY_LENGTH)
						BadScope("dimensions", psprintf("key is longer than %d bytes", WALLET_MAX_DIMENSION_KEY_LENGTH),
								 "No event's dimension key is longer: the scope would serve nothing.");
					k = v;
					continue;
				}
				if (tok == WJB_VALUE)
				{
					char	   *text = ScalarText(&v);
					JsonbValue	sv;

					if (text == NULL)
						BadScope(psprintf("dimensions.%.*s", k.val.string.len, k.val.string.val),
								 "must be a string, a number or a boolean", NULL);
					if (strlen(text) > WALLET_MAX_DIMENSION_VALUE_LENGTH)
						BadScope(psprintf("dimensions.%.*s", k.val.string.len, k.val.string.val),
								 psprintf("is longer than %d bytes", WALLET_MAX_DIMENSION_VALUE_LENGTH),
								 "No event's dimension value is longer: the scope would serve nothing.");
					pushJsonbValue(&st, WJB_KEY, &k);
					sv.type = jbvString;
					sv.val.string.val = text;
					sv.val.string.len = strlen(text);
					pushJsonbValue(&st, WJB_VALUE, &sv);
					n++;
				}
			}
			pushJsonbValue(&st, WJB_END_OBJECT, NULL);
		}
		if (n == 0 && meters == NULL)
			return NULL;		/* {"dimensions": {}}: as {} */
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/* wallet._scope_check(scope jsonb): the stored form of a scope, or 22023 */
Datum
wallet_scope_check(PG_FUNCTION_ARGS)
{
	Jsonb	   *out = ScopeNormalize(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0));

	if (out == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(out);
}

/*
 * A stored scope, parsed into the current memory context (the caller
 * detoasts it there).  The stored form was normalized on the way in.
 */
Scope *
ScopeParse(Jsonb *j)
{
	Scope	   *s = palloc0(sizeof(Scope));
	JsonbValue *meters = getKeyJsonValueFromContainer(&j->root, "meters", 6, NULL);
	JsonbValue *dims = getKeyJsonValueFromContainer(&j->root, "dimensions", 10, NULL);
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;

	s->json = j;
	if (meters != NULL && meters->type == jbvBinary)
	{
		int			n = JsonContainerSize(meters->val.binary.data);

		s->meters = palloc(sizeof(char *) * Max(n, 1));
		s->prefix = palloc(sizeof(bool) * Max(n, 1));
		it = JsonbIteratorInit(meters->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			if (tok == WJB_ELEM && v.type == jbvString && s->nmeters < n)
			{
				char	   *m = pnstrdup(v.val.string.val, v.val.string.len);
				size_t		len = strlen(m);

				s->prefix[s->nmeters] = len >= 2 && m[len - 1] == '*';
				if (s->prefix[s->nmeters])
					m[len - 1] = '\0';
				s->meters[s->nmeters++] = m;
			}
	}
	if (dims != NULL && dims->type == jbvBinary)
	{
		int			n = JsonContainerSize(dims->val.binary.data);

		s->dim_keys = palloc(sizeof(char *) * Max(n, 1));
		s->dim_values = palloc(sizeof(char *) * Max(n, 1));
		it = JsonbIteratorInit(dims->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY && s->ndims < n)
				s->dim_keys[s->ndims] = pnstrdup(v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE && s->ndims < n)
				s->dim_values[s->ndims++] = ScalarText(&v);
		}
	}
	return s;
}

/* the stored form of a scope (NULL for none) */
Jsonb *
ScopeJson(const Scope *s)
{
	return s ? s->json : NULL;
}

/* whether a grant of scope s serves a debit of meter (NULL: none) with dims (NULL: none) */
bool
ScopeApplies(const Scope *s, const char *meter, Jsonb *dims)
{
	if (s == NULL)
		return true;
	if (s->nmeters > 0)
	{
		bool		match = false;

		if (meter == NULL)
			return false;
		for (int i = 0; i < s->nmeters && !match; i++)
			match = s->prefix[i] ? strncmp(meter, s->meters[i], strlen(s->meters[i])) == 0
				: strcmp(meter, s->meters[i]) == 0;
		if (!match)
			return false;
	}
	for (int i = 0; i < s->ndims; i++)
	{
		JsonbValue *v;
		char	   *text;

		if (dims == NULL)
			return false;
		v = getKeyJsonValueFromContainer(&dims->root, s->dim_keys[i], strlen(s->dim_keys[i]), NULL);
		if (v == NULL || (text = ScalarText(v)) == NULL || strcmp(text, s->dim_values[i]) != 0)
			return false;
	}
	return true;
}

/*
 * Mark the grants of set that do not serve a debit of meter (NULL for
 * wallet_debit and wallet_hold) with dims, and keep set->total to what the
 * others hold (set->excluded holds the rest).  Called again on the same set
 * (wallet_ingest keeps it across a batch), it starts from all of them.
 */
void
ScopeSelect(GrantSet *set, const char *meter, Jsonb *dims)
{
	if (set->nscoped == 0)
		return;
	set->total = AddMinor(set->total, set->excluded);
	set->excluded = 0;
	for (int i = 0; i < set->n; i++)
	{
		GrantRow   *g = &set->rows[i];

		g->excluded = !ScopeApplies(g->scope, meter, dims);
		if (g->excluded)
			set->excluded = AddMinor(set->excluded, g->remaining);
	}
	set->total = SubMinor(set->total, set->excluded);
}

/* ------------------------------------------------------------ reads */

/* the balance rows of a wallet: asset, overdraft, held, holds_open */
static SPITupleTable *
ScopeAccounts(int64 wallet_id, uint64 *n)
{
	static const Oid argtypes[1] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(wallet_id);
	WalletExec(PLAN_SCOPE_ACCOUNTS,
			   "SELECT asset, overdraft, held, holds_open FROM wallet.account "
			   " WHERE wallet_id OPERATOR(pg_catalog.=) $1 ORDER BY asset",
			   1, argtypes, values, NULL, true, SPI_OK_SELECT);
	*n = SPI_processed;
	return SPI_tuptable;
}

/* an Account for reading, from a row of ScopeAccounts */
static const AssetInfo *
ScopeAccount(int64 wallet_id, HeapTuple tup, TupleDesc desc, Account *acct)
{
	bool		isnull;
	const AssetInfo *asset = AssetLookup(SpiGetText(tup, desc, 1, &isnull));

	memset(acct, 0, sizeof(*acct));
	acct->wallet_id = wallet_id;
	strlcpy(acct->asset, asset->code, sizeof(acct->asset));
	acct->scale = asset->scale;
	acct->overdraft = SpiGetInt64(tup, desc, 2, &isnull);
	acct->held = SpiGetInt64(tup, desc, 3, &isnull);
	acct->holds_open = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
	return asset;
}

/*
 * wallet_available(customer, meter, dimensions) RETURNS TABLE (asset,
 * available): per asset of the wallet, the value a debit of that meter (null:
 * as wallet_debit) with those dimensions sees now: the grants that serve it,
 * less holds and overdraft in use.  Value only: spend caps (wallet_caps) and
 * overdraft room are limits of their own, which wallet_quote's would_approve
 * applies to one amount.
 */
Datum
wallet_available(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *customer = ArgCString(fcinfo, 0, "customer");
	/* a meter no price can have (empty, too long): 22023, as wallet_quote says */
	char	   *meter = PG_ARGISNULL(1) ? NULL : ArgCString(fcinfo, 1, "meter");
	Jsonb	   *dims = ArgDimensions(fcinfo, 2);
	TimestampTz now = WalletNow();
	SPITupleTable *tt;
	uint64		n;
	int64		wallet_id;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	wallet_id = WalletIdOf(customer, false, NULL);
	tt = ScopeAccounts(wallet_id, &n);
	for (uint64 i = 0; i < n; i++)
	{
		Account		acct;
		GrantSet	set;
		const AssetInfo *asset = ScopeAccount(wallet_id, tt->vals[i], tt->tupdesc, &acct);
		Datum		values[2];
		bool		nulls[2] = {false};

		GrantsLoad(&acct, now, false, &set);
		ScopeSelect(&set, meter, dims);
		values[0] = CStringGetTextDatum(asset->code);
		values[1] = NumericGetDatum(MinorToNumeric(Available(&acct, &set, now, 0), asset->scale));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * wallet_credits(customer) RETURNS TABLE (grant_id, asset, category, amount,
 * remaining, reserved, expires_at, next_reset, scope): the live grants with
 * value left, per asset in drawdown order.
 */
Datum
wallet_credits(PG_FUNCTION_ARGS)
{
	static const char *const categories[3] = {"promotional", "bundled", "paid"};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *customer = ArgCString(fcinfo, 0, "customer");
	TimestampTz now = WalletNow();
	SPITupleTable *tt;
	uint64		n;
	int64		wallet_id;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	wallet_id = WalletIdOf(customer, false, NULL);
	tt = ScopeAccounts(wallet_id, &n);
	for (uint64 i = 0; i < n; i++)
	{
		Account		acct;
		GrantSet	set;
		const AssetInfo *asset = ScopeAccount(wallet_id, tt->vals[i], tt->tupdesc, &acct);

		GrantsLoad(&acct, now, false, &set);
		for (int r = 0; r < set.n; r++)
		{
			const GrantRow *g = &set.rows[r];
			Datum		values[9];
			bool		nulls[9] = {false};
			TimestampTz next;

			values[0] = Int64GetDatum(g->id);
			values[1] = CStringGetTextDatum(asset->code);
			values[2] = CStringGetTextDatum(categories[g->category_rank]);
			values[3] = NumericGetDatum(MinorToNumeric(g->amount, asset->scale));
			/* GrantsLoad took what open holds reserve off remaining: both are shown */
			values[4] = NumericGetDatum(MinorToNumeric(AddMinor(g->remaining, g->reserved), asset->scale));
			values[5] = NumericGetDatum(MinorToNumeric(g->reserved, asset->scale));
			values[6] = TimestampTzGetDatum(g->expires_at);
			nulls[6] = !g->has_expiry;
			next = GrantNextReset(g);
			values[7] = TimestampTzGetDatum(next);
			nulls[7] = next == DT_NOEND;
			values[8] = g->scope ? JsonbPGetDatum(ScopeJson(g->scope)) : (Datum) 0;
			nulls[8] = g->scope == NULL;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	SPI_finish();
	return (Datum) 0;
}
