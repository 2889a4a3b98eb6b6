/*
 * main.c -- `thermocline`: git-style subcommand dispatch.
 *
 * Each subcommand parses its own options and shares the configuration loading: built-in defaults,
 * then --config FILE, then THERMOCLINE_* environment variables, then --set key=value. Exit codes:
 * 0 success, 1 runtime failure, 2 usage or configuration error.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "ingest/kafka.h"
#include "ingest/simulator.h"
#include "process/pipeline.h"
#include "store/store.h"

#define TC_EXIT_FAILURE 1
#define TC_EXIT_USAGE   2
/* --set options per invocation. */
#define TC_SETS_MAX 64

static volatile sig_atomic_t tc_stop;

static void tc_on_signal(int sig)
{
    (void)sig;
    tc_stop = 1;
}

static void tc_install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = tc_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

typedef struct tc_common {
    const char *config_path;
    const char *sets[TC_SETS_MAX];
    int nsets;
} tc_common;

/* Handle an option shared by all subcommands; returns 1 if it was one. */
static int tc_common_opt(tc_common *c, int opt, const char *arg)
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

static tc_config *tc_common_config(const tc_common *c)
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

#define TC_COMMON_HELP                                                                             \
    "  -c, --config FILE     YAML configuration file (see `thermocline config sample`)\n"          \
    "  -s, --set KEY=VALUE   override one setting (repeatable), e.g. --set "                       \
    "pipeline.batch_size=5000\n"                                                                   \
    "  -h, --help            show this help\n"

#define TC_COMMON_LONGOPTS                                                                         \
    {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},               \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

static long tc_parse_long(const char *what, const char *s, long min, long max)
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

static double tc_parse_double(const char *what, const char *s, double min, double max)
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

static int tc_cmd_migrate(int argc, char **argv)
{
    static const struct option longopts[] = {TC_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    char errstr[TC_ERRSTR_MAX];
    tc_common common = {0};
    tc_store_options so;
    tc_config *cfg;
    tc_store *store;
    int opt, rc = 0;

    while ((opt = getopt_long(argc, argv, "c:s:h", longopts, NULL)) != -1) {
        if (tc_common_opt(&common, opt, optarg))
            continue;
        printf("usage: thermocline migrate [options]\n\n"
               "Create or upgrade Thermocline's database objects (idempotent).\n\n" TC_COMMON_HELP);
        return opt == 'h' ? 0 : TC_EXIT_USAGE;
    }
    cfg = tc_common_config(&common);
    so = (tc_store_options){cfg->pg_dsn, cfg->pg_schema, cfg->kafka_group, cfg->kafka_topic,
                            (int)cfg->pg_partition_days_ahead};
    store = tc_store_new(&so);
    if (!store || tc_store_migrate(store, errstr, sizeof(errstr)) != TC_OK ||
        tc_store_ensure_partitions_around(store, tc_time_now_us(),
                                          (int)(cfg->limits.max_age_s / 86400) + 1, errstr,
                                          sizeof(errstr)) != TC_OK) {
        fprintf(stderr, "thermocline migrate: %s\n", store ? errstr : "out of memory");
        rc = TC_EXIT_FAILURE;
    } else {
        tc_log_info("migrate", "database objects are up to date in schema \"%s\"", cfg->pg_schema);
    }
    tc_store_destroy(store);
    tc_config_destroy(cfg);
    return rc;
}

static int tc_cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        TC_COMMON_LONGOPTS, {"exit-when-idle", required_argument, NULL, 'i'}, {NULL, 0, NULL, 0}};
    char errstr[TC_ERRSTR_MAX];
    tc_common common = {0};
    tc_pipeline *p = NULL;
    tc_pipeline_stats st;
    tc_config *cfg;
    int opt, idle = 0, rc = 0;
    tc_err err;

    while ((opt = getopt_long(argc, argv, "c:s:hi:", longopts, NULL)) != -1) {
        if (tc_common_opt(&common, opt, optarg))
            continue;
        if (opt == 'i') {
            idle = (int)tc_parse_long("--exit-when-idle", optarg, 1, 86400);
            continue;
        }
        printf("usage: thermocline run [options]\n\n"
               "Run the pipeline: consume readings from Kafka, validate them, and store them in\n"
               "PostgreSQL exactly once, with refused readings as dead letters.\n\n"
               "  -i, --exit-when-idle SECONDS  exit 0 once every partition is consumed and\n"
               "                                nothing new arrived for SECONDS\n" TC_COMMON_HELP);
        return opt == 'h' ? 0 : TC_EXIT_USAGE;
    }
    cfg = tc_common_config(&common);
    tc_install_signals();
    if (cfg->kafka_create_topic) {
        err = tc_kafka_ensure_topic(cfg, errstr, sizeof(errstr));
        if (err != TC_OK) {
            tc_log_error("run", "%s", errstr);
            tc_config_destroy(cfg);
            return TC_EXIT_FAILURE;
        }
    }
    p = tc_pipeline_new(cfg, errstr, sizeof(errstr));
    if (!p) {
        tc_log_error("run", "%s", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    err = tc_pipeline_run(p, idle, &tc_stop, errstr, sizeof(errstr));
    if (err != TC_OK) {
        tc_log_error("run", "%s", errstr);
        rc = TC_EXIT_FAILURE;
    }
    tc_pipeline_get_stats(p, &st);
    tc_pipeline_destroy(p);
    tc_log_info("run", "stopped: consumed %llu, stored %llu, dead letters %llu, batches %llu",
                (unsigned long long)st.consumed, (unsigned long long)st.stored,
                (unsigned long long)st.dead_letters, (unsigned long long)st.batches);
    tc_config_destroy(cfg);
    return rc;
}

static int tc_cmd_simulate(int argc, char **argv)
{
    static const struct option longopts[] = {TC_COMMON_LONGOPTS,
                                             {"devices", required_argument, NULL, 'd'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"invalid-ratio", required_argument, NULL, 'x'},
                                             {"seed", required_argument, NULL, 'S'},
                                             {"start", required_argument, NULL, 't'},
                                             {"cadence-ms", required_argument, NULL, 'm'},
                                             {NULL, 0, NULL, 0}};
    tc_sim_options o = {.devices = 100, .count = 1000, .seed = 1, .cadence_ms = 10000};
    char errstr[TC_ERRSTR_MAX];
    tc_common common = {0};
    tc_config *cfg;
    int opt, rc = 0;

    while ((opt = getopt_long(argc, argv, "c:s:hd:n:r:x:S:t:m:", longopts, NULL)) != -1) {
        if (tc_common_opt(&common, opt, optarg))
            continue;
        switch (opt) {
        case 'd':
            o.devices = (int)tc_parse_long("--devices", optarg, 1, 10000000);
            continue;
        case 'n':
            o.count = (uint64_t)tc_parse_double("--count", optarg, 0, 1e12);
            continue;
        case 'r':
            o.rate = tc_parse_double("--rate", optarg, 0, 1e9);
            continue;
        case 'x':
            o.invalid_ratio = tc_parse_double("--invalid-ratio", optarg, 0, 1);
            continue;
        case 'S':
            o.seed = (uint64_t)tc_parse_double("--seed", optarg, 0, 1e18);
            continue;
        case 'm':
            o.cadence_ms = tc_parse_long("--cadence-ms", optarg, 1, 86400000);
            continue;
        case 't':
            if (tc_time_parse_rfc3339(optarg, strlen(optarg), &o.start_us) != TC_OK) {
                fprintf(stderr, "thermocline: --start expects an RFC 3339 time\n");
                return TC_EXIT_USAGE;
            }
            continue;
        default:
            break;
        }
        printf("usage: thermocline simulate [options]\n\n"
               "Produce realistic device readings to the Kafka topic, keyed by device_id, and\n"
               "print a JSON summary of what was produced.\n\n"
               "  -d, --devices N          simulated devices (default 100)\n"
               "  -n, --count N            readings to produce (default 1000)\n"
               "  -r, --rate R             readings per second, 0 = as fast as possible (default)\n"
               "  -x, --invalid-ratio X    share of invalid readings, 0..1 (default 0)\n"
               "  -S, --seed S             random seed (default 1)\n"
               "  -t, --start TIME         event time of the first round (RFC 3339); default:\n"
               "                           the backfill ends now (or live timestamps with --rate)\n"
               "  -m, --cadence-ms MS      interval between two readings of a device (10000)\n"
               "Same seed and --start give the same bytes.\n" TC_COMMON_HELP);
        return opt == 'h' ? 0 : TC_EXIT_USAGE;
    }
    cfg = tc_common_config(&common);
    tc_install_signals();
    if (cfg->kafka_create_topic && tc_kafka_ensure_topic(cfg, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_error("simulate", "%s", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    if (tc_simulate(cfg, &o, stdout, (volatile int *)&tc_stop, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_error("simulate", "%s", errstr);
        rc = TC_EXIT_FAILURE;
    }
    tc_config_destroy(cfg);
    return rc;
}

static int tc_cmd_config(int argc, char **argv)
{
    tc_common common = {0};
    tc_config *cfg;
    const char *what = argc > 1 ? argv[1] : "";

    if (!strcmp(what, "reference")) {
        tc_config_write_reference(stdout);
        return 0;
    }
    if (!strcmp(what, "sample")) {
        tc_config_write_sample(stdout);
        return 0;
    }
    if (!strcmp(what, "show")) {
        for (int i = 2; i < argc; i++) {
            if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) && i + 1 < argc)
                common.config_path = argv[++i];
            else if ((!strcmp(argv[i], "--set") || !strcmp(argv[i], "-s")) && i + 1 < argc &&
                     common.nsets < TC_SETS_MAX)
                common.sets[common.nsets++] = argv[++i];
            else {
                fprintf(stderr, "thermocline config show: unknown argument \"%s\"\n", argv[i]);
                return TC_EXIT_USAGE;
            }
        }
        cfg = tc_common_config(&common);
        tc_config_dump(cfg, stdout);
        tc_config_destroy(cfg);
        return 0;
    }
    printf("usage: thermocline config reference|sample|show [--config FILE] [--set K=V]\n\n"
           "  reference   the configuration reference as markdown (docs/configuration.md)\n"
           "  sample      a commented YAML file with every setting at its default\n"
           "  show        the effective configuration after file, environment and --set\n");
    return strcmp(what, "-h") && strcmp(what, "--help") && strcmp(what, "help") ? TC_EXIT_USAGE : 0;
}

static int tc_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("thermocline %s\n", TC_VERSION);
    return 0;
}

typedef struct tc_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} tc_command;

static const tc_command tc_commands[] = {
    {"run", tc_cmd_run, "run the pipeline (Kafka -> validate -> PostgreSQL)"},
    {"migrate", tc_cmd_migrate, "create or upgrade the database objects"},
    {"simulate", tc_cmd_simulate, "produce simulated device readings to Kafka"},
    {"config", tc_cmd_config, "print the configuration reference, a sample, or the effective one"},
    {"version", tc_cmd_version, "print the version"},
};

static void tc_usage(FILE *out)
{
    fprintf(out, "usage: thermocline COMMAND [options]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof(tc_commands) / sizeof(tc_commands[0]); i++)
        fprintf(out, "  %-10s %s\n", tc_commands[i].name, tc_commands[i].summary);
    fprintf(out, "\n`thermocline COMMAND --help` describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        tc_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? TC_EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version"))
        return tc_cmd_version(argc, argv);
    for (size_t i = 0; i < sizeof(tc_commands) / sizeof(tc_commands[0]); i++) {
        if (!strcmp(argv[1], tc_commands[i].name))
            return tc_commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "thermocline: unknown command \"%s\"\n\n", argv[1]);
    tc_usage(stderr);
    return TC_EXIT_USAGE;
}
