/*
 * ids.h -- what every quality component shares: the device ids it tracks, interned to dense
 * indexes, and the range of event times it accepts.
 *
 * Detectors, metrics and rules each keep per-device state in arrays indexed by a small integer;
 * a tc_qids maps a device id to that index with an open-addressing table (a hash of 8 bytes a
 * step, linear probing, at most half full) that starts at 1,024 slots and doubles as ids come (up
 * to 2 x max slots), so a lookup never allocates, a new id costs one malloc of its bytes, and a
 * doubling (log2 of the ids times in a table's life) places every id again; a table holds the pages
 * its ids need, not those max would. Ids of 1..TC_QIDS_LEN_MAX bytes without NUL are accepted; the
 * (max + 1)-th id, a longer one or one with a NUL is refused (-1) and the caller counts it.
 *
 * Ownership: the table owns copies of the ids; tc_qids_id's pointer lives as long as the table.
 */
#ifndef TC_QUALITY_IDS_H
#define TC_QUALITY_IDS_H

#include <stddef.h>
#include <stdint.h>

#define TC_QIDS_LEN_MAX 128
#define TC_QIDS_MAX     10000000
/* Event times the components accept: 0000-01-01 to 9999-12-31 in microseconds (every time the
 * decoders can produce), so differences of two never overflow. Others are ignored. */
#define TC_Q_TIME_MIN   INT64_C(-62167219200000000)
#define TC_Q_TIME_MAX   INT64_C(253402300799999999)
#define TC_Q_TIME_OK(t) ((t) >= TC_Q_TIME_MIN && (t) <= TC_Q_TIME_MAX)

typedef struct tc_qids tc_qids;

/* NULL when max is 0 or above TC_QIDS_MAX, or out of memory. */
tc_qids *tc_qids_new(size_t max);
void tc_qids_destroy(tc_qids *t);
/* Index of id (len bytes): found, or added when add is nonzero; -1 when absent or refused. */
long tc_qids_find(tc_qids *t, const char *id, size_t len, int add);
const char *tc_qids_id(const tc_qids *t, size_t i);
size_t tc_qids_count(const tc_qids *t);
/* The most ids it takes (its max at creation). */
size_t tc_qids_max(const tc_qids *t);
/* Bytes held: the table as grown so far, the id pointers and the ids with malloc's overhead (16
 * bytes each). */
size_t tc_qids_memory(const tc_qids *t);
/* What tc_qids_new(max) with max ids of id_len bytes would hold (its table grown to the full). */
size_t tc_qids_memory_for(size_t max, size_t id_len);

#endif
