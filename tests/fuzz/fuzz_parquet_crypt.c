/*
 * fuzz_parquet_crypt.c -- libFuzzer target for the decryption path of the Parquet reader
 * (parquet_read.c with parquet_crypt.c): encrypted-footer files as `lake verify` reads them.
 *
 * Mutated ciphertext almost never authenticates, so the input is tried three ways to reach both
 * sides of the tag check:
 *   1. as a whole file, verified deep with the target's master keys installed: the PARE framing,
 *      FileCryptoMetaData, the KeyMaterial JSON of key_metadata, key unwrapping, module lengths,
 *      and (for unmutated modules) the decrypted footer, column metadata, page headers and pages;
 *   2. as the plaintext of a footer: sealed here with a real file's keys and framed as an
 *      encrypted-footer file, so the parsers behind a successful decryption see arbitrary bytes
 *      (encrypted_column_metadata and crypto_metadata included);
 *   3. as a page header module, raw and sealed, through tc_parquet_chunk_page_header.
 * Seeds: tests/fuzz/corpus/parquet_crypt/ -- small files of tc_parquet_gen --key-file with the
 * keys below (footer_key, column_key), and a few plain footers.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "lake/parquet_crypt.h"
#include "lake/parquet_read.h"

/* The corpus files were written with these master keys (base64 of 16 bytes each). */
#define FUZZ_KEYS                                                                                  \
    "footer_key: AAECAwQFBgcICQoLDA0ODw==\n"                                                       \
    "column_key: EBESExQVFhcYGRobHB0eHw==\n"

static tc_pq_crypt *crypt_policy;
static tc_pq_fcrypt *file_keys; /* a writer's keys: seals the footers of way 2 */

static void fuzz_init(void)
{
    char path[] = "/tmp/fuzz_parquet_crypt_XXXXXX", err[TC_ERRSTR_MAX];
    int fd = mkstemp(path);
    tc_pq_keyring *k;

    if (fd < 0 || write(fd, FUZZ_KEYS, strlen(FUZZ_KEYS)) != (ssize_t)strlen(FUZZ_KEYS))
        abort();
    close(fd);
    k = tc_pq_keyring_new(path, NULL, err, sizeof(err));
    unlink(path);
    crypt_policy =
        k ? tc_pq_crypt_new(k, "footer_key", "column_key", "c1,c3", err, sizeof(err)) : NULL;
    if (!crypt_policy || !(file_keys = tc_pq_fcrypt_new_write(crypt_policy, err, sizeof(err)))) {
        fprintf(stderr, "fuzz_parquet_crypt: %s\n", err);
        abort();
    }
    tc_pq_crypt_install(crypt_policy);
}

/* PARE | FileCryptoMetaData | footer module | length | PARE, around plaintext footer bytes. */
static void frame_footer(const uint8_t *footer, size_t n, tc_pq_buf *out)
{
    tc_thrift_writer tw;
    size_t aadlen, start;
    const uint8_t *aad = tc_pq_fcrypt_file_aad(file_keys, &aadlen);
    const char *meta = tc_pq_fcrypt_key_metadata(file_keys, TC_PQC_KEY_FOOTER);

    tc_pq_buf_clear(out);
    tc_pq_buf_put(out, TC_PQC_MAGIC, 4);
    start = out->len;
    tc_thrift_writer_init(&tw, out);
    tc_thrift_struct_begin(&tw);
    tc_thrift_field_struct_begin(&tw, 1);
    tc_thrift_field_struct_begin(&tw, 1);
    tc_thrift_field_binary(&tw, 2, aad, aadlen);
    tc_thrift_struct_end(&tw);
    tc_thrift_struct_end(&tw);
    tc_thrift_field_binary(&tw, 2, meta, strlen(meta));
    tc_thrift_struct_end(&tw);
    tc_pq_fcrypt_seal(file_keys, TC_PQC_KEY_FOOTER, TC_PQC_FOOTER, -1, -1, -1, footer, n, out);
    tc_pq_buf_put_le32(out, (uint32_t)(out->len - start));
    tc_pq_buf_put(out, TC_PQC_MAGIC, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tc_pq_buf buf, scratch;
    char err[TC_ERRSTR_MAX];
    tc_parquet_info *info = NULL;
    tc_parquet_page_header h;
    tc_parquet_chunk_info ck;
    tc_parquet_info fake;
    size_t used;

    if (!crypt_policy) {
        fuzz_init();
        tc_pq_buf_init(&buf, 0);
        tc_pq_buf_init(&scratch, 0);
    }
    /* 1 */
    if (tc_parquet_verify_buf(data, size, TC_PQ_VERIFY_DEEP, &info, err, sizeof(err)) == TC_OK)
        tc_parquet_info_free(info);
    /* 2 */
    frame_footer(data, size, &buf);
    info = NULL;
    if (!buf.failed && tc_parquet_verify_buf(buf.data, buf.len, TC_PQ_VERIFY_PAGES, &info, err,
                                             sizeof(err)) == TC_OK)
        tc_parquet_info_free(info);
    /* 3 */
    memset(&fake, 0, sizeof(fake));
    memset(&ck, 0, sizeof(ck));
    fake.fc = file_keys;
    ck.crypt_slot = TC_PQC_KEY_FOOTER;
    (void)tc_parquet_chunk_page_header(&fake, &ck, 0, 0, 0, 0, data, size, &h, &used, &scratch, err,
                                       sizeof(err));
    tc_pq_buf_clear(&buf);
    if (tc_pq_fcrypt_seal(file_keys, TC_PQC_KEY_FOOTER, TC_PQC_DATA_PAGE_HEADER, 0, 0, 0, data,
                          size, &buf) == 0)
        (void)tc_parquet_chunk_page_header(&fake, &ck, 0, 0, 0, 0, buf.data, buf.len, &h, &used,
                                           &scratch, err, sizeof(err));
    return 0;
}
