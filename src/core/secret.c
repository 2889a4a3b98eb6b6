/*
 * secret.c -- secrets from files and the environment; see secret.h.
 *
 * Files are opened once and checked on the descriptor (fstat), so the permission check and the
 * read see the same file. Buffers that held a secret are wiped through a volatile pointer before
 * they are freed, so a core dump or a reused heap block does not hand it on.
 */
#include "core/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tc_secret_wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;

    while (n--)
        *v++ = 0;
}

void tc_secret_free(char *s)
{
    if (s) {
        tc_secret_wipe(s, strlen(s));
        free(s);
    }
}

int tc_secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char diff = alen != blen;

    for (size_t i = 0; i < blen; i++)
        diff |= (unsigned char)((i < alen ? (unsigned char)a[i] : 0) ^ (unsigned char)b[i]);
    return diff == 0;
}

/* Read at most cap - 1 bytes of path into out; -1 with errstr set on error. */
static long tc_secret_slurp(const char *setting, const char *path, int private_key, char *out,
                            size_t cap, char *errstr, size_t errstr_size)
{
    struct stat st;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "%s: cannot open \"%s\": %s", setting, path,
                   strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "%s: \"%s\" is not a regular file", setting,
                   path);
        close(fd);
        return -1;
    }
    if (private_key && (st.st_mode & S_IROTH)) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "%s: \"%s\" is readable by every user; make it private (chmod o-rwx \"%s\")",
                   setting, path, path);
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, out + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "%s: cannot read \"%s\": %s", setting,
                       path, strerror(errno));
            close(fd);
            tc_secret_wipe(out, len);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap - 1) {
            char extra;
            if (read(fd, &extra, 1) > 0) {
                tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                           "%s: \"%s\" is longer than %zu bytes", setting, path, cap - 1);
                close(fd);
                tc_secret_wipe(out, len);
                return -1;
            }
            break;
        }
    }
    close(fd);
    out[len] = '\0';
    return (long)len;
}

tc_err tc_secret_get(const char *setting, const char *file_path, const char *env_name, char *out,
                     size_t cap, char *errstr, size_t errstr_size)
{
    long len;

    if (!cap)
        return TC_ERR_INVALID;
    out[0] = '\0';
    if (file_path && *file_path) {
        len = tc_secret_slurp(setting, file_path, 1, out, cap, errstr, errstr_size);
        if (len < 0)
            return TC_ERR_CONFIG;
        while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
            out[--len] = '\0';
        if (len == 0 || strlen(out) != (size_t)len) {
            tc_secret_wipe(out, cap);
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "%s: \"%s\" is empty or holds a NUL byte", setting, file_path);
        }
        return TC_OK;
    }
    if (env_name && *env_name) {
        const char *v = getenv(env_name);
        size_t n = v ? strlen(v) : 0;
        if (!n)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "%s: the environment variable %s is not set or empty", setting,
                              env_name);
        if (n >= cap)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "%s: the environment variable %s is longer than %zu bytes", setting,
                              env_name, cap - 1);
        memcpy(out, v, n + 1);
    }
    return TC_OK;
}

char *tc_secret_read_file(const char *setting, const char *path, int private_key, size_t *len,
                          char *errstr, size_t errstr_size)
{
    char *buf = malloc(TC_SECRET_PEM_MAX + 1);
    long n;

    if (!buf) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    n = tc_secret_slurp(setting, path, private_key, buf, TC_SECRET_PEM_MAX + 1, errstr,
                        errstr_size);
    if (n <= 0) {
        if (n == 0)
            tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "%s: \"%s\" is empty", setting, path);
        free(buf);
        return NULL;
    }
    if (len)
        *len = (size_t)n;
    return buf;
}
