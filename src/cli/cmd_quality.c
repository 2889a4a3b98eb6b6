/*
 * cmd_quality.c -- `thermocline quality check-rules FILE`: check a data-quality rules file
 * (quality/rules.h) the way the monitor will load it, without running anything.
 *
 * A valid file prints a summary (rules per check kind and severity, the metric names they refer
 * to) and exits 0; an invalid one prints "FILE:LINE:COL: message" on stderr and exits 1, so an
 * editor or a CI step can jump to the line.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "quality/rules.h"

static void tc_quality_summary(const char *path, const tc_qr_set *set)
{
    size_t by_kind[TC_QR_KIND__COUNT] = {0}, critical = 0, with_for = 0;

    for (size_t i = 0; i < tc_qr_count(set); i++) {
        const tc_qr_rule *r = tc_qr_get(set, i);
        by_kind[r->kind]++;
        critical += r->severity == TC_QR_CRITICAL;
        with_for += r->for_us > 0;
    }
    printf("%s: %zu rules (%zu critical, %zu warning; %zu with a `for` duration)\n", path,
           tc_qr_count(set), critical, tc_qr_count(set) - critical, with_for);
    for (int k = 0; k < TC_QR_KIND__COUNT; k++)
        if (by_kind[k])
            printf("  %-9s %zu\n", tc_qr_kind_name((tc_qr_kind)k), by_kind[k]);
    printf("  metrics:");
    for (int m = 0; m < tc_qr_metric_count(set); m++)
        printf("%s %s", m ? "," : "", tc_qr_metric_name(set, m));
    printf("%s\n", tc_qr_metric_count(set) ? "" : " none");
}

int tc_cmd_quality(int argc, char **argv)
{
    static const tc_cli_spec spec = {
        .name = "quality",
        .help = "usage: thermocline quality check-rules FILE [options]\n\n"
                "  check-rules FILE  parse a data-quality rules file (docs/quality.md): print a\n"
                "                    summary and exit 0, or print FILE:LINE:COL: message and\n"
                "                    exit 1\n" TC_CLI_COMMON_HELP,
        .min_args = 1,
        .max_args = 2,
    };
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_qr_set *set;
    tc_config *cfg;
    const char *path;
    int first;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while (tc_cli_next(&ps) != -1)
        ;
    first = tc_cli_args(&ps);
    if (strcmp(argv[first], "check-rules") != 0)
        tc_cli_usage_error(&spec, "unknown subcommand \"%s\"", argv[first]);
    if (first + 1 >= argc)
        tc_cli_usage_error(&spec, "check-rules wants the rules FILE");
    path = argv[first + 1];
    cfg = tc_cli_config(&common);
    set = tc_qr_load(path, errstr, sizeof(errstr));
    if (!set) {
        fprintf(stderr, "%s\n", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    tc_quality_summary(path, set);
    tc_qr_free(set);
    tc_config_destroy(cfg);
    return 0;
}
