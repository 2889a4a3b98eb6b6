/*
 * monitor.c -- the quality monitor's engine; see monitor.h for the model (lanes, one transaction
 * per flush, fencing, what a restart keeps).
 *
 * The engine feeds the lanes, opens and revokes partitions, and runs flushes: monitor_flush.c
 * builds a flush's statements from what is held (monitor_int.h), the writer runs them on its
 * thread, and the outcome is applied here when it is polled. A lane's mark and checkpoint are
 * always the current ones: everything fed below the mark is either in the state or in what the
 * transaction writes.
 */
#include "quality/monitor.h"

#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "quality/bufs.h"
#include "quality/ckpt.h"
#include "quality/detect.h"
#include "quality/ids.h"
#include "quality/metrics.h"
#include "quality/monitor_int.h"
#include "quality/quality_sql.h"
#include "quality/rules.h"
#include "quality/writer.h"

/* Least wall time between two flushes a closed minute asks for: a backlog closes minutes of
 * event time many times a second, and each flush writes every device's row again. */
#define TC_QMON_MINUTE_FLUSH_US 5000000
/* Strings of held findings and dead letters. */
#define TC_QMON_ARENA_BLOCK (64 * 1024)
/* Rows of a lane's metrics pool (device minutes held between flushes). */
#define TC_QMON_ROWS(devices) (2 * (devices) + 1024)
/* Rule metric names a reading's values are looked up for. */
#define TC_QMON_RULE_TAGS_MAX 32

void tc_qmon_options_default(tc_qmon_options *o)
{
    memset(o, 0, sizeof(*o));
    o->schema = "telemetry";
    o->group = "thermocline";
    o->topic = "telemetry";
    o->max_devices = 200000;
    o->late_after_s = 60;
    o->flush_interval_ms = 10000;
    o->tick_s = 10;
}

/* ---- lanes ---- */

static void tc_qmon_on_finding(void *opaque, const tc_qd_finding *f);
static void tc_qmon_on_rule(void *opaque, const tc_qr_event *e);

static void tc_qmon_lane_free(qmon_lane *l)
{
    if (!l)
        return;
    tc_qr_eval_destroy(l->qr);
    tc_qm_destroy(l->qm);
    tc_qd_destroy(l->qd);
    free(l);
}

/* A lane's detectors; tc_qmon_lane_finish adds the metrics and rules once the checkpoint is
 * loaded: tc_qd_load replaces the detectors' id table, which the metrics share. */
static qmon_lane *tc_qmon_lane_new(tc_qmon *m, int32_t partition, char *errstr, size_t errstr_size)
{
    qmon_lane *l = calloc(1, sizeof(*l));
    tc_qd_options qo;

    if (!l) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
        return NULL;
    }
    l->mon = m;
    l->partition = partition;
    l->next = l->durable = TC_QMON_MARK_ABSENT;
    tc_qd_options_default(&qo, TC_QMON_METRICS, m->o.max_devices);
    if (!m->o.detect_location)
        qo.watch &= ~(1u << TC_M_LATITUDE | 1u << TC_M_LONGITUDE);
    l->qd = tc_qd_new(&qo, tc_qmon_on_finding, l, errstr, errstr_size);
    if (!l->qd) {
        free(l);
        return NULL;
    }
    return l;
}

static tc_err tc_qmon_lane_finish(tc_qmon *m, qmon_lane *l, char *errstr, size_t errstr_size)
{
    tc_qm_options mo;

    tc_qm_options_default(&mo, m->o.max_devices);
    /* Rows are all handed over at every flush: a device holds the minutes of one flush interval,
     * seldom more than two or three. */
    mo.max_rows = TC_QMON_ROWS(m->o.max_devices);
    mo.metrics = TC_QMON_METRICS;
    mo.late_after_s = m->o.late_after_s;
    mo.ids = tc_qd_ids(l->qd);
    l->qm = tc_qm_new(&mo, errstr, errstr_size);
    if (l->qm && m->rules)
        l->qr = tc_qr_eval_new(m->rules, m->o.max_devices, tc_qmon_on_rule, l, errstr, errstr_size);
    if (!l->qm || (m->rules && !l->qr))
        return TC_ERR_NOMEM;
    return TC_OK;
}

static void tc_qmon_drop_lane(tc_qmon *m, int32_t partition)
{
    if (partition < 0 || partition >= TC_QMON_LANES_MAX || !m->lanes[partition])
        return;
    tc_qmon_lane_free(m->lanes[partition]);
    m->lanes[partition] = NULL;
    m->nlanes--;
}

/* ---- findings ---- */

static char *tc_qmon_strdup(tc_qmon *m, const char *s)
{
    return s ? tc_arena_strndup(&m->strings, s, strlen(s)) : NULL;
}

static void tc_qmon_hold_event(tc_qmon *m, const qmon_event *ev)
{
    qmon_event *e;

    if (m->nevents >= TC_QMON_EVENTS_MAX) {
        /* tc_qmon_due asked for a flush at the cap; one that keeps failing cannot hold more. */
        tc_log_input in = {NULL, ev->partition, -1, ev->device, strlen(ev->device)};
        tc_log_in(TC_LOG_WARN, "quality", &in,
                  "%d findings held unwritten: dropping one of device \"%s\"", TC_QMON_EVENTS_MAX,
                  ev->device);
        return;
    }
    if (!m->events && !(m->events = calloc(TC_QMON_EVENTS_MAX, sizeof(*m->events))))
        return;
    e = &m->events[m->nevents];
    *e = *ev;
    e->device = tc_qmon_strdup(m, ev->device);
    e->metric = tc_qmon_strdup(m, ev->metric);
    e->rule = tc_qmon_strdup(m, ev->rule);
    if (e->device && (!ev->metric || e->metric) && (!ev->rule || e->rule))
        m->nevents++;
}

static void tc_qmon_on_finding(void *opaque, const tc_qd_finding *f)
{
    qmon_lane *l = opaque;
    qmon_event ev = {
        .device = f->device,
        .metric = f->metric >= 0 && f->metric < TC_QMON_METRICS ? tc_metric_names[f->metric] : NULL,
        .kind = tc_qd_kind_name(f->kind),
        .severity = "warning",
        .partition = l->partition,
        .kind_index = (int)f->kind,
        .start_us = f->start_us,
        .end_us = f->end_us,
        .score = f->score,
        .observed = f->observed,
        .expected = f->expected,
    };

    tc_qmon_hold_event(l->mon, &ev);
}

static void tc_qmon_on_rule(void *opaque, const tc_qr_event *e)
{
    qmon_lane *l = opaque;
    const tc_qr_rule *r = e->rule;
    tc_qr_set *set = l->mon->rules;
    int with_metric = r->kind == TC_QR_RANGE || r->kind == TC_QR_RATE || r->kind == TC_QR_STUCK;
    qmon_event ev = {
        .device = e->device,
        .metric = with_metric ? tc_qr_metric_name(set, r->metric) : NULL,
        .kind = tc_qr_kind_name(r->kind),
        .rule = r->name,
        .severity = tc_qr_severity_name(r->severity),
        .partition = l->partition,
        .kind_index = TC_QD_KIND__COUNT + (int)r->kind,
        .start_us = e->start_us,
        .end_us = e->firing ? 0 : e->end_us,
        .score = NAN,
        .observed = e->observed,
        .expected = NAN,
    };

    tc_qmon_hold_event(l->mon, &ev);
}

/* ---- construction ---- */

static tc_err tc_qmon_copy_name(char *dst, const char *src, const char *what, char *errstr,
                                size_t errstr_size)
{
    if (!src || !*src || strlen(src) > TC_QMON_NAME_MAX)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "quality: %s must be 1..%d bytes",
                          what, TC_QMON_NAME_MAX);
    snprintf(dst, TC_QMON_NAME_MAX + 1, "%s", src);
    return TC_OK;
}

static int tc_qmon_rules_have_tags(const tc_qr_set *set)
{
    for (size_t i = 0; set && i < tc_qr_count(set); i++)
        if (tc_qr_get(set, i)->ntags)
            return 1;
    return 0;
}

tc_qmon *tc_qmon_new(const tc_qmon_options *o, char *errstr, size_t errstr_size)
{
    tc_qmon *m;

    if (!o->dsn || o->max_devices < 1 || o->max_devices > TC_QIDS_MAX || !(o->late_after_s >= 0) ||
        o->flush_interval_ms < 1 || o->tick_s < 1) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "quality: a dsn, max_devices 1..%d, late_after_s >= 0, flush_interval_ms >= 1"
                   " and tick_s >= 1 are needed",
                   TC_QIDS_MAX);
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
        return NULL;
    }
    m->o = *o;
    tc_arena_init(&m->strings, TC_QMON_ARENA_BLOCK, 0);
    tc_arena_init(&m->sent_strings, TC_QMON_ARENA_BLOCK, 0);
    m->dsn = strdup(o->dsn);
    if (!m->dsn || tc_qmon_copy_name(m->schema, o->schema, "the schema", errstr, errstr_size) ||
        tc_qmon_copy_name(m->group, o->group, "the group", errstr, errstr_size) ||
        tc_qmon_copy_name(m->topic, o->topic, "the topic", errstr, errstr_size)) {
        if (!m->dsn)
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
        tc_qmon_destroy(m);
        return NULL;
    }
    if (*m->dsn && !(m->writer = tc_qw_new(m->dsn, m->schema, errstr, errstr_size))) {
        tc_qmon_destroy(m);
        return NULL;
    }
    m->o.dsn = m->dsn;
    m->o.schema = m->schema;
    m->o.group = m->group;
    m->o.topic = m->topic;
    m->o.rules_file = NULL;
    if (o->rules_file && *o->rules_file) {
        if (strlen(o->rules_file) >= sizeof(m->rules_path)) {
            tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "quality.rules_file: path too long");
            tc_qmon_destroy(m);
            return NULL;
        }
        snprintf(m->rules_path, sizeof(m->rules_path), "%s", o->rules_file);
        m->o.rules_file = m->rules_path;
        m->rules = tc_qr_load(m->rules_path, errstr, errstr_size);
        if (!m->rules) {
            tc_qmon_destroy(m);
            return NULL;
        }
        m->rules_tags = tc_qmon_rules_have_tags(m->rules);
    }
    return m;
}

static void tc_qmon_scratch_free(tc_qmon *m)
{
    free(m->ids);
    free(m->lens);
    free(m->t);
    free(m->wm);
    free(m->ingest);
    free(m->index);
    free(m->rows);
    free(m->order);
}

static void tc_qmon_held_clear(tc_qmon *m)
{
    for (size_t i = 0; i < m->nheld; i++)
        free(m->held[i].doc);
    m->nheld = 0;
}

static void tc_qmon_settle(tc_qmon *m);

void tc_qmon_destroy(tc_qmon *m)
{
    if (!m)
        return;
    if (m->writer) {
        tc_qmon_settle(m); /* what it committed is committed: its findings are announced */
        tc_qw_destroy(m->writer);
    }
    tc_qmon_marks_free(m);
    free(m->marks);
    free(m->stmts);
    free(m->sent);
    tc_arena_free(&m->sent_strings);
    for (int32_t p = 0; p < m->lane_end; p++)
        tc_qmon_lane_free(m->lanes[p]);
    tc_qmon_held_clear(m);
    tc_qbufs_free(&m->bufs);
    tc_qmon_scratch_free(m);
    free(m->events);
    free(m->dead);
    free(m->minutes);
    tc_arena_free(&m->strings);
    tc_qr_free(m->rules);
    if (m->schema_quoted)
        PQfreemem(m->schema_quoted);
    if (m->conn)
        PQfinish(m->conn);
    free(m->dsn);
    free(m);
}

void tc_qmon_set_listener(tc_qmon *m, tc_qmon_event_fn fn, void *opaque)
{
    m->listener = fn;
    m->listener_opaque = opaque;
}

/* ---- the database ---- */

static tc_err tc_qmon_connect(tc_qmon *m, char *errstr, size_t errstr_size)
{
    return tc_qw_connect(&m->conn, &m->schema_quoted, m->dsn, m->schema, errstr, errstr_size);
}

/* Run tmpl (with "@S") on the monitor's own connection (the reads of open). */
static tc_err tc_qmon_exec(tc_qmon *m, const char *tmpl, int n, const char *const *values,
                           PGresult **out, const char *what, char *errstr, size_t errstr_size)
{
    return tc_qw_exec(m->conn, m->schema_quoted, tmpl, n, values, NULL, NULL, out, what, errstr,
                      errstr_size);
}

static int64_t tc_qmon_int8(const PGresult *res, int row, int col, int64_t dflt)
{
    return PQgetisnull(res, row, col) ? dflt : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Give the lane's evaluator its device's open findings back (restart, take-over). */
static tc_err tc_qmon_restore_rules(tc_qmon *m, qmon_lane *l, char *errstr, size_t errstr_size)
{
    char part[16];
    const char *params[1] = {part};
    PGresult *res;
    tc_err err;

    if (!l->qr)
        return TC_OK;
    snprintf(part, sizeof(part), "%d", l->partition);
    err = tc_qmon_exec(m,
                       "SELECT rule, device_id, (extract(epoch FROM start_time) * 1000000)::bigint"
                       " FROM @S.anomalies WHERE end_time IS NULL AND rule IS NOT NULL"
                       " AND kafka_partition = $1::int",
                       1, params, &res, "read the open findings of the rules", errstr, errstr_size);
    if (err != TC_OK)
        return err;
    for (int i = 0; i < PQntuples(res); i++) {
        long r = tc_qr_find(m->rules, PQgetvalue(res, i, 0));
        const char *dev = PQgetvalue(res, i, 1);

        /* A finding of a rule no longer in the file stays as it is (docs/quality.md). */
        if (r >= 0)
            (void)tc_qr_eval_restore(l->qr, (size_t)r, dev, strlen(dev),
                                     tc_qmon_int8(res, i, 2, 0));
    }
    PQclear(res);
    return TC_OK;
}

/* The OIDs of the schema's quality_row and quality_new_row, the element types of the metric rows'
 * binary arrays (quality_sql.h): a lane has rows to write only once opened, so they are known
 * before them. */
static tc_err tc_qmon_row_type(tc_qmon *m, char *errstr, size_t errstr_size)
{
    const char *params[1] = {m->schema};
    PGresult *res;
    tc_err err = tc_qmon_exec(m, tc_quality_sql_row_type, 1, params, &res,
                              "read the quality_row types", errstr, errstr_size);

    if (err != TC_OK)
        return err;
    if (PQntuples(res) == 1 && PQnfields(res) == 2) {
        m->row_oid = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        m->new_row_oid = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
    }
    PQclear(res);
    if (!m->row_oid || !m->new_row_oid) {
        const char *missing = m->row_oid ? "quality_new_row" : "quality_row";
        m->row_oid = m->new_row_oid = 0; /* read again at the next open */
        return tc_err_set(TC_ERR_DB, errstr, errstr_size,
                          "quality: schema \"%s\" has no type %s: run the migrations"
                          " (thermocline migrate)",
                          m->schema, missing);
    }
    return TC_OK;
}

static tc_err tc_qmon_open_one(tc_qmon *m, int32_t partition, int64_t *next, char *errstr,
                               size_t errstr_size)
{
    char part[16];
    const char *params[3] = {m->group, m->topic, part};
    PGresult *res;
    qmon_lane *l;
    size_t closed;
    tc_err err;

    snprintf(part, sizeof(part), "%d", partition);
    err = tc_qmon_exec(m,
                       "SELECT next_offset, detector_state, watermark_us FROM @S.quality_offsets"
                       " WHERE group_id = $1 AND topic = $2 AND partition = $3::int",
                       3, params, &res, "read the quality marks", errstr, errstr_size);
    if (err != TC_OK)
        return err;
    l = tc_qmon_lane_new(m, partition, errstr, errstr_size);
    if (!l) {
        PQclear(res);
        return TC_ERR_NOMEM;
    }
    if (PQntuples(res) == 1) {
        l->next = l->durable = tc_qmon_int8(res, 0, 0, TC_QMON_MARK_ABSENT);
        l->watermark = l->ticked = tc_qmon_int8(res, 0, 2, 0);
        l->minute_flushed = l->watermark / TC_QM_MINUTE_US;
        if (!PQgetisnull(res, 0, 1)) {
            size_t len = 0;
            unsigned char *ck = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 1), &len);

            err = ck ? tc_qd_load(l->qd, ck, len, errstr, errstr_size) : TC_ERR_NOMEM;
            PQfreemem(ck);
            if (err != TC_OK) {
                char msg[TC_ERRSTR_MAX];
                snprintf(msg, sizeof(msg), "%s", errstr);
                err = tc_err_set(err == TC_ERR_NOMEM ? err : TC_ERR_DB, errstr, errstr_size,
                                 "quality: partition %d: the stored detector checkpoint: %s",
                                 partition, msg);
            }
        }
    }
    PQclear(res);
    /* The records of the devices changed since the whole checkpoint, over it (ckpt.h). */
    if (err == TC_OK)
        err = tc_qck_load(m->conn, m->schema_quoted, m->group, m->topic, partition, l->qd, errstr,
                          errstr_size);
    if (err == TC_OK)
        err = tc_qmon_lane_finish(m, l, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_qmon_restore_rules(m, l, errstr, errstr_size);
    if (err != TC_OK) {
        tc_qmon_lane_free(l);
        return err;
    }
    /* Findings on the coordinates a run with quality.detect_location left open, once the lane is
     * sure to be installed: written as resolved by its next flush. */
    if ((closed = tc_qd_resolve_unwatched(l->qd)) > 0)
        tc_log_info("quality",
                    "partition %d: open findings of the coordinates resolved: %zu "
                    "(quality.detect_location is off)",
                    partition, closed);
    tc_qmon_drop_lane(m, partition);
    m->lanes[partition] = l;
    if (partition >= m->lane_end)
        m->lane_end = partition + 1;
    m->nlanes++;
    *next = l->durable;
    return TC_OK;
}

tc_err tc_qmon_open(tc_qmon *m, const int32_t *parts, size_t n, int64_t *next, char *errstr,
                    size_t errstr_size)
{
    tc_err err = TC_OK;

    tc_qmon_settle(m); /* the marks it moves are read next */
    for (size_t i = 0; i < n; i++) {
        next[i] = TC_QMON_MARK_ABSENT;
        if (parts[i] < 0 || parts[i] >= TC_QMON_LANES_MAX)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "quality: partition %d is past the %d tracked", parts[i],
                              TC_QMON_LANES_MAX);
    }
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        if (!*m->dsn) {
            /* Dry: fresh lanes, nothing stored (benchmarks). */
            qmon_lane *l = tc_qmon_lane_new(m, parts[i], errstr, errstr_size);
            err = l ? tc_qmon_lane_finish(m, l, errstr, errstr_size) : TC_ERR_NOMEM;
            if (err != TC_OK) {
                tc_qmon_lane_free(l);
                break;
            }
            tc_qmon_drop_lane(m, parts[i]);
            m->lanes[parts[i]] = l;
            if (parts[i] >= m->lane_end)
                m->lane_end = parts[i] + 1;
            m->nlanes++;
            continue;
        }
        err = tc_qmon_connect(m, errstr, errstr_size);
        if (err == TC_OK && !m->row_oid)
            err = tc_qmon_row_type(m, errstr, errstr_size);
        if (err == TC_OK)
            err = tc_qmon_open_one(m, parts[i], &next[i], errstr, errstr_size);
    }
    return err;
}

static int tc_qmon_in(int32_t p, const int32_t *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (parts[i] == p)
            return 1;
    return 0;
}

void tc_qmon_revoke(tc_qmon *m, const int32_t *parts, size_t n)
{
    size_t k = 0;

    tc_qmon_settle(m);
    /* What was held for them is written by nobody now: their next owner reads it again. */
    for (size_t i = 0; i < m->nheld; i++) {
        if (tc_qmon_in(m->held[i].partition, parts, n))
            free(m->held[i].doc);
        else
            m->held[k++] = m->held[i];
    }
    m->nheld = k;
    k = 0;
    for (size_t i = 0; i < m->nevents; i++)
        if (!tc_qmon_in(m->events[i].partition, parts, n))
            m->events[k++] = m->events[i];
    m->nevents = k;
    k = 0;
    for (size_t i = 0; i < m->ndead; i++)
        if (!tc_qmon_in(m->dead[i].partition, parts, n))
            m->dead[k++] = m->dead[i];
    m->ndead = k;
    k = 0;
    for (size_t i = 0; i < m->nsent; i++)
        if (!tc_qmon_in(m->sent[i].partition, parts, n))
            m->sent[k++] = m->sent[i];
    m->nsent = k;
    for (size_t i = 0; i < n; i++)
        tc_qmon_drop_lane(m, parts[i]);
}

/* ---- feeding ---- */

static int tc_qmon_scratch(tc_qmon *m, size_t n)
{
    size_t cap = m->scratch_cap;

    if (n <= cap)
        return 0;
    while (cap < n)
        cap = cap ? cap * 2 : 1024;
    tc_qmon_scratch_free(m);
    /* ids is declared before order in tc_qmon, so the span is positive. */
    memset(&m->ids, 0, (size_t)((char *)(&m->order + 1) - (char *)&m->ids));
    m->scratch_cap = 0;
    m->ids = malloc(cap * sizeof(*m->ids));
    m->lens = malloc(cap * sizeof(*m->lens));
    m->t = malloc(cap * sizeof(*m->t));
    m->wm = malloc(cap * sizeof(*m->wm));
    m->ingest = malloc(cap * sizeof(*m->ingest));
    m->index = malloc(cap * sizeof(*m->index));
    m->rows = malloc(cap * sizeof(*m->rows));
    m->order = malloc(cap * sizeof(*m->order));
    if (!m->ids || !m->lens || !m->t || !m->wm || !m->ingest || !m->index || !m->rows || !m->order)
        return -1;
    m->scratch_cap = cap;
    return 0;
}

/* The values of the rules' metrics for row i: built-in columns and promoted ones by name. */
typedef struct qmon_rule_cols {
    const double *col[TC_QR_METRICS_MAX];
    const uint8_t *present[TC_QR_METRICS_MAX];
} qmon_rule_cols;

static void tc_qmon_rule_cols(const tc_qmon *m, const tc_batch *b, qmon_rule_cols *c)
{
    for (int k = 0; k < tc_qr_metric_count(m->rules); k++) {
        const char *name = tc_qr_metric_name(m->rules, k);
        int fixed = tc_metric_lookup(name, strlen(name));

        c->col[k] = NULL;
        c->present[k] = NULL;
        if (fixed >= 0) {
            c->col[k] = b->metric[fixed];
            c->present[k] = b->present[fixed];
        }
        for (size_t d = 0; fixed < 0 && d < b->ndyn; d++)
            if (!strcmp(b->dyn_name[d], name)) {
                c->col[k] = b->dyn[d];
                c->present[k] = b->dyn_present[d];
            }
    }
}

/* Tags of row i as key/value pairs (strings of the document, freed by the caller). */
static tc_json_doc *tc_qmon_tags(const tc_batch *b, size_t i, tc_qr_tag *tags, int *ntags)
{
    tc_json_doc *doc;
    const tc_json *root;
    tc_err err;

    *ntags = 0;
    if (!b->tags || !b->tags[i].ptr)
        return NULL;
    doc = tc_json_parse(b->tags[i].ptr, b->tags[i].len, NULL, &err, NULL, 0);
    root = doc ? tc_json_root(doc) : NULL;
    if (!root || root->type != TC_JSON_OBJECT)
        return doc;
    for (size_t k = 0; k < root->len && *ntags < TC_QMON_RULE_TAGS_MAX; k++) {
        const char *v = tc_json_string(root->u.members[k].value);
        if (v) {
            tags[*ntags].key = root->u.members[k].key;
            tags[*ntags].value = v;
            (*ntags)++;
        }
    }
    return doc;
}

static void tc_qmon_eval_rules(tc_qmon *m, qmon_lane *l, const tc_batch *b, const size_t *rows,
                               size_t nrows)
{
    qmon_rule_cols c;
    double values[TC_QR_METRICS_MAX];
    tc_qr_tag tags[TC_QMON_RULE_TAGS_MAX];

    tc_qmon_rule_cols(m, b, &c);
    for (size_t k = 0; k < nrows; k++) {
        size_t i = rows[k];
        tc_json_doc *doc = NULL;
        tc_qr_reading r = {
            .device = b->device_id[i].ptr,
            .device_len = b->device_id[i].len,
            .t_us = b->time_us[i],
            .values = values,
            .tags = tags,
            .schema_version = b->schema_version ? b->schema_version[i] : 0,
        };

        for (int v = 0; v < tc_qr_metric_count(m->rules); v++)
            values[v] = c.col[v] && (!c.present[v] || c.present[v][i]) ? c.col[v][i] : NAN;
        if (m->rules_tags)
            doc = tc_qmon_tags(b, i, tags, &r.ntags);
        tc_qr_eval_reading(l->qr, &r);
        tc_json_free(doc);
    }
}

/* Lane l's readings of batch b, rows[0 .. n) of it in their order: their ids and times gathered
 * into the scratch, their values read from the batch's columns in place. */
static void tc_qmon_feed_lane(tc_qmon *m, qmon_lane *l, const tc_batch *b, const size_t *rows,
                              size_t n, int64_t ingest_us)
{
    const double *vals[TC_QMON_METRICS];
    const uint8_t *pres[TC_QMON_METRICS];

    for (size_t k = 0; k < n; k++) {
        size_t i = rows[k];
        int64_t t = b->time_us[i];

        m->ids[k] = b->device_id[i].ptr;
        m->lens[k] = b->device_id[i].len;
        m->t[k] = t;
        /* The watermark a reading is judged late against: the latest event time before it. */
        m->wm[k] = l->watermark ? l->watermark : t;
        if (TC_Q_TIME_OK(t) && t > l->watermark)
            l->watermark = t;
        m->ingest[k] = ingest_us;
    }
    if (!n)
        return;
    for (int k = 0; k < TC_QMON_METRICS; k++) {
        vals[k] = b->metric[k];
        pres[k] = b->present[k];
    }
    tc_qd_observe_batch(l->qd, n, m->ids, m->lens, m->t, vals, pres, rows, m->index);
    tc_qm_observe_batch_at(l->qm, n, m->index, m->t, m->ingest, m->wm, pres, rows, TC_QMON_METRICS);
    if (l->qr)
        tc_qmon_eval_rules(m, l, b, rows, n);
    m->st.readings += n;
    m->readings_taken += n;
    if (l->watermark - l->ticked >= m->o.tick_s * INT64_C(1000000)) {
        tc_qd_tick(l->qd, l->watermark);
        if (l->qr)
            tc_qr_eval_tick(l->qr, l->watermark);
        l->ticked = l->watermark;
    }
}

/* The lane of row i of b, NULL when it is masked out or (refused, counted) no lane of ours. */
static qmon_lane *tc_qmon_lane_of(tc_qmon *m, const tc_batch *b, const uint8_t *mask, size_t i)
{
    int32_t p = b->partition[i];
    qmon_lane *l;

    if (mask && !mask[i])
        return NULL;
    l = p >= 0 && p < TC_QMON_LANES_MAX ? m->lanes[p] : NULL;
    if (!l)
        m->st.refused++;
    return l;
}

/* Group the rows of b by lane in m->rows, each lane's in their order, the lanes in m->order in
 * the order of their first row; returns how many lanes. One pass to count, one to place: the
 * batch is read twice whatever the number of partitions in it. */
static size_t tc_qmon_group(tc_qmon *m, const tc_batch *b, const uint8_t *mask)
{
    size_t nlanes = 0, at = 0;

    m->adds++;
    for (size_t i = 0; i < b->n; i++) {
        qmon_lane *l = tc_qmon_lane_of(m, b, mask, i);
        if (!l)
            continue;
        if (l->fed != m->adds) {
            l->fed = m->adds;
            l->batch_n = 0;
            m->order[nlanes++] = l->partition;
        }
        l->batch_n++;
    }
    for (size_t k = 0; k < nlanes; k++) {
        qmon_lane *l = m->lanes[m->order[k]];
        l->batch_at = at;
        at += l->batch_n;
    }
    for (size_t i = 0; i < b->n; i++) {
        int32_t p = b->partition[i];
        qmon_lane *l = p >= 0 && p < TC_QMON_LANES_MAX ? m->lanes[p] : NULL;
        if ((mask && !mask[i]) || !l)
            continue;
        m->rows[l->batch_at++] = i;
    }
    return nlanes;
}

static void tc_qmon_add_dead(tc_qmon *m, const tc_dlq_batch *dlq)
{
    for (size_t i = 0; dlq && i < dlq->n; i++) {
        const tc_dead_letter *d = &dlq->items[i];
        qmon_dead *x;
        int usable = d->key.ptr && d->key.len > 0 && d->key.len <= TC_QIDS_LEN_MAX &&
                     !memchr(d->key.ptr, '\0', d->key.len) &&
                     tc_json_utf8_valid(d->key.ptr, d->key.len);

        if (d->partition < 0 || d->partition >= TC_QMON_LANES_MAX || !m->lanes[d->partition] ||
            d->offset < m->lanes[d->partition]->next)
            continue; /* not this member's, or counted before (a sink catching up skips it) */
        if (m->ndead >= TC_QMON_DEAD_MAX ||
            (!m->dead && !(m->dead = calloc(TC_QMON_DEAD_MAX, sizeof(*m->dead))))) {
            m->st.refused++;
            continue;
        }
        x = &m->dead[m->ndead];
        x->device = usable ? tc_arena_strndup(&m->strings, d->key.ptr, d->key.len) : NULL;
        x->partition = d->partition;
        x->minute = (d->received_us >= 0 ? d->received_us : 0) / TC_QM_MINUTE_US;
        x->reason = d->reason;
        m->ndead++;
        m->st.dead_letters++;
        if ((int)d->reason >= 0 && d->reason < TC_REJECT__COUNT)
            m->st.dead_by_reason[d->reason]++;
    }
}

void tc_qmon_add(tc_qmon *m, const tc_batch *rows, const uint8_t *mask, const tc_dlq_batch *dlq,
                 const tc_partition_offset *marks, size_t nmarks, int64_t ingest_us)
{
    if (rows && rows->n) {
        if (tc_qmon_scratch(m, rows->n) < 0) {
            m->st.refused += rows->n; /* the marks still move: the figures say what was lost */
            tc_log_warn("quality", "out of memory: %zu readings not counted", rows->n);
        } else {
            /* Each lane of the batch is fed once, with all its rows, in their order. */
            size_t nlanes = tc_qmon_group(m, rows, mask);
            for (size_t k = 0; k < nlanes; k++) {
                qmon_lane *l = m->lanes[m->order[k]];
                size_t end = l->batch_at; /* tc_qmon_group left it at the lane's end */
                tc_qmon_feed_lane(m, l, rows, &m->rows[end - l->batch_n], l->batch_n, ingest_us);
            }
        }
    }
    tc_qmon_add_dead(m, dlq);
    for (size_t i = 0; i < nmarks; i++) {
        int32_t p = marks[i].partition;
        if (p >= 0 && p < TC_QMON_LANES_MAX && m->lanes[p] &&
            marks[i].next_offset > m->lanes[p]->next)
            m->lanes[p]->next = marks[i].next_offset;
    }
}

/* ---- flushing ---- */

int tc_qmon_pending(const tc_qmon *m)
{
    if (m->nevents || m->ndead || m->nheld)
        return 1;
    for (int32_t p = 0; p < m->lane_end; p++)
        if (m->lanes[p] && m->lanes[p]->next > m->lanes[p]->durable)
            return 1;
    return 0;
}

int tc_qmon_due(const tc_qmon *m, int64_t now_us)
{
    int minute = 0;

    if (m->nevents >= TC_QMON_EVENTS_MAX / 2 || m->ndead >= TC_QMON_DEAD_MAX / 2)
        return 1;
    if (!tc_qmon_pending(m))
        return 0;
    if (now_us - m->last_attempt_us >= m->o.flush_interval_ms * 1000)
        return 1;
    for (int32_t p = 0; p < m->lane_end; p++) {
        tc_qm_totals t;
        if (!m->lanes[p])
            continue;
        /* A backlog runs through minutes of event time faster than the wall clock asks for
         * flushes: the rows' pool half full asks for one too, before a row is refused. */
        tc_qm_get_totals(m->lanes[p]->qm, &t);
        if (t.rows_held >= TC_QMON_ROWS(m->o.max_devices) / 2)
            return 1;
    }
    for (int32_t p = 0; p < m->lane_end && !minute; p++)
        minute =
            m->lanes[p] && m->lanes[p]->watermark / TC_QM_MINUTE_US > m->lanes[p]->minute_flushed;
    return minute && now_us - m->last_attempt_us >= TC_QMON_MINUTE_FLUSH_US;
}

static void tc_qmon_notify(tc_qmon *m)
{
    for (size_t i = 0; i < m->nsent; i++) {
        const qmon_event *e = &m->sent[i];
        tc_qmon_event ev = {e->device,   e->metric,    e->kind,     e->rule,
                            e->severity, e->partition, e->start_us, e->end_us,
                            e->score,    e->observed,  e->expected};

        if (e->end_us) {
            m->st.resolved++;
            m->st.resolved_by_kind[e->kind_index]++;
        } else {
            m->st.opened++;
            m->st.opened_by_kind[e->kind_index]++;
        }
        if (m->listener)
            m->listener(m->listener_opaque, &ev);
    }
}

static void tc_qmon_drop_sent(tc_qmon *m)
{
    for (size_t i = 0; i < m->job_held; i++)
        tc_qbufs_put(&m->bufs, m->held[i].doc, m->held[i].cap);
    memmove(m->held, m->held + m->job_held, (m->nheld - m->job_held) * sizeof(*m->held));
    m->nheld -= m->job_held;
    m->job_held = 0;
    m->nsent = 0;
    tc_arena_reset(&m->sent_strings);
    tc_qmon_marks_free(m);
}

void tc_qmon_reset(tc_qmon *m)
{
    tc_qmon_settle(m); /* nothing of it may become durable once this returns */
    m->deferred = TC_OK;
    m->readings_taken = m->job_readings = 0;
    for (int32_t p = 0; p < m->lane_end; p++)
        tc_qmon_drop_lane(m, p);
    tc_qmon_held_clear(m);
    m->nevents = m->ndead = m->nminutes = m->nsent = 0;
    tc_arena_reset(&m->strings);
    tc_arena_reset(&m->sent_strings);
    tc_qmon_marks_free(m);
}

/* A flush's outcome: committed, the marks move and the findings are announced; failed, what it
 * was to write stays held for the next one (fenced: everything goes). */
static tc_err tc_qmon_apply(tc_qmon *m, tc_err err)
{
    m->job = 0;
    if (err != TC_OK) {
        m->st.flush_failures++;
        m->job_held = 0;
        tc_qmon_marks_free(m);
        if (err == TC_ERR_FENCED) {
            m->st.fenced++;
            tc_qmon_reset(m);
        }
        return err;
    }
    for (size_t i = 0; i < m->nmarks; i++) {
        qmon_lane *l = m->lanes[m->marks[i].partition];
        if (l && m->marks[i].next > l->durable)
            l->durable = m->marks[i].next;
        if (l)
            l->ck_since = m->marks[i].ck.cut;
        m->st.checkpoint_devices += m->marks[i].ck.n;
    }
    tc_qmon_notify(m);
    tc_qmon_drop_sent(m);
    m->st.flushes++;
    m->st.readings_durable += m->job_readings;
    m->readings_taken -= m->job_readings;
    m->job_readings = 0;
    m->last_flush_us = m->st.flushed_us = tc_time_now_us();
    return TC_OK;
}

/* Wait for a flush under way and apply its outcome; a failure is reported by the next
 * tc_qmon_flush_poll (the callers -- open, revoke, reset, destroy -- have no error of theirs). */
static void tc_qmon_settle(tc_qmon *m)
{
    tc_err err = TC_OK;
    char errstr[TC_ERRSTR_MAX] = "";

    if (!m->job || !m->writer)
        return;
    (void)tc_qw_poll(m->writer, 1, &err, errstr, sizeof(errstr));
    if (tc_qmon_apply(m, err) != TC_OK && m->deferred == TC_OK) {
        m->deferred = err;
        snprintf(m->deferred_errstr, sizeof(m->deferred_errstr), "%s", errstr);
    }
}

tc_err tc_qmon_flush_start(tc_qmon *m, char *errstr, size_t errstr_size)
{
    tc_err err;

    if (m->job)
        return TC_OK;
    m->last_attempt_us = tc_time_now_us();
    for (int32_t p = 0; p < m->lane_end; p++)
        if (m->lanes[p])
            m->lanes[p]->minute_flushed = m->lanes[p]->watermark / TC_QM_MINUTE_US;
    err = tc_qmon_flush_build(m, errstr, errstr_size);
    if (err != TC_OK) {
        tc_qmon_marks_free(m);
        m->st.flush_failures++;
        return err;
    }
    m->job = 1;
    m->job_held = m->nheld;
    m->job_readings = m->readings_taken;
    /* Dry: everything was built as for PostgreSQL; it is dropped as if committed. */
    if (!m->writer)
        return tc_qmon_apply(m, TC_OK);
    (void)tc_qw_start(m->writer, m->stmts, m->nstmts);
    return TC_OK;
}

int tc_qmon_flush_poll(tc_qmon *m, int wait, tc_err *err, char *errstr, size_t errstr_size)
{
    *err = m->deferred;
    if (m->deferred != TC_OK) {
        snprintf(errstr, errstr_size, "%s", m->deferred_errstr);
        m->deferred = TC_OK;
        return 0;
    }
    if (!m->job || !m->writer)
        return 0;
    if (tc_qw_poll(m->writer, wait, err, errstr, errstr_size) == 1)
        return 1;
    *err = tc_qmon_apply(m, *err);
    return 0;
}

int tc_qmon_flushing(const tc_qmon *m)
{
    return m->job;
}

uint64_t tc_qmon_writer_cpu_ns(const tc_qmon *m)
{
    return tc_qw_cpu_ns(m->writer);
}

tc_err tc_qmon_flush(tc_qmon *m, char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;

    if (tc_qmon_flush_poll(m, 1, &err, errstr, errstr_size) == 0 && err != TC_OK)
        return err;
    err = tc_qmon_flush_start(m, errstr, errstr_size);
    if (err == TC_OK)
        (void)tc_qmon_flush_poll(m, 1, &err, errstr, errstr_size);
    return err;
}

int64_t tc_qmon_durable(const tc_qmon *m, int32_t partition)
{
    if (partition < 0 || partition >= TC_QMON_LANES_MAX || !m->lanes[partition])
        return TC_QMON_MARK_ABSENT;
    return m->lanes[partition]->durable;
}

int64_t tc_qmon_stored(tc_qmon *m, int32_t partition)
{
    char part[16], errstr[TC_ERRSTR_MAX];
    const char *params[3] = {m->group, m->topic, part};
    PGresult *res;
    int64_t next = TC_QMON_MARK_ABSENT;

    if (!*m->dsn || tc_qmon_connect(m, errstr, sizeof(errstr)) != TC_OK)
        return TC_QMON_MARK_ABSENT;
    snprintf(part, sizeof(part), "%d", partition);
    if (tc_qmon_exec(m,
                     "SELECT next_offset FROM @S.quality_offsets"
                     " WHERE group_id = $1 AND topic = $2 AND partition = $3::int",
                     3, params, &res, "read the quality marks", errstr, sizeof(errstr)) != TC_OK)
        return TC_QMON_MARK_ABSENT;
    if (PQntuples(res) == 1)
        next = tc_qmon_int8(res, 0, 0, TC_QMON_MARK_ABSENT);
    PQclear(res);
    return next;
}

/* ---- reload ---- */

typedef struct qmon_carry {
    tc_qr_eval *to;
    const tc_qr_set *set;
} qmon_carry;

static void tc_qmon_carry(void *opaque, const tc_qr_rule *rule, const char *device,
                          int64_t start_us)
{
    qmon_carry *c = opaque;
    long r = tc_qr_find(c->set, rule->name);

    if (r >= 0)
        (void)tc_qr_eval_restore(c->to, (size_t)r, device, strlen(device), start_us);
}

tc_err tc_qmon_reload(tc_qmon *m, char *errstr, size_t errstr_size)
{
    tc_qr_eval *fresh[TC_QMON_LANES_MAX];
    tc_qr_set *set;

    if (!m->o.rules_file)
        return TC_OK;
    set = tc_qr_load(m->rules_path, errstr, errstr_size);
    if (!set) {
        m->st.reloads_refused++;
        return TC_ERR_CONFIG;
    }
    /* Findings already held were made by the old rules: write them before their rules go. */
    for (int32_t p = 0; p < m->lane_end; p++) {
        fresh[p] = NULL;
        if (!m->lanes[p])
            continue;
        fresh[p] = tc_qr_eval_new(set, m->o.max_devices, tc_qmon_on_rule, m->lanes[p], errstr,
                                  errstr_size);
        if (!fresh[p]) {
            for (int32_t q = 0; q < p; q++)
                tc_qr_eval_destroy(fresh[q]);
            tc_qr_free(set);
            m->st.reloads_refused++;
            return TC_ERR_NOMEM;
        }
        if (m->lanes[p]->qr)
            tc_qr_eval_each_firing(m->lanes[p]->qr, tc_qmon_carry, &(qmon_carry){fresh[p], set});
    }
    /* Held findings keep their names (arena copies), so the old set may go now. */
    for (int32_t p = 0; p < m->lane_end; p++) {
        if (!m->lanes[p])
            continue;
        tc_qr_eval_destroy(m->lanes[p]->qr);
        m->lanes[p]->qr = fresh[p];
    }
    tc_qr_free(m->rules);
    m->rules = set;
    m->rules_tags = tc_qmon_rules_have_tags(set);
    m->st.reloads++;
    return TC_OK;
}

/* ---- figures ---- */

void tc_qmon_get_stats(const tc_qmon *m, tc_qmon_stats *st)
{
    *st = m->st;
    st->lanes = m->nlanes;
    st->devices = 0;
    st->open_now = 0;
    st->late = st->out_of_order = st->gaps = 0;
    st->watermark_us = 0;
    for (int32_t p = 0; p < m->lane_end; p++) {
        const qmon_lane *l = m->lanes[p];
        tc_qd_stats ds;
        tc_qm_totals mt;

        if (!l)
            continue;
        tc_qd_get_stats(l->qd, &ds);
        tc_qm_get_totals(l->qm, &mt);
        st->devices += ds.devices;
        st->open_now += ds.open_now + (l->qr ? tc_qr_eval_firing(l->qr) : 0);
        st->late += mt.late;
        st->out_of_order += mt.out_of_order;
        st->gaps += mt.gaps;
        st->refused += ds.devices_refused;
        if (l->watermark > st->watermark_us)
            st->watermark_us = l->watermark;
    }
}
