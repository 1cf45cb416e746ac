/* chat_deliver.c: getting queued envelopes to devices, in order, at most a window
 * ahead of the device's acknowledgements.
 *
 * A device is "synced" on a connection after chat.sync. From then on, each device has
 * one delivery cursor (pushed_upto) and a count of pushed-but-unacknowledged
 * envelopes (inflight). While the backlog lasts the device is "paging": envelopes are
 * read from its queue to fill the window, again whenever acknowledgements have made
 * room for at least a page; when a page comes back short the backlog is over, chat.queue_empty
 * is pushed once, and new messages are pushed live as they commit. A device that lets
 * its window fill up (not acknowledging) drops back to paging, so a slow client never
 * has more than `window` envelopes in flight and never overflows its send queue.
 *
 * Redelivery: a new connection starts at cursor 0, so whatever was pushed on an old
 * connection and not acknowledged comes again exactly once per connection; an
 * acknowledged envelope is deleted in the same transaction, so it never comes again.
 *
 * Devices on other nodes (with a router): new envelopes for a device with no
 * connection here are also routed to it, best effort; its own node reads the queue
 * when it syncs.
 *
 * What it does not do: acknowledgements (chat_ack.c), message validation (chat_send.c).
 *
 * Threading: the store thread, except the hook entry points (gateway threads), which
 * only make and submit ops. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

int64_t chat_deliver_queued(chat_op_t *op, pl_store_conn_t *conn, chat_dev_t *d)
{
    PL_UNUSED(op);
    if (d->queued >= 0)
        return d->queued;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT count(*) FROM chat_envelopes WHERE device_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)d->device_id);
    if (sqlite3_step(st) != SQLITE_ROW)
        return PL_ESTATE;
    d->queued = sqlite3_column_int64(st, 0);
    return d->queued;
}

int chat_deliver_full(chat_op_t *op, pl_store_conn_t *conn, chat_dev_t *d)
{
    int64_t q = chat_deliver_queued(op, conn, d);
    if (q >= 0 && (uint64_t)q >= op->lim.queue_max) {
        /* Before refusing, count again: with several nodes on one database the cached
         * length only ever sees this node's sends, not the other nodes' acks. */
        d->queued = -1;
        q = chat_deliver_queued(op, conn, d);
    }
    return q < 0 ? (int)q : (uint64_t)q >= op->lim.queue_max;
}

static void push_one(chat_op_t *op, chat_dev_t *d, const chat_msgdata_t *md,
                     chat_body_t *body)
{
    chat_push_message(op, d->conn_id, md, body);
    d->inflight++;
    d->pushed_upto = md->message_id;
    pl_metric_inc(op->chat->shard, op->chat->m.pushed);
}

void chat_deliver_new(chat_op_t *op, chat_dev_t *d, const chat_msgdata_t *md,
                      const char *text, chat_body_t **body)
{
    chat_t *c = op->chat;
    if (d->queued >= 0)
        d->queued++;
    bool live = d->conn_id && !d->paging && d->inflight < op->lim.window;
    bool routed = !d->conn_id && c->router && d->account_id &&
                  !pl_sig_device_conn(c->gw, d->device_id);
    if (d->conn_id && !live)
        d->paging = true;           /* the next page picks it up */
    if (!live && !routed)
        return;
    if (!*body)
        *body = chat_body_new(text ? text : "");
    if (live) {
        push_one(op, d, md, *body);
    } else {
        chat_push_t *p = chat_push_message(op, 0, md, *body);
        p->route_account = d->account_id;
        p->route_device = d->device_id;
    }
}

/* A row of the page query; account is the receiving device's. */
static void row_to_md(sqlite3_stmt *st, uint64_t account, chat_msgdata_t *md)
{
    memset(md, 0, sizeof(*md));
    md->message_id = (uint64_t)sqlite3_column_int64(st, 0);
    md->ctype = sqlite3_column_int(st, 1);
    md->event = sqlite3_column_int(st, 3) != 0;    /* 1 event, 2 receipts event */
    md->from_id = (uint64_t)sqlite3_column_int64(st, 4);
    md->from_device = (uint64_t)sqlite3_column_int64(st, 5);
    md->group_id = (uint64_t)sqlite3_column_int64(st, 6);
    snprintf(md->client_id, sizeof(md->client_id), "%s", chat_sql_text(st, 7));
    md->sent_at = (uint64_t)sqlite3_column_int64(st, 8);
    snprintf(md->from, sizeof(md->from), "%s", chat_sql_text(st, 9));
    /* A copy of one's own direct message says who it went to. */
    if (!md->event && !md->group_id && md->from_id == account)
        snprintf(md->to, sizeof(md->to), "%s", chat_sql_text(st, 10));
}

int chat_deliver_page(chat_op_t *op, pl_store_conn_t *conn, chat_dev_t *d)
{
    uint32_t window = op->lim.window, page = PL_MIN(op->lim.page, op->lim.window);
    /* Read when at least a page fits, then fill the window: fewer, larger reads. */
    if (!d->conn_id || !d->paging || d->inflight + page > window)
        return 0;
    uint32_t want = window - d->inflight;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT e.message_id, e.ctype, COALESCE(e.body, m.body), m.kind, m.sender_id,"
        " m.sender_device, m.group_id, m.client_id, m.created_at, a.username, p.username"
        " FROM chat_envelopes e JOIN chat_messages m ON m.id = e.message_id"
        " LEFT JOIN accounts a ON a.id = m.sender_id LEFT JOIN accounts p ON p.id = m.peer_id"
        " WHERE e.device_id = ?1 AND e.message_id > ?2 AND e.expires_at > ?3"
        " ORDER BY e.message_id LIMIT ?4");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)d->device_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)d->pushed_upto);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->now_ms);
    sqlite3_bind_int(st, 4, (int)want);
    uint32_t got = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        chat_msgdata_t md;
        row_to_md(st, d->account_id, &md);
        chat_body_t *b = chat_body_new(chat_sql_text(st, 2));
        push_one(op, d, &md, b);
        chat_body_unref(b);
        got++;
    }
    if (rc != SQLITE_DONE)
        return PL_ESTATE;
    if (got < want) {
        d->paging = false;
        if (!d->empty_sent) {
            chat_push_empty(op, d->conn_id);
            d->empty_sent = true;
        }
    }
    return 0;
}

/* ---- chat.sync --------------------------------------------------------------------- */

static int count_prekeys(pl_store_conn_t *conn, uint64_t device_id)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT count(*) FROM chat_prekeys WHERE device_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)device_id);
    return sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : PL_ESTATE;
}

static int exec_sync(chat_op_t *op, pl_store_conn_t *conn)
{
    chat_t *c = op->chat;
    chat_dev_t *d = chat_mem_dev(c->mem, op->device_id, true);
    d->account_id = op->account_id;
    int64_t queued = chat_deliver_queued(op, conn, d);
    int prekeys = count_prekeys(conn, op->device_id);
    if (queued < 0 || prekeys < 0)
        return PL_ESTATE;
    chat_mem_set_synced(c->mem, d, op->conn_id);
    int rc = chat_deliver_page(op, conn, d);
    if (rc < 0)
        return rc;
    json_object_set_new(chat_op_result(op), "queued", json_integer(queued));
    json_object_set_new(op->result, "one_time_prekeys", json_integer(prekeys));
    json_object_set_new(op->result, "window", json_integer(op->lim.window));
    return 0;
}

static void h_sync(pl_sig_req_t *req, void *arg)
{
    chat_op_submit(chat_op_new(arg, req, exec_sync));
}

/* ---- connection hooks -------------------------------------------------------------- */

static int exec_conn_up(chat_op_t *op, pl_store_conn_t *conn)
{
    chat_t *c = op->chat;
    chat_dev_t *d = chat_mem_dev(c->mem, op->device_id, true);
    d->account_id = op->account_id;
    chat_acct_t *a = chat_mem_acct(c->mem, op->account_id, true);
    if (a->n_conns++ == 0)
        chat_presence_changed(op, conn, op->account_id, true, op->now_ms);
    return 0;
}

static int exec_conn_down(chat_op_t *op, pl_store_conn_t *conn)
{
    chat_t *c = op->chat;
    uint64_t conn_id = op->u64[0];
    chat_dev_t *d = chat_mem_dev(c->mem, op->device_id, false);
    if (d && d->conn_id == conn_id)
        chat_mem_set_synced(c->mem, d, 0);
    if (d && d->watch_conn == conn_id)
        chat_mem_unwatch_all(c->mem, d);
    chat_acct_t *a = chat_mem_acct(c->mem, op->account_id, false);
    if (a && a->n_conns > 0 && --a->n_conns == 0) {
        sqlite3_stmt *st = pl_store_prepare(conn,
            "INSERT INTO chat_settings(account_id, last_seen_at) VALUES (?1, ?2)"
            " ON CONFLICT(account_id) DO UPDATE SET last_seen_at = excluded.last_seen_at");
        if (!st)
            return PL_ESTATE;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)op->now_ms);
        int rc = pl_store_step_done(conn, st);
        if (rc < 0)
            return rc;
        chat_presence_changed(op, conn, op->account_id, false, op->now_ms);
    }
    return 0;
}

static chat_op_t *conn_op(chat_t *c, const pl_sig_conn_info_t *ci, chat_exec_fn exec)
{
    chat_op_t *op = chat_op_new_internal(c, exec);
    op->account_id = ci->account_id;
    op->device_id = ci->device_id;
    op->u64[0] = ci->conn_id;
    return op;
}

void chat_deliver_conn_up(chat_t *c, const pl_sig_conn_info_t *ci)
{
    chat_op_submit(conn_op(c, ci, exec_conn_up));
}

void chat_deliver_conn_down(chat_t *c, const pl_sig_conn_info_t *ci)
{
    chat_op_submit(conn_op(c, ci, exec_conn_down));
}

const pl_sig_handler_t chat_sync_handlers[] = {
    { "chat.sync", h_sync, true, NULL, 0 },
};
const size_t chat_sync_n_handlers = PL_ARRAY_LEN(chat_sync_handlers);
