/* acct_db.c: the accounts schema and the store-thread side of every accounts
 * operation: registration, login (one device per name, at most max_devices), session
 * tokens (only their SHA-256 is stored), token checks, devices, profiles and the sweep
 * of expired sessions.
 *
 * What it does not do: password hashing (acct_kdf.c: too slow for the store thread),
 * replying to clients (the done functions in acct_http.c / acct_ws.c).
 *
 * Threading: exec functions run on the store thread; acct_op_new/free on any thread
 * (the op has one owner at a time). */
#include "signaling/acct_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

static const pl_store_migration_t steps[] = {
    { 1,
      "CREATE TABLE accounts("
      "  id INTEGER PRIMARY KEY AUTOINCREMENT,"     /* ids are never reused */
      "  username TEXT NOT NULL UNIQUE,"
      "  pw_hash TEXT NOT NULL,"
      "  display_name TEXT NOT NULL DEFAULT '',"
      "  about TEXT NOT NULL DEFAULT '',"
      "  avatar TEXT NOT NULL DEFAULT '',"
      "  created_at INTEGER NOT NULL);"
      "CREATE TABLE devices("
      "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
      "  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
      "  name TEXT NOT NULL,"
      "  created_at INTEGER NOT NULL,"
      "  last_seen_at INTEGER NOT NULL,"
      "  UNIQUE(account_id, name));"
      "CREATE TABLE sessions("
      "  token_hash BLOB PRIMARY KEY,"
      "  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,"
      "  created_at INTEGER NOT NULL,"
      "  expires_at INTEGER NOT NULL) WITHOUT ROWID;"
      "CREATE INDEX sessions_by_device ON sessions(device_id);"
      "CREATE INDEX sessions_by_expiry ON sessions(expires_at);" },
};

const pl_store_schema_t pl_sig_accounts_schema = { "accounts", steps, PL_ARRAY_LEN(steps) };

/* ---- op objects ------------------------------------------------------------------ */

static int acct_exec(pl_store_conn_t *conn, pl_store_req_t *req);

void acct_store_done(pl_store_req_t *req)
{
    pl_sig_acct_op_t *op = PL_CONTAINER_OF(req, pl_sig_acct_op_t, req);
    if (req->status < 0 && op->outcome == PL_SIG_ERR_NONE) {
        op->outcome = PL_SIG_ERR_INTERNAL;
        op->message = "storage error";
    }
    op->done(op);
}

pl_sig_acct_op_t *acct_op_new(pl_sig_accounts_t *acc, pl_sig_acct_kind_t kind)
{
    pl_sig_acct_op_t *op = pl_xcalloc(1, sizeof(*op));
    op->kind = kind;
    op->acc = acc;
    op->req.exec = acct_exec;
    op->req.done = acct_store_done;
    op->now_ms = pl_now_wall_ms();
    op->ttl_ms = atomic_load(&acc->session_ttl_ms);
    op->max_devices = atomic_load(&acc->max_devices);
    return op;
}

void acct_op_free(pl_sig_acct_op_t *op)
{
    if (!op)
        return;
    json_decref(op->result);
    json_decref(op->req_id);
    if (op->password) {
        OPENSSL_cleanse(op->password, op->password_len);
        free(op->password);
    }
    OPENSSL_cleanse(op->token, sizeof(op->token));
    free(op);
}

void acct_op_submit_to_gateway(pl_sig_acct_op_t *op)
{
    op->req.reply = pl_sig_thread_reply(op->acc->gw, op->thread);
    pl_store_submit(op->acc->store, &op->req);
}

/* ---- helpers ------------------------------------------------------------------------ */

static int outcome(pl_sig_acct_op_t *op, pl_sig_err_t err, const char *message, int rc)
{
    op->outcome = err;
    op->message = message;
    return rc;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? (const char *)s : "";
}

/* Authenticates op->token_hash: fills account/device/username, touches last_seen.
 * Returns 0, or 1 with the outcome set (nothing to roll back), or negative. */
static int check_token(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT s.device_id, s.expires_at, d.account_id, a.username FROM sessions s "
        "JOIN devices d ON d.id = s.device_id JOIN accounts a ON a.id = d.account_id "
        "WHERE s.token_hash = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_blob(st, 1, op->token_hash, 32, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        op->fail_reason = PL_SIG_AF_TOKEN_INVALID;
        return outcome(op, PL_SIG_ERR_AUTH_FAILED, "invalid or revoked token", 1);
    }
    op->device_id = (uint64_t)sqlite3_column_int64(st, 0);
    op->expires_at_ms = (uint64_t)sqlite3_column_int64(st, 1);
    op->account_id = (uint64_t)sqlite3_column_int64(st, 2);
    snprintf(op->username, sizeof(op->username), "%s", col_text(st, 3));
    if (op->expires_at_ms <= op->now_ms) {
        sqlite3_stmt *del = pl_store_prepare(conn, "DELETE FROM sessions WHERE token_hash = ?1");
        if (!del)
            return PL_ESTATE;
        sqlite3_bind_blob(del, 1, op->token_hash, 32, SQLITE_STATIC);
        pl_store_step_done(conn, del);
        op->fail_reason = PL_SIG_AF_TOKEN_EXPIRED;
        return outcome(op, PL_SIG_ERR_AUTH_FAILED, "session expired; log in again", 1);
    }
    sqlite3_stmt *touch = pl_store_prepare(conn, "UPDATE devices SET last_seen_at = ?1 WHERE id = ?2");
    if (!touch)
        return PL_ESTATE;
    sqlite3_bind_int64(touch, 1, (sqlite3_int64)op->now_ms);
    sqlite3_bind_int64(touch, 2, (sqlite3_int64)op->device_id);
    return pl_store_step_done(conn, touch);
}

static int new_session(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    uint8_t hash[32];
    if (pl_sig_token_new(op->token) < 0)
        return outcome(op, PL_SIG_ERR_INTERNAL, "no randomness", PL_ECRYPTO);
    pl_sig_token_hash(op->token, PL_SIG_TOKEN_LEN, hash);
    op->expires_at_ms = op->now_ms + op->ttl_ms;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO sessions(token_hash, device_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->device_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->now_ms);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)op->expires_at_ms);
    return pl_store_step_done(conn, st);
}

static int insert_device(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO devices(account_id, name, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?3)");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
    sqlite3_bind_text(st, 2, op->device_name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->now_ms);
    int rc = pl_store_step_done(conn, st);
    if (rc < 0)
        return rc;
    op->device_id = (uint64_t)sqlite3_last_insert_rowid(pl_store_db(conn));
    return 0;
}

static json_t *session_json(const pl_sig_acct_op_t *op)
{
    return json_pack("{s:I,s:s,s:I,s:s,s:s,s:I}", "account_id", (json_int_t)op->account_id,
                     "username", op->username, "device_id", (json_int_t)op->device_id,
                     "device_name", op->device_name, "token", op->token,
                     "expires_at_ms", (json_int_t)op->expires_at_ms);
}

/* ---- operations ------------------------------------------------------------------- */

static int exec_register(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO accounts(username, pw_hash, display_name, created_at) "
        "VALUES (?1, ?2, ?3, ?4)");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_text(st, 1, op->username, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->pw_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, op->display_name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)op->now_ms);
    int rc = pl_store_step_done(conn, st);
    if (rc == -EEXIST)
        return outcome(op, PL_SIG_ERR_USERNAME_TAKEN, "that username is taken", rc);
    if (rc < 0)
        return rc;
    op->account_id = (uint64_t)sqlite3_last_insert_rowid(pl_store_db(conn));
    if ((rc = insert_device(conn, op)) < 0 || (rc = new_session(conn, op)) < 0)
        return rc;
    op->result = session_json(op);
    return 0;
}

static int exec_find_login(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT id, pw_hash FROM accounts WHERE username = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_text(st, 1, op->username, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        return outcome(op, PL_SIG_ERR_NOT_FOUND, "no such user", 0);
    op->account_id = (uint64_t)sqlite3_column_int64(st, 0);
    snprintf(op->pw_hash, sizeof(op->pw_hash), "%s", col_text(st, 1));
    return 0;
}

/* Runs sql with a bound to ?1 and b to ?2 (binding a parameter the SQL does not have
 * is a harmless SQLITE_RANGE). */
static int run_simple(pl_store_conn_t *conn, const char *sql, uint64_t a, uint64_t b)
{
    sqlite3_stmt *st = pl_store_prepare(conn, sql);
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)a);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)b);
    return pl_store_step_done(conn, st);
}

/* Finds the account's device named op->device_name; 0 when none. */
static int64_t device_by_name(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT id FROM devices WHERE account_id = ?1 AND name = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
    sqlite3_bind_text(st, 2, op->device_name, -1, SQLITE_STATIC);
    return sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
}

static int64_t device_count(pl_store_conn_t *conn, uint64_t account_id)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT count(*) FROM devices WHERE account_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)account_id);
    return sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : PL_ESTATE;
}

/* The password was verified on a KDF worker. A device keeps its id across logins with
 * the same name (its old session ends); a new name needs a free device slot. */
static int exec_login(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    /* Expired sessions and devices left without one do not count towards the limit. */
    int rc = run_simple(conn, "DELETE FROM sessions WHERE expires_at <= ?2 AND device_id IN "
                              "(SELECT id FROM devices WHERE account_id = ?1)",
                        op->account_id, op->now_ms);
    if (rc < 0 || (rc = run_simple(conn, "DELETE FROM devices WHERE account_id = ?1 AND "
                                         "id NOT IN (SELECT device_id FROM sessions)",
                                   op->account_id, 0)) < 0)
        return rc;
    int64_t existing = device_by_name(conn, op);
    if (existing < 0)
        return (int)existing;
    if (existing > 0) {
        op->device_id = (uint64_t)existing;
        op->replaced_device = op->device_id;
        rc = run_simple(conn, "DELETE FROM sessions WHERE device_id = ?1",
                        op->device_id, 0);
        if (rc < 0 || (rc = run_simple(conn, "UPDATE devices SET last_seen_at = ?2 WHERE id = ?1",
                                       op->device_id, op->now_ms)) < 0)
            return rc;
    } else {
        int64_t n = device_count(conn, op->account_id);
        if (n < 0)
            return (int)n;
        if ((uint64_t)n >= op->max_devices)
            return outcome(op, PL_SIG_ERR_TOO_MANY_DEVICES,
                           "device limit reached; revoke a device first", -1);
        if ((rc = insert_device(conn, op)) < 0)
            return rc;
    }
    if ((rc = new_session(conn, op)) < 0)
        return rc;
    op->result = session_json(op);
    return 0;
}

static int exec_devices(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT id, name, created_at, last_seen_at FROM devices WHERE account_id = ?1 "
        "ORDER BY id");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
    json_t *list = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
        json_array_append_new(list, json_pack("{s:I,s:s,s:I,s:I,s:b}",
            "id", (json_int_t)id, "name", col_text(st, 1),
            "created_at_ms", (json_int_t)sqlite3_column_int64(st, 2),
            "last_seen_at_ms", (json_int_t)sqlite3_column_int64(st, 3),
            "current", id == op->device_id));
    }
    op->result = json_pack("{s:o}", "devices", list);
    return 0;
}

static int exec_revoke(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    if (op->target_id == 0)
        op->target_id = op->device_id;      /* logout: the requester's own device */
    int rc = run_simple(conn, "DELETE FROM devices WHERE id = ?1 AND account_id = ?2",
                        op->target_id, op->account_id);
    if (rc < 0)
        return rc;
    if (sqlite3_changes(pl_store_db(conn)) == 0)
        return outcome(op, PL_SIG_ERR_NOT_FOUND, "no such device", 0);
    op->result = json_pack("{s:I}", "device_id", (json_int_t)op->target_id);
    return 0;
}

static int load_profile(pl_store_conn_t *conn, pl_sig_acct_op_t *op, bool by_name)
{
    sqlite3_stmt *st = pl_store_prepare(conn, by_name
        ? "SELECT username, display_name, about, avatar FROM accounts WHERE username = ?1"
        : "SELECT username, display_name, about, avatar FROM accounts WHERE id = ?2");
    if (!st)
        return PL_ESTATE;
    if (by_name)
        sqlite3_bind_text(st, 1, op->target_user, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 2, (sqlite3_int64)op->account_id);
    if (sqlite3_step(st) != SQLITE_ROW)
        return outcome(op, PL_SIG_ERR_NOT_FOUND, "no such user", 0);
    op->result = json_pack("{s:o}", "profile", pl_sig_acct_profile_json(col_text(st, 0),
        col_text(st, 1), col_text(st, 2), col_text(st, 3)));
    return 0;
}

static int exec_profile_set(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "UPDATE accounts SET display_name = coalesce(?1, display_name), "
        "about = coalesce(?2, about), avatar = coalesce(?3, avatar) WHERE id = ?4");
    if (!st)
        return PL_ESTATE;
    if (op->set_mask & ACCT_SET_DISPLAY)
        sqlite3_bind_text(st, 1, op->display_name, -1, SQLITE_STATIC);
    if (op->set_mask & ACCT_SET_ABOUT)
        sqlite3_bind_text(st, 2, op->about, -1, SQLITE_STATIC);
    if (op->set_mask & ACCT_SET_AVATAR)
        sqlite3_bind_text(st, 3, op->avatar, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)op->account_id);
    int rc = pl_store_step_done(conn, st);
    return rc < 0 ? rc : load_profile(conn, op, false);
}

static int exec_sweep(pl_store_conn_t *conn, pl_sig_acct_op_t *op)
{
    int rc = run_simple(conn, "DELETE FROM sessions WHERE expires_at <= ?1",
                        op->now_ms, 0);
    if (rc < 0)
        return rc;
    int n = sqlite3_changes(pl_store_db(conn));
    rc = run_simple(conn, "DELETE FROM devices WHERE id NOT IN (SELECT device_id FROM sessions)",
                    0, 0);
    if (n > 0)
        pl_log_info("signaling.sessions.expired", "count=%d", n);
    return rc;
}

static int acct_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    pl_sig_acct_op_t *op = PL_CONTAINER_OF(req, pl_sig_acct_op_t, req);
    if (op->by_token || op->kind == ACCT_CHECK_TOKEN) {
        int rc = check_token(conn, op);
        if (rc != 0 || op->kind == ACCT_CHECK_TOKEN)
            return rc;
    }
    switch (op->kind) {
    case ACCT_REGISTER: return exec_register(conn, op);
    case ACCT_FIND_LOGIN: return exec_find_login(conn, op);
    case ACCT_LOGIN: return exec_login(conn, op);
    case ACCT_DEVICES: return exec_devices(conn, op);
    case ACCT_REVOKE_DEVICE: return exec_revoke(conn, op);
    case ACCT_PROFILE_GET: return load_profile(conn, op, op->target_user[0] != '\0');
    case ACCT_PROFILE_SET: return exec_profile_set(conn, op);
    case ACCT_SWEEP: return exec_sweep(conn, op);
    case ACCT_CHECK_TOKEN: break;
    }
    return 0;
}
