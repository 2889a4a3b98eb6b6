/*
 * avro_compat.c -- can a reader schema read what a writer schema wrote? And compatibility levels.
 *
 * The check walks the reader and writer graphs in step. Pairs of records are memoised in a small
 * hash table: a pair being checked counts as compatible when it is met again further down (that is
 * how recursive types terminate), a finished pair keeps its verdict (that is what keeps shared
 * named types from costing exponential time). The walk is bounded in depth and in steps; a pair of
 * schemas that exceeds either is reported as not compatible ("too complex to check") rather than
 * taking unbounded time or stack.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "schema/avro_schema.h"

#define TC_COMPAT_DEPTH_MAX 1000
#define TC_COMPAT_STEPS_MAX 2000000

enum { TC_PAIR_EMPTY, TC_PAIR_BUSY, TC_PAIR_OK, TC_PAIR_FAIL };

typedef struct tc_pair {
    unsigned r, w; /* node ids + 1 (0 = empty slot) */
    unsigned char state;
} tc_pair;

typedef struct tc_compat_ctx {
    tc_pair *pairs;
    size_t cap, n;
    size_t steps;
    unsigned depth;
    int exhausted;
    char path[512];
    size_t plen;
    char *why;
    size_t why_size;
    int have_why;
} tc_compat_ctx;

static const char *const tc_level_names[TC_COMPAT__COUNT] = {
    "NONE", "BACKWARD",       "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
    "FULL", "FULL_TRANSITIVE"};

const char *tc_compat_level_name(tc_compat_level level)
{
    return (unsigned)level < TC_COMPAT__COUNT ? tc_level_names[level] : "?";
}

int tc_compat_level_parse(const char *s, tc_compat_level *out)
{
    for (int i = 0; s && i < TC_COMPAT__COUNT; i++) {
        if (!strcasecmp(s, tc_level_names[i])) {
            *out = (tc_compat_level)i;
            return 0;
        }
    }
    return -1;
}

__attribute__((format(printf, 2, 3))) static int tc_incompat(tc_compat_ctx *c, const char *fmt, ...)
{
    va_list ap;
    char msg[384];

    if (c->have_why || !c->why || !c->why_size)
        return 0;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->why, c->why_size, "%s: %s", c->plen ? c->path : "/", msg);
    c->have_why = 1;
    return 0;
}

/* Path bookkeeping: push a segment, remember the old length to pop back to. */
static size_t tc_path_push(tc_compat_ctx *c, const char *seg)
{
    size_t old = c->plen;
    int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "/%s", seg);

    if (n > 0)
        c->plen +=
            (size_t)n < sizeof(c->path) - c->plen ? (size_t)n : sizeof(c->path) - c->plen - 1;
    return old;
}

static void tc_path_pop(tc_compat_ctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static tc_pair *tc_pair_slot(tc_compat_ctx *c, unsigned r, unsigned w, int insert)
{
    size_t h;

    if (insert && (c->n + 1) * 2 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        tc_pair *np = calloc(cap, sizeof(*np));
        if (!np)
            return NULL;
        for (size_t i = 0; i < c->cap; i++) {
            if (!c->pairs[i].r)
                continue;
            h = ((size_t)c->pairs[i].r * 2654435761u ^ (size_t)c->pairs[i].w * 40503u) & (cap - 1);
            while (np[h].r)
                h = (h + 1) & (cap - 1);
            np[h] = c->pairs[i];
        }
        free(c->pairs);
        c->pairs = np;
        c->cap = cap;
    }
    if (!c->cap)
        return NULL;
    h = ((size_t)(r + 1) * 2654435761u ^ (size_t)(w + 1) * 40503u) & (c->cap - 1);
    while (c->pairs[h].r) {
        if (c->pairs[h].r == r + 1 && c->pairs[h].w == w + 1)
            return &c->pairs[h];
        h = (h + 1) & (c->cap - 1);
    }
    if (!insert)
        return NULL;
    c->pairs[h].r = r + 1;
    c->pairs[h].w = w + 1;
    c->pairs[h].state = TC_PAIR_EMPTY;
    c->n++;
    return &c->pairs[h];
}

/* Unqualified names equal, or one of the reader's aliases names the writer. */
static int tc_names_match(const tc_avro_node *r, const tc_avro_node *w)
{
    if (!strcmp(r->name, w->name))
        return 1;
    for (size_t i = 0; i < r->naliases; i++) {
        const char *dot = strrchr(r->aliases[i], '.');
        if (!strcmp(dot ? dot + 1 : r->aliases[i], w->name) || !strcmp(r->aliases[i], w->fullname))
            return 1;
    }
    return 0;
}

static const char *tc_type_label(const tc_avro_node *n)
{
    return n->fullname ? n->fullname : tc_avro_kind_name(n->kind);
}

static int tc_check(tc_compat_ctx *c, const tc_avro_node *r, const tc_avro_node *w);

static int tc_check_record(tc_compat_ctx *c, const tc_avro_node *r, const tc_avro_node *w)
{
    for (size_t i = 0; i < r->nfields; i++) {
        const tc_avro_field *rf = &r->fields[i];
        const tc_avro_field *wf = NULL;
        size_t old;
        int ok;

        for (size_t k = 0; k < w->nfields && !wf; k++)
            if (!strcmp(w->fields[k].name, rf->name))
                wf = &w->fields[k];
        for (size_t a = 0; a < rf->naliases && !wf; a++)
            for (size_t k = 0; k < w->nfields && !wf; k++)
                if (!strcmp(w->fields[k].name, rf->aliases[a]))
                    wf = &w->fields[k];
        old = tc_path_push(c, "fields");
        tc_path_push(c, rf->name);
        if (!wf) {
            ok = rf->def != NULL;
            if (!ok)
                tc_incompat(c,
                            "reader field \"%s\" of record %s is missing from the writer and has "
                            "no default",
                            rf->name, r->fullname);
        } else {
            tc_path_push(c, "type");
            ok = tc_check(c, rf->type, wf->type);
        }
        tc_path_pop(c, old);
        if (!ok)
            return 0;
    }
    return 1;
}

static int tc_check_nonunion(tc_compat_ctx *c, const tc_avro_node *r, const tc_avro_node *w)
{
    size_t old;
    int ok;

    switch (w->kind) {
    case TC_AVRO_NULL:
    case TC_AVRO_BOOLEAN:
    case TC_AVRO_DOUBLE:
        if (r->kind == w->kind)
            return 1;
        break;
    case TC_AVRO_INT:
        if (r->kind == TC_AVRO_INT || r->kind == TC_AVRO_LONG || r->kind == TC_AVRO_FLOAT ||
            r->kind == TC_AVRO_DOUBLE)
            return 1;
        break;
    case TC_AVRO_LONG:
        if (r->kind == TC_AVRO_LONG || r->kind == TC_AVRO_FLOAT || r->kind == TC_AVRO_DOUBLE)
            return 1;
        break;
    case TC_AVRO_FLOAT:
        if (r->kind == TC_AVRO_FLOAT || r->kind == TC_AVRO_DOUBLE)
            return 1;
        break;
    case TC_AVRO_STRING:
    case TC_AVRO_BYTES:
        if (r->kind == TC_AVRO_STRING || r->kind == TC_AVRO_BYTES)
            return 1;
        break;
    case TC_AVRO_ARRAY:
    case TC_AVRO_MAP:
        if (r->kind != w->kind)
            break;
        old = tc_path_push(c, w->kind == TC_AVRO_ARRAY ? "items" : "values");
        ok = tc_check(c, r->items, w->items);
        tc_path_pop(c, old);
        return ok;
    case TC_AVRO_FIXED:
        if (r->kind != TC_AVRO_FIXED)
            break;
        if (!tc_names_match(r, w))
            return tc_incompat(c, "fixed %s cannot read fixed %s (names differ)", r->fullname,
                               w->fullname);
        if (r->size != w->size)
            return tc_incompat(c, "fixed %s has size %lld, the writer's %s has size %lld",
                               r->fullname, (long long)r->size, w->fullname, (long long)w->size);
        return 1;
    case TC_AVRO_ENUM:
        if (r->kind != TC_AVRO_ENUM)
            break;
        if (!tc_names_match(r, w))
            return tc_incompat(c, "enum %s cannot read enum %s (names differ)", r->fullname,
                               w->fullname);
        if (r->enum_default)
            return 1;
        for (size_t i = 0; i < w->nsymbols; i++) {
            size_t k;
            for (k = 0; k < r->nsymbols; k++)
                if (!strcmp(r->symbols[k], w->symbols[i]))
                    break;
            if (k == r->nsymbols)
                return tc_incompat(c,
                                   "writer symbol \"%s\" of enum %s is not a reader symbol and "
                                   "the reader enum has no default",
                                   w->symbols[i], w->fullname);
        }
        return 1;
    case TC_AVRO_RECORD:
        if (r->kind != TC_AVRO_RECORD)
            break;
        if (!tc_names_match(r, w))
            return tc_incompat(c, "record %s cannot read record %s (names differ)", r->fullname,
                               w->fullname);
        return tc_check_record(c, r, w);
    case TC_AVRO_UNION:
        break; /* handled by tc_check */
    }
    return tc_incompat(c, "reader type %s cannot read writer type %s", tc_type_label(r),
                       tc_type_label(w));
}

static int tc_check(tc_compat_ctx *c, const tc_avro_node *r, const tc_avro_node *w)
{
    tc_pair *p = NULL;
    int ok;

    if (c->exhausted)
        return 0;
    if (++c->steps > TC_COMPAT_STEPS_MAX || c->depth >= TC_COMPAT_DEPTH_MAX) {
        c->exhausted = 1;
        return tc_incompat(c, "schemas too complex to check");
    }
    if (w->kind == TC_AVRO_UNION) {
        for (size_t i = 0; i < w->nbranches; i++) {
            char seg[32];
            size_t old;
            snprintf(seg, sizeof(seg), "union[%zu]", i);
            old = tc_path_push(c, seg);
            c->depth++;
            ok = tc_check(c, r, w->branches[i]);
            c->depth--;
            tc_path_pop(c, old);
            if (!ok)
                return 0;
        }
        return 1;
    }
    if (r->kind == TC_AVRO_UNION) {
        /* Some reader branch must read the writer; failures of the others are not reasons. */
        int had = c->have_why;
        for (size_t i = 0; i < r->nbranches; i++) {
            c->depth++;
            c->have_why = 1; /* mute messages while searching */
            ok = tc_check(c, r->branches[i], w);
            c->have_why = had;
            c->depth--;
            if (ok)
                return 1;
            if (c->exhausted)
                return tc_incompat(c, "schemas too complex to check");
        }
        return tc_incompat(c, "no branch of the reader union can read writer type %s",
                           tc_type_label(w));
    }
    if (r->kind == TC_AVRO_RECORD && w->kind == TC_AVRO_RECORD) {
        p = tc_pair_slot(c, r->id, w->id, 1);
        if (!p) {
            c->exhausted = 1;
            return tc_incompat(c, "out of memory checking compatibility");
        }
        if (p->state == TC_PAIR_BUSY || p->state == TC_PAIR_OK)
            return 1;
        if (p->state == TC_PAIR_FAIL)
            return tc_incompat(c, "record %s cannot read record %s", r->fullname, w->fullname);
        p->state = TC_PAIR_BUSY;
    }
    c->depth++;
    ok = tc_check_nonunion(c, r, w);
    c->depth--;
    if (p) {
        /* The table may have grown (and moved) during the recursion: look the pair up again. */
        p = tc_pair_slot(c, r->id, w->id, 0);
        if (p)
            p->state = ok ? TC_PAIR_OK : TC_PAIR_FAIL;
    }
    return ok;
}

int tc_avro_can_read(const tc_avro_schema *reader, const tc_avro_schema *writer, char *why,
                     size_t why_size)
{
    tc_compat_ctx c;
    int ok;

    memset(&c, 0, sizeof(c));
    c.why = why;
    c.why_size = why_size;
    if (why && why_size)
        why[0] = '\0';
    ok = tc_check(&c, tc_avro_schema_root(reader), tc_avro_schema_root(writer));
    free(c.pairs);
    if (!ok && why && why_size && !why[0])
        snprintf(why, why_size, "/: the reader cannot read the writer");
    return ok;
}

int tc_avro_compatible(tc_compat_level level, const tc_avro_schema *candidate,
                       const tc_avro_schema *const *prev, const int *versions, size_t n,
                       tc_avro_msg_fn fn, void *ctx)
{
    int backward = level == TC_COMPAT_BACKWARD || level == TC_COMPAT_BACKWARD_TRANSITIVE ||
                   level == TC_COMPAT_FULL || level == TC_COMPAT_FULL_TRANSITIVE;
    int forward = level == TC_COMPAT_FORWARD || level == TC_COMPAT_FORWARD_TRANSITIVE ||
                  level == TC_COMPAT_FULL || level == TC_COMPAT_FULL_TRANSITIVE;
    int transitive = level == TC_COMPAT_BACKWARD_TRANSITIVE ||
                     level == TC_COMPAT_FORWARD_TRANSITIVE || level == TC_COMPAT_FULL_TRANSITIVE;
    int ok = 1;
    char why[512], msg[768], ver[32];

    if (level == TC_COMPAT_NONE || n == 0)
        return 1;
    /* Newest first, as a reader of the messages expects. */
    for (size_t k = 0; k < (transitive ? n : 1); k++) {
        size_t i = n - 1 - k;
        if (versions)
            snprintf(ver, sizeof(ver), "version %d", versions[i]);
        else
            snprintf(ver, sizeof(ver), "schema %zu", i);
        if (backward && !tc_avro_can_read(candidate, prev[i], why, sizeof(why))) {
            ok = 0;
            if (fn) {
                snprintf(msg, sizeof(msg),
                         "%s: the new schema cannot read data written with %s: %s",
                         tc_compat_level_name(level), ver, why);
                fn(ctx, msg);
            }
        }
        if (forward && !tc_avro_can_read(prev[i], candidate, why, sizeof(why))) {
            ok = 0;
            if (fn) {
                snprintf(msg, sizeof(msg),
                         "%s: %s cannot read data written with the new schema: %s",
                         tc_compat_level_name(level), ver, why);
                fn(ctx, msg);
            }
        }
    }
    return ok;
}
