/*
 * test_producer_confirm.c -- the producer's check of inferred deliveries (confirm.h), and the set
 * that keeps them.
 *
 * The bug: librdkafka 2.0.2 reported two messages delivered, without an offset, that the broker
 * never wrote (the fault suite's members-killed scenario, a topic 2 short). A real broker gives
 * the answer behind it (DUPLICATE_SEQUENCE_NUMBER to a retry) only under a race, so these cases
 * script it with librdkafka's own mock cluster, the one place where a broker's single answer can
 * be chosen: it answers the first Produce request with that error and writes nothing, as the
 * broker of the failure did. The producer must then read the partition back, find the message
 * absent, and send it again; and must not resend one that is there, nor take for it an identical
 * message written before it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/deadletter.h"
#include "ingest/confirm.h"
#include "ingest/dlq_mirror.h"
#include "ingest/kafka.h"

/* Kafka's ApiKey of Produce (the protocol's numbering; rdkafka_protocol.h is not installed). */
#define PRODUCE_API_KEY 0
#define TOPIC           "confirm-test"
/* The dead-letter mirror's topic for a source topic MIRRORED (dlq_mirror.h). */
#define MIRRORED "confirm-src"
#define MIRROR   MIRRORED TC_DLQ_TOPIC_SUFFIX

typedef struct fixture {
    rd_kafka_t *mock_rk; /* the handle the mock cluster lives in */
    rd_kafka_mock_cluster_t *mc;
    tc_config *cfg;
} fixture;

static int setup(void **state)
{
    static fixture f;
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
    f.mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(f.mock_rk);
    f.mc = rd_kafka_mock_cluster_new(f.mock_rk, 1);
    assert_non_null(f.mc);
    assert_int_equal(rd_kafka_mock_topic_create(f.mc, TOPIC, 2, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f.mc, MIRROR, 1, 1), 0);
    f.cfg = tc_config_new();
    assert_int_equal(tc_config_set(f.cfg, "kafka.brokers", rd_kafka_mock_cluster_bootstraps(f.mc),
                                   errstr, sizeof(errstr)),
                     TC_OK);
    assert_int_equal(tc_config_set(f.cfg, "kafka.topic", MIRRORED, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_config_set(f.cfg, "kafka.create_topic", "false", errstr, sizeof(errstr)),
                     TC_OK);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    tc_config_destroy(f->cfg);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->mock_rk);
    return 0;
}

/* The end offset of topic's partition, asked of the mock broker by a client of the test's own. */
static int64_t topic_end(const fixture *f, const char *topic, int32_t partition)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int64_t low = -1, high = -1;
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(f->mc), errstr,
                      sizeof(errstr));
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    assert_int_equal(rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, 10000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
    return high;
}

static int64_t partition_end(const fixture *f, int32_t partition)
{
    return topic_end(f, TOPIC, partition);
}

/* The value of header name of the message at offset of the mirror's partition 0 ("" when the
 * message has no such header). */
static void mirror_header(const fixture *f, int64_t offset, const char *name, char *out, size_t cap)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_message_t *m = NULL;
    const void *value = NULL;
    size_t size = 0;
    rd_kafka_topic_t *rkt;
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(f->mc), errstr,
                      sizeof(errstr));
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rkt = rd_kafka_topic_new(rk, MIRROR, NULL);
    assert_int_equal(rd_kafka_consume_start(rkt, 0, offset), 0);
    for (int i = 0; i < 40 && !m; i++)
        m = rd_kafka_consume(rkt, 0, 500);
    assert_non_null(m);
    assert_int_equal(m->err, 0);
    out[0] = '\0';
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        size < cap) {
        memcpy(out, value, size);
        out[size] = '\0';
    }
    rd_kafka_message_destroy(m);
    rd_kafka_consume_stop(rkt, 0);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
}

static void send_one(tc_producer *p, int32_t partition, const char *key, const char *value)
{
    char errstr[512];

    assert_int_equal(tc_producer_send(p, TOPIC, partition, key, strlen(key), value, strlen(value),
                                      errstr, sizeof(errstr)),
                     TC_OK);
}

/* Send one message that the broker answers "duplicate" without writing it. */
static void send_answered_duplicate(const fixture *f, tc_producer *p, int32_t partition,
                                    const char *key, const char *value)
{
    rd_kafka_mock_push_request_errors(f->mc, PRODUCE_API_KEY, 1,
                                      RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER);
    send_one(p, partition, key, value);
}

/* Serve delivery reports (a flush that does not wait never runs the check) until partition has
 * `reports` of them. */
static void await_reports(tc_producer *p, int32_t partition, uint64_t reports)
{
    for (int i = 0; i < 1000; i++) {
        const tc_producer_tally *t = tc_producer_tally_of(p, partition, NULL);
        if (t->delivered >= reports)
            return;
        tc_producer_flush(p, 0);
        usleep(10000);
    }
    fail_msg("no delivery report within 10 s");
}

/* The broker answers "duplicate" to a message it never wrote: read back, found absent, sent
 * again; the partition then holds it once and the reports say so. Before the check, the flush
 * returned 0 failures with the partition empty. */
static void test_an_inferred_delivery_the_topic_lacks_is_sent_again(void **state)
{
    fixture *f = *state;
    char errstr[512];
    tc_producer *p = tc_producer_new(f->cfg, errstr, sizeof(errstr));
    const tc_producer_tally *t;

    assert_non_null(p);
    send_answered_duplicate(f, p, 0, "sensor-1", "{\"v\":1}");
    assert_int_equal(tc_producer_flush(p, 20000), 0);
    assert_int_equal(partition_end(f, 0), 1);
    t = tc_producer_tally_of(p, 0, NULL);
    assert_int_equal(t->absent, 1);
    assert_int_equal(t->inferred, 0);
    assert_int_equal(t->delivered, 1);
    assert_int_equal(t->end, 1);
    tc_producer_destroy(p);
}

/* An inferred delivery whose message is in the partition (written there by someone else here,
 * as a first send that did reach the log would be) is not sent twice. */
static void test_an_inferred_delivery_found_is_not_sent_twice(void **state)
{
    fixture *f = *state;
    char errstr[512];
    tc_producer *p = tc_producer_new(f->cfg, errstr, sizeof(errstr));
    tc_producer *other = tc_producer_new(f->cfg, errstr, sizeof(errstr));
    int64_t before = partition_end(f, 1);
    const tc_producer_tally *t;

    assert_non_null(p);
    assert_non_null(other);
    send_answered_duplicate(f, p, 1, "sensor-2", "{\"v\":2}");
    await_reports(p, 1, 1);
    t = tc_producer_tally_of(p, 1, NULL);
    assert_int_equal(t->inferred, 1);
    send_one(other, 1, "sensor-2", "{\"v\":2}");
    assert_int_equal(tc_producer_flush(other, 20000), 0);
    assert_int_equal(tc_producer_flush(p, 20000), 0);
    t = tc_producer_tally_of(p, 1, NULL);
    assert_int_equal(t->absent, 0);
    assert_int_equal(t->inferred, 1);
    assert_int_equal(partition_end(f, 1), before + 1);
    tc_producer_destroy(other);
    tc_producer_destroy(p);
}

/* An identical message written before the inferred one (below its lowest offset) is not taken
 * for it: the inferred one is sent again. */
static void test_an_identical_earlier_message_does_not_count(void **state)
{
    fixture *f = *state;
    char errstr[512];
    tc_producer *p = tc_producer_new(f->cfg, errstr, sizeof(errstr));
    int64_t before = partition_end(f, 0);
    const tc_producer_tally *t;

    assert_non_null(p);
    send_one(p, 0, "sensor-3", "{\"v\":3}");
    assert_int_equal(tc_producer_flush(p, 20000), 0);
    send_answered_duplicate(f, p, 0, "sensor-3", "{\"v\":3}");
    assert_int_equal(tc_producer_flush(p, 20000), 0);
    assert_int_equal(partition_end(f, 0), before + 2);
    t = tc_producer_tally_of(p, 0, NULL);
    assert_int_equal(t->absent, 1);
    assert_int_equal(t->delivered, 2);
    tc_producer_destroy(p);
}

/* The dead-letter mirror, its own producer: a copy the broker answered "duplicate" without writing
 * it is read back at the flush and sent again with its headers. Before the check the flush
 * returned TC_OK with the mirror topic empty. */
static void test_a_mirrored_dead_letter_inferred_is_sent_again(void **state)
{
    fixture *f = *state;
    char errstr[512], offset[32];
    tc_dlq_batch *d = tc_dlq_batch_new(4, 0);
    tc_dlq_mirror *m = tc_dlq_mirror_new(f->cfg, errstr, sizeof(errstr));
    int64_t before = topic_end(f, MIRROR, 0);
    uint64_t delivered, failed;

    assert_non_null(d);
    assert_non_null(m);
    assert_int_equal(tc_dlq_batch_add(d, TC_REJECT_MALFORMED, "decode", "not JSON", "{x", 2,
                                      "sensor-9", 8, 2, 41, 1000000),
                     TC_OK);
    rd_kafka_mock_push_request_errors(f->mc, PRODUCE_API_KEY, 1,
                                      RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER);
    assert_int_equal(tc_dlq_mirror_send(m, d, MIRRORED, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_dlq_mirror_flush(m, 20000, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(topic_end(f, MIRROR, 0), before + 1);
    mirror_header(f, before, "source_offset", offset, sizeof(offset));
    assert_string_equal(offset, "41");
    tc_dlq_mirror_totals(m, &delivered, &failed);
    assert_int_equal(delivered, 1);
    assert_int_equal(failed, 0);
    tc_dlq_mirror_destroy(m);
    tc_dlq_batch_destroy(d);
}

/* The set on its own: identical copies are struck off one per message read, on their own topic
 * and partition only; ranges start at the lowest offset kept; what is left is handed over once. */
static size_t handed;
static void count_missing(void *arg, const char *topic, int32_t partition, const void *key,
                          size_t key_len, const void *value, size_t value_len, const void *headers,
                          size_t headers_len)
{
    (void)headers;
    assert_int_equal(headers_len, 0);
    (void)arg;
    (void)topic;
    (void)key;
    (void)value;
    assert_int_equal(partition, 3);
    assert_int_equal(key_len, 1);
    assert_int_equal(value_len, 2);
    handed++;
}

static void test_the_set_matches_copies_one_for_one(void **state)
{
    tc_confirm *c = tc_confirm_new();
    tc_confirm_range r[4];

    (void)state;
    assert_int_equal(tc_confirm_add(c, "a", 3, 50, "k", 1, "vv", 2, NULL, 0), TC_OK);
    assert_int_equal(tc_confirm_add(c, "a", 3, 40, "k", 1, "vv", 2, NULL, 0), TC_OK);
    assert_int_equal(tc_confirm_add(c, "b", 3, 7, "k", 1, "vv", 2, NULL, 0), TC_OK);
    assert_int_equal(tc_confirm_pending(c), 3);
    assert_int_equal(tc_confirm_ranges(c, r, 4), 2);
    assert_string_equal(r[0].topic, "a");
    assert_int_equal(r[0].low, 40);
    assert_int_equal(r[1].low, 7);
    /* Another partition, another topic, a value one byte longer: no match. */
    assert_int_equal(tc_confirm_match(c, "a", 2, "k", 1, "vv", 2, NULL, 0), 0);
    assert_int_equal(tc_confirm_match(c, "c", 3, "k", 1, "vv", 2, NULL, 0), 0);
    assert_int_equal(tc_confirm_match(c, "a", 3, "k", 1, "vvv", 3, NULL, 0), 0);
    assert_int_equal(tc_confirm_match(c, "a", 3, "kv", 2, "v", 1, NULL, 0), 0);
    assert_int_equal(tc_confirm_match(c, "a", 3, "k", 1, "vv", 2, NULL, 0), 1);
    assert_int_equal(tc_confirm_match(c, "b", 3, "k", 1, "vv", 2, NULL, 0), 1);
    assert_int_equal(tc_confirm_pending(c), 1);
    assert_int_equal(tc_confirm_ranges(c, r, 4), 1);
    handed = 0;
    assert_int_equal(tc_confirm_take_missing(c, count_missing, NULL), 1);
    assert_int_equal(handed, 1);
    assert_int_equal(tc_confirm_pending(c), 0);
    tc_confirm_destroy(c);
}

/* A report that arrives while the missing ones are handed over (the resend of one is inferred
 * again) is kept for the next read, not lost with the entries handed over. */
static void add_again(void *arg, const char *topic, int32_t partition, const void *key,
                      size_t key_len, const void *value, size_t value_len, const void *headers,
                      size_t headers_len)
{
    assert_int_equal(tc_confirm_add(arg, topic, partition, 9, key, key_len, value, value_len,
                                    headers, headers_len),
                     TC_OK);
}

static void test_a_report_during_the_handover_is_kept(void **state)
{
    tc_confirm *c = tc_confirm_new();
    tc_confirm_range r[2];

    (void)state;
    for (int i = 0; i < 100; i++) /* enough for the set's array to grow under the handover */
        assert_int_equal(tc_confirm_add(c, "a", 1, 5, &i, sizeof(i), "v", 1, NULL, 0), TC_OK);
    assert_int_equal(tc_confirm_take_missing(c, add_again, c), 100);
    assert_int_equal(tc_confirm_pending(c), 100);
    assert_int_equal(tc_confirm_ranges(c, r, 2), 1);
    assert_int_equal(r[0].low, 9);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tc_confirm_match(c, "a", 1, &i, sizeof(i), "v", 1, NULL, 0), 1);
    assert_int_equal(tc_confirm_pending(c), 0);
    tc_confirm_destroy(c);
}

/* Past TC_CONFIRM_BYTES_MAX nothing more is kept (the producer counts it failed). */
static void test_the_set_is_bounded(void **state)
{
    tc_confirm *c = tc_confirm_new();
    size_t half = TC_CONFIRM_BYTES_MAX / 2;
    char *big = calloc(1, half);

    (void)state;
    assert_non_null(big);
    assert_int_equal(tc_confirm_add(c, "a", 0, 0, NULL, 0, big, half, NULL, 0), TC_OK);
    assert_int_equal(tc_confirm_add(c, "a", 0, 0, NULL, 0, big, half, NULL, 0), TC_OK);
    assert_int_equal(tc_confirm_add(c, "a", 0, 0, "k", 1, NULL, 0, NULL, 0), TC_ERR_NOMEM);
    assert_int_equal(tc_confirm_pending(c), 2);
    tc_confirm_clear(c);
    assert_int_equal(tc_confirm_add(c, "a", 0, 0, "k", 1, NULL, 0, NULL, 0), TC_OK);
    tc_confirm_destroy(c);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_set_matches_copies_one_for_one),
        cmocka_unit_test(test_the_set_is_bounded),
        cmocka_unit_test(test_a_report_during_the_handover_is_kept),
        cmocka_unit_test(test_an_inferred_delivery_the_topic_lacks_is_sent_again),
        cmocka_unit_test(test_an_inferred_delivery_found_is_not_sent_twice),
        cmocka_unit_test(test_an_identical_earlier_message_does_not_count),
        cmocka_unit_test(test_a_mirrored_dead_letter_inferred_is_sent_again),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
