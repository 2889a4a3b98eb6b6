/*
 * bench_json.c -- throughput of tc_json_reading_decode on realistic readings.
 *
 * Generates N readings (default 1,000,000) of about 220 bytes in one contiguous buffer, the way a
 * consumer sees them: 10,000 device ids, varying metric values with sensor-like precision, RFC 3339
 * timestamps (one in ten as epoch milliseconds), a small tags object, and now and then a null
 * metric. Then it times decoding all of them into a batch of 1000 rows that is reset whenever it
 * fills (what the pipeline does after a flush). Times are the thread's CPU time, best of a few
 * passes, so a noisy neighbour on a shared machine does not set the figure.
 *
 * For scale it also times a bare byte scan of the same bytes (memchr for every '}' of every
 * message): a lower bound no decoder that looks at every byte can beat. The ratio says how much
 * the decoder costs over merely touching the data.
 *
 * Usage: bench_json [readings]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/batch.h"
#include "core/reject.h"
#include "core/timeutil.h"
#include "schema/json_reading.h"

#define BENCH_READINGS_DEFAULT 1000000
#define BENCH_DEVICES          10000
#define BENCH_BATCH_ROWS       1000
/* Generous bound on one generated reading (they are ~220 bytes). */
#define BENCH_READING_MAX 512
/* Average size guess for the first allocation of the message buffer; it grows if needed. */
#define BENCH_READING_GUESS 240
/* Passes per measurement; the best one is reported. */
#define BENCH_PASSES 5

static const char *const bench_sites[] = {
    "berlin-1",  "berlin-2",  "hamburg-1", "munich-3", "cologne-1", "frankfurt-2", "stuttgart-1",
    "leipzig-1", "dresden-2", "hanover-1", "bremen-1", "essen-4",   "dortmund-2",  "bonn-1",
    "mainz-1",   "kiel-1",    "rostock-2", "erfurt-1", "potsdam-1", "lubeck-1",
};

static uint64_t bench_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Uniform value in [lo, hi) with the given number of decimals, as text. */
static int bench_fixed(char *out, size_t cap, uint64_t *s, double lo, double hi, int decimals)
{
    double v = lo + (hi - lo) * (double)(bench_rng(s) >> 11) / 9007199254740992.0;

    return snprintf(out, cap, "%.*f", decimals, v);
}

/* CPU time of this thread: on a shared machine, time spent descheduled is not decoder cost. */
static double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Append one reading to buf at *len. */
static void bench_reading(char *buf, size_t *len, uint64_t *s, size_t i)
{
    /* 2026-11-28T12:00:00Z plus ~37 ms per reading and some jitter. */
    int64_t t_us = INT64_C(1795867200000000) + (int64_t)i * 37000 + (int64_t)(bench_rng(s) % 5000);
    char ts[TC_TIME_RFC3339_MAX], tmp[6][32], *p = buf + *len;
    int n;

    if (bench_rng(s) % 10 == 0) {
        snprintf(ts, sizeof(ts), "%lld", (long long)(t_us / 1000));
    } else {
        /* Milliseconds, as most producers send: "2026-11-28T12:00:00.123Z". */
        tc_time_format_rfc3339(t_us, ts + 1, sizeof(ts) - 1);
        ts[0] = '"';
        memcpy(ts + 24, "Z\"", 3);
    }
    bench_fixed(tmp[0], sizeof(tmp[0]), s, -15, 40, 1 + (int)(bench_rng(s) % 2));
    bench_fixed(tmp[1], sizeof(tmp[1]), s, 5, 100, 1);
    bench_fixed(tmp[2], sizeof(tmp[2]), s, 950, 1050, 1 + (int)(bench_rng(s) % 2));
    bench_fixed(tmp[4], sizeof(tmp[4]), s, 47, 55, 4 + (int)(bench_rng(s) % 3));
    bench_fixed(tmp[5], sizeof(tmp[5]), s, 6, 15, 3 + (int)(bench_rng(s) % 3));
    if (bench_rng(s) % 50 == 0)
        strcpy(tmp[1], "null"); /* a humidity sensor that failed */
    n = snprintf(
        p, BENCH_READING_MAX,
        "{\"device_id\":\"sensor-%05u\",\"timestamp\":%s,\"temperature\":%s,"
        "\"humidity\":%s,\"pressure\":%s,\"battery\":%u,\"latitude\":%s,"
        "\"longitude\":%s,\"tags\":{\"site\":\"%s\",\"zone\":\"%c%u\",\"fw\":\"2.%u.%u\"}}",
        (unsigned)(bench_rng(s) % BENCH_DEVICES), ts, tmp[0], tmp[1], tmp[2],
        (unsigned)(bench_rng(s) % 101), tmp[4], tmp[5],
        bench_sites[bench_rng(s) % (sizeof(bench_sites) / sizeof(bench_sites[0]))],
        'a' + (int)(bench_rng(s) % 6), (unsigned)(bench_rng(s) % 40), (unsigned)(bench_rng(s) % 10),
        (unsigned)(bench_rng(s) % 20));
    if (n <= 0 || n >= BENCH_READING_MAX) {
        fprintf(stderr, "reading too long\n");
        exit(1);
    }
    *len += (size_t)n;
}

int main(int argc, char **argv)
{
    size_t count = argc > 1 ? strtoul(argv[1], NULL, 10) : BENCH_READINGS_DEFAULT;
    size_t *off, total = 0, cap, rejects = 0, flushes = 0;
    double best_dec = 1e30, best_scan = 1e30;
    char *buf, detail[TC_REJECT_DETAIL_MAX];
    volatile size_t sink = 0;
    uint64_t seed = 0x9E3779B97F4A7C15u;
    tc_batch *b;

    if (count == 0)
        count = BENCH_READINGS_DEFAULT;
    cap = count * BENCH_READING_GUESS;
    buf = malloc(cap);
    off = malloc((count + 1) * sizeof(*off));
    b = tc_batch_new(BENCH_BATCH_ROWS, 0);
    if (!buf || !off || !b) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < count; i++) {
        if (cap - total < BENCH_READING_MAX) {
            char *nb = realloc(buf, cap * 2);

            if (!nb) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            buf = nb;
            cap *= 2;
        }
        off[i] = total;
        bench_reading(buf, &total, &seed, i);
    }
    off[count] = total;
    printf("readings: %zu, %.1f bytes on average, %.1f MB in total\n", count,
           (double)total / (double)count, (double)total / 1e6);

    for (int pass = 0; pass < BENCH_PASSES; pass++) {
        double t0, t;

        rejects = flushes = 0;
        tc_batch_reset(b);
        t0 = bench_now();
        for (size_t i = 0; i < count; i++) {
            tc_reject r;

            if (tc_batch_row_begin(b) != TC_OK) {
                tc_batch_reset(b); /* the sink would flush here */
                flushes++;
                tc_batch_row_begin(b);
            }
            r = tc_json_reading_decode(b, buf + off[i], off[i + 1] - off[i], detail,
                                       sizeof(detail));
            if (r == TC_REJECT_NONE) {
                tc_batch_row_commit(b);
            } else if (rejects++ == 0) {
                fprintf(stderr, "reading %zu rejected: %s (%s)\n", i, tc_reject_name(r), detail);
            }
        }
        t = bench_now() - t0;
        if (t < best_dec)
            best_dec = t;
        sink += b->n;
    }

    for (int pass = 0; pass < BENCH_PASSES; pass++) {
        double t0 = bench_now(), t;
        size_t braces = 0;

        for (size_t i = 0; i < count; i++) {
            const char *p = buf + off[i], *end = buf + off[i + 1], *q;

            while ((q = memchr(p, '}', (size_t)(end - p))) != NULL) {
                braces++;
                p = q + 1;
            }
        }
        t = bench_now() - t0;
        if (t < best_scan)
            best_scan = t;
        sink += braces;
    }

    printf("decode:  %7.1f ns/reading  %7.1f MB/s  (batch of %d rows, %zu flushes, %zu rejects)\n",
           best_dec * 1e9 / (double)count, (double)total / best_dec / 1e6, BENCH_BATCH_ROWS,
           flushes, rejects);
    printf("memchr:  %7.1f ns/reading  %7.1f MB/s  (bare byte scan, lower bound)\n",
           best_scan * 1e9 / (double)count, (double)total / best_scan / 1e6);
    printf("ratio:   %7.1fx the byte scan\n", best_dec / best_scan);
    (void)sink;
    tc_batch_destroy(b);
    free(off);
    free(buf);
    return rejects ? 1 : 0;
}
