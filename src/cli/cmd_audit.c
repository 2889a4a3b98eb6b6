/*
 * cmd_audit.c -- `thermocline audit verify`, and tc_cli_audit: how the commands that change data
 * record what they did in the audit log (store/audit.h).
 *
 * A command records after its change, with the outcome: a change that failed half-way is recorded
 * too ("error: ..."), since part of it may have happened. A log that cannot be written makes the
 * command fail (exit 1) after saying that the change itself was made: an unrecorded change is
 * what the log exists to prevent, and the operator has to know.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/json.h"
#include "core/timeutil.h"
#include "store/audit.h"

int tc_cli_audit(const tc_config *cfg, const char *action, const char *target, tc_jbuf *params,
                 int64_t rows, int failed, const char *error, int64_t started_us)
{
    char errstr[TC_ERRSTR_MAX], status[TC_ERRSTR_MAX];
    size_t len = 0;
    char *text = params ? tc_jbuf_take(params, &len) : NULL;
    tc_audit_event ev = {
        .action = action,
        .target = target,
        .params = text,
        .rows = rows,
        .status = status,
        .duration_ms = started_us > 0 ? (double)(tc_time_now_us() - started_us) / 1000.0 : -1,
    };
    tc_err err;

    snprintf(status, sizeof(status), "%s%s", failed ? "error: " : "ok",
             failed && error ? error : "");
    err = tc_audit_record(cfg->pg_dsn, cfg->audit_schema, &ev, errstr, sizeof(errstr));
    free(text);
    if (err != TC_OK) {
        fprintf(stderr, "thermocline %s: %s; the change was %smade but is not in the audit log\n",
                action, errstr, failed ? "perhaps partly " : "");
        return TC_EXIT_FAILURE;
    }
    return 0;
}

int tc_cmd_audit(int argc, char **argv)
{
    static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    static const tc_cli_spec spec = {
        .name = "audit",
        .help = "usage: thermocline audit verify [--json]\n\n"
                "The audit log (<audit.schema>.events) records every API request and every\n"
                "change made by a command; each event holds the sha256 of the one before it\n"
                "and of its own content.\n"
                "  verify   recompute the chain from the first event: exit 0 when it is whole,\n"
                "           1 naming the first event that was changed, removed or inserted\n\n"
                "  -j, --json  machine-readable output\n" TC_CLI_COMMON_HELP,
        .shortopts = "j",
        .longopts = longopts,
        .min_args = 1,
        .max_args = 1,
    };
    char errstr[TC_ERRSTR_MAX];
    tc_cli_common common = {0};
    tc_audit_verify_result r;
    tc_cli_parser ps;
    tc_config *cfg;
    int json = 0, first, rc = 0;

    tc_cli_begin(&ps, &spec, &common, argc, argv);
    while (tc_cli_next(&ps) == 'j')
        json = 1;
    first = tc_cli_args(&ps);
    if (strcmp(argv[first], "verify"))
        tc_cli_usage_error(&spec, "unknown subcommand \"%s\" (verify)", argv[first]);
    cfg = tc_cli_config(&common);
    if (tc_audit_verify(cfg->pg_dsn, cfg->audit_schema, &r, errstr, sizeof(errstr)) != TC_OK) {
        fprintf(stderr, "thermocline audit verify: %s\n", errstr);
        tc_config_destroy(cfg);
        return TC_EXIT_FAILURE;
    }
    if (json) {
        tc_jbuf jb;
        size_t len;
        char *text;
        tc_jbuf_init(&jb, 4096);
        tc_jbuf_obj_begin(&jb);
        tc_jbuf_key(&jb, "schema");
        tc_jbuf_str(&jb, cfg->audit_schema);
        tc_jbuf_key(&jb, "events");
        tc_jbuf_int(&jb, r.events);
        tc_jbuf_key(&jb, "intact");
        tc_jbuf_bool(&jb, r.broken_id < 0);
        tc_jbuf_key(&jb, "first_broken_id");
        if (r.broken_id < 0)
            tc_jbuf_null(&jb);
        else
            tc_jbuf_int(&jb, r.broken_id);
        tc_jbuf_key(&jb, "problem");
        if (r.broken_id < 0)
            tc_jbuf_null(&jb);
        else
            tc_jbuf_str(&jb, r.problem);
        tc_jbuf_obj_end(&jb);
        text = tc_jbuf_take(&jb, &len);
        if (text)
            printf("%s\n", text);
        free(text);
        tc_jbuf_free(&jb);
    } else if (r.broken_id < 0) {
        printf("audit log \"%s\": %" PRId64 " event%s, the chain is intact\n", cfg->audit_schema,
               r.events, r.events == 1 ? "" : "s");
    } else {
        printf("audit log \"%s\": %" PRId64 " events, the chain is broken at event %" PRId64
               ": %s\n",
               cfg->audit_schema, r.events, r.broken_id, r.problem);
    }
    if (r.broken_id >= 0)
        rc = TC_EXIT_FAILURE;
    tc_config_destroy(cfg);
    return rc;
}
