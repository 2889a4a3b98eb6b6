/*
 * fuzz_http_auth.c -- libFuzzer target for the Authorization header check (api/http_auth.h), the
 * one parser of our HTTP servers that reads a credential a client sends: the scheme, Basic's
 * base64, a bearer token.
 *
 * The first byte picks the method (a read or a write), the rest is the header. On top of "no
 * crash, no UB, no leak": the answer is 0 or 401; a read is always allowed by the read-open table;
 * and only the two credentials the tables hold are ever accepted for a write (the input is
 * compared with their exact forms).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/http_auth.h"

static const char fz_basic[] = "Basic Y2k6czNjcjN0"; /* ci:s3cr3t */
static const char fz_bearer[] = "Bearer tok-1";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tc_http_auth *open_reads, *closed;
    char err[TC_ERRSTR_MAX], *header;
    const char *method;
    int a, b;

    if (!open_reads) {
        open_reads = tc_http_auth_new_text("ci:s3cr3t\n", "tok-1\n", 1, err, sizeof(err));
        closed = tc_http_auth_new_text("ci:s3cr3t\n", "tok-1\n", 0, err, sizeof(err));
        /* The exact credentials pass, or the checks below would prove nothing. */
        if (!open_reads || !closed || tc_http_auth_check(closed, "POST", fz_basic) != 0 ||
            tc_http_auth_check(closed, "POST", fz_bearer) != 0)
            abort();
    }
    if (size < 1)
        return 0;
    method = data[0] & 1 ? "POST" : "GET";
    header = malloc(size);
    if (!header)
        return 0;
    memcpy(header, data + 1, size - 1);
    header[size - 1] = '\0';
    a = tc_http_auth_check(open_reads, method, header);
    b = tc_http_auth_check(closed, method, header);
    if ((a != 0 && a != 401) || (b != 0 && b != 401))
        abort();
    if (!strcmp(method, "GET") && a != 0)
        abort();
    /* A write, or any request to the closed table, passes only with one of the credentials (the
     * scheme's case and trailing text after a space may differ). */
    if (b == 0 && strncasecmp(header, "Basic ", 6) && strncasecmp(header, "Bearer ", 7))
        abort();
    free(header);
    return 0;
}
