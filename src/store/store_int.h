/*
 * store_int.h -- internals shared by the files of the store room (not a public door).
 */
#ifndef TC_STORE_STORE_INT_H
#define TC_STORE_STORE_INT_H

#include <libpq-fe.h>

#include "store/copy.h"
#include "store/rollup.h"
#include "store/store.h"

/* Distinct days a store remembers having partitions for; older entries are simply forgotten. */
#define TC_STORE_DAYS_CACHE 512
/* SQL statements we build are short; the longest is a migration step. */
#define TC_SQL_MAX 8192
/* Identifiers (schema names) after quoting. */
#define TC_IDENT_MAX 130

/* The schema version whose objects the batch write uses beyond step 1: rollups, latest. */
#define TC_STORE_VERSION_ROLLUPS 2

/* Statements prepared once per connection (bits of tc_store.prepared). */
enum {
    TC_PREP_OFFSETS = 1 << 0,
    TC_PREP_ROLLUP_1M = 1 << 1,
    TC_PREP_ROLLUP_1H = 1 << 2,
    TC_PREP_LATEST = 1 << 3,
};

struct tc_store {
    PGconn *conn;
    char *dsn;
    char *group;
    char *rollup_group; /* "<group>/rollups": the deferred rollups' marks in ingest_offsets */
    char *topic;
    char schema[TC_IDENT_MAX]; /* quoted identifier, e.g. "telemetry" */
    char schema_raw[TC_IDENT_MAX];
    int days_ahead;
    int64_t days[TC_STORE_DAYS_CACHE]; /* days (since epoch) with a partition */
    size_t ndays, days_next;
    size_t
        ncolumns; /* dynamic columns of the batch known to exist in readings (schema evolution) */
    tc_copybuf copy;
    uint64_t rows_total, dead_total;
    /* options (defaults applied) */
    char want_mode[8]; /* "auto", "on", "off" */
    int64_t chunk_interval_s, compress_after_s, retention_s;
    int synchronous_commit; /* 1 on, 0 off */
    int rollups;            /* 1 on, 0 off */
    /* what the database says, read at connect and after migrate */
    tc_store_mode mode;
    int version; /* highest applied migration, 0 when none */
    unsigned prepared;
    char sqlstate[6];     /* of the last failure classified */
    int constraint_named; /* ...and whether it named a constraint (a CHECK, not partition routing)
                           */
    /* aggregates pending until tc_store_rollups_flush, and array parameters, reused */
    tc_rollup r1m, r1h, rlatest;
    tc_copybuf params;
};

/*
 * Expand a SQL template into out: "@S" becomes the quoted schema name; "@C", "@Z", "@R" and "@A"
 * become the chunk interval, the compress-after age, the retention age and the continuous
 * aggregates' refresh window, in whole seconds. Returns -1 when out does not fit.
 */
int tc_store_sql(const tc_store *s, const char *tmpl, char *out, size_t cap);

/* Read mode and schema version from the database (tables absent: plain, version 0). */
tc_err tc_store_load_state(tc_store *s, char *errstr, size_t errstr_size);

/* The server's message of res (or of the connection) without its trailing newline. */
const char *tc_store_pgmsg(const tc_store *s, const PGresult *res, char *buf, size_t cap);

/* Forget the days known to have partitions (after retention dropped some). */
void tc_store_forget_days(tc_store *s);

/* Run one statement expecting no rows. Classifies failures (retriable or not). */
tc_err tc_store_exec(tc_store *s, const char *sql, const char *what, char *errstr,
                     size_t errstr_size);

/* Classify the failure of the last command on the connection: DB_CONN or DB. */
tc_err tc_store_classify(tc_store *s, const PGresult *res);

/* Make sure daily partitions exist for days first..last (days since the Unix epoch). */
tc_err tc_store_ensure_days(tc_store *s, int64_t first, int64_t last, char *errstr,
                            size_t errstr_size);

/* Make sure readings has the batch's dynamic metric columns (ALTER TABLE ... ADD COLUMN, online).
 */
tc_err tc_store_ensure_columns(tc_store *s, const tc_batch *b, char *errstr, size_t errstr_size);

#endif
