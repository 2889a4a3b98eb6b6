/*
 * build.c -- `features build`: a lake day's files -> one accumulator per (device, feature,
 * window) -> one Parquet file per feature and day; the layout, the state and the atomicity are in
 * build.h.
 *
 * Device ids are interned once per day (an open-addressing table of names). Each (device,
 * feature) has one dense accumulator for the window it is in; when a reading belongs to another
 * window, the finished run is appended to an array. Once the day is read, the array is sorted by
 * feature, device id and window, and the runs of one window (readings out of time order) are
 * merged as they are written: a reading costs one device lookup and one update per feature, and
 * a window about 130 bytes. Output rows are sorted, so the files are deterministic: a rebuild of
 * an unchanged day writes the same rows.
 */
#include "features/build.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/durable.h"
#include "core/path.h"
#include "core/timeutil.h"
#include "features/quality_src.h"
#include "features/window_agg.h"
#include "lake/compact.h"
#include "lake/layout.h"
#include "lake/parquet.h"
#include "lake/parquet_values.h"

/* Rows handed to the writer at a time. */
#define TC_FB_WRITE_ROWS 8192
/* Files of one lake day the build reads (a day of many small commits before compaction). */
#define TC_FB_FILES_MAX 100000
/* Longest state line: "<day> <16 hex>\n". */
#define TC_FB_STATE_LINE_MAX 64

#define TC_FB_FNV_OFFSET 1469598103934665603ULL
#define TC_FB_FNV_PRIME  1099511628211ULL

static uint64_t tc_fb_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * TC_FB_FNV_PRIME;
    return h;
}

/* The definitions' fingerprint: a change of any of them rebuilds every day. */
static uint64_t tc_fb_defs_fingerprint(const tc_feat_defs *defs)
{
    uint64_t h = TC_FB_FNV_OFFSET;

    for (size_t i = 0; i < defs->n; i++) {
        const tc_feat_def *d = &defs->def[i];
        int32_t agg = (int32_t)d->agg;

        h = tc_fb_fnv(h, d->name, strlen(d->name) + 1);
        h = tc_fb_fnv(h, d->metric, strlen(d->metric) + 1);
        h = tc_fb_fnv(h, &d->window_s, sizeof(d->window_s));
        h = tc_fb_fnv(h, &agg, sizeof(agg));
        h = tc_fb_fnv(h, &d->lo, sizeof(d->lo));
        h = tc_fb_fnv(h, &d->hi, sizeof(d->hi));
    }
    return h;
}

int tc_features_dir(const tc_features_build_options *opt, char *out, size_t cap)
{
    if (opt->features_dir && *opt->features_dir)
        return tc_path_fmt(out, cap, "%s", opt->features_dir);
    return tc_path_fmt(out, cap, "%s/features", opt->lake_root);
}

int tc_features_day_dir(char *out, size_t cap, const char *features, const char *name, int64_t day)
{
    int y;
    unsigned m, d;

    tc_time_civil_from_days(day, &y, &m, &d);
    return tc_path_fmt(out, cap, "%s/%s/year=%04d/month=%02u/day=%02u", features, name, y, m, d);
}

/* ---- the state: what was built from what ---- */

typedef struct tc_fb_state {
    uint64_t defs_fp;
    size_t n;
    int64_t *day;
    uint64_t *fp;
} tc_fb_state;

static void tc_fb_state_free(tc_fb_state *s)
{
    free(s->day);
    free(s->fp);
    memset(s, 0, sizeof(*s));
}

static size_t tc_fb_state_find(const tc_fb_state *s, int64_t day)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->day[i] == day)
            return i;
    }
    return (size_t)-1;
}

static tc_err tc_fb_state_set(tc_fb_state *s, int64_t day, uint64_t fp, char *errstr,
                              size_t errstr_size)
{
    size_t i = tc_fb_state_find(s, day);

    if (i == (size_t)-1) {
        if (s->n == TC_FEATURES_DAYS_MAX)
            return tc_err_set(TC_ERR_FULL, errstr, errstr_size,
                              "the features state holds %d days already", TC_FEATURES_DAYS_MAX);
        if (!s->day) {
            s->day = malloc(TC_FEATURES_DAYS_MAX * sizeof(*s->day));
            s->fp = malloc(TC_FEATURES_DAYS_MAX * sizeof(*s->fp));
            if (!s->day || !s->fp)
                return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        }
        i = s->n++;
        s->day[i] = day;
    }
    s->fp[i] = fp;
    return TC_OK;
}

/* Read <features>/_thermocline/state; a missing file is an empty state. A file that does not
 * parse is an error naming it: taking it for "nothing built" would only cost a rebuild, but it
 * would hide a broken disk. */
static tc_err tc_fb_state_load(const char *features, tc_fb_state *s, char *errstr,
                               size_t errstr_size)
{
    char path[TC_PATH_MAX], line[TC_FB_STATE_LINE_MAX];
    FILE *f;
    int lineno = 0;
    tc_err err = TC_OK;

    memset(s, 0, sizeof(*s));
    tc_path_fmt(path, sizeof(path), "%s/%s/%s", features, TC_FEATURES_STATE_DIR,
                TC_FEATURES_STATE_FILE);
    if (!(f = fopen(path, "r")))
        return errno == ENOENT ? TC_OK
                               : tc_err_set(TC_ERR_IO, errstr, errstr_size,
                                            "could not read \"%s\": %s", path, strerror(errno));
    while (err == TC_OK && fgets(line, sizeof(line), f)) {
        long long day;
        unsigned long long fp;
        char tail;

        lineno++;
        if (lineno == 1) {
            if (sscanf(line, "thermocline-features-state 1 defs %16llx%c", &fp, &tail) != 2 ||
                tail != '\n')
                err = tc_err_set(TC_ERR_IO, errstr, errstr_size,
                                 "%s:1: not a features state (want \"thermocline-features-state 1 "
                                 "defs <hex>\")",
                                 path);
            s->defs_fp = fp;
        } else if (sscanf(line, "%lld %16llx%c", &day, &fp, &tail) != 3 || tail != '\n') {
            err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "%s:%d: want \"<day> <fingerprint>\"",
                             path, lineno);
        } else {
            err = tc_fb_state_set(s, day, fp, errstr, errstr_size);
        }
    }
    fclose(f);
    if (err != TC_OK)
        tc_fb_state_free(s);
    return err;
}

static tc_err tc_fb_state_save(const char *features, const tc_fb_state *s, char *errstr,
                               size_t errstr_size)
{
    char dir[TC_PATH_MAX];
    size_t cap = (s->n + 1) * TC_FB_STATE_LINE_MAX, len;
    char *text = malloc(cap);
    tc_err err;

    if (!text)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    len = (size_t)snprintf(text, cap, "thermocline-features-state 1 defs %016" PRIx64 "\n",
                           s->defs_fp);
    for (size_t i = 0; i < s->n; i++)
        len += (size_t)snprintf(text + len, cap - len, "%" PRId64 " %016" PRIx64 "\n", s->day[i],
                                s->fp[i]);
    tc_path_fmt(dir, sizeof(dir), "%s/%s", features, TC_FEATURES_STATE_DIR);
    err = tc_durable_mkdirs(dir, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_durable_replace(dir, TC_FEATURES_STATE_FILE, text, errstr, errstr_size);
    free(text);
    return err;
}

/* ---- one day's accumulators ---- */

typedef struct tc_fb_slot {
    uint32_t dev; /* device index + 1 */
    uint32_t def;
    tc_wagg agg;
} tc_fb_slot;

typedef struct tc_fb_day {
    /* interned device ids */
    char **dev_name;
    uint32_t *dev_len;
    size_t ndev, dev_cap;
    uint32_t *dev_index; /* open addressing: device index + 1, 0 = empty */
    size_t dev_index_cap;
    /* Finished runs of windows, in the order they finished: sorted by (feature, device, window)
     * once the day is read, and the runs of one window (readings out of time order) merged
     * then. An array, not a hash table of windows: a table at a load of one half took three
     * times the memory, and a random access per reading. */
    tc_fb_slot *slot;
    size_t nslot, slot_cap;
    /* Per (device, definition), dense: the window being fed. A device's readings come mostly in
     * time order, so most land in the window of the one before, in memory next to the device's
     * other definitions; a run ends (is appended above) when the window changes. rows == 0:
     * none. */
    tc_wagg *cur;
    size_t cur_cap, ndefs;
} tc_fb_day;

static uint64_t tc_fb_hash_bytes(const char *p, size_t n)
{
    return tc_fb_fnv(TC_FB_FNV_OFFSET, p, n);
}

static void tc_fb_day_free(tc_fb_day *d)
{
    for (size_t i = 0; i < d->ndev; i++)
        free(d->dev_name[i]);
    free(d->dev_name);
    free(d->dev_len);
    free(d->dev_index);
    free(d->slot);
    free(d->cur);
    memset(d, 0, sizeof(*d));
}

static int tc_fb_dev_grow(tc_fb_day *d)
{
    size_t cap = d->dev_index_cap ? d->dev_index_cap * 2 : 1024;
    uint32_t *idx = calloc(cap, sizeof(*idx));
    char **names = realloc(d->dev_name, cap / 2 * sizeof(*names));
    uint32_t *lens;

    if (names)
        d->dev_name = names;
    lens = realloc(d->dev_len, cap / 2 * sizeof(*lens));
    if (lens)
        d->dev_len = lens;
    if (!idx || !names || !lens) {
        free(idx);
        return -1;
    }
    for (size_t i = 0; i < d->ndev; i++) {
        size_t h = tc_fb_hash_bytes(d->dev_name[i], d->dev_len[i]) & (cap - 1);

        while (idx[h])
            h = (h + 1) & (cap - 1);
        idx[h] = (uint32_t)i + 1;
    }
    free(d->dev_index);
    d->dev_index = idx;
    d->dev_index_cap = cap;
    d->dev_cap = cap / 2;
    return 0;
}

/* The index of device id p[0..n), interned on first sight; -1 when out of memory. */
static long tc_fb_dev(tc_fb_day *d, const char *p, uint32_t n)
{
    size_t h;

    if (d->ndev + 1 > d->dev_cap && tc_fb_dev_grow(d) != 0)
        return -1;
    h = tc_fb_hash_bytes(p, n) & (d->dev_index_cap - 1);
    while (d->dev_index[h]) {
        uint32_t i = d->dev_index[h] - 1;

        if (d->dev_len[i] == n && memcmp(d->dev_name[i], p, n) == 0)
            return i;
        h = (h + 1) & (d->dev_index_cap - 1);
    }
    if (!(d->dev_name[d->ndev] = malloc((size_t)n + 1)))
        return -1;
    memcpy(d->dev_name[d->ndev], p, n);
    d->dev_name[d->ndev][n] = '\0';
    d->dev_len[d->ndev] = n;
    d->dev_index[h] = (uint32_t)d->ndev + 1;
    return (long)d->ndev++;
}

/* Append a finished run a of one window; -1 past the cap or out of memory. */
static int tc_fb_spill(tc_fb_day *d, uint32_t dev, uint32_t def, const tc_wagg *a)
{
    if (d->nslot == d->slot_cap) {
        size_t cap = d->slot_cap ? d->slot_cap * 2 : 4096;
        tc_fb_slot *grown;

        if (d->slot_cap >= TC_FEATURES_WINDOWS_MAX)
            return -1;
        if (cap > TC_FEATURES_WINDOWS_MAX)
            cap = TC_FEATURES_WINDOWS_MAX;
        if (!(grown = realloc(d->slot, cap * sizeof(*grown))))
            return -1;
        d->slot = grown;
        d->slot_cap = cap;
    }
    d->slot[d->nslot].dev = dev + 1;
    d->slot[d->nslot].def = def;
    d->slot[d->nslot].agg = *a;
    d->nslot++;
    return 0;
}

/* The accumulator of (device, definition) for the window holding t: the dense one, spilled
 * first when it holds another window. NULL past the cap or out of memory. */
static tc_wagg *tc_fb_acc(tc_fb_day *d, uint32_t dev, uint32_t def, const tc_feat_def *fd,
                          int64_t t)
{
    int64_t start = tc_wagg_window_start(t, fd->window_s);
    size_t at = (size_t)dev * d->ndefs + def;
    tc_wagg *a;

    if (at >= d->cur_cap) {
        size_t cap = d->cur_cap ? d->cur_cap : 1024;
        tc_wagg *cur;

        while (cap <= at)
            cap *= 2;
        if (!(cur = realloc(d->cur, cap * sizeof(*cur))))
            return NULL;
        memset(cur + d->cur_cap, 0, (cap - d->cur_cap) * sizeof(*cur));
        d->cur = cur;
        d->cur_cap = cap;
    }
    a = &d->cur[at];
    if (a->rows && a->start_us != start) {
        if (tc_fb_spill(d, dev, def, a) != 0)
            return NULL;
        a->rows = 0;
    }
    if (!a->rows)
        tc_wagg_init(a, start, fd->lo, fd->hi);
    return a;
}

/* Every dense accumulator into the table, once the day's files are read. */
static int tc_fb_spill_all(tc_fb_day *d)
{
    for (size_t at = 0; at < d->cur_cap; at++) {
        if (d->cur[at].rows &&
            tc_fb_spill(d, (uint32_t)(at / d->ndefs), (uint32_t)(at % d->ndefs), &d->cur[at]) != 0)
            return -1;
    }
    return 0;
}

/* ---- reading a lake file ---- */

static int tc_fb_col(const tc_parquet_column *cols, size_t n, const char *name,
                     tc_parquet_type type)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(cols[i].name, name) == 0)
            return cols[i].type == type ? (int)i : -1;
    }
    return -1;
}

static tc_err tc_fb_read_file(const char *path, const tc_feat_defs *defs, tc_fb_day *d,
                              uint64_t *rows_read, char *errstr, size_t errstr_size)
{
    tc_parquet_reader *r;
    const tc_parquet_column *cols;
    size_t ncols;
    int ct, cd, cm[TC_FEAT_DEFS_MAX];
    tc_err err = tc_parquet_reader_open_path(path, &r, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    cols = tc_parquet_reader_columns(r, &ncols);
    ct = tc_fb_col(cols, ncols, "time", TC_PQ_TIMESTAMP_US);
    cd = tc_fb_col(cols, ncols, "device_id", TC_PQ_STRING);
    if (ct < 0 || cd < 0) {
        tc_parquet_reader_close(r);
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "\"%s\" is not a lake file: no time or device_id column", path);
    }
    /* A metric the file lacks (or that is not a DOUBLE column) is missing in every reading. */
    for (size_t k = 0; k < defs->n; k++)
        cm[k] = tc_fb_col(cols, ncols, defs->def[k].metric, TC_PQ_DOUBLE);
    for (size_t g = 0; g < tc_parquet_reader_row_groups(r) && err == TC_OK; g++) {
        const tc_parquet_values *v;
        size_t nrows;

        if ((err = tc_parquet_reader_read(r, g, &v, &nrows, errstr, errstr_size)) != TC_OK)
            break;
        for (size_t i = 0; i < nrows && err == TC_OK; i++) {
            int64_t t = ((const int64_t *)v[ct].values)[i];
            const tc_slice *id = &((const tc_slice *)v[cd].values)[i];
            long dev = tc_fb_dev(d, id->ptr ? id->ptr : "", id->ptr ? id->len : 0);

            if (dev < 0) {
                err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
                break;
            }
            for (size_t k = 0; k < defs->n; k++) {
                tc_wagg *a = tc_fb_acc(d, (uint32_t)dev, (uint32_t)k, &defs->def[k], t);
                int present = cm[k] >= 0 && (!v[cm[k]].present || v[cm[k]].present[i]);

                if (!a) {
                    err = tc_err_set(TC_ERR_FULL, errstr, errstr_size,
                                     "%s: more than %zu (device, feature, window) accumulators "
                                     "in one day",
                                     path, (size_t)TC_FEATURES_WINDOWS_MAX);
                    break;
                }
                tc_wagg_update(a, t, present ? ((const double *)v[cm[k]].values)[i] : 0, present);
            }
        }
        *rows_read += nrows;
    }
    tc_parquet_reader_close(r);
    return err;
}

/* ---- writing a feature's day ---- */

static const tc_parquet_column tc_fb_out_cols[] = {
    {"device_id", TC_PQ_STRING, 0, TC_PQ_DICT_ON},
    {"window_start", TC_PQ_TIMESTAMP_US, 0, TC_PQ_DICT_OFF},
    {"window_end", TC_PQ_TIMESTAMP_US, 0, TC_PQ_DICT_OFF},
    {"value", TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF},
    {"readings", TC_PQ_INT64, 0, TC_PQ_DICT_OFF},
};
#define TC_FB_OUT_COLS (sizeof(tc_fb_out_cols) / sizeof(tc_fb_out_cols[0]))

/* qsort has no context argument: the day being sorted. One build per thread (build.h). */
static _Thread_local const tc_fb_day *tc_fb_sorting;

static int tc_fb_cmp(const void *a, const void *b)
{
    const tc_fb_slot *x = *(const tc_fb_slot *const *)a, *y = *(const tc_fb_slot *const *)b;
    int c;

    if (x->def != y->def)
        return x->def < y->def ? -1 : 1;
    if (x->dev != y->dev &&
        (c = strcmp(tc_fb_sorting->dev_name[x->dev - 1], tc_fb_sorting->dev_name[y->dev - 1])))
        return c;
    if (x->agg.start_us != y->agg.start_us)
        return x->agg.start_us < y->agg.start_us ? -1 : 1;
    /* Runs of one window in the order they finished: merge then gives "last" its read order. */
    return x < y ? -1 : x > y;
}
typedef struct tc_fb_rows {
    tc_slice dev[TC_FB_WRITE_ROWS];
    int64_t start[TC_FB_WRITE_ROWS], end[TC_FB_WRITE_ROWS], readings[TC_FB_WRITE_ROWS];
    double value[TC_FB_WRITE_ROWS];
    uint8_t present[TC_FB_WRITE_ROWS];
} tc_fb_rows;

static tc_err tc_fb_write_rows(tc_parquet_writer *w, tc_fb_rows *r, size_t n, char *errstr,
                               size_t errstr_size)
{
    tc_parquet_values v[TC_FB_OUT_COLS] = {
        {r->dev, NULL},         {r->start, NULL},    {r->end, NULL},
        {r->value, r->present}, {r->readings, NULL},
    };

    return n ? tc_parquet_write(w, v, n, errstr, errstr_size) : TC_OK;
}

/* The value of a window of a quality aggregate: the day's row of (dev, start) in qr (sorted as
 * the windows are, so *at only moves forward), or the value of no row. */
static int tc_fb_quality_value(const tc_fq_rows *qr, size_t *at, const char *dev, int64_t start,
                               tc_feat_agg agg, double *out)
{
    int c = 1;

    while (*at < qr->n &&
           ((c = strcmp(qr->device[*at], dev)) < 0 || (c == 0 && qr->start[*at] < start)))
        (*at)++;
    if (*at < qr->n && c == 0 && qr->start[*at] == start) {
        *out = qr->value[*at];
        return !isnan(*out);
    }
    return tc_fq_empty(agg, out);
}

/* Write a feature's windows of the day, list[0..n) (sorted), to dir/part-YYYYMMDD.parquet
 * through a temporary file; none: remove the day's file. qr: the day's values of a quality
 * aggregate (quality_src.h), NULL for the others. */
static tc_err tc_fb_write_feature(const tc_fb_day *d, const tc_feat_def *fd, const char *dir,
                                  int64_t day, tc_fb_slot *const *list, size_t n,
                                  const tc_fq_rows *qr, tc_fb_rows *rows,
                                  tc_features_build_stats *st, char *errstr, size_t errstr_size)
{
    char path[TC_PATH_MAX], tmp[TC_PATH_MAX];
    size_t fill = 0, windows = 0, qat = 0;
    int y, fd_out;
    unsigned m, dd;
    tc_parquet_writer *w;
    tc_err err = TC_OK;

    tc_time_civil_from_days(day, &y, &m, &dd);
    tc_path_fmt(path, sizeof(path), "%s/part-%04d%02u%02u.parquet", dir, y, m, dd);
    if (n == 0) {
        if (unlink(path) != 0 && errno != ENOENT)
            return tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not remove \"%s\": %s", path,
                              strerror(errno));
        return TC_OK;
    }
    if ((err = tc_durable_mkdirs(dir, errstr, errstr_size)) != TC_OK)
        return err;
    tc_path_fmt(tmp, sizeof(tmp), "%s/.part-%04d%02u%02u.parquet.tmp", dir, y, m, dd);
    if ((fd_out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not create \"%s\": %s", tmp,
                          strerror(errno));
    w = tc_parquet_writer_new(fd_out, tc_fb_out_cols, TC_FB_OUT_COLS, NULL, errstr, errstr_size);
    if (!w)
        err = TC_ERR_INVALID;
    if (err == TC_OK) {
        char def_text[256], wname[16];

        tc_feat_window_format(fd->window_s, wname, sizeof(wname));
        snprintf(def_text, sizeof(def_text), "%s(%s, %s)", tc_feat_agg_name(fd->agg), fd->metric,
                 wname);
        err = tc_parquet_add_kv(w, "thermocline.feature", def_text, errstr, errstr_size);
    }
    for (size_t i = 0; i < n && err == TC_OK; i++) {
        const tc_fb_slot *s = list[i];
        tc_wagg a = s->agg;

        /* The window's other runs follow it (sorted): one row for them all. */
        while (i + 1 < n && list[i + 1]->dev == s->dev && list[i + 1]->agg.start_us == a.start_us)
            tc_wagg_merge(&a, &list[++i]->agg);
        rows->dev[fill] = (tc_slice){d->dev_name[s->dev - 1], d->dev_len[s->dev - 1]};
        rows->start[fill] = a.start_us;
        rows->end[fill] = a.start_us + fd->window_s * 1000000;
        rows->readings[fill] = a.rows;
        rows->present[fill] =
            (uint8_t)(qr ? tc_fb_quality_value(qr, &qat, d->dev_name[s->dev - 1], a.start_us,
                                               fd->agg, &rows->value[fill])
                         : tc_wagg_finish(&a, fd->agg, &rows->value[fill]));
        windows++;
        if (++fill == TC_FB_WRITE_ROWS) {
            err = tc_fb_write_rows(w, rows, fill, errstr, errstr_size);
            fill = 0;
        }
    }
    if (err == TC_OK)
        err = tc_fb_write_rows(w, rows, fill, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_parquet_close(w, errstr, errstr_size);
    tc_parquet_writer_destroy(w);
    if (err == TC_OK && fsync(fd_out) != 0)
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not fsync \"%s\": %s", tmp,
                         strerror(errno));
    if (close(fd_out) != 0 && err == TC_OK)
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not close \"%s\": %s", tmp,
                         strerror(errno));
    if (err == TC_OK && rename(tmp, path) != 0)
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not rename \"%s\": %s", tmp,
                         strerror(errno));
    if (err == TC_OK)
        err = tc_durable_sync_dir(dir, errstr, errstr_size);
    if (err != TC_OK) {
        unlink(tmp);
        return err;
    }
    st->windows += windows;
    st->files_written++;
    return TC_OK;
}

/* ---- the walk over the lake's days ---- */

typedef struct tc_fb_walk {
    const tc_features_build_options *opt;
    char features[TC_PATH_MAX];
    tc_fb_state state;
    int rebuild_all;
    tc_features_build_stats *st;
    tc_fb_rows *rows;
    tc_fq *fq;        /* the quality monitor's tables, when a definition reads them */
    tc_fq_rows qrows; /* one quality feature's values of the day being built */
    char *errstr;
    size_t errstr_size;
} tc_fb_walk;

static int tc_fb_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void tc_fb_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The day's committed lake files (sorted) and their fingerprint. */
static tc_err tc_fb_list_day(const char *dir, char ***out, size_t *nout, uint64_t *fp, char *errstr,
                             size_t errstr_size)
{
    DIR *dh = opendir(dir);
    struct dirent *de;
    char **names = NULL, path[TC_PATH_MAX];
    size_t n = 0, cap = 0;
    tc_err err = TC_OK;

    *out = NULL;
    *nout = 0;
    *fp = TC_FB_FNV_OFFSET;
    if (!dh)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not list \"%s\": %s", dir,
                          strerror(errno));
    while ((de = readdir(dh)) != NULL) {
        tc_lake_name ln;
        tc_lake_file_kind kind = tc_lake_name_parse(de->d_name, &ln);

        if (kind != TC_LAKE_FILE_PART && kind != TC_LAKE_FILE_COMPACT)
            continue;
        if (n == TC_FB_FILES_MAX) {
            err = tc_err_set(TC_ERR_FULL, errstr, errstr_size,
                             "\"%s\" holds more than %d files: compact it first "
                             "(thermocline lake compact)",
                             dir, TC_FB_FILES_MAX);
            break;
        }
        if (n == cap) {
            char **grown = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*names));

            if (!grown) {
                err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
                break;
            }
            names = grown;
        }
        if (!(names[n] = strdup(de->d_name))) {
            err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
            break;
        }
        n++;
    }
    closedir(dh);
    if (err != TC_OK) {
        tc_fb_free_names(names, n);
        return err;
    }
    if (n > 1)
        qsort(names, n, sizeof(*names), tc_fb_name_cmp);
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        int64_t size, mtime_ns;

        tc_path_fmt(path, sizeof(path), "%s/%s", dir, names[i]);
        if (stat(path, &sb) != 0) {
            err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not stat \"%s\": %s", path,
                             strerror(errno));
            break;
        }
        size = (int64_t)sb.st_size;
        mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        *fp = tc_fb_fnv(*fp, names[i], strlen(names[i]) + 1);
        *fp = tc_fb_fnv(*fp, &size, sizeof(size));
        *fp = tc_fb_fnv(*fp, &mtime_ns, sizeof(mtime_ns));
    }
    if (err != TC_OK) {
        tc_fb_free_names(names, n);
        return err;
    }
    *out = names;
    *nout = n;
    return TC_OK;
}

static tc_err tc_fb_build_day(tc_fb_walk *w, const char *dir, int64_t day, char **names,
                              size_t nnames)
{
    const tc_feat_defs *defs = w->opt->defs;
    char path[TC_PATH_MAX], out_dir[TC_PATH_MAX];
    tc_fb_day d = {0};
    tc_fb_slot **list = NULL;
    tc_err err = TC_OK;

    d.ndefs = defs->n;

    for (size_t i = 0; i < nnames && err == TC_OK; i++) {
        tc_path_fmt(path, sizeof(path), "%s/%s", dir, names[i]);
        err = tc_fb_read_file(path, defs, &d, &w->st->rows_read, w->errstr, w->errstr_size);
    }
    if (err == TC_OK && tc_fb_spill_all(&d) != 0)
        err = tc_err_set(TC_ERR_FULL, w->errstr, w->errstr_size,
                         "%s: more than %zu (device, feature, window) accumulators in one day", dir,
                         (size_t)TC_FEATURES_WINDOWS_MAX);
    if (err == TC_OK && d.nslot && !(list = malloc(d.nslot * sizeof(*list))))
        err = tc_err_set(TC_ERR_NOMEM, w->errstr, w->errstr_size, "out of memory");
    if (err == TC_OK && d.nslot) {
        size_t n = 0;

        /* One sort: by feature, device and window. */
        for (size_t i = 0; i < d.nslot; i++)
            list[n++] = &d.slot[i];
        tc_fb_sorting = &d;
        qsort(list, n, sizeof(*list), tc_fb_cmp);
    }
    for (size_t k = 0, at = 0; k < defs->n && err == TC_OK; k++) {
        size_t n = 0;

        while (at + n < d.nslot && list[at + n]->def == k)
            n++;
        if (tc_features_day_dir(out_dir, sizeof(out_dir), w->features, defs->def[k].name, day) < 0)
            err = tc_err_set(TC_ERR_INVALID, w->errstr, w->errstr_size,
                             "features directory \"%s\" is too long", w->features);
        else if (tc_feat_agg_from_quality(defs->def[k].agg) && n)
            err = tc_fq_day(w->fq, &defs->def[k], day, &w->qrows, w->errstr, w->errstr_size);
        if (err == TC_OK)
            err = tc_fb_write_feature(&d, &defs->def[k], out_dir, day, list + at, n,
                                      tc_feat_agg_from_quality(defs->def[k].agg) ? &w->qrows : NULL,
                                      w->rows, w->st, w->errstr, w->errstr_size);
        tc_fq_rows_free(&w->qrows);
        at += n;
    }
    free(list);
    tc_fb_day_free(&d);
    return err;
}

static tc_err tc_fb_day_fn(void *opaque, const char *dir, int64_t day)
{
    tc_fb_walk *w = opaque;
    char **names;
    size_t n, at;
    uint64_t fp;
    int lock;
    tc_err err;

    if (day < 0)
        return TC_OK; /* not a day directory's name: not ours to read */
    /* Shared with the sink's renames, exclusive for a compaction that swaps the day's files:
     * the files listed are the files read. */
    if ((lock = tc_lake_day_lock(w->opt->lake_root, day, 0)) < 0)
        return tc_err_set(TC_ERR_IO, w->errstr, w->errstr_size,
                          "could not lock the lake day of \"%s\": %s", dir, strerror(errno));
    if ((err = tc_fb_list_day(dir, &names, &n, &fp, w->errstr, w->errstr_size)) != TC_OK) {
        close(lock);
        return err;
    }
    /* The day's findings and figures are part of what it was built from. */
    if (w->fq &&
        (err = tc_fq_day_fingerprint(w->fq, day, &fp, w->errstr, w->errstr_size)) != TC_OK) {
        tc_fb_free_names(names, n);
        close(lock);
        return err;
    }
    w->st->days++;
    at = tc_fb_state_find(&w->state, day);
    if (!w->rebuild_all && at != (size_t)-1 && w->state.fp[at] == fp) {
        tc_fb_free_names(names, n);
        close(lock);
        return TC_OK;
    }
    err = tc_fb_build_day(w, dir, day, names, n);
    tc_fb_free_names(names, n);
    close(lock);
    if (err == TC_OK)
        err = tc_fb_state_set(&w->state, day, fp, w->errstr, w->errstr_size);
    if (err == TC_OK)
        err = tc_fb_state_save(w->features, &w->state, w->errstr, w->errstr_size);
    if (err == TC_OK)
        w->st->days_built++;
    return err;
}

tc_err tc_features_build(const tc_features_build_options *opt, tc_features_build_stats *stats,
                         char *errstr, size_t errstr_size)
{
    tc_features_build_stats local;
    tc_fb_walk *w;
    uint64_t defs_fp;
    tc_err err;

    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof(*stats));
    if (!opt->lake_root || !*opt->lake_root)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "lake.dir is not set");
    if (!opt->defs || opt->defs->n == 0)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "no feature definitions: set features.definitions (docs/ml.md)");
    if (!(w = calloc(1, sizeof(*w))) || !(w->rows = malloc(sizeof(*w->rows)))) {
        free(w);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    }
    w->opt = opt;
    w->st = stats;
    w->errstr = errstr;
    w->errstr_size = errstr_size;
    if (tc_features_dir(opt, w->features, sizeof(w->features)) < 0) {
        err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "features directory too long");
    } else if ((err = tc_fb_state_load(w->features, &w->state, errstr, errstr_size)) == TC_OK) {
        defs_fp = tc_fb_defs_fingerprint(opt->defs);
        w->rebuild_all = opt->full || w->state.defs_fp != defs_fp;
        if (w->rebuild_all)
            w->state.n = 0; /* nothing recorded holds for other definitions */
        w->state.defs_fp = defs_fp;
        if (tc_feat_defs_need_quality(opt->defs) &&
            !(w->fq =
                  tc_fq_new(opt->pg_dsn ? opt->pg_dsn : "",
                            opt->pg_schema ? opt->pg_schema : "telemetry", errstr, errstr_size)))
            err = TC_ERR_DB_CONN;
        if (err == TC_OK)
            err = tc_lake_walk_days(opt->lake_root, tc_fb_day_fn, w);
    }
    tc_fq_destroy(w->fq);
    tc_fb_state_free(&w->state);
    free(w->rows);
    free(w);
    return err;
}
