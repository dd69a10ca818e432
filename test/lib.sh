# shellcheck shell=bash
# Shared helpers for test/run.sh, test/demo.sh and test/scripts/*.sh.
# Source it from bash running with `set -euo pipefail`; defines functions only,
# apart from PATH/env exports and EXIT/INT/TERM traps that stop every cluster
# started here and remove its directory (use at_exit, not trap, for more).
#
#   ensure_deps              install missing Debian packages (root)
#   ensure_packaging_deps    the same for the Debian packaging tools (make deb)
#   build_install            make + make install with PostgreSQL 15's pg_config
#   start_cluster [NAME [POSTGRES ARGS...]]  throwaway cluster; exports NAME_HOST
#                            NAME_PORT NAME_DIR (NAME defaults to pg; args such as
#                            -c max_connections=50 go to postgres); the first one
#                            started in this shell also exports PGHOST PGPORT
#                            PGUSER=postgres PGDATABASE=postgres
#   stop_cluster NAME [MODE] pg_ctl stop (MODE fast|immediate|smart, default fast)
#   restart_cluster NAME [MODE]  stop (if running) and start again, same options
#   at_exit 'CMD'            run CMD at exit, before the clusters are stopped
#   gdb_hold PID BREAK DIR   stop backend PID at gdb breakpoint BREAK until DIR/go
#                            exists (DIR/hit appears when it stops; gdb installed
#                            when missing); sets gdb_pid
#   psql_session             psql reading statements from stdin (for coproc), one
#                            unaligned line per answer, errors as SQLSTATEs
#   read_answer FD           one line a coproc session wrote on FD, or fail after 60 s
#   as_pg CMD...             run CMD as the postgres OS user (when root)
#   make_router ROUTER DB SHARD...  in database DB of cluster ROUTER: wallet_proxy
#                            and its PL/Proxy server wallet_cluster, whose
#                            partitions p0, p1, ... are database DB of the
#                            clusters SHARD... in that order

WALLET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$PGBIN/pg_config
export WALLET_ROOT PGBIN PG_CONFIG
export PATH="$PGBIN:$PATH"

_wl_dirs=()       # temp dirs to remove at exit
_wl_names=()      # clusters started here, in order
_wl_hooks=()      # at_exit commands
declare -gA _wl_opts=()

as_pg() {
  if [[ $EUID -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

_wl_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == *" installed" ]]
}

ensure_deps() {
  local missing=() p log
  for p in postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap \
           libtap-parser-sourcehandler-pgtap-perl postgresql-15-plproxy; do
    _wl_installed "$p" || missing+=("$p")
  done
  if ! [[ -f $("$PG_CONFIG" --pgxs 2>/dev/null) ]] && ! [[ " ${missing[*]} " == *" postgresql-server-dev-15 "* ]]; then
    missing+=(postgresql-server-dev-15)
  fi
  command -v gcc >/dev/null && command -v make >/dev/null || missing+=(build-essential)
  ((${#missing[@]})) || return 0

  if [[ $EUID -ne 0 ]]; then
    echo "ensure_deps: missing ${missing[*]} and not root" >&2
    return 1
  fi
  log=$(mktemp)
  if ! { apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "ensure_deps: could not install ${missing[*]}" >&2
    return 1
  fi
  rm -f "$log"
}

# _wl_apt_install PKG...: apt-get update and install PKG... (root), quietly unless it fails.
_wl_apt_install() {
  local log
  if [[ $EUID -ne 0 ]]; then
    echo "missing $* and not root" >&2
    return 1
  fi
  log=$(mktemp)
  if ! { apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "could not install $*" >&2
    return 1
  fi
  rm -f "$log"
}

# The tools that build the Debian package (make deb: debhelper, pg_buildext's debhelper
# add-on in postgresql-server-dev-all) and the PGXN distribution (jq, the pgxn client);
# installed only when missing.
ensure_packaging_deps() {
  local missing=() p
  for p in debhelper dpkg-dev fakeroot build-essential postgresql-common \
           postgresql-server-dev-all postgresql-server-dev-15 jq pgxnclient; do
    _wl_installed "$p" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  _wl_apt_install "${missing[@]}" || { echo "ensure_packaging_deps: failed" >&2; return 1; }
}

build_install() {
  make -s --no-print-directory -C "$WALLET_ROOT" PG_CONFIG="$PG_CONFIG" &&
    make -s --no-print-directory -C "$WALLET_ROOT" PG_CONFIG="$PG_CONFIG" install >/dev/null
}

_wl_cleanup() {
  local i d
  set +e
  for ((i = ${#_wl_hooks[@]} - 1; i >= 0; i--)); do
    eval "${_wl_hooks[i]}" >/dev/null 2>&1
  done
  for ((i = ${#_wl_names[@]} - 1; i >= 0; i--)); do
    d=${_wl_names[i]}_DIR
    d=${!d}
    [[ -f $d/data/postmaster.pid ]] || continue
    as_pg pg_ctl -D "$d/data" stop -m fast -w -t 20 >/dev/null 2>&1 ||
      as_pg pg_ctl -D "$d/data" stop -m immediate -w -t 20 >/dev/null 2>&1
  done
  for d in "${_wl_dirs[@]}"; do
    rm -rf "$d"
  done
}
trap _wl_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

at_exit() { _wl_hooks+=("$1"); }

psql_session() { psql -X -At -v VERBOSITY=sqlstate 2>&1; }

read_answer() {
  local l
  read -r -t 60 -u "$1" l || { echo "no answer from a session" >&2; return 1; }
  echo "$l"
}

gdb_hold() {
  local pid=$1 brk=$2 dir=$3
  command -v gdb >/dev/null || _wl_apt_install gdb
  gdb -p "$pid" -batch -ex "break $brk" -ex 'continue' \
    -ex "shell touch '$dir/hit'; while [ ! -f '$dir/go' ]; do sleep 0.1; done" \
    -ex 'detach' >"$dir/gdb.log" 2>&1 &
  gdb_pid=$!
  for _ in $(seq 300); do grep -q '^Breakpoint 1 at' "$dir/gdb.log" 2>/dev/null && break; sleep 0.2; done
  grep -q '^Breakpoint 1 at' "$dir/gdb.log" || { echo "gdb did not attach" >&2; cat "$dir/gdb.log" >&2; return 1; }
}

make_router() {
  local router=$1 db=$2 opts= k=0 s h p
  shift 2
  for s; do
    h=${s}_HOST p=${s}_PORT
    opts+="${opts:+, }p$k 'host=${!h} port=${!p} dbname=$db'"
    k=$((k + 1))
  done
  h=${router}_HOST p=${router}_PORT
  psql -X -q -v ON_ERROR_STOP=1 -h "${!h}" -p "${!p}" -U postgres -d "$db" <<SQL
SET client_min_messages = warning;
CREATE EXTENSION wallet_proxy CASCADE;
CREATE SERVER wallet_cluster FOREIGN DATA WRAPPER plproxy OPTIONS ($opts);
CREATE USER MAPPING FOR PUBLIC SERVER wallet_cluster;
SQL
}

_wl_port_free() {
  local p=$1 n v
  for n in "${_wl_names[@]}"; do
    v=${n}_PORT
    [[ ${!v} != "$p" ]] || return 1
  done
  ! [[ -e /tmp/.s.PGSQL.$p.lock || -e /var/run/postgresql/.s.PGSQL.$p.lock ]]
}

_wl_pg_start() {
  local name=$1 dir=$2 port=$3
  if ! as_pg pg_ctl -D "$dir/data" -l "$dir/log" -w -t 60 \
      -o "-k $dir -c listen_addresses='' -p $port ${_wl_opts[$name]}" start >/dev/null; then
    echo "start_cluster $name: server did not start; log:" >&2
    cat "$dir/log" >&2 || true
    return 1
  fi
}

start_cluster() {
  local name=${1:-pg} dir port n
  (($# == 0)) || shift
  [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "start_cluster: bad name '$name'" >&2; return 1; }
  dir=$(mktemp -d /tmp/wallet.XXXXXX)
  _wl_dirs+=("$dir")
  chmod 755 "$dir"
  [[ $EUID -ne 0 ]] || chown postgres: "$dir"

  if ! as_pg initdb -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C \
      >"$dir/initdb.log" 2>&1; then
    echo "start_cluster $name: initdb failed:" >&2
    cat "$dir/initdb.log" >&2
    return 1
  fi

  for ((n = 0; n < 100; n++)); do
    port=$((55432 + RANDOM % 1000))
    ! _wl_port_free "$port" || break
  done
  # Extra arguments are passed to postgres, e.g. -c max_connections=50.
  _wl_opts[$name]="-c fsync=off -c max_prepared_transactions=10 -c shared_preload_libraries='' $*"
  _wl_pg_start "$name" "$dir" "$port" || return 1

  ((${#_wl_names[@]})) || export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
  _wl_names+=("$name")
  declare -gx "${name}_HOST=$dir" "${name}_PORT=$port" "${name}_DIR=$dir"
}

stop_cluster() {
  local d=${1}_DIR
  as_pg pg_ctl -D "${!d}/data" stop -m "${2:-fast}" -w -t 60 >/dev/null
}

restart_cluster() {
  local name=$1 d=${1}_DIR p=${1}_PORT
  if [[ -f ${!d}/data/postmaster.pid ]]; then
    stop_cluster "$name" "${2:-fast}"
  fi
  _wl_pg_start "$name" "${!d}" "${!p}"
}

# callgrind_count DATA DB SQL OUT: the instructions a single-user backend
# (postgres --single, database DB) spends on the statements of the file SQL,
# under valgrind's callgrind, on a fresh copy of the stopped cluster's data
# directory DATA (DATA.run), so that runs of one bench start from one state.
# Less what single-user mode spends printing result rows to its stdout
# (debugStartup, debugtup), which a client's backend does not.  Leaves OUT.out
# (the profile), OUT.log and OUT.err; the caller looks there for errors.
callgrind_count() {
  local data=$1 db=$2 sql=$3 out=$4 total printing
  as_pg rm -rf "$data.run"
  as_pg cp -a "$data" "$data.run"
  as_pg valgrind --tool=callgrind --callgrind-out-file="$out.out" \
    "$PGBIN/postgres" --single -D "$data.run" -c fsync=off "$db" \
    <"$sql" >"$out.log" 2>"$out.err" || return
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$out.out")
  printing=$(callgrind_annotate --inclusive=yes --threshold=100 "$out.out" |
    awk '/:(debugtup|debugStartup) / { gsub(",", "", $1); s += $1 } END { print s + 0 }')
  echo $((total - printing))
}
