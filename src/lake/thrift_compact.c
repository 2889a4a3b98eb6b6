/*
 * thrift_compact.c -- Thrift compact protocol writer and bounds-checked reader; see
 * thrift_compact.h.
 */
#include "lake/thrift_compact.h"

#include <string.h>

/* ---- writer ---- */

void tc_thrift_writer_init(tc_thrift_writer *w, tc_pq_buf *out)
{
    memset(w, 0, sizeof(*w));
    w->out = out;
}

int tc_thrift_writer_failed(const tc_thrift_writer *w)
{
    return w->failed || w->out->failed;
}

void tc_thrift_struct_begin(tc_thrift_writer *w)
{
    if (w->depth >= TC_THRIFT_MAX_DEPTH) {
        w->failed = 1;
        return;
    }
    w->last_id[++w->depth] = 0;
}

void tc_thrift_struct_end(tc_thrift_writer *w)
{
    if (w->depth <= 0) {
        w->failed = 1;
        return;
    }
    tc_pq_buf_put_u8(w->out, TC_THRIFT_STOP);
    w->depth--;
}

void tc_thrift_field_header(tc_thrift_writer *w, int16_t id, uint8_t type)
{
    int delta;

    if (w->depth <= 0) {
        w->failed = 1;
        return;
    }
    delta = (int)id - (int)w->last_id[w->depth];
    if (delta > 0 && delta <= 15) {
        /* Short form: delta in the high nibble, type in the low one. */
        tc_pq_buf_put_u8(w->out, (uint8_t)(delta << 4 | type));
    } else {
        /* Long form: the type alone, then the id as a zigzag varint (as an i16 widened to i32). */
        tc_pq_buf_put_u8(w->out, type);
        tc_pq_buf_put_uvarint(w->out, tc_thrift_zigzag32(id));
    }
    w->last_id[w->depth] = id;
}

void tc_thrift_field_bool(tc_thrift_writer *w, int16_t id, int v)
{
    /* The value lives in the type nibble; there is no value byte. */
    tc_thrift_field_header(w, id, v ? TC_THRIFT_BOOL_TRUE : TC_THRIFT_BOOL_FALSE);
}

void tc_thrift_field_i8(tc_thrift_writer *w, int16_t id, int8_t v)
{
    tc_thrift_field_header(w, id, TC_THRIFT_I8);
    tc_pq_buf_put_u8(w->out, (uint8_t)v);
}

void tc_thrift_field_i16(tc_thrift_writer *w, int16_t id, int16_t v)
{
    tc_thrift_field_header(w, id, TC_THRIFT_I16);
    tc_pq_buf_put_uvarint(w->out, tc_thrift_zigzag32(v));
}

void tc_thrift_field_i32(tc_thrift_writer *w, int16_t id, int32_t v)
{
    tc_thrift_field_header(w, id, TC_THRIFT_I32);
    tc_pq_buf_put_uvarint(w->out, tc_thrift_zigzag32(v));
}

void tc_thrift_field_i64(tc_thrift_writer *w, int16_t id, int64_t v)
{
    tc_thrift_field_header(w, id, TC_THRIFT_I64);
    tc_pq_buf_put_uvarint(w->out, tc_thrift_zigzag64(v));
}

void tc_thrift_field_double(tc_thrift_writer *w, int16_t id, double v)
{
    uint64_t bits;
    uint8_t le[8];

    tc_thrift_field_header(w, id, TC_THRIFT_DOUBLE);
    memcpy(&bits, &v, sizeof(bits));
    /* Little-endian: the compact protocol's de-facto byte order for doubles. */
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(bits >> (8 * i));
    tc_pq_buf_put(w->out, le, sizeof(le));
}

void tc_thrift_field_binary(tc_thrift_writer *w, int16_t id, const void *p, size_t n)
{
    tc_thrift_field_header(w, id, TC_THRIFT_BINARY);
    tc_thrift_elem_binary(w, p, n);
}

void tc_thrift_field_string(tc_thrift_writer *w, int16_t id, const char *s)
{
    tc_thrift_field_binary(w, id, s, strlen(s));
}

void tc_thrift_field_struct_begin(tc_thrift_writer *w, int16_t id)
{
    tc_thrift_field_header(w, id, TC_THRIFT_STRUCT);
    tc_thrift_struct_begin(w);
}

void tc_thrift_list_header(tc_thrift_writer *w, uint8_t elem_type, uint32_t n)
{
    if (n < 15) {
        tc_pq_buf_put_u8(w->out, (uint8_t)(n << 4 | elem_type));
    } else {
        /* 0xF in the size nibble: the size follows as a varint. */
        tc_pq_buf_put_u8(w->out, (uint8_t)(0xF0 | elem_type));
        tc_pq_buf_put_uvarint(w->out, n);
    }
}

void tc_thrift_field_list_begin(tc_thrift_writer *w, int16_t id, uint8_t elem_type, uint32_t n)
{
    tc_thrift_field_header(w, id, TC_THRIFT_LIST);
    tc_thrift_list_header(w, elem_type, n);
}

void tc_thrift_elem_i32(tc_thrift_writer *w, int32_t v)
{
    tc_pq_buf_put_uvarint(w->out, tc_thrift_zigzag32(v));
}

void tc_thrift_elem_i64(tc_thrift_writer *w, int64_t v)
{
    tc_pq_buf_put_uvarint(w->out, tc_thrift_zigzag64(v));
}

void tc_thrift_elem_binary(tc_thrift_writer *w, const void *p, size_t n)
{
    if (n > INT32_MAX) { /* binary lengths are i32 on the wire */
        w->failed = 1;
        return;
    }
    tc_pq_buf_put_uvarint(w->out, n);
    tc_pq_buf_put(w->out, p, n);
}

void tc_thrift_elem_bool(tc_thrift_writer *w, int v)
{
    tc_pq_buf_put_u8(w->out, v ? 1 : 0);
}

/* ---- reader ---- */

void tc_thrift_reader_init(tc_thrift_reader *r, const void *data, size_t len)
{
    r->base = data;
    r->p = data;
    r->end = r->p + len;
    r->err = NULL;
    r->err_at = 0;
}

int tc_thrift_reader_fail(tc_thrift_reader *r, const char *why)
{
    if (!r->err) {
        r->err = why;
        r->err_at = tc_thrift_reader_pos(r);
    }
    /* Park the cursor at the end so that every later read fails too. */
    r->p = r->end;
    return -1;
}

int tc_thrift_read_uvarint(tc_thrift_reader *r, uint64_t *v)
{
    uint64_t x = 0;
    unsigned shift = 0;

    if (r->err)
        return -1;
    /* At most 10 bytes encode 64 bits; a longer run of continuation bits is corrupt. */
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end)
            return tc_thrift_reader_fail(r, "truncated varint");
        uint8_t b = *r->p++;
        if (i == 9 && b > 1)
            return tc_thrift_reader_fail(r, "varint overflows 64 bits");
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
        shift += 7;
    }
    return tc_thrift_reader_fail(r, "varint too long");
}

int tc_thrift_read_i8(tc_thrift_reader *r, int8_t *v)
{
    if (r->err)
        return -1;
    if (r->p >= r->end)
        return tc_thrift_reader_fail(r, "truncated i8");
    *v = (int8_t)*r->p++;
    return 0;
}

int tc_thrift_read_i32(tc_thrift_reader *r, int32_t *v)
{
    uint64_t z;

    if (tc_thrift_read_uvarint(r, &z) != 0)
        return -1;
    if (z > UINT32_MAX)
        return tc_thrift_reader_fail(r, "i32 varint out of range");
    *v = (int32_t)((uint32_t)(z >> 1) ^ (uint32_t) - (int32_t)(z & 1));
    return 0;
}

int tc_thrift_read_i16(tc_thrift_reader *r, int16_t *v)
{
    int32_t x;

    if (tc_thrift_read_i32(r, &x) != 0)
        return -1;
    if (x < INT16_MIN || x > INT16_MAX)
        return tc_thrift_reader_fail(r, "i16 out of range");
    *v = (int16_t)x;
    return 0;
}

int tc_thrift_read_i64(tc_thrift_reader *r, int64_t *v)
{
    uint64_t z;

    if (tc_thrift_read_uvarint(r, &z) != 0)
        return -1;
    *v = (int64_t)((z >> 1) ^ (uint64_t) - (int64_t)(z & 1));
    return 0;
}

int tc_thrift_read_double(tc_thrift_reader *r, double *v)
{
    uint64_t bits = 0;

    if (r->err)
        return -1;
    if (r->end - r->p < 8)
        return tc_thrift_reader_fail(r, "truncated double");
    for (int i = 0; i < 8; i++)
        bits |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    memcpy(v, &bits, sizeof(*v));
    return 0;
}

int tc_thrift_read_binary(tc_thrift_reader *r, const uint8_t **p, uint32_t *n)
{
    uint64_t len;

    if (tc_thrift_read_uvarint(r, &len) != 0)
        return -1;
    if (len > INT32_MAX)
        return tc_thrift_reader_fail(r, "binary length out of range");
    if (len > (uint64_t)(r->end - r->p))
        return tc_thrift_reader_fail(r, "binary runs past the end");
    *p = r->p;
    *n = (uint32_t)len;
    r->p += len;
    return 0;
}

int tc_thrift_read_list(tc_thrift_reader *r, uint8_t *elem_type, uint32_t *n)
{
    uint8_t h;
    uint64_t size;

    if (r->err)
        return -1;
    if (r->p >= r->end)
        return tc_thrift_reader_fail(r, "truncated list header");
    h = *r->p++;
    *elem_type = h & 0x0F;
    size = h >> 4;
    if (size == 15) {
        if (tc_thrift_read_uvarint(r, &size) != 0)
            return -1;
        if (size > INT32_MAX)
            return tc_thrift_reader_fail(r, "list size out of range");
    }
    /* Every element takes at least one byte, so a count above the bytes left is a lie (and would
     * let a tiny input demand a huge allocation). */
    if (size > (uint64_t)(r->end - r->p))
        return tc_thrift_reader_fail(r, "list longer than its bytes");
    *n = (uint32_t)size;
    return 0;
}

int tc_thrift_read_elem_bool(tc_thrift_reader *r, int *v)
{
    int8_t b;

    if (tc_thrift_read_i8(r, &b) != 0)
        return -1;
    *v = b == 1;
    return 0;
}

int tc_thrift_read_field(tc_thrift_reader *r, int16_t *last_id, uint8_t *type, int16_t *id)
{
    uint8_t h;
    int delta;

    if (r->err)
        return -1;
    if (r->p >= r->end)
        return tc_thrift_reader_fail(r, "truncated struct (no stop field)");
    h = *r->p++;
    if (h == TC_THRIFT_STOP)
        return 0;
    *type = h & 0x0F;
    delta = h >> 4;
    if (delta) {
        int next = *last_id + delta;
        if (next > INT16_MAX)
            return tc_thrift_reader_fail(r, "field id overflows i16");
        *id = (int16_t)next;
    } else if (tc_thrift_read_i16(r, id) != 0) {
        return -1;
    }
    if (*type == TC_THRIFT_STOP || *type > TC_THRIFT_UUID)
        return tc_thrift_reader_fail(r, "unknown field type");
    *last_id = *id;
    return 1;
}

int tc_thrift_expect(tc_thrift_reader *r, uint8_t got, uint8_t want)
{
    if (got == want)
        return 0;
    /* A bool field's type nibble carries its value; either nibble is a bool. */
    if ((want == TC_THRIFT_BOOL_TRUE || want == TC_THRIFT_BOOL_FALSE) &&
        (got == TC_THRIFT_BOOL_TRUE || got == TC_THRIFT_BOOL_FALSE))
        return 0;
    return tc_thrift_reader_fail(r, "field has an unexpected type");
}

static int tc_thrift_skip_depth(tc_thrift_reader *r, uint8_t type, int depth)
{
    uint64_t u;
    const uint8_t *p;
    uint32_t n;
    uint8_t et, kt, vt;
    int16_t last = 0, id;
    int rc;

    if (r->err)
        return -1;
    if (depth > TC_THRIFT_MAX_DEPTH)
        return tc_thrift_reader_fail(r, "nesting too deep");
    switch (type) {
    case TC_THRIFT_BOOL_TRUE:
    case TC_THRIFT_BOOL_FALSE:
        /* As a field, the value is in the header; as an element (depth > 0 through a list), the
         * caller passes the element type and a byte follows: handled by the list case. */
        return 0;
    case TC_THRIFT_I8:
        if (r->p >= r->end)
            return tc_thrift_reader_fail(r, "truncated i8");
        r->p++;
        return 0;
    case TC_THRIFT_I16:
    case TC_THRIFT_I32:
    case TC_THRIFT_I64:
        return tc_thrift_read_uvarint(r, &u);
    case TC_THRIFT_DOUBLE:
        if (r->end - r->p < 8)
            return tc_thrift_reader_fail(r, "truncated double");
        r->p += 8;
        return 0;
    case TC_THRIFT_UUID:
        if (r->end - r->p < 16)
            return tc_thrift_reader_fail(r, "truncated uuid");
        r->p += 16;
        return 0;
    case TC_THRIFT_BINARY:
        return tc_thrift_read_binary(r, &p, &n);
    case TC_THRIFT_LIST:
    case TC_THRIFT_SET:
        if (tc_thrift_read_list(r, &et, &n) != 0)
            return -1;
        for (uint32_t i = 0; i < n; i++) {
            if (et == TC_THRIFT_BOOL_TRUE || et == TC_THRIFT_BOOL_FALSE) {
                if (r->p >= r->end)
                    return tc_thrift_reader_fail(r, "truncated bool element");
                r->p++;
            } else if (tc_thrift_skip_depth(r, et, depth + 1) != 0) {
                return -1;
            }
        }
        return 0;
    case TC_THRIFT_MAP:
        if (tc_thrift_read_uvarint(r, &u) != 0)
            return -1;
        if (u == 0)
            return 0;
        if (u > (uint64_t)(r->end - r->p) / 2) /* each pair takes at least two bytes */
            return tc_thrift_reader_fail(r, "map longer than its bytes");
        if (r->p >= r->end)
            return tc_thrift_reader_fail(r, "truncated map header");
        kt = *r->p >> 4;
        vt = *r->p & 0x0F;
        r->p++;
        for (uint64_t i = 0; i < u; i++) {
            for (int k = 0; k < 2; k++) {
                uint8_t t = k ? vt : kt;
                if (t == TC_THRIFT_BOOL_TRUE || t == TC_THRIFT_BOOL_FALSE) {
                    if (r->p >= r->end)
                        return tc_thrift_reader_fail(r, "truncated bool element");
                    r->p++;
                } else if (tc_thrift_skip_depth(r, t, depth + 1) != 0) {
                    return -1;
                }
            }
        }
        return 0;
    case TC_THRIFT_STRUCT:
        while ((rc = tc_thrift_read_field(r, &last, &et, &id)) == 1) {
            if (tc_thrift_skip_depth(r, et, depth + 1) != 0)
                return -1;
        }
        return rc;
    default:
        return tc_thrift_reader_fail(r, "unknown type");
    }
}

int tc_thrift_skip(tc_thrift_reader *r, uint8_t type)
{
    return tc_thrift_skip_depth(r, type, 0);
}
