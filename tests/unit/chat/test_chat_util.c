/* test_chat_util.c: chat's pure helpers: base64 and id rules, username normalization,
 * id list arithmetic (the missing/extra device diff behind device_mismatch), presence
 * privacy (reciprocal), the token bucket of key fetches, and the u64 hash map with
 * backward-shift deletion under churn. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

static void test_b64(void **state)
{
    (void)state;
    assert_true(chat_b64_ok("aGVsbG8=", 8));
    assert_true(chat_b64_ok("aGk=", 4));
    assert_true(chat_b64_ok("YQ==", 4));
    assert_true(chat_b64_ok("ab+/", 4));
    assert_false(chat_b64_ok("", 0));
    assert_false(chat_b64_ok("abc", 3));            /* not a multiple of 4 */
    assert_false(chat_b64_ok("a===", 4));           /* three pads */
    assert_false(chat_b64_ok("a=bc", 4));           /* pad in the middle */
    assert_false(chat_b64_ok("ab-_", 4));           /* base64url is not base64 */
    assert_false(chat_b64_ok("ab c", 4));
    assert_false(chat_b64_ok("ab\0c", 4));
}

static void test_ids_and_names(void **state)
{
    (void)state;
    assert_true(chat_client_id_ok("a"));
    assert_true(chat_client_id_ok("2f1c-9:x_y.z"));
    assert_false(chat_client_id_ok(""));
    assert_false(chat_client_id_ok("has space"));
    assert_false(chat_client_id_ok("é"));
    char long_id[CHAT_CLIENT_ID_MAX + 2];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    assert_false(chat_client_id_ok(long_id));
    long_id[CHAT_CLIENT_ID_MAX] = '\0';
    assert_true(chat_client_id_ok(long_id));

    char out[CHAT_USERNAME_MAX + 1];
    assert_true(chat_username_norm("Alice_1", out));
    assert_string_equal(out, "alice_1");
    assert_false(chat_username_norm("ab", out));
    assert_false(chat_username_norm("_abc", out));
    assert_false(chat_username_norm("a b c", out));
    assert_true(chat_asset_ok(""));
    assert_true(chat_asset_ok("asset:12.png"));
    assert_false(chat_asset_ok("a/b"));
    assert_true(chat_text_ok("Team \xc3\xa9t\xc3\xa9"));
    assert_false(chat_text_ok("two\nlines"));
}

static void test_ids_diff(void **state)
{
    (void)state;
    uint64_t want[] = { 2, 5, 7, 9 }, have[] = { 1, 5, 9, 11, 12 };
    uint64_t missing[4], extra[5];
    size_t nm, ne;
    chat_ids_diff(want, 4, have, 5, missing, &nm, extra, &ne);
    assert_int_equal(nm, 2);
    assert_int_equal(missing[0], 2);
    assert_int_equal(missing[1], 7);
    assert_int_equal(ne, 3);
    assert_int_equal(extra[0], 1);
    assert_int_equal(extra[1], 11);
    assert_int_equal(extra[2], 12);
    chat_ids_diff(want, 4, want, 4, missing, &nm, extra, &ne);
    assert_int_equal(nm + ne, 0);
    chat_ids_diff(NULL, 0, have, 5, missing, &nm, extra, &ne);
    assert_int_equal(nm, 0);
    assert_int_equal(ne, 5);

    uint64_t ids[] = { 9, 3, 3, 1, 9, 2 };
    chat_ids_sort(ids, 6);
    size_t n = chat_ids_uniq(ids, 6);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[3], 9);
}

static void test_ids_json(void **state)
{
    (void)state;
    uint64_t *ids = NULL;
    json_t *a = json_loads("[1, 9007199254740991, 3]", 0, NULL);
    assert_int_equal(chat_ids_from_json(a, 10, &ids), 3);
    assert_int_equal(ids[1], 9007199254740991ull);
    free(ids);
    assert_int_equal(chat_ids_from_json(a, 2, &ids), -1);      /* too many */
    json_decref(a);
    static const char *const bad[] = { "[0]", "[-1]", "[1.5]", "[\"1\"]", "[9007199254740992]",
                                       "{}" };
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        a = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_int_equal(chat_ids_from_json(a, 10, &ids), -1);
        assert_null(ids);
        json_decref(a);
    }
    a = json_array();
    assert_int_equal(chat_ids_from_json(a, 10, &ids), 0);
    free(ids);
    json_decref(a);
    uint64_t v[] = { 4, 2 };
    json_t *j = chat_ids_json(v, 2);
    char *s = json_dumps(j, JSON_COMPACT);
    assert_string_equal(s, "[4,2]");
    free(s);
    json_decref(j);
}

static void test_privacy(void **state)
{
    (void)state;
    enum { E = CHAT_PRIV_EVERYONE, C = CHAT_PRIV_CONTACTS, N = CHAT_PRIV_NOBODY };
    assert_int_equal(chat_privacy_parse("everyone"), E);
    assert_int_equal(chat_privacy_parse("contacts"), C);
    assert_int_equal(chat_privacy_parse("nobody"), N);
    assert_int_equal(chat_privacy_parse("friends"), -1);
    assert_string_equal(chat_privacy_name(C), "contacts");
    assert_true(chat_presence_visible(E, false, E, false));
    assert_false(chat_presence_visible(N, true, E, true));      /* subject hides */
    assert_false(chat_presence_visible(E, true, N, true));      /* viewer hides: reciprocal */
    assert_false(chat_presence_visible(C, false, E, false));    /* not the subject's contact */
    assert_true(chat_presence_visible(C, true, E, false));
    assert_false(chat_presence_visible(E, false, C, false));    /* viewer shows only contacts */
    assert_true(chat_presence_visible(C, true, C, true));
}

static void test_bucket(void **state)
{
    (void)state;
    chat_bucket_t b = { 0 };
    uint64_t retry = 0, t = 1000000;
    for (int i = 0; i < 3; i++)
        assert_true(chat_bucket_take(&b, t, 60, 3, &retry));   /* burst of 3 */
    assert_false(chat_bucket_take(&b, t, 60, 3, &retry));
    assert_true(retry > 0 && retry <= 1001);                    /* one per second */
    assert_false(chat_bucket_take(&b, t + 500, 60, 3, &retry));
    assert_true(chat_bucket_take(&b, t + 1001, 60, 3, &retry));
    assert_true(chat_bucket_take(&b, t + 3000000, 60, 3, NULL)); /* refilled, capped */
    assert_true(chat_bucket_take(&b, t + 3000000, 60, 3, NULL));
    assert_true(chat_bucket_take(&b, t + 3000000, 60, 3, NULL));
    assert_false(chat_bucket_take(&b, t + 3000000, 60, 3, NULL));
}

static void test_map(void **state)
{
    (void)state;
    chat_map_t m;
    chat_map_init(&m);
    enum { N = 5000 };
    static int vals[N];
    for (int i = 0; i < N; i++)
        assert_null(chat_map_put(&m, (uint64_t)i * 1024 + 1, &vals[i]));
    assert_int_equal(m.count, N);
    assert_ptr_equal(chat_map_put(&m, 1, &vals[7]), &vals[0]);
    assert_int_equal(m.count, N);
    chat_map_put(&m, 1, &vals[0]);
    /* Delete every third key: the rest stay findable (backward shift keeps runs). */
    for (int i = 0; i < N; i += 3)
        assert_ptr_equal(chat_map_del(&m, (uint64_t)i * 1024 + 1), &vals[i]);
    for (int i = 0; i < N; i++) {
        void *v = chat_map_get(&m, (uint64_t)i * 1024 + 1);
        if (i % 3 == 0)
            assert_null(v);
        else
            assert_ptr_equal(v, &vals[i]);
    }
    assert_null(chat_map_del(&m, 424242));
    assert_null(chat_map_get(&m, 424242));
    chat_map_deinit(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_ids_and_names),
        cmocka_unit_test(test_ids_diff),
        cmocka_unit_test(test_ids_json),
        cmocka_unit_test(test_privacy),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
