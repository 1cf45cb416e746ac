/* store_db.c: the SQLite side of the store: opening the file with the durability
 * pragmas, schema migrations with a version table, and a statement cache keyed by the
 * SQL string's address.
 *
 * What it does not do: threads and batching (store.c).
 *
 * Threading: whoever holds the pl_store_conn_t (the opener, then the store thread). */
#include "store/store_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t g_sqlite_once = PTHREAD_ONCE_INIT;

/* Process-wide SQLite settings, before the library initializes. Memory statistics off:
 * with them on, every sqlite3_malloc/free takes a global mutex to keep the counters
 * (perf under bench/chat: ~9 % of the store thread in pthread_mutex_lock/unlock); the
 * store reports its own metrics instead. Returns nothing: if SQLite was already
 * initialized (another user in the process), the setting is refused and harmless. */
static bool g_walbuf;                /* PL_STORE_WALBUF_VFS registered */

static void sqlite_global_init(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    g_walbuf = pl_store_walbuf_register() == 0;
}

int pl_store_err(int sqlite_rc)
{
    if ((sqlite_rc & 0xff) == SQLITE_CONSTRAINT)
        return -EEXIST;
    return PL_ESTATE;
}

int pl_store_conn_exec(pl_store_conn_t *c, const char *sql, const char *what)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return 0;
    if (what)
        pl_log_error("store.exec.failed", "what=%s rc=%d error=%s", what, rc,
                     PL_LOG_QUOTED(msg ? msg : sqlite3_errstr(rc)));
    sqlite3_free(msg);
    return PL_ESTATE;
}

int pl_store_conn_open(pl_store_conn_t *c, const char *path, bool synchronous_normal)
{
    memset(c, 0, sizeof(*c));
    pthread_once(&g_sqlite_once, sqlite_global_init);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &c->db, flags, g_walbuf ? PL_STORE_WALBUF_VFS : NULL);
    if (rc != SQLITE_OK) {
        pl_log_error("store.open.failed", "path=%s error=%s", PL_LOG_QUOTED(path),
                     PL_LOG_QUOTED(c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc)));
        goto fail_db;
    }
    sqlite3_extended_result_codes(c->db, 1);
    /* WAL: readers (tools, a later read pool) never block the writer, and a commit is
     * one append + one fsync of the WAL. synchronous=FULL makes that fsync happen at
     * every commit, so a committed batch survives power loss (sqlite.org/pragma.html). */
    if (pl_store_conn_exec(c, "PRAGMA journal_mode=WAL", "journal_mode") < 0)
        goto fail_db;
    if (pl_store_conn_exec(c, synchronous_normal ? "PRAGMA synchronous=NORMAL"
                                                  : "PRAGMA synchronous=FULL",
                           "synchronous") < 0 ||
        pl_store_conn_exec(c, "PRAGMA foreign_keys=ON", "foreign_keys") < 0 ||
        pl_store_conn_exec(c, "PRAGMA busy_timeout=5000", "busy_timeout") < 0 ||
        /* Per-request savepoints make SQLite keep each page's pre-image in a
         * sub-journal, a temp file by default: a pwrite per page and request, most of a
         * batch's I/O (chat measured 10 of 13 writes per message). In memory instead. */
        pl_store_conn_exec(c, "PRAGMA temp_store=MEMORY", "temp_store") < 0 ||
        /* A 64 MiB page cache (reads stay in memory) and a checkpoint every 10000 WAL
         * pages instead of 1000: a hot page goes back to the database file once per
         * checkpoint, not every few commits. */
        pl_store_conn_exec(c, "PRAGMA cache_size=-65536", "cache_size") < 0 ||
        pl_store_conn_exec(c, "PRAGMA wal_autocheckpoint=10000", "wal_autocheckpoint") < 0)
        goto fail_db;
    c->cap = 64;
    c->slots = pl_xcalloc(c->cap, sizeof(*c->slots));
    return 0;

fail_db:
    sqlite3_close(c->db);
    c->db = NULL;
    return PL_ESTATE;
}

void pl_store_conn_close(pl_store_conn_t *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].stmt)
            sqlite3_finalize(c->slots[i].stmt);
    free(c->slots);
    free(c->used);
    for (unsigned i = 0; i < c->n_watch; i++)
        free(c->watch[i]);
    if (c->db)
        sqlite3_close(c->db);
    memset(c, 0, sizeof(*c));
}

sqlite3 *pl_store_db(pl_store_conn_t *conn)
{
    return conn->db;
}

uint64_t pl_store_conn_rollbacks(const pl_store_conn_t *conn)
{
    return conn->rollbacks;
}

/* sqlite3_update_hook: once per row written through this connection. */
static void on_row_write(void *arg, int op, const char *db, const char *table,
                         sqlite3_int64 rowid)
{
    PL_UNUSED(op);
    PL_UNUSED(db);
    PL_UNUSED(rowid);
    pl_store_conn_t *c = arg;
    for (unsigned i = 0; i < c->n_watch; i++)
        if (strcmp(table, c->watch[i]) == 0)
            c->writes[i]++;
}

uint64_t pl_store_conn_writes(pl_store_conn_t *conn, const char *table)
{
    for (unsigned i = 0; i < conn->n_watch; i++)
        if (strcmp(table, conn->watch[i]) == 0)
            return conn->writes[i];
    PL_ASSERT(conn->n_watch < PL_STORE_WATCH_MAX);
    if (conn->n_watch == 0)
        sqlite3_update_hook(conn->db, on_row_write, conn);
    conn->watch[conn->n_watch] = pl_xstrdup(table);
    conn->writes[conn->n_watch++] = 0;
    return 0;
}

uint64_t pl_store_conn_foreign_version(pl_store_conn_t *conn)
{
    unsigned pager = 0;
    if (sqlite3_file_control(conn->db, "main", SQLITE_FCNTL_DATA_VERSION, &pager) ==
            SQLITE_OK && conn->fv_valid && pager == conn->fv_pager)
        return conn->fv;
    /* The pragma's value in the low half, the number of failed reads in the high. */
    uint64_t errors = conn->fv >> 32;
    sqlite3_stmt *st = pl_store_prepare(conn, "PRAGMA data_version");
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        conn->fv = errors << 32 | (uint32_t)sqlite3_column_int64(st, 0);
        conn->fv_pager = pager;
        conn->fv_valid = true;
    } else {
        conn->fv = (errors + 1) << 32 | (conn->fv & 0xffffffffu);
        conn->fv_valid = false;
    }
    return conn->fv;
}

static size_t slot_hash(const char *sql, size_t cap)
{
    uintptr_t h = (uintptr_t)sql;
    h ^= h >> 17;
    h *= (uintptr_t)0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 7) & (cap - 1);
}

static pl_store_stmt_slot_t *slot_find(pl_store_conn_t *c, const char *sql)
{
    size_t i = slot_hash(sql, c->cap);
    while (c->slots[i].sql && c->slots[i].sql != sql)
        i = (i + 1) & (c->cap - 1);
    return &c->slots[i];
}

static void slots_grow(pl_store_conn_t *c)
{
    pl_store_stmt_slot_t *old = c->slots;
    size_t old_cap = c->cap;
    c->cap *= 2;
    c->slots = pl_xcalloc(c->cap, sizeof(*c->slots));
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].sql)
            *slot_find(c, old[i].sql) = old[i];
    free(old);
}

static void mark_used(pl_store_conn_t *c, pl_store_stmt_slot_t *s)
{
    if (s->used)
        return;
    s->used = true;
    if (c->n_used == c->used_cap) {
        c->used_cap = c->used_cap ? c->used_cap * 2 : 16;
        c->used = pl_xrealloc(c->used, c->used_cap * sizeof(*c->used));
    }
    c->used[c->n_used++] = s->sql;
}

sqlite3_stmt *pl_store_prepare(pl_store_conn_t *conn, const char *sql)
{
    pl_store_stmt_slot_t *s = slot_find(conn, sql);
    if (!s->sql) {
        if ((conn->count + 1) * 2 > conn->cap) {
            slots_grow(conn);
            s = slot_find(conn, sql);
        }
        sqlite3_stmt *stmt = NULL;
        int rc = sqlite3_prepare_v3(conn->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
        if (rc != SQLITE_OK) {
            pl_log_error("store.prepare.failed", "error=%s sql=%s",
                         PL_LOG_QUOTED(sqlite3_errmsg(conn->db)), PL_LOG_QUOTED(sql));
            return NULL;
        }
        s->sql = sql;
        s->stmt = stmt;
        conn->count++;
    }
    sqlite3_reset(s->stmt);
    sqlite3_clear_bindings(s->stmt);
    mark_used(conn, s);
    return s->stmt;
}

void pl_store_conn_reset_used(pl_store_conn_t *c)
{
    for (size_t i = 0; i < c->n_used; i++) {
        pl_store_stmt_slot_t *s = slot_find(c, c->used[i]);
        sqlite3_reset(s->stmt);
        s->used = false;
    }
    c->n_used = 0;
}

int pl_store_step_done(pl_store_conn_t *conn, sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return 0;
    int err = pl_store_err(rc);
    if (err != -EEXIST)
        pl_log_error("store.step.failed", "rc=%d error=%s", rc,
                     PL_LOG_QUOTED(sqlite3_errmsg(conn->db)));
    return err;
}

/* ---- migrations ------------------------------------------------------------------ */

static int read_version(pl_store_conn_t *c, const char *component, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db,
        "SELECT version FROM pl_schema_version WHERE component = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return PL_ESTATE;
    sqlite3_bind_text(st, 1, component, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

static int write_version(pl_store_conn_t *c, const char *component, int version)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db,
        "INSERT INTO pl_schema_version(component, version) VALUES (?1, ?2) "
        "ON CONFLICT(component) DO UPDATE SET version = excluded.version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return PL_ESTATE;
    sqlite3_bind_text(st, 1, component, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, version);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

/* One step in one transaction, so a failing step leaves the previous version intact. */
static int apply_step(pl_store_conn_t *c, const char *component, const pl_store_migration_t *m)
{
    if (pl_store_conn_exec(c, "BEGIN IMMEDIATE", "migrate.begin") < 0)
        return PL_ESTATE;
    char *msg = NULL;
    if (sqlite3_exec(c->db, m->sql, NULL, NULL, &msg) != SQLITE_OK) {
        pl_log_error("store.migrate.failed", "component=%s version=%d error=%s", component,
                     m->version, PL_LOG_QUOTED(msg ? msg : "?"));
        sqlite3_free(msg);
        pl_store_conn_exec(c, "ROLLBACK", "migrate.rollback");
        return PL_EPARSE;
    }
    if (write_version(c, component, m->version) < 0 ||
        pl_store_conn_exec(c, "COMMIT", "migrate.commit") < 0) {
        pl_store_conn_exec(c, "ROLLBACK", NULL);
        return PL_ESTATE;
    }
    pl_log_info("store.migrated", "component=%s version=%d", component, m->version);
    return 0;
}

static int migrate_one(pl_store_conn_t *c, const pl_store_schema_t *s)
{
    int have = 0;
    if (read_version(c, s->component, &have) < 0)
        return PL_ESTATE;
    int newest = s->n_steps ? s->steps[s->n_steps - 1].version : 0;
    if (have > newest) {
        pl_log_error("store.schema.newer", "component=%s db_version=%d known=%d",
                     s->component, have, newest);
        return PL_ESTATE;
    }
    for (size_t i = 0; i < s->n_steps; i++) {
        PL_ASSERT(i == 0 || s->steps[i].version > s->steps[i - 1].version);
        if (s->steps[i].version <= have)
            continue;
        int rc = apply_step(c, s->component, &s->steps[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int pl_store_migrate(pl_store_conn_t *c, const pl_store_schema_t *const *schemas, size_t n)
{
    if (pl_store_conn_exec(c,
            "CREATE TABLE IF NOT EXISTS pl_schema_version("
            "component TEXT PRIMARY KEY, version INTEGER NOT NULL)", "schema_version") < 0)
        return PL_ESTATE;
    for (size_t i = 0; i < n; i++) {
        int rc = migrate_one(c, schemas[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int pl_store_schema_version(const char *path, const char *component)
{
    sqlite3 *db = NULL;
    int version = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        pl_store_conn_t c = { .db = db };
        if (read_version(&c, component, &version) < 0)
            version = 0;
    }
    sqlite3_close(db);
    return version;
}
