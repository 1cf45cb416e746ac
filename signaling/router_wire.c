/* router_wire.c: the codec of the messages nodes publish on each other's channel
 * (presence_int.h "node-to-node envelopes"). Only parleyd nodes publish there, but a
 * channel is reachable by anyone who can talk to Redis, so decoding is total and
 * strict: a malformed envelope is refused, never asserted on.
 *
 * What it does not do: I/O, logging, acting on an envelope (router.c).
 *
 * Threading: pure functions; any thread. */
#include "signaling/presence_int.h"

#include <stdio.h>
#include <string.h>

#define ENV_VERSION 1

bool pl_node_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PL_NODE_MAX)
        return false;
    for (; *s; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static void put_u64(pl_buf_t *out, const char *key, uint64_t v)
{
    /* JSON integers are signed 64-bit in jansson: ids and cookies travel as their two's
     * complement bit pattern and come back exact. */
    pl_buf_puts(out, ",\"");
    pl_buf_puts(out, key);
    pl_buf_puts(out, "\":");
    pl_buf_put_i64(out, (int64_t)v);
}

void pl_env_encode(const pl_env_t *e, const char *frame_text, size_t frame_len, pl_buf_t *out)
{
    pl_buf_printf(out, "{\"v\":%d,\"op\":\"%c\",\"from\":", ENV_VERSION, (char)e->op);
    pl_buf_json_str(out, e->from);
    switch (e->op) {
    case PL_ENV_DELIVER:
    case PL_ENV_BOUNCE:
        put_u64(out, "dev", e->device_id);
        put_u64(out, "acct", e->account_id);
        put_u64(out, "conn", e->conn_id);
        pl_buf_printf(out, ",\"sink\":%u", e->sink);
        put_u64(out, "ck", e->cookie);
        pl_buf_printf(out, ",\"why\":%d", e->reason);
        break;
    case PL_ENV_KICK:
        put_u64(out, "dev", e->device_id);
        put_u64(out, "conn", e->conn_id);
        break;
    case PL_ENV_REQUEST:
        put_u64(out, "tok", e->token);
        put_u64(out, "dev", e->device_id);
        put_u64(out, "acct", e->account_id);
        put_u64(out, "conn", e->conn_id);
        pl_buf_puts(out, ",\"user\":");
        pl_buf_json_str(out, e->username);
        break;
    case PL_ENV_RESPONSE:
        put_u64(out, "tok", e->token);
        pl_buf_printf(out, ",\"ok\":%s", e->ok ? "true" : "false");
        break;
    }
    if (frame_text) {
        pl_buf_puts(out, ",\"f\":");
        pl_buf_append(out, frame_text, frame_len);
    } else if (e->frame) {
        size_t n = json_dumpb(e->frame, NULL, 0, JSON_COMPACT);
        pl_buf_puts(out, ",\"f\":");
        pl_buf_reserve(out, n + 1);
        out->len += json_dumpb(e->frame, out->data + out->len, n, JSON_COMPACT);
        out->data[out->len] = '\0';
    }
    pl_buf_puts(out, "}");
}

static bool get_u64(const json_t *o, const char *key, uint64_t *v)
{
    json_t *j = json_object_get(o, key);
    if (!json_is_integer(j))
        return false;
    *v = (uint64_t)json_integer_value(j);
    return true;
}

static bool get_str(const json_t *o, const char *key, char *dst, size_t cap)
{
    json_t *j = json_object_get(o, key);
    if (!json_is_string(j) || json_string_length(j) >= cap ||
        strlen(json_string_value(j)) != json_string_length(j))
        return false;
    memcpy(dst, json_string_value(j), json_string_length(j) + 1);
    return true;
}

/* The op-specific members; false when one is missing or of the wrong type. */
static bool decode_fields(const json_t *o, pl_env_t *e)
{
    uint64_t sink = 0, why = 0;
    json_t *ok;
    switch (e->op) {
    case PL_ENV_DELIVER:
    case PL_ENV_BOUNCE:
        if (!get_u64(o, "dev", &e->device_id) || !get_u64(o, "acct", &e->account_id) ||
            !get_u64(o, "conn", &e->conn_id) || !get_u64(o, "sink", &sink) ||
            !get_u64(o, "ck", &e->cookie) || !get_u64(o, "why", &why))
            return false;
        if (sink > PL_RTR_MAX_SINKS || why > PL_ROUTE_UNREACHABLE)
            return false;
        e->sink = (unsigned)sink;
        e->reason = (int)why;
        return e->device_id != 0 && json_is_object(json_object_get(o, "f"));
    case PL_ENV_KICK:
        return get_u64(o, "dev", &e->device_id) && get_u64(o, "conn", &e->conn_id) &&
               e->device_id != 0;
    case PL_ENV_REQUEST:
        return get_u64(o, "tok", &e->token) && get_u64(o, "dev", &e->device_id) &&
               get_u64(o, "acct", &e->account_id) && get_u64(o, "conn", &e->conn_id) &&
               get_str(o, "user", e->username, sizeof(e->username)) &&
               json_is_object(json_object_get(o, "f")) && e->device_id != 0;
    case PL_ENV_RESPONSE:
        ok = json_object_get(o, "ok");
        if (!get_u64(o, "tok", &e->token) || !json_is_boolean(ok) || !e->token)
            return false;
        e->ok = json_is_true(ok);
        return json_is_object(json_object_get(o, "f"));
    }
    return false;
}

int pl_env_decode(const char *data, size_t len, pl_env_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *o = pl_sig_json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *v = json_object_get(o, "v");
    json_t *op = json_object_get(o, "op");
    if (!json_is_object(o) || !json_is_integer(v) || json_integer_value(v) != ENV_VERSION ||
        !json_is_string(op) || json_string_length(op) != 1)
        goto fail;
    out->op = (pl_env_op_t)json_string_value(op)[0];
    if (!strchr("dbkqr", (int)out->op) || out->op == 0)
        goto fail;
    if (!get_str(o, "from", out->from, sizeof(out->from)) || !pl_node_name_ok(out->from))
        goto fail;
    if (!decode_fields(o, out))
        goto fail;
    out->frame = json_incref(json_object_get(o, "f"));
    json_decref(o);
    return 0;

fail:
    json_decref(o);
    memset(out, 0, sizeof(*out));
    return PL_EPARSE;
}
