/* test_presence_map.c: the presence thread's tables: the u64 map against a reference
 * model under random inserts/deletes (backward-shift deletion must keep every probe
 * run reachable), and the device registry: replace, conditional remove (only the
 * connection that is still registered), per-account lists and iteration. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "signaling/presence_int.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_u64map_basic(void **state)
{
    PL_UNUSED(state);
    pl_u64map_t m;
    uint64_t v = 0;
    pl_u64map_init(&m);
    assert_false(pl_u64map_get(&m, 1, &v));
    assert_false(pl_u64map_get(&m, 0, &v));     /* 0 is never a key */
    assert_true(pl_u64map_put(&m, 1, 10));
    assert_false(pl_u64map_put(&m, 1, 11));     /* replace */
    assert_true(pl_u64map_get(&m, 1, &v));
    assert_int_equal(v, 11);
    assert_int_equal(m.count, 1);
    assert_true(pl_u64map_del(&m, 1));
    assert_false(pl_u64map_del(&m, 1));
    assert_false(pl_u64map_del(&m, 0));
    assert_int_equal(m.count, 0);
    pl_u64map_deinit(&m);
}

/* Random operations on small key ranges (lots of collisions and deletions inside
 * probe runs) checked against a direct-indexed model after every step. */
static void test_u64map_model(void **state)
{
    PL_UNUSED(state);
    enum { KEYS = 3000, OPS = 200000 };
    static uint64_t model[KEYS + 1];
    static bool present[KEYS + 1];
    memset(present, 0, sizeof(present));
    pl_u64map_t m;
    pl_u64map_init(&m);
    size_t count = 0;
    for (int i = 0; i < OPS; i++) {
        uint64_t k = rng() % KEYS + 1, val = rng();
        if (rng() % 3) {
            bool added = pl_u64map_put(&m, k, val);
            assert_int_equal(added, !present[k]);
            count += !present[k];
            present[k] = true;
            model[k] = val;
        } else {
            assert_int_equal(pl_u64map_del(&m, k), present[k]);
            count -= present[k];
            present[k] = false;
        }
        if (i % 5000 == 0 || i == OPS - 1) {
            for (uint64_t j = 1; j <= KEYS; j++) {
                uint64_t got;
                assert_int_equal(pl_u64map_get(&m, j, &got), present[j]);
                if (present[j])
                    assert_true(got == model[j]);
            }
        }
        assert_int_equal(m.count, count);
    }
    pl_u64map_deinit(&m);
}

static void test_registry_put_replace_remove(void **state)
{
    PL_UNUSED(state);
    pl_pres_map_t pm;
    pl_pres_map_init(&pm);
    assert_int_equal(pl_pres_map_put(&pm, 7, 100, 0xa1), 0);
    assert_int_equal(pl_pres_map_put(&pm, 8, 100, 0xa2), 0);
    assert_int_equal(pl_pres_map_put(&pm, 9, 200, 0xa3), 0);
    assert_int_equal(pm.count, 3);
    /* The same device connects again: the new connection replaces the old one. */
    assert_int_equal(pl_pres_map_put(&pm, 7, 100, 0xb1), 0xa1);
    assert_int_equal(pm.count, 3);
    /* The old connection's close must not remove the new registration. */
    assert_false(pl_pres_map_remove(&pm, 7, 0xa1));
    const pl_pres_entry_t *e = pl_pres_map_get(&pm, 7);
    assert_non_null(e);
    assert_int_equal(e->conn_id, 0xb1);
    assert_int_equal(e->account_id, 100);
    assert_true(pl_pres_map_remove(&pm, 7, 0xb1));
    assert_null(pl_pres_map_get(&pm, 7));
    assert_false(pl_pres_map_remove(&pm, 7, 0xb1));
    assert_false(pl_pres_map_remove(&pm, 12345, 1));
    assert_int_equal(pm.count, 2);
    pl_pres_map_deinit(&pm);
}

static bool has_device(const pl_pres_entry_t **es, size_t n, uint64_t device)
{
    for (size_t i = 0; i < n; i++)
        if (es[i]->device_id == device)
            return true;
    return false;
}

static void test_registry_accounts(void **state)
{
    PL_UNUSED(state);
    pl_pres_map_t pm;
    const pl_pres_entry_t *es[8];
    pl_pres_map_init(&pm);
    for (uint64_t d = 1; d <= 4; d++)
        pl_pres_map_put(&pm, d, 50, d * 16);
    pl_pres_map_put(&pm, 5, 51, 80);
    assert_int_equal(pl_pres_map_account(&pm, 50, es, 8), 4);
    assert_int_equal(pl_pres_map_account(&pm, 51, es, 8), 1);
    assert_int_equal(es[0]->device_id, 5);
    assert_int_equal(pl_pres_map_account(&pm, 52, es, 8), 0);
    /* A short out array: the count is still the whole list. */
    assert_int_equal(pl_pres_map_account(&pm, 50, es, 2), 4);
    /* Removing from the middle, the head and the tail keeps the rest listed. */
    assert_true(pl_pres_map_remove(&pm, 2, 32));
    assert_true(pl_pres_map_remove(&pm, 4, 64));
    size_t n = pl_pres_map_account(&pm, 50, es, 8);
    assert_int_equal(n, 2);
    assert_true(has_device(es, n, 1) && has_device(es, n, 3));
    assert_true(pl_pres_map_remove(&pm, 1, 16));
    assert_true(pl_pres_map_remove(&pm, 3, 48));
    assert_int_equal(pl_pres_map_account(&pm, 50, es, 8), 0);
    assert_int_equal(pl_pres_map_account(&pm, 51, es, 8), 1);
    pl_pres_map_deinit(&pm);
}

static void test_registry_iterate_and_churn(void **state)
{
    PL_UNUSED(state);
    enum { N = 5000 };
    pl_pres_map_t pm;
    pl_pres_map_init(&pm);
    for (uint64_t d = 1; d <= N; d++)
        pl_pres_map_put(&pm, d, d % 97 + 1, d << 8);
    for (uint64_t d = 2; d <= N; d += 2)
        assert_true(pl_pres_map_remove(&pm, d, d << 8));
    uint32_t cursor = 0;
    size_t seen = 0;
    const pl_pres_entry_t *e;
    while ((e = pl_pres_map_next(&pm, &cursor))) {
        assert_true(e->device_id % 2 == 1);
        assert_int_equal(e->conn_id, e->device_id << 8);
        seen++;
    }
    assert_int_equal(seen, N / 2);
    assert_int_equal(pm.count, N / 2);
    /* Freed entries are reused and the per-account lists stay consistent. */
    for (uint64_t d = N + 1; d <= N + 1000; d++)
        pl_pres_map_put(&pm, d, 1, d);
    const pl_pres_entry_t *es[2048];
    size_t n = pl_pres_map_account(&pm, 1, es, 2048);
    size_t expect = 1000;
    for (uint64_t d = 1; d <= N; d += 2)
        expect += d % 97 + 1 == 1;
    assert_int_equal(n, expect);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(es[i]->account_id, 1);
    pl_pres_map_deinit(&pm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u64map_basic),
        cmocka_unit_test(test_u64map_model),
        cmocka_unit_test(test_registry_put_replace_remove),
        cmocka_unit_test(test_registry_accounts),
        cmocka_unit_test(test_registry_iterate_and_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
