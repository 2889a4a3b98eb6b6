/*
 * bench_quality.c -- detection quality and cost of the quality monitor's detectors, offline.
 *
 * The simulator's fleet (src/ingest/simulator.c: a per-device level, a daily sine, uniform noise,
 * sensor quantisation to 0.01) with labelled anomalies (src/ingest/sim_anomaly.h) is generated in
 * delivery order -- silent devices skipped, late bursts held back, out-of-order pairs swapped --
 * and fed straight into the detectors (no Kafka, no database), with a silence tick every cadence of
 * event time at the watermark (the latest event time seen). The detectors never see the truth.
 *
 * Scoring, per kind (spike, drift, stuck, silence against the truth's spike, drift, stuck,
 * silent), on the same device (and metric, where the truth names one), with a tolerance of
 * TOL_CADENCES cadences on either side of the truth's [start, end]:
 *   recall     share of truth records some finding overlaps;
 *   precision  share of findings that overlap a truth record of their kind. A silence finding that
 *              overlaps a late burst is not counted either way: the device did go quiet on the
 *              wire while it buffered, which is what silence means, but the truth calls it late;
 *   delay      from the truth's start to the watermark at which the finding opened (median, p90).
 * It also checks the quality metrics against the truth: late readings and out-of-order readings
 * counted by tc_qm against the readings the simulator held back or swapped.
 *
 * Cost: the thread's CPU time spent in tc_qd_observe_batch and tc_qm_observe_batch (batches of
 * SLICE readings, as the pipeline's batches), tc_qd_tick and tc_qm_flush only (readings are
 * generated and laid out in columns first, untimed), per reading; and, separately, the whole
 * engine the quality sink runs (quality/monitor.h, dry: no database): the same readings as the
 * pipeline's batches (partition = device % MON_LANES) through tc_qmon_add -- gathering each
 * lane's rows, the detectors, the metrics, the silence ticks -- and tc_qmon_flush building every
 * document it would send to PostgreSQL, as often as the sink would. Memory: a detector fed 100,000
 * devices x 6 metrics (tc_qd_memory, and the growth of the process's resident set).
 *
 * Usage: bench_quality [--devices N] [--steps N] [--spec SPEC] [--seed S] [--json FILE]
 * prints the table; --json also writes the figures as one JSON object to FILE (bench/run-quality
 * records it in bench/results.jsonl).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/timeutil.h"
#include "ingest/sim_anomaly.h"
#include "ingest/simulator.h"
#include "quality/detect.h"
#include "quality/metrics.h"
#include "quality/monitor.h"

#define DEVICES_DEFAULT 10000
#define STEPS_DEFAULT   1440 /* four hours at 10 s */
#define CADENCE_MS      10000
#define CHUNK           (1u << 18)
#define MON_LANES       6    /* Kafka partitions of the monitor's run */
#define SLICE           1000 /* readings per batch handed to the detectors, like a pipeline batch */
#define TOL_CADENCES    10
#define MEMORY_DEVICES  100000
#define MEMORY_READINGS 30
#define LATE_AFTER_S    60
/* The series the detectors watch: the four metrics, not the coordinates, as the quality sink's
 * default (quality.detect_location off); the state of all six is held either way. */
#define WATCH        ((1u << 6) - 1 - (1u << TC_M_LATITUDE) - (1u << TC_M_LONGITUDE))
#define SPEC_DEFAULT "spike=0.01,drift=0.005,stuck=0.005,silent=0.002,late=0.01,ooo=0.005"
/* 2026-11-28T00:00:00Z: a fixed start, so runs compare. */
#define START_US INT64_C(1795824000000000)

enum { K_SPIKE, K_DRIFT, K_STUCK, K_SILENCE, K_SCORED };
static const char *const k_names[K_SCORED] = {"spike", "drift", "stuck", "silence"};

typedef struct finding {
    uint32_t dev;
    int8_t metric;
    uint8_t kind; /* tc_qd_kind */
    int64_t start, end, opened_at;
    int32_t next; /* next finding of the device, -1 */
} finding;

typedef struct truth {
    uint32_t dev;
    int8_t metric;
    uint8_t kind; /* tc_sim_akind */
    int64_t start, end;
    int32_t next;
} truth;

typedef struct bench {
    finding *f;
    size_t nf, capf;
    int32_t *fhead;
    int64_t watermark;
    int devices;
} bench;

/* The chunk in columns: what the pipeline's batch holds. */
static const char *col_ids[CHUNK];
static size_t col_lens[CHUNK];
static int64_t col_t[CHUNK], col_wm[CHUNK];
static long col_idx[CHUNK];
static double col_v[6][CHUNK];

static double cpu_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;

    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * 4;
}

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return p;
    *cap = *cap ? *cap * 2 : 4096;
    p = realloc(p, *cap * size);
    if (!p) {
        fprintf(stderr, "bench_quality: out of memory\n");
        exit(1);
    }
    return p;
}

static void on_finding(void *opaque, const tc_qd_finding *qf)
{
    bench *b = opaque;
    uint32_t dev = (uint32_t)strtoul(qf->device + strlen("sensor-"), NULL, 10);

    if (qf->end_us) {
        /* Resolve the open record of the same series, kind and start. */
        for (int32_t k = b->fhead[dev]; k >= 0; k = b->f[k].next)
            if (b->f[k].kind == qf->kind && b->f[k].metric == qf->metric &&
                b->f[k].start == qf->start_us && !b->f[k].end) {
                b->f[k].end = qf->end_us;
                return;
            }
        return;
    }
    b->f = grow(b->f, &b->capf, b->nf, sizeof(*b->f));
    b->f[b->nf] = (finding){dev, (int8_t)qf->metric, (uint8_t)qf->kind, qf->start_us,
                            0,   b->watermark,       b->fhead[dev]};
    b->fhead[dev] = (int32_t)b->nf++;
}

static int scored_of_finding(int qd_kind)
{
    switch (qd_kind) {
    case TC_QD_SPIKE:
        return K_SPIKE;
    case TC_QD_DRIFT:
        return K_DRIFT;
    case TC_QD_STUCK:
        return K_STUCK;
    case TC_QD_SILENCE:
        return K_SILENCE;
    default:
        return -1;
    }
}

static int scored_of_truth(int sim_kind)
{
    switch (sim_kind) {
    case TC_SIM_A_SPIKE:
        return K_SPIKE;
    case TC_SIM_A_DRIFT:
        return K_DRIFT;
    case TC_SIM_A_STUCK:
        return K_STUCK;
    case TC_SIM_A_SILENT:
        return K_SILENCE;
    default:
        return -1;
    }
}

static int overlaps(const finding *f, const truth *t, int64_t tol)
{
    int64_t fend = f->end ? f->end : INT64_MAX;

    return f->dev == t->dev && (t->metric < 0 || f->metric == t->metric) &&
           f->start <= t->end + tol && fend >= t->start - tol;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int devices = DEVICES_DEFAULT;
    FILE *json = NULL;
    int64_t steps = STEPS_DEFAULT, tol = (int64_t)TOL_CADENCES * CADENCE_MS * 1000;
    const char *spec = SPEC_DEFAULT;
    uint64_t seed = 1, i, fed = 0, late_true = 0, ooo_true = 0;
    tc_sim_anomalies an;
    tc_sim_options o = {0};
    tc_qd_options qo;
    tc_qm_options mo;
    tc_qd *qd;
    tc_qm *qm;
    tc_qm_totals mt;
    tc_sim_stream *stream;
    tc_sim_reading *buf;
    char errstr[TC_ERRSTR_MAX], (*ids)[24];
    bench b = {0};
    truth *t = NULL;
    size_t nt = 0, capt = 0;
    int32_t *thead;
    double cpu = 0, cpu_mon = 0;
    tc_batch *mb = tc_batch_new(SLICE, 0);
    tc_qmon *mon;
    tc_qmon_options mono;
    int64_t next_tick, next_flush = START_US;
    uint64_t tp_t[K_SCORED] = {0}, n_t[K_SCORED] = {0}, tp_f[K_SCORED] = {0}, n_f[K_SCORED] = {0},
             explained = 0, fp_metric[K_SCORED][7] = {{0}};
    int64_t *delays[K_SCORED];
    size_t nd[K_SCORED] = {0};

    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--devices") && a + 1 < argc)
            devices = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--steps") && a + 1 < argc)
            steps = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--spec") && a + 1 < argc)
            spec = argv[++a];
        else if (!strcmp(argv[a], "--seed") && a + 1 < argc)
            seed = strtoull(argv[++a], NULL, 10);
        else if (!strcmp(argv[a], "--json") && a + 1 < argc) {
            json = fopen(argv[++a], "w");
            if (!json) {
                perror(argv[a]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_quality [--devices N] [--steps N] [--spec SPEC] "
                            "[--seed S] [--json FILE]\n");
            return 2;
        }
    }
    if (devices < 1 || devices > 1000000 || steps < TC_SIM_EPOCH ||
        tc_sim_anomalies_parse(spec, &an, errstr, sizeof(errstr)) != TC_OK) {
        fprintf(stderr, "bench_quality: %s\n",
                devices < 1 || steps < TC_SIM_EPOCH ? "bad --devices or --steps" : errstr);
        return 2;
    }
    o.devices = devices;
    o.count = (uint64_t)devices * (uint64_t)steps;
    o.seed = seed;
    o.cadence_ms = CADENCE_MS;
    o.anomalies = &an;

    tc_qd_options_default(&qo, 6, (size_t)devices);
    qo.watch = WATCH;
    qd = tc_qd_new(&qo, on_finding, &b, errstr, sizeof(errstr));
    tc_qm_options_default(&mo, (size_t)devices);
    mo.late_after_s = LATE_AFTER_S;
    mo.ids = qd ? tc_qd_ids(qd) : NULL;
    qm = tc_qm_new(&mo, errstr, sizeof(errstr));
    stream = tc_sim_stream_new(&an, seed, devices, o.count);
    buf = malloc(CHUNK * sizeof(*buf));
    ids = malloc((size_t)devices * sizeof(*ids));
    b.fhead = malloc((size_t)devices * sizeof(*b.fhead));
    thead = malloc((size_t)devices * sizeof(*thead));
    if (!qd || !qm || !stream || !buf || !ids || !b.fhead || !thead) {
        fprintf(stderr, "bench_quality: %s\n", qd && qm ? "out of memory" : errstr);
        return 1;
    }
    for (int d = 0; d < devices; d++) {
        snprintf(ids[d], sizeof(ids[d]), "sensor-%05d", d);
        b.fhead[d] = thead[d] = -1;
    }
    tc_qmon_options_default(&mono);
    mono.dsn = "";
    mono.max_devices = (size_t)devices;
    mono.late_after_s = LATE_AFTER_S;
    mon = tc_qmon_new(&mono, errstr, sizeof(errstr));
    {
        int32_t parts[MON_LANES];
        int64_t next[MON_LANES];
        for (int p = 0; p < MON_LANES; p++)
            parts[p] = p;
        if (!mb || !mon || tc_qmon_open(mon, parts, MON_LANES, next, errstr, sizeof(errstr))) {
            fprintf(stderr, "bench_quality: the monitor: %s\n", mon ? errstr : "out of memory");
            return 1;
        }
    }
    b.devices = devices;
    next_tick = START_US + CADENCE_MS * 1000;
    b.watermark = START_US;

    /* Feed: generate a chunk (untimed), then time the detectors and metrics over it. */
    for (;;) {
        size_t n = 0;
        while (n < CHUNK && tc_sim_stream_next(stream, &i))
            tc_sim_reading_at(&o, i, START_US, &buf[n++]);
        if (!n)
            break;
        /* Columns, as the pipeline's batch has them (untimed). */
        for (size_t k = 0; k < n; k++) {
            col_ids[k] = ids[buf[k].device];
            col_lens[k] = strlen(col_ids[k]);
            col_t[k] = buf[k].t_us;
            for (int m = 0; m < 6; m++)
                col_v[m][k] = buf[k].metric[m];
        }
        double c0 = cpu_now();
        for (size_t at = 0; at < n; at += SLICE) {
            size_t len = n - at < SLICE ? n - at : SLICE;
            const double *cols[6];
            for (int m = 0; m < 6; m++)
                cols[m] = &col_v[m][at];
            for (size_t k = at; k < at + len; k++) {
                if (col_t[k] > b.watermark)
                    b.watermark = col_t[k];
                col_wm[k] = b.watermark; /* ingested "now": at the watermark */
            }
            /* One lookup a reading: the metrics share the detectors' id table. */
            tc_qd_observe_batch(qd, len, &col_ids[at], &col_lens[at], &col_t[at], cols, NULL, NULL,
                                &col_idx[at]);
            tc_qm_observe_batch_at(qm, len, &col_idx[at], &col_t[at], &col_wm[at], &col_wm[at],
                                   NULL, NULL, 6);
            if (b.watermark >= next_tick) {
                tc_qd_tick(qd, b.watermark);
                next_tick = b.watermark + CADENCE_MS * 1000;
            }
            if (b.watermark >= next_flush) {
                /* What the sink will do: minutes closed for late_after_s go to the store. */
                tc_qm_flush(qm, b.watermark - (LATE_AFTER_S + 60) * INT64_C(1000000), NULL, NULL);
                next_flush = b.watermark + INT64_C(60000000);
            }
        }
        cpu += cpu_now() - c0;
        /* The same readings through the quality sink's engine, a batch at a time. */
        for (size_t at = 0; at < n; at += SLICE) {
            size_t len = n - at < SLICE ? n - at : SLICE;
            double c1;
            tc_batch_reset(mb);
            for (size_t k = at; k < at + len; k++) {
                size_t r = mb->n;
                tc_batch_row_begin(mb);
                mb->time_us[r] = col_t[k];
                mb->device_id[r] = (tc_slice){col_ids[k], (uint32_t)col_lens[k]};
                for (int m = 0; m < 6; m++) {
                    mb->metric[m][r] = col_v[m][k];
                    mb->present[m][r] = 1;
                }
                mb->partition[r] = (int32_t)(buf[k].device % MON_LANES);
                mb->offset[r] = (int64_t)(fed + k);
                tc_batch_row_commit(mb);
            }
            c1 = cpu_now();
            tc_qmon_add(mon, mb, NULL, NULL, NULL, 0, col_wm[at + len - 1]);
            if (tc_qmon_due(mon, tc_time_now_us()) &&
                tc_qmon_flush(mon, errstr, sizeof(errstr)) != TC_OK) {
                fprintf(stderr, "bench_quality: the monitor's flush: %s\n", errstr);
                return 1;
            }
            cpu_mon += cpu_now() - c1;
        }
        fed += n;
    }
    tc_qm_get_totals(qm, &mt);

    /* Truth: every (device, step), as the simulator would write it. */
    for (int d = 0; d < devices; d++)
        for (int64_t s = 0; s < steps; s++) {
            tc_sim_episode ep[2];
            int n = tc_sim_truth_at(&an, seed, (uint64_t)d, s, steps, ep);
            for (int k = 0; k < n; k++) {
                tc_sim_reading first, last;
                tc_sim_reading_at(&o, (uint64_t)ep[k].first * (uint64_t)devices + (uint64_t)d,
                                  START_US, &first);
                tc_sim_reading_at(&o, (uint64_t)ep[k].last * (uint64_t)devices + (uint64_t)d,
                                  START_US, &last);
                t = grow(t, &capt, nt, sizeof(*t));
                t[nt] = (truth){(uint32_t)d,         (int8_t)ep[k].metric,
                                (uint8_t)ep[k].kind, first.t_us,
                                last.t_us,           thead[d]};
                thead[d] = (int32_t)nt++;
                if (ep[k].kind == TC_SIM_A_LATE)
                    late_true += (uint64_t)(ep[k].last - ep[k].first + 1);
                if (ep[k].kind == TC_SIM_A_OOO)
                    ooo_true += (uint64_t)(ep[k].last - ep[k].first + 1) / 2;
            }
        }

    for (int k = 0; k < K_SCORED; k++)
        delays[k] = malloc((nt + 1) * sizeof(int64_t));
    for (size_t x = 0; x < nt; x++) {
        int k = scored_of_truth(t[x].kind);
        int64_t first_open = INT64_MAX;
        if (k < 0)
            continue;
        n_t[k]++;
        for (int32_t y = b.fhead[t[x].dev]; y >= 0; y = b.f[y].next)
            if (scored_of_finding(b.f[y].kind) == k && overlaps(&b.f[y], &t[x], tol) &&
                b.f[y].opened_at < first_open)
                first_open = b.f[y].opened_at;
        if (first_open != INT64_MAX) {
            tp_t[k]++;
            delays[k][nd[k]++] = first_open - t[x].start;
        }
    }
    for (size_t y = 0; y < b.nf; y++) {
        int k = scored_of_finding(b.f[y].kind), hit = 0, late = 0;
        if (k < 0)
            continue;
        for (int32_t x = thead[b.f[y].dev]; x >= 0; x = t[x].next) {
            if (scored_of_truth(t[x].kind) == k && overlaps(&b.f[y], &t[x], tol))
                hit = 1;
            if (k == K_SILENCE && t[x].kind == TC_SIM_A_LATE && overlaps(&b.f[y], &t[x], tol))
                late = 1;
        }
        if (!hit && late) {
            explained++;
            continue;
        }
        n_f[k]++;
        tp_f[k] += (uint64_t)hit;
        if (!hit)
            fp_metric[k][b.f[y].metric + 1]++;
        if (!hit && getenv("BQ_DEBUG")) {
            fprintf(stderr, "false %s dev %u metric %d [%lld, %lld] opened %lld\n", k_names[k],
                    b.f[y].dev, b.f[y].metric, (long long)(b.f[y].start - START_US) / 1000000,
                    (long long)(b.f[y].end ? (b.f[y].end - START_US) / 1000000 : -1),
                    (long long)(b.f[y].opened_at - START_US) / 1000000);
            for (int32_t x = thead[b.f[y].dev]; x >= 0; x = t[x].next)
                fprintf(stderr, "   truth %s metric %d [%lld, %lld]\n",
                        tc_sim_anomaly_name(t[x].kind), t[x].metric,
                        (long long)(t[x].start - START_US) / 1000000,
                        (long long)(t[x].end - START_US) / 1000000);
        }
    }

    /* Memory: 100,000 devices x 6 metrics, a few readings each. */
    size_t mem_model = tc_qd_memory_for(MEMORY_DEVICES, 6), mem_held;
    long rss0 = rss_kb(), rss1;
    {
        tc_qd_options mq;
        tc_qd *m;
        tc_qd_options_default(&mq, 6, MEMORY_DEVICES);
        m = tc_qd_new(&mq, NULL, NULL, errstr, sizeof(errstr));
        if (!m) {
            fprintf(stderr, "bench_quality: %s\n", errstr);
            return 1;
        }
        for (int s = 0; s < MEMORY_READINGS; s++)
            for (int d = 0; d < MEMORY_DEVICES; d++) {
                char id[24];
                double v[6] = {20 + d % 7, 50, 1000, 90, 10, 10};
                snprintf(id, sizeof(id), "sensor-%06d", d);
                tc_qd_observe(m, id, strlen(id), START_US + (int64_t)s * 10000000, v, NULL);
            }
        mem_held = tc_qd_memory(m);
        rss1 = rss_kb();
        tc_qd_destroy(m);
    }

    double us = cpu * 1e6 / (double)fed;
    printf("bench_quality: %d devices x %lld readings (%llu fed), spec %s, seed %llu\n", devices,
           (long long)steps, (unsigned long long)fed, spec, (unsigned long long)seed);
    printf("%-8s %7s %7s %9s %9s %6s %12s %12s\n", "kind", "truth", "found", "precision", "recall",
           "F1", "delay p50 s", "delay p90 s");
    if (json)
        fprintf(json,
                "{\"bench\":\"quality\",\"devices\":%d,\"steps\":%lld,\"cadence_s\":%d,"
                "\"spec\":\"%s\",\"seed\":%llu,\"kinds\":{",
                devices, (long long)steps, CADENCE_MS / 1000, spec, (unsigned long long)seed);
    for (int k = 0; k < K_SCORED; k++) {
        double p = n_f[k] ? (double)tp_f[k] / (double)n_f[k] : 1.0;
        double r = n_t[k] ? (double)tp_t[k] / (double)n_t[k] : 1.0;
        double f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
        double d50 = 0, d90 = 0;
        if (nd[k]) {
            qsort(delays[k], nd[k], sizeof(int64_t), cmp_i64);
            d50 = (double)delays[k][nd[k] / 2] / 1e6;
            d90 = (double)delays[k][nd[k] * 9 / 10] / 1e6;
        }
        printf("%-8s %7llu %7llu %9.4f %9.4f %6.3f %12.1f %12.1f\n", k_names[k],
               (unsigned long long)n_t[k], (unsigned long long)n_f[k], p, r, f1, d50, d90);
        if (json)
            fprintf(json,
                    "%s\"%s\":{\"truth\":%llu,\"findings\":%llu,\"precision\":%.4f,"
                    "\"recall\":%.4f,\"f1\":%.4f,\"delay_p50_s\":%.1f,\"delay_p90_s\":%.1f}",
                    k ? "," : "", k_names[k], (unsigned long long)n_t[k],
                    (unsigned long long)n_f[k], p, r, f1, d50, d90);
    }
    printf("false findings by metric (device-level, temperature, humidity, pressure, battery, "
           "latitude, longitude):\n");
    for (int k = 0; k < K_SCORED; k++) {
        printf("  %-8s", k_names[k]);
        for (int m = 0; m < 7; m++)
            printf(" %llu", (unsigned long long)fp_metric[k][m]);
        printf("\n");
    }
    printf("silence findings during late bursts (not scored): %llu\n",
           (unsigned long long)explained);
    /* A late reading arrives after newer ones: it counts as out of order too. */
    printf("late readings counted %llu, injected %llu; out of order counted %llu, injected %llu "
           "(swapped) + %llu (late)\n",
           (unsigned long long)mt.late, (unsigned long long)late_true,
           (unsigned long long)mt.out_of_order, (unsigned long long)ooo_true,
           (unsigned long long)late_true);
    printf("cpu: %.3f us per reading (detectors on the 4 metrics + the metrics of 6 fields a "
           "reading)\n",
           us);
    printf("cpu: %.3f us per reading for the quality sink's engine (tc_qmon_add and its flushes' "
           "documents, %d lanes, no rules, no database)\n",
           cpu_mon * 1e6 / (double)(fed ? fed : 1), MON_LANES);
    printf("memory for %d devices x 6 metrics: %.1f MB held (model %.1f MB), resident growth "
           "%.1f MB\n",
           MEMORY_DEVICES, (double)mem_held / 1e6, (double)mem_model / 1e6,
           (double)(rss1 - rss0) * 1024 / 1e6);
    if (json) {
        fprintf(json,
                "},\"silence_explained_by_late\":%llu,\"late_counted\":%llu,"
                "\"late_injected\":%llu,\"ooo_counted\":%llu,\"ooo_injected\":%llu,"
                "\"cpu_us_per_reading\":%.4f,\"monitor_cpu_us_per_reading\":%.4f,"
                "\"memory_100k_x6_bytes\":%zu,"
                "\"rss_growth_100k_x6_bytes\":%ld}\n",
                (unsigned long long)explained, (unsigned long long)mt.late,
                (unsigned long long)late_true, (unsigned long long)mt.out_of_order,
                (unsigned long long)(ooo_true + late_true), us,
                cpu_mon * 1e6 / (double)(fed ? fed : 1), mem_held, (rss1 - rss0) * 1024);
        fclose(json);
    }
    tc_qmon_destroy(mon);
    tc_batch_destroy(mb);
    for (int k = 0; k < K_SCORED; k++)
        free(delays[k]);
    free(t);
    free(thead);
    free(b.f);
    free(b.fhead);
    free(ids);
    free(buf);
    tc_sim_stream_destroy(stream);
    tc_qm_destroy(qm);
    tc_qd_destroy(qd);
    return 0;
}
