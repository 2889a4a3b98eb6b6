/*
 * lookup.h -- one-off questions to Kafka for operator commands (`thermocline replay`): the
 * partitions of a topic and their bounds, the first offset at or after a time, and who is in a
 * consumer group. Each call opens a short-lived client of its own; none joins a group.
 */
#ifndef TC_INGEST_LOOKUP_H
#define TC_INGEST_LOOKUP_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"

/* How long one lookup may wait for the brokers. */
#define TC_LOOKUP_TIMEOUT_MS 10000
/* Members of a group described by name in a refusal. */
#define TC_LOOKUP_MEMBERS_TEXT_MAX 512

typedef struct tc_kafka_bounds {
    int32_t partition;
    int64_t low;  /* first offset Kafka still retains */
    int64_t high; /* next offset to be written (the end) */
} tc_kafka_bounds;

/* The partitions of topic with their bounds, sorted by partition, into out (capacity cap); *n is
 * how many. TC_ERR_NOT_FOUND when the topic does not exist. */
tc_err tc_kafka_lookup_bounds(const tc_config *cfg, const char *topic, tc_kafka_bounds *out,
                              size_t cap, size_t *n, char *errstr, size_t errstr_size);

/* For each of parts[0..n), the first offset whose message timestamp is at or after time_ms, or
 * the partition's end when there is none (Kafka's offsets-for-times). */
tc_err tc_kafka_lookup_times(const tc_config *cfg, const char *topic, const int32_t *parts,
                             size_t n, int64_t time_ms, int64_t *offsets, char *errstr,
                             size_t errstr_size);

/* The members of consumer group `group` (0 when it is empty or unknown), with a description of
 * them ("client-id@host, ...") in members_text. */
tc_err tc_kafka_lookup_group(const tc_config *cfg, const char *group, size_t *members,
                             char *members_text, size_t text_size, char *errstr,
                             size_t errstr_size);

#endif
