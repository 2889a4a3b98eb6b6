/*
 * spec.c -- parser of export.schedules; see spec.h.
 *
 * A hand-written scanner over the bounded text: tokens are KEY=VALUE, VALUE bare (up to a space
 * or ';') or in double quotes; every value is copied into a bounded field, and one too long is an
 * error rather than cut, so the export that runs is the one written.
 */
#include "export/spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest value of one key (the out directory is the longest field). */
#define TC_EXPORT_VALUE_MAX (TC_EXPORT_TEXT_MAX * 4)

tc_err tc_export_parse_format(const char *s, tc_export_format *out)
{
    if (!strcmp(s, "parquet"))
        *out = TC_EXPORT_PARQUET;
    else if (!strcmp(s, "csv"))
        *out = TC_EXPORT_CSV;
    else if (!strcmp(s, "ndjson"))
        *out = TC_EXPORT_NDJSON;
    else
        return TC_ERR_INVALID;
    return TC_OK;
}

tc_err tc_export_parse_compress(const char *s, tc_export_compress *out)
{
    if (!strcmp(s, "zstd"))
        *out = TC_EXPORT_ZSTD;
    else if (!strcmp(s, "gzip"))
        *out = TC_EXPORT_GZIP;
    else if (!strcmp(s, "none"))
        *out = TC_EXPORT_NONE;
    else
        return TC_ERR_INVALID;
    return TC_OK;
}

static int tc_export_name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return 0;
    return 1;
}

/* tags=K=V,K=V into the spec. */
static tc_err tc_export_spec_tags(tc_export_spec *sp, const char *v, char *errstr,
                                  size_t errstr_size)
{
    while (*v) {
        size_t n = strcspn(v, ","), k = strcspn(v, "=");
        if (k == 0 || k >= n || sp->ntags == TC_EXPORT_TAGS_MAX || k >= TC_EXPORT_TEXT_MAX ||
            n - k - 1 >= TC_EXPORT_TEXT_MAX)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "export.schedules: export \"%s\": tags \"%.*s\" is not KEY=VALUE "
                              "(at most %d pairs)",
                              sp->name, (int)n, v, TC_EXPORT_TAGS_MAX);
        memcpy(sp->tag_key[sp->ntags], v, k);
        sp->tag_key[sp->ntags][k] = '\0';
        memcpy(sp->tag_value[sp->ntags], v + k + 1, n - k - 1);
        sp->tag_value[sp->ntags++][n - k - 1] = '\0';
        v += n;
        if (*v == ',')
            v++;
    }
    return TC_OK;
}

/* Copy a value into a bounded field; too long is an error. */
static int tc_export_put(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);

    if (n >= cap)
        return 0;
    memcpy(dst, v, n + 1);
    return 1;
}

/* One KEY=VALUE into sp; seen marks the keys given. */
static tc_err tc_export_spec_key(tc_export_spec *sp, const char *key, const char *v, unsigned *seen,
                                 char *tz, char *errstr, size_t errstr_size)
{
    static const char *const keys[] = {"name",     "schedule", "tz",      "format",
                                       "compress", "profile",  "devices", "tags",
                                       "metrics",  "out",      "lookback"};
    size_t k, nk = sizeof(keys) / sizeof(keys[0]);
    int ok = 1;

    for (k = 0; k < nk && strcmp(keys[k], key) != 0; k++)
        ;
    if (k == nk)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "export.schedules: export \"%s\": unknown key \"%s\" (name, schedule, "
                          "tz, format, compress, profile, devices, tags, metrics, out, lookback)",
                          sp->name, key);
    if (*seen & (1u << k))
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "export.schedules: export \"%s\": %s given twice", sp->name, key);
    *seen |= 1u << k;
    switch (k) {
    case 0:
        ok = tc_export_put(sp->name, sizeof(sp->name), v) && tc_export_name_ok(v);
        break;
    case 1:
        ok = tc_export_put(sp->schedule_text, sizeof(sp->schedule_text), v);
        break;
    case 2:
        ok = tc_export_put(tz, TC_SCHED_TZ_MAX, v);
        break;
    case 3:
        ok = tc_export_parse_format(v, &sp->format) == TC_OK;
        break;
    case 4:
        ok = tc_export_parse_compress(v, &sp->compress) == TC_OK;
        break;
    case 5:
        ok = tc_export_profile_level(v, TC_MASK_COARSE) >= 0 &&
             tc_export_put(sp->profile, sizeof(sp->profile), v);
        break;
    case 6:
        ok = tc_export_put(sp->devices, sizeof(sp->devices), v);
        break;
    case 7:
        return tc_export_spec_tags(sp, v, errstr, errstr_size);
    case 8:
        ok = tc_export_put(sp->metrics, sizeof(sp->metrics), v);
        break;
    case 9:
        ok = *v && tc_export_put(sp->out, sizeof(sp->out), v);
        break;
    default: {
        char *end;
        long n = strtol(v, &end, 10);
        ok = *v && !*end && n >= 1 && n <= TC_EXPORT_LOOKBACK_MAX;
        sp->lookback = (int)n;
        break;
    }
    }
    if (!ok)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "export.schedules: export \"%s\": %s=\"%.80s\" is not valid", sp->name,
                          key, v);
    return TC_OK;
}

/* The end of an export's checks: the required keys, the schedule in its zone. */
static tc_err tc_export_spec_end(tc_export_spec *sp, unsigned seen, const char *tz, char *errstr,
                                 size_t errstr_size)
{
    char e[256];

    if ((seen & 0x20b) != 0x20b) /* name, schedule, format, out */
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "export.schedules: export \"%s\" lacks name, schedule, format or out",
                          sp->name);
    if (sp->format == TC_EXPORT_PARQUET && sp->compress == TC_EXPORT_GZIP)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "export.schedules: export \"%s\": gzip is for csv and ndjson", sp->name);
    if (tc_sched_parse(sp->schedule_text, tz, &sp->schedule, e, sizeof(e)) != TC_OK)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "export.schedules: export \"%s\": %s",
                          sp->name, e);
    return TC_OK;
}

tc_err tc_export_specs_parse(const char *text, tc_export_spec *specs, size_t cap, size_t *n,
                             char *errstr, size_t errstr_size)
{
    char key[32], value[TC_EXPORT_VALUE_MAX], tz[TC_SCHED_TZ_MAX] = "";
    const char *p = text;
    tc_export_spec *sp = NULL;
    unsigned seen = 0;
    tc_err err;

    *n = 0;
    if (strlen(text) > TC_EXPORT_SPECS_TEXT_MAX)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "export.schedules is longer than %zu bytes", TC_EXPORT_SPECS_TEXT_MAX);
    for (;;) {
        size_t kn, vn;
        int quoted = 0;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (*p == ';' || !*p) {
            if (sp && (err = tc_export_spec_end(sp, seen, tz, errstr, errstr_size)) != TC_OK)
                return err;
            sp = NULL;
            if (!*p)
                break;
            p++;
            continue;
        }
        if (!sp) {
            if (*n == cap)
                return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                  "export.schedules: more than %zu exports", cap);
            sp = &specs[(*n)++];
            memset(sp, 0, sizeof(*sp));
            snprintf(sp->profile, sizeof(sp->profile), "full");
            sp->lookback = TC_EXPORT_LOOKBACK_DEFAULT;
            seen = 0;
            tz[0] = '\0';
        }
        kn = strcspn(p, "= \t;\r\n");
        if (p[kn] != '=' || kn == 0 || kn >= sizeof(key))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "export.schedules: export %zu: \"%.40s\" is not KEY=VALUE", *n, p);
        memcpy(key, p, kn);
        key[kn] = '\0';
        p += kn + 1;
        if (*p == '"') {
            const char *q = strchr(p + 1, '"');
            if (!q)
                return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                  "export.schedules: export %zu: %s's quote is not closed", *n,
                                  key);
            vn = (size_t)(q - p - 1);
            p++;
            quoted = 1;
        } else {
            vn = strcspn(p, " \t;\r\n");
        }
        if (vn >= sizeof(value))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "export.schedules: export %zu: %s is longer than %zu bytes", *n, key,
                              sizeof(value) - 1);
        memcpy(value, p, vn);
        value[vn] = '\0';
        p += vn + (size_t)quoted;
        if ((err = tc_export_spec_key(sp, key, value, &seen, tz, errstr, errstr_size)) != TC_OK)
            return err;
    }
    for (size_t i = 0; i < *n; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(specs[i].name, specs[j].name) || !strcmp(specs[i].out, specs[j].out))
                return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                  "export.schedules: exports \"%s\" and \"%s\" have the same %s "
                                  "(the periods of one would replace the other's)",
                                  specs[j].name, specs[i].name,
                                  strcmp(specs[i].name, specs[j].name) ? "out" : "name");
    return TC_OK;
}
