/*
 * copy.h -- encoder of PostgreSQL's binary COPY format.
 *
 * Binary COPY is the fastest way into PostgreSQL: no text formatting of doubles and timestamps on
 * our side, no parsing on the server's. The format (PostgreSQL docs, "COPY ... Binary Format"):
 * an 11-byte signature, flags and header-extension words, then per tuple an int16 field count and
 * per field an int32 length (-1 for NULL) followed by the value in the type's binary send format,
 * all big-endian; an int16 -1 ends the stream. This encoder appends to a growable buffer that the
 * caller ships with PQputCopyData and reuses across batches.
 */
#ifndef TC_STORE_COPY_H
#define TC_STORE_COPY_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct tc_copybuf {
    unsigned char *data;
    size_t len, cap;
    int failed; /* set when an append could not allocate; checked once per batch */
} tc_copybuf;

/* Seconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01T00:00:00Z. */
#define TC_PG_EPOCH_OFFSET_US (946684800LL * 1000000LL)

void tc_copybuf_init(tc_copybuf *b);
void tc_copybuf_free(tc_copybuf *b);
void tc_copybuf_reset(tc_copybuf *b);

void tc_copy_begin(tc_copybuf *b); /* signature + header */
void tc_copy_end(tc_copybuf *b);   /* trailer */
void tc_copy_tuple(tc_copybuf *b, int16_t nfields);
void tc_copy_null(tc_copybuf *b);
void tc_copy_int4(tc_copybuf *b, int32_t v);
void tc_copy_int8(tc_copybuf *b, int64_t v);
void tc_copy_float8(tc_copybuf *b, double v);
void tc_copy_timestamptz(tc_copybuf *b, int64_t unix_us);
void tc_copy_text(tc_copybuf *b, const char *s, size_t len); /* text and bytea alike */
void tc_copy_jsonb(tc_copybuf *b, const char *json, size_t len);

/*
 * A one-dimensional array in PostgreSQL's binary array format (array_send), for binary query
 * parameters: int32 ndim (1), int32 flags (1 = may hold NULLs), uint32 element type OID, int32
 * length, int32 lower bound (1), then the n elements, each an int32 length (-1 for NULL) and the
 * value -- exactly what the tc_copy_* value functions above append. n must be at least 1 (an
 * empty array has no dimension at all).
 */
void tc_copy_array_begin(tc_copybuf *b, uint32_t elem_oid, uint32_t n, int has_nulls);

/*
 * A composite value (record_send) as an array element: int32 length, int32 number of columns, then
 * per column its type OID (tc_copy_record_column) and the value as above. Begin returns where the
 * element starts; end fills in its length. Every column of the row type must be there, in order.
 */
size_t tc_copy_record_begin(tc_copybuf *b, uint32_t ncolumns);
void tc_copy_record_column(tc_copybuf *b, uint32_t type_oid);
void tc_copy_record_end(tc_copybuf *b, size_t start);

/* Element type OIDs (pg_type.h) of the arrays the store sends. */
#define TC_OID_INT4              23
#define TC_OID_INT8              20
#define TC_OID_TEXT              25
#define TC_OID_FLOAT8            701
#define TC_OID_TIMESTAMPTZ       1184
#define TC_OID_JSONB             3802
#define TC_OID_INT4_ARRAY        1007
#define TC_OID_INT8_ARRAY        1016
#define TC_OID_TEXT_ARRAY        1009
#define TC_OID_FLOAT8_ARRAY      1022
#define TC_OID_TIMESTAMPTZ_ARRAY 1185
#define TC_OID_JSONB_ARRAY       3807

#endif
