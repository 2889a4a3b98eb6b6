/*
 * confirm.c -- the producer's check of the deliveries librdkafka inferred; see confirm.h.
 *
 * The set is an array of kept messages, each with a hash of (topic, partition, key, value);
 * matching sorts it by hash once (the array only grows between reads) and finds a message's
 * copies by binary search, so reading back a partition of N messages against K kept ones costs
 * N log K, not N K. The read-back uses librdkafka's simple consumer: no group, no commit, one
 * partition at a time from an offset, to the end the partition had when its read began.
 */
#include "ingest/confirm.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timeutil.h"
#include "ingest/kafka.h"

/* Topics one producer's kept messages name at most (a producer writes one or two). */
#define TC_CONFIRM_TOPICS_MAX 16
/* How long one fetch of the read-back waits before looking at the deadline again. */
#define TC_CONFIRM_POLL_MS 500

typedef struct tc_confirm_msg {
    uint64_t hash;
    int64_t low;
    int32_t partition;
    int topic; /* index in tc_confirm.topics */
    int found;
    size_t key_len, value_len;
    unsigned char *bytes; /* key, then value */
} tc_confirm_msg;

struct tc_confirm {
    tc_confirm_msg *msgs;
    size_t n, cap, found;
    size_t bytes; /* keys and values kept, against TC_CONFIRM_BYTES_MAX */
    int sorted;
    int ntopics;
    char *topics[TC_CONFIRM_TOPICS_MAX];
};

tc_confirm *tc_confirm_new(void)
{
    return calloc(1, sizeof(tc_confirm));
}

void tc_confirm_clear(tc_confirm *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->msgs[i].bytes);
    c->n = c->found = c->bytes = 0;
    c->sorted = 1;
}

void tc_confirm_destroy(tc_confirm *c)
{
    if (!c)
        return;
    tc_confirm_clear(c);
    for (int i = 0; i < c->ntopics; i++)
        free(c->topics[i]);
    free(c->msgs);
    free(c);
}

/* FNV-1a, 64 bits, continued from h. */
static uint64_t tc_confirm_fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t tc_confirm_hash(const char *topic, int32_t partition, const void *key,
                                size_t key_len, const void *value, size_t value_len)
{
    /* The lengths go in too, so that a key's tail cannot pass for the value's head. */
    uint64_t lens[2] = {key_len, value_len};
    uint64_t h = tc_confirm_fnv(0xcbf29ce484222325ULL, topic, strlen(topic) + 1);

    h = tc_confirm_fnv(h, &partition, sizeof(partition));
    h = tc_confirm_fnv(h, lens, sizeof(lens));
    h = tc_confirm_fnv(h, key, key_len);
    return tc_confirm_fnv(h, value, value_len);
}

/* The index of topic among the kept topics, added when new; -1 past TC_CONFIRM_TOPICS_MAX. */
static int tc_confirm_topic(tc_confirm *c, const char *topic, int add)
{
    for (int i = 0; i < c->ntopics; i++)
        if (strcmp(c->topics[i], topic) == 0)
            return i;
    if (!add || c->ntopics == TC_CONFIRM_TOPICS_MAX)
        return -1;
    c->topics[c->ntopics] = strdup(topic);
    return c->topics[c->ntopics] ? c->ntopics++ : -1;
}

tc_err tc_confirm_add(tc_confirm *c, const char *topic, int32_t partition, int64_t low,
                      const void *key, size_t key_len, const void *value, size_t value_len)
{
    tc_confirm_msg *m;
    int t;

    if (key_len + value_len > TC_CONFIRM_BYTES_MAX - c->bytes)
        return TC_ERR_NOMEM;
    t = tc_confirm_topic(c, topic, 1);
    if (t < 0)
        return TC_ERR_NOMEM;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        tc_confirm_msg *grown = realloc(c->msgs, cap * sizeof(*grown));
        if (!grown)
            return TC_ERR_NOMEM;
        c->msgs = grown;
        c->cap = cap;
    }
    m = &c->msgs[c->n];
    *m = (tc_confirm_msg){.low = low, .partition = partition, .topic = t};
    m->bytes = malloc(key_len + value_len + 1);
    if (!m->bytes)
        return TC_ERR_NOMEM;
    if (key_len)
        memcpy(m->bytes, key, key_len);
    if (value_len)
        memcpy(m->bytes + key_len, value, value_len);
    m->key_len = key_len;
    m->value_len = value_len;
    m->hash = tc_confirm_hash(topic, partition, key, key_len, value, value_len);
    c->n++;
    c->bytes += key_len + value_len;
    c->sorted = 0;
    return TC_OK;
}

size_t tc_confirm_pending(const tc_confirm *c)
{
    return c->n - c->found;
}

size_t tc_confirm_ranges(tc_confirm *c, tc_confirm_range *out, size_t cap)
{
    size_t n = 0, total = 0;

    for (size_t i = 0; i < c->n; i++) {
        const tc_confirm_msg *m = &c->msgs[i];
        size_t j;
        if (m->found)
            continue;
        for (j = 0; j < n; j++)
            if (out[j].partition == m->partition && out[j].topic == c->topics[m->topic])
                break;
        if (j < n) {
            if (m->low < out[j].low)
                out[j].low = m->low;
            continue;
        }
        /* Past cap the ranges are only counted (a partition beyond it may be counted twice:
         * the caller only compares the count with cap). */
        total++;
        if (n < cap)
            out[n++] = (tc_confirm_range){c->topics[m->topic], m->partition, m->low};
    }
    return total > n ? total : n;
}

static int tc_confirm_cmp(const void *a, const void *b)
{
    const tc_confirm_msg *x = a, *y = b;

    return (x->hash > y->hash) - (x->hash < y->hash);
}

int tc_confirm_match(tc_confirm *c, const char *topic, int32_t partition, const void *key,
                     size_t key_len, const void *value, size_t value_len)
{
    uint64_t h = tc_confirm_hash(topic, partition, key, key_len, value, value_len);
    size_t lo = 0, hi = c->n;
    int t = tc_confirm_topic(c, topic, 0);

    if (t < 0)
        return 0;
    if (!c->sorted) {
        qsort(c->msgs, c->n, sizeof(*c->msgs), tc_confirm_cmp);
        c->sorted = 1;
    }
    while (lo < hi) { /* the first entry whose hash is not below h */
        size_t mid = lo + (hi - lo) / 2;
        if (c->msgs[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < c->n && c->msgs[lo].hash == h; lo++) {
        tc_confirm_msg *m = &c->msgs[lo];
        if (m->found || m->topic != t || m->partition != partition || m->key_len != key_len ||
            m->value_len != value_len || (key_len && memcmp(m->bytes, key, key_len) != 0) ||
            (value_len && memcmp(m->bytes + key_len, value, value_len) != 0))
            continue;
        m->found = 1;
        c->found++;
        return 1;
    }
    return 0;
}

size_t tc_confirm_take_missing(tc_confirm *c, tc_confirm_each_fn fn, void *arg)
{
    /* The set is emptied before fn runs: fn sends, a send serves delivery reports, and a report
     * may add a message to the set (a resend inferred again) while this walks what it had. */
    tc_confirm_msg *msgs = c->msgs;
    size_t n = c->n, passed = 0;

    c->msgs = NULL;
    c->n = c->cap = c->found = c->bytes = 0;
    c->sorted = 1;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].found) {
            fn(arg, c->topics[msgs[i].topic], msgs[i].partition, msgs[i].bytes, msgs[i].key_len,
               msgs[i].bytes + msgs[i].key_len, msgs[i].value_len);
            passed++;
        }
        free(msgs[i].bytes);
    }
    free(msgs);
    return passed;
}

/* Read partition r from r->low to the end it has now, matching every message against the set. */
static tc_err tc_confirm_read_range(tc_confirm *c, rd_kafka_t *rk, const tc_confirm_range *r,
                                    int64_t deadline_us, char *errstr, size_t errstr_size)
{
    int64_t low, high, next;
    rd_kafka_topic_t *rkt;
    rd_kafka_resp_err_t kerr;
    tc_err err = TC_OK;
    int left_ms = (int)((deadline_us - tc_time_now_us()) / 1000);

    kerr = rd_kafka_query_watermark_offsets(rk, r->topic, r->partition, &low, &high,
                                            left_ms > 0 ? left_ms : 1);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
        return tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                          "could not read the end of topic \"%s\" partition %d to check "
                          "inferred deliveries: %s",
                          r->topic, (int)r->partition, rd_kafka_err2str(kerr));
    /* Below the partition's start, retention took what was there: nothing left to find. */
    next = r->low > low ? r->low : low;
    if (next >= high)
        return TC_OK;
    rkt = rd_kafka_topic_new(rk, r->topic, NULL);
    if (!rkt || rd_kafka_consume_start(rkt, r->partition, next) == -1) {
        err =
            tc_err_set(TC_ERR_KAFKA, errstr, errstr_size,
                       "could not read topic \"%s\" partition %d from offset %lld: %s", r->topic,
                       (int)r->partition, (long long)next, rd_kafka_err2str(rd_kafka_last_error()));
        if (rkt)
            rd_kafka_topic_destroy(rkt);
        return err;
    }
    while (next < high && err == TC_OK) {
        rd_kafka_message_t *m;
        if (tc_time_now_us() > deadline_us) {
            err = tc_err_set(TC_ERR_TIMEOUT, errstr, errstr_size,
                             "checking inferred deliveries: topic \"%s\" partition %d read to "
                             "offset %lld of %lld within %d ms",
                             r->topic, (int)r->partition, (long long)next, (long long)high,
                             TC_CONFIRM_READ_MS);
            break;
        }
        m = rd_kafka_consume(rkt, r->partition, TC_CONFIRM_POLL_MS);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            next = high; /* the end passed by: everything up to it was read */
        } else if (m->err) {
            err =
                tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                           "could not read topic \"%s\" partition %d at offset %lld: %s", r->topic,
                           (int)r->partition, (long long)next, rd_kafka_message_errstr(m));
        } else {
            tc_confirm_match(c, r->topic, r->partition, m->key, m->key_len, m->payload, m->len);
            next = m->offset + 1;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consume_stop(rkt, r->partition);
    rd_kafka_topic_destroy(rkt);
    return err;
}

tc_err tc_confirm_read(tc_confirm *c, const tc_config *cfg, char *errstr, size_t errstr_size)
{
    /* The simple consumer reports the end of a partition, and starts at its beginning when the
     * offset asked for is already gone. */
    static const char *const defaults[] = {"enable.partition.eof", "true", "auto.offset.reset",
                                           "earliest", NULL};
    tc_confirm_range *ranges;
    int64_t deadline_us = tc_time_now_us() + (int64_t)TC_CONFIRM_READ_MS * 1000;
    char inner[TC_ERRSTR_MAX];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    size_t n;
    tc_err err = TC_OK;

    ranges = malloc(TC_CONFIRM_RANGES_MAX * sizeof(*ranges));
    if (!ranges)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    n = tc_confirm_ranges(c, ranges, TC_CONFIRM_RANGES_MAX);
    if (n > TC_CONFIRM_RANGES_MAX)
        err = tc_err_set(TC_ERR_FULL, errstr, errstr_size,
                         "inferred deliveries on more than %d partitions: not checked",
                         TC_CONFIRM_RANGES_MAX);
    conf = err == TC_OK && n ? tc_kafka_conf_new(cfg, defaults, NULL, errstr, errstr_size) : NULL;
    if (err == TC_OK && n && !conf)
        err = TC_ERR_CONFIG;
    rk = conf ? rd_kafka_new(RD_KAFKA_CONSUMER, conf, inner, sizeof(inner)) : NULL;
    if (conf && !rk) {
        rd_kafka_conf_destroy(conf);
        err = tc_err_set(TC_ERR_KAFKA, errstr, errstr_size,
                         "could not create the Kafka client that checks inferred deliveries: %s",
                         inner);
    }
    for (size_t i = 0; rk && i < n && err == TC_OK; i++)
        err = tc_confirm_read_range(c, rk, &ranges[i], deadline_us, errstr, errstr_size);
    if (rk)
        rd_kafka_destroy(rk);
    free(ranges);
    return err;
}
