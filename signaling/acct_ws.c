/* acct_ws.c: the accounts frames of parley.v1 (docs/PROTOCOL.md):
 *   auth {token}                       -> auth.result {account_id, device_id, username,
 *                                                      expires_at_ms}
 *   ping                               -> ping.result {time_ms}
 *   devices.list                       -> devices.list.result {devices: [...]}
 *   devices.revoke {device_id}         -> devices.revoke.result {device_id}
 *   logout                             -> logout.result, then close 1000
 *   profile.get {username?}            -> profile.get.result {profile}
 *   profile.update {display_name?, about?, avatar?} -> profile.update.result {profile}
 *
 * What it does not do: SQL (acct_db.c); the auth state machine (conn.c).
 *
 * Threading: handlers and done functions run on the connection's gateway thread. */
#include "signaling/acct_int.h"
#include "core/pl_log.h"

#include <stdio.h>
#include <string.h>

static pl_sig_acct_op_t *ws_op(pl_sig_req_t *req, void *arg, pl_sig_acct_kind_t kind,
                               pl_sig_acct_done_fn done)
{
    pl_sig_acct_op_t *op = acct_op_new(arg, kind);
    op->conn_id = req->conn_id;
    op->thread = req->thread;
    op->account_id = req->account_id;
    op->device_id = req->device_id;
    op->done = done;
    if (kind != ACCT_CHECK_TOKEN)
        op->pending = pl_sig_defer(req);
    return op;
}

static void pending_finish(pl_sig_acct_op_t *op)
{
    if (op->outcome != PL_SIG_ERR_NONE)
        pl_sig_pending_error(op->acc->gw, op->pending, pl_sig_err_code(op->outcome),
                             op->message ? op->message : "");
    else
        pl_sig_pending_reply(op->acc->gw, op->pending, json_incref(op->result));
    op->pending = NULL;
}

/* ---- auth ------------------------------------------------------------------------ */

static void auth_done(pl_sig_acct_op_t *op)
{
    pl_sig_gateway_t *gw = op->acc->gw;
    pl_sig_thread_t *t = &gw->threads[op->thread];
    if (op->outcome != PL_SIG_ERR_NONE) {
        if (op->outcome == PL_SIG_ERR_AUTH_FAILED)
            pl_sig_count_auth_fail(t, op->fail_reason);
        pl_sig_conn_auth_failed(gw, op->conn_id, op->req_id,
            op->outcome == PL_SIG_ERR_AUTH_FAILED ? "auth_failed" : pl_sig_err_code(op->outcome),
            op->message ? op->message : "", PL_SIG_CLOSE_AUTH_FAILED);
        acct_op_free(op);
        return;
    }
    pl_sig_identity_t who = {
        .account_id = op->account_id, .device_id = op->device_id,
        .expires_at_ms = op->expires_at_ms,
    };
    snprintf(who.username, sizeof(who.username), "%s", op->username);
    json_t *result = json_pack("{s:I,s:I,s:s,s:I}", "account_id", (json_int_t)op->account_id,
                               "device_id", (json_int_t)op->device_id, "username", op->username,
                               "expires_at_ms", (json_int_t)op->expires_at_ms);
    pl_sig_conn_authenticated(gw, op->conn_id, op->req_id, &who, result);
    acct_op_free(op);
}

static void h_auth(pl_sig_req_t *req, void *arg)
{
    const char *token = json_string_value(json_object_get(req->frame, "token"));
    pl_sig_acct_op_t *op = ws_op(req, arg, ACCT_CHECK_TOKEN, auth_done);
    op->req_id = req->id ? json_deep_copy(req->id) : NULL;
    pl_sig_token_hash(token, strlen(token), op->token_hash);
    acct_op_submit_to_gateway(op);
}

/* ---- the rest ---------------------------------------------------------------------- */

static void h_ping(pl_sig_req_t *req, void *arg)
{
    PL_UNUSED(arg);
    pl_sig_reply(req, json_pack("{s:I}", "time_ms", (json_int_t)pl_now_wall_ms()));
}

static void plain_done(pl_sig_acct_op_t *op)
{
    pending_finish(op);
    acct_op_free(op);
}

static void devices_done(pl_sig_acct_op_t *op)
{
    if (op->outcome == PL_SIG_ERR_NONE) {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(op->result, "devices"), i, d) {
            uint64_t id = (uint64_t)json_integer_value(json_object_get(d, "id"));
            json_object_set_new(d, "online", json_boolean(pl_sig_device_conn(op->acc->gw, id)));
        }
    }
    plain_done(op);
}

static void h_devices_list(pl_sig_req_t *req, void *arg)
{
    acct_op_submit_to_gateway(ws_op(req, arg, ACCT_DEVICES, devices_done));
}

static void revoke_done(pl_sig_acct_op_t *op)
{
    pl_sig_gateway_t *gw = op->acc->gw;
    bool ok = op->outcome == PL_SIG_ERR_NONE;
    bool self = op->target_id == op->device_id;
    pending_finish(op);
    if (ok) {
        pl_log_info("signaling.device.revoked", "account=%llu device=%llu by_device=%llu",
                    (unsigned long long)op->account_id, (unsigned long long)op->target_id,
                    (unsigned long long)op->device_id);
        /* The reply was queued first, so the requester reads it before any close. */
        if (self)
            pl_sig_close(gw, op->conn_id, PL_SIG_CLOSE_NORMAL, "logged out");
        else
            pl_sig_close_device(gw, op->target_id, PL_SIG_CLOSE_REVOKED, "device revoked");
    }
    acct_op_free(op);
}

static void h_devices_revoke(pl_sig_req_t *req, void *arg)
{
    pl_sig_acct_op_t *op = ws_op(req, arg, ACCT_REVOKE_DEVICE, revoke_done);
    op->target_id = (uint64_t)json_integer_value(json_object_get(req->frame, "device_id"));
    acct_op_submit_to_gateway(op);
}

static void h_logout(pl_sig_req_t *req, void *arg)
{
    pl_sig_acct_op_t *op = ws_op(req, arg, ACCT_REVOKE_DEVICE, revoke_done);
    op->target_id = req->device_id;
    acct_op_submit_to_gateway(op);
}

static void h_profile_get(pl_sig_req_t *req, void *arg)
{
    const char *name = json_string_value(json_object_get(req->frame, "username"));
    pl_sig_acct_op_t *op = ws_op(req, arg, ACCT_PROFILE_GET, plain_done);
    if (name && !pl_sig_username_normalize(name, op->target_user)) {
        op->outcome = PL_SIG_ERR_NOT_FOUND;
        op->message = "no such user";
        plain_done(op);
        return;
    }
    acct_op_submit_to_gateway(op);
}

static void h_profile_update(pl_sig_req_t *req, void *arg)
{
    const char *why = NULL;
    pl_sig_acct_op_t *op = ws_op(req, arg, ACCT_PROFILE_SET, plain_done);
    if (pl_sig_acct_profile_fill(op, req->frame, &why) < 0) {
        op->outcome = PL_SIG_ERR_BAD_FIELD;
        op->message = why;
        plain_done(op);
        return;
    }
    acct_op_submit_to_gateway(op);
}

static const pl_sig_field_t auth_fields[] = {
    { "token", PL_SIG_T_STRING, true, 1, 256 },
};
static const pl_sig_field_t revoke_fields[] = {
    { "device_id", PL_SIG_T_ID, true, 0, 0 },
};
static const pl_sig_field_t profile_get_fields[] = {
    { "username", PL_SIG_T_STRING, false, 1, 256 },
};
static const pl_sig_field_t profile_update_fields[] = {
    { "display_name", PL_SIG_T_STRING, false, 0, PL_SIG_DISPLAY_NAME_MAX },
    { "about", PL_SIG_T_STRING, false, 0, PL_SIG_ABOUT_MAX },
    { "avatar", PL_SIG_T_STRING, false, 0, PL_SIG_AVATAR_MAX },
};

const pl_sig_handler_t pl_sig_acct_handlers[] = {
    { "auth", h_auth, false, auth_fields, PL_ARRAY_LEN(auth_fields) },
    { "ping", h_ping, true, NULL, 0 },
    { "devices.list", h_devices_list, true, NULL, 0 },
    { "devices.revoke", h_devices_revoke, true, revoke_fields, PL_ARRAY_LEN(revoke_fields) },
    { "logout", h_logout, true, NULL, 0 },
    { "profile.get", h_profile_get, true, profile_get_fields, PL_ARRAY_LEN(profile_get_fields) },
    { "profile.update", h_profile_update, true, profile_update_fields,
      PL_ARRAY_LEN(profile_update_fields) },
};
const size_t pl_sig_acct_n_handlers = PL_ARRAY_LEN(pl_sig_acct_handlers);
