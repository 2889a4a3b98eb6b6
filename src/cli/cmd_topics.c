/*
 * cmd_topics.c -- `thermocline topics create|ls`: the Kafka topic before the first `run`.
 *
 * The broker does not create topics by itself (auto-create is off, as it should be in production:
 * a typo in a producer's topic would make a topic of one partition), and `run` creates kafka.topic
 * only when it starts. Devices that produce before that fail. `topics create` makes the topic with
 * the configured partitions, replication and retention (kafka.partitions,
 * kafka.replication_factor, kafka.retention_ms) and is idempotent, like `migrate` for the
 * database; `topics ls` shows the topic and its dead-letter mirror.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "ingest/kafka.h"

/* "<kafka.topic>-dlq" fits: Kafka topic names are at most 249 bytes. */
#define TC_TOPICS_NAME_MAX 300

static int tc_topics_print(const tc_config *cfg, const char *topic)
{
    char errstr[TC_ERRSTR_MAX];
    int parts, replicas;

    if (tc_kafka_describe_topic(cfg, topic, &parts, &replicas, errstr, sizeof(errstr)) != TC_OK) {
        fprintf(stderr, "thermocline topics: %s\n", errstr);
        return TC_EXIT_FAILURE;
    }
    if (parts)
        printf("%-40s %4d partitions, replication %d\n", topic, parts, replicas);
    else
        printf("%-40s missing\n", topic);
    return 0;
}

int tc_cmd_topics(int argc, char **argv)
{
    static const tc_cli_spec spec = {
        .name = "topics",
        .help =
            "usage: thermocline topics create|ls [options]\n\n"
            "  create   create kafka.topic with kafka.partitions, kafka.replication_factor and\n"
            "           kafka.retention_ms, unless it exists (idempotent); devices may produce\n"
            "           to it before the first `thermocline run`\n"
            "  ls       kafka.topic and its dead-letter mirror <kafka.topic>-dlq, with their\n"
            "           partitions and replication, or \"missing\"\n\n" TC_CLI_COMMON_HELP,
        .min_args = 1,
        .max_args = 1,
    };
    char errstr[TC_ERRSTR_MAX], dlq[TC_TOPICS_NAME_MAX];
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_config *cfg;
    const char *what;
    int rc = 0;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while (tc_cli_next(&ps) != -1)
        ;
    what = argv[tc_cli_args(&ps)];
    if (strcmp(what, "create") != 0 && strcmp(what, "ls") != 0)
        tc_cli_usage_error(&spec, "unknown subcommand \"%s\"", what);
    cfg = tc_cli_config(&common);
    if (!strcmp(what, "create")) {
        if (tc_kafka_ensure_topic(cfg, errstr, sizeof(errstr)) != TC_OK) {
            fprintf(stderr, "thermocline topics create: %s\n", errstr);
            rc = TC_EXIT_FAILURE;
        } else {
            rc = tc_topics_print(cfg, cfg->kafka_topic);
        }
    } else {
        snprintf(dlq, sizeof(dlq), "%s-dlq", cfg->kafka_topic);
        rc = tc_topics_print(cfg, cfg->kafka_topic);
        if (rc == 0)
            rc = tc_topics_print(cfg, dlq);
    }
    tc_config_destroy(cfg);
    return rc;
}
