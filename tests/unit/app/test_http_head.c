/* test_http_head.c: the admin endpoint's request-head parser: good heads, every
 * malformed form it must refuse, incomplete input, and every prefix of a valid head. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "app/http_head.h"

static int parse(const char *s, pl_http_head_t *h)
{
    return pl_http_head_parse(s, strlen(s), h);
}

static void test_simple_get(void **state)
{
    (void)state;
    pl_http_head_t h;
    const char *req = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization:  Bearer t0k \r\n\r\nBODY";
    assert_int_equal(parse(req, &h), 0);
    assert_true(pl_http_str_eq(h.method, "GET"));
    assert_true(pl_http_str_eq(h.path, "/metrics"));
    assert_true(pl_http_str_eq(h.query, "x=1"));
    assert_true(pl_http_str_eq(h.authorization, "Bearer t0k"));
    assert_int_equal(h.minor_version, 1);
    assert_int_equal(h.head_len, strlen(req) - 4);
}

static void test_bare_lf_and_http10(void **state)
{
    (void)state;
    pl_http_head_t h;
    assert_int_equal(parse("HEAD /healthz HTTP/1.0\n\n", &h), 0);
    assert_true(pl_http_str_eq(h.method, "HEAD"));
    assert_int_equal(h.minor_version, 0);
    assert_int_equal(h.authorization.len, 0);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET  /x HTTP/1.1\r\n\r\n",
        "GET x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/2.0\r\n\r\n",
        "GET /x HTTP/1.1 \r\n\r\n",
        "GET /x HTTP/1.x\r\n\r\n",
        "GET /a\x01b HTTP/1.1\r\n\r\n",
        "G(T /x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/1.1\r\n fold\r\n\r\n",
        "GET /x HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET /x HTTP/1.1\r\n: empty-name\r\n\r\n",
        "GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n",
        "GET /x HTTP/1.1\r\nX: a\rb\r\n\r\n",
        "GET /x HTTP/1.1\r\nX: a\x7f\r\n\r\n",
        "GET /x\rHTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pl_http_head_t h;
        int rc = parse(bad[i], &h);
        if (rc != PL_EPARSE)
            fail_msg("case %zu (%s) gave %d", i, bad[i], rc);
    }
}

static void test_nul_in_header_rejected(void **state)
{
    (void)state;
    static const char req[] = "GET /x HTTP/1.1\r\nX: a\0b\r\n\r\n";
    pl_http_head_t h;
    assert_int_equal(pl_http_head_parse(req, sizeof req - 1, &h), PL_EPARSE);
}

static void test_every_prefix_is_incomplete(void **state)
{
    (void)state;
    const char *req = "GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\n\r\n";
    size_t n = strlen(req);
    for (size_t i = 0; i < n; i++) {
        pl_http_head_t h;
        assert_int_equal(pl_http_head_parse(req, i, &h), PL_HTTP_HEAD_INCOMPLETE);
    }
    pl_http_head_t h;
    assert_int_equal(pl_http_head_parse(req, n, &h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_bare_lf_and_http10),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_nul_in_header_rejected),
        cmocka_unit_test(test_every_prefix_is_incomplete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
