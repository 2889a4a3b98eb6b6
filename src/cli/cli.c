/*
 * cli.c -- option handling, configuration loading and signals shared by the subcommands; see cli.h.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "lake/parquet_crypt.h"
#include "core/timeutil.h"
#include "quality/sink.h"

volatile sig_atomic_t tc_cli_stop;
volatile sig_atomic_t tc_cli_reload;

static void tc_on_reload(int sig)
{
    (void)sig;
    tc_cli_reload = 1;
    /* The quality sink's rules file: the sink interface has no reload callback. */
    tc_quality_sink_sighup();
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

/* Handle -c/--config and -s/--set; returns 1 if opt was one of them. */
static int tc_cli_common_opt(tc_cli_common *c, int opt, const char *arg)
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

/* The usage lines: the help up to its first empty line. */
static void tc_cli_print_usage(const tc_cli_spec *spec)
{
    const char *end = strstr(spec->help, "\n\n");
    int n = end ? (int)(end - spec->help) : (int)strlen(spec->help);

    fprintf(stderr, "%.*s\n(`thermocline %s --help` describes every option)\n", n, spec->help,
            spec->name);
}

_Noreturn void tc_cli_usage_error(const tc_cli_spec *spec, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "thermocline %s: ", spec->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    tc_cli_print_usage(spec);
    exit(TC_EXIT_USAGE);
}

void tc_cli_begin(tc_cli_parser *ps, const tc_cli_spec *spec, tc_cli_common *common, int argc,
                  char **argv)
{
    static const struct option shared[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
    };
    size_t n = 0, own = spec->shortopts ? strlen(spec->shortopts) : 0;

    memset(ps, 0, sizeof(*ps));
    ps->spec = spec;
    ps->common = common;
    ps->argc = argc;
    ps->argv = argv;
    for (size_t i = 0; i < sizeof(shared) / sizeof(shared[0]); i++)
        ps->longopts[n++] = shared[i];
    for (const struct option *o = spec->longopts; o && o->name; o++) {
        if (n >= TC_CLI_OPTS_MAX + 3) {
            /* A programming error, caught by the test that runs every --help. */
            fprintf(stderr, "thermocline %s: more than %d options\n", spec->name, TC_CLI_OPTS_MAX);
            exit(TC_EXIT_FAILURE);
        }
        ps->longopts[n++] = *o;
    }
    /* ':' first: a missing value is reported as such, not as an unknown option. */
    if (own + 8 > sizeof(ps->shortopts)) {
        fprintf(stderr, "thermocline %s: too many short options\n", spec->name);
        exit(TC_EXIT_FAILURE);
    }
    snprintf(ps->shortopts, sizeof(ps->shortopts), ":c:s:h%s",
             spec->shortopts ? spec->shortopts : "");
    /* 0 makes glibc's getopt start over (a command is parsed once, but tests may parse twice). */
    optind = 0;
    opterr = 0;
}

int tc_cli_next(tc_cli_parser *ps)
{
    int opt;

    for (;;) {
        opt = getopt_long(ps->argc, ps->argv, ps->shortopts, ps->longopts, NULL);
        if (opt == -1)
            return -1;
        if (opt == 'h') {
            fputs(ps->spec->help, stdout);
            if (ps->spec->help_more)
                ps->spec->help_more(stdout);
            exit(0);
        }
        if (opt == '?' || opt == ':') {
            const char *arg = ps->argv[optind - 1];
            if (opt == ':')
                tc_cli_usage_error(ps->spec, "option \"%s\" needs a value", arg);
            if (optopt && strncmp(arg, "--", 2) != 0)
                tc_cli_usage_error(ps->spec, "unknown option \"-%c\"", optopt);
            tc_cli_usage_error(ps->spec, "unknown option \"%s\"", arg);
        }
        if (!tc_cli_common_opt(ps->common, opt, optarg))
            return opt;
    }
}

int tc_cli_args(tc_cli_parser *ps)
{
    int n = ps->argc - optind;

    if (n > ps->spec->max_args) {
        if (ps->spec->max_args == 0)
            tc_cli_usage_error(ps->spec, "unexpected argument \"%s\"", ps->argv[optind]);
        tc_cli_usage_error(ps->spec, "unexpected argument \"%s\" (at most %d)",
                           ps->argv[optind + ps->spec->max_args], ps->spec->max_args);
    }
    if (n < ps->spec->min_args)
        tc_cli_usage_error(ps->spec, "%s", n ? "missing arguments" : "missing a subcommand");
    return optind;
}

/* lake.encryption.*: the keys every lake writer and reader of this process uses (installed once,
 * for the life of the process: a reload does not change keys, a restart does). */
static tc_err tc_cli_lake_encryption(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    tc_pq_keyring *keys;
    tc_pq_crypt *crypt;
    int has_file = cfg->lake_enc_key_file && *cfg->lake_enc_key_file;
    int has_cmd = cfg->lake_enc_key_command && *cfg->lake_enc_key_command;

    if (!cfg->lake_enc_enabled)
        return TC_OK;
    if (has_file == has_cmd)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "lake.encryption.enabled needs exactly one of lake.encryption.key_file "
                          "and lake.encryption.key_command");
    keys =
        tc_pq_keyring_new(cfg->lake_enc_key_file, cfg->lake_enc_key_command, errstr, errstr_size);
    if (!keys)
        return TC_ERR_CONFIG;
    crypt = tc_pq_crypt_new(keys, cfg->lake_enc_footer_key, cfg->lake_enc_column_key,
                            cfg->lake_enc_columns, errstr, errstr_size);
    if (!crypt)
        return TC_ERR_CONFIG;
    tc_pq_crypt_install(crypt);
    return TC_OK;
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
    if (tc_config_derive(cfg, errstr, sizeof(errstr)) != TC_OK ||
        tc_config_check(cfg, errstr, sizeof(errstr)) != TC_OK ||
        tc_cli_lake_encryption(cfg, errstr, sizeof(errstr)) != TC_OK) {
        fprintf(stderr, "thermocline: %s\n", errstr);
        exit(TC_EXIT_USAGE);
    }
    tc_log_parse_level(cfg->log_level, &level); /* both checked above */
    tc_log_parse_format(cfg->log_format, &format);
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
    if (cfg && (tc_config_derive(cfg, errstr, errstr_size) != TC_OK ||
                tc_config_check(cfg, errstr, errstr_size) != TC_OK)) {
        tc_config_destroy(cfg);
        cfg = NULL;
    }
    return cfg;
}

long tc_cli_parse_long(const char *what, const char *s, long min, long max)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (end == s || *end || errno == ERANGE || v < min || v > max) {
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

int tc_cli_parse_since(const char *s, int64_t *out_us)
{
    char *end;
    double v;
    int64_t unit;

    if (tc_time_parse_rfc3339(s, strlen(s), out_us) == TC_OK)
        return 0;
    v = strtod(s, &end);
    if (end == s || v < 0 || v > 1e7)
        return -1;
    if (!strcmp(end, "s"))
        unit = 1;
    else if (!strcmp(end, "m"))
        unit = 60;
    else if (!strcmp(end, "h"))
        unit = 3600;
    else if (!strcmp(end, "d"))
        unit = 86400;
    else
        return -1;
    *out_us = tc_time_now_us() - (int64_t)(v * (double)unit * 1e6);
    return 0;
}
