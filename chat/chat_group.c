/* chat_group.c: groups.
 *
 *   chat.group.create  {name, members, description?, icon?, send?, edit_info?}
 *   chat.group.info    {group_id}            chat.group.list {}
 *   chat.group.update  {group_id, name?, description?, icon?, send?, edit_info?}
 *   chat.group.add     {group_id, members}   chat.group.remove {group_id, members}
 *   chat.group.promote {group_id, user}      chat.group.demote {group_id, user}
 *   chat.group.leave   {group_id}
 * each answered with {group: info}; every change is a durable chat.event to every
 * member device (and to the members it removed), see chat_event.c.
 *
 * Rules: only members read a group; only admins add, remove, promote, demote and change
 * the settings; the info (name, description, icon) is editable by members unless
 * edit_info is "admins"; sending is open to members unless send is "admins". At most
 * [chat] group_max members. The last admin cannot be demoted; when the last admin
 * leaves, the longest-standing remaining member is promoted.
 *
 * Threading: handlers on the gateway thread; exec functions on the store thread. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

enum { G_CREATE, G_INFO, G_LIST, G_UPDATE, G_ADD, G_REMOVE, G_PROMOTE, G_DEMOTE, G_LEAVE };

/* ---- helpers (store thread) --------------------------------------------------------- */

static int group_json(chat_op_t *op, pl_store_conn_t *conn, uint64_t gid, json_t **out)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT name, description, icon, send_admins, info_admins, created_at, version"
        " FROM chat_groups WHERE id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
    if (sqlite3_step(st) != SQLITE_ROW)
        return PL_ESTATE;
    json_t *g = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "group_id", (json_int_t)gid,
        "name", chat_sql_text(st, 0), "description", chat_sql_text(st, 1),
        "icon", chat_sql_text(st, 2), "send", sqlite3_column_int(st, 3) ? "admins" : "all",
        "edit_info", sqlite3_column_int(st, 4) ? "admins" : "all",
        "created_at", (json_int_t)sqlite3_column_int64(st, 5),
        "version", (json_int_t)sqlite3_column_int64(st, 6));
    st = pl_store_prepare(conn,
        "SELECT a.username, m.admin, m.joined_at FROM chat_members m JOIN accounts a"
        " ON a.id = m.account_id WHERE m.group_id = ?1 ORDER BY m.joined_at, a.id");
    if (!st) {
        json_decref(g);
        return PL_ESTATE;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
    json_t *members = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(members, json_pack("{s:s,s:s,s:I}", "user", chat_sql_text(st, 0),
            "role", sqlite3_column_int(st, 1) ? "admin" : "member",
            "joined_at", (json_int_t)sqlite3_column_int64(st, 2)));
    json_object_set_new(g, "members", members);
    PL_UNUSED(op);
    *out = g;
    return 0;
}

/* Replies {group} and sends the event ev (owned) to the current members plus extra. */
static int finish_change(chat_op_t *op, pl_store_conn_t *conn, uint64_t gid, json_t *ev,
                         const uint64_t *extra, size_t n_extra)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "UPDATE chat_groups SET version = version + 1 WHERE id = ?1 RETURNING version");
    json_t *g = NULL;
    uint64_t *members = NULL;
    int rc = st ? 0 : PL_ESTATE;
    if (st) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
        rc = sqlite3_step(st) == SQLITE_ROW ? 0 : PL_ESTATE;
        if (rc == 0)
            json_object_set_new(ev, "version", json_integer(sqlite3_column_int64(st, 0)));
        sqlite3_step(st);
    }
    long n = rc < 0 ? rc : chat_sql_members(conn, gid, &members);
    if (n >= 0) {
        uint64_t *all = pl_xmalloc(((size_t)n + n_extra + 1) * sizeof(*all));
        memcpy(all, members, (size_t)n * sizeof(*all));
        if (n_extra)
            memcpy(all + n, extra, n_extra * sizeof(*all));
        json_object_set_new(ev, "group_id", json_integer((json_int_t)gid));
        json_object_set_new(ev, "by", json_string(op->username));
        rc = chat_event_emit(op, conn, gid, all, (size_t)n + n_extra, ev);
        free(all);
    } else {
        rc = (int)n;
    }
    if (rc >= 0 && (rc = group_json(op, conn, gid, &g)) >= 0)
        json_object_set_new(chat_op_result(op), "group", g);
    json_decref(ev);
    free(members);
    return rc;
}

/* Checks the caller's role. need: 0 member, 1 admin. Returns 1 to go on, 0 refused. */
static int require(chat_op_t *op, pl_store_conn_t *conn, uint64_t gid, int need)
{
    int role = chat_sql_member_role(conn, gid, op->account_id);
    if (role < -1)
        return role;
    if (role < 0) {
        sqlite3_stmt *st = pl_store_prepare(conn, "SELECT 1 FROM chat_groups WHERE id = ?1");
        if (!st)
            return PL_ESTATE;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
        if (sqlite3_step(st) != SQLITE_ROW)
            return chat_op_fail(op, "not_found", "no such group: %llu", (unsigned long long)gid);
        return chat_op_fail(op, "not_a_member", "you are not a member of this group");
    }
    if (need == 1 && role != 1)
        return chat_op_fail(op, "not_admin", "only group admins may do this");
    return 1;
}

static int add_member(pl_store_conn_t *conn, uint64_t gid, uint64_t account, bool admin,
                      uint64_t now_ms)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO chat_members(group_id, account_id, admin, joined_at) VALUES (?1,?2,?3,?4)"
        " ON CONFLICT DO NOTHING");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)account);
    sqlite3_bind_int(st, 3, admin);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)now_ms);
    return pl_store_step_done(conn, st);
}

static int count_members(pl_store_conn_t *conn, uint64_t gid)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT count(*) FROM chat_members WHERE group_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
    return sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : PL_ESTATE;
}

/* Resolves "members", drops the caller and duplicates. */
static long resolve_members(chat_op_t *op, pl_store_conn_t *conn, uint64_t **ids)
{
    long n = chat_sql_resolve(op, conn, json_object_get(op->in, "members"), ids);
    if (n < 0)
        return n;
    chat_ids_sort(*ids, (size_t)n);
    n = (long)chat_ids_uniq(*ids, (size_t)n);
    long k = 0;
    for (long i = 0; i < n; i++)
        if ((*ids)[i] != op->account_id)
            (*ids)[k++] = (*ids)[i];
    return k;
}

static json_t *names_json(const json_t *arr)
{
    json_t *out = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        char name[CHAT_USERNAME_MAX + 1];
        if (chat_username_norm(json_string_value(v), name))
            json_array_append_new(out, json_string(name));
    }
    return out;
}

/* ---- create / info / list -------------------------------------------------------- */

static int setting(const json_t *in, const char *key)
{
    const char *s = json_string_value(json_object_get(in, key));
    return s && strcmp(s, "admins") == 0;
}

static int exec_create(chat_op_t *op, pl_store_conn_t *conn)
{
    uint64_t *ids = NULL;
    long n = resolve_members(op, conn, &ids);
    if (n < 0)
        return n == -1 ? 0 : (int)n;
    int rc = 0;
    if ((uint64_t)n + 1 > op->lim.group_max) {
        free(ids);
        return chat_op_fail(op, "group_full", "a group has at most %u members", op->lim.group_max);
    }
    const json_t *in = op->in;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "INSERT INTO chat_groups(name, description, icon, send_admins, info_admins,"
        " created_by, created_at, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)");
    if (!st) {
        free(ids);
        return PL_ESTATE;
    }
    sqlite3_bind_text(st, 1, json_string_value(json_object_get(in, "name")), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, json_string_value(json_object_get(in, "description")) ?: "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, 3, json_string_value(json_object_get(in, "icon")) ?: "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_int(st, 4, setting(in, "send"));
    sqlite3_bind_int(st, 5, setting(in, "edit_info"));
    sqlite3_bind_int64(st, 6, (sqlite3_int64)op->account_id);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)op->now_ms);
    rc = pl_store_step_done(conn, st);
    uint64_t gid = (uint64_t)sqlite3_last_insert_rowid(pl_store_db(conn));
    if (rc >= 0)
        rc = add_member(conn, gid, op->account_id, true, op->now_ms);
    for (long i = 0; rc >= 0 && i < n; i++)
        rc = add_member(conn, gid, ids[i], false, op->now_ms);
    free(ids);
    if (rc < 0)
        return rc;
    json_t *ev = json_pack("{s:s,s:s,s:o}", "event", "group.created", "name",
                           json_string_value(json_object_get(in, "name")), "members",
                           names_json(json_object_get(in, "members")));
    return finish_change(op, conn, gid, ev, NULL, 0);
}

static int exec_info(chat_op_t *op, pl_store_conn_t *conn)
{
    uint64_t gid = (uint64_t)json_integer_value(json_object_get(op->in, "group_id"));
    int rc = require(op, conn, gid, 0);
    if (rc <= 0)
        return rc;
    json_t *g = NULL;
    if ((rc = group_json(op, conn, gid, &g)) < 0)
        return rc;
    json_object_set_new(chat_op_result(op), "group", g);
    return 0;
}

static int exec_list(chat_op_t *op, pl_store_conn_t *conn)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT g.id, g.name, m.admin, g.version FROM chat_members m JOIN chat_groups g"
        " ON g.id = m.group_id WHERE m.account_id = ?1 ORDER BY g.id");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)op->account_id);
    json_t *arr = json_array();
    json_object_set_new(chat_op_result(op), "groups", arr);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:I}", "group_id",
            (json_int_t)sqlite3_column_int64(st, 0), "name", chat_sql_text(st, 1),
            "role", sqlite3_column_int(st, 2) ? "admin" : "member",
            "version", (json_int_t)sqlite3_column_int64(st, 3)));
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

/* ---- update --------------------------------------------------------------------------- */

static int exec_update(chat_op_t *op, pl_store_conn_t *conn)
{
    const json_t *in = op->in;
    uint64_t gid = (uint64_t)json_integer_value(json_object_get(in, "group_id"));
    bool settings = json_object_get(in, "send") || json_object_get(in, "edit_info");
    int rc = require(op, conn, gid, settings ? 1 : 0);
    if (rc <= 0)
        return rc;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT info_admins FROM chat_groups WHERE id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
    if (sqlite3_step(st) != SQLITE_ROW)
        return PL_ESTATE;
    bool info = json_object_get(in, "name") || json_object_get(in, "description") ||
                json_object_get(in, "icon");
    if (info && sqlite3_column_int(st, 0) && chat_sql_member_role(conn, gid, op->account_id) != 1)
        return chat_op_fail(op, "forbidden", "only admins may edit this group's info");
    st = pl_store_prepare(conn,
        "UPDATE chat_groups SET name = COALESCE(?2, name), description = COALESCE(?3,"
        " description), icon = COALESCE(?4, icon), send_admins = COALESCE(?5, send_admins),"
        " info_admins = COALESCE(?6, info_admins) WHERE id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
    static const char *const keys[] = { "name", "description", "icon" };
    json_t *changes = json_object();
    for (int i = 0; i < 3; i++) {
        const char *v = json_string_value(json_object_get(in, keys[i]));
        if (v) {
            sqlite3_bind_text(st, 2 + i, v, -1, SQLITE_STATIC);
            json_object_set_new(changes, keys[i], json_string(v));
        }
    }
    static const char *const skeys[] = { "send", "edit_info" };
    for (int i = 0; i < 2; i++) {
        if (json_object_get(in, skeys[i])) {
            sqlite3_bind_int(st, 5 + i, setting(in, skeys[i]));
            json_object_set_new(changes, skeys[i],
                                json_string(setting(in, skeys[i]) ? "admins" : "all"));
        }
    }
    if ((rc = pl_store_step_done(conn, st)) < 0) {
        json_decref(changes);
        return rc;
    }
    return finish_change(op, conn, gid, json_pack("{s:s,s:o}", "event", "group.updated",
                                                  "changes", changes), NULL, 0);
}

/* ---- membership ------------------------------------------------------------------------ */

static int exec_add(chat_op_t *op, pl_store_conn_t *conn)
{
    uint64_t gid = (uint64_t)json_integer_value(json_object_get(op->in, "group_id"));
    int rc = require(op, conn, gid, 1);
    if (rc <= 0)
        return rc;
    uint64_t *ids = NULL;
    long n = resolve_members(op, conn, &ids);
    if (n < 0)
        return n == -1 ? 0 : (int)n;
    int have = count_members(conn, gid);
    long added = 0;
    for (long i = 0; have >= 0 && i < n; i++)
        added += chat_sql_member_role(conn, gid, ids[i]) == -1;
    if (have < 0)
        rc = have;
    else if ((uint64_t)have + (uint64_t)added > op->lim.group_max)
        rc = chat_op_fail(op, "group_full", "a group has at most %u members", op->lim.group_max);
    else
        rc = 1;
    for (long i = 0; rc > 0 && i < n; i++)
        rc = add_member(conn, gid, ids[i], false, op->now_ms) < 0 ? PL_ESTATE : 1;
    free(ids);
    if (rc <= 0)
        return rc;
    json_t *ev = json_pack("{s:s,s:o}", "event", "group.members_added", "members",
                           names_json(json_object_get(op->in, "members")));
    return finish_change(op, conn, gid, ev, NULL, 0);
}

static int delete_member(pl_store_conn_t *conn, uint64_t gid, uint64_t account)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "DELETE FROM chat_members WHERE group_id = ?1 AND account_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)account);
    return pl_store_step_done(conn, st);
}

static int exec_remove(chat_op_t *op, pl_store_conn_t *conn)
{
    uint64_t gid = (uint64_t)json_integer_value(json_object_get(op->in, "group_id"));
    int rc = require(op, conn, gid, 1);
    if (rc <= 0)
        return rc;
    uint64_t *ids = NULL;
    long n = chat_sql_resolve(op, conn, json_object_get(op->in, "members"), &ids);
    if (n < 0)
        return n == -1 ? 0 : (int)n;
    rc = 1;
    for (long i = 0; rc > 0 && i < n; i++) {
        int role = chat_sql_member_role(conn, gid, ids[i]);
        if (role < -1)
            rc = role;
        else if (ids[i] == op->account_id)
            rc = chat_op_fail(op, "bad_field", "use chat.group.leave to leave a group");
        else if (role < 0)
            rc = chat_op_fail(op, "not_a_member", "%s is not a member of this group",
                              json_string_value(json_array_get(json_object_get(op->in,
                                                                               "members"), i)));
    }
    for (long i = 0; rc > 0 && i < n; i++)
        rc = delete_member(conn, gid, ids[i]) < 0 ? PL_ESTATE : 1;
    if (rc <= 0) {
        free(ids);
        return rc;
    }
    json_t *ev = json_pack("{s:s,s:o}", "event", "group.members_removed", "members",
                           names_json(json_object_get(op->in, "members")));
    rc = finish_change(op, conn, gid, ev, ids, (size_t)n);
    free(ids);
    return rc;
}

static int set_admin(pl_store_conn_t *conn, uint64_t gid, uint64_t account, bool admin)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "UPDATE chat_members SET admin = ?3 WHERE group_id = ?1 AND account_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)account);
    sqlite3_bind_int(st, 3, admin);
    return pl_store_step_done(conn, st);
}

static int count_admins(pl_store_conn_t *conn, uint64_t gid)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT count(*) FROM chat_members WHERE group_id = ?1 AND admin = 1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
    return sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : PL_ESTATE;
}

static int exec_role(chat_op_t *op, pl_store_conn_t *conn)
{
    bool promote = op->ival == G_PROMOTE;
    uint64_t gid = (uint64_t)json_integer_value(json_object_get(op->in, "group_id"));
    int rc = require(op, conn, gid, 1);
    if (rc <= 0)
        return rc;
    char name[CHAT_USERNAME_MAX + 1] = "";
    if (!chat_username_norm(json_string_value(json_object_get(op->in, "user")), name))
        name[0] = '\0';
    int64_t who = chat_sql_account(conn, name);
    if (who < 0)
        return (int)who;
    int role = who ? chat_sql_member_role(conn, gid, (uint64_t)who) : -1;
    if (role < -1)
        return role;
    if (role < 0)
        return chat_op_fail(op, "not_a_member", "%s is not a member of this group", name);
    if (!promote && role == 1 && count_admins(conn, gid) <= 1)
        return chat_op_fail(op, "last_admin", "a group keeps at least one admin");
    if ((rc = set_admin(conn, gid, (uint64_t)who, promote)) < 0)
        return rc;
    json_t *ev = json_pack("{s:s,s:s}", "event", promote ? "group.promoted" : "group.demoted",
                           "user", name);
    return finish_change(op, conn, gid, ev, NULL, 0);
}

/* The longest-standing member becomes admin when the last admin leaves. */
static int promote_successor(chat_op_t *op, pl_store_conn_t *conn, uint64_t gid, json_t *ev)
{
    int admins = count_admins(conn, gid);
    if (admins != 0)
        return admins < 0 ? admins : 0;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "UPDATE chat_members SET admin = 1 WHERE group_id = ?1 AND account_id ="
        " (SELECT account_id FROM chat_members WHERE group_id = ?1"
        "  ORDER BY joined_at, account_id LIMIT 1) RETURNING account_id");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gid);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        char name[CHAT_USERNAME_MAX + 1];
        uint64_t who = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_step(st);
        if (chat_sql_username(conn, who, name) < 0)
            return PL_ESTATE;
        json_object_set_new(ev, "promoted", json_string(name));
        return 0;
    }
    PL_UNUSED(op);
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

static int exec_leave(chat_op_t *op, pl_store_conn_t *conn)
{
    uint64_t gid = (uint64_t)json_integer_value(json_object_get(op->in, "group_id"));
    int rc = require(op, conn, gid, 0);
    if (rc <= 0)
        return rc;
    if ((rc = delete_member(conn, gid, op->account_id)) < 0)
        return rc;
    json_t *ev = json_pack("{s:s,s:s}", "event", "group.member_left", "user", op->username);
    if ((rc = promote_successor(op, conn, gid, ev)) < 0) {
        json_decref(ev);
        return rc;
    }
    uint64_t me = op->account_id;
    rc = finish_change(op, conn, gid, ev, &me, 1);
    if (rc >= 0)
        json_object_del(op->result, "group");  /* no longer the caller's to read */
    return rc;
}

/* ---- handlers ------------------------------------------------------------------------- */

static const chat_exec_fn execs[] = {
    [G_CREATE] = exec_create, [G_INFO] = exec_info, [G_LIST] = exec_list,
    [G_UPDATE] = exec_update, [G_ADD] = exec_add, [G_REMOVE] = exec_remove,
    [G_PROMOTE] = exec_role, [G_DEMOTE] = exec_role, [G_LEAVE] = exec_leave,
};

static bool setting_ok(const json_t *f, const char *key)
{
    const char *s = json_string_value(json_object_get(f, key));
    return !json_object_get(f, key) || (s && (!strcmp(s, "all") || !strcmp(s, "admins")));
}

/* Frame checks beyond the field table. Returns NULL or the complaint. */
static const char *check_frame(const json_t *f, int kind)
{
    const char *name = json_string_value(json_object_get(f, "name"));
    const char *desc = json_string_value(json_object_get(f, "description"));
    const char *icon = json_string_value(json_object_get(f, "icon"));
    if ((name && (!name[0] || !chat_text_ok(name))) || (desc && !chat_text_ok(desc)))
        return "name/description: no control characters; name not empty";
    if (icon && !chat_asset_ok(icon))
        return "field \"icon\": an asset id of A-Z a-z 0-9 _ . : -";
    if (!setting_ok(f, "send") || !setting_ok(f, "edit_info"))
        return "fields \"send\"/\"edit_info\": \"all\" or \"admins\"";
    const json_t *m = json_object_get(f, "members");
    size_t i;
    json_t *v;
    json_array_foreach(m, i, v) {
        if (!json_is_string(v))
            return "field \"members\": usernames";
    }
    if ((kind == G_ADD || kind == G_REMOVE) && json_array_size(m) == 0)
        return "field \"members\": at least one username";
    return NULL;
}

static void handle(pl_sig_req_t *req, void *arg, int kind)
{
    const char *why = check_frame(req->frame, kind);
    if (why) {
        chat_reply_bad_field(req, "%s", why);
        return;
    }
    chat_op_t *op = chat_op_new(arg, req, execs[kind]);
    op->ival = kind;
    chat_op_submit(op);
}

#define H(fn, kind) static void fn(pl_sig_req_t *req, void *arg) { handle(req, arg, kind); }
H(h_create, G_CREATE)
H(h_info, G_INFO)
H(h_list, G_LIST)
H(h_update, G_UPDATE)
H(h_add, G_ADD)
H(h_remove, G_REMOVE)
H(h_promote, G_PROMOTE)
H(h_demote, G_DEMOTE)
H(h_leave, G_LEAVE)

static const pl_sig_field_t create_fields[] = {
    { "name", PL_SIG_T_STRING, true, 1, CHAT_GROUP_NAME_MAX },
    { "members", PL_SIG_T_ARRAY, true, 0, CHAT_USERS_MAX },
    { "description", PL_SIG_T_STRING, false, 0, CHAT_GROUP_DESC_MAX },
    { "icon", PL_SIG_T_STRING, false, 0, CHAT_ASSET_MAX },
    { "send", PL_SIG_T_STRING, false, 1, 8 },
    { "edit_info", PL_SIG_T_STRING, false, 1, 8 },
};
static const pl_sig_field_t gid_fields[] = {
    { "group_id", PL_SIG_T_ID, true, 0, 0 },
};
static const pl_sig_field_t update_fields[] = {
    { "group_id", PL_SIG_T_ID, true, 0, 0 },
    { "name", PL_SIG_T_STRING, false, 1, CHAT_GROUP_NAME_MAX },
    { "description", PL_SIG_T_STRING, false, 0, CHAT_GROUP_DESC_MAX },
    { "icon", PL_SIG_T_STRING, false, 0, CHAT_ASSET_MAX },
    { "send", PL_SIG_T_STRING, false, 1, 8 },
    { "edit_info", PL_SIG_T_STRING, false, 1, 8 },
};
static const pl_sig_field_t members_fields[] = {
    { "group_id", PL_SIG_T_ID, true, 0, 0 },
    { "members", PL_SIG_T_ARRAY, true, 0, CHAT_USERS_MAX },
};
static const pl_sig_field_t user_fields[] = {
    { "group_id", PL_SIG_T_ID, true, 0, 0 },
    { "user", PL_SIG_T_STRING, true, 1, 64 },
};

const pl_sig_handler_t chat_group_handlers[] = {
    { "chat.group.create", h_create, true, create_fields, PL_ARRAY_LEN(create_fields) },
    { "chat.group.info", h_info, true, gid_fields, PL_ARRAY_LEN(gid_fields) },
    { "chat.group.list", h_list, true, NULL, 0 },
    { "chat.group.update", h_update, true, update_fields, PL_ARRAY_LEN(update_fields) },
    { "chat.group.add", h_add, true, members_fields, PL_ARRAY_LEN(members_fields) },
    { "chat.group.remove", h_remove, true, members_fields, PL_ARRAY_LEN(members_fields) },
    { "chat.group.promote", h_promote, true, user_fields, PL_ARRAY_LEN(user_fields) },
    { "chat.group.demote", h_demote, true, user_fields, PL_ARRAY_LEN(user_fields) },
    { "chat.group.leave", h_leave, true, gid_fields, PL_ARRAY_LEN(gid_fields) },
};
const size_t chat_group_n_handlers = PL_ARRAY_LEN(chat_group_handlers);
