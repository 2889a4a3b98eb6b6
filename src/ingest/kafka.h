/*
 * kafka.h -- the Kafka door: a consumer-group member, a producer, and topic administration.
 *
 * The consumer is a librdkafka high-level consumer using the cooperative-sticky assignor, with
 * automatic offset commits off: offsets are committed to Kafka only after the store has made the
 * batch durable, and then only as a convenience for lag monitoring. Where to start reading a newly
 * assigned partition is asked of the caller (on_assign), which answers from the store's own offsets
 * table; messages below that offset are dropped here, so a reading already stored is never handed
 * out again. Before partitions are taken away, on_revoke lets the caller write what it holds.
 *
 * Messages are handed out in arrays (filled by rd_kafka_consumer_poll; see tc_consumer_poll for
 * why not rd_kafka_consume_batch_queue); a tc_message is a view into librdkafka's message and is
 * valid until tc_consumer_release. While the queue is near the limits at which librdkafka stops
 * fetching, and for a second after, a thread of the consumer's own wakes the fetcher every
 * kafka.fetch_nudge_ms (see kafka.c: librdkafka before 2.3 otherwise waits up to a second).
 */
#ifndef TC_INGEST_KAFKA_H
#define TC_INGEST_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/config.h"
#include "core/error.h"

/* Messages fetched per consume call. */
#define TC_CONSUMER_FETCH_MAX 1024

typedef struct tc_message {
    const char *payload; /* may be NULL for an empty (tombstone) message */
    size_t len;
    const char *key;
    size_t key_len;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* producer/broker timestamp, -1 when absent */
    void *opaque_;        /* the rd_kafka_message_t; released by tc_consumer_release */
} tc_message;

typedef struct tc_consumer_hooks {
    void *opaque;
    /* Fill next[i] with the first offset to consume of parts[i], or -1 for "from the beginning of
     * what Kafka retains". A failure is retried by the consumer (the store may be down), except
     * TC_ERR_STOPPED, which abandons the assignment (the process is shutting down). */
    tc_err (*on_assign)(void *opaque, const int32_t *parts, size_t n, int64_t *next);
    /* Partitions are about to go (lost: they are already gone and their data must be dropped). */
    void (*on_revoke)(void *opaque, const int32_t *parts, size_t n, int lost);
} tc_consumer_hooks;

typedef struct tc_consumer tc_consumer;

/* Create the consumer and subscribe to cfg->kafka_topic. The hooks are copied. */
tc_consumer *tc_consumer_new(const tc_config *cfg, const tc_consumer_hooks *hooks, char *errstr,
                             size_t errstr_size);

/* Fetch up to max messages (max <= TC_CONSUMER_FETCH_MAX) waiting at most timeout_ms.
 * Returns the number of messages stored in out; each must be released. */
size_t tc_consumer_poll(tc_consumer *c, int timeout_ms, tc_message *out, size_t max);
void tc_consumer_release(tc_consumer *c, tc_message *m);

/* Move the read position of assigned partitions back (or forward) to offs[i].next_offset (-1: the
 * beginning of what Kafka retains); messages fetched before the call are not handed out after it.
 * For a sink that lost what it had not committed and must read a stretch again. */
tc_err tc_consumer_seek(tc_consumer *c, const tc_partition_offset *offs, size_t n, char *errstr,
                        size_t errstr_size);

/* Pause (pause != 0) or resume fetching every assigned partition. While a sink waits for a slow
 * store, the caller goes on polling (so the group does not evict it after max.poll.interval.ms)
 * with its partitions paused: messages fetched before the pause are not handed out, and a resumed
 * partition is fetched again from the position after the last message handed out. */
tc_err tc_consumer_pause(tc_consumer *c, int pause, char *errstr, size_t errstr_size);
/* Commit offsets to Kafka (informational, see above): asynchronous while running; wait != 0 waits
 * for the broker's answer, for the last commit before the consumer closes (an asynchronous one
 * may still be queued when it does, and the group's lag would then show the tail as unread). */
void tc_consumer_commit(tc_consumer *c, const tc_partition_offset *offs, size_t n, int wait);

/* Nonzero when at least one partition is assigned and every assigned one has reached its end. */
int tc_consumer_caught_up(const tc_consumer *c);
size_t tc_consumer_assigned(const tc_consumer *c);
/* Consumer lag of the assigned partitions, for /metrics: the high watermark librdkafka last
 * fetched minus the position, up to max of them into parts/lag; returns how many. Cheap (no broker
 * round trip: both figures are cached by librdkafka) and refreshed at most once a second -- the
 * copy of the last refresh is returned in between. A partition without a position yet counts
 * from the low watermark. */
size_t tc_consumer_lag(tc_consumer *c, int32_t *parts, int64_t *lag, size_t max);

/* The end (high watermark) of every partition of the subscribed topic: fills parts[] and high[]
 * (capacity cap) and returns how many, or -1 when the broker did not answer within timeout_ms. */
int tc_consumer_topic_ends(tc_consumer *c, const char *topic, int32_t *parts, int64_t *high,
                           size_t cap, int timeout_ms);

/* Leave the group (serving the final revoke) and free everything. */
void tc_consumer_destroy(tc_consumer *c);

/* A librdkafka configuration every client of Thermocline starts from: brokers, client id, logging
 * through tc_log, then defaults (key, value pairs, NULL-terminated; may be NULL), the user's
 * rdkafka.* properties, and last the forced pairs that must not be overridden. NULL with errstr on
 * an invalid property. The caller owns the result (rd_kafka_new takes it over). */
rd_kafka_conf_t *tc_kafka_conf_new(const tc_config *cfg, const char *const *defaults,
                                   const char *const *forced, char *errstr, size_t errstr_size);

/* What a user of the dev services runs to point Thermocline at them, for error messages. */
#define TC_KAFKA_ENV_HINT "eval \"$(scripts/dev-services env)\""

/* The replication of a topic about to be created: what the configuration asks for, within what
 * the cluster can hold. A replication factor above the number of brokers would make CreateTopics
 * fail, so it is lowered to that number; min.insync.replicas above the replication factor would
 * make every acks=all write fail, so it is lowered to the replication factor. */
typedef struct tc_topic_plan {
    int replication_factor;
    int min_insync_replicas;
    int rf_capped;  /* nonzero: fewer brokers than kafka.replication_factor */
    int isr_capped; /* nonzero: kafka.min_insync_replicas was above the replication factor */
} tc_topic_plan;

/* Pure: want_rf and want_isr from the configuration (>= 1), brokers as the cluster reports. */
tc_topic_plan tc_kafka_topic_plan(int64_t want_rf, int64_t want_isr, int brokers);

/* Create the topic if it does not exist, replicated as tc_kafka_topic_plan says for the brokers
 * the cluster has now (a warning names a cap), with kafka.retention_ms. A wrong kafka.brokers fails
 * within seconds, with a message naming it. */
tc_err tc_kafka_ensure_topic(const tc_config *cfg, char *errstr, size_t errstr_size);

/* The partitions and replicas (of its first partition) of topic; both 0 when it does not exist. */
tc_err tc_kafka_describe_topic(const tc_config *cfg, const char *topic, int *partitions,
                               int *replicas, char *errstr, size_t errstr_size);

typedef struct tc_producer tc_producer;

/* Partitions a producer keeps delivery figures of (tc_producer_tally); reports of higher ones are
 * counted in the totals only. */
#define TC_PRODUCER_PARTITIONS_MAX 1024

/* What the delivery reports of one partition said. A report without an offset is librdkafka's
 * inference, not the broker's answer: an idempotent retry answered "duplicate", or a later batch
 * succeeded and librdkafka took the earlier ones as written. tc_producer_flush checks each against
 * the topic (confirm.h): one the topic lacks is taken back (counted in `absent`, no longer in
 * `delivered` or `inferred`) and sent again, and its new report counts instead. With idempotence a
 * partition's reports come in order, each offset above the one before; one that is not means the
 * broker gave two messages one offset (it took a batch for the duplicate of another). The topic's
 * end offset is the witness of what was really written: with one producer on a topic, after a
 * flush it equals `delivered`, and `end` is not above it. */
typedef struct tc_producer_tally {
    uint64_t delivered; /* reports without an error */
    uint64_t inferred;  /* of those, reports without an offset, found in the topic */
    uint64_t repeated;  /* of those, reports whose offset is not above the previous report's */
    uint64_t absent;    /* inferred reports of messages the topic lacked, sent again */
    int64_t end;        /* 1 + the highest offset a report gave; 0 when none gave one */
} tc_producer_tally;

/* A producer tuned for throughput (linger, lz4 batches); acks=all and idempotence are forced, so a
 * delivered message is on min.insync.replicas brokers and a retried send is never written twice.
 * cfg is borrowed and must outlive the producer (a flush reads inferred deliveries back with it).
 */
tc_producer *tc_producer_new(const tc_config *cfg, char *errstr, size_t errstr_size);
/* Produce one message to topic; blocks (serving delivery reports) while librdkafka's queue is full.
 */
tc_err tc_producer_send(tc_producer *p, const char *topic, int32_t partition, const void *key,
                        size_t key_len, const void *value, size_t len, char *errstr,
                        size_t errstr_size);
/* Wait until everything sent is delivered, then check the deliveries librdkafka inferred and send
 * again those the topic lacks (confirm.h; not when timeout_ms is 0); returns the number of failed
 * deliveries so far, counting those still queued and those that could not be checked. */
uint64_t tc_producer_flush(tc_producer *p, int timeout_ms);
/* The delivery figures of partition (0 .. TC_PRODUCER_PARTITIONS_MAX - 1) so far, all zero for one
 * never reported on; *partitions (when not NULL) is set to 1 + the highest partition reported on
 * (capped at TC_PRODUCER_PARTITIONS_MAX). Borrowed: valid until the next call on p. */
const tc_producer_tally *tc_producer_tally_of(const tc_producer *p, int32_t partition,
                                              int32_t *partitions);
void tc_producer_destroy(tc_producer *p);

#endif
