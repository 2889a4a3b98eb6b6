/*
 * dlq_mirror.h -- a copy of every dead letter on the Kafka topic "<kafka.topic>-dlq".
 *
 * PostgreSQL (@S.dead_letters) is the record of dead letters; the mirror lets Kafka tools and
 * other consumers see them as they happen. Each dead letter becomes one message: the raw payload as
 * the value (empty for an empty message), the original key (none when the message had none), and
 * the headers reason, detail, stage, source_topic, source_partition, source_offset (decimal) and
 * received_at (RFC 3339, UTC).
 *
 * Delivery. The pipeline calls tc_dlq_mirror_send after the transaction that stored the batch has
 * committed, so a dead letter is mirrored only once it is durable. The producer is idempotent
 * (enable.idempotence, acks=all): its own retries never duplicate or reorder a message. The
 * remaining window is a crash (or a delivery that fails for good) after the commit and before the
 * broker acknowledged the message: the mirror copy is then lost -- never the dead letter itself,
 * which is in PostgreSQL -- and it is not sent again, because the pipeline resumes after the
 * committed offsets. The mirror is therefore at most once across crashes and exactly once
 * otherwise; `thermocline dlq ls --since` over the crash time shows what it may lack. "Delivered"
 * is the broker's word: a copy librdkafka reported delivered without an offset is read back at
 * the flush and sent again, headers and all, when the topic lacks it (confirm.h).
 */
#ifndef TC_INGEST_DLQ_MIRROR_H
#define TC_INGEST_DLQ_MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/deadletter.h"
#include "core/error.h"

/* Suffix of the mirror topic's name. */
#define TC_DLQ_TOPIC_SUFFIX "-dlq"

typedef struct tc_dlq_mirror tc_dlq_mirror;

/* Create the producer and, when kafka.create_topic is on, the topic "<kafka.topic>-dlq" (with the
 * source topic's partitions, replication and retention). NULL with errstr filled on failure. */
tc_dlq_mirror *tc_dlq_mirror_new(const tc_config *cfg, char *errstr, size_t errstr_size);

/* The mirror topic's name. */
const char *tc_dlq_mirror_topic(const tc_dlq_mirror *m);

/* Queue every dead letter of d (copied: d may be reset right after). Blocks, serving delivery
 * reports, while librdkafka's queue is full. source_topic is the topic the letters were read from.
 */
tc_err tc_dlq_mirror_send(tc_dlq_mirror *m, const tc_dlq_batch *d, const char *source_topic,
                          char *errstr, size_t errstr_size);

/* Wait up to timeout_ms for everything queued to be acknowledged, then check the deliveries
 * librdkafka inferred (confirm.h; up to TC_CONFIRM_READ_MS more). TC_OK when nothing is pending
 * and no delivery has failed since the last flush; otherwise TC_ERR_KAFKA_TRANS (still pending)
 * or TC_ERR_KAFKA (failed deliveries, those that could not be checked included, counted in
 * errstr). */
tc_err tc_dlq_mirror_flush(tc_dlq_mirror *m, int timeout_ms, char *errstr, size_t errstr_size);

/* Messages acknowledged and failed since tc_dlq_mirror_new. */
void tc_dlq_mirror_totals(const tc_dlq_mirror *m, uint64_t *delivered, uint64_t *failed);

/* Flush (briefly) and free. NULL is fine. */
void tc_dlq_mirror_destroy(tc_dlq_mirror *m);

#endif
