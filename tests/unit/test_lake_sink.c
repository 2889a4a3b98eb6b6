/*
 * test_lake_sink.c -- the lake sink, compaction and replay on a temporary lake, without Kafka:
 * batches written by the sink become real Parquet files under the layout's names, with the footer
 * keys readers rely on; compaction merges a day's files into one that recovery leaves alone and a
 * rewind into it refuses.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/batch.h"
#include "core/path.h"
#include "core/timeutil.h"
#include "lake/compact.h"
#include "lake/layout.h"
#include "lake/parquet_read.h"
#include "lake/replay.h"
#include "lake/sink.h"

/* 2026-11-28T12:00:00Z: a closed day, far from today's. */
#define NOON_US (INT64_C(1795867200) * 1000000)

typedef struct fixture {
    char root[64];
    tc_lake *lake;
    tc_batch *b;
} fixture;

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    int rc;

    tc_lake_destroy(f->lake);
    tc_batch_destroy(f->b);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
    rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char errstr[TC_ERRSTR_MAX];
    tc_lake_options o = {.roll_bytes = 1 << 20, .roll_us = 1000000, .codec = TC_PQ_SNAPPY};
    int32_t parts[2] = {0, 1};
    int64_t next[2];

    if (!f)
        return -1;
    snprintf(f->root, sizeof(f->root), "/tmp/tc-test-lake-sink-XXXXXX");
    *state = f; /* a failing setup undoes itself through teardown (cmocka will not call it) */
    if (!mkdtemp(f->root)) {
        free(f);
        return -1;
    }
    o.root = f->root;
    o.topic = "t";
    f->lake = tc_lake_new(&o, errstr, sizeof(errstr));
    f->b = tc_batch_new(64, 0);
    if (!f->lake || !f->b ||
        tc_lake_open_partitions(f->lake, parts, 2, next, errstr, sizeof(errstr)) != TC_OK) {
        teardown(state);
        return -1;
    }
    return 0;
}

/* Append readings of partition p at offsets [first, last] (one second apart from noon), then
 * commit. */
static void write_commit(fixture *f, int32_t p, int64_t first, int64_t last)
{
    char errstr[TC_ERRSTR_MAX];

    tc_batch_reset(f->b);
    for (int64_t o = first; o <= last; o++) {
        size_t i = f->b->n;
        assert_int_equal(tc_batch_row_begin(f->b), TC_OK);
        f->b->time_us[i] = NOON_US + o * 1000000;
        f->b->device_id[i] = (tc_slice){"dev-1", 5};
        f->b->metric[TC_M_TEMPERATURE][i] = 20.5;
        f->b->present[TC_M_TEMPERATURE][i] = 1;
        f->b->partition[i] = p;
        f->b->offset[i] = o;
        tc_batch_row_commit(f->b);
    }
    if (tc_lake_append(f->lake, f->b, NULL, errstr, sizeof(errstr)) != TC_OK ||
        tc_lake_commit_due(f->lake, 0, 1, errstr, sizeof(errstr)) != TC_OK)
        fail_msg("write: %s", errstr);
}

/* The day directory's file names of one kind, counted. */
static size_t count_kind(const fixture *f, tc_lake_file_kind kind)
{
    char dir[TC_PATH_MAX];
    struct dirent *de;
    tc_lake_name nm;
    size_t n = 0;
    DIR *d;

    tc_lake_day_dir(dir, sizeof(dir), f->root, tc_time_day_of(NOON_US));
    d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        n += tc_lake_name_parse(de->d_name, &nm) == kind;
    closedir(d);
    return n;
}

static void test_commits_are_named_files_with_their_footer(void **state)
{
    fixture *f = *state;
    char dir[TC_PATH_MAX], path[TC_PATH_MAX], name[TC_LAKE_NAME_MAX], errstr[TC_ERRSTR_MAX];
    char v[64];
    tc_parquet_info *info = NULL;
    int64_t next;

    write_commit(f, 0, 0, 9);
    tc_lake_day_dir(dir, sizeof(dir), f->root, tc_time_day_of(NOON_US));
    tc_lake_name_part(name, sizeof(name), "t", 0, 0, 9);
    tc_path_fmt(path, sizeof(path), "%s/%s", dir, name);
    if (tc_parquet_verify_path(path, TC_PQ_VERIFY_DEEP, &info, errstr, sizeof(errstr)) != TC_OK)
        fail_msg("%s: %s", path, errstr);
    assert_int_equal(info->num_rows, 10);
    assert_string_equal(tc_lake_kv_get(info, TC_LAKE_KV_TOPIC, v, sizeof(v)), "t");
    assert_string_equal(tc_lake_kv_get(info, TC_LAKE_KV_PARTITION, v, sizeof(v)), "0");
    assert_string_equal(tc_lake_kv_get(info, TC_LAKE_KV_FIRST_OFFSET, v, sizeof(v)), "0");
    assert_string_equal(tc_lake_kv_get(info, TC_LAKE_KV_LAST_OFFSET, v, sizeof(v)), "9");
    tc_parquet_info_free(info);
    assert_int_equal(tc_lake_progress_read(f->root, "t", 0, &next, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(next, 10);
    assert_int_equal(tc_lake_durable(f->lake, 0), 10);
    assert_int_equal(count_kind(f, TC_LAKE_FILE_OPEN), 0);
}

static void test_compaction_then_recovery_and_rewind(void **state)
{
    fixture *f = *state;
    char errstr[TC_ERRSTR_MAX] = "";
    tc_lake_compact_options o;
    tc_lake_compact_result res;
    tc_lake_rewind rw;
    int32_t parts[2] = {0, 1};
    int64_t next[2];
    int y;
    unsigned m, d;

    write_commit(f, 0, 0, 9);
    write_commit(f, 1, 0, 4);
    write_commit(f, 0, 10, 19);
    assert_int_equal(count_kind(f, TC_LAKE_FILE_PART), 3);

    tc_lake_compact_options_default(&o);
    o.force = 1;
    tc_time_civil_from_days(tc_time_day_of(NOON_US), &y, &m, &d);
    if (tc_lake_compact_day(f->root, y, (int)m, (int)d, &o, &res, errstr, sizeof(errstr)) != TC_OK)
        fail_msg("compact: %s", errstr);
    assert_int_equal(res.compacted, 1);
    assert_int_equal(res.inputs, 3);
    assert_int_equal(res.rows, 25);
    assert_int_equal(count_kind(f, TC_LAKE_FILE_PART), 0);
    assert_int_equal(count_kind(f, TC_LAKE_FILE_COMPACT), 1);

    /* A restart's recovery keeps the compacted file and resumes from the progress. */
    if (tc_lake_open_partitions(f->lake, parts, 2, next, errstr, sizeof(errstr)) != TC_OK)
        fail_msg("recovery: %s", errstr);
    assert_int_equal(next[0], 20);
    assert_int_equal(next[1], 5);
    assert_int_equal(count_kind(f, TC_LAKE_FILE_COMPACT), 1);

    /* A rewind into what compaction merged is refused, naming the file. */
    assert_int_equal(tc_lake_rewind_partition(f->root, "t", 0, 5, 1, &rw, errstr, sizeof(errstr)),
                     TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "compact-"));
    /* Past it, the lake resumes where it is. */
    assert_int_equal(tc_lake_rewind_partition(f->root, "t", 0, 25, 1, &rw, errstr, sizeof(errstr)),
                     TC_OK);
    assert_int_equal(rw.from, 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commits_are_named_files_with_their_footer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_compaction_then_recovery_and_rewind, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
