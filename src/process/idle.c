/*
 * idle.c -- the checks against the partitions' ends: marks past an end, and "everything consumed".
 *
 * A mark past the end of its partition means the topic was made again under the same name (or
 * these are other brokers): refused before the first message of an assignment. `run
 * --exit-when-idle` leaves only when every sink holds every partition to its end, asking what is
 * stored rather than looking at this member's own assignment: after a crash the dead predecessor
 * keeps its partitions until its session times out, and a member looking only at itself would
 * leave early.
 */
#include "process/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long the broker may take to tell the ends of the topic's partitions (idle check). */
#define TC_ENDS_TIMEOUT_MS 5000

static int tc_pipeline_topic_done_in(tc_pipeline *p, int32_t *parts, int64_t *high, int64_t *next);

/*
 * A mark past the end of its partition means the topic was deleted and created again under the same
 * name (or the brokers are another cluster) while the store and the lake kept their progress.
 * Reading on would take every new message below the old marks for one already stored: refuse,
 * before the first message of the assignment is processed, and say how to start over.
 */
void tc_pipeline_check_ends(tc_pipeline *p)
{
    int32_t *parts = malloc(TC_TRACKED_MAX * sizeof(*parts));
    int64_t *high = malloc(TC_TRACKED_MAX * sizeof(*high));
    int n = parts && high ? tc_consumer_topic_ends(p->consumer, p->cfg->kafka_topic, parts, high,
                                                   TC_TRACKED_MAX, TC_ENDS_TIMEOUT_MS)
                          : -1;

    p->check_ends = n < 0; /* the brokers did not answer: ask again before the next messages */
    for (int i = 0; i < n && !p->fatal; i++) {
        const tc_marks *m = (size_t)parts[i] < p->nmarks ? &p->marks[parts[i]] : NULL;
        int64_t mark;
        if (!m || !m->assigned)
            continue;
        mark = tc_sinkset_mark_max(p->sinks, parts[i], tc_pipeline_primary_next(p, parts[i]));
        if (mark <= high[i])
            continue;
        p->fatal = TC_ERR_CONFIG;
        snprintf(p->fatal_str, sizeof(p->fatal_str),
                 "stored progress of topic \"%s\" partition %d (next offset %lld) is past the "
                 "partition's end (%lld): the topic was deleted and created again, or these are "
                 "other brokers. Start over with another postgres.schema and lake.dir, or "
                 "remove group \"%s\" from %s.ingest_offsets and the lake's progress",
                 p->cfg->kafka_topic, parts[i], (long long)mark, (long long)high[i],
                 p->cfg->kafka_group, p->cfg->pg_schema);
        tc_log_error("pipeline", "%s", p->fatal_str);
    }
    free(parts);
    free(high);
}

/*
 * --exit-when-idle: "everything consumed" means the store holds, for every partition of the topic,
 * a next offset at the partition's end -- whichever group member consumed it -- and so does every
 * other sink (durable, or taken by this process, which makes it durable on its way out). Asking the
 * store rather than looking at our own assignment matters after a crash: the dead predecessor keeps
 * its partitions until its session times out, and a restarted member that looked only at itself
 * would find nothing assigned and leave early.
 */
int tc_pipeline_topic_done(tc_pipeline *p)
{
    int32_t *parts = malloc(TC_TRACKED_MAX * sizeof(*parts));
    int64_t *high = malloc(TC_TRACKED_MAX * sizeof(*high));
    int64_t *next = malloc(TC_TRACKED_MAX * sizeof(*next));
    int done = parts && high && next && tc_pipeline_topic_done_in(p, parts, high, next);

    free(parts);
    free(high);
    free(next);
    return done;
}

/* tc_pipeline_topic_done with its arrays (TC_TRACKED_MAX each). */
static int tc_pipeline_topic_done_in(tc_pipeline *p, int32_t *parts, int64_t *high, int64_t *next)
{
    char errstr[TC_ERRSTR_MAX];
    int n = tc_consumer_topic_ends(p->consumer, p->cfg->kafka_topic, parts, high, TC_TRACKED_MAX,
                                   TC_ENDS_TIMEOUT_MS);

    if (n < 0 || p->primary.ops->primary->stored_many(p->primary.ctx, parts, (size_t)n, next,
                                                      errstr, sizeof(errstr)) != TC_OK)
        return 0;
    for (int i = 0; i < n; i++) {
        if (high[i] > 0 && next[i] < high[i])
            return 0;
        /* The other sinks, of the partitions this member has: what they took is made durable at
         * exit (another member's partitions are that member's to finish). */
        if (high[i] > 0 && (size_t)parts[i] < p->nmarks && p->marks[parts[i]].assigned &&
            tc_sinkset_behind(p->sinks, parts[i], high[i]))
            return 0;
        /* ...and of the others, what their storage says: with no partition yet (the group still
         * waits for killed members' sessions to end) the store may have the topic whole while
         * the lake does not. */
        if (high[i] > 0 && !((size_t)parts[i] < p->nmarks && p->marks[parts[i]].assigned) &&
            tc_sinkset_stored_behind(p->sinks, parts[i], high[i]))
            return 0;
    }
    return 1;
}
