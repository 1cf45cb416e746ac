/* test_limits.c: token buckets (refill, burst cap, retry hint, clock going backwards),
 * the keyed limiter (per-key isolation, eviction of refilled keys, LRU when none has
 * refilled, capacity bound) and the device directory against a reference model
 * (replacement, conditional removal, backward-shift deletion under collisions, growth). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "signaling/sig_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_bucket(void **state)
{
    PL_UNUSED(state);
    pl_sig_bucket_t b;
    uint64_t retry = 0;
    pl_sig_bucket_init(&b, 3, 1000);
    for (int i = 0; i < 3; i++)
        assert_true(pl_sig_bucket_take(&b, 1000, 1.0, 3, NULL));
    assert_false(pl_sig_bucket_take(&b, 1000, 1.0, 3, &retry));
    assert_in_range(retry, 990, 1001);
    assert_false(pl_sig_bucket_take(&b, 1500, 1.0, 3, &retry));     /* half a token */
    assert_in_range(retry, 490, 501);
    assert_true(pl_sig_bucket_take(&b, 2000, 1.0, 3, NULL));
    /* A long pause refills only up to the burst. */
    for (int i = 0; i < 3; i++)
        assert_true(pl_sig_bucket_take(&b, 100000, 1.0, 3, NULL));
    assert_false(pl_sig_bucket_take(&b, 100000, 1.0, 3, NULL));
    /* Time going backwards neither refills nor breaks. */
    assert_false(pl_sig_bucket_take(&b, 50000, 1.0, 3, NULL));
    /* rate 0: nothing comes back. */
    pl_sig_bucket_init(&b, 1, 0);
    assert_true(pl_sig_bucket_take(&b, 0, 0, 1, NULL));
    assert_false(pl_sig_bucket_take(&b, 1000000, 0, 1, &retry));
    assert_int_equal(retry, UINT64_MAX);
}

static void test_limiter_keys(void **state)
{
    PL_UNUSED(state);
    pl_sig_limiter_t *l = pl_sig_limiter_create(100);
    for (int i = 0; i < 2; i++)
        assert_true(pl_sig_limiter_take(l, "10.0.0.1", 0, 1.0 / 60, 2, NULL));
    assert_false(pl_sig_limiter_take(l, "10.0.0.1", 0, 1.0 / 60, 2, NULL));
    assert_true(pl_sig_limiter_take(l, "10.0.0.2", 0, 1.0 / 60, 2, NULL));
    assert_true(pl_sig_limiter_take(l, "", 0, 1.0 / 60, 2, NULL));     /* no key: no limit */
    assert_true(pl_sig_limiter_take(l, "10.0.0.1", 60000, 1.0 / 60, 2, NULL));
    assert_int_equal(pl_sig_limiter_size(l), 2);
    pl_sig_limiter_destroy(l);
}

static void test_limiter_bounded(void **state)
{
    PL_UNUSED(state);
    pl_sig_limiter_t *l = pl_sig_limiter_create(8);
    char key[32];
    /* Eight keys exhaust their buckets at t=0; none has refilled at t=1 s, so each new
     * key evicts the least recently used one and the size stays at the bound. */
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_true(pl_sig_limiter_take(l, key, (uint64_t)i, 1.0, 1, NULL));
    }
    assert_int_equal(pl_sig_limiter_size(l), 8);
    assert_true(pl_sig_limiter_take(l, "new", 100, 1.0, 1, NULL));
    assert_int_equal(pl_sig_limiter_size(l), 8);
    /* k0 was the oldest: it was dropped and starts full again; k7 is still limited. */
    assert_false(pl_sig_limiter_take(l, "k7", 200, 1.0, 1, NULL));
    /* After everything has refilled, a sweep drops all the idle keys. */
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "x%d", i);
        assert_true(pl_sig_limiter_take(l, key, 10000 + (uint64_t)i * 2000, 1.0, 1, NULL));
        assert_true(pl_sig_limiter_size(l) <= 8);
    }
    /* Long keys are truncated, not overflowed. */
    char longkey[200];
    memset(longkey, 'a', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    assert_true(pl_sig_limiter_take(l, longkey, 10000000, 1.0, 1, NULL));
    assert_false(pl_sig_limiter_take(l, longkey, 10000000, 1.0, 1, NULL));
    pl_sig_limiter_destroy(l);
}

static void test_directory_basic(void **state)
{
    PL_UNUSED(state);
    pl_sig_dir_t *d = pl_sig_dir_create();
    assert_int_equal(pl_sig_dir_put(d, 7, 100), 0);
    assert_int_equal(pl_sig_dir_get(d, 7), 100);
    assert_int_equal(pl_sig_dir_put(d, 7, 200), 100);      /* replaced */
    pl_sig_dir_remove(d, 7, 100);                          /* stale close: no effect */
    assert_int_equal(pl_sig_dir_get(d, 7), 200);
    pl_sig_dir_remove(d, 7, 200);
    assert_int_equal(pl_sig_dir_get(d, 7), 0);
    assert_int_equal(pl_sig_dir_count(d), 0);
    pl_sig_dir_destroy(d);
}

static void test_directory_model(void **state)
{
    PL_UNUSED(state);
    enum { N = 5000 };
    static uint64_t model[N];
    memset(model, 0, sizeof(model));
    pl_sig_dir_t *d = pl_sig_dir_create();
    uint64_t rng = 42;
    size_t live = 0;
    for (int step = 0; step < 200000; step++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t dev = (rng >> 33) % N + 1;
        bool put = ((rng >> 20) & 3) != 0;
        if (put) {
            uint64_t conn = (uint64_t)step + 1;
            assert_int_equal(pl_sig_dir_put(d, dev, conn), model[dev - 1]);
            live += model[dev - 1] == 0;
            model[dev - 1] = conn;
        } else if (model[dev - 1]) {
            pl_sig_dir_remove(d, dev, model[dev - 1]);
            model[dev - 1] = 0;
            live--;
        }
        if (step % 997 == 0)
            for (uint64_t k = 1; k <= N; k++)
                assert_int_equal(pl_sig_dir_get(d, k), model[k - 1]);
    }
    assert_int_equal(pl_sig_dir_count(d), live);
    pl_sig_dir_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_limiter_keys),
        cmocka_unit_test(test_limiter_bounded),
        cmocka_unit_test(test_directory_basic),
        cmocka_unit_test(test_directory_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
