/*
 * parquet_pages.c -- page headers: the PageHeader and Statistics parsers, and the reading of page
 * headers and pages of encrypted column chunks (modules decrypted, then parsed), shared by the
 * verifier (parquet_read.c) and the values reader (parquet_values.c); see parquet_read.h.
 */
#include <stdint.h>
#include <string.h>

#include "lake/parquet_crypt.h"
#include "lake/parquet_format.h"
#include "lake/parquet_read.h"
#include "lake/parquet_read_thrift.h"

int tc_pq_parse_stats(tc_thrift_reader *r, tc_parquet_stats_info *st)
{
    int16_t last = 0, id;
    uint8_t t;
    int rc;

    memset(st, 0, sizeof(*st));
    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok;
        switch (id) {
        case 1:
            ok = tc_pq_read_view(r, t, &st->max);
            st->set |= TC_PQ_ST_MAX;
            break;
        case 2:
            ok = tc_pq_read_view(r, t, &st->min);
            st->set |= TC_PQ_ST_MIN;
            break;
        case 3:
            ok = tc_pq_read_i64f(r, t, &st->null_count);
            st->set |= TC_PQ_ST_NULL_COUNT;
            break;
        case 4:
            ok = tc_pq_read_i64f(r, t, &st->distinct_count);
            st->set |= TC_PQ_ST_DISTINCT;
            break;
        case 5:
            ok = tc_pq_read_view(r, t, &st->max_value);
            st->set |= TC_PQ_ST_MAX_VALUE;
            break;
        case 6:
            ok = tc_pq_read_view(r, t, &st->min_value);
            st->set |= TC_PQ_ST_MIN_VALUE;
            break;
        case 7:
            ok = tc_thrift_expect(r, t, TC_THRIFT_BOOL_TRUE);
            st->max_exact = t == TC_THRIFT_BOOL_TRUE;
            st->set |= TC_PQ_ST_MAX_EXACT;
            break;
        case 8:
            ok = tc_thrift_expect(r, t, TC_THRIFT_BOOL_TRUE);
            st->min_exact = t == TC_THRIFT_BOOL_TRUE;
            st->set |= TC_PQ_ST_MIN_EXACT;
            break;
        case 9:
            ok = tc_pq_read_i64f(r, t, &st->nan_count);
            st->set |= TC_PQ_ST_NAN_COUNT;
            break;
        default:
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
    }
    return rc;
}

static int tc_pq_parse_dph(tc_thrift_reader *r, tc_parquet_page_header *h)
{
    int16_t last = 0, id;
    uint8_t t;
    int rc, seen = 0;

    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok;
        switch (id) {
        case 1:
            ok = tc_pq_read_i32f(r, t, &h->num_values);
            seen |= 1;
            break;
        case 2:
            ok = tc_pq_read_i32f(r, t, &h->encoding);
            seen |= 2;
            break;
        case 3:
            ok = tc_pq_read_i32f(r, t, &h->def_encoding);
            seen |= 4;
            break;
        case 4:
            ok = tc_pq_read_i32f(r, t, &h->rep_encoding);
            seen |= 8;
            break;
        case 5:
            ok = tc_thrift_expect(r, t, TC_THRIFT_STRUCT);
            if (ok == 0)
                ok = tc_pq_parse_stats(r, &h->stats);
            h->has_stats = 1;
            break;
        default:
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
    }
    if (rc == 0 && seen != 15)
        return tc_thrift_reader_fail(r, "DataPageHeader misses a required field");
    return rc;
}

static int tc_pq_parse_dict_ph(tc_thrift_reader *r, tc_parquet_page_header *h)
{
    int16_t last = 0, id;
    uint8_t t;
    int rc, seen = 0;

    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok;
        if (id == 1) {
            ok = tc_pq_read_i32f(r, t, &h->num_values);
            seen |= 1;
        } else if (id == 2) {
            ok = tc_pq_read_i32f(r, t, &h->encoding);
            seen |= 2;
        } else {
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
    }
    if (rc == 0 && seen != 3)
        return tc_thrift_reader_fail(r, "DictionaryPageHeader misses a required field");
    return rc;
}

static int tc_pq_parse_dph2(tc_thrift_reader *r, tc_parquet_page_header *h)
{
    int16_t last = 0, id;
    uint8_t t;
    int rc, seen = 0;

    h->is_compressed = 1;
    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok;
        switch (id) {
        case 1:
            ok = tc_pq_read_i32f(r, t, &h->num_values);
            break;
        case 2:
            ok = tc_pq_read_i32f(r, t, &h->num_nulls);
            break;
        case 3:
            ok = tc_pq_read_i32f(r, t, &h->num_rows);
            break;
        case 4:
            ok = tc_pq_read_i32f(r, t, &h->encoding);
            break;
        case 5:
            ok = tc_pq_read_i32f(r, t, &h->def_len);
            break;
        case 6:
            ok = tc_pq_read_i32f(r, t, &h->rep_len);
            break;
        case 7:
            ok = tc_thrift_expect(r, t, TC_THRIFT_BOOL_TRUE);
            h->is_compressed = t == TC_THRIFT_BOOL_TRUE;
            break;
        case 8:
            ok = tc_thrift_expect(r, t, TC_THRIFT_STRUCT);
            if (ok == 0)
                ok = tc_pq_parse_stats(r, &h->stats);
            h->has_stats = 1;
            break;
        default:
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
        if (id >= 1 && id <= 6)
            seen |= 1 << id;
    }
    if (rc == 0 && seen != 0x7E)
        return tc_thrift_reader_fail(r, "DataPageHeaderV2 misses a required field");
    return rc;
}

int tc_pq_parse_ph(tc_thrift_reader *r, tc_parquet_page_header *h)
{
    int16_t last = 0, id;
    uint8_t t;
    int rc, seen = 0, sub = 0;

    memset(h, 0, sizeof(*h));
    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok;
        switch (id) {
        case 1:
            ok = tc_pq_read_i32f(r, t, &h->type);
            seen |= 1;
            break;
        case 2:
            ok = tc_pq_read_i32f(r, t, &h->uncompressed_size);
            seen |= 2;
            break;
        case 3:
            ok = tc_pq_read_i32f(r, t, &h->compressed_size);
            seen |= 4;
            break;
        case 5:
            ok = tc_thrift_expect(r, t, TC_THRIFT_STRUCT);
            if (ok == 0)
                ok = tc_pq_parse_dph(r, h);
            sub |= 1 << TC_PQF_DATA_PAGE;
            break;
        case 7:
            ok = tc_thrift_expect(r, t, TC_THRIFT_STRUCT);
            if (ok == 0)
                ok = tc_pq_parse_dict_ph(r, h);
            sub |= 1 << TC_PQF_DICTIONARY_PAGE;
            break;
        case 8:
            ok = tc_thrift_expect(r, t, TC_THRIFT_STRUCT);
            if (ok == 0)
                ok = tc_pq_parse_dph2(r, h);
            sub |= 1 << TC_PQF_DATA_PAGE_V2;
            break;
        default:
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
    }
    if (rc != 0)
        return rc;
    if (seen != 7)
        return tc_thrift_reader_fail(r, "PageHeader misses a required field");
    if (h->uncompressed_size < 0 || h->compressed_size < 0)
        return tc_thrift_reader_fail(r, "page header with a negative size");
    if (h->type == TC_PQF_DATA_PAGE || h->type == TC_PQF_DICTIONARY_PAGE ||
        h->type == TC_PQF_DATA_PAGE_V2) {
        if (sub != 1 << h->type)
            return tc_thrift_reader_fail(r, "page header's sub-header does not match its type");
        if (h->num_values < 0)
            return tc_thrift_reader_fail(r, "page header with a negative value count");
    }
    if (h->type == TC_PQF_DATA_PAGE_V2 &&
        (h->num_nulls < 0 || h->num_rows < 0 || h->def_len < 0 || h->rep_len < 0 ||
         h->num_nulls > h->num_values || (int64_t)h->def_len + h->rep_len > h->uncompressed_size ||
         (int64_t)h->def_len + h->rep_len > h->compressed_size))
        return tc_thrift_reader_fail(r, "inconsistent v2 page header");
    return 0;
}

tc_err tc_parquet_parse_page_header(const void *data, size_t len, tc_parquet_page_header *h,
                                    size_t *used, char *errstr, size_t errstr_size)
{
    tc_thrift_reader r;

    tc_thrift_reader_init(&r, data, len);
    if (tc_pq_parse_ph(&r, h) != 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "page header: %s at byte %zu",
                          r.err ? r.err : "corrupt", r.err_at);
    *used = tc_thrift_reader_pos(&r);
    return TC_OK;
}

/* The length of the module at p, checked against the bytes there are. */
static tc_err tc_pq_module_at(const uint8_t *p, size_t avail, size_t *len, char *errstr,
                              size_t errstr_size)
{
    uint64_t n = tc_pq_module_len(p, avail);

    if (n < TC_PQC_OVERHEAD || n > avail)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "encrypted module of %llu bytes does not fit the %zu bytes left",
                          (unsigned long long)n, avail);
    *len = (size_t)n;
    return TC_OK;
}

tc_err tc_parquet_chunk_page_header(const tc_parquet_info *info, const tc_parquet_chunk_info *ck,
                                    size_t g, size_t c, int is_dict, uint32_t ordinal,
                                    const uint8_t *p, size_t avail, tc_parquet_page_header *h,
                                    size_t *used, tc_pq_buf *scratch, char *errstr,
                                    size_t errstr_size)
{
    size_t mlen = 0, hlen = 0;
    tc_err err;

    if (ck->crypt_slot < 0 || !info->fc)
        return tc_parquet_parse_page_header(p, avail, h, used, errstr, errstr_size);
    if ((err = tc_pq_module_at(p, avail, &mlen, errstr, errstr_size)) != TC_OK)
        return err;
    err = tc_pq_fcrypt_open(info->fc, ck->crypt_slot,
                            is_dict ? TC_PQC_DICT_PAGE_HEADER : TC_PQC_DATA_PAGE_HEADER, (int)g,
                            (int)c, (int)ordinal, p, mlen, scratch, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    err = tc_parquet_parse_page_header(scratch->data, scratch->len, h, &hlen, errstr, errstr_size);
    if (err == TC_OK && hlen != scratch->len)
        err =
            tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                       "encrypted page header has %zu bytes after the header", scratch->len - hlen);
    *used = mlen;
    return err;
}

tc_err tc_parquet_chunk_page_body(const tc_parquet_info *info, const tc_parquet_chunk_info *ck,
                                  size_t g, size_t c, int is_dict, uint32_t ordinal,
                                  const uint8_t *p, size_t len, tc_pq_buf *out,
                                  const uint8_t **body, size_t *blen, char *errstr,
                                  size_t errstr_size)
{
    tc_err err;

    *body = p;
    *blen = len;
    if (ck->crypt_slot < 0 || !info->fc)
        return TC_OK;
    err = tc_pq_fcrypt_open(info->fc, ck->crypt_slot, is_dict ? TC_PQC_DICT_PAGE : TC_PQC_DATA_PAGE,
                            (int)g, (int)c, (int)ordinal, p, len, out, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    *body = out->data ? out->data : (const uint8_t *)"";
    *blen = out->len;
    return TC_OK;
}
