/*
 * bench_parquet.c -- encode throughput of the Parquet writer on the telemetry schema.
 *
 * Builds N rows (default 1,000,000) of realistic telemetry in tc_batch columns, the way the lake
 * sink holds them: 10,000 device ids (dictionary-encoded STRING), event time advancing ~100 us a
 * row, six OPTIONAL DOUBLE metrics that drift smoothly per device at sensor precision (0.01 for
 * temperature/humidity/battery, 0.1 hPa, 1e-6 degrees for position) with a few percent nulls, a
 * mostly-NULL JSON tags string from a small set, and the Kafka partition/offset. Then it times
 * writing all rows (in 10,000-row calls, one 1M-row row group) plus close, into a sink that only
 * counts bytes, so the figure is the encoder's, not the disk's. Time is the thread's CPU time, best
 * of a few passes. Reported per codec: rows/s, input MB/s (bytes of the column arrays and string
 * payloads handed over) and output MB/s (file bytes), and the file size.
 *
 * Usage: bench_parquet [rows] [--codec snappy|zstd|none|all] [--dict-numbers] [--encrypt]
 *                     [--out FILE]
 *   --dict-numbers  dictionary-encode the numeric columns too (options.dictionary_numbers)
 *   --encrypt       also time each codec with Parquet modular encryption (the lake's settings:
 *                   AES-GCM, encrypted footer, latitude/longitude under their own key), passes
 *                   interleaved with the plain ones, and report encrypted / plain throughput
 *   --out           also write the file (first codec) for bench/parquet_vs_pyarrow.py.
 */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/batch.h"
#include "lake/parquet.h"
#include "lake/parquet_crypt.h"

#define BENCH_DEVICES    10000
#define BENCH_CALL_ROWS  10000 /* rows per tc_parquet_write call: a typical batch */
#define BENCH_PASSES     3
#define BENCH_PARTITIONS 12

enum {
    COL_TIME,
    COL_DEVICE,
    COL_METRIC0, /* six metrics */
    COL_TAGS = COL_METRIC0 + TC_METRIC__COUNT,
    COL_PARTITION,
    COL_OFFSET,
    COL__COUNT
};

static double cpu_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x853c49e6748fea9bULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double unit(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static double quantise(double v, double step)
{
    return round(v / step) * step;
}

typedef struct device {
    char id[32];
    uint32_t len;
    double temp, hum, pres, batt, lat, lon;
} device;

static tc_batch *make_rows(size_t n, size_t *in_bytes)
{
    static const char *const tags[] = {
        "{\"site\":\"north\",\"floor\":1}", "{\"site\":\"north\",\"floor\":2}",
        "{\"site\":\"south\",\"floor\":1}", "{\"site\":\"lab\",\"rack\":\"b7\"}"};
    static device dev[BENCH_DEVICES];
    int64_t offsets[BENCH_PARTITIONS] = {0};
    int64_t t = 1732800000000000LL; /* 2024-11-28T13:20:00Z */
    tc_batch *b = tc_batch_new(n, 0);
    size_t bytes = 0;

    if (!b)
        return NULL;
    for (int d = 0; d < BENCH_DEVICES; d++) {
        dev[d].len = (uint32_t)snprintf(dev[d].id, sizeof(dev[d].id), "sensor-%05d-%c%c", d,
                                        'a' + d % 26, 'a' + d / 26 % 26);
        dev[d].temp = 15 + 10 * unit();
        dev[d].hum = 30 + 40 * unit();
        dev[d].pres = 990 + 40 * unit();
        dev[d].batt = 60 + 40 * unit();
        dev[d].lat = 45 + 5 * unit();
        dev[d].lon = 5 + 10 * unit();
    }
    for (size_t r = 0; r < n; r++) {
        device *d = &dev[rnd() % BENCH_DEVICES];
        int p = (int)(rnd() % BENCH_PARTITIONS);
        double v[TC_METRIC__COUNT];

        t += 50 + (int64_t)(rnd() % 100);
        d->temp += (unit() - 0.5) * 0.05;
        d->hum += (unit() - 0.5) * 0.1;
        d->pres += (unit() - 0.5) * 0.2;
        d->batt -= unit() * 0.001;
        v[TC_M_TEMPERATURE] = quantise(d->temp, 0.01);
        v[TC_M_HUMIDITY] = quantise(d->hum, 0.01);
        v[TC_M_PRESSURE] = quantise(d->pres, 0.1);
        v[TC_M_BATTERY] = quantise(d->batt, 0.01);
        v[TC_M_LATITUDE] = quantise(d->lat + (unit() - 0.5) * 1e-5, 1e-6);
        v[TC_M_LONGITUDE] = quantise(d->lon + (unit() - 0.5) * 1e-5, 1e-6);
        b->time_us[r] = t;
        b->device_id[r] = (tc_slice){d->id, d->len};
        for (int m = 0; m < TC_METRIC__COUNT; m++) {
            /* A few percent of readings lack a metric; batteries report rarely. */
            int absent = m == TC_M_BATTERY ? rnd() % 4 != 0 : rnd() % 50 == 0;
            b->metric[m][r] = absent ? 0 : v[m];
            b->present[m][r] = (uint8_t)!absent;
            bytes += 8 + 1;
        }
        if (rnd() % 10 == 0) {
            const char *tg = tags[rnd() % 4];
            b->tags[r] = (tc_slice){tg, (uint32_t)strlen(tg)};
        } else {
            b->tags[r] = (tc_slice){NULL, 0};
        }
        b->partition[r] = p;
        b->offset[r] = offsets[p]++;
        bytes += 8 + sizeof(tc_slice) + d->len + sizeof(tc_slice) + b->tags[r].len + 4 + 8;
    }
    b->n = n;
    *in_bytes = bytes;
    return b;
}

static const tc_parquet_column telemetry_cols[COL__COUNT] = {
    [COL_TIME] = {"time", TC_PQ_TIMESTAMP_US, 0, TC_PQ_DICT_AUTO},
    [COL_DEVICE] = {"device_id", TC_PQ_STRING, 0, TC_PQ_DICT_AUTO},
    [COL_METRIC0 + TC_M_TEMPERATURE] = {"temperature", TC_PQ_DOUBLE, 1, TC_PQ_DICT_AUTO},
    [COL_METRIC0 + TC_M_HUMIDITY] = {"humidity", TC_PQ_DOUBLE, 1, TC_PQ_DICT_AUTO},
    [COL_METRIC0 + TC_M_PRESSURE] = {"pressure", TC_PQ_DOUBLE, 1, TC_PQ_DICT_AUTO},
    [COL_METRIC0 + TC_M_BATTERY] = {"battery", TC_PQ_DOUBLE, 1, TC_PQ_DICT_AUTO},
    [COL_METRIC0 + TC_M_LATITUDE] = {"latitude", TC_PQ_DOUBLE, 1, TC_PQ_DICT_AUTO},
    [COL_METRIC0 + TC_M_LONGITUDE] = {"longitude", TC_PQ_DOUBLE, 1, TC_PQ_DICT_AUTO},
    [COL_TAGS] = {"tags", TC_PQ_STRING, 1, TC_PQ_DICT_AUTO},
    [COL_PARTITION] = {"kafka_partition", TC_PQ_INT32, 0, TC_PQ_DICT_AUTO},
    [COL_OFFSET] = {"kafka_offset", TC_PQ_INT64, 0, TC_PQ_DICT_AUTO},
};

static tc_err count_sink(void *ctx, const void *p, size_t n, char *errstr, size_t errstr_size)
{
    (void)p;
    (void)errstr;
    (void)errstr_size;
    *(uint64_t *)ctx += n;
    return TC_OK;
}

/* Write all rows of b; to fd when fd >= 0, else to the counting sink. Returns file bytes, 0 on
 * error. */
static int dict_numbers;

static uint64_t write_all(const tc_batch *b, tc_parquet_codec codec, int fd,
                          const tc_pq_crypt *crypt)
{
    char err[TC_ERRSTR_MAX];
    tc_parquet_options o;
    tc_parquet_writer *w;
    uint64_t counted = 0, bytes;

    tc_parquet_options_default(&o);
    o.codec = codec;
    o.dictionary_numbers = dict_numbers;
    o.crypt = crypt;
    w = fd >= 0 ? tc_parquet_writer_new(fd, telemetry_cols, COL__COUNT, &o, err, sizeof(err))
                : tc_parquet_writer_new_sink(count_sink, &counted, telemetry_cols, COL__COUNT, &o,
                                             err, sizeof(err));
    if (!w) {
        fprintf(stderr, "bench_parquet: %s\n", err);
        return 0;
    }
    for (size_t r = 0; r < b->n; r += BENCH_CALL_ROWS) {
        size_t k = b->n - r < BENCH_CALL_ROWS ? b->n - r : BENCH_CALL_ROWS;
        tc_parquet_values v[COL__COUNT];
        v[COL_TIME] = (tc_parquet_values){b->time_us + r, NULL};
        v[COL_DEVICE] = (tc_parquet_values){b->device_id + r, NULL};
        for (int m = 0; m < TC_METRIC__COUNT; m++)
            v[COL_METRIC0 + m] = (tc_parquet_values){b->metric[m] + r, b->present[m] + r};
        v[COL_TAGS] = (tc_parquet_values){b->tags + r, NULL};
        v[COL_PARTITION] = (tc_parquet_values){b->partition + r, NULL};
        v[COL_OFFSET] = (tc_parquet_values){b->offset + r, NULL};
        if (tc_parquet_write(w, v, k, err, sizeof(err)) != TC_OK) {
            fprintf(stderr, "bench_parquet: write: %s\n", err);
            tc_parquet_writer_destroy(w);
            return 0;
        }
    }
    if (tc_parquet_add_kv(w, "thermocline.schema", "telemetry/1", err, sizeof(err)) != TC_OK ||
        tc_parquet_close(w, err, sizeof(err)) != TC_OK) {
        fprintf(stderr, "bench_parquet: close: %s\n", err);
        tc_parquet_writer_destroy(w);
        return 0;
    }
    bytes = tc_parquet_writer_bytes(w);
    tc_parquet_writer_destroy(w);
    return bytes;
}

/* The lake's encryption with fresh random master keys (from a key file made and removed here). */
static tc_pq_crypt *bench_crypt(void)
{
    char path[] = "/tmp/bench_parquet_keys_XXXXXX", err[TC_ERRSTR_MAX];
    const char *text = "lake-footer: ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n"
                       "lake-personal: QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=\n";
    int fd = mkstemp(path);
    tc_pq_keyring *k;
    tc_pq_crypt *c = NULL;

    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        fprintf(stderr, "bench_parquet: cannot write a key file\n");
        return NULL;
    }
    close(fd);
    k = tc_pq_keyring_new(path, NULL, err, sizeof(err));
    unlink(path);
    if (k)
        c = tc_pq_crypt_new(k, "lake-footer", "lake-personal", "latitude,longitude", err,
                            sizeof(err));
    if (!c)
        fprintf(stderr, "bench_parquet: %s\n", err);
    return c;
}

static const char *codec_name(tc_parquet_codec c)
{
    return c == TC_PQ_SNAPPY ? "snappy" : c == TC_PQ_ZSTD ? "zstd" : "none";
}

int main(int argc, char **argv)
{
    size_t n = 1000000, in_bytes = 0;
    const char *out = NULL, *which = "all";
    tc_parquet_codec codecs[3] = {TC_PQ_SNAPPY, TC_PQ_UNCOMPRESSED, TC_PQ_ZSTD};
    size_t ncodecs = 3;
    tc_batch *b;
    int rc = 0, encrypt = 0;
    tc_pq_crypt *crypt = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (strcmp(argv[i], "--codec") == 0 && i + 1 < argc)
            which = argv[++i];
        else if (strcmp(argv[i], "--dict-numbers") == 0)
            dict_numbers = 1;
        else if (strcmp(argv[i], "--encrypt") == 0)
            encrypt = 1;
        else if (argv[i][0] != '-')
            n = strtoull(argv[i], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_parquet [rows] [--codec snappy|zstd|none|all] "
                            "[--dict-numbers] [--encrypt] [--out FILE]\n");
            return 2;
        }
    }
    if (strcmp(which, "all") != 0) {
        ncodecs = 1;
        codecs[0] = strcmp(which, "zstd") == 0   ? TC_PQ_ZSTD
                    : strcmp(which, "none") == 0 ? TC_PQ_UNCOMPRESSED
                                                 : TC_PQ_SNAPPY;
    }
    if (n == 0 || n > TC_BATCH_ROWS_MAX) {
        fprintf(stderr, "bench_parquet: rows must be 1..%d\n", TC_BATCH_ROWS_MAX);
        return 2;
    }
    if (encrypt && !(crypt = bench_crypt()))
        return 1;
    b = make_rows(n, &in_bytes);
    if (!b) {
        fprintf(stderr, "bench_parquet: out of memory\n");
        return 1;
    }
    printf("rows: %zu, %d devices, %.1f MB of column data handed to the writer%s\n", n,
           BENCH_DEVICES, (double)in_bytes / 1e6,
           dict_numbers ? ", dictionary on every column" : "");
    if (out) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        uint64_t bytes = fd >= 0 ? write_all(b, codecs[0], fd, crypt) : 0;
        if (fd < 0 || bytes == 0 || close(fd) != 0) {
            fprintf(stderr, "bench_parquet: cannot write %s\n", out);
            rc = 1;
        } else {
            printf("wrote %s: %llu bytes (%s)\n", out, (unsigned long long)bytes,
                   codec_name(codecs[0]));
        }
    }
    for (size_t c = 0; c < ncodecs && rc == 0; c++) {
        /* [0] plain, [1] encrypted: passes alternate, so both see the same machine load */
        double best[2] = {1e30, 1e30};
        uint64_t bytes[2] = {0, 0};
        for (int pass = 0; pass < BENCH_PASSES && rc == 0; pass++) {
            for (int e = 0; e <= encrypt; e++) {
                double t0 = cpu_seconds();
                bytes[e] = write_all(b, codecs[c], -1, e ? crypt : NULL);
                double dt = cpu_seconds() - t0;
                if (bytes[e] == 0) {
                    rc = 1;
                    break;
                }
                if (dt < best[e])
                    best[e] = dt;
            }
        }
        if (rc)
            break;
        for (int e = 0; e <= encrypt; e++)
            printf("%-7s%s %6.3f s  %6.2f M rows/s  in %7.1f MB/s  out %7.1f MB/s  file %8.2f MB  "
                   "(%.1f bytes/row)\n",
                   codec_name(codecs[c]), e ? "+aes" : "    ", best[e], (double)n / best[e] / 1e6,
                   (double)in_bytes / best[e] / 1e6, (double)bytes[e] / best[e] / 1e6,
                   (double)bytes[e] / 1e6, (double)bytes[e] / (double)n);
        if (encrypt)
            printf("%-7s encrypted / plain throughput: %.3f\n", codec_name(codecs[c]),
                   best[0] / best[1]);
    }
    tc_pq_crypt_destroy(crypt);
    tc_batch_destroy(b);
    return rc;
}
