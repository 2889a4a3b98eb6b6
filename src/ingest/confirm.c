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

#include "core/log.h"
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
    size_t key_len, value_len, headers_len;
    unsigned char *bytes; /* key, then value, then the packed headers */
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
                                size_t key_len, const void *value, size_t value_len,
                                const void *headers, size_t headers_len)
{
    /* The lengths go in too, so that a key's tail cannot pass for the value's head. */
    uint64_t lens[3] = {key_len, value_len, headers_len};
    uint64_t h = tc_confirm_fnv(0xcbf29ce484222325ULL, topic, strlen(topic) + 1);

    h = tc_confirm_fnv(h, &partition, sizeof(partition));
    h = tc_confirm_fnv(h, lens, sizeof(lens));
    h = tc_confirm_fnv(h, key, key_len);
    h = tc_confirm_fnv(h, value, value_len);
    return tc_confirm_fnv(h, headers, headers_len);
}

/* m's headers packed into buf: for each, its name's length (4 bytes, host order: packs never
 * leave the process), the name, its value's length (UINT32_MAX: none) and the value. Returns the
 * length, 0 for none, or SIZE_MAX when they take more than cap. */
static size_t tc_confirm_pack(const rd_kafka_message_t *m, unsigned char *buf, size_t cap)
{
    rd_kafka_headers_t *h = NULL;
    const char *name;
    const void *value;
    size_t size, len = 0;

    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h)
        return 0;
    for (size_t i = 0;
         rd_kafka_header_get_all(h, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
        uint32_t nlen = (uint32_t)strlen(name), vlen = value ? (uint32_t)size : UINT32_MAX;
        size_t need = 8 + (size_t)nlen + (value ? size : 0);

        if (strlen(name) > UINT32_MAX / 2 || size > UINT32_MAX / 2 || need > cap - len)
            return SIZE_MAX;
        memcpy(buf + len, &nlen, 4);
        memcpy(buf + len + 4, name, nlen);
        memcpy(buf + len + 4 + nlen, &vlen, 4);
        if (value && size)
            memcpy(buf + len + 8 + nlen, value, size);
        len += need;
    }
    return len;
}

rd_kafka_headers_t *tc_confirm_headers(const void *packed, size_t len)
{
    const unsigned char *p = packed;
    rd_kafka_headers_t *h;
    size_t at = 0;

    if (!len)
        return NULL;
    h = rd_kafka_headers_new(8);
    while (h && at + 8 <= len) { /* tc_confirm_pack's layout; the bounds checked all the same */
        uint32_t nlen, vlen;
        const unsigned char *name;

        memcpy(&nlen, p + at, 4);
        if (nlen > len - at - 8)
            break;
        name = p + at + 4;
        memcpy(&vlen, p + at + 4 + nlen, 4);
        at += 8 + nlen;
        if (vlen != UINT32_MAX && vlen > len - at)
            break;
        rd_kafka_header_add(h, (const char *)name, (ssize_t)nlen,
                            vlen == UINT32_MAX ? NULL : p + at,
                            vlen == UINT32_MAX ? 0 : (ssize_t)vlen);
        at += vlen == UINT32_MAX ? 0 : vlen;
    }
    return h;
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
                      const void *key, size_t key_len, const void *value, size_t value_len,
                      const void *headers, size_t headers_len)
{
    size_t total = key_len + value_len + headers_len;
    tc_confirm_msg *m;
    int t;

    if (total > TC_CONFIRM_BYTES_MAX - c->bytes)
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
    m->bytes = malloc(total + 1);
    if (!m->bytes)
        return TC_ERR_NOMEM;
    if (key_len)
        memcpy(m->bytes, key, key_len);
    if (value_len)
        memcpy(m->bytes + key_len, value, value_len);
    if (headers_len)
        memcpy(m->bytes + key_len + value_len, headers, headers_len);
    m->key_len = key_len;
    m->value_len = value_len;
    m->headers_len = headers_len;
    m->hash =
        tc_confirm_hash(topic, partition, key, key_len, value, value_len, headers, headers_len);
    c->n++;
    c->bytes += total;
    c->sorted = 0;
    return TC_OK;
}

tc_err tc_confirm_keep(tc_confirm *c, const rd_kafka_message_t *m, int64_t low)
{
    unsigned char *buf = malloc(TC_CONFIRM_HEADERS_MAX);
    size_t hlen = buf ? tc_confirm_pack(m, buf, TC_CONFIRM_HEADERS_MAX) : SIZE_MAX;
    tc_err err = TC_ERR_NOMEM;

    if (hlen != SIZE_MAX)
        err = tc_confirm_add(c, rd_kafka_topic_name(m->rkt), m->partition, low, m->key, m->key_len,
                             m->payload, m->len, buf, hlen);
    free(buf);
    return err;
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
                     size_t key_len, const void *value, size_t value_len, const void *headers,
                     size_t headers_len)
{
    uint64_t h =
        tc_confirm_hash(topic, partition, key, key_len, value, value_len, headers, headers_len);
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
            m->value_len != value_len || m->headers_len != headers_len ||
            (key_len && memcmp(m->bytes, key, key_len) != 0) ||
            (value_len && memcmp(m->bytes + key_len, value, value_len) != 0) ||
            (headers_len && memcmp(m->bytes + key_len + value_len, headers, headers_len) != 0))
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
            const tc_confirm_msg *m = &msgs[i];
            fn(arg, c->topics[m->topic], m->partition, m->bytes, m->key_len, m->bytes + m->key_len,
               m->value_len, m->bytes + m->key_len + m->value_len, m->headers_len);
            passed++;
        }
        free(msgs[i].bytes);
    }
    free(msgs);
    return passed;
}

/* Read partition r from r->low to the end it has now, matching every message against the set. */
static tc_err tc_confirm_read_range(tc_confirm *c, rd_kafka_t *rk, const tc_confirm_range *r,
                                    unsigned char *hbuf, int64_t deadline_us, char *errstr,
                                    size_t errstr_size)
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
            size_t hlen = tc_confirm_pack(m, hbuf, TC_CONFIRM_HEADERS_MAX);
            /* Headers too large to pack: no kept message has them. */
            if (hlen != SIZE_MAX)
                tc_confirm_match(c, r->topic, r->partition, m->key, m->key_len, m->payload, m->len,
                                 hbuf, hlen);
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
    unsigned char *hbuf;
    int64_t deadline_us = tc_time_now_us() + (int64_t)TC_CONFIRM_READ_MS * 1000;
    char inner[TC_ERRSTR_MAX];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    size_t n;
    tc_err err = TC_OK;

    ranges = malloc(TC_CONFIRM_RANGES_MAX * sizeof(*ranges));
    hbuf = malloc(TC_CONFIRM_HEADERS_MAX);
    if (!ranges || !hbuf) {
        free(ranges);
        free(hbuf);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    }
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
        err = tc_confirm_read_range(c, rk, &ranges[i], hbuf, deadline_us, errstr, errstr_size);
    if (rk)
        rd_kafka_destroy(rk);
    free(ranges);
    free(hbuf);
    return err;
}

size_t tc_confirm_settle(tc_confirm *c, const tc_config *cfg, const char *what,
                         tc_confirm_each_fn resend, tc_confirm_drain_fn drain, void *arg,
                         int timeout_ms, char *errstr, size_t errstr_size)
{
    size_t kept, missing;

    for (int round = 0; tc_confirm_pending(c) > 0; round++) {
        kept = tc_confirm_pending(c);
        if (round == TC_CONFIRM_ROUNDS) {
            tc_err_set(TC_ERR_KAFKA, errstr, errstr_size,
                       "%zu deliveries still inferred without an offset after %d resends", kept,
                       TC_CONFIRM_ROUNDS);
            break;
        }
        if (tc_confirm_read(c, cfg, errstr, errstr_size) != TC_OK)
            break;
        missing = tc_confirm_take_missing(c, resend, arg);
        tc_log_warn(what,
                    "librdkafka reported %zu deliveries without an offset from the broker; read "
                    "back, the topic holds %zu of them%s",
                    kept, kept - missing, missing ? ", the rest is sent again" : "");
        if (!drain(arg, timeout_ms))
            return 0; /* the resends' reports are still to come: checked at a later flush */
    }
    /* Not vouched for: a failure the caller counts, not a silent loss. */
    kept = tc_confirm_pending(c);
    tc_confirm_clear(c);
    return kept;
}
