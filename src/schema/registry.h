/*
 * registry.h -- a Confluent-compatible schema registry (Avro), served by Thermocline.
 *
 * Speaks the REST API of Confluent Schema Registry that serializers and tools use: subjects and
 * versions, schemas by id, lookup, compatibility checks, global and per-subject compatibility
 * configuration, soft and permanent deletes, with Confluent's error codes (see docs/registry.md).
 * Schemas are Avro only, with references, metadata and rule sets. Identity is the schema's full
 * text as Confluent identifies it (registry_identity.h: every attribute counts, whitespace and the
 * order of JSON members do not), so the same schema gets the same id under every subject; the
 * text first registered is kept and returned. Modes, Accept negotiation and the schema listing are
 * served too (registry_ext.c).
 *
 * Storage is a tc_reg_store: PostgreSQL in production (durable, safe with several registry
 * processes on one database), memory for tests and fuzzing. The registry serialises its own
 * requests with a mutex; the store's locks serialise processes.
 */
#ifndef TC_SCHEMA_REGISTRY_H
#define TC_SCHEMA_REGISTRY_H

#include <stddef.h>

#include "api/http.h"
#include "core/error.h"

/* PostgreSQL schema that holds the registry's tables unless told otherwise. */
#define TC_REGISTRY_PG_SCHEMA "registry"
/* Default listen address of `thermocline registry`. */
#define TC_REGISTRY_LISTEN_DEFAULT "127.0.0.1:8081"
/* Largest request body the registry accepts (a schema is a JSON string inside it). */
#define TC_REGISTRY_BODY_MAX (2 * 1024 * 1024)
/* Subject names longer than this are refused. */
#define TC_REGISTRY_SUBJECT_MAX 1024
/* Content type of every registry response. */
#define TC_REGISTRY_CT "application/vnd.schemaregistry.v1+json"

typedef struct tc_reg_store tc_reg_store;
typedef struct tc_registry tc_registry;

/* An empty in-memory store. NULL on OOM. */
tc_reg_store *tc_reg_store_mem_new(void);
/* Fault injection for tests: the nth store call from now on (1 = the next) fails with TC_ERR_DB;
 * 0 turns it off. */
void tc_reg_store_mem_fail_at(tc_reg_store *s, unsigned long nth);

/* A PostgreSQL store on dsn using the tables in pg_schema (NULL = TC_REGISTRY_PG_SCHEMA), which it
 * creates if needed. NULL with errstr set when the database is unreachable or refuses. */
tc_reg_store *tc_reg_store_pg_new(const char *dsn, const char *pg_schema, char *errstr,
                                  size_t errstr_size);

void tc_reg_store_destroy(tc_reg_store *s);

/* Create the registry's tables in pg_schema (NULL = default) if they do not exist: idempotent and
 * safe to run concurrently (transaction-level advisory lock). */
tc_err tc_registry_migrate_schema(const char *dsn, const char *pg_schema, char *errstr,
                                  size_t errstr_size);
/* The same in the default schema, for `thermocline migrate`. */
tc_err tc_registry_migrate(const char *dsn, char *errstr, size_t errstr_size);

/* A registry over store (taken over: freed by tc_registry_destroy, also on failure). */
tc_registry *tc_registry_new(tc_reg_store *store, char *errstr, size_t errstr_size);
void tc_registry_destroy(tc_registry *r);

/* Add the registry's routes to an HTTP server (before it starts). */
tc_err tc_registry_mount(tc_registry *r, tc_http_server *s);

/* Options for a server meant to serve the registry (content type of errors, body cap). */
void tc_registry_http_options(tc_http_options *opt);

#endif
