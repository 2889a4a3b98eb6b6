/*
 * alert.c -- the Alertmanager client; see alert.h for the design.
 *
 * The held alerts are a fixed array of queue_max entries (allocated once, so the cap is also the
 * memory bound). Each entry has a generation, bumped by every change (fired, annotations changed,
 * resolved), and per URL the generation it last delivered and when. An entry is due for a URL when
 * that URL has not seen its generation, when it is firing and its last delivery is resend_ms old,
 * or when it escalated since. A delivery round encodes the due entries under the mutex, recording
 * (entry id, generation) pairs; after the POST, the ones still there with the same id are marked
 * delivered at that generation -- an entry changed meanwhile stays due.
 */
#include "alert/alert.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/http_client.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"

/* Labels of an alert, in the order of this table (the encoding keeps it). */
enum {
    TC_AL_NAME,
    TC_AL_SEVERITY,
    TC_AL_DEVICE,
    TC_AL_METRIC,
    TC_AL_RULE,
    TC_AL_DETECTOR,
    TC_AL_SITE,
    TC_AL__COUNT
};
static const char *const tc_alert_label_names[TC_AL__COUNT] = {
    "alertname", "severity", "device_id", "metric", "rule", "detector", "site"};
enum { TC_AN_SUMMARY, TC_AN_DESCRIPTION, TC_AN_RUNBOOK, TC_AN__COUNT };
static const char *const tc_alert_annotation_names[TC_AN__COUNT] = {"summary", "description",
                                                                    "runbook_url"};
/* Bytes of an Alertmanager's answer we read (it answers with a short JSON or nothing). */
#define TC_ALERTER_REPLY_MAX (64 * 1024)
/* The thread looks for due alerts at least this often. */
#define TC_ALERTER_TICK_MS 500

typedef struct tc_alert_entry {
    uint64_t id; /* 0 = free slot */
    char labels[TC_AL__COUNT][TC_ALERT_LABEL_MAX];
    char annotations[TC_AN__COUNT][TC_ALERT_TEXT_MAX];
    int64_t starts_us;
    int64_t ends_us; /* 0 while firing */
    int64_t esc_us;  /* startsAt of the escalated copy once it was sent (0: not yet) */
    uint64_t gen;
    uint64_t sent_gen[TC_ALERTER_URLS_MAX];
    int64_t sent_us[TC_ALERTER_URLS_MAX];
} tc_alert_entry;

typedef struct tc_alerter_url {
    tc_http_url url;
    char text[512];
    int64_t next_try_us; /* back-off after a failure */
    long backoff_ms;
    int up;
} tc_alerter_url;

struct tc_alerter {
    tc_alerter_options opt;
    char site[TC_ALERT_LABEL_MAX];
    tc_alerter_url urls[TC_ALERTER_URLS_MAX];
    size_t nurls;
    tc_alert_entry *entries; /* queue_max of them */
    uint64_t next_id;
    tc_alerter_stats stats;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a change, or stop */
    pthread_cond_t idle; /* a round finished */
    int stop;
    int thread_started;
    uint64_t cpu_ns; /* the thread's CPU in its rounds so far (under lock) */
    pthread_t thread;
};

/* ---- labels ---- */

static int tc_alert_name_ok(const char *s)
{
    if (!s || !*s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

/* Copy an alert's labels and annotations into fixed buffers (the entry's identity and text). */
static tc_err tc_alert_take(const tc_alerter *a, const tc_alert *al,
                            char labels[TC_AL__COUNT][TC_ALERT_LABEL_MAX],
                            char annotations[TC_AN__COUNT][TC_ALERT_TEXT_MAX], char *errstr,
                            size_t errstr_size)
{
    const char *lv[TC_AL__COUNT], *av[TC_AN__COUNT];

    if (!al || !tc_alert_name_ok(al->name))
        return tc_err_set(
            TC_ERR_INVALID, errstr, errstr_size,
            "alert name \"%s\" is not a label value of the form [A-Za-z_][A-Za-z0-9_]*",
            al && al->name ? al->name : "");
    if (!al->severity || (strcmp(al->severity, "info") && strcmp(al->severity, "warning") &&
                          strcmp(al->severity, "critical")))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "alert %s: severity \"%s\" is not info, warning or critical", al->name,
                          al->severity ? al->severity : "");
    lv[TC_AL_NAME] = al->name;
    lv[TC_AL_SEVERITY] = al->severity;
    lv[TC_AL_DEVICE] = al->device_id;
    lv[TC_AL_METRIC] = al->metric;
    lv[TC_AL_RULE] = al->rule;
    lv[TC_AL_DETECTOR] = al->detector;
    lv[TC_AL_SITE] = al->site ? al->site : a->site;
    for (int i = 0; i < TC_AL__COUNT; i++) {
        const char *v = lv[i] ? lv[i] : "";
        if (strlen(v) >= TC_ALERT_LABEL_MAX)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "alert %s: label %s is longer than %d bytes", al->name,
                              tc_alert_label_names[i], TC_ALERT_LABEL_MAX - 1);
        if (!tc_json_utf8_valid(v, strlen(v)))
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "alert %s: label %s is not valid UTF-8", al->name,
                              tc_alert_label_names[i]);
        memcpy(labels[i], v, strlen(v) + 1);
    }
    av[TC_AN_SUMMARY] = al->summary;
    av[TC_AN_DESCRIPTION] = al->description;
    av[TC_AN_RUNBOOK] = al->runbook_url;
    for (int i = 0; i < TC_AN__COUNT; i++) {
        const char *v = av[i] ? av[i] : "";
        size_t n = strlen(v);
        if (n >= TC_ALERT_TEXT_MAX) { /* cut, not at the middle of a UTF-8 sequence */
            n = TC_ALERT_TEXT_MAX - 1;
            while (n && ((unsigned char)v[n] & 0xC0) == 0x80)
                n--;
        }
        memcpy(annotations[i], v, n);
        annotations[i][n] = '\0';
    }
    return TC_OK;
}

static tc_alert_entry *tc_alerter_find(tc_alerter *a, char labels[TC_AL__COUNT][TC_ALERT_LABEL_MAX])
{
    for (size_t i = 0; i < a->opt.queue_max; i++)
        if (a->entries[i].id && !memcmp(a->entries[i].labels, labels, sizeof(a->entries[i].labels)))
            return &a->entries[i];
    return NULL;
}

/* A free entry; past the cap, the oldest resolved one is evicted. NULL when all are firing. */
static tc_alert_entry *tc_alerter_slot(tc_alerter *a)
{
    tc_alert_entry *oldest = NULL;

    for (size_t i = 0; i < a->opt.queue_max; i++) {
        tc_alert_entry *e = &a->entries[i];
        if (!e->id)
            return e;
        if (e->ends_us && (!oldest || e->ends_us < oldest->ends_us))
            oldest = e;
    }
    if (oldest) {
        a->stats.dropped_resolved++;
        tc_log_warn("alert",
                    "%zu alerts held: the resolution of %s (device \"%s\") is dropped "
                    "undelivered",
                    a->opt.queue_max, oldest->labels[TC_AL_NAME], oldest->labels[TC_AL_DEVICE]);
        memset(oldest, 0, sizeof(*oldest));
    }
    return oldest;
}

static tc_err tc_alerter_change(tc_alerter *a, const tc_alert *al, int resolve, char *errstr,
                                size_t errstr_size)
{
    char labels[TC_AL__COUNT][TC_ALERT_LABEL_MAX];
    char annotations[TC_AN__COUNT][TC_ALERT_TEXT_MAX];
    tc_alert_entry *e;
    int64_t now = tc_time_now_us();
    tc_err err;

    memset(labels, 0, sizeof(labels));
    memset(annotations, 0, sizeof(annotations));
    if ((err = tc_alert_take(a, al, labels, annotations, errstr, errstr_size)) != TC_OK)
        return err;
    pthread_mutex_lock(&a->lock);
    e = tc_alerter_find(a, labels);
    if (!e) {
        e = tc_alerter_slot(a);
        if (!e) {
            a->stats.dropped_firing++;
            pthread_mutex_unlock(&a->lock);
            return tc_err_set(
                TC_ERR_FULL, errstr, errstr_size,
                "alert %s refused: %zu alerts are firing already (alerting.queue_max)",
                labels[TC_AL_NAME], a->opt.queue_max);
        }
        e->id = ++a->next_id;
        memcpy(e->labels, labels, sizeof(labels));
        e->starts_us = now;
        e->ends_us = resolve ? now : 0;
        e->gen = 1;
        memcpy(e->annotations, annotations, sizeof(annotations));
    } else if (resolve) {
        if (!e->ends_us) {
            e->ends_us = now;
            e->gen++;
        }
    } else {
        if (e->ends_us) { /* resolved, then firing again: a new occurrence */
            e->starts_us = now;
            e->ends_us = 0;
            e->esc_us = 0;
            e->gen++;
        }
        if (memcmp(e->annotations, annotations, sizeof(annotations))) {
            memcpy(e->annotations, annotations, sizeof(annotations));
            e->gen++;
        }
    }
    if (resolve)
        a->stats.resolved++;
    else
        a->stats.fired++;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    return TC_OK;
}

tc_err tc_alerter_fire(tc_alerter *a, const tc_alert *al, char *errstr, size_t errstr_size)
{
    return tc_alerter_change(a, al, 0, errstr, errstr_size);
}

tc_err tc_alerter_resolve(tc_alerter *a, const tc_alert *al, char *errstr, size_t errstr_size)
{
    return tc_alerter_change(a, al, 1, errstr, errstr_size);
}

/* ---- delivery ---- */

/* When the entry's escalated copy starts, or 0 when it has none (yet). */
static int64_t tc_alerter_escalated_at(const tc_alerter *a, const tc_alert_entry *e, int64_t now)
{
    int64_t at;

    if (e->esc_us) /* sent once: it resolves with the alert, whatever the clocks say */
        return e->esc_us;
    if (a->opt.escalate_after_ms <= 0)
        return 0;
    at = e->starts_us + a->opt.escalate_after_ms * 1000;
    return at <= (e->ends_us ? e->ends_us : now) ? at : 0;
}

static int tc_alerter_due(const tc_alerter *a, const tc_alert_entry *e, size_t u, int64_t now)
{
    int64_t esc;

    if (!e->id)
        return 0;
    if (e->sent_gen[u] != e->gen)
        return 1;
    if (e->ends_us)
        return 0;
    if (now - e->sent_us[u] >= a->opt.resend_ms * 1000)
        return 1;
    esc = tc_alerter_escalated_at(a, e, now);
    return esc && e->sent_us[u] < esc;
}

static void tc_alerter_encode_one(tc_jbuf *b, const tc_alert_entry *e, int escalated,
                                  int64_t starts, int64_t ends)
{
    char ts[TC_TIME_RFC3339_MAX];

    tc_jbuf_obj_begin(b);
    tc_jbuf_key(b, "labels");
    tc_jbuf_obj_begin(b);
    for (int i = 0; i < TC_AL__COUNT; i++) {
        if (!e->labels[i][0])
            continue;
        tc_jbuf_key(b, tc_alert_label_names[i]);
        tc_jbuf_str(b, e->labels[i]);
    }
    if (escalated) {
        tc_jbuf_key(b, "escalated");
        tc_jbuf_str(b, "true");
    }
    tc_jbuf_obj_end(b);
    tc_jbuf_key(b, "annotations");
    tc_jbuf_obj_begin(b);
    for (int i = 0; i < TC_AN__COUNT; i++) {
        if (!e->annotations[i][0])
            continue;
        tc_jbuf_key(b, tc_alert_annotation_names[i]);
        tc_jbuf_str(b, e->annotations[i]);
    }
    tc_jbuf_obj_end(b);
    tc_time_format_rfc3339(starts, ts, sizeof(ts));
    tc_jbuf_key(b, "startsAt");
    tc_jbuf_str(b, ts);
    tc_time_format_rfc3339(ends, ts, sizeof(ts));
    tc_jbuf_key(b, "endsAt");
    tc_jbuf_str(b, ts);
    tc_jbuf_obj_end(b);
}

/* Encode the entries due for URL u into b (an array); their ids and generations go to ids/gens.
 * Returns how many. Called with the lock held. */
static size_t tc_alerter_encode_due(tc_alerter *a, size_t u, int64_t now, tc_jbuf *b, uint64_t *ids,
                                    uint64_t *gens)
{
    size_t n = 0;

    tc_jbuf_arr_begin(b);
    for (size_t i = 0; i < a->opt.queue_max && n < TC_ALERTER_POST_MAX; i++) {
        tc_alert_entry *e = &a->entries[i];
        /* Firing: open until four re-sends are missed (this process stopped, or cannot reach). */
        int64_t ends = e->ends_us ? e->ends_us : now + 4 * a->opt.resend_ms * 1000;
        int64_t esc;
        if (!tc_alerter_due(a, e, u, now))
            continue;
        tc_alerter_encode_one(b, e, 0, e->starts_us, ends);
        if ((esc = tc_alerter_escalated_at(a, e, now)) != 0) {
            tc_alerter_encode_one(b, e, 1, esc, ends);
            e->esc_us = esc;
        }
        ids[n] = e->id;
        gens[n++] = e->gen;
    }
    tc_jbuf_arr_end(b);
    return n;
}

static tc_err tc_alerter_http_send(void *opaque, size_t u, const char *body, size_t len,
                                   char *errstr, size_t errstr_size)
{
    tc_alerter *a = opaque;
    tc_http_reply reply;
    tc_err err;

    memset(&reply, 0, sizeof(reply));
    err = tc_http_fetch(&a->urls[u].url, "POST", "/api/v2/alerts", "application/json", body, len,
                        (int)a->opt.timeout_ms, TC_ALERTER_REPLY_MAX, &reply, errstr, errstr_size);
    if (err == TC_OK && (reply.status < 200 || reply.status > 299))
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "HTTP %d: %.200s", reply.status,
                         reply.body ? reply.body : "");
    tc_http_reply_free(&reply);
    return err;
}

/* Deliver what is due to URL u. Called with the lock held; drops it around the send. */
static void tc_alerter_deliver(tc_alerter *a, size_t u, int64_t now, uint64_t *ids, uint64_t *gens)
{
    tc_alerter_url *url = &a->urls[u];
    char errstr[512];
    tc_jbuf b;
    size_t n, len = 0;
    char *body;
    tc_err err;

    if (now < url->next_try_us)
        return;
    tc_jbuf_init(&b, TC_ALERTER_BODY_MAX);
    n = tc_alerter_encode_due(a, u, now, &b, ids, gens);
    body = tc_jbuf_take(&b, &len);
    tc_jbuf_free(&b);
    if (!n || !body) {
        free(body);
        return;
    }
    pthread_mutex_unlock(&a->lock);
    err = a->opt.send(a->opt.send_opaque ? a->opt.send_opaque : a, u, body, len, errstr,
                      sizeof(errstr));
    free(body);
    pthread_mutex_lock(&a->lock);
    if (err != TC_OK) {
        a->stats.posts_failed++;
        if (url->up || !url->backoff_ms) /* said once per outage, not every retry */
            tc_log_warn("alert", "Alertmanager %s: %zu alerts not delivered, retrying: %s",
                        url->text, n, errstr);
        url->up = 0;
        url->backoff_ms = url->backoff_ms ? url->backoff_ms * 2 : 1000;
        if (url->backoff_ms > TC_ALERTER_BACKOFF_MAX_MS)
            url->backoff_ms = TC_ALERTER_BACKOFF_MAX_MS;
        url->next_try_us = now + url->backoff_ms * 1000;
        return;
    }
    if (!url->up && url->backoff_ms)
        tc_log_info("alert", "Alertmanager %s: reachable again", url->text);
    a->stats.posts_ok++;
    url->up = 1;
    url->backoff_ms = 0;
    url->next_try_us = 0;
    for (size_t k = 0; k < n; k++) {
        for (size_t i = 0; i < a->opt.queue_max; i++) {
            tc_alert_entry *e = &a->entries[i];
            if (e->id != ids[k])
                continue;
            if (e->gen == gens[k]) {
                e->sent_gen[u] = gens[k];
                e->sent_us[u] = now;
            }
            break;
        }
    }
}

/* Forget resolved entries every URL has; count what is held. Called with the lock held. */
static void tc_alerter_sweep(tc_alerter *a)
{
    uint64_t firing = 0, held = 0;

    for (size_t i = 0; i < a->opt.queue_max; i++) {
        tc_alert_entry *e = &a->entries[i];
        size_t u;
        if (!e->id)
            continue;
        if (e->ends_us) {
            for (u = 0; u < a->nurls && e->sent_gen[u] == e->gen; u++)
                ;
            if (u == a->nurls) {
                memset(e, 0, sizeof(*e));
                continue;
            }
        } else {
            firing++;
        }
        held++;
    }
    a->stats.firing = firing;
    a->stats.held = held;
}

static void tc_alerter_round(tc_alerter *a, int64_t now)
{
    uint64_t ids[TC_ALERTER_POST_MAX], gens[TC_ALERTER_POST_MAX];

    for (size_t u = 0; u < a->nurls && !a->stop; u++)
        tc_alerter_deliver(a, u, now, ids, gens);
    tc_alerter_sweep(a);
    pthread_cond_broadcast(&a->idle);
}

void tc_alerter_run_once(tc_alerter *a, int64_t now_us)
{
    pthread_mutex_lock(&a->lock);
    tc_alerter_round(a, now_us);
    pthread_mutex_unlock(&a->lock);
}

static void *tc_alerter_main(void *arg)
{
    tc_alerter *a = arg;

    pthread_mutex_lock(&a->lock);
    while (!a->stop) {
        struct timespec ts;
        uint64_t cpu = tc_time_thread_cpu_ns();
        tc_alerter_round(a, tc_time_now_us());
        a->cpu_ns += tc_time_thread_cpu_since(cpu);
        if (a->stop)
            break;
        ts = tc_time_deadline(TC_ALERTER_TICK_MS);
        pthread_cond_timedwait(&a->wake, &a->lock, &ts);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* URLs still behind on what is due at now. Called with the lock held. */
static size_t tc_alerter_behind(const tc_alerter *a, int64_t now)
{
    size_t behind = 0;

    for (size_t u = 0; u < a->nurls; u++)
        for (size_t i = 0; i < a->opt.queue_max; i++)
            if (tc_alerter_due(a, &a->entries[i], u, now)) {
                behind++;
                break;
            }
    return behind;
}

size_t tc_alerter_flush(tc_alerter *a, int timeout_ms)
{
    int64_t deadline = tc_time_now_us() + (int64_t)timeout_ms * 1000;
    size_t behind;

    pthread_mutex_lock(&a->lock);
    for (;;) {
        int64_t now = tc_time_now_us();
        behind = tc_alerter_behind(a, now);
        if (!behind || now >= deadline)
            break;
        if (!a->thread_started) {
            tc_alerter_round(a, now);
            if (tc_alerter_behind(a, now))
                tc_time_sleep_ms(100); /* manual mode: a failed URL's back-off */
            pthread_mutex_unlock(&a->lock);
            pthread_mutex_lock(&a->lock);
        } else {
            struct timespec ts = tc_time_deadline(100);
            pthread_cond_signal(&a->wake);
            pthread_cond_timedwait(&a->idle, &a->lock, &ts);
        }
    }
    pthread_mutex_unlock(&a->lock);
    return behind;
}

void tc_alerter_get_stats(tc_alerter *a, tc_alerter_stats *out)
{
    pthread_mutex_lock(&a->lock);
    *out = a->stats;
    for (size_t u = 0; u < a->nurls; u++)
        out->urls_up[u] = (uint64_t)a->urls[u].up;
    out->nurls = a->nurls;
    pthread_mutex_unlock(&a->lock);
}

/* ---- lifetime ---- */

static tc_err tc_alerter_parse_urls(tc_alerter *a, const char *urls, char *errstr,
                                    size_t errstr_size)
{
    const char *p = urls ? urls : "";

    while (*p) {
        size_t n = strcspn(p, ",");
        const char *start = p;
        tc_alerter_url *u;
        while (n && (*start == ' ')) {
            start++;
            n--;
        }
        while (n && start[n - 1] == ' ')
            n--;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
        if (!n)
            continue;
        if (a->nurls == TC_ALERTER_URLS_MAX)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "alerting.alertmanager_urls: more than %d URLs", TC_ALERTER_URLS_MAX);
        u = &a->urls[a->nurls];
        if (n >= sizeof(u->text))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "alerting.alertmanager_urls: URL %zu is too long", a->nurls + 1);
        memcpy(u->text, start, n);
        u->text[n] = '\0';
        if (tc_http_url_parse(u->text, &u->url) != 0)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "alerting.alertmanager_urls: \"%s\" is not an http://host[:port] URL",
                              u->text);
        u->up = 1; /* until a POST fails */
        a->nurls++;
    }
    if (!a->nurls)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "alerting.alertmanager_urls is empty: no Alertmanager to send to");
    return TC_OK;
}

tc_alerter *tc_alerter_new(const tc_alerter_options *opt, char *errstr, size_t errstr_size)
{
    tc_alerter *a = calloc(1, sizeof(*a));

    if (!a) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    a->opt = *opt;
    a->opt.urls = NULL; /* parsed below; the caller's string is not kept */
    if (!a->opt.queue_max || a->opt.resend_ms < 1 || a->opt.timeout_ms < 1) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "alerting: queue_max, resend and timeout must be positive");
        free(a);
        return NULL;
    }
    if (opt->site && strlen(opt->site) >= sizeof(a->site)) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "alerting.site is longer than %zu bytes",
                   sizeof(a->site) - 1);
        free(a);
        return NULL;
    }
    snprintf(a->site, sizeof(a->site), "%s", opt->site ? opt->site : "");
    if (!a->opt.send) {
        a->opt.send = tc_alerter_http_send;
        a->opt.send_opaque = a;
    }
    if (tc_alerter_parse_urls(a, opt->urls, errstr, errstr_size) != TC_OK) {
        free(a);
        return NULL;
    }
    a->entries = calloc(a->opt.queue_max, sizeof(*a->entries));
    if (!a->entries) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory for %zu alerts",
                   a->opt.queue_max);
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->wake, NULL);
    pthread_cond_init(&a->idle, NULL);
    if (!opt->manual) {
        if (pthread_create(&a->thread, NULL, tc_alerter_main, a) != 0) {
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "cannot start the alerting thread");
            tc_alerter_destroy(a);
            return NULL;
        }
        a->thread_started = 1;
    }
    return a;
}

void tc_alerter_destroy(tc_alerter *a)
{
    if (!a)
        return;
    if (a->thread_started) {
        pthread_mutex_lock(&a->lock);
        a->stop = 1;
        pthread_cond_signal(&a->wake);
        pthread_mutex_unlock(&a->lock);
        pthread_join(a->thread, NULL);
    }
    pthread_cond_destroy(&a->idle);
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->lock);
    free(a->entries);
    free(a);
}

tc_alerter *tc_alerter_new_from_config(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    tc_alerter_options opt;

    memset(&opt, 0, sizeof(opt));
    opt.urls = cfg->alerting_alertmanager_urls;
    opt.queue_max = (size_t)cfg->alerting_queue_max;
    opt.resend_ms = cfg->alerting_resend_s * 1000;
    opt.timeout_ms = cfg->alerting_timeout_ms;
    opt.escalate_after_ms = cfg->alerting_escalate_after_s * 1000;
    opt.site = cfg->alerting_site;
    return tc_alerter_new(&opt, errstr, errstr_size);
}

uint64_t tc_alerter_cpu_ns(tc_alerter *a)
{
    uint64_t ns;

    if (!a)
        return 0;
    pthread_mutex_lock(&a->lock);
    ns = a->cpu_ns;
    pthread_mutex_unlock(&a->lock);
    return ns;
}
