/*
 * test_alert.c -- the Alertmanager client's held set and its JSON, without a network.
 *
 * The alerter runs in manual mode with a fake sender that records every POST body (and can be
 * told to fail), and delivery rounds are driven with explicit times. Bodies are parsed back with
 * the JSON parser and checked field by field against Alertmanager's v2 postableAlerts shape.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "alert/alert.h"
#include "core/json.h"
#include "core/timeutil.h"

#define POSTS_MAX 64

typedef struct fake {
    char *body[POSTS_MAX];
    size_t url[POSTS_MAX];
    size_t n;
    int fail[TC_ALERTER_URLS_MAX]; /* nonzero: that URL refuses */
} fake;

static tc_err fake_send(void *opaque, size_t url, const char *body, size_t len, char *errstr,
                        size_t errstr_size)
{
    fake *f = opaque;

    if (f->fail[url])
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "refused by the test");
    assert_true(f->n < POSTS_MAX);
    f->body[f->n] = strndup(body, len);
    f->url[f->n++] = url;
    return TC_OK;
}

static void fake_clear(fake *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->body[i]);
    f->n = 0;
}

static tc_alerter *new_alerter(fake *f, const char *urls, size_t queue_max, int64_t escalate_ms)
{
    char errstr[256];
    tc_alerter_options opt = {.urls = urls,
                              .queue_max = queue_max,
                              .resend_ms = 60000,
                              .timeout_ms = 1000,
                              .escalate_after_ms = escalate_ms,
                              .site = "plant-7",
                              .send = fake_send,
                              .send_opaque = f,
                              .manual = 1};
    tc_alerter *a = tc_alerter_new(&opt, errstr, sizeof(errstr));

    assert_non_null(a);
    return a;
}

static tc_alert sensor_alert(const char *device)
{
    tc_alert al = {.name = "StuckSensor",
                   .severity = "warning",
                   .device_id = device,
                   .metric = "temperature",
                   .detector = "stuck",
                   .summary = "temperature of a device has not changed",
                   .description = "the same value \"21.5\" for 10 minutes",
                   .runbook_url = "docs/operations.md#stuck-sensor"};
    return al;
}

static tc_json_doc *parse(const char *body)
{
    char errstr[256];
    tc_json_doc *d = tc_json_parse(body, strlen(body), NULL, NULL, errstr, sizeof(errstr));

    assert_non_null(d);
    assert_int_equal(tc_json_root(d)->type, TC_JSON_ARRAY);
    return d;
}

static const char *field(const tc_json *alert, const char *obj, const char *key)
{
    const tc_json *o = obj ? tc_json_get(alert, obj) : alert;
    return o ? tc_json_string(tc_json_get(o, key)) : NULL;
}

static int64_t ts(const tc_json *alert, const char *key)
{
    const char *s = field(alert, NULL, key);
    int64_t us = 0;

    assert_non_null(s);
    assert_int_equal(tc_time_parse_rfc3339(s, strlen(s), &us), TC_OK);
    return us;
}

static void test_fire_encodes_labels_and_annotations(void **state)
{
    fake f = {0};
    tc_alerter *a = new_alerter(&f, "http://127.0.0.1:9093", 16, 0);
    tc_alert al = sensor_alert("dev-1");
    char errstr[256];
    int64_t now;
    tc_json_doc *d;
    const tc_json *x;

    (void)state;
    assert_int_equal(tc_alerter_fire(a, &al, errstr, sizeof(errstr)), TC_OK);
    now = tc_time_now_us();
    tc_alerter_run_once(a, now);
    assert_int_equal(f.n, 1);
    d = parse(f.body[0]);
    assert_int_equal(tc_json_root(d)->len, 1);
    x = tc_json_root(d)->u.items[0];
    assert_string_equal(field(x, "labels", "alertname"), "StuckSensor");
    assert_string_equal(field(x, "labels", "severity"), "warning");
    assert_string_equal(field(x, "labels", "device_id"), "dev-1");
    assert_string_equal(field(x, "labels", "metric"), "temperature");
    assert_string_equal(field(x, "labels", "detector"), "stuck");
    assert_string_equal(field(x, "labels", "site"), "plant-7");
    assert_null(field(x, "labels", "rule"));            /* absent, not "" */
    assert_int_equal(tc_json_get(x, "labels")->len, 6); /* and nothing else */
    assert_string_equal(field(x, "annotations", "description"),
                        "the same value \"21.5\" for 10 minutes");
    assert_string_equal(field(x, "annotations", "runbook_url"), "docs/operations.md#stuck-sensor");
    /* Firing: open for four re-send intervals from now. */
    assert_true(ts(x, "startsAt") <= now);
    assert_int_equal(ts(x, "endsAt"), now + 4 * 60000 * 1000LL);
    tc_json_free(d);
    fake_clear(&f);
    tc_alerter_destroy(a);
}

static void test_resent_only_when_due_and_resolved_once(void **state)
{
    fake f = {0};
    tc_alerter *a = new_alerter(&f, "http://127.0.0.1:9093", 16, 0);
    tc_alert al = sensor_alert("dev-2");
    tc_alerter_stats st;
    char errstr[256];
    int64_t now = tc_time_now_us();
    tc_json_doc *d;
    int64_t ends;

    (void)state;
    assert_int_equal(tc_alerter_fire(a, &al, errstr, sizeof(errstr)), TC_OK);
    tc_alerter_run_once(a, now);
    tc_alerter_run_once(a, now + 1000000); /* nothing changed, not due yet */
    assert_int_equal(f.n, 1);
    assert_int_equal(tc_alerter_fire(a, &al, errstr, sizeof(errstr)), TC_OK); /* same: no-op */
    tc_alerter_run_once(a, now + 2000000);
    assert_int_equal(f.n, 1);
    tc_alerter_run_once(a, now + 60000000); /* resend interval */
    assert_int_equal(f.n, 2);
    assert_int_equal(tc_alerter_resolve(a, &al, errstr, sizeof(errstr)), TC_OK);
    tc_alerter_run_once(a, now + 61000000);
    assert_int_equal(f.n, 3);
    d = parse(f.body[2]);
    ends = ts(tc_json_root(d)->u.items[0], "endsAt");
    assert_true(ends <= tc_time_now_us()); /* resolved: endsAt is when, not ahead */
    tc_json_free(d);
    tc_alerter_run_once(a, now + 200000000); /* delivered: forgotten, never sent again */
    assert_int_equal(f.n, 3);
    tc_alerter_get_stats(a, &st);
    assert_int_equal(st.held, 0);
    assert_int_equal(st.posts_ok, 3);
    fake_clear(&f);
    tc_alerter_destroy(a);
}

static void test_every_url_gets_it_and_a_failing_one_catches_up(void **state)
{
    fake f = {0};
    tc_alerter *a = new_alerter(&f, "http://127.0.0.1:9093, http://127.0.0.1:9094", 16, 0);
    tc_alert al = sensor_alert("dev-3");
    tc_alerter_stats st;
    char errstr[256];
    int64_t now = tc_time_now_us();

    (void)state;
    f.fail[1] = 1;
    assert_int_equal(tc_alerter_fire(a, &al, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_alerter_resolve(a, &al, errstr, sizeof(errstr)), TC_OK);
    tc_alerter_run_once(a, now);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.url[0], 0);
    tc_alerter_get_stats(a, &st);
    assert_int_equal(st.held, 1); /* the second URL still needs the resolution */
    assert_int_equal(st.posts_failed, 1);
    assert_int_equal(st.urls_up[1], 0);
    f.fail[1] = 0;
    tc_alerter_run_once(a, now + 500000); /* inside the back-off: not tried */
    assert_int_equal(f.n, 1);
    tc_alerter_run_once(a, now + 1000000);
    assert_int_equal(f.n, 2);
    assert_int_equal(f.url[1], 1);
    assert_non_null(strstr(f.body[1], "\"dev-3\""));
    tc_alerter_get_stats(a, &st);
    assert_int_equal(st.held, 0);
    assert_int_equal(st.urls_up[1], 1);
    fake_clear(&f);
    tc_alerter_destroy(a);
}

static void test_full_drops_oldest_resolved_then_refuses(void **state)
{
    fake f = {0};
    tc_alerter *a = new_alerter(&f, "http://127.0.0.1:9093", 2, 0);
    tc_alert a1 = sensor_alert("dev-a"), a2 = sensor_alert("dev-b"), a3 = sensor_alert("dev-c");
    tc_alert a4 = sensor_alert("dev-d");
    tc_alerter_stats st;
    char errstr[256];

    (void)state;
    f.fail[0] = 1; /* nothing leaves: everything stays held */
    assert_int_equal(tc_alerter_fire(a, &a1, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_alerter_resolve(a, &a1, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_alerter_fire(a, &a2, errstr, sizeof(errstr)), TC_OK);
    /* Full: dev-a's undelivered resolution makes room. */
    assert_int_equal(tc_alerter_fire(a, &a3, errstr, sizeof(errstr)), TC_OK);
    /* Full of firing alerts: refused, with the setting named. */
    assert_int_equal(tc_alerter_fire(a, &a4, errstr, sizeof(errstr)), TC_ERR_FULL);
    assert_non_null(strstr(errstr, "alerting.queue_max"));
    tc_alerter_get_stats(a, &st);
    assert_int_equal(st.dropped_resolved, 1);
    assert_int_equal(st.dropped_firing, 1);
    f.fail[0] = 0;
    tc_alerter_run_once(a, tc_time_now_us() + 10000000);
    assert_int_equal(f.n, 1);
    assert_null(strstr(f.body[0], "dev-a"));
    assert_non_null(strstr(f.body[0], "dev-b"));
    assert_non_null(strstr(f.body[0], "dev-c"));
    assert_null(strstr(f.body[0], "dev-d"));
    fake_clear(&f);
    tc_alerter_destroy(a);
}

static void test_escalated_copy_after_the_delay(void **state)
{
    fake f = {0};
    tc_alerter *a = new_alerter(&f, "http://127.0.0.1:9093", 16, 5000);
    tc_alert al = sensor_alert("dev-e");
    char errstr[256];
    int64_t now = tc_time_now_us();
    tc_json_doc *d;
    const tc_json *root;

    (void)state;
    assert_int_equal(tc_alerter_fire(a, &al, errstr, sizeof(errstr)), TC_OK);
    tc_alerter_run_once(a, now);
    assert_null(strstr(f.body[0], "escalated"));
    tc_alerter_run_once(a, now + 6000000); /* past escalate_after: due at once, not at resend */
    assert_int_equal(f.n, 2);
    d = parse(f.body[1]);
    root = tc_json_root(d);
    assert_int_equal(root->len, 2);
    assert_null(field(root->u.items[0], "labels", "escalated"));
    assert_string_equal(field(root->u.items[1], "labels", "escalated"), "true");
    assert_string_equal(field(root->u.items[1], "labels", "device_id"), "dev-e");
    tc_json_free(d);
    /* Resolved: both copies resolve (the copy was sent, whatever the clocks say). */
    assert_int_equal(tc_alerter_resolve(a, &al, errstr, sizeof(errstr)), TC_OK);
    tc_alerter_run_once(a, now + 7000000);
    d = parse(f.body[2]);
    assert_int_equal(tc_json_root(d)->len, 2);
    tc_json_free(d);
    fake_clear(&f);
    tc_alerter_destroy(a);
}

static void test_bad_alerts_and_urls_are_refused(void **state)
{
    fake f = {0};
    tc_alerter *a = new_alerter(&f, "http://127.0.0.1:9093", 4, 0);
    tc_alert al = sensor_alert("dev-f");
    char long_label[TC_ALERT_LABEL_MAX + 1];
    char errstr[256];
    tc_alerter_options opt = {
        .urls = "ftp://x", .queue_max = 1, .resend_ms = 1, .timeout_ms = 1, .manual = 1};

    (void)state;
    al.name = "Bad Name";
    assert_int_equal(tc_alerter_fire(a, &al, errstr, sizeof(errstr)), TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "Bad Name"));
    al = sensor_alert("dev-f");
    al.severity = "page";
    assert_int_equal(tc_alerter_fire(a, &al, errstr, sizeof(errstr)), TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "severity"));
    memset(long_label, 'x', sizeof(long_label) - 1);
    long_label[sizeof(long_label) - 1] = '\0';
    al = sensor_alert(long_label);
    assert_int_equal(tc_alerter_fire(a, &al, errstr, sizeof(errstr)), TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "device_id"));
    tc_alerter_destroy(a);
    assert_null(tc_alerter_new(&opt, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "ftp://x"));
    opt.urls = " , ";
    assert_null(tc_alerter_new(&opt, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "empty"));
}

static void test_a_resolve_of_an_unknown_alert_is_sent(void **state)
{
    fake f = {0};
    tc_alerter *a = new_alerter(&f, "http://127.0.0.1:9093", 4, 0);
    tc_alert al = sensor_alert("dev-g");
    char errstr[256];

    (void)state;
    assert_int_equal(tc_alerter_resolve(a, &al, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_alerter_flush(a, 1000), 0);
    assert_int_equal(f.n, 1);
    assert_non_null(strstr(f.body[0], "\"dev-g\""));
    fake_clear(&f);
    tc_alerter_destroy(a);
}

/* A sender whose first POST is stuck (an Alertmanager that accepts and never answers) for up to
 * 10 s; later ones fail at once. */
typedef struct stuck {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int in_send, released, sends;
} stuck;

static tc_err stuck_send(void *opaque, size_t url, const char *body, size_t len, char *errstr,
                         size_t errstr_size)
{
    stuck *st = opaque;
    struct timespec until = tc_time_deadline(10000);

    (void)url;
    (void)body;
    (void)len;
    pthread_mutex_lock(&st->lock);
    st->in_send = 1;
    st->sends++;
    pthread_cond_broadcast(&st->cond);
    while (st->sends == 1 && !st->released &&
           pthread_cond_timedwait(&st->cond, &st->lock, &until) == 0)
        ;
    st->in_send = 0;
    pthread_mutex_unlock(&st->lock);
    return tc_err_set(TC_ERR_TIMEOUT, errstr, errstr_size, "no answer");
}

static void test_fire_never_waits_for_a_post_under_way(void **state)
{
    stuck st = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    tc_alerter_options opt = {.urls = "http://127.0.0.1:9093",
                              .queue_max = 256,
                              .resend_ms = 60000,
                              .timeout_ms = 10000,
                              .send = stuck_send,
                              .send_opaque = &st};
    tc_alerter *a;
    char errstr[256], dev[32];
    struct timespec until = tc_time_deadline(30000);
    tc_alert al = sensor_alert("dev-0");
    int still_in_send;

    (void)state;
    a = tc_alerter_new(&opt, errstr, sizeof(errstr));
    assert_non_null(a);
    assert_int_equal(tc_alerter_fire(a, &al, errstr, sizeof(errstr)), TC_OK);
    pthread_mutex_lock(&st.lock);
    while (!st.in_send && pthread_cond_timedwait(&st.cond, &st.lock, &until) == 0)
        ;
    assert_true(st.in_send);
    pthread_mutex_unlock(&st.lock);
    /* The thread is inside the POST: firing and resolving go on regardless. */
    for (int i = 1; i < 200; i++) {
        snprintf(dev, sizeof(dev), "dev-%d", i);
        al = sensor_alert(dev);
        assert_int_equal(tc_alerter_fire(a, &al, errstr, sizeof(errstr)), TC_OK);
        assert_int_equal(tc_alerter_resolve(a, &al, errstr, sizeof(errstr)), TC_OK);
    }
    pthread_mutex_lock(&st.lock);
    still_in_send = st.in_send && st.sends == 1;
    st.released = 1;
    pthread_cond_broadcast(&st.cond);
    pthread_mutex_unlock(&st.lock);
    assert_true(still_in_send); /* all of the above happened during the one stuck POST */
    tc_alerter_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fire_encodes_labels_and_annotations),
        cmocka_unit_test(test_resent_only_when_due_and_resolved_once),
        cmocka_unit_test(test_every_url_gets_it_and_a_failing_one_catches_up),
        cmocka_unit_test(test_full_drops_oldest_resolved_then_refuses),
        cmocka_unit_test(test_escalated_copy_after_the_delay),
        cmocka_unit_test(test_bad_alerts_and_urls_are_refused),
        cmocka_unit_test(test_a_resolve_of_an_unknown_alert_is_sent),
        cmocka_unit_test(test_fire_never_waits_for_a_post_under_way),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
