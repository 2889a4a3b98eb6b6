/*
 * test_config.c -- the configuration table: defaults, YAML loading, environment overrides,
 * precedence, bounds, generated reference and sample, and the masked dump.
 *
 * The expected defaults and key list are written out here independently of config.c's table, so a
 * changed default or a dropped key shows up as a failing test rather than silently.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/config.h"
#include "core/error.h"

/* Every key of the table, in table order. */
static const char *const all_keys[] = {
    "kafka.brokers",
    "kafka.topic",
    "kafka.group",
    "kafka.partitions",
    "kafka.replication_factor",
    "kafka.min_insync_replicas",
    "kafka.retention_ms",
    "kafka.create_topic",
    "kafka.dlq_mirror",
    "kafka.fetch_nudge_ms",
    "registry.url",
    "registry.subject",
    "registry.refresh_ms",
    "postgres.dsn",
    "postgres.schema",
    "postgres.partition_days_ahead",
    "postgres.timescaledb",
    "postgres.chunk_interval_s",
    "postgres.compress_after_s",
    "postgres.synchronous_commit",
    "postgres.rollups",
    "postgres.writers",
    "postgres.rollup_interval_ms",
    "postgres.rollup_close_after_ms",
    "retention.max_age_s",
    "retention.require_lake",
    "features.definitions",
    "features.dir",
    "pipeline.batch_size",
    "pipeline.batch_size_max",
    "pipeline.batch_timeout_ms",
    "pipeline.partitions_per_batch",
    "pipeline.max_message_bytes",
    "pipeline.batch_memory_bytes",
    "pipeline.sinks",
    "testfail.control_file",
    "testfail.record_file",
    "dedupe.window_s",
    "dedupe.max_entries",
    "dedupe.lookback",
    "validation.temperature_min",
    "validation.temperature_max",
    "validation.humidity_min",
    "validation.humidity_max",
    "validation.pressure_min",
    "validation.pressure_max",
    "validation.battery_min",
    "validation.battery_max",
    "validation.latitude_min",
    "validation.latitude_max",
    "validation.longitude_min",
    "validation.longitude_max",
    "validation.max_future_s",
    "validation.max_age_s",
    "lake.dir",
    "lake.roll_bytes",
    "lake.roll_seconds",
    "lake.codec",
    "lake.row_group_rows",
    "lake.row_group_bytes",
    "lake.encryption.enabled",
    "lake.encryption.key_file",
    "lake.encryption.key_command",
    "lake.encryption.footer_key_id",
    "lake.encryption.column_key_id",
    "lake.encryption.column_key_columns",
    "quality.rules_file",
    "quality.late_after_s",
    "quality.max_devices",
    "quality.flush_interval_ms",
    "quality.tick_s",
    "quality.detect_location",
    "features.online_max_windows",
    "features.online_flush_interval_ms",
    "http.listen",
    "api.schema",
    "api.tenant_tag",
    "api.personal_columns",
    "api.personal_digits",
    "api.personal_viewer",
    "api.listen",
    "api.jwt_secret",
    "api.jwks_file",
    "api.keys_file",
    "api.cursor_secret",
    "api.pool_size",
    "api.rate_per_s",
    "api.rate_burst",
    "api.coalesce",
    "api.coalesce_answer_max",
    "api.coalesce_total_max",
    "audit.schema",
    "kafka.security_protocol",
    "kafka.tls.ca_file",
    "kafka.tls.cert_file",
    "kafka.tls.key_file",
    "kafka.tls.key_password_file",
    "kafka.sasl.mechanism",
    "kafka.sasl.username",
    "kafka.sasl.password_file",
    "kafka.sasl.password_env",
    "postgres.owner_dsn",
    "registry.auth.users_file",
    "registry.auth.tokens_file",
    "registry.auth.read_open",
    "registry.user_info_file",
    "registry.bearer_token_file",
    "registry.tls.ca_file",
    "registry.tls.cert_file",
    "registry.tls.key_file",
    "http.tls.cert_file",
    "http.tls.key_file",
    "http.tls.client_ca_file",
    "http.admin_listen",
    "http.max_connections",
    "http.per_ip_connections",
    "http.request_deadline_ms",
    "http.idle_timeout_s",
    "http.max_requests_per_connection",
    "http.gzip",
    "http.storage_sample_s",
    "alerting.alertmanager_urls",
    "alerting.queue_max",
    "alerting.resend_s",
    "alerting.timeout_ms",
    "alerting.escalate_after_s",
    "alerting.site",
    "alerting.not_ready_after_s",
    "export.schedules",
    "export.listen",
    "export.check_interval_s",
    "log.level",
    "log.format",
};
#define NKEYS (sizeof(all_keys) / sizeof(all_keys[0]))

/* The environment variables of the table; cleared around every test so the host's cannot leak in.
 */
static const char *const all_env[] = {
    "THERMOCLINE_KAFKA_BROKERS",
    "THERMOCLINE_KAFKA_TOPIC",
    "THERMOCLINE_KAFKA_GROUP",
    "THERMOCLINE_PG_DSN",
    "THERMOCLINE_LAKE_DIR",
    "THERMOCLINE_LOG_LEVEL",
    "THERMOCLINE_LOG_FORMAT",
    "THERMOCLINE_PG_TIMESCALEDB",
    "THERMOCLINE_HTTP_LISTEN",
    "THERMOCLINE_REGISTRY_URL",
    "THERMOCLINE_LAKE_KEY_FILE",
    "THERMOCLINE_API_LISTEN",
    "THERMOCLINE_API_JWT_SECRET",
    "THERMOCLINE_API_CURSOR_SECRET",
    "THERMOCLINE_KAFKA_SECURITY_PROTOCOL",
    "THERMOCLINE_KAFKA_TLS_CA_FILE",
    "THERMOCLINE_KAFKA_SASL_USERNAME",
    "THERMOCLINE_KAFKA_SASL_PASSWORD_FILE",
    "THERMOCLINE_PG_OWNER_DSN",
    "THERMOCLINE_REGISTRY_USER_INFO_FILE",
    "THERMOCLINE_HTTP_ADMIN_LISTEN",
    "THERMOCLINE_QUALITY_RULES_FILE",
    "THERMOCLINE_ALERTMANAGER_URLS",
    "THERMOCLINE_SITE",
};
#define NENV (sizeof(all_env) / sizeof(all_env[0]))

typedef struct fixture {
    tc_config *cfg;
    char err[TC_ERRSTR_MAX];
} fixture;

static void clear_env(void)
{
    for (size_t i = 0; i < NENV; i++)
        unsetenv(all_env[i]);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    clear_env();
    f->cfg = tc_config_new();
    if (!f->cfg) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    clear_env();
    tc_config_destroy(f->cfg);
    free(f);
    return 0;
}

static tc_err load_n(fixture *f, const char *yaml, size_t len)
{
    f->err[0] = '\0';
    return tc_config_load_yaml(f->cfg, yaml, len, "test.yaml", f->err, sizeof(f->err));
}

static tc_err load(fixture *f, const char *yaml)
{
    return load_n(f, yaml, strlen(yaml));
}

static tc_err set(fixture *f, const char *key, const char *value)
{
    f->err[0] = '\0';
    return tc_config_set(f->cfg, key, value, f->err, sizeof(f->err));
}

/* The loader must refuse yaml with an error message containing want. */
static void load_bad(fixture *f, const char *yaml, size_t len, const char *want)
{
    tc_err err = load_n(f, yaml, len);

    if (err != TC_ERR_CONFIG)
        fail_msg("accepted (%s) bad YAML: %.*s", tc_err_name(err), (int)len, yaml);
    if (!strstr(f->err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", f->err, want);
}

#define LOAD_BAD(f, lit, want) load_bad(f, lit, sizeof(lit) - 1, want)

/* Everything fprintf'd by fn, as a malloc'd string. */
static char *capture(void (*fn)(FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    assert_non_null(out);
    fn(out);
    assert_int_equal(fclose(out), 0);
    assert_non_null(buf);
    return buf;
}

static char *dump(const tc_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    assert_non_null(out);
    tc_config_dump(cfg, out);
    assert_int_equal(fclose(out), 0);
    assert_non_null(buf);
    return buf;
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    fixture *f = *state;
    const tc_config *c = f->cfg;

    assert_string_equal(c->kafka_brokers, "127.0.0.1:9092");
    assert_string_equal(c->kafka_topic, "iot-telemetry");
    assert_string_equal(c->kafka_group, "thermocline");
    assert_int_equal(c->kafka_partitions, 6);
    assert_int_equal(c->kafka_replication_factor, 3);
    assert_int_equal(c->kafka_min_insync_replicas, 2);
    assert_int_equal(c->kafka_retention_ms, 604800000);
    assert_int_equal(c->kafka_create_topic, 1);
    assert_int_equal(c->quality_detect_location, 0); /* the detectors leave the coordinates out */
    assert_string_equal(c->pg_dsn, "dbname=thermocline");
    assert_string_equal(c->pg_schema, "telemetry");
    assert_int_equal(c->pg_partition_days_ahead, 2);
    assert_int_equal(c->batch_size, 1000);
    assert_int_equal(c->batch_size_max, 10000);
    assert_int_equal(c->batch_timeout_ms, 100);
    assert_int_equal(c->max_message_bytes, 1048576);
    assert_int_equal(c->batch_memory_bytes, 67108864);
    assert_true(c->limits.min[0] == -50 && c->limits.max[0] == 100);
    assert_true(c->limits.min[1] == 0 && c->limits.max[1] == 100);
    assert_true(c->limits.min[2] == 300 && c->limits.max[2] == 1100);
    assert_true(c->limits.min[3] == 0 && c->limits.max[3] == 100);
    assert_true(c->limits.min[4] == -90 && c->limits.max[4] == 90);
    assert_true(c->limits.min[5] == -180 && c->limits.max[5] == 180);
    assert_int_equal(c->limits.max_future_s, 300);
    assert_int_equal(c->limits.max_age_s, 2592000);
    assert_string_equal(c->lake_dir, "");
    assert_string_equal(c->log_level, "info");
    assert_string_equal(c->log_format, "auto");
    assert_int_equal(c->rdkafka_count, 0);
}

/* tc_config_diff names exactly the keys that differ; tc_config_copy_key makes them equal. */
static void test_diff_and_copy(void **state)
{
    fixture *f = *state;
    tc_config *other = tc_config_new();
    const char *keys[8];
    char err[TC_ERRSTR_MAX];

    assert_non_null(other);
    assert_int_equal(tc_config_diff(f->cfg, other, keys, 8), 0);
    assert_int_equal(set(f, "validation.temperature_max", "55.5"), TC_OK);
    assert_int_equal(set(f, "log.level", "debug"), TC_OK);
    assert_int_equal(set(f, "pipeline.batch_size", "77"), TC_OK);
    assert_int_equal(tc_config_set(other, "rdkafka.fetch.wait.max.ms", "5", err, sizeof(err)),
                     TC_OK);
    assert_int_equal(tc_config_diff(f->cfg, other, keys, 8), 4);
    assert_string_equal(keys[0], "pipeline.batch_size"); /* table order */
    assert_string_equal(keys[3], "rdkafka.*");
    assert_int_equal(tc_config_diff(f->cfg, other, keys, 1), 4); /* counts past max */
    assert_int_equal(tc_config_copy_key(other, f->cfg, "validation.temperature_max"), TC_OK);
    assert_int_equal(tc_config_copy_key(other, f->cfg, "log.level"), TC_OK);
    assert_int_equal(tc_config_copy_key(other, f->cfg, "pipeline.batch_size"), TC_OK);
    assert_int_equal(tc_config_copy_key(other, f->cfg, "no.such.key"), TC_ERR_CONFIG);
    assert_true(other->limits.max[0] /* temperature */ == 55.5);
    assert_string_equal(other->log_level, "debug");
    assert_int_equal(tc_config_diff(f->cfg, other, keys, 8), 1);
    tc_config_destroy(other);
}

/* Every key of the list can be set (by name, with its default's text form). */
static void test_every_key_settable(void **state)
{
    fixture *f = *state;

    for (size_t i = 0; i < NKEYS; i++) {
        const char *v =
            strstr(all_keys[i], "create_topic") || strstr(all_keys[i], "commit") ||
                    strstr(all_keys[i], "dlq_mirror") || strstr(all_keys[i], "rollups") ||
                    strstr(all_keys[i], "require_") || strstr(all_keys[i], "encryption.enabled") ||
                    strstr(all_keys[i], "read_open") || strstr(all_keys[i], "detect_location")
                ? "false"
                : "7";

        if (strstr(all_keys[i], "max_age_s") || strstr(all_keys[i], "retention_ms") ||
            strstr(all_keys[i], "interval_s"))
            v = "60000";
        if (strstr(all_keys[i], "max_message_bytes") || strstr(all_keys[i], "memory_bytes") ||
            strstr(all_keys[i], "roll_bytes") || strstr(all_keys[i], "row_group_bytes"))
            v = "2097152";
        if (strstr(all_keys[i], "row_group_rows"))
            v = "4096";
        if (strstr(all_keys[i], "refresh_ms") || strstr(all_keys[i], "deadline_ms") ||
            strstr(all_keys[i], "flush_interval_ms") || strstr(all_keys[i], "timeout_ms"))
            v = "1000";
        /* Enumerated settings take one of their values. */
        if (!strcmp(all_keys[i], "postgres.timescaledb"))
            v = "on";
        if (!strcmp(all_keys[i], "lake.codec"))
            v = "zstd";
        if (!strcmp(all_keys[i], "log.level"))
            v = "warn";
        if (!strcmp(all_keys[i], "log.format"))
            v = "human";
        if (!strcmp(all_keys[i], "api.personal_viewer"))
            v = "hide";
        if (strstr(all_keys[i], "_digits"))
            v = "3";
        if (!strcmp(all_keys[i], "api.coalesce") || !strcmp(all_keys[i], "http.gzip"))
            v = "false";
        if (strstr(all_keys[i], "api.coalesce_"))
            v = "2097152";
        if (set(f, all_keys[i], v) != TC_OK)
            fail_msg("could not set %s = %s: %s", all_keys[i], v, f->err);
    }
    assert_string_equal(f->cfg->kafka_topic, "7");
    assert_int_equal(f->cfg->batch_size, 7);
    assert_int_equal(f->cfg->kafka_create_topic, 0);
    assert_true(f->cfg->limits.max[5] == 7);
    assert_int_equal(f->cfg->limits.max_age_s, 60000);
    assert_int_equal(f->cfg->batch_memory_bytes, 2097152);
}

/* ---- tc_config_set: types and bounds ---- */

static void test_unknown_key(void **state)
{
    fixture *f = *state;

    assert_int_equal(set(f, "kafka.topik", "x"), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "\"kafka.topik\""));
    assert_int_equal(set(f, "kafka", "x"), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "\"kafka\""));
    assert_int_equal(set(f, "", "x"), TC_ERR_CONFIG);
    assert_int_equal(set(f, "KAFKA.TOPIC", "x"), TC_ERR_CONFIG); /* keys are case-sensitive */
    assert_string_equal(f->cfg->kafka_topic, "iot-telemetry");
}

static void test_int_bounds(void **state)
{
    fixture *f = *state;
    static const char *const bad[] = {"0",   "-1",  "1000001", "1.5",   "abc", "",   "12abc",
                                      "nan", "inf", "-inf",    "1e400", "1 2", "0x", "10 "};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (set(f, "pipeline.batch_size", bad[i]) != TC_ERR_CONFIG)
            fail_msg("batch_size \"%s\" accepted", bad[i]);
        assert_non_null(strstr(f->err, "pipeline.batch_size"));
        assert_int_equal(f->cfg->batch_size, 1000); /* unchanged */
    }
    assert_int_equal(set(f, "pipeline.batch_size", "0"), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "outside"));
    assert_int_equal(set(f, "pipeline.batch_size", "1.5"), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "not an integer"));
    assert_int_equal(set(f, "pipeline.batch_size", "abc"), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "not a number"));

    assert_int_equal(set(f, "pipeline.batch_size", "1"), TC_OK);
    assert_int_equal(f->cfg->batch_size, 1);
    assert_int_equal(set(f, "pipeline.batch_size", "1000000"), TC_OK);
    assert_int_equal(f->cfg->batch_size, 1000000);
    assert_int_equal(set(f, "pipeline.batch_size", "250.0"), TC_OK); /* integral */
    assert_int_equal(f->cfg->batch_size, 250);

    /* Other bounds of the table, at and past each edge. */
    assert_int_equal(set(f, "validation.max_age_s", "60"), TC_OK);
    assert_int_equal(set(f, "validation.max_age_s", "59"), TC_ERR_CONFIG);
    assert_int_equal(f->cfg->limits.max_age_s, 60);
    assert_int_equal(set(f, "validation.max_future_s", "0"), TC_OK);
    assert_int_equal(set(f, "validation.max_future_s", "-1"), TC_ERR_CONFIG);
    assert_int_equal(set(f, "kafka.replication_factor", "16"), TC_OK);
    assert_int_equal(set(f, "kafka.replication_factor", "17"), TC_ERR_CONFIG);
    assert_int_equal(set(f, "kafka.min_insync_replicas", "0"), TC_ERR_CONFIG);
    assert_int_equal(set(f, "kafka.min_insync_replicas", "16"), TC_OK);
    assert_int_equal(set(f, "pipeline.max_message_bytes", "63"), TC_ERR_CONFIG);
    assert_int_equal(set(f, "pipeline.max_message_bytes", "104857600"), TC_OK);
    assert_int_equal(set(f, "pipeline.max_message_bytes", "104857601"), TC_ERR_CONFIG);
    assert_int_equal(set(f, "pipeline.batch_memory_bytes", "17179869184"), TC_OK);
    assert_int_equal(f->cfg->batch_memory_bytes, INT64_C(17179869184)); /* beyond 32 bits */
    assert_int_equal(set(f, "pipeline.batch_memory_bytes", "17179869185"), TC_ERR_CONFIG);
}

static void test_double_values(void **state)
{
    fixture *f = *state;

    assert_int_equal(set(f, "validation.temperature_min", "-60.5"), TC_OK);
    assert_true(f->cfg->limits.min[0] == -60.5);
    assert_int_equal(set(f, "validation.pressure_max", "1e3"), TC_OK);
    assert_true(f->cfg->limits.max[2] == 1000);
    assert_int_equal(set(f, "validation.temperature_min", "cold"), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "validation.temperature_min"));
    assert_int_equal(set(f, "validation.temperature_min", "nan"), TC_ERR_CONFIG);
    assert_int_equal(set(f, "validation.temperature_min", "-inf"), TC_ERR_CONFIG);
    assert_int_equal(set(f, "validation.temperature_min", "1e999"), TC_ERR_CONFIG);
    assert_true(f->cfg->limits.min[0] == -60.5);
}

static void test_bool_values(void **state)
{
    fixture *f = *state;
    static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "Yes", "ON"};
    static const char *const no[] = {"false", "no", "off", "0", "FALSE", "No", "Off"};
    static const char *const bad[] = {"", "maybe", "2", "y", "n", "truee", " true"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        f->cfg->kafka_create_topic = 0;
        assert_int_equal(set(f, "kafka.create_topic", yes[i]), TC_OK);
        assert_int_equal(f->cfg->kafka_create_topic, 1);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        f->cfg->kafka_create_topic = 1;
        assert_int_equal(set(f, "kafka.create_topic", no[i]), TC_OK);
        assert_int_equal(f->cfg->kafka_create_topic, 0);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (set(f, "kafka.create_topic", bad[i]) != TC_ERR_CONFIG)
            fail_msg("boolean \"%s\" accepted", bad[i]);
        assert_non_null(strstr(f->err, "kafka.create_topic"));
        assert_non_null(strstr(f->err, "boolean"));
        assert_int_equal(f->cfg->kafka_create_topic, 0);
    }
}

static void test_string_values(void **state)
{
    fixture *f = *state;

    assert_int_equal(set(f, "kafka.brokers", "a:1,b:2"), TC_OK);
    assert_string_equal(f->cfg->kafka_brokers, "a:1,b:2");
    assert_int_equal(set(f, "lake.dir", "/var/lib/thermocline/lake"), TC_OK);
    assert_string_equal(f->cfg->lake_dir, "/var/lib/thermocline/lake");
    assert_int_equal(set(f, "lake.dir", ""), TC_OK);
    assert_string_equal(f->cfg->lake_dir, "");
}

/* ---- rdkafka.* pass-through ---- */

static void test_rdkafka_set(void **state)
{
    fixture *f = *state;

    assert_int_equal(set(f, "rdkafka.fetch.wait.max.ms", "50"), TC_OK);
    assert_int_equal(set(f, "rdkafka.client.id", "tc"), TC_OK);
    assert_int_equal(f->cfg->rdkafka_count, 2);
    assert_string_equal(f->cfg->rdkafka_keys[0], "fetch.wait.max.ms");
    assert_string_equal(f->cfg->rdkafka_values[0], "50");
    assert_string_equal(f->cfg->rdkafka_keys[1], "client.id");
    assert_string_equal(f->cfg->rdkafka_values[1], "tc");
    /* Setting a property again replaces its value. */
    assert_int_equal(set(f, "rdkafka.fetch.wait.max.ms", "10"), TC_OK);
    assert_int_equal(f->cfg->rdkafka_count, 2);
    assert_string_equal(f->cfg->rdkafka_values[0], "10");
    /* The property name must not be empty. */
    assert_int_equal(set(f, "rdkafka.", "x"), TC_ERR_CONFIG);
    assert_int_equal(f->cfg->rdkafka_count, 2);
}

static void test_rdkafka_limit(void **state)
{
    fixture *f = *state;
    char key[64];

    for (int i = 0; i < TC_CONFIG_RDKAFKA_MAX; i++) {
        snprintf(key, sizeof(key), "rdkafka.prop.%d", i);
        assert_int_equal(set(f, key, "v"), TC_OK);
    }
    assert_int_equal(f->cfg->rdkafka_count, TC_CONFIG_RDKAFKA_MAX);
    assert_int_equal(set(f, "rdkafka.one.too.many", "v"), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "64"));
    assert_int_equal(f->cfg->rdkafka_count, TC_CONFIG_RDKAFKA_MAX);
    /* A property already there can still be changed at the limit. */
    assert_int_equal(set(f, "rdkafka.prop.63", "w"), TC_OK);
    assert_string_equal(f->cfg->rdkafka_values[63], "w");
}

static void test_rdkafka_yaml(void **state)
{
    fixture *f = *state;

    assert_int_equal(load(f, "rdkafka:\n"
                             "  fetch.wait.max.ms: 50\n"
                             "  client.id: tc-test\n"
                             "  fetch:\n"
                             "    min.bytes: 1\n"
                             "  \"socket.keepalive.enable\": true\n"),
                     TC_OK);
    assert_int_equal(f->cfg->rdkafka_count, 4);
    assert_string_equal(f->cfg->rdkafka_keys[0], "fetch.wait.max.ms");
    assert_string_equal(f->cfg->rdkafka_values[0], "50");
    assert_string_equal(f->cfg->rdkafka_keys[1], "client.id");
    assert_string_equal(f->cfg->rdkafka_values[1], "tc-test");
    assert_string_equal(f->cfg->rdkafka_keys[2], "fetch.min.bytes");
    assert_string_equal(f->cfg->rdkafka_values[2], "1");
    assert_string_equal(f->cfg->rdkafka_keys[3], "socket.keepalive.enable");
    assert_string_equal(f->cfg->rdkafka_values[3], "true");
    /* An empty rdkafka section is fine (the sample has one). */
    assert_int_equal(load(f, "rdkafka:\n  # nothing\n"), TC_OK);
    assert_int_equal(f->cfg->rdkafka_count, 4);
}

/* ---- YAML ---- */

static void test_yaml_nested(void **state)
{
    fixture *f = *state;

    assert_int_equal(load(f, "# a comment\n"
                             "kafka:\n"
                             "  brokers: broker-1:9092,broker-2:9092\n"
                             "  partitions: 12\n"
                             "  create_topic: no\n"
                             "postgres:\n"
                             "  dsn: \"host=db dbname=t\"\n"
                             "pipeline:\n"
                             "  batch_size: 5000\n"
                             "validation:\n"
                             "  temperature_min: -40.5\n"
                             "log: {level: debug, format: json}\n"),
                     TC_OK);
    assert_string_equal(f->cfg->kafka_brokers, "broker-1:9092,broker-2:9092");
    assert_int_equal(f->cfg->kafka_partitions, 12);
    assert_int_equal(f->cfg->kafka_create_topic, 0);
    assert_string_equal(f->cfg->pg_dsn, "host=db dbname=t");
    assert_int_equal(f->cfg->batch_size, 5000);
    assert_true(f->cfg->limits.min[0] == -40.5);
    assert_string_equal(f->cfg->log_level, "debug");
    assert_string_equal(f->cfg->log_format, "json");
    /* Untouched keys keep their defaults. */
    assert_string_equal(f->cfg->kafka_topic, "iot-telemetry");
    assert_int_equal(f->cfg->batch_timeout_ms, 100);
}

static void test_yaml_forms(void **state)
{
    fixture *f = *state;

    /* Dotted keys at any level, flow style, quoted and tagged scalars. */
    assert_int_equal(load(f, "kafka.topic: flat\n"), TC_OK);
    assert_string_equal(f->cfg->kafka_topic, "flat");
    assert_int_equal(load(f, "{kafka: {topic: flow}}"), TC_OK);
    assert_string_equal(f->cfg->kafka_topic, "flow");
    assert_int_equal(load(f, "kafka:\n  topic: 'single'\n"), TC_OK);
    assert_string_equal(f->cfg->kafka_topic, "single");
    assert_int_equal(load(f, "kafka:\n  topic: !!str tagged\n"), TC_OK);
    assert_string_equal(f->cfg->kafka_topic, "tagged");
    assert_int_equal(load(f, "pipeline:\n  batch_size: \"42\"\n"), TC_OK);
    assert_int_equal(f->cfg->batch_size, 42);
    /* Later documents of a stream apply in order. */
    assert_int_equal(load(f, "kafka: {topic: one}\n---\nkafka: {topic: two}\n"), TC_OK);
    assert_string_equal(f->cfg->kafka_topic, "two");
}

static void test_yaml_empty(void **state)
{
    fixture *f = *state;
    char *before = dump(f->cfg), *after;

    assert_int_equal(load(f, ""), TC_OK);
    assert_int_equal(load(f, "# only a comment\n\n"), TC_OK);
    assert_int_equal(load(f, "---\n...\n"), TC_OK);
    after = dump(f->cfg);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* A null value (empty, ~, null) leaves the default; the key must still exist. */
static void test_yaml_null(void **state)
{
    fixture *f = *state;

    assert_int_equal(load(f, "kafka:\n  topic:\n  group: ~\n  brokers: null\n"), TC_OK);
    assert_string_equal(f->cfg->kafka_topic, "iot-telemetry");
    assert_string_equal(f->cfg->kafka_group, "thermocline");
    assert_string_equal(f->cfg->kafka_brokers, "127.0.0.1:9092");
    assert_int_equal(load(f, "kafka:\nlake:\n"), TC_OK);
    /* A quoted empty string is a value, not null. */
    assert_int_equal(load(f, "kafka:\n  topic: \"\"\n"), TC_OK);
    assert_string_equal(f->cfg->kafka_topic, "");
    LOAD_BAD(f, "kafka:\n  topik:\n", "kafka.topik");
    LOAD_BAD(f, "bogus: ~\n", "bogus");
}

static void test_yaml_unknown_key(void **state)
{
    fixture *f = *state;

    LOAD_BAD(f, "kafka:\n  topic: x\n  topik: y\n", "\"kafka.topik\"");
    LOAD_BAD(f, "bogus: 1\n", "\"bogus\"");
    LOAD_BAD(f, "kafka: 5\n", "\"kafka\""); /* a section is not a setting */
    LOAD_BAD(f, "pipeline:\n  batch:\n    size: 10\n", "\"pipeline.batch.size\"");
}

static void test_yaml_bad_values(void **state)
{
    fixture *f = *state;

    LOAD_BAD(f, "pipeline:\n  batch_size: 0\n", "pipeline.batch_size");
    LOAD_BAD(f, "pipeline:\n  batch_size: ten\n", "not a number");
    LOAD_BAD(f, "pipeline:\n  batch_size: 2.5\n", "not an integer");
    LOAD_BAD(f, "kafka:\n  create_topic: perhaps\n", "boolean");
    assert_int_equal(f->cfg->batch_size, 1000);
    assert_int_equal(f->cfg->kafka_create_topic, 1);
    /* YAML booleans. */
    assert_int_equal(load(f, "kafka:\n  create_topic: no\n"), TC_OK);
    assert_int_equal(f->cfg->kafka_create_topic, 0);
    assert_int_equal(load(f, "kafka:\n  create_topic: yes\n"), TC_OK);
    assert_int_equal(f->cfg->kafka_create_topic, 1);
    assert_int_equal(load(f, "kafka:\n  create_topic: false\n"), TC_OK);
    assert_int_equal(f->cfg->kafka_create_topic, 0);
    assert_int_equal(load(f, "kafka:\n  create_topic: true\n"), TC_OK);
    assert_int_equal(f->cfg->kafka_create_topic, 1);
}

static void test_yaml_syntax_error(void **state)
{
    fixture *f = *state;

    /* "a: b" as a plain value is not allowed; the error is on line 3. */
    LOAD_BAD(f, "kafka:\n  topic: x\n  group: a: b\n", "line 3");
    assert_non_null(strstr(f->err, "test.yaml"));
    /* Unterminated quote: the parser notices at the end of the stream, line 4. */
    LOAD_BAD(f, "kafka:\n  topic: \"abc\n  group: g\n", "line 4");
    /* Tab indentation. */
    LOAD_BAD(f, "kafka:\n\ttopic: x\n", "line 2");
    /* Bad indentation. */
    LOAD_BAD(f, "kafka:\n  topic: x\n topic2: y\n", "line 3");
}

static void test_yaml_sequences_rejected(void **state)
{
    fixture *f = *state;

    LOAD_BAD(f, "kafka:\n  brokers:\n    - a:9092\n    - b:9092\n", "sequences");
    assert_non_null(strstr(f->err, "line 3"));
    LOAD_BAD(f, "kafka: {brokers: [a, b]}\n", "sequences");
    LOAD_BAD(f, "- kafka\n- topic\n", "sequences");
    LOAD_BAD(f, "kafka:\n  topic: &t x\n  group: *t\n", "aliases");
    assert_string_equal(f->cfg->kafka_brokers, "127.0.0.1:9092");
}

static void test_yaml_top_level(void **state)
{
    fixture *f = *state;

    LOAD_BAD(f, "hello\n", "top level must be a mapping");
    LOAD_BAD(f, "\"quoted\"\n", "top level must be a mapping");
    LOAD_BAD(f, "42\n", "top level must be a mapping");
    LOAD_BAD(f, "? {a: 1}\n: x\n", "cannot be a key");
}

static void test_yaml_depth(void **state)
{
    fixture *f = *state;

    /* Eight mappings deep (the top level counts) is the limit... */
    assert_int_equal(load(f, "rdkafka: {a: {b: {c: {d: {e: {f: {g: 1}}}}}}}"), TC_OK);
    assert_int_equal(f->cfg->rdkafka_count, 1);
    assert_string_equal(f->cfg->rdkafka_keys[0], "a.b.c.d.e.f.g");
    /* ...nine is refused. */
    LOAD_BAD(f, "rdkafka: {a: {b: {c: {d: {e: {f: {g: {h: 1}}}}}}}}", "nesting deeper than 8");
    assert_int_equal(f->cfg->rdkafka_count, 1);
    /* Far deeper: refused the same way, without recursion. */
    {
        enum { DEEP = 10000 };
        char *y = malloc(5 * DEEP + 16);
        size_t n = 0;

        assert_non_null(y);
        for (int i = 0; i < DEEP; i++) {
            memcpy(y + n, "a: {", 4);
            n += 4;
        }
        y[n++] = 'x';
        for (int i = 0; i < DEEP; i++)
            y[n++] = '}';
        load_bad(f, y, n, "nesting deeper than 8");
        free(y);
    }
}

static void test_yaml_nul_bytes(void **state)
{
    fixture *f = *state;

    /* A raw NUL byte is refused by the YAML reader. */
    LOAD_BAD(f, "kafka:\n  topic: a\0b\n", "could not parse");
    /* An escaped one reaches us and is refused: a C string cannot carry it. */
    LOAD_BAD(f, "kafka:\n  topic: \"a\\0b\"\n", "NUL byte");
    assert_non_null(strstr(f->err, "kafka.topic"));
    LOAD_BAD(f, "\"kaf\\0ka\": 1\n", "invalid key");
    LOAD_BAD(f, "rdkafka:\n  \"client\\0id\": x\n", "invalid key");
    assert_string_equal(f->cfg->kafka_topic, "iot-telemetry");
    assert_int_equal(f->cfg->rdkafka_count, 0);
}

static void test_yaml_long_keys(void **state)
{
    fixture *f = *state;
    char y[1024];
    char key[301];

    memset(key, 'k', 300);
    key[300] = '\0';
    snprintf(y, sizeof(y), "%s: 1\n", key);
    load_bad(f, y, strlen(y), "invalid key");
    /* Each part fits, the joined key does not. */
    memset(key, 'k', 200);
    key[200] = '\0';
    snprintf(y, sizeof(y), "rdkafka:\n  %s:\n    %.100s: 1\n", key, key);
    load_bad(f, y, strlen(y), "key too long");
    assert_int_equal(f->cfg->rdkafka_count, 0);
}

static void test_yaml_invalid_utf8(void **state)
{
    fixture *f = *state;

    LOAD_BAD(f, "kafka:\n  topic: \xc3\x28\n", "could not parse");
    LOAD_BAD(f, "kafka:\n  topic: \xff\xfe\n", "could not parse");
    assert_string_equal(f->cfg->kafka_topic, "iot-telemetry");
}

/* ---- files, environment, precedence ---- */

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/tc_test_config_XXXXXX");
    int fd;
    FILE *fp;

    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    fp = fdopen(fd, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
    return path;
}

static void test_load_file(void **state)
{
    fixture *f = *state;
    char *path = write_temp("kafka:\n  topic: from-file\n");

    assert_int_equal(tc_config_load_file(f->cfg, path, f->err, sizeof(f->err)), TC_OK);
    assert_string_equal(f->cfg->kafka_topic, "from-file");
    unlink(path);
    assert_int_equal(tc_config_load_file(f->cfg, path, f->err, sizeof(f->err)), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, path));
    free(path);
}

/* Errors in a file name the file and the line. */
static void test_load_file_errors_name_file(void **state)
{
    fixture *f = *state;
    char *path = write_temp("kafka:\n  topic: x\n  group: a: b\n");

    assert_int_equal(tc_config_load_file(f->cfg, path, f->err, sizeof(f->err)), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, path));
    assert_non_null(strstr(f->err, "line 3"));
    unlink(path);
    free(path);
}

static void test_load_file_too_large(void **state)
{
    fixture *f = *state;
    char path[] = "/tmp/tc_test_config_big_XXXXXX";
    int fd = mkstemp(path);
    FILE *fp;
    char line[1024];

    assert_true(fd >= 0);
    fp = fdopen(fd, "w");
    assert_non_null(fp);
    memset(line, ' ', sizeof(line));
    line[0] = '#';
    line[sizeof(line) - 1] = '\n';
    for (int i = 0; i < 1025; i++) /* just over 1 MiB of comments */
        assert_int_equal(fwrite(line, 1, sizeof(line), fp), sizeof(line));
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(tc_config_load_file(f->cfg, path, f->err, sizeof(f->err)), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "larger than"));
    unlink(path);
}

static void test_env_overrides(void **state)
{
    fixture *f = *state;

    setenv("THERMOCLINE_KAFKA_BROKERS", "env-broker:9092", 1);
    setenv("THERMOCLINE_KAFKA_TOPIC", "env-topic", 1);
    setenv("THERMOCLINE_KAFKA_GROUP", "env-group", 1);
    setenv("THERMOCLINE_PG_DSN", "host=env", 1);
    setenv("THERMOCLINE_LAKE_DIR", "/env/lake", 1);
    setenv("THERMOCLINE_LOG_LEVEL", "warn", 1);
    setenv("THERMOCLINE_LOG_FORMAT", "human", 1);
    /* Variables the table does not name change nothing. */
    setenv("THERMOCLINE_PIPELINE_BATCH_SIZE", "7", 1);
    assert_int_equal(tc_config_apply_env(f->cfg, f->err, sizeof(f->err)), TC_OK);
    unsetenv("THERMOCLINE_PIPELINE_BATCH_SIZE");
    assert_string_equal(f->cfg->kafka_brokers, "env-broker:9092");
    assert_string_equal(f->cfg->kafka_topic, "env-topic");
    assert_string_equal(f->cfg->kafka_group, "env-group");
    assert_string_equal(f->cfg->pg_dsn, "host=env");
    assert_string_equal(f->cfg->lake_dir, "/env/lake");
    assert_string_equal(f->cfg->log_level, "warn");
    assert_string_equal(f->cfg->log_format, "human");
    assert_int_equal(f->cfg->batch_size, 1000);
}

static void test_env_unset_changes_nothing(void **state)
{
    fixture *f = *state;
    char *before, *after;

    assert_int_equal(set(f, "kafka.topic", "mine"), TC_OK);
    before = dump(f->cfg);
    assert_int_equal(tc_config_apply_env(f->cfg, f->err, sizeof(f->err)), TC_OK);
    after = dump(f->cfg);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* Precedence, lowest first: default, file, environment, tc_config_set (--set). */
static void test_precedence(void **state)
{
    fixture *f = *state;
    char *path = write_temp("kafka:\n  topic: file-topic\n  group: file-group\n"
                            "pipeline:\n  batch_size: 77\n");
    tc_config *cfg;

    setenv("THERMOCLINE_KAFKA_TOPIC", "env-topic", 1);
    cfg = tc_config_load(path, f->err, sizeof(f->err));
    assert_non_null(cfg);
    assert_string_equal(cfg->kafka_topic, "env-topic");        /* env beats file */
    assert_string_equal(cfg->kafka_group, "file-group");       /* file beats default */
    assert_int_equal(cfg->batch_size, 77);                     /* file beats default */
    assert_string_equal(cfg->kafka_brokers, "127.0.0.1:9092"); /* default */
    assert_int_equal(tc_config_set(cfg, "kafka.topic", "set-topic", f->err, sizeof(f->err)), TC_OK);
    assert_string_equal(cfg->kafka_topic, "set-topic"); /* --set beats env */
    tc_config_destroy(cfg);

    /* Without a file: defaults, then the environment. */
    cfg = tc_config_load(NULL, f->err, sizeof(f->err));
    assert_non_null(cfg);
    assert_string_equal(cfg->kafka_topic, "env-topic");
    assert_string_equal(cfg->kafka_group, "thermocline");
    tc_config_destroy(cfg);

    /* A missing or bad file fails the whole load. */
    unlink(path);
    assert_null(tc_config_load(path, f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, path));
    free(path);
    path = write_temp("pipeline:\n  batch_size: 0\n");
    assert_null(tc_config_load(path, f->err, sizeof(f->err)));
    assert_non_null(strstr(f->err, "pipeline.batch_size"));
    unlink(path);
    free(path);
}

/* ---- generated reference, sample, dump ---- */

static void test_reference(void **state)
{
    char *ref = capture(tc_config_write_reference);
    char needle[128];
    int rows = 0;

    (void)state;
    assert_non_null(strstr(ref, "| key | type | default |"));
    for (size_t i = 0; i < NKEYS; i++) {
        snprintf(needle, sizeof(needle), "| `%s` |", all_keys[i]);
        if (!strstr(ref, needle))
            fail_msg("reference lacks %s", all_keys[i]);
    }
    for (size_t i = 0; i < NENV; i++) {
        snprintf(needle, sizeof(needle), "`%s`", all_env[i]);
        if (!strstr(ref, needle))
            fail_msg("reference lacks %s", all_env[i]);
    }
    for (const char *p = ref; (p = strstr(p, "\n| `")) != NULL; p++)
        rows++;
    assert_int_equal(rows, NKEYS);
    /* Types, defaults and bounds are in the row. */
    assert_non_null(strstr(ref, "| `pipeline.batch_size` | integer | `1000` | 1 .. 1000000 |"));
    assert_non_null(strstr(ref, "| `kafka.topic` | string | `iot-telemetry` |"));
    assert_non_null(strstr(ref, "| `kafka.create_topic` | boolean | `true` |"));
    assert_non_null(strstr(ref, "| `validation.temperature_min` | number | `-50` |"));
    /* Enumerated settings list their values; reloadable ones are marked. */
    assert_non_null(strstr(ref, "| `postgres.timescaledb` | enum | `auto` | auto, on, off |"));
    assert_non_null(strstr(ref, "| `lake.codec` | enum | `snappy` | snappy, zstd, none |  |  |"));
    assert_non_null(strstr(ref, "| `log.level` | enum | `info` | debug, info, warn, error | "
                                "`THERMOCLINE_LOG_LEVEL` | yes |"));
    assert_non_null(strstr(ref, "| `validation.max_age_s` | integer | `2592000` | 60 .. "
                                "3153600000 |  | yes |"));
    assert_non_null(strstr(ref, "rdkafka."));
    free(ref);
}

static void test_sample_lists_every_key(void **state)
{
    char *sample = capture(tc_config_write_sample);
    char needle[128];

    (void)state;
    for (size_t i = 0; i < NKEYS; i++) {
        const char *dot = strchr(all_keys[i], '.');
        const char *section;

        snprintf(needle, sizeof(needle), "\n%.*s:\n", (int)(dot - all_keys[i]), all_keys[i]);
        section = strstr(sample, needle);
        assert_non_null(section);
        snprintf(needle, sizeof(needle), "\n  %s: ", dot + 1);
        if (!strstr(section, needle))
            fail_msg("sample lacks %s", all_keys[i]);
    }
    for (size_t i = 0; i < NENV; i++) {
        if (!strstr(sample, all_env[i]))
            fail_msg("sample lacks %s", all_env[i]);
    }
    assert_non_null(strstr(sample, "\nrdkafka:\n"));
    free(sample);
}

/* The sample, loaded back, gives exactly the defaults. */
static void test_sample_round_trip(void **state)
{
    fixture *f = *state;
    char *sample = capture(tc_config_write_sample);
    tc_config *fresh = tc_config_new();
    char *want, *got;

    assert_non_null(fresh);
    /* Start from a config that differs everywhere the sample could matter. */
    assert_int_equal(set(f, "kafka.topic", "other"), TC_OK);
    assert_int_equal(set(f, "pipeline.batch_size", "3"), TC_OK);
    assert_int_equal(set(f, "kafka.create_topic", "false"), TC_OK);
    assert_int_equal(set(f, "validation.latitude_max", "1.25"), TC_OK);
    assert_int_equal(set(f, "lake.dir", "/x"), TC_OK);
    if (load(f, sample) != TC_OK)
        fail_msg("the sample does not load: %s", f->err);
    want = dump(fresh);
    got = dump(f->cfg);
    assert_string_equal(got, want);
    assert_string_equal(f->cfg->kafka_topic, "iot-telemetry");
    assert_int_equal(f->cfg->batch_size, 1000);
    assert_int_equal(f->cfg->kafka_create_topic, 1);
    assert_true(f->cfg->limits.max[4] == 90);
    assert_string_equal(f->cfg->lake_dir, "");
    assert_int_equal(f->cfg->rdkafka_count, 0);
    free(want);
    free(got);
    free(sample);
    tc_config_destroy(fresh);
}

static void test_dump(void **state)
{
    fixture *f = *state;
    char *out;

    assert_int_equal(set(f, "rdkafka.client.id", "tc-1"), TC_OK);
    out = dump(f->cfg);
    assert_non_null(strstr(out, "kafka.topic = iot-telemetry\n"));
    assert_non_null(strstr(out, "pipeline.batch_size = 1000\n"));
    assert_non_null(strstr(out, "kafka.create_topic = true\n"));
    assert_non_null(strstr(out, "validation.temperature_min = -50\n"));
    assert_non_null(strstr(out, "postgres.dsn = dbname=thermocline\n"));
    assert_non_null(strstr(out, "rdkafka.client.id = tc-1\n"));
    for (size_t i = 0; i < NKEYS; i++) {
        char needle[128];

        snprintf(needle, sizeof(needle), "%s = ", all_keys[i]);
        if (!strstr(out, needle))
            fail_msg("dump lacks %s", all_keys[i]);
    }
    free(out);
}

static void test_dump_masks_password(void **state)
{
    fixture *f = *state;
    char *out;

    assert_int_equal(set(f, "postgres.dsn", "host=db user=tc password=s3cr3t dbname=t"), TC_OK);
    out = dump(f->cfg);
    assert_null(strstr(out, "s3cr3t"));
    assert_non_null(strstr(out, "postgres.dsn = <secret>\n"));
    free(out);
    /* A URI with the password as a parameter is masked too. */
    assert_int_equal(set(f, "postgres.dsn", "postgresql://db/t?user=tc&password=s3cr3t"), TC_OK);
    out = dump(f->cfg);
    assert_null(strstr(out, "s3cr3t"));
    free(out);
    /* A URI with user:password@ is masked. */
    assert_int_equal(set(f, "postgres.dsn", "postgresql://tc:s3cr3t@db:5432/t"), TC_OK);
    out = dump(f->cfg);
    assert_null(strstr(out, "s3cr3t"));
    free(out);
    /* librdkafka secrets are masked by their key. */
    assert_int_equal(set(f, "rdkafka.sasl.password", "k4fka-s3cr3t"), TC_OK);
    assert_int_equal(set(f, "rdkafka.sasl.oauthbearer.client.secret", "s3cr3t-too"), TC_OK);
    out = dump(f->cfg);
    assert_null(strstr(out, "s3cr3t"));
    assert_non_null(strstr(out, "rdkafka.sasl.password = <secret>\n"));
    free(out);
    /* Where a secret lives is shown (an operator checks it); a token or inline key is not. */
    assert_int_equal(set(f, "kafka.sasl.password_file", "/etc/thermocline/kafka.password"), TC_OK);
    assert_int_equal(set(f, "kafka.sasl.password_env", "KAFKA_PASSWORD"), TC_OK);
    assert_int_equal(set(f, "rdkafka.ssl.key.pem", "-----BEGIN PRIVATE KEY-----s3cr3t"), TC_OK);
    assert_int_equal(set(f, "rdkafka.sasl.oauthbearer.token", "s3cr3t-token"), TC_OK);
    out = dump(f->cfg);
    assert_null(strstr(out, "s3cr3t"));
    assert_non_null(strstr(out, "kafka.sasl.password_file = /etc/thermocline/kafka.password\n"));
    assert_non_null(strstr(out, "kafka.sasl.password_env = KAFKA_PASSWORD\n"));
    assert_non_null(strstr(out, "rdkafka.ssl.key.pem = <secret>\n"));
    free(out);
    /* Only secrets are masked: other strings are shown as they are. */
    assert_int_equal(set(f, "kafka.topic", "password-topic"), TC_OK);
    out = dump(f->cfg);
    assert_non_null(strstr(out, "kafka.topic = password-topic\n"));
    free(out);
}

/* YAML says a mapping's keys are unique; a repeated one is refused with where both are. */
static void test_yaml_duplicate_keys(void **state)
{
    fixture *f = *state;

    LOAD_BAD(f, "kafka:\n  topic: a\n  topic: b\n",
             "line 3 column 3: duplicated key \"kafka.topic\"");
    LOAD_BAD(f, "kafka:\n  topic: a\n  topic: b\n", "first at line 2 column 3");
    /* A section given twice is a duplicate too, even with different keys under it. */
    LOAD_BAD(f, "kafka:\n  topic: a\nlog:\n  level: info\nkafka:\n  group: g\n",
             "line 5 column 1: duplicated key \"kafka\"");
    /* The same leaf name under two sections is not a duplicate. */
    assert_int_equal(load(f, "kafka:\n  topic: a\nlog:\n  level: warn\nlake:\n  dir: /x\n"), TC_OK);
    /* A dotted key and a nested one name the same setting. */
    LOAD_BAD(f, "kafka.topic: a\nkafka:\n  topic: b\n", "duplicated key \"kafka.topic\"");
    /* Each document of a stream has keys of its own. */
    assert_int_equal(load(f, "kafka: {topic: one}\n---\nkafka: {topic: two}\n"), TC_OK);
}

/* Every X_min/X_max pair is checked once all sources are applied, naming both keys. */
static void test_check_min_max(void **state)
{
    fixture *f = *state;
    static const char *const metrics[] = {"temperature", "humidity", "pressure",
                                          "battery",     "latitude", "longitude"};

    assert_int_equal(tc_config_check(f->cfg, f->err, sizeof(f->err)), TC_OK);
    for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++) {
        char lo[64], hi[64];
        tc_config *c = tc_config_new();
        assert_non_null(c);
        snprintf(lo, sizeof(lo), "validation.%s_min", metrics[i]);
        snprintf(hi, sizeof(hi), "validation.%s_max", metrics[i]);
        assert_int_equal(tc_config_set(c, lo, "1000", f->err, sizeof(f->err)), TC_OK);
        assert_int_equal(tc_config_set(c, hi, "-1000", f->err, sizeof(f->err)), TC_OK);
        assert_int_equal(tc_config_check(c, f->err, sizeof(f->err)), TC_ERR_CONFIG);
        assert_non_null(strstr(f->err, lo));
        assert_non_null(strstr(f->err, hi));
        /* Equal bounds accept exactly one value: allowed. */
        assert_int_equal(tc_config_set(c, hi, "1000", f->err, sizeof(f->err)), TC_OK);
        assert_int_equal(tc_config_check(c, f->err, sizeof(f->err)), TC_OK);
        tc_config_destroy(c);
    }
    assert_int_equal(set(f, "validation.temperature_min", "100"), TC_OK);
    assert_int_equal(set(f, "validation.temperature_max", "-50"), TC_OK);
    assert_int_equal(tc_config_check(f->cfg, f->err, sizeof(f->err)), TC_ERR_CONFIG);
    assert_string_equal(f->err, "validation.temperature_min (100) is above "
                                "validation.temperature_max (-50): no value could be valid");
}

/* An enumerated setting refuses anything but its values wherever it is set (file, environment,
 * --set), naming the key and the values allowed, and keeps the value it had. */
static void test_enum_settings_refuse_other_values(void **state)
{
    static const struct {
        const char *key, *bad, *allowed, *good;
    } cases[] = {
        {"postgres.timescaledb", "maybe", "auto, on, off", "off"},
        {"lake.codec", "lz4", "snappy, zstd, none", "zstd"},
        {"log.level", "verbose", "debug, info, warn, error", "debug"},
        {"log.format", "xml", "json, human, auto", "human"},
    };
    fixture *f = *state;
    char want[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(set(f, cases[i].key, cases[i].bad), TC_ERR_CONFIG);
        snprintf(want, sizeof(want), "invalid value for \"%s\": \"%s\" (allowed: %s)", cases[i].key,
                 cases[i].bad, cases[i].allowed);
        assert_string_equal(f->err, want);
        assert_int_equal(set(f, cases[i].key, cases[i].good), TC_OK);
    }
    assert_string_equal(f->cfg->pg_timescaledb, "off");
    /* Case matters: the code compares exactly. */
    assert_int_equal(set(f, "postgres.timescaledb", "ON"), TC_ERR_CONFIG);
    assert_string_equal(f->cfg->pg_timescaledb, "off");
    /* From a file and from the environment alike. */
    assert_int_equal(load(f, "lake:\n  codec: brotli\n"), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "\"lake.codec\": \"brotli\" (allowed: snappy, zstd, none)"));
    setenv("THERMOCLINE_PG_TIMESCALEDB", "maybe", 1);
    assert_int_equal(tc_config_apply_env(f->cfg, f->err, sizeof(f->err)), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "THERMOCLINE_PG_TIMESCALEDB"));
    assert_non_null(strstr(f->err, "(allowed: auto, on, off)"));
}

/* The reload flag: what SIGHUP applies, listed for `run --help`. */
static void test_reloadable_flag(void **state)
{
    char keys[2048];

    (void)state;
    assert_true(tc_config_reloadable("validation.max_age_s"));
    assert_true(tc_config_reloadable("validation.temperature_min"));
    assert_true(tc_config_reloadable("log.level"));
    assert_true(tc_config_reloadable("pipeline.batch_timeout_ms"));
    assert_false(tc_config_reloadable("kafka.brokers"));
    assert_false(tc_config_reloadable("log.format"));
    assert_false(tc_config_reloadable("no.such_key"));
    assert_true(tc_config_reloadable_keys(keys, sizeof(keys)) > 0);
    assert_non_null(strstr(keys, "registry.refresh_ms"));
    assert_null(strstr(keys, "postgres.dsn"));
    /* Truncation stays inside the buffer. */
    assert_true(tc_config_reloadable_keys(keys, 8) <= 8);
    assert_true(strlen(keys) < 8);
}

/* The security settings that span keys are checked once every source is applied. */
static void test_check_security(void **state)
{
    fixture *f = *state;

    assert_int_equal(tc_config_check(f->cfg, f->err, sizeof(f->err)), TC_OK);
    assert_int_equal(set(f, "kafka.security_protocol", "tls"), TC_OK);
    assert_int_equal(tc_config_check(f->cfg, f->err, sizeof(f->err)), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "kafka.security_protocol"));
    assert_int_equal(set(f, "kafka.security_protocol", "SASL_SSL"), TC_OK);
    assert_int_equal(tc_config_check(f->cfg, f->err, sizeof(f->err)), TC_OK);
    assert_int_equal(set(f, "http.tls.cert_file", "/etc/tc/http.crt"), TC_OK);
    assert_int_equal(tc_config_check(f->cfg, f->err, sizeof(f->err)), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "http.tls.key_file"));
    assert_int_equal(set(f, "http.tls.key_file", "/etc/tc/http.key"), TC_OK);
    assert_int_equal(tc_config_check(f->cfg, f->err, sizeof(f->err)), TC_OK);
    assert_int_equal(set(f, "http.tls.cert_file", ""), TC_OK);
    assert_int_equal(set(f, "http.tls.key_file", ""), TC_OK);
    assert_int_equal(set(f, "http.tls.client_ca_file", "/etc/tc/ca.crt"), TC_OK);
    assert_int_equal(tc_config_check(f->cfg, f->err, sizeof(f->err)), TC_ERR_CONFIG);
    assert_non_null(strstr(f->err, "needs HTTPS"));
}

/* A double setting is shown as written, not with 17 digits. */
static void test_dump_shortest_doubles(void **state)
{
    fixture *f = *state;
    char *out;

    assert_int_equal(set(f, "validation.temperature_max", "161.55"), TC_OK);
    assert_int_equal(set(f, "validation.humidity_max", "0.1"), TC_OK);
    out = dump(f->cfg);
    assert_non_null(strstr(out, "validation.temperature_max = 161.55\n"));
    assert_non_null(strstr(out, "validation.humidity_max = 0.1\n"));
    free(out);
}

/* The api's and the audit log's schemas follow postgres.schema unless set. */
static void test_derive_api_schemas(void **state)
{
    fixture *f = *state;

    assert_int_equal(tc_config_derive(f->cfg, f->err, sizeof(f->err)), TC_OK);
    assert_string_equal(f->cfg->api_schema, "api");
    assert_string_equal(f->cfg->audit_schema, "audit");
    assert_int_equal(set(f, "postgres.schema", "store_b"), TC_OK);
    assert_int_equal(set(f, "api.schema", ""), TC_OK);
    assert_int_equal(set(f, "audit.schema", "kept"), TC_OK);
    assert_int_equal(tc_config_derive(f->cfg, f->err, sizeof(f->err)), TC_OK);
    assert_string_equal(f->cfg->api_schema, "store_b_api");
    assert_string_equal(f->cfg->audit_schema, "kept");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_derive_api_schemas),
        T(test_check_security),
        T(test_every_key_settable),
        T(test_diff_and_copy),
        T(test_unknown_key),
        T(test_int_bounds),
        T(test_double_values),
        T(test_bool_values),
        T(test_string_values),
        T(test_rdkafka_set),
        T(test_rdkafka_limit),
        T(test_rdkafka_yaml),
        T(test_yaml_nested),
        T(test_yaml_forms),
        T(test_yaml_empty),
        T(test_yaml_null),
        T(test_yaml_unknown_key),
        T(test_yaml_bad_values),
        T(test_yaml_syntax_error),
        T(test_yaml_sequences_rejected),
        T(test_yaml_top_level),
        T(test_yaml_depth),
        T(test_yaml_nul_bytes),
        T(test_yaml_long_keys),
        T(test_yaml_invalid_utf8),
        T(test_load_file),
        T(test_load_file_errors_name_file),
        T(test_load_file_too_large),
        T(test_env_overrides),
        T(test_env_unset_changes_nothing),
        T(test_precedence),
        T(test_reference),
        T(test_sample_lists_every_key),
        T(test_sample_round_trip),
        T(test_dump),
        T(test_dump_masks_password),
        T(test_yaml_duplicate_keys),
        T(test_check_min_max),
        T(test_enum_settings_refuse_other_values),
        T(test_reloadable_flag),
        T(test_dump_shortest_doubles),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
