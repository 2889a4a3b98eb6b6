/*
 * rest_audit.h -- the REST API's audit writer: many requests' records, one transaction.
 *
 * Every request is recorded in the audit log, whose rows are chained by a hash: each row's hash
 * covers the one before it, so appending takes a lock (an advisory lock of record()) held until
 * the commit. Written one request at a time, every request of every caller queued on that lock
 * for a whole transaction and its commit (about 9 ms each on the shared machine, which alone is
 * more than 200 requests/s allow). Here a request hands its record to a bounded queue and one
 * thread, with a connection of its own, writes everything waiting in one statement
 * (record_requests() of the audit schema: the lock once, the chain continued row by row, one
 * commit), so the cost of a commit is shared by every request that arrived while the last one ran.
 *
 * The guarantee: tc_rest_auditor_write returns only once the record is committed (or its batch
 * failed), and the REST pipeline sends a request's answer -- or, for a stream, its last bytes --
 * only after that. So an answer a client received always has its record; a crash (kill -9) loses
 * only the records of requests whose answer was not sent yet: those still in the queue or in the
 * batch being written. A stream cut by the crash has sent rows but has no record (its end was
 * never reached); its client sees a truncated body. A record that cannot be written turns an
 * answer into a 500 (the request's data is not sent) and is logged.
 *
 * The writer runs as thermocline_authenticator (SET ROLE on its connection; the server's login is
 * a member): record_requests() is granted to that role only, because it takes the role and claims
 * from the server (which established them) rather than from the transaction, and the actor is the
 * server's login, as with record().
 *
 * Thread-safe: any server thread may write. Ownership: the record's strings are copied.
 */
#ifndef TC_API_REST_AUDIT_H
#define TC_API_REST_AUDIT_H

#include "api/rest_db.h"
#include "core/error.h"

/* Records waiting at most; a writer waits for room beyond (back-pressure, not loss). */
#define TC_REST_AUDIT_QUEUE_MAX 4096
/* Records one transaction writes at most. */
#define TC_REST_AUDIT_BATCH_MAX 512
/* Bytes of one batch's JSON at most (a record is bounded by the caps of rest_db.h and the
 * claims'; a batch stops early when the next record would pass this). */
#define TC_REST_AUDIT_BATCH_BYTES (4 * 1024 * 1024)
/* Longest a batch's statement may run before it fails (its waiters then get an error). */
#define TC_REST_AUDIT_STATEMENT_TIMEOUT_MS 30000

typedef struct tc_rest_auditor tc_rest_auditor;

/* A writer to record_requests() of audit_schema over dsn; connects now to fail early, and starts
 * its thread. NULL with errstr set. */
tc_rest_auditor *tc_rest_auditor_new(const char *dsn, const char *audit_schema, char *errstr,
                                     size_t errstr_size);
/* Writes what is queued, then stops the thread. The writers must be done (the HTTP server
 * stopped). NULL is fine. */
void tc_rest_auditor_destroy(tc_rest_auditor *a);

/* Queue ev and wait until its batch is committed: 0, or -1 when the batch failed (logged at most
 * once a minute). */
int tc_rest_auditor_write(tc_rest_auditor *a, const tc_rest_audit *ev);

/* Records committed and batches written since the start (for tests and the log). */
void tc_rest_auditor_counts(tc_rest_auditor *a, int64_t *records, int64_t *batches);

#endif
