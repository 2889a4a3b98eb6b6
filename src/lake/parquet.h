/*
 * parquet.h -- Thermocline's own Parquet writer.
 *
 * Writes flat schemas (a root with REQUIRED/OPTIONAL leaf columns) of BOOLEAN, INT32, INT64, FLOAT,
 * DOUBLE, STRING, BYTES and TIMESTAMP(UTC, micros) columns, in the layout of the Parquet spec:
 * "PAR1", row groups of column chunks (an optional dictionary page, then v1 data pages), the
 * Thrift-compact FileMetaData, its 4-byte little-endian length, "PAR1".
 *
 * Data flow: the caller hands over columns (struct-of-arrays, like tc_batch), any number of rows at
 * a time. The writer encodes them straight from the caller's arrays into the current page of each
 * column -- PLAIN values, or dictionary indices -- with no allocation per value, and cuts a page
 * when it reaches the page byte or row target: the page body (definition levels + values) is
 * compressed and appended, behind its page header, to the column chunk's buffer. One row group is
 * buffered this way (already compressed); when it reaches row_group_rows or row_group_bytes (the
 * memory bound), the column chunks are written out in order -- dictionary page first -- and only
 * their metadata is kept for the footer.
 *
 * Dictionary: on by default for STRING/BYTES columns (device ids, tags), optional for the others.
 * Each column chunk starts a fresh dictionary; when adding a value would pass dict_max_bytes or
 * dict_max_entries, the page in progress is finished with the indices it has and the rest of the
 * chunk is written PLAIN (what parquet-java and Arrow do too). The next row group starts over.
 *
 * Statistics (per data page header and per column chunk): null_count always; min_value/max_value
 * in the column's type-defined order (signed integers, unsigned bytes for STRING/BYTES, false <
 * true) plus the legacy min/max for the numeric types, whose signed order is the same. FLOAT/DOUBLE
 * follow the spec's TYPE_ORDER rules: NaN never enters min/max (nan_count says how many there are;
 * if every non-null value is NaN, min/max are omitted), a zero minimum is written as -0.0 and a
 * zero maximum as +0.0. STRING/BYTES bounds longer than stats_max_bytes are truncated (min: a
 * prefix, cut at a UTF-8 boundary for STRING; max: a prefix with its last byte incremented, an
 * ASCII byte for STRING) and marked inexact; when no valid shorter max exists, max is omitted.
 *
 * Encryption: with options.crypt (by default the process's lake encryption, see parquet_crypt.h)
 * the file uses Parquet modular encryption: "PARE" magic, every page and page header a GCM module,
 * the footer encrypted behind a FileCryptoMetaData, the configured columns under a key of their
 * own. Pages are sealed as they are cut, so the row group buffer holds ciphertext only.
 *
 * Errors: every call returns a tc_err and fills errstr. I/O errors (a full disk included) are
 * TC_ERR_IO with the errno text; they, and out-of-memory, are sticky: the writer refuses further
 * work and the output must be discarded (the lake sink writes to a temporary file and renames only
 * after a successful close + fsync). Invalid arguments (TC_ERR_INVALID) are checked before anything
 * is encoded, so a rejected call leaves the writer usable.
 *
 * Not thread-safe: one writer belongs to one thread.
 */
#ifndef TC_LAKE_PARQUET_H
#define TC_LAKE_PARQUET_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/error.h"

typedef struct tc_parquet_writer tc_parquet_writer;

/* Column types. The C type of the values array is in brackets. */
typedef enum tc_parquet_type {
    TC_PQ_BOOLEAN,      /* BOOLEAN [uint8_t, nonzero = true] */
    TC_PQ_INT32,        /* INT32 [int32_t] */
    TC_PQ_INT64,        /* INT64 [int64_t] */
    TC_PQ_FLOAT,        /* FLOAT [float] */
    TC_PQ_DOUBLE,       /* DOUBLE [double] */
    TC_PQ_STRING,       /* BYTE_ARRAY + STRING/UTF8 [tc_slice]; the caller guarantees UTF-8 */
    TC_PQ_BYTES,        /* BYTE_ARRAY, no annotation [tc_slice] */
    TC_PQ_TIMESTAMP_US, /* INT64 + TIMESTAMP(isAdjustedToUTC=true, MICROS) [int64_t] */
    TC_PQ_TYPE__COUNT
} tc_parquet_type;

/* Page codecs; the values are parquet.thrift's CompressionCodec numbers. */
typedef enum tc_parquet_codec {
    TC_PQ_UNCOMPRESSED = 0,
    TC_PQ_SNAPPY = 1, /* raw snappy, the default: cheap and what every reader has */
    TC_PQ_ZSTD = 6,
} tc_parquet_codec;

/* Dictionary choice of a column. */
typedef enum tc_parquet_dict {
    TC_PQ_DICT_AUTO = 0, /* on for STRING/BYTES; for the others as options.dictionary_numbers */
    TC_PQ_DICT_ON,
    TC_PQ_DICT_OFF,
} tc_parquet_dict;

/* Name length bound: column names are identifiers, not data. */
#define TC_PQ_NAME_MAX 255
/* Column count bound of a writer (the telemetry schema has 11; random test schemas up to 16). */
#define TC_PQ_COLUMNS_MAX 1024
/* Largest single STRING/BYTES value accepted: far above any telemetry payload, far below the
 * format's 2 GiB page limit. */
#define TC_PQ_VALUE_MAX ((size_t)256 << 20)
/* Key-value metadata bounds: entries and bytes per key or value. */
#define TC_PQ_KV_MAX       1024
#define TC_PQ_KV_BYTES_MAX ((size_t)1 << 20)

typedef struct tc_parquet_column {
    const char *name; /* copied; 1..TC_PQ_NAME_MAX bytes, unique */
    tc_parquet_type type;
    int optional;               /* nonzero: OPTIONAL (nullable), else REQUIRED */
    tc_parquet_dict dictionary; /* TC_PQ_DICT_AUTO unless the caller knows better */
} tc_parquet_column;

typedef struct tc_parquet_options {
    tc_parquet_codec codec;  /* default TC_PQ_SNAPPY */
    int zstd_level;          /* default 1 (Arrow's default: fast, most of the gain) */
    size_t row_group_rows;   /* rows per row group; default 1,048,576 */
    size_t row_group_bytes;  /* flush a row group once its encoded pages take this many bytes
                                (the writer's memory bound); default 128 MiB */
    size_t page_bytes;       /* target uncompressed page size; default 1 MiB */
    size_t page_rows;        /* max values per page; default 20,000 (fine-grained page stats) */
    size_t dict_max_bytes;   /* dictionary page bound (PLAIN size); default 1 MiB */
    size_t dict_max_entries; /* dictionary entry bound; default 262,144 (1 MiB of int32) */
    int dictionary_numbers;  /* TC_PQ_DICT_AUTO columns of numeric types use a dictionary too */
    size_t stats_max_bytes;  /* STRING/BYTES min/max longer than this are truncated; default 64 */
    /* Parquet modular encryption (parquet_crypt.h): NULL writes a plain file. The default is the
     * process's lake encryption (tc_pq_crypt_installed), so every writer of lake files encrypts
     * once it is configured. Not owned: must outlive the writer. */
    const struct tc_pq_crypt *crypt;
} tc_parquet_options;

/* Bounds of the options (checked by tc_parquet_writer_new). */
#define TC_PQ_PAGE_ROWS_MAX  ((size_t)1 << 24)
#define TC_PQ_PAGE_BYTES_MAX ((size_t)1 << 30)
#define TC_PQ_DICT_BYTES_MAX ((size_t)1 << 30)

/* Fill o with the defaults above. */
void tc_parquet_options_default(tc_parquet_options *o);

/* One column's values for tc_parquet_write: nrows entries of the column's C type. Null slots are
 * present in the array (their content is ignored), as in tc_batch. */
typedef struct tc_parquet_values {
    const void *values;
    /* 1 = value present, 0 = NULL; NULL pointer = all present, except that for STRING/BYTES a
     * tc_slice with ptr NULL is a NULL. Must be NULL (and no slice NULL) for REQUIRED columns. */
    const uint8_t *present;
} tc_parquet_values;

/* Output callback: write all n bytes or fail (return TC_ERR_IO and fill errstr). */
typedef tc_err (*tc_parquet_sink_fn)(void *ctx, const void *p, size_t n, char *errstr,
                                     size_t errstr_size);

/* A writer that writes to fd with write(2), starting at the fd's current position, which must be
 * the start of the file (offsets in the footer count from the first byte written). The fd stays the
 * caller's: the writer never closes, seeks or syncs it. Returns NULL (errstr filled) on invalid
 * schema/options or out of memory. cols and opt (NULL = defaults) are copied. */
tc_parquet_writer *tc_parquet_writer_new(int fd, const tc_parquet_column *cols, size_t ncols,
                                         const tc_parquet_options *opt, char *errstr,
                                         size_t errstr_size);

/* Same, writing through a callback (tests, in-memory files). ctx stays the caller's. */
tc_parquet_writer *tc_parquet_writer_new_sink(tc_parquet_sink_fn sink, void *ctx,
                                              const tc_parquet_column *cols, size_t ncols,
                                              const tc_parquet_options *opt, char *errstr,
                                              size_t errstr_size);

/* Append nrows rows: cols[i] holds column i's values (ncols entries, schema order). The arrays are
 * only read during the call. May write finished row groups to the output. */
tc_err tc_parquet_write(tc_parquet_writer *w, const tc_parquet_values *cols, size_t nrows,
                        char *errstr, size_t errstr_size);

/* End the current row group now (no-op when it is empty). */
tc_err tc_parquet_flush_row_group(tc_parquet_writer *w, char *errstr, size_t errstr_size);

/* Add a key-value pair to the footer (both copied; value may be NULL = no value). */
tc_err tc_parquet_add_kv(tc_parquet_writer *w, const char *key, const char *value, char *errstr,
                         size_t errstr_size);

/* Flush the last row group and write the footer. After it only destroy is valid. */
tc_err tc_parquet_close(tc_parquet_writer *w, char *errstr, size_t errstr_size);

/* Free the writer (closed or not; an unclosed file is left incomplete). NULL is a no-op. */
void tc_parquet_writer_destroy(tc_parquet_writer *w);

/* Rows accepted so far. */
uint64_t tc_parquet_writer_rows(const tc_parquet_writer *w);
/* Bytes written to the output so far. */
uint64_t tc_parquet_writer_bytes(const tc_parquet_writer *w);
/* Bytes held for the row group in progress (encoded pages and dictionaries). */
size_t tc_parquet_writer_buffered(const tc_parquet_writer *w);

/* The created_by string of files this writer makes ("thermocline version X (build Y)"). */
const char *tc_parquet_created_by(void);

#endif
