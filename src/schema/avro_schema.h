/*
 * avro_schema.h -- Avro schemas for the schema registry: parsing, Parsing Canonical Form, and
 * compatibility by Avro's schema-resolution rules.
 *
 * A schema text is accepted when two independent parsers accept it: libavro
 * (avro_schema_from_json_length), and our own model built over the strict JSON DOM (core/json.h),
 * which also checks what libavro does not: names and namespaces, no redefinition of a name, unique
 * field names and enum symbols, union rules, and that every default matches its type. The model is
 * what everything else works on, because libavro's schema objects do not expose defaults or
 * aliases, and both matter for resolution.
 *
 * Parsing Canonical Form (the registry's identity is another, fuller form: registry_identity.h;
 * this one is kept because it is what "the same schema for reading" means): two schemas read alike
 * when their Parsing Canonical Forms (Avro specification,
 * "Parsing Canonical Form for Schemas") are byte-equal: primitives in short form, full names,
 * only the attributes that matter for parsing (name, type, fields, symbols, items, values, size) in
 * that order, a named type written in full only the first time, no whitespace. Documentation,
 * aliases, defaults, field order attributes and logical types are not part of it.
 *
 * Compatibility: tc_avro_can_read(reader, writer) is true when data written with writer can be read
 * with reader under Avro's resolution rules, as Confluent's registry (and Avro's Java
 * SchemaCompatibility) apply them:
 *   - same primitive; promotions int->long|float|double, long->float|double, float->double,
 *     string<->bytes;
 *   - records, enums and fixed match by unqualified name (or a reader alias); fixed sizes equal;
 *   - record fields by name (or a reader field alias); a reader field missing from the writer needs
 *     a default; a writer field missing from the reader is skipped;
 *   - every writer enum symbol must be a reader symbol, unless the reader enum has a default;
 *   - arrays by items, maps by values;
 *   - a writer union: every branch must be readable; a reader union (writer not a union): some
 *     branch must read the writer.
 * Recursive schemas are handled (a pair of named types being checked is assumed compatible while
 * its own check is in progress), and the work is bounded so a hostile pair of schemas cannot take
 * unbounded time or stack.
 */
#ifndef TC_SCHEMA_AVRO_SCHEMA_H
#define TC_SCHEMA_AVRO_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/json.h"

/* Caps on one schema text. */
#define TC_AVRO_SCHEMA_MAX_BYTES (1024 * 1024)
#define TC_AVRO_SCHEMA_MAX_DEPTH 256
#define TC_AVRO_SCHEMA_MAX_NODES 200000
/* Longest name or namespace we accept. */
#define TC_AVRO_NAME_MAX 1024

typedef enum tc_avro_kind {
    TC_AVRO_NULL,
    TC_AVRO_BOOLEAN,
    TC_AVRO_INT,
    TC_AVRO_LONG,
    TC_AVRO_FLOAT,
    TC_AVRO_DOUBLE,
    TC_AVRO_BYTES,
    TC_AVRO_STRING,
    TC_AVRO_RECORD,
    TC_AVRO_ENUM,
    TC_AVRO_ARRAY,
    TC_AVRO_MAP,
    TC_AVRO_UNION,
    TC_AVRO_FIXED
} tc_avro_kind;

typedef struct tc_avro_node tc_avro_node;

typedef struct tc_avro_field {
    const char *name;
    const tc_avro_node *type;
    const tc_json *def; /* the default value, or NULL when the field has none */
    const char *const *aliases;
    size_t naliases;
} tc_avro_field;

struct tc_avro_node {
    tc_avro_kind kind;
    unsigned id;                /* index of the node in its schema (0..) */
    const char *fullname;       /* named types: "ns.Name" or "Name" */
    const char *name;           /* named types: the unqualified part of fullname */
    const char *const *aliases; /* named types: full names */
    size_t naliases;
    const tc_avro_field *fields; /* record */
    size_t nfields;
    const char *const *symbols; /* enum */
    size_t nsymbols;
    const char *enum_default;            /* enum: default symbol or NULL */
    int64_t size;                        /* fixed */
    const tc_avro_node *items;           /* array items, map values */
    const tc_avro_node *const *branches; /* union */
    size_t nbranches;
};

typedef struct tc_avro_schema tc_avro_schema;

/* Parse and validate a schema text. NULL with a message in errstr when it is not a valid Avro
 * schema (*err = TC_ERR_INVALID) or out of memory (TC_ERR_NOMEM). */
tc_avro_schema *tc_avro_schema_parse(const char *text, size_t len, tc_err *err, char *errstr,
                                     size_t errstr_size);
void tc_avro_schema_free(tc_avro_schema *s);

const tc_avro_node *tc_avro_schema_root(const tc_avro_schema *s);

/* The Parsing Canonical Form (NUL-terminated, owned by s). */
const char *tc_avro_schema_canonical(const tc_avro_schema *s, size_t *len);

/* Short type name of a node ("record", "int", ...). */
const char *tc_avro_kind_name(tc_avro_kind k);

/* 1 when data written with writer can be read with reader, 0 when not (why gets the first reason,
 * with the location: "/fields/temperature/type: ..."). */
int tc_avro_can_read(const tc_avro_schema *reader, const tc_avro_schema *writer, char *why,
                     size_t why_size);

typedef enum tc_compat_level {
    TC_COMPAT_NONE,
    TC_COMPAT_BACKWARD,
    TC_COMPAT_BACKWARD_TRANSITIVE,
    TC_COMPAT_FORWARD,
    TC_COMPAT_FORWARD_TRANSITIVE,
    TC_COMPAT_FULL,
    TC_COMPAT_FULL_TRANSITIVE,
    TC_COMPAT__COUNT
} tc_compat_level;

#define TC_COMPAT_DEFAULT TC_COMPAT_BACKWARD

/* "BACKWARD", ... */
const char *tc_compat_level_name(tc_compat_level level);
/* Parse a level name (case-insensitive); -1 when unknown. */
int tc_compat_level_parse(const char *s, tc_compat_level *out);

/* Receives one message per failed check. */
typedef void (*tc_avro_msg_fn)(void *ctx, const char *msg);

/*
 * Is candidate compatible with the earlier schemas prev[0..n) (oldest first, so prev[n-1] is the
 * latest) under level? BACKWARD: the candidate reads the latest; FORWARD: the latest reads the
 * candidate; FULL: both; the _TRANSITIVE levels check every earlier schema instead of the latest
 * only; NONE: always. Returns 1 or 0; each failed check is reported to fn (may be NULL) with
 * versions[i] naming prev[i] (versions may be NULL).
 */
int tc_avro_compatible(tc_compat_level level, const tc_avro_schema *candidate,
                       const tc_avro_schema *const *prev, const int *versions, size_t n,
                       tc_avro_msg_fn fn, void *ctx);

#endif
