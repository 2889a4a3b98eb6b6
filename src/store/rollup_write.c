/*
 * rollup_write.c -- the rollups' and the latest state's SQL: the statements that upsert what the
 * aggregates of rollup.c hold into rollup_1m, rollup_1h and latest_state, and their flush in a
 * transaction of its own with the rollups' marks (fenced like a batch's offsets; store.h).
 *
 * Each statement sends one binary array of records, its columns read from the table's row type
 * (so a metric added by schema evolution is a column of the records once the table has it), and
 * is prepared once per connection; a table whose columns changed is prepared again.
 */
#include "store/store_int.h"

#include "core/log.h"
#include "core/timeutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Groups per rollup or latest-state statement. The records of one statement are built in memory
 * (some 420 bytes a rollup group: each column carries its type and length), so a flush of 60,000
 * groups in one would hold 25 MB; in statements of this many it holds 7 MB, and PostgreSQL's cost
 * per row is the same. */
#define TC_ROLLUP_STMT_GROUPS 16384

/* Append to out (at *pos) with printf; returns -1 when it does not fit. */
static int tc_sql_append(char *out, size_t cap, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int tc_sql_append(char *out, size_t cap, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(out + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *pos)
        return -1;
    *pos += (size_t)n;
    return 0;
}

const tc_store_rollup_table tc_store_rollup_tables[TC_STORE_ROLLUP_TABLES] = {
    {"rollup_1m", "readings_1m", "tc_rollup_1m", TC_PREP_ROLLUP_1M},
    {"rollup_1h", "readings_1h", "tc_rollup_1h", TC_PREP_ROLLUP_1H},
};

int tc_store_rollup_metric_fits(const char *name)
{
    return strlen(name) <= TC_ROLLUP_NAME_MAX;
}

/*
 * The rollup upserts send their groups as one parameter: an array of the table's own row type,
 * which the statement unnests. PostgreSQL reads such an array about as fast as rows from a table;
 * 27 arrays of one column each, unnested side by side, cost it twice as much (each becomes a
 * tuplestore of its own before the rows are zipped together). The price is that the records must
 * carry every column of the row type, in the table's order, with its type: the columns are read
 * from the catalog when the statement is prepared, and each is mapped to what fills it.
 */
enum { TC_RCOL_DEVICE, TC_RCOL_BUCKET, TC_RCOL_N, TC_RCOL_FIXED, TC_RCOL_DYN, TC_RCOL_NONE };
/* tc_rollup_column.metric of a TC_RCOL_NONE column named like a metric's */
#define TC_RCOL_UNSEEN 0xffff

/* The metric column a name ends in: field 0..3 for _n, _sum, _min, _max, and the length of the
 * metric's name before it; -1 when it is not one. */
static int tc_store_metric_field(const char *col, size_t *metric_len)
{
    static const char *const suffix[] = {"_n", "_sum", "_min", "_max"};
    size_t len = strlen(col);

    for (int f = 0; f < 4; f++) {
        size_t sl = strlen(suffix[f]);
        if (len > sl && strcmp(col + len - sl, suffix[f]) == 0) {
            *metric_len = len - sl;
            return f;
        }
    }
    return -1;
}

/* Map column name (of type oid) of a rollup table to its source in rollup r. */
static tc_rollup_column tc_store_rollup_column(const tc_rollup *r, const char *name, uint32_t oid)
{
    tc_rollup_column c = {oid, TC_RCOL_NONE, 0, 0}; /* not a metric's: NULL */
    size_t len = 0;
    int f;

    if (!strcmp(name, "device_id"))
        c.src = TC_RCOL_DEVICE;
    else if (!strcmp(name, "bucket"))
        c.src = TC_RCOL_BUCKET;
    else if (!strcmp(name, "n"))
        c.src = TC_RCOL_N;
    if (c.src != TC_RCOL_NONE || (f = tc_store_metric_field(name, &len)) < 0)
        return c;
    c.field = (uint8_t)f;
    c.metric = TC_RCOL_UNSEEN;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        if (strlen(tc_metric_names[m]) == len && !strncmp(name, tc_metric_names[m], len)) {
            c.src = TC_RCOL_FIXED;
            c.metric = (uint16_t)m;
            return c;
        }
    }
    for (size_t d = 0; d < r->ndyn; d++) {
        if (strlen(r->dyn_name[d]) == len && !strncmp(name, r->dyn_name[d], len) &&
            tc_store_rollup_metric_fits(r->dyn_name[d])) {
            c.src = TC_RCOL_DYN;
            c.metric = (uint16_t)d;
            return c;
        }
    }
    return c; /* a metric this pipeline has not seen (another one added it): 0, or NULL */
}

/* The SET clause of one metric column: counts and sums add up (they are NOT NULL DEFAULT 0, so a
 * row written before the metric existed adds up from 0), extremes keep the extreme. */
static int tc_store_rollup_set(char *sql, size_t *pos, const char *name, int field)
{
    if (field < 2)
        return tc_sql_append(sql, TC_ROLLUP_SQL_MAX, pos, ", \"%s\" = t.\"%s\" + EXCLUDED.\"%s\"",
                             name, name, name);
    return tc_sql_append(sql, TC_ROLLUP_SQL_MAX, pos, ", \"%s\" = %s(t.\"%s\", EXCLUDED.\"%s\")",
                         name, field == 2 ? "least" : "greatest", name, name);
}

/* The columns of table (qualified) in order, as rows (row type OID, name, type OID) in *res (the
 * caller's to clear), and st's row type and an array of as many columns with their types, for the
 * caller to map (st->cols is the caller's to free, also on failure). */
static tc_err tc_store_row_type(tc_store *s, const char *table, PGresult **res, tc_record_stmt *st,
                                char *errstr, size_t errstr_size)
{
    const char *params[1] = {table};
    char msg[TC_ERRSTR_MAX];
    int rows;

    *st = (tc_record_stmt){0};
    *res = PQexecParams(s->conn,
                        "SELECT c.reltype, a.attname, a.atttypid FROM pg_attribute a"
                        " JOIN pg_class c ON c.oid = a.attrelid WHERE a.attrelid = $1::regclass"
                        " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(*res) != PGRES_TUPLES_OK)
        return tc_err_set(tc_store_classify(s, *res), errstr, errstr_size,
                          "could not read the columns of \"%s\": %s", table,
                          tc_store_pgmsg(s, *res, msg, sizeof(msg)));
    rows = PQntuples(*res);
    if (rows == 0)
        return tc_err_set(TC_ERR_DB, errstr, errstr_size, "\"%s\" has no columns", table);
    st->cols = calloc((size_t)rows, sizeof(*st->cols));
    if (!st->cols)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    st->ncols = (size_t)rows;
    st->rowtype = (uint32_t)strtoul(PQgetvalue(*res, 0, 0), NULL, 10);
    for (int i = 0; i < rows; i++)
        st->cols[i].oid = (uint32_t)strtoul(PQgetvalue(*res, i, 2), NULL, 10);
    return TC_OK;
}

/* Forget prepared statement name (bit) on this connection, if it is prepared. */
static tc_err tc_store_unprepare(tc_store *s, unsigned bit, const char *name, char *errstr,
                                 size_t errstr_size)
{
    char sql[64];
    tc_err err;

    if (!(s->prepared & bit))
        return TC_OK;
    snprintf(sql, sizeof(sql), "DEALLOCATE %s", name);
    if ((err = tc_store_exec(s, sql, "forget a prepared statement", errstr, errstr_size)) == TC_OK)
        s->prepared &= ~bit;
    return err;
}

/* Prepare statement name (bit) from sql, sending records as fresh describes; on success fresh
 * becomes *st (its columns move there), else it is freed. */
static tc_err tc_store_prepare_records(tc_store *s, tc_record_stmt *st, tc_record_stmt *fresh,
                                       unsigned bit, const char *name, const char *sql,
                                       char *errstr, size_t errstr_size)
{
    tc_err err = tc_store_prepare(s, bit, name, sql, 1, NULL, errstr, errstr_size);

    if (err != TC_OK) {
        free(fresh->cols);
        return err;
    }
    free(st->cols);
    *st = *fresh;
    return TC_OK;
}

/* A function that appends column c of group g of rollup r to a record being built. */
typedef void (*tc_record_value_fn)(tc_store *s, const tc_rollup *r, size_t g,
                                   const tc_rollup_column *c);

/* The end of the next statement's groups from g0: at most TC_ROLLUP_STMT_GROUPS of those whose
 * bucket is below `below`, in *n. */
static size_t tc_store_records_span(const tc_rollup *r, size_t g0, int64_t below, size_t *n)
{
    size_t g = g0;

    for (*n = 0; g < r->ngroups && *n < TC_ROLLUP_STMT_GROUPS; g++)
        *n += r->groups[g].bucket_us < below;
    return g;
}

/* Send the groups of r whose bucket is below `below` (INT64_MAX: all) through prepared statement
 * name, which takes them as one array of st's row type, in statements of at most
 * TC_ROLLUP_STMT_GROUPS groups. */
static tc_err tc_store_send_records(tc_store *s, tc_record_stmt *st, const char *name,
                                    const char *what, const tc_rollup *r, int64_t below,
                                    tc_record_value_fn value, char *errstr, size_t errstr_size)
{
    size_t g0, g1, n;
    tc_params p;
    tc_err err = TC_OK;

    for (g0 = 0; err == TC_OK && g0 < r->ngroups; g0 = g1) {
        g1 = tc_store_records_span(r, g0, below, &n);
        if (n == 0)
            continue;
        tc_params_reset(s, &p);
        tc_params_array(s, &p, st->rowtype, n, 0);
        for (size_t g = g0; g < g1; g++) {
            if (r->groups[g].bucket_us >= below)
                continue;
            size_t start = tc_copy_record_begin(&s->params, (uint32_t)st->ncols);
            for (size_t c = 0; c < st->ncols; c++)
                value(s, r, g, &st->cols[c]);
            tc_copy_record_end(&s->params, start);
        }
        err = tc_store_run_prepared(s, name, &p, what, errstr, errstr_size);
    }
    /* 42804: the row type is no longer the one the records were built for (another pipeline added
     * a metric's columns). Nothing was written: read the columns again and retry. */
    if (err != TC_OK && !strcmp(s->sqlstate, "42804")) {
        st->stale = 1;
        err = TC_ERR_DB_CONN;
    }
    return err;
}

/* Read rollup table t's row type and columns into fresh, mapped for rollup r; build its upsert in
 * sql (a buffer of TC_ROLLUP_SQL_MAX). */
static tc_err tc_store_rollup_columns(tc_store *s, size_t t, const tc_rollup *r,
                                      tc_record_stmt *fresh, char *sql, char *errstr,
                                      size_t errstr_size)
{
    char table[TC_SQL_MAX];
    PGresult *res = NULL;
    size_t pos = 0;
    int rc = 0;
    tc_err err;

    snprintf(table, sizeof(table), "%s.%s", s->schema, tc_store_rollup_tables[t].table);
    if ((err = tc_store_row_type(s, table, &res, fresh, errstr, errstr_size)) != TC_OK)
        goto done;
    rc |= tc_sql_append(sql, TC_ROLLUP_SQL_MAX, &pos,
                        "INSERT INTO %s AS t SELECT (x).* FROM unnest($1::%s[]) x"
                        " ON CONFLICT (device_id, bucket) DO UPDATE SET n = t.n + EXCLUDED.n",
                        table, table);
    for (size_t i = 0; i < fresh->ncols; i++) {
        const char *name = PQgetvalue(res, (int)i, 1);
        size_t len;
        fresh->cols[i] = tc_store_rollup_column(r, name, fresh->cols[i].oid);
        if (fresh->cols[i].src >= TC_RCOL_FIXED && tc_store_metric_field(name, &len) >= 0)
            rc |= tc_store_rollup_set(sql, &pos, name, fresh->cols[i].field);
    }
    if (rc < 0)
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "rollup statement too long");
done:
    PQclear(res);
    return err;
}

/* Prepare the upsert of rollup table t for the first ndyn dynamic metrics of r, replacing one
 * prepared for fewer (their columns were added since: the row type changed) or for a row type
 * that changed under it. */
static tc_err tc_store_prepare_rollup(tc_store *s, size_t t, const tc_rollup *r, size_t ndyn,
                                      char *errstr, size_t errstr_size)
{
    const tc_store_rollup_table *rt = &tc_store_rollup_tables[t];
    tc_record_stmt fresh = {0};
    char *sql;
    tc_err err;

    if ((s->prepared & rt->prep) && !s->rollup_stmt[t].stale && s->rollup_prepared[t] == ndyn)
        return TC_OK;
    if ((err = tc_store_unprepare(s, rt->prep, rt->stmt, errstr, errstr_size)) != TC_OK)
        return err;
    sql = malloc(TC_ROLLUP_SQL_MAX);
    if (!sql)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory building SQL");
    err = tc_store_rollup_columns(s, t, r, &fresh, sql, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_prepare_records(s, &s->rollup_stmt[t], &fresh, rt->prep, rt->stmt, sql,
                                       errstr, errstr_size);
    else
        free(fresh.cols);
    free(sql);
    if (err == TC_OK)
        s->rollup_prepared[t] = ndyn;
    return err;
}

/* A minimum or maximum of a group: NULL where the group had no value. */
static void tc_params_extreme(tc_store *s, int64_t cnt, double v)
{
    if (cnt)
        tc_copy_float8(&s->params, v);
    else
        tc_copy_null(&s->params);
}

/* Column c of group g of rollup r, as a field of its record. */
static void tc_store_rollup_value(tc_store *s, const tc_rollup *r, size_t g,
                                  const tc_rollup_column *c)
{
    const tc_rollup_group *gr = &r->groups[g];
    const tc_rollup_dyn *dy;
    int64_t cnt = 0;
    double sum = 0, min = 0, max = 0;

    tc_copy_record_column(&s->params, c->oid);
    switch (c->src) {
    case TC_RCOL_DEVICE:
        tc_copy_text(&s->params, gr->device.ptr, gr->device.len);
        return;
    case TC_RCOL_BUCKET:
        tc_copy_timestamptz(&s->params, gr->bucket_us);
        return;
    case TC_RCOL_N:
        tc_copy_int8(&s->params, gr->n);
        return;
    case TC_RCOL_FIXED:
        cnt = gr->cnt[c->metric];
        sum = gr->sum[c->metric];
        min = gr->min[c->metric];
        max = gr->max[c->metric];
        break;
    case TC_RCOL_DYN:
        dy = tc_rollup_dyn_at(r, g, c->metric);
        cnt = dy->cnt;
        sum = dy->sum;
        min = dy->min;
        max = dy->max;
        break;
    default:
        break;
    }
    if (c->src == TC_RCOL_NONE &&
        (c->metric != TC_RCOL_UNSEEN || c->oid != (c->field == 0 ? TC_OID_INT8 : TC_OID_FLOAT8)))
        tc_copy_null(&s->params); /* not a metric's column (or not of a metric's type) */
    else if (c->field == 0)
        tc_copy_int8(&s->params, cnt);
    else if (c->field == 1)
        tc_copy_float8(&s->params, sum);
    else
        tc_params_extreme(s, cnt, c->field == 2 ? min : max);
}

/* Add the groups of the rollup of table t to the table (plain mode). */
static tc_err tc_store_write_rollup(tc_store *s, size_t t, char *errstr, size_t errstr_size)
{
    const tc_store_rollup_table *rt = &tc_store_rollup_tables[t];
    const tc_rollup *r = tc_store_rollup_of(s, t);
    tc_err err;

    if (r->ngroups == 0)
        return TC_OK;
    /* tc_store_ensure_rollup_columns has run: a metric without a column would be lost. */
    if (r->ndyn > s->rollup_columns[t])
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "%s lacks columns for %zu dynamic metrics", rt->table,
                          r->ndyn - s->rollup_columns[t]);
    err = tc_store_prepare_rollup(s, t, r, r->ndyn, errstr, errstr_size);
    return err != TC_OK ? err
                        : tc_store_send_records(s, &s->rollup_stmt[t], rt->stmt, rt->table, r,
                                                s->rollup_below_us[t], tc_store_rollup_value,
                                                errstr, errstr_size);
}

/*
 * The latest state goes the same way as the rollups: one array of latest_state's row type. Its
 * columns are mapped by name; any the store does not fill (updated_at) go as NULL and the
 * statement leaves them to their defaults.
 */
enum {
    TC_LCOL_DEVICE,
    TC_LCOL_TIME,
    TC_LCOL_METRIC,
    TC_LCOL_TAGS,
    TC_LCOL_EXTRA,
    TC_LCOL_PARTITION,
    TC_LCOL_OFFSET,
    TC_LCOL_NONE
};

static const char *const tc_latest_names[] = {"device_id",       "time",        "", "tags", "extra",
                                              "kafka_partition", "kafka_offset"};

/* Map column name of latest_state to what fills it. */
static tc_rollup_column tc_store_latest_column(const char *name, uint32_t oid)
{
    tc_rollup_column c = {oid, TC_LCOL_NONE, 0, 0};

    for (int k = 0; k < TC_LCOL_NONE; k++) {
        if (k != TC_LCOL_METRIC && !strcmp(name, tc_latest_names[k]))
            c.src = (uint8_t)k;
    }
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        if (!strcmp(name, tc_metric_names[m])) {
            c.src = TC_LCOL_METRIC;
            c.metric = (uint16_t)m;
        }
    }
    return c;
}

/* Read latest_state's row type into fresh and build its upsert (only over an older reading) in
 * sql (a buffer of TC_SQL_MAX). */
static tc_err tc_store_latest_columns(tc_store *s, tc_record_stmt *fresh, char *sql, char *errstr,
                                      size_t errstr_size)
{
    char table[TC_SQL_MAX], cols_sql[TC_SQL_MAX], sel[TC_SQL_MAX];
    size_t pos = 0, cpos = 0, spos = 0;
    PGresult *res = NULL;
    int rc = 0;
    tc_err err;

    snprintf(table, sizeof(table), "%s.latest_state", s->schema);
    if ((err = tc_store_row_type(s, table, &res, fresh, errstr, errstr_size)) != TC_OK)
        goto done;
    for (size_t i = 0; i < fresh->ncols; i++) {
        const char *name = PQgetvalue(res, (int)i, 1);
        fresh->cols[i] = tc_store_latest_column(name, fresh->cols[i].oid);
        if (fresh->cols[i].src == TC_LCOL_NONE)
            continue;
        rc |= tc_sql_append(cols_sql, sizeof(cols_sql), &cpos, "%s\"%s\"", cpos ? ", " : "", name);
        rc |= tc_sql_append(sel, sizeof(sel), &spos, "%sx.\"%s\"", spos ? ", " : "", name);
    }
    rc |= tc_sql_append(sql, TC_SQL_MAX, &pos,
                        "INSERT INTO %s AS l (%s) SELECT %s FROM unnest($1::%s[]) x"
                        " ON CONFLICT (device_id) DO UPDATE SET time = EXCLUDED.time",
                        table, cols_sql, sel, table);
    for (int m = 0; m < TC_METRIC__COUNT; m++)
        rc |= tc_sql_append(sql, TC_SQL_MAX, &pos, ", %s = EXCLUDED.%s", tc_metric_names[m],
                            tc_metric_names[m]);
    rc |= tc_sql_append(sql, TC_SQL_MAX, &pos,
                        ", tags = EXCLUDED.tags, extra = EXCLUDED.extra,"
                        " kafka_partition = EXCLUDED.kafka_partition,"
                        " kafka_offset = EXCLUDED.kafka_offset, updated_at = now()"
                        " WHERE (EXCLUDED.time, EXCLUDED.kafka_partition, EXCLUDED.kafka_offset)"
                        " > (l.time, l.kafka_partition, l.kafka_offset)");
    if (rc < 0)
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "latest statement too long");
done:
    PQclear(res);
    return err;
}

/* Prepare latest_state's upsert, unless it is and its row type has not changed. */
static tc_err tc_store_prepare_latest(tc_store *s, char *errstr, size_t errstr_size)
{
    tc_record_stmt fresh = {0};
    char sql[TC_SQL_MAX];
    tc_err err;

    if ((s->prepared & TC_PREP_LATEST) && !s->latest_stmt.stale)
        return TC_OK;
    if ((err = tc_store_unprepare(s, TC_PREP_LATEST, "tc_latest", errstr, errstr_size)) != TC_OK)
        return err;
    if ((err = tc_store_latest_columns(s, &fresh, sql, errstr, errstr_size)) != TC_OK) {
        free(fresh.cols);
        return err;
    }
    return tc_store_prepare_records(s, &s->latest_stmt, &fresh, TC_PREP_LATEST, "tc_latest", sql,
                                    errstr, errstr_size);
}

/* Column c of the latest reading of group g of rollup r, as a field of its record. */
static void tc_store_latest_value(tc_store *s, const tc_rollup *r, size_t g,
                                  const tc_rollup_column *c)
{
    const tc_rollup_latest *l = tc_rollup_latest_at(r, g);
    const tc_slice *js = c->src == TC_LCOL_TAGS ? &l->tags : &l->extra;

    tc_copy_record_column(&s->params, c->oid);
    switch (c->src) {
    case TC_LCOL_DEVICE:
        tc_copy_text(&s->params, r->groups[g].device.ptr, r->groups[g].device.len);
        break;
    case TC_LCOL_TIME:
        tc_copy_timestamptz(&s->params, l->time_us);
        break;
    case TC_LCOL_METRIC:
        if (l->present[c->metric])
            tc_copy_float8(&s->params, l->metric[c->metric]);
        else
            tc_copy_null(&s->params);
        break;
    case TC_LCOL_TAGS:
    case TC_LCOL_EXTRA:
        if (js->ptr)
            tc_copy_jsonb(&s->params, js->ptr, js->len);
        else
            tc_copy_null(&s->params);
        break;
    case TC_LCOL_PARTITION:
        tc_copy_int4(&s->params, l->partition);
        break;
    case TC_LCOL_OFFSET:
        tc_copy_int8(&s->params, l->offset);
        break;
    default:
        tc_copy_null(&s->params);
        break;
    }
}

/* The latest reading per device of the groups, upserted only over an older one. */
static tc_err tc_store_write_latest(tc_store *s, const tc_rollup *r, char *errstr,
                                    size_t errstr_size)
{
    tc_err err;

    if (r->ngroups == 0)
        return TC_OK;
    err = tc_store_prepare_latest(s, errstr, errstr_size);
    return err != TC_OK
               ? err
               : tc_store_send_records(s, &s->latest_stmt, "tc_latest", "latest readings", r,
                                       INT64_MAX, tc_store_latest_value, errstr, errstr_size);
}

/* Whether the store keeps rollup tables (plain mode, postgres.rollups on). */
static int tc_store_has_rollups(const tc_store *s)
{
    return s->mode == TC_STORE_PLAIN && s->rollups;
}

void tc_store_rollups_clear(tc_store *s)
{
    tc_rollup_clear(&s->r1m);
    tc_rollup_clear(&s->r1h);
    tc_rollup_clear(&s->rlatest);
}

tc_err tc_store_rollups_add(tc_store *s, const tc_batch *b, const uint8_t *mask)
{
    /* TimescaleDB mode has continuous aggregates instead: only the latest state is kept here. */
    if (tc_store_has_rollups(s) &&
        (tc_rollup_add(&s->r1m, b, mask) != TC_OK || tc_rollup_add(&s->r1h, b, mask) != TC_OK))
        return TC_ERR_NOMEM;
    return tc_rollup_add(&s->rlatest, b, mask);
}

void tc_store_rollups_hand_over(tc_store *from, tc_store *to)
{
    tc_rollup r1m = to->r1m, r1h = to->r1h, rlatest = to->rlatest;

    to->r1m = from->r1m;
    to->r1h = from->r1h;
    to->rlatest = from->rlatest;
    from->r1m = r1m;
    from->r1h = r1h;
    from->rlatest = rlatest;
}

size_t tc_store_rollups_pending(const tc_store *s)
{
    size_t n = s->r1m.ngroups;

    n = s->r1h.ngroups > n ? s->r1h.ngroups : n;
    return s->rlatest.ngroups > n ? s->rlatest.ngroups : n;
}

/* Upsert what the aggregates hold into rollup_1m, rollup_1h and latest_state, inside the open
 * transaction. */
static tc_err tc_store_write_aggregates(tc_store *s, char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;

    if (s->version < TC_STORE_VERSION_ROLLUPS)
        return TC_OK;
    for (size_t t = 0; tc_store_has_rollups(s) && err == TC_OK && t < TC_STORE_ROLLUP_TABLES; t++)
        err = tc_store_write_rollup(s, t, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_write_latest(s, &s->rlatest, errstr, errstr_size);
    return err;
}

/* W and H for this flush (store.h, closed buckets), read first in its transaction, which keeps
 * them FOR SHARE until it ends: no materialization moves them meanwhile. INT64_MAX where the
 * schema keeps every bucket in the tables (before version 5). */
static tc_err tc_store_rollup_thresholds(tc_store *s, char *errstr, size_t errstr_size)
{
    char val[64];
    long long w, h;
    int found = 0;
    tc_err err;

    s->rollup_below_us[0] = s->rollup_below_us[1] = INT64_MAX;
    if (!tc_store_has_rollups(s) || s->version < TC_STORE_VERSION_CLOSED_ROLLUPS)
        return TC_OK;
    err = tc_store_query_value(s, "SELECT @S.tc_rollup_thresholds()", NULL, 0, val, sizeof(val),
                               &found, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (!found || sscanf(val, "%lld %lld", &w, &h) != 2)
        return tc_err_set(TC_ERR_DB, errstr, errstr_size,
                          "%s.rollup_state has no row: run `thermocline migrate`", s->schema);
    s->rollup_below_us[0] = (int64_t)w;
    s->rollup_below_us[1] = (int64_t)h;
    return TC_OK;
}

void tc_store_rollups_skip(tc_store *s, int64_t from_1m_us, int64_t from_1h_us)
{
    s->r1m.skip_from_us = from_1m_us;
    s->r1h.skip_from_us = from_1h_us;
}

void tc_store_rollups_closed(const tc_store *s, int64_t *w_us, int64_t *h_us)
{
    *w_us = s->rollup_below_us[0];
    *h_us = s->rollup_below_us[1];
}

tc_err tc_store_rollups_load_closed(tc_store *s, int64_t *w_us, int64_t *h_us, char *errstr,
                                    size_t errstr_size)
{
    char val[16];
    int found = 0;
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    *w_us = *h_us = INT64_MAX;
    if (err != TC_OK || !tc_store_has_rollups(s) || s->version < TC_STORE_VERSION_CLOSED_ROLLUPS)
        return err;
    /* A schema whose functions an older `thermocline migrate` made has no tc_rollup_late: its
     * flushes could not write what a closing passed over, so every bucket is aggregated. */
    err = tc_store_query_value(s,
                               "SELECT (to_regprocedure('@S.tc_rollup_late(int[], bigint[],"
                               " bigint[], timestamptz, timestamptz, timestamptz, timestamptz)')"
                               " IS NOT NULL)::int",
                               NULL, 0, val, sizeof(val), &found, errstr, errstr_size);
    if (err != TC_OK || !found || strcmp(val, "1"))
        return err;
    if ((err = tc_store_rollup_thresholds(s, errstr, errstr_size)) == TC_OK) {
        *w_us = s->rollup_below_us[0];
        *h_us = s->rollup_below_us[1];
    }
    return err;
}

/* One text array of n values, "{v0,v1,...}", of the partitions (from NULL) or of offsets (from:
 * the starts, else the ends) of marks: malloc'ed, NULL when out of memory. */
static char *tc_store_marks_array(const tc_partition_offset *marks, const int64_t *from, int ends,
                                  size_t n)
{
    size_t cap = n * 24 + 3, pos = 0;
    char *out = malloc(cap);

    if (!out)
        return NULL;
    out[pos++] = '{';
    for (size_t i = 0; i < n; i++) {
        long long v = ends ? marks[i].next_offset : from ? from[i] : marks[i].partition;
        pos += (size_t)snprintf(out + pos, cap - pos, "%s%lld", i ? "," : "", v);
    }
    snprintf(out + pos, cap - pos, "}");
    return out;
}

/* A bucket's start as a timestamptz literal (the int64 ends: the infinities). */
static void tc_store_bucket_text(int64_t us, char *buf, size_t cap)
{
    if (us == INT64_MAX || us == INT64_MIN)
        snprintf(buf, cap, "%sinfinity", us == INT64_MIN ? "-" : "");
    else
        tc_time_format_rfc3339(us, buf, cap);
}

/*
 * The readings the aggregates skipped (their bucket at or past the bound the sink set) whose
 * buckets a closing has passed over since (below W or H now): written from the stored rows of
 * this flush's offset ranges, inside its transaction (sink_rollup.c has why that is exact). In
 * steady operation the skipped buckets are the open minutes and hour, and there is nothing to do.
 */
static tc_err tc_store_write_late(tc_store *s, const tc_partition_offset *marks,
                                  const int64_t *from, size_t nmarks, char *errstr,
                                  size_t errstr_size)
{
    int64_t m0 = s->r1m.skipped_min_us, h0 = s->r1h.skipped_min_us;
    char t[4][40], sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX];
    char *parts = NULL, *froms = NULL, *tos = NULL;
    const char *params[7];
    PGresult *res;
    tc_err err = TC_OK;

    if (m0 >= s->rollup_below_us[0] && h0 >= s->rollup_below_us[1])
        return TC_OK;
    if (!from)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "rollups: skipped buckets closed before a flush without its ranges");
    parts = tc_store_marks_array(marks, NULL, 0, nmarks);
    froms = tc_store_marks_array(marks, from, 0, nmarks);
    tos = tc_store_marks_array(marks, NULL, 1, nmarks);
    if (!parts || !froms || !tos) {
        err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto done;
    }
    tc_store_bucket_text(m0, t[0], sizeof(t[0]));
    tc_store_bucket_text(s->rollup_below_us[0], t[1], sizeof(t[1]));
    tc_store_bucket_text(h0, t[2], sizeof(t[2]));
    tc_store_bucket_text(s->rollup_below_us[1], t[3], sizeof(t[3]));
    params[0] = parts;
    params[1] = froms;
    params[2] = tos;
    for (int i = 0; i < 4; i++)
        params[3 + i] = t[i];
    if (tc_store_sql(s,
                     "SELECT @S.tc_rollup_late($1::int[], $2::bigint[], $3::bigint[],"
                     " $4::timestamptz, $5::timestamptz, $6::timestamptz, $7::timestamptz)",
                     sql, sizeof(sql)) < 0) {
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "statement too long");
        goto done;
    }
    res = PQexecParams(s->conn, sql, 7, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size,
                   "could not write the rollups' buckets closed since their readings were read"
                   " (minutes from %s, hours from %s): %s",
                   t[0], t[2], tc_store_pgmsg(s, res, msg, sizeof(msg)));
    } else {
        tc_log_info("rollups",
                    "%s one-minute buckets written from readings a closing passed over before"
                    " their flush (minutes from %s to %s, hours from %s to %s)",
                    PQgetvalue(res, 0, 0), t[0], t[1], t[2], t[3]);
    }
    PQclear(res);
done:
    free(parts);
    free(froms);
    free(tos);
    return err;
}

void tc_store_rollups_materialize_next(tc_store *s, int64_t close_after_us)
{
    s->materialize_after_us = close_after_us;
}

/* The materialization asked for, after a flush committed (autocommit: a transaction of its own).
 * Its failure loses nothing -- the buckets stay open, the views compute them -- so it is logged
 * and left to the next one. */
static void tc_store_rollups_materialize(tc_store *s)
{
    char after[24], sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX];
    const char *params[3] = {s->rollup_group, s->topic, after};
    PGresult *res;
    int64_t t0;

    if (s->materialize_after_us < 0)
        return;
    snprintf(after, sizeof(after), "%lld", (long long)s->materialize_after_us);
    s->materialize_after_us = -1;
    /* W at infinity: every bucket closed for good, nothing ever to close. */
    if (!tc_store_has_rollups(s) || s->version < TC_STORE_VERSION_CLOSED_ROLLUPS ||
        s->rollup_below_us[0] == INT64_MAX ||
        tc_store_sql(s,
                     "SELECT @S.tc_rollup_materialize($1, $2,"
                     " now() - $3::bigint * INTERVAL '1 microsecond')",
                     sql, sizeof(sql)) < 0)
        return;
    t0 = tc_time_now_us();
    res = PQexecParams(s->conn, sql, 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        long long buckets = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        res = NULL;
        /* W and H as they are now, for the bounds of the aggregates the sink fills next. */
        if (tc_store_rollup_thresholds(s, msg, sizeof(msg)) != TC_OK)
            tc_log_warn("rollups", "%s (the next flush reads them)", msg);
        if (buckets > 0)
            tc_log_info("rollups", "closed %lld one-minute buckets in %lld ms", buckets,
                        (long long)((tc_time_now_us() - t0) / 1000));
    } else {
        (void)tc_store_classify(s, res);
        tc_log_warn("rollups",
                    "could not close the rollup buckets ended %s us ago: %s (they stay"
                    " open, the views compute them; tried again later)",
                    after, tc_store_pgmsg(s, res, msg, sizeof(msg)));
    }
    PQclear(res);
}

/* The days of the one-minute groups have their partitions of rollup_1m (with readings', ddl.c)
 * before the flush's transaction: a late reading's group may come before the store sink made its
 * day. Known days cost nothing (the store's cache). */
static tc_err tc_store_ensure_rollup_days(tc_store *s, char *errstr, size_t errstr_size)
{
    int64_t first = INT64_MAX, last = INT64_MIN, day;

    if (s->version < TC_STORE_VERSION_DAILY_ROLLUPS || s->r1m.ngroups == 0)
        return TC_OK;
    for (size_t g = 0; g < s->r1m.ngroups; g++) {
        day = tc_time_day_of(s->r1m.groups[g].bucket_us);
        first = day < first ? day : first;
        last = day > last ? day : last;
    }
    return tc_store_ensure_days(s, first, last, errstr, errstr_size);
}

tc_err tc_store_rollups_flush(tc_store *s, const tc_partition_offset *marks, const int64_t *from,
                              size_t nmarks, char *errstr, size_t errstr_size)
{
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    /* New metrics get their rollup columns first, in a transaction of their own: DDL holds its
     * exclusive lock until commit, which must not wait on the upserts. */
    if (s->version >= TC_STORE_VERSION_ROLLUPS && tc_store_has_rollups(s)) {
        err = tc_store_ensure_rollup_columns(s, errstr, errstr_size);
        if (err == TC_OK)
            err = tc_store_ensure_rollup_days(s, errstr, errstr_size);
        if (err != TC_OK)
            return err;
    }
    err = tc_store_exec(s, "BEGIN", "begin transaction", errstr, errstr_size);
    if (err != TC_OK)
        return err;
    err = tc_store_rollup_thresholds(s, errstr, errstr_size);
    if (err == TC_OK && tc_store_has_rollups(s))
        err = tc_store_write_late(s, marks, from, nmarks, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_write_aggregates(s, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_write_offsets(s, s->rollup_group, marks, from, TC_STORE_MARK_ABSENT, nmarks,
                                     errstr, errstr_size);
    if (err != TC_OK) {
        tc_store_rollback(s, "the rollups");
        return err;
    }
    err = tc_store_exec(s, "COMMIT", "commit rollups", errstr, errstr_size);
    if (err == TC_OK) {
        tc_store_rollups_clear(s);
        tc_store_rollups_materialize(s);
    }
    return err;
}
