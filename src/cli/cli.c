/*
 * cli.c -- option handling, configuration loading and signals shared by the subcommands; see cli.h.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

volatile sig_atomic_t tc_cli_stop;
volatile sig_atomic_t tc_cli_reload;

static void tc_on_reload(int sig)
{
    (void)sig;
    tc_cli_reload = 1;
}

void tc_cli_install_reload(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = tc_on_reload;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
}

static void tc_on_signal(int sig)
{
    (void)sig;
    tc_cli_stop = 1;
}

void tc_cli_install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = tc_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Handle an option shared by all subcommands; returns 1 if it was one. */
int tc_cli_common_opt(tc_cli_common *c, int opt, const char *arg)
{
    if (opt == 'c') {
        c->config_path = arg;
        return 1;
    }
    if (opt == 's') {
        if (c->nsets >= TC_SETS_MAX) {
            fprintf(stderr, "thermocline: more than %d --set options\n", TC_SETS_MAX);
            exit(TC_EXIT_USAGE);
        }
        c->sets[c->nsets++] = arg;
        return 1;
    }
    return 0;
}

tc_config *tc_cli_config(const tc_cli_common *c)
{
    char errstr[TC_ERRSTR_MAX], key[256];
    tc_log_level level;
    tc_log_format format;
    tc_config *cfg = tc_config_load(c->config_path, errstr, sizeof(errstr));

    if (!cfg) {
        fprintf(stderr, "thermocline: %s\n", errstr);
        exit(TC_EXIT_USAGE);
    }
    for (int i = 0; i < c->nsets; i++) {
        const char *eq = strchr(c->sets[i], '=');
        if (!eq || eq == c->sets[i] || (size_t)(eq - c->sets[i]) >= sizeof(key)) {
            fprintf(stderr, "thermocline: --set expects key=value, got \"%s\"\n", c->sets[i]);
            exit(TC_EXIT_USAGE);
        }
        memcpy(key, c->sets[i], (size_t)(eq - c->sets[i]));
        key[eq - c->sets[i]] = '\0';
        if (tc_config_set(cfg, key, eq + 1, errstr, sizeof(errstr)) != TC_OK) {
            fprintf(stderr, "thermocline: --set: %s\n", errstr);
            exit(TC_EXIT_USAGE);
        }
    }
    if (tc_log_parse_level(cfg->log_level, &level) ||
        tc_log_parse_format(cfg->log_format, &format)) {
        fprintf(stderr, "thermocline: invalid log.level \"%s\" or log.format \"%s\"\n",
                cfg->log_level, cfg->log_format);
        exit(TC_EXIT_USAGE);
    }
    tc_log_setup(level, format);
    return cfg;
}

tc_config *tc_cli_config_reload(const tc_cli_common *c, char *errstr, size_t errstr_size)
{
    char key[256], inner[TC_ERRSTR_MAX];
    tc_config *cfg = tc_config_load(c->config_path, errstr, errstr_size);

    for (int i = 0; cfg && i < c->nsets; i++) {
        const char *eq = strchr(c->sets[i], '='); /* checked at start */
        size_t klen = eq ? (size_t)(eq - c->sets[i]) : 0;
        if (!eq || klen >= sizeof(key))
            continue;
        memcpy(key, c->sets[i], klen);
        key[klen] = '\0';
        if (tc_config_set(cfg, key, eq + 1, inner, sizeof(inner)) != TC_OK) {
            tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "--set: %s", inner);
            tc_config_destroy(cfg);
            cfg = NULL;
        }
    }
    return cfg;
}

long tc_cli_parse_long(const char *what, const char *s, long min, long max)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (end == s || *end || v < min || v > max) {
        fprintf(stderr, "thermocline: %s must be an integer in [%ld, %ld], got \"%s\"\n", what, min,
                max, s);
        exit(TC_EXIT_USAGE);
    }
    return v;
}

double tc_cli_parse_double(const char *what, const char *s, double min, double max)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "thermocline: %s must be a number in [%g, %g], got \"%s\"\n", what, min,
                max, s);
        exit(TC_EXIT_USAGE);
    }
    return v;
}
