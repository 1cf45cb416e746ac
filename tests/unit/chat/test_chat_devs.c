/* test_chat_devs.c: device lists held in memory (chat_devs.c) on a real SQLite
 * database. A second look-up is answered from memory (the SELECT does not run again),
 * and every way devices change is seen at the next look-up: a device added or removed
 * through the same connection, one removed by a trigger-driven cascade, one added by
 * another connection (a node sharing the file), one added inside a transaction the
 * store then rolls back (gone again), and an account with no devices. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chat/chat_int.h"
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fx {
    pl_store_conn_t conn;
    chat_t chat;
    char path[64];
} fx_t;

static void exec_ok(pl_store_conn_t *conn, const char *sql)
{
    assert_int_equal(pl_store_conn_exec(conn, sql, "test"), 0);
}

static fx_t *open_fx(void)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->path, sizeof f->path, "/tmp/parley-test-devs-XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pl_store_conn_open(&f->conn, f->path, true), 0);
    exec_ok(&f->conn, "CREATE TABLE accounts(id INTEGER PRIMARY KEY, username TEXT);"
                      "CREATE TABLE devices(id INTEGER PRIMARY KEY,"
                      "  account_id INTEGER REFERENCES accounts(id) ON DELETE CASCADE);"
                      "INSERT INTO accounts(id) VALUES (1), (2), (3);"
                      "INSERT INTO devices(id, account_id) VALUES (10, 1), (11, 1), (20, 2);");
    return f;
}

static void close_fx(fx_t *f)
{
    chat_devs_free(&f->chat);
    pl_store_conn_close(&f->conn);
    unlink(f->path);
    char aux[80];
    snprintf(aux, sizeof aux, "%s-wal", f->path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", f->path);
    unlink(aux);
    free(f);
}

/* The devices of account as "a,b,c" (inside a transaction, as a store request runs). */
static const char *devs(fx_t *f, uint64_t account)
{
    static char out[128];
    uint64_t *ids = NULL;
    exec_ok(&f->conn, "BEGIN IMMEDIATE;");
    long n = chat_devices(&f->chat, &f->conn, account, &ids);
    pl_store_conn_reset_used(&f->conn);
    exec_ok(&f->conn, "COMMIT;");
    assert_true(n >= 0);
    size_t k = 0;
    out[0] = '\0';
    for (long i = 0; i < n; i++)
        k += (size_t)snprintf(out + k, sizeof out - k, "%s%llu", i ? "," : "",
                              (unsigned long long)ids[i]);
    free(ids);
    return out;
}

/* How many times the device look-up statement has run on the connection. */
static int selects(fx_t *f)
{
    for (sqlite3_stmt *st = sqlite3_next_stmt(f->conn.db, NULL); st;
         st = sqlite3_next_stmt(f->conn.db, st))
        if (strstr(sqlite3_sql(st), "FROM devices WHERE account_id"))
            return sqlite3_stmt_status(st, SQLITE_STMTSTATUS_RUN, 0);
    return 0;
}

static void test_from_memory(void **state)
{
    (void)state;
    fx_t *f = open_fx();
    assert_string_equal(devs(f, 1), "10,11");
    int n = selects(f);
    assert_int_equal(n, 1);
    assert_string_equal(devs(f, 1), "10,11");
    assert_string_equal(devs(f, 1), "10,11");
    assert_int_equal(selects(f), n);                    /* answered from memory */
    assert_string_equal(devs(f, 3), "");                /* no devices: cached too */
    assert_string_equal(devs(f, 3), "");
    assert_int_equal(selects(f), n + 1);
    close_fx(f);
}

static void test_same_connection_writes(void **state)
{
    (void)state;
    fx_t *f = open_fx();
    assert_string_equal(devs(f, 1), "10,11");
    exec_ok(&f->conn, "INSERT INTO devices(id, account_id) VALUES (12, 1);");
    assert_string_equal(devs(f, 1), "10,11,12");
    exec_ok(&f->conn, "DELETE FROM devices WHERE id = 10;");
    assert_string_equal(devs(f, 1), "11,12");
    assert_string_equal(devs(f, 2), "20");
    exec_ok(&f->conn, "PRAGMA foreign_keys=ON; DELETE FROM accounts WHERE id = 2;");
    assert_string_equal(devs(f, 2), "");                /* the cascade counts too */
    close_fx(f);
}

static void test_other_connection(void **state)
{
    (void)state;
    fx_t *f = open_fx();
    assert_string_equal(devs(f, 1), "10,11");
    assert_string_equal(devs(f, 1), "10,11");
    sqlite3 *other = NULL;                  /* another node sharing the database file */
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "INSERT INTO devices(id, account_id) VALUES (13, 1)",
                                  NULL, NULL, NULL), SQLITE_OK);
    assert_string_equal(devs(f, 1), "10,11,13");
    assert_int_equal(sqlite3_exec(other, "DELETE FROM devices WHERE id = 11", NULL, NULL,
                                  NULL), SQLITE_OK);
    assert_string_equal(devs(f, 1), "10,13");
    sqlite3_close(other);
    /* This connection's own commits of other tables keep the memory. */
    int n = selects(f);
    exec_ok(&f->conn, "INSERT INTO accounts(id) VALUES (4);");
    assert_string_equal(devs(f, 1), "10,13");
    assert_int_equal(selects(f), n);
    close_fx(f);
}

static void test_rolled_back_transaction(void **state)
{
    (void)state;
    fx_t *f = open_fx();
    assert_string_equal(devs(f, 1), "10,11");
    /* A batch: one request adds a device, a later one reads the list (and fills the
     * memory with it), then the store rolls the whole transaction back. */
    uint64_t *ids = NULL;
    exec_ok(&f->conn, "BEGIN IMMEDIATE;");
    exec_ok(&f->conn, "INSERT INTO devices(id, account_id) VALUES (14, 1);");
    assert_int_equal(chat_devices(&f->chat, &f->conn, 1, &ids), 3);
    free(ids);
    pl_store_conn_reset_used(&f->conn);
    exec_ok(&f->conn, "ROLLBACK;");
    f->conn.rollbacks++;
    assert_string_equal(devs(f, 1), "10,11");
    close_fx(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_memory),
        cmocka_unit_test(test_same_connection_writes),
        cmocka_unit_test(test_other_connection),
        cmocka_unit_test(test_rolled_back_transaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
