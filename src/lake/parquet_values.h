/*
 * parquet_values.h -- read the values of flat Parquet files back, one row group at a time.
 *
 * Reads what the writer (parquet.h) produces, and the same shapes from other writers: a root with
 * REQUIRED/OPTIONAL leaves of BOOLEAN, INT32, INT64, FLOAT, DOUBLE, BYTE_ARRAY (STRING when
 * annotated UTF8/STRING, else BYTES) and INT64 TIMESTAMP(UTC, MICROS); PLAIN, PLAIN_DICTIONARY and
 * RLE_DICTIONARY values; RLE definition levels; data pages v1 and v2; no, snappy or zstd
 * compression. Anything else (nested columns, INT96, FIXED_LEN_BYTE_ARRAY, DELTA_* encodings,
 * other codecs) is refused with TC_ERR_INVALID.
 *
 * The footer and every page header are parsed and checked by the verifier (parquet_read.h,
 * TC_PQ_VERIFY_PAGES) when the file is opened; page bodies are decoded here with the encode
 * module's RLE/bit-packing decoder and codecs, trusting nothing: every length is checked against
 * the page, value counts against the row group, dictionary indices against the dictionary, and
 * page and row group sizes are capped (the verifier's caps plus the ones below).
 *
 * Output: the columns of a row group in the shape tc_parquet_write takes (tc_parquet_values, in
 * schema order), so that copying a file is open -> for each row group: read -> tc_parquet_write.
 * Arrays and strings belong to the reader and stay valid until the next read or the close.
 *
 * Not thread-safe: one reader belongs to one thread.
 */
#ifndef TC_LAKE_PARQUET_VALUES_H
#define TC_LAKE_PARQUET_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "lake/parquet.h"
#include "lake/parquet_read.h"

/* Most rows in one row group that the reader materialises (the writer's default is 1 Mi). */
#define TC_PQ_VALUES_ROWS_MAX ((size_t)1 << 26)
/* Largest column chunk read into memory. */
#define TC_PQ_VALUES_CHUNK_MAX ((size_t)1 << 31)
/* Bound on the string bytes held for one row group. */
#define TC_PQ_VALUES_ARENA_MAX ((size_t)4 << 30)

typedef struct tc_parquet_reader tc_parquet_reader;

/* Open the file at fd (read with pread; the fd stays the caller's and must stay open until close)
 * or at path. Verifies the footer and page headers, and that the schema is flat and of supported
 * types. */
tc_err tc_parquet_reader_open_fd(int fd, tc_parquet_reader **out, char *errstr, size_t errstr_size);
tc_err tc_parquet_reader_open_path(const char *path, tc_parquet_reader **out, char *errstr,
                                   size_t errstr_size);

/* The parsed footer (key-value metadata, row counts, statistics). */
const tc_parquet_info *tc_parquet_reader_info(const tc_parquet_reader *r);

/* The schema as writer columns (names owned by the reader; dictionary = TC_PQ_DICT_AUTO). */
const tc_parquet_column *tc_parquet_reader_columns(const tc_parquet_reader *r, size_t *ncols);

size_t tc_parquet_reader_row_groups(const tc_parquet_reader *r);

/* Decode row group g: *cols receives one tc_parquet_values per column (schema order), *nrows its
 * row count. OPTIONAL columns get a present array (and NULL slices for null strings); REQUIRED
 * columns a NULL present pointer. Valid until the next call or the close. */
tc_err tc_parquet_reader_read(tc_parquet_reader *r, size_t g, const tc_parquet_values **cols,
                              size_t *nrows, char *errstr, size_t errstr_size);

/* Free the reader (closes the fd only if it opened it). NULL is a no-op. */
void tc_parquet_reader_close(tc_parquet_reader *r);

#endif
