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

tc_store *tc_store_new(const tc_store_options *opt, char *errstr, size_t errstr_size)
{
    tc_store *s;
    size_t n = strlen(opt->schema);
    const char *want = opt->timescaledb ? opt->timescaledb : "";

    /* The schema name is quoted as an identifier and also appears inside string literals. */
    if (n == 0 || n + 3 > TC_IDENT_MAX || strpbrk(opt->schema, "\"'\\")) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "invalid postgres.schema \"%s\": %s",
                   opt->schema,
                   n == 0                 ? "empty"
                   : n + 3 > TC_IDENT_MAX ? "longer than PostgreSQL's identifiers"
                                          : "a quote or a backslash is not allowed in it");
        return NULL;
    }
    if (strcmp(want, "auto") && strcmp(want, "on") && strcmp(want, "off")) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "invalid postgres.timescaledb \"%s\" (allowed: auto, on, off)", want);
        return NULL;
    }
    if (opt->chunk_interval_s <= 0) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "invalid postgres.chunk_interval_s %lld: must be positive",
                   (long long)opt->chunk_interval_s);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->dsn = strdup(opt->dsn);
    s->dsn_key = opt->dsn_key ? opt->dsn_key : "postgres.dsn";
    s->group = strdup(opt->group ? opt->group : "");
    s->rollup_group = malloc(strlen(opt->group ? opt->group : "") + sizeof(TC_STORE_ROLLUP_SUFFIX));
    if (s->rollup_group)
        sprintf(s->rollup_group, "%s" TC_STORE_ROLLUP_SUFFIX, opt->group ? opt->group : "");
    s->topic = strdup(opt->topic ? opt->topic : "");
    s->days_ahead = opt->partition_days_ahead;
    s->chunk_interval_s = opt->chunk_interval_s;
    s->compress_after_s = opt->compress_after_s;
    s->retention_s = opt->retention_s;
    s->synchronous_commit = opt->synchronous_commit != 0;
    s->lock_timeout_ms = opt->lock_timeout_ms > 0 ? opt->lock_timeout_ms : 0;
    s->rollups = opt->rollups != 0;
    tc_copybuf_init(&s->copy);
    tc_copybuf_init(&s->params);
    tc_rollup_init(&s->r1m, TC_ROLLUP_1M_US);
    tc_rollup_init(&s->r1h, TC_ROLLUP_1H_US);
    tc_rollup_init(&s->rlatest, 0);
    s->materialize_after_us = -1;
    if (!s->dsn || !s->group || !s->rollup_group || !s->topic) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
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
    /* libpq's "...failed: Connection refused\n\tIs the server running...?" as one line. */
    tc_log_flatten(buf);
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
        /* Where it tried (never the whole DSN: it may hold a password) and what to check. */
        tc_store_pgmsg(s, NULL, msg, sizeof(msg));
        tc_err_set(TC_ERR_DB_CONN, errstr, errstr_size,
                   "could not connect to PostgreSQL (host %s, port %s, database %s): %s; check "
                   "%s (%s); with the dev services: eval \"$(scripts/dev-services env)\"",
                   PQhost(s->conn) ? PQhost(s->conn) : "?", PQport(s->conn) ? PQport(s->conn) : "?",
                   PQdb(s->conn) ? PQdb(s->conn) : "?", msg, s->dsn_key,
                   strcmp(s->dsn_key, "postgres.dsn") ? "THERMOCLINE_PG_OWNER_DSN"
                                                      : "THERMOCLINE_PG_DSN");
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

void tc_params_reset(tc_store *s, tc_params *p)
{
    tc_copybuf_reset(&s->params);
    p->n = 0;
}

/* Start parameter p->n: a binary array, or (text != NULL) a text value. */
void tc_params_array(tc_store *s, tc_params *p, uint32_t oid, size_t n, int has_nulls)
{
    p->start[p->n] = s->params.len;
    p->formats[p->n] = 1;
    p->values[p->n] = NULL;
    p->n++;
    tc_copy_array_begin(&s->params, oid, (uint32_t)n, has_nulls);
}

void tc_params_text(tc_params *p, const char *text)
{
    p->start[p->n] = 0;
    p->formats[p->n] = 0;
    p->values[p->n] = text;
    p->lengths[p->n] = 0;
    p->n++;
}

/* Resolve the parameters' pointers once the buffer no longer moves. */
int tc_params_finish(tc_store *s, tc_params *p)
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
tc_err tc_store_prepare(tc_store *s, unsigned bit, const char *name, const char *sql, int nparams,
                        const Oid *types, char *errstr, size_t errstr_size)
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

tc_err tc_store_run_prepared(tc_store *s, const char *name, tc_params *p, const char *what,
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
tc_err tc_store_write_offsets(tc_store *s, const char *group, const tc_partition_offset *offsets,
                              const int64_t *from, int64_t absent, size_t n, char *errstr,
                              size_t errstr_size)
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
