/* pl_store.h: parley's persistence interface: one SQLite database file owned by one
 * store thread. Other threads never touch the database; they submit requests and get
 * the result posted back to their own thread.
 *
 * Model:
 *   - A request is a struct the requester embeds pl_store_req_t in. Its exec function
 *     runs on the store thread against the database; its done function runs on the
 *     requester's thread (through the reply target) after the batch holding it has
 *     committed, with req->status set.
 *   - Group commit: the store thread takes every queued request at once (up to
 *     batch_max) and runs them in one transaction, each inside its own SAVEPOINT so a
 *     failing request rolls back only its own changes (requests that decide before
 *     they write may go without: see no_savepoint), then commits once: one fsync
 *     (WAL, synchronous=FULL) for the whole batch. While it commits, new requests queue
 *     up and form the next batch, so the commit rate adapts to the load.
 *   - Schema migrations: each component (accounts, chat, ...) gives an ordered list of
 *     steps; pl_store_open applies the missing ones, each in its own transaction, and
 *     records the component's version in the table pl_schema_version.
 *
 * What it deliberately does not do: no read pool (reads run on the store thread inside
 * the batch, which keeps them consistent with the writes before them), no ORM, no
 * retries (a single writer never sees SQLITE_BUSY from itself).
 *
 * Threading: pl_store_submit and pl_store_submit_many: any thread. pl_store_open,
 * pl_store_close: the owner (main) thread. exec functions and everything taking a
 * pl_store_conn_t: the store thread only. */
#ifndef PL_STORE_H
#define PL_STORE_H

#include "core/pl_common.h"
#include "core/pl_config.h"
#include "core/pl_loop.h"
#include "core/pl_metrics.h"

#include <sqlite3.h>

typedef struct pl_store pl_store_t;
typedef struct pl_store_conn pl_store_conn_t;
typedef struct pl_store_req pl_store_req_t;

/* Where a finished request is sent. post must hand msg to the requester's thread, which
 * then calls msg->fn(loop_or_NULL, msg) exactly once; it is called on the store thread
 * and must not block. post == NULL means: run done on the store thread itself, right
 * after the commit (fire-and-forget writes). */
typedef struct pl_store_reply {
    void (*post)(void *target, pl_msg_t *msg);
    void *target;
} pl_store_reply_t;

/* A reply target for a thread that runs a core loop (pl_loop_post). */
pl_store_reply_t pl_store_reply_loop(pl_loop_t *loop);

/* Runs on the store thread inside the batch transaction and its own savepoint (unless
 * the request says no_savepoint). Returns 0 (or any value >= 0, handed to done as
 * status) to keep its changes, or a negative code to roll them back. Must not begin or
 * end transactions itself. */
typedef int (*pl_store_exec_fn)(pl_store_conn_t *conn, pl_store_req_t *req);
/* Runs on the requester's thread (see pl_store_reply_t); owns the request (frees it). */
typedef void (*pl_store_done_fn)(pl_store_req_t *req);

struct pl_store_req {
    pl_msg_t msg;                   /* private */
    pl_store_req_t *next;           /* private */
    uint64_t t_submit_us;           /* private: monotonic, at pl_store_submit */
    pl_store_exec_fn exec;          /* required */
    pl_store_done_fn done;          /* required */
    pl_store_reply_t reply;
    /* Out: exec's return value; PL_ECLOSED when submitted to a closed store; or the
     * commit error (negative) when the batch failed to commit, for every request in it. */
    int status;
    /* Set by a requester whose exec function decides before it writes: once it has
     * written, it fails only on a store error. Such a request runs without a savepoint
     * of its own (the statement pair and the copy of every page it changes cost a
     * busy store 8-10 % of its time). If it does fail after a write, the whole
     * transaction rolls back and every request in it gets PL_ESTATE, as when SQLite
     * aborts a transaction; a failure before any write touches nothing else. */
    bool no_savepoint;
};

/* One schema step: SQL run with sqlite3_exec (several statements allowed). */
typedef struct pl_store_migration {
    int version;                    /* 1, 2, 3... strictly ascending per component */
    const char *sql;
} pl_store_migration_t;

typedef struct pl_store_schema {
    const char *component;          /* key in pl_schema_version */
    const pl_store_migration_t *steps;
    size_t n_steps;
} pl_store_schema_t;

typedef struct pl_store_opts {
    const char *path;               /* database file; created if missing */
    const pl_store_schema_t *const *schemas;
    size_t n_schemas;
    unsigned batch_max;             /* requests per transaction; 0 = 256 */
    bool synchronous_normal;        /* false = synchronous=FULL (durable at commit) */
    unsigned checkpoint_pages;      /* WAL pages that start a background checkpoint;
                                       0 = 10000 */
    pl_metrics_t *metrics;          /* NULL: no metrics; else registers parley_store_* */
} pl_store_opts_t;

/* The [store] option table (path, batch_max, synchronous, checkpoint_pages) for the app's schema. */
extern const pl_opt_table_t pl_store_options;
/* Fills opts from a snapshot holding pl_store_options (schemas/metrics left NULL). The
 * strings are borrowed from cfg. */
void pl_store_opts_from_config(const pl_config_t *cfg, pl_store_opts_t *opts);

/* Opens (creating) the database, sets WAL and synchronous mode, applies missing
 * migrations and starts the store thread ("store"). Returns 0 and an owned *out, or
 * -errno / PL_ESTATE (cannot open, or the database has a newer schema version than this
 * build knows) / PL_EPARSE (a migration's SQL failed; the database keeps the last good
 * version). Logs the reason. */
int pl_store_open(const pl_store_opts_t *opts, pl_store_t **out);

/* Runs every request still queued, stops and joins the store thread, closes the
 * database. Requests submitted after close began get status PL_ECLOSED. */
void pl_store_close(pl_store_t *st);

/* Queues req for the store thread. Any thread. Takes ownership of req until its done
 * function runs (exactly once). Never fails: on a closed store done runs with
 * status PL_ECLOSED (through req->reply). */
void pl_store_submit(pl_store_t *st, pl_store_req_t *req);

/* ---- store thread side (inside exec) ------------------------------------------- */

/* The raw connection, for sqlite3_* calls. Borrowed. */
sqlite3 *pl_store_db(pl_store_conn_t *conn);
/* How many whole transactions the store rolled back on this connection (a failed
 * COMMIT, or SQLite aborting one under an I/O error). A component that keeps facts
 * about the database in memory compares it with the value it saw: after such a
 * rollback those facts may describe rows that are no longer there. A request's own
 * savepoint rollback (its exec returned < 0) is not counted: the request knows. */
uint64_t pl_store_conn_rollbacks(const pl_store_conn_t *conn);
/* How many rows this connection has inserted, updated or deleted in the rowid table
 * `table` (triggers and cascades included, changes later rolled back included), counted
 * from the first call naming it, which starts the count (at most PL_STORE_WATCH_MAX
 * tables; one more aborts). A component that caches facts about a table compares it
 * with the value it saw; writes by other connections are pl_store_conn_foreign_version's. */
#define PL_STORE_WATCH_MAX 4
uint64_t pl_store_conn_writes(pl_store_conn_t *conn, const char *table);
/* A value that changes whenever another connection -- another node sharing the database
 * file, an operator's tool -- has committed since it was last read; this connection's
 * own commits leave it alone ("PRAGMA data_version", read only when the pager's data
 * version moved: one file-control call otherwise). On an error it returns a value it
 * never returned before. */
uint64_t pl_store_conn_foreign_version(pl_store_conn_t *conn);
/* A prepared statement for sql, cached by the sql pointer (use string literals), reset
 * and with bindings cleared. Returns a borrowed pointer valid until exec returns (the
 * store resets it afterwards), or NULL when preparing failed (logged). */
sqlite3_stmt *pl_store_prepare(pl_store_conn_t *conn, const char *sql);
/* Steps stmt to completion expecting no rows (INSERT/UPDATE/DELETE). Returns 0, or
 * -EEXIST for a constraint violation, or PL_ESTATE for any other SQLite error (logged). */
int pl_store_step_done(pl_store_conn_t *conn, sqlite3_stmt *stmt);
/* Maps an SQLite result code to a project error (constraint -> -EEXIST, else PL_ESTATE). */
int pl_store_err(int sqlite_rc);

/* Counters for tests and /stats (any thread; atomics). */
typedef struct pl_store_stats {
    uint64_t requests;              /* executed */
    uint64_t batches;               /* transactions committed or failed */
    uint64_t commit_failures;
    uint64_t max_batch;             /* largest batch seen */
    uint64_t syncs;                 /* fdatasync calls of the WAL (synchronous=full) */
    uint64_t syncs_here;            /* ... of those, by the store thread itself: a batch
                                       with nothing queued behind it */
} pl_store_stats_t;
void pl_store_get_stats(const pl_store_t *st, pl_store_stats_t *out);

/* The schema version recorded for component (0 when none). Opens its own read
 * connection; for tests and --check-config style tools, not for the hot path. */
int pl_store_schema_version(const char *path, const char *component);

#endif
