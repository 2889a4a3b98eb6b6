/*
 * registry_identity.h -- what makes two registered schemas "the same", and schema references
 * resolved into one self-contained text.
 *
 * Identity follows Confluent's registry, which identifies a schema by its canonical string: the
 * schema written back by Avro's Schema.toString, keeping every attribute (logicalType, precision
 * and scale, default, doc, aliases, custom properties), so two schemas that differ in any of them
 * get distinct ids. What that writing drops does not count: whitespace, the order of the members
 * of JSON objects, how a namespace is spelled (on the type, inherited, or in a dotted name), a
 * primitive written as {"type": "int"}, and a field's "order": "ascending" (the default). The
 * identity form is exactly that: compact JSON, members of every object sorted by name (arrays --
 * fields, symbols, union branches -- keep their order, which matters in Avro), named types as
 * Avro writes them (short name, "namespace" when it differs from the enclosing one, references
 * relative to the enclosing namespace), {"type": primitive} alone as the primitive, no default
 * order.
 *
 * With normalize (Confluent's `normalize=true`) names are written in full instead ("name" is the
 * full name, no "namespace", references by full name): the form a registration stores as its text
 * then, the same wherever a type is written.
 *
 * References (Confluent's schema references, for Avro a named type defined in another registered
 * schema) are part of the identity too: the same text with other references is another schema.
 * tc_reg_schema_inline writes the text with each referenced type inlined at its first use (full
 * name, so it keeps its namespace wherever it lands) -- the "resolved" form that a plain Avro
 * parser, the compatibility checks and the pipeline's decoders read.
 */
#ifndef TC_SCHEMA_REGISTRY_IDENTITY_H
#define TC_SCHEMA_REGISTRY_IDENTITY_H

#include <stddef.h>

#include "core/error.h"
#include "core/json.h"

/* A reference resolved to the (already self-contained) schema it names. */
typedef struct tc_reg_named {
    const char *name;      /* the reference's name: the full name of the type it provides */
    const tc_json *schema; /* the referenced schema, resolved (owned by the caller) */
} tc_reg_named;

/* Any JSON value written compactly with the members of every object sorted by name. */
void tc_reg_json_sorted(tc_jbuf *b, const tc_json *v);

/* The identity form of an Avro schema document (see above). Malloc'ed, NUL-terminated, *len set
 * when len is not NULL; NULL when out of memory. */
char *tc_reg_schema_form(const tc_json *schema, int normalize, size_t *len);

/* The identity of a registration: the schema's form, then the references, metadata and rule set
 * when present (each NULL or absent otherwise), as sorted compact JSON on lines of their own (a
 * compact JSON text never holds a newline, so the parts cannot run into each other). Malloc'ed;
 * NULL when out of memory. */
char *tc_reg_identity(const tc_json *schema, int normalize, const tc_json *references,
                      const tc_json *metadata, const tc_json *rule_set);

/* The identity of a stored schema text alone (what schemas registered before references,
 * metadata and rules were stored have). NULL when the text is not JSON or memory is short. */
char *tc_reg_identity_of_text(const char *text);

/* The schema with every type named by refs[0..n) and not defined in it inlined at its first use.
 * Malloc'ed; NULL with errstr set when out of memory or too deep. */
char *tc_reg_schema_inline(const tc_json *schema, const tc_reg_named *refs, size_t n, size_t *len,
                           char *errstr, size_t errstr_size);

#endif
