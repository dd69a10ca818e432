#!/usr/bin/env bash
# The PGXN distribution: `make dist` zips the committed tree with META.json at its top;
# the pgxn client builds and installs it from that zip (nothing else installed), and
# loads wallet into a database. At exit the install is left as `make install` leaves it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source test/lib.sh

ensure_deps
ensure_packaging_deps
make_q() { make -s --no-print-directory PG_CONFIG="$PG_CONFIG" "$@"; }
pkglib=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension

version=$(jq -r .version META.json)
zip=$(make_q dist | tail -n 1)
[[ $zip == build/wallet-$version.zip && -f $zip ]] || { echo "make dist printed '$zip'"; exit 1; }
listing=$(unzip -Z1 "$zip")
while IFS= read -r f; do
  grep -qxF "wallet-$version/$f" <<<"$listing" || { echo "$zip lacks $f"; exit 1; }
done < <(echo META.json; echo Makefile; echo LICENSE; jq -r '.provides[] | .file, (.docfile // empty)' META.json)
echo "$zip holds META.json, the Makefile, LICENSE and every file META.json provides"

# install with the pgxn client, from the zip alone (the source install removed first)
restored=0
restore_install() {
  ((restored)) && return 0
  build_install
  cmp "$WALLET_ROOT/wallet.control" "$extdir/wallet.control"
  restored=1
}
at_exit restore_install
make_q uninstall >/dev/null
# pgxn refuses to install unless pg_config's libdir is writable; a private PostgreSQL
# copy (PGBIN=/opt/...) may lack that directory, which wallet never uses
libdir=$("$PG_CONFIG" --libdir)
[[ -d $libdir ]] || mkdir -p "$libdir"
log=$(mktemp)
at_exit "rm -f '$log'"
t0=$SECONDS
if ! pgxn install --yes --nosudo --make make --pg_config "$PG_CONFIG" "./$zip" >"$log" 2>&1; then
  cat "$log"
  echo "pgxn install failed"
  exit 1
fi
echo "pgxn install built and installed $zip in $((SECONDS - t0)) s"
for f in "$pkglib/wallet.so" "$extdir/wallet.control" "$extdir/wallet--1.0.sql" \
         "$extdir/wallet--1.0--1.1.sql" "$extdir/wallet_proxy.control" "$extdir/wallet_proxy--1.0.sql" \
         "$extdir/wallet_proxy--1.0--1.1.sql"; do
  [[ -f $f ]] || { echo "pgxn install did not install $f"; exit 1; }
done

start_cluster pg
if ! pgxn load --yes -d postgres --pg_config "$PG_CONFIG" "./$zip" wallet >"$log" 2>&1; then
  cat "$log"
  echo "pgxn load failed"
  exit 1
fi
v=$(psql -X -At -c "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'wallet'")
[[ $v == 1.1 ]] || { echo "pgxn load installed wallet '$v', expected 1.1"; exit 1; }
# the C library built by pgxn answers on the hot path
r=$(psql -X -q -v ON_ERROR_STOP=1 -At <<'SQL'
SELECT wallet_create_asset('credits', 0, 0.01, 'credits') IS NOT NULL;
SELECT wallet_create('pgxn') IS NOT NULL;
SELECT wallet_grant('pgxn', 'credits', 100, external_ref => 'pgxn-pay-1') IS NOT NULL;
SELECT wallet_set_price('chat.response', 'credits', '{"model": "per_unit", "unit_price": "12"}') IS NOT NULL;
SELECT approved, amount, balance FROM wallet_authorize_debit('pgxn', 'chat.response', 1, 'pgxn-req-1');
SQL
)
[[ $(tail -n 1 <<<"$r") == 't|12|88' ]] || { printf 'debit after pgxn load:\n%s\n' "$r"; exit 1; }
echo "pgxn load created wallet 1.1; a debit of 12 left a balance of 88"

restore_install
echo "install restored from the source tree"
