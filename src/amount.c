/*
 * amount.c
 *	  Exact decimals and minor units.
 *
 * Amounts cross the API as numeric and are kept as int64 counts of minor units
 * of their asset.  Pricing multiplies decimals (quantity x unit price), so it
 * works in Dec: an int128 with a decimal scale.  Every step is overflow-checked;
 * a result that does not fit is 22003.  Nothing here is floating point.
 */
#include "wallet.h"

#include "common/int.h"
#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(wallet_minor);
PG_FUNCTION_INFO_V1(wallet_major);

/* more decimal places than this in any input is refused */
#define DEC_MAX_SCALE	30

static int128 Pow10[39];

static Dec	Normalize(Dec d);

static void
InitPow10(void)
{
	if (Pow10[0] == 0)
	{
		Pow10[0] = 1;
		for (int i = 1; i < 39; i++)
			Pow10[i] = Pow10[i - 1] * 10;
	}
}

static pg_attribute_noreturn() void
OutOfRange(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("amount out of range"),
			 errdetail("Amounts are kept as signed 64-bit counts of minor units.")));
}

static inline int128
Mul128(int128 a, int128 b)
{
	int128		r;

	if (__builtin_mul_overflow(a, b, &r))
		OutOfRange();
	return r;
}

static inline int128
Add128(int128 a, int128 b)
{
	int128		r;

	if (__builtin_add_overflow(a, b, &r))
		OutOfRange();
	return r;
}

/* a times 10^k */
static inline int128
Shift(int128 a, int k)
{
	InitPow10();
	if (k < 0 || k > 38)
		OutOfRange();
	return Mul128(a, Pow10[k]);
}

/*
 * Parse a plain decimal string ("-12.500"); false when it is not one.  Zeros
 * at the end of the fraction are not significant: "1." and forty zeros is
 * exactly 1, and is not out of range.
 */
bool
DecFromString(const char *s, Dec *out)
{
	int128		v = 0;
	int			scale = 0;
	bool		neg = false;
	bool		dot = false;
	bool		digits = false;
	int			sig = 0;
	const char *end;

	if (*s == '-' || *s == '+')
		neg = (*s++ == '-');
	end = s + strlen(s);
	{
		const char *point = strchr(s, '.');

		/* the fraction's last zeros, then a point left bare, are not read */
		if (point != NULL)
		{
			while (end > point + 1 && end[-1] == '0')
			{
				end--;
				digits = true;
			}
			if (end == point + 1)
				end--;
			/* more decimal places than kept: that, not out of range, whatever the digits */
			if (end - point - 1 > DEC_MAX_SCALE)
				return false;
		}
	}
	for (; s < end; s++)
	{
		if (*s == '.' && !dot)
		{
			dot = true;
			continue;
		}
		if (*s < '0' || *s > '9')
			return false;
		digits = true;
		if (v != 0 || *s != '0')
			sig++;
		if (sig > 36)
			OutOfRange();
		v = v * 10 + (*s - '0');
		if (dot)
			scale++;
	}
	if (!digits)
		return false;
	/* drop trailing zeros of the fraction: 1.500 is 1.5 */
	while (scale > 0 && v % 10 == 0)
	{
		v /= 10;
		scale--;
	}
	if (scale > DEC_MAX_SCALE)
		return false;
	out->v = neg ? -v : v;
	out->scale = scale;
	return true;
}

/* significant digits of a plain decimal string up to end: from its first non-zero digit */
static int
SignificantDigits(const char *s, const char *end)
{
	int			n = 0;

	for (; s < end; s++)
		if (*s >= '0' && *s <= '9' && (n > 0 || *s != '0'))
			n++;
	return n;
}

/*
 * Does a plain decimal string fit in a Dec: at most 36 significant digits
 * (zeros at the end of its fraction not counted)?  DecFromString is 22003
 * where it does not; a caller that refuses such input as invalid asks first.
 */
bool
DecDigitsFit(const char *s)
{
	const char *point = strchr(s, '.');
	const char *end = s + strlen(s);

	if (point != NULL)
		while (end > point + 1 && end[-1] == '0')
			end--;
	return SignificantDigits(s, end) <= 36;
}

/* a finite numeric as Dec; NaN and infinities are 22023 naming the field */
Dec
DecFromNumeric(Numeric num, const char *field)
{
	char	   *s;
	Dec			d;

	if (numeric_is_nan(num) || numeric_is_inf(num))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a finite number", field)));
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	if (!DecFromString(s, &d))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s has too many decimal places: %s", field, s),
				 errdetail("At most %d decimal places are kept.", DEC_MAX_SCALE)));
	pfree(s);
	return d;
}

/*
 * A running total (a usage counter) as Dec: its finest decimals are dropped,
 * toward zero, where it has more significant digits than a Dec keeps.  A
 * counter that a tiny event once made long (1e-30 plus 10^7) stays readable.
 */
Dec
DecFromTotal(Numeric num, const char *field)
{
	char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	char	   *point = strchr(s, '.');
	size_t		len = strlen(s);

	if (point != NULL)
		while (len > (size_t) (point - s) + 1 && SignificantDigits(s, s + len) > 36)
			s[--len] = '\0';
	return DecFromNumeric(DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
															  ObjectIdGetDatum(InvalidOid),
															  Int32GetDatum(-1))), field);
}

/* decimal digits of |v| */
static int
Digits(int128 v)
{
	int			n = 0;

	if (v < 0)
		v = -v;
	while (v > 0)
	{
		v /= 10;
		n++;
	}
	return n;
}

/*
 * A running total ready to take b: its decimals finer than the sum can keep
 * (36 significant digits) are dropped toward zero, so long as none of b's
 * are.  Exact whenever the exact sum fits; otherwise only dust goes.
 */
Dec
DecTotalFor(Dec total, Dec b)
{
	int			intdigits = Max(Digits(total.v) - total.scale, Digits(b.v) - b.scale) + 1;
	int			room = 36 - Max(intdigits, 1);

	InitPow10();
	if (total.scale > room && room >= b.scale && room >= 0)
	{
		total.v /= Pow10[total.scale - room];
		total.scale = room;
		total = Normalize(total);
	}
	return total;
}

Dec
DecFromInt(int64 v)
{
	Dec			d = {v, 0};

	return d;
}

/* bring a and b to the same scale */
static void
Align(Dec *a, Dec *b)
{
	if (a->scale < b->scale)
	{
		a->v = Shift(a->v, b->scale - a->scale);
		a->scale = b->scale;
	}
	else if (b->scale < a->scale)
	{
		b->v = Shift(b->v, a->scale - b->scale);
		b->scale = a->scale;
	}
}

/* drop trailing zeros so that products keep a small scale */
static Dec
Normalize(Dec d)
{
	while (d.scale > 0 && d.v % 10 == 0)
	{
		d.v /= 10;
		d.scale--;
	}
	return d;
}

static char *DecToString(Dec x);

/*
 * A product is kept exactly, in an int128: at most 38 significant digits
 * (decimal places included).  Only a per_unit price goes on beyond that
 * (DecMulToMinorWide); elsewhere the error names the two factors.
 */
Dec
DecMul(Dec a, Dec b)
{
	Dec			r;

	if (__builtin_mul_overflow(a.v, b.v, &r.v) ||
		(r.scale = a.scale + b.scale, r = Normalize(r), r.scale > 38))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("amount out of range: %s x %s has more than 38 significant digits",
						DecToString(a), DecToString(b)),
				 errdetail("A price multiplies exactly in 128-bit integers: a product (a quantity times a price, with their decimal places) keeps at most 38 digits.")));
	return r;
}

Dec
DecAdd(Dec a, Dec b)
{
	Dec			r;

	Align(&a, &b);
	r.v = Add128(a.v, b.v);
	r.scale = a.scale;
	return Normalize(r);
}

Dec
DecSub(Dec a, Dec b)
{
	b.v = -b.v;
	return DecAdd(a, b);
}

int
DecCmp(Dec a, Dec b)
{
	Align(&a, &b);
	return (a.v > b.v) - (a.v < b.v);
}

Dec
DecMin(Dec a, Dec b)
{
	return DecCmp(a, b) <= 0 ? a : b;
}

Dec
DecMax(Dec a, Dec b)
{
	return DecCmp(a, b) >= 0 ? a : b;
}

/* q / d rounded by mode; d > 0 */
static int128
DivRound(int128 q, int128 d, Rounding rounding)
{
	int128		t = q / d;
	int128		r = q % d;
	bool		neg = q < 0;

	if (r == 0)
		return t;
	if (neg)
		r = -r;
	switch (rounding)
	{
		case ROUND_DOWN:
			return t;
		case ROUND_UP:
			return neg ? t - 1 : t + 1;
		case ROUND_HALF_UP:
			if (r >= d - r)
				return neg ? t - 1 : t + 1;
			return t;
		case ROUND_HALF_EVEN:
			if (r > d - r || (r == d - r && (t % 2) != 0))
				return neg ? t - 1 : t + 1;
			return t;
	}
	return t;
}

/*
 * x / divisor in minor units of an asset with the given scale, rounded once
 * by the rule's rounding, as int128: a price applies min_charge, max_charge
 * and max_per_period to it before it must fit in int64 (MinorFromWide).
 */
int128
DecToMinorWide(Dec x, int64 divisor, int scale, Rounding rounding)
{
	int128		num = x.v;
	int128		den = divisor;

	Assert(divisor > 0);
	if (scale >= x.scale)
		num = Shift(num, scale - x.scale);
	else
		den = Shift(den, x.scale - scale);
	return DivRound(num, den, rounding);
}

/* an amount in minor units that must fit in int64 (22003) */
int64
MinorFromWide(int128 r)
{
	if (r > PG_INT64_MAX || r < PG_INT64_MIN)
		OutOfRange();
	return (int64) r;
}

int64
DecToMinor(Dec x, int64 divisor, int scale, Rounding rounding)
{
	return MinorFromWide(DecToMinorWide(x, divisor, scale, rounding));
}

/*
 * x / d in minor units of an asset with the given scale (d > 0), rounded once:
 * cost_plus divides by the asset's unit_value.
 */
int128
DecDivToMinorWide(Dec x, Dec d, int scale, Rounding rounding)
{
	int128		num = x.v;
	int128		den = d.v;
	int			e = scale + d.scale - x.scale;

	Assert(d.v > 0);
	if (e >= 0)
		num = Shift(num, e);
	else
		den = Shift(den, -e);
	return DivRound(num, den, rounding);
}

int64
DecDivToMinor(Dec x, Dec d, int scale, Rounding rounding)
{
	return MinorFromWide(DecDivToMinorWide(x, d, scale, rounding));
}

/*
 * a x b / divisor in minor units (a, b >= 0), rounded once, as
 * DecToMinorWide(DecMul(a, b), ...) is, also when the product a x b has more
 * significant digits than an int128 keeps (38) but the amount does not: it is
 * then computed in numeric, exactly.  A per_unit price: a quantity of many
 * digits times a unit price of many digits.
 */
int128
DecMulToMinorWide(Dec a, Dec b, int64 divisor, int scale, Rounding rounding)
{
	int128		p;
	Numeric		x;
	Numeric		den;
	Numeric		q;
	Numeric		r2;
	int			c;
	Dec			qd;
	char	   *s;

	Assert(divisor > 0 && a.v >= 0 && b.v >= 0);
	if (!__builtin_mul_overflow(a.v, b.v, &p) && a.scale + b.scale <= 38)
		return DecToMinorWide(DecMul(a, b), divisor, scale, rounding);
	InitPow10();
	/* x = a * b * 10^scale, den = divisor: the amount is x / den */
	x = DatumGetNumeric(DirectFunctionCall2(numeric_mul, NumericGetDatum(DecToNumeric(a)),
											NumericGetDatum(DecToNumeric(b))));
	x = DatumGetNumeric(DirectFunctionCall2(numeric_mul, NumericGetDatum(x),
											NumericGetDatum(DecToNumeric(DecFromInt((int64) Pow10[scale])))));
	den = int64_to_numeric(divisor);
	q = DatumGetNumeric(DirectFunctionCall2(numeric_div_trunc, NumericGetDatum(x), NumericGetDatum(den)));
	/* twice the remainder, against the divisor: where x / den lies between q and q + 1 */
	r2 = DatumGetNumeric(DirectFunctionCall2(numeric_sub, NumericGetDatum(x),
											 DirectFunctionCall2(numeric_mul, NumericGetDatum(q),
																 NumericGetDatum(den))));
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(q)));
	if (SignificantDigits(s, s + strlen(s)) > 36 || !DecFromString(s, &qd) || qd.scale != 0)
		OutOfRange();
	if (numeric_is_nan(r2) || DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(r2),
																 NumericGetDatum(int64_to_numeric(0)))) == 0)
		return qd.v;
	r2 = DatumGetNumeric(DirectFunctionCall2(numeric_add, NumericGetDatum(r2), NumericGetDatum(r2)));
	c = DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(r2), NumericGetDatum(den)));
	switch (rounding)
	{
		case ROUND_DOWN:
			return qd.v;
		case ROUND_UP:
			return qd.v + 1;
		case ROUND_HALF_UP:
			return c >= 0 ? qd.v + 1 : qd.v;
		case ROUND_HALF_EVEN:
			return (c > 0 || (c == 0 && qd.v % 2 != 0)) ? qd.v + 1 : qd.v;
	}
	return qd.v;
}

/* a / b (b > 0) to at most scale decimal places, rounded by mode */
Dec
DecDiv(Dec a, Dec b, int scale, Rounding rounding)
{
	Dec			r;
	int			e = scale + b.scale - a.scale;
	int128		num = a.v;
	int128		den = b.v;

	Assert(b.v > 0);
	if (e >= 0)
		num = Shift(num, e);
	else
		den = Shift(den, -e);
	r.v = DivRound(num, den, rounding);
	r.scale = scale;
	return Normalize(r);
}

/* ceil(a / b) for positive a and b, as a count */
int64
DecCeilDiv(Dec a, Dec b)
{
	int128		r;

	Align(&a, &b);
	r = DivRound(a.v, b.v, ROUND_UP);
	if (r > PG_INT64_MAX)
		OutOfRange();
	return (int64) r;
}

static char *
DecToString(Dec x)
{
	char		digits[48];
	char	   *buf = palloc(64);
	char	   *p = buf;
	int128		v = x.v;
	int			n = 0;

	if (v < 0)
	{
		*p++ = '-';
		v = -v;
	}
	do
	{
		digits[n++] = '0' + (int) (v % 10);
		v /= 10;
	} while (v > 0);
	while (n <= x.scale)
		digits[n++] = '0';
	for (int i = n - 1; i >= 0; i--)
	{
		*p++ = digits[i];
		if (i == x.scale && i > 0)
			*p++ = '.';
	}
	*p = '\0';
	return buf;
}

Numeric
DecToNumeric(Dec x)
{
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(DecToString(x)),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

/*
 * An API amount as minor units of an asset: positive, finite, no more
 * decimals than the scale (WL006), within int64 (22003).
 */
int64
AmountToMinor(Numeric amount, int scale, const char *asset, const char *field)
{
	Dec			d = DecFromNumeric(amount, field);
	int128		v;

	if (d.v <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive: %s", field,
						DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(amount))))));
	if (d.scale > scale)
		ereport(ERROR,
				(errcode(ERRCODE_WALLET_SCALE),
				 errmsg("%s %s has more decimal places than asset \"%s\" keeps", field,
						DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(amount))),
						asset),
				 errdetail("Asset \"%s\" has scale %d.", asset, scale)));
	v = Shift(d.v, scale - d.scale);
	if (v > PG_INT64_MAX)
		OutOfRange();
	return (int64) v;
}

/* minor units as numeric at exactly the asset's scale */
Numeric
MinorToNumeric(int64 minor, int scale)
{
	/* minor / 10^scale at display scale `scale`, without a trip through text */
	return int64_div_fast_to_numeric(minor, scale);
}

int64
AddMinor(int64 a, int64 b)
{
	int64		r;

	if (pg_add_s64_overflow(a, b, &r))
		OutOfRange();
	return r;
}

int64
SubMinor(int64 a, int64 b)
{
	int64		r;

	if (pg_sub_s64_overflow(a, b, &r))
		OutOfRange();
	return r;
}

/*
 * Would taking amount (>= 0) from available leave it below -limit?  When the
 * difference does not fit in int64 it is far below any limit: true, where
 * SubMinor would fail with 22003 (an overdraft limit near 2^63).
 */
bool
BelowFloor(int64 available, int64 amount, int64 limit)
{
	int64		r;

	if (pg_sub_s64_overflow(available, amount, &r))
		return amount > 0;
	return r < -limit;
}

/* wallet._minor(asset, amount, field): for the SQL-side functions */
Datum
wallet_minor(PG_FUNCTION_ARGS)
{
	char	   *field = PG_ARGISNULL(2) ? "amount" : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *code;
	const AssetInfo *asset;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("asset must not be null")));
	code = text_to_cstring(PG_GETARG_TEXT_PP(0));
	asset = AssetLookup(code);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", field)));
	PG_RETURN_INT64(AmountToMinor(PG_GETARG_NUMERIC(1), asset->scale, asset->code, field));
}

/* wallet._major(asset, minor) */
Datum
wallet_major(PG_FUNCTION_ARGS)
{
	const AssetInfo *asset = AssetLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	PG_RETURN_NUMERIC(MinorToNumeric(PG_GETARG_INT64(1), asset->scale));
}
