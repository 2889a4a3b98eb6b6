/*
 * cmd_serve.c -- `thermocline serve`: the REST API (api/rest.h) on api.listen until SIGINT or
 * SIGTERM.
 *
 * The server's threads answer requests; this thread only waits for the signal, then stops the
 * server (running requests finish, streams are cut) before the API's connections are closed.
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "api/http.h"
#include "api/rest.h"
#include "cli/cli.h"
#include "core/log.h"
#include "ingest/kafka.h"
#include "store/deadletters.h"
#include "store/store.h"

/* Dead letters read per page of a redrive, and how long delivery may take. */
#define TC_SERVE_REDRIVE_PAGE     500
#define TC_SERVE_REDRIVE_FLUSH_MS 30000

/* What a redrive through the API needs: the store (opened at the first redrive), a producer per
 * request, one redrive at a time (the store handle is not shared between threads). */
typedef struct tc_serve_redrive {
    const tc_config *cfg;
    pthread_mutex_t lock;
    tc_store *store;
    tc_producer *producer;
    uint64_t failed_before;
    char errstr[TC_ERRSTR_MAX];
} tc_serve_redrive;

static tc_err tc_serve_send(void *opaque, const tc_dlq_row *r)
{
    tc_serve_redrive *rd = opaque;

    return tc_producer_send(rd->producer, rd->cfg->kafka_topic, -1, r->key, r->key ? r->key_len : 0,
                            r->payload, r->payload ? r->payload_len : 0, rd->errstr,
                            sizeof(rd->errstr));
}

static tc_err tc_serve_flush(void *opaque)
{
    tc_serve_redrive *rd = opaque;
    uint64_t failed = tc_producer_flush(rd->producer, TC_SERVE_REDRIVE_FLUSH_MS);

    if (failed != rd->failed_before)
        return tc_err_set(TC_ERR_KAFKA, rd->errstr, sizeof(rd->errstr),
                          "%llu redriven messages were not delivered",
                          (unsigned long long)(failed - rd->failed_before));
    return TC_OK;
}

static tc_err tc_serve_redrive_ids(void *ctx, const int64_t *ids, size_t n, uint64_t *done,
                                   char *errstr, size_t errstr_size)
{
    tc_serve_redrive *rd = ctx;
    tc_dlq_redrive_ops ops = {.opaque = rd, .send = tc_serve_send, .flush = tc_serve_flush};
    tc_err err = TC_OK;

    pthread_mutex_lock(&rd->lock);
    if (!rd->store) {
        tc_store_options so;
        tc_store_options_from_config(&so, rd->cfg);
        rd->store = tc_store_new(&so, errstr, errstr_size);
    }
    rd->producer = rd->store ? tc_producer_new(rd->cfg, errstr, errstr_size) : NULL;
    if (!rd->producer) {
        err = rd->store ? TC_ERR_KAFKA : TC_ERR_CONFIG;
    } else {
        rd->failed_before = tc_producer_flush(rd->producer, 0);
        for (size_t i = 0; i < n && err == TC_OK; i++) {
            /* Asked by id: redriven again even when it was before. */
            tc_dlq_filter f = {.id = ids[i]};
            uint64_t one = 0;
            err = tc_store_dlq_redrive(rd->store, &f, TC_SERVE_REDRIVE_PAGE, &ops, &one, errstr,
                                       errstr_size);
            *done += one;
        }
        tc_producer_destroy(rd->producer);
        rd->producer = NULL;
    }
    pthread_mutex_unlock(&rd->lock);
    return err;
}

int tc_cmd_serve(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                             {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "serve",
        .help = "usage: thermocline serve [options]\n\n"
                "Serve the REST API (/v1, OpenAPI document at /v1/openapi.json) over the `api`\n"
                "schema that `thermocline migrate` creates. Callers authenticate with a JWT\n"
                "(api.jwt_secret, api.jwks_file) or an API key (api.keys_file); each request\n"
                "runs as the caller's PostgreSQL role. Runs until SIGINT or SIGTERM\n"
                "(docs/api.md).\n\n"
                "  -l, --listen ADDR      address to listen on (default: "
                "api.listen)\n" TC_CLI_COMMON_HELP,
        .shortopts = "l:",
        .longopts = longopts,
    };
    const char *listen_addr = NULL;
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_cli_parser ps;
    tc_http_server *server = NULL;
    tc_http_options hopt;
    tc_rest_options ro;
    tc_rest *rest = NULL;
    tc_serve_redrive rd = {0};
    tc_config *cfg;
    int opt, rc = 0;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while ((opt = tc_cli_next(&ps)) != -1)
        if (opt == 'l')
            listen_addr = optarg;
    tc_cli_args(&ps);
    cfg = tc_cli_config(&common);
    if (!listen_addr)
        listen_addr = cfg->api_listen;
    tc_cli_install_signals();
    /* The http.* settings every server of the process takes (docs/security.md): TLS, the
     * connection caps, the request deadline. A handler waits on PostgreSQL in the server's
     * thread, and so does a stream between chunks, and a request for the answer of an identical
     * one: a thread per connection, so a slow query holds up only its own requests. */
    hopt = (tc_http_options){.thread_per_connection = 1};
    tc_http_options_from_config(&hopt, cfg);
    server = tc_http_server_new(listen_addr, &hopt, errstr, sizeof(errstr));
    if (!server) {
        fprintf(stderr, "thermocline serve: api.listen: %s\n", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_USAGE;
    }
    ro = (tc_rest_options){.pg_dsn = cfg->pg_dsn,
                           .api_schema = cfg->api_schema,
                           .audit_schema = cfg->audit_schema,
                           .pool_size = (size_t)cfg->api_pool_size,
                           .jwt_secret = cfg->api_jwt_secret,
                           .jwks_file = cfg->api_jwks_file,
                           .keys_file = cfg->api_keys_file,
                           .cursor_secret = cfg->api_cursor_secret,
                           .rate_per_s = cfg->api_rate_per_s,
                           .rate_burst = cfg->api_rate_burst,
                           .coalesce = cfg->api_coalesce != 0,
                           .coalesce_answer_max = (size_t)cfg->api_coalesce_answer_max,
                           .coalesce_total_max = (size_t)cfg->api_coalesce_total_max,
                           .redrive = tc_serve_redrive_ids,
                           .redrive_ctx = &rd};
    rd.cfg = cfg;
    pthread_mutex_init(&rd.lock, NULL);
    rest = tc_rest_new(&ro, errstr, sizeof(errstr));
    if (!rest || tc_rest_mount(rest, server) != TC_OK ||
        tc_http_server_start(server, errstr, sizeof(errstr)) != TC_OK) {
        tc_log_error("serve", "%s", errstr);
        rc = TC_EXIT_FAILURE;
    } else {
        tc_log_info("serve", "REST API listening on %s (port %u)", listen_addr,
                    tc_http_server_port(server));
        while (!tc_cli_stop) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        tc_log_info("serve", "stopping");
    }
    tc_http_server_destroy(server);
    tc_rest_destroy(rest);
    tc_store_destroy(rd.store);
    pthread_mutex_destroy(&rd.lock);
    tc_config_destroy(cfg);
    return rc;
}
