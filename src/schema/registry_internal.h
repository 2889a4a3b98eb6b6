/*
 * registry_internal.h -- what the registry's request handling shares between its files:
 * registry.c (subjects, versions, lookup, compatibility, configuration, deletes, routing) and
 * registry_ext.c (submitted schemas with references, metadata and rules; schema listing, modes,
 * referencedby). Not for use outside src/schema/registry*.c.
 */
#ifndef TC_SCHEMA_REGISTRY_INTERNAL_H
#define TC_SCHEMA_REGISTRY_INTERNAL_H

#include <pthread.h>
#include <stddef.h>

#include "api/http.h"
#include "core/json.h"
#include "schema/avro_schema.h"
#include "schema/registry.h"
#include "schema/registry_store.h"

/* Parsed schemas kept in memory; the cache is emptied when it reaches this size. */
#define TC_REG_CACHE_MAX 1024
/* Caps on a request body's JSON (the schema itself is a string in it, parsed separately). */
#define TC_REG_BODY_DEPTH 32
#define TC_REG_BODY_NODES 100000

/* Confluent's error codes. */
#define TC_REG_SUBJECT_NOT_FOUND           40401
#define TC_REG_VERSION_NOT_FOUND           40402
#define TC_REG_SCHEMA_NOT_FOUND            40403
#define TC_REG_SUBJECT_SOFT_DELETED        40404
#define TC_REG_SUBJECT_NOT_SOFT_DELETED    40405
#define TC_REG_VERSION_SOFT_DELETED        40406
#define TC_REG_VERSION_NOT_SOFT_DELETED    40407
#define TC_REG_SUBJECT_CONFIG_NOT_FOUND    40408
#define TC_REG_INCOMPATIBLE                409
#define TC_REG_INVALID_SCHEMA              42201
#define TC_REG_INVALID_VERSION             42202
#define TC_REG_INVALID_COMPATIBILITY_LEVEL 42203
#define TC_REG_INVALID_SUBJECT             42208
#define TC_REG_INVALID_MODE                42204
#define TC_REG_OPERATION_NOT_PERMITTED     42205
#define TC_REG_REFERENCE_EXISTS            42206
#define TC_REG_STORE_ERROR                 50001
/* How deep references may chain (a references b references c ...). */
#define TC_REG_REF_DEPTH_MAX 16
/* References one request may resolve, counting each time one is met again deeper in a chain:
 * bounds the work of a hostile graph (a schema that references another twice, which does the
 * same, ...) that would otherwise grow as 2^depth. */
#define TC_REG_REF_RESOLVE_MAX 4096

typedef struct tc_reg_cached {
    int id;
    tc_avro_schema *schema;
} tc_reg_cached;

/* What a route's handler needs: the registry and which operation the route is. */
typedef struct tc_reg_route_ctx {
    tc_registry *r;
    int op; /* tc_reg_op */
} tc_reg_route_ctx;

/* One context per route (see tc_reg_routes below). */
#define TC_REG_NROUTES 32

struct tc_registry {
    tc_reg_store *store;
    pthread_mutex_t lock;
    tc_reg_cached *cache;
    size_t ncache;
    tc_reg_route_ctx routes[TC_REG_NROUTES];
};

/* One request being handled. */
typedef struct tc_reg_req {
    tc_registry *r;
    const tc_http_request *http;
    tc_http_response *resp;
    char errstr[TC_ERRSTR_MAX];
    int in_unit;
    size_t refs_resolved; /* against TC_REG_REF_RESOLVE_MAX */
} tc_reg_req;

/* A schema as a request submitted it (registration, lookup, compatibility check). */
typedef struct tc_reg_submission {
    tc_json_doc *doc;        /* the request body */
    const char *text;        /* the schema text as sent (in doc) */
    const tc_json *refs;     /* "references", versions made numbers (NULL when none) */
    tc_json_doc *refs_doc;   /* where refs lives once resolved */
    const tc_json *metadata; /* "metadata" (NULL when absent or null) */
    const tc_json *rule_set; /* "ruleSet" (NULL when absent or null) */
    char *normalized;        /* with normalize=true: the normalised text registered, else NULL */
    char *identity;          /* registry_identity.h */
    tc_avro_schema *schema;  /* parsed, references resolved */
} tc_reg_submission;

__attribute__((format(printf, 4, 5))) void tc_reg_error(tc_reg_req *q, int status, int code,
                                                        const char *fmt, ...);
void tc_reg_store_error(tc_reg_req *q, tc_err err, const char *what);
/* Send the buffer as the response with status; b is consumed. */
void tc_reg_send(tc_reg_req *q, int status, tc_jbuf *b);
int tc_reg_begin(tc_reg_req *q, const char *subject, int write);
void tc_reg_end(tc_reg_req *q);
int tc_reg_subject_ok(tc_reg_req *q, const char *subject);
int tc_reg_parse_version(tc_reg_req *q, const char *s);
int tc_reg_parse_id(const char *s, int *id);
void tc_reg_page(tc_reg_req *q, long *offset, long *limit);
/* The parsed JSON object body (response set and NULL when it is not one). */
tc_json_doc *tc_reg_body(tc_reg_req *q);

typedef struct tc_reg_vlist {
    tc_reg_version *v;
    size_t n;
} tc_reg_vlist;

/* The subjects, for a listing: subjectPrefix and offset/limit read from the query. */
typedef struct tc_reg_subject_list {
    char prefix[TC_REGISTRY_SUBJECT_MAX + 1];
    size_t plen;
    long offset, limit;
    char **names; /* sorted */
    int *live;    /* whether names[i] has a live version */
    size_t n;
} tc_reg_subject_list;

/* Begin a read unit and load every subject. 0, or -1 with the response set. Free l either way;
 * the caller ends the unit. */
int tc_reg_subjects_load(tc_reg_req *q, tc_reg_subject_list *l);
void tc_reg_subjects_free(tc_reg_subject_list *l);

/* A setting per subject with a global one: the compatibility level, or the mode. */
typedef struct tc_reg_setting {
    int is_mode;              /* which store operations */
    const char *member;       /* its member in GET and DELETE answers */
    const char *put_member;   /* in PUT answers, and its name in messages */
    int default_value;        /* when neither the subject nor the registry has one */
    int not_found_code;       /* a subject without its own */
    const char *(*name)(int); /* the value as answered */
} tc_reg_setting;

extern const tc_reg_setting tc_reg_setting_level, tc_reg_setting_mode;

/* The subject's setting, else the global one, else the default. -1 with the response set. */
int tc_reg_setting_effective(tc_reg_req *q, const tc_reg_setting *set, const char *subject,
                             int *value);
void tc_reg_setting_get(tc_reg_req *q, const tc_reg_setting *set, const char *subject);
/* Set subject's setting ("" or NULL: the global one) and answer with it. */
void tc_reg_setting_put(tc_reg_req *q, const tc_reg_setting *set, const char *subject, int value);
void tc_reg_setting_delete(tc_reg_req *q, const tc_reg_setting *set, const char *subject);
void tc_reg_setting_send(tc_reg_req *q, const tc_reg_setting *set, const char *member, int value);

/* For /schemas/ids/{id}/...: begin a read unit, check the id exists and list the versions that
 * hold it. 0, or -1 with the response set; free *refs and end the unit either way. */
int tc_reg_id_versions(tc_reg_req *q, tc_reg_ref **refs, size_t *n);

/* For /subjects/{subject}/versions/{version}/...: check both parameters, begin a read unit and
 * find the version (soft-deleted ones too when include_deleted). NULL with the response set; free
 * vl->v and end the unit either way. */
const tc_reg_version *tc_reg_find_version(tc_reg_req *q, int include_deleted, tc_reg_vlist *vl);

int tc_reg_load_versions(tc_reg_req *q, const char *subject, tc_reg_vlist *vl);
const tc_reg_version *tc_reg_pick(const tc_reg_vlist *vl, int version, int include_deleted);

/* registry_ext.c */

/* Parse the schema a request submitted, resolving its references. 0 on success; -1 with the
 * response set (42201 and friends), or with the reason in verbose_msg when given and the schema
 * is invalid. Must be called inside a unit of work (references are read from the store). */
int tc_reg_submission_parse(tc_reg_req *q, tc_reg_submission *sub, char *verbose_msg,
                            size_t verbose_size);
void tc_reg_submission_free(tc_reg_submission *sub);
/* The stored schema id parsed with its references resolved, from the cache (owned by it). NULL
 * with the response set on failure. */
const tc_avro_schema *tc_reg_schema(tc_reg_req *q, int id);
/* The stored text of id with its references inlined (malloc'ed). NULL with the response set. */
char *tc_reg_resolved_text(tc_reg_req *q, const tc_reg_schema_text *t, unsigned depth);
/* Write the members of a schema answer after "schema": references, metadata, ruleSet. */
void tc_reg_write_extras(tc_jbuf *b, const tc_reg_schema_text *t);
/* 1 when subject's mode (or the global one) forbids writes: response set (42205). -1 on error. */
int tc_reg_read_only(tc_reg_req *q, const char *subject);
/* 1 when a schema references (subject, version): response set (42206). -1 on error. */
int tc_reg_referenced(tc_reg_req *q, const char *subject, int version);

void tc_reg_list_schemas(tc_reg_req *q);
void tc_reg_put_mode(tc_reg_req *q, const char *subject);
void tc_reg_referencedby(tc_reg_req *q, int by_id);
void tc_reg_latest_metadata(tc_reg_req *q);
/* Accept negotiation: the content type to answer with, or NULL when none is acceptable. */
const char *tc_reg_negotiate(const char *accept);

#endif
