/*
 * simulator.c -- the device fleet simulator; see simulator.h.
 *
 * Every value is a pure function of (seed, device, step), computed with a counter-based hash
 * (splitmix64), so reading i can be generated without generating 0..i-1 first, and tests can
 * recompute any reading.
 */
#include "ingest/simulator.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/timeutil.h"
#include "ingest/kafka.h"

/* Longest reading we format; the valid ones are ~230 bytes (~120 in Avro). */
#define TC_SIM_READING_MAX 1024
/* Bytes of the Confluent frame: magic byte 0 and the big-endian schema id. */
#define TC_SIM_AVRO_FRAME 5
/* Longest zigzag varint of a 64-bit long. */
#define TC_SIM_VARINT_MAX 10
/* Decimal digits of a uint64_t. */
#define TC_SIM_UINT_DIGITS 20
/* A rated run sleeps only once it is this far ahead of its schedule, then up to it: a sleep a
 * reading (50 us apart at 20,000/s) was a third of the simulator's CPU, in context switches (perf
 * record). At 20,000/s the readings leave in bursts of 20 a millisecond, far finer than the
 * producer's linger (20 ms) and the pipeline's batches. */
#define TC_SIM_PACE_US 1000

/* The writer schema of valid Avro readings: the telemetry fields with their natural types, in the
 * order tc_sim_format writes them. */
static const char tc_sim_avro_schema_text[] =
    "{\"type\":\"record\",\"name\":\"Reading\",\"namespace\":\"io.thermocline.sim\",\"fields\":["
    "{\"name\":\"device_id\",\"type\":\"string\"},"
    "{\"name\":\"timestamp\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
    "{\"name\":\"temperature\",\"type\":\"double\"},{\"name\":\"humidity\",\"type\":\"double\"},"
    "{\"name\":\"pressure\",\"type\":\"double\"},{\"name\":\"battery\",\"type\":\"double\"},"
    "{\"name\":\"latitude\",\"type\":\"double\"},{\"name\":\"longitude\",\"type\":\"double\"},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":\"string\"}}]}";
/* The kinds of invalid readings, in the order their index is drawn. */
static const char *const tc_sim_invalid_names[] = {
    "truncated_json",    "missing_device_id",     "missing_timestamp", "temperature_too_high",
    "humidity_negative", "bad_timestamp",         "future_timestamp",  "wrong_type",
    "invalid_utf8",      "latitude_out_of_range", "not_an_object",     "nan_literal",
    "ancient_timestamp", "empty_message",
};
#define TC_SIM_INVALID_KINDS ((int)(sizeof(tc_sim_invalid_names) / sizeof(tc_sim_invalid_names[0])))

const char *tc_sim_invalid_name(int kind)
{
    return kind >= 0 && kind < TC_SIM_INVALID_KINDS ? tc_sim_invalid_names[kind] : NULL;
}

const char *tc_sim_avro_schema(void)
{
    return tc_sim_avro_schema_text;
}

static uint64_t tc_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

double tc_sim_unit(uint64_t seed, uint64_t a, uint64_t b, uint64_t salt)
{
    uint64_t h = tc_mix(seed ^ tc_mix(a * 0x100000001b3ULL ^ tc_mix(b ^ (salt << 56))));
    return (double)(h >> 11) / 9007199254740992.0;
}

/* Round to two decimals, the precision a sensor reports. */
static double tc_round2(double v)
{
    return round(v * 100.0) / 100.0;
}

/* Bounded writer of a reading's bytes (Avro binary or JSON text): a write past cap marks it failed
 * instead of overflowing. */
typedef struct tc_sim_buf {
    unsigned char *p;
    size_t len, cap;
    int failed;
} tc_sim_buf;

static void tc_sim_put(tc_sim_buf *w, const void *src, size_t n)
{
    if (w->failed || n > w->cap - w->len) {
        w->failed = 1;
        return;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

/* Avro int and long: zigzag, then base-128 varint, low group first. */
static void tc_sim_avro_long(tc_sim_buf *w, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0);
    unsigned char b[TC_SIM_VARINT_MAX];
    size_t n = 0;

    while (z >= 0x80) {
        b[n++] = (unsigned char)(z | 0x80);
        z >>= 7;
    }
    b[n++] = (unsigned char)z;
    tc_sim_put(w, b, n);
}

static void tc_sim_avro_string(tc_sim_buf *w, const char *s)
{
    size_t n = strlen(s);

    tc_sim_avro_long(w, (int64_t)n);
    tc_sim_put(w, s, n);
}

/* Avro double: IEEE 754 binary64, little-endian whatever the host order. */
static void tc_sim_avro_double(tc_sim_buf *w, double v)
{
    unsigned char b[8];
    uint64_t bits;

    memcpy(&bits, &v, sizeof(bits));
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)(bits >> (8 * k));
    tc_sim_put(w, b, sizeof(b));
}

static void tc_sim_put_str(tc_sim_buf *w, const char *s)
{
    tc_sim_put(w, s, strlen(s));
}

/* u in decimal, with zeros in front up to min digits (min <= TC_SIM_UINT_DIGITS). */
static void tc_sim_put_uint(tc_sim_buf *w, uint64_t u, int min)
{
    char b[TC_SIM_UINT_DIGITS];
    int n = 0;

    do {
        b[TC_SIM_UINT_DIGITS - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u || n < min);
    tc_sim_put(w, b + TC_SIM_UINT_DIGITS - n, (size_t)n);
}

/* v with `decimals` decimals (at most 5), as printf's "%.*f" writes it, for a v already rounded
 * to them (tc_round2; latitude and longitude to 5 places): the integer v * 10^decimals, then the
 * point. printf's conversion of doubles was a fifth of the simulator's CPU (perf record at 20,000
 * readings/s). A v that is not such a number (more decimals, not finite, past 2^53 units) marks
 * the writer failed: the caller formats the reading with snprintf instead. Within 1e-3 of an
 * integer, the decimal that printf rounds v to is that integer, so the bytes are the same. */
static void tc_sim_put_fixed(tc_sim_buf *w, double v, int decimals)
{
    static const double scale[] = {1.0, 10.0, 100.0, 1e3, 1e4, 1e5};
    double x = fabs(v) * scale[decimals], r = nearbyint(x);
    uint64_t u, p10 = (uint64_t)scale[decimals];

    if (!(x < 9007199254740992.0) || fabs(x - r) > 1e-3) {
        w->failed = 1;
        return;
    }
    u = (uint64_t)r;
    if (signbit(v))
        tc_sim_put(w, "-", 1);
    tc_sim_put_uint(w, u / p10, 1);
    tc_sim_put(w, ".", 1);
    tc_sim_put_uint(w, u % p10, decimals);
}

/* What tc_sim_anomaly_apply needs to recompute a device's smooth metrics at another step. */
typedef struct tc_sim_ctx {
    const tc_sim_options *o;
    uint64_t dev;
    int64_t start_us;
} tc_sim_ctx;

/* Event time of (dev, step): the cadence, a fixed phase per device and +-10 % jitter, in ms. */
static int64_t tc_sim_time(const tc_sim_options *o, uint64_t dev, int64_t step, int64_t start_us)
{
    double jitter_ms =
        (tc_sim_unit(o->seed, dev, (uint64_t)step, 1) - 0.5) * 0.2 * (double)o->cadence_ms;
    int64_t t_us = start_us + step * o->cadence_ms * 1000 + (int64_t)(jitter_ms * 1000.0) +
                   (int64_t)(tc_sim_unit(o->seed, dev, 0, 2) * (double)o->cadence_ms * 1000.0);

    return t_us - t_us % 1000; /* milliseconds, as devices send */
}

/* Temperature, humidity and pressure of (dev, step) before anomalies: a per-device level, a daily
 * sine (pressure: a slow wave) and uniform noise. */
static void tc_sim_smooth(const void *ctx, int64_t step, double v[3])
{
    const tc_sim_ctx *c = ctx;
    uint64_t s = c->o->seed, dev = c->dev, st = (uint64_t)step;
    int64_t t_us = tc_sim_time(c->o, dev, step, c->start_us);
    double day_frac = (double)(t_us % 86400000000LL) / 86400e6;

    v[0] = 12.0 + 14.0 * tc_sim_unit(s, dev, 0, 3) + 6.0 * sin(2 * M_PI * (day_frac - 0.3)) +
           (tc_sim_unit(s, dev, st, 4) - 0.5) * 0.4;
    v[1] = 35.0 + 30.0 * tc_sim_unit(s, dev, 0, 5) - 10.0 * sin(2 * M_PI * (day_frac - 0.3)) +
           (tc_sim_unit(s, dev, st, 6) - 0.5) * 2.0;
    v[2] = 995.0 + 30.0 * tc_sim_unit(s, dev, 0, 7) + 3.0 * sin(2 * M_PI * (double)step / 5000.0) +
           (tc_sim_unit(s, dev, st, 8) - 0.5) * 0.6;
}

void tc_sim_reading_at(const tc_sim_options *o, uint64_t i, int64_t start_us, tc_sim_reading *r)
{
    uint64_t dev = i % (uint64_t)o->devices, s = o->seed;
    int64_t step = (int64_t)(i / (uint64_t)o->devices);
    tc_sim_ctx ctx = {o, dev, start_us};
    double v[3], batt;

    r->device = dev;
    r->step = step;
    r->t_us = tc_sim_time(o, dev, step, start_us);
    tc_sim_smooth(&ctx, step, v);
    if (o->anomalies)
        tc_sim_anomaly_apply(o->anomalies, s, dev, step, tc_sim_steps(o), tc_sim_smooth, &ctx, v);
    batt = 100.0 - 40.0 * tc_sim_unit(s, dev, 0, 9) - 0.001 * (double)step;
    batt = batt < 1.0 ? 1.0 : batt;
    r->metric[0] = tc_round2(v[0]);
    r->metric[1] = tc_round2(v[1]);
    r->metric[2] = tc_round2(v[2]);
    r->metric[3] = tc_round2(batt);
    /* JSON has 5 decimals */
    r->metric[4] = round((-60.0 + 130.0 * tc_sim_unit(s, dev, 0, 10) +
                          (tc_sim_unit(s, dev, (uint64_t)step, 11) - 0.5) * 1e-4) *
                         1e5) /
                   1e5;
    r->metric[5] = round((-170.0 + 340.0 * tc_sim_unit(s, dev, 0, 12) +
                          (tc_sim_unit(s, dev, (uint64_t)step, 13) - 0.5) * 1e-4) *
                         1e5) /
                   1e5;
    r->invalid_kind = -1;
    if (o->invalid_ratio > 0 && tc_sim_unit(s, i, 0, 14) < o->invalid_ratio)
        r->invalid_kind = (int)(tc_sim_unit(s, i, 0, 15) * TC_SIM_INVALID_KINDS);
}

int64_t tc_sim_steps(const tc_sim_options *o)
{
    return (int64_t)((o->count + (uint64_t)o->devices - 1) / (uint64_t)o->devices);
}

/* A valid reading's JSON text, written without printf (tc_sim_put_fixed): the bytes of
 * tc_sim_format's snprintf below, which test_simulator.c holds it to. Returns its length, or 0
 * when it cannot write it (then that snprintf does). */
static size_t tc_sim_json(const tc_sim_reading *r, const char *devid, const char *ts,
                          const char *site, int fw, char *buf, size_t cap)
{
    static const char *const names[] = {"\",\"temperature\":", ",\"humidity\":", ",\"pressure\":",
                                        ",\"battery\":",       ",\"latitude\":", ",\"longitude\":"};
    tc_sim_buf w = {.p = (unsigned char *)buf, .cap = cap};

    tc_sim_put_str(&w, "{\"device_id\":\"");
    tc_sim_put_str(&w, devid);
    tc_sim_put_str(&w, "\",\"timestamp\":\"");
    tc_sim_put_str(&w, ts);
    for (int k = 0; k < 6; k++) {
        tc_sim_put_str(&w, names[k]);
        tc_sim_put_fixed(&w, r->metric[k], k < 4 ? 2 : 5);
    }
    tc_sim_put_str(&w, ",\"tags\":{\"site\":\"");
    tc_sim_put_str(&w, site);
    tc_sim_put_str(&w, "\",\"fw\":\"1.");
    tc_sim_put_uint(&w, (uint64_t)fw, 1);
    tc_sim_put(&w, ".0\"}}", 5);
    if (w.failed || w.len >= cap)
        return 0;
    buf[w.len] = '\0';
    return w.len;
}

size_t tc_sim_format(const tc_sim_options *o, uint64_t i, int64_t start_us, char *buf, size_t cap,
                     int *invalid_kind)
{
    static const char *const sites[] = {"berlin-1", "paris-2", "oslo-1", "lima-3", "pune-1"};
    uint64_t dev = i % (uint64_t)o->devices, s = o->seed;
    double temp, hum, pres, batt, lat, lon;
    char ts[40], devid[32];
    tc_sim_reading r;
    int n, kind;

    tc_sim_reading_at(o, i, start_us, &r);
    tc_time_format_rfc3339(r.t_us, ts, sizeof(ts));
    temp = r.metric[0];
    hum = r.metric[1];
    pres = r.metric[2];
    batt = r.metric[3];
    lat = r.metric[4];
    lon = r.metric[5];
    kind = r.invalid_kind;
    snprintf(devid, sizeof(devid), "sensor-%05llu", (unsigned long long)(o->first_device + dev));

    *invalid_kind = kind;
    switch (kind) {
    case 1: /* missing device id */
        n = snprintf(buf, cap, "{\"timestamp\":\"%s\",\"temperature\":%.2f}", ts, temp);
        break;
    case 2: /* missing timestamp */
        n = snprintf(buf, cap, "{\"device_id\":\"%s\",\"temperature\":%.2f}", devid, temp);
        break;
    case 3:
        n = snprintf(buf, cap, "{\"device_id\":\"%s\",\"timestamp\":\"%s\",\"temperature\":%.2f}",
                     devid, ts, 150.0 + temp);
        break;
    case 4:
        n = snprintf(buf, cap, "{\"device_id\":\"%s\",\"timestamp\":\"%s\",\"humidity\":%.2f}",
                     devid, ts, -5.0 - hum);
        break;
    case 5:
        n = snprintf(buf, cap,
                     "{\"device_id\":\"%s\",\"timestamp\":\"2026-13-45T99:00:00Z\","
                     "\"temperature\":%.2f}",
                     devid, temp);
        break;
    case 6:
        n = snprintf(buf, cap,
                     "{\"device_id\":\"%s\",\"timestamp\":\"2099-01-01T00:00:00Z\","
                     "\"temperature\":%.2f}",
                     devid, temp);
        break;
    case 7:
        n = snprintf(buf, cap,
                     "{\"device_id\":\"%s\",\"timestamp\":\"%s\",\"temperature\":\"hot\"}", devid,
                     ts);
        break;
    case 8:
        n = snprintf(buf, cap, "{\"device_id\":\"bad-\xc3\x28-%s\",\"timestamp\":\"%s\"}", devid,
                     ts);
        break;
    case 9:
        n = snprintf(buf, cap, "{\"device_id\":\"%s\",\"timestamp\":\"%s\",\"latitude\":%.2f}",
                     devid, ts, 95.0 + fabs(lat) / 100.0);
        break;
    case 10:
        n = snprintf(buf, cap, "[\"%s\",\"%s\",%.2f]", devid, ts, temp);
        break;
    case 11:
        n = snprintf(buf, cap, "{\"device_id\":\"%s\",\"timestamp\":\"%s\",\"temperature\":NaN}",
                     devid, ts);
        break;
    case 12:
        n = snprintf(buf, cap,
                     "{\"device_id\":\"%s\",\"timestamp\":\"2001-09-09T01:46:40Z\","
                     "\"temperature\":%.2f}",
                     devid, temp);
        break;
    case 13:
        n = 0;
        buf[0] = '\0';
        break;
    default: /* valid, or truncated (kind 0) */
        if (kind < 0 && o->avro_schema_id > 0) {
            /* The same values as the JSON form, in tc_sim_avro_schema_text's field order. */
            tc_sim_buf w = {.p = (unsigned char *)buf, .cap = cap};
            unsigned char frame[TC_SIM_AVRO_FRAME] = {0};
            char fw[16];
            uint32_t id = (uint32_t)o->avro_schema_id;

            for (int k = 0; k < 4; k++)
                frame[1 + k] = (unsigned char)(id >> (24 - 8 * k));
            snprintf(fw, sizeof(fw), "1.%d.0", (int)(dev % 7));
            tc_sim_put(&w, frame, sizeof(frame));
            tc_sim_avro_string(&w, devid);
            tc_sim_avro_long(&w, r.t_us / 1000);
            tc_sim_avro_double(&w, tc_round2(temp));
            tc_sim_avro_double(&w, tc_round2(hum));
            tc_sim_avro_double(&w, tc_round2(pres));
            tc_sim_avro_double(&w, tc_round2(batt));
            tc_sim_avro_double(&w, round(lat * 1e5) / 1e5); /* JSON has 5 decimals */
            tc_sim_avro_double(&w, round(lon * 1e5) / 1e5);
            tc_sim_avro_long(&w, 2); /* one map block of two entries, then the end block */
            tc_sim_avro_string(&w, "site");
            tc_sim_avro_string(&w, sites[dev % 5]);
            tc_sim_avro_string(&w, "fw");
            tc_sim_avro_string(&w, fw);
            tc_sim_avro_long(&w, 0);
            return w.failed ? 0 : w.len;
        }
        n = (int)tc_sim_json(&r, devid, ts, sites[dev % 5], (int)(dev % 7), buf, cap);
        if (n == 0)
            n = snprintf(buf, cap,
                         "{\"device_id\":\"%s\",\"timestamp\":\"%s\",\"temperature\":%.2f,"
                         "\"humidity\":%.2f,\"pressure\":%.2f,\"battery\":%.2f,\"latitude\":%.5f,"
                         "\"longitude\":%.5f,\"tags\":{\"site\":\"%s\",\"fw\":\"1.%d.0\"}}",
                         devid, ts, tc_round2(temp), tc_round2(hum), tc_round2(pres),
                         tc_round2(batt), lat, lon, sites[dev % 5], (int)(dev % 7));
        if (kind == 0 && n > 20)
            n = 20 + (int)(tc_sim_unit(s, i, 0, 16) * (n - 21));
        break;
    }
    if (n < 0)
        n = 0;
    if ((size_t)n >= cap)
        n = (int)cap - 1;
    return (size_t)n;
}

/* Keep to the schedule: the reading due at t_us goes now, unless that is TC_SIM_PACE_US or more
 * away; then the run sleeps until it is due. */
static void tc_sim_pace(int64_t t_us)
{
    int64_t now = tc_time_now_us();
    struct timespec ts;

    if (t_us - now < TC_SIM_PACE_US)
        return;
    ts.tv_sec = (time_t)((t_us - now) / 1000000);
    ts.tv_nsec = (long)((t_us - now) % 1000000) * 1000;
    nanosleep(&ts, NULL);
}

/* Write the truth records that start at reading i. */
static void tc_sim_truth(const tc_sim_options *o, uint64_t i, int64_t start_us)
{
    uint64_t dev = i % (uint64_t)o->devices;
    int64_t step = (int64_t)(i / (uint64_t)o->devices);
    tc_sim_episode ep[2];
    char devid[32];
    int n = tc_sim_truth_at(o->anomalies, o->seed, dev, step, tc_sim_steps(o), ep);

    snprintf(devid, sizeof(devid), "sensor-%05llu", (unsigned long long)(o->first_device + dev));
    for (int k = 0; k < n; k++) {
        tc_sim_reading first, last;
        tc_sim_reading_at(o, (uint64_t)ep[k].first * (uint64_t)o->devices + dev, start_us, &first);
        tc_sim_reading_at(o, (uint64_t)ep[k].last * (uint64_t)o->devices + dev, start_us, &last);
        tc_sim_truth_write(o->truth, devid, &ep[k], first.t_us, last.t_us);
    }
}

/* The summary's "partitions": what the delivery reports said of each partition (tc_producer_tally),
 * so that a reader can hold them against the topic's end offsets: a message reported delivered that
 * the topic lacks shows there, on its partition, with whether librdkafka inferred its delivery. */
static void tc_sim_report_partitions(const tc_producer *prod, FILE *report)
{
    int32_t n = 0;

    tc_producer_tally_of(prod, 0, &n);
    for (int32_t q = 0, first = 1; q < n; q++) {
        const tc_producer_tally *t = tc_producer_tally_of(prod, q, NULL);
        if (!t->delivered)
            continue;
        fprintf(report,
                "%s\"%d\":{\"delivered\":%llu,\"inferred\":%llu,\"repeated\":%llu,"
                "\"absent\":%llu,\"end\":%lld}",
                first ? "" : ",", (int)q, (unsigned long long)t->delivered,
                (unsigned long long)t->inferred, (unsigned long long)t->repeated,
                (unsigned long long)t->absent, (long long)t->end);
        first = 0;
    }
}

tc_err tc_simulate(const tc_config *cfg, const tc_sim_options *opt, FILE *report,
                   volatile int *stop, char *errstr, size_t errstr_size)
{
    uint64_t by_kind[TC_SIM_INVALID_KINDS] = {0}, valid = 0, produced = 0, failed, i, seen = 0;
    int64_t t0 = tc_time_now_us(), start_us = opt->start_us, steps, now;
    char buf[TC_SIM_READING_MAX], key[32];
    tc_sim_stream *stream;
    tc_producer *prod;
    tc_err err = TC_OK;
    int kind;

    if (opt->devices <= 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "--devices must be positive");
    steps = tc_sim_steps(opt);
    if (start_us == 0) {
        /* Live (rated) runs stamp readings as they happen; backfills end a cadence ago. */
        if (opt->rate > 0)
            start_us = t0;
        else
            start_us = t0 - (steps + 1) * opt->cadence_ms * 1000;
    }
    /* Without anomalies the stream is the natural order; with them it skips and holds back. */
    stream = tc_sim_stream_new(opt->anomalies, opt->seed, opt->devices, opt->count);
    if (!stream)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    prod = tc_producer_new(cfg, errstr, errstr_size);
    if (!prod) {
        tc_sim_stream_destroy(stream);
        return TC_ERR_KAFKA;
    }
    while (!(stop && *stop) && tc_sim_stream_next(stream, &i)) {
        size_t len;
        if (opt->anomalies && opt->truth) {
            /* Truth in natural order: every reading up to the stream's cursor has been seen. */
            for (; seen <= i; seen++)
                tc_sim_truth(opt, seen, start_us);
        }
        if (opt->rate > 0)
            tc_sim_pace(t0 + (int64_t)((double)produced * 1e6 / opt->rate));
        if (opt->rate > 0 && !opt->anomalies) {
            /* Live: the device's step is "now" in event time. */
            now = tc_time_now_us();
            len = tc_sim_format(
                opt, i, now - (int64_t)(i / (uint64_t)opt->devices) * opt->cadence_ms * 1000, buf,
                sizeof(buf), &kind);
        } else {
            /* Anomalies hold readings back: their event times stay those of their step. */
            len = tc_sim_format(opt, i, start_us, buf, sizeof(buf), &kind);
        }
        snprintf(key, sizeof(key), "sensor-%05llu",
                 (unsigned long long)(opt->first_device + i % (uint64_t)opt->devices));
        err = tc_producer_send(prod, cfg->kafka_topic, -1, key, strlen(key), len ? buf : NULL, len,
                               errstr, errstr_size);
        if (err != TC_OK)
            break;
        produced++;
        if (kind < 0)
            valid++;
        else
            by_kind[kind]++;
        if (produced % 100000 == 0)
            tc_log_info("simulate", "produced %llu", (unsigned long long)produced);
    }
    if (opt->anomalies && opt->truth && !(stop && *stop) && err == TC_OK) {
        for (; seen < opt->count; seen++)
            tc_sim_truth(opt, seen, start_us);
    }
    tc_sim_stream_destroy(stream);
    failed = tc_producer_flush(prod, 60000);
    if (opt->truth && fflush(opt->truth) != 0 && err == TC_OK)
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not write the truth file");
    if (err == TC_OK && failed)
        err = tc_err_set(TC_ERR_KAFKA, errstr, errstr_size, "%llu messages were not delivered",
                         (unsigned long long)failed);
    now = tc_time_now_us();
    fprintf(report,
            "{\"topic\":\"%s\",\"produced\":%llu,\"valid\":%llu,\"invalid\":%llu,"
            "\"failed\":%llu,\"seconds\":%.3f,\"rate\":%.0f,\"invalid_by_kind\":{",
            cfg->kafka_topic, (unsigned long long)produced, (unsigned long long)valid,
            (unsigned long long)(produced - valid), (unsigned long long)failed,
            (double)(now - t0) / 1e6, (double)produced * 1e6 / (double)(now - t0 + 1));
    for (int k = 0; k < TC_SIM_INVALID_KINDS; k++)
        fprintf(report, "%s\"%s\":%llu", k ? "," : "", tc_sim_invalid_names[k],
                (unsigned long long)by_kind[k]);
    fprintf(report, "},\"partitions\":{");
    tc_sim_report_partitions(prod, report);
    fprintf(report, "}}\n");
    fflush(report);
    tc_producer_destroy(prod);
    return err;
}
