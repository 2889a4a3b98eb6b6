/*
 * ckpt.h -- the detectors' checkpoint of a lane as rows of quality_detector_state, one per device.
 *
 * A lane's detectors were checkpointed as one blob (tc_qd_save) rewritten at every flush: every
 * device of every lane that moved, about 820 bytes each, whether it had changed or not (78 MB a
 * flush for 100,000 devices). Now a flush writes only the devices whose state changed since the
 * lane's last durable checkpoint (tc_qd_save_changed), each as its own record keyed by
 * (group, topic, partition, device), upserted by one statement in the flush's transaction, before
 * the lane's fenced mark: the records and the mark commit together or not at all. A row costs
 * PostgreSQL two to four times what its share of one blob does (an index entry, a tuple, the
 * upsert's lookup), so a flush in which more than half of a lane's devices changed writes the
 * whole checkpoint into quality_offsets as before and deletes the lane's records: the records are
 * always newer than the whole checkpoint. Opening a lane reads the whole checkpoint (tc_qd_load)
 * and then its records over it (tc_qd_merge).
 *
 * The statement takes the records as two parameters in PostgreSQL's binary array format (text[]
 * of the device ids, bytea[] of the records): one round trip, no escaping, no per-row formatting.
 *
 * Ownership: a tc_qck owns its two buffers until tc_qck_release. No state, no locks.
 */
#ifndef TC_QUALITY_CKPT_H
#define TC_QUALITY_CKPT_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "quality/bufs.h"
#include "quality/detect.h"

/* Largest parameter one checkpoint statement sends (PostgreSQL's limit for a value is 1 GB). */
#define TC_QCK_PARAM_MAX (512u * 1024 * 1024)

/* One lane's checkpoint for a flush: the records of its changed devices (the parameters of
 * tc_quality_sql_write_states), or, when more than half of its devices changed, its whole
 * checkpoint (full: stored in quality_offsets, the records deleted). */
typedef struct tc_qck {
    unsigned char *ids, *states; /* text[] and bytea[], binary format */
    size_t ids_len, states_len, ids_cap, states_cap;
    int full;
    unsigned char *whole; /* full: tc_qd_save's checkpoint */
    size_t whole_len, whole_cap;
    size_t n;     /* devices written (records, or the whole checkpoint's) */
    uint32_t cut; /* the detector's generation they are as of: the next `since` once durable */
} tc_qck;

/* Fill c (zeroed or released before) with the devices of qd changed after generation since, in
 * buffers from pool. */
tc_err tc_qck_take(tc_qck *c, tc_qd *qd, uint32_t since, tc_qbufs *pool, char *errstr,
                   size_t errstr_size);
/* Give c's buffers back to pool (NULL: free them); c is zeroed. */
void tc_qck_release(tc_qck *c, tc_qbufs *pool);

/* The upsert of a lane's records: $1 group, $2 topic, $3 partition, $4 ids, $5 records; and
 * the deletion of them all ($1 to $3) that goes with writing its whole checkpoint. */
extern const char tc_quality_sql_write_states[];
extern const char tc_quality_sql_clear_states[];

/* Read the records of (group, topic, partition) on conn into qd (tc_qd_merge). errstr names the
 * partition. */
tc_err tc_qck_load(PGconn *conn, const char *schema_quoted, const char *group, const char *topic,
                   int32_t partition, tc_qd *qd, char *errstr, size_t errstr_size);

#endif
