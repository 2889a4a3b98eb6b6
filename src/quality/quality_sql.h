/*
 * quality_sql.h -- the quality monitor's database objects, as a migration ready to be called.
 *
 * tc_quality_migrate creates, idempotently, in the pipeline's schema:
 *   quality_1m              per device and minute of event time: readings, present count per
 *                           built-in metric (completeness = <m>_n / readings), late, out of order,
 *                           gaps and the longest, dead letters and duplicates dropped, delay
 *                           p50/p99 and the delay sketch's buckets (integer[], mergeable);
 *   quality_fleet_1m        the same per minute for the whole fleet (its quantiles come from the
 *                           merged sketch, not from the devices' quantiles);
 *   quality_dead_letters_1m dead letters per minute and reason (a refused reading may have no
 *                           device id);
 *   anomalies               findings of the detectors and the rules: device, metric, kind, rule,
 *                           severity, start, end, score, observed, expected, and status (open
 *                           while end is NULL), unique per (device, metric, kind, rule, start) so
 *                           a finding re-sent after a restart updates its row instead of adding
 * one; quality_offsets         the quality sink's own marks (next offset per partition, like the
 *                           rollups'), written in the transaction that writes the detectors'
 *                           checkpoint, so state and marks commit together (detector_state: the
 *                           whole checkpoint of an older version, cleared by the next flush);
 * quality_detector_state    that checkpoint, one record per (group, topic, partition, device),
 *                           rewritten only for the devices that changed (ckpt.h).
 * In TimescaleDB mode quality_1m is a hypertable. One transaction under an advisory lock of its
 * own, so concurrent pipelines can all call it.
 */
#ifndef TC_QUALITY_QUALITY_SQL_H
#define TC_QUALITY_QUALITY_SQL_H

#include <stddef.h>
#include <libpq-fe.h>

#include "core/error.h"
#include "core/json.h"
#include "quality/metrics.h"

/* The DDL with "@S" where the schema goes (exposed for tests and the docs). */
const char *tc_quality_sql_ddl(void);
const char *tc_quality_sql_timescaledb(void);

/* tmpl with every "@S" replaced by schema (a new string the caller frees); NULL when out of
 * memory. */
char *tc_quality_sql_expand(const char *tmpl, const char *schema);

/* Run the DDL on conn (idle, no transaction open) in schema_quoted (a quoted identifier, e.g.
 * "telemetry"); timescaledb nonzero makes quality_1m a hypertable. */
tc_err tc_quality_migrate(PGconn *conn, const char *schema_quoted, int timescaledb, char *errstr,
                          size_t errstr_size);

/* The monitor's writes (monitor.c), each with one parameter:
 *   insert_rows  quality_1m upserts: counts add, the longest gap is the longer, sketches add
 *            and the quantiles come from the sum;
 *   rows     the same for rows continuing a minute this lane wrote (tc_qm_row.continues): an
 *            UPDATE of the stored row when it holds just the earlier parts, the upsert otherwise
 *            (only such rows, and new ones too large for insert_rows' narrow record: the
 *            planner then sizes the UPDATE's join right);
 *   fleet    the same for quality_fleet_1m (returns the buckets touched);
 *     the three read their rows as one binary array: insert_rows of @S.quality_new_row
 *     (tc_quality_sql_new_row_bin), the other two of @S.quality_row (tc_quality_sql_row_bin);
 *   dead     dead letters per minute and reason, per device and minute, per fleet minute;
 *   devices  the fleet's device count of the minutes given (derived, so flushes and members
 *            agree);
 *   events   findings: the last event of each finding wins (opened and resolved in one flush);
 *     these three read a JSON document (json_to_recordset): they carry few rows.
 *   row_type the OIDs of the schema's quality_row and quality_new_row ($1: the schema, unquoted;
 *            NULL when the migration has not run). */
extern const char tc_quality_sql_insert_rows[];
extern const char tc_quality_sql_write_rows[];
extern const char tc_quality_sql_write_fleet[];
extern const char tc_quality_sql_write_dead[];
extern const char tc_quality_sql_write_devices[];
extern const char tc_quality_sql_write_events[];
extern const char tc_quality_sql_row_type[];

/* The rows' parameter: PostgreSQL's binary array of @S.quality_row, one element a metric row.
 * A device minute's JSON cost the server ~6.5 us a row to expand (json_to_recordset), more than
 * its insert; the binary record is read field by field, in place. rows_begin leaves room for the
 * array's header in j, row_bin appends row r (a device's when r->device is set, else the
 * fleet's): counts, the first `metrics` present counts (0 for the others), the delay sketch's
 * buckets from the first that counts (sk0) and a new row's quantiles as bucket numbers, and for
 * a part continuing a minute the readings written before it and all the parts' quantiles.
 * new_row_bin appends a device's minute that continues none (r->continues 0) as an element of
 * @S.quality_new_row instead -- its figures in integer, no continuation columns, a quarter fewer
 * bytes -- and returns 1; 0 (nothing appended) for a fleet's row, a continued part, or a figure or
 * minute past integer's range, which go as quality_row.
 * rows_end writes the header: the element type's OID (tc_quality_sql_row_type's) and n rows. */
#define TC_QUALITY_SQL_ROWS_HEADER 20
#define TC_QUALITY_SQL_ROW_BIN_MAX (512 + TC_QM_DEVICE_ID_MAX + TC_QM_SKETCH_BUCKETS * 8)
void tc_quality_sql_rows_begin(tc_jbuf *j);
void tc_quality_sql_row_bin(tc_jbuf *j, const tc_qm_row *r, int metrics);
int tc_quality_sql_new_row_bin(tc_jbuf *j, const tc_qm_row *r, int metrics);
void tc_quality_sql_rows_end(tc_jbuf *j, uint32_t type_oid, size_t n);

#endif
