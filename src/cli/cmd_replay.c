/*
 * cmd_replay.c -- `thermocline replay`: process a range of the topic again into both stores.
 *
 * Each sink keeps its own mark (design.md, "Exactly once across two stores"): PostgreSQL the next
 * offset per partition in ingest_offsets, committed with the rows; the lake a progress file per
 * partition, written after its files. A replay moves those marks back on purpose and consumes the
 * range again through the normal pipeline, so the rows it writes are exactly what `run` writes.
 *
 * The range. Per partition, the store replays [from, to): --from-offset P:O (or --from-time T:
 * Kafka's offsets-for-times, i.e. the first message whose Kafka timestamp is at or after T) up to
 * --to-offset P:O / --to-time T (exclusive) or, without one, the end of the partition when the
 * replay starts. `from` is clamped to the store's mark (a replay never skips what was never
 * stored) and refused below what Kafka still retains; `to` is clamped to the end.
 *
 * The store. Before consuming, the range's readings are deleted and the rollups and latest rows
 * they fed are recomputed from what remains, in one transaction (store/replay.h). The mark in
 * ingest_offsets is never lowered: the pipeline is told (process/window.h) to write rows of
 * [from, to) and of offsets at or past the old mark, to skip [to, old mark) -- rows above the range
 * are kept, never duplicated -- and to move the mark only past the old one. Dead letters of the
 * range are kept while it is consumed and settled afterwards: one per offset still refused (the
 * oldest row, so ids and redrive marks survive, with the newest reason if it changed), none for an
 * offset that is a reading now. So rows are replaced, dead letters replaced or confirmed.
 *
 * The lake. Files are whole commits and the progress is a single high-water mark, so the lake
 * replays from the start of the first commit that reaches `from` to where the store's mark (or its
 * own, if ahead) is: lake/replay.h lowers the progress and the sink's crash recovery removes the
 * files from there on. The replay writes the lake's part as one commit -- lake.roll_bytes and
 * lake.roll_seconds are lifted, and batches close on size only (pipeline.batch_timeout_ms lifted)
 * -- so its files are named by the range and their bytes follow from the messages alone: replaying
 * the same range again writes the same files, byte for byte.
 *
 * Exclusion. A replay refuses to start while the consumer group has members (a `run` of the group
 * is active): they would own partitions and marks. The replay itself consumes as a member of the
 * group, so a `run` started meanwhile takes partitions away from it, which makes the replay fail
 * (it says so) rather than finish half done. Two replays of one (schema, group, topic) are kept
 * apart by a PostgreSQL advisory lock held for the whole replay.
 *
 * Crashes. Every step can be repeated: the reset deletes what is there (the second time, only
 * what the interrupted replay had written); the lake rewinds to the same start (a range that was
 * already rewound has no file reaching `from` and resumes at its lowered progress); settling is
 * idempotent. Because the store's mark never moved back, a `run` started after an interrupted
 * replay cannot store a row twice; the range may lack rows until the replay is run again, which is
 * what the non-zero exit asks for.
 *
 * Validation runs with today's clock: a reading older than limits.max_age_s now becomes a dead
 * letter on replay (raise it with --set for old ranges). Message gaps (transaction markers,
 * compaction) are not supported: a range must end on a message.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "ingest/lookup.h"
#include "lake/replay.h"
#include "process/pipeline.h"
#include "store/replay.h"

/* Partitions a topic may have, for one replay. */
#define TC_REPLAY_PARTS_MAX 1024
/* --from-offset, --to-offset, --skip-offset and --partition options per invocation. */
#define TC_REPLAY_OPTS_MAX 64
/* While replaying, a batch closes on size and the lake commits once, at the end. */
#define TC_REPLAY_NEVER_MS 1000000000LL
#define TC_REPLAY_NEVER_S  1000000000LL

typedef struct tc_replay_po {
    int32_t partition;
    int64_t offset;
} tc_replay_po;

typedef struct tc_replay_cli {
    tc_replay_po from[TC_REPLAY_OPTS_MAX], to[TC_REPLAY_OPTS_MAX], skip[TC_REPLAY_OPTS_MAX];
    size_t nfrom, nto, nskip;
    int32_t only[TC_REPLAY_OPTS_MAX];
    size_t nonly;
    int64_t from_ms, to_ms; /* -1: not given */
    int dry_run;
} tc_replay_cli;

/* One partition's plan. */
typedef struct tc_replay_part {
    tc_pipeline_window w;
    int64_t low, high;
    tc_lake_rewind lake;
    int64_t readings_before, dead_before, readings_after, dead_after, deleted, settled;
} tc_replay_part;

static const struct option tc_replay_longopts[] = {
    {"from-offset", required_argument, NULL, 'f'}, {"from-time", required_argument, NULL, 'F'},
    {"to-offset", required_argument, NULL, 't'},   {"to-time", required_argument, NULL, 'T'},
    {"partition", required_argument, NULL, 'p'},   {"skip-offset", required_argument, NULL, 'k'},
    {"dry-run", no_argument, NULL, 'n'},           {NULL, 0, NULL, 0}};

static const tc_cli_spec tc_replay_spec = {
    .name = "replay",
    .help =
        "usage: thermocline replay (--from-offset P:O ... | --from-time T) [--to-offset P:O "
        "... | --to-time T]\n"
        "                          [--partition P ...] [--skip-offset P:O ...] [--dry-run] "
        "[options]\n\n"
        "Process a range of the topic again into PostgreSQL and the lake: the range's\n"
        "readings are replaced, its dead letters replaced or confirmed, the lake's files from\n"
        "the first one that reaches the range rewritten. Running the same replay twice\n"
        "changes nothing; an interrupted replay is completed by running it again. Refused\n"
        "while the consumer group has members (stop `thermocline run` first).\n\n"
        "  --from-offset P:O   replay partition P from offset O (repeatable)\n"
        "  --from-time T       replay every partition (or those of --partition) from the first\n"
        "                      message whose Kafka timestamp is at or after T (RFC 3339 or\n"
        "                      epoch milliseconds)\n"
        "  --to-offset P:O     end of partition P's range, exclusive (default: its end now)\n"
        "  --to-time T         end of every range: the first message at or after T\n"
        "  --partition P       with --from-time: only partition P (repeatable)\n"
        "  --skip-offset P:O   dead-letter the message at P:O without decoding it (a poisoned\n"
        "                      message; it must lie in the range)\n"
        "  -n, --dry-run       print the plan and change nothing\n" TC_CLI_COMMON_HELP,
    .shortopts = "n",
    .longopts = tc_replay_longopts,
};

static void tc_replay_parse_po(const char *what, const char *arg, tc_replay_po *out, size_t *n)
{
    char buf[64];
    const char *colon = strchr(arg, ':');

    if (!colon || (size_t)(colon - arg) >= sizeof(buf)) {
        fprintf(stderr, "thermocline replay: %s expects PARTITION:OFFSET, got \"%s\"\n", what, arg);
        exit(TC_EXIT_USAGE);
    }
    if (*n >= TC_REPLAY_OPTS_MAX) {
        fprintf(stderr, "thermocline replay: too many %s options (at most %d)\n", what,
                TC_REPLAY_OPTS_MAX);
        exit(TC_EXIT_USAGE);
    }
    memcpy(buf, arg, (size_t)(colon - arg));
    buf[colon - arg] = '\0';
    out[*n].partition = (int32_t)tc_cli_parse_long(what, buf, 0, INT32_MAX);
    out[*n].offset = tc_cli_parse_long(what, colon + 1, 0, INT64_MAX);
    (*n)++;
}

static int64_t tc_replay_parse_time(const char *what, const char *arg)
{
    int64_t us;
    char *end;
    long long ms = strtoll(arg, &end, 10);

    if (end != arg && *end == '\0' && ms >= 0)
        return ms;
    if (tc_time_parse_rfc3339(arg, strlen(arg), &us) == TC_OK)
        return us / 1000;
    fprintf(stderr,
            "thermocline replay: %s expects an RFC 3339 time or epoch milliseconds, got "
            "\"%s\"\n",
            what, arg);
    exit(TC_EXIT_USAGE);
}

static void tc_replay_options(tc_replay_cli *o, tc_cli_common *common, int argc, char **argv)
{
    tc_cli_parser ps;
    int opt;

    o->from_ms = o->to_ms = -1;
    tc_cli_begin(&ps, &tc_replay_spec, common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1) {
        switch (opt) {
        case 'f':
            tc_replay_parse_po("--from-offset", optarg, o->from, &o->nfrom);
            break;
        case 'F':
            o->from_ms = tc_replay_parse_time("--from-time", optarg);
            break;
        case 't':
            tc_replay_parse_po("--to-offset", optarg, o->to, &o->nto);
            break;
        case 'T':
            o->to_ms = tc_replay_parse_time("--to-time", optarg);
            break;
        case 'p':
            if (o->nonly >= TC_REPLAY_OPTS_MAX)
                tc_cli_usage_error(&tc_replay_spec, "too many --partition options (at most %d)",
                                   TC_REPLAY_OPTS_MAX);
            o->only[o->nonly++] = (int32_t)tc_cli_parse_long("--partition", optarg, 0, INT32_MAX);
            break;
        case 'k':
            tc_replay_parse_po("--skip-offset", optarg, o->skip, &o->nskip);
            break;
        case 'n':
            o->dry_run = 1;
            break;
        default:
            break;
        }
    }
    tc_cli_args(&ps);
    if ((o->nfrom > 0) == (o->from_ms >= 0) || (o->nto > 0 && o->to_ms >= 0) ||
        (o->nonly > 0 && o->nfrom > 0))
        tc_cli_usage_error(&tc_replay_spec,
                           "give either --from-offset or --from-time (with --partition), and at "
                           "most one of --to-offset and --to-time");
}

/* The partitions to replay, with their Kafka bounds and requested ranges. */
static tc_err tc_replay_ranges(const tc_config *cfg, const tc_replay_cli *o, tc_replay_part *rp,
                               size_t *nrp, char *errstr, size_t errstr_size)
{
    static tc_kafka_bounds b[TC_REPLAY_PARTS_MAX];
    int32_t parts[TC_REPLAY_PARTS_MAX];
    int64_t offs[TC_REPLAY_PARTS_MAX];
    size_t nb = 0, n = 0;
    tc_err err = tc_kafka_lookup_bounds(cfg, cfg->kafka_topic, b, TC_REPLAY_PARTS_MAX, &nb, errstr,
                                        errstr_size);

    if (err != TC_OK)
        return err;
    for (size_t i = 0; i < nb; i++) {
        int want = o->from_ms >= 0 && o->nonly == 0;
        int64_t from = -1;
        for (size_t k = 0; k < o->nonly; k++)
            want |= o->only[k] == b[i].partition;
        for (size_t k = 0; k < o->nfrom; k++) {
            if (o->from[k].partition == b[i].partition) {
                want = 1;
                from = o->from[k].offset;
            }
        }
        if (!want)
            continue;
        memset(&rp[n], 0, sizeof(rp[n]));
        rp[n].w.partition = b[i].partition;
        rp[n].w.from = from;
        rp[n].w.to = b[i].high;
        rp[n].low = b[i].low;
        rp[n].high = b[i].high;
        for (size_t k = 0; k < o->nto; k++) {
            if (o->to[k].partition == b[i].partition)
                rp[n].w.to = o->to[k].offset;
        }
        for (size_t k = 0; k < o->nskip; k++) {
            if (o->skip[k].partition == b[i].partition && rp[n].w.nskip < TC_WINDOW_SKIPS_MAX)
                rp[n].w.skip[rp[n].w.nskip++] = o->skip[k].offset;
        }
        parts[n++] = b[i].partition;
    }
    /* Every partition named must exist. */
    for (size_t k = 0; k < o->nfrom + o->nonly + o->nto + o->nskip; k++) {
        int32_t want = k < o->nfrom              ? o->from[k].partition
                       : k < o->nfrom + o->nonly ? o->only[k - o->nfrom]
                       : k < o->nfrom + o->nonly + o->nto
                           ? o->to[k - o->nfrom - o->nonly].partition
                           : o->skip[k - o->nfrom - o->nonly - o->nto].partition;
        int found = 0;
        for (size_t i = 0; i < n; i++)
            found |= rp[i].w.partition == want;
        if (!found)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "partition %d of topic \"%s\" is not part of the replay (the topic "
                              "has %zu partitions; --to-offset and --skip-offset need a range)",
                              want, cfg->kafka_topic, nb);
    }
    if (o->from_ms >= 0 && n) {
        err = tc_kafka_lookup_times(cfg, cfg->kafka_topic, parts, n, o->from_ms, offs, errstr,
                                    errstr_size);
        for (size_t i = 0; err == TC_OK && i < n; i++)
            rp[i].w.from = offs[i];
    }
    if (o->to_ms >= 0 && n && err == TC_OK) {
        err = tc_kafka_lookup_times(cfg, cfg->kafka_topic, parts, n, o->to_ms, offs, errstr,
                                    errstr_size);
        for (size_t i = 0; err == TC_OK && i < n; i++)
            rp[i].w.to = offs[i];
    }
    *nrp = n;
    return err;
}

/* Clamp one partition's range to the store's mark and Kafka's bounds, and plan its lake part. */
static tc_err tc_replay_plan(const tc_config *cfg, tc_replay_part *r, int64_t store_mark,
                             char *errstr, size_t errstr_size)
{
    tc_pipeline_window *w = &r->w;
    tc_err err;

    w->store_mark = store_mark;
    if (store_mark < 0 && w->from > r->low) {
        tc_log_info("replay",
                    "partition %d: the store holds nothing of it yet; replaying from offset %lld, "
                    "the first Kafka retains",
                    w->partition, (long long)r->low);
        w->from = r->low;
    } else if (store_mark >= 0 && w->from > store_mark) {
        tc_log_info("replay", "partition %d: the store's mark is %lld; replaying from there",
                    w->partition, (long long)store_mark);
        w->from = store_mark;
    }
    if (w->to > r->high)
        w->to = r->high;
    if (w->to < w->from)
        w->to = w->from;
    if (w->from < r->low && w->to > w->from)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "cannot replay partition %d of topic \"%s\" from offset %lld: Kafka only "
                          "retains offsets %lld and up",
                          w->partition, cfg->kafka_topic, (long long)w->from, (long long)r->low);
    for (size_t k = 0; k < w->nskip; k++) {
        if (w->skip[k] < w->from || w->skip[k] >= w->to)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "--skip-offset %d:%lld lies outside the replayed range %lld-%lld",
                              w->partition, (long long)w->skip[k], (long long)w->from,
                              (long long)w->to);
    }
    w->end = w->to > store_mark ? w->to : store_mark;
    r->lake.progress = r->lake.from = -1;
    if (cfg->lake_dir && *cfg->lake_dir) {
        err = tc_lake_rewind_partition(cfg->lake_dir, cfg->kafka_topic, w->partition, w->from, 0,
                                       &r->lake, errstr, errstr_size);
        if (err != TC_OK)
            return err;
        if (r->lake.from >= 0 && r->lake.from < r->low && r->lake.from < r->lake.progress)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "cannot replay partition %d of topic \"%s\" into the lake: its file "
                              "that reaches offset %lld starts at %lld, and Kafka only retains "
                              "offsets %lld and up",
                              w->partition, cfg->kafka_topic, (long long)w->from,
                              (long long)r->lake.from, (long long)r->low);
        if (r->lake.progress > w->end)
            w->end = r->lake.progress;
    }
    if (w->end > r->high)
        w->end = r->high;
    return TC_OK;
}

static void tc_replay_print_plan(const tc_config *cfg, const tc_replay_part *r, size_t n,
                                 int dry_run)
{
    for (size_t i = 0; i < n; i++) {
        const tc_pipeline_window *w = &r[i].w;
        printf("partition %d: store offsets %lld-%lld (%lld readings, %lld dead letters)",
               w->partition, (long long)w->from, (long long)w->to, (long long)r[i].readings_before,
               (long long)r[i].dead_before);
        if (cfg->lake_dir && *cfg->lake_dir) {
            if (r[i].lake.from >= 0)
                printf(", lake offsets %lld-%lld (%zu files, %llu rows)", (long long)r[i].lake.from,
                       (long long)w->end, r[i].lake.files, (unsigned long long)r[i].lake.rows);
            else
                printf(", lake from the first offset consumed");
        }
        printf("%s\n", dry_run ? " [dry run]" : "");
    }
}

/* Record the replay in the audit log: each partition's offsets, and the readings stored. */
static int tc_replay_audit(const tc_config *cfg, const tc_replay_part *parts, size_t n,
                           const tc_pipeline_stats *st, const char *error, int64_t started)
{
    tc_jbuf params;
    int rc;

    tc_jbuf_init(&params, 64 * 1024);
    tc_jbuf_obj_begin(&params);
    tc_jbuf_key(&params, "group");
    tc_jbuf_str(&params, cfg->kafka_group);
    tc_jbuf_key(&params, "partitions");
    tc_jbuf_arr_begin(&params);
    for (size_t i = 0; i < n; i++) {
        tc_jbuf_obj_begin(&params);
        tc_jbuf_key(&params, "partition");
        tc_jbuf_int(&params, parts[i].w.partition);
        tc_jbuf_key(&params, "from");
        tc_jbuf_int(&params, parts[i].w.from);
        tc_jbuf_key(&params, "to");
        tc_jbuf_int(&params, parts[i].w.to);
        tc_jbuf_key(&params, "deleted");
        tc_jbuf_int(&params, parts[i].deleted);
        tc_jbuf_obj_end(&params);
    }
    tc_jbuf_arr_end(&params);
    tc_jbuf_obj_end(&params);
    rc = tc_cli_audit(cfg, "replay", cfg->kafka_topic, &params, (int64_t)st->stored, error != NULL,
                      error, started);
    tc_jbuf_free(&params);
    return rc;
}

int tc_cmd_replay(int argc, char **argv)
{
    static tc_replay_part parts[TC_REPLAY_PARTS_MAX];
    static tc_pipeline_window windows[TC_REPLAY_PARTS_MAX];
    int32_t ids[TC_REPLAY_PARTS_MAX];
    int64_t marks[TC_REPLAY_PARTS_MAX], rollup_marks[TC_REPLAY_PARTS_MAX];
    char errstr[TC_ERRSTR_MAX], who[TC_LOOKUP_MEMBERS_TEXT_MAX];
    tc_replay_cli o = {0};
    tc_cli_common common = {0};
    tc_store_options so;
    tc_store *store = NULL;
    tc_pipeline *p = NULL;
    tc_pipeline_stats st = {0};
    tc_config *cfg;
    size_t n = 0, members = 0;
    int held = 0, rc = TC_EXIT_FAILURE, changed = 0;
    int64_t started = tc_time_now_us();
    tc_err err;

    tc_replay_options(&o, &common, argc, argv);
    cfg = tc_cli_config(&common);
    tc_cli_install_signals();
    /* One lake commit and size-closed batches: the files follow from the messages alone. */
    cfg->batch_timeout_ms = TC_REPLAY_NEVER_MS;
    cfg->lake_roll_bytes = INT64_MAX;
    cfg->lake_roll_seconds = TC_REPLAY_NEVER_S;

    err = tc_replay_ranges(cfg, &o, parts, &n, errstr, sizeof(errstr));
    if (err == TC_OK)
        err = tc_kafka_lookup_group(cfg, cfg->kafka_group, &members, who, sizeof(who), errstr,
                                    sizeof(errstr));
    if (err == TC_OK && members > 0) {
        err = tc_err_set(TC_ERR_INVALID, errstr, sizeof(errstr),
                         "consumer group \"%s\" has %zu active member%s (%s): stop `thermocline "
                         "run` of the group before replaying",
                         cfg->kafka_group, members, members == 1 ? "" : "s", who);
    }
    if (err != TC_OK)
        goto out;
    tc_store_options_for_owner(&so, cfg); /* deletes and rewrites a range: the owner */
    store = tc_store_new(&so, errstr, sizeof(errstr));
    if (!store) {
        err = TC_ERR_CONFIG;
        goto out;
    }
    err = tc_store_replay_lock(store, &held, errstr, sizeof(errstr));
    if (err == TC_OK && !held)
        err = tc_err_set(TC_ERR_INVALID, errstr, sizeof(errstr),
                         "another replay of group \"%s\" on topic \"%s\" is running",
                         cfg->kafka_group, cfg->kafka_topic);
    for (size_t i = 0; i < n; i++)
        ids[i] = parts[i].w.partition;
    if (err == TC_OK)
        err = tc_store_load_offsets(store, ids, n, marks, errstr, sizeof(errstr));
    if (err == TC_OK)
        err = tc_store_load_rollup_offsets(store, ids, n, rollup_marks, errstr, sizeof(errstr));
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        /* Rows the rollups do not have yet (a run that crashed between two of their flushes) are
         * replayed too: settling recomputes the range's buckets and moves the rollups' mark to the
         * store's, which is exact only if nothing below the range is missing from them. */
        if (rollup_marks[i] >= 0 && rollup_marks[i] < parts[i].w.from) {
            tc_log_info("replay", "partition %d: the rollups' mark is %lld; replaying from there",
                        ids[i], (long long)rollup_marks[i]);
            parts[i].w.from = rollup_marks[i];
        }
        err = tc_replay_plan(cfg, &parts[i], marks[i], errstr, sizeof(errstr));
        if (err == TC_OK)
            err = tc_store_replay_count(store, ids[i], parts[i].w.from, parts[i].w.to,
                                        &parts[i].readings_before, &parts[i].dead_before, errstr,
                                        sizeof(errstr));
    }
    if (err != TC_OK)
        goto out;
    tc_replay_print_plan(cfg, parts, n, o.dry_run);
    if (o.dry_run) {
        rc = 0;
        goto out;
    }

    /* Reset both sinks, the store first: each step can be repeated after a crash. */
    changed = 1;
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        err = tc_store_replay_reset(store, ids[i], parts[i].w.from, parts[i].w.to,
                                    &parts[i].deleted, errstr, sizeof(errstr));
        if (err == TC_OK && cfg->lake_dir && *cfg->lake_dir)
            err = tc_lake_rewind_partition(cfg->lake_dir, cfg->kafka_topic, ids[i], parts[i].w.from,
                                           1, &parts[i].lake, errstr, sizeof(errstr));
        windows[i] = parts[i].w;
        tc_log_info("replay", "partition %d: deleted %lld readings of offsets %lld-%lld", ids[i],
                    (long long)parts[i].deleted, (long long)parts[i].w.from,
                    (long long)parts[i].w.to);
    }
    if (err != TC_OK)
        goto out;

    p = tc_pipeline_new(cfg, errstr, sizeof(errstr));
    if (!p) {
        err = TC_ERR_CONFIG;
        goto out;
    }
    err = tc_pipeline_set_windows(p, windows, n, errstr, sizeof(errstr));
    if (err == TC_OK)
        err = tc_pipeline_run(p, 0, &tc_cli_stop, errstr, sizeof(errstr));
    tc_pipeline_get_stats(p, &st);
    tc_pipeline_destroy(p);
    p = NULL;
    if (err == TC_OK && tc_cli_stop)
        err = tc_err_set(TC_ERR_STOPPED, errstr, sizeof(errstr), "interrupted");
    if (err != TC_OK)
        goto out;

    for (size_t i = 0; err == TC_OK && i < n; i++) {
        err = tc_store_replay_settle(store, ids[i], parts[i].w.from, parts[i].w.to,
                                     &parts[i].settled, errstr, sizeof(errstr));
        if (err == TC_OK)
            err = tc_store_replay_count(store, ids[i], parts[i].w.from, parts[i].w.to,
                                        &parts[i].readings_after, &parts[i].dead_after, errstr,
                                        sizeof(errstr));
        if (err == TC_OK)
            printf("partition %d: replayed offsets %lld-%lld: readings %lld -> %lld, dead letters "
                   "%lld -> %lld\n",
                   ids[i], (long long)parts[i].w.from, (long long)parts[i].w.to,
                   (long long)parts[i].readings_before, (long long)parts[i].readings_after,
                   (long long)parts[i].dead_before, (long long)parts[i].dead_after);
    }
    if (err == TC_OK) {
        tc_log_info("replay", "done: consumed %llu, stored %llu, dead letters %llu, batches %llu",
                    (unsigned long long)st.consumed, (unsigned long long)st.stored,
                    (unsigned long long)st.dead_letters, (unsigned long long)st.batches);
        rc = 0;
    }
out:
    if (err != TC_OK)
        tc_log_error("replay", "%s%s", errstr,
                     p || err == TC_ERR_STOPPED ? "; run the same replay again to complete it"
                                                : "");
    if (changed && tc_replay_audit(cfg, parts, n, &st, err != TC_OK ? errstr : NULL, started))
        rc = TC_EXIT_FAILURE;
    tc_pipeline_destroy(p);
    tc_store_destroy(store);
    tc_config_destroy(cfg);
    return rc;
}
