/*
 * rules.h -- declarative data-quality rules: the YAML file (quality.rules_file) and an evaluator
 * per (rule, device).
 *
 *   rules:
 *     - name: cold-room-range            # required, unique, [A-Za-z0-9_.-]{1,63}
 *       scope:                           # optional; every part given must match
 *         devices: "fridge-*"            # fnmatch(3) glob on device_id
 *         tags: {site: berlin-1}         # tag selector: each key = value
 *         schema_version: 2              # the reading's detected schema version
 *       check:                           # exactly one of:
 *         range: {metric: temperature, min: -5, max: 8}      # min and/or max
 *         # rate: {metric: temperature, max_per_s: 0.5}      # |change| / seconds
 *         # required: [temperature, humidity]                # every one present
 *         # interval: {expected_s: 60, tolerance: 3}         # silence > expected_s x tolerance
 *         # stuck: {metric: pressure, readings: 10}          # and/or seconds: 600
 *         # expr: "dew_point <= temperature"                 # expr.h's language
 *       severity: critical               # warning (default) or critical
 *       for: 5m                          # the violation must last this long to fire (default 0)
 *
 * Errors name FILE:LINE:COL (libyaml's marks, 1-based) and the key: an unknown key, a duplicate
 * key, a wrong type, a missing required key, an out-of-range value, an expression error (the
 * column points into the expression for one-line scalars). Nothing of an invalid file is kept:
 * tc_qr_parse returns NULL, so a reload that fails leaves the rules in force unchanged.
 *
 * A rule flags, it never drops data: the evaluator only reports transitions.
 *
 * Evaluation (tc_qr_eval): one small state per (rule, device), made when the device first
 * appears, so memory is TC_QR_STATE_BYTES x rules x devices (bounded by max_devices). `for`
 * follows Prometheus: a violation makes the rule pending; still violated `for` later it fires
 * (event firing=1, start = when the violation began); the first reading that satisfies the check
 * resolves it (firing=0, end = that reading's time). A reading the check cannot judge (the metric
 * absent, an expression unknown) changes nothing, and neither does one older than the device's
 * latest (out of order). `interval` is judged by tc_qr_eval_tick.
 *
 * Ownership: a tc_qr_set is immutable after parsing and may be shared; an evaluator keeps a
 * pointer to its set, which must outlive it. Events live for the callback only.
 */
#ifndef TC_QUALITY_RULES_H
#define TC_QUALITY_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "quality/expr.h"

#define TC_QR_RULES_MAX    256
#define TC_QR_NAME_MAX     63
#define TC_QR_GLOB_MAX     127
#define TC_QR_TAGS_MAX     8
#define TC_QR_TAG_MAX      63
#define TC_QR_REQUIRED_MAX 16
#define TC_QR_METRICS_MAX  64 /* distinct metric names a rule set refers to */
#define TC_QR_FILE_MAX     (1024 * 1024)
#define TC_QR_STATE_BYTES  48
#define TC_QR_FOR_MAX_S    (7 * 86400)

typedef enum tc_qr_kind {
    TC_QR_RANGE,
    TC_QR_RATE,
    TC_QR_REQUIRED,
    TC_QR_INTERVAL,
    TC_QR_STUCK,
    TC_QR_EXPR,
    TC_QR_KIND__COUNT
} tc_qr_kind;

typedef enum tc_qr_severity { TC_QR_WARNING, TC_QR_CRITICAL } tc_qr_severity;

typedef struct tc_qr_rule {
    char name[TC_QR_NAME_MAX + 1];
    int line, column; /* of the rule's mapping */
    /* scope */
    char devices[TC_QR_GLOB_MAX + 1]; /* "" = every device */
    int ntags;
    char tag_key[TC_QR_TAGS_MAX][TC_QR_TAG_MAX + 1];
    char tag_value[TC_QR_TAGS_MAX][TC_QR_TAG_MAX + 1];
    int schema_version; /* 0 = any */
    /* check */
    tc_qr_kind kind;
    int metric;       /* range, rate, stuck: index into the set's metric names */
    double min, max;  /* range: NAN when not given */
    double max_per_s; /* rate */
    int nrequired;
    int required[TC_QR_REQUIRED_MAX];
    double expected_s, tolerance; /* interval */
    int stuck_readings;           /* 0 = not used */
    double stuck_s;               /* 0 = not used */
    tc_qx expr;
    tc_qr_severity severity;
    int64_t for_us;
} tc_qr_rule;

typedef struct tc_qr_set tc_qr_set;

/* Parse a rules document; name is what errors start with (the file's path). NULL with errstr
 * "NAME:LINE:COL: message" on error. */
tc_qr_set *tc_qr_parse(const char *text, size_t len, const char *name, char *errstr,
                       size_t errstr_size);
/* Read and parse the file at path. */
tc_qr_set *tc_qr_load(const char *path, char *errstr, size_t errstr_size);
void tc_qr_free(tc_qr_set *set);

size_t tc_qr_count(const tc_qr_set *set);
const tc_qr_rule *tc_qr_get(const tc_qr_set *set, size_t i);
/* The metric names the rules refer to; values passed to the evaluator follow this order. */
int tc_qr_metric_count(const tc_qr_set *set);
const char *tc_qr_metric_name(const tc_qr_set *set, int i);
/* "range", "rate", ...; "warning", "critical". */
const char *tc_qr_kind_name(tc_qr_kind kind);
const char *tc_qr_severity_name(tc_qr_severity s);

/* ---- evaluation ---- */

typedef struct tc_qr_tag {
    const char *key, *value;
} tc_qr_tag;

typedef struct tc_qr_reading {
    const char *device;
    size_t device_len;
    int64_t t_us;
    const double *values; /* tc_qr_metric_count(set) values, NaN when absent */
    const tc_qr_tag *tags;
    int ntags;
    int schema_version; /* 0 = unknown */
} tc_qr_reading;

typedef struct tc_qr_event {
    const tc_qr_rule *rule;
    const char *device;
    int firing;       /* 1: fired; 0: resolved */
    int64_t start_us; /* when the violation began */
    int64_t end_us;   /* 0 while firing; when it cleared */
    double observed;  /* the value that violated (range, rate, stuck: the metric; interval: the
                       * seconds of silence; expr: its left side is not kept, NaN) */
} tc_qr_event;

typedef void (*tc_qr_event_fn)(void *opaque, const tc_qr_event *e);

typedef struct tc_qr_eval tc_qr_eval;

tc_qr_eval *tc_qr_eval_new(const tc_qr_set *set, size_t max_devices, tc_qr_event_fn fn,
                           void *opaque, char *errstr, size_t errstr_size);
void tc_qr_eval_destroy(tc_qr_eval *e);
void tc_qr_eval_reading(tc_qr_eval *e, const tc_qr_reading *r);
/* Judge the interval rules at now_us. */
void tc_qr_eval_tick(tc_qr_eval *e, int64_t now_us);
/* Rules firing now, and readings of devices refused (beyond max_devices, ids too long). */
uint64_t tc_qr_eval_firing(const tc_qr_eval *e);
uint64_t tc_qr_eval_refused(const tc_qr_eval *e);
/* Readings older than the device's latest, skipped: transitions follow event time. */
uint64_t tc_qr_eval_out_of_order(const tc_qr_eval *e);

/* Carrying firing rules over a restart or a reload. An evaluator starts with every rule "not
 * pending"; the quality sink keeps the rules' open findings in the anomalies table, and gives them
 * back here so a rule still violated does not fire a second time and one that clears resolves the
 * stored finding (same start). tc_qr_eval_restore marks rule `rule` (the index in this
 * evaluator's set) firing for device since start_us: TC_ERR_FULL when the device cannot be
 * tracked (max_devices), TC_ERR_NOMEM, TC_ERR_INVALID for a bad index or time. */
tc_err tc_qr_eval_restore(tc_qr_eval *e, size_t rule, const char *device, size_t len,
                          int64_t start_us);
/* Call fn for every (rule, device) firing now, with the start the fire event gave. */
typedef void (*tc_qr_firing_fn)(void *opaque, const tc_qr_rule *rule, const char *device,
                                int64_t start_us);
void tc_qr_eval_each_firing(const tc_qr_eval *e, tc_qr_firing_fn fn, void *opaque);
/* Index of the rule called name in set, or -1. */
long tc_qr_find(const tc_qr_set *set, const char *name);

#endif
