/*
 * thrift_compact.h -- the Thrift compact protocol, as much of it as Parquet metadata needs.
 *
 * Parquet's footer (FileMetaData) and every page header are Thrift structs in the compact protocol.
 * Rather than generate code from parquet.thrift (and link a Thrift runtime), the writer emits the
 * structs field by field and the reader pulls them field by field, skipping what it does not know.
 *
 * Writer: appends to a tc_pq_buf (sticky failure, see parquet_buf.h). The protocol allows fields in
 * any order, but a field id is encoded as a delta from the previous one (one byte when 1..15), so
 * callers write fields in increasing id order and the writer keeps one "last id" per open struct (a
 * stack of TC_THRIFT_MAX_DEPTH). A caller that nests deeper sets w->failed.
 *
 * Reader: a bounds-checked cursor over a byte range. Every read checks the remaining length, so a
 * truncated or hostile footer yields an error, never a read past the end. Element counts of lists
 * are checked against the remaining bytes (each element takes at least one byte), and skipping of
 * unknown fields recurses at most TC_THRIFT_MAX_DEPTH levels, so a fuzzer cannot make the reader
 * allocate or recurse without bound. The first error is sticky and described by r->err (a static
 * string) at offset r->err_at.
 */
#ifndef TC_LAKE_THRIFT_COMPACT_H
#define TC_LAKE_THRIFT_COMPACT_H

#include <stddef.h>
#include <stdint.h>

#include "lake/parquet_buf.h"

/* Nesting bound for both directions. Parquet metadata nests 5 deep (FileMetaData > RowGroup >
 * ColumnChunk > ColumnMetaData > Statistics; LogicalType > TimestampType > TimeUnit); 32 leaves
 * room for future fields while keeping hostile input from recursing deeply. */
#define TC_THRIFT_MAX_DEPTH 32

/* Compact protocol type ids (field headers; list element ids are the same except bool, see below).
 */
enum {
    TC_THRIFT_STOP = 0,
    TC_THRIFT_BOOL_TRUE = 1,
    TC_THRIFT_BOOL_FALSE = 2,
    TC_THRIFT_I8 = 3,
    TC_THRIFT_I16 = 4,
    TC_THRIFT_I32 = 5,
    TC_THRIFT_I64 = 6,
    TC_THRIFT_DOUBLE = 7,
    TC_THRIFT_BINARY = 8,
    TC_THRIFT_LIST = 9,
    TC_THRIFT_SET = 10,
    TC_THRIFT_MAP = 11,
    TC_THRIFT_STRUCT = 12,
    TC_THRIFT_UUID = 13,
};

/* Element type of a list<bool> (the spec names 2; readers accept 1 as well). */
#define TC_THRIFT_LIST_BOOL TC_THRIFT_BOOL_FALSE

/* ---- writer ---- */

typedef struct tc_thrift_writer {
    tc_pq_buf *out;
    int depth;                                /* open structs */
    int16_t last_id[TC_THRIFT_MAX_DEPTH + 1]; /* previous field id per open struct */
    int failed;                               /* nesting error (buffer errors live in out) */
} tc_thrift_writer;

/* Start writing into out (appends; out is the caller's). The outermost struct must still be opened
 * with tc_thrift_struct_begin. */
void tc_thrift_writer_init(tc_thrift_writer *w, tc_pq_buf *out);

/* Nonzero when anything went wrong (nesting or the buffer). */
int tc_thrift_writer_failed(const tc_thrift_writer *w);

/* Open a struct (top-level, or a list element) / close it with the stop field. */
void tc_thrift_struct_begin(tc_thrift_writer *w);
void tc_thrift_struct_end(tc_thrift_writer *w);

/* Fields of the open struct. */
void tc_thrift_field_bool(tc_thrift_writer *w, int16_t id, int v);
void tc_thrift_field_i8(tc_thrift_writer *w, int16_t id, int8_t v);
void tc_thrift_field_i16(tc_thrift_writer *w, int16_t id, int16_t v);
void tc_thrift_field_i32(tc_thrift_writer *w, int16_t id, int32_t v);
void tc_thrift_field_i64(tc_thrift_writer *w, int16_t id, int64_t v);
void tc_thrift_field_double(tc_thrift_writer *w, int16_t id, double v);
void tc_thrift_field_binary(tc_thrift_writer *w, int16_t id, const void *p, size_t n);
void tc_thrift_field_string(tc_thrift_writer *w, int16_t id, const char *s);
/* A struct-valued field: writes the header and opens the struct; close with tc_thrift_struct_end.
 */
void tc_thrift_field_struct_begin(tc_thrift_writer *w, int16_t id);
/* A list-valued field: writes the header; then write n elements with the element writers below. */
void tc_thrift_field_list_begin(tc_thrift_writer *w, int16_t id, uint8_t elem_type, uint32_t n);

/* The header of a list (without a field header), e.g. for a pre-serialised list body. */
void tc_thrift_list_header(tc_thrift_writer *w, uint8_t elem_type, uint32_t n);

/* List elements. Struct elements use tc_thrift_struct_begin/_end. */
void tc_thrift_elem_i32(tc_thrift_writer *w, int32_t v);
void tc_thrift_elem_i64(tc_thrift_writer *w, int64_t v);
void tc_thrift_elem_binary(tc_thrift_writer *w, const void *p, size_t n);
void tc_thrift_elem_bool(tc_thrift_writer *w, int v);

/* Write a header byte for a field whose value the caller appends itself (e.g. pre-serialised). */
void tc_thrift_field_header(tc_thrift_writer *w, int16_t id, uint8_t type);

static inline uint32_t tc_thrift_zigzag32(int32_t v)
{
    /* Sign spread without shifting a negative value (implementation-defined in C). */
    return ((uint32_t)v << 1) ^ (0u - ((uint32_t)v >> 31));
}

static inline uint64_t tc_thrift_zigzag64(int64_t v)
{
    return ((uint64_t)v << 1) ^ (0u - ((uint64_t)v >> 63));
}

/* ---- reader ---- */

typedef struct tc_thrift_reader {
    const uint8_t *base; /* start of the buffer, for error offsets */
    const uint8_t *p;    /* next byte */
    const uint8_t *end;  /* one past the last byte */
    const char *err;     /* first error (static string), NULL while all is well */
    size_t err_at;       /* offset of the first error from base */
} tc_thrift_reader;

void tc_thrift_reader_init(tc_thrift_reader *r, const void *data, size_t len);

/* Record an error (the first one wins) and return -1. */
int tc_thrift_reader_fail(tc_thrift_reader *r, const char *why);

/* Bytes consumed so far. */
static inline size_t tc_thrift_reader_pos(const tc_thrift_reader *r)
{
    return (size_t)(r->p - r->base);
}

/* Next field of the struct being read. last_id is the caller's per-struct state, 0 at struct start.
 * Returns 1 with *type and *id set, 0 at the stop field, -1 on error. For bool fields *type is
 * TC_THRIFT_BOOL_TRUE or _FALSE and there is no value to read. */
int tc_thrift_read_field(tc_thrift_reader *r, int16_t *last_id, uint8_t *type, int16_t *id);

/* Values. Each returns 0 or -1 (error recorded). */
int tc_thrift_read_uvarint(tc_thrift_reader *r, uint64_t *v);
int tc_thrift_read_i8(tc_thrift_reader *r, int8_t *v);
int tc_thrift_read_i16(tc_thrift_reader *r, int16_t *v);
int tc_thrift_read_i32(tc_thrift_reader *r, int32_t *v);
int tc_thrift_read_i64(tc_thrift_reader *r, int64_t *v);
int tc_thrift_read_double(tc_thrift_reader *r, double *v);
/* Points *p into the buffer (no copy). */
int tc_thrift_read_binary(tc_thrift_reader *r, const uint8_t **p, uint32_t *n);
/* A list or set header; *n is checked against the bytes left. */
int tc_thrift_read_list(tc_thrift_reader *r, uint8_t *elem_type, uint32_t *n);
/* A list<bool> element. */
int tc_thrift_read_elem_bool(tc_thrift_reader *r, int *v);

/* Skip a value of the given type (a field's value or a list element). */
int tc_thrift_skip(tc_thrift_reader *r, uint8_t type);

/* Read an i32-typed field value, checking that the field really has that type (a hostile footer may
 * put any type under a known id). Same for the others. */
int tc_thrift_expect(tc_thrift_reader *r, uint8_t got, uint8_t want);

#endif
