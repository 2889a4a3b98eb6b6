/*
 * bench_consume.c -- the bare librdkafka consume limit, and the produce->visible latency of each
 * message of a topic.
 *
 * Consumes every message of TOPIC that exists when it starts (all partitions, from the low to the
 * high watermark) with librdkafka alone, and touches each payload (a byte sum), as fast as it can:
 * the rate no consumer built on librdkafka can beat on this machine and broker, for the pipeline's
 * rate to be compared with. It uses the pipeline's fetch settings (fetch.wait.max.ms,
 * queued.max.messages.kbytes) and its batch call (rd_kafka_consume_batch_queue of up to 1024
 * messages), and assigns the partitions itself instead of joining a group, so no rebalance delay
 * is counted. Time runs from the assignment to the last message; CPU is the process's user+system
 * time (librdkafka's threads included), as for the pipeline.
 *
 * With -l VISIBLE it also measures latency. VISIBLE holds lines "<unix us> <partition>
 * <next_offset>", in time order: a poller's observations of the store's ingest_offsets table, which
 * is written in the same transaction as the rows, so when next_offset moves past a message, that
 * message (row or dead letter) has become visible. A message's latency is the time of the first
 * observation that covers it minus its Kafka timestamp (CreateTime, set by the producer when the
 * message was produced). Percentiles are exact (all latencies sorted).
 *
 * Prints one JSON object.
 *
 * Usage: bench_consume [-b BROKERS] [-l VISIBLE] TOPIC   (BROKERS default:
 * $THERMOCLINE_KAFKA_BROKERS)
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

/* Messages per rd_kafka_consume_batch_queue call: the pipeline's TC_CONSUMER_FETCH_MAX. */
#define BENCH_FETCH_MAX 1024
/* Partitions of one topic we handle. */
#define BENCH_PARTITIONS_MAX 1024
/* Metadata and watermark queries. */
#define BENCH_QUERY_TIMEOUT_MS 10000
/* Give up when no message came for this long although some are missing. */
#define BENCH_STALL_MS 30000

typedef struct bench_part {
    int64_t low, high; /* watermarks at start: consume [low, high) */
    int64_t next;      /* next offset expected */
    int64_t *vis_t;    /* latency mode: observation times (us) ... */
    int64_t *vis_off;  /* ... and next_offset observed then, both ascending */
    size_t nvis, capvis, cur;
} bench_part;

static double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double bench_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int bench_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Read the poller's observations into the partitions; -1 on a malformed file. */
static int bench_load_visible(const char *path, bench_part *parts, int nparts)
{
    FILE *f = fopen(path, "r");
    long long t, off;
    int p, rc = 0;

    if (!f) {
        perror(path);
        return -1;
    }
    while (fscanf(f, "%lld %d %lld", &t, &p, &off) == 3) {
        bench_part *bp;
        if (p < 0 || p >= nparts)
            continue;
        bp = &parts[p];
        if (bp->nvis == bp->capvis) {
            size_t cap = bp->capvis ? bp->capvis * 2 : 1024;
            int64_t *nt = realloc(bp->vis_t, cap * sizeof(*nt));
            int64_t *no;
            if (!nt) {
                rc = -1;
                break;
            }
            bp->vis_t = nt;
            no = realloc(bp->vis_off, cap * sizeof(*no));
            if (!no) {
                rc = -1;
                break;
            }
            bp->vis_off = no;
            bp->capvis = cap;
        }
        bp->vis_t[bp->nvis] = t;
        bp->vis_off[bp->nvis] = off;
        bp->nvis++;
    }
    if (!feof(f))
        rc = -1;
    fclose(f);
    return rc;
}

/* More librdkafka properties, "k=v k=v" (the secure mode's TLS and SASL settings); 0 or -1. */
static int bench_extra_conf(rd_kafka_conf_t *conf, const char *spec, char *errstr, size_t size)
{
    char buf[2048], *save = NULL, *kv;

    if (!spec || !*spec)
        return 0;
    if (strlen(spec) >= sizeof(buf)) {
        snprintf(errstr, size, "longer than %zu bytes", sizeof(buf) - 1);
        return -1;
    }
    strcpy(buf, spec);
    for (kv = strtok_r(buf, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            snprintf(errstr, size, "\"%s\" is not key=value", kv);
            return -1;
        }
        *eq = '\0';
        if (rd_kafka_conf_set(conf, kv, eq + 1, errstr, size) != RD_KAFKA_CONF_OK)
            return -1;
    }
    return 0;
}

static void bench_usage(void)
{
    fprintf(stderr, "usage: bench_consume [-b BROKERS] [-l VISIBLE] TOPIC\n");
}

int main(int argc, char **argv)
{
    const char *brokers = getenv("THERMOCLINE_KAFKA_BROKERS"), *visible = NULL, *topic;
    static bench_part parts[BENCH_PARTITIONS_MAX];
    rd_kafka_message_t *msgs[BENCH_FETCH_MAX];
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf;
    rd_kafka_topic_partition_list_t *assign = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_queue_t *queue = NULL;
    uint64_t total = 0, got = 0, bytes = 0, sum = 0, late = 0;
    int64_t *lat = NULL;
    size_t nlat = 0;
    double t0, t_last, cpu0, cpu1, last_progress;
    char errstr[512];
    int nparts = 0, opt, rc = 1;

    while ((opt = getopt(argc, argv, "b:l:h")) != -1) {
        if (opt == 'b') {
            brokers = optarg;
        } else if (opt == 'l') {
            visible = optarg;
        } else {
            bench_usage();
            return opt == 'h' ? 0 : 2;
        }
    }
    if (optind != argc - 1 || !brokers) {
        bench_usage();
        return 2;
    }
    topic = argv[optind];

    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "group.id", "bench-consume", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "50", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "65536", errstr, sizeof(errstr))) {
        fprintf(stderr, "bench_consume: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    if (bench_extra_conf(conf, getenv("TC_BENCH_RDKAFKA"), errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "bench_consume: TC_BENCH_RDKAFKA: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "bench_consume: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt || rd_kafka_metadata(rk, 0, rkt, &md, BENCH_QUERY_TIMEOUT_MS) || md->topic_cnt != 1 ||
        md->topics[0].err) {
        fprintf(stderr, "bench_consume: no metadata for topic %s\n", topic);
        goto done;
    }
    nparts = md->topics[0].partition_cnt;
    if (nparts > BENCH_PARTITIONS_MAX) {
        fprintf(stderr, "bench_consume: more than %d partitions\n", BENCH_PARTITIONS_MAX);
        goto done;
    }
    assign = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++) {
        int32_t id = md->topics[0].partitions[i].id;
        bench_part *bp;
        if (id < 0 || id >= BENCH_PARTITIONS_MAX) {
            fprintf(stderr, "bench_consume: partition id %d out of range\n", (int)id);
            goto done;
        }
        bp = &parts[id];
        if (rd_kafka_query_watermark_offsets(rk, topic, id, &bp->low, &bp->high,
                                             BENCH_QUERY_TIMEOUT_MS)) {
            fprintf(stderr, "bench_consume: no watermarks for partition %d\n", (int)id);
            goto done;
        }
        bp->next = bp->low;
        total += (uint64_t)(bp->high - bp->low);
        if (bp->high > bp->low)
            rd_kafka_topic_partition_list_add(assign, topic, id)->offset = bp->low;
    }
    if (visible && bench_load_visible(visible, parts, BENCH_PARTITIONS_MAX) < 0) {
        fprintf(stderr, "bench_consume: cannot read %s\n", visible);
        goto done;
    }
    if (visible && total) {
        lat = malloc(total * sizeof(*lat));
        if (!lat) {
            fprintf(stderr, "bench_consume: out of memory\n");
            goto done;
        }
    }

    cpu0 = bench_cpu();
    t0 = t_last = last_progress = bench_now();
    if (rd_kafka_assign(rk, assign)) {
        fprintf(stderr, "bench_consume: assign failed\n");
        goto done;
    }
    queue = rd_kafka_queue_get_consumer(rk);
    while (got < total) {
        ssize_t n = rd_kafka_consume_batch_queue(queue, 100, msgs, BENCH_FETCH_MAX);
        double now = bench_now();
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            bench_part *bp = m->partition >= 0 && m->partition < BENCH_PARTITIONS_MAX
                                 ? &parts[m->partition]
                                 : NULL;
            const unsigned char *b = m->payload;
            /* Only messages of the range, each once (a refetch could repeat one). */
            if (bp && !m->err && m->offset >= bp->next && m->offset < bp->high) {
                for (size_t k = 0; k < m->len; k++)
                    sum += b[k];
                bytes += m->len;
                bp->next = m->offset + 1;
                got++;
                if (lat) {
                    int64_t ts = rd_kafka_message_timestamp(m, NULL);
                    /* First observation whose next_offset is past this message. */
                    while (bp->cur < bp->nvis && bp->vis_off[bp->cur] <= m->offset)
                        bp->cur++;
                    if (bp->cur < bp->nvis && ts >= 0)
                        lat[nlat++] = bp->vis_t[bp->cur] - ts * 1000;
                    else
                        late++;
                }
            }
            rd_kafka_message_destroy(m);
        }
        if (n > 0) {
            t_last = now;
            last_progress = now;
        } else if (now - last_progress > BENCH_STALL_MS / 1000.0) {
            fprintf(stderr, "bench_consume: stalled at %" PRIu64 " of %" PRIu64 " messages\n", got,
                    total);
            break;
        }
    }
    cpu1 = bench_cpu();

    printf("{\"topic\":\"%s\",\"partitions\":%d,\"messages\":%" PRIu64 ",\"expected\":%" PRIu64
           ",\"bytes\":%" PRIu64 ",\"checksum\":%" PRIu64
           ",\"seconds\":%.3f,\"rate\":%.0f,\"cpu_s\":%.2f,\"cpu_us_per_msg\":%.3f",
           topic, nparts, got, total, bytes, sum, t_last - t0,
           got ? (double)got / (t_last - t0) : 0.0, cpu1 - cpu0,
           got ? (cpu1 - cpu0) * 1e6 / (double)got : 0.0);
    if (lat) {
        double mean = 0;
        qsort(lat, nlat, sizeof(*lat), bench_cmp_i64);
        for (size_t i = 0; i < nlat; i++)
            mean += (double)lat[i];
        mean = nlat ? mean / (double)nlat / 1000.0 : 0;
#define BENCH_PCT(q) (nlat ? (double)lat[(size_t)((double)(nlat - 1) * (q))] / 1000.0 : 0.0)
        printf(",\"visible\":%zu,\"not_visible\":%" PRIu64
               ",\"latency_ms\":{\"min\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
               "\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
               nlat, late, BENCH_PCT(0), BENCH_PCT(0.5), BENCH_PCT(0.9), BENCH_PCT(0.99),
               BENCH_PCT(0.999), BENCH_PCT(1.0), mean);
#undef BENCH_PCT
    }
    printf("}\n");
    rc = got == total ? 0 : 1;
done:
    free(lat);
    for (int i = 0; i < BENCH_PARTITIONS_MAX; i++) {
        free(parts[i].vis_t);
        free(parts[i].vis_off);
    }
    if (queue)
        rd_kafka_queue_destroy(queue);
    if (assign)
        rd_kafka_topic_partition_list_destroy(assign);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    return rc;
}
