/*
 * coalesce.h -- identical reads share one computation: the table of who computes what for whom.
 *
 * Many callers of `thermocline serve` ask the same thing at once (a dashboard of every device's
 * latest reading, polled by every screen): the same route, the same parameters, the same role and
 * claims, hence the same rows. Each answer costs tens of milliseconds of PostgreSQL and of the
 * server's CPU, so 2 cores give some tens of them a second; the same answer built once and sent to
 * everyone who asked for it gives hundreds. A key names "the same thing"; the caller builds it
 * from everything that decides the rows and the bytes (rest.c: route, normalised parameters,
 * format, role and claims), so callers whose keys differ never share.
 *
 * Freshness. An answer must be as fresh as the one its request would have had alone: its rows
 * committed before it arrived must be in it. So a request joins only a computation that has not
 * started yet -- whose leader has not sent its statement, so its snapshot is taken after every
 * member arrived -- never one already running. Per key there is at most one computation in
 * progress (gathering members while its leader prepares, then running) and one waiting: a request
 * that finds one running joins the waiting one, or becomes its leader; when the running one ends,
 * the waiting one's leader prepares and starts it with everyone who joined meanwhile, and later
 * arrivals gather behind it again.
 *
 *     tc_coalesce_enter -> TC_COALESCE_LEAD     the caller computes: it calls tc_coalesce_start
 *                                               right before its statement (which says for how
 *                                               many: 1, alone), and ends the computation with
 *                                               tc_coalesce_publish (an answer for everyone) or
 *                                               tc_coalesce_unshared (error, too large, alone; or
 *                                               a failure before it started)
 *                       -> TC_COALESCE_SHARED   the leader published: t->answer is the caller's
 *                                               reference to the bytes (tc_coalesce_answer_put)
 *                       -> TC_COALESCE_FALLBACK the caller answers on its own: the leader ended
 *                                               without an answer, or the table is full
 *
 * Memory. An answer's bytes are held until the last member's response that borrows them is sent,
 * under two caps: answer_max bytes a computation, total_max bytes for all answers held and being
 * built. The leader charges its buffer as it grows (tc_coalesce_reserve); past a cap it stops
 * buffering and ends the computation unshared.
 *
 * Locking and waits: one mutex over the table; a computation has a condition variable its
 * waiting members sleep on. A follower waits for its leader to end; a waiting leader waits for
 * the running computation to end. Neither wait has a deadline of its own: a leader's computation
 * is bounded by the caller (the pool's wait, the statement timeout), and a leader must end every
 * computation it leads, on every path, or its followers wait forever. A leader must never wait for
 * anything its followers hold.
 *
 * Kept answers. Some answers depend on one table only, whose every committed change moves a
 * version the caller reads in the same snapshot as the rows (the latest reading of every device:
 * `latest_state`, written about once a second; rest.c, api_sql.c's answer_versions). Such a
 * leader marks its computation with the version it read (tc_coalesce_versioned) before it starts;
 * its published answer is then kept under its key with that version, and a later leader of the
 * key that reads the same version in its own snapshot -- taken after it arrived -- ends its
 * computation with the kept answer (tc_coalesce_reuse): same version, same committed rows, same
 * bytes, so a kept answer is exactly as fresh as a computed one. At most TC_COALESCE_KEPT_MAX
 * keys are kept (the least recently used goes), and their bytes count toward total_max: a
 * computation that would pass it first drops kept answers, least recently used first.
 *
 * An answer's gzip form (tc_coalesce_answer_gzip) is made once, under the answer's own lock -- the
 * table's is not held while it compresses -- and counts toward total_max like the answer.
 *
 * Ownership: keys are copied. A published answer's bytes are taken from the leader (malloc'ed,
 * NUL after len, freed with free()) and reference-counted: the leader and every follower get one
 * reference each, dropped by tc_coalesce_answer_put from any thread. The table must outlive every
 * reference and every call in progress (tc_coalesce_destroy after the server stopped).
 */
#ifndef TC_API_COALESCE_H
#define TC_API_COALESCE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Longest key: a route's id, role, claims (TC_REST_CLAIMS_MAX), format and parameters. */
#define TC_COALESCE_KEY_MAX 8192
/* Keys with a running computation at once (more are not coalesced: fallback). */
#define TC_COALESCE_KEYS_MAX 1024
/* Keys whose last versioned answer is kept (a dashboard's few distinct questions; each answer is
 * under answer_max and all of them under total_max). */
#define TC_COALESCE_KEPT_MAX 64
/* Default caps of an answer's bytes and of every answer held. */
#define TC_COALESCE_ANSWER_MAX_DEFAULT (32u * 1024 * 1024)
#define TC_COALESCE_TOTAL_MAX_DEFAULT  (256u * 1024 * 1024)

typedef struct tc_coalesce tc_coalesce;
typedef struct tc_coalesce_comp tc_coalesce_comp;

/* A published answer: immutable until its last reference is dropped. */
typedef struct tc_coalesce_answer {
    const char *data; /* NUL after len bytes */
    size_t len;
    int64_t rows;
    /* private */
    tc_coalesce *owner;
    int refs;
    pthread_mutex_t gz_lock; /* held while its gzip form is made */
    char *gz;                /* that form once made (tc_coalesce_answer_gzip), charged as held */
    size_t gz_len;
    int gz_tried;
} tc_coalesce_answer;

typedef enum tc_coalesce_role {
    TC_COALESCE_LEAD,
    TC_COALESCE_SHARED,
    TC_COALESCE_FALLBACK,
} tc_coalesce_role;

/* One request's part in a computation. */
typedef struct tc_coalesce_ticket {
    size_t members;             /* LEAD, from tc_coalesce_start: requests it answers, its own too */
    tc_coalesce_answer *answer; /* SHARED, and LEAD after publish: the caller's reference */
    /* private */
    tc_coalesce_comp *comp;
    size_t reserved; /* LEAD: bytes charged against the caps */
    int versioned;   /* LEAD: keep the published answer under version */
    int64_t version;
} tc_coalesce_ticket;

typedef struct tc_coalesce_stats {
    uint64_t computations; /* computations led */
    uint64_t shared;       /* requests answered by another's computation */
    uint64_t fallbacks;    /* followers sent back to answer alone, and requests over the table */
    uint64_t published;    /* computations that ended with an answer for their followers */
    uint64_t reused;       /* computations ended with a kept answer of the same version */
    uint64_t kept;         /* answers kept now */
    uint64_t held_bytes;   /* answers' bytes held or charged now, kept ones included */
    uint64_t waiting;      /* requests waiting now: for their leader, or to lead */
} tc_coalesce_stats;

/* A table with these caps (0: the defaults). NULL when out of memory. */
tc_coalesce *tc_coalesce_new(size_t answer_max, size_t total_max);
/* No call in progress, no reference left. NULL is fine. */
void tc_coalesce_destroy(tc_coalesce *c);

/* Join or lead the next computation of key[0..klen) (see the file comment); may block. */
tc_coalesce_role tc_coalesce_enter(tc_coalesce *c, const void *key, size_t klen,
                                   tc_coalesce_ticket *t);

/* The leader is about to send its statement: nobody joins any more. The members, itself included
 * (1: alone). */
size_t tc_coalesce_start(tc_coalesce *c, tc_coalesce_ticket *t);

/* The leader's buffer is now `bytes` long: 0 when it fits under both caps (charged), -1 when not
 * (then it must end the computation unshared). */
int tc_coalesce_reserve(tc_coalesce *c, tc_coalesce_ticket *t, size_t bytes);

/* End the computation with its answer: 0 when data (malloc'ed, NUL after len) is taken, t->answer
 * is the leader's reference and every follower gets one. -1 when it does not fit the caps (or
 * memory is short): data stays the caller's and the computation is still running (end it with
 * tc_coalesce_unshared). */
int tc_coalesce_publish(tc_coalesce *c, tc_coalesce_ticket *t, char *data, size_t len,
                        int64_t rows);

/* The leader read `version` of what its answer depends on, in the snapshot it computes in (taken
 * after tc_coalesce_start, so after every member arrived): its published answer is kept. */
void tc_coalesce_versioned(tc_coalesce_ticket *t, int64_t version);

/* A versioned leader (tc_coalesce_versioned called) before its statement: when the answer kept
 * for its key has its version, end the computation with it -- t->answer is the leader's
 * reference, every follower gets one -- and return 0. -1: none (compute as usual). */
int tc_coalesce_reuse(tc_coalesce *c, tc_coalesce_ticket *t);

/* End the computation without an answer: its followers fall back. */
void tc_coalesce_unshared(tc_coalesce *c, tc_coalesce_ticket *t);

/* Drop one reference (the last frees the bytes). Its argument is void * so that it can be a
 * response's free callback. NULL is fine. */
void tc_coalesce_answer_put(void *answer);

/* The answer's bytes in gzip (api/http_gzip.h), made by the first caller and kept with the answer
 * for every later one -- a kept answer is compressed once, not once a request -- or NULL (out of
 * memory, or over total_max). Alive as long as the caller's reference. Its argument is void * so
 * that it can be a response's body_gzip. */
const char *tc_coalesce_answer_gzip(void *answer, size_t *len);

void tc_coalesce_stats_get(tc_coalesce *c, tc_coalesce_stats *out);

#endif
