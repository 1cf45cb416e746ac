/* gw_send.c: sending to and closing connections by id from any thread, and deferred
 * replies. A frame is serialized on the sending thread and travels to the connection's
 * service thread as an inbox message; there it joins the connection's send queue, or
 * is dropped (and counted) when the connection has gone.
 *
 * What it does not do: routing to other nodes (presence will wrap these calls).
 *
 * Threading: every exported function here: any thread. The message functions run on
 * the target service thread (or on the stopping thread after it ended). */
#include "signaling/gw_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct op_msg {
    pl_msg_t msg;
    pl_sig_gateway_t *gw;
    uint64_t conn_id;
    pl_sig_out_t *out;              /* frame to queue, or NULL */
    pl_metric_id_t m_out;
    int close_code;                 /* 0 = none */
    int err;                        /* pl_sig_err_t of an error frame, or -1 */
    char reason[124];
} op_msg_t;

/* The service thread this thread is, if it is one (set by the thread itself). */
static __thread const pl_sig_thread_t *tl_service;

void pl_sig_thread_set_current(const pl_sig_thread_t *t)
{
    tl_service = t;
}

pl_sig_out_t *pl_sig_out_new(json_t *frame)
{
    size_t n = json_dumpb(frame, NULL, 0, JSON_COMPACT);
    pl_sig_out_t *o = pl_xmalloc(sizeof(*o) + LWS_PRE + n);
    o->next = NULL;
    o->len = (uint32_t)json_dumpb(frame, (char *)o->buf + LWS_PRE, n, JSON_COMPACT);
    json_decref(frame);
    return o;
}

static void op_run(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    op_msg_t *op = PL_CONTAINER_OF(msg, op_msg_t, msg);
    pl_sig_thread_t *t = pl_sig_thread_of(op->gw, op->conn_id);
    pl_sig_conn_t *c = t ? pl_sig_slot_get(t, op->conn_id, PL_SIG_SLOT_WS) : NULL;
    if (!c || c->state == PL_SIG_CONN_CLOSING) {
        if (op->out && t && !atomic_load(&t->dead))
            pl_metric_inc(t->shard, op->gw->m.dropped);
        free(op->out);
        free(op);
        return;
    }
    if (op->err >= 0)
        pl_metric_inc(t->shard, op->gw->m.errors[op->err]);
    if (op->out)
        pl_sig_conn_queue(t, c, op->out, op->m_out);
    if (op->close_code)
        pl_sig_conn_close(t, c, op->close_code, op->reason[0] ? op->reason : NULL);
    free(op);
}

/* Hands op to its connection's thread: at once when this is that thread (a deferred
 * reply finished there, say: the inbox hop -- a lock, a wake-up, a later turn of the
 * loop -- buys nothing, and sends made on one thread keep their order either way). */
static void dispatch_op(pl_sig_gateway_t *gw, pl_sig_thread_t *t, op_msg_t *op)
{
    if (tl_service == t && !atomic_load(&t->dead)) {
        op_run(NULL, &op->msg);
        return;
    }
    pl_sig_post(gw, t->index, &op->msg);
}

static int post_op(pl_sig_gateway_t *gw, uint64_t conn_id, json_t *frame, int code,
                   const char *reason, int err)
{
    pl_sig_thread_t *t = pl_sig_thread_of(gw, conn_id);
    if (!t) {
        json_decref(frame);
        return -ENOENT;
    }
    op_msg_t *op = pl_xcalloc(1, sizeof(*op));
    op->msg.fn = op_run;
    op->gw = gw;
    op->conn_id = conn_id;
    if (frame) {
        op->m_out = pl_sig_out_metric(gw, json_string_value(json_object_get(frame, "type"))
                                              ?: "");
        op->out = pl_sig_out_new(frame);
    }
    op->close_code = code;
    op->err = err;
    if (reason)
        snprintf(op->reason, sizeof(op->reason), "%s", reason);
    dispatch_op(gw, t, op);
    return 0;
}

int pl_sig_send_text(pl_sig_gateway_t *gw, uint64_t conn_id, const char *type,
                     const char *text, size_t len)
{
    pl_sig_thread_t *t = pl_sig_thread_of(gw, conn_id);
    if (!t)
        return -ENOENT;
    op_msg_t *op = pl_xcalloc(1, sizeof(*op));
    op->msg.fn = op_run;
    op->gw = gw;
    op->conn_id = conn_id;
    op->m_out = pl_sig_out_metric(gw, type);
    op->out = pl_xmalloc(sizeof(*op->out) + LWS_PRE + len);
    op->out->next = NULL;
    op->out->len = (uint32_t)len;
    memcpy(op->out->buf + LWS_PRE, text, len);
    op->err = -1;
    dispatch_op(gw, t, op);
    return 0;
}

int pl_sig_send(pl_sig_gateway_t *gw, uint64_t conn_id, json_t *frame)
{
    return post_op(gw, conn_id, frame, 0, NULL, -1);
}

int pl_sig_send_device(pl_sig_gateway_t *gw, uint64_t device_id, json_t *frame)
{
    uint64_t conn = pl_sig_dir_get(gw->dir, device_id);
    if (!conn) {
        json_decref(frame);
        return -ENOENT;
    }
    return post_op(gw, conn, frame, 0, NULL, -1);
}

int pl_sig_close(pl_sig_gateway_t *gw, uint64_t conn_id, int code, const char *reason)
{
    PL_ASSERT(code >= 1000 && code <= 4999);
    return post_op(gw, conn_id, NULL, code, reason, -1);
}

int pl_sig_close_device(pl_sig_gateway_t *gw, uint64_t device_id, int code,
                        const char *reason)
{
    uint64_t conn = pl_sig_dir_get(gw->dir, device_id);
    return conn ? pl_sig_close(gw, conn, code, reason) : -ENOENT;
}

uint64_t pl_sig_device_conn(pl_sig_gateway_t *gw, uint64_t device_id)
{
    return pl_sig_dir_get(gw->dir, device_id);
}

/* ---- deferred replies ------------------------------------------------------------ */

struct pl_sig_pending {
    uint64_t conn_id;
    json_t *id;                     /* a private deep copy: never shared across threads */
    char type[PL_SIG_TYPE_MAX + 8];
};

pl_sig_pending_t *pl_sig_defer(const pl_sig_req_t *req)
{
    pl_sig_pending_t *p = pl_xcalloc(1, sizeof(*p));
    p->conn_id = req->conn_id;
    p->id = req->id ? json_deep_copy(req->id) : NULL;
    snprintf(p->type, sizeof(p->type), "%s.result", req->type);
    return p;
}

uint64_t pl_sig_pending_conn(const pl_sig_pending_t *p)
{
    return p->conn_id;
}

void pl_sig_pending_reply(pl_sig_gateway_t *gw, pl_sig_pending_t *p, json_t *result)
{
    pl_sig_send(gw, p->conn_id, pl_sig_frame_make(p->type, p->id, result));
    json_decref(p->id);
    free(p);
}

void pl_sig_pending_error(pl_sig_gateway_t *gw, pl_sig_pending_t *p, const char *code,
                          const char *message)
{
    /* Counted by code on the connection's thread, which owns the metric shard. */
    post_op(gw, p->conn_id, pl_sig_frame_error(p->id, code, message), 0, NULL,
            (int)pl_sig_err_from_code(code));
    json_decref(p->id);
    free(p);
}
