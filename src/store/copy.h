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

#endif
