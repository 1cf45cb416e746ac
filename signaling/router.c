/* router.c: delivery of events to a user's devices or one device (pl_router.h), the
 * envelopes nodes exchange on their channels, requests forwarded to the node that owns
 * their object (a call lives on its caller's node), and busy claims for calls.
 *
 * Local first: a device registered here is served from the local registry without a
 * Redis round trip; with the Redis backend, other devices are looked up in the registry
 * and their events published on the owning node's channel, where that node's router
 * hands them to the connection or bounces them back to the sender's sink.
 *
 * What it does not do: keep anything for later (the sink's owner does), know frame
 * types.
 *
 * Threading: pl_router_send / pl_router_query_user / pl_rtr_rq_new on any thread (they
 * post); everything else on the presence thread. */
#include "signaling/presence_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USER_DEVICES_MAX 64

const char *pl_route_reason_name(pl_route_reason_t reason)
{
    return reason == PL_ROUTE_OFFLINE ? "offline" : "unreachable";
}

static bool redis_up(const pl_router_t *r)
{
    return r->redis && atomic_load_explicit(&r->up, memory_order_relaxed);
}

static bool on_presence_thread(const pl_router_t *r)
{
    return r->started && pl_loop_on_home_thread(r->loop);
}

/* ---- outcomes ------------------------------------------------------------------------ */

void pl_rtr_undeliverable(pl_router_t *r, const pl_route_to_t *to, uint64_t device_id,
                          pl_route_reason_t reason, json_t *frame)
{
    pl_metric_inc(r->shard, r->m.route_undeliverable);
    if (!to->sink || to->sink > r->n_sinks) {
        json_decref(frame);
        return;
    }
    pl_route_undelivered_t u = {
        .account_id = to->account_id, .device_id = device_id, .reason = reason,
        .cookie = to->cookie, .frame = frame,
    };
    r->sinks[to->sink].fn(&u, r->sinks[to->sink].arg);
}

static void local_send(pl_router_t *r, uint64_t conn_id, json_t *frame)
{
    pl_metric_inc(r->shard, r->m.route_local);
    pl_sig_send(r->gw, conn_id, frame);
}

/* ---- publishing an event to another node ----------------------------------------------- */

typedef struct pub_ev {
    pl_route_to_t to;
    uint64_t device_id;
    json_t *frame;                      /* kept until the publish is confirmed */
} pub_ev_t;

static void pub_ev_done(pl_router_t *r, long long receivers, void *arg)
{
    pub_ev_t *p = arg;
    if (receivers > 0) {
        pl_metric_inc(r->shard, r->m.route_remote);
        json_decref(p->frame);
    } else {
        /* Nobody listens on that channel: the node is gone (its entries expire soon). */
        pl_rtr_undeliverable(r, &p->to, p->device_id, PL_ROUTE_UNREACHABLE, p->frame);
    }
    free(p);
}

/* Publishes frame (owned) for device_id (exact conn when conn_id != 0) to node. */
static void publish_event(pl_router_t *r, const pl_route_to_t *to, const char *node,
                          uint64_t device_id, uint64_t conn_id, json_t *frame)
{
    pl_env_t e = {
        .op = PL_ENV_DELIVER, .device_id = device_id, .account_id = to->account_id,
        .conn_id = conn_id, .sink = to->sink, .cookie = to->cookie, .frame = frame,
    };
    snprintf(e.from, sizeof(e.from), "%s", r->node);
    pl_buf_t b;
    pl_buf_init(&b);
    pl_env_encode(&e, NULL, 0, &b);
    pub_ev_t *p = pl_xmalloc(sizeof(*p));
    *p = (pub_ev_t){ *to, device_id, frame };
    if (!r->redis || pl_pres_redis_publish(r->redis, node, b.data, b.len, pub_ev_done, p) < 0) {
        free(p);
        pl_rtr_undeliverable(r, to, device_id, PL_ROUTE_UNREACHABLE, frame);
    }
    pl_buf_deinit(&b);
}

/* ---- to one device ------------------------------------------------------------------- */

typedef struct lookup {
    pl_route_to_t to;
    json_t *frame;
} lookup_t;

/* Serves the device from the local registry. Returns false when it is not here. */
static bool deliver_here(pl_router_t *r, const pl_route_to_t *to, json_t *frame)
{
    const pl_pres_entry_t *e = pl_pres_map_get(&r->map, to->device_id);
    if (!e)
        return false;
    if (e->account_id != to->account_id)
        pl_rtr_undeliverable(r, to, to->device_id, PL_ROUTE_OFFLINE, frame);
    else
        local_send(r, e->conn_id, frame);
    return true;
}

static void on_device_loc(pl_router_t *r, int status, const pl_pres_loc_t *locs, size_t n,
                          void *arg)
{
    lookup_t lk = *(lookup_t *)arg;
    free(arg);
    /* The device may have connected here while the lookup was in flight. */
    if (deliver_here(r, &lk.to, lk.frame))
        return;
    if (status < 0)
        pl_rtr_undeliverable(r, &lk.to, lk.to.device_id, PL_ROUTE_UNREACHABLE, lk.frame);
    else if (n == 0 || locs[0].account_id != lk.to.account_id ||
             strcmp(locs[0].node, r->node) == 0)
        pl_rtr_undeliverable(r, &lk.to, lk.to.device_id, PL_ROUTE_OFFLINE, lk.frame);
    else
        publish_event(r, &lk.to, locs[0].node, lk.to.device_id, 0, lk.frame);
}

static void deliver_device(pl_router_t *r, const pl_route_to_t *to, json_t *frame)
{
    if (deliver_here(r, to, frame))
        return;
    if (!r->redis) {
        pl_rtr_undeliverable(r, to, to->device_id, PL_ROUTE_OFFLINE, frame);
        return;
    }
    lookup_t *lk = pl_xmalloc(sizeof(*lk));
    *lk = (lookup_t){ *to, frame };
    if (!redis_up(r) ||
        pl_pres_redis_lookup_device(r->redis, to->device_id, on_device_loc, lk) < 0) {
        free(lk);
        pl_rtr_undeliverable(r, to, to->device_id, PL_ROUTE_UNREACHABLE, frame);
    }
}

/* ---- to every device of a user --------------------------------------------------------- */

/* The devices of the user connected here. Returns how many got the event. */
static size_t deliver_user_here(pl_router_t *r, const pl_route_to_t *to, json_t *frame)
{
    const pl_pres_entry_t *es[USER_DEVICES_MAX];
    size_t n = PL_MIN(pl_pres_map_account(&r->map, to->account_id, es, USER_DEVICES_MAX),
                      USER_DEVICES_MAX), sent = 0;
    for (size_t i = 0; i < n; i++) {
        if (es[i]->device_id == to->except_device)
            continue;
        local_send(r, es[i]->conn_id, json_incref(frame));
        sent++;
    }
    return sent;
}

static void user_done(pl_router_t *r, const pl_route_to_t *to, size_t sent,
                      pl_route_reason_t reason, json_t *frame)
{
    if (sent == 0 && !to->except_device)
        pl_rtr_undeliverable(r, to, 0, reason, frame);
    else
        json_decref(frame);
}

static void on_user_locs(pl_router_t *r, int status, const pl_pres_loc_t *locs, size_t n,
                         void *arg)
{
    lookup_t lk = *(lookup_t *)arg;
    free(arg);
    /* Devices here come from the local registry (it is never stale); the registry
     * supplies the others. */
    size_t sent = deliver_user_here(r, &lk.to, lk.frame);
    for (size_t i = 0; status == 0 && i < n; i++) {
        const pl_pres_loc_t *l = &locs[i];
        if (l->device_id == lk.to.except_device || l->account_id != lk.to.account_id ||
            strcmp(l->node, r->node) == 0)
            continue;
        publish_event(r, &lk.to, l->node, l->device_id, 0, json_incref(lk.frame));
        sent++;
    }
    user_done(r, &lk.to, sent, status < 0 ? PL_ROUTE_UNREACHABLE : PL_ROUTE_OFFLINE,
              lk.frame);
}

static void deliver_user(pl_router_t *r, const pl_route_to_t *to, json_t *frame)
{
    if (redis_up(r)) {
        lookup_t *lk = pl_xmalloc(sizeof(*lk));
        *lk = (lookup_t){ *to, frame };
        if (pl_pres_redis_lookup_user(r->redis, to->account_id, on_user_locs, lk) == 0)
            return;
        free(lk);
    }
    /* Memory backend, or Redis down: this node's devices are all we can reach. */
    user_done(r, to, deliver_user_here(r, to, frame),
              r->redis ? PL_ROUTE_UNREACHABLE : PL_ROUTE_OFFLINE, frame);
}

void pl_rtr_deliver(pl_router_t *r, const pl_route_to_t *to, json_t *frame)
{
    if (to->device_id)
        deliver_device(r, to, frame);
    else
        deliver_user(r, to, frame);
}

void pl_rtr_send_party(pl_router_t *r, const pl_rtr_party_t *p, json_t *frame)
{
    if (strcmp(p->node, r->node) == 0) {
        local_send(r, p->conn_id, frame);
        return;
    }
    pl_route_to_t to = { .account_id = p->account_id, .device_id = p->device_id };
    publish_event(r, &to, p->node, p->device_id, p->conn_id, frame);
}

/* ---- the public entry points (any thread) ---------------------------------------------- */

typedef struct send_msg {
    pl_msg_t msg;
    pl_router_t *r;
    pl_route_to_t to;
    json_t *frame;
} send_msg_t;

static void on_send(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    send_msg_t *m = PL_CONTAINER_OF(msg, send_msg_t, msg);
    if (m->r->stopped)
        json_decref(m->frame);
    else
        pl_rtr_deliver(m->r, &m->to, m->frame);
    free(m);
}

void pl_router_send(pl_router_t *r, const pl_route_to_t *to, json_t *frame)
{
    PL_ASSERT(to->account_id != 0 && json_is_object(frame));
    if (on_presence_thread(r) && !r->stopped) {
        pl_rtr_deliver(r, to, frame);
        return;
    }
    send_msg_t *m = pl_xmalloc(sizeof(*m));
    *m = (send_msg_t){ .msg.fn = on_send, .r = r, .to = *to, .frame = frame };
    pl_loop_post(r->loop, &m->msg);
}

typedef struct query {
    pl_msg_t msg;
    pl_router_t *r;
    uint64_t account_id;
    pl_route_devices_cb cb;
    void *arg;
} query_t;

static void query_answer(pl_router_t *r, query_t *q, int status, const pl_pres_loc_t *locs,
                         size_t n)
{
    pl_route_device_t devs[USER_DEVICES_MAX];
    const pl_pres_entry_t *es[USER_DEVICES_MAX];
    size_t k = PL_MIN(pl_pres_map_account(&r->map, q->account_id, es, USER_DEVICES_MAX),
                      USER_DEVICES_MAX);
    for (size_t i = 0; i < k; i++)
        devs[i] = (pl_route_device_t){ es[i]->device_id, true };
    for (size_t i = 0; i < n && k < USER_DEVICES_MAX; i++)
        if (locs[i].account_id == q->account_id && strcmp(locs[i].node, r->node) != 0)
            devs[k++] = (pl_route_device_t){ locs[i].device_id, false };
    q->cb(status < 0 ? PL_ROUTE_UNREACHABLE : 0, devs, k, q->arg);
    free(q);
}

static void on_query_locs(pl_router_t *r, int status, const pl_pres_loc_t *locs, size_t n,
                          void *arg)
{
    query_answer(r, arg, status, locs, n);
}

static void run_query(pl_router_t *r, query_t *q)
{
    if (redis_up(r) && pl_pres_redis_lookup_user(r->redis, q->account_id, on_query_locs, q) == 0)
        return;
    query_answer(r, q, r->redis ? -1 : 0, NULL, 0);
}

static void on_query(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    query_t *q = PL_CONTAINER_OF(msg, query_t, msg);
    if (q->r->stopped) {
        q->cb(PL_ROUTE_UNREACHABLE, NULL, 0, q->arg);
        free(q);
        return;
    }
    run_query(q->r, q);
}

void pl_router_query_user(pl_router_t *r, uint64_t account_id, pl_route_devices_cb cb,
                          void *arg)
{
    query_t *q = pl_xmalloc(sizeof(*q));
    *q = (query_t){ .msg.fn = on_query, .r = r, .account_id = account_id, .cb = cb,
                    .arg = arg };
    if (on_presence_thread(r) && !r->stopped)
        run_query(r, q);
    else
        pl_loop_post(r->loop, &q->msg);
}

/* ---- kicks: one live connection per device across nodes ------------------------------- */

void pl_rtr_kick(pl_router_t *r, const pl_pres_loc_t *old)
{
    pl_env_t e = { .op = PL_ENV_KICK, .device_id = old->device_id, .conn_id = old->conn_id };
    snprintf(e.from, sizeof(e.from), "%s", r->node);
    pl_buf_t b;
    pl_buf_init(&b);
    pl_env_encode(&e, NULL, 0, &b);
    pl_pres_redis_publish(r->redis, old->node, b.data, b.len, NULL, NULL);
    pl_buf_deinit(&b);
}

static void on_kick(pl_router_t *r, const pl_env_t *e)
{
    const pl_pres_entry_t *mine = pl_pres_map_get(&r->map, e->device_id);
    if (!mine || mine->conn_id != e->conn_id)
        return;
    pl_metric_inc(r->shard, r->m.kicks);
    pl_log_info("presence.kick", "device=%llu conn=%llx new_node=%s",
                (unsigned long long)e->device_id, (unsigned long long)e->conn_id, e->from);
    pl_sig_close(r->gw, e->conn_id, PL_SIG_CLOSE_REPLACED,
                 "replaced by a connection on another node");
}

/* ---- envelopes arriving on this node's channel ----------------------------------------- */

static void bounce(pl_router_t *r, const pl_env_t *in, pl_route_reason_t why)
{
    pl_env_t e = *in;
    e.op = PL_ENV_BOUNCE;
    e.reason = (int)why;
    snprintf(e.from, sizeof(e.from), "%s", r->node);
    pl_buf_t b;
    pl_buf_init(&b);
    pl_env_encode(&e, NULL, 0, &b);
    if (r->redis)
        pl_pres_redis_publish(r->redis, in->from, b.data, b.len, NULL, NULL);
    pl_buf_deinit(&b);
}

static void on_deliver(pl_router_t *r, pl_env_t *e)
{
    const pl_pres_entry_t *mine = pl_pres_map_get(&r->map, e->device_id);
    if (mine && mine->account_id == e->account_id && (!e->conn_id || mine->conn_id == e->conn_id)) {
        local_send(r, mine->conn_id, e->frame);
        e->frame = NULL;
        return;
    }
    pl_metric_inc(r->shard, r->m.route_undeliverable);
    if (e->sink)
        bounce(r, e, PL_ROUTE_OFFLINE);
}

static void on_bounce(pl_router_t *r, pl_env_t *e)
{
    pl_metric_inc(r->shard, r->m.route_bounced);
    pl_route_to_t to = { .account_id = e->account_id, .device_id = e->device_id,
                         .sink = e->sink, .cookie = e->cookie };
    /* Counted once more here: the origin is where the sink hears of it. */
    pl_rtr_undeliverable(r, &to, e->device_id, (pl_route_reason_t)e->reason, e->frame);
    e->frame = NULL;
}

static void on_request(pl_router_t *r, pl_env_t *e);
static void on_response(pl_router_t *r, pl_env_t *e);

void pl_rtr_on_envelope(pl_router_t *r, const char *data, size_t len)
{
    pl_env_t e;
    if (pl_env_decode(data, len, &e) < 0) {
        pl_log_warn("presence.envelope.bad", "len=%zu", len);
        return;
    }
    switch (e.op) {
    case PL_ENV_DELIVER: on_deliver(r, &e); break;
    case PL_ENV_BOUNCE: on_bounce(r, &e); break;
    case PL_ENV_KICK: on_kick(r, &e); break;
    case PL_ENV_REQUEST: on_request(r, &e); break;
    case PL_ENV_RESPONSE: on_response(r, &e); break;
    }
    json_decref(e.frame);
}

/* ---- forwarded requests ------------------------------------------------------------------ */

pl_rtr_rq_t *pl_rtr_rq_new(pl_router_t *r, const pl_sig_req_t *req, const char *home,
                           const char *fail_code)
{
    pl_rtr_rq_t *rq = pl_xcalloc(1, sizeof(*rq));
    snprintf(rq->home, sizeof(rq->home), "%s", home ? home : r->node);
    snprintf(rq->from, sizeof(rq->from), "%s", r->node);
    rq->account_id = req->account_id;
    rq->device_id = req->device_id;
    rq->conn_id = req->conn_id;
    snprintf(rq->username, sizeof(rq->username), "%s", req->username);
    snprintf(rq->type, sizeof(rq->type), "%s", req->type);
    rq->frame = json_deep_copy(req->frame);     /* this copy crosses threads alone */
    rq->fail_code = fail_code;
    rq->pending = pl_sig_defer(req);
    return rq;
}

pl_rtr_rq_t *pl_rtr_rq_notice(pl_router_t *r, const char *home, const char *type,
                              const pl_pres_entry_t *who, json_t *frame)
{
    pl_rtr_rq_t *rq = pl_xcalloc(1, sizeof(*rq));
    snprintf(rq->home, sizeof(rq->home), "%s", home);
    snprintf(rq->from, sizeof(rq->from), "%s", r->node);
    rq->account_id = who->account_id;
    rq->device_id = who->device_id;
    rq->conn_id = who->conn_id;
    snprintf(rq->type, sizeof(rq->type), "%s", type);
    json_object_set_new(frame, "type", json_string(type));
    rq->frame = frame;
    rq->fail_code = "unreachable";
    return rq;
}

void pl_rtr_rq_free(pl_rtr_rq_t *rq)
{
    if (!rq)
        return;
    json_decref(rq->frame);
    free(rq);
}

/* Answers the requester on this node, or publishes the answer to its node. */
static void answer(pl_router_t *r, pl_rtr_rq_t *rq, bool ok, json_t *f)
{
    if (rq->pending) {
        if (ok) {
            pl_sig_pending_reply(r->gw, rq->pending, f);
        } else {
            pl_sig_pending_error(r->gw, rq->pending,
                                 json_string_value(json_object_get(f, "code")),
                                 json_string_value(json_object_get(f, "message")));
            json_decref(f);
        }
        rq->pending = NULL;
    } else if (rq->token && strcmp(rq->from, r->node) != 0 && r->redis) {
        pl_env_t e = { .op = PL_ENV_RESPONSE, .token = rq->token, .ok = ok, .frame = f };
        snprintf(e.from, sizeof(e.from), "%s", r->node);
        pl_buf_t b;
        pl_buf_init(&b);
        pl_env_encode(&e, NULL, 0, &b);
        pl_pres_redis_publish(r->redis, rq->from, b.data, b.len, NULL, NULL);
        pl_buf_deinit(&b);
        json_decref(f);
    } else {
        json_decref(f);
    }
    pl_rtr_rq_free(rq);
}

void pl_rtr_rq_reply(pl_router_t *r, pl_rtr_rq_t *rq, json_t *result)
{
    answer(r, rq, true, result ? result : json_object());
}

void pl_rtr_rq_error(pl_router_t *r, pl_rtr_rq_t *rq, const char *code, const char *message)
{
    answer(r, rq, false, json_pack("{s:s,s:s}", "code", code, "message", message));
}

static void rpc_fail(pl_router_t *r, uint64_t token)
{
    uint64_t v;
    if (!pl_u64map_get(&r->rpcs, token, &v))
        return;
    pl_u64map_del(&r->rpcs, token);
    pl_rtr_rq_t *rq = (pl_rtr_rq_t *)(uintptr_t)v;
    pl_rtr_rq_error(r, rq, rq->fail_code, "the node handling this is unreachable");
}

static void rq_published(pl_router_t *r, long long receivers, void *arg)
{
    if (receivers <= 0)
        rpc_fail(r, (uint64_t)(uintptr_t)arg);
}

static void forward(pl_router_t *r, pl_rtr_rq_t *rq)
{
    pl_env_t e = { .op = PL_ENV_REQUEST, .device_id = rq->device_id,
                   .account_id = rq->account_id, .conn_id = rq->conn_id, .frame = rq->frame };
    snprintf(e.from, sizeof(e.from), "%s", r->node);
    snprintf(e.username, sizeof(e.username), "%s", rq->username);
    if (rq->pending) {
        e.token = ++r->next_token;
        rq->deadline_ms = pl_loop_now_ms(r->loop) + PL_RTR_RPC_TIMEOUT_MS;
        pl_u64map_put(&r->rpcs, e.token, (uint64_t)(uintptr_t)rq);
    }
    pl_buf_t b;
    pl_buf_init(&b);
    pl_env_encode(&e, NULL, 0, &b);
    int rc = pl_pres_redis_publish(r->redis, rq->home, b.data, b.len, e.token ? rq_published : NULL,
                                   (void *)(uintptr_t)e.token);
    pl_buf_deinit(&b);
    if (!e.token)
        pl_rtr_rq_free(rq);         /* a notice: nothing to wait for */
    else if (rc < 0)
        rpc_fail(r, e.token);
}

void pl_rtr_rq_route(pl_router_t *r, pl_rtr_rq_t *rq)
{
    if (strcmp(rq->home, r->node) == 0) {
        if (r->rq_fn)
            r->rq_fn(rq, r->rq_arg);
        else
            pl_rtr_rq_error(r, rq, "internal", "no handler");
        return;
    }
    if (!redis_up(r)) {
        pl_rtr_rq_error(r, rq, rq->fail_code, "the node handling this is unreachable");
        return;
    }
    forward(r, rq);
}

static void on_request(pl_router_t *r, pl_env_t *e)
{
    const char *type = json_string_value(json_object_get(e->frame, "type"));
    if (!type || strlen(type) > PL_SIG_TYPE_MAX)
        return;
    pl_rtr_rq_t *rq = pl_xcalloc(1, sizeof(*rq));
    snprintf(rq->home, sizeof(rq->home), "%s", r->node);
    snprintf(rq->from, sizeof(rq->from), "%s", e->from);
    rq->account_id = e->account_id;
    rq->device_id = e->device_id;
    rq->conn_id = e->conn_id;
    rq->token = e->token;
    snprintf(rq->username, sizeof(rq->username), "%s", e->username);
    snprintf(rq->type, sizeof(rq->type), "%s", type);
    rq->frame = e->frame;
    e->frame = NULL;
    rq->fail_code = "unreachable";
    pl_rtr_rq_route(r, rq);
}

static void on_response(pl_router_t *r, pl_env_t *e)
{
    uint64_t v;
    if (!pl_u64map_get(&r->rpcs, e->token, &v))
        return;                     /* timed out already */
    pl_u64map_del(&r->rpcs, e->token);
    pl_rtr_rq_t *rq = (pl_rtr_rq_t *)(uintptr_t)v;
    json_t *f = e->frame;
    e->frame = NULL;
    if (!e->ok && !json_is_string(json_object_get(f, "code"))) {
        json_decref(f);
        pl_rtr_rq_error(r, rq, "internal", "malformed response");
        return;
    }
    if (!e->ok && !json_is_string(json_object_get(f, "message")))
        json_object_set_new(f, "message", json_string(""));
    answer(r, rq, e->ok, f);
}

void pl_rtr_rpc_sweep(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(t);
    pl_router_t *r = arg;
    uint64_t now = pl_loop_now_ms(loop), expired[64];
    size_t n = 0;
    for (size_t i = 0; i < r->rpcs.cap && n < PL_ARRAY_LEN(expired); i++)
        if (r->rpcs.keys[i] &&
            ((pl_rtr_rq_t *)(uintptr_t)r->rpcs.vals[i])->deadline_ms <= now)
            expired[n++] = r->rpcs.keys[i];
    for (size_t i = 0; i < n; i++)
        rpc_fail(r, expired[i]);
}

void pl_rtr_rpc_fail_all(pl_router_t *r)
{
    while (r->rpcs.count) {
        for (size_t i = 0; i < r->rpcs.cap; i++)
            if (r->rpcs.keys[i]) {
                rpc_fail(r, r->rpcs.keys[i]);
                break;
            }
    }
}

/* ---- busy claims ----------------------------------------------------------------------- */

static void busy_put(pl_router_t *r, uint64_t account_id, uint64_t key, const char *call_id)
{
    size_t n = strlen(call_id) + 1;
    pl_rtr_busy_t *b = pl_xmalloc(sizeof(*b) + n);
    b->key = key;
    memcpy(b->call_id, call_id, n);
    uint64_t old;
    if (pl_u64map_get(&r->busy, account_id, &old))
        free((void *)(uintptr_t)old);
    pl_u64map_put(&r->busy, account_id, (uint64_t)(uintptr_t)b);
}

/* 0 when neither account holds a claim here, else 1 or 2. */
static int busy_local(const pl_router_t *r, const uint64_t acct[2])
{
    for (int i = 0; i < 2; i++)
        if (pl_u64map_get(&r->busy, acct[i], NULL))
            return i + 1;
    return 0;
}

typedef struct claim {
    uint64_t acct[2];
    uint64_t key;
    pl_pres_claim_cb cb;
    void *arg;
    char call_id[];
} claim_t;

static void on_claimed(pl_router_t *r, int outcome, void *arg)
{
    claim_t *c = arg;
    if (outcome < 0)
        outcome = 0;                /* Redis failed meanwhile: the local table decides */
    if (outcome == 0 && busy_local(r, c->acct)) {
        /* Claimed here meanwhile by a call of this node that went the same way. */
        outcome = busy_local(r, c->acct);
        if (r->redis)
            for (int i = 0; i < 2; i++)
                pl_pres_redis_release(r->redis, c->acct[i], c->call_id);
    }
    if (outcome == 0)
        for (int i = 0; i < 2; i++)
            busy_put(r, c->acct[i], c->key, c->call_id);
    c->cb(r, outcome, c->arg);
    free(c);
}

void pl_rtr_busy_claim(pl_router_t *r, const uint64_t acct[2], uint64_t key,
                       const char *call_id, pl_pres_claim_cb cb, void *arg)
{
    int local = busy_local(r, acct);
    if (local) {
        cb(r, local, arg);
        return;
    }
    size_t n = strlen(call_id) + 1;
    claim_t *c = pl_xmalloc(sizeof(*c) + n);
    *c = (claim_t){ .acct = { acct[0], acct[1] }, .key = key, .cb = cb, .arg = arg };
    memcpy(c->call_id, call_id, n);
    /* Redis down: local claims only (degraded, like the rest of routing). */
    if (!redis_up(r) || pl_pres_redis_claim(r->redis, acct, call_id, on_claimed, c) < 0)
        on_claimed(r, 0, c);
}

void pl_rtr_busy_release(pl_router_t *r, uint64_t account_id, uint64_t key,
                         const char *call_id)
{
    uint64_t v;
    if (!pl_u64map_get(&r->busy, account_id, &v) || ((pl_rtr_busy_t *)(uintptr_t)v)->key != key)
        return;
    free((void *)(uintptr_t)v);
    pl_u64map_del(&r->busy, account_id);
    if (redis_up(r))
        pl_pres_redis_release(r->redis, account_id, call_id);
}
