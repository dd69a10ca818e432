/*
 * price.c
 *	  Price rules: validate, compile, cache, evaluate.
 *
 * A rule (jsonb) is validated and compiled into a Rule when it is set
 * (wallet._check_rule), and compiled again once per backend when a meter is
 * first priced (DESIGN.md #5).  Compiled versions are cached per meter; a
 * statement trigger on wallet.price sends a relcache invalidation, and every
 * backend drops its cache at the next call after the change commits.
 *
 * Evaluation is exact: quantities and prices are Dec (int128), and the amount
 * is rounded once, to the asset's scale, by the rule's rounding.
 */
#include "wallet.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(wallet_check_rule);
PG_FUNCTION_INFO_V1(wallet_prices_changed);

#define MAX_RULE_DEPTH	8
#define MAX_METER_LENGTH 127

typedef enum Model
{
	MODEL_PER_UNIT,
	MODEL_FLAT,
	MODEL_PACKAGE,
	MODEL_GRADUATED,
	MODEL_VOLUME,
	MODEL_MATRIX
} Model;

typedef struct Tier
{
	bool		bounded;
	Dec			up_to;
	Dec			unit_price;
} Tier;

typedef struct MatchKey
{
	char	   *key;
	char	   *value;			/* scalar as text; strings unquoted */
	enum jbvType type;
} MatchKey;

typedef struct Rate
{
	int			nkeys;
	MatchKey   *keys;
	Rule	   *rule;
} Rate;

struct Rule
{
	Model		model;
	Rounding	rounding;
	bool		has_min;
	int64		min_charge;
	bool		has_max;
	int64		max_charge;
	Dec			unit_price;		/* per_unit */
	int64		per;			/* per_unit, graduated, volume */
	Dec			price;			/* flat, package */
	Dec			size;			/* package */
	const char *period;			/* graduated, volume: day, week, month */
	int			ntiers;
	Tier	   *tiers;
	int			ndims;
	char	  **dims;
	int			nrates;
	Rate	   *rates;
	Rule	   *deflt;
	char	   *counter;		/* graduated, volume: counter name suffix */
};

/* ---------------------------------------------------------- validation */

typedef struct Compiler
{
	int			scale;			/* the asset's */
} Compiler;

static pg_attribute_noreturn() void
BadRule(const char *path, const char *field, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid price rule: %s%s %s", path, field, problem)));
}

static JsonbValue *
Field(JsonbContainer *c, const char *key)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), NULL);
}

/* a decimal field: a json number or a decimal string */
static bool
DecField(JsonbContainer *c, const char *path, const char *key, bool required, bool positive, Dec *out)
{
	JsonbValue *v = Field(c, key);
	char	   *s;

	if (v == NULL || v->type == jbvNull)
	{
		if (required)
			BadRule(path, key, "is missing");
		return false;
	}
	if (v->type == jbvNumeric)
	{
		if (numeric_is_nan(v->val.numeric) || numeric_is_inf(v->val.numeric))
			BadRule(path, key, "must be a finite number");
		s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	}
	else if (v->type == jbvString)
		s = pnstrdup(v->val.string.val, v->val.string.len);
	else
		BadRule(path, key, "must be a number or a decimal string");
	if (!DecFromString(s, out))
		BadRule(path, key, "is not a decimal number");
	if (out->v < 0)
		BadRule(path, key, "must not be negative");
	if (positive && out->v == 0)
		BadRule(path, key, "must be positive");
	return true;
}

/* a positive whole number field (per) */
static int64
IntField(JsonbContainer *c, const char *path, const char *key, int64 dflt)
{
	Dec			d;

	if (!DecField(c, path, key, false, true, &d))
		return dflt;
	if (d.scale != 0 || d.v > PG_INT64_MAX)
		BadRule(path, key, "must be a whole number");
	return (int64) d.v;
}

static char *
StringField(JsonbContainer *c, const char *path, const char *key)
{
	JsonbValue *v = Field(c, key);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
		BadRule(path, key, "must be a string");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* a charge bound in asset units: no more decimals than the scale */
static bool
ChargeField(JsonbContainer *c, const char *path, const char *key, int scale, int64 *out)
{
	Dec			d;

	if (!DecField(c, path, key, false, false, &d))
		return false;
	if (d.scale > scale)
		BadRule(path, key, "has more decimal places than the asset keeps");
	*out = DecToMinor(d, 1, scale, ROUND_DOWN);
	return true;
}

/* refuse fields the model does not know: a typo must not price silently */
static void
CheckKeys(JsonbContainer *c, const char *path, const char *const *allowed)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			level = 0;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT)
			level++;
		else if (tok == WJB_END_OBJECT)
			level--;
		else if (tok == WJB_KEY && level == 1)
		{
			bool		ok = false;
			char	   *key = pnstrdup(v.val.string.val, v.val.string.len);

			for (int i = 0; allowed[i]; i++)
				if (strcmp(allowed[i], key) == 0)
					ok = true;
			if (!ok)
				BadRule(path, key, "is not a field of this model");
		}
	}
}

static Rule *Compile(JsonbContainer *c, const char *path, int depth, Compiler *cc, const char *counter);

static void
CompileTiers(JsonbContainer *c, const char *path, Rule *r)
{
	JsonbValue *v = Field(c, "tiers");
	JsonbContainer *arr;
	int			n;

	if (v == NULL)
		BadRule(path, "tiers", "is missing");
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		BadRule(path, "tiers", "must be an array");
	arr = v->val.binary.data;
	n = JsonContainerSize(arr);
	if (n == 0)
		BadRule(path, "tiers", "must not be empty");
	r->ntiers = n;
	r->tiers = palloc0(sizeof(Tier) * n);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *t = getIthJsonbValueFromContainer(arr, i);
		char	   *tpath = psprintf("%stiers[%d].", path, i);
		static const char *const keys[] = {"up_to", "unit_price", NULL};

		if (t == NULL || t->type != jbvBinary || !JsonContainerIsObject(t->val.binary.data))
			BadRule(path, psprintf("tiers[%d]", i), "must be an object");
		CheckKeys(t->val.binary.data, tpath, keys);
		DecField(t->val.binary.data, tpath, "unit_price", true, false, &r->tiers[i].unit_price);
		r->tiers[i].bounded = DecField(t->val.binary.data, tpath, "up_to", false, true, &r->tiers[i].up_to);
		if (i == n - 1 && r->tiers[i].bounded)
			BadRule(tpath, "up_to", "must be absent on the last tier (it has no upper bound)");
		if (i < n - 1 && !r->tiers[i].bounded)
			BadRule(tpath, "up_to", "is missing (only the last tier is unbounded)");
		if (i > 0 && i < n - 1 && DecCmp(r->tiers[i].up_to, r->tiers[i - 1].up_to) <= 0)
			BadRule(path, "tiers", "are out of order: up_to must increase");
	}
}

static void
CompileMatrix(JsonbContainer *c, const char *path, int depth, Compiler *cc, Rule *r, const char *counter)
{
	JsonbValue *dims = Field(c, "dimensions");
	JsonbValue *rates = Field(c, "rates");
	JsonbValue *dflt = Field(c, "default");

	if (dims == NULL || dims->type != jbvBinary || !JsonContainerIsArray(dims->val.binary.data) ||
		JsonContainerSize(dims->val.binary.data) == 0)
		BadRule(path, "dimensions", "must be a non-empty array of names");
	r->ndims = JsonContainerSize(dims->val.binary.data);
	r->dims = palloc(sizeof(char *) * r->ndims);
	for (int i = 0; i < r->ndims; i++)
	{
		JsonbValue *d = getIthJsonbValueFromContainer(dims->val.binary.data, i);

		if (d == NULL || d->type != jbvString)
			BadRule(path, "dimensions", "must be a non-empty array of names");
		r->dims[i] = pnstrdup(d->val.string.val, d->val.string.len);
	}
	if (rates == NULL || rates->type != jbvBinary || !JsonContainerIsArray(rates->val.binary.data))
		BadRule(path, "rates", "must be an array");
	r->nrates = JsonContainerSize(rates->val.binary.data);
	r->rates = palloc0(sizeof(Rate) * Max(r->nrates, 1));
	for (int i = 0; i < r->nrates; i++)
	{
		JsonbValue *rate = getIthJsonbValueFromContainer(rates->val.binary.data, i);
		char	   *rpath = psprintf("%srates[%d].", path, i);
		static const char *const keys[] = {"match", "rule", NULL};
		JsonbValue *match;
		JsonbValue *sub;
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		int			k = 0;

		if (rate == NULL || rate->type != jbvBinary || !JsonContainerIsObject(rate->val.binary.data))
			BadRule(path, psprintf("rates[%d]", i), "must be an object");
		CheckKeys(rate->val.binary.data, rpath, keys);
		match = Field(rate->val.binary.data, "match");
		if (match == NULL || match->type != jbvBinary || !JsonContainerIsObject(match->val.binary.data))
			BadRule(rpath, "match", "must be an object");
		r->rates[i].nkeys = JsonContainerSize(match->val.binary.data);
		r->rates[i].keys = palloc0(sizeof(MatchKey) * Max(r->rates[i].nkeys, 1));
		it = JsonbIteratorInit(match->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			MatchKey   *mk;
			bool		known = false;

			if (tok != WJB_KEY)
				continue;
			mk = &r->rates[i].keys[k++];
			mk->key = pnstrdup(v.val.string.val, v.val.string.len);
			for (int d = 0; d < r->ndims; d++)
				if (strcmp(r->dims[d], mk->key) == 0)
					known = true;
			if (!known)
				BadRule(rpath, psprintf("match.%s", mk->key), "is not one of the rule's dimensions");
			tok = JsonbIteratorNext(&it, &v, true);
			mk->type = v.type;
			if (v.type == jbvString)
				mk->value = pnstrdup(v.val.string.val, v.val.string.len);
			else if (v.type == jbvNumeric)
				mk->value = numeric_normalize(v.val.numeric);
			else if (v.type == jbvBool)
				mk->value = v.val.boolean ? "true" : "false";
			else
				BadRule(rpath, psprintf("match.%s", mk->key), "must be a string, number or boolean");
		}
		sub = Field(rate->val.binary.data, "rule");
		if (sub == NULL)
			BadRule(rpath, "rule", "is missing");
		if (sub->type != jbvBinary || !JsonContainerIsObject(sub->val.binary.data))
			BadRule(rpath, "rule", "must be an object");
		r->rates[i].rule = Compile(sub->val.binary.data, psprintf("%srule.", rpath), depth + 1, cc,
								   psprintf("%s[%d]", counter, i));
	}
	if (dflt != NULL && dflt->type != jbvNull)
	{
		if (dflt->type != jbvBinary || !JsonContainerIsObject(dflt->val.binary.data))
			BadRule(path, "default", "must be an object");
		r->deflt = Compile(dflt->val.binary.data, psprintf("%sdefault.", path), depth + 1, cc,
						   psprintf("%s[default]", counter));
	}
}

static Rule *
Compile(JsonbContainer *c, const char *path, int depth, Compiler *cc, const char *counter)
{
	Rule	   *r = palloc0(sizeof(Rule));
	char	   *model;
	char	   *rounding;

	check_stack_depth();
	if (depth > MAX_RULE_DEPTH)
		BadRule(path, "", psprintf("nesting too deep (at most %d levels)", MAX_RULE_DEPTH));
	model = StringField(c, path, "model");
	if (model == NULL)
		BadRule(path, "model", "is missing");
	rounding = StringField(c, path, "rounding");
	if (rounding == NULL || strcmp(rounding, "half_up") == 0)
		r->rounding = ROUND_HALF_UP;
	else if (strcmp(rounding, "up") == 0)
		r->rounding = ROUND_UP;
	else if (strcmp(rounding, "down") == 0)
		r->rounding = ROUND_DOWN;
	else if (strcmp(rounding, "half_even") == 0)
		r->rounding = ROUND_HALF_EVEN;
	else
		BadRule(path, "rounding", psprintf("\"%.64s\" is unknown (half_up, up, down, half_even)", rounding));
	r->has_min = ChargeField(c, path, "min_charge", cc->scale, &r->min_charge);
	r->has_max = ChargeField(c, path, "max_charge", cc->scale, &r->max_charge);
	if (r->has_min && r->has_max && r->min_charge > r->max_charge)
		BadRule(path, "min_charge", "is above max_charge");
	r->counter = pstrdup(counter);

	if (strcmp(model, "per_unit") == 0)
	{
		static const char *const keys[] = {"model", "rounding", "min_charge", "max_charge", "unit_price", "per", NULL};

		CheckKeys(c, path, keys);
		r->model = MODEL_PER_UNIT;
		DecField(c, path, "unit_price", true, false, &r->unit_price);
		r->per = IntField(c, path, "per", 1);
	}
	else if (strcmp(model, "flat") == 0)
	{
		static const char *const keys[] = {"model", "rounding", "min_charge", "max_charge", "price", NULL};

		CheckKeys(c, path, keys);
		r->model = MODEL_FLAT;
		DecField(c, path, "price", true, false, &r->price);
	}
	else if (strcmp(model, "package") == 0)
	{
		static const char *const keys[] = {"model", "rounding", "min_charge", "max_charge", "size", "price", NULL};

		CheckKeys(c, path, keys);
		r->model = MODEL_PACKAGE;
		DecField(c, path, "price", true, false, &r->price);
		DecField(c, path, "size", true, true, &r->size);
	}
	else if (strcmp(model, "graduated") == 0 || strcmp(model, "volume") == 0)
	{
		static const char *const keys[] = {"model", "rounding", "min_charge", "max_charge", "period", "tiers", "per", NULL};
		char	   *period;

		CheckKeys(c, path, keys);
		r->model = model[0] == 'g' ? MODEL_GRADUATED : MODEL_VOLUME;
		period = StringField(c, path, "period");
		if (period == NULL)
			r->period = "month";
		else if (strcmp(period, "day") == 0 || strcmp(period, "week") == 0 || strcmp(period, "month") == 0)
			r->period = period;
		else
			BadRule(path, "period", psprintf("\"%.64s\" is unknown (day, week, month)", period));
		r->per = IntField(c, path, "per", 1);
		CompileTiers(c, path, r);
	}
	else if (strcmp(model, "matrix") == 0)
	{
		static const char *const keys[] = {"model", "rounding", "min_charge", "max_charge", "dimensions", "rates", "default", NULL};

		CheckKeys(c, path, keys);
		r->model = MODEL_MATRIX;
		CompileMatrix(c, path, depth, cc, r, counter);
	}
	else
		BadRule(path, "model", psprintf("\"%.64s\" is unknown (per_unit, flat, package, graduated, volume, matrix)", model));
	return r;
}

static Rule *
CompileRule(Jsonb *rule, int scale)
{
	Compiler	cc = {scale};

	if (!JB_ROOT_IS_OBJECT(rule) || JB_ROOT_IS_SCALAR(rule))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid price rule: the rule must be a json object")));
	return Compile(&rule->root, "", 0, &cc, "");
}

/*
 * The documented maximum size of a rule (docs/security.md), checked when it is
 * set: every backend compiles it on first use, so a rule of 300,000 tiers
 * would cost each of them time and memory.  Rules stored before 1.1 are not
 * checked again.
 */
#define MAX_RULE_BYTES	65536
#define MAX_RULE_ENTRIES 1000	/* tiers and rates, at all levels together */

static void
RuleLimits(Jsonb *rule)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		counted = false;
	int64		entries = 0;

	if (VARSIZE(rule) > MAX_RULE_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid price rule: larger than %d bytes", MAX_RULE_BYTES)));
	it = JsonbIteratorInit(&rule->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_ARRAY && counted)
			entries += v.val.array.nElems;
		counted = tok == WJB_KEY &&
			((v.val.string.len == 5 && memcmp(v.val.string.val, "tiers", 5) == 0) ||
			 (v.val.string.len == 5 && memcmp(v.val.string.val, "rates", 5) == 0));
	}
	if (entries > MAX_RULE_ENTRIES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid price rule: " INT64_FORMAT " tiers and rates, more than %d",
						entries, MAX_RULE_ENTRIES),
				 errhint("A rule has at most %d tiers and rates, at all levels together, and %d levels of nesting.",
						 MAX_RULE_ENTRIES, MAX_RULE_DEPTH)));
}

/* wallet._check_rule(rule, asset) */
Datum
wallet_check_rule(PG_FUNCTION_ARGS)
{
	const AssetInfo *asset;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rule must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("asset must not be null")));
	asset = AssetLookup(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	RuleLimits(PG_GETARG_JSONB_P(0));
	CompileRule(PG_GETARG_JSONB_P(0), asset->scale);
	PG_RETURN_VOID();
}

/* --------------------------------------------------------------- cache */

typedef struct Version
{
	PriceVersion pv;
	TimestampTz effective_at;
	char	   *plan;
	char	   *customer;
} Version;

typedef struct MeterEntry
{
	char		meter[MAX_METER_LENGTH + 1];
	int			n;
	Version    *versions;		/* by effective_at, id */
	bool		has_plans;
} MeterEntry;

static MemoryContext cache_cxt;
static HTAB *meters;

/*
 * Counts the times the cache was emptied: a PriceVersion from PriceFind is
 * valid while this has not moved (wallet_ingest keeps them across a batch).
 */
uint64		PriceCacheGeneration = 0;
static bool cache_stale = true;
static Oid	price_relid = InvalidOid;

static void
PriceInval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == price_relid)
		cache_stale = true;
}

/*
 * The asset cache forgets everything when a transaction aborts (asset.c), and
 * compiled versions point into it (PriceVersion.asset): forget them too.
 */
static void
PriceForgetOnAbort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT)
		cache_stale = true;
}

static void
CacheReset(void)
{
	HASHCTL		ctl;
	static bool registered = false;

	if (!registered)
	{
		CacheRegisterRelcacheCallback(PriceInval, (Datum) 0);
		RegisterXactCallback(PriceForgetOnAbort, NULL);
		registered = true;
	}
	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(CacheMemoryContext, "wallet price cache",
										  ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(cache_cxt);
	PriceCacheGeneration++;
	ctl.keysize = MAX_METER_LENGTH + 1;
	ctl.entrysize = sizeof(MeterEntry);
	ctl.hcxt = cache_cxt;
	meters = hash_create("wallet prices", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	price_relid = get_relname_relid("price", get_namespace_oid("wallet", false));
	cache_stale = false;
}

/* the versions of a meter, compiled; loaded on first use */
static MeterEntry *
MeterLoad(const char *meter)
{
	static const Oid argtypes[1] = {TEXTOID};
	char		key[MAX_METER_LENGTH + 1];
	MeterEntry *e;
	bool		found;
	Datum		values[1];
	SPITupleTable *tt;
	MemoryContext old;

	if (cache_stale || meters == NULL)
		CacheReset();
	memset(key, 0, sizeof(key));
	strlcpy(key, meter, sizeof(key));
	e = hash_search(meters, key, HASH_FIND, NULL);
	if (e)
		return e;

	values[0] = CStringGetTextDatum(meter);
	WalletExec(PLAN_PRICES,
			   "SELECT id, asset, rule, effective_at, plan, customer FROM wallet.price "
			   " WHERE meter OPERATOR(pg_catalog.=) $1 ORDER BY effective_at, id",
			   1, argtypes, values, NULL, true, SPI_OK_SELECT);
	tt = SPI_tuptable;

	e = hash_search(meters, key, HASH_ENTER, &found);
	e->n = 0;
	e->has_plans = false;
	old = MemoryContextSwitchTo(cache_cxt);
	e->versions = palloc0(sizeof(Version) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Version    *v = &e->versions[i];
		HeapTuple	tup = tt->vals[i];
		bool		isnull;

		v->pv.id = SpiGetInt64(tup, tt->tupdesc, 1, &isnull);
		v->pv.asset = *AssetLookup(SpiGetText(tup, tt->tupdesc, 2, &isnull));
		v->pv.rule = CompileRule(DatumGetJsonbP(SPI_getbinval(tup, tt->tupdesc, 3, &isnull)),
								 v->pv.asset.scale);
		v->effective_at = DatumGetTimestampTz(SPI_getbinval(tup, tt->tupdesc, 4, &isnull));
		v->plan = SpiGetText(tup, tt->tupdesc, 5, &isnull);
		v->customer = SpiGetText(tup, tt->tupdesc, 6, &isnull);
		if (v->plan)
			e->has_plans = true;
		e->n++;
	}
	MemoryContextSwitchTo(old);
	return e;
}

/* the plan a customer is on at a time (NULL: none) */
static char *
PlanAt(const char *customer, TimestampTz at)
{
	static const Oid argtypes[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2] = {CStringGetTextDatum(customer), TimestampTzGetDatum(at)};
	bool		isnull;

	WalletExec(PLAN_PLAN_AT,
			   "SELECT pa.plan FROM wallet.plan_assignment pa JOIN wallet.wallet w "
			   "    ON w.id OPERATOR(pg_catalog.=) pa.wallet_id "
			   " WHERE w.customer OPERATOR(pg_catalog.=) $1 AND pa.effective_at OPERATOR(pg_catalog.<=) $2 "
			   " ORDER BY pa.effective_at DESC LIMIT 1",
			   2, argtypes, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	return SpiGetText(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

/*
 * The price version in force for a customer's usage of a meter at a time: the
 * customer's own price, else its plan's, else the default.  WL003 if none.
 */
const PriceVersion *
PriceFind(const char *customer, const char *meter, TimestampTz at)
{
	MeterEntry *e = NULL;
	Version    *own = NULL;
	Version    *planned = NULL;
	Version    *dflt = NULL;
	char	   *plan = NULL;

	if (strlen(meter) <= MAX_METER_LENGTH)
		e = MeterLoad(meter);
	if (e && e->has_plans)
		plan = PlanAt(customer, at);
	for (int i = (e ? e->n : 0) - 1; i >= 0 && own == NULL; i--)
	{
		Version    *v = &e->versions[i];

		if (v->effective_at > at)
			continue;
		if (v->customer)
		{
			if (strcmp(v->customer, customer) == 0)
				own = v;
		}
		else if (v->plan)
		{
			if (planned == NULL && plan && strcmp(v->plan, plan) == 0)
				planned = v;
		}
		else if (dflt == NULL)
			dflt = v;
	}
	if (own)
		return &own->pv;
	if (planned)
		return &planned->pv;
	if (dflt)
		return &dflt->pv;
	ereport(ERROR,
			(errcode(ERRCODE_WALLET_NO_PRICE),
			 errmsg("no price for meter \"%.100s\" at %s", meter, timestamptz_to_str(at)),
			 errhint("Set one with wallet_set_price().")));
}

/* trigger on wallet.price: every backend drops its compiled prices at commit */
Datum
wallet_prices_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "wallet: not called as a trigger");
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------- evaluation */

/* a quantity argument: finite and positive */
Dec
QuantityDec(Numeric quantity)
{
	Dec			q = DecFromNumeric(quantity, "quantity");

	if (q.v <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("quantity must be positive: %s",
						DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(quantity))))));
	return q;
}

/* occurred_at within max_backdate before and max_future after now */
void
CheckOccurredAt(TimestampTz occurred_at)
{
	TimestampTz now = WalletNow();
	TimestampTz earliest;
	TimestampTz latest;

	if (TIMESTAMP_NOT_FINITE(occurred_at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("occurred_at must be finite")));
	if (occurred_at == now)
		return;					/* the default; both limits are not negative */
	earliest = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval, TimestampTzGetDatum(now),
													   IntervalPGetDatum(wallet_max_backdate)));
	latest = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(now),
													 IntervalPGetDatum(wallet_max_future)));
	if (occurred_at < earliest)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("occurred_at %s is older than wallet.max_backdate allows", timestamptz_to_str(occurred_at)),
				 errdetail("Events may lie at most %s in the past.",
						   DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(wallet_max_backdate))))));
	if (occurred_at > latest)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("occurred_at %s is further ahead than wallet.max_future allows", timestamptz_to_str(occurred_at)),
				 errdetail("Events may lie at most %s in the future.",
						   DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(wallet_max_future))))));
}

/* the UTC calendar period containing t */
static TimestampTz
PeriodStart(const char *period, TimestampTz t)
{
	return DatumGetTimestamp(DirectFunctionCall2(timestamp_trunc, CStringGetTextDatum(period),
												 TimestampGetDatum(t)));
}

/* cumulative usage of a counter in a period, before this event */
static Dec
CounterGet(int64 wallet_id, const char *counter, const char *period, TimestampTz start)
{
	static const Oid argtypes[4] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[4];
	bool		isnull;

	values[0] = Int64GetDatum(wallet_id);
	values[1] = CStringGetTextDatum(counter);
	values[2] = CStringGetTextDatum(period);
	values[3] = TimestampTzGetDatum(start);
	WalletExec(PLAN_COUNTER_GET,
			   "SELECT quantity FROM wallet.usage_counter "
			   " WHERE wallet_id OPERATOR(pg_catalog.=) $1 AND meter OPERATOR(pg_catalog.=) $2 "
			   "   AND period OPERATOR(pg_catalog.=) $3 AND period_start OPERATOR(pg_catalog.=) $4",
			   4, argtypes, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return DecFromInt(0);
	return DecFromTotal(DatumGetNumeric(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													  1, &isnull)), "usage");
}

/* what a tiered price read, to be added once the debit is approved */
void
UsageRecord(const UsageToRecord *u, int64 wallet_id, Dec quantity)
{
	static const Oid argtypes[5] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID, NUMERICOID};
	Datum		values[5];

	if (!u->needed)
		return;
	values[0] = Int64GetDatum(wallet_id);
	values[1] = CStringGetTextDatum(u->counter);
	values[2] = CStringGetTextDatum(u->period);
	values[3] = TimestampTzGetDatum(u->period_start);
	values[4] = NumericGetDatum(DecToNumeric(quantity));
	WalletExec(PLAN_COUNTER_ADD,
			   "INSERT INTO wallet.usage_counter AS u (wallet_id, meter, period, period_start, quantity) "
			   "VALUES ($1, $2, $3, $4, $5) "
			   "ON CONFLICT (wallet_id, meter, period, period_start) "
			   "DO UPDATE SET quantity = u.quantity OPERATOR(pg_catalog.+) excluded.quantity",
			   5, argtypes, values, NULL, false, SPI_OK_INSERT);
	WalletExpectRows(1, "wallet.usage_counter");
}

/* the scalar of a dimension as text, for matrix matching */
static bool
DimensionMatches(Jsonb *dims, const MatchKey *mk)
{
	JsonbValue *v;
	char	   *s;

	if (dims == NULL)
		return false;
	v = getKeyJsonValueFromContainer(&dims->root, mk->key, strlen(mk->key), NULL);
	if (v == NULL || v->type != mk->type)
		return false;
	if (v->type == jbvString)
		return strlen(mk->value) == (size_t) v->val.string.len &&
			memcmp(mk->value, v->val.string.val, v->val.string.len) == 0;
	if (v->type == jbvBool)
		s = v->val.boolean ? "true" : "false";
	else
		s = numeric_normalize(v->val.numeric);
	return strcmp(s, mk->value) == 0;
}

typedef struct EvalContext
{
	int64		wallet_id;
	const char *meter;
	Jsonb	   *dims;
	TimestampTz occurred_at;
	int			scale;
	UsageToRecord *usage;
} EvalContext;

static int64
Evaluate(const Rule *r, Dec q, EvalContext *ec)
{
	int64		amount = 0;

	switch (r->model)
	{
		case MODEL_PER_UNIT:
			amount = DecToMinor(DecMul(q, r->unit_price), r->per, ec->scale, r->rounding);
			break;
		case MODEL_FLAT:
			amount = DecToMinor(r->price, 1, ec->scale, r->rounding);
			break;
		case MODEL_PACKAGE:
			amount = DecToMinor(DecMul(DecFromInt(DecCeilDiv(q, r->size)), r->price), 1,
								ec->scale, r->rounding);
			break;
		case MODEL_GRADUATED:
		case MODEL_VOLUME:
			{
				char	   *counter = psprintf("%s%s", ec->meter, r->counter);
				TimestampTz start = PeriodStart(r->period, ec->occurred_at);
				Dec			before = DecTotalFor(CounterGet(ec->wallet_id, counter, r->period, start), q);
				Dec			after = DecAdd(before, q);
				Dec			x = DecFromInt(0);
				Dec			lower = DecFromInt(0);

				for (int i = 0; i < r->ntiers; i++)
				{
					const Tier *t = &r->tiers[i];

					if (r->model == MODEL_VOLUME)
					{
						if (!t->bounded || DecCmp(after, t->up_to) <= 0)
						{
							x = DecMul(q, t->unit_price);
							break;
						}
					}
					else
					{
						/* the units of (before, after] that fall in (lower, up_to] */
						Dec			from = DecMax(before, lower);
						Dec			to = t->bounded ? DecMin(after, t->up_to) : after;

						if (DecCmp(to, from) > 0)
							x = DecAdd(x, DecMul(DecSub(to, from), t->unit_price));
						if (t->bounded)
							lower = t->up_to;
					}
				}
				amount = DecToMinor(x, r->per, ec->scale, r->rounding);
				ec->usage->needed = true;
				strlcpy(ec->usage->counter, counter, sizeof(ec->usage->counter));
				ec->usage->period = r->period;
				ec->usage->period_start = start;
				break;
			}
		case MODEL_MATRIX:
			{
				const Rule *chosen = r->deflt;

				for (int i = 0; i < r->nrates; i++)
				{
					bool		all = true;

					for (int k = 0; k < r->rates[i].nkeys && all; k++)
						all = DimensionMatches(ec->dims, &r->rates[i].keys[k]);
					if (all)
					{
						chosen = r->rates[i].rule;
						break;
					}
				}
				if (chosen == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_WALLET_NO_PRICE),
							 errmsg("no rate of meter \"%.100s\" matches the event's dimensions", ec->meter),
							 errdetail("The rule prices by %s and has no default.",
									   r->ndims > 0 ? r->dims[0] : "dimensions")));
				amount = Evaluate(chosen, q, ec);
				break;
			}
	}
	if (r->has_min && amount < r->min_charge)
		amount = r->min_charge;
	if (r->has_max && amount > r->max_charge)
		amount = r->max_charge;
	return amount;
}

/*
 * The amount a version charges for quantity, in minor units of its asset.
 * Tiered rules read their counter (the caller holds the balance lock) and say
 * in usage what to add once the debit is approved.
 */
int64
PriceEvaluate(const PriceVersion *pv, int64 wallet_id, const char *meter,
			  Dec quantity, Jsonb *dims, TimestampTz occurred_at, UsageToRecord *usage)
{
	EvalContext ec;

	memset(usage, 0, sizeof(*usage));
	ec.wallet_id = wallet_id;
	ec.meter = meter;
	ec.dims = dims;
	ec.occurred_at = occurred_at;
	ec.scale = pv->asset.scale;
	ec.usage = usage;
	return Evaluate(pv->rule, quantity, &ec);
}
