/*
 * pipeline.c -- the coordinator of the ingest loop; see pipeline.h for the design.
 *
 * The loop only coordinates: it polls Kafka, asks which sinks want each message (the skip rule on
 * every sink's mark), hands the message to the decoder and the batch, settles what the writers
 * are done with, lets every sink flush by its own policy, recovers a sink whose back-off is over,
 * and resumes every sink from what is durable after a fence. Each of those jobs lives in a file of
 * its own in this directory (pipeline_int.h lists them), so that this one reads as the order of
 * the steps and the rules between them.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Progress is logged this often. */
#define TC_PROGRESS_INTERVAL_US (2 * 1000000LL)
/* How often the idle check of --exit-when-idle asks the brokers for the partitions' ends. */
#define TC_IDLE_CHECK_INTERVAL_US 1000000LL
/* While a batch is in flight the loop polls Kafka at least this often (ms), to settle the batch
 * soon after the writer is done with it: the latency of a quiet stream depends on it. */
#define TC_FLIGHT_POLL_MS 5

static tc_err tc_pipeline_process(tc_pipeline *p, const tc_message *m);
static tc_err tc_pipeline_sinks_recover(tc_pipeline *p);

/* A durable write found a partition moved on by another member (sink.h): log it and drop
 * what this member holds; tc_pipeline_resume reads the sinks' marks again. */
tc_err tc_pipeline_fence(tc_pipeline *p, const char *why)
{
    tc_log_warn("pipeline",
                "fenced: %s; this member drops what it holds of its partitions and resumes them "
                "from what is stored",
                why);
    p->fenced = 1;
    p->stats.fenced++;
    return TC_ERR_FENCED;
}

tc_err tc_pipeline_set_windows(tc_pipeline *p, const tc_pipeline_window *w, size_t n, char *errstr,
                               size_t errstr_size)
{
    tc_windows_destroy(p->windows);
    p->windows = tc_windows_new(w, n);
    /* Sinks whose range a replay recomputes itself take nothing of it; the primary's marks move
     * by the windows, not by what was stored. */
    tc_sinkset_leave_out(p->sinks, TC_SINK_NO_REPLAY);
    p->primary.ops->primary->unfenced(p->primary.ctx);
    return p->windows ? TC_OK : tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
}

void tc_pipeline_get_stats(const tc_pipeline *p, tc_pipeline_stats *out)
{
    *out = p->stats;
}

/* One message: the skip rule, the batch's room, then the decoder (decode.c) with the sinks it is
 * for. */
static tc_err tc_pipeline_process(tc_pipeline *p, const tc_message *m)
{
    unsigned sinks = tc_pipeline_sinks_for(p, m->partition, m->offset);
    tc_err err;

    if (p->fenced)
        return TC_ERR_FENCED;
    if (sinks && (err = tc_pipeline_room_for(p, m->partition)) != TC_OK)
        return err;
    if (sinks == 0) /* every sink holds it already: at most the dedupe window wants it */
        return p->dedupe ? tc_pipeline_remember(p, m) : TC_OK;
    if (p->batch_started_us == 0)
        p->batch_started_us = p->now_us;
    p->stats.consumed++;
    tc_observe_note_message(p->obs, p->cur, m->timestamp_ms);
    return tc_pipeline_take(p, m, sinks);
}

/*
 * After a fenced write, or partitions taken away while a sink waited: drop every batch this member
 * holds (in flight, being filled, what every sink has only taken),
 * read the marks of the partitions it still has again from every sink, and move the consumer back
 * to the lowest mark of each, as after an assignment. A batch that did
 * commit is not lost: the marks read say so. When the marks cannot be read the next turn of the
 * loop tries again; nothing is processed meanwhile.
 */
tc_err tc_pipeline_resume(tc_pipeline *p)
{
    char errstr[TC_ERRSTR_MAX];
    int32_t *parts = malloc((p->nmarks + 1) * sizeof(*parts));
    int64_t *low = malloc((p->nmarks + 1) * sizeof(*low));
    int64_t *glow = malloc((p->nmarks + 1) * sizeof(*glow));
    tc_partition_offset *from = malloc((p->nmarks + 1) * sizeof(*from));
    size_t n = 0;
    tc_err err = parts && low && glow && from ? TC_OK : TC_ERR_NOMEM;

    tc_pipeline_primary_drop(p);
    for (size_t i = 0; err == TC_OK && i < p->nmarks; i++) {
        p->marks[i].rewind = TC_NO_REWIND;
        if (p->marks[i].assigned)
            parts[n++] = (int32_t)i;
    }
    p->rewinds = 0;
    if (err == TC_OK)
        err = tc_pipeline_primary_reload(p, parts, n, low, errstr, sizeof(errstr));
    for (size_t i = 0; i < n; i++)
        glow[i] = TC_SINK_MARK_ALL;
    if (err == TC_OK)
        err = tc_sinkset_recover(p->sinks, parts, n, 1, p->now_us, glow, errstr, sizeof(errstr));
    for (size_t i = 0; err == TC_OK && i < n; i++) /* -1, nothing yet, is the lowest */
        from[i] = (tc_partition_offset){parts[i], glow[i] < low[i] ? glow[i] : low[i]};
    if (err == TC_OK)
        err = tc_consumer_seek(p->consumer, from, n, errstr, sizeof(errstr));
    if (err == TC_OK) {
        p->fenced = 0;
        tc_log_info("pipeline", "resumed %zu partitions from what the sinks hold", n);
    } else if (err == TC_ERR_NOMEM || !tc_err_is_retriable(err)) {
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s",
                 err == TC_ERR_NOMEM ? "out of memory resuming after a fenced write" : errstr);
    } else {
        tc_log_warn("pipeline", "%s; reading the marks again shortly", errstr);
        tc_pipeline_wait(p, TC_RETRY_MIN_MS, 0);
    }
    free(parts);
    free(low);
    free(glow);
    free(from);
    return p->fatal ? p->fatal : TC_OK;
}

/*
 * A sink behind process/sink.h whose circuit is open and whose back-off is over: write what the
 * pipeline holds (the broken sink is skipped), recover the sink, and move the consumer back to its
 * marks: it catches up from them while the other sinks skip what they hold (their taken marks).
 * When the consumer cannot be moved, the pipeline resumes every sink from its marks instead.
 */
static tc_err tc_pipeline_sinks_recover(tc_pipeline *p)
{
    char errstr[TC_ERRSTR_MAX];
    int32_t *parts;
    int64_t *low;
    tc_partition_offset *from;
    size_t n = 0, k = 0;
    tc_err err;

    if (!tc_sinkset_recover_due(p->sinks, p->now_us))
        return TC_OK;
    if ((err = tc_pipeline_flush(p)) != TC_OK)
        return err;
    parts = malloc((p->nmarks + 1) * sizeof(*parts));
    low = malloc((p->nmarks + 1) * sizeof(*low));
    from = malloc((p->nmarks + 1) * sizeof(*from));
    for (size_t i = 0; parts && i < p->nmarks; i++) {
        if (p->marks[i].assigned)
            parts[n++] = (int32_t)i;
    }
    err = parts && low && from
              ? tc_sinkset_recover(p->sinks, parts, n, 0, p->now_us, low, errstr, sizeof(errstr))
              : tc_err_set(TC_ERR_NOMEM, errstr, sizeof(errstr), "out of memory");
    for (size_t i = 0; err == TC_OK && i < n; i++) {
        tc_marks *m = &p->marks[parts[i]];
        if (low[i] == TC_SINK_MARK_ALL)
            continue;
        /* What a poll handed out while the flush served the consumer lies past the marks: the
         * seek covers it, and unpausing must not move the partition forward again. */
        if (m->rewind != TC_NO_REWIND && m->rewind < low[i])
            low[i] = m->rewind;
        m->rewind = TC_NO_REWIND;
        from[k++] = (tc_partition_offset){parts[i], low[i]};
    }
    if (err == TC_OK && k &&
        tc_consumer_seek(p->consumer, from, k, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_warn("pipeline", "%s; resuming every sink from its marks", errstr);
        p->fenced = 1;
    }
    free(parts);
    free(low);
    free(from);
    if (err != TC_OK) {
        tc_log_error("pipeline", "%s", errstr);
        p->fatal = err;
        snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
    }
    return err;
}

tc_err tc_pipeline_run(tc_pipeline *p, int exit_when_idle_s, volatile sig_atomic_t *stop,
                       char *errstr, size_t errstr_size)
{
    int64_t started = tc_time_now_us(), last_activity = started, last_progress = started;
    int64_t last_idle_check = 0;
    int64_t deadline_us, idle_us = (int64_t)exit_when_idle_s * 1000000LL;
    uint64_t last_count = 0;
    tc_err err = TC_OK;
    size_t n;
    int timeout_ms;

    p->stop = stop;
    if (errstr_size)
        errstr[0] = '\0';
    if (p->obs)
        tc_log_info("pipeline", "serving /healthz, /readyz and /metrics on port %u",
                    tc_observe_port(p->obs));
    tc_pipeline_primary_start(p, started, errstr, errstr_size);
    tc_pipeline_publish(p);
    tc_log_info("pipeline", "consuming \"%s\" from %s as group \"%s\"", p->cfg->kafka_topic,
                p->cfg->kafka_brokers, p->cfg->kafka_group);
    while (!*stop) {
        tc_pipeline_unpause(p);
        if (p->fenced && (err = tc_pipeline_resume(p)) != TC_OK)
            break;
        p->now_us = tc_time_now_us();
        if (!p->fenced && (err = tc_pipeline_sinks_recover(p)) != TC_OK) {
            if (p->fatal || err == TC_ERR_STOPPED)
                break;
            err = TC_OK; /* the next turn resumes from the stored marks */
        }
        timeout_ms = 100;
        if (p->batch_started_us) {
            deadline_us = p->batch_started_us + p->cfg->batch_timeout_ms * 1000LL;
            timeout_ms = deadline_us <= p->now_us ? 0 : (int)((deadline_us - p->now_us) / 1000);
        }
        if (p->nflight && timeout_ms > TC_FLIGHT_POLL_MS)
            timeout_ms = TC_FLIGHT_POLL_MS;
        /* A batch past its time waits for a writer: poll meanwhile, without spinning. */
        if (timeout_ms == 0 && tc_pipeline_places_busy(p))
            timeout_ms = 1;
        n = tc_consumer_poll(p->consumer, timeout_ms, p->msgs, TC_CONSUMER_FETCH_MAX);
        p->backlog = n == TC_CONSUMER_FETCH_MAX;
        if (p->fatal)
            break;
        p->now_us = tc_time_now_us();
        if (n)
            last_activity = p->now_us;
        if (p->check_ends && n) {
            tc_pipeline_check_ends(p);
            if (p->fatal) {
                for (size_t i = 0; i < n; i++)
                    tc_consumer_release(p->consumer, &p->msgs[i]);
                break;
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (err == TC_OK && !p->fenced)
                err = tc_pipeline_process(p, &p->msgs[i]);
            tc_consumer_release(p->consumer, &p->msgs[i]);
        }
        if (err == TC_OK && p->windows && tc_windows_done(p->windows))
            break; /* a replay: every range consumed */
        if (tc_pipeline_replay_alone(p))
            break;
        if (err == TC_OK && p->batch_started_us &&
            p->now_us - p->batch_started_us >= p->cfg->batch_timeout_ms * 1000LL) {
            int due;

            err = tc_pipeline_batch_due(p, 1, &due);
            if (err == TC_OK && due)
                err = tc_pipeline_dispatch(p);
        }
        /* The writer is done with the batch in flight: settle it now, not when the next is
         * full, so that the other sinks' rows and Kafka offsets follow at once. */
        if (err == TC_OK)
            err = tc_pipeline_settle_done(p);
        if (err != TC_OK && p->fenced && !p->fatal && err != TC_ERR_STOPPED)
            err = TC_OK; /* the next turn resumes from the stored marks */
        if (err != TC_OK)
            break;
        /* The sinks behind process/sink.h write by their own policy (size, age, interval), even
         * when no batch comes to trigger it (files rolled by age). */
        if (!p->fenced &&
            (err = tc_sinkset_flush(p->sinks, p->now_us, 0, errstr, errstr_size)) != TC_OK) {
            if (err != TC_ERR_FENCED) {
                p->fatal = err;
                snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
                break;
            }
            tc_pipeline_fence(p, errstr);
            err = TC_OK;
        }
        if (!p->fenced)
            tc_pipeline_commit_kafka_moved(p);
        if (p->reload_flag && *p->reload_flag) {
            *p->reload_flag = 0;
            tc_pipeline_reload(p);
        }
        tc_pipeline_refresh_catalog(p);
        tc_pipeline_publish(p);
        if (p->now_us - last_progress >= TC_PROGRESS_INTERVAL_US)
            tc_pipeline_progress(p, &last_progress, &last_count);
        if (idle_us > 0 && !p->fenced && p->batch_started_us == 0 && !p->nflight &&
            p->now_us - last_activity >= idle_us &&
            p->now_us - last_idle_check >= TC_IDLE_CHECK_INTERVAL_US &&
            (tc_consumer_caught_up(p->consumer) || tc_consumer_assigned(p->consumer) == 0)) {
            last_idle_check = p->now_us;
            if (!tc_pipeline_topic_done(p))
                continue;
            /* Make the sinks' last rows durable here rather than after the loop, so that a
             * transient failure of this last write is recovered from like any other instead of
             * ending the run. */
            err = tc_sinkset_flush(p->sinks, p->now_us, 1, errstr, errstr_size);
            if (err == TC_ERR_FENCED) {
                tc_pipeline_fence(p, errstr);
                err = TC_OK;
                continue;
            }
            if (err != TC_OK) {
                p->fatal = err;
                snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
                break;
            }
            if (tc_sinkset_broken(p->sinks))
                continue;
            tc_log_info("pipeline", "idle for %d s with every partition consumed; exiting",
                        exit_when_idle_s);
            break;
        }
    }
    if (err == TC_OK && !p->fatal)
        err = tc_pipeline_primary_flush(p);
    if (err == TC_OK && !p->fatal && !p->fenced) {
        err = tc_sinkset_flush(p->sinks, tc_time_now_us(), 1, errstr, errstr_size);
        if (err != TC_OK && err != TC_ERR_FENCED) {
            p->fatal = err;
            snprintf(p->fatal_str, sizeof(p->fatal_str), "%s", errstr);
        }
        tc_pipeline_commit_kafka(p, 1); /* the last one: answered before the consumer closes */
    }
    if (tc_sinkset_broken(p->sinks) && !p->fatal)
        /* Stopped with a sink behind the primary: nothing is lost, the next run resumes it from
         * its durable marks. */
        tc_log_warn("pipeline", "stopping with a sink behind its last reads (see /readyz and the "
                                "log); the next run resumes it from its durable marks");
    if (p->fatal) {
        err = p->fatal;
        tc_err_set(err, errstr, errstr_size, "%s", p->fatal_str);
    } else if (err == TC_ERR_FENCED || (err == TC_OK && p->fenced)) {
        /* Another member moved our partitions on: what is left is theirs, or read again. */
        tc_log_warn("pipeline", "stopping with what this member held dropped (fenced); the "
                                "partitions' owners resume from what is stored");
        err = TC_OK;
    } else if (err == TC_ERR_STOPPED) {
        /* Stopped while the primary sink was down: the batch is not written and will be read again.
         */
        err = TC_OK;
    } else if (err != TC_OK && errstr[0] == '\0') {
        tc_err_set(err, errstr, errstr_size, "pipeline stopped: %s", tc_err_name(err));
    }
    p->now_us = tc_time_now_us();
    tc_pipeline_progress(p, &last_progress, &last_count);
    return err;
}
