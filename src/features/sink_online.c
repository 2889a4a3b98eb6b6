/*
 * sink_online.c -- the online features sink; see sink_online.h.
 *
 * Two maps of window accumulators: `cur` takes the rows appended, `wr` is what the writer thread
 * writes. Starting a write swaps them (wr must be empty: the previous write's outcome was taken)
 * and snapshots each partition's taken mark as the mark the write moves to. The maps are keyed by
 * partition too, so a revocation drops exactly the revoked partitions' rows; a write joins the
 * entries of one (device, feature, window) from several partitions before it merges them into the
 * stored row, since one INSERT ... ON CONFLICT may touch a row only once.
 *
 * Why merge into the stored state rather than keep whole windows in memory: memory then holds
 * only what arrived since the last write (not every device's current windows), a late reading of
 * a closed window costs one row's read, and a restart needs to load nothing but the marks.
 */
#include "features/sink_online.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "features/defs.h"
#include "features/quality_src.h"
#include "features/window_agg.h"

/* Longest text of the quality sink's progress (tc_fq_progress_sql). */
#define TC_FO_PROGRESS_MAX 128

/* The columns of a row written (after device_id, feature, window_start_us). */
#define TC_FO_STATE_COLS                                                                           \
    "window_s, metric, aggregate, value, rows, n, mean, m2, min, max, t_mean, t_m2, c_tx,"         \
    " last_us, last, anomalies"

/* One accumulator: readings of one device, feature and window taken from one partition. */
typedef struct fo_entry {
    char *device; /* malloc'ed, NUL-terminated */
    uint32_t device_len;
    uint32_t def;
    int32_t partition;
    int64_t start_us;
    uint64_t hash;
    int skip; /* joined into an earlier entry of the same row (a write's scratch) */
    tc_wagg acc;
} fo_entry;

/* Open addressing over a dense entry array: slots hold entry index + 1 (0: free). */
typedef struct fo_map {
    fo_entry *ent;
    size_t n, cap;  /* entries; cap: fo_cap */
    uint32_t *slot; /* nslots = a power of two >= 2 * cap */
    size_t nslots;
    uint64_t rows; /* readings fed since the map was emptied */
} fo_map;

typedef struct fo_lane {
    int32_t partition;
    int64_t durable; /* the stored mark (TC_SINK_MARK_NONE: no row yet) */
    int64_t next;    /* the taken mark: the next offset appended */
} fo_lane;

typedef struct fo_mark {
    int32_t partition;
    int64_t from, to;
} fo_mark;

typedef enum { FO_IDLE, FO_WORK, FO_DONE } fo_state;

typedef struct tc_feat_online {
    tc_feat_defs defs;
    char *dsn, *schema_q, *group, *topic;
    int64_t flush_interval_us;
    PGconn *conn; /* the pipeline thread's: marks */

    fo_map maps[2];
    fo_map *cur, *wr;
    fo_lane lanes[TC_FEAT_ONLINE_LANES_MAX];
    size_t nlanes;
    int64_t last_write_us;

    /* The writer: state, its job (wr, the marks) and its outcome, under lock. */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    fo_state state;
    int stop;
    fo_mark marks[TC_FEAT_ONLINE_LANES_MAX];
    size_t nmarks;
    tc_err job_err;
    char job_errstr[TC_ERRSTR_MAX];
    PGconn *wconn; /* the writer's */
    tc_jbuf copy;

    /* The features of the quality monitor's tables (quality_src.h): whether there are any, the
     * quality sink's progress their values were last refreshed at and the one being refreshed
     * (the writer's), and whether the job under way is such a refresh only (no rows, no marks). */
    int quality;
    char qseen[TC_FO_PROGRESS_MAX], qnext[TC_FO_PROGRESS_MAX];
    int refresh_only;
    int closing;         /* the last job, at a clean stop: the horizon's refresh is not put off */
    int64_t qrefresh_us; /* when the horizon was last refreshed (the writer's) */
    uint64_t job_cpu_ns; /* the writer's CPU in its jobs so far (under lock) */

    tc_sink_stats st;
} tc_feat_online;

/* ---- the maps ---- */

static uint64_t fo_hash(const char *dev, size_t len, uint32_t def, int32_t part, int64_t start)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, then the numbers mixed in */

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)dev[i]) * 1099511628211ULL;
    h ^= ((uint64_t)def << 32) ^ (uint32_t)part;
    h *= 0x9e3779b97f4a7c15ULL;
    h ^= (uint64_t)start + (h >> 29);
    return h * 0xbf58476d1ce4e5b9ULL;
}

static tc_err fo_map_init(fo_map *m, size_t cap)
{
    memset(m, 0, sizeof(*m));
    m->cap = cap;
    m->nslots = 16;
    while (m->nslots < 2 * cap)
        m->nslots <<= 1;
    m->ent = calloc(cap, sizeof(*m->ent));
    m->slot = calloc(m->nslots, sizeof(*m->slot));
    return m->ent && m->slot ? TC_OK : TC_ERR_NOMEM;
}

static void fo_map_clear(fo_map *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->ent[i].device);
    if (m->n)
        memset(m->slot, 0, m->nslots * sizeof(*m->slot));
    m->n = 0;
    m->rows = 0;
}

static void fo_map_free(fo_map *m)
{
    if (m->ent)
        fo_map_clear(m);
    free(m->ent);
    free(m->slot);
}

/* The entry of the key, created empty when new; NULL when the map is full or out of memory
 * (*full says which). */
static fo_entry *fo_map_get(fo_map *m, const tc_feat_def *d, uint32_t def, const char *dev,
                            size_t len, int32_t part, int64_t start, int *full)
{
    uint64_t h = fo_hash(dev, len, def, part, start);
    size_t i = (size_t)h & (m->nslots - 1);
    fo_entry *e;

    for (; m->slot[i]; i = (i + 1) & (m->nslots - 1)) {
        e = &m->ent[m->slot[i] - 1];
        if (e->hash == h && e->def == def && e->partition == part && e->start_us == start &&
            e->device_len == len && !memcmp(e->device, dev, len))
            return e;
    }
    *full = m->n == m->cap;
    if (*full)
        return NULL;
    e = &m->ent[m->n];
    memset(e, 0, sizeof(*e));
    e->device = malloc(len + 1);
    if (!e->device)
        return NULL;
    memcpy(e->device, dev, len);
    e->device[len] = '\0';
    e->device_len = (uint32_t)len;
    e->def = def;
    e->partition = part;
    e->start_us = start;
    e->hash = h;
    tc_wagg_init(&e->acc, start, d->lo, d->hi);
    m->slot[i] = (uint32_t)++m->n;
    return e;
}

/* Keep only the entries of partitions not in parts[0..n). */
static tc_err fo_map_drop(fo_map *m, const int32_t *parts, size_t n)
{
    size_t keep = 0;

    for (size_t i = 0; i < m->n; i++) {
        int drop = 0;
        for (size_t k = 0; k < n && !drop; k++)
            drop = m->ent[i].partition == parts[k];
        if (drop)
            free(m->ent[i].device);
        else
            m->ent[keep++] = m->ent[i];
    }
    m->n = keep;
    memset(m->slot, 0, m->nslots * sizeof(*m->slot));
    for (size_t i = 0; i < m->n; i++) {
        size_t s = (size_t)m->ent[i].hash & (m->nslots - 1);
        while (m->slot[s])
            s = (s + 1) & (m->nslots - 1);
        m->slot[s] = (uint32_t)(i + 1);
    }
    return TC_OK;
}

/* ---- lanes (marks per partition) ---- */

static fo_lane *fo_lane_find(tc_feat_online *s, int32_t partition)
{
    for (size_t i = 0; i < s->nlanes; i++)
        if (s->lanes[i].partition == partition)
            return &s->lanes[i];
    return NULL;
}

static void fo_lane_remove(tc_feat_online *s, int32_t partition)
{
    fo_lane *l = fo_lane_find(s, partition);

    if (l)
        *l = s->lanes[--s->nlanes];
}

/* ---- PostgreSQL ---- */

static tc_err fo_pgerr(PGconn *conn, PGresult *res, const char *what, char *errstr,
                       size_t errstr_size)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    char text[TC_ERRSTR_MAX];
    size_t len;
    /* Lost connections, serialization failures and deadlocks are worth a retry. */
    int retry = PQstatus(conn) != CONNECTION_OK || !state || !strncmp(state, "08", 2) ||
                !strcmp(state, "40001") || !strcmp(state, "40P01") || !strncmp(state, "57P", 3);

    snprintf(text, sizeof(text), "%s", msg ? msg : "");
    len = strlen(text);
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    return tc_err_set(retry ? TC_ERR_DB_CONN : TC_ERR_DB, errstr, errstr_size, "features: %s: %s",
                      what, text);
}

static tc_err fo_connect(PGconn **conn, const char *dsn, char *errstr, size_t errstr_size)
{
    PGresult *res;

    if (*conn && PQstatus(*conn) == CONNECTION_OK)
        return TC_OK;
    PQfinish(*conn);
    *conn = PQconnectdb(dsn);
    if (PQstatus(*conn) != CONNECTION_OK) {
        tc_err err =
            fo_pgerr(*conn, NULL, "connect to PostgreSQL (postgres.dsn)", errstr, errstr_size);
        PQfinish(*conn);
        *conn = NULL;
        return err;
    }
    res = PQexec(*conn, "SET TIME ZONE 'UTC'; SET application_name = 'thermocline-features'");
    PQclear(res);
    return TC_OK;
}

/* tmpl with every "@S" replaced by the quoted schema, run with text parameters. */
static tc_err fo_exec(tc_feat_online *s, PGconn *conn, const char *tmpl, int n,
                      const char *const *values, PGresult **out, const char *what, char *errstr,
                      size_t errstr_size)
{
    tc_jbuf b;
    PGresult *res;
    ExecStatusType st;
    tc_err err = TC_OK;

    if (out)
        *out = NULL;
    tc_jbuf_init(&b, 0);
    for (const char *p = tmpl; *p;) {
        const char *at = strstr(p, "@S");
        size_t len = at ? (size_t)(at - p) : strlen(p);
        tc_jbuf_append(&b, p, len);
        if (!at)
            break;
        tc_jbuf_append(&b, s->schema_q, strlen(s->schema_q));
        p = at + 2;
    }
    if (tc_jbuf_failed(&b)) {
        tc_jbuf_free(&b);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "features: out of memory");
    }
    /* Without parameters several statements may go in one round trip. */
    res = n ? PQexecParams(conn, b.data, n, NULL, values, NULL, NULL, 0) : PQexec(conn, b.data);
    tc_jbuf_free(&b);
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_COPY_IN)
        err = fo_pgerr(conn, res, what, errstr, errstr_size);
    if (err == TC_OK && out)
        *out = res;
    else
        PQclear(res);
    return err;
}

/* The stored marks of parts into next[] (TC_SINK_MARK_NONE: no row). */
static tc_err fo_read_marks(tc_feat_online *s, const int32_t *parts, size_t n, int64_t *next,
                            char *errstr, size_t errstr_size)
{
    tc_err err = fo_connect(&s->conn, s->dsn, errstr, errstr_size);

    for (size_t i = 0; err == TC_OK && i < n; i++) {
        char part[16];
        const char *params[3] = {s->group, s->topic, part};
        PGresult *res;

        snprintf(part, sizeof(part), "%" PRId32, parts[i]);
        err = fo_exec(s, s->conn,
                      "SELECT next_offset FROM @S.features_online_offsets"
                      " WHERE group_id = $1 AND topic = $2 AND partition = $3::int",
                      3, params, &res, "read the features marks", errstr, errstr_size);
        if (err != TC_OK)
            break;
        next[i] =
            PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : TC_SINK_MARK_NONE;
        PQclear(res);
    }
    return err;
}

/* ---- the write (on the writer thread) ---- */

static int fo_entry_cmp(const void *pa, const void *pb)
{
    const fo_entry *a = pa, *b = pb;
    int c = strcmp(a->device, b->device);

    if (c)
        return c;
    if (a->def != b->def)
        return a->def < b->def ? -1 : 1;
    if (a->start_us != b->start_us)
        return a->start_us < b->start_us ? -1 : 1;
    return a->partition < b->partition ? -1 : a->partition > b->partition;
}

/* A device id as COPY text (backslash, tab and line ends escaped). */
static void fo_copy_text(tc_jbuf *b, const char *s)
{
    for (; *s; s++) {
        const char *esc = *s == '\\'   ? "\\\\"
                          : *s == '\t' ? "\\t"
                          : *s == '\n' ? "\\n"
                          : *s == '\r' ? "\\r"
                                       : NULL;
        if (esc)
            tc_jbuf_append(b, esc, 2);
        else
            tc_jbuf_append(b, s, 1);
    }
}

static void fo_copy_double(tc_jbuf *b, double v)
{
    char num[TC_FMT_DOUBLE_MAX];

    if (isnan(v))
        snprintf(num, sizeof(num), "NaN");
    else if (isinf(v))
        snprintf(num, sizeof(num), "%s", v > 0 ? "Infinity" : "-Infinity");
    else
        tc_fmt_double(num, sizeof(num), v);
    tc_jbuf_append(b, "\t", 1);
    tc_jbuf_append(b, num, strlen(num));
}

static void fo_copy_int(tc_jbuf *b, int64_t v)
{
    char num[32];
    int len = snprintf(num, sizeof(num), "\t%" PRId64, v);

    tc_jbuf_append(b, num, (size_t)len);
}

/* One row: its key, and with full its state and value. */
static void fo_copy_row(tc_feat_online *s, tc_jbuf *b, const fo_entry *e, int full)
{
    const tc_feat_def *d = &s->defs.def[e->def];
    const tc_wagg *a = &e->acc;
    double v;

    fo_copy_text(b, e->device);
    tc_jbuf_append(b, "\t", 1);
    fo_copy_text(b, d->name);
    fo_copy_int(b, e->start_us);
    if (full) {
        fo_copy_int(b, d->window_s);
        tc_jbuf_append(b, "\t", 1);
        fo_copy_text(b, d->metric);
        tc_jbuf_append(b, "\t", 1);
        fo_copy_text(b, tc_feat_agg_name(d->agg));
        if (tc_wagg_finish(a, d->agg, &v))
            fo_copy_double(b, v);
        else
            tc_jbuf_append(b, "\t\\N", 3);
        fo_copy_int(b, a->rows);
        fo_copy_int(b, a->n);
        fo_copy_double(b, a->mean);
        fo_copy_double(b, a->m2);
        fo_copy_double(b, a->min);
        fo_copy_double(b, a->max);
        fo_copy_double(b, a->t_mean);
        fo_copy_double(b, a->t_m2);
        fo_copy_double(b, a->c_tx);
        fo_copy_int(b, a->last_us);
        fo_copy_double(b, a->last);
        fo_copy_int(b, a->out_of_range); /* the column's name predates out_of_range */
    } else {
        tc_jbuf_append(b,
                       "\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N"
                       "\t\\N\t\\N",
                       48);
    }
    tc_jbuf_append(b, "\n", 1);
}

static tc_err fo_copy(tc_feat_online *s, tc_jbuf *b, const char *what, char *errstr,
                      size_t errstr_size)
{
    PGresult *res;
    tc_err err;

    if (tc_jbuf_failed(b))
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size,
                          "features: %s: more than %zu bytes of rows in one write", what,
                          (size_t)TC_FEAT_ONLINE_COPY_MAX);
    err = fo_exec(
        s, s->wconn,
        "COPY pg_temp.tc_features_online_in (device_id, feature, start_us, " TC_FO_STATE_COLS
        ") FROM STDIN",
        0, NULL, NULL, what, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if ((b->len && PQputCopyData(s->wconn, b->data, (int)b->len) != 1) ||
        PQputCopyEnd(s->wconn, NULL) != 1)
        return fo_pgerr(s->wconn, NULL, what, errstr, errstr_size);
    res = PQgetResult(s->wconn);
    err = PQresultStatus(res) == PGRES_COMMAND_OK
              ? TC_OK
              : fo_pgerr(s->wconn, res, what, errstr, errstr_size);
    PQclear(res);
    while ((res = PQgetResult(s->wconn)) != NULL)
        PQclear(res);
    return err;
}

/* The rows of m's entries (but those joined into another) into the temporary table: their keys
 * only, or with full their state and value. */
static tc_err fo_send(tc_feat_online *s, const fo_map *m, int full, const char *what, char *errstr,
                      size_t errstr_size)
{
    tc_jbuf_reset(&s->copy);
    for (size_t i = 0; i < m->n; i++)
        if (!m->ent[i].skip)
            fo_copy_row(s, &s->copy, &m->ent[i], full);
    return fo_copy(s, &s->copy, what, errstr, errstr_size);
}

/* Merge the stored state of the rows the write touches into them (runs: first entry of each). */
static tc_err fo_merge_stored(tc_feat_online *s, fo_entry *ent, size_t n, char *errstr,
                              size_t errstr_size)
{
    PGresult *res;
    tc_err err =
        fo_exec(s, s->wconn,
                "SELECT f.device_id, f.feature, i.start_us, f.rows, f.n, f.mean, f.m2, f.min,"
                " f.max, f.t_mean, f.t_m2, f.c_tx, f.last_us, f.last, f.anomalies"
                " FROM @S.features_online f JOIN pg_temp.tc_features_online_in i"
                " ON f.device_id = i.device_id AND f.feature = i.feature"
                " AND f.window_start = to_timestamp(0) + i.start_us * interval '1 microsecond'"
                " FOR UPDATE OF f",
                0, NULL, &res, "read the stored windows", errstr, errstr_size);

    if (err != TC_OK)
        return err;
    for (int r = 0; r < PQntuples(res); r++) {
        const tc_feat_def *d = tc_feat_defs_find(&s->defs, PQgetvalue(res, r, 1));
        fo_entry key = {.device = PQgetvalue(res, r, 0),
                        .def = d ? (uint32_t)(d - s->defs.def) : 0,
                        .start_us = strtoll(PQgetvalue(res, r, 2), NULL, 10),
                        .partition = INT32_MIN};
        size_t lo = 0, hi = n;
        tc_wagg stored;

        if (!d)
            continue;
        /* The first entry of the run: the lowest partition sorts first. */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (fo_entry_cmp(&ent[mid], &key) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == n || strcmp(ent[lo].device, key.device) || ent[lo].def != key.def ||
            ent[lo].start_us != key.start_us)
            continue;
        tc_wagg_init(&stored, key.start_us, d->lo, d->hi);
        stored.rows = strtoll(PQgetvalue(res, r, 3), NULL, 10);
        stored.n = strtoll(PQgetvalue(res, r, 4), NULL, 10);
        stored.mean = strtod(PQgetvalue(res, r, 5), NULL);
        stored.m2 = strtod(PQgetvalue(res, r, 6), NULL);
        stored.min = strtod(PQgetvalue(res, r, 7), NULL);
        stored.max = strtod(PQgetvalue(res, r, 8), NULL);
        stored.t_mean = strtod(PQgetvalue(res, r, 9), NULL);
        stored.t_m2 = strtod(PQgetvalue(res, r, 10), NULL);
        stored.c_tx = strtod(PQgetvalue(res, r, 11), NULL);
        stored.last_us = strtoll(PQgetvalue(res, r, 12), NULL, 10);
        stored.last = strtod(PQgetvalue(res, r, 13), NULL);
        stored.out_of_range = strtoll(PQgetvalue(res, r, 14), NULL, 10);
        /* What is stored was read before what the write holds. */
        tc_wagg_merge(&stored, &ent[lo].acc);
        ent[lo].acc = stored;
    }
    PQclear(res);
    return TC_OK;
}

/* The marks of the write, each from the value this member last read or wrote. */
static tc_err fo_write_marks(tc_feat_online *s, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < s->nmarks; i++) {
        const fo_mark *mk = &s->marks[i];
        char part[16], to[24], from[24];
        const char *params[5] = {s->group, s->topic, part, to, from};
        PGresult *res;
        tc_err err;

        snprintf(part, sizeof(part), "%" PRId32, mk->partition);
        snprintf(to, sizeof(to), "%" PRId64, mk->to);
        snprintf(from, sizeof(from), "%" PRId64, mk->from);
        err = fo_exec(s, s->wconn,
                      mk->from == TC_SINK_MARK_NONE
                          ? "INSERT INTO @S.features_online_offsets (group_id, topic, partition,"
                            " next_offset) VALUES ($1, $2, $3::int, $4::bigint)"
                            " ON CONFLICT (group_id, topic, partition) DO NOTHING"
                          : "UPDATE @S.features_online_offsets SET next_offset = $4::bigint,"
                            " updated_at = now() WHERE group_id = $1 AND topic = $2"
                            " AND partition = $3::int AND next_offset = $5::bigint",
                      mk->from == TC_SINK_MARK_NONE ? 4 : 5, params, &res,
                      "write the features marks", errstr, errstr_size);
        if (err != TC_OK)
            return err;
        err = strcmp(PQcmdTuples(res), "1")
                  ? tc_err_set(TC_ERR_FENCED, errstr, errstr_size,
                               "features marks of topic \"%s\" partition %" PRId32
                               ": the stored next offset is no longer %" PRId64
                               ", where this write started: another member owns it now",
                               s->topic, mk->partition, mk->from)
                  : TC_OK;
        PQclear(res);
        if (err != TC_OK)
            return err;
    }
    return TC_OK;
}

/* The values of the quality features (quality_src.h): of the rows the write touched (in its
 * transaction, which holds them), or with horizon of every row of the last TC_FQ_HORIZON_S. */
static tc_err fo_refresh(tc_feat_online *s, int horizon, char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;

    for (size_t k = 0; err == TC_OK && k < s->defs.n; k++) {
        const tc_feat_def *d = &s->defs.def[k];
        char sql[TC_FQ_SQL_MAX];
        const char *name[1] = {d->name};

        if (!tc_feat_agg_from_quality(d->agg))
            continue;
        if (tc_fq_refresh_sql(d->agg, horizon, sql, sizeof(sql)) < 0)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "features: \"%s\": no refresh statement", d->name);
        err = fo_exec(s, s->wconn, sql, 1, name, NULL, "refresh the quality features", errstr,
                      errstr_size);
    }
    return err;
}

/* After a write: when the quality sink committed since the last look, the horizon's rows again,
 * each statement a transaction of its own. It writes no mark and is idempotent (the same tables
 * give the same values), so a failure -- a deadlock with another member's write over rows of its
 * devices, a lost connection -- is only logged: the next look does it again. */
static void fo_refresh_horizon(tc_feat_online *s, int force)
{
    const char *params[1] = {s->topic};
    char errstr[TC_ERRSTR_MAX];
    PGresult *res;
    tc_err err = fo_exec(s, s->wconn, tc_fq_progress_sql, 1, params, &res,
                         "read the quality sink's progress", errstr, sizeof(errstr));

    if (err == TC_OK) {
        snprintf(s->qnext, sizeof(s->qnext), "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
        PQclear(res);
        /* Unchanged, or changed but refreshed less than TC_FQ_REFRESH_MIN_S ago (the horizon's
         * rows cost seconds when they are many: quality_src.h): not now. */
        if (!strcmp(s->qnext, s->qseen) ||
            (!force && tc_time_now_us() - s->qrefresh_us < TC_FQ_REFRESH_MIN_S * 1000000LL))
            return;
        s->qrefresh_us = tc_time_now_us();
        err = fo_refresh(s, 1, errstr, sizeof(errstr));
    }
    if (err == TC_OK)
        memcpy(s->qseen, s->qnext, sizeof(s->qseen));
    else
        tc_log_warn("features",
                    "the quality features were not refreshed (again at the next "
                    "look): %s",
                    errstr);
}

static tc_err fo_write(tc_feat_online *s, char *errstr, size_t errstr_size)
{
    fo_map *m = s->wr;
    tc_err err = fo_connect(&s->wconn, s->dsn, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    err = fo_exec(s, s->wconn,
                  "BEGIN; CREATE TEMP TABLE IF NOT EXISTS tc_features_online_in (device_id text,"
                  " feature text, start_us bigint, window_s integer, metric text, aggregate text,"
                  " value double precision, rows bigint, n bigint, mean double precision,"
                  " m2 double precision, min double precision, max double precision,"
                  " t_mean double precision, t_m2 double precision, c_tx double precision,"
                  " last_us bigint, last double precision, anomalies bigint)"
                  " ON COMMIT DELETE ROWS",
                  0, NULL, NULL, "begin a features write", errstr, errstr_size);
    /* Fence first: a member that lost its partitions learns it before writing anything. */
    if (err == TC_OK)
        err = fo_write_marks(s, errstr, errstr_size);
    if (err == TC_OK && m->n) {
        /* Runs of one (device, feature, window) from several partitions join into the first. */
        qsort(m->ent, m->n, sizeof(*m->ent), fo_entry_cmp);
        for (size_t i = 1; i < m->n; i++) {
            size_t first = i - 1;
            while (m->ent[first].skip)
                first--;
            if (!strcmp(m->ent[i].device, m->ent[first].device) &&
                m->ent[i].def == m->ent[first].def &&
                m->ent[i].start_us == m->ent[first].start_us) {
                tc_wagg_merge(&m->ent[first].acc, &m->ent[i].acc);
                m->ent[i].skip = 1;
            }
        }
        err = fo_send(s, m, 0, "send the windows' keys", errstr, errstr_size);
        if (err == TC_OK)
            err = fo_merge_stored(s, m->ent, m->n, errstr, errstr_size);
        if (err == TC_OK)
            err = fo_exec(s, s->wconn, "TRUNCATE pg_temp.tc_features_online_in", 0, NULL, NULL,
                          "empty the windows' keys", errstr, errstr_size);
        if (err == TC_OK)
            err = fo_send(s, m, 1, "send the windows", errstr, errstr_size);
        if (err == TC_OK)
            err = fo_exec(
                s, s->wconn,
                "INSERT INTO @S.features_online (device_id, feature, window_start, window_end,"
                " " TC_FO_STATE_COLS ", updated_at) SELECT device_id, feature,"
                " to_timestamp(0) + start_us * interval '1 microsecond',"
                " to_timestamp(0) + (start_us + window_s * 1000000::bigint) * interval '1"
                " microsecond', " TC_FO_STATE_COLS ", now() FROM pg_temp.tc_features_online_in"
                " ON CONFLICT (device_id, feature, window_start) DO UPDATE SET"
                " window_end = excluded.window_end, window_s = excluded.window_s,"
                " metric = excluded.metric, aggregate = excluded.aggregate,"
                " value = excluded.value, rows = excluded.rows, n = excluded.n,"
                " mean = excluded.mean, m2 = excluded.m2, min = excluded.min,"
                " max = excluded.max, t_mean = excluded.t_mean, t_m2 = excluded.t_m2,"
                " c_tx = excluded.c_tx, last_us = excluded.last_us, last = excluded.last,"
                " anomalies = excluded.anomalies, updated_at = now()",
                0, NULL, NULL, "upsert the windows into features_online", errstr, errstr_size);
    }
    if (err == TC_OK && s->quality && m->n)
        err = fo_refresh(s, 0, errstr, errstr_size);
    if (err == TC_OK)
        err = fo_exec(s, s->wconn, "COMMIT", 0, NULL, NULL, "commit a features write", errstr,
                      errstr_size);
    if (err == TC_OK && s->quality)
        fo_refresh_horizon(s, s->closing);
    if (err != TC_OK && s->wconn && PQstatus(s->wconn) == CONNECTION_OK) {
        PGresult *res = PQexec(s->wconn, "ROLLBACK");
        PQclear(res);
    }
    return err;
}

static void *fo_writer_main(void *arg)
{
    tc_feat_online *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->stop && s->state != FO_WORK)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->stop)
            break;
        pthread_mutex_unlock(&s->lock);
        {
            char errstr[TC_ERRSTR_MAX] = "";
            uint64_t cpu = tc_time_thread_cpu_ns();
            tc_err err = fo_write(s, errstr, sizeof(errstr));

            cpu = tc_time_thread_cpu_since(cpu);
            pthread_mutex_lock(&s->lock);
            s->job_cpu_ns += cpu;
            s->job_err = err;
            snprintf(s->job_errstr, sizeof(s->job_errstr), "%s", errstr);
        }
        s->state = FO_DONE;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- the pipeline's side ---- */

static fo_state fo_wait(tc_feat_online *s, int block)
{
    fo_state st;

    pthread_mutex_lock(&s->lock);
    while (block && s->state == FO_WORK)
        pthread_cond_wait(&s->cond, &s->lock);
    st = s->state;
    pthread_mutex_unlock(&s->lock);
    return st;
}

/* A finished write's outcome: its marks become durable, or its error is returned. */
static tc_err fo_collect(tc_feat_online *s, char *errstr, size_t errstr_size)
{
    tc_err err = s->job_err;

    if (err == TC_OK) {
        for (size_t i = 0; i < s->nmarks; i++) {
            fo_lane *l = fo_lane_find(s, s->marks[i].partition);
            if (l && l->durable == s->marks[i].from)
                l->durable = s->marks[i].to;
        }
        s->st.rows_durable += s->wr->rows;
        s->st.flushes += !s->refresh_only;
    } else {
        snprintf(errstr, errstr_size, "%s", s->job_errstr);
    }
    fo_map_clear(s->wr);
    s->nmarks = 0;
    pthread_mutex_lock(&s->lock);
    s->state = FO_IDLE;
    pthread_mutex_unlock(&s->lock);
    return err;
}

/* Wait for a write under way and forget its outcome (recover, close: the marks are read again). */
static void fo_abandon(tc_feat_online *s)
{
    char errstr[TC_ERRSTR_MAX];

    if (fo_wait(s, 1) == FO_DONE)
        (void)fo_collect(s, errstr, sizeof(errstr));
}

static int fo_pending(const tc_feat_online *s)
{
    if (s->cur->n)
        return 1;
    for (size_t i = 0; i < s->nlanes; i++)
        if (s->lanes[i].next != s->lanes[i].durable)
            return 1;
    return 0;
}

static void fo_start(tc_feat_online *s, int64_t now_us, int refresh_only)
{
    fo_map *t = s->wr;

    s->refresh_only = refresh_only;
    s->wr = s->cur;
    s->cur = t;
    s->nmarks = 0;
    for (size_t i = 0; i < s->nlanes; i++)
        if (s->lanes[i].next != s->lanes[i].durable)
            s->marks[s->nmarks++] =
                (fo_mark){s->lanes[i].partition, s->lanes[i].durable, s->lanes[i].next};
    s->last_write_us = now_us;
    pthread_mutex_lock(&s->lock);
    s->state = FO_WORK;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static tc_err fo_open(void *ctx, const int32_t *parts, size_t n, int64_t *next, char *errstr,
                      size_t errstr_size)
{
    tc_feat_online *s = ctx;
    tc_err err = fo_read_marks(s, parts, n, next, errstr, errstr_size);

    for (size_t i = 0; err == TC_OK && i < n; i++) {
        fo_lane *l = fo_lane_find(s, parts[i]);
        if (!l) {
            if (s->nlanes == TC_FEAT_ONLINE_LANES_MAX)
                return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                  "features: more than %d partitions", TC_FEAT_ONLINE_LANES_MAX);
            l = &s->lanes[s->nlanes++];
        }
        *l = (fo_lane){parts[i], next[i], next[i]};
    }
    return err;
}

static tc_err fo_append(void *ctx, const tc_sink_rows *rows, char *errstr, size_t errstr_size)
{
    tc_feat_online *s = ctx;
    const tc_batch *b = rows->batch;
    size_t held = s->cur->n;
    /* Per definition: the batch's column of its metric (fixed or promoted), or none. */
    const double *col[TC_FEAT_DEFS_MAX];
    const uint8_t *has[TC_FEAT_DEFS_MAX];

    for (size_t k = 0; k < s->defs.n; k++) {
        const char *metric = s->defs.def[k].metric;
        int m = tc_metric_lookup(metric, strlen(metric));

        col[k] = NULL;
        has[k] = NULL;
        if (m >= 0) {
            col[k] = b->metric[m];
            has[k] = b->present[m];
        }
        for (size_t j = 0; m < 0 && j < b->ndyn; j++)
            if (!strcmp(b->dyn_name[j], metric)) {
                col[k] = b->dyn[j];
                has[k] = b->dyn_present[j];
            }
    }
    for (size_t i = 0; i < b->n; i++) {
        if (!rows->mask[i])
            continue;
        for (size_t k = 0; k < s->defs.n; k++) {
            const tc_feat_def *d = &s->defs.def[k];
            int full = 0;
            fo_entry *e = fo_map_get(s->cur, d, (uint32_t)k, b->device_id[i].ptr,
                                     b->device_id[i].len, b->partition[i],
                                     tc_wagg_window_start(b->time_us[i], d->window_s), &full);

            if (!e && !full)
                return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "features: out of memory");
            if (!e)
                /* Retriable: the pipeline drops what is taken and reads it again after a write
                 * emptied the map. An empty map holds any batch (fo_cap), so the other branch
                 * is a broken invariant, not a state to wait out. */
                return tc_err_set(held ? TC_ERR_FULL : TC_ERR_CONFIG, errstr, errstr_size,
                                  "features: more than %zu windows held, at topic \"%s\" partition"
                                  " %" PRId32 " offset %" PRId64 " (features.online_max_windows)",
                                  s->cur->cap, s->topic, b->partition[i], b->offset[i]);
            tc_wagg_update(&e->acc, b->time_us[i], col[k] ? col[k][i] : NAN,
                           has[k] ? has[k][i] : 0);
        }
        s->cur->rows++;
        s->st.rows++;
    }
    for (size_t i = 0; i < rows->nadvance; i++) {
        fo_lane *l = fo_lane_find(s, rows->advance[i].partition);
        if (l)
            l->next = rows->advance[i].next_offset;
    }
    return TC_OK;
}

static tc_err fo_flush(void *ctx, int64_t now_us, int force, int *busy, char *errstr,
                       size_t errstr_size)
{
    tc_feat_online *s = ctx;
    fo_state st = fo_wait(s, 0);
    int64_t now = tc_time_now_us();

    (void)now_us;
    *busy = 0;
    if (st == FO_WORK) {
        *busy = 1;
        return TC_OK;
    }
    if (st == FO_DONE) {
        tc_err err = fo_collect(s, errstr, errstr_size);
        if (err != TC_OK)
            return err;
    }
    if (fo_pending(s) &&
        (force || s->cur->n * 2 >= s->cur->cap || now - s->last_write_us >= s->flush_interval_us)) {
        fo_start(s, now, 0);
        *busy = 1;
    } else if (s->quality && now - s->last_write_us >= s->flush_interval_us) {
        /* Nothing to write, but the quality sink may have committed figures or findings of
         * windows already written: the writer looks (one small query) and refreshes them. */
        fo_start(s, now, 1);
        *busy = 1;
    }
    return TC_OK;
}

static int64_t fo_durable(void *ctx, int32_t partition)
{
    fo_lane *l = fo_lane_find(ctx, partition);

    return l ? l->durable : TC_SINK_MARK_NONE;
}

/* The partition's stored mark, whoever writes it now (run --exit-when-idle). */
static int64_t fo_stored(void *ctx, int32_t partition)
{
    char errstr[TC_ERRSTR_MAX];
    int64_t next;

    if (fo_read_marks(ctx, &partition, 1, &next, errstr, sizeof(errstr)) != TC_OK)
        return TC_SINK_MARK_NONE; /* unreadable: not known to be whole */
    return next;
}

static tc_err fo_recover(void *ctx, const int32_t *parts, size_t n, int64_t *next, char *errstr,
                         size_t errstr_size)
{
    tc_feat_online *s = ctx;

    fo_abandon(s);
    fo_map_clear(s->cur);
    s->nlanes = 0;
    return fo_open(ctx, parts, n, next, errstr, errstr_size);
}

static tc_err fo_revoke(void *ctx, const int32_t *parts, size_t n, int commit, char *errstr,
                        size_t errstr_size)
{
    tc_feat_online *s = ctx;

    (void)commit; /* flushed first when set; either way the partitions' rows go */
    (void)errstr;
    (void)errstr_size;
    /* A write under way finishes (fenced if the partitions moved on); flush takes its outcome. */
    (void)fo_wait(s, 1);
    for (size_t i = 0; i < n; i++)
        fo_lane_remove(s, parts[i]);
    return fo_map_drop(s->cur, parts, n);
}

static void fo_stats(void *ctx, tc_sink_stats *out)
{
    tc_feat_online *s = ctx;

    *out = s->st;
    out->pending = s->cur->n + (fo_wait(s, 0) == FO_IDLE ? 0 : s->wr->n);
}

static void fo_close(void *ctx)
{
    tc_feat_online *s = ctx;

    fo_abandon(s);
    /* The other sinks flushed before a clean stop: the quality sink's last commit is in, so one
     * last refresh leaves the quality features of the run right (writer parked: its connection
     * is free). Only over a connection that works: a stop must not wait for a database. */
    if (s->quality && s->wconn && PQstatus(s->wconn) == CONNECTION_OK) {
        char errstr[TC_ERRSTR_MAX];

        s->nmarks = 0;
        s->closing = 1;
        if (fo_write(s, errstr, sizeof(errstr)) != TC_OK)
            tc_log_warn("features", "the last refresh of the quality features failed: %s", errstr);
    }
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    fo_map_free(&s->maps[0]);
    fo_map_free(&s->maps[1]);
    tc_jbuf_free(&s->copy);
    PQfinish(s->conn);
    PQfinish(s->wconn);
    free(s->dsn);
    free(s->schema_q);
    free(s->group);
    free(s->topic);
    free(s);
}

/* The writer's thread: the rest of the sink's work is on the pipeline thread. */
static uint64_t fo_thread_cpu_ns(void *ctx)
{
    tc_feat_online *s = ctx;
    uint64_t ns;

    pthread_mutex_lock(&s->lock);
    ns = s->job_cpu_ns;
    pthread_mutex_unlock(&s->lock);
    return ns;
}

static const tc_sink_ops tc_feat_online_ops = {
    .name = "features",
    .open = fo_open,
    .append = fo_append,
    .flush = fo_flush,
    .durable = fo_durable,
    .recover = fo_recover,
    .revoke = fo_revoke,
    .stats = fo_stats,
    .close = fo_close,
    .stored = fo_stored,
    .thread_cpu_ns = fo_thread_cpu_ns,
};

/*
 * The windows a map holds: features.online_max_windows, but never fewer than one batch can bring
 * (a reading touches one window per definition). Below that, a batch arriving at an empty map
 * could never be taken -- no write empties it further -- and the run would stop on data it has
 * no fault in (many devices, a batch grown to pipeline.batch_size_max behind a busy store).
 */
static size_t fo_cap(const tc_config *cfg, size_t ndefs)
{
    size_t want = (size_t)cfg->features_online_max_windows;
    size_t batch = tc_config_batch_cap(cfg) * ndefs;

    if (want >= batch)
        return want;
    tc_log_info("features",
                "features.online_max_windows %zu raised to %zu: pipeline.batch_size_max %zu"
                " readings x %zu definitions, what one batch can bring",
                want, batch, tc_config_batch_cap(cfg), ndefs);
    return batch;
}

tc_err tc_feat_online_sink_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size)
{
    tc_feat_online *s = calloc(1, sizeof(*s));
    size_t cap;
    char *q;

    if (!s)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "features sink: out of memory");
    if (tc_feat_defs_parse(cfg->features_definitions, &s->defs, errstr, errstr_size) != TC_OK) {
        free(s);
        return TC_ERR_CONFIG;
    }
    if (s->defs.n == 0) {
        free(s);
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "pipeline.sinks names \"features\" but features.definitions is empty");
    }
    cap = fo_cap(cfg, s->defs.n);
    q = malloc(strlen(cfg->pg_schema) * 2 + 3);
    if (q) {
        char *o = q;
        *o++ = '"';
        for (const char *p = cfg->pg_schema; *p; p++) {
            if (*p == '"')
                *o++ = '"';
            *o++ = *p;
        }
        *o++ = '"';
        *o = '\0';
    }
    s->schema_q = q;
    s->dsn = strdup(cfg->pg_dsn);
    s->group = strdup(cfg->kafka_group);
    s->topic = strdup(cfg->kafka_topic);
    s->flush_interval_us = cfg->features_online_flush_interval_ms * 1000;
    s->quality = tc_feat_defs_need_quality(&s->defs);
    s->cur = &s->maps[0];
    s->wr = &s->maps[1];
    tc_jbuf_init(&s->copy, TC_FEAT_ONLINE_COPY_MAX);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (!q || !s->dsn || !s->group || !s->topic || fo_map_init(&s->maps[0], cap) != TC_OK ||
        fo_map_init(&s->maps[1], cap) != TC_OK ||
        pthread_create(&s->thread, NULL, fo_writer_main, s) != 0) {
        fo_map_free(&s->maps[0]);
        fo_map_free(&s->maps[1]);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(q);
        free(s->dsn);
        free(s->group);
        free(s->topic);
        free(s);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "features sink: out of memory");
    }
    s->last_write_us = tc_time_now_us();
    memset(out, 0, sizeof(*out));
    out->ops = &tc_feat_online_ops;
    out->ctx = s;
    snprintf(out->name, sizeof(out->name), "%s", tc_feat_online_ops.name);
    return TC_OK;
}
