/* calls_ws.c: the call.* frames of parley.v1 (docs/PROTOCOL.md "Calls") on the gateway
 * side: field tables, the checks a table cannot express (media, call id format, SDP
 * type, ICE candidate members), the username -> account id lookup for call.invite
 * {callee}, and turning each frame into a request for the call's home node.
 *
 * What it does not do: any call state (calls.c, on the presence thread).
 *
 * Threading: handlers run on the connection's gateway thread and only post; the store
 * lookup runs on the store thread and answers on the presence thread. */
#include "signaling/calls_int.h"
#include "signaling/acct_int.h"

#include <string.h>

/* ---- posting a request to the presence thread ------------------------------------- */

static void rq_posted(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    pl_rtr_rq_t *rq = PL_CONTAINER_OF(msg, pl_rtr_rq_t, msg);
    pl_calls_t *c = rq->user;
    if (c->r->stopped) {
        pl_rtr_rq_error(c->r, rq, "unavailable", "the server is shutting down");
        return;
    }
    pl_calls_note_outgoing(c, rq);
    pl_rtr_rq_route(c->r, rq);
}

static void post_rq(pl_calls_t *c, pl_rtr_rq_t *rq)
{
    rq->msg.fn = rq_posted;
    rq->user = c;
    pl_loop_post(c->r->loop, &rq->msg);
}

/* ---- call.invite -------------------------------------------------------------------- */

typedef struct name_lookup {
    pl_store_req_t req;
    pl_calls_t *c;
    pl_rtr_rq_t *rq;
    char username[PL_SIG_USERNAME_MAX + 1];
    uint64_t account_id;
} name_lookup_t;

static int lookup_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    name_lookup_t *l = PL_CONTAINER_OF(req, name_lookup_t, req);
    sqlite3_stmt *st = pl_store_prepare(conn, "SELECT id FROM accounts WHERE username = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_text(st, 1, l->username, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        l->account_id = (uint64_t)sqlite3_column_int64(st, 0);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : pl_store_err(rc);
}

/* On the presence thread. */
static void lookup_done(pl_store_req_t *req)
{
    name_lookup_t *l = PL_CONTAINER_OF(req, name_lookup_t, req);
    pl_calls_t *c = l->c;
    pl_rtr_rq_t *rq = l->rq;
    if (req->status < 0)
        pl_rtr_rq_error(c->r, rq, "internal", "storage error");
    else if (!l->account_id)
        pl_rtr_rq_error(c->r, rq, "not_found", "no such user");
    else if (c->r->stopped)
        pl_rtr_rq_error(c->r, rq, "unavailable", "the server is shutting down");
    else {
        json_object_set_new(rq->frame, "callee_id", json_integer((json_int_t)l->account_id));
        pl_rtr_rq_route(c->r, rq);
    }
    free(l);
}

static void h_invite(pl_sig_req_t *req, void *arg)
{
    pl_calls_t *c = arg;
    const char *media = json_string_value(json_object_get(req->frame, "media"));
    json_t *id = json_object_get(req->frame, "callee_id");
    const char *name = json_string_value(json_object_get(req->frame, "callee"));
    char norm[PL_SIG_USERNAME_MAX + 1];
    if (strcmp(media, "audio") != 0 && strcmp(media, "video") != 0) {
        pl_sig_reply_error(req, "bad_field", "media: expected \"audio\" or \"video\"");
        return;
    }
    if (!id && !name) {
        pl_sig_reply_error(req, "bad_field", "callee_id or callee is required");
        return;
    }
    if (!id && !pl_sig_username_normalize(name, norm)) {
        pl_sig_reply_error(req, "not_found", "no such user");
        return;
    }
    pl_rtr_rq_t *rq = pl_rtr_rq_new(c->r, req, NULL, "unreachable");
    if (id) {
        post_rq(c, rq);
        return;
    }
    name_lookup_t *l = pl_xcalloc(1, sizeof(*l));
    l->req.exec = lookup_exec;
    l->req.done = lookup_done;
    l->req.reply = pl_store_reply_loop(c->r->loop);
    l->c = c;
    l->rq = rq;
    memcpy(l->username, norm, sizeof(norm));
    pl_store_submit(c->store, &l->req);
}

/* ---- frames about an existing call ---------------------------------------------------- */

/* The call's home node from the frame's call_id; replies bad_field when malformed. */
static bool call_home(pl_sig_req_t *req, char home[PL_NODE_MAX + 1])
{
    uint64_t key;
    const char *id = json_string_value(json_object_get(req->frame, "call_id"));
    if (pl_call_id_parse(id, &key, home))
        return true;
    pl_sig_reply_error(req, "bad_field", "call_id: not a call id");
    return false;
}

static void h_call(pl_sig_req_t *req, void *arg)
{
    pl_calls_t *c = arg;
    char home[PL_NODE_MAX + 1];
    if (call_home(req, home))
        post_rq(c, pl_rtr_rq_new(c->r, req, home, "not_in_call"));
}

static void h_sdp(pl_sig_req_t *req, void *arg)
{
    const char *t = json_string_value(json_object_get(req->frame, "sdp_type"));
    if (strcmp(t, "offer") != 0 && strcmp(t, "answer") != 0 && strcmp(t, "pranswer") != 0) {
        pl_sig_reply_error(req, "bad_field", "sdp_type: expected offer, answer or pranswer");
        return;
    }
    h_call(req, arg);
}

/* RTCIceCandidateInit: candidate (may be "" for end-of-candidates), and optional
 * sdpMid, sdpMLineIndex, usernameFragment (null allowed, as browsers send them). */
static const char *candidate_problem(const json_t *cand)
{
    const json_t *v = json_object_get(cand, "candidate");
    if (!json_is_string(v) || json_string_length(v) > 4096)
        return "candidate.candidate: expected a string of at most 4096 bytes";
    v = json_object_get(cand, "sdpMid");
    if (v && !json_is_null(v) && (!json_is_string(v) || json_string_length(v) > 256))
        return "candidate.sdpMid: expected a short string or null";
    v = json_object_get(cand, "sdpMLineIndex");
    if (v && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535))
        return "candidate.sdpMLineIndex: expected an integer 0..65535 or null";
    v = json_object_get(cand, "usernameFragment");
    if (v && !json_is_null(v) && (!json_is_string(v) || json_string_length(v) > 256))
        return "candidate.usernameFragment: expected a short string or null";
    return NULL;
}

static void h_ice(pl_sig_req_t *req, void *arg)
{
    const char *why = candidate_problem(json_object_get(req->frame, "candidate"));
    if (why) {
        pl_sig_reply_error(req, "bad_field", why);
        return;
    }
    h_call(req, arg);
}

/* ---- tables --------------------------------------------------------------------------- */

static const pl_sig_field_t invite_fields[] = {
    { "callee_id", PL_SIG_T_ID, false, 0, 0 },
    { "callee", PL_SIG_T_STRING, false, 1, 64 },
    { "media", PL_SIG_T_STRING, true, 1, 16 },
};
static const pl_sig_field_t call_fields[] = {
    { "call_id", PL_SIG_T_STRING, true, 1, PL_CALL_ID_MAX },
};
static const pl_sig_field_t sdp_fields[] = {
    { "call_id", PL_SIG_T_STRING, true, 1, PL_CALL_ID_MAX },
    { "sdp_type", PL_SIG_T_STRING, true, 1, 16 },
    { "sdp", PL_SIG_T_STRING, true, 1, 1 << 20 },
};
static const pl_sig_field_t ice_fields[] = {
    { "call_id", PL_SIG_T_STRING, true, 1, PL_CALL_ID_MAX },
    { "candidate", PL_SIG_T_OBJECT, true, 0, 0 },
};

#define CALL_FRAME(type, fn, f) { type, fn, true, f, PL_ARRAY_LEN(f) }
const pl_sig_handler_t pl_calls_handlers[] = {
    CALL_FRAME("call.invite", h_invite, invite_fields),
    CALL_FRAME("call.ringing", h_call, call_fields),
    CALL_FRAME("call.accept", h_call, call_fields),
    CALL_FRAME("call.reject", h_call, call_fields),
    CALL_FRAME("call.cancel", h_call, call_fields),
    CALL_FRAME("call.hangup", h_call, call_fields),
    CALL_FRAME("call.sdp", h_sdp, sdp_fields),
    CALL_FRAME("call.ice", h_ice, ice_fields),
};
const size_t pl_calls_n_handlers = PL_ARRAY_LEN(pl_calls_handlers);

const char *const pl_calls_push_types[] = {
    "call.ring", "call.ringing", "call.accepted", "call.rejected", "call.answered_elsewhere",
    "call.cancelled", "call.ended", "call.missed", "call.sdp", "call.ice",
};
const size_t pl_calls_n_push_types = PL_ARRAY_LEN(pl_calls_push_types);
