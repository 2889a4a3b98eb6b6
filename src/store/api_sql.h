/*
 * api_sql.h -- the curated SQL interface (schema api), its roles and the audit log, as a migration.
 *
 * tc_api_migrate creates or brings up to date, idempotently and in one transaction under an
 * advisory lock of its own (concurrent `migrate`s all succeed):
 *   - the group roles (NOLOGIN, cluster-wide): thermocline_viewer < thermocline_analyst <
 *     thermocline_operator < thermocline_admin (each a member of the one before, so it has its
 *     rights), thermocline_ingest (the pipeline: writes the store's tables, reads nothing of the
 *     api), and thermocline_authenticator (NOINHERIT; the login role of a server -- REST, GraphQL
 *     -- is made a member, and may then SET ROLE to any of the four and pass the caller's JWT
 *     claims in request.jwt.claims, the PostgREST convention);
 *   - schema api (api.schema): security_barrier views and SQL functions over the store's tables,
 *     with the row-level security (a device's site is its api.tenant_tag tag in latest_state) and
 *     the masking of personal columns (api.personal_columns) inside them, so BI tools, REST,
 *     GraphQL and psql as one of the roles see the same rows and the same masked values. The
 *     store's tables stay private to their owner and thermocline_ingest;
 *   - schema audit (audit.schema): events, append-only for every role (privileges revoked, and
 *     triggers that refuse UPDATE, DELETE and TRUNCATE even to the owner), each row chained to the
 *     previous one by sha256; record() appends, verify() finds the first broken row; triggers on
 *     the schema registry's tables (when they exist) record every change to subjects, versions,
 *     compatibility and modes.
 * The contract (names, columns, arguments) is versioned: api.version() answers TC_API_VERSION; a
 * change that is not an addition is a new major version (docs/api.md).
 *
 * Needs the store's and the quality monitor's tables (tc_store_migrate, tc_quality_migrate) in
 * the store's schema first.
 */
#ifndef TC_STORE_API_SQL_H
#define TC_STORE_API_SQL_H

#include <stddef.h>

#include "core/error.h"
#include "store/store.h"

/* The version of the api schema's contract, what api.version() returns. */
#define TC_API_VERSION "1.0"
/* Longest schema name or tag key accepted (PostgreSQL's identifiers are at most 63 bytes). */
#define TC_API_NAME_MAX 63

typedef struct tc_api_sql_options {
    const char *store_schema;     /* postgres.schema, unquoted */
    const char *api_schema;       /* api.schema, unquoted */
    const char *audit_schema;     /* audit.schema, unquoted */
    const char *registry_schema;  /* the schema registry's tables, whose changes are audited */
    const char *tenant_tag;       /* api.tenant_tag */
    const char *personal_columns; /* api.personal_columns: comma-separated fixed metrics */
    int personal_digits;          /* api.personal_digits, 0..6 */
    int viewer_hidden;            /* api.personal_viewer = hide: NULL instead of rounded */
    int timescaledb;              /* the store's mode (no rollup tables to grant) */
} tc_api_sql_options;

/* Check the options (names, personal columns) without touching a database; errstr names the
 * setting at fault. */
tc_err tc_api_sql_check(const tc_api_sql_options *o, char *errstr, size_t errstr_size);

/* The whole migration's SQL for o, as one string the caller frees; NULL (errstr set) when the
 * options are wrong or memory runs out. Names are checked, so quoting them needs no connection.
 * Exposed for the unit tests. */
char *tc_api_sql_build(const tc_api_sql_options *o, char *errstr, size_t errstr_size);

/* Run the migration on the store's connection (after tc_store_migrate). */
tc_err tc_api_migrate(tc_store *s, const tc_api_sql_options *o, char *errstr, size_t errstr_size);

#endif
