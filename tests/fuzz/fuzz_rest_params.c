/*
 * fuzz_rest_params.c -- libFuzzer target for the REST API's request parameters and cursors
 * (api/rest_params.h), with the real route table's declarations.
 *
 * Input: one byte choosing a route of tc_rest_routes, then a raw query string. Invariants on top
 * of "no crash, no UB, no leak":
 *   - a refusal is a 4xx whose Problem Details body is valid JSON naming a parameter;
 *   - an accepted query respects every declaration: integers inside their bounds, enums indexes
 *     of their lists, tags split at a ':' with both sides non-empty, no control characters;
 *   - a cursor made for any key (the input's bytes) opens to that same key on its route, and
 *     never on another route, and the input itself is never taken for a cursor.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/rest_internal.h"
#include "api/rest_params.h"
#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_QUERY_MAX 4096

static void fz_require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tc_rest_cursor_key ck = {.secret_len = 16};
    tc_rest_param_val vals[TC_REST_PARAMS_MAX];
    tc_rest_problem pb;
    const tc_rest_route *rt;
    char query[FZ_QUERY_MAX + 1], cursor[TC_REST_CURSOR_MAX], key[TC_REST_CURSOR_KEY_MAX];
    int rc;

    if (size < 1 || size > FZ_QUERY_MAX)
        return 0;
    memcpy(ck.secret, "fuzz-secret-0123", 16);
    rt = &tc_rest_routes[data[0] % tc_rest_nroutes];
    memcpy(query, data + 1, size - 1);
    query[size - 1] = '\0';

    memset(&pb, 0, sizeof(pb));
    rc = tc_rest_params_parse(rt->params, rt->nparams, query, &ck, rt->id, vals, &pb);
    if (rc) {
        size_t len = 0;
        char *body = tc_rest_problem_json(&pb, "/v1/x", &len);
        tc_json_doc *doc = body ? tc_json_parse(body, len, NULL, NULL, NULL, 0) : NULL;
        fz_require(rc == 400 && pb.status == 400, "a refusal is a 400");
        fz_require(doc != NULL, "the problem body is JSON");
        tc_json_free(doc);
        free(body);
    } else {
        for (size_t i = 0; i < rt->nparams; i++) {
            const tc_rest_param_def *d = &rt->params[i];
            const tc_rest_param_val *v = &vals[i];
            if (!v->present) {
                fz_require(!d->required, "a required parameter is present");
                continue;
            }
            for (const unsigned char *c = (const unsigned char *)v->text; *c; c++)
                fz_require(*c >= 0x20 && *c != 0x7f, "no control characters");
            if (d->type == TC_RP_INT)
                fz_require(v->num >= d->min && v->num <= d->max, "integer in bounds");
            if (d->type == TC_RP_ENUM)
                fz_require(v->num >= 0, "enum index");
            if (d->type == TC_RP_TAG)
                fz_require(v->tag_split > 0 && v->text[v->tag_split] == ':' &&
                               v->text[v->tag_split + 1],
                           "tag split");
            if (d->type == TC_RP_CURSOR)
                fz_require(0, "the fuzzer cannot forge a cursor");
        }
    }
    /* The input's bytes as a cursor key (up to the first NUL). */
    if (tc_rest_cursor_make(&ck, rt->id, query, cursor, sizeof(cursor)) == TC_OK) {
        fz_require(tc_rest_cursor_open(&ck, rt->id, cursor, key, sizeof(key)) == TC_OK &&
                       !strcmp(key, query),
                   "a cursor opens to its key");
        fz_require(tc_rest_cursor_open(&ck, "another-route", cursor, key, sizeof(key)) != TC_OK,
                   "a cursor is bound to its route");
    }
    fz_require(tc_rest_cursor_open(&ck, rt->id, query, key, sizeof(key)) != TC_OK,
               "the input is not a cursor");
    return 0;
}
