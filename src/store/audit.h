/*
 * audit.h -- the audit log's door for C: record a change, verify the chain.
 *
 * The log itself is SQL (api_sql.c creates <audit.schema>.events and its functions): a row per
 * event, appended by the function record(), which serialises writers, takes who (the login role),
 * as whom (the role after SET ROLE) and the JWT claims from the session, and chains the row to the
 * one before by sha256. Every command that changes data (dlq redrive, replay, retention, schema
 * registry changes) records what it did through tc_audit_record, on a short connection of its own
 * after the change, so a failing log never holds a change's transaction open; the REST server
 * calls record() on its request's connection.
 *
 * tc_audit_verify asks verify() for the first row whose chain is broken: a row changed, removed or
 * inserted by someone who got past the privileges and the triggers (a superuser with the triggers
 * disabled). What the chain cannot show: rows removed from its end, or a whole new chain written
 * by the owner -- keep a copy of the last hash elsewhere (docs/api.md).
 */
#ifndef TC_STORE_AUDIT_H
#define TC_STORE_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Longest problem description kept from verify(). */
#define TC_AUDIT_PROBLEM_MAX 256

/* One event. Strings are borrowed for the call. */
typedef struct tc_audit_event {
    const char *action; /* what was done, dotted: "dlq.redrive", "replay", "retention" */
    const char *target; /* what it was done to (a topic, a schema), or NULL */
    const char *params; /* the request's parameters as a JSON object's text, or NULL */
    int64_t rows;       /* rows it affected, or -1: not counted */
    const char *status; /* "ok", or "error: <message>" */
    double duration_ms; /* how long it took, or < 0: not measured */
} tc_audit_event;

typedef struct tc_audit_verify_result {
    int64_t events;                     /* rows in the log */
    int64_t broken_id;                  /* first broken row, or -1: the chain is whole */
    char problem[TC_AUDIT_PROBLEM_MAX]; /* why it is broken */
} tc_audit_verify_result;

/* Append ev to <audit_schema>.events through record(), on a connection of its own to dsn. */
tc_err tc_audit_record(const char *dsn, const char *audit_schema, const tc_audit_event *ev,
                       char *errstr, size_t errstr_size);

/* Walk the chain of <audit_schema>.events. */
tc_err tc_audit_verify(const char *dsn, const char *audit_schema, tc_audit_verify_result *out,
                       char *errstr, size_t errstr_size);

#endif
