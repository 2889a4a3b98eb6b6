/*
 * http_auth.h -- who may call an HTTP server's writes: Basic credentials and bearer tokens.
 *
 * Confluent's clients send `basic.auth.user.info` (user:password) as HTTP Basic authentication,
 * and some deployments put a bearer token in front; both are accepted when configured. The rule
 * is by method: GET and HEAD are reads, every other method a write. Writes always need
 * credentials once any are configured; reads need them unless read_open. Credentials come from
 * files (users: user:password lines; tokens: one a line; '#' starts a comment line), read once at
 * start and held in memory that is wiped when the table is destroyed. Comparison takes a time that
 * does not depend on how much of a guess was right.
 */
#ifndef TC_API_HTTP_AUTH_H
#define TC_API_HTTP_AUTH_H

#include <stddef.h>

#include "core/error.h"

/* Credentials (users plus tokens) one table holds at most. */
#define TC_HTTP_AUTH_MAX 256

typedef struct tc_http_auth tc_http_auth;

/* The table from users_file and tokens_file (either may be NULL or "": none). NULL with errstr
 * naming the file and line on error; a table with no credential at all is an error too, since it
 * would refuse every write. Files readable by every user are refused. */
tc_http_auth *tc_http_auth_new(const char *users_file, const char *tokens_file, int read_open,
                               char *errstr, size_t errstr_size);

/* A table from memory (tests and fuzzing): users_text as users_file's content, tokens_text as
 * tokens_file's (NULL: none). */
tc_http_auth *tc_http_auth_new_text(const char *users_text, const char *tokens_text, int read_open,
                                    char *errstr, size_t errstr_size);

void tc_http_auth_destroy(tc_http_auth *a);

/* What a request with this method and Authorization header (NULL: none) gets: 0 allowed, 401
 * when credentials are missing or wrong. a NULL allows everything. */
int tc_http_auth_check(const tc_http_auth *a, const char *method, const char *authorization);

#endif
