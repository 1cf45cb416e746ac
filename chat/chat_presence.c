/* chat_presence.c: online / last seen, and subscriptions to it.
 *
 *   chat.presence.subscribe {users?}  -> {presence: [{user, visible, online?,
 *                                                    last_seen_at?}]}
 *   chat.presence.unsubscribe {}      -> {}
 *   push chat.presence {user, online, last_seen_at?}
 *
 * A user is online while at least one of its devices has an authenticated connection
 * (the gateway hooks, chat_deliver.c); going offline records last_seen_at. Without
 * "users" a subscription covers the caller's contacts. What a subscriber sees follows
 * both sides' privacy setting (everyone, contacts, nobody), reciprocally: see
 * chat_presence_visible. A subscription belongs to the connection that made it and
 * ends with it.
 *
 * Scope: presence is this node's (with several nodes, each node reports the devices
 * connected to it; the router's registry is the cross-node view, not used here yet).
 *
 * Threading: handlers on the gateway thread; everything else on the store thread. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

/* Whether viewer may see subject. 1 yes, 0 no, < 0 error. */
static int visible(pl_store_conn_t *conn, uint64_t subject, uint64_t viewer)
{
    int ps, pv;
    bool rr;
    uint64_t seen;
    if (chat_sql_settings(conn, subject, &ps, &rr, &seen) < 0 ||
        chat_sql_settings(conn, viewer, &pv, &rr, &seen) < 0)
        return PL_ESTATE;
    int s_has_v = ps == CHAT_PRIV_CONTACTS ? chat_sql_is_contact(conn, subject, viewer) : 0;
    int v_has_s = pv == CHAT_PRIV_CONTACTS ? chat_sql_is_contact(conn, viewer, subject) : 0;
    if (s_has_v < 0 || v_has_s < 0)
        return PL_ESTATE;
    return chat_presence_visible(ps, s_has_v, pv, v_has_s);
}

static json_t *state_json(chat_t *c, pl_store_conn_t *conn, uint64_t account, const char *name,
                          bool show)
{
    json_t *o = json_pack("{s:s,s:b}", "user", name, "visible", show);
    if (!show)
        return o;
    chat_acct_t *a = chat_mem_acct(c->mem, account, false);
    bool online = a && a->n_conns > 0;
    json_object_set_new(o, "online", json_boolean(online));
    int p;
    bool rr;
    uint64_t seen = 0;
    if (!online && chat_sql_settings(conn, account, &p, &rr, &seen) == 0 && seen)
        json_object_set_new(o, "last_seen_at", json_integer((json_int_t)seen));
    return o;
}

void chat_presence_changed(chat_op_t *op, pl_store_conn_t *conn, uint64_t account_id,
                           bool online, uint64_t last_seen_at)
{
    chat_t *c = op->chat;
    chat_acct_t *a = chat_mem_acct(c->mem, account_id, false);
    if (!a || !a->n_watchers)
        return;
    char name[CHAT_USERNAME_MAX + 1];
    if (chat_sql_username(conn, account_id, name) < 0 || !name[0])
        return;
    for (uint32_t i = 0; i < a->n_watchers; i++) {
        chat_dev_t *w = chat_mem_dev(c->mem, a->watchers[i], false);
        if (!w || !w->watch_conn || visible(conn, account_id, w->account_id) != 1)
            continue;
        json_t *f = json_pack("{s:s,s:s,s:b}", "type", "chat.presence", "user", name,
                              "online", online);
        if (!online)
            json_object_set_new(f, "last_seen_at", json_integer((json_int_t)last_seen_at));
        chat_push_frame(op, w->watch_conn, f);
    }
}

/* The caller's contacts, ascending. */
static long contacts_of(pl_store_conn_t *conn, uint64_t owner, uint64_t **out)
{
    return chat_sql_ids(conn,
        "SELECT contact_id FROM chat_contacts WHERE owner_id = ?1 ORDER BY contact_id LIMIT 4096",
        owner, out);
}

static int exec_subscribe(chat_op_t *op, pl_store_conn_t *conn)
{
    chat_t *c = op->chat;
    json_t *users = json_object_get(op->in, "users");
    uint64_t *ids = NULL;
    long n = users ? chat_sql_resolve(op, conn, users, &ids) : contacts_of(conn, op->account_id,
                                                                          &ids);
    if (n < 0)
        return n == -1 ? 0 : (int)n;
    chat_ids_sort(ids, (size_t)n);
    n = (long)chat_ids_uniq(ids, (size_t)n);
    json_t *arr = json_array();
    json_object_set_new(chat_op_result(op), "presence", arr);
    int rc = 0;
    for (long i = 0; rc >= 0 && i < n; i++) {
        char name[CHAT_USERNAME_MAX + 1];
        int show = visible(conn, ids[i], op->account_id);
        if (show < 0 || chat_sql_username(conn, ids[i], name) < 0)
            rc = PL_ESTATE;
        else
            json_array_append_new(arr, state_json(c, conn, ids[i], name, show));
    }
    if (rc >= 0) {
        chat_dev_t *d = chat_mem_dev(c->mem, op->device_id, true);
        d->account_id = op->account_id;
        chat_mem_watch(c->mem, d, op->conn_id, ids, (size_t)n);
    }
    free(ids);
    return rc;
}

static int exec_unsubscribe(chat_op_t *op, pl_store_conn_t *conn)
{
    PL_UNUSED(conn);
    chat_dev_t *d = chat_mem_dev(op->chat->mem, op->device_id, false);
    if (d && d->watch_conn == op->conn_id)
        chat_mem_unwatch_all(op->chat->mem, d);
    chat_op_result(op);
    return 0;
}

static void h_subscribe(pl_sig_req_t *req, void *arg)
{
    json_t *users = json_object_get(req->frame, "users");
    size_t i;
    json_t *v;
    json_array_foreach(users, i, v) {
        if (!json_is_string(v)) {
            chat_reply_bad_field(req, "field \"users\": usernames");
            return;
        }
    }
    chat_op_submit(chat_op_new(arg, req, exec_subscribe));
}

static void h_unsubscribe(pl_sig_req_t *req, void *arg)
{
    chat_op_submit(chat_op_new(arg, req, exec_unsubscribe));
}

static const pl_sig_field_t subscribe_fields[] = {
    { "users", PL_SIG_T_ARRAY, false, 0, CHAT_USERS_MAX },
};

const pl_sig_handler_t chat_presence_handlers[] = {
    { "chat.presence.subscribe", h_subscribe, true, subscribe_fields,
      PL_ARRAY_LEN(subscribe_fields) },
    { "chat.presence.unsubscribe", h_unsubscribe, true, NULL, 0 },
};
const size_t chat_presence_n_handlers = PL_ARRAY_LEN(chat_presence_handlers);
