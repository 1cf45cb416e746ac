/* store_ckpt.c: WAL checkpoints off the store thread.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past its
 * threshold: on the store thread, it copies every page of the WAL back into the
 * database file and fdatasyncs both files, and no batch runs meanwhile (chat at
 * 40,000 messages/s wrote 10,000 WAL pages in a quarter of a second, so that stall came
 * four times a second). Here the store connection's WAL hook only wakes the
 * checkpointer thread ("store-ckpt") each time the WAL grew by `soft` pages; it runs a PASSIVE
 * checkpoint on a connection of its own, which never blocks the writer (sqlite.org
 * /wal.html): the copying and both syncs happen while the store thread goes on.
 *
 * A PASSIVE checkpoint copies the frames committed when it started. Under a steady load
 * more arrive meanwhile, and SQLite rewinds the WAL only when a checkpoint has copied
 * all of it before the next write begins -- so the background alone would let the file
 * grow without end. Once the WAL holds `hard` pages (4 x soft), the next background pass
 * is the final one: when it is done the store thread checkpoints itself, as SQLite
 * would have, but only the frames committed during that pass are left to copy, and its
 * next transaction rewinds the WAL. (At twice `hard` -- a checkpointer held back, by a
 * long backup's read transaction say -- the store thread does not wait for it.)

 * Durability is SQLite's: a checkpoint syncs the WAL before copying and the database
 * before it marks frames copied, whichever connection runs it.
 *
 * Threading: pl_store_ckpt_kick on the store thread (inside the WAL hook); the
 * checkpointer's connection is private to its thread; the lock guards want/stop and is
 * a leaf. */
#include "store/store_int.h"
#include "core/pl_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct pl_store_ckpt {
    char *path;
    unsigned soft, hard;
    unsigned last, next;            /* store thread: WAL pages at the last commit, and
                                       where the next background checkpoint starts */
    bool final;                     /* store thread: the pass under way started past hard */
    sqlite3 *db;                    /* checkpointer thread; opened at the first kick */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool want, stop;
    _Atomic bool running;           /* a background checkpoint is under way */
    pl_metrics_shard_t *shard;      /* the checkpointer's (store thread: its own shard) */
    pl_metrics_shard_t *store_shard;
    pl_metric_id_t m_bg, m_inline, m_secs;
};

static void observe(pl_store_ckpt_t *k, pl_metrics_shard_t *shard, pl_metric_id_t count,
                    uint64_t t0)
{
    if (!shard)
        return;
    pl_metric_inc(shard, count);
    pl_metric_observe(shard, k->m_secs, (double)(pl_now_mono_us() - t0) / 1e6);
}

static int open_db(pl_store_ckpt_t *k)
{
    int rc = sqlite3_open_v2(k->path, &k->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    /* A first read opens the WAL and its index for this connection. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(k->db, "PRAGMA synchronous=NORMAL;"
                                 "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        return 0;
    pl_log_error("store.checkpoint.open_failed", "path=%s error=%s", PL_LOG_QUOTED(k->path),
                 PL_LOG_QUOTED(k->db ? sqlite3_errmsg(k->db) : sqlite3_errstr(rc)));
    sqlite3_close(k->db);
    k->db = NULL;
    return PL_ESTATE;
}

static void checkpoint(pl_store_ckpt_t *k)
{
    if (!k->db && open_db(k) < 0)
        return;
    uint64_t t0 = pl_now_mono_us();
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(k->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        pl_log_error("store.checkpoint.failed", "error=%s", PL_LOG_QUOTED(sqlite3_errmsg(k->db)));
        return;
    }
    observe(k, k->shard, k->m_bg, t0);
    pl_log_debug("store.checkpoint", "wal_pages=%d copied=%d", log, done);
}

static void *ckpt_main(void *arg)
{
    pl_store_ckpt_t *k = arg;
    pthread_setname_np(pthread_self(), "store-ckpt");
    pthread_mutex_lock(&k->lock);
    for (;;) {
        while (!k->want && !k->stop)
            pthread_cond_wait(&k->cond, &k->lock);
        if (k->stop)
            break;
        k->want = false;
        pthread_mutex_unlock(&k->lock);
        checkpoint(k);
        atomic_store(&k->running, false);
        pthread_mutex_lock(&k->lock);
    }
    pthread_mutex_unlock(&k->lock);
    sqlite3_close(k->db);
    return NULL;
}

/* SQLite calls this on the store thread after every commit, with the WAL's size. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    pl_store_ckpt_t *k = arg;
    unsigned n = (unsigned)pages;
    if (n < k->last) {              /* the WAL was rewound */
        k->next = k->soft;
        k->final = false;
    }
    k->last = n;
    bool running = atomic_load(&k->running);
    if (n >= k->hard * 2 || (n >= k->hard && k->final && !running)) {
        /* The final pass copied nearly all of the WAL: the store thread copies what
         * was committed meanwhile, so its next transaction rewinds the file. (At twice
         * the limit it does so whatever the checkpointer managed.) */
        uint64_t t0 = pl_now_mono_us();
        int log = 0, done = 0;
        if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &done) ==
            SQLITE_OK)
            observe(k, k->store_shard, k->m_inline, t0);
        k->final = false;
    } else if ((n >= k->next || n >= k->hard) && !running &&
               !atomic_exchange(&k->running, true)) {
        k->next = n + k->soft;      /* one background pass per soft new pages */
        k->final = n >= k->hard;
        pthread_mutex_lock(&k->lock);
        k->want = true;
        pthread_cond_signal(&k->cond);
        pthread_mutex_unlock(&k->lock);
    }
    return SQLITE_OK;
}

int pl_store_ckpt_start(pl_store_conn_t *conn, const char *db_path, unsigned soft,
                        pl_metrics_t *metrics, pl_metrics_shard_t *store_shard,
                        pl_store_ckpt_t **out)
{
    static const double secs[] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5 };
    pl_store_ckpt_t *k = pl_xcalloc(1, sizeof(*k));
    k->path = pl_xstrdup(db_path);
    k->soft = soft;
    k->hard = soft * 4;
    k->next = soft;
    if (metrics) {
        static const char *const help = "WAL checkpoints (copies of the WAL back into the "
            "database file): background by the checkpointer thread, inline by the store "
            "thread once the WAL reached 4 x store.checkpoint_pages";
        k->m_bg = pl_metrics_counter(metrics, "parley_store_checkpoints_total", help,
                                     "thread=\"background\"");
        k->m_inline = pl_metrics_counter(metrics, "parley_store_checkpoints_total", help,
                                         "thread=\"store\"");
        k->m_secs = pl_metrics_histogram(metrics, "parley_store_checkpoint_seconds",
            "Time of one WAL checkpoint (either thread)", NULL, secs, PL_ARRAY_LEN(secs));
        k->shard = pl_metrics_shard_create(metrics);
        k->store_shard = store_shard;
    }
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    int rc = -pthread_create(&k->thread, NULL, ckpt_main, k);
    if (rc < 0) {
        pthread_cond_destroy(&k->cond);
        pthread_mutex_destroy(&k->lock);
        free(k->path);
        free(k);
        return rc;
    }
    sqlite3_wal_hook(pl_store_db(conn), wal_hook, k);  /* replaces the automatic one */
    *out = k;
    return 0;
}

void pl_store_ckpt_stop(pl_store_conn_t *conn, pl_store_ckpt_t *k)
{
    if (!k)
        return;
    sqlite3_wal_autocheckpoint(pl_store_db(conn), (int)k->soft);   /* SQLite's hook again */
    pthread_mutex_lock(&k->lock);
    k->stop = true;
    pthread_cond_broadcast(&k->cond);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->lock);
    free(k->path);
    free(k);
}
