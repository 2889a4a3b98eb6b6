/*
 * fuzz_http_response.c -- libFuzzer target for the HTTP client's response parser
 * (tc_http_parse_reply in core/http_client.h), which reads what a schema registry -- or whatever
 * answers at registry.url -- sends back: status line, Content-Length, chunked bodies.
 *
 * The input is the whole response as the client would have read it from the socket. A parse that
 * succeeds must give a body inside the input's bounds, NUL-terminated; any crash, sanitizer report
 * or leak is a finding. Seeds: tests/fuzz/corpus/http_response/ (plain, chunked, error and
 * malformed responses).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/http_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[TC_ERRSTR_MAX];
    tc_http_reply reply;
    char *buf = malloc(size + 1); /* the client's buffer always has room for the NUL */

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    if (tc_http_parse_reply(buf, size, &reply, err, sizeof(err)) == TC_OK) {
        if (reply.len > size || reply.body[reply.len] != '\0' || reply.status < 0 ||
            reply.status > 999)
            abort();
        tc_http_reply_free(&reply);
    } else {
        free(buf);
    }
    return 0;
}
