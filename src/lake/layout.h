/*
 * layout.h -- the lake on disk: the one place that knows its paths, file names, progress files and
 * footer keys. The sink, replay, compaction, replication and the `lake` commands all go through it,
 * so the format cannot drift between writers and readers.
 *
 *   <root>/telemetry/year=YYYY/month=MM/day=DD/part-<topic>-p<P>-<first>-<last>.parquet
 *   <root>/telemetry/year=YYYY/month=MM/day=DD/.part-<topic>-p<P>-<first>-open-<member>.tmp
 *   <root>/telemetry/year=YYYY/month=MM/day=DD/compact-<YYYYMMDD>-<n>-<unix seconds>.parquet
 *   <root>/_thermocline/progress/<topic>/<P>      "<next offset>\n": the commit point
 *
 * File names are parsed from the right. A Kafka topic may contain '-', 'p' and digits, so a topic
 * `a-p1-5` makes `part-a-p1-5-p0-10-20.parquet`, which a parser reading from the left after a
 * prefix "part-a-" takes for partition 1 of topic `a`. Partition and offsets are digits only, so
 * reading them from the end leaves exactly the topic: one name, one meaning. The format itself is
 * unchanged, so existing lakes read as before; open files of writers that predate member names
 * (".part-<topic>-p<P>-<first>-open.tmp") parse with an empty member.
 *
 * Progress files have one error rule for every reader: a missing file is "no progress" (-1); a
 * file that exists but cannot be read, or does not hold one non-negative decimal number, is an
 * error naming the path -- never taken for "no progress", which would make recovery remove every
 * file of the partition. Progress is written atomically (core/durable.h: temporary file, fsync,
 * rename, directory fsync).
 */
#ifndef TC_LAKE_LAYOUT_H
#define TC_LAKE_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "lake/parquet_read.h"

/* Kafka topic names are at most 249 characters. */
#define TC_LAKE_TOPIC_MAX 256
/* "<pid>-<random hex>": the member part of an open file's name. */
#define TC_LAKE_MEMBER_MAX 32
/* A file name in a day directory (topic + coordinates). */
#define TC_LAKE_NAME_MAX 384

/* Key-value metadata of a lake file's footer. */
#define TC_LAKE_KV_VERSION         "thermocline.version"
#define TC_LAKE_KV_SCHEMA_VERSION  "thermocline.schema_version"
#define TC_LAKE_KV_ROWS            "thermocline.rows"            /* compacted files */
#define TC_LAKE_KV_COMPACTED_FILES "thermocline.compacted_files" /* compacted files */
#define TC_LAKE_KV_TOPIC           "kafka.topic"
#define TC_LAKE_KV_PARTITION       "kafka.partition"    /* part files */
#define TC_LAKE_KV_FIRST_OFFSET    "kafka.first_offset" /* part files */
#define TC_LAKE_KV_LAST_OFFSET     "kafka.last_offset"  /* part files */
#define TC_LAKE_KV_PARTITIONS      "kafka.partitions"   /* compacted: "P:first-last,..." */

typedef enum tc_lake_file_kind {
    TC_LAKE_FILE_OTHER = 0, /* not a lake file name */
    TC_LAKE_FILE_PART,      /* a committed file of one commit of one partition */
    TC_LAKE_FILE_OPEN,      /* a writer's open (temporary) file */
    TC_LAKE_FILE_COMPACT    /* a compacted file (coordinates in its footer only) */
} tc_lake_file_kind;

typedef struct tc_lake_name {
    tc_lake_file_kind kind;
    char topic[TC_LAKE_TOPIC_MAX];   /* PART, OPEN */
    int32_t partition;               /* PART, OPEN */
    int64_t first, last;             /* PART: the commit's range; OPEN: first, last = -1 */
    char member[TC_LAKE_MEMBER_MAX]; /* OPEN: "<pid>-<hex>", "" for a pre-member writer's file */
} tc_lake_name;

/* Decode a file name (no directory). Returns its kind; out is filled for PART and OPEN. */
tc_lake_file_kind tc_lake_name_parse(const char *name, tc_lake_name *out);

/* 1 when name is a PART or OPEN file of topic (out filled), else 0. */
int tc_lake_name_is_topic(const char *name, const char *topic, tc_lake_name *out);

/* Encoders; each returns the length, or -1 (out empty) when it does not fit cap. */
int tc_lake_name_part(char *out, size_t cap, const char *topic, int32_t partition, int64_t first,
                      int64_t last);
int tc_lake_name_open(char *out, size_t cap, const char *topic, int32_t partition, int64_t first,
                      const char *member);
int tc_lake_name_compact(char *out, size_t cap, int64_t day, size_t n, long long unix_seconds);

/* <root>/telemetry/year=YYYY/month=MM/day=DD of a day (days since 1970-01-01, UTC). */
int tc_lake_day_dir(char *out, size_t cap, const char *root, int64_t day);
/* <root>/_thermocline/progress/<topic> */
int tc_lake_progress_dir(char *out, size_t cap, const char *root, const char *topic);

/* Read a progress file: *next = the offset, or -1 when the file does not exist. TC_ERR_IO when
 * it cannot be read or does not hold a non-negative number (errstr names the path). */
tc_err tc_lake_progress_read_path(const char *path, int64_t *next, char *errstr,
                                  size_t errstr_size);
/* The same for <root>/_thermocline/progress/<topic>/<partition>. */
tc_err tc_lake_progress_read(const char *root, const char *topic, int32_t partition, int64_t *next,
                             char *errstr, size_t errstr_size);
/* Write it atomically (directories created durably). */
tc_err tc_lake_progress_write(const char *root, const char *topic, int32_t partition, int64_t next,
                              char *errstr, size_t errstr_size);

/* The value of a footer key, copied into buf (NUL-terminated); NULL when the key is absent, has
 * no value, or the value does not fit cap. */
const char *tc_lake_kv_get(const tc_parquet_info *info, const char *key, char *buf, size_t cap);

/* Call fn for every day directory of <root>/telemetry (year=*\/month=*\/day=*), with the day when
 * its name parses (else -1). Stops at, and returns, the first error fn returns; a missing
 * telemetry directory is no day. */
typedef tc_err (*tc_lake_day_fn)(void *opaque, const char *dir, int64_t day);
tc_err tc_lake_walk_days(const char *root, tc_lake_day_fn fn, void *opaque);

#endif
