/*
 * alert_restore.h -- the quality sink's alerts after a restart or a take-over.
 *
 * The sink pushes a finding's alert when its flush commits it, and its alert client re-sends what
 * is firing every alerting.resend_s with endsAt a few intervals ahead. A process killed or
 * restarted loses that client's memory: the findings still open in PostgreSQL would expire at
 * Alertmanager by themselves (their endsAt passing) though nothing has cleared them, and one that
 * was resolved meanwhile (by a member that held the partition, or by hand) may have had its
 * resolution lost with the process. So when the sink is given partitions, it reads the findings
 * of those partitions (anomalies.kafka_partition) that are open, or were resolved recently enough
 * for Alertmanager to still hold them open, and hands each to the sink's event function as the
 * monitor would: open ones fire again (and are held, re-sent, then resolved when the monitor
 * clears them), resolved ones are resolved.
 *
 * A member only restores the partitions it is given, so two members never hold the same finding
 * firing. One query on a connection of its own, made and closed here (partitions are assigned
 * rarely); nothing is kept.
 */
#ifndef TC_QUALITY_ALERT_RESTORE_H
#define TC_QUALITY_ALERT_RESTORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "quality/monitor.h"

/* Findings restored per call at most, and at most max (the alert client's alerting.queue_max:
 * more could not be held); the rest are left to expire, and that is logged once. */
#define TC_QUALITY_RESTORE_MAX 4096

/*
 * Hand fn the findings of parts[0..n) in schema (dsn: postgres.dsn) that are open or were
 * resolved less than resolved_within_s ago, at most max; *count is set to how many. The event's
 * strings live only during the call of fn. An error (PostgreSQL unreachable) leaves the alerts as
 * they are.
 */
tc_err tc_quality_alert_restore(const char *dsn, const char *schema, const int32_t *parts, size_t n,
                                int resolved_within_s, size_t max, tc_qmon_event_fn fn,
                                void *opaque, size_t *count, char *errstr, size_t errstr_size);

#endif
