/* test_chat_mem.c: the store-thread registry: synced devices per account, delivery
 * state reset on (re)sync, presence subscriptions and their reverse index, the reset
 * after a failed commit (every synced connection reported, caches forgotten), trimming
 * and rate buckets; and the chat.message / chat.event frames built from message data. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

static void test_synced(void **state)
{
    (void)state;
    chat_mem_t *m = chat_mem_create();
    chat_dev_t *d1 = chat_mem_dev(m, 11, true);
    d1->account_id = 1;
    chat_dev_t *d2 = chat_mem_dev(m, 12, true);
    d2->account_id = 1;
    assert_null(chat_mem_dev(m, 13, false));
    assert_int_equal(d1->queued, -1);
    d1->pushed_upto = 99;
    d1->inflight = 5;
    chat_mem_set_synced(m, d1, 1001);
    assert_int_equal(d1->pushed_upto, 0);          /* a new connection starts over */
    assert_int_equal(d1->inflight, 0);
    assert_true(d1->paging);
    chat_mem_set_synced(m, d2, 1002);
    chat_mem_set_synced(m, d2, 1003);              /* again: not listed twice */
    chat_acct_t *a = chat_mem_acct(m, 1, false);
    assert_non_null(a);
    assert_int_equal(a->n_synced, 2);
    chat_mem_set_synced(m, d1, 0);
    assert_int_equal(a->n_synced, 1);
    assert_int_equal(a->synced[0], 12);
    assert_int_equal(chat_mem_devices(m), 2);
    chat_mem_destroy(m);
}

static void test_watch(void **state)
{
    (void)state;
    chat_mem_t *m = chat_mem_create();
    chat_dev_t *d = chat_mem_dev(m, 21, true);
    d->account_id = 2;
    uint64_t accts[] = { 5, 6, 7 };
    chat_mem_watch(m, d, 500, accts, 3);
    assert_int_equal(d->watch_conn, 500);
    assert_int_equal(chat_mem_acct(m, 6, false)->n_watchers, 1);
    uint64_t fewer[] = { 7 };
    chat_mem_watch(m, d, 501, fewer, 1);           /* replaces */
    assert_int_equal(chat_mem_acct(m, 6, false)->n_watchers, 0);
    assert_int_equal(chat_mem_acct(m, 7, false)->n_watchers, 1);
    chat_mem_unwatch_all(m, d);
    assert_int_equal(d->watch_conn, 0);
    assert_int_equal(chat_mem_acct(m, 7, false)->n_watchers, 0);
    chat_mem_trim(m);                              /* nothing left worth keeping */
    assert_null(chat_mem_dev(m, 21, false));
    assert_null(chat_mem_acct(m, 7, false));
    chat_mem_destroy(m);
}

static uint64_t closed[8];
static size_t n_closed;

static void on_reset(uint64_t conn_id, void *arg)
{
    (void)arg;
    closed[n_closed++] = conn_id;
}

static void test_reset_and_trim(void **state)
{
    (void)state;
    chat_mem_t *m = chat_mem_create();
    for (uint64_t i = 1; i <= 40; i++) {
        chat_dev_t *d = chat_mem_dev(m, i, true);
        d->account_id = 100 + i % 3;
        d->queued = (int64_t)i;
        if (i % 10 == 0)
            chat_mem_set_synced(m, d, 9000 + i);
    }
    chat_dev_t *w = chat_mem_dev(m, 7, false);
    uint64_t acct = 101;
    chat_mem_watch(m, w, 777, &acct, 1);
    n_closed = 0;
    chat_mem_reset(m, on_reset, NULL);
    assert_int_equal(n_closed, 5);                 /* 4 synced + 1 watching connection */
    for (uint64_t i = 1; i <= 40; i++) {
        chat_dev_t *d = chat_mem_dev(m, i, false);
        assert_int_equal(d->queued, -1);
        assert_int_equal(d->conn_id, 0);
    }
    chat_mem_trim(m);
    assert_int_equal(chat_mem_devices(m), 0);

    chat_bucket_t *b = chat_mem_bucket(m, 42);
    assert_ptr_equal(chat_mem_bucket(m, 42), b);
    assert_true(chat_bucket_take(b, 1000, 60, 1, NULL));
    chat_mem_trim_buckets(m, 1000 + 60000);        /* recent: kept */
    assert_ptr_equal(chat_mem_bucket(m, 42), b);
    assert_false(chat_bucket_take(b, 1001, 60, 1, NULL));
    chat_mem_trim_buckets(m, 1000 + 700000);       /* idle: dropped, a new one is full */
    assert_true(chat_bucket_take(chat_mem_bucket(m, 42), 701001, 60, 1, NULL));
    chat_mem_destroy(m);
}

static void test_frames(void **state)
{
    (void)state;
    chat_msgdata_t md = { .message_id = 7, .from_id = 1, .from_device = 3, .sent_at = 1234,
                          .ctype = 2 };
    strcpy(md.from, "alice");
    strcpy(md.client_id, "c1");
    json_t *f = chat_msg_frame(&md, "QUJD");
    char *s = json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"body\":\"QUJD\",\"client_id\":\"c1\",\"ctype\":2,\"from\":\"alice\","
                           "\"from_device\":3,\"message_id\":7,\"sent_at\":1234,"
                           "\"type\":\"chat.message\"}");
    free(s);
    json_decref(f);
    md.group_id = 9;
    md.client_id[0] = '\0';
    f = chat_msg_frame(&md, "QUJD");
    assert_int_equal(json_integer_value(json_object_get(f, "group_id")), 9);
    assert_null(json_object_get(f, "client_id"));
    json_decref(f);
    /* An event's JSON cannot override the frame's type or message id. */
    md.event = true;
    f = chat_msg_frame(&md, "{\"event\":\"group.created\",\"type\":\"x\",\"message_id\":1}");
    assert_string_equal(json_string_value(json_object_get(f, "type")), "chat.event");
    assert_int_equal(json_integer_value(json_object_get(f, "message_id")), 7);
    assert_string_equal(json_string_value(json_object_get(f, "event")), "group.created");
    json_decref(f);
    /* The hot path's text twin says exactly what chat_msg_frame says. */
    md.event = false;
    for (int variant = 0; variant < 4; variant++) {
        md.group_id = variant == 1 ? 9 : 0;
        strcpy(md.to, variant == 3 ? "ca\"rol" : "");  /* a copy of one's own message */
        strcpy(md.client_id, variant == 2 ? "" : "x-1");
        strcpy(md.from, variant == 2 ? "quote\"d" : "bob");
        json_t *want = chat_msg_frame(&md, "QUJD");
        pl_buf_t b;
        pl_buf_init(&b);
        chat_msg_text(&md, "QUJD", &b);
        json_t *got = json_loads(b.data, 0, NULL);
        assert_non_null(got);
        assert_true(json_equal(want, got));
        char *w = json_dumps(want, JSON_COMPACT);
        assert_string_equal(w, b.data);             /* same member order too */
        free(w);
        json_decref(want);
        json_decref(got);
        pl_buf_deinit(&b);
    }
    md.event = true;
    f = chat_msg_frame(&md, "not json");
    assert_string_equal(json_string_value(json_object_get(f, "type")), "chat.event");
    json_decref(f);
}

static void test_receipts_text(void **state)
{
    (void)state;
    chat_receipt_t r[2] = {
        { .message_id = 5, .at = 100, .status = CHAT_RCPT_DELIVERED },
        { .message_id = 6, .group_id = 3, .at = 101, .status = CHAT_RCPT_READ, .all = true },
    };
    json_t *f = chat_receipts_frame(r, 2, "b\"ob");
    assert_non_null(f);
    char *s = json_dumps(f, JSON_COMPACT);
    assert_string_equal(s, "{\"type\":\"chat.receipt\",\"receipts\":[{\"message_id\":5,"
        "\"status\":\"delivered\",\"user\":\"b\\\"ob\",\"at\":100},{\"message_id\":6,"
        "\"status\":\"read\",\"user\":\"b\\\"ob\",\"at\":101,\"group_id\":3,\"all\":true}]}");
    free(s);
    json_decref(f);
    chat_receipt_t e = { .message_id = 7, .at = 9, .status = CHAT_RCPT_EXPIRED };
    f = chat_receipts_frame(&e, 1, "");                 /* expiry: nobody to name */
    json_t *one = json_array_get(json_object_get(f, "receipts"), 0);
    assert_string_equal(json_string_value(json_object_get(one, "status")), "expired");
    assert_null(json_object_get(one, "user"));
    json_decref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synced),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_reset_and_trim),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_receipts_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
