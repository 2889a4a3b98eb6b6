/*
 * rest_params.c -- strict parameter parsing, Problem Details and signed cursors; see
 * rest_params.h.
 *
 * The query string is walked once, pair by pair, with the same percent-decoding as the router
 * (api/http.c): a pair is matched to its declaration by its decoded name, so "%6Cimit" is "limit"
 * and cannot slip past the duplicate check.
 */
#include "api/rest_params.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "core/base64.h"
#include "core/json.h"
#include "core/timeutil.h"

/* Longest parameter name looked at (longer ones are unknown by definition). */
#define TC_REST_NAME_MAX 64

int tc_rest_problem_set(tc_rest_problem *pb, int status, const char *param, const char *fmt, ...)
{
    va_list ap;

    pb->status = status;
    switch (status) {
    case 400:
        pb->title = "Invalid request parameter";
        break;
    case 401:
        pb->title = "Unauthorized";
        break;
    case 403:
        pb->title = "Forbidden";
        break;
    case 404:
        pb->title = "Not found";
        break;
    case 406:
        pb->title = "Not acceptable";
        break;
    case 429:
        pb->title = "Too many requests";
        break;
    case 503:
        pb->title = "Service unavailable";
        break;
    default:
        pb->title = "Internal error";
        break;
    }
    snprintf(pb->param, sizeof(pb->param), "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(pb->detail, sizeof(pb->detail), fmt, ap);
    va_end(ap);
    return status;
}

char *tc_rest_problem_json(const tc_rest_problem *pb, const char *instance, size_t *len)
{
    tc_jbuf b;

    tc_jbuf_init(&b, 16 * 1024);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "type");
    tc_jbuf_str(&b, "about:blank");
    tc_jbuf_key(&b, "title");
    tc_jbuf_str(&b, pb->title ? pb->title : "Error");
    tc_jbuf_key(&b, "status");
    tc_jbuf_int(&b, pb->status);
    tc_jbuf_key(&b, "detail");
    tc_jbuf_str(&b, pb->detail);
    if (instance) {
        tc_jbuf_key(&b, "instance");
        tc_jbuf_str(&b, instance);
    }
    if (pb->param[0]) {
        /* RFC 9457 section 3's example extension: which parameter, and why. */
        tc_jbuf_key(&b, "invalid-params");
        tc_jbuf_arr_begin(&b);
        tc_jbuf_obj_begin(&b);
        tc_jbuf_key(&b, "name");
        tc_jbuf_str(&b, pb->param);
        tc_jbuf_key(&b, "reason");
        tc_jbuf_str(&b, pb->detail);
        tc_jbuf_obj_end(&b);
        tc_jbuf_arr_end(&b);
    }
    tc_jbuf_obj_end(&b);
    return tc_jbuf_take(&b, len);
}

/* ---- values ---- */

tc_err tc_rest_parse_time(const char *s, int64_t *us)
{
    size_t n = strlen(s);

    /* The shared parser takes "T" or a space; a URL's '+' became a space before us, so the
     * offset sign is what matters: "…T07:00:00 02:00" is refused by it, as it should be. */
    if (n < 20 || (s[10] != 'T' && s[10] != 't'))
        return TC_ERR_INVALID;
    return tc_time_parse_rfc3339(s, n, us);
}

tc_err tc_rest_glob_to_like(const char *glob, char *out, size_t cap)
{
    size_t o = 0;

    for (const char *g = glob; *g; g++) {
        char c = *g;
        size_t need = (c == '%' || c == '_' || c == '\\') ? 2 : 1;
        if (o + need + 1 > cap)
            return TC_ERR_FULL;
        if (need == 2)
            out[o++] = '\\';
        out[o++] = c == '*' ? '%' : c == '?' ? '_' : c;
    }
    if (o + 1 > cap)
        return TC_ERR_FULL;
    out[o] = '\0';
    return TC_OK;
}

static int tc_rest_printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* index of v in "a|b|c", or -1 */
static int tc_rest_enum_index(const char *enums, const char *v)
{
    size_t vl = strlen(v);
    int i = 0;

    for (const char *p = enums; p && *p; i++) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && !memcmp(p, v, l))
            return i;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

static int tc_rest_parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!*s || strspn(s, "-0123456789") != strlen(s) || strlen(s) > 19)
        return -1;
    v = strtoll(s, &end, 10);
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static int tc_rest_check_ids(const char *s, int64_t max_count)
{
    int64_t count = 0;

    for (const char *p = s;;) {
        size_t l = strspn(p, "0123456789");
        if (l == 0 || l > 18 || *p == '0')
            return -1;
        count++;
        p += l;
        if (!*p)
            break;
        if (*p != ',')
            return -1;
        p++;
    }
    return count <= max_count ? 0 : -1;
}

static int tc_rest_value(const tc_rest_param_def *d, const tc_rest_cursor_key *ck,
                         const char *route, tc_rest_param_val *v, tc_rest_problem *pb)
{
    char key[TC_REST_CURSOR_KEY_MAX];
    const char *colon;
    int idx;

    if (!v->text[0])
        return tc_rest_problem_set(pb, 400, d->name, "%s: empty value", d->name);
    if (!tc_rest_printable(v->text))
        return tc_rest_problem_set(pb, 400, d->name, "%s: control characters are not allowed",
                                   d->name);
    switch (d->type) {
    case TC_RP_STRING:
        if ((int64_t)strlen(v->text) > d->max)
            return tc_rest_problem_set(pb, 400, d->name, "%s: longer than %lld bytes", d->name,
                                       (long long)d->max);
        break;
    case TC_RP_TIME:
        if (tc_rest_parse_time(v->text, &v->num) != TC_OK)
            return tc_rest_problem_set(pb, 400, d->name,
                                       "%s: not an RFC 3339 timestamp (like "
                                       "2026-12-05T07:00:00Z)",
                                       d->name);
        break;
    case TC_RP_INT:
        if (tc_rest_parse_int(v->text, &v->num) || v->num < d->min || v->num > d->max)
            return tc_rest_problem_set(pb, 400, d->name, "%s: an integer from %lld to %lld",
                                       d->name, (long long)d->min, (long long)d->max);
        break;
    case TC_RP_ENUM:
        idx = tc_rest_enum_index(d->enums, v->text);
        if (idx < 0)
            return tc_rest_problem_set(pb, 400, d->name, "%s: one of %s", d->name, d->enums);
        v->num = idx;
        break;
    case TC_RP_TAG:
        colon = strchr(v->text, ':');
        if (!colon || colon == v->text || !colon[1] || strlen(v->text) > 256)
            return tc_rest_problem_set(pb, 400, d->name,
                                       "%s: KEY:VALUE, both non-empty, at most 256 bytes", d->name);
        v->tag_split = (size_t)(colon - v->text);
        break;
    case TC_RP_CURSOR:
        if (!ck || !route || tc_rest_cursor_open(ck, route, v->text, key, sizeof(key)) != TC_OK)
            return tc_rest_problem_set(pb, 400, d->name,
                                       "%s: not a cursor this endpoint gave (use the `next` of "
                                       "a previous page as it was)",
                                       d->name);
        snprintf(v->text, sizeof(v->text), "%s", key);
        break;
    case TC_RP_IDS:
        if (tc_rest_check_ids(v->text, d->max))
            return tc_rest_problem_set(pb, 400, d->name,
                                       "%s: 1 to %lld positive integers separated by commas",
                                       d->name, (long long)d->max);
        break;
    }
    return 0;
}

int tc_rest_params_parse(const tc_rest_param_def *defs, size_t n, const char *query,
                         const tc_rest_cursor_key *ck, const char *route, tc_rest_param_val *vals,
                         tc_rest_problem *pb)
{
    const char *q = query ? query : "";

    for (size_t i = 0; i < n; i++)
        memset(&vals[i], 0, sizeof(vals[i]));
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t plen = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', plen);
        size_t nlen = eq ? (size_t)(eq - q) : plen;
        char name[TC_REST_NAME_MAX];
        long got;
        size_t i;

        if (plen == 0) { /* "a=1&&b=2": an empty pair is harmless */
            q += *q == '&';
            continue;
        }
        got = nlen < sizeof(name) ? tc_http_pct_decode(q, nlen, name, sizeof(name)) : -1;
        if (got < 0)
            return tc_rest_problem_set(pb, 400, NULL, "malformed or too long parameter name");
        for (i = 0; i < n; i++)
            if (!strcmp(defs[i].name, name))
                break;
        if (i == n)
            return tc_rest_problem_set(pb, 400, name, "%s: unknown parameter", name);
        if (vals[i].present)
            return tc_rest_problem_set(pb, 400, name, "%s: given more than once", name);
        vals[i].present = 1;
        if (eq) {
            if (tc_http_pct_decode(eq + 1, plen - nlen - 1, vals[i].text, sizeof(vals[i].text)) < 0)
                return tc_rest_problem_set(pb, 400, name,
                                           "%s: malformed percent-encoding or longer than %d "
                                           "bytes",
                                           name, TC_REST_VALUE_MAX - 1);
            /* A form-encoded '+' is a space, as in tc_http_query. */
            for (char *c = vals[i].text; *c; c++)
                if (*c == '+')
                    *c = ' ';
        }
        if (tc_rest_value(&defs[i], ck, route, &vals[i], pb))
            return pb->status;
        q += plen;
        q += *q == '&';
    }
    for (size_t i = 0; i < n; i++)
        if (defs[i].required && !vals[i].present)
            return tc_rest_problem_set(pb, 400, defs[i].name, "%s: required", defs[i].name);
    return 0;
}

/* ---- cursors ---- */

static void tc_rest_mac(const tc_rest_cursor_key *ck, const unsigned char *msg, size_t n,
                        unsigned char mac[TC_REST_MAC_BYTES])
{
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    HMAC(EVP_sha256(), ck->secret, (int)ck->secret_len, msg, n, full, &len);
    memcpy(mac, full, TC_REST_MAC_BYTES);
}

tc_err tc_rest_cursor_make(const tc_rest_cursor_key *ck, const char *route, const char *key,
                           char *out, size_t cap)
{
    char payload[TC_REST_CURSOR_KEY_MAX + 64];
    unsigned char mac[TC_REST_MAC_BYTES];
    int n = snprintf(payload, sizeof(payload), "%s|%s", route, key);
    size_t o;

    if (n < 0 || (size_t)n >= sizeof(payload) || strlen(key) >= TC_REST_CURSOR_KEY_MAX ||
        cap < ((size_t)n + 2) / 3 * 4 + 2 + (TC_REST_MAC_BYTES + 2) / 3 * 4 + 1)
        return TC_ERR_FULL;
    tc_rest_mac(ck, (const unsigned char *)payload, (size_t)n, mac);
    o = tc_base64_encode(TC_BASE64_URL, payload, (size_t)n, out, cap);
    out[o++] = '.';
    tc_base64_encode(TC_BASE64_URL, mac, sizeof(mac), out + o, cap - o);
    return TC_OK;
}

tc_err tc_rest_cursor_open(const tc_rest_cursor_key *ck, const char *route, const char *cursor,
                           char *key, size_t cap)
{
    unsigned char payload[TC_REST_CURSOR_KEY_MAX + 64], mac[TC_REST_MAC_BYTES + 4];
    unsigned char want[TC_REST_MAC_BYTES];
    const char *dot = strchr(cursor, '.');
    size_t rl = strlen(route);
    long pn, mn;

    if (!dot || strlen(cursor) > TC_REST_CURSOR_MAX)
        return TC_ERR_INVALID;
    pn = tc_base64_decode(TC_BASE64_URL, cursor, (size_t)(dot - cursor), payload,
                          sizeof(payload) - 1);
    mn = tc_base64_decode(TC_BASE64_URL, dot + 1, strlen(dot + 1), mac, sizeof(mac));
    if (pn < 0 || mn != TC_REST_MAC_BYTES)
        return TC_ERR_INVALID;
    tc_rest_mac(ck, payload, (size_t)pn, want);
    if (CRYPTO_memcmp(want, mac, TC_REST_MAC_BYTES))
        return TC_ERR_INVALID;
    if ((size_t)pn <= rl || memcmp(payload, route, rl) || payload[rl] != '|')
        return TC_ERR_INVALID;
    if ((size_t)pn - rl - 1 >= cap || memchr(payload, '\0', (size_t)pn))
        return TC_ERR_INVALID;
    memcpy(key, payload + rl + 1, (size_t)pn - rl - 1);
    key[pn - (long)rl - 1] = '\0';
    return TC_OK;
}
