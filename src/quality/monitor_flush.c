/*
 * monitor_flush.c -- the building of a quality flush's statements (monitor_int.h): what the monitor
 * holds becomes JSON documents and fenced marks; monitor.c runs them on the writer.
 *
 * Data to PostgreSQL goes as one parameter per statement: one round trip whatever the number of
 * rows, no per-row parameters, and the same statement text for every flush. The metric rows, a
 * row per device minute, go as a binary array of the schema's quality_new_row (a device's new
 * minute) or quality_row (a part continuing a minute, the fleet's; quality_sql.h), the few dead
 * letters, minutes and findings as JSON documents (json_to_recordset). Metric rows leave tc_qm
 * when handed over (tc_qm_flush frees them), so their documents are kept in `held` until a flush
 * commits; findings and dead letters stay in their arrays until then and are turned into
 * documents at each attempt. A document is one lane's rows, dead letters or findings, so that a
 * revocation drops exactly the lost partitions' share. The statements run in the order they were
 * made, the held documents first, then each lane's changed detectors and its mark, which moves only
 * from the mark this member read (fencing).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "quality/monitor_int.h"
#include "quality/quality_sql.h"

/* Largest JSON document one statement sends (PostgreSQL's limit for a value is 1 GB). */
#define TC_QMON_DOC_MAX (256u * 1024 * 1024)
/* Bytes of a device's minute row in a flush's binary array, about (a hint for its buffer): the
 * narrow record's 17 columns' headers, its figures and a sketch of a bucket or two. */
#define TC_QMON_ROW_BIN 256

static void tc_qmon_jdouble(tc_jbuf *j, const char *key, double v)
{
    tc_jbuf_key(j, key);
    if (isfinite(v))
        tc_jbuf_double(j, v);
    else
        tc_jbuf_null(j);
}

static void tc_qmon_jstr(tc_jbuf *j, const char *key, const char *v)
{
    tc_jbuf_key(j, key);
    if (v)
        tc_jbuf_str(j, v);
    else
        tc_jbuf_null(j);
}

/* A lane's rows: a device's new minutes (dev), the parts continuing a minute it wrote (cont:
 * their own statement, quality_sql.h), the fleet's. */
typedef struct qmon_collect {
    tc_qmon *m;
    tc_jbuf *dev, *cont, *fleet;
    size_t ndev, ncont, nfleet;
} qmon_collect;

static void tc_qmon_collect_row(void *opaque, const tc_qm_row *r)
{
    qmon_collect *c = opaque;
    tc_qmon *m = c->m;

    if (r->device) {
        /* A new minute in the narrow record; a continued part, or a row too large for it, in
         * the wide one, whose statement upserts the latter as insert_rows would. */
        if (tc_quality_sql_new_row_bin(c->dev, r, TC_QMON_METRICS)) {
            c->ndev++;
        } else {
            tc_quality_sql_row_bin(c->cont, r, TC_QMON_METRICS);
            c->ncont++;
        }
        return;
    }
    tc_quality_sql_row_bin(c->fleet, r, TC_QMON_METRICS);
    c->nfleet++;
    tc_qm_sketch_merge(&m->st.delay, &r->delay);
    if (m->nminutes == m->minutes_cap) {
        size_t cap = m->minutes_cap ? 2 * m->minutes_cap : 64;
        int64_t *nm = realloc(m->minutes, cap * sizeof(*nm));
        if (!nm)
            return; /* that minute's device count waits for its next flush */
        m->minutes = nm;
        m->minutes_cap = cap;
    }
    m->minutes[m->nminutes++] = r->minute_us / TC_QM_MINUTE_US;
}

/* Hold j's document of `rows` items for a statement: a JSON array, or (binary) the metric rows'
 * array of the row type oid, whose header is written now. */
static tc_err tc_qmon_hold(tc_qmon *m, tc_jbuf *j, size_t rows, int binary, uint32_t oid,
                           const char *tmpl, const char *what, int32_t partition, char *errstr,
                           size_t errstr_size)
{
    char *doc;
    size_t cap, len = 0;

    if (binary)
        tc_quality_sql_rows_end(j, oid, rows);
    else
        tc_jbuf_arr_end(j);
    if (tc_jbuf_failed(j))
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size,
                          "quality: partition %d: %s: the document does not fit in %u bytes",
                          partition, what, TC_QMON_DOC_MAX);
    if (!rows)
        return TC_OK;
    cap = j->cap;
    doc = tc_jbuf_take(j, &len);
    if (!doc)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
    m->held[m->nheld++] = (qmon_held){tmpl, what, partition, doc, cap, binary ? len : 0};
    return TC_OK;
}

/* Move every lane's metric rows (and its share of the fleet's) into held documents. */
static tc_err tc_qmon_take_rows(tc_qmon *m, char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;

    for (int32_t p = 0; err == TC_OK && p < m->lane_end; p++) {
        tc_jbuf dev, cont, fleet;
        qmon_collect c = {m, &dev, &cont, &fleet, 0, 0, 0};
        tc_qm_totals t;

        if (!m->lanes[p])
            continue;
        if (m->nheld + 3 > TC_QMON_HELD_MAX)
            break; /* the rows wait in tc_qm until the held ones are written */
        tc_qm_get_totals(m->lanes[p]->qm, &t);
        tc_qbufs_jbuf(&m->bufs, &dev, TC_QMON_DOC_MAX, t.rows_held * TC_QMON_ROW_BIN);
        tc_qbufs_jbuf(&m->bufs, &cont, TC_QMON_DOC_MAX, 0);
        tc_qbufs_jbuf(&m->bufs, &fleet, TC_QMON_DOC_MAX, 0);
        tc_quality_sql_rows_begin(&dev);
        tc_quality_sql_rows_begin(&cont);
        tc_quality_sql_rows_begin(&fleet);
        tc_qm_flush(m->lanes[p]->qm, INT64_MAX, tc_qmon_collect_row, &c);
        err = tc_qmon_hold(m, &dev, c.ndev, 1, m->new_row_oid, tc_quality_sql_insert_rows,
                           "write quality_1m", p, errstr, errstr_size);
        if (err == TC_OK)
            err = tc_qmon_hold(m, &cont, c.ncont, 1, m->row_oid, tc_quality_sql_write_rows,
                               "write quality_1m (minutes continued)", p, errstr, errstr_size);
        if (err == TC_OK)
            err = tc_qmon_hold(m, &fleet, c.nfleet, 1, m->row_oid, tc_quality_sql_write_fleet,
                               "write quality_fleet_1m", p, errstr, errstr_size);
        tc_qbufs_jbuf_done(&m->bufs, &dev);
        tc_qbufs_jbuf_done(&m->bufs, &cont);
        tc_qbufs_jbuf_done(&m->bufs, &fleet);
    }
    return err;
}

/* Items of partition p (-1: all) of one kind into a flush's document; each returns how many. */
typedef size_t (*qmon_items_fn)(const tc_qmon *m, tc_jbuf *j, int32_t p);

static size_t tc_qmon_events_items(const tc_qmon *m, tc_jbuf *j, int32_t p)
{
    size_t n = 0;

    for (size_t i = 0; i < m->nevents; i++) {
        const qmon_event *e = &m->events[i];
        if (e->partition != p)
            continue;
        tc_jbuf_obj_begin(j);
        tc_jbuf_key(j, "seq");
        tc_jbuf_int(j, (int64_t)i);
        tc_qmon_jstr(j, "device_id", e->device);
        tc_qmon_jstr(j, "metric", e->metric);
        tc_qmon_jstr(j, "kind", e->kind);
        tc_qmon_jstr(j, "rule", e->rule);
        tc_qmon_jstr(j, "severity", e->severity);
        tc_jbuf_key(j, "s");
        tc_jbuf_int(j, e->start_us);
        tc_jbuf_key(j, "e");
        tc_jbuf_int(j, e->end_us);
        tc_qmon_jdouble(j, "score", e->score);
        tc_qmon_jdouble(j, "observed", e->observed);
        tc_qmon_jdouble(j, "expected", e->expected);
        tc_jbuf_key(j, "p");
        tc_jbuf_int(j, e->partition);
        tc_jbuf_obj_end(j);
        n++;
    }
    return n;
}

static size_t tc_qmon_dead_items(const tc_qmon *m, tc_jbuf *j, int32_t p)
{
    size_t n = 0;

    for (size_t i = 0; i < m->ndead; i++) {
        const qmon_dead *d = &m->dead[i];
        if (d->partition != p)
            continue;
        tc_jbuf_obj_begin(j);
        tc_qmon_jstr(j, "device_id", d->device);
        tc_jbuf_key(j, "m");
        tc_jbuf_int(j, d->minute);
        tc_qmon_jstr(j, "reason", tc_reject_name(d->reason));
        tc_jbuf_key(j, "dup");
        tc_jbuf_int(j, d->reason == TC_REJECT_DUPLICATE);
        tc_jbuf_obj_end(j);
        n++;
    }
    return n;
}

/* The minutes the held documents and dead letters touch (for the fleet's device count). */
static size_t tc_qmon_minutes_items(const tc_qmon *m, tc_jbuf *j, int32_t p)
{
    (void)p;
    for (size_t i = 0; i < m->nminutes; i++)
        tc_jbuf_int(j, m->minutes[i]);
    for (size_t i = 0; i < m->ndead; i++)
        tc_jbuf_int(j, m->dead[i].minute);
    return m->nminutes + m->ndead;
}

/* Hold the document of items of partition p (nothing when there are none). */
static tc_err tc_qmon_hold_items(tc_qmon *m, qmon_items_fn items, int32_t p, const char *tmpl,
                                 const char *what, char *errstr, size_t errstr_size)
{
    tc_jbuf j;
    tc_err err;

    tc_qbufs_jbuf(&m->bufs, &j, TC_QMON_DOC_MAX, 0);
    tc_jbuf_arr_begin(&j);
    err = tc_qmon_hold(m, &j, items(m, &j, p), 0, 0, tmpl, what, p, errstr, errstr_size);
    tc_qbufs_jbuf_done(&m->bufs, &j);
    return err;
}

/* Dead letters, the fleet's minutes and findings into held documents, one a partition, and the
 * findings into sent[] (copies, announced when a flush writing them commits). */
static tc_err tc_qmon_take_events(tc_qmon *m, char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;
    size_t k;

    if (m->nheld + 2 * m->nlanes + 1 > TC_QMON_HELD_MAX)
        return TC_OK; /* they wait for the held documents to be written */
    for (int32_t p = 0; err == TC_OK && p < m->lane_end && m->ndead; p++)
        if (m->lanes[p])
            err = tc_qmon_hold_items(m, tc_qmon_dead_items, p, tc_quality_sql_write_dead,
                                     "write the dead letters' figures", errstr, errstr_size);
    if (err == TC_OK && (m->nminutes || m->ndead))
        err = tc_qmon_hold_items(m, tc_qmon_minutes_items, -1, tc_quality_sql_write_devices,
                                 "count the fleet's devices", errstr, errstr_size);
    for (int32_t p = 0; err == TC_OK && p < m->lane_end && m->nevents; p++)
        if (m->lanes[p])
            err = tc_qmon_hold_items(m, tc_qmon_events_items, p, tc_quality_sql_write_events,
                                     "write the anomalies", errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (m->nevents && !m->sent && !(m->sent = calloc(TC_QMON_EVENTS_MAX, sizeof(*m->sent))))
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
    for (k = 0; k < m->nevents && m->nsent < TC_QMON_EVENTS_MAX; k++) {
        qmon_event *e = &m->sent[m->nsent++];
        *e = m->events[k];
        e->device = tc_arena_strndup(&m->sent_strings, e->device, strlen(e->device));
        e->metric =
            e->metric ? tc_arena_strndup(&m->sent_strings, e->metric, strlen(e->metric)) : NULL;
        e->rule = e->rule ? tc_arena_strndup(&m->sent_strings, e->rule, strlen(e->rule)) : NULL;
    }
    m->nevents = m->ndead = m->nminutes = 0;
    tc_arena_reset(&m->strings);
    return TC_OK;
}

void tc_qmon_marks_free(tc_qmon *m)
{
    for (size_t i = 0; i < m->nmarks; i++)
        tc_qck_release(&m->marks[i].ck, &m->bufs);
    m->nmarks = 0;
}

/* The marks of the lanes that moved, with their checkpoints: each moves only from the mark this
 * member read (fencing). */
static tc_err tc_qmon_take_marks(tc_qmon *m, char *errstr, size_t errstr_size)
{
    tc_qmon_marks_free(m);
    if (m->marks_cap < m->nlanes) {
        qmon_mark *grown = realloc(m->marks, m->nlanes * sizeof(*grown));
        if (!grown)
            return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
        m->marks = grown;
        m->marks_cap = m->nlanes;
    }
    for (int32_t p = 0; p < m->lane_end; p++) {
        qmon_lane *l = m->lanes[p];
        qmon_mark *k = &m->marks[m->nmarks];
        tc_err err;

        if (!l || l->next <= l->durable)
            continue;
        err = tc_qck_take(&k->ck, l->qd, l->ck_since, &m->bufs, errstr, errstr_size);
        if (err != TC_OK)
            return err;
        m->nmarks++;
        k->partition = p;
        k->next = l->next;
        snprintf(k->part, sizeof(k->part), "%d", p);
        snprintf(k->next_s, sizeof(k->next_s), "%" PRId64, l->next);
        snprintf(k->from, sizeof(k->from), "%" PRId64, l->durable);
        snprintf(k->wm, sizeof(k->wm), "%" PRId64, l->watermark);
        snprintf(k->fence_msg, sizeof(k->fence_msg),
                 "quality marks of topic \"%s\" partition %d: the stored next offset is no"
                 " longer %lld, where this flush started: another member owns it now",
                 m->topic, p, (long long)l->durable);
        k->insert = l->durable == TC_QMON_MARK_ABSENT;
    }
    return TC_OK;
}

/* The lane's whole detectors' checkpoint ($6 insert, $7 update; NULL: none) goes with the mark
 * when the flush writes it whole; otherwise its changed devices' records (ckpt.h) go before. */
static const char tc_qmon_sql_mark_insert[] =
    "INSERT INTO @S.quality_offsets (group_id, topic, partition, next_offset, watermark_us,"
    " detector_state) VALUES ($1, $2, $3::int, $4::bigint, $5::bigint, $6::bytea)"
    " ON CONFLICT (group_id, topic, partition) DO NOTHING";
static const char tc_qmon_sql_mark_update[] =
    "UPDATE @S.quality_offsets SET next_offset = $4::bigint, watermark_us = $5::bigint,"
    " updated_at = now() WHERE group_id = $1 AND topic = $2 AND partition = $3::int"
    " AND next_offset = $6::bigint";
static const char tc_qmon_sql_mark_update_whole[] =
    "UPDATE @S.quality_offsets SET next_offset = $4::bigint, watermark_us = $5::bigint,"
    " detector_state = $7::bytea, updated_at = now() WHERE group_id = $1 AND topic = $2"
    " AND partition = $3::int AND next_offset = $6::bigint";

/* The flush's statements: the held documents in the order they were made, then each lane's
 * changed detectors and its mark. */
static tc_err tc_qmon_stmts(tc_qmon *m, char *errstr, size_t errstr_size)
{
    size_t n = m->nheld + 2 * m->nmarks, at = m->nheld;

    if (n > m->stmts_cap) {
        tc_qw_stmt *grown = realloc(m->stmts, n * sizeof(*grown));
        if (!grown)
            return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
        m->stmts = grown;
        m->stmts_cap = n;
    }
    memset(m->stmts, 0, n * sizeof(*m->stmts));
    for (size_t i = 0; i < m->nheld; i++) {
        tc_qw_stmt *st = &m->stmts[i];
        st->tmpl = m->held[i].tmpl;
        st->what = m->held[i].what;
        st->nparams = 1;
        st->values[0] = m->held[i].doc;
        if (m->held[i].len) { /* binary: the metric rows' array */
            st->lengths[0] = (int)m->held[i].len;
            st->formats[0] = 1;
        }
    }
    for (size_t i = 0; i < m->nmarks; i++) {
        const qmon_mark *k = &m->marks[i];
        const char *v[TC_QW_PARAMS_MAX] = {m->group, m->topic, k->part, k->next_s, k->wm, k->from};
        tc_qw_stmt *st;

        if (k->ck.full && !k->insert) {
            st = &m->stmts[at++];
            st->tmpl = tc_quality_sql_clear_states;
            st->what = "write the detectors' checkpoint";
            st->nparams = 3;
            memcpy(st->values, v, 3 * sizeof(*v));
        } else if (k->ck.n) {
            st = &m->stmts[at++];
            st->tmpl = tc_quality_sql_write_states;
            st->what = "write the detectors' checkpoint";
            st->nparams = 5;
            memcpy(st->values, v, 3 * sizeof(*v));
            st->values[3] = (const char *)k->ck.ids;
            st->values[4] = (const char *)k->ck.states;
            st->lengths[3] = (int)k->ck.ids_len;
            st->lengths[4] = (int)k->ck.states_len;
            st->formats[3] = st->formats[4] = 1;
        }
        st = &m->stmts[at++];
        st->tmpl = k->insert    ? tc_qmon_sql_mark_insert
                   : k->ck.full ? tc_qmon_sql_mark_update_whole
                                : tc_qmon_sql_mark_update;
        st->what = "write the quality marks";
        st->nparams = k->insert ? 6 : k->ck.full ? 7 : 6;
        memcpy(st->values, v, sizeof(v));
        if (k->insert || k->ck.full) {
            int w = k->insert ? 5 : 6;
            st->values[w] = (const char *)k->ck.whole; /* NULL: none, for an insert */
            st->lengths[w] = (int)k->ck.whole_len;
            st->formats[w] = 1;
        }
        st->fence = 1;
        st->fence_msg = k->fence_msg;
    }
    m->nstmts = at;
    return TC_OK;
}

tc_err tc_qmon_flush_build(tc_qmon *m, char *errstr, size_t errstr_size)
{
    tc_err err = tc_qmon_take_rows(m, errstr, errstr_size);

    if (err == TC_OK)
        err = tc_qmon_take_events(m, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_qmon_take_marks(m, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_qmon_stmts(m, errstr, errstr_size);
    return err;
}
