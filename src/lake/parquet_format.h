/*
 * parquet_format.h -- numbers from parquet.thrift (apache/parquet-format) that the writer and the
 * reader both use: physical types, annotations, encodings, page types, and the field ids of the
 * structs we read and write. Kept in one place so that writer and verifier cannot disagree.
 */
#ifndef TC_LAKE_PARQUET_FORMAT_H
#define TC_LAKE_PARQUET_FORMAT_H

/* The 4 magic bytes at both ends of a Parquet file. */
#define TC_PQF_MAGIC     "PAR1"
#define TC_PQF_MAGIC_LEN 4
/* Smallest possible file: magic, a footer length, magic (a footer cannot be empty, though). */
#define TC_PQF_MIN_FILE 12

/* enum Type */
enum {
    TC_PQF_BOOLEAN = 0,
    TC_PQF_INT32 = 1,
    TC_PQF_INT64 = 2,
    TC_PQF_INT96 = 3,
    TC_PQF_FLOAT = 4,
    TC_PQF_DOUBLE = 5,
    TC_PQF_BYTE_ARRAY = 6,
    TC_PQF_FIXED_LEN_BYTE_ARRAY = 7,
};

/* enum ConvertedType (the two we write) */
enum { TC_PQF_CT_UTF8 = 0, TC_PQF_CT_TIMESTAMP_MICROS = 10 };

/* enum FieldRepetitionType */
enum { TC_PQF_REQUIRED = 0, TC_PQF_OPTIONAL = 1, TC_PQF_REPEATED = 2 };

/* enum Encoding */
enum {
    TC_PQF_ENC_PLAIN = 0,
    TC_PQF_ENC_PLAIN_DICTIONARY = 2,
    TC_PQF_ENC_RLE = 3,
    TC_PQF_ENC_BIT_PACKED = 4,
    TC_PQF_ENC_RLE_DICTIONARY = 8,
};

/* enum PageType */
enum {
    TC_PQF_DATA_PAGE = 0,
    TC_PQF_INDEX_PAGE = 1,
    TC_PQF_DICTIONARY_PAGE = 2,
    TC_PQF_DATA_PAGE_V2 = 3,
};

/* union LogicalType field ids (the ones we write) and TimeUnit field ids. */
enum { TC_PQF_LT_STRING = 1, TC_PQF_LT_TIMESTAMP = 8 };
enum { TC_PQF_UNIT_MILLIS = 1, TC_PQF_UNIT_MICROS = 2, TC_PQF_UNIT_NANOS = 3 };

/* The FileMetaData.version we write: 2, as writers that use LogicalType annotations do. */
#define TC_PQF_FILE_VERSION 2

#endif
