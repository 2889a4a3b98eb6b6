/*
 * export.h -- an export of the lake: readings of a time range, filtered, masked by a profile,
 * written as Parquet, CSV or NDJSON files with a manifest, atomically.
 *
 * Reads the lake only (lake/layout.h, lake/parquet_values.h), never PostgreSQL: an export of last
 * year does not load the store. Pruning: only the day directories (Hive partitions) of the range
 * are listed, and a file, then a row group, whose time statistics lie outside the range is not
 * decoded. Memory: one input row group (the lake's lake.row_group_rows) and one output buffer
 * (output.h) at a time, whatever the range.
 *
 * Output: one file per day of the lake, `part-YYYY-MM-DD<ext>`, and `manifest.json` (docs/
 * exports.md): the parameters, the columns, every file with its rows, bytes and SHA-256, and the
 * lake files the export read (name, bytes, rows, Kafka partition and offsets), whose digest
 * (`lake_digest`) says later whether the period's data changed since (tc_export_lake_digest).
 *
 * Atomicity: everything is written into `<parent>/.<name>.tmp-<pid>`, each file fsynced, the
 * manifest last, the directory fsynced; then it takes the place of the output directory in one
 * rename (an existing one -- only an earlier export, with its manifest, or an empty directory;
 * anything else is refused -- is swapped out with renameat2(RENAME_EXCHANGE) and removed). A crash
 * at any point leaves the old export or the new one whole, and at most a temporary directory, which
 * the next export to the same place removes.
 */
#ifndef TC_EXPORT_EXPORT_H
#define TC_EXPORT_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/mask.h"
#include "export/output.h"

/* --tags k=v filters of one export. */
#define TC_EXPORT_TAGS_MAX 16
/* A tag key or value, a metric name, a device glob. */
#define TC_EXPORT_TEXT_MAX 256
/* Lake files one export may read (a year of days with a few hundred files each). */
#define TC_EXPORT_LAKE_FILES_MAX ((size_t)1 << 20) /* ~0.5 KiB each */
/* The manifest's size bound. */
#define TC_EXPORT_MANIFEST_MAX ((size_t)256 << 20)

typedef struct tc_export_options {
    const char *lake_dir;
    int64_t from_us, to_us; /* [from, to) */
    const char *devices;    /* fnmatch(3) glob of device ids, or NULL: all */
    size_t ntags;           /* readings whose tags hold every tag_key = tag_value */
    const char *tag_key[TC_EXPORT_TAGS_MAX];
    const char *tag_value[TC_EXPORT_TAGS_MAX];
    const char *metrics; /* comma-separated metric columns, or NULL: every metric of the range */
    tc_export_format format;
    tc_export_compress compress;
    const char *profile;          /* its name, for the manifest ("full", "public") */
    tc_mask_level mask;           /* what the profile sees of personal columns */
    const char *personal_columns; /* api.personal_columns */
    int personal_digits;          /* api.personal_digits */
    const char *out_dir;          /* replaced atomically */
    const char *schedule;         /* the scheduled export's name and period, for the manifest */
    const char *period;
} tc_export_options;

typedef struct tc_export_result {
    uint64_t rows, files, bytes, lake_files, lake_rows_read;
    char lake_digest[65];
} tc_export_result;

/* The profiles' names and their level: "full" (TC_MASK_FULL: what thermocline_analyst sees) and
 * "public" (what thermocline_viewer sees: `viewer_level`, from api.personal_viewer). -1 for an
 * unknown name. */
int tc_export_profile_level(const char *name, tc_mask_level viewer_level);
#define TC_EXPORT_PROFILES "full|public"

/* Run the export. */
tc_err tc_export_run(const tc_export_options *o, tc_export_result *res, char *errstr,
                     size_t errstr_size);

/* The digest of the lake files an export of o's range would read (hex, 65 bytes), without
 * decoding any value: compare with a manifest's lake_digest to find a period whose data
 * changed. */
tc_err tc_export_lake_digest(const tc_export_options *o, char hex[65], char *errstr,
                             size_t errstr_size);

#endif
