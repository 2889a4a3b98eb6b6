/*
 * decode.c -- one message into a row of the batch, or into a dead letter.
 *
 * Confluent-framed Avro goes through the registry's schema, anything else is JSON; the row is then
 * shaped to the schema catalog and fingerprinted for the dedupe window. A refused message becomes a
 * dead letter with its payload (capped at TC_DLQ_PAYLOAD_MAX). After an assignment the dedupe
 * window is rebuilt from a lookback over messages every sink already holds, skipping the stored
 * dead letters of that stretch (they were refused under the configuration of their time).
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An Avro writer schema the catalog does not know forces a refresh at most this often. */
#define TC_CATALOG_FORCE_US 1000000LL

static int tc_pipeline_lookback_skips(const tc_pipeline *p, int32_t partition, int64_t offset);

/* The dead letters of [from, to) of a partition, which its dedupe lookback must skip (they were
 * refused under the configuration of their time, whatever the current one says of them). When they
 * cannot be read, there is no lookback for the partition: fewer resends are recognised, none is
 * taken for a new reading. */
tc_err tc_pipeline_lookback_prepare(tc_pipeline *p, int32_t partition, int64_t from, int64_t to)
{
    char errstr[TC_ERRSTR_MAX];
    size_t cap = (size_t)(to - from), n = 0;
    int64_t *dead;
    tc_err err;

    if ((size_t)partition >= p->nlookback) {
        size_t want = (size_t)partition + 1;
        struct tc_lookback *grown = realloc(p->lookback, want * sizeof(*grown));
        if (!grown)
            return TC_ERR_NOMEM;
        memset(grown + p->nlookback, 0, (want - p->nlookback) * sizeof(*grown));
        p->lookback = grown;
        p->nlookback = want;
    }
    dead = malloc(cap * sizeof(*dead));
    if (!dead)
        return TC_ERR_NOMEM;
    err = p->primary.ops->primary->dead_letters(p->primary.ctx, partition, from, to, dead, cap, &n,
                                                errstr, sizeof(errstr));
    if (err != TC_OK) {
        tc_log_input in = {p->cfg->kafka_topic, partition, -1, NULL, 0};
        tc_log_in(TC_LOG_WARN, "pipeline", &in, "partition %d: no dedupe lookback: %s", partition,
                  errstr);
        free(dead);
        return err;
    }
    free(p->lookback[partition].dead);
    p->lookback[partition] = (struct tc_lookback){dead, n};
    return TC_OK;
}

/* Whether the lookback of partition must skip offset (a dead letter). */
static int tc_pipeline_lookback_skips(const tc_pipeline *p, int32_t partition, int64_t offset)
{
    const struct tc_lookback *lb;
    size_t lo = 0, hi;

    if (partition < 0 || (size_t)partition >= p->nlookback)
        return 0;
    lb = &p->lookback[partition];
    hi = lb->ndead;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lb->dead[mid] < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < lb->ndead && lb->dead[lo] == offset;
}

/* Record a refused reading (row: its decoded row in the batch for the log, or SIZE_MAX); when the
 * dead-letter batch is full, flushes first if may_flush, else answers TC_ERR_FULL. */
static tc_err tc_pipeline_dead_letter_row(tc_pipeline *p, const tc_message *m, tc_reject reason,
                                          const char *stage, const char *detail, size_t row,
                                          int may_flush)
{
    char cut[TC_REJECT_DETAIL_MAX * 2];
    size_t len = m->len;
    uint64_t skipped = 0;
    tc_err err;

    if (tc_log_enabled(TC_LOG_INFO) && tc_log_limit_take(&p->dlq_log, TC_DLQ_LOG_PER_S, &skipped)) {
        /* The device: the decoded id of a row refused after decoding, else the message's key. */
        const tc_slice *dev = row != SIZE_MAX ? &p->cur->batch->device_id[row] : NULL;
        tc_log_input in = {p->cfg->kafka_topic, m->partition, m->offset, dev ? dev->ptr : m->key,
                           dev ? dev->len : m->key_len};
        char more[64] = "";
        if (skipped)
            snprintf(more, sizeof(more), " (%llu more not logged before it)",
                     (unsigned long long)skipped);
        tc_log_in(TC_LOG_INFO, "pipeline", &in, "dead letter: %s (%s): %s%s",
                  tc_reject_name(reason), stage, detail, more);
    }
    if (len > TC_DLQ_PAYLOAD_MAX) {
        snprintf(cut, sizeof(cut), "%.*s (payload of %zu bytes kept to its first %d)",
                 TC_REJECT_DETAIL_MAX, detail, m->len, TC_DLQ_PAYLOAD_MAX);
        detail = cut;
        len = TC_DLQ_PAYLOAD_MAX;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        err = tc_dlq_batch_add(p->cur->dlq, reason, stage, detail, m->payload ? m->payload : "",
                               len, m->key, m->key_len, m->partition, m->offset, p->now_us);
        if (err != TC_ERR_FULL || !may_flush)
            return err;
        err = tc_pipeline_dispatch(p);
        if (err != TC_OK)
            return err;
    }
    return TC_ERR_FULL;
}

tc_err tc_pipeline_dead_letter(tc_pipeline *p, const tc_message *m, tc_reject reason,
                               const char *stage, const char *detail)
{
    int decoded = reason == TC_REJECT_OUT_OF_RANGE || reason == TC_REJECT_TIMESTAMP_FUTURE ||
                  reason == TC_REJECT_TIMESTAMP_TOO_OLD || reason == TC_REJECT_DUPLICATE;

    return tc_pipeline_dead_letter_row(p, m, reason, stage, detail,
                                       decoded ? p->cur->batch->n : SIZE_MAX, 1);
}

/* A resend's dead-letter detail; has_id: its fingerprint was made from its message_id. */
static void tc_pipeline_duplicate_detail(char *detail, size_t size, int has_id)
{
    snprintf(detail, size,
             "a resend of an earlier reading of this partition (same device_id, timestamp and %s)",
             has_id ? "message_id" : "content");
}

/*
 * A verdict one message late. The dedupe window's lookup is a cache miss on a table of megabytes
 * (tc_dedupe_prefetch starts it once the row's fingerprint is known, but only validation came
 * between the two, and the check waited on it: a tenth of the pipeline's time). So a row that
 * passes validation is taken into the batch at once and its verdict settled when the next
 * message has been decoded, shaped and validated -- a message's work later, the line loaded by
 * then. A row found to be a resend is then taken back as a refused row is (refused.c): no sink
 * takes it (its sinks cleared, the primary's count less one) and it becomes a dead letter from
 * the copy of its message kept meanwhile. The verdicts come in the same order, each before the
 * next row's, so the window and what it answers are the same as checking each row at once.
 *
 * The batch must not leave, nor take another dead letter, with a verdict pending: the dispatch,
 * the lookback, the next message's dead letter and its own verdict settle it first, and a dropped
 * batch forgets it. Its dead letter must fit without a flush (a flush would send the batch with
 * the next message half decoded in it): a row is kept waiting only while the dead-letter batch
 * has room for its message (tc_dlq_batch_room), else it is checked at once as before.
 */
tc_err tc_pipeline_dedupe_settle(tc_pipeline *p)
{
    struct tc_dedupe_late *l = &p->late;
    char detail[TC_REJECT_DETAIL_MAX];
    tc_err err;

    if (!l->on)
        return TC_OK;
    l->on = 0;
    if (!tc_dedupe_check(p->dedupe, l->fp, l->msg.partition, l->msg.offset, l->time_us))
        return TC_OK;
    p->cur->sinks[l->row] = 0;
    if (!(l->sinks & TC_ROW_PRIMARY))
        return TC_OK;
    p->cur->primary_rows--;
    tc_pipeline_duplicate_detail(detail, sizeof(detail), l->has_id);
    err = tc_pipeline_dead_letter_row(p, &l->msg, TC_REJECT_DUPLICATE, "dedupe", detail, l->row, 0);
    return err == TC_ERR_FULL ? TC_ERR_INVALID : err; /* cannot be: its room was checked */
}

/* Keep row `row` (message m, for sinks) waiting for its verdict; 0 when it cannot wait (its dead
 * letter might not fit, or no memory for the copy): the caller checks it at once. */
static int tc_pipeline_dedupe_defer(tc_pipeline *p, const tc_message *m, unsigned sinks, size_t row)
{
    struct tc_dedupe_late *l = &p->late;
    size_t keep = m->payload ? (m->len < TC_DLQ_PAYLOAD_MAX ? m->len : TC_DLQ_PAYLOAD_MAX) : 0;
    size_t key = m->key ? m->key_len : 0;

    if ((sinks & TC_ROW_PRIMARY) &&
        !tc_dlq_batch_room(p->cur->dlq, keep, key, TC_REJECT_DETAIL_MAX * 2))
        return 0;
    if (keep + key > l->cap) {
        char *grown = realloc(l->buf, keep + key);
        if (!grown)
            return 0;
        l->buf = grown;
        l->cap = keep + key;
    }
    if (keep)
        memcpy(l->buf, m->payload, keep);
    if (key)
        memcpy(l->buf + keep, m->key, key);
    l->msg = *m;
    l->msg.payload = m->payload ? l->buf : NULL;
    l->msg.key = m->key ? l->buf + keep : NULL;
    l->msg.opaque_ = NULL;
    l->row = row;
    l->fp = p->row_fp;
    l->has_id = p->row_has_id;
    l->sinks = sinks;
    l->time_us = p->cur->batch->time_us[row];
    l->on = 1;
    return 1;
}

/* Schema evolution of the row being decoded (schema/shape.h), then its fingerprint for the dedupe
 * window, made from its message_id when it has one. */
tc_reject tc_pipeline_shape(tc_pipeline *p, size_t row, int32_t writer_id, int32_t partition)
{
    tc_batch *b = p->cur->batch;
    tc_jbuf id;
    tc_reject r;

    tc_jbuf_init(&id, 0);
    r = tc_shape_row(b, row, p->catalog, writer_id, &p->dyn_logged, p->dedupe ? &id : NULL,
                     &p->row_has_id);
    if (r == TC_REJECT_NONE && p->dedupe) {
        p->row_fp = tc_dedupe_fingerprint(b, row, p->row_has_id ? id.data : NULL,
                                          p->row_has_id ? id.len : 0);
        tc_dedupe_prefetch(p->dedupe, p->row_fp, partition);
    }
    tc_jbuf_free(&id);
    return r;
}

/*
 * Decode one message into row b->n: Confluent-framed Avro (magic byte 0, schema id) through the
 * registry's schema, anything else as JSON. While the registry is unreachable the message is held
 * and retried with back-off -- consumption waits, nothing is lost; an id the registry does not
 * know, or a writer schema that cannot make a reading, is a dead letter.
 */
tc_reject tc_pipeline_decode(tc_pipeline *p, const tc_message *m, int32_t *writer_id, char *detail,
                             size_t detail_size)
{
    const tc_avro_plan *plan;
    char errstr[TC_ERRSTR_MAX];
    long backoff = TC_RETRY_MIN_MS;
    int32_t id;
    tc_err err;

    *writer_id = -1;
    if (!tc_avro_frame(m->payload, m->len, &id)) {
        if (tc_pipeline_catalog_wait(p))
            return TC_PIPELINE_STOPPED;
        return tc_json_reading_decode(p->cur->batch, m->payload, m->len, detail, detail_size);
    }
    *writer_id = id;
    if (!p->schemas) {
        snprintf(detail, detail_size, "Avro message (schema id %d) but no registry.url is set",
                 (int)id);
        return TC_REJECT_UNKNOWN_SCHEMA;
    }
    while ((err = tc_schema_cache_get(p->schemas, id, &plan, errstr, sizeof(errstr))) != TC_OK &&
           tc_err_is_retriable(err)) {
        tc_log_warn("pipeline", "schema %d: %s; retrying in %ld ms", (int)id, errstr, backoff);
        if (tc_pipeline_backoff(p, &backoff))
            return TC_PIPELINE_STOPPED;
    }
    if (err == TC_ERR_NOT_FOUND) {
        snprintf(detail, detail_size, "schema id %d: %.200s", (int)id, errstr);
        return TC_REJECT_UNKNOWN_SCHEMA;
    }
    if (err != TC_OK) {
        snprintf(detail, detail_size, "schema id %d: %.200s", (int)id, errstr);
        return TC_REJECT_SCHEMA_MISMATCH;
    }
    if (tc_pipeline_catalog_wait(p))
        return TC_PIPELINE_STOPPED;
    if (!tc_catalog_by_id(p->catalog, id) &&
        p->now_us - p->catalog_forced_us >= TC_CATALOG_FORCE_US) {
        /* A writer schema the catalog does not know: perhaps a version registered since the last
         * refresh. Ask now rather than at the next interval, but not for every such message: ids
         * of other subjects never appear in this one. */
        p->catalog_forced_us = p->now_us;
        p->catalog_next_us = 0;
        tc_pipeline_refresh_catalog(p);
    }
    return tc_avro_reading_decode(p->cur->batch, plan, m->payload + TC_AVRO_FRAME_BYTES,
                                  m->len - TC_AVRO_FRAME_BYTES, detail, detail_size);
}

/*
 * A message every sink holds already, read again only to rebuild the dedupe window (the lookback
 * after an assignment): decoded and checked like a new one, so that the window ends up as it was
 * when the message was first taken, then forgotten. Its strings are dropped with it when the batch
 * is empty (the lookback comes before any new message of the partition).
 */
tc_err tc_pipeline_remember(tc_pipeline *p, const tc_message *m)
{
    char detail[TC_REJECT_DETAIL_MAX];
    int32_t writer_id;
    tc_reject r;

    tc_err err = tc_pipeline_dedupe_settle(p); /* its verdict comes before this one's */

    if (err != TC_OK)
        return err;
    if (m->len == 0 || !m->payload || m->len > (size_t)p->cfg->max_message_bytes ||
        tc_pipeline_lookback_skips(p, m->partition, m->offset) ||
        tc_batch_row_begin(p->cur->batch) != TC_OK)
        return TC_OK;
    r = tc_pipeline_decode(p, m, &writer_id, detail, sizeof(detail));
    if (r == TC_PIPELINE_STOPPED)
        return TC_ERR_STOPPED;
    if (r == TC_REJECT_NONE)
        r = tc_pipeline_shape(p, p->cur->batch->n, writer_id, m->partition);
    if (r == TC_REJECT_NONE)
        r = tc_validate_row(p->cur->batch, p->cur->batch->n, &p->cfg->limits, p->now_us, detail,
                            sizeof(detail));
    if (r == TC_REJECT_NONE)
        tc_dedupe_check(p->dedupe, p->row_fp, m->partition, m->offset,
                        p->cur->batch->time_us[p->cur->batch->n]);
    if (p->cur->batch->n == 0)
        tc_batch_reset(p->cur->batch);
    return TC_OK;
}

/*
 * Decode, shape, validate and dedupe one message the sinks among `sinks` want, into a row of the
 * batch being filled -- dispatching the batch first when it is due or full -- or into a dead letter
 * of the primary; either way its offset is noted with the sinks it was meant for.
 */
tc_err tc_pipeline_take(tc_pipeline *p, const tc_message *m, unsigned sinks)
{
    char detail[TC_REJECT_DETAIL_MAX];
    int32_t writer_id;
    tc_reject r;
    tc_err err;

    if (m->len == 0 || !m->payload) {
        r = TC_REJECT_EMPTY;
        snprintf(detail, sizeof(detail), "empty message");
    } else if (p->windows && tc_windows_skips(p->windows, m->partition, m->offset)) {
        r = TC_REJECT_STORE_REFUSED;
        snprintf(detail, sizeof(detail), "skipped unread by thermocline replay --skip-offset");
    } else if (m->len > (size_t)p->cfg->max_message_bytes) {
        r = TC_REJECT_TOO_LARGE;
        snprintf(detail, sizeof(detail), "message of %zu bytes exceeds the %lld-byte limit", m->len,
                 (long long)p->cfg->max_message_bytes);
    } else {
        for (int attempt = 0;; attempt++) {
            int due = attempt > 0;

            if (!due && (err = tc_pipeline_batch_due(p, 0, &due)) != TC_OK)
                return err;
            if (due || tc_batch_row_begin(p->cur->batch) == TC_ERR_FULL) {
                err = tc_pipeline_dispatch(p);
                if (err != TC_OK)
                    return err;
                p->batch_started_us = p->now_us;
                tc_batch_row_begin(p->cur->batch);
            }
            r = tc_pipeline_decode(p, m, &writer_id, detail, sizeof(detail));
            if (r == TC_REJECT_NONE)
                r = tc_pipeline_shape(p, p->cur->batch->n, writer_id, m->partition);
            if (r == TC_PIPELINE_STOPPED)
                return TC_ERR_STOPPED;
            if (r != TC_JSON_BATCH_FULL)
                break;
            if (attempt > 0) {
                /* The decoder answers TOO_LARGE itself when an empty batch cannot hold it. */
                r = TC_REJECT_TOO_LARGE;
                snprintf(detail, sizeof(detail), "reading does not fit an empty batch");
                break;
            }
        }
        if (r == TC_REJECT_NONE)
            r = tc_validate_row(p->cur->batch, p->cur->batch->n, &p->cfg->limits, p->now_us, detail,
                                sizeof(detail));
        /* The row before this one has its verdict now, a message's work after its prefetch. */
        if ((err = tc_pipeline_dedupe_settle(p)) != TC_OK)
            return err;
        if (r == TC_REJECT_NONE && p->dedupe &&
            !tc_pipeline_dedupe_defer(p, m, sinks, p->cur->batch->n) &&
            tc_dedupe_check(p->dedupe, p->row_fp, m->partition, m->offset,
                            p->cur->batch->time_us[p->cur->batch->n])) {
            r = TC_REJECT_DUPLICATE;
            tc_pipeline_duplicate_detail(detail, sizeof(detail), p->row_has_id);
        }
        if (r == TC_REJECT_NONE) {
            p->cur->batch->partition[p->cur->batch->n] = m->partition;
            p->cur->batch->offset[p->cur->batch->n] = m->offset;
            p->cur->sinks[p->cur->batch->n] = (uint8_t)sinks;
            p->cur->primary_rows += (sinks & TC_ROW_PRIMARY) != 0;
            tc_batch_row_commit(p->cur->batch);
            tc_pipeline_note_offset(p, sinks, m->partition, m->offset);
            return TC_OK;
        }
    }
    /* Dead letters live in the primary only; the other sinks just move past them. The row before
     * this message has its verdict first (an empty or skipped message did not settle it). */
    err = tc_pipeline_dedupe_settle(p);
    if (err == TC_OK && (sinks & TC_ROW_PRIMARY))
        err = tc_pipeline_dead_letter(p, m, r,
                                      r == TC_REJECT_DUPLICATE ? "dedupe"
                                      : r <= TC_REJECT_NUMBER_RANGE || r >= TC_REJECT_UNKNOWN_SCHEMA
                                          ? "decode"
                                          : "validate",
                                      detail);
    if (err == TC_OK)
        tc_pipeline_note_offset(p, sinks, m->partition, m->offset);
    return err;
}
