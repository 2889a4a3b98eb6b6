/*
 * cmd_dlq.c -- `thermocline dlq ls|show|count|redrive`: look at and redrive dead letters.
 *
 * ls and count read @S.dead_letters with filters; show prints one dead letter with its payload (as
 * text when it is valid UTF-8, control characters escaped, else as a hex dump). redrive produces
 * the selected payloads, with their keys, to kafka.topic again and marks the rows redriven once the
 * broker acknowledged them (store/deadletters.h): the pipeline then decodes and validates them as
 * any new message -- a reading valid now is stored, one still invalid becomes a new dead letter
 * with its new offset. Rows already redriven are skipped unless --again.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/json.h"
#include "core/timeutil.h"
#include "ingest/kafka.h"
#include "store/deadletters.h"

#define TC_DLQ_LS_DEFAULT_LIMIT 100
#define TC_DLQ_REDRIVE_PAGE     500
#define TC_DLQ_FLUSH_MS         30000

typedef struct tc_dlq_cli {
    int json;
    int dry_run;
    int again;
    size_t rows;
    int64_t last_id;
    tc_jbuf jb;
    tc_producer *producer;
    const char *topic;
    uint64_t failed_before;
    char errstr[TC_ERRSTR_MAX];
} tc_dlq_cli;

static void tc_dlq_time(int64_t us, char *buf, size_t cap)
{
    if (!us)
        snprintf(buf, cap, "-");
    else
        tc_time_format_rfc3339(us, buf, cap);
}

/* A detail or other text on one line: control characters become spaces, cut at max bytes. */
static void tc_dlq_print_line(const char *s, size_t max)
{
    for (size_t i = 0; i < max && s[i]; i++)
        putchar((unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i]);
}

static void tc_dlq_json_row(tc_jbuf *jb, const tc_dlq_row *r)
{
    char t[TC_TIME_RFC3339_MAX];

    tc_jbuf_obj_begin(jb);
    tc_jbuf_key(jb, "id");
    tc_jbuf_int(jb, r->id);
    tc_jbuf_key(jb, "received_at");
    tc_time_format_rfc3339(r->received_us, t, sizeof(t));
    tc_jbuf_str(jb, t);
    tc_jbuf_key(jb, "reason");
    tc_jbuf_str(jb, r->reason);
    tc_jbuf_key(jb, "detail");
    tc_jbuf_str(jb, r->detail);
    tc_jbuf_key(jb, "stage");
    tc_jbuf_str(jb, r->stage);
    tc_jbuf_key(jb, "source_topic");
    tc_jbuf_str(jb, r->source_topic);
    tc_jbuf_key(jb, "source_partition");
    tc_jbuf_int(jb, r->source_partition);
    tc_jbuf_key(jb, "source_offset");
    tc_jbuf_int(jb, r->source_offset);
    tc_jbuf_key(jb, "payload_bytes");
    tc_jbuf_int(jb, (int64_t)r->payload_bytes);
    tc_jbuf_key(jb, "redriven_at");
    if (r->redriven_us) {
        tc_time_format_rfc3339(r->redriven_us, t, sizeof(t));
        tc_jbuf_str(jb, t);
    } else {
        tc_jbuf_null(jb);
    }
    tc_jbuf_key(jb, "redrive_count");
    tc_jbuf_int(jb, r->redrive_count);
}

static tc_err tc_dlq_ls_row(void *opaque, const tc_dlq_row *r)
{
    tc_dlq_cli *c = opaque;
    char t[TC_TIME_RFC3339_MAX], rt[TC_TIME_RFC3339_MAX];

    c->rows++;
    c->last_id = r->id;
    if (c->json) {
        tc_dlq_json_row(&c->jb, r);
        tc_jbuf_obj_end(&c->jb);
        return TC_OK;
    }
    if (c->rows == 1)
        printf("%-10s %-27s %-20s %-8s %-16s %-27s %s\n", "ID", "RECEIVED_AT", "REASON", "STAGE",
               "PARTITION:OFFSET", "REDRIVEN_AT", "DETAIL");
    tc_dlq_time(r->received_us, t, sizeof(t));
    tc_dlq_time(r->redriven_us, rt, sizeof(rt));
    printf("%-10" PRId64 " %-27s %-20s %-8s %5" PRId32 ":%-10" PRId64 " %-27s ", r->id, t,
           r->reason, r->stage, r->source_partition, r->source_offset, rt);
    tc_dlq_print_line(r->detail, 120);
    putchar('\n');
    return TC_OK;
}

/* Bytes as text when valid UTF-8 (control characters other than newline and tab escaped as \xNN,
 * and the backslash doubled), else as a hex dump. */
static void tc_dlq_print_bytes(const char *label, const uint8_t *p, size_t n)
{
    if (!p) {
        printf("%s: (none)\n", label);
        return;
    }
    if (tc_json_utf8_valid((const char *)p, n)) {
        printf("%s (%zu bytes, text):\n", label, n);
        for (size_t i = 0; i < n; i++) {
            if (p[i] == '\\')
                fputs("\\\\", stdout);
            else if ((p[i] < 0x20 && p[i] != '\n' && p[i] != '\t') || p[i] == 0x7f)
                printf("\\x%02x", p[i]);
            else
                putchar(p[i]);
        }
        putchar('\n');
        return;
    }
    printf("%s (%zu bytes, not UTF-8, hex):\n", label, n);
    for (size_t off = 0; off < n; off += 16) {
        printf("%08zx ", off);
        for (size_t i = off; i < off + 16; i++) {
            if (i < n)
                printf(" %02x", p[i]);
            else
                fputs("   ", stdout);
        }
        fputs("  |", stdout);
        for (size_t i = off; i < off + 16 && i < n; i++)
            putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
        fputs("|\n", stdout);
    }
}

static void tc_dlq_json_bytes(tc_jbuf *jb, const char *name, const uint8_t *p, size_t n)
{
    char key[64];
    int text = p && tc_json_utf8_valid((const char *)p, n);

    snprintf(key, sizeof(key), "%s_%s", name, text ? "text" : "hex");
    tc_jbuf_key(jb, key);
    if (!p) {
        tc_jbuf_null(jb);
    } else if (text) {
        tc_jbuf_strn(jb, (const char *)p, n);
    } else {
        char *hex = malloc(2 * n + 1);
        if (!hex) {
            tc_jbuf_null(jb);
            return;
        }
        for (size_t i = 0; i < n; i++)
            snprintf(hex + 2 * i, 3, "%02x", p[i]);
        hex[2 * n] = '\0';
        tc_jbuf_strn(jb, hex, 2 * n);
        free(hex);
    }
}

static tc_err tc_dlq_show_row(void *opaque, const tc_dlq_row *r)
{
    tc_dlq_cli *c = opaque;
    char t[TC_TIME_RFC3339_MAX];

    c->rows++;
    if (c->json) {
        tc_dlq_json_row(&c->jb, r);
        tc_dlq_json_bytes(&c->jb, "key", r->key, r->key_len);
        tc_dlq_json_bytes(&c->jb, "payload", r->payload, r->payload_len);
        tc_jbuf_obj_end(&c->jb);
        return TC_OK;
    }
    printf("id:           %" PRId64 "\n", r->id);
    tc_dlq_time(r->received_us, t, sizeof(t));
    printf("received_at:  %s\n", t);
    printf("reason:       %s\n", r->reason);
    printf("stage:        %s\n", r->stage);
    fputs("detail:       ", stdout);
    tc_dlq_print_line(r->detail, (size_t)-1);
    putchar('\n');
    fputs("source:       topic ", stdout);
    tc_dlq_print_line(r->source_topic, (size_t)-1);
    printf(", partition %" PRId32 ", offset %" PRId64 "\n", r->source_partition, r->source_offset);
    if (r->redriven_us) {
        tc_dlq_time(r->redriven_us, t, sizeof(t));
        printf("redriven_at:  %s (%" PRId32 " time%s)\n", t, r->redrive_count,
               r->redrive_count == 1 ? "" : "s");
    } else {
        printf("redriven_at:  never\n");
    }
    tc_dlq_print_bytes("key", r->key, r->key_len);
    tc_dlq_print_bytes("payload", r->payload, r->payload_len);
    return TC_OK;
}

static tc_err tc_dlq_count_row(void *opaque, const char *reason, int64_t count, int64_t redriven)
{
    tc_dlq_cli *c = opaque;

    c->rows++;
    c->last_id += count; /* the total */
    if (c->json) {
        tc_jbuf_obj_begin(&c->jb);
        tc_jbuf_key(&c->jb, "reason");
        tc_jbuf_str(&c->jb, reason);
        tc_jbuf_key(&c->jb, "count");
        tc_jbuf_int(&c->jb, count);
        tc_jbuf_key(&c->jb, "redriven");
        tc_jbuf_int(&c->jb, redriven);
        tc_jbuf_obj_end(&c->jb);
        return TC_OK;
    }
    if (c->rows == 1)
        printf("%-24s %12s %12s\n", "REASON", "COUNT", "REDRIVEN");
    printf("%-24s %12" PRId64 " %12" PRId64 "\n", reason, count, redriven);
    return TC_OK;
}

static tc_err tc_dlq_send(void *opaque, const tc_dlq_row *r)
{
    tc_dlq_cli *c = opaque;

    c->rows++;
    return tc_producer_send(c->producer, c->topic, -1, r->key, r->key ? r->key_len : 0, r->payload,
                            r->payload ? r->payload_len : 0, c->errstr, sizeof(c->errstr));
}

static tc_err tc_dlq_flush(void *opaque)
{
    tc_dlq_cli *c = opaque;
    uint64_t failed = tc_producer_flush(c->producer, TC_DLQ_FLUSH_MS);

    if (failed != c->failed_before)
        return tc_err_set(TC_ERR_KAFKA, c->errstr, sizeof(c->errstr),
                          "%" PRIu64 " redriven messages were not delivered to \"%s\"",
                          failed - c->failed_before, c->topic);
    return TC_OK;
}

/* Print the JSON built in c->jb. */
static int tc_dlq_print_json(tc_dlq_cli *c)
{
    size_t len;
    char *text = tc_jbuf_take(&c->jb, &len);

    if (!text) {
        fprintf(stderr, "thermocline dlq: out of memory\n");
        return TC_EXIT_FAILURE;
    }
    fwrite(text, 1, len, stdout);
    putchar('\n');
    free(text);
    return 0;
}

static int tc_dlq_redrive(tc_dlq_cli *c, tc_store *store, const tc_config *cfg,
                          const tc_dlq_filter *f)
{
    tc_dlq_redrive_ops ops = {.opaque = c, .send = tc_dlq_send, .flush = tc_dlq_flush};
    char errstr[TC_ERRSTR_MAX] = "";
    uint64_t done = 0;
    int64_t started;
    int audited;
    tc_jbuf params;
    tc_err err;

    c->producer = tc_producer_new(cfg, c->errstr, sizeof(c->errstr));
    if (!c->producer) {
        fprintf(stderr, "thermocline dlq redrive: %s\n", c->errstr);
        return TC_EXIT_FAILURE;
    }
    c->topic = cfg->kafka_topic;
    c->failed_before = tc_producer_flush(c->producer, 0);
    started = tc_time_now_us();
    err = tc_store_dlq_redrive(store, f, TC_DLQ_REDRIVE_PAGE, &ops, &done, errstr, sizeof(errstr));
    tc_producer_destroy(c->producer);
    c->producer = NULL;
    /* The filter is what was asked; rows, what was sent. */
    tc_jbuf_init(&params, 4096);
    tc_jbuf_obj_begin(&params);
    tc_jbuf_key(&params, "reason");
    if (f->reason)
        tc_jbuf_str(&params, f->reason);
    else
        tc_jbuf_null(&params);
    tc_jbuf_key(&params, "since_us");
    tc_jbuf_int(&params, f->since_us);
    tc_jbuf_key(&params, "id");
    tc_jbuf_int(&params, f->id);
    tc_jbuf_key(&params, "limit");
    tc_jbuf_int(&params, f->limit);
    tc_jbuf_key(&params, "again");
    tc_jbuf_bool(&params, f->redriven == 0);
    tc_jbuf_obj_end(&params);
    audited = tc_cli_audit(cfg, "dlq.redrive", cfg->kafka_topic, &params, (int64_t)done,
                           err != TC_OK, errstr, started);
    tc_jbuf_free(&params);
    if (err != TC_OK) {
        fprintf(stderr, "thermocline dlq redrive: %s%s%s (%" PRIu64 " redriven before that)\n",
                errstr, c->errstr[0] ? ": " : "", c->errstr, done);
        return TC_EXIT_FAILURE;
    }
    if (c->json)
        printf("{\"redriven\":%" PRIu64 ",\"topic\":\"%s\"}\n", done, c->topic);
    else
        printf("redrove %" PRIu64 " dead letter%s to \"%s\"\n", done, done == 1 ? "" : "s",
               c->topic);
    return audited;
}

/* The help names the default limit as text. */
_Static_assert(TC_DLQ_LS_DEFAULT_LIMIT == 100, "the dlq help says the default limit is 100");

static const char tc_dlq_help[] =
    "usage: thermocline dlq ls [--reason R] [--since T] [--limit N] [--after ID] [--json]\n"
    "       thermocline dlq show ID [--json]\n"
    "       thermocline dlq count [--reason R] [--since T] [--json]\n"
    "       thermocline dlq redrive [--reason R] [--since T] [--id ID] [--limit N]\n"
    "                               [--again] [--dry-run]\n\n"
    "Dead letters are the readings the pipeline refused (telemetry.dead_letters).\n"
    "  ls       list them, oldest first (default limit 100)\n"
    "  show     one dead letter with its detail, Kafka coordinates and payload\n"
    "  count    how many there are per reason\n"
    "  redrive  produce their payloads (with their keys) to kafka.topic again and mark\n"
    "           them redriven; the pipeline stores what is valid now and turns what is\n"
    "           still invalid into new dead letters\n\n"
    "  -r, --reason R   only this reason code (e.g. out_of_range)\n"
    "  -t, --since T    received at or after T: RFC 3339, or an age such as 90s, 30m,\n"
    "                   12h, 7d\n"
    "  -n, --limit N    at most N rows (ls: default 100, 0 = all; redrive: default all)\n"
    "  -a, --after ID   ls: rows with an id above ID (paging)\n"
    "  -i, --id ID      redrive: this dead letter only\n"
    "  -A, --again      redrive: include rows already redriven\n"
    "  -d, --dry-run    redrive: list what would be redriven, send nothing\n"
    "  -j, --json       machine-readable output\n" TC_CLI_COMMON_HELP;

int tc_cmd_dlq(int argc, char **argv)
{
    static const struct option longopts[] = {{"reason", required_argument, NULL, 'r'},
                                             {"since", required_argument, NULL, 't'},
                                             {"limit", required_argument, NULL, 'n'},
                                             {"after", required_argument, NULL, 'a'},
                                             {"id", required_argument, NULL, 'i'},
                                             {"again", no_argument, NULL, 'A'},
                                             {"dry-run", no_argument, NULL, 'd'},
                                             {"json", no_argument, NULL, 'j'},
                                             {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "dlq",
        .help = tc_dlq_help,
        .shortopts = "r:t:n:a:i:Adj",
        .longopts = longopts,
        .min_args = 1,
        .max_args = 2,
    };
    char errstr[TC_ERRSTR_MAX] = "";
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_dlq_filter f = {0};
    tc_dlq_cli c = {0};
    tc_store_options so;
    const char *sub;
    tc_config *cfg;
    tc_store *store;
    int opt, first, rc = 0, limit_set = 0;
    int64_t id = 0;
    tc_err err = TC_OK;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1) {
        switch (opt) {
        case 'r':
            f.reason = optarg;
            break;
        case 't':
            if (tc_cli_parse_since(optarg, &f.since_us) != 0)
                tc_cli_usage_error(&spec,
                                   "--since expects an RFC 3339 time or an age such as 30m, "
                                   "12h or 7d, got \"%s\"",
                                   optarg);
            break;
        case 'n':
            f.limit = tc_cli_parse_long("--limit", optarg, 0, 1000000000L);
            limit_set = 1;
            break;
        case 'a':
            f.after_id = tc_cli_parse_long("--after", optarg, 0, INT64_MAX);
            break;
        case 'i':
            f.id = tc_cli_parse_long("--id", optarg, 1, INT64_MAX);
            break;
        case 'A':
            c.again = 1;
            break;
        case 'd':
            c.dry_run = 1;
            break;
        case 'j':
            c.json = 1;
            break;
        default:
            break;
        }
    }
    first = tc_cli_args(&ps);
    sub = argv[first];
    if (!strcmp(sub, "show")) {
        if (first + 2 != argc)
            tc_cli_usage_error(&spec, "show expects one dead-letter ID");
        id = tc_cli_parse_long("ID", argv[first + 1], 1, INT64_MAX);
    } else if (strcmp(sub, "ls") && strcmp(sub, "count") && strcmp(sub, "redrive")) {
        tc_cli_usage_error(&spec, "unknown subcommand \"%s\"", sub);
    } else if (first + 1 != argc) {
        tc_cli_usage_error(&spec, "%s: unexpected argument \"%s\"", sub, argv[first + 1]);
    }
    if (!strcmp(sub, "ls") && !limit_set)
        f.limit = TC_DLQ_LS_DEFAULT_LIMIT;
    if (!strcmp(sub, "redrive") && !c.again)
        f.redriven = -1;
    cfg = tc_cli_config(&common);
    tc_store_options_for_owner(&so, cfg); /* reads and marks dead letters: the owner */
    store = tc_store_new(&so, errstr, sizeof(errstr));
    if (!store) {
        fprintf(stderr, "thermocline dlq: %s\n", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    tc_jbuf_init(&c.jb, 0);
    if (!strcmp(sub, "show")) {
        err = tc_store_dlq_get(store, id, tc_dlq_show_row, &c, errstr, sizeof(errstr));
        if (err == TC_OK && c.json)
            rc = tc_dlq_print_json(&c);
    } else if (!strcmp(sub, "count")) {
        if (c.json) {
            tc_jbuf_obj_begin(&c.jb);
            tc_jbuf_key(&c.jb, "reasons");
            tc_jbuf_arr_begin(&c.jb);
        }
        err = tc_store_dlq_count(store, &f, tc_dlq_count_row, &c, errstr, sizeof(errstr));
        if (err == TC_OK && c.json) {
            tc_jbuf_arr_end(&c.jb);
            tc_jbuf_key(&c.jb, "total");
            tc_jbuf_int(&c.jb, c.last_id);
            tc_jbuf_obj_end(&c.jb);
            rc = tc_dlq_print_json(&c);
        } else if (err == TC_OK) {
            printf("%-24s %12" PRId64 "\n", "total", c.last_id);
        }
    } else if (!strcmp(sub, "ls") || c.dry_run) {
        if (c.json)
            tc_jbuf_arr_begin(&c.jb);
        err = tc_store_dlq_list(store, &f, 0, tc_dlq_ls_row, &c, errstr, sizeof(errstr));
        if (err == TC_OK && c.json) {
            tc_jbuf_arr_end(&c.jb);
            rc = tc_dlq_print_json(&c);
        } else if (err == TC_OK && c.dry_run) {
            printf("dry run: would redrive %zu dead letter%s to \"%s\"\n", c.rows,
                   c.rows == 1 ? "" : "s", cfg->kafka_topic);
        } else if (err == TC_OK && c.rows == 0) {
            printf("no dead letters\n");
        } else if (err == TC_OK && f.limit && c.rows == (size_t)f.limit) {
            printf("(first %zu shown; the next page: --after %" PRId64 ")\n", c.rows, c.last_id);
        }
    } else {
        rc = tc_dlq_redrive(&c, store, cfg, &f);
    }
    if (err != TC_OK) {
        fprintf(stderr, "thermocline dlq %s: %s\n", sub, errstr);
        rc = TC_EXIT_FAILURE;
    }
    tc_jbuf_free(&c.jb);
    tc_store_destroy(store);
    tc_config_destroy(cfg);
    return rc;
}
