/* store_int.h: private declarations shared by store.c (thread, queue, group commit)
 * and store_db.c (SQLite connection, migrations, statement cache). Not for other
 * modules. Threading: a pl_store_conn_t belongs to whichever thread holds the database:
 * the opener during pl_store_open, then the store thread. */
#ifndef PL_STORE_INT_H
#define PL_STORE_INT_H

#include "store/pl_store.h"

typedef struct pl_store_stmt_slot {
    const char *sql;                /* key (pointer identity); NULL = empty */
    sqlite3_stmt *stmt;
    bool used;                      /* stepped during the current request */
} pl_store_stmt_slot_t;

struct pl_store_conn {
    sqlite3 *db;
    pl_store_stmt_slot_t *slots;    /* open addressing, power-of-two capacity */
    size_t cap;
    size_t count;
    const char **used;              /* keys of the slots to reset after the request */
    size_t n_used;
    size_t used_cap;
    uint64_t rollbacks;             /* whole transactions rolled back (store thread) */
    /* pl_store_conn_writes: the watched tables (names owned) and their row writes. */
    char *watch[PL_STORE_WATCH_MAX];
    uint64_t writes[PL_STORE_WATCH_MAX];
    unsigned n_watch;
    /* pl_store_conn_foreign_version: the pager's data version (any commit) when
     * "PRAGMA data_version" (other connections' commits only) was last read. */
    unsigned fv_pager;
    uint64_t fv;
    bool fv_valid;
};

/* Opens path with the pragmas of opts. Returns 0 or PL_ESTATE (logged). */
int pl_store_conn_open(pl_store_conn_t *c, const char *path, bool synchronous_normal);
/* Finalizes every cached statement and closes the database. */
void pl_store_conn_close(pl_store_conn_t *c);
/* Resets the statements the last request used. */
void pl_store_conn_reset_used(pl_store_conn_t *c);
/* Runs sql (no result rows) with sqlite3_exec. Returns 0 or PL_ESTATE (logged with
 * what, unless quiet). */
int pl_store_conn_exec(pl_store_conn_t *c, const char *sql, const char *what);
/* Applies the missing migration steps of every schema. Returns 0, PL_ESTATE or
 * PL_EPARSE (see pl_store_open). */
int pl_store_migrate(pl_store_conn_t *c, const pl_store_schema_t *const *schemas, size_t n);

/* ---- WAL write joining (store_walbuf.c) -------------------------------------------- */

#define PL_STORE_WALBUF_VFS "parley-walbuf"
/* Registers the VFS (not as the default). Once, before any connection opens with it.
 * Returns 0 or PL_ESTATE (no usable default VFS). */
int pl_store_walbuf_register(void);

/* ---- syncer (store_sync.c) --------------------------------------------------------- */

typedef struct pl_store_sync pl_store_sync_t;

/* Starts the syncer thread for the WAL of db_path. When a sync completes it posts
 * durable_msg (owned by the caller) to loop, at most once until pl_store_sync_durable
 * re-arms it. metrics (may be NULL): parley_store_syncs_total and
 * parley_store_sync_seconds are registered there. Returns 0 or -errno. */
int pl_store_sync_start(const char *db_path, pl_loop_t *loop, pl_msg_t *durable_msg,
                        pl_metrics_t *metrics, pl_store_sync_t **out);
/* Store thread: batches up to seq are committed; make them durable. */
void pl_store_sync_request(pl_store_sync_t *s, uint64_t seq);
/* Store thread, instead of a request when it has nothing else to run: makes batches up
 * to seq durable with an fdatasync of its own (no wake-up of the syncer, no post back;
 * the syncer may be syncing an earlier batch meanwhile). Returns the durable sequence
 * number (>= seq); aborts the process if the sync fails, as the syncer does. shard:
 * the caller's metrics shard or NULL. */
uint64_t pl_store_sync_now(pl_store_sync_t *s, uint64_t seq, pl_metrics_shard_t *shard);
/* Store thread: the highest durable seq. rearm (from durable_msg's handler): the next
 * completed sync posts durable_msg again; without it (between batches) the post stays
 * as it is. */
uint64_t pl_store_sync_durable(pl_store_sync_t *s, bool rearm);
/* Store thread: blocks until seq is durable (shutdown); returns the durable seq. */
uint64_t pl_store_sync_wait(pl_store_sync_t *s, uint64_t seq);
/* fdatasync calls so far, and in *here those of pl_store_sync_now. Any thread. */
uint64_t pl_store_sync_count(const pl_store_sync_t *s, uint64_t *here);
/* Syncs what was requested, then joins the thread. NULL is a no-op. */
void pl_store_sync_stop(pl_store_sync_t *s);

/* ---- checkpointer (store_ckpt.c) ----------------------------------------------------- */

typedef struct pl_store_ckpt pl_store_ckpt_t;

/* Starts the checkpointer thread for db_path and installs the WAL hook on conn (the
 * store connection; replaces SQLite's automatic checkpoint): background checkpoints
 * from soft WAL pages, on the store thread from 4 x soft. metrics (may be NULL):
 * parley_store_checkpoints_total{thread} and parley_store_checkpoint_seconds; the inline
 * ones are counted in store_shard (the store thread's). Returns 0 or -errno. */
int pl_store_ckpt_start(pl_store_conn_t *conn, const char *db_path, unsigned soft,
                        pl_metrics_t *metrics, pl_metrics_shard_t *store_shard,
                        pl_store_ckpt_t **out);
/* Puts SQLite's automatic checkpoint back on conn and joins the thread (after the store
 * thread stopped writing). NULL is a no-op. */
void pl_store_ckpt_stop(pl_store_conn_t *conn, pl_store_ckpt_t *k);

#endif
