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
#include "lake/layout.h"
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

/* A compacted file: note the highest offset of our partition in it ("P:first-last,..."). */
static void tc_rewind_compacted(tc_rewind_scan *sc, const char *path)
{
    char errstr[TC_ERRSTR_MAX], topic[256], parts[4096];
    tc_parquet_info *info = NULL;
    const char *p;

    if (tc_parquet_verify_path(path, TC_PQ_VERIFY_FOOTER, &info, errstr, sizeof(errstr)) != TC_OK)
        return;
    if (tc_lake_kv_get(info, TC_LAKE_KV_TOPIC, topic, sizeof(topic)) && !strcmp(topic, sc->topic) &&
        (p = tc_lake_kv_get(info, TC_LAKE_KV_PARTITIONS, parts, sizeof(parts))) != NULL) {
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

static tc_err tc_rewind_day(void *opaque, const char *dir, int64_t day)
{
    tc_rewind_scan *sc = opaque;
    char path[TC_PATH_MAX], errstr[TC_ERRSTR_MAX];
    struct dirent *de;
    DIR *d = opendir(dir);

    (void)day;
    if (!d)
        return TC_OK;
    while ((de = readdir(d)) != NULL) {
        tc_parquet_info *info = NULL;
        tc_lake_name nm;
        tc_lake_file_kind kind = tc_lake_name_parse(de->d_name, &nm);
        tc_path_fmt(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (kind == TC_LAKE_FILE_COMPACT) {
            tc_rewind_compacted(sc, path);
            continue;
        }
        if (kind != TC_LAKE_FILE_PART || strcmp(nm.topic, sc->topic) != 0 ||
            nm.partition != sc->partition)
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
        sc->files[sc->n] = (tc_rewind_file){nm.first, nm.last, 0};
        if (tc_parquet_verify_path(path, TC_PQ_VERIFY_FOOTER, &info, errstr, sizeof(errstr)) ==
            TC_OK)
            sc->files[sc->n].rows = (uint64_t)info->num_rows;
        tc_parquet_info_free(info);
        sc->n++;
    }
    closedir(d);
    return TC_OK;
}

tc_err tc_lake_rewind_partition(const char *root, const char *topic, int32_t partition,
                                int64_t from, int apply, tc_lake_rewind *out, char *errstr,
                                size_t errstr_size)
{
    tc_rewind_scan sc = {.topic = topic, .partition = partition, .compact_last = -1};
    int64_t start;
    tc_err err;

    memset(out, 0, sizeof(*out));
    err = tc_lake_progress_read(root, topic, partition, &out->progress, errstr, errstr_size);
    out->from = out->progress;
    if (err != TC_OK)
        return err;
    if (out->progress < 0)
        return TC_OK; /* nothing committed: the lake takes whatever is consumed */
    err = tc_lake_walk_days(root, tc_rewind_day, &sc);
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
    return tc_lake_progress_write(root, topic, partition, start, errstr, errstr_size);
}
