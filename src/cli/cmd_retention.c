/*
 * cmd_retention.c -- `thermocline retention [--dry-run]`: drop the operational store's old days.
 *
 * Plain mode: detaches and drops the daily partitions older than the retention age, never today's,
 * and, unless the lake is not required, only the days whose rows the lake already holds: the lake's
 * progress files (lake/layout.h) are read here, where lake.dir is known, and handed to the store.
 * TimescaleDB mode: the extension's retention policy does this; the command says which job and when
 * it runs next, and fails naming each of the schema's jobs (retention, compression, refreshes)
 * whose last run failed: a scheduled policy is no proof that it works. --max-age is refused there,
 * not ignored: the policy's age was set by migrate. See docs/store.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "lake/layout.h"
#include "store/store.h"

/* The lake's progress of a partition of the configured topic, for the store's retention. */
static tc_err tc_retention_lake_progress(void *opaque, int32_t partition, int64_t *next,
                                         char *errstr, size_t errstr_size)
{
    const tc_config *cfg = opaque;

    return tc_lake_progress_read(cfg->lake_dir, cfg->kafka_topic, partition, next, errstr,
                                 errstr_size);
}

static void tc_retention_print(void *opaque, const tc_retention_day *d)
{
    static const char *const what[] = {"dropped", "would drop", "kept (lake incomplete)"};
    unsigned m, dd;
    int y;

    (void)opaque;
    tc_time_civil_from_days(d->day, &y, &m, &dd);
    printf("%04d-%02u-%02u  %-22s  %s", y, m, dd, what[d->action], d->table);
    if (d->rows >= 0)
        printf("  rows %lld, lake %lld", (long long)d->rows, (long long)d->lake_rows);
    printf("\n");
}

int tc_cmd_retention(int argc, char **argv)
{
    static const struct option longopts[] = {{"dry-run", no_argument, NULL, 'n'},
                                             {"max-age", required_argument, NULL, 'a'},
                                             {"no-require-lake", no_argument, NULL, 'L'},
                                             {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "retention",
        .help = "usage: thermocline retention [options]\n\n"
                "Drop the operational store's days older than the retention age (plain mode):\n"
                "whole daily partitions, never today's, and only days the data lake already\n"
                "holds (its progress past every offset of the day's readings) unless the\n"
                "lake is not required. In TimescaleDB mode the retention policy does it;\n"
                "this reports it, and fails when a job of the schema failed its last run.\n\n"
                "  -n, --dry-run          show what would be dropped, drop nothing\n"
                "  -a, --max-age SECONDS  retention age, plain mode (retention.max_age_s)\n"
                "  -L, --no-require-lake  drop by age alone (this deployment has no lake)\n"
                "" TC_CLI_COMMON_HELP,
        .shortopts = "na:L",
        .longopts = longopts,
    };
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_retention_options ro = {0};
    tc_retention_result res = {0};
    tc_store_options so;
    tc_config *cfg;
    tc_store *store;
    long max_age = -1;
    int opt, rc = 0, no_lake = 0, audited = 0;
    int64_t started;
    tc_err err;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1) {
        if (opt == 'n')
            ro.dry_run = 1;
        else if (opt == 'a')
            max_age = tc_cli_parse_long("--max-age", optarg, 3600, 3153600000L);
        else if (opt == 'L')
            no_lake = 1;
    }
    tc_cli_args(&ps);
    cfg = tc_cli_config(&common);
    tc_store_options_for_owner(&so, cfg); /* drops partitions: the owner */
    ro.now_us = tc_time_now_us();
    ro.max_age_s = max_age > 0 ? max_age : cfg->retention_max_age_s;
    ro.require_lake = !no_lake && cfg->retention_require_lake;
    ro.on_day = tc_retention_print;
    if (cfg->lake_dir && *cfg->lake_dir) {
        ro.lake_progress = tc_retention_lake_progress;
        ro.lake_opaque = cfg;
    }
    store = tc_store_new(&so, errstr, sizeof(errstr));
    started = tc_time_now_us();
    err = store ? tc_store_retention(store, &ro, &res, errstr, sizeof(errstr)) : TC_ERR_CONFIG;
    /* Days dropped (plain mode) are a change; a dry run or TimescaleDB's report is not. */
    if (store && !ro.dry_run &&
        (err != TC_OK || (res.mode != TC_STORE_TIMESCALEDB && res.dropped))) {
        tc_jbuf params;
        tc_jbuf_init(&params, 4096);
        tc_jbuf_obj_begin(&params);
        tc_jbuf_key(&params, "max_age_s");
        tc_jbuf_int(&params, ro.max_age_s);
        tc_jbuf_key(&params, "require_lake");
        tc_jbuf_bool(&params, ro.require_lake);
        tc_jbuf_key(&params, "days_kept");
        tc_jbuf_int(&params, err == TC_OK ? (int64_t)res.kept : -1);
        tc_jbuf_obj_end(&params);
        audited =
            tc_cli_audit(cfg, "retention", cfg->pg_schema, &params,
                         err == TC_OK ? (int64_t)res.dropped : -1, err != TC_OK, errstr, started);
        tc_jbuf_free(&params);
    }
    if (err != TC_OK) {
        fprintf(stderr, "thermocline retention: %s\n", errstr);
        rc = TC_EXIT_FAILURE;
    } else if (res.mode == TC_STORE_TIMESCALEDB) {
        printf("TimescaleDB mode: %s\n", res.policy);
        if (max_age > 0) {
            /* The policy's age was set by migrate; an age given here would change nothing. */
            fprintf(stderr,
                    "thermocline retention: --max-age applies to plain mode; in TimescaleDB mode "
                    "the retention policy's age is retention.max_age_s at migrate\n");
            rc = TC_EXIT_USAGE;
        }
        if (res.failing) {
            fprintf(stderr,
                    "thermocline retention: %zu TimescaleDB job(s) of schema \"%s\" failed their "
                    "last run: %s\n",
                    res.failing, cfg->pg_schema, res.failing_jobs);
            rc = TC_EXIT_FAILURE;
        }
    } else {
        printf("plain mode, retention %lld s%s: %zu day(s) %s, %zu kept until the lake holds"
               " them\n",
               (long long)ro.max_age_s, ro.require_lake ? ", lake required" : "", res.dropped,
               ro.dry_run ? "would be dropped" : "dropped", res.kept);
        if (ro.require_lake && !ro.lake_progress && res.kept)
            printf("lake.dir is not set, so no day shows as held by the lake; --no-require-lake "
                   "drops by age alone\n");
    }
    tc_store_destroy(store);
    tc_config_destroy(cfg);
    return rc ? rc : audited;
}
