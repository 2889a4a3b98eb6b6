/*
 * replicate.c -- incremental, checksum-verified copy of the lake to a second location; see
 * replicate.h for the order of steps and why it keeps the replica consistent.
 *
 * The walk is plain readdir over the three partition levels (year=, month=, day=): the order does
 * not matter, because every file is independent and the progress snapshot, read before the walk,
 * is what the replica claims. One buffer of TC_REPLICA_CHUNK bytes serves every copy and read-back.
 */
#define _GNU_SOURCE
#include "lake/replicate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/durable.h"
#include "core/path.h"
#include "core/timeutil.h"
#include "lake/compact.h"
#include "lake/layout.h"

/* Read and write in pieces of this size (a copy streams; it never holds a whole file). */
#define TC_REPLICA_CHUNK ((size_t)1 << 20)
/* The state file: a few lines per partition. */
#define TC_REPLICA_STATE_MAX ((size_t)TC_LAKE_REPLICA_PROGRESS_MAX * 300 + 1024)
/* Temporary copies are hidden and end in .tmp, like the sink's, so no reader's glob takes them. */
#define TC_REPLICA_TMP_PREFIX ".replica-"

typedef struct tc_replica_progress {
    char topic[TC_LAKE_REPLICA_TOPIC_MAX];
    int32_t partition;
    int64_t next;
} tc_replica_progress;

typedef struct tc_replica_run {
    const char *src, *dst;
    const tc_lake_replicate_options *o;
    tc_lake_replicate_result *res;
    unsigned char *buf; /* TC_REPLICA_CHUNK bytes */
    tc_replica_progress *snap;
    size_t nsnap;
    char *errstr;
    size_t errstr_size;
} tc_replica_run;

/* Called for every entry of a day directory: rel is "telemetry/year=../month=../day=..". */
typedef tc_err (*tc_replica_day_fn)(tc_replica_run *r, const char *rel, const char *name);

static int tc_replica_stopped(const tc_replica_run *r)
{
    return r->o->stop && *r->o->stop;
}

/* The source's lock of the day directory rel ("telemetry/year=Y/month=M/day=D"), shared: `lake
 * compact` holds it exclusively while it swaps the day, so a day is never listed half swapped
 * (its part files copied, then pruned because the source has only the compacted file now, and
 * the compacted file not seen). The sink holds it shared too. Returns the fd to close, or -1. */
static int tc_replica_day_lock(tc_replica_run *r, const char *rel)
{
    int y, m, d, fd;

    if (sscanf(rel, "telemetry/year=%d/month=%d/day=%d", &y, &m, &d) != 3 || m < 1 || m > 12 ||
        d < 1 || d > 31)
        return -2; /* not a day of ours: nothing to lock, nothing in it is copied */
    fd = tc_lake_day_lock(r->src, tc_time_days_from_civil(y, (unsigned)m, (unsigned)d), 0);
    if (fd < 0 && errno == EROFS)
        return -2; /* a read-only lake (a replica copied back) is compacted by no one */
    if (fd < 0)
        tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size,
                   "could not take the lock of day %04d-%02d-%02d in \"%s\": %s", y, m, d, r->src,
                   strerror(errno));
    return fd;
}

/* Visit every entry of every day directory under <root>/telemetry. */
static tc_err tc_replica_walk(tc_replica_run *r, const char *root, const char *rel, int level,
                              tc_replica_day_fn fn)
{
    static const char *const prefix[] = {"year=", "month=", "day="};
    char dir[TC_PATH_MAX], sub[TC_PATH_MAX];
    struct dirent *de;
    tc_err err = TC_OK;
    int lock = -1;
    DIR *d;

    if (tc_path_fmt(dir, sizeof(dir), "%s/%s", root, rel) < 0)
        return tc_err_set(TC_ERR_INVALID, r->errstr, r->errstr_size, "path too long: %s/%s", root,
                          rel);
    if (level == 3 && (lock = tc_replica_day_lock(r, rel)) == -1)
        return TC_ERR_IO;
    d = opendir(dir);
    if (!d) {
        int saved = errno;
        if (lock >= 0)
            close(lock);
        return saved == ENOENT ? TC_OK
                               : tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size,
                                            "could not list \"%s\": %s", dir, strerror(saved));
    }
    while (err == TC_OK && (de = readdir(d)) != NULL) {
        if (tc_replica_stopped(r)) {
            err = tc_err_set(TC_ERR_STOPPED, r->errstr, r->errstr_size, "stopped");
            break;
        }
        if (level == 3) {
            err = fn(r, rel, de->d_name);
            continue;
        }
        if (strncmp(de->d_name, prefix[level], strlen(prefix[level])) != 0)
            continue;
        if (tc_path_fmt(sub, sizeof(sub), "%s/%s", rel, de->d_name) < 0)
            continue;
        err = tc_replica_walk(r, root, sub, level + 1, fn);
    }
    closedir(d);
    if (lock >= 0)
        close(lock);
    return err;
}

/* Checksum of a whole open file from where it stands; -1 in *n on a read error. */
static uint32_t tc_replica_crc_fd(tc_replica_run *r, int fd, int64_t *n)
{
    uint32_t crc = 0;

    *n = 0;
    for (;;) {
        ssize_t got = read(fd, r->buf, TC_REPLICA_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            *n = -1;
            return 0;
        }
        if (got == 0)
            return crc;
        crc = tc_crc32c(crc, r->buf, (size_t)got);
        *n += got;
    }
}

static int tc_replica_same_checksum(tc_replica_run *r, const char *a, const char *b)
{
    int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC), same = 0;
    int64_t na, nb;

    if (fa >= 0 && fb >= 0) {
        uint32_t ca = tc_replica_crc_fd(r, fa, &na), cb = tc_replica_crc_fd(r, fb, &nb);
        same = na >= 0 && na == nb && ca == cb;
    }
    if (fa >= 0)
        close(fa);
    if (fb >= 0)
        close(fb);
    return same;
}

static tc_err tc_replica_write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return TC_ERR_IO;
        p += w;
        n -= (size_t)w;
    }
    return TC_OK;
}

/*
 * Copy src_path to dst_dir/name through a temporary file: checksum while copying, fsync, drop the
 * copy from the page cache, read it back from the disk and compare, set the mtime, rename, fsync
 * the directory. TC_ERR_NOT_FOUND when the source vanished (a compaction or recovery removed it).
 */
static tc_err tc_replica_copy(tc_replica_run *r, const char *src_path, const char *dst_dir,
                              const char *name)
{
    char tmp[TC_PATH_MAX], dest[TC_PATH_MAX];
    struct stat st;
    uint32_t crc_src = 0, crc_back;
    int64_t copied = 0, back;
    tc_err err = TC_OK;
    int in, out;

    if (tc_path_fmt(tmp, sizeof(tmp), "%s/" TC_REPLICA_TMP_PREFIX "%s.tmp", dst_dir, name) < 0 ||
        tc_path_fmt(dest, sizeof(dest), "%s/%s", dst_dir, name) < 0)
        return tc_err_set(TC_ERR_INVALID, r->errstr, r->errstr_size, "path too long: %s/%s",
                          dst_dir, name);
    in = open(src_path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return errno == ENOENT ? TC_ERR_NOT_FOUND
                               : tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size,
                                            "could not open \"%s\": %s", src_path, strerror(errno));
    if (fstat(in, &st) != 0) {
        close(in);
        return tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size, "could not stat \"%s\": %s",
                          src_path, strerror(errno));
    }
    if ((err = tc_durable_mkdirs(dst_dir, r->errstr, r->errstr_size)) != TC_OK) {
        close(in);
        return err;
    }
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size, "could not create \"%s\": %s", tmp,
                          strerror(errno));
    }
    for (;;) {
        ssize_t got = read(in, r->buf, TC_REPLICA_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            err = tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size, "could not read \"%s\": %s",
                             src_path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        crc_src = tc_crc32c(crc_src, r->buf, (size_t)got);
        copied += got;
        if (tc_replica_write_all(out, r->buf, (size_t)got) != TC_OK) {
            err = tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size, "could not write \"%s\": %s",
                             tmp, strerror(errno));
            break;
        }
    }
    close(in);
    if (err == TC_OK && copied != (int64_t)st.st_size)
        err = tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size,
                         "\"%s\" changed while it was copied (%" PRId64 " bytes, %lld expected): "
                         "lake files are never rewritten in place",
                         src_path, copied, (long long)st.st_size);
    if (err == TC_OK && fsync(out) != 0)
        err = tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size, "could not fsync \"%s\": %s", tmp,
                         strerror(errno));
    if (err == TC_OK) {
        /* Read back what the disk holds, not what the page cache still has. */
        posix_fadvise(out, 0, 0, POSIX_FADV_DONTNEED);
        close(out);
        if (r->o->on_written)
            r->o->on_written(r->o->opaque, tmp);
        out = open(tmp, O_RDONLY | O_CLOEXEC);
        crc_back = out >= 0 ? tc_replica_crc_fd(r, out, &back) : (back = -1, 0u);
        if (back != copied || crc_back != crc_src)
            err = tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size,
                             "checksum mismatch: \"%s\" has crc32c %08x (%" PRId64
                             " bytes), its copy \"%s\" read back %08x (%" PRId64 " bytes)",
                             src_path, crc_src, copied, tmp, crc_back, back);
    }
    if (err == TC_OK) {
        struct timespec times[2] = {st.st_atim, st.st_mtim};
        if (futimens(out, times) != 0)
            err = tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size,
                             "could not set the times of \"%s\": %s", tmp, strerror(errno));
    }
    if (out >= 0)
        close(out);
    if (err == TC_OK && rename(tmp, dest) != 0)
        err = tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size,
                         "could not rename \"%s\" to \"%s\": %s", tmp, dest, strerror(errno));
    if (err != TC_OK) {
        unlink(tmp);
        return err;
    }
    r->res->files_copied++;
    r->res->bytes_copied += (uint64_t)copied;
    return tc_durable_sync_dir(dst_dir, r->errstr, r->errstr_size);
}

static int tc_replica_is_data(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 8 && !strcmp(name + n - 8, ".parquet");
}

/* Step 2 for one source entry. */
static tc_err tc_replica_push(tc_replica_run *r, const char *rel, const char *name)
{
    char sp[TC_PATH_MAX], dp[TC_PATH_MAX], ddir[TC_PATH_MAX];
    struct stat ss, ds;
    tc_err err;

    if (!tc_replica_is_data(name))
        return TC_OK;
    if (tc_path_fmt(sp, sizeof(sp), "%s/%s/%s", r->src, rel, name) < 0 ||
        tc_path_fmt(dp, sizeof(dp), "%s/%s/%s", r->dst, rel, name) < 0 ||
        tc_path_fmt(ddir, sizeof(ddir), "%s/%s", r->dst, rel) < 0)
        return tc_err_set(TC_ERR_INVALID, r->errstr, r->errstr_size, "path too long: %s/%s", rel,
                          name);
    if (lstat(sp, &ss) != 0) {
        r->res->files_vanished += errno == ENOENT;
        return TC_OK;
    }
    if (!S_ISREG(ss.st_mode))
        return TC_OK;
    r->res->files_seen++;
    if (lstat(dp, &ds) == 0 && S_ISREG(ds.st_mode) && ds.st_size == ss.st_size) {
        if (!r->o->checksum_all && ds.st_mtim.tv_sec == ss.st_mtim.tv_sec &&
            ds.st_mtim.tv_nsec == ss.st_mtim.tv_nsec)
            return TC_OK;
        if (r->o->checksum_all && tc_replica_same_checksum(r, sp, dp)) {
            r->res->files_verified++;
            return TC_OK;
        }
    }
    err = tc_replica_copy(r, sp, ddir, name);
    if (err == TC_ERR_NOT_FOUND) {
        r->res->files_seen--;
        r->res->files_vanished++;
        return TC_OK;
    }
    if (err == TC_OK && r->o->on_copied)
        r->o->on_copied(r->o->opaque, sp + strlen(r->src) + 1, (uint64_t)ss.st_size);
    return err;
}

/* Step 3 for one replica entry: remove what the source no longer has, and our own leftovers. */
static tc_err tc_replica_prune(tc_replica_run *r, const char *rel, const char *name)
{
    char sp[TC_PATH_MAX], dp[TC_PATH_MAX], ddir[TC_PATH_MAX];
    struct stat ss;
    size_t n = strlen(name);
    int leftover = !strncmp(name, TC_REPLICA_TMP_PREFIX, strlen(TC_REPLICA_TMP_PREFIX)) && n > 4 &&
                   !strcmp(name + n - 4, ".tmp");

    if (!leftover && !tc_replica_is_data(name))
        return TC_OK;
    if (tc_path_fmt(sp, sizeof(sp), "%s/%s/%s", r->src, rel, name) < 0 ||
        tc_path_fmt(dp, sizeof(dp), "%s/%s/%s", r->dst, rel, name) < 0 ||
        tc_path_fmt(ddir, sizeof(ddir), "%s/%s", r->dst, rel) < 0)
        return TC_OK;
    if (!leftover && (lstat(sp, &ss) == 0 || errno != ENOENT))
        return TC_OK;
    if (unlink(dp) != 0 && errno != ENOENT)
        return tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size, "could not remove \"%s\": %s", dp,
                          strerror(errno));
    r->res->files_deleted += !leftover;
    return tc_durable_sync_dir(ddir, r->errstr, r->errstr_size);
}

static tc_err tc_replica_add_progress(tc_replica_run *r, const char *topic, int32_t partition,
                                      int64_t next)
{
    tc_replica_progress *p;

    if (r->nsnap >= TC_LAKE_REPLICA_PROGRESS_MAX)
        return tc_err_set(TC_ERR_INVALID, r->errstr, r->errstr_size,
                          "more than %d progress files in \"%s/_thermocline/progress\"",
                          TC_LAKE_REPLICA_PROGRESS_MAX, r->src);
    p = &r->snap[r->nsnap++];
    snprintf(p->topic, sizeof(p->topic), "%s", topic);
    p->partition = partition;
    p->next = next;
    return TC_OK;
}

/* Read every <root>/_thermocline/progress/<topic>/<P> into r->snap. */
static tc_err tc_replica_read_progress(tc_replica_run *r, const char *root)
{
    char base[TC_PATH_MAX], tdir[TC_PATH_MAX], path[TC_PATH_MAX];
    struct dirent *te, *pe;
    tc_err err = TC_OK;
    DIR *d, *td;

    r->nsnap = 0;
    tc_path_fmt(base, sizeof(base), "%s/_thermocline/progress", root);
    d = opendir(base);
    if (!d)
        return errno == ENOENT ? TC_OK
                               : tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size,
                                            "could not list \"%s\": %s", base, strerror(errno));
    while (err == TC_OK && (te = readdir(d)) != NULL) {
        if (te->d_name[0] == '.' || strlen(te->d_name) >= TC_LAKE_REPLICA_TOPIC_MAX ||
            tc_path_fmt(tdir, sizeof(tdir), "%s/%s", base, te->d_name) < 0 || !(td = opendir(tdir)))
            continue;
        while (err == TC_OK && (pe = readdir(td)) != NULL) {
            char *end;
            long part = strtol(pe->d_name, &end, 10);
            int64_t next = -1;
            if (pe->d_name[0] < '0' || pe->d_name[0] > '9' || *end || part > INT32_MAX ||
                tc_path_fmt(path, sizeof(path), "%s/%s", tdir, pe->d_name) < 0)
                continue;
            err = tc_lake_progress_read_path(path, &next, r->errstr, r->errstr_size);
            if (err == TC_OK && next < 0)
                err = tc_err_set(TC_ERR_IO, r->errstr, r->errstr_size,
                                 "progress file \"%s\" went away while copying", path);
            if (err == TC_OK)
                err = tc_replica_add_progress(r, te->d_name, (int32_t)part, next);
        }
        closedir(td);
    }
    closedir(d);
    return err;
}

/* Step 4: the snapshot's progress, then the state file. */
static tc_err tc_replica_commit(tc_replica_run *r)
{
    char dir[TC_PATH_MAX];
    char *state = malloc(TC_REPLICA_STATE_MAX);
    size_t used;
    tc_err err = TC_OK;

    if (!state)
        return tc_err_set(TC_ERR_NOMEM, r->errstr, r->errstr_size, "out of memory");
    for (size_t i = 0; i < r->nsnap && err == TC_OK; i++) {
        const tc_replica_progress *p = &r->snap[i];
        err = tc_lake_progress_write(r->dst, p->topic, p->partition, p->next, r->errstr,
                                     r->errstr_size);
    }
    r->res->finished_us = tc_time_now_us();
    used = (size_t)snprintf(state, TC_REPLICA_STATE_MAX,
                            "snapshot_us %" PRId64 "\nfinished_us %" PRId64 "\nfiles %" PRIu64
                            "\ncopied %" PRIu64 "\nbytes_copied %" PRIu64 "\ndeleted %" PRIu64 "\n",
                            r->res->snapshot_us, r->res->finished_us, r->res->files_seen,
                            r->res->files_copied, r->res->bytes_copied, r->res->files_deleted);
    for (size_t i = 0; i < r->nsnap && used < TC_REPLICA_STATE_MAX; i++)
        used += (size_t)snprintf(state + used, TC_REPLICA_STATE_MAX - used,
                                 "progress %s %d %" PRId64 "\n", r->snap[i].topic,
                                 (int)r->snap[i].partition, r->snap[i].next);
    tc_path_fmt(dir, sizeof(dir), "%s/_thermocline/replica", r->dst);
    if (err == TC_OK)
        err = tc_durable_replace(dir, "state", state, r->errstr, r->errstr_size);
    free(state);
    return err;
}

/* The absolute, symlink-free form of path, which need not exist yet: realpath of its longest
 * existing prefix, then the rest as written. 0, or -1 with errno. */
static int tc_replica_resolve(const char *path, char *out)
{
    char head[TC_PATH_MAX], real[TC_PATH_MAX];
    const char *sep;
    size_t cut;

    if (strlen(path) >= sizeof(head)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(head, path);
    for (;;) {
        char *slash;
        if (realpath(head[0] ? head : ".", real)) {
            cut = strlen(head);
            break;
        }
        if (errno != ENOENT)
            return -1;
        slash = strrchr(head, '/');
        if (slash == head) { /* only "/" is left, and it exists */
            head[1] = '\0';
            continue;
        }
        if (slash)
            *slash = '\0';
        else
            head[0] = '\0';
    }
    /* path[cut..] is the part that does not exist yet ("/a/b" or "a/b" after a relative head). */
    sep = path[cut] == '/' || path[cut] == '\0' || real[strlen(real) - 1] == '/' ? "" : "/";
    return tc_path_fmt(out, TC_PATH_MAX, "%s%s%s", real, sep, path + cut) < 0 ? -1 : 0;
}

/* Refuse a replica that is the source or lies inside it (it would copy itself), before anything
 * is created. */
static tc_err tc_replica_check_places(const char *src, const char *dst, char *errstr,
                                      size_t errstr_size)
{
    char s[TC_PATH_MAX], d[TC_PATH_MAX], probe[TC_PATH_MAX];
    struct stat st;
    size_t n;

    if (tc_path_fmt(probe, sizeof(probe), "%s/telemetry", src) < 0 || !realpath(src, s) ||
        (stat(probe, &st) != 0 &&
         (tc_path_fmt(probe, sizeof(probe), "%s/_thermocline", src) < 0 || stat(probe, &st) != 0)))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "no lake at \"%s\" (neither telemetry/ nor _thermocline/)", src);
    if (tc_replica_resolve(dst, d) != 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not resolve \"%s\": %s", dst,
                          strerror(errno));
    n = strlen(s);
    if (!strncmp(s, d, n) && (d[n] == '\0' || d[n] == '/'))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "the replica \"%s\" is the lake \"%s\" or inside it", dst, src);
    n = strlen(d);
    if (!strncmp(d, s, n) && s[n] == '/')
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "the lake \"%s\" is inside the replica \"%s\"", src, dst);
    return TC_OK;
}

/* Exclusive, non-blocking lock of the replica; returns the fd or -1 with errstr. */
static int tc_replica_lock(const char *dst, char *errstr, size_t errstr_size)
{
    char dir[TC_PATH_MAX], path[TC_PATH_MAX];
    int fd;

    tc_path_fmt(dir, sizeof(dir), "%s/_thermocline/replica", dst);
    tc_path_fmt(path, sizeof(path), "%s/lock", dir);
    if (tc_durable_mkdirs(dir, errstr, errstr_size) != TC_OK)
        return -1;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not open \"%s\": %s", path,
                   strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                   "another replication into \"%s\" is running (%s is locked)", dst, path);
        close(fd);
        return -1;
    }
    return fd;
}

tc_err tc_lake_replicate(const char *src, const char *dst, const tc_lake_replicate_options *o,
                         tc_lake_replicate_result *res, char *errstr, size_t errstr_size)
{
    static const tc_lake_replicate_options none = {0};
    tc_replica_run r = {.src = src,
                        .dst = dst,
                        .o = o ? o : &none,
                        .res = res,
                        .errstr = errstr,
                        .errstr_size = errstr_size};
    tc_err err;
    int lock;

    memset(res, 0, sizeof(*res));
    if ((err = tc_replica_check_places(src, dst, errstr, errstr_size)) != TC_OK ||
        (err = tc_durable_mkdirs(dst, errstr, errstr_size)) != TC_OK)
        return err;
    if ((lock = tc_replica_lock(dst, errstr, errstr_size)) < 0)
        return TC_ERR_INVALID;
    r.buf = malloc(TC_REPLICA_CHUNK);
    r.snap = calloc(TC_LAKE_REPLICA_PROGRESS_MAX, sizeof(*r.snap));
    if (!r.buf || !r.snap) {
        err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto done;
    }
    /* 1: the snapshot comes before the listing (see replicate.h). */
    res->snapshot_us = tc_time_now_us();
    err = tc_replica_read_progress(&r, src);
    res->progress_files = r.nsnap;
    /* 2, 3, 4 */
    if (err == TC_OK)
        err = tc_replica_walk(&r, src, "telemetry", 0, tc_replica_push);
    if (err == TC_OK)
        err = tc_replica_walk(&r, dst, "telemetry", 0, tc_replica_prune);
    if (err == TC_OK)
        err = tc_replica_commit(&r);
done:
    free(r.buf);
    free(r.snap);
    close(lock);
    return err;
}

tc_err tc_lake_replica_lag_of(const char *src, const char *dst, tc_lake_replica_lag *out,
                              char *errstr, size_t errstr_size)
{
    char path[TC_PATH_MAX], line[TC_LAKE_REPLICA_TOPIC_MAX + 64], topic[TC_LAKE_REPLICA_TOPIC_MAX];
    static const tc_lake_replicate_options none = {0};
    tc_replica_run r = {.src = src, .o = &none, .errstr = errstr, .errstr_size = errstr_size};
    tc_replica_progress *rep;
    size_t nrep = 0;
    tc_err err;
    FILE *f;

    memset(out, 0, sizeof(*out));
    tc_path_fmt(path, sizeof(path), "%s/_thermocline/replica/state", dst);
    f = fopen(path, "r");
    if (!f)
        return tc_err_set(errno == ENOENT ? TC_ERR_NOT_FOUND : TC_ERR_IO, errstr, errstr_size,
                          "could not read \"%s\": %s", path, strerror(errno));
    r.snap = calloc(TC_LAKE_REPLICA_PROGRESS_MAX, sizeof(*r.snap));
    rep = calloc(TC_LAKE_REPLICA_PROGRESS_MAX, sizeof(*rep));
    if (!r.snap || !rep) {
        fclose(f);
        free(r.snap);
        free(rep);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    }
    while (fgets(line, sizeof(line), f)) {
        long long a, b;
        int part;
        if (sscanf(line, "snapshot_us %lld", &a) == 1)
            out->snapshot_us = a;
        else if (sscanf(line, "finished_us %lld", &a) == 1)
            out->finished_us = a;
        else if (nrep < TC_LAKE_REPLICA_PROGRESS_MAX &&
                 sscanf(line, "progress %255s %d %lld", topic, &part, &b) == 3) {
            snprintf(rep[nrep].topic, sizeof(rep[nrep].topic), "%s", topic);
            rep[nrep].partition = part;
            rep[nrep++].next = b;
        }
    }
    fclose(f);
    err = tc_replica_read_progress(&r, src);
    for (size_t i = 0; err == TC_OK && i < r.nsnap; i++) {
        int64_t have = 0;
        for (size_t j = 0; j < nrep; j++)
            if (rep[j].partition == r.snap[i].partition && !strcmp(rep[j].topic, r.snap[i].topic))
                have = rep[j].next;
        out->behind_offsets += r.snap[i].next > have ? r.snap[i].next - have : 0;
        out->partitions++;
    }
    free(r.snap);
    free(rep);
    return err;
}
