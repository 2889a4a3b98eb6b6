/*
 * cmd_alert.c -- `thermocline alert send`: fire or resolve one alert at the configured
 * Alertmanagers (alerting.alertmanager_urls) and wait until each has it.
 *
 * The first producer of alerts that needs no running pipeline: operators test their routing
 * (Slack, email, the escalation tier) with it, scripts raise their own alerts, and the integration
 * tests drive Alertmanager end to end through the same client (alert/alert.h) the pipeline uses.
 * Exit 0 when every Alertmanager accepted the alert, 1 when one did not within --timeout.
 */
#include <stdio.h>
#include <string.h>

#include "alert/alert.h"
#include "cli/cli.h"

int tc_cmd_alert(int argc, char **argv)
{
    static const struct option longopts[] = {{"name", required_argument, NULL, 'n'},
                                             {"severity", required_argument, NULL, 'v'},
                                             {"device", required_argument, NULL, 'd'},
                                             {"metric", required_argument, NULL, 'm'},
                                             {"rule", required_argument, NULL, 'r'},
                                             {"detector", required_argument, NULL, 'D'},
                                             {"site", required_argument, NULL, 'S'},
                                             {"summary", required_argument, NULL, 'u'},
                                             {"description", required_argument, NULL, 'e'},
                                             {"runbook", required_argument, NULL, 'b'},
                                             {"resolve", no_argument, NULL, 'R'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "alert",
        .help = "usage: thermocline alert send --name NAME --severity SEVERITY [options]\n\n"
                "  send                 push one alert to every alerting.alertmanager_urls and\n"
                "                       wait until each accepted it (exit 1 if one did not)\n"
                "  --name NAME          label alertname ([A-Za-z_][A-Za-z0-9_]*)\n"
                "  --severity S         label severity: info, warning or critical\n"
                "  --device ID          label device_id\n"
                "  --metric M           label metric\n"
                "  --rule R             label rule\n"
                "  --detector D         label detector\n"
                "  --site S             label site (default: alerting.site)\n"
                "  --summary TEXT       annotation summary\n"
                "  --description TEXT   annotation description\n"
                "  --runbook URL        annotation runbook_url\n"
                "  --resolve            send it resolved (endsAt now) instead of firing\n"
                "  --timeout SECONDS    how long to wait for delivery (default "
                "30)\n" TC_CLI_COMMON_HELP,
        .longopts = longopts,
        .min_args = 1,
        .max_args = 1,
    };
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_alert al;
    tc_alerter *a;
    tc_config *cfg;
    long timeout_s = 30;
    int resolve = 0, opt, first;
    size_t behind;
    tc_err err;

    memset(&al, 0, sizeof(al));
    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1) {
        switch (opt) {
        case 'n':
            al.name = optarg;
            break;
        case 'v':
            al.severity = optarg;
            break;
        case 'd':
            al.device_id = optarg;
            break;
        case 'm':
            al.metric = optarg;
            break;
        case 'r':
            al.rule = optarg;
            break;
        case 'D':
            al.detector = optarg;
            break;
        case 'S':
            al.site = optarg;
            break;
        case 'u':
            al.summary = optarg;
            break;
        case 'e':
            al.description = optarg;
            break;
        case 'b':
            al.runbook_url = optarg;
            break;
        case 'R':
            resolve = 1;
            break;
        case 't':
            timeout_s = tc_cli_parse_long("--timeout", optarg, 1, 3600);
            break;
        default:
            break;
        }
    }
    first = tc_cli_args(&ps);
    if (strcmp(argv[first], "send") != 0)
        tc_cli_usage_error(&spec, "unknown subcommand \"%s\"", argv[first]);
    if (!al.name || !al.severity)
        tc_cli_usage_error(&spec, "send wants --name and --severity");
    cfg = tc_cli_config(&common);
    a = tc_alerter_new_from_config(cfg, errstr, sizeof(errstr));
    if (!a) {
        fprintf(stderr, "thermocline alert: %s\n", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    err = resolve ? tc_alerter_resolve(a, &al, errstr, sizeof(errstr))
                  : tc_alerter_fire(a, &al, errstr, sizeof(errstr));
    if (err != TC_OK) {
        fprintf(stderr, "thermocline alert: %s\n", errstr);
        tc_alerter_destroy(a);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    behind = tc_alerter_flush(a, (int)(timeout_s * 1000));
    tc_alerter_destroy(a);
    tc_config_destroy(cfg);
    if (behind) {
        fprintf(stderr,
                "thermocline alert: %zu of the alerting.alertmanager_urls did not accept the "
                "alert within %ld s\n",
                behind, timeout_s);
        return TC_EXIT_FAILURE;
    }
    printf("%s %s\n", al.name, resolve ? "resolved" : "firing");
    return 0;
}
