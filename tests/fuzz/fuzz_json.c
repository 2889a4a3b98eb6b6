/*
 * fuzz_json.c -- libFuzzer target for the strict JSON DOM parser and the writer (core/json.h).
 *
 * The first byte picks the limits (depth, node cap, whether \u0000 is allowed), the rest is the
 * document; libFuzzer's buffer is exactly that size, so ASan reports any read past the end. On
 * top of "no crash, no UB, no leak":
 *   - a failure is TC_ERR_INVALID with a non-empty message;
 *   - every string and member name of an accepted document is valid UTF-8 (checked by an
 *     independent decoder written here), its length is right, and it has no NUL unless allowed;
 *   - every number is finite;
 *   - writing the document and parsing that text again gives an equal document, and writing that
 *     one gives the same text (the writer's output is a fixed point);
 *   - the depth and node caps hold.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s\n", what);
        abort();
    }
}

/* Independent UTF-8 check: decode each code point and test its range. */
static int fz_utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i], len;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
            min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
            min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static void fz_walk(const tc_json *v, unsigned depth, const tc_json_limits *lim, size_t *nodes)
{
    (*nodes)++;
    fz_require(depth <= lim->max_depth + 1, "depth cap");
    switch (v->type) {
    case TC_JSON_STRING:
        fz_require(fz_utf8_ok((const unsigned char *)v->u.str, v->len), "string is UTF-8");
        fz_require(v->u.str[v->len] == '\0', "string NUL-terminated");
        fz_require(lim->allow_nul || strlen(v->u.str) == v->len, "no NUL in string");
        break;
    case TC_JSON_NUMBER:
        fz_require(isfinite(v->u.num.value), "finite number");
        fz_require(strlen(v->u.num.text) == v->len, "number text length");
        break;
    case TC_JSON_ARRAY:
        for (size_t i = 0; i < v->len; i++)
            fz_walk(v->u.items[i], depth + 1, lim, nodes);
        break;
    case TC_JSON_OBJECT:
        for (size_t i = 0; i < v->len; i++) {
            const tc_json_member *m = &v->u.members[i];
            fz_require(fz_utf8_ok((const unsigned char *)m->key, m->key_len), "key is UTF-8");
            fz_require(lim->allow_nul || strlen(m->key) == m->key_len, "no NUL in key");
            for (size_t k = 0; k < i && v->len < 64; k++)
                fz_require(m->key_len != v->u.members[k].key_len ||
                               memcmp(m->key, v->u.members[k].key, m->key_len),
                           "no duplicate keys");
            fz_walk(m->value, depth + 1, lim, nodes);
        }
        break;
    default:
        break;
    }
}

static char *fz_write(const tc_json *v, size_t *len)
{
    tc_jbuf b;

    tc_jbuf_init(&b, 0);
    tc_jbuf_value(&b, v);
    return tc_jbuf_take(&b, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned depths[] = {1, 2, 8, 64};
    tc_json_limits lim;
    char errstr[TC_ERRSTR_MAX];
    tc_json_doc *doc, *again;
    char *text, *text2;
    size_t len, len2, nodes = 0;
    tc_err err;

    if (size < 1)
        return 0;
    memset(&lim, 0, sizeof(lim));
    lim.max_depth = depths[data[0] & 3];
    lim.max_nodes = (data[0] & 4) ? 16 : 100000;
    lim.allow_nul = (data[0] & 8) != 0;
    lim.max_bytes = 1 << 20;
    data++;
    size--;

    errstr[0] = '\0';
    doc = tc_json_parse((const char *)data, size, &lim, &err, errstr, sizeof(errstr));
    if (!doc) {
        fz_require(err == TC_ERR_INVALID || err == TC_ERR_NOMEM, "error code");
        fz_require(errstr[0] != '\0', "error message");
        return 0;
    }
    fz_require(err == TC_OK, "ok code");
    fz_walk(tc_json_root(doc), 0, &lim, &nodes);
    fz_require(nodes <= lim.max_nodes, "node cap");

    text = fz_write(tc_json_root(doc), &len);
    fz_require(text != NULL, "writer succeeds");
    again = tc_json_parse(text, len, &lim, &err, errstr, sizeof(errstr));
    if (!again)
        fprintf(stderr, "re-parse failed: %s\n%s\n", errstr, text);
    fz_require(again != NULL, "written text parses again");
    fz_require(tc_json_equal(tc_json_root(doc), tc_json_root(again)), "round trip is equal");
    text2 = fz_write(tc_json_root(again), &len2);
    fz_require(text2 && len2 == len && !memcmp(text, text2, len), "writer output is a fixed point");
    free(text);
    free(text2);
    tc_json_free(again);
    tc_json_free(doc);
    return 0;
}
