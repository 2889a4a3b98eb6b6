/*
 * registry_ext.c -- the registry's submitted schemas (references, metadata, rule sets,
 * normalisation), the parsed-schema cache, and the endpoints around them: the schema listing
 * (GET /schemas), modes (/mode, /mode/{subject}), referencedby, latest-with-metadata, and Accept
 * negotiation. See registry_internal.h and docs/registry.md.
 *
 * References are resolved by inlining (registry_identity.h): a referenced version's schema, itself
 * resolved first, is written in place of the first use of its name, so the result is one
 * self-contained Avro schema that both parsers, the compatibility checks and the pipeline's
 * decoders read unchanged. Chains are followed at most TC_REG_REF_DEPTH_MAX deep, which also stops
 * a cycle (a schema can only reference versions that existed before it, so a cycle cannot be
 * registered, but the store is not trusted with that).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "schema/registry_identity.h"
#include "schema/registry_internal.h"

/* Key/value pairs one latest-with-metadata request may filter on. */
#define TC_REG_META_PAIRS_MAX 16
#define TC_REG_META_VALUE_MAX 1024

/* ---- references ---- */

/* References resolved for one schema: names with their parsed, resolved schemas. */
typedef struct tc_reg_resolved {
    tc_reg_named *named;
    tc_json_doc **docs;
    int *versions; /* the version each reference resolved to (-1, the latest, made a number) */
    size_t n;
} tc_reg_resolved;

static void tc_reg_resolved_free(tc_reg_resolved *r)
{
    for (size_t i = 0; i < r->n; i++)
        tc_json_free(r->docs[i]);
    free(r->named);
    free(r->docs);
    free(r->versions);
    memset(r, 0, sizeof(*r));
}

/* A references array, checked: every item {"name": string, "subject": string, "version": int}.
 * Returns the reason it is not, or NULL when it is. */
static const char *tc_reg_refs_invalid(const tc_json *refs)
{
    if (refs->type != TC_JSON_ARRAY)
        return "\"references\" must be an array";
    for (size_t i = 0; i < refs->len; i++) {
        const tc_json *r = refs->u.items[i];
        int64_t v = 0;
        if (!tc_json_string(tc_json_get(r, "name")) || !tc_json_string(tc_json_get(r, "subject")))
            return "a reference needs a \"name\" and a \"subject\"";
        if (!tc_json_int64(tc_json_get(r, "version"), &v) || (v < 1 && v != -1) || v > 2147483647LL)
            return "a reference needs a \"version\" (an integer from 1, or -1 for the latest)";
    }
    return NULL;
}

static int tc_reg_refs_resolve(tc_reg_req *q, const tc_json *refs, unsigned depth,
                               tc_reg_resolved *out, char *why, size_t why_size);

/*
 * The resolved text of a stored schema (see the top). On a problem with the references themselves
 * (a version gone, too deep), *why is set and NULL returned with no response; on a store failure
 * the response is set and *why stays empty.
 */
static char *tc_reg_resolve_stored(tc_reg_req *q, const tc_reg_schema_text *t, unsigned depth,
                                   char *why, size_t why_size)
{
    tc_json_limits lim = {TC_AVRO_SCHEMA_MAX_BYTES, TC_AVRO_SCHEMA_MAX_DEPTH,
                          TC_AVRO_SCHEMA_MAX_NODES, 0};
    tc_json_doc *main_doc = NULL, *refs_doc = NULL;
    tc_reg_resolved res = {NULL, NULL, NULL, 0};
    char *out = NULL;

    if (!t->references)
        return strdup(t->original);
    refs_doc = tc_json_parse(t->references, strlen(t->references), NULL, NULL, NULL, 0);
    main_doc = tc_json_parse(t->original, strlen(t->original), &lim, NULL, NULL, 0);
    if (!refs_doc || !main_doc || tc_reg_refs_invalid(tc_json_root(refs_doc))) {
        snprintf(why, why_size, "a stored schema or its references are not what was registered");
        goto out;
    }
    if (tc_reg_refs_resolve(q, tc_json_root(refs_doc), depth, &res, why, why_size) < 0)
        goto out;
    out = tc_reg_schema_inline(tc_json_root(main_doc), res.named, res.n, NULL, why, why_size);
out:
    tc_reg_resolved_free(&res);
    tc_json_free(refs_doc);
    tc_json_free(main_doc);
    return out;
}

static int tc_reg_refs_resolve(tc_reg_req *q, const tc_json *refs, unsigned depth,
                               tc_reg_resolved *out, char *why, size_t why_size)
{
    tc_json_limits lim = {TC_AVRO_SCHEMA_MAX_BYTES, TC_AVRO_SCHEMA_MAX_DEPTH,
                          TC_AVRO_SCHEMA_MAX_NODES, 0};

    memset(out, 0, sizeof(*out));
    if (depth >= TC_REG_REF_DEPTH_MAX) {
        snprintf(why, why_size, "references nested deeper than %d", TC_REG_REF_DEPTH_MAX);
        return -1;
    }
    out->named = calloc(refs->len ? refs->len : 1, sizeof(*out->named));
    out->docs = calloc(refs->len ? refs->len : 1, sizeof(*out->docs));
    out->versions = calloc(refs->len ? refs->len : 1, sizeof(*out->versions));
    if (!out->named || !out->docs || !out->versions) {
        tc_reg_error(q, 500, 50000, "Out of memory");
        return -1;
    }
    for (size_t i = 0; i < refs->len; i++) {
        const tc_json *r = refs->u.items[i];
        const char *subject = tc_json_string(tc_json_get(r, "subject"));
        int64_t version = 0;
        tc_reg_vlist vl = {NULL, 0};
        const tc_reg_version *v;
        tc_reg_schema_text t;
        char *text;
        tc_err err;

        tc_json_int64(tc_json_get(r, "version"), &version);
        if (++q->refs_resolved > TC_REG_REF_RESOLVE_MAX) {
            snprintf(why, why_size, "more than %d references to resolve in one request",
                     TC_REG_REF_RESOLVE_MAX);
            return -1;
        }
        if (tc_reg_load_versions(q, subject, &vl) < 0)
            return -1;
        /* A version a schema references stays resolvable when soft-deleted. */
        v = tc_reg_pick(&vl, version == -1 ? 0 : (int)version, 1);
        if (!v) {
            snprintf(why, why_size, "reference \"%.200s\": subject \"%.200s\" has no version %lld",
                     tc_json_string(tc_json_get(r, "name")), subject, (long long)version);
            free(vl.v);
            return -1;
        }
        out->versions[i] = v->version;
        err = q->r->store->ops->schema(q->r->store, v->schema_id, &t, q->errstr, sizeof(q->errstr));
        free(vl.v);
        if (err != TC_OK) {
            tc_reg_store_error(q, err, "reading a referenced schema");
            return -1;
        }
        text = tc_reg_resolve_stored(q, &t, depth + 1, why, why_size);
        tc_reg_schema_text_free(&t);
        if (!text) {
            if (!why[0] && q->resp->status < 400)
                tc_reg_error(q, 500, 50000, "Out of memory");
            return -1;
        }
        out->docs[i] = tc_json_parse(text, strlen(text), &lim, NULL, NULL, 0);
        free(text);
        if (!out->docs[i]) {
            snprintf(why, why_size, "referenced schema \"%.200s\" is not JSON",
                     tc_json_string(tc_json_get(r, "name")));
            return -1;
        }
        out->named[i].name = tc_json_string(tc_json_get(r, "name"));
        out->named[i].schema = tc_json_root(out->docs[i]);
        out->n = i + 1;
    }
    return 0;
}

char *tc_reg_resolved_text(tc_reg_req *q, const tc_reg_schema_text *t, unsigned depth)
{
    char why[TC_ERRSTR_MAX];
    char *out;

    why[0] = '\0';
    out = tc_reg_resolve_stored(q, t, depth, why, sizeof(why));
    if (!out && q->resp->status < 400) {
        if (why[0]) {
            snprintf(q->errstr, sizeof(q->errstr), "%s", why);
            tc_reg_store_error(q, TC_ERR_DB, "resolving references");
        } else {
            tc_reg_error(q, 500, 50000, "Out of memory");
        }
    }
    return out;
}

/* ---- submitted schemas ---- */

void tc_reg_submission_free(tc_reg_submission *sub)
{
    tc_avro_schema_free(sub->schema);
    free(sub->identity);
    free(sub->normalized);
    tc_json_free(sub->refs_doc);
    tc_json_free(sub->doc);
    memset(sub, 0, sizeof(*sub));
}

/* The references as they resolved: each "version" a number, -1 (the latest) replaced by the
 * version it was, so the identity and the stored references name what was used. The document is
 * the caller's; NULL when out of memory. */
static tc_json_doc *tc_reg_refs_pinned(const tc_json *refs, const tc_reg_resolved *res)
{
    tc_json_doc *doc;
    tc_jbuf b;

    tc_jbuf_init(&b, 0);
    tc_jbuf_arr_begin(&b);
    for (size_t i = 0; i < refs->len; i++) {
        tc_jbuf_obj_begin(&b);
        tc_jbuf_key(&b, "name");
        tc_jbuf_str(&b, tc_json_string(tc_json_get(refs->u.items[i], "name")));
        tc_jbuf_key(&b, "subject");
        tc_jbuf_str(&b, tc_json_string(tc_json_get(refs->u.items[i], "subject")));
        tc_jbuf_key(&b, "version");
        tc_jbuf_int(&b, res->versions[i]);
        tc_jbuf_obj_end(&b);
    }
    tc_jbuf_arr_end(&b);
    doc = tc_jbuf_failed(&b) ? NULL : tc_json_parse(b.data, b.len, NULL, NULL, NULL, 0);
    tc_jbuf_free(&b);
    return doc;
}

/* A member that may be absent or null: NULL then. */
static const tc_json *tc_reg_member(const tc_json *root, const char *key)
{
    const tc_json *v = tc_json_get(root, key);

    return v && v->type != TC_JSON_NULL ? v : NULL;
}

int tc_reg_submission_parse(tc_reg_req *q, tc_reg_submission *sub, char *verbose_msg,
                            size_t verbose_size)
{
    tc_json_limits lim = {TC_AVRO_SCHEMA_MAX_BYTES, TC_AVRO_SCHEMA_MAX_DEPTH,
                          TC_AVRO_SCHEMA_MAX_NODES, 0};
    int normalize = tc_http_query_bool(q->http, "normalize");
    const tc_json *root, *schema, *type;
    tc_json_doc *sdoc = NULL;
    tc_reg_resolved res = {NULL, NULL, NULL, 0};
    char why[TC_ERRSTR_MAX], *resolved = NULL;
    const char *bad;
    tc_err err = TC_ERR_INVALID;

    memset(sub, 0, sizeof(*sub));
    why[0] = '\0';
    sub->doc = tc_reg_body(q);
    if (!sub->doc)
        return -1;
    root = tc_json_root(sub->doc);
    schema = tc_json_get(root, "schema");
    type = tc_reg_member(root, "schemaType");
    sub->refs = tc_reg_member(root, "references");
    sub->metadata = tc_reg_member(root, "metadata");
    sub->rule_set = tc_reg_member(root, "ruleSet");
    if (sub->refs && sub->refs->type == TC_JSON_ARRAY && sub->refs->len == 0)
        sub->refs = NULL;
    if (!schema || schema->type != TC_JSON_STRING) {
        snprintf(why, sizeof(why), "Empty schema");
    } else if (type && (type->type != TC_JSON_STRING || strcmp(type->u.str, "AVRO"))) {
        snprintf(why, sizeof(why), "Invalid schema type: only AVRO is supported");
    } else if (sub->refs && (bad = tc_reg_refs_invalid(sub->refs))) {
        snprintf(why, sizeof(why), "%s", bad);
    } else if (sub->metadata && sub->metadata->type != TC_JSON_OBJECT) {
        snprintf(why, sizeof(why), "\"metadata\" must be an object");
    } else if (sub->rule_set && sub->rule_set->type != TC_JSON_OBJECT) {
        snprintf(why, sizeof(why), "\"ruleSet\" must be an object");
    } else if (!(sdoc = tc_json_parse(schema->u.str, schema->len, &lim, &err, why, sizeof(why)))) {
        if (err != TC_ERR_NOMEM) {
            char jerr[TC_ERRSTR_MAX];
            snprintf(jerr, sizeof(jerr), "%s", why);
            snprintf(why, sizeof(why), "schema is not valid JSON: %.400s", jerr);
        }
    } else if (sub->refs && tc_reg_refs_resolve(q, sub->refs, 0, &res, why, sizeof(why)) < 0) {
        if (!why[0]) /* the response is set: a store failure */
            goto fail;
        err = TC_ERR_INVALID;
    } else {
        sub->text = schema->u.str;
        if (sub->refs) {
            sub->refs_doc = tc_reg_refs_pinned(sub->refs, &res);
            sub->refs = sub->refs_doc ? tc_json_root(sub->refs_doc) : NULL;
        }
        resolved = sub->refs ? tc_reg_schema_inline(tc_json_root(sdoc), res.named, res.n, NULL, why,
                                                    sizeof(why))
                             : NULL;
        if (!sub->refs_doc && res.n) {
            err = TC_ERR_NOMEM;
        } else if (!sub->refs || resolved) {
            const char *rt = resolved ? resolved : sub->text;
            sub->schema = tc_avro_schema_parse(rt, strlen(rt), &err, why, sizeof(why));
        }
        if (sub->schema) {
            sub->identity = tc_reg_identity(tc_json_root(sdoc), normalize, sub->refs, sub->metadata,
                                            sub->rule_set);
            if (normalize)
                sub->normalized = tc_reg_schema_form(tc_json_root(sdoc), 1, NULL);
            err = sub->identity && (!normalize || sub->normalized) ? TC_OK : TC_ERR_NOMEM;
        }
    }
    free(resolved);
    tc_reg_resolved_free(&res);
    tc_json_free(sdoc);
    if (sub->schema && err == TC_OK)
        return 0;
    if (err == TC_ERR_NOMEM)
        tc_reg_error(q, 500, 50000, "Out of memory");
    else if (verbose_msg)
        snprintf(verbose_msg, verbose_size, "Invalid schema: %s", why);
    else
        tc_reg_error(q, 422, TC_REG_INVALID_SCHEMA, "Invalid schema: %s", why);
    tc_avro_schema_free(sub->schema);
    sub->schema = NULL;
    return -1;
fail:
    tc_reg_resolved_free(&res);
    tc_json_free(sdoc);
    return -1;
}

/* ---- the parsed-schema cache ---- */

const tc_avro_schema *tc_reg_schema(tc_reg_req *q, int id)
{
    tc_registry *r = q->r;
    tc_reg_schema_text t;
    char *text, perr[256];
    tc_avro_schema *s;
    tc_reg_cached *c;
    tc_err err;

    for (size_t i = 0; i < r->ncache; i++)
        if (r->cache[i].id == id)
            return r->cache[i].schema;
    err = r->store->ops->schema(r->store, id, &t, q->errstr, sizeof(q->errstr));
    if (err != TC_OK) {
        if (err == TC_ERR_NOT_FOUND)
            snprintf(q->errstr, sizeof(q->errstr), "schema %d is missing", id);
        tc_reg_store_error(q, err, "reading a schema");
        return NULL;
    }
    text = tc_reg_resolved_text(q, &t, 0);
    tc_reg_schema_text_free(&t);
    if (!text)
        return NULL;
    s = tc_avro_schema_parse(text, strlen(text), &err, perr, sizeof(perr));
    free(text);
    if (!s) {
        snprintf(q->errstr, sizeof(q->errstr), "stored schema %d does not parse: %s", id, perr);
        tc_reg_store_error(q, TC_ERR_DB, "reading a schema");
        return NULL;
    }
    if (r->ncache == TC_REG_CACHE_MAX) {
        for (size_t i = 0; i < r->ncache; i++)
            tc_avro_schema_free(r->cache[i].schema);
        r->ncache = 0;
    }
    if (!r->cache) {
        r->cache = malloc(TC_REG_CACHE_MAX * sizeof(*r->cache));
        if (!r->cache) {
            tc_avro_schema_free(s);
            tc_reg_error(q, 500, 50000, "Out of memory");
            return NULL;
        }
    }
    c = &r->cache[r->ncache++];
    c->id = id;
    c->schema = s;
    return s;
}

void tc_reg_write_extras(tc_jbuf *b, const tc_reg_schema_text *t)
{
    /* Stored by the registry itself (jsonb or a copy of a parsed value): valid JSON. */
    if (t->references) {
        tc_jbuf_key(b, "references");
        tc_jbuf_raw(b, t->references, strlen(t->references));
    }
    if (t->metadata) {
        tc_jbuf_key(b, "metadata");
        tc_jbuf_raw(b, t->metadata, strlen(t->metadata));
    }
    if (t->rule_set) {
        tc_jbuf_key(b, "ruleSet");
        tc_jbuf_raw(b, t->rule_set, strlen(t->rule_set));
    }
}

/* ---- modes ---- */

int tc_reg_read_only(tc_reg_req *q, const char *subject)
{
    int mode;

    if (tc_reg_setting_effective(q, &tc_reg_setting_mode, subject, &mode) < 0)
        return -1;
    if (mode == TC_REG_MODE_READWRITE)
        return 0;
    tc_reg_error(q, 422, TC_REG_OPERATION_NOT_PERMITTED, "Subject %s is in read-only mode",
                 subject);
    return 1;
}

/* PUT /mode and /mode/{subject}: body {"mode": M} */
void tc_reg_put_mode(tc_reg_req *q, const char *subject)
{
    tc_json_doc *doc;
    const char *m;
    int mode;

    if (subject && !tc_reg_subject_ok(q, subject))
        return;
    doc = tc_reg_body(q);
    if (!doc)
        return;
    m = tc_json_string(tc_json_get(tc_json_root(doc), "mode"));
    mode = m ? tc_reg_mode_parse(m) : -1;
    if (mode < 0) {
        if (m && !strcasecmp(m, "IMPORT"))
            tc_reg_error(q, 422, TC_REG_INVALID_MODE,
                         "Invalid mode: IMPORT is not supported (ids are always assigned by this "
                         "registry). Valid values are READWRITE, READONLY and READONLY_OVERRIDE");
        else
            tc_reg_error(q, 422, TC_REG_INVALID_MODE,
                         "Invalid mode. Valid values are READWRITE, READONLY and "
                         "READONLY_OVERRIDE");
        tc_json_free(doc);
        return;
    }
    tc_json_free(doc);
    tc_reg_setting_put(q, &tc_reg_setting_mode, subject, mode);
}

/* ---- references ---- */

int tc_reg_referenced(tc_reg_req *q, const char *subject, int version)
{
    int *ids = NULL;
    size_t n = 0;
    tc_err err = q->r->store->ops->referrers(q->r->store, subject, version, &ids, &n, q->errstr,
                                             sizeof(q->errstr));

    free(ids);
    if (err != TC_OK) {
        tc_reg_store_error(q, err, "reading references");
        return -1;
    }
    if (n == 0)
        return 0;
    tc_reg_error(q, 422, TC_REG_REFERENCE_EXISTS,
                 "One or more references exist to the schema {subject=%s,version=%d}", subject,
                 version);
    return 1;
}

/* GET /subjects/{subject}/versions/{version}/referencedby and /schemas/ids/{id}/referencedby:
 * the ids of the schemas that reference that version (or any version holding schema id). */
void tc_reg_referencedby(tc_reg_req *q, int by_id)
{
    tc_reg_ref *where = NULL;
    size_t nwhere = 0;
    tc_reg_vlist vl = {NULL, 0};
    int *all = NULL;
    size_t nall = 0;
    tc_jbuf b;
    tc_err err;

    if (by_id) {
        if (tc_reg_id_versions(q, &where, &nwhere) < 0)
            goto out;
    } else {
        const char *subject = q->http->params[0];
        const tc_reg_version *v = tc_reg_find_version(q, 1, &vl);
        if (!v)
            goto out;
        where = calloc(1, sizeof(*where));
        if (!where || !(where->subject = strdup(subject))) {
            tc_reg_error(q, 500, 50000, "Out of memory");
            goto out;
        }
        where->version = v->version;
        nwhere = 1;
    }
    tc_jbuf_init(&b, 0);
    tc_jbuf_arr_begin(&b);
    for (size_t i = 0; i < nwhere; i++) {
        int *ids = NULL;
        size_t n = 0;
        err = q->r->store->ops->referrers(q->r->store, where[i].subject, where[i].version, &ids, &n,
                                          q->errstr, sizeof(q->errstr));
        if (err != TC_OK) {
            tc_jbuf_free(&b);
            tc_reg_store_error(q, err, "reading references");
            goto out;
        }
        for (size_t k = 0; k < n; k++) {
            size_t j;
            for (j = 0; j < nall && all[j] != ids[k]; j++)
                ;
            if (j == nall) {
                int *grown = realloc(all, (nall + 1) * sizeof(*all));
                if (!grown) {
                    free(ids);
                    tc_jbuf_free(&b);
                    tc_reg_error(q, 500, 50000, "Out of memory");
                    goto out;
                }
                all = grown;
                all[nall++] = ids[k];
                tc_jbuf_int(&b, ids[k]);
            }
        }
        free(ids);
    }
    tc_jbuf_arr_end(&b);
    tc_reg_send(q, 200, &b);
out:
    free(all);
    free(vl.v);
    tc_reg_refs_free(where, nwhere);
    tc_reg_end(q);
}

/* ---- listings ---- */

/* One schema answer {"subject", "version", "id", "schema", extras} into b. 0, or -1 with the
 * response set. */
static int tc_reg_write_version(tc_reg_req *q, tc_jbuf *b, const char *subject,
                                const tc_reg_version *v)
{
    tc_reg_schema_text t;
    tc_err err =
        q->r->store->ops->schema(q->r->store, v->schema_id, &t, q->errstr, sizeof(q->errstr));

    if (err != TC_OK) {
        tc_reg_store_error(q, err, "reading a schema");
        return -1;
    }
    tc_jbuf_obj_begin(b);
    tc_jbuf_key(b, "subject");
    tc_jbuf_str(b, subject);
    tc_jbuf_key(b, "version");
    tc_jbuf_int(b, v->version);
    tc_jbuf_key(b, "id");
    tc_jbuf_int(b, v->schema_id);
    tc_jbuf_key(b, "schema");
    tc_jbuf_str(b, t.original);
    tc_reg_write_extras(b, &t);
    tc_jbuf_obj_end(b);
    tc_reg_schema_text_free(&t);
    return 0;
}

/* GET /schemas[?subjectPrefix=p][&deleted=true][&latestOnly=true][&offset=n&limit=n]: the versions
 * of the subjects (sorted by subject, then version), each with its schema. */
void tc_reg_list_schemas(tc_reg_req *q)
{
    int deleted = tc_http_query_bool(q->http, "deleted");
    int latest_only = tc_http_query_bool(q->http, "latestOnly");
    tc_reg_subject_list l;
    long seen = 0, out = 0;
    tc_jbuf b;

    if (tc_reg_subjects_load(q, &l) < 0)
        goto out;
    tc_jbuf_init(&b, 0);
    tc_jbuf_arr_begin(&b);
    for (size_t i = 0; i < l.n; i++) {
        tc_reg_vlist vl = {NULL, 0};
        const tc_reg_version *latest;
        if (strncmp(l.names[i], l.prefix, l.plen) || (!l.live[i] && !deleted))
            continue;
        if (tc_reg_load_versions(q, l.names[i], &vl) < 0) {
            tc_jbuf_free(&b);
            goto out;
        }
        latest = tc_reg_pick(&vl, 0, deleted);
        for (size_t k = 0; k < vl.n; k++) {
            const tc_reg_version *v = &vl.v[k];
            if ((v->deleted && !deleted) || (latest_only && v != latest))
                continue;
            if (seen++ < l.offset || (l.limit >= 0 && out >= l.limit))
                continue;
            out++;
            if (tc_reg_write_version(q, &b, l.names[i], v) < 0) {
                free(vl.v);
                tc_jbuf_free(&b);
                goto out;
            }
        }
        free(vl.v);
    }
    tc_jbuf_arr_end(&b);
    tc_reg_send(q, 200, &b);
out:
    tc_reg_subjects_free(&l);
    tc_reg_end(q);
}

/* The key=...&value=... pairs of the query, in order. Returns how many, or -1 when malformed. */
static int tc_reg_meta_pairs(const char *query, char keys[][TC_REG_META_VALUE_MAX],
                             char values[][TC_REG_META_VALUE_MAX], int max)
{
    int nk = 0, nv = 0;

    while (*query) {
        size_t len = strcspn(query, "&");
        const char *eq = memchr(query, '=', len);
        if (eq) {
            size_t kl = (size_t)(eq - query);
            int is_key = kl == 3 && !memcmp(query, "key", 3);
            int is_value = kl == 5 && !memcmp(query, "value", 5);
            if ((is_key && nk == max) || (is_value && nv == max))
                return -1;
            if ((is_key || is_value) &&
                tc_http_pct_decode(eq + 1, len - kl - 1, is_key ? keys[nk++] : values[nv++],
                                   TC_REG_META_VALUE_MAX) < 0)
                return -1;
        }
        query += len + (query[len] == '&');
    }
    return nk == nv ? nk : -1;
}

/* Does metadata text (an object with "properties") hold every pair? */
static int tc_reg_meta_match(const char *metadata, char keys[][TC_REG_META_VALUE_MAX],
                             char values[][TC_REG_META_VALUE_MAX], int n)
{
    tc_json_doc *doc;
    const tc_json *props;
    int ok = 1;

    if (!metadata || !(doc = tc_json_parse(metadata, strlen(metadata), NULL, NULL, NULL, 0)))
        return n == 0 && metadata;
    props = tc_json_get(tc_json_root(doc), "properties");
    for (int i = 0; i < n && ok; i++) {
        const char *v = tc_json_string(tc_json_get(props, keys[i]));
        ok = v && !strcmp(v, values[i]);
    }
    tc_json_free(doc);
    return ok;
}

/* GET /subjects/{subject}/metadata?key=k&value=v...[&deleted=true]: the latest version whose
 * metadata properties hold every pair given. */
void tc_reg_latest_metadata(tc_reg_req *q)
{
    static char keys[TC_REG_META_PAIRS_MAX][TC_REG_META_VALUE_MAX];
    static char values[TC_REG_META_PAIRS_MAX][TC_REG_META_VALUE_MAX];
    const char *subject = q->http->params[0];
    int deleted = tc_http_query_bool(q->http, "deleted");
    tc_reg_vlist vl = {NULL, 0};
    int npairs;

    if (!tc_reg_subject_ok(q, subject))
        return;
    /* Static buffers: requests run one at a time under the registry mutex. */
    npairs = tc_reg_meta_pairs(q->http->query, keys, values, TC_REG_META_PAIRS_MAX);
    if (npairs < 0) {
        tc_reg_error(q, 400, 400,
                     "Metadata filters are pairs of key= and value= parameters (at most %d)",
                     TC_REG_META_PAIRS_MAX);
        return;
    }
    if (tc_reg_begin(q, NULL, 0) < 0)
        return;
    if (tc_reg_load_versions(q, subject, &vl) < 0)
        goto out;
    if (!tc_reg_pick(&vl, 0, deleted)) {
        tc_reg_error(q, 404, TC_REG_SUBJECT_NOT_FOUND, "Subject '%s' not found.", subject);
        goto out;
    }
    for (size_t i = vl.n; i-- > 0;) {
        const tc_reg_version *v = &vl.v[i];
        tc_reg_schema_text t;
        tc_err err;
        int hit;
        if (v->deleted && !deleted)
            continue;
        err = q->r->store->ops->schema(q->r->store, v->schema_id, &t, q->errstr, sizeof(q->errstr));
        if (err != TC_OK) {
            tc_reg_store_error(q, err, "reading a schema");
            goto out;
        }
        hit = tc_reg_meta_match(t.metadata, keys, values, npairs);
        tc_reg_schema_text_free(&t);
        if (hit) {
            tc_jbuf b;
            tc_jbuf_init(&b, 0);
            if (tc_reg_write_version(q, &b, subject, v) == 0)
                tc_reg_send(q, 200, &b);
            else
                tc_jbuf_free(&b);
            goto out;
        }
    }
    tc_reg_error(q, 404, TC_REG_SCHEMA_NOT_FOUND,
                 "No version of subject '%s' has metadata with the properties given", subject);
out:
    free(vl.v);
    tc_reg_end(q);
}

/* ---- Accept negotiation ---- */

/* What the registry produces, with Confluent's server-side weights (qs). */
static const struct {
    const char *type;
    double qs;
} tc_reg_produces[] = {
    {"application/vnd.schemaregistry.v1+json", 1.0},
    {"application/vnd.schemaregistry+json", 0.9},
    {"application/json", 0.5},
};

/* The client's q for type from one Accept entry ("type/sub;q=0.8"), or -1 when it does not
 * match. */
static double tc_reg_accept_q(const char *entry, size_t len, const char *type)
{
    size_t tl = strcspn(entry, ";"), tlen = strlen(type);
    const char *slash = strchr(type, '/');
    const char *qp;
    double qv = 1.0;
    size_t e = tl < len ? tl : len;

    while (e > 0 && entry[e - 1] == ' ')
        e--;
    if (!((e == tlen && !strncasecmp(entry, type, e)) || (e == 3 && !strncmp(entry, "*/*", 3)) ||
          (e == (size_t)(slash - type) + 2 && !strncasecmp(entry, type, e - 1) &&
           entry[e - 1] == '*')))
        return -1;
    for (qp = entry + e; qp < entry + len; qp++) {
        if (*qp == ';') {
            const char *p = qp + 1;
            while (p < entry + len && *p == ' ')
                p++;
            if (p + 2 <= entry + len && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
                qv = strtod(p + 2, NULL);
        }
    }
    return qv;
}

const char *tc_reg_negotiate(const char *accept)
{
    const char *best = NULL;
    double best_score = 0.0;

    if (!accept || !*accept)
        return TC_REGISTRY_CT;
    for (size_t t = 0; t < sizeof(tc_reg_produces) / sizeof(tc_reg_produces[0]); t++) {
        const char *p = accept;
        double q = -1;
        while (*p) {
            size_t len;
            double v;
            while (*p == ' ' || *p == ',')
                p++;
            len = strcspn(p, ",");
            if (len == 0)
                break;
            v = tc_reg_accept_q(p, len, tc_reg_produces[t].type);
            if (v > q)
                q = v;
            p += len;
        }
        if (q > 0 && q * tc_reg_produces[t].qs > best_score) {
            best_score = q * tc_reg_produces[t].qs;
            best = tc_reg_produces[t].type;
        }
    }
    return best;
}
