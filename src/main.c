/*
 * main.c -- `thermocline`: git-style subcommand dispatch.
 *
 * Each subcommand lives in src/cli/ and shares option handling and configuration loading through
 * cli.h. Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
 *
 * The table names each command's subcommands too: `thermocline --help` lists them, and the test
 * that runs every command's and subcommand's --help reads that list, so a new command or
 * subcommand is covered by it as soon as it is in the table.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct tc_command {
    const char *name;
    const char *subcommands; /* "ls|verify|compact", or "" */
    int (*fn)(int argc, char **argv);
    const char *summary;
} tc_command;

static const tc_command tc_commands[] = {
    {"run", "", tc_cmd_run, "run the pipeline (Kafka -> validate -> PostgreSQL)"},
    {"migrate", "", tc_cmd_migrate, "create or upgrade the database objects"},
    {"topics", "create|ls", tc_cmd_topics, "create the Kafka topic before the first run; list it"},
    {"simulate", "", tc_cmd_simulate, "produce simulated device readings to Kafka"},
    {"config", "reference|sample|show", tc_cmd_config,
     "print the configuration reference, a sample, or the effective one"},
    {"version", "", tc_cmd_version, "print the version"},
    {"serve", "", tc_cmd_serve, "serve the REST API over the api schema (docs/api.md)"},
    {"registry", "", tc_cmd_registry, "serve the Avro schema registry (Confluent-compatible API)"},
    {"schema", "register|ls|show|check", tc_cmd_schema,
     "register, list, show and check schemas in a registry"},
    {"lake", "ls|verify|compact|replicate", tc_cmd_lake,
     "list, verify, compact and replicate the Parquet data lake"},
    {"retention", "", tc_cmd_retention, "drop the store's days older than the retention age"},
    {"dlq", "ls|show|count|redrive", tc_cmd_dlq, "list, count, show and redrive dead letters"},
    {"replay", "", tc_cmd_replay, "process a range of the topic again into both stores"},
    {"quality", "check-rules", tc_cmd_quality, "check a data-quality rules file"},
    {"audit", "verify", tc_cmd_audit, "verify the audit log's hash chain"},
    {"alert", "send", tc_cmd_alert, "fire or resolve an alert at the configured Alertmanagers"},
    {"features", "build|training-set", tc_cmd_features,
     "build the offline ML features from the lake; join labels into a training set"},
};

static void tc_usage(FILE *out)
{
    fprintf(out, "usage: thermocline COMMAND [SUBCOMMAND] [options]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof(tc_commands) / sizeof(tc_commands[0]); i++) {
        const tc_command *c = &tc_commands[i];
        char name[64];
        snprintf(name, sizeof(name), "%s%s%s", c->name, *c->subcommands ? " " : "", c->subcommands);
        fprintf(out, "  %-34s %s\n", name, c->summary);
    }
    fprintf(out, "\nEvery command takes --help, --config FILE and --set KEY=VALUE;\n"
                 "`thermocline COMMAND --help` describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        tc_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? TC_EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version"))
        return tc_cmd_version(1, argv + 1);
    for (size_t i = 0; i < sizeof(tc_commands) / sizeof(tc_commands[0]); i++) {
        if (!strcmp(argv[1], tc_commands[i].name))
            return tc_commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "thermocline: unknown command \"%s\"\n\n", argv[1]);
    tc_usage(stderr);
    return TC_EXIT_USAGE;
}
