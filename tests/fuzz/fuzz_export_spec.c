/*
 * fuzz_export_spec.c -- libFuzzer target for the parser of export.schedules (export/spec.h) and
 * the cron/schedule parser under it (export/schedule.h).
 *
 * Beyond "no crash, no UB, no leak":
 *   - a refusal comes with a message naming export.schedules, and the same input is refused
 *     again with the same message (parsing is deterministic);
 *   - an accepted set obeys the header's bounds: names of allowed characters and unique, a known
 *     format and compression (never gzip with parquet), a lookback within bounds, an out
 *     directory;
 *   - the schedule of every accepted export either never runs, or its next run after a fixed
 *     instant is later than it, and the previous run at that next run is the next run itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_SPECS 8
/* 2026-12-05T00:00:00Z */
#define FZ_T0 INT64_C(1796428800)

static void fz_require(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s (%s)\n", what, detail ? detail : "");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tc_export_spec specs[FZ_SPECS];
    char err[512], err2[512];
    char *text;
    size_t n = 0, n2 = 0;
    tc_err rc;

    if (size > 4096)
        return 0;
    text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    setenv("TZ", "UTC", 1);
    rc = tc_export_specs_parse(text, specs, FZ_SPECS, &n, err, sizeof(err));
    if (rc != TC_OK) {
        fz_require(strstr(err, "export.schedules") != NULL, "message names the setting", err);
        fz_require(tc_export_specs_parse(text, specs, FZ_SPECS, &n2, err2, sizeof(err2)) == rc &&
                       !strcmp(err, err2),
                   "deterministic refusal", err);
        free(text);
        return 0;
    }
    fz_require(n <= FZ_SPECS, "spec count", NULL);
    for (size_t i = 0; i < n; i++) {
        const tc_export_spec *sp = &specs[i];
        int64_t next, prev;
        fz_require(sp->name[0] && strspn(sp->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST"
                                                   "UVWXYZ0123456789-_") == strlen(sp->name),
                   "name characters", sp->name);
        for (size_t j = 0; j < i; j++)
            fz_require(strcmp(sp->name, specs[j].name) != 0, "unique names", sp->name);
        fz_require(sp->format <= TC_EXPORT_NDJSON && sp->compress <= TC_EXPORT_GZIP, "format",
                   sp->name);
        fz_require(!(sp->format == TC_EXPORT_PARQUET && sp->compress == TC_EXPORT_GZIP),
                   "no gzip parquet", sp->name);
        fz_require(sp->lookback >= 1 && sp->lookback <= TC_EXPORT_LOOKBACK_MAX, "lookback",
                   sp->name);
        fz_require(sp->out[0] != '\0', "out", sp->name);
        fz_require(sp->ntags <= TC_EXPORT_TAGS_MAX, "tags", sp->name);
        if (tc_sched_next(&sp->schedule, FZ_T0, &next) != TC_OK)
            continue;
        fz_require(next > FZ_T0 && next <= FZ_T0 + TC_SCHED_HORIZON_S, "next in the horizon",
                   sp->schedule_text);
        fz_require(tc_sched_prev(&sp->schedule, next, &prev) == TC_OK && prev == next,
                   "prev of a run is the run", sp->schedule_text);
    }
    free(text);
    return 0;
}
