/*
 * lookup.c -- one-off Kafka lookups; see lookup.h.
 */
#include "ingest/lookup.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/kafka.h"

/* A client that only asks questions: no group, no subscription. */
static rd_kafka_t *tc_lookup_client(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    char inner[TC_ERRSTR_MAX];
    rd_kafka_conf_t *conf = tc_kafka_conf_new(cfg, NULL, NULL, errstr, errstr_size);
    rd_kafka_t *rk;

    if (!conf)
        return NULL;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, inner, sizeof(inner));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        tc_err_set(TC_ERR_KAFKA, errstr, errstr_size, "could not create Kafka client: %s", inner);
    }
    return rk;
}

static int tc_bounds_cmp(const void *a, const void *b)
{
    const tc_kafka_bounds *x = a, *y = b;

    return (x->partition > y->partition) - (x->partition < y->partition);
}

tc_err tc_kafka_lookup_bounds(const tc_config *cfg, const char *topic, tc_kafka_bounds *out,
                              size_t cap, size_t *n, char *errstr, size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_resp_err_t kerr;
    rd_kafka_t *rk = tc_lookup_client(cfg, errstr, errstr_size);
    tc_err err = TC_OK;

    *n = 0;
    if (!rk)
        return TC_ERR_KAFKA;
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    kerr = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, TC_LOOKUP_TIMEOUT_MS)
               : RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        err = tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                         "could not read the metadata of topic \"%s\": %s", topic,
                         rd_kafka_err2str(kerr));
        goto out;
    }
    if (md->topic_cnt < 1 || md->topics[0].err || md->topics[0].partition_cnt == 0) {
        err =
            tc_err_set(TC_ERR_NOT_FOUND, errstr, errstr_size, "topic \"%s\" does not exist", topic);
        goto out;
    }
    for (int i = 0; i < md->topics[0].partition_cnt && *n < cap; i++) {
        tc_kafka_bounds *b = &out[(*n)++];
        b->partition = md->topics[0].partitions[i].id;
        kerr = rd_kafka_query_watermark_offsets(rk, topic, b->partition, &b->low, &b->high,
                                                TC_LOOKUP_TIMEOUT_MS);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            err = tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                             "could not read the offsets of topic \"%s\" partition %d: %s", topic,
                             b->partition, rd_kafka_err2str(kerr));
            goto out;
        }
    }
    qsort(out, *n, sizeof(*out), tc_bounds_cmp);
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return err;
}

tc_err tc_kafka_lookup_times(const tc_config *cfg, const char *topic, const int32_t *parts,
                             size_t n, int64_t time_ms, int64_t *offsets, char *errstr,
                             size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    rd_kafka_resp_err_t kerr;
    rd_kafka_t *rk = tc_lookup_client(cfg, errstr, errstr_size);
    tc_err err = TC_OK;

    if (!rk) {
        rd_kafka_topic_partition_list_destroy(l);
        return TC_ERR_KAFKA;
    }
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topic, parts[i])->offset = time_ms;
    kerr = rd_kafka_offsets_for_times(rk, l, TC_LOOKUP_TIMEOUT_MS);
    for (int i = 0; kerr == RD_KAFKA_RESP_ERR_NO_ERROR && i < l->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &l->elems[i];
        int64_t low, high;
        if (tp->err) {
            kerr = tp->err;
            break;
        }
        offsets[i] = tp->offset;
        if (offsets[i] < 0) {
            /* No message at or after the time: the end of the partition. */
            kerr = rd_kafka_query_watermark_offsets(rk, topic, tp->partition, &low, &high,
                                                    TC_LOOKUP_TIMEOUT_MS);
            offsets[i] = high;
        }
    }
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
        err = tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                         "could not look up the offsets of topic \"%s\" at time %lld ms: %s", topic,
                         (long long)time_ms, rd_kafka_err2str(kerr));
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return err;
}

tc_err tc_kafka_lookup_group(const tc_config *cfg, const char *group, size_t *members,
                             char *members_text, size_t text_size, char *errstr, size_t errstr_size)
{
    char inner[TC_ERRSTR_MAX];
    rd_kafka_t *rk = tc_lookup_client(cfg, errstr, errstr_size);
    rd_kafka_AdminOptions_t *o = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_ConsumerGroupDescription_t **gs;
    const char *groups[1] = {group};
    size_t cnt = 0, pos = 0;
    tc_err err = TC_OK;

    *members = 0;
    if (text_size)
        members_text[0] = '\0';
    if (!rk)
        return TC_ERR_KAFKA;
    q = rd_kafka_queue_new(rk);
    o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    rd_kafka_AdminOptions_set_request_timeout(o, TC_LOOKUP_TIMEOUT_MS, inner, sizeof(inner));
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, o, q);
    ev = rd_kafka_queue_poll(q, TC_LOOKUP_TIMEOUT_MS + 1000);
    if (!ev || rd_kafka_event_error(ev)) {
        err = tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                         "could not describe consumer group \"%s\": %s", group,
                         ev ? rd_kafka_event_error_string(ev) : "no answer from the brokers");
        goto out;
    }
    gs = rd_kafka_DescribeConsumerGroups_result_groups(
        rd_kafka_event_DescribeConsumerGroups_result(ev), &cnt);
    if (cnt < 1)
        goto out;
    if (rd_kafka_ConsumerGroupDescription_error(gs[0])) {
        const rd_kafka_error_t *e = rd_kafka_ConsumerGroupDescription_error(gs[0]);
        /* A group the brokers never heard of has no members. */
        if (rd_kafka_error_code(e) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND)
            err = tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                             "could not describe consumer group \"%s\": %s", group,
                             rd_kafka_error_string(e));
        goto out;
    }
    *members = rd_kafka_ConsumerGroupDescription_member_count(gs[0]);
    for (size_t i = 0; i < *members && pos + 1 < text_size; i++) {
        const rd_kafka_MemberDescription_t *m = rd_kafka_ConsumerGroupDescription_member(gs[0], i);
        int w =
            snprintf(members_text + pos, text_size - pos, "%s%s@%s", i ? ", " : "",
                     rd_kafka_MemberDescription_client_id(m), rd_kafka_MemberDescription_host(m));
        if (w < 0)
            break;
        pos += (size_t)w;
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (o)
        rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return err;
}
