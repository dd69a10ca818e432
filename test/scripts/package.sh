#!/usr/bin/env bash
# The Debian package: `make deb` builds postgresql-15-wallet; its extension files are the
# tree's; installed, wallet and wallet_proxy are created from it and `make installcheck`
# passes against it.
#
# With the system PostgreSQL (PGBIN unset, as in CI) the package is installed with
# dpkg -i. With a private copy (PGBIN=/opt/...), whose server never reads the system's
# files, the package's files are unpacked into that copy instead (dpkg would install
# them where that server does not look). Either way the source install is removed first
# (so only the package's files are there) and at exit the install is left as `make
# install` leaves it (dpkg --purge, then build_install), since later suites use it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source test/lib.sh

ensure_deps
pkg=postgresql-15-wallet
pkglib=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension
if [[ $(realpath "$PGBIN") == "$(realpath /usr/lib/postgresql/15/bin)" ]]; then
  mode=dpkg
else
  mode=unpack
fi
make_q() { make -s --no-print-directory PG_CONFIG="$PG_CONFIG" "$@"; }

# -- build
t0=$SECONDS
deb=$(make_q deb | tail -n 1)
echo "make deb built $deb in $((SECONDS - t0)) s"
[[ $deb == *.deb && -f $deb ]] || { echo "make deb printed no .deb path"; exit 1; }

# -- contents: exactly the tree's extension files, and the library
pkgdir=$(mktemp -d)
at_exit "rm -rf '$pkgdir' '$pkgdir.log'"
dpkg-deb -x "$deb" "$pkgdir"
expected=(wallet.control wallet--1.0.sql wallet--1.0--1.1.sql
          src/proxy/wallet_proxy.control src/proxy/wallet_proxy--1.0.sql src/proxy/wallet_proxy--1.0--1.1.sql)
got=$(find "$pkgdir/usr/share/postgresql/15/extension" -type f -printf '%f\n' | sort)
want=$(printf '%s\n' "${expected[@]##*/}" | sort)
[[ $got == "$want" ]] || { printf 'package extension files:\n%s\nexpected:\n%s\n' "$got" "$want"; exit 1; }
for f in "${expected[@]}"; do
  cmp "$f" "$pkgdir/usr/share/postgresql/15/extension/${f##*/}"
done
[[ -f $pkgdir/usr/lib/postgresql/15/lib/wallet.so ]] || { echo "no wallet.so in the package"; exit 1; }
dpkg-deb -f "$deb" Depends | grep -q 'postgresql-15' || { echo "the package does not depend on postgresql-15"; exit 1; }
cmp debian/copyright "$pkgdir/usr/share/doc/$pkg/copyright" || { echo "the package's copyright is not debian/copyright"; exit 1; }
echo "package contents: wallet.so and ${#expected[@]} extension files, identical to the tree's, and the license (copyright)"

# -- install (only the package's files: the source install is removed first)
restored=0
restore_install() {
  ((restored)) && return 0
  if [[ $mode == dpkg ]]; then
    dpkg --purge "$pkg" >/dev/null 2>&1
  fi
  build_install
  cmp "$WALLET_ROOT/wallet.control" "$extdir/wallet.control"
  [[ -f $pkglib/wallet.so ]]
  restored=1
}
at_exit restore_install
make_q uninstall >/dev/null
if [[ $mode == dpkg ]]; then
  dpkg -i "$deb" >"$pkgdir.log" 2>&1 || { cat "$pkgdir.log"; exit 1; }
  [[ $(dpkg-query -W -f='${Status}' "$pkg") == "install ok installed" ]]
  dpkg --verify "$pkg"
  dpkg -S "$pkglib/wallet.so" | grep -q "^$pkg:"
  echo "installed $pkg with dpkg -i"
else
  cp -R "$pkgdir/usr/lib/postgresql/15/lib/." "$pkglib/"
  cp -R "$pkgdir/usr/share/postgresql/15/extension/." "$extdir/"
  echo "unpacked $pkg into the private PostgreSQL at $pkglib"
fi
cmp "$pkgdir/usr/lib/postgresql/15/lib/wallet.so" "$pkglib/wallet.so"

# -- the installed package works
start_cluster pg
v=$(psql -X -q -v ON_ERROR_STOP=1 -At -c 'CREATE EXTENSION wallet' \
      -c "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'wallet'")
[[ $v == 1.1 ]] || { echo "CREATE EXTENSION wallet installed version '$v', expected 1.1"; exit 1; }
createdb router
v=$(psql -X -q -v ON_ERROR_STOP=1 -At -d router -c 'SET client_min_messages = warning' \
      -c 'CREATE EXTENSION wallet_proxy CASCADE' \
      -c "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'wallet_proxy'")
[[ $v == 1.1 ]] || { echo "CREATE EXTENSION wallet_proxy installed version '$v', expected 1.1"; exit 1; }
echo "CREATE EXTENSION wallet (1.1) and wallet_proxy (1.1) from the package"

# make installcheck in a copy of the tree (its results/ stay out of the way)
src=$(mktemp -d)
at_exit "rm -rf '$src'"
tar --exclude=./.git --exclude=./build --exclude=./results --exclude=./output_iso -cf - . |
  tar -C "$src" -xf -
t0=$SECONDS
if ! make -s --no-print-directory -C "$src" PG_CONFIG="$PG_CONFIG" installcheck >"$src/installcheck.log" 2>&1; then
  cat "$src/installcheck.log"
  for d in "$src/regression.diffs" "$src/output_iso/regression.diffs"; do
    [[ ! -s $d ]] || head -n 200 "$d"
  done
  echo "make installcheck failed against the installed package"
  exit 1
fi
grep -cE '\.\.\. +ok' "$src/installcheck.log" | sed 's/$/ installcheck tests passed/'
echo "make installcheck passed against the package in $((SECONDS - t0)) s"

# -- back to the source install
restore_install
echo "install restored from the source tree"
