/* chat_push.c: server-initiated chat frames (chat.message, chat.event, chat.receipt,
 * chat.queue_empty, chat.presence, chat.typing, chat.keys.low). An exec queues pushes
 * on its op; after the commit they are posted, in order, from the store thread: a push
 * for a local connection travels to that connection's gateway thread, which builds the
 * JSON there (keeping serialization off the store thread); a push for a device on
 * another node goes through the router.
 *
 * What it does not do: decide who gets what (chat_deliver.c and the areas).
 *
 * Threading: queueing and posting on the store thread; push_run on the gateway thread
 * the push was posted to, which then owns it. */
#include "chat/chat_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static chat_push_t *push_new(chat_op_t *op, uint64_t conn_id, uint8_t kind)
{
    chat_push_t *p = pl_xcalloc(1, sizeof(*p));
    p->chat = op->chat;
    p->gw = op->gw;
    p->conn_id = conn_id;
    p->kind = kind;
    *op->push_tail = p;
    op->push_tail = &p->next;
    return p;
}

chat_body_t *chat_body_new(const char *s)
{
    size_t n = strlen(s);
    chat_body_t *b = pl_xmalloc(sizeof(*b) + n + 1);
    atomic_init(&b->refs, 1);
    b->len = n;
    memcpy(b->text, s, n + 1);
    return b;
}

chat_body_t *chat_body_ref(chat_body_t *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void chat_body_unref(chat_body_t *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

void chat_push_free(chat_push_t *p)
{
    free(p->rcpt);
    chat_body_unref(p->body);
    json_decref(p->frame);
    free(p);
}

void chat_push_frame(chat_op_t *op, uint64_t conn_id, json_t *frame)
{
    push_new(op, conn_id, CHAT_PUSH_FRAME)->frame = frame;
}

chat_push_t *chat_push_message(chat_op_t *op, uint64_t conn_id, const chat_msgdata_t *md,
                               chat_body_t *body)
{
    chat_push_t *p = push_new(op, conn_id, CHAT_PUSH_MESSAGE);
    p->md = *md;
    p->body = chat_body_ref(body);
    return p;
}

void chat_push_empty(chat_op_t *op, uint64_t conn_id)
{
    push_new(op, conn_id, CHAT_PUSH_EMPTY);
}

/* The chat-synced connections of account here, but except_device's. */
static size_t synced_conns(chat_t *c, uint64_t account_id, uint64_t except_device,
                           uint64_t *out, size_t cap)
{
    size_t n = 0;
    chat_acct_t *a = chat_mem_acct(c->mem, account_id, false);
    for (uint32_t i = 0; a && i < a->n_synced && n < cap; i++) {
        chat_dev_t *d = chat_mem_dev(c->mem, a->synced[i], false);
        if (d && d->conn_id && d->device_id != except_device)
            out[n++] = d->conn_id;
    }
    return n;
}

#define ACCOUNT_CONNS_MAX 128           /* far above [signaling] max_devices' range */

void chat_push_account(chat_op_t *op, uint64_t account_id, uint64_t except_device,
                       json_t *frame)
{
    chat_t *c = op->chat;
    if (c->router) {
        chat_push_t *p = push_new(op, 0, CHAT_PUSH_FRAME);
        p->frame = frame;
        p->route_account = account_id;
        p->route_device = except_device;    /* as "except" for an account route */
        return;
    }
    uint64_t conns[ACCOUNT_CONNS_MAX];
    size_t n = synced_conns(c, account_id, except_device, conns, ACCOUNT_CONNS_MAX);
    /* Each connection's thread gets its own copy (jansson objects are not shared
     * between threads); the last one takes the original. */
    for (size_t i = 0; i < n; i++)
        chat_push_frame(op, conns[i], i + 1 < n ? json_deep_copy(frame) : frame);
    if (!n)
        json_decref(frame);
}

void chat_push_receipts(chat_op_t *op, uint64_t account_id, const chat_receipt_t *items,
                        size_t n, const char *user)
{
    chat_t *c = op->chat;
    if (c->router) {
        chat_push_account(op, account_id, 0, chat_receipts_frame(items, n, user));
        return;
    }
    uint64_t conns[ACCOUNT_CONNS_MAX];
    size_t k = synced_conns(c, account_id, 0, conns, ACCOUNT_CONNS_MAX);
    for (size_t i = 0; i < k; i++) {
        chat_push_t *p = push_new(op, conns[i], CHAT_PUSH_RECEIPTS);
        p->rcpt = pl_xmalloc(n * sizeof(*items));
        memcpy(p->rcpt, items, n * sizeof(*items));
        p->n_rcpt = n;
        snprintf(p->md.from, sizeof(p->md.from), "%s", user);
    }
}

/* ---- building frames ------------------------------------------------------------- */

json_t *chat_msg_frame(const chat_msgdata_t *md, const char *body)
{
    json_t *f = json_object();
    if (md->event) {
        json_object_set_new(f, "type", json_string("chat.event"));
        json_object_set_new(f, "message_id", json_integer((json_int_t)md->message_id));
        json_object_set_new(f, "at", json_integer((json_int_t)md->sent_at));
        json_t *ev = json_loads(body ? body : "{}", 0, NULL);
        if (json_is_object(ev)) {
            json_object_del(ev, "type");
            json_object_del(ev, "message_id");
            json_object_update(f, ev);
        }
        json_decref(ev);
        return f;
    }
    json_object_set_new(f, "type", json_string("chat.message"));
    json_object_set_new(f, "message_id", json_integer((json_int_t)md->message_id));
    json_object_set_new(f, "from", json_string(md->from));
    json_object_set_new(f, "from_device", json_integer((json_int_t)md->from_device));
    if (md->group_id)
        json_object_set_new(f, "group_id", json_integer((json_int_t)md->group_id));
    if (md->to[0])
        json_object_set_new(f, "to", json_string(md->to));
    if (md->client_id[0])
        json_object_set_new(f, "client_id", json_string(md->client_id));
    json_object_set_new(f, "ctype", json_integer(md->ctype));
    json_object_set_new(f, "body", json_string(body ? body : ""));
    json_object_set_new(f, "sent_at", json_integer((json_int_t)md->sent_at));
    return f;
}

static void put_u64(pl_buf_t *b, const char *key, uint64_t v)
{
    pl_buf_puts(b, ",\"");
    pl_buf_puts(b, key);
    pl_buf_puts(b, "\":");
    pl_buf_put_u64(b, v);
}

static const char *const rcpt_status[] = { "delivered", "read", "expired" };

void chat_receipts_text(const chat_receipt_t *items, size_t n, const char *user, pl_buf_t *b)
{
    pl_buf_puts(b, "{\"type\":\"chat.receipt\",\"receipts\":[");
    for (size_t i = 0; i < n; i++) {
        const chat_receipt_t *r = &items[i];
        pl_buf_puts(b, i ? ",{\"message_id\":" : "{\"message_id\":");
        pl_buf_put_u64(b, r->message_id);
        pl_buf_puts(b, ",\"status\":\"");
        pl_buf_puts(b, rcpt_status[r->status % 3]);
        pl_buf_puts(b, "\"");
        if (user[0]) {
            pl_buf_puts(b, ",\"user\":");
            pl_buf_json_str(b, user);
        }
        put_u64(b, "at", r->at);
        if (r->group_id)
            put_u64(b, "group_id", r->group_id);
        if (r->all)
            pl_buf_puts(b, ",\"all\":true");
        pl_buf_puts(b, "}");
    }
    pl_buf_puts(b, "]}");
}

json_t *chat_receipts_frame(const chat_receipt_t *items, size_t n, const char *user)
{
    pl_buf_t b;
    pl_buf_init(&b);
    chat_receipts_text(items, n, user, &b);
    json_t *f = json_loads(b.data, 0, NULL);
    pl_buf_deinit(&b);
    return f;
}

void chat_msg_text(const chat_msgdata_t *md, const char *body, pl_buf_t *b)
{
    /* The jansson-free twin of chat_msg_frame for the hot path: the same members in
     * the same order (test_chat_mem.c compares the two). */
    pl_buf_puts(b, "{\"type\":\"chat.message\"");
    put_u64(b, "message_id", md->message_id);
    pl_buf_puts(b, ",\"from\":");
    pl_buf_json_str(b, md->from);
    put_u64(b, "from_device", md->from_device);
    if (md->group_id)
        put_u64(b, "group_id", md->group_id);
    if (md->to[0]) {
        pl_buf_puts(b, ",\"to\":");
        pl_buf_json_str(b, md->to);
    }
    if (md->client_id[0]) {
        pl_buf_puts(b, ",\"client_id\":");
        pl_buf_json_str(b, md->client_id);
    }
    pl_buf_puts(b, ",\"ctype\":");
    pl_buf_put_i64(b, md->ctype);
    pl_buf_puts(b, ",\"body\":");
    pl_buf_json_str(b, body ? body : "");
    put_u64(b, "sent_at", md->sent_at);
    pl_buf_puts(b, "}");
}

static json_t *push_take_frame(chat_push_t *p)
{
    switch (p->kind) {
    case CHAT_PUSH_MESSAGE:
        return chat_msg_frame(&p->md, p->body->text);
    case CHAT_PUSH_EMPTY:
        return json_pack("{s:s}", "type", "chat.queue_empty");
    default: {
        json_t *f = p->frame;
        p->frame = NULL;
        return f;
    }
    }
}

/* ---- posting --------------------------------------------------------------------- */

static void push_run(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    chat_push_t *p = PL_CONTAINER_OF(msg, chat_push_t, msg);
    static const char empty[] = "{\"type\":\"chat.queue_empty\"}";
    /* Typing indicators are worth nothing late: drop instead of delivering stale. */
    if (p->deadline_us && pl_now_mono_us() > p->deadline_us) {
        chat_push_free(p);
        return;
    }
    if (p->kind == CHAT_PUSH_MESSAGE && !p->md.event) {
        pl_buf_t b;
        pl_buf_init(&b);
        chat_msg_text(&p->md, p->body->text, &b);
        pl_sig_send_text(p->gw, p->conn_id, "chat.message", b.data, b.len);
        pl_buf_deinit(&b);
    } else if (p->kind == CHAT_PUSH_RECEIPTS) {
        pl_buf_t b;
        pl_buf_init(&b);
        chat_receipts_text(p->rcpt, p->n_rcpt, p->md.from, &b);
        pl_sig_send_text(p->gw, p->conn_id, "chat.receipt", b.data, b.len);
        pl_buf_deinit(&b);
    } else if (p->kind == CHAT_PUSH_EMPTY) {
        pl_sig_send_text(p->gw, p->conn_id, "chat.queue_empty", empty, sizeof(empty) - 1);
    } else {
        pl_sig_send(p->gw, p->conn_id, push_take_frame(p));
    }
    chat_push_free(p);
}

static void route(chat_t *c, chat_push_t *p)
{
    pl_route_to_t to = { .account_id = p->route_account };
    if (p->kind == CHAT_PUSH_FRAME)
        to.except_device = p->route_device;
    else
        to.device_id = p->route_device;
    if (!p->deadline_us || pl_now_mono_us() <= p->deadline_us)
        pl_router_send(c->router, &to, push_take_frame(p));
    chat_push_free(p);
}

void chat_push_post_all(chat_t *c, chat_push_t *head)
{
    while (head) {
        chat_push_t *p = head;
        head = p->next;
        p->next = NULL;
        if (!p->conn_id) {
            route(c, p);
            continue;
        }
        p->msg.fn = push_run;
        pl_sig_post(c->gw, pl_sig_conn_thread(p->conn_id), &p->msg);
    }
}
