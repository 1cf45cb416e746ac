/* chat_send.c: chat.send, a direct message (one envelope per device of the recipient)
 * or a group message (one sender-key ciphertext fanned out to every member device).
 *
 *   chat.send {client_id, to, envelopes: [{device_id, ctype, body}], own?: [...]}
 *   chat.send {client_id, group_id, ctype, body}
 *     -> chat.send.result {message_id, sent_at, duplicate, undelivered?}
 *
 * The result ("sent", one tick) leaves only after the batch holding the message has
 * committed (synchronous=FULL: fsynced). The client message id makes a resend
 * idempotent: the same (sender, client_id) returns the first message's result and
 * stores nothing. A direct message is all or nothing: the device list must be the
 * recipient's current devices (else device_mismatch with missing/extra), and every
 * queue must have room (else queue_full). "own" carries copies for the sender's other
 * devices (the same rules: exactly those devices, else device_mismatch with
 * own_missing/own_extra); they are envelopes of the same message, pushed with "to".
 * A group member whose device queue is full
 * does not block the group: the result names what could not be queued.
 *
 * What it does not do: delivery (chat_deliver.c), acknowledgements (chat_ack.c).
 *
 * Threading: handlers on the gateway thread; exec functions on the store thread. */
#include "chat/chat_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- store thread -------------------------------------------------------------------- */

/* Looks for an earlier message with this client id (chat_index.c: the trailing
 * chat_ix_client and the ids above it in memory). Returns 1 (found: result set), 0,
 * or a negative store error. */
static int find_duplicate(chat_op_t *op, pl_store_conn_t *conn, const char *client_id)
{
    uint64_t id, created_at;
    int rc = chat_cid_find(op->chat, conn, op->account_id, client_id, &id, &created_at);
    if (rc <= 0)
        return rc;
    op->u64[0] = id;
    op->u64[1] = created_at;
    op->ival = 1;
    pl_metric_inc(op->chat->shard, op->chat->m.duplicates);
    return 1;
}

typedef struct msg_row {
    uint64_t peer_id, group_id, conv_a, conv_b;
    int ctype;
    const char *body;
    int64_t pending, members;
} msg_row_t;

static int insert_message(chat_op_t *op, pl_store_conn_t *conn, const char *client_id,
                          const msg_row_t *r, uint64_t *id)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO chat_messages(kind, sender_id, sender_device, client_id, peer_id,"
        " group_id, conv_a, conv_b, ctype, body, created_at, expires_at, pending, members,"
        " undelivered, unread) VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
        " ?13, ?13, ?13)");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->device_id);
    sqlite3_bind_text(st, 3, client_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)r->peer_id);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)r->group_id);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)r->conv_a);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)r->conv_b);
    sqlite3_bind_int(st, 8, r->ctype);
    if (r->body)
        sqlite3_bind_text(st, 9, r->body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)op->now_ms);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)(op->now_ms + op->lim.ttl_ms));
    sqlite3_bind_int64(st, 12, r->pending);
    sqlite3_bind_int64(st, 13, r->members);
    int rc = pl_store_step_done(conn, st);
    if (rc < 0)
        return rc;
    *id = (uint64_t)sqlite3_last_insert_rowid(pl_store_db(conn));
    op->u64[0] = *id;
    op->u64[1] = op->now_ms;
    return chat_ix_added(op->chat, conn);
}

static int insert_envelope(chat_op_t *op, pl_store_conn_t *conn, uint64_t device_id,
                           uint64_t message_id, int ctype, const char *body)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO chat_envelopes(device_id, message_id, expires_at, ctype, body, sender_id)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)device_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)message_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)(op->now_ms + op->lim.ttl_ms));
    sqlite3_bind_int(st, 4, ctype);
    if (body)
        sqlite3_bind_text(st, 5, body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)op->account_id);
    return pl_store_step_done(conn, st);
}

static int note_partners(pl_store_conn_t *conn, uint64_t a, uint64_t b)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT OR IGNORE INTO chat_partners(account_id, partner_id) VALUES (?1, ?2), (?2, ?1)");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)a);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)b);
    return pl_store_step_done(conn, st);
}

static void md_init(chat_op_t *op, chat_msgdata_t *md, uint64_t id, uint64_t group_id,
                    const char *client_id)
{
    memset(md, 0, sizeof(*md));
    md->message_id = id;
    md->from_id = op->account_id;
    md->from_device = op->device_id;
    md->group_id = group_id;
    md->sent_at = op->now_ms;
    snprintf(md->from, sizeof(md->from), "%s", op->username);
    snprintf(md->client_id, sizeof(md->client_id), "%s", client_id);
}

/* Compares the devices in have with the envelopes' (both sorted): missing and extra
 * are allocated (the caller frees them). Returns whether they match. */
static bool match_devices(const uint64_t *have, size_t n_have, const chat_env_t *envs, size_t n,
                          uint64_t **missing, size_t *n_missing, uint64_t **extra,
                          size_t *n_extra)
{
    uint64_t *want = pl_xmalloc((n + 1) * sizeof(*want));
    *missing = pl_xmalloc((n_have + n + 1) * sizeof(**missing));
    *extra = pl_xmalloc((n + 1) * sizeof(**extra));
    for (size_t i = 0; i < n; i++)
        want[i] = envs[i].device_id;
    /* "missing": devices without an envelope; "extra": envelopes for devices that are
     * not (or no longer) among them. */
    chat_ids_diff(have, n_have, want, n, *missing, n_missing, *extra, n_extra);
    free(want);
    return *n_missing == 0 && *n_extra == 0;
}

/* The sender's devices but the sending one. Returns how many, or < 0. */
static long own_devices(chat_op_t *op, pl_store_conn_t *conn, uint64_t **out)
{
    long n = chat_devices(op->chat, conn, op->account_id, out);
    long k = 0;
    for (long i = 0; i < n; i++)
        if ((*out)[i] != op->device_id)
            (*out)[k++] = (*out)[i];
    return n < 0 ? n : k;
}

/* Adds the devices of envs whose queue is full to full[]. Returns 0 or < 0. */
static int full_queues(chat_op_t *op, pl_store_conn_t *conn, const chat_env_t *envs, size_t n,
                       uint64_t account, uint64_t *full, size_t *n_full)
{
    for (size_t i = 0; i < n; i++) {
        chat_dev_t *d = chat_mem_dev(op->chat->mem, envs[i].device_id, true);
        d->account_id = account;
        int rc = chat_deliver_full(op, conn, d);
        if (rc < 0)
            return rc;
        if (rc)
            full[(*n_full)++] = envs[i].device_id;
    }
    return 0;
}

/* Checks the envelopes against the recipient's devices, the copies (if any) against
 * the sender's other devices, and every queue. Returns 1 when the send may go on, 0
 * with the outcome set, or a negative store error. */
static int check_direct(chat_op_t *op, pl_store_conn_t *conn, uint64_t peer)
{
    uint64_t *have = NULL, *mine = NULL, *missing, *extra, *own_missing = NULL,
             *own_extra = NULL;
    size_t n_missing, n_extra, n_own_missing = 0, n_own_extra = 0;
    long n_have = chat_devices(op->chat, conn, peer, &have);
    long n_mine = op->own && n_have >= 0 ? own_devices(op, conn, &mine) : 0;
    if (n_have < 0 || n_mine < 0) {
        free(have);
        free(mine);
        return PL_ESTATE;
    }
    bool ok = match_devices(have, (size_t)n_have, op->envs, op->n_envs, &missing, &n_missing,
                            &extra, &n_extra);
    if (op->own && !match_devices(mine, (size_t)n_mine, op->own, op->n_own, &own_missing,
                                  &n_own_missing, &own_extra, &n_own_extra))
        ok = false;
    int rc = 1;
    if (!ok) {
        chat_op_fail(op, "device_mismatch", "the envelopes must match the recipient's devices "
                     "(and \"own\" your other devices) exactly");
        op->err_extra = json_pack("{s:o,s:o}", "missing", chat_ids_json(missing, n_missing),
                                  "extra", chat_ids_json(extra, n_extra));
        if (n_own_missing || n_own_extra) {
            json_object_set_new(op->err_extra, "own_missing",
                                chat_ids_json(own_missing, n_own_missing));
            json_object_set_new(op->err_extra, "own_extra",
                                chat_ids_json(own_extra, n_own_extra));
        }
        rc = 0;
    }
    uint64_t *full = pl_xmalloc((op->n_envs + op->n_own + 1) * sizeof(*full));
    size_t n_full = 0;
    if (rc == 1) {
        int e = full_queues(op, conn, op->envs, op->n_envs, peer, full, &n_full);
        if (e == 0)
            e = full_queues(op, conn, op->own, op->n_own, op->account_id, full, &n_full);
        if (e < 0)
            rc = e;
    }
    if (rc == 1 && n_full) {
        chat_op_fail(op, "queue_full", "a device queue is full (%u waiting)",
                     op->lim.queue_max);
        op->err_extra = json_pack("{s:o}", "devices", chat_ids_json(full, n_full));
        rc = 0;
    }
    free(full);
    free(own_extra);
    free(own_missing);
    free(extra);
    free(missing);
    free(mine);
    free(have);
    return rc;
}

/* After a refusal: a resend of a message that went through earlier still gets the
 * first result (its devices may have changed since). Returns 0 either way, or < 0. */
static int refused(chat_op_t *op, pl_store_conn_t *conn, const char *client_id)
{
    int rc = find_duplicate(op, conn, client_id);
    if (rc > 0) {
        op->err = NULL;
        json_decref(op->err_extra);
        op->err_extra = NULL;
    }
    return rc < 0 ? rc : 0;
}

/* Inserts the message row unless the client id was used before, which answers with
 * the first message instead: 1 inserted, 0 duplicate, < 0 error. */
static int insert_or_duplicate(chat_op_t *op, pl_store_conn_t *conn, const char *client_id,
                               const msg_row_t *r, uint64_t *id)
{
    int rc = find_duplicate(op, conn, client_id);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    if ((rc = insert_message(op, conn, client_id, r, id)) < 0)
        return rc;
    chat_cid_added(op->chat, op->account_id, client_id, *id);
    return 1;
}

static void deliver_envs(chat_op_t *op, chat_msgdata_t *md, const chat_env_t *envs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        chat_body_t *body = NULL;
        md->ctype = envs[i].ctype;
        chat_deliver_new(op, chat_mem_dev(op->chat->mem, envs[i].device_id, true), md,
                         envs[i].body, &body);
        chat_body_unref(body);
    }
}

static int exec_direct(chat_op_t *op, pl_store_conn_t *conn)
{
    const char *client_id = op->client_id, *name = op->to;
    int64_t peer = chat_lookup_account(op, conn, name);
    if (peer < 0)
        return (int)peer;
    if (peer == 0)
        return chat_op_fail(op, "not_found", "no such user: %s", name);
    if ((uint64_t)peer == op->account_id)
        return chat_op_fail(op, "bad_recipient", "send to your other devices is not supported");
    int rc = check_direct(op, conn, (uint64_t)peer);
    if (rc <= 0)
        return rc < 0 ? rc : refused(op, conn, client_id);
    msg_row_t r = { .peer_id = (uint64_t)peer, .conv_a = PL_MIN(op->account_id, (uint64_t)peer),
                    .conv_b = PL_MAX(op->account_id, (uint64_t)peer),
                    .pending = (int64_t)(op->n_envs + op->n_own), .members = 1 };
    uint64_t id;
    if ((rc = insert_or_duplicate(op, conn, client_id, &r, &id)) <= 0)
        return rc;
    if (!chat_mem_pair_seen(op->chat->mem, r.conv_a, r.conv_b) &&
        (rc = note_partners(conn, op->account_id, (uint64_t)peer)) < 0)
        return rc;
    for (size_t i = 0; i < op->n_envs; i++)
        if ((rc = insert_envelope(op, conn, op->envs[i].device_id, id, op->envs[i].ctype,
                                  op->envs[i].body)) < 0)
            return rc;
    for (size_t i = 0; i < op->n_own; i++)
        if ((rc = insert_envelope(op, conn, op->own[i].device_id, id, op->own[i].ctype,
                                  op->own[i].body)) < 0)
            return rc;
    chat_msgdata_t md;
    md_init(op, &md, id, 0, client_id);
    deliver_envs(op, &md, op->envs, op->n_envs);
    snprintf(md.to, sizeof(md.to), "%s", name);     /* the copies say who it went to */
    deliver_envs(op, &md, op->own, op->n_own);
    pl_metric_inc(op->chat->shard, op->chat->m.sent_direct);
    return 0;
}

/* The member devices of a group (but the sending one): pairs of (device, account). */
static long group_devices(chat_op_t *op, pl_store_conn_t *conn, uint64_t group_id,
                          uint64_t **out)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT d.id, m.account_id FROM chat_members m JOIN devices d"
        " ON d.account_id = m.account_id WHERE m.group_id = ?1 ORDER BY d.id");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)group_id);
    size_t n = 0, cap = 64;
    uint64_t *v = pl_xmalloc(cap * 2 * sizeof(*v));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t dev = (uint64_t)sqlite3_column_int64(st, 0);
        if (dev == op->device_id)
            continue;
        if (n == cap) {
            cap *= 2;
            v = pl_xrealloc(v, cap * 2 * sizeof(*v));
        }
        v[2 * n] = dev;
        v[2 * n + 1] = (uint64_t)sqlite3_column_int64(st, 1);
        n++;
    }
    if (rc != SQLITE_DONE) {
        free(v);
        return PL_ESTATE;
    }
    *out = v;
    return (long)n;
}

static int insert_statuses(chat_op_t *op, pl_store_conn_t *conn, uint64_t id,
                           uint64_t group_id)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO chat_group_status(message_id, member_id)"
        " SELECT ?1, account_id FROM chat_members WHERE group_id = ?2 AND account_id != ?3");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)group_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->account_id);
    return pl_store_step_done(conn, st);
}

/* Checks membership and the send setting. Returns 1 to go on, 0 refused, < 0 error. */
static int check_group(chat_op_t *op, pl_store_conn_t *conn, uint64_t group_id,
                       int64_t *n_members)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT g.send_admins, (SELECT count(*) FROM chat_members WHERE group_id = g.id),"
        " (SELECT admin FROM chat_members WHERE group_id = g.id AND account_id = ?2)"
        " FROM chat_groups g WHERE g.id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)group_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return chat_op_fail(op, "not_found", "no such group: %llu",
                            (unsigned long long)group_id);
    if (rc != SQLITE_ROW)
        return PL_ESTATE;
    if (sqlite3_column_type(st, 2) == SQLITE_NULL)
        return chat_op_fail(op, "not_a_member", "you are not a member of this group");
    if (sqlite3_column_int(st, 0) && !sqlite3_column_int(st, 2))
        return chat_op_fail(op, "forbidden", "only admins may send to this group");
    *n_members = sqlite3_column_int64(st, 1);
    return 1;
}

static int exec_group(chat_op_t *op, pl_store_conn_t *conn)
{
    const char *client_id = op->client_id, *body = op->text;
    uint64_t group_id = op->target;
    int64_t n_members = 0;
    int rc = check_group(op, conn, group_id, &n_members);
    if (rc <= 0)
        return rc < 0 ? rc : refused(op, conn, client_id);
    uint64_t *devs = NULL;
    long n = group_devices(op, conn, group_id, &devs);
    if (n < 0)
        return (int)n;
    /* Full queues are reported, not silently skipped, and do not hold the group up. */
    json_t *undelivered = json_array();
    size_t kept = 0;
    for (long i = 0; i < n && rc >= 0; i++) {
        chat_dev_t *d = chat_mem_dev(op->chat->mem, devs[2 * i], true);
        d->account_id = devs[2 * i + 1];
        int full = chat_deliver_full(op, conn, d);
        if (full < 0)
            rc = full;
        else if (full)
            json_array_append_new(undelivered, json_pack("{s:I,s:s}", "device_id",
                (json_int_t)devs[2 * i], "reason", "queue_full"));
        else {
            devs[2 * kept] = devs[2 * i];
            devs[2 * kept + 1] = devs[2 * i + 1];
            kept++;
        }
    }
    msg_row_t r = { .group_id = group_id, .conv_b = group_id, .body = body,
                    .ctype = op->ctype,
                    .pending = (int64_t)kept, .members = n_members - 1 };
    uint64_t id = 0;
    bool fresh = false;
    if (rc >= 0 && (rc = insert_or_duplicate(op, conn, client_id, &r, &id)) > 0) {
        fresh = true;
        rc = insert_statuses(op, conn, id, group_id);
    }
    for (size_t i = 0; fresh && rc >= 0 && i < kept; i++)
        rc = insert_envelope(op, conn, devs[2 * i], id, r.ctype, NULL);
    if (fresh && rc >= 0) {
        chat_msgdata_t md;
        md_init(op, &md, id, group_id, client_id);
        md.ctype = r.ctype;
        chat_body_t *shared = NULL;     /* one copy of the ciphertext for every push */
        for (size_t i = 0; i < kept; i++)
            chat_deliver_new(op, chat_mem_dev(op->chat->mem, devs[2 * i], false), &md, body,
                             &shared);
        chat_body_unref(shared);
        if (json_array_size(undelivered))
            json_object_set(chat_op_result(op), "undelivered", undelivered);
        pl_metric_inc(op->chat->shard, op->chat->m.sent_group);
    }
    json_decref(undelivered);
    free(devs);
    return rc < 0 ? rc : 0;
}

/* ---- gateway thread ------------------------------------------------------------------ */

static void text_send(chat_op_t *op, pl_buf_t *b)
{
    pl_buf_puts(b, ",\"message_id\":");
    pl_buf_put_u64(b, op->u64[0]);
    pl_buf_puts(b, ",\"sent_at\":");
    pl_buf_put_u64(b, op->u64[1]);
    pl_buf_puts(b, op->ival ? ",\"duplicate\":true" : ",\"duplicate\":false");
}

static void finish_send(chat_op_t *op, json_t *f)
{
    json_object_set_new(f, "message_id", json_integer((json_int_t)op->u64[0]));
    json_object_set_new(f, "sent_at", json_integer((json_int_t)op->u64[1]));
    json_object_set_new(f, "duplicate", json_boolean(op->ival));
}

static int env_cmp(const void *a, const void *b)
{
    const chat_env_t *x = a, *y = b;
    return x->device_id < y->device_id ? -1 : x->device_id > y->device_id;
}

/* Copies the strings the exec needs into one allocation (the gateway's frame is
 * freed when the handler returns): the client id, then the body or each envelope's. */
static void copy_strings(chat_op_t *op, const char *client_id, const char *group_body)
{
    size_t n = strlen(client_id) + 1 + (group_body ? strlen(group_body) + 1 : 0);
    for (size_t i = 0; i < op->n_envs; i++)
        n += strlen(op->envs[i].body) + 1;
    for (size_t i = 0; i < op->n_own; i++)
        n += strlen(op->own[i].body) + 1;
    char *p = op->arena = pl_xmalloc(n);
#define PUT(dst, src) do { size_t k_ = strlen(src) + 1; memcpy(p, src, k_); dst = p; p += k_; } while (0)
    PUT(op->client_id, client_id);
    if (group_body)
        PUT(op->text, group_body);
    for (size_t i = 0; i < op->n_envs; i++)
        PUT(op->envs[i].body, op->envs[i].body);
    for (size_t i = 0; i < op->n_own; i++)
        PUT(op->own[i].body, op->own[i].body);
#undef PUT
}

/* Parses and checks the envelopes of field into *out (bodies still the frame's),
 * sorted by device; empty allowed or not. Returns 0, or -1 after replying. */
static int parse_envelopes(pl_sig_req_t *req, chat_op_t *op, const char *field,
                           const json_t *arr, bool empty_ok, chat_env_t **out, size_t *n_out)
{
    size_t n = json_array_size(arr);
    if (n == 0 && !empty_ok)
        return chat_reply_bad_field(req, "field \"%s\": at least one envelope", field), -1;
    *out = pl_xcalloc(n + 1, sizeof(**out));
    *n_out = n;
    chat_env_t *envs = *out;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        json_t *dev = json_object_get(e, "device_id"), *ct = json_object_get(e, "ctype");
        json_t *body = json_object_get(e, "body");
        json_int_t id = json_integer_value(dev), ctype = ct ? json_integer_value(ct) : 0;
        if (!json_is_object(e) || !json_is_integer(dev) || id < 1 ||
            (ct && (!json_is_integer(ct) || ctype < 0 || ctype > 255)) || !json_is_string(body))
            return chat_reply_bad_field(req, "%s[%zu]: expected {device_id, ctype "
                                        "0-255, body}", field, i), -1;
        size_t len = json_string_length(body);
        if (len > op->lim.max_payload)
            return chat_reply_error(req, "payload_too_large", "an envelope's body is larger "
                                    "than [chat] max_payload"), -1;
        if (!chat_b64_ok(json_string_value(body), len))
            return chat_reply_bad_field(req, "%s[%zu].body: not base64", field, i), -1;
        envs[i] = (chat_env_t){ (uint64_t)id, (int)ctype, json_string_value(body) };
    }
    qsort(envs, n, sizeof(*envs), env_cmp);
    for (size_t i = 1; i < n; i++)
        if (envs[i].device_id == envs[i - 1].device_id)
            return chat_reply_bad_field(req, "%s: device %llu appears twice", field,
                                        (unsigned long long)envs[i].device_id), -1;
    return 0;
}

/* Checks a group message's body. Returns 0, or -1 after replying. */
static int check_group_body(pl_sig_req_t *req, chat_op_t *op, const json_t *body)
{
    if (!json_is_string(body)) {
        chat_reply_bad_field(req, "field \"body\": required (base64)");
        return -1;
    }
    if (json_string_length(body) > op->lim.max_payload) {
        chat_reply_error(req, "payload_too_large", "body is larger than [chat] max_payload");
        return -1;
    }
    if (!chat_b64_ok(json_string_value(body), json_string_length(body))) {
        chat_reply_bad_field(req, "field \"body\": not base64");
        return -1;
    }
    return 0;
}

static void h_send(pl_sig_req_t *req, void *arg)
{
    json_t *f = req->frame;
    json_t *to = json_object_get(f, "to"), *group = json_object_get(f, "group_id");
    const char *client_id = json_string_value(json_object_get(f, "client_id"));
    if (!chat_client_id_ok(client_id)) {
        chat_reply_bad_field(req, "field \"client_id\": 1-64 of A-Z a-z 0-9 _ . : -");
        return;
    }
    if (!to == !group) {
        chat_reply_bad_field(req, "exactly one of \"to\" and \"group_id\"");
        return;
    }
    if (group && json_object_get(f, "own")) {
        chat_reply_bad_field(req, "field \"own\": only with \"to\" (your other devices get "
                             "group messages as members)");
        return;
    }
    /* The hot op: no frame copy, only the strings the exec needs. */
    chat_op_t *op = chat_op_new_bare(arg, req, to ? exec_direct : exec_group);
    /* Both decide (lookups, limits, duplicates) before the first write; after it only a
     * store error fails them. */
    op->req.no_savepoint = true;
    op->finish = finish_send;
    op->text_fn = text_send;
    int rc;
    if (to) {
        rc = chat_username_norm(json_string_value(to), op->to) ? 0 : -1;
        if (rc < 0)
            chat_reply_error(req, "not_found", "no such user");
        else
            rc = parse_envelopes(req, op, "envelopes", json_object_get(f, "envelopes"), false,
                                 &op->envs, &op->n_envs);
        json_t *own = json_object_get(f, "own");
        if (rc == 0 && own)
            rc = parse_envelopes(req, op, "own", own, true, &op->own, &op->n_own);
    } else {
        op->target = (uint64_t)json_integer_value(group);
        op->ctype = (int)json_integer_value(json_object_get(f, "ctype"));
        rc = check_group_body(req, op, json_object_get(f, "body"));
    }
    if (rc < 0) {
        chat_op_free(op);
        return;
    }
    copy_strings(op, client_id, to ? NULL : json_string_value(json_object_get(f, "body")));
    chat_op_submit(op);
}

static const pl_sig_field_t send_fields[] = {
    { "client_id", PL_SIG_T_STRING, true, 1, CHAT_CLIENT_ID_MAX },
    { "to", PL_SIG_T_STRING, false, 1, 64 },
    { "group_id", PL_SIG_T_ID, false, 0, 0 },
    { "envelopes", PL_SIG_T_ARRAY, false, 0, 1000 },
    { "own", PL_SIG_T_ARRAY, false, 0, 1000 },
    { "ctype", PL_SIG_T_INT, false, 0, 255 },
    { "body", PL_SIG_T_STRING, false, 0, 0 },
};

const pl_sig_handler_t chat_send_handlers[] = {
    { "chat.send", h_send, true, send_fields, PL_ARRAY_LEN(send_fields) },
};
const size_t chat_send_n_handlers = PL_ARRAY_LEN(chat_send_handlers);
