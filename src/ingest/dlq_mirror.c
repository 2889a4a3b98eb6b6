/*
 * dlq_mirror.c -- mirror dead letters to "<kafka.topic>-dlq"; see dlq_mirror.h.
 */
#include "ingest/dlq_mirror.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"
#include "ingest/confirm.h"
#include "ingest/kafka.h"

#define TC_DLQ_TOPIC_MAX 512

struct tc_dlq_mirror {
    rd_kafka_t *rk;
    const tc_config *cfg; /* borrowed: the brokers an inferred delivery is checked at */
    tc_confirm *confirm;  /* copies whose delivery librdkafka inferred (confirm.h) */
    char topic[TC_DLQ_TOPIC_MAX];
    uint64_t delivered, failed, failed_since_flush;
    char last_error[TC_ERRSTR_MAX];
    /* 1 + the highest offset the broker gave each partition: the lowest an inferred one can have */
    int64_t end[TC_PRODUCER_PARTITIONS_MAX];
};

static void tc_dlq_mirror_fail(tc_dlq_mirror *m, uint64_t n, const char *why)
{
    m->failed += n;
    m->failed_since_flush += n;
    snprintf(m->last_error, sizeof(m->last_error), "%s", why);
}

static void tc_dlq_mirror_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    tc_dlq_mirror *m = opaque;
    int known = msg->partition >= 0 && msg->partition < TC_PRODUCER_PARTITIONS_MAX;

    (void)rk;
    if (msg->err) {
        tc_dlq_mirror_fail(m, 1, rd_kafka_err2str(msg->err));
        return;
    }
    if (msg->offset < 0 &&
        tc_confirm_keep(m->confirm, msg, known ? m->end[msg->partition] : 0) != TC_OK) {
        tc_dlq_mirror_fail(m, 1,
                           "a delivery librdkafka inferred without an offset could not be "
                           "kept for checking");
        return;
    }
    if (msg->offset >= 0 && known && msg->offset >= m->end[msg->partition])
        m->end[msg->partition] = msg->offset + 1;
    m->delivered++;
}

tc_dlq_mirror *tc_dlq_mirror_new(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    /* Few, small messages: a short linger; idempotence is what the delivery promise rests on. */
    static const char *const defaults[] = {
        "client.id", "thermocline-dlq", "linger.ms", "5", "compression.type", "lz4", NULL};
    static const char *const forced[] = {"enable.idempotence", "true", "acks", "all", NULL};
    char inner[TC_ERRSTR_MAX];
    rd_kafka_conf_t *conf;
    tc_dlq_mirror *m;

    if ((size_t)snprintf(NULL, 0, "%s%s", cfg->kafka_topic, TC_DLQ_TOPIC_SUFFIX) >=
        TC_DLQ_TOPIC_MAX) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "kafka.topic is too long");
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    snprintf(m->topic, sizeof(m->topic), "%s%s", cfg->kafka_topic, TC_DLQ_TOPIC_SUFFIX);
    if (cfg->kafka_create_topic) {
        /* The same topic settings as the source topic, under the mirror's name. */
        tc_config c = *cfg;
        c.kafka_topic = m->topic;
        if (tc_kafka_ensure_topic(&c, errstr, errstr_size) != TC_OK) {
            free(m);
            return NULL;
        }
    }
    conf = tc_kafka_conf_new(cfg, defaults, forced, errstr, errstr_size);
    if (!conf) {
        free(m);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, tc_dlq_mirror_dr_cb);
    rd_kafka_conf_set_opaque(conf, m);
    m->cfg = cfg;
    m->confirm = tc_confirm_new();
    m->rk = m->confirm ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, inner, sizeof(inner)) : NULL;
    if (!m->rk) {
        rd_kafka_conf_destroy(conf);
        tc_err_set(TC_ERR_KAFKA, errstr, errstr_size,
                   "could not create the dead-letter producer: %s",
                   m->confirm ? inner : "out of memory");
        tc_confirm_destroy(m->confirm);
        free(m);
        return NULL;
    }
    return m;
}

const char *tc_dlq_mirror_topic(const tc_dlq_mirror *m)
{
    return m->topic;
}

/* Produce one message to partition (RD_KAFKA_PARTITION_UA: by key) of the mirror topic; hdrs are
 * librdkafka's once it took the message, destroyed here otherwise. Blocks, serving delivery
 * reports, while librdkafka's queue is full. */
static tc_err tc_dlq_mirror_produce(tc_dlq_mirror *m, int32_t partition, const void *key,
                                    size_t key_len, const void *value, size_t value_len,
                                    rd_kafka_headers_t *hdrs, char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t err;

    for (;;) {
        err = rd_kafka_producev(m->rk, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_KEY((void *)(uintptr_t)key, key ? key_len : 0),
                                RD_KAFKA_V_VALUE((void *)(uintptr_t)value, value ? value_len : 0),
                                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return TC_OK; /* librdkafka owns the headers now */
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
            return tc_err_set(TC_ERR_KAFKA, errstr, errstr_size, "could not produce to \"%s\": %s",
                              m->topic, rd_kafka_err2str(err));
        }
        rd_kafka_poll(m->rk, 10); /* back-pressure: let deliveries free the queue */
    }
}

static tc_err tc_dlq_mirror_one(tc_dlq_mirror *m, const tc_dead_letter *dl,
                                const char *source_topic, char *errstr, size_t errstr_size)
{
    char part[16], off[24], at[TC_TIME_RFC3339_MAX];
    const char *reason = tc_reject_name(dl->reason);
    const char *detail = dl->detail ? dl->detail : "";
    const char *stage = dl->stage ? dl->stage : "";
    rd_kafka_headers_t *hdrs;

    snprintf(part, sizeof(part), "%" PRId32, dl->partition);
    snprintf(off, sizeof(off), "%" PRId64, dl->offset);
    tc_time_format_rfc3339(dl->received_us, at, sizeof(at));
    hdrs = rd_kafka_headers_new(7);
    if (!hdrs)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    rd_kafka_header_add(hdrs, "reason", -1, reason, -1);
    rd_kafka_header_add(hdrs, "detail", -1, detail, -1);
    rd_kafka_header_add(hdrs, "stage", -1, stage, -1);
    rd_kafka_header_add(hdrs, "source_topic", -1, source_topic, -1);
    rd_kafka_header_add(hdrs, "source_partition", -1, part, -1);
    rd_kafka_header_add(hdrs, "source_offset", -1, off, -1);
    rd_kafka_header_add(hdrs, "received_at", -1, at, -1);
    return tc_dlq_mirror_produce(m, RD_KAFKA_PARTITION_UA, dl->key.ptr, dl->key.len,
                                 dl->payload.ptr, dl->payload.len, hdrs, errstr, errstr_size);
}

/* A kept copy the topic lacks (confirm.h): its inferred report is taken back, and it is sent
 * again with its headers to the partition it was meant for. */
static void tc_dlq_mirror_resend(void *arg, const char *topic, int32_t partition, const void *key,
                                 size_t key_len, const void *value, size_t value_len,
                                 const void *headers, size_t headers_len)
{
    tc_dlq_mirror *m = arg;
    char errstr[TC_ERRSTR_MAX];

    (void)topic; /* the mirror's, the only one it writes */
    m->delivered--;
    if (tc_dlq_mirror_produce(m, partition, key_len ? key : NULL, key_len, value_len ? value : NULL,
                              value_len, tc_confirm_headers(headers, headers_len), errstr,
                              sizeof(errstr)) != TC_OK)
        tc_dlq_mirror_fail(m, 1, errstr);
}

static int tc_dlq_mirror_drain(void *arg, int timeout_ms)
{
    tc_dlq_mirror *m = arg;

    return rd_kafka_flush(m->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

tc_err tc_dlq_mirror_send(tc_dlq_mirror *m, const tc_dlq_batch *d, const char *source_topic,
                          char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;

    for (size_t i = 0; err == TC_OK && d && i < d->n; i++)
        err = tc_dlq_mirror_one(m, &d->items[i], source_topic ? source_topic : "", errstr,
                                errstr_size);
    rd_kafka_poll(m->rk, 0);
    return err;
}

tc_err tc_dlq_mirror_flush(tc_dlq_mirror *m, int timeout_ms, char *errstr, size_t errstr_size)
{
    char why[TC_ERRSTR_MAX];
    uint64_t failed;
    size_t unchecked;
    int pending;

    /* Once the queue is empty, the copies librdkafka vouched for without an offset are read back
     * (confirm.h): the mirror's promise is the broker's word, not librdkafka's inference. */
    if (tc_dlq_mirror_drain(m, timeout_ms) && timeout_ms > 0) {
        unchecked = tc_confirm_settle(m->confirm, m->cfg, "dlq-mirror", tc_dlq_mirror_resend,
                                      tc_dlq_mirror_drain, m, timeout_ms, why, sizeof(why));
        if (unchecked)
            tc_dlq_mirror_fail(m, unchecked, why);
    }
    pending = rd_kafka_outq_len(m->rk);
    failed = m->failed_since_flush;
    m->failed_since_flush = 0;
    if (failed)
        return tc_err_set(TC_ERR_KAFKA, errstr, errstr_size,
                          "%" PRIu64 " dead letters were not mirrored to \"%s\": %s", failed,
                          m->topic, m->last_error);
    if (pending > 0)
        return tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                          "%d dead letters still unacknowledged by \"%s\" after %d ms", pending,
                          m->topic, timeout_ms);
    return TC_OK;
}

void tc_dlq_mirror_totals(const tc_dlq_mirror *m, uint64_t *delivered, uint64_t *failed)
{
    *delivered = m->delivered;
    *failed = m->failed;
}

void tc_dlq_mirror_destroy(tc_dlq_mirror *m)
{
    char errstr[TC_ERRSTR_MAX];

    if (!m)
        return;
    if (tc_dlq_mirror_flush(m, 10000, errstr, sizeof(errstr)) != TC_OK)
        tc_log_warn("dlq-mirror", "%s", errstr);
    rd_kafka_destroy(m->rk);
    tc_confirm_destroy(m->confirm);
    free(m);
}
