/*
 * fuzz_parquet_footer.c -- libFuzzer target for the Parquet metadata reader behind `lake verify`.
 *
 * The input is tried three ways, so that mutations do not have to keep every frame intact to reach
 * the deeper parsers: as a whole file (magic, footer, every page header, pages decompressed and
 * decoded: TC_PQ_VERIFY_DEEP), as a bare FileMetaData footer, and as a bare PageHeader. Any crash,
 * sanitizer report, leak or over-read is a finding; errors are the expected outcome for most
 * inputs. Seeds: tests/fuzz/corpus/parquet_footer/ (tiny valid files from tc_parquet_gen).
 */
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "lake/parquet_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[TC_ERRSTR_MAX];
    tc_parquet_info *info = NULL;
    tc_parquet_page_header h;
    size_t used;

    if (tc_parquet_verify_buf(data, size, TC_PQ_VERIFY_DEEP, &info, err, sizeof(err)) == TC_OK)
        tc_parquet_info_free(info);
    info = NULL;
    if (tc_parquet_parse_footer(data, size, &info, err, sizeof(err)) == TC_OK)
        tc_parquet_info_free(info);
    (void)tc_parquet_parse_page_header(data, size, &h, &used, err, sizeof(err));
    return 0;
}
