/* chat_index.c: the lookup indexes of chat_messages, maintained in sorted runs.
 *
 * chat.history (by conversation) and chat.find (by sender) need chat_messages ordered
 * by (conv_a, conv_b, id) and by (sender_id, id). Kept as SQLite indexes they cost every
 * send two random B-tree inserts, each dirtying a leaf that the commit writes whole into
 * the WAL: with a thousand busy conversations nearly every message wrote two more 4 KiB
 * pages. So they are tables of their own (chat_ix_conv, chat_ix_sender) that trail the
 * messages: chat_ix_state.upto says up to which message id they are complete, and a
 * catch-up adds the rows above it, sorted, in one statement per table -- a leaf then
 * takes many entries per write. A catch-up starts when CHAT_IX_RUN rows have been added
 * since the last one began and goes in steps between sends (see "spread catch-ups"
 * below). A lookup that reads the indexes sees every committed message as before: when
 * at most CHAT_IX_SYNC_MAX rows trail them it first runs a catch-up in a single go;
 * past that, which would hold the store thread for tens of milliseconds, it reads the
 * rows above the mark from chat_messages instead (chat_ix_lookup_mark, chat_query.c).
 *
 * Everything that counts is in the database: a catch-up is part of the transaction of
 * the request that runs it, so a rollback takes its rows and its new upto along, and
 * the next catch-up simply does the work again (INSERT OR IGNORE: the tables are derived
 * data, a rerun is harmless). Message rows are never deleted and ids only grow
 * (chat_schema.c), so the rows above upto are exactly the ones not yet indexed. The
 * counters in chat_t (ix_sched_t) are a hint for when to catch up, and the sorted runs
 * of a spread catch-up (struct chat_ixruns) a cache of rows, never a fact about the
 * tables.
 *
 * The idempotency index (sender_id, client_id) trails the same way (chat_ix_client, up
 * to chat_ix_state.client_upto; its catch-ups come half a run after the other two, so
 * no batch waits for all three). But a send must see every earlier client id at once,
 * so the ids above client_upto are also held in memory (chat_cids_t), and every send
 * checks the memory, then the table. The memory is a hint, never trusted alone:
 *   - a hit is checked against the message row (sender and client id), so an entry
 *     whose row is gone, or a hash collision, is no answer;
 *   - it must not miss a row above client_upto. It gets this node's inserts as they
 *     happen, and rows other connections committed (nodes sharing the database file)
 *     by a scan of the rows above the highest one scanned (or the index's upto, if
 *     higher) whenever another connection has committed (pl_store_conn_foreign_version;
 *     this node's own commits need no scan). The scan's mark only moves to rows it read -- committed, or released by an
 *     earlier request of the same transaction -- never to an id inserted by a request
 *     that may still roll back (ids are max + 1: a rolled-back id is used again);
 *   - entries are dropped only at or below the client_upto the database holds when a
 *     send starts, which a catch-up rolled back with its request no longer claims;
 *   - when the store rolls back a whole transaction (pl_store_conn_rollbacks), the
 *     memory is rebuilt from the rows above client_upto.
 * The unique index it replaces cost every send a random insert into a B-tree that only
 * grows: half the WAL frames of a commit (docs/BENCHMARKS.md).
 *
 * A client id the memory does not hold would still cost a look-up in chat_ix_client, a
 * random leaf of a B-tree that only grows (from disk once it outgrows the caches). A
 * filter spares it: a blocked Bloom filter (about 1 % false hits; 1.5 to 3 bytes a
 * message, in generations of doubling size) of the keys of every row with id <= f_hw.
 * It answers "none" only when f_hw has reached the client_upto of the memory's last
 * build or prune (the memory holds every row above that), and it follows that mark by
 * reading the rows above f_hw, CHAT_CIDF_CHUNK every CHAT_CIDF_EVERY sends; after a
 * restart it fills the same way while sends look into the table. It reads rows at a
 * send's start only, when those up to the mark are committed or released by earlier
 * requests (a failed request's id can be used again; a released one only after a
 * rollback of the whole transaction, which empties the filter). Past
 * CHAT_CIDF_MAX_BYTES it is dropped and every send looks into the table.
 *
 * Threading: store thread only. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

static int64_t query_int(pl_store_conn_t *conn, const char *sql)
{
    sqlite3_stmt *st = pl_store_prepare(conn, sql);
    if (!st)
        return PL_ESTATE;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return sqlite3_column_int64(st, 0);
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

static int add_range(pl_store_conn_t *conn, const char *sql, int64_t from, int64_t to)
{
    sqlite3_stmt *st = pl_store_prepare(conn, sql);
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    return pl_store_step_done(conn, st);
}

/* One table of a set: how the synchronous catch-up adds a range of messages to it, and
 * how a spread one reads the range's keys into a run in memory and moves a slice of the
 * sorted run into the table (see "Spread catch-ups"). */
typedef struct ix_table {
    const char *add;                    /* ?1 < id <= ?2, sorted by the key */
    const char *read;                   /* ?1 < id <= ?2: the key as (a, b or t, id) */
    bool text;                          /* the key's middle column is text (t) */
    const char *insert;                 /* rows ?2 <= i < ?3 of run ?1 into the table */
} ix_table_t;

#define IX_MAX_TABLES 2

/* One mark in chat_ix_state and the tables complete up to it. */
typedef struct ix_set {
    int id;                             /* temp.ix_job.set_id: 1 or 2 */
    const char *get_upto;
    const char *set_upto;               /* ?1 the old mark, ?2 the new one */
    const ix_table_t *tables;
    size_t n_tables;                    /* <= IX_MAX_TABLES */
} ix_set_t;

/* Receipts held for away devices (kind 2) are nobody's conversation; find covers
 * messages only (kind 0). */
static const ix_table_t history_tables[] = {
    { "INSERT OR IGNORE INTO chat_ix_conv(conv_a, conv_b, id) SELECT conv_a, conv_b, id"
      " FROM chat_messages WHERE id > ?1 AND id <= ?2 AND kind <> 2"
      " ORDER BY conv_a, conv_b, id",
      "SELECT conv_a, conv_b, id FROM chat_messages WHERE id > ?1 AND id <= ?2 AND kind <> 2",
      false,
      "INSERT OR IGNORE INTO chat_ix_conv(conv_a, conv_b, id) SELECT a, b, id"
      " FROM pl_ixrun(?1, ?2, ?3)" },
    { "INSERT OR IGNORE INTO chat_ix_sender(sender_id, id) SELECT sender_id, id"
      " FROM chat_messages WHERE id > ?1 AND id <= ?2 AND kind = 0"
      " ORDER BY sender_id, id",
      "SELECT sender_id, 0, id FROM chat_messages WHERE id > ?1 AND id <= ?2 AND kind = 0",
      false,
      "INSERT OR IGNORE INTO chat_ix_sender(sender_id, id) SELECT a, id FROM pl_ixrun(?1, ?2, ?3)" },
};
static const ix_set_t history_set = {
    1, "SELECT upto FROM chat_ix_state WHERE id = 1",
    "UPDATE chat_ix_state SET upto = ?2 WHERE id = 1 AND upto = ?1",
    history_tables, PL_ARRAY_LEN(history_tables),
};

/* The first message of a (sender, client id) wins: a run keeps every id, sorted by
 * (sender, client id, id), and the slices go in that order. */
static const ix_table_t client_tables[] = {
    { "INSERT OR IGNORE INTO chat_ix_client(sender_id, client_id, id)"
      " SELECT sender_id, client_id, id FROM chat_messages"
      " WHERE id > ?1 AND id <= ?2 AND client_id IS NOT NULL"
      " ORDER BY sender_id, client_id, id",
      "SELECT sender_id, client_id, id FROM chat_messages"
      " WHERE id > ?1 AND id <= ?2 AND client_id IS NOT NULL",
      true,
      "INSERT OR IGNORE INTO chat_ix_client(sender_id, client_id, id) SELECT a, t, id"
      " FROM pl_ixrun(?1, ?2, ?3)" },
};
static const ix_set_t client_set = {
    2, "SELECT client_upto FROM chat_ix_state WHERE id = 1",
    "UPDATE chat_ix_state SET client_upto = ?2 WHERE id = 1 AND client_upto = ?1",
    client_tables, PL_ARRAY_LEN(client_tables),
};

/* ---- runs in memory --------------------------------------------------------------- */

/* One index key: (a, b, id), or (a, t, id) with t a client id in the run's arena. */
typedef struct ix_key {
    int64_t a, b, id;
    uint32_t t_off, t_len;
} ix_key_t;

typedef struct ix_run {
    ix_key_t *v, *scratch;              /* scratch: the merge's output */
    size_t n, cap;
    char *arena;
    size_t arena_len, arena_cap;
} ix_run_t;

/* The keys of a job's rows lo < id <= filled, one sorted run per table: a cache of the
 * database, valid while the job (lo, hi) is the same and no whole transaction rolled
 * back (epoch); the job's row in temp.ix_job says how far the database has got. */
typedef struct ix_cache {
    bool valid;
    int64_t lo, hi, filled;
    uint64_t epoch;
    ix_run_t runs[IX_MAX_TABLES];
} ix_cache_t;

struct chat_ixruns {
    ix_cache_t sets[2];                 /* by set id - 1 */
    sqlite3 *registered;                /* the connection pl_ixrun is registered on */
};

static int key_cmp(const void *x, const void *y, void *arg)
{
    const ix_key_t *p = x, *q = y;
    const ix_run_t *r = arg;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    if (p->b != q->b)
        return p->b < q->b ? -1 : 1;
    if (p->t_len || q->t_len) {
        /* SQLite's BINARY collation: bytes, then the shorter first. */
        int c = memcmp(r->arena + p->t_off, r->arena + q->t_off, PL_MIN(p->t_len, q->t_len));
        if (c || p->t_len != q->t_len)
            return c ? c : p->t_len < q->t_len ? -1 : 1;
    }
    return p->id < q->id ? -1 : p->id > q->id;
}

static void run_clear(ix_run_t *r)
{
    r->n = 0;
    r->arena_len = 0;
}

static void run_free(ix_run_t *r)
{
    free(r->v);
    free(r->scratch);
    free(r->arena);
    memset(r, 0, sizeof(*r));
}

static void run_push(ix_run_t *r, int64_t a, int64_t b, const char *t, size_t t_len, int64_t id)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 1024;
        r->v = pl_xrealloc(r->v, r->cap * sizeof(*r->v));
        r->scratch = pl_xrealloc(r->scratch, r->cap * sizeof(*r->scratch));
    }
    ix_key_t *k = &r->v[r->n++];
    *k = (ix_key_t){ .a = a, .b = b, .id = id, .t_off = (uint32_t)r->arena_len,
                     .t_len = (uint32_t)t_len };
    if (t_len) {
        if (r->arena_len + t_len > r->arena_cap) {
            r->arena_cap = PL_MAX(r->arena_cap * 2, r->arena_len + t_len + 4096);
            r->arena = pl_xrealloc(r->arena, r->arena_cap);
        }
        memcpy(r->arena + r->arena_len, t, t_len);
        r->arena_len += t_len;
    }
}

/* Sorts the keys from `from` on and merges them with the sorted ones before. */
static void run_sort_tail(ix_run_t *r, size_t from)
{
    if (from == r->n)
        return;                         /* nothing new (and v may still be NULL) */
    qsort_r(r->v + from, r->n - from, sizeof(*r->v), key_cmp, r);
    if (from == 0 || key_cmp(&r->v[from - 1], &r->v[from], r) <= 0)
        return;
    size_t i = 0, j = from, o = 0;
    while (i < from && j < r->n)
        r->scratch[o++] = key_cmp(&r->v[j], &r->v[i], r) < 0 ? r->v[j++] : r->v[i++];
    while (i < from)
        r->scratch[o++] = r->v[i++];
    while (j < r->n)
        r->scratch[o++] = r->v[j++];
    ix_key_t *t = r->v;
    r->v = r->scratch;
    r->scratch = t;
}

/* Reads the keys of the rows from < id <= to into the set's runs, sorted. On an
 * error the cache is invalid (the next step reads it again). */
static int cache_read(ix_cache_t *k, pl_store_conn_t *conn, const ix_set_t *set, int64_t from,
                      int64_t to)
{
    k->valid = false;
    for (size_t i = 0; i < set->n_tables; i++) {
        const ix_table_t *t = &set->tables[i];
        ix_run_t *r = &k->runs[i];
        sqlite3_stmt *st = pl_store_prepare(conn, t->read);
        if (!st)
            return PL_ESTATE;
        sqlite3_bind_int64(st, 1, from);
        sqlite3_bind_int64(st, 2, to);
        size_t before = r->n;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *txt = t->text ? (const char *)sqlite3_column_text(st, 1) : NULL;
            size_t len = txt ? (size_t)sqlite3_column_bytes(st, 1) : 0;
            run_push(r, sqlite3_column_int64(st, 0), t->text ? 0 : sqlite3_column_int64(st, 1),
                     txt, len, sqlite3_column_int64(st, 2));
        }
        if (rc != SQLITE_DONE)
            return PL_ESTATE;
        run_sort_tail(r, before);
    }
    k->filled = to;
    k->valid = true;
    return 0;
}

/* Makes the cache hold exactly the job's rows lo < id <= filled. */
static int cache_sync(ix_cache_t *k, pl_store_conn_t *conn, const ix_set_t *set, int64_t lo,
                      int64_t hi, int64_t filled)
{
    uint64_t epoch = pl_store_conn_rollbacks(conn);
    /* A fill step whose request rolled back left keys the database does not count. */
    if (!k->valid || k->lo != lo || k->hi != hi || k->epoch != epoch || k->filled > filled) {
        for (size_t i = 0; i < set->n_tables; i++)
            run_clear(&k->runs[i]);         /* the buffers stay for the next run */
        k->valid = true;
        k->lo = lo;
        k->hi = hi;
        k->filled = lo;
        k->epoch = epoch;
    }
    return k->filled < filled ? cache_read(k, conn, set, k->filled, filled) : 0;
}

/* pl_ixrun(run, from, to): rows from <= i < to of a sorted run, as (a, b, t, id); run is
 * a pointer bound with sqlite3_bind_pointer (type "pl_ixrun"), so SQL text cannot name
 * one. An eponymous table-valued function on the store's connection only. */
typedef struct ixrun_cursor {
    sqlite3_vtab_cursor base;
    const ix_run_t *run;
    size_t i, end;
} ixrun_cursor_t;

enum { IXRUN_A, IXRUN_B, IXRUN_T, IXRUN_ID, IXRUN_RUN, IXRUN_FROM, IXRUN_TO };

static int ixrun_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
                         sqlite3_vtab **out, char **err)
{
    PL_UNUSED(aux);
    PL_UNUSED(argc);
    PL_UNUSED(argv);
    PL_UNUSED(err);
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(a INTEGER, b INTEGER, t TEXT, id INTEGER,"
                                      " run HIDDEN, lo HIDDEN, hi HIDDEN)");
    if (rc != SQLITE_OK)
        return rc;
    *out = sqlite3_malloc(sizeof(**out));
    if (!*out)
        return SQLITE_NOMEM;
    memset(*out, 0, sizeof(**out));
    return SQLITE_OK;
}

static int ixrun_disconnect(sqlite3_vtab *vt)
{
    sqlite3_free(vt);
    return SQLITE_OK;
}

/* All three hidden arguments are required, by equality. */
static int ixrun_best_index(sqlite3_vtab *vt, sqlite3_index_info *info)
{
    PL_UNUSED(vt);
    int have = 0;
    for (int i = 0; i < info->nConstraint; i++) {
        const struct sqlite3_index_constraint *c = &info->aConstraint[i];
        if (c->iColumn < IXRUN_RUN)
            continue;
        if (!c->usable || c->op != SQLITE_INDEX_CONSTRAINT_EQ)
            return SQLITE_CONSTRAINT;
        info->aConstraintUsage[i].argvIndex = c->iColumn - IXRUN_RUN + 1;
        info->aConstraintUsage[i].omit = 1;
        have |= 1 << (c->iColumn - IXRUN_RUN);
    }
    if (have != 7)
        return SQLITE_CONSTRAINT;
    info->estimatedCost = (double)CHAT_IX_SLICE;
    info->estimatedRows = CHAT_IX_SLICE;
    return SQLITE_OK;
}

static int ixrun_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out)
{
    PL_UNUSED(vt);
    ixrun_cursor_t *c = sqlite3_malloc(sizeof(*c));
    if (!c)
        return SQLITE_NOMEM;
    memset(c, 0, sizeof(*c));
    *out = &c->base;
    return SQLITE_OK;
}

static int ixrun_close(sqlite3_vtab_cursor *cur)
{
    sqlite3_free(cur);
    return SQLITE_OK;
}

static int ixrun_filter(sqlite3_vtab_cursor *cur, int idx_num, const char *idx_str, int argc,
                        sqlite3_value **argv)
{
    PL_UNUSED(idx_num);
    PL_UNUSED(idx_str);
    ixrun_cursor_t *c = (ixrun_cursor_t *)cur;
    c->run = argc == 3 ? sqlite3_value_pointer(argv[0], "pl_ixrun") : NULL;
    c->i = c->end = 0;
    if (c->run) {
        sqlite3_int64 from = sqlite3_value_int64(argv[1]), to = sqlite3_value_int64(argv[2]);
        c->end = to < 0 ? 0 : PL_MIN((size_t)to, c->run->n);
        c->i = from < 0 ? 0 : PL_MIN((size_t)from, c->end);
    }
    return SQLITE_OK;
}

static int ixrun_next(sqlite3_vtab_cursor *cur)
{
    ((ixrun_cursor_t *)cur)->i++;
    return SQLITE_OK;
}

static int ixrun_eof(sqlite3_vtab_cursor *cur)
{
    const ixrun_cursor_t *c = (const ixrun_cursor_t *)cur;
    return c->i >= c->end;
}

static int ixrun_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
    const ixrun_cursor_t *c = (const ixrun_cursor_t *)cur;
    const ix_key_t *k = &c->run->v[c->i];
    switch (col) {
    case IXRUN_A: sqlite3_result_int64(ctx, k->a); break;
    case IXRUN_B: sqlite3_result_int64(ctx, k->b); break;
    case IXRUN_T:
        sqlite3_result_text(ctx, c->run->arena ? c->run->arena + k->t_off : "", (int)k->t_len,
                            SQLITE_STATIC);
        break;
    case IXRUN_ID: sqlite3_result_int64(ctx, k->id); break;
    default: sqlite3_result_null(ctx); break;
    }
    return SQLITE_OK;
}

static int ixrun_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid)
{
    *rowid = (sqlite3_int64)((const ixrun_cursor_t *)cur)->i;
    return SQLITE_OK;
}

static const sqlite3_module ixrun_module = {
    .iVersion = 0,
    .xCreate = NULL,                    /* eponymous only */
    .xConnect = ixrun_connect,
    .xBestIndex = ixrun_best_index,
    .xDisconnect = ixrun_disconnect,
    .xDestroy = ixrun_disconnect,
    .xOpen = ixrun_open,
    .xClose = ixrun_close,
    .xFilter = ixrun_filter,
    .xNext = ixrun_next,
    .xEof = ixrun_eof,
    .xColumn = ixrun_column,
    .xRowid = ixrun_rowid,
};

static struct chat_ixruns *ixruns(chat_t *c, pl_store_conn_t *conn)
{
    if (!c->ixruns)
        c->ixruns = pl_xcalloc(1, sizeof(*c->ixruns));
    sqlite3 *db = pl_store_db(conn);
    if (c->ixruns->registered != db) {
        if (sqlite3_create_module_v2(db, "pl_ixrun", &ixrun_module, NULL, NULL) != SQLITE_OK)
            return NULL;
        c->ixruns->registered = db;
    }
    return c->ixruns;
}

void chat_ix_free(chat_t *c)
{
    chat_cids_free(c);
    if (!c->ixruns)
        return;
    for (size_t s = 0; s < PL_ARRAY_LEN(c->ixruns->sets); s++)
        for (size_t i = 0; i < IX_MAX_TABLES; i++)
            run_free(&c->ixruns->sets[s].runs[i]);
    free(c->ixruns);
    c->ixruns = NULL;
}

/* ---- spread catch-ups ------------------------------------------------------------ */

/* A catch-up of a whole run in one go held the store thread for 15-20 ms per set (a
 * run of 16,384 messages), and every request queued meanwhile waited: at 20,000
 * messages/s it set the p99 (24-26 ms; 7.5-11 ms in steps, docs/BENCHMARKS.md). So
 * the run is added in steps, one every CHAT_IX_STEP_EVERY messages, each a few
 * milliseconds: a job (temp.ix_job: the range lo < id <= hi, how far it has been read,
 * and which table's sorted run has been moved how far) first reads the range's keys
 * into a sorted run in memory per index table, CHAT_IX_FILL messages a step, then moves
 * them into the index in key order, CHAT_IX_SLICE rows a step (through the pl_ixrun
 * table-valued function) -- the slices of one run partition its keys, so the index's
 * leaves are written no more often than by one sorted insert -- and finally moves the
 * mark from lo to hi (only if it is still lo: another node may have moved it). Until
 * then the mark says lo, so nothing relies on the rows the job has added so far. A job
 * covers at most CHAT_IX_JOB_MAX messages (a run after a restart could hold a whole
 * backlog in memory); the next one takes the rest.
 *
 * The job lives in a temporary table of the store's connection, part of its
 * transactions: a step rolled back with its request (or its whole transaction) is
 * undone with everything else and simply done again. The runs are a cache of what the
 * job row says has been read: rebuilt from the database when it says less (a fill
 * step rolled back), or when the job or the store's count of whole-transaction
 * rollbacks changed. The memory (ix_sched_t) only says when to take the next step. A
 * reader that catches the index up in one go (history, find, with few rows trailing)
 * drops the job first. */
static int step_done(pl_store_conn_t *conn, const char *sql, int64_t a, bool bind2, int64_t b)
{
    sqlite3_stmt *st = pl_store_prepare(conn, sql);
    if (!st)
        return PL_ESTATE;
    if (a >= 0)
        sqlite3_bind_int64(st, 1, a);
    if (bind2)
        sqlite3_bind_int64(st, 2, b);
    return pl_store_step_done(conn, st);
}

/* The rows a catch-up of the set would add: lo < id <= hi. Returns 1 when there are
 * any, 0 when the mark is at the top, or a negative store error. */
static int pending_range(pl_store_conn_t *conn, const ix_set_t *set, int64_t *lo, int64_t *hi)
{
    int64_t upto = query_int(conn, set->get_upto);
    int64_t top = upto < 0 ? upto : query_int(conn, "SELECT max(id) FROM chat_messages");
    if (top < 0)
        return (int)top;
    *lo = upto;
    *hi = top;
    return top > upto;
}

static int ensure_job_table(pl_store_conn_t *conn)
{
    return step_done(conn, "CREATE TEMP TABLE IF NOT EXISTS ix_job(set_id INTEGER PRIMARY KEY,"
                     " lo INTEGER NOT NULL, hi INTEGER NOT NULL, filled INTEGER NOT NULL,"
                     " tbl INTEGER NOT NULL, off INTEGER NOT NULL)", -1, false, 0);
}

/* Drops the set's job. */
static int job_drop(pl_store_conn_t *conn, const ix_set_t *set)
{
    int rc = ensure_job_table(conn);
    return rc < 0 ? rc : step_done(conn, "DELETE FROM temp.ix_job WHERE set_id = ?1", set->id,
                                   false, 0);
}

static int job_update(pl_store_conn_t *conn, const ix_set_t *set, int64_t filled, int64_t tbl,
                      int64_t off)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "UPDATE temp.ix_job SET filled = ?2, tbl = ?3, off = ?4 WHERE set_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, set->id);
    sqlite3_bind_int64(st, 2, filled);
    sqlite3_bind_int64(st, 3, tbl);
    sqlite3_bind_int64(st, 4, off);
    return pl_store_step_done(conn, st);
}

/* Moves rows off <= i < end of a sorted run into its table. */
static int slice(pl_store_conn_t *conn, const ix_table_t *t, ix_run_t *run, size_t off,
                 size_t end)
{
    sqlite3_stmt *st = pl_store_prepare(conn, t->insert);
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_pointer(st, 1, run, "pl_ixrun", NULL);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)off);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)end);
    return pl_store_step_done(conn, st);
}

/* One step of the set's job, starting one if there is none. Returns 1 when there is
 * more to do, 0 when no job is left (the last step moved the mark, or there was
 * nothing to add), or a negative store error. */
static int job_step(chat_t *c, pl_store_conn_t *conn, const ix_set_t *set)
{
    uint64_t t0 = pl_now_mono_us();
    struct chat_ixruns *runs = ixruns(c, conn);
    if (!runs)
        return PL_ESTATE;
    int rc = ensure_job_table(conn);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT lo, hi, filled, tbl, off FROM temp.ix_job WHERE set_id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, set->id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return PL_ESTATE;
    if (rc == SQLITE_DONE) {
        int64_t upto = 0, top = 0;
        if ((rc = pending_range(conn, set, &upto, &top)) <= 0)
            return rc;
        st = pl_store_prepare(conn, "INSERT INTO temp.ix_job(set_id, lo, hi, filled, tbl, off)"
                                    " VALUES (?1, ?2, ?3, ?2, 0, 0)");
        if (!st)
            return PL_ESTATE;
        sqlite3_bind_int64(st, 1, set->id);
        sqlite3_bind_int64(st, 2, upto);
        sqlite3_bind_int64(st, 3, PL_MIN(top, upto + CHAT_IX_JOB_MAX));
        return (rc = pl_store_step_done(conn, st)) < 0 ? rc : 1;
    }
    int64_t lo = sqlite3_column_int64(st, 0), hi = sqlite3_column_int64(st, 1),
            filled = sqlite3_column_int64(st, 2), tbl = sqlite3_column_int64(st, 3),
            off = sqlite3_column_int64(st, 4);
    sqlite3_reset(st);
    ix_cache_t *k = &runs->sets[set->id - 1];
    if ((rc = cache_sync(k, conn, set, lo, hi, filled)) < 0)
        return rc;
    if (filled < hi) {
        int64_t to = PL_MIN(filled + CHAT_IX_FILL, hi);
        if ((rc = cache_read(k, conn, set, filled, to)) < 0)
            return rc;
        rc = job_update(conn, set, to, 0, 0);
        rc = rc < 0 ? rc : 1;
        goto out;
    }
    for (; (size_t)tbl < set->n_tables; tbl++, off = 0) {
        ix_run_t *run = &k->runs[tbl];
        if ((size_t)off >= run->n)
            continue;
        size_t end = PL_MIN((size_t)off + CHAT_IX_SLICE, run->n);
        if ((rc = slice(conn, &set->tables[tbl], run, (size_t)off, end)) < 0 ||
            (rc = job_update(conn, set, filled, tbl, (int64_t)end)) < 0)
            return rc;
        rc = 1;
        goto out;
    }
    if ((rc = add_range(conn, set->set_upto, lo, hi)) < 0 ||
        (rc = step_done(conn, "DELETE FROM temp.ix_job WHERE set_id = ?1", set->id, false, 0)) < 0)
        return rc;
    pl_metric_add(c->shard, c->m.ix_rows, (uint64_t)(hi - lo));
    rc = 0;
out:
    pl_metric_observe(c->shard, c->m.ix_seconds, (double)(pl_now_mono_us() - t0) / 1e6);
    return rc;
}

/* ---- synchronous catch-ups -------------------------------------------------------- */

/* Adds every row above the set's mark to its tables and moves the mark, in one go; a
 * job under way is dropped (its mark would be behind). */
static int catch_up(chat_t *c, pl_store_conn_t *conn, const ix_set_t *set, ix_sched_t *sched)
{
    int rc = job_drop(conn, set);
    if (rc < 0)
        return rc;
    sched->active = false;
    sched->run = 0;
    int64_t upto = 0, top = 0;
    if ((rc = pending_range(conn, set, &upto, &top)) <= 0)
        return rc;
    rc = 0;
    uint64_t t0 = pl_now_mono_us();
    for (size_t i = 0; rc == 0 && i < set->n_tables; i++)
        rc = add_range(conn, set->tables[i].add, upto, top);
    if (rc == 0)
        rc = add_range(conn, set->set_upto, upto, top);
    if (rc < 0)
        return rc;
    pl_metric_add(c->shard, c->m.ix_rows, (uint64_t)(top - upto));
    pl_metric_observe(c->shard, c->m.ix_seconds, (double)(pl_now_mono_us() - t0) / 1e6);
    return 0;
}

int chat_ix_catch_up(chat_t *c, pl_store_conn_t *conn)
{
    return catch_up(c, conn, &history_set, &c->ix_sched);
}

int64_t chat_ix_lookup_mark(chat_t *c, pl_store_conn_t *conn)
{
    int64_t upto = query_int(conn, history_set.get_upto);
    int64_t top = upto < 0 ? upto : query_int(conn, "SELECT max(id) FROM chat_messages");
    if (top < 0)
        return top;
    if (top - upto > CHAT_IX_SYNC_MAX)
        return upto;
    int rc = catch_up(c, conn, &history_set, &c->ix_sched);
    return rc < 0 ? rc : INT64_MAX;
}

int chat_cid_catch_up(chat_t *c, pl_store_conn_t *conn)
{
    return catch_up(c, conn, &client_set, &c->cid_sched);
}

/* Counts one more message for the set and takes its job's next step when one is due. */
static int sched_added(chat_t *c, pl_store_conn_t *conn, const ix_set_t *set, ix_sched_t *s)
{
    s->run++;
    if (!s->active) {
        if (s->run < CHAT_IX_RUN)
            return 0;
        s->run = 0;
    } else if (++s->since < CHAT_IX_STEP_EVERY) {
        return 0;
    }
    s->since = 0;
    int rc = job_step(c, conn, set);
    s->active = rc > 0;
    return rc < 0 ? rc : 0;
}

int chat_ix_added(chat_t *c, pl_store_conn_t *conn)
{
    /* The two sets' jobs start half a run apart (chat_init starts cid_sched.run there),
     * so their steps seldom meet in one batch. */
    int rc = sched_added(c, conn, &client_set, &c->cid_sched);
    return rc < 0 ? rc : sched_added(c, conn, &history_set, &c->ix_sched);
}

/* ---- client ids above the index --------------------------------------------------- */

typedef struct chat_cid {
    struct chat_cid *next;
    uint64_t id;
} chat_cid_t;

static uint64_t cid_key(uint64_t sender, const char *client_id)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (sender * 0x9E3779B97F4A7C15ull);   /* FNV-1a */
    for (const char *p = client_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    return h | 1;                                                       /* never empty */
}

static void cids_add(chat_cids_t *s, uint64_t key, uint64_t id)
{
    chat_cid_t *head = chat_map_get(&s->map, key);
    for (chat_cid_t *e = head; e; e = e->next)
        if (e->id == id)
            return;
    chat_cid_t *e = pl_xmalloc(sizeof(*e));
    e->id = id;
    e->next = head;
    chat_map_put(&s->map, key, e);
    s->n++;
}

static void cids_clear(chat_cids_t *s)
{
    for (size_t i = 0; i < s->map.cap; i++)
        if (s->map.slots[i].key)
            for (chat_cid_t *e = s->map.slots[i].val, *n; e; e = n) {
                n = e->next;
                free(e);
            }
    chat_map_deinit(&s->map);
    chat_map_init(&s->map);
    s->n = 0;
}

/* Drops the ids <= upto: chat_ix_client has them. */
static void cids_prune(chat_cids_t *s, int64_t upto)
{
    chat_map_t old = s->map;
    chat_map_init(&s->map);
    s->n = 0;
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.slots[i].key)
            continue;
        for (chat_cid_t *e = old.slots[i].val, *n; e; e = n) {
            n = e->next;
            if ((int64_t)e->id > upto)
                cids_add(s, old.slots[i].key, e->id);
            free(e);
        }
    }
    chat_map_deinit(&old);
}

/* Reads the rows above the scan mark into the memory. */
static int cids_scan(chat_cids_t *s, pl_store_conn_t *conn)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT id, sender_id, client_id FROM chat_messages WHERE id > ?1 ORDER BY id");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, s->scan_hw);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const char *cid = (const char *)sqlite3_column_text(st, 2);
        if (cid)
            cids_add(s, cid_key((uint64_t)sqlite3_column_int64(st, 1), cid), (uint64_t)id);
        s->scan_hw = id;
    }
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

/* ---- the filter of the client ids in chat_ix_client -------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A 512-bit block chosen by the low bits of h, four bits in it by 36 high ones. */
static bool bloom_has(const chat_cid_bloom_t *b, uint64_t h, bool set)
{
    uint64_t *blk = b->bits + ((h & ((1ull << b->log2_blocks) - 1)) << 3);
    uint64_t g = h >> 28;
    bool all = true;
    for (int i = 0; i < 4; i++, g >>= 9) {
        unsigned bit = (unsigned)(g & 511);
        uint64_t m = 1ull << (bit & 63);
        if (!(blk[bit >> 6] & m)) {
            all = false;
            if (set)
                blk[bit >> 6] |= m;
        }
    }
    return all;
}

static void filter_reset(chat_cids_t *s)
{
    for (unsigned i = 0; i < s->n_gens; i++)
        free(s->gen[i].bits);
    memset(s->gen, 0, sizeof(s->gen));
    s->n_gens = 0;
    s->f_bytes = 0;
    s->f_hw = 0;
    s->f_full = false;
}

/* Adds a key; false when the filter had to give up (memory cap). Each generation is
 * sized for twice its predecessor's keys at >= 12 bits a key (about 1 % false hits). */
static bool filter_add(chat_cids_t *s, uint64_t key)
{
    chat_cid_bloom_t *b = s->n_gens ? &s->gen[s->n_gens - 1] : NULL;
    if (!b || b->n >= b->cap) {
        size_t cap = b ? 2 * b->cap : 65536;
        unsigned lg = 0;
        while (((size_t)512 << lg) < cap * 12)
            lg++;
        size_t bytes = (size_t)64 << lg;
        if (s->n_gens == CHAT_CIDF_GENS || s->f_bytes + bytes > CHAT_CIDF_MAX_BYTES) {
            filter_reset(s);
            s->f_full = true;
            return false;
        }
        b = &s->gen[s->n_gens++];
        b->bits = pl_xcalloc(1, bytes);
        b->log2_blocks = lg;
        b->cap = cap;
        s->f_bytes += bytes;
    }
    bloom_has(b, mix64(key), true);
    b->n++;
    return true;
}

static bool filter_maybe(const chat_cids_t *s, uint64_t key)
{
    uint64_t h = mix64(key);
    for (unsigned i = 0; i < s->n_gens; i++)
        if (bloom_has(&s->gen[i], h, false))
            return true;
    return false;
}

/* Reads up to CHAT_CIDF_CHUNK rows above f_hw, at most up to upto. Called at a send's
 * start: the rows up to upto are committed or released by earlier requests of this
 * transaction, which only a rollback of the whole transaction takes back (and that
 * resets the filter). */
static int filter_advance(chat_cids_t *s, pl_store_conn_t *conn)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT id, sender_id, client_id FROM chat_messages WHERE id > ?1 AND id <= ?2"
        " ORDER BY id LIMIT ?3");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, s->f_hw);
    sqlite3_bind_int64(st, 2, s->upto);
    sqlite3_bind_int(st, 3, CHAT_CIDF_CHUNK);
    int rc, rows = 0;
    int64_t last = s->f_hw;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rows++;
        last = sqlite3_column_int64(st, 0);
        const char *cid = (const char *)sqlite3_column_text(st, 2);
        if (cid && !filter_add(s, cid_key((uint64_t)sqlite3_column_int64(st, 1), cid)))
            return 0;
    }
    if (rc != SQLITE_DONE)
        return PL_ESTATE;
    s->f_hw = rows < CHAT_CIDF_CHUNK ? s->upto : last;
    return 0;
}

/* Makes the memory hold every client id above the index's upto (see the top). */
static int cids_sync(chat_t *c, pl_store_conn_t *conn)
{
    if (!c->cids) {
        c->cids = pl_xcalloc(1, sizeof(*c->cids));
        chat_map_init(&c->cids->map);
    }
    chat_cids_t *s = c->cids;
    uint64_t epoch = pl_store_conn_rollbacks(conn);
    if (!s->built || s->epoch != epoch) {
        int64_t upto = query_int(conn, client_set.get_upto);
        if (upto < 0)
            return (int)upto;
        cids_clear(s);
        filter_reset(s);
        s->scan_hw = upto;
        s->epoch = epoch;
        s->built = true;
        s->fv_valid = false;
        s->prune_at = 2 * CHAT_IX_RUN;
        s->upto = upto;
    } else if (s->n > s->prune_at) {
        int64_t upto = query_int(conn, client_set.get_upto);
        if (upto < 0)
            return (int)upto;
        s->upto = upto;
        cids_prune(s, upto);
        /* The rows up to upto are in the table: a scan need not read them. */
        s->scan_hw = PL_MAX(s->scan_hw, upto);
        /* Not again before another run's worth was added (with several nodes adding,
         * the catch-up may lag this node's count). */
        s->prune_at = PL_MAX((size_t)2 * CHAT_IX_RUN, s->n + CHAT_IX_RUN);
    }
    uint64_t fv = pl_store_conn_foreign_version(conn);
    if (!s->fv_valid || fv != s->fv) {
        int rc = cids_scan(s, conn);
        if (rc < 0)
            return rc;
        s->fv = fv;
        s->fv_valid = true;
    }
    if (!s->f_full && s->f_hw < s->upto && ++s->f_tick % CHAT_CIDF_EVERY == 0)
        return filter_advance(s, conn);
    return 0;
}

static int row_created(pl_store_conn_t *conn, uint64_t id, uint64_t sender,
                       const char *client_id, uint64_t *created_at)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT created_at FROM chat_messages WHERE id = ?1 AND sender_id = ?2"
        " AND client_id = ?3");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)sender);
    sqlite3_bind_text(st, 3, client_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *created_at = (uint64_t)sqlite3_column_int64(st, 0);
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

int chat_cid_find(chat_t *c, pl_store_conn_t *conn, uint64_t sender, const char *client_id,
                  uint64_t *id, uint64_t *created_at)
{
    int rc = cids_sync(c, conn);
    if (rc < 0)
        return rc;
    chat_cids_t *s = c->cids;
    uint64_t key = cid_key(sender, client_id);
    for (chat_cid_t *e = chat_map_get(&s->map, key); e; e = e->next) {
        if ((rc = row_created(conn, e->id, sender, client_id, created_at)) != 0) {
            *id = e->id;
            return rc;
        }
    }
    if (!s->f_full && s->f_hw >= s->upto && !filter_maybe(s, key))
        return 0;       /* in no row up to the memory's mark, nor in the memory */
    s->probes++;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT m.id, m.created_at FROM chat_ix_client x JOIN chat_messages m ON m.id = x.id"
        " WHERE x.sender_id = ?1 AND x.client_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)sender);
    sqlite3_bind_text(st, 2, client_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = (uint64_t)sqlite3_column_int64(st, 0);
        *created_at = (uint64_t)sqlite3_column_int64(st, 1);
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

void chat_cid_added(chat_t *c, uint64_t sender, const char *client_id, uint64_t id)
{
    if (c->cids && c->cids->built)
        cids_add(c->cids, cid_key(sender, client_id), id);
}

void chat_cids_free(chat_t *c)
{
    if (!c->cids)
        return;
    cids_clear(c->cids);
    filter_reset(c->cids);
    chat_map_deinit(&c->cids->map);
    free(c->cids);
    c->cids = NULL;
}
