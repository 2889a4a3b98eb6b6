/*
 * fuzz_registry_request.c -- libFuzzer target for the schema registry's request handling, below
 * the HTTP transport: router + registry + in-memory store, through tc_http_dispatch.
 *
 * Input: one byte of fault injection (0 = none; otherwise the store call that fails, 1..255),
 * then up to FZ_MAX_REQUESTS requests separated by a line "%%". A request is a line
 * "METHOD TARGET [CONTENT-TYPE [ACCEPT]]" followed by the body ("-" for no content type). The
 * content type "avro" means: the body is a bare schema, wrap it as {"schema": "..."} (so the
 * fuzzer mutates schemas directly, not JSON escapes). A fresh registry handles each input, so a
 * sequence builds state (register, then check, delete, look up ...) and ASan sees every leak.
 *
 * Invariants on every response, on top of "no crash, no UB, no leak":
 *   - the status is one the registry documents (200, 400, 404, 405, 406, 409, 413, 415, 422,
 *     500);
 *   - the content type is one the registry produces (its own, unless Accept chose another);
 *   - the body is valid JSON (the raw-schema endpoints return a stored schema, itself JSON);
 *   - an error has an integer error_code and a string message, and the code belongs to the status
 *     (40401..40408 with 404, 42201..42208 with 422, 409 with 409, 5000x with 500, ...);
 *   - a successful registration answers {"id": n} with n > 0, and registering the same schema
 *     again under the same subject right away gives the same id.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "core/json.h"
#include "core/log.h"
#include "schema/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_REQUESTS 16

static void fz_require(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s\n%.2000s\n", what, detail ? detail : "");
        abort();
    }
}

static int64_t fz_check_response(const char *method, const char *target, const tc_http_response *r)
{
    tc_json_doc *doc;
    const tc_json *root;
    int64_t code = 0, id = -1;
    int s = r->status;

    fz_require(s == 200 || s == 400 || s == 404 || s == 405 || s == 406 || s == 409 || s == 413 ||
                   s == 415 || s == 422 || s == 500,
               "documented status", target);
    fz_require(r->content_type &&
                   (!strcmp(r->content_type, TC_REGISTRY_CT) ||
                    !strcmp(r->content_type, "application/vnd.schemaregistry+json") ||
                    !strcmp(r->content_type, "application/json")),
               "content type", target);
    fz_require(r->body != NULL && r->body[r->body_len] == '\0', "body NUL-terminated", target);
    doc = tc_json_parse(r->body, r->body_len, NULL, NULL, NULL, 0);
    fz_require(doc != NULL, "body is JSON", r->body);
    root = tc_json_root(doc);
    if (s != 200) {
        fz_require(tc_json_int64(tc_json_get(root, "error_code"), &code), "error_code", r->body);
        fz_require(tc_json_string(tc_json_get(root, "message")) != NULL, "message", r->body);
        fz_require(code == s || code / 100 == s || (s == 500 && code / 10 == 5000),
                   "error_code matches the status", r->body);
    } else if (!strcmp(method, "POST") && !strncmp(target, "/subjects/", 10) &&
               strstr(target, "/versions") && !strchr(target + 10, '?')) {
        fz_require(tc_json_int64(tc_json_get(root, "id"), &id) && id > 0, "registration id",
                   r->body);
    }
    tc_json_free(doc);
    return id;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errstr[TC_ERRSTR_MAX];
    tc_http_options opt;
    tc_http_server *server;
    tc_registry *reg;
    tc_reg_store *store;
    const char *p, *end;
    char *copy;
    int nreq = 0;

    if (size < 1)
        return 0;
    tc_log_setup(TC_LOG_ERROR, TC_LOG_HUMAN); /* store failures are warnings: keep quiet */
    store = tc_reg_store_mem_new();
    if (!store)
        return 0;
    if (data[0])
        tc_reg_store_mem_fail_at(store, data[0]);
    reg = tc_registry_new(store, errstr, sizeof(errstr));
    tc_registry_http_options(&opt);
    server = tc_http_server_new(NULL, &opt, errstr, sizeof(errstr));
    fz_require(reg && server, "setup", errstr);
    fz_require(tc_registry_mount(reg, server) == TC_OK, "mount", NULL);

    /* A NUL-terminated copy makes the line splitting simple; bodies keep their exact bytes. */
    copy = malloc(size);
    fz_require(copy != NULL, "malloc", NULL);
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    p = copy;
    end = copy + size - 1;
    while (p < end && nreq++ < FZ_MAX_REQUESTS) {
        const char *sep = NULL, *nl, *body;
        char *wrapped;
        char line[512], method[16], target[400], ct[80], accept[80];
        size_t llen, blen;
        tc_http_response resp;
        int fields;
        int64_t id;

        for (const char *q = p; q + 4 <= end; q++)
            if (!memcmp(q, "\n%%\n", 4)) {
                sep = q;
                break;
            }
        if (!sep)
            sep = end;
        nl = memchr(p, '\n', (size_t)(sep - p));
        llen = nl ? (size_t)(nl - p) : (size_t)(sep - p);
        body = nl ? nl + 1 : sep;
        blen = (size_t)(sep - body);
        if (llen >= sizeof(line))
            llen = sizeof(line) - 1;
        memcpy(line, p, llen);
        line[llen] = '\0';
        p = sep + (sep < end ? 4 : 0);
        ct[0] = '\0';
        accept[0] = '\0';
        fields = sscanf(line, "%15s %399s %79s %79s", method, target, ct, accept);
        if (!strcmp(ct, "-"))
            ct[0] = '\0';
        if (fields < 2)
            continue;
        wrapped = NULL;
        if (!strcmp(ct, "avro")) {
            tc_jbuf w;
            tc_jbuf_init(&w, 0);
            tc_jbuf_obj_begin(&w);
            tc_jbuf_key(&w, "schema");
            tc_jbuf_strn(&w, body, blen);
            tc_jbuf_obj_end(&w);
            wrapped = tc_jbuf_take(&w, &blen);
            fz_require(wrapped != NULL, "wrap", NULL);
            body = wrapped;
            strcpy(ct, "application/json");
        }
        tc_http_dispatch_accept(server, method, target, ct[0] ? ct : NULL,
                                accept[0] ? accept : NULL, body, blen, &resp);
        id = fz_check_response(method, target, &resp);
        tc_http_response_clear(&resp);
        if (id > 0 && !data[0]) {
            /* Registering the same body again must give the same id. */
            int64_t id2;
            tc_http_dispatch(server, method, target, ct[0] ? ct : NULL, body, blen, &resp);
            fz_require(resp.status == 200, "re-registration succeeds", resp.body);
            id2 = fz_check_response(method, target, &resp);
            fz_require(id2 == id, "re-registration gives the same id", resp.body);
            tc_http_response_clear(&resp);
        }
        free(wrapped);
    }
    free(copy);
    tc_http_server_destroy(server);
    tc_registry_destroy(reg);
    return 0;
}
