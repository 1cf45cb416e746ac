/* chat_ack.c: acknowledgements and receipts.
 *
 *   chat.ack {upto? | message_ids?}   -> chat.ack.result {acked} (only with an "id")
 *   chat.read {message_ids}           -> chat.read.result {read}
 *   push chat.receipt {receipts: [{message_id, status, user, at, group_id?, all?}]}
 *   push chat.reads {message_ids, at, device_id}     to the reader's other devices
 *
 * An acknowledgement deletes the device's own envelopes (a device can only name its
 * own queue: the device id comes from the session, not the frame) in the same
 * transaction that records "delivered" -- so an acknowledged envelope is never
 * delivered again, and the ciphertext is gone once every device has it (the schema's
 * trigger). The first device of a recipient to acknowledge makes the message
 * "delivered" (two ticks); reading makes it "read", unless the reader or the sender
 * switched read receipts off (direct messages only: groups always report reads, as
 * WhatsApp does). Receipts go to every device of the sender, the sending one included
 * (queued as a "receipts" event for the devices that are away: chat_event.c);
 * the reader's other devices get chat.reads (what this device just read).
 *
 * What it does not do: status queries (chat_query.c).
 *
 * Threading: handlers on the gateway thread; exec functions on the store thread. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

/* Receipts collected during one exec, grouped by the sender they go to. */
typedef struct rvec {
    chat_receipt_t *v;
    size_t n, cap;
} rvec_t;

typedef struct receipts {
    chat_map_t by_sender;           /* account id -> rvec_t */
} receipts_t;

static void receipts_add(receipts_t *r, uint64_t sender, chat_receipt_t item)
{
    rvec_t *vec = chat_map_get(&r->by_sender, sender);
    if (!vec) {
        vec = pl_xcalloc(1, sizeof(*vec));
        chat_map_put(&r->by_sender, sender, vec);
    }
    if (vec->n == vec->cap) {
        vec->cap = vec->cap ? vec->cap * 2 : 8;
        vec->v = pl_xrealloc(vec->v, vec->cap * sizeof(*vec->v));
    }
    vec->v[vec->n++] = item;
}

/* Sends the receipts (when op is given: live, and queued for devices that are away)
 * and frees them. Returns 0 or a negative store error. */
static int receipts_done(chat_op_t *op, pl_store_conn_t *conn, receipts_t *r)
{
    int rc = 0;
    for (size_t i = 0; i < r->by_sender.cap; i++) {
        rvec_t *vec = r->by_sender.slots[i].key ? r->by_sender.slots[i].val : NULL;
        if (!vec)
            continue;
        if (op && rc >= 0)
            rc = chat_receipts_send(op, conn, r->by_sender.slots[i].key, vec->v, vec->n,
                                    op->username);
        free(vec->v);
        free(vec);
    }
    chat_map_deinit(&r->by_sender);
    return rc;
}

static void receipts_drop(receipts_t *r)
{
    receipts_done(NULL, NULL, r);
}

static chat_receipt_t receipt(chat_op_t *op, uint64_t message_id, int status,
                              uint64_t group_id)
{
    return (chat_receipt_t){ .message_id = message_id, .group_id = group_id,
                             .at = op->now_ms, .status = (uint8_t)status };
}

/* The columns of message id's row after an update: sender_id, group_id, undelivered,
 * unread.
 * (A separate rowid look-up rather than RETURNING, which SQLite runs through an
 * ephemeral table of its own per execution: a B-tree and pager opened and closed for
 * every acknowledged message.) Returns 1 with the row in *st, 0 if it is gone, < 0. */
static int message_after(pl_store_conn_t *conn, uint64_t id, sqlite3_stmt **st)
{
    *st = pl_store_prepare(conn,
        "SELECT sender_id, group_id, undelivered, unread FROM chat_messages WHERE id = ?1");
    if (!*st)
        return PL_ESTATE;
    sqlite3_bind_int64(*st, 1, (sqlite3_int64)id);
    int rc = sqlite3_step(*st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

/* A group member's status moved (delivered or read): updates the message's counters
 * and reports the member, plus "all" when every member got there. */
static int group_progress(chat_op_t *op, pl_store_conn_t *conn, receipts_t *r, uint64_t id,
                          bool read, bool was_delivered)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "UPDATE chat_messages SET undelivered = undelivered - ?2, unread = unread - ?3"
        " WHERE id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int(st, 2, was_delivered ? 0 : 1);
    sqlite3_bind_int(st, 3, read ? 1 : 0);
    int rc = pl_store_step_done(conn, st);
    if (rc < 0)
        return rc;
    if ((rc = message_after(conn, id, &st)) <= 0)
        return rc < 0 ? rc : PL_ESTATE;
    uint64_t sender = (uint64_t)sqlite3_column_int64(st, 0);
    uint64_t group = (uint64_t)sqlite3_column_int64(st, 1);
    int64_t left = sqlite3_column_int64(st, read ? 3 : 2);
    chat_receipt_t o = receipt(op, id, read ? CHAT_RCPT_READ : CHAT_RCPT_DELIVERED, group);
    o.all = left == 0;
    receipts_add(r, sender, o);
    return 0;
}

/* An envelope of message id left this device's queue by acknowledgement: one fewer
 * pending (a group's ciphertext goes with the last), and "delivered" when this is the
 * recipient's (or group member's) first device. The common case -- a direct message's
 * first device -- is one update, plus a look-up of the sender when the caller does not
 * know it (sender 0). */
static int settle_ack(chat_op_t *op, pl_store_conn_t *conn, receipts_t *r, uint64_t id,
                      uint64_t sender)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "UPDATE chat_messages SET pending = pending - 1, delivered_at = ?2 WHERE id = ?1"
        " AND peer_id = ?3 AND delivered_at IS NULL");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->now_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->account_id);
    int rc = pl_store_step_done(conn, st);
    if (rc < 0)
        return rc;
    if (sqlite3_changes(pl_store_db(conn)) > 0) {
        if (!sender) {
            if ((rc = message_after(conn, id, &st)) <= 0)
                return rc < 0 ? rc : PL_ESTATE;
            sender = (uint64_t)sqlite3_column_int64(st, 0);
        }
        receipts_add(r, sender, receipt(op, id, CHAT_RCPT_DELIVERED, 0));
        return 0;
    }
    st = pl_store_prepare(conn,
        "UPDATE chat_group_status SET delivered_at = ?2 WHERE message_id = ?1"
        " AND member_id = ?3 AND delivered_at IS NULL");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->now_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->account_id);
    if ((rc = pl_store_step_done(conn, st)) < 0)
        return rc;
    int first = sqlite3_changes(pl_store_db(conn)) > 0;
    st = pl_store_prepare(conn,
        "UPDATE chat_messages SET pending = pending - 1, undelivered = undelivered - ?2,"
        " body = CASE WHEN pending <= 1 AND kind != 1 THEN NULL ELSE body END"
        " WHERE id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int(st, 2, first);
    if ((rc = pl_store_step_done(conn, st)) < 0)
        return rc;
    if (!first)
        return 0;
    /* a group member's first device (events have no statuses) */
    if ((rc = message_after(conn, id, &st)) <= 0)
        return rc;
    chat_receipt_t o = receipt(op, id, CHAT_RCPT_DELIVERED, (uint64_t)sqlite3_column_int64(st, 1));
    o.all = sqlite3_column_int64(st, 2) == 0;
    receipts_add(r, (uint64_t)sqlite3_column_int64(st, 0), o);
    return 0;
}

/* ---- chat.ack ------------------------------------------------------------------------ */

/* The envelopes in ids[] (from senders[], 0 when not known) left device d's queue:
 * settles each message. */
static int ack_deleted(chat_op_t *op, pl_store_conn_t *conn, chat_dev_t *d, receipts_t *r,
                       const uint64_t *ids, const uint64_t *senders, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        op->u64[0]++;
        if (d->queued > 0)
            d->queued--;
        if (ids[i] <= d->pushed_upto && d->inflight > 0)
            d->inflight--;
        int e = settle_ack(op, conn, r, ids[i], senders[i]);
        if (e < 0)
            return e;
    }
    return 0;
}

/* Deletes this device's envelope of message id (by its whole key: SQLite deletes in
 * one pass, where a range delete first collects the keys in an ephemeral table). */
static int delete_envelope(chat_op_t *op, pl_store_conn_t *conn, uint64_t id)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "DELETE FROM chat_envelopes WHERE device_id = ?1 AND message_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->device_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    return pl_store_step_done(conn, st);
}

/* Up to this many envelopes an acknowledgement deletes one by one. */
#define ACK_DELETE_EACH 8

/* Acknowledgement up to a cursor: the queued ids up to it with their senders (one
 * range read of the envelopes, which name the sender; 0 from an older row is looked
 * up by settle_ack), then one range delete. Returns 0 or < 0. */
static int ack_upto(chat_op_t *op, pl_store_conn_t *conn, chat_dev_t *d, receipts_t *r)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT message_id, sender_id FROM chat_envelopes"
        " WHERE device_id = ?1 AND message_id <= ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->device_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->target);
    uint64_t small[2][64], *ids = small[0], *senders = small[1];
    size_t n = 0, cap = PL_ARRAY_LEN(small[0]);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            uint64_t *ni = pl_xmalloc(2 * cap * sizeof(*ids)), *ns = pl_xmalloc(2 * cap * sizeof(*ids));
            memcpy(ni, ids, n * sizeof(*ids));
            memcpy(ns, senders, n * sizeof(*ids));
            if (ids != small[0]) {
                free(ids);
                free(senders);
            }
            ids = ni;
            senders = ns;
            cap *= 2;
        }
        ids[n] = (uint64_t)sqlite3_column_int64(st, 0);
        senders[n++] = (uint64_t)sqlite3_column_int64(st, 1);
    }
    rc = rc == SQLITE_DONE ? 0 : PL_ESTATE;
    if (rc == 0 && n > ACK_DELETE_EACH) {
        st = pl_store_prepare(conn,
            "DELETE FROM chat_envelopes WHERE device_id = ?1 AND message_id <= ?2");
        if (!st)
            rc = PL_ESTATE;
        else {
            sqlite3_bind_int64(st, 1, (sqlite3_int64)op->device_id);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)op->target);
            rc = pl_store_step_done(conn, st);
        }
    }
    for (size_t i = 0; rc == 0 && n <= ACK_DELETE_EACH && i < n; i++)
        rc = delete_envelope(op, conn, ids[i]);
    if (rc == 0)
        rc = ack_deleted(op, conn, d, r, ids, senders, n);
    if (ids != small[0]) {
        free(ids);
        free(senders);
    }
    return rc;
}

/* Acknowledgement of one message id. Returns 0 or < 0. */
static int ack_one(chat_op_t *op, pl_store_conn_t *conn, chat_dev_t *d, receipts_t *r,
                   uint64_t id)
{
    int rc = delete_envelope(op, conn, id);
    if (rc < 0 || sqlite3_changes(pl_store_db(conn)) == 0)
        return rc;
    uint64_t unknown = 0;
    return ack_deleted(op, conn, d, r, &id, &unknown, 1);
}

static int exec_ack(chat_op_t *op, pl_store_conn_t *conn)
{
    chat_dev_t *d = chat_mem_dev(op->chat->mem, op->device_id, true);
    d->account_id = op->account_id;
    receipts_t r;
    chat_map_init(&r.by_sender);
    int rc = 0;
    if (op->target)
        rc = ack_upto(op, conn, d, &r);
    for (size_t i = 0; rc >= 0 && i < op->n_envs; i++)
        rc = ack_one(op, conn, d, &r, op->envs[i].device_id);
    if (rc >= 0)
        rc = chat_deliver_page(op, conn, d);
    if (rc < 0) {
        receipts_drop(&r);
        return rc;
    }
    pl_metric_add(op->chat->shard, op->chat->m.acked, op->u64[0]);
    return receipts_done(op, conn, &r);
}

static void finish_ack(chat_op_t *op, json_t *f)
{
    json_object_set_new(f, "acked", json_integer((json_int_t)op->u64[0]));
}

/* Reads "message_ids" into op->envs[].device_id (reused as a plain id list). Returns
 * 0, or -1 after replying. */
static int parse_ids(pl_sig_req_t *req, chat_op_t *op, bool required)
{
    json_t *arr = json_object_get(req->frame, "message_ids");
    if (!arr && !required)
        return 0;
    uint64_t *ids = NULL;
    long n = arr ? chat_ids_from_json(arr, CHAT_IDS_MAX, &ids) : -1;
    if (n < 0 || (required && n == 0)) {
        chat_reply_bad_field(req, "field \"message_ids\": 1-%d message ids", CHAT_IDS_MAX);
        free(ids);
        return -1;
    }
    op->envs = pl_xcalloc((size_t)n + 1, sizeof(*op->envs));
    op->n_envs = (size_t)n;
    for (long i = 0; i < n; i++)
        op->envs[i].device_id = ids[i];
    free(ids);
    return 0;
}

static void h_ack(pl_sig_req_t *req, void *arg)
{
    chat_op_t *op = chat_op_new_bare(arg, req, exec_ack);
    op->req.no_savepoint = true;        /* fails only on store errors */
    op->target = (uint64_t)json_integer_value(json_object_get(req->frame, "upto"));
    op->finish = finish_ack;
    /* Without an id an acknowledgement is fire-and-forget: a busy client saves a frame
     * per ack (docs/PROTOCOL.md); with one, the result says it is committed. */
    op->quiet = req->id == NULL;
    if (parse_ids(req, op, false) < 0) {
        chat_op_free(op);
        return;
    }
    if (!json_object_get(req->frame, "upto") && op->n_envs == 0) {
        chat_reply_bad_field(req, "one of \"upto\" and \"message_ids\" is required");
        chat_op_free(op);
        return;
    }
    chat_op_submit(op);
}

/* ---- chat.read --------------------------------------------------------------------- */

typedef struct read_target {
    uint64_t id, sender, group;
    bool delivered, read;
} read_target_t;

/* Whether the reader may mark id read; fills t. 1 yes, 0 no, < 0 error. */
static int read_lookup(chat_op_t *op, pl_store_conn_t *conn, uint64_t id, read_target_t *t)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT m.sender_id, m.group_id, m.peer_id, m.delivered_at IS NOT NULL,"
        " m.read_at IS NOT NULL, s.delivered_at IS NOT NULL, s.read_at IS NOT NULL,"
        " s.member_id IS NOT NULL FROM chat_messages m LEFT JOIN chat_group_status s"
        " ON s.message_id = m.id AND s.member_id = ?2 WHERE m.id = ?1 AND m.kind = 0");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return PL_ESTATE;
    t->id = id;
    t->sender = (uint64_t)sqlite3_column_int64(st, 0);
    t->group = (uint64_t)sqlite3_column_int64(st, 1);
    if (t->group) {
        t->delivered = sqlite3_column_int(st, 5);
        t->read = sqlite3_column_int(st, 6);
        return sqlite3_column_int(st, 7);
    }
    t->delivered = sqlite3_column_int(st, 3);
    t->read = sqlite3_column_int(st, 4);
    return (uint64_t)sqlite3_column_int64(st, 2) == op->account_id;
}

static int read_direct(chat_op_t *op, pl_store_conn_t *conn, receipts_t *r,
                       const read_target_t *t, bool mine_on)
{
    int priv;
    bool theirs_on = true;
    uint64_t seen;
    if (chat_sql_settings(conn, t->sender, &priv, &theirs_on, &seen) < 0)
        return PL_ESTATE;
    bool report = mine_on && theirs_on;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "UPDATE chat_messages SET delivered_at = COALESCE(delivered_at, ?2),"
        " read_at = CASE WHEN ?3 THEN ?2 ELSE read_at END WHERE id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)t->id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->now_ms);
    sqlite3_bind_int(st, 3, report);
    int rc = pl_store_step_done(conn, st);
    if (rc < 0)
        return rc;
    if (report)
        receipts_add(r, t->sender, receipt(op, t->id, CHAT_RCPT_READ, 0));
    else if (!t->delivered)
        receipts_add(r, t->sender, receipt(op, t->id, CHAT_RCPT_DELIVERED, 0));
    return 0;
}

static int read_group(chat_op_t *op, pl_store_conn_t *conn, receipts_t *r,
                      const read_target_t *t)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "UPDATE chat_group_status SET delivered_at = COALESCE(delivered_at, ?3),"
        " read_at = ?3 WHERE message_id = ?1 AND member_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)t->id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->account_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->now_ms);
    int rc = pl_store_step_done(conn, st);
    return rc < 0 ? rc : group_progress(op, conn, r, t->id, true, t->delivered);
}

static int exec_read(chat_op_t *op, pl_store_conn_t *conn)
{
    read_target_t *t = pl_xcalloc(op->n_envs + 1, sizeof(*t));
    int rc = 0, priv;
    bool mine_on = true;
    uint64_t seen;
    /* All or nothing: check every id before changing anything. */
    for (size_t i = 0; rc >= 0 && i < op->n_envs; i++) {
        int ok = read_lookup(op, conn, op->envs[i].device_id, &t[i]);
        if (ok < 0)
            rc = ok;
        else if (!ok) {
            chat_op_fail(op, "not_found", "message %llu is not addressed to you",
                         (unsigned long long)op->envs[i].device_id);
            op->err_extra = json_pack("{s:I}", "message_id",
                                      (json_int_t)op->envs[i].device_id);
            free(t);
            return 0;
        }
    }
    if (rc >= 0)
        rc = chat_sql_settings(conn, op->account_id, &priv, &mine_on, &seen);
    receipts_t r;
    chat_map_init(&r.by_sender);
    uint64_t *newly = pl_xmalloc((op->n_envs + 1) * sizeof(*newly));
    for (size_t i = 0; rc >= 0 && i < op->n_envs; i++) {
        if (t[i].read)
            continue;
        rc = t[i].group ? read_group(op, conn, &r, &t[i]) : read_direct(op, conn, &r, &t[i],
                                                                          mine_on);
        newly[op->u64[0]++] = t[i].id;
    }
    free(t);
    if (rc < 0) {
        free(newly);
        receipts_drop(&r);
        return rc;
    }
    if ((rc = receipts_done(op, conn, &r)) < 0) {
        free(newly);
        return rc;
    }
    /* The reader's other devices clear their unread state too (whatever the read
     * receipt setting: this is the reader's own information). */
    if (op->u64[0])
        chat_push_account(op, op->account_id, op->device_id,
                          json_pack("{s:s,s:o,s:I,s:I}", "type", "chat.reads", "message_ids",
                                    chat_ids_json(newly, op->u64[0]), "at",
                                    (json_int_t)op->now_ms, "device_id",
                                    (json_int_t)op->device_id));
    free(newly);
    return 0;
}

static void finish_read(chat_op_t *op, json_t *f)
{
    json_object_set_new(f, "read", json_integer((json_int_t)op->u64[0]));
}

static void h_read(pl_sig_req_t *req, void *arg)
{
    chat_op_t *op = chat_op_new_bare(arg, req, exec_read);
    op->finish = finish_read;
    if (parse_ids(req, op, true) < 0) {
        chat_op_free(op);
        return;
    }
    chat_op_submit(op);
}

static const pl_sig_field_t ack_fields[] = {
    { "upto", PL_SIG_T_ID, false, 0, 0 },
    { "message_ids", PL_SIG_T_ARRAY, false, 0, CHAT_IDS_MAX },
};
static const pl_sig_field_t read_fields[] = {
    { "message_ids", PL_SIG_T_ARRAY, true, 0, CHAT_IDS_MAX },
};

const pl_sig_handler_t chat_ack_handlers[] = {
    { "chat.ack", h_ack, true, ack_fields, PL_ARRAY_LEN(ack_fields) },
    { "chat.read", h_read, true, read_fields, PL_ARRAY_LEN(read_fields) },
};
const size_t chat_ack_n_handlers = PL_ARRAY_LEN(chat_ack_handlers);
