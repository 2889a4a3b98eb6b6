/*
 * cli.h -- what every `thermocline` subcommand shares: option handling, configuration loading,
 * signals, number parsing, exit codes.
 *
 * A subcommand is a function `int tc_cmd_NAME(int argc, char **argv)` (argv[0] is its name),
 * declared below and listed in main.c's command table. It parses its own options with
 * getopt_long, passing every option it does not know to tc_cli_common_opt first, and loads the
 * configuration with tc_cli_config: defaults, then --config FILE, then THERMOCLINE_* environment
 * variables, then --set key=value.
 */
#ifndef TC_CLI_CLI_H
#define TC_CLI_CLI_H

#include <getopt.h>
#include <signal.h>

#include "core/config.h"

#define TC_EXIT_FAILURE 1
#define TC_EXIT_USAGE   2
/* --set options per invocation. */
#define TC_SETS_MAX 64

/* Set by SIGINT/SIGTERM once tc_cli_install_signals() has run. */
extern volatile sig_atomic_t tc_cli_stop;
void tc_cli_install_signals(void);
/* Set by SIGHUP once tc_cli_install_reload() has run (`run` only: elsewhere SIGHUP keeps its
 * default, ending the command with its terminal). */
extern volatile sig_atomic_t tc_cli_reload;
void tc_cli_install_reload(void);

typedef struct tc_cli_common {
    const char *config_path;
    const char *sets[TC_SETS_MAX];
    int nsets;
} tc_cli_common;

/* Handle -c/--config and -s/--set; returns 1 if opt was one of them. */
int tc_cli_common_opt(tc_cli_common *c, int opt, const char *arg);

/* Load the configuration and set up logging; exits with TC_EXIT_USAGE on error. */
tc_config *tc_cli_config(const tc_cli_common *c);
/* The same sequence without exiting or touching the logger: NULL with errstr set on error. */
tc_config *tc_cli_config_reload(const tc_cli_common *c, char *errstr, size_t errstr_size);

/* Parse a number option or exit with TC_EXIT_USAGE naming the option. */
long tc_cli_parse_long(const char *what, const char *s, long min, long max);
double tc_cli_parse_double(const char *what, const char *s, double min, double max);

#define TC_CLI_COMMON_HELP                                                                         \
    "  -c, --config FILE     YAML configuration file (see `thermocline config sample`)\n"          \
    "  -s, --set KEY=VALUE   override one setting (repeatable), e.g. --set "                       \
    "pipeline.batch_size=5000\n"                                                                   \
    "  -h, --help            show this help\n"

#define TC_CLI_COMMON_LONGOPTS                                                                     \
    {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},               \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

/* The subcommands. */
int tc_cmd_run(int argc, char **argv);
int tc_cmd_migrate(int argc, char **argv);
int tc_cmd_simulate(int argc, char **argv);
int tc_cmd_config(int argc, char **argv);
int tc_cmd_version(int argc, char **argv);
int tc_cmd_registry(int argc, char **argv);
int tc_cmd_schema(int argc, char **argv);
int tc_cmd_lake(int argc, char **argv);
int tc_cmd_retention(int argc, char **argv);
int tc_cmd_dlq(int argc, char **argv);
int tc_cmd_replay(int argc, char **argv);
int tc_cmd_quality(int argc, char **argv);

#endif
