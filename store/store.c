/* store.c: the store thread: a locked request queue, group commit (every queued request
 * in one transaction, a savepoint each unless it says no_savepoint, one COMMIT per
 * batch) and the reply path back to
 * each requester's thread. With synchronous=full a committed batch is parked until the
 * syncer thread (store_sync.c) has fdatasync'ed the WAL after its COMMIT; only then do
 * its done functions run, in batch order, while the store thread goes on with the next
 * batch instead of waiting for the disk -- unless nothing is queued behind the batch:
 * then the store thread syncs it itself (it would only sleep, and on this kind of VM
 * the syncer's wake-up and its post back cost more than the sync). Durability is
 * looked at between batches and,
 * inside a long batch, every MID_BATCH_CHECK requests, so a durable batch's results do
 * not wait for the whole next batch (under load that is one batch period less latency).
 *
 * What it does not do: SQL of its own beyond transactions (components bring theirs),
 * reads on other threads.
 *
 * Threading: pl_store_submit from any thread: it takes the queue lock (a leaf: nothing
 * else is called under it) and posts one "kick" message to the store loop when the
 * queue turns non-empty. Everything else after pl_store_open runs on the store thread,
 * until pl_store_close joins it. */
#include "store/store_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define PL_STORE_BATCH_DEFAULT 1024
#define PL_STORE_CKPT_DEFAULT 10000

struct pl_store {
    pl_store_conn_t conn;           /* store thread (opener before the thread starts) */
    pl_loop_t *loop;
    pthread_t thread;
    unsigned batch_max;

    pthread_mutex_t lock;           /* leaf lock: queue, kick_pending, closed */
    pl_store_req_t *head;
    pl_store_req_t **tail;
    bool kick_pending;              /* kick posted and its handler not yet started */
    bool closed;
    pl_msg_t kick;                  /* embedded; its fn never frees it */
    pl_msg_t stop;

    pl_store_sync_t *sync;          /* NULL: synchronous=normal or a memory database */
    pl_store_ckpt_t *ckpt;          /* NULL: a memory database */
    pl_msg_t durable;               /* posted by the syncer */
    uint64_t seq;                   /* last batch handed to the syncer */
    struct parked *parked, **parked_tail;   /* committed, waiting for their sync */

    _Atomic uint64_t n_requests, n_batches, n_commit_failures, n_max_batch;

    pl_metrics_shard_t *shard;      /* written by the store thread only */
    pl_metric_id_t m_requests, m_batches, m_failures, m_batch_size, m_commit_s, m_wait_s,
        m_durable_s;
};

/* ---- options -------------------------------------------------------------------- */

static const pl_opt_def_t store_defs[] = {
    { "store", "path", PL_OPT_STRING, "parley.db", 0, 4096, NULL, 0,
      "SQLite database file (created if missing; relative to the working directory)" },
    { "store", "batch_max", PL_OPT_INT, "1024", 1, 100000, NULL, 0,
      "most requests committed together in one transaction (group commit)" },
    { "store", "synchronous", PL_OPT_ENUM, "full", 0, 0, "full|normal", 0,
      "full: no result leaves before an fdatasync of its commit (a syncer thread; the store thread goes on); normal: WAL may lose the last commits on power loss" },
    { "store", "checkpoint_pages", PL_OPT_INT, "10000", 100, 10000000, NULL, 0,
      "WAL pages (4 KiB) that start a checkpoint on the checkpointer thread; at 4 times as many the store thread checkpoints itself (bounds the WAL file)" },
};

const pl_opt_table_t pl_store_options = {
    "persistence: the SQLite database and its store thread",
    store_defs, PL_ARRAY_LEN(store_defs),
};

void pl_store_opts_from_config(const pl_config_t *cfg, pl_store_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->path = pl_config_str(cfg, "store", "path");
    opts->batch_max = (unsigned)pl_config_int(cfg, "store", "batch_max");
    opts->synchronous_normal = strcmp(pl_config_str(cfg, "store", "synchronous"), "normal") == 0;
    opts->checkpoint_pages = (unsigned)pl_config_int(cfg, "store", "checkpoint_pages");
}

/* ---- replies -------------------------------------------------------------------- */

static void post_to_loop(void *target, pl_msg_t *msg)
{
    pl_loop_post(target, msg);
}

pl_store_reply_t pl_store_reply_loop(pl_loop_t *loop)
{
    return (pl_store_reply_t){ .post = post_to_loop, .target = loop };
}

static void reply_trampoline(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    pl_store_req_t *req = PL_CONTAINER_OF(msg, pl_store_req_t, msg);
    req->done(req);
}

static void deliver(pl_store_req_t *req)
{
    if (!req->reply.post) {
        req->done(req);
        return;
    }
    req->msg.fn = reply_trampoline;
    req->msg.next = NULL;
    req->reply.post(req->reply.target, &req->msg);
}

/* ---- batches -------------------------------------------------------------------- */

typedef struct parked {
    struct parked *next;
    uint64_t seq;
    uint64_t committed_us;          /* monotonic */
    pl_store_req_t *head;
    bool clean;                     /* committed without a rolled-back transaction */
} parked_t;

static void deliver_all(pl_store_req_t *batch)
{
    while (batch) {
        pl_store_req_t *next = batch->next;
        deliver(batch);             /* may free batch */
        batch = next;
    }
}

/* Runs the done functions of the parked batches that are durable (seq <= durable);
 * with clean_only, stops at the first one that had a transaction rolled back. */
static void deliver_parked(pl_store_t *st, uint64_t durable, bool clean_only)
{
    while (st->parked && st->parked->seq <= durable && (!clean_only || st->parked->clean)) {
        parked_t *p = st->parked;
        st->parked = p->next;
        if (!st->parked)
            st->parked_tail = &st->parked;
        if (st->shard)
            pl_metric_observe(st->shard, st->m_durable_s,
                              (double)(pl_now_mono_us() - p->committed_us) / 1e6);
        deliver_all(p->head);
        free(p);
    }
}

/* After run_batch: replies now (nothing to wait for) or parks the batch until it is
 * durable -- synced by the syncer, or (sync_here) by the caller right after. A batch
 * that wrote nothing still waits behind earlier parked batches, whose data it may
 * have read. */
static void settle_batch(pl_store_t *st, pl_store_req_t *batch, bool wrote, bool clean,
                         bool sync_here)
{
    if (!st->sync || (!wrote && !st->parked)) {
        deliver_all(batch);
        return;
    }
    if (wrote) {
        st->seq++;
        if (!sync_here)                 /* else the caller syncs it itself */
            pl_store_sync_request(st->sync, st->seq);
    }
    parked_t *p = pl_xmalloc(sizeof(*p));
    *p = (parked_t){ .next = NULL, .seq = st->seq, .committed_us = pl_now_mono_us(),
                     .head = batch, .clean = clean };
    *st->parked_tail = p;
    st->parked_tail = &p->next;
}

static void on_durable(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    pl_store_t *st = PL_CONTAINER_OF(msg, pl_store_t, durable);
    deliver_parked(st, pl_store_sync_durable(st->sync, true), false);
}

static void atomic_max(_Atomic uint64_t *a, uint64_t v)
{
    uint64_t cur = atomic_load_explicit(a, memory_order_relaxed);
    while (cur < v && !atomic_compare_exchange_weak(a, &cur, v)) {
    }
}

static int tx(pl_store_t *st, const char *sql)
{
    sqlite3_stmt *s = pl_store_prepare(&st->conn, sql);
    int rc = s ? pl_store_step_done(&st->conn, s) : PL_ESTATE;
    pl_store_conn_reset_used(&st->conn);
    return rc;
}

/* Marks requests [from, to) failed: their transaction did not commit. */
static void fail_range(pl_store_req_t *from, pl_store_req_t *to, int err)
{
    for (pl_store_req_t *r = from; r != to; r = r->next)
        r->status = err;
}

/* Inside a batch, every this many requests: hand out the parked batches that became
 * durable meanwhile (one mutex round trip per check). A batch that had a transaction
 * rolled back waits for the end of the running batch, as before: its done functions
 * may reset state the running requests are using. */
#define MID_BATCH_CHECK 16

/* Runs one request inside its own savepoint, or without one when it says
 * no_savepoint; then, if it failed after writing, rolls the whole transaction back
 * (run_batch finds autocommit on, as after an abort by SQLite). Whether it wrote is
 * SQLite's count of changed rows: a statement that fails is undone by SQLite itself
 * (statement journal, or the whole transaction), and the only writes the count misses
 * are CREATE TEMP TABLE IF NOT EXISTS, which a rerun repeats harmlessly. */
static void run_one(pl_store_t *st, pl_store_req_t *req)
{
    sqlite3 *db = pl_store_db(&st->conn);
    if (req->no_savepoint) {
        sqlite3_int64 before = sqlite3_total_changes64(db);
        req->status = req->exec(&st->conn, req);
        pl_store_conn_reset_used(&st->conn);
        if (req->status < 0 && !sqlite3_get_autocommit(db) &&
            sqlite3_total_changes64(db) != before)
            tx(st, "ROLLBACK");
        return;
    }
    if (tx(st, "SAVEPOINT pl_req") < 0) {
        req->status = PL_ESTATE;
        return;
    }
    req->status = req->exec(&st->conn, req);
    pl_store_conn_reset_used(&st->conn);
    if (sqlite3_get_autocommit(db))
        return;                 /* SQLite rolled the transaction back (I/O error, full) */
    if (req->status < 0)
        tx(st, "ROLLBACK TO pl_req");
    tx(st, "RELEASE pl_req");
}

/* Runs the n requests from head in one transaction. If SQLite aborts the transaction
 * under a request (sqlite.org/lang_transaction.html: SQLITE_FULL, SQLITE_IOERR...), or
 * run_one rolled it back, the requests since BEGIN are marked failed and the rest start
 * a new transaction. */
static void run_batch(pl_store_t *st, pl_store_req_t *head, size_t n)
{
    uint64_t t0 = pl_now_mono_us();
    if (st->shard)
        for (pl_store_req_t *r = head; r; r = r->next)
            pl_metric_observe(st->shard, st->m_wait_s, (double)(t0 - r->t_submit_us) / 1e6);
    pl_store_req_t *tx_first = head;
    unsigned since_check = 0;
    bool in_tx = tx(st, "BEGIN IMMEDIATE") == 0;
    for (pl_store_req_t *r = head; r; r = r->next) {
        if (!in_tx) {
            r->status = PL_ESTATE;
            continue;
        }
        run_one(st, r);
        if (++since_check == MID_BATCH_CHECK) {
            since_check = 0;
            if (st->parked && st->parked->clean)
                deliver_parked(st, pl_store_sync_durable(st->sync, false), true);
        }
        if (sqlite3_get_autocommit(pl_store_db(&st->conn))) {
            st->conn.rollbacks++;
            pl_log_error("store.tx.aborted", "batch=%zu", n);
            fail_range(tx_first, r->next, PL_ESTATE);
            tx_first = r->next;
            in_tx = tx(st, "BEGIN IMMEDIATE") == 0;
        }
    }
    if (in_tx && tx(st, "COMMIT") < 0) {
        tx(st, "ROLLBACK");
        st->conn.rollbacks++;
        fail_range(tx_first, NULL, PL_ESTATE);
        atomic_fetch_add(&st->n_commit_failures, 1);
        if (st->shard)
            pl_metric_inc(st->shard, st->m_failures);
    }
    atomic_fetch_add(&st->n_batches, 1);
    atomic_fetch_add(&st->n_requests, n);
    atomic_max(&st->n_max_batch, n);
    if (st->shard) {
        pl_metric_inc(st->shard, st->m_batches);
        pl_metric_add(st->shard, st->m_requests, n);
        pl_metric_observe(st->shard, st->m_batch_size, (double)n);
        pl_metric_observe(st->shard, st->m_commit_s, (double)(pl_now_mono_us() - t0) / 1e6);
    }
}

/* Detaches up to batch_max requests from the queue; returns how many. */
static size_t take_batch(pl_store_t *st, pl_store_req_t **out)
{
    size_t n = 0;
    pthread_mutex_lock(&st->lock);
    pl_store_req_t *head = st->head, *last = NULL;
    for (pl_store_req_t *r = head; r && n < st->batch_max; r = r->next, n++)
        last = r;
    if (last) {
        st->head = last->next;
        last->next = NULL;
        if (!st->head)
            st->tail = &st->head;
    }
    pthread_mutex_unlock(&st->lock);
    *out = n ? head : NULL;
    return n;
}

static void drain_queue(pl_store_t *st)
{
    pl_store_req_t *batch;
    size_t n;
    while ((n = take_batch(st, &batch)) > 0) {
        sqlite3_int64 before = sqlite3_total_changes64(pl_store_db(&st->conn));
        uint64_t rollbacks = st->conn.rollbacks;
        run_batch(st, batch, n);
        /* Nothing queued behind this batch: the store thread would only go to sleep,
         * so it syncs the WAL itself (requests arriving meanwhile form the next batch)
         * instead of waking the syncer and being woken again by it -- on this VM a
         * wake-up of a sleeping thread costs its waker tens of microseconds. */
        pthread_mutex_lock(&st->lock);
        bool idle = st->head == NULL;
        pthread_mutex_unlock(&st->lock);
        bool here = idle && st->sync;
        settle_batch(st, batch, sqlite3_total_changes64(pl_store_db(&st->conn)) != before,
                     st->conn.rollbacks == rollbacks, here);
        if (here && st->parked)
            deliver_parked(st, pl_store_sync_now(st->sync, st->seq, st->shard), false);
        /* Under steady load this loop may not return for a long time: hand out what
         * became durable meanwhile instead of waiting for on_durable. */
        if (st->parked)
            deliver_parked(st, pl_store_sync_durable(st->sync, false), false);
    }
}

/* Only the kick's own handler clears kick_pending: the kick is then out of the
 * mailbox, so the next submit may post it again. (Clearing it anywhere else, e.g. when
 * a batch empties the queue, could post the kick while it still sits in the mailbox:
 * a message in the lock-free stack twice corrupts it.) Requests that arrive while this
 * handler runs are either taken by its loop below or by the next kick. */
static void on_kick(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    pl_store_t *st = PL_CONTAINER_OF(msg, pl_store_t, kick);
    pthread_mutex_lock(&st->lock);
    st->kick_pending = false;
    pthread_mutex_unlock(&st->lock);
    drain_queue(st);
}

static void on_stop(pl_loop_t *loop, pl_msg_t *msg)
{
    pl_store_t *st = PL_CONTAINER_OF(msg, pl_store_t, stop);
    drain_queue(st);
    if (st->parked)
        deliver_parked(st, pl_store_sync_wait(st->sync, st->seq), false);
    pl_loop_stop(loop);
}

void pl_store_submit(pl_store_t *st, pl_store_req_t *req)
{
    PL_ASSERT(req->exec && req->done);
    req->next = NULL;
    req->t_submit_us = pl_now_mono_us();
    pthread_mutex_lock(&st->lock);
    if (st->closed) {
        pthread_mutex_unlock(&st->lock);
        req->status = PL_ECLOSED;
        deliver(req);
        return;
    }
    *st->tail = req;
    st->tail = &req->next;
    bool kick = !st->kick_pending;
    st->kick_pending = true;
    pthread_mutex_unlock(&st->lock);
    if (kick)
        pl_loop_post(st->loop, &st->kick);
}

/* ---- life cycle ----------------------------------------------------------------- */

static void *store_main(void *arg)
{
    pl_store_t *st = arg;
    int rc = pl_loop_run(st->loop);
    if (rc < 0)
        pl_log_error("store.loop.failed", "error=%s", pl_strerror(rc));
    return NULL;
}

static void register_metrics(pl_store_t *st, pl_metrics_t *reg)
{
    static const double sizes[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 1024 };
    static const double secs[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25, 1 };
    st->m_requests = pl_metrics_counter(reg, "parley_store_requests_total",
                                        "Store requests executed", NULL);
    st->m_batches = pl_metrics_counter(reg, "parley_store_batches_total",
                                       "Store transactions (group commits)", NULL);
    st->m_failures = pl_metrics_counter(reg, "parley_store_commit_failures_total",
                                        "Store transactions that failed to commit", NULL);
    st->m_batch_size = pl_metrics_histogram(reg, "parley_store_batch_size",
        "Requests per store transaction", NULL, sizes, PL_ARRAY_LEN(sizes));
    st->m_commit_s = pl_metrics_histogram(reg, "parley_store_batch_seconds",
        "Time to run and commit one store transaction", NULL, secs, PL_ARRAY_LEN(secs));
    st->m_wait_s = pl_metrics_histogram(reg, "parley_store_wait_seconds",
        "Time a store request waited in the queue before its transaction began", NULL, secs,
        PL_ARRAY_LEN(secs));
    st->m_durable_s = pl_metrics_histogram(reg, "parley_store_durable_wait_seconds",
        "Time from a transaction's commit to the release of its results (synchronous=full: "
        "the fdatasync that covers it)", NULL, secs, PL_ARRAY_LEN(secs));
    st->shard = pl_metrics_shard_create(reg);
}

int pl_store_open(const pl_store_opts_t *opts, pl_store_t **out)
{
    pl_store_t *st = pl_xcalloc(1, sizeof(*st));
    st->batch_max = opts->batch_max ? opts->batch_max : PL_STORE_BATCH_DEFAULT;
    st->tail = &st->head;
    st->kick.fn = on_kick;
    st->stop.fn = on_stop;
    st->durable.fn = on_durable;
    st->parked_tail = &st->parked;
    pthread_mutex_init(&st->lock, NULL);

    /* Durable mode on a file: SQLite commits without fsync, the syncer makes it durable
     * before anyone hears of the commit. A memory or temporary database has no WAL. */
    bool pipelined = !opts->synchronous_normal && opts->path[0] &&
                     strcmp(opts->path, ":memory:") != 0;
    int rc = pl_store_conn_open(&st->conn, opts->path, opts->synchronous_normal || pipelined);
    if (rc < 0)
        goto fail_conn;
    rc = pl_store_migrate(&st->conn, opts->schemas, opts->n_schemas);
    if (rc < 0)
        goto fail_migrate;
    rc = pl_loop_create("store", &st->loop);
    if (rc < 0)
        goto fail_migrate;
    if (opts->metrics)
        register_metrics(st, opts->metrics);
    if (pipelined && (rc = pl_store_sync_start(opts->path, st->loop, &st->durable,
                                                opts->metrics, &st->sync)) < 0)
        goto fail_sync;
    bool file = opts->path[0] && strcmp(opts->path, ":memory:") != 0;
    if (file && (rc = pl_store_ckpt_start(&st->conn, opts->path,
                                          opts->checkpoint_pages ? opts->checkpoint_pages
                                                                 : PL_STORE_CKPT_DEFAULT,
                                          opts->metrics, st->shard, &st->ckpt)) < 0)
        goto fail_ckpt;
    rc = -pthread_create(&st->thread, NULL, store_main, st);
    if (rc < 0)
        goto fail_thread;
    pl_log_info("store.opened", "path=%s batch_max=%u synchronous=%s",
                PL_LOG_QUOTED(opts->path), st->batch_max,
                opts->synchronous_normal ? "normal" : pipelined ? "full(syncer)" : "full");
    *out = st;
    return 0;

fail_thread:
    pl_store_ckpt_stop(&st->conn, st->ckpt);
fail_ckpt:
    pl_store_sync_stop(st->sync);
fail_sync:
    pl_loop_destroy(st->loop);
fail_migrate:
    pl_store_conn_close(&st->conn);
fail_conn:
    pthread_mutex_destroy(&st->lock);
    free(st);
    return rc;
}

void pl_store_close(pl_store_t *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->lock);
    st->closed = true;
    pthread_mutex_unlock(&st->lock);
    /* After closed is set nothing new is queued, so the stop message's drain runs the
     * last requests; a kick still in the mailbox then finds the queue empty. */
    pl_loop_post(st->loop, &st->stop);
    pthread_join(st->thread, NULL);
    pl_loop_destroy(st->loop);      /* may run on_durable: the syncer is still there */
    pl_store_sync_stop(st->sync);
    pl_store_ckpt_stop(&st->conn, st->ckpt);
    pl_store_conn_close(&st->conn);
    pthread_mutex_destroy(&st->lock);
    pl_log_info("store.closed", "requests=%llu batches=%llu",
                (unsigned long long)atomic_load(&st->n_requests),
                (unsigned long long)atomic_load(&st->n_batches));
    free(st);
}

void pl_store_get_stats(const pl_store_t *st, pl_store_stats_t *out)
{
    out->requests = atomic_load(&st->n_requests);
    out->batches = atomic_load(&st->n_batches);
    out->commit_failures = atomic_load(&st->n_commit_failures);
    out->max_batch = atomic_load(&st->n_max_batch);
    out->syncs = st->sync ? pl_store_sync_count(st->sync, &out->syncs_here) : 0;
    if (!st->sync)
        out->syncs_here = 0;
}
