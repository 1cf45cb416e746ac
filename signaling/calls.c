/* calls.c: the 1:1 call state machine, on the presence thread of the call's home node
 * (its caller's node; calls_int.h says why). A call is RINGING from the invite until
 * one callee device accepts (ACTIVE), or it ends: rejected, cancelled, missed (ring
 * timeout), hung up, or a party's connection closed. SDP and ICE are relayed only
 * between the caller's device and the device that accepted.
 *
 *   invite  caller   -> query callee devices -> claim both accounts busy -> result
 *                       {call_id, ice_servers}; call.ring to every callee device
 *   ringing callee   -> call.ringing to the caller (once)
 *   accept  callee   -> result {ice_servers}; call.accepted to the caller;
 *                       call.answered_elsewhere {answer:"accepted"} to the callee's others
 *   reject  callee   -> call.rejected to the caller; answered_elsewhere {"rejected"}
 *   cancel  caller   -> call.cancelled to the callee's devices
 *   hangup  either   -> call.ended {reason:"hangup"} to the other (ringing: cancel/reject)
 *   sdp/ice a party  -> call.sdp / call.ice to the other party
 *   timeout          -> call.missed to the caller and to the callee's devices
 *   leave   (a party's connection closed) -> call.ended / call.cancelled {"disconnected"}
 *
 * What it does not do: parse frames for shape (the gateway's tables and calls_ws.c do),
 * media, group calls (the SFU).
 *
 * Threading: presence thread only. */
#include "signaling/calls_int.h"
#include "core/pl_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

enum { CALL_RINGING = 1, CALL_ACTIVE };

typedef struct pl_call {
    pl_calls_t *c;
    char id[PL_CALL_ID_MAX + 1];
    uint64_t key;
    pl_rtr_party_t caller;
    pl_rtr_party_t callee;              /* the device that accepted (0 while ringing) */
    uint64_t callee_account;
    char caller_name[64];
    bool video;
    bool ringing_told;
    uint8_t state;
    uint64_t invited_us;
    pl_timer_t ring_timer;
} pl_call_t;

/* A device of this node in a call (possibly homed elsewhere). */
typedef struct pl_call_peer {
    uint64_t conn_id;
    char call_id[PL_CALL_ID_MAX + 1];
    char home[PL_NODE_MAX + 1];
} pl_call_peer_t;

/* ---- ids ----------------------------------------------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

bool pl_call_id_parse(const char *id, uint64_t *key, char home[PL_NODE_MAX + 1])
{
    uint64_t k = 0;
    for (int i = 0; i < PL_CALL_ID_HEX; i++) {
        int v = hexval(id[i]);
        if (v < 0)
            return false;
        if (i < 16)
            k = k << 4 | (uint64_t)v;
    }
    const char *node = id + PL_CALL_ID_HEX;
    if (*node != '@' || !pl_node_name_ok(node + 1) || k == 0)
        return false;
    *key = k;
    memcpy(home, node + 1, strlen(node + 1) + 1);
    return true;
}

static void new_call_id(pl_calls_t *c, pl_call_t *call)
{
    uint8_t rnd[PL_CALL_ID_HEX / 2];
    do {
        if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
            uint64_t t = pl_now_mono_us() ^ (uint64_t)(uintptr_t)call;
            memcpy(rnd, &t, sizeof(t));             /* ids need to be unique, not secret */
        }
        char *p = call->id;
        for (size_t i = 0; i < sizeof(rnd); i++)
            p += sprintf(p, "%02x", rnd[i]);
        snprintf(p, sizeof(call->id) - PL_CALL_ID_HEX, "@%s", c->r->node);
        char home[PL_NODE_MAX + 1];
        PL_ASSERT(pl_call_id_parse(call->id, &call->key, home));
    } while (pl_u64map_get(&c->calls, call->key, NULL));
}

/* ---- helpers ------------------------------------------------------------------------- */

static pl_rtr_party_t party_of(const pl_rtr_rq_t *rq)
{
    pl_rtr_party_t p = { .account_id = rq->account_id, .device_id = rq->device_id,
                         .conn_id = rq->conn_id };
    memcpy(p.node, rq->from, sizeof(p.node));
    return p;
}

static void push(pl_calls_t *c, const pl_rtr_party_t *to, const char *type, json_t *fields)
{
    pl_rtr_send_party(c->r, to, pl_sig_frame_make(type, NULL, fields));
}

/* To every online device of the callee (but except_device). */
static void push_callee_devices(pl_calls_t *c, const pl_call_t *call, uint64_t except_device,
                                const char *type, json_t *fields)
{
    pl_route_to_t to = { .account_id = call->callee_account, .except_device = except_device,
                         .sink = c->sink };
    pl_rtr_deliver(c->r, &to, pl_sig_frame_make(type, NULL, fields));
}

static bool is_caller(const pl_call_t *call, const pl_rtr_rq_t *rq)
{
    return rq->device_id == call->caller.device_id && rq->account_id == call->caller.account_id;
}

static bool is_callee_device(const pl_call_t *call, const pl_rtr_rq_t *rq)
{
    return call->state == CALL_ACTIVE && rq->device_id == call->callee.device_id &&
           rq->account_id == call->callee_account;
}

static void peer_put(pl_calls_t *c, uint64_t device_id, uint64_t conn_id, const char *call_id,
                     const char *home)
{
    pl_call_peer_t *p = pl_xmalloc(sizeof(*p));
    p->conn_id = conn_id;
    snprintf(p->call_id, sizeof(p->call_id), "%s", call_id);
    snprintf(p->home, sizeof(p->home), "%s", home);
    uint64_t old;
    if (pl_u64map_get(&c->peers, device_id, &old))
        free((void *)(uintptr_t)old);
    pl_u64map_put(&c->peers, device_id, (uint64_t)(uintptr_t)p);
}

/* Forgets device's peer entry if it is for this call. */
static void peer_drop(pl_calls_t *c, uint64_t device_id, const char *call_id)
{
    uint64_t v;
    if (!device_id || !pl_u64map_get(&c->peers, device_id, &v))
        return;
    pl_call_peer_t *p = (pl_call_peer_t *)(uintptr_t)v;
    if (strcmp(p->call_id, call_id) != 0)
        return;
    free(p);
    pl_u64map_del(&c->peers, device_id);
}

static void end_call(pl_call_t *call)
{
    pl_calls_t *c = call->c;
    pl_timer_stop(c->r->loop, &call->ring_timer);
    pl_rtr_busy_release(c->r, call->caller.account_id, call->key, call->id);
    pl_rtr_busy_release(c->r, call->callee_account, call->key, call->id);
    if (strcmp(call->caller.node, c->r->node) == 0)
        peer_drop(c, call->caller.device_id, call->id);
    if (strcmp(call->callee.node, c->r->node) == 0)
        peer_drop(c, call->callee.device_id, call->id);
    pl_u64map_del(&c->calls, call->key);
    pl_metric_inc(c->r->shard, c->m.ended);
    pl_metric_gauge_add(c->r->shard, c->m.active, -1);
    free(call);
}

static json_t *call_ref(const pl_call_t *call)
{
    return json_pack("{s:s}", "call_id", call->id);
}

/* ---- invite ------------------------------------------------------------------------- */

typedef struct invite {
    pl_calls_t *c;
    pl_rtr_rq_t *rq;
    pl_call_t *call;
} invite_t;

static void ring_timeout(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(t);
    pl_call_t *call = arg;
    pl_calls_t *c = call->c;
    json_t *f = json_pack("{s:s,s:I,s:I,s:s}", "call_id", call->id, "caller_id",
                          (json_int_t)call->caller.account_id, "callee_id",
                          (json_int_t)call->callee_account, "media",
                          call->video ? "video" : "audio");
    push(c, &call->caller, "call.missed", json_incref(f));
    push_callee_devices(c, call, 0, "call.missed", f);
    pl_metric_inc(c->r->shard, c->m.missed);
    pl_log_info("calls.missed", "call=%s", call->id);
    end_call(call);
}

static void invite_claimed(pl_router_t *r, int outcome, void *arg)
{
    invite_t *iv = arg;
    pl_calls_t *c = iv->c;
    pl_call_t *call = iv->call;
    pl_rtr_rq_t *rq = iv->rq;
    free(iv);
    if (outcome != 0) {
        if (outcome == 2)
            pl_metric_inc(r->shard, c->m.busy);
        pl_rtr_rq_error(r, rq, outcome == 2 ? "busy" : "already_in_call",
                        outcome == 2 ? "the callee is in another call"
                                     : "you are in another call");
        free(call);
        return;
    }
    pl_u64map_put(&c->calls, call->key, (uint64_t)(uintptr_t)call);
    pl_metric_gauge_add(r->shard, c->m.active, 1);
    peer_put(c, call->caller.device_id, call->caller.conn_id, call->id, r->node);
    pl_timer_init(&call->ring_timer);
    pl_timer_start(r->loop, &call->ring_timer, c->ring_timeout_ms, 0, ring_timeout, call);
    const char *media = call->video ? "video" : "audio";
    pl_rtr_rq_reply(r, rq, json_pack("{s:s,s:I,s:s,s:o}", "call_id", call->id, "callee_id",
                                     (json_int_t)call->callee_account, "media", media,
                                     "ice_servers",
                                     pl_calls_ice_servers(c->ice, call->caller.account_id)));
    push_callee_devices(c, call, 0, "call.ring",
                        json_pack("{s:s,s:I,s:s,s:I,s:s,s:o}", "call_id", call->id,
                                  "caller_id", (json_int_t)call->caller.account_id,
                                  "caller_username", call->caller_name, "caller_device_id",
                                  (json_int_t)call->caller.device_id, "media", media,
                                  "ice_servers",
                                  pl_calls_ice_servers(c->ice, call->callee_account)));
    pl_log_info("calls.invite", "call=%s caller=%llu device=%llu callee=%llu media=%s",
                call->id, (unsigned long long)call->caller.account_id,
                (unsigned long long)call->caller.device_id,
                (unsigned long long)call->callee_account, media);
}

static void invite_devices(int status, const pl_route_device_t *devs, size_t n, void *arg)
{
    invite_t *iv = arg;
    pl_calls_t *c = iv->c;
    if (n == 0) {
        pl_metric_inc(c->r->shard, c->m.offline);
        pl_rtr_rq_error(c->r, iv->rq, status ? "callee_unreachable" : "callee_offline",
                        status ? "the callee's node cannot be reached"
                               : "the callee has no device online");
        free(iv->call);
        free(iv);
        return;
    }
    PL_UNUSED(devs);
    uint64_t acct[2] = { iv->call->caller.account_id, iv->call->callee_account };
    pl_rtr_busy_claim(c->r, acct, iv->call->key, iv->call->id, invite_claimed, iv);
}

static void on_invite(pl_calls_t *c, pl_rtr_rq_t *rq)
{
    json_t *f = rq->frame;
    uint64_t callee = (uint64_t)json_integer_value(json_object_get(f, "callee_id"));
    const char *media = json_string_value(json_object_get(f, "media"));
    pl_metric_inc(c->r->shard, c->m.invites);
    if (!callee) {
        pl_rtr_rq_error(c->r, rq, "bad_field", "callee_id or callee is required");
        return;
    }
    if (callee == rq->account_id) {
        pl_rtr_rq_error(c->r, rq, "cannot_call_self", "you cannot call yourself");
        return;
    }
    if (c->calls.count >= c->max_calls) {
        pl_rtr_rq_error(c->r, rq, "too_many_calls", "this server has too many calls");
        return;
    }
    pl_call_t *call = pl_xcalloc(1, sizeof(*call));
    call->c = c;
    call->caller = party_of(rq);
    call->callee_account = callee;
    call->video = media && strcmp(media, "video") == 0;
    call->state = CALL_RINGING;
    call->invited_us = pl_now_mono_us();
    snprintf(call->caller_name, sizeof(call->caller_name), "%s", rq->username);
    new_call_id(c, call);
    invite_t *iv = pl_xmalloc(sizeof(*iv));
    *iv = (invite_t){ c, rq, call };
    pl_router_query_user(c->r, callee, invite_devices, iv);
}

/* ---- answers from the callee ------------------------------------------------------- */

static void on_ringing(pl_calls_t *c, pl_call_t *call, pl_rtr_rq_t *rq)
{
    if (call->state == CALL_RINGING && !call->ringing_told) {
        call->ringing_told = true;
        push(c, &call->caller, "call.ringing",
             json_pack("{s:s,s:I}", "call_id", call->id, "device_id", (json_int_t)rq->device_id));
    }
    pl_rtr_rq_reply(c->r, rq, call_ref(call));
}

static void on_accept(pl_calls_t *c, pl_call_t *call, pl_rtr_rq_t *rq)
{
    if (call->state != CALL_RINGING) {
        pl_rtr_rq_error(c->r, rq, "bad_state", "the call was already answered");
        return;
    }
    pl_timer_stop(c->r->loop, &call->ring_timer);
    call->state = CALL_ACTIVE;
    call->callee = party_of(rq);
    double setup_s = (double)(pl_now_mono_us() - call->invited_us) / 1e6;
    pl_metric_inc(c->r->shard, c->m.answered);
    pl_metric_observe(c->r->shard, c->m.setup, setup_s);
    /* The reply frees rq: everything below uses the call's copy of the party. */
    pl_rtr_rq_reply(c->r, rq, json_pack("{s:s,s:o}", "call_id", call->id, "ice_servers",
                                        pl_calls_ice_servers(c->ice, call->callee_account)));
    push(c, &call->caller, "call.accepted",
         json_pack("{s:s,s:I}", "call_id", call->id, "device_id",
                   (json_int_t)call->callee.device_id));
    push_callee_devices(c, call, call->callee.device_id, "call.answered_elsewhere",
                        json_pack("{s:s,s:s}", "call_id", call->id, "answer", "accepted"));
    pl_log_info("calls.answered", "call=%s device=%llu setup_ms=%.0f", call->id,
                (unsigned long long)call->callee.device_id, setup_s * 1000);
}

static void on_reject(pl_calls_t *c, pl_call_t *call, pl_rtr_rq_t *rq)
{
    if (call->state != CALL_RINGING) {
        pl_rtr_rq_error(c->r, rq, "bad_state", "the call was already answered");
        return;
    }
    uint64_t by_device = rq->device_id;
    pl_rtr_rq_reply(c->r, rq, call_ref(call));      /* frees rq */
    push(c, &call->caller, "call.rejected", call_ref(call));
    push_callee_devices(c, call, by_device, "call.answered_elsewhere",
                        json_pack("{s:s,s:s}", "call_id", call->id, "answer", "rejected"));
    pl_metric_inc(c->r->shard, c->m.rejected);
    pl_log_info("calls.rejected", "call=%s", call->id);
    end_call(call);
}

/* ---- the caller gives up, either party hangs up, a party leaves ------------------ */

static void cancel_ringing(pl_calls_t *c, pl_call_t *call, const char *reason)
{
    push_callee_devices(c, call, 0, "call.cancelled",
                        json_pack("{s:s,s:s}", "call_id", call->id, "reason", reason));
    pl_metric_inc(c->r->shard, c->m.cancelled);
    pl_log_info("calls.cancelled", "call=%s reason=%s", call->id, reason);
    end_call(call);
}

static void hang_up(pl_calls_t *c, pl_call_t *call, bool by_caller, const char *reason)
{
    push(c, by_caller ? &call->callee : &call->caller, "call.ended",
         json_pack("{s:s,s:s}", "call_id", call->id, "reason", reason));
    pl_log_info("calls.ended", "call=%s by=%s reason=%s", call->id,
                by_caller ? "caller" : "callee", reason);
    end_call(call);
}

static void on_cancel(pl_calls_t *c, pl_call_t *call, pl_rtr_rq_t *rq)
{
    if (call->state != CALL_RINGING) {
        pl_rtr_rq_error(c->r, rq, "bad_state", "the call was answered: hang up instead");
        return;
    }
    pl_rtr_rq_reply(c->r, rq, call_ref(call));
    cancel_ringing(c, call, "cancelled");
}

static void on_hangup(pl_calls_t *c, pl_call_t *call, pl_rtr_rq_t *rq)
{
    if (call->state == CALL_RINGING) {
        if (is_caller(call, rq))
            on_cancel(c, call, rq);
        else
            on_reject(c, call, rq);
        return;
    }
    bool by_caller = is_caller(call, rq);
    pl_rtr_rq_reply(c->r, rq, call_ref(call));      /* frees rq */
    hang_up(c, call, by_caller, "hangup");
}

static void on_leave(pl_calls_t *c, pl_call_t *call, pl_rtr_rq_t *rq)
{
    bool caller = is_caller(call, rq) && rq->conn_id == call->caller.conn_id;
    bool callee = is_callee_device(call, rq) && rq->conn_id == call->callee.conn_id;
    if (caller && call->state == CALL_RINGING)
        cancel_ringing(c, call, "disconnected");
    else if (caller || callee)
        hang_up(c, call, caller, "disconnected");
    pl_rtr_rq_free(rq);
}

/* ---- media negotiation relay -------------------------------------------------------- */

/* The relayed candidate: only RTCIceCandidateInit's members. */
static json_t *candidate_copy(const json_t *in)
{
    json_t *out = json_object();
    static const char *const keys[] = { "candidate", "sdpMid", "sdpMLineIndex",
                                        "usernameFragment" };
    for (size_t i = 0; i < PL_ARRAY_LEN(keys); i++) {
        json_t *v = json_object_get(in, keys[i]);
        if (v)
            json_object_set(out, keys[i], v);
    }
    return out;
}

static void on_relay(pl_calls_t *c, pl_call_t *call, pl_rtr_rq_t *rq, bool sdp)
{
    pl_rtr_party_t *to = is_caller(call, rq) ? &call->callee : &call->caller;
    json_t *f;
    if (call->state != CALL_ACTIVE) {
        pl_rtr_rq_error(c->r, rq, "bad_state", "the call has not been answered yet");
        return;
    }
    if (sdp)
        f = json_pack("{s:s,s:I,s:O,s:O}", "call_id", call->id, "from_device_id",
                      (json_int_t)rq->device_id, "sdp_type",
                      json_object_get(rq->frame, "sdp_type"), "sdp",
                      json_object_get(rq->frame, "sdp"));
    else
        f = json_pack("{s:s,s:I,s:o}", "call_id", call->id, "from_device_id",
                      (json_int_t)rq->device_id, "candidate",
                      candidate_copy(json_object_get(rq->frame, "candidate")));
    if (!f) {                           /* members checked where the frame came in */
        pl_rtr_rq_error(c->r, rq, "bad_field", "sdp_type and sdp are required");
        return;
    }
    push(c, to, sdp ? "call.sdp" : "call.ice", f);
    pl_rtr_rq_reply(c->r, rq, call_ref(call));
}

/* ---- dispatch ------------------------------------------------------------------------- */

static pl_call_t *find_call(pl_calls_t *c, const pl_rtr_rq_t *rq)
{
    const char *id = json_string_value(json_object_get(rq->frame, "call_id"));
    char home[PL_NODE_MAX + 1];
    uint64_t key, v;
    if (!id || !pl_call_id_parse(id, &key, home) || !pl_u64map_get(&c->calls, key, &v))
        return NULL;
    pl_call_t *call = (pl_call_t *)(uintptr_t)v;
    return strcmp(call->id, id) == 0 ? call : NULL;
}

/* Who may send what: the caller's device; any device of the callee while it rings; the
 * device that accepted once active. Everyone else is not in the call. */
static bool may_act(const pl_call_t *call, const pl_rtr_rq_t *rq)
{
    if (is_caller(call, rq))
        return true;
    if (call->state == CALL_RINGING)
        return rq->account_id == call->callee_account;
    return is_callee_device(call, rq);
}

static bool callee_only(const char *type)
{
    return !strcmp(type, "call.ringing") || !strcmp(type, "call.accept") ||
           !strcmp(type, "call.reject");
}

void pl_calls_on_rq(pl_rtr_rq_t *rq, void *arg)
{
    pl_calls_t *c = arg;
    if (strcmp(rq->type, "call.invite") == 0) {
        on_invite(c, rq);
        return;
    }
    pl_call_t *call = find_call(c, rq);
    if (!call || !may_act(call, rq)) {
        if (strcmp(rq->type, "call.leave") == 0)
            pl_rtr_rq_free(rq);
        else
            pl_rtr_rq_error(c->r, rq, "not_in_call", "no such call, or you are not in it");
        return;
    }
    const char *t = rq->type;
    if (callee_only(t) && is_caller(call, rq)) {
        pl_rtr_rq_error(c->r, rq, "bad_state", "only the callee can do that");
        return;
    }
    if (!strcmp(t, "call.ringing")) on_ringing(c, call, rq);
    else if (!strcmp(t, "call.accept")) on_accept(c, call, rq);
    else if (!strcmp(t, "call.reject")) on_reject(c, call, rq);
    else if (!strcmp(t, "call.cancel")) {
        if (is_caller(call, rq))
            on_cancel(c, call, rq);
        else
            pl_rtr_rq_error(c->r, rq, "bad_state", "only the caller can cancel");
    }
    else if (!strcmp(t, "call.hangup")) on_hangup(c, call, rq);
    else if (!strcmp(t, "call.sdp")) on_relay(c, call, rq, true);
    else if (!strcmp(t, "call.ice")) on_relay(c, call, rq, false);
    else if (!strcmp(t, "call.leave")) on_leave(c, call, rq);
    else pl_rtr_rq_error(c->r, rq, "unknown_type", "unknown call frame");
}

/* ---- this node's devices in calls ------------------------------------------------------ */

void pl_calls_note_outgoing(pl_calls_t *c, const pl_rtr_rq_t *rq)
{
    if (strcmp(rq->type, "call.accept") != 0)
        return;
    char home[PL_NODE_MAX + 1];
    uint64_t key;
    const char *id = json_string_value(json_object_get(rq->frame, "call_id"));
    if (id && pl_call_id_parse(id, &key, home))
        peer_put(c, rq->device_id, rq->conn_id, id, home);
}

void pl_calls_on_close(pl_router_t *r, const pl_pres_entry_t *gone, void *arg)
{
    pl_calls_t *c = arg;
    uint64_t v;
    if (!pl_u64map_get(&c->peers, gone->device_id, &v))
        return;
    pl_call_peer_t *p = (pl_call_peer_t *)(uintptr_t)v;
    pl_u64map_del(&c->peers, gone->device_id);
    if (p->conn_id == gone->conn_id)
        pl_rtr_rq_route(r, pl_rtr_rq_notice(r, p->home, "call.leave", gone,
                                            json_pack("{s:s}", "call_id", p->call_id)));
    free(p);
}

void pl_calls_init_state(pl_calls_t *c)
{
    pl_u64map_init(&c->calls);
    pl_u64map_init(&c->peers);
}

void pl_calls_on_stop(pl_router_t *r, void *arg)
{
    pl_calls_t *c = arg;
    for (size_t i = 0; i < c->calls.cap; i++)
        if (c->calls.keys[i]) {
            pl_call_t *call = (pl_call_t *)(uintptr_t)c->calls.vals[i];
            pl_timer_stop(r->loop, &call->ring_timer);
            free(call);
        }
    for (size_t i = 0; i < c->peers.cap; i++)
        if (c->peers.keys[i])
            free((void *)(uintptr_t)c->peers.vals[i]);
    pl_u64map_deinit(&c->calls);
    pl_u64map_deinit(&c->peers);
    pl_calls_ice_deinit(c->ice);
    free(c->ice);
    c->ice = NULL;
}
