#!/usr/bin/env bash
# Installing the extension in several databases of one cluster at once (shards,
# parallel test runners): the first installs race to create the roles
# wallet_app, wallet_finance and wallet_admin; every install must succeed.
# Found by make valgrind, whose two suites install at the same time.
set -euo pipefail
source "$WALLET_ROOT/test/lib.sh"
dbs=6
for round in 1 2 3; do
	start_cluster "race$round"
	h=race${round}_HOST p=race${round}_PORT
	export PGHOST=${!h} PGPORT=${!p}
	for i in $(seq 1 $dbs); do createdb "d$i"; done
	pids=()
	for i in $(seq 1 $dbs); do
		psql -X -q -v ON_ERROR_STOP=1 -d "d$i" -c 'CREATE EXTENSION wallet' 2>&1 &
		pids+=($!)
	done
	failed=0
	for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
	roles=$(psql -X -At -d d1 -c "SELECT count(*) FROM pg_roles WHERE rolname IN ('wallet_app', 'wallet_finance', 'wallet_admin')")
	echo "install_race: round $round: $dbs concurrent installs, $failed failed, roles $roles"
	[ "$failed" = 0 ] && [ "$roles" = 3 ] || exit 1
	stop_cluster "race$round"
done
