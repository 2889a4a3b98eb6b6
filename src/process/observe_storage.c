/*
 * observe_storage.c -- storage figures sampled on a timer; see observe_storage.h.
 *
 * One thread, one PostgreSQL connection of its own (opened on the first sample, opened again after
 * a failure), and a text buffer swapped under a mutex: the scrape never waits for a query. The
 * lake is walked folder by folder (bounded depth); files under hidden folders (uncommitted work,
 * progress files) do not count, only committed Parquet files.
 */
#include "process/observe_storage.h"

#include <dirent.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "core/log.h"
#include "core/timeutil.h"

/* Folder depth of the lake walked (table/day=.../files, with room for more levels). */
#define TC_STORAGE_WALK_DEPTH 8
/* Seconds a connection attempt may take, unless postgres.dsn says otherwise. */
#define TC_STORAGE_CONNECT_TIMEOUT_S "5"
/* A path in the lake. */
#define TC_STORAGE_PATH_MAX 4096

struct tc_storage_sampler {
    const tc_config *cfg;
    PGconn *conn;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    int failing;      /* the last sample failed (logged once per outage) */
    uint64_t errors;  /* failed samples */
    double sampled_s; /* wall time of the last successful sample */
    char *text;       /* the last sample's families (owned) */
};

void tc_observe_printf(tc_jbuf *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        tc_jbuf_append(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void tc_observe_label(tc_jbuf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            tc_jbuf_append(b, "\\", 1);
        if (*v == '\n')
            tc_jbuf_append(b, "\\n", 2);
        else
            tc_jbuf_append(b, v, 1);
    }
}

/* ---- PostgreSQL ---- */

static const char *const tc_storage_tables_sql =
    "SELECT c.relname, CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum("
    "pg_total_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid::regclass) t) "
    "ELSE pg_total_relation_size(c.oid) END::bigint "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1";
/* A hypertable's rows live in chunks of another schema: its size is hypertable_size's. */
static const char *const tc_storage_hypertables_sql =
    "SELECT hypertable_name, hypertable_size(format('%I.%I', hypertable_schema, "
    "hypertable_name)::regclass)::bigint FROM timescaledb_information.hypertables "
    "WHERE hypertable_schema = $1";
static const char *const tc_storage_jobs_sql =
    "SELECT j.job_id, j.proc_name, coalesce(s.total_failures, 0), "
    "coalesce(extract(epoch FROM s.last_successful_finish), 0)::float8, "
    "coalesce(extract(epoch FROM s.next_start), 0)::float8, "
    "CASE WHEN s.last_run_status = 'Failed' THEN 1 ELSE 0 END "
    "FROM timescaledb_information.jobs j LEFT JOIN timescaledb_information.job_stats s "
    "USING (job_id) WHERE j.hypertable_schema = $1 ORDER BY 1";

static PGresult *tc_storage_query(tc_storage_sampler *s, const char *sql, const char *schema)
{
    const char *params[1] = {schema};
    PGresult *r =
        PQexecParams(s->conn, sql, schema ? 1 : 0, NULL, schema ? params : NULL, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Sizes of the schema's tables, its hypertables overriding (same name). */
static int tc_storage_sample_pg(tc_storage_sampler *s, tc_jbuf *b)
{
    const char *schema = s->cfg->pg_schema;
    PGresult *tables, *hyper = NULL, *jobs = NULL, *db, *ext;
    int timescale;

    if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
        PQfinish(s->conn);
        /* A connect timeout unless the DSN has its own (it overrides: expanded after): a
         * sampler stuck connecting would hold up the process' shutdown. */
        static const char *const keys[] = {"connect_timeout", "dbname", NULL};
        const char *values[] = {TC_STORAGE_CONNECT_TIMEOUT_S, s->cfg->pg_dsn, NULL};
        s->conn = PQconnectdbParams(keys, values, 1);
        if (PQstatus(s->conn) != CONNECTION_OK)
            return -1;
        PQclear(PQexec(s->conn, "SET statement_timeout = '10s'"));
    }
    if (!(tables = tc_storage_query(s, tc_storage_tables_sql, schema)))
        return -1;
    if (!(db = tc_storage_query(s, "SELECT pg_database_size(current_database())", NULL))) {
        PQclear(tables);
        return -1;
    }
    ext = tc_storage_query(s, "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'", NULL);
    timescale = ext && PQntuples(ext) > 0;
    PQclear(ext);
    if (timescale) {
        hyper = tc_storage_query(s, tc_storage_hypertables_sql, schema);
        jobs = tc_storage_query(s, tc_storage_jobs_sql, schema);
    }
    tc_observe_printf(b, "# HELP thermocline_postgres_table_size_bytes Bytes of a table of "
                         "postgres.schema, indexes, TOAST, partitions and chunks included.\n"
                         "# TYPE thermocline_postgres_table_size_bytes gauge\n");
    for (int i = 0; i < PQntuples(tables); i++) {
        const char *name = PQgetvalue(tables, i, 0), *bytes = PQgetvalue(tables, i, 1);
        for (int k = 0; hyper && k < PQntuples(hyper); k++)
            if (!strcmp(PQgetvalue(hyper, k, 0), name))
                bytes = PQgetvalue(hyper, k, 1);
        tc_observe_printf(b, "thermocline_postgres_table_size_bytes{table=\"");
        tc_observe_label(b, name);
        tc_observe_printf(b, "\"} %s\n", *bytes ? bytes : "0");
    }
    tc_observe_printf(
        b,
        "# HELP thermocline_postgres_database_size_bytes Bytes of the whole database.\n"
        "# TYPE thermocline_postgres_database_size_bytes gauge\n"
        "thermocline_postgres_database_size_bytes %s\n",
        PQntuples(db) ? PQgetvalue(db, 0, 0) : "0");
    if (jobs) {
        static const char *const fam[4][3] = {
            {"thermocline_timescaledb_job_failures_total", "counter",
             "Failed runs of a TimescaleDB background job of postgres.schema."},
            {"thermocline_timescaledb_job_last_success_timestamp_seconds", "gauge",
             "When the job last finished successfully (0: never)."},
            {"thermocline_timescaledb_job_next_start_timestamp_seconds", "gauge",
             "When the job is due next: far in the past means it is not being run."},
            {"thermocline_timescaledb_job_last_run_failed", "gauge",
             "1 when the job's last run failed."}};
        for (int f = 0; f < 4; f++) {
            tc_observe_printf(b, "# HELP %s %s\n# TYPE %s %s\n", fam[f][0], fam[f][2], fam[f][0],
                              fam[f][1]);
            for (int i = 0; i < PQntuples(jobs); i++) {
                tc_observe_printf(b, "%s{job_id=\"%s\",proc=\"", fam[f][0], PQgetvalue(jobs, i, 0));
                tc_observe_label(b, PQgetvalue(jobs, i, 1));
                tc_observe_printf(b, "\"} %s\n", PQgetvalue(jobs, i, 2 + f));
            }
        }
    }
    PQclear(jobs);
    PQclear(hyper);
    PQclear(db);
    PQclear(tables);
    return 0;
}

/* ---- the lake ---- */

/* Add the committed Parquet files under dir (depth folders deep at most) to *bytes and *files.
 * Hidden entries are skipped: uncommitted work and progress files live in them. */
static void tc_storage_walk(const char *dir, int depth, uint64_t *bytes, uint64_t *files)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char path[TC_STORAGE_PATH_MAX];
        size_t n = strlen(e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' ||
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path) ||
            lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth > 0)
            tc_storage_walk(path, depth - 1, bytes, files);
        else if (S_ISREG(st.st_mode) && n > 8 && !strcmp(e->d_name + n - 8, ".parquet")) {
            *bytes += (uint64_t)st.st_size;
            (*files)++;
        }
    }
    closedir(d);
}

static void tc_storage_sample_lake(tc_storage_sampler *s, tc_jbuf *b)
{
    const char *dir = s->cfg->lake_dir;
    struct statvfs vfs;
    uint64_t bytes = 0, files = 0;

    if (!dir || !*dir)
        return;
    tc_storage_walk(dir, TC_STORAGE_WALK_DEPTH, &bytes, &files);
    tc_observe_printf(b,
                      "# HELP thermocline_lake_bytes Bytes of the lake's committed Parquet files.\n"
                      "# TYPE thermocline_lake_bytes gauge\n"
                      "thermocline_lake_bytes %llu\n"
                      "# HELP thermocline_lake_files Committed Parquet files of the lake.\n"
                      "# TYPE thermocline_lake_files gauge\n"
                      "thermocline_lake_files %llu\n",
                      (unsigned long long)bytes, (unsigned long long)files);
    if (statvfs(dir, &vfs) == 0)
        tc_observe_printf(
            b,
            "# HELP thermocline_lake_filesystem_avail_bytes Bytes free for us on the lake's "
            "filesystem.\n"
            "# TYPE thermocline_lake_filesystem_avail_bytes gauge\n"
            "thermocline_lake_filesystem_avail_bytes %llu\n"
            "# HELP thermocline_lake_filesystem_size_bytes Size of the lake's filesystem.\n"
            "# TYPE thermocline_lake_filesystem_size_bytes gauge\n"
            "thermocline_lake_filesystem_size_bytes %llu\n",
            (unsigned long long)vfs.f_bavail * vfs.f_frsize,
            (unsigned long long)vfs.f_blocks * vfs.f_frsize);
}

/* ---- the thread ---- */

static void tc_storage_sample(tc_storage_sampler *s)
{
    tc_jbuf b;
    char *text;
    int failed;

    tc_jbuf_init(&b, TC_STORAGE_TEXT_MAX);
    failed = tc_storage_sample_pg(s, &b) != 0;
    tc_storage_sample_lake(s, &b);
    text = tc_jbuf_take(&b, NULL);
    tc_jbuf_free(&b);
    if (failed && !s->failing)
        tc_log_warn("observe", "storage figures of /metrics: PostgreSQL: %s",
                    s->conn ? PQerrorMessage(s->conn) : "out of memory");
    pthread_mutex_lock(&s->lock);
    s->failing = failed;
    if (failed) {
        s->errors++;
        free(text); /* the previous figures stay */
    } else if (text) {
        free(s->text);
        s->text = text;
        s->sampled_s = (double)tc_time_now_us() / 1e6;
    }
    pthread_mutex_unlock(&s->lock);
}

static void *tc_storage_main(void *arg)
{
    tc_storage_sampler *s = arg;

    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec ts;
        pthread_mutex_unlock(&s->lock);
        tc_storage_sample(s);
        pthread_mutex_lock(&s->lock);
        ts = tc_time_deadline((long)s->cfg->http_storage_sample_s * 1000);
        while (!s->stop && pthread_cond_timedwait(&s->wake, &s->lock, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

tc_storage_sampler *tc_storage_sampler_new(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    tc_storage_sampler *s = calloc(1, sizeof(*s));

    if (!s) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->cfg = cfg;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->thread, NULL, tc_storage_main, s) != 0) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "cannot start the storage sampling thread");
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }
    return s;
}

void tc_storage_sampler_write(tc_storage_sampler *s, tc_jbuf *b)
{
    pthread_mutex_lock(&s->lock);
    if (s->text)
        tc_jbuf_append(b, s->text, strlen(s->text));
    tc_observe_printf(b,
                      "# HELP thermocline_storage_sample_timestamp_seconds When the storage "
                      "figures were last sampled (0: not yet).\n"
                      "# TYPE thermocline_storage_sample_timestamp_seconds gauge\n"
                      "thermocline_storage_sample_timestamp_seconds %.3f\n"
                      "# HELP thermocline_storage_sample_errors_total Samples of the storage "
                      "figures that failed (the previous figures are shown).\n"
                      "# TYPE thermocline_storage_sample_errors_total counter\n"
                      "thermocline_storage_sample_errors_total %llu\n",
                      s->sampled_s, (unsigned long long)s->errors);
    pthread_mutex_unlock(&s->lock);
}

void tc_storage_sampler_destroy(tc_storage_sampler *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    PQfinish(s->conn);
    free(s->text);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
