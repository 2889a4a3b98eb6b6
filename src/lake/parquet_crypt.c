/*
 * parquet_crypt.c -- Parquet Modular Encryption: GCM modules, master keys, data keys; see
 * parquet_crypt.h for the design.
 *
 * OpenSSL's EVP interface does the AES-GCM (hardware AES where the CPU has it). A cipher context
 * is made per module: the modules are pages of up to a MiB, so the set-up is noise next to the
 * bytes, and no context state can leak from one key or one file into another.
 */
#include "lake/parquet_crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/base64.h"
#include "core/json.h"

extern char **environ;

/* How long a key command may take (a KMS round trip is well under a second). */
#define TC_PQC_CMD_TIMEOUT_MS 30000
/* Bytes a key command may print (a base64 key and a newline need ~45). */
#define TC_PQC_CMD_OUT_MAX 4096
/* Longest key file (a few hundred keys of ~60 bytes a line). */
#define TC_PQC_FILE_MAX ((size_t)1 << 20)
/* Key slots of one file being read (footer key + column keys). */
#define TC_PQC_SLOTS_MAX 16
/* GCM is fed at most this many bytes per EVP call (its length argument is an int). */
#define TC_PQC_STEP ((size_t)1 << 30)

/* ---- modules ---- */

size_t tc_pq_aad(uint8_t *out, const uint8_t *file_aad, size_t file_aad_len, int type, int rg,
                 int col, int page)
{
    size_t n = file_aad_len;
    const int ords[3] = {rg, col, page};

    memcpy(out, file_aad, file_aad_len);
    out[n++] = (uint8_t)type;
    for (int i = 0; i < 3; i++) {
        if (ords[i] < 0)
            continue;
        out[n++] = (uint8_t)(ords[i] & 0xFF);
        out[n++] = (uint8_t)((ords[i] >> 8) & 0xFF);
    }
    return n;
}

static const EVP_CIPHER *tc_pq_cipher(size_t keylen)
{
    switch (keylen) {
    case 16:
        return EVP_aes_128_gcm();
    case 24:
        return EVP_aes_192_gcm();
    case 32:
        return EVP_aes_256_gcm();
    default:
        return NULL;
    }
}

/* One GCM pass: in[0..n) -> out[0..n); tag written (enc) or checked (dec). 0, or -1 on failure
 * (for decryption: the tag did not verify). */
static int tc_pq_gcm(int enc, const uint8_t *key, size_t keylen, const uint8_t *nonce,
                     const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t n, uint8_t *out,
                     uint8_t *tag)
{
    const EVP_CIPHER *cipher = tc_pq_cipher(keylen);
    EVP_CIPHER_CTX *ctx;
    int outl = 0, ok;

    if (!cipher || aadlen > INT_MAX || !(ctx = EVP_CIPHER_CTX_new()))
        return -1;
    ok = EVP_CipherInit_ex(ctx, cipher, NULL, NULL, NULL, enc) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, TC_PQC_NONCE, NULL) == 1 &&
         EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) == 1 &&
         (aadlen == 0 || EVP_CipherUpdate(ctx, NULL, &outl, aad, (int)aadlen) == 1);
    for (size_t done = 0; ok && done < n;) {
        size_t step = n - done > TC_PQC_STEP ? TC_PQC_STEP : n - done;
        ok = EVP_CipherUpdate(ctx, out + done, &outl, in + done, (int)step) == 1;
        done += step;
    }
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TC_PQC_TAG, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(ctx, out + n, &outl) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TC_PQC_TAG, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* nonce | ciphertext | tag, appended to out (no length prefix: key wrapping has none). */
static int tc_pq_gcm_seal_raw(const uint8_t *key, size_t keylen, const uint8_t *nonce,
                              const uint8_t *aad, size_t aadlen, const uint8_t *pt, size_t n,
                              tc_pq_buf *out)
{
    uint8_t *p;

    if (n > SIZE_MAX - TC_PQC_OVERHEAD || tc_pq_buf_reserve(out, n + TC_PQC_OVERHEAD) != 0)
        return -1;
    p = tc_pq_buf_tail(out);
    if (nonce)
        memcpy(p, nonce, TC_PQC_NONCE);
    else if (RAND_bytes(p, TC_PQC_NONCE) != 1)
        return -1;
    if (tc_pq_gcm(1, key, keylen, p, aad, aadlen, pt, n, p + TC_PQC_NONCE, p + TC_PQC_NONCE + n) !=
        0)
        return -1;
    out->len += TC_PQC_NONCE + n + TC_PQC_TAG;
    return 0;
}

int tc_pq_gcm_seal(const uint8_t *key, size_t keylen, const uint8_t *nonce, const uint8_t *aad,
                   size_t aadlen, const uint8_t *pt, size_t n, tc_pq_buf *out)
{
    size_t at = out->len;

    if (n > UINT32_MAX - TC_PQC_NONCE - TC_PQC_TAG)
        return -1;
    tc_pq_buf_put_le32(out, (uint32_t)(TC_PQC_NONCE + n + TC_PQC_TAG));
    if (out->failed || tc_pq_gcm_seal_raw(key, keylen, nonce, aad, aadlen, pt, n, out) != 0) {
        out->len = at;
        return -1;
    }
    return 0;
}

/* Open nonce | ciphertext | tag into out (cleared first). */
static tc_err tc_pq_gcm_open_raw(const uint8_t *key, size_t keylen, const uint8_t *m, size_t len,
                                 const uint8_t *aad, size_t aadlen, tc_pq_buf *out,
                                 const char *what, char *errstr, size_t errstr_size)
{
    size_t n;

    if (len < TC_PQC_NONCE + TC_PQC_TAG)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: %s: encrypted module of %zu bytes is shorter than its nonce "
                          "and tag",
                          what, len);
    n = len - TC_PQC_NONCE - TC_PQC_TAG;
    tc_pq_buf_clear(out);
    if (tc_pq_buf_reserve(out, n + 1) != 0)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "parquet: %s: out of memory", what);
    if (tc_pq_gcm(0, key, keylen, m, aad, aadlen, m + TC_PQC_NONCE, n, out->data,
                  (uint8_t *)(uintptr_t)(m + TC_PQC_NONCE + n)) != 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: %s: does not decrypt (wrong key, or the file was changed)",
                          what);
    out->len = n;
    return TC_OK;
}

tc_err tc_pq_gcm_open(const uint8_t *key, size_t keylen, const uint8_t *m, size_t len,
                      const uint8_t *aad, size_t aadlen, tc_pq_buf *out, const char *what,
                      char *errstr, size_t errstr_size)
{
    if (len < 4 || tc_pq_load_le32(m) != len - 4)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: %s: encrypted module length does not match its %zu bytes", what,
                          len);
    return tc_pq_gcm_open_raw(key, keylen, m + 4, len - 4, aad, aadlen, out, what, errstr,
                              errstr_size);
}

uint64_t tc_pq_module_len(const uint8_t *m, size_t avail)
{
    return avail < 4 ? 0 : (uint64_t)tc_pq_load_le32(m) + 4;
}

/* ---- base64 ---- */

/* Decode s (whitespace around it ignored) into out[0..cap); returns the length or -1. */
static long tc_pq_b64_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    return n ? tc_base64_decode(TC_BASE64_STD, s, n, out, cap) : -1;
}

/* ---- master keys ---- */

typedef struct tc_pq_mkey {
    char id[TC_PQC_ID_MAX + 1];
    uint8_t key[TC_PQC_KEY_MAX];
    size_t len;
} tc_pq_mkey;

struct tc_pq_keyring {
    char *command; /* NULL: keys only from the file */
    pthread_mutex_t mu;
    size_t n;
    tc_pq_mkey keys[TC_PQC_KEYS_MAX];
};

static int tc_pq_id_ok(const char *id, size_t n)
{
    if (n == 0 || n > TC_PQC_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.' || ch == ':' || ch == '/'))
            return 0;
    }
    return 1;
}

static tc_err tc_pq_keyring_add(tc_pq_keyring *k, const char *id, size_t idlen, const char *b64,
                                size_t b64len, const char *where, char *errstr, size_t errstr_size)
{
    tc_pq_mkey *m;
    long len;

    if (!tc_pq_id_ok(id, idlen))
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "%s: key id must be 1..%d of A-Z a-z 0-9 _ - . : /", where,
                          TC_PQC_ID_MAX);
    if (k->n >= TC_PQC_KEYS_MAX)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "%s: more than %d keys", where,
                          TC_PQC_KEYS_MAX);
    for (size_t i = 0; i < k->n; i++)
        if (strlen(k->keys[i].id) == idlen && memcmp(k->keys[i].id, id, idlen) == 0)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "%s: key %.*s given twice", where,
                              (int)idlen, id);
    m = &k->keys[k->n];
    len = tc_pq_b64_decode(b64, b64len, m->key, sizeof(m->key));
    if (len != 16 && len != 24 && len != 32) {
        OPENSSL_cleanse(m->key, sizeof(m->key));
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "%s: key %.*s is not the base64 of 16, 24 or 32 bytes", where, (int)idlen,
                          id);
    }
    memcpy(m->id, id, idlen);
    m->id[idlen] = '\0';
    m->len = (size_t)len;
    k->n++;
    return TC_OK;
}

static tc_err tc_pq_keyring_load(tc_pq_keyring *k, const char *path, char *errstr,
                                 size_t errstr_size)
{
    char where[TC_ERRSTR_MAX / 2], *text = NULL, *line, *save = NULL;
    struct stat st;
    size_t got = 0;
    unsigned lineno = 0;
    tc_err err = TC_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "lake.encryption.key_file %s: %s",
                          path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > TC_PQC_FILE_MAX) {
        close(fd);
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "lake.encryption.key_file %s: not a regular file of at most %zu bytes",
                          path, TC_PQC_FILE_MAX);
    }
    if (st.st_mode & 077) {
        close(fd);
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "lake.encryption.key_file %s: readable by group or others (mode %03o); "
                          "chmod 600 it",
                          path, (unsigned)(st.st_mode & 0777));
    }
    text = malloc((size_t)st.st_size + 1);
    while (text && got < (size_t)st.st_size) {
        ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!text)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "key file: out of memory");
    text[got] = '\0';
    for (line = strtok_r(text, "\n", &save); line && err == TC_OK;
         line = strtok_r(NULL, "\n", &save)) {
        char *colon, *id = line, *end;
        lineno++;
        while (*id == ' ' || *id == '\t')
            id++;
        if (*id == '#' || *id == '\0' || *id == '\r')
            continue;
        snprintf(where, sizeof(where), "lake.encryption.key_file %s line %u", path, lineno);
        colon = strchr(id, ':');
        /* key ids may hold ':' themselves: the separator is the last ": " */
        for (char *c = colon; c; c = strchr(c + 1, ':'))
            if (c[1] == ' ' || c[1] == '\t')
                colon = c;
        if (!colon) {
            err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "%s: expected KEY_ID: BASE64",
                             where);
            break;
        }
        end = colon;
        while (end > id && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        err = tc_pq_keyring_add(k, id, (size_t)(end - id), colon + 1, strlen(colon + 1), where,
                                errstr, errstr_size);
    }
    OPENSSL_cleanse(text, got);
    free(text);
    return err;
}

tc_pq_keyring *tc_pq_keyring_new(const char *key_file, const char *key_command, char *errstr,
                                 size_t errstr_size)
{
    tc_pq_keyring *k;
    int from_file = key_file && *key_file;

    if (!from_file && !(key_command && *key_command)) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "lake encryption needs lake.encryption.key_file or "
                   "lake.encryption.key_command");
        return NULL;
    }
    k = calloc(1, sizeof(*k));
    if (!k) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "keyring: out of memory");
        return NULL;
    }
    pthread_mutex_init(&k->mu, NULL);
    if (from_file) {
        if (tc_pq_keyring_load(k, key_file, errstr, errstr_size) != TC_OK) {
            tc_pq_keyring_destroy(k);
            return NULL;
        }
    } else if (!(k->command = strdup(key_command))) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "keyring: out of memory");
        tc_pq_keyring_destroy(k);
        return NULL;
    }
    return k;
}

void tc_pq_keyring_destroy(tc_pq_keyring *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k->keys, sizeof(k->keys));
    pthread_mutex_destroy(&k->mu);
    free(k->command);
    free(k);
}

static int64_t tc_pq_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run the key command for id; its stdout into out[0..cap). Returns the bytes read or -1. */
static long tc_pq_run_command(const tc_pq_keyring *k, const char *id, char *out, size_t cap,
                              char *errstr, size_t errstr_size)
{
    static char sh[] = "/bin/sh", dash_c[] = "-c", arg0[] = "sh";
    char *script = NULL, *idcopy;
    size_t sl = strlen(k->command) + sizeof(" \"$1\"");
    int fds[2], status = 0, rc, timed_out = 0;
    int64_t deadline;
    size_t got = 0;
    pid_t pid;
    posix_spawn_file_actions_t fa;

    /* the id goes in as $1, never into the script text: no quoting to get wrong */
    script = malloc(sl);
    idcopy = strdup(id);
    if (!script || !idcopy) {
        free(script);
        free(idcopy);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "key command: out of memory");
        return -1;
    }
    snprintf(script, sl, "%s \"$1\"", k->command);
    if (pipe(fds) != 0) {
        free(script);
        free(idcopy);
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "lake.encryption.key_command: pipe: %s",
                   strerror(errno));
        return -1;
    }
    /* not inherited by what other threads spawn meanwhile (the child's dup2 clears it on stdout) */
    (void)fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    char *argv[] = {sh, dash_c, script, arg0, idcopy, NULL};
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    free(script);
    free(idcopy);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "lake.encryption.key_command: spawn: %s",
                   strerror(rc));
        return -1;
    }
    /* A KMS that does not answer must not hang the start for ever: the command gets a deadline,
     * then is killed. */
    deadline = tc_pq_now_ms() + TC_PQC_CMD_TIMEOUT_MS;
    for (;;) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int64_t left = deadline - tc_pq_now_ms();
        ssize_t r;
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            timed_out = 1;
            kill(pid, SIGKILL);
            break;
        }
        r = read(fds[0], out + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == cap)
            break; /* too long: refused below, after the child is reaped */
    }
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "lake.encryption.key_command did not answer within %d s for key %s",
                   TC_PQC_CMD_TIMEOUT_MS / 1000, id);
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "lake.encryption.key_command failed for key %s (exit status %d)", id,
                   WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    if (got == cap) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "lake.encryption.key_command printed more than %zu bytes for key %s", cap, id);
        return -1;
    }
    return (long)got;
}

tc_err tc_pq_keyring_get(tc_pq_keyring *k, const char *id, uint8_t *key, size_t *len, char *errstr,
                         size_t errstr_size)
{
    char out[TC_PQC_CMD_OUT_MAX], where[TC_PQC_ID_MAX + 64];
    tc_err err = TC_OK;
    long got;

    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < k->n; i++) {
        if (strcmp(k->keys[i].id, id) == 0) {
            memcpy(key, k->keys[i].key, k->keys[i].len);
            *len = k->keys[i].len;
            pthread_mutex_unlock(&k->mu);
            return TC_OK;
        }
    }
    if (!k->command) {
        pthread_mutex_unlock(&k->mu);
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "lake encryption: no key %s in lake.encryption.key_file", id);
    }
    if (!tc_pq_id_ok(id, strlen(id))) {
        pthread_mutex_unlock(&k->mu);
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "lake encryption: bad key id");
    }
    got = tc_pq_run_command(k, id, out, sizeof(out), errstr, errstr_size);
    snprintf(where, sizeof(where), "lake.encryption.key_command for %s", id);
    if (got < 0)
        err = TC_ERR_CONFIG;
    else
        err = tc_pq_keyring_add(k, id, strlen(id), out, (size_t)got, where, errstr, errstr_size);
    OPENSSL_cleanse(out, sizeof(out));
    if (err == TC_OK) {
        memcpy(key, k->keys[k->n - 1].key, k->keys[k->n - 1].len);
        *len = k->keys[k->n - 1].len;
    }
    pthread_mutex_unlock(&k->mu);
    return err;
}

/* ---- policy ---- */

struct tc_pq_crypt {
    tc_pq_keyring *keys;
    char footer_id[TC_PQC_ID_MAX + 1];
    char column_id[TC_PQC_ID_MAX + 1];
    size_t ncols;
    char *cols[TC_PQC_COLUMNS_MAX];
};

static _Atomic(const tc_pq_crypt *) tc_pq_crypt_process;

tc_pq_crypt *tc_pq_crypt_new(tc_pq_keyring *keys, const char *footer_key_id,
                             const char *column_key_id, const char *columns, char *errstr,
                             size_t errstr_size)
{
    tc_pq_crypt *c = calloc(1, sizeof(*c));
    uint8_t key[TC_PQC_KEY_MAX];
    size_t len;
    const char *p = columns ? columns : "";

    if (!c) {
        tc_pq_keyring_destroy(keys);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "lake encryption: out of memory");
        return NULL;
    }
    c->keys = keys;
    if (!keys || !footer_key_id || !column_key_id ||
        !tc_pq_id_ok(footer_key_id, strlen(footer_key_id)) ||
        !tc_pq_id_ok(column_key_id, strlen(column_key_id))) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "lake.encryption.footer_key_id and column_key_id must be key ids (1..%d of "
                   "A-Z a-z 0-9 _ - . : /)",
                   TC_PQC_ID_MAX);
        goto fail;
    }
    snprintf(c->footer_id, sizeof(c->footer_id), "%s", footer_key_id);
    snprintf(c->column_id, sizeof(c->column_id), "%s", column_key_id);
    while (*p) {
        size_t n = strcspn(p, ",");
        const char *s = p;
        p += n + (p[n] == ',');
        while (n > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            n--;
        }
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (n == 0)
            continue;
        if (c->ncols >= TC_PQC_COLUMNS_MAX) {
            tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                       "lake.encryption.column_key_columns: more than %d columns",
                       TC_PQC_COLUMNS_MAX);
            goto fail;
        }
        if (!(c->cols[c->ncols] = strndup(s, n))) {
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "lake encryption: out of memory");
            goto fail;
        }
        c->ncols++;
    }
    if (tc_pq_keyring_get(keys, c->footer_id, key, &len, errstr, errstr_size) != TC_OK ||
        tc_pq_keyring_get(keys, c->column_id, key, &len, errstr, errstr_size) != TC_OK)
        goto fail;
    OPENSSL_cleanse(key, sizeof(key));
    return c;
fail:
    OPENSSL_cleanse(key, sizeof(key));
    tc_pq_crypt_destroy(c);
    return NULL;
}

void tc_pq_crypt_destroy(tc_pq_crypt *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->ncols; i++)
        free(c->cols[i]);
    tc_pq_keyring_destroy(c->keys);
    free(c);
}

const tc_pq_crypt *tc_pq_crypt_install(const tc_pq_crypt *c)
{
    return atomic_exchange(&tc_pq_crypt_process, c);
}

const tc_pq_crypt *tc_pq_crypt_installed(void)
{
    return atomic_load(&tc_pq_crypt_process);
}

/* ---- per file ---- */

typedef struct tc_pq_slot {
    uint8_t key[TC_PQC_KEY_MAX];
    size_t len;
    char *meta; /* key_metadata: KeyMaterial JSON */
    size_t metalen;
} tc_pq_slot;

struct tc_pq_fcrypt {
    const tc_pq_crypt *c;
    uint8_t aad[TC_PQC_FILE_AAD_MAX];
    size_t aadlen;
    size_t nslots;
    tc_pq_slot slots[TC_PQC_SLOTS_MAX];
};

void tc_pq_fcrypt_destroy(tc_pq_fcrypt *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nslots; i++)
        free(f->slots[i].meta);
    OPENSSL_cleanse(f, sizeof(*f));
    free(f);
}

/* Wrap a fresh data key of slot s under master key id and write its KeyMaterial. */
static tc_err tc_pq_wrap(tc_pq_fcrypt *f, tc_pq_slot *s, const char *id, int footer, char *errstr,
                         size_t errstr_size)
{
    uint8_t mk[TC_PQC_KEY_MAX];
    char b64[TC_PQC_META_MAX];
    size_t mklen = 0;
    tc_pq_buf wrapped;
    tc_jbuf j;
    tc_err err;

    if ((err = tc_pq_keyring_get(f->c->keys, id, mk, &mklen, errstr, errstr_size)) != TC_OK)
        return err;
    tc_pq_buf_init(&wrapped, 0);
    s->len = TC_PQC_DEK;
    if (RAND_bytes(s->key, TC_PQC_DEK) != 1 ||
        tc_pq_gcm_seal_raw(mk, mklen, NULL, (const uint8_t *)id, strlen(id), s->key, s->len,
                           &wrapped) != 0) {
        OPENSSL_cleanse(mk, sizeof(mk));
        tc_pq_buf_free(&wrapped);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size,
                          "lake encryption: cannot wrap a data key under %s", id);
    }
    OPENSSL_cleanse(mk, sizeof(mk));
    EVP_EncodeBlock((unsigned char *)b64, wrapped.data, (int)wrapped.len);
    tc_pq_buf_free(&wrapped);
    tc_jbuf_init(&j, TC_PQC_META_MAX);
    tc_jbuf_obj_begin(&j);
    tc_jbuf_key(&j, "keyMaterialType");
    tc_jbuf_str(&j, "PKMT1");
    tc_jbuf_key(&j, "internalStorage");
    tc_jbuf_bool(&j, 1);
    tc_jbuf_key(&j, "isFooterKey");
    tc_jbuf_bool(&j, footer);
    if (footer) {
        /* A footer key's material names the KMS instance; ours is the one configured. */
        tc_jbuf_key(&j, "kmsInstanceID");
        tc_jbuf_str(&j, "DEFAULT");
        tc_jbuf_key(&j, "kmsInstanceURL");
        tc_jbuf_str(&j, "DEFAULT");
    }
    tc_jbuf_key(&j, "masterKeyID");
    tc_jbuf_str(&j, id);
    tc_jbuf_key(&j, "wrappedDEK");
    tc_jbuf_str(&j, b64);
    tc_jbuf_key(&j, "doubleWrapping");
    tc_jbuf_bool(&j, 0);
    tc_jbuf_obj_end(&j);
    if (tc_jbuf_failed(&j)) {
        tc_jbuf_free(&j);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "lake encryption: out of memory");
    }
    s->meta = tc_jbuf_take(&j, &s->metalen);
    tc_jbuf_free(&j);
    return s->meta
               ? TC_OK
               : tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "lake encryption: out of memory");
}

tc_pq_fcrypt *tc_pq_fcrypt_new_write(const tc_pq_crypt *c, char *errstr, size_t errstr_size)
{
    tc_pq_fcrypt *f = calloc(1, sizeof(*f));

    if (!f) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "lake encryption: out of memory");
        return NULL;
    }
    if (errstr && errstr_size)
        errstr[0] = '\0';
    f->c = c;
    f->aadlen = TC_PQC_FILE_AAD;
    f->nslots = 2;
    if (RAND_bytes(f->aad, TC_PQC_FILE_AAD) != 1 ||
        tc_pq_wrap(f, &f->slots[TC_PQC_KEY_FOOTER], c->footer_id, 1, errstr, errstr_size) !=
            TC_OK ||
        tc_pq_wrap(f, &f->slots[TC_PQC_KEY_COLUMN], c->column_id, 0, errstr, errstr_size) !=
            TC_OK) {
        if (errstr && errstr_size && !errstr[0])
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "lake encryption: no randomness");
        tc_pq_fcrypt_destroy(f);
        return NULL;
    }
    return f;
}

/* Unwrap the data key of key_metadata into s. */
static tc_err tc_pq_unwrap(tc_pq_fcrypt *f, tc_pq_slot *s, const uint8_t *meta, size_t metalen,
                           char *errstr, size_t errstr_size)
{
    uint8_t mk[TC_PQC_KEY_MAX], wrapped[TC_PQC_META_MAX];
    size_t mklen = 0;
    tc_json_limits lim = {.max_bytes = TC_PQC_META_MAX, .max_depth = 2, .max_nodes = 32};
    tc_json_doc *doc;
    const tc_json *root;
    const char *type, *id, *dek;
    const tc_json *internal, *dbl;
    char jerr[TC_ERRSTR_MAX];
    tc_pq_buf dk;
    long wlen;
    tc_err err;

    doc = tc_json_parse((const char *)meta, metalen, &lim, NULL, jerr, sizeof(jerr));
    if (!doc)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: key_metadata is not KeyMaterial JSON: %s", jerr);
    root = tc_json_root(doc);
    type = tc_json_string(tc_json_get(root, "keyMaterialType"));
    id = tc_json_string(tc_json_get(root, "masterKeyID"));
    dek = tc_json_string(tc_json_get(root, "wrappedDEK"));
    internal = tc_json_get(root, "internalStorage");
    dbl = tc_json_get(root, "doubleWrapping");
    if (!type || strcmp(type, "PKMT1") != 0 || !id || !dek || !internal ||
        internal->type != TC_JSON_TRUE || (dbl && dbl->type != TC_JSON_FALSE)) {
        tc_json_free(doc);
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: key_metadata: only PKMT1 key material stored in the file, "
                          "single-wrapped, is supported");
    }
    wlen = tc_pq_b64_decode(dek, strlen(dek), wrapped, sizeof(wrapped));
    if (wlen < 0 || !tc_pq_id_ok(id, strlen(id))) {
        tc_json_free(doc);
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: key_metadata: bad masterKeyID or wrappedDEK");
    }
    if ((err = tc_pq_keyring_get(f->c->keys, id, mk, &mklen, errstr, errstr_size)) != TC_OK) {
        tc_json_free(doc);
        return err;
    }
    tc_pq_buf_init(&dk, 0);
    err = tc_pq_gcm_open_raw(mk, mklen, wrapped, (size_t)wlen, (const uint8_t *)id, strlen(id), &dk,
                             "wrapped data key", errstr, errstr_size);
    OPENSSL_cleanse(mk, sizeof(mk));
    if (err == TC_OK && dk.len != 16 && dk.len != 24 && dk.len != 32)
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                         "parquet: data key of %zu bytes under %s", dk.len, id);
    if (err == TC_OK) {
        memcpy(s->key, dk.data, dk.len);
        s->len = dk.len;
        s->meta = malloc(metalen + 1);
        if (!s->meta)
            err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
        else {
            memcpy(s->meta, meta, metalen);
            s->meta[metalen] = '\0';
            s->metalen = metalen;
        }
    }
    if (dk.data)
        OPENSSL_cleanse(dk.data, dk.cap);
    tc_pq_buf_free(&dk);
    tc_json_free(doc);
    return err;
}

tc_pq_fcrypt *tc_pq_fcrypt_new_read(const tc_pq_crypt *c, const uint8_t *file_aad, size_t aadlen,
                                    const uint8_t *key_meta, size_t metalen, char *errstr,
                                    size_t errstr_size)
{
    tc_pq_fcrypt *f;

    if (!c) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "parquet: the file is encrypted and lake.encryption is not configured");
        return NULL;
    }
    if (aadlen > TC_PQC_FILE_AAD_MAX || !key_meta || metalen == 0 || metalen > TC_PQC_META_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                   "parquet: FileCryptoMetaData: aad_file_unique over %d bytes or key_metadata "
                   "missing or over %d bytes",
                   TC_PQC_FILE_AAD_MAX, TC_PQC_META_MAX);
        return NULL;
    }
    if (!(f = calloc(1, sizeof(*f)))) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "parquet: out of memory");
        return NULL;
    }
    f->c = c;
    memcpy(f->aad, file_aad, aadlen);
    f->aadlen = aadlen;
    f->nslots = 1;
    if (tc_pq_unwrap(f, &f->slots[0], key_meta, metalen, errstr, errstr_size) != TC_OK) {
        tc_pq_fcrypt_destroy(f);
        return NULL;
    }
    return f;
}

int tc_pq_fcrypt_slot_of(const tc_pq_fcrypt *f, const char *column)
{
    for (size_t i = 0; i < f->c->ncols; i++)
        if (strcmp(f->c->cols[i], column) == 0)
            return TC_PQC_KEY_COLUMN;
    return TC_PQC_KEY_FOOTER;
}

int tc_pq_fcrypt_column_slot(tc_pq_fcrypt *f, const uint8_t *key_meta, size_t metalen, char *errstr,
                             size_t errstr_size)
{
    if (!key_meta || metalen == 0 || metalen > TC_PQC_META_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                   "parquet: column key_metadata missing or over %d bytes", TC_PQC_META_MAX);
        return -1;
    }
    for (size_t i = 0; i < f->nslots; i++)
        if (f->slots[i].metalen == metalen && memcmp(f->slots[i].meta, key_meta, metalen) == 0)
            return (int)i;
    if (f->nslots >= TC_PQC_SLOTS_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "parquet: more than %d column keys",
                   TC_PQC_SLOTS_MAX);
        return -1;
    }
    if (tc_pq_unwrap(f, &f->slots[f->nslots], key_meta, metalen, errstr, errstr_size) != TC_OK)
        return -1;
    return (int)f->nslots++;
}

const char *tc_pq_fcrypt_key_metadata(const tc_pq_fcrypt *f, int slot)
{
    return f->slots[slot].meta;
}

const uint8_t *tc_pq_fcrypt_file_aad(const tc_pq_fcrypt *f, size_t *len)
{
    *len = f->aadlen;
    return f->aad;
}

/* The ordinals a module type carries in its AAD. */
static size_t tc_pq_module_aad(const tc_pq_fcrypt *f, uint8_t *aad, int type, int rg, int col,
                               int page)
{
    int paged = type == TC_PQC_DATA_PAGE || type == TC_PQC_DATA_PAGE_HEADER;

    if (type == TC_PQC_FOOTER)
        return tc_pq_aad(aad, f->aad, f->aadlen, type, -1, -1, -1);
    return tc_pq_aad(aad, f->aad, f->aadlen, type, rg, col, paged ? page : -1);
}

int tc_pq_fcrypt_seal(const tc_pq_fcrypt *f, int slot, int type, int rg, int col, int page,
                      const uint8_t *pt, size_t n, tc_pq_buf *out)
{
    uint8_t aad[TC_PQC_AAD_MAX];
    size_t aadlen = tc_pq_module_aad(f, aad, type, rg, col, page);

    return tc_pq_gcm_seal(f->slots[slot].key, f->slots[slot].len, NULL, aad, aadlen,
                          pt ? pt : (const uint8_t *)"", n, out);
}

tc_err tc_pq_fcrypt_open(const tc_pq_fcrypt *f, int slot, int type, int rg, int col, int page,
                         const uint8_t *m, size_t len, tc_pq_buf *out, char *errstr,
                         size_t errstr_size)
{
    static const char *const what[] = {"footer",           "column metadata",
                                       "data page",        "dictionary page",
                                       "data page header", "dictionary page header"};
    uint8_t aad[TC_PQC_AAD_MAX];
    size_t aadlen = tc_pq_module_aad(f, aad, type, rg, col, page);

    return tc_pq_gcm_open(f->slots[slot].key, f->slots[slot].len, m, len, aad, aadlen, out,
                          type >= 0 && type <= 5 ? what[type] : "module", errstr, errstr_size);
}

/* ---- reading the crypto structures ---- */

/* AesGcmV1: aad_prefix (1), aad_file_unique (2), supply_aad_prefix (3). */
static int tc_pq_parse_gcm(tc_thrift_reader *r, uint8_t *aad, size_t *aadlen)
{
    const uint8_t *pre = NULL, *uniq = NULL;
    uint32_t npre = 0, nuniq = 0;
    int16_t last = 0, id;
    uint8_t t;
    int rc, supply = 0;

    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        int ok;
        if (id == 1 || id == 2) {
            if (tc_thrift_expect(r, t, TC_THRIFT_BINARY) != 0)
                return -1;
            ok = id == 1 ? tc_thrift_read_binary(r, &pre, &npre)
                         : tc_thrift_read_binary(r, &uniq, &nuniq);
        } else if (id == 3) {
            supply = t == TC_THRIFT_BOOL_TRUE;
            ok = t == TC_THRIFT_BOOL_TRUE || t == TC_THRIFT_BOOL_FALSE
                     ? 0
                     : tc_thrift_reader_fail(r, "supply_aad_prefix is not a bool");
        } else {
            ok = tc_thrift_skip(r, t);
        }
        if (ok != 0)
            return -1;
    }
    if (rc != 0)
        return -1;
    if (supply)
        return tc_thrift_reader_fail(r, "the file needs an AAD prefix supplied (unsupported)");
    if ((size_t)npre + nuniq > TC_PQC_FILE_AAD_MAX)
        return tc_thrift_reader_fail(r, "file AAD too long");
    if (npre)
        memcpy(aad, pre, npre);
    if (nuniq)
        memcpy(aad + npre, uniq, nuniq);
    *aadlen = (size_t)npre + nuniq;
    return 0;
}

tc_pq_fcrypt *tc_pq_fcrypt_from_footer(const uint8_t *footer, size_t len, size_t *crypto_len,
                                       tc_err *err, char *errstr, size_t errstr_size)
{
    tc_thrift_reader r;
    uint8_t aad[TC_PQC_FILE_AAD_MAX];
    size_t aadlen = 0;
    const uint8_t *meta = NULL;
    uint32_t metalen = 0;
    int16_t last = 0, id;
    uint8_t t;
    int rc, have_alg = 0;
    tc_pq_fcrypt *f;

    tc_thrift_reader_init(&r, footer, len);
    while ((rc = tc_thrift_read_field(&r, &last, &t, &id)) == 1) {
        int ok;
        if (id == 1) { /* EncryptionAlgorithm: a union */
            int16_t ulast = 0, uid;
            uint8_t ut;
            ok = tc_thrift_expect(&r, t, TC_THRIFT_STRUCT);
            while (ok == 0 && (rc = tc_thrift_read_field(&r, &ulast, &ut, &uid)) == 1) {
                if (uid != 1) {
                    ok = tc_thrift_reader_fail(&r, "encryption algorithm is not AES_GCM_V1 "
                                                   "(AES_GCM_CTR_V1 is unsupported)");
                    break;
                }
                ok = tc_thrift_expect(&r, ut, TC_THRIFT_STRUCT);
                if (ok == 0)
                    ok = tc_pq_parse_gcm(&r, aad, &aadlen);
                have_alg = 1;
            }
            if (ok == 0 && rc != 0)
                ok = -1;
        } else if (id == 2) {
            ok = tc_thrift_expect(&r, t, TC_THRIFT_BINARY);
            if (ok == 0)
                ok = tc_thrift_read_binary(&r, &meta, &metalen);
        } else {
            ok = tc_thrift_skip(&r, t);
        }
        if (ok != 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && !have_alg)
        rc = tc_thrift_reader_fail(&r, "FileCryptoMetaData without an encryption algorithm");
    if (rc != 0) {
        *err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "parquet: FileCryptoMetaData: %s at byte %zu", r.err ? r.err : "corrupt",
                          r.err_at);
        return NULL;
    }
    *crypto_len = tc_thrift_reader_pos(&r);
    f = tc_pq_fcrypt_new_read(tc_pq_crypt_installed(), aad, aadlen, meta, metalen, errstr,
                              errstr_size);
    if (!f)
        *err = tc_pq_crypt_installed() ? TC_ERR_INVALID : TC_ERR_CONFIG;
    return f;
}

int tc_pq_fcrypt_parse_column(tc_pq_fcrypt *f, tc_thrift_reader *r, tc_err *err, char *errstr,
                              size_t errstr_size)
{
    int16_t last = 0, id;
    uint8_t t;
    int rc, slot = -1;

    while ((rc = tc_thrift_read_field(r, &last, &t, &id)) == 1) {
        if (tc_thrift_expect(r, t, TC_THRIFT_STRUCT) != 0)
            return -1;
        if (id == 1) { /* ENCRYPTION_WITH_FOOTER_KEY */
            if (tc_thrift_skip(r, t) != 0)
                return -1;
            slot = TC_PQC_KEY_FOOTER;
        } else if (id == 2) { /* ENCRYPTION_WITH_COLUMN_KEY: path (1), key_metadata (2) */
            const uint8_t *meta = NULL;
            uint32_t metalen = 0;
            int16_t klast = 0, kid;
            uint8_t kt;
            while ((rc = tc_thrift_read_field(r, &klast, &kt, &kid)) == 1) {
                int ok;
                if (kid == 2) {
                    ok = tc_thrift_expect(r, kt, TC_THRIFT_BINARY);
                    if (ok == 0)
                        ok = tc_thrift_read_binary(r, &meta, &metalen);
                } else {
                    ok = tc_thrift_skip(r, kt);
                }
                if (ok != 0)
                    return -1;
            }
            if (rc != 0)
                return -1;
            slot = tc_pq_fcrypt_column_slot(f, meta, metalen, errstr, errstr_size);
            if (slot < 0) {
                *err = TC_ERR_INVALID;
                return -1;
            }
        } else if (tc_thrift_skip(r, t) != 0) {
            return -1;
        }
    }
    if (rc != 0)
        return -1;
    if (slot < 0)
        return tc_thrift_reader_fail(r, "ColumnCryptoMetaData names no key");
    return slot;
}
