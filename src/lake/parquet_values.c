/*
 * parquet_values.c -- value reader for flat Parquet files; see parquet_values.h.
 *
 * Per row group and column: the column chunk is read into memory in one pread (its extent was
 * checked by the verifier at open), then walked page by page: header
 * (tc_parquet_parse_page_header), body decompressed into a page buffer, definition levels decoded
 * into the present bytes, values (PLAIN, or dictionary indices mapped through the chunk's
 * dictionary) scattered into the present slots. String bytes are copied into the reader's arena
 * once per page (or per dictionary) and the slices point into that copy.
 */
#include "lake/parquet_values.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "lake/parquet_buf.h"
#include "lake/parquet_encode.h"
#include "lake/parquet_format.h"

struct tc_parquet_reader {
    int fd;
    int own_fd;
    tc_parquet_info *info;
    size_t ncols;
    tc_parquet_column *cols;
    char **names;      /* the columns' names (owned) */
    int32_t *ptype;    /* physical type per column */
    int *max_def;      /* 0 or 1 */
    size_t *width;     /* bytes per value in the output array */
    void **vals;       /* output arrays, cap_rows entries each */
    uint8_t **present; /* OPTIONAL columns only */
    size_t cap_rows;
    tc_parquet_values *out;
    tc_arena arena; /* string bytes of the current row group */
    tc_pq_buf chunk, page;
    tc_pq_buf dec; /* a decrypted page or page header (encrypted files) */
    uint32_t *tmp; /* levels / indices */
    size_t tmp_cap;
    tc_slice *dict;            /* dictionary entries (BYTE_ARRAY) */
    const uint8_t *dict_fixed; /* dictionary values (fixed width), in the arena */
    size_t dict_cap, ndict;
    int has_dict;
};

static const char tc_pqv_empty[1] = "";

static size_t tc_pqv_width(tc_parquet_type t)
{
    switch (t) {
    case TC_PQ_BOOLEAN:
        return 1;
    case TC_PQ_INT32:
    case TC_PQ_FLOAT:
        return 4;
    case TC_PQ_STRING:
    case TC_PQ_BYTES:
        return sizeof(tc_slice);
    default:
        return 8;
    }
}

/* PLAIN size of one fixed-width value of a physical type (0 = BYTE_ARRAY, -1 = unsupported). */
static int tc_pqv_plain_width(int32_t ptype)
{
    switch (ptype) {
    case TC_PQF_INT32:
    case TC_PQF_FLOAT:
        return 4;
    case TC_PQF_INT64:
    case TC_PQF_DOUBLE:
        return 8;
    case TC_PQF_BYTE_ARRAY:
        return 0;
    default:
        return -1;
    }
}

static tc_err tc_pqv_schema(tc_parquet_reader *r, char *errstr, size_t n)
{
    const tc_parquet_info *info = r->info;

    r->ncols = info->nleaves;
    if (r->ncols == 0 || r->ncols > TC_PQ_COLUMNS_MAX)
        return tc_err_set(TC_ERR_INVALID, errstr, n, "unsupported schema: %zu columns", r->ncols);
    r->cols = calloc(r->ncols, sizeof(*r->cols));
    r->names = calloc(r->ncols, sizeof(*r->names));
    r->ptype = calloc(r->ncols, sizeof(*r->ptype));
    r->max_def = calloc(r->ncols, sizeof(*r->max_def));
    r->width = calloc(r->ncols, sizeof(*r->width));
    r->vals = calloc(r->ncols, sizeof(*r->vals));
    r->present = calloc(r->ncols, sizeof(*r->present));
    r->out = calloc(r->ncols, sizeof(*r->out));
    if (!r->cols || !r->names || !r->ptype || !r->max_def || !r->width || !r->vals || !r->present ||
        !r->out)
        return tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
    for (size_t c = 0; c < r->ncols; c++) {
        const tc_parquet_leaf_info *lf = &info->leaves[c];
        const tc_parquet_schema_info *se = &info->schema[lf->schema_index];
        char *name;
        tc_parquet_type t;

        if (lf->max_rep != 0 || lf->max_def > 1 || lf->path_len != 1)
            return tc_err_set(TC_ERR_INVALID, errstr, n,
                              "unsupported schema: column %zu is nested or repeated", c);
        if (lf->path[0].n == 0 || lf->path[0].n > TC_PQ_NAME_MAX)
            return tc_err_set(TC_ERR_INVALID, errstr, n, "column %zu: bad name length", c);
        switch (lf->type) {
        case TC_PQF_BOOLEAN:
            t = TC_PQ_BOOLEAN;
            break;
        case TC_PQF_INT32:
            t = TC_PQ_INT32;
            break;
        case TC_PQF_INT64:
            t = ((se->logical == TC_PQF_LT_TIMESTAMP && se->ts_unit == TC_PQF_UNIT_MICROS &&
                  se->ts_utc) ||
                 (se->logical < 0 && se->converted_type == TC_PQF_CT_TIMESTAMP_MICROS))
                    ? TC_PQ_TIMESTAMP_US
                    : TC_PQ_INT64;
            break;
        case TC_PQF_FLOAT:
            t = TC_PQ_FLOAT;
            break;
        case TC_PQF_DOUBLE:
            t = TC_PQ_DOUBLE;
            break;
        case TC_PQF_BYTE_ARRAY:
            t = (se->logical == TC_PQF_LT_STRING || se->converted_type == TC_PQF_CT_UTF8)
                    ? TC_PQ_STRING
                    : TC_PQ_BYTES;
            break;
        default:
            return tc_err_set(TC_ERR_INVALID, errstr, n,
                              "unsupported schema: column %zu has physical type %d", c, lf->type);
        }
        name = malloc(lf->path[0].n + 1);
        if (!name)
            return tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
        memcpy(name, lf->path[0].p, lf->path[0].n);
        name[lf->path[0].n] = '\0';
        r->names[c] = name;
        r->cols[c].name = name;
        r->cols[c].type = t;
        r->cols[c].optional = lf->max_def == 1;
        r->cols[c].dictionary = TC_PQ_DICT_AUTO;
        r->ptype[c] = lf->type;
        r->max_def[c] = lf->max_def;
        r->width[c] = tc_pqv_width(t);
    }
    return TC_OK;
}

tc_err tc_parquet_reader_open_fd(int fd, tc_parquet_reader **out, char *errstr, size_t errstr_size)
{
    tc_parquet_reader *r;
    tc_err err;

    *out = NULL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    r->fd = fd;
    tc_arena_init(&r->arena, (size_t)1 << 20, TC_PQ_VALUES_ARENA_MAX);
    tc_pq_buf_init(&r->chunk, TC_PQ_VALUES_CHUNK_MAX);
    tc_pq_buf_init(&r->page, TC_PQ_VERIFY_PAGE_MAX + 1);
    tc_pq_buf_init(&r->dec, TC_PQ_VERIFY_PAGE_MAX + 1);
    err = tc_parquet_verify_fd(fd, TC_PQ_VERIFY_PAGES, &r->info, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_pqv_schema(r, errstr, errstr_size);
    if (err != TC_OK) {
        tc_parquet_reader_close(r);
        return err;
    }
    *out = r;
    return TC_OK;
}

tc_err tc_parquet_reader_open_path(const char *path, tc_parquet_reader **out, char *errstr,
                                   size_t errstr_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    tc_err err;

    *out = NULL;
    if (fd < 0)
        return tc_err_set(TC_ERR_IO, errstr, errstr_size, "%s: %s", path, strerror(errno));
    err = tc_parquet_reader_open_fd(fd, out, errstr, errstr_size);
    if (err != TC_OK) {
        close(fd);
        return err;
    }
    (*out)->own_fd = 1;
    return TC_OK;
}

const tc_parquet_info *tc_parquet_reader_info(const tc_parquet_reader *r)
{
    return r->info;
}

const tc_parquet_column *tc_parquet_reader_columns(const tc_parquet_reader *r, size_t *ncols)
{
    *ncols = r->ncols;
    return r->cols;
}

size_t tc_parquet_reader_row_groups(const tc_parquet_reader *r)
{
    return r->info->nrg;
}

void tc_parquet_reader_close(tc_parquet_reader *r)
{
    if (!r)
        return;
    for (size_t c = 0; c < r->ncols; c++) {
        if (r->names)
            free(r->names[c]);
        if (r->vals)
            free(r->vals[c]);
        if (r->present)
            free(r->present[c]);
    }
    free(r->cols);
    free(r->names);
    free(r->ptype);
    free(r->max_def);
    free(r->width);
    free(r->vals);
    free(r->present);
    free(r->out);
    free(r->tmp);
    free(r->dict);
    tc_arena_free(&r->arena);
    tc_pq_buf_free(&r->chunk);
    tc_pq_buf_free(&r->page);
    tc_pq_buf_free(&r->dec);
    tc_parquet_info_free(r->info);
    if (r->own_fd)
        close(r->fd);
    free(r);
}

/* ---- decoding ---- */

typedef struct tc_pqv_col {
    tc_parquet_reader *r;
    size_t c, g;
    size_t row; /* rows filled so far */
    size_t nrows;
    char *errstr;
    size_t n;
} tc_pqv_col;

static tc_err tc_pqv_bad(tc_pqv_col *k, const char *what)
{
    return tc_err_set(TC_ERR_INVALID, k->errstr, k->n, "row group %zu column %zu (%s): %s", k->g,
                      k->c, k->r->cols[k->c].name, what);
}

static int tc_pqv_tmp(tc_parquet_reader *r, size_t n)
{
    if (n <= r->tmp_cap)
        return 0;
    uint32_t *p = realloc(r->tmp, n * sizeof(*p));
    if (!p)
        return -1;
    r->tmp = p;
    r->tmp_cap = n;
    return 0;
}

/* Copy n bytes into the arena (NULL on failure; a non-NULL pointer even for n = 0). */
static const uint8_t *tc_pqv_keep(tc_parquet_reader *r, const uint8_t *p, size_t n)
{
    uint8_t *q = tc_arena_alloc(&r->arena, n ? n : 1);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

/* The dictionary page's PLAIN values, kept in the arena. */
static tc_err tc_pqv_dict(tc_pqv_col *k, const uint8_t *data, size_t len, int32_t count)
{
    tc_parquet_reader *r = k->r;
    int w = tc_pqv_plain_width(r->ptype[k->c]);
    const uint8_t *kept;
    size_t cnt = (size_t)count;

    if (r->has_dict)
        return tc_pqv_bad(k, "second dictionary page");
    if (count < 0 || cnt > TC_PQ_VERIFY_VALUES_MAX || w < 0)
        return tc_pqv_bad(k, "bad dictionary page");
    if (!(kept = tc_pqv_keep(r, data, len)))
        return tc_err_set(TC_ERR_NOMEM, k->errstr, k->n, "out of memory (row group strings)");
    if (w > 0) {
        if (cnt * (size_t)w != len)
            return tc_pqv_bad(k, "dictionary page size does not match its entries");
        r->dict_fixed = kept;
    } else {
        size_t pos = 0;
        if (cnt > r->dict_cap) {
            tc_slice *d = realloc(r->dict, cnt * sizeof(*d));
            if (!d)
                return tc_err_set(TC_ERR_NOMEM, k->errstr, k->n, "out of memory");
            r->dict = d;
            r->dict_cap = cnt;
        }
        for (size_t i = 0; i < cnt; i++) {
            uint32_t l;
            if (len - pos < 4 || (l = tc_pq_load_le32(kept + pos)) > len - pos - 4)
                return tc_pqv_bad(k, "dictionary entry runs past the page");
            r->dict[i].ptr = l ? (const char *)kept + pos + 4 : tc_pqv_empty;
            r->dict[i].len = l;
            pos += 4 + (size_t)l;
        }
        if (pos != len)
            return tc_pqv_bad(k, "dictionary page has bytes after its entries");
    }
    r->ndict = cnt;
    r->has_dict = 1;
    return TC_OK;
}

/* Store value #j of the page's non-null values at row `row`. */
static void tc_pqv_put_fixed(tc_parquet_reader *r, size_t c, size_t row, const uint8_t *src)
{
    memcpy((uint8_t *)r->vals[c] + row * r->width[c], src, r->width[c]);
}

static tc_err tc_pqv_data(tc_pqv_col *k, const tc_parquet_page_header *h, const uint8_t *levels,
                          size_t levels_len, const uint8_t *data, size_t len)
{
    tc_parquet_reader *r = k->r;
    size_t c = k->c, nv, nn = 0, base = k->row;
    uint8_t *present = r->present[c];
    int w = tc_pqv_plain_width(r->ptype[c]);
    int v2 = h->type == TC_PQF_DATA_PAGE_V2;

    if (h->num_values < 0 || (size_t)h->num_values > k->nrows - k->row)
        return tc_pqv_bad(k, "data pages hold more values than the row group has rows");
    nv = (size_t)h->num_values;
    if (nv > TC_PQ_VERIFY_VALUES_MAX)
        return tc_pqv_bad(k, "page of too many values");
    if (v2 && h->rep_len != 0)
        return tc_pqv_bad(k, "repetition levels in a flat column");
    if (r->max_def[c] > 0) {
        const uint8_t *lv = levels;
        size_t lvlen = levels_len;
        if (!v2) {
            if (h->def_encoding != TC_PQF_ENC_RLE)
                return tc_pqv_bad(k, "definition levels not RLE-encoded (unsupported)");
            if (len < 4 || tc_pq_load_le32(data) > len - 4)
                return tc_pqv_bad(k, "definition levels run past the page");
            lvlen = tc_pq_load_le32(data);
            lv = data + 4;
            data += 4 + lvlen;
            len -= 4 + lvlen;
        }
        if (tc_pqv_tmp(r, nv ? nv : 1) != 0)
            return tc_err_set(TC_ERR_NOMEM, k->errstr, k->n, "out of memory");
        if (nv > 0 && tc_pq_rle_decode_u32(lv, lvlen, 1, r->tmp, nv) < 0)
            return tc_pqv_bad(k, "definition levels do not decode");
        for (size_t i = 0; i < nv; i++) {
            if (r->tmp[i] > 1)
                return tc_pqv_bad(k, "definition level above the maximum");
            present[base + i] = (uint8_t)r->tmp[i];
            nn += r->tmp[i] == 0;
        }
        if (v2 && nn != (size_t)h->num_nulls)
            return tc_pqv_bad(k, "num_nulls does not match the definition levels");
    }
    size_t nval = nv - nn;
    /* Slot of the j-th non-null value: walk the present bytes alongside. */
    size_t row = base, end = base + nv;
#define TC_PQV_NEXT_ROW()                                                                          \
    do {                                                                                           \
        while (present && row < end && !present[row]) {                                            \
            if (r->cols[c].type == TC_PQ_STRING || r->cols[c].type == TC_PQ_BYTES) {               \
                tc_slice z = {NULL, 0};                                                            \
                memcpy((uint8_t *)r->vals[c] + row * sizeof(tc_slice), &z, sizeof(z));             \
            } else {                                                                               \
                memset((uint8_t *)r->vals[c] + row * r->width[c], 0, r->width[c]);                 \
            }                                                                                      \
            row++;                                                                                 \
        }                                                                                          \
    } while (0)

    switch (h->encoding) {
    case TC_PQF_ENC_PLAIN:
        if (r->ptype[c] == TC_PQF_BOOLEAN) {
            if (len != (nval + 7) / 8)
                return tc_pqv_bad(k, "PLAIN booleans do not fill the page");
            for (size_t j = 0; j < nval; j++, row++) {
                TC_PQV_NEXT_ROW();
                ((uint8_t *)r->vals[c])[row] = (uint8_t)((data[j / 8] >> (j % 8)) & 1);
            }
        } else if (w > 0) {
            if (len != nval * (size_t)w)
                return tc_pqv_bad(k, "PLAIN values do not fill the page");
            for (size_t j = 0; j < nval; j++, row++) {
                TC_PQV_NEXT_ROW();
                tc_pqv_put_fixed(r, c, row, data + j * (size_t)w);
            }
        } else {
            const uint8_t *kept = tc_pqv_keep(r, data, len);
            size_t pos = 0;
            if (!kept)
                return tc_err_set(TC_ERR_NOMEM, k->errstr, k->n, "out of memory (strings)");
            for (size_t j = 0; j < nval; j++, row++) {
                uint32_t l;
                tc_slice s;
                TC_PQV_NEXT_ROW();
                if (len - pos < 4 || (l = tc_pq_load_le32(kept + pos)) > len - pos - 4)
                    return tc_pqv_bad(k, "PLAIN byte array runs past the page");
                s.ptr = l ? (const char *)kept + pos + 4 : tc_pqv_empty;
                s.len = l;
                memcpy((uint8_t *)r->vals[c] + row * sizeof(tc_slice), &s, sizeof(s));
                pos += 4 + (size_t)l;
            }
            if (pos != len)
                return tc_pqv_bad(k, "PLAIN values do not fill the page");
        }
        break;
    case TC_PQF_ENC_PLAIN_DICTIONARY:
    case TC_PQF_ENC_RLE_DICTIONARY:
        if (!r->has_dict)
            return tc_pqv_bad(k, "dictionary-encoded page without a dictionary page");
        if (r->ptype[c] == TC_PQF_BOOLEAN)
            return tc_pqv_bad(k, "dictionary-encoded booleans (unsupported)");
        if (nval == 0)
            break;
        if (len < 1 || data[0] > TC_PQ_RLE_MAX_WIDTH)
            return tc_pqv_bad(k, "bad dictionary index bit width");
        if (tc_pqv_tmp(r, nval) != 0)
            return tc_err_set(TC_ERR_NOMEM, k->errstr, k->n, "out of memory");
        if (tc_pq_rle_decode_u32(data + 1, len - 1, data[0], r->tmp, nval) < 0)
            return tc_pqv_bad(k, "dictionary indices do not decode");
        for (size_t j = 0; j < nval; j++, row++) {
            uint32_t ix = r->tmp[j];
            TC_PQV_NEXT_ROW();
            if (ix >= r->ndict)
                return tc_pqv_bad(k, "dictionary index out of range");
            if (w > 0)
                tc_pqv_put_fixed(r, c, row, r->dict_fixed + (size_t)ix * (size_t)w);
            else
                memcpy((uint8_t *)r->vals[c] + row * sizeof(tc_slice), &r->dict[ix],
                       sizeof(tc_slice));
        }
        break;
    default:
        return tc_pqv_bad(k, "unsupported value encoding");
    }
    TC_PQV_NEXT_ROW(); /* trailing nulls */
#undef TC_PQV_NEXT_ROW
    k->row = base + nv;
    return TC_OK;
}

/* Read the column chunk into memory and decode its pages. */
static tc_err tc_pqv_chunk(tc_pqv_col *k)
{
    tc_parquet_reader *r = k->r;
    const tc_parquet_chunk_info *ck = &r->info->rgs[k->g].cols[k->c];
    uint64_t start = ck->dictionary_page_offset >= 0 ? (uint64_t)ck->dictionary_page_offset
                                                     : (uint64_t)ck->data_page_offset;
    size_t size = (size_t)ck->total_compressed_size, got = 0, pos = 0;
    uint32_t ordinal = 0;
    int codec = ck->codec;
    tc_err err;

    if (codec != TC_PQ_CODEC_UNCOMPRESSED && codec != TC_PQ_CODEC_SNAPPY &&
        codec != TC_PQ_CODEC_ZSTD)
        return tc_pqv_bad(k, "unsupported codec");
    if ((uint64_t)ck->total_compressed_size > TC_PQ_VALUES_CHUNK_MAX)
        return tc_pqv_bad(k, "column chunk too large");
    tc_pq_buf_clear(&r->chunk);
    if (tc_pq_buf_reserve(&r->chunk, size ? size : 1) != 0)
        return tc_err_set(TC_ERR_NOMEM, k->errstr, k->n, "out of memory reading a column chunk");
    while (got < size) {
        ssize_t m = pread(r->fd, r->chunk.data + got, size - got, (off_t)(start + got));
        if (m < 0 && errno == EINTR)
            continue;
        if (m <= 0)
            return tc_err_set(TC_ERR_IO, k->errstr, k->n, "read: %s",
                              m < 0 ? strerror(errno) : "file shrank");
        got += (size_t)m;
    }
    r->has_dict = 0;
    r->ndict = 0;
    while (pos < size) {
        tc_parquet_page_header h;
        size_t used, clen, ulen, lvl = 0;
        const uint8_t *body;
        int pc, is_dict = pos == 0 && ck->dictionary_page_offset >= 0;

        /* Encrypted chunks: header and body are modules, decrypted here (AADs need the row
         * group, column and data page ordinals). */
        err = tc_parquet_chunk_page_header(r->info, ck, k->g, k->c, is_dict, ordinal,
                                           r->chunk.data + pos, size - pos, &h, &used, &r->dec,
                                           k->errstr, k->n);
        if (err != TC_OK)
            return err;
        clen = (size_t)h.compressed_size;
        if (clen > size - pos - used)
            return tc_pqv_bad(k, "page runs past the column chunk");
        body = r->chunk.data + pos + used;
        pos += used + clen;
        if (h.type != TC_PQF_DICTIONARY_PAGE && h.type != TC_PQF_DATA_PAGE &&
            h.type != TC_PQF_DATA_PAGE_V2)
            continue;
        err = tc_parquet_chunk_page_body(r->info, ck, k->g, k->c, is_dict, ordinal, body, clen,
                                         &r->dec, &body, &clen, k->errstr, k->n);
        if (err != TC_OK)
            return err;
        ordinal += h.type != TC_PQF_DICTIONARY_PAGE;
        ulen = (size_t)h.uncompressed_size;
        if (ulen > TC_PQ_VERIFY_PAGE_MAX)
            return tc_pqv_bad(k, "page too large");
        pc = codec;
        if (h.type == TC_PQF_DATA_PAGE_V2) {
            if (h.def_len < 0 || h.rep_len < 0)
                return tc_pqv_bad(k, "negative level length");
            lvl = (size_t)h.def_len + (size_t)h.rep_len;
            if (lvl > clen || lvl > ulen)
                return tc_pqv_bad(k, "levels larger than the page");
            if (!h.is_compressed)
                pc = TC_PQ_CODEC_UNCOMPRESSED;
        }
        if (tc_pq_decompress_check(pc, body + lvl, clen - lvl, ulen - lvl) != 0)
            return tc_pqv_bad(k, "page does not decompress to its size");
        tc_pq_buf_clear(&r->page);
        if (tc_pq_buf_reserve(&r->page, ulen + 1) != 0)
            return tc_err_set(TC_ERR_NOMEM, k->errstr, k->n, "out of memory");
        memcpy(r->page.data, body, lvl);
        if (tc_pq_decompress(pc, body + lvl, clen - lvl, r->page.data + lvl, ulen - lvl) != 0)
            return tc_pqv_bad(k, "page does not decompress");
        if (h.type == TC_PQF_DICTIONARY_PAGE) {
            if (k->row > 0)
                return tc_pqv_bad(k, "dictionary page after data pages");
            if (h.encoding != TC_PQF_ENC_PLAIN && h.encoding != TC_PQF_ENC_PLAIN_DICTIONARY)
                return tc_pqv_bad(k, "dictionary page not PLAIN");
            err = tc_pqv_dict(k, r->page.data, ulen, h.num_values);
        } else {
            err = tc_pqv_data(k, &h, r->page.data + h.rep_len, (size_t)h.def_len,
                              r->page.data + lvl, ulen - lvl);
        }
        if (err != TC_OK)
            return err;
    }
    if (k->row != k->nrows)
        return tc_pqv_bad(k, "data pages hold fewer values than the row group has rows");
    return TC_OK;
}

tc_err tc_parquet_reader_read(tc_parquet_reader *r, size_t g, const tc_parquet_values **cols,
                              size_t *nrows, char *errstr, size_t errstr_size)
{
    const tc_parquet_rg_info *rg;
    size_t rows;

    if (g >= r->info->nrg)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "no row group %zu", g);
    rg = &r->info->rgs[g];
    if (rg->num_rows < 0 || (uint64_t)rg->num_rows > TC_PQ_VALUES_ROWS_MAX)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "row group %zu: %lld rows is more than the reader takes", g,
                          (long long)rg->num_rows);
    rows = (size_t)rg->num_rows;
    tc_arena_reset(&r->arena);
    if (rows > r->cap_rows) {
        for (size_t c = 0; c < r->ncols; c++) {
            void *v = realloc(r->vals[c], rows * r->width[c]);
            if (!v)
                return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
            r->vals[c] = v;
            if (r->max_def[c] > 0) {
                uint8_t *p = realloc(r->present[c], rows);
                if (!p)
                    return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
                r->present[c] = p;
            }
        }
        r->cap_rows = rows;
    }
    for (size_t c = 0; c < r->ncols; c++) {
        tc_pqv_col k = {
            .r = r, .c = c, .g = g, .row = 0, .nrows = rows, .errstr = errstr, .n = errstr_size};
        tc_err err;
        if (rows == 0 && !r->vals[c]) {
            r->vals[c] = malloc(r->width[c]);
            if (!r->vals[c])
                return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        }
        if (rows == 0 && r->max_def[c] > 0 && !r->present[c]) {
            r->present[c] = malloc(1);
            if (!r->present[c])
                return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        }
        err = tc_pqv_chunk(&k);
        if (err != TC_OK)
            return err;
        r->out[c].values = r->vals[c];
        r->out[c].present = r->max_def[c] > 0 ? r->present[c] : NULL;
    }
    *cols = r->out;
    *nrows = rows;
    return TC_OK;
}
