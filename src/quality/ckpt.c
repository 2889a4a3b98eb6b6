/*
 * ckpt.c -- the detectors' checkpoint as one row per device; see ckpt.h.
 *
 * PostgreSQL's binary array (array_send): int32 dimensions (1), int32 flags (0: no NULLs), the
 * element type's OID, then per dimension int32 length and int32 lower bound (1), then each element
 * as int32 length and its bytes; all integers big-endian. text and bytea elements are their raw
 * bytes, so a record goes in as tc_qd_save_changed made it.
 */
#include "quality/ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quality/writer.h"

/* OIDs of the element types (fixed in PostgreSQL's catalogue). */
#define TC_QCK_OID_BYTEA 17
#define TC_QCK_OID_TEXT  25
/* Bytes of an array's header: dimensions, flags, type, length, lower bound. */
#define TC_QCK_ARRAY_HEADER 20

const char tc_quality_sql_write_states[] =
    "INSERT INTO @S.quality_detector_state (group_id, topic, partition, device_id, state)"
    " SELECT $1, $2, $3::int, d, s FROM unnest($4::text[], $5::bytea[]) AS r(d, s)"
    " ON CONFLICT (group_id, topic, partition, device_id) DO UPDATE SET state = EXCLUDED.state";
const char tc_quality_sql_clear_states[] =
    "DELETE FROM @S.quality_detector_state WHERE group_id = $1 AND topic = $2 AND"
    " partition = $3::int";

typedef struct qck_arr {
    unsigned char **p;
    size_t *len, *cap;
} qck_arr;

static void tc_qck_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static int tc_qck_put(qck_arr *a, const void *bytes, size_t n)
{
    if (n > TC_QCK_PARAM_MAX - 4 || *a->len > TC_QCK_PARAM_MAX - 4 - n)
        return -1;
    if (*a->cap - *a->len < 4 + n) {
        size_t cap = *a->cap;
        unsigned char *p;
        while (cap - *a->len < 4 + n)
            cap = cap < 4096 ? 4096 : 2 * cap;
        if (!(p = realloc(*a->p, cap)))
            return -1;
        *a->p = p;
        *a->cap = cap;
    }
    tc_qck_be32(*a->p + *a->len, (uint32_t)n);
    memcpy(*a->p + *a->len + 4, bytes, n);
    *a->len += 4 + n;
    return 0;
}

static void tc_qck_header(unsigned char *p, uint32_t oid, size_t n)
{
    tc_qck_be32(p, 1);
    tc_qck_be32(p + 4, 0);
    tc_qck_be32(p + 8, oid);
    tc_qck_be32(p + 12, (uint32_t)n);
    tc_qck_be32(p + 16, 1);
}

typedef struct qck_take {
    tc_qck *c;
    qck_arr ids, states;
} qck_take;

static int tc_qck_record(void *opaque, const char *device, size_t len, const unsigned char *record,
                         size_t record_len)
{
    qck_take *t = opaque;

    if (tc_qck_put(&t->ids, device, len) < 0 || tc_qck_put(&t->states, record, record_len) < 0)
        return -1;
    t->c->n++;
    return 0;
}

tc_err tc_qck_take(tc_qck *c, tc_qd *qd, uint32_t since, tc_qbufs *pool, char *errstr,
                   size_t errstr_size)
{
    size_t n = tc_qd_changed(qd, since), devices = tc_qd_devices(qd);
    qck_take t = {
        c, {&c->ids, &c->ids_len, &c->ids_cap}, {&c->states, &c->states_len, &c->states_cap}};
    tc_err err;

    memset(c, 0, sizeof(*c));
    if (2 * n > devices) {
        c->full = 1;
        c->n = devices;
        c->cut = tc_qd_cut(qd);
        /* Into a kept buffer (bufs.h): a whole checkpoint is fresh pages otherwise. */
        c->whole = pool ? tc_qbufs_get(pool, tc_qd_save_size(qd), &c->whole_cap) : NULL;
        err = tc_qd_save_reuse(qd, &c->whole, &c->whole_cap, &c->whole_len, errstr, errstr_size);
        if (err != TC_OK)
            tc_qck_release(c, pool);
        return err;
    }
    /* Sized for the usual record up front (an id of ~16 bytes, 6 series): one allocation. */
    c->ids = tc_qbufs_get(pool, TC_QCK_ARRAY_HEADER + n * 24, &c->ids_cap);
    c->states = tc_qbufs_get(pool, TC_QCK_ARRAY_HEADER + n * 1024, &c->states_cap);
    if (!c->ids || !c->states) {
        tc_qck_release(c, pool);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
    }
    c->ids_len = c->states_len = TC_QCK_ARRAY_HEADER;
    err = tc_qd_save_changed(qd, since, tc_qck_record, &t, &c->cut, errstr, errstr_size);
    if (err != TC_OK) {
        tc_qck_release(c, pool);
        return err;
    }
    tc_qck_header(c->ids, TC_QCK_OID_TEXT, c->n);
    tc_qck_header(c->states, TC_QCK_OID_BYTEA, c->n);
    return TC_OK;
}

void tc_qck_release(tc_qck *c, tc_qbufs *pool)
{
    if (pool) {
        tc_qbufs_put(pool, c->whole, c->whole_cap);
        tc_qbufs_put(pool, c->ids, c->ids_cap);
        tc_qbufs_put(pool, c->states, c->states_cap);
    } else {
        free(c->whole);
        free(c->ids);
        free(c->states);
    }
    memset(c, 0, sizeof(*c));
}

tc_err tc_qck_load(PGconn *conn, const char *schema_quoted, const char *group, const char *topic,
                   int32_t partition, tc_qd *qd, char *errstr, size_t errstr_size)
{
    char part[16];
    const char *params[3] = {group, topic, part};
    unsigned char **recs = NULL;
    size_t *lens = NULL;
    PGresult *res;
    size_t n;
    tc_err err;

    snprintf(part, sizeof(part), "%d", partition);
    err = tc_qw_exec(conn, schema_quoted,
                     "SELECT state FROM @S.quality_detector_state"
                     " WHERE group_id = $1 AND topic = $2 AND partition = $3::int",
                     3, params, NULL, NULL, &res, "read the detectors' checkpoint", errstr,
                     errstr_size);
    if (err != TC_OK)
        return err;
    n = (size_t)PQntuples(res);
    if (n) {
        recs = calloc(n, sizeof(*recs));
        lens = calloc(n, sizeof(*lens));
    }
    if (n && (!recs || !lens))
        err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        recs[i] = PQunescapeBytea((const unsigned char *)PQgetvalue(res, (int)i, 0), &lens[i]);
        if (!recs[i])
            err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "quality: out of memory");
    }
    PQclear(res);
    if (err == TC_OK && n) {
        char msg[TC_ERRSTR_MAX];
        err = tc_qd_merge(qd, (const unsigned char *const *)recs, lens, n, msg, sizeof(msg));
        if (err != TC_OK)
            tc_err_set(err, errstr, errstr_size,
                       "quality: partition %d: the stored detector checkpoint: %s", partition, msg);
    }
    for (size_t i = 0; recs && i < n; i++)
        PQfreemem(recs[i]);
    free(recs);
    free(lens);
    return err;
}
