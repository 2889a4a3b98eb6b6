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
/* Rollup upserts and view definitions name every metric column: the fixed metrics and up to
 * TC_BATCH_DYN_MAX dynamic ones, each name appearing a dozen times (under 1 KiB per metric). */
#define TC_ROLLUP_SQL_MAX (96 * 1024)
/* Longest dynamic metric name that gets rollup columns: "<name>_sum" (and _min, _max, the views'
 * _avg) must fit PostgreSQL's 63-byte identifiers, which it would otherwise truncate -- into one
 * name for all four. Longer metrics stay in readings and the lake only. */
#define TC_ROLLUP_NAME_MAX (TC_BATCH_DYN_NAME_MAX - 4)

/* The advisory lock that serialises the store's DDL between pipelines, migrate and retention. */
#define TC_STORE_LOCK_PARTITIONS "7311002"
/* The run-time DDL functions (ddl.c): metric names per call (a batch has at most
 * TC_BATCH_DYN_MAX), the columns of readings they may grow it to (PostgreSQL's limit is 1,600),
 * how many days after today a partition may start, and how long adding rollup columns waits for
 * the views' lock before it gives up until the next flush. */
#define TC_STORE_DDL_METRICS_MAX         "64"
#define TC_STORE_DDL_COLUMNS_MAX         "1000"
#define TC_STORE_DDL_DAYS_AHEAD_MAX      "800"
#define TC_STORE_ROLLUP_DDL_LOCK_TIMEOUT "2s"
/* How long closing rollup buckets waits for W and H (ddl.c, tc_rollup_materialize). */
#define TC_STORE_CLOSE_LOCK_TIMEOUT "1s"

/* The schema version whose objects the batch write uses beyond step 1: rollups, latest. */
#define TC_STORE_VERSION_ROLLUPS 2
/* The schema version from which the rollup tables hold closed buckets only (rollup_state). */
#define TC_STORE_VERSION_CLOSED_ROLLUPS 5
/* The schema version from which rollup_1m has a partition a day (migrate.c, step 8). */
#define TC_STORE_VERSION_DAILY_ROLLUPS 8

/* The plain-mode rollup tables: table, view over it, name of its prepared upsert and the upsert's
 * bit in tc_store.prepared. */
typedef struct tc_store_rollup_table {
    const char *table, *view, *stmt;
    unsigned prep;
} tc_store_rollup_table;

#define TC_STORE_ROLLUP_TABLES 2
extern const tc_store_rollup_table tc_store_rollup_tables[TC_STORE_ROLLUP_TABLES];

/* Statements prepared once per connection (bits of tc_store.prepared). */
enum {
    TC_PREP_OFFSETS = 1 << 0,
    TC_PREP_ROLLUP_1M = 1 << 1,
    TC_PREP_ROLLUP_1H = 1 << 2,
    TC_PREP_LATEST = 1 << 3,
};

/* How a column of a row type the store sends as records (a rollup table's, latest_state's) is
 * filled from an aggregate group (store.c). */
typedef struct tc_rollup_column {
    uint32_t oid;    /* the column's type */
    uint8_t src;     /* what fills it: TC_RCOL_* (rollups) or TC_LCOL_* (latest state) */
    uint8_t field;   /* of a rollup metric: 0 count, 1 sum, 2 min, 3 max */
    uint16_t metric; /* the fixed metric, or the rollup's dynamic metric */
} tc_rollup_column;

/* A statement that takes an aggregate set as one array of a table's row type (store.c): the row
 * type, how each of its columns is filled, and whether the type changed since it was prepared. */
typedef struct tc_record_stmt {
    uint32_t rowtype;
    tc_rollup_column *cols;
    size_t ncols;
    int stale; /* SQLSTATE 42804 on the last use: read the columns and prepare again */
} tc_record_stmt;

struct tc_store {
    PGconn *conn;
    char *dsn;
    const char *dsn_key; /* the setting of dsn, named by connection errors (static) */
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
    int lock_timeout_ms;    /* > 0: the session's lock_timeout */
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
    /* Per rollup table (tc_store_rollup_tables): how many dynamic metrics of its rollup (the first
     * names of tc_store_rollup_of) are known to have columns in the table and its view, and how
     * many the upsert prepared on this connection names. */
    size_t rollup_columns[TC_STORE_ROLLUP_TABLES];
    size_t rollup_prepared[TC_STORE_ROLLUP_TABLES];
    /* ...and what that statement sends; the same for latest_state's upsert */
    tc_record_stmt rollup_stmt[TC_STORE_ROLLUP_TABLES];
    tc_record_stmt latest_stmt;
    /* Closed buckets: W and H as the flush in progress read them (microseconds; INT64_MAX where
     * the schema keeps every bucket in the tables), and the materialization asked of the next
     * flush. */
    int64_t rollup_below_us[TC_STORE_ROLLUP_TABLES];
    int64_t materialize_after_us; /* < 0: none asked */
};

/* The rollup tables of plain mode and their views, fed by s->r1m and s->r1h. */
static inline tc_rollup *tc_store_rollup_of(tc_store *s, size_t t)
{
    return t == 0 ? &s->r1m : &s->r1h;
}

/* Run a query (a template with @S, at most one text parameter) and copy column col of its first
 * row into out; *found is 0 when there is no row or the value is NULL. */
tc_err tc_store_query_value(tc_store *s, const char *tmpl, const char *param, int col, char *out,
                            size_t cap, int *found, char *errstr, size_t errstr_size);

/* Whether a dynamic metric gets rollup columns (see TC_ROLLUP_NAME_MAX). */
int tc_store_rollup_metric_fits(const char *name);

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

/*
 * Open a transaction and run sql in it ("BEGIN; <sql>"). When sql fails the transaction is rolled
 * back here: BEGIN succeeded, so the connection would otherwise stay in an aborted transaction and
 * every later statement on it -- the retry too -- would fail with "current transaction is aborted".
 */
tc_err tc_store_begin(tc_store *s, const char *sql, const char *what, char *errstr,
                      size_t errstr_size);

/* Roll back the transaction open on the connection, if any: what names it for the log, where a
 * failure to roll back only goes (the error that led here is the one to report). */
void tc_store_rollback(tc_store *s, const char *what);

/* Classify the failure of the last command on the connection: DB_CONN or DB. */
tc_err tc_store_classify(tc_store *s, const PGresult *res);

/* Create or replace the functions through which the pipeline changes the store's shape at run
 * time (ddl.c), as the migrating role, with EXECUTE revoked from PUBLIC; after the migrations. */
tc_err tc_store_ddl_migrate(tc_store *s, char *errstr, size_t errstr_size);

/* Run tmpl (expanded; "SELECT @S.tc_ddl_...($1)"), with param as $1 when not NULL: a call of one
 * of those functions. A function missing or not granted (an old migration, or migrate not run as
 * the owner) gets a sentence saying so; what is "could not <what>: ...". */
tc_err tc_store_ddl_call(tc_store *s, const char *tmpl, const char *param, const char *what,
                         char *errstr, size_t errstr_size);

/* Make sure daily partitions exist for days first..last (days since the Unix epoch). */
tc_err tc_store_ensure_days(tc_store *s, int64_t first, int64_t last, char *errstr,
                            size_t errstr_size);

/* Make sure readings has the batch's dynamic metric columns (ALTER TABLE ... ADD COLUMN, online).
 */
tc_err tc_store_ensure_columns(tc_store *s, const tc_batch *b, char *errstr, size_t errstr_size);

/* Make sure the rollup tables have columns for the dynamic metrics of their rollups, and their
 * views show them (plain mode); in a short transaction of its own, outside the rollups'. */
tc_err tc_store_ensure_rollup_columns(tc_store *s, char *errstr, size_t errstr_size);

/* Parameters of one prepared statement, arrays built in s->params. The widest statement is the
 * offsets' fenced update: group, topic, the partitions, their new offsets, the offsets they move
 * from and the value that says "no row yet"; the rollups and the latest state send one array of
 * records each. */
#define TC_PARAMS_MAX 6

typedef struct tc_params {
    int n;
    size_t start[TC_PARAMS_MAX];
    const char *values[TC_PARAMS_MAX];
    int lengths[TC_PARAMS_MAX];
    int formats[TC_PARAMS_MAX];
} tc_params;

/* Start building the parameters of a statement (s->params is reset). */
void tc_params_reset(tc_store *s, tc_params *p);
/* Start parameter p->n: a binary array of n elements of oid (its elements follow in s->params). */
void tc_params_array(tc_store *s, tc_params *p, uint32_t oid, size_t n, int has_nulls);
/* Parameter p->n: a text value (NULL: SQL NULL). */
void tc_params_text(tc_params *p, const char *text);
/* Resolve the parameters' pointers once the buffer no longer moves; -1 when it failed to grow. */
int tc_params_finish(tc_store *s, tc_params *p);

/* Prepare a statement on this connection unless it already is (bit of s->prepared). */
tc_err tc_store_prepare(tc_store *s, unsigned bit, const char *name, const char *sql, int nparams,
                        const Oid *types, char *errstr, size_t errstr_size);
/* Run a prepared statement that returns no rows; what names it in errstr. */
tc_err tc_store_run_prepared(tc_store *s, const char *name, tc_params *p, const char *what,
                             char *errstr, size_t errstr_size);

/* Move the marks of group's partitions to offsets[0..n), fenced from from[] (store.h; absent: no
 * row stored; from NULL: unconditionally), inside the open transaction. */
tc_err tc_store_write_offsets(tc_store *s, const char *group, const tc_partition_offset *offsets,
                              const int64_t *from, int64_t absent, size_t n, char *errstr,
                              size_t errstr_size);

#endif
