/*
 * export.c -- the export of a time range of the lake; see export.h.
 *
 * Two passes over the lake files of the range's days. The first reads footers only: it keeps the
 * files whose time statistics meet the range, the metric columns they have (an export without
 * --metrics has every metric of its range, the dynamic ones a schema widened to included) and the
 * digest of what it read. The second decodes, per day, those files' row groups that meet the
 * range, keeps the rows the filters pass, masks the personal columns and hands the rows to the
 * day's output file. Files are read in name order inside a day, so two exports of the same lake
 * write the same bytes.
 */
#define _GNU_SOURCE /* renameat2 */
#include "export/export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/batch.h"
#include "core/durable.h"
#include "core/json.h"
#include "core/path.h"
#include "core/timeutil.h"
#include "lake/layout.h"
#include "lake/parquet_values.h"

/* The lake's fixed columns an export reads by name. */
#define TC_EXPORT_COL_TIME      "time"
#define TC_EXPORT_COL_DEVICE    "device_id"
#define TC_EXPORT_COL_TAGS      "tags"
#define TC_EXPORT_COL_PARTITION "kafka_partition"
#define TC_EXPORT_COL_OFFSET    "kafka_offset"
/* A compacted file's kafka.partitions ("P:first-last,..." for every partition it holds). */
#define TC_EXPORT_COORDS_MAX ((size_t)1 << 20)
/* Columns of the lake that are doubles but not metrics. */
static const char *const tc_export_not_metrics[] = {"schema_version"};

typedef struct tc_export_lake_file {
    int64_t day;
    char rel[TC_LAKE_NAME_MAX + 32]; /* year=YYYY/month=MM/day=DD/<name> */
    uint64_t bytes;
    int64_t rows;
    char *coords; /* "P:first-last" or a compacted file's kafka.partitions; owned */
} tc_export_lake_file;

typedef struct tc_export_ctx {
    const tc_export_options *o;
    char *errstr;
    size_t errstr_size;
    tc_export_lake_file *files;
    size_t nfiles, cap;
    tc_err err;
    /* metric columns */
    size_t nmetrics;
    char metric[TC_EXPORT_METRICS_MAX][TC_PQ_NAME_MAX + 1];
    int explicit_metrics;
    int personal[TC_EXPORT_METRICS_MAX];
    char *coords; /* TC_EXPORT_COORDS_MAX bytes of scratch for a file's Kafka coordinates */
} tc_export_ctx;

int tc_export_profile_level(const char *name, tc_mask_level viewer_level)
{
    if (!strcmp(name, "full"))
        return TC_MASK_FULL;
    if (!strcmp(name, "public"))
        return (int)viewer_level;
    return -1;
}

/* ---- pass 1: the files of the range ---- */

/* The time range of row group g from the time column's statistics; 0 when it has none. */
static int tc_export_rg_times(const tc_parquet_info *info, size_t g, size_t col, int64_t *lo,
                              int64_t *hi)
{
    const tc_parquet_chunk_info *c;

    if (g >= info->nrg || col >= info->rgs[g].ncols)
        return 0;
    c = &info->rgs[g].cols[col];
    if (!c->has_stats || !(c->stats.set & TC_PQ_ST_MIN_VALUE) ||
        !(c->stats.set & TC_PQ_ST_MAX_VALUE) || c->stats.min_value.n != 8 ||
        c->stats.max_value.n != 8)
        return 0;
    memcpy(lo, c->stats.min_value.p, 8); /* PLAIN INT64: little-endian, like the host */
    memcpy(hi, c->stats.max_value.p, 8);
    return 1;
}

/* The error of a lake file's reader, with the file named first. */
static tc_err tc_export_locate(tc_export_ctx *c, tc_err err, const char *path)
{
    char inner[512];

    snprintf(inner, sizeof(inner), "%s", c->errstr);
    return tc_err_set(err, c->errstr, c->errstr_size, "export: lake file %s: %s", path, inner);
}

/* Whether row group g may hold times of [from, to) (no statistics: it may). */
static int tc_export_rg_meets(const tc_export_options *o, const tc_parquet_info *info, size_t g,
                              size_t time_col)
{
    int64_t lo, hi;

    if (!tc_export_rg_times(info, g, time_col, &lo, &hi))
        return 1;
    return hi >= o->from_us && lo < o->to_us;
}

/* Index of the leaf column called name, or -1. */
static int tc_export_leaf(const tc_parquet_info *info, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < info->nleaves; i++) {
        const tc_parquet_leaf_info *l = &info->leaves[i];
        if (l->path_len == 1 && l->path[0].n == n && !memcmp(l->path[0].p, name, n))
            return (int)i;
    }
    return -1;
}

static int tc_export_has_metric(const tc_export_ctx *c, const char *name, size_t n)
{
    for (size_t k = 0; k < c->nmetrics; k++)
        if (strlen(c->metric[k]) == n && !memcmp(c->metric[k], name, n))
            return 1;
    return 0;
}

/* The DOUBLE columns of a file that are metrics, added to the export's (no --metrics). */
static void tc_export_add_metrics(tc_export_ctx *c, const tc_parquet_info *info)
{
    for (size_t i = 0; i < info->nleaves && c->nmetrics < TC_EXPORT_METRICS_MAX; i++) {
        const tc_parquet_leaf_info *l = &info->leaves[i];
        int skip = l->type != 5 /* DOUBLE */ || l->path_len != 1 || l->path[0].n > TC_PQ_NAME_MAX ||
                   tc_export_has_metric(c, (const char *)l->path[0].p, l->path[0].n);
        for (size_t k = 0; !skip && k < sizeof(tc_export_not_metrics) / sizeof(char *); k++)
            skip = l->path[0].n == strlen(tc_export_not_metrics[k]) &&
                   !memcmp(l->path[0].p, tc_export_not_metrics[k], l->path[0].n);
        if (!skip) {
            memcpy(c->metric[c->nmetrics], l->path[0].p, l->path[0].n);
            c->metric[c->nmetrics++][l->path[0].n] = '\0';
        }
    }
}

static void tc_export_files_free(tc_export_ctx *c)
{
    for (size_t i = 0; i < c->nfiles; i++)
        free(c->files[i].coords);
    free(c->files);
    free(c->coords);
    c->coords = NULL;
    c->files = NULL;
    c->nfiles = c->cap = 0;
}

static int tc_export_file_cmp(const void *a, const void *b)
{
    const tc_export_lake_file *x = a, *y = b;

    if (x->day != y->day)
        return x->day < y->day ? -1 : 1;
    return strcmp(x->rel, y->rel);
}

/* Footer of one lake file: kept when its times meet the range. */
static tc_err tc_export_consider(tc_export_ctx *c, const char *dir, const char *name, int64_t day)
{
    char path[TC_PATH_MAX], *coords = c->coords;
    tc_parquet_info *info = NULL;
    tc_export_lake_file *f;
    tc_lake_name nm;
    struct stat st;
    int y, meets = 0, tcol;
    unsigned m, d;
    tc_err err;

    tc_path_fmt(path, sizeof(path), "%s/%s", dir, name);
    if (stat(path, &st) != 0)
        return TC_OK; /* removed by compaction or retention since the listing */
    err = tc_parquet_verify_path(path, TC_PQ_VERIFY_FOOTER, &info, c->errstr, c->errstr_size);
    if (err != TC_OK)
        return tc_export_locate(c, err, path);
    tcol = tc_export_leaf(info, TC_EXPORT_COL_TIME);
    for (size_t g = 0; g < info->nrg && !meets; g++)
        meets = tcol < 0 || tc_export_rg_meets(c->o, info, g, (size_t)tcol);
    if (!meets || info->num_rows == 0) {
        tc_parquet_info_free(info);
        return TC_OK;
    }
    if (c->nfiles == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        tc_export_lake_file *nf;
        if (cap > TC_EXPORT_LAKE_FILES_MAX || !(nf = realloc(c->files, cap * sizeof(*nf)))) {
            tc_parquet_info_free(info);
            return tc_err_set(TC_ERR_NOMEM, c->errstr, c->errstr_size,
                              "export: more lake files than memory or %zu allow",
                              TC_EXPORT_LAKE_FILES_MAX);
        }
        c->files = nf;
        c->cap = cap;
    }
    f = &c->files[c->nfiles++];
    memset(f, 0, sizeof(*f));
    f->day = day;
    tc_time_civil_from_days(day, &y, &m, &d);
    tc_path_fmt(f->rel, sizeof(f->rel), "year=%04d/month=%02u/day=%02u/%s", y, m, d, name);
    f->bytes = (uint64_t)st.st_size;
    f->rows = info->num_rows;
    if (tc_lake_name_parse(name, &nm) == TC_LAKE_FILE_PART)
        snprintf(coords, TC_EXPORT_COORDS_MAX, "%d:%" PRId64 "-%" PRId64, (int)nm.partition,
                 nm.first, nm.last);
    else if (!tc_lake_kv_get(info, TC_LAKE_KV_PARTITIONS, coords, TC_EXPORT_COORDS_MAX))
        snprintf(coords, TC_EXPORT_COORDS_MAX, "%s", "?");
    if (!(f->coords = strdup(coords))) {
        c->nfiles--;
        tc_parquet_info_free(info);
        return tc_err_set(TC_ERR_NOMEM, c->errstr, c->errstr_size, "export: out of memory");
    }
    if (!c->explicit_metrics)
        tc_export_add_metrics(c, info);
    tc_parquet_info_free(info);
    return TC_OK;
}

static tc_err tc_export_day(void *opaque, const char *dir, int64_t day)
{
    tc_export_ctx *c = opaque;
    DIR *d;
    struct dirent *de;
    tc_err err = TC_OK;

    if (day < 0 || day < tc_time_day_of(c->o->from_us) || day > tc_time_day_of(c->o->to_us - 1))
        return TC_OK;
    if (!(d = opendir(dir)))
        return errno == ENOENT ? TC_OK
                               : tc_err_set(TC_ERR_IO, c->errstr, c->errstr_size,
                                            "export: open %s: %s", dir, strerror(errno));
    while (err == TC_OK && (de = readdir(d))) {
        tc_lake_name nm;
        tc_lake_file_kind k = tc_lake_name_parse(de->d_name, &nm);
        if (k == TC_LAKE_FILE_PART || k == TC_LAKE_FILE_COMPACT)
            err = tc_export_consider(c, dir, de->d_name, day);
    }
    closedir(d);
    return err;
}

/* Parse --metrics into the context. */
static tc_err tc_export_metrics(tc_export_ctx *c)
{
    const char *p = c->o->metrics;

    for (size_t k = 0; k < TC_METRIC__COUNT && !p; k++)
        snprintf(c->metric[c->nmetrics++], sizeof(c->metric[0]), "%s", tc_metric_names[k]);
    c->explicit_metrics = p != NULL;
    while (p && *p) {
        size_t n = strcspn(p, ",");
        int ok = n > 0 && n <= TC_PQ_NAME_MAX;
        for (size_t i = 0; i < n && ok; i++)
            ok = (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') || p[i] == '_' ||
                 (i > 0 && p[i] >= '0' && p[i] <= '9');
        if (!ok || c->nmetrics == TC_EXPORT_METRICS_MAX || tc_export_has_metric(c, p, n))
            return tc_err_set(TC_ERR_INVALID, c->errstr, c->errstr_size,
                              "export: --metrics \"%.*s\": a metric is a column name (letters, "
                              "digits, _), given once, at most %d of them",
                              (int)n, p, TC_EXPORT_METRICS_MAX);
        memcpy(c->metric[c->nmetrics], p, n);
        c->metric[c->nmetrics++][n] = '\0';
        p += n;
        if (*p == ',')
            p++;
    }
    return TC_OK;
}

/* Pass 1, and the digest of the files it kept. */
static tc_err tc_export_select(tc_export_ctx *c, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *sha;
    tc_err err;

    if (c->o->to_us <= c->o->from_us)
        return tc_err_set(TC_ERR_INVALID, c->errstr, c->errstr_size,
                          "export: --to must be after --from");
    if ((err = tc_export_metrics(c)) != TC_OK)
        return err;
    if (!c->coords && !(c->coords = malloc(TC_EXPORT_COORDS_MAX)))
        return tc_err_set(TC_ERR_NOMEM, c->errstr, c->errstr_size, "export: out of memory");
    if ((err = tc_lake_walk_days(c->o->lake_dir, tc_export_day, c)) != TC_OK)
        return err;
    if (c->nfiles)
        qsort(c->files, c->nfiles, sizeof(*c->files), tc_export_file_cmp);
    if (!(sha = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(sha);
        return tc_err_set(TC_ERR_NOMEM, c->errstr, c->errstr_size, "export: out of memory");
    }
    for (size_t i = 0; i < c->nfiles; i++) {
        char line[TC_LAKE_NAME_MAX + TC_EXPORT_TEXT_MAX + 96];
        int n = snprintf(line, sizeof(line), "%s\t%" PRIu64 "\t%" PRId64 "\t%s\n", c->files[i].rel,
                         c->files[i].bytes, c->files[i].rows, c->files[i].coords);
        EVP_DigestUpdate(sha, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
    EVP_DigestFinal_ex(sha, md, &mdlen);
    EVP_MD_CTX_free(sha);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    for (size_t k = 0; k < c->nmetrics; k++)
        c->personal[k] =
            c->o->mask != TC_MASK_FULL &&
            tc_mask_is_personal(c->o->personal_columns, c->metric[k], strlen(c->metric[k]), 0);
    return TC_OK;
}

tc_err tc_export_lake_digest(const tc_export_options *o, char hex[65], char *errstr,
                             size_t errstr_size)
{
    tc_export_ctx c = {.o = o, .errstr = errstr, .errstr_size = errstr_size};
    tc_err err = tc_export_select(&c, hex);

    tc_export_files_free(&c);
    return err;
}

/* ---- pass 2: rows ---- */

/* The rows of one row group that pass the filters, gathered, masked. */
typedef struct tc_export_gather {
    size_t cap;
    int64_t *time_us, *offset;
    int32_t *partition;
    tc_slice *device, *tags;
    double *metric[TC_EXPORT_METRICS_MAX];
    uint8_t *present[TC_EXPORT_METRICS_MAX];
    /* the tag filter's last answer, for runs of equal tags */
    char *last_tags;
    size_t last_tags_len;
    int last_tags_ok;
    char glob_name[TC_EXPORT_TEXT_MAX]; /* the device id NUL-terminated for fnmatch */
} tc_export_gather;

static void tc_export_gather_free(tc_export_gather *g)
{
    free(g->time_us);
    free(g->offset);
    free(g->partition);
    free(g->device);
    free(g->tags);
    for (size_t k = 0; k < TC_EXPORT_METRICS_MAX; k++) {
        free(g->metric[k]);
        free(g->present[k]);
    }
    free(g->last_tags);
}

static int tc_export_gather_grow(tc_export_gather *g, size_t n, size_t nmetrics)
{
    int ok;

    if (n <= g->cap)
        return 1;
    tc_export_gather_free(g);
    memset(g, 0, sizeof(*g));
    g->time_us = malloc(n * sizeof(int64_t));
    g->offset = malloc(n * sizeof(int64_t));
    g->partition = malloc(n * sizeof(int32_t));
    g->device = malloc(n * sizeof(tc_slice));
    g->tags = malloc(n * sizeof(tc_slice));
    ok = g->time_us && g->offset && g->partition && g->device && g->tags;
    for (size_t k = 0; k < nmetrics && ok; k++) {
        g->metric[k] = malloc(n * sizeof(double));
        g->present[k] = malloc(n);
        ok = g->metric[k] && g->present[k];
    }
    g->cap = ok ? n : 0;
    return ok;
}

/* The tags (JSON text) hold every key = value of the filter. */
static int tc_export_tags_ok(const tc_export_options *o, tc_export_gather *g, tc_slice tags)
{
    tc_json_doc *doc;
    const tc_json *root;
    char err[64];
    int ok = 1;

    if (!o->ntags)
        return 1;
    if (!tags.ptr)
        return 0;
    if (g->last_tags && g->last_tags_len == tags.len && !memcmp(g->last_tags, tags.ptr, tags.len))
        return g->last_tags_ok;
    doc = tc_json_parse(tags.ptr, tags.len, NULL, NULL, err, sizeof(err));
    root = doc ? tc_json_root(doc) : NULL;
    for (size_t t = 0; t < o->ntags && ok; t++) {
        const char *v = root ? tc_json_string(tc_json_get(root, o->tag_key[t])) : NULL;
        ok = v && !strcmp(v, o->tag_value[t]);
    }
    tc_json_free(doc);
    free(g->last_tags);
    g->last_tags = malloc(tags.len + 1);
    if (g->last_tags) {
        memcpy(g->last_tags, tags.ptr, tags.len);
        g->last_tags_len = tags.len;
        g->last_tags_ok = ok;
    }
    return ok;
}

static int tc_export_device_ok(const tc_export_options *o, tc_export_gather *g, tc_slice dev)
{
    if (!o->devices)
        return 1;
    if (dev.len >= sizeof(g->glob_name))
        return 0; /* longer than any device id the pipeline accepts */
    memcpy(g->glob_name, dev.ptr, dev.len);
    g->glob_name[dev.len] = '\0';
    return fnmatch(o->devices, g->glob_name, 0) == 0;
}

/* Column indexes of a lake file in the reader's schema. */
typedef struct tc_export_map {
    int time, device, tags, partition, offset;
    int metric[TC_EXPORT_METRICS_MAX];
} tc_export_map;

static int tc_export_col(const tc_parquet_column *cols, size_t n, const char *name,
                         tc_parquet_type type)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cols[i].name, name))
            return cols[i].type == type ? (int)i : -2;
    return -1;
}

/* One lake file's rows into the day's output. */
static tc_err tc_export_read_file(tc_export_ctx *c, const tc_export_lake_file *f,
                                  tc_export_file *out, tc_export_gather *g, uint64_t *rows,
                                  uint64_t *read)
{
    const tc_export_options *o = c->o;
    char path[TC_PATH_MAX];
    tc_parquet_reader *r = NULL;
    const tc_parquet_column *cols;
    size_t ncols;
    tc_export_map map;
    tc_err err;

    tc_path_fmt(path, sizeof(path), "%s/telemetry/%s", o->lake_dir, f->rel);
    if ((err = tc_parquet_reader_open_path(path, &r, c->errstr, c->errstr_size)) != TC_OK)
        return tc_export_locate(c, err, path);
    cols = tc_parquet_reader_columns(r, &ncols);
    map.time = tc_export_col(cols, ncols, TC_EXPORT_COL_TIME, TC_PQ_TIMESTAMP_US);
    map.device = tc_export_col(cols, ncols, TC_EXPORT_COL_DEVICE, TC_PQ_STRING);
    map.tags = tc_export_col(cols, ncols, TC_EXPORT_COL_TAGS, TC_PQ_STRING);
    map.partition = tc_export_col(cols, ncols, TC_EXPORT_COL_PARTITION, TC_PQ_INT32);
    map.offset = tc_export_col(cols, ncols, TC_EXPORT_COL_OFFSET, TC_PQ_INT64);
    if (map.time < 0 || map.device < 0 || map.tags == -2 || map.partition < 0 || map.offset < 0) {
        tc_parquet_reader_close(r);
        return tc_err_set(TC_ERR_INVALID, c->errstr, c->errstr_size,
                          "export: %s lacks the lake's time, device_id, kafka_partition or "
                          "kafka_offset column (or has them with another type)",
                          path);
    }
    for (size_t k = 0; k < c->nmetrics; k++)
        map.metric[k] = tc_export_col(cols, ncols, c->metric[k], TC_PQ_DOUBLE);
    for (size_t rg = 0; rg < tc_parquet_reader_row_groups(r) && err == TC_OK; rg++) {
        const tc_parquet_values *v;
        size_t n, kept = 0;
        if (!tc_export_rg_meets(o, tc_parquet_reader_info(r), rg, (size_t)map.time))
            continue;
        if ((err = tc_parquet_reader_read(r, rg, &v, &n, c->errstr, c->errstr_size)) != TC_OK) {
            err = tc_export_locate(c, err, path);
            break;
        }
        *read += n;
        if (!tc_export_gather_grow(g, n, c->nmetrics)) {
            err = tc_err_set(TC_ERR_NOMEM, c->errstr, c->errstr_size, "export: out of memory");
            break;
        }
        const int64_t *tv = v[map.time].values, *ov = v[map.offset].values;
        const int32_t *pv = v[map.partition].values;
        const tc_slice *dv = v[map.device].values;
        const tc_slice *gv = map.tags >= 0 ? v[map.tags].values : NULL;
        for (size_t i = 0; i < n; i++) {
            tc_slice tags = gv ? gv[i] : (tc_slice){NULL, 0};
            if (tv[i] < o->from_us || tv[i] >= o->to_us || !tc_export_device_ok(o, g, dv[i]) ||
                !tc_export_tags_ok(o, g, tags))
                continue;
            g->time_us[kept] = tv[i];
            g->device[kept] = dv[i];
            g->tags[kept] = tags;
            g->partition[kept] = pv[i];
            g->offset[kept] = ov[i];
            for (size_t k = 0; k < c->nmetrics; k++) {
                int col = map.metric[k];
                int present = col >= 0 && (!v[col].present || v[col].present[i]);
                double x = present ? ((const double *)v[col].values)[i] : 0;
                if (present && c->personal[k])
                    x = tc_mask_value(o->mask, o->personal_digits, x, &present);
                g->metric[k][kept] = x;
                g->present[k][kept] = (uint8_t)present;
            }
            kept++;
        }
        if (kept) {
            tc_export_rows rows_out = {kept,
                                       g->time_us,
                                       g->device,
                                       (const double *const *)g->metric,
                                       (const uint8_t *const *)g->present,
                                       g->tags,
                                       g->partition,
                                       g->offset};
            err = tc_export_file_write(out, &rows_out, c->errstr, c->errstr_size);
            *rows += kept;
        }
    }
    tc_parquet_reader_close(r);
    return err;
}

/* ---- the output directory ---- */

/* Remove a flat directory (an export's: files only) and its files. */
static void tc_export_rmdir(const char *dir)
{
    char path[TC_PATH_MAX];
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            tc_path_fmt(path, sizeof(path), "%s/%s", dir, de->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

/* Temporary and swapped-out directories of earlier runs that did not finish. */
static void tc_export_clean(const char *parent, const char *base)
{
    char tmp[TC_PATH_MAX], old[TC_PATH_MAX], path[TC_PATH_MAX];
    DIR *d = opendir(parent);
    struct dirent *de;

    if (!d)
        return;
    tc_path_fmt(tmp, sizeof(tmp), ".%s.tmp-", base);
    tc_path_fmt(old, sizeof(old), ".%s.old-", base);
    while ((de = readdir(d)))
        if (!strncmp(de->d_name, tmp, strlen(tmp)) || !strncmp(de->d_name, old, strlen(old))) {
            tc_path_fmt(path, sizeof(path), "%s/%s", parent, de->d_name);
            tc_export_rmdir(path);
        }
    closedir(d);
}

/* An existing output directory may be replaced only when it is an export (its manifest) or
 * empty: --out naming a directory of other files by mistake must not delete them. */
static tc_err tc_export_check_out(const char *out, char *errstr, size_t errstr_size)
{
    char path[TC_PATH_MAX];
    struct stat st;
    DIR *d;
    struct dirent *de;
    int other = 0;

    if (lstat(out, &st) != 0)
        return errno == ENOENT ? TC_OK
                               : tc_err_set(TC_ERR_IO, errstr, errstr_size, "export: %s: %s", out,
                                            strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "export: --out %s exists and is not a directory", out);
    tc_path_fmt(path, sizeof(path), "%s/manifest.json", out);
    if (stat(path, &st) == 0)
        return TC_OK;
    if (!(d = opendir(out)))
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "export: %s: %s", out, strerror(errno));
    while (!other && (de = readdir(d)))
        other = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    if (other)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "export: --out %s exists and is not an export (no manifest.json): "
                          "refusing to replace it",
                          out);
    return TC_OK;
}

/* tmp takes out's place in one step; the old export, if any, is removed after. */
static tc_err tc_export_swap(const char *parent, const char *tmp, const char *out, char *errstr,
                             size_t errstr_size)
{
    struct stat st;

    if (stat(out, &st) == 0) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_EXCHANGE) != 0)
            return tc_err_set(TC_ERR_IO, errstr, errstr_size, "export: swap %s into %s: %s", tmp,
                              out, strerror(errno));
        if (tc_durable_sync_dir(parent, errstr, errstr_size) != TC_OK)
            return TC_ERR_IO;
        tc_export_rmdir(tmp); /* now the old export */
        return TC_OK;
    }
    if (rename(tmp, out) != 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "export: rename %s to %s: %s", tmp, out,
                          strerror(errno));
    return tc_durable_sync_dir(parent, errstr, errstr_size);
}

static tc_err tc_export_fsync_close(int fd, const char *path, char *errstr, size_t errstr_size)
{
    int rc = fsync(fd);
    int e = errno;

    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc != 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "export: fsync %s: %s", path,
                          strerror(e));
    return TC_OK;
}

/* The manifest (docs/exports.md), written into the temporary directory. */
static tc_err tc_export_manifest(tc_export_ctx *c, tc_jbuf *outputs, const char *tmp,
                                 const tc_export_result *res)
{
    const tc_export_options *o = c->o;
    char t[TC_TIME_RFC3339_MAX], path[TC_PATH_MAX];
    tc_jbuf b;
    tc_err err;
    int fd;

    tc_jbuf_init(&b, TC_EXPORT_MANIFEST_MAX);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "manifest_version");
    tc_jbuf_int(&b, 1);
    tc_jbuf_key(&b, "created");
    tc_time_format_rfc3339(tc_time_now_us(), t, sizeof(t));
    tc_jbuf_str(&b, t);
    tc_jbuf_key(&b, "parameters");
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "from");
    tc_time_format_rfc3339(o->from_us, t, sizeof(t));
    tc_jbuf_str(&b, t);
    tc_jbuf_key(&b, "to");
    tc_time_format_rfc3339(o->to_us, t, sizeof(t));
    tc_jbuf_str(&b, t);
    tc_jbuf_key(&b, "devices");
    if (o->devices)
        tc_jbuf_str(&b, o->devices);
    else
        tc_jbuf_null(&b);
    tc_jbuf_key(&b, "tags");
    tc_jbuf_obj_begin(&b);
    for (size_t i = 0; i < o->ntags; i++) {
        tc_jbuf_key(&b, o->tag_key[i]);
        tc_jbuf_str(&b, o->tag_value[i]);
    }
    tc_jbuf_obj_end(&b);
    tc_jbuf_key(&b, "metrics");
    if (o->metrics)
        tc_jbuf_str(&b, o->metrics);
    else
        tc_jbuf_null(&b);
    tc_jbuf_key(&b, "format");
    tc_jbuf_str(&b, tc_export_format_name(o->format));
    tc_jbuf_key(&b, "compress");
    tc_jbuf_str(&b, o->compress == TC_EXPORT_ZSTD   ? "zstd"
                    : o->compress == TC_EXPORT_GZIP ? "gzip"
                                                    : "none");
    tc_jbuf_key(&b, "profile");
    tc_jbuf_str(&b, o->profile ? o->profile : "full");
    if (o->schedule) {
        tc_jbuf_key(&b, "schedule");
        tc_jbuf_str(&b, o->schedule);
        tc_jbuf_key(&b, "period");
        tc_jbuf_str(&b, o->period ? o->period : "");
    }
    tc_jbuf_obj_end(&b);
    tc_jbuf_key(&b, "schema");
    tc_jbuf_arr_begin(&b);
#define TC_EXPORT_SCHEMA_COL(n, ty, nullable, masked)                                              \
    do {                                                                                           \
        tc_jbuf_obj_begin(&b);                                                                     \
        tc_jbuf_key(&b, "name");                                                                   \
        tc_jbuf_str(&b, n);                                                                        \
        tc_jbuf_key(&b, "type");                                                                   \
        tc_jbuf_str(&b, ty);                                                                       \
        tc_jbuf_key(&b, "nullable");                                                               \
        tc_jbuf_bool(&b, nullable);                                                                \
        tc_jbuf_key(&b, "masked");                                                                 \
        tc_jbuf_bool(&b, masked);                                                                  \
        tc_jbuf_obj_end(&b);                                                                       \
    } while (0)
    TC_EXPORT_SCHEMA_COL("time", "timestamp[us, UTC]", 0, 0);
    TC_EXPORT_SCHEMA_COL("device_id", "string", 0, 0);
    for (size_t k = 0; k < c->nmetrics; k++)
        TC_EXPORT_SCHEMA_COL(c->metric[k], "double", 1, c->personal[k]);
    TC_EXPORT_SCHEMA_COL("tags", "string (JSON object)", 1, 0);
    TC_EXPORT_SCHEMA_COL("kafka_partition", "int32", 0, 0);
    TC_EXPORT_SCHEMA_COL("kafka_offset", "int64", 0, 0);
#undef TC_EXPORT_SCHEMA_COL
    tc_jbuf_arr_end(&b);
    tc_jbuf_key(&b, "files");
    tc_jbuf_raw(&b, outputs->data ? outputs->data : "[]", outputs->data ? outputs->len : 2);
    tc_jbuf_key(&b, "rows");
    tc_jbuf_int(&b, (int64_t)res->rows);
    tc_jbuf_key(&b, "lake_digest");
    tc_jbuf_str(&b, res->lake_digest);
    tc_jbuf_key(&b, "lake_files");
    tc_jbuf_arr_begin(&b);
    for (size_t i = 0; i < c->nfiles; i++) {
        tc_jbuf_obj_begin(&b);
        tc_jbuf_key(&b, "path");
        tc_jbuf_str(&b, c->files[i].rel);
        tc_jbuf_key(&b, "bytes");
        tc_jbuf_int(&b, (int64_t)c->files[i].bytes);
        tc_jbuf_key(&b, "rows");
        tc_jbuf_int(&b, c->files[i].rows);
        tc_jbuf_key(&b, "kafka_offsets");
        tc_jbuf_str(&b, c->files[i].coords);
        tc_jbuf_obj_end(&b);
    }
    tc_jbuf_arr_end(&b);
    tc_jbuf_obj_end(&b);
    tc_jbuf_append(&b, "\n", 1);
    if (tc_jbuf_failed(&b)) {
        tc_jbuf_free(&b);
        return tc_err_set(TC_ERR_NOMEM, c->errstr, c->errstr_size,
                          "export: the manifest does not fit %zu bytes", TC_EXPORT_MANIFEST_MAX);
    }
    tc_path_fmt(path, sizeof(path), "%s/manifest.json", tmp);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    err = fd < 0 ? tc_err_set(TC_ERR_IO, c->errstr, c->errstr_size, "export: create %s: %s", path,
                              strerror(errno))
                 : TC_OK;
    for (size_t off = 0; err == TC_OK && off < b.len;) {
        ssize_t k = write(fd, b.data + off, b.len - off);
        if (k <= 0 && errno != EINTR)
            err = tc_err_set(TC_ERR_IO, c->errstr, c->errstr_size, "export: write %s: %s", path,
                             strerror(errno));
        else if (k > 0)
            off += (size_t)k;
    }
    if (fd >= 0) {
        tc_err e2 = tc_export_fsync_close(fd, path, c->errstr, c->errstr_size);
        if (err == TC_OK)
            err = e2;
    }
    tc_jbuf_free(&b);
    return err;
}

/* One day's output file: the rows of its lake files, fsynced; its entry in outputs. */
static tc_err tc_export_one_day(tc_export_ctx *c, size_t first, size_t end, const char *tmp,
                                tc_jbuf *outputs, tc_export_gather *g, tc_export_result *res)
{
    const tc_export_options *o = c->o;
    char name[64], path[TC_PATH_MAX], hex[65];
    const char *names[TC_EXPORT_METRICS_MAX];
    tc_export_file *w;
    uint64_t rows = 0, bytes = 0;
    int y, fd;
    unsigned m, d;
    tc_err err = TC_OK;

    tc_time_civil_from_days(c->files[first].day, &y, &m, &d);
    tc_path_fmt(name, sizeof(name), "part-%04d-%02u-%02u%s", y, m, d,
                tc_export_extension(o->format, o->compress));
    tc_path_fmt(path, sizeof(path), "%s/%s", tmp, name);
    for (size_t k = 0; k < c->nmetrics; k++)
        names[k] = c->metric[k];
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return tc_err_set(TC_ERR_IO, c->errstr, c->errstr_size, "export: create %s: %s", path,
                          strerror(errno));
    w = tc_export_file_new(fd, o->format, o->compress, names, c->nmetrics, c->errstr,
                           c->errstr_size);
    if (!w) {
        close(fd);
        return TC_ERR_INVALID;
    }
    for (size_t i = first; i < end && err == TC_OK; i++)
        err = tc_export_read_file(c, &c->files[i], w, g, &rows, &res->lake_rows_read);
    if (err == TC_OK)
        err = tc_export_file_finish(w, hex, &bytes, c->errstr, c->errstr_size);
    tc_export_file_destroy(w);
    if (err != TC_OK) {
        close(fd);
        return err;
    }
    if ((err = tc_export_fsync_close(fd, path, c->errstr, c->errstr_size)) != TC_OK)
        return err;
    if (rows == 0) { /* the day's files held no row the filters pass: no file */
        unlink(path);
        return TC_OK;
    }
    tc_jbuf_obj_begin(outputs);
    tc_jbuf_key(outputs, "path");
    tc_jbuf_str(outputs, name);
    tc_jbuf_key(outputs, "rows");
    tc_jbuf_int(outputs, (int64_t)rows);
    tc_jbuf_key(outputs, "bytes");
    tc_jbuf_int(outputs, (int64_t)bytes);
    tc_jbuf_key(outputs, "sha256");
    tc_jbuf_str(outputs, hex);
    tc_jbuf_obj_end(outputs);
    res->rows += rows;
    res->bytes += bytes;
    res->files++;
    return TC_OK;
}

tc_err tc_export_run(const tc_export_options *o, tc_export_result *res, char *errstr,
                     size_t errstr_size)
{
    tc_export_ctx c = {.o = o, .errstr = errstr, .errstr_size = errstr_size};
    char parent[TC_PATH_MAX], base[TC_PATH_MAX], tmp[TC_PATH_MAX];
    tc_export_gather g;
    tc_jbuf outputs;
    const char *slash;
    tc_err err;

    memset(res, 0, sizeof(*res));
    memset(&g, 0, sizeof(g));
    snprintf(base, sizeof(base), "%s", o->out_dir);
    while (strlen(base) > 1 && base[strlen(base) - 1] == '/')
        base[strlen(base) - 1] = '\0';
    slash = strrchr(base, '/');
    if (slash) {
        tc_path_fmt(parent, sizeof(parent), "%.*s", slash == base ? 1 : (int)(slash - base), base);
        memmove(base, slash + 1, strlen(slash + 1) + 1);
    } else {
        snprintf(parent, sizeof(parent), ".");
    }
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "export: --out \"%s\" must name a directory to create or replace",
                          o->out_dir);
    if ((err = tc_export_check_out(o->out_dir, errstr, errstr_size)) != TC_OK)
        return err;
    if ((err = tc_export_select(&c, res->lake_digest)) != TC_OK) {
        tc_export_files_free(&c);
        return err;
    }
    res->lake_files = c.nfiles;
    if ((err = tc_durable_mkdirs(parent, errstr, errstr_size)) != TC_OK) {
        tc_export_files_free(&c);
        return err;
    }
    tc_export_clean(parent, base);
    tc_path_fmt(tmp, sizeof(tmp), "%s/.%s.tmp-%ld", parent, base, (long)getpid());
    if (mkdir(tmp, 0755) != 0) {
        tc_export_files_free(&c);
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "export: create %s: %s", tmp,
                          strerror(errno));
    }
    tc_jbuf_init(&outputs, TC_EXPORT_MANIFEST_MAX);
    tc_jbuf_arr_begin(&outputs);
    for (size_t i = 0; i < c.nfiles && err == TC_OK;) {
        size_t end = i;
        while (end < c.nfiles && c.files[end].day == c.files[i].day)
            end++;
        err = tc_export_one_day(&c, i, end, tmp, &outputs, &g, res);
        i = end;
    }
    tc_jbuf_arr_end(&outputs);
    if (err == TC_OK)
        err = tc_export_manifest(&c, &outputs, tmp, res);
    if (err == TC_OK)
        err = tc_durable_sync_dir(tmp, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_export_swap(parent, tmp, o->out_dir, errstr, errstr_size);
    if (err != TC_OK)
        tc_export_rmdir(tmp);
    tc_jbuf_free(&outputs);
    tc_export_gather_free(&g);
    tc_export_files_free(&c);
    return err;
}
