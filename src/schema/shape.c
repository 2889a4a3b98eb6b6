/*
 * shape.c -- schema evolution applied to a decoded row; see shape.h.
 */
#include "schema/shape.h"

#include <math.h>
#include <string.h>

#include "core/log.h"
#include "schema/json_reading.h"

/* The fixed fields a decoded row has (TC_CATALOG_F_* bits). A JSON null reads as absent: the
 * decoders store both the same way. */
static uint32_t tc_shape_fixed_mask(const tc_batch *b, size_t row)
{
    uint32_t mask = 1u << TC_CATALOG_F_DEVICE | 1u << TC_CATALOG_F_TIMESTAMP;

    for (int m = 0; m < TC_METRIC__COUNT; m++)
        mask |= (uint32_t)(b->present[m][row] != 0) << (TC_CATALOG_F_METRIC0 + m);
    if (b->tags[row].ptr)
        mask |= 1u << TC_CATALOG_F_TAGS;
    return mask;
}

/* Whether the row has field f: for an Avro row, whether its writer schema has it. */
static int tc_shape_row_has(const tc_catalog_field *f, uint32_t mask, const tc_json *root,
                            const tc_catalog_version *writer)
{
    if (writer)
        return tc_catalog_has_field(writer, f->name, strlen(f->name));
    if (f->fixed >= 0)
        return (mask >> f->fixed) & 1u;
    return root && tc_json_get(root, f->name) != NULL;
}

/* Append "name":default to the `extra` being rebuilt in jb: the first call copies the members the
 * reading has (its text without the closing brace). */
static void tc_shape_extra_add(tc_jbuf *jb, const tc_slice *extra, const tc_catalog_field *f)
{
    if (jb->len == 0) {
        if (extra->ptr && extra->len >= 2 && extra->ptr[extra->len - 1] == '}') {
            tc_jbuf_append(jb, extra->ptr, extra->len - 1);
            if (extra->len > 2)
                tc_jbuf_append(jb, ",", 1);
        } else {
            tc_jbuf_append(jb, "{", 1);
        }
    } else {
        tc_jbuf_append(jb, ",", 1);
    }
    tc_jbuf_append(jb, "\"", 1);
    tc_jbuf_escaped(jb, f->name, strlen(f->name));
    tc_jbuf_append(jb, "\":", 2);
    tc_jbuf_append(jb, f->default_json, strlen(f->default_json));
}

/*
 * Give the row the defaults of the fields of version v it lacks. A metric takes a numeric default
 * in its column, tags an object default; any other field joins `extra` as if the device had sent
 * it (and a numeric one becomes a column below, like a sent one). Returns TC_JSON_BATCH_FULL when
 * the arena cannot hold the new `extra`, TC_REJECT_NONE otherwise. *rewrote is set when `extra`
 * changed (the caller parses it again).
 */
static tc_reject tc_shape_defaults(tc_batch *b, size_t row, const tc_catalog_version *v,
                                   const tc_catalog_version *writer, const tc_json *root,
                                   int *rewrote)
{
    uint32_t mask = tc_shape_fixed_mask(b, row);
    tc_jbuf jb;
    char *text;
    size_t len;
    tc_reject r = TC_REJECT_NONE;

    tc_jbuf_init(&jb, 0);
    for (size_t i = 0; i < v->nfields; i++) {
        const tc_catalog_field *f = &v->fields[i];
        if (!f->default_json || tc_shape_row_has(f, mask, root, writer))
            continue;
        if (f->fixed >= TC_CATALOG_F_METRIC0 &&
            f->fixed < TC_CATALOG_F_METRIC0 + TC_METRIC__COUNT) {
            if (f->default_is_num) {
                b->metric[f->fixed - TC_CATALOG_F_METRIC0][row] = f->default_num;
                b->present[f->fixed - TC_CATALOG_F_METRIC0][row] = 1;
            }
        } else if (f->fixed == TC_CATALOG_F_TAGS) {
            if (f->default_json[0] == '{') {
                char *t = tc_arena_strndup(&b->arena, f->default_json, strlen(f->default_json));
                if (!t) {
                    r = TC_JSON_BATCH_FULL;
                    break;
                }
                b->tags[row] = (tc_slice){t, (uint32_t)strlen(t)};
            }
        } else if (f->fixed < 0) {
            tc_shape_extra_add(&jb, &b->extra[row], f);
        }
    }
    if (r == TC_REJECT_NONE && jb.len > 0) {
        tc_jbuf_append(&jb, "}", 1);
        text = tc_jbuf_failed(&jb) ? NULL : tc_arena_strndup(&b->arena, jb.data, jb.len);
        len = jb.len;
        if (!text) {
            r = TC_JSON_BATCH_FULL;
        } else {
            b->extra[row] = (tc_slice){text, (uint32_t)len};
            *rewrote = 1;
        }
    }
    tc_jbuf_free(&jb);
    return r;
}

/* A numeric top-level field the schema-v1 columns do not name becomes a column of its own (in the
 * batch, then in both stores, from this batch on). It also stays in `extra`, verbatim, so nothing
 * about the reading is lost or rewritten. Non-numeric unknown fields stay in `extra` only. */
static void tc_shape_promote(tc_batch *b, size_t row, const tc_json *root, size_t *dyn_logged)
{
    for (size_t i = 0; root && root->type == TC_JSON_OBJECT && i < root->len; i++) {
        const tc_json_member *mb = &root->u.members[i];
        int d;
        if (mb->value->type != TC_JSON_NUMBER || !isfinite(mb->value->u.num.value))
            continue;
        d = tc_batch_dyn_column(b, mb->key, mb->key_len);
        if (d < 0)
            continue;
        if ((size_t)d >= *dyn_logged) {
            tc_log_info("pipeline", "new metric \"%s\" becomes a column", mb->key);
            *dyn_logged = (size_t)d + 1;
        }
        b->dyn[d][row] = mb->value->u.num.value;
        b->dyn_present[d][row] = 1;
    }
}

tc_reject tc_shape_row(tc_batch *b, size_t row, tc_catalog *catalog, int32_t writer_id,
                       size_t *dyn_logged, tc_jbuf *message_id, int *has_message_id)
{
    const tc_catalog_version *v = NULL, *reader = NULL, *writer = NULL;
    const char *keys[TC_JSON_EXTRA_FIELDS_MAX];
    size_t lens[TC_JSON_EXTRA_FIELDS_MAX], nkeys = 0;
    const tc_json *root = NULL;
    tc_json_doc *doc = NULL;
    char errstr[TC_ERRSTR_MAX];
    int rewrote = 0;
    tc_reject r = TC_REJECT_NONE;

    if (has_message_id)
        *has_message_id = 0;
    if (b->extra[row].ptr) {
        doc =
            tc_json_parse(b->extra[row].ptr, b->extra[row].len, NULL, NULL, errstr, sizeof(errstr));
        root = doc ? tc_json_root(doc) : NULL; /* the decoder validated it: NULL is only ENOMEM */
        for (size_t i = 0; root && root->type == TC_JSON_OBJECT && i < root->len &&
                           nkeys < TC_JSON_EXTRA_FIELDS_MAX;
             i++, nkeys++) {
            keys[nkeys] = root->u.members[i].key;
            lens[nkeys] = root->u.members[i].key_len;
        }
    }
    if (catalog && writer_id >= 0) {
        v = writer = tc_catalog_by_id(catalog, writer_id);
        reader = writer ? tc_catalog_latest(catalog) : NULL;
    } else if (catalog) {
        v = reader = tc_catalog_detect(catalog, tc_shape_fixed_mask(b, row), keys, lens, nkeys);
    }
    if (v)
        b->schema_version[row] = v->version;
    if (reader)
        r = tc_shape_defaults(b, row, reader, writer, root, &rewrote);
    if (r == TC_REJECT_NONE && rewrote) {
        tc_json_free(doc);
        doc =
            tc_json_parse(b->extra[row].ptr, b->extra[row].len, NULL, NULL, errstr, sizeof(errstr));
        root = doc ? tc_json_root(doc) : NULL;
    }
    if (r == TC_REJECT_NONE)
        tc_shape_promote(b, row, root, dyn_logged);
    if (r == TC_REJECT_NONE && message_id) {
        const tc_json *id = root ? tc_json_get(root, "message_id") : NULL;
        if (id)
            tc_jbuf_value(message_id, id);
        *has_message_id = id != NULL && !tc_jbuf_failed(message_id);
    }
    tc_json_free(doc);
    return r;
}
