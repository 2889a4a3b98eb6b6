/*
 * rest_encode.c -- JSON, CSV, NDJSON and Parquet encoding of libpq rows; see rest_encode.h.
 *
 * Values arrive in libpq's text format. Numbers are passed through as PostgreSQL printed them
 * (its float output already round-trips), after checking they are JSON numbers: "NaN" and
 * "Infinity" become null rather than invalid JSON.
 */
#include "api/rest_encode.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/batch.h"
#include "core/timeutil.h"
#include "lake/parquet.h"

/* PostgreSQL type OIDs (pg_type.dat); stable across versions. */
#define TC_OID_BOOL        16
#define TC_OID_INT8        20
#define TC_OID_INT2        21
#define TC_OID_INT4        23
#define TC_OID_JSON        114
#define TC_OID_FLOAT4      700
#define TC_OID_FLOAT8      701
#define TC_OID_TIMESTAMP   1114
#define TC_OID_TIMESTAMPTZ 1184
#define TC_OID_NUMERIC     1700
#define TC_OID_JSONB       3802
/* Room for a converted timestamp. */
#define TC_REST_TIME_MAX 64

static const char *const tc_rest_ctypes[TC_REST_FMT__COUNT] = {
    "application/json", "text/csv; charset=utf-8", "application/x-ndjson",
    "application/vnd.apache.parquet"};

const char *tc_rest_format_ctype(tc_rest_format f)
{
    return f < TC_REST_FMT__COUNT ? tc_rest_ctypes[f] : tc_rest_ctypes[0];
}

int tc_rest_format_choose(int param, const char *accept, tc_rest_format *out)
{
    /* Media types we answer, and other spellings clients use for them. */
    static const struct {
        const char *type;
        tc_rest_format f;
    } known[] = {{"application/json", TC_REST_FMT_JSON},
                 {"text/csv", TC_REST_FMT_CSV},
                 {"application/x-ndjson", TC_REST_FMT_NDJSON},
                 {"application/ndjson", TC_REST_FMT_NDJSON},
                 {"application/jsonl", TC_REST_FMT_NDJSON},
                 {"application/vnd.apache.parquet", TC_REST_FMT_PARQUET},
                 {"application/parquet", TC_REST_FMT_PARQUET},
                 {"application/*", TC_REST_FMT_JSON},
                 {"*/*", TC_REST_FMT_JSON}};

    if (param >= 0 && param < TC_REST_FMT__COUNT) {
        *out = (tc_rest_format)param;
        return 0;
    }
    *out = TC_REST_FMT_JSON;
    if (!accept || !*accept)
        return 0;
    /* Taken in the client's order; q-values are not weighed (clients that ask for one of ours
     * list it; a browser's long list ends in * / *, which is JSON). */
    for (const char *p = accept; *p;) {
        size_t len;
        p += strspn(p, " \t,");
        len = strcspn(p, ";,");
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
            if (strlen(known[i].type) == len && !strncasecmp(p, known[i].type, len)) {
                *out = known[i].f;
                return 0;
            }
        }
        p += strcspn(p, ",");
    }
    return 406;
}

void tc_rest_iso_time(const char *pg, char *out, size_t cap)
{
    size_t n = strlen(pg);

    /* "YYYY-MM-DD HH:MM:SS[.f]+00" (TimeZone UTC): 'T' between, "Z" for the offset. */
    if (n >= 22 && n + 1 < cap && pg[10] == ' ' && !strcmp(pg + n - 3, "+00")) {
        memcpy(out, pg, n - 3);
        out[10] = 'T';
        out[n - 3] = 'Z';
        out[n - 2] = '\0';
        return;
    }
    if (cap) {
        size_t k = n < cap - 1 ? n : cap - 1;
        memcpy(out, pg, k);
        out[k] = '\0';
    }
}

static int tc_rest_is_number_oid(Oid t)
{
    return t == TC_OID_INT2 || t == TC_OID_INT4 || t == TC_OID_INT8 || t == TC_OID_FLOAT4 ||
           t == TC_OID_FLOAT8 || t == TC_OID_NUMERIC;
}

/* A finite number as PostgreSQL printed it (not "NaN", "Infinity", "-Infinity"). */
static int tc_rest_finite_text(const char *v)
{
    return *v && strpbrk(v, "NnIi") == NULL;
}

void tc_rest_json_row(tc_jbuf *b, const PGresult *r, int row)
{
    int n = PQnfields(r);
    char t[TC_REST_TIME_MAX];

    tc_jbuf_obj_begin(b);
    for (int c = 0; c < n; c++) {
        const char *v = PQgetvalue(r, row, c);
        Oid type = PQftype(r, c);
        tc_jbuf_key(b, PQfname(r, c));
        if (PQgetisnull(r, row, c))
            tc_jbuf_null(b);
        else if (tc_rest_is_number_oid(type))
            tc_rest_finite_text(v) ? tc_jbuf_raw(b, v, strlen(v)) : tc_jbuf_null(b);
        else if (type == TC_OID_BOOL)
            tc_jbuf_bool(b, v[0] == 't');
        else if (type == TC_OID_JSON || type == TC_OID_JSONB)
            tc_jbuf_raw(b, v, strlen(v));
        else if (type == TC_OID_TIMESTAMPTZ) {
            tc_rest_iso_time(v, t, sizeof(t));
            tc_jbuf_str(b, t);
        } else
            tc_jbuf_str(b, v);
    }
    tc_jbuf_obj_end(b);
}

static void tc_rest_csv_field(tc_jbuf *b, const char *v)
{
    if (!v[strcspn(v, ",\"\r\n")]) {
        tc_jbuf_append(b, v, strlen(v));
        return;
    }
    tc_jbuf_append(b, "\"", 1);
    for (const char *q; (q = strchr(v, '"')); v = q + 1) {
        tc_jbuf_append(b, v, (size_t)(q - v) + 1);
        tc_jbuf_append(b, "\"", 1);
    }
    tc_jbuf_append(b, v, strlen(v));
    tc_jbuf_append(b, "\"", 1);
}

void tc_rest_csv_header(tc_jbuf *b, const PGresult *r)
{
    for (int c = 0; c < PQnfields(r); c++) {
        if (c)
            tc_jbuf_append(b, ",", 1);
        tc_rest_csv_field(b, PQfname(r, c));
    }
    tc_jbuf_append(b, "\r\n", 2);
}

void tc_rest_csv_row(tc_jbuf *b, const PGresult *r, int row)
{
    char t[TC_REST_TIME_MAX];

    for (int c = 0; c < PQnfields(r); c++) {
        const char *v = PQgetvalue(r, row, c);
        if (c)
            tc_jbuf_append(b, ",", 1);
        if (PQgetisnull(r, row, c))
            continue;
        if (PQftype(r, c) == TC_OID_TIMESTAMPTZ) {
            tc_rest_iso_time(v, t, sizeof(t));
            v = t;
        }
        tc_rest_csv_field(b, v);
    }
    tc_jbuf_append(b, "\r\n", 2);
}

/* ---- Parquet ---- */

struct tc_rest_pq {
    tc_parquet_writer *w;
    tc_jbuf *out;
    size_t ncols;
    tc_parquet_type types[TC_REST_PQ_COLS_MAX];
    void *values[TC_REST_PQ_COLS_MAX]; /* TC_REST_PQ_GROUP_ROWS of the column's C type */
    uint8_t *present[TC_REST_PQ_COLS_MAX];
    size_t rows; /* buffered */
};

static tc_err tc_rest_pq_sink(void *ctx, const void *p, size_t n, char *errstr, size_t errstr_size)
{
    tc_jbuf *out = ctx;

    tc_jbuf_append(out, p, n);
    if (tc_jbuf_failed(out))
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "out of memory");
    return TC_OK;
}

static tc_parquet_type tc_rest_pq_type(Oid t)
{
    switch (t) {
    case TC_OID_INT2:
    case TC_OID_INT4:
    case TC_OID_INT8:
        return TC_PQ_INT64;
    case TC_OID_FLOAT4:
    case TC_OID_FLOAT8:
    case TC_OID_NUMERIC:
        return TC_PQ_DOUBLE;
    case TC_OID_BOOL:
        return TC_PQ_BOOLEAN;
    case TC_OID_TIMESTAMPTZ:
        return TC_PQ_TIMESTAMP_US;
    default:
        return TC_PQ_STRING;
    }
}

static size_t tc_rest_pq_width(tc_parquet_type t)
{
    return t == TC_PQ_BOOLEAN ? 1 : t == TC_PQ_STRING ? sizeof(tc_slice) : 8;
}

tc_rest_pq *tc_rest_pq_new(const PGresult *r, tc_jbuf *out, char *errstr, size_t errstr_size)
{
    tc_parquet_column cols[TC_REST_PQ_COLS_MAX];
    tc_parquet_options opt;
    tc_rest_pq *p;
    int n = PQnfields(r);

    if (n <= 0 || n > TC_REST_PQ_COLS_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "%d columns: Parquet takes 1 to %d", n,
                   TC_REST_PQ_COLS_MAX);
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    p->out = out;
    p->ncols = (size_t)n;
    for (int c = 0; c < n; c++) {
        p->types[c] = tc_rest_pq_type(PQftype(r, c));
        cols[c] = (tc_parquet_column){PQfname(r, c), p->types[c], 1, TC_PQ_DICT_AUTO};
        p->values[c] = calloc(TC_REST_PQ_GROUP_ROWS, tc_rest_pq_width(p->types[c]));
        p->present[c] = calloc(TC_REST_PQ_GROUP_ROWS, 1);
        if (!p->values[c] || !p->present[c]) {
            tc_rest_pq_destroy(p);
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
            return NULL;
        }
    }
    tc_parquet_options_default(&opt);
    opt.row_group_rows = TC_REST_PQ_GROUP_ROWS;
    p->w =
        tc_parquet_writer_new_sink(tc_rest_pq_sink, out, cols, p->ncols, &opt, errstr, errstr_size);
    if (!p->w) {
        tc_rest_pq_destroy(p);
        return NULL;
    }
    return p;
}

static void tc_rest_pq_free_strings(tc_rest_pq *p)
{
    for (size_t c = 0; c < p->ncols; c++) {
        if (p->types[c] != TC_PQ_STRING)
            continue;
        for (size_t i = 0; i < p->rows; i++) {
            tc_slice *s = (tc_slice *)p->values[c] + i;
            free((void *)(uintptr_t)s->ptr); /* ours: strdup'ed in tc_rest_pq_row */
            s->ptr = NULL;
        }
    }
}

static tc_err tc_rest_pq_flush(tc_rest_pq *p, char *errstr, size_t errstr_size)
{
    tc_parquet_values vals[TC_REST_PQ_COLS_MAX];
    tc_err err;

    if (!p->rows)
        return TC_OK;
    for (size_t c = 0; c < p->ncols; c++) {
        vals[c].values = p->values[c];
        /* STRING nulls are slices with a NULL ptr (parquet.h). */
        vals[c].present = p->types[c] == TC_PQ_STRING ? NULL : p->present[c];
    }
    err = tc_parquet_write(p->w, vals, p->rows, errstr, errstr_size);
    tc_rest_pq_free_strings(p);
    p->rows = 0;
    return err;
}

tc_err tc_rest_pq_row(tc_rest_pq *p, const PGresult *r, int row, char *errstr, size_t errstr_size)
{
    char t[TC_REST_TIME_MAX];
    size_t i = p->rows;

    if ((size_t)PQnfields(r) != p->ncols)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "columns changed mid-stream");
    for (size_t c = 0; c < p->ncols; c++) {
        const char *v = PQgetvalue(r, row, (int)c);
        int null = PQgetisnull(r, row, (int)c);
        int64_t us = 0;
        p->present[c][i] = !null;
        switch (p->types[c]) {
        case TC_PQ_INT64:
            ((int64_t *)p->values[c])[i] = null ? 0 : strtoll(v, NULL, 10);
            break;
        case TC_PQ_DOUBLE:
            ((double *)p->values[c])[i] = null ? 0 : strtod(v, NULL);
            break;
        case TC_PQ_BOOLEAN:
            ((uint8_t *)p->values[c])[i] = !null && v[0] == 't';
            break;
        case TC_PQ_TIMESTAMP_US:
            tc_rest_iso_time(v, t, sizeof(t));
            if (!null && tc_time_parse_rfc3339(t, strlen(t), &us) != TC_OK)
                p->present[c][i] = 0;
            ((int64_t *)p->values[c])[i] = us;
            break;
        default: {
            tc_slice *s = (tc_slice *)p->values[c] + i;
            s->ptr = null ? NULL : strdup(v);
            s->len = null ? 0 : (uint32_t)strlen(v);
            if (!null && !s->ptr) {
                p->rows = i + 1; /* free what this row got */
                return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
            }
        }
        }
    }
    p->rows++;
    return p->rows == TC_REST_PQ_GROUP_ROWS ? tc_rest_pq_flush(p, errstr, errstr_size) : TC_OK;
}

tc_err tc_rest_pq_finish(tc_rest_pq *p, char *errstr, size_t errstr_size)
{
    tc_err err = tc_rest_pq_flush(p, errstr, errstr_size);

    return err != TC_OK ? err : tc_parquet_close(p->w, errstr, errstr_size);
}

void tc_rest_pq_destroy(tc_rest_pq *p)
{
    if (!p)
        return;
    tc_rest_pq_free_strings(p);
    tc_parquet_writer_destroy(p->w);
    for (size_t c = 0; c < p->ncols; c++) {
        free(p->values[c]);
        free(p->present[c]);
    }
    free(p);
}
