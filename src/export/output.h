/*
 * output.h -- one exported file: Parquet, CSV or NDJSON, optionally compressed, checksummed as it
 * is written.
 *
 * Rows arrive as columns (the shape the lake reader gives), a chunk at a time, and leave at once:
 * CSV and NDJSON are formatted into a text buffer of at most TC_EXPORT_TEXT_BUF bytes, which is
 * compressed (zstd or gzip, streaming) and written whenever it fills; Parquet goes through our
 * writer (lake/parquet.h) with row groups of TC_EXPORT_PQ_GROUP_ROWS rows. So a file of any size
 * holds one buffer, or one row group, in memory. Every byte written to the file also goes into a
 * SHA-256, so the manifest's checksum is the file's without reading it back.
 *
 * The columns of an export: time, device_id, the metrics chosen, tags, kafka_partition,
 * kafka_offset (these two are a reading's key in the lake). Text formats: time as RFC 3339 UTC
 * with microseconds, numbers in their shortest round-trip form, NULL as an empty CSV field or a
 * JSON null, tags as their JSON text (a string). CSV is RFC 4180 with a header line and CRLF.
 *
 * The file is written to an open descriptor the caller owns; the caller fsyncs and renames it
 * (the export's temporary directory, export.h).
 */
#ifndef TC_EXPORT_OUTPUT_H
#define TC_EXPORT_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/error.h"

/* Text formatted before it is compressed and written. */
#define TC_EXPORT_TEXT_BUF ((size_t)1 << 20)
/* Rows per row group of an exported Parquet file (the writer's memory bound with the bytes). */
#define TC_EXPORT_PQ_GROUP_ROWS ((size_t)1 << 17)
/* Metric columns an export may have. */
#define TC_EXPORT_METRICS_MAX 64

typedef enum tc_export_format {
    TC_EXPORT_PARQUET,
    TC_EXPORT_CSV,
    TC_EXPORT_NDJSON,
} tc_export_format;

typedef enum tc_export_compress {
    TC_EXPORT_NONE,
    TC_EXPORT_ZSTD,
    TC_EXPORT_GZIP,
} tc_export_compress;

/* "parquet", "csv", "ndjson"; the file extension with the compression's (".csv.gz"). */
const char *tc_export_format_name(tc_export_format f);
const char *tc_export_extension(tc_export_format f, tc_export_compress c);

/* A chunk of rows in columns; metric[k] NULL-free arrays with present[k] (NULL: all present). */
typedef struct tc_export_rows {
    size_t n;
    const int64_t *time_us;
    const tc_slice *device;
    const double *const *metric;
    const uint8_t *const *present;
    const tc_slice *tags; /* ptr NULL: NULL */
    const int32_t *partition;
    const int64_t *offset;
} tc_export_rows;

typedef struct tc_export_file tc_export_file;

/* A writer on fd for the metric columns names[0..nmetrics). NULL with errstr set on failure. */
tc_export_file *tc_export_file_new(int fd, tc_export_format f, tc_export_compress c,
                                   const char *const *names, size_t nmetrics, char *errstr,
                                   size_t errstr_size);
tc_err tc_export_file_write(tc_export_file *w, const tc_export_rows *rows, char *errstr,
                            size_t errstr_size);
/* Flush, end the compression stream and the Parquet footer; hex receives the SHA-256 (65 bytes)
 * of every byte written, *bytes their count. */
tc_err tc_export_file_finish(tc_export_file *w, char hex[65], uint64_t *bytes, char *errstr,
                             size_t errstr_size);
void tc_export_file_destroy(tc_export_file *w);

#endif
