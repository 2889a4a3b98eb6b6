/*
 * cmd_serve.c -- `thermocline serve`: the REST API (api/rest.h) on api.listen until SIGINT or
 * SIGTERM.
 *
 * The server's threads answer requests; this thread only waits for the signal, then stops the
 * server (running requests finish, streams are cut) before the API's connections are closed.
 */
#include <stdio.h>
#include <time.h>

#include "api/http.h"
#include "api/rest.h"
#include "cli/cli.h"
#include "core/log.h"

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
    tc_rest_options ro;
    tc_rest *rest = NULL;
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
    server = tc_http_server_new(listen_addr, NULL, errstr, sizeof(errstr));
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
                           .rate_burst = cfg->api_rate_burst};
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
    tc_config_destroy(cfg);
    return rc;
}
