#!/usr/bin/env bash
# make deb: build the Debian package postgresql-15-wallet (debian/, pg_buildext) from a
# clean copy of this tree, in DEB_DIR (default build/deb, kept out of git). Installs the
# packaging tools first when missing (root). The last line printed is the .deb's path.
#   DEB_BUILD_OPTIONS  passed to dpkg-buildpackage; default "nocheck": the package's own
#                      installcheck is test/scripts/package.sh, against the installed .deb
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source test/lib.sh

ensure_packaging_deps

out=$(realpath -m "${DEB_DIR:-build/deb}")
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
stage=$out/wallet-${version%-*}
rm -rf "$stage"
mkdir -p "$stage"
at_exit "rm -rf '$stage'"

# The sources: in a git checkout the files git tracks or would (not the ignored build
# artefacts); otherwise everything but the build directory.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -C "$stage" -xf -
else
  tar --exclude=./build --exclude-vcs -cf - . | tar -C "$stage" -xf -
fi

opts=${DEB_BUILD_OPTIONS-nocheck}
profiles=()
[[ " $opts " != *" nocheck "* ]] || profiles=(--build-profiles=nocheck)
log=$out/build.log
echo "make deb: building in $stage (log: $log)" >&2
if ! (cd "$stage" && DEB_BUILD_OPTIONS=$opts dpkg-buildpackage -us -uc -b -jauto "${profiles[@]}") >"$log" 2>&1; then
  tail -n 60 "$log" >&2
  echo "make deb: dpkg-buildpackage failed" >&2
  exit 1
fi
deb=$out/postgresql-15-wallet_${version}_$arch.deb
[[ -f $deb ]] || { echo "make deb: $deb was not built" >&2; exit 1; }
echo "$deb"
