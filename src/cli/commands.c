/*
 * commands.c -- the pipeline's subcommands: run, migrate, simulate, config, version.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http_client.h"
#include "cli/cli.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "ingest/kafka.h"
#include "ingest/simulator.h"
#include "process/pipeline.h"
#include "schema/registry.h"
#include "store/api_sql.h"
#include "store/store.h"

/* The reloadable keys of the configuration, written out for `run --help`. */
#define TC_RUN_RELOAD_KEYS_MAX 2048

/* The api schema over the store's and the quality monitor's tables (tc_store_migrate made both),
 * its roles and the audit log. */
static tc_err tc_migrate_api(tc_store *store, const tc_config *cfg, char *errstr,
                             size_t errstr_size)
{
    int timescaledb = tc_store_get_mode(store) == TC_STORE_TIMESCALEDB;
    tc_api_sql_options ao = {
        .store_schema = cfg->pg_schema,
        .api_schema = cfg->api_schema,
        .audit_schema = cfg->audit_schema,
        .registry_schema = TC_REGISTRY_PG_SCHEMA,
        .tenant_tag = cfg->api_tenant_tag,
        .personal_columns = cfg->api_personal_columns,
        .personal_digits = (int)cfg->api_personal_digits,
        .viewer_hidden = !strcmp(cfg->api_personal_viewer, "hide"),
        .timescaledb = timescaledb,
    };
    tc_err err = tc_api_sql_check(&ao, errstr, errstr_size);

    return err == TC_OK ? tc_api_migrate(store, &ao, errstr, errstr_size) : err;
}

int tc_cmd_migrate(int argc, char **argv)
{
    static const tc_cli_spec spec = {
        .name = "migrate",
        .help =
            "usage: thermocline migrate [options]\n\n"
            "Create or upgrade Thermocline's database objects (idempotent). The Kafka topic is\n"
            "`thermocline topics create`'s (or `run`'s, at its start).\n\n" TC_CLI_COMMON_HELP,
    };
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_store_options so;
    tc_config *cfg;
    tc_store *store;
    int rc = 0;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while (tc_cli_next(&ps) != -1)
        ;
    tc_cli_args(&ps);
    cfg = tc_cli_config(&common);
    /* The owner role creates and alters; postgres.dsn may name a role that only writes. */
    tc_store_options_for_owner(&so, cfg);
    store = tc_store_new(&so, errstr, sizeof(errstr));
    if (!store || tc_store_migrate(store, errstr, sizeof(errstr)) != TC_OK ||
        tc_registry_migrate(so.dsn, errstr, sizeof(errstr)) != TC_OK ||
        tc_store_ensure_partitions_around(store, tc_time_now_us(),
                                          (int)(cfg->limits.max_age_s / 86400) + 1, errstr,
                                          sizeof(errstr)) != TC_OK ||
        tc_migrate_api(store, cfg, errstr, sizeof(errstr)) != TC_OK) {
        fprintf(stderr, "thermocline migrate: %s\n", errstr);
        rc = TC_EXIT_FAILURE;
    } else {
        tc_jbuf params;
        tc_jbuf_init(&params, 1024);
        tc_jbuf_obj_begin(&params);
        tc_jbuf_key(&params, "api_schema");
        tc_jbuf_str(&params, cfg->api_schema);
        tc_jbuf_key(&params, "api_version");
        tc_jbuf_str(&params, TC_API_VERSION);
        tc_jbuf_obj_end(&params);
        rc = tc_cli_audit(cfg, "migrate", cfg->pg_schema, &params, -1, 0, NULL, 0);
        tc_jbuf_free(&params);
        tc_log_info("migrate", "database objects are up to date in schema \"%s\"", cfg->pg_schema);
    }
    tc_store_destroy(store);
    tc_config_destroy(cfg);
    return rc;
}

/* SIGHUP: the configuration from the same sources as at start (file, environment, --set). */
static tc_config *tc_run_reload(void *opaque, char *errstr, size_t errstr_size)
{
    return tc_cli_config_reload(opaque, errstr, errstr_size);
}

/* The end of `run --help`: the settings SIGHUP reloads, from the configuration table's flag, in
 * lines of at most 80 columns. */
static void tc_run_help_reload(FILE *out)
{
    char keys[TC_RUN_RELOAD_KEYS_MAX];
    size_t col = 0;

    tc_config_reloadable_keys(keys, sizeof(keys));
    fputs("\nSettings SIGHUP reloads:\n", out);
    for (char *k = strtok(keys, " "); k; k = strtok(NULL, " ")) {
        size_t n = strlen(k);
        if (col && col + 1 + n > 80) {
            fputc('\n', out);
            col = 0;
        }
        col += (size_t)fprintf(out, "%s%s", col ? " " : "  ", k);
    }
    fputc('\n', out);
}

int tc_cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {{"exit-when-idle", required_argument, NULL, 'i'},
                                             {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "run",
        .help =
            "usage: thermocline run [options]\n\n"
            "Run the pipeline: consume readings from Kafka, validate them, and store them in\n"
            "PostgreSQL exactly once, with refused readings as dead letters. SIGTERM or SIGINT\n"
            "stops it cleanly; SIGHUP reloads the configuration (the settings that can change\n"
            "while running are listed at the end; the others take effect at the next start).\n\n"
            "  -i, --exit-when-idle SECONDS  exit 0 once every partition is consumed and\n"
            "                                nothing new arrived for SECONDS\n" TC_CLI_COMMON_HELP,
        .shortopts = "i:",
        .longopts = longopts,
        .help_more = tc_run_help_reload,
    };
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_pipeline *p = NULL;
    tc_pipeline_stats st;
    tc_config *cfg;
    int idle = 0, rc = 0;
    tc_err err;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while (tc_cli_next(&ps) == 'i')
        idle = (int)tc_cli_parse_long("--exit-when-idle", optarg, 1, 86400);
    tc_cli_args(&ps);
    cfg = tc_cli_config(&common);
    tc_cli_install_signals();
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
    tc_cli_install_reload();
    tc_pipeline_set_reload(p, &tc_cli_reload, cfg, tc_run_reload, &common);
    err = tc_pipeline_run(p, idle, &tc_cli_stop, errstr, sizeof(errstr));
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

/* Bounds of the one registry call of `simulate --format avro`. */
#define TC_SIM_REGISTRY_TIMEOUT_MS   10000
#define TC_SIM_REGISTRY_RESPONSE_MAX 65536

/* Register the simulator's Avro writer schema under "<topic>-value" (the subject Confluent's
 * serializers use) at registry.url and return its id in *id. Registering the same schema again
 * returns the same id, so reruns on one topic are fine. */
static tc_err tc_sim_register(const tc_config *cfg, int32_t *id, char *errstr, size_t errstr_size)
{
    tc_http_url url;
    tc_http_reply r = {0};
    tc_json_doc *doc = NULL;
    tc_jbuf body, path;
    char *body_text = NULL, *path_text = NULL;
    int64_t v = 0;
    tc_err err = TC_OK;

    if (!cfg->registry_url || !*cfg->registry_url || tc_http_url_parse(cfg->registry_url, &url) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "--format avro needs registry.url (http://host:port), got \"%s\"",
                          cfg->registry_url ? cfg->registry_url : "");
    tc_jbuf_init(&body, 0);
    tc_jbuf_obj_begin(&body);
    tc_jbuf_key(&body, "schema");
    tc_jbuf_str(&body, tc_sim_avro_schema());
    tc_jbuf_key(&body, "schemaType");
    tc_jbuf_str(&body, "AVRO");
    tc_jbuf_obj_end(&body);
    body_text = tc_jbuf_take(&body, NULL);
    /* Kafka topic names are [a-zA-Z0-9._-]: nothing to percent-encode. */
    tc_jbuf_init(&path, 0);
    tc_jbuf_append(&path, "/subjects/", strlen("/subjects/"));
    tc_jbuf_append(&path, cfg->kafka_topic, strlen(cfg->kafka_topic));
    tc_jbuf_append(&path, "-value/versions", strlen("-value/versions"));
    path_text = tc_jbuf_take(&path, NULL);
    if (!body_text || !path_text) {
        err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto done;
    }
    err = tc_http_fetch(&url, "POST", path_text, "application/vnd.schemaregistry.v1+json",
                        body_text, strlen(body_text), TC_SIM_REGISTRY_TIMEOUT_MS,
                        TC_SIM_REGISTRY_RESPONSE_MAX, &r, errstr, errstr_size);
    if (err != TC_OK)
        goto done;
    doc = r.status == 200 ? tc_json_parse(r.body, r.len, NULL, NULL, NULL, 0) : NULL;
    if (!doc || !tc_json_int64(tc_json_get(tc_json_root(doc), "id"), &v) || v <= 0 ||
        v > INT32_MAX) {
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size,
                         "registering the reading schema at %s: HTTP %d: %.300s", cfg->registry_url,
                         r.status, r.body ? r.body : "");
        goto done;
    }
    *id = (int32_t)v;
done:
    tc_json_free(doc);
    tc_http_reply_free(&r);
    free(body_text);
    free(path_text);
    return err;
}

int tc_cmd_simulate(int argc, char **argv)
{
    static const struct option longopts[] = {{"devices", required_argument, NULL, 'd'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"invalid-ratio", required_argument, NULL, 'x'},
                                             {"seed", required_argument, NULL, 'S'},
                                             {"start", required_argument, NULL, 't'},
                                             {"cadence-ms", required_argument, NULL, 'm'},
                                             {"format", required_argument, NULL, 'f'},
                                             {"anomalies", required_argument, NULL, 'a'},
                                             {"truth", required_argument, NULL, 'u'},
                                             {"first-device", required_argument, NULL, 'F'},
                                             {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "simulate",
        .help =
            "usage: thermocline simulate [options]\n\n"
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
            "  -f, --format FMT         json (default) or avro: valid readings as Confluent-\n"
            "                           framed Avro, the schema registered as <topic>-value\n"
            "                           at registry.url; invalid readings stay JSON\n"
            "  -a, --anomalies SPEC     inject labelled anomalies: KIND=SHARE,... with kinds\n"
            "                           spike, drift, stuck, silent, late, ooo and SHARE the\n"
            "                           share of a device's readings affected, e.g.\n"
            "                           spike=0.01,drift=0.005,stuck=0.005,silent=0.002,\n"
            "                           late=0.01 (docs/quality.md)\n"
            "  -u, --truth FILE         write the injected anomalies as JSON lines (device,\n"
            "                           metric, kind, start, end)\n"
            "  -F, --first-device N     number the devices from N (sensor-%05d of N + k):\n"
            "                           a second fleet beside a first one (default 0)\n"
            "Same seed and --start give the same bytes.\n" TC_CLI_COMMON_HELP,
        .shortopts = "d:n:r:x:S:t:m:f:a:u:F:",
        .longopts = longopts,
    };
    tc_sim_options o = {.devices = 100, .count = 1000, .seed = 1, .cadence_ms = 10000};
    tc_sim_anomalies anomalies;
    const char *truth_path = NULL;
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_config *cfg;
    int opt, rc = 0, avro = 0;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1) {
        switch (opt) {
        case 'd':
            o.devices = (int)tc_cli_parse_long("--devices", optarg, 1, 10000000);
            break;
        case 'n':
            o.count = (uint64_t)tc_cli_parse_long("--count", optarg, 0, 1000000000000L);
            break;
        case 'r':
            o.rate = tc_cli_parse_double("--rate", optarg, 0, 1e9);
            break;
        case 'x':
            o.invalid_ratio = tc_cli_parse_double("--invalid-ratio", optarg, 0, 1);
            break;
        case 'S':
            o.seed = (uint64_t)tc_cli_parse_long("--seed", optarg, 0, 1000000000000000000L);
            break;
        case 'm':
            o.cadence_ms = tc_cli_parse_long("--cadence-ms", optarg, 1, 86400000);
            break;
        case 'f':
            if (strcmp(optarg, "json") && strcmp(optarg, "avro"))
                tc_cli_usage_error(&spec, "--format expects json or avro, got \"%s\"", optarg);
            avro = !strcmp(optarg, "avro");
            break;
        case 'a':
            if (tc_sim_anomalies_parse(optarg, &anomalies, errstr, sizeof(errstr)) != TC_OK)
                tc_cli_usage_error(&spec, "--anomalies: %s", errstr);
            o.anomalies = &anomalies;
            break;
        case 'F':
            o.first_device = (uint64_t)tc_cli_parse_long("--first-device", optarg, 0, 99999);
            break;
        case 'u':
            truth_path = optarg;
            break;
        case 't':
            if (tc_time_parse_rfc3339(optarg, strlen(optarg), &o.start_us) != TC_OK)
                tc_cli_usage_error(&spec, "--start expects an RFC 3339 time, got \"%s\"", optarg);
            break;
        default:
            break;
        }
    }
    tc_cli_args(&ps);
    if (truth_path && !o.anomalies)
        tc_cli_usage_error(&spec, "--truth needs --anomalies");
    if (truth_path && !(o.truth = fopen(truth_path, "w"))) {
        fprintf(stderr, "thermocline: --truth %s: %s\n", truth_path, strerror(errno));
        return TC_EXIT_FAILURE;
    }
    cfg = tc_cli_config(&common);
    tc_cli_install_signals();
    if (cfg->kafka_create_topic && tc_kafka_ensure_topic(cfg, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_error("simulate", "%s", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    if (avro && tc_sim_register(cfg, &o.avro_schema_id, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_error("simulate", "%s", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    if (tc_simulate(cfg, &o, stdout, (volatile int *)&tc_cli_stop, errstr, sizeof(errstr)) !=
        TC_OK) {
        tc_log_error("simulate", "%s", errstr);
        rc = TC_EXIT_FAILURE;
    }
    if (o.truth && fclose(o.truth) != 0 && rc == 0) {
        tc_log_error("simulate", "--truth %s: %s", truth_path, strerror(errno));
        rc = TC_EXIT_FAILURE;
    }
    tc_config_destroy(cfg);
    return rc;
}

int tc_cmd_config(int argc, char **argv)
{
    static const tc_cli_spec spec = {
        .name = "config",
        .help = "usage: thermocline config reference|sample|show [options]\n\n"
                "  reference   the configuration reference as markdown (docs/configuration.md)\n"
                "  sample      a commented YAML file with every setting at its default\n"
                "  show        the effective configuration after file, environment and --set\n\n"
                "The configuration (with --config and --set) is checked for every one of them.\n"
                "" TC_CLI_COMMON_HELP,
        .min_args = 1,
        .max_args = 1,
    };
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_config *cfg;
    const char *what;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while (tc_cli_next(&ps) != -1)
        ;
    what = argv[tc_cli_args(&ps)];
    if (!strcmp(what, "help")) {
        fputs(spec.help, stdout);
        return 0;
    }
    if (strcmp(what, "reference") && strcmp(what, "sample") && strcmp(what, "show"))
        tc_cli_usage_error(&spec, "unknown subcommand \"%s\"", what);
    /* --config and --set are refused where they are wrong, not ignored. */
    cfg = tc_cli_config(&common);
    if (!strcmp(what, "reference"))
        tc_config_write_reference(stdout);
    else if (!strcmp(what, "sample"))
        tc_config_write_sample(stdout);
    else
        tc_config_dump(cfg, stdout);
    tc_config_destroy(cfg);
    return 0;
}

int tc_cmd_version(int argc, char **argv)
{
    static const tc_cli_spec spec = {
        .name = "version",
        .help = "usage: thermocline version [options]\n\n"
                "Print the version. A --config file and --set values are checked.\n\n"
                "" TC_CLI_COMMON_HELP,
    };
    tc_cli_common common = {0};
    tc_cli_parser ps;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while (tc_cli_next(&ps) != -1)
        ;
    tc_cli_args(&ps);
    if (common.config_path || common.nsets)
        tc_config_destroy(tc_cli_config(&common));
    printf("thermocline %s\n", TC_VERSION);
    return 0;
}
