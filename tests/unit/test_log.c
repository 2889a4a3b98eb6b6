/*
 * test_log.c -- tc_log_flatten, which keeps every log record on one line: PostgreSQL's and
 * libpq's multi-line messages ("...\n\tIs the server running...?", "ERROR: ...\nDETAIL: ...")
 * read as one sentence instead of JSON's "\u000a\u0009"; an input's fields (tc_log_in) in both
 * formats, escaped, and kept whole after an over-long message; the per-second limiter.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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

/* What tc_log_in writes to stderr in format, as one string (static buffer). */
static const char *logged(tc_log_format format, const tc_log_input *in, const char *msg)
{
    static char out[8192];
    char path[] = "/tmp/tc-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    FILE *f;
    size_t n;

    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    tc_log_setup(TC_LOG_INFO, format);
    tc_log_in(TC_LOG_WARN, "pipeline", in, "%s", msg);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    unlink(path);
    return out;
}

static void test_input_fields(void **state)
{
    tc_log_input in = TC_LOG_INPUT_NONE;
    char long_msg[4000];
    const char *line;

    (void)state;
    in.topic = "iot-telemetry";
    in.partition = 3;
    in.offset = 1200;
    in.device_id = "d-\"17\"xyz"; /* the key's first 6 bytes: not NUL-terminated */
    in.device_len = 6;
    line = logged(TC_LOG_JSON, &in, "dead letter");
    assert_non_null(strstr(line, "\"comp\":\"pipeline\",\"msg\":\"dead letter\",\"topic\":"
                                 "\"iot-telemetry\",\"partition\":3,\"offset\":1200,"
                                 "\"device_id\":\"d-\\\"17\\\"\"}\n"));
    line = logged(TC_LOG_HUMAN, &in, "dead letter");
    assert_non_null(strstr(line, "[pipeline] dead letter (topic \"iot-telemetry\" partition 3 "
                                 "offset 1200 device \"d-\\\"17\\\"\")\n"));
    /* Unknown fields are left out; none known: no parentheses. */
    in = TC_LOG_INPUT_NONE;
    in.partition = 0;
    line = logged(TC_LOG_JSON, &in, "m");
    assert_non_null(strstr(line, "\"msg\":\"m\",\"partition\":0}\n"));
    assert_null(strstr(line, "offset"));
    in = TC_LOG_INPUT_NONE;
    line = logged(TC_LOG_HUMAN, &in, "m");
    assert_non_null(strstr(line, "[pipeline] m\n"));
    /* An over-long message is cut; the fields and the closing brace stay. */
    memset(long_msg, '"', sizeof(long_msg) - 1);
    long_msg[sizeof(long_msg) - 1] = '\0';
    in.topic = "t";
    in.device_id = "dev";
    in.device_len = 3;
    line = logged(TC_LOG_JSON, &in, long_msg);
    assert_non_null(strstr(line, "\\\"\",\"topic\":\"t\",\"device_id\":\"dev\"}\n"));
    tc_log_setup(TC_LOG_INFO, TC_LOG_HUMAN);
}

static void test_limit(void **state)
{
    tc_log_limit l = {0};
    uint64_t skipped = 99;

    (void)state;
    assert_true(tc_log_limit_take(&l, 2, &skipped));
    assert_int_equal(skipped, 0);
    assert_true(tc_log_limit_take(&l, 2, &skipped));
    assert_false(tc_log_limit_take(&l, 2, &skipped));
    assert_false(tc_log_limit_take(&l, 2, &skipped));
    l.second -= 1; /* the next second */
    assert_true(tc_log_limit_take(&l, 2, &skipped));
    assert_int_equal(skipped, 2); /* the two held back */
    l.second -= 1;
    assert_true(tc_log_limit_take(&l, 2, &skipped));
    assert_int_equal(skipped, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flatten),
        cmocka_unit_test(test_input_fields),
        cmocka_unit_test(test_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
