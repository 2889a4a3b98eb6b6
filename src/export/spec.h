/*
 * spec.h -- the scheduled exports of the configuration: export.schedules.
 *
 * The configuration holds them in one string (the configuration's values are scalars): exports
 * separated by ';', each a list of KEY=VALUE separated by spaces, a VALUE with spaces in double
 * quotes (no escapes: a quote cannot be part of a value):
 *
 *   name=daily-public schedule=daily tz=Europe/Paris format=csv compress=gzip profile=public
 *     out=/srv/exports/daily ; name=weekly schedule="0 6 * * 1" format=parquet out=/srv/w
 *
 * Keys: name (required; letters, digits, '-', '_'), schedule (required; schedule.h), tz, format
 * (required), compress, profile, devices, tags (K=V,K=V), metrics (a,b), out (required: the
 * directory that receives one directory per period), lookback (closed periods checked for late
 * data, 1-1000, default 7). Unknown keys, repeated keys, two exports with one name or one out
 * directory, and values out of range are errors naming the export and the key. Untrusted input:
 * bounded, fuzzed (tests/fuzz/fuzz_export_spec.c).
 */
#ifndef TC_EXPORT_SPEC_H
#define TC_EXPORT_SPEC_H

#include <stddef.h>

#include "core/error.h"
#include "export/export.h"
#include "export/schedule.h"

/* Scheduled exports in one configuration. */
#define TC_EXPORT_SPECS_MAX 64
/* export.schedules' length bound. */
#define TC_EXPORT_SPECS_TEXT_MAX ((size_t)64 << 10)
/* An export's name. */
#define TC_EXPORT_NAME_MAX 64
/* Default and largest lookback (closed periods checked for late data). */
#define TC_EXPORT_LOOKBACK_DEFAULT 7
#define TC_EXPORT_LOOKBACK_MAX     1000

typedef struct tc_export_spec {
    char name[TC_EXPORT_NAME_MAX];
    char schedule_text[TC_SCHED_EXPR_MAX];
    tc_sched schedule;
    tc_export_format format;
    tc_export_compress compress;
    char profile[16];
    char devices[TC_EXPORT_TEXT_MAX]; /* "" = all */
    size_t ntags;
    char tag_key[TC_EXPORT_TAGS_MAX][TC_EXPORT_TEXT_MAX];
    char tag_value[TC_EXPORT_TAGS_MAX][TC_EXPORT_TEXT_MAX];
    char metrics[TC_EXPORT_TEXT_MAX]; /* "" = every metric */
    char out[TC_EXPORT_TEXT_MAX * 4];
    int lookback;
} tc_export_spec;

/* Parse text into specs[0..*n) (at most cap). errstr names the export and the key at fault. */
tc_err tc_export_specs_parse(const char *text, tc_export_spec *specs, size_t cap, size_t *n,
                             char *errstr, size_t errstr_size);

/* "parquet" | "csv" | "ndjson"; "zstd" | "gzip" | "none". TC_ERR_INVALID otherwise. */
tc_err tc_export_parse_format(const char *s, tc_export_format *out);
tc_err tc_export_parse_compress(const char *s, tc_export_compress *out);

#endif
