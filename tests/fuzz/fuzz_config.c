/*
 * fuzz_config.c -- libFuzzer target for tc_config_load_yaml.
 *
 * Arbitrary bytes go to the YAML loader on a fresh default configuration, which is destroyed
 * afterwards, so ASan sees every leak and every read past the input (libFuzzer's buffer is exactly
 * size bytes). Beyond "no crash, no UB, no leak" the target checks what callers rely on:
 *   - the return value is TC_OK or TC_ERR_CONFIG (never NOMEM on tiny inputs, never anything else);
 *   - a failure comes with a non-empty, NUL-terminated message, and a success leaves none;
 *   - whatever was loaded stays within the table's rules: bounded integers, finite limits, at most
 *     TC_CONFIG_RDKAFKA_MAX pass-through properties, each with a non-empty name;
 *   - the configuration can still be dumped (every string field is a valid C string).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s\n", what);
        abort();
    }
}

static void fz_check(const tc_config *cfg)
{
    fz_require(cfg->batch_size >= 1 && cfg->batch_size <= 1000000, "batch_size in bounds");
    fz_require(cfg->kafka_partitions >= 1 && cfg->kafka_partitions <= 10000, "partitions");
    fz_require(cfg->kafka_create_topic == 0 || cfg->kafka_create_topic == 1, "bool is 0/1");
    fz_require(cfg->limits.max_age_s >= 60, "max_age_s in bounds");
    fz_require(cfg->limits.max_future_s >= 0, "max_future_s in bounds");
    for (int m = 0; m < 6; m++)
        fz_require(isfinite(cfg->limits.min[m]) && isfinite(cfg->limits.max[m]), "finite limits");
    fz_require(cfg->rdkafka_count >= 0 && cfg->rdkafka_count <= TC_CONFIG_RDKAFKA_MAX,
               "rdkafka count");
    for (int i = 0; i < cfg->rdkafka_count; i++) {
        fz_require(cfg->rdkafka_keys[i] && cfg->rdkafka_keys[i][0], "rdkafka key non-empty");
        fz_require(cfg->rdkafka_values[i] != NULL, "rdkafka value");
    }
    fz_require(cfg->kafka_brokers && cfg->kafka_topic && cfg->kafka_group && cfg->pg_dsn &&
                   cfg->pg_schema && cfg->lake_dir && cfg->log_level && cfg->log_format,
               "string fields set");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errstr[TC_ERRSTR_MAX];
    tc_config *cfg = tc_config_new();
    FILE *devnull;
    tc_err err;

    if (!cfg)
        return 0;
    memset(errstr, 0x5a, sizeof(errstr));
    errstr[0] = '\0';
    err = tc_config_load_yaml(cfg, (const char *)data, size, "fuzz.yaml", errstr, sizeof(errstr));
    fz_require(err == TC_OK || err == TC_ERR_CONFIG, "result is ok or config");
    fz_require(memchr(errstr, '\0', sizeof(errstr)) != NULL, "errstr NUL-terminated");
    if (err == TC_OK)
        fz_require(errstr[0] == '\0', "no message on success");
    else
        fz_require(errstr[0] != '\0', "message on failure");
    fz_check(cfg);
    devnull = fopen("/dev/null", "w");
    if (devnull) {
        tc_config_dump(cfg, devnull);
        fclose(devnull);
    }
    tc_config_destroy(cfg);
    return 0;
}
