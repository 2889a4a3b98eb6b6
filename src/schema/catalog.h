/*
 * catalog.h -- the registered versions of the telemetry subject, and which one a reading is.
 *
 * The registry holds the versions of one subject (by default "<kafka.topic>-value", Confluent's
 * TopicNameStrategy). The catalog keeps, for each version, its schema id and its top-level fields
 * with their defaults, and answers the two questions the pipeline asks per reading:
 *
 *   - JSON readings carry no schema id. Their version is detected from the fields present: among
 *     the versions that name every field of the reading, the one that misses the fewest of its own
 *     fields (ties: the newest); when no version names them all, the one that names most of them
 *     (ties: fewest missing, then the newest). A reading of version 1 is version 1 even after a
 *     version 2 with an extra optional field exists, and a reading carrying that field is version
 *     2. A JSON null counts as absent: the decoder stores both as SQL NULL.
 *   - Avro readings name their writer schema by id; the catalog maps the id to its version (when
 *     the writer schema is a version of the subject) and the reader schema is the newest version:
 *     fields of the reader the writer lacks take the reader's defaults, as Avro's resolution rules
 *     say.
 *
 * Defaults that are null change nothing (a missing field is NULL already), so the catalog keeps
 * only the non-null ones, as JSON text and, when numeric, as a double.
 *
 * Detection is memoized per combination of fixed fields present (a 9-bit mask), so the common
 * reading -- schema-v1 fields only, no unknown fields -- costs one table lookup. Versions are
 * immutable in the registry; a refresh fetches only the versions it has not seen, and drops the
 * ones the registry no longer lists (deleted).
 *
 * Not thread-safe: one catalog per pipeline.
 */
#ifndef TC_SCHEMA_CATALOG_H
#define TC_SCHEMA_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "schema/registry_client.h"

/* Bits of the fields every telemetry version starts from: device_id, timestamp, the six metrics of
 * tc_metric (in that order, from bit 2), tags. */
#define TC_CATALOG_F_DEVICE    0
#define TC_CATALOG_F_TIMESTAMP 1
#define TC_CATALOG_F_METRIC0   2
#define TC_CATALOG_F_TAGS      8
#define TC_CATALOG_FIXED_COUNT 9

/* Versions of one subject the catalog holds; a registry keeps far fewer in practice, and each one
 * costs a few hundred bytes. */
#define TC_CATALOG_VERSIONS_MAX 1000
/* Top-level fields per version (the reading decoders keep at most 64 unknown ones anyway). */
#define TC_CATALOG_FIELDS_MAX 256

typedef struct tc_catalog_field {
    char *name;
    int fixed;          /* TC_CATALOG_F_* bit, or -1 for a field beyond the fixed ones */
    int numeric;        /* its type admits a number (int, long, float, double, or a union of) */
    char *default_json; /* the non-null default as compact JSON text, or NULL */
    int default_is_num; /* ... which is a number, namely default_num */
    double default_num;
} tc_catalog_field;

typedef struct tc_catalog_version {
    int32_t version;
    int32_t id;
    uint32_t fixed_mask; /* TC_CATALOG_F_* bits of the fixed fields this version names */
    size_t nfields;
    tc_catalog_field *fields;
} tc_catalog_version;

typedef struct tc_catalog tc_catalog;

/* A catalog of subject over the registry registry names (NULL, or a NULL or "" URL, for a catalog
 * filled only by tc_catalog_add, as tests do; timeout_ms > 0 overrides registry's). NULL with
 * errstr set when a registry setting is invalid or memory is short. */
tc_catalog *tc_catalog_new(const tc_registry_client_options *registry, const char *subject,
                           int timeout_ms, char *errstr, size_t errstr_size);
void tc_catalog_destroy(tc_catalog *c);

/*
 * Bring the catalog up to date with the registry: list the subject's versions, fetch the new ones.
 * *changed (may be NULL) is set when versions were added or dropped. A subject the registry does
 * not know is an empty catalog, not an error. Errors: TC_ERR_IO / TC_ERR_TIMEOUT (registry
 * unreachable or answering 5xx: retriable, the catalog stays as it was), TC_ERR_CONFIG (any other
 * refusal), TC_ERR_NOMEM.
 */
tc_err tc_catalog_refresh(tc_catalog *c, int *changed, char *errstr, size_t errstr_size);

/* Nonzero once a refresh has succeeded (or a version was added by hand). */
int tc_catalog_loaded(const tc_catalog *c);

/*
 * Add one version from its Avro schema text (what the registry serves). TC_ERR_INVALID when the
 * schema is not a JSON record schema; an existing version of that number is replaced.
 */
tc_err tc_catalog_add(tc_catalog *c, int32_t version, int32_t id, const char *schema_json,
                      size_t len, char *errstr, size_t errstr_size);

size_t tc_catalog_count(const tc_catalog *c);
/* The newest version, or NULL when the catalog is empty. */
const tc_catalog_version *tc_catalog_latest(const tc_catalog *c);
/* The version whose schema has this id, or NULL. */
const tc_catalog_version *tc_catalog_by_id(const tc_catalog *c, int32_t id);

/*
 * The version of a JSON reading whose fixed fields present are fixed_mask and whose other
 * top-level fields are keys[0..nkeys) (key_lens alike). NULL when the catalog is empty.
 */
const tc_catalog_version *tc_catalog_detect(tc_catalog *c, uint32_t fixed_mask,
                                            const char *const *keys, const size_t *key_lens,
                                            size_t nkeys);

/* Nonzero when version v has a field called name. */
int tc_catalog_has_field(const tc_catalog_version *v, const char *name, size_t len);

#endif
