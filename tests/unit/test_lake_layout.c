/*
 * test_lake_layout.c -- the lake's file-name codec, progress files and day walk (lake/layout.h),
 * and the sink's recovery on a temporary lake shared by two topics whose names overlap.
 *
 * Recovery and the replay's rewind only look at names (a rewind counts rows from footers, and
 * counts 0 for a file that is not Parquet), so the planted files are not Parquet: a file's
 * survival, and where a rewind puts the progress, is what the tests assert. The topic pair is the
 * one that lost a lake: `amb` and `amb-p1-900000`, whose files a left-to-right parser reads as
 * partition 1 of `amb` from offset 900000.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/durable.h"
#include "core/path.h"
#include "lake/layout.h"
#include "lake/replay.h"
#include "lake/sink.h"

#define DAYREL "telemetry/year=2026/month=11/day=28"

static void test_name_parse_reads_from_the_right(void **state)
{
    tc_lake_name n;

    (void)state;
    /* A file of topic a-p1-5, never of topic a. */
    assert_int_equal(tc_lake_name_parse("part-a-p1-5-p0-10-20.parquet", &n), TC_LAKE_FILE_PART);
    assert_string_equal(n.topic, "a-p1-5");
    assert_int_equal(n.partition, 0);
    assert_int_equal(n.first, 10);
    assert_int_equal(n.last, 20);
    assert_false(tc_lake_name_is_topic("part-a-p1-5-p0-10-20.parquet", "a", &n));
    assert_true(tc_lake_name_is_topic("part-a-p1-5-p0-10-20.parquet", "a-p1-5", &n));

    assert_int_equal(tc_lake_name_parse(".part-amb-p1-900000-p0-21-open-4242-0badcafe.tmp", &n),
                     TC_LAKE_FILE_OPEN);
    assert_string_equal(n.topic, "amb-p1-900000");
    assert_int_equal(n.partition, 0);
    assert_int_equal(n.first, 21);
    assert_string_equal(n.member, "4242-0badcafe");
    assert_false(
        tc_lake_name_is_topic(".part-amb-p1-900000-p0-21-open-4242-0badcafe.tmp", "amb", &n));
    /* A writer from before member names. */
    assert_int_equal(tc_lake_name_parse(".part-t-p3-7-open.tmp", &n), TC_LAKE_FILE_OPEN);
    assert_string_equal(n.topic, "t");
    assert_int_equal(n.partition, 3);
    assert_string_equal(n.member, "");

    assert_int_equal(tc_lake_name_parse("compact-20261128-1-1764300000.parquet", &n),
                     TC_LAKE_FILE_COMPACT);
}

static void test_name_parse_refuses_what_is_not_ours(void **state)
{
    static const char *const bad[] = {
        "part-a-p1-5.parquet",                     /* no last offset */
        "part--p1-5-6.parquet",                    /* empty topic */
        "part-a-p1-+5-6.parquet",                  /* a sign */
        "part-a-p1-6-5.parquet",                   /* last < first */
        "part-a-p99999999999-5-6.parquet",         /* partition past int32 */
        "part-a-p1-5-1234567890123456789.parquet", /* offset too long */
        "part-a-p1-5-6.parquet.tmp",               /* not a name of ours */
        ".part-a-p1-5-open-12-xyz.tmp",            /* member not hex */
        ".part-a-p1-5-6.tmp",                      /* no open marker */
        "notes.txt",
    };
    tc_lake_name n;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (tc_lake_name_parse(bad[i], &n) != TC_LAKE_FILE_OTHER)
            fail_msg("%s parsed as a lake file (topic \"%s\")", bad[i], n.topic);
    }
}

static void test_name_round_trip(void **state)
{
    static const char *const topics[] = {"t", "amb", "amb-p1-900000", "a-p1-5-p0-10", "x.y_z-p"};
    char name[TC_LAKE_NAME_MAX];
    tc_lake_name n;

    (void)state;
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        assert_true(tc_lake_name_part(name, sizeof(name), topics[i], 7, 100, 250) > 0);
        assert_int_equal(tc_lake_name_parse(name, &n), TC_LAKE_FILE_PART);
        assert_string_equal(n.topic, topics[i]);
        assert_int_equal(n.partition, 7);
        assert_int_equal(n.first, 100);
        assert_int_equal(n.last, 250);
        assert_true(tc_lake_name_open(name, sizeof(name), topics[i], 2, 9, "17-00ff") > 0);
        assert_int_equal(tc_lake_name_parse(name, &n), TC_LAKE_FILE_OPEN);
        assert_string_equal(n.topic, topics[i]);
        assert_int_equal(n.partition, 2);
        assert_int_equal(n.first, 9);
        assert_string_equal(n.member, "17-00ff");
    }
    assert_int_equal(tc_lake_name_part(name, 8, "t", 0, 0, 0), -1);
}

/* ---- on a temporary lake ---- */

typedef struct lake_dir {
    char root[64];
} lake_dir;

static int setup(void **state)
{
    lake_dir *d = calloc(1, sizeof(*d));

    if (!d)
        return -1;
    snprintf(d->root, sizeof(d->root), "/tmp/tc-test-layout-XXXXXX");
    if (!mkdtemp(d->root)) {
        free(d);
        return -1;
    }
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    lake_dir *d = *state;
    char cmd[128];
    int rc;

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->root);
    rc = system(cmd);
    free(d);
    return rc == 0 ? 0 : -1;
}

/* Write text to root/rel, creating the directories. */
static void plant(const char *root, const char *rel, const char *text)
{
    char path[TC_PATH_MAX], errstr[TC_ERRSTR_MAX];
    FILE *f;

    tc_path_fmt(path, sizeof(path), "%s/%s", root, rel);
    *strrchr(path, '/') = '\0';
    if (tc_durable_mkdirs(path, errstr, sizeof(errstr)) != TC_OK)
        fail_msg("%s", errstr);
    tc_path_fmt(path, sizeof(path), "%s/%s", root, rel);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int present(const char *root, const char *rel)
{
    char path[TC_PATH_MAX];
    struct stat st;

    tc_path_fmt(path, sizeof(path), "%s/%s", root, rel);
    return stat(path, &st) == 0;
}

static void test_progress_one_error_rule(void **state)
{
    lake_dir *d = *state;
    char errstr[TC_ERRSTR_MAX] = "";
    int64_t next = 0;

    /* None yet: -1, not an error. */
    assert_int_equal(tc_lake_progress_read(d->root, "t", 0, &next, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(next, -1);
    /* Written atomically, read back. */
    assert_int_equal(tc_lake_progress_write(d->root, "t", 0, 1234, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_lake_progress_read(d->root, "t", 0, &next, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(next, 1234);
    assert_false(present(d->root, "_thermocline/progress/t/.0.tmp"));
    /* Damaged: an error naming the file, never "no progress". */
    static const char *const damaged[] = {"", "\n", "garbage\n", "-5\n", "12 13\n", "12x\n"};
    for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
        plant(d->root, "_thermocline/progress/t/1", damaged[i]);
        errstr[0] = '\0';
        if (tc_lake_progress_read(d->root, "t", 1, &next, errstr, sizeof(errstr)) == TC_OK)
            fail_msg("progress \"%s\" read as %lld", damaged[i], (long long)next);
        assert_non_null(strstr(errstr, "_thermocline/progress/t/1"));
    }
    /* Unreadable (a directory where the file should be). */
    plant(d->root, "_thermocline/progress/t/2/x", "");
    assert_int_equal(tc_lake_progress_read(d->root, "t", 2, &next, errstr, sizeof(errstr)),
                     TC_ERR_IO);
}

typedef struct seen_days {
    int64_t day[8];
    size_t n;
} seen_days;

static tc_err note_day(void *opaque, const char *dir, int64_t day)
{
    seen_days *s = opaque;

    (void)dir;
    if (s->n < 8)
        s->day[s->n++] = day;
    return TC_OK;
}

static void test_walk_days_in_date_order(void **state)
{
    lake_dir *d = *state;
    seen_days s = {{0}, 0};
    char dir[TC_PATH_MAX];

    plant(d->root, "telemetry/year=2026/month=11/day=29/x", "");
    plant(d->root, DAYREL "/x", "");
    plant(d->root, "telemetry/year=2025/month=12/day=31/x", "");
    assert_int_equal(tc_lake_walk_days(d->root, note_day, &s), TC_OK);
    assert_int_equal(s.n, 3);
    assert_true(s.day[0] < s.day[1] && s.day[1] < s.day[2]);
    assert_int_equal(s.day[2] - s.day[1], 1);
    tc_lake_day_dir(dir, sizeof(dir), d->root, s.day[1]);
    assert_non_null(strstr(dir, DAYREL));
}

static tc_lake *open_sink(const char *root, const char *topic)
{
    char errstr[TC_ERRSTR_MAX];
    tc_lake_options o = {.root = root,
                         .topic = topic,
                         .roll_bytes = 1 << 20,
                         .roll_us = 1000000,
                         .codec = TC_PQ_UNCOMPRESSED};
    tc_lake *l = tc_lake_new(&o, errstr, sizeof(errstr));

    if (!l)
        fail_msg("tc_lake_new: %s", errstr);
    return l;
}

/* Recovery of `amb` removes its own crashed commit and open file, and nothing of `amb-p1-900000`
 * sharing the lake. */
static void test_recovery_leaves_a_topic_with_an_overlapping_name(void **state)
{
    static const char *const other[] = {
        DAYREL "/part-amb-p1-900000-p0-0-9.parquet",
        DAYREL "/part-amb-p1-900000-p0-10-20.parquet",
        DAYREL "/part-amb-p1-900000-p1-0-7.parquet",
        DAYREL "/.part-amb-p1-900000-p1-8-open-99999999-abc.tmp",
    };
    lake_dir *d = *state;
    char errstr[TC_ERRSTR_MAX] = "";
    int32_t parts[2] = {0, 1};
    int64_t next[2];
    tc_lake *l;

    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        plant(d->root, other[i], "other topic");
    plant(d->root, "_thermocline/progress/amb-p1-900000/0", "21\n");
    plant(d->root, "_thermocline/progress/amb-p1-900000/1", "8\n");
    plant(d->root, DAYREL "/part-amb-p1-0-4.parquet", "committed");
    plant(d->root, DAYREL "/part-amb-p1-5-9.parquet", "renamed, progress never written");
    plant(d->root, DAYREL "/.part-amb-p0-3-open-99999999-abc.tmp", "a dead member's open file");
    plant(d->root, "_thermocline/progress/amb/1", "5\n");

    l = open_sink(d->root, "amb");
    if (tc_lake_open_partitions(l, parts, 2, next, errstr, sizeof(errstr)) != TC_OK)
        fail_msg("recovery: %s", errstr);
    assert_int_equal(next[0], -1);
    assert_int_equal(next[1], 5);
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        if (!present(d->root, other[i]))
            fail_msg("recovery of topic amb removed %s", other[i]);
    }
    assert_true(present(d->root, DAYREL "/part-amb-p1-0-4.parquet"));
    assert_false(present(d->root, DAYREL "/part-amb-p1-5-9.parquet"));
    assert_false(present(d->root, DAYREL "/.part-amb-p0-3-open-99999999-abc.tmp"));
    tc_lake_destroy(l);
}

/* The name of the one member lock in the lake other than `except` (a sink's member name is not
 * exposed; its lock file is the only trace of it). */
static void live_member(const char *root, const char *except, char *out, size_t cap)
{
    char dir[TC_PATH_MAX];
    struct dirent *de;
    DIR *dd;

    tc_path_fmt(dir, sizeof(dir), "%s/_thermocline/members", root);
    dd = opendir(dir);
    assert_non_null(dd);
    *out = '\0';
    while ((de = readdir(dd)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > 5 && len - 5 < cap && !strcmp(de->d_name + len - 5, ".lock") &&
            strncmp(de->d_name, except, len - 5) != 0) {
            memcpy(out, de->d_name, len - 5);
            out[len - 5] = '\0';
        }
    }
    closedir(dd);
    assert_true(*out != '\0');
}

/* Recovery removes a dead member's open files even while another member's recovery is probing the
 * same dead member (a rebalance hands a dead member's partitions to several members, which recover
 * them at once and probe its lock together; a probe holds the lock file shared), and keeps the open
 * files of a member that lives. Found by tests/faults/test_group.py: a probe that took the lock
 * exclusively read to a concurrent prober as the dead member holding it, and the open file it then
 * kept was never removed. */
static void test_recovery_removes_a_dead_members_files_while_others_probe_it(void **state)
{
    lake_dir *d = *state;
    char errstr[TC_ERRSTR_MAX] = "", lockpath[TC_PATH_MAX], other[64], tmp[160];
    int32_t parts[2] = {0, 1};
    int64_t next[2];
    tc_lake *l, *writer;
    int fd;

    writer = open_sink(d->root, "t"); /* a member that lives, with an open file of partition 0 */
    live_member(d->root, "", other, sizeof(other));
    snprintf(tmp, sizeof(tmp), DAYREL "/.part-t-p0-3-open-%s.tmp", other);
    plant(d->root, tmp, "a live member's open file");
    plant(d->root, "_thermocline/members/77-0000dead.lock", "");
    plant(d->root, DAYREL "/.part-t-p1-4-open-77-0000dead.tmp", "a dead member's open file");
    tc_path_fmt(lockpath, sizeof(lockpath), "%s/_thermocline/members/77-0000dead.lock", d->root);
    fd = open(lockpath, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_SH | LOCK_NB), 0); /* another recovery's probe, under way */

    l = open_sink(d->root, "t");
    if (tc_lake_open_partitions(l, parts, 2, next, errstr, sizeof(errstr)) != TC_OK)
        fail_msg("recovery: %s", errstr);
    assert_false(present(d->root, DAYREL "/.part-t-p1-4-open-77-0000dead.tmp"));
    assert_false(present(d->root, "_thermocline/members/77-0000dead.lock"));
    assert_true(present(d->root, tmp));
    close(fd);
    tc_lake_destroy(l);
    tc_lake_destroy(writer);
}

/* A recovery also removes the open files of members that are gone in partitions it does not
 * recover (their own recovery may have run while the member lived: it was killed between losing
 * the partition and handing it back), and keeps there the open files of a member that lives, its
 * own, and those of a writer without a member name. */
static void test_recovery_removes_open_files_of_gone_members_in_other_partitions(void **state)
{
    lake_dir *d = *state;
    char errstr[TC_ERRSTR_MAX] = "", live[64], own[64], live_tmp[160], own_tmp[160];
    int32_t part = 0;
    int64_t next;
    tc_lake *l, *writer;

    writer = open_sink(d->root, "t");
    live_member(d->root, "", live, sizeof(live));
    l = open_sink(d->root, "t");
    live_member(d->root, live, own, sizeof(own));
    snprintf(live_tmp, sizeof(live_tmp), DAYREL "/.part-t-p2-5-open-%s.tmp", live);
    snprintf(own_tmp, sizeof(own_tmp), DAYREL "/.part-t-p3-6-open-%s.tmp", own);
    plant(d->root, live_tmp, "a live member's open file");
    plant(d->root, own_tmp, "this sink's own open file of a partition it keeps");
    plant(d->root, "_thermocline/members/77-0000dead.lock", ""); /* gone, its lock file left */
    plant(d->root, DAYREL "/.part-t-p2-4-open-77-0000dead.tmp", "a gone member's");
    plant(d->root, DAYREL "/.part-t-p4-9-open-78-0000dead.tmp", "a gone member's, no lock file");
    plant(d->root, DAYREL "/.part-t-p5-3-open.tmp", "a writer's from before member names");
    plant(d->root, DAYREL "/.part-u-p2-4-open-79-0000dead.tmp", "another topic's");

    if (tc_lake_open_partitions(l, &part, 1, &next, errstr, sizeof(errstr)) != TC_OK)
        fail_msg("recovery: %s", errstr);
    assert_false(present(d->root, DAYREL "/.part-t-p2-4-open-77-0000dead.tmp"));
    assert_false(present(d->root, "_thermocline/members/77-0000dead.lock"));
    assert_false(present(d->root, DAYREL "/.part-t-p4-9-open-78-0000dead.tmp"));
    assert_true(present(d->root, live_tmp));
    assert_true(present(d->root, own_tmp));
    assert_true(present(d->root, DAYREL "/.part-t-p5-3-open.tmp"));
    assert_true(present(d->root, DAYREL "/.part-u-p2-4-open-79-0000dead.tmp"));
    tc_lake_destroy(l);
    tc_lake_destroy(writer);
}

/* A sink that could not take its member lock (the lake's members folder unusable when it started)
 * takes it at its next recovery: until then its open files would count as a gone member's. */
static void test_a_sink_takes_its_member_lock_at_recovery(void **state)
{
    lake_dir *d = *state;
    char errstr[TC_ERRSTR_MAX] = "", name[64], path[TC_PATH_MAX];
    int32_t part = 0;
    int64_t next;
    tc_lake *l;
    int fd;

    plant(d->root, "_thermocline/members", "a file where the folder goes");
    l = open_sink(d->root, "t");
    tc_path_fmt(path, sizeof(path), "%s/_thermocline/members", d->root);
    assert_int_equal(unlink(path), 0);
    if (tc_lake_open_partitions(l, &part, 1, &next, errstr, sizeof(errstr)) != TC_OK)
        fail_msg("recovery: %s", errstr);
    live_member(d->root, "", name, sizeof(name));
    tc_path_fmt(path, sizeof(path), "%s/_thermocline/members/%s.lock", d->root, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_not_equal(flock(fd, LOCK_SH | LOCK_NB), 0); /* held: the sink lives */
    close(fd);
    tc_lake_destroy(l);
}

/* A damaged progress file stops recovery (naming it) instead of reading as "nothing committed",
 * which would remove every file of the partition. */
static void test_recovery_refuses_a_damaged_progress(void **state)
{
    lake_dir *d = *state;
    char errstr[TC_ERRSTR_MAX] = "";
    int32_t part = 0;
    int64_t next;
    tc_lake *l;

    plant(d->root, DAYREL "/part-t-p0-0-9.parquet", "committed");
    plant(d->root, "_thermocline/progress/t/0", "1O\n"); /* a letter O */
    l = open_sink(d->root, "t");
    assert_int_not_equal(tc_lake_open_partitions(l, &part, 1, &next, errstr, sizeof(errstr)),
                         TC_OK);
    assert_non_null(strstr(errstr, "_thermocline/progress/t/0"));
    assert_true(present(d->root, DAYREL "/part-t-p0-0-9.parquet"));
    tc_lake_destroy(l);
}

/* The replay window: a rewind goes back to the start of the first commit that reaches its offset,
 * among the files of its own topic and partition only, and never forward. */
static void test_rewind_window(void **state)
{
    lake_dir *d = *state;
    char errstr[TC_ERRSTR_MAX] = "";
    tc_lake_rewind rw;
    int64_t next;

    plant(d->root, DAYREL "/part-t-p0-0-9.parquet", "");
    plant(d->root, DAYREL "/part-t-p0-10-19.parquet", "");
    plant(d->root, "telemetry/year=2026/month=11/day=29/part-t-p0-10-19.parquet", "");
    plant(d->root, DAYREL "/part-t-p0-20-29.parquet", "");
    plant(d->root, DAYREL "/part-t-p1-0-99.parquet", "");      /* another partition */
    plant(d->root, DAYREL "/part-t-p0-9-p0-5-30.parquet", ""); /* topic t-p0-9 */
    plant(d->root, "_thermocline/progress/t/0", "30\n");

    /* Offset 12 lies in the commit 10..19 (two days): the lake resumes at 10. */
    assert_int_equal(tc_lake_rewind_partition(d->root, "t", 0, 12, 0, &rw, errstr, sizeof(errstr)),
                     TC_OK);
    assert_int_equal(rw.progress, 30);
    assert_int_equal(rw.from, 10);
    assert_int_equal(rw.files, 3);
    /* Planned only: the progress is unchanged. */
    assert_int_equal(tc_lake_progress_read(d->root, "t", 0, &next, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(next, 30);
    /* Offset 7 of topic t-p0-9's file (5..30) is not t's: the rewind goes to 0, not 5. */
    assert_int_equal(tc_lake_rewind_partition(d->root, "t", 0, 7, 1, &rw, errstr, sizeof(errstr)),
                     TC_OK);
    assert_int_equal(rw.from, 0);
    assert_int_equal(tc_lake_progress_read(d->root, "t", 0, &next, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(next, 0);
    /* Never forward: from past the progress leaves it. */
    plant(d->root, "_thermocline/progress/t/0", "30\n");
    assert_int_equal(tc_lake_rewind_partition(d->root, "t", 0, 50, 1, &rw, errstr, sizeof(errstr)),
                     TC_OK);
    assert_int_equal(rw.from, 30);
    assert_int_equal(rw.files, 0);
    /* A damaged progress is an error, not "nothing to rewind". */
    plant(d->root, "_thermocline/progress/t/0", "thirty\n");
    assert_int_equal(tc_lake_rewind_partition(d->root, "t", 0, 12, 1, &rw, errstr, sizeof(errstr)),
                     TC_ERR_IO);
    assert_non_null(strstr(errstr, "_thermocline/progress/t/0"));
}

/* The sink's constructor names the setting at fault. */
static void test_sink_refusals_name_the_setting(void **state)
{
    lake_dir *d = *state;
    char errstr[TC_ERRSTR_MAX] = "";
    tc_lake_options o = {.root = "", .topic = "t", .roll_bytes = 1 << 20, .roll_us = 1000000};

    assert_null(tc_lake_new(&o, errstr, sizeof(errstr)));
    assert_string_equal(errstr, "invalid lake.dir \"\": empty");
    o.root = d->root;
    o.topic = "a/b";
    assert_null(tc_lake_new(&o, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "invalid kafka.topic \"a/b\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_parse_reads_from_the_right),
        cmocka_unit_test(test_name_parse_refuses_what_is_not_ours),
        cmocka_unit_test(test_name_round_trip),
        cmocka_unit_test_setup_teardown(test_progress_one_error_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walk_days_in_date_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_leaves_a_topic_with_an_overlapping_name,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_recovery_removes_a_dead_members_files_while_others_probe_it, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_recovery_removes_open_files_of_gone_members_in_other_partitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_sink_takes_its_member_lock_at_recovery, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_recovery_refuses_a_damaged_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewind_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_refusals_name_the_setting, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
