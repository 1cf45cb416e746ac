/* test_buf.c: the growable buffer, and JSON string quoting: every escape, runs of plain
 * bytes around them, UTF-8 passed through, long strings that grow the buffer, and
 * appending after what the buffer already holds; the decimal writers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "core/pl_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quoted(const char *in, const char *want)
{
    pl_buf_t b;
    pl_buf_init(&b);
    pl_buf_puts(&b, "x=");
    pl_buf_json_str(&b, in);
    pl_buf_puts(&b, ";");
    size_t n = strlen(want) + 3;
    char *full = malloc(n + 1);
    strcpy(full, "x=");
    strcat(full, want);
    strcat(full, ";");
    assert_string_equal(b.data, full);
    assert_int_equal(b.len, n);
    free(full);
    pl_buf_deinit(&b);
}

static void test_json_str_escapes(void **state)
{
    (void)state;
    quoted("", "\"\"");
    quoted("plain", "\"plain\"");
    quoted("a\"b", "\"a\\\"b\"");
    quoted("\\", "\"\\\\\"");
    quoted("\n\r\t", "\"\\n\\r\\t\"");
    quoted("\x01x\x1f", "\"\\u0001x\\u001f\"");
    quoted("del\x7f!", "\"del\\u007f!\"");
    quoted("\"start and end\"", "\"\\\"start and end\\\"\"");
    quoted("caf\xc3\xa9 \xe2\x82\xac", "\"caf\xc3\xa9 \xe2\x82\xac\"");   /* UTF-8 as is */
    quoted("ab+/==", "\"ab+/==\"");
}

static void test_json_str_long(void **state)
{
    (void)state;
    /* 10,000 bytes: plain runs of varying length with an escape between them. */
    size_t n = 10000;
    char *in = malloc(n + 1), *want = malloc(2 * n + 3);
    size_t w = 0;
    want[w++] = '"';
    for (size_t i = 0; i < n; i++) {
        bool esc = i % 97 == 13 || i % 389 == 0;
        in[i] = esc ? '"' : (char)('a' + i % 26);
        if (esc)
            want[w++] = '\\';
        want[w++] = in[i];
    }
    in[n] = '\0';
    want[w++] = '"';
    want[w] = '\0';
    pl_buf_t b;
    pl_buf_init(&b);
    pl_buf_json_str(&b, in);
    assert_int_equal(b.len, w);
    assert_memory_equal(b.data, want, w + 1);
    assert_true(b.cap > b.len);
    free(in);
    free(want);
    pl_buf_deinit(&b);
}

/* The decimal writers against printf, at the edges of their ranges. */
static void test_put_integers(void **state)
{
    (void)state;
    static const uint64_t u[] = { 0, 1, 9, 10, 99, 100, 4294967295u, 4294967296u,
                                  9007199254740993u, UINT64_MAX - 1, UINT64_MAX };
    static const int64_t s[] = { 0, -1, 1, -9, -10, 12345, INT64_MIN, INT64_MIN + 1,
                                 INT64_MAX };
    char want[32];
    for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
        pl_buf_t b;
        pl_buf_init(&b);
        pl_buf_puts(&b, "x");
        pl_buf_put_u64(&b, u[i]);
        snprintf(want, sizeof(want), "x%llu", (unsigned long long)u[i]);
        assert_string_equal(b.data, want);
        assert_int_equal(b.len, strlen(want));
        pl_buf_deinit(&b);
    }
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        pl_buf_t b;
        pl_buf_init(&b);
        pl_buf_put_i64(&b, s[i]);
        snprintf(want, sizeof(want), "%lld", (long long)s[i]);
        assert_string_equal(b.data, want);
        pl_buf_deinit(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_str_escapes),
        cmocka_unit_test(test_json_str_long),
        cmocka_unit_test(test_put_integers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
