/*
 * rest_auth.c -- JWT and API key authentication and per-principal rate limits; see rest_auth.h.
 *
 * libjwt (Debian's 1.10) verifies signatures but knows neither JWKS nor which algorithm a key is
 * for, so both are done here: each JWK of the file is turned into a PEM public key with OpenSSL at
 * start, remembered with its kid and kind (RSA or EC), and a token is first read unverified only
 * to learn its alg and kid, which choose the one key it may be verified with. Only then is it
 * decoded again with that key, and its alg checked once more on the verified object.
 */
#include "api/rest_auth.h"

#include <errno.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base64.h"
#include "core/json.h"

/* Largest JWKS file and API keys file read. */
#define TC_REST_FILE_MAX (1024 * 1024)
/* Largest PEM of one public key (RSA 8192 is about 1.5 KiB). */
#define TC_REST_PEM_MAX 4096
/* Largest decoded JWT header looked at. */
#define TC_REST_JWT_HEAD_MAX 1024
/* Shortest HS256 secret accepted (RFC 7518 3.2: a key as long as the hash output). */
#define TC_REST_HS_SECRET_MIN 32

static const char *const tc_rest_roles[TC_ROLE__COUNT] = {
    "thermocline_viewer", "thermocline_analyst", "thermocline_operator", "thermocline_admin"};

const char *tc_rest_role_name(tc_rest_role r)
{
    return r < TC_ROLE__COUNT ? tc_rest_roles[r] : "";
}

/* The role of a claim or key file: the full name, or the short one ("viewer"). */
static int tc_rest_role_parse(const char *s, tc_rest_role *out)
{
    for (int i = 0; i < TC_ROLE__COUNT; i++) {
        if (!strcmp(s, tc_rest_roles[i]) || !strcmp(s, tc_rest_roles[i] + strlen("thermocline_"))) {
            *out = (tc_rest_role)i;
            return 0;
        }
    }
    return -1;
}

typedef struct tc_rest_jwk {
    char kid[128];
    int is_ec; /* else RSA */
    char *pem;
} tc_rest_jwk;

typedef struct tc_rest_apikey {
    char digest[65];
    tc_rest_role role;
    char name[64];
    char sites[256]; /* "*", "a,b", or "" (none) */
} tc_rest_apikey;

typedef struct tc_rest_bucket {
    char subject[TC_REST_SUBJECT_MAX];
    double tokens;
    int64_t last_us;
} tc_rest_bucket;

struct tc_rest_auth {
    char *hs_secret;
    size_t hs_len;
    tc_rest_jwk jwks[TC_REST_JWKS_MAX];
    size_t njwks;
    tc_rest_apikey *keys;
    size_t nkeys;
    double rate_per_s;
    double burst;
    pthread_mutex_t lock;
    tc_rest_bucket *buckets; /* TC_REST_RATE_SLOTS */
};

void tc_rest_sha256_hex(const char *s, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    static const char hex[] = "0123456789abcdef";

    EVP_Digest(s, n, md, &len, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

static char *tc_rest_slurp(const char *path, size_t *len, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (!f) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(TC_REST_FILE_MAX + 1);
    n = buf ? fread(buf, 1, TC_REST_FILE_MAX + 1, f) : 0;
    fclose(f);
    if (!buf || n > TC_REST_FILE_MAX) {
        free(buf);
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "%s: larger than %d bytes", path,
                   TC_REST_FILE_MAX);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---- JWKS ---- */

static BIGNUM *tc_rest_jwk_bn(const tc_json *k, const char *name)
{
    const char *s = tc_json_string(tc_json_get(k, name));
    unsigned char raw[1024];
    long n = s ? tc_base64_decode(TC_BASE64_URL, s, strlen(s), raw, sizeof(raw)) : -1;

    return n > 0 ? BN_bin2bn(raw, (int)n, NULL) : NULL;
}

/* The PEM (SubjectPublicKeyInfo) of an RSA or P-256 JWK, or NULL. */
static char *tc_rest_jwk_pem(const tc_json *k, int *is_ec)
{
    const char *kty = tc_json_string(tc_json_get(k, "kty"));
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *a = NULL, *b = NULL;
    BIO *bio = NULL;
    char *pem = NULL;
    unsigned char point[65];
    int ok = 0;

    if (!bld || !kty)
        goto done;
    if (!strcmp(kty, "RSA")) {
        a = tc_rest_jwk_bn(k, "n");
        b = tc_rest_jwk_bn(k, "e");
        ok = a && b && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, a) &&
             OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, b);
        ctx = ok ? EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL) : NULL;
        *is_ec = 0;
    } else if (!strcmp(kty, "EC")) {
        const char *crv = tc_json_string(tc_json_get(k, "crv"));
        const char *x = tc_json_string(tc_json_get(k, "x"));
        const char *y = tc_json_string(tc_json_get(k, "y"));
        ok = crv && !strcmp(crv, "P-256") && x && y &&
             tc_base64_decode(TC_BASE64_URL, x, strlen(x), point + 1, 32) == 32 &&
             tc_base64_decode(TC_BASE64_URL, y, strlen(y), point + 33, 32) == 32;
        point[0] = 0x04; /* uncompressed point */
        ok = ok &&
             OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
             OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point));
        ctx = ok ? EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL) : NULL;
        *is_ec = 1;
    }
    params = ok ? OSSL_PARAM_BLD_to_param(bld) : NULL;
    if (!ctx || !params || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        goto done;
    bio = BIO_new(BIO_s_mem());
    if (bio && PEM_write_bio_PUBKEY(bio, pkey)) {
        char *data;
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && n < TC_REST_PEM_MAX && (pem = malloc((size_t)n + 1))) {
            memcpy(pem, data, (size_t)n);
            pem[n] = '\0';
        }
    }
done:
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(a);
    BN_free(b);
    return pem;
}

static tc_err tc_rest_load_jwks(tc_rest_auth *a, const char *path, char *errstr, size_t errstr_size)
{
    size_t len = 0;
    char *text = tc_rest_slurp(path, &len, errstr, errstr_size);
    char perr[256];
    tc_json_doc *doc;
    const tc_json *keys;
    tc_err err = TC_OK;

    if (!text)
        return TC_ERR_CONFIG;
    doc = tc_json_parse(text, len, NULL, NULL, perr, sizeof(perr));
    free(text);
    keys = tc_json_get(tc_json_root(doc), "keys");
    if (!doc || !keys || keys->type != TC_JSON_ARRAY) {
        tc_json_free(doc);
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "api.jwks_file %s: not a JWKS document ({\"keys\": [...]})%s%s", path,
                          doc ? "" : ": ", doc ? "" : perr);
    }
    for (size_t i = 0; i < keys->len && err == TC_OK; i++) {
        const tc_json *k = keys->u.items[i];
        const char *kid = tc_json_string(tc_json_get(k, "kid"));
        tc_rest_jwk *j = &a->jwks[a->njwks];
        if (a->njwks == TC_REST_JWKS_MAX) {
            err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                             "api.jwks_file %s: more than %d keys", path, TC_REST_JWKS_MAX);
            break;
        }
        if (!kid || strlen(kid) >= sizeof(j->kid) || !(j->pem = tc_rest_jwk_pem(k, &j->is_ec))) {
            err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                             "api.jwks_file %s: key %zu: needs a kid and an RSA (n, e) or EC "
                             "P-256 (x, y) public key",
                             path, i);
            break;
        }
        snprintf(j->kid, sizeof(j->kid), "%s", kid);
        a->njwks++;
    }
    tc_json_free(doc);
    return err;
}

/* ---- API keys ---- */

static tc_err tc_rest_load_keys(tc_rest_auth *a, const char *path, char *errstr, size_t errstr_size)
{
    size_t len = 0;
    char *text = tc_rest_slurp(path, &len, errstr, errstr_size), *save = NULL, *line;
    int lineno = 0;

    if (!text)
        return TC_ERR_CONFIG;
    a->keys = calloc(TC_REST_APIKEYS_MAX, sizeof(*a->keys));
    if (!a->keys) {
        free(text);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    }
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char digest[80], role[64], name[64], sites[256] = "";
        int got;
        lineno++;
        line += strspn(line, " \t\r");
        if (!*line || *line == '#')
            continue;
        got = sscanf(line, "%79s %63s %63s %255s", digest, role, name, sites);
        if (got < 3 || strlen(digest) != 64 || strspn(digest, "0123456789abcdef") != 64 ||
            tc_rest_role_parse(role, &a->keys[a->nkeys].role) || a->nkeys == TC_REST_APIKEYS_MAX) {
            free(text);
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "api.keys_file %s:%d: expected `sha256-hex role name [sites]` with "
                              "a role of viewer, analyst, operator or admin (at most %d keys)",
                              path, lineno, TC_REST_APIKEYS_MAX);
        }
        memcpy(a->keys[a->nkeys].digest, digest, 65);
        snprintf(a->keys[a->nkeys].name, sizeof(a->keys[a->nkeys].name), "%s", name);
        memcpy(a->keys[a->nkeys].sites, sites, sizeof(sites));
        a->nkeys++;
    }
    free(text);
    return TC_OK;
}

tc_rest_auth *tc_rest_auth_new(const tc_rest_auth_options *opt, char *errstr, size_t errstr_size)
{
    tc_rest_auth *a = calloc(1, sizeof(*a));

    if (!a || !(a->buckets = calloc(TC_REST_RATE_SLOTS, sizeof(*a->buckets)))) {
        free(a);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    a->rate_per_s = opt->rate_per_s > 0 ? opt->rate_per_s : 1;
    a->burst = opt->rate_burst > 0 ? (double)opt->rate_burst : 1;
    if (opt->jwt_secret && *opt->jwt_secret) {
        a->hs_len = strlen(opt->jwt_secret);
        if (a->hs_len < TC_REST_HS_SECRET_MIN) {
            tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                       "api.jwt_secret: at least %d bytes (it is %zu)", TC_REST_HS_SECRET_MIN,
                       a->hs_len);
            tc_rest_auth_destroy(a);
            return NULL;
        }
        a->hs_secret = strdup(opt->jwt_secret);
    }
    if ((opt->jwks_file && *opt->jwks_file &&
         tc_rest_load_jwks(a, opt->jwks_file, errstr, errstr_size) != TC_OK) ||
        (opt->keys_file && *opt->keys_file &&
         tc_rest_load_keys(a, opt->keys_file, errstr, errstr_size) != TC_OK)) {
        tc_rest_auth_destroy(a);
        return NULL;
    }
    return a;
}

void tc_rest_auth_destroy(tc_rest_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->njwks; i++)
        free(a->jwks[i].pem);
    if (a->hs_secret)
        OPENSSL_cleanse(a->hs_secret, a->hs_len);
    free(a->hs_secret);
    free(a->keys);
    free(a->buckets);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* ---- authentication ---- */

static int tc_rest_unauthorized(tc_rest_problem *pb, const char *why)
{
    return tc_rest_problem_set(pb, 401, NULL, "%s", why);
}

static int tc_rest_by_key(tc_rest_auth *a, const char *key, tc_rest_principal *out,
                          tc_rest_problem *pb)
{
    char digest[65];
    tc_jbuf b;
    char *claims;
    size_t len = 0;

    tc_rest_sha256_hex(key, strlen(key), digest);
    for (size_t i = 0; i < a->nkeys; i++) {
        if (CRYPTO_memcmp(digest, a->keys[i].digest, 64))
            continue;
        snprintf(out->subject, sizeof(out->subject), "key:%s", a->keys[i].name);
        out->role = a->keys[i].role;
        tc_jbuf_init(&b, sizeof(out->claims) - 1);
        tc_jbuf_obj_begin(&b);
        tc_jbuf_key(&b, "sub");
        tc_jbuf_str(&b, out->subject);
        tc_jbuf_key(&b, "role");
        tc_jbuf_str(&b, tc_rest_role_name(out->role));
        tc_jbuf_key(&b, "sites");
        if (!strcmp(a->keys[i].sites, "*")) {
            tc_jbuf_str(&b, "*");
        } else {
            tc_jbuf_arr_begin(&b);
            for (const char *p = a->keys[i].sites; *p;) {
                size_t l = strcspn(p, ",");
                if (l)
                    tc_jbuf_strn(&b, p, l);
                p += l + (p[l] == ',');
            }
            tc_jbuf_arr_end(&b);
        }
        tc_jbuf_obj_end(&b);
        claims = tc_jbuf_take(&b, &len);
        snprintf(out->claims, sizeof(out->claims), "%s", claims ? claims : "{}");
        free(claims);
        return 0;
    }
    return tc_rest_unauthorized(pb, "unknown API key");
}

/* The key a token of this alg and kid may be verified with, or NULL. */
static const char *tc_rest_key_for(tc_rest_auth *a, jwt_alg_t alg, const char *kid, int *len)
{
    if (alg == JWT_ALG_HS256) {
        *len = (int)a->hs_len;
        return a->hs_secret;
    }
    if (alg != JWT_ALG_RS256 && alg != JWT_ALG_ES256)
        return NULL;
    for (size_t i = 0; i < a->njwks; i++) {
        if (kid && !strcmp(kid, a->jwks[i].kid) && a->jwks[i].is_ec == (alg == JWT_ALG_ES256)) {
            *len = (int)strlen(a->jwks[i].pem);
            return a->jwks[i].pem;
        }
    }
    return NULL;
}

/* The header's alg and kid, read here rather than by libjwt: nothing of an unverified token is
 * trusted but the choice of the key, and that must not depend on how a library treats "none". */
static jwt_alg_t tc_rest_token_head(const char *token, char *kid, size_t kid_cap)
{
    unsigned char head[TC_REST_JWT_HEAD_MAX];
    const char *dot = strchr(token, '.');
    long n = dot ? tc_base64_decode(TC_BASE64_URL, token, (size_t)(dot - token), head, sizeof(head))
                 : -1;
    tc_json_doc *doc =
        n > 0 ? tc_json_parse((const char *)head, (size_t)n, NULL, NULL, NULL, 0) : NULL;
    const char *alg = tc_json_string(tc_json_get(tc_json_root(doc), "alg"));
    const char *k = tc_json_string(tc_json_get(tc_json_root(doc), "kid"));
    jwt_alg_t out = JWT_ALG_INVAL;

    if (alg && !strcmp(alg, "HS256"))
        out = JWT_ALG_HS256;
    else if (alg && !strcmp(alg, "RS256"))
        out = JWT_ALG_RS256;
    else if (alg && !strcmp(alg, "ES256"))
        out = JWT_ALG_ES256;
    snprintf(kid, kid_cap, "%s", k ? k : "");
    tc_json_free(doc);
    return out;
}

static int tc_rest_by_token(tc_rest_auth *a, const char *token, int64_t now_s,
                            tc_rest_principal *out, tc_rest_problem *pb)
{
    jwt_t *jwt = NULL;
    jwt_alg_t alg;
    const char *key, *sub, *role;
    char *claims, kid[128];
    long t;
    int klen = 0, rc;

    alg = tc_rest_token_head(token, kid, sizeof(kid));
    key = alg == JWT_ALG_INVAL ? NULL : tc_rest_key_for(a, alg, kid[0] ? kid : NULL, &klen);
    if (!key)
        return tc_rest_unauthorized(pb, "token algorithm or key id not accepted (HS256 with the "
                                        "shared secret, RS256 or ES256 with a key of the JWKS)");
    if (jwt_decode(&jwt, token, (const unsigned char *)key, klen) || !jwt)
        return tc_rest_unauthorized(pb, "token signature does not verify");
    rc = 0;
    if (jwt_get_alg(jwt) != alg) {
        rc = tc_rest_unauthorized(pb, "token signature does not verify");
        goto done;
    }
    errno = 0;
    t = jwt_get_grant_int(jwt, "exp");
    if (errno != ENOENT && (errno || t <= now_s)) {
        rc = tc_rest_unauthorized(pb, "token expired");
        goto done;
    }
    errno = 0;
    t = jwt_get_grant_int(jwt, "nbf");
    if (errno != ENOENT && (errno || t > now_s)) {
        rc = tc_rest_unauthorized(pb, "token not valid yet (nbf)");
        goto done;
    }
    role = jwt_get_grant(jwt, "role");
    if (!role || tc_rest_role_parse(role, &out->role)) {
        rc = tc_rest_problem_set(pb, 403, NULL,
                                 "the token's role claim is not one of the API's roles (viewer, "
                                 "analyst, operator, admin)");
        goto done;
    }
    sub = jwt_get_grant(jwt, "sub");
    snprintf(out->subject, sizeof(out->subject), "%s", sub ? sub : "(no sub)");
    claims = jwt_get_grants_json(jwt, NULL);
    if (!claims || strlen(claims) >= sizeof(out->claims)) {
        rc = tc_rest_unauthorized(pb, "token claims larger than the API accepts");
    } else {
        memcpy(out->claims, claims, strlen(claims) + 1);
    }
    free(claims);
done:
    jwt_free(jwt);
    return rc;
}

int tc_rest_authenticate(tc_rest_auth *a, const char *authorization, const char *api_key,
                         int64_t now_s, tc_rest_principal *out, tc_rest_problem *pb)
{
    memset(out, 0, sizeof(*out));
    if (api_key && authorization)
        return tc_rest_unauthorized(pb, "give a bearer token or an API key, not both");
    if (api_key) {
        if (!*api_key || strlen(api_key) > TC_REST_TOKEN_MAX)
            return tc_rest_unauthorized(pb, "unknown API key");
        return tc_rest_by_key(a, api_key, out, pb);
    }
    if (!authorization)
        return tc_rest_unauthorized(
            pb, "authentication required: Authorization: Bearer <JWT> or X-API-Key: <key>");
    if (strncasecmp(authorization, "Bearer ", 7) || strlen(authorization) > TC_REST_TOKEN_MAX)
        return tc_rest_unauthorized(pb, "the Authorization header must be `Bearer <JWT>`");
    return tc_rest_by_token(a, authorization + 7, now_s, out, pb);
}

/* ---- rate limits ---- */

int tc_rest_rate_take(tc_rest_auth *a, const char *subject, int64_t now_us, long *retry_after_s,
                      tc_rest_problem *pb)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    tc_rest_bucket *b = NULL, *oldest = NULL;
    int rc = 0;

    for (const unsigned char *p = (const unsigned char *)subject; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    pthread_mutex_lock(&a->lock);
    /* A short probe: the subject's bucket, or an empty slot, or the stalest one is taken over. */
    for (size_t i = 0; i < 8; i++) {
        tc_rest_bucket *c = &a->buckets[(h + i) % TC_REST_RATE_SLOTS];
        if (!strcmp(c->subject, subject)) {
            b = c;
            break;
        }
        if (!oldest || c->last_us < oldest->last_us)
            oldest = c;
    }
    if (!b) {
        b = oldest;
        snprintf(b->subject, sizeof(b->subject), "%s", subject);
        b->tokens = a->burst;
        b->last_us = now_us;
    }
    if (now_us > b->last_us) {
        b->tokens += (double)(now_us - b->last_us) / 1e6 * a->rate_per_s;
        if (b->tokens > a->burst)
            b->tokens = a->burst;
        b->last_us = now_us;
    }
    if (b->tokens >= 1) {
        b->tokens -= 1;
    } else {
        double wait = (1 - b->tokens) / a->rate_per_s;
        *retry_after_s = (long)wait + 1;
        rc = tc_rest_problem_set(pb, 429, NULL,
                                 "rate limit of %g requests/s (burst %g) reached; retry after %ld "
                                 "s",
                                 a->rate_per_s, a->burst, *retry_after_s);
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}
