/* acct_http.c: the accounts HTTP API (docs/PROTOCOL.md "HTTP API"):
 *   POST   /v1/register          {username, password, device_name?, display_name?}
 *   POST   /v1/login             {username, password, device_name}
 *   POST   /v1/logout            (Bearer)
 *   GET    /v1/devices           (Bearer)
 *   DELETE /v1/devices/{id}      (Bearer)
 *   GET    /v1/profile           (Bearer)  own profile
 *   GET    /v1/profile/{name}    (Bearer)
 *   POST   /v1/profile           (Bearer)  {display_name?, about?, avatar?}
 * plus the input rules shared with the WebSocket handlers and the login rate limits.
 *
 * What it does not do: password hashing (acct_kdf.c), SQL (acct_db.c).
 *
 * Threading: route functions and done functions run on the transaction's gateway
 * thread; the rate-limit helpers on any thread. */
#include "signaling/acct_int.h"
#include "core/pl_log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- input rules ------------------------------------------------------------------- */

bool pl_sig_username_normalize(const char *in, char out[PL_SIG_USERNAME_MAX + 1])
{
    size_t n = strlen(in);
    if (n < 3 || n > PL_SIG_USERNAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = (char)tolower((unsigned char)in[i]);
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
            return false;
        out[i] = c;
    }
    out[n] = '\0';
    return true;
}

bool pl_sig_text_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

bool pl_sig_asset_id_ok(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.:-", *s))
            return false;
    return true;
}

bool pl_sig_acct_rate_ok(pl_sig_accounts_t *acc, const char *ip, const char *username,
                         uint64_t *retry_ms)
{
    uint64_t now = pl_now_mono_ms();
    double ip_rate = atomic_load(&acc->ip_per_min) / 60.0;
    double user_rate = atomic_load(&acc->user_per_min) / 60.0;
    if (!pl_sig_limiter_take(acc->ip_limiter, ip, now, ip_rate,
                             atomic_load(&acc->ip_burst), retry_ms))
        return false;
    return !username || pl_sig_limiter_take(acc->user_limiter, username, now, user_rate,
                                            atomic_load(&acc->user_burst), retry_ms);
}

json_t *pl_sig_acct_profile_json(const char *username, const char *display, const char *about,
                                 const char *avatar)
{
    return json_pack("{s:s,s:s,s:s,s:s}", "username", username, "display_name", display,
                     "about", about, "avatar", avatar);
}

/* ---- helpers ---------------------------------------------------------------------- */

static int http_status(pl_sig_err_t e)
{
    switch (e) {
    case PL_SIG_ERR_AUTH_REQUIRED:
    case PL_SIG_ERR_AUTH_FAILED:
    case PL_SIG_ERR_BAD_CREDENTIALS: return 401;
    case PL_SIG_ERR_NOT_FOUND: return 404;
    case PL_SIG_ERR_USERNAME_TAKEN:
    case PL_SIG_ERR_TOO_MANY_DEVICES: return 409;
    case PL_SIG_ERR_RATE_LIMITED: return 429;
    case PL_SIG_ERR_BUSY: return 503;
    case PL_SIG_ERR_INTERNAL: return 500;
    default: return 400;
    }
}

static void fail(pl_sig_http_req_t *r, pl_sig_err_t e, const char *message)
{
    pl_sig_http_error(r->gw, r->http_id, http_status(e), pl_sig_err_code(e), message);
}

static void op_fail(pl_sig_acct_op_t *op)
{
    pl_sig_http_error(op->acc->gw, op->http_id, http_status(op->outcome),
                      pl_sig_err_code(op->outcome), op->message ? op->message : "");
}

static bool check_body(pl_sig_http_req_t *r, const pl_sig_field_t *fields, size_t n)
{
    pl_sig_verdict_t v;
    if (pl_sig_frame_validate(r->body, fields, n, &v) == 0)
        return true;
    fail(r, v.err, v.message);
    return false;
}

static const char *str_field(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static pl_sig_acct_op_t *op_for(pl_sig_accounts_t *acc, pl_sig_http_req_t *r,
                                pl_sig_acct_kind_t kind, pl_sig_acct_done_fn done)
{
    pl_sig_acct_op_t *op = acct_op_new(acc, kind);
    op->http_id = r->http_id;
    op->thread = r->thread;
    op->done = done;
    snprintf(op->peer, sizeof(op->peer), "%s", r->peer ? r->peer : "");
    return op;
}

/* An op on behalf of the Bearer token's session. NULL when there is none (answered). */
static pl_sig_acct_op_t *authed_op(pl_sig_accounts_t *acc, pl_sig_http_req_t *r,
                                   pl_sig_acct_kind_t kind, pl_sig_acct_done_fn done)
{
    if (!r->bearer) {
        fail(r, PL_SIG_ERR_AUTH_REQUIRED, "Authorization: Bearer <token> required");
        return NULL;
    }
    pl_sig_acct_op_t *op = op_for(acc, r, kind, done);
    op->by_token = true;
    pl_sig_token_hash(r->bearer, strlen(r->bearer), op->token_hash);
    return op;
}

static void count_auth_fail(pl_sig_acct_op_t *op)
{
    pl_sig_thread_t *t = &op->acc->gw->threads[op->thread];
    if (op->outcome == PL_SIG_ERR_AUTH_FAILED || op->outcome == PL_SIG_ERR_BAD_CREDENTIALS)
        pl_sig_count_auth_fail(t, op->fail_reason);
}

/* ---- register and login --------------------------------------------------------- */

static const pl_sig_field_t register_fields[] = {
    { "username", PL_SIG_T_STRING, true, 3, PL_SIG_USERNAME_MAX },
    { "password", PL_SIG_T_STRING, true, PL_SIG_PASSWORD_MIN, PL_SIG_PASSWORD_MAX },
    { "device_name", PL_SIG_T_STRING, false, 1, PL_SIG_DEVICE_NAME_MAX },
    { "display_name", PL_SIG_T_STRING, false, 0, PL_SIG_DISPLAY_NAME_MAX },
};

static const pl_sig_field_t login_fields[] = {
    { "username", PL_SIG_T_STRING, true, 1, 256 },
    { "password", PL_SIG_T_STRING, true, 1, PL_SIG_PASSWORD_MAX },
    { "device_name", PL_SIG_T_STRING, true, 1, PL_SIG_DEVICE_NAME_MAX },
};

static void session_done(pl_sig_acct_op_t *op)
{
    pl_sig_gateway_t *gw = op->acc->gw;
    if (op->outcome != PL_SIG_ERR_NONE) {
        count_auth_fail(op);
        op_fail(op);
    } else {
        /* A login reusing a device name ends that device's old session. */
        if (op->replaced_device)
            pl_sig_close_device(gw, op->replaced_device, PL_SIG_CLOSE_REVOKED,
                                "session replaced by a new login");
        pl_log_info(op->kind == ACCT_REGISTER ? "signaling.account.registered"
                                              : "signaling.login",
                    "account=%llu device=%llu peer=%s", (unsigned long long)op->account_id,
                    (unsigned long long)op->device_id, PL_LOG_QUOTED(op->peer));
        pl_sig_http_respond(gw, op->http_id, op->kind == ACCT_REGISTER ? 201 : 200,
                            json_incref(op->result));
    }
    acct_op_free(op);
}

/* Common to register and login: copy the password, rate-limit, queue for a worker. */
static void submit_kdf(pl_sig_accounts_t *acc, pl_sig_http_req_t *r, pl_sig_acct_op_t *op,
                       bool per_account)
{
    const char *pw = str_field(r->body, "password");
    uint64_t retry_ms = 0;
    if (!pl_sig_acct_rate_ok(acc, r->peer, per_account ? op->username : NULL, &retry_ms)) {
        pl_sig_count_auth_fail(&acc->gw->threads[r->thread], PL_SIG_AF_RATE_LIMITED);
        char msg[96];
        snprintf(msg, sizeof(msg), "too many attempts; retry in %llu s",
                 (unsigned long long)(retry_ms + 999) / 1000);
        fail(r, PL_SIG_ERR_RATE_LIMITED, msg);
        acct_op_free(op);
        return;
    }
    op->password_len = strlen(pw);
    op->password = pl_xstrndup(pw, op->password_len);
    if (pl_sig_kdf_submit(acc->kdf, op) < 0) {
        fail(r, PL_SIG_ERR_BUSY, "server busy; retry shortly");
        acct_op_free(op);
    }
}

static void route_register(pl_sig_http_req_t *r, void *arg)
{
    pl_sig_accounts_t *acc = arg;
    if (!check_body(r, register_fields, PL_ARRAY_LEN(register_fields)))
        return;
    pl_sig_acct_op_t *op = op_for(acc, r, ACCT_REGISTER, session_done);
    const char *dev = str_field(r->body, "device_name");
    const char *display = str_field(r->body, "display_name");
    if (!pl_sig_username_normalize(str_field(r->body, "username"), op->username)) {
        fail(r, PL_SIG_ERR_BAD_FIELD, "field \"username\": 3-32 of a-z 0-9 _ . - "
                                      "starting with a letter or digit");
        acct_op_free(op);
        return;
    }
    if (!pl_sig_text_ok(dev) || !pl_sig_text_ok(display)) {
        fail(r, PL_SIG_ERR_BAD_FIELD, "names must not contain control characters");
        acct_op_free(op);
        return;
    }
    snprintf(op->device_name, sizeof(op->device_name), "%s", dev[0] ? dev : "default");
    snprintf(op->display_name, sizeof(op->display_name), "%s", display);
    submit_kdf(acc, r, op, false);
}

static void route_login(pl_sig_http_req_t *r, void *arg)
{
    pl_sig_accounts_t *acc = arg;
    if (!check_body(r, login_fields, PL_ARRAY_LEN(login_fields)))
        return;
    pl_sig_acct_op_t *op = op_for(acc, r, ACCT_FIND_LOGIN, session_done);
    const char *dev = str_field(r->body, "device_name");
    if (!pl_sig_text_ok(dev)) {
        fail(r, PL_SIG_ERR_BAD_FIELD, "field \"device_name\": control characters");
        acct_op_free(op);
        return;
    }
    /* An impossible username is still rate-limited and answered like a wrong
     * password, so the endpoint does not tell which usernames could exist. */
    if (!pl_sig_username_normalize(str_field(r->body, "username"), op->username))
        snprintf(op->username, sizeof(op->username), "%s", "-");
    snprintf(op->device_name, sizeof(op->device_name), "%s", dev);
    submit_kdf(acc, r, op, true);
}

/* ---- authenticated routes ------------------------------------------------------- */

static void plain_done(pl_sig_acct_op_t *op)
{
    if (op->outcome != PL_SIG_ERR_NONE) {
        count_auth_fail(op);
        op_fail(op);
    } else {
        pl_sig_http_respond(op->acc->gw, op->http_id, 200, json_incref(op->result));
    }
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

static void revoke_done(pl_sig_acct_op_t *op)
{
    if (op->outcome == PL_SIG_ERR_NONE) {
        pl_sig_close_device(op->acc->gw, op->target_id, PL_SIG_CLOSE_REVOKED,
                            op->target_id == op->device_id ? "logged out" : "device revoked");
        pl_log_info("signaling.device.revoked", "account=%llu device=%llu by_device=%llu",
                    (unsigned long long)op->account_id, (unsigned long long)op->target_id,
                    (unsigned long long)op->device_id);
    }
    plain_done(op);
}

static void route_devices(pl_sig_http_req_t *r, void *arg)
{
    pl_sig_acct_op_t *op = authed_op(arg, r, ACCT_DEVICES, devices_done);
    if (op)
        acct_op_submit_to_gateway(op);
}

static void route_revoke(pl_sig_http_req_t *r, void *arg)
{
    char *end = NULL;
    unsigned long long id = strtoull(r->suffix, &end, 10);
    if (!end || *end || id == 0 || r->suffix[0] < '1' || r->suffix[0] > '9') {
        fail(r, PL_SIG_ERR_NOT_FOUND, "no such device");
        return;
    }
    pl_sig_acct_op_t *op = authed_op(arg, r, ACCT_REVOKE_DEVICE, revoke_done);
    if (!op)
        return;
    op->target_id = id;
    acct_op_submit_to_gateway(op);
}

static void route_logout(pl_sig_http_req_t *r, void *arg)
{
    pl_sig_acct_op_t *op = authed_op(arg, r, ACCT_REVOKE_DEVICE, revoke_done);
    if (!op)
        return;
    op->target_id = 0;              /* the token's own device, known after its check */
    acct_op_submit_to_gateway(op);
}

static void route_profile_get(pl_sig_http_req_t *r, void *arg)
{
    pl_sig_acct_op_t *op = authed_op(arg, r, ACCT_PROFILE_GET, plain_done);
    if (!op)
        return;
    if (r->suffix[0] && !pl_sig_username_normalize(r->suffix, op->target_user)) {
        fail(r, PL_SIG_ERR_NOT_FOUND, "no such user");
        acct_op_free(op);
        return;
    }
    acct_op_submit_to_gateway(op);
}

static const pl_sig_field_t profile_fields[] = {
    { "display_name", PL_SIG_T_STRING, false, 0, PL_SIG_DISPLAY_NAME_MAX },
    { "about", PL_SIG_T_STRING, false, 0, PL_SIG_ABOUT_MAX },
    { "avatar", PL_SIG_T_STRING, false, 0, PL_SIG_AVATAR_MAX },
};

int pl_sig_acct_profile_fill(pl_sig_acct_op_t *op, const json_t *o, const char **why)
{
    static const struct { const char *key; unsigned bit; size_t off; size_t cap; } f[] = {
        { "display_name", ACCT_SET_DISPLAY, offsetof(pl_sig_acct_op_t, display_name),
          PL_SIG_DISPLAY_NAME_MAX + 1 },
        { "about", ACCT_SET_ABOUT, offsetof(pl_sig_acct_op_t, about), PL_SIG_ABOUT_MAX + 1 },
        { "avatar", ACCT_SET_AVATAR, offsetof(pl_sig_acct_op_t, avatar), PL_SIG_AVATAR_MAX + 1 },
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(f); i++) {
        const char *s = json_string_value(json_object_get(o, f[i].key));
        if (!s)
            continue;
        /* "about" may hold line breaks; a display name may not; an avatar is an id. */
        if (f[i].bit == ACCT_SET_AVATAR && !pl_sig_asset_id_ok(s)) {
            *why = "field \"avatar\": an asset id of A-Z a-z 0-9 _ . : -";
            return -1;
        }
        if (f[i].bit == ACCT_SET_DISPLAY && !pl_sig_text_ok(s)) {
            *why = "field \"display_name\": control characters";
            return -1;
        }
        snprintf((char *)op + f[i].off, f[i].cap, "%s", s);
        op->set_mask |= f[i].bit;
    }
    if (!op->set_mask) {
        *why = "give at least one of display_name, about, avatar";
        return -1;
    }
    return 0;
}

static void route_profile_set(pl_sig_http_req_t *r, void *arg)
{
    if (!check_body(r, profile_fields, PL_ARRAY_LEN(profile_fields)))
        return;
    pl_sig_acct_op_t *op = authed_op(arg, r, ACCT_PROFILE_SET, plain_done);
    const char *why = NULL;
    if (!op)
        return;
    if (pl_sig_acct_profile_fill(op, r->body, &why) < 0) {
        fail(r, PL_SIG_ERR_BAD_FIELD, why);
        acct_op_free(op);
        return;
    }
    acct_op_submit_to_gateway(op);
}

const pl_sig_http_route_t pl_sig_acct_routes[] = {
    { LWSHUMETH_POST, "/v1/register", false, true, route_register },
    { LWSHUMETH_POST, "/v1/login", false, true, route_login },
    { LWSHUMETH_POST, "/v1/logout", false, false, route_logout },
    { LWSHUMETH_GET, "/v1/devices", false, false, route_devices },
    { LWSHUMETH_DELETE, "/v1/devices/", true, false, route_revoke },
    { LWSHUMETH_GET, "/v1/profile", false, false, route_profile_get },
    { LWSHUMETH_GET, "/v1/profile/", true, false, route_profile_get },
    { LWSHUMETH_POST, "/v1/profile", false, true, route_profile_set },
};
const size_t pl_sig_acct_n_routes = PL_ARRAY_LEN(pl_sig_acct_routes);
