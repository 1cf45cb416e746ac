/* test_chat_index.c: the history and find indexes that trail chat_messages
 * (chat_index.c) on a real SQLite database: a catch-up indexes exactly the rows above
 * upto (messages and events by conversation, messages only by sender, receipts rows
 * nowhere), a second one finds nothing to do, a catch-up rolled back with its request
 * leaves nothing behind and the next one indexes the rows that really exist, the
 * schema step from version 1 indexes the messages already there, and chat_ix_added
 * catches up every CHAT_IX_RUN rows. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chat/chat_int.h"
#include "store/store_int.h"

#include <stdio.h>
#include <string.h>

typedef struct fx {
    pl_store_conn_t conn;
    pl_metrics_t *reg;
    chat_t chat;
} fx_t;

static void exec_ok(pl_store_conn_t *conn, const char *sql)
{
    assert_int_equal(pl_store_conn_exec(conn, sql, "test"), 0);
}

static sqlite3_int64 one(pl_store_conn_t *conn, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(conn->db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    sqlite3_int64 v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static const char *txt(pl_store_conn_t *conn, const char *sql)
{
    static char out[256];
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(conn->db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(out, sizeof out, "%s", t ? (const char *)t : "(null)");
    sqlite3_finalize(st);
    return out;
}

/* steps: how many of chat's schema steps to apply (the rest is up to the test). */
static fx_t *open_fx(size_t steps)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_int_equal(pl_store_conn_open(&f->conn, ":memory:", true), 0);
    exec_ok(&f->conn, "CREATE TABLE accounts(id INTEGER PRIMARY KEY, username TEXT);"
                      "CREATE TABLE devices(id INTEGER PRIMARY KEY, account_id INTEGER);");
    for (size_t i = 0; i < steps; i++)
        exec_ok(&f->conn, chat_schema.steps[i].sql);
    f->reg = pl_metrics_create();
    f->chat.m.ix_rows = pl_metrics_counter(f->reg, "rows", "r", NULL);
    static const double b[] = { 1 };
    f->chat.m.ix_seconds = pl_metrics_histogram(f->reg, "secs", "s", NULL, b, 1);
    f->chat.shard = pl_metrics_shard_create(f->reg);
    return f;
}

static void close_fx(fx_t *f)
{
    pl_store_conn_close(&f->conn);
    pl_metrics_destroy(f->reg);
    free(f);
}

static int catch_up(fx_t *f)
{
    int rc = chat_ix_catch_up(&f->chat, &f->conn);
    pl_store_conn_reset_used(&f->conn);
    return rc;
}

/* kind, sender, conv_a, conv_b */
static void add(fx_t *f, int kind, int sender, int a, int b)
{
    char sql[256];
    snprintf(sql, sizeof sql, "INSERT INTO chat_messages(kind, sender_id, sender_device,"
             " conv_a, conv_b, created_at, expires_at) VALUES (%d, %d, 1, %d, %d, 0, 1)",
             kind, sender, a, b);
    exec_ok(&f->conn, sql);
}

static void test_catch_up(void **state)
{
    (void)state;
    fx_t *f = open_fx(chat_schema.n_steps);
    assert_int_equal(catch_up(f), 0);                          /* empty: nothing to do */
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), 0);
    add(f, 0, 1, 1, 2);     /* 1: a direct message from 1 to 2 */
    add(f, 0, 2, 1, 2);     /* 2: the answer */
    add(f, 0, 1, 1, 3);     /* 3: 1 to 3 */
    add(f, 1, 1, 0, 7);     /* 4: an event of group 7 */
    add(f, 2, 2, 0, 0);     /* 5: receipts held for an away device */
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_conv"), 0);  /* trailing */
    assert_int_equal(catch_up(f), 0);
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), 5);
    assert_string_equal(txt(&f->conn, "SELECT group_concat(id) FROM (SELECT id FROM chat_ix_conv"
                                   " WHERE conv_a = 1 AND conv_b = 2 ORDER BY id)"), "1,2");
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_conv"), 4);   /* not 5 */
    assert_int_equal(one(&f->conn, "SELECT id FROM chat_ix_conv WHERE conv_b = 7"), 4);
    assert_string_equal(txt(&f->conn, "SELECT group_concat(id) FROM (SELECT id FROM"
                                   " chat_ix_sender WHERE sender_id = 1 ORDER BY id)"), "1,3");
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_sender"), 3);
    assert_int_equal(catch_up(f), 0);                          /* nothing new */
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_conv"), 4);
    add(f, 0, 3, 1, 3);     /* 6 */
    assert_int_equal(catch_up(f), 0);
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), 6);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_conv WHERE conv_b = 3"), 2);
    assert_int_equal(one(&f->conn, "SELECT id FROM chat_ix_sender WHERE sender_id = 3"), 6);
    close_fx(f);
}

static void test_rollback(void **state)
{
    (void)state;
    fx_t *f = open_fx(chat_schema.n_steps);
    add(f, 0, 1, 1, 2);     /* 1, committed */
    exec_ok(&f->conn, "BEGIN; SAVEPOINT req;");
    add(f, 0, 1, 1, 2);     /* 2, in a request that fails after its catch-up */
    assert_int_equal(catch_up(f), 0);
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), 2);
    exec_ok(&f->conn, "ROLLBACK TO req; RELEASE req;");
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), 0);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_conv"), 0);
    add(f, 0, 5, 4, 5);     /* takes id 2 again, another conversation */
    exec_ok(&f->conn, "COMMIT;");
    assert_int_equal(catch_up(f), 0);
    assert_string_equal(txt(&f->conn, "SELECT group_concat(id) FROM (SELECT id FROM chat_ix_conv"
                                   " WHERE conv_a = 1 ORDER BY id)"), "1");
    assert_int_equal(one(&f->conn, "SELECT id FROM chat_ix_conv WHERE conv_a = 4"), 2);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_sender WHERE sender_id = 1"), 1);
    /* Rows indexed twice (a catch-up run again after a partial failure) are harmless. */
    exec_ok(&f->conn, "UPDATE chat_ix_state SET upto = 0");
    assert_int_equal(catch_up(f), 0);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_conv"), 2);
    close_fx(f);
}

static void test_migration_indexes_old_rows(void **state)
{
    (void)state;
    fx_t *f = open_fx(1);       /* a version-1 database with messages in it */
    add(f, 0, 1, 1, 2);
    add(f, 2, 1, 0, 0);
    add(f, 0, 2, 1, 2);
    for (size_t i = 1; i < chat_schema.n_steps; i++)
        exec_ok(&f->conn, chat_schema.steps[i].sql);
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), 3);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_conv WHERE conv_b = 2"), 2);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_conv"), 2);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_sender"), 2);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                   " AND name IN ('chat_messages_conv', 'chat_messages_sender')"),
                     0);
    assert_int_equal(catch_up(f), 0);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_conv"), 2);
    close_fx(f);
}

static void test_added_runs(void **state)
{
    (void)state;
    fx_t *f = open_fx(chat_schema.n_steps);
    add(f, 0, 1, 1, 2);
    for (unsigned i = 1; i < CHAT_IX_RUN; i++) {
        assert_int_equal(chat_ix_added(&f->chat, &f->conn), 0);
        pl_store_conn_reset_used(&f->conn);
    }
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), 0);
    assert_int_equal(chat_ix_added(&f->chat, &f->conn), 0);  /* the CHAT_IX_RUN-th */
    pl_store_conn_reset_used(&f->conn);
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), 1);
    assert_int_equal(f->chat.ix_run, 0);
    close_fx(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catch_up),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_migration_indexes_old_rows),
        cmocka_unit_test(test_added_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
