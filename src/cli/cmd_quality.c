/*
 * cmd_quality.c -- `thermocline quality`: the data-quality monitor seen by a person.
 *
 *   check-rules FILE   check a rules file (quality/rules.h) the way the monitor loads it: a
 *                      summary and exit 0, or "FILE:LINE:COL: message" on stderr and exit 1, so
 *                      an editor or a CI step can jump to the line. Nothing is contacted.
 *   summary            what the quality sink wrote (quality_1m, quality_fleet_1m,
 *                      quality_dead_letters_1m, anomalies) since --since: the fleet in one
 *                      paragraph, the worst devices, the worst metrics, dead-letter reasons and
 *                      freshness, as tables a person reads.
 *   anomalies          the findings, newest first, as a table or JSON (--format json).
 *
 * The reports are plain SQL over the tables; each query is one statement with text parameters,
 * and a missing table (a schema never migrated) says so instead of printing empty tables.
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/json.h"
#include "core/timeutil.h"
#include "quality/quality_sql.h"
#include "quality/rules.h"

/* Rows of each table of the summary, and the default and largest --limit of anomalies. */
#define TC_QUALITY_WORST     10
#define TC_QUALITY_LIMIT     100
#define TC_QUALITY_LIMIT_MAX 1000000
/* The summary's default window. */
#define TC_QUALITY_SINCE_DEFAULT_US (3600LL * 1000000)

typedef struct tc_quality_cli {
    PGconn *conn;
    char *schema; /* quoted */
    char since[40];
    const char *device; /* NULL: every device */
    int open_only, json;
    long limit;
} tc_quality_cli;

static void tc_quality_summary_rules(const char *path, const tc_qr_set *set)
{
    size_t by_kind[TC_QR_KIND__COUNT] = {0}, critical = 0, with_for = 0;

    for (size_t i = 0; i < tc_qr_count(set); i++) {
        const tc_qr_rule *r = tc_qr_get(set, i);
        by_kind[r->kind]++;
        critical += r->severity == TC_QR_CRITICAL;
        with_for += r->for_us > 0;
    }
    printf("%s: %zu rules (%zu critical, %zu warning; %zu with a `for` duration)\n", path,
           tc_qr_count(set), critical, tc_qr_count(set) - critical, with_for);
    for (int k = 0; k < TC_QR_KIND__COUNT; k++)
        if (by_kind[k])
            printf("  %-9s %zu\n", tc_qr_kind_name((tc_qr_kind)k), by_kind[k]);
    printf("  metrics:");
    for (int m = 0; m < tc_qr_metric_count(set); m++)
        printf("%s %s", m ? "," : "", tc_qr_metric_name(set, m));
    printf("%s\n", tc_qr_metric_count(set) ? "" : " none");
}

/* Run tmpl ("@S" = the schema; $1 since, $2 device or NULL, $3 limit) and return its rows, or
 * NULL after printing what went wrong. */
static PGresult *tc_quality_query(tc_quality_cli *c, const char *tmpl, const char *what)
{
    char *sql = tc_quality_sql_expand(tmpl, c->schema), limit[24];
    const char *params[3] = {c->since, c->device, limit};
    PGresult *res;

    if (!sql) {
        fprintf(stderr, "thermocline quality: out of memory\n");
        return NULL;
    }
    snprintf(limit, sizeof(limit), "%ld", c->limit);
    /* PostgreSQL refuses parameters a statement does not use: the limit is $3, last. */
    res = PQexecParams(c->conn, sql, strstr(sql, "$3") ? 3 : 2, NULL, params, NULL, NULL, 0);
    free(sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && !strcmp(state, "42P01"))
            fprintf(stderr,
                    "thermocline quality: %s: the quality tables are not in schema %s; run "
                    "`thermocline migrate` (postgres.schema)\n",
                    what, c->schema);
        else
            fprintf(stderr, "thermocline quality: %s: %s", what, PQresultErrorMessage(res));
        PQclear(res);
        return NULL;
    }
    return res;
}

static const char *tc_quality_val(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "-" : PQgetvalue(r, row, col);
}

/* A column header then a rule of dashes under it. */
static void tc_quality_header(const char *title, const char *cols)
{
    size_t n = strlen(cols);

    printf("\n%s\n%s\n", title, cols);
    for (size_t i = 0; i < n; i++)
        putchar(cols[i] == ' ' ? ' ' : '-');
    putchar('\n');
}

/* The device filter, the window: every query of the summary shares them. */
#define TC_Q_WHERE " bucket >= $1::timestamptz AND ($2::text IS NULL OR device_id = $2)"

static const char tc_quality_sql_fleet[] =
    "SELECT coalesce(sum(readings), 0), count(DISTINCT device_id) FILTER (WHERE readings > 0),"
    " round(100.0 * sum(temperature_n) / nullif(sum(readings), 0), 1),"
    " round(100.0 * sum(humidity_n) / nullif(sum(readings), 0), 1),"
    " round(100.0 * sum(pressure_n) / nullif(sum(readings), 0), 1),"
    " round(100.0 * sum(battery_n) / nullif(sum(readings), 0), 1),"
    " round(100.0 * sum(late) / nullif(sum(readings), 0), 2),"
    " round(100.0 * sum(out_of_order) / nullif(sum(readings), 0), 2), coalesce(sum(gaps), 0),"
    " coalesce(sum(dead_letters), 0), coalesce(sum(duplicates), 0),"
    " round(@S.tc_quality_sketch_quantile(@S.tc_quality_sketch_sum(delay_sketch), 0.5)::numeric"
    " / 1000, 3),"
    " round(@S.tc_quality_sketch_quantile(@S.tc_quality_sketch_sum(delay_sketch), 0.99)::numeric"
    " / 1000, 3)"
    " FROM @S.quality_1m WHERE" TC_Q_WHERE;

/* Worst first: open anomalies, then the share of readings with a problem. */
static const char tc_quality_sql_devices[] =
    "WITH q AS (SELECT device_id, sum(readings) AS n, sum(late) AS late,"
    " sum(out_of_order) AS ooo, sum(gaps) AS gaps, sum(dead_letters) AS dead,"
    " round(100.0 * sum(temperature_n + humidity_n + pressure_n + battery_n)"
    " / nullif(4 * sum(readings), 0), 1) AS complete, max(bucket) AS last"
    " FROM @S.quality_1m WHERE" TC_Q_WHERE " GROUP BY device_id),"
    " a AS (SELECT device_id, count(*) FILTER (WHERE end_time IS NULL) AS open, count(*) AS all_"
    " FROM @S.anomalies WHERE coalesce(end_time, 'infinity') >= $1::timestamptz"
    " AND ($2::text IS NULL OR device_id = $2) GROUP BY device_id)"
    " SELECT coalesce(q.device_id, a.device_id), coalesce(q.n, 0), q.complete,"
    " coalesce(q.late, 0), coalesce(q.ooo, 0), coalesce(q.gaps, 0), coalesce(q.dead, 0),"
    " coalesce(a.open, 0), coalesce(a.all_, 0), to_char(q.last, 'YYYY-MM-DD HH24:MI')"
    " FROM q FULL JOIN a ON a.device_id = q.device_id"
    " ORDER BY coalesce(a.open, 0) DESC, (coalesce(q.late, 0) + coalesce(q.ooo, 0)"
    " + coalesce(q.gaps, 0) + coalesce(q.dead, 0)) / greatest(coalesce(q.n, 0), 1)::float8 DESC,"
    " coalesce(a.all_, 0) DESC, 1 LIMIT $3::bigint";

static const char tc_quality_sql_metrics[] =
    "WITH c AS (SELECT sum(readings) AS n, sum(temperature_n) AS temperature,"
    " sum(humidity_n) AS humidity, sum(pressure_n) AS pressure, sum(battery_n) AS battery,"
    " sum(latitude_n) AS latitude, sum(longitude_n) AS longitude"
    " FROM @S.quality_1m WHERE" TC_Q_WHERE "),"
    " m AS (SELECT * FROM c, LATERAL (VALUES ('temperature', c.temperature),"
    " ('humidity', c.humidity), ('pressure', c.pressure), ('battery', c.battery),"
    " ('latitude', c.latitude), ('longitude', c.longitude)) AS v(metric, present)),"
    " a AS (SELECT metric, count(*) FILTER (WHERE end_time IS NULL) AS open, count(*) AS all_"
    " FROM @S.anomalies WHERE metric IS NOT NULL"
    " AND coalesce(end_time, 'infinity') >= $1::timestamptz"
    " AND ($2::text IS NULL OR device_id = $2) GROUP BY metric)"
    " SELECT m.metric, round(100.0 * m.present / nullif(m.n, 0), 1), coalesce(a.open, 0),"
    " coalesce(a.all_, 0) FROM m LEFT JOIN a ON a.metric = m.metric"
    " ORDER BY coalesce(a.open, 0) DESC, coalesce(a.all_, 0) DESC,"
    " m.present::float8 / nullif(m.n, 0) NULLS FIRST, 1";

/* Per device only when a device is asked: dead letters without one have no device. */
static const char tc_quality_sql_dead[] =
    "SELECT reason, sum(n) FROM @S.quality_dead_letters_1m WHERE bucket >= $1::timestamptz"
    " AND $2::text IS NULL GROUP BY reason"
    " UNION ALL SELECT 'all reasons (this device)', sum(dead_letters) FROM @S.quality_1m"
    " WHERE" TC_Q_WHERE " AND $2::text IS NOT NULL HAVING sum(dead_letters) > 0"
    " ORDER BY 2 DESC, 1";

static const char tc_quality_sql_fresh[] =
    "SELECT to_char(max(bucket) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI\"Z\"'),"
    " greatest(0, round(extract(epoch FROM now() - max(bucket) - interval '1 minute'))),"
    " (SELECT to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    " FROM @S.quality_offsets),"
    " (SELECT round(extract(epoch FROM now() - max(updated_at))) FROM @S.quality_offsets)"
    " FROM @S.quality_1m WHERE readings > 0 AND ($2::text IS NULL OR device_id = $2)"
    " AND bucket >= $1::timestamptz - interval '365 days'";

static int tc_quality_print_summary(tc_quality_cli *c)
{
    PGresult *r;

    if (!(r = tc_quality_query(c, tc_quality_sql_fleet, "the fleet's figures")))
        return TC_EXIT_FAILURE;
    printf("Data quality since %s%s%s\n", c->since, c->device ? ", device " : "",
           c->device ? c->device : "");
    printf("  %s readings from %s device%s; completeness: temperature %s%%, humidity %s%%, "
           "pressure %s%%, battery %s%%\n",
           tc_quality_val(r, 0, 0), tc_quality_val(r, 0, 1),
           strcmp(tc_quality_val(r, 0, 1), "1") ? "s" : "", tc_quality_val(r, 0, 2),
           tc_quality_val(r, 0, 3), tc_quality_val(r, 0, 4), tc_quality_val(r, 0, 5));
    printf("  late %s%%, out of order %s%%, gaps %s; dead letters %s (duplicates %s); "
           "event-to-ingest delay p50 %s s, p99 %s s\n",
           tc_quality_val(r, 0, 6), tc_quality_val(r, 0, 7), tc_quality_val(r, 0, 8),
           tc_quality_val(r, 0, 9), tc_quality_val(r, 0, 10), tc_quality_val(r, 0, 11),
           tc_quality_val(r, 0, 12));
    PQclear(r);

    if (!(r = tc_quality_query(c, tc_quality_sql_devices, "the worst devices")))
        return TC_EXIT_FAILURE;
    tc_quality_header("Worst devices (open anomalies first, then problems per reading; "
                      "anomalies found since then)",
                      "device                 readings complete%   late    ooo   gaps   dead "
                      "  open     found last-minute");
    for (int i = 0; i < PQntuples(r); i++)
        printf("%-22.22s %8s %9s %6s %6s %6s %6s %6s %9s %s\n", tc_quality_val(r, i, 0),
               tc_quality_val(r, i, 1), tc_quality_val(r, i, 2), tc_quality_val(r, i, 3),
               tc_quality_val(r, i, 4), tc_quality_val(r, i, 5), tc_quality_val(r, i, 6),
               tc_quality_val(r, i, 7), tc_quality_val(r, i, 8), tc_quality_val(r, i, 9));
    if (!PQntuples(r))
        printf("(none)\n");
    PQclear(r);

    if (!(r = tc_quality_query(c, tc_quality_sql_metrics, "the worst metrics")))
        return TC_EXIT_FAILURE;
    tc_quality_header("Worst metrics (anomalies open, and found since then)",
                      "metric        complete%   open     found");
    for (int i = 0; i < PQntuples(r); i++)
        printf("%-13s %9s %6s %9s\n", tc_quality_val(r, i, 0), tc_quality_val(r, i, 1),
               tc_quality_val(r, i, 2), tc_quality_val(r, i, 3));
    PQclear(r);

    if (!(r = tc_quality_query(c, tc_quality_sql_dead, "the dead-letter reasons")))
        return TC_EXIT_FAILURE;
    tc_quality_header("Dead letters by reason", "reason                        count");
    for (int i = 0; i < PQntuples(r); i++)
        printf("%-29s %6s\n", tc_quality_val(r, i, 0), tc_quality_val(r, i, 1));
    if (!PQntuples(r))
        printf("(none)\n");
    PQclear(r);

    if (!(r = tc_quality_query(c, tc_quality_sql_fresh, "freshness")))
        return TC_EXIT_FAILURE;
    printf("\nFreshness\n  latest minute with readings: %s (ended %s s ago)\n"
           "  last quality transaction:    %s (%s s ago)\n",
           tc_quality_val(r, 0, 0), tc_quality_val(r, 0, 1), tc_quality_val(r, 0, 2),
           tc_quality_val(r, 0, 3));
    PQclear(r);
    return 0;
}

static const char tc_quality_sql_anomalies[] =
    "SELECT id, device_id, metric, kind, rule, severity,"
    " to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " to_char(end_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), status,"
    " round(score::numeric, 2), round(observed::numeric, 3), round(expected::numeric, 3),"
    " kafka_partition"
    " FROM @S.anomalies WHERE coalesce(end_time, 'infinity') >= $1::timestamptz"
    " AND ($2::text IS NULL OR device_id = $2) AND (NOT @OPEN OR end_time IS NULL)"
    " ORDER BY start_time DESC, id DESC LIMIT nullif($3::bigint, 0)";

static int tc_quality_print_anomalies(tc_quality_cli *c)
{
    /* Column names are the JSON keys; the numbers go out as numbers. */
    static const int numeric[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1};
    char tmpl[sizeof(tc_quality_sql_anomalies) + 64];
    const char *open = strstr(tc_quality_sql_anomalies, "@OPEN");
    PGresult *r;

    snprintf(tmpl, sizeof(tmpl), "%.*s%s%s", (int)(open - tc_quality_sql_anomalies),
             tc_quality_sql_anomalies, c->open_only ? "true" : "false", open + 5);
    if (!(r = tc_quality_query(c, tmpl, "the anomalies")))
        return TC_EXIT_FAILURE;
    if (c->json) {
        static const char *const names[] = {"id",       "device",   "metric",   "kind",   "rule",
                                            "severity", "start",    "end",      "status", "score",
                                            "observed", "expected", "partition"};
        tc_jbuf j;

        _Static_assert(sizeof(names) / sizeof(names[0]) == sizeof(numeric) / sizeof(numeric[0]),
                       "a name per column");
        tc_jbuf_init(&j, 0);
        tc_jbuf_arr_begin(&j);
        for (int i = 0; i < PQntuples(r); i++) {
            tc_jbuf_obj_begin(&j);
            for (int k = 0; k < PQnfields(r) && k < (int)(sizeof(names) / sizeof(names[0])); k++) {
                tc_jbuf_key(&j, names[k]);
                if (PQgetisnull(r, i, k))
                    tc_jbuf_null(&j);
                else if (numeric[k])
                    tc_jbuf_raw(&j, PQgetvalue(r, i, k), strlen(PQgetvalue(r, i, k)));
                else
                    tc_jbuf_str(&j, PQgetvalue(r, i, k));
            }
            tc_jbuf_obj_end(&j);
        }
        tc_jbuf_arr_end(&j);
        if (tc_jbuf_failed(&j)) {
            fprintf(stderr, "thermocline quality: out of memory\n");
            tc_jbuf_free(&j);
            PQclear(r);
            return TC_EXIT_FAILURE;
        }
        printf("%s\n", j.data);
        tc_jbuf_free(&j);
        PQclear(r);
        return 0;
    }
    tc_quality_header(c->open_only ? "Open anomalies (newest first)" : "Anomalies (newest first)",
                      "id     device                 metric       kind     rule             "
                      "severity start                    end                      score");
    for (int i = 0; i < PQntuples(r); i++)
        printf("%-6s %-22.22s %-12.12s %-8s %-16.16s %-8s %-24s %-24s %s\n",
               tc_quality_val(r, i, 0), tc_quality_val(r, i, 1), tc_quality_val(r, i, 2),
               tc_quality_val(r, i, 3), tc_quality_val(r, i, 4), tc_quality_val(r, i, 5),
               tc_quality_val(r, i, 6), PQgetisnull(r, i, 7) ? "open" : PQgetvalue(r, i, 7),
               tc_quality_val(r, i, 9));
    if (!PQntuples(r))
        printf("(none)\n");
    PQclear(r);
    return 0;
}

/* The help names the defaults as text. */
_Static_assert(TC_QUALITY_LIMIT == 100 && TC_QUALITY_WORST == 10,
               "the quality help says 100 anomalies and 10 devices");

static const char tc_quality_help[] =
    "usage: thermocline quality check-rules FILE\n"
    "       thermocline quality summary [--since T] [--device D]\n"
    "       thermocline quality anomalies [--open] [--since T] [--device D] [--limit N]\n"
    "                                     [--format table|json]\n\n"
    "  check-rules FILE  parse a data-quality rules file (docs/quality.md): print a\n"
    "                    summary and exit 0, or print FILE:LINE:COL: message and\n"
    "                    exit 1\n"
    "  summary           the quality sink's figures since T: the fleet, the 10 worst\n"
    "                    devices, the worst metrics, dead letters by reason, freshness\n"
    "  anomalies         findings of the detectors and rules active since T, newest\n"
    "                    first (default limit 100, 0 = all)\n\n"
    "  -t, --since T     RFC 3339, or an age such as 90s, 30m, 12h, 7d (summary:\n"
    "                    default 1h; anomalies: default all)\n"
    "  -D, --device D    only this device\n"
    "  -o, --open        anomalies: only those still open\n"
    "  -n, --limit N     anomalies: at most N rows\n"
    "  -f, --format F    anomalies: table (default) or json\n" TC_CLI_COMMON_HELP;

static int tc_quality_check_rules(const char *path)
{
    char errstr[TC_ERRSTR_MAX];
    tc_qr_set *set = tc_qr_load(path, errstr, sizeof(errstr));

    if (!set) {
        fprintf(stderr, "%s\n", errstr);
        return TC_EXIT_FAILURE;
    }
    tc_quality_summary_rules(path, set);
    tc_qr_free(set);
    return 0;
}

int tc_cmd_quality(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"since", required_argument, NULL, 't'},  {"device", required_argument, NULL, 'D'},
        {"open", no_argument, NULL, 'o'},         {"limit", required_argument, NULL, 'n'},
        {"format", required_argument, NULL, 'f'}, {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "quality",
        .help = tc_quality_help,
        .shortopts = "t:D:on:f:",
        .longopts = longopts,
        .min_args = 1,
        .max_args = 2,
    };
    tc_cli_common common = {0};
    tc_quality_cli c = {.limit = TC_QUALITY_LIMIT};
    tc_cli_parser ps;
    tc_config *cfg;
    const char *sub;
    int64_t since_us = 0;
    int opt, first, rc, since_set = 0, anomaly_opts = 0;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1) {
        switch (opt) {
        case 't':
            if (tc_cli_parse_since(optarg, &since_us) != 0)
                tc_cli_usage_error(&spec,
                                   "--since expects an RFC 3339 time or an age such as 30m, "
                                   "12h or 7d, got \"%s\"",
                                   optarg);
            since_set = 1;
            break;
        case 'D':
            c.device = optarg;
            break;
        case 'o':
            c.open_only = 1;
            anomaly_opts = 1;
            break;
        case 'n':
            c.limit = tc_cli_parse_long("--limit", optarg, 0, TC_QUALITY_LIMIT_MAX);
            anomaly_opts = 1;
            break;
        case 'f':
            if (strcmp(optarg, "json") && strcmp(optarg, "table"))
                tc_cli_usage_error(&spec, "--format expects table or json, got \"%s\"", optarg);
            c.json = !strcmp(optarg, "json");
            anomaly_opts = 1;
            break;
        default:
            break;
        }
    }
    first = tc_cli_args(&ps);
    sub = argv[first];
    if (!strcmp(sub, "check-rules")) {
        if (first + 1 >= argc)
            tc_cli_usage_error(&spec, "check-rules wants the rules FILE");
        cfg = tc_cli_config(&common);
        rc = tc_quality_check_rules(argv[first + 1]);
        tc_config_destroy(cfg);
        return rc;
    }
    if (strcmp(sub, "summary") && strcmp(sub, "anomalies"))
        tc_cli_usage_error(&spec, "unknown subcommand \"%s\"", sub);
    if (first + 1 < argc)
        tc_cli_usage_error(&spec, "%s: unexpected argument \"%s\"", sub, argv[first + 1]);
    if (!strcmp(sub, "summary") && anomaly_opts)
        tc_cli_usage_error(&spec, "--open, --limit and --format go with anomalies");
    if (!since_set)
        since_us = !strcmp(sub, "summary") ? tc_time_now_us() - TC_QUALITY_SINCE_DEFAULT_US
                                           : INT64_C(-62135596800000000); /* 0001-01-01 */
    tc_time_format_rfc3339(since_us, c.since, sizeof(c.since));
    if (!strcmp(sub, "summary"))
        c.limit = TC_QUALITY_WORST;
    cfg = tc_cli_config(&common);
    c.conn = PQconnectdb(cfg->pg_dsn);
    if (PQstatus(c.conn) != CONNECTION_OK) {
        fprintf(stderr, "thermocline quality: cannot connect to PostgreSQL (postgres.dsn): %s",
                PQerrorMessage(c.conn));
        PQfinish(c.conn);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    c.schema = PQescapeIdentifier(c.conn, cfg->pg_schema, strlen(cfg->pg_schema));
    rc = !c.schema                 ? TC_EXIT_FAILURE
         : !strcmp(sub, "summary") ? tc_quality_print_summary(&c)
                                   : tc_quality_print_anomalies(&c);
    PQfreemem(c.schema);
    PQfinish(c.conn);
    tc_config_destroy(cfg);
    return rc;
}
