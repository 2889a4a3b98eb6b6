/*
 * rest_encode.h -- rows of a libpq result as JSON, CSV, NDJSON or Parquet.
 *
 * The REST API encodes whatever columns the `api` schema's views and functions return, by their
 * PostgreSQL types, so a column added to the contract appears in every format without a change
 * here: integers and floating point as JSON numbers (NaN and infinities as null), booleans, json
 * and jsonb as themselves, timestamptz as RFC 3339 in UTC ("2026-12-05T07:00:00.123Z"; the request
 * transaction runs with TimeZone UTC), everything else as a string. CSV is RFC 4180 (a header
 * line, CRLF, quotes only where needed, NULL as an empty field). Parquet (our own writer,
 * lake/parquet.h) maps the same types to INT64, DOUBLE, BOOLEAN, TIMESTAMP(UTC, micros) and
 * STRING columns, every column OPTIONAL, and is written row group by row group, so a stream of
 * any length holds at most one row group (TC_REST_PQ_GROUP_ROWS rows) in memory.
 */
#ifndef TC_API_REST_ENCODE_H
#define TC_API_REST_ENCODE_H

#include <libpq-fe.h>
#include <stddef.h>

#include "core/error.h"
#include "core/json.h"

/* Rows per Parquet row group of a streamed response. */
#define TC_REST_PQ_GROUP_ROWS 8192
/* Columns a streamed Parquet response may have. */
#define TC_REST_PQ_COLS_MAX 64

typedef enum tc_rest_format {
    TC_REST_FMT_JSON,
    TC_REST_FMT_CSV,
    TC_REST_FMT_NDJSON,
    TC_REST_FMT_PARQUET,
    TC_REST_FMT__COUNT
} tc_rest_format;

/* The `format` parameter's values, in tc_rest_format order. */
#define TC_REST_FORMATS "json|csv|ndjson|parquet"

/* "application/json", "text/csv; charset=utf-8", ... */
const char *tc_rest_format_ctype(tc_rest_format f);

/* The format of a response: the format parameter when given (its index, or -1 when absent), else
 * the first of the Accept header's media types we produce (JSON when none, or any). 0, or 406
 * when Accept names only types we do not produce. */
int tc_rest_format_choose(int param, const char *accept, tc_rest_format *out);

/* PostgreSQL's "2026-12-05 07:00:00.5+00" as "2026-12-05T07:00:00.5Z" into out (cap); other text
 * is copied as it is. */
void tc_rest_iso_time(const char *pg, char *out, size_t cap);

/* Row `row` of r as a JSON object (column names as keys). */
void tc_rest_json_row(tc_jbuf *b, const PGresult *r, int row);
/* The CSV header line of r's columns, and one row. */
void tc_rest_csv_header(tc_jbuf *b, const PGresult *r);
void tc_rest_csv_row(tc_jbuf *b, const PGresult *r, int row);

/* A Parquet stream whose bytes are appended to out. */
typedef struct tc_rest_pq tc_rest_pq;
/* Columns from r's description (any result of the query: a single row or the final, empty one).
 * NULL with errstr set when there are too many columns or memory runs out. */
tc_rest_pq *tc_rest_pq_new(const PGresult *r, tc_jbuf *out, char *errstr, size_t errstr_size);
tc_err tc_rest_pq_row(tc_rest_pq *p, const PGresult *r, int row, char *errstr, size_t errstr_size);
/* The last row group and the footer. */
tc_err tc_rest_pq_finish(tc_rest_pq *p, char *errstr, size_t errstr_size);
void tc_rest_pq_destroy(tc_rest_pq *p);

#endif
