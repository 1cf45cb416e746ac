/* chat_sql.c: small queries several chat areas share: usernames <-> account ids, a
 * user's devices, group roles and members, contacts, settings.
 *
 * What it does not do: writes (each area writes its own rows).
 *
 * Threading: the store thread (inside an exec). */
#include "chat/chat_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *chat_sql_text(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return s ? (const char *)s : "";
}

int64_t chat_sql_account(pl_store_conn_t *conn, const char *username)
{
    sqlite3_stmt *st = pl_store_prepare(conn, "SELECT id FROM accounts WHERE username = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return sqlite3_column_int64(st, 0);
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

int64_t chat_lookup_account(chat_op_t *op, pl_store_conn_t *conn, const char *username)
{
    uint64_t id = chat_mem_name_get(op->chat->mem, username);
    if (id)
        return (int64_t)id;
    int64_t r = chat_sql_account(conn, username);
    if (r > 0)
        chat_mem_name_put(op->chat->mem, username, (uint64_t)r);
    return r;
}

int chat_sql_username(pl_store_conn_t *conn, uint64_t account_id,
                      char out[CHAT_USERNAME_MAX + 1])
{
    sqlite3_stmt *st = pl_store_prepare(conn, "SELECT username FROM accounts WHERE id = ?1");
    out[0] = '\0';
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        snprintf(out, CHAT_USERNAME_MAX + 1, "%s", chat_sql_text(st, 0));
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

/* Collects column 0 of every row as ids. */
static long collect_ids(sqlite3_stmt *st, uint64_t **out)
{
    size_t n = 0, cap = 8;
    uint64_t *ids = pl_xmalloc(cap * sizeof(*ids));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap *= 2;
            ids = pl_xrealloc(ids, cap * sizeof(*ids));
        }
        ids[n++] = (uint64_t)sqlite3_column_int64(st, 0);
    }
    if (rc != SQLITE_DONE) {
        free(ids);
        *out = NULL;
        return PL_ESTATE;
    }
    *out = ids;
    return (long)n;
}

long chat_sql_ids(pl_store_conn_t *conn, const char *sql, uint64_t id, uint64_t **out)
{
    sqlite3_stmt *st = pl_store_prepare(conn, sql);
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    return collect_ids(st, out);
}

long chat_sql_devices(pl_store_conn_t *conn, uint64_t account_id, uint64_t **out)
{
    return chat_sql_ids(conn, "SELECT id FROM devices WHERE account_id = ?1 ORDER BY id",
                        account_id, out);
}

int chat_sql_member_role(pl_store_conn_t *conn, uint64_t group_id, uint64_t account_id)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT admin FROM chat_members WHERE group_id = ?1 AND account_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)group_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return sqlite3_column_int(st, 0) ? 1 : 0;
    return rc == SQLITE_DONE ? -1 : PL_ESTATE;
}

long chat_sql_members(pl_store_conn_t *conn, uint64_t group_id, uint64_t **out)
{
    return chat_sql_ids(conn,
        "SELECT account_id FROM chat_members WHERE group_id = ?1 ORDER BY account_id",
        group_id, out);
}

int chat_sql_is_contact(pl_store_conn_t *conn, uint64_t owner, uint64_t contact)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT 1 FROM chat_contacts WHERE owner_id = ?1 AND contact_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)owner);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)contact);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

int chat_sql_settings(pl_store_conn_t *conn, uint64_t account_id, int *privacy,
                      bool *read_receipts, uint64_t *last_seen_at)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT privacy, read_receipts, last_seen_at FROM chat_settings WHERE account_id = ?1");
    *privacy = CHAT_PRIV_EVERYONE;
    *read_receipts = true;
    *last_seen_at = 0;
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *privacy = sqlite3_column_int(st, 0);
        *read_receipts = sqlite3_column_int(st, 1) != 0;
        *last_seen_at = (uint64_t)sqlite3_column_int64(st, 2);
    }
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

long chat_sql_resolve(chat_op_t *op, pl_store_conn_t *conn, const json_t *arr, uint64_t **out)
{
    size_t n = json_array_size(arr);
    uint64_t *ids = pl_xmalloc((n ? n : 1) * sizeof(*ids));
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        char name[CHAT_USERNAME_MAX + 1];
        const char *s = json_string_value(json_array_get(arr, i));
        int64_t id = s && chat_username_norm(s, name) ? chat_sql_account(conn, name) : 0;
        if (id < 0) {
            free(ids);
            return PL_ESTATE;
        }
        if (id == 0) {
            chat_op_fail(op, "not_found", "no such user: %.40s", s ? s : "(not a string)");
            op->err_extra = json_pack("{s:s}", "user", s ? s : "");
            free(ids);
            return -1;
        }
        ids[i] = (uint64_t)id;
    }
    *out = ids;
    return (long)n;
}
