/*
 * alert.h -- alerts pushed to Alertmanager's v2 API (POST /api/v2/alerts) from a background thread.
 *
 * Thermocline does not deliver notifications itself: it hands alerts to Alertmanager, which groups,
 * inhibits, silences, repeats and routes them (Slack, email, a second tier) the way operators
 * already configure it. This is the client side, in the shape Prometheus itself uses:
 *
 *   - An alert is identified by its labels (alertname, severity, device_id, metric, rule, detector,
 *     site). tc_alerter_fire opens it (or refreshes its annotations); tc_alerter_resolve closes it.
 *   - Every configured Alertmanager (an HA pair: several URLs) gets every alert; each URL has its
 *     own delivery state, so one that is down does not hold up the other.
 *   - A firing alert is re-sent every resend_ms with endsAt = now + 4 x resend_ms, so Alertmanager
 *     keeps it open while we do, and lets it expire by itself if this process dies. A resolved one
 *     is sent with endsAt = when it was resolved, until each URL has accepted it; then forgotten.
 *   - Escalation (escalate_after_ms > 0): an alert still firing that long after it started is also
 *     sent as a copy with the extra label escalated="true" (its own startsAt: when it escalated).
 *     Alertmanager has no escalation of its own; a route on that label sends the copy to a second
 *     tier (deploy/alertmanager/alertmanager.yml). The copy resolves with the alert.
 *
 * Bounded: at most queue_max alerts are held (firing, or resolved and not yet delivered
 * everywhere). Past the cap, a new alert first evicts the oldest resolved one (its resolution is
 * lost: the Alertmanager lets it expire at its endsAt instead); when every held alert is firing,
 * the new one is refused (TC_ERR_FULL). Both are counted (tc_alerter_stats, /metrics).
 *
 * Never blocking the caller: fire and resolve only copy under a mutex and signal the thread; the
 * thread encodes under the mutex and sends without it, one POST of at most TC_ALERTER_POST_MAX
 * alerts per URL per round, waiting timeout_ms at most. A URL that fails is retried with a doubling
 * back-off capped at TC_ALERTER_BACKOFF_MAX_MS; what was not accepted stays due, so alerts are
 * delivered when the Alertmanager is back.
 */
#ifndef TC_ALERT_ALERT_H
#define TC_ALERT_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"

/* Bytes of a label value (NUL included); longer values are refused, not cut (they identify). */
#define TC_ALERT_LABEL_MAX 128
/* Bytes of an annotation (NUL included); longer text is cut (it only describes). */
#define TC_ALERT_TEXT_MAX 512
/* Alertmanager URLs (an HA pair, or a few). */
#define TC_ALERTER_URLS_MAX 4
/* Alerts in one POST: a backlog after an outage goes in several rounds. */
#define TC_ALERTER_POST_MAX 256
/* Largest POST body (TC_ALERTER_POST_MAX alerts of full labels and annotations fit). */
#define TC_ALERTER_BODY_MAX (2 * 1024 * 1024)
/* A failing URL is retried after 1 s, 2 s, 4 s ... at most this. */
#define TC_ALERTER_BACKOFF_MAX_MS 8000

typedef struct tc_alert {
    const char *name;     /* label alertname: required, [A-Za-z_][A-Za-z0-9_]* */
    const char *severity; /* label severity: required, "info", "warning" or "critical" */
    /* Optional labels (NULL or "": absent). site NULL: the alerter's default site. */
    const char *device_id, *metric, *rule, *detector, *site;
    /* Annotations (NULL or "": absent). runbook_url links into docs/operations.md. */
    const char *summary, *description, *runbook_url;
} tc_alert;

/* Sends one POST body to URL index url (0..nurls-1); returns TC_OK when accepted (HTTP 2xx). The
 * default sends it over HTTP; unit tests pass their own. */
typedef tc_err (*tc_alerter_send_fn)(void *opaque, size_t url, const char *body, size_t len,
                                     char *errstr, size_t errstr_size);

typedef struct tc_alerter_options {
    const char *urls;          /* comma-separated Alertmanager base URLs, "http://host:9093" */
    size_t queue_max;          /* alerts held at most (>= 1) */
    int64_t resend_ms;         /* re-send interval of firing alerts (>= 1) */
    int64_t timeout_ms;        /* one POST's deadline */
    int64_t escalate_after_ms; /* 0: no escalation */
    const char *site;          /* default site label (NULL or "": none) */
    tc_alerter_send_fn send;   /* NULL: HTTP */
    void *send_opaque;
    int manual; /* nonzero: no thread; the caller drives delivery with tc_alerter_run_once */
} tc_alerter_options;

typedef struct tc_alerter_stats {
    uint64_t fired, resolved;  /* calls accepted */
    uint64_t firing;           /* firing alerts held now */
    uint64_t held;             /* alerts held now (firing + resolved not yet delivered) */
    uint64_t posts_ok;         /* POSTs accepted, all URLs */
    uint64_t posts_failed;     /* POSTs refused or not answered */
    uint64_t dropped_resolved; /* resolved alerts evicted before delivery (queue full) */
    uint64_t dropped_firing;   /* new alerts refused (queue full of firing ones) */
    uint64_t urls_up[TC_ALERTER_URLS_MAX]; /* 1 when the URL's last POST was accepted */
    size_t nurls;
} tc_alerter_stats;

typedef struct tc_alerter tc_alerter;

/* A new alerter (options copied; the URLs parsed: a malformed one is TC_ERR_CONFIG naming it). The
 * delivery thread starts unless opt->manual. NULL with errstr. */
tc_alerter *tc_alerter_new(const tc_alerter_options *opt, char *errstr, size_t errstr_size);

/* An alerter with the alerting.* settings of cfg (borrowed; the strings are copied). NULL with
 * errstr, also when alerting.alertmanager_urls is empty. */
tc_alerter *tc_alerter_new_from_config(const tc_config *cfg, char *errstr, size_t errstr_size);

/* Open the alert (or refresh its annotations). The strings are copied. TC_ERR_INVALID (with
 * errstr) for a bad alertname, severity or a label too long; TC_ERR_FULL when it was refused (see
 * the file comment). Safe from any thread; never waits for the network. */
tc_err tc_alerter_fire(tc_alerter *a, const tc_alert *al, char *errstr, size_t errstr_size);

/* Close the alert with the same labels. One this alerter never fired (another process did, e.g.
 * an earlier `thermocline alert send`) is sent resolved all the same. Errors as tc_alerter_fire. */
tc_err tc_alerter_resolve(tc_alerter *a, const tc_alert *al, char *errstr, size_t errstr_size);

/* Wait up to timeout_ms until every URL has accepted everything due now. Returns how many URLs
 * are still behind (0: all delivered). */
size_t tc_alerter_flush(tc_alerter *a, int timeout_ms);

/* CPU nanoseconds the alerter's thread has spent in its rounds so far (0 for NULL). */
uint64_t tc_alerter_cpu_ns(tc_alerter *a);

/* One delivery round at now_us (what the thread does each turn); for manual alerters and tests. */
void tc_alerter_run_once(tc_alerter *a, int64_t now_us);

void tc_alerter_get_stats(tc_alerter *a, tc_alerter_stats *out);

/* Stop the thread (a POST under way finishes or times out first) and free everything. Alerts not
 * delivered yet are lost: call tc_alerter_flush first when they matter. NULL is ignored. */
void tc_alerter_destroy(tc_alerter *a);

#endif
