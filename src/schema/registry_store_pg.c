/*
 * registry_store_pg.c -- the registry's PostgreSQL store; see registry_store.h.
 *
 * Tables (in their own schema, "registry" by default):
 *   schemas           (id, schema_type, fingerprint = sha256 of the identity, canonical = the
 *                      identity (registry_identity.h), original, refs, metadata, rule_set,
 *                      form): ids come from an identity column, the fingerprint is UNIQUE, the
 *                      text of a row is never changed and rows are never deleted, so an id means
 *                      one schema forever;
 *   subject_versions  (subject, version, schema_id, deleted): PRIMARY KEY (subject, version);
 *   configs           (subject, compatibility): subject '' is the global level;
 *   modes             (subject, mode): subject '' is the global mode.
 *
 * Identity forms: rows of form 1 were keyed by Avro's Parsing Canonical Form, which drops
 * logicalType, defaults, doc and properties and so merged schemas that differ in them. The
 * migration re-keys every form-1 row by the identity of its own text (form 2). The id and the text
 * of a row do not change -- a producer may have written the id into Kafka, and the text is what
 * it was registered with first -- so what was merged comes apart on the next registration of a
 * differing text, which now gets an id of its own (docs/registry.md, "Identity migration").
 *
 * Concurrency between registry processes: a write unit of work is a READ COMMITTED transaction
 * that first takes a transaction-level advisory lock keyed by the subject, so two registrations
 * under one subject run one after the other and each sees the other's version (no lost or
 * duplicate version); a new schema is inserted with ON CONFLICT (fingerprint) DO NOTHING and then
 * read back, so two processes registering the same new schema under different subjects get the
 * same id. Reads run as REPEATABLE READ READ ONLY transactions: one consistent snapshot, no
 * serialization failures.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "schema/registry_identity.h"
#include "schema/registry_store.h"

/* Advisory lock keys (first half of the two-int form): DDL, and per-subject writes. */
#define TC_REG_LOCK_MIGRATE 7311100
#define TC_REG_LOCK_SUBJECT 7311101
#define TC_REG_SQL_MAX      4096

typedef struct tc_pg_store {
    tc_reg_store base;
    char *dsn;
    char schema[64]; /* validated identifier */
    PGconn *conn;
    int in_tx;
} tc_pg_store;

#define TC_PG(s) ((tc_pg_store *)(s))

static int tc_pg_valid_schema(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

/* tmpl with every "@S" replaced by the schema name (a plain lower-case identifier). */
static int tc_pg_sql(const char *schema, const char *tmpl, char *out, size_t cap)
{
    size_t o = 0, sl = strlen(schema);

    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '@' && p[1] == 'S') {
            if (o + sl + 1 >= cap)
                return -1;
            memcpy(out + o, schema, sl);
            o += sl;
            p++;
        } else {
            if (o + 2 >= cap)
                return -1;
            out[o++] = *p;
        }
    }
    out[o] = '\0';
    return 0;
}

static tc_err tc_pg_error(PGconn *conn, PGresult *res, const char *what, char *errstr, size_t size)
{
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    tc_err err = conn && PQstatus(conn) == CONNECTION_OK ? TC_ERR_DB : TC_ERR_DB_CONN;

    if (!msg || !*msg)
        msg = conn ? PQerrorMessage(conn) : "no connection";
    tc_err_set(err, errstr, size, "%s: %s", what, msg);
    /* One line is enough in an HTTP error message. */
    if (errstr && size)
        errstr[strcspn(errstr, "\n")] = '\0';
    return err;
}

/* Run a statement; with params. *out gets the result when the caller wants rows. */
static tc_err tc_pg_exec(tc_pg_store *p, const char *tmpl, int nparams, const char *const *params,
                         PGresult **out, const char *what, char *errstr, size_t size)
{
    char sql[TC_REG_SQL_MAX];
    PGresult *res;
    ExecStatusType st;

    if (out)
        *out = NULL;
    if (!p->conn)
        return tc_err_set(TC_ERR_DB_CONN, errstr, size, "%s: not connected", what);
    if (tc_pg_sql(p->schema, tmpl, sql, sizeof(sql)) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, size, "%s: statement too long", what);
    res = nparams ? PQexecParams(p->conn, sql, nparams, NULL, params, NULL, NULL, 0)
                  : PQexec(p->conn, sql);
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        tc_err err = tc_pg_error(p->conn, res, what, errstr, size);
        PQclear(res);
        return err;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return TC_OK;
}

/* Server notices ("relation already exists, skipping" from the idempotent DDL) go to the debug
 * log, not to stderr. */
static void tc_pg_notice(void *arg, const char *message)
{
    (void)arg;
    tc_log_debug("registry", "postgres: %.*s", (int)strcspn(message, "\n"), message);
}

static tc_err tc_pg_connect(tc_pg_store *p, char *errstr, size_t size)
{
    if (p->conn && PQstatus(p->conn) == CONNECTION_OK)
        return TC_OK;
    if (p->conn) {
        PQfinish(p->conn);
        p->conn = NULL;
    }
    p->conn = PQconnectdb(p->dsn);
    if (!p->conn || PQstatus(p->conn) != CONNECTION_OK) {
        tc_err err = tc_pg_error(p->conn, NULL, "cannot connect to PostgreSQL", errstr, size);
        PQfinish(p->conn);
        p->conn = NULL;
        return err == TC_ERR_DB ? TC_ERR_DB_CONN : err;
    }
    PQsetNoticeProcessor(p->conn, tc_pg_notice, NULL);
    return TC_OK;
}

static const char *const tc_pg_ddl =
    "CREATE SCHEMA IF NOT EXISTS @S;"
    "CREATE TABLE IF NOT EXISTS @S.schemas ("
    "  id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  schema_type text NOT NULL DEFAULT 'AVRO',"
    "  fingerprint bytea NOT NULL UNIQUE,"
    "  canonical text NOT NULL,"
    "  original text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now()"
    ");"
    "CREATE TABLE IF NOT EXISTS @S.subject_versions ("
    "  subject text NOT NULL,"
    "  version integer NOT NULL CHECK (version > 0),"
    "  schema_id integer NOT NULL REFERENCES @S.schemas (id),"
    "  deleted boolean NOT NULL DEFAULT false,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (subject, version)"
    ");"
    "CREATE INDEX IF NOT EXISTS subject_versions_schema_idx ON @S.subject_versions (schema_id);"
    "CREATE TABLE IF NOT EXISTS @S.configs ("
    "  subject text PRIMARY KEY,"
    "  compatibility text NOT NULL,"
    "  updated_at timestamptz NOT NULL DEFAULT now()"
    ");"
    "ALTER TABLE @S.schemas ADD COLUMN IF NOT EXISTS refs jsonb,"
    "  ADD COLUMN IF NOT EXISTS metadata jsonb, ADD COLUMN IF NOT EXISTS rule_set jsonb,"
    "  ADD COLUMN IF NOT EXISTS form smallint NOT NULL DEFAULT 1;"
    "CREATE INDEX IF NOT EXISTS schemas_refs_idx ON @S.schemas USING gin (refs jsonb_path_ops);"
    "CREATE TABLE IF NOT EXISTS @S.modes ("
    "  subject text PRIMARY KEY,"
    "  mode text NOT NULL,"
    "  updated_at timestamptz NOT NULL DEFAULT now()"
    ");"
    "COMMENT ON TABLE @S.schemas IS 'Schema registry: one row per distinct Avro schema (by"
    " its full text, references, metadata and rules); ids are never reused.';"
    "COMMENT ON TABLE @S.subject_versions IS 'Schema registry: versions of each subject;"
    " deleted = soft-deleted.';"
    "COMMENT ON TABLE @S.configs IS 'Schema registry: compatibility levels; subject '''' is the"
    " global level.';";

/* Re-key the rows of identity form 1 by the identity of their own text (see the top). Runs inside
 * the migration's transaction, under its lock. */
static tc_err tc_pg_rekey(tc_pg_store *p, char *errstr, size_t size)
{
    PGresult *res;
    int rows;
    tc_err err = tc_pg_exec(p, "SELECT id, original FROM @S.schemas WHERE form = 1 ORDER BY id", 0,
                            NULL, &res, "read schemas to re-key", errstr, size);

    if (err != TC_OK)
        return err;
    rows = PQntuples(res);
    for (int i = 0; i < rows && err == TC_OK; i++) {
        const char *id = PQgetvalue(res, i, 0);
        char *identity = tc_reg_identity_of_text(PQgetvalue(res, i, 1));
        const char *params[2] = {id, identity};

        if (!identity) {
            err = tc_err_set(TC_ERR_DB, errstr, size,
                             "re-keying schema %s: its stored text is not JSON (or out of memory)",
                             id);
            break;
        }
        /* A row an older registry process inserted while a newer one already held the same text
         * under another id keeps its old key (form 3): both ids stay readable, and new
         * registrations of that text find the newer row. */
        err = tc_pg_exec(p,
                         "UPDATE @S.schemas SET fingerprint = sha256(convert_to($2, 'UTF8')),"
                         " canonical = $2, form = 2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM"
                         " @S.schemas o WHERE o.fingerprint = sha256(convert_to($2, 'UTF8')))",
                         2, params, NULL, "re-key schema", errstr, size);
        if (err == TC_OK)
            err = tc_pg_exec(p, "UPDATE @S.schemas SET form = 3 WHERE id = $1 AND form = 1", 1,
                             params, NULL, "re-key schema", errstr, size);
        free(identity);
    }
    if (rows > 0 && err == TC_OK)
        tc_log_info("registry", "re-keyed %d schemas by their full text (ids and texts unchanged)",
                    rows);
    PQclear(res);
    return err;
}

static tc_err tc_pg_migrate(tc_pg_store *p, char *errstr, size_t size)
{
    char lock[96];
    tc_err err;

    snprintf(lock, sizeof(lock), "BEGIN; SELECT pg_advisory_xact_lock(%d)", TC_REG_LOCK_MIGRATE);
    err = tc_pg_exec(p, lock, 0, NULL, NULL, "lock registry migration", errstr, size);
    if (err == TC_OK)
        err = tc_pg_exec(p, tc_pg_ddl, 0, NULL, NULL, "create registry tables", errstr, size);
    if (err == TC_OK)
        err = tc_pg_rekey(p, errstr, size);
    if (err == TC_OK)
        err = tc_pg_exec(p, "COMMIT", 0, NULL, NULL, "commit registry migration", errstr, size);
    if (err != TC_OK && p->conn)
        PQclear(PQexec(p->conn, "ROLLBACK"));
    return err;
}

static tc_err tc_pg_begin(tc_reg_store *s, const char *subject, int write, char *errstr,
                          size_t size)
{
    tc_pg_store *p = TC_PG(s);
    tc_err err;

    /* A dead connection is re-established here, once per unit of work. */
    err = tc_pg_connect(p, errstr, size);
    if (err != TC_OK)
        return err;
    err = tc_pg_exec(p,
                     write ? "BEGIN ISOLATION LEVEL READ COMMITTED"
                           : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                     0, NULL, NULL, "begin", errstr, size);
    if (err == TC_ERR_DB_CONN) {
        if (tc_pg_connect(p, errstr, size) != TC_OK)
            return err;
        err = tc_pg_exec(p,
                         write ? "BEGIN ISOLATION LEVEL READ COMMITTED"
                               : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                         0, NULL, NULL, "begin", errstr, size);
    }
    if (err != TC_OK)
        return err;
    p->in_tx = 1;
    if (write && subject) {
        const char *params[2] = {p->schema, subject};
        char sql[128];
        snprintf(sql, sizeof(sql),
                 "SELECT pg_advisory_xact_lock(%d, hashtext($1::text || '/' || $2::text))",
                 TC_REG_LOCK_SUBJECT);
        err = tc_pg_exec(p, sql, 2, params, NULL, "lock subject", errstr, size);
    }
    return err;
}

static tc_err tc_pg_end(tc_reg_store *s, int commit, char *errstr, size_t size)
{
    tc_pg_store *p = TC_PG(s);
    tc_err err = TC_OK;

    if (!p->in_tx)
        return TC_OK;
    p->in_tx = 0;
    if (commit) {
        err = tc_pg_exec(p, "COMMIT", 0, NULL, NULL, "commit", errstr, size);
        if (err == TC_OK)
            return TC_OK;
    }
    if (p->conn && PQstatus(p->conn) == CONNECTION_OK)
        PQclear(PQexec(p->conn, "ROLLBACK"));
    return err;
}

static tc_err tc_pg_versions(tc_reg_store *s, const char *subject, tc_reg_version **out, size_t *n,
                             char *errstr, size_t size)
{
    const char *params[1] = {subject};
    PGresult *res;
    tc_reg_version *v;
    int rows;
    tc_err err = tc_pg_exec(TC_PG(s),
                            "SELECT version, schema_id, deleted FROM @S.subject_versions"
                            " WHERE subject = $1 ORDER BY version",
                            1, params, &res, "read versions", errstr, size);

    *out = NULL;
    *n = 0;
    if (err != TC_OK)
        return err;
    rows = PQntuples(res);
    v = malloc((rows ? (size_t)rows : 1) * sizeof(*v));
    if (!v) {
        PQclear(res);
        return tc_err_set(TC_ERR_NOMEM, errstr, size, "out of memory");
    }
    for (int i = 0; i < rows; i++) {
        v[i].version = atoi(PQgetvalue(res, i, 0));
        v[i].schema_id = atoi(PQgetvalue(res, i, 1));
        v[i].deleted = PQgetvalue(res, i, 2)[0] == 't';
    }
    PQclear(res);
    *out = v;
    *n = (size_t)rows;
    return TC_OK;
}

static tc_err tc_pg_schema(tc_reg_store *s, int id, tc_reg_schema_text *out, char *errstr,
                           size_t size)
{
    char idt[16];
    const char *params[1] = {idt};
    char **to[4] = {&out->original, &out->references, &out->metadata, &out->rule_set};
    PGresult *res;
    tc_err err;
    int oom = 0;

    memset(out, 0, sizeof(*out));
    snprintf(idt, sizeof(idt), "%d", id);
    err = tc_pg_exec(TC_PG(s),
                     "SELECT original, refs::text, metadata::text, rule_set::text"
                     " FROM @S.schemas WHERE id = $1",
                     1, params, &res, "read schema", errstr, size);
    if (err != TC_OK)
        return err;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return TC_ERR_NOT_FOUND;
    }
    for (int c = 0; c < 4; c++)
        if (!PQgetisnull(res, 0, c) && !(*to[c] = strdup(PQgetvalue(res, 0, c))))
            oom = 1;
    PQclear(res);
    if (oom) {
        tc_reg_schema_text_free(out);
        return tc_err_set(TC_ERR_NOMEM, errstr, size, "out of memory");
    }
    return TC_OK;
}

static tc_err tc_pg_find(tc_reg_store *s, const char *canonical, int *id, char *errstr, size_t size)
{
    const char *params[1] = {canonical};
    PGresult *res;
    tc_err err = tc_pg_exec(TC_PG(s),
                            "SELECT id FROM @S.schemas WHERE fingerprint ="
                            " sha256(convert_to($1, 'UTF8')) AND canonical = $1",
                            1, params, &res, "find schema", errstr, size);

    if (err != TC_OK)
        return err;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return TC_ERR_NOT_FOUND;
    }
    *id = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return TC_OK;
}

static tc_err tc_pg_insert_schema(tc_reg_store *s, const char *canonical,
                                  const tc_reg_schema_text *text, int *id, char *errstr,
                                  size_t size)
{
    const char *params[5] = {canonical, text->original, text->references, text->metadata,
                             text->rule_set};
    PGresult *res;
    tc_err err = tc_pg_exec(TC_PG(s),
                            "INSERT INTO @S.schemas (fingerprint, canonical, original, refs,"
                            " metadata, rule_set, form)"
                            " VALUES (sha256(convert_to($1, 'UTF8')), $1, $2, $3::jsonb, $4::jsonb,"
                            " $5::jsonb, 2)"
                            " ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
                            5, params, &res, "insert schema", errstr, size);

    if (err != TC_OK)
        return err;
    if (PQntuples(res) == 1) {
        *id = atoi(PQgetvalue(res, 0, 0));
        PQclear(res);
        return TC_OK;
    }
    PQclear(res);
    /* Another process stored the same schema first: use its id. */
    err = tc_pg_find(s, canonical, id, errstr, size);
    if (err == TC_ERR_NOT_FOUND)
        err = tc_err_set(TC_ERR_DB, errstr, size, "schema vanished after a conflicting insert");
    return err;
}

static tc_err tc_pg_insert_version(tc_reg_store *s, const char *subject, int version, int schema_id,
                                   char *errstr, size_t size)
{
    char v[16], id[16];
    const char *params[3] = {subject, v, id};

    snprintf(v, sizeof(v), "%d", version);
    snprintf(id, sizeof(id), "%d", schema_id);
    return tc_pg_exec(TC_PG(s),
                      "INSERT INTO @S.subject_versions (subject, version, schema_id)"
                      " VALUES ($1, $2, $3)",
                      3, params, NULL, "insert version", errstr, size);
}

static tc_err tc_pg_delete(tc_reg_store *s, const char *subject, int version, int hard,
                           char *errstr, size_t size)
{
    char v[16];
    const char *params[2] = {subject, v};

    snprintf(v, sizeof(v), "%d", version);
    if (hard)
        return tc_pg_exec(TC_PG(s),
                          "DELETE FROM @S.subject_versions WHERE subject = $1"
                          " AND ($2::integer = 0 OR version = $2::integer)",
                          2, params, NULL, "delete versions", errstr, size);
    return tc_pg_exec(TC_PG(s),
                      "UPDATE @S.subject_versions SET deleted = true WHERE subject = $1"
                      " AND ($2::integer = 0 OR version = $2::integer)",
                      2, params, NULL, "soft-delete versions", errstr, size);
}

static tc_err tc_pg_soft_delete(tc_reg_store *s, const char *subject, int version, char *errstr,
                                size_t size)
{
    return tc_pg_delete(s, subject, version, 0, errstr, size);
}

static tc_err tc_pg_hard_delete(tc_reg_store *s, const char *subject, int version, char *errstr,
                                size_t size)
{
    return tc_pg_delete(s, subject, version, 1, errstr, size);
}

static tc_err tc_pg_subjects(tc_reg_store *s, char ***names, int **live, size_t *n, char *errstr,
                             size_t size)
{
    PGresult *res;
    char **out;
    int *lv, rows;
    tc_err err = tc_pg_exec(TC_PG(s),
                            "SELECT subject, bool_or(NOT deleted) FROM @S.subject_versions"
                            " GROUP BY subject ORDER BY subject COLLATE \"C\"",
                            0, NULL, &res, "list subjects", errstr, size);

    *names = NULL;
    *live = NULL;
    *n = 0;
    if (err != TC_OK)
        return err;
    rows = PQntuples(res);
    out = calloc(rows ? (size_t)rows : 1, sizeof(*out));
    lv = calloc(rows ? (size_t)rows : 1, sizeof(*lv));
    if (!out || !lv) {
        free(out);
        free(lv);
        PQclear(res);
        return tc_err_set(TC_ERR_NOMEM, errstr, size, "out of memory");
    }
    for (int i = 0; i < rows; i++) {
        out[i] = strdup(PQgetvalue(res, i, 0));
        lv[i] = PQgetvalue(res, i, 1)[0] == 't';
        if (!out[i]) {
            tc_reg_names_free(out, (size_t)i);
            free(lv);
            PQclear(res);
            return tc_err_set(TC_ERR_NOMEM, errstr, size, "out of memory");
        }
    }
    PQclear(res);
    *names = out;
    *live = lv;
    *n = (size_t)rows;
    return TC_OK;
}

static tc_err tc_pg_refs(tc_reg_store *s, int id, tc_reg_ref **out, size_t *n, char *errstr,
                         size_t size)
{
    char idt[16];
    const char *params[1] = {idt};
    PGresult *res;
    tc_reg_ref *r;
    int rows;
    tc_err err;

    *out = NULL;
    *n = 0;
    snprintf(idt, sizeof(idt), "%d", id);
    err = tc_pg_exec(TC_PG(s),
                     "SELECT subject, version, deleted FROM @S.subject_versions"
                     " WHERE schema_id = $1 ORDER BY subject COLLATE \"C\", version",
                     1, params, &res, "read schema versions", errstr, size);
    if (err != TC_OK)
        return err;
    rows = PQntuples(res);
    r = calloc(rows ? (size_t)rows : 1, sizeof(*r));
    if (!r) {
        PQclear(res);
        return tc_err_set(TC_ERR_NOMEM, errstr, size, "out of memory");
    }
    for (int i = 0; i < rows; i++) {
        r[i].subject = strdup(PQgetvalue(res, i, 0));
        r[i].version = atoi(PQgetvalue(res, i, 1));
        r[i].deleted = PQgetvalue(res, i, 2)[0] == 't';
        if (!r[i].subject) {
            tc_reg_refs_free(r, (size_t)i);
            PQclear(res);
            return tc_err_set(TC_ERR_NOMEM, errstr, size, "out of memory");
        }
    }
    PQclear(res);
    *out = r;
    *n = (size_t)rows;
    return TC_OK;
}

static tc_err tc_pg_referrers(tc_reg_store *s, const char *subject, int version, int **ids,
                              size_t *n, char *errstr, size_t size)
{
    char v[16];
    const char *params[2] = {subject, v};
    PGresult *res;
    int rows, *out;
    tc_err err;

    *ids = NULL;
    *n = 0;
    snprintf(v, sizeof(v), "%d", version);
    err = tc_pg_exec(TC_PG(s),
                     "SELECT id FROM @S.schemas s WHERE refs @> jsonb_build_array("
                     "jsonb_build_object('subject', $1::text, 'version', $2::integer))"
                     " AND EXISTS (SELECT 1 FROM @S.subject_versions v WHERE v.schema_id = s.id)"
                     " ORDER BY id",
                     2, params, &res, "read referrers", errstr, size);
    if (err != TC_OK)
        return err;
    rows = PQntuples(res);
    out = malloc((rows ? (size_t)rows : 1) * sizeof(*out));
    if (!out) {
        PQclear(res);
        return tc_err_set(TC_ERR_NOMEM, errstr, size, "out of memory");
    }
    for (int i = 0; i < rows; i++)
        out[i] = atoi(PQgetvalue(res, i, 0));
    PQclear(res);
    *ids = out;
    *n = (size_t)rows;
    return TC_OK;
}

static tc_err tc_pg_get_mode(tc_reg_store *s, const char *subject, int *mode, char *errstr,
                             size_t size)
{
    const char *params[1] = {subject};
    PGresult *res;
    tc_err err = tc_pg_exec(TC_PG(s), "SELECT mode FROM @S.modes WHERE subject = $1", 1, params,
                            &res, "read mode", errstr, size);

    if (err != TC_OK)
        return err;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return TC_ERR_NOT_FOUND;
    }
    *mode = tc_reg_mode_parse(PQgetvalue(res, 0, 0));
    if (*mode < 0)
        err = tc_err_set(TC_ERR_DB, errstr, size, "unknown mode \"%s\" stored for \"%s\"",
                         PQgetvalue(res, 0, 0), subject);
    PQclear(res);
    return err;
}

static tc_err tc_pg_set_mode(tc_reg_store *s, const char *subject, int mode, char *errstr,
                             size_t size)
{
    const char *params[2] = {subject, tc_reg_mode_name(mode)};

    return tc_pg_exec(
        TC_PG(s),
        "INSERT INTO @S.modes (subject, mode) VALUES ($1, $2)"
        " ON CONFLICT (subject) DO UPDATE SET mode = EXCLUDED.mode, updated_at = now()",
        2, params, NULL, "write mode", errstr, size);
}

static tc_err tc_pg_delete_mode(tc_reg_store *s, const char *subject, char *errstr, size_t size)
{
    const char *params[1] = {subject};
    PGresult *res;
    tc_err err = tc_pg_exec(TC_PG(s), "DELETE FROM @S.modes WHERE subject = $1 RETURNING 1", 1,
                            params, &res, "delete mode", errstr, size);

    if (err != TC_OK)
        return err;
    err = PQntuples(res) ? TC_OK : TC_ERR_NOT_FOUND;
    PQclear(res);
    return err;
}

/* Levels are stored by name; the numbering is the registry's. */
static const char *const tc_pg_level_names[] = {
    "NONE", "BACKWARD",       "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
    "FULL", "FULL_TRANSITIVE"};
#define TC_PG_NLEVELS (int)(sizeof(tc_pg_level_names) / sizeof(tc_pg_level_names[0]))

static tc_err tc_pg_get_config(tc_reg_store *s, const char *subject, int *level, char *errstr,
                               size_t size)
{
    const char *params[1] = {subject};
    PGresult *res;
    tc_err err = tc_pg_exec(TC_PG(s), "SELECT compatibility FROM @S.configs WHERE subject = $1", 1,
                            params, &res, "read config", errstr, size);

    if (err != TC_OK)
        return err;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return TC_ERR_NOT_FOUND;
    }
    for (int i = 0; i < TC_PG_NLEVELS; i++) {
        if (!strcmp(PQgetvalue(res, 0, 0), tc_pg_level_names[i])) {
            *level = i;
            PQclear(res);
            return TC_OK;
        }
    }
    err = tc_err_set(TC_ERR_DB, errstr, size, "unknown compatibility \"%s\" stored for \"%s\"",
                     PQgetvalue(res, 0, 0), subject);
    PQclear(res);
    return err;
}

static tc_err tc_pg_set_config(tc_reg_store *s, const char *subject, int level, char *errstr,
                               size_t size)
{
    const char *params[2] = {subject, NULL};

    if (level < 0 || level >= TC_PG_NLEVELS)
        return tc_err_set(TC_ERR_INVALID, errstr, size, "invalid level %d", level);
    params[1] = tc_pg_level_names[level];
    return tc_pg_exec(TC_PG(s),
                      "INSERT INTO @S.configs (subject, compatibility) VALUES ($1, $2)"
                      " ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility,"
                      " updated_at = now()",
                      2, params, NULL, "write config", errstr, size);
}

static tc_err tc_pg_delete_config(tc_reg_store *s, const char *subject, char *errstr, size_t size)
{
    const char *params[1] = {subject};
    PGresult *res;
    tc_err err = tc_pg_exec(TC_PG(s), "DELETE FROM @S.configs WHERE subject = $1 RETURNING 1", 1,
                            params, &res, "delete config", errstr, size);

    if (err != TC_OK)
        return err;
    err = PQntuples(res) ? TC_OK : TC_ERR_NOT_FOUND;
    PQclear(res);
    return err;
}

static void tc_pg_destroy(tc_reg_store *s)
{
    tc_pg_store *p = TC_PG(s);

    if (p->conn)
        PQfinish(p->conn);
    free(p->dsn);
    free(p);
}

static const tc_reg_store_ops tc_pg_ops = {
    .begin = tc_pg_begin,
    .end = tc_pg_end,
    .versions = tc_pg_versions,
    .schema = tc_pg_schema,
    .find = tc_pg_find,
    .insert_schema = tc_pg_insert_schema,
    .referrers = tc_pg_referrers,
    .insert_version = tc_pg_insert_version,
    .soft_delete = tc_pg_soft_delete,
    .hard_delete = tc_pg_hard_delete,
    .subjects = tc_pg_subjects,
    .refs = tc_pg_refs,
    .get_config = tc_pg_get_config,
    .set_config = tc_pg_set_config,
    .delete_config = tc_pg_delete_config,
    .get_mode = tc_pg_get_mode,
    .set_mode = tc_pg_set_mode,
    .delete_mode = tc_pg_delete_mode,
    .destroy = tc_pg_destroy,
};

static tc_pg_store *tc_pg_new(const char *dsn, const char *pg_schema, char *errstr, size_t size)
{
    tc_pg_store *p;

    if (!pg_schema)
        pg_schema = TC_REGISTRY_PG_SCHEMA;
    if (!tc_pg_valid_schema(pg_schema)) {
        tc_err_set(TC_ERR_CONFIG, errstr, size,
                   "invalid registry schema name \"%s\" (lower-case letters, digits and _, at "
                   "most 63)",
                   pg_schema);
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (!p || !(p->dsn = strdup(dsn ? dsn : ""))) {
        free(p);
        tc_err_set(TC_ERR_NOMEM, errstr, size, "out of memory");
        return NULL;
    }
    p->base.ops = &tc_pg_ops;
    snprintf(p->schema, sizeof(p->schema), "%s", pg_schema);
    return p;
}

tc_reg_store *tc_reg_store_pg_new(const char *dsn, const char *pg_schema, char *errstr,
                                  size_t errstr_size)
{
    tc_pg_store *p = tc_pg_new(dsn, pg_schema, errstr, errstr_size);

    if (!p)
        return NULL;
    if (tc_pg_connect(p, errstr, errstr_size) != TC_OK ||
        tc_pg_migrate(p, errstr, errstr_size) != TC_OK) {
        tc_pg_destroy(&p->base);
        return NULL;
    }
    return &p->base;
}

tc_err tc_registry_migrate_schema(const char *dsn, const char *pg_schema, char *errstr,
                                  size_t errstr_size)
{
    tc_pg_store *p = tc_pg_new(dsn, pg_schema, errstr, errstr_size);
    tc_err err;

    if (!p)
        return TC_ERR_CONFIG;
    err = tc_pg_connect(p, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_pg_migrate(p, errstr, errstr_size);
    tc_pg_destroy(&p->base);
    return err;
}

tc_err tc_registry_migrate(const char *dsn, char *errstr, size_t errstr_size)
{
    return tc_registry_migrate_schema(dsn, TC_REGISTRY_PG_SCHEMA, errstr, errstr_size);
}
