/* chat_query.c: lookups over message metadata (never ciphertext, except a device's own
 * still-queued envelope):
 *
 *   chat.status  {message_ids}                 -> {statuses: [...]}   own messages
 *   chat.get     {message_id}                  -> {message}
 *   chat.history {with | group_id, before?, limit?} -> {messages, more}
 *   chat.find    {status, before?, limit?}     -> {messages, next_before}
 *
 * Authorization: status and find cover the caller's own sent messages; get and history
 * cover conversations the caller is part of (a direct message's two sides, a group's
 * current members). Anything else is not_found, whether or not it exists.
 *
 * Threading: handlers on the gateway thread; exec functions on the store thread. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

#define COLS \
    "m.id, m.kind, m.sender_id, a.username, m.sender_device, m.peer_id, p.username," \
    " m.group_id, m.ctype, m.created_at, m.delivered_at, m.read_at, m.expired_at," \
    " m.members, m.undelivered, m.unread, m.client_id, m.body"
#define JOINS \
    " LEFT JOIN accounts a ON a.id = m.sender_id LEFT JOIN accounts p ON p.id = m.peer_id"
#define FROM " FROM chat_messages m" JOINS

enum { C_ID, C_KIND, C_SENDER, C_SENDER_NAME, C_DEVICE, C_PEER, C_PEER_NAME, C_GROUP,
       C_CTYPE, C_CREATED, C_DELIVERED, C_READ, C_EXPIRED, C_MEMBERS, C_UNDELIVERED,
       C_UNREAD, C_CLIENT, C_BODY };

static const char *status_of(sqlite3_stmt *st)
{
    if (sqlite3_column_int64(st, C_GROUP)) {
        int64_t members = sqlite3_column_int64(st, C_MEMBERS);
        if (members > 0 && sqlite3_column_int64(st, C_UNREAD) == 0)
            return "read";
        if (members > 0 && sqlite3_column_int64(st, C_UNDELIVERED) == 0)
            return "delivered";
    } else {
        if (sqlite3_column_type(st, C_READ) != SQLITE_NULL)
            return "read";
        if (sqlite3_column_type(st, C_DELIVERED) != SQLITE_NULL)
            return "delivered";
    }
    return sqlite3_column_type(st, C_EXPIRED) != SQLITE_NULL ? "expired" : "sent";
}

static void set_time(json_t *o, const char *key, sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) != SQLITE_NULL)
        json_object_set_new(o, key, json_integer(sqlite3_column_int64(st, col)));
}

/* The metadata of the current row, as the caller may see it. */
static json_t *row_json(chat_op_t *op, sqlite3_stmt *st)
{
    json_t *o = json_pack("{s:I,s:s,s:I,s:I}", "message_id",
                          (json_int_t)sqlite3_column_int64(st, C_ID), "from",
                          chat_sql_text(st, C_SENDER_NAME), "from_device",
                          (json_int_t)sqlite3_column_int64(st, C_DEVICE), "sent_at",
                          (json_int_t)sqlite3_column_int64(st, C_CREATED));
    if (sqlite3_column_int(st, C_KIND) == 1) {
        json_t *ev = json_loads(chat_sql_text(st, C_BODY), 0, NULL);
        json_object_set_new(o, "event", ev ? ev : json_null());
        return o;
    }
    /* A direct message's ctype is per envelope; a group message has one. */
    if (sqlite3_column_int64(st, C_GROUP)) {
        json_object_set_new(o, "group_id", json_integer(sqlite3_column_int64(st, C_GROUP)));
        json_object_set_new(o, "ctype", json_integer(sqlite3_column_int(st, C_CTYPE)));
    } else {
        json_object_set_new(o, "to", json_string(chat_sql_text(st, C_PEER_NAME)));
    }
    bool mine = (uint64_t)sqlite3_column_int64(st, C_SENDER) == op->account_id;
    if (mine) {
        json_object_set_new(o, "client_id", json_string(chat_sql_text(st, C_CLIENT)));
        json_object_set_new(o, "status", json_string(status_of(st)));
        set_time(o, "delivered_at", st, C_DELIVERED);
        set_time(o, "read_at", st, C_READ);
        set_time(o, "expired_at", st, C_EXPIRED);
    }
    return o;
}

/* ---- chat.status --------------------------------------------------------------------- */

static int add_members(pl_store_conn_t *conn, json_t *o, uint64_t id)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT a.username, s.delivered_at, s.read_at FROM chat_group_status s"
        " JOIN accounts a ON a.id = s.member_id WHERE s.message_id = ?1 ORDER BY a.username");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    json_t *arr = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *m = json_pack("{s:s}", "user", chat_sql_text(st, 0));
        json_object_set_new(m, "status", json_string(
            sqlite3_column_type(st, 2) != SQLITE_NULL ? "read" :
            sqlite3_column_type(st, 1) != SQLITE_NULL ? "delivered" : "sent"));
        set_time(m, "delivered_at", st, 1);
        set_time(m, "read_at", st, 2);
        json_array_append_new(arr, m);
    }
    json_object_set_new(o, "members", arr);
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

static int exec_status(chat_op_t *op, pl_store_conn_t *conn)
{
    json_t *out = json_array();
    json_object_set_new(chat_op_result(op), "statuses", out);
    for (size_t i = 0; i < op->n_envs; i++) {
        uint64_t id = op->envs[i].device_id;
        sqlite3_stmt *st = pl_store_prepare(conn, "SELECT " COLS FROM
            " WHERE m.id = ?1 AND m.sender_id = ?2 AND m.kind = 0");
        if (!st)
            return PL_ESTATE;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)op->account_id);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            chat_op_fail(op, "not_found", "message %llu is not one you sent",
                         (unsigned long long)id);
            op->err_extra = json_pack("{s:I}", "message_id", (json_int_t)id);
            return 0;
        }
        if (rc != SQLITE_ROW)
            return PL_ESTATE;
        json_t *o = row_json(op, st);
        uint64_t group = (uint64_t)sqlite3_column_int64(st, C_GROUP);
        json_array_append_new(out, o);
        if (group) {
            json_object_set_new(o, "delivered_all", json_boolean(
                sqlite3_column_int64(st, C_UNDELIVERED) == 0));
            json_object_set_new(o, "read_all", json_boolean(
                sqlite3_column_int64(st, C_UNREAD) == 0));
            if (add_members(conn, o, id) < 0)
                return PL_ESTATE;
        }
    }
    return 0;
}

/* Reads "message_ids" (or the single "message_id") into op->envs. */
static int parse_ids(pl_sig_req_t *req, chat_op_t *op)
{
    json_t *one = json_object_get(req->frame, "message_id");
    uint64_t *ids = NULL;
    long n = one ? 1 : chat_ids_from_json(json_object_get(req->frame, "message_ids"),
                                          CHAT_IDS_MAX, &ids);
    if (n < 1) {
        chat_reply_bad_field(req, "field \"message_ids\": 1-%d message ids", CHAT_IDS_MAX);
        free(ids);
        return -1;
    }
    op->envs = pl_xcalloc((size_t)n, sizeof(*op->envs));
    op->n_envs = (size_t)n;
    for (long i = 0; i < n; i++)
        op->envs[i].device_id = one ? (uint64_t)json_integer_value(one) : ids[i];
    free(ids);
    return 0;
}

static void h_status(pl_sig_req_t *req, void *arg)
{
    chat_op_t *op = chat_op_new_bare(arg, req, exec_status);
    if (parse_ids(req, op) < 0) {
        chat_op_free(op);
        return;
    }
    chat_op_submit(op);
}

/* ---- chat.get --------------------------------------------------------------------- */

static int own_envelope(chat_op_t *op, pl_store_conn_t *conn, uint64_t id, json_t *o)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT COALESCE(e.body, m.body) FROM chat_envelopes e JOIN chat_messages m"
        " ON m.id = e.message_id WHERE e.device_id = ?1 AND e.message_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->device_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        json_object_set_new(o, "body", json_string(chat_sql_text(st, 0)));
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

static int exec_get(chat_op_t *op, pl_store_conn_t *conn)
{
    uint64_t id = op->envs[0].device_id;
    sqlite3_stmt *st = pl_store_prepare(conn, "SELECT " COLS FROM
        " WHERE m.id = ?1 AND m.kind = 0 AND (m.sender_id = ?2 OR m.peer_id = ?2 OR"
        " (m.group_id != 0 AND EXISTS (SELECT 1 FROM chat_members WHERE group_id = m.group_id"
        " AND account_id = ?2)))");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return chat_op_fail(op, "not_found", "no such message in your conversations");
    if (rc != SQLITE_ROW)
        return PL_ESTATE;
    json_t *o = row_json(op, st);
    json_object_set_new(chat_op_result(op), "message", o);
    return own_envelope(op, conn, id, o);
}

static void h_get(pl_sig_req_t *req, void *arg)
{
    chat_op_t *op = chat_op_new_bare(arg, req, exec_get);
    if (parse_ids(req, op) < 0) {
        chat_op_free(op);
        return;
    }
    chat_op_submit(op);
}

/* ---- chat.history ------------------------------------------------------------------ */

static int exec_history(chat_op_t *op, pl_store_conn_t *conn)
{
    uint64_t a, b;
    json_t *with = json_object_get(op->in, "with");
    if (with) {
        char name[CHAT_USERNAME_MAX + 1];
        int64_t peer = chat_username_norm(json_string_value(with), name) ?
                       chat_sql_account(conn, name) : 0;
        if (peer < 0)
            return (int)peer;
        if (peer == 0)
            return chat_op_fail(op, "not_found", "no such user");
        a = PL_MIN(op->account_id, (uint64_t)peer);
        b = PL_MAX(op->account_id, (uint64_t)peer);
    } else {
        a = 0;
        b = (uint64_t)json_integer_value(json_object_get(op->in, "group_id"));
        int role = chat_sql_member_role(conn, b, op->account_id);
        if (role < -1)
            return role;
        if (role < 0)
            return chat_op_fail(op, "not_a_member", "you are not a member of this group");
    }
    json_t *jb = json_object_get(op->in, "before");
    json_t *jl = json_object_get(op->in, "limit");
    int64_t before = jb ? json_integer_value(jb) : INT64_MAX;
    int limit = jl ? (int)json_integer_value(jl) : 50;
    limit = PL_MIN(limit, (int)op->lim.history_max);
    int64_t mark = chat_ix_lookup_mark(op->chat, conn);
    if (mark < 0)
        return (int)mark;
    json_t *arr = json_array();
    json_object_set_new(chat_op_result(op), "messages", arr);
    int n = 0, rc = SQLITE_DONE;
    bool more = false;
    /* Newest first: the messages above the index's mark (chat_index.c), read from
     * chat_messages, come before every one the index holds up to it. */
    for (int part = mark == INT64_MAX; part < 2 && !more; part++) {
        sqlite3_stmt *st = pl_store_prepare(conn, part == 0
            ? "SELECT " COLS FROM " WHERE m.id > ?5 AND m.id < ?3 AND m.conv_a = ?1"
              " AND m.conv_b = ?2 AND m.kind <> 2 ORDER BY m.id DESC LIMIT ?4"
            : "SELECT " COLS " FROM chat_ix_conv x CROSS JOIN chat_messages m ON m.id = x.id"
              JOINS " WHERE x.conv_a = ?1 AND x.conv_b = ?2 AND x.id < ?3 AND x.id <= ?5"
              " ORDER BY x.id DESC LIMIT ?4");
        if (!st)
            return PL_ESTATE;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)a);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)b);
        sqlite3_bind_int64(st, 3, before);
        sqlite3_bind_int(st, 4, limit - n + 1);
        sqlite3_bind_int64(st, 5, mark);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == limit) {
                more = true;
                break;
            }
            json_array_append_new(arr, row_json(op, st));
            n++;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return PL_ESTATE;
    }
    json_object_set_new(op->result, "more", json_boolean(more));
    return 0;
}

static void h_history(pl_sig_req_t *req, void *arg)
{
    json_t *with = json_object_get(req->frame, "with");
    if (!with == !json_object_get(req->frame, "group_id")) {
        chat_reply_bad_field(req, "exactly one of \"with\" and \"group_id\"");
        return;
    }
    chat_op_submit(chat_op_new(arg, req, exec_history));
}

/* ---- chat.find ------------------------------------------------------------------------ */

#define FIND_SCAN_MAX 5000

static int exec_find(chat_op_t *op, pl_store_conn_t *conn)
{
    const char *want = json_string_value(json_object_get(op->in, "status"));
    json_t *jb = json_object_get(op->in, "before");
    json_t *jl = json_object_get(op->in, "limit");
    int limit = PL_MIN(jl ? (int)json_integer_value(jl) : 50, (int)op->lim.history_max);
    int64_t mark = chat_ix_lookup_mark(op->chat, conn);
    if (mark < 0)
        return (int)mark;
    json_t *arr = json_array();
    json_object_set_new(chat_op_result(op), "messages", arr);
    int n = 0, scanned = 0, rc = SQLITE_DONE;
    int64_t last = 0;
    /* Bounded scan: a long history is walked over several calls with next_before. The
     * messages above the index's mark come first, as in exec_history. */
    for (int part = mark == INT64_MAX; part < 2 && n < limit && scanned < FIND_SCAN_MAX;
         part++) {
        sqlite3_stmt *st = pl_store_prepare(conn, part == 0
            ? "SELECT " COLS FROM " WHERE m.id > ?4 AND m.id < ?2 AND m.sender_id = ?1"
              " AND m.kind = 0 ORDER BY m.id DESC LIMIT ?3"
            : "SELECT " COLS " FROM chat_ix_sender x CROSS JOIN chat_messages m ON m.id = x.id"
              JOINS " WHERE x.sender_id = ?1 AND x.id < ?2 AND x.id <= ?4"
              " ORDER BY x.id DESC LIMIT ?3");
        if (!st)
            return PL_ESTATE;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
        sqlite3_bind_int64(st, 2, jb ? json_integer_value(jb) : INT64_MAX);
        sqlite3_bind_int(st, 3, FIND_SCAN_MAX - scanned);
        sqlite3_bind_int64(st, 4, mark);
        while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            scanned++;
            last = sqlite3_column_int64(st, C_ID);
            if (strcmp(status_of(st), want) == 0) {
                json_array_append_new(arr, row_json(op, st));
                n++;
            }
        }
        if (n < limit && rc != SQLITE_DONE)
            return PL_ESTATE;
    }
    bool more = n == limit || scanned == FIND_SCAN_MAX;
    json_object_set_new(op->result, "next_before", more && last ? json_integer(last) : json_null());
    return 0;
}

static void h_find(pl_sig_req_t *req, void *arg)
{
    const char *s = json_string_value(json_object_get(req->frame, "status"));
    if (strcmp(s, "sent") && strcmp(s, "delivered") && strcmp(s, "read") && strcmp(s, "expired")) {
        chat_reply_bad_field(req, "field \"status\": sent, delivered, read or expired");
        return;
    }
    chat_op_submit(chat_op_new(arg, req, exec_find));
}

static const pl_sig_field_t status_fields[] = {
    { "message_ids", PL_SIG_T_ARRAY, true, 0, CHAT_IDS_MAX },
};
static const pl_sig_field_t get_fields[] = {
    { "message_id", PL_SIG_T_ID, true, 0, 0 },
};
static const pl_sig_field_t history_fields[] = {
    { "with", PL_SIG_T_STRING, false, 1, 64 },
    { "group_id", PL_SIG_T_ID, false, 0, 0 },
    { "before", PL_SIG_T_ID, false, 0, 0 },
    { "limit", PL_SIG_T_INT, false, 1, 1000 },
};
static const pl_sig_field_t find_fields[] = {
    { "status", PL_SIG_T_STRING, true, 1, 16 },
    { "before", PL_SIG_T_ID, false, 0, 0 },
    { "limit", PL_SIG_T_INT, false, 1, 1000 },
};

const pl_sig_handler_t chat_query_handlers[] = {
    { "chat.status", h_status, true, status_fields, PL_ARRAY_LEN(status_fields) },
    { "chat.get", h_get, true, get_fields, PL_ARRAY_LEN(get_fields) },
    { "chat.history", h_history, true, history_fields, PL_ARRAY_LEN(history_fields) },
    { "chat.find", h_find, true, find_fields, PL_ARRAY_LEN(find_fields) },
};
const size_t chat_query_n_handlers = PL_ARRAY_LEN(chat_query_handlers);
