/*
 * monitor_metrics.c -- the quality monitor's fleet-level figures for /metrics (monitor.h): a pure
 * function of a stats snapshot, in Prometheus text format, with labels from bounded sets only
 * (kind and source, reason, quantile, result), never a device.
 */
#include <stdio.h>

#include "quality/detect.h"
#include "quality/monitor.h"
#include "quality/rules.h"

_Static_assert(TC_QMON_KINDS == TC_QD_KIND__COUNT + TC_QR_KIND__COUNT, "a label per kind");
static const char *const tc_qmon_kind_labels[TC_QMON_KINDS] = {
    "spike", "drift",    "stuck",    "rate",  "silence", "range",
    "rate",  "required", "interval", "stuck", "expr"};

const char *tc_qmon_kind_label(int i, const char **source)
{
    if (i < 0 || i >= TC_QMON_KINDS)
        return NULL;
    if (source)
        *source = i < TC_QD_KIND__COUNT ? "detector" : "rule";
    return tc_qmon_kind_labels[i];
}

/* One counter or gauge in Prometheus text: HELP and TYPE lines once, then the sample. */
static void tc_qmon_prom_head(tc_jbuf *b, const char *name, const char *type, const char *help)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);

    tc_jbuf_append(b, line, n > 0 && (size_t)n < sizeof(line) ? (size_t)n : 0);
}

static void tc_qmon_prom(tc_jbuf *b, const char *name, const char *labels, double v)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s%s%s%s %.17g\n", name, labels ? "{" : "",
                     labels ? labels : "", labels ? "}" : "", v);

    tc_jbuf_append(b, line, n > 0 && (size_t)n < sizeof(line) ? (size_t)n : 0);
}

static void tc_qmon_prom_one(tc_jbuf *b, const char *name, const char *type, const char *help,
                             double v)
{
    tc_qmon_prom_head(b, name, type, help);
    tc_qmon_prom(b, name, NULL, v);
}

static void tc_qmon_prom_kinds(tc_jbuf *b, const char *name, const char *help,
                               const uint64_t *by_kind)
{
    char labels[128];

    tc_qmon_prom_head(b, name, "counter", help);
    for (int k = 0; k < TC_QMON_KINDS; k++) {
        const char *source, *kind = tc_qmon_kind_label(k, &source);
        snprintf(labels, sizeof(labels), "kind=\"%s\",source=\"%s\"", kind, source);
        tc_qmon_prom(b, name, labels, (double)by_kind[k]);
    }
}

void tc_qmon_render_metrics(const tc_qmon_stats *st, tc_jbuf *b)
{
    char labels[128];

    tc_qmon_prom_one(b, "thermocline_quality_readings_total", "counter",
                     "Valid readings the quality monitor counted.", (double)st->readings);
    tc_qmon_prom_one(b, "thermocline_quality_late_readings_total", "counter",
                     "Readings older than the watermark by more than quality.late_after_s "
                     "(partitions held now).",
                     (double)st->late);
    tc_qmon_prom_one(b, "thermocline_quality_out_of_order_readings_total", "counter",
                     "Readings older than their device's latest (partitions held now).",
                     (double)st->out_of_order);
    tc_qmon_prom_one(b, "thermocline_quality_gaps_total", "counter",
                     "Readings after more than 3 usual intervals of their device (partitions held "
                     "now).",
                     (double)st->gaps);
    tc_qmon_prom_head(b, "thermocline_quality_dead_letters_total", "counter",
                      "Dead letters the quality monitor counted, by reason.");
    for (int r = 1; r < TC_REJECT__COUNT; r++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", tc_reject_name((tc_reject)r));
        tc_qmon_prom(b, "thermocline_quality_dead_letters_total", labels,
                     (double)st->dead_by_reason[r]);
    }
    tc_qmon_prom_kinds(b, "thermocline_quality_findings_opened_total",
                       "Anomalies opened (committed), by kind and source.", st->opened_by_kind);
    tc_qmon_prom_kinds(b, "thermocline_quality_findings_resolved_total",
                       "Anomalies resolved (committed), by kind and source.", st->resolved_by_kind);
    tc_qmon_prom_one(b, "thermocline_quality_findings_open", "gauge",
                     "Anomalies open now in the partitions held (detectors and rules).",
                     (double)st->open_now);
    tc_qmon_prom_one(b, "thermocline_quality_devices", "gauge",
                     "Devices the quality monitor watches in the partitions held.",
                     (double)st->devices);
    tc_qmon_prom_one(b, "thermocline_quality_refused_total", "counter",
                     "Readings and dead letters not counted: devices past quality.max_devices, "
                     "too long ids, caps.",
                     (double)st->refused);
    tc_qmon_prom_head(b, "thermocline_quality_delay_seconds", "gauge",
                      "Event-to-ingest delay of the readings counted since the start "
                      "(log-bucket sketch, within 9.05 %).");
    tc_qmon_prom(b, "thermocline_quality_delay_seconds", "quantile=\"0.5\"",
                 tc_qm_sketch_quantile(&st->delay, 0.5) / 1e3);
    tc_qmon_prom(b, "thermocline_quality_delay_seconds", "quantile=\"0.99\"",
                 tc_qm_sketch_quantile(&st->delay, 0.99) / 1e3);
    tc_qmon_prom_one(b, "thermocline_quality_flushes_total", "counter",
                     "Quality transactions committed.", (double)st->flushes);
    tc_qmon_prom_one(b, "thermocline_quality_flush_failures_total", "counter",
                     "Quality transactions that failed (retried; fenced ones included).",
                     (double)st->flush_failures);
    tc_qmon_prom_one(b, "thermocline_quality_checkpoint_devices_total", "counter",
                     "Devices whose detector state the committed quality transactions wrote "
                     "(only those changed since their partition's last checkpoint).",
                     (double)st->checkpoint_devices);
    tc_qmon_prom_head(b, "thermocline_quality_rules_reloads_total", "counter",
                      "Reloads of quality.rules_file (SIGHUP), by result.");
    tc_qmon_prom(b, "thermocline_quality_rules_reloads_total", "result=\"accepted\"",
                 (double)st->reloads);
    tc_qmon_prom(b, "thermocline_quality_rules_reloads_total", "result=\"refused\"",
                 (double)st->reloads_refused);
    tc_qmon_prom_one(b, "thermocline_quality_watermark_timestamp_seconds", "gauge",
                     "Largest event time the quality monitor has seen.",
                     (double)st->watermark_us / 1e6);
    tc_qmon_prom_one(b, "thermocline_quality_last_flush_timestamp_seconds", "gauge",
                     "Wall time of the last committed quality transaction.",
                     (double)st->flushed_us / 1e6);
}
