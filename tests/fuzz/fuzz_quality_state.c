/*
 * fuzz_quality_state.c -- libFuzzer target for tc_qd_load, the anomaly detectors' checkpoint
 * loader (a file the process reads back after a restart, so it must survive any bytes).
 *
 * The checksum would stop almost every mutation at the door, so when the first byte is odd the
 * target rewrites the last 8 bytes with the right checksum of the rest for the version its header
 * names (tc_qd_checksum): the fuzzer then reaches the field-by-field validation behind it.
 * Invariants:
 *   - a refused checkpoint leaves the detector as it was: its saved bytes before and after are
 *     identical, and the refusal has a message;
 *   - an accepted checkpoint of the current version saves back to exactly the same bytes (the
 *     format is canonical and nothing is lost); one of an older version (1 or 2: every field
 *     written) saves to no more bytes, and that save loads into a fresh detector and saves back
 *     to itself; the detector goes on working: readings and a tick on top of it, and its
 *     open-findings count never underflows;
 *   - the same bytes as a record merged into a detector that holds a device already
 *     (tc_qd_merge, the incremental checkpoint's loader): refused, the state is unchanged;
 *     accepted, they are accepted by tc_qd_load too and the detector still saves;
 *   - an accepted checkpoint loads into a detector that watches metric 0 only, whose
 *     tc_qd_resolve_unwatched closes metric 1's open findings once (a second call closes none,
 *     at most four a device), and they stay closed through its save and a load.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quality/detect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_METRICS 2
#define FZ_DEVICES 16

static void fz_require(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s (%s)\n", what, detail ? detail : "");
        abort();
    }
}

/* A detector feeding the series of watch (a bit per metric). */
static tc_qd *fz_new_watching(uint32_t watch)
{
    char errstr[TC_ERRSTR_MAX];
    tc_qd_options o;
    tc_qd *d;

    tc_qd_options_default(&o, FZ_METRICS, FZ_DEVICES);
    o.watch = watch;
    d = tc_qd_new(&o, NULL, NULL, errstr, sizeof(errstr));
    fz_require(d != NULL, "detector", errstr);
    return d;
}

static tc_qd *fz_new(void)
{
    return fz_new_watching((1u << FZ_METRICS) - 1);
}

/* Checkpoint in (accepted by a detector watching all) into one watching metric 0 only. */
static void fz_unwatched(const unsigned char *in, size_t size)
{
    char errstr[TC_ERRSTR_MAX] = "";
    tc_qd *w = fz_new_watching(1), *w2 = fz_new_watching(1);
    unsigned char *saved = NULL;
    size_t nsaved = 0, closed;
    tc_qd_stats st;

    fz_require(tc_qd_load(w, in, size, errstr, sizeof(errstr)) == TC_OK,
               "a checkpoint loads whatever the detector watches", errstr);
    closed = tc_qd_resolve_unwatched(w);
    fz_require(closed <= (size_t)FZ_DEVICES * 4, "at most four findings a series", NULL);
    fz_require(tc_qd_resolve_unwatched(w) == 0, "resolved once", NULL);
    tc_qd_get_stats(w, &st);
    fz_require(st.open_now < (uint64_t)FZ_DEVICES * 5 + 1, "open findings bounded", NULL);
    fz_require(tc_qd_save(w, &saved, &nsaved, errstr, sizeof(errstr)) == TC_OK, "save", errstr);
    fz_require(tc_qd_load(w2, saved, nsaved, errstr, sizeof(errstr)) == TC_OK, "reload", errstr);
    fz_require(tc_qd_resolve_unwatched(w2) == 0, "resolved findings stay resolved", NULL);
    free(saved);
    tc_qd_destroy(w);
    tc_qd_destroy(w2);
}

/* A detector with some state of its own, so "unchanged" means something. */
static void fz_seed(tc_qd *d)
{
    for (int i = 0; i < 30; i++) {
        double v[FZ_METRICS] = {20.0 + (i % 3) * 0.1, 50.0};
        tc_qd_observe(d, "seed-device", 11, (int64_t)i * 10000000, v, NULL);
    }
}

/* The format version a checkpoint's header names (bytes 4 to 7, little-endian; 0: too short). */
static uint64_t fz_version(const unsigned char *p, size_t size)
{
    uint64_t v = 0;

    for (int k = 0; size >= 8 && k < 4; k++)
        v |= (uint64_t)p[4 + k] << (8 * k);
    return v;
}

/* saved (n bytes) is what a detector that accepted in (size bytes) saves: in itself when in is of
 * the current version; otherwise no longer than in, and a checkpoint that a fresh detector takes
 * and saves back to itself. */
static int fz_saves_back(const unsigned char *saved, size_t n, const unsigned char *in, size_t size)
{
    char errstr[TC_ERRSTR_MAX] = "";
    unsigned char *again = NULL;
    size_t nagain = 0;
    tc_qd *d;
    int same;

    if (fz_version(in, size) == TC_QD_CHECKPOINT_VERSION)
        return n == size && !memcmp(saved, in, size);
    if (n > size)
        return 0;
    d = fz_new();
    fz_require(tc_qd_load(d, saved, n, errstr, sizeof(errstr)) == TC_OK,
               "a checkpoint converted to the current version loads", errstr);
    fz_require(tc_qd_save(d, &again, &nagain, errstr, sizeof(errstr)) == TC_OK, "save", errstr);
    same = nagain == n && !memcmp(again, saved, n);
    free(again);
    tc_qd_destroy(d);
    return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *in = malloc(size ? size : 1), *before = NULL, *after = NULL;
    size_t nbefore = 0, nafter = 0;
    char errstr[TC_ERRSTR_MAX] = "";
    tc_qd *d = fz_new();
    tc_qd_stats st;

    fz_require(in != NULL, "memory", NULL);
    memcpy(in, data, size);
    if (size > 8 && (in[0] & 1)) {
        uint64_t h = tc_qd_checksum(in, size - 8, fz_version(in, size));
        for (int k = 0; k < 8; k++)
            in[size - 8 + (size_t)k] = (unsigned char)(h >> (8 * k));
    }
    fz_seed(d);
    fz_require(tc_qd_save(d, &before, &nbefore, errstr, sizeof(errstr)) == TC_OK, "save", errstr);
    if (tc_qd_load(d, in, size, errstr, sizeof(errstr)) != TC_OK) {
        fz_require(errstr[0] != '\0', "refusal has a message", NULL);
        fz_require(tc_qd_save(d, &after, &nafter, errstr, sizeof(errstr)) == TC_OK, "save", errstr);
        fz_require(nafter == nbefore && !memcmp(after, before, nbefore),
                   "a refused checkpoint leaves the state unchanged", NULL);
    } else {
        fz_require(tc_qd_save(d, &after, &nafter, errstr, sizeof(errstr)) == TC_OK, "save", errstr);
        fz_require(fz_saves_back(after, nafter, in, size),
                   "an accepted checkpoint saves back to the same state", NULL);
        for (int i = 0; i < 8; i++) {
            double v[FZ_METRICS] = {(double)i, -(double)i};
            tc_qd_observe(d, "seed-device", 11, INT64_C(1) << 50, v, NULL);
            tc_qd_observe(d, "another", 7, (int64_t)i * 1000000, v, NULL);
        }
        tc_qd_tick(d, INT64_C(1) << 52);
        tc_qd_get_stats(d, &st);
        fz_require(st.open_now < (uint64_t)FZ_DEVICES * 5 + 1, "open findings bounded", NULL);
    }
    free(before);
    free(after);
    before = after = NULL;
    {
        tc_qd *m = fz_new();
        const unsigned char *rec = in;
        int loaded = tc_qd_load(d, in, size, errstr, sizeof(errstr)) == TC_OK;

        fz_seed(m);
        fz_require(tc_qd_save(m, &before, &nbefore, errstr, sizeof(errstr)) == TC_OK, "save",
                   errstr);
        if (tc_qd_merge(m, &rec, &size, 1, errstr, sizeof(errstr)) != TC_OK) {
            fz_require(errstr[0] != '\0', "refusal has a message", NULL);
            fz_require(tc_qd_save(m, &after, &nafter, errstr, sizeof(errstr)) == TC_OK, "save",
                       errstr);
            fz_require(nafter == nbefore && !memcmp(after, before, nbefore),
                       "a refused record leaves the state unchanged", NULL);
        } else {
            fz_require(loaded, "a merged record is a checkpoint tc_qd_load takes", NULL);
            fz_require(tc_qd_save(m, &after, &nafter, errstr, sizeof(errstr)) == TC_OK, "save",
                       errstr);
        }
        tc_qd_destroy(m);
        if (loaded)
            fz_unwatched(in, size);
    }
    free(before);
    free(after);
    free(in);
    tc_qd_destroy(d);
    return 0;
}
