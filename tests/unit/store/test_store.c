/* test_store.c: the store against a real SQLite file in a temp dir: migrations (fresh,
 * incremental, newer-than-known, failing step), group commit (many writes queued behind
 * a blocked batch commit as one transaction; batch_max splits), per-request savepoints,
 * durability across close and reopen, replies only after their fdatasync and as soon
 * as it ends (inside the next batch), replies delivered on the requester's loop thread,
 * the statement cache growing past its first size, and WAL checkpoints on the
 * checkpointer thread (with the store thread's fallback) keeping the WAL small. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store/pl_store.h"
#include "core/pl_buf.h"
#include "core/pl_log.h"
#include "core/pl_metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- fixtures ------------------------------------------------------------------ */

static const pl_store_migration_t steps_v2[] = {
    { 1, "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER NOT NULL);" },
    { 2, "ALTER TABLE kv ADD COLUMN note TEXT NOT NULL DEFAULT 'x';"
         "CREATE TABLE extra(id INTEGER PRIMARY KEY);" },
};
static const pl_store_schema_t schema_v1 = { "test", steps_v2, 1 };
static const pl_store_schema_t schema_v2 = { "test", steps_v2, 2 };
static const pl_store_schema_t *const schemas_v1[] = { &schema_v1 };
static const pl_store_schema_t *const schemas_v2[] = { &schema_v2 };

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/pl-store-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static pl_store_t *open_store(const char *path, const pl_store_schema_t *const *schemas,
                              unsigned batch_max)
{
    pl_store_opts_t o = { .path = path, .schemas = schemas, .n_schemas = 1,
                          .batch_max = batch_max };
    pl_store_t *st = NULL;
    assert_int_equal(pl_store_open(&o, &st), 0);
    return st;
}

/* A reply target that collects finished requests for the test thread. */
typedef struct collector {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pl_msg_t *head;
    size_t n;
} collector_t;

static void collector_post(void *target, pl_msg_t *msg)
{
    collector_t *c = target;
    pthread_mutex_lock(&c->lock);
    msg->next = c->head;
    c->head = msg;
    c->n++;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void collector_init(collector_t *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
}

/* Waits for n replies and runs their done functions on this thread. */
static void collector_wait(collector_t *c, size_t n)
{
    pthread_mutex_lock(&c->lock);
    while (c->n < n)
        pthread_cond_wait(&c->cond, &c->lock);
    pl_msg_t *m = c->head;
    c->head = NULL;
    c->n -= n;
    pthread_mutex_unlock(&c->lock);
    while (m) {
        pl_msg_t *next = m->next;
        m->fn(NULL, m);
        m = next;
    }
}

/* A request that inserts (k, v), optionally failing after the insert. */
typedef struct kv_req {
    pl_store_req_t req;
    char key[32];
    int value;
    bool fail_after;
    int *done_status;           /* where done writes the status */
    int *done_count;
} kv_req_t;

static int kv_insert_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    kv_req_t *r = PL_CONTAINER_OF(req, kv_req_t, req);
    sqlite3_stmt *s = pl_store_prepare(conn, "INSERT INTO kv(k, v) VALUES (?1, ?2)");
    if (!s)
        return PL_ESTATE;
    sqlite3_bind_text(s, 1, r->key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, r->value);
    int rc = pl_store_step_done(conn, s);
    if (rc < 0)
        return rc;
    return r->fail_after ? -EINVAL : 0;
}

static int kv_read_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    kv_req_t *r = PL_CONTAINER_OF(req, kv_req_t, req);
    sqlite3_stmt *s = pl_store_prepare(conn, "SELECT v FROM kv WHERE k = ?1");
    sqlite3_bind_text(s, 1, r->key, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) != SQLITE_ROW)
        return -ENOENT;
    r->value = sqlite3_column_int(s, 0);
    return 0;
}

static void kv_done(pl_store_req_t *req)
{
    kv_req_t *r = PL_CONTAINER_OF(req, kv_req_t, req);
    if (r->done_status)
        *r->done_status = req->status;
    if (r->done_count)
        (*r->done_count)++;
    free(r);
}

static kv_req_t *kv_new(pl_store_exec_fn exec, const char *key, int value, collector_t *c)
{
    kv_req_t *r = calloc(1, sizeof(*r));
    r->req.exec = exec;
    r->req.done = kv_done;
    r->req.reply = (pl_store_reply_t){ collector_post, c };
    snprintf(r->key, sizeof(r->key), "%s", key);
    r->value = value;
    return r;
}

/* Reads key synchronously; returns its value or -1 when absent. */
static int kv_get(pl_store_t *st, const char *key)
{
    collector_t c;
    collector_init(&c);
    int status = 0, value = -1;
    kv_req_t *r = kv_new(kv_read_exec, key, 0, &c);
    r->done_status = &status;
    pl_store_submit(st, &r->req);
    pthread_mutex_lock(&c.lock);
    while (c.n < 1)
        pthread_cond_wait(&c.cond, &c.lock);
    pthread_mutex_unlock(&c.lock);
    /* Read the value before done frees the request. */
    if (r->req.status == 0)
        value = r->value;
    c.head->fn(NULL, c.head);
    PL_UNUSED(status);
    return value;
}

/* ---- migrations ---------------------------------------------------------------- */

static void test_migrations_fresh_and_incremental(void **state)
{
    fixture_t *f = *state;
    pl_store_t *st = open_store(f->path, schemas_v1, 0);
    pl_store_close(st);
    assert_int_equal(pl_store_schema_version(f->path, "test"), 1);

    st = open_store(f->path, schemas_v2, 0);
    pl_store_close(st);
    assert_int_equal(pl_store_schema_version(f->path, "test"), 2);

    /* Reopening at the same version applies nothing (ALTER TABLE would fail twice). */
    st = open_store(f->path, schemas_v2, 0);
    pl_store_close(st);
    assert_int_equal(pl_store_schema_version(f->path, "test"), 2);
    assert_int_equal(pl_store_schema_version(f->path, "other"), 0);
}

static void test_migration_newer_db_refused(void **state)
{
    fixture_t *f = *state;
    pl_store_close(open_store(f->path, schemas_v2, 0));
    pl_store_opts_t o = { .path = f->path, .schemas = schemas_v1, .n_schemas = 1 };
    pl_store_t *st = NULL;
    assert_int_equal(pl_store_open(&o, &st), PL_ESTATE);
    assert_null(st);
}

static void test_migration_failure_keeps_last_good_version(void **state)
{
    fixture_t *f = *state;
    static const pl_store_migration_t bad[] = {
        { 1, "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER NOT NULL);" },
        { 2, "CREATE TABLE half(x INTEGER); THIS IS NOT SQL;" },
    };
    static const pl_store_schema_t bad_schema = { "test", bad, 2 };
    static const pl_store_schema_t *const bad_schemas[] = { &bad_schema };
    pl_store_opts_t o = { .path = f->path, .schemas = bad_schemas, .n_schemas = 1 };
    pl_store_t *st = NULL;
    assert_int_equal(pl_store_open(&o, &st), PL_EPARSE);
    assert_int_equal(pl_store_schema_version(f->path, "test"), 1);
    /* The failing step's first statement was rolled back with it. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "SELECT * FROM half", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void test_open_bad_path_fails(void **state)
{
    PL_UNUSED(state);
    pl_store_opts_t o = { .path = "/nonexistent-dir/x/y.db", .schemas = schemas_v1,
                          .n_schemas = 1 };
    pl_store_t *st = NULL;
    assert_true(pl_store_open(&o, &st) < 0);
    assert_null(st);
}

/* ---- group commit -------------------------------------------------------------- */

typedef struct blocker {
    pl_store_req_t req;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool entered, released;
} blocker_t;

static int blocker_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    PL_UNUSED(conn);
    blocker_t *b = PL_CONTAINER_OF(req, blocker_t, req);
    pthread_mutex_lock(&b->lock);
    b->entered = true;
    pthread_cond_broadcast(&b->cond);
    while (!b->released)
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

static void blocker_done(pl_store_req_t *req)
{
    PL_UNUSED(req);
}

static void blocker_start(blocker_t *b, pl_store_t *st, collector_t *c)
{
    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->req.exec = blocker_exec;
    b->req.done = blocker_done;
    b->req.reply = (pl_store_reply_t){ collector_post, c };
    pl_store_submit(st, &b->req);
    pthread_mutex_lock(&b->lock);
    while (!b->entered)
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
}

static void blocker_release(blocker_t *b)
{
    pthread_mutex_lock(&b->lock);
    b->released = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* A store whose thread is held inside a blocker's request: what is submitted next
 * queues up and runs as one batch once the blocker is released. */
static pl_store_t *held_store(fixture_t *f, unsigned batch_max, collector_t *c, blocker_t *b)
{
    pl_store_t *st = open_store(f->path, schemas_v2, batch_max);
    collector_init(c);
    blocker_start(b, st, c);
    return st;
}

static void run_queued_writes(fixture_t *f, unsigned batch_max, int n, pl_store_stats_t *stats)
{
    collector_t c;
    blocker_t b;
    pl_store_t *st = held_store(f, batch_max, &c, &b);
    int done = 0, status_sum = 0;
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        kv_req_t *r = kv_new(kv_insert_exec, key, i, &c);
        r->done_count = &done;
        r->done_status = &status_sum;
        pl_store_submit(st, &r->req);
    }
    blocker_release(&b);
    collector_wait(&c, (size_t)n + 1);
    assert_int_equal(done, n);
    assert_int_equal(status_sum, 0);
    pl_store_get_stats(st, stats);
    assert_int_equal(kv_get(st, "k0"), 0);
    assert_int_equal(kv_get(st, "k499"), 499);
    pl_store_close(st);
}

static void test_group_commit_one_transaction(void **state)
{
    pl_store_stats_t s;
    run_queued_writes(*state, 1000, 500, &s);
    /* The blocker's batch, then all 500 writes that queued behind it in one. */
    assert_int_equal(s.batches, 2);
    assert_int_equal(s.max_batch, 500);
    assert_int_equal(s.requests, 501);
    assert_int_equal(s.commit_failures, 0);
}

static void test_group_commit_respects_batch_max(void **state)
{
    pl_store_stats_t s;
    run_queued_writes(*state, 100, 500, &s);
    assert_int_equal(s.batches, 1 + 5);
    assert_int_equal(s.max_batch, 100);
}

static void test_failed_request_rolls_back_only_itself(void **state)
{
    collector_t c;
    blocker_t b;
    pl_store_t *st = held_store(*state, 0, &c, &b);
    int s1 = 1, s2 = 1, s3 = 1, s4 = 1;
    kv_req_t *r1 = kv_new(kv_insert_exec, "a", 1, &c);
    kv_req_t *r2 = kv_new(kv_insert_exec, "b", 2, &c);     /* inserts, then fails */
    kv_req_t *r3 = kv_new(kv_insert_exec, "a", 3, &c);     /* duplicate key */
    kv_req_t *r4 = kv_new(kv_insert_exec, "c", 4, &c);
    r2->fail_after = true;
    r1->done_status = &s1; r2->done_status = &s2; r3->done_status = &s3; r4->done_status = &s4;
    pl_store_submit(st, &r1->req);
    pl_store_submit(st, &r2->req);
    pl_store_submit(st, &r3->req);
    pl_store_submit(st, &r4->req);
    blocker_release(&b);
    collector_wait(&c, 5);
    assert_int_equal(s1, 0);
    assert_int_equal(s2, -EINVAL);
    assert_int_equal(s3, -EEXIST);
    assert_int_equal(s4, 0);
    assert_int_equal(kv_get(st, "a"), 1);
    assert_int_equal(kv_get(st, "b"), -1);
    assert_int_equal(kv_get(st, "c"), 4);
    pl_store_stats_t stats;
    pl_store_get_stats(st, &stats);
    assert_int_equal(stats.max_batch, 4);
    pl_store_close(st);
}

/* A request without a savepoint that fails after writing takes its transaction down:
 * the requests before it in the batch fail with it and keep nothing; the rest of the
 * batch commits in a new transaction. One that fails before writing touches nothing. */
static int kv_fail_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    PL_UNUSED(conn);
    PL_UNUSED(req);
    return -EINVAL;
}

static void test_no_savepoint_failure_after_write_fails_its_transaction(void **state)
{
    collector_t c;
    blocker_t b;
    pl_store_t *st = held_store(*state, 0, &c, &b);
    int s[6] = { 1, 1, 1, 1, 1, 1 };
    kv_req_t *r[6] = {
        kv_new(kv_insert_exec, "a", 1, &c),
        kv_new(kv_insert_exec, "b", 2, &c),     /* no savepoint: inserts, then fails */
        kv_new(kv_insert_exec, "c", 3, &c),
        kv_new(kv_fail_exec, "x", 0, &c),       /* no savepoint: fails before writing */
        kv_new(kv_insert_exec, "d", 4, &c),     /* no savepoint, succeeds */
        kv_new(kv_insert_exec, "e", 5, &c),
    };
    r[1]->fail_after = true;
    r[1]->req.no_savepoint = r[3]->req.no_savepoint = r[4]->req.no_savepoint = true;
    for (int i = 0; i < 6; i++) {
        r[i]->done_status = &s[i];
        pl_store_submit(st, &r[i]->req);
    }
    blocker_release(&b);
    collector_wait(&c, 7);
    assert_int_equal(s[0], PL_ESTATE);
    assert_int_equal(s[1], PL_ESTATE);
    assert_int_equal(s[2], 0);
    assert_int_equal(s[3], -EINVAL);
    assert_int_equal(s[4], 0);
    assert_int_equal(s[5], 0);
    assert_int_equal(kv_get(st, "a"), -1);
    assert_int_equal(kv_get(st, "b"), -1);
    assert_int_equal(kv_get(st, "c"), 3);
    assert_int_equal(kv_get(st, "d"), 4);
    assert_int_equal(kv_get(st, "e"), 5);
    pl_store_stats_t stats;
    pl_store_get_stats(st, &stats);
    assert_int_equal(stats.max_batch, 6);
    assert_int_equal(stats.commit_failures, 0);
    pl_store_close(st);
}

/* ---- durability and close ------------------------------------------------------ */

static void test_durable_across_reopen(void **state)
{
    fixture_t *f = *state;
    pl_store_t *st = open_store(f->path, schemas_v2, 0);
    collector_t c;
    collector_init(&c);
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof(key), "d%d", i);
        pl_store_submit(st, &kv_new(kv_insert_exec, key, i * 10, &c)->req);
    }
    collector_wait(&c, 50);
    pl_store_close(st);

    /* A second process view (plain sqlite3) sees the rows... */
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*), sum(v) FROM kv", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 50);
    assert_int_equal(sqlite3_column_int(q, 1), 10 * (49 * 50 / 2));
    sqlite3_finalize(q);
    sqlite3_close(db);

    /* ...and so does the store reopened. */
    st = open_store(f->path, schemas_v2, 0);
    assert_int_equal(kv_get(st, "d49"), 490);
    assert_int_equal(kv_get(st, "d50"), -1);
    pl_store_close(st);
}

static void test_close_runs_queued_requests(void **state)
{
    fixture_t *f = *state;
    pl_store_t *st = open_store(f->path, schemas_v2, 0);
    collector_t c;
    collector_init(&c);
    int done = 0;
    for (int i = 0; i < 200; i++) {
        char key[16];
        snprintf(key, sizeof(key), "q%d", i);
        kv_req_t *r = kv_new(kv_insert_exec, key, i, &c);
        r->done_count = &done;
        pl_store_submit(st, &r->req);
    }
    pl_store_close(st);
    collector_wait(&c, 200);
    assert_int_equal(done, 200);
    st = open_store(f->path, schemas_v2, 0);
    assert_int_equal(kv_get(st, "q199"), 199);
    pl_store_close(st);
}

/* ---- durability: replies wait for the syncer's fdatasync ------------------------- */

typedef struct probe {
    pl_store_t *st;
    collector_t *c;
} probe_t;

typedef struct sync_req {
    kv_req_t kv;                /* first: kv_done frees it */
    uint64_t syncs_at_exec, syncs_at_reply;
    uint64_t *out_exec, *out_reply;
    probe_t *probe;
} sync_req_t;

static int sync_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    sync_req_t *r = PL_CONTAINER_OF(req, sync_req_t, kv.req);
    pl_store_stats_t s;
    pl_store_get_stats(r->probe->st, &s);
    *r->out_exec = s.syncs;
    return r->kv.key[0] ? kv_insert_exec(conn, req) : 0;
}

/* Runs on the store thread at the moment the store hands the result out. */
static void sync_post(void *target, pl_msg_t *msg)
{
    probe_t *p = target;
    sync_req_t *r = PL_CONTAINER_OF(msg, sync_req_t, kv.req.msg);
    pl_store_stats_t s;
    pl_store_get_stats(p->st, &s);
    *r->out_reply = s.syncs;
    collector_post(p->c, msg);
}

static void submit_probe(probe_t *p, const char *key, uint64_t *at_exec, uint64_t *at_reply)
{
    sync_req_t *r = calloc(1, sizeof(*r));
    r->kv.req.exec = sync_exec;
    r->kv.req.done = kv_done;
    r->kv.req.reply = (pl_store_reply_t){ sync_post, p };
    snprintf(r->kv.key, sizeof(r->kv.key), "%s", key);
    r->out_exec = at_exec;
    r->out_reply = at_reply;
    r->probe = p;
    pl_store_submit(p->st, &r->kv.req);
}

static void test_replies_wait_for_fdatasync(void **state)
{
    fixture_t *f = *state;
    collector_t c;
    collector_init(&c);
    probe_t p = { open_store(f->path, schemas_v2, 0), &c };
    enum { N = 40 };
    uint64_t at_exec[N], at_reply[N];
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof(key), "s%d", i);
        submit_probe(&p, key, &at_exec[i], &at_reply[i]);
        if (i % 8 == 7)
            collector_wait(&c, 8);          /* several batches, some overlapping */
    }
    /* Every write was answered only after an fdatasync that ended after its exec. */
    for (int i = 0; i < N; i++)
        assert_true(at_reply[i] > at_exec[i]);
    pl_store_stats_t s;
    pl_store_get_stats(p.st, &s);
    assert_true(s.syncs >= 1 && s.syncs <= s.batches);
    /* A read-only request with nothing parked before it needs no sync. */
    uint64_t e = 0, r = 0;
    submit_probe(&p, "", &e, &r);
    collector_wait(&c, 1);
    assert_int_equal(r, e);
    /* A write with nothing queued behind it: the store thread syncs it itself rather
     * than waking the syncer (which would wake it again), and only then replies. */
    pl_store_get_stats(p.st, &s);
    uint64_t here = s.syncs_here;
    submit_probe(&p, "alone", &e, &r);
    collector_wait(&c, 1);
    assert_true(r > e);
    pl_store_get_stats(p.st, &s);
    assert_int_equal(s.syncs_here, here + 1);
    pl_store_close(p.st);
    /* synchronous=normal: no syncer at all. */
    pl_store_opts_t o = { .path = f->path, .schemas = schemas_v2, .n_schemas = 1,
                          .synchronous_normal = true };
    assert_int_equal(pl_store_open(&o, &p.st), 0);
    submit_probe(&p, "n1", &e, &r);
    collector_wait(&c, 1);
    pl_store_get_stats(p.st, &s);
    assert_int_equal(s.syncs, 0);
    assert_int_equal(kv_get(p.st, "n1"), 0);
    pl_store_close(p.st);
}

/* A batch's results leave once it is durable, not only when the batch after it ends:
 * W (a write) commits alone, then a batch of N requests runs whose every request waits
 * until the syncer has synced W's commit; by the last of them W's reply must be out. */
typedef struct early {
    pl_store_t *st;
    collector_t *c;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool w_entered, w_released;
    _Atomic bool w_replied;
    uint64_t syncs_before;
    int waited, w_out_at_last;
} early_t;

typedef struct early_req {
    kv_req_t kv;                /* first: kv_done frees it */
    early_t *e;
} early_req_t;

static int early_w_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    early_t *e = PL_CONTAINER_OF(req, early_req_t, kv.req)->e;
    int rc = kv_insert_exec(conn, req);
    pthread_mutex_lock(&e->lock);
    e->w_entered = true;
    pthread_cond_broadcast(&e->cond);
    while (!e->w_released)
        pthread_cond_wait(&e->cond, &e->lock);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static void early_w_post(void *target, pl_msg_t *msg)
{
    early_t *e = target;
    atomic_store(&e->w_replied, true);      /* on the store thread, as it hands W out */
    collector_post(e->c, msg);
}

enum { EARLY_N = 40 };

static int early_wait_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    PL_UNUSED(conn);
    early_t *e = PL_CONTAINER_OF(req, early_req_t, kv.req)->e;
    /* Until W's commit has been synced (bounded: a stuck syncer fails the test below). */
    for (int i = 0; i < 5000; i++) {
        pl_store_stats_t s;
        pl_store_get_stats(e->st, &s);
        if (s.syncs > e->syncs_before)
            break;
        usleep(1000);
    }
    if (++e->waited == EARLY_N)
        e->w_out_at_last = atomic_load(&e->w_replied);
    return 0;
}

static void test_durable_results_leave_inside_next_batch(void **state)
{
    fixture_t *f = *state;
    collector_t c;
    collector_init(&c);
    early_t e = { .c = &c };
    pthread_mutex_init(&e.lock, NULL);
    pthread_cond_init(&e.cond, NULL);
    e.st = open_store(f->path, schemas_v2, 0);
    pl_store_stats_t s;
    pl_store_get_stats(e.st, &s);
    e.syncs_before = s.syncs;
    early_req_t *w = calloc(1, sizeof(*w));
    w->kv.req.exec = early_w_exec;
    w->kv.req.done = kv_done;
    w->kv.req.reply = (pl_store_reply_t){ early_w_post, &e };
    snprintf(w->kv.key, sizeof(w->kv.key), "w");
    w->e = &e;
    pl_store_submit(e.st, &w->kv.req);
    pthread_mutex_lock(&e.lock);
    while (!e.w_entered)
        pthread_cond_wait(&e.cond, &e.lock);
    pthread_mutex_unlock(&e.lock);
    /* W's batch is taken: these queue up behind it and form the next batch. */
    for (int i = 0; i < EARLY_N; i++) {
        early_req_t *r = calloc(1, sizeof(*r));
        r->kv.req.exec = early_wait_exec;
        r->kv.req.done = kv_done;
        r->kv.req.reply = (pl_store_reply_t){ collector_post, &c };
        r->e = &e;
        pl_store_submit(e.st, &r->kv.req);
    }
    pthread_mutex_lock(&e.lock);
    e.w_released = true;
    pthread_cond_broadcast(&e.cond);
    pthread_mutex_unlock(&e.lock);
    collector_wait(&c, EARLY_N + 1);
    assert_int_equal(e.waited, EARLY_N);
    pl_store_get_stats(e.st, &s);
    assert_true(s.syncs > e.syncs_before);
    assert_true(s.batches >= 2);
    assert_true(e.w_out_at_last);
    /* W's batch had requests queued behind it: the syncer synced it while the store
     * thread went on (nothing was left to sync when the queue ran dry). */
    assert_int_equal(s.syncs_here, 0);
    assert_int_equal(kv_get(e.st, "w"), 0);
    pl_store_close(e.st);
}

/* ---- replies on a loop, fire-and-forget ---------------------------------------- */

typedef struct loop_req {
    pl_store_req_t req;
    pthread_t want_thread;
    bool on_right_thread;
    int *remaining;
    pl_loop_t *loop;
} loop_req_t;

static int noop_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    PL_UNUSED(conn);
    PL_UNUSED(req);
    return 7;
}

static void loop_done(pl_store_req_t *req)
{
    loop_req_t *r = PL_CONTAINER_OF(req, loop_req_t, req);
    assert_int_equal(req->status, 7);
    assert_true(pthread_equal(pthread_self(), r->want_thread));
    if (--*r->remaining == 0)
        pl_loop_stop(r->loop);
    free(r);
}

static void test_reply_on_requester_loop(void **state)
{
    fixture_t *f = *state;
    pl_store_t *st = open_store(f->path, schemas_v1, 0);
    pl_loop_t *loop = NULL;
    assert_int_equal(pl_loop_create("test", &loop), 0);
    int remaining = 20;
    for (int i = 0; i < 20; i++) {
        loop_req_t *r = calloc(1, sizeof(*r));
        r->req.exec = noop_exec;
        r->req.done = loop_done;
        r->req.reply = pl_store_reply_loop(loop);
        r->want_thread = pthread_self();
        r->remaining = &remaining;
        r->loop = loop;
        pl_store_submit(st, &r->req);
    }
    assert_int_equal(pl_loop_run(loop), 0);
    assert_int_equal(remaining, 0);
    pl_loop_destroy(loop);
    pl_store_close(st);
}

static char cache_sql[300][64];

static int many_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    PL_UNUSED(req);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 300; i++) {
            sqlite3_stmt *s = pl_store_prepare(conn, cache_sql[i]);
            if (!s)
                return PL_ESTATE;
            /* Round two hits the cache: the same statement, reset. */
            int rc = pl_store_step_done(conn, s);
            if (rc < 0 && !(round == 1 && rc == -EEXIST))
                return rc;
        }
    return 0;
}

static void test_statement_cache_grows(void **state)
{
    fixture_t *f = *state;
    pl_store_t *st = open_store(f->path, schemas_v2, 0);
    collector_t c;
    collector_init(&c);
    /* 300 distinct SQL strings (distinct addresses), prepared within one request, so
     * the cache grows while statements of the same request are in use. */
    for (int i = 0; i < 300; i++)
        snprintf(cache_sql[i], sizeof(cache_sql[i]), "INSERT INTO extra(id) VALUES (%d)", i + 1);
    int status = 1;
    kv_req_t *r = kv_new(many_exec, "", 0, &c);
    r->done_status = &status;
    pl_store_submit(st, &r->req);
    collector_wait(&c, 1);
    assert_int_equal(status, 0);
    pl_store_close(st);

    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM extra", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 300);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* Several threads submit at once while batches commit: every request is done exactly
 * once. (This caught the kick message being posted while still in the mailbox.) */
typedef struct submitter {
    pl_store_t *st;
    collector_t *c;
    int base;
    int *done;
} submitter_t;

static void *submit_many(void *arg)
{
    submitter_t *s = arg;
    for (int i = 0; i < 2000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "t%d-%d", s->base, i);
        kv_req_t *r = kv_new(kv_insert_exec, key, i, s->c);
        r->done_count = s->done;
        pl_store_submit(s->st, &r->req);
        if (i % 8 == 0)
            usleep(20);             /* let the queue run empty now and then */
    }
    return NULL;
}

/* ---- checkpoints ------------------------------------------------------------------ */

static const pl_store_migration_t blob_steps[] = {
    { 1, "CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB NOT NULL);" },
};
static const pl_store_schema_t blob_schema = { "blobs", blob_steps, 1 };
static const pl_store_schema_t *const blob_schemas[] = { &blob_schema };

static int blob_insert_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    (void)req;
    sqlite3_stmt *s = pl_store_prepare(conn, "INSERT INTO blobs(b) VALUES (randomblob(3000))");
    return s ? pl_store_step_done(conn, s) : PL_ESTATE;
}

static double metric(pl_metrics_t *reg, const char *series)
{
    pl_buf_t b;
    pl_buf_init(&b);
    pl_metrics_render_prometheus(reg, &b);
    const char *p = strstr(b.data, series);
    double v = p ? strtod(p + strlen(series), NULL) : -1;
    pl_buf_deinit(&b);
    return v;
}

static void test_checkpoints_bound_the_wal(void **state)
{
    fixture_t *f = *state;
    pl_metrics_t *reg = pl_metrics_create();
    pl_store_opts_t o = { .path = f->path, .schemas = blob_schemas, .n_schemas = 1,
                          .batch_max = 40, .checkpoint_pages = 100, .metrics = reg };
    pl_store_t *st = NULL;
    assert_int_equal(pl_store_open(&o, &st), 0);
    collector_t c;
    collector_init(&c);
    /* 3000 rows of a page each: 30 times the checkpoint threshold, in waves of 200 that
     * keep the store thread committing batches of 40. */
    for (int wave = 0; wave < 15; wave++) {
        for (int i = 0; i < 200; i++)
            pl_store_submit(st, &kv_new(blob_insert_exec, "", 0, &c)->req);
        collector_wait(&c, 200);
    }
    double bg = metric(reg, "parley_store_checkpoints_total{thread=\"background\"} ");
    double inl = metric(reg, "parley_store_checkpoints_total{thread=\"store\"} ");
    assert_true(bg >= 5);
    assert_true(inl >= 0);
    /* Without checkpoints the WAL would hold all 3000+ pages (12 MB). The store thread
     * checkpoints from 400 pages on, after each commit, unless a background checkpoint
     * holds the checkpointer lock just then (it finishes in a few batches). */
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);
    assert_true(sb.st_size <= 1000 * (4096 + 24) + 32);
    pl_store_close(st);
    pl_metrics_destroy(reg);

    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*), (SELECT integrity_check FROM"
                                            " pragma_integrity_check) FROM blobs", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 3000);
    assert_string_equal((const char *)sqlite3_column_text(q, 1), "ok");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void test_concurrent_submitters(void **state)
{
    fixture_t *f = *state;
    pl_store_t *st = open_store(f->path, schemas_v2, 64);
    collector_t c;
    collector_init(&c);
    int done = 0;
    pthread_t th[4];
    submitter_t s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = (submitter_t){ st, &c, i, &done };
        assert_int_equal(pthread_create(&th[i], NULL, submit_many, &s[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    collector_wait(&c, 8000);
    assert_int_equal(done, 8000);
    pl_store_stats_t stats;
    pl_store_get_stats(st, &stats);
    assert_int_equal(stats.requests, 8000);
    assert_true(stats.batches < 8000);      /* some grouping happened */
    assert_int_equal(kv_get(st, "t3-1999"), 1999);
    pl_store_close(st);
}

int main(void)
{
    pl_log_setup(PL_LOG_WARN, PL_LOG_TEXT, NULL, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrations_fresh_and_incremental, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_newer_db_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_failure_keeps_last_good_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_bad_path_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_one_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_respects_batch_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_request_rolls_back_only_itself, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_savepoint_failure_after_write_fails_its_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durable_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_runs_queued_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replies_wait_for_fdatasync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durable_results_leave_inside_next_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_on_requester_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache_grows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_submitters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints_bound_the_wal, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
