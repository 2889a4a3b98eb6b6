/*
 * config.h -- Thermocline's configuration: one table, three sources.
 *
 * Every setting is a row of one table (key, type, default, bounds or allowed values, environment
 * variable, description, whether SIGHUP reloads it). The table is the single source of truth: the
 * YAML loader, the environment overrides, `--set`, the generated configuration reference
 * (docs/configuration.md) and the sample file all walk it. Precedence, lowest first: built-in
 * default, YAML file (--config), THERMOCLINE_* environment variables, command-line --set key=value.
 * Unknown keys are rejected, naming the key, except keys under "rdkafka.", which are passed
 * verbatim to librdkafka (which validates them).
 */
#ifndef TC_CORE_CONFIG_H
#define TC_CORE_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

/* Pass-through librdkafka properties; more than this many is certainly a mistake. */
#define TC_CONFIG_RDKAFKA_MAX 64

typedef struct tc_limits {
    double min[6], max[6]; /* per tc_metric */
    int64_t max_future_s;  /* event time may be at most this far ahead of now */
    int64_t max_age_s;     /* event time may be at most this old */
} tc_limits;

typedef struct tc_config {
    /* kafka */
    char *kafka_brokers;
    char *kafka_topic;
    char *kafka_group;
    int64_t kafka_partitions;
    int64_t kafka_replication_factor;
    int64_t kafka_min_insync_replicas;
    int64_t kafka_retention_ms;
    int64_t kafka_create_topic;
    int64_t kafka_dlq_mirror;
    int64_t kafka_fetch_nudge_ms;
    char *registry_url;
    char *registry_subject;
    int64_t registry_refresh_ms;
    /* postgres */
    char *pg_dsn;
    char *pg_schema;
    int64_t pg_partition_days_ahead;
    char *pg_timescaledb;
    int64_t pg_chunk_interval_s;
    int64_t pg_compress_after_s;
    int64_t pg_synchronous_commit;
    int64_t pg_rollups;
    int64_t pg_writers;
    int64_t pg_rollup_interval_ms;
    int64_t pg_rollup_close_after_ms;
    /* retention */
    int64_t retention_max_age_s;
    int64_t retention_require_lake;
    /* features (src/features/defs.h) */
    char *features_definitions;
    char *features_dir;
    /* pipeline */
    int64_t batch_size;
    int64_t batch_size_max;
    int64_t batch_timeout_ms;
    int64_t partitions_per_batch;
    int64_t max_message_bytes;
    int64_t batch_memory_bytes;
    int64_t dedupe_window_s;
    int64_t dedupe_max_entries;
    int64_t dedupe_lookback;
    char *pipeline_sinks; /* pipeline.sinks (process/sink.h) */
    char *testfail_control_file;
    char *testfail_record_file;
    /* validation */
    tc_limits limits;
    /* lake */
    char *lake_dir;
    int64_t lake_roll_bytes;
    int64_t lake_roll_seconds;
    char *lake_codec;
    int64_t lake_row_group_rows;
    int64_t lake_row_group_bytes;
    int64_t lake_enc_enabled;
    char *lake_enc_key_file;
    char *lake_enc_key_command;
    char *lake_enc_footer_key;
    char *lake_enc_column_key;
    char *lake_enc_columns;
    /* quality (the quality sink) */
    char *quality_rules_file;
    int64_t quality_late_after_s;
    int64_t quality_max_devices;
    int64_t quality_flush_interval_ms;
    int64_t quality_tick_s;
    int64_t quality_detect_location;
    /* features (the online features sink) */
    int64_t features_online_max_windows;
    int64_t features_online_flush_interval_ms;
    /* http */
    char *http_listen;
    /* api, audit */
    char *api_schema;
    char *api_tenant_tag;
    char *api_personal_columns;
    int64_t api_personal_digits;
    char *api_personal_viewer;
    char *audit_schema;
    /* serve (the REST API) */
    char *api_listen;
    char *api_jwt_secret;
    char *api_jwks_file;
    char *api_keys_file;
    char *api_cursor_secret;
    int64_t api_pool_size;
    double api_rate_per_s;
    int64_t api_rate_burst;
    int64_t api_coalesce;
    int64_t api_coalesce_answer_max;
    int64_t api_coalesce_total_max;
    /* security (docs/security.md): where secrets live, never the secrets themselves */
    char *kafka_security_protocol;
    char *kafka_tls_ca_file;
    char *kafka_tls_cert_file;
    char *kafka_tls_key_file;
    char *kafka_tls_key_password_file;
    char *kafka_sasl_mechanism;
    char *kafka_sasl_username;
    char *kafka_sasl_password_file;
    char *kafka_sasl_password_env;
    char *pg_owner_dsn;
    char *registry_auth_users_file;
    char *registry_auth_tokens_file;
    int64_t registry_auth_read_open;
    char *registry_user_info_file;
    char *registry_bearer_token_file;
    char *registry_tls_ca_file;
    char *registry_tls_cert_file;
    char *registry_tls_key_file;
    char *http_tls_cert_file;
    char *http_tls_key_file;
    char *http_tls_client_ca_file;
    char *http_admin_listen;
    int64_t http_max_connections;
    int64_t http_per_ip_connections;
    int64_t http_request_deadline_ms;
    int64_t http_idle_timeout_s;
    int64_t http_max_requests_per_connection;
    int64_t http_gzip;
    int64_t http_storage_sample_s;
    /* alerting */
    char *alerting_alertmanager_urls;
    int64_t alerting_queue_max;
    int64_t alerting_resend_s;
    int64_t alerting_timeout_ms;
    int64_t alerting_escalate_after_s;
    char *alerting_site;
    int64_t alerting_not_ready_after_s;
    /* scheduled exports */
    char *export_schedules;
    char *export_listen;
    int64_t export_check_interval_s;
    /* log */
    char *log_level;
    char *log_format;
    /* rdkafka.* pass-through */
    char *rdkafka_keys[TC_CONFIG_RDKAFKA_MAX];
    char *rdkafka_values[TC_CONFIG_RDKAFKA_MAX];
    int rdkafka_count;
} tc_config;

/* A new configuration holding the built-in defaults; NULL when out of memory. */
tc_config *tc_config_new(void);
void tc_config_destroy(tc_config *cfg);

/* Set one key from its text form (as in YAML or --set): parsed, bounds-checked. */
tc_err tc_config_set(tc_config *cfg, const char *key, const char *value, char *errstr,
                     size_t errstr_size);

/* Load a YAML file of nested mappings; keys are joined with '.' (kafka: {brokers: x} ->
 * kafka.brokers). */
tc_err tc_config_load_file(tc_config *cfg, const char *path, char *errstr, size_t errstr_size);

/* Load YAML from memory (same rules as tc_config_load_file; used by tests and the fuzzer). */
tc_err tc_config_load_yaml(tc_config *cfg, const char *buf, size_t len, const char *origin,
                           char *errstr, size_t errstr_size);

/* Apply THERMOCLINE_* environment variables named in the table. */
tc_err tc_config_apply_env(tc_config *cfg, char *errstr, size_t errstr_size);

/* The usual sequence: defaults, file (if path not NULL), environment. NULL on error. */
tc_config *tc_config_load(const char *path, char *errstr, size_t errstr_size);

/* The checks that span settings, run once every source is applied (file, environment, --set):
 * every X_min at most its X_max. (An enumerated setting is checked as it is set.) TC_ERR_CONFIG
 * with errstr naming the setting at fault. */
/* Fill the settings whose default follows from others (api.schema, audit.schema from
 * postgres.schema); after every source is applied, before tc_config_check. */
tc_err tc_config_derive(tc_config *cfg, char *errstr, size_t errstr_size);
tc_err tc_config_check(const tc_config *cfg, char *errstr, size_t errstr_size);

/* Readings one batch can hold: pipeline.batch_size, or up to pipeline.batch_size_max while the
 * writers are busy. What a sink is handed at once is at most this. */
size_t tc_config_batch_cap(const tc_config *cfg);

/* Whether SIGHUP applies key to a running pipeline (the table's reload flag). */
int tc_config_reloadable(const char *key);

/* The reloadable keys, ", "-separated, into out (truncated to cap); returns the length written. */
size_t tc_config_reloadable_keys(char *out, size_t cap);

/* Write the configuration reference (markdown table) or a commented sample YAML file. */
void tc_config_write_reference(FILE *out);
void tc_config_write_sample(FILE *out);

/* Keys of the table whose values differ between a and b, in table order: up to max of them in
 * keys (the table's own strings); returns how many differ. The rdkafka.* pass-through counts as
 * one key, "rdkafka.*". */
size_t tc_config_diff(const tc_config *a, const tc_config *b, const char **keys, size_t max);

/* Give dst the value src has for key (a key of the table). */
tc_err tc_config_copy_key(tc_config *dst, const tc_config *src, const char *key);

/* Print the effective configuration (key = value); a value that is or holds a secret (a password
 * in a DSN or URI, an rdkafka.* password, secret, token or inline PEM) is printed as <secret>. */
void tc_config_dump(const tc_config *cfg, FILE *out);

#endif
