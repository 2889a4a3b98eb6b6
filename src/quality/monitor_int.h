/*
 * monitor_int.h -- what monitor.c and monitor_flush.c share: the monitor's state (struct tc_qmon,
 * its lanes and what it holds between flushes) and the building of a flush.
 *
 * monitor.c is the engine: lanes, feeding, opening and revoking partitions, running a flush on the
 * writer and applying its outcome. monitor_flush.c turns what the monitor holds into the flush's
 * statements (the rows' binary arrays and the JSON documents, the detectors' checkpoints and the
 * fenced marks) and nothing
 * else: it reads the lanes and the held items, and leaves starting, polling and applying to
 * monitor.c. Not a public header: nothing outside src/quality/monitor*.c includes it.
 *
 * Ownership: struct tc_qmon and everything it points to is monitor.c's (tc_qmon_new, _destroy).
 * The flush's building owns nothing: it moves what the monitor holds. Metric rows become
 * documents in held[] (their buffers from and back to bufs), findings are copied into sent[]
 * (strings in sent_strings), marks are taken into marks[], and stmts[] points into held[] and
 * marks[] until the next flush is built.
 */
#ifndef TC_QUALITY_MONITOR_INT_H
#define TC_QUALITY_MONITOR_INT_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "quality/bufs.h"
#include "quality/ckpt.h"
#include "quality/detect.h"
#include "quality/metrics.h"
#include "quality/monitor.h"
#include "quality/rules.h"
#include "quality/writer.h"

/* Statements held across failed flushes; past it the monitor stops taking metric rows (they
 * stay in tc_qm until a flush commits). */
#define TC_QMON_HELD_MAX 4096
/* Metric columns the tables have (quality_sql.c): the six of schema version 1. */
#define TC_QMON_METRICS TC_METRIC__COUNT

typedef struct qmon_lane qmon_lane;

struct qmon_lane {
    tc_qmon *mon;
    int32_t partition;
    tc_qd *qd;
    tc_qm *qm;
    tc_qr_eval *qr;
    int64_t next, durable;    /* marks: fed up to, stored */
    int64_t watermark;        /* largest event time fed, 0 before any */
    int64_t ticked;           /* watermark at the last silence check */
    int64_t minute_flushed;   /* minute of the watermark at the last flush */
    uint64_t fed;             /* the tc_qmon_add call that last fed it */
    size_t batch_n, batch_at; /* its readings in that call, and where they start in `rows` */
    uint32_t ck_since;        /* the detectors' generation of the last durable checkpoint */
};

/* A finding held until its flush commits. */
typedef struct qmon_event {
    const char *device, *metric, *kind, *rule, *severity; /* arena or static */
    int32_t partition;
    int kind_index; /* into tc_qmon_stats.opened */
    int64_t start_us, end_us;
    double score, observed, expected;
} qmon_event;

typedef struct qmon_dead {
    const char *device; /* the Kafka key when it is a usable id, else NULL */
    int32_t partition;
    int64_t minute;
    tc_reject reason;
} qmon_dead;

/* A statement's document, from the flush that made it until one commits it: one lane's rows,
 * dead letters or findings, so a revocation drops exactly the lost partitions' share. */
typedef struct qmon_held {
    const char *tmpl, *what; /* tc_quality_sql_* and what it writes */
    int32_t partition;       /* -1: of no partition (the fleet's device counts) */
    char *doc;
    size_t cap; /* doc's allocation, for the pool once written */
    size_t len; /* a binary document's bytes (the metric rows'); 0: JSON text */
} qmon_held;

/* A lane's mark as a flush moves it: the parameters of its statement (the writer reads them). */
typedef struct qmon_mark {
    int32_t partition;
    int64_t next;
    tc_qck ck; /* the devices whose detectors changed since the lane's last checkpoint */
    char part[16], next_s[24], from[24], wm[24];
    int insert; /* nothing stored yet: an INSERT that must not meet a row */
    char fence_msg[TC_ERRSTR_MAX];
} qmon_mark;

struct tc_qmon {
    tc_qmon_options o;
    char schema[TC_QMON_NAME_MAX + 1], group[TC_QMON_NAME_MAX + 1], topic[TC_QMON_NAME_MAX + 1];
    char rules_path[TC_QMON_NAME_MAX * 4];
    char *dsn;
    PGconn *conn;
    char *schema_quoted;
    /* The schema's quality_row and quality_new_row, read at the first open (0: dry). */
    uint32_t row_oid, new_row_oid;
    tc_qr_set *rules;
    int rules_tags; /* some rule's scope has tags: readings' tags are parsed */
    qmon_lane *lanes[TC_QMON_LANES_MAX];
    size_t nlanes;
    int32_t lane_end; /* every lane is below it: loops that run each turn look no further */

    qmon_event *events;
    size_t nevents;
    qmon_dead *dead;
    size_t ndead;
    tc_arena strings;
    qmon_held held[TC_QMON_HELD_MAX];
    size_t nheld;
    tc_qbufs bufs; /* the documents' and checkpoints' buffers of committed flushes, reused */
    /* The flush on the writer's thread: held[0..job_held) and marks[0..nmarks) are its
     * statements' (stmts); sent[] the findings it writes, announced once it commits. */
    tc_qw *writer; /* NULL: dry */
    int job;       /* a flush was started and its outcome not applied */
    size_t job_held;
    uint64_t job_readings;
    tc_qw_stmt *stmts;
    size_t nstmts, stmts_cap;
    qmon_mark *marks;
    size_t nmarks, marks_cap;
    qmon_event *sent;
    size_t nsent;
    tc_arena sent_strings;
    tc_err deferred; /* the outcome of a flush settled outside tc_qmon_flush_poll */
    char deferred_errstr[TC_ERRSTR_MAX];
    int64_t *minutes; /* minutes of the fleet rows held (their device counts are derived) */
    size_t nminutes, minutes_cap;
    int64_t last_flush_us, last_attempt_us;

    /* scratch of a batch: its rows grouped by lane (`rows`, the lanes in `order` of their first
     * reading) and one lane's readings' ids and times; the values stay in the batch's columns */
    size_t scratch_cap;
    const char **ids;
    size_t *lens;
    int64_t *t, *wm, *ingest;
    long *index;
    size_t *rows;
    int32_t *order;

    uint64_t readings_taken; /* fed since the last commit */
    uint64_t adds;           /* tc_qmon_add calls */
    tc_qmon_event_fn listener;
    void *listener_opaque;
    tc_qmon_stats st;
};

/* Build a flush's statements into m->stmts: every lane's metric rows, the dead letters' figures,
 * the fleet's minutes and the findings become held documents (the findings are copied to sent[]
 * as well, to be announced once a flush writing them commits), then each lane that moved gets its
 * changed detectors' checkpoint and its fenced mark (m->marks). On failure the marks may be half
 * taken: the caller frees them (tc_qmon_marks_free); what was held stays held for the next one. */
tc_err tc_qmon_flush_build(tc_qmon *m, char *errstr, size_t errstr_size);
/* Drop the marks of the last flush built, with their checkpoints' buffers (back to the pool). */
void tc_qmon_marks_free(tc_qmon *m);

#endif
