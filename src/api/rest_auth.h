/*
 * rest_auth.h -- who is calling the REST API, as which role, and whether they may call again now.
 *
 * Two kinds of callers: people and applications with a JWT (Authorization: Bearer ...), services
 * with an API key (X-API-Key: ...). Either way the outcome is a principal: a subject, one of the
 * API's PostgreSQL roles, and the claims (JSON) that the request's transaction exposes as
 * request.jwt.claims, as PostgREST does. Authorization itself lives in PostgreSQL: the request runs
 * as that role, so what a role may see is decided once, for every path into the data.
 *
 * Tokens: HS256 under api.jwt_secret, RS256 and ES256 under a public key of the JWKS file
 * (api.jwks_file) found by the token's kid. The algorithm is checked against the kind of key before
 * any signature is: a token whose header says "none", or HS256 when only public keys exist, or
 * RS256 for an EC key, is refused rather than verified with whatever key is at hand (the classic
 * HS/RS confusion, where a public key is used as an HMAC secret). exp and nbf are checked when
 * present; the role comes from the "role" claim and must be one of the API's roles.
 *
 * API keys are stored hashed: the keys file holds SHA-256 hex digests, never the keys, one line
 * "digest role name [sites]" each ('#' comments), sites "*" or "a,b" (the key's "sites" claim;
 * none when left out).
 *
 * Rate limits: a token bucket per principal (subject or key name), api.rate_per_s refill and
 * api.rate_burst size, in a fixed table of TC_REST_RATE_SLOTS buckets (the least recently used one
 * is reused when it is full, so a flood of subjects cannot grow memory).
 *
 * Thread-safe: the keys are read once at start; the buckets are under a mutex.
 */
#ifndef TC_API_REST_AUTH_H
#define TC_API_REST_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "api/rest_params.h"
#include "core/error.h"

#define TC_REST_SUBJECT_MAX 128
#define TC_REST_ROLE_MAX    64
#define TC_REST_CLAIMS_MAX  2048
/* Longest Authorization or X-API-Key value looked at. */
#define TC_REST_TOKEN_MAX 8192
/* Keys of the JWKS file and lines of the API keys file. */
#define TC_REST_JWKS_MAX    16
#define TC_REST_APIKEYS_MAX 1024
/* Rate-limit buckets held at once. */
#define TC_REST_RATE_SLOTS 4096

/* The API's roles, weakest first (the order is the privilege order). */
typedef enum tc_rest_role {
    TC_ROLE_VIEWER,
    TC_ROLE_ANALYST,
    TC_ROLE_OPERATOR,
    TC_ROLE_ADMIN,
    TC_ROLE__COUNT
} tc_rest_role;

/* "thermocline_viewer", ... */
const char *tc_rest_role_name(tc_rest_role r);

typedef struct tc_rest_principal {
    char subject[TC_REST_SUBJECT_MAX]; /* "sub" of the token, or "key:<name>" */
    tc_rest_role role;
    char claims[TC_REST_CLAIMS_MAX]; /* JSON object */
} tc_rest_principal;

typedef struct tc_rest_auth_options {
    const char *jwt_secret; /* HS256; NULL or "" = HS256 refused */
    const char *jwks_file;  /* RS256 / ES256 public keys; NULL or "" = none */
    const char *keys_file;  /* API keys; NULL or "" = none */
    double rate_per_s;
    int64_t rate_burst;
} tc_rest_auth_options;

typedef struct tc_rest_auth tc_rest_auth;

/* NULL with errstr set when a file cannot be read or holds a bad key (named with its line or
 * index). */
tc_rest_auth *tc_rest_auth_new(const tc_rest_auth_options *opt, char *errstr, size_t errstr_size);
void tc_rest_auth_destroy(tc_rest_auth *a);

/* Authenticate one request from its Authorization and X-API-Key headers (NULL when absent) at
 * now_s (seconds since the epoch). 0 with *out set, or 401 with pb set. */
int tc_rest_authenticate(tc_rest_auth *a, const char *authorization, const char *api_key,
                         int64_t now_s, tc_rest_principal *out, tc_rest_problem *pb);

/* Take one token of subject's bucket at now_us. 0 when allowed; else 429 with pb set and
 * *retry_after_s the whole seconds until a token is back (at least 1). */
int tc_rest_rate_take(tc_rest_auth *a, const char *subject, int64_t now_us, long *retry_after_s,
                      tc_rest_problem *pb);

/* SHA-256 of s as 64 lowercase hex digits (the form of the keys file). */
void tc_rest_sha256_hex(const char *s, size_t n, char out[65]);

#endif
