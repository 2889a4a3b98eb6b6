/*
 * writer.h -- the quality monitor's writer: one transaction at a time on a thread of its own.
 *
 * A flush of the quality monitor writes every device's minute rows, the fleet's, the findings,
 * the dead letters' figures and each lane's fenced mark with its checkpoint: tens of milliseconds
 * for a large fleet, more under a lock. On the pipeline thread that time is time the consumer is
 * not served and no batch is decoded; the end-to-end rate fell to a tenth of a raw COPY's. So the
 * monitor only PREPARES a flush (the documents, the checkpoints, the marks it moves from) and
 * hands it to a tc_qw, whose thread runs it as ONE transaction on a connection of its own, while
 * the pipeline reads on. The monitor asks for the outcome later (tc_qw_poll) and only then moves
 * its durable marks and announces the findings: what a crash could take back is never said done.
 *
 * A job is a list of statements run in order between BEGIN and COMMIT. A statement flagged
 * `fence` must change exactly one row (the conditional UPDATE of a mark moving only from the value
 * this member read): otherwise the transaction rolls back and the outcome is TC_ERR_FENCED with
 * the statement's `fence_msg`. Errors are classified as the store's: a lost connection, a
 * serialization failure or a deadlock are TC_ERR_DB_CONN (retriable), the rest TC_ERR_DB.
 *
 * One job at a time: tc_qw_start refuses (returns -1) while one is under way. The helpers
 * tc_qw_exec and tc_qw_pgerr are the same statement runner for the monitor's own connection (the
 * reads of open, on the pipeline thread).
 *
 * Ownership: the statements array and everything its entries point to stay the caller's, who must
 * neither change nor free them until tc_qw_poll has reported the job done. The writer owns its
 * thread and its connection; tc_qw_destroy waits for a job under way (its outcome is lost).
 */
#ifndef TC_QUALITY_WRITER_H
#define TC_QUALITY_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "core/error.h"

/* Parameters of one statement (a mark's UPDATE has seven). */
#define TC_QW_PARAMS_MAX 7

typedef struct tc_qw_stmt {
    const char *tmpl; /* SQL with "@S" where the schema goes */
    int nparams;
    const char *values[TC_QW_PARAMS_MAX];
    int lengths[TC_QW_PARAMS_MAX]; /* for binary parameters (formats 1) */
    int formats[TC_QW_PARAMS_MAX];
    const char *what;      /* for errors: "write quality_1m" */
    int fence;             /* nonzero: must change exactly one row */
    const char *fence_msg; /* the error when it does not */
} tc_qw_stmt;

typedef struct tc_qw tc_qw;

/* A writer for dsn and schema (unquoted; both copied), its thread started; it connects at its
 * first job. NULL with errstr when the thread cannot start or memory is short. */
tc_qw *tc_qw_new(const char *dsn, const char *schema, char *errstr, size_t errstr_size);
void tc_qw_destroy(tc_qw *w);

/* Hand stmts[0..n) to the thread. 0: started; -1: a job is under way. */
int tc_qw_start(tc_qw *w, const tc_qw_stmt *stmts, size_t n);

/* The outcome of the job: 0 when none is under way or done (nothing to report); 1 when it is
 * still running (wait == 0) ; 2 when it finished since the last poll: *err (and errstr) say how.
 * wait != 0 blocks until the job under way has finished. */
int tc_qw_poll(tc_qw *w, int wait, tc_err *err, char *errstr, size_t errstr_size);

/* Nonzero while a job is under way or its outcome has not been polled. */
int tc_qw_busy(tc_qw *w);

/* CPU nanoseconds the writer's thread has spent in its jobs so far (0 for NULL): the flushes'
 * share of the sink's cost that the pipeline thread does not see (/metrics, the benchmark). */
uint64_t tc_qw_cpu_ns(tc_qw *w);

/* The error of a failed statement on conn (res may be NULL), classified as above, errstr
 * "quality: <what>: <PostgreSQL's message>". */
tc_err tc_qw_pgerr(PGconn *conn, PGresult *res, const char *what, char *errstr, size_t errstr_size);

/* (Re)connect *conn to dsn when it is not connected, and set *schema_quoted (PQfreemem'd by the
 * owner) to schema quoted; both the caller's. */
tc_err tc_qw_connect(PGconn **conn, char **schema_quoted, const char *dsn, const char *schema,
                     char *errstr, size_t errstr_size);

/* Run tmpl with schema_quoted for "@S" and the given parameters on conn; *out receives the
 * result (the caller PQclears it) when not NULL. */
tc_err tc_qw_exec(PGconn *conn, const char *schema_quoted, const char *tmpl, int n,
                  const char *const *values, const int *lengths, const int *formats, PGresult **out,
                  const char *what, char *errstr, size_t errstr_size);

#endif
