/* chat_index.c: the lookup indexes of chat_messages, maintained in sorted runs.
 *
 * chat.history (by conversation) and chat.find (by sender) need chat_messages ordered
 * by (conv_a, conv_b, id) and by (sender_id, id). Kept as SQLite indexes they cost every
 * send two random B-tree inserts, each dirtying a leaf that the commit writes whole into
 * the WAL: with a thousand busy conversations nearly every message wrote two more 4 KiB
 * pages. So they are tables of their own (chat_ix_conv, chat_ix_sender) that trail the
 * messages: chat_ix_state.upto says up to which message id they are complete, and a
 * catch-up adds the rows above it, sorted, in one statement per table -- a leaf then
 * takes many entries per write. A catch-up runs when CHAT_IX_RUN rows have been added
 * since the last one, and before every lookup that reads the indexes, so a lookup sees
 * every committed message as before.
 *
 * Everything is in the database: a catch-up is part of the transaction of the request
 * that runs it, so a rollback takes its rows and its new upto along, and the next
 * catch-up simply does the work again (INSERT OR IGNORE: the tables are derived data, a
 * rerun is harmless). Message rows are never deleted and ids only grow (chat_schema.c),
 * so the rows above upto are exactly the ones not yet indexed. The run counter in
 * chat_t is a hint for when to catch up, never a fact about the tables.
 *
 * The idempotency index (sender_id, client_id) trails the same way (chat_ix_client, up
 * to chat_ix_state.client_upto; its catch-ups come half a run after the other two, so
 * no batch waits for all three). But a send must see every earlier client id at once,
 * so the ids above client_upto are also held in memory (chat_cids_t), and every send
 * checks the memory, then the table. The memory is a hint, never trusted alone:
 *   - a hit is checked against the message row (sender and client id), so an entry
 *     whose row is gone, or a hash collision, is no answer;
 *   - it must not miss a row above client_upto. It gets this node's inserts as they
 *     happen, and rows other connections committed (nodes sharing the database file)
 *     by a scan of the rows above the highest one scanned (or the index's upto, if
 *     higher) whenever another connection has committed (pl_store_conn_foreign_version;
 *     this node's own commits need no scan). The scan's mark only moves to rows it read -- committed, or released by an
 *     earlier request of the same transaction -- never to an id inserted by a request
 *     that may still roll back (ids are max + 1: a rolled-back id is used again);
 *   - entries are dropped only at or below the client_upto the database holds when a
 *     send starts, which a catch-up rolled back with its request no longer claims;
 *   - when the store rolls back a whole transaction (pl_store_conn_rollbacks), the
 *     memory is rebuilt from the rows above client_upto.
 * The unique index it replaces cost every send a random insert into a B-tree that only
 * grows: half the WAL frames of a commit (docs/BENCHMARKS.md).
 *
 * Threading: store thread only. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

static int64_t query_int(pl_store_conn_t *conn, const char *sql)
{
    sqlite3_stmt *st = pl_store_prepare(conn, sql);
    if (!st)
        return PL_ESTATE;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return sqlite3_column_int64(st, 0);
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

static int add_range(pl_store_conn_t *conn, const char *sql, int64_t from, int64_t to)
{
    sqlite3_stmt *st = pl_store_prepare(conn, sql);
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    return pl_store_step_done(conn, st);
}

/* One mark in chat_ix_state and the tables complete up to it. */
typedef struct ix_set {
    const char *get_upto;
    const char *set_upto;               /* ?1 the old mark, ?2 the new one */
    const char *const *adds;            /* NULL-terminated; ?1 < id <= ?2 */
} ix_set_t;

/* Receipts held for away devices (kind 2) are nobody's conversation; find covers
 * messages only (kind 0). */
static const char *const history_adds[] = {
    "INSERT OR IGNORE INTO chat_ix_conv(conv_a, conv_b, id) SELECT conv_a, conv_b, id"
    " FROM chat_messages WHERE id > ?1 AND id <= ?2 AND kind <> 2"
    " ORDER BY conv_a, conv_b, id",
    "INSERT OR IGNORE INTO chat_ix_sender(sender_id, id) SELECT sender_id, id"
    " FROM chat_messages WHERE id > ?1 AND id <= ?2 AND kind = 0"
    " ORDER BY sender_id, id",
    NULL,
};
static const ix_set_t history_set = {
    "SELECT upto FROM chat_ix_state WHERE id = 1",
    "UPDATE chat_ix_state SET upto = ?2 WHERE id = 1 AND upto = ?1",
    history_adds,
};

static const char *const client_adds[] = {
    "INSERT OR IGNORE INTO chat_ix_client(sender_id, client_id, id)"
    " SELECT sender_id, client_id, id FROM chat_messages"
    " WHERE id > ?1 AND id <= ?2 AND client_id IS NOT NULL"
    " ORDER BY sender_id, client_id, id",
    NULL,
};
static const ix_set_t client_set = {
    "SELECT client_upto FROM chat_ix_state WHERE id = 1",
    "UPDATE chat_ix_state SET client_upto = ?2 WHERE id = 1 AND client_upto = ?1",
    client_adds,
};

/* Adds the rows above the set's mark to its tables and moves the mark; *run restarts. */
static int catch_up(chat_t *c, pl_store_conn_t *conn, const ix_set_t *set, unsigned *run)
{
    int64_t upto = query_int(conn, set->get_upto);
    int64_t top = upto < 0 ? upto : query_int(conn, "SELECT max(id) FROM chat_messages");
    if (top < 0)
        return (int)top;
    *run = 0;
    if (top <= upto)
        return 0;
    uint64_t t0 = pl_now_mono_us();
    int rc = 0;
    for (const char *const *sql = set->adds; rc == 0 && *sql; sql++)
        rc = add_range(conn, *sql, upto, top);
    if (rc == 0)
        rc = add_range(conn, set->set_upto, upto, top);
    if (rc < 0)
        return rc;
    pl_metric_add(c->shard, c->m.ix_rows, (uint64_t)(top - upto));
    pl_metric_observe(c->shard, c->m.ix_seconds, (double)(pl_now_mono_us() - t0) / 1e6);
    return 0;
}

int chat_ix_catch_up(chat_t *c, pl_store_conn_t *conn)
{
    return catch_up(c, conn, &history_set, &c->ix_run);
}

int chat_cid_catch_up(chat_t *c, pl_store_conn_t *conn)
{
    return catch_up(c, conn, &client_set, &c->cid_run);
}

int chat_ix_added(chat_t *c, pl_store_conn_t *conn)
{
    /* The two catch-ups come half a run apart (chat_init starts cid_run there), so no
     * batch waits for both. */
    if (++c->cid_run >= CHAT_IX_RUN) {
        int rc = chat_cid_catch_up(c, conn);
        if (rc < 0)
            return rc;
    }
    if (++c->ix_run < CHAT_IX_RUN)
        return 0;
    return chat_ix_catch_up(c, conn);
}

/* ---- client ids above the index --------------------------------------------------- */

typedef struct chat_cid {
    struct chat_cid *next;
    uint64_t id;
} chat_cid_t;

static uint64_t cid_key(uint64_t sender, const char *client_id)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (sender * 0x9E3779B97F4A7C15ull);   /* FNV-1a */
    for (const char *p = client_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    return h | 1;                                                       /* never empty */
}

static void cids_add(chat_cids_t *s, uint64_t key, uint64_t id)
{
    chat_cid_t *head = chat_map_get(&s->map, key);
    for (chat_cid_t *e = head; e; e = e->next)
        if (e->id == id)
            return;
    chat_cid_t *e = pl_xmalloc(sizeof(*e));
    e->id = id;
    e->next = head;
    chat_map_put(&s->map, key, e);
    s->n++;
}

static void cids_clear(chat_cids_t *s)
{
    for (size_t i = 0; i < s->map.cap; i++)
        if (s->map.keys[i])
            for (chat_cid_t *e = s->map.vals[i], *n; e; e = n) {
                n = e->next;
                free(e);
            }
    chat_map_deinit(&s->map);
    chat_map_init(&s->map);
    s->n = 0;
}

/* Drops the ids <= upto: chat_ix_client has them. */
static void cids_prune(chat_cids_t *s, int64_t upto)
{
    chat_map_t old = s->map;
    chat_map_init(&s->map);
    s->n = 0;
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.keys[i])
            continue;
        for (chat_cid_t *e = old.vals[i], *n; e; e = n) {
            n = e->next;
            if ((int64_t)e->id > upto)
                cids_add(s, old.keys[i], e->id);
            free(e);
        }
    }
    chat_map_deinit(&old);
}

/* Reads the rows above the scan mark into the memory. */
static int cids_scan(chat_cids_t *s, pl_store_conn_t *conn)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT id, sender_id, client_id FROM chat_messages WHERE id > ?1 ORDER BY id");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, s->scan_hw);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const char *cid = (const char *)sqlite3_column_text(st, 2);
        if (cid)
            cids_add(s, cid_key((uint64_t)sqlite3_column_int64(st, 1), cid), (uint64_t)id);
        s->scan_hw = id;
    }
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

/* Makes the memory hold every client id above the index's upto (see the top). */
static int cids_sync(chat_t *c, pl_store_conn_t *conn)
{
    if (!c->cids) {
        c->cids = pl_xcalloc(1, sizeof(*c->cids));
        chat_map_init(&c->cids->map);
    }
    chat_cids_t *s = c->cids;
    uint64_t epoch = pl_store_conn_rollbacks(conn);
    if (!s->built || s->epoch != epoch) {
        int64_t upto = query_int(conn, client_set.get_upto);
        if (upto < 0)
            return (int)upto;
        cids_clear(s);
        s->scan_hw = upto;
        s->epoch = epoch;
        s->built = true;
        s->fv_valid = false;
        s->prune_at = 2 * CHAT_IX_RUN;
    } else if (s->n > s->prune_at) {
        int64_t upto = query_int(conn, client_set.get_upto);
        if (upto < 0)
            return (int)upto;
        cids_prune(s, upto);
        /* The rows up to upto are in the table: a scan need not read them. */
        s->scan_hw = PL_MAX(s->scan_hw, upto);
        /* Not again before another run's worth was added (with several nodes adding,
         * the catch-up may lag this node's count). */
        s->prune_at = PL_MAX((size_t)2 * CHAT_IX_RUN, s->n + CHAT_IX_RUN);
    }
    uint64_t fv = pl_store_conn_foreign_version(conn);
    if (s->fv_valid && fv == s->fv)
        return 0;
    int rc = cids_scan(s, conn);
    if (rc == 0) {
        s->fv = fv;
        s->fv_valid = true;
    }
    return rc;
}

static int row_created(pl_store_conn_t *conn, uint64_t id, uint64_t sender,
                       const char *client_id, uint64_t *created_at)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT created_at FROM chat_messages WHERE id = ?1 AND sender_id = ?2"
        " AND client_id = ?3");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)sender);
    sqlite3_bind_text(st, 3, client_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *created_at = (uint64_t)sqlite3_column_int64(st, 0);
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

int chat_cid_find(chat_t *c, pl_store_conn_t *conn, uint64_t sender, const char *client_id,
                  uint64_t *id, uint64_t *created_at)
{
    int rc = cids_sync(c, conn);
    if (rc < 0)
        return rc;
    for (chat_cid_t *e = chat_map_get(&c->cids->map, cid_key(sender, client_id)); e;
         e = e->next) {
        if ((rc = row_created(conn, e->id, sender, client_id, created_at)) != 0) {
            *id = e->id;
            return rc;
        }
    }
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT m.id, m.created_at FROM chat_ix_client x JOIN chat_messages m ON m.id = x.id"
        " WHERE x.sender_id = ?1 AND x.client_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)sender);
    sqlite3_bind_text(st, 2, client_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = (uint64_t)sqlite3_column_int64(st, 0);
        *created_at = (uint64_t)sqlite3_column_int64(st, 1);
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

void chat_cid_added(chat_t *c, uint64_t sender, const char *client_id, uint64_t id)
{
    if (c->cids && c->cids->built)
        cids_add(c->cids, cid_key(sender, client_id), id);
}

void chat_cids_free(chat_t *c)
{
    if (!c->cids)
        return;
    cids_clear(c->cids);
    chat_map_deinit(&c->cids->map);
    free(c->cids);
    c->cids = NULL;
}
