/*
 * json.h -- a small, strict JSON DOM parser and a JSON writer, for control-plane bodies.
 *
 * The hot path never uses this: readings go through the streaming decoder in
 * src/schema/json_reading.c. This is for the rare, small documents around it -- schema registry
 * requests and responses, Avro schemas, configuration -- where a tree is convenient and speed does
 * not matter, but hostile input does.
 *
 * Parsing is RFC 8259 strict: one value with optional surrounding whitespace (space, tab, CR, LF),
 * no comments, no trailing commas, no NaN or Infinity, no leading zeros, no single quotes, valid
 * UTF-8 only (no overlong forms, no surrogates encoded in UTF-8, nothing above U+10FFFF), escapes
 * limited to the eight of the RFC plus \uXXXX with proper surrogate pairs. Beyond the RFC:
 *   - duplicate member names in one object are refused (an Avro schema or a request body with two
 *     "type" members is ambiguous, and different parsers would pick different ones);
 *   - \u0000 is refused unless the limits allow it, so every string is also a valid C string;
 *   - numbers must fit a double (1e400 is refused rather than turned into infinity).
 * Every document is bounded by named caps: input bytes, nesting depth, number of nodes. The parser
 * does not recurse (it keeps an explicit stack); tc_json_equal and tc_jbuf_value do, at most as
 * deep as the document, which the depth cap bounds (TC_JSON_MAX_DEPTH_LIMIT at the very most).
 *
 * A parsed document owns all of its memory (one arena); tc_json_free releases it at once. Nodes are
 * read-only for callers.
 *
 * The writer (tc_jbuf) builds compact JSON text with commas placed automatically, escapes every
 * string properly (control characters, quotes, backslashes) and replaces bytes that are not valid
 * UTF-8 with U+FFFD, so its output is always valid JSON whatever it was given. It has a size cap
 * and sticky failure: once an append fails (out of memory or past the cap) every later call is a
 * no-op and tc_jbuf_failed() says so.
 */
#ifndef TC_CORE_JSON_H
#define TC_CORE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Default caps: a control-plane body is small. */
#define TC_JSON_MAX_BYTES_DEFAULT (1024 * 1024)
#define TC_JSON_MAX_DEPTH_DEFAULT 64
#define TC_JSON_MAX_NODES_DEFAULT 100000
/* Hard ceiling on depth, whatever the caller asks for. */
#define TC_JSON_MAX_DEPTH_LIMIT 1024

typedef struct tc_json_limits {
    size_t max_bytes;   /* input longer than this is refused (0 = default) */
    unsigned max_depth; /* arrays and objects nested deeper are refused (0 = default) */
    size_t max_nodes;   /* values in the document, containers included (0 = default) */
    int allow_nul;      /* accept \u0000 in strings (then len, not strlen, is the length) */
} tc_json_limits;

typedef enum tc_json_type {
    TC_JSON_NULL,
    TC_JSON_FALSE,
    TC_JSON_TRUE,
    TC_JSON_NUMBER,
    TC_JSON_STRING,
    TC_JSON_ARRAY,
    TC_JSON_OBJECT
} tc_json_type;

typedef struct tc_json tc_json;

typedef struct tc_json_member {
    const char *key; /* decoded UTF-8, NUL-terminated */
    size_t key_len;
    const tc_json *value;
} tc_json_member;

struct tc_json {
    tc_json_type type;
    size_t len; /* string: bytes; number: bytes of its text; array: items; object: members */
    union {
        const char *str; /* STRING: decoded UTF-8, NUL-terminated */
        struct {
            const char *text; /* the literal as written, NUL-terminated */
            double value;
        } num;
        const tc_json *const *items;   /* ARRAY */
        const tc_json_member *members; /* OBJECT, in document order */
    } u;
};

typedef struct tc_json_doc tc_json_doc;

/*
 * Parse buf[0..len) (need not be NUL-terminated) under lim (NULL = all defaults). Returns the
 * document, or NULL with a message in errstr that gives the byte offset of the problem. *err (if
 * not NULL) receives TC_ERR_INVALID for bad input (or a cap exceeded) and TC_ERR_NOMEM when out of
 * memory.
 */
tc_json_doc *tc_json_parse(const char *buf, size_t len, const tc_json_limits *lim, tc_err *err,
                           char *errstr, size_t errstr_size);

/* The root value of a document. */
const tc_json *tc_json_root(const tc_json_doc *doc);

/* Free a document and every node in it. NULL is fine. */
void tc_json_free(tc_json_doc *doc);

/* Member of an object by name (NULL when v is not an object or has no such member). */
const tc_json *tc_json_get(const tc_json *v, const char *key);

/* The string of v if it is a string, else NULL. */
const char *tc_json_string(const tc_json *v);

/* Nonzero and *out set when v is a number written as an integer (no fraction, no exponent) that
 * fits int64_t. */
int tc_json_int64(const tc_json *v, int64_t *out);

/* Structural equality: same types, equal strings, numerically equal numbers, arrays equal item by
 * item, objects with the same members (in any order). */
int tc_json_equal(const tc_json *a, const tc_json *b);

/* Check that s[0..len) is valid UTF-8 (same rules as the parser). */
int tc_json_utf8_valid(const char *s, size_t len);

/* ---- the writer ---- */

/* Nesting the writer tracks for automatic commas (enough for any parsed document). */
#define TC_JBUF_DEPTH_MAX TC_JSON_MAX_DEPTH_LIMIT

typedef struct tc_jbuf {
    char *data; /* NUL-terminated when not failed */
    size_t len, cap, max;
    int failed;
    unsigned depth;
    unsigned char need_comma[TC_JBUF_DEPTH_MAX / 8 + 1]; /* bit per level: not the first */
    int after_key;
} tc_jbuf;

/* Start an empty buffer that may grow to max bytes (0 = unbounded). Allocates nothing yet. */
void tc_jbuf_init(tc_jbuf *b, size_t max);
void tc_jbuf_free(tc_jbuf *b);
/* Forget the content (keeps the allocation). */
void tc_jbuf_reset(tc_jbuf *b);
int tc_jbuf_failed(const tc_jbuf *b);
/* Hand the text over to the caller (malloc'ed, NUL-terminated; free() it) and reset b. NULL when
 * the buffer failed. */
char *tc_jbuf_take(tc_jbuf *b, size_t *len);

void tc_jbuf_obj_begin(tc_jbuf *b);
void tc_jbuf_obj_end(tc_jbuf *b);
void tc_jbuf_arr_begin(tc_jbuf *b);
void tc_jbuf_arr_end(tc_jbuf *b);
/* A member name inside an object; the next value call is its value. */
void tc_jbuf_key(tc_jbuf *b, const char *key);
void tc_jbuf_str(tc_jbuf *b, const char *s);
void tc_jbuf_strn(tc_jbuf *b, const char *s, size_t n);
void tc_jbuf_int(tc_jbuf *b, int64_t v);
void tc_jbuf_double(tc_jbuf *b, double v); /* finite: shortest round-trip form; else null */

/* Room for any double in tc_fmt_double's form ("-1.2345678901234567e-308"). */
#define TC_FMT_DOUBLE_MAX 32
/* v in the shortest of %.15g, %.16g and %.17g that reads back as v (161.55 stays "161.55");
 * "nan", "inf" as %g writes them. Returns snprintf's count. */
int tc_fmt_double(char *buf, size_t cap, double v);
void tc_jbuf_bool(tc_jbuf *b, int v);
void tc_jbuf_null(tc_jbuf *b);
/* A value that is already JSON text (trusted: not checked). */
void tc_jbuf_raw(tc_jbuf *b, const char *json, size_t n);
/* A parsed value, written compactly (member order kept). */
void tc_jbuf_value(tc_jbuf *b, const tc_json *v);
/* Raw bytes appended without any separator logic (for building non-JSON text too). */
void tc_jbuf_append(tc_jbuf *b, const char *s, size_t n);
/* The escaped form of s[0..n) without quotes (what tc_jbuf_strn writes between them). */
void tc_jbuf_escaped(tc_jbuf *b, const char *s, size_t n);

#endif
