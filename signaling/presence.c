/* presence.c: the router object's life cycle: the [presence] options, the "presence"
 * thread (a core loop), its metrics, the gateway hooks that feed the local registry
 * (on_auth -> registered here and in Redis; on_close -> dropped if it still names that
 * connection), and the backend switch (memory / Redis).
 *
 * What it does not do: delivery and node-to-node messages (router.c), the Redis
 * protocol (presence_redis.c).
 *
 * Threading: create/start/stop/destroy/reload on the main thread; the hooks on gateway
 * threads (they only post); everything they post runs on the presence thread. */
#include "signaling/presence_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define R PL_OPT_RELOADABLE
#define SEC 1000ll
static const pl_opt_def_t presence_defs[] = {
    { "presence", "backend", PL_OPT_ENUM, "memory", 0, 0, "memory|redis", 0,
      "where presence lives: memory (one node) or redis (several nodes sharing it)" },
    { "presence", "redis_url", PL_OPT_STRING, "", 0, 1024, NULL, PL_OPT_SECRET,
      "redis://[[user]:password@]host[:port][/db]; overrides redis_host/port/password" },
    { "presence", "redis_host", PL_OPT_STRING, "127.0.0.1", 1, 255, NULL, 0,
      "Redis address (IP or name, resolved when connecting)" },
    { "presence", "redis_port", PL_OPT_INT, "6379", 1, 65535, NULL, 0, "Redis TCP port" },
    { "presence", "redis_password", PL_OPT_STRING, "", 0, 255, NULL, PL_OPT_SECRET,
      "Redis AUTH password (empty = none)" },
    { "presence", "redis_db", PL_OPT_INT, "0", 0, 1000000, NULL, 0,
      "Redis database number for the registry keys (pub/sub channels are global)" },
    { "presence", "key_prefix", PL_OPT_STRING, "parley:", 1, 64, NULL, 0,
      "prefix of every Redis key and channel (nodes of one cluster share it)" },
    { "presence", "ttl", PL_OPT_DURATION, "30s", 2 * SEC, 3600 * SEC, NULL, R,
      "lifetime of a node's registry entries without a heartbeat (a dead node's "
      "devices disappear after this)" },
    { "presence", "heartbeat_interval", PL_OPT_DURATION, "10s", 500, 1200 * SEC, NULL, R,
      "how often a node refreshes its entries (less than ttl/2)" },
    { "presence", "connect_timeout", PL_OPT_DURATION, "2s", 100, 60 * SEC, NULL, 0,
      "time allowed to connect to Redis and subscribe" },
    { "presence", "command_timeout", PL_OPT_DURATION, "5s", 100, 120 * SEC, NULL, 0,
      "a Redis reply slower than this counts as an outage (reconnect)" },
    { "presence", "reconnect_max", PL_OPT_DURATION, "10s", 100, 600 * SEC, NULL, 0,
      "longest back-off between Redis reconnect attempts (from 100 ms, doubling)" },
};

const pl_opt_table_t pl_presence_options = {
    "Presence (which device is on which node) and cross-node routing",
    presence_defs, PL_ARRAY_LEN(presence_defs),
};

static int cfg_error(pl_config_error_t *err, const char *key, const char *why)
{
    if (err)
        snprintf(err->msg, sizeof(err->msg), "[presence] %s: %s", key, why);
    return PL_ECONFIG;
}

int pl_router_validate(const pl_config_t *cfg, pl_config_error_t *err)
{
    const char *url = pl_config_str(cfg, "presence", "redis_url");
    const char *prefix = pl_config_str(cfg, "presence", "key_prefix");
    if (pl_config_int(cfg, "presence", "heartbeat_interval") * 2 >
        pl_config_int(cfg, "presence", "ttl"))
        return cfg_error(err, "heartbeat_interval", "must be at most half of ttl");
    for (const char *p = prefix; *p; p++)
        if (*p <= ' ' || *p == 0x7f)
            return cfg_error(err, "key_prefix", "no spaces or control characters");
    if (strcmp(pl_config_str(cfg, "presence", "backend"), "redis") != 0)
        return 0;
    if (!pl_node_name_ok(pl_config_str(cfg, "process", "node_id")))
        return cfg_error(err, "backend", "redis needs [process] node_id of [A-Za-z0-9_.-]");
    char buf[1100];
    pl_pres_redis_opts_t o;
    if (url[0] && pl_pres_redis_parse_url(url, buf, sizeof(buf), &o) < 0)
        return cfg_error(err, "redis_url", "expected redis://[[user]:password@]host[:port][/db]");
    return 0;
}

/* ---- gateway hooks (gateway threads) ------------------------------------------------ */

typedef struct pres_msg {
    pl_msg_t msg;
    pl_router_t *r;
    pl_pres_entry_t e;
} pres_msg_t;

static void on_registered(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    pres_msg_t *m = PL_CONTAINER_OF(msg, pres_msg_t, msg);
    pl_router_t *r = m->r;
    if (!r->stopped) {
        pl_pres_map_put(&r->map, m->e.device_id, m->e.account_id, m->e.conn_id);
        pl_metric_gauge_set(r->shard, r->m.devices, (int64_t)r->map.count);
        atomic_store(&r->n_devices, r->map.count);
        if (r->redis)
            pl_pres_redis_register(r->redis, pl_pres_map_get(&r->map, m->e.device_id));
    }
    free(m);
}

static void on_unregistered(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    pres_msg_t *m = PL_CONTAINER_OF(msg, pres_msg_t, msg);
    pl_router_t *r = m->r;
    if (!r->stopped && pl_pres_map_remove(&r->map, m->e.device_id, m->e.conn_id)) {
        pl_metric_gauge_set(r->shard, r->m.devices, (int64_t)r->map.count);
        atomic_store(&r->n_devices, r->map.count);
        if (r->redis)
            pl_pres_redis_unregister(r->redis, &m->e);
        for (unsigned i = 0; i < r->n_close_hooks; i++)
            r->close_hooks[i].fn(r, &m->e, r->close_hooks[i].arg);
    }
    free(m);
}

static void post_entry(pl_router_t *r, const pl_sig_conn_info_t *c, pl_msg_fn fn)
{
    pres_msg_t *m = pl_xmalloc(sizeof(*m));
    m->msg.fn = fn;
    m->r = r;
    m->e = (pl_pres_entry_t){ .device_id = c->device_id, .account_id = c->account_id,
                              .conn_id = c->conn_id };
    pl_loop_post(r->loop, &m->msg);
}

static void hook_auth(const pl_sig_conn_info_t *c, void *arg)
{
    post_entry(arg, c, on_registered);
}

static void hook_close(const pl_sig_conn_info_t *c, void *arg)
{
    post_entry(arg, c, on_unregistered);
}

static const pl_sig_hooks_t gw_hooks = { hook_auth, hook_close };

/* ---- metrics --------------------------------------------------------------------------- */

static void register_metrics(pl_router_t *r, bool redis)
{
    static const double lat[] = { 0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1, 0.25, 0.5, 1, 2.5 };
    static const char route_help[] = "Events routed: to a connection here, published to "
                                     "another node, or handed back undeliverable";
    pl_metrics_t *mx = r->metrics;
    r->m.devices = pl_metrics_gauge(mx, "parley_presence_devices",
                                    "Devices connected to this node", NULL);
    r->m.route_local = pl_metrics_counter(mx, "parley_router_events_total", route_help,
                                          "route=\"local\"");
    r->m.route_remote = pl_metrics_counter(mx, "parley_router_events_total", route_help,
                                           "route=\"remote\"");
    r->m.route_undeliverable = pl_metrics_counter(mx, "parley_router_events_total", route_help,
                                                  "route=\"undeliverable\"");
    r->m.route_bounced = pl_metrics_counter(mx, "parley_router_bounced_total",
        "Events another node could not deliver and handed back", NULL);
    r->m.kicks = pl_metrics_counter(mx, "parley_presence_kicks_total",
        "Connections closed because their device connected to another node", NULL);
    if (!redis)
        return;
    r->m.redis_up = pl_metrics_gauge(mx, "parley_presence_redis_up",
                                     "1 while the Redis presence backend is connected and synced",
                                     NULL);
    r->m.redis_latency = pl_metrics_histogram(mx, "parley_presence_redis_latency_seconds",
                                              "Redis command round-trip time", NULL, lat,
                                              PL_ARRAY_LEN(lat));
    r->m.redis_reconnects = pl_metrics_counter(mx, "parley_presence_redis_reconnects_total",
                                               "Redis reconnect attempts", NULL);
    r->m.redis_errors = pl_metrics_counter(mx, "parley_presence_redis_errors_total",
                                           "Redis error replies", NULL);
}

/* ---- life cycle ------------------------------------------------------------------------ */

static pl_pres_redis_t *make_redis(pl_router_t *r, const pl_config_t *cfg)
{
    char buf[1100];
    pl_pres_redis_opts_t o = {
        .host = pl_config_str(cfg, "presence", "redis_host"),
        .port = (int)pl_config_int(cfg, "presence", "redis_port"),
        .user = "",
        .password = pl_config_str(cfg, "presence", "redis_password"),
        .db = (int)pl_config_int(cfg, "presence", "redis_db"),
    };
    const char *url = pl_config_str(cfg, "presence", "redis_url");
    if (url[0] && pl_pres_redis_parse_url(url, buf, sizeof(buf), &o) < 0)
        return NULL;
    o.prefix = pl_config_str(cfg, "presence", "key_prefix");
    o.ttl_ms = (uint64_t)pl_config_int(cfg, "presence", "ttl");
    o.heartbeat_ms = (uint64_t)pl_config_int(cfg, "presence", "heartbeat_interval");
    o.connect_timeout_ms = (uint64_t)pl_config_int(cfg, "presence", "connect_timeout");
    o.command_timeout_ms = (uint64_t)pl_config_int(cfg, "presence", "command_timeout");
    o.backoff_max_ms = (uint64_t)pl_config_int(cfg, "presence", "reconnect_max");
    return pl_pres_redis_create(r, &o);
}

int pl_router_create(const pl_router_opts_t *o, pl_router_t **out)
{
    pl_config_error_t err;
    int rc = pl_router_validate(o->config, &err);
    if (rc < 0) {
        pl_log_error("presence.config", "error=%s", PL_LOG_QUOTED(err.msg));
        return rc;
    }
    pl_router_t *r = pl_xcalloc(1, sizeof(*r));
    r->gw = o->gw;
    r->metrics = o->metrics;
    snprintf(r->node, sizeof(r->node), "%s", pl_config_str(o->config, "process", "node_id"));
    rc = pl_loop_create("presence", &r->loop);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->shard = pl_metrics_shard_create(o->metrics);
    pl_pres_map_init(&r->map);
    pl_u64map_init(&r->busy);
    pl_u64map_init(&r->rpcs);
    pl_timer_init(&r->rpc_timer);
    bool redis = strcmp(pl_config_str(o->config, "presence", "backend"), "redis") == 0;
    register_metrics(r, redis);
    if (redis)
        r->redis = make_redis(r, o->config);
    atomic_store(&r->up, !redis);
    pl_sig_gateway_add_hooks(o->gw, &gw_hooks, r);
    pl_log_info("presence.created", "node=%s backend=%s", r->node, redis ? "redis" : "memory");
    *out = r;
    return 0;
}

static void *thread_main(void *arg)
{
    pl_router_t *r = arg;
    int rc = pl_loop_run(r->loop);
    if (rc < 0)
        pl_log_error("presence.loop.failed", "error=%s", pl_strerror(rc));
    return NULL;
}

static void on_start(pl_loop_t *loop, void *arg)
{
    pl_router_t *r = arg;
    pl_timer_start(loop, &r->rpc_timer, 1000, 1000, pl_rtr_rpc_sweep, r);
    if (r->redis)
        pl_pres_redis_start(r->redis);
}

int pl_router_start(pl_router_t *r)
{
    r->started = true;
    pl_loop_post_fn(r->loop, on_start, r);
    int rc = pthread_create(&r->tid, NULL, thread_main, r);
    if (rc != 0) {
        r->started = false;
        return -rc;
    }
    return 0;
}

/* On the presence thread: free what lives there, then leave the loop. */
static void on_stop(pl_loop_t *loop, void *arg)
{
    pl_router_t *r = arg;
    for (unsigned i = 0; i < r->n_stop_hooks; i++)
        r->stop_hooks[i].fn(r, r->stop_hooks[i].arg);
    pl_timer_stop(loop, &r->rpc_timer);
    pl_rtr_rpc_fail_all(r);
    if (r->redis)
        pl_pres_redis_stop(r->redis);
    r->stopped = true;
    pl_loop_stop(loop);
}

void pl_router_stop(pl_router_t *r)
{
    if (!r || !r->started)
        return;
    pl_loop_post_fn(r->loop, on_stop, r);
    pthread_join(r->tid, NULL);
    r->started = false;
}

static void free_busy(pl_router_t *r)
{
    for (size_t i = 0; i < r->busy.cap; i++)
        if (r->busy.keys[i])
            free((void *)(uintptr_t)r->busy.vals[i]);
    pl_u64map_deinit(&r->busy);
}

void pl_router_destroy(pl_router_t *r)
{
    if (!r)
        return;
    pl_router_stop(r);
    r->stopped = true;              /* messages drained by destroy only free themselves */
    pl_loop_destroy(r->loop);
    pl_pres_redis_destroy(r->redis);
    pl_pres_map_deinit(&r->map);
    free_busy(r);
    pl_u64map_deinit(&r->rpcs);
    free(r);
}

bool pl_router_ready(const pl_router_t *r)
{
    return atomic_load(&r->up);
}

bool pl_router_backend_up(const pl_router_t *r)
{
    return atomic_load(&r->up);
}

void pl_rtr_set_up(pl_router_t *r, bool up)
{
    atomic_store(&r->up, up);
}

typedef struct ttl_msg {
    pl_msg_t msg;
    pl_router_t *r;
    uint64_t ttl_ms, hb_ms;
} ttl_msg_t;

static void on_ttl(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    ttl_msg_t *m = PL_CONTAINER_OF(msg, ttl_msg_t, msg);
    if (!m->r->stopped && m->r->redis)
        pl_pres_redis_set_ttl(m->r->redis, m->ttl_ms, m->hb_ms);
    free(m);
}

void pl_router_reload(pl_router_t *r, const pl_config_t *next)
{
    if (!r->redis)
        return;
    ttl_msg_t *m = pl_xmalloc(sizeof(*m));
    m->msg.fn = on_ttl;
    m->r = r;
    m->ttl_ms = (uint64_t)pl_config_int(next, "presence", "ttl");
    m->hb_ms = (uint64_t)pl_config_int(next, "presence", "heartbeat_interval");
    pl_loop_post(r->loop, &m->msg);
}

void pl_router_stats_json(const pl_router_t *r, pl_buf_t *out)
{
    const pl_metrics_t *mx = r->metrics;
    pl_buf_printf(out, "{\"node\":");
    pl_buf_json_str(out, r->node);
    pl_buf_printf(out, ",\"backend\":\"%s\",\"up\":%s,\"devices\":%llu,\"routed_local\":%llu,"
                  "\"routed_remote\":%llu,\"undeliverable\":%llu}",
                  r->redis ? "redis" : "memory", atomic_load(&r->up) ? "true" : "false",
                  (unsigned long long)atomic_load(&r->n_devices),
                  (unsigned long long)pl_metrics_read_counter(mx, r->m.route_local),
                  (unsigned long long)pl_metrics_read_counter(mx, r->m.route_remote),
                  (unsigned long long)pl_metrics_read_counter(mx, r->m.route_undeliverable));
}

pl_loop_t *pl_router_loop(pl_router_t *r)
{
    return r->loop;
}

const char *pl_router_node(const pl_router_t *r)
{
    return r->node;
}

/* ---- registration -------------------------------------------------------------------- */

unsigned pl_router_add_sink(pl_router_t *r, pl_route_undelivered_cb fn, void *arg)
{
    PL_ASSERT(!r->started && r->n_sinks < PL_RTR_MAX_SINKS && fn);
    r->sinks[++r->n_sinks] = (pl_rtr_sink_t){ fn, arg };
    return r->n_sinks;
}

void pl_rtr_set_rq_handler(pl_router_t *r, pl_rtr_rq_fn fn, void *arg)
{
    PL_ASSERT(!r->started);
    r->rq_fn = fn;
    r->rq_arg = arg;
}

void pl_rtr_add_close_hook(pl_router_t *r, pl_rtr_close_fn fn, void *arg)
{
    PL_ASSERT(!r->started && r->n_close_hooks < PL_RTR_MAX_HOOKS);
    r->close_hooks[r->n_close_hooks].fn = fn;
    r->close_hooks[r->n_close_hooks++].arg = arg;
}

void pl_rtr_add_stop_hook(pl_router_t *r, pl_rtr_stop_fn fn, void *arg)
{
    PL_ASSERT(!r->started && r->n_stop_hooks < PL_RTR_MAX_HOOKS);
    r->stop_hooks[r->n_stop_hooks].fn = fn;
    r->stop_hooks[r->n_stop_hooks++].arg = arg;
}
