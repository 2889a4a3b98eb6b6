/*
 * rest_openapi.c -- the OpenAPI 3.1 document of the REST API, generated from the route table.
 *
 * Nothing here is written by hand per route: paths, methods, path and query parameters (with the
 * same bounds, enums and patterns the parser enforces), response formats and security come from
 * tc_rest_routes, so the document and the server cannot drift apart. Row objects are described
 * as open objects: their columns are the `api` schema's, which may gain columns in a minor
 * version (docs/api.md).
 */
#include <stdio.h>
#include <string.h>

#include "api/rest.h"
#include "api/rest_internal.h"
#include "core/json.h"

/* Cap of the document. */
#define TC_REST_OPENAPI_MAX (1024 * 1024)
/* The contract's version, as in the api schema. */
#define TC_REST_API_VERSION "1.0"

static void tc_oa_ref(tc_jbuf *b, const char *ref)
{
    tc_jbuf_obj_begin(b);
    tc_jbuf_key(b, "$ref");
    tc_jbuf_str(b, ref);
    tc_jbuf_obj_end(b);
}

static void tc_oa_str_schema(tc_jbuf *b, int64_t max_len, const char *pattern, const char *format)
{
    tc_jbuf_obj_begin(b);
    tc_jbuf_key(b, "type");
    tc_jbuf_str(b, "string");
    tc_jbuf_key(b, "minLength");
    tc_jbuf_int(b, 1);
    if (max_len > 0) {
        tc_jbuf_key(b, "maxLength");
        tc_jbuf_int(b, max_len);
    }
    if (pattern) {
        tc_jbuf_key(b, "pattern");
        tc_jbuf_str(b, pattern);
    }
    if (format) {
        tc_jbuf_key(b, "format");
        tc_jbuf_str(b, format);
    }
    tc_jbuf_obj_end(b);
}

static void tc_oa_param(tc_jbuf *b, const tc_rest_param_def *d)
{
    tc_jbuf_obj_begin(b);
    tc_jbuf_key(b, "name");
    tc_jbuf_str(b, d->name);
    tc_jbuf_key(b, "in");
    tc_jbuf_str(b, "query");
    tc_jbuf_key(b, "required");
    tc_jbuf_bool(b, d->required);
    tc_jbuf_key(b, "description");
    tc_jbuf_str(b, d->desc ? d->desc : "");
    tc_jbuf_key(b, "schema");
    switch (d->type) {
    case TC_RP_STRING:
        tc_oa_str_schema(b, d->max, "^[^\\u0000-\\u001f\\u007f]+$", NULL);
        break;
    case TC_RP_TIME:
        tc_oa_str_schema(b, 0, NULL, "date-time");
        break;
    case TC_RP_TAG:
        tc_oa_str_schema(b, 256, "^[^:\\u0000-\\u001f\\u007f]+:[^\\u0000-\\u001f\\u007f]+$", NULL);
        break;
    case TC_RP_CURSOR:
        tc_oa_str_schema(b, TC_REST_CURSOR_MAX, NULL, NULL);
        break;
    case TC_RP_IDS:
        tc_oa_str_schema(b, 0, "^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17})*$", NULL);
        break;
    case TC_RP_INT:
        tc_jbuf_obj_begin(b);
        tc_jbuf_key(b, "type");
        tc_jbuf_str(b, "integer");
        tc_jbuf_key(b, "minimum");
        tc_jbuf_int(b, d->min);
        tc_jbuf_key(b, "maximum");
        tc_jbuf_int(b, d->max);
        tc_jbuf_obj_end(b);
        break;
    case TC_RP_ENUM:
        tc_jbuf_obj_begin(b);
        tc_jbuf_key(b, "type");
        tc_jbuf_str(b, "string");
        tc_jbuf_key(b, "enum");
        tc_jbuf_arr_begin(b);
        for (const char *p = d->enums; p && *p;) {
            const char *bar = strchr(p, '|');
            size_t l = bar ? (size_t)(bar - p) : strlen(p);
            tc_jbuf_strn(b, p, l);
            p = bar ? bar + 1 : NULL;
        }
        tc_jbuf_arr_end(b);
        tc_jbuf_obj_end(b);
        break;
    }
    tc_jbuf_obj_end(b);
}

/* {"description": desc, "content": {ctype: {"schema": schema_ref or string}}} */
static void tc_oa_response(tc_jbuf *b, const char *code, const char *desc, const char *ctype,
                           const char *ref)
{
    tc_jbuf_key(b, code);
    tc_jbuf_obj_begin(b);
    tc_jbuf_key(b, "description");
    tc_jbuf_str(b, desc);
    tc_jbuf_key(b, "content");
    tc_jbuf_obj_begin(b);
    tc_jbuf_key(b, ctype);
    tc_jbuf_obj_begin(b);
    tc_jbuf_key(b, "schema");
    tc_oa_ref(b, ref);
    tc_jbuf_obj_end(b);
    tc_jbuf_obj_end(b);
    tc_jbuf_obj_end(b);
}

static void tc_oa_operation(tc_jbuf *b, const tc_rest_route *rt)
{
    static const char *const problems[][2] = {
        {"400", "a parameter is missing, unknown or invalid (named in invalid-params)"},
        {"401", "no credentials, or a token or key that is not valid"},
        {"403", "the caller's role may not do this"},
        {"404", "no such device, or no row"},
        {"406", "none of the Accept header's media types is produced"},
        {"429", "rate limit reached (see Retry-After)"},
        {"500", "internal error"},
        {"503", "the database is busy or unreachable"}};
    const char *p;

    tc_jbuf_key(b, strcmp(rt->method, "POST") ? "get" : "post");
    tc_jbuf_obj_begin(b);
    tc_jbuf_key(b, "operationId");
    tc_jbuf_str(b, rt->id);
    tc_jbuf_key(b, "summary");
    tc_jbuf_str(b, rt->summary);
    tc_jbuf_key(b, "parameters");
    tc_jbuf_arr_begin(b);
    for (p = strchr(rt->pattern, '{'); p; p = strchr(p + 1, '{')) {
        const char *end = strchr(p, '}');
        tc_jbuf_obj_begin(b);
        tc_jbuf_key(b, "name");
        tc_jbuf_strn(b, p + 1, (size_t)(end - p - 1));
        tc_jbuf_key(b, "in");
        tc_jbuf_str(b, "path");
        tc_jbuf_key(b, "required");
        tc_jbuf_bool(b, 1);
        tc_jbuf_key(b, "schema");
        tc_oa_str_schema(b, 256, NULL, NULL);
        tc_jbuf_obj_end(b);
    }
    for (size_t i = 0; i < rt->nparams; i++)
        tc_oa_param(b, &rt->params[i]);
    tc_jbuf_arr_end(b);
    if (rt->kind == TC_RK_DOC) {
        tc_jbuf_key(b, "security");
        tc_jbuf_arr_begin(b);
        tc_jbuf_arr_end(b);
    }
    tc_jbuf_key(b, "responses");
    tc_jbuf_obj_begin(b);
    if (rt->kind == TC_RK_DOC) {
        tc_oa_response(b, "200", "the OpenAPI document", "application/json",
                       "#/components/schemas/Row");
    } else {
        tc_jbuf_key(b, "200");
        tc_jbuf_obj_begin(b);
        tc_jbuf_key(b, "description");
        tc_jbuf_str(b, rt->kind == TC_RK_LIST ? "a page of rows, or the rows streamed" : "the row");
        tc_jbuf_key(b, "content");
        tc_jbuf_obj_begin(b);
        tc_jbuf_key(b, "application/json");
        tc_jbuf_obj_begin(b);
        tc_jbuf_key(b, "schema");
        tc_oa_ref(b, rt->kind == TC_RK_LIST ? "#/components/schemas/Page"
                                            : "#/components/schemas/Row");
        tc_jbuf_obj_end(b);
        for (int f = TC_REST_FMT_CSV; rt->streams && f < TC_REST_FMT__COUNT; f++) {
            char ct[64];
            snprintf(ct, sizeof(ct), "%s", tc_rest_format_ctype((tc_rest_format)f));
            ct[strcspn(ct, ";")] = '\0';
            tc_jbuf_key(b, ct);
            tc_jbuf_obj_begin(b);
            tc_jbuf_key(b, "schema");
            tc_oa_ref(b, "#/components/schemas/Stream");
            tc_jbuf_obj_end(b);
        }
        tc_jbuf_obj_end(b);
        tc_jbuf_obj_end(b);
        for (size_t i = 0; i < sizeof(problems) / sizeof(problems[0]); i++) {
            if (!strcmp(problems[i][0], "406") && !rt->streams)
                continue;
            tc_oa_response(b, problems[i][0], problems[i][1], "application/problem+json",
                           "#/components/schemas/Problem");
        }
    }
    tc_jbuf_obj_end(b);
    tc_jbuf_obj_end(b);
}

/* Either credential will do. */
static const char tc_oa_security[] = "[{\"bearer\":[]},{\"apiKey\":[]}]";

/* The fixed part: schemas and security schemes, as JSON text. */
static const char tc_oa_components[] =
    "{\"securitySchemes\":{"
    "\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\",\"bearerFormat\":\"JWT\","
    "\"description\":\"HS256, or RS256/ES256 with a key of api.jwks_file; claim role\"},"
    "\"apiKey\":{\"type\":\"apiKey\",\"in\":\"header\",\"name\":\"X-API-Key\"}},"
    "\"schemas\":{"
    "\"Row\":{\"type\":\"object\"},"
    "\"Stream\":{\"type\":\"string\"},"
    "\"Page\":{\"type\":\"object\",\"required\":[\"data\",\"next\"],\"properties\":{"
    "\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/components/schemas/Row\"}},"
    "\"next\":{\"type\":[\"string\",\"null\"],"
    "\"description\":\"cursor of the next page (null on the last)\"}}},"
    "\"Problem\":{\"type\":\"object\",\"required\":[\"type\",\"title\",\"status\"],"
    "\"properties\":{\"type\":{\"type\":\"string\"},\"title\":{\"type\":\"string\"},"
    "\"status\":{\"type\":\"integer\"},\"detail\":{\"type\":\"string\"},"
    "\"instance\":{\"type\":\"string\"},"
    "\"invalid-params\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
    "\"required\":[\"name\",\"reason\"],\"properties\":{\"name\":{\"type\":\"string\"},"
    "\"reason\":{\"type\":\"string\"}}}}}}}}";

char *tc_rest_openapi(size_t *len)
{
    tc_jbuf b;

    tc_jbuf_init(&b, TC_REST_OPENAPI_MAX);
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "openapi");
    tc_jbuf_str(&b, "3.1.0");
    tc_jbuf_key(&b, "info");
    tc_jbuf_obj_begin(&b);
    tc_jbuf_key(&b, "title");
    tc_jbuf_str(&b, "Thermocline REST API");
    tc_jbuf_key(&b, "version");
    tc_jbuf_str(&b, TC_REST_API_VERSION);
    tc_jbuf_obj_end(&b);
    tc_jbuf_key(&b, "security");
    tc_jbuf_raw(&b, tc_oa_security, sizeof(tc_oa_security) - 1);
    tc_jbuf_key(&b, "components");
    tc_jbuf_raw(&b, tc_oa_components, sizeof(tc_oa_components) - 1);
    tc_jbuf_key(&b, "paths");
    tc_jbuf_obj_begin(&b);
    for (size_t i = 0; i < tc_rest_nroutes; i++) {
        const tc_rest_route *rt = &tc_rest_routes[i];
        /* Routes of one path are next to each other in the table. */
        if (i == 0 || strcmp(tc_rest_routes[i - 1].pattern, rt->pattern)) {
            if (i)
                tc_jbuf_obj_end(&b);
            tc_jbuf_key(&b, rt->pattern);
            tc_jbuf_obj_begin(&b);
        }
        tc_oa_operation(&b, rt);
    }
    if (tc_rest_nroutes)
        tc_jbuf_obj_end(&b);
    tc_jbuf_obj_end(&b);
    tc_jbuf_obj_end(&b);
    return tc_jbuf_take(&b, len);
}
