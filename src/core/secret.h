/*
 * secret.h -- passwords, keys and tokens read from a file or an environment variable.
 *
 * A secret never sits in the configuration itself: a setting names where it lives (`*_file`: a
 * path, `*_env`: the name of an environment variable), and the secret is read only where it is
 * used, into a buffer the caller wipes (tc_secret_wipe) once it has handed it on. Error messages
 * name the setting and the file or variable, never the value. A file's trailing newline is not
 * part of the secret (editors add one); a file readable by everyone is refused, because a secret
 * there is no longer one.
 */
#ifndef TC_CORE_SECRET_H
#define TC_CORE_SECRET_H

#include <stddef.h>

#include "core/error.h"

/* The longest secret (a password, a bearer token, a PEM key is read with tc_secret_read_file). */
#define TC_SECRET_MAX 4096
/* PEM certificates and keys, read whole. */
#define TC_SECRET_PEM_MAX (256 * 1024)

/* Read a secret into out (cap bytes, NUL-terminated) from file_path when it is not empty, else from
 * the environment variable env_name when that is not empty. setting names the setting for errors
 * ("kafka.sasl.password"). Returns TC_OK with out[0] == '\0' when both are empty (no secret
 * configured), TC_ERR_CONFIG when the file cannot be read, is readable by everyone, is empty or
 * too long, or the variable is unset or empty. */
tc_err tc_secret_get(const char *setting, const char *file_path, const char *env_name, char *out,
                     size_t cap, char *errstr, size_t errstr_size);

/* The whole of a file (a PEM certificate, key or CA bundle), malloc'ed and NUL-terminated, at most
 * TC_SECRET_PEM_MAX bytes; *len its length. NULL with errstr naming setting and path on error.
 * private_key: the file must not be readable by everyone. Free with tc_secret_free. */
char *tc_secret_read_file(const char *setting, const char *path, int private_key, size_t *len,
                          char *errstr, size_t errstr_size);

/* Overwrite n bytes (the compiler may not drop it). */
void tc_secret_wipe(void *p, size_t n);

/* Wipe a NUL-terminated string from tc_secret_read_file and free it. NULL is fine. */
void tc_secret_free(char *s);

/* Nonzero when a, b of lengths alen, blen are equal; the time taken depends on blen only (b is the
 * secret, a what a client sent). */
int tc_secret_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
