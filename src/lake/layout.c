/*
 * layout.c -- the lake's paths, file names, progress files and footer keys; see layout.h.
 *
 * Names are decoded from the right end (digits only there), so the topic is whatever is left and
 * a topic containing "-p1-5" cannot be confused with another one's coordinates. Every number is
 * parsed strictly: digits only, no sign, no overflow.
 */
#include "lake/layout.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/durable.h"
#include "core/path.h"
#include "core/timeutil.h"

/* Digits of an int64 we accept in a name or a progress file (no overflow below 10^18). */
#define TC_LAYOUT_DIGITS_MAX 18
/* A progress file is one number and a newline; anything longer is not ours. */
#define TC_LAYOUT_PROGRESS_MAX 32

/* The decimal number that ends at s[end) (exclusive), going left: its value and where it starts.
 * Returns -1 when there is no digit or too many. */
static int64_t tc_layout_digits_back(const char *s, size_t end, size_t *start)
{
    size_t i = end;
    int64_t v = 0, scale = 1;

    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9' && end - i < TC_LAYOUT_DIGITS_MAX) {
        v += (s[i - 1] - '0') * scale;
        scale *= 10;
        i--;
    }
    if (i == end || (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9'))
        return -1;
    *start = i;
    return v;
}

static int tc_layout_ends(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* "<topic>-p<P>-<first>" ending at name[end): fills topic, partition, first. 1 if it parses. */
static int tc_layout_coords_back(const char *name, size_t begin, size_t end, tc_lake_name *out)
{
    size_t at;
    int64_t first = tc_layout_digits_back(name, end, &at), part;

    if (first < 0 || at < begin + 1 || name[at - 1] != '-')
        return 0;
    part = tc_layout_digits_back(name, at - 1, &at);
    if (part < 0 || part > INT32_MAX || at < begin + 3 || name[at - 1] != 'p' ||
        name[at - 2] != '-')
        return 0;
    at -= 2; /* the topic is name[begin, at) */
    if (at == begin || at - begin >= sizeof(out->topic))
        return 0;
    memcpy(out->topic, name + begin, at - begin);
    out->topic[at - begin] = '\0';
    out->partition = (int32_t)part;
    out->first = first;
    return 1;
}

/* "-open-<pid>-<hex>" or "-open" ending at name[end): the member into out, and where it starts. */
static int tc_layout_member_back(const char *name, size_t end, tc_lake_name *out, size_t *start)
{
    size_t at = end;

    if (tc_layout_ends(name, end, "-open")) {
        out->member[0] = '\0';
        *start = end - 5;
        return 1;
    }
    while (at > 0 && ((name[at - 1] >= '0' && name[at - 1] <= '9') ||
                      (name[at - 1] >= 'a' && name[at - 1] <= 'f')))
        at--;
    if (at == end || at == 0 || name[at - 1] != '-' ||
        tc_layout_digits_back(name, at - 1, &at) < 0 || !tc_layout_ends(name, at, "-open-") ||
        end - at >= sizeof(out->member))
        return 0;
    memcpy(out->member, name + at, end - at);
    out->member[end - at] = '\0';
    *start = at - 6;
    return 1;
}

tc_lake_file_kind tc_lake_name_parse(const char *name, tc_lake_name *out)
{
    size_t n = strlen(name), at;

    memset(out, 0, sizeof(*out));
    out->first = out->last = -1;
    if (!strncmp(name, "part-", 5) && tc_layout_ends(name, n, ".parquet")) {
        int64_t last = tc_layout_digits_back(name, n - 8, &at);
        if (last < 0 || at == 0 || name[at - 1] != '-' ||
            !tc_layout_coords_back(name, 5, at - 1, out) || last < out->first)
            return TC_LAKE_FILE_OTHER;
        out->last = last;
        return out->kind = TC_LAKE_FILE_PART;
    }
    if (!strncmp(name, ".part-", 6) && tc_layout_ends(name, n, ".tmp")) {
        if (!tc_layout_member_back(name, n - 4, out, &at) ||
            !tc_layout_coords_back(name, 6, at, out))
            return TC_LAKE_FILE_OTHER;
        return out->kind = TC_LAKE_FILE_OPEN;
    }
    if (!strncmp(name, "compact-", 8) && tc_layout_ends(name, n, ".parquet"))
        return out->kind = TC_LAKE_FILE_COMPACT;
    return TC_LAKE_FILE_OTHER;
}

int tc_lake_name_is_topic(const char *name, const char *topic, tc_lake_name *out)
{
    tc_lake_file_kind k = tc_lake_name_parse(name, out);

    return (k == TC_LAKE_FILE_PART || k == TC_LAKE_FILE_OPEN) && !strcmp(out->topic, topic);
}

int tc_lake_name_part(char *out, size_t cap, const char *topic, int32_t partition, int64_t first,
                      int64_t last)
{
    return tc_path_fmt(out, cap, "part-%s-p%d-%" PRId64 "-%" PRId64 ".parquet", topic, partition,
                       first, last);
}

int tc_lake_name_open(char *out, size_t cap, const char *topic, int32_t partition, int64_t first,
                      const char *member)
{
    return tc_path_fmt(out, cap, ".part-%s-p%d-%" PRId64 "-open-%s.tmp", topic, partition, first,
                       member);
}

int tc_lake_name_compact(char *out, size_t cap, int64_t day, size_t n, long long unix_seconds)
{
    int y;
    unsigned m, d;

    tc_time_civil_from_days(day, &y, &m, &d);
    return tc_path_fmt(out, cap, "compact-%04d%02u%02u-%zu-%lld.parquet", y, m, d, n, unix_seconds);
}

int tc_lake_day_dir(char *out, size_t cap, const char *root, int64_t day)
{
    int y;
    unsigned m, d;

    tc_time_civil_from_days(day, &y, &m, &d);
    return tc_path_fmt(out, cap, "%s/telemetry/year=%04d/month=%02u/day=%02u", root, y, m, d);
}

int tc_lake_progress_dir(char *out, size_t cap, const char *root, const char *topic)
{
    return tc_path_fmt(out, cap, "%s/_thermocline/progress/%s", root, topic);
}

tc_err tc_lake_progress_read_path(const char *path, int64_t *next, char *errstr, size_t errstr_size)
{
    char buf[TC_LAYOUT_PROGRESS_MAX + 1];
    size_t n, at;
    FILE *f = fopen(path, "r");

    *next = -1;
    if (!f) {
        if (errno == ENOENT)
            return TC_OK;
        return tc_err_set(TC_ERR_IO, errstr, errstr_size,
                          "could not read the lake progress \"%s\": %s", path, strerror(errno));
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        return tc_err_set(TC_ERR_IO, errstr, errstr_size,
                          "could not read the lake progress \"%s\": %s", path, strerror(e));
    }
    fclose(f);
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    *next = tc_layout_digits_back(buf, n, &at);
    if (*next < 0 || at != 0) {
        *next = -1;
        return tc_err_set(TC_ERR_IO, errstr, errstr_size,
                          "lake progress \"%s\" does not hold one offset (a damaged file: restore "
                          "it, or remove it to rewrite the partition from Kafka)",
                          path);
    }
    return TC_OK;
}

tc_err tc_lake_progress_read(const char *root, const char *topic, int32_t partition, int64_t *next,
                             char *errstr, size_t errstr_size)
{
    char path[TC_PATH_MAX];

    if (tc_path_fmt(path, sizeof(path), "%s/_thermocline/progress/%s/%d", root, topic, partition) <
        0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "lake root path too long: %s", root);
    return tc_lake_progress_read_path(path, next, errstr, errstr_size);
}

tc_err tc_lake_progress_write(const char *root, const char *topic, int32_t partition, int64_t next,
                              char *errstr, size_t errstr_size)
{
    char dir[TC_PATH_MAX], name[16], text[TC_LAYOUT_PROGRESS_MAX];
    tc_err err;

    if (tc_lake_progress_dir(dir, sizeof(dir), root, topic) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "lake root path too long: %s", root);
    snprintf(name, sizeof(name), "%d", partition);
    snprintf(text, sizeof(text), "%" PRId64 "\n", next);
    err = tc_durable_mkdirs(dir, errstr, errstr_size);
    return err == TC_OK ? tc_durable_replace(dir, name, text, errstr, errstr_size) : err;
}

const char *tc_lake_kv_get(const tc_parquet_info *info, const char *key, char *buf, size_t cap)
{
    size_t k = strlen(key);

    for (size_t i = 0; i < info->nkv; i++) {
        const tc_parquet_kv_info *kv = &info->kv[i];
        if (kv->has_value && kv->key.n == k && !memcmp(kv->key.p, key, k)) {
            if (kv->value.n >= cap)
                return NULL;
            memcpy(buf, kv->value.p, kv->value.n);
            buf[kv->value.n] = '\0';
            return buf;
        }
    }
    return NULL;
}

/* ---- the walk over days ---- */

/* Names in dir starting with prefix, sorted (date order for zero-padded names). */
static tc_err tc_layout_names(const char *dir, const char *prefix, char ***out, size_t *n)
{
    struct dirent *de;
    DIR *d = opendir(dir);
    char **names = NULL;

    *out = NULL;
    *n = 0;
    if (!d)
        return TC_OK;
    while ((de = readdir(d)) != NULL) {
        char **nn;
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
            continue;
        nn = realloc(names, (*n + 1) * sizeof(*names));
        if (!nn || !(nn[*n] = strdup(de->d_name))) {
            *out = nn ? nn : names;
            closedir(d);
            return TC_ERR_NOMEM;
        }
        names = nn;
        (*n)++;
    }
    closedir(d);
    *out = names;
    return TC_OK;
}

static int tc_layout_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void tc_layout_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* One level of the walk: level 0 years, 1 months, 2 days. */
static tc_err tc_layout_walk_level(const char *dir, int level, int ymd[3], tc_lake_day_fn fn,
                                   void *opaque)
{
    static const char *const prefix[] = {"year=", "month=", "day="};
    char path[TC_PATH_MAX];
    char **names;
    size_t n;
    tc_err err = tc_layout_names(dir, prefix[level], &names, &n);

    if (n > 1)
        qsort(names, n, sizeof(*names), tc_layout_cmp);
    for (size_t i = 0; i < n && err == TC_OK; i++) {
        char *end;
        long v = strtol(names[i] + strlen(prefix[level]), &end, 10);
        if (tc_path_fmt(path, sizeof(path), "%s/%s", dir, names[i]) < 0)
            continue;
        ymd[level] = *end || v < 0 || v > 9999 ? -1 : (int)v;
        if (level < 2) {
            err = tc_layout_walk_level(path, level + 1, ymd, fn, opaque);
            continue;
        }
        if (ymd[0] < 0 || ymd[1] < 1 || ymd[1] > 12 || ymd[2] < 1 || ymd[2] > 31)
            err = fn(opaque, path, -1);
        else
            err = fn(opaque, path,
                     tc_time_days_from_civil(ymd[0], (unsigned)ymd[1], (unsigned)ymd[2]));
    }
    tc_layout_free_names(names, n);
    return err;
}

tc_err tc_lake_walk_days(const char *root, tc_lake_day_fn fn, void *opaque)
{
    char base[TC_PATH_MAX];
    int ymd[3] = {0, 0, 0};

    if (tc_path_fmt(base, sizeof(base), "%s/telemetry", root) < 0)
        return TC_ERR_INVALID;
    return tc_layout_walk_level(base, 0, ymd, fn, opaque);
}
