/*
 * refused.c -- rows the primary sink's storage refuses out of a batch it would otherwise take.
 *
 * A value too long for a column an operator narrowed, a CHECK added to readings: the batch fails
 * as a whole. The primary finds the rows (tc_sink_primary_ops.refused: the store bisects, COPYs of
 * halves rolled back); each becomes a dead letter with the storage's reason (the payload is the
 * row as JSON, the original stays at its Kafka offset), the other sinks skip it, and the batch is
 * written without them. More than TC_REFUSED_MAX, or every row of a batch of several, is not data
 * but the schema: that stops the run.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *tc_pipeline_row_json(const tc_batch *b, size_t i, size_t *len);

/* Rows of the batch meant for the primary, when some are not (another sink catching up). */
const tc_batch *tc_pipeline_primary_rows(tc_slot *s)
{
    tc_batch *src = s->batch, *dst = s->filtered;

    if (s->primary_rows == src->n)
        return src;
    tc_batch_reset_like(dst, src);
    for (size_t i = 0; i < src->n; i++) {
        if (s->sinks[i] & TC_ROW_PRIMARY)
            tc_batch_copy_row(dst, src, i);
    }
    return dst;
}

/* The row as a JSON document, for the dead letter of a row the primary's storage refused. */
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
    err = p->primary.ops->primary->refused(p->primary.ctx, s->place, rows, p->refused,
                                           TC_REFUSED_MAX, &p->nrefused, errstr, errstr_size);
    if (err != TC_OK || p->nrefused == 0) /* nothing refused: let the retry decide */
        return err;
    /* Batch rows of the refused primary rows (rows may be the primary's subset of the batch). */
    for (size_t k = 0, j = 0, i = 0; i < s->batch->n && k < p->nrefused; i++) {
        if (!(s->sinks[i] & TC_ROW_PRIMARY))
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
        err = json ? tc_dlq_batch_add(s->dlq, TC_REJECT_STORE_REFUSED, p->primary.name,
                                      p->refused[k].why, json, len, s->batch->device_id[i].ptr,
                                      s->batch->device_id[i].len, s->batch->partition[i],
                                      s->batch->offset[i], p->now_us)
                   : TC_ERR_NOMEM;
        free(json);
        if (err != TC_OK)
            return tc_err_set(err, errstr, errstr_size, "could not dead-letter a refused row: %s",
                              tc_err_name(err));
        s->sinks[i] = 0;
        s->primary_rows--;
    }
    return TC_OK;
}
