/*
 * store.c -- connection handling and the one-transaction batch write; see store.h.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/timeutil.h"

/* COPY data is shipped in pieces of this size: big enough to amortise the call, small enough not to
 * balloon libpq's own output buffer. */
#define TC_COPY_CHUNK (256 * 1024)

tc_store *tc_store_new(const tc_store_options *opt)
{
    tc_store *s = calloc(1, sizeof(*s));
    size_t n = strlen(opt->schema);

    if (!s)
        return NULL;
    s->dsn = strdup(opt->dsn);
    s->group = strdup(opt->group ? opt->group : "");
    s->topic = strdup(opt->topic ? opt->topic : "");
    s->days_ahead = opt->partition_days_ahead;
    tc_copybuf_init(&s->copy);
    if (!s->dsn || !s->group || !s->topic || n == 0 || n + 3 > TC_IDENT_MAX ||
        strchr(opt->schema, '"')) {
        tc_store_destroy(s);
        return NULL;
    }
    memcpy(s->schema_raw, opt->schema, n + 1);
    snprintf(s->schema, sizeof(s->schema), "\"%s\"", opt->schema);
    return s;
}

void tc_store_destroy(tc_store *s)
{
    if (!s)
        return;
    if (s->conn)
        PQfinish(s->conn);
    tc_copybuf_free(&s->copy);
    free(s->dsn);
    free(s->group);
    free(s->topic);
    free(s);
}

void tc_store_totals(const tc_store *s, uint64_t *rows, uint64_t *dead_letters)
{
    *rows = s->rows_total;
    *dead_letters = s->dead_total;
}

int tc_store_sql(const tc_store *s, const char *tmpl, char *out, size_t cap)
{
    size_t pos = 0, slen = strlen(s->schema);

    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '@' && p[1] == 'S') {
            if (pos + slen >= cap)
                return -1;
            memcpy(out + pos, s->schema, slen);
            pos += slen;
            p++;
        } else {
            if (pos + 1 >= cap)
                return -1;
            out[pos++] = *p;
        }
    }
    out[pos] = '\0';
    return 0;
}

tc_err tc_store_classify(tc_store *s, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (!s->conn || PQstatus(s->conn) != CONNECTION_OK)
        return TC_ERR_DB_CONN;
    if (!state)
        return TC_ERR_DB_CONN;
    /* Connection exceptions (08), operator intervention such as a shutdown (57P0x), insufficient
     * resources like a full disk (53), and serialization failures or deadlocks (40) all clear by
     * themselves or by a retry; anything else is the statement's fault. */
    if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3) || !strncmp(state, "53", 2) ||
        !strncmp(state, "40", 2))
        return TC_ERR_DB_CONN;
    return TC_ERR_DB;
}

/* The server's message without its trailing newline. */
static const char *tc_store_pgmsg(const tc_store *s, const PGresult *res, char *buf, size_t cap)
{
    const char *m = res ? PQresultErrorMessage(res) : NULL;
    size_t n;

    if (!m || !*m)
        m = s->conn ? PQerrorMessage(s->conn) : "no connection";
    snprintf(buf, cap, "%s", m);
    n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

tc_err tc_store_exec(tc_store *s, const char *sql, const char *what, char *errstr,
                     size_t errstr_size)
{
    PGresult *res = PQexec(s->conn, sql);
    char msg[TC_ERRSTR_MAX];
    tc_err err = TC_OK;
    ExecStatusType st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not %s: %s", what,
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
    }
    PQclear(res);
    return err;
}

tc_err tc_store_connect(tc_store *s, char *errstr, size_t errstr_size)
{
    char msg[TC_ERRSTR_MAX];

    if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
        return TC_OK;
    if (s->conn) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    s->conn = PQconnectdb(s->dsn);
    if (!s->conn)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory connecting");
    if (PQstatus(s->conn) != CONNECTION_OK) {
        tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size, "could not connect to PostgreSQL: %s",
                   tc_store_pgmsg(s, NULL, msg, sizeof(msg)));
        PQfinish(s->conn);
        s->conn = NULL;
        return TC_ERR_DB_CONN;
    }
    /* Times are exchanged in binary (UTC microseconds); the session zone only affects text. */
    return tc_store_exec(s, "SET TIME ZONE 'UTC'; SET application_name = 'thermocline'",
                         "configure session", errstr, errstr_size);
}

/* Stream the copy buffer into a COPY ... FROM STDIN started by sql. */
static tc_err tc_store_copy(tc_store *s, const char *sql, const char *what, char *errstr,
                            size_t errstr_size)
{
    PGresult *res;
    char msg[TC_ERRSTR_MAX];
    tc_err err = TC_OK;

    if (s->copy.failed)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "could not encode %s: out of memory",
                          what);
    res = PQexec(s->conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not start COPY into %s: %s", what,
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
        PQclear(res);
        return err;
    }
    PQclear(res);
    for (size_t off = 0; off < s->copy.len; off += TC_COPY_CHUNK) {
        size_t n = s->copy.len - off < TC_COPY_CHUNK ? s->copy.len - off : TC_COPY_CHUNK;
        if (PQputCopyData(s->conn, (const char *)s->copy.data + off, (int)n) != 1) {
            err = TC_ERR_DB_CONN;
            break;
        }
    }
    if (PQputCopyEnd(s->conn, err == TC_OK ? NULL : "send failed") != 1 && err == TC_OK)
        err = TC_ERR_DB_CONN;
    res = PQgetResult(s->conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not write batch to %s: %s", what,
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
    }
    PQclear(res);
    /* Drain: after COPY, libpq returns NULL once the command is complete. */
    while ((res = PQgetResult(s->conn)) != NULL)
        PQclear(res);
    return err;
}

static void tc_store_encode_rows(tc_store *s, const tc_batch *b)
{
    tc_copybuf *c = &s->copy;

    tc_copybuf_reset(c);
    tc_copy_begin(c);
    for (size_t i = 0; i < b->n; i++) {
        tc_copy_tuple(c, 12);
        tc_copy_timestamptz(c, b->time_us[i]);
        tc_copy_text(c, b->device_id[i].ptr, b->device_id[i].len);
        for (int m = 0; m < TC_METRIC__COUNT; m++) {
            if (b->present[m][i])
                tc_copy_float8(c, b->metric[m][i]);
            else
                tc_copy_null(c);
        }
        if (b->tags[i].ptr)
            tc_copy_jsonb(c, b->tags[i].ptr, b->tags[i].len);
        else
            tc_copy_null(c);
        if (b->extra[i].ptr)
            tc_copy_jsonb(c, b->extra[i].ptr, b->extra[i].len);
        else
            tc_copy_null(c);
        tc_copy_int4(c, b->partition[i]);
        tc_copy_int8(c, b->offset[i]);
    }
    tc_copy_end(c);
}

static void tc_store_encode_dead_letters(tc_store *s, const tc_dlq_batch *d)
{
    tc_copybuf *c = &s->copy;
    const char *reason;

    tc_copybuf_reset(c);
    tc_copy_begin(c);
    for (size_t i = 0; i < d->n; i++) {
        const tc_dead_letter *dl = &d->items[i];
        reason = tc_reject_name(dl->reason);
        tc_copy_tuple(c, 9);
        tc_copy_timestamptz(c, dl->received_us);
        tc_copy_text(c, reason, strlen(reason));
        tc_copy_text(c, dl->detail, strlen(dl->detail));
        tc_copy_text(c, dl->stage, strlen(dl->stage));
        tc_copy_text(c, dl->payload.ptr ? dl->payload.ptr : "", dl->payload.len);
        if (dl->key.ptr)
            tc_copy_text(c, dl->key.ptr, dl->key.len);
        else
            tc_copy_null(c);
        tc_copy_text(c, s->topic, strlen(s->topic));
        tc_copy_int4(c, dl->partition);
        tc_copy_int8(c, dl->offset);
    }
    tc_copy_end(c);
}

/* Offsets of all partitions of the batch in one statement: arrays as text parameters. */
static tc_err tc_store_write_offsets(tc_store *s, const tc_partition_offset *offsets, size_t n,
                                     char *errstr, size_t errstr_size)
{
    /* 11 digits of partition and 20 of offset, plus separators, per partition. */
    enum { TC_OFFSET_TEXT_PER_PART = 34 };
    char sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX], *parts, *offs;
    const char *params[4];
    size_t pp = 0, po = 0, cap = n * TC_OFFSET_TEXT_PER_PART + 3;
    PGresult *res;
    tc_err err = TC_OK;

    if (n == 0)
        return TC_OK;
    if (tc_store_sql(s,
                     "INSERT INTO @S.ingest_offsets AS o (group_id, topic, partition, next_offset)"
                     " SELECT $1, $2, p, x FROM unnest($3::int[], $4::bigint[]) AS u(p, x)"
                     " ON CONFLICT (group_id, topic, partition) DO UPDATE"
                     " SET next_offset = EXCLUDED.next_offset, updated_at = now()",
                     sql, sizeof(sql)) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "offsets statement too long");
    parts = malloc(cap);
    offs = malloc(cap);
    if (!parts || !offs) {
        err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto out;
    }
    parts[pp++] = '{';
    offs[po++] = '{';
    for (size_t i = 0; i < n; i++) {
        pp += (size_t)snprintf(parts + pp, cap - pp, "%s%d", i ? "," : "", offsets[i].partition);
        po += (size_t)snprintf(offs + po, cap - po, "%s%lld", i ? "," : "",
                               (long long)offsets[i].next_offset);
    }
    snprintf(parts + pp, cap - pp, "}");
    snprintf(offs + po, cap - po, "}");
    params[0] = s->group;
    params[1] = s->topic;
    params[2] = parts;
    params[3] = offs;
    res = PQexecParams(s->conn, sql, 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not store offsets of group \"%s\": %s",
                   s->group, tc_store_pgmsg(s, res, msg, sizeof(msg)));
    }
    PQclear(res);
out:
    free(parts);
    free(offs);
    return err;
}

tc_err tc_store_write(tc_store *s, const tc_batch *b, const tc_dlq_batch *dlq,
                      const tc_partition_offset *offsets, size_t noffsets, char *errstr,
                      size_t errstr_size)
{
    char sql[TC_SQL_MAX], where[TC_SQL_MAX], inner[TC_ERRSTR_MAX];
    int64_t dmin = INT64_MAX, dmax = INT64_MIN, d;
    tc_err err;

    err = tc_store_connect(s, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    for (size_t i = 0; i < b->n; i++) {
        d = tc_time_day_of(b->time_us[i]);
        dmin = d < dmin ? d : dmin;
        dmax = d > dmax ? d : dmax;
    }
    if (b->n) {
        err = tc_store_ensure_days(s, dmin, dmax, errstr, errstr_size);
        if (err != TC_OK)
            return err;
    }
    err = tc_store_exec(s, "BEGIN", "begin transaction", errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (b->n) {
        tc_store_encode_rows(s, b);
        snprintf(where, sizeof(where), "%s.readings", s->schema);
        if (tc_store_sql(s,
                         "COPY @S.readings (time, device_id, temperature, humidity, pressure,"
                         " battery, latitude, longitude, tags, extra, kafka_partition,"
                         " kafka_offset) FROM STDIN (FORMAT binary)",
                         sql, sizeof(sql)) < 0)
            err = TC_ERR_INVALID;
        else
            err = tc_store_copy(s, sql, where, errstr, errstr_size);
        if (err != TC_OK)
            goto fail;
    }
    if (dlq && dlq->n) {
        tc_store_encode_dead_letters(s, dlq);
        snprintf(where, sizeof(where), "%s.dead_letters", s->schema);
        if (tc_store_sql(s,
                         "COPY @S.dead_letters (received_at, reason, detail, stage, payload,"
                         " kafka_key, source_topic, source_partition, source_offset)"
                         " FROM STDIN (FORMAT binary)",
                         sql, sizeof(sql)) < 0)
            err = TC_ERR_INVALID;
        else
            err = tc_store_copy(s, sql, where, errstr, errstr_size);
        if (err != TC_OK)
            goto fail;
    }
    err = tc_store_write_offsets(s, offsets, noffsets, errstr, errstr_size);
    if (err != TC_OK)
        goto fail;
    err = tc_store_exec(s, "COMMIT", "commit batch", errstr, errstr_size);
    if (err != TC_OK)
        return err; /* a failed COMMIT leaves no transaction open */
    s->rows_total += b->n;
    s->dead_total += dlq ? dlq->n : 0;
    return TC_OK;
fail:
    /* Keep the first error; the rollback's own failure (connection gone) adds nothing. */
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
        tc_store_exec(s, "ROLLBACK", "roll back", inner, sizeof(inner));
    return err;
}

tc_err tc_store_load_offsets(tc_store *s, const int32_t *partitions, size_t n, int64_t *next,
                             char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX];
    const char *params[2];
    PGresult *res;
    tc_err err;

    for (size_t i = 0; i < n; i++)
        next[i] = -1;
    err = tc_store_connect(s, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (tc_store_sql(s,
                     "SELECT partition, next_offset FROM @S.ingest_offsets"
                     " WHERE group_id = $1 AND topic = $2",
                     sql, sizeof(sql)) < 0)
        return TC_ERR_INVALID;
    params[0] = s->group;
    params[1] = s->topic;
    res = PQexecParams(s->conn, sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not read offsets of group \"%s\": %s", s->group,
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
        PQclear(res);
        return err;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        int32_t p = (int32_t)strtol(PQgetvalue(res, r, 0), NULL, 10);
        int64_t o = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        for (size_t i = 0; i < n; i++) {
            if (partitions[i] == p)
                next[i] = o;
        }
    }
    PQclear(res);
    return TC_OK;
}
