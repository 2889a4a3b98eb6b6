/*
 * parquet_read_thrift.h -- what the footer parsers (parquet_read.c) and the page header parsers
 * (parquet_pages.c) share: typed field readers, the Statistics parser, the PageHeader parser.
 * Internal to src/lake: everything here reads untrusted bytes through a bounds-checked
 * tc_thrift_reader and returns 0 or -1 with the error recorded in the reader.
 */
#ifndef TC_LAKE_PARQUET_READ_THRIFT_H
#define TC_LAKE_PARQUET_READ_THRIFT_H

#include "lake/parquet_read.h"
#include "lake/thrift_compact.h"

#define TC_PQ_EXPECT(r, t, want)                                                                   \
    do {                                                                                           \
        if (tc_thrift_expect((r), (t), (want)) != 0)                                               \
            return -1;                                                                             \
    } while (0)

static inline int tc_pq_read_view(tc_thrift_reader *r, uint8_t t, tc_pq_view *v)
{
    TC_PQ_EXPECT(r, t, TC_THRIFT_BINARY);
    return tc_thrift_read_binary(r, &v->p, &v->n);
}

static inline int tc_pq_read_i32f(tc_thrift_reader *r, uint8_t t, int32_t *v)
{
    TC_PQ_EXPECT(r, t, TC_THRIFT_I32);
    return tc_thrift_read_i32(r, v);
}

static inline int tc_pq_read_i64f(tc_thrift_reader *r, uint8_t t, int64_t *v)
{
    TC_PQ_EXPECT(r, t, TC_THRIFT_I64);
    return tc_thrift_read_i64(r, v);
}

/* A Statistics struct (r at its first field). */
int tc_pq_parse_stats(tc_thrift_reader *r, tc_parquet_stats_info *st);

/* A PageHeader struct (r at its first field). */
int tc_pq_parse_ph(tc_thrift_reader *r, tc_parquet_page_header *h);

#endif
