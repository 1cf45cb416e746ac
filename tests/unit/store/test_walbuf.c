/* test_walbuf.c: the VFS that joins a commit's WAL frames into one write
 * (store_walbuf.c), on real files. A commit of 20 pages is a handful of write system
 * calls instead of 40 (counted in /proc/self/io); a commit larger than the buffer (and
 * than the unix VFS's 128 KiB write mask) goes through whole; every commit is readable
 * at once by a connection on the default VFS (the frames are out before SQLite
 * publishes them); a process that exits right after COMMIT without closing leaves every
 * committed row behind; a transaction that spills pages to the WAL before its commit,
 * and one rolled back after spilling, read back right. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct fx {
    char path[64];
    pl_store_conn_t conn;           /* parley-walbuf */
    sqlite3 *plain;                 /* the default VFS, like another node or a tool */
} fx_t;

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    assert_int_equal(rc, SQLITE_OK);
}

static sqlite3_int64 one(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    sqlite3_int64 v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->path, sizeof f->path, "/tmp/parley-test-walbuf-XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pl_store_conn_open(&f->conn, f->path, true), 0);
    sqlite3_vfs *vfs = NULL;
    assert_int_equal(sqlite3_file_control(f->conn.db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs),
                     SQLITE_OK);
    assert_non_null(vfs);
    assert_string_equal(vfs->zName, PL_STORE_WALBUF_VFS);
    exec_ok(f->conn.db, "PRAGMA wal_autocheckpoint=0;"
                        "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB NOT NULL);");
    assert_int_equal(sqlite3_open(f->path, &f->plain), SQLITE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    sqlite3_close(f->plain);
    pl_store_conn_close(&f->conn);
    char aux[80];
    unlink(f->path);
    snprintf(aux, sizeof aux, "%s-wal", f->path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", f->path);
    unlink(aux);
    free(f);
    return 0;
}

/* Write system calls made by this process so far. */
static long syscw(void)
{
    FILE *fp = fopen("/proc/self/io", "r");
    assert_non_null(fp);
    char line[128];
    long v = -1;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "syscw: %ld", &v) == 1)
            break;
    fclose(fp);
    return v;
}

/* n rows of a page each in one transaction. */
static void insert_pages(sqlite3 *db, int n)
{
    char sql[128];
    snprintf(sql, sizeof sql, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k"
             " WHERE i < %d) INSERT INTO t(b) SELECT randomblob(3000) FROM k;", n);
    exec_ok(db, sql);
}

static void test_one_write_per_commit(void **state)
{
    fx_t *f = *state;
    insert_pages(f->conn.db, 1);                /* the WAL header and first frames */
    long before = syscw();
    insert_pages(f->conn.db, 20);               /* ~22 frames: 44 writes unjoined */
    long writes = syscw() - before;
    assert_true(writes >= 1);
    assert_true(writes <= 3);
    assert_int_equal(one(f->plain, "SELECT count(*) FROM t"), 21);
}

static void test_big_commit(void **state)
{
    fx_t *f = *state;
    insert_pages(f->conn.db, 200);              /* ~800 KiB of frames in one commit */
    assert_int_equal(one(f->plain, "SELECT count(*) FROM t"), 200);
    assert_int_equal(one(f->plain, "SELECT count(*) FROM t WHERE length(b) = 3000"), 200);
    exec_ok(f->plain, "PRAGMA integrity_check;");
}

static void test_readable_after_every_commit(void **state)
{
    fx_t *f = *state;
    for (int i = 1; i <= 300; i++) {
        insert_pages(f->conn.db, 1 + i % 7);
        sqlite3_int64 n = one(f->plain, "SELECT count(*) FROM t");
        sqlite3_int64 want = one(f->conn.db, "SELECT count(*) FROM t");
        assert_int_equal(n, want);
    }
    /* And a checkpoint by the other connection copies what it reads from the WAL. */
    exec_ok(f->plain, "PRAGMA wal_checkpoint(TRUNCATE);");
    insert_pages(f->conn.db, 3);                /* the WAL starts over at its header */
    assert_int_equal(one(f->plain, "SELECT count(*) FROM t"),
                     one(f->conn.db, "SELECT count(*) FROM t"));
}

static void test_exit_after_commit(void **state)
{
    fx_t *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pl_store_conn_t c;
        if (pl_store_conn_open(&c, f->path, true) != 0)
            _exit(2);
        for (int i = 0; i < 10; i++)
            if (sqlite3_exec(c.db, "INSERT INTO t(b) VALUES (randomblob(3000)),"
                             " (randomblob(3000))", NULL, NULL, NULL) != SQLITE_OK)
                _exit(3);
        _exit(0);                               /* no close: nothing flushed on the way out */
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(one(f->plain, "SELECT count(*) FROM t"), 20);
}

static void test_spill_and_rollback(void **state)
{
    fx_t *f = *state;
    /* A 10-page cache makes a big transaction write frames before its commit. */
    exec_ok(f->conn.db, "PRAGMA cache_size=10;");
    exec_ok(f->conn.db, "BEGIN;");
    insert_pages(f->conn.db, 100);
    assert_int_equal(one(f->conn.db, "SELECT count(*) FROM t WHERE length(b) = 3000"), 100);
    exec_ok(f->conn.db, "ROLLBACK;");
    assert_int_equal(one(f->conn.db, "SELECT count(*) FROM t"), 0);
    assert_int_equal(one(f->plain, "SELECT count(*) FROM t"), 0);
    exec_ok(f->conn.db, "BEGIN;");
    insert_pages(f->conn.db, 100);
    exec_ok(f->conn.db, "COMMIT;");
    assert_int_equal(one(f->plain, "SELECT count(*) FROM t WHERE length(b) = 3000"), 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_write_per_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readable_after_every_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spill_and_rollback, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
