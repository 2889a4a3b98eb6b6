/*
 * tc_dlq_mirror_send -- mirror a few synthetic dead letters through tc_dlq_mirror.
 *
 *   tc_dlq_mirror_send [--config FILE] [--set KEY=VALUE ...] [--count N]
 *
 * Letter i (0-based), from kafka.topic:
 *   i % 3 == 0: reason out_of_range, stage validate, key "dev-<i>",
 *               payload {"device_id":"dev-<i>","temperature":150.<i>}
 *   i % 3 == 1: reason invalid_utf8, stage decode, key "dev-<i>", payload ff fe 00 "bin-<i>"
 *   i % 3 == 2: reason empty_message, stage decode, no key, empty payload
 * detail "detail <i>", partition i % 4, offset 1000 + i, received at
 * 2026-11-28T12:00:00Z + i seconds. The letters go out in two batches (to exercise reuse), then
 * the mirror is flushed. Prints {"topic":"<mirror topic>","sent":N}. Exit status: 0 when every
 * message was acknowledged, 1 otherwise, 2 usage. tests/integration/test_dlq.py checks the topic.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/deadletter.h"
#include "core/timeutil.h"
#include "ingest/dlq_mirror.h"

static tc_err add_letter(tc_dlq_batch *d, int i)
{
    char payload[128], key[32], detail[64];
    size_t plen = 0, klen = 0;
    const void *p = NULL, *k = NULL;
    tc_reject reason;
    const char *stage;
    int64_t t0;

    tc_time_parse_rfc3339("2026-11-28T12:00:00Z", 20, &t0);
    snprintf(key, sizeof(key), "dev-%d", i);
    snprintf(detail, sizeof(detail), "detail %d", i);
    switch (i % 3) {
    case 0:
        plen = (size_t)snprintf(payload, sizeof(payload),
                                "{\"device_id\":\"dev-%d\",\"temperature\":150.%d}", i, i);
        reason = TC_REJECT_OUT_OF_RANGE;
        stage = "validate";
        break;
    case 1:
        payload[0] = (char)0xff;
        payload[1] = (char)0xfe;
        payload[2] = 0;
        plen = 3 + (size_t)snprintf(payload + 3, sizeof(payload) - 3, "bin-%d", i);
        reason = TC_REJECT_INVALID_UTF8;
        stage = "decode";
        break;
    default:
        reason = TC_REJECT_EMPTY;
        stage = "decode";
        break;
    }
    if (plen) {
        p = payload;
        k = key;
        klen = strlen(key);
    }
    return tc_dlq_batch_add(d, reason, stage, detail, p, plen, k, klen, i % 4, 1000 + i,
                            t0 + (int64_t)i * 1000000);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"count", required_argument, NULL, 'n'},
                                             {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "tc_dlq_mirror_send",
        .help =
            "usage: tc_dlq_mirror_send [--set KEY=VALUE ...] [--count N]\n\n" TC_CLI_COMMON_HELP,
        .shortopts = "n:",
        .longopts = longopts,
    };
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_dlq_mirror *m;
    tc_dlq_batch *d;
    tc_config *cfg;
    int count = 9, rc = 0;
    tc_err err = TC_OK;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while (tc_cli_next(&ps) == 'n')
        count = (int)tc_cli_parse_long("--count", optarg, 0, 100000);
    tc_cli_args(&ps);
    cfg = tc_cli_config(&common);
    d = tc_dlq_batch_new((size_t)count + 1, 0);
    m = d ? tc_dlq_mirror_new(cfg, errstr, sizeof(errstr)) : NULL;
    if (!m) {
        fprintf(stderr, "tc_dlq_mirror_send: %s\n", d ? errstr : "out of memory");
        tc_dlq_batch_destroy(d);
        tc_config_destroy(cfg);
        return 1;
    }
    for (int i = 0; err == TC_OK && i < count; i++) {
        err = add_letter(d, i);
        if (err == TC_OK && (i == count / 2 || i == count - 1)) {
            err = tc_dlq_mirror_send(m, d, cfg->kafka_topic, errstr, sizeof(errstr));
            tc_dlq_batch_reset(d);
        }
    }
    if (err == TC_OK)
        err = tc_dlq_mirror_flush(m, 30000, errstr, sizeof(errstr));
    if (err != TC_OK) {
        fprintf(stderr, "tc_dlq_mirror_send: %s\n", errstr);
        rc = 1;
    } else {
        printf("{\"topic\":\"%s\",\"sent\":%d}\n", tc_dlq_mirror_topic(m), count);
    }
    tc_dlq_mirror_destroy(m);
    tc_dlq_batch_destroy(d);
    tc_config_destroy(cfg);
    return rc;
}
