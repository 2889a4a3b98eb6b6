/*
 * deadletters.h -- reading and redriving the dead letters in @S.dead_letters.
 *
 * The pipeline writes dead letters (store.h, tc_store_write); these functions are for operators:
 * list them with filters, count them by reason, fetch one with its payload, and redrive a
 * selection. Redrive is driven from here so that the rows stay locked while their payloads are
 * being sent: each page of rows is selected FOR UPDATE SKIP LOCKED in a transaction, handed to the
 * caller's send function, then to its flush function (which must return TC_OK only when every
 * message of the page is delivered), and only then marked redriven (redriven_at = now(),
 * redrive_count + 1) and committed. A failure rolls the page back: nothing of it is marked, and
 * what was already delivered of it may be sent again by the next redrive (at least once). Two
 * redrives running at once never send the same row.
 *
 * The redrive columns come with migration step 3; on an older schema, listing still works and
 * redrive fails with a message that asks for `thermocline migrate`.
 */
#ifndef TC_STORE_DEADLETTERS_H
#define TC_STORE_DEADLETTERS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "store/store.h"

/* Which dead letters. Zero/NULL fields do not filter. */
typedef struct tc_dlq_filter {
    const char *reason; /* reason code, e.g. "out_of_range" */
    int64_t since_us;   /* received_at >= since (0: any) */
    int64_t id;         /* this row only (0: any) */
    int64_t after_id;   /* id > after_id (pagination) */
    int64_t limit;      /* at most this many rows (0: no limit) */
    int redriven;       /* 0 any, 1 only redriven ones, -1 only never redriven ones */
} tc_dlq_filter;

/* One dead letter; the strings and payloads belong to the call that handed it out. */
typedef struct tc_dlq_row {
    int64_t id;
    int64_t received_us;
    const char *reason;
    const char *detail;
    const char *stage;
    const char *source_topic;
    int32_t source_partition;
    int64_t source_offset;
    int64_t redriven_us; /* 0 when never redriven */
    int32_t redrive_count;
    const uint8_t *payload; /* NULL unless asked for */
    size_t payload_len;
    const uint8_t *key; /* NULL when the message had no key (or not asked for) */
    size_t key_len;
    size_t payload_bytes; /* length of the payload, also when the payload itself was not asked */
} tc_dlq_row;

/* Called for each row, in id order; a non-TC_OK answer stops the walk and is returned. */
typedef tc_err (*tc_dlq_row_fn)(void *opaque, const tc_dlq_row *row);

/* Rows matching f, oldest id first; with_payload fetches payload and key too. */
tc_err tc_store_dlq_list(tc_store *s, const tc_dlq_filter *f, int with_payload, tc_dlq_row_fn fn,
                         void *opaque, char *errstr, size_t errstr_size);

/* Counts per reason of the rows matching f (limit and after_id ignored), most frequent first. */
typedef tc_err (*tc_dlq_count_fn)(void *opaque, const char *reason, int64_t count,
                                  int64_t redriven);
tc_err tc_store_dlq_count(tc_store *s, const tc_dlq_filter *f, tc_dlq_count_fn fn, void *opaque,
                          char *errstr, size_t errstr_size);

/* One row with its payload; TC_ERR_NOT_FOUND when there is no such id. */
tc_err tc_store_dlq_get(tc_store *s, int64_t id, tc_dlq_row_fn fn, void *opaque, char *errstr,
                        size_t errstr_size);

/* Mark rows redriven (redriven_at = now(), redrive_count + 1), in their own statement. */
tc_err tc_store_dlq_mark_redriven(tc_store *s, const int64_t *ids, size_t n, char *errstr,
                                  size_t errstr_size);

typedef struct tc_dlq_redrive_ops {
    void *opaque;
    tc_err (*send)(void *opaque, const tc_dlq_row *row); /* with payload and key */
    tc_err (*flush)(void *opaque); /* TC_OK only when everything sent is delivered */
} tc_dlq_redrive_ops;

/* Redrive the rows matching f (f->redriven is honoured; the caller sets -1 for "not yet") in pages
 * of page_size rows, as described at the top. *done counts the rows marked. */
tc_err tc_store_dlq_redrive(tc_store *s, const tc_dlq_filter *f, size_t page_size,
                            const tc_dlq_redrive_ops *ops, uint64_t *done, char *errstr,
                            size_t errstr_size);

#endif
