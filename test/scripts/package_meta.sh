#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317  # jq's $semver in single quotes; jqt runs through check
# META.json is a PGXN distribution's metadata (meta-spec 1.0.0): valid JSON with the
# fields PGXN requires; its versions agree with wallet.control, wallet_proxy.control and
# debian/changelog; every file it names is in the tree; LICENSE is the PostgreSQL License of
# debian/copyright.
set -euo pipefail
# shellcheck disable=SC2016,SC2317  # jq's \$semver in single quotes; jqt runs through check
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
command -v jq >/dev/null || { source test/lib.sh && ensure_packaging_deps; }

fail=0
check() {  # check DESCRIPTION CMD...: run CMD, report
  if "${@:2}"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi
}
semver='^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+)?$'
jqt() { jq -e --arg semver "$semver" "$1" META.json >/dev/null; }  # a jq filter is true
# default_version of a control file, as a semantic version ('1.1' -> 1.1.0)
control_version() {
  local v
  v=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" "$1")
  [[ $v == *.*.* ]] || v=$v.0
  echo "$v"
}

jq empty META.json || { echo "FAILED: META.json is not valid JSON"; exit 1; }
echo "ok: META.json is valid JSON"
for f in name abstract version maintainer license provides meta-spec; do
  check "required field $f" jqt "has(\"$f\")"
done
check 'meta-spec version 1.0.0' jqt '."meta-spec".version == "1.0.0"'
check 'name is wallet' jqt '.name == "wallet"'
check 'abstract is a non-empty string' jqt '.abstract | type == "string" and length > 0'
check 'maintainer is a string or a list of strings' \
  jqt '.maintainer | (type == "string") or (type == "array" and length > 0 and all(type == "string"))'
check 'license is postgresql' jqt '.license == "postgresql"'
check 'version is a semantic version' jqt '.version | test($semver)'
check 'provides wallet and wallet_proxy' jqt '.provides | keys == ["wallet", "wallet_proxy"]'
check 'each provided extension has a file and a semantic version' \
  jqt '[.provides[] | (.file | type == "string") and (.version | test($semver))] | all'
check 'PostgreSQL 15 is a runtime prerequisite' \
  jqt '.prereqs.runtime.requires.PostgreSQL | test(">= *15\\.0\\.0")'
check 'release_status is stable, testing or unstable' \
  jqt '(.release_status // "stable") | IN("stable", "testing", "unstable")'

while IFS= read -r f; do
  check "provided file $f exists" test -f "$f"
done < <(jq -r '.provides[] | .file, (.docfile // empty)' META.json)

version=$(jq -r .version META.json)
check "version $version is wallet.control's default_version" \
  test "$version" = "$(control_version wallet.control)"
check "provides.wallet.version is $version" jqt ".provides.wallet.version == \"$version\""
check "provides.wallet_proxy.version is wallet_proxy.control's default_version" \
  jqt ".provides.wallet_proxy.version == \"$(control_version src/proxy/wallet_proxy.control)\""
deb_version=$(sed -n '1s/^wallet (\([^)-]*\)-[^)]*).*/\1/p' debian/changelog)
check "debian/changelog's upstream version ($deb_version) is $version" test "$deb_version" = "$version"

# LICENSE: the PostgreSQL License, the same text and holder as debian/copyright
license_body() {  # the permission and disclaimer paragraphs of debian/copyright
  awk '/^License: PostgreSQL$/ { on = 1; next } on && /^ / { l = substr($0, 2); print (l == "." ? "" : l); next }
       on { exit }' debian/copyright
}
check 'LICENSE exists' test -f LICENSE
check 'LICENSE is the PostgreSQL License' grep -qx 'PostgreSQL License' LICENSE
holder=$(sed -n 's/^Copyright: *//p' debian/copyright)
check "LICENSE names debian/copyright's holder ($holder)" grep -qF "Copyright (c) ${holder/ /, }" LICENSE
check 'LICENSE has the text of debian/copyright' \
  diff <(license_body) <(sed -n '/^Permission to use/,$p' LICENSE)

exit "$fail"
