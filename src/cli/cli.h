/*
 * cli.h -- what every `thermocline` subcommand shares: option handling, configuration loading,
 * signals, number parsing, exit codes.
 *
 * A subcommand is a function `int tc_cmd_NAME(int argc, char **argv)` (argv[0] is its name),
 * declared below and listed in main.c's command table. It describes itself in a tc_cli_spec (help
 * text, its own options, how many positional arguments) and parses its argv with one parser,
 * tc_cli_begin / tc_cli_next / tc_cli_args, so every command behaves alike: --help prints the help
 * and exits 0 before anything else happens (no service is contacted), --config and --set are
 * taken everywhere, and an unknown option, a missing value or a stray positional argument exits
 * 2 with the usage line. Then it loads the configuration with tc_cli_config: defaults, then
 * --config FILE, then THERMOCLINE_* environment variables, then --set key=value.
 */
#ifndef TC_CLI_CLI_H
#define TC_CLI_CLI_H

#include <getopt.h>
#include <signal.h>
#include <stdint.h>

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

/* Own options of one command (besides --config, --set, --help). */
#define TC_CLI_OPTS_MAX 32

/* What a command accepts. `help` is printed on stdout by --help; it starts with the usage lines
 * ("usage: thermocline NAME ..."), which end at its first empty line and are what a usage error
 * repeats on stderr. A subcommand name ("lake ls") counts as a positional argument. */
typedef struct tc_cli_spec {
    const char *name;              /* "lake": error messages say "thermocline lake: ..." */
    const char *help;              /* the whole help text */
    const char *shortopts;         /* own short options in getopt syntax ("j" "n:"), or NULL */
    const struct option *longopts; /* own long options, {NULL,0,NULL,0}-terminated, or NULL */
    int min_args, max_args;        /* positional arguments accepted */
    void (*help_more)(FILE *out);  /* NULL, or prints what follows help (generated text) */
} tc_cli_spec;

/* One parse of argv; on the caller's stack, nothing to free. */
typedef struct tc_cli_parser {
    const tc_cli_spec *spec;
    tc_cli_common *common;
    int argc;
    char **argv;
    struct option longopts[TC_CLI_OPTS_MAX + 4];
    char shortopts[3 * TC_CLI_OPTS_MAX + 8];
} tc_cli_parser;

/* Start parsing argv (argv[0] is the command's name) for spec; common receives --config/--set. */
void tc_cli_begin(tc_cli_parser *ps, const tc_cli_spec *spec, tc_cli_common *common, int argc,
                  char **argv);
/* The next of the command's own options (its value in optarg), or -1 once they are all read.
 * --help prints the help on stdout and exits 0; an unknown option or a missing value exits 2
 * with the usage lines on stderr. */
int tc_cli_next(tc_cli_parser *ps);
/* After the options: check the number of positional arguments (exit 2 when it is outside
 * [min_args, max_args]) and return the index of the first one in argv (GNU getopt moves them to
 * the end, so they may be given before, between or after options). */
int tc_cli_args(tc_cli_parser *ps);
/* A usage error found by the command itself: "thermocline NAME: <message>", the usage lines, exit
 * 2. */
_Noreturn void tc_cli_usage_error(const tc_cli_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Load the configuration and set up logging; exits with TC_EXIT_USAGE on error. */
tc_config *tc_cli_config(const tc_cli_common *c);
/* The same sequence without exiting or touching the logger: NULL with errstr set on error. */
tc_config *tc_cli_config_reload(const tc_cli_common *c, char *errstr, size_t errstr_size);

/* Parse a number option or exit with TC_EXIT_USAGE naming the option. The whole text must be the
 * number: "1.5" is not an integer, "1e3" neither (strict, so that a typo never runs with a
 * different value). */
long tc_cli_parse_long(const char *what, const char *s, long min, long max);
double tc_cli_parse_double(const char *what, const char *s, double min, double max);

/* A --since value: RFC 3339, or an age ("90s", "30m", "12h", "7d") back from now. 0, or -1 when
 * it is neither. */
int tc_cli_parse_since(const char *s, int64_t *out_us);

#define TC_CLI_COMMON_HELP                                                                         \
    "  -c, --config FILE     YAML configuration file (see `thermocline config sample`)\n"          \
    "  -s, --set KEY=VALUE   override one setting (repeatable), e.g. --set "                       \
    "pipeline.batch_size=5000\n"                                                                   \
    "  -h, --help            show this help\n"

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
int tc_cmd_topics(int argc, char **argv);
int tc_cmd_audit(int argc, char **argv);
int tc_cmd_serve(int argc, char **argv);
int tc_cmd_alert(int argc, char **argv);
int tc_cmd_features(int argc, char **argv);

struct tc_jbuf;
/* Record a change a command made in the audit log (cmd_audit.c): action ("dlq.redrive"),
 * target (or NULL), params (a JSON object being built, taken and freed here, or NULL), rows
 * affected (-1: not counted), whether it failed and why, and when it started (tc_time_now_us(),
 * 0: unknown). Returns 0, or TC_EXIT_FAILURE after saying on stderr that the log failed. */
int tc_cli_audit(const tc_config *cfg, const char *action, const char *target,
                 struct tc_jbuf *params, int64_t rows, int failed, const char *error,
                 int64_t started_us);

#endif
