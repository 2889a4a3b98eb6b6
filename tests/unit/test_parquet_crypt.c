/*
 * test_parquet_crypt.c -- Parquet modular encryption (src/lake/parquet_crypt.c) and the writer and
 * readers on encrypted files.
 *
 * The module framing is checked against bytes written out by hand from the spec's layout
 * (Encryption.md 5.1: length | nonce | ciphertext | tag) around the ciphertext and tag of NIST's
 * GCM test case 4 (the GCM specification's vectors, as published), and the AAD composition
 * against the table of 4.4 -- not against our own encoder. Then whole files: written encrypted,
 * verified deep and read back value for value; the same file read without keys, with a wrong
 * key, and with each of many single bytes changed is refused; no plaintext value is left in the
 * file; the key file and key command sources, and their errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/batch.h"
#include "lake/parquet.h"
#include "lake/parquet_crypt.h"
#include "lake/parquet_read.h"
#include "lake/parquet_values.h"

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = 0;

    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

/* ---- module framing and AADs ---- */

static void test_gcm_module_layout(void **state)
{
    (void)state;
    uint8_t key[16], iv[12], pt[64], aad[20], want[4 + 12 + 60 + 16], ct[60], tag[16];
    size_t kl = unhex("feffe9928665731c6d6a8f9467308308", key);
    size_t ivl = unhex("cafebabefacedbaddecaf888", iv);
    size_t pl = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95"
                      "956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
                      pt);
    size_t al = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad);
    char errstr[TC_ERRSTR_MAX];
    tc_pq_buf out, back;

    assert_int_equal(kl, 16);
    assert_int_equal(ivl, 12);
    assert_int_equal(pl, 60);
    unhex("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a"
          "5aac84aa051ba30b396a0aac973d58e091",
          ct);
    unhex("5bc94fbc3221a5db94fae95ae7121a47", tag);
    /* length = nonce + ciphertext + tag = 88 = 0x58, little endian */
    want[0] = 0x58;
    want[1] = want[2] = want[3] = 0;
    memcpy(want + 4, iv, 12);
    memcpy(want + 16, ct, 60);
    memcpy(want + 76, tag, 16);

    tc_pq_buf_init(&out, 0);
    tc_pq_buf_init(&back, 0);
    assert_int_equal(tc_pq_gcm_seal(key, kl, iv, aad, al, pt, pl, &out), 0);
    assert_int_equal(out.len, sizeof(want));
    assert_memory_equal(out.data, want, sizeof(want));
    assert_int_equal(tc_pq_module_len(out.data, out.len), out.len);

    assert_int_equal(
        tc_pq_gcm_open(key, kl, want, sizeof(want), aad, al, &back, "t", errstr, sizeof(errstr)),
        TC_OK);
    assert_int_equal(back.len, pl);
    assert_memory_equal(back.data, pt, pl);
    /* a changed tag, ciphertext, nonce or AAD byte, or a wrong length, is refused */
    for (size_t i = 4; i < sizeof(want); i += 7) {
        want[i] ^= 1;
        assert_int_equal(tc_pq_gcm_open(key, kl, want, sizeof(want), aad, al, &back, "t", errstr,
                                        sizeof(errstr)),
                         TC_ERR_INVALID);
        want[i] ^= 1;
    }
    aad[0] ^= 1;
    assert_int_equal(
        tc_pq_gcm_open(key, kl, want, sizeof(want), aad, al, &back, "t", errstr, sizeof(errstr)),
        TC_ERR_INVALID);
    assert_non_null(strstr(errstr, "does not decrypt"));
    aad[0] ^= 1;
    assert_int_equal(tc_pq_gcm_open(key, kl, want, sizeof(want) - 1, aad, al, &back, "t", errstr,
                                    sizeof(errstr)),
                     TC_ERR_INVALID);
    tc_pq_buf_free(&out);
    tc_pq_buf_free(&back);
}

static void test_aad_layout(void **state)
{
    (void)state;
    const uint8_t file[3] = {0xAA, 0xBB, 0xCC};
    uint8_t aad[TC_PQC_AAD_MAX];
    /* Footer: file id | 0 */
    const uint8_t footer[] = {0xAA, 0xBB, 0xCC, 0x00};
    /* ColumnMetaData of row group 1, column 0x0203: file id | 1 | 01 00 | 03 02 */
    const uint8_t cmeta[] = {0xAA, 0xBB, 0xCC, 0x01, 0x01, 0x00, 0x03, 0x02};
    /* Data page 0x0405 of row group 0x7FFF, column 2: file id | 2 | FF 7F | 02 00 | 05 04 */
    const uint8_t page[] = {0xAA, 0xBB, 0xCC, 0x02, 0xFF, 0x7F, 0x02, 0x00, 0x05, 0x04};

    assert_int_equal(tc_pq_aad(aad, file, 3, TC_PQC_FOOTER, -1, -1, -1), sizeof(footer));
    assert_memory_equal(aad, footer, sizeof(footer));
    assert_int_equal(tc_pq_aad(aad, file, 3, TC_PQC_COLUMN_META, 1, 0x0203, -1), sizeof(cmeta));
    assert_memory_equal(aad, cmeta, sizeof(cmeta));
    assert_int_equal(tc_pq_aad(aad, file, 3, TC_PQC_DATA_PAGE, 0x7FFF, 2, 0x0405), sizeof(page));
    assert_memory_equal(aad, page, sizeof(page));
}

/* ---- keys ---- */

/* base64 of 00 01 .. 0f and of 20 21 .. 3f */
#define KEY16 "AAECAwQFBgcICQoLDA0ODw=="
#define KEY32 "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="

static char *write_keys(const char *text, mode_t mode)
{
    char *path = strdup("/tmp/tc_keysXXXXXX");
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
    return path;
}

static void test_key_file(void **state)
{
    (void)state;
    char errstr[TC_ERRSTR_MAX];
    uint8_t key[TC_PQC_KEY_MAX];
    size_t len = 0;
    char *p = write_keys("# master keys\n\nfooter: " KEY16 "\n  col:umn : " KEY32 "\n", 0600);
    tc_pq_keyring *k = tc_pq_keyring_new(p, NULL, errstr, sizeof(errstr));

    assert_non_null(k);
    assert_int_equal(tc_pq_keyring_get(k, "footer", key, &len, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(len, 16);
    assert_int_equal(key[15], 15);
    assert_int_equal(tc_pq_keyring_get(k, "col:umn", key, &len, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(len, 32);
    assert_int_equal(key[0], 0x20);
    assert_int_equal(tc_pq_keyring_get(k, "other", key, &len, errstr, sizeof(errstr)),
                     TC_ERR_CONFIG);
    assert_non_null(strstr(errstr, "no key other"));
    tc_pq_keyring_destroy(k);
    unlink(p);
    free(p);

    /* readable by others, bad base64, wrong length, duplicate, no separator: refused, located */
    p = write_keys("footer: " KEY16 "\n", 0644);
    assert_null(tc_pq_keyring_new(p, NULL, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "chmod 600"));
    unlink(p);
    free(p);
    p = write_keys("a: " KEY16 "\nb: AAEC*wQF\n", 0600);
    assert_null(tc_pq_keyring_new(p, NULL, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "line 2"));
    unlink(p);
    free(p);
    p = write_keys("a: AAECAwQFBgcICQoL\n", 0600); /* 12 bytes */
    assert_null(tc_pq_keyring_new(p, NULL, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "16, 24 or 32"));
    unlink(p);
    free(p);
    p = write_keys("a: " KEY16 "\na: " KEY32 "\n", 0600);
    assert_null(tc_pq_keyring_new(p, NULL, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "twice"));
    unlink(p);
    free(p);
    p = write_keys("just-a-key\n", 0600);
    assert_null(tc_pq_keyring_new(p, NULL, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "line 1"));
    unlink(p);
    free(p);
    assert_null(tc_pq_keyring_new(NULL, NULL, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "key_file"));
}

static void test_key_command(void **state)
{
    (void)state;
    char errstr[TC_ERRSTR_MAX];
    uint8_t key[TC_PQC_KEY_MAX];
    size_t len = 0;
    /* the key id arrives as $1: a KMS hook that knows one key */
    tc_pq_keyring *k = tc_pq_keyring_new(
        NULL, "f() { [ \"$1\" = k1 ] && echo " KEY32 " || exit 3; }; f", errstr, sizeof(errstr));

    assert_non_null(k);
    assert_int_equal(tc_pq_keyring_get(k, "k1", key, &len, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(len, 32);
    assert_int_equal(key[31], 0x3f);
    /* cached: the second get does not need the command */
    assert_int_equal(tc_pq_keyring_get(k, "k1", key, &len, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_pq_keyring_get(k, "k2", key, &len, errstr, sizeof(errstr)), TC_ERR_CONFIG);
    assert_non_null(strstr(errstr, "exit status 3"));
    assert_int_equal(tc_pq_keyring_get(k, "k 2;rm", key, &len, errstr, sizeof(errstr)),
                     TC_ERR_CONFIG);
    tc_pq_keyring_destroy(k);

    k = tc_pq_keyring_new(NULL, "echo not-base64 #", errstr, sizeof(errstr));
    assert_non_null(k);
    assert_int_equal(tc_pq_keyring_get(k, "x", key, &len, errstr, sizeof(errstr)), TC_ERR_CONFIG);
    assert_non_null(strstr(errstr, "not the base64"));
    tc_pq_keyring_destroy(k);
}

/* ---- whole files ---- */

#define ROWS 5000

static const tc_parquet_column cols[] = {
    {"device_id", TC_PQ_STRING, 0, TC_PQ_DICT_ON}, {"temperature", TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF},
    {"latitude", TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF}, {"longitude", TC_PQ_DOUBLE, 1, TC_PQ_DICT_AUTO},
    {"note", TC_PQ_STRING, 1, TC_PQ_DICT_OFF},
};
#define NC (sizeof(cols) / sizeof(cols[0]))

typedef struct data {
    tc_slice dev[ROWS], note[ROWS];
    double t[ROWS], lat[ROWS], lon[ROWS];
    uint8_t tp[ROWS], lp[ROWS];
    char names[ROWS][24];
} data;

static data *make_data(void)
{
    data *d = calloc(1, sizeof(*d));

    for (size_t r = 0; r < ROWS; r++) {
        snprintf(d->names[r], sizeof(d->names[r]), "SECRET-note-%zu", r);
        d->dev[r] = (tc_slice){"dev-7", 5};
        d->note[r] = (r % 5 == 0) ? (tc_slice){NULL, 0}
                                  : (tc_slice){d->names[r], (uint32_t)strlen(d->names[r])};
        d->t[r] = 20.0 + (double)(r % 100) / 10;
        d->tp[r] = r % 7 != 0;
        d->lat[r] = 48.8566 + (double)r * 1e-6;
        d->lon[r] = 2.3522;
        d->lp[r] = r % 11 != 0;
    }
    return d;
}

/* Write the table to a temporary file (encrypted with crypt, or plain); returns its path. */
static char *write_file(const data *d, const tc_pq_crypt *crypt)
{
    char errstr[TC_ERRSTR_MAX];
    char *path = strdup("/tmp/tc_pqcXXXXXX");
    int fd = mkstemp(path);
    tc_parquet_options o;
    tc_parquet_values v[NC] = {
        {d->dev, NULL}, {d->t, d->tp}, {d->lat, d->lp}, {d->lon, d->lp}, {d->note, NULL}};
    tc_parquet_writer *w;

    assert_true(fd >= 0);
    tc_parquet_options_default(&o);
    o.crypt = crypt;
    o.page_rows = 700; /* several pages a chunk: page ordinals matter */
    o.row_group_rows = 2000;
    w = tc_parquet_writer_new(fd, cols, NC, &o, errstr, sizeof(errstr));
    assert_non_null(w);
    assert_int_equal(tc_parquet_add_kv(w, "k", "v", errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_parquet_write(w, v, ROWS, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(tc_parquet_close(w, errstr, sizeof(errstr)), TC_OK);
    tc_parquet_writer_destroy(w);
    close(fd);
    return path;
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    uint8_t *p;

    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc(*n + 1);
    assert_int_equal(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

static int contains(const uint8_t *p, size_t n, const char *s)
{
    size_t k = strlen(s);

    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, s, k) == 0)
            return 1;
    return 0;
}

static tc_pq_crypt *make_crypt(const char *footer_key, char **keyfile)
{
    char errstr[TC_ERRSTR_MAX], text[256];
    tc_pq_keyring *k;
    tc_pq_crypt *c;

    snprintf(text, sizeof(text), "footer: %s\npersonal: " KEY32 "\n", footer_key);
    *keyfile = write_keys(text, 0600);
    k = tc_pq_keyring_new(*keyfile, NULL, errstr, sizeof(errstr));
    assert_non_null(k);
    c = tc_pq_crypt_new(k, "footer", "personal", " latitude , longitude", errstr, sizeof(errstr));
    assert_non_null(c);
    return c;
}

/* Read every value back and compare with d. */
static tc_err read_back(const char *path, const data *d, char *errstr, size_t n)
{
    tc_parquet_reader *r;
    size_t at = 0;
    tc_err err = tc_parquet_reader_open_path(path, &r, errstr, n);

    if (err != TC_OK)
        return err;
    for (size_t g = 0; g < tc_parquet_reader_row_groups(r); g++) {
        const tc_parquet_values *v;
        size_t rows;
        if ((err = tc_parquet_reader_read(r, g, &v, &rows, errstr, n)) != TC_OK)
            break;
        for (size_t i = 0; i < rows; i++, at++) {
            const tc_slice *note = v[4].values;
            assert_int_equal(v[2].present[i], d->lp[at]);
            if (d->lp[at])
                assert_true(((const double *)v[2].values)[i] == d->lat[at]);
            assert_int_equal(v[1].present[i], d->tp[at]);
            if (d->tp[at])
                assert_true(((const double *)v[1].values)[i] == d->t[at]);
            assert_int_equal(note[i].ptr == NULL, d->note[at].ptr == NULL);
            if (note[i].ptr)
                assert_memory_equal(note[i].ptr, d->note[at].ptr, d->note[at].len);
        }
    }
    tc_parquet_reader_close(r);
    if (err == TC_OK)
        assert_int_equal(at, ROWS);
    return err;
}

static void test_encrypted_file(void **state)
{
    (void)state;
    char errstr[TC_ERRSTR_MAX], *keyfile, *keyfile2;
    data *d = make_data();
    tc_pq_crypt *c = make_crypt(KEY16, &keyfile);
    tc_pq_crypt *wrong = make_crypt("AQECAwQFBgcICQoLDA0ODw==", &keyfile2); /* first byte differs */
    char *plain = write_file(d, NULL), *enc = write_file(d, c);
    size_t n, pn;
    uint8_t *bytes = slurp(enc, &n), *pbytes = slurp(plain, &pn);
    tc_parquet_info *info = NULL;

    /* the plain file shows its values and names; the encrypted one nothing of them */
    assert_true(contains(pbytes, pn, "SECRET-note-1"));
    assert_true(contains(pbytes, pn, "latitude"));
    assert_memory_equal(bytes, "PARE", 4);
    assert_memory_equal(bytes + n - 4, "PARE", 4);
    assert_false(contains(bytes, n, "SECRET-note"));
    assert_false(contains(bytes, n, "latitude"));
    assert_false(contains(bytes, n, "temperature"));
    assert_true(contains(bytes, n, "\"masterKeyID\":\"footer\"")); /* FileCryptoMetaData */

    /* with the keys: deep verification and every value */
    tc_pq_crypt_install(c);
    assert_int_equal(
        tc_parquet_verify_buf(bytes, n, TC_PQ_VERIFY_DEEP, &info, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(info->num_rows, ROWS);
    assert_int_equal(info->nrg, 3);
    assert_int_equal(info->rgs[0].cols[0].crypt_slot, TC_PQC_KEY_FOOTER);
    assert_true(info->rgs[0].cols[2].crypt_slot > 0); /* latitude: its own key */
    assert_true(info->rgs[0].cols[2].has_stats);      /* from encrypted_column_metadata */
    assert_true(info->rgs[0].cols[2].data_pages > 1);
    tc_parquet_info_free(info);
    assert_int_equal(read_back(enc, d, errstr, sizeof(errstr)), TC_OK);
    assert_int_equal(read_back(plain, d, errstr, sizeof(errstr)), TC_OK); /* plain still reads */

    /* every 97th byte changed: refused by deep verification (magic, lengths or a tag) */
    for (size_t i = 0; i < n; i += 97) {
        bytes[i] ^= 0x10;
        assert_int_not_equal(
            tc_parquet_verify_buf(bytes, n, TC_PQ_VERIFY_DEEP, NULL, errstr, sizeof(errstr)),
            TC_OK);
        bytes[i] ^= 0x10;
    }

    /* a wrong master key for the footer: nothing opens */
    tc_pq_crypt_install(wrong);
    assert_int_not_equal(
        tc_parquet_verify_buf(bytes, n, TC_PQ_VERIFY_FOOTER, NULL, errstr, sizeof(errstr)), TC_OK);
    assert_non_null(strstr(errstr, "does not decrypt"));
    assert_int_not_equal(read_back(enc, d, errstr, sizeof(errstr)), TC_OK);
    /* no keys at all: a clear error */
    tc_pq_crypt_install(NULL);
    assert_int_equal(
        tc_parquet_verify_buf(bytes, n, TC_PQ_VERIFY_FOOTER, NULL, errstr, sizeof(errstr)),
        TC_ERR_CONFIG);
    assert_non_null(strstr(errstr, "lake.encryption is not configured"));

    tc_pq_crypt_destroy(c);
    tc_pq_crypt_destroy(wrong);
    unlink(enc);
    unlink(plain);
    unlink(keyfile);
    unlink(keyfile2);
    free(enc);
    free(plain);
    free(keyfile);
    free(keyfile2);
    free(bytes);
    free(pbytes);
    free(d);
}

/* A file whose column key is gone (here: a keyring that lost it) cannot be read, even with the
 * footer key: the personal-data columns are under their own key. */
static void test_column_key_needed(void **state)
{
    (void)state;
    char errstr[TC_ERRSTR_MAX], *keyfile, *only_footer;
    data *d = make_data();
    tc_pq_crypt *c = make_crypt(KEY16, &keyfile);
    char *enc = write_file(d, c);
    tc_pq_keyring *k;
    tc_pq_crypt *c2;

    only_footer = write_keys("footer: " KEY16 "\npersonal: " KEY16 "\n", 0600);
    k = tc_pq_keyring_new(only_footer, NULL, errstr, sizeof(errstr));
    assert_non_null(k);
    c2 = tc_pq_crypt_new(k, "footer", "personal", "latitude", errstr, sizeof(errstr));
    assert_non_null(c2);
    tc_pq_crypt_install(c2);
    assert_int_not_equal(
        tc_parquet_verify_path(enc, TC_PQ_VERIFY_FOOTER, NULL, errstr, sizeof(errstr)), TC_OK);
    assert_non_null(strstr(errstr, "wrapped data key"));
    tc_pq_crypt_install(NULL);
    tc_pq_crypt_destroy(c);
    tc_pq_crypt_destroy(c2);
    unlink(enc);
    unlink(keyfile);
    unlink(only_footer);
    free(enc);
    free(keyfile);
    free(only_footer);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcm_module_layout), cmocka_unit_test(test_aad_layout),
        cmocka_unit_test(test_key_file),          cmocka_unit_test(test_key_command),
        cmocka_unit_test(test_encrypted_file),    cmocka_unit_test(test_column_key_needed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
