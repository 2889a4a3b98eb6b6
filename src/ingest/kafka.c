/*
 * kafka.c -- consumer, producer and topic administration over librdkafka; see kafka.h.
 */
#include "ingest/kafka.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/timeutil.h"
#include "ingest/confirm.h"

/* The first librdkafka whose SCRAM client-final-message Kafka 4.x accepts (librdkafka#4895). */
#define TC_KAFKA_SCRAM_FIXED 0x020601ff
/* How long topic creation may take before we call the broker unreachable. */
#define TC_ADMIN_TIMEOUT_MS 30000
/* How long brokers that refuse connections are given (a broker just starting) before an admin
 * request gives up, and the slices its wait is cut into. */
#define TC_ADMIN_UNREACHABLE_MS 5000
#define TC_ADMIN_SLICE_MS       100
/* The slice of a metadata request's wait: rd_kafka_metadata cannot be polled, only retried. */
#define TC_ADMIN_METADATA_SLICE_MS 500
/* Back-off bounds while the store cannot tell where an assigned partition resumes. */
#define TC_ASSIGN_BACKOFF_MIN_MS 100
#define TC_ASSIGN_BACKOFF_MAX_MS 5000
/* How long a seek may take to be acknowledged by librdkafka's fetcher. */
#define TC_SEEK_TIMEOUT_MS 10000
/* The fetch nudge (see tc_nudger_main): how long its requests may take (one slower than that has
 * missed its moment anyway), how often the leaders of the assigned partitions are looked up again,
 * and how many leaders it wakes at most. */
#define TC_NUDGE_TIMEOUT_MS     500
#define TC_NUDGE_LEADERS_TTL_US (10 * 1000000LL)
#define TC_NUDGE_LEADERS_MAX    64
/* How long after the queue was last seen near a limit the nudge goes on: the fetcher looks again
 * by itself within a second, so later nudges would find it fetching already. */
#define TC_NUDGE_HOLD_US 1000000LL

typedef struct tc_pstate {
    int64_t start; /* first offset not yet stored, -1 unknown */
    uint32_t gen;  /* bumped on every assignment and revocation of the partition */
    uint8_t assigned;
    uint8_t eof;
} tc_pstate;

/* The fetch nudge's thread and what it shares with the consumer's (under lock). */
typedef struct tc_nudger {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int running;
    int stop;
    int wanted;
    uint32_t gen;   /* bumped on every change of the assignment */
    int32_t *parts; /* the assigned partitions, copied on every change */
    size_t nparts;
    int64_t interval_us; /* kafka.fetch_nudge_ms; 0: no nudges */
    int64_t last_us;     /* when the consumer last asked for one (its own thread only) */
    int64_t near_us;     /* when the queue was last seen near a limit (its own thread only) */
    size_t min_msgs;     /* queued.min.messages */
    size_t max_kbytes;   /* queued.max.messages.kbytes */
} tc_nudger;

/* Partitions whose lag tc_consumer_lag reports (the rest are left out of /metrics). */
#define TC_CONSUMER_LAG_MAX 1024

struct tc_consumer {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    char *topic; /* the one subscribed topic */
    tc_consumer_hooks hooks;
    tc_pstate *ps;
    size_t nps;
    size_t nassigned;
    tc_nudger nudge;
    rd_kafka_message_t *rkm[TC_CONSUMER_FETCH_MAX];
    /* tc_consumer_lag's last figures (refreshed at most once a second). */
    int64_t lag_at_us;
    size_t nlag;
    int32_t lag_part[TC_CONSUMER_LAG_MAX];
    int64_t lag[TC_CONSUMER_LAG_MAX];
};

struct tc_producer {
    rd_kafka_t *rk;
    const tc_config *cfg; /* borrowed: the brokers an inferred delivery is checked at */
    tc_confirm *confirm;  /* messages whose delivery librdkafka inferred (confirm.h) */
    uint64_t failed;
    char last_error[TC_ERRSTR_MAX];
    int32_t npart; /* 1 + the highest partition in tally[] reported on */
    tc_producer_tally tally[TC_PRODUCER_PARTITIONS_MAX];
};

/* What to check, for librdkafka's complaints that mean a wrong kafka.brokers ("" otherwise). */
static const char *tc_kafka_hint(const char *msg)
{
    /* A PostgreSQL or HTTP server answers Kafka's first request with what reads as a huge size. */
    if (strstr(msg, "receive.message.max.bytes") || strstr(msg, "Invalid response size"))
        return " (something other than a Kafka broker answered: check kafka.brokers, "
               "THERMOCLINE_KAFKA_BROKERS; with the dev services: " TC_KAFKA_ENV_HINT ")";
    /* TLS and SASL: what to fix, since librdkafka says what failed in its own words. */
    if (strstr(msg, "certificate verify failed") || strstr(msg, "SSL handshake failed"))
        return " (the broker's certificate was not accepted: check kafka.tls.ca_file names the CA "
               "that signed it, that it has not expired, and that its name matches "
               "kafka.brokers)";
    if ((strstr(msg, "Authentication failed") || strstr(msg, "SASL authentication error")) &&
        strstr(msg, "SCRAM") && rd_kafka_version() < TC_KAFKA_SCRAM_FIXED)
        return " (check kafka.sasl.username and kafka.sasl.password_file; and this librdkafka, "
               "older than 2.6.1, computes SCRAM proofs that Kafka 4.x brokers refuse: use "
               "kafka.sasl.mechanism=PLAIN, inside TLS, with them)";
    if (strstr(msg, "Authentication failed") || strstr(msg, "SASL authentication error"))
        return " (check kafka.sasl.username, kafka.sasl.password_file and kafka.sasl.mechanism)";
    if (strstr(msg, "ApiVersion") && strstr(msg, "Disconnected"))
        return " (the broker closed the connection at once: a TLS or SASL listener spoken to in "
               "plaintext? check kafka.security_protocol)";
    if (strstr(msg, "authorization failed") || strstr(msg, "Authorization failed"))
        return " (the broker's ACLs refuse this principal: see docs/security.md for the ACLs "
               "Thermocline needs)";
    if (strstr(msg, "Connection refused") || strstr(msg, "Failed to resolve"))
        return " (check kafka.brokers, THERMOCLINE_KAFKA_BROKERS, and that Kafka runs; with the "
               "dev services: " TC_KAFKA_ENV_HINT ")";
    return "";
}

/* What to do when creating a topic is refused by the broker's ACLs ("" otherwise). */
static const char *tc_kafka_create_hint(const char *msg)
{
    if (msg && (strstr(msg, "uthorization failed") || strstr(msg, "AUTHORIZATION_FAILED")))
        return " (the broker's ACLs do not let this principal create or describe it: create the "
               "topics with an administrator's credentials (`thermocline topics create`) and set "
               "kafka.create_topic=false for the pipeline; docs/security.md lists its ACLs)";
    return "";
}

static void tc_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
    if (level <= 3)
        tc_log_error("kafka", "%s: %s%s", fac, buf, tc_kafka_hint(buf));
    else if (level == 4)
        tc_log_warn("kafka", "%s: %s%s", fac, buf, tc_kafka_hint(buf));
    else if (level <= 6)
        tc_log_info("kafka", "%s: %s", fac, buf);
    else
        tc_log_debug("kafka", "%s: %s", fac, buf);
}

static tc_err tc_kafka_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                           size_t errstr_size)
{
    char inner[TC_ERRSTR_MAX];

    if (rd_kafka_conf_set(conf, k, v, inner, sizeof(inner)) != RD_KAFKA_CONF_OK) {
        /* A password's value is not repeated, and librdkafka's message may quote it. */
        if (strstr(k, "password") || strstr(k, "secret") || strstr(k, ".pem"))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "invalid Kafka setting %s (value not shown)", k);
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "invalid Kafka setting %s=%s: %s", k,
                          v, inner);
    }
    return TC_OK;
}

/* The kafka.security_protocol, kafka.tls.* and kafka.sasl.* settings, as librdkafka properties;
 * the password is read from its file or variable here and wiped once librdkafka has a copy. */
static tc_err tc_kafka_set_security(rd_kafka_conf_t *conf, const tc_config *cfg, char *errstr,
                                    size_t errstr_size)
{
    static const struct {
        const char *prop;
        size_t off;
    } files[] = {
        {"ssl.ca.location", offsetof(tc_config, kafka_tls_ca_file)},
        {"ssl.certificate.location", offsetof(tc_config, kafka_tls_cert_file)},
        {"ssl.key.location", offsetof(tc_config, kafka_tls_key_file)},
    };
    char secret[TC_SECRET_MAX];
    int sasl = !strncasecmp(cfg->kafka_security_protocol, "sasl_", 5);
    tc_err err =
        tc_kafka_set(conf, "security.protocol", cfg->kafka_security_protocol, errstr, errstr_size);

    for (size_t i = 0; err == TC_OK && i < sizeof(files) / sizeof(files[0]); i++) {
        const char *v = *(char *const *)((const char *)cfg + files[i].off);
        if (*v)
            err = tc_kafka_set(conf, files[i].prop, v, errstr, errstr_size);
    }
    if (err == TC_OK && *cfg->kafka_tls_key_password_file) {
        err = tc_secret_get("kafka.tls.key_password_file", cfg->kafka_tls_key_password_file, NULL,
                            secret, sizeof(secret), errstr, errstr_size);
        if (err == TC_OK)
            err = tc_kafka_set(conf, "ssl.key.password", secret, errstr, errstr_size);
        tc_secret_wipe(secret, sizeof(secret));
    }
    if (err != TC_OK || !sasl)
        return err;
    if (!*cfg->kafka_sasl_username)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "kafka.security_protocol is %s but kafka.sasl.username is empty: set it "
                          "and kafka.sasl.password_file",
                          cfg->kafka_security_protocol);
    err = tc_kafka_set(conf, "sasl.mechanism", cfg->kafka_sasl_mechanism, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_kafka_set(conf, "sasl.username", cfg->kafka_sasl_username, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_secret_get("kafka.sasl.password_file", cfg->kafka_sasl_password_file,
                            cfg->kafka_sasl_password_env, secret, sizeof(secret), errstr,
                            errstr_size);
    if (err == TC_OK && !secret[0])
        err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                         "kafka.sasl.username is set but no password: set "
                         "kafka.sasl.password_file (or kafka.sasl.password_env)");
    if (err == TC_OK)
        err = tc_kafka_set(conf, "sasl.password", secret, errstr, errstr_size);
    tc_secret_wipe(secret, sizeof(secret));
    return err;
}

rd_kafka_conf_t *tc_kafka_conf_new(const tc_config *cfg, const char *const *defaults,
                                   const char *const *forced, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf;
    tc_err err;

    /* An empty address would make librdkafka wait for brokers that can never come. */
    if (!cfg->kafka_brokers || !*cfg->kafka_brokers) {
        tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                   "kafka.brokers is empty: set THERMOCLINE_KAFKA_BROKERS or kafka.brokers to "
                   "host:port (with the dev services: " TC_KAFKA_ENV_HINT ")");
        return NULL;
    }
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, tc_kafka_log_cb);
    err = tc_kafka_set(conf, "bootstrap.servers", cfg->kafka_brokers, errstr, errstr_size);
    if (err == TC_OK)
        err = tc_kafka_set(conf, "client.id", "thermocline", errstr, errstr_size);
    for (int i = 0; err == TC_OK && defaults && defaults[i]; i += 2)
        err = tc_kafka_set(conf, defaults[i], defaults[i + 1], errstr, errstr_size);
    if (err == TC_OK)
        err = tc_kafka_set_security(conf, cfg, errstr, errstr_size);
    for (int i = 0; err == TC_OK && i < cfg->rdkafka_count; i++)
        err = tc_kafka_set(conf, cfg->rdkafka_keys[i], cfg->rdkafka_values[i], errstr, errstr_size);
    for (int i = 0; err == TC_OK && forced && forced[i]; i += 2)
        err = tc_kafka_set(conf, forced[i], forced[i + 1], errstr, errstr_size);
    if (err != TC_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

static tc_pstate *tc_consumer_pstate(tc_consumer *c, int32_t p)
{
    tc_pstate *ps;
    size_t n;

    if (p < 0)
        return NULL;
    if ((size_t)p >= c->nps) {
        n = (size_t)p + 1 > c->nps * 2 ? (size_t)p + 1 : c->nps * 2;
        ps = realloc(c->ps, n * sizeof(*ps));
        if (!ps)
            return NULL;
        for (size_t i = c->nps; i < n; i++)
            ps[i] = (tc_pstate){-1, 0, 0, 0};
        c->ps = ps;
        c->nps = n;
    }
    return &c->ps[p];
}

/*
 * The fetch nudge. librdkafka before 2.3 stops fetching once its queue holds queued.min.messages
 * (or queued.max.messages.kbytes), and looks at the queue again only when its broker thread is
 * woken by a request, or up to a second later (librdkafka issue #2879; 2.3.0 made that second
 * fetch.queue.backoff.ms). A pipeline that drains the queue sooner sits idle for the rest of the
 * second: in bench/run-e2e, dips to one busy core once a second and 10 to 20 % of the rate. So
 * while the queue is near either limit and for a second after (tc_nudger_want), this thread
 * sends, at most every kafka.fetch_nudge_ms, a ListOffsets request
 * (rd_kafka_query_watermark_offsets) to the leader of the assigned partitions -- one partition
 * per leader: serving it wakes that broker's thread, which fetches again if the queue has room,
 * and does nothing otherwise. The requests are made here so that the consumer's thread never
 * waits for one.
 */
static int tc_nudger_has(const int32_t *parts, size_t n, int32_t p)
{
    for (size_t i = 0; i < n; i++) {
        if (parts[i] == p)
            return 1;
    }
    return 0;
}

/* One assigned partition per leader into targets (at most TC_NUDGE_LEADERS_MAX); without metadata,
 * the first assigned partition. Returns how many. */
static size_t tc_nudger_targets(tc_consumer *c, const int32_t *parts, size_t nparts,
                                int32_t *targets)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, c->topic, NULL);
    int32_t leaders[TC_NUDGE_LEADERS_MAX];
    size_t n = 0;

    if (rkt && rd_kafka_metadata(c->rk, 0, rkt, &md, TC_NUDGE_TIMEOUT_MS) == 0 &&
        md->topic_cnt == 1) {
        const rd_kafka_metadata_topic_t *t = &md->topics[0];
        for (int i = 0; i < t->partition_cnt && n < TC_NUDGE_LEADERS_MAX; i++) {
            const rd_kafka_metadata_partition_t *mp = &t->partitions[i];
            size_t k = 0;
            if (!tc_nudger_has(parts, nparts, mp->id))
                continue;
            while (k < n && leaders[k] != mp->leader)
                k++;
            if (k == n) {
                leaders[n] = mp->leader;
                targets[n++] = mp->id;
            }
        }
    }
    if (n == 0 && nparts > 0)
        targets[n++] = parts[0];
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return n;
}

static void *tc_nudger_main(void *arg)
{
    tc_consumer *c = arg;
    tc_nudger *nu = &c->nudge;
    int32_t targets[TC_NUDGE_LEADERS_MAX];
    size_t ntargets = 0;
    uint32_t gen = 0;
    int64_t looked_up = 0, lo, hi;

    pthread_mutex_lock(&nu->lock);
    for (;;) {
        while (!nu->wanted && !nu->stop)
            pthread_cond_wait(&nu->wake, &nu->lock);
        if (nu->stop)
            break;
        nu->wanted = 0;
        if (gen != nu->gen || looked_up == 0 ||
            tc_time_now_us() - looked_up >= TC_NUDGE_LEADERS_TTL_US) {
            size_t nparts = nu->nparts;
            int32_t *parts = malloc((nparts + 1) * sizeof(*parts));
            if (!parts)
                continue;
            memcpy(parts, nu->parts, nparts * sizeof(*parts));
            gen = nu->gen;
            pthread_mutex_unlock(&nu->lock);
            ntargets = tc_nudger_targets(c, parts, nparts, targets);
            looked_up = tc_time_now_us();
            free(parts);
            pthread_mutex_lock(&nu->lock);
        }
        /* A stop waits for one request at most, not for all of them (the brokers may be down).
         * The answer does not matter, nor does a failure: sending the request was the point. */
        for (size_t i = 0; i < ntargets && !nu->stop; i++) {
            pthread_mutex_unlock(&nu->lock);
            (void)rd_kafka_query_watermark_offsets(c->rk, c->topic, targets[i], &lo, &hi,
                                                   TC_NUDGE_TIMEOUT_MS);
            pthread_mutex_lock(&nu->lock);
        }
    }
    pthread_mutex_unlock(&nu->lock);
    return NULL;
}

/* The assignment changed (consumer's thread): give the nudge the partitions now assigned. */
static void tc_nudger_assigned(tc_consumer *c)
{
    tc_nudger *nu = &c->nudge;
    int32_t *parts;
    size_t n = 0;

    if (!nu->running)
        return;
    parts = malloc((c->nassigned + 1) * sizeof(*parts));
    if (!parts)
        return; /* the nudge goes on with the partitions it knew */
    for (size_t i = 0; i < c->nps && n < c->nassigned; i++) {
        if (c->ps[i].assigned)
            parts[n++] = (int32_t)i;
    }
    pthread_mutex_lock(&nu->lock);
    free(nu->parts);
    nu->parts = parts;
    nu->nparts = n;
    nu->gen++;
    pthread_mutex_unlock(&nu->lock);
}

/* Whether the queue held half of either limit or more before a poll took got messages (c->rkm)
 * from it: the fetcher may have stopped on it. Its bytes are estimated from the messages taken. */
static int tc_nudger_near_limit(tc_consumer *c, size_t got)
{
    size_t queued = rd_kafka_queue_length(c->queue) + got, bytes = 0;

    if (queued >= c->nudge.min_msgs / 2)
        return 1;
    for (size_t i = 0; i < got; i++)
        bytes += c->rkm[i]->len + c->rkm[i]->key_len;
    return (double)queued * ((double)bytes / (double)got) >=
           (double)c->nudge.max_kbytes * 1024.0 / 2.0;
}

/*
 * After a poll that took got messages (maybe none), at most every kafka.fetch_nudge_ms: ask for a
 * nudge while the queue is near a limit, and for a second after it was last seen so. The nudges
 * that matter come after it: a pipeline may drain a small queue within one interval, and a nudge
 * served while the queue was still full does nothing (the consumer polls at that interval
 * meanwhile, tc_nudger_poll_ms, so the nudge follows the drain even when nothing more comes).
 */
static void tc_nudger_want(tc_consumer *c, size_t got)
{
    tc_nudger *nu = &c->nudge;
    int64_t now;

    if (!nu->running)
        return;
    now = tc_time_now_us();
    if (now - nu->last_us < nu->interval_us)
        return;
    if (got && tc_nudger_near_limit(c, got))
        nu->near_us = now;
    if (now - nu->near_us >= TC_NUDGE_HOLD_US)
        return;
    nu->last_us = now;
    pthread_mutex_lock(&nu->lock);
    nu->wanted = 1;
    pthread_cond_signal(&nu->wake);
    pthread_mutex_unlock(&nu->lock);
}

/* A poll's timeout, shortened to the nudge's interval while nudges may be due. */
static int tc_nudger_poll_ms(const tc_consumer *c, int timeout_ms)
{
    const tc_nudger *nu = &c->nudge;
    int interval_ms = (int)(nu->interval_us / 1000);

    if (!nu->running || timeout_ms <= interval_ms ||
        tc_time_now_us() - nu->near_us >= TC_NUDGE_HOLD_US)
        return timeout_ms;
    return interval_ms;
}

/* The queue limits the fetcher stops at, as configured (librdkafka's defaults otherwise). */
static void tc_nudger_limits(tc_consumer *c, const rd_kafka_conf_t *conf)
{
    char buf[32];
    size_t size = sizeof(buf);

    c->nudge.min_msgs = 100000;
    c->nudge.max_kbytes = 65536;
    if (rd_kafka_conf_get(conf, "queued.min.messages", buf, &size) == RD_KAFKA_CONF_OK)
        c->nudge.min_msgs = strtoull(buf, NULL, 10);
    size = sizeof(buf);
    if (rd_kafka_conf_get(conf, "queued.max.messages.kbytes", buf, &size) == RD_KAFKA_CONF_OK)
        c->nudge.max_kbytes = strtoull(buf, NULL, 10);
}

static void tc_nudger_start(tc_consumer *c, int64_t interval_ms)
{
    tc_nudger *nu = &c->nudge;

    nu->interval_us = interval_ms * 1000;
    if (interval_ms <= 0)
        return;
    pthread_mutex_init(&nu->lock, NULL);
    pthread_cond_init(&nu->wake, NULL);
    if (pthread_create(&nu->thread, NULL, tc_nudger_main, c) != 0) {
        tc_log_warn("consumer", "could not start the fetch nudge (fetching may pause for up to a "
                                "second whenever the consumer queue is full)");
        pthread_cond_destroy(&nu->wake);
        pthread_mutex_destroy(&nu->lock);
        return;
    }
    nu->running = 1;
}

static void tc_nudger_stop(tc_consumer *c)
{
    tc_nudger *nu = &c->nudge;

    if (!nu->running)
        return;
    pthread_mutex_lock(&nu->lock);
    nu->stop = 1;
    pthread_cond_signal(&nu->wake);
    pthread_mutex_unlock(&nu->lock);
    pthread_join(nu->thread, NULL);
    pthread_cond_destroy(&nu->wake);
    pthread_mutex_destroy(&nu->lock);
    free(nu->parts);
    nu->parts = NULL;
    nu->running = 0;
}

static void tc_consumer_on_assign(tc_consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    int32_t *ids = calloc((size_t)parts->cnt + 1, sizeof(*ids));
    int64_t *next = calloc((size_t)parts->cnt + 1, sizeof(*next));
    long backoff = TC_ASSIGN_BACKOFF_MIN_MS;
    int cooperative = !strcmp(rd_kafka_rebalance_protocol(c->rk), "COOPERATIVE");
    rd_kafka_error_t *error = NULL;
    tc_err err;

    if (!ids || !next) {
        tc_log_error("consumer", "out of memory handling partition assignment");
        abort();
    }
    for (int i = 0; i < parts->cnt; i++)
        ids[i] = parts->elems[i].partition;
    /* The store is the truth about where to resume; without it we cannot consume correctly, so
     * wait for it (the group tolerates this up to max.poll.interval.ms). */
    while ((err = c->hooks.on_assign(c->hooks.opaque, ids, (size_t)parts->cnt, next)) != TC_OK) {
        if (err == TC_ERR_STOPPED) {
            /* Shutting down: take nothing; closing the consumer hands the partitions back. */
            free(ids);
            free(next);
            return;
        }
        tc_log_warn("consumer", "could not read stored offsets (%s); retrying in %ld ms",
                    tc_err_name(err), backoff);
        tc_time_sleep_ms(backoff);
        backoff = backoff * 2 > TC_ASSIGN_BACKOFF_MAX_MS ? TC_ASSIGN_BACKOFF_MAX_MS : backoff * 2;
    }
    for (int i = 0; i < parts->cnt; i++) {
        tc_pstate *ps = tc_consumer_pstate(c, ids[i]);
        /* Nothing stored yet means start from the beginning: Kafka's committed offset is never
         * trusted over the store's, because it may run ahead of what was made durable. */
        parts->elems[i].offset = next[i] >= 0 ? next[i] : RD_KAFKA_OFFSET_BEGINNING;
        if (ps) {
            ps->start = next[i];
            ps->gen++;
            ps->eof = 0;
            if (!ps->assigned)
                c->nassigned++;
            ps->assigned = 1;
        }
        tc_log_input in = {parts->elems[i].topic, ids[i], next[i] >= 0 ? next[i] : -1, NULL, 0};
        if (next[i] >= 0)
            tc_log_in(TC_LOG_INFO, "consumer", &in, "assigned %s [%d] from offset %lld",
                      parts->elems[i].topic, ids[i], (long long)next[i]);
        else
            tc_log_in(TC_LOG_INFO, "consumer", &in,
                      "assigned %s [%d] from the start (nothing stored yet)", parts->elems[i].topic,
                      ids[i]);
    }
    tc_nudger_assigned(c);
    if (cooperative)
        error = rd_kafka_incremental_assign(c->rk, parts);
    else if (rd_kafka_assign(c->rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        tc_log_error("consumer", "could not assign partitions");
    if (error) {
        tc_log_error("consumer", "could not assign partitions: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    free(ids);
    free(next);
}

static void tc_consumer_on_revoke(tc_consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    int32_t *ids = calloc((size_t)parts->cnt + 1, sizeof(*ids));
    int lost = rd_kafka_assignment_lost(c->rk);
    int cooperative = !strcmp(rd_kafka_rebalance_protocol(c->rk), "COOPERATIVE");
    rd_kafka_error_t *error = NULL;

    if (!ids) {
        tc_log_error("consumer", "out of memory handling partition revocation");
        abort();
    }
    for (int i = 0; i < parts->cnt; i++)
        ids[i] = parts->elems[i].partition;
    c->hooks.on_revoke(c->hooks.opaque, ids, (size_t)parts->cnt, lost);
    for (int i = 0; i < parts->cnt; i++) {
        tc_pstate *ps = tc_consumer_pstate(c, ids[i]);
        if (ps)
            ps->gen++;
        if (ps && ps->assigned) {
            ps->assigned = 0;
            c->nassigned--;
        }
        tc_log_input in = {parts->elems[i].topic, ids[i], -1, NULL, 0};
        tc_log_in(TC_LOG_INFO, "consumer", &in, "%s %s [%d]", lost ? "lost" : "revoked",
                  parts->elems[i].topic, ids[i]);
    }
    tc_nudger_assigned(c);
    if (cooperative)
        error = rd_kafka_incremental_unassign(c->rk, parts);
    else
        rd_kafka_assign(c->rk, NULL);
    if (error) {
        tc_log_error("consumer", "could not unassign: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    free(ids);
}

static void tc_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        tc_consumer_on_assign(opaque, parts);
    else
        tc_consumer_on_revoke(opaque, parts);
}

tc_consumer *tc_consumer_new(const tc_config *cfg, const tc_consumer_hooks *hooks, char *errstr,
                             size_t errstr_size)
{
    static const char *const defaults[] = {
        "partition.assignment.strategy", "cooperative-sticky", "auto.offset.reset", "earliest",
        /* Fetch in big chunks; the pipeline's own batching bounds latency. The queue stops the
         * fetcher at 50,000 messages (a quarter of a second at 200K/s) or 32 MiB: with the fetch
         * nudge waking the fetcher within kafka.fetch_nudge_ms of the queue going below that, a
         * larger queue only adds to the peak RSS -- librdkafka keeps about 800 bytes per queued
         * reading of 220 (100,000: 40 MiB more in bench/run-e2e, no faster). The rdkafka.* keys
         * override both. */
        "fetch.wait.max.ms", "50", "queued.min.messages", "50000", "queued.max.messages.kbytes",
        "32768", "session.timeout.ms", "10000", "heartbeat.interval.ms", "1000", NULL};
    /* Offsets are the store's business (see kafka.h): these cannot be overridden. */
    static const char *const forced[] = {"enable.auto.commit",
                                         "false",
                                         "enable.auto.offset.store",
                                         "false",
                                         "enable.partition.eof",
                                         "true",
                                         NULL};
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_conf_t *conf;
    tc_consumer *c;
    char inner[TC_ERRSTR_MAX];
    rd_kafka_resp_err_t rerr;

    c = calloc(1, sizeof(*c));
    if (!c) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    c->hooks = *hooks;
    c->topic = strdup(cfg->kafka_topic);
    if (!c->topic) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto fail;
    }
    conf = tc_kafka_conf_new(cfg, defaults, forced, errstr, errstr_size);
    if (!conf)
        goto fail;
    if (tc_kafka_set(conf, "group.id", cfg->kafka_group, errstr, errstr_size) != TC_OK) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_conf_set_rebalance_cb(conf, tc_rebalance_cb);
    rd_kafka_conf_set_opaque(conf, c);
    tc_nudger_limits(c, conf);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, inner, sizeof(inner));
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        tc_err_set(TC_ERR_KAFKA, errstr, errstr_size, "could not create Kafka consumer: %s", inner);
        goto fail;
    }
    rd_kafka_poll_set_consumer(c->rk);
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    tc_nudger_start(c, cfg->kafka_fetch_nudge_ms);
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, cfg->kafka_topic, RD_KAFKA_PARTITION_UA);
    rerr = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (rerr) {
        tc_err_set(TC_ERR_KAFKA, errstr, errstr_size, "could not subscribe to \"%s\": %s",
                   cfg->kafka_topic, rd_kafka_err2str(rerr));
        goto fail;
    }
    return c;
fail:
    tc_nudger_stop(c);
    if (c->queue)
        rd_kafka_queue_destroy(c->queue);
    if (c->rk)
        rd_kafka_destroy(c->rk);
    free(c->topic);
    free(c);
    return NULL;
}

/*
 * Messages are taken one rd_kafka_consumer_poll at a time, not with rd_kafka_consume_batch_queue:
 * in librdkafka before 2.1.0 (Debian 12 ships 2.0.2) the batch call skips offsets of a partition
 * that is paused and resumed under it, which a cooperative rebalance does to every partition the
 * member keeps -- messages lost without a trace. A rebalance callback may run between two of these
 * calls; the generation recorded with each message tells afterwards which ones were fetched under
 * an assignment that has changed since.
 */
size_t tc_consumer_poll(tc_consumer *c, int timeout_ms, tc_message *out, size_t max)
{
    uint32_t gens[TC_CONSUMER_FETCH_MAX];
    rd_kafka_message_t *m;
    size_t got = 0, k = 0;

    if (max > TC_CONSUMER_FETCH_MAX)
        max = TC_CONSUMER_FETCH_MAX;
    timeout_ms = tc_nudger_poll_ms(c, timeout_ms);
    while (got < max && (m = rd_kafka_consumer_poll(c->rk, got ? 0 : timeout_ms)) != NULL) {
        tc_pstate *ps = m->err ? NULL : tc_consumer_pstate(c, m->partition);
        gens[got] = ps ? ps->gen : 0;
        c->rkm[got++] = m;
    }
    tc_nudger_want(c, got);
    for (size_t i = 0; i < got; i++) {
        tc_pstate *ps;
        m = c->rkm[i];
        ps = tc_consumer_pstate(c, m->partition);
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (ps)
                ps->eof = 1;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            tc_log_input in = {c->topic, m->partition, m->offset >= 0 ? m->offset : -1, NULL, 0};
            tc_log_in(TC_LOG_WARN, "consumer", &in, "consume error on partition %d: %s%s",
                      m->partition, rd_kafka_message_errstr(m),
                      tc_kafka_hint(rd_kafka_message_errstr(m)));
            rd_kafka_message_destroy(m);
            continue;
        }
        /* Drop what is already stored, and what belongs to a partition revoked while this array
         * was being filled: its new owner will read it. */
        if (!ps || !ps->assigned || ps->gen != gens[i] ||
            (ps->start >= 0 && m->offset < ps->start)) {
            rd_kafka_message_destroy(m);
            continue;
        }
        ps->eof = 0;
        out[k] = (tc_message){
            .payload = m->payload,
            .len = m->len,
            .key = m->key,
            .key_len = m->key_len,
            .partition = m->partition,
            .offset = m->offset,
            .timestamp_ms = rd_kafka_message_timestamp(m, NULL),
            .opaque_ = m,
        };
        k++;
    }
    return k;
}

void tc_consumer_release(tc_consumer *c, tc_message *m)
{
    (void)c;
    if (m->opaque_)
        rd_kafka_message_destroy(m->opaque_);
    m->opaque_ = NULL;
}

tc_err tc_consumer_seek(tc_consumer *c, const tc_partition_offset *offs, size_t n, char *errstr,
                        size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n + 1);
    rd_kafka_error_t *error = NULL;
    tc_err err = TC_OK;

    for (size_t i = 0; i < n; i++) {
        tc_pstate *ps = tc_consumer_pstate(c, offs[i].partition);
        if (!ps || !ps->assigned)
            continue;
        rd_kafka_topic_partition_list_add(list, c->topic, offs[i].partition)->offset =
            offs[i].next_offset >= 0 ? offs[i].next_offset : RD_KAFKA_OFFSET_BEGINNING;
        /* Lower the drop mark with the position, or poll would discard the stretch read again. */
        ps->start = offs[i].next_offset;
        ps->eof = 0;
    }
    /* librdkafka bumps each partition's fetch version here: messages already fetched from the old
     * position are discarded, never handed out after the seek. */
    if (list->cnt > 0)
        error = rd_kafka_seek_partitions(c->rk, list, TC_SEEK_TIMEOUT_MS);
    if (error) {
        err = tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size, "could not seek \"%s\": %s",
                         c->topic, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    for (int i = 0; err == TC_OK && i < list->cnt; i++) {
        if (list->elems[i].err)
            err = tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                             "could not seek \"%s\" [%d] to offset %lld: %s", c->topic,
                             list->elems[i].partition, (long long)list->elems[i].offset,
                             rd_kafka_err2str(list->elems[i].err));
    }
    rd_kafka_topic_partition_list_destroy(list);
    return err;
}

tc_err tc_consumer_pause(tc_consumer *c, int pause, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *asg = NULL;
    rd_kafka_resp_err_t rerr = rd_kafka_assignment(c->rk, &asg);

    if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR && asg->cnt > 0)
        rerr =
            pause ? rd_kafka_pause_partitions(c->rk, asg) : rd_kafka_resume_partitions(c->rk, asg);
    if (asg)
        rd_kafka_topic_partition_list_destroy(asg);
    if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR)
        return tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size, "could not %s \"%s\": %s",
                          pause ? "pause" : "resume", c->topic ? c->topic : "?",
                          rd_kafka_err2str(rerr));
    return TC_OK;
}

void tc_consumer_commit(tc_consumer *c, const tc_partition_offset *offs, size_t n, int wait)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t err;
    char *topic = NULL;

    if (n == 0)
        return;
    list = rd_kafka_topic_partition_list_new((int)n);
    /* The subscription has exactly one topic: read its name from the assignment. */
    {
        rd_kafka_topic_partition_list_t *asg = NULL;
        if (rd_kafka_assignment(c->rk, &asg) == RD_KAFKA_RESP_ERR_NO_ERROR && asg->cnt > 0)
            topic = strdup(asg->elems[0].topic);
        if (asg)
            rd_kafka_topic_partition_list_destroy(asg);
    }
    if (topic) {
        for (size_t i = 0; i < n; i++) {
            tc_pstate *ps = tc_consumer_pstate(c, offs[i].partition);
            if (ps && ps->assigned)
                rd_kafka_topic_partition_list_add(list, topic, offs[i].partition)->offset =
                    offs[i].next_offset;
        }
        if (list->cnt > 0 && (err = rd_kafka_commit(c->rk, list, !wait)) != 0)
            tc_log_warn("consumer", "could not commit offsets to Kafka: %s", rd_kafka_err2str(err));
    }
    free(topic);
    rd_kafka_topic_partition_list_destroy(list);
}

int tc_consumer_caught_up(const tc_consumer *c)
{
    if (c->nassigned == 0)
        return 0;
    for (size_t i = 0; i < c->nps; i++) {
        if (c->ps[i].assigned && !c->ps[i].eof)
            return 0;
    }
    return 1;
}

size_t tc_consumer_assigned(const tc_consumer *c)
{
    return c->nassigned;
}

size_t tc_consumer_lag(tc_consumer *c, int32_t *parts, int64_t *lag, size_t max)
{
    int64_t now = tc_time_now_us();
    rd_kafka_topic_partition_list_t *list = NULL;
    size_t n;

    if (now - c->lag_at_us >= 1000000 && rd_kafka_assignment(c->rk, &list) == 0 && list) {
        c->nlag = 0;
        if (rd_kafka_position(c->rk, list) == 0) {
            for (int i = 0; i < list->cnt && c->nlag < TC_CONSUMER_LAG_MAX; i++) {
                const rd_kafka_topic_partition_t *tp = &list->elems[i];
                int64_t lo = -1, hi = -1, pos = tp->offset;
                if (rd_kafka_get_watermark_offsets(c->rk, tp->topic, tp->partition, &lo, &hi) !=
                        RD_KAFKA_RESP_ERR_NO_ERROR ||
                    hi < 0)
                    continue; /* nothing fetched yet: no figure, rather than a wrong one */
                if (pos < 0)
                    pos = lo < 0 ? 0 : lo;
                c->lag_part[c->nlag] = tp->partition;
                c->lag[c->nlag++] = hi > pos ? hi - pos : 0;
            }
        }
        rd_kafka_topic_partition_list_destroy(list);
        c->lag_at_us = now;
    }
    n = c->nlag < max ? c->nlag : max;
    memcpy(parts, c->lag_part, n * sizeof(*parts));
    memcpy(lag, c->lag, n * sizeof(*lag));
    return n;
}

int tc_consumer_topic_ends(tc_consumer *c, const char *topic, int32_t *parts, int64_t *high,
                           size_t cap, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, topic, NULL);
    int n = -1;

    if (!rkt)
        return -1;
    if (rd_kafka_metadata(c->rk, 0, rkt, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        n = 0;
        for (int i = 0; i < md->topics[0].partition_cnt && (size_t)n < cap; i++) {
            int64_t lo, hi;
            int32_t p = md->topics[0].partitions[i].id;
            if (rd_kafka_query_watermark_offsets(c->rk, topic, p, &lo, &hi, timeout_ms) !=
                RD_KAFKA_RESP_ERR_NO_ERROR) {
                n = -1;
                break;
            }
            parts[n] = p;
            high[n] = hi;
            n++;
        }
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

void tc_consumer_destroy(tc_consumer *c)
{
    if (!c)
        return;
    tc_nudger_stop(c);
    rd_kafka_consumer_close(c->rk);
    rd_kafka_queue_destroy(c->queue);
    rd_kafka_destroy(c->rk);
    free(c->ps);
    free(c->topic);
    free(c);
}

/* What the brokers of a one-shot admin client said (its error callback), so that a wrong
 * kafka.brokers ends early with what to fix instead of a bare timeout. */
typedef struct tc_admin_watch {
    int non_kafka;   /* something answered, but not in Kafka's protocol */
    int unreachable; /* connections refused, or the name did not resolve */
    char last[256];
} tc_admin_watch;

static void tc_admin_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    tc_admin_watch *w = opaque;

    (void)rk;
    /* A PostgreSQL or HTTP server answers a Kafka request with bytes librdkafka reads as a huge
     * response size ("Invalid response size ...: increase receive.message.max.bytes"). */
    if (strstr(reason, "receive.message.max.bytes") || strstr(reason, "Invalid response size"))
        w->non_kafka = 1;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
        err == RD_KAFKA_RESP_ERR__RESOLVE)
        w->unreachable = 1;
    snprintf(w->last, sizeof(w->last), "%s", reason);
}

/* Whether an admin wait that has lasted waited_ms should give up now: a non-Kafka answer at
 * once, brokers that refuse connections after TC_ADMIN_UNREACHABLE_MS. */
static int tc_admin_hopeless(const tc_admin_watch *w, int waited_ms)
{
    return w->non_kafka || (w->unreachable && waited_ms >= TC_ADMIN_UNREACHABLE_MS);
}

/* A one-shot client for admin requests, its brokers' errors collected in *watch. */
static rd_kafka_t *tc_admin_client_new(const tc_config *cfg, tc_admin_watch *watch, char *errstr,
                                       size_t errstr_size)
{
    char inner[TC_ERRSTR_MAX];
    rd_kafka_conf_t *conf = tc_kafka_conf_new(cfg, NULL, NULL, errstr, errstr_size);
    rd_kafka_t *rk;

    if (!conf)
        return NULL;
    rd_kafka_conf_set_error_cb(conf, tc_admin_error_cb);
    rd_kafka_conf_set_opaque(conf, watch);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, inner, sizeof(inner));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        tc_err_set(TC_ERR_KAFKA, errstr, errstr_size, "could not create Kafka client: %s", inner);
    }
    return rk;
}

tc_topic_plan tc_kafka_topic_plan(int64_t want_rf, int64_t want_isr, int brokers)
{
    tc_topic_plan plan = {0};
    int64_t rf = want_rf < 1 ? 1 : want_rf, isr = want_isr < 1 ? 1 : want_isr;

    if (brokers >= 1 && rf > brokers) {
        rf = brokers;
        plan.rf_capped = 1;
    }
    if (isr > rf) {
        isr = rf;
        plan.isr_capped = 1;
    }
    plan.replication_factor = (int)rf;
    plan.min_insync_replicas = (int)isr;
    return plan;
}

/* The number of brokers in the cluster, or -1 when it did not answer: asked in slices, so that a
 * wrong kafka.brokers gives up as early as topic creation does (tc_admin_hopeless). */
static int tc_admin_broker_count(rd_kafka_t *rk, const tc_admin_watch *watch)
{
    for (int waited = 0; waited < TC_ADMIN_TIMEOUT_MS; waited += TC_ADMIN_METADATA_SLICE_MS) {
        const struct rd_kafka_metadata *md = NULL;
        int n = -1;

        if (rd_kafka_metadata(rk, 0, NULL, &md, TC_ADMIN_METADATA_SLICE_MS) ==
            RD_KAFKA_RESP_ERR_NO_ERROR)
            n = md->broker_cnt;
        if (md)
            rd_kafka_metadata_destroy(md);
        if (n >= 0)
            return n;
        rd_kafka_poll(rk, 0);
        if (tc_admin_hopeless(watch, waited))
            break;
    }
    return -1;
}

tc_err tc_kafka_ensure_topic(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    char inner[TC_ERRSTR_MAX], retention[32], isr[16];
    rd_kafka_NewTopic_t *nt = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    tc_admin_watch watch = {0};
    rd_kafka_t *rk = tc_admin_client_new(cfg, &watch, errstr, errstr_size);
    tc_topic_plan plan;
    int brokers;
    tc_err err = TC_OK;

    if (!rk)
        return TC_ERR_KAFKA;
    brokers = tc_admin_broker_count(rk, &watch);
    plan =
        tc_kafka_topic_plan(cfg->kafka_replication_factor, cfg->kafka_min_insync_replicas, brokers);
    if (brokers < 0)
        goto unanswered;
    nt = rd_kafka_NewTopic_new(cfg->kafka_topic, (int)cfg->kafka_partitions,
                               plan.replication_factor, inner, sizeof(inner));
    if (!nt) {
        err = tc_err_set(TC_ERR_CONFIG, errstr, errstr_size, "invalid topic \"%s\": %s",
                         cfg->kafka_topic, inner);
        goto out;
    }
    snprintf(retention, sizeof(retention), "%lld", (long long)cfg->kafka_retention_ms);
    rd_kafka_NewTopic_set_config(nt, "retention.ms", retention);
    snprintf(isr, sizeof(isr), "%d", plan.min_insync_replicas);
    rd_kafka_NewTopic_set_config(nt, "min.insync.replicas", isr);
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    /* Wait in slices, serving the error callback between them (tc_admin_hopeless). */
    for (int waited = 0; !ev && waited < TC_ADMIN_TIMEOUT_MS; waited += TC_ADMIN_SLICE_MS) {
        ev = rd_kafka_queue_poll(q, TC_ADMIN_SLICE_MS);
        rd_kafka_poll(rk, 0);
        if (!ev && tc_admin_hopeless(&watch, waited))
            break;
    }
unanswered:
    if (!ev && watch.non_kafka) {
        err = tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                         "could not create topic \"%s\": kafka.brokers \"%s\" answered, but not "
                         "as a Kafka broker (a PostgreSQL or HTTP port?); check kafka.brokers "
                         "(THERMOCLINE_KAFKA_BROKERS); with the dev services: " TC_KAFKA_ENV_HINT,
                         cfg->kafka_topic, cfg->kafka_brokers);
    } else if (!ev) {
        err = tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                         "could not create topic \"%s\": no Kafka broker answered at kafka.brokers "
                         "\"%s\" (%s)%s; check kafka.brokers (THERMOCLINE_KAFKA_BROKERS) and that "
                         "Kafka runs; with the dev services: " TC_KAFKA_ENV_HINT,
                         cfg->kafka_topic, cfg->kafka_brokers,
                         *watch.last ? watch.last : "no answer", tc_kafka_hint(watch.last));
    } else if (rd_kafka_event_error(ev)) {
        err = tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                         "could not create topic \"%s\": %s%s", cfg->kafka_topic,
                         rd_kafka_event_error_string(ev),
                         tc_kafka_create_hint(rd_kafka_event_error_string(ev)));
    } else {
        size_t cnt;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
        rd_kafka_resp_err_t terr = cnt ? rd_kafka_topic_result_error(res[0]) : 0;
        if (terr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (plan.rf_capped)
                tc_log_warn("kafka",
                            "topic \"%s\": kafka.replication_factor is %lld but the cluster has "
                            "%d broker(s): created with replication %d",
                            cfg->kafka_topic, (long long)cfg->kafka_replication_factor, brokers,
                            plan.replication_factor);
            if (plan.isr_capped)
                tc_log_warn("kafka",
                            "topic \"%s\": kafka.min_insync_replicas is %lld, above the "
                            "replication %d: created with min.insync.replicas %d",
                            cfg->kafka_topic, (long long)cfg->kafka_min_insync_replicas,
                            plan.replication_factor, plan.min_insync_replicas);
            tc_log_info("kafka",
                        "created topic \"%s\" (%lld partitions, replication %d, "
                        "min.insync.replicas %d, retention.ms %s)",
                        cfg->kafka_topic, (long long)cfg->kafka_partitions, plan.replication_factor,
                        plan.min_insync_replicas, retention);
        } else if (terr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            err =
                tc_err_set(TC_ERR_KAFKA, errstr, errstr_size, "could not create topic \"%s\": %s%s",
                           cfg->kafka_topic, rd_kafka_topic_result_error_string(res[0]),
                           tc_kafka_create_hint(rd_kafka_topic_result_error_string(res[0])));
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (q)
        rd_kafka_queue_destroy(q);
    if (nt)
        rd_kafka_NewTopic_destroy(nt);
    rd_kafka_destroy(rk);
    return err;
}

tc_err tc_kafka_describe_topic(const tc_config *cfg, const char *topic, int *partitions,
                               int *replicas, char *errstr, size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    tc_admin_watch watch = {0};
    rd_kafka_resp_err_t kerr;
    rd_kafka_t *rk;

    *partitions = *replicas = 0;
    rk = tc_admin_client_new(cfg, &watch, errstr, errstr_size);
    if (!rk)
        return TC_ERR_KAFKA;
    /* Every topic's metadata, not the one topic's: asking for a topic by name may create it on a
     * broker that auto-creates topics. */
    kerr = rd_kafka_metadata(rk, 1, NULL, &md, TC_ADMIN_UNREACHABLE_MS * 2);
    if (kerr) {
        rd_kafka_destroy(rk);
        return tc_err_set(TC_ERR_KAFKA_TRANS, errstr, errstr_size,
                          "could not list the topics at kafka.brokers \"%s\": %s; check "
                          "kafka.brokers (THERMOCLINE_KAFKA_BROKERS); with the dev services: "
                          "" TC_KAFKA_ENV_HINT,
                          cfg->kafka_brokers, rd_kafka_err2str(kerr));
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, topic) != 0 || md->topics[i].err)
            continue;
        *partitions = md->topics[i].partition_cnt;
        *replicas = md->topics[i].partition_cnt ? md->topics[i].partitions[0].replica_cnt : 0;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return TC_OK;
}

/* Keep an inferred delivery to check (confirm.h); one that cannot be kept is not vouched for. */
static void tc_producer_keep_inferred(tc_producer *p, const rd_kafka_message_t *m, int64_t low)
{
    if (tc_confirm_keep(p->confirm, m, low) == TC_OK)
        return;
    p->failed++;
    snprintf(p->last_error, sizeof(p->last_error),
             "a delivery librdkafka inferred without an offset could not be kept for checking "
             "(more than %u MiB of such messages)",
             TC_CONFIRM_BYTES_MAX >> 20);
}

static void tc_producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    tc_producer *p = opaque;
    tc_producer_tally *t = NULL;

    (void)rk;
    if (m->err) {
        p->failed++;
        snprintf(p->last_error, sizeof(p->last_error), "%s", rd_kafka_err2str(m->err));
        return;
    }
    if (m->partition >= 0 && m->partition < TC_PRODUCER_PARTITIONS_MAX) {
        t = &p->tally[m->partition];
        if (m->partition >= p->npart)
            p->npart = m->partition + 1;
    }
    if (m->offset < 0) {
        tc_producer_keep_inferred(p, m, t ? t->end : 0);
        if (t) {
            t->delivered++;
            t->inferred++;
        }
        return;
    }
    if (!t)
        return;
    t->delivered++;
    if (m->offset < t->end)
        t->repeated++;
    else
        t->end = m->offset + 1;
}

tc_producer *tc_producer_new(const tc_config *cfg, char *errstr, size_t errstr_size)
{
    static const char *const defaults[] = {"linger.ms",
                                           "20",
                                           "batch.size",
                                           "1000000",
                                           "compression.type",
                                           "lz4",
                                           "queue.buffering.max.messages",
                                           "200000",
                                           NULL};
    /* Not overridable: what the simulator and a redrive send must survive the loss of a broker
     * (acks=all, with min.insync.replicas on the topic) and must not be doubled by a retry. */
    static const char *const forced[] = {"enable.idempotence", "true", "acks", "all", NULL};
    rd_kafka_conf_t *conf;
    tc_producer *p = calloc(1, sizeof(*p));
    char inner[TC_ERRSTR_MAX];

    if (!p)
        return NULL;
    conf = tc_kafka_conf_new(cfg, defaults, forced, errstr, errstr_size);
    if (!conf) {
        free(p);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, tc_producer_dr_cb);
    rd_kafka_conf_set_opaque(conf, p);
    p->cfg = cfg;
    p->confirm = tc_confirm_new();
    p->rk = p->confirm ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, inner, sizeof(inner)) : NULL;
    if (!p->rk) {
        rd_kafka_conf_destroy(conf);
        tc_err_set(TC_ERR_KAFKA, errstr, errstr_size, "could not create Kafka producer: %s",
                   p->confirm ? inner : "out of memory");
        tc_confirm_destroy(p->confirm);
        free(p);
        return NULL;
    }
    return p;
}

tc_err tc_producer_send(tc_producer *p, const char *topic, int32_t partition, const void *key,
                        size_t key_len, const void *value, size_t len, char *errstr,
                        size_t errstr_size)
{
    rd_kafka_resp_err_t err;

    for (;;) {
        err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_PARTITION(partition >= 0 ? partition : RD_KAFKA_PARTITION_UA),
            RD_KAFKA_V_KEY((void *)(uintptr_t)key, key_len),
            RD_KAFKA_V_VALUE((void *)(uintptr_t)value, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        /* Back-pressure: wait for deliveries to free the local queue. */
        rd_kafka_poll(p->rk, 10);
    }
    rd_kafka_poll(p->rk, 0);
    if (err)
        return tc_err_set(TC_ERR_KAFKA, errstr, errstr_size, "could not produce to \"%s\": %s",
                          topic, rd_kafka_err2str(err));
    return TC_OK;
}

/* Wait for librdkafka's queue to empty; false when it did not within timeout_ms. */
static int tc_producer_drain(void *arg, int timeout_ms)
{
    tc_producer *p = arg;

    if (rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 1;
    if (timeout_ms > 0)
        tc_log_warn("producer", "%d messages still undelivered after %d ms",
                    rd_kafka_outq_len(p->rk), timeout_ms);
    return 0;
}

/* A kept message the topic lacks: its inferred report is taken back and it is sent again (this
 * producer's messages have no headers). */
static void tc_producer_resend(void *arg, const char *topic, int32_t partition, const void *key,
                               size_t key_len, const void *value, size_t value_len,
                               const void *headers, size_t headers_len)
{
    tc_producer *p = arg;
    char errstr[TC_ERRSTR_MAX];

    (void)headers;
    (void)headers_len;
    if (partition >= 0 && partition < TC_PRODUCER_PARTITIONS_MAX) {
        tc_producer_tally *t = &p->tally[partition];
        t->delivered--;
        t->inferred--;
        t->absent++;
    }
    if (tc_producer_send(p, topic, partition, key, key_len, value_len ? value : NULL, value_len,
                         errstr, sizeof(errstr)) != TC_OK) {
        p->failed++;
        snprintf(p->last_error, sizeof(p->last_error), "%s", errstr);
    }
}

uint64_t tc_producer_flush(tc_producer *p, int timeout_ms)
{
    char errstr[TC_ERRSTR_MAX];
    size_t unchecked;

    /* A flush that does not wait (a caller's "failed so far") leaves the check to a later one. */
    if (tc_producer_drain(p, timeout_ms) && timeout_ms > 0) {
        unchecked = tc_confirm_settle(p->confirm, p->cfg, "producer", tc_producer_resend,
                                      tc_producer_drain, p, timeout_ms, errstr, sizeof(errstr));
        if (unchecked) {
            p->failed += unchecked;
            snprintf(p->last_error, sizeof(p->last_error), "%s", errstr);
        }
    }
    if (p->failed)
        tc_log_warn("producer", "%llu deliveries failed, last: %s", (unsigned long long)p->failed,
                    p->last_error);
    return p->failed + (uint64_t)rd_kafka_outq_len(p->rk);
}

const tc_producer_tally *tc_producer_tally_of(const tc_producer *p, int32_t partition,
                                              int32_t *partitions)
{
    static const tc_producer_tally none = {0};

    if (partitions)
        *partitions = p->npart;
    if (partition < 0 || partition >= TC_PRODUCER_PARTITIONS_MAX)
        return &none;
    return &p->tally[partition];
}

void tc_producer_destroy(tc_producer *p)
{
    if (!p)
        return;
    rd_kafka_destroy(p->rk);
    tc_confirm_destroy(p->confirm);
    free(p);
}
