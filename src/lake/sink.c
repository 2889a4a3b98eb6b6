/*
 * sink.c -- the lake sink; see sink.h for the layout and the commit protocol.
 */
#include "lake/sink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/durable.h"
#include "core/log.h"
#include "core/path.h"
#include "core/timeutil.h"
#include "lake/compact.h"
#include "lake/layout.h"

/* Distinct (partition, day) groups handled per pass over a batch; a batch with more (a burst of
 * late readings over many days) takes more passes. */
#define TC_LAKE_GROUPS_MAX 64
/* Path buffers: the root is user configuration, the rest is ours and short. */
#define TC_LAKE_PATH_MAX TC_PATH_MAX

enum {
    TC_LC_TIME,
    TC_LC_DEVICE,
    TC_LC_METRIC0, /* TC_METRIC__COUNT metric columns follow */
    TC_LC_TAGS = TC_LC_METRIC0 + TC_METRIC__COUNT,
    TC_LC_EXTRA,
    TC_LC_PARTITION,
    TC_LC_OFFSET,
    TC_LC_SCHEMA_VERSION,
    TC_LC__COUNT
};

static const tc_parquet_column tc_lake_cols[TC_LC__COUNT] = {
    [TC_LC_TIME] = {"time", TC_PQ_TIMESTAMP_US, 0, TC_PQ_DICT_OFF},
    [TC_LC_DEVICE] = {"device_id", TC_PQ_STRING, 0, TC_PQ_DICT_ON},
    [TC_LC_METRIC0 + TC_M_TEMPERATURE] = {"temperature", TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF},
    [TC_LC_METRIC0 + TC_M_HUMIDITY] = {"humidity", TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF},
    [TC_LC_METRIC0 + TC_M_PRESSURE] = {"pressure", TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF},
    [TC_LC_METRIC0 + TC_M_BATTERY] = {"battery", TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF},
    [TC_LC_METRIC0 + TC_M_LATITUDE] = {"latitude", TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF},
    [TC_LC_METRIC0 + TC_M_LONGITUDE] = {"longitude", TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF},
    [TC_LC_TAGS] = {"tags", TC_PQ_STRING, 1, TC_PQ_DICT_ON},
    [TC_LC_EXTRA] = {"extra", TC_PQ_STRING, 1, TC_PQ_DICT_AUTO},
    [TC_LC_PARTITION] = {"kafka_partition", TC_PQ_INT32, 0, TC_PQ_DICT_OFF},
    [TC_LC_OFFSET] = {"kafka_offset", TC_PQ_INT64, 0, TC_PQ_DICT_OFF},
    /* OPTIONAL: files written before the column existed lack it, and NULL means "no version". */
    [TC_LC_SCHEMA_VERSION] = {"schema_version", TC_PQ_INT32, 1, TC_PQ_DICT_ON},
};

typedef struct tc_lake_open {
    int64_t day;
    int fd;
    tc_parquet_writer *w;
    char dir[TC_LAKE_PATH_MAX];
    char tmp[TC_LAKE_PATH_MAX];
    uint64_t rows;
    size_t ndyn; /* dynamic metric columns in this file's schema (after the fixed ones) */
    struct tc_lake_open *next;
} tc_lake_open;

typedef struct tc_lake_part {
    int32_t partition;
    int active;
    int64_t durable_next;  /* committed: progress file */
    int64_t advanced_next; /* consumed into open files (or past, for non-rows) */
    int64_t range_first;   /* first offset advanced since the last commit, -1 none */
    int64_t opened_us;     /* when the first uncommitted offset arrived, 0 none */
    tc_lake_open *files;
} tc_lake_part;

struct tc_lake {
    tc_lake_options opt;
    char member[TC_LAKE_MEMBER_MAX]; /* in the names of this sink's open files */
    int member_fd;                   /* its member lock, held while the sink lives (-1: none) */
    char root[TC_LAKE_PATH_MAX];
    char topic[TC_LAKE_TOPIC_MAX];
    tc_parquet_options pq;
    tc_lake_part *parts;
    size_t nparts;
    tc_lake_committed_fn on_commit;
    void *on_commit_opaque;
    /* Gather scratch for one (partition, day) group, grown to the largest batch seen. */
    size_t scratch_cap;
    size_t *idx;
    int64_t *time_us, *offset;
    int32_t *partition, *schema_version;
    uint8_t *schema_version_present;
    tc_slice *device, *tags, *extra;
    double *metric[TC_METRIC__COUNT];
    uint8_t *present[TC_METRIC__COUNT];
    double *dyn[TC_BATCH_DYN_MAX];
    uint8_t *dyn_present[TC_BATCH_DYN_MAX];
};

size_t tc_lake_columns(const tc_parquet_column **cols)
{
    *cols = tc_lake_cols;
    return TC_LC__COUNT;
}

static void tc_lake_member_path(const tc_lake *l, const char *member, size_t len, char *out,
                                size_t cap)
{
    tc_path_fmt(out, cap, "%s/_thermocline/members/%.*s.lock", l->root, (int)len, member);
}

/*
 * Hold this sink's member lock while it lives: another member's recovery removes its open files
 * only when it is gone (tc_lake_member_alive), never those of a member still writing them. Without
 * the lock (an unwritable lake) the files count as a gone member's, so a sink that could not take
 * it tries again at each recovery (tc_lake_open_partitions), before it writes anything more.
 */
static void tc_lake_member_lock(tc_lake *l)
{
    char dir[TC_LAKE_PATH_MAX], path[TC_LAKE_PATH_MAX], ignored[TC_ERRSTR_MAX];
    int fd;

    if (l->member_fd >= 0)
        return;
    tc_path_fmt(dir, sizeof(dir), "%s/_thermocline/members", l->root);
    if (tc_durable_mkdirs(dir, ignored, sizeof(ignored)) != TC_OK)
        return;
    tc_lake_member_path(l, l->member, strlen(l->member), path, sizeof(path));
    /* Read-only: a file open for writing would keep the lake's file system from being remounted
     * read-only (an operator's way out of a full disk); flock needs no write access. */
    fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
        l->member_fd = fd;
    else if (fd >= 0)
        close(fd);
}

/* Name this sink among the members writing the lake (pid and a random number) and take its lock. */
static void tc_lake_member_start(tc_lake *l)
{
    struct timespec ts;
    unsigned r;

    clock_gettime(CLOCK_REALTIME, &ts);
    r = (unsigned)ts.tv_nsec ^ ((unsigned)ts.tv_sec << 7) ^ ((unsigned)getpid() << 16);
    snprintf(l->member, sizeof(l->member), "%ld-%08x", (long)getpid(), r);
    l->member_fd = -1;
    tc_lake_member_lock(l);
}

/* Whether the member that named an open file (its name's "-open-<member>.tmp") still lives: its
 * member lock is held. This sink's own files are never another's to keep.
 *
 * The probe takes a shared lock, never an exclusive one: members recovering the partitions of one
 * dead member at once (a rebalance hands them to several) probe its lock file together, and an
 * exclusive probe held by one of them would read to the others as the dead member holding it --
 * they would keep its open files, and nothing would remove them later. A shared lock is refused
 * only by the member's own exclusive one. */
static int tc_lake_member_alive(const tc_lake *l, const char *member, size_t len)
{
    char path[TC_LAKE_PATH_MAX];
    int fd, alive;

    if (len == 0 || len >= TC_LAKE_MEMBER_MAX ||
        (len == strlen(l->member) && !strncmp(member, l->member, len)))
        return 0;
    tc_lake_member_path(l, member, len, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    alive = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    if (!alive)
        unlink(path); /* a member that died: its lock file goes with its files */
    close(fd);
    return alive;
}

tc_lake *tc_lake_new(const tc_lake_options *opt, char *errstr, size_t errstr_size)
{
    tc_lake *l;

    /* The root leaves room for the day directories and file names below it. */
    if (!opt->root || !*opt->root || strlen(opt->root) > TC_LAKE_PATH_MAX - 512) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "invalid lake.dir \"%.200s\": %s",
                   opt->root ? opt->root : "", opt->root && *opt->root ? "too long" : "empty");
        return NULL;
    }
    if (!opt->topic || !*opt->topic || strlen(opt->topic) >= 250 || strchr(opt->topic, '/')) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "invalid kafka.topic \"%.300s\" for the lake: empty, longer than Kafka's 249 "
                   "characters, or with a '/'",
                   opt->topic ? opt->topic : "");
        return NULL;
    }
    l = calloc(1, sizeof(*l));
    if (!l) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    l->opt = *opt;
    tc_path_fmt(l->root, sizeof(l->root), "%s", opt->root);
    tc_path_fmt(l->topic, sizeof(l->topic), "%s", opt->topic);
    l->opt.root = l->root;
    l->opt.topic = l->topic;
    tc_parquet_options_default(&l->pq);
    l->pq.codec = opt->codec;
    if (opt->row_group_rows)
        l->pq.row_group_rows = opt->row_group_rows;
    if (opt->row_group_bytes)
        l->pq.row_group_bytes = opt->row_group_bytes;
    if (tc_durable_mkdirs(l->root, errstr, errstr_size) != TC_OK) {
        free(l);
        return NULL;
    }
    tc_lake_member_start(l);
    return l;
}

static void tc_lake_free_scratch(tc_lake *l)
{
    free(l->idx);
    free(l->time_us);
    free(l->offset);
    free(l->partition);
    free(l->device);
    free(l->tags);
    free(l->extra);
    free(l->schema_version);
    free(l->schema_version_present);
    l->idx = NULL;
    l->time_us = l->offset = NULL;
    l->partition = l->schema_version = NULL;
    l->schema_version_present = NULL;
    l->device = l->tags = l->extra = NULL;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        free(l->metric[m]);
        free(l->present[m]);
        l->metric[m] = NULL;
        l->present[m] = NULL;
    }
    for (int d = 0; d < TC_BATCH_DYN_MAX; d++) {
        free(l->dyn[d]);
        free(l->dyn_present[d]);
        l->dyn[d] = NULL;
        l->dyn_present[d] = NULL;
    }
    l->scratch_cap = 0;
}

static void tc_lake_discard(tc_lake_part *p)
{
    tc_lake_open *f = p->files, *next;

    for (; f; f = next) {
        next = f->next;
        tc_parquet_writer_destroy(f->w);
        close(f->fd);
        unlink(f->tmp);
        free(f);
    }
    p->files = NULL;
}

void tc_lake_destroy(tc_lake *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->nparts; i++)
        tc_lake_discard(&l->parts[i]);
    free(l->parts);
    tc_lake_free_scratch(l);
    if (l->member_fd >= 0) {
        char path[TC_LAKE_PATH_MAX];
        tc_lake_member_path(l, l->member, strlen(l->member), path, sizeof(path));
        unlink(path);
        close(l->member_fd);
    }
    free(l);
}

void tc_lake_on_commit(tc_lake *l, tc_lake_committed_fn fn, void *opaque)
{
    l->on_commit = fn;
    l->on_commit_opaque = opaque;
}

static tc_lake_part *tc_lake_part_get(tc_lake *l, int32_t partition, int create)
{
    tc_lake_part *np;

    for (size_t i = 0; i < l->nparts; i++) {
        if (l->parts[i].partition == partition)
            return &l->parts[i];
    }
    if (!create)
        return NULL;
    np = realloc(l->parts, (l->nparts + 1) * sizeof(*np));
    if (!np)
        return NULL;
    l->parts = np;
    np = &l->parts[l->nparts++];
    memset(np, 0, sizeof(*np));
    np->partition = partition;
    np->durable_next = np->advanced_next = np->range_first = -1;
    return np;
}

/*
 * The partition's progress lock (an flock on "<progress dir>/.<P>.lock"), exclusive: held from
 * reading the progress to writing it in a commit, and from reading it to removing what lies past it
 * in a recovery, so that a member's recovery never removes the files of another member's commit
 * that is under way. The lock's fd (close it to release), or -1 with errstr.
 */
static int tc_lake_progress_lock(const tc_lake *l, int32_t partition, char *errstr,
                                 size_t errstr_size)
{
    char dir[TC_LAKE_PATH_MAX], path[TC_LAKE_PATH_MAX];
    int fd;

    tc_lake_progress_dir(dir, sizeof(dir), l->root, l->topic);
    if (tc_durable_mkdirs(dir, errstr, errstr_size) != TC_OK)
        return -1;
    tc_path_fmt(path, sizeof(path), "%s/.%d.lock", dir, partition);
    fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644); /* read-only: see tc_lake_member_start */
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not lock \"%s\": %s", path,
                   strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* tc_lake_read_progress's answer when the file exists but cannot be read (errstr says why). */
#define TC_LAKE_PROGRESS_UNREADABLE (-2)

/* The partition's committed progress: -1 when it has none, TC_LAKE_PROGRESS_UNREADABLE (errstr
 * filled) when it cannot be read -- never taken for "none" (see layout.h). */
static int64_t tc_lake_read_progress(const tc_lake *l, int32_t partition, char *errstr,
                                     size_t errstr_size)
{
    int64_t next;

    if (tc_lake_progress_read(l->root, l->topic, partition, &next, errstr, errstr_size) != TC_OK)
        return TC_LAKE_PROGRESS_UNREADABLE;
    return next;
}

/* What a recovery removes: the partitions being recovered and their progress. */
typedef struct tc_lake_clean {
    tc_lake *l;
    const int32_t *parts;
    const int64_t *progress;
    size_t n;
    char *errstr;
    size_t errstr_size;
    tc_err err;
} tc_lake_clean;

/* The index of partition among the recovered ones, or -1 when this recovery does not cover it. */
static ptrdiff_t tc_lake_clean_index(const tc_lake_clean *c, int32_t partition)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->parts[i] == partition)
            return (ptrdiff_t)i;
    }
    return -1;
}

/*
 * Whether a recovery removes the file nm (of partition index i, -1 when not recovered here).
 *
 * Of a recovered partition: a renamed file from the progress on (a commit that did not finish),
 * and an open file unless another member still lives to delete it itself (it owned the partition
 * until now and cannot commit it any more: fenced).
 *
 * Of a partition not recovered here, only an open file of a member that is gone: only its member
 * could have committed it, and the recovery of its partition may have run while that member still
 * lived (a member killed between losing a partition and handing it back) -- it would stay until
 * the partition moved again. This sink's own files and those of a writer without a member name
 * (not known to be gone) are left to their partition's recovery. A missing lock file reads as gone.
 */
static int tc_lake_clean_removes(const tc_lake_clean *c, const tc_lake_name *nm, ptrdiff_t i)
{
    size_t len = strlen(nm->member);
    int is_open = nm->kind == TC_LAKE_FILE_OPEN;

    if (i < 0) {
        if (!is_open || len == 0 ||
            (len == strlen(c->l->member) && !strcmp(nm->member, c->l->member)))
            return 0;
        return !tc_lake_member_alive(c->l, nm->member, len);
    }
    if (!is_open)
        return c->progress[i] < 0 || nm->first >= c->progress[i];
    return !tc_lake_member_alive(c->l, nm->member, len);
}

/* Remove what an interrupted commit of the given partitions, and gone members' open files of any
 * partition, left behind in one day directory. A file of a recovered partition that cannot be
 * removed (a read-only file system) is an error: left in place, a renamed file beyond the progress
 * would show its readings twice once they are written again. A gone member's file of another
 * partition that cannot be removed is left to that partition's own recovery, which reports it.
 * Names are decoded by lake/layout.h, so a file of another topic whose name merely starts with
 * ours is never taken for one of ours. */
static tc_err tc_lake_clean_dir(void *opaque, const char *dir, int64_t day)
{
    tc_lake_clean *c = opaque;
    char path[TC_LAKE_PATH_MAX];
    struct dirent *de;
    DIR *d = opendir(dir);
    int removed = 0;

    (void)day;
    if (!d)
        return TC_OK;
    while ((de = readdir(d)) != NULL) {
        tc_lake_name nm;
        ptrdiff_t i;
        if (!tc_lake_name_is_topic(de->d_name, c->l->topic, &nm))
            continue;
        i = tc_lake_clean_index(c, nm.partition);
        if (!tc_lake_clean_removes(c, &nm, i))
            continue;
        tc_path_fmt(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (unlink(path) == 0) {
            removed++;
            tc_log_warn("lake", "removed %s%s", path,
                        i < 0 ? ", an open file of a member that is gone"
                              : " left by an interrupted commit");
        } else if (i >= 0 && errno != ENOENT && c->err == TC_OK) {
            c->err = tc_err_set(TC_ERR_IO, c->errstr, c->errstr_size,
                                "could not remove \"%s\" left by an interrupted commit: %s", path,
                                strerror(errno));
        }
    }
    closedir(d);
    if (removed) {
        char ignored[TC_ERRSTR_MAX];
        tc_durable_sync_dir(dir, ignored, sizeof(ignored));
    }
    return TC_OK; /* every day is cleaned; c->err keeps the first failure */
}

/* Clean every day of the lake for the recovered partitions. */
static tc_err tc_lake_walk_clean(tc_lake *l, const int32_t *parts, const int64_t *progress,
                                 size_t n, char *errstr, size_t errstr_size)
{
    tc_lake_clean c = {l, parts, progress, n, errstr, errstr_size, TC_OK};
    tc_err err = tc_lake_walk_days(l->root, tc_lake_clean_dir, &c);

    if (err != TC_OK && c.err == TC_OK)
        return tc_err_set(err, errstr, errstr_size, "could not list the days of the lake \"%s\"",
                          l->root);
    return c.err;
}

/* Partitions recovered under their progress locks at once (one walk of the days each). */
#define TC_LAKE_LOCK_CHUNK 64

static int tc_lake_cmp_part(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Recover parts[0..n) (at most TC_LAKE_LOCK_CHUNK, ascending: every member takes the locks in the
 * same order, so two recoveries cannot wait for each other) under their progress locks. */
static tc_err tc_lake_open_chunk(tc_lake *l, const int32_t *parts, size_t n, int64_t *progress,
                                 char *errstr, size_t errstr_size)
{
    int locks[TC_LAKE_LOCK_CHUNK];
    size_t nlocks = 0;
    tc_err err = TC_OK;

    for (size_t i = 0; i < n && err == TC_OK; i++) {
        tc_lake_part *p = tc_lake_part_get(l, parts[i], 1);
        if (!p) {
            err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
            break;
        }
        if ((locks[nlocks] = tc_lake_progress_lock(l, parts[i], errstr, errstr_size)) < 0) {
            err = TC_ERR_IO;
            break;
        }
        nlocks++;
        tc_lake_discard(p);
        progress[i] = tc_lake_read_progress(l, parts[i], errstr, errstr_size);
        if (progress[i] == TC_LAKE_PROGRESS_UNREADABLE) {
            err = TC_ERR_IO;
            break;
        }
        p->active = 1;
        p->durable_next = p->advanced_next = progress[i];
        p->range_first = -1;
        p->opened_us = 0;
    }
    if (err == TC_OK)
        err = tc_lake_walk_clean(l, parts, progress, n, errstr, errstr_size);
    for (size_t i = 0; i < nlocks; i++)
        close(locks[i]);
    return err;
}

tc_err tc_lake_open_partitions(tc_lake *l, const int32_t *parts, size_t n, int64_t *next,
                               char *errstr, size_t errstr_size)
{
    int32_t *sorted = malloc((n + 1) * sizeof(*sorted));
    int64_t *progress = malloc((n + 1) * sizeof(*progress));
    tc_err err = sorted && progress ? TC_OK : TC_ERR_NOMEM;

    tc_lake_member_lock(l);
    if (err == TC_OK) {
        memcpy(sorted, parts, n * sizeof(*sorted));
        qsort(sorted, n, sizeof(*sorted), tc_lake_cmp_part);
    }
    for (size_t at = 0; at < n && err == TC_OK; at += TC_LAKE_LOCK_CHUNK)
        err = tc_lake_open_chunk(l, sorted + at,
                                 n - at < TC_LAKE_LOCK_CHUNK ? n - at : TC_LAKE_LOCK_CHUNK,
                                 progress + at, errstr, errstr_size);
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        const int32_t *hit = bsearch(&parts[i], sorted, n, sizeof(*sorted), tc_lake_cmp_part);
        next[i] = progress[hit - sorted];
    }
    if (err == TC_ERR_NOMEM)
        tc_err_set(err, errstr, errstr_size, "out of memory");
    free(sorted);
    free(progress);
    return err;
}

int64_t tc_lake_progress(const tc_lake *l, int32_t partition)
{
    char ignored[TC_ERRSTR_MAX];
    int64_t v = tc_lake_read_progress(l, partition, ignored, sizeof(ignored));

    return v >= 0 ? v : -1;
}

int64_t tc_lake_advanced(const tc_lake *l, int32_t partition)
{
    for (size_t i = 0; i < l->nparts; i++) {
        if (l->parts[i].partition == partition)
            return l->parts[i].active ? l->parts[i].advanced_next : -1;
    }
    return -1;
}

int64_t tc_lake_durable(const tc_lake *l, int32_t partition)
{
    for (size_t i = 0; i < l->nparts; i++) {
        if (l->parts[i].partition == partition)
            return l->parts[i].active ? l->parts[i].durable_next : -1;
    }
    return -1;
}

/* The first offset of the commit in progress: where the last commit ended, or, for a partition
 * the lake has never held, the first offset it sees. */
static void tc_lake_start_range(tc_lake_part *p, int64_t first_seen)
{
    if (p->range_first >= 0)
        return;
    p->range_first = p->advanced_next >= 0 ? p->advanced_next : first_seen;
    p->opened_us = tc_time_now_us();
}

void tc_lake_advance(tc_lake *l, int32_t partition, int64_t next_offset)
{
    tc_lake_part *p = tc_lake_part_get(l, partition, 1);

    if (!p || next_offset <= p->advanced_next)
        return;
    tc_lake_start_range(p, next_offset - 1);
    p->advanced_next = next_offset;
}

/* Scratch columns for n rows, including ndyn dynamic ones. */
static tc_err tc_lake_grow_scratch(tc_lake *l, size_t n, size_t ndyn)
{
    /* A column new since the scratch was sized: add its arrays (either may be left over from a
     * failed earlier attempt). */
    for (size_t d = 0; n <= l->scratch_cap && d < ndyn; d++) {
        if (!l->dyn[d])
            l->dyn[d] = malloc(l->scratch_cap * sizeof(double));
        if (!l->dyn_present[d])
            l->dyn_present[d] = malloc(l->scratch_cap);
        if (!l->dyn[d] || !l->dyn_present[d])
            return TC_ERR_NOMEM;
    }
    if (n <= l->scratch_cap)
        return TC_OK;
    tc_lake_free_scratch(l);
    l->idx = malloc(n * sizeof(*l->idx));
    l->time_us = malloc(n * sizeof(*l->time_us));
    l->offset = malloc(n * sizeof(*l->offset));
    l->partition = malloc(n * sizeof(*l->partition));
    l->device = malloc(n * sizeof(*l->device));
    l->tags = malloc(n * sizeof(*l->tags));
    l->extra = malloc(n * sizeof(*l->extra));
    l->schema_version = malloc(n * sizeof(*l->schema_version));
    l->schema_version_present = malloc(n);
    int ok = l->idx && l->time_us && l->offset && l->partition && l->device && l->tags &&
             l->extra && l->schema_version && l->schema_version_present;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        l->metric[m] = malloc(n * sizeof(double));
        l->present[m] = malloc(n);
        ok = ok && l->metric[m] && l->present[m];
    }
    for (size_t d = 0; d < ndyn; d++) {
        l->dyn[d] = malloc(n * sizeof(double));
        l->dyn_present[d] = malloc(n);
        ok = ok && l->dyn[d] && l->dyn_present[d];
    }
    if (!ok)
        return TC_ERR_NOMEM;
    l->scratch_cap = n;
    return TC_OK;
}

static tc_lake_open *tc_lake_file_for(tc_lake *l, tc_lake_part *p, const tc_batch *b, int64_t day,
                                      char *errstr, size_t errstr_size)
{
    tc_parquet_column cols[TC_LC__COUNT + TC_BATCH_DYN_MAX];
    tc_lake_open *f;
    int lock;
    char name[TC_LAKE_NAME_MAX];

    for (f = p->files; f; f = f->next) {
        if (f->day == day)
            return f;
    }
    f = calloc(1, sizeof(*f));
    if (!f) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    f->day = day;
    tc_lake_day_dir(f->dir, sizeof(f->dir), l->root, day);
    tc_lake_name_open(name, sizeof(name), l->topic, p->partition, p->range_first, l->member);
    tc_path_fmt(f->tmp, sizeof(f->tmp), "%s/%s", f->dir, name);
    if (tc_durable_mkdirs(f->dir, errstr, errstr_size) != TC_OK) {
        free(f);
        return NULL;
    }
    /* Compaction swaps whole day directories; the shared day lock keeps it from swapping one
     * between our creating a file there and our renaming it into place (see compact.h). */
    lock = tc_lake_day_lock(l->root, day, 0);
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (lock >= 0)
        close(lock);
    if (f->fd < 0) {
        tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not create \"%s\": %s", f->tmp,
                   strerror(errno));
        free(f);
        return NULL;
    }
    /* The fixed columns, then the metrics schema evolution added so far, as OPTIONAL DOUBLEs:
     * files written before a metric appeared simply lack its column. */
    memcpy(cols, tc_lake_cols, sizeof(tc_lake_cols));
    for (size_t k = 0; k < b->ndyn; k++)
        cols[TC_LC__COUNT + k] =
            (tc_parquet_column){b->dyn_name[k], TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF};
    f->ndyn = b->ndyn;
    f->w = tc_parquet_writer_new(f->fd, cols, TC_LC__COUNT + b->ndyn, &l->pq, errstr, errstr_size);
    if (!f->w) {
        close(f->fd);
        unlink(f->tmp);
        free(f);
        return NULL;
    }
    f->next = p->files;
    p->files = f;
    return f;
}

/* Gather the rows listed in l->idx[0..n) into the scratch columns and write them to f. */
static tc_err tc_lake_write_group(tc_lake *l, tc_lake_open *f, const tc_batch *b, size_t n,
                                  char *errstr, size_t errstr_size)
{
    tc_parquet_values v[TC_LC__COUNT + TC_BATCH_DYN_MAX];

    for (size_t k = 0; k < n; k++) {
        size_t i = l->idx[k];
        l->time_us[k] = b->time_us[i];
        l->device[k] = b->device_id[i];
        l->tags[k] = b->tags[i];
        l->extra[k] = b->extra[i];
        l->partition[k] = b->partition[i];
        l->offset[k] = b->offset[i];
        l->schema_version[k] = b->schema_version[i];
        l->schema_version_present[k] = b->schema_version[i] != 0;
        for (int m = 0; m < TC_METRIC__COUNT; m++) {
            l->metric[m][k] = b->metric[m][i];
            l->present[m][k] = b->present[m][i];
        }
        for (size_t d = 0; d < f->ndyn; d++) {
            l->dyn[d][k] = b->dyn[d][i];
            l->dyn_present[d][k] = b->dyn_present[d][i];
        }
    }
    for (size_t d = 0; d < f->ndyn; d++)
        v[TC_LC__COUNT + d] = (tc_parquet_values){l->dyn[d], l->dyn_present[d]};
    v[TC_LC_TIME] = (tc_parquet_values){l->time_us, NULL};
    v[TC_LC_DEVICE] = (tc_parquet_values){l->device, NULL};
    for (int m = 0; m < TC_METRIC__COUNT; m++)
        v[TC_LC_METRIC0 + m] = (tc_parquet_values){l->metric[m], l->present[m]};
    v[TC_LC_TAGS] = (tc_parquet_values){l->tags, NULL};
    v[TC_LC_EXTRA] = (tc_parquet_values){l->extra, NULL};
    v[TC_LC_PARTITION] = (tc_parquet_values){l->partition, NULL};
    v[TC_LC_OFFSET] = (tc_parquet_values){l->offset, NULL};
    v[TC_LC_SCHEMA_VERSION] = (tc_parquet_values){l->schema_version, l->schema_version_present};
    f->rows += n;
    return tc_parquet_write(f->w, v, n, errstr, errstr_size);
}

static tc_err tc_lake_commit_part(tc_lake *l, tc_lake_part *p, char *errstr, size_t errstr_size);

tc_err tc_lake_append(tc_lake *l, const tc_batch *b, const uint8_t *mask, char *errstr,
                      size_t errstr_size)
{
    struct {
        int32_t partition;
        int64_t day;
    } groups[TC_LAKE_GROUPS_MAX];
    uint8_t *done = NULL;
    size_t remaining = 0;
    tc_err err = TC_OK;

    if (b->n == 0)
        return TC_OK;
    if (tc_lake_grow_scratch(l, b->n, b->ndyn) != TC_OK)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    done = calloc(b->n, 1);
    if (!done)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    for (size_t i = 0; i < b->n; i++) {
        if (mask && !mask[i])
            done[i] = 1;
        else
            remaining++;
    }
    /* A metric new to this batch: commit the open files of every partition first, before any of
     * the batch's rows go in, so that the new files start with the wider schema at a clean
     * offset boundary. */
    for (size_t i = 0; i < l->nparts && err == TC_OK; i++) {
        tc_lake_part *p = &l->parts[i];
        int narrower = 0;
        for (tc_lake_open *f = p->files; f; f = f->next)
            narrower |= f->ndyn < b->ndyn;
        if (p->active && narrower)
            err = tc_lake_commit_part(l, p, errstr, errstr_size);
    }
    while (remaining > 0 && err == TC_OK) {
        size_t ngroups = 0;
        /* One pass: collect up to TC_LAKE_GROUPS_MAX distinct groups... */
        for (size_t i = 0; i < b->n && ngroups < TC_LAKE_GROUPS_MAX; i++) {
            int64_t day = tc_time_day_of(b->time_us[i]);
            size_t g;
            if (done[i])
                continue;
            for (g = 0; g < ngroups; g++) {
                if (groups[g].partition == b->partition[i] && groups[g].day == day)
                    break;
            }
            if (g == ngroups) {
                groups[g].partition = b->partition[i];
                groups[g].day = day;
                ngroups++;
            }
        }
        /* ...then write each group's rows, in batch (hence offset) order. */
        for (size_t g = 0; g < ngroups && err == TC_OK; g++) {
            tc_lake_part *p = tc_lake_part_get(l, groups[g].partition, 1);
            tc_lake_open *f;
            size_t n = 0;
            for (size_t i = 0; i < b->n; i++) {
                if (!done[i] && b->partition[i] == groups[g].partition &&
                    tc_time_day_of(b->time_us[i]) == groups[g].day) {
                    l->idx[n++] = i;
                    done[i] = 1;
                }
            }
            remaining -= n;
            if (!p) {
                err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
                break;
            }
            tc_lake_start_range(p, b->offset[l->idx[0]]);
            tc_lake_advance(l, p->partition, b->offset[l->idx[n - 1]] + 1);
            f = tc_lake_file_for(l, p, b, groups[g].day, errstr, errstr_size);
            err = f ? tc_lake_write_group(l, f, b, n, errstr, errstr_size) : TC_ERR_IO;
        }
    }
    free(done);
    return err;
}

static uint64_t tc_lake_part_bytes(const tc_lake_part *p)
{
    uint64_t bytes = 0;

    for (const tc_lake_open *f = p->files; f; f = f->next)
        bytes += tc_parquet_writer_bytes(f->w) + tc_parquet_writer_buffered(f->w);
    return bytes;
}

/* Finish one file: footer, fsync, rename to its final name, fsync of the directory. */
static tc_err tc_lake_finish_file(tc_lake *l, tc_lake_part *p, tc_lake_open *f, int64_t last,
                                  tc_lake_file_info *info, char *errstr, size_t errstr_size)
{
    char kv[64], name[TC_LAKE_NAME_MAX];
    tc_err err;
    int lock;

    tc_lake_name_part(name, sizeof(name), l->topic, p->partition, p->range_first, last);
    tc_path_fmt(info->path, sizeof(info->path), "%s/%s", f->dir, name);
    err = tc_parquet_add_kv(f->w, TC_LAKE_KV_VERSION, TC_VERSION, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_parquet_add_kv(f->w, TC_LAKE_KV_SCHEMA_VERSION, "1", errstr, errstr_size);
    if (err == TC_OK)
        err = tc_parquet_add_kv(f->w, TC_LAKE_KV_TOPIC, l->topic, errstr, errstr_size);
    tc_path_fmt(kv, sizeof(kv), "%d", p->partition);
    if (err == TC_OK)
        err = tc_parquet_add_kv(f->w, TC_LAKE_KV_PARTITION, kv, errstr, errstr_size);
    tc_path_fmt(kv, sizeof(kv), "%" PRId64, p->range_first);
    if (err == TC_OK)
        err = tc_parquet_add_kv(f->w, TC_LAKE_KV_FIRST_OFFSET, kv, errstr, errstr_size);
    tc_path_fmt(kv, sizeof(kv), "%" PRId64, last);
    if (err == TC_OK)
        err = tc_parquet_add_kv(f->w, TC_LAKE_KV_LAST_OFFSET, kv, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_parquet_close(f->w, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (fsync(f->fd) != 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not fsync \"%s\": %s", f->tmp,
                          strerror(errno));
    lock = tc_lake_day_lock(l->root, f->day, 0);
    /* Never over a file of the same name: that is another member's commit of the same range
     * (fenced). link fails on an existing name where rename would replace it. */
    if (link(f->tmp, info->path) == 0) {
        unlink(f->tmp);
    } else if (errno == EEXIST) {
        tc_err_set(TC_ERR_FENCED, errstr, errstr_size,
                   "lake partition %d: \"%s\" exists already: another member committed it",
                   p->partition, info->path);
        if (lock >= 0)
            close(lock);
        return TC_ERR_FENCED;
    } else if ((errno != EPERM && errno != ENOTSUP && errno != EXDEV) ||
               rename(f->tmp, info->path) != 0) { /* a file system without hard links */
        tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not rename \"%s\": %s", f->tmp,
                   strerror(errno));
        if (lock >= 0)
            close(lock);
        return TC_ERR_IO;
    }
    info->day = f->day;
    info->partition = p->partition;
    info->first_offset = p->range_first;
    info->last_offset = last;
    info->rows = f->rows;
    info->bytes = tc_parquet_writer_bytes(f->w);
    err = tc_durable_sync_dir(f->dir, errstr, errstr_size);
    if (lock >= 0)
        close(lock);
    return err;
}

/*
 * Fencing: a commit holds the partition's progress lock, and goes on only while the progress is
 * where this sink read or wrote it last. Otherwise another member has committed the partition
 * since (it owns it now, or owned it while this one stalled): the open files are discarded, the
 * files this commit renamed already are removed, and TC_ERR_FENCED tells the caller to read the
 * progress again.
 */
static tc_err tc_lake_commit_part(tc_lake *l, tc_lake_part *p, char *errstr, size_t errstr_size)
{
    tc_lake_file_info *infos = NULL;
    size_t nfiles = 0, k = 0;
    tc_err err = TC_OK;
    int64_t stored;
    int lock;

    if (p->advanced_next <= p->durable_next && !p->files)
        return TC_OK;
    for (tc_lake_open *f = p->files; f; f = f->next)
        nfiles++;
    if (nfiles && !(infos = calloc(nfiles, sizeof(*infos))))
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    if ((lock = tc_lake_progress_lock(l, p->partition, errstr, errstr_size)) < 0) {
        free(infos);
        return TC_ERR_IO;
    }
    stored = tc_lake_read_progress(l, p->partition, errstr, errstr_size);
    if (stored == TC_LAKE_PROGRESS_UNREADABLE)
        err = TC_ERR_IO;
    else if (stored != p->durable_next)
        err = tc_err_set(TC_ERR_FENCED, errstr, errstr_size,
                         "lake partition %d: the progress is %lld, not %lld where this member "
                         "read it: another member committed it",
                         p->partition, (long long)stored, (long long)p->durable_next);
    for (tc_lake_open *f = p->files; f && err == TC_OK; f = f->next) {
        err = tc_lake_finish_file(l, p, f, p->advanced_next - 1, &infos[k], errstr, errstr_size);
        k += err == TC_OK;
    }
    if (err == TC_OK)
        err = tc_lake_progress_write(l->root, l->topic, p->partition, p->advanced_next, errstr,
                                     errstr_size);
    if (err == TC_ERR_FENCED) {
        for (size_t i = 0; i < k; i++) /* ours (link does not replace): not committed */
            unlink(infos[i].path);
        tc_log_warn("lake", "%s; dropping its open files", errstr);
    }
    close(lock);
    if (err != TC_OK) {
        /* Nothing is committed without the progress file; the next recovery removes what was
         * renamed, and the readings are consumed again from the durable offset. */
        tc_lake_discard(p);
        free(infos);
        return err;
    }
    tc_lake_discard(p); /* writers are closed and files renamed: only frees */
    p->durable_next = p->advanced_next;
    p->range_first = -1;
    p->opened_us = 0;
    for (size_t i = 0; i < k; i++) {
        tc_log_debug("lake", "committed %s (%" PRIu64 " rows)", infos[i].path, infos[i].rows);
        if (l->on_commit)
            l->on_commit(l->on_commit_opaque, &infos[i]);
    }
    free(infos);
    return TC_OK;
}

tc_err tc_lake_commit_due(tc_lake *l, int64_t now_us, int force, char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;

    for (size_t i = 0; i < l->nparts && err == TC_OK; i++) {
        tc_lake_part *p = &l->parts[i];
        if (!p->active || p->advanced_next <= p->durable_next)
            continue;
        if (force || (p->opened_us && now_us - p->opened_us >= l->opt.roll_us) ||
            tc_lake_part_bytes(p) >= l->opt.roll_bytes)
            err = tc_lake_commit_part(l, p, errstr, errstr_size);
    }
    return err;
}

tc_err tc_lake_close_partition(tc_lake *l, int32_t partition, int commit, char *errstr,
                               size_t errstr_size)
{
    tc_lake_part *p = tc_lake_part_get(l, partition, 0);
    tc_err err = TC_OK;

    if (!p)
        return TC_OK;
    if (commit && p->active)
        err = tc_lake_commit_part(l, p, errstr, errstr_size);
    tc_lake_discard(p);
    p->active = 0;
    return err;
}
