/*
 * registry_store.h -- the schema registry's storage, behind a small vtable.
 *
 * The registry logic (registry.c) runs every request as one unit of work: begin, a few reads and
 * writes, end (commit or roll back). Production stores in PostgreSQL (registry_store_pg.c: one
 * transaction per unit, the subject's advisory lock held for writes, so several registry processes
 * can share one database); tests and fuzz targets use the in-memory store (registry_store_mem.c),
 * which snapshots its state at a write begin so a roll back really undoes.
 *
 * Every function returns TC_OK, TC_ERR_NOT_FOUND where it says so, or a store error (TC_ERR_DB,
 * TC_ERR_DB_CONN, TC_ERR_NOMEM) with a message in errstr. Lists are malloc'ed; free them with
 * tc_reg_*_free.
 */
#ifndef TC_SCHEMA_REGISTRY_STORE_H
#define TC_SCHEMA_REGISTRY_STORE_H

#include <stddef.h>

#include "core/error.h"
#include "schema/registry.h"

typedef struct tc_reg_version {
    int version;
    int schema_id;
    int deleted;
} tc_reg_version;

typedef struct tc_reg_ref {
    char *subject;
    int version;
    int deleted;
} tc_reg_ref;

/* A stored schema: the text first registered under its id, and what else makes its identity.
 * Every member is malloc'ed (free with tc_reg_schema_text_free); the JSON members are NULL when
 * the registration had none. */
typedef struct tc_reg_schema_text {
    char *original;   /* the schema text */
    char *references; /* JSON array of {"name", "subject", "version"}, or NULL */
    char *metadata;   /* JSON object (Confluent's data-contract metadata), or NULL */
    char *rule_set;   /* JSON object (Confluent's ruleSet), or NULL */
} tc_reg_schema_text;

/* Schema modes (Confluent's /mode): what a subject, or the registry, accepts. */
typedef enum tc_reg_mode {
    TC_REG_MODE_READWRITE,
    TC_REG_MODE_READONLY,
    TC_REG_MODE_READONLY_OVERRIDE,
    TC_REG_MODE__COUNT
} tc_reg_mode;

typedef struct tc_reg_store_ops {
    /* Start a unit of work. write: it may modify; subject (NULL = none): serialise with every
     * other writer of that subject until end. */
    tc_err (*begin)(tc_reg_store *s, const char *subject, int write, char *errstr, size_t size);
    /* Commit (commit != 0) or roll back. Always ends the unit, even when it fails. */
    tc_err (*end)(tc_reg_store *s, int commit, char *errstr, size_t size);
    /* Every version of subject (deleted ones too), ascending. */
    tc_err (*versions)(tc_reg_store *s, const char *subject, tc_reg_version **out, size_t *n,
                       char *errstr, size_t size);
    /* The stored schema id (every member malloc'ed). TC_ERR_NOT_FOUND when no such id. *out is
     * zeroed first, so it can be freed whatever the answer. */
    tc_err (*schema)(tc_reg_store *s, int id, tc_reg_schema_text *out, char *errstr, size_t size);
    /* Id of the schema with this identity (registry_identity.h). TC_ERR_NOT_FOUND when none. */
    tc_err (*find)(tc_reg_store *s, const char *identity, int *id, char *errstr, size_t size);
    /* Store a new schema (or find the existing one with the same identity) and give its id. */
    tc_err (*insert_schema)(tc_reg_store *s, const char *identity, const tc_reg_schema_text *text,
                            int *id, char *errstr, size_t size);
    /* Ids of the schemas whose references name (subject, version) and that some version (live
     * or soft-deleted) still uses, ascending. */
    tc_err (*referrers)(tc_reg_store *s, const char *subject, int version, int **ids, size_t *n,
                        char *errstr, size_t size);
    tc_err (*insert_version)(tc_reg_store *s, const char *subject, int version, int schema_id,
                             char *errstr, size_t size);
    /* Mark one version (or every version, version 0) of subject soft-deleted. */
    tc_err (*soft_delete)(tc_reg_store *s, const char *subject, int version, char *errstr,
                          size_t size);
    /* Remove one version (or every version, version 0) of subject for good. */
    tc_err (*hard_delete)(tc_reg_store *s, const char *subject, int version, char *errstr,
                          size_t size);
    /* Every subject that has at least one version row, with whether it has a live (not deleted)
     * one, sorted by name. */
    tc_err (*subjects)(tc_reg_store *s, char ***names, int **live, size_t *n, char *errstr,
                       size_t size);
    /* Every (subject, version) that uses schema id, sorted. */
    tc_err (*refs)(tc_reg_store *s, int id, tc_reg_ref **out, size_t *n, char *errstr, size_t size);
    /* Compatibility level of subject ("" = the global one). TC_ERR_NOT_FOUND when none is set. */
    tc_err (*get_config)(tc_reg_store *s, const char *subject, int *level, char *errstr,
                         size_t size);
    tc_err (*set_config)(tc_reg_store *s, const char *subject, int level, char *errstr,
                         size_t size);
    /* TC_ERR_NOT_FOUND when none was set. */
    tc_err (*delete_config)(tc_reg_store *s, const char *subject, char *errstr, size_t size);
    /* Mode of subject ("" = the global one). TC_ERR_NOT_FOUND when none is set. */
    tc_err (*get_mode)(tc_reg_store *s, const char *subject, int *mode, char *errstr, size_t size);
    tc_err (*set_mode)(tc_reg_store *s, const char *subject, int mode, char *errstr, size_t size);
    /* TC_ERR_NOT_FOUND when none was set. */
    tc_err (*delete_mode)(tc_reg_store *s, const char *subject, char *errstr, size_t size);
    void (*destroy)(tc_reg_store *s);
} tc_reg_store_ops;

/* Every store implementation starts with this. */
struct tc_reg_store {
    const tc_reg_store_ops *ops;
};

void tc_reg_refs_free(tc_reg_ref *refs, size_t n);
void tc_reg_schema_text_free(tc_reg_schema_text *t);
/* "READWRITE", ... and back (case-insensitive); -1 when unknown. */
const char *tc_reg_mode_name(int mode);
int tc_reg_mode_parse(const char *s);
void tc_reg_names_free(char **names, size_t n);

#endif
