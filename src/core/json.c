/*
 * json.c -- strict JSON DOM parser and JSON writer; see json.h.
 *
 * The parser is iterative: an explicit stack of open containers and one growable vector of the
 * children parsed so far. When a container closes, its children are copied out of the vector into
 * the document arena as one array, so every node and every array lives in the arena and one free
 * releases the document.
 */
#include "core/json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"

struct tc_json_doc {
    tc_arena arena;
    const tc_json *root;
};

typedef struct tc_json_frame {
    tc_json *node;   /* the open container */
    size_t first;    /* index of its first child in the pending vector */
    const char *key; /* object: name of the member whose value is being parsed */
    size_t key_len;
} tc_json_frame;

typedef struct tc_json_parser {
    const char *buf;
    size_t len, pos;
    tc_json_limits lim;
    size_t nodes;
    tc_json_doc *doc;
    tc_json_frame *frames;
    unsigned depth;
    tc_json_member *pending;
    size_t npending, cap_pending;
    tc_err err;
    char *errstr;
    size_t errstr_size;
} tc_json_parser;

static const tc_json tc_json_null_node = {TC_JSON_NULL, 0, {NULL}};

static int tc_json_fail(tc_json_parser *p, tc_err err, const char *what)
{
    if (p->err == TC_OK) {
        p->err = err;
        if (err == TC_ERR_NOMEM)
            tc_err_set(err, p->errstr, p->errstr_size, "out of memory parsing JSON");
        else
            tc_err_set(err, p->errstr, p->errstr_size, "invalid JSON at byte %zu: %s", p->pos,
                       what);
    }
    return -1;
}

/* Length of the valid UTF-8 sequence at s[0..n) (n > 0), or 0 when it is not valid. */
static size_t tc_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0) /* overlong */
            return 0;
        if (c == 0xED && s[1] >= 0xA0) /* UTF-16 surrogate */
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) /* overlong */
            return 0;
        if (c == 0xF4 && s[1] >= 0x90) /* above U+10FFFF */
            return 0;
        return 4;
    }
    return 0;
}

int tc_json_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = tc_utf8_seq(u + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

static size_t tc_utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int tc_hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void tc_json_skip_ws(tc_json_parser *p)
{
    while (p->pos < p->len) {
        char c = p->buf[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static tc_json *tc_json_new_node(tc_json_parser *p, tc_json_type type)
{
    tc_json *n;

    if (++p->nodes > p->lim.max_nodes) {
        tc_json_fail(p, TC_ERR_INVALID, "too many values");
        return NULL;
    }
    n = tc_arena_alloc(&p->doc->arena, sizeof(*n));
    if (!n) {
        tc_json_fail(p, TC_ERR_NOMEM, NULL);
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    n->type = type;
    return n;
}

/* Parse the string starting at the opening quote at p->pos; *out and *out_len get the decoded
 * text (NUL-terminated, in the arena). */
static int tc_json_parse_string(tc_json_parser *p, const char **out, size_t *out_len)
{
    size_t start = ++p->pos, end = start, n = 0;
    char *dst;

    /* Find the closing quote first so the decoded text gets one allocation of a known bound. */
    while (end < p->len && p->buf[end] != '"') {
        if (p->buf[end] == '\\')
            end++;
        end++;
    }
    if (end >= p->len) {
        p->pos = p->len;
        return tc_json_fail(p, TC_ERR_INVALID, "unterminated string");
    }
    dst = tc_arena_alloc(&p->doc->arena, end - start + 1);
    if (!dst)
        return tc_json_fail(p, TC_ERR_NOMEM, NULL);
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->buf[p->pos];
        if (c < 0x20)
            return tc_json_fail(p, TC_ERR_INVALID, "control character in string");
        if (c == '\\') {
            char e = p->buf[p->pos + 1];
            uint32_t cp, lo;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                dst[n++] = e;
                p->pos += 2;
                continue;
            case 'b':
                dst[n++] = '\b';
                p->pos += 2;
                continue;
            case 'f':
                dst[n++] = '\f';
                p->pos += 2;
                continue;
            case 'n':
                dst[n++] = '\n';
                p->pos += 2;
                continue;
            case 'r':
                dst[n++] = '\r';
                p->pos += 2;
                continue;
            case 't':
                dst[n++] = '\t';
                p->pos += 2;
                continue;
            case 'u':
                break;
            default:
                return tc_json_fail(p, TC_ERR_INVALID, "invalid escape");
            }
            if (end - p->pos < 6 || tc_hex4(p->buf + p->pos + 2, &cp) < 0)
                return tc_json_fail(p, TC_ERR_INVALID, "invalid \\u escape");
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return tc_json_fail(p, TC_ERR_INVALID, "lone low surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p->pos < 12 || p->buf[p->pos + 6] != '\\' || p->buf[p->pos + 7] != 'u' ||
                    tc_hex4(p->buf + p->pos + 8, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return tc_json_fail(p, TC_ERR_INVALID, "lone high surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p->pos += 6;
            }
            if (cp == 0 && !p->lim.allow_nul)
                return tc_json_fail(p, TC_ERR_INVALID, "\\u0000 in string");
            /* A \uXXXX escape (6 bytes, or 12 for a pair) never decodes to more bytes. */
            n += tc_utf8_put(dst + n, cp);
            p->pos += 6;
            continue;
        }
        if (c < 0x80) {
            dst[n++] = (char)c;
            p->pos++;
        } else {
            size_t k = tc_utf8_seq((const unsigned char *)p->buf + p->pos, end - p->pos);
            if (!k)
                return tc_json_fail(p, TC_ERR_INVALID, "invalid UTF-8");
            memcpy(dst + n, p->buf + p->pos, k);
            n += k;
            p->pos += k;
        }
    }
    dst[n] = '\0';
    p->pos = end + 1;
    *out = dst;
    *out_len = n;
    return 0;
}

static int tc_json_parse_number(tc_json_parser *p, tc_json *node)
{
    size_t start = p->pos, i = p->pos;
    char *text, *endp;
    double v;

    if (i < p->len && p->buf[i] == '-')
        i++;
    if (i >= p->len || p->buf[i] < '0' || p->buf[i] > '9')
        return tc_json_fail(p, TC_ERR_INVALID, "invalid number");
    if (p->buf[i] == '0') {
        i++;
        if (i < p->len && p->buf[i] >= '0' && p->buf[i] <= '9')
            return tc_json_fail(p, TC_ERR_INVALID, "leading zero in number");
    } else {
        while (i < p->len && p->buf[i] >= '0' && p->buf[i] <= '9')
            i++;
    }
    if (i < p->len && p->buf[i] == '.') {
        i++;
        if (i >= p->len || p->buf[i] < '0' || p->buf[i] > '9') {
            p->pos = i;
            return tc_json_fail(p, TC_ERR_INVALID, "digit expected after decimal point");
        }
        while (i < p->len && p->buf[i] >= '0' && p->buf[i] <= '9')
            i++;
    }
    if (i < p->len && (p->buf[i] == 'e' || p->buf[i] == 'E')) {
        i++;
        if (i < p->len && (p->buf[i] == '+' || p->buf[i] == '-'))
            i++;
        if (i >= p->len || p->buf[i] < '0' || p->buf[i] > '9') {
            p->pos = i;
            return tc_json_fail(p, TC_ERR_INVALID, "digit expected in exponent");
        }
        while (i < p->len && p->buf[i] >= '0' && p->buf[i] <= '9')
            i++;
    }
    text = tc_arena_strndup(&p->doc->arena, p->buf + start, i - start);
    if (!text)
        return tc_json_fail(p, TC_ERR_NOMEM, NULL);
    errno = 0;
    v = strtod(text, &endp);
    if (*endp || isinf(v))
        return tc_json_fail(p, TC_ERR_INVALID, "number out of range");
    node->len = i - start;
    node->u.num.text = text;
    node->u.num.value = v;
    p->pos = i;
    return 0;
}

static int tc_json_literal(tc_json_parser *p, const char *word)
{
    size_t n = strlen(word);

    if (p->len - p->pos < n || memcmp(p->buf + p->pos, word, n) != 0)
        return tc_json_fail(p, TC_ERR_INVALID, "unexpected character");
    p->pos += n;
    return 0;
}

static int tc_json_push_pending(tc_json_parser *p, const char *key, size_t key_len,
                                const tc_json *v)
{
    if (p->npending == p->cap_pending) {
        size_t cap = p->cap_pending ? p->cap_pending * 2 : 64;
        tc_json_member *n = realloc(p->pending, cap * sizeof(*n));
        if (!n)
            return tc_json_fail(p, TC_ERR_NOMEM, NULL);
        p->pending = n;
        p->cap_pending = cap;
    }
    p->pending[p->npending].key = key;
    p->pending[p->npending].key_len = key_len;
    p->pending[p->npending].value = v;
    p->npending++;
    return 0;
}

static int tc_member_cmp(const void *a, const void *b)
{
    const tc_json_member *x = *(const tc_json_member *const *)a;
    const tc_json_member *y = *(const tc_json_member *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);

    if (c)
        return c;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

static int tc_json_has_duplicates(tc_json_parser *p, const tc_json_member *m, size_t n)
{
    const tc_json_member **sorted;
    int dup = 0;

    if (n < 2)
        return 0;
    if (n <= 16) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (m[i].key_len == m[j].key_len && !memcmp(m[i].key, m[j].key, m[i].key_len))
                    return 1;
        return 0;
    }
    sorted = malloc(n * sizeof(*sorted));
    if (!sorted)
        return tc_json_fail(p, TC_ERR_NOMEM, NULL);
    for (size_t i = 0; i < n; i++)
        sorted[i] = &m[i];
    qsort(sorted, n, sizeof(*sorted), tc_member_cmp);
    for (size_t i = 1; i < n && !dup; i++)
        dup = tc_member_cmp(&sorted[i - 1], &sorted[i]) == 0;
    free(sorted);
    return dup;
}

/* Close the innermost container: move its children from the pending vector into the arena. */
static tc_json *tc_json_close(tc_json_parser *p)
{
    tc_json_frame *f = &p->frames[--p->depth];
    tc_json *node = f->node;
    size_t n = p->npending - f->first;
    const tc_json_member *kids = n ? p->pending + f->first : NULL;

    node->len = n;
    if (node->type == TC_JSON_OBJECT) {
        tc_json_member *m = NULL;
        int dup = tc_json_has_duplicates(p, kids, n);
        if (dup < 0)
            return NULL;
        if (dup) {
            tc_json_fail(p, TC_ERR_INVALID, "duplicate member name in object");
            return NULL;
        }
        if (n) {
            m = tc_arena_alloc(&p->doc->arena, n * sizeof(*m));
            if (!m) {
                tc_json_fail(p, TC_ERR_NOMEM, NULL);
                return NULL;
            }
            memcpy(m, kids, n * sizeof(*m));
        }
        node->u.members = m;
    } else {
        const tc_json **items = NULL;
        if (n) {
            items = tc_arena_alloc(&p->doc->arena, n * sizeof(*items));
            if (!items) {
                tc_json_fail(p, TC_ERR_NOMEM, NULL);
                return NULL;
            }
            for (size_t i = 0; i < n; i++)
                items[i] = kids[i].value;
        }
        node->u.items = items;
    }
    p->npending = f->first;
    return node;
}

/* Expect a member name and a colon inside the innermost (object) frame. */
static int tc_json_member_key(tc_json_parser *p)
{
    tc_json_frame *f = &p->frames[p->depth - 1];

    tc_json_skip_ws(p);
    if (p->pos >= p->len || p->buf[p->pos] != '"')
        return tc_json_fail(p, TC_ERR_INVALID, "member name expected");
    if (tc_json_parse_string(p, &f->key, &f->key_len) < 0)
        return -1;
    tc_json_skip_ws(p);
    if (p->pos >= p->len || p->buf[p->pos] != ':')
        return tc_json_fail(p, TC_ERR_INVALID, "':' expected after member name");
    p->pos++;
    return 0;
}

static int tc_json_run(tc_json_parser *p)
{
    for (;;) {
        tc_json *v = NULL;
        char c;

        /* Parse one value (or open a container). */
        tc_json_skip_ws(p);
        if (p->pos >= p->len)
            return tc_json_fail(p, TC_ERR_INVALID, "value expected");
        c = p->buf[p->pos];
        if (c == '{' || c == '[') {
            tc_json *node = tc_json_new_node(p, c == '{' ? TC_JSON_OBJECT : TC_JSON_ARRAY);
            if (!node)
                return -1;
            if (p->depth >= p->lim.max_depth)
                return tc_json_fail(p, TC_ERR_INVALID, "nesting too deep");
            p->frames[p->depth].node = node;
            p->frames[p->depth].first = p->npending;
            p->frames[p->depth].key = NULL;
            p->frames[p->depth].key_len = 0;
            p->depth++;
            p->pos++;
            tc_json_skip_ws(p);
            if (p->pos < p->len && p->buf[p->pos] == (c == '{' ? '}' : ']')) {
                p->pos++;
                v = tc_json_close(p);
                if (!v)
                    return -1;
            } else {
                if (c == '{' && tc_json_member_key(p) < 0)
                    return -1;
                continue;
            }
        } else if (c == '"') {
            v = tc_json_new_node(p, TC_JSON_STRING);
            if (!v || tc_json_parse_string(p, &v->u.str, &v->len) < 0)
                return -1;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            v = tc_json_new_node(p, TC_JSON_NUMBER);
            if (!v || tc_json_parse_number(p, v) < 0)
                return -1;
        } else if (c == 't' || c == 'f' || c == 'n') {
            tc_json_type t = c == 't' ? TC_JSON_TRUE : c == 'f' ? TC_JSON_FALSE : TC_JSON_NULL;
            v = tc_json_new_node(p, t);
            if (!v || tc_json_literal(p, c == 't' ? "true" : c == 'f' ? "false" : "null") < 0)
                return -1;
        } else {
            return tc_json_fail(p, TC_ERR_INVALID, "unexpected character");
        }

        /* A value is complete: attach it to its container, closing containers as they end. */
        for (;;) {
            tc_json_frame *f;
            if (p->depth == 0) {
                p->doc->root = v;
                return 0;
            }
            f = &p->frames[p->depth - 1];
            if (tc_json_push_pending(p, f->key, f->key_len, v) < 0)
                return -1;
            tc_json_skip_ws(p);
            if (p->pos >= p->len)
                return tc_json_fail(p, TC_ERR_INVALID, "unexpected end of input");
            c = p->buf[p->pos];
            if (c == ',') {
                p->pos++;
                if (f->node->type == TC_JSON_OBJECT && tc_json_member_key(p) < 0)
                    return -1;
                break;
            }
            if (c != (f->node->type == TC_JSON_OBJECT ? '}' : ']'))
                return tc_json_fail(p, TC_ERR_INVALID,
                                    f->node->type == TC_JSON_OBJECT ? "',' or '}' expected"
                                                                    : "',' or ']' expected");
            p->pos++;
            v = tc_json_close(p);
            if (!v)
                return -1;
        }
    }
}

tc_json_doc *tc_json_parse(const char *buf, size_t len, const tc_json_limits *lim, tc_err *err,
                           char *errstr, size_t errstr_size)
{
    tc_json_parser p;
    size_t block;

    memset(&p, 0, sizeof(p));
    p.buf = buf ? buf : "";
    p.len = buf ? len : 0;
    if (lim)
        p.lim = *lim;
    if (!p.lim.max_bytes)
        p.lim.max_bytes = TC_JSON_MAX_BYTES_DEFAULT;
    if (!p.lim.max_depth)
        p.lim.max_depth = TC_JSON_MAX_DEPTH_DEFAULT;
    if (p.lim.max_depth > TC_JSON_MAX_DEPTH_LIMIT)
        p.lim.max_depth = TC_JSON_MAX_DEPTH_LIMIT;
    if (!p.lim.max_nodes)
        p.lim.max_nodes = TC_JSON_MAX_NODES_DEFAULT;
    p.errstr = errstr;
    p.errstr_size = errstr_size;
    if (errstr && errstr_size)
        errstr[0] = '\0';

    if (p.len > p.lim.max_bytes) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "JSON document of %zu bytes exceeds %zu",
                   p.len, p.lim.max_bytes);
        if (err)
            *err = TC_ERR_INVALID;
        return NULL;
    }
    p.doc = calloc(1, sizeof(*p.doc));
    p.frames = malloc((size_t)p.lim.max_depth * sizeof(*p.frames));
    if (!p.doc || !p.frames) {
        free(p.doc);
        free(p.frames);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory parsing JSON");
        if (err)
            *err = TC_ERR_NOMEM;
        return NULL;
    }
    block = p.len * 2 + 256;
    tc_arena_init(&p.doc->arena, block < 65536 ? block : 65536, 0);

    if (tc_json_run(&p) == 0) {
        tc_json_skip_ws(&p);
        if (p.pos != p.len)
            tc_json_fail(&p, TC_ERR_INVALID, "trailing characters after the value");
    }
    free(p.frames);
    free(p.pending);
    if (p.err != TC_OK) {
        tc_json_free(p.doc);
        if (err)
            *err = p.err;
        return NULL;
    }
    if (err)
        *err = TC_OK;
    return p.doc;
}

const tc_json *tc_json_root(const tc_json_doc *doc)
{
    return doc && doc->root ? doc->root : &tc_json_null_node;
}

void tc_json_free(tc_json_doc *doc)
{
    if (!doc)
        return;
    tc_arena_free(&doc->arena);
    free(doc);
}

const tc_json *tc_json_get(const tc_json *v, const char *key)
{
    size_t n;

    if (!v || v->type != TC_JSON_OBJECT)
        return NULL;
    n = strlen(key);
    for (size_t i = 0; i < v->len; i++) {
        if (v->u.members[i].key_len == n && !memcmp(v->u.members[i].key, key, n))
            return v->u.members[i].value;
    }
    return NULL;
}

const char *tc_json_string(const tc_json *v)
{
    return v && v->type == TC_JSON_STRING ? v->u.str : NULL;
}

int tc_json_int64(const tc_json *v, int64_t *out)
{
    char *end;
    long long x;

    if (!v || v->type != TC_JSON_NUMBER || strpbrk(v->u.num.text, ".eE"))
        return 0;
    errno = 0;
    x = strtoll(v->u.num.text, &end, 10);
    if (errno || *end)
        return 0;
    *out = (int64_t)x;
    return 1;
}

int tc_json_equal(const tc_json *a, const tc_json *b)
{
    int64_t x, y;

    if (a == b)
        return 1;
    if (!a || !b || a->type != b->type)
        return 0;
    switch (a->type) {
    case TC_JSON_NULL:
    case TC_JSON_TRUE:
    case TC_JSON_FALSE:
        return 1;
    case TC_JSON_NUMBER:
        if (tc_json_int64(a, &x) && tc_json_int64(b, &y))
            return x == y;
        return a->u.num.value == b->u.num.value;
    case TC_JSON_STRING:
        return a->len == b->len && !memcmp(a->u.str, b->u.str, a->len);
    case TC_JSON_ARRAY:
        if (a->len != b->len)
            return 0;
        for (size_t i = 0; i < a->len; i++)
            if (!tc_json_equal(a->u.items[i], b->u.items[i]))
                return 0;
        return 1;
    case TC_JSON_OBJECT:
        if (a->len != b->len)
            return 0;
        for (size_t i = 0; i < a->len; i++) {
            const tc_json_member *m = &a->u.members[i];
            const tc_json *other = NULL;
            for (size_t j = 0; j < b->len && !other; j++)
                if (b->u.members[j].key_len == m->key_len &&
                    !memcmp(b->u.members[j].key, m->key, m->key_len))
                    other = b->u.members[j].value;
            if (!other || !tc_json_equal(m->value, other))
                return 0;
        }
        return 1;
    }
    return 0;
}

/* ---- writer ---- */

void tc_jbuf_init(tc_jbuf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void tc_jbuf_free(tc_jbuf *b)
{
    free(b->data);
    tc_jbuf_init(b, b->max);
}

void tc_jbuf_reset(tc_jbuf *b)
{
    b->len = 0;
    b->failed = 0;
    b->depth = 0;
    b->after_key = 0;
    memset(b->need_comma, 0, sizeof(b->need_comma));
    if (b->data)
        b->data[0] = '\0';
}

int tc_jbuf_failed(const tc_jbuf *b)
{
    return b->failed;
}

char *tc_jbuf_take(tc_jbuf *b, size_t *len)
{
    char *d = b->data;
    size_t max = b->max;

    if (b->failed || !d) {
        if (!b->failed && !d) {
            d = calloc(1, 1);
            if (len)
                *len = 0;
            tc_jbuf_free(b);
            return d;
        }
        tc_jbuf_free(b);
        return NULL;
    }
    if (len)
        *len = b->len;
    tc_jbuf_init(b, max);
    return d;
}

void tc_jbuf_append(tc_jbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->max && (b->len + n > b->max || b->len + n < b->len)) {
        b->failed = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *d;
        while (cap < b->len + n + 1)
            cap *= 2;
        d = realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* Separator logic before a value or a key. */
static void tc_jbuf_sep(tc_jbuf *b)
{
    if (b->after_key) {
        b->after_key = 0;
        return;
    }
    if (b->need_comma[b->depth / 8] & (1u << (b->depth % 8)))
        tc_jbuf_append(b, ",", 1);
    b->need_comma[b->depth / 8] |= (unsigned char)(1u << (b->depth % 8));
}

static void tc_jbuf_open(tc_jbuf *b, char c)
{
    tc_jbuf_sep(b);
    tc_jbuf_append(b, &c, 1);
    if (b->depth >= TC_JBUF_DEPTH_MAX) {
        b->failed = 1;
        return;
    }
    b->depth++;
    b->need_comma[b->depth / 8] &= (unsigned char)~(1u << (b->depth % 8));
}

static void tc_jbuf_close(tc_jbuf *b, char c)
{
    if (b->depth == 0) {
        b->failed = 1;
        return;
    }
    b->depth--;
    tc_jbuf_append(b, &c, 1);
}

void tc_jbuf_obj_begin(tc_jbuf *b)
{
    tc_jbuf_open(b, '{');
}

void tc_jbuf_obj_end(tc_jbuf *b)
{
    tc_jbuf_close(b, '}');
}

void tc_jbuf_arr_begin(tc_jbuf *b)
{
    tc_jbuf_open(b, '[');
}

void tc_jbuf_arr_end(tc_jbuf *b)
{
    tc_jbuf_close(b, ']');
}

void tc_jbuf_escaped(tc_jbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;

    while (i < n) {
        unsigned char c = u[i];
        char esc[8];
        size_t k;

        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            run++;
            i++;
            continue;
        }
        if (c >= 0x80) {
            k = tc_utf8_seq(u + i, n - i);
            if (k) {
                run += k;
                i += k;
                continue;
            }
        }
        tc_jbuf_append(b, (const char *)u + i - run, run);
        run = 0;
        if (c >= 0x80) {
            tc_jbuf_append(b, "\xEF\xBF\xBD", 3); /* U+FFFD for a byte that is not UTF-8 */
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            tc_jbuf_append(b, esc, 2);
        } else if (c == '\n') {
            tc_jbuf_append(b, "\\n", 2);
        } else if (c == '\r') {
            tc_jbuf_append(b, "\\r", 2);
        } else if (c == '\t') {
            tc_jbuf_append(b, "\\t", 2);
        } else if (c == '\b') {
            tc_jbuf_append(b, "\\b", 2);
        } else if (c == '\f') {
            tc_jbuf_append(b, "\\f", 2);
        } else {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            tc_jbuf_append(b, esc, 6);
        }
        i++;
    }
    tc_jbuf_append(b, (const char *)u + i - run, run);
}

void tc_jbuf_key(tc_jbuf *b, const char *key)
{
    tc_jbuf_sep(b);
    tc_jbuf_append(b, "\"", 1);
    tc_jbuf_escaped(b, key, strlen(key));
    tc_jbuf_append(b, "\":", 2);
    b->after_key = 1;
}

void tc_jbuf_strn(tc_jbuf *b, const char *s, size_t n)
{
    tc_jbuf_sep(b);
    tc_jbuf_append(b, "\"", 1);
    tc_jbuf_escaped(b, s, n);
    tc_jbuf_append(b, "\"", 1);
}

void tc_jbuf_str(tc_jbuf *b, const char *s)
{
    tc_jbuf_strn(b, s, strlen(s));
}

void tc_jbuf_int(tc_jbuf *b, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);

    tc_jbuf_sep(b);
    tc_jbuf_append(b, tmp, (size_t)n);
}

int tc_fmt_double(char *buf, size_t cap, double v)
{
    int n = 0;

    /* 17 significant digits always round-trip; 15 or 16 usually do, and are what was written
     * (161.55, not 161.55000000000001). */
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, cap, "%.*g", prec, v);
        if (!isfinite(v) || strtod(buf, NULL) == v)
            break;
    }
    return n;
}

void tc_jbuf_double(tc_jbuf *b, double v)
{
    char tmp[TC_FMT_DOUBLE_MAX];
    int n;

    if (!isfinite(v)) {
        tc_jbuf_null(b);
        return;
    }
    n = tc_fmt_double(tmp, sizeof(tmp), v);
    tc_jbuf_sep(b);
    tc_jbuf_append(b, tmp, (size_t)n);
}

void tc_jbuf_bool(tc_jbuf *b, int v)
{
    tc_jbuf_sep(b);
    tc_jbuf_append(b, v ? "true" : "false", v ? 4 : 5);
}

void tc_jbuf_null(tc_jbuf *b)
{
    tc_jbuf_sep(b);
    tc_jbuf_append(b, "null", 4);
}

void tc_jbuf_raw(tc_jbuf *b, const char *json, size_t n)
{
    tc_jbuf_sep(b);
    tc_jbuf_append(b, json, n);
}

void tc_jbuf_value(tc_jbuf *b, const tc_json *v)
{
    /* Recursion depth is bounded by the parser's depth cap (at most TC_JSON_MAX_DEPTH_LIMIT). */
    switch (v->type) {
    case TC_JSON_NULL:
        tc_jbuf_null(b);
        break;
    case TC_JSON_TRUE:
    case TC_JSON_FALSE:
        tc_jbuf_bool(b, v->type == TC_JSON_TRUE);
        break;
    case TC_JSON_NUMBER:
        tc_jbuf_raw(b, v->u.num.text, v->len);
        break;
    case TC_JSON_STRING:
        tc_jbuf_strn(b, v->u.str, v->len);
        break;
    case TC_JSON_ARRAY:
        tc_jbuf_arr_begin(b);
        for (size_t i = 0; i < v->len && !b->failed; i++)
            tc_jbuf_value(b, v->u.items[i]);
        tc_jbuf_arr_end(b);
        break;
    case TC_JSON_OBJECT:
        tc_jbuf_obj_begin(b);
        for (size_t i = 0; i < v->len && !b->failed; i++) {
            const tc_json_member *m = &v->u.members[i];
            tc_jbuf_sep(b);
            tc_jbuf_append(b, "\"", 1);
            tc_jbuf_escaped(b, m->key, m->key_len);
            tc_jbuf_append(b, "\":", 2);
            b->after_key = 1;
            tc_jbuf_value(b, m->value);
        }
        tc_jbuf_obj_end(b);
        break;
    }
}
