/* store_sync.c: the syncer thread of a durable store. With store.synchronous=full the
 * connection runs SQLite's synchronous=NORMAL, so COMMIT writes the WAL frames without
 * waiting for the disk, and this thread makes them durable with fdatasync() on the WAL
 * file while the store thread already runs the next batch. The store thread hands each
 * committed batch's sequence number over (pl_store_sync_request) and runs the batch's
 * done functions only once pl_store_sync_durable says a sync that started after that
 * COMMIT has returned: the same guarantee as synchronous=FULL ("sent" means on disk),
 * with the fsync wait taken off the store thread, and one fdatasync covering every
 * batch committed while the previous one ran.
 *
 * Why fdatasync on our own descriptor is enough: it flushes the file's dirty pages and
 * the size needed to read them, whoever wrote them (the WAL file keeps its inode while
 * the database is open: SQLite rewinds it after a checkpoint, never replaces it).
 * Checkpoints keep SQLite's own ordering (it syncs the WAL before copying it back).
 *
 * A failed fdatasync aborts the process: after one the kernel may have dropped the dirty
 * pages, so acknowledging or retrying could claim data that is not on disk (the lesson
 * PostgreSQL drew in 2018); recovery from the WAL at the next start is the safe path.
 *
 * When the store thread has nothing queued behind a batch it syncs that batch itself
 * (pl_store_sync_now, with a descriptor of its own): waking this thread and being
 * woken by its post cost the store more than the sync, and requests that arrive
 * meanwhile simply form the next batch. Either thread may then find `done` moved past
 * what it synced; it only ever grows.
 *
 * Threading: request/durable/wait/now on the store thread; the syncer thread is
 * private. The lock guards want/done/pending/stop and is a leaf lock. */
#include "store/store_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pl_store_sync {
    char *wal_path;
    int fd;                     /* syncer thread; opened at the first sync */
    int inline_fd;              /* store thread (pl_store_sync_now); opened at its first */
    pl_loop_t *loop;
    pl_msg_t *durable_msg;      /* posted to loop when done moves; owned by the store */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* want moved, done moved, or stop */
    uint64_t want;              /* highest committed batch */
    uint64_t done;              /* highest durable batch */
    bool pending;               /* durable_msg posted, its handler not yet run */
    bool stop;
    _Atomic uint64_t n_syncs;   /* both threads' */
    _Atomic uint64_t n_syncs_here;  /* the store thread's (pl_store_sync_now) */
    pl_metrics_shard_t *shard;  /* the syncer thread's; NULL without metrics */
    pl_metric_id_t m_syncs, m_sync_s;
};

/* fdatasync of the WAL through *fd (opened at the first call); shard: the calling
 * thread's metrics shard, or NULL. */
static int sync_once(pl_store_sync_t *s, int *fd, pl_metrics_shard_t *shard)
{
    if (*fd < 0) {
        *fd = open(s->wal_path, O_RDWR | O_CLOEXEC);
        if (*fd < 0)
            return -errno;
    }
    uint64_t t0 = pl_now_mono_us();
    if (fdatasync(*fd) < 0)
        return -errno;
    atomic_fetch_add_explicit(&s->n_syncs, 1, memory_order_relaxed);
    if (shard) {
        pl_metric_inc(shard, s->m_syncs);
        pl_metric_observe(shard, s->m_sync_s, (double)(pl_now_mono_us() - t0) / 1e6);
    }
    return 0;
}

static void sync_failed(pl_store_sync_t *s, int rc)
{
    pl_log_error("store.fsync.failed", "path=%s error=%s action=abort",
                 PL_LOG_QUOTED(s->wal_path), pl_strerror(rc));
    abort();
}

static void *syncer_main(void *arg)
{
    pl_store_sync_t *s = arg;
    pthread_setname_np(pthread_self(), "store-sync");
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->want == s->done && !s->stop)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->want == s->done)
            break;                          /* stop, and nothing left to sync */
        uint64_t target = s->want;
        pthread_mutex_unlock(&s->lock);
        int rc = sync_once(s, &s->fd, s->shard);
        if (rc < 0)
            sync_failed(s, rc);
        pthread_mutex_lock(&s->lock);
        if (target > s->done)               /* the store thread may have synced further */
            s->done = target;
        bool post = !s->pending;
        s->pending = true;
        pthread_cond_broadcast(&s->cond);
        if (post)
            pl_loop_post(s->loop, s->durable_msg);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int pl_store_sync_start(const char *db_path, pl_loop_t *loop, pl_msg_t *durable_msg,
                        pl_metrics_t *metrics, pl_store_sync_t **out)
{
    static const double secs[] = { 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1, 0.5 };
    pl_store_sync_t *s = pl_xcalloc(1, sizeof(*s));
    if (metrics) {
        s->m_syncs = pl_metrics_counter(metrics, "parley_store_syncs_total",
            "fdatasync calls of the WAL by the syncer (each covers every batch committed "
            "before it began)", NULL);
        s->m_sync_s = pl_metrics_histogram(metrics, "parley_store_sync_seconds",
            "Time of one fdatasync of the WAL (the disk's share of a message's latency)",
            NULL, secs, PL_ARRAY_LEN(secs));
        s->shard = pl_metrics_shard_create(metrics);
    }
    size_t n = strlen(db_path);
    s->wal_path = pl_xmalloc(n + 5);
    memcpy(s->wal_path, db_path, n);
    memcpy(s->wal_path + n, "-wal", 5);
    s->fd = -1;
    s->inline_fd = -1;
    s->loop = loop;
    s->durable_msg = durable_msg;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    int rc = -pthread_create(&s->thread, NULL, syncer_main, s);
    if (rc < 0) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s->wal_path);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void pl_store_sync_request(pl_store_sync_t *s, uint64_t seq)
{
    pthread_mutex_lock(&s->lock);
    if (seq > s->want) {
        s->want = seq;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

uint64_t pl_store_sync_now(pl_store_sync_t *s, uint64_t seq, pl_metrics_shard_t *shard)
{
    pthread_mutex_lock(&s->lock);
    uint64_t done = s->done;
    pthread_mutex_unlock(&s->lock);
    if (done >= seq)
        return done;
    int rc = sync_once(s, &s->inline_fd, shard);
    if (rc < 0)
        sync_failed(s, rc);
    atomic_fetch_add_explicit(&s->n_syncs_here, 1, memory_order_relaxed);
    pthread_mutex_lock(&s->lock);
    if (seq > s->done)
        s->done = seq;
    if (seq > s->want)
        s->want = seq;
    done = s->done;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return done;
}

uint64_t pl_store_sync_durable(pl_store_sync_t *s, bool rearm)
{
    pthread_mutex_lock(&s->lock);
    if (rearm)
        s->pending = false;
    uint64_t done = s->done;
    pthread_mutex_unlock(&s->lock);
    return done;
}

uint64_t pl_store_sync_wait(pl_store_sync_t *s, uint64_t seq)
{
    pthread_mutex_lock(&s->lock);
    while (s->done < seq)
        pthread_cond_wait(&s->cond, &s->lock);
    uint64_t done = s->done;
    pthread_mutex_unlock(&s->lock);
    return done;
}

uint64_t pl_store_sync_count(const pl_store_sync_t *s, uint64_t *here)
{
    *here = atomic_load_explicit(&s->n_syncs_here, memory_order_relaxed);
    return atomic_load_explicit(&s->n_syncs, memory_order_relaxed);
}

void pl_store_sync_stop(pl_store_sync_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    if (s->fd >= 0)
        close(s->fd);
    if (s->inline_fd >= 0)
        close(s->inline_fd);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->wal_path);
    free(s);
}
