/*
 * parquet_read.c -- Parquet footer/page-header reader and verifier; see parquet_read.h.
 *
 * Structure: a byte source (memory or pread on an fd), the Thrift struct parsers of the footer (one
 * function per struct, unknown fields skipped; page headers and Statistics are parsed in
 * parquet_pages.c), the encrypted footer and column metadata, the schema tree walk, and the
 * verification of row groups and their pages. Parsers return 0 or -1; the first error is described
 * in the reader (r->err) or, for semantic checks, in the verification context, and turned into one
 * errstr at the top.
 */
#include "lake/parquet_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lake/parquet_buf.h"
#include "lake/parquet_crypt.h"
#include "lake/parquet_encode.h"
#include "lake/parquet_format.h"
#include "lake/parquet_read_thrift.h"
#include "lake/thrift_compact.h"

/* First window read for a page header; doubled (up to TC_PQ_PAGE_HEADER_MAX) while the header does
 * not parse in it. Ours are ~100 bytes; with untruncated string statistics they can be large. */
#define TC_PQ_HEADER_WINDOW ((size_t)64 << 10)

/* Parsed metadata takes at most this many times the footer size (plus a block): structs are a few
 * hundred bytes and each is at least one footer byte, so honest footers stay far below it. */
#define TC_PQ_ARENA_FACTOR 256
#define TC_PQ_ARENA_BLOCK  ((size_t)64 << 10)

/* ---- source ---- */

typedef struct tc_pq_src {
    const uint8_t *mem; /* whole file, or NULL to pread from fd */
    int fd;
    uint64_t size;
    tc_pq_buf scratch; /* pread target */
} tc_pq_src;

/* Bytes [off, off + n) of the file; a pointer into memory or into the scratch buffer. NULL on I/O
 * error or out of memory (errno describes it). */
static const uint8_t *tc_pq_src_get(tc_pq_src *s, uint64_t off, size_t n)
{
    size_t got = 0;

    if (off > s->size || n > s->size - off) {
        errno = EINVAL;
        return NULL;
    }
    if (s->mem)
        return s->mem + off;
    tc_pq_buf_clear(&s->scratch);
    if (tc_pq_buf_reserve(&s->scratch, n ? n : 1) != 0) {
        errno = ENOMEM;
        return NULL;
    }
    while (got < n) {
        ssize_t k = pread(s->fd, s->scratch.data + got, n - got, (off_t)(off + got));
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        if (k == 0) {
            errno = EIO; /* the file shrank under us */
            return NULL;
        }
        got += (size_t)k;
    }
    return s->scratch.data;
}

/* ---- verification context ---- */

typedef struct tc_pq_ctx {
    tc_parquet_info *info;
    char *errstr;
    size_t errstr_size;
    tc_err err;
    size_t rg_at, col_at; /* ordinals of the chunk being parsed (AADs of encrypted metadata) */
} tc_pq_ctx;

static int tc_pq_bad(tc_pq_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Record a verification failure (first one wins). Returns -1. */
static int tc_pq_bad(tc_pq_ctx *x, const char *fmt, ...)
{
    va_list ap;

    if (x->err != TC_OK)
        return -1;
    x->err = TC_ERR_INVALID;
    if (x->errstr && x->errstr_size) {
        va_start(ap, fmt);
        vsnprintf(x->errstr, x->errstr_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void *tc_pq_alloc(tc_pq_ctx *x, size_t n, size_t size)
{
    void *p;

    if (n == 0)
        n = 1;
    if (size && n > SIZE_MAX / size)
        return NULL;
    p = tc_arena_alloc(&x->info->arena, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

/* ---- Thrift struct parsers (the helpers and Statistics: parquet_read_thrift.h) ---- */

/* Parse a struct whose fields we ignore, except that we want to know it is well formed. */
static int tc_pq_skip_struct(tc_thrift_reader *r, uint8_t t)
{
    TC_PQ_EXPECT(r, t, TC_THRIFT_STRUCT);
    return tc_thrift_skip(r, TC_THRIFT_STRUCT);
}

/* LogicalType union: record which member, and for TIMESTAMP its unit and UTC flag. */
static int tc_pq_parse_logical(tc_thrift_reader *r, tc_parquet_schema_info *se)
{
    int16_t last = 0, id, l2, id2, l3, id3;
    uint8_t t, t2, t3;
    int rc, rc2, rc3;

    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        TC_PQ_EXPECT(r, t, TC_THRIFT_STRUCT);
        se->logical = id;
        if (id != TC_PQF_LT_TIMESTAMP) {
            if (tc_thrift_skip(r, TC_THRIFT_STRUCT) != 0)
                return -1;
            continue;
        }
        l2 = 0;
        while ((rc2 = tc_thrift_read_field(r, &l2, &t2, &id2)) == 1) {
            if (id2 == 1) {
                TC_PQ_EXPECT(r, t2, TC_THRIFT_BOOL_TRUE);
                se->ts_utc = t2 == TC_THRIFT_BOOL_TRUE;
            } else if (id2 == 2) {
                TC_PQ_EXPECT(r, t2, TC_THRIFT_STRUCT);
                l3 = 0;
                while ((rc3 = tc_thrift_read_field(r, &l3, &t3, &id3)) == 1) {
                    se->ts_unit = id3;
                    if (tc_pq_skip_struct(r, t3) != 0)
                        return -1;
                }
                if (rc3 != 0)
                    return -1;
            } else if (tc_thrift_skip(r, t2) != 0) {
                return -1;
            }
        }
        if (rc2 != 0)
            return -1;
    }
    return rc;
}

static int tc_pq_parse_schema_elem(tc_thrift_reader *r, tc_parquet_schema_info *se)
{
    int16_t last = 0, id;
    uint8_t t;
    int rc, have_name = 0;

    se->type = se->repetition = se->num_children = se->converted_type = -1;
    se->logical = se->ts_unit = -1;
    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok;
        switch (id) {
        case 1:
            ok = tc_pq_read_i32f(r, t, &se->type);
            break;
        case 3:
            ok = tc_pq_read_i32f(r, t, &se->repetition);
            break;
        case 4:
            ok = tc_pq_read_view(r, t, &se->name);
            have_name = 1;
            break;
        case 5:
            ok = tc_pq_read_i32f(r, t, &se->num_children);
            break;
        case 6:
            ok = tc_pq_read_i32f(r, t, &se->converted_type);
            break;
        case 10:
            ok = tc_thrift_expect(r, t, TC_THRIFT_STRUCT);
            if (ok == 0)
                ok = tc_pq_parse_logical(r, se);
            break;
        default:
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
    }
    if (rc == 0 && !have_name)
        return tc_thrift_reader_fail(r, "SchemaElement without a name");
    return rc;
}

/* list<string> into views allocated from the arena. */
static int tc_pq_parse_path(tc_pq_ctx *x, tc_thrift_reader *r, uint8_t t, tc_pq_view **path,
                            size_t *n)
{
    uint8_t et;
    uint32_t cnt;

    TC_PQ_EXPECT(r, t, TC_THRIFT_LIST);
    if (tc_thrift_read_list(r, &et, &cnt) != 0)
        return -1;
    if (et != TC_THRIFT_BINARY)
        return tc_thrift_reader_fail(r, "path_in_schema is not a list of strings");
    *path = tc_pq_alloc(x, cnt, sizeof(**path));
    if (!*path)
        return tc_thrift_reader_fail(r, "metadata too large");
    *n = cnt;
    for (uint32_t i = 0; i < cnt; i++)
        if (tc_thrift_read_binary(r, &(*path)[i].p, &(*path)[i].n) != 0)
            return -1;
    return 0;
}

/* ColumnMetaData required fields, as bits of their ids. */
#define TC_PQ_CMD_REQUIRED                                                                         \
    ((1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 7) | (1u << 9))

static int tc_pq_parse_col_meta(tc_pq_ctx *x, tc_thrift_reader *r, tc_parquet_chunk_info *ck)
{
    int16_t last = 0, id;
    uint8_t t, et;
    uint32_t seen = 0, n;
    int rc;

    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok = 0;
        switch (id) {
        case 1:
            ok = tc_pq_read_i32f(r, t, &ck->type);
            break;
        case 2:
            TC_PQ_EXPECT(r, t, TC_THRIFT_LIST);
            if (tc_thrift_read_list(r, &et, &n) != 0)
                return -1;
            if (et != TC_THRIFT_I32)
                return tc_thrift_reader_fail(r, "encodings is not a list of i32");
            for (uint32_t i = 0; i < n; i++) {
                int32_t e;
                if (tc_thrift_read_i32(r, &e) != 0)
                    return -1;
                if (e >= 0 && e < 32)
                    ck->encodings |= 1u << e;
            }
            break;
        case 3:
            ok = tc_pq_parse_path(x, r, t, &ck->path, &ck->path_len);
            break;
        case 4:
            ok = tc_pq_read_i32f(r, t, &ck->codec);
            break;
        case 5:
            ok = tc_pq_read_i64f(r, t, &ck->num_values);
            break;
        case 6:
            ok = tc_pq_read_i64f(r, t, &ck->total_uncompressed_size);
            break;
        case 7:
            ok = tc_pq_read_i64f(r, t, &ck->total_compressed_size);
            break;
        case 9:
            ok = tc_pq_read_i64f(r, t, &ck->data_page_offset);
            break;
        case 11:
            ok = tc_pq_read_i64f(r, t, &ck->dictionary_page_offset);
            break;
        case 12:
            TC_PQ_EXPECT(r, t, TC_THRIFT_STRUCT);
            ok = tc_pq_parse_stats(r, &ck->stats);
            ck->has_stats = 1;
            break;
        default:
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
        if (id > 0 && id < 32)
            seen |= 1u << id;
    }
    if (rc == 0 && (seen & TC_PQ_CMD_REQUIRED) != TC_PQ_CMD_REQUIRED)
        return tc_thrift_reader_fail(r, "ColumnMetaData misses a required field");
    return rc;
}

/* A column under its own key: its ColumnMetaData is a module of its own. The plaintext goes into
 * the arena, since the chunk's views point into it. */
static int tc_pq_parse_enc_col_meta(tc_pq_ctx *x, tc_parquet_chunk_info *ck, tc_pq_view enc)
{
    char msg[TC_ERRSTR_MAX];
    tc_thrift_reader cr;
    tc_pq_buf plain;
    uint8_t *copy;
    tc_err err;

    tc_pq_buf_init(&plain, TC_PQ_FOOTER_MAX);
    err = tc_pq_fcrypt_open(x->info->fc, ck->crypt_slot, TC_PQC_COLUMN_META, (int)x->rg_at,
                            (int)x->col_at, -1, enc.p, enc.n, &plain, msg, sizeof(msg));
    if (err != TC_OK) {
        tc_pq_buf_free(&plain);
        tc_pq_bad(x, "row group %zu column %zu: %s", x->rg_at, x->col_at, msg);
        x->err = err;
        return -1;
    }
    copy = tc_pq_alloc(x, plain.len, 1);
    if (copy && plain.len)
        memcpy(copy, plain.data, plain.len);
    tc_thrift_reader_init(&cr, copy, copy ? plain.len : 0);
    tc_pq_buf_free(&plain);
    if (!copy)
        return tc_pq_bad(x, "metadata too large");
    if (tc_pq_parse_col_meta(x, &cr, ck) != 0)
        return tc_pq_bad(x, "row group %zu column %zu: encrypted column metadata: %s at byte %zu",
                         x->rg_at, x->col_at, cr.err ? cr.err : "corrupt", cr.err_at);
    return 0;
}

static int tc_pq_parse_chunk(tc_pq_ctx *x, tc_thrift_reader *r, tc_parquet_chunk_info *ck)
{
    int16_t last = 0, id;
    uint8_t t;
    int rc, have_meta = 0, have_enc = 0;
    tc_pq_view enc = {0};

    ck->crypt_slot = -1;
    ck->dictionary_page_offset = -1;
    ck->dict_entries = -1;
    ck->nulls_counted = -1;
    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok;
        switch (id) {
        case 1:
            return tc_thrift_reader_fail(r, "column chunk stored in another file (unsupported)");
        case 2:
            ok = tc_pq_read_i64f(r, t, &ck->file_offset);
            break;
        case 3:
            TC_PQ_EXPECT(r, t, TC_THRIFT_STRUCT);
            ok = tc_pq_parse_col_meta(x, r, ck);
            have_meta = 1;
            break;
        case 8:
            if (!x->info->fc)
                return tc_thrift_reader_fail(r, "encrypted column in a file with a plaintext "
                                                "footer (unsupported)");
            TC_PQ_EXPECT(r, t, TC_THRIFT_STRUCT);
            ck->crypt_slot =
                tc_pq_fcrypt_parse_column(x->info->fc, r, &x->err, x->errstr, x->errstr_size);
            ok = ck->crypt_slot < 0 ? -1 : 0;
            break;
        case 9:
            ok = tc_pq_read_view(r, t, &enc);
            have_enc = 1;
            break;
        default:
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
    }
    if (rc == 0 && have_enc && !have_meta) {
        if (ck->crypt_slot < 0)
            return tc_thrift_reader_fail(r, "encrypted_column_metadata without crypto_metadata");
        if (tc_pq_parse_enc_col_meta(x, ck, enc) != 0)
            return -1;
        have_meta = 1;
    }
    if (rc == 0 && !have_meta)
        return tc_thrift_reader_fail(r, "ColumnChunk without meta_data");
    return rc;
}

static int tc_pq_parse_rg(tc_pq_ctx *x, tc_thrift_reader *r, tc_parquet_rg_info *rg)
{
    int16_t last = 0, id;
    uint8_t t, et;
    uint32_t n;
    int rc, seen = 0;

    rg->file_offset = -1;
    rg->total_compressed_size = -1;
    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok = 0;
        switch (id) {
        case 1:
            TC_PQ_EXPECT(r, t, TC_THRIFT_LIST);
            if (tc_thrift_read_list(r, &et, &n) != 0)
                return -1;
            if (et != TC_THRIFT_STRUCT)
                return tc_thrift_reader_fail(r, "columns is not a list of structs");
            rg->cols = tc_pq_alloc(x, n, sizeof(*rg->cols));
            if (!rg->cols)
                return tc_thrift_reader_fail(r, "metadata too large");
            rg->ncols = n;
            for (uint32_t i = 0; i < n && ok == 0; i++) {
                x->col_at = i;
                ok = tc_pq_parse_chunk(x, r, &rg->cols[i]);
            }
            seen |= 1;
            break;
        case 2:
            ok = tc_pq_read_i64f(r, t, &rg->total_byte_size);
            seen |= 2;
            break;
        case 3:
            ok = tc_pq_read_i64f(r, t, &rg->num_rows);
            seen |= 4;
            break;
        case 5:
            ok = tc_pq_read_i64f(r, t, &rg->file_offset);
            break;
        case 6:
            ok = tc_pq_read_i64f(r, t, &rg->total_compressed_size);
            break;
        default:
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
    }
    if (rc == 0 && seen != 7)
        return tc_thrift_reader_fail(r, "RowGroup misses a required field");
    return rc;
}

static int tc_pq_parse_kv(tc_thrift_reader *r, tc_parquet_kv_info *kv)
{
    int16_t last = 0, id;
    uint8_t t;
    int rc, have_key = 0;

    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok;
        if (id == 1) {
            ok = tc_pq_read_view(r, t, &kv->key);
            have_key = 1;
        } else if (id == 2) {
            ok = tc_pq_read_view(r, t, &kv->value);
            kv->has_value = 1;
        } else {
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
    }
    if (rc == 0 && !have_key)
        return tc_thrift_reader_fail(r, "KeyValue without a key");
    return rc;
}

/* Allocate and parse a list<struct> field whose elements parse with fn. */
static int tc_pq_parse_file_meta(tc_pq_ctx *x, tc_thrift_reader *r)
{
    tc_parquet_info *info = x->info;
    int16_t last = 0, id;
    uint8_t t, et;
    uint32_t n;
    int rc, seen = 0;

    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok = 0;
        switch (id) {
        case 1:
            ok = tc_pq_read_i32f(r, t, &info->version);
            seen |= 1;
            break;
        case 2:
            TC_PQ_EXPECT(r, t, TC_THRIFT_LIST);
            if (tc_thrift_read_list(r, &et, &n) != 0)
                return -1;
            if (et != TC_THRIFT_STRUCT)
                return tc_thrift_reader_fail(r, "schema is not a list of structs");
            info->schema = tc_pq_alloc(x, n, sizeof(*info->schema));
            if (!info->schema)
                return tc_thrift_reader_fail(r, "metadata too large");
            info->nschema = n;
            for (uint32_t i = 0; i < n && ok == 0; i++)
                ok = tc_pq_parse_schema_elem(r, &info->schema[i]);
            seen |= 2;
            break;
        case 3:
            ok = tc_pq_read_i64f(r, t, &info->num_rows);
            seen |= 4;
            break;
        case 4:
            TC_PQ_EXPECT(r, t, TC_THRIFT_LIST);
            if (tc_thrift_read_list(r, &et, &n) != 0)
                return -1;
            if (et != TC_THRIFT_STRUCT)
                return tc_thrift_reader_fail(r, "row_groups is not a list of structs");
            info->rgs = tc_pq_alloc(x, n, sizeof(*info->rgs));
            if (!info->rgs)
                return tc_thrift_reader_fail(r, "metadata too large");
            info->nrg = n;
            for (uint32_t i = 0; i < n && ok == 0; i++) {
                x->rg_at = i;
                ok = tc_pq_parse_rg(x, r, &info->rgs[i]);
            }
            seen |= 8;
            break;
        case 5:
            TC_PQ_EXPECT(r, t, TC_THRIFT_LIST);
            if (tc_thrift_read_list(r, &et, &n) != 0)
                return -1;
            if (et != TC_THRIFT_STRUCT)
                return tc_thrift_reader_fail(r, "key_value_metadata is not a list of structs");
            info->kv = tc_pq_alloc(x, n, sizeof(*info->kv));
            if (!info->kv)
                return tc_thrift_reader_fail(r, "metadata too large");
            info->nkv = n;
            for (uint32_t i = 0; i < n && ok == 0; i++)
                ok = tc_pq_parse_kv(r, &info->kv[i]);
            break;
        case 6:
            ok = tc_pq_read_view(r, t, &info->created_by);
            info->has_created_by = 1;
            break;
        case 7:
            TC_PQ_EXPECT(r, t, TC_THRIFT_LIST);
            if (tc_thrift_read_list(r, &et, &n) != 0)
                return -1;
            if (et != TC_THRIFT_STRUCT)
                return tc_thrift_reader_fail(r, "column_orders is not a list of structs");
            info->ncolumn_orders = n;
            for (uint32_t i = 0; i < n && ok == 0; i++)
                ok = tc_thrift_skip(r, TC_THRIFT_STRUCT);
            break;
        case 8:
            return tc_thrift_reader_fail(r, "encrypted file (unsupported)");
        default:
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
    }
    if (rc == 0 && seen != 15)
        return tc_thrift_reader_fail(r, "FileMetaData misses a required field");
    return rc;
}

/* ---- schema ---- */

static int tc_pq_walk_schema(tc_pq_ctx *x)
{
    tc_parquet_info *info = x->info;
    /* Per open group: children still to come, its definition/repetition level, its name. */
    int32_t left[TC_PQ_SCHEMA_DEPTH_MAX + 1];
    int def[TC_PQ_SCHEMA_DEPTH_MAX + 1], rep[TC_PQ_SCHEMA_DEPTH_MAX + 1];
    size_t at[TC_PQ_SCHEMA_DEPTH_MAX + 1];
    int depth = 0;
    size_t nleaves = 0;

    if (info->nschema == 0)
        return tc_pq_bad(x, "schema is empty");
    if (info->schema[0].num_children < 0)
        return tc_pq_bad(x, "schema root has no num_children");
    /* Count leaves first (elements that are not groups) to size the array. */
    for (size_t i = 1; i < info->nschema; i++)
        if (info->schema[i].num_children <= 0)
            nleaves++;
    info->leaves = tc_pq_alloc(x, nleaves, sizeof(*info->leaves));
    if (!info->leaves)
        return tc_pq_bad(x, "metadata too large");
    info->nleaves = 0;
    left[0] = info->schema[0].num_children;
    def[0] = rep[0] = 0;
    at[0] = 0;
    for (size_t i = 1; i < info->nschema; i++) {
        const tc_parquet_schema_info *se = &info->schema[i];
        int d, rp;
        while (depth > 0 && left[depth] == 0)
            depth--;
        if (left[depth] == 0)
            return tc_pq_bad(x, "schema has more elements than its tree holds");
        left[depth]--;
        if (se->repetition < TC_PQF_REQUIRED || se->repetition > TC_PQF_REPEATED)
            return tc_pq_bad(x, "schema element %zu has no valid repetition_type", i);
        d = def[depth] + (se->repetition != TC_PQF_REQUIRED);
        rp = rep[depth] + (se->repetition == TC_PQF_REPEATED);
        if (se->num_children > 0) {
            if (depth + 1 > TC_PQ_SCHEMA_DEPTH_MAX)
                return tc_pq_bad(x, "schema nests deeper than %d", TC_PQ_SCHEMA_DEPTH_MAX);
            depth++;
            left[depth] = se->num_children;
            def[depth] = d;
            rep[depth] = rp;
            at[depth] = i;
            continue;
        }
        if (se->type < TC_PQF_BOOLEAN || se->type > TC_PQF_FIXED_LEN_BYTE_ARRAY)
            return tc_pq_bad(x, "schema leaf %zu has no valid physical type", i);
        tc_parquet_leaf_info *lf = &info->leaves[info->nleaves++];
        lf->schema_index = i;
        lf->type = se->type;
        lf->max_def = d;
        lf->max_rep = rp;
        lf->path_len = (size_t)depth + 1;
        lf->path = tc_pq_alloc(x, lf->path_len, sizeof(*lf->path));
        if (!lf->path)
            return tc_pq_bad(x, "metadata too large");
        for (int k = 1; k <= depth; k++)
            lf->path[k - 1] = info->schema[at[k]].name;
        lf->path[depth] = se->name;
    }
    for (int k = 0; k <= depth; k++)
        if (left[k] != 0)
            return tc_pq_bad(x, "schema tree promises more children than it has");
    return 0;
}

static int tc_pq_view_eq(tc_pq_view a, tc_pq_view b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* ---- pages ---- */

typedef struct tc_pq_walk {
    tc_pq_src *src;
    tc_pq_buf body;  /* decrypted page (encrypted chunks) */
    tc_pq_buf hdr;   /* decrypted page header (encrypted chunks) */
    tc_pq_buf plain; /* decompressed page */
    uint32_t *idx;   /* decoded levels / indices */
    size_t idx_cap;
} tc_pq_walk;

static int codec_ok_for_deep(int codec)
{
    return codec == TC_PQ_CODEC_UNCOMPRESSED || codec == TC_PQ_CODEC_SNAPPY ||
           codec == TC_PQ_CODEC_ZSTD;
}

static int tc_pq_walk_need(tc_pq_ctx *x, tc_pq_walk *wk, size_t n)
{
    /* Runs make value counts independent of page bytes (an RLE run of a billion nulls is five
     * bytes), so the decode array is bounded on its own. */
    if (n > TC_PQ_VERIFY_VALUES_MAX)
        return tc_pq_bad(x, "page of %zu values is too large to decode", n);
    if (n <= wk->idx_cap)
        return 0;
    uint32_t *p = realloc(wk->idx, n * sizeof(*p));
    if (!p)
        return tc_pq_bad(x, "out of memory decoding a page");
    wk->idx = p;
    wk->idx_cap = n;
    return 0;
}

/* Check that PLAIN data of `count` values of type `type` fills data[0..len) exactly. */
static int tc_pq_check_plain(tc_pq_ctx *x, int32_t type, const uint8_t *data, size_t len,
                             size_t count, const char *where)
{
    size_t need;

    switch (type) {
    case TC_PQF_BOOLEAN:
        need = (count + 7) / 8;
        break;
    case TC_PQF_INT32:
    case TC_PQF_FLOAT:
        need = count * 4;
        break;
    case TC_PQF_INT64:
    case TC_PQF_DOUBLE:
        need = count * 8;
        break;
    case TC_PQF_INT96:
        need = count * 12;
        break;
    case TC_PQF_BYTE_ARRAY: {
        size_t pos = 0;
        for (size_t i = 0; i < count; i++) {
            if (len - pos < 4)
                return tc_pq_bad(x, "%s: PLAIN byte array %zu runs past the page", where, i);
            uint32_t n = tc_pq_load_le32(data + pos);
            pos += 4;
            if (n > len - pos)
                return tc_pq_bad(x, "%s: PLAIN byte array %zu runs past the page", where, i);
            pos += n;
        }
        need = pos;
        break;
    }
    default:
        return 0; /* FIXED_LEN_BYTE_ARRAY: width lives in the schema; not checked */
    }
    if (need != len)
        return tc_pq_bad(x, "%s: PLAIN values take %zu bytes, the page has %zu", where, need, len);
    return 0;
}

/* Deep check of a decompressed data page. Returns 0/-1; adds the page's nulls to *nulls. */
static int tc_pq_check_data_page(tc_pq_ctx *x, tc_pq_walk *wk, const tc_parquet_leaf_info *lf,
                                 const tc_parquet_page_header *h, const uint8_t *levels,
                                 size_t levels_len, const uint8_t *data, size_t len,
                                 int64_t dict_entries, int64_t *nulls, const char *where)
{
    size_t n = (size_t)h->num_values, nn = 0, pos = 0;
    int v2 = h->type == TC_PQF_DATA_PAGE_V2;

    if (lf->max_rep > 0)
        return 0; /* nested: levels interleave with repetition; not decoded here */
    if (lf->max_def > 0) {
        int bw = tc_pq_bit_width((uint64_t)lf->max_def);
        const uint8_t *lv;
        size_t lvlen;
        if (v2) {
            lv = levels;
            lvlen = levels_len;
        } else {
            if (h->def_encoding != TC_PQF_ENC_RLE)
                return 0; /* legacy BIT_PACKED levels: not decoded */
            if (len < 4 || tc_pq_load_le32(data) > len - 4)
                return tc_pq_bad(x, "%s: definition levels run past the page", where);
            lvlen = tc_pq_load_le32(data);
            lv = data + 4;
            pos = 4 + lvlen;
        }
        if (tc_pq_walk_need(x, wk, n) != 0)
            return -1;
        if (n > 0 && tc_pq_rle_decode_u32(lv, lvlen, bw, wk->idx, n) < 0)
            return tc_pq_bad(x, "%s: definition levels do not decode", where);
        for (size_t i = 0; i < n; i++) {
            if (wk->idx[i] > (uint32_t)lf->max_def)
                return tc_pq_bad(x, "%s: definition level above the maximum", where);
            nn += wk->idx[i] < (uint32_t)lf->max_def;
        }
        if (v2 && nn != (size_t)h->num_nulls)
            return tc_pq_bad(x, "%s: num_nulls %d but levels say %zu", where, h->num_nulls, nn);
    }
    if (h->has_stats && (h->stats.set & TC_PQ_ST_NULL_COUNT) && h->stats.null_count != (int64_t)nn)
        return tc_pq_bad(x, "%s: statistics null_count %lld but levels say %zu", where,
                         (long long)h->stats.null_count, nn);
    *nulls += (int64_t)nn;
    data += pos;
    len -= pos;
    switch (h->encoding) {
    case TC_PQF_ENC_PLAIN:
        return tc_pq_check_plain(x, lf->type, data, len, n - nn, where);
    case TC_PQF_ENC_PLAIN_DICTIONARY:
    case TC_PQF_ENC_RLE_DICTIONARY: {
        if (dict_entries < 0)
            return tc_pq_bad(x, "%s: dictionary-encoded page without a dictionary page", where);
        if (n - nn == 0)
            return 0;
        if (len < 1 || data[0] > TC_PQ_RLE_MAX_WIDTH)
            return tc_pq_bad(x, "%s: bad dictionary index bit width", where);
        if (tc_pq_walk_need(x, wk, n - nn) != 0)
            return -1;
        if (tc_pq_rle_decode_u32(data + 1, len - 1, data[0], wk->idx, n - nn) < 0)
            return tc_pq_bad(x, "%s: dictionary indices do not decode", where);
        for (size_t i = 0; i < n - nn; i++)
            if ((int64_t)wk->idx[i] >= dict_entries)
                return tc_pq_bad(x, "%s: dictionary index %u out of %lld entries", where,
                                 wk->idx[i], (long long)dict_entries);
        return 0;
    }
    default:
        return 0; /* other encodings are legal, just not decoded here */
    }
}

static int tc_pq_walk_chunk(tc_pq_ctx *x, tc_pq_walk *wk, unsigned flags, size_t rgi, size_t ci,
                            const tc_parquet_leaf_info *lf, tc_parquet_chunk_info *ck,
                            uint64_t data_end)
{
    uint64_t start, end, pos;
    int64_t values = 0, nulls = 0, unc = 0;
    char where[96];
    int deep = (flags & TC_PQ_VERIFY_DEEP) == TC_PQ_VERIFY_DEEP;

    snprintf(where, sizeof(where), "row group %zu column %zu", rgi, ci);
    start = ck->dictionary_page_offset >= 0 ? (uint64_t)ck->dictionary_page_offset
                                            : (uint64_t)ck->data_page_offset;
    end = start + (uint64_t)ck->total_compressed_size;
    pos = start;
    while (pos < end) {
        tc_parquet_page_header h;
        tc_thrift_reader r;
        size_t window = TC_PQ_HEADER_WINDOW, hlen = 0;
        const uint8_t *p;
        uint32_t ordinal;
        int is_dict;
        char pwhere[160];

        snprintf(pwhere, sizeof(pwhere), "%s page at offset %llu", where, (unsigned long long)pos);
        is_dict = pos == start && ck->dictionary_page_offset >= 0;
        ordinal = ck->data_pages;
        if (ck->crypt_slot >= 0) {
            /* An encrypted header is a module: its length prefix says how much to read. */
            char msg[TC_ERRSTR_MAX];
            size_t mlen = end - pos < 4 ? 0 : 4;
            p = mlen ? tc_pq_src_get(wk->src, pos, 4) : NULL;
            if (p) {
                uint64_t n = tc_pq_module_len(p, 4);
                mlen =
                    n <= end - pos && n <= TC_PQ_PAGE_HEADER_MAX ? (size_t)n : (size_t)(end - pos);
                p = tc_pq_src_get(wk->src, pos, mlen);
            }
            if (!p)
                return tc_pq_bad(x, "%s: encrypted page header runs past the chunk", pwhere);
            tc_err e = tc_parquet_chunk_page_header(x->info, ck, rgi, ci, is_dict, ordinal, p, mlen,
                                                    &h, &hlen, &wk->hdr, msg, sizeof(msg));
            if (e != TC_OK) {
                tc_pq_bad(x, "%s: %s", pwhere, msg);
                x->err = e;
                return -1;
            }
        }
        /* Parse the header from a window that grows until it holds the whole header. */
        for (; ck->crypt_slot < 0;) {
            size_t avail = end - pos < window ? (size_t)(end - pos) : window;
            p = tc_pq_src_get(wk->src, pos, avail);
            if (!p) {
                x->err = TC_ERR_IO;
                tc_err_set(TC_ERR_IO, x->errstr, x->errstr_size, "%s: read: %s", pwhere,
                           strerror(errno));
                return -1;
            }
            tc_thrift_reader_init(&r, p, avail);
            if (tc_pq_parse_ph(&r, &h) == 0)
                break;
            if (avail == end - pos || window >= TC_PQ_PAGE_HEADER_MAX)
                return tc_pq_bad(x, "%s: page header: %s at byte %zu", pwhere,
                                 r.err ? r.err : "corrupt", r.err_at);
            window *= 2;
            hlen = 0;
        }
        if (ck->crypt_slot < 0)
            hlen = tc_thrift_reader_pos(&r);
        if ((uint64_t)h.compressed_size > end - pos - hlen)
            return tc_pq_bad(x, "%s: page (%d bytes) runs past the column chunk", pwhere,
                             h.compressed_size);
        x->info->pages++;
        unc += (int64_t)hlen + h.uncompressed_size;
        if (h.type == TC_PQF_DICTIONARY_PAGE) {
            if (pos != start || ck->dict_pages > 0 || ck->data_pages > 0)
                return tc_pq_bad(x, "%s: dictionary page is not the first page", pwhere);
            if (ck->dictionary_page_offset < 0 && start != (uint64_t)ck->data_page_offset)
                return tc_pq_bad(x, "%s: dictionary page without dictionary_page_offset", pwhere);
            ck->dict_pages++;
            ck->dict_entries = h.num_values;
        } else if (h.type == TC_PQF_DATA_PAGE || h.type == TC_PQF_DATA_PAGE_V2) {
            if (ck->data_pages == 0 && pos != (uint64_t)ck->data_page_offset)
                return tc_pq_bad(x, "%s: first data page is not at data_page_offset %lld", pwhere,
                                 (long long)ck->data_page_offset);
            ck->data_pages++;
            values += h.num_values;
        }
        if (deep && (h.type == TC_PQF_DICTIONARY_PAGE || h.type == TC_PQF_DATA_PAGE ||
                     h.type == TC_PQF_DATA_PAGE_V2)) {
            const uint8_t *body;
            size_t clen = (size_t)h.compressed_size, ulen = (size_t)h.uncompressed_size;
            size_t lvl = 0;
            if (ulen > TC_PQ_VERIFY_PAGE_MAX || clen > TC_PQ_VERIFY_PAGE_MAX)
                return tc_pq_bad(x, "%s: page too large to verify", pwhere);
            body = tc_pq_src_get(wk->src, pos + hlen, clen);
            if (!body) {
                x->err = TC_ERR_IO;
                tc_err_set(TC_ERR_IO, x->errstr, x->errstr_size, "%s: read: %s", pwhere,
                           strerror(errno));
                return -1;
            }
            if (ck->crypt_slot >= 0) {
                char msg[TC_ERRSTR_MAX];
                tc_err e =
                    tc_parquet_chunk_page_body(x->info, ck, rgi, ci, is_dict, ordinal, body, clen,
                                               &wk->body, &body, &clen, msg, sizeof(msg));
                if (e != TC_OK) {
                    tc_pq_bad(x, "%s: %s", pwhere, msg);
                    x->err = e;
                    return -1;
                }
            }
            if (h.type == TC_PQF_DATA_PAGE_V2)
                lvl = (size_t)h.def_len + (size_t)h.rep_len; /* levels are never compressed */
            if (codec_ok_for_deep(ck->codec) &&
                tc_pq_decompress_check((h.type == TC_PQF_DATA_PAGE_V2 && !h.is_compressed)
                                           ? TC_PQ_CODEC_UNCOMPRESSED
                                           : ck->codec,
                                       body + lvl, clen - lvl, ulen - lvl) != 0)
                return tc_pq_bad(x, "%s: page does not decompress to its %zu bytes (size prefix)",
                                 pwhere, ulen);
            tc_pq_buf_clear(&wk->plain);
            if (tc_pq_buf_reserve(&wk->plain, ulen + 1) != 0)
                return tc_pq_bad(x, "%s: out of memory", pwhere);
            memcpy(wk->plain.data, body, lvl);
            int codec = (h.type == TC_PQF_DATA_PAGE_V2 && !h.is_compressed)
                            ? TC_PQ_CODEC_UNCOMPRESSED
                            : ck->codec;
            if (codec != TC_PQ_CODEC_UNCOMPRESSED && codec != TC_PQ_CODEC_SNAPPY &&
                codec != TC_PQ_CODEC_ZSTD)
                return tc_pq_bad(x, "%s: codec %d is not supported by deep verification", pwhere,
                                 codec);
            if (tc_pq_decompress(codec, body + lvl, clen - lvl, wk->plain.data + lvl, ulen - lvl) !=
                0)
                return tc_pq_bad(x, "%s: page does not decompress to its %zu bytes (codec %d)",
                                 pwhere, ulen, codec);
            if (h.type == TC_PQF_DICTIONARY_PAGE) {
                if (h.encoding == TC_PQF_ENC_PLAIN || h.encoding == TC_PQF_ENC_PLAIN_DICTIONARY)
                    if (tc_pq_check_plain(x, lf->type, wk->plain.data, ulen, (size_t)h.num_values,
                                          pwhere) != 0)
                        return -1;
            } else if (tc_pq_check_data_page(x, wk, lf, &h, wk->plain.data + h.rep_len,
                                             (size_t)h.def_len, wk->plain.data + lvl, ulen - lvl,
                                             ck->dict_entries, &nulls, pwhere) != 0) {
                return -1;
            }
        }
        pos += hlen + (uint64_t)h.compressed_size;
    }
    if (pos != end)
        return tc_pq_bad(x, "%s: pages do not end at the chunk's end", where);
    if (ck->data_pages == 0)
        return tc_pq_bad(x, "%s: column chunk has no data page", where);
    if (values != ck->num_values)
        return tc_pq_bad(x, "%s: data pages hold %lld values, metadata says %lld", where,
                         (long long)values, (long long)ck->num_values);
    if (unc != ck->total_uncompressed_size)
        return tc_pq_bad(x, "%s: pages take %lld bytes uncompressed, metadata says %lld", where,
                         (long long)unc, (long long)ck->total_uncompressed_size);
    if (deep && lf->max_rep == 0) {
        ck->nulls_counted = nulls;
        if (ck->has_stats && (ck->stats.set & TC_PQ_ST_NULL_COUNT) && ck->stats.null_count != nulls)
            return tc_pq_bad(x, "%s: statistics null_count %lld but levels say %lld", where,
                             (long long)ck->stats.null_count, (long long)nulls);
    }
    (void)data_end;
    return 0;
}

/* Semantic checks of the footer against the file (and, with flags, the pages). */
static int tc_pq_verify_meta(tc_pq_ctx *x, tc_pq_src *src, unsigned flags, uint64_t data_end)
{
    tc_parquet_info *info = x->info;
    tc_pq_walk wk;
    int64_t rows = 0;
    int rc = 0;

    if (tc_pq_walk_schema(x) != 0)
        return -1;
    if (info->num_rows < 0)
        return tc_pq_bad(x, "negative num_rows");
    memset(&wk, 0, sizeof(wk));
    wk.src = src;
    tc_pq_buf_init(&wk.body, TC_PQ_VERIFY_PAGE_MAX + 1);
    tc_pq_buf_init(&wk.hdr, TC_PQ_PAGE_HEADER_MAX + 1);
    tc_pq_buf_init(&wk.plain, TC_PQ_VERIFY_PAGE_MAX + 1);
    for (size_t g = 0; g < info->nrg && rc == 0; g++) {
        tc_parquet_rg_info *rg = &info->rgs[g];
        if (rg->num_rows < 0 || rg->total_byte_size < 0) {
            rc = tc_pq_bad(x, "row group %zu: negative num_rows or total_byte_size", g);
            break;
        }
        if (rg->num_rows > INT64_MAX - rows) {
            rc = tc_pq_bad(x, "row counts overflow");
            break;
        }
        rows += rg->num_rows;
        if (rg->ncols != info->nleaves) {
            rc = tc_pq_bad(x, "row group %zu has %zu columns, the schema %zu leaves", g, rg->ncols,
                           info->nleaves);
            break;
        }
        for (size_t c = 0; c < rg->ncols && rc == 0; c++) {
            tc_parquet_chunk_info *ck = &rg->cols[c];
            const tc_parquet_leaf_info *lf = &info->leaves[c];
            int ok_path = ck->path_len == lf->path_len;
            for (size_t k = 0; ok_path && k < lf->path_len; k++)
                ok_path = tc_pq_view_eq(ck->path[k], lf->path[k]);
            if (ck->type != lf->type)
                rc = tc_pq_bad(x, "row group %zu column %zu: type %d, schema says %d", g, c,
                               ck->type, lf->type);
            else if (!ok_path)
                rc = tc_pq_bad(x, "row group %zu column %zu: path_in_schema differs from schema", g,
                               c);
            else if (ck->num_values < 0 || ck->total_compressed_size < 0 ||
                     ck->total_uncompressed_size < 0)
                rc = tc_pq_bad(x, "row group %zu column %zu: negative count or size", g, c);
            else if (lf->max_rep == 0 && ck->num_values != rg->num_rows)
                rc = tc_pq_bad(x, "row group %zu column %zu: %lld values in %lld rows", g, c,
                               (long long)ck->num_values, (long long)rg->num_rows);
            else if (ck->has_stats && (ck->stats.set & TC_PQ_ST_NULL_COUNT) &&
                     (ck->stats.null_count < 0 || ck->stats.null_count > ck->num_values))
                rc = tc_pq_bad(x, "row group %zu column %zu: null_count out of range", g, c);
            if (rc)
                break;
            /* Some old writers put 0 in dictionary_page_offset for "none": offset 0 is the magic,
             * never a page, so it means the same as unset. */
            if (ck->dictionary_page_offset == 0)
                ck->dictionary_page_offset = -1;
            int64_t start =
                ck->dictionary_page_offset >= 0 ? ck->dictionary_page_offset : ck->data_page_offset;
            if (ck->dictionary_page_offset >= 0 &&
                ck->dictionary_page_offset >= ck->data_page_offset)
                rc = tc_pq_bad(x, "row group %zu column %zu: dictionary page after data pages", g,
                               c);
            else if (start < TC_PQF_MAGIC_LEN || (uint64_t)start > data_end ||
                     (uint64_t)ck->total_compressed_size > data_end - (uint64_t)start)
                rc = tc_pq_bad(x, "row group %zu column %zu: chunk [%lld, +%lld) outside the data",
                               g, c, (long long)start, (long long)ck->total_compressed_size);
            else if (ck->data_page_offset - start >= ck->total_compressed_size)
                rc = tc_pq_bad(x, "row group %zu column %zu: data_page_offset outside the chunk", g,
                               c);
            else if (flags & TC_PQ_VERIFY_PAGES)
                rc = tc_pq_walk_chunk(x, &wk, flags, g, c, lf, ck, data_end);
        }
    }
    if (rc == 0 && rows != info->num_rows)
        rc = tc_pq_bad(x, "row groups hold %lld rows, num_rows says %lld", (long long)rows,
                       (long long)info->num_rows);
    tc_pq_buf_free(&wk.body);
    tc_pq_buf_free(&wk.hdr);
    tc_pq_buf_free(&wk.plain);
    free(wk.idx);
    return rc;
}

/* ---- entry points ---- */

static tc_parquet_info *tc_pq_info_new(const uint8_t *footer, size_t len)
{
    tc_parquet_info *info = calloc(1, sizeof(*info));

    if (!info)
        return NULL;
    info->footer = malloc(len ? len : 1);
    if (!info->footer) {
        free(info);
        return NULL;
    }
    if (len)
        memcpy(info->footer, footer, len);
    info->footer_len = (uint32_t)len;
    tc_arena_init(&info->arena, TC_PQ_ARENA_BLOCK,
                  TC_PQ_ARENA_BLOCK + (size_t)TC_PQ_ARENA_FACTOR * len);
    return info;
}

void tc_parquet_info_free(tc_parquet_info *info)
{
    if (!info)
        return;
    tc_arena_free(&info->arena);
    tc_pq_fcrypt_destroy(info->fc);
    free(info->footer);
    free(info);
}

/* Parse the footer bytes into a new info; on failure the error is in x. */
static tc_parquet_info *tc_pq_parse(tc_pq_ctx *x, const uint8_t *footer, size_t len,
                                    tc_pq_fcrypt *fc)
{
    tc_thrift_reader r;
    tc_parquet_info *info = tc_pq_info_new(footer, len);

    if (!info) {
        tc_pq_fcrypt_destroy(fc);
        x->err = tc_err_set(TC_ERR_NOMEM, x->errstr, x->errstr_size, "parquet: out of memory");
        return NULL;
    }
    info->fc = fc; /* owned from here on, also on failure */
    x->info = info;
    tc_thrift_reader_init(&r, info->footer, len);
    if (tc_pq_parse_file_meta(x, &r) != 0) {
        if (x->err == TC_OK)
            tc_pq_bad(x, "footer: %s at byte %zu", r.err ? r.err : "corrupt", r.err_at);
        tc_parquet_info_free(info);
        x->info = NULL;
        return NULL;
    }
    return info;
}

tc_err tc_parquet_parse_footer(const void *footer, size_t len, tc_parquet_info **out, char *errstr,
                               size_t errstr_size)
{
    tc_pq_ctx x = {.errstr = errstr, .errstr_size = errstr_size, .err = TC_OK};
    tc_parquet_info *info;

    if (len > TC_PQ_FOOTER_MAX)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "footer too large");
    info = tc_pq_parse(&x, footer, len, NULL);
    if (!info)
        return x.err;
    if (tc_pq_walk_schema(&x) != 0) {
        tc_parquet_info_free(info);
        return x.err;
    }
    if (out)
        *out = info;
    else
        tc_parquet_info_free(info);
    return TC_OK;
}

/* Encrypted footer mode: FileCryptoMetaData, then the FileMetaData as a module. */
static tc_parquet_info *tc_pq_parse_encrypted(tc_pq_ctx *x, const uint8_t *footer, size_t len)
{
    tc_pq_fcrypt *fc;
    tc_parquet_info *info;
    tc_pq_buf plain;
    size_t clen = 0;

    fc = tc_pq_fcrypt_from_footer(footer, len, &clen, &x->err, x->errstr, x->errstr_size);
    if (!fc)
        return NULL;
    tc_pq_buf_init(&plain, TC_PQ_FOOTER_MAX + 1);
    x->err = tc_pq_fcrypt_open(fc, TC_PQC_KEY_FOOTER, TC_PQC_FOOTER, -1, -1, -1, footer + clen,
                               len - clen, &plain, x->errstr, x->errstr_size);
    if (x->err != TC_OK) {
        tc_pq_fcrypt_destroy(fc);
        tc_pq_buf_free(&plain);
        return NULL;
    }
    info = tc_pq_parse(x, plain.data ? plain.data : (const uint8_t *)"", plain.len, fc);
    tc_pq_buf_free(&plain);
    return info;
}

static tc_err tc_pq_verify_src(tc_pq_src *src, unsigned flags, tc_parquet_info **out, char *errstr,
                               size_t errstr_size)
{
    tc_pq_ctx x = {.errstr = errstr, .errstr_size = errstr_size, .err = TC_OK};
    const uint8_t *p;
    uint8_t head[4], tail[8];
    uint32_t flen;
    uint64_t data_end;
    tc_parquet_info *info;
    int encrypted;

    if (out)
        *out = NULL;
    if (src->size < TC_PQF_MIN_FILE)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "not a Parquet file: %llu bytes is too short",
                          (unsigned long long)src->size);
    if (!(p = tc_pq_src_get(src, 0, 4)))
        goto io;
    memcpy(head, p, 4);
    if (!(p = tc_pq_src_get(src, src->size - 8, 8)))
        goto io;
    memcpy(tail, p, 8);
    encrypted = memcmp(head, TC_PQC_MAGIC, 4) == 0;
    if (!encrypted && memcmp(head, TC_PQF_MAGIC, 4) != 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "not a Parquet file: bad magic");
    if (memcmp(tail + 4, encrypted ? TC_PQC_MAGIC : TC_PQF_MAGIC, 4) != 0) {
        if (encrypted || memcmp(tail + 4, TC_PQC_MAGIC, 4) == 0)
            return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                              "bad trailing magic: one end of the file has the encrypted-footer "
                              "magic PARE, the other not (truncated file?)");
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "bad trailing magic (truncated file?)");
    }
    flen = tc_pq_load_le32(tail);
    if (flen == 0 || flen > src->size - TC_PQF_MIN_FILE || flen > TC_PQ_FOOTER_MAX)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "footer length %u does not fit the %llu-byte file", flen,
                          (unsigned long long)src->size);
    data_end = src->size - 8 - flen;
    if (!(p = tc_pq_src_get(src, data_end, flen)))
        goto io;
    if (encrypted)
        info = tc_pq_parse_encrypted(&x, p, flen);
    else
        info = tc_pq_parse(&x, p, flen, NULL);
    if (!info)
        return x.err;
    info->file_size = src->size;
    if (tc_pq_verify_meta(&x, src, flags, data_end) != 0) {
        tc_parquet_info_free(info);
        return x.err;
    }
    if (out)
        *out = info;
    else
        tc_parquet_info_free(info);
    return TC_OK;
io:
    return tc_err_set(TC_ERR_IO, errstr, errstr_size, "read: %s", strerror(errno));
}

tc_err tc_parquet_verify_buf(const void *data, size_t len, unsigned flags, tc_parquet_info **out,
                             char *errstr, size_t errstr_size)
{
    tc_pq_src src = {.mem = data, .fd = -1, .size = len};

    if (!data && len)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "no data");
    if (!data)
        src.mem = (const uint8_t *)"";
    tc_pq_buf_init(&src.scratch, 0);
    return tc_pq_verify_src(&src, flags, out, errstr, errstr_size);
}

tc_err tc_parquet_verify_fd(int fd, unsigned flags, tc_parquet_info **out, char *errstr,
                            size_t errstr_size)
{
    tc_pq_src src = {.mem = NULL, .fd = fd};
    struct stat st;
    tc_err err;

    if (fstat(fd, &st) != 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "stat: %s", strerror(errno));
    src.size = (uint64_t)st.st_size;
    tc_pq_buf_init(&src.scratch, 0);
    err = tc_pq_verify_src(&src, flags, out, errstr, errstr_size);
    tc_pq_buf_free(&src.scratch);
    return err;
}

tc_err tc_parquet_verify_path(const char *path, unsigned flags, tc_parquet_info **out, char *errstr,
                              size_t errstr_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    tc_err err;

    if (fd < 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "%s: %s", path, strerror(errno));
    err = tc_parquet_verify_fd(fd, flags, out, errstr, errstr_size);
    close(fd);
    return err;
}
