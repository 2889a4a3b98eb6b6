/*
 * rest_params.h -- the REST API's request parameters: one declarative table per route, one strict
 * parser, Problem Details for every refusal, and signed pagination cursors.
 *
 * Every parameter a route takes is declared once (tc_rest_param_def): its name, type, bounds or
 * allowed values. The same declarations drive the parser below and the OpenAPI document
 * (rest_openapi.c), so the document cannot describe a parameter the server does not take, nor the
 * other way round. The parser is strict, because a typo that is silently ignored returns the wrong
 * data: an unknown parameter, a repeated one, an empty value, a value out of its bounds or not of
 * its type is refused with a tc_rest_problem naming the parameter (RFC 9457's "invalid-params").
 *
 * Cursors are opaque to clients and tamper-proof: "<payload>.<mac>", both base64url, where the
 * payload is "<route>|<key>" and the mac the first TC_REST_MAC_BYTES of HMAC-SHA256 under the
 * server's cursor secret. A cursor made for another route, cut, or edited is refused (400), so
 * the key inside it is trusted as far as its type goes; it is still only ever passed to SQL as a
 * bound parameter.
 *
 * Nothing here touches the network or the database: it is what the fuzz target and the unit tests
 * drive directly.
 */
#ifndef TC_API_REST_PARAMS_H
#define TC_API_REST_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Parameters one route may declare. */
#define TC_REST_PARAMS_MAX 12
/* Longest decoded value of a parameter (a device id, a glob, a cursor...). */
#define TC_REST_VALUE_MAX 512
/* Longest key a cursor carries and longest cursor text. */
#define TC_REST_CURSOR_KEY_MAX 256
#define TC_REST_CURSOR_MAX     512
/* Bytes of the HMAC-SHA256 kept in a cursor (128 bits: forging one is out of reach). */
#define TC_REST_MAC_BYTES 16
/* Cursor secret bytes used (longer secrets are hashed down by HMAC itself). */
#define TC_REST_SECRET_MAX 256
/* Caps of a Problem Details body's fields. */
#define TC_REST_PROBLEM_PARAM_MAX  64
#define TC_REST_PROBLEM_DETAIL_MAX 384

typedef enum tc_rest_ptype {
    TC_RP_STRING, /* printable text, 1..max_len bytes (max_len = `max`) */
    TC_RP_TIME,   /* RFC 3339 timestamp; num = microseconds since the epoch */
    TC_RP_INT,    /* integer in [min, max]; num */
    TC_RP_ENUM,   /* one of enums ("raw|1m|1h"); num = its index */
    TC_RP_TAG,    /* "key:value" (tag filter); text holds both, split at the first ':' */
    TC_RP_CURSOR, /* a cursor of this route; text = the key inside */
    TC_RP_IDS,    /* comma-separated positive integers, at most `max` of them */
} tc_rest_ptype;

typedef struct tc_rest_param_def {
    const char *name;
    tc_rest_ptype type;
    int required;
    int64_t min, max;  /* TC_RP_INT bounds; TC_RP_STRING and TC_RP_IDS: max length / count */
    const char *enums; /* TC_RP_ENUM: "a|b|c" */
    const char *desc;  /* one line, for the OpenAPI document */
} tc_rest_param_def;

typedef struct tc_rest_param_val {
    int present;
    char text[TC_REST_VALUE_MAX];
    int64_t num;
    size_t tag_split; /* TC_RP_TAG: index of the ':' in text */
} tc_rest_param_val;

/* An RFC 9457 problem: status, a short title, the parameter at fault (or "") and a detail. */
typedef struct tc_rest_problem {
    int status;
    const char *title; /* static */
    char param[TC_REST_PROBLEM_PARAM_MAX];
    char detail[TC_REST_PROBLEM_DETAIL_MAX];
} tc_rest_problem;

/* Set pb (status, title, param or NULL, printf detail); returns status for convenience. */
int tc_rest_problem_set(tc_rest_problem *pb, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The application/problem+json body of pb (malloc'ed, NUL-terminated; NULL when out of memory);
 * instance is the request path. */
char *tc_rest_problem_json(const tc_rest_problem *pb, const char *instance, size_t *len);

/* Cursor signing context: the route the cursor belongs to, the secret. */
typedef struct tc_rest_cursor_key {
    unsigned char secret[TC_REST_SECRET_MAX];
    size_t secret_len;
} tc_rest_cursor_key;

/* Parse query (raw, after '?') against defs[0..n): vals[i] for defs[i]. route names the route for
 * cursors (NULL when it takes none). 0, or the HTTP status (400) with pb set. */
int tc_rest_params_parse(const tc_rest_param_def *defs, size_t n, const char *query,
                         const tc_rest_cursor_key *ck, const char *route, tc_rest_param_val *vals,
                         tc_rest_problem *pb);

/* RFC 3339 ("2026-12-05T07:00:00Z", "...T07:00:00.123+02:00"), to microseconds. TC_OK or
 * TC_ERR_INVALID. */
tc_err tc_rest_parse_time(const char *s, int64_t *us);

/* A glob (`*` any run, `?` one character) as a LIKE pattern with '\' escapes, into out (cap).
 * TC_ERR_FULL when it does not fit. */
tc_err tc_rest_glob_to_like(const char *glob, char *out, size_t cap);

/* A cursor for route carrying key (no '|' needed: everything after the route's '|' is the key),
 * into out (TC_REST_CURSOR_MAX). TC_ERR_FULL when the key is too long. */
tc_err tc_rest_cursor_make(const tc_rest_cursor_key *ck, const char *route, const char *key,
                           char *out, size_t cap);
/* The key inside cursor when it is one of route's and its MAC is right; TC_ERR_INVALID else. */
tc_err tc_rest_cursor_open(const tc_rest_cursor_key *ck, const char *route, const char *cursor,
                           char *key, size_t cap);

#endif
