/*
 * compact.c -- merge a closed day's files into a few large ones, swapped in atomically; see
 * compact.h.
 */
#include "lake/compact.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/path.h"
#include "core/timeutil.h"
#include "lake/layout.h"
#include "lake/parquet_values.h"

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define TC_CPT_PATH_MAX   TC_PATH_MAX
#define TC_CPT_PARTS_MAX  4096
#define TC_CPT_US_PER_DAY INT64_C(86400000000)

void tc_lake_compact_options_default(tc_lake_compact_options *o)
{
    memset(o, 0, sizeof(*o));
    o->min_age_days = 2;
    o->target_bytes = TC_LAKE_COMPACT_TARGET_DEFAULT;
    o->codec = TC_PQ_SNAPPY;
}

int tc_lake_day_lock(const char *root, int64_t day, int exclusive)
{
    char path[TC_CPT_PATH_MAX];
    int y, fd;
    unsigned m, d;

    tc_time_civil_from_days(day, &y, &m, &d);
    tc_path_fmt(path, sizeof(path), "%s/_thermocline", root);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return -1;
    tc_path_fmt(path, sizeof(path), "%s/_thermocline/locks", root);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return -1;
    tc_path_fmt(path, sizeof(path), "%s/_thermocline/locks/day-%04d-%02u-%02u.lock", root, y, m, d);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    return fd;
}

/* ---- inputs ---- */

typedef struct tc_cpt_range {
    int32_t partition;
    int64_t first, last;
} tc_cpt_range;

typedef struct tc_cpt_input {
    char *name;
    uint64_t bytes;
    int64_t rows;
    size_t nranges;
    tc_cpt_range *ranges;
} tc_cpt_input;

typedef struct tc_cpt {
    const char *root;
    char month[TC_CPT_PATH_MAX], daydir[TC_CPT_PATH_MAX];
    char staging[TC_CPT_PATH_MAX]; /* <root>/_thermocline/compact: outside telemetry/ */
    char hidden[TC_CPT_PATH_MAX];  /* <staging>/YYYY-MM-DD: the day being built */
    char dayname[16];
    char topic[256], schema_version[32];
    tc_cpt_input *in;
    size_t nin;
    /* output schema: the union of the inputs' columns (by name), first input's order first */
    tc_parquet_column *ucols;
    char **unames;
    size_t nu;
    char *errstr;
    size_t n;
} tc_cpt;

static int tc_cpt_add_range(tc_cpt_input *in, int32_t p, int64_t first, int64_t last)
{
    tc_cpt_range *r;

    if (in->nranges >= TC_CPT_PARTS_MAX)
        return -1;
    r = realloc(in->ranges, (in->nranges + 1) * sizeof(*r));
    if (!r)
        return -1;
    in->ranges = r;
    r[in->nranges++] = (tc_cpt_range){p, first, last};
    return 0;
}

/* Parse "P:first-last,P:first-last" (the kafka.partitions of a compacted file). */
static int tc_cpt_parse_ranges(tc_cpt_input *in, const char *s)
{
    while (*s) {
        char *end;
        long long p, f, l;
        p = strtoll(s, &end, 10);
        if (end == s || *end != ':' || p < 0 || p > INT32_MAX)
            return -1;
        s = end + 1;
        f = strtoll(s, &end, 10);
        if (end == s || *end != '-')
            return -1;
        s = end + 1;
        l = strtoll(s, &end, 10);
        if (end == s || (*end != ',' && *end != '\0') || l < f || f < 0)
            return -1;
        if (tc_cpt_add_range(in, (int32_t)p, f, l) != 0)
            return -1;
        s = *end ? end + 1 : end;
    }
    return in->nranges ? 0 : -1;
}

static void tc_cpt_free_inputs(tc_cpt *c)
{
    for (size_t i = 0; i < c->nin; i++) {
        free(c->in[i].name);
        free(c->in[i].ranges);
    }
    free(c->in);
    c->in = NULL;
    c->nin = 0;
    for (size_t u = 0; u < c->nu; u++)
        free(c->unames[u]);
    free(c->unames);
    free(c->ucols);
    c->unames = NULL;
    c->ucols = NULL;
    c->nu = 0;
}

static int tc_cpt_name_cmp(const void *a, const void *b)
{
    return strcmp(((const tc_cpt_input *)a)->name, ((const tc_cpt_input *)b)->name);
}

static int tc_cpt_ends(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* List the day: the names of its Parquet files. Refuses temporary and unknown files. Returns TC_OK
 * (c->in filled, sorted), TC_ERR_NOT_FOUND when the directory does not exist. */
static tc_err tc_cpt_list(tc_cpt *c)
{
    DIR *d = opendir(c->daydir);
    struct dirent *de;
    tc_err err = TC_OK;

    if (!d)
        return errno == ENOENT
                   ? TC_ERR_NOT_FOUND
                   : tc_err_set(TC_ERR_IO, c->errstr, c->n, "%s: %s", c->daydir, strerror(errno));
    while ((de = readdir(d)) != NULL && err == TC_OK) {
        const char *nm = de->d_name;
        tc_lake_name parsed;
        tc_lake_file_kind kind;
        tc_cpt_input *in;
        if (!strcmp(nm, ".") || !strcmp(nm, ".."))
            continue;
        if (nm[0] == '.' && tc_cpt_ends(nm, ".tmp")) {
            err = tc_err_set(TC_ERR_INVALID, c->errstr, c->n,
                             "%s: temporary file %s: a lake writer is committing to this day "
                             "(or crashed; its recovery removes the file): not compacting",
                             c->daydir, nm);
            break;
        }
        kind = tc_lake_name_parse(nm, &parsed);
        if (kind != TC_LAKE_FILE_PART && kind != TC_LAKE_FILE_COMPACT) {
            err = tc_err_set(TC_ERR_INVALID, c->errstr, c->n,
                             "%s: unexpected file %s: not compacting a day with files it does "
                             "not know",
                             c->daydir, nm);
            break;
        }
        in = realloc(c->in, (c->nin + 1) * sizeof(*in));
        if (!in) {
            err = tc_err_set(TC_ERR_NOMEM, c->errstr, c->n, "out of memory");
            break;
        }
        c->in = in;
        memset(&in[c->nin], 0, sizeof(*in));
        in[c->nin].name = strdup(nm);
        if (!in[c->nin].name) {
            err = tc_err_set(TC_ERR_NOMEM, c->errstr, c->n, "out of memory");
            break;
        }
        c->nin++;
    }
    closedir(d);
    if (err == TC_OK && c->nin > 1)
        qsort(c->in, c->nin, sizeof(*c->in), tc_cpt_name_cmp);
    return err;
}

/* Merge an input's columns into the output schema: a column known by name must have the same
 * type and nullability; a new one must be OPTIONAL (rows of the other files get NULL there); every
 * REQUIRED output column must be in the input. Returns 0, or -1 with errstr filled. */
static tc_err tc_cpt_merge_schema(tc_cpt *c, const char *path, const tc_parquet_column *cols,
                                  size_t ncols)
{
    size_t had = c->nu, required_seen = 0, required = 0;

    for (size_t k = 0; k < ncols; k++) {
        size_t u;
        for (u = 0; u < c->nu && strcmp(c->ucols[u].name, cols[k].name) != 0; u++)
            ;
        if (u < c->nu) {
            if (u >= had)
                return tc_err_set(TC_ERR_INVALID, c->errstr, c->n,
                                  "%s: column %s appears twice: not compacting", path,
                                  cols[k].name);
            if (c->ucols[u].type != cols[k].type || c->ucols[u].optional != cols[k].optional) {
                return tc_err_set(
                    TC_ERR_INVALID, c->errstr, c->n,
                    "%s: column %s differs in type or nullability from the other files: "
                    "not compacting",
                    path, cols[k].name);
            }
            required_seen += u < had && !cols[k].optional;
            continue;
        }
        if (had > 0 && !cols[k].optional) {
            return tc_err_set(TC_ERR_INVALID, c->errstr, c->n,
                              "%s: REQUIRED column %s is not in the other files: not compacting",
                              path, cols[k].name);
        }
        if (c->nu >= TC_PQ_COLUMNS_MAX)
            return tc_err_set(TC_ERR_INVALID, c->errstr, c->n, "too many columns");
        tc_parquet_column *nc = realloc(c->ucols, (c->nu + 1) * sizeof(*nc));
        char **nn = nc ? realloc(c->unames, (c->nu + 1) * sizeof(*nn)) : NULL;
        if (nc)
            c->ucols = nc;
        if (nn)
            c->unames = nn;
        if (!nc || !nn || !(c->unames[c->nu] = strdup(cols[k].name)))
            return tc_err_set(TC_ERR_NOMEM, c->errstr, c->n, "out of memory");
        c->ucols[c->nu] = cols[k];
        c->ucols[c->nu].name = c->unames[c->nu];
        c->ucols[c->nu].dictionary = TC_PQ_DICT_AUTO;
        c->nu++;
    }
    for (size_t u = 0; u < had; u++)
        required += !c->ucols[u].optional;
    if (required_seen != required) {
        return tc_err_set(TC_ERR_INVALID, c->errstr, c->n,
                          "%s: lacks a REQUIRED column of the other files: not compacting", path);
    }
    return TC_OK;
}

/* Read every input's footer and check it (schema, topic, coordinates, committed). */
static tc_err tc_cpt_check_inputs(tc_cpt *c)
{
    tc_err err = TC_OK;

    for (size_t i = 0; i < c->nin && err == TC_OK; i++) {
        tc_cpt_input *in = &c->in[i];
        char path[TC_CPT_PATH_MAX], topic[256], buf[1 << 16];
        tc_parquet_reader *r;
        const tc_parquet_info *info;
        const tc_parquet_column *cols;
        size_t ncols;
        struct stat st;

        tc_path_fmt(path, sizeof(path), "%s/%s", c->daydir, in->name);
        err = tc_parquet_reader_open_path(path, &r, c->errstr, c->n);
        if (err != TC_OK) {
            char e[TC_ERRSTR_MAX];
            snprintf(e, sizeof(e), "%s", c->errstr);
            err = tc_err_set(err, c->errstr, c->n, "%s: %s", path, e);
            break;
        }
        info = tc_parquet_reader_info(r);
        cols = tc_parquet_reader_columns(r, &ncols);
        in->rows = info->num_rows;
        if (stat(path, &st) == 0)
            in->bytes = (uint64_t)st.st_size;
        if (i == 0 && !tc_lake_kv_get(info, TC_LAKE_KV_SCHEMA_VERSION, c->schema_version,
                                      sizeof(c->schema_version)))
            snprintf(c->schema_version, sizeof(c->schema_version), "1");
        if (err == TC_OK)
            err = tc_cpt_merge_schema(c, path, cols, ncols);
        if (err == TC_OK && !tc_lake_kv_get(info, TC_LAKE_KV_TOPIC, topic, sizeof(topic)))
            err = tc_err_set(TC_ERR_INVALID, c->errstr, c->n, "%s: no kafka.topic metadata", path);
        if (err == TC_OK && i == 0)
            snprintf(c->topic, sizeof(c->topic), "%s", topic);
        else if (err == TC_OK && strcmp(topic, c->topic) != 0)
            err = tc_err_set(TC_ERR_INVALID, c->errstr, c->n,
                             "%s: topic %s, other files %s: not compacting", path, topic, c->topic);
        if (err == TC_OK && !strncmp(in->name, "part-", 5)) {
            char ps[32], fs[32], ls[32];
            long long p, f, l;
            int64_t progress;
            if (!tc_lake_kv_get(info, TC_LAKE_KV_PARTITION, ps, sizeof(ps)) ||
                !tc_lake_kv_get(info, TC_LAKE_KV_FIRST_OFFSET, fs, sizeof(fs)) ||
                !tc_lake_kv_get(info, TC_LAKE_KV_LAST_OFFSET, ls, sizeof(ls))) {
                err = tc_err_set(TC_ERR_INVALID, c->errstr, c->n,
                                 "%s: no Kafka coordinates in the metadata", path);
            } else {
                p = strtoll(ps, NULL, 10);
                f = strtoll(fs, NULL, 10);
                l = strtoll(ls, NULL, 10);
                if (p < 0 || p > INT32_MAX ||
                    tc_lake_progress_read(c->root, topic, (int32_t)p, &progress, c->errstr, c->n) !=
                        TC_OK)
                    progress = -1;
                if (p < 0 || p > INT32_MAX || l < f)
                    err = tc_err_set(TC_ERR_INVALID, c->errstr, c->n, "%s: bad Kafka coordinates",
                                     path);
                else if (progress < 0 || f >= progress)
                    err = tc_err_set(TC_ERR_INVALID, c->errstr, c->n,
                                     "%s: its commit has not reached the progress of partition "
                                     "%lld (a commit in progress or interrupted): not compacting",
                                     path, p);
                else if (tc_cpt_add_range(in, (int32_t)p, f, l) != 0)
                    err = tc_err_set(TC_ERR_NOMEM, c->errstr, c->n, "out of memory");
            }
        } else if (err == TC_OK) {
            if (!tc_lake_kv_get(info, TC_LAKE_KV_PARTITIONS, buf, sizeof(buf)) ||
                tc_cpt_parse_ranges(in, buf) != 0)
                err = tc_err_set(TC_ERR_INVALID, c->errstr, c->n,
                                 "%s: bad kafka.partitions metadata", path);
        }
        tc_parquet_reader_close(r);
    }
    return err;
}

/* ---- output ---- */

static tc_err tc_cpt_fsync_path(const char *path, int dir, char *errstr, size_t n)
{
    int fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
    tc_err err = TC_OK;

    if (fd < 0)
        return tc_err_set(TC_ERR_IO, errstr, n, "open \"%s\": %s", path, strerror(errno));
    if (fsync(fd) != 0)
        err = tc_err_set(TC_ERR_IO, errstr, n, "fsync \"%s\": %s", path, strerror(errno));
    close(fd);
    return err;
}

/* Remove a directory and the files in it (no subdirectories expected). */
static tc_err tc_cpt_rmdir(const char *dir, char *errstr, size_t n)
{
    char path[TC_CPT_PATH_MAX];
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return errno == ENOENT ? TC_OK
                               : tc_err_set(TC_ERR_IO, errstr, n, "%s: %s", dir, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        tc_path_fmt(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (unlink(path) != 0 && errno != ENOENT) {
            closedir(d);
            return tc_err_set(TC_ERR_IO, errstr, n, "unlink \"%s\": %s", path, strerror(errno));
        }
    }
    closedir(d);
    if (rmdir(dir) != 0 && errno != ENOENT)
        return tc_err_set(TC_ERR_IO, errstr, n, "rmdir \"%s\": %s", dir, strerror(errno));
    return TC_OK;
}

static int tc_cpt_range_cmp(const void *a, const void *b)
{
    const tc_cpt_range *x = a, *y = b;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

/* kafka.partitions of inputs [a, b): per partition the lowest first and the highest last. */
static char *tc_cpt_ranges_text(const tc_cpt *c, size_t a, size_t b)
{
    tc_cpt_range *all = NULL;
    size_t n = 0, cap = 0, len = 0, k = 0;
    char *s;

    for (size_t i = a; i < b; i++) {
        for (size_t j = 0; j < c->in[i].nranges; j++) {
            const tc_cpt_range *r = &c->in[i].ranges[j];
            size_t x;
            for (x = 0; x < n && all[x].partition != r->partition; x++)
                ;
            if (x < n) {
                if (r->first < all[x].first)
                    all[x].first = r->first;
                if (r->last > all[x].last)
                    all[x].last = r->last;
                continue;
            }
            if (n == cap) {
                tc_cpt_range *q = realloc(all, (cap ? cap * 2 : 16) * sizeof(*q));
                if (!q) {
                    free(all);
                    return NULL;
                }
                all = q;
                cap = cap ? cap * 2 : 16;
            }
            all[n++] = *r;
        }
    }
    if (n)
        qsort(all, n, sizeof(*all), tc_cpt_range_cmp);
    len = n * 64 + 1;
    s = malloc(len);
    if (s) {
        s[0] = '\0';
        for (size_t i = 0; i < n; i++)
            k += (size_t)snprintf(s + k, len - k, "%s%d:%" PRId64 "-%" PRId64, i ? "," : "",
                                  all[i].partition, all[i].first, all[i].last);
    }
    free(all);
    return s;
}

/* Write inputs [a, b) into <staging day>/<name>. */
static tc_err tc_cpt_write(tc_cpt *c, const tc_lake_compact_options *o, size_t a, size_t b,
                           const char *name, tc_lake_compact_result *res)
{
    char path[TC_CPT_PATH_MAX], num[32];
    tc_parquet_writer *w = NULL;
    tc_parquet_options po;
    uint64_t rows = 0;
    char *ranges = NULL;
    size_t *map = NULL, zeros_rows = 0;
    tc_parquet_values *out = NULL;
    uint8_t *zeros = NULL;
    tc_err err = TC_OK;
    int fd;

    tc_path_fmt(path, sizeof(path), "%s/%s", c->hidden, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return tc_err_set(TC_ERR_IO, c->errstr, c->n, "create \"%s\": %s", path, strerror(errno));
    tc_parquet_options_default(&po);
    po.codec = o->codec;
    w = tc_parquet_writer_new(fd, c->ucols, c->nu, &po, c->errstr, c->n);
    map = calloc(c->nu, sizeof(*map));
    out = calloc(c->nu, sizeof(*out));
    if (!w || !map || !out)
        err = w ? tc_err_set(TC_ERR_NOMEM, c->errstr, c->n, "out of memory")
                : TC_ERR_INVALID; /* errstr filled by the writer */
    for (size_t i = a; i < b && err == TC_OK; i++) {
        char ipath[TC_CPT_PATH_MAX];
        tc_parquet_reader *r;
        const tc_parquet_column *cols;
        size_t ncols;
        tc_path_fmt(ipath, sizeof(ipath), "%s/%s", c->daydir, c->in[i].name);
        err = tc_parquet_reader_open_path(ipath, &r, c->errstr, c->n);
        if (err != TC_OK)
            break;
        /* Output column u is input column map[u] - 1, or all NULL when map[u] is 0. */
        cols = tc_parquet_reader_columns(r, &ncols);
        for (size_t u = 0; u < c->nu; u++) {
            map[u] = 0;
            for (size_t k = 0; k < ncols; k++)
                if (!strcmp(cols[k].name, c->ucols[u].name))
                    map[u] = k + 1;
        }
        for (size_t g = 0; err == TC_OK && g < tc_parquet_reader_row_groups(r); g++) {
            const tc_parquet_values *v;
            size_t nr;
            err = tc_parquet_reader_read(r, g, &v, &nr, c->errstr, c->n);
            if (err == TC_OK && nr > zeros_rows) {
                free(zeros);
                zeros = calloc(nr, sizeof(tc_slice) > 8 ? sizeof(tc_slice) : 8);
                zeros_rows = zeros ? nr : 0;
                if (!zeros)
                    err = tc_err_set(TC_ERR_NOMEM, c->errstr, c->n, "out of memory");
            }
            for (size_t u = 0; err == TC_OK && u < c->nu; u++) {
                if (map[u]) {
                    out[u] = v[map[u] - 1];
                } else { /* a column this file does not have (OPTIONAL): NULL */
                    out[u].values = zeros;
                    out[u].present = zeros;
                }
            }
            if (err == TC_OK && nr)
                err = tc_parquet_write(w, out, nr, c->errstr, c->n);
            rows += nr;
        }
        tc_parquet_reader_close(r);
    }
    if (err == TC_OK && !(ranges = tc_cpt_ranges_text(c, a, b)))
        err = tc_err_set(TC_ERR_NOMEM, c->errstr, c->n, "out of memory");
    if (err == TC_OK)
        err = tc_parquet_add_kv(w, TC_LAKE_KV_VERSION, TC_VERSION, c->errstr, c->n);
    if (err == TC_OK)
        err = tc_parquet_add_kv(w, TC_LAKE_KV_SCHEMA_VERSION, c->schema_version, c->errstr, c->n);
    if (err == TC_OK)
        err = tc_parquet_add_kv(w, TC_LAKE_KV_TOPIC, c->topic, c->errstr, c->n);
    if (err == TC_OK)
        err = tc_parquet_add_kv(w, TC_LAKE_KV_PARTITIONS, ranges, c->errstr, c->n);
    snprintf(num, sizeof(num), "%" PRIu64, rows);
    if (err == TC_OK)
        err = tc_parquet_add_kv(w, TC_LAKE_KV_ROWS, num, c->errstr, c->n);
    snprintf(num, sizeof(num), "%zu", b - a);
    if (err == TC_OK)
        err = tc_parquet_add_kv(w, TC_LAKE_KV_COMPACTED_FILES, num, c->errstr, c->n);
    if (err == TC_OK)
        err = tc_parquet_close(w, c->errstr, c->n);
    if (err == TC_OK && fsync(fd) != 0)
        err = tc_err_set(TC_ERR_IO, c->errstr, c->n, "fsync \"%s\": %s", path, strerror(errno));
    if (err == TC_OK) {
        res->rows += rows;
        res->bytes_out += tc_parquet_writer_bytes(w);
    }
    free(ranges);
    free(map);
    free(out);
    free(zeros);
    tc_parquet_writer_destroy(w);
    close(fd);
    return err;
}

/* Is the day directory still exactly the listed inputs (no commit slipped in)? */
static int tc_cpt_unchanged(tc_cpt *c)
{
    tc_cpt again = *c;
    char e[TC_ERRSTR_MAX];
    int same;

    again.in = NULL;
    again.nin = 0;
    again.ucols = NULL;
    again.unames = NULL;
    again.nu = 0;
    again.errstr = e;
    again.n = sizeof(e);
    if (tc_cpt_list(&again) != TC_OK) {
        snprintf(c->errstr, c->n, "%s", e);
        tc_cpt_free_inputs(&again);
        return 0;
    }
    same = again.nin == c->nin;
    for (size_t i = 0; same && i < c->nin; i++)
        same = !strcmp(again.in[i].name, c->in[i].name);
    if (!same)
        snprintf(c->errstr, c->n, "%s changed during the compaction: not swapping", c->daydir);
    tc_cpt_free_inputs(&again);
    return same;
}

tc_err tc_lake_compact_day(const char *root, int y, int m, int d, const tc_lake_compact_options *o,
                           tc_lake_compact_result *res, char *errstr, size_t errstr_size)
{
    tc_lake_compact_options def;
    tc_cpt c;
    int64_t day, today, now_us;
    int yy, lock = -1, min_age, built = 0;
    unsigned mm, dd;
    tc_err err;
    size_t a, outn = 0;

    if (!o) {
        tc_lake_compact_options_default(&def);
        o = &def;
    }
    memset(res, 0, sizeof(*res));
    memset(&c, 0, sizeof(c));
    c.root = root;
    c.errstr = errstr;
    c.n = errstr_size;
    if (m < 1 || m > 12 || d < 1 || d > 31 || y < 1970 || y > 9999)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "bad day %d-%d-%d", y, m, d);
    day = tc_time_days_from_civil(y, (unsigned)m, (unsigned)d);
    tc_time_civil_from_days(day, &yy, &mm, &dd);
    if (yy != y || (int)mm != m || (int)dd != d)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "no such day %04d-%02d-%02d", y, m,
                          d);
    now_us = o->now_us ? o->now_us : tc_time_now_us();
    today = tc_time_day_of(now_us);
    min_age = o->min_age_days < 1 ? 1 : o->min_age_days;
    if (!o->force && today - day < min_age)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "%04d-%02d-%02d is not closed: %" PRId64
                          " day(s) old, compaction needs %d (or --force)",
                          y, m, d, today - day, min_age);
    tc_path_fmt(c.month, sizeof(c.month), "%s/telemetry/year=%04d/month=%02d", root, y, m);
    tc_path_fmt(c.dayname, sizeof(c.dayname), "day=%02d", d);
    tc_path_fmt(c.daydir, sizeof(c.daydir), "%s/%s", c.month, c.dayname);
    /* The new day is built outside telemetry/: DuckDB's globs match hidden names too, so a
     * hidden directory next to the day would show its files to readers. */
    tc_path_fmt(c.staging, sizeof(c.staging), "%s/_thermocline/compact", root);
    tc_path_fmt(c.hidden, sizeof(c.hidden), "%s/%04d-%02d-%02d", c.staging, y, m, d);

    lock = tc_lake_day_lock(root, day, 1);
    if (lock < 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "lock of %04d-%02d-%02d: %s", y, m, d,
                          strerror(errno));
    /* What a crashed compaction left: garbage either way (see compact.h). */
    if (!o->dry_run && (err = tc_cpt_rmdir(c.hidden, errstr, errstr_size)) != TC_OK)
        goto out;
    err = tc_cpt_list(&c);
    if (err == TC_ERR_NOT_FOUND || (err == TC_OK && c.nin == 0)) {
        snprintf(res->note, sizeof(res->note), "no files");
        err = TC_OK;
        goto out;
    }
    if (err != TC_OK)
        goto out;
    if (c.nin == 1 && !strncmp(c.in[0].name, "compact-", 8)) {
        snprintf(res->note, sizeof(res->note), "already compacted");
        goto out;
    }
    if ((err = tc_cpt_check_inputs(&c)) != TC_OK)
        goto out;
    res->inputs = c.nin;
    for (size_t i = 0; i < c.nin; i++)
        res->bytes_in += c.in[i].bytes;
    /* Plan: consecutive inputs up to the target size per output (an input is never split). */
    for (a = 0; a < c.nin;) {
        uint64_t sum = c.in[a].bytes;
        size_t b = a + 1;
        while (b < c.nin && sum + c.in[b].bytes <= o->target_bytes)
            sum += c.in[b++].bytes;
        outn++;
        if (!o->dry_run) {
            char name[96];
            if (!built) {
                if ((mkdir(c.staging, 0755) != 0 && errno != EEXIST) ||
                    mkdir(c.hidden, 0755) != 0) {
                    err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "mkdir \"%s\": %s", c.hidden,
                                     strerror(errno));
                    goto out;
                }
                built = 1;
            }
            tc_lake_name_compact(name, sizeof(name),
                                 tc_time_days_from_civil(y, (unsigned)m, (unsigned)d), outn,
                                 (long long)(now_us / 1000000));
            if ((err = tc_cpt_write(&c, o, a, b, name, res)) != TC_OK)
                goto out;
        } else {
            for (size_t i = a; i < b; i++)
                res->rows += (uint64_t)c.in[i].rows;
        }
        a = b;
    }
    res->outputs = outn;
    res->compacted = 1;
    if (o->dry_run)
        goto out;
    if ((err = tc_cpt_fsync_path(c.hidden, 1, errstr, errstr_size)) != TC_OK)
        goto out;
    if (!tc_cpt_unchanged(&c)) {
        err = TC_ERR_INVALID;
        goto out;
    }
    if (syscall(SYS_renameat2, AT_FDCWD, c.daydir, AT_FDCWD, c.hidden, RENAME_EXCHANGE) != 0) {
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "renameat2(RENAME_EXCHANGE) \"%s\": %s",
                         c.daydir, strerror(errno));
        goto out;
    }
    built = 0; /* the staging name now holds the old day */
    err = tc_cpt_fsync_path(c.month, 1, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_cpt_fsync_path(c.staging, 1, errstr, errstr_size);
    /* The old day: remove it (a failure here leaves garbage the next compaction removes). */
    {
        char e[TC_ERRSTR_MAX];
        if (tc_cpt_rmdir(c.hidden, e, sizeof(e)) == TC_OK)
            tc_cpt_fsync_path(c.staging, 1, e, sizeof(e));
    }
out:
    if (err != TC_OK && built) { /* failed before the swap: the day is as it was */
        res->compacted = 0;
        {
            char e[TC_ERRSTR_MAX];
            tc_cpt_rmdir(c.hidden, e, sizeof(e));
        }
    }
    tc_cpt_free_inputs(&c);
    if (lock >= 0)
        close(lock);
    return err;
}
