/*
 * bench_avro.c -- throughput of tc_avro_reading_decode, next to tc_json_reading_decode on the same
 * readings.
 *
 * Generates N readings (default 1,000,000) from 10,000 devices with sensor-like values and a
 * three-entry tags map, and encodes each one three ways, into three contiguous buffers:
 *   json     the JSON text the JSON decoder reads (RFC 3339 timestamps with milliseconds);
 *   avro     Avro binary with a writer schema equal to the reader shape (doubles, timestamp-millis,
 *            map<string> tags);
 *   promoted Avro binary with a writer that needs work: float, int and long metrics, a null union,
 *            timestamp-micros, and two fields outside the reading schema (kept in extra).
 * Each is decoded into a batch of 1000 rows reset whenever it fills (as after a flush). Times are
 * the thread's CPU time, best of a few passes.
 *
 * Usage: bench_avro [readings]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/batch.h"
#include "core/reject.h"
#include "core/timeutil.h"
#include "schema/avro_reading.h"
#include "schema/json_reading.h"

#define BENCH_READINGS_DEFAULT 1000000
#define BENCH_DEVICES          10000
#define BENCH_BATCH_ROWS       1000
#define BENCH_READING_MAX      512
#define BENCH_PASSES           3

#define BENCH_SCHEMA_SAME                                                                          \
    "{\"type\":\"record\",\"name\":\"Reading\",\"fields\":["                                       \
    "{\"name\":\"device_id\",\"type\":\"string\"},"                                                \
    "{\"name\":\"timestamp\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"  \
    "{\"name\":\"temperature\",\"type\":\"double\"},{\"name\":\"humidity\",\"type\":\"double\"},"  \
    "{\"name\":\"pressure\",\"type\":\"double\"},{\"name\":\"battery\",\"type\":\"double\"},"      \
    "{\"name\":\"latitude\",\"type\":\"double\"},{\"name\":\"longitude\",\"type\":\"double\"},"    \
    "{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":\"string\"}}]}"

#define BENCH_SCHEMA_PROMO                                                                         \
    "{\"type\":\"record\",\"name\":\"Reading\",\"fields\":["                                       \
    "{\"name\":\"device_id\",\"type\":\"string\"},"                                                \
    "{\"name\":\"timestamp\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}},"  \
    "{\"name\":\"temperature\",\"type\":\"float\"},{\"name\":\"humidity\",\"type\":[\"null\","     \
    "\"float\"]},{\"name\":\"pressure\",\"type\":\"float\"},{\"name\":\"battery\",\"type\":"       \
    "\"int\"},{\"name\":\"latitude\",\"type\":\"double\"},{\"name\":\"longitude\",\"type\":"       \
    "\"double\"},{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":\"string\"}},"           \
    "{\"name\":\"seq\",\"type\":\"long\"},{\"name\":\"firmware\",\"type\":\"string\"}]}"

static const char *const bench_sites[] = {"berlin-1",  "berlin-2", "hamburg-1",   "munich-3",
                                          "cologne-1", "bremen-1", "stuttgart-1", "bonn-1"};

typedef struct bbuf {
    char *p;
    size_t len, cap;
    size_t *off;
} bbuf;

static uint64_t bench_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double bench_val(uint64_t *s, double lo, double hi, int decimals, char *txt, size_t cap)
{
    double v = lo + (hi - lo) * (double)(bench_rng(s) >> 11) / 9007199254740992.0;

    snprintf(txt, cap, "%.*f", decimals, v);
    return strtod(txt, NULL);
}

static double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void bb_reserve(bbuf *b)
{
    if (b->len + BENCH_READING_MAX > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 1 << 24;
        b->p = realloc(b->p, b->cap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
}

static void bb_long(bbuf *b, int64_t v)
{
    uint64_t u = ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0);

    while (u >= 0x80) {
        b->p[b->len++] = (char)((u & 0x7f) | 0x80);
        u >>= 7;
    }
    b->p[b->len++] = (char)u;
}

static void bb_str(bbuf *b, const char *s)
{
    size_t n = strlen(s);

    bb_long(b, (int64_t)n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void bb_double(bbuf *b, double d)
{
    memcpy(b->p + b->len, &d, 8); /* little-endian host (x86-64, aarch64) */
    b->len += 8;
}

static void bb_float(bbuf *b, float f)
{
    memcpy(b->p + b->len, &f, 4);
    b->len += 4;
}

static double bench_run(tc_batch *b, const tc_avro_plan *plan, const bbuf *m, size_t count,
                        size_t *rejects)
{
    char detail[TC_REJECT_DETAIL_MAX];
    double best = 1e30;

    for (int pass = 0; pass < BENCH_PASSES; pass++) {
        double t0 = bench_now(), t;

        *rejects = 0;
        tc_batch_reset(b);
        for (size_t i = 0; i < count; i++) {
            const char *p = m->p + m->off[i];
            size_t n = m->off[i + 1] - m->off[i];
            tc_reject r;

            if (tc_batch_full(b))
                tc_batch_reset(b);
            tc_batch_row_begin(b);
            r = plan ? tc_avro_reading_decode(b, plan, p, n, detail, sizeof(detail))
                     : tc_json_reading_decode(b, p, n, detail, sizeof(detail));
            if (r == TC_REJECT_NONE)
                tc_batch_row_commit(b);
            else if (++*rejects == 1)
                fprintf(stderr, "reject: %s\n", detail);
        }
        t = bench_now() - t0;
        if (t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    size_t count = argc > 1 ? strtoul(argv[1], NULL, 10) : BENCH_READINGS_DEFAULT;
    bbuf js = {0}, av = {0}, pr = {0};
    uint64_t seed = 0x9E3779B97F4A7C15u;
    char err[TC_ERRSTR_MAX];
    tc_avro_plan *same, *promo;
    size_t rej[3];
    double t[3];
    tc_batch *b;

    if (count == 0)
        count = BENCH_READINGS_DEFAULT;
    js.off = malloc((count + 1) * sizeof(size_t));
    av.off = malloc((count + 1) * sizeof(size_t));
    pr.off = malloc((count + 1) * sizeof(size_t));
    same = tc_avro_plan_new(BENCH_SCHEMA_SAME, strlen(BENCH_SCHEMA_SAME), err, sizeof(err));
    promo = same
                ? tc_avro_plan_new(BENCH_SCHEMA_PROMO, strlen(BENCH_SCHEMA_PROMO), err, sizeof(err))
                : NULL;
    b = tc_batch_new(BENCH_BATCH_ROWS, 0);
    if (!js.off || !av.off || !pr.off || !same || !promo || !b) {
        fprintf(stderr, "setup failed: %s\n", err);
        free(js.off);
        free(av.off);
        free(pr.off);
        return 1;
    }
    for (size_t i = 0; i < count; i++) {
        int64_t t_ms = INT64_C(1795867200000) + (int64_t)i * 37 + (int64_t)(bench_rng(&seed) % 5);
        char dev[32], ts[TC_TIME_RFC3339_MAX], tx[6][32], site[16], zone[8], fw[16];
        double v[6];
        unsigned bat = (unsigned)(bench_rng(&seed) % 101);

        snprintf(dev, sizeof(dev), "sensor-%05u", (unsigned)(bench_rng(&seed) % BENCH_DEVICES));
        tc_time_format_rfc3339(t_ms * 1000, ts, sizeof(ts));
        memcpy(ts + 23, "Z", 2); /* milliseconds, as producers send them */
        v[0] = bench_val(&seed, -15, 40, 1, tx[0], sizeof(tx[0]));
        v[1] = bench_val(&seed, 5, 100, 1, tx[1], sizeof(tx[1]));
        v[2] = bench_val(&seed, 950, 1050, 1, tx[2], sizeof(tx[2]));
        v[3] = bat;
        snprintf(tx[3], sizeof(tx[3]), "%u", bat);
        v[4] = bench_val(&seed, 47, 55, 5, tx[4], sizeof(tx[4]));
        v[5] = bench_val(&seed, 6, 15, 4, tx[5], sizeof(tx[5]));
        snprintf(site, sizeof(site), "%s",
                 bench_sites[bench_rng(&seed) % (sizeof(bench_sites) / sizeof(bench_sites[0]))]);
        snprintf(zone, sizeof(zone), "%c%u", 'a' + (int)(bench_rng(&seed) % 6),
                 (unsigned)(bench_rng(&seed) % 40));
        snprintf(fw, sizeof(fw), "2.%u.%u", (unsigned)(bench_rng(&seed) % 10),
                 (unsigned)(bench_rng(&seed) % 20));

        bb_reserve(&js);
        js.off[i] = js.len;
        js.len += (size_t)snprintf(
            js.p + js.len, BENCH_READING_MAX,
            "{\"device_id\":\"%s\",\"timestamp\":\"%s\",\"temperature\":%s,\"humidity\":%s,"
            "\"pressure\":%s,\"battery\":%s,\"latitude\":%s,\"longitude\":%s,\"tags\":{\"site\":"
            "\"%s\",\"zone\":\"%s\",\"fw\":\"%s\"}}",
            dev, ts, tx[0], tx[1], tx[2], tx[3], tx[4], tx[5], site, zone, fw);

        bb_reserve(&av);
        av.off[i] = av.len;
        bb_str(&av, dev);
        bb_long(&av, t_ms);
        for (int k = 0; k < 6; k++)
            bb_double(&av, v[k]);
        bb_long(&av, 3);
        bb_str(&av, "site");
        bb_str(&av, site);
        bb_str(&av, "zone");
        bb_str(&av, zone);
        bb_str(&av, "fw");
        bb_str(&av, fw);
        bb_long(&av, 0);

        bb_reserve(&pr);
        pr.off[i] = pr.len;
        bb_str(&pr, dev);
        bb_long(&pr, t_ms * 1000);
        bb_float(&pr, (float)v[0]);
        bb_long(&pr, 1);
        bb_float(&pr, (float)v[1]);
        bb_float(&pr, (float)v[2]);
        bb_long(&pr, bat);
        bb_double(&pr, v[4]);
        bb_double(&pr, v[5]);
        bb_long(&pr, 2);
        bb_str(&pr, "site");
        bb_str(&pr, site);
        bb_str(&pr, "zone");
        bb_str(&pr, zone);
        bb_long(&pr, 0);
        bb_long(&pr, (int64_t)i);
        bb_str(&pr, fw);
    }
    js.off[count] = js.len;
    av.off[count] = av.len;
    pr.off[count] = pr.len;

    t[0] = bench_run(b, NULL, &js, count, &rej[0]);
    t[1] = bench_run(b, same, &av, count, &rej[1]);
    t[2] = bench_run(b, promo, &pr, count, &rej[2]);
    /* Counts and byte totals stay far below 2^53: a double holds them exactly. */
    double n = (double)count;

    printf("readings: %zu (best of %d passes, thread CPU time)\n", count, BENCH_PASSES);
    printf("json      %6.1f ns/reading  %5.1f bytes/reading  rejects %zu\n", t[0] * 1e9 / n,
           (double)js.len / n, rej[0]);
    printf("avro      %6.1f ns/reading  %5.1f bytes/reading  rejects %zu  (writer = reader)\n",
           t[1] * 1e9 / n, (double)av.len / n, rej[1]);
    printf("promoted  %6.1f ns/reading  %5.1f bytes/reading  rejects %zu  (promotions + 2 extra "
           "fields)\n",
           t[2] * 1e9 / n, (double)pr.len / n, rej[2]);
    tc_batch_destroy(b);
    tc_avro_plan_free(same);
    tc_avro_plan_free(promo);
    free(js.p);
    free(av.p);
    free(pr.p);
    free(js.off);
    free(av.off);
    free(pr.off);
    return rej[0] + rej[1] + rej[2] ? 1 : 0;
}
