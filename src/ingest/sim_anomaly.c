/*
 * sim_anomaly.c -- labelled anomalies for the simulator; see sim_anomaly.h.
 *
 * The delivery stream walks the readings in their natural order (device-major within a step) and
 * holds back the late and out-of-order ones in a binary min-heap keyed by the index after which
 * each is due, so one pass produces the order a real fleet with buffering devices would.
 */
#include "ingest/sim_anomaly.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/timeutil.h"
#include "ingest/simulator.h"

/* Readings left normal at each end of an epoch, so detectors see a baseline around an episode. */
#define TC_SIM_MARGIN (TC_SIM_EPOCH / 6)
/* Readings around an episode without spikes. */
#define TC_SIM_SPIKE_GUARD 10
/* Longest SPEC. */
#define TC_SIM_SPEC_MAX 512

static const char *const tc_sim_anomaly_names[TC_SIM_A__COUNT] = {"spike",  "drift", "stuck",
                                                                  "silent", "late",  "ooo"};
/* Episode lengths in readings (spike: one). */
static const int64_t tc_sim_len_min[TC_SIM_A__COUNT] = {1, 60, 20, 12, 6, 4};
static const int64_t tc_sim_len_max[TC_SIM_A__COUNT] = {1, 180, 60, 48, 24, 16};
/* Half-width of each smooth metric's noise (simulator.c): the unit of magnitudes. */
static const double tc_sim_noise_hw[3] = {0.2, 1.0, 0.3};
static const char *const tc_sim_metric_names[3] = {"temperature", "humidity", "pressure"};

const char *tc_sim_anomaly_name(int kind)
{
    return kind >= 0 && kind < TC_SIM_A__COUNT ? tc_sim_anomaly_names[kind] : NULL;
}

/* Episodes per epoch of kind k for a share of readings. */
static double tc_sim_per_epoch(const tc_sim_anomalies *a, int k)
{
    return a->share[k] * TC_SIM_EPOCH * 2.0 / (double)(tc_sim_len_min[k] + tc_sim_len_max[k]);
}

tc_err tc_sim_anomalies_parse(const char *spec, tc_sim_anomalies *a, char *errstr,
                              size_t errstr_size)
{
    char copy[TC_SIM_SPEC_MAX], *save = NULL;
    double per_epoch = 0;

    memset(a, 0, sizeof(*a));
    if (strlen(spec) >= sizeof(copy))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "--anomalies: longer than %d bytes",
                          TC_SIM_SPEC_MAX - 1);
    strcpy(copy, spec);
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *end = NULL;
        int k;
        double v;

        if (!eq)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "--anomalies: \"%s\" is not KIND=SHARE", item);
        *eq = '\0';
        for (k = 0; k < TC_SIM_A__COUNT && strcmp(item, tc_sim_anomaly_names[k]); k++)
            ;
        if (k == TC_SIM_A__COUNT)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "--anomalies: unknown kind \"%s\" (spike, drift, stuck, silent, "
                              "late, ooo)",
                              item);
        v = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || !(v >= 0 && v <= 1))
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "--anomalies: %s=%s is not a share between 0 and 1", item, eq + 1);
        a->share[k] = v;
    }
    for (int k = TC_SIM_A_DRIFT; k < TC_SIM_A__COUNT; k++)
        per_epoch += tc_sim_per_epoch(a, k);
    if (per_epoch > 1.0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "--anomalies: the episodes' shares ask for %.2f episodes per device and "
                          "%d readings; at most one fits",
                          per_epoch, TC_SIM_EPOCH);
    if (a->share[TC_SIM_A_SPIKE] > 0.2)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "--anomalies: spike=%g: at most 0.2 (spikes need normal readings "
                          "around them)",
                          a->share[TC_SIM_A_SPIKE]);
    return TC_OK;
}

static double tc_sim_sign(double u)
{
    return u < 0.5 ? -1.0 : 1.0;
}

int tc_sim_episode_of(const tc_sim_anomalies *a, uint64_t seed, uint64_t dev, int64_t epoch,
                      int64_t steps, tc_sim_episode *ep)
{
    double u = tc_sim_unit(seed, dev, (uint64_t)epoch, 20), acc = 0;
    int64_t len, room;
    int k;

    for (k = TC_SIM_A_DRIFT; k < TC_SIM_A__COUNT; k++) {
        acc += tc_sim_per_epoch(a, k);
        if (u < acc)
            break;
    }
    if (k == TC_SIM_A__COUNT || epoch < 1)
        return 0;
    memset(ep, 0, sizeof(*ep));
    ep->kind = (tc_sim_akind)k;
    len = tc_sim_len_min[k] + (int64_t)(tc_sim_unit(seed, dev, (uint64_t)epoch, 21) *
                                        (double)(tc_sim_len_max[k] - tc_sim_len_min[k] + 1));
    room = TC_SIM_EPOCH - 2 * TC_SIM_MARGIN - len + 1;
    ep->first = epoch * TC_SIM_EPOCH + TC_SIM_MARGIN +
                (int64_t)(tc_sim_unit(seed, dev, (uint64_t)epoch, 22) * (double)room);
    ep->last = ep->first + len - 1;
    if (ep->last >= steps)
        return 0;
    ep->metric = k == TC_SIM_A_DRIFT || k == TC_SIM_A_STUCK
                     ? (int)(tc_sim_unit(seed, dev, (uint64_t)epoch, 23) * 3)
                     : -1;
    if (k == TC_SIM_A_DRIFT)
        ep->magnitude = (15.0 + 15.0 * tc_sim_unit(seed, dev, (uint64_t)epoch, 24)) *
                        tc_sim_noise_hw[ep->metric] *
                        tc_sim_sign(tc_sim_unit(seed, dev, (uint64_t)epoch, 25));
    if (k == TC_SIM_A_LATE)
        ep->delay = 12 + (int64_t)(tc_sim_unit(seed, dev, (uint64_t)epoch, 26) * 25);
    return 1;
}

/* The episode covering (dev, step), if any. */
static int tc_sim_episode_at(const tc_sim_anomalies *a, uint64_t seed, uint64_t dev, int64_t step,
                             int64_t steps, tc_sim_episode *ep)
{
    return tc_sim_episode_of(a, seed, dev, step / TC_SIM_EPOCH, steps, ep) && step >= ep->first &&
           step <= ep->last;
}

int tc_sim_spike_at(const tc_sim_anomalies *a, uint64_t seed, uint64_t dev, int64_t step,
                    int64_t steps, tc_sim_episode *ep)
{
    tc_sim_episode e;

    if (a->share[TC_SIM_A_SPIKE] <= 0 || step < TC_SIM_EPOCH || step >= steps ||
        tc_sim_unit(seed, dev, (uint64_t)step, 27) >= a->share[TC_SIM_A_SPIKE])
        return 0;
    if (tc_sim_episode_of(a, seed, dev, step / TC_SIM_EPOCH, steps, &e) &&
        step >= e.first - TC_SIM_SPIKE_GUARD && step <= e.last + TC_SIM_SPIKE_GUARD)
        return 0;
    memset(ep, 0, sizeof(*ep));
    ep->kind = TC_SIM_A_SPIKE;
    ep->metric = (int)(tc_sim_unit(seed, dev, (uint64_t)step, 28) * 3);
    ep->first = ep->last = step;
    ep->magnitude = (10.0 + 20.0 * tc_sim_unit(seed, dev, (uint64_t)step, 29)) *
                    tc_sim_noise_hw[ep->metric] *
                    tc_sim_sign(tc_sim_unit(seed, dev, (uint64_t)step, 30));
    return 1;
}

/* Humidity is bounded (0..100): an offset that would leave it points the other way, decided on
 * the episode's first value so a ramp never changes direction. */
static double tc_sim_bounded(int metric, double first_value, double magnitude)
{
    double v = first_value + magnitude;

    return metric == 1 && (v < 2.0 || v > 98.0) ? -magnitude : magnitude;
}

void tc_sim_anomaly_apply(const tc_sim_anomalies *a, uint64_t seed, uint64_t dev, int64_t step,
                          int64_t steps, tc_sim_base_fn base, const void *ctx, double v[3])
{
    tc_sim_episode ep;
    double first[3];

    if (tc_sim_spike_at(a, seed, dev, step, steps, &ep)) {
        v[ep.metric] += tc_sim_bounded(ep.metric, v[ep.metric], ep.magnitude);
        return;
    }
    if (!tc_sim_episode_at(a, seed, dev, step, steps, &ep) || ep.metric < 0)
        return;
    base(ctx, ep.first, first);
    if (ep.kind == TC_SIM_A_STUCK)
        v[ep.metric] = first[ep.metric];
    else
        v[ep.metric] += tc_sim_bounded(ep.metric, first[ep.metric], ep.magnitude) *
                        (double)(step - ep.first + 1) / (double)(ep.last - ep.first + 1);
}

int tc_sim_truth_at(const tc_sim_anomalies *a, uint64_t seed, uint64_t dev, int64_t step,
                    int64_t steps, tc_sim_episode out[2])
{
    int n = 0;

    if (tc_sim_episode_of(a, seed, dev, step / TC_SIM_EPOCH, steps, &out[n]) &&
        out[n].first == step)
        n++;
    if (tc_sim_spike_at(a, seed, dev, step, steps, &out[n]))
        n++;
    return n;
}

void tc_sim_truth_write(FILE *f, const char *device, const tc_sim_episode *ep, int64_t first_us,
                        int64_t last_us)
{
    char a[40], b[40];

    tc_time_format_rfc3339(first_us, a, sizeof(a));
    tc_time_format_rfc3339(last_us, b, sizeof(b));
    fprintf(f, "{\"device\":\"%s\",\"metric\":", device);
    if (ep->metric >= 0)
        fprintf(f, "\"%s\"", tc_sim_metric_names[ep->metric]);
    else
        fputs("null", f);
    fprintf(f,
            ",\"kind\":\"%s\",\"start\":\"%s\",\"end\":\"%s\",\"start_us\":%lld,\"end_us\":%lld}\n",
            tc_sim_anomaly_names[ep->kind], a, b, (long long)first_us, (long long)last_us);
}

/* ---- delivery order ---- */

typedef struct tc_sim_held {
    uint64_t due; /* sent once the reading with this index has been */
    uint64_t i;
} tc_sim_held;

struct tc_sim_stream {
    tc_sim_anomalies a;
    uint64_t seed, count, cursor;
    int devices;
    int64_t steps;
    tc_sim_held *heap;
    size_t n, cap;
};

tc_sim_stream *tc_sim_stream_new(const tc_sim_anomalies *a, uint64_t seed, int devices,
                                 uint64_t count)
{
    tc_sim_stream *s;

    if (devices <= 0)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (a)
        s->a = *a;
    s->seed = seed;
    s->devices = devices;
    s->count = count;
    s->steps = (int64_t)((count + (uint64_t)devices - 1) / (uint64_t)devices);
    return s;
}

void tc_sim_stream_destroy(tc_sim_stream *s)
{
    if (s) {
        free(s->heap);
        free(s);
    }
}

static int tc_sim_less(const tc_sim_held *x, const tc_sim_held *y)
{
    return x->due < y->due || (x->due == y->due && x->i < y->i);
}

/* Hold reading i until due; 0 when the heap is full (the caller sends it now). */
static int tc_sim_hold(tc_sim_stream *s, uint64_t due, uint64_t i)
{
    size_t k;

    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        tc_sim_held *h = cap <= TC_SIM_HELD_MAX ? realloc(s->heap, cap * sizeof(*h)) : NULL;
        if (!h)
            return 0;
        s->heap = h;
        s->cap = cap;
    }
    k = s->n++;
    s->heap[k] = (tc_sim_held){due, i};
    while (k > 0 && tc_sim_less(&s->heap[k], &s->heap[(k - 1) / 2])) {
        tc_sim_held t = s->heap[k];
        s->heap[k] = s->heap[(k - 1) / 2];
        s->heap[(k - 1) / 2] = t;
        k = (k - 1) / 2;
    }
    return 1;
}

static uint64_t tc_sim_pop(tc_sim_stream *s)
{
    uint64_t i = s->heap[0].i;
    size_t k = 0;

    s->heap[0] = s->heap[--s->n];
    for (;;) {
        size_t l = 2 * k + 1, r = l + 1, m = k;
        if (l < s->n && tc_sim_less(&s->heap[l], &s->heap[m]))
            m = l;
        if (r < s->n && tc_sim_less(&s->heap[r], &s->heap[m]))
            m = r;
        if (m == k)
            break;
        tc_sim_held t = s->heap[k];
        s->heap[k] = s->heap[m];
        s->heap[m] = t;
        k = m;
    }
    return i;
}

int tc_sim_stream_next(tc_sim_stream *s, uint64_t *i)
{
    for (;;) {
        uint64_t c, dev;
        int64_t step;
        tc_sim_episode ep;

        if (s->n && (s->heap[0].due < s->cursor || s->cursor >= s->count)) {
            *i = tc_sim_pop(s);
            return 1;
        }
        if (s->cursor >= s->count)
            return 0;
        c = s->cursor++;
        dev = c % (uint64_t)s->devices;
        step = (int64_t)(c / (uint64_t)s->devices);
        if (!tc_sim_episode_at(&s->a, s->seed, dev, step, s->steps, &ep)) {
            *i = c;
            return 1;
        }
        if (ep.kind == TC_SIM_A_SILENT)
            continue;
        if (ep.kind == TC_SIM_A_LATE &&
            tc_sim_hold(s, (uint64_t)(ep.last + ep.delay) * (uint64_t)s->devices + dev, c))
            continue;
        if (ep.kind == TC_SIM_A_OOO && (step - ep.first) % 2 == 0 && step < ep.last &&
            tc_sim_hold(s, c + (uint64_t)s->devices, c))
            continue;
        *i = c;
        return 1;
    }
}
