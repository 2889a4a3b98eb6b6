/*
 * cmd_features.c -- `thermocline features build | training-set`: the offline feature store over
 * the lake (src/features/, docs/ml.md).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "features/build.h"
#include "features/training.h"

enum { TC_FEAT_OPT_FULL = 1000, TC_FEAT_OPT_LABELS, TC_FEAT_OPT_OUT };

int tc_cmd_features(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"full", no_argument, NULL, TC_FEAT_OPT_FULL},
        {"labels", required_argument, NULL, TC_FEAT_OPT_LABELS},
        {"out", required_argument, NULL, TC_FEAT_OPT_OUT},
        {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "features",
        .help =
            "usage: thermocline features build [--full] [options]\n"
            "       thermocline features training-set --labels FILE --out FILE [options]\n\n"
            "  build         materialise the features of features.definitions from the lake\n"
            "                (lake.dir) as Parquet under features.dir (default <lake>/features),\n"
            "                <NAME>/year=/month=/day=: only the days whose lake files changed\n"
            "                since the last build; --full rebuilds every day\n"
            "  training-set  join labels (CSV with a header device_id,time,label, or Parquet)\n"
            "                with the features as of each label's time: only windows closed at\n"
            "                or before it (no data from after the label); written as Parquet\n\n"
            "Definitions, the layout and point-in-time rules: docs/ml.md.\n" TC_CLI_COMMON_HELP,
        .longopts = longopts,
        .min_args = 1,
        .max_args = 1,
    };
    tc_cli_common common = {0};
    tc_cli_parser ps;
    const char *what, *labels = NULL, *out = NULL;
    char errstr[TC_ERRSTR_MAX], features[4096];
    tc_feat_defs *defs;
    tc_config *cfg;
    tc_features_build_options bo = {0};
    int opt, full = 0, rc = 0;
    tc_err err;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1) {
        if (opt == TC_FEAT_OPT_FULL)
            full = 1;
        else if (opt == TC_FEAT_OPT_LABELS)
            labels = optarg;
        else if (opt == TC_FEAT_OPT_OUT)
            out = optarg;
    }
    what = argv[tc_cli_args(&ps)];
    if (strcmp(what, "build") != 0 && strcmp(what, "training-set") != 0)
        tc_cli_usage_error(&spec, "unknown subcommand \"%s\"", what);
    if (!strcmp(what, "training-set") && (!labels || !out))
        tc_cli_usage_error(&spec, "training-set wants --labels FILE and --out FILE");
    if (!strcmp(what, "build") && (labels || out))
        tc_cli_usage_error(&spec, "--labels and --out are options of training-set");
    if (!strcmp(what, "training-set") && full)
        tc_cli_usage_error(&spec, "--full is an option of build");
    cfg = tc_cli_config(&common);
    if (!(defs = malloc(sizeof(*defs)))) {
        tc_config_destroy(cfg);
        fprintf(stderr, "thermocline features: out of memory\n");
        return TC_EXIT_FAILURE;
    }
    if (tc_feat_defs_parse(cfg->features_definitions, defs, errstr, sizeof(errstr)) != TC_OK) {
        fprintf(stderr, "thermocline features: %s\n", errstr);
        rc = TC_EXIT_USAGE;
        goto out;
    }
    bo.lake_root = cfg->lake_dir;
    bo.features_dir = cfg->features_dir;
    bo.defs = defs;
    bo.full = full;
    bo.pg_dsn = cfg->pg_dsn;
    bo.pg_schema = cfg->pg_schema;
    if (!strcmp(what, "build")) {
        tc_features_build_stats st;
        int64_t t0 = tc_time_now_us(), dt;

        err = tc_features_build(&bo, &st, errstr, sizeof(errstr));
        dt = tc_time_now_us() - t0;
        if (err != TC_OK) {
            fprintf(stderr, "thermocline features build: %s\n", errstr);
            rc = err == TC_ERR_CONFIG ? TC_EXIT_USAGE : TC_EXIT_FAILURE;
            goto out;
        }
        printf("features build: %" PRIu64 " days, %" PRIu64 " built, %" PRIu64
               " lake rows read, %" PRIu64 " windows in %" PRIu64 " files, %.3f s\n",
               st.days, st.days_built, st.rows_read, st.windows, st.files_written,
               (double)dt / 1e6);
    } else {
        tc_training_options to = {features, defs, labels, out};
        uint64_t rows;

        if (tc_features_dir(&bo, features, sizeof(features)) < 0 || !*cfg->lake_dir) {
            if (!*cfg->features_dir) {
                fprintf(stderr, "thermocline features: set lake.dir or features.dir\n");
                rc = TC_EXIT_USAGE;
                goto out;
            }
        }
        if (tc_training_set(&to, &rows, errstr, sizeof(errstr)) != TC_OK) {
            fprintf(stderr, "thermocline features training-set: %s\n", errstr);
            rc = TC_EXIT_FAILURE;
            goto out;
        }
        printf("training set: %" PRIu64 " rows, %zu features -> %s\n", rows, defs->n, out);
    }
out:
    free(defs);
    tc_config_destroy(cfg);
    return rc;
}
