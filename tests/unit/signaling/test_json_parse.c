/* test_json_parse.c: the frame JSON parser gives jansson's result on a table of inputs
 * chosen for the places yajl and jansson differ (escapes, surrogates, overlong UTF-8,
 * \v and \f, unterminated strings after a value, duplicates, depth, number ranges,
 * top-level scalars with and without JSON_DECODE_ANY), with jansson's error text; and
 * a frame the fast path takes keeps its members, their order and their types.
 * tests/fuzz/fuzz_json.c checks the same on arbitrary bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "signaling/sig_int.h"

#include <stdlib.h>
#include <string.h>

static const size_t any = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY;

/* Both parsers on text; same value (compared as compact text) or same error text. */
static void same(const char *text, size_t len, size_t flags)
{
    json_error_t e1, e2;
    json_t *want = json_loadb(text, len, flags, &e1);
    json_t *got = pl_sig_json_loadb(text, len, flags, &e2);
    if (!want) {
        assert_null(got);
        assert_string_equal(e1.text, e2.text);
        return;
    }
    assert_non_null(got);
    assert_true(json_equal(want, got));
    char *a = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
    char *b = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
    assert_string_equal(a, b);
    free(a);
    free(b);
    json_decref(want);
    json_decref(got);
}

static void test_table(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "{\"type\":\"chat.ack\",\"upto\":1234567}",
        "{\"type\":\"chat.send\",\"id\":7,\"client_id\":\"c1\",\"to\":\"bob\","
        "\"envelopes\":[{\"device_id\":789,\"ctype\":1,\"body\":\"QUJD\"}]}",
        "{\"a\":\"caf\\u00e9\",\"b\":\"\\ud83d\\ude00\"}",     /* escapes: jansson's path */
        "\"\\ud800\"", "\"\\ud800\\u0041\"", "\"\\udc00\"",  /* bad surrogates: refused */
        "{\"t\":\"a\\u0000b\"}",                              /* NUL: refused */
        "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", /* overlong, surrogate, > U+10FFFF */
        "\"h\xc3\xa9\"", "{\"k\xc3\xa9\":1}", "{\"\xc0\x80\":1}",  /* UTF-8 in keys too */
        "{\f\"a\":1}", "{\v\"a\":1}", "[1,\f2]",              /* not JSON whitespace */
        "2\":", "{\"a\":1} \"x}", "[1] \"",                   /* open string after a value */
        "{\"a\":1} x", "1 2", "{\"a\":1}{", "[]]",            /* trailing garbage */
        "{\"a\":1,\"a\":2}", "{\"a\":{\"b\":1,\"b\":1}}",      /* duplicates */
        "{\"a\":1,\"b\":2,\"c\":[true,false,null,1.5,-0,1e3,-2E-2]}",
        "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "1e400", "-1e400", "1e-400", "01", "-", "1.", ".5", "+1", "0x10",
        "42", "\"s\"", "null", "true", "", " ", "{", "[", "{\"a\"}", "{\"a\":}", "{,}",
        "[1,]", "{\"a\":1,}", "/* c */ {}", "tru", "nul", "[tru]", "\xef\xbb\xbf{}",
        "{\"a\":\"tab\there\"}", "{\"a\":\"nl\nhere\"}",      /* raw control characters */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        same(cases[i], strlen(cases[i]), any);
        same(cases[i], strlen(cases[i]), JSON_REJECT_DUPLICATES);
    }
    /* A raw NUL inside a string and after a value. */
    same("\"a\0b\"", 5, any);
    same("{}\0", 3, any);
}

static void test_depth(void **state)
{
    (void)state;
    /* 30 levels stay on the fast path; 40 and 3000 go to jansson (its limit is 2048). */
    static const int depths[] = { 30, 40, 3000 };
    for (size_t d = 0; d < sizeof(depths) / sizeof(depths[0]); d++) {
        int n = depths[d];
        char *s = malloc((size_t)n * 2 + 2);
        for (int i = 0; i < n; i++) {
            s[i] = '[';
            s[n + 1 + i] = ']';
        }
        s[n] = '1';
        same(s, (size_t)n * 2 + 1, any);
        free(s);
    }
}

static void test_long_key(void **state)
{
    (void)state;
    char s[1200];
    memset(s, 'k', sizeof(s));
    memcpy(s, "{\"", 2);
    memcpy(s + 1000, "\":1}", 4);
    same(s, 1004, any);
}

static void test_members_in_order(void **state)
{
    (void)state;
    const char *t = "{\"type\":\"chat.send\",\"id\":\"r1\",\"n\":-5,\"r\":0.25,\"ok\":true,"
                    "\"z\":null,\"a\":[{}]}";
    json_error_t e;
    json_t *f = pl_sig_json_loadb(t, strlen(t), any, &e);
    assert_non_null(f);
    static const char *const keys[] = { "type", "id", "n", "r", "ok", "z", "a" };
    size_t k = 0;
    const char *key;
    json_t *v;
    json_object_foreach(f, key, v) {
        assert_true(k < 7);
        assert_string_equal(key, keys[k++]);
    }
    assert_int_equal(k, 7);
    assert_true(json_is_integer(json_object_get(f, "n")));
    assert_true(json_is_real(json_object_get(f, "r")));
    assert_true(json_is_true(json_object_get(f, "ok")));
    assert_true(json_is_null(json_object_get(f, "z")));
    assert_int_equal(json_array_size(json_object_get(f, "a")), 1);
    json_decref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_long_key),
        cmocka_unit_test(test_members_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
