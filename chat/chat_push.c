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

#include <stdlib.h>
#include <string.h>

static chat_push_t *push_new(chat_op_t *op, uint64_t conn_id, uint8_t kind)
{
    chat_push_t *p = pl_xcalloc(1, sizeof(*p));
    p->chat = op->chat;
    p->conn_id = conn_id;
    p->kind = kind;
    *op->push_tail = p;
    op->push_tail = &p->next;
    return p;
}

void chat_push_free(chat_push_t *p)
{
    json_decref(p->hold);
    json_decref(p->frame);
    free(p->owned);
    free(p);
}

void chat_push_frame(chat_op_t *op, uint64_t conn_id, json_t *frame)
{
    push_new(op, conn_id, CHAT_PUSH_FRAME)->frame = frame;
}

chat_push_t *chat_push_message(chat_op_t *op, uint64_t conn_id, const chat_msgdata_t *md,
                               const char *body, json_t *hold)
{
    chat_push_t *p = push_new(op, conn_id, CHAT_PUSH_MESSAGE);
    p->md = *md;
    if (hold) {
        p->hold = json_incref(hold);
        p->body = body;
    } else {
        p->owned = pl_xstrdup(body ? body : "");
        p->body = p->owned;
    }
    return p;
}

void chat_push_empty(chat_op_t *op, uint64_t conn_id)
{
    push_new(op, conn_id, CHAT_PUSH_EMPTY);
}

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
    chat_acct_t *a = chat_mem_acct(c->mem, account_id, false);
    for (uint32_t i = 0; a && i < a->n_synced; i++) {
        chat_dev_t *d = chat_mem_dev(c->mem, a->synced[i], false);
        if (d && d->conn_id && d->device_id != except_device)
            chat_push_frame(op, d->conn_id, json_deep_copy(frame));
    }
    json_decref(frame);
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
    if (md->client_id[0])
        json_object_set_new(f, "client_id", json_string(md->client_id));
    json_object_set_new(f, "ctype", json_integer(md->ctype));
    json_object_set_new(f, "body", json_string(body ? body : ""));
    json_object_set_new(f, "sent_at", json_integer((json_int_t)md->sent_at));
    return f;
}

static void put_u64(pl_buf_t *b, const char *key, uint64_t v)
{
    pl_buf_printf(b, ",\"%s\":%llu", key, (unsigned long long)v);
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
    if (md->client_id[0]) {
        pl_buf_puts(b, ",\"client_id\":");
        pl_buf_json_str(b, md->client_id);
    }
    pl_buf_printf(b, ",\"ctype\":%d,\"body\":", md->ctype);
    pl_buf_json_str(b, body ? body : "");
    put_u64(b, "sent_at", md->sent_at);
    pl_buf_puts(b, "}");
}

static json_t *push_take_frame(chat_push_t *p)
{
    switch (p->kind) {
    case CHAT_PUSH_MESSAGE:
        return chat_msg_frame(&p->md, p->body);
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
        chat_msg_text(&p->md, p->body, &b);
        pl_sig_send_text(p->chat->gw, p->conn_id, "chat.message", b.data, b.len);
        pl_buf_deinit(&b);
    } else if (p->kind == CHAT_PUSH_EMPTY) {
        pl_sig_send_text(p->chat->gw, p->conn_id, "chat.queue_empty", empty, sizeof(empty) - 1);
    } else {
        pl_sig_send(p->chat->gw, p->conn_id, push_take_frame(p));
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
