/* chat_social.c: contacts, per-user settings and typing indicators.
 *
 *   chat.contacts.add {user}     -> {contact: {user, added_at}}
 *   chat.contacts.remove {user}  -> {}
 *   chat.contacts.list {}        -> {contacts: [{user, added_at}]}
 *   chat.settings.get {}         -> {settings: {last_seen, read_receipts}}
 *   chat.settings.set {last_seen?, read_receipts?} -> {settings}
 *   chat.typing {to | group_id, typing}  -> {}   push chat.typing {from, from_device,
 *                                                  to?, group_id?, typing, at}
 *
 * Typing indicators are never stored: they ride the store thread only to learn who
 * receives them (and to check group membership), and a push older than [chat]
 * typing_ttl when its connection's thread gets to it is dropped.
 *
 * Threading: handlers on the gateway thread; exec functions on the store thread. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

/* The "user" field as an account id: > 0, or 0 with the error set, or < 0. */
static int64_t user_field(chat_op_t *op, pl_store_conn_t *conn, char name[CHAT_USERNAME_MAX + 1])
{
    if (!chat_username_norm(json_string_value(json_object_get(op->in, "user")), name))
        return chat_op_fail(op, "not_found", "no such user");
    int64_t id = chat_sql_account(conn, name);
    if (id == 0)
        chat_op_fail(op, "not_found", "no such user: %s", name);
    return id;
}

static int exec_contact_add(chat_op_t *op, pl_store_conn_t *conn)
{
    char name[CHAT_USERNAME_MAX + 1];
    int64_t who = user_field(op, conn, name);
    if (who <= 0)
        return (int)who;
    if ((uint64_t)who == op->account_id)
        return chat_op_fail(op, "bad_field", "you cannot add yourself as a contact");
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO chat_contacts(owner_id, contact_id, added_at) VALUES (?1, ?2, ?3)"
        " ON CONFLICT DO NOTHING");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
    sqlite3_bind_int64(st, 2, who);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->now_ms);
    int rc = pl_store_step_done(conn, st);
    if (rc < 0)
        return rc;
    json_object_set_new(chat_op_result(op), "contact", json_pack("{s:s,s:I}", "user", name,
                        "added_at", (json_int_t)op->now_ms));
    return 0;
}

static int exec_contact_remove(chat_op_t *op, pl_store_conn_t *conn)
{
    char name[CHAT_USERNAME_MAX + 1];
    int64_t who = user_field(op, conn, name);
    if (who <= 0)
        return (int)who;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "DELETE FROM chat_contacts WHERE owner_id = ?1 AND contact_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
    sqlite3_bind_int64(st, 2, who);
    int rc = pl_store_step_done(conn, st);
    if (rc < 0)
        return rc;
    if (sqlite3_changes(pl_store_db(conn)) == 0)
        return chat_op_fail(op, "not_found", "%s is not in your contacts", name);
    chat_op_result(op);
    return 0;
}

static int exec_contact_list(chat_op_t *op, pl_store_conn_t *conn)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT a.username, c.added_at FROM chat_contacts c JOIN accounts a"
        " ON a.id = c.contact_id WHERE c.owner_id = ?1 ORDER BY a.username");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
    json_t *arr = json_array();
    json_object_set_new(chat_op_result(op), "contacts", arr);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(arr, json_pack("{s:s,s:I}", "user", chat_sql_text(st, 0),
                              "added_at", (json_int_t)sqlite3_column_int64(st, 1)));
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

/* ---- settings ------------------------------------------------------------------------- */

static int settings_result(chat_op_t *op, pl_store_conn_t *conn)
{
    int priv;
    bool rr;
    uint64_t seen;
    if (chat_sql_settings(conn, op->account_id, &priv, &rr, &seen) < 0)
        return PL_ESTATE;
    json_object_set_new(chat_op_result(op), "settings", json_pack("{s:s,s:b}", "last_seen",
                        chat_privacy_name(priv), "read_receipts", rr));
    return 0;
}

static int exec_settings_set(chat_op_t *op, pl_store_conn_t *conn)
{
    json_t *ls = json_object_get(op->in, "last_seen");
    json_t *rr = json_object_get(op->in, "read_receipts");
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO chat_settings(account_id, privacy, read_receipts)"
        " VALUES (?1, COALESCE(?2, 0), COALESCE(?3, 1)) ON CONFLICT(account_id) DO UPDATE SET"
        " privacy = COALESCE(?2, privacy), read_receipts = COALESCE(?3, read_receipts)");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
    if (ls)
        sqlite3_bind_int(st, 2, chat_privacy_parse(json_string_value(ls)));
    if (rr)
        sqlite3_bind_int(st, 3, json_is_true(rr));
    int rc = pl_store_step_done(conn, st);
    return rc < 0 ? rc : settings_result(op, conn);
}

static int exec_settings_get(chat_op_t *op, pl_store_conn_t *conn)
{
    return settings_result(op, conn);
}

/* ---- typing ------------------------------------------------------------------------- */

static int exec_typing(chat_op_t *op, pl_store_conn_t *conn)
{
    json_t *to = json_object_get(op->in, "to");
    uint64_t gid = (uint64_t)json_integer_value(json_object_get(op->in, "group_id"));
    uint64_t *targets = NULL;
    long n;
    json_t *f = json_pack("{s:s,s:s,s:I,s:b,s:I}", "type", "chat.typing", "from", op->username,
                          "from_device", (json_int_t)op->device_id, "typing",
                          json_is_true(json_object_get(op->in, "typing")), "at",
                          (json_int_t)op->now_ms);
    if (to) {
        char name[CHAT_USERNAME_MAX + 1];
        int64_t peer = chat_username_norm(json_string_value(to), name) ?
                       chat_sql_account(conn, name) : 0;
        if (peer <= 0) {
            json_decref(f);
            return peer < 0 ? (int)peer : chat_op_fail(op, "not_found", "no such user");
        }
        targets = pl_xmalloc(sizeof(*targets));
        targets[0] = (uint64_t)peer;
        n = 1;
    } else {
        int role = chat_sql_member_role(conn, gid, op->account_id);
        if (role < 0) {
            json_decref(f);
            return role < -1 ? role : chat_op_fail(op, "not_a_member",
                                                   "you are not a member of this group");
        }
        json_object_set_new(f, "group_id", json_integer((json_int_t)gid));
        n = chat_sql_members(conn, gid, &targets);
    }
    if (n < 0) {
        json_decref(f);
        return (int)n;
    }
    for (long i = 0; i < n; i++)
        if (targets[i] != op->account_id)
            chat_push_account(op, targets[i], 0, json_deep_copy(f));
    uint64_t deadline = op->t0_us + op->lim.typing_ttl_ms * 1000;
    for (chat_push_t *p = op->push_head; p; p = p->next)
        p->deadline_us = deadline;
    json_decref(f);
    free(targets);
    chat_op_result(op);
    return 0;
}

/* ---- handlers ------------------------------------------------------------------------ */

static void h_contact_add(pl_sig_req_t *req, void *arg)
{
    chat_op_submit(chat_op_new(arg, req, exec_contact_add));
}

static void h_contact_remove(pl_sig_req_t *req, void *arg)
{
    chat_op_submit(chat_op_new(arg, req, exec_contact_remove));
}

static void h_contact_list(pl_sig_req_t *req, void *arg)
{
    chat_op_submit(chat_op_new(arg, req, exec_contact_list));
}

static void h_settings_get(pl_sig_req_t *req, void *arg)
{
    chat_op_submit(chat_op_new(arg, req, exec_settings_get));
}

static void h_settings_set(pl_sig_req_t *req, void *arg)
{
    json_t *ls = json_object_get(req->frame, "last_seen");
    if (ls && chat_privacy_parse(json_string_value(ls)) < 0) {
        chat_reply_bad_field(req, "field \"last_seen\": everyone, contacts or nobody");
        return;
    }
    chat_op_submit(chat_op_new(arg, req, exec_settings_set));
}

static void h_typing(pl_sig_req_t *req, void *arg)
{
    if (!json_object_get(req->frame, "to") == !json_object_get(req->frame, "group_id")) {
        chat_reply_bad_field(req, "exactly one of \"to\" and \"group_id\"");
        return;
    }
    chat_op_submit(chat_op_new(arg, req, exec_typing));
}

static const pl_sig_field_t user_fields[] = {
    { "user", PL_SIG_T_STRING, true, 1, 64 },
};
static const pl_sig_field_t settings_fields[] = {
    { "last_seen", PL_SIG_T_STRING, false, 1, 16 },
    { "read_receipts", PL_SIG_T_BOOL, false, 0, 0 },
};
static const pl_sig_field_t typing_fields[] = {
    { "to", PL_SIG_T_STRING, false, 1, 64 },
    { "group_id", PL_SIG_T_ID, false, 0, 0 },
    { "typing", PL_SIG_T_BOOL, true, 0, 0 },
};

const pl_sig_handler_t chat_social_handlers[] = {
    { "chat.contacts.add", h_contact_add, true, user_fields, PL_ARRAY_LEN(user_fields) },
    { "chat.contacts.remove", h_contact_remove, true, user_fields, PL_ARRAY_LEN(user_fields) },
    { "chat.contacts.list", h_contact_list, true, NULL, 0 },
    { "chat.settings.get", h_settings_get, true, NULL, 0 },
    { "chat.settings.set", h_settings_set, true, settings_fields, PL_ARRAY_LEN(settings_fields) },
    { "chat.typing", h_typing, true, typing_fields, PL_ARRAY_LEN(typing_fields) },
};
const size_t chat_social_n_handlers = PL_ARRAY_LEN(chat_social_handlers);
