/*
 * test_replicate.c -- lake replication on small hand-made lakes in temporary directories: what is
 * copied and what is not, the progress written to the replica, the incremental and --checksum
 * comparisons, files the lake no longer has, a leftover temporary copy, a stop request, and the
 * lag computed from the two sides' progress.
 *
 * The files are not Parquet: replication copies bytes and never parses them, so any content will
 * do, and distinct content per file makes a misplaced copy visible.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/path.h"
#include "lake/replicate.h"

#define DAY  "telemetry/year=2026/month=11/day=28"
#define DAY2 "telemetry/year=2026/month=11/day=29"

typedef struct fixture {
    char root[256], src[512], dst[512];
} fixture;

static void put(const char *root, const char *rel, const char *text)
{
    char path[TC_PATH_MAX], cmd[TC_PATH_MAX + 16];
    FILE *f;

    tc_path_fmt(path, sizeof(path), "%s/%s", root, rel);
    tc_path_fmt(cmd, sizeof(cmd), "%s", path);
    *strrchr(cmd, '/') = '\0';
    for (char *p = cmd + 1; *p; p++) { /* mkdir -p of the parent */
        if (*p == '/') {
            *p = '\0';
            mkdir(cmd, 0755);
            *p = '/';
        }
    }
    mkdir(cmd, 0755);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The file's content, or "" when it does not exist. */
static const char *get(const char *root, const char *rel)
{
    static char buf[4096];
    char path[TC_PATH_MAX];
    size_t n = 0;
    FILE *f;

    tc_path_fmt(path, sizeof(path), "%s/%s", root, rel);
    buf[0] = '\0';
    f = fopen(path, "r");
    if (f) {
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

static int exists(const char *root, const char *rel)
{
    char path[TC_PATH_MAX];
    struct stat st;

    tc_path_fmt(path, sizeof(path), "%s/%s", root, rel);
    return stat(path, &st) == 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    snprintf(f->root, sizeof(f->root), "/tmp/tc-test-replicate-XXXXXX");
    if (!mkdtemp(f->root)) {
        free(f);
        return -1;
    }
    snprintf(f->src, sizeof(f->src), "%s/lake", f->root);
    snprintf(f->dst, sizeof(f->dst), "%s/replica", f->root);
    put(f->src, DAY "/part-t-p0-0-9.parquet", "p0 0..9");
    put(f->src, DAY "/part-t-p1-0-4.parquet", "p1 0..4");
    put(f->src, DAY "/.part-t-p1-5-9.parquet.tmp", "a commit in progress");
    put(f->src, DAY2 "/part-t-p0-10-19.parquet", "p0 10..19");
    put(f->src, "_thermocline/progress/t/0", "20\n");
    put(f->src, "_thermocline/progress/t/1", "5\n");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static tc_lake_replicate_result replicate_ok(fixture *f, const tc_lake_replicate_options *o)
{
    char errstr[TC_ERRSTR_MAX] = "";
    tc_lake_replicate_result res;
    tc_err err = tc_lake_replicate(f->src, f->dst, o, &res, errstr, sizeof(errstr));

    if (err != TC_OK)
        fail_msg("replication failed: %s", errstr);
    return res;
}

static void test_copies_final_files_and_progress(void **state)
{
    fixture *f = *state;
    tc_lake_replicate_result res = replicate_ok(f, NULL);

    assert_int_equal(res.files_seen, 3);
    assert_int_equal(res.files_copied, 3);
    assert_int_equal(res.bytes_copied, strlen("p0 0..9") + strlen("p1 0..4") + strlen("p0 10..19"));
    assert_int_equal(res.progress_files, 2);
    assert_string_equal(get(f->dst, DAY "/part-t-p0-0-9.parquet"), "p0 0..9");
    assert_string_equal(get(f->dst, DAY "/part-t-p1-0-4.parquet"), "p1 0..4");
    assert_string_equal(get(f->dst, DAY2 "/part-t-p0-10-19.parquet"), "p0 10..19");
    assert_false(exists(f->dst, DAY "/.part-t-p1-5-9.parquet.tmp"));
    assert_string_equal(get(f->dst, "_thermocline/progress/t/0"), "20\n");
    assert_string_equal(get(f->dst, "_thermocline/progress/t/1"), "5\n");
    assert_non_null(strstr(get(f->dst, "_thermocline/replica/state"), "progress t 0 20\n"));

    /* Nothing new: nothing copied. */
    res = replicate_ok(f, NULL);
    assert_int_equal(res.files_seen, 3);
    assert_int_equal(res.files_copied, 0);
}

static void test_incremental_and_checksum(void **state)
{
    fixture *f = *state;
    tc_lake_replicate_options o = {.checksum_all = 1};
    char path[TC_PATH_MAX];
    struct stat st;
    tc_lake_replicate_result res;

    replicate_ok(f, NULL);
    /* A new file in the lake: only it is copied. */
    put(f->src, DAY "/part-t-p1-5-9.parquet", "p1 5..9");
    put(f->src, "_thermocline/progress/t/1", "10\n");
    res = replicate_ok(f, NULL);
    assert_int_equal(res.files_copied, 1);
    assert_string_equal(get(f->dst, DAY "/part-t-p1-5-9.parquet"), "p1 5..9");
    assert_string_equal(get(f->dst, "_thermocline/progress/t/1"), "10\n");

    /* A replica file damaged in place, same size and mtime: the quick check misses it... */
    tc_path_fmt(path, sizeof(path), "%s/%s", f->dst, DAY "/part-t-p0-0-9.parquet");
    assert_int_equal(stat(path, &st), 0);
    put(f->dst, DAY "/part-t-p0-0-9.parquet", "p0 0..X");
    {
        struct timespec times[2] = {st.st_atim, st.st_mtim};
        assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
    }
    res = replicate_ok(f, NULL);
    assert_int_equal(res.files_copied, 0);
    assert_string_equal(get(f->dst, DAY "/part-t-p0-0-9.parquet"), "p0 0..X");
    /* ... the checksum comparison does not. */
    res = replicate_ok(f, &o);
    assert_int_equal(res.files_copied, 1);
    assert_int_equal(res.files_verified, 3);
    assert_string_equal(get(f->dst, DAY "/part-t-p0-0-9.parquet"), "p0 0..9");
}

static void test_prunes_what_the_lake_lost_and_leftovers(void **state)
{
    fixture *f = *state;
    char path[TC_PATH_MAX];
    tc_lake_replicate_result res;

    replicate_ok(f, NULL);
    /* The day was compacted: two part files became one. */
    tc_path_fmt(path, sizeof(path), "%s/%s", f->src, DAY "/part-t-p0-0-9.parquet");
    assert_int_equal(unlink(path), 0);
    tc_path_fmt(path, sizeof(path), "%s/%s", f->src, DAY "/part-t-p1-0-4.parquet");
    assert_int_equal(unlink(path), 0);
    put(f->src, DAY "/compact-20261128-0-1796000000.parquet", "both");
    /* A copy a kill cut short, and a file of someone else's (kept). */
    put(f->dst, DAY "/.replica-part-t-p0-20-29.parquet.tmp", "half");
    put(f->dst, DAY "/README.txt", "not ours");
    res = replicate_ok(f, NULL);
    assert_int_equal(res.files_copied, 1);
    assert_int_equal(res.files_deleted, 2);
    assert_false(exists(f->dst, DAY "/part-t-p0-0-9.parquet"));
    assert_false(exists(f->dst, DAY "/part-t-p1-0-4.parquet"));
    assert_false(exists(f->dst, DAY "/.replica-part-t-p0-20-29.parquet.tmp"));
    assert_true(exists(f->dst, DAY "/README.txt"));
    assert_string_equal(get(f->dst, DAY "/compact-20261128-0-1796000000.parquet"), "both");
}

static volatile sig_atomic_t stop_flag;

static void stop_after_first(void *opaque, const char *relpath, uint64_t bytes)
{
    int *copies = opaque;

    (void)relpath;
    (void)bytes;
    if (++*copies == 1)
        stop_flag = 1;
}

/* A stop between files: what was copied stays, the progress is not written (it would claim files
 * the replica lacks); the next run completes it. */
static void test_stop_leaves_a_consistent_replica(void **state)
{
    fixture *f = *state;
    char errstr[TC_ERRSTR_MAX];
    int copies = 0;
    tc_lake_replicate_options o = {
        .on_copied = stop_after_first, .opaque = &copies, .stop = &stop_flag};
    tc_lake_replicate_result res;

    stop_flag = 0;
    assert_int_equal(tc_lake_replicate(f->src, f->dst, &o, &res, errstr, sizeof(errstr)),
                     TC_ERR_STOPPED);
    assert_int_equal(res.files_copied, 1);
    assert_false(exists(f->dst, "_thermocline/progress/t/0"));
    assert_false(exists(f->dst, "_thermocline/replica/state"));
    res = replicate_ok(f, NULL);
    assert_int_equal(res.files_copied, 2);
    assert_string_equal(get(f->dst, "_thermocline/progress/t/0"), "20\n");
}

/* The disk gives back other bytes than it was written: the copy is refused, its temporary file
 * removed, and the replica keeps what it had (no file, no progress); the next run copies it. */
static void corrupt_once(void *opaque, const char *tmp_path)
{
    int *left = opaque;
    FILE *f;

    if (*left == 0)
        return;
    --*left;
    f = fopen(tmp_path, "r+");
    assert_non_null(f);
    fputc('#', f);
    fclose(f);
}

static void test_a_bad_copy_is_refused(void **state)
{
    fixture *f = *state;
    char errstr[TC_ERRSTR_MAX];
    int left = 1;
    tc_lake_replicate_options o = {.on_written = corrupt_once, .opaque = &left};
    tc_lake_replicate_result res;

    assert_int_equal(tc_lake_replicate(f->src, f->dst, &o, &res, errstr, sizeof(errstr)),
                     TC_ERR_IO);
    assert_non_null(strstr(errstr, "checksum mismatch"));
    assert_int_equal(res.files_copied, 0);
    assert_false(exists(f->dst, DAY "/part-t-p0-0-9.parquet"));
    assert_false(exists(f->dst, DAY "/part-t-p1-0-4.parquet"));
    assert_false(exists(f->dst, DAY2 "/part-t-p0-10-19.parquet"));
    assert_false(exists(f->dst, "_thermocline/progress/t/0"));
    res = replicate_ok(f, &o);
    assert_int_equal(res.files_copied, 3);
    assert_string_equal(get(f->dst, DAY "/part-t-p0-0-9.parquet"), "p0 0..9");
}

static void test_lag(void **state)
{
    fixture *f = *state;
    char errstr[TC_ERRSTR_MAX];
    tc_lake_replica_lag lag;

    assert_int_equal(tc_lake_replica_lag_of(f->src, f->dst, &lag, errstr, sizeof(errstr)),
                     TC_ERR_NOT_FOUND);
    replicate_ok(f, NULL);
    assert_int_equal(tc_lake_replica_lag_of(f->src, f->dst, &lag, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(lag.behind_offsets, 0);
    assert_int_equal(lag.partitions, 2);
    assert_true(lag.snapshot_us > 0 && lag.finished_us >= lag.snapshot_us);
    /* The lake moves on: 7 offsets on partition 0, 3 on a new partition 2. */
    put(f->src, "_thermocline/progress/t/0", "27\n");
    put(f->src, "_thermocline/progress/t/2", "3\n");
    assert_int_equal(tc_lake_replica_lag_of(f->src, f->dst, &lag, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(lag.behind_offsets, 10);
    assert_int_equal(lag.partitions, 3);
}

static void test_refusals(void **state)
{
    fixture *f = *state;
    char errstr[TC_ERRSTR_MAX], inside[700], nolake[700];
    tc_lake_replicate_result res;

    snprintf(inside, sizeof(inside), "%s/telemetry/replica", f->src);
    assert_int_equal(tc_lake_replicate(f->src, inside, NULL, &res, errstr, sizeof(errstr)),
                     TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "inside it"));
    assert_false(exists(f->src, "telemetry/replica"));
    assert_int_equal(tc_lake_replicate(f->src, f->src, NULL, &res, errstr, sizeof(errstr)),
                     TC_ERR_INVALID);
    assert_int_equal(tc_lake_replicate(f->dst, f->root, NULL, &res, errstr, sizeof(errstr)),
                     TC_ERR_INVALID); /* no lake at dst (it does not exist) */
    snprintf(nolake, sizeof(nolake), "%s/nothing", f->root);
    mkdir(nolake, 0755);
    assert_int_equal(tc_lake_replicate(nolake, f->dst, NULL, &res, errstr, sizeof(errstr)),
                     TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "no lake"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copies_final_files_and_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_and_checksum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prunes_what_the_lake_lost_and_leftovers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_leaves_a_consistent_replica, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_bad_copy_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
