/*
 * price.c
 *	  Price rules: validate, compile, cache, evaluate.
 *
 * A rule (jsonb) is validated and compiled into a Rule when it is set
 * (wallet._check_rule), and compiled again once per backend when a meter is
 * first priced (DESIGN.md #5).  Compiled versions are cached per meter under
 * the rule of coherence.c: a statement trigger on wallet.price sends a
 * relcache invalidation, and every backend drops its cache at the next call
 * after the change commits.
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
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(wallet_check_rule);
PG_FUNCTION_INFO_V1(wallet_prices_changed);
PG_FUNCTION_INFO_V1(wallet_counter_suffix_11);
PG_FUNCTION_INFO_V1(wallet_price_in_force);

#define MAX_RULE_DEPTH	8
#define MAX_METER_LENGTH 127
#define MAX_MATCH_KEY	1024	/* bytes of the matches in a counter key */

typedef enum Model
{
	MODEL_PER_UNIT,
	MODEL_FLAT,
	MODEL_PACKAGE,
	MODEL_GRADUATED,
	MODEL_VOLUME,
	MODEL_MATRIX,
	MODEL_PERCENTAGE,
	MODEL_COST_PLUS
} Model;

typedef struct Tier
{
	bool		bounded;
	Dec			up_to;
	Dec			unit_price;
	bool		has_flat;
	Dec			flat_price;		/* once per period, by the event that reaches the tier */
} Tier;

typedef struct MatchKey
{
	char	   *key;
	char	   *value;			/* the value as text (DimensionText) */
} MatchKey;

typedef struct Rate
{
	int			nkeys;
	MatchKey   *keys;
	Rule	   *rule;
} Rate;

typedef enum Transform
{
	TRANSFORM_NONE,
	TRANSFORM_DIVIDE,
	TRANSFORM_MULTIPLY
} Transform;

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
	bool		has_free;		/* package */
	Dec			free_units;		/* package: free in each period */
	Rounding	round;			/* package: ROUND_UP (started) or ROUND_DOWN (complete) */
	const char *period;			/* graduated, volume, free_units, max_per_period */
	int			ntiers;
	Tier	   *tiers;
	int			ndims;
	char	  **dims;
	int			nrates;
	Rate	   *rates;
	Rule	   *deflt;
	Dec			rate;			/* percentage */
	Dec			markup;			/* cost_plus */
	Dec			fixed_fee;		/* percentage, cost_plus */
	Transform	transform;		/* quantity_transform */
	Dec			transform_by;
	int			transform_round;	/* -1: none, else a Rounding */
	bool		has_max_period;
	int64		max_per_period; /* minor units */
	char	   *counter;		/* usage counter suffix: the rates' match, in order */
	char	   *legacy;			/* the same by position ([0], [default]): 1.0 schema */
	char	   *maxkey;			/* max_per_period counter suffix */
};

/* ---------------------------------------------------------- validation */

typedef struct Compiler
{
	int			scale;			/* the asset's */
	bool		strict;			/* setting a price: the checks added in 1.1 too */
} Compiler;

static pg_attribute_noreturn() void
BadRuleHint(const char *path, const char *field, const char *problem, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid price rule: %s%s %s", path, field, problem),
			 hint ? errhint("%s", hint) : 0));
}

static pg_attribute_noreturn() void
BadRule(const char *path, const char *field, const char *problem)
{
	BadRuleHint(path, field, problem, NULL);
}

static JsonbValue *
Field(JsonbContainer *c, const char *key)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), NULL);
}

/* past a sign, digits and a point with digits on either side; *digits: any digit */
static const char *
SkipMantissa(const char *s, bool *digits)
{
	*digits = false;
	if (*s == '-' || *s == '+')
		s++;
	for (; *s >= '0' && *s <= '9'; s++)
		*digits = true;
	if (*s == '.')
		for (s++; *s >= '0' && *s <= '9'; s++)
			*digits = true;
	return s;
}

/* "1e-3", "-2.5E+4": a number in scientific notation, exponent of at most 3 digits */
static bool
LooksScientific(const char *s)
{
	bool		digits;
	int			edigits = 0;

	s = SkipMantissa(s, &digits);
	if (!digits || (*s != 'e' && *s != 'E'))
		return false;
	s++;
	if (*s == '-' || *s == '+')
		s++;
	for (; *s >= '0' && *s <= '9'; s++)
		edigits++;
	return *s == '\0' && edigits > 0 && edigits <= 3;
}

/* "-12.50", "3", "4.": a sign, digits, a point (digits on one side at least) */
static bool
PlainDecimal(const char *s)
{
	bool		digits;

	s = SkipMantissa(s, &digits);
	return digits && *s == '\0';
}

/* a decimal field: a json number or a decimal string ("1e-3" as a json number is) */
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
	if (pg_strcasecmp(s, "inf") == 0 || pg_strcasecmp(s, "infinity") == 0 ||
		pg_strcasecmp(s, "+inf") == 0 || pg_strcasecmp(s, "+infinity") == 0)
		BadRuleHint(path, key, psprintf("\"%s\" is not a number", s),
					strcmp(key, "up_to") == 0 ?
					"Leave \"up_to\" out of the last tier: it has no upper bound." :
					"Use a finite decimal number.");
	if (LooksScientific(s))
	{
		s = DatumGetCString(DirectFunctionCall1(numeric_out,
												DirectFunctionCall3(numeric_in, CStringGetDatum(s),
																	ObjectIdGetDatum(InvalidOid),
																	Int32GetDatum(-1))));
	}
	/* a number, in any notation, that a Dec cannot keep: 22023 as every invalid value */
	if (PlainDecimal(s) && (!DecDigitsFit(s) || !DecFromString(s, out)))
		BadRuleHint(path, key, "is out of range",
					"A decimal in a rule has at most 36 significant digits and 30 decimal places.");
	if (!DecFromString(s, out))
		BadRule(path, key, "is not a decimal number");
	if (out->v < 0)
		BadRule(path, key, "must not be negative");
	if (positive && out->v == 0)
		BadRule(path, key, "must be positive");
	return true;
}

/*
 * An amount of a rule that every event it prices charges whole (a flat price,
 * a package's price, a tier's flat_price, a fixed_fee): refused when set if
 * it is more than an amount can be (int64 minor units of the asset), where it
 * would fail every event with 22003.
 */
static void
AmountAtMostLargest(const char *path, const char *key, Dec d, int scale)
{
	Dec			largest = {PG_INT64_MAX, scale};

	if (DecCmp(d, largest) > 0)
		BadRuleHint(path, key, "is out of range",
					psprintf("An amount is at most %s in an asset of scale %d.",
							 DatumGetCString(DirectFunctionCall1(numeric_out,
																 NumericGetDatum(DecToNumeric(largest)))),
							 scale));
}

static void
AmountFits(const char *path, const char *key, Dec d, Compiler *cc)
{
	if (cc->strict)
		AmountAtMostLargest(path, key, d, cc->scale);
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
	AmountAtMostLargest(path, key, d, scale);
	*out = DecToMinor(d, 1, scale, ROUND_DOWN);
	return true;
}

/* names peers use for our fields: a hint when one of them is refused */
static const char *const Aliases[][2] = {
	{"flat_amount", "flat_price"}, {"flat_fee", "flat_price"}, {"flat_fee", "fixed_fee"},
	{"fixed_price", "flat_price"}, {"unit_amount", "unit_price"}, {"amount", "price"},
	{"amount", "unit_price"}, {"upto", "up_to"}, {"transform_quantity", "quantity_transform"},
	{"divide_by", "quantity_transform"}, {"free_quantity", "free_units"},
	{"included_units", "free_units"}, {"package_size", "size"}, {"round", "rounding"},
	{"maximum", "max_per_period"}, {"max_amount", "max_per_period"}, {"percent", "rate"},
	{"percentage", "rate"}, {"fee", "fixed_fee"}, {"per_unit", "unit_price"}, {"rounding", "round"},
	{NULL, NULL}
};

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
			const char *hint = NULL;

			for (int i = 0; allowed[i]; i++)
				if (strcmp(allowed[i], key) == 0)
					ok = true;
			if (ok)
				continue;
			for (int a = 0; Aliases[a][0] && hint == NULL; a++)
				if (strcmp(Aliases[a][0], key) == 0)
					for (int i = 0; allowed[i]; i++)
						if (strcmp(allowed[i], Aliases[a][1]) == 0)
							hint = psprintf("Did you mean \"%s\"?", Aliases[a][1]);
			BadRuleHint(path, key, "is not a field of this model", hint);
		}
	}
}

/* a dimension's scalar as text: strings unquoted, numbers normalized (1.0 is 1) */
static char *
DimensionText(const JsonbValue *v)
{
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return numeric_normalize(v->val.numeric);
	if (v->type == jbvBool)
		return v->val.boolean ? "true" : "false";
	return NULL;
}

static Rule *Compile(JsonbContainer *c, const char *path, int depth, Compiler *cc,
					 const char *counter, const char *legacy, const char *maxkey);

static void
CompileTiers(JsonbContainer *c, const char *path, Compiler *cc, Rule *r)
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
		static const char *const keys[] = {"up_to", "unit_price", "flat_price", NULL};
		Tier	   *tier = &r->tiers[i];

		if (t == NULL || t->type != jbvBinary || !JsonContainerIsObject(t->val.binary.data))
			BadRule(path, psprintf("tiers[%d]", i), "must be an object");
		CheckKeys(t->val.binary.data, tpath, keys);
		tier->has_flat = DecField(t->val.binary.data, tpath, "flat_price", false, false, &tier->flat_price);
		if (tier->has_flat)
			AmountFits(tpath, "flat_price", tier->flat_price, cc);
		if (!DecField(t->val.binary.data, tpath, "unit_price", !tier->has_flat, false, &tier->unit_price))
			tier->unit_price = DecFromInt(0);
		tier->bounded = DecField(t->val.binary.data, tpath, "up_to", false, true, &tier->up_to);
		if (i == n - 1 && tier->bounded)
			BadRule(tpath, "up_to", "must be absent on the last tier (it has no upper bound)");
		if (i < n - 1 && !tier->bounded)
			BadRule(tpath, "up_to", "is missing (only the last tier is unbounded)");
		if (i > 0 && i < n - 1 && DecCmp(tier->up_to, r->tiers[i - 1].up_to) <= 0)
			BadRule(path, "tiers", "are out of order: up_to must increase");
	}
}

/* the text that names a rate's match in counter keys: {"k":"v",...}, keys sorted */
static char *
MatchText(const Rate *rate)
{
	StringInfoData buf;
	int		   *order = palloc(sizeof(int) * Max(rate->nkeys, 1));

	for (int i = 0; i < rate->nkeys; i++)
	{
		int			j = i;

		while (j > 0 && strcmp(rate->keys[order[j - 1]].key, rate->keys[i].key) > 0)
		{
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < rate->nkeys; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, rate->keys[order[i]].key);
		appendStringInfoChar(&buf, ':');
		escape_json(&buf, rate->keys[order[i]].value);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

static void
CompileMatrix(JsonbContainer *c, const char *path, int depth, Compiler *cc, Rule *r)
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
		char	   *text;

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
			mk->value = DimensionText(&v);
			if (mk->value == NULL)
				BadRule(rpath, psprintf("match.%s", mk->key), "must be a string, number or boolean");
		}
		sub = Field(rate->val.binary.data, "rule");
		if (sub == NULL)
			BadRule(rpath, "rule", "is missing");
		if (sub->type != jbvBinary || !JsonContainerIsObject(sub->val.binary.data))
			BadRule(rpath, "rule", "must be an object");
		text = MatchText(&r->rates[i]);
		if (cc->strict && strlen(r->counter) + strlen(text) > MAX_MATCH_KEY)
			BadRule(rpath, "match", psprintf("is too long (the rates' matches on a path take at most %d bytes)",
											 MAX_MATCH_KEY));
		r->rates[i].rule = Compile(sub->val.binary.data, psprintf("%srule.", rpath), depth + 1, cc,
								   psprintf("%s%s", r->counter, text),
								   psprintf("%s[%d]", r->legacy, i),
								   psprintf("%s%s", r->maxkey, text));
	}
	if (dflt != NULL && dflt->type != jbvNull)
	{
		if (dflt->type != jbvBinary || !JsonContainerIsObject(dflt->val.binary.data))
			BadRule(path, "default", "must be an object");
		/* the default counts on the matrix's own counter: wrapping a rule keeps its usage */
		r->deflt = Compile(dflt->val.binary.data, psprintf("%sdefault.", path), depth + 1, cc,
						   r->counter, psprintf("%s[default]", r->legacy),
						   psprintf("%s{*}", r->maxkey));
	}
	if (cc->strict && r->nrates == 0 && r->deflt == NULL)
		BadRuleHint(path, "rates", "are empty and there is no default: no event could be priced",
					"Add a rate, or a \"default\" rule.");
}

/* a period name: day, week or month */
static const char *
PeriodField(JsonbContainer *c, const char *path)
{
	char	   *period = StringField(c, path, "period");

	/* constants: a counter to record may outlive the cache that compiled the rule */
	if (period == NULL || strcmp(period, "month") == 0)
		return "month";
	if (strcmp(period, "day") == 0)
		return "day";
	if (strcmp(period, "week") == 0)
		return "week";
	BadRule(path, "period", psprintf("\"%.64s\" is unknown (day, week, month)", period));
}

/* quantity_transform: {"divide_by": n, "round": "up"|"down"|"none"} or {"multiply_by": x} */
static void
CompileTransform(JsonbContainer *c, const char *path, Rule *r)
{
	JsonbValue *v = Field(c, "quantity_transform");
	JsonbContainer *t;
	char	   *tpath = psprintf("%squantity_transform.", path);
	static const char *const keys[] = {"divide_by", "round", "multiply_by", NULL};
	bool		divide;
	bool		multiply;
	char	   *round;

	r->transform = TRANSFORM_NONE;
	if (v == NULL || v->type == jbvNull)
		return;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		BadRule(path, "quantity_transform", "must be an object");
	t = v->val.binary.data;
	CheckKeys(t, tpath, keys);
	divide = DecField(t, tpath, "divide_by", false, true, &r->transform_by);
	multiply = Field(t, "multiply_by") != NULL;
	if (divide == multiply)
		BadRuleHint(path, "quantity_transform", "takes exactly one of divide_by and multiply_by",
					"For example {\"divide_by\": 1000, \"round\": \"up\"} or {\"multiply_by\": 60}.");
	if (multiply)
	{
		DecField(t, tpath, "multiply_by", true, true, &r->transform_by);
		if (Field(t, "round") != NULL)
			BadRule(tpath, "round", "applies to divide_by only");
		r->transform = TRANSFORM_MULTIPLY;
		return;
	}
	r->transform = TRANSFORM_DIVIDE;
	round = StringField(t, tpath, "round");
	if (round == NULL)
		BadRuleHint(tpath, "round", "is missing", "Use \"round\": \"up\", \"down\" or \"none\" (keep the fraction).");
	else if (strcmp(round, "up") == 0)
		r->transform_round = ROUND_UP;
	else if (strcmp(round, "down") == 0)
		r->transform_round = ROUND_DOWN;
	else if (strcmp(round, "none") == 0)
		r->transform_round = -1;
	else
		BadRule(tpath, "round", psprintf("\"%.64s\" is unknown (up, down, none)", round));
}

static Rule *
Compile(JsonbContainer *c, const char *path, int depth, Compiler *cc,
		const char *counter, const char *legacy, const char *maxkey)
{
	Rule	   *r = palloc0(sizeof(Rule));
	char	   *model;
	char	   *rounding;
	bool		counted = false;	/* the model keeps a usage counter */

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
	r->has_max_period = ChargeField(c, path, "max_per_period", cc->scale, &r->max_per_period);
	CompileTransform(c, path, r);
	r->counter = pstrdup(counter);
	r->legacy = pstrdup(legacy);
	r->maxkey = pstrdup(maxkey);

#define COMMON_KEYS "model", "rounding", "min_charge", "max_charge", "quantity_transform", "max_per_period", "period"
	if (strcmp(model, "per_unit") == 0)
	{
		static const char *const keys[] = {COMMON_KEYS, "unit_price", "per", NULL};

		CheckKeys(c, path, keys);
		r->model = MODEL_PER_UNIT;
		DecField(c, path, "unit_price", true, false, &r->unit_price);
		r->per = IntField(c, path, "per", 1);
	}
	else if (strcmp(model, "flat") == 0)
	{
		static const char *const keys[] = {COMMON_KEYS, "price", NULL};

		CheckKeys(c, path, keys);
		r->model = MODEL_FLAT;
		DecField(c, path, "price", true, false, &r->price);
		AmountFits(path, "price", r->price, cc);
	}
	else if (strcmp(model, "package") == 0)
	{
		static const char *const keys[] = {COMMON_KEYS, "size", "price", "free_units", "round", NULL};
		char	   *round;

		CheckKeys(c, path, keys);
		r->model = MODEL_PACKAGE;
		DecField(c, path, "price", true, false, &r->price);
		AmountFits(path, "price", r->price, cc);
		DecField(c, path, "size", true, true, &r->size);
		r->has_free = DecField(c, path, "free_units", false, false, &r->free_units);
		counted = r->has_free;
		round = StringField(c, path, "round");
		if (round == NULL || strcmp(round, "up") == 0)
			r->round = ROUND_UP;
		else if (strcmp(round, "down") == 0)
			r->round = ROUND_DOWN;
		else
			BadRule(path, "round", psprintf("\"%.64s\" is unknown (up: a started package is charged, down: complete packages only)", round));
		if (cc->strict && rounding != NULL && (r->rounding == ROUND_UP || r->rounding == ROUND_DOWN) &&
			r->price.scale <= cc->scale)
			BadRuleHint(path, "rounding",
						psprintf("\"%s\" rounds the amount, not the number of packages, and changes nothing here", rounding),
						"To charge complete packages only, use \"round\": \"down\"; \"round\": \"up\" (the default) charges every started package.");
	}
	else if (strcmp(model, "graduated") == 0 || strcmp(model, "volume") == 0)
	{
		static const char *const keys[] = {COMMON_KEYS, "tiers", "per", NULL};

		CheckKeys(c, path, keys);
		r->model = model[0] == 'g' ? MODEL_GRADUATED : MODEL_VOLUME;
		counted = true;
		r->per = IntField(c, path, "per", 1);
		CompileTiers(c, path, cc, r);
	}
	else if (strcmp(model, "matrix") == 0)
	{
		static const char *const keys[] = {COMMON_KEYS, "dimensions", "rates", "default", NULL};

		CheckKeys(c, path, keys);
		r->model = MODEL_MATRIX;
		CompileMatrix(c, path, depth, cc, r);
	}
	else if (strcmp(model, "percentage") == 0)
	{
		static const char *const keys[] = {COMMON_KEYS, "rate", "fixed_fee", NULL};

		CheckKeys(c, path, keys);
		r->model = MODEL_PERCENTAGE;
		DecField(c, path, "rate", true, false, &r->rate);
		if (!DecField(c, path, "fixed_fee", false, false, &r->fixed_fee))
			r->fixed_fee = DecFromInt(0);
		AmountFits(path, "fixed_fee", r->fixed_fee, cc);
	}
	else if (strcmp(model, "cost_plus") == 0)
	{
		static const char *const keys[] = {COMMON_KEYS, "markup", "fixed_fee", NULL};

		CheckKeys(c, path, keys);
		r->model = MODEL_COST_PLUS;
		DecField(c, path, "markup", true, false, &r->markup);
		if (!DecField(c, path, "fixed_fee", false, false, &r->fixed_fee))
			r->fixed_fee = DecFromInt(0);
		AmountFits(path, "fixed_fee", r->fixed_fee, cc);
	}
	else
		BadRule(path, "model", psprintf("\"%.64s\" is unknown (per_unit, flat, package, graduated, volume, matrix, percentage, cost_plus)", model));
#undef COMMON_KEYS

	if (counted || r->has_max_period)
		r->period = PeriodField(c, path);
	else if (Field(c, "period") != NULL)
		BadRuleHint(path, "period", "has no effect on this rule",
					"A period applies to tiers, free_units and max_per_period.");
	return r;
}

static Rule *
CompileRule(Jsonb *rule, int scale, bool strict)
{
	Compiler	cc = {scale, strict};

	if (!JB_ROOT_IS_OBJECT(rule) || JB_ROOT_IS_SCALAR(rule))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid price rule: the rule must be a json object")));
	return Compile(&rule->root, "", 0, &cc, "", "", "");
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
	CompileRule(PG_GETARG_JSONB_P(0), asset->scale, true);
	PG_RETURN_VOID();
}

/*
 * wallet._counter_suffix_11(rule, asset, legacy): the 1.1 counter suffix of
 * the rule that the 1.0 positional suffix ("[1][default]") names in rule, or
 * null when it names none.  The upgrade script moves 1.0 counters with it.
 */
Datum
wallet_counter_suffix_11(PG_FUNCTION_ARGS)
{
	char	   *legacy = text_to_cstring(PG_GETARG_TEXT_PP(2));
	const AssetInfo *asset = AssetLookup(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	const Rule *r = CompileRule(PG_GETARG_JSONB_P(0), asset->scale, false);
	const char *p = legacy;

	while (*p)
	{
		char	   *end;
		long		i;

		if (r->model != MODEL_MATRIX || *p != '[')
			PG_RETURN_NULL();
		if (strncmp(p, "[default]", 9) == 0)
		{
			if (r->deflt == NULL)
				PG_RETURN_NULL();
			r = r->deflt;
			p += 9;
			continue;
		}
		i = strtol(p + 1, &end, 10);
		if (end == p + 1 || *end != ']' || i < 0 || i >= r->nrates)
			PG_RETURN_NULL();
		r = r->rates[i].rule;
		p = end + 1;
	}
	PG_RETURN_TEXT_P(cstring_to_text(r->counter));
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

/*
 * The schema's release, read once per cache generation (the upgrade alters
 * wallet.price, which empties every cache): a 1.0 schema keeps its usage
 * counters under the 1.0 positional keys until the upgrade moves them.
 */
static int	schema_version = 0;

/* the cache under the rule of coherence.c; meters hold what was read at stamp */
static Coherence coherence;
static uint64 stamp = 0;
static Oid	price_relid = InvalidOid;
static Oid	asset_relid = InvalidOid;

/*
 * A change to wallet.price, or to wallet.asset (a rule is compiled for its
 * asset's scale), or to every relation: compile again.
 */
static void
PriceInval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == price_relid || relid == asset_relid)
		CoherenceInvalidate(&coherence);
}

/* empty the cache; its entries will be stamped with ticket */
static void
CacheReset(uint64 ticket)
{
	HASHCTL		ctl;
	static bool registered = false;
	Oid			nsp;

	if (!registered)
	{
		CacheRegisterRelcacheCallback(PriceInval, (Datum) 0);
		/* a statement trigger on wallet.price invalidates on every change */
		coherence.subabort_kept = true;
		registered = true;
	}
	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(CacheMemoryContext, "wallet price cache",
										  ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(cache_cxt);
	PriceCacheGeneration++;
	schema_version = 0;
	ctl.keysize = MAX_METER_LENGTH + 1;
	ctl.entrysize = sizeof(MeterEntry);
	ctl.hcxt = cache_cxt;
	meters = hash_create("wallet prices", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	nsp = get_namespace_oid("wallet", false);
	price_relid = get_relname_relid("price", nsp);
	asset_relid = get_relname_relid("asset", nsp);
	stamp = ticket;
}

/*
 * The versions of a meter, compiled; loaded on first use, from a snapshot
 * taken after the invalidations were read (coherence.c).
 */
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
	uint64		ticket = CoherenceAccept(&coherence);

	if (meters == NULL || stamp != ticket)
		CacheReset(ticket);
	memset(key, 0, sizeof(key));
	strlcpy(key, meter, sizeof(key));
	e = hash_search(meters, key, HASH_FIND, NULL);
	if (e)
		return e;

	values[0] = CStringGetTextDatum(meter);
	CoherencePushSnapshot();
	WalletExec(PLAN_PRICES,
			   "SELECT id, asset, rule, effective_at, plan, customer FROM wallet.price "
			   " WHERE meter OPERATOR(pg_catalog.=) $1 ORDER BY effective_at, id",
			   1, argtypes, values, NULL, true, SPI_OK_SELECT);
	PopActiveSnapshot();
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
								 v->pv.asset.scale, false);
		v->effective_at = DatumGetTimestampTz(SPI_getbinval(tup, tt->tupdesc, 4, &isnull));
		v->plan = SpiGetText(tup, tt->tupdesc, 5, &isnull);
		v->customer = SpiGetText(tup, tt->tupdesc, 6, &isnull);
		if (v->plan)
			e->has_plans = true;
		e->n++;
	}
	MemoryContextSwitchTo(old);
	CoherenceFilled(&coherence);
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

/* the version of a meter with this id, whoever it prices (NULL: none) */
const PriceVersion *
PriceVersionById(const char *meter, int64 price_id)
{
	MeterEntry *e = strlen(meter) <= MAX_METER_LENGTH ? MeterLoad(meter) : NULL;

	for (int i = 0; e && i < e->n; i++)
		if (e->versions[i].pv.id == price_id)
			return &e->versions[i].pv;
	return NULL;
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

/*
 * A transaction whose price version or plan assignment takes effect at its
 * commit cannot be prepared: deferred triggers fire at PREPARE TRANSACTION, so
 * the row would take effect then, while events priced until COMMIT PREPARED
 * used the price or plan before it (the same occurred_at, two prices).
 * PostgreSQL's own features that cannot be prepared refuse the same way.
 */
static bool price_at_commit = false;
static bool plan_at_commit = false;

static void
InForceXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_PREPARE && (price_at_commit || plan_at_commit))
	{
		bool		price = price_at_commit;

		price_at_commit = plan_at_commit = false;
		if (price)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot prepare a transaction that set a price to take effect at its commit"),
					 errdetail("The version would take effect at PREPARE TRANSACTION, while events priced until COMMIT PREPARED used the one before."),
					 errhint("Set the price in a transaction that commits directly, or give it an effective_at in the future.")));
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot prepare a transaction that assigned a plan to take effect at its commit"),
				 errdetail("The assignment would take effect at PREPARE TRANSACTION, while events priced until COMMIT PREPARED used the plan before it."),
				 errhint("Assign the plan in a transaction that commits directly, or give it an effective_at in the future.")));
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		price_at_commit = plan_at_commit = false;
}

/*
 * Whether a row of wallet.price (plan false) or wallet.plan_assignment (plan
 * true) with this effective_at, found by its deferred trigger at commit,
 * takes effect at the commit: set for now (its transaction's start, the
 * default) or for a time already passed.  One backdated on purpose (before
 * its transaction began) or still ahead keeps its effective_at.  When it
 * does, PREPARE TRANSACTION is refused from here on.
 */
bool
InForceAtCommit(TimestampTz effective_at, bool plan)
{
	static bool registered = false;

	if (effective_at < GetCurrentTransactionStartTimestamp() || effective_at >= GetCurrentTimestamp())
		return false;
	if (!registered)
	{
		RegisterXactCallback(InForceXactCallback, NULL);
		registered = true;
	}
	if (plan)
		plan_at_commit = true;
	else
		price_at_commit = true;
	return true;
}

/*
 * Deferred trigger on wallet.price (1.1), at commit: a version set for now
 * (its transaction's start, the default) or for a time already passed takes
 * effect at its commit, so events are priced by their occurred_at alone
 * whichever side of the commit they were priced on.  A version backdated on
 * purpose (before its transaction began) keeps its effective_at.  Runs as the
 * table's owner, as PostgreSQL's RI triggers do: the setter's role may not
 * update wallet.price itself.
 */
Datum
wallet_price_in_force(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[1] = {INT8OID};
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tup;
	bool		isnull;
	TimestampTz effective_at;
	Datum		values[1];

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "wallet: price_in_force must be a row trigger on insert");
	desc = RelationGetDescr(trigdata->tg_relation);
	tup = trigdata->tg_trigtuple;
	effective_at = DatumGetTimestampTz(heap_getattr(tup, SPI_fnumber(desc, "effective_at"), desc, &isnull));
	if (isnull || !InForceAtCommit(effective_at, false))
		return PointerGetDatum(NULL);
	values[0] = heap_getattr(tup, SPI_fnumber(desc, "id"), desc, &isnull);
	WalletExecAsOwner(trigdata->tg_relation, PLAN_PRICE_IN_FORCE,
					  "UPDATE wallet.price SET effective_at = pg_catalog.clock_timestamp() "
					  " WHERE id OPERATOR(pg_catalog.=) $1 "
					  "   AND effective_at OPERATOR(pg_catalog.<) pg_catalog.clock_timestamp()",
					  1, argtypes, values, SPI_OK_UPDATE);
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

/*
 * cumulative usage of a counter in a period, as recorded: the counter of
 * meter's rule (counter: its suffix, '' the rule's own), or on a 1.0 schema
 * (counter NULL) the one keyed by meter alone
 */
static Dec
CounterRead(int64 wallet_id, const char *meter, const char *counter, const char *period,
			TimestampTz start)
{
	static const Oid argtypes[5] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[5];
	bool		isnull;

	values[0] = Int64GetDatum(wallet_id);
	values[1] = CStringGetTextDatum(meter);
	values[2] = CStringGetTextDatum(period);
	values[3] = TimestampTzGetDatum(start);
	if (counter == NULL)
		WalletExec(PLAN_COUNTER_GET10,
				   "SELECT quantity FROM wallet.usage_counter "
				   " WHERE wallet_id OPERATOR(pg_catalog.=) $1 AND meter OPERATOR(pg_catalog.=) $2 "
				   "   AND period OPERATOR(pg_catalog.=) $3 AND period_start OPERATOR(pg_catalog.=) $4",
				   4, argtypes, values, NULL, false, SPI_OK_SELECT);
	else
	{
		values[4] = CStringGetTextDatum(counter);
		WalletExec(PLAN_COUNTER_GET,
				   "SELECT quantity FROM wallet.usage_counter "
				   " WHERE wallet_id OPERATOR(pg_catalog.=) $1 AND meter OPERATOR(pg_catalog.=) $2 "
				   "   AND counter OPERATOR(pg_catalog.=) $5 "
				   "   AND period OPERATOR(pg_catalog.=) $3 AND period_start OPERATOR(pg_catalog.=) $4",
				   5, argtypes, values, NULL, false, SPI_OK_SELECT);
	}
	if (SPI_processed == 0)
		return DecFromInt(0);
	return DecFromTotal(DatumGetNumeric(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													  1, &isnull)), "usage");
}

/* the same counter: both 1.1 keys (meter, counter) or both 1.0 keys (meter) */
static bool
SameCounter(const CounterAdd *a, const char *meter, const char *counter)
{
	if ((a->counter == NULL) != (counter == NULL))
		return false;
	return strcmp(a->meter, meter) == 0 && (counter == NULL || strcmp(a->counter, counter) == 0);
}

typedef struct EvalContext
{
	int64		wallet_id;
	const char *meter;
	Jsonb	   *dims;
	TimestampTz occurred_at;
	const char *asset;
	int			scale;
	Numeric		cost;			/* NULL: the call passed none */
	bool		takes_cost;		/* the call has a cost argument */
	UsageToRecord *usage;
	const UsageToRecord *const *earlier;	/* not yet recorded, to count as recorded */
	int			nearlier;
} EvalContext;

/*
 * cumulative usage of a counter in a period, before this event: what is
 * recorded, and what earlier events of the same call will record (the lines
 * of one capture, priced one after the other before any is recorded)
 */
static Dec
CounterGet(const EvalContext *ec, const char *meter, const char *counter, const char *period,
		   TimestampTz start)
{
	Dec			before = CounterRead(ec->wallet_id, meter, counter, period, start);

	for (int i = 0; i < ec->nearlier; i++)
		for (int k = 0; k < ec->earlier[i]->n; k++)
		{
			const CounterAdd *a = &ec->earlier[i]->adds[k];

			if (a->period_start == start && SameCounter(a, meter, counter) &&
				strcmp(a->period, period) == 0)
				before = DecAdd(before, a->add);
		}
	return before;
}

/* the counters a price read, added once the debit is approved (quantity: unused since 1.1) */
void
UsageRecord(const UsageToRecord *u, int64 wallet_id, Dec quantity)
{
	static const Oid argtypes[6] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID, NUMERICOID, TEXTOID};
	Datum		values[6];

	for (int i = 0; i < u->n; i++)
	{
		const CounterAdd *a = &u->adds[i];

		if (a->add.v == 0)
			continue;
		values[0] = Int64GetDatum(wallet_id);
		values[1] = CStringGetTextDatum(a->meter);
		values[2] = CStringGetTextDatum(a->period);
		values[3] = TimestampTzGetDatum(a->period_start);
		values[4] = NumericGetDatum(DecToNumeric(a->add));
		if (a->counter == NULL)
			WalletExec(PLAN_COUNTER_ADD10,
					   "INSERT INTO wallet.usage_counter AS u (wallet_id, meter, period, period_start, quantity) "
					   "VALUES ($1, $2, $3, $4, $5) "
					   "ON CONFLICT (wallet_id, meter, period, period_start) "
					   "DO UPDATE SET quantity = u.quantity OPERATOR(pg_catalog.+) excluded.quantity",
					   5, argtypes, values, NULL, false, SPI_OK_INSERT);
		else
		{
			values[5] = CStringGetTextDatum(a->counter);
			WalletExec(PLAN_COUNTER_ADD,
					   "INSERT INTO wallet.usage_counter AS u (wallet_id, meter, counter, period, period_start, quantity) "
					   "VALUES ($1, $2, $6, $3, $4, $5) "
					   "ON CONFLICT (wallet_id, meter, counter, period, period_start) "
					   "DO UPDATE SET quantity = u.quantity OPERATOR(pg_catalog.+) excluded.quantity",
					   6, argtypes, values, NULL, false, SPI_OK_INSERT);
		}
		WalletExpectRows(1, "wallet.usage_counter");
	}
}

/* a counter to add to once the debit is approved */
static void
CounterNote(EvalContext *ec, const char *meter, const char *counter, const char *period,
			TimestampTz start, Dec add)
{
	CounterAdd *a;

	if (ec->usage->n >= PRICE_MAX_COUNTERS)
		elog(ERROR, "wallet: too many counters for one event");
	a = &ec->usage->adds[ec->usage->n++];
	a->meter = meter;
	a->counter = counter;
	a->period = period;
	a->period_start = start;
	a->add = add;
	a->charged = false;
}

/*
 * A counter of the event's meter: its key and usage before this event in the
 * period starting at start.  Its key is (meter, suffix11) in the 1.1 schema
 * (wallet.usage_counter.counter keeps the suffix apart, so that no meter's
 * name can reach another meter's counters), and meter || suffix10 in *meter
 * (*counter NULL) on a 1.0 schema.  The upgrade locks the counters while it
 * moves them and alters wallet.price: a read that waited for it sees the
 * cache invalidated, and reads again under the 1.1 key.
 */
static Dec
CounterBefore(EvalContext *ec, const char *suffix11, const char *suffix10, const char *period,
			  TimestampTz start, const char **meter, const char **counter)
{
	Dec			before;

	for (;;)
	{
		bool		legacy;

		if (schema_version == 0)
			schema_version = WalletSchemaVersion();
		legacy = schema_version < 11;
		*meter = legacy ? psprintf("%s%s", ec->meter, suffix10) : ec->meter;
		*counter = legacy ? NULL : suffix11;
		before = CounterGet(ec, *meter, *counter, period, start);
		if (!legacy || stamp == coherence.generation || WalletSchemaVersion() < 11)
			return before;
		schema_version = 11;
	}
}

/* the usage counter of a rule (tiers, free_units): its key, period start and usage before */
static Dec
UsageBefore(const Rule *r, EvalContext *ec, const char **meter, const char **counter,
			TimestampTz *start)
{
	*start = PeriodStart(r->period, ec->occurred_at);
	return CounterBefore(ec, r->counter, r->legacy, r->period, *start, meter, counter);
}

/* does the event's dimension equal the rate's value, both as text? */
static bool
DimensionMatches(Jsonb *dims, const MatchKey *mk)
{
	JsonbValue *v;
	char	   *s;

	if (dims == NULL)
		return false;
	v = getKeyJsonValueFromContainer(&dims->root, mk->key, strlen(mk->key), NULL);
	if (v == NULL)
		return false;
	if (v->type == jbvString)
		return strlen(mk->value) == (size_t) v->val.string.len &&
			memcmp(mk->value, v->val.string.val, v->val.string.len) == 0;
	s = DimensionText(v);
	return s != NULL && strcmp(s, mk->value) == 0;
}

/* WL003 for an event no rate of a matrix matches, naming the values it saw */
static pg_attribute_noreturn() void
NoRate(const Rule *r, EvalContext *ec)
{
	StringInfoData seen;

	initStringInfo(&seen);
	for (int d = 0; d < r->ndims; d++)
	{
		JsonbValue *v = ec->dims ?
			getKeyJsonValueFromContainer(&ec->dims->root, r->dims[d], strlen(r->dims[d]), NULL) : NULL;
		char	   *s = v ? DimensionText(v) : NULL;

		if (d > 0)
			appendStringInfoString(&seen, ", ");
		if (s)
			appendStringInfo(&seen, "%.64s = \"%.64s\"", r->dims[d], s);
		else
			appendStringInfo(&seen, "%.64s %s", r->dims[d], v ? "not a scalar" : "absent");
	}
	ereport(ERROR,
			(errcode(ERRCODE_WALLET_NO_PRICE),
			 errmsg("no rate of meter \"%.100s\" matches the event's dimensions", ec->meter),
			 errdetail("The event has %s; the rule has no rate for these values and no default.",
					   seen.data)));
}

/* what one unit of the asset is worth in the reporting currency (cost_plus) */
static Dec
UnitValue(const char *asset)
{
	static const Oid argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(asset)};
	bool		isnull;
	Dec			uv;

	WalletExec(PLAN_UNIT_VALUE,
			   "SELECT unit_value FROM wallet.asset WHERE code OPERATOR(pg_catalog.=) $1",
			   1, argtypes, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_NO_ASSET),
				 errmsg("no asset \"%s\"", asset)));
	uv = DecFromNumeric(DatumGetNumeric(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													  1, &isnull)), "unit_value");
	if (uv.v <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("asset \"%s\" has unit_value 0: a cost_plus price cannot convert a cost into it", asset),
				 errhint("Set its unit_value with wallet_create_asset().")));
	return uv;
}

/* the rate of a matrix that prices the event: the first whose values all match, else the default */
static const Rule *
MatrixRate(const Rule *r, EvalContext *ec)
{
	for (int i = 0; i < r->nrates; i++)
	{
		bool		all = true;

		for (int k = 0; k < r->rates[i].nkeys && all; k++)
			all = DimensionMatches(ec->dims, &r->rates[i].keys[k]);
		if (all)
			return r->rates[i].rule;
	}
	if (r->deflt == NULL)
		NoRate(r, ec);
	return r->deflt;
}

/* quantity_transform, applied before the rule prices the quantity */
static Dec
TransformQuantity(const Rule *r, Dec q)
{
	if (r->transform == TRANSFORM_MULTIPLY)
		return DecMul(q, r->transform_by);
	if (r->transform_round < 0)
		return DecDiv(q, r->transform_by, WALLET_MAX_SCALE, ROUND_HALF_UP);
	return DecDiv(q, r->transform_by, 0, (Rounding) r->transform_round);
}

/* graduated and volume: the tiers' prices for (before, before + q], flat fees included */
static int128
EvaluateTiers(const Rule *r, Dec q, EvalContext *ec)
{
	const char *meter;
	const char *counter;
	TimestampTz start;
	Dec			before = DecTotalFor(UsageBefore(r, ec, &meter, &counter, &start), q);
	Dec			after = DecAdd(before, q);
	Dec			x = DecFromInt(0);
	Dec			flat = DecFromInt(0);
	Dec			lower = DecFromInt(0);

	for (int i = 0; i < r->ntiers; i++)
	{
		const Tier *t = &r->tiers[i];
		/* this event is the first to reach the tier: its units enter (lower, up_to] */
		bool		reaches = DecCmp(before, lower) <= 0 && DecCmp(after, lower) > 0;

		if (r->model == MODEL_VOLUME)
		{
			if (!t->bounded || DecCmp(after, t->up_to) <= 0)
			{
				x = DecMul(q, t->unit_price);
				if (t->has_flat && reaches)
					flat = t->flat_price;
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
			if (t->has_flat && reaches)
				flat = DecAdd(flat, t->flat_price);
		}
		if (t->bounded)
			lower = t->up_to;
	}
	CounterNote(ec, meter, counter, r->period, start, q);
	if (flat.v != 0)
		x = DecAdd(x, DecMul(flat, DecFromInt(r->per)));
	return DecToMinorWide(x, r->per, ec->scale, r->rounding);
}

/* package: started (round up) or complete (round down) packages, beyond the free units */
static int128
EvaluatePackage(const Rule *r, Dec q, EvalContext *ec)
{
	Dec			billable = q;

	if (r->has_free)
	{
		const char *meter;
		const char *counter;
		TimestampTz start;
		Dec			before = DecTotalFor(UsageBefore(r, ec, &meter, &counter, &start), q);
		Dec			zero = DecFromInt(0);

		billable = DecSub(DecMax(DecSub(DecAdd(before, q), r->free_units), zero),
						  DecMax(DecSub(before, r->free_units), zero));
		CounterNote(ec, meter, counter, r->period, start, q);
	}
	return DecToMinorWide(DecMul(DecDiv(billable, r->size, 0, r->round), r->price), 1,
						  ec->scale, r->rounding);
}

/* cost_plus: cost x (1 + markup) in the asset at its unit_value, plus fixed_fee */
static int128
EvaluateCostPlus(const Rule *r, EvalContext *ec)
{
	Dec			cost;
	Dec			uv;

	if (ec->cost == NULL && !ec->takes_cost)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meter \"%.100s\" is priced cost_plus, which needs the call's cost, and this call takes none",
						ec->meter),
				 errhint("A cost_plus meter is priced by the calls that pass cost (wallet_authorize_debit, wallet_capture, wallet_capture_lines, wallet_ingest); to hold for one, hold an amount with wallet_hold().")));
	if (ec->cost == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meter \"%.100s\" is priced cost_plus, and the call passed no cost", ec->meter),
				 errhint("Pass cost: what serving the call cost, in the reporting currency.")));
	cost = DecFromNumeric(ec->cost, "cost");
	uv = UnitValue(ec->asset);
	return DecDivToMinorWide(DecAdd(DecMul(cost, DecAdd(DecFromInt(1), r->markup)), DecMul(r->fixed_fee, uv)),
							 uv, ec->scale, r->rounding);
}

/*
 * The amount of a rule, in minor units, rounded once by the rule's rounding
 * and then bounded by min_charge, max_charge and max_per_period: an int128, so
 * that an amount that does not fit in int64 until a bound applies is bounded
 * exactly (PriceEvaluateAfter refuses one that still does not fit).
 */
static int128
Evaluate(const Rule *r, Dec q, EvalContext *ec)
{
	int128		amount = 0;
	Dec			given = q;

	if (r->transform != TRANSFORM_NONE)
		q = TransformQuantity(r, q);
	switch (r->model)
	{
		case MODEL_PER_UNIT:
			if (r->transform == TRANSFORM_DIVIDE && r->transform_round < 0)
			{
				/* divide_by with round none: one division, rounded once (q / 3 has no end) */
				amount = DecDivToMinorWide(DecMul(given, r->unit_price),
										   DecMul(r->transform_by, DecFromInt(r->per)), ec->scale, r->rounding);
				break;
			}
			amount = DecMulToMinorWide(q, r->unit_price, r->per, ec->scale, r->rounding);
			break;
		case MODEL_FLAT:
			amount = DecToMinorWide(r->price, 1, ec->scale, r->rounding);
			break;
		case MODEL_PACKAGE:
			if (!r->has_free && r->round == ROUND_UP)
				amount = DecToMinorWide(DecMul(DecFromInt(DecCeilDiv(q, r->size)), r->price), 1,
										ec->scale, r->rounding);
			else
				amount = EvaluatePackage(r, q, ec);
			break;
		case MODEL_GRADUATED:
		case MODEL_VOLUME:
			amount = EvaluateTiers(r, q, ec);
			break;
		case MODEL_MATRIX:
			amount = Evaluate(MatrixRate(r, ec), q, ec);
			break;
		case MODEL_PERCENTAGE:
			amount = DecToMinorWide(DecAdd(DecMul(q, r->rate), r->fixed_fee), 1, ec->scale, r->rounding);
			break;
		case MODEL_COST_PLUS:
			amount = EvaluateCostPlus(r, ec);
			break;
	}
	if (r->has_min && amount < r->min_charge)
		amount = r->min_charge;
	if (r->has_max && amount > r->max_charge)
		amount = r->max_charge;
	if (r->has_max_period)
	{
		/* what this rule charged in the period, in asset units: later events cost 0 */
		const char *meter;
		const char *counter;
		char	   *suffix = psprintf("%s#max:%s", r->maxkey, ec->asset);
		TimestampTz start = PeriodStart(r->period, ec->occurred_at);
		Dec			spent = CounterBefore(ec, suffix, suffix, r->period, start, &meter, &counter);
		int64		room = SubMinor(r->max_per_period, DecToMinor(spent, 1, ec->scale, ROUND_UP));
		Dec			charged;

		if (amount > room)
			amount = Max(room, 0);
		charged.v = amount;
		charged.scale = ec->scale;
		CounterNote(ec, meter, counter, r->period, start, charged);
		ec->usage->adds[ec->usage->n - 1].charged = true;
	}
	return amount;
}

/* an event's context for version pv: no cost, no earlier events of its call, no usage yet */
static void
EvalContextInit(EvalContext *ec, const PriceVersion *pv, int64 wallet_id, const char *meter,
				Jsonb *dims, TimestampTz occurred_at, UsageToRecord *usage)
{
	memset(ec, 0, sizeof(*ec));
	usage->n = 0;
	ec->wallet_id = wallet_id;
	ec->meter = meter;
	ec->dims = dims;
	ec->occurred_at = occurred_at;
	ec->asset = pv->asset.code;
	ec->scale = pv->asset.scale;
	ec->usage = usage;
}

/*
 * The counters Evaluate adds to for an event, and what it adds to its usage
 * counters, without pricing it: the same walk (quantity_transform at each
 * level, the matrix rate the dimensions choose) with none of the amounts,
 * which at today's usage may no longer be what the event was charged, or fit
 * (a refund, refund.c, needs only the keys).  A max_per_period counter is
 * noted charged, with nothing added.
 */
static void
CounterKeys(const Rule *r, Dec q, EvalContext *ec)
{
	const char *meter;
	const char *counter;
	TimestampTz start;

	if (r->transform != TRANSFORM_NONE)
		q = TransformQuantity(r, q);
	if (r->model == MODEL_MATRIX)
		CounterKeys(MatrixRate(r, ec), q, ec);
	else if (r->model == MODEL_GRADUATED || r->model == MODEL_VOLUME ||
			 (r->model == MODEL_PACKAGE && r->has_free))
	{
		(void) UsageBefore(r, ec, &meter, &counter, &start);
		CounterNote(ec, meter, counter, r->period, start, q);
	}
	if (r->has_max_period)
	{
		char	   *suffix = psprintf("%s#max:%s", r->maxkey, ec->asset);

		start = PeriodStart(r->period, ec->occurred_at);
		(void) CounterBefore(ec, suffix, suffix, r->period, start, &meter, &counter);
		CounterNote(ec, meter, counter, r->period, start, DecFromInt(0));
		ec->usage->adds[ec->usage->n - 1].charged = true;
	}
}

/*
 * What an event priced by version pv (of meter, for quantity, dimensions and
 * occurred_at) added to counters, in usage: the keys of every counter, the
 * quantity added to each usage counter, and the max_per_period counters
 * (charged, add 0), read under the caller's balance lock.
 */
void
PriceCounterKeys(const PriceVersion *pv, int64 wallet_id, const char *meter, Dec quantity,
				 Jsonb *dims, TimestampTz occurred_at, UsageToRecord *usage)
{
	EvalContext ec;

	EvalContextInit(&ec, pv, wallet_id, meter, dims, occurred_at, usage);
	CounterKeys(pv->rule, quantity, &ec);
}

/*
 * The amount a version charges for quantity, in minor units of its asset, for
 * a call that passed cost (NULL: none).  Rules with counters read them (the
 * caller holds the balance lock) and say in usage what to add once the debit
 * is approved.
 */
int64
PriceEvaluateCost(const PriceVersion *pv, int64 wallet_id, const char *meter,
				  Dec quantity, Jsonb *dims, TimestampTz occurred_at, Numeric cost,
				  UsageToRecord *usage)
{
	return PriceEvaluateAfter(pv, wallet_id, meter, quantity, dims, occurred_at, cost, NULL, 0, usage);
}

static int64
EvaluateVersion(const PriceVersion *pv, int64 wallet_id, const char *meter,
				Dec quantity, Jsonb *dims, TimestampTz occurred_at, Numeric cost, bool takes_cost,
				const UsageToRecord *const *earlier, int nearlier, UsageToRecord *usage)
{
	EvalContext ec;

	EvalContextInit(&ec, pv, wallet_id, meter, dims, occurred_at, usage);
	ec.cost = cost;
	ec.takes_cost = takes_cost;
	ec.earlier = earlier;
	ec.nearlier = nearlier;
	return MinorFromWide(Evaluate(pv->rule, quantity, &ec));
}

/*
 * The same for an event that comes after nearlier others of the same call
 * whose counters are not recorded yet (earlier[i]: what each will record):
 * it is priced as if they were.
 */
int64
PriceEvaluateAfter(const PriceVersion *pv, int64 wallet_id, const char *meter,
				   Dec quantity, Jsonb *dims, TimestampTz occurred_at, Numeric cost,
				   const UsageToRecord *const *earlier, int nearlier, UsageToRecord *usage)
{
	return EvaluateVersion(pv, wallet_id, meter, quantity, dims, occurred_at, cost, true,
						   earlier, nearlier, usage);
}

/*
 * the same for a call that has no cost argument (wallet_authorize_hold,
 * wallet_quote): a cost_plus price refuses it, saying so
 */
int64
PriceEvaluate(const PriceVersion *pv, int64 wallet_id, const char *meter,
			  Dec quantity, Jsonb *dims, TimestampTz occurred_at, UsageToRecord *usage)
{
	return EvaluateVersion(pv, wallet_id, meter, quantity, dims, occurred_at, NULL, false,
						   NULL, 0, usage);
}
