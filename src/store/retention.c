/*
 * retention.c -- dropping old days in plain mode; see tc_store_retention in store.h.
 *
 * A day's partition goes when it ends at or before now - max_age (and is not today's), and, when
 * the lake is required, when the lake's progress of every Kafka partition in it is past the
 * highest offset of its readings there (one GROUP BY over the day; the lake's progress comes from
 * the caller, so the store knows nothing of the lake's files). The counts are taken without
 * blocking writers; the drop itself (DETACH, DROP, and the
 * day's 1-minute rollups) is one short transaction under the partitions' advisory lock with a lock
 * timeout. A late reading for that day validated meanwhile finds no partition: the store then
 * forgets its partition cache and retries, which creates the partition again, so nothing is lost.
 * With the default settings (retention = validation.max_age_s) no reading for such a day is even
 * accepted any more.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"

#define TC_LOCK_PARTITIONS TC_STORE_LOCK_PARTITIONS

/* Old partitions a single run looks at; more are handled by the next run. */
#define TC_RETENTION_DAYS_MAX 4096

static int tc_retention_day_of_name(const char *name, int64_t *day)
{
    unsigned y, m, d;
    char tail;

    if (strlen(name) != 18 || strncmp(name, "readings_p", 10) != 0)
        return -1;
    if (sscanf(name + 10, "%4u%2u%2u%c", &y, &m, &d, &tail) != 3 || m < 1 || m > 12 || d < 1 ||
        d > 31)
        return -1;
    *day = tc_time_days_from_civil((int)y, m, d);
    return 0;
}

static int tc_retention_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* One int64 from a query with at most one text parameter. */
static tc_err tc_retention_count(tc_store *s, const char *sql, const char *param, int64_t *out,
                                 char *errstr, size_t errstr_size)
{
    char msg[TC_ERRSTR_MAX];
    PGresult *res =
        PQexecParams(s->conn, sql, param ? 1 : 0, NULL, param ? &param : NULL, NULL, NULL, 0);
    tc_err err = TC_OK;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not count rows: %s",
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
    } else {
        *out = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    return err;
}

/* The partitions of readings that end at or before cutoff_day (exclusive bound), oldest first. */
static tc_err tc_retention_candidates(tc_store *s, int64_t cutoff_day, int64_t *days, size_t *n,
                                      char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX];
    const char *param = s->schema_raw;
    PGresult *res;
    int64_t day;

    *n = 0;
    if (tc_store_sql(s,
                     "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                     " JOIN pg_class p ON p.oid = i.inhparent"
                     " JOIN pg_namespace ns ON ns.oid = p.relnamespace"
                     " WHERE ns.nspname = $1 AND p.relname = 'readings'",
                     sql, sizeof(sql)) < 0)
        return TC_ERR_INVALID;
    res = PQexecParams(s->conn, sql, 1, NULL, &param, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        tc_err err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not list partitions: %s",
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
        PQclear(res);
        return err;
    }
    for (int r = 0; r < PQntuples(res) && *n < TC_RETENTION_DAYS_MAX; r++) {
        if (tc_retention_day_of_name(PQgetvalue(res, r, 0), &day) == 0 && day + 1 <= cutoff_day)
            days[(*n)++] = day;
    }
    PQclear(res);
    qsort(days, *n, sizeof(*days), tc_retention_cmp);
    return TC_OK;
}

static void tc_retention_day_text(int64_t day, char *out, size_t cap, int compact)
{
    unsigned m, d;
    int y;

    tc_time_civil_from_days(day, &y, &m, &d);
    snprintf(out, cap, compact ? "%04d%02u%02u" : "%04d-%02u-%02u", y, m, d);
}

/* Detach and drop one day's partition and its 1-minute rollups, in one transaction: the day's
 * partition of rollup_1m dropped, and what rollup_1m_before holds of the day deleted (nothing
 * once the day is past days_1m_from: the statement prunes it away). */
static tc_err tc_retention_drop(tc_store *s, int64_t day, const char *table, char *errstr,
                                size_t errstr_size)
{
    char tmpl[1024], sql[TC_SQL_MAX], from[16], to[16], compact[16], drop[64] = "";
    char rollups[320] = "";
    tc_err err;

    tc_retention_day_text(day, from, sizeof(from), 0);
    tc_retention_day_text(day + 1, to, sizeof(to), 0);
    tc_retention_day_text(day, compact, sizeof(compact), 1);
    if (s->version >= TC_STORE_VERSION_DAILY_ROLLUPS)
        snprintf(drop, sizeof(drop), " DROP TABLE IF EXISTS @S.rollup_1m_p%s;", compact);
    if (s->version >= TC_STORE_VERSION_ROLLUPS)
        snprintf(rollups, sizeof(rollups),
                 "%s DELETE FROM @S.rollup_1m WHERE bucket >= '%s 00:00:00+00'"
                 " AND bucket < '%s 00:00:00+00';",
                 drop, from, to);
    snprintf(tmpl, sizeof(tmpl),
             "BEGIN; SET LOCAL lock_timeout = '10s';"
             " SELECT pg_advisory_xact_lock(" TC_LOCK_PARTITIONS ");"
             " ALTER TABLE @S.readings DETACH PARTITION @S.%s;"
             " DROP TABLE @S.%s;%s",
             table, table, rollups);
    if (tc_store_sql(s, tmpl, sql, sizeof(sql)) < 0)
        return TC_ERR_INVALID;
    err = tc_store_exec(s, sql, "drop an old partition", errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_exec(s, "COMMIT", "commit retention", errstr, errstr_size);
    else
        tc_store_rollback(s, "the drop of an old partition");
    return err;
}

/* The background jobs of schema $1 (the policies on readings, and those on its continuous
 * aggregates, which the jobs view names by the aggregate's view) and their last runs: id,
 * procedure, what it acts on, failures, 1 when the last run failed, and the last error's message.
 */
static const char *const tc_retention_jobs_sql =
    "SELECT j.job_id, j.proc_name, j.hypertable_name, coalesce(s.total_failures, 0), "
    "CASE WHEN s.last_run_status = 'Failed' THEN 1 ELSE 0 END, "
    "coalesce((SELECT e.err_message FROM timescaledb_information.job_errors e "
    "WHERE e.job_id = j.job_id ORDER BY e.finish_time DESC NULLS LAST LIMIT 1), '') "
    "FROM timescaledb_information.jobs j "
    "LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id "
    "WHERE j.hypertable_schema = $1 ORDER BY 1";

/* The schema's TimescaleDB jobs whose last run failed, described into res->failing_jobs: the
 * policy that says when it runs next says nothing of a scheduler that has been failing it. */
static tc_err tc_retention_failing_jobs(tc_store *s, tc_retention_result *res, char *errstr,
                                        size_t errstr_size)
{
    const char *params[1] = {s->schema_raw};
    char msg[TC_ERRSTR_MAX];
    PGresult *r = PQexecParams(s->conn, tc_retention_jobs_sql, 1, NULL, params, NULL, NULL, 0);
    size_t len = 0;
    tc_err err = TC_OK;

    res->failing = 0;
    res->failing_jobs[0] = '\0';
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, r);
        tc_err_set(err, errstr, errstr_size, "could not read the TimescaleDB jobs: %s",
                   tc_store_pgmsg(s, r, msg, sizeof(msg)));
    }
    for (int i = 0; err == TC_OK && i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, 4), "1") != 0)
            continue;
        res->failing++;
        if (len < sizeof(res->failing_jobs)) /* what does not fit is cut, the count stays */
            len += (size_t)snprintf(res->failing_jobs + len, sizeof(res->failing_jobs) - len,
                                    "%sjob %s (%s on %s, %s failures): %s", len ? "; " : "",
                                    PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                                    PQgetvalue(r, i, 3),
                                    *PQgetvalue(r, i, 5) ? PQgetvalue(r, i, 5) : "no message");
    }
    PQclear(r);
    return err;
}

/* Describe the TimescaleDB retention policy of readings into res->policy, and the jobs failing. */
static tc_err tc_retention_policy(tc_store *s, tc_retention_result *res, char *errstr,
                                  size_t errstr_size)
{
    const char *params[1] = {s->schema_raw};
    char msg[TC_ERRSTR_MAX];
    PGresult *r = PQexecParams(s->conn,
                               "SELECT job_id, config->>'drop_after', coalesce(next_start::text,"
                               " 'not scheduled') FROM timescaledb_information.jobs j"
                               " WHERE j.proc_name = 'policy_retention'"
                               " AND j.hypertable_schema = $1 AND j.hypertable_name = 'readings'",
                               1, NULL, params, NULL, NULL, 0);
    tc_err err = TC_OK;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, r);
        tc_err_set(err, errstr, errstr_size, "could not read the retention policy: %s",
                   tc_store_pgmsg(s, r, msg, sizeof(msg)));
    } else if (PQntuples(r) == 0) {
        snprintf(res->policy, sizeof(res->policy), "no retention policy on readings");
    } else {
        snprintf(res->policy, sizeof(res->policy),
                 "the TimescaleDB retention policy (job %s) drops chunks older than %s;"
                 " next run: %s",
                 PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    }
    PQclear(r);
    return err == TC_OK ? tc_retention_failing_jobs(s, res, errstr, errstr_size) : err;
}

/* Rows of the day's partition (d->rows) and how many of them the lake holds (d->lake_rows): per
 * Kafka partition, all of them when the lake's progress is past their highest offset, else those
 * below the progress (counted only then: the day is kept anyway, the count is for the report). */
static tc_err tc_retention_lake_rows(tc_store *s, const tc_retention_options *opt,
                                     tc_retention_day *d, char *errstr, size_t errstr_size)
{
    char tmpl[256], sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX], param[48];
    PGresult *res;
    tc_err err = TC_OK;

    snprintf(tmpl, sizeof(tmpl),
             "SELECT kafka_partition, count(*), max(kafka_offset) FROM @S.%s GROUP BY 1", d->table);
    if (tc_store_sql(s, tmpl, sql, sizeof(sql)) < 0)
        return TC_ERR_INVALID;
    res = PQexec(s->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not count the rows of %s: %s", d->table,
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
        PQclear(res);
        return err;
    }
    d->rows = d->lake_rows = 0;
    for (int r = 0; r < PQntuples(res) && err == TC_OK; r++) {
        int32_t part = (int32_t)strtol(PQgetvalue(res, r, 0), NULL, 10);
        int64_t n = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        int64_t max = strtoll(PQgetvalue(res, r, 2), NULL, 10), next = -1, below = 0;
        d->rows += n;
        if (opt->lake_progress)
            err = opt->lake_progress(opt->lake_opaque, part, &next, errstr, errstr_size);
        if (err != TC_OK || next < 0)
            continue;
        if (next > max) {
            d->lake_rows += n;
            continue;
        }
        snprintf(tmpl, sizeof(tmpl),
                 "SELECT count(*) FROM @S.%s WHERE kafka_partition = %d AND kafka_offset < $1",
                 d->table, (int)part);
        snprintf(param, sizeof(param), "%lld", (long long)next);
        if (tc_store_sql(s, tmpl, sql, sizeof(sql)) < 0)
            err = TC_ERR_INVALID;
        else
            err = tc_retention_count(s, sql, param, &below, errstr, errstr_size);
        d->lake_rows += below;
    }
    PQclear(res);
    return err;
}

tc_err tc_store_retention(tc_store *s, const tc_retention_options *opt, tc_retention_result *res,
                          char *errstr, size_t errstr_size)
{
    char table[32], dayparam[16];
    int64_t *days, today, cutoff_us, cutoff_day;
    tc_retention_day d;
    size_t n = 0;
    tc_err err;

    memset(res, 0, sizeof(*res));
    if (opt->max_age_s <= 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "retention age must be positive");
    err = tc_store_connect(s, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    res->mode = s->mode;
    if (s->mode == TC_STORE_TIMESCALEDB)
        return tc_retention_policy(s, res, errstr, errstr_size);
    today = tc_time_day_of(opt->now_us);
    cutoff_us = opt->now_us - opt->max_age_s * TC_USEC_PER_SEC;
    /* A partition [day, day + 1) goes when day + 1 <= the day of the cutoff, and never today. */
    cutoff_day = tc_time_day_of(cutoff_us);
    if (cutoff_day > today)
        cutoff_day = today;
    days = malloc(TC_RETENTION_DAYS_MAX * sizeof(*days));
    if (!days)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    err = tc_retention_candidates(s, cutoff_day, days, &n, errstr, errstr_size);
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        tc_retention_day_text(days[i], dayparam, sizeof(dayparam), 1);
        snprintf(table, sizeof(table), "readings_p%s", dayparam);
        memset(&d, 0, sizeof(d));
        d.day = days[i];
        d.table = table;
        d.rows = -1;
        d.lake_rows = -1;
        if (opt->require_lake &&
            (err = tc_retention_lake_rows(s, opt, &d, errstr, errstr_size)) != TC_OK)
            break;
        if (opt->require_lake && d.lake_rows < d.rows) {
            d.action = TC_RETENTION_KEPT_LAKE;
            res->kept++;
        } else if (opt->dry_run) {
            d.action = TC_RETENTION_WOULD_DROP;
            res->dropped++;
        } else {
            err = tc_retention_drop(s, days[i], table, errstr, errstr_size);
            if (err != TC_OK)
                break;
            d.action = TC_RETENTION_DROPPED;
            res->dropped++;
            tc_log_info("store", "retention: dropped %s (%lld rows, lake %lld)", table,
                        (long long)d.rows, (long long)d.lake_rows);
        }
        if (opt->on_day)
            opt->on_day(opt->opaque, &d);
    }
    free(days);
    if (res->dropped && !opt->dry_run)
        tc_store_forget_days(s);
    return err;
}
