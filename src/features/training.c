/*
 * training.c -- the point-in-time join of labels with the offline features; the rules are in
 * training.h.
 *
 * Labels are read whole (they are few: events, not readings). Then, one feature at a time, the
 * feature's files of the labels' days and the lookback before them are read into one array of
 * (device, window_end, value), sorted by device and window_end, and each label takes the last
 * window with window_end <= its time by binary search. The files are sorted by device already,
 * so a device id is copied once per file run, not once per window.
 */
#include "features/training.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/durable.h"
#include "core/path.h"
#include "core/timeutil.h"
#include "features/build.h"
#include "lake/parquet.h"
#include "lake/parquet_values.h"

/* Rows handed to the writer at a time. */
#define TC_TS_WRITE_ROWS 8192
#define TC_TS_US         1000000LL

typedef struct tc_ts_labels {
    size_t n, cap;
    char **dev;
    int64_t *t;
    double *num; /* the label as a number (NaN when it is not one) */
    char **str;  /* the label's text */
    int numeric; /* every label is a number */
} tc_ts_labels;

static void tc_ts_labels_free(tc_ts_labels *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->dev[i]);
        free(l->str[i]);
    }
    free(l->dev);
    free(l->t);
    free(l->num);
    free(l->str);
    memset(l, 0, sizeof(*l));
}

static tc_err tc_ts_labels_add(tc_ts_labels *l, const char *dev, size_t dev_len, int64_t t,
                               const char *label, size_t label_len, char *errstr,
                               size_t errstr_size)
{
    char *end;

    if (l->n == TC_TRAINING_LABELS_MAX)
        return tc_err_set(TC_ERR_FULL, errstr, errstr_size, "more than %zu labels",
                          (size_t)TC_TRAINING_LABELS_MAX);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        char **dev2 = realloc(l->dev, cap * sizeof(*dev2));
        int64_t *t2;
        double *num2;
        char **str2;

        if (dev2)
            l->dev = dev2;
        t2 = realloc(l->t, cap * sizeof(*t2));
        if (t2)
            l->t = t2;
        num2 = realloc(l->num, cap * sizeof(*num2));
        if (num2)
            l->num = num2;
        str2 = realloc(l->str, cap * sizeof(*str2));
        if (str2)
            l->str = str2;
        if (!dev2 || !t2 || !num2 || !str2)
            return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        l->cap = cap;
    }
    l->dev[l->n] = strndup(dev, dev_len);
    l->str[l->n] = strndup(label, label_len);
    if (!l->dev[l->n] || !l->str[l->n]) {
        free(l->dev[l->n]);
        free(l->str[l->n]);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    }
    l->t[l->n] = t;
    l->num[l->n] = label_len ? strtod(l->str[l->n], &end) : NAN;
    if (!label_len || *end || !isfinite(l->num[l->n])) {
        l->num[l->n] = NAN;
        l->numeric = 0;
    }
    l->n++;
    return TC_OK;
}

/* A CSV time: RFC 3339, or seconds since the epoch (a fraction allowed). */
static int tc_ts_parse_time(const char *s, size_t len, int64_t *out)
{
    char buf[64], *end;
    double v;

    if (tc_time_parse_rfc3339(s, len, out) == TC_OK)
        return 0;
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    v = strtod(buf, &end);
    if (*end || !isfinite(v) || fabs(v) > 1e11)
        return -1;
    *out = (int64_t)llround(v * 1e6);
    return 0;
}

/* Split line at ',' into at most cap fields (pointers into line, lengths); returns the count. */
static size_t tc_ts_split(char *line, const char **f, size_t *len, size_t cap)
{
    size_t n = 0;
    char *p = line;

    for (;;) {
        char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);

        while (l && (p[l - 1] == '\n' || p[l - 1] == '\r' || p[l - 1] == ' '))
            l--;
        while (l && *p == ' ') {
            p++;
            l--;
        }
        if (n < cap) {
            f[n] = p;
            len[n] = l;
        }
        n++;
        if (!c)
            return n;
        p = c + 1;
    }
}

#define TC_TS_FIELDS_MAX 64

static tc_err tc_ts_read_csv(const char *path, tc_ts_labels *l, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    char line[TC_TRAINING_LINE_MAX];
    const char *fld[TC_TS_FIELDS_MAX];
    size_t len[TC_TS_FIELDS_MAX], nf;
    int cdev = -1, ctime = -1, clabel = -1, lineno = 1;
    tc_err err = TC_OK;

    if (!f)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not read \"%s\": %s", path,
                          strerror(errno));
    if (!fgets(line, sizeof(line), f)) {
        fclose(f);
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "%s: empty (want a header: device_id,time,label)", path);
    }
    nf = tc_ts_split(line, fld, len, TC_TS_FIELDS_MAX);
    for (size_t i = 0; i < nf && i < TC_TS_FIELDS_MAX; i++) {
        if ((len[i] == 9 && !memcmp(fld[i], "device_id", 9)) ||
            (len[i] == 6 && !memcmp(fld[i], "device", 6)))
            cdev = (int)i;
        else if (len[i] == 4 && !memcmp(fld[i], "time", 4))
            ctime = (int)i;
        else if (len[i] == 5 && !memcmp(fld[i], "label", 5))
            clabel = (int)i;
    }
    if (cdev < 0 || ctime < 0 || clabel < 0) {
        fclose(f);
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "%s:1: the header must name device_id (or device), time and label", path);
    }
    l->numeric = 1;
    while (err == TC_OK && fgets(line, sizeof(line), f)) {
        int64_t t;

        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "%s:%d: longer than %d bytes",
                             path, lineno, TC_TRAINING_LINE_MAX - 1);
            break;
        }
        if (line[strspn(line, " \r\n")] == '\0')
            continue;
        if (strchr(line, '"')) {
            err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                             "%s:%d: quoted fields are not supported", path, lineno);
            break;
        }
        nf = tc_ts_split(line, fld, len, TC_TS_FIELDS_MAX);
        if (nf <= (size_t)cdev || nf <= (size_t)ctime || nf <= (size_t)clabel ||
            nf > TC_TS_FIELDS_MAX) {
            err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "%s:%d: %zu fields", path, lineno,
                             nf);
        } else if (len[cdev] == 0) {
            err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "%s:%d: empty device_id", path,
                             lineno);
        } else if (tc_ts_parse_time(fld[ctime], len[ctime], &t) != 0) {
            err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                             "%s:%d: time \"%.*s\" is neither RFC 3339 nor epoch seconds", path,
                             lineno, (int)(len[ctime] > 64 ? 64 : len[ctime]), fld[ctime]);
        } else {
            err = tc_ts_labels_add(l, fld[cdev], len[cdev], t, fld[clabel], len[clabel], errstr,
                                   errstr_size);
        }
    }
    fclose(f);
    return err;
}

/* Open path and find its columns names[0..3) (idx -1 when absent); *cols is the schema. */
static tc_err tc_ts_open(const char *path, const char *const names[3], tc_parquet_reader **r,
                         const tc_parquet_column **cols, int idx[3], char *errstr,
                         size_t errstr_size)
{
    size_t ncols;
    tc_err err = tc_parquet_reader_open_path(path, r, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    *cols = tc_parquet_reader_columns(*r, &ncols);
    for (int k = 0; k < 3; k++) {
        idx[k] = -1;
        for (size_t i = 0; i < ncols; i++) {
            if (strcmp((*cols)[i].name, names[k]) == 0)
                idx[k] = (int)i;
        }
    }
    return TC_OK;
}
static tc_err tc_ts_read_parquet(const char *path, tc_ts_labels *l, char *errstr,
                                 size_t errstr_size)
{
    static const char *const names[3] = {"device_id", "time", "label"};
    tc_parquet_reader *r;
    const tc_parquet_column *cols;
    int idx[3], cd, ct, cl;
    tc_err err = tc_ts_open(path, names, &r, &cols, idx, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    cd = idx[0];
    ct = idx[1];
    cl = idx[2];
    if (cd < 0 || ct < 0 || cl < 0 || cols[cd].type != TC_PQ_STRING ||
        (cols[ct].type != TC_PQ_TIMESTAMP_US && cols[ct].type != TC_PQ_INT64)) {
        tc_parquet_reader_close(r);
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "%s: want columns device_id (string), time (timestamp or int64 µs) "
                          "and label",
                          path);
    }
    l->numeric = 1;
    for (size_t g = 0; g < tc_parquet_reader_row_groups(r) && err == TC_OK; g++) {
        const tc_parquet_values *v;
        size_t nrows;

        if ((err = tc_parquet_reader_read(r, g, &v, &nrows, errstr, errstr_size)) != TC_OK)
            break;
        for (size_t i = 0; i < nrows && err == TC_OK; i++) {
            const tc_slice *dev = &((const tc_slice *)v[cd].values)[i];
            char text[64];
            int present = !v[cl].present || v[cl].present[i];
            int n = 0;

            if (!dev->ptr || (v[ct].present && !v[ct].present[i])) {
                err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                                 "%s: row group %zu row %zu: NULL device_id or time", path, g, i);
                break;
            }
            if (present) {
                const void *a = v[cl].values;

                switch (cols[cl].type) {
                case TC_PQ_DOUBLE:
                    n = snprintf(text, sizeof(text), "%.17g", ((const double *)a)[i]);
                    break;
                case TC_PQ_FLOAT:
                    n = snprintf(text, sizeof(text), "%.9g", (double)((const float *)a)[i]);
                    break;
                case TC_PQ_INT64:
                    n = snprintf(text, sizeof(text), "%lld", (long long)((const int64_t *)a)[i]);
                    break;
                case TC_PQ_INT32:
                    n = snprintf(text, sizeof(text), "%d", (int)((const int32_t *)a)[i]);
                    break;
                case TC_PQ_BOOLEAN:
                    n = snprintf(text, sizeof(text), "%d", ((const uint8_t *)a)[i] ? 1 : 0);
                    break;
                default:
                    break;
                }
            }
            if (present && (cols[cl].type == TC_PQ_STRING || cols[cl].type == TC_PQ_BYTES)) {
                const tc_slice *s = &((const tc_slice *)v[cl].values)[i];

                err = tc_ts_labels_add(l, dev->ptr, dev->len, ((const int64_t *)v[ct].values)[i],
                                       s->ptr ? s->ptr : "", s->ptr ? s->len : 0, errstr,
                                       errstr_size);
            } else {
                err = tc_ts_labels_add(l, dev->ptr, dev->len, ((const int64_t *)v[ct].values)[i],
                                       text, n > 0 ? (size_t)n : 0, errstr, errstr_size);
            }
        }
    }
    tc_parquet_reader_close(r);
    return err;
}

/* ---- one feature's windows ---- */

typedef struct tc_ts_window {
    const char *dev; /* into the run's copy */
    int64_t end;
    double value;
    uint8_t present;
} tc_ts_window;

typedef struct tc_ts_windows {
    tc_ts_window *w;
    size_t n, cap;
    char **devs; /* the copies of device ids, one per run of a file */
    size_t ndevs, devs_cap;
} tc_ts_windows;

static void tc_ts_windows_free(tc_ts_windows *ws)
{
    for (size_t i = 0; i < ws->ndevs; i++)
        free(ws->devs[i]);
    free(ws->devs);
    free(ws->w);
    memset(ws, 0, sizeof(*ws));
}

static int tc_ts_grow(void **p, size_t *cap, size_t size)
{
    size_t c = *cap ? *cap * 2 : 4096;
    void *q = realloc(*p, c * size);

    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static tc_err tc_ts_read_windows(const char *path, tc_ts_windows *ws, char *errstr,
                                 size_t errstr_size)
{
    static const char *const names[3] = {"device_id", "window_end", "value"};
    tc_parquet_reader *r;
    const tc_parquet_column *cols;
    int idx[3], cd, ce, cv;
    tc_err err = tc_ts_open(path, names, &r, &cols, idx, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    cd = idx[0];
    ce = idx[1];
    cv = idx[2];
    if (cd < 0 || ce < 0 || cv < 0 || cols[cd].type != TC_PQ_STRING ||
        cols[ce].type != TC_PQ_TIMESTAMP_US || cols[cv].type != TC_PQ_DOUBLE) {
        tc_parquet_reader_close(r);
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "\"%s\" is not a features file (features build)", path);
    }
    for (size_t g = 0; g < tc_parquet_reader_row_groups(r) && err == TC_OK; g++) {
        const tc_parquet_values *v;
        size_t nrows;
        const char *run = NULL;
        size_t run_len = 0;

        if ((err = tc_parquet_reader_read(r, g, &v, &nrows, errstr, errstr_size)) != TC_OK)
            break;
        for (size_t i = 0; i < nrows; i++) {
            const tc_slice *dev = &((const tc_slice *)v[cd].values)[i];
            tc_ts_window *w;

            if (!dev->ptr)
                continue;
            if (ws->n == TC_TRAINING_WINDOWS_MAX) {
                err = tc_err_set(TC_ERR_FULL, errstr, errstr_size,
                                 "%s: more than %zu windows of one feature", path,
                                 (size_t)TC_TRAINING_WINDOWS_MAX);
                break;
            }
            if (!run || run_len != dev->len || memcmp(run, dev->ptr, dev->len) != 0) {
                if ((ws->ndevs == ws->devs_cap &&
                     tc_ts_grow((void **)&ws->devs, &ws->devs_cap, sizeof(*ws->devs)) != 0) ||
                    !(ws->devs[ws->ndevs] = strndup(dev->ptr, dev->len))) {
                    err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
                    break;
                }
                run = ws->devs[ws->ndevs++];
                run_len = dev->len;
            }
            if (ws->n == ws->cap && tc_ts_grow((void **)&ws->w, &ws->cap, sizeof(*ws->w)) != 0) {
                err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
                break;
            }
            w = &ws->w[ws->n++];
            w->dev = run;
            w->end = ((const int64_t *)v[ce].values)[i];
            w->present = !v[cv].present || v[cv].present[i];
            w->value = w->present ? ((const double *)v[cv].values)[i] : NAN;
        }
    }
    tc_parquet_reader_close(r);
    return err;
}

static int tc_ts_window_cmp(const void *a, const void *b)
{
    const tc_ts_window *x = a, *y = b;
    int c = strcmp(x->dev, y->dev);

    if (c)
        return c;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* The last window of dev with end <= t, or NULL. */
static const tc_ts_window *tc_ts_as_of(const tc_ts_windows *ws, const char *dev, int64_t t)
{
    size_t lo = 0, hi = ws->n;

    /* First index whose (dev, end) is after (dev, t). */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ws->w[mid].dev, dev);

        if (c < 0 || (c == 0 && ws->w[mid].end <= t))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || strcmp(ws->w[lo - 1].dev, dev) != 0)
        return NULL;
    return &ws->w[lo - 1];
}

/* Feature k's value for every label into val/present. */
static tc_err tc_ts_join_feature(const tc_training_options *opt, const tc_feat_def *fd,
                                 const tc_ts_labels *l, int64_t day_lo, int64_t day_hi, double *val,
                                 uint8_t *present, char *errstr, size_t errstr_size)
{
    tc_ts_windows ws = {0};
    char dir[TC_PATH_MAX], path[TC_PATH_MAX];
    tc_err err = TC_OK;

    for (int64_t day = day_lo; day <= day_hi && err == TC_OK; day++) {
        int y;
        unsigned m, d;
        struct stat sb;

        tc_features_day_dir(dir, sizeof(dir), opt->features_dir, fd->name, day);
        tc_time_civil_from_days(day, &y, &m, &d);
        tc_path_fmt(path, sizeof(path), "%s/part-%04d%02u%02u.parquet", dir, y, m, d);
        if (stat(path, &sb) == 0)
            err = tc_ts_read_windows(path, &ws, errstr, errstr_size);
    }
    if (err == TC_OK) {
        if (ws.n > 1)
            qsort(ws.w, ws.n, sizeof(*ws.w), tc_ts_window_cmp);
        for (size_t i = 0; i < l->n; i++) {
            const tc_ts_window *w = tc_ts_as_of(&ws, l->dev[i], l->t[i]);

            /* Within the lookback only: an older window is stale, not "as of". */
            present[i] = w && w->present &&
                         w->end >= l->t[i] - (int64_t)TC_TRAINING_LOOKBACK_DAYS * 86400 * TC_TS_US;
            val[i] = present[i] ? w->value : NAN;
        }
    }
    tc_ts_windows_free(&ws);
    return err;
}

/* ---- output ---- */

static tc_err tc_ts_write(const tc_training_options *opt, const tc_ts_labels *l, double *const *val,
                          uint8_t *const *present, char *errstr, size_t errstr_size)
{
    size_t nf = opt->defs->n, ncols = 3 + nf;
    tc_parquet_column *cols = calloc(ncols, sizeof(*cols));
    tc_parquet_values *v = calloc(ncols, sizeof(*v));
    tc_slice *dev = malloc(TC_TS_WRITE_ROWS * sizeof(*dev));
    tc_slice *lstr = malloc(TC_TS_WRITE_ROWS * sizeof(*lstr));
    char tmp[TC_PATH_MAX];
    tc_parquet_writer *w = NULL;
    int fd = -1;
    tc_err err = TC_OK;

    if (!cols || !v || !dev || !lstr) {
        err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto out;
    }
    cols[0] = (tc_parquet_column){"device_id", TC_PQ_STRING, 0, TC_PQ_DICT_ON};
    cols[1] = (tc_parquet_column){"time", TC_PQ_TIMESTAMP_US, 0, TC_PQ_DICT_OFF};
    cols[2] =
        (tc_parquet_column){"label", l->numeric ? TC_PQ_DOUBLE : TC_PQ_STRING, 0, TC_PQ_DICT_AUTO};
    for (size_t k = 0; k < nf; k++)
        cols[3 + k] = (tc_parquet_column){opt->defs->def[k].name, TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF};
    if (tc_path_fmt(tmp, sizeof(tmp), "%s.tmp", opt->out_path) < 0) {
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "--out path too long");
        goto out;
    }
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not create \"%s\": %s", tmp,
                         strerror(errno));
        goto out;
    }
    if (!(w = tc_parquet_writer_new(fd, cols, ncols, NULL, errstr, errstr_size))) {
        err = TC_ERR_INVALID;
        goto out;
    }
    for (size_t at = 0; at < l->n && err == TC_OK; at += TC_TS_WRITE_ROWS) {
        size_t n = l->n - at < TC_TS_WRITE_ROWS ? l->n - at : TC_TS_WRITE_ROWS;

        for (size_t i = 0; i < n; i++) {
            dev[i] = (tc_slice){l->dev[at + i], (uint32_t)strlen(l->dev[at + i])};
            lstr[i] = (tc_slice){l->str[at + i], (uint32_t)strlen(l->str[at + i])};
        }
        v[0] = (tc_parquet_values){dev, NULL};
        v[1] = (tc_parquet_values){l->t + at, NULL};
        v[2] = (tc_parquet_values){l->numeric ? (const void *)(l->num + at) : (const void *)lstr,
                                   NULL};
        for (size_t k = 0; k < nf; k++)
            v[3 + k] = (tc_parquet_values){val[k] + at, present[k] + at};
        err = tc_parquet_write(w, v, n, errstr, errstr_size);
    }
    if (err == TC_OK)
        err = tc_parquet_close(w, errstr, errstr_size);
    if (err == TC_OK && fsync(fd) != 0)
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not fsync \"%s\": %s", tmp,
                         strerror(errno));
    if (err == TC_OK && rename(tmp, opt->out_path) != 0)
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "could not rename \"%s\" to \"%s\": %s",
                         tmp, opt->out_path, strerror(errno));
out:
    tc_parquet_writer_destroy(w);
    if (fd >= 0) {
        close(fd);
        if (err != TC_OK)
            unlink(tmp);
    }
    free(cols);
    free(v);
    free(dev);
    free(lstr);
    return err;
}

tc_err tc_training_set(const tc_training_options *opt, uint64_t *rows, char *errstr,
                       size_t errstr_size)
{
    tc_ts_labels l = {0};
    size_t nf = opt->defs->n, plen = strlen(opt->labels_path);
    double **val = calloc(nf ? nf : 1, sizeof(*val));
    uint8_t **present = calloc(nf ? nf : 1, sizeof(*present));
    int64_t day_lo = INT64_MAX, day_hi = INT64_MIN;
    tc_err err;

    if (rows)
        *rows = 0;
    if (!val || !present) {
        free(val);
        free(present);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    }
    if (plen > 8 && strcmp(opt->labels_path + plen - 8, ".parquet") == 0)
        err = tc_ts_read_parquet(opt->labels_path, &l, errstr, errstr_size);
    else
        err = tc_ts_read_csv(opt->labels_path, &l, errstr, errstr_size);
    for (size_t i = 0; i < l.n; i++) {
        int64_t day = tc_time_day_of(l.t[i]);

        day_lo = day < day_lo ? day : day_lo;
        day_hi = day > day_hi ? day : day_hi;
    }
    for (size_t k = 0; k < nf && err == TC_OK; k++) {
        val[k] = malloc((l.n ? l.n : 1) * sizeof(**val));
        present[k] = malloc(l.n ? l.n : 1);
        if (!val[k] || !present[k])
            err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        else if (l.n)
            err = tc_ts_join_feature(opt, &opt->defs->def[k], &l,
                                     day_lo - TC_TRAINING_LOOKBACK_DAYS - 1, day_hi, val[k],
                                     present[k], errstr, errstr_size);
    }
    if (err == TC_OK)
        err = tc_ts_write(opt, &l, val, present, errstr, errstr_size);
    if (err == TC_OK && rows)
        *rows = l.n;
    for (size_t k = 0; k < nf; k++) {
        free(val[k]);
        free(present[k]);
    }
    free(val);
    free(present);
    tc_ts_labels_free(&l);
    return err;
}
