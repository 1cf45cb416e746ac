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
 * The idempotency index (sender_id, client_id) stays a real unique index: a send must
 * see every earlier client id at once.
 *
 * Threading: store thread only. */
#include "chat/chat_int.h"

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

int chat_ix_catch_up(chat_t *c, pl_store_conn_t *conn)
{
    int64_t upto = query_int(conn, "SELECT upto FROM chat_ix_state WHERE id = 1");
    int64_t top = upto < 0 ? upto : query_int(conn, "SELECT max(id) FROM chat_messages");
    if (top < 0)
        return (int)top;
    c->ix_run = 0;
    if (top <= upto)
        return 0;
    uint64_t t0 = pl_now_mono_us();
    /* Receipts held for away devices (kind 2) are nobody's conversation; find covers
     * messages only (kind 0). */
    int rc = add_range(conn,
        "INSERT OR IGNORE INTO chat_ix_conv(conv_a, conv_b, id) SELECT conv_a, conv_b, id"
        " FROM chat_messages WHERE id > ?1 AND id <= ?2 AND kind <> 2"
        " ORDER BY conv_a, conv_b, id", upto, top);
    if (rc == 0)
        rc = add_range(conn,
            "INSERT OR IGNORE INTO chat_ix_sender(sender_id, id) SELECT sender_id, id"
            " FROM chat_messages WHERE id > ?1 AND id <= ?2 AND kind = 0"
            " ORDER BY sender_id, id", upto, top);
    if (rc == 0)
        rc = add_range(conn, "UPDATE chat_ix_state SET upto = ?2 WHERE id = 1 AND upto = ?1",
                       upto, top);
    if (rc < 0)
        return rc;
    pl_metric_add(c->shard, c->m.ix_rows, (uint64_t)(top - upto));
    pl_metric_observe(c->shard, c->m.ix_seconds, (double)(pl_now_mono_us() - t0) / 1e6);
    return 0;
}

int chat_ix_added(chat_t *c, pl_store_conn_t *conn)
{
    if (++c->ix_run < CHAT_IX_RUN)
        return 0;
    return chat_ix_catch_up(c, conn);
}
