/*
 * test_log.c -- tc_log_flatten, which keeps every log record on one line: PostgreSQL's and
 * libpq's multi-line messages ("...\n\tIs the server running...?", "ERROR: ...\nDETAIL: ...")
 * read as one sentence instead of JSON's "\u000a\u0009".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/log.h"

static void expect(const char *in, const char *want)
{
    char buf[256];

    snprintf(buf, sizeof(buf), "%s", in);
    tc_log_flatten(buf);
    if (strcmp(buf, want) != 0)
        fail_msg("flatten(\"%s\") = \"%s\", want \"%s\"", in, buf, want);
}

static void test_flatten(void **state)
{
    (void)state;
    expect("connection refused\n\tIs the server running?",
           "connection refused Is the server running?");
    expect("ERROR:  duplicate key\nDETAIL:  Key (id)=(1) exists.\n",
           "ERROR:  duplicate key DETAIL:  Key (id)=(1) exists.");
    /* Runs of breaks with spaces around them are one space; spaces alone are kept as they are. */
    expect("a \n \n\t  b", "a b");
    expect("two  spaces stay", "two  spaces stay");
    expect("\n\tleading", "leading");
    expect("trailing\r\n", "trailing");
    expect("", "");
    expect("\n", "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flatten),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
