/* test_chat_schema.c: chat's schema on a real SQLite database (with stand-ins for the
 * accounts part's tables): the migration applies; a device deleted by the accounts
 * part takes its envelopes along and the trigger on devices settles their messages
 * (`pending`, and a group ciphertext gone with the last envelope, an event's metadata
 * kept); client ids are unique per sender only; envelopes need a real device; version
 * 4 copies each queued envelope's sender from its message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chat/chat_int.h"

#include <string.h>

/* The stand-ins and chat's schema steps 1..upto (all when upto is 0). */
static sqlite3 *open_db_upto(int upto)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
        "PRAGMA foreign_keys=ON;"
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, username TEXT);"
        "CREATE TABLE devices(id INTEGER PRIMARY KEY, account_id INTEGER);"
        "INSERT INTO accounts VALUES (1,'a'),(2,'b');"
        "INSERT INTO devices VALUES (10,1),(20,2),(21,2);", NULL, NULL, NULL), SQLITE_OK);
    for (size_t i = 0; i < chat_schema.n_steps && (!upto || chat_schema.steps[i].version <= upto); i++)
        assert_int_equal(sqlite3_exec(db, chat_schema.steps[i].sql, NULL, NULL, NULL), SQLITE_OK);
    return db;
}

static sqlite3 *open_db(void)
{
    return open_db_upto(0);
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

static sqlite3_int64 one(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    sqlite3_int64 v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_device_cascade(void **state)
{
    (void)state;
    sqlite3 *db = open_db();
    exec_ok(db, "INSERT INTO chat_messages(id, kind, sender_id, sender_device, client_id,"
                " group_id, conv_a, conv_b, body, created_at, expires_at, pending)"
                " VALUES (1, 0, 1, 10, 'g', 5, 0, 5, 'CIPHERTEXT', 0, 100, 2);"
                "INSERT INTO chat_messages(id, kind, sender_id, sender_device, group_id,"
                " conv_a, conv_b, body, created_at, expires_at, pending)"
                " VALUES (2, 1, 1, 10, 5, 0, 5, '{\"event\":\"x\"}', 0, 100, 1);"
                "INSERT INTO chat_envelopes VALUES (20, 1, 100, 0, NULL, 1), (21, 1, 100, 0, NULL, 1),"
                " (21, 2, 100, 0, NULL, 1);");
    exec_ok(db, "DELETE FROM devices WHERE id = 21");
    assert_int_equal(one(db, "SELECT count(*) FROM chat_envelopes WHERE device_id = 21"), 0);
    assert_int_equal(one(db, "SELECT pending FROM chat_messages WHERE id = 1"), 1);
    assert_int_equal(one(db, "SELECT body IS NOT NULL FROM chat_messages WHERE id = 1"), 1);
    assert_int_equal(one(db, "SELECT pending FROM chat_messages WHERE id = 2"), 0);
    assert_int_equal(one(db, "SELECT length(body) FROM chat_messages WHERE id = 2"), 13);
    exec_ok(db, "DELETE FROM devices WHERE id = 20");
    assert_int_equal(one(db, "SELECT pending FROM chat_messages WHERE id = 1"), 0);
    assert_int_equal(one(db, "SELECT body FROM chat_messages WHERE id = 1"), -1);   /* NULL */
    sqlite3_close(db);
}

static void test_client_ids(void **state)
{
    (void)state;
    sqlite3 *db = open_db();
    /* The idempotency index is chat_ix_client, trailing the messages (chat_index.c,
     * tests/unit/chat/test_chat_index.c); its key is unique. */
    exec_ok(db, "INSERT INTO chat_ix_client VALUES (1, 'same', 1), (2, 'same', 2);");
    assert_int_not_equal(sqlite3_exec(db, "INSERT INTO chat_ix_client VALUES (1, 'same', 3)",
                                      NULL, NULL, NULL), SQLITE_OK);
    /* An envelope for a device that does not exist is refused (foreign key). */
    assert_int_not_equal(sqlite3_exec(db, "INSERT INTO chat_envelopes VALUES (99, 2, 1, 0, 'x', 1)",
                                      NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* Version 4 gives envelopes their message's sender: rows queued before it get it
 * from their message (0 when the message row is missing), and a row written without
 * it (an older node sharing the database) reads 0, which chat_ack.c looks up. */
static void test_envelope_sender_migration(void **state)
{
    (void)state;
    sqlite3 *db = open_db_upto(3);
    exec_ok(db, "INSERT INTO chat_messages(id, kind, sender_id, sender_device, peer_id,"
                " conv_a, conv_b, created_at, expires_at, pending)"
                " VALUES (7, 0, 2, 20, 1, 1, 2, 0, 100, 1);"
                "INSERT INTO chat_envelopes VALUES (10, 7, 100, 1, 'c1'), (10, 8, 100, 1, 'c2');");
    const char *v4 = NULL;
    for (size_t i = 0; i < chat_schema.n_steps; i++)
        if (chat_schema.steps[i].version == 4)
            v4 = chat_schema.steps[i].sql;
    assert_non_null(v4);
    exec_ok(db, v4 ? v4 : "");
    assert_int_equal(one(db, "SELECT sender_id FROM chat_envelopes WHERE message_id = 7"), 2);
    assert_int_equal(one(db, "SELECT sender_id FROM chat_envelopes WHERE message_id = 8"), 0);
    exec_ok(db, "INSERT INTO chat_envelopes(device_id, message_id, expires_at, ctype, body)"
                " VALUES (20, 7, 100, 1, 'c3')");
    assert_int_equal(one(db, "SELECT sender_id FROM chat_envelopes WHERE device_id = 20"), 0);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_cascade),
        cmocka_unit_test(test_client_ids),
        cmocka_unit_test(test_envelope_sender_migration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
