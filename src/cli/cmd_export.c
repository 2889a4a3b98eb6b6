/*
 * cmd_export.c -- `thermocline export`: one export of a time range of the lake (export/export.h),
 * or, with --scheduled, the exports of the configuration's export.schedules
 * (export/scheduled.h).
 *
 * The scheduled exports run in a process of their own rather than inside `thermocline run`: an
 * export reads and writes gigabytes and spends CPU on compression, which inside the pipeline
 * would compete with ingestion's threads and memory and make its latency depend on a BI team's
 * schedule; it needs the lake only (no Kafka, no PostgreSQL), so it can run where the lake or a
 * replica of it is; and its time-zone computations set TZ, which is safe in a process whose
 * only thread computing local times is the scheduler.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "export/export.h"
#include "cli/export_scheduled.h"
#include "export/spec.h"

enum {
    TC_EXPORT_OPT_FROM = 256,
    TC_EXPORT_OPT_TO,
    TC_EXPORT_OPT_DEVICES,
    TC_EXPORT_OPT_TAGS,
    TC_EXPORT_OPT_METRICS,
    TC_EXPORT_OPT_FORMAT,
    TC_EXPORT_OPT_COMPRESS,
    TC_EXPORT_OPT_PROFILE,
    TC_EXPORT_OPT_OUT,
    TC_EXPORT_OPT_SCHEDULED,
    TC_EXPORT_OPT_ONCE,
    TC_EXPORT_OPT_LISTEN,
    TC_EXPORT_OPT_NOW,
};

/* The --now of tests and of catching up by hand: an RFC 3339 time. */
static int64_t tc_export_cli_time(const tc_cli_spec *spec, const char *what, const char *s)
{
    int64_t us;

    if (tc_time_parse_rfc3339(s, strlen(s), &us) != TC_OK)
        tc_cli_usage_error(spec, "%s \"%s\" is not an RFC 3339 time (2026-12-01T00:00:00Z)", what,
                           s);
    return us;
}

int tc_cmd_export(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"from", required_argument, NULL, TC_EXPORT_OPT_FROM},
        {"to", required_argument, NULL, TC_EXPORT_OPT_TO},
        {"devices", required_argument, NULL, TC_EXPORT_OPT_DEVICES},
        {"tags", required_argument, NULL, TC_EXPORT_OPT_TAGS},
        {"metrics", required_argument, NULL, TC_EXPORT_OPT_METRICS},
        {"format", required_argument, NULL, TC_EXPORT_OPT_FORMAT},
        {"compress", required_argument, NULL, TC_EXPORT_OPT_COMPRESS},
        {"profile", required_argument, NULL, TC_EXPORT_OPT_PROFILE},
        {"out", required_argument, NULL, TC_EXPORT_OPT_OUT},
        {"scheduled", no_argument, NULL, TC_EXPORT_OPT_SCHEDULED},
        {"once", no_argument, NULL, TC_EXPORT_OPT_ONCE},
        {"listen", required_argument, NULL, TC_EXPORT_OPT_LISTEN},
        {"now", required_argument, NULL, TC_EXPORT_OPT_NOW},
        {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "export",
        .help =
            "usage: thermocline export --from T --to T --format parquet|csv|ndjson --out DIR\n"
            "                [--devices GLOB] [--tags K=V]... [--metrics LIST]\n"
            "                [--compress zstd|gzip] [--profile " TC_EXPORT_PROFILES "] [options]\n"
            "       thermocline export --scheduled [--once] [--listen ADDR] [--now T] [options]\n\n"
            "Exports the readings of [--from, --to) (RFC 3339 times) from the lake (lake.dir),\n"
            "one file per day and manifest.json, into DIR, which is created or replaced\n"
            "atomically. --devices keeps the device ids the glob matches, --tags K=V (repeatable)\n"
            "the readings whose tags hold every pair, --metrics the metric columns listed\n"
            "(default: every metric of the range). --compress: zstd or gzip for csv and ndjson\n"
            "(the whole file), zstd for parquet (its pages; snappy by default). --profile public\n"
            "masks the personal columns (api.personal_columns) as the API masks them for\n"
            "thermocline_viewer; full (the default) does not.\n\n"
            "--scheduled runs the exports of export.schedules (docs/exports.md): each closed\n"
            "period once, and again when late data changed its lake files; --once runs what is\n"
            "due and exits; --listen serves /metrics (default: export.listen); --now T takes T\n"
            "for the current time (with --once).\n" TC_CLI_COMMON_HELP,
        .longopts = longopts,
        .min_args = 0,
        .max_args = 0,
    };
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_export_options o = {0};
    tc_export_result res;
    const char *format = NULL, *compress = NULL, *listen = NULL;
    int opt, scheduled = 0, once = 0, have_from = 0, have_to = 0, level;
    int64_t now_us = 0;
    char errstr[1024];
    tc_config *cfg;
    tc_err err;

    o.profile = "full";
    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1) {
        if (opt == TC_EXPORT_OPT_FROM) {
            o.from_us = tc_export_cli_time(&spec, "--from", optarg);
            have_from = 1;
        } else if (opt == TC_EXPORT_OPT_TO) {
            o.to_us = tc_export_cli_time(&spec, "--to", optarg);
            have_to = 1;
        } else if (opt == TC_EXPORT_OPT_DEVICES) {
            o.devices = optarg;
        } else if (opt == TC_EXPORT_OPT_TAGS) {
            char *eq = strchr(optarg, '=');
            if (eq && eq != optarg && o.ntags < TC_EXPORT_TAGS_MAX) {
                *eq = '\0';
                o.tag_key[o.ntags] = optarg;
                o.tag_value[o.ntags++] = eq + 1;
            } else {
                tc_cli_usage_error(&spec, "--tags wants KEY=VALUE (at most %d)",
                                   TC_EXPORT_TAGS_MAX);
            }
        } else if (opt == TC_EXPORT_OPT_METRICS) {
            o.metrics = optarg;
        } else if (opt == TC_EXPORT_OPT_FORMAT) {
            format = optarg;
        } else if (opt == TC_EXPORT_OPT_COMPRESS) {
            compress = optarg;
        } else if (opt == TC_EXPORT_OPT_PROFILE) {
            o.profile = optarg;
        } else if (opt == TC_EXPORT_OPT_OUT) {
            o.out_dir = optarg;
        } else if (opt == TC_EXPORT_OPT_SCHEDULED) {
            scheduled = 1;
        } else if (opt == TC_EXPORT_OPT_ONCE) {
            once = 1;
        } else if (opt == TC_EXPORT_OPT_LISTEN) {
            listen = optarg;
        } else if (opt == TC_EXPORT_OPT_NOW) {
            now_us = tc_export_cli_time(&spec, "--now", optarg);
        }
    }
    tc_cli_args(&ps);
    if (scheduled) {
        if (have_from || have_to || format || compress || o.out_dir || o.devices || o.ntags ||
            o.metrics || strcmp(o.profile, "full") != 0)
            tc_cli_usage_error(&spec, "--scheduled takes its exports from export.schedules: no "
                                      "--from, --to, --format, --out or filters");
        if (now_us && !once)
            tc_cli_usage_error(&spec, "--now goes with --once");
    } else {
        if (once || listen || now_us)
            tc_cli_usage_error(&spec, "--once, --listen and --now go with --scheduled");
        if (!have_from || !have_to || !format || !o.out_dir)
            tc_cli_usage_error(&spec, "--from, --to, --format and --out are required");
        if (o.to_us <= o.from_us)
            tc_cli_usage_error(&spec, "--to must be after --from");
        if (tc_export_parse_format(format, &o.format) != TC_OK)
            tc_cli_usage_error(&spec, "--format is parquet, csv or ndjson, not \"%s\"", format);
        if (compress && tc_export_parse_compress(compress, &o.compress) != TC_OK)
            tc_cli_usage_error(&spec, "--compress is zstd or gzip, not \"%s\"", compress);
        if (o.format == TC_EXPORT_PARQUET && o.compress == TC_EXPORT_GZIP)
            tc_cli_usage_error(&spec, "--compress gzip is for csv and ndjson; parquet takes zstd");
    }
    cfg = tc_cli_config(&common);
    if (!cfg->lake_dir || !*cfg->lake_dir) {
        fprintf(stderr, "thermocline export: lake.dir is not set: set THERMOCLINE_LAKE_DIR or "
                        "--set lake.dir=DIR\n");
        tc_config_destroy(cfg);
        return TC_EXIT_USAGE;
    }
    if (scheduled) {
        int rc = tc_export_scheduled_main(cfg, once, listen, now_us);
        tc_config_destroy(cfg);
        return rc;
    }
    level = tc_export_profile_level(o.profile, tc_export_viewer_level(cfg));
    if (level < 0) {
        tc_config_destroy(cfg);
        tc_cli_usage_error(&spec, "--profile is one of " TC_EXPORT_PROFILES ", not \"%s\"",
                           o.profile);
    }
    o.mask = (tc_mask_level)level;
    o.lake_dir = cfg->lake_dir;
    o.personal_columns = cfg->api_personal_columns;
    o.personal_digits = (int)cfg->api_personal_digits;
    err = tc_export_run(&o, &res, errstr, sizeof(errstr));
    if (err != TC_OK) {
        fprintf(stderr, "thermocline export: %s\n", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    printf("exported %" PRIu64 " rows in %" PRIu64 " files (%" PRIu64 " bytes) from %" PRIu64
           " lake files to %s\n",
           res.rows, res.files, res.bytes, res.lake_files, o.out_dir);
    tc_config_destroy(cfg);
    return 0;
}
