/*
 * tc_quality_migrate.c -- run the quality monitor's migration (quality/quality_sql.h) against a
 * real PostgreSQL, for tests/integration/test_quality.py: until the store calls it itself, this
 * is how the tests check that the DDL is valid and idempotent on the server.
 *
 *   tc_quality_migrate DSN SCHEMA [timescaledb]
 *
 * Creates SCHEMA (and with "timescaledb" the extension) if needed, runs tc_quality_migrate twice
 * (the second time must be a no-op that succeeds), prints "ok" and exits 0; on failure prints the
 * error and exits 1.
 */
#include <stdio.h>
#include <string.h>
#include <libpq-fe.h>

#include "quality/quality_sql.h"

int main(int argc, char **argv)
{
    char errstr[TC_ERRSTR_MAX], sql[600];
    PGconn *conn;
    PGresult *res;
    char *quoted;
    int ts = argc > 3 && !strcmp(argv[3], "timescaledb"), rc = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: tc_quality_migrate DSN SCHEMA [timescaledb]\n");
        return 2;
    }
    conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }
    quoted = PQescapeIdentifier(conn, argv[2], strlen(argv[2]));
    if (!quoted || strlen(quoted) > 256) {
        fprintf(stderr, "bad schema name\n");
        PQfreemem(quoted);
        PQfinish(conn);
        return 1;
    }
    snprintf(sql, sizeof(sql), "CREATE SCHEMA IF NOT EXISTS %s;%s", quoted,
             ts ? "CREATE EXTENSION IF NOT EXISTS timescaledb" : "");
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "create schema: %s", PQresultErrorMessage(res));
        rc = 1;
    }
    PQclear(res);
    for (int i = 0; i < 2 && !rc; i++)
        if (tc_quality_migrate(conn, quoted, ts, errstr, sizeof(errstr)) != TC_OK) {
            fprintf(stderr, "run %d: %s\n", i + 1, errstr);
            rc = 1;
        }
    if (!rc)
        printf("ok\n");
    PQfreemem(quoted);
    PQfinish(conn);
    return rc;
}
