/* test_chat_index.c: the history and find indexes that trail chat_messages
 * (chat_index.c) on a real SQLite database: a catch-up indexes exactly the rows above
 * upto (messages and events by conversation, messages only by sender, receipts rows
 * nowhere), a second one finds nothing to do, a catch-up rolled back with its request
 * leaves nothing behind and the next one indexes the rows that really exist, the
 * schema step from version 1 indexes the messages already there, and chat_ix_added
 * starts a catch-up every CHAT_IX_RUN rows and completes it in steps (a backlog larger
 * than CHAT_IX_JOB_MAX in several jobs); a spread
 * catch-up whose steps are rolled back (a whole transaction, or a request's savepoint)
 * ends with exactly the rows a synchronous one adds, never moves a mark early, and is
 * dropped for a synchronous catch-up when a reader needs the index. The idempotency look-up (chat_cid_find): a client
 * id is found in memory before its catch-up and in chat_ix_client after, a rolled-back
 * insert whose id another message took is no answer, a row committed by another
 * connection is found, 40,000 ids all stay findable across catch-ups and prunes, ids
 * never sent skip the table once the filter has caught up (also with a row another
 * connection indexed, read by the filter after a restart), a whole transaction rolled
 * back by the store rebuilds the memory and the filter, and the schema step moves the
 * client ids of old rows into chat_ix_client. */
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
static fx_t *open_fx_at(size_t steps, const char *path)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_int_equal(pl_store_conn_open(&f->conn, path, true), 0);
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

static fx_t *open_fx(size_t steps)
{
    return open_fx_at(steps, ":memory:");
}

/* A database in a new file (path: a mkstemp template, filled in), for tests that open
 * a second connection to it as another node would. */
static fx_t *open_fx_file(char *path)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    return open_fx_at(chat_schema.n_steps, path);
}

static void unlink_db(const char *path)
{
    char aux[256];
    unlink(path);
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
}

static void close_fx(fx_t *f)
{
    chat_ix_free(&f->chat);
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
    exec_ok(&f->conn, "UPDATE chat_messages SET client_id = 'k' || id WHERE kind = 0");
    for (size_t i = 1; i < chat_schema.n_steps; i++)
        exec_ok(&f->conn, chat_schema.steps[i].sql);
    assert_string_equal(txt(&f->conn, "SELECT group_concat(sender_id || client_id || id) FROM"
                                   " (SELECT * FROM chat_ix_client ORDER BY id)"), "1k11,2k33");
    assert_int_equal(one(&f->conn, "SELECT client_upto FROM chat_ix_state"), 3);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                   " AND name = 'chat_messages_client'"), 0);
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
    assert_false(f->chat.ix_sched.active);
    assert_int_equal(chat_ix_added(&f->chat, &f->conn), 0);  /* the CHAT_IX_RUN-th */
    pl_store_conn_reset_used(&f->conn);
    assert_true(f->chat.ix_sched.active);                    /* a job, in steps */
    unsigned n = 0;
    while (one(&f->conn, "SELECT upto FROM chat_ix_state") == 0) {
        assert_true(++n < 64 * CHAT_IX_STEP_EVERY);
        assert_int_equal(chat_ix_added(&f->chat, &f->conn), 0);
        pl_store_conn_reset_used(&f->conn);
    }
    assert_false(f->chat.ix_sched.active);
    assert_int_equal(f->chat.ix_sched.run, n);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_conv"), 1);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_sender"), 1);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM temp.ix_job"), 0);
    close_fx(f);
}

/* The rows an index set is missing, against what the synchronous catch-up would add. */
static sqlite3_int64 missing(fx_t *f)
{
    return one(&f->conn, "SELECT (SELECT count(*) FROM (SELECT conv_a, conv_b, id FROM"
               " chat_messages WHERE kind <> 2 EXCEPT SELECT conv_a, conv_b, id FROM chat_ix_conv))"
               " + (SELECT count(*) FROM (SELECT sender_id, id FROM chat_messages WHERE kind = 0"
               " EXCEPT SELECT sender_id, id FROM chat_ix_sender))"
               " + (SELECT count(*) FROM (SELECT sender_id, client_id, min(id) FROM chat_messages"
               " WHERE client_id IS NOT NULL GROUP BY sender_id, client_id"
               " EXCEPT SELECT sender_id, client_id, id FROM chat_ix_client))");
}

/* One step of each set's job now (starting them if none runs). */
static void step(fx_t *f)
{
    f->chat.ix_sched.run = f->chat.ix_sched.active ? 0 : CHAT_IX_RUN - 1;
    f->chat.ix_sched.since = CHAT_IX_STEP_EVERY - 1;
    f->chat.cid_sched.run = f->chat.cid_sched.active ? 0 : CHAT_IX_RUN - 1;
    f->chat.cid_sched.since = CHAT_IX_STEP_EVERY - 1;
    assert_int_equal(chat_ix_added(&f->chat, &f->conn), 0);
    pl_store_conn_reset_used(&f->conn);
}

/* n messages from id base on: every 7th an event, every 11th a receipts row; the
 * client id repeats every 5,000 messages, with the same sender. */
static void add_many(fx_t *f, int n, int base)
{
    char sql[640];
    snprintf(sql, sizeof sql, "WITH RECURSIVE k(i) AS (SELECT %d UNION ALL SELECT i + 1 FROM k"
             " WHERE i < %d) INSERT INTO chat_messages(kind, sender_id, sender_device,"
             " client_id, conv_a, conv_b, created_at, expires_at) SELECT CASE WHEN i %% 11 = 0"
             " THEN 2 WHEN i %% 7 = 0 THEN 1 ELSE 0 END, 1 + i %% 5000 %% 97, 1,"
             " CASE WHEN i %% 7 = 0 THEN NULL ELSE 'c' || (i %% 5000) END, i %% 13, 50 + i %% 31,"
             " 0, 1 FROM k", base, base + n - 1);
    exec_ok(&f->conn, sql);
}

static void test_spread_catch_up(void **state)
{
    (void)state;
    fx_t *f = open_fx(chat_schema.n_steps);
    /* Three fill steps, so a rolled-back one can follow one that stays (the runs in
     * memory are then read again); repeated client ids: the first wins. */
    add_many(f, 2 * CHAT_IX_FILL + 100, 1);
    sqlite3_int64 top = one(&f->conn, "SELECT max(id) FROM chat_messages");
    assert_true(missing(f) > 0);
    /* A few steps of a transaction that the store then rolls back: undone. */
    exec_ok(&f->conn, "BEGIN;");
    for (int i = 0; i < 4; i++)
        step(f);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM temp.ix_job"), 2);
    exec_ok(&f->conn, "ROLLBACK;");
    f->conn.rollbacks++;
    /* Even the temporary tables went with it (they were created in that transaction). */
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM temp.sqlite_master"), 0);
    /* Steps whose request rolls back its savepoint, between steps that stay. */
    exec_ok(&f->conn, "BEGIN;");
    /* (The memory may think a job done whose last step was rolled back: it only says
     * when to step, and the next start continues the job the database still holds.) */
    for (int i = 0; one(&f->conn, "SELECT upto = m AND client_upto = m FROM chat_ix_state,"
                        " (SELECT max(id) AS m FROM chat_messages)") == 0; i++) {
        assert_true(i < 200);
        if (i % 3 == 1) {
            exec_ok(&f->conn, "SAVEPOINT r;");
            step(f);
            exec_ok(&f->conn, "ROLLBACK TO r; RELEASE r;");
        } else {
            step(f);
        }
        /* The marks move only with everything below them in place. */
        sqlite3_int64 upto = one(&f->conn, "SELECT upto FROM chat_ix_state");
        assert_true(upto == 0 || upto == top);
        if (upto == top)
            assert_int_equal(one(&f->conn, "SELECT (SELECT count(*) FROM (SELECT conv_a,"
                " conv_b, id FROM chat_messages WHERE kind <> 2 EXCEPT SELECT * FROM chat_ix_conv))"
                " + (SELECT count(*) FROM (SELECT sender_id, id FROM chat_messages WHERE kind = 0"
                " EXCEPT SELECT * FROM chat_ix_sender))"), 0);
    }
    exec_ok(&f->conn, "COMMIT;");
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM temp.ix_job"), 0);
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), top);
    assert_int_equal(one(&f->conn, "SELECT client_upto FROM chat_ix_state"), top);
    assert_int_equal(missing(f), 0);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_client"),
                     one(&f->conn, "SELECT count(DISTINCT sender_id || '/' || client_id)"
                         " FROM chat_messages WHERE client_id IS NOT NULL"));
    /* A job under way when a reader needs the index: dropped, and the synchronous
     * catch-up adds everything. */
    add_many(f, 2 * CHAT_IX_SLICE, 20000);
    step(f);
    step(f);
    assert_true(f->chat.ix_sched.active);
    assert_int_equal(catch_up(f), 0);
    assert_false(f->chat.ix_sched.active);
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"),
                     one(&f->conn, "SELECT max(id) FROM chat_messages"));
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM temp.ix_job WHERE set_id = 1"), 0);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM (SELECT conv_a, conv_b, id FROM"
                         " chat_messages WHERE kind <> 2 EXCEPT SELECT * FROM chat_ix_conv)"), 0);
    close_fx(f);
}

/* A backlog larger than one job: the first job moves the marks to CHAT_IX_JOB_MAX
 * messages above them, the next one takes the rest. */
static void test_spread_job_capped(void **state)
{
    (void)state;
    fx_t *f = open_fx(chat_schema.n_steps);
    add_many(f, CHAT_IX_JOB_MAX + 1000, 1);
    sqlite3_int64 top = one(&f->conn, "SELECT max(id) FROM chat_messages");
    int n = 0;
    while (one(&f->conn, "SELECT upto FROM chat_ix_state") == 0) {
        assert_true(++n < 1000);
        step(f);
    }
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), CHAT_IX_JOB_MAX);
    while (one(&f->conn, "SELECT upto = m AND client_upto = m FROM chat_ix_state,"
               " (SELECT max(id) AS m FROM chat_messages)") == 0) {
        assert_true(++n < 1000);
        step(f);
    }
    assert_int_equal(one(&f->conn, "SELECT upto FROM chat_ix_state"), top);
    assert_int_equal(missing(f), 0);
    close_fx(f);
}

/* A message from sender with client id cid, as chat_send.c adds it; returns its id. */
static uint64_t add_cid(fx_t *f, int sender, const char *cid)
{
    char sql[256];
    snprintf(sql, sizeof sql, "INSERT INTO chat_messages(kind, sender_id, sender_device,"
             " client_id, conv_a, conv_b, created_at, expires_at)"
             " VALUES (0, %d, 1, '%s', 1, 2, %d, 1)", sender, cid, 1000 + sender);
    exec_ok(&f->conn, sql);
    uint64_t id = (uint64_t)sqlite3_last_insert_rowid(f->conn.db);
    chat_cid_added(&f->chat, (uint64_t)sender, cid, id);
    return id;
}

/* chat_cid_find: returns the id found, 0 for none. */
static uint64_t find(fx_t *f, int sender, const char *cid)
{
    uint64_t id = 0, at = 0;
    int rc = chat_cid_find(&f->chat, &f->conn, (uint64_t)sender, cid, &id, &at);
    pl_store_conn_reset_used(&f->conn);
    assert_true(rc >= 0);
    if (rc == 0)
        return 0;
    assert_int_equal(at, 1000 + sender);
    return id;
}

static void test_client_ids(void **state)
{
    (void)state;
    fx_t *f = open_fx(chat_schema.n_steps);
    assert_int_equal(find(f, 1, "a"), 0);
    uint64_t a = add_cid(f, 1, "a");
    assert_int_equal(find(f, 1, "a"), a);                       /* in memory */
    assert_int_equal(find(f, 2, "a"), 0);                       /* another sender's */
    assert_int_equal(find(f, 1, "b"), 0);
    assert_int_equal(catch_up(f), 0);                           /* history and find only */
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_client"), 0);
    assert_int_equal(chat_cid_catch_up(&f->chat, &f->conn), 0);
    pl_store_conn_reset_used(&f->conn);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_client"), 1);
    assert_int_equal(one(&f->conn, "SELECT client_upto FROM chat_ix_state"), 1);
    chat_cids_free(&f->chat);                                   /* as after a restart */
    assert_int_equal(find(f, 1, "a"), a);                       /* from chat_ix_client */
    /* A request inserts and rolls back; the next message takes the same id. */
    exec_ok(&f->conn, "BEGIN; SAVEPOINT req;");
    assert_int_equal(find(f, 1, "p"), 0);
    uint64_t p = add_cid(f, 1, "p");
    exec_ok(&f->conn, "ROLLBACK TO req; RELEASE req;");
    uint64_t q = add_cid(f, 2, "q");
    assert_int_equal(q, p);
    exec_ok(&f->conn, "COMMIT;");
    assert_int_equal(find(f, 1, "p"), 0);                       /* the entry is no answer */
    assert_int_equal(find(f, 2, "q"), q);
    /* Not in memory yet (a restart), above upto: the start-up scan finds it. */
    chat_cids_free(&f->chat);
    assert_int_equal(find(f, 2, "q"), q);
    close_fx(f);
}

static void test_client_ids_other_connection(void **state)
{
    (void)state;
    char path[] = "/tmp/parley-test-cid-XXXXXX";
    fx_t *f = open_fx_file(path);
    exec_ok(&f->conn, "BEGIN IMMEDIATE;");
    assert_int_equal(find(f, 7, "z"), 0);
    exec_ok(&f->conn, "COMMIT;");
    sqlite3 *other = NULL;                  /* another node sharing the database file */
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "INSERT INTO chat_messages(kind, sender_id,"
        " sender_device, client_id, conv_a, conv_b, created_at, expires_at)"
        " VALUES (0, 7, 1, 'z', 1, 2, 1007, 1)", NULL, NULL, NULL), SQLITE_OK);
    uint64_t z = (uint64_t)sqlite3_last_insert_rowid(other);
    sqlite3_close(other);
    exec_ok(&f->conn, "BEGIN IMMEDIATE;");
    assert_int_equal(find(f, 7, "z"), z);
    exec_ok(&f->conn, "COMMIT;");
    close_fx(f);
    unlink_db(path);
}

static void test_client_ids_many(void **state)
{
    (void)state;
    enum { N = 5 * CHAT_IX_RUN / 2 };     /* two and a half runs */
    fx_t *f = open_fx(chat_schema.n_steps);
    char cid[32];
    exec_ok(&f->conn, "BEGIN;");
    for (int i = 0; i < N; i++) {
        snprintf(cid, sizeof cid, "c%d", i);
        assert_int_equal(find(f, 1 + i % 100, cid), 0);
        add_cid(f, 1 + i % 100, cid);
        assert_int_equal(chat_ix_added(&f->chat, &f->conn), 0);
        pl_store_conn_reset_used(&f->conn);
    }
    exec_ok(&f->conn, "COMMIT;");
    /* Catch-ups started every CHAT_IX_RUN messages and finished in steps: both marks
     * have moved at least twice, and chat_ix_client holds exactly the ids up to its. */
    sqlite3_int64 cupto = one(&f->conn, "SELECT client_upto FROM chat_ix_state");
    assert_true(one(&f->conn, "SELECT upto FROM chat_ix_state") >= CHAT_IX_RUN);
    assert_true(cupto >= 2 * CHAT_IX_RUN);
    assert_int_equal(one(&f->conn, "SELECT count(*) FROM chat_ix_client"), cupto);
    assert_true(f->chat.cids->n < N);                           /* pruned */
    for (int i = 0; i < N; i++) {
        snprintf(cid, sizeof cid, "c%d", i);
        assert_int_equal(find(f, 1 + i % 100, cid), (uint64_t)i + 1);
    }
    /* The filter has read every row up to the memory's client_upto: client ids that
     * were never sent are answered without looking into chat_ix_client (a false hit,
     * about 1 %, still looks). */
    chat_cids_t *s = f->chat.cids;
    assert_true(s->upto >= CHAT_IX_RUN && s->upto <= cupto);
    assert_int_equal(s->f_hw, s->upto);
    assert_true(s->n_gens >= 1 && !s->f_full);
    uint64_t probes = s->probes;
    for (int i = 0; i < 1000; i++) {
        snprintf(cid, sizeof cid, "new%d", i);
        assert_int_equal(find(f, 1 + i % 100, cid), 0);
    }
    assert_true(s->probes - probes <= 30);
    /* The store rolls a whole transaction back: the memory is rebuilt from the rows
     * above upto, without the rolled-back ones. */
    exec_ok(&f->conn, "BEGIN;");
    add_cid(f, 5, "gone");
    exec_ok(&f->conn, "ROLLBACK;");
    f->conn.rollbacks++;
    assert_int_equal(find(f, 5, "gone"), 0);
    assert_int_equal(f->chat.cids->n, N - cupto);
    assert_true(f->chat.cids->f_hw < f->chat.cids->upto);   /* the filter starts over */
    assert_int_equal(find(f, 1, "c0"), 1);
    snprintf(cid, sizeof cid, "c%d", N - 1);
    assert_int_equal(find(f, 1 + (N - 1) % 100, cid), N);
    close_fx(f);
}

/* Another node (a second connection to the file) sends a message and moves the index
 * past it; after a restart this node's filter is built from the rows, reads that one
 * too, and a resend of it is found, while client ids never sent need no look-up. */
static void test_client_ids_filter_other_connection(void **state)
{
    (void)state;
    char path[] = "/tmp/parley-test-cidf-XXXXXX";
    fx_t *f = open_fx_file(path);
    char cid[32];
    exec_ok(&f->conn, "BEGIN IMMEDIATE;");
    for (int i = 0; i < 3000; i++) {
        snprintf(cid, sizeof cid, "m%d", i);
        assert_int_equal(find(f, 1 + i % 10, cid), 0);
        add_cid(f, 1 + i % 10, cid);
    }
    exec_ok(&f->conn, "COMMIT;");
    sqlite3 *other = NULL;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "INSERT INTO chat_messages(kind, sender_id,"
        " sender_device, client_id, conv_a, conv_b, created_at, expires_at)"
        " VALUES (0, 7, 1, 'theirs', 1, 2, 1007, 1);"
        "INSERT OR IGNORE INTO chat_ix_client(sender_id, client_id, id)"
        " SELECT sender_id, client_id, id FROM chat_messages WHERE client_id IS NOT NULL;"
        "UPDATE chat_ix_state SET client_upto = (SELECT max(id) FROM chat_messages)",
        NULL, NULL, NULL), SQLITE_OK);
    uint64_t theirs = (uint64_t)sqlite3_last_insert_rowid(other);
    sqlite3_close(other);
    chat_cids_free(&f->chat);                                   /* a restart */
    exec_ok(&f->conn, "BEGIN IMMEDIATE;");
    for (int i = 0; i < 40; i++) {                              /* the filter trails */
        snprintf(cid, sizeof cid, "x%d", i);
        assert_int_equal(find(f, 9, cid), 0);
    }
    chat_cids_t *s = f->chat.cids;
    assert_int_equal(s->upto, 3001);
    assert_int_equal(s->f_hw, 3001);
    assert_int_equal(find(f, 7, "theirs"), theirs);
    assert_int_equal(find(f, 3, "m2"), 3);
    uint64_t probes = s->probes;
    for (int i = 0; i < 200; i++) {
        snprintf(cid, sizeof cid, "y%d", i);
        assert_int_equal(find(f, 7, cid), 0);
    }
    assert_true(s->probes - probes <= 10);
    exec_ok(&f->conn, "COMMIT;");
    close_fx(f);
    unlink_db(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catch_up),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_migration_indexes_old_rows),
        cmocka_unit_test(test_added_runs),
        cmocka_unit_test(test_spread_catch_up),
        cmocka_unit_test(test_spread_job_capped),
        cmocka_unit_test(test_client_ids),
        cmocka_unit_test(test_client_ids_other_connection),
        cmocka_unit_test(test_client_ids_many),
        cmocka_unit_test(test_client_ids_filter_other_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
