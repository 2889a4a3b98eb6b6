/*
 * bench_export.c -- throughput and peak memory of `thermocline export` (export/export.h).
 *
 * Writes a synthetic lake of N readings (default 10,000,000) in the lake's own schema and layout
 * (lake/sink.h's columns, lake/layout.h's names; 4 days, 4 Kafka partitions, files of 1 Mi rows
 * with the lake's default row groups of 65,536 rows; 10,000 devices, smooth metrics at sensor
 * precision, a few tag sets), then exports the whole range to Parquet and to CSV, each in a child
 * process, so that its CPU time (user + system) and peak resident memory (ru_maxrss) are the
 * export's alone. Rows per CPU-second is the per-core figure (the export is one thread).
 *
 * Usage: bench_export [rows] [--dir DIR] [--json FILE]
 *   --dir   where the lake and the exports go (default: a new directory under /tmp, removed)
 *   --json  write the results as one JSON object (bench/run-export records it)
 */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/batch.h"
#include "core/durable.h"
#include "export/export.h"
#include "lake/layout.h"
#include "lake/parquet.h"
#include "lake/sink.h"

#define BENCH_DEVICES    10000
#define BENCH_DAYS       4
#define BENCH_PARTITIONS 4
#define BENCH_FILE_ROWS  ((size_t)1 << 20)
#define BENCH_CALL_ROWS  ((size_t)65536)
#define BENCH_PATH_MAX   4096
/* 2026-11-01T00:00:00Z */
#define BENCH_T0_US (INT64_C(1793491200) * 1000000)

static uint64_t rng = 0x853c49e6748fea9bULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

typedef struct bench_rows {
    int64_t time_us[BENCH_CALL_ROWS], offset[BENCH_CALL_ROWS];
    int32_t partition[BENCH_CALL_ROWS], schema_version[BENCH_CALL_ROWS];
    tc_slice device[BENCH_CALL_ROWS], tags[BENCH_CALL_ROWS], extra[BENCH_CALL_ROWS];
    double metric[TC_METRIC__COUNT][BENCH_CALL_ROWS];
    uint8_t present[TC_METRIC__COUNT][BENCH_CALL_ROWS];
} bench_rows;

static char bench_device_ids[BENCH_DEVICES][24];
static const char *const bench_tags[] = {"{\"site\":\"berlin-1\",\"fw\":\"1.2.0\"}",
                                         "{\"site\":\"paris-2\",\"fw\":\"1.3.0\"}",
                                         "{\"site\":\"oslo-1\",\"fw\":\"1.2.0\"}", NULL};

/* One lake file of rows [first, first + n) of partition p, all on day `day`. */
static int bench_file(const char *root, int64_t day, int p, int64_t first, size_t n,
                      int64_t *clock_us, bench_rows *r)
{
    char dir[BENCH_PATH_MAX], name[TC_LAKE_NAME_MAX], path[BENCH_PATH_MAX + TC_LAKE_NAME_MAX],
        err[256];
    const tc_parquet_column *cols;
    size_t ncols = tc_lake_columns(&cols);
    tc_parquet_options po;
    tc_parquet_writer *w;
    int fd;

    tc_lake_day_dir(dir, sizeof(dir), root, day);
    if (tc_durable_mkdirs(dir, err, sizeof(err)) != TC_OK)
        return fprintf(stderr, "%s\n", err), -1;
    tc_lake_name_part(name, sizeof(name), "bench", p, first, first + (int64_t)n - 1);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    tc_parquet_options_default(&po);
    po.row_group_rows = 65536; /* lake.row_group_rows' default */
    po.crypt = NULL;
    w = fd >= 0 ? tc_parquet_writer_new(fd, cols, ncols, &po, err, sizeof(err)) : NULL;
    if (!w)
        return fprintf(stderr, "bench_export: %s: %s\n", path, fd < 0 ? "open" : err), -1;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < BENCH_CALL_ROWS ? n - done : BENCH_CALL_ROWS;
        tc_parquet_values v[32];
        size_t c = 0;
        for (size_t i = 0; i < k; i++) {
            uint64_t x = rnd();
            size_t dev = (size_t)(x % BENCH_DEVICES);
            double ph = (double)(*clock_us / 1000000 % 86400) / 86400.0 * 6.283;
            *clock_us += 86400000000 / ((int64_t)BENCH_FILE_ROWS * 3);
            r->time_us[i] = *clock_us;
            r->device[i] =
                (tc_slice){bench_device_ids[dev], (uint32_t)strlen(bench_device_ids[dev])};
            const char *t = bench_tags[dev % 4];
            r->tags[i] = (tc_slice){t, t ? (uint32_t)strlen(t) : 0};
            r->extra[i] = (tc_slice){NULL, 0};
            r->partition[i] = p;
            r->offset[i] = first + (int64_t)(done + i);
            r->schema_version[i] = 1;
            r->metric[0][i] = round((20 + 5 * sin(ph) + (double)(dev % 7)) * 100) / 100;
            r->metric[1][i] = round((50 + 10 * cos(ph)) * 100) / 100;
            r->metric[2][i] = round((1013 + (double)(x >> 40 & 0xff) / 100) * 10) / 10;
            r->metric[3][i] = round((3.7 - (double)(dev % 50) / 100) * 100) / 100;
            r->metric[4][i] = round((48.8 + (double)dev / 1e5) * 1e6) / 1e6;
            r->metric[5][i] = round((2.3 + (double)dev / 1e5) * 1e6) / 1e6;
            for (int m = 0; m < TC_METRIC__COUNT; m++)
                r->present[m][i] = (x >> (m + 3) & 31) != 0;
        }
        v[c++] = (tc_parquet_values){r->time_us, NULL};
        v[c++] = (tc_parquet_values){r->device, NULL};
        for (int m = 0; m < TC_METRIC__COUNT; m++)
            v[c++] = (tc_parquet_values){r->metric[m], r->present[m]};
        v[c++] = (tc_parquet_values){r->tags, NULL};
        v[c++] = (tc_parquet_values){r->extra, NULL};
        v[c++] = (tc_parquet_values){r->partition, NULL};
        v[c++] = (tc_parquet_values){r->offset, NULL};
        v[c++] = (tc_parquet_values){r->schema_version, NULL};
        if (c != ncols || tc_parquet_write(w, v, k, err, sizeof(err)) != TC_OK)
            return fprintf(stderr, "bench_export: write: %s\n", err), -1;
        done += k;
    }
    if (tc_parquet_close(w, err, sizeof(err)) != TC_OK)
        return fprintf(stderr, "bench_export: close: %s\n", err), -1;
    tc_parquet_writer_destroy(w);
    close(fd);
    return 0;
}

typedef struct bench_result {
    double wall_s, cpu_s, rows_per_cpu_s, peak_rss_mib;
    uint64_t rows, bytes;
} bench_result;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The export in a child; its rusage is the export's alone. */
static int bench_export(const char *root, const char *out, tc_export_format f, bench_result *b)
{
    int pfd[2], status = 0;
    struct rusage ru;
    double t0 = now_s();
    pid_t pid;

    if (pipe(pfd) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        tc_export_options o = {.lake_dir = root,
                               .from_us = BENCH_T0_US,
                               .to_us = BENCH_T0_US + (int64_t)(BENCH_DAYS + 1) * 86400000000,
                               .format = f,
                               .profile = "full",
                               .mask = TC_MASK_FULL,
                               .out_dir = out};
        tc_export_result res;
        char err[1024];
        close(pfd[0]);
        if (tc_export_run(&o, &res, err, sizeof(err)) != TC_OK) {
            fprintf(stderr, "bench_export: %s\n", err);
            _exit(1);
        }
        if (write(pfd[1], &res, sizeof(res)) != (ssize_t)sizeof(res))
            _exit(1);
        _exit(0);
    }
    close(pfd[1]);
    tc_export_result res;
    ssize_t got = read(pfd[0], &res, sizeof(res));
    close(pfd[0]);
    if (pid < 0 || wait4(pid, &status, 0, &ru) != pid || status != 0 || got != (ssize_t)sizeof(res))
        return -1;
    b->wall_s = now_s() - t0;
    b->cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    b->rows = res.rows;
    b->bytes = res.bytes;
    b->rows_per_cpu_s = (double)res.rows / b->cpu_s;
    b->peak_rss_mib = (double)ru.ru_maxrss / 1024.0;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t rows = 10000000;
    const char *dir = NULL, *json = NULL;
    char root[BENCH_PATH_MAX], out[BENCH_PATH_MAX + 32], tmpl[] = "/tmp/tc-bench-export-XXXXXX";
    static bench_rows r;
    bench_result pq = {0}, csv = {0};
    int64_t clock_us = BENCH_T0_US;
    uint64_t done = 0;
    int64_t next_offset[BENCH_PARTITIONS] = {0};

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else
            rows = strtoull(argv[i], NULL, 10);
    }
    if (!dir && !(dir = mkdtemp(tmpl)))
        return perror("mkdtemp"), 1;
    snprintf(root, sizeof(root), "%s/lake", dir);
    for (int d = 0; d < BENCH_DEVICES; d++)
        snprintf(bench_device_ids[d], sizeof(bench_device_ids[d]), "sensor-%05d", d);
    /* Each file holds a third of a day (of one partition), the days in turn. */
    while (done < rows) {
        size_t n = rows - done < BENCH_FILE_ROWS ? (size_t)(rows - done) : BENCH_FILE_ROWS;
        size_t fi = (size_t)(done / BENCH_FILE_ROWS);
        int p = (int)(fi % BENCH_PARTITIONS);
        int64_t day = BENCH_T0_US / 86400000000 + (int64_t)(fi / 3 % BENCH_DAYS);
        clock_us = day * 86400000000 + (int64_t)(fi % 3) * 28800000000;
        if (bench_file(root, day, p, next_offset[p], n, &clock_us, &r) != 0)
            return 1;
        next_offset[p] += (int64_t)n;
        done += n;
    }
    snprintf(out, sizeof(out), "%s/out-parquet", dir);
    if (bench_export(root, out, TC_EXPORT_PARQUET, &pq) != 0)
        return fprintf(stderr, "bench_export: the Parquet export failed\n"), 1;
    snprintf(out, sizeof(out), "%s/out-csv", dir);
    if (bench_export(root, out, TC_EXPORT_CSV, &csv) != 0)
        return fprintf(stderr, "bench_export: the CSV export failed\n"), 1;
    printf("%-8s %12s %10s %10s %14s %12s %10s\n", "format", "rows", "wall s", "cpu s",
           "rows/cpu-s", "MB out", "peak MiB");
    printf("%-8s %12llu %10.2f %10.2f %14.0f %12.1f %10.1f\n", "parquet",
           (unsigned long long)pq.rows, pq.wall_s, pq.cpu_s, pq.rows_per_cpu_s,
           (double)pq.bytes / 1e6, pq.peak_rss_mib);
    printf("%-8s %12llu %10.2f %10.2f %14.0f %12.1f %10.1f\n", "csv", (unsigned long long)csv.rows,
           csv.wall_s, csv.cpu_s, csv.rows_per_cpu_s, (double)csv.bytes / 1e6, csv.peak_rss_mib);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f)
            return perror(json), 1;
        fprintf(f,
                "{\"bench\":\"export\",\"rows\":%llu,"
                "\"parquet\":{\"wall_s\":%.3f,\"cpu_s\":%.3f,\"rows_per_cpu_s\":%.0f,"
                "\"bytes\":%llu,\"peak_rss_mib\":%.1f},"
                "\"csv\":{\"wall_s\":%.3f,\"cpu_s\":%.3f,\"rows_per_cpu_s\":%.0f,"
                "\"bytes\":%llu,\"peak_rss_mib\":%.1f}}\n",
                (unsigned long long)rows, pq.wall_s, pq.cpu_s, pq.rows_per_cpu_s,
                (unsigned long long)pq.bytes, pq.peak_rss_mib, csv.wall_s, csv.cpu_s,
                csv.rows_per_cpu_s, (unsigned long long)csv.bytes, csv.peak_rss_mib);
        fclose(f);
    }
    if (!strncmp(dir, "/tmp/tc-bench-export-", 21)) {
        char cmd[BENCH_PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_export: could not remove %s\n", dir);
    }
    return 0;
}
