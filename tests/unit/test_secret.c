/*
 * test_secret.c -- secrets from files and the environment (core/secret.h), and the credentials of
 * an HTTP server (api/http_auth.h): trailing newlines, refused permissions, errors that name the
 * setting and never the value, constant-time comparison, Basic and bearer checks by method.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "api/http_auth.h"
#include "core/secret.h"

#define SECRET "s3cr3t-Pw"

/* A temporary file holding text with mode; its path is written into path (size 64). */
static void temp_file(char *path, const char *text, mode_t mode)
{
    int fd;

    strcpy(path, "/tmp/tc-secret-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_secret_from_file(void **state)
{
    char path[64], out[TC_SECRET_MAX], err[TC_ERRSTR_MAX];

    (void)state;
    temp_file(path, SECRET "\r\n", 0600);
    assert_int_equal(
        tc_secret_get("kafka.sasl.password_file", path, NULL, out, sizeof(out), err, sizeof(err)),
        TC_OK);
    assert_string_equal(out, SECRET);
    /* Readable by every user: refused, with the setting, the file and the fix; not the value. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(
        tc_secret_get("kafka.sasl.password_file", path, NULL, out, sizeof(out), err, sizeof(err)),
        TC_ERR_CONFIG);
    assert_non_null(strstr(err, "kafka.sasl.password_file"));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "chmod o-rwx"));
    assert_null(strstr(err, SECRET));
    unlink(path);
    /* Empty, missing, too long. */
    temp_file(path, "\n", 0600);
    assert_int_equal(tc_secret_get("s", path, NULL, out, sizeof(out), err, sizeof(err)),
                     TC_ERR_CONFIG);
    assert_non_null(strstr(err, "empty"));
    unlink(path);
    assert_int_equal(tc_secret_get("s", path, NULL, out, sizeof(out), err, sizeof(err)),
                     TC_ERR_CONFIG);
    assert_non_null(strstr(err, "cannot open"));
    temp_file(path, SECRET SECRET, 0600);
    assert_int_equal(tc_secret_get("s", path, NULL, out, 8, err, sizeof(err)), TC_ERR_CONFIG);
    assert_non_null(strstr(err, "longer than 7 bytes"));
    assert_null(strstr(err, SECRET));
    unlink(path);
}

static void test_secret_from_env(void **state)
{
    char out[TC_SECRET_MAX], err[TC_ERRSTR_MAX];

    (void)state;
    setenv("TC_TEST_SECRET", SECRET, 1);
    assert_int_equal(tc_secret_get("s", "", "TC_TEST_SECRET", out, sizeof(out), err, sizeof(err)),
                     TC_OK);
    assert_string_equal(out, SECRET);
    unsetenv("TC_TEST_SECRET");
    assert_int_equal(tc_secret_get("s", "", "TC_TEST_SECRET", out, sizeof(out), err, sizeof(err)),
                     TC_ERR_CONFIG);
    assert_non_null(strstr(err, "TC_TEST_SECRET is not set"));
    /* Neither configured: no secret, no error. */
    assert_int_equal(tc_secret_get("s", "", "", out, sizeof(out), err, sizeof(err)), TC_OK);
    assert_string_equal(out, "");
}

static void test_secret_equal(void **state)
{
    (void)state;
    assert_true(tc_secret_equal("abc", 3, "abc", 3));
    assert_false(tc_secret_equal("abd", 3, "abc", 3));
    assert_false(tc_secret_equal("ab", 2, "abc", 3));
    assert_false(tc_secret_equal("abcd", 4, "abc", 3));
    assert_false(tc_secret_equal("", 0, "abc", 3));
}

static void test_auth_by_method(void **state)
{
    char err[TC_ERRSTR_MAX];
    /* "ci:s3cr3t-Pw" in base64 */
    const char *good = "Basic Y2k6czNjcjN0LVB3";
    tc_http_auth *open_reads =
        tc_http_auth_new_text("# writers\nci:" SECRET "\n\n", "tok-1\n", 1, err, sizeof(err));
    tc_http_auth *closed = tc_http_auth_new_text("ci:" SECRET, NULL, 0, err, sizeof(err));

    (void)state;
    assert_non_null(open_reads);
    assert_non_null(closed);
    assert_int_equal(tc_http_auth_check(NULL, "POST", NULL), 0);
    assert_int_equal(tc_http_auth_check(open_reads, "GET", NULL), 0);
    assert_int_equal(tc_http_auth_check(closed, "GET", NULL), 401);
    assert_int_equal(tc_http_auth_check(closed, "GET", good), 0);
    assert_int_equal(tc_http_auth_check(open_reads, "POST", NULL), 401);
    assert_int_equal(tc_http_auth_check(open_reads, "POST", good), 0);
    assert_int_equal(tc_http_auth_check(open_reads, "DELETE", "basic Y2k6czNjcjN0LVB3"), 0);
    assert_int_equal(tc_http_auth_check(open_reads, "PUT", "Bearer tok-1"), 0);
    /* Wrong password, a token given as Basic, a user given as bearer, garbage. */
    assert_int_equal(tc_http_auth_check(open_reads, "POST", "Basic Y2k6d3Jvbmc="), 401);
    assert_int_equal(tc_http_auth_check(open_reads, "POST", "Bearer ci:" SECRET), 401);
    assert_int_equal(tc_http_auth_check(open_reads, "POST", "Bearer tok-2"), 401);
    assert_int_equal(tc_http_auth_check(open_reads, "POST", "Basic !!!"), 401);
    assert_int_equal(tc_http_auth_check(open_reads, "POST", "Digest x"), 401);
    tc_http_auth_destroy(open_reads);
    tc_http_auth_destroy(closed);
}

static void test_auth_refused_files(void **state)
{
    char err[TC_ERRSTR_MAX], path[64];

    (void)state;
    assert_null(tc_http_auth_new_text("ci\n", NULL, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "line 1: expected user:password"));
    assert_null(tc_http_auth_new_text("# nothing\n", "", 1, err, sizeof(err)));
    assert_non_null(strstr(err, "no credential"));
    temp_file(path, "ci:" SECRET "\n", 0644);
    assert_null(tc_http_auth_new(path, NULL, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "readable by every user"));
    assert_null(strstr(err, SECRET));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_from_file),   cmocka_unit_test(test_secret_from_env),
        cmocka_unit_test(test_secret_equal),       cmocka_unit_test(test_auth_by_method),
        cmocka_unit_test(test_auth_refused_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
