/*
 * confirm.h -- the producer's check of the deliveries librdkafka inferred.
 *
 * With idempotence, librdkafka reports some messages delivered without the broker having given
 * them an offset: a retried batch the broker answered DUPLICATE_SEQUENCE_NUMBER ("that sequence
 * was written before"), or a batch taken as written because a later one succeeded (IMPLICITACK).
 * The librdkafka of Debian 12 (2.0.2) does so even when the first send never reached the log: a
 * run of the fault suite ended with a topic 2 messages short of what the simulator was told it
 * delivered, both reported without an offset, on a single broker nobody stopped. A report without
 * an offset is therefore a claim to check, not a delivery.
 *
 * The protocol, run by tc_confirm_settle from the flush of each producer that uses it
 * (tc_producer_flush, tc_dlq_mirror_flush) once librdkafka's queue is empty:
 *   1. The delivery report of a message without an offset keeps a copy of it here (topic,
 *      partition, key, value, headers) with the lowest offset it can have: 1 + the highest offset
 * the broker gave the partition's reports before it. With idempotence a partition's messages are
 *      written in the order they were sent, and its reports come in that order.
 *   2. tc_confirm_read reads each such partition from that offset to its end and strikes off
 *      every kept message it finds there, byte for byte (other producers may have written in
 *      between; identical messages are counted, each found one strikes off one copy).
 *   3. What is not found was never written: tc_confirm_take_missing hands each to the producer,
 *      which sends it again and flushes. Its new report may be inferred again: back to 1, at most
 *      TC_CONFIRM_ROUNDS times; what is still unconfirmed then counts as failed.
 * A message found is never sent twice, so the check adds no duplicate; a message resent was
 * absent from the partition's whole range, so the resend is its only copy.
 *
 * Memory is bounded: more than TC_CONFIRM_BYTES_MAX of kept messages (a broker lost with a queue
 * of inferred batches) makes tc_confirm_add refuse, and the producer counts the refused ones as
 * failed deliveries rather than vouching for them.
 *
 * Ownership: tc_confirm_add copies what it is given; the set owns every copy until
 * tc_confirm_take_missing or tc_confirm_clear frees it. Not thread-safe: the producer calls it from
 * its delivery reports, which run in the thread that polls or flushes.
 */
#ifndef TC_INGEST_CONFIRM_H
#define TC_INGEST_CONFIRM_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"

/* Bytes of kept messages (keys and values) one producer holds at most: 64 MiB is some thousands
 * of librdkafka's 1 MB batches' worth of readings, more than a producer has in flight. */
#define TC_CONFIRM_BYTES_MAX (64u * 1024u * 1024u)
/* Resends of one message before its delivery counts as failed. */
#define TC_CONFIRM_ROUNDS 3
/* How long one read-back may take in all: the partition ranges of a flush, at a broker's pace. */
#define TC_CONFIRM_READ_MS 60000
/* Partitions one read-back covers at most (the rest count as failed). */
#define TC_CONFIRM_RANGES_MAX 1024
/* Bytes of a message's headers as tc_confirm packs them (the dead-letter mirror's seven, with a
 * detail of at most a few hundred bytes, take well under 1 KiB). A message with more is not kept.
 */
#define TC_CONFIRM_HEADERS_MAX 16384

typedef struct tc_confirm tc_confirm;

/* One partition to read back: from `low` (the lowest offset any kept message of it can have). */
typedef struct tc_confirm_range {
    const char *topic; /* borrowed from the set: valid until it changes */
    int32_t partition;
    int64_t low;
} tc_confirm_range;

tc_confirm *tc_confirm_new(void);
void tc_confirm_destroy(tc_confirm *c);

/* Keep a copy of a message whose delivery was inferred; low is the lowest offset it can have.
 * headers is the message's headers packed (tc_confirm_keep does it; NULL, 0: none), compared with
 * the key and value. TC_ERR_NOMEM past TC_CONFIRM_BYTES_MAX (nothing kept). */
tc_err tc_confirm_add(tc_confirm *c, const char *topic, int32_t partition, int64_t low,
                      const void *key, size_t key_len, const void *value, size_t value_len,
                      const void *headers, size_t headers_len);

/* tc_confirm_add of a delivery report's message, its headers included. TC_ERR_NOMEM as
 * tc_confirm_add, or when its headers pack to more than TC_CONFIRM_HEADERS_MAX. */
tc_err tc_confirm_keep(tc_confirm *c, const rd_kafka_message_t *m, int64_t low);

/* Headers for a resend, from what tc_confirm_keep packed; NULL when there were none (or out of
 * memory). Owned by the caller (librdkafka takes them with a successful produce). */
rd_kafka_headers_t *tc_confirm_headers(const void *packed, size_t len);

/* Kept messages not yet found. */
size_t tc_confirm_pending(const tc_confirm *c);

/* The partitions to read back (one per topic and partition, with the lowest `low`) into out;
 * returns how many there are (more than cap when they did not all fit). */
size_t tc_confirm_ranges(tc_confirm *c, tc_confirm_range *out, size_t cap);

/* A message read from the topic at (topic, partition): strikes off one kept copy of it not yet
 * found (key, value and packed headers equal). Returns 1 when it struck one off, 0 when none
 * matched. */
int tc_confirm_match(tc_confirm *c, const char *topic, int32_t partition, const void *key,
                     size_t key_len, const void *value, size_t value_len, const void *headers,
                     size_t headers_len);

/* Each kept message not found, passed to fn (its pointers valid during the call only). The set is
 * emptied first: what fn adds to it (a resend's report inferred again) stays for the next read.
 * Returns how many were passed. */
typedef void (*tc_confirm_each_fn)(void *arg, const char *topic, int32_t partition, const void *key,
                                   size_t key_len, const void *value, size_t value_len,
                                   const void *headers, size_t headers_len);
size_t tc_confirm_take_missing(tc_confirm *c, tc_confirm_each_fn fn, void *arg);

/* Empty the set. */
void tc_confirm_clear(tc_confirm *c);

/* Step 2 of the protocol against the brokers of cfg: read every range to the partition's end (as
 * it is when the read starts) and match what is there. An error (a broker unreachable, the read
 * not done within TC_CONFIRM_READ_MS) leaves the set as it was after what was matched. */
tc_err tc_confirm_read(tc_confirm *c, const tc_config *cfg, char *errstr, size_t errstr_size);

/* The whole protocol for a producer whose queue is empty: read back, hand what is missing to
 * resend, wait for the resends with drain (false when its queue did not empty in timeout_ms:
 * the check stops there, what it has kept stays for a later call), again until the set is empty,
 * TC_CONFIRM_ROUNDS times at most. Returns how many kept messages could not be vouched for (their
 * read failed, or they were still inferred after the last round): the caller counts them failed;
 * the set is emptied of them, and errstr says why. what names the producer in the log. */
typedef int (*tc_confirm_drain_fn)(void *arg, int timeout_ms);
size_t tc_confirm_settle(tc_confirm *c, const tc_config *cfg, const char *what,
                         tc_confirm_each_fn resend, tc_confirm_drain_fn drain, void *arg,
                         int timeout_ms, char *errstr, size_t errstr_size);

#endif
