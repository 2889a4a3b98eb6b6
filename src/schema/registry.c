/*
 * registry.c -- the schema registry's request handling; see registry.h and docs/registry.md.
 *
 * Every handler runs under the registry mutex and as one unit of work on the store (begin ... end),
 * so a request either happens entirely or not at all. Submitted schemas (references resolved,
 * identity computed), the parsed-schema cache and the newer endpoints live in registry_ext.c; what
 * the two files share is registry_internal.h. Parsed schemas are cached by id: an id names
 * one schema text forever (rows of the schemas table are never changed), so the cache never goes
 * stale, even with several registry processes on one database.
 */
#include "schema/registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "core/log.h"
#include "schema/avro_schema.h"
#include "schema/registry_internal.h"
#include "schema/registry_store.h"

/* ---- responses ---- */

void tc_reg_error(tc_reg_req *q, int status, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tc_http_respond_error(q->resp, status, TC_REGISTRY_CT, code, msg);
}

void tc_reg_store_error(tc_reg_req *q, tc_err err, const char *what)
{
    tc_log_warn("registry", "%s: %s (%s)", what, q->errstr, tc_err_name(err));
    tc_reg_error(q, 500, TC_REG_STORE_ERROR, "Error in the backend data store while %s: %s", what,
                 q->errstr);
}

/* Send the buffer as a 200 (or status) response; b is consumed. */
void tc_reg_send(tc_reg_req *q, int status, tc_jbuf *b)
{
    size_t len = 0;
    char *text = tc_jbuf_take(b, &len);

    if (!text) {
        tc_reg_error(q, 500, 50000, "Out of memory building the response");
        return;
    }
    tc_http_respond_owned(q->resp, status, TC_REGISTRY_CT, text, len);
}

/* A 200 response with a constant JSON text. */
static void tc_reg_text(tc_reg_req *q, const char *json)
{
    tc_http_respond(q->resp, 200, TC_REGISTRY_CT, json, strlen(json));
}

/* ---- units of work ---- */

int tc_reg_begin(tc_reg_req *q, const char *subject, int write)
{
    tc_err err = q->r->store->ops->begin(q->r->store, subject, write, q->errstr, sizeof(q->errstr));

    if (err != TC_OK) {
        char ignored[TC_ERRSTR_MAX];
        q->r->store->ops->end(q->r->store, 0, ignored, sizeof(ignored));
        tc_reg_store_error(q, err, "starting a transaction");
        return -1;
    }
    q->in_unit = 1;
    return 0;
}

/* End the unit: commit when the response so far is a success, else roll back. */
void tc_reg_end(tc_reg_req *q)
{
    char errstr[TC_ERRSTR_MAX];
    int ok = q->resp->status >= 200 && q->resp->status < 300;
    tc_err err;

    if (!q->in_unit)
        return;
    q->in_unit = 0;
    err = q->r->store->ops->end(q->r->store, ok, errstr, sizeof(errstr));
    if (ok && err != TC_OK) {
        snprintf(q->errstr, sizeof(q->errstr), "%s", errstr);
        tc_reg_store_error(q, err, "committing");
    }
}

/* ---- validation of inputs ---- */

int tc_reg_subject_ok(tc_reg_req *q, const char *subject)
{
    size_t n = strlen(subject);

    if (n == 0 || n > TC_REGISTRY_SUBJECT_MAX || !tc_json_utf8_valid(subject, n)) {
        tc_reg_error(q, 422, TC_REG_INVALID_SUBJECT, "The specified subject is not valid.");
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)subject[i];
        if (c < 0x20 || c == 0x7F) {
            tc_reg_error(q, 422, TC_REG_INVALID_SUBJECT, "The specified subject is not valid.");
            return 0;
        }
    }
    return 1;
}

/* A version: "latest" or -1 (0 returned), or 1..2^31-1. -2 when invalid (response set). */
int tc_reg_parse_version(tc_reg_req *q, const char *s)
{
    long long v = 0;
    size_t n = strlen(s);

    if (!strcasecmp(s, "latest") || !strcmp(s, "-1"))
        return 0;
    if (n == 0 || n > 10 || strspn(s, "0123456789") != n || (v = strtoll(s, NULL, 10)) < 1 ||
        v > 2147483647LL) {
        tc_reg_error(q, 422, TC_REG_INVALID_VERSION,
                     "The specified version '%.64s' is not a valid version id. Allowed values are "
                     "between [1, 2^31-1] and the string \"latest\"",
                     s);
        return -2;
    }
    return (int)v;
}

static int tc_reg_content_type_ok(tc_reg_req *q)
{
    /* Confluent's resources consume these; application/octet-stream is what some clients send
     * for any body. */
    static const char *const ok[] = {"application/vnd.schemaregistry.v1+json",
                                     "application/vnd.schemaregistry+json", "application/json",
                                     "application/octet-stream"};
    const char *ct = q->http->content_type;
    size_t n;

    if (!ct || !*ct)
        return 1;
    while (*ct == ' ')
        ct++;
    n = strcspn(ct, "; ");
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strlen(ok[i]) == n && !strncasecmp(ct, ok[i], n))
            return 1;
    tc_reg_error(q, 415, 415, "HTTP 415 Unsupported Media Type");
    return 0;
}

/* Parse the JSON body (an object). NULL when it is not (response set). */
tc_json_doc *tc_reg_body(tc_reg_req *q)
{
    tc_json_limits lim = {TC_REGISTRY_BODY_MAX, TC_REG_BODY_DEPTH, TC_REG_BODY_NODES, 0};
    char jerr[TC_ERRSTR_MAX];
    tc_json_doc *doc;
    tc_err err;

    if (!tc_reg_content_type_ok(q))
        return NULL;
    doc = tc_json_parse(q->http->body, q->http->body_len, &lim, &err, jerr, sizeof(jerr));
    if (!doc) {
        if (err == TC_ERR_NOMEM)
            tc_reg_error(q, 500, 50000, "Out of memory");
        else
            tc_reg_error(q, 400, 400, "Unparsable request body: %s", jerr);
        return NULL;
    }
    if (tc_json_root(doc)->type != TC_JSON_OBJECT) {
        tc_reg_error(q, 400, 400, "The request body must be a JSON object");
        tc_json_free(doc);
        return NULL;
    }
    return doc;
}

/* ---- helpers over versions ---- */

int tc_reg_load_versions(tc_reg_req *q, const char *subject, tc_reg_vlist *vl)
{
    tc_err err = q->r->store->ops->versions(q->r->store, subject, &vl->v, &vl->n, q->errstr,
                                            sizeof(q->errstr));

    if (err != TC_OK) {
        tc_reg_store_error(q, err, "reading versions");
        return -1;
    }
    return 0;
}

static size_t tc_reg_live_count(const tc_reg_vlist *vl)
{
    size_t k = 0;

    for (size_t i = 0; i < vl->n; i++)
        k += !vl->v[i].deleted;
    return k;
}

/* The version entry for version (0 = latest) among the visible ones; NULL when none. */
const tc_reg_version *tc_reg_pick(const tc_reg_vlist *vl, int version, int include_deleted)
{
    for (size_t i = vl->n; i-- > 0;) {
        const tc_reg_version *v = &vl->v[i];
        if (v->deleted && !include_deleted)
            continue;
        if (version == 0 || v->version == version)
            return v;
    }
    return NULL;
}

/* The compatibility level and the mode are both a setting per subject with a global one. */
static const char *tc_reg_level_name(int level)
{
    return tc_compat_level_name((tc_compat_level)level);
}

const tc_reg_setting tc_reg_setting_level = {0,
                                             "compatibilityLevel",
                                             "compatibility",
                                             TC_COMPAT_DEFAULT,
                                             TC_REG_SUBJECT_CONFIG_NOT_FOUND,
                                             tc_reg_level_name};
const tc_reg_setting tc_reg_setting_mode = {
    1, "mode", "mode", TC_REG_MODE_READWRITE, TC_REG_SUBJECT_NOT_FOUND, tc_reg_mode_name};

static tc_err tc_reg_setting_read(tc_reg_req *q, const tc_reg_setting *set, const char *subject,
                                  int *value)
{
    tc_reg_store *st = q->r->store;

    return set->is_mode ? st->ops->get_mode(st, subject, value, q->errstr, sizeof(q->errstr))
                        : st->ops->get_config(st, subject, value, q->errstr, sizeof(q->errstr));
}

int tc_reg_setting_effective(tc_reg_req *q, const tc_reg_setting *set, const char *subject,
                             int *value)
{
    tc_err err = TC_ERR_NOT_FOUND;

    if (subject && subject[0])
        err = tc_reg_setting_read(q, set, subject, value);
    if (err == TC_ERR_NOT_FOUND)
        err = tc_reg_setting_read(q, set, "", value);
    if (err == TC_ERR_NOT_FOUND) {
        *value = set->default_value;
        return 0;
    }
    if (err != TC_OK) {
        tc_reg_store_error(q, err, "reading a setting");
        return -1;
    }
    return 0;
}

/* Messages of a compatibility check, as a JSON array being built. */
typedef struct tc_reg_msgs {
    tc_jbuf *b;
    size_t n;
} tc_reg_msgs;

static void tc_reg_collect(void *ctx, const char *msg)
{
    tc_reg_msgs *m = ctx;

    if (m->n++ < 64)
        tc_jbuf_str(m->b, msg);
}

/* Check candidate against the live versions in vl (just `only` when given) under the subject's
 * level: the latest live one, or all of them for a transitive level. Returns 1 compatible, 0 not,
 * -1 on error (response set). Messages go to msgs (may be NULL). */
static int tc_reg_check(tc_reg_req *q, const char *subject, const tc_avro_schema *candidate,
                        const tc_reg_vlist *vl, const tc_reg_version *only, tc_reg_msgs *msgs)
{
    const tc_avro_schema **prev;
    const tc_reg_version *latest = tc_reg_pick(vl, 0, 0);
    int *vers, ok, transitive, value;
    size_t n = 0;
    tc_compat_level level;

    if (tc_reg_setting_effective(q, &tc_reg_setting_level, subject, &value) < 0)
        return -1;
    level = (tc_compat_level)value;
    if (level == TC_COMPAT_NONE || !latest)
        return 1;
    transitive = level == TC_COMPAT_BACKWARD_TRANSITIVE || level == TC_COMPAT_FORWARD_TRANSITIVE ||
                 level == TC_COMPAT_FULL_TRANSITIVE;
    prev = malloc(vl->n * sizeof(*prev));
    vers = malloc(vl->n * sizeof(*vers));
    if (!prev || !vers) {
        free(prev);
        free(vers);
        tc_reg_error(q, 500, 50000, "Out of memory");
        return -1;
    }
    for (size_t i = 0; i < vl->n; i++) {
        const tc_reg_version *v = &vl->v[i];
        if (v->deleted || (only && v != only) || (!only && !transitive && v != latest))
            continue;
        prev[n] = tc_reg_schema(q, v->schema_id);
        if (!prev[n]) {
            free(prev);
            free(vers);
            return -1;
        }
        vers[n++] = v->version;
    }
    ok = tc_avro_compatible(level, candidate, prev, vers, n, msgs ? tc_reg_collect : NULL, msgs);
    free(prev);
    free(vers);
    return ok;
}

/* ---- handlers ---- */

static void tc_reg_root(tc_reg_req *q)
{
    tc_reg_text(q, "{}");
}

static void tc_reg_types(tc_reg_req *q)
{
    tc_reg_text(q, "[\"AVRO\"]");
}

int tc_reg_parse_id(const char *s, int *id)
{
    size_t n = strlen(s);
    long long v;

    if (n == 0 || n > 10 || strspn(s, "0123456789") != n)
        return -1;
    v = strtoll(s, NULL, 10);
    if (v < 1 || v > 2147483647LL)
        return -1;
    *id = (int)v;
    return 0;
}

/* GET /schemas/ids/{id} and /schemas/ids/{id}/schema; format=resolved gives the text with its
 * references inlined (Confluent's "resolved" format). */
static void tc_reg_schema_by_id(tc_reg_req *q, int raw)
{
    tc_reg_schema_text t = {NULL, NULL, NULL, NULL};
    char format[16], *resolved = NULL;
    tc_jbuf b;
    int id;
    tc_err err;

    if (tc_reg_parse_id(q->http->params[0], &id) < 0) {
        /* Confluent's path takes an integer: anything else matches no resource. */
        tc_reg_error(q, 404, 404, "HTTP 404 Not Found");
        return;
    }
    if (tc_http_query(q->http, "format", format, sizeof(format)) != 1)
        format[0] = '\0';
    if (tc_reg_begin(q, NULL, 0) < 0)
        return;
    err = q->r->store->ops->schema(q->r->store, id, &t, q->errstr, sizeof(q->errstr));
    if (err == TC_ERR_NOT_FOUND) {
        tc_reg_error(q, 404, TC_REG_SCHEMA_NOT_FOUND, "Schema %d not found", id);
        goto out;
    }
    if (err != TC_OK) {
        tc_reg_store_error(q, err, "reading a schema");
        goto out;
    }
    if (!strcasecmp(format, "resolved") && t.references) {
        resolved = tc_reg_resolved_text(q, &t, 0);
        if (!resolved)
            goto out;
    }
    if (raw) {
        const char *text = resolved ? resolved : t.original;
        tc_http_respond(q->resp, 200, TC_REGISTRY_CT, text, strlen(text));
        goto out;
    }
    tc_jbuf_init(&b, 0);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "schema");
    tc_jbuf_str(&b, resolved ? resolved : t.original);
    if (!resolved)
        tc_reg_write_extras(&b, &t);
    tc_jbuf_obj_end(&b);
    tc_reg_send(q, 200, &b);
out:
    free(resolved);
    tc_reg_schema_text_free(&t);
    tc_reg_end(q);
}

int tc_reg_id_versions(tc_reg_req *q, tc_reg_ref **refs, size_t *n)
{
    tc_reg_schema_text t;
    int id;
    tc_err err;

    *refs = NULL;
    *n = 0;
    if (tc_reg_parse_id(q->http->params[0], &id) < 0) {
        tc_reg_error(q, 404, 404, "HTTP 404 Not Found");
        return -1;
    }
    if (tc_reg_begin(q, NULL, 0) < 0)
        return -1;
    err = q->r->store->ops->schema(q->r->store, id, &t, q->errstr, sizeof(q->errstr));
    tc_reg_schema_text_free(&t);
    if (err == TC_OK)
        err = q->r->store->ops->refs(q->r->store, id, refs, n, q->errstr, sizeof(q->errstr));
    if (err == TC_ERR_NOT_FOUND)
        tc_reg_error(q, 404, TC_REG_SCHEMA_NOT_FOUND, "Schema %d not found", id);
    else if (err != TC_OK)
        tc_reg_store_error(q, err, "reading the versions of a schema");
    return err == TC_OK ? 0 : -1;
}

/* GET /schemas/ids/{id}/versions and /schemas/ids/{id}/subjects */
static void tc_reg_schema_refs(tc_reg_req *q, int subjects_only)
{
    int deleted = tc_http_query_bool(q->http, "deleted");
    const char *last = NULL;
    tc_reg_ref *refs = NULL;
    size_t n = 0;
    tc_jbuf b;

    if (tc_reg_id_versions(q, &refs, &n) < 0)
        goto out;
    tc_jbuf_init(&b, 0);
    tc_jbuf_arr_begin(&b);
    for (size_t i = 0; i < n; i++) {
        if (refs[i].deleted && !deleted)
            continue;
        if (subjects_only) {
            /* Sorted by subject: print each once. */
            if (!last || strcmp(last, refs[i].subject))
                tc_jbuf_str(&b, refs[i].subject);
            last = refs[i].subject;
            continue;
        }
        tc_jbuf_obj_begin(&b);
        tc_jbuf_key(&b, "subject");
        tc_jbuf_str(&b, refs[i].subject);
        tc_jbuf_key(&b, "version");
        tc_jbuf_int(&b, refs[i].version);
        tc_jbuf_obj_end(&b);
    }
    tc_jbuf_arr_end(&b);
    tc_reg_send(q, 200, &b);
out:
    tc_reg_refs_free(refs, n);
    tc_reg_end(q);
}

/* offset/limit query parameters (Confluent's pagination); limit < 0 means all. */
void tc_reg_page(tc_reg_req *q, long *offset, long *limit)
{
    char v[24];

    *offset = 0;
    *limit = -1;
    if (tc_http_query(q->http, "offset", v, sizeof(v)) == 1)
        *offset = strtol(v, NULL, 10);
    if (tc_http_query(q->http, "limit", v, sizeof(v)) == 1 && v[0])
        *limit = strtol(v, NULL, 10);
    if (*offset < 0)
        *offset = 0;
}

int tc_reg_subjects_load(tc_reg_req *q, tc_reg_subject_list *l)
{
    tc_err err;

    memset(l, 0, sizeof(*l));
    if (tc_http_query(q->http, "subjectPrefix", l->prefix, sizeof(l->prefix)) != 1)
        l->prefix[0] = '\0';
    l->plen = strlen(l->prefix);
    tc_reg_page(q, &l->offset, &l->limit);
    if (tc_reg_begin(q, NULL, 0) < 0)
        return -1;
    err = q->r->store->ops->subjects(q->r->store, &l->names, &l->live, &l->n, q->errstr,
                                     sizeof(q->errstr));
    if (err != TC_OK) {
        tc_reg_store_error(q, err, "listing subjects");
        return -1;
    }
    return 0;
}

void tc_reg_subjects_free(tc_reg_subject_list *l)
{
    tc_reg_names_free(l->names, l->n);
    free(l->live);
    memset(l, 0, sizeof(*l));
}

/* GET /subjects */
static void tc_reg_subjects(tc_reg_req *q)
{
    int deleted = tc_http_query_bool(q->http, "deleted");
    int deleted_only = tc_http_query_bool(q->http, "deleted_only");
    tc_reg_subject_list l;
    long seen = 0, out = 0;
    tc_jbuf b;

    if (tc_reg_subjects_load(q, &l) == 0) {
        tc_jbuf_init(&b, 0);
        tc_jbuf_arr_begin(&b);
        for (size_t i = 0; i < l.n; i++) {
            int show = deleted_only ? !l.live[i] : (l.live[i] || deleted);
            if (!show || strncmp(l.names[i], l.prefix, l.plen))
                continue;
            if (seen++ < l.offset || (l.limit >= 0 && out >= l.limit))
                continue;
            out++;
            tc_jbuf_str(&b, l.names[i]);
        }
        tc_jbuf_arr_end(&b);
        tc_reg_send(q, 200, &b);
    }
    tc_reg_subjects_free(&l);
    tc_reg_end(q);
}

/* GET /subjects/{subject}/versions */
static void tc_reg_list_versions(tc_reg_req *q)
{
    const char *subject = q->http->params[0];
    int deleted = tc_http_query_bool(q->http, "deleted");
    int deleted_only = tc_http_query_bool(q->http, "deleted_only");
    tc_reg_vlist vl = {NULL, 0};
    long offset, limit, seen = 0, out = 0;
    tc_jbuf b;

    if (!tc_reg_subject_ok(q, subject))
        return;
    tc_reg_page(q, &offset, &limit);
    if (tc_reg_begin(q, NULL, 0) < 0)
        return;
    if (tc_reg_load_versions(q, subject, &vl) == 0) {
        if (vl.n == 0 || (!deleted && !deleted_only && tc_reg_live_count(&vl) == 0)) {
            tc_reg_error(q, 404, TC_REG_SUBJECT_NOT_FOUND, "Subject '%s' not found.", subject);
        } else {
            tc_jbuf_init(&b, 0);
            tc_jbuf_arr_begin(&b);
            for (size_t i = 0; i < vl.n; i++) {
                int show = deleted_only ? vl.v[i].deleted : (!vl.v[i].deleted || deleted);
                if (!show || seen++ < offset || (limit >= 0 && out >= limit))
                    continue;
                out++;
                tc_jbuf_int(&b, vl.v[i].version);
            }
            tc_jbuf_arr_end(&b);
            tc_reg_send(q, 200, &b);
        }
    }
    free(vl.v);
    tc_reg_end(q);
}

const tc_reg_version *tc_reg_find_version(tc_reg_req *q, int include_deleted, tc_reg_vlist *vl)
{
    const char *subject = q->http->params[0];
    const tc_reg_version *v;
    int version;

    vl->v = NULL;
    vl->n = 0;
    if (!tc_reg_subject_ok(q, subject))
        return NULL;
    version = tc_reg_parse_version(q, q->http->params[1]);
    if (version < 0 || tc_reg_begin(q, NULL, 0) < 0 || tc_reg_load_versions(q, subject, vl) < 0)
        return NULL;
    if (!tc_reg_pick(vl, 0, include_deleted)) {
        tc_reg_error(q, 404, TC_REG_SUBJECT_NOT_FOUND, "Subject '%s' not found.", subject);
        return NULL;
    }
    v = tc_reg_pick(vl, version, include_deleted);
    if (!v)
        tc_reg_error(q, 404, TC_REG_VERSION_NOT_FOUND, "Version %s not found.", q->http->params[1]);
    return v;
}

/* GET /subjects/{subject}/versions/{version} (and .../schema); format=resolved as for ids */
static void tc_reg_get_version(tc_reg_req *q, int raw)
{
    const char *subject = q->http->params[0];
    int deleted = tc_http_query_bool(q->http, "deleted");
    tc_reg_vlist vl = {NULL, 0};
    const tc_reg_version *v;
    tc_reg_schema_text t = {NULL, NULL, NULL, NULL};
    char format[16];
    tc_jbuf b;
    tc_err err;

    v = tc_reg_find_version(q, deleted, &vl);
    if (!v)
        goto out;
    err = q->r->store->ops->schema(q->r->store, v->schema_id, &t, q->errstr, sizeof(q->errstr));
    if (err != TC_OK) {
        tc_reg_store_error(q, err, "reading a schema");
        goto out;
    }
    if (tc_http_query(q->http, "format", format, sizeof(format)) == 1 &&
        !strcasecmp(format, "resolved") && t.references) {
        /* The text with its references inlined, in place of the text as registered. */
        char *resolved = tc_reg_resolved_text(q, &t, 0);
        if (!resolved)
            goto out;
        free(t.original);
        free(t.references);
        t.original = resolved;
        t.references = NULL;
    }
    if (raw) {
        tc_http_respond(q->resp, 200, TC_REGISTRY_CT, t.original, strlen(t.original));
        goto out;
    }
    tc_jbuf_init(&b, 0);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "subject");
    tc_jbuf_str(&b, subject);
    tc_jbuf_key(&b, "version");
    tc_jbuf_int(&b, v->version);
    tc_jbuf_key(&b, "id");
    tc_jbuf_int(&b, v->schema_id);
    tc_jbuf_key(&b, "schema");
    tc_jbuf_str(&b, t.original);
    tc_reg_write_extras(&b, &t);
    tc_jbuf_obj_end(&b);
    tc_reg_send(q, 200, &b);
out:
    tc_reg_schema_text_free(&t);
    free(vl.v);
    tc_reg_end(q);
}

/* {"id": n} as the answer. */
static void tc_reg_send_id(tc_reg_req *q, int id)
{
    tc_jbuf b;

    tc_jbuf_init(&b, 0);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "id");
    tc_jbuf_int(&b, id);
    tc_jbuf_obj_end(&b);
    tc_reg_send(q, 200, &b);
}

/* POST /subjects/{subject}/versions */
static void tc_reg_register(tc_reg_req *q)
{
    const char *subject = q->http->params[0];
    tc_reg_submission sub;
    tc_reg_schema_text text;
    tc_reg_vlist vl = {NULL, 0};
    tc_reg_msgs msgs;
    tc_jbuf mb;
    int id = 0, max_version = 0, ok;
    tc_err err;

    memset(&sub, 0, sizeof(sub));
    if (!tc_reg_subject_ok(q, subject))
        return;
    if (tc_reg_begin(q, subject, 1) < 0)
        return;
    if (tc_reg_read_only(q, subject) != 0)
        goto out;
    if (tc_reg_submission_parse(q, &sub, NULL, 0) < 0)
        goto out;
    if (tc_reg_load_versions(q, subject, &vl) < 0)
        goto out;
    err = q->r->store->ops->find(q->r->store, sub.identity, &id, q->errstr, sizeof(q->errstr));
    if (err != TC_OK && err != TC_ERR_NOT_FOUND) {
        tc_reg_store_error(q, err, "looking the schema up");
        goto out;
    }
    if (err == TC_OK) {
        for (size_t i = 0; i < vl.n; i++) {
            if (!vl.v[i].deleted && vl.v[i].schema_id == id) {
                /* Already registered under this subject: same id, nothing new. */
                tc_reg_send_id(q, id);
                goto out;
            }
        }
    }
    tc_jbuf_init(&mb, 16 * 1024);
    tc_jbuf_arr_begin(&mb);
    msgs.b = &mb;
    msgs.n = 0;
    ok = tc_reg_check(q, subject, sub.schema, &vl, NULL, &msgs);
    tc_jbuf_arr_end(&mb);
    if (ok <= 0) {
        if (ok == 0)
            tc_reg_error(q, 409, TC_REG_INCOMPATIBLE,
                         "Schema being registered is incompatible with an earlier schema for "
                         "subject \"%s\", details: %s",
                         subject, tc_jbuf_failed(&mb) ? "(too long)" : mb.data);
        tc_jbuf_free(&mb);
        goto out;
    }
    tc_jbuf_free(&mb);
    if (err == TC_ERR_NOT_FOUND) {
        tc_jbuf rb, mdb, rsb;
        tc_jbuf *parts[3] = {&rb, &mdb, &rsb};
        const tc_json *vals[3] = {sub.refs, sub.metadata, sub.rule_set};
        char **to[3] = {&text.references, &text.metadata, &text.rule_set};

        memset(&text, 0, sizeof(text));
        text.original = strdup(sub.normalized ? sub.normalized : sub.text);
        if (!text.original) {
            tc_reg_error(q, 500, 50000, "Out of memory");
            goto out;
        }
        err = TC_OK;
        for (int i = 0; i < 3; i++) {
            tc_jbuf_init(parts[i], 0);
            if (vals[i]) {
                tc_jbuf_value(parts[i], vals[i]);
                *to[i] = parts[i]->data;
                if (tc_jbuf_failed(parts[i]))
                    err = tc_err_set(TC_ERR_NOMEM, q->errstr, sizeof(q->errstr), "out of memory");
            }
        }
        if (err == TC_OK)
            err = q->r->store->ops->insert_schema(q->r->store, sub.identity, &text, &id, q->errstr,
                                                  sizeof(q->errstr));
        for (int i = 0; i < 3; i++)
            tc_jbuf_free(parts[i]);
        free(text.original);
        if (err != TC_OK) {
            tc_reg_store_error(q, err, "storing the schema");
            goto out;
        }
    }
    for (size_t i = 0; i < vl.n; i++)
        if (vl.v[i].version > max_version)
            max_version = vl.v[i].version;
    if (max_version == 2147483647) {
        tc_reg_error(q, 422, TC_REG_INVALID_VERSION, "Subject '%s' has no version number left",
                     subject);
        goto out;
    }
    err = q->r->store->ops->insert_version(q->r->store, subject, max_version + 1, id, q->errstr,
                                           sizeof(q->errstr));
    if (err != TC_OK) {
        tc_reg_store_error(q, err, "storing the version");
        goto out;
    }
    tc_reg_send_id(q, id);
    tc_log_info("registry", "registered schema id %d as version %d of \"%s\"", id, max_version + 1,
                subject);
out:
    free(vl.v);
    tc_reg_end(q);
    tc_reg_submission_free(&sub);
}

/* POST /subjects/{subject} */
static void tc_reg_lookup(tc_reg_req *q)
{
    const char *subject = q->http->params[0];
    int deleted = tc_http_query_bool(q->http, "deleted");
    tc_reg_submission sub;
    tc_reg_vlist vl = {NULL, 0};
    const tc_reg_version *hit = NULL;
    tc_reg_schema_text stored = {NULL, NULL, NULL, NULL};
    tc_jbuf b;
    int id = 0;
    tc_err err;

    memset(&sub, 0, sizeof(sub));
    if (!tc_reg_subject_ok(q, subject))
        return;
    if (tc_reg_begin(q, NULL, 0) < 0)
        return;
    if (tc_reg_submission_parse(q, &sub, NULL, 0) < 0)
        goto out;
    if (tc_reg_load_versions(q, subject, &vl) < 0)
        goto out;
    if (!tc_reg_pick(&vl, 0, deleted)) {
        tc_reg_error(q, 404, TC_REG_SUBJECT_NOT_FOUND, "Subject '%s' not found.", subject);
        goto out;
    }
    err = q->r->store->ops->find(q->r->store, sub.identity, &id, q->errstr, sizeof(q->errstr));
    if (err != TC_OK && err != TC_ERR_NOT_FOUND) {
        tc_reg_store_error(q, err, "looking the schema up");
        goto out;
    }
    for (size_t i = vl.n; err == TC_OK && i-- > 0 && !hit;)
        if (vl.v[i].schema_id == id && (deleted || !vl.v[i].deleted))
            hit = &vl.v[i];
    if (!hit) {
        tc_reg_error(q, 404, TC_REG_SCHEMA_NOT_FOUND, "Schema not found");
        goto out;
    }
    err = q->r->store->ops->schema(q->r->store, id, &stored, q->errstr, sizeof(q->errstr));
    if (err != TC_OK) {
        tc_reg_store_error(q, err, "reading a schema");
        goto out;
    }
    tc_jbuf_init(&b, 0);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "subject");
    tc_jbuf_str(&b, subject);
    tc_jbuf_key(&b, "version");
    tc_jbuf_int(&b, hit->version);
    tc_jbuf_key(&b, "id");
    tc_jbuf_int(&b, id);
    tc_jbuf_key(&b, "schema");
    tc_jbuf_str(&b, stored.original);
    tc_reg_write_extras(&b, &stored);
    tc_jbuf_obj_end(&b);
    tc_reg_send(q, 200, &b);
out:
    tc_reg_schema_text_free(&stored);
    free(vl.v);
    tc_reg_end(q);
    tc_reg_submission_free(&sub);
}

/* DELETE /subjects/{subject} */
static void tc_reg_delete_subject(tc_reg_req *q)
{
    const char *subject = q->http->params[0];
    int permanent = tc_http_query_bool(q->http, "permanent");
    tc_reg_vlist vl = {NULL, 0};
    tc_jbuf b;
    tc_err err;

    if (!tc_reg_subject_ok(q, subject))
        return;
    if (tc_reg_begin(q, subject, 1) < 0)
        return;
    if (tc_reg_load_versions(q, subject, &vl) < 0)
        goto out;
    if (vl.n == 0) {
        tc_reg_error(q, 404, TC_REG_SUBJECT_NOT_FOUND, "Subject '%s' not found.", subject);
        goto out;
    }
    if (permanent && tc_reg_live_count(&vl) > 0) {
        tc_reg_error(q, 404, TC_REG_SUBJECT_NOT_SOFT_DELETED,
                     "Subject '%s' was not deleted first before being permanently deleted",
                     subject);
        goto out;
    }
    if (!permanent && tc_reg_live_count(&vl) == 0) {
        tc_reg_error(q, 404, TC_REG_SUBJECT_SOFT_DELETED,
                     "Subject '%s' was soft deleted.Set permanent=true to delete permanently",
                     subject);
        goto out;
    }
    if (tc_reg_read_only(q, subject) != 0)
        goto out;
    for (size_t i = 0; i < vl.n; i++)
        if (tc_reg_referenced(q, subject, vl.v[i].version) != 0)
            goto out;
    err =
        permanent
            ? q->r->store->ops->hard_delete(q->r->store, subject, 0, q->errstr, sizeof(q->errstr))
            : q->r->store->ops->soft_delete(q->r->store, subject, 0, q->errstr, sizeof(q->errstr));
    if (err == TC_OK && permanent) {
        err = q->r->store->ops->delete_config(q->r->store, subject, q->errstr, sizeof(q->errstr));
        if (err == TC_ERR_NOT_FOUND)
            err = TC_OK;
    }
    if (err != TC_OK) {
        tc_reg_store_error(q, err, "deleting a subject");
        goto out;
    }
    tc_jbuf_init(&b, 0);
    tc_jbuf_arr_begin(&b);
    for (size_t i = 0; i < vl.n; i++)
        if (permanent || !vl.v[i].deleted)
            tc_jbuf_int(&b, vl.v[i].version);
    tc_jbuf_arr_end(&b);
    tc_reg_send(q, 200, &b);
out:
    free(vl.v);
    tc_reg_end(q);
}

/* DELETE /subjects/{subject}/versions/{version} */
static void tc_reg_delete_version(tc_reg_req *q)
{
    const char *subject = q->http->params[0];
    int permanent = tc_http_query_bool(q->http, "permanent");
    tc_reg_vlist vl = {NULL, 0};
    const tc_reg_version *v;
    char num[16];
    int version;
    tc_err err;

    if (!tc_reg_subject_ok(q, subject))
        return;
    version = tc_reg_parse_version(q, q->http->params[1]);
    if (version < 0)
        return;
    if (tc_reg_begin(q, subject, 1) < 0)
        return;
    if (tc_reg_load_versions(q, subject, &vl) < 0)
        goto out;
    if (vl.n == 0) {
        tc_reg_error(q, 404, TC_REG_SUBJECT_NOT_FOUND, "Subject '%s' not found.", subject);
        goto out;
    }
    /* A number: among every version, so a soft-deleted one is reported as such. "latest": the
     * newest live version (soft delete), or the newest of all (permanent delete). */
    v = tc_reg_pick(&vl, version, version != 0 || permanent);
    if (!v) {
        tc_reg_error(q, 404, TC_REG_VERSION_NOT_FOUND, "Version %s not found.", q->http->params[1]);
        goto out;
    }
    if (permanent && !v->deleted) {
        tc_reg_error(q, 404, TC_REG_VERSION_NOT_SOFT_DELETED,
                     "Subject '%s' Version %d was not deleted first before being permanently "
                     "deleted",
                     subject, v->version);
        goto out;
    }
    if (!permanent && v->deleted) {
        tc_reg_error(q, 404, TC_REG_VERSION_SOFT_DELETED,
                     "Subject '%s' Version %d was soft deleted.Set permanent=true to delete "
                     "permanently",
                     subject, v->version);
        goto out;
    }
    if (tc_reg_read_only(q, subject) != 0 || tc_reg_referenced(q, subject, v->version) != 0)
        goto out;
    err = permanent ? q->r->store->ops->hard_delete(q->r->store, subject, v->version, q->errstr,
                                                    sizeof(q->errstr))
                    : q->r->store->ops->soft_delete(q->r->store, subject, v->version, q->errstr,
                                                    sizeof(q->errstr));
    if (err != TC_OK) {
        tc_reg_store_error(q, err, "deleting a version");
        goto out;
    }
    snprintf(num, sizeof(num), "%d", v->version);
    tc_http_respond(q->resp, 200, TC_REGISTRY_CT, num, strlen(num));
out:
    free(vl.v);
    tc_reg_end(q);
}

/* POST /compatibility/subjects/{subject}/versions[/{version}] */
static void tc_reg_compat(tc_reg_req *q, int one_version)
{
    const char *subject = q->http->params[0];
    int verbose = tc_http_query_bool(q->http, "verbose");
    tc_reg_submission sub;
    tc_reg_vlist vl = {NULL, 0};
    const tc_reg_version *only = NULL;
    char invalid[TC_ERRSTR_MAX + 32];
    tc_reg_msgs msgs;
    tc_jbuf b, mb;
    int version = 0, ok = 1;

    memset(&sub, 0, sizeof(sub));
    if (!tc_reg_subject_ok(q, subject))
        return;
    if (one_version) {
        version = tc_reg_parse_version(q, q->http->params[1]);
        if (version < 0)
            return;
    }
    invalid[0] = '\0';
    if (tc_reg_begin(q, NULL, 0) < 0)
        return;
    if (tc_reg_submission_parse(q, &sub, verbose ? invalid : NULL, sizeof(invalid)) < 0 &&
        !invalid[0])
        goto out;
    if (tc_reg_load_versions(q, subject, &vl) < 0)
        goto out;
    if (one_version) {
        only = tc_reg_pick(&vl, version, 0);
        if (!only && version != 0) {
            tc_reg_error(q, 404, TC_REG_VERSION_NOT_FOUND, "Version %s not found.",
                         q->http->params[1]);
            goto out;
        }
    }
    tc_jbuf_init(&mb, 64 * 1024);
    tc_jbuf_arr_begin(&mb);
    msgs.b = &mb;
    msgs.n = 0;
    if (!sub.schema) {
        tc_jbuf_str(&mb, invalid);
        ok = 0;
    } else if (!one_version || only) {
        ok = tc_reg_check(q, subject, sub.schema, &vl, only, &msgs);
    }
    tc_jbuf_arr_end(&mb);
    if (ok >= 0) {
        tc_jbuf_init(&b, 0);
        tc_jbuf_obj_begin(&b);
        tc_jbuf_key(&b, "is_compatible");
        tc_jbuf_bool(&b, ok);
        if (verbose) {
            tc_jbuf_key(&b, "messages");
            if (tc_jbuf_failed(&mb))
                tc_jbuf_raw(&b, "[\"(messages too long)\"]", strlen("[\"(messages too long)\"]"));
            else
                tc_jbuf_raw(&b, mb.data, mb.len);
        }
        tc_jbuf_obj_end(&b);
        tc_reg_send(q, 200, &b);
    }
    tc_jbuf_free(&mb);
out:
    free(vl.v);
    tc_reg_end(q);
    tc_reg_submission_free(&sub);
}

void tc_reg_setting_send(tc_reg_req *q, const tc_reg_setting *set, const char *member, int value)
{
    tc_jbuf b;

    tc_jbuf_init(&b, 0);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, member);
    tc_jbuf_str(&b, set->name(value));
    tc_jbuf_obj_end(&b);
    tc_reg_send(q, 200, &b);
}

/* GET /config, /mode and their /{subject} forms (defaultToGlobal=true: the global one when the
 * subject has none). */
void tc_reg_setting_get(tc_reg_req *q, const tc_reg_setting *set, const char *subject)
{
    int to_global = tc_http_query_bool(q->http, "defaultToGlobal");
    int value = set->default_value;
    tc_err err;

    if (subject && !tc_reg_subject_ok(q, subject))
        return;
    if (tc_reg_begin(q, NULL, 0) < 0)
        return;
    err = tc_reg_setting_read(q, set, subject ? subject : "", &value);
    if (err == TC_ERR_NOT_FOUND && subject && to_global)
        err = tc_reg_setting_read(q, set, "", &value);
    if (err == TC_ERR_NOT_FOUND && subject && !to_global) {
        tc_reg_error(q, 404, set->not_found_code,
                     "Subject '%s' does not have subject-level %s configured", subject,
                     set->put_member);
    } else if (err != TC_OK && err != TC_ERR_NOT_FOUND) {
        tc_reg_store_error(q, err, "reading a setting");
    } else {
        tc_reg_setting_send(q, set, set->member, err == TC_OK ? value : set->default_value);
    }
    tc_reg_end(q);
}

void tc_reg_setting_put(tc_reg_req *q, const tc_reg_setting *set, const char *subject, int value)
{
    tc_reg_store *st = q->r->store;
    const char *key = subject ? subject : "";
    tc_err err;

    if (tc_reg_begin(q, subject, 1) < 0)
        return;
    err = set->is_mode ? st->ops->set_mode(st, key, value, q->errstr, sizeof(q->errstr))
                       : st->ops->set_config(st, key, value, q->errstr, sizeof(q->errstr));
    if (err != TC_OK)
        tc_reg_store_error(q, err, "writing a setting");
    else
        tc_reg_setting_send(q, set, set->put_member, value);
    tc_reg_end(q);
}

/* PUT /config and /config/{subject} */
static void tc_reg_put_config(tc_reg_req *q, const char *subject)
{
    tc_json_doc *doc;
    const tc_json *root, *c;
    tc_compat_level level;

    if (subject && !tc_reg_subject_ok(q, subject))
        return;
    doc = tc_reg_body(q);
    if (!doc)
        return;
    root = tc_json_root(doc);
    c = tc_json_get(root, "compatibility");
    if (!c)
        c = tc_json_get(root, "compatibilityLevel");
    if (!tc_json_string(c) || tc_compat_level_parse(c->u.str, &level) < 0) {
        tc_reg_error(q, 422, TC_REG_INVALID_COMPATIBILITY_LEVEL,
                     "Invalid compatibility level. Valid values are none, backward, forward, "
                     "full, backward_transitive, forward_transitive, and full_transitive");
        tc_json_free(doc);
        return;
    }
    tc_json_free(doc);
    tc_reg_setting_put(q, &tc_reg_setting_level, subject, (int)level);
}

/* DELETE /config, /mode and their /{subject} forms: the subject's setting goes (it follows the
 * global one again), or the global one goes back to its default; answers with what was removed. */
void tc_reg_setting_delete(tc_reg_req *q, const tc_reg_setting *set, const char *subject)
{
    tc_reg_store *st = q->r->store;
    const char *key = subject ? subject : "";
    int value = set->default_value;
    tc_err err;

    if (subject && !tc_reg_subject_ok(q, subject))
        return;
    if (tc_reg_begin(q, subject, 1) < 0)
        return;
    err = tc_reg_setting_read(q, set, key, &value);
    if (err == TC_OK)
        err = set->is_mode ? st->ops->delete_mode(st, key, q->errstr, sizeof(q->errstr))
                           : st->ops->delete_config(st, key, q->errstr, sizeof(q->errstr));
    if (err == TC_ERR_NOT_FOUND && subject)
        tc_reg_error(q, 404, set->not_found_code,
                     "Subject '%s' does not have subject-level %s configured", subject,
                     set->put_member);
    else if (err != TC_OK && err != TC_ERR_NOT_FOUND)
        tc_reg_store_error(q, err, "deleting a setting");
    else
        tc_reg_setting_send(q, set, set->member, value);
    tc_reg_end(q);
}

/* ---- routing ---- */

typedef enum tc_reg_op {
    TC_OP_ROOT,
    TC_OP_TYPES,
    TC_OP_MODE,
    TC_OP_SCHEMA_ID,
    TC_OP_SCHEMA_ID_RAW,
    TC_OP_SCHEMA_ID_VERSIONS,
    TC_OP_SCHEMA_ID_SUBJECTS,
    TC_OP_SUBJECTS,
    TC_OP_LOOKUP,
    TC_OP_DELETE_SUBJECT,
    TC_OP_LIST_VERSIONS,
    TC_OP_REGISTER,
    TC_OP_GET_VERSION,
    TC_OP_GET_VERSION_RAW,
    TC_OP_DELETE_VERSION,
    TC_OP_COMPAT_ONE,
    TC_OP_COMPAT_ALL,
    TC_OP_GET_CONFIG,
    TC_OP_PUT_CONFIG,
    TC_OP_DELETE_CONFIG,
    TC_OP_GET_SUBJECT_CONFIG,
    TC_OP_PUT_SUBJECT_CONFIG,
    TC_OP_DELETE_SUBJECT_CONFIG,
    TC_OP_LIST_SCHEMAS,
    TC_OP_PUT_MODE,
    TC_OP_DELETE_MODE,
    TC_OP_GET_SUBJECT_MODE,
    TC_OP_PUT_SUBJECT_MODE,
    TC_OP_DELETE_SUBJECT_MODE,
    TC_OP_ID_REFERENCEDBY,
    TC_OP_VERSION_REFERENCEDBY,
    TC_OP_SUBJECT_METADATA,
    TC_OP__COUNT
} tc_reg_op;

typedef struct tc_reg_route {
    const char *method, *pattern;
} tc_reg_route;

static const tc_reg_route tc_reg_routes[TC_OP__COUNT] = {
    {"GET", "/"},
    {"GET", "/schemas/types"},
    {"GET", "/mode"},
    {"GET", "/schemas/ids/{id}"},
    {"GET", "/schemas/ids/{id}/schema"},
    {"GET", "/schemas/ids/{id}/versions"},
    {"GET", "/schemas/ids/{id}/subjects"},
    {"GET", "/subjects"},
    {"POST", "/subjects/{subject}"},
    {"DELETE", "/subjects/{subject}"},
    {"GET", "/subjects/{subject}/versions"},
    {"POST", "/subjects/{subject}/versions"},
    {"GET", "/subjects/{subject}/versions/{version}"},
    {"GET", "/subjects/{subject}/versions/{version}/schema"},
    {"DELETE", "/subjects/{subject}/versions/{version}"},
    {"POST", "/compatibility/subjects/{subject}/versions/{version}"},
    {"POST", "/compatibility/subjects/{subject}/versions"},
    {"GET", "/config"},
    {"PUT", "/config"},
    {"DELETE", "/config"},
    {"GET", "/config/{subject}"},
    {"PUT", "/config/{subject}"},
    {"DELETE", "/config/{subject}"},
    {"GET", "/schemas"},
    {"PUT", "/mode"},
    {"DELETE", "/mode"},
    {"GET", "/mode/{subject}"},
    {"PUT", "/mode/{subject}"},
    {"DELETE", "/mode/{subject}"},
    {"GET", "/schemas/ids/{id}/referencedby"},
    {"GET", "/subjects/{subject}/versions/{version}/referencedby"},
    {"GET", "/subjects/{subject}/metadata"},
};

_Static_assert(TC_OP__COUNT == TC_REG_NROUTES, "one route context per operation");

static void tc_reg_run(tc_reg_req *q, tc_reg_op op)
{
    const char *p0 = q->http->nparams ? q->http->params[0] : NULL;

    switch (op) {
    case TC_OP_ROOT:
        tc_reg_root(q);
        break;
    case TC_OP_TYPES:
        tc_reg_types(q);
        break;
    case TC_OP_MODE:
    case TC_OP_GET_SUBJECT_MODE:
        tc_reg_setting_get(q, &tc_reg_setting_mode, op == TC_OP_GET_SUBJECT_MODE ? p0 : NULL);
        break;
    case TC_OP_PUT_MODE:
    case TC_OP_PUT_SUBJECT_MODE:
        tc_reg_put_mode(q, op == TC_OP_PUT_SUBJECT_MODE ? p0 : NULL);
        break;
    case TC_OP_DELETE_MODE:
    case TC_OP_DELETE_SUBJECT_MODE:
        tc_reg_setting_delete(q, &tc_reg_setting_mode, op == TC_OP_DELETE_SUBJECT_MODE ? p0 : NULL);
        break;
    case TC_OP_LIST_SCHEMAS:
        tc_reg_list_schemas(q);
        break;
    case TC_OP_ID_REFERENCEDBY:
    case TC_OP_VERSION_REFERENCEDBY:
        tc_reg_referencedby(q, op == TC_OP_ID_REFERENCEDBY);
        break;
    case TC_OP_SUBJECT_METADATA:
        tc_reg_latest_metadata(q);
        break;
    case TC_OP_SCHEMA_ID:
    case TC_OP_SCHEMA_ID_RAW:
        tc_reg_schema_by_id(q, op == TC_OP_SCHEMA_ID_RAW);
        break;
    case TC_OP_SCHEMA_ID_VERSIONS:
    case TC_OP_SCHEMA_ID_SUBJECTS:
        tc_reg_schema_refs(q, op == TC_OP_SCHEMA_ID_SUBJECTS);
        break;
    case TC_OP_SUBJECTS:
        tc_reg_subjects(q);
        break;
    case TC_OP_LOOKUP:
        tc_reg_lookup(q);
        break;
    case TC_OP_DELETE_SUBJECT:
        tc_reg_delete_subject(q);
        break;
    case TC_OP_LIST_VERSIONS:
        tc_reg_list_versions(q);
        break;
    case TC_OP_REGISTER:
        tc_reg_register(q);
        break;
    case TC_OP_GET_VERSION:
    case TC_OP_GET_VERSION_RAW:
        tc_reg_get_version(q, op == TC_OP_GET_VERSION_RAW);
        break;
    case TC_OP_DELETE_VERSION:
        tc_reg_delete_version(q);
        break;
    case TC_OP_COMPAT_ONE:
    case TC_OP_COMPAT_ALL:
        tc_reg_compat(q, op == TC_OP_COMPAT_ONE);
        break;
    case TC_OP_GET_CONFIG:
    case TC_OP_GET_SUBJECT_CONFIG:
        tc_reg_setting_get(q, &tc_reg_setting_level, op == TC_OP_GET_SUBJECT_CONFIG ? p0 : NULL);
        break;
    case TC_OP_PUT_CONFIG:
    case TC_OP_PUT_SUBJECT_CONFIG:
        tc_reg_put_config(q, op == TC_OP_PUT_SUBJECT_CONFIG ? p0 : NULL);
        break;
    case TC_OP_DELETE_CONFIG:
    case TC_OP_DELETE_SUBJECT_CONFIG:
        tc_reg_setting_delete(q, &tc_reg_setting_level,
                              op == TC_OP_DELETE_SUBJECT_CONFIG ? p0 : NULL);
        break;
    case TC_OP__COUNT:
        break;
    }
}

static void tc_reg_handler(void *ctx, const tc_http_request *req, tc_http_response *resp)
{
    const tc_reg_route_ctx *rc = ctx;
    tc_reg_req q;

    const char *ct = tc_reg_negotiate(req->accept);

    if (!ct) {
        tc_http_respond_error(resp, 406, TC_REGISTRY_CT, 406, "HTTP 406 Not Acceptable");
        return;
    }
    memset(&q, 0, sizeof(q));
    q.r = rc->r;
    q.http = req;
    q.resp = resp;
    pthread_mutex_lock(&rc->r->lock);
    tc_reg_run(&q, (tc_reg_op)rc->op);
    tc_reg_end(&q); /* in case a handler returned inside a unit */
    pthread_mutex_unlock(&rc->r->lock);
    /* Handlers answer in the registry's own type; the client may have asked for another. */
    resp->content_type = ct;
}

tc_err tc_registry_mount(tc_registry *r, tc_http_server *s)
{
    for (int i = 0; i < TC_OP__COUNT; i++) {
        tc_err err = tc_http_route(s, tc_reg_routes[i].method, tc_reg_routes[i].pattern,
                                   tc_reg_handler, &r->routes[i]);
        if (err != TC_OK)
            return err;
    }
    return TC_OK;
}

void tc_registry_http_options(tc_http_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->max_body_bytes = TC_REGISTRY_BODY_MAX;
    opt->error_content_type = TC_REGISTRY_CT;
}

/* ---- lifecycle ---- */

tc_registry *tc_registry_new(tc_reg_store *store, char *errstr, size_t errstr_size)
{
    tc_registry *r;

    if (!store) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "no store");
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        tc_reg_store_destroy(store);
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    r->store = store;
    for (int i = 0; i < TC_REG_NROUTES; i++) {
        r->routes[i].r = r;
        r->routes[i].op = i;
    }
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void tc_registry_destroy(tc_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->ncache; i++)
        tc_avro_schema_free(r->cache[i].schema);
    free(r->cache);
    tc_reg_store_destroy(r->store);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
