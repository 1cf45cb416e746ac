/* chat_part.c: chat's life cycle as a part of the signaling module: the [chat]
 * options, registration of the chat.* frames, push types and connection hooks, the
 * metrics, and the sweep timer that expires undelivered envelopes after [chat] ttl
 * (telling their senders) and trims the store-thread caches.
 *
 * What it does not do: any request (the per-area files).
 *
 * Threading: init/stop/destroy/reload and the sweep timer on the main thread; the hooks
 * on gateway threads; the sweep's exec on the store thread. */
#include "chat/chat_int.h"
#include "core/pl_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define R PL_OPT_RELOADABLE
#define SEC 1000ll
#define DAY (86400 * SEC)
static const pl_opt_def_t defs[] = {
    { "chat", "enabled", PL_OPT_BOOL, "true", 0, 0, NULL, 0,
      "serve the chat.* frames (messages, groups, contacts, presence, key directory)" },
    { "chat", "max_payload", PL_OPT_SIZE, "48KiB", 64, 16 << 20, NULL, R,
      "largest ciphertext (base64 bytes) of one envelope or group message; keep "
      "[signaling] max_frame_size above devices x this" },
    { "chat", "queue_max", PL_OPT_INT, "10000", 1, 10000000, NULL, R,
      "envelopes waiting for one device; a send to a full queue is refused (queue_full)" },
    { "chat", "ttl", PL_OPT_DURATION, "30d", 1 * SEC, 365 * DAY, NULL, R,
      "an envelope not acknowledged within this expires; its sender is told" },
    { "chat", "group_max", PL_OPT_INT, "1024", 2, 100000, NULL, R,
      "members per group" },
    { "chat", "window", PL_OPT_INT, "256", 1, 100000, NULL, R,
      "envelopes pushed to a device ahead of its acknowledgements" },
    { "chat", "page", PL_OPT_INT, "64", 1, 10000, NULL, R,
      "envelopes read from a device's queue at a time while it catches up (at most window)" },
    { "chat", "prekey_low", PL_OPT_INT, "10", 0, 100000, NULL, R,
      "tell a device when fewer one-time prekeys than this remain" },
    { "chat", "prekey_max", PL_OPT_INT, "1000", 1, 100000, NULL, R,
      "one-time prekeys stored per device" },
    { "chat", "keys_fetch_per_min", PL_OPT_INT, "120", 1, 10000000, NULL, R,
      "key bundle fetches per minute per requesting user" },
    { "chat", "keys_fetch_burst", PL_OPT_INT, "40", 1, 10000000, NULL, R,
      "burst of key bundle fetches per requesting user" },
    { "chat", "keys_fetch_target_per_min", PL_OPT_INT, "10", 1, 10000000, NULL, R,
      "fetches of one user's bundle per minute by one requesting user" },
    { "chat", "keys_fetch_target_burst", PL_OPT_INT, "5", 1, 10000000, NULL, R,
      "burst of fetches of one user's bundle by one requesting user" },
    { "chat", "typing_ttl", PL_OPT_DURATION, "5s", 100, 60 * SEC, NULL, R,
      "a typing indicator not delivered within this is dropped" },
    { "chat", "history_max", PL_OPT_INT, "200", 1, 10000, NULL, R,
      "rows per lookup page (chat.history, chat.find)" },
    { "chat", "sweep_interval", PL_OPT_DURATION, "60s", 100, 3600 * SEC, NULL, 0,
      "how often expired envelopes are looked for" },
};

const pl_opt_table_t pl_chat_options = {
    "chat: store-and-forward E2EE messages, receipts, groups, contacts, presence, key directory",
    defs, PL_ARRAY_LEN(defs),
};

static void read_limits(chat_t *c, const pl_config_t *cfg)
{
    chat_limits_t l = {
        .max_payload = (uint32_t)pl_config_int(cfg, "chat", "max_payload"),
        .queue_max = (uint32_t)pl_config_int(cfg, "chat", "queue_max"),
        .ttl_ms = (uint64_t)pl_config_int(cfg, "chat", "ttl"),
        .group_max = (uint32_t)pl_config_int(cfg, "chat", "group_max"),
        .window = (uint32_t)pl_config_int(cfg, "chat", "window"),
        .page = (uint32_t)pl_config_int(cfg, "chat", "page"),
        .prekey_low = (uint32_t)pl_config_int(cfg, "chat", "prekey_low"),
        .prekey_max = (uint32_t)pl_config_int(cfg, "chat", "prekey_max"),
        .fetch_per_min = (uint32_t)pl_config_int(cfg, "chat", "keys_fetch_per_min"),
        .fetch_burst = (uint32_t)pl_config_int(cfg, "chat", "keys_fetch_burst"),
        .fetch_target_per_min = (uint32_t)pl_config_int(cfg, "chat", "keys_fetch_target_per_min"),
        .fetch_target_burst = (uint32_t)pl_config_int(cfg, "chat", "keys_fetch_target_burst"),
        .typing_ttl_ms = (uint64_t)pl_config_int(cfg, "chat", "typing_ttl"),
        .history_max = (uint32_t)pl_config_int(cfg, "chat", "history_max"),
    };
    l.page = PL_MIN(l.page, l.window);
    pthread_mutex_lock(&c->lim_lock);
    c->lim = l;
    pthread_mutex_unlock(&c->lim_lock);
}

/* ---- expiry sweep (store thread) ------------------------------------------------------ */

#define SWEEP_CHUNK 2048
#define SWEEP_CHUNKS 16

static int expire_one(chat_op_t *op, pl_store_conn_t *conn, uint64_t dev, uint64_t msg)
{
    sqlite3_stmt *st = pl_store_prepare(conn,
        "DELETE FROM chat_envelopes WHERE device_id = ?1 AND message_id = ?2");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)dev);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)msg);
    int rc = pl_store_step_done(conn, st);
    if (rc < 0)
        return rc;
    chat_dev_t *d = chat_mem_dev(op->chat->mem, dev, false);
    if (d && d->queued > 0)
        d->queued--;
    pl_metric_inc(op->chat->shard, op->chat->m.expired);
    st = pl_store_prepare(conn,
        "UPDATE chat_messages SET pending = pending - 1,"
        " body = CASE WHEN pending <= 1 AND kind != 1 THEN NULL ELSE body END WHERE id = ?1");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)msg);
    if ((rc = pl_store_step_done(conn, st)) < 0)
        return rc;
    /* "expired" is about the recipients: a sender's own copy expiring is not. */
    st = pl_store_prepare(conn,
        "UPDATE chat_messages SET expired_at = ?2 WHERE id = ?1 AND kind = 0"
        " AND expired_at IS NULL"
        " AND sender_id IS NOT (SELECT account_id FROM devices WHERE id = ?3)"
        " RETURNING sender_id, group_id");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)msg);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->now_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)dev);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t sender = (uint64_t)sqlite3_column_int64(st, 0);
        chat_receipt_t r = { .message_id = msg, .at = op->now_ms, .status = CHAT_RCPT_EXPIRED,
                             .group_id = (uint64_t)sqlite3_column_int64(st, 1) };
        sqlite3_step(st);
        if ((rc = chat_receipts_send(op, conn, sender, &r, 1, "")) < 0)
            return rc;
        return 0;
    }
    return rc == SQLITE_DONE ? 0 : PL_ESTATE;
}

/* Scans the next chunk of every queue (by key, so a full pass is bounded work spread
 * over ticks) and expires what is past its time. Returns rows scanned or < 0. */
static int sweep_chunk(chat_op_t *op, pl_store_conn_t *conn)
{
    chat_t *c = op->chat;
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT device_id, message_id, expires_at FROM chat_envelopes"
        " WHERE (device_id, message_id) > (?1, ?2) ORDER BY device_id, message_id LIMIT ?3");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)c->sweep_dev);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)c->sweep_msg);
    sqlite3_bind_int(st, 3, SWEEP_CHUNK);
    uint64_t (*due)[2] = pl_xmalloc(SWEEP_CHUNK * sizeof(*due));
    int n = 0, k = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        c->sweep_dev = (uint64_t)sqlite3_column_int64(st, 0);
        c->sweep_msg = (uint64_t)sqlite3_column_int64(st, 1);
        if ((uint64_t)sqlite3_column_int64(st, 2) <= op->now_ms) {
            due[k][0] = c->sweep_dev;
            due[k][1] = c->sweep_msg;
            k++;
        }
        n++;
    }
    if (rc != SQLITE_DONE)
        n = PL_ESTATE;
    for (int i = 0; n >= 0 && i < k; i++)
        if ((rc = expire_one(op, conn, due[i][0], due[i][1])) < 0)
            n = rc;
    free(due);
    if (n >= 0 && n < SWEEP_CHUNK)
        c->sweep_dev = c->sweep_msg = 0;        /* wrapped: the next tick starts over */
    return n;
}

static int exec_sweep(chat_op_t *op, pl_store_conn_t *conn)
{
    for (int i = 0; i < SWEEP_CHUNKS; i++) {
        int n = sweep_chunk(op, conn);
        if (n < 0)
            return n;
        if (n < SWEEP_CHUNK)
            break;
    }
    chat_mem_trim(op->chat->mem);
    chat_mem_trim_buckets(op->chat->mem, op->now_ms);
    return 0;
}

static void sweep_tick(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(t);
    chat_op_submit(chat_op_new_internal(arg, exec_sweep));
}

/* ---- hooks and registration ------------------------------------------------------- */

static void on_auth(const pl_sig_conn_info_t *ci, void *arg)
{
    chat_deliver_conn_up(arg, ci);
}

static void on_close(const pl_sig_conn_info_t *ci, void *arg)
{
    chat_deliver_conn_down(arg, ci);
}

static const pl_sig_hooks_t hooks = { on_auth, on_close };

static const char *const push_types[] = {
    "chat.message", "chat.event", "chat.queue_empty", "chat.receipt", "chat.presence",
    "chat.typing", "chat.keys.low",
};

static void register_metrics(chat_t *c, pl_metrics_t *reg)
{
    static const char *const help_sent = "Chat messages committed";
    c->m.sent_direct = pl_metrics_counter(reg, "parley_chat_messages_total", help_sent,
                                          "kind=\"direct\"");
    c->m.sent_group = pl_metrics_counter(reg, "parley_chat_messages_total", help_sent,
                                         "kind=\"group\"");
    c->m.events = pl_metrics_counter(reg, "parley_chat_messages_total", help_sent,
                                     "kind=\"event\"");
    c->m.duplicates = pl_metrics_counter(reg, "parley_chat_duplicate_sends_total",
        "chat.send frames answered from an earlier send with the same client_id", NULL);
    c->m.pushed = pl_metrics_counter(reg, "parley_chat_envelopes_pushed_total",
        "Envelopes pushed to devices (live or from their queue)", NULL);
    c->m.acked = pl_metrics_counter(reg, "parley_chat_envelopes_acked_total",
        "Envelopes acknowledged by their device (and deleted)", NULL);
    c->m.expired = pl_metrics_counter(reg, "parley_chat_envelopes_expired_total",
        "Envelopes deleted unacknowledged after [chat] ttl", NULL);
    c->m.refused = pl_metrics_counter(reg, "parley_chat_refused_total",
        "Chat requests answered with an error by the store side", NULL);
    c->m.store_failures = pl_metrics_counter(reg, "parley_chat_store_failures_total",
        "Chat batches whose commit failed (caches reset, synced connections closed)", NULL);
    c->m.keys_fetched = pl_metrics_counter(reg, "parley_chat_key_fetches_total",
        "Key bundle fetches served", NULL);
    c->m.prekeys_consumed = pl_metrics_counter(reg, "parley_chat_prekeys_consumed_total",
        "One-time prekeys handed out", NULL);
    c->m.ix_rows = pl_metrics_counter(reg, "parley_chat_index_rows_total",
        "Message rows the history and find indexes caught up with", NULL);
    static const double secs[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25 };
    c->m.ix_seconds = pl_metrics_histogram(reg, "parley_chat_index_catchup_seconds",
        "Time of one catch-up of the history and find indexes (inside a store batch)", NULL,
        secs, PL_ARRAY_LEN(secs));
    c->shard = pl_metrics_shard_create(reg);
}

static int add_tables(chat_t *c, pl_sig_gateway_t *gw)
{
    static const struct { const pl_sig_handler_t *t; const size_t *n; } tables[] = {
        { chat_sync_handlers, &chat_sync_n_handlers },
        { chat_send_handlers, &chat_send_n_handlers },
        { chat_ack_handlers, &chat_ack_n_handlers },
        { chat_query_handlers, &chat_query_n_handlers },
        { chat_group_handlers, &chat_group_n_handlers },
        { chat_social_handlers, &chat_social_n_handlers },
        { chat_presence_handlers, &chat_presence_n_handlers },
        { chat_keys_handlers, &chat_keys_n_handlers },
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(tables); i++) {
        int rc = pl_sig_gateway_add_handlers(gw, tables[i].t, *tables[i].n, c);
        if (rc < 0)
            return rc;
    }
    pl_sig_gateway_add_push_types(gw, push_types, PL_ARRAY_LEN(push_types));
    pl_sig_gateway_add_hooks(gw, &hooks, c);
    return 0;
}

static int chat_init(const pl_sig_ctx_t *ctx, void **state)
{
    chat_t *c = pl_xcalloc(1, sizeof(*c));
    c->gw = ctx->gw;
    c->store = ctx->store;
    c->main_loop = ctx->main_loop;
    /* With one node (memory presence) this node's registry is complete: deliver
     * locally, without the router's hop; with Redis, devices elsewhere need it. */
    c->router = strcmp(pl_config_str(ctx->config, "presence", "backend"), "redis") == 0 ?
                ctx->router : NULL;
    pthread_mutex_init(&c->lim_lock, NULL);
    read_limits(c, ctx->config);
    *state = c;
    if (!pl_config_bool(ctx->config, "chat", "enabled"))
        return 0;
    c->mem = chat_mem_create();
    c->cid_sched.run = CHAT_IX_RUN / 2; /* chat_index.c: catch-ups half a run apart */
    register_metrics(c, ctx->metrics);
    int rc = add_tables(c, ctx->gw);
    if (rc < 0) {
        pl_log_error("chat.init.failed", "error=%s", pl_strerror(rc));
        chat_mem_destroy(c->mem);
        pthread_mutex_destroy(&c->lim_lock);
        free(c);
        *state = NULL;
        return rc;
    }
    c->sweep_interval_ms = (uint64_t)pl_config_int(ctx->config, "chat", "sweep_interval");
    pl_timer_init(&c->sweep_timer);
    pl_timer_start(c->main_loop, &c->sweep_timer, c->sweep_interval_ms, c->sweep_interval_ms,
                   sweep_tick, c);
    return 0;
}

static void chat_stop(void *state)
{
    chat_t *c = state;
    if (c->mem)
        pl_timer_stop(c->main_loop, &c->sweep_timer);
}

static void chat_destroy(void *state)
{
    chat_t *c = state;
    chat_mem_destroy(c->mem);     /* the store has closed: no exec can run any more */
    chat_ix_free(c);
    chat_devs_free(c);
    pthread_mutex_destroy(&c->lim_lock);
    free(c);
}

static void chat_reload(void *state, const pl_config_t *next)
{
    read_limits(state, next);
}

const pl_sig_part_t pl_chat_part = {
    .name = "chat",
    .schema = &chat_schema,
    .init = chat_init,
    .stop = chat_stop,
    .destroy = chat_destroy,
    .reload = chat_reload,
};
