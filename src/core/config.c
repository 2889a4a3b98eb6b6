/*
 * config.c -- the configuration table, its YAML loader and its generated documentation.
 *
 * See config.h for the design. The YAML loader uses libyaml's event API with an explicit key stack
 * (bounded depth), so a hostile config file cannot recurse us into a stack overflow; sequences
 * and aliases are refused because no setting needs them (an anchor on a scalar is harmless and
 * ignored).
 */
#include "core/config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "core/batch.h"
#include "core/json.h"
#include "core/log.h"

/* ENUM is a string that must be one of the entry's choices (checked wherever it is set). */
typedef enum tc_conf_type {
    TC_CT_STRING,
    TC_CT_INT,
    TC_CT_DOUBLE,
    TC_CT_BOOL,
    TC_CT_ENUM
} tc_conf_type;

/* An entry's flags. */
#define TC_CF_RELOAD 1 /* SIGHUP applies it to a running pipeline (tc_config_reloadable) */

/* The last two fields come after the description so that an entry without them (most) needs
 * neither: they are zero. */
typedef struct tc_conf_entry {
    const char *key;
    tc_conf_type type;
    const char *def; /* the default: defaults live here and nowhere else */
    double min, max; /* bounds for INT and DOUBLE */
    const char *env; /* overriding environment variable, or NULL */
    size_t offset;   /* into tc_config */
    const char *desc;
    unsigned flags;      /* TC_CF_* */
    const char *choices; /* ENUM: the allowed values, comma separated */
} tc_conf_entry;

#define OFF(field) offsetof(tc_config, field)
/* Bounds wide enough to mean "any" for a double limit. */
#define TC_DBL_ANY 1e300

/* Entries leave out their trailing flags and choices when those are zero (see tc_conf_entry). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const tc_conf_entry tc_conf_table[] = {
    {"kafka.brokers", TC_CT_STRING, "127.0.0.1:9092", 0, 0, "THERMOCLINE_KAFKA_BROKERS",
     OFF(kafka_brokers), "Kafka bootstrap servers, comma separated."},
    {"kafka.topic", TC_CT_STRING, "iot-telemetry", 0, 0, "THERMOCLINE_KAFKA_TOPIC",
     OFF(kafka_topic), "Topic the readings are consumed from (keyed by device_id)."},
    {"kafka.group", TC_CT_STRING, "thermocline", 0, 0, "THERMOCLINE_KAFKA_GROUP", OFF(kafka_group),
     "Consumer group id; run more processes with the same id to scale out."},
    {"kafka.partitions", TC_CT_INT, "6", 1, 10000, NULL, OFF(kafka_partitions),
     "Partitions of the topic when Thermocline creates it."},
    {"kafka.replication_factor", TC_CT_INT, "3", 1, 16, NULL, OFF(kafka_replication_factor),
     "Replication factor of a created topic (and of its -dlq mirror); capped, with a warning, by "
     "the number of brokers the cluster has (1 on a single development broker)."},
    {"kafka.min_insync_replicas", TC_CT_INT, "2", 1, 16, NULL, OFF(kafka_min_insync_replicas),
     "min.insync.replicas of a created topic: how many replicas must hold a message before a "
     "producer with acks=all (all of ours) is told it is written; capped by the replication "
     "factor. With 3 replicas and 2, one broker may be lost without losing or refusing writes."},
    {"kafka.retention_ms", TC_CT_INT, "604800000", 60000, 1e15, NULL, OFF(kafka_retention_ms),
     "retention.ms of a created topic (default 7 days)."},
    {"kafka.create_topic", TC_CT_BOOL, "true", 0, 0, NULL, OFF(kafka_create_topic),
     "Create the topic at start when it does not exist."},
    {"kafka.dlq_mirror", TC_CT_BOOL, "true", 0, 0, NULL, OFF(kafka_dlq_mirror),
     "Also send dead letters to the topic <kafka.topic>-dlq (payload, key, reason headers)."},
    {"kafka.fetch_nudge_ms", TC_CT_INT, "20", 0, 10000, NULL, OFF(kafka_fetch_nudge_ms),
     "How often, while the consumer queue is near librdkafka's limits (queued.min.messages, "
     "queued.max.messages.kbytes) and for a second after, to wake its fetcher, which otherwise "
     "waits up to a second to fetch again once the queue was full (librdkafka before 2.3); 0: "
     "never."},
    {"registry.url", TC_CT_STRING, "", 0, 0, "THERMOCLINE_REGISTRY_URL", OFF(registry_url),
     "Schema registry that Avro readings (Confluent wire format) are decoded with (empty: none)."},
    {"registry.subject", TC_CT_STRING, "", 0, 0, NULL, OFF(registry_subject),
     "Subject of the telemetry schema: its versions are what JSON readings are matched against and "
     "what Avro readings resolve to (empty: <kafka.topic>-value, Confluent's TopicNameStrategy)."},
    {"registry.refresh_ms", TC_CT_INT, "5000", 100, 3600000, NULL, OFF(registry_refresh_ms),
     "How often the pipeline asks the registry for new versions of the subject; a new version's "
     "numeric fields become columns within this delay.",
     TC_CF_RELOAD},
    {"postgres.dsn", TC_CT_STRING, "dbname=thermocline", 0, 0, "THERMOCLINE_PG_DSN", OFF(pg_dsn),
     "libpq connection string of the operational store."},
    {"postgres.schema", TC_CT_STRING, "telemetry", 0, 0, NULL, OFF(pg_schema),
     "Schema that holds Thermocline's tables."},
    {"postgres.partition_days_ahead", TC_CT_INT, "2", 1, 365, NULL, OFF(pg_partition_days_ahead),
     "Daily partitions created ahead of the current day."},
    {"postgres.timescaledb", TC_CT_ENUM, "auto", 0, 0, "THERMOCLINE_PG_TIMESCALEDB",
     OFF(pg_timescaledb),
     "Mode of a new schema: auto (TimescaleDB when installed and preloaded), on, or off (plain).",
     0, "auto,on,off"},
    {"postgres.chunk_interval_s", TC_CT_INT, "86400", 3600, 31536000, NULL,
     OFF(pg_chunk_interval_s), "TimescaleDB mode: time span of one hypertable chunk (1 day)."},
    {"postgres.compress_after_s", TC_CT_INT, "604800", 0, 3153600000.0, NULL,
     OFF(pg_compress_after_s), "TimescaleDB mode: compress chunks older than this (0 = never)."},
    {"postgres.synchronous_commit", TC_CT_BOOL, "true", 0, 0, NULL, OFF(pg_synchronous_commit),
     "false: a server crash may lose the last commits (consumed again: still exactly once)."},
    {"postgres.rollups", TC_CT_BOOL, "true", 0, 0, NULL, OFF(pg_rollups),
     "Plain mode: maintain the 1-minute and 1-hour rollups (views readings_1m, readings_1h)."},
    {"postgres.writers", TC_CT_INT, "2", 1, 16, NULL, OFF(pg_writers),
     "Connections that write batches in parallel (COPY in parallel, COMMIT in order); 1 still "
     "writes one batch while the next is decoded."},
    {"postgres.rollup_interval_ms", TC_CT_INT, "1000", 0, 600000, NULL, OFF(pg_rollup_interval_ms),
     "How often the rollups and the latest state per device are written, from every batch stored "
     "since, in a transaction of their own with their own offsets (exactly once); 0: after every "
     "batch.",
     TC_CF_RELOAD},
    {"postgres.rollup_close_after_ms", TC_CT_INT, "30000", 0, 86400000, NULL,
     OFF(pg_rollup_close_after_ms),
     "Plain mode: how long after a minute ends its rollup bucket is closed. Closed buckets are "
     "aggregated once from the stored readings, set-based; the views compute the open ones from "
     "the readings; a reading arriving for a closed bucket is added to it (an upsert).",
     TC_CF_RELOAD},
    {"retention.max_age_s", TC_CT_INT, "2592000", 3600, 3153600000.0, NULL,
     OFF(retention_max_age_s), "Days older than this leave the operational store (30 days)."},
    {"retention.require_lake", TC_CT_BOOL, "true", 0, 0, NULL, OFF(retention_require_lake),
     "Plain mode: drop a day only once the lake holds its rows (false: no lake here)."},
    /* The feature store (docs/ml.md): one block. The definitions are a small language of their
     * own (src/features/defs.h), as the configuration holds scalars only. */
    {"features.definitions", TC_CT_STRING, "", 0, 0, NULL, OFF(features_definitions),
     "Feature definitions, one per line or separated by ';': NAME = AGGREGATE(METRIC, WINDOW[, "
     "min=X][, max=Y]), AGGREGATE one of count, mean, std, min, max, last, slope, share_missing, "
     "out_of_range (min=/max=), anomalies (the quality monitor's findings); or NAME = "
     "FIGURE(WINDOW), a quality figure of the device: late, out_of_order, dead_letters, "
     "duplicates, gaps, gap_max_s, delay_p50_ms, delay_p99_ms; WINDOW dividing a day (15m, 1h, "
     "1d). Read by `features build` and the online features sink (empty: no features)."},
    {"features.dir", TC_CT_STRING, "", 0, 0, NULL, OFF(features_dir),
     "Where `features build` writes the features, <dir>/<NAME>/year=/month=/day= (empty: "
     "<lake.dir>/features)."},
    {"pipeline.batch_size", TC_CT_INT, "1000", 1, TC_BATCH_ROWS_MAX, NULL, OFF(batch_size),
     "Readings per batch: a batch is written when it holds this many readings..."},
    {"pipeline.batch_size_max", TC_CT_INT, "10000", 1, TC_BATCH_ROWS_MAX, NULL, OFF(batch_size_max),
     "...and a writer is free; while every writer is busy it goes on filling up to this many "
     "(fewer, larger COPYs when the store is behind)."},
    {"pipeline.batch_timeout_ms", TC_CT_INT, "100", 1, 60000, NULL, OFF(batch_timeout_ms),
     "...or when its oldest reading has waited this long.", TC_CF_RELOAD},
    {"pipeline.partitions_per_batch", TC_CT_INT, "4096", 1, 4096, NULL, OFF(partitions_per_batch),
     "Kafka partitions one batch may hold readings of: a reading of one more partition goes into "
     "the next batch, and this one is written first."},
    {"pipeline.max_message_bytes", TC_CT_INT, "1048576", 64, 104857600, NULL,
     OFF(max_message_bytes), "Messages larger than this are dead letters (too_large)."},
    {"pipeline.batch_memory_bytes", TC_CT_INT, "67108864", 1048576, 17179869184.0, NULL,
     OFF(batch_memory_bytes),
     "Cap on the strings one batch may hold; reaching it writes the batch."},
    {"pipeline.sinks", TC_CT_STRING, "store,lake,rollups", 0, 0, NULL, OFF(pipeline_sinks),
     "Where readings go, names separated by commas (store, lake, rollups; testfail for the tests "
     "only). lake.dir empty leaves the lake out and postgres.rollups=false the rollups: both are "
     "shorthands kept for existing configurations."},
    {"testfail.control_file", TC_CT_STRING, "", 0, 0, NULL, OFF(testfail_control_file),
     "Testing aid (the testfail sink): a file saying ok, fail-transient or fail-permanent."},
    {"testfail.record_file", TC_CT_STRING, "", 0, 0, NULL, OFF(testfail_record_file),
     "Testing aid (the testfail sink): where it appends what it makes durable."},
    {"dedupe.window_s", TC_CT_INT, "300", 0, 86400, NULL, OFF(dedupe_window_s),
     "A device's resend (same device_id, timestamp, and message_id if sent, else same content) "
     "within this much event time of the original is a duplicate, stored once (0: no dedupe)."},
    {"dedupe.max_entries", TC_CT_INT, "400000", 2, 100000000, NULL, OFF(dedupe_max_entries),
     "Memory bound of the dedupe window: readings remembered (24 bytes each, twice over); the "
     "window is the smaller of dedupe.window_s and max_entries / 2 readings."},
    {"dedupe.lookback", TC_CT_INT, "20000", 0, 100000000, NULL, OFF(dedupe_lookback),
     "Messages per partition read again at assignment, before where consumption resumes, to "
     "rebuild the dedupe window after a restart or a rebalance."},
    {"validation.temperature_min", TC_CT_DOUBLE, "-50", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.min[TC_M_TEMPERATURE]), "Lowest valid temperature, degrees Celsius.", TC_CF_RELOAD},
    {"validation.temperature_max", TC_CT_DOUBLE, "100", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.max[TC_M_TEMPERATURE]), "Highest valid temperature, degrees Celsius.",
     TC_CF_RELOAD},
    {"validation.humidity_min", TC_CT_DOUBLE, "0", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.min[TC_M_HUMIDITY]), "Lowest valid relative humidity, percent.", TC_CF_RELOAD},
    {"validation.humidity_max", TC_CT_DOUBLE, "100", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.max[TC_M_HUMIDITY]), "Highest valid relative humidity, percent.", TC_CF_RELOAD},
    {"validation.pressure_min", TC_CT_DOUBLE, "300", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.min[TC_M_PRESSURE]), "Lowest valid pressure, hPa (Mount Everest is ~314).",
     TC_CF_RELOAD},
    {"validation.pressure_max", TC_CT_DOUBLE, "1100", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.max[TC_M_PRESSURE]), "Highest valid pressure, hPa (record high is ~1084).",
     TC_CF_RELOAD},
    {"validation.battery_min", TC_CT_DOUBLE, "0", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.min[TC_M_BATTERY]), "Lowest valid battery level, percent.", TC_CF_RELOAD},
    {"validation.battery_max", TC_CT_DOUBLE, "100", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.max[TC_M_BATTERY]), "Highest valid battery level, percent.", TC_CF_RELOAD},
    {"validation.latitude_min", TC_CT_DOUBLE, "-90", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.min[TC_M_LATITUDE]), "Lowest valid latitude, degrees.", TC_CF_RELOAD},
    {"validation.latitude_max", TC_CT_DOUBLE, "90", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.max[TC_M_LATITUDE]), "Highest valid latitude, degrees.", TC_CF_RELOAD},
    {"validation.longitude_min", TC_CT_DOUBLE, "-180", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.min[TC_M_LONGITUDE]), "Lowest valid longitude, degrees.", TC_CF_RELOAD},
    {"validation.longitude_max", TC_CT_DOUBLE, "180", -TC_DBL_ANY, TC_DBL_ANY, NULL,
     OFF(limits.max[TC_M_LONGITUDE]), "Highest valid longitude, degrees.", TC_CF_RELOAD},
    {"validation.max_future_s", TC_CT_INT, "300", 0, 31536000, NULL, OFF(limits.max_future_s),
     "Readings timestamped further ahead than this are refused.", TC_CF_RELOAD},
    {"validation.max_age_s", TC_CT_INT, "2592000", 60, 3153600000.0, NULL, OFF(limits.max_age_s),
     "Readings older than this are refused (default 30 days, the operational retention).",
     TC_CF_RELOAD},
    {"lake.dir", TC_CT_STRING, "", 0, 0, "THERMOCLINE_LAKE_DIR", OFF(lake_dir),
     "Root folder of the Parquet data lake (empty: lake sink off)."},
    {"lake.roll_bytes", TC_CT_INT, "134217728", 1048576, 68719476736.0, NULL, OFF(lake_roll_bytes),
     "A partition's lake files are committed once one of them reaches this size..."},
    {"lake.roll_seconds", TC_CT_INT, "60", 1, 86400, NULL, OFF(lake_roll_seconds),
     "...or once its oldest uncommitted reading has waited this long."},
    {"lake.codec", TC_CT_ENUM, "snappy", 0, 0, NULL, OFF(lake_codec),
     "Parquet page compression: snappy, zstd or none.", 0, "snappy,zstd,none"},
    /* An open file holds its row group's pages: with a file per partition and day, the row group
     * is what the lake costs in memory (6 partitions x 65,536 readings: about 20 MiB; twice that
     * took 20 MiB more of the 10x burst's peak RSS and saved 0.1 % of the lake's bytes). */
    {"lake.row_group_rows", TC_CT_INT, "65536", 1024, 16777216, NULL, OFF(lake_row_group_rows),
     "Rows per Parquet row group."},
    {"lake.row_group_bytes", TC_CT_INT, "8388608", 1048576, 1073741824, NULL,
     OFF(lake_row_group_bytes),
     "Memory bound of one open lake file's row group (files open: partitions x days)."},
    /* Parquet modular encryption of the lake (docs/security.md, "Encryption at rest"). Off by
     * default: it needs master keys only the operator can supply, and a made-up default key would
     * be encryption in name only. */
    {"lake.encryption.enabled", TC_CT_BOOL, "false", 0, 0, NULL, OFF(lake_enc_enabled),
     "Encrypt the lake's Parquet files (AES-GCM, encrypted footer); also what lake readers need."},
    {"lake.encryption.key_file", TC_CT_STRING, "", 0, 0, "THERMOCLINE_LAKE_KEY_FILE",
     OFF(lake_enc_key_file),
     "File of master keys, lines \"KEY_ID: BASE64\" (16, 24 or 32 bytes), mode 600."},
    {"lake.encryption.key_command", TC_CT_STRING, "", 0, 0, NULL, OFF(lake_enc_key_command),
     "Instead of key_file: command run with a key id as its last argument; prints the key in "
     "base64 (a KMS hook)."},
    {"lake.encryption.footer_key_id", TC_CT_STRING, "lake-footer", 0, 0, NULL,
     OFF(lake_enc_footer_key), "Master key of the footers and of the columns not listed below."},
    {"lake.encryption.column_key_id", TC_CT_STRING, "lake-personal", 0, 0, NULL,
     OFF(lake_enc_column_key), "Master key of the personal-data columns."},
    {"lake.encryption.column_key_columns", TC_CT_STRING, "latitude,longitude", 0, 0, NULL,
     OFF(lake_enc_columns),
     "Personal-data columns (comma-separated), encrypted under column_key_id."},
    {"quality.rules_file", TC_CT_STRING, "", 0, 0, "THERMOCLINE_QUALITY_RULES_FILE",
     OFF(quality_rules_file),
     "Data-quality rules (docs/quality.md) of the quality sink (\"quality\" in pipeline.sinks); "
     "empty: no rules, the detectors and metrics only. Reloaded on SIGHUP; a file that is refused "
     "leaves the running rules in force."},
    {"quality.late_after_s", TC_CT_INT, "60", 0, 86400, NULL, OFF(quality_late_after_s),
     "A reading is late when its event time is older than its partition's watermark (latest event "
     "time seen) by more than this."},
    {"quality.max_devices", TC_CT_INT, "200000", 1, 10000000, NULL, OFF(quality_max_devices),
     "Devices the quality sink watches per Kafka partition; readings of more are counted as "
     "refused, not watched."},
    {"quality.flush_interval_ms", TC_CT_INT, "10000", 100, 3600000, NULL,
     OFF(quality_flush_interval_ms),
     "Longest time between two quality transactions (figures, anomalies and marks together); a "
     "minute of event time that closes asks for one sooner (at most one every 5 s)."},
    {"quality.tick_s", TC_CT_INT, "10", 1, 3600, NULL, OFF(quality_tick_s),
     "Event time between two silence checks of a partition's devices."},
    {"quality.detect_location", TC_CT_BOOL, "false", 0, 0, NULL, OFF(quality_detect_location),
     "Run the anomaly detectors (spike, drift, stuck, rate) on latitude and longitude as well as "
     "on the metrics. Off by default: on coordinates they miss any GPS jump shorter than about ten "
     "kilometres and take a moving device's travel for a drift (docs/quality.md). Their "
     "completeness is counted either way."},
    {"features.online_max_windows", TC_CT_INT, "200000", 1, 50000000, NULL,
     OFF(features_online_max_windows),
     "Windows (device x feature x window start) the online features sink (\"features\" in "
     "pipeline.sinks) holds between two writes, about 150 bytes each, twice (one set is being "
     "written); half of it held asks for a write. Raised, with a line in the log, to what one "
     "batch can bring (pipeline.batch_size_max x the definitions) when below."},
    {"features.online_flush_interval_ms", TC_CT_INT, "1000", 10, 3600000, NULL,
     OFF(features_online_flush_interval_ms),
     "Longest time between two writes of the online features sink (features_online rows and its "
     "marks, in one transaction)."},
    {"http.listen", TC_CT_STRING, "127.0.0.1:8090", 0, 0, "THERMOCLINE_HTTP_LISTEN",
     OFF(http_listen),
     "Address of /healthz, /readyz and /metrics of `run` (port 0: any free port; empty: off)."},
    {"api.schema", TC_CT_STRING, "", 0, 0, NULL, OFF(api_schema),
     "Schema of the curated SQL interface (views and functions over postgres.schema) that BI "
     "tools, the REST API and GraphQL read; created by `migrate` (docs/api.md). Empty: api beside "
     "the schema telemetry, <postgres.schema>_api beside any other."},
    {"api.tenant_tag", TC_CT_STRING, "site", 0, 0, NULL, OFF(api_tenant_tag),
     "Device tag whose value is a device's tenant or site: row-level security lets a role see the "
     "devices of the sites it is granted (JWT claim \"sites\", or api.site_access)."},
    {"api.personal_columns", TC_CT_STRING, "latitude,longitude", 0, 0, NULL,
     OFF(api_personal_columns),
     "Reading columns holding personal data, comma separated (of temperature, humidity, pressure, "
     "battery, latitude, longitude; empty: none): exact for thermocline_analyst and above, "
     "masked (api.personal_viewer) for thermocline_viewer."},
    {"api.personal_digits", TC_CT_INT, "2", 0, 6, NULL, OFF(api_personal_digits),
     "Decimals a personal column is rounded to for thermocline_viewer (2: about 1 km of "
     "latitude)."},
    {"api.personal_viewer", TC_CT_ENUM, "coarsen", 0, 0, NULL, OFF(api_personal_viewer),
     "What thermocline_viewer sees of a personal column: coarsen (rounded to "
     "api.personal_digits) or hide (NULL).",
     0, "coarsen,hide"},
    /* The REST API of `thermocline serve` (docs/api.md). */
    {"api.listen", TC_CT_STRING, "127.0.0.1:8070", 0, 0, "THERMOCLINE_API_LISTEN", OFF(api_listen),
     "Address the REST API of `serve` listens on (port 0: any free port)."},
    {"api.jwt_secret", TC_CT_STRING, "", 0, 0, "THERMOCLINE_API_JWT_SECRET", OFF(api_jwt_secret),
     "Shared secret of HS256 tokens (empty: HS256 tokens refused); at least 32 bytes."},
    {"api.jwks_file", TC_CT_STRING, "", 0, 0, NULL, OFF(api_jwks_file),
     "JWKS file with the public keys (RSA, EC P-256) of RS256 and ES256 tokens, found by kid."},
    {"api.keys_file", TC_CT_STRING, "", 0, 0, NULL, OFF(api_keys_file),
     "File of service API keys: lines `sha256-hex-of-key role name [sites]` (empty: no API "
     "keys)."},
    {"api.cursor_secret", TC_CT_STRING, "", 0, 0, "THERMOCLINE_API_CURSOR_SECRET",
     OFF(api_cursor_secret),
     "Key of the HMAC that signs pagination cursors (empty: a random one, cursors end with the "
     "process)."},
    {"api.pool_size", TC_CT_INT, "8", 1, 256, NULL, OFF(api_pool_size),
     "PostgreSQL connections of the API, all opened (and warmed) at the start; a request waits for"
     " a free one."},
    {"api.rate_per_s", TC_CT_DOUBLE, "100", 0.001, 1e9, NULL, OFF(api_rate_per_s),
     "Requests per second each token subject or API key may make (token bucket)..."},
    {"api.rate_burst", TC_CT_INT, "200", 1, 1000000, NULL, OFF(api_rate_burst),
     "...and the bucket's size: requests beyond get 429 with Retry-After."},
    {"api.coalesce", TC_CT_BOOL, "true", 0, 0, NULL, OFF(api_coalesce),
     "Identical reads (same route, parameters, format, role and claims) arriving together share "
     "one computation that starts after the last of them arrived; each is still audited and "
     "rate-limited as itself (docs/api.md)."},
    {"api.coalesce_answer_max", TC_CT_INT, "33554432", 1024, 1073741824, NULL,
     OFF(api_coalesce_answer_max),
     "Bytes of one shared answer at most; a larger one is streamed to its own caller and the "
     "others run alone..."},
    {"api.coalesce_total_max", TC_CT_INT, "268435456", 1024, 17179869184, NULL,
     OFF(api_coalesce_total_max), "...and bytes of every shared answer held at once."},
    {"audit.schema", TC_CT_STRING, "", 0, 0, NULL, OFF(audit_schema),
     "Schema of the audit log (events, append-only and hash-chained; `thermocline audit "
     "verify`). Empty: audit beside the schema telemetry, <postgres.schema>_audit beside any "
     "other."},
    /* Security (docs/security.md): TLS, authentication and the limits of our HTTP servers. A
     * secret is never a value here: *_file names a file that holds it, *_env a variable. */
    {"kafka.security_protocol", TC_CT_STRING, "plaintext", 0, 0,
     "THERMOCLINE_KAFKA_SECURITY_PROTOCOL", OFF(kafka_security_protocol),
     "plaintext, ssl (TLS), sasl_ssl (TLS + SASL) or sasl_plaintext, for every Kafka client "
     "(consumer, producers, admin); rdkafka.* keys override what these settings set."},
    {"kafka.tls.ca_file", TC_CT_STRING, "", 0, 0, "THERMOCLINE_KAFKA_TLS_CA_FILE",
     OFF(kafka_tls_ca_file),
     "PEM file of the CA that signed the brokers' certificates (empty: the system's CAs)."},
    {"kafka.tls.cert_file", TC_CT_STRING, "", 0, 0, NULL, OFF(kafka_tls_cert_file),
     "PEM client certificate, when the brokers ask for one (mutual TLS)."},
    {"kafka.tls.key_file", TC_CT_STRING, "", 0, 0, NULL, OFF(kafka_tls_key_file),
     "PEM private key of kafka.tls.cert_file (a file no other user may read)."},
    {"kafka.tls.key_password_file", TC_CT_STRING, "", 0, 0, NULL, OFF(kafka_tls_key_password_file),
     "File holding the password of an encrypted kafka.tls.key_file (empty: not encrypted)."},
    {"kafka.sasl.mechanism", TC_CT_STRING, "SCRAM-SHA-512", 0, 0, NULL, OFF(kafka_sasl_mechanism),
     "SASL mechanism when kafka.security_protocol is sasl_*: SCRAM-SHA-512, SCRAM-SHA-256 or "
     "PLAIN."},
    {"kafka.sasl.username", TC_CT_STRING, "", 0, 0, "THERMOCLINE_KAFKA_SASL_USERNAME",
     OFF(kafka_sasl_username), "SASL user (the Kafka principal User:<name>)."},
    {"kafka.sasl.password_file", TC_CT_STRING, "", 0, 0, "THERMOCLINE_KAFKA_SASL_PASSWORD_FILE",
     OFF(kafka_sasl_password_file),
     "File holding the SASL password (first line; a file no other user may read)."},
    {"kafka.sasl.password_env", TC_CT_STRING, "", 0, 0, NULL, OFF(kafka_sasl_password_env),
     "Name of an environment variable holding the SASL password (when no password_file)."},
    {"postgres.owner_dsn", TC_CT_STRING, "", 0, 0, "THERMOCLINE_PG_OWNER_DSN", OFF(pg_owner_dsn),
     "libpq connection string of the owner role, used by `migrate`, `replay`, `retention` and "
     "`dlq` (empty: postgres.dsn); "
     "postgres.dsn then names the least-privileged ingest role. TLS and the password file are "
     "libpq keywords of either DSN: sslmode=verify-full sslrootcert=<CA> passfile=<file>."},
    {"registry.auth.users_file", TC_CT_STRING, "", 0, 0, NULL, OFF(registry_auth_users_file),
     "`thermocline registry`: file of user:password lines; set, registering, deleting and "
     "changing the config need HTTP Basic authentication (Confluent's basic.auth.user.info)."},
    {"registry.auth.tokens_file", TC_CT_STRING, "", 0, 0, NULL, OFF(registry_auth_tokens_file),
     "`thermocline registry`: file of bearer tokens, one a line, accepted like users_file's "
     "credentials (Authorization: Bearer <token>)."},
    {"registry.auth.read_open", TC_CT_BOOL, "true", 0, 0, NULL, OFF(registry_auth_read_open),
     "With authentication configured, GET requests need none (false: reads need it too)."},
    {"registry.user_info_file", TC_CT_STRING, "", 0, 0, "THERMOCLINE_REGISTRY_USER_INFO_FILE",
     OFF(registry_user_info_file),
     "File holding user:password that `thermocline schema` sends to the registry (HTTP Basic, "
     "Confluent's basic.auth.user.info), for writes to a registry with registry.auth.*; the "
     "pipeline's schema cache (registry.url) sends it with every request too."},
    {"registry.bearer_token_file", TC_CT_STRING, "", 0, 0, NULL, OFF(registry_bearer_token_file),
     "File holding a token the pipeline's schema cache sends to the registry as "
     "Authorization: Bearer (instead of registry.user_info_file; a file no other user may "
     "read)."},
    {"registry.tls.ca_file", TC_CT_STRING, "", 0, 0, NULL, OFF(registry_tls_ca_file),
     "PEM CA(s) the registry's certificate must chain to when registry.url is https:// "
     "(empty: the system's CAs)."},
    {"registry.tls.cert_file", TC_CT_STRING, "", 0, 0, NULL, OFF(registry_tls_cert_file),
     "PEM client certificate the pipeline presents to an https:// registry that asks for one "
     "(with registry.tls.key_file)."},
    {"registry.tls.key_file", TC_CT_STRING, "", 0, 0, NULL, OFF(registry_tls_key_file),
     "PEM private key of registry.tls.cert_file (a file no other user may read)."},
    {"http.tls.cert_file", TC_CT_STRING, "", 0, 0, NULL, OFF(http_tls_cert_file),
     "PEM certificate (chain) of our HTTP servers: set, with http.tls.key_file, they speak "
     "HTTPS only."},
    {"http.tls.key_file", TC_CT_STRING, "", 0, 0, NULL, OFF(http_tls_key_file),
     "PEM private key of http.tls.cert_file (a file no other user may read)."},
    {"http.tls.client_ca_file", TC_CT_STRING, "", 0, 0, NULL, OFF(http_tls_client_ca_file),
     "PEM CA of client certificates: set, every HTTPS client must present a certificate it "
     "signed (mutual TLS)."},
    {"http.admin_listen", TC_CT_STRING, "", 0, 0, "THERMOCLINE_HTTP_ADMIN_LISTEN",
     OFF(http_admin_listen),
     "`thermocline registry`: address of its /healthz and /metrics, apart from the API "
     "(empty: not served)."},
    {"http.max_connections", TC_CT_INT, "256", 4, 65536, NULL, OFF(http_max_connections),
     "Connections one HTTP server holds at most; more wait in the kernel's backlog."},
    {"http.per_ip_connections", TC_CT_INT, "32", 1, 65536, NULL, OFF(http_per_ip_connections),
     "Connections one client address may hold at once; more are refused, so that one client "
     "cannot take every connection."},
    {"http.request_deadline_ms", TC_CT_INT, "10000", 100, 3600000, NULL,
     OFF(http_request_deadline_ms),
     "A request's line, headers and body must arrive within this long of the connection "
     "opening (or of the previous response); a slower client is cut off."},
    {"http.idle_timeout_s", TC_CT_INT, "30", 1, 86400, NULL, OFF(http_idle_timeout_s),
     "A connection silent this long is closed."},
    {"http.max_requests_per_connection", TC_CT_INT, "1000", 1, 1000000, NULL,
     OFF(http_max_requests_per_connection),
     "Requests served on one keep-alive connection before it is closed (Connection: close)."},
    {"http.gzip", TC_CT_BOOL, "true", 0, 0, NULL, OFF(http_gzip),
     "Answer in gzip a client whose Accept-Encoding takes it: text bodies (JSON, NDJSON, CSV, "
     "/metrics) of 1,400 bytes or more and streamed ones; never Parquet. false: always identity "
     "(for a deployment whose bodies would hold a secret beside text a client chose: BREACH)."},
    /* Observability and alerting (docs/observability.md): one block. */
    {"http.storage_sample_s", TC_CT_INT, "60", 1, 86400, NULL, OFF(http_storage_sample_s),
     "How often /metrics' storage figures (PostgreSQL table sizes, TimescaleDB jobs, lake bytes "
     "and files) are sampled: they cost queries and a directory walk, so not on every scrape."},
    {"alerting.alertmanager_urls", TC_CT_STRING, "", 0, 0, "THERMOCLINE_ALERTMANAGER_URLS",
     OFF(alerting_alertmanager_urls),
     "Alertmanager base URLs, comma separated (an HA pair: every alert goes to each); empty: "
     "no alerts are pushed."},
    {"alerting.queue_max", TC_CT_INT, "1024", 1, 1000000, NULL, OFF(alerting_queue_max),
     "Alerts held at most (firing, or resolved and not yet delivered). Past it the oldest "
     "resolved one is dropped first; when all are firing a new one is refused. Both counted."},
    {"alerting.resend_s", TC_CT_INT, "60", 1, 3600, NULL, OFF(alerting_resend_s),
     "Re-send interval of a firing alert; it is sent with endsAt 4 intervals ahead, so it expires "
     "by itself if this process stops."},
    {"alerting.timeout_ms", TC_CT_INT, "5000", 100, 600000, NULL, OFF(alerting_timeout_ms),
     "Deadline of one POST to an Alertmanager."},
    {"alerting.escalate_after_s", TC_CT_INT, "1800", 0, 31536000, NULL,
     OFF(alerting_escalate_after_s),
     "An alert still firing this long is also sent with the label escalated=\"true\" (the "
     "second tier's route); 0: never."},
    {"alerting.site", TC_CT_STRING, "", 0, 0, "THERMOCLINE_SITE", OFF(alerting_site),
     "Value of the site label of alerts this process pushes (empty: no site label)."},
    {"alerting.not_ready_after_s", TC_CT_INT, "0", 0, 86400, NULL, OFF(alerting_not_ready_after_s),
     "`run` pushes ThermoclineNotReady (critical) once /readyz has failed this long, and "
     "resolves it when ready again; 0: off (where Prometheus watches the pipeline, its rule of "
     "the same name does it)."},
    /* Scheduled exports of the lake (`thermocline export --scheduled`, docs/exports.md). */
    {"export.schedules", TC_CT_STRING, "", 0, 0, NULL, OFF(export_schedules),
     "Scheduled exports, separated by ';', each KEY=VALUE pairs: name, schedule (daily, weekly, "
     "hourly, monthly or five cron fields in quotes), tz, format, compress, profile, devices, "
     "tags, metrics, out, lookback (docs/exports.md). Checked when `export --scheduled` starts."},
    {"export.listen", TC_CT_STRING, "", 0, 0, NULL, OFF(export_listen),
     "Address `export --scheduled` serves /metrics on (empty: none; port 0: any free port)."},
    {"export.check_interval_s", TC_CT_INT, "60", 1, 604800, NULL, OFF(export_check_interval_s),
     "How often `export --scheduled` looks for due periods and late data."},
    {"log.level", TC_CT_ENUM, "info", 0, 0, "THERMOCLINE_LOG_LEVEL", OFF(log_level),
     "debug, info, warn or error.", TC_CF_RELOAD, "debug,info,warn,error"},
    {"log.format", TC_CT_ENUM, "auto", 0, 0, "THERMOCLINE_LOG_FORMAT", OFF(log_format),
     "json (JSON lines), human, or auto (human on a terminal, JSON otherwise).", 0,
     "json,human,auto"},
};
#pragma GCC diagnostic pop

#define TC_CONF_COUNT     (sizeof(tc_conf_table) / sizeof(tc_conf_table[0]))
#define TC_RDKAFKA_PREFIX "rdkafka."
/* Keys (settings and sections) one config file may hold: a duplicate is found among them. */
#define TC_CONF_KEYS_MAX 1024
/* YAML nesting deeper than this is not a Thermocline config file. */
#define TC_CONF_DEPTH_MAX 8
/* Longest dotted key we accept. */
#define TC_CONF_KEY_MAX 256
/* An ENUM's choices written out for a message or the reference. */
#define TC_CONF_CHOICES_MAX 256

static const tc_conf_entry *tc_conf_find(const char *key)
{
    for (size_t i = 0; i < TC_CONF_COUNT; i++) {
        if (strcmp(tc_conf_table[i].key, key) == 0)
            return &tc_conf_table[i];
    }
    return NULL;
}

static tc_err tc_conf_parse_bool(const char *v, int64_t *out)
{
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") ||
             !strcmp(v, "0"))
        *out = 0;
    else
        return TC_ERR_CONFIG;
    return TC_OK;
}

static tc_err tc_conf_set_rdkafka(tc_config *cfg, const char *key, const char *value, char *errstr,
                                  size_t errstr_size)
{
    const char *prop = key + strlen(TC_RDKAFKA_PREFIX);
    char *v;
    int i;

    if (!*prop)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "empty rdkafka property name");
    for (i = 0; i < cfg->rdkafka_count; i++) {
        if (strcmp(cfg->rdkafka_keys[i], prop) == 0)
            break;
    }
    if (i == TC_CONFIG_RDKAFKA_MAX)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "more than %d rdkafka.* properties",
                          TC_CONFIG_RDKAFKA_MAX);
    v = strdup(value);
    if (!v)
        return TC_ERR_NOMEM;
    if (i == cfg->rdkafka_count) {
        cfg->rdkafka_keys[i] = strdup(prop);
        if (!cfg->rdkafka_keys[i]) {
            free(v);
            return TC_ERR_NOMEM;
        }
        cfg->rdkafka_count++;
    } else {
        free(cfg->rdkafka_values[i]);
    }
    cfg->rdkafka_values[i] = v;
    return TC_OK;
}

/* Whether value is one of an ENUM entry's choices (exactly, case included). */
static int tc_conf_is_choice(const tc_conf_entry *e, const char *value)
{
    size_t n = strlen(value);

    for (const char *c = e->choices; c && *c;) {
        size_t len = strcspn(c, ",");
        if (len == n && !strncmp(c, value, n))
            return 1;
        c += len + (c[len] == ',');
    }
    return 0;
}

/* An ENUM entry's choices for people: "auto, on, off". */
static const char *tc_conf_choices_text(const tc_conf_entry *e, char *out, size_t cap)
{
    size_t k = 0;

    out[0] = '\0';
    for (const char *c = e->choices; c && *c && k + 1 < cap; c++)
        k += (size_t)snprintf(out + k, cap - k, *c == ',' ? ", " : "%c", *c);
    return out;
}

int tc_config_reloadable(const char *key)
{
    const tc_conf_entry *e = tc_conf_find(key);

    return e && (e->flags & TC_CF_RELOAD);
}

size_t tc_config_reloadable_keys(char *out, size_t cap)
{
    size_t k = 0;

    if (cap)
        out[0] = '\0';
    for (size_t i = 0; i < TC_CONF_COUNT && k < cap; i++) {
        if (tc_conf_table[i].flags & TC_CF_RELOAD)
            k += (size_t)snprintf(out + k, cap - k, "%s%s", k ? ", " : "", tc_conf_table[i].key);
    }
    return k < cap ? k : (cap ? cap - 1 : 0); /* truncated: what fits */
}

tc_err tc_config_set(tc_config *cfg, const char *key, const char *value, char *errstr,
                     size_t errstr_size)
{
    const tc_conf_entry *e;
    char *end, *s;
    void *field;
    double d;
    int64_t b;

    if (strncmp(key, TC_RDKAFKA_PREFIX, strlen(TC_RDKAFKA_PREFIX)) == 0)
        return tc_conf_set_rdkafka(cfg, key, value, errstr, errstr_size);
    e = tc_conf_find(key);
    if (!e)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "unknown configuration key \"%s\" (see docs/configuration.md)", key);
    field = (char *)cfg + e->offset;
    if (e->type == TC_CT_ENUM && !tc_conf_is_choice(e, value)) {
        char allowed[TC_CONF_CHOICES_MAX];
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "invalid value for \"%s\": \"%s\" (allowed: %s)", key, value,
                          tc_conf_choices_text(e, allowed, sizeof(allowed)));
    }
    switch (e->type) {
    case TC_CT_STRING:
    case TC_CT_ENUM:
        s = strdup(value);
        if (!s)
            return TC_ERR_NOMEM;
        free(*(char **)field);
        *(char **)field = s;
        return TC_OK;
    case TC_CT_INT:
    case TC_CT_DOUBLE:
        errno = 0;
        d = strtod(value, &end);
        if (end == value || *end || errno == ERANGE || !isfinite(d))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "invalid value for \"%s\": \"%s\" is not a number", key, value);
        if (e->type == TC_CT_INT && d != floor(d))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "invalid value for \"%s\": \"%s\" is not an integer", key, value);
        if (d < e->min || d > e->max)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "invalid value for \"%s\": %s is outside [%.17g, %.17g]", key, value,
                              e->min, e->max);
        if (e->type == TC_CT_INT)
            *(int64_t *)field = (int64_t)d;
        else
            *(double *)field = d;
        return TC_OK;
    case TC_CT_BOOL:
        if (tc_conf_parse_bool(value, &b) != TC_OK)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "invalid value for \"%s\": \"%s\" is not a boolean", key, value);
        *(int64_t *)field = b;
        return TC_OK;
    }
    return TC_ERR_CONFIG;
}

tc_config *tc_config_new(void)
{
    tc_config *cfg = calloc(1, sizeof(*cfg));
    char errstr[TC_ERRSTR_MAX];

    if (!cfg)
        return NULL;
    for (size_t i = 0; i < TC_CONF_COUNT; i++) {
        if (tc_config_set(cfg, tc_conf_table[i].key, tc_conf_table[i].def, errstr,
                          sizeof(errstr)) != TC_OK) {
            tc_config_destroy(cfg);
            return NULL;
        }
    }
    return cfg;
}

void tc_config_destroy(tc_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < TC_CONF_COUNT; i++) {
        if (tc_conf_table[i].type == TC_CT_STRING || tc_conf_table[i].type == TC_CT_ENUM)
            free(*(char **)((char *)cfg + tc_conf_table[i].offset));
    }
    for (int i = 0; i < cfg->rdkafka_count; i++) {
        free(cfg->rdkafka_keys[i]);
        free(cfg->rdkafka_values[i]);
    }
    free(cfg);
}

/* Join the key stack into "a.b.c"; returns -1 when the key is too long. */
static int tc_conf_join(char keys[][TC_CONF_KEY_MAX], int depth, const char *leaf, char *out)
{
    size_t pos = 0, n;

    out[0] = '\0';
    for (int i = 0; i <= depth; i++) {
        const char *part = i < depth ? keys[i] : leaf;
        n = strlen(part);
        if (pos + n + 2 > TC_CONF_KEY_MAX)
            return -1;
        if (pos)
            out[pos++] = '.';
        memcpy(out + pos, part, n + 1);
        pos += n;
    }
    return 0;
}

/* A plain empty, "~" or "null" value: YAML's null. */
static int tc_conf_is_null(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;

    return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*v || !strcmp(v, "~") || !strcmp(v, "null"));
}

/* A key with a null value leaves the default in place; it must still name a setting or a section
 * (an empty "rdkafka:" section, say), so that typos are caught. */
static tc_err tc_conf_check_null(const char *key, char *errstr, size_t errstr_size)
{
    size_t n = strlen(key);

    if (!strcmp(key, "rdkafka") || !strncmp(key, TC_RDKAFKA_PREFIX, strlen(TC_RDKAFKA_PREFIX)))
        return TC_OK;
    for (size_t i = 0; i < TC_CONF_COUNT; i++) {
        if (!strncmp(tc_conf_table[i].key, key, n) &&
            (tc_conf_table[i].key[n] == '\0' || tc_conf_table[i].key[n] == '.'))
            return TC_OK;
    }
    return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                      "unknown configuration key \"%s\" (see docs/configuration.md)", key);
}

/* The keys of one file seen so far, with where: YAML says keys are unique, libyaml does not check,
 * and a repeated key silently taking the last value hides a mistake. */
typedef struct tc_conf_seen {
    char key[TC_CONF_KEY_MAX];
    size_t line, column;
} tc_conf_seen;

static tc_err tc_conf_check_dup(tc_conf_seen *seen, size_t *nseen, const char *key,
                                const yaml_mark_t *mark, const char *origin, char *errstr,
                                size_t errstr_size)
{
    for (size_t i = 0; i < *nseen; i++) {
        if (!strcmp(seen[i].key, key))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "\"%s\" line %zu column %zu: duplicated key \"%s\" (first at line "
                              "%zu column %zu)",
                              origin, mark->line + 1, mark->column + 1, key, seen[i].line,
                              seen[i].column);
    }
    if (*nseen >= TC_CONF_KEYS_MAX)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "\"%s\": more than %d keys", origin,
                          TC_CONF_KEYS_MAX);
    snprintf(seen[*nseen].key, sizeof(seen[*nseen].key), "%s", key);
    seen[*nseen].line = mark->line + 1;
    seen[*nseen].column = mark->column + 1;
    (*nseen)++;
    return TC_OK;
}

tc_err tc_config_load_yaml(tc_config *cfg, const char *buf, size_t len, const char *origin,
                           char *errstr, size_t errstr_size)
{
    char keys[TC_CONF_DEPTH_MAX][TC_CONF_KEY_MAX], full[TC_CONF_KEY_MAX];
    char pending[TC_CONF_KEY_MAX];
    int depth = -1, have_key = 0, done = 0;
    tc_err err = TC_OK;
    yaml_parser_t parser;
    yaml_event_t ev;
    tc_conf_seen *seen = malloc(TC_CONF_KEYS_MAX * sizeof(*seen));
    size_t nseen = 0;

    if (!seen || !yaml_parser_initialize(&parser)) {
        free(seen);
        return TC_ERR_NOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    while (!done && err == TC_OK) {
        if (!yaml_parser_parse(&parser, &ev)) {
            /* The reader (encoding) stage knows a byte offset, not a line. */
            if (parser.error == YAML_READER_ERROR)
                err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                 "could not parse \"%s\": %s at byte %zu", origin,
                                 parser.problem ? parser.problem : "invalid encoding",
                                 parser.problem_offset);
            else
                err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                 "could not parse \"%s\": %s at line %zu column %zu", origin,
                                 parser.problem ? parser.problem : "syntax error",
                                 parser.problem_mark.line + 1, parser.problem_mark.column + 1);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            nseen = 0; /* keys are unique within a document; later documents apply in order */
            break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_MAPPING_START_EVENT:
            if (depth >= 0 && !have_key) {
                err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                 "\"%s\" line %zu: a mapping cannot be a key", origin,
                                 ev.start_mark.line + 1);
            } else if (depth + 1 >= TC_CONF_DEPTH_MAX) {
                err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                 "\"%s\" line %zu: nesting deeper than %d", origin,
                                 ev.start_mark.line + 1, TC_CONF_DEPTH_MAX);
            } else {
                if (depth >= 0)
                    memcpy(keys[depth], pending, sizeof(pending));
                depth++;
                have_key = 0;
            }
            break;
        case YAML_MAPPING_END_EVENT:
            depth--;
            have_key = 0;
            break;
        case YAML_SCALAR_EVENT: {
            const char *val = (const char *)ev.data.scalar.value;
            if (depth < 0) {
                /* An empty document is a scalar "" with plain style: accept it. */
                if (ev.data.scalar.length)
                    err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                     "\"%s\": the top level must be a mapping", origin);
            } else if (!have_key) {
                if (ev.data.scalar.length >= TC_CONF_KEY_MAX ||
                    strchr(val, '\0') != val + ev.data.scalar.length) {
                    err =
                        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                   "\"%s\" line %zu: invalid key", origin, ev.start_mark.line + 1);
                } else {
                    memcpy(pending, val, ev.data.scalar.length + 1);
                    have_key = 1;
                    if (tc_conf_join(keys, depth, pending, full) == 0)
                        err = tc_conf_check_dup(seen, &nseen, full, &ev.start_mark, origin, errstr,
                                                errstr_size);
                }
            } else {
                have_key = 0;
                if (tc_conf_join(keys, depth, pending, full) < 0)
                    err =
                        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                   "\"%s\" line %zu: key too long", origin, ev.start_mark.line + 1);
                else if (strchr(val, '\0') != val + ev.data.scalar.length)
                    err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                     "\"%s\" line %zu: NUL byte in value of \"%s\"", origin,
                                     ev.start_mark.line + 1, full);
                else if (tc_conf_is_null(&ev))
                    err = tc_conf_check_null(full, errstr, errstr_size);
                else
                    err = tc_config_set(cfg, full, val, errstr, errstr_size);
            }
            break;
        }
        default:
            err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                             "\"%s\" line %zu: sequences and aliases are not supported", origin,
                             ev.start_mark.line + 1);
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    free(seen);
    return err;
}

/* Config files are small; a bigger one is a mistake, not a config. */
#define TC_CONF_FILE_MAX (1024 * 1024)

tc_err tc_config_load_file(tc_config *cfg, const char *path, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n;
    tc_err err;

    if (!f)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "could not open configuration file \"%s\": %s", path, strerror(errno));
    buf = malloc(TC_CONF_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return TC_ERR_NOMEM;
    }
    n = fread(buf, 1, TC_CONF_FILE_MAX + 1, f);
    if (ferror(f))
        err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                         "could not read configuration file \"%s\": %s", path, strerror(errno));
    else if (n > TC_CONF_FILE_MAX)
        err =
            tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                       "configuration file \"%s\" is larger than %d bytes", path, TC_CONF_FILE_MAX);
    else
        err = tc_config_load_yaml(cfg, buf, n, path, errstr, errstr_size);
    free(buf);
    fclose(f);
    return err;
}

tc_err tc_config_apply_env(tc_config *cfg, char *errstr, size_t errstr_size)
{
    char inner[TC_ERRSTR_MAX] = "out of memory";
    const char *v;
    tc_err err;

    for (size_t i = 0; i < TC_CONF_COUNT; i++) {
        if (!tc_conf_table[i].env || !(v = getenv(tc_conf_table[i].env)))
            continue;
        err = tc_config_set(cfg, tc_conf_table[i].key, v, inner, sizeof(inner));
        if (err != TC_OK)
            return tc_err_set(err, errstr, errstr_size, "environment variable %s: %s",
                              tc_conf_table[i].env, inner);
    }
    return TC_OK;
}

tc_config *tc_config_load(const char *path, char *errstr, size_t errstr_size)
{
    tc_config *cfg = tc_config_new();

    if (!cfg) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    if ((path && tc_config_load_file(cfg, path, errstr, errstr_size) != TC_OK) ||
        tc_config_apply_env(cfg, errstr, errstr_size) != TC_OK) {
        tc_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

/* The entry of key's other bound: "X_min" for "X_max"; NULL when key is not an X_max with one. */
static const tc_conf_entry *tc_conf_min_of(const char *key)
{
    char lo[TC_CONF_KEY_MAX];
    size_t n = strlen(key);

    if (n < 4 || n >= sizeof(lo) || strcmp(key + n - 4, "_max") != 0)
        return NULL;
    memcpy(lo, key, n - 4);
    memcpy(lo + n - 4, "_min", 5);
    return tc_conf_find(lo);
}

static double tc_conf_number(const tc_config *cfg, const tc_conf_entry *e)
{
    const void *field = (const char *)cfg + e->offset;

    return e->type == TC_CT_DOUBLE ? *(const double *)field : (double)*(const int64_t *)field;
}

/* A schema named after postgres.schema: base beside "telemetry", <postgres.schema>_<base>
 * otherwise, so that two stores in one database never share their api or audit log. */
static tc_err tc_config_derive_schema(tc_config *cfg, const char *key, const char *base,
                                      char *errstr, size_t errstr_size)
{
    char name[TC_CONF_KEY_MAX];

    if (!strcmp(cfg->pg_schema, "telemetry"))
        snprintf(name, sizeof(name), "%s", base);
    else
        snprintf(name, sizeof(name), "%s_%s", cfg->pg_schema, base);
    return tc_config_set(cfg, key, name, errstr, errstr_size);
}

tc_err tc_config_derive(tc_config *cfg, char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;

    if (!*cfg->api_schema)
        err = tc_config_derive_schema(cfg, "api.schema", "api", errstr, errstr_size);
    if (err == TC_OK && !*cfg->audit_schema)
        err = tc_config_derive_schema(cfg, "audit.schema", "audit", errstr, errstr_size);
    return err;
}

tc_err tc_config_check(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < TC_CONF_COUNT; i++) {
        const tc_conf_entry *hi = &tc_conf_table[i], *lo = tc_conf_min_of(hi->key);
        char a[TC_FMT_DOUBLE_MAX], b[TC_FMT_DOUBLE_MAX];
        if (!lo || (hi->type != TC_CT_INT && hi->type != TC_CT_DOUBLE) || lo->type != hi->type ||
            tc_conf_number(cfg, lo) <= tc_conf_number(cfg, hi))
            continue;
        tc_fmt_double(a, sizeof(a), tc_conf_number(cfg, lo));
        tc_fmt_double(b, sizeof(b), tc_conf_number(cfg, hi));
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "%s (%s) is above %s (%s): no value could be valid", lo->key, a, hi->key,
                          b);
    }
    if (strcasecmp(cfg->kafka_security_protocol, "plaintext") &&
        strcasecmp(cfg->kafka_security_protocol, "ssl") &&
        strcasecmp(cfg->kafka_security_protocol, "sasl_ssl") &&
        strcasecmp(cfg->kafka_security_protocol, "sasl_plaintext"))
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "invalid value for \"kafka.security_protocol\": \"%s\" (plaintext, ssl, "
                          "sasl_ssl or sasl_plaintext)",
                          cfg->kafka_security_protocol);
    if (!*cfg->http_tls_cert_file != !*cfg->http_tls_key_file)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "http.tls.cert_file and http.tls.key_file go together: set both (HTTPS) "
                          "or neither (HTTP)");
    if (*cfg->http_tls_client_ca_file && !*cfg->http_tls_cert_file)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "http.tls.client_ca_file needs HTTPS: set http.tls.cert_file and "
                          "http.tls.key_file too");
    return TC_OK;
}

static const char *const tc_conf_type_names[] = {"string", "integer", "number", "boolean", "enum"};

void tc_config_write_reference(FILE *out)
{
    fprintf(out,
            "# Configuration reference\n\n"
            "Generated by `thermocline config reference` from the configuration table in "
            "`src/core/config.c`; do not edit by hand.\n\n"
            "Precedence, lowest first: default, YAML file (`--config`), environment variable, "
            "`--set key=value`. Keys under `rdkafka.` are passed to librdkafka unchanged "
            "(see librdkafka's CONFIGURATION.md). Unknown keys are an error.\n\n"
            "The **reload** column marks the settings that SIGHUP applies to a running "
            "`thermocline run`; the others take effect at the next start.\n\n"
            "| key | type | default | bounds or values | environment | reload | description |\n"
            "|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < TC_CONF_COUNT; i++) {
        const tc_conf_entry *e = &tc_conf_table[i];
        char allowed[TC_CONF_CHOICES_MAX];
        fprintf(out, "| `%s` | %s | `%s` | ", e->key, tc_conf_type_names[e->type], e->def);
        if ((e->type == TC_CT_INT || e->type == TC_CT_DOUBLE) && e->max < TC_DBL_ANY)
            fprintf(out, "%.15g .. %.15g", e->min, e->max);
        else if (e->type == TC_CT_ENUM)
            fprintf(out, "%s", tc_conf_choices_text(e, allowed, sizeof(allowed)));
        fprintf(out, " | %s%s%s | %s | %s |\n", e->env ? "`" : "", e->env ? e->env : "",
                e->env ? "`" : "", e->flags & TC_CF_RELOAD ? "yes" : "", e->desc);
    }
}

/* Length of key's section (the part before its first dot). */
static size_t tc_conf_section_len(const char *key)
{
    return (size_t)(strchr(key, '.') - key);
}

/* One setting of the sample, when it belongs to the section section[0..slen). */
static void tc_config_write_sample_entry(FILE *out, const tc_conf_entry *e, const char *section,
                                         size_t slen)
{
    const char *dot = e->key + tc_conf_section_len(e->key);

    if ((size_t)(dot - e->key) != slen || strncmp(e->key, section, slen))
        return;
    fprintf(out, "  # %s%s%s%s\n", e->desc, e->env ? " (env " : "", e->env ? e->env : "",
            e->env ? ")" : "");
    if (e->type == TC_CT_STRING || e->type == TC_CT_ENUM)
        fprintf(out, "  %s: \"%s\"\n", dot + 1, e->def);
    else
        fprintf(out, "  %s: %s\n", dot + 1, e->def);
}

/* Nonzero when entry i's section appears at an earlier entry of the table. */
static int tc_conf_section_seen(size_t i)
{
    size_t slen = tc_conf_section_len(tc_conf_table[i].key);

    for (size_t j = 0; j < i; j++) {
        if (tc_conf_section_len(tc_conf_table[j].key) == slen &&
            !strncmp(tc_conf_table[j].key, tc_conf_table[i].key, slen))
            return 1;
    }
    return 0;
}

void tc_config_write_sample(FILE *out)
{
    fprintf(out, "# Thermocline configuration (generated by `thermocline config sample`).\n"
                 "# Every setting is shown with its default. Environment variables named below\n"
                 "# override the file; `--set key=value` overrides both.\n");
    /* One mapping per section, in the order sections first appear: the table keeps related
     * settings together (security's block spans sections), a YAML file may not repeat a key. */
    for (size_t first = 0; first < TC_CONF_COUNT; first++) {
        size_t slen = tc_conf_section_len(tc_conf_table[first].key);
        if (tc_conf_section_seen(first))
            continue;
        fprintf(out, "\n%.*s:\n", (int)slen, tc_conf_table[first].key);
        for (size_t i = first; i < TC_CONF_COUNT; i++)
            tc_config_write_sample_entry(out, &tc_conf_table[i], tc_conf_table[first].key, slen);
    }
    fprintf(out, "\n# librdkafka properties, passed through unchanged:\n"
                 "rdkafka:\n  # fetch.wait.max.ms: 50\n  # statistics.interval.ms: 0\n");
}

/* Nonzero when a setting's value must not be printed: passwords and secrets, a libpq DSN with a
 * password=... keyword or a URI carrying user:password@. */
static int tc_conf_is_secret(const char *key, const char *value)
{
    const char *scheme = strstr(value, "://"), *at, *colon;
    size_t klen = strlen(key);

    /* *_file and *_env name where a secret is, which is not one. */
    if ((klen > 5 && !strcmp(key + klen - 5, "_file")) ||
        (klen > 4 && !strcmp(key + klen - 4, "_env")))
        return 0;
    if (strstr(key, "password") || strstr(key, "secret") || strstr(key, "token") ||
        strstr(key, ".pem") || strstr(key, "keystore"))
        return 1;
    if (!strstr(key, "dsn"))
        return 0;
    if (strstr(value, "password"))
        return 1;
    if (scheme) {
        at = strchr(scheme + 3, '@');
        colon = strchr(scheme + 3, ':');
        if (at && colon && colon < at)
            return 1;
    }
    return 0;
}

static int tc_conf_same(const tc_conf_entry *e, const tc_config *a, const tc_config *b)
{
    const char *fa = (const char *)a + e->offset, *fb = (const char *)b + e->offset;

    switch (e->type) {
    case TC_CT_STRING:
    case TC_CT_ENUM:
        return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
    case TC_CT_DOUBLE: {
        double x, y;
        memcpy(&x, fa, sizeof(x));
        memcpy(&y, fb, sizeof(y));
        return x == y;
    }
    default:
        return memcmp(fa, fb, sizeof(int64_t)) == 0;
    }
}

static int tc_conf_same_rdkafka(const tc_config *a, const tc_config *b)
{
    if (a->rdkafka_count != b->rdkafka_count)
        return 0;
    for (int i = 0; i < a->rdkafka_count; i++) {
        if (strcmp(a->rdkafka_keys[i], b->rdkafka_keys[i]) ||
            strcmp(a->rdkafka_values[i], b->rdkafka_values[i]))
            return 0;
    }
    return 1;
}

size_t tc_config_diff(const tc_config *a, const tc_config *b, const char **keys, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < TC_CONF_COUNT; i++) {
        if (tc_conf_same(&tc_conf_table[i], a, b))
            continue;
        if (n < max)
            keys[n] = tc_conf_table[i].key;
        n++;
    }
    if (!tc_conf_same_rdkafka(a, b)) {
        if (n < max)
            keys[n] = "rdkafka.*";
        n++;
    }
    return n;
}

tc_err tc_config_copy_key(tc_config *dst, const tc_config *src, const char *key)
{
    const tc_conf_entry *e = tc_conf_find(key);
    char *dfield, *copy;
    const char *sfield;

    if (!e)
        return TC_ERR_CONFIG;
    dfield = (char *)dst + e->offset;
    sfield = (const char *)src + e->offset;
    switch (e->type) {
    case TC_CT_STRING:
    case TC_CT_ENUM:
        copy = strdup(*(char *const *)sfield);
        if (!copy)
            return TC_ERR_NOMEM;
        free(*(char **)dfield);
        *(char **)dfield = copy;
        break;
    case TC_CT_DOUBLE:
        memcpy(dfield, sfield, sizeof(double));
        break;
    default:
        memcpy(dfield, sfield, sizeof(int64_t));
        break;
    }
    return TC_OK;
}

void tc_config_dump(const tc_config *cfg, FILE *out)
{
    char num[TC_FMT_DOUBLE_MAX];
    static const char hidden[] = "<secret>";

    for (size_t i = 0; i < TC_CONF_COUNT; i++) {
        const tc_conf_entry *e = &tc_conf_table[i];
        const void *field = (const char *)cfg + e->offset;
        const char *sv;
        switch (e->type) {
        case TC_CT_STRING:
        case TC_CT_ENUM:
            sv = *(char *const *)field;
            fprintf(out, "%s = %s\n", e->key, tc_conf_is_secret(e->key, sv) ? hidden : sv);
            break;
        case TC_CT_INT:
            fprintf(out, "%s = %lld\n", e->key, (long long)*(const int64_t *)field);
            break;
        case TC_CT_DOUBLE:
            tc_fmt_double(num, sizeof(num), *(const double *)field);
            fprintf(out, "%s = %s\n", e->key, num);
            break;
        case TC_CT_BOOL:
            fprintf(out, "%s = %s\n", e->key, *(const int64_t *)field ? "true" : "false");
            break;
        }
    }
    for (int i = 0; i < cfg->rdkafka_count; i++)
        fprintf(out, "rdkafka.%s = %s\n", cfg->rdkafka_keys[i],
                tc_conf_is_secret(cfg->rdkafka_keys[i], cfg->rdkafka_values[i])
                    ? hidden
                    : cfg->rdkafka_values[i]);
}

size_t tc_config_batch_cap(const tc_config *cfg)
{
    return (size_t)(cfg->batch_size_max > cfg->batch_size ? cfg->batch_size_max : cfg->batch_size);
}
