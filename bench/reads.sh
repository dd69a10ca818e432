#!/usr/bin/env bash
# bench/reads.sh: what a billing page's reads cost at two history sizes.  Run
# by hand (not part of make test):
#
#   PGBIN=/usr/lib/postgresql/15/bin bash bench/reads.sh [REPEATS]
#   SIZES="1000 1000000" picks the histories (events per wallet).
#
# Builds and installs this tree, starts a throwaway cluster and gives one
# wallet per size a history of that many debits spread over the last 30 days
# (set-based INSERTs of what the hot path writes: a single-source debit whose
# ledger line is carried on its event row, a few models, 1% refunded through
# wallet_refund).  Then times, per wallet, the median of REPEATS calls
# (default 7) of:
#   page first   wallet_statement(max_lines => 50) from the start
#   page middle  the 50 lines after the middle of the history
#   page last    the last 50 lines
#   usage month  wallet_usage(since => now() - 30 days, bucket => 'day',
#                group_by => 'model')
# and, once before, the first call of each, which writes the reads' caches
# (statement marks, usage per hour and day) for the history that predates them: a
# database upgraded from 1.0 pays that once per wallet.  Prints milliseconds
# and the ratio of the largest history to the smallest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source test/lib.sh

repeats=${1:-7}
sizes=${SIZES:-1000 1000000}

echo "== build and install into $PGBIN"
build_install >/dev/null
start_cluster bench -c shared_buffers=256MB -c work_mem=64MB
createdb reads
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d reads "$@"; }

q <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wallet;
SELECT wallet_create_asset('bc', 0, 0.01);
SELECT wallet_set_price('llm', 'bc', '{"model": "per_unit", "unit_price": "1"}', now() - interval '40 days');

/* a wallet of n debits over the last 30 days, as the hot path writes them */
CREATE FUNCTION public.bench_history(cust text, n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	w bigint := wallet_create(cust);
	g bigint;
	total bigint := 5000000000;
	t0 timestamptz := now() - interval '30 days';
BEGIN
	INSERT INTO wallet.account (wallet_id, asset) VALUES (w, 'bc');
	INSERT INTO wallet.grant_block (wallet_id, asset, category, priority, amount, remaining,
		unit_revenue, effective_at)
	VALUES (w, 'bc', 'paid', 100, total, total, 0.01, t0 - interval '1 hour') RETURNING id INTO g;
	INSERT INTO wallet.line_stored (at, wallet_id, asset, grant_id, kind, amount)
	VALUES (t0 - interval '1 hour', w, 'bc', g, 'grant', total);
	INSERT INTO wallet.event (wallet_id, occurred_at, recorded_at, amount, price_id, balance_after,
		line_id, line_grant_id, idempotency_key, meter, asset, quantity, revenue, dimensions)
	SELECT w, x.at, x.at, x.amt, 1, total - x.spent, nextval('wallet.line_id_seq'), g,
		   cust || '-' || x.i, 'llm', 'bc', x.amt, x.amt * 0.01,
		   jsonb_build_object('model', 'm' || x.i % 4, 'user', 'u' || x.i % 10)
	  FROM (SELECT i, t0 + (interval '30 days' - interval '1 minute') * i / n AS at, 1 + i % 5 AS amt,
				   sum(1 + i % 5) OVER (ORDER BY i) AS spent
			  FROM generate_series(1, n) i) x
	 ORDER BY x.i;
	UPDATE wallet.grant_block SET remaining = total - (SELECT sum(amount) FROM wallet.event WHERE wallet_id = w)
	 WHERE id = g;
	/* 1% refunded, through the function, each a minute after its event */
	PERFORM wallet_refund(e.id) FROM wallet.event e WHERE e.wallet_id = w AND e.id % 100 = 7;
	ALTER TABLE wallet.refund DISABLE TRIGGER refund_append_only;
	ALTER TABLE wallet.line_stored DISABLE TRIGGER line_append_only;
	UPDATE wallet.refund r SET at = e.recorded_at + interval '1 minute'
	  FROM wallet.event e WHERE e.id = r.event_id AND r.wallet_id = w;
	UPDATE wallet.line_stored l SET at = e.recorded_at + interval '1 minute'
	  FROM wallet.event e WHERE e.id = l.event_id AND l.wallet_id = w AND l.kind = 'refund';
	ALTER TABLE wallet.refund ENABLE TRIGGER refund_append_only;
	ALTER TABLE wallet.line_stored ENABLE TRIGGER line_append_only;
END
$$;
SQL
for n in $sizes; do
  echo "== history of $n events"
  q -c "SELECT public.bench_history('w$n', $n)" >/dev/null
done
q -c "VACUUM ANALYZE" -c "SELECT count(*) || ' problems' FROM wallet_verify()"

# time SQL: milliseconds of one call (a psql session per call, as a page load)
ms() {
  q <<SQL | tail -1
SELECT clock_timestamp() AS t0 \\gset
$1;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 2);
SQL
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -A res=()
for n in $sizes; do
  c=w$n
  mid=$(q -c "SELECT e.line_id FROM wallet.event e JOIN wallet.wallet w ON w.id = e.wallet_id
              WHERE w.customer = '$c' ORDER BY e.recorded_at, e.line_id OFFSET $((n / 2)) LIMIT 1")
  last=$(q -c "SELECT e.line_id FROM wallet.event e JOIN wallet.wallet w ON w.id = e.wallet_id
               WHERE w.customer = '$c' ORDER BY e.recorded_at DESC, e.line_id DESC OFFSET 50 LIMIT 1")
  declare -A sql=(
    [first]="SELECT count(*) FROM wallet_statement('$c', max_lines => 50)"
    [middle]="SELECT count(*) FROM wallet_statement('$c', after_line => $mid, max_lines => 50)"
    [last]="SELECT count(*) FROM wallet_statement('$c', after_line => $last, max_lines => 50)"
    [usage]="SELECT count(*) FROM wallet_usage('$c', now() - interval '30 days', now(), 'day', 'model')"
  )
  for k in first middle last usage; do
    res[cold,$k,$n]=$(ms "${sql[$k]}")
    res[$k,$n]=$(for ((i = 0; i < repeats; i++)); do ms "${sql[$k]}"; done | median)
  done
  lines=$(q -c "SELECT count(*) FROM wallet_statement('$c', after_line => $last, max_lines => 50) WHERE line_id IS NOT NULL")
  rows=$(q -c "SELECT count(*) FROM wallet_usage('$c', now() - interval '30 days', now(), 'day', 'model')")
  echo "w$n: a page has $lines lines, the month $rows usage rows"
done

echo
echo "== milliseconds, median of $repeats (first call, which writes the caches, in brackets)"
printf '%-14s' "events"
for n in $sizes; do printf '%22s' "$n"; done
printf '%10s\n' "ratio"
set -- $sizes
lo=$1 hi=${!#}
for k in first middle last usage; do
  printf '%-14s' "$( [[ $k == usage ]] && echo "usage month" || echo "page $k")"
  for n in $sizes; do printf '%22s' "${res[$k,$n]} (${res[cold,$k,$n]})"; done
  awk -v a="${res[$k,$hi]}" -v b="${res[$k,$lo]}" 'BEGIN { printf "%10.2f\n", (b > 0 ? a / b : 0) }'
done
q -c "SELECT 'bytes per event: heap ' || pg_relation_size('wallet.event') / count(*) ||
              ', event_wallet_recorded ' || pg_relation_size('wallet.event_wallet_recorded') / count(*) ||
              ', event_line ' || pg_relation_size('wallet.event_line') / count(*) ||
              ', all indexes ' || pg_indexes_size('wallet.event') / count(*) FROM wallet.event"
q -c "SELECT 'cache rows: statement marks ' || (SELECT count(*) FROM wallet.statement_mark) ||
              ', usage sums ' || (SELECT count(*) FROM wallet.usage_sum)"
