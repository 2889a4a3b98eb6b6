/*
 * store.h -- the operational store: PostgreSQL.
 *
 * The store owns one libpq connection and writes each batch in ONE transaction: the batch's rows
 * (binary COPY into telemetry.readings), its dead letters (binary COPY into telemetry.dead_letters)
 * and, per Kafka partition, the next offset to consume (telemetry.ingest_offsets). Because the
 * offsets commit atomically with the data, the offsets table -- not Kafka's committed offsets -- is
 * the truth about what is stored: after a crash the pipeline resumes exactly where the last
 * committed transaction ended, so no reading is stored twice or lost.
 *
 * Two modes, decided once per schema by `migrate` and recorded in @S.store_mode (docs/store.md):
 * - plain PostgreSQL: readings are partitioned by day on their event time (declarative range
 *   partitioning); the store creates daily partitions ahead of time and on demand for late readings
 *   before the COPY, in their own short transaction under an advisory lock so that concurrent
 *   pipelines do not race on DDL. 1-minute and 1-hour rollups are aggregated in C across batches
 *   and upserted in transactions of their own (see tc_store_rollups_add); retention drops whole
 *   days the lake already holds.
 * - TimescaleDB (where the extension is installed and preloaded): readings is a hypertable with
 *   compression, retention and continuous-aggregate policies that the extension runs itself.
 * In both modes the views @S.readings_1m, @S.readings_1h and @S.latest have the same shape, and the
 * latest reading per device is upserted with the rollups.
 */
#ifndef TC_STORE_STORE_H
#define TC_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/config.h"
#include "core/deadletter.h"
#include "core/error.h"

typedef struct tc_store tc_store;

/* Filled by tc_store_options_from_config: the configuration table holds the defaults, and the
 * store has none of its own. */
typedef struct tc_store_options {
    const char *dsn;     /* libpq connection string */
    const char *dsn_key; /* the setting dsn is, for errors (NULL: postgres.dsn) */
    const char *schema;  /* e.g. "telemetry" */
    const char *group;   /* consumer group the offsets belong to */
    const char *topic;   /* source topic */
    int partition_days_ahead;
    const char *timescaledb;  /* postgres.timescaledb: "auto", "on" or "off" */
    int64_t chunk_interval_s; /* hypertable chunk interval (> 0) */
    int64_t compress_after_s; /* compress chunks older than this (<= 0: never) */
    int64_t retention_s;      /* retention policy in TimescaleDB mode (<= 0: none) */
    int synchronous_commit;   /* postgres.synchronous_commit */
    int rollups;              /* plain-mode rollups */
    int lock_timeout_ms;      /* > 0: lock_timeout of the sessions (store writers, async.h) */
} tc_store_options;

typedef enum tc_store_mode { TC_STORE_PLAIN, TC_STORE_TIMESCALEDB } tc_store_mode;

/* Fill the options from the configuration (the strings stay the configuration's). */
void tc_store_options_from_config(tc_store_options *so, const tc_config *cfg);

/* The same, connecting as the owner role (postgres.owner_dsn) when one is set: for the commands
 * that create, alter, delete or drop (migrate, replay, retention, dlq), which the pipeline's role
 * (postgres.dsn, thermocline_ingest) may not (docs/security.md). */
void tc_store_options_for_owner(tc_store_options *so, const tc_config *cfg);

/* Create a store handle (copies the options; does not connect yet). NULL with errstr naming the
 * setting at fault (postgres.schema, postgres.timescaledb) or saying "out of memory". */
tc_store *tc_store_new(const tc_store_options *opt, char *errstr, size_t errstr_size);
void tc_store_destroy(tc_store *s);

/* Connect if not connected (or reconnect after a loss). TC_ERR_DB_CONN when unreachable. */
tc_err tc_store_connect(tc_store *s, char *errstr, size_t errstr_size);

/* Create or upgrade the database objects; idempotent and safe to run concurrently. */
tc_err tc_store_migrate(tc_store *s, char *errstr, size_t errstr_size);

/* Create the daily partitions covering [now - days_back, now + days_ahead]. */
tc_err tc_store_ensure_partitions_around(tc_store *s, int64_t now_us, int days_back, char *errstr,
                                         size_t errstr_size);

/*
 * Rollups. The 1-minute and 1-hour rollups and the
 * latest state per device cost an upsert per (device, bucket) touched; in each batch's transaction
 * that would be three more writes per device per batch, more than the rows themselves. Instead the
 * caller accumulates the rows of many batches in memory (tc_store_rollups_add) and writes them now
 * and then (tc_store_rollups_flush), in a transaction of their own that also records how far the
 * rollups go per partition: the offsets of group "<group>" TC_STORE_ROLLUP_SUFFIX in
 * ingest_offsets. After a crash the caller reads again from those marks and gives the rollups only
 * the rows they lack (tc_store_load_rollup_offsets), so they stay exactly once.
 */
#define TC_STORE_ROLLUP_SUFFIX "/rollups"

/* Add the rows of b with mask[i] set (mask NULL: all) to the pending aggregates. TC_ERR_NOMEM:
 * the pending aggregates are unusable; clear them and read the rows again from the marks. */
tc_err tc_store_rollups_add(tc_store *s, const tc_batch *b, const uint8_t *mask);
/* Move the pending aggregates of `from` to `to`, which must have none pending (it gets `from`'s
 * empty ones in exchange, memory kept): one store aggregates the next rows while the other writes
 * these (store/async.h). Both stores have the same options. */
void tc_store_rollups_hand_over(tc_store *from, tc_store *to);
/* Groups pending in the largest aggregate: the caller's bound on their memory. */
size_t tc_store_rollups_pending(const tc_store *s);
/* Forget the pending aggregates. */
void tc_store_rollups_clear(tc_store *s);
/* Write the pending aggregates and the rollups' marks (the next offset per partition they cover)
 * in one transaction; clears them on success. Retriable errors keep them for another try. Fenced
 * like tc_store_write: with from set, marks[i] is written only over a stored from[i]
 * (TC_STORE_MARK_ABSENT: none stored), else TC_ERR_FENCED and nothing is written. */
tc_err tc_store_rollups_flush(tc_store *s, const tc_partition_offset *marks, const int64_t *from,
                              size_t nmarks, char *errstr, size_t errstr_size);
/*
 * Closed buckets (plain mode, schema version 5 on). The tables hold the one-minute buckets before a
 * minute W and the one-hour buckets before an hour H only (rollup_state); the views compute the
 * rest from the readings. A flush writes the groups below W (H) -- late readings -- and leaves the
 * others, whose rows the next materialization aggregates from readings once its marks have passed
 * them. tc_store_rollups_materialize_next asks the next successful tc_store_rollups_flush to close
 * the minutes that ended close_after_us ago or more (W and H move on; < 0: not this time), after
 * its commit, in a transaction of its own; a failure there is logged and left to the next time.
 */
void tc_store_rollups_materialize_next(tc_store *s, int64_t close_after_us);
/* The aggregates s fills from now on leave out the readings of minutes from from_1m_us and hours
 * from from_1h_us on (INT64_MAX: none left out): buckets open when the caller last knew W and H.
 * A flush writes those a closing has passed over since from the stored readings of its offset
 * ranges (store/sink_rollup.c has why that is exact). */
void tc_store_rollups_skip(tc_store *s, int64_t from_1m_us, int64_t from_1h_us);
/* W and H as the last flush (or the closing after it) of s read them; INT64_MAX: every bucket is
 * in the tables (or none is to be left out). */
void tc_store_rollups_closed(const tc_store *s, int64_t *w_us, int64_t *h_us);
/* W and H read now (connecting first); INT64_MAX where no bucket may be left out: no rollup
 * tables, a schema before version 5, or one whose functions lack tc_rollup_late. */
tc_err tc_store_rollups_load_closed(tc_store *s, int64_t *w_us, int64_t *h_us, char *errstr,
                                    size_t errstr_size);
/* Nonzero when the last failed write was refused because of some of its rows' values (a data
 * exception or an integrity violation), so that writing the batch without them can succeed. */
int tc_store_refused_rows(const tc_store *s);
/* COPY the rows of b into readings and roll back: TC_OK when PostgreSQL takes them all, else the
 * error of the refusal (tc_store_refused_rows says whether a row caused it). Finds the rows to
 * isolate; b's dynamic columns must exist already (a failed write has made them). */
tc_err tc_store_probe_rows(tc_store *s, const tc_batch *b, char *errstr, size_t errstr_size);

/* tc_store_load_offsets for the rollups' marks, with TC_STORE_MARK_ABSENT where none is stored
 * (-1 is a stored mark: "from the first offset on"). */
#define TC_STORE_MARK_ABSENT (-2)
tc_err tc_store_load_rollup_offsets(tc_store *s, const int32_t *partitions, size_t n, int64_t *next,
                                    char *errstr, size_t errstr_size);
/* Store the rollups' marks alone (autocommit): where no mark is stored yet, the caller records
 * where the rollups stand before it feeds them, so a crash before their first flush is exact. */
tc_err tc_store_save_rollup_offsets(tc_store *s, const tc_partition_offset *marks,
                                    const int64_t *from, size_t n, char *errstr,
                                    size_t errstr_size);

/* Offsets of partition in [from, to) that are dead letters of this topic, ascending, into
 * out[0..cap) (*n: how many; more than cap are cut off). For the dedupe lookback, which must not
 * take a message that was refused for one that was stored. */
tc_err tc_store_dead_offsets(tc_store *s, int32_t partition, int64_t from, int64_t to, int64_t *out,
                             size_t cap, size_t *n, char *errstr, size_t errstr_size);

/* For each of n partitions, the stored next offset, or -1 when nothing is stored yet. */
tc_err tc_store_load_offsets(tc_store *s, const int32_t *partitions, size_t n, int64_t *next,
                             char *errstr, size_t errstr_size);

/* Write rows, dead letters and offsets in one transaction. On a retriable error nothing was
 * written and the caller may call again with the same arguments.
 *
 * Fencing: with from set (noffsets values, the stored next offset each partition's rows start
 * from; -1: nothing stored yet), the offsets move only from there. When another member moved one
 * of them meanwhile (it owns the partition now, or owned it while this one was stalled), the
 * transaction rolls back and TC_ERR_FENCED says which: the caller must not write the batch again,
 * but read the stored offsets anew. from NULL: the offsets are set unconditionally. */
tc_err tc_store_write(tc_store *s, const tc_batch *b, const tc_dlq_batch *dlq,
                      const tc_partition_offset *offsets, const int64_t *from, size_t noffsets,
                      char *errstr, size_t errstr_size);

/* tc_store_write that calls turn(opaque) after the COPYs, before the offsets and the COMMIT, and
 * rolls back (a retriable error) when it returns 0: how writers in parallel commit in order
 * (async.h). turn NULL: tc_store_write. */
tc_err tc_store_write_ordered(tc_store *s, const tc_batch *b, const tc_dlq_batch *dlq,
                              const tc_partition_offset *offsets, const int64_t *from,
                              size_t noffsets, int (*turn)(void *opaque), void *opaque,
                              char *errstr, size_t errstr_size);

/* Rows and dead letters written since tc_store_new (for progress reports). */
void tc_store_totals(const tc_store *s, uint64_t *rows, uint64_t *dead_letters);

/* The schema's mode as last read from the database (by connect or migrate), and its name. */
tc_store_mode tc_store_get_mode(const tc_store *s);
const char *tc_store_mode_name(tc_store_mode mode);

/*
 * Retention in plain mode: detach and drop the daily partitions that end at or before
 * now - max_age (never today's), and the 1-minute rollups of those days. With require_lake, a day
 * is dropped only when the lake holds it: for every Kafka partition of the day's readings, the
 * lake's committed progress (lake_progress: the next offset the lake does not hold) is past the
 * highest offset of those readings. The progress is the lake's own commit point, so nothing has to
 * be written elsewhere for retention to see a commit, and a replay that lowers it makes retention
 * wait for the rewrite. In TimescaleDB mode the retention policy does this and nothing is done.
 */
/* The lake's next offset of a Kafka partition (-1: the lake holds none of it); an error (errstr
 * filled) when it cannot be read, which stops the run before anything is dropped. */
typedef tc_err (*tc_retention_lake_fn)(void *lake_opaque, int32_t partition, int64_t *next,
                                       char *errstr, size_t errstr_size);

typedef enum tc_retention_action {
    TC_RETENTION_DROPPED,    /* detached and dropped */
    TC_RETENTION_WOULD_DROP, /* dry run: would be dropped */
    TC_RETENTION_KEPT_LAKE   /* old enough, but the lake does not hold all its rows yet */
} tc_retention_action;

typedef struct tc_retention_day {
    int64_t day;       /* days since 1970-01-01 */
    const char *table; /* partition name, e.g. readings_p20261028 */
    int64_t rows;      /* rows in the partition, -1 when not counted (require_lake off) */
    int64_t lake_rows; /* of those, rows the lake holds (offset below its progress), -1 not asked */
    tc_retention_action action;
} tc_retention_day;

typedef struct tc_retention_options {
    int64_t now_us;
    int64_t max_age_s; /* > 0 */
    int require_lake;
    tc_retention_lake_fn lake_progress; /* required by require_lake; NULL: the lake holds nothing */
    void *lake_opaque;
    int dry_run;
    void (*on_day)(void *opaque, const tc_retention_day *d); /* each old day, oldest first */
    void *opaque;
} tc_retention_options;

/* Room for the description of the TimescaleDB jobs whose last run failed. */
#define TC_RETENTION_FAILING_MAX 1024

typedef struct tc_retention_result {
    tc_store_mode mode;
    size_t dropped, kept; /* days dropped (or that would be), days kept for the lake */
    char policy[256];     /* TimescaleDB mode: the retention policy job, described */
    /* TimescaleDB mode: the schema's background jobs (policies) whose last run failed, and each
     * described with its error (the scheduler retries a failing job ever less often, so a policy
     * that fails is one that, in effect, no longer runs). */
    size_t failing;
    char failing_jobs[TC_RETENTION_FAILING_MAX];
} tc_retention_result;

tc_err tc_store_retention(tc_store *s, const tc_retention_options *opt, tc_retention_result *res,
                          char *errstr, size_t errstr_size);

#endif
