/*
 * parquet_read.h -- Parquet metadata reader and verifier (backs `lake verify`).
 *
 * Reads a file's footer and every page header, and checks that they agree with each other and with
 * the file: magic at both ends, footer length inside the file, the schema tree well formed, every
 * column chunk inside the data region and of its leaf's type and path, page headers that walk the
 * chunk exactly from its first page to its total_compressed_size, a dictionary page only first and
 * at dictionary_page_offset, the first data page at data_page_offset, data page value counts adding
 * up to the chunk's num_values, row counts adding up to the file's. With TC_PQ_VERIFY_DEEP it also
 * decompresses every page (checking the uncompressed size), decodes definition levels of flat
 * columns (null counts against the statistics), dictionary indices (in range of the dictionary)
 * and PLAIN values (exactly filling the page).
 *
 * It reads files written by anyone, so it trusts nothing: every offset and length is checked before
 * use, list counts are bounded by the bytes that would hold them, and all memory for the parsed
 * metadata comes from one arena capped at a multiple of the footer size. Page headers are read from
 * a window that grows up to TC_PQ_PAGE_HEADER_MAX; page bodies (deep mode) up to
 * TC_PQ_VERIFY_PAGE_MAX.
 *
 * Encrypted files (Parquet modular encryption, encrypted footer mode, AES_GCM_V1; see
 * parquet_crypt.h) are read with the keys of the installed tc_pq_crypt: the footer, the column
 * metadata of columns under their own key, every page header and (deep mode) every page are
 * decrypted, and a module that does not authenticate -- a wrong key, or any byte changed -- fails
 * the verification. Not supported (reported as errors): plaintext-footer encryption, AAD prefixes
 * the reader must supply, AES_GCM_CTR_V1, column chunks in other files.
 *
 * Ownership: tc_parquet_info and everything it points to belong to it (the footer bytes are copied
 * into it); free with tc_parquet_info_free.
 */
#ifndef TC_LAKE_PARQUET_READ_H
#define TC_LAKE_PARQUET_READ_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "lake/parquet_buf.h"

/* Largest page header accepted (headers carry statistics, which other writers do not truncate). */
#define TC_PQ_PAGE_HEADER_MAX ((size_t)16 << 20)
/* Largest page body decompressed by deep verification (page sizes are int32; a real page above
 * this is far outside what any writer's defaults produce). */
#define TC_PQ_VERIFY_PAGE_MAX ((size_t)256 << 20)
/* Most values per page that deep verification decodes (levels, dictionary indices): 64 MiB of
 * indices; writers' defaults (20,000 rows, 1 MiB pages) stay far below. */
#define TC_PQ_VERIFY_VALUES_MAX ((size_t)1 << 24)
/* Largest footer accepted. */
#define TC_PQ_FOOTER_MAX ((size_t)256 << 20)
/* Deepest schema tree accepted. */
#define TC_PQ_SCHEMA_DEPTH_MAX 64

/* Verification flags. */
#define TC_PQ_VERIFY_FOOTER 0u /* footer only */
#define TC_PQ_VERIFY_PAGES  1u /* also walk every page header */
#define TC_PQ_VERIFY_DEEP   3u /* also decompress and decode pages (implies PAGES) */

/* Bytes inside the info's own copy of the footer (not NUL-terminated). */
typedef struct tc_pq_view {
    const uint8_t *p;
    uint32_t n;
} tc_pq_view;

/* Which Statistics fields were present. */
enum {
    TC_PQ_ST_MAX = 1 << 0,
    TC_PQ_ST_MIN = 1 << 1,
    TC_PQ_ST_NULL_COUNT = 1 << 2,
    TC_PQ_ST_DISTINCT = 1 << 3,
    TC_PQ_ST_MAX_VALUE = 1 << 4,
    TC_PQ_ST_MIN_VALUE = 1 << 5,
    TC_PQ_ST_MAX_EXACT = 1 << 6,
    TC_PQ_ST_MIN_EXACT = 1 << 7,
    TC_PQ_ST_NAN_COUNT = 1 << 8,
};

typedef struct tc_parquet_stats_info {
    unsigned set; /* TC_PQ_ST_* */
    tc_pq_view max, min, max_value, min_value;
    int64_t null_count, distinct_count, nan_count;
    int max_exact, min_exact;
} tc_parquet_stats_info;

typedef struct tc_parquet_schema_info {
    tc_pq_view name;
    int32_t type;           /* physical type, -1 if unset (groups) */
    int32_t repetition;     /* -1 if unset */
    int32_t num_children;   /* -1 if unset */
    int32_t converted_type; /* -1 if unset */
    int32_t logical;        /* LogicalType union field id, -1 if unset */
    int32_t ts_unit;        /* TimeUnit field id of TIMESTAMP, -1 otherwise */
    int ts_utc;             /* TIMESTAMP isAdjustedToUTC */
} tc_parquet_schema_info;

/* A leaf column as the schema tree defines it. */
typedef struct tc_parquet_leaf_info {
    size_t schema_index;
    int32_t type;
    int max_def, max_rep;
    size_t path_len;
    tc_pq_view *path;
} tc_parquet_leaf_info;

typedef struct tc_parquet_chunk_info {
    int32_t type;
    int32_t codec;
    uint32_t encodings; /* bit (1u << Encoding) per listed encoding (values < 32) */
    size_t path_len;
    tc_pq_view *path;
    int64_t file_offset;
    int64_t num_values;
    int64_t total_uncompressed_size;
    int64_t total_compressed_size;
    int64_t data_page_offset;
    int64_t dictionary_page_offset; /* -1 if unset */
    int has_stats;
    tc_parquet_stats_info stats;
    int crypt_slot; /* key slot of an encrypted column (parquet_crypt.h), -1 when plain */
    /* from the page walk */
    uint32_t dict_pages, data_pages;
    int64_t dict_entries;  /* num_values of the dictionary page, -1 without one */
    int64_t nulls_counted; /* deep mode, flat columns: from the definition levels; else -1 */
} tc_parquet_chunk_info;

typedef struct tc_parquet_rg_info {
    int64_t num_rows;
    int64_t total_byte_size;
    int64_t file_offset;           /* -1 if unset */
    int64_t total_compressed_size; /* -1 if unset */
    size_t ncols;
    tc_parquet_chunk_info *cols;
} tc_parquet_rg_info;

typedef struct tc_parquet_kv_info {
    tc_pq_view key;
    tc_pq_view value;
    int has_value;
} tc_parquet_kv_info;

typedef struct tc_parquet_info {
    uint64_t file_size;
    uint32_t footer_len;
    int32_t version;
    int64_t num_rows;
    size_t nschema;
    tc_parquet_schema_info *schema;
    size_t nleaves;
    tc_parquet_leaf_info *leaves;
    size_t nrg;
    tc_parquet_rg_info *rgs;
    size_t nkv;
    tc_parquet_kv_info *kv;
    int has_created_by;
    tc_pq_view created_by;
    size_t ncolumn_orders;
    uint64_t pages; /* page headers walked */

    struct tc_pq_fcrypt *fc; /* the file's keys when it is encrypted, else NULL; owned */

    tc_arena arena;  /* everything above */
    uint8_t *footer; /* copy of the footer bytes the views point into */
} tc_parquet_info;

/* Verify a whole file held in memory. On success *out (if out is non-NULL) receives the info. */
tc_err tc_parquet_verify_buf(const void *data, size_t len, unsigned flags, tc_parquet_info **out,
                             char *errstr, size_t errstr_size);

/* Verify the file open at fd (read with pread; the fd's position is not used or changed). */
tc_err tc_parquet_verify_fd(int fd, unsigned flags, tc_parquet_info **out, char *errstr,
                            size_t errstr_size);

/* Open, verify and close the file at path. */
tc_err tc_parquet_verify_path(const char *path, unsigned flags, tc_parquet_info **out, char *errstr,
                              size_t errstr_size);

/* Parse a FileMetaData struct (footer bytes, no framing) without touching any page. */
tc_err tc_parquet_parse_footer(const void *footer, size_t len, tc_parquet_info **out, char *errstr,
                               size_t errstr_size);

/* A parsed PageHeader. */
typedef struct tc_parquet_page_header {
    int32_t type;
    int32_t uncompressed_size;
    int32_t compressed_size;
    int32_t num_values; /* data pages (v1/v2) and dictionary pages */
    int32_t encoding;
    int32_t def_encoding, rep_encoding; /* v1 */
    int32_t num_nulls, num_rows;        /* v2 */
    int32_t def_len, rep_len;           /* v2 */
    int is_compressed;                  /* v2 (default true) */
    int has_stats;
    tc_parquet_stats_info stats; /* views into the parsed bytes */
} tc_parquet_page_header;

/* Parse one PageHeader from data[0..len); *used receives its length. Checks sizes are not negative
 * and the sub-header matching the page type is present. */
tc_err tc_parquet_parse_page_header(const void *data, size_t len, tc_parquet_page_header *h,
                                    size_t *used, char *errstr, size_t errstr_size);

/* The page header at p[0..avail) of chunk ck (row group g, column c of info). In an encrypted
 * chunk the header is a module: it is decrypted into *scratch first (is_dict: the chunk's
 * dictionary page header; ordinal: the data pages before it). *used receives the bytes the
 * header takes in the file. h's statistics views point into p or *scratch. */
tc_err tc_parquet_chunk_page_header(const tc_parquet_info *info, const tc_parquet_chunk_info *ck,
                                    size_t g, size_t c, int is_dict, uint32_t ordinal,
                                    const uint8_t *p, size_t avail, tc_parquet_page_header *h,
                                    size_t *used, tc_pq_buf *scratch, char *errstr,
                                    size_t errstr_size);

/* The page body at p[0..len) as stored: in an encrypted chunk it is decrypted into *out and
 * *body / *blen point there; otherwise they are p and len. */
tc_err tc_parquet_chunk_page_body(const tc_parquet_info *info, const tc_parquet_chunk_info *ck,
                                  size_t g, size_t c, int is_dict, uint32_t ordinal,
                                  const uint8_t *p, size_t len, tc_pq_buf *out,
                                  const uint8_t **body, size_t *blen, char *errstr,
                                  size_t errstr_size);

/* Free an info (NULL is a no-op). */
void tc_parquet_info_free(tc_parquet_info *info);

#endif
