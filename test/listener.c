/*
 * listener.c
 *	  An example auto top-up listener for wallet's outbox (libpq only).
 *
 *	  listener CONNINFO AMOUNT [SECONDS]
 *
 * Runs as a login that is a member of wallet_app and wallet_admin, not as the
 * extension's owner: it reads the outbox only through wallet_outbox_claim.
 * LISTENs on wallet_events.  A notification is only a wake-up (its payload is
 * not read: the outbox table is the truth).  At start, on every notification,
 * and every few seconds in case one was missed, it handles every unacked row
 * it acts on, one transaction per row:
 *
 *	  claim the oldest row (wallet_outbox_claim: SKIP LOCKED, so several
 *	  listeners may run),
 *	  recharge: charge the card for detail.amount with detail.external_ref as
 *	  the payment id (here: pretend), wallet_grant(customer, asset, amount,
 *	  external_ref => that ref);
 *	  low_balance (when AMOUNT is not 0): charge AMOUNT with payment id
 *	  topup-<row id> and grant it the same way;
 *	  wallet_outbox_ack(row id), commit.
 *
 * The payment id is the grant's external_ref, so a listener that dies after
 * the charge and before the commit, and runs the row again, gets the same
 * grant back: the customer is credited once.  (A real payment provider takes
 * the same id as its own idempotency key, so the card is charged once too.)
 * Rows of other kinds (declined, recovered, recharge_limit) are left for
 * other consumers.
 *
 * Prints one line per notification ("notify <payload>") and per grant
 * ("topup outbox=<id> customer=<c> asset=<a> grant=<g>" or "recharge ...").
 * Exits after SECONDS (default: runs until killed).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

#define POLL_SECONDS 5

static PGconn *conn;

/* run a statement that must succeed; exits on failure */
static void
must(const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		fprintf(stderr, "listener: %s: %s", sql, PQerrorMessage(conn));
		exit(1);
	}
	PQclear(res);
}

/*
 * Handle one unacked recharge (or low_balance) row.  Returns 1 if it did, 0
 * if there is none left, -1 on an error (rolled back).
 */
static int
top_up_one(const char *amount)
{
	PGresult   *res;
	char		id[32],
				kind[32],
				customer[300],
				asset[64],
				ref[300],
				charge[64];
	const char *params[4];
	bool		low_balance_too = strcmp(amount, "0") != 0;

	must("BEGIN");
	res = PQexec(conn, low_balance_too ?
				 "SELECT id, kind, customer, asset, detail->>'amount', detail->>'external_ref' "
				 "  FROM wallet_outbox_claim(1, '{recharge,low_balance}')" :
				 "SELECT id, kind, customer, asset, detail->>'amount', detail->>'external_ref' "
				 "  FROM wallet_outbox_claim(1, '{recharge}')");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		goto failed;
	if (PQntuples(res) == 0)
	{
		PQclear(res);
		must("COMMIT");
		return 0;
	}
	snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
	snprintf(kind, sizeof(kind), "%s", PQgetvalue(res, 0, 1));
	snprintf(customer, sizeof(customer), "%s", PQgetvalue(res, 0, 2));
	snprintf(asset, sizeof(asset), "%s", PQgetvalue(res, 0, 3));
	if (strcmp(kind, "recharge") == 0)
	{
		/* the amount that reaches the target, and the payment id the row names */
		snprintf(charge, sizeof(charge), "%s", PQgetvalue(res, 0, 4));
		snprintf(ref, sizeof(ref), "%s", PQgetvalue(res, 0, 5));
	}
	else
	{
		snprintf(charge, sizeof(charge), "%s", amount);
		snprintf(ref, sizeof(ref), "topup-%s", id);
	}
	PQclear(res);

	/* charge the card here, with ref as the payment's idempotency key */

	params[0] = customer;
	params[1] = asset;
	params[2] = charge;
	params[3] = ref;
	res = PQexecParams(conn,
					   "SELECT wallet_grant($1, $2, $3::numeric, external_ref => $4)",
					   4, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		goto failed;
	printf("%s outbox=%s customer=%s asset=%s amount=%s grant=%s\n",
		   strcmp(kind, "recharge") == 0 ? "recharge" : "topup", id, customer, asset, charge,
		   PQgetvalue(res, 0, 0));
	PQclear(res);

	params[0] = id;
	res = PQexecParams(conn, "SELECT wallet_outbox_ack($1::bigint)", 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		goto failed;
	PQclear(res);
	must("COMMIT");
	fflush(stdout);
	return 1;

failed:
	fprintf(stderr, "listener: %s", PQerrorMessage(conn));
	PQclear(res);
	must("ROLLBACK");
	return -1;
}

/* print the notifications that have arrived; returns how many */
static int
drain_notifications(void)
{
	PGnotify   *n;
	int			count = 0;

	while ((n = PQnotifies(conn)) != NULL)
	{
		printf("notify %s\n", n->extra);
		PQfreemem(n);
		count++;
	}
	fflush(stdout);
	return count;
}

int
main(int argc, char **argv)
{
	const char *amount;
	time_t		deadline = 0;

	if (argc < 3 || argc > 4)
	{
		fprintf(stderr, "usage: %s CONNINFO AMOUNT [SECONDS]\n", argv[0]);
		return 2;
	}
	amount = argv[2];
	if (argc == 4)
		deadline = time(NULL) + atoi(argv[3]);

	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "listener: %s", PQerrorMessage(conn));
		return 1;
	}
	must("SET application_name = 'wallet-listener'");
	must("LISTEN wallet_events");
	printf("listening\n");
	fflush(stdout);

	for (;;)
	{
		int			sock = PQsocket(conn);
		fd_set		fds;
		struct timeval tv = {POLL_SECONDS, 0};
		int			rc;

		/* the backlog first: rows written while nobody listened */
		while ((rc = top_up_one(amount)) == 1)
			;
		if (rc < 0)
			sleep(1);			/* do not spin on a failing row */
		if (drain_notifications() > 0)
			continue;			/* arrived while topping up: look again */

		if (deadline)
		{
			time_t		left = deadline - time(NULL);

			if (left <= 0)
				break;
			if (left < tv.tv_sec)
				tv.tv_sec = left;
		}
		FD_ZERO(&fds);
		FD_SET(sock, &fds);
		if (select(sock + 1, &fds, NULL, NULL, &tv) < 0 && errno != EINTR)
		{
			perror("listener: select");
			break;
		}
		if (!PQconsumeInput(conn))
		{
			fprintf(stderr, "listener: %s", PQerrorMessage(conn));
			break;
		}
		drain_notifications();
	}
	PQfinish(conn);
	return 0;
}
