/*
 * parquet_crypt.h -- Parquet Modular Encryption (apache/parquet-format, Encryption.md) for the
 * lake's writer and reader: AES_GCM_V1, encrypted footer ("PARE"), every column encrypted, the
 * personal-data columns under a key of their own.
 *
 * Layers, bottom up:
 *   - Modules. Every encrypted piece of a file (footer, ColumnMetaData, page header, page) is one
 *     GCM module: length (4 bytes LE, = 12 + n + 16) | nonce (12) | ciphertext (n) | tag (16),
 *     sealed under an AAD = file AAD | module type (1 byte) | row group ordinal (i16 LE) | column
 *     ordinal (i16 LE) | page ordinal (i16 LE, data pages and their headers only). The file AAD is
 *     the per-file random aad_file_unique (no AAD prefix: our files never need one supplied).
 *     tc_pq_aad / tc_pq_gcm_seal / tc_pq_gcm_open are pure functions of their inputs, so unit
 *     tests can check them against the spec's layout and NIST's GCM vectors.
 *   - Keys. Master keys (key encryption keys) come from a key file or a command (the KMS hook),
 *     by key id; see tc_pq_keyring_new. They never touch a file: each file gets fresh random
 *     data keys (DEKs) -- one for the footer and the other columns, one for the personal-data
 *     columns -- and stores them wrapped (AES-GCM under the master key, AAD = the master key id,
 *     nonce | ciphertext | tag, base64) in key_metadata, as the KeyMaterial JSON that Parquet's
 *     key tools (parquet-java, Arrow's CryptoFactory) write with internal key material and single
 *     wrapping: {"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":...,
 *     "masterKeyID":...,"wrappedDEK":...,"doubleWrapping":false}. So any reader that holds the
 *     master keys -- pyarrow through a KmsClient whose unwrap_key does AES-GCM -- reads our files,
 *     and rotating a master key means rewriting only key_metadata-bearing footers, never data.
 *   - Policy. tc_pq_crypt says which master keys and which columns; it is process-wide
 *     (tc_pq_crypt_install), set once at start from the lake.encryption.* settings, because every
 *     reader of lake files (verify, compaction, replay, the values reader) and every writer (the
 *     sink, compaction) must use the same keys: tc_parquet_options_default picks it up for
 *     writers, the verifier for readers.
 *   - Per file: tc_pq_fcrypt, the data keys and file AAD of one file being written or read.
 *
 * Errors: TC_ERR_CONFIG for keys that cannot be had (missing id, bad base64, wrong length, a
 * command that fails), TC_ERR_INVALID for a module that does not authenticate (wrong key, or a
 * changed byte), TC_ERR_NOMEM. Messages name the key id, never a key.
 *
 * Thread safety: tc_pq_crypt and its keyring are read-only after tc_pq_crypt_new except for the
 * keyring's cache, guarded by a mutex; a tc_pq_fcrypt belongs to one thread.
 */
#ifndef TC_LAKE_PARQUET_CRYPT_H
#define TC_LAKE_PARQUET_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "lake/parquet_buf.h"
#include "lake/thrift_compact.h"

/* Module types of the AAD suffix (Encryption.md, section 4.4). */
enum {
    TC_PQC_FOOTER = 0,
    TC_PQC_COLUMN_META = 1,
    TC_PQC_DATA_PAGE = 2,
    TC_PQC_DICT_PAGE = 3,
    TC_PQC_DATA_PAGE_HEADER = 4,
    TC_PQC_DICT_PAGE_HEADER = 5,
};

#define TC_PQC_MAGIC        "PARE"
#define TC_PQC_NONCE        12
#define TC_PQC_TAG          16
#define TC_PQC_OVERHEAD     (4 + TC_PQC_NONCE + TC_PQC_TAG) /* bytes a module adds */
#define TC_PQC_FILE_AAD     8                               /* aad_file_unique we write */
#define TC_PQC_FILE_AAD_MAX 64                              /* ... and accept */
#define TC_PQC_AAD_MAX      (TC_PQC_FILE_AAD_MAX + 7)
#define TC_PQC_DEK          16   /* data key bytes (AES-128, Arrow's default) */
#define TC_PQC_KEY_MAX      32   /* AES-256 */
#define TC_PQC_ID_MAX       128  /* key id bytes */
#define TC_PQC_KEYS_MAX     256  /* master keys a keyring holds */
#define TC_PQC_META_MAX     1024 /* key_metadata bytes accepted */
#define TC_PQC_COLUMNS_MAX  64   /* personal-data column names */
#define TC_PQC_ORDINAL_MAX  32767

/* ---- modules ---- */

/* The AAD of a module: file_aad | type | rg | col | page (the ordinals the type takes; pass -1
 * for the ones it does not). Returns its length (at most TC_PQC_AAD_MAX). */
size_t tc_pq_aad(uint8_t *out, const uint8_t *file_aad, size_t file_aad_len, int type, int rg,
                 int col, int page);

/* Append the module of pt[0..n) sealed under key (16, 24 or 32 bytes) and aad to out. nonce: 12
 * bytes, or NULL for fresh random ones (always NULL outside tests). Returns 0, or -1 (out of
 * memory or an OpenSSL failure; out->failed is set for the former). */
int tc_pq_gcm_seal(const uint8_t *key, size_t keylen, const uint8_t *nonce, const uint8_t *aad,
                   size_t aadlen, const uint8_t *pt, size_t n, tc_pq_buf *out);

/* Open the module at m[0..len) (length prefix included; it must say exactly len - 4) into out
 * (cleared first). Returns TC_OK, or TC_ERR_INVALID with errstr naming `what` when the framing
 * is wrong or the tag does not verify. */
tc_err tc_pq_gcm_open(const uint8_t *key, size_t keylen, const uint8_t *m, size_t len,
                      const uint8_t *aad, size_t aadlen, tc_pq_buf *out, const char *what,
                      char *errstr, size_t errstr_size);

/* Length of the module starting at m (its 4-byte prefix + 4), or 0 if fewer than 4 bytes. */
uint64_t tc_pq_module_len(const uint8_t *m, size_t avail);

/* ---- master keys ---- */

typedef struct tc_pq_keyring tc_pq_keyring;

/* Master keys from key_file (lines "KEY_ID: BASE64", '#' comments; the file must not be
 * readable by group or others) or, if key_file is NULL or empty, from key_command, run as
 * `/bin/sh -c 'KEY_COMMAND "$1"' sh KEY_ID` on first use of each id; it must print the key in
 * base64 and exit 0. Keys are 16, 24 or 32 bytes. Both strings are copied. */
tc_pq_keyring *tc_pq_keyring_new(const char *key_file, const char *key_command, char *errstr,
                                 size_t errstr_size);
void tc_pq_keyring_destroy(tc_pq_keyring *k);

/* The key of id into key[TC_PQC_KEY_MAX]; *len its length. */
tc_err tc_pq_keyring_get(tc_pq_keyring *k, const char *id, uint8_t *key, size_t *len, char *errstr,
                         size_t errstr_size);

/* ---- policy ---- */

typedef struct tc_pq_crypt tc_pq_crypt;

/* Encrypt with footer_key_id (footer and ordinary columns) and column_key_id (the columns named in
 * columns, a comma-separated list). Takes ownership of keys (destroyed with the result, also on
 * failure). Checks that both master keys can be had. */
tc_pq_crypt *tc_pq_crypt_new(tc_pq_keyring *keys, const char *footer_key_id,
                             const char *column_key_id, const char *columns, char *errstr,
                             size_t errstr_size);
void tc_pq_crypt_destroy(tc_pq_crypt *c);

/* Make c the process's lake encryption (NULL: none). The caller keeps ownership and must keep c
 * alive while writers or readers may use it; the previous one is returned. */
const tc_pq_crypt *tc_pq_crypt_install(const tc_pq_crypt *c);
const tc_pq_crypt *tc_pq_crypt_installed(void);

/* ---- per file ---- */

typedef struct tc_pq_fcrypt tc_pq_fcrypt;

/* Key slots of a file being written. */
enum { TC_PQC_KEY_FOOTER = 0, TC_PQC_KEY_COLUMN = 1 };

/* A file to write: fresh data keys and file AAD, wrapped into key_metadata. */
tc_pq_fcrypt *tc_pq_fcrypt_new_write(const tc_pq_crypt *c, char *errstr, size_t errstr_size);

/* A file to read, from its FileCryptoMetaData fields: the footer's key_metadata is unwrapped
 * here; column keys on demand (tc_pq_fcrypt_column_slot). */
tc_pq_fcrypt *tc_pq_fcrypt_new_read(const tc_pq_crypt *c, const uint8_t *file_aad, size_t aadlen,
                                    const uint8_t *key_meta, size_t metalen, char *errstr,
                                    size_t errstr_size);
void tc_pq_fcrypt_destroy(tc_pq_fcrypt *f);

/* Reading an encrypted-footer file: parse the FileCryptoMetaData at the start of footer[0..len)
 * and set up the file's keys from the installed tc_pq_crypt. *crypto_len receives the
 * structure's length (the footer module follows it). NULL with *err and errstr on failure
 * (TC_ERR_CONFIG when the keys are not to be had, TC_ERR_INVALID for a bad structure). */
tc_pq_fcrypt *tc_pq_fcrypt_from_footer(const uint8_t *footer, size_t len, size_t *crypto_len,
                                       tc_err *err, char *errstr, size_t errstr_size);

/* Parse a ColumnCryptoMetaData struct (r is at its first field) and return the key slot of the
 * column, or -1: a parse error is recorded in r, anything else in *err and errstr. */
int tc_pq_fcrypt_parse_column(tc_pq_fcrypt *f, tc_thrift_reader *r, tc_err *err, char *errstr,
                              size_t errstr_size);

/* Writing: the slot of a column (TC_PQC_KEY_COLUMN for the personal-data columns). */
int tc_pq_fcrypt_slot_of(const tc_pq_fcrypt *f, const char *column);

/* Reading: the slot holding the key of key_metadata (unwrapped on first sight). -1 on error. */
int tc_pq_fcrypt_column_slot(tc_pq_fcrypt *f, const uint8_t *key_meta, size_t metalen, char *errstr,
                             size_t errstr_size);

/* The key_metadata of a slot (KeyMaterial JSON) and the file's aad_file_unique. */
const char *tc_pq_fcrypt_key_metadata(const tc_pq_fcrypt *f, int slot);
const uint8_t *tc_pq_fcrypt_file_aad(const tc_pq_fcrypt *f, size_t *len);

/* Seal / open one module of this file under a slot's key (AAD from type and ordinals). */
int tc_pq_fcrypt_seal(const tc_pq_fcrypt *f, int slot, int type, int rg, int col, int page,
                      const uint8_t *pt, size_t n, tc_pq_buf *out);
tc_err tc_pq_fcrypt_open(const tc_pq_fcrypt *f, int slot, int type, int rg, int col, int page,
                         const uint8_t *m, size_t len, tc_pq_buf *out, char *errstr,
                         size_t errstr_size);

#endif
