/*
 * store.c -- connection handling and the one-transaction batch write; see store.h.
 */
#include "store/store_int.h"

#include <stdarg.h>
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
    const char *want = opt->timescaledb && *opt->timescaledb ? opt->timescaledb : "auto";

    if (!s)
        return NULL;
    s->dsn = strdup(opt->dsn);
    s->group = strdup(opt->group ? opt->group : "");
    s->rollup_group = malloc(strlen(opt->group ? opt->group : "") + sizeof(TC_STORE_ROLLUP_SUFFIX));
    if (s->rollup_group)
        sprintf(s->rollup_group, "%s" TC_STORE_ROLLUP_SUFFIX, opt->group ? opt->group : "");
    s->topic = strdup(opt->topic ? opt->topic : "");
    s->days_ahead = opt->partition_days_ahead;
    s->chunk_interval_s = opt->chunk_interval_s > 0 ? opt->chunk_interval_s : 86400;
    s->compress_after_s = opt->compress_after_s ? opt->compress_after_s : 7 * 86400;
    s->retention_s = opt->retention_s ? opt->retention_s : 30 * 86400;
    s->synchronous_commit = opt->synchronous_commit >= 0;
    s->lock_timeout_ms = opt->lock_timeout_ms > 0 ? opt->lock_timeout_ms : 0;
    s->rollups = opt->rollups >= 0;
    tc_copybuf_init(&s->copy);
    tc_copybuf_init(&s->params);
    tc_rollup_init(&s->r1m, TC_ROLLUP_1M_US);
    tc_rollup_init(&s->r1h, TC_ROLLUP_1H_US);
    tc_rollup_init(&s->rlatest, 0);
    /* The schema name is quoted as an identifier and also appears inside string literals. */
    if (!s->dsn || !s->group || !s->rollup_group || !s->topic || n == 0 || n + 3 > TC_IDENT_MAX ||
        strpbrk(opt->schema, "\"'\\") ||
        (strcmp(want, "auto") && strcmp(want, "on") && strcmp(want, "off"))) {
        tc_store_destroy(s);
        return NULL;
    }
    snprintf(s->want_mode, sizeof(s->want_mode), "%s", want);
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
    tc_copybuf_free(&s->params);
    for (size_t t = 0; t < TC_STORE_ROLLUP_TABLES; t++)
        free(s->rollup_stmt[t].cols);
    free(s->latest_stmt.cols);
    tc_rollup_free(&s->r1m);
    tc_rollup_free(&s->r1h);
    tc_rollup_free(&s->rlatest);
    free(s->dsn);
    free(s->group);
    free(s->rollup_group);
    free(s->topic);
    free(s);
}

tc_store_mode tc_store_get_mode(const tc_store *s)
{
    return s->mode;
}

const char *tc_store_mode_name(tc_store_mode mode)
{
    return mode == TC_STORE_TIMESCALEDB ? "timescaledb" : "plain";
}

void tc_store_totals(const tc_store *s, uint64_t *rows, uint64_t *dead_letters)
{
    *rows = s->rows_total;
    *dead_letters = s->dead_total;
}

/* The continuous aggregates refresh up to this far back: just short of the retention, so a refresh
 * never sees a region whose raw chunks the retention policy dropped (it would empty it). */
static int64_t tc_store_refresh_window_s(const tc_store *s)
{
    int64_t r = s->retention_s > 0 ? s->retention_s : 30 * 86400;

    return r - 86400 >= 7200 ? r - 86400 : 7200;
}

int tc_store_sql(const tc_store *s, const char *tmpl, char *out, size_t cap)
{
    size_t pos = 0, slen = strlen(s->schema), n;
    char num[24];

    for (const char *p = tmpl; *p; p++) {
        const char *sub = NULL;
        if (p[0] == '@' && p[1] == 'S') {
            sub = s->schema;
            n = slen;
        } else if (p[0] == '@' && (p[1] == 'C' || p[1] == 'Z' || p[1] == 'R' || p[1] == 'A')) {
            int64_t v = p[1] == 'C'   ? s->chunk_interval_s
                        : p[1] == 'Z' ? s->compress_after_s
                        : p[1] == 'R' ? s->retention_s
                                      : tc_store_refresh_window_s(s);
            n = (size_t)snprintf(num, sizeof(num), "%lld", (long long)v);
            sub = num;
        }
        if (sub) {
            if (pos + n >= cap)
                return -1;
            memcpy(out + pos, sub, n);
            pos += n;
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

    snprintf(s->sqlstate, sizeof(s->sqlstate), "%s", state ? state : "");
    s->constraint_named = res && PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) != NULL;
    if (!s->conn || PQstatus(s->conn) != CONNECTION_OK)
        return TC_ERR_DB_CONN;
    if (!state)
        return TC_ERR_DB_CONN;
    /* Connection exceptions (08), operator intervention such as a shutdown (57P0x), insufficient
     * resources like a full disk (53), serialization failures or deadlocks (40) and a lock not
     * granted within lock_timeout (55P03) all clear by themselves or by a retry; anything else is
     * the statement's fault. */
    if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3) || !strncmp(state, "53", 2) ||
        !strncmp(state, "40", 2) || !strcmp(state, "55P03"))
        return TC_ERR_DB_CONN;
    return TC_ERR_DB;
}

const char *tc_store_pgmsg(const tc_store *s, const PGresult *res, char *buf, size_t cap)
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

tc_err tc_store_begin(tc_store *s, const char *sql, const char *what, char *errstr,
                      size_t errstr_size)
{
    char buf[TC_SQL_MAX];
    tc_err err;

    if ((size_t)snprintf(buf, sizeof(buf), "BEGIN; %s", sql) >= sizeof(buf))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "could not %s: statement too long",
                          what);
    err = tc_store_exec(s, buf, what, errstr, errstr_size);
    if (err != TC_OK)
        tc_store_rollback(s, "a transaction whose first statement failed");
    return err;
}

void tc_store_rollback(tc_store *s, const char *what)
{
    char inner[TC_ERRSTR_MAX];

    if (!s->conn || PQstatus(s->conn) != CONNECTION_OK ||
        PQtransactionStatus(s->conn) == PQTRANS_IDLE)
        return;
    if (tc_store_exec(s, "ROLLBACK", "roll back", inner, sizeof(inner)) != TC_OK)
        tc_log_warn("store", "could not roll back %s: %s", what, inner);
}

/* Server notices ("already exists, skipping", TimescaleDB's hints) go to the log, not stderr. */
static void tc_store_on_notice(void *arg, const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    (void)arg;
    if (sev && !strcmp(sev, "WARNING"))
        tc_log_warn("store", "PostgreSQL: %s", msg ? msg : "");
    else
        tc_log_debug("store", "PostgreSQL %s: %s", sev ? sev : "notice", msg ? msg : "");
}

tc_err tc_store_connect(tc_store *s, char *errstr, size_t errstr_size)
{
    char msg[TC_ERRSTR_MAX];
    tc_err err;

    if (s->conn && PQstatus(s->conn) == CONNECTION_OK) {
        /* Every caller starts an operation of its own: a transaction still open here was left by
         * a failure on some path, and would make every statement of this one fail too. */
        if (PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
            tc_log_warn("store", "rolling back a transaction an earlier failure left open");
            tc_store_rollback(s, "the transaction left open");
        }
        return TC_OK;
    }
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
    PQsetNoticeReceiver(s->conn, tc_store_on_notice, NULL);
    s->prepared = 0; /* prepared statements belong to the connection */
    /* Times are exchanged in binary (UTC microseconds); the session zone only affects text.
     * synchronous_commit off: a server crash may lose the last few hundred ms of commits, never
     * corrupt; the offsets are in the same transactions, so what was lost is consumed again. */
    err = tc_store_exec(s,
                        s->synchronous_commit
                            ? "SET TIME ZONE 'UTC'; SET application_name = 'thermocline'"
                            : "SET TIME ZONE 'UTC'; SET application_name = 'thermocline';"
                              " SET synchronous_commit = off",
                        "configure session", errstr, errstr_size);
    if (err == TC_OK && s->lock_timeout_ms > 0) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SET lock_timeout = %d", s->lock_timeout_ms);
        err = tc_store_exec(s, sql, "configure session", errstr, errstr_size);
    }
    if (err == TC_OK)
        err = tc_store_load_state(s, errstr, errstr_size);
    return err;
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
        tc_copy_tuple(c, (int16_t)(13 + b->ndyn));
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
        if (b->schema_version[i])
            tc_copy_int4(c, b->schema_version[i]);
        else
            tc_copy_null(c);
        for (size_t d = 0; d < b->ndyn; d++) {
            if (b->dyn_present[d][i])
                tc_copy_float8(c, b->dyn[d][i]);
            else
                tc_copy_null(c);
        }
    }
    tc_copy_end(c);
}

/* The COPY statement for the batch's columns: the fixed ones, then its dynamic metrics. */
static int tc_store_copy_sql(const tc_store *s, const tc_batch *b, char *out, size_t cap)
{
    char tmpl[TC_SQL_MAX];
    size_t pos;

    pos = (size_t)snprintf(tmpl, sizeof(tmpl), "%s",
                           "COPY @S.readings (time, device_id, temperature, humidity, pressure,"
                           " battery, latitude, longitude, tags, extra, kafka_partition,"
                           " kafka_offset, schema_version");
    for (size_t d = 0; d < b->ndyn && pos < sizeof(tmpl); d++)
        pos += (size_t)snprintf(tmpl + pos, sizeof(tmpl) - pos, ", \"%s\"", b->dyn_name[d]);
    if (pos >= sizeof(tmpl) ||
        (size_t)snprintf(tmpl + pos, sizeof(tmpl) - pos, ") FROM STDIN (FORMAT binary)") >=
            sizeof(tmpl) - pos)
        return -1;
    return tc_store_sql(s, tmpl, out, cap);
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

/* Parameters of one prepared statement, arrays built in s->params. The widest statement is the
 * offsets' fenced update: group, topic, the partitions, their new offsets, the offsets they move
 * from and the value that says "no row yet"; the rollups and the latest state send one array of
 * records each. */
#define TC_PARAMS_MAX 6

/* Groups per rollup or latest-state statement. The records of one statement are built in memory
 * (some 420 bytes a rollup group: each column carries its type and length), so a flush of 60,000
 * groups in one would hold 25 MB; in statements of this many it holds 7 MB, and PostgreSQL's cost
 * per row is the same. */
#define TC_ROLLUP_STMT_GROUPS 16384

typedef struct tc_params {
    int n;
    size_t start[TC_PARAMS_MAX];
    const char *values[TC_PARAMS_MAX];
    int lengths[TC_PARAMS_MAX];
    int formats[TC_PARAMS_MAX];
} tc_params;

static void tc_params_reset(tc_store *s, tc_params *p)
{
    tc_copybuf_reset(&s->params);
    p->n = 0;
}

/* Start parameter p->n: a binary array, or (text != NULL) a text value. */
static void tc_params_array(tc_store *s, tc_params *p, uint32_t oid, size_t n, int has_nulls)
{
    p->start[p->n] = s->params.len;
    p->formats[p->n] = 1;
    p->values[p->n] = NULL;
    p->n++;
    tc_copy_array_begin(&s->params, oid, (uint32_t)n, has_nulls);
}

static void tc_params_text(tc_params *p, const char *text)
{
    p->start[p->n] = 0;
    p->formats[p->n] = 0;
    p->values[p->n] = text;
    p->lengths[p->n] = 0;
    p->n++;
}

/* Resolve the parameters' pointers once the buffer no longer moves. */
static int tc_params_finish(tc_store *s, tc_params *p)
{
    if (s->params.failed)
        return -1;
    for (int i = 0; i < p->n; i++) {
        size_t end = s->params.len;
        if (!p->formats[i])
            continue;
        for (int j = i + 1; j < p->n; j++) {
            if (p->formats[j]) {
                end = p->start[j];
                break;
            }
        }
        p->values[i] = (const char *)s->params.data + p->start[i];
        p->lengths[i] = (int)(end - p->start[i]);
    }
    return 0;
}

/* Prepare a statement on this connection unless it already is. */
static tc_err tc_store_prepare(tc_store *s, unsigned bit, const char *name, const char *sql,
                               int nparams, const Oid *types, char *errstr, size_t errstr_size)
{
    char msg[TC_ERRSTR_MAX];
    PGresult *res;
    tc_err err = TC_OK;

    if (s->prepared & bit)
        return TC_OK;
    res = PQprepare(s->conn, name, sql, nparams, types);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not prepare %s: %s", name,
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
    } else {
        s->prepared |= bit;
    }
    PQclear(res);
    return err;
}

static tc_err tc_store_run_prepared(tc_store *s, const char *name, tc_params *p, const char *what,
                                    char *errstr, size_t errstr_size)
{
    char msg[TC_ERRSTR_MAX];
    PGresult *res;
    tc_err err = TC_OK;

    if (tc_params_finish(s, p) < 0)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory encoding %s", what);
    res = PQexecPrepared(s->conn, name, p->n, p->values, p->lengths, p->formats, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not write %s: %s", what,
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
    }
    PQclear(res);
    return err;
}

/*
 * Offsets of all partitions of the batch in one prepared statement, arrays in binary.
 *
 * Fencing: with from set, partition i moves to offsets[i] only from from[i], the offset the
 * writer last saw stored (`absent`: no row yet, which only an insert may fill). A member that
 * lost its partitions while it waited (evicted from the group during a long stall) finds them
 * moved on by their next owner, or its next owner finds them moved on by it: in either case the
 * update matches no row, and the statement answers which partitions it could not move. The
 * caller rolls back: the rows of the batch are not written twice. PostgreSQL re-checks the WHERE
 * of an UPDATE that waited for a concurrent one on the row's newest version (READ COMMITTED), so
 * two writers from the same offset cannot both succeed. with from NULL the offsets are set as
 * they are (a replay, which keeps the marks where they are or moves them itself).
 */
static tc_err tc_store_write_offsets(tc_store *s, const char *group,
                                     const tc_partition_offset *offsets, const int64_t *from,
                                     int64_t absent, size_t n, char *errstr, size_t errstr_size)
{
    static const Oid types[6] = {TC_OID_TEXT,       TC_OID_TEXT,       TC_OID_INT4_ARRAY,
                                 TC_OID_INT8_ARRAY, TC_OID_INT8_ARRAY, TC_OID_INT8};
    char sql[TC_SQL_MAX], what[TC_SQL_MAX], msg[TC_ERRSTR_MAX], absent_text[24];
    PGresult *res;
    tc_params p;
    tc_err err;

    if (n == 0)
        return TC_OK;
    if (tc_store_sql(
            s,
            "WITH u AS (SELECT * FROM unnest($3::int[], $4::bigint[], $5::bigint[])"
            " AS u(p, x, f)),"
            " i AS (INSERT INTO @S.ingest_offsets (group_id, topic, partition, next_offset)"
            " SELECT $1, $2, p, x FROM u WHERE f = $6 OR $6 IS NULL"
            " ON CONFLICT (group_id, topic, partition) DO UPDATE"
            " SET next_offset = EXCLUDED.next_offset, updated_at = now() WHERE $6 IS NULL"
            " RETURNING partition),"
            " d AS (UPDATE @S.ingest_offsets AS o SET next_offset = u.x, updated_at = now()"
            " FROM u WHERE $6 IS NOT NULL AND u.f <> $6 AND o.group_id = $1"
            " AND o.topic = $2 AND o.partition = u.p AND o.next_offset = u.f"
            " RETURNING o.partition)"
            " SELECT u.p, u.f FROM u WHERE u.p NOT IN"
            " (SELECT partition FROM i UNION ALL SELECT partition FROM d)",
            sql, sizeof(sql)) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "offsets statement too long");
    err = tc_store_prepare(s, TC_PREP_OFFSETS, "tc_offsets", sql, 6, types, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    tc_params_reset(s, &p);
    tc_params_text(&p, group);
    tc_params_text(&p, s->topic);
    tc_params_array(s, &p, TC_OID_INT4, n, 0);
    for (size_t i = 0; i < n; i++)
        tc_copy_int4(&s->params, offsets[i].partition);
    tc_params_array(s, &p, TC_OID_INT8, n, 0);
    for (size_t i = 0; i < n; i++)
        tc_copy_int8(&s->params, offsets[i].next_offset);
    tc_params_array(s, &p, TC_OID_INT8, n, 0);
    for (size_t i = 0; i < n; i++)
        tc_copy_int8(&s->params, from ? from[i] : absent);
    snprintf(absent_text, sizeof(absent_text), "%lld", (long long)absent);
    tc_params_text(&p, from ? absent_text : NULL); /* NULL: SQL NULL, unconditional */
    snprintf(what, sizeof(what), "offsets of group \"%s\"", group);
    if (tc_params_finish(s, &p) < 0)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory encoding %s", what);
    res = PQexecPrepared(s->conn, "tc_offsets", p.n, p.values, p.lengths, p.formats, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not write %s: %s", what,
                   tc_store_pgmsg(s, res, msg, sizeof(msg)));
    } else if (PQntuples(res) > 0) {
        err = tc_err_set(TC_ERR_FENCED, errstr, errstr_size,
                         "%s of topic \"%s\" partition %s: the stored next offset is no longer "
                         "%s, where this write started (%d partitions moved on): another member "
                         "owns them now",
                         what, s->topic, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
                         PQntuples(res));
    }
    PQclear(res);
    return err;
}

/* Append to out (at *pos) with printf; returns -1 when it does not fit. */
static int tc_sql_append(char *out, size_t cap, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int tc_sql_append(char *out, size_t cap, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(out + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *pos)
        return -1;
    *pos += (size_t)n;
    return 0;
}

const tc_store_rollup_table tc_store_rollup_tables[TC_STORE_ROLLUP_TABLES] = {
    {"rollup_1m", "readings_1m", "tc_rollup_1m", TC_PREP_ROLLUP_1M},
    {"rollup_1h", "readings_1h", "tc_rollup_1h", TC_PREP_ROLLUP_1H},
};

int tc_store_rollup_metric_fits(const char *name)
{
    return strlen(name) <= TC_ROLLUP_NAME_MAX;
}

/*
 * The rollup upserts send their groups as one parameter: an array of the table's own row type,
 * which the statement unnests. PostgreSQL reads such an array about as fast as rows from a table;
 * 27 arrays of one column each, unnested side by side, cost it twice as much (each becomes a
 * tuplestore of its own before the rows are zipped together). The price is that the records must
 * carry every column of the row type, in the table's order, with its type: the columns are read
 * from the catalog when the statement is prepared, and each is mapped to what fills it.
 */
enum { TC_RCOL_DEVICE, TC_RCOL_BUCKET, TC_RCOL_N, TC_RCOL_FIXED, TC_RCOL_DYN, TC_RCOL_NONE };
/* tc_rollup_column.metric of a TC_RCOL_NONE column named like a metric's */
#define TC_RCOL_UNSEEN 0xffff

/* The metric column a name ends in: field 0..3 for _n, _sum, _min, _max, and the length of the
 * metric's name before it; -1 when it is not one. */
static int tc_store_metric_field(const char *col, size_t *metric_len)
{
    static const char *const suffix[] = {"_n", "_sum", "_min", "_max"};
    size_t len = strlen(col);

    for (int f = 0; f < 4; f++) {
        size_t sl = strlen(suffix[f]);
        if (len > sl && strcmp(col + len - sl, suffix[f]) == 0) {
            *metric_len = len - sl;
            return f;
        }
    }
    return -1;
}

/* Map column name (of type oid) of a rollup table to its source in rollup r. */
static tc_rollup_column tc_store_rollup_column(const tc_rollup *r, const char *name, uint32_t oid)
{
    tc_rollup_column c = {oid, TC_RCOL_NONE, 0, 0}; /* not a metric's: NULL */
    size_t len = 0;
    int f;

    if (!strcmp(name, "device_id"))
        c.src = TC_RCOL_DEVICE;
    else if (!strcmp(name, "bucket"))
        c.src = TC_RCOL_BUCKET;
    else if (!strcmp(name, "n"))
        c.src = TC_RCOL_N;
    if (c.src != TC_RCOL_NONE || (f = tc_store_metric_field(name, &len)) < 0)
        return c;
    c.field = (uint8_t)f;
    c.metric = TC_RCOL_UNSEEN;
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        if (strlen(tc_metric_names[m]) == len && !strncmp(name, tc_metric_names[m], len)) {
            c.src = TC_RCOL_FIXED;
            c.metric = (uint16_t)m;
            return c;
        }
    }
    for (size_t d = 0; d < r->ndyn; d++) {
        if (strlen(r->dyn_name[d]) == len && !strncmp(name, r->dyn_name[d], len) &&
            tc_store_rollup_metric_fits(r->dyn_name[d])) {
            c.src = TC_RCOL_DYN;
            c.metric = (uint16_t)d;
            return c;
        }
    }
    return c; /* a metric this pipeline has not seen (another one added it): 0, or NULL */
}

/* The SET clause of one metric column: counts and sums add up (they are NOT NULL DEFAULT 0, so a
 * row written before the metric existed adds up from 0), extremes keep the extreme. */
static int tc_store_rollup_set(char *sql, size_t *pos, const char *name, int field)
{
    if (field < 2)
        return tc_sql_append(sql, TC_ROLLUP_SQL_MAX, pos, ", \"%s\" = t.\"%s\" + EXCLUDED.\"%s\"",
                             name, name, name);
    return tc_sql_append(sql, TC_ROLLUP_SQL_MAX, pos, ", \"%s\" = %s(t.\"%s\", EXCLUDED.\"%s\")",
                         name, field == 2 ? "least" : "greatest", name, name);
}

/* The columns of table (qualified) in order, as rows (row type OID, name, type OID) in *res (the
 * caller's to clear), and st's row type and an array of as many columns with their types, for the
 * caller to map (st->cols is the caller's to free, also on failure). */
static tc_err tc_store_row_type(tc_store *s, const char *table, PGresult **res, tc_record_stmt *st,
                                char *errstr, size_t errstr_size)
{
    const char *params[1] = {table};
    char msg[TC_ERRSTR_MAX];
    int rows;

    *st = (tc_record_stmt){0};
    *res = PQexecParams(s->conn,
                        "SELECT c.reltype, a.attname, a.atttypid FROM pg_attribute a"
                        " JOIN pg_class c ON c.oid = a.attrelid WHERE a.attrelid = $1::regclass"
                        " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(*res) != PGRES_TUPLES_OK)
        return tc_err_set(tc_store_classify(s, *res), errstr, errstr_size,
                          "could not read the columns of \"%s\": %s", table,
                          tc_store_pgmsg(s, *res, msg, sizeof(msg)));
    rows = PQntuples(*res);
    if (rows == 0)
        return tc_err_set(TC_ERR_DB, errstr, errstr_size, "\"%s\" has no columns", table);
    st->cols = calloc((size_t)rows, sizeof(*st->cols));
    if (!st->cols)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
    st->ncols = (size_t)rows;
    st->rowtype = (uint32_t)strtoul(PQgetvalue(*res, 0, 0), NULL, 10);
    for (int i = 0; i < rows; i++)
        st->cols[i].oid = (uint32_t)strtoul(PQgetvalue(*res, i, 2), NULL, 10);
    return TC_OK;
}

/* Forget prepared statement name (bit) on this connection, if it is prepared. */
static tc_err tc_store_unprepare(tc_store *s, unsigned bit, const char *name, char *errstr,
                                 size_t errstr_size)
{
    char sql[64];
    tc_err err;

    if (!(s->prepared & bit))
        return TC_OK;
    snprintf(sql, sizeof(sql), "DEALLOCATE %s", name);
    if ((err = tc_store_exec(s, sql, "forget a prepared statement", errstr, errstr_size)) == TC_OK)
        s->prepared &= ~bit;
    return err;
}

/* Prepare statement name (bit) from sql, sending records as fresh describes; on success fresh
 * becomes *st (its columns move there), else it is freed. */
static tc_err tc_store_prepare_records(tc_store *s, tc_record_stmt *st, tc_record_stmt *fresh,
                                       unsigned bit, const char *name, const char *sql,
                                       char *errstr, size_t errstr_size)
{
    tc_err err = tc_store_prepare(s, bit, name, sql, 1, NULL, errstr, errstr_size);

    if (err != TC_OK) {
        free(fresh->cols);
        return err;
    }
    free(st->cols);
    *st = *fresh;
    return TC_OK;
}

/* A function that appends column c of group g of rollup r to a record being built. */
typedef void (*tc_record_value_fn)(tc_store *s, const tc_rollup *r, size_t g,
                                   const tc_rollup_column *c);

/* Send the groups of r through prepared statement name, which takes them as one array of st's
 * row type, in statements of at most TC_ROLLUP_STMT_GROUPS groups. */
static tc_err tc_store_send_records(tc_store *s, tc_record_stmt *st, const char *name,
                                    const char *what, const tc_rollup *r, tc_record_value_fn value,
                                    char *errstr, size_t errstr_size)
{
    size_t g0, g1, ng = r->ngroups;
    tc_params p;
    tc_err err = TC_OK;

    for (g0 = 0; err == TC_OK && g0 < ng; g0 = g1) {
        g1 = ng - g0 > TC_ROLLUP_STMT_GROUPS ? g0 + TC_ROLLUP_STMT_GROUPS : ng;
        tc_params_reset(s, &p);
        tc_params_array(s, &p, st->rowtype, g1 - g0, 0);
        for (size_t g = g0; g < g1; g++) {
            size_t start = tc_copy_record_begin(&s->params, (uint32_t)st->ncols);
            for (size_t c = 0; c < st->ncols; c++)
                value(s, r, g, &st->cols[c]);
            tc_copy_record_end(&s->params, start);
        }
        err = tc_store_run_prepared(s, name, &p, what, errstr, errstr_size);
    }
    /* 42804: the row type is no longer the one the records were built for (another pipeline added
     * a metric's columns). Nothing was written: read the columns again and retry. */
    if (err != TC_OK && !strcmp(s->sqlstate, "42804")) {
        st->stale = 1;
        err = TC_ERR_DB_CONN;
    }
    return err;
}

/* Read rollup table t's row type and columns into fresh, mapped for rollup r; build its upsert in
 * sql (a buffer of TC_ROLLUP_SQL_MAX). */
static tc_err tc_store_rollup_columns(tc_store *s, size_t t, const tc_rollup *r,
                                      tc_record_stmt *fresh, char *sql, char *errstr,
                                      size_t errstr_size)
{
    char table[TC_SQL_MAX];
    PGresult *res = NULL;
    size_t pos = 0;
    int rc = 0;
    tc_err err;

    snprintf(table, sizeof(table), "%s.%s", s->schema, tc_store_rollup_tables[t].table);
    if ((err = tc_store_row_type(s, table, &res, fresh, errstr, errstr_size)) != TC_OK)
        goto done;
    rc |= tc_sql_append(sql, TC_ROLLUP_SQL_MAX, &pos,
                        "INSERT INTO %s AS t SELECT (x).* FROM unnest($1::%s[]) x"
                        " ON CONFLICT (device_id, bucket) DO UPDATE SET n = t.n + EXCLUDED.n",
                        table, table);
    for (size_t i = 0; i < fresh->ncols; i++) {
        const char *name = PQgetvalue(res, (int)i, 1);
        size_t len;
        fresh->cols[i] = tc_store_rollup_column(r, name, fresh->cols[i].oid);
        if (fresh->cols[i].src >= TC_RCOL_FIXED && tc_store_metric_field(name, &len) >= 0)
            rc |= tc_store_rollup_set(sql, &pos, name, fresh->cols[i].field);
    }
    if (rc < 0)
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "rollup statement too long");
done:
    PQclear(res);
    return err;
}

/* Prepare the upsert of rollup table t for the first ndyn dynamic metrics of r, replacing one
 * prepared for fewer (their columns were added since: the row type changed) or for a row type
 * that changed under it. */
static tc_err tc_store_prepare_rollup(tc_store *s, size_t t, const tc_rollup *r, size_t ndyn,
                                      char *errstr, size_t errstr_size)
{
    const tc_store_rollup_table *rt = &tc_store_rollup_tables[t];
    tc_record_stmt fresh = {0};
    char *sql;
    tc_err err;

    if ((s->prepared & rt->prep) && !s->rollup_stmt[t].stale && s->rollup_prepared[t] == ndyn)
        return TC_OK;
    if ((err = tc_store_unprepare(s, rt->prep, rt->stmt, errstr, errstr_size)) != TC_OK)
        return err;
    sql = malloc(TC_ROLLUP_SQL_MAX);
    if (!sql)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory building SQL");
    err = tc_store_rollup_columns(s, t, r, &fresh, sql, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_prepare_records(s, &s->rollup_stmt[t], &fresh, rt->prep, rt->stmt, sql,
                                       errstr, errstr_size);
    else
        free(fresh.cols);
    free(sql);
    if (err == TC_OK)
        s->rollup_prepared[t] = ndyn;
    return err;
}

/* A minimum or maximum of a group: NULL where the group had no value. */
static void tc_params_extreme(tc_store *s, int64_t cnt, double v)
{
    if (cnt)
        tc_copy_float8(&s->params, v);
    else
        tc_copy_null(&s->params);
}

/* Column c of group g of rollup r, as a field of its record. */
static void tc_store_rollup_value(tc_store *s, const tc_rollup *r, size_t g,
                                  const tc_rollup_column *c)
{
    const tc_rollup_group *gr = &r->groups[g];
    const tc_rollup_dyn *dy;
    int64_t cnt = 0;
    double sum = 0, min = 0, max = 0;

    tc_copy_record_column(&s->params, c->oid);
    switch (c->src) {
    case TC_RCOL_DEVICE:
        tc_copy_text(&s->params, gr->device.ptr, gr->device.len);
        return;
    case TC_RCOL_BUCKET:
        tc_copy_timestamptz(&s->params, gr->bucket_us);
        return;
    case TC_RCOL_N:
        tc_copy_int8(&s->params, gr->n);
        return;
    case TC_RCOL_FIXED:
        cnt = gr->cnt[c->metric];
        sum = gr->sum[c->metric];
        min = gr->min[c->metric];
        max = gr->max[c->metric];
        break;
    case TC_RCOL_DYN:
        dy = tc_rollup_dyn_at(r, g, c->metric);
        cnt = dy->cnt;
        sum = dy->sum;
        min = dy->min;
        max = dy->max;
        break;
    default:
        break;
    }
    if (c->src == TC_RCOL_NONE &&
        (c->metric != TC_RCOL_UNSEEN || c->oid != (c->field == 0 ? TC_OID_INT8 : TC_OID_FLOAT8)))
        tc_copy_null(&s->params); /* not a metric's column (or not of a metric's type) */
    else if (c->field == 0)
        tc_copy_int8(&s->params, cnt);
    else if (c->field == 1)
        tc_copy_float8(&s->params, sum);
    else
        tc_params_extreme(s, cnt, c->field == 2 ? min : max);
}

/* Add the groups of the rollup of table t to the table (plain mode). */
static tc_err tc_store_write_rollup(tc_store *s, size_t t, char *errstr, size_t errstr_size)
{
    const tc_store_rollup_table *rt = &tc_store_rollup_tables[t];
    const tc_rollup *r = tc_store_rollup_of(s, t);
    tc_err err;

    if (r->ngroups == 0)
        return TC_OK;
    /* tc_store_ensure_rollup_columns has run: a metric without a column would be lost. */
    if (r->ndyn > s->rollup_columns[t])
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "%s lacks columns for %zu dynamic metrics", rt->table,
                          r->ndyn - s->rollup_columns[t]);
    err = tc_store_prepare_rollup(s, t, r, r->ndyn, errstr, errstr_size);
    return err != TC_OK ? err
                        : tc_store_send_records(s, &s->rollup_stmt[t], rt->stmt, rt->table, r,
                                                tc_store_rollup_value, errstr, errstr_size);
}

/*
 * The latest state goes the same way as the rollups: one array of latest_state's row type. Its
 * columns are mapped by name; any the store does not fill (updated_at) go as NULL and the
 * statement leaves them to their defaults.
 */
enum {
    TC_LCOL_DEVICE,
    TC_LCOL_TIME,
    TC_LCOL_METRIC,
    TC_LCOL_TAGS,
    TC_LCOL_EXTRA,
    TC_LCOL_PARTITION,
    TC_LCOL_OFFSET,
    TC_LCOL_NONE
};

static const char *const tc_latest_names[] = {"device_id",       "time",        "", "tags", "extra",
                                              "kafka_partition", "kafka_offset"};

/* Map column name of latest_state to what fills it. */
static tc_rollup_column tc_store_latest_column(const char *name, uint32_t oid)
{
    tc_rollup_column c = {oid, TC_LCOL_NONE, 0, 0};

    for (int k = 0; k < TC_LCOL_NONE; k++) {
        if (k != TC_LCOL_METRIC && !strcmp(name, tc_latest_names[k]))
            c.src = (uint8_t)k;
    }
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        if (!strcmp(name, tc_metric_names[m])) {
            c.src = TC_LCOL_METRIC;
            c.metric = (uint16_t)m;
        }
    }
    return c;
}

/* Read latest_state's row type into fresh and build its upsert (only over an older reading) in
 * sql (a buffer of TC_SQL_MAX). */
static tc_err tc_store_latest_columns(tc_store *s, tc_record_stmt *fresh, char *sql, char *errstr,
                                      size_t errstr_size)
{
    char table[TC_SQL_MAX], cols_sql[TC_SQL_MAX], sel[TC_SQL_MAX];
    size_t pos = 0, cpos = 0, spos = 0;
    PGresult *res = NULL;
    int rc = 0;
    tc_err err;

    snprintf(table, sizeof(table), "%s.latest_state", s->schema);
    if ((err = tc_store_row_type(s, table, &res, fresh, errstr, errstr_size)) != TC_OK)
        goto done;
    for (size_t i = 0; i < fresh->ncols; i++) {
        const char *name = PQgetvalue(res, (int)i, 1);
        fresh->cols[i] = tc_store_latest_column(name, fresh->cols[i].oid);
        if (fresh->cols[i].src == TC_LCOL_NONE)
            continue;
        rc |= tc_sql_append(cols_sql, sizeof(cols_sql), &cpos, "%s\"%s\"", cpos ? ", " : "", name);
        rc |= tc_sql_append(sel, sizeof(sel), &spos, "%sx.\"%s\"", spos ? ", " : "", name);
    }
    rc |= tc_sql_append(sql, TC_SQL_MAX, &pos,
                        "INSERT INTO %s AS l (%s) SELECT %s FROM unnest($1::%s[]) x"
                        " ON CONFLICT (device_id) DO UPDATE SET time = EXCLUDED.time",
                        table, cols_sql, sel, table);
    for (int m = 0; m < TC_METRIC__COUNT; m++)
        rc |= tc_sql_append(sql, TC_SQL_MAX, &pos, ", %s = EXCLUDED.%s", tc_metric_names[m],
                            tc_metric_names[m]);
    rc |= tc_sql_append(sql, TC_SQL_MAX, &pos,
                        ", tags = EXCLUDED.tags, extra = EXCLUDED.extra,"
                        " kafka_partition = EXCLUDED.kafka_partition,"
                        " kafka_offset = EXCLUDED.kafka_offset, updated_at = now()"
                        " WHERE (EXCLUDED.time, EXCLUDED.kafka_partition, EXCLUDED.kafka_offset)"
                        " > (l.time, l.kafka_partition, l.kafka_offset)");
    if (rc < 0)
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "latest statement too long");
done:
    PQclear(res);
    return err;
}

/* Prepare latest_state's upsert, unless it is and its row type has not changed. */
static tc_err tc_store_prepare_latest(tc_store *s, char *errstr, size_t errstr_size)
{
    tc_record_stmt fresh = {0};
    char sql[TC_SQL_MAX];
    tc_err err;

    if ((s->prepared & TC_PREP_LATEST) && !s->latest_stmt.stale)
        return TC_OK;
    if ((err = tc_store_unprepare(s, TC_PREP_LATEST, "tc_latest", errstr, errstr_size)) != TC_OK)
        return err;
    if ((err = tc_store_latest_columns(s, &fresh, sql, errstr, errstr_size)) != TC_OK) {
        free(fresh.cols);
        return err;
    }
    return tc_store_prepare_records(s, &s->latest_stmt, &fresh, TC_PREP_LATEST, "tc_latest", sql,
                                    errstr, errstr_size);
}

/* Column c of the latest reading of group g of rollup r, as a field of its record. */
static void tc_store_latest_value(tc_store *s, const tc_rollup *r, size_t g,
                                  const tc_rollup_column *c)
{
    const tc_rollup_latest *l = tc_rollup_latest_at(r, g);
    const tc_slice *js = c->src == TC_LCOL_TAGS ? &l->tags : &l->extra;

    tc_copy_record_column(&s->params, c->oid);
    switch (c->src) {
    case TC_LCOL_DEVICE:
        tc_copy_text(&s->params, r->groups[g].device.ptr, r->groups[g].device.len);
        break;
    case TC_LCOL_TIME:
        tc_copy_timestamptz(&s->params, l->time_us);
        break;
    case TC_LCOL_METRIC:
        if (l->present[c->metric])
            tc_copy_float8(&s->params, l->metric[c->metric]);
        else
            tc_copy_null(&s->params);
        break;
    case TC_LCOL_TAGS:
    case TC_LCOL_EXTRA:
        if (js->ptr)
            tc_copy_jsonb(&s->params, js->ptr, js->len);
        else
            tc_copy_null(&s->params);
        break;
    case TC_LCOL_PARTITION:
        tc_copy_int4(&s->params, l->partition);
        break;
    case TC_LCOL_OFFSET:
        tc_copy_int8(&s->params, l->offset);
        break;
    default:
        tc_copy_null(&s->params);
        break;
    }
}

/* The latest reading per device of the groups, upserted only over an older one. */
static tc_err tc_store_write_latest(tc_store *s, const tc_rollup *r, char *errstr,
                                    size_t errstr_size)
{
    tc_err err;

    if (r->ngroups == 0)
        return TC_OK;
    err = tc_store_prepare_latest(s, errstr, errstr_size);
    return err != TC_OK ? err
                        : tc_store_send_records(s, &s->latest_stmt, "tc_latest", "latest readings",
                                                r, tc_store_latest_value, errstr, errstr_size);
}

tc_err tc_store_dead_offsets(tc_store *s, int32_t partition, int64_t from, int64_t to, int64_t *out,
                             size_t cap, size_t *n, char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX], pb[16], fb[24], tb[24];
    const char *params[4] = {s->topic, pb, fb, tb};
    PGresult *res;
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    *n = 0;
    if (err != TC_OK)
        return err;
    if (tc_store_sql(s,
                     "SELECT DISTINCT source_offset FROM @S.dead_letters WHERE source_topic = $1"
                     " AND source_partition = $2::int AND source_offset >= $3::bigint"
                     " AND source_offset < $4::bigint ORDER BY 1",
                     sql, sizeof(sql)) < 0)
        return TC_ERR_INVALID;
    snprintf(pb, sizeof(pb), "%d", partition);
    snprintf(fb, sizeof(fb), "%lld", (long long)from);
    snprintf(tb, sizeof(tb), "%lld", (long long)to);
    res = PQexecParams(s->conn, sql, 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not read the dead letters of partition %d: %s",
                   partition, tc_store_pgmsg(s, res, msg, sizeof(msg)));
    } else {
        for (int r = 0; r < PQntuples(res) && *n < cap; r++)
            out[(*n)++] = strtoll(PQgetvalue(res, r, 0), NULL, 10);
    }
    PQclear(res);
    return err;
}

int tc_store_refused_rows(const tc_store *s)
{
    /* Data exceptions (22: a value out of a column's range or length, bad encoding) and integrity
     * violations (23: a CHECK or NOT NULL an operator added) are caused by some rows; anything
     * else (a missing table, permissions) would refuse every row alike. */
    return !strncmp(s->sqlstate, "22", 2) || !strncmp(s->sqlstate, "23", 2);
}

tc_err tc_store_probe_rows(tc_store *s, const tc_batch *b, char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], where[TC_SQL_MAX];
    tc_err err = tc_store_exec(s, "BEGIN", "begin probe", errstr, errstr_size);

    if (err != TC_OK)
        return err;
    tc_store_encode_rows(s, b);
    snprintf(where, sizeof(where), "%s.readings", s->schema);
    if (tc_store_copy_sql(s, b, sql, sizeof(sql)) < 0)
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "COPY statement too long");
    else
        err = tc_store_copy(s, sql, where, errstr, errstr_size);
    tc_store_rollback(s, "the probe");
    return err;
}

/* Whether the store keeps rollup tables (plain mode, postgres.rollups on). */
static int tc_store_has_rollups(const tc_store *s)
{
    return s->mode == TC_STORE_PLAIN && s->rollups;
}

void tc_store_rollups_clear(tc_store *s)
{
    tc_rollup_clear(&s->r1m);
    tc_rollup_clear(&s->r1h);
    tc_rollup_clear(&s->rlatest);
}

tc_err tc_store_rollups_add(tc_store *s, const tc_batch *b, const uint8_t *mask)
{
    /* TimescaleDB mode has continuous aggregates instead: only the latest state is kept here. */
    if (tc_store_has_rollups(s) &&
        (tc_rollup_add(&s->r1m, b, mask) != TC_OK || tc_rollup_add(&s->r1h, b, mask) != TC_OK))
        return TC_ERR_NOMEM;
    return tc_rollup_add(&s->rlatest, b, mask);
}

void tc_store_rollups_hand_over(tc_store *from, tc_store *to)
{
    tc_rollup r1m = to->r1m, r1h = to->r1h, rlatest = to->rlatest;

    to->r1m = from->r1m;
    to->r1h = from->r1h;
    to->rlatest = from->rlatest;
    from->r1m = r1m;
    from->r1h = r1h;
    from->rlatest = rlatest;
}

size_t tc_store_rollups_pending(const tc_store *s)
{
    size_t n = s->r1m.ngroups;

    n = s->r1h.ngroups > n ? s->r1h.ngroups : n;
    return s->rlatest.ngroups > n ? s->rlatest.ngroups : n;
}

/* Upsert what the aggregates hold into rollup_1m, rollup_1h and latest_state, inside the open
 * transaction. */
static tc_err tc_store_write_aggregates(tc_store *s, char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;

    if (s->version < TC_STORE_VERSION_ROLLUPS)
        return TC_OK;
    for (size_t t = 0; tc_store_has_rollups(s) && err == TC_OK && t < TC_STORE_ROLLUP_TABLES; t++)
        err = tc_store_write_rollup(s, t, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_write_latest(s, &s->rlatest, errstr, errstr_size);
    return err;
}

tc_err tc_store_rollups_flush(tc_store *s, const tc_partition_offset *marks, const int64_t *from,
                              size_t nmarks, char *errstr, size_t errstr_size)
{
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    /* New metrics get their rollup columns first, in a transaction of their own: DDL holds its
     * exclusive lock until commit, which must not wait on the upserts. */
    if (s->version >= TC_STORE_VERSION_ROLLUPS && tc_store_has_rollups(s)) {
        err = tc_store_ensure_rollup_columns(s, errstr, errstr_size);
        if (err != TC_OK)
            return err;
    }
    err = tc_store_exec(s, "BEGIN", "begin transaction", errstr, errstr_size);
    if (err != TC_OK)
        return err;
    err = tc_store_write_aggregates(s, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_write_offsets(s, s->rollup_group, marks, from, TC_STORE_MARK_ABSENT, nmarks,
                                     errstr, errstr_size);
    if (err != TC_OK) {
        tc_store_rollback(s, "the rollups");
        return err;
    }
    err = tc_store_exec(s, "COMMIT", "commit rollups", errstr, errstr_size);
    if (err == TC_OK)
        tc_store_rollups_clear(s);
    return err;
}

tc_err tc_store_write(tc_store *s, const tc_batch *b, const tc_dlq_batch *dlq,
                      const tc_partition_offset *offsets, const int64_t *from, size_t noffsets,
                      char *errstr, size_t errstr_size)
{
    return tc_store_write_ordered(s, b, dlq, offsets, from, noffsets, NULL, NULL, errstr,
                                  errstr_size);
}

tc_err tc_store_write_ordered(tc_store *s, const tc_batch *b, const tc_dlq_batch *dlq,
                              const tc_partition_offset *offsets, const int64_t *from,
                              size_t noffsets, int (*turn)(void *opaque), void *opaque,
                              char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], where[TC_SQL_MAX];
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
        if (err == TC_OK)
            err = tc_store_ensure_columns(s, b, errstr, errstr_size);
        if (err != TC_OK)
            return err;
    }
    err = tc_store_exec(s, "BEGIN", "begin transaction", errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (b->n) {
        tc_store_encode_rows(s, b);
        snprintf(where, sizeof(where), "%s.readings", s->schema);
        if (tc_store_copy_sql(s, b, sql, sizeof(sql)) < 0)
            err = TC_ERR_INVALID;
        else
            err = tc_store_copy(s, sql, where, errstr, errstr_size);
        if (err != TC_OK && s->mode == TC_STORE_PLAIN && !strcmp(s->sqlstate, "23514") &&
            !s->constraint_named) {
            /* "no partition of relation found for row": retention dropped a day this store
             * remembered. Forget the cache; the retry creates the partition again. */
            tc_store_forget_days(s);
            err = TC_ERR_DB_CONN;
        }
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
    /* The rows are in; the offsets say so only once every batch before this one has committed. */
    if (turn && !turn(opaque)) {
        err = tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size,
                         "batch of topic \"%s\" not committed: a batch before it was not written",
                         s->topic);
        goto fail;
    }
    err = tc_store_write_offsets(s, s->group, offsets, from, -1, noffsets, errstr, errstr_size);
    if (err != TC_OK)
        goto fail;
    err = tc_store_exec(s, "COMMIT", "commit batch", errstr, errstr_size);
    if (err != TC_OK)
        return err; /* a failed COMMIT leaves no transaction open */
    s->rows_total += b->n;
    s->dead_total += dlq ? dlq->n : 0;
    return TC_OK;
fail:
    tc_store_rollback(s, "the batch"); /* err stays the first error */
    return err;
}

static tc_err tc_store_load_group_offsets(tc_store *s, const char *group, int64_t absent,
                                          const int32_t *partitions, size_t n, int64_t *next,
                                          char *errstr, size_t errstr_size);

tc_err tc_store_load_offsets(tc_store *s, const int32_t *partitions, size_t n, int64_t *next,
                             char *errstr, size_t errstr_size)
{
    return tc_store_load_group_offsets(s, s->group, -1, partitions, n, next, errstr, errstr_size);
}

tc_err tc_store_load_rollup_offsets(tc_store *s, const int32_t *partitions, size_t n, int64_t *next,
                                    char *errstr, size_t errstr_size)
{
    return tc_store_load_group_offsets(s, s->rollup_group, TC_STORE_MARK_ABSENT, partitions, n,
                                       next, errstr, errstr_size);
}

tc_err tc_store_save_rollup_offsets(tc_store *s, const tc_partition_offset *marks,
                                    const int64_t *from, size_t n, char *errstr, size_t errstr_size)
{
    tc_err err = tc_store_connect(s, errstr, errstr_size);

    if (err == TC_OK)
        err = tc_store_write_offsets(s, s->rollup_group, marks, from, TC_STORE_MARK_ABSENT, n,
                                     errstr, errstr_size);
    return err;
}

static tc_err tc_store_load_group_offsets(tc_store *s, const char *group, int64_t absent,
                                          const int32_t *partitions, size_t n, int64_t *next,
                                          char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX];
    const char *params[2];
    PGresult *res;
    tc_err err;

    for (size_t i = 0; i < n; i++)
        next[i] = absent;
    err = tc_store_connect(s, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (tc_store_sql(s,
                     "SELECT partition, next_offset FROM @S.ingest_offsets"
                     " WHERE group_id = $1 AND topic = $2",
                     sql, sizeof(sql)) < 0)
        return TC_ERR_INVALID;
    params[0] = group;
    params[1] = s->topic;
    res = PQexecParams(s->conn, sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        tc_err_set(err, errstr, errstr_size, "could not read offsets of group \"%s\": %s", group,
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
