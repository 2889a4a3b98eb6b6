/*
 * catalog.c -- the telemetry subject's versions; see catalog.h for the rules.
 *
 * The registry is asked two things: GET /subjects/{subject}/versions (the list of live version
 * numbers) and, for each number not seen before, GET /subjects/{subject}/versions/{n} (its id and
 * schema). A version's schema never changes, so what is fetched once is kept until the registry
 * stops listing it. Only the top level of the record matters here: field names, whether a field
 * can hold a number, and its default.
 */
#include "schema/catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/batch.h"
#include "core/json.h"
#include "schema/registry_client.h"

/* Subject names as the registry accepts them (it refuses longer ones). */
#define TC_CATALOG_SUBJECT_MAX 1024
/* Memo of detection results, one slot per combination of fixed fields present. */
#define TC_CATALOG_MEMO (1u << TC_CATALOG_FIXED_COUNT)

struct tc_catalog {
    int remote;
    tc_registry_client registry; /* when remote */
    char subject[TC_CATALOG_SUBJECT_MAX];
    int loaded;
    size_t n; /* versions, ascending by number */
    tc_catalog_version *v;
    int32_t memo[TC_CATALOG_MEMO]; /* index + 1 of the detected version (0 = not computed) */
};

static const char *const tc_catalog_fixed_names[TC_CATALOG_FIXED_COUNT] = {
    "device_id", "timestamp", "temperature", "humidity", "pressure",
    "battery",   "latitude",  "longitude",   "tags"};

static int tc_catalog_fixed_bit(const char *name)
{
    for (int i = 0; i < TC_CATALOG_FIXED_COUNT; i++) {
        if (strcmp(name, tc_catalog_fixed_names[i]) == 0)
            return i;
    }
    return -1;
}

tc_catalog *tc_catalog_new(const tc_registry_client_options *registry, const char *subject,
                           int timeout_ms, char *errstr, size_t n)
{
    tc_catalog *c = calloc(1, sizeof(*c));

    if (!c) {
        tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
        return NULL;
    }
    if (registry && registry->url && *registry->url) {
        tc_registry_client_options o = *registry;
        if (timeout_ms > 0)
            o.timeout_ms = timeout_ms;
        if (tc_registry_client_init(&c->registry, &o, errstr, n) != TC_OK) {
            free(c);
            return NULL;
        }
        c->remote = 1;
    }
    if (!subject || !*subject || strlen(subject) >= sizeof(c->subject)) {
        tc_err_set(TC_ERR_CONFIG, errstr, n, "invalid schema subject \"%.100s\"",
                   subject ? subject : "");
        free(c);
        return NULL;
    }
    snprintf(c->subject, sizeof(c->subject), "%s", subject);
    return c;
}

static void tc_catalog_version_clear(tc_catalog_version *v)
{
    for (size_t i = 0; i < v->nfields; i++) {
        free(v->fields[i].name);
        free(v->fields[i].default_json);
    }
    free(v->fields);
    memset(v, 0, sizeof(*v));
}

void tc_catalog_destroy(tc_catalog *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        tc_catalog_version_clear(&c->v[i]);
    free(c->v);
    free(c);
}

int tc_catalog_loaded(const tc_catalog *c)
{
    return c->loaded;
}

size_t tc_catalog_count(const tc_catalog *c)
{
    return c->n;
}

const tc_catalog_version *tc_catalog_latest(const tc_catalog *c)
{
    return c->n ? &c->v[c->n - 1] : NULL;
}

const tc_catalog_version *tc_catalog_by_id(const tc_catalog *c, int32_t id)
{
    /* Newest first: a schema registered twice under the subject keeps its first version's id. */
    for (size_t i = c->n; i-- > 0;) {
        if (c->v[i].id == id)
            return &c->v[i];
    }
    return NULL;
}

int tc_catalog_has_field(const tc_catalog_version *v, const char *name, size_t len)
{
    for (size_t i = 0; i < v->nfields; i++) {
        if (strlen(v->fields[i].name) == len && memcmp(v->fields[i].name, name, len) == 0)
            return 1;
    }
    return 0;
}

/* Whether an Avro type (a name, a {"type": ...} object, or a union) can hold a number. */
static int tc_catalog_type_numeric(const tc_json *t)
{
    const char *s = tc_json_string(t);

    if (s)
        return strcmp(s, "int") == 0 || strcmp(s, "long") == 0 || strcmp(s, "float") == 0 ||
               strcmp(s, "double") == 0;
    if (t->type == TC_JSON_OBJECT) {
        const tc_json *inner = tc_json_get(t, "type");
        return inner && inner->type == TC_JSON_STRING && tc_catalog_type_numeric(inner);
    }
    if (t->type == TC_JSON_ARRAY) {
        for (size_t i = 0; i < t->len; i++) {
            if (tc_catalog_type_numeric(t->u.items[i]))
                return 1;
        }
    }
    return 0;
}

/* Fill f from one member of "fields". */
static tc_err tc_catalog_field_parse(tc_catalog_field *f, const tc_json *fj, char *errstr, size_t n)
{
    const char *name = tc_json_string(tc_json_get(fj, "name"));
    const tc_json *type = tc_json_get(fj, "type");
    const tc_json *def = tc_json_get(fj, "default");

    if (!name || !type)
        return tc_err_set(TC_ERR_INVALID, errstr, n, "a field has no name or no type");
    f->name = strdup(name);
    if (!f->name)
        return tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
    f->fixed = tc_catalog_fixed_bit(name);
    f->numeric = tc_catalog_type_numeric(type);
    if (def && def->type != TC_JSON_NULL) {
        tc_jbuf jb;
        tc_jbuf_init(&jb, 0);
        tc_jbuf_value(&jb, def);
        f->default_json = tc_jbuf_take(&jb, NULL);
        tc_jbuf_free(&jb);
        if (!f->default_json)
            return tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
        if (def->type == TC_JSON_NUMBER) {
            f->default_is_num = 1;
            f->default_num = def->u.num.value;
        }
    }
    return TC_OK;
}

/* Build v (cleared on failure) from the schema text of one version. */
static tc_err tc_catalog_version_parse(tc_catalog_version *v, const char *schema_json, size_t len,
                                       char *errstr, size_t n)
{
    tc_json_doc *doc;
    const tc_json *root, *fields;
    tc_err err = TC_OK;

    doc = tc_json_parse(schema_json, len, NULL, &err, errstr, n);
    if (!doc)
        return err == TC_ERR_NOMEM ? TC_ERR_NOMEM : TC_ERR_INVALID;
    root = tc_json_root(doc);
    fields = tc_json_get(root, "fields");
    if (!fields || fields->type != TC_JSON_ARRAY || !tc_json_string(tc_json_get(root, "type")) ||
        strcmp(tc_json_string(tc_json_get(root, "type")), "record") != 0) {
        err = tc_err_set(TC_ERR_INVALID, errstr, n, "the schema is not an Avro record");
        goto out;
    }
    if (fields->len > TC_CATALOG_FIELDS_MAX) {
        err = tc_err_set(TC_ERR_INVALID, errstr, n, "the schema has %zu fields (at most %d)",
                         fields->len, TC_CATALOG_FIELDS_MAX);
        goto out;
    }
    v->fields = calloc(fields->len ? fields->len : 1, sizeof(*v->fields));
    if (!v->fields) {
        err = tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < fields->len && err == TC_OK; i++) {
        tc_catalog_field *f = &v->fields[v->nfields++];
        err = tc_catalog_field_parse(f, fields->u.items[i], errstr, n);
        if (err == TC_OK && f->fixed >= 0)
            v->fixed_mask |= 1u << f->fixed;
    }
out:
    if (err != TC_OK)
        tc_catalog_version_clear(v);
    tc_json_free(doc);
    return err;
}

static void tc_catalog_forget_memo(tc_catalog *c)
{
    memset(c->memo, 0, sizeof(c->memo));
}

tc_err tc_catalog_add(tc_catalog *c, int32_t version, int32_t id, const char *schema_json,
                      size_t len, char *errstr, size_t n)
{
    tc_catalog_version nv = {0};
    size_t at = 0;
    tc_err err = tc_catalog_version_parse(&nv, schema_json, len, errstr, n);

    if (err != TC_OK)
        return err;
    nv.version = version;
    nv.id = id;
    while (at < c->n && c->v[at].version < version)
        at++;
    if (at < c->n && c->v[at].version == version) {
        tc_catalog_version_clear(&c->v[at]);
        c->v[at] = nv;
    } else {
        tc_catalog_version *grown;
        if (c->n >= TC_CATALOG_VERSIONS_MAX) {
            tc_catalog_version_clear(&nv);
            return tc_err_set(TC_ERR_INVALID, errstr, n, "subject \"%s\" has over %d versions",
                              c->subject, TC_CATALOG_VERSIONS_MAX);
        }
        grown = realloc(c->v, (c->n + 1) * sizeof(*grown));
        if (!grown) {
            tc_catalog_version_clear(&nv);
            return tc_err_set(TC_ERR_NOMEM, errstr, n, "out of memory");
        }
        c->v = grown;
        memmove(&c->v[at + 1], &c->v[at], (c->n - at) * sizeof(*c->v));
        c->v[at] = nv;
        c->n++;
    }
    c->loaded = 1;
    tc_catalog_forget_memo(c);
    return TC_OK;
}

/* ---- talking to the registry ---- */

/* Append subject, percent-encoded as a path segment, to out. -1 when it does not fit. */
static int tc_catalog_subject_path(const tc_catalog *c, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *s = (const unsigned char *)c->subject; *s; s++) {
        int plain = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.' || *s == '~';
        if (o + 4 > cap)
            return -1;
        if (plain) {
            out[o++] = (char)*s;
        } else {
            out[o++] = '%';
            out[o++] = hex[*s >> 4];
            out[o++] = hex[*s & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

/* GET path: *status, and the parsed body of a 200 or 404 answer in *doc (NULL for others). */
static tc_err tc_catalog_get(tc_catalog *c, const char *path, tc_json_doc **doc, int *status,
                             char *errstr, size_t n)
{
    char inner[TC_ERRSTR_MAX];
    tc_http_reply reply;
    tc_err err = tc_registry_client_get(&c->registry, path, &reply, errstr, n);

    *doc = NULL;
    if (err != TC_OK)
        return err;
    *status = reply.status;
    if (reply.status >= 500 || reply.status == 429) {
        err = tc_err_set(TC_ERR_IO, errstr, n, "schema registry answered %d to GET %s",
                         reply.status, path);
    } else if (reply.status == 200 || reply.status == 404) {
        *doc = tc_json_parse(reply.body, reply.len, NULL, &err, inner, sizeof(inner));
        if (!*doc)
            err = tc_err_set(TC_ERR_IO, errstr, n,
                             "schema registry: unreadable answer to GET %s: %s", path, inner);
    }
    tc_http_reply_free(&reply);
    return err;
}

/* The registry's "subject not found" error code. */
#define TC_CATALOG_SUBJECT_NOT_FOUND 40401

static int64_t tc_catalog_error_code(const tc_json_doc *doc)
{
    int64_t code = 0;

    if (doc)
        tc_json_int64(tc_json_get(tc_json_root(doc), "error_code"), &code);
    return code;
}

static tc_err tc_catalog_fetch_version(tc_catalog *c, const char *subj, int32_t version,
                                       char *errstr, size_t n)
{
    char path[TC_CATALOG_SUBJECT_MAX * 3 + 64];
    tc_json_doc *doc;
    int status = 0;
    int64_t id;
    const char *schema, *type;
    tc_err err;

    /* Resolved: a version with references comes with the referenced types inlined. */
    snprintf(path, sizeof(path), "/subjects/%s/versions/%d?format=resolved", subj, (int)version);
    err = tc_catalog_get(c, path, &doc, &status, errstr, n);
    if (err != TC_OK)
        return err;
    if (status == 404) { /* deleted between the two requests: the next refresh drops it */
        tc_json_free(doc);
        return TC_OK;
    }
    if (status != 200)
        return tc_err_set(TC_ERR_CONFIG, errstr, n, "schema registry answered %d to GET %s", status,
                          path);
    schema = tc_json_string(tc_json_get(tc_json_root(doc), "schema"));
    type = tc_json_string(tc_json_get(tc_json_root(doc), "schemaType"));
    if (!schema || !tc_json_int64(tc_json_get(tc_json_root(doc), "id"), &id) || id < 0 ||
        id > INT32_MAX) {
        err = tc_err_set(TC_ERR_IO, errstr, n, "schema registry: no id or schema in GET %s", path);
    } else if (type && strcmp(type, "AVRO") != 0) {
        err = TC_OK; /* not an Avro schema: nothing a reading can be matched against */
    } else {
        err = tc_catalog_add(c, version, (int32_t)id, schema, strlen(schema), errstr, n);
        if (err == TC_ERR_INVALID)
            err = TC_OK; /* a subject may hold a non-record schema; it just never matches */
    }
    tc_json_free(doc);
    return err;
}

tc_err tc_catalog_refresh(tc_catalog *c, int *changed, char *errstr, size_t n)
{
    char subj[TC_CATALOG_SUBJECT_MAX * 3 + 1], path[sizeof(subj) + 32];
    tc_json_doc *doc;
    const tc_json *list;
    size_t dropped = 0, kept;
    int status = 0;
    tc_err err;

    if (changed)
        *changed = 0;
    if (!c->remote) {
        c->loaded = 1;
        return TC_OK;
    }
    if (tc_catalog_subject_path(c, subj, sizeof(subj)) < 0)
        return tc_err_set(TC_ERR_CONFIG, errstr, n, "subject too long");
    snprintf(path, sizeof(path), "/subjects/%s/versions", subj);
    err = tc_catalog_get(c, path, &doc, &status, errstr, n);
    if (err != TC_OK)
        return err;
    if (status == 404 && tc_catalog_error_code(doc) == TC_CATALOG_SUBJECT_NOT_FOUND) {
        list = NULL; /* no version registered yet: an empty catalog */
    } else if (status != 200) {
        tc_json_free(doc);
        return tc_err_set(
            TC_ERR_CONFIG, errstr, n, "schema registry answered %d to GET %s%s", status, path,
            *tc_registry_client_status_hint(status) ? tc_registry_client_status_hint(status)
                                                    : " (is registry.url right?)");
    } else {
        list = tc_json_root(doc);
        if (list->type != TC_JSON_ARRAY) {
            tc_json_free(doc);
            return tc_err_set(TC_ERR_IO, errstr, n, "schema registry: GET %s is not a list", path);
        }
    }
    /* Drop the versions no longer listed. */
    for (size_t i = 0; i < c->n;) {
        int listed = 0;
        for (size_t k = 0; list && k < list->len && !listed; k++) {
            int64_t v;
            listed = tc_json_int64(list->u.items[k], &v) && v == c->v[i].version;
        }
        if (listed) {
            i++;
            continue;
        }
        tc_catalog_version_clear(&c->v[i]);
        memmove(&c->v[i], &c->v[i + 1], (c->n - i - 1) * sizeof(*c->v));
        c->n--;
        dropped++;
    }
    kept = c->n;
    /* Fetch the new ones. */
    for (size_t k = 0; list && k < list->len && err == TC_OK; k++) {
        int64_t v;
        int known = 0;
        if (!tc_json_int64(list->u.items[k], &v) || v < 1 || v > INT32_MAX)
            continue;
        for (size_t i = 0; i < c->n && !known; i++)
            known = c->v[i].version == v;
        if (!known)
            err = tc_catalog_fetch_version(c, subj, (int32_t)v, errstr, n);
    }
    tc_json_free(doc);
    if (dropped)
        tc_catalog_forget_memo(c);
    if (changed)
        *changed = dropped > 0 || c->n != kept;
    if (err == TC_OK)
        c->loaded = 1;
    return err;
}

/* ---- detection ---- */

static int tc_popcount(uint32_t x)
{
    int k = 0;
    for (; x; x &= x - 1)
        k++;
    return k;
}

/* Whether a candidate beats the best so far: covering every field of the reading first; among
 * covering versions the fewest missing fields, otherwise the most fields named; on a tie the later
 * candidate, i.e. the newer version (versions are visited in ascending order). */
static int tc_catalog_better(int covers, int named, int missing, int best_covers, int best_named,
                             int best_missing)
{
    if (covers != best_covers)
        return covers > best_covers;
    if (!covers && named != best_named)
        return named > best_named;
    return missing <= best_missing;
}

const tc_catalog_version *tc_catalog_detect(tc_catalog *c, uint32_t fixed_mask,
                                            const char *const *keys, const size_t *key_lens,
                                            size_t nkeys)
{
    size_t best = 0;
    int best_covers = -1, best_named = -1, best_missing = 0;

    if (c->n == 0)
        return NULL;
    fixed_mask &= TC_CATALOG_MEMO - 1;
    if (nkeys == 0 && c->memo[fixed_mask])
        return &c->v[c->memo[fixed_mask] - 1];
    for (size_t i = 0; i < c->n; i++) {
        const tc_catalog_version *v = &c->v[i];
        int named = tc_popcount(fixed_mask & v->fixed_mask), missing, covers;
        int others = 0; /* fields of v beyond the fixed ones that the reading has */
        for (size_t k = 0; k < nkeys; k++) {
            if (tc_catalog_has_field(v, keys[k], key_lens[k]))
                others++;
        }
        named += others;
        covers = (fixed_mask & ~v->fixed_mask) == 0 && (size_t)others == nkeys;
        missing = (int)v->nfields - named;
        if (tc_catalog_better(covers, named, missing, best_covers, best_named, best_missing)) {
            best = i;
            best_covers = covers;
            best_named = named;
            best_missing = missing;
        }
    }
    if (nkeys == 0)
        c->memo[fixed_mask] = (int32_t)best + 1;
    return &c->v[best];
}
