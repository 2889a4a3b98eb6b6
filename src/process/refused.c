/*
 * refused.c -- rows PostgreSQL refuses out of a batch it would otherwise take.
 *
 * A value too long for a column an operator narrowed, a CHECK added to readings: the batch fails
 * as a whole. Bisection -- COPYs of halves in transactions that are rolled back, O(k log n) for k
 * bad rows -- finds the rows; each becomes a dead letter with PostgreSQL's reason (the payload is
 * the row as JSON, the original stays at its Kafka offset) and the batch is written without them.
 * More than TC_REFUSED_MAX, or every row of a batch of several, is not data but the schema: that
 * stops the run.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tc_pipeline_copy_row(tc_batch *dst, const tc_batch *src, size_t i);
static tc_err tc_pipeline_bisect(tc_pipeline *p, const tc_batch *rows, size_t lo, size_t hi);
static char *tc_pipeline_row_json(const tc_batch *b, size_t i, size_t *len);

/* Append row i of src to dst (which has src's dynamic columns). */
static void tc_pipeline_copy_row(tc_batch *dst, const tc_batch *src, size_t i)
{
    size_t j = dst->n;

    dst->time_us[j] = src->time_us[i];
    dst->device_id[j] = src->device_id[i];
    dst->tags[j] = src->tags[i];
    dst->extra[j] = src->extra[i];
    dst->schema_version[j] = src->schema_version[i];
    dst->partition[j] = src->partition[i];
    dst->offset[j] = src->offset[i];
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        dst->metric[m][j] = src->metric[m][i];
        dst->present[m][j] = src->present[m][i];
    }
    for (size_t d = 0; d < src->ndyn && d < dst->ndyn; d++) {
        dst->dyn[d][j] = src->dyn[d][i];
        dst->dyn_present[d][j] = src->dyn_present[d][i];
    }
    dst->n++;
}

/* Start dst empty, with src's dynamic columns. */
void tc_pipeline_reset_like(tc_batch *dst, const tc_batch *src)
{
    tc_batch_reset(dst);
    for (size_t d = 0; d < src->ndyn; d++)
        tc_batch_dyn_column(dst, src->dyn_name[d], strlen(src->dyn_name[d]));
}

/* Rows of the batch meant for the store, when some are not (another sink catching up). */
const tc_batch *tc_pipeline_store_rows(tc_slot *s)
{
    tc_batch *src = s->batch, *dst = s->filtered;

    if (s->store_rows == src->n)
        return src;
    tc_pipeline_reset_like(dst, src);
    for (size_t i = 0; i < src->n; i++) {
        if (s->sinks[i] & TC_SINK_STORE)
            tc_pipeline_copy_row(dst, src, i);
    }
    return dst;
}

/*
 * PostgreSQL refused the batch because of some rows' values (a value too long for a column an
 * operator narrowed, a CHECK added to readings): find them by bisection -- COPYs of halves in
 * transactions that are rolled back, O(k log n) for k bad rows -- make each one a dead letter with
 * PostgreSQL's reason (the payload is the row as JSON; the original is at its Kafka offset), and
 * let the caller write the batch without them. The lake and the rollups skip them too, so both
 * stores keep the same readings. More than TC_REFUSED_MAX of them, or every row of a batch of
 * several, is not some rows but the schema: that stops the run.
 */
static tc_err tc_pipeline_bisect(tc_pipeline *p, const tc_batch *rows, size_t lo, size_t hi)
{
    tc_store *st = p->wstore; /* where the batch failed: idle now */
    char errstr[TC_ERRSTR_MAX];
    tc_err err;

    tc_pipeline_reset_like(p->probe, rows);
    for (size_t i = lo; i < hi; i++)
        tc_pipeline_copy_row(p->probe, rows, i);
    err = tc_store_probe_rows(st, p->probe, errstr, sizeof(errstr));
    if (err == TC_OK || !tc_store_refused_rows(st))
        return err;
    if (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        err = tc_pipeline_bisect(p, rows, lo, mid);
        return err == TC_OK ? tc_pipeline_bisect(p, rows, mid, hi) : err;
    }
    if (p->nrefused >= TC_REFUSED_MAX)
        return TC_ERR_INVALID;
    p->refused[p->nrefused].row = lo;
    snprintf(p->refused[p->nrefused].why, sizeof(p->refused[0].why), "%.*s",
             (int)sizeof(p->refused[0].why) - 1, errstr);
    p->nrefused++;
    return TC_OK;
}

/* The row as a JSON document, for the dead letter of a row PostgreSQL refused. */
static char *tc_pipeline_row_json(const tc_batch *b, size_t i, size_t *len)
{
    char ts[40];
    tc_jbuf jb;
    char *out;

    tc_jbuf_init(&jb, 0);
    tc_jbuf_obj_begin(&jb);
    tc_jbuf_key(&jb, "device_id");
    tc_jbuf_strn(&jb, b->device_id[i].ptr, b->device_id[i].len);
    tc_time_format_rfc3339(b->time_us[i], ts, sizeof(ts));
    tc_jbuf_key(&jb, "timestamp");
    tc_jbuf_str(&jb, ts);
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        if (!b->present[m][i])
            continue;
        tc_jbuf_key(&jb, tc_metric_names[m]);
        tc_jbuf_double(&jb, b->metric[m][i]);
    }
    if (b->tags[i].ptr) {
        tc_jbuf_key(&jb, "tags");
        tc_jbuf_raw(&jb, b->tags[i].ptr, b->tags[i].len);
    }
    if (b->extra[i].ptr && b->extra[i].len > 2) { /* its members, after the fixed ones */
        tc_jbuf_append(&jb, ",", 1);
        tc_jbuf_append(&jb, b->extra[i].ptr + 1, b->extra[i].len - 2);
    }
    tc_jbuf_obj_end(&jb);
    out = tc_jbuf_take(&jb, len);
    tc_jbuf_free(&jb);
    return out;
}

tc_err tc_pipeline_isolate_refused(tc_pipeline *p, tc_slot *s, const tc_batch *rows, char *errstr,
                                   size_t errstr_size)
{
    size_t map[TC_REFUSED_MAX];
    tc_err err;

    p->nrefused = 0;
    err = tc_pipeline_bisect(p, rows, 0, rows->n);
    if (err == TC_ERR_INVALID || (err == TC_OK && rows->n > 1 && p->nrefused == rows->n))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "PostgreSQL refuses %s rows of one batch of topic \"%s\" "
                          "(first: %s): stopping rather than dead-lettering the stream",
                          err == TC_ERR_INVALID ? "more than 64" : "all the", p->cfg->kafka_topic,
                          p->refused[0].why);
    if (err != TC_OK)
        return tc_err_set(err, errstr, errstr_size, "could not isolate refused rows: %s",
                          tc_err_name(err));
    if (p->nrefused == 0) /* refused as a whole, accepted in parts: let the retry decide */
        return TC_OK;
    /* Batch rows of the refused store rows (rows may be the store's subset of the batch). */
    for (size_t k = 0, j = 0, i = 0; i < s->batch->n && k < p->nrefused; i++) {
        if (!(s->sinks[i] & TC_SINK_STORE))
            continue;
        if (j++ == p->refused[k].row)
            map[k++] = i;
    }
    for (size_t k = 0; k < p->nrefused; k++) {
        size_t i = map[k], len = 0;
        char *json = tc_pipeline_row_json(s->batch, i, &len);
        tc_log_input in = {p->cfg->kafka_topic, s->batch->partition[i], s->batch->offset[i],
                           s->batch->device_id[i].ptr, s->batch->device_id[i].len};
        tc_log_in(TC_LOG_WARN, "pipeline", &in,
                  "topic \"%s\" partition %d offset %lld: %s; dead-lettered", p->cfg->kafka_topic,
                  s->batch->partition[i], (long long)s->batch->offset[i], p->refused[k].why);
        err = json ? tc_dlq_batch_add(s->dlq, TC_REJECT_STORE_REFUSED, "store", p->refused[k].why,
                                      json, len, s->batch->device_id[i].ptr,
                                      s->batch->device_id[i].len, s->batch->partition[i],
                                      s->batch->offset[i], p->now_us)
                   : TC_ERR_NOMEM;
        free(json);
        if (err != TC_OK)
            return tc_err_set(err, errstr, errstr_size, "could not dead-letter a refused row: %s",
                              tc_err_name(err));
        s->sinks[i] = 0;
        s->store_rows--;
    }
    return TC_OK;
}
