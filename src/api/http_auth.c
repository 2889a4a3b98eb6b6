/*
 * http_auth.c -- Basic and bearer credentials of an HTTP server; see http_auth.h.
 *
 * Every credential is kept as the exact string a client must send after the scheme: for a user,
 * "user:password" (what Basic's base64 decodes to), for a token the token. A check decodes the
 * header once and compares it with every entry, all the way through (tc_secret_equal), so neither
 * which entry matched nor how much of it shows in the time taken.
 */
#include "api/http_auth.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base64.h"
#include "core/secret.h"

/* A credential line; longer is refused (a password of kilobytes is a mistake). */
#define TC_HTTP_AUTH_LINE_MAX 1024
/* The credentials files together. */
#define TC_HTTP_AUTH_FILE_MAX (256 * 1024)

typedef struct tc_http_cred {
    char *text; /* "user:password" or the token */
    size_t len;
    int basic; /* 1: a user (Basic), 0: a token (Bearer) */
} tc_http_cred;

struct tc_http_auth {
    tc_http_cred creds[TC_HTTP_AUTH_MAX];
    size_t n;
    int read_open;
};

void tc_http_auth_destroy(tc_http_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        tc_secret_free(a->creds[i].text);
    free(a);
}

/* Add the lines of text (origin names it in errors). */
static tc_err tc_http_auth_parse(tc_http_auth *a, const char *text, int basic, const char *origin,
                                 char *errstr, size_t errstr_size)
{
    const char *p = text;
    unsigned line = 0;

    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *colon;
        line++;
        while (len && (p[len - 1] == '\r' || p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len && p[0] != '#') {
            colon = memchr(p, ':', len);
            if (len > TC_HTTP_AUTH_LINE_MAX)
                return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                  "%s line %u: longer than %d bytes", origin, line,
                                  TC_HTTP_AUTH_LINE_MAX);
            if (basic && (!colon || colon == p || colon == p + len - 1))
                return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                  "%s line %u: expected user:password", origin, line);
            if (a->n == TC_HTTP_AUTH_MAX)
                return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                                  "%s: more than %d credentials", origin, TC_HTTP_AUTH_MAX);
            a->creds[a->n].text = strndup(p, len);
            if (!a->creds[a->n].text)
                return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
            a->creds[a->n].len = len;
            a->creds[a->n].basic = basic;
            a->n++;
        }
        p += nl ? (size_t)(nl - p) + 1 : strlen(p);
    }
    return TC_OK;
}

tc_http_auth *tc_http_auth_new_text(const char *users_text, const char *tokens_text, int read_open,
                                    char *errstr, size_t errstr_size)
{
    tc_http_auth *a = calloc(1, sizeof(*a));

    if (!a) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    a->read_open = read_open;
    if ((users_text && tc_http_auth_parse(a, users_text, 1, "registry.auth.users_file", errstr,
                                          errstr_size) != TC_OK) ||
        (tokens_text && tc_http_auth_parse(a, tokens_text, 0, "registry.auth.tokens_file", errstr,
                                           errstr_size) != TC_OK)) {
        tc_http_auth_destroy(a);
        return NULL;
    }
    if (!a->n) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "registry.auth.users_file and registry.auth.tokens_file hold no credential: "
                   "every write would be refused");
        tc_http_auth_destroy(a);
        return NULL;
    }
    return a;
}

tc_http_auth *tc_http_auth_new(const char *users_file, const char *tokens_file, int read_open,
                               char *errstr, size_t errstr_size)
{
    char *users = NULL, *tokens = NULL;
    tc_http_auth *a = NULL;

    if (users_file && *users_file &&
        !(users = tc_secret_read_file("registry.auth.users_file", users_file, 1, NULL, errstr,
                                      errstr_size)))
        return NULL;
    if (tokens_file && *tokens_file &&
        !(tokens = tc_secret_read_file("registry.auth.tokens_file", tokens_file, 1, NULL, errstr,
                                       errstr_size))) {
        tc_secret_free(users);
        return NULL;
    }
    a = tc_http_auth_new_text(users, tokens, read_open, errstr, errstr_size);
    tc_secret_free(users);
    tc_secret_free(tokens);
    return a;
}

int tc_http_auth_check(const tc_http_auth *a, const char *method, const char *authorization)
{
    char decoded[TC_HTTP_AUTH_LINE_MAX + 1];
    const char *given = NULL;
    size_t given_len = 0;
    int basic = 0, ok = 0;

    if (!a)
        return 0;
    if (a->read_open && (!strcmp(method, "GET") || !strcmp(method, "HEAD")))
        return 0;
    if (!authorization)
        return 401;
    if (!strncasecmp(authorization, "Basic ", 6)) {
        const char *b = authorization + 6;
        long n;
        while (*b == ' ')
            b++;
        n = tc_base64_decode(TC_BASE64_STD, b, strcspn(b, " "), decoded, sizeof(decoded) - 1);
        if (n < 0)
            return 401;
        decoded[n] = '\0';
        given = decoded;
        given_len = (size_t)n;
        basic = 1;
    } else if (!strncasecmp(authorization, "Bearer ", 7)) {
        given = authorization + 7;
        while (*given == ' ')
            given++;
        given_len = strcspn(given, " ");
    } else {
        return 401;
    }
    for (size_t i = 0; i < a->n; i++)
        ok |= a->creds[i].basic == basic &&
              tc_secret_equal(given, given_len, a->creds[i].text, a->creds[i].len);
    tc_secret_wipe(decoded, sizeof(decoded));
    return ok ? 0 : 401;
}
