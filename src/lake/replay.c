/*
 * replay.c -- rewinding a partition of the lake; see replay.h.
 */
#include "lake/replay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/durable.h"
#include "core/path.h"
#include "lake/parquet_read.h"

/* A file of the partition found in the lake. */
typedef struct tc_rewind_file {
    int64_t first, last;
    uint64_t rows;
} tc_rewind_file;

typedef struct tc_rewind_scan {
    const char *topic;
    int32_t partition;
    tc_rewind_file *files;
    size_t n, cap;
    int64_t compact_last; /* highest offset of the partition in a compacted file, -1 none */
    char compact_path[TC_PATH_MAX];
} tc_rewind_scan;

static int64_t tc_rewind_read_progress(const char *path)
{
    char buf[32];
    long long v = -1;
    FILE *f = fopen(path, "r");

    if (!f)
        return -1;
    if (fgets(buf, sizeof(buf), f))
        v = strtoll(buf, NULL, 10);
    fclose(f);
    return v >= 0 ? v : -1;
}

/* "part-<topic>-p<P>-<first>-<last>.parquet" of our partition: 1 with the range. */
static int tc_rewind_parse(const tc_rewind_scan *sc, const char *name, int64_t *first,
                           int64_t *last)
{
    size_t tl = strlen(sc->topic);
    const char *p = name;
    char *end;
    long part;

    if (strncmp(p, "part-", 5) != 0 || strncmp(p + 5, sc->topic, tl) != 0 || p[5 + tl] != '-' ||
        p[6 + tl] != 'p')
        return 0;
    p += 7 + tl;
    part = strtol(p, &end, 10);
    if (end == p || *end != '-' || part != sc->partition)
        return 0;
    p = end + 1;
    *first = strtoll(p, &end, 10);
    if (end == p || *end != '-')
        return 0;
    p = end + 1;
    *last = strtoll(p, &end, 10);
    return end != p && !strcmp(end, ".parquet");
}

/* A key-value of a file's footer, or NULL. */
static const char *tc_rewind_kv(const tc_parquet_info *info, const char *key, char *buf, size_t cap)
{
    for (size_t i = 0; i < info->nkv; i++) {
        const tc_parquet_kv_info *kv = &info->kv[i];
        if (kv->has_value && kv->key.n == strlen(key) && !memcmp(kv->key.p, key, kv->key.n)) {
            snprintf(buf, cap, "%.*s", (int)kv->value.n, (const char *)kv->value.p);
            return buf;
        }
    }
    return NULL;
}

/* A compacted file: note the highest offset of our partition in it ("P:first-last,..."). */
static void tc_rewind_compacted(tc_rewind_scan *sc, const char *path)
{
    char errstr[TC_ERRSTR_MAX], topic[256], parts[4096];
    tc_parquet_info *info = NULL;
    const char *p;

    if (tc_parquet_verify_path(path, TC_PQ_VERIFY_FOOTER, &info, errstr, sizeof(errstr)) != TC_OK)
        return;
    if (tc_rewind_kv(info, "kafka.topic", topic, sizeof(topic)) && !strcmp(topic, sc->topic) &&
        (p = tc_rewind_kv(info, "kafka.partitions", parts, sizeof(parts))) != NULL) {
        while (*p) {
            long long part, first, last;
            int used = 0;
            if (sscanf(p, "%lld:%lld-%lld%n", &part, &first, &last, &used) != 3 || used == 0)
                break;
            if (part == sc->partition && last > sc->compact_last) {
                sc->compact_last = last;
                snprintf(sc->compact_path, sizeof(sc->compact_path), "%s", path);
            }
            p += used;
            if (*p == ',')
                p++;
        }
    }
    tc_parquet_info_free(info);
}

static tc_err tc_rewind_day(tc_rewind_scan *sc, const char *dir)
{
    char path[TC_PATH_MAX], errstr[TC_ERRSTR_MAX];
    struct dirent *de;
    DIR *d = opendir(dir);

    if (!d)
        return TC_OK;
    while ((de = readdir(d)) != NULL) {
        tc_parquet_info *info = NULL;
        int64_t first, last;
        tc_path_fmt(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (!strncmp(de->d_name, "compact-", 8)) {
            tc_rewind_compacted(sc, path);
            continue;
        }
        if (!tc_rewind_parse(sc, de->d_name, &first, &last))
            continue;
        if (sc->n == sc->cap) {
            size_t cap = sc->cap ? sc->cap * 2 : 64;
            tc_rewind_file *f = realloc(sc->files, cap * sizeof(*f));
            if (!f) {
                closedir(d);
                return TC_ERR_NOMEM;
            }
            sc->files = f;
            sc->cap = cap;
        }
        sc->files[sc->n] = (tc_rewind_file){first, last, 0};
        if (tc_parquet_verify_path(path, TC_PQ_VERIFY_FOOTER, &info, errstr, sizeof(errstr)) ==
            TC_OK)
            sc->files[sc->n].rows = (uint64_t)info->num_rows;
        tc_parquet_info_free(info);
        sc->n++;
    }
    closedir(d);
    return TC_OK;
}

/* Every day directory: <root>/telemetry/year=Y/month=M/day=D. */
static tc_err tc_rewind_walk(tc_rewind_scan *sc, const char *root)
{
    char base[TC_PATH_MAX], ypath[TC_PATH_MAX], mpath[TC_PATH_MAX], dpath[TC_PATH_MAX];
    struct dirent *y, *m, *dd;
    DIR *yd, *md, *ddir;
    tc_err err = TC_OK;

    tc_path_fmt(base, sizeof(base), "%s/telemetry", root);
    if (!(yd = opendir(base)))
        return TC_OK;
    while (err == TC_OK && (y = readdir(yd)) != NULL) {
        if (strncmp(y->d_name, "year=", 5) != 0)
            continue;
        tc_path_fmt(ypath, sizeof(ypath), "%s/%s", base, y->d_name);
        if (!(md = opendir(ypath)))
            continue;
        while (err == TC_OK && (m = readdir(md)) != NULL) {
            if (strncmp(m->d_name, "month=", 6) != 0)
                continue;
            tc_path_fmt(mpath, sizeof(mpath), "%s/%s", ypath, m->d_name);
            if (!(ddir = opendir(mpath)))
                continue;
            while (err == TC_OK && (dd = readdir(ddir)) != NULL) {
                if (strncmp(dd->d_name, "day=", 4) != 0)
                    continue;
                tc_path_fmt(dpath, sizeof(dpath), "%s/%s", mpath, dd->d_name);
                err = tc_rewind_day(sc, dpath);
            }
            closedir(ddir);
        }
        closedir(md);
    }
    closedir(yd);
    return err;
}

/* Write the progress file atomically: temporary name, fsync, rename, fsync of the directory. */
static tc_err tc_rewind_write_progress(const char *dir, int32_t partition, int64_t next,
                                       char *errstr, size_t errstr_size)
{
    char name[16], text[32];

    snprintf(name, sizeof(name), "%d", partition);
    snprintf(text, sizeof(text), "%" PRId64 "\n", next);
    return tc_durable_replace(dir, name, text, errstr, errstr_size);
}

tc_err tc_lake_rewind_partition(const char *root, const char *topic, int32_t partition,
                                int64_t from, int apply, tc_lake_rewind *out, char *errstr,
                                size_t errstr_size)
{
    char dir[TC_PATH_MAX], path[TC_PATH_MAX];
    tc_rewind_scan sc = {.topic = topic, .partition = partition, .compact_last = -1};
    int64_t start;
    tc_err err;

    memset(out, 0, sizeof(*out));
    tc_path_fmt(dir, sizeof(dir), "%s/_thermocline/progress/%s", root, topic);
    tc_path_fmt(path, sizeof(path), "%s/%d", dir, partition);
    out->progress = tc_rewind_read_progress(path);
    out->from = out->progress;
    if (out->progress < 0)
        return TC_OK; /* nothing committed: the lake takes whatever is consumed */
    err = tc_rewind_walk(&sc, root);
    if (err != TC_OK) {
        free(sc.files);
        return tc_err_set(err, errstr, errstr_size, "out of memory listing the lake");
    }
    /* The first commit that reaches `from` (files past the progress are a crashed commit's, which
     * recovery removes anyway), and never past the progress: a lake that is behind just resumes. */
    start = from < out->progress ? from : out->progress;
    for (size_t i = 0; i < sc.n; i++) {
        if (sc.files[i].first < out->progress && sc.files[i].last >= from &&
            sc.files[i].first < start)
            start = sc.files[i].first;
    }
    if (sc.compact_last >= start) {
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                         "cannot replay partition %d of topic \"%s\" into the lake from offset "
                         "%" PRId64 ": compacted file \"%s\" holds its offsets up to %" PRId64,
                         partition, topic, start, sc.compact_path, sc.compact_last);
        free(sc.files);
        return err;
    }
    for (size_t i = 0; i < sc.n; i++) {
        if (sc.files[i].first >= start && sc.files[i].first < out->progress) {
            out->files++;
            out->rows += sc.files[i].rows;
        }
    }
    free(sc.files);
    out->from = start;
    if (!apply || start >= out->progress)
        return TC_OK;
    return tc_rewind_write_progress(dir, partition, start, errstr, errstr_size);
}
