/*
 * cmd_lake.c -- `thermocline lake ls|verify|compact|replicate`: look at the data lake, merge its
 * closed days' small files (lake/compact.h), copy it to a replica (cli/lake_replicate.h).
 *
 * ls lists days with their files, rows and bytes (rows from each file's footer). verify reads every
 * file's footer and page headers, decodes every page (lake/parquet_read.h), and checks that the
 * file agrees with its name: Kafka partition and offset range in the key-value metadata, no more
 * rows than offsets in the range, and every event time inside the file's day (from the time
 * column's statistics). Temporary files are reported, not counted: they belong to a commit in
 * progress or to one that a crash interrupted (the next recovery removes them).
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/lake_replicate.h"
#include "core/path.h"
#include "core/timeutil.h"
#include "lake/compact.h"
#include "lake/layout.h"
#include "lake/parquet_read.h"

#define TC_LAKE_CLI_PATH_MAX TC_PATH_MAX

typedef struct tc_lake_walk {
    int verify;
    int json;
    uint64_t files, rows, bytes, bad, temporary;
    /* per day */
    uint64_t day_files, day_rows, day_bytes;
} tc_lake_walk;

/* Every event time of the file inside its day (from the time column's statistics). */
static int tc_lake_check_times(const char *path, int64_t day, const tc_parquet_info *info)
{
    int problems = 0;

    for (size_t g = 0; g < info->nrg; g++) {
        const tc_parquet_chunk_info *c = &info->rgs[g].cols[0];
        int64_t lo, hi;
        if (!c->has_stats || !(c->stats.set & TC_PQ_ST_MIN_VALUE) ||
            !(c->stats.set & TC_PQ_ST_MAX_VALUE) || c->stats.min_value.n != 8 ||
            c->stats.max_value.n != 8) {
            printf("BAD  %s: row group %zu has no time statistics\n", path, g);
            problems++;
            continue;
        }
        memcpy(&lo, c->stats.min_value.p, 8); /* PLAIN INT64 is little-endian, like x86-64 */
        memcpy(&hi, c->stats.max_value.p, 8);
        if (tc_time_day_of(lo) != day || tc_time_day_of(hi) != day) {
            printf("BAD  %s: row group %zu holds times outside its day\n", path, g);
            problems++;
        }
    }
    return problems;
}

/* Checks of a compacted file against its metadata and day. */
static int tc_lake_check_compact(const char *path, const char *name, int64_t day,
                                 const tc_parquet_info *info)
{
    static char ranges[1 << 20];
    char rows_s[32], topic[256], prefix[32];
    int y, problems = 0;
    unsigned m, d;
    int64_t offsets = 0;
    const char *s;

    tc_time_civil_from_days(day, &y, &m, &d);
    tc_path_fmt(prefix, sizeof(prefix), "compact-%04d%02u%02u-", y, m, d);
    if (strncmp(name, prefix, strlen(prefix)) != 0) {
        printf("BAD  %s: a compacted file of another day\n", path);
        problems++;
    }
    if (!tc_lake_kv_get(info, TC_LAKE_KV_ROWS, rows_s, sizeof(rows_s)) ||
        !tc_lake_kv_get(info, TC_LAKE_KV_TOPIC, topic, sizeof(topic)) ||
        !tc_lake_kv_get(info, TC_LAKE_KV_PARTITIONS, ranges, sizeof(ranges))) {
        printf("BAD  %s: key-value metadata lacks thermocline.rows or the Kafka coordinates\n",
               path);
        return problems + 1;
    }
    if (strtoll(rows_s, NULL, 10) != info->num_rows) {
        printf("BAD  %s: metadata says %s rows, the footer %" PRId64 "\n", path, rows_s,
               info->num_rows);
        problems++;
    }
    for (s = ranges; *s;) {
        char *end;
        long long p = strtoll(s, &end, 10), f, l;
        if (end == s || *end != ':' || p < 0)
            break;
        s = end + 1;
        f = strtoll(s, &end, 10);
        if (end == s || *end != '-')
            break;
        s = end + 1;
        l = strtoll(s, &end, 10);
        if (end == s || (*end != ',' && *end) || l < f || f < 0)
            break;
        offsets += l - f + 1;
        s = *end ? end + 1 : end;
    }
    if (*s || !*ranges) {
        printf("BAD  %s: kafka.partitions does not parse\n", path);
        problems++;
    } else if (info->num_rows > offsets) {
        printf("BAD  %s: %" PRId64 " rows for %" PRId64 " offsets\n", path, info->num_rows,
               offsets);
        problems++;
    }
    return problems + tc_lake_check_times(path, day, info);
}

/* Checks of a lake file against its name and day; returns the number of problems printed. */
static int tc_lake_check_file(const char *path, const char *name, int64_t day,
                              const tc_parquet_info *info)
{
    char part_s[32], first_s[32], last_s[32], topic[TC_LAKE_TOPIC_MAX], expect[TC_LAKE_NAME_MAX];
    tc_lake_name nm;
    int problems = 0;
    int64_t first, last;

    if (tc_lake_name_parse(name, &nm) == TC_LAKE_FILE_COMPACT)
        return tc_lake_check_compact(path, name, day, info);
    if (!tc_lake_kv_get(info, TC_LAKE_KV_PARTITION, part_s, sizeof(part_s)) ||
        !tc_lake_kv_get(info, TC_LAKE_KV_FIRST_OFFSET, first_s, sizeof(first_s)) ||
        !tc_lake_kv_get(info, TC_LAKE_KV_LAST_OFFSET, last_s, sizeof(last_s)) ||
        !tc_lake_kv_get(info, TC_LAKE_KV_TOPIC, topic, sizeof(topic))) {
        printf("BAD  %s: key-value metadata lacks the Kafka coordinates\n", path);
        return 1;
    }
    first = strtoll(first_s, NULL, 10);
    last = strtoll(last_s, NULL, 10);
    tc_lake_name_part(expect, sizeof(expect), topic, (int32_t)strtol(part_s, NULL, 10), first,
                      last);
    if (strcmp(expect, name) != 0) {
        printf("BAD  %s: metadata says %s\n", path, expect);
        problems++;
    }
    if (last < first || info->num_rows > last - first + 1) {
        printf("BAD  %s: %" PRId64 " rows for offsets %" PRId64 "..%" PRId64 "\n", path,
               info->num_rows, first, last);
        problems++;
    }
    return problems + tc_lake_check_times(path, day, info);
}

static void tc_lake_day(tc_lake_walk *w, const char *dir, int64_t day, const char *label)
{
    char path[TC_LAKE_CLI_PATH_MAX], errstr[TC_ERRSTR_MAX];
    struct dirent *de;
    DIR *d = opendir(dir);

    w->day_files = w->day_rows = w->day_bytes = 0;
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        tc_parquet_info *info = NULL;
        size_t n = strlen(de->d_name);
        struct stat st;

        if (de->d_name[0] == '.' && n > 4 && !strcmp(de->d_name + n - 4, ".tmp")) {
            w->temporary++;
            if (w->verify)
                printf("TMP  %s/%s (a commit in progress, or one a crash interrupted)\n", dir,
                       de->d_name);
            continue;
        }
        if (de->d_name[0] == '.' || n < 8 || strcmp(de->d_name + n - 8, ".parquet") != 0)
            continue;
        tc_path_fmt(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0)
            continue;
        if (tc_parquet_verify_path(path, w->verify ? TC_PQ_VERIFY_DEEP : TC_PQ_VERIFY_FOOTER, &info,
                                   errstr, sizeof(errstr)) != TC_OK) {
            printf("BAD  %s: %s\n", path, errstr);
            w->bad++;
            continue;
        }
        if (w->verify) {
            int problems = tc_lake_check_file(path, de->d_name, day, info);
            w->bad += problems ? 1 : 0;
            if (!problems)
                printf("OK   %s (%" PRId64 " rows)\n", path, info->num_rows);
        }
        w->day_files++;
        w->day_rows += (uint64_t)info->num_rows;
        w->day_bytes += (uint64_t)st.st_size;
        tc_parquet_info_free(info);
    }
    closedir(d);
    w->files += w->day_files;
    w->rows += w->day_rows;
    w->bytes += w->day_bytes;
    if (!w->verify && !w->json)
        printf("%-12s %8" PRIu64 " %14" PRIu64 " %14" PRIu64 "\n", label, w->day_files, w->day_rows,
               w->day_bytes);
    else if (w->json)
        printf("%s{\"day\":\"%s\",\"files\":%" PRIu64 ",\"rows\":%" PRIu64 ",\"bytes\":%" PRIu64
               "}",
               w->files == w->day_files ? "" : ",", label, w->day_files, w->day_rows, w->day_bytes);
}

static tc_err tc_lake_list_day(void *ctx, const char *dir, int64_t day)
{
    char label[16];
    int y;
    unsigned m, d;

    if (day < 0)
        return TC_OK; /* not a day=NN directory under year=/month= */
    tc_time_civil_from_days(day, &y, &m, &d);
    tc_path_fmt(label, sizeof(label), "%04d-%02u-%02u", y % 10000, m % 100, d % 100);
    tc_lake_day(ctx, dir, day, label);
    return TC_OK;
}

/* Compact one day; prints what happened. Returns 0, or 1 when refused or failed. */
static int tc_lake_compact_one(const char *root, int y, int m, int d,
                               const tc_lake_compact_options *o)
{
    char errstr[TC_ERRSTR_MAX];
    tc_lake_compact_result res;
    tc_err err = tc_lake_compact_day(root, y, m, d, o, &res, errstr, sizeof(errstr));

    if (err != TC_OK) {
        printf("SKIP %04d-%02d-%02d: %s\n", y, m, d, errstr);
        return 1;
    }
    if (!res.compacted)
        printf("--   %04d-%02d-%02d: %s\n", y, m, d, res.note);
    else
        printf("%s %04d-%02d-%02d: %zu files (%" PRIu64 " bytes) -> %zu (%" PRIu64
               " bytes), %" PRIu64 " rows\n",
               o->dry_run ? "PLAN" : "DONE", y, m, d, res.inputs, res.bytes_in, res.outputs,
               res.bytes_out, res.rows);
    return 0;
}

typedef struct tc_lake_closed {
    const char *root;
    const tc_lake_compact_options *o;
    int64_t today;
    int min_age;
    int failed;
} tc_lake_closed;

static tc_err tc_lake_compact_if_closed(void *ctx, const char *dir, int64_t day)
{
    tc_lake_closed *c = ctx;
    int y;
    unsigned m, d;

    (void)dir;
    if (day < 0 || c->today - day < c->min_age)
        return TC_OK;
    tc_time_civil_from_days(day, &y, &m, &d);
    c->failed |= tc_lake_compact_one(c->root, y, (int)m, (int)d, c->o);
    return TC_OK;
}

/* Every day directory of the lake at least min_age_days old. */
static int tc_lake_compact_closed(const char *root, const tc_lake_compact_options *o)
{
    tc_lake_closed c = {
        .root = root,
        .o = o,
        .today = tc_time_day_of(o->now_us ? o->now_us : tc_time_now_us()),
        .min_age = o->min_age_days < 1 ? 1 : o->min_age_days,
    };

    tc_lake_walk_days(root, tc_lake_compact_if_closed, &c);
    return c.failed;
}

enum {
    TC_LAKE_OPT_DAY = 256,
    TC_LAKE_OPT_ALL,
    TC_LAKE_OPT_AGE,
    TC_LAKE_OPT_DRY,
    TC_LAKE_OPT_FORCE,
    TC_LAKE_OPT_TARGET,
    TC_LAKE_OPT_TO,
    TC_LAKE_OPT_CHECKSUM,
    TC_LAKE_OPT_INTERVAL,
    TC_LAKE_OPT_LISTEN,
    TC_LAKE_OPT_MAX_MB
};

int tc_cmd_lake(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"day", required_argument, NULL, TC_LAKE_OPT_DAY},
        {"all-closed", no_argument, NULL, TC_LAKE_OPT_ALL},
        {"min-age-days", required_argument, NULL, TC_LAKE_OPT_AGE},
        {"dry-run", no_argument, NULL, TC_LAKE_OPT_DRY},
        {"force", no_argument, NULL, TC_LAKE_OPT_FORCE},
        {"target-mb", required_argument, NULL, TC_LAKE_OPT_TARGET},
        {"to", required_argument, NULL, TC_LAKE_OPT_TO},
        {"checksum", no_argument, NULL, TC_LAKE_OPT_CHECKSUM},
        {"interval", required_argument, NULL, TC_LAKE_OPT_INTERVAL},
        {"listen", required_argument, NULL, TC_LAKE_OPT_LISTEN},
        {"max-mb-per-s", required_argument, NULL, TC_LAKE_OPT_MAX_MB},
        {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "lake",
        .help =
            "usage: thermocline lake ls [--json] | verify [options]\n"
            "       thermocline lake compact (--day YYYY-MM-DD | --all-closed) [--min-age-days N]"
            "\n                [--dry-run] [--force] [--target-mb N] [options]\n"
            "       thermocline lake replicate --to DIR [--checksum] [--max-mb-per-s N]\n"
            "                [--interval S [--listen ADDR]] [options]\n\n"
            "  ls       days of the lake with their files, rows and bytes\n"
            "  verify   check every file: footer, page headers, pages decoded, Kafka offsets\n"
            "           against the file name (or a compacted file's metadata) and row count,\n"
            "           event times inside the day\n"
            "  compact  merge a closed day's files (at least --min-age-days old, default 2;\n"
            "           today never without --force) into files of up to --target-mb (512),\n"
            "           swapped in atomically; --all-closed: every closed day\n"
            "  replicate  copy new and changed files and the progress to DIR (another disk),\n"
            "           each copy verified by CRC-32C read back from the disk; resumable; files\n"
            "           the lake no longer has are removed from DIR; --checksum compares every\n"
            "           file by checksum; --max-mb-per-s caps the bandwidth; --interval S\n"
            "           repeats every S seconds, serving the lag on /metrics at --listen ADDR\n\n"
            "The lake root is lake.dir (THERMOCLINE_LAKE_DIR; `scripts/dev-services env`\n"
            "sets it to the dev services' lake, the demo's).\n" TC_CLI_COMMON_HELP,
        .shortopts = "j",
        .longopts = longopts,
        .min_args = 1,
        .max_args = 1,
    };
    tc_lake_replicate_cli_options ro = {0};
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_lake_walk w = {0};
    tc_lake_compact_options co;
    const char *what, *day = NULL;
    tc_config *cfg;
    int opt, all_closed = 0, rc;

    tc_lake_compact_options_default(&co);

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1) {
        if (opt == 'j')
            w.json = 1;
        else if (opt == TC_LAKE_OPT_DAY)
            day = optarg;
        else if (opt == TC_LAKE_OPT_ALL)
            all_closed = 1;
        else if (opt == TC_LAKE_OPT_AGE)
            co.min_age_days = (int)tc_cli_parse_long("--min-age-days", optarg, 1, 100000);
        else if (opt == TC_LAKE_OPT_DRY)
            co.dry_run = 1;
        else if (opt == TC_LAKE_OPT_FORCE)
            co.force = 1;
        else if (opt == TC_LAKE_OPT_TARGET)
            co.target_bytes = (uint64_t)tc_cli_parse_long("--target-mb", optarg, 1, 1 << 20) << 20;
        else if (opt == TC_LAKE_OPT_TO)
            ro.to = optarg;
        else if (opt == TC_LAKE_OPT_CHECKSUM)
            ro.checksum = 1;
        else if (opt == TC_LAKE_OPT_INTERVAL)
            ro.interval_s = tc_cli_parse_long("--interval", optarg, 1, 7 * 86400);
        else if (opt == TC_LAKE_OPT_LISTEN)
            ro.listen = optarg;
        else if (opt == TC_LAKE_OPT_MAX_MB)
            ro.max_mb_per_s = tc_cli_parse_double("--max-mb-per-s", optarg, 0.001, 1e6);
    }
    what = argv[tc_cli_args(&ps)];
    if (strcmp(what, "ls") != 0 && strcmp(what, "verify") != 0 && strcmp(what, "compact") != 0 &&
        strcmp(what, "replicate") != 0)
        tc_cli_usage_error(&spec, "unknown subcommand \"%s\"", what);
    if (!strcmp(what, "compact") && !day == !all_closed)
        tc_cli_usage_error(&spec, "compact wants one of --day and --all-closed");
    if (!strcmp(what, "replicate") && !ro.to)
        tc_cli_usage_error(&spec, "replicate wants --to DIR");
    if (strcmp(what, "replicate") != 0 &&
        (ro.to || ro.checksum || ro.interval_s || ro.listen || ro.max_mb_per_s > 0))
        tc_cli_usage_error(&spec, "--to, --checksum, --interval, --listen and --max-mb-per-s are "
                                  "options of replicate");
    cfg = tc_cli_config(&common);
    if (!cfg->lake_dir || !*cfg->lake_dir) {
        fprintf(stderr, "thermocline lake: lake.dir is not set: set THERMOCLINE_LAKE_DIR or --set "
                        "lake.dir=DIR (with the dev services: eval \"$(scripts/dev-services "
                        "env)\")\n");
        tc_config_destroy(cfg);
        return TC_EXIT_USAGE;
    }
    if (!strcmp(what, "replicate")) {
        rc = tc_lake_replicate_cli(cfg->lake_dir, &ro);
        tc_config_destroy(cfg);
        return rc;
    }
    if (!strcmp(what, "compact")) {
        int y, m, d;
        char tail_c;
        if (day && (sscanf(day, "%4d-%2d-%2d%c", &y, &m, &d, &tail_c) != 3)) {
            fprintf(stderr, "thermocline lake compact: --day wants YYYY-MM-DD\n");
            tc_config_destroy(cfg);
            return TC_EXIT_USAGE;
        }
        rc = day ? tc_lake_compact_one(cfg->lake_dir, y, m, d, &co)
                 : tc_lake_compact_closed(cfg->lake_dir, &co);
        tc_config_destroy(cfg);
        return rc ? TC_EXIT_FAILURE : 0;
    }
    w.verify = !strcmp(what, "verify");
    if (w.json)
        printf("{\"days\":[");
    else if (!w.verify)
        printf("%-12s %8s %14s %14s\n", "day", "files", "rows", "bytes");
    tc_lake_walk_days(cfg->lake_dir, tc_lake_list_day, &w);
    if (w.json)
        printf("],\"files\":%" PRIu64 ",\"rows\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"bad\":%" PRIu64
               ",\"temporary\":%" PRIu64 "}\n",
               w.files, w.rows, w.bytes, w.bad, w.temporary);
    else if (w.verify)
        printf("%" PRIu64 " files, %" PRIu64 " rows, %" PRIu64 " bad, %" PRIu64 " temporary\n",
               w.files + w.bad, w.rows, w.bad, w.temporary);
    else
        printf("%-12s %8" PRIu64 " %14" PRIu64 " %14" PRIu64 "\n", "total", w.files, w.rows,
               w.bytes);
    tc_config_destroy(cfg);
    return w.bad ? TC_EXIT_FAILURE : 0;
}
