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
    static const struct option longopts[] = {TC_CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_qr_set *set;
    tc_config *cfg;
    int opt, usage = 0;

    while ((opt = getopt_long(argc, argv, "c:s:h", longopts, NULL)) != -1) {
        if (tc_cli_common_opt(&common, opt, optarg))
            continue;
        usage = 1;
        break;
    }
    if (usage || optind != argc - 2 || strcmp(argv[optind], "check-rules") != 0) {
        printf("usage: thermocline quality check-rules FILE [options]\n\n"
               "  check-rules FILE  parse a data-quality rules file (docs/quality.md): print a\n"
               "                    summary and exit 0, or print FILE:LINE:COL: message and\n"
               "                    exit 1\n" TC_CLI_COMMON_HELP);
        return opt == 'h' ? 0 : TC_EXIT_USAGE;
    }
    cfg = tc_cli_config(&common);
    set = tc_qr_load(argv[optind + 1], errstr, sizeof(errstr));
    if (!set) {
        fprintf(stderr, "%s\n", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    tc_quality_summary(argv[optind + 1], set);
    tc_qr_free(set);
    tc_config_destroy(cfg);
    return 0;
}
