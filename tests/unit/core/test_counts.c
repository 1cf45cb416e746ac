/* test_counts.c: the keyed counts (core/pl_counts.h): the cap, entries leaving at zero,
 * many keys sharing buckets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/pl_counts.h"

#include <stdio.h>

static void test_counts(void **state)
{
    (void)state;
    pl_counts_t *t = pl_counts_create();
    assert_false(pl_counts_take(t, "10.0.0.1", 0));       /* cap 0: never */
    assert_int_equal(pl_counts_size(t), 0);
    for (int i = 0; i < 3; i++)
        assert_true(pl_counts_take(t, "10.0.0.1", 3));
    assert_false(pl_counts_take(t, "10.0.0.1", 3));       /* at the cap */
    assert_true(pl_counts_take(t, "10.0.0.1", 4));        /* a raised cap */
    assert_true(pl_counts_take(t, "::1", 3));
    assert_int_equal(pl_counts_get(t, "10.0.0.1"), 4);
    assert_int_equal(pl_counts_size(t), 2);
    for (int i = 0; i < 4; i++)
        pl_counts_put(t, "10.0.0.1");
    assert_int_equal(pl_counts_get(t, "10.0.0.1"), 0);
    assert_int_equal(pl_counts_size(t), 1);               /* zero: gone */
    pl_counts_put(t, "10.0.0.1");                          /* not there: nothing */
    pl_counts_put(t, "192.0.2.9");
    assert_int_equal(pl_counts_size(t), 1);
    /* Many keys sharing buckets: each keeps its own count. */
    char k[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof(k), "198.51.%d.%d", i / 256, i % 256);
        assert_true(pl_counts_take(t, k, 2));
        assert_true(pl_counts_take(t, k, 2));
        assert_false(pl_counts_take(t, k, 2));
    }
    assert_int_equal(pl_counts_size(t), 5001);
    for (int i = 0; i < 5000; i += 2) {
        snprintf(k, sizeof(k), "198.51.%d.%d", i / 256, i % 256);
        pl_counts_put(t, k);
        pl_counts_put(t, k);
    }
    assert_int_equal(pl_counts_size(t), 2501);
    assert_int_equal(pl_counts_get(t, "198.51.0.1"), 2);
    assert_int_equal(pl_counts_get(t, "198.51.0.0"), 0);
    pl_counts_destroy(t);                                  /* frees what is left */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
