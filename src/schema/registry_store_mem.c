/*
 * registry_store_mem.c -- the in-memory registry store (tests and fuzzing); see registry_store.h.
 *
 * A write unit of work starts by deep-copying the state; roll back restores the copy. Everything is
 * linear search: the store holds what one test or one fuzz input creates. Fault injection
 * (tc_reg_store_mem_fail_at) makes a chosen call fail, so the registry's error paths -- and that a
 * failed request leaves nothing behind -- can be tested without a database.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "schema/registry_store.h"

typedef struct tc_mem_schema {
    int id;
    char *canonical; /* the identity */
    tc_reg_schema_text text;
} tc_mem_schema;

typedef struct tc_mem_version {
    char *subject;
    int version;
    int schema_id;
    int deleted;
} tc_mem_version;

/* A compatibility level or a mode (kind) of a subject. */
typedef struct tc_mem_config {
    char *subject;
    int level;
    int kind;
} tc_mem_config;

#define TC_MEM_KIND_LEVEL 0
#define TC_MEM_KIND_MODE  1

typedef struct tc_mem_state {
    tc_mem_schema *schemas;
    size_t nschemas;
    tc_mem_version *versions;
    size_t nversions;
    tc_mem_config *configs;
    size_t nconfigs;
    int next_id;
} tc_mem_state;

typedef struct tc_mem_store {
    tc_reg_store base;
    tc_mem_state st;
    tc_mem_state snap;
    int in_write;
    unsigned long fail_at;
} tc_mem_store;

static void tc_mem_state_free(tc_mem_state *st)
{
    for (size_t i = 0; i < st->nschemas; i++) {
        free(st->schemas[i].canonical);
        tc_reg_schema_text_free(&st->schemas[i].text);
    }
    for (size_t i = 0; i < st->nversions; i++)
        free(st->versions[i].subject);
    for (size_t i = 0; i < st->nconfigs; i++)
        free(st->configs[i].subject);
    free(st->schemas);
    free(st->versions);
    free(st->configs);
    memset(st, 0, sizeof(*st));
}

/* A copy of a text (NULL members stay NULL); -1 when out of memory (dst then freeable). */
static int tc_mem_text_copy(tc_reg_schema_text *dst, const tc_reg_schema_text *src)
{
    const char *from[4] = {src->original, src->references, src->metadata, src->rule_set};
    char **to[4] = {&dst->original, &dst->references, &dst->metadata, &dst->rule_set};
    int rc = 0;

    memset(dst, 0, sizeof(*dst));
    for (int i = 0; i < 4; i++)
        if (from[i] && !(*to[i] = strdup(from[i])))
            rc = -1;
    return rc;
}

static int tc_mem_state_copy(tc_mem_state *dst, const tc_mem_state *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->next_id = src->next_id;
    dst->schemas = src->nschemas ? calloc(src->nschemas, sizeof(*dst->schemas)) : NULL;
    dst->versions = src->nversions ? calloc(src->nversions, sizeof(*dst->versions)) : NULL;
    dst->configs = src->nconfigs ? calloc(src->nconfigs, sizeof(*dst->configs)) : NULL;
    if ((src->nschemas && !dst->schemas) || (src->nversions && !dst->versions) ||
        (src->nconfigs && !dst->configs)) {
        tc_mem_state_free(dst);
        return -1;
    }
    for (size_t i = 0; i < src->nschemas; i++) {
        dst->schemas[i].id = src->schemas[i].id;
        dst->schemas[i].canonical = strdup(src->schemas[i].canonical);
        dst->nschemas++;
        if (!dst->schemas[i].canonical ||
            tc_mem_text_copy(&dst->schemas[i].text, &src->schemas[i].text) < 0) {
            tc_mem_state_free(dst);
            return -1;
        }
    }
    for (size_t i = 0; i < src->nversions; i++) {
        dst->versions[i] = src->versions[i];
        dst->versions[i].subject = strdup(src->versions[i].subject);
        dst->nversions++;
        if (!dst->versions[i].subject) {
            tc_mem_state_free(dst);
            return -1;
        }
    }
    for (size_t i = 0; i < src->nconfigs; i++) {
        dst->configs[i] = src->configs[i];
        dst->configs[i].subject = strdup(src->configs[i].subject);
        dst->nconfigs++;
        if (!dst->configs[i].subject) {
            tc_mem_state_free(dst);
            return -1;
        }
    }
    return 0;
}

/* Fault injection: nonzero when this call must fail. */
static int tc_mem_fault(tc_mem_store *m, char *errstr, size_t size)
{
    if (m->fail_at && --m->fail_at == 0) {
        tc_err_set(TC_ERR_DB, errstr, size, "injected store failure");
        return 1;
    }
    return 0;
}

#define TC_MEM(s) ((tc_mem_store *)(s))
#define TC_MEM_FAULT(m)                                                                            \
    do {                                                                                           \
        if (tc_mem_fault(m, errstr, size))                                                         \
            return TC_ERR_DB;                                                                      \
    } while (0)

static tc_err tc_mem_nomem(char *errstr, size_t size)
{
    return tc_err_set(TC_ERR_NOMEM, errstr, size, "out of memory");
}

static tc_err tc_mem_begin(tc_reg_store *s, const char *subject, int write, char *errstr,
                           size_t size)
{
    tc_mem_store *m = TC_MEM(s);

    (void)subject;
    TC_MEM_FAULT(m);
    if (write) {
        if (tc_mem_state_copy(&m->snap, &m->st) < 0)
            return tc_mem_nomem(errstr, size);
        m->in_write = 1;
    }
    return TC_OK;
}

static tc_err tc_mem_end(tc_reg_store *s, int commit, char *errstr, size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    int fail = commit && tc_mem_fault(m, errstr, size);

    if (m->in_write) {
        if (commit && !fail) {
            tc_mem_state_free(&m->snap);
        } else {
            tc_mem_state_free(&m->st);
            m->st = m->snap;
            memset(&m->snap, 0, sizeof(m->snap));
        }
        m->in_write = 0;
    }
    return fail ? TC_ERR_DB : TC_OK;
}

static tc_err tc_mem_versions(tc_reg_store *s, const char *subject, tc_reg_version **out, size_t *n,
                              char *errstr, size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    tc_reg_version *v;
    size_t k = 0;

    TC_MEM_FAULT(m);
    *out = NULL;
    *n = 0;
    v = malloc((m->st.nversions ? m->st.nversions : 1) * sizeof(*v));
    if (!v)
        return tc_mem_nomem(errstr, size);
    for (size_t i = 0; i < m->st.nversions; i++) {
        const tc_mem_version *x = &m->st.versions[i];
        size_t j;
        if (strcmp(x->subject, subject))
            continue;
        /* Insertion sort by version. */
        for (j = k; j > 0 && v[j - 1].version > x->version; j--)
            v[j] = v[j - 1];
        v[j].version = x->version;
        v[j].schema_id = x->schema_id;
        v[j].deleted = x->deleted;
        k++;
    }
    *out = v;
    *n = k;
    return TC_OK;
}

static tc_err tc_mem_get_schema(tc_reg_store *s, int id, tc_reg_schema_text *out, char *errstr,
                                size_t size)
{
    tc_mem_store *m = TC_MEM(s);

    memset(out, 0, sizeof(*out));
    TC_MEM_FAULT(m);
    for (size_t i = 0; i < m->st.nschemas; i++) {
        if (m->st.schemas[i].id == id) {
            if (tc_mem_text_copy(out, &m->st.schemas[i].text) == 0)
                return TC_OK;
            tc_reg_schema_text_free(out);
            return tc_mem_nomem(errstr, size);
        }
    }
    return TC_ERR_NOT_FOUND;
}

static tc_err tc_mem_find(tc_reg_store *s, const char *canonical, int *id, char *errstr,
                          size_t size)
{
    tc_mem_store *m = TC_MEM(s);

    TC_MEM_FAULT(m);
    for (size_t i = 0; i < m->st.nschemas; i++) {
        if (!strcmp(m->st.schemas[i].canonical, canonical)) {
            *id = m->st.schemas[i].id;
            return TC_OK;
        }
    }
    return TC_ERR_NOT_FOUND;
}

static tc_err tc_mem_insert_schema(tc_reg_store *s, const char *canonical,
                                   const tc_reg_schema_text *text, int *id, char *errstr,
                                   size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    tc_mem_schema *ns;
    tc_err err = tc_mem_find(s, canonical, id, errstr, size);

    if (err != TC_ERR_NOT_FOUND)
        return err;
    TC_MEM_FAULT(m);
    ns = realloc(m->st.schemas, (m->st.nschemas + 1) * sizeof(*ns));
    if (!ns)
        return tc_mem_nomem(errstr, size);
    m->st.schemas = ns;
    ns += m->st.nschemas;
    ns->canonical = strdup(canonical);
    if (!ns->canonical || tc_mem_text_copy(&ns->text, text) < 0) {
        free(ns->canonical);
        tc_reg_schema_text_free(&ns->text);
        return tc_mem_nomem(errstr, size);
    }
    ns->id = ++m->st.next_id;
    m->st.nschemas++;
    *id = ns->id;
    return TC_OK;
}

static tc_err tc_mem_insert_version(tc_reg_store *s, const char *subject, int version,
                                    int schema_id, char *errstr, size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    tc_mem_version *nv;

    TC_MEM_FAULT(m);
    for (size_t i = 0; i < m->st.nversions; i++)
        if (m->st.versions[i].version == version && !strcmp(m->st.versions[i].subject, subject))
            return tc_err_set(TC_ERR_DB, errstr, size, "duplicate version %d of \"%s\"", version,
                              subject);
    nv = realloc(m->st.versions, (m->st.nversions + 1) * sizeof(*nv));
    if (!nv)
        return tc_mem_nomem(errstr, size);
    m->st.versions = nv;
    nv += m->st.nversions;
    nv->subject = strdup(subject);
    if (!nv->subject)
        return tc_mem_nomem(errstr, size);
    nv->version = version;
    nv->schema_id = schema_id;
    nv->deleted = 0;
    m->st.nversions++;
    return TC_OK;
}

static tc_err tc_mem_soft_delete(tc_reg_store *s, const char *subject, int version, char *errstr,
                                 size_t size)
{
    tc_mem_store *m = TC_MEM(s);

    TC_MEM_FAULT(m);
    for (size_t i = 0; i < m->st.nversions; i++) {
        tc_mem_version *v = &m->st.versions[i];
        if (!strcmp(v->subject, subject) && (version == 0 || v->version == version))
            v->deleted = 1;
    }
    return TC_OK;
}

static tc_err tc_mem_hard_delete(tc_reg_store *s, const char *subject, int version, char *errstr,
                                 size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    size_t k = 0;

    TC_MEM_FAULT(m);
    for (size_t i = 0; i < m->st.nversions; i++) {
        tc_mem_version *v = &m->st.versions[i];
        if (!strcmp(v->subject, subject) && (version == 0 || v->version == version))
            free(v->subject);
        else
            m->st.versions[k++] = *v;
    }
    m->st.nversions = k;
    return TC_OK;
}

static int tc_strp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static tc_err tc_mem_subjects(tc_reg_store *s, char ***names, int **live, size_t *n, char *errstr,
                              size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    char **out;
    int *lv;
    size_t k = 0;

    TC_MEM_FAULT(m);
    *names = NULL;
    *live = NULL;
    *n = 0;
    out = malloc((m->st.nversions ? m->st.nversions : 1) * sizeof(*out));
    lv = malloc((m->st.nversions ? m->st.nversions : 1) * sizeof(*lv));
    if (!out || !lv) {
        free(out);
        free(lv);
        return tc_mem_nomem(errstr, size);
    }
    for (size_t i = 0; i < m->st.nversions; i++) {
        size_t j;
        for (j = 0; j < k; j++)
            if (!strcmp(out[j], m->st.versions[i].subject))
                break;
        if (j == k)
            out[k++] = m->st.versions[i].subject;
    }
    qsort(out, k, sizeof(*out), tc_strp_cmp);
    for (size_t j = 0; j < k; j++) {
        lv[j] = 0;
        for (size_t i = 0; i < m->st.nversions; i++)
            if (!m->st.versions[i].deleted && !strcmp(out[j], m->st.versions[i].subject))
                lv[j] = 1;
    }
    for (size_t j = 0; j < k; j++) {
        out[j] = strdup(out[j]);
        if (!out[j]) {
            tc_reg_names_free(out, j);
            free(lv);
            return tc_mem_nomem(errstr, size);
        }
    }
    *names = out;
    *live = lv;
    *n = k;
    return TC_OK;
}

static int tc_ref_cmp(const void *a, const void *b)
{
    const tc_reg_ref *x = a, *y = b;
    int c = strcmp(x->subject, y->subject);

    return c ? c : (x->version > y->version) - (x->version < y->version);
}

static tc_err tc_mem_refs(tc_reg_store *s, int id, tc_reg_ref **out, size_t *n, char *errstr,
                          size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    tc_reg_ref *r;
    size_t k = 0;

    TC_MEM_FAULT(m);
    *out = NULL;
    *n = 0;
    r = calloc(m->st.nversions ? m->st.nversions : 1, sizeof(*r));
    if (!r)
        return tc_mem_nomem(errstr, size);
    for (size_t i = 0; i < m->st.nversions; i++) {
        if (m->st.versions[i].schema_id != id)
            continue;
        r[k].subject = strdup(m->st.versions[i].subject);
        if (!r[k].subject) {
            tc_reg_refs_free(r, k);
            return tc_mem_nomem(errstr, size);
        }
        r[k].version = m->st.versions[i].version;
        r[k].deleted = m->st.versions[i].deleted;
        k++;
    }
    qsort(r, k, sizeof(*r), tc_ref_cmp);
    *out = r;
    *n = k;
    return TC_OK;
}

static tc_mem_config *tc_mem_config_find(tc_mem_store *m, const char *subject, int kind)
{
    for (size_t i = 0; i < m->st.nconfigs; i++)
        if (m->st.configs[i].kind == kind && !strcmp(m->st.configs[i].subject, subject))
            return &m->st.configs[i];
    return NULL;
}

static tc_err tc_mem_get_kind(tc_reg_store *s, const char *subject, int kind, int *level,
                              char *errstr, size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    tc_mem_config *c;

    TC_MEM_FAULT(m);
    c = tc_mem_config_find(m, subject, kind);
    if (!c)
        return TC_ERR_NOT_FOUND;
    *level = c->level;
    return TC_OK;
}

static tc_err tc_mem_set_kind(tc_reg_store *s, const char *subject, int kind, int level,
                              char *errstr, size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    tc_mem_config *c;

    TC_MEM_FAULT(m);
    c = tc_mem_config_find(m, subject, kind);
    if (!c) {
        c = realloc(m->st.configs, (m->st.nconfigs + 1) * sizeof(*c));
        if (!c)
            return tc_mem_nomem(errstr, size);
        m->st.configs = c;
        c += m->st.nconfigs;
        c->subject = strdup(subject);
        if (!c->subject)
            return tc_mem_nomem(errstr, size);
        c->kind = kind;
        m->st.nconfigs++;
    }
    c->level = level;
    return TC_OK;
}

static tc_err tc_mem_delete_kind(tc_reg_store *s, const char *subject, int kind, char *errstr,
                                 size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    tc_mem_config *c;

    TC_MEM_FAULT(m);
    c = tc_mem_config_find(m, subject, kind);
    if (!c)
        return TC_ERR_NOT_FOUND;
    free(c->subject);
    *c = m->st.configs[--m->st.nconfigs];
    return TC_OK;
}

static tc_err tc_mem_get_config(tc_reg_store *s, const char *subject, int *level, char *errstr,
                                size_t size)
{
    return tc_mem_get_kind(s, subject, TC_MEM_KIND_LEVEL, level, errstr, size);
}

static tc_err tc_mem_set_config(tc_reg_store *s, const char *subject, int level, char *errstr,
                                size_t size)
{
    return tc_mem_set_kind(s, subject, TC_MEM_KIND_LEVEL, level, errstr, size);
}

static tc_err tc_mem_delete_config(tc_reg_store *s, const char *subject, char *errstr, size_t size)
{
    return tc_mem_delete_kind(s, subject, TC_MEM_KIND_LEVEL, errstr, size);
}

static tc_err tc_mem_get_mode(tc_reg_store *s, const char *subject, int *mode, char *errstr,
                              size_t size)
{
    return tc_mem_get_kind(s, subject, TC_MEM_KIND_MODE, mode, errstr, size);
}

static tc_err tc_mem_set_mode(tc_reg_store *s, const char *subject, int mode, char *errstr,
                              size_t size)
{
    return tc_mem_set_kind(s, subject, TC_MEM_KIND_MODE, mode, errstr, size);
}

static tc_err tc_mem_delete_mode(tc_reg_store *s, const char *subject, char *errstr, size_t size)
{
    return tc_mem_delete_kind(s, subject, TC_MEM_KIND_MODE, errstr, size);
}

/* Does the references array text name (subject, version)? */
static int tc_mem_names_ref(const char *refs, const char *subject, int version)
{
    tc_json_doc *doc;
    const tc_json *a;
    int hit = 0;

    if (!refs || !(doc = tc_json_parse(refs, strlen(refs), NULL, NULL, NULL, 0)))
        return 0;
    a = tc_json_root(doc);
    for (size_t i = 0; a->type == TC_JSON_ARRAY && i < a->len && !hit; i++) {
        const char *sub = tc_json_string(tc_json_get(a->u.items[i], "subject"));
        int64_t v = 0;
        hit = sub && !strcmp(sub, subject) &&
              tc_json_int64(tc_json_get(a->u.items[i], "version"), &v) && v == version;
    }
    tc_json_free(doc);
    return hit;
}

static tc_err tc_mem_referrers(tc_reg_store *s, const char *subject, int version, int **ids,
                               size_t *n, char *errstr, size_t size)
{
    tc_mem_store *m = TC_MEM(s);
    int *out;
    size_t k = 0;

    TC_MEM_FAULT(m);
    *ids = NULL;
    *n = 0;
    out = malloc((m->st.nschemas ? m->st.nschemas : 1) * sizeof(*out));
    if (!out)
        return tc_mem_nomem(errstr, size);
    /* Schemas are kept in id order. */
    for (size_t i = 0; i < m->st.nschemas; i++) {
        int used = 0;
        for (size_t j = 0; j < m->st.nversions && !used; j++)
            used = m->st.versions[j].schema_id == m->st.schemas[i].id;
        if (used && tc_mem_names_ref(m->st.schemas[i].text.references, subject, version))
            out[k++] = m->st.schemas[i].id;
    }
    *ids = out;
    *n = k;
    return TC_OK;
}

static void tc_mem_destroy(tc_reg_store *s)
{
    tc_mem_store *m = TC_MEM(s);

    tc_mem_state_free(&m->st);
    tc_mem_state_free(&m->snap);
    free(m);
}

static const tc_reg_store_ops tc_mem_ops = {
    .begin = tc_mem_begin,
    .end = tc_mem_end,
    .versions = tc_mem_versions,
    .schema = tc_mem_get_schema,
    .find = tc_mem_find,
    .insert_schema = tc_mem_insert_schema,
    .referrers = tc_mem_referrers,
    .insert_version = tc_mem_insert_version,
    .soft_delete = tc_mem_soft_delete,
    .hard_delete = tc_mem_hard_delete,
    .subjects = tc_mem_subjects,
    .refs = tc_mem_refs,
    .get_config = tc_mem_get_config,
    .set_config = tc_mem_set_config,
    .delete_config = tc_mem_delete_config,
    .get_mode = tc_mem_get_mode,
    .set_mode = tc_mem_set_mode,
    .delete_mode = tc_mem_delete_mode,
    .destroy = tc_mem_destroy,
};

tc_reg_store *tc_reg_store_mem_new(void)
{
    tc_mem_store *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    m->base.ops = &tc_mem_ops;
    return &m->base;
}

void tc_reg_store_mem_fail_at(tc_reg_store *s, unsigned long nth)
{
    if (s && s->ops == &tc_mem_ops)
        TC_MEM(s)->fail_at = nth;
}

void tc_reg_store_destroy(tc_reg_store *s)
{
    if (s)
        s->ops->destroy(s);
}

void tc_reg_refs_free(tc_reg_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(refs[i].subject);
    free(refs);
}

void tc_reg_schema_text_free(tc_reg_schema_text *t)
{
    if (!t)
        return;
    free(t->original);
    free(t->references);
    free(t->metadata);
    free(t->rule_set);
    memset(t, 0, sizeof(*t));
}

static const char *const tc_reg_mode_names[TC_REG_MODE__COUNT] = {"READWRITE", "READONLY",
                                                                  "READONLY_OVERRIDE"};

const char *tc_reg_mode_name(int mode)
{
    return mode >= 0 && mode < TC_REG_MODE__COUNT ? tc_reg_mode_names[mode] : "READWRITE";
}

int tc_reg_mode_parse(const char *s)
{
    for (int i = 0; i < TC_REG_MODE__COUNT; i++)
        if (!strcasecmp(s, tc_reg_mode_names[i]))
            return i;
    return -1;
}

void tc_reg_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
