/*
 * store_int.h -- internals shared by the files of the store room (not a public door).
 */
#ifndef TC_STORE_STORE_INT_H
#define TC_STORE_STORE_INT_H

#include <libpq-fe.h>

#include "store/copy.h"
#include "store/store.h"

/* Distinct days a store remembers having partitions for; older entries are simply forgotten. */
#define TC_STORE_DAYS_CACHE 512
/* SQL statements we build are short; the longest is a migration step. */
#define TC_SQL_MAX 8192
/* Identifiers (schema names) after quoting. */
#define TC_IDENT_MAX 130

struct tc_store {
    PGconn *conn;
    char *dsn;
    char *group;
    char *topic;
    char schema[TC_IDENT_MAX]; /* quoted identifier, e.g. "telemetry" */
    char schema_raw[TC_IDENT_MAX];
    int days_ahead;
    int64_t days[TC_STORE_DAYS_CACHE]; /* days (since epoch) with a partition */
    size_t ndays, days_next;
    tc_copybuf copy;
    uint64_t rows_total, dead_total;
};

/* Substitute every "@S" in tmpl by the quoted schema name. Returns -1 when out does not fit. */
int tc_store_sql(const tc_store *s, const char *tmpl, char *out, size_t cap);

/* Run one statement expecting no rows. Classifies failures (retriable or not). */
tc_err tc_store_exec(tc_store *s, const char *sql, const char *what, char *errstr,
                     size_t errstr_size);

/* Classify the failure of the last command on the connection: DB_CONN or DB. */
tc_err tc_store_classify(tc_store *s, const PGresult *res);

/* Make sure daily partitions exist for days first..last (days since the Unix epoch). */
tc_err tc_store_ensure_days(tc_store *s, int64_t first, int64_t last, char *errstr,
                            size_t errstr_size);

#endif
