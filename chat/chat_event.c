/* chat_event.c: durable server events -- group membership and info changes, identity
 * key changes, and receipts for devices that were away. An event is a chat_messages
 * row of kind 1 (2 for receipts, whose body goes with the last acknowledgement) whose
 * body is the event's JSON object, queued for every device concerned exactly like a
 * message: in order with the messages around it, kept until each device acknowledges
 * it, delivered to a device that was offline when it happened once it syncs.
 *
 * Event queues ignore [chat] queue_max: an event is small and a member who misses a
 * membership change would encrypt for the wrong group.
 *
 * What it does not do: decide who is concerned (the caller does).
 *
 * Threading: the store thread. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

/* Every (device, account) pair of the accounts, flattened. */
static long devices_of(chat_t *c, pl_store_conn_t *conn, const uint64_t *accounts, size_t n,
                       uint64_t **out)
{
    size_t cnt = 0, cap = 16;
    uint64_t *v = pl_xmalloc(cap * 2 * sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        uint64_t *devs = NULL;
        long k = chat_devices(c, conn, accounts[i], &devs);
        if (k < 0) {
            free(v);
            return k;
        }
        for (long j = 0; j < k; j++) {
            if (cnt == cap) {
                cap *= 2;
                v = pl_xrealloc(v, cap * 2 * sizeof(*v));
            }
            v[2 * cnt] = devs[j];
            v[2 * cnt + 1] = accounts[i];
            cnt++;
        }
        free(devs);
    }
    *out = v;
    return (long)cnt;
}

static int insert_event(chat_op_t *op, pl_store_conn_t *conn, int kind, uint64_t group_id,
                        const char *text, long n_devs, uint64_t *id)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO chat_messages(kind, sender_id, sender_device, peer_id, group_id,"
        " conv_a, conv_b, body, created_at, expires_at, pending) VALUES (?8, ?1, ?2, 0, ?3,"
        " 0, ?3, ?4, ?5, ?6, ?7)");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int(st, 8, kind);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->device_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)group_id);
    sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)op->now_ms);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)(op->now_ms + op->lim.ttl_ms));
    sqlite3_bind_int64(st, 7, n_devs);
    int rc = pl_store_step_done(conn, st);
    *id = (uint64_t)sqlite3_last_insert_rowid(pl_store_db(conn));
    return rc < 0 ? rc : chat_ix_added(op->chat, conn);
}

/* Queues the event (body_obj, borrowed) for the (device, account) pairs of devs. */
static int emit_to(chat_op_t *op, pl_store_conn_t *conn, int kind, uint64_t group_id,
                   const uint64_t *devs, long n, json_t *body_obj)
{
    uint64_t id = 0;
    char *text = json_dumps(body_obj, JSON_COMPACT);
    int rc = insert_event(op, conn, kind, group_id, text, n, &id);
    sqlite3_stmt *st = NULL;
    for (long i = 0; rc >= 0 && i < n; i++) {
        st = pl_store_prepare(conn,
            "INSERT INTO chat_envelopes(device_id, message_id, expires_at, ctype, sender_id)"
            " VALUES (?1, ?2, ?3, 0, ?4)");
        if (!st) {
            rc = PL_ESTATE;
            break;
        }
        sqlite3_bind_int64(st, 1, (sqlite3_int64)devs[2 * i]);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)(op->now_ms + op->lim.ttl_ms));
        sqlite3_bind_int64(st, 4, (sqlite3_int64)op->account_id);
        rc = pl_store_step_done(conn, st);
    }
    if (rc >= 0) {
        chat_msgdata_t md = { .message_id = id, .from_id = op->account_id,
                              .from_device = op->device_id, .group_id = group_id,
                              .sent_at = op->now_ms, .event = true };
        chat_body_t *shared = NULL;
        for (long i = 0; i < n; i++) {
            chat_dev_t *d = chat_mem_dev(op->chat->mem, devs[2 * i], true);
            d->account_id = devs[2 * i + 1];
            chat_deliver_new(op, d, &md, text, &shared);
        }
        chat_body_unref(shared);
        pl_metric_inc(op->chat->shard, op->chat->m.events);
    }
    free(text);
    return rc;
}

int chat_event_emit(chat_op_t *op, pl_store_conn_t *conn, uint64_t group_id,
                    const uint64_t *accounts, size_t n_accounts, json_t *body_obj)
{
    uint64_t *devs = NULL;
    long n = devices_of(op->chat, conn, accounts, n_accounts, &devs);
    if (n < 0)
        return (int)n;
    int rc = emit_to(op, conn, 1, group_id, devs, n, body_obj);
    free(devs);
    return rc;
}

int chat_receipts_send(chat_op_t *op, pl_store_conn_t *conn, uint64_t account_id,
                       const chat_receipt_t *items, size_t n, const char *user)
{
    chat_push_receipts(op, account_id, items, n, user);
    /* The devices that did not get them live: not chat-synced on this node. (With
     * several nodes a device synced elsewhere gets them live and queued: a receipt is
     * a status, so the second copy changes nothing.) */
    uint64_t *devs = NULL;
    long k = devices_of(op->chat, conn, &account_id, 1, &devs), away = 0;
    if (k < 0)
        return (int)k;
    for (long i = 0; i < k; i++) {
        chat_dev_t *d = chat_mem_dev(op->chat->mem, devs[2 * i], false);
        if (d && d->conn_id)
            continue;
        devs[2 * away] = devs[2 * i];
        devs[2 * away + 1] = devs[2 * i + 1];
        away++;
    }
    /* Queued: direct receipts, and of a group message only "all delivered" / "read by
     * all" -- one member's progress is not worth a queue entry per member and device
     * (a 1024-member group); chat.status has the per-member detail. */
    chat_receipt_t *keep = pl_xmalloc((n + 1) * sizeof(*keep));
    size_t n_keep = 0;
    for (size_t i = 0; i < n; i++)
        if (!items[i].group_id || items[i].all)
            keep[n_keep++] = items[i];
    int rc = 0;
    if (away && n_keep) {
        json_t *ev = chat_receipts_frame(keep, n_keep, user);
        json_object_del(ev, "type");
        json_object_set_new(ev, "event", json_string("receipts"));
        rc = emit_to(op, conn, 2, 0, devs, away, ev);
        json_decref(ev);
    }
    free(keep);
    free(devs);
    return rc;
}
