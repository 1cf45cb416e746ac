/* chat_keys.c: the X3DH key directory (the server side of Signal's session setup).
 *
 *   chat.keys.upload {identity_key?, signed_prekey?: {key_id, public_key, signature},
 *                     one_time_prekeys?: [{key_id, public_key}]}
 *                                    -> {one_time_prekeys}
 *   chat.keys.fetch {user, device_id?} -> {user, bundles: [{device_id, identity_key,
 *                     signed_prekey, one_time_prekey?}], no_keys: [device ids]}
 *   chat.keys.count {}               -> {one_time_prekeys, identity_key, signed_prekey}
 *   push chat.keys.low {device_id, one_time_prekeys}
 *
 * Keys are per device and opaque (base64). A fetch returns one bundle per device of the
 * user and hands out each one-time prekey exactly once: the select-and-delete runs on
 * the single store thread, so concurrent fetches are serialized by construction. When
 * a device has no one-time prekey left the bundle carries only the signed prekey
 * (X3DH allows it). When a device's supply falls below [chat] prekey_low its owner is
 * told once (until it uploads again). A changed identity key drops the device's old
 * one-time prekeys (they were for the old identity) and is announced, as a durable
 * chat.event "identity.changed", to the user's contacts (everyone who lists the user),
 * conversation partners and the user's own devices. Fetches are rate limited per
 * requester and per (requester, target).
 *
 * Threading: handlers on the gateway thread; exec functions on the store thread. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- upload --------------------------------------------------------------------------- */

static long interested(pl_store_conn_t *conn, uint64_t me, uint64_t **out)
{
    return chat_sql_ids(conn,
        "SELECT owner_id FROM chat_contacts WHERE contact_id = ?1 UNION"
        " SELECT partner_id FROM chat_partners WHERE account_id = ?1 UNION SELECT ?1",
        me, out);
}

static int announce_change(chat_op_t *op, pl_store_conn_t *conn)
{
    uint64_t *who = NULL;
    long n = interested(conn, op->account_id, &who);
    if (n < 0)
        return (int)n;
    json_t *ev = json_pack("{s:s,s:s,s:I}", "event", "identity.changed", "user", op->username,
                           "device_id", (json_int_t)op->device_id);
    int rc = chat_event_emit(op, conn, 0, who, (size_t)n, ev);
    json_decref(ev);
    free(who);
    return rc;
}

static int count_prekeys(pl_store_conn_t *conn, uint64_t device)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT count(*) FROM chat_prekeys WHERE device_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)device);
    return sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : PL_ESTATE;
}

/* Stores the identity and signed prekey. changed: it replaces a different identity. */
static int put_identity(chat_op_t *op, pl_store_conn_t *conn, bool changed)
{
    const json_t *in = op->in;
    const char *ik = json_string_value(json_object_get(in, "identity_key"));
    const json_t *spk = json_object_get(in, "signed_prekey");
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO chat_identity(device_id, account_id, identity_key, spk_id, spk_public,"
        " spk_signature, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        " ON CONFLICT(device_id) DO UPDATE SET identity_key = COALESCE(?3, identity_key),"
        " spk_id = COALESCE(?4, spk_id), spk_public = COALESCE(?5, spk_public),"
        " spk_signature = COALESCE(?6, spk_signature), updated_at = ?7");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->device_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->account_id);
    if (ik)
        sqlite3_bind_text(st, 3, ik, -1, SQLITE_STATIC);
    if (spk) {
        sqlite3_bind_int64(st, 4, json_integer_value(json_object_get(spk, "key_id")));
        sqlite3_bind_text(st, 5, json_string_value(json_object_get(spk, "public_key")), -1,
                          SQLITE_STATIC);
        sqlite3_bind_text(st, 6, json_string_value(json_object_get(spk, "signature")), -1,
                          SQLITE_STATIC);
    }
    sqlite3_bind_int64(st, 7, (sqlite3_int64)op->now_ms);
    int rc = pl_store_step_done(conn, st);
    if (rc < 0 || !changed)
        return rc;
    /* The old one-time prekeys belong to the old identity. */
    st = pl_store_prepare(conn, "DELETE FROM chat_prekeys WHERE device_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->device_id);
    return pl_store_step_done(conn, st);
}

static int put_prekeys(chat_op_t *op, pl_store_conn_t *conn)
{
    const json_t *arr = json_object_get(op->in, "one_time_prekeys");
    size_t i;
    json_t *k;
    json_array_foreach(arr, i, k) {
        sqlite3_stmt *st = pl_store_prepare(conn,
            "INSERT INTO chat_prekeys(device_id, key_id, public_key) VALUES (?1, ?2, ?3)"
            " ON CONFLICT DO NOTHING");
        if (!st)
            return PL_ESTATE;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)op->device_id);
        sqlite3_bind_int64(st, 2, json_integer_value(json_object_get(k, "key_id")));
        sqlite3_bind_text(st, 3, json_string_value(json_object_get(k, "public_key")), -1,
                          SQLITE_STATIC);
        int rc = pl_store_step_done(conn, st);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int exec_upload(chat_op_t *op, pl_store_conn_t *conn)
{
    const char *ik = json_string_value(json_object_get(op->in, "identity_key"));
    bool spk = json_object_get(op->in, "signed_prekey") != NULL;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT identity_key FROM chat_identity WHERE device_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->device_id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return PL_ESTATE;
    bool had = rc == SQLITE_ROW;
    bool changed = had && ik && strcmp(ik, chat_sql_text(st, 0)) != 0;
    if (!had && (!ik || !spk))
        return chat_op_fail(op, "bad_field", "the first upload needs identity_key and "
                            "signed_prekey");
    if (changed && !spk)
        return chat_op_fail(op, "bad_field", "a new identity_key needs a new signed_prekey");
    int have = changed ? 0 : count_prekeys(conn, op->device_id);
    size_t adding = json_array_size(json_object_get(op->in, "one_time_prekeys"));
    if (have < 0)
        return have;
    if ((uint64_t)have + adding > op->lim.prekey_max)
        return chat_op_fail(op, "too_many_prekeys", "a device keeps at most %u one-time "
                            "prekeys (%d stored)", op->lim.prekey_max, have);
    if ((ik || spk) && (rc = put_identity(op, conn, changed)) < 0)
        return rc;
    if ((rc = put_prekeys(op, conn)) < 0)
        return rc;
    if (changed && (rc = announce_change(op, conn)) < 0)
        return rc;
    int now = count_prekeys(conn, op->device_id);
    if (now < 0)
        return now;
    st = pl_store_prepare(conn,
        "UPDATE chat_identity SET low_notified = 0 WHERE device_id = ?1 AND ?2 >= ?3");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->device_id);
    sqlite3_bind_int(st, 2, now);
    sqlite3_bind_int(st, 3, (int)op->lim.prekey_low);
    if ((rc = pl_store_step_done(conn, st)) < 0)
        return rc;
    json_object_set_new(chat_op_result(op), "one_time_prekeys", json_integer(now));
    json_object_set_new(op->result, "identity_changed", json_boolean(changed));
    return 0;
}

/* ---- fetch ----------------------------------------------------------------------------- */

/* Tells the owner device that its one-time prekeys run low (once until it uploads). */
static int maybe_low(chat_op_t *op, pl_store_conn_t *conn, uint64_t device, int left)
{
    if ((uint32_t)left >= op->lim.prekey_low)
        return 0;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "UPDATE chat_identity SET low_notified = 1 WHERE device_id = ?1 AND low_notified = 0");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)device);
    int rc = pl_store_step_done(conn, st);
    if (rc < 0 || sqlite3_changes(pl_store_db(conn)) == 0)
        return rc;
    chat_dev_t *d = chat_mem_dev(op->chat->mem, device, false);
    uint64_t conn_id = d && d->conn_id ? d->conn_id : pl_sig_device_conn(op->chat->gw, device);
    if (conn_id)
        chat_push_frame(op, conn_id, json_pack("{s:s,s:I,s:i}", "type", "chat.keys.low",
                        "device_id", (json_int_t)device, "one_time_prekeys", left));
    return 0;
}

/* One device's bundle, consuming one one-time prekey. NULL when it has no keys. */
static int bundle(chat_op_t *op, pl_store_conn_t *conn, uint64_t device, json_t **out)
{
    *out = NULL;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT identity_key, spk_id, spk_public, spk_signature FROM chat_identity"
        " WHERE device_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)device);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return PL_ESTATE;
    json_t *b = json_pack("{s:I,s:s,s:{s:I,s:s,s:s}}", "device_id", (json_int_t)device,
        "identity_key", chat_sql_text(st, 0), "signed_prekey", "key_id",
        (json_int_t)sqlite3_column_int64(st, 1), "public_key", chat_sql_text(st, 2),
        "signature", chat_sql_text(st, 3));
    *out = b;
    st = pl_store_prepare(conn,
        "DELETE FROM chat_prekeys WHERE device_id = ?1 AND key_id = (SELECT key_id FROM"
        " chat_prekeys WHERE device_id = ?1 ORDER BY key_id LIMIT 1) RETURNING key_id, public_key");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)device);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_object_set_new(b, "one_time_prekey", json_pack("{s:I,s:s}", "key_id",
            (json_int_t)sqlite3_column_int64(st, 0), "public_key", chat_sql_text(st, 1)));
        sqlite3_step(st);
        pl_metric_inc(op->chat->shard, op->chat->m.prekeys_consumed);
    } else if (rc != SQLITE_DONE) {
        return PL_ESTATE;
    }
    int left = count_prekeys(conn, device);
    return left < 0 ? left : maybe_low(op, conn, device, left);
}

static bool rate_ok(chat_op_t *op, uint64_t target, uint64_t *retry_ms)
{
    /* Account ids fit in 53 bits: bit 63 marks the per-requester key, a mix of both
     * ids (bit 63 clear, never 0) the per-pair key. */
    uint64_t k1 = op->account_id | (UINT64_C(1) << 63);
    uint64_t k2 = ((op->account_id * UINT64_C(0x9E3779B97F4A7C15)) ^ target) >> 1;
    chat_bucket_t *b1 = chat_mem_bucket(op->chat->mem, k1);
    chat_bucket_t *b2 = chat_mem_bucket(op->chat->mem, k2 ? k2 : 1);
    uint64_t r1 = 0, r2 = 0;
    /* Test both before taking: a refused fetch costs no token of the other bucket. */
    chat_bucket_t c1 = *b1, c2 = *b2;
    bool ok1 = chat_bucket_take(&c1, op->now_ms, op->lim.fetch_per_min, op->lim.fetch_burst, &r1);
    bool ok2 = chat_bucket_take(&c2, op->now_ms, op->lim.fetch_target_per_min,
                                op->lim.fetch_target_burst, &r2);
    if (ok1 && ok2) {
        *b1 = c1;
        *b2 = c2;
        return true;
    }
    *retry_ms = PL_MAX(ok1 ? 0 : r1, ok2 ? 0 : r2);
    return false;
}

static int exec_fetch(chat_op_t *op, pl_store_conn_t *conn)
{
    char name[CHAT_USERNAME_MAX + 1] = "";
    int64_t target = chat_username_norm(json_string_value(json_object_get(op->in, "user")),
                                        name) ? chat_sql_account(conn, name) : 0;
    if (target < 0)
        return (int)target;
    if (target == 0)
        return chat_op_fail(op, "not_found", "no such user");
    uint64_t retry = 0;
    if (!rate_ok(op, (uint64_t)target, &retry)) {
        chat_op_fail(op, "rate_limited", "too many key fetches; retry later");
        op->err_extra = json_pack("{s:I}", "retry_ms", (json_int_t)retry);
        return 0;
    }
    uint64_t *devs = NULL;
    long n = chat_sql_devices(conn, (uint64_t)target, &devs);
    if (n < 0)
        return (int)n;
    json_t *only = json_object_get(op->in, "device_id");
    json_t *bundles = json_array(), *none = json_array();
    json_object_set_new(chat_op_result(op), "user", json_string(name));
    json_object_set_new(op->result, "bundles", bundles);
    json_object_set_new(op->result, "no_keys", none);
    int rc = 0;
    bool found = !only;
    for (long i = 0; rc >= 0 && i < n; i++) {
        if (only && devs[i] != (uint64_t)json_integer_value(only))
            continue;
        found = true;
        json_t *b = NULL;
        rc = bundle(op, conn, devs[i], &b);
        if (b)
            json_array_append_new(bundles, b);
        else if (rc >= 0)
            json_array_append_new(none, json_integer((json_int_t)devs[i]));
    }
    free(devs);
    if (rc >= 0 && !found)
        return chat_op_fail(op, "not_found", "no such device of %s", name);
    pl_metric_inc(op->chat->shard, op->chat->m.keys_fetched);
    return rc;
}

static int exec_count(chat_op_t *op, pl_store_conn_t *conn)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT identity_key IS NOT NULL, spk_public IS NOT NULL FROM chat_identity"
        " WHERE device_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->device_id);
    int rc = sqlite3_step(st);
    bool row = rc == SQLITE_ROW;
    json_object_set_new(chat_op_result(op), "identity_key",
                        json_boolean(row && sqlite3_column_int(st, 0)));
    json_object_set_new(op->result, "signed_prekey", json_boolean(row && sqlite3_column_int(st, 1)));
    int n = count_prekeys(conn, op->device_id);
    if (n < 0)
        return n;
    json_object_set_new(op->result, "one_time_prekeys", json_integer(n));
    return 0;
}

/* ---- handlers ------------------------------------------------------------------------ */

static bool key_ok(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) <= CHAT_KEY_MAX &&
           chat_b64_ok(json_string_value(v), json_string_length(v));
}

static bool key_id_ok(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0 &&
           json_integer_value(v) <= 0xffffffffll;
}

static const char *check_upload(const json_t *f)
{
    const json_t *ik = json_object_get(f, "identity_key");
    const json_t *spk = json_object_get(f, "signed_prekey");
    const json_t *otpk = json_object_get(f, "one_time_prekeys");
    if (ik && !key_ok(ik))
        return "field \"identity_key\": base64 of at most 1024 bytes";
    if (spk && (!key_id_ok(json_object_get(spk, "key_id")) ||
                !key_ok(json_object_get(spk, "public_key")) ||
                !key_ok(json_object_get(spk, "signature"))))
        return "field \"signed_prekey\": {key_id, public_key, signature} (base64)";
    size_t i;
    json_t *k;
    json_array_foreach(otpk, i, k) {
        if (!json_is_object(k) || !key_id_ok(json_object_get(k, "key_id")) ||
            !key_ok(json_object_get(k, "public_key")))
            return "field \"one_time_prekeys\": [{key_id, public_key}] (base64)";
    }
    if (!ik && !spk && !json_array_size(otpk))
        return "nothing to upload";
    return NULL;
}

static void h_upload(pl_sig_req_t *req, void *arg)
{
    const char *why = check_upload(req->frame);
    if (why) {
        chat_reply_bad_field(req, "%s", why);
        return;
    }
    chat_op_submit(chat_op_new(arg, req, exec_upload));
}

static void h_fetch(pl_sig_req_t *req, void *arg)
{
    chat_op_submit(chat_op_new(arg, req, exec_fetch));
}

static void h_count(pl_sig_req_t *req, void *arg)
{
    chat_op_submit(chat_op_new(arg, req, exec_count));
}

static const pl_sig_field_t upload_fields[] = {
    { "identity_key", PL_SIG_T_STRING, false, 4, CHAT_KEY_MAX },
    { "signed_prekey", PL_SIG_T_OBJECT, false, 0, 0 },
    { "one_time_prekeys", PL_SIG_T_ARRAY, false, 0, CHAT_PREKEYS_PER_UPLOAD },
};
static const pl_sig_field_t fetch_fields[] = {
    { "user", PL_SIG_T_STRING, true, 1, 64 },
    { "device_id", PL_SIG_T_ID, false, 0, 0 },
};

const pl_sig_handler_t chat_keys_handlers[] = {
    { "chat.keys.upload", h_upload, true, upload_fields, PL_ARRAY_LEN(upload_fields) },
    { "chat.keys.fetch", h_fetch, true, fetch_fields, PL_ARRAY_LEN(fetch_fields) },
    { "chat.keys.count", h_count, true, NULL, 0 },
};
const size_t chat_keys_n_handlers = PL_ARRAY_LEN(chat_keys_handlers);
