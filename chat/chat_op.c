/* chat_op.c: the life of a chat op and of a push: made by a handler, executed on the
 * store thread, finished on the store thread right after the commit (pushes posted in
 * order), replied to on the requester's gateway thread.
 *
 * A failed commit (the batch rolled back after the exec succeeded) makes the
 * store-thread state suspect: chat_mem is reset and every chat-synced connection on
 * this node is closed (1011) so its client reconnects and re-reads its queue. The
 * requester gets "internal".
 *
 * What it does not do: any chat semantics (the per-area files).
 *
 * Threading: as each function says; see chat_int.h for the ownership hand-offs. */
#include "chat/chat_int.h"
#include "core/pl_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void op_done(pl_store_req_t *req);
static int op_exec(pl_store_conn_t *conn, pl_store_req_t *req);

static chat_op_t *op_alloc(chat_t *c, chat_exec_fn exec)
{
    chat_op_t *op = pl_xcalloc(1, sizeof(*op));
    op->chat = c;
    op->gw = c->gw;
    op->exec = exec;
    op->req.exec = op_exec;
    op->req.done = op_done;
    op->req.reply = (pl_store_reply_t){ NULL, NULL };   /* done on the store thread */
    op->push_tail = &op->push_head;
    op->now_ms = pl_now_wall_ms();
    op->t0_us = pl_now_mono_us();
    pthread_mutex_lock(&c->lim_lock);
    op->lim = c->lim;
    pthread_mutex_unlock(&c->lim_lock);
    return op;
}

chat_op_t *chat_op_new_bare(chat_t *c, const pl_sig_req_t *req, chat_exec_fn exec)
{
    chat_op_t *op = op_alloc(c, exec);
    op->conn_id = req->conn_id;
    op->thread = req->thread;
    op->account_id = req->account_id;
    op->device_id = req->device_id;
    snprintf(op->username, sizeof(op->username), "%s", req->username);
    op->req_id = req->id ? json_deep_copy(req->id) : NULL;
    snprintf(op->rtype, sizeof(op->rtype), "%s.result", req->type);
    return op;
}

chat_op_t *chat_op_new(chat_t *c, const pl_sig_req_t *req, chat_exec_fn exec)
{
    chat_op_t *op = chat_op_new_bare(c, req, exec);
    /* A copy, not a reference: jansson's refcount checks are plain reads, so one
     * object must not be referenced from two threads (the gateway drops its own frame
     * while the store thread works on the op; ThreadSanitizer saw it). */
    op->in = json_deep_copy(req->frame);
    return op;
}

chat_op_t *chat_op_new_internal(chat_t *c, chat_exec_fn exec)
{
    return op_alloc(c, exec);
}

void chat_op_free(chat_op_t *op)
{
    if (!op)
        return;
    for (chat_push_t *p = op->push_head, *n; p; p = n) {
        n = p->next;
        chat_push_free(p);
    }
    json_decref(op->req_id);
    json_decref(op->in);
    json_decref(op->err_extra);
    json_decref(op->result);
    free(op->envs);
    free(op->own);
    free(op->arena);
    free(op);
}

int chat_op_fail(chat_op_t *op, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->err_msg, sizeof(op->err_msg), fmt, ap);
    va_end(ap);
    op->err = code;
    return 0;
}

json_t *chat_op_result(chat_op_t *op)
{
    if (!op->result)
        op->result = json_object();
    return op->result;
}

void chat_reply_bad_field(pl_sig_req_t *req, const char *fmt, ...)
{
    char msg[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pl_sig_reply_error(req, "bad_field", msg);
}

void chat_reply_error(pl_sig_req_t *req, const char *code, const char *message)
{
    /* Built here rather than with pl_sig_reply_error, which only knows the gateway's
     * own codes. */
    json_t *f = json_pack("{s:s,s:s,s:s}", "type", "error", "code", code, "message", message);
    if (req->id)
        json_object_set(f, "id", req->id);
    pl_sig_send(req->gw, req->conn_id, f);
}

void chat_op_submit(chat_op_t *op)
{
    pl_store_submit(op->chat->store, &op->req);
}

/* ---- store thread ---------------------------------------------------------------- */

static int op_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    chat_op_t *op = PL_CONTAINER_OF(req, chat_op_t, req);
    op->exec_rc = op->exec(op, conn);
    if (op->exec_rc < 0) {
        /* Rolled back: nothing it queued may leave. */
        for (chat_push_t *p = op->push_head, *n; p; p = n) {
            n = p->next;
            chat_push_free(p);
        }
        op->push_head = NULL;
        op->push_tail = &op->push_head;
    }
    return op->exec_rc;
}

static void close_conn(uint64_t conn_id, void *arg)
{
    pl_sig_close(arg, conn_id, PL_SIG_CLOSE_INTERNAL, "chat store failure; reconnect");
}

static void reply_on_gateway(pl_loop_t *loop, pl_msg_t *msg);

static void op_done(pl_store_req_t *req)
{
    chat_op_t *op = PL_CONTAINER_OF(req, chat_op_t, req);
    chat_t *c = op->chat;
    if (req->status < 0) {
        if (op->exec_rc >= 0 && req->status != PL_ECLOSED) {
            /* The commit failed under an exec that had updated chat_mem. */
            pl_log_error("chat.store.commit_failed", "error=%s", pl_strerror(req->status));
            pl_metric_inc(c->shard, c->m.store_failures);
            chat_mem_reset(c->mem, close_conn, c->gw);
        }
        for (chat_push_t *p = op->push_head, *n; p; p = n) {
            n = p->next;
            chat_push_free(p);
        }
        op->push_head = NULL;
        op->err = "internal";
        snprintf(op->err_msg, sizeof(op->err_msg), "%s",
                 req->status == PL_ECLOSED ? "server shutting down" : "storage error");
    }
    if (op->err && strcmp(op->err, "internal") != 0)
        pl_metric_inc(c->shard, c->m.refused);
    /* The reply leaves before the pushes: a chat.sync result then precedes the
     * backlog (both reach the same thread, whose inbox keeps posting order). */
    chat_push_t *pushes = op->push_head;
    op->push_head = NULL;
    op->push_tail = &op->push_head;
    if (op->conn_id && !op->quiet) {
        op->req.msg.fn = reply_on_gateway;
        pl_sig_post(c->gw, op->thread, &op->req.msg);
    } else {
        chat_op_free(op);
    }
    chat_push_post_all(c, pushes);
}

/* ---- requester's gateway thread ----------------------------------------------------- */

/* The request id as JSON text: an integer or a string (frame.c allows only those). */
static void put_id(pl_buf_t *b, const json_t *id)
{
    if (json_is_integer(id)) {
        pl_buf_puts(b, ",\"id\":");
        pl_buf_put_i64(b, (int64_t)json_integer_value(id));
    } else if (json_is_string(id)) {
        pl_buf_puts(b, ",\"id\":");
        pl_buf_json_str(b, json_string_value(id));
    }
}

/* A result whose members text_fn writes, built without jansson (the hot replies). */
static void reply_text(chat_op_t *op)
{
    pl_buf_t b;
    pl_buf_init(&b);
    pl_buf_puts(&b, "{\"type\":");
    pl_buf_json_str(&b, op->rtype);
    put_id(&b, op->req_id);
    op->text_fn(op, &b);
    pl_buf_puts(&b, "}");
    pl_sig_send_text(op->gw, op->conn_id, op->rtype, b.data, b.len);
    pl_buf_deinit(&b);
}

static void reply_on_gateway(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    chat_op_t *op = PL_CONTAINER_OF(msg, chat_op_t, req.msg);
    if (!op->err && !op->result && op->text_fn) {
        reply_text(op);
        chat_op_free(op);
        return;
    }
    json_t *f = json_object();
    if (op->err) {
        json_object_set_new(f, "type", json_string("error"));
        if (op->req_id)
            json_object_set(f, "id", op->req_id);
        json_object_set_new(f, "code", json_string(op->err));
        json_object_set_new(f, "message", json_string(op->err_msg));
        if (op->err_extra)
            json_object_update(f, op->err_extra);
    } else {
        json_object_set_new(f, "type", json_string(op->rtype));
        if (op->req_id)
            json_object_set(f, "id", op->req_id);
        if (op->result)
            json_object_update(f, op->result);
        if (op->finish)
            op->finish(op, f);
    }
    pl_sig_send(op->gw, op->conn_id, f);
    chat_op_free(op);
}
