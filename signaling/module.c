/* module.c: pl_signaling_module: the [signaling] options, and the life cycle that ties
 * the store, the gateway and the signaling parts together (order in sig_parts.h).
 *
 * Adding a part (presence, call signaling): write a pl_sig_part_t and list it in
 * `parts` below; it registers its frames/hooks/routes in init and gets the store.
 *
 * What it does not do: serve anything itself.
 *
 * Threading: every hook runs on the main thread. */
#include "signaling/gw_int.h"
#include "signaling/sig_parts.h"
#include "signaling/pl_router.h"
#include "core/pl_log.h"
#include "core/pl_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#ifdef PL_HAVE_CHAT
#include "chat/pl_chat.h"
#endif

static const pl_sig_part_t *const parts[] = {
    &pl_sig_accounts_part,
#ifdef PL_HAVE_CHAT
    &pl_chat_part,          /* chat/: links into pl_signaling (chat/CMakeLists.txt) */
#endif
    &pl_sig_calls_part,     /* 1:1 call signaling (calls*.c); presence is ctx->router */
    &pl_sig_rooms_part,     /* group calls: room.* frames drive the SFU (rooms*.c) */
};
#define N_PARTS PL_ARRAY_LEN(parts)

#define R PL_OPT_RELOADABLE
#define SEC 1000ll
static const pl_opt_def_t defs[] = {
    { "signaling", "enabled", PL_OPT_BOOL, "true", 0, 0, NULL, 0,
      "run the WebSocket gateway, accounts and the HTTP API" },
    { "signaling", "listen", PL_OPT_STRING, "127.0.0.1:8080", 0, 256, NULL, 0,
      "ws:// and HTTP listener, host:port (port 0 = any free port)" },
    { "signaling", "tls_listen", PL_OPT_STRING, "127.0.0.1:8443", 0, 256, NULL, 0,
      "wss:// and HTTPS listener, used when tls_cert and tls_key are set" },
    { "signaling", "tls_cert", PL_OPT_STRING, "", 0, 4096, NULL, 0,
      "PEM certificate chain file for tls_listen (empty = no TLS listener)" },
    { "signaling", "tls_key", PL_OPT_STRING, "", 0, 4096, NULL, 0,
      "PEM private key file for tls_cert" },
    { "signaling", "threads", PL_OPT_INT, "0", 0, 64, NULL, 0,
      "gateway service threads (each owns its connections); 0 = one per CPU core but one, at least 1 (the chat store thread takes a core under load)" },
    { "signaling", "web_root", PL_OPT_STRING, "web", 0, 4096, NULL, 0,
      "directory of static files served at / (empty = none)" },
    { "signaling", "event_loop", PL_OPT_ENUM, "libev", 0, 0, "libev|poll", 0,
      "libev: each gateway thread runs libwebsockets on a libev loop (epoll: work per event); poll: libwebsockets' own poll() loop, which walks every connection of the thread on each wake-up (19,800 idle connections: 28 % of a core at rest against 2 %; a few very busy connections: poll ~4 % faster)" },
    { "signaling", "max_connections", PL_OPT_INT, "200000", 1, 10000000, NULL, 0,
      "WebSocket connections accepted at once; more are refused at the handshake" },
    { "signaling", "max_unauth_per_ip", PL_OPT_INT, "100", 0, 10000000, NULL, R,
      "WebSocket connections from one source address that have not authenticated yet; more are closed with 4008 at once (0 = no limit). Authenticated connections do not count, so users behind one NAT are not limited" },
    { "signaling", "max_frame_size", PL_OPT_SIZE, "256KiB", 1024, 16 << 20, NULL, 0,
      "largest message (and HTTP body) accepted; a larger one closes with 1009 (before auth: at most 8 KiB). A browser's SDP answer in a 32-party room is ~66 KB" },
    { "signaling", "send_queue_max", PL_OPT_SIZE, "256KiB", 4096, 64 << 20, NULL, 0,
      "bytes queued for one connection before it is closed as a slow consumer (4005)" },
    { "signaling", "auth_timeout", PL_OPT_DURATION, "10s", 100, 300 * SEC, NULL, 0,
      "time to send the auth frame after connecting (else close 4002)" },
    { "signaling", "ping_interval", PL_OPT_DURATION, "30s", 1 * SEC, 3600 * SEC, NULL, 0,
      "WebSocket ping after this long without traffic" },
    { "signaling", "idle_timeout", PL_OPT_DURATION, "75s", 2 * SEC, 7200 * SEC, NULL, 0,
      "close a connection after this long without any traffic, pongs included" },
    { "signaling", "session_ttl", PL_OPT_DURATION, "30d", 60 * SEC, 365 * 86400 * SEC, NULL, R,
      "lifetime of a session token from login" },
    { "signaling", "max_devices", PL_OPT_INT, "4", 1, 100, NULL, R,
      "devices (logged-in sessions) per account" },
    { "signaling", "rate_frames", PL_OPT_INT, "50", 0, 100000, NULL, R,
      "frames per second per connection (token bucket; 0 = unlimited)" },
    { "signaling", "rate_burst", PL_OPT_INT, "100", 1, 100000, NULL, R,
      "burst size of the per-connection frame bucket" },
    { "signaling", "max_errors", PL_OPT_INT, "20", 0, 100000, NULL, R,
      "client errors within error_window before the connection is closed (4006; 0 = never)" },
    { "signaling", "error_window", PL_OPT_DURATION, "60s", 1 * SEC, 3600 * SEC, NULL, R,
      "window for max_errors" },
    { "signaling", "auth_ip_per_min", PL_OPT_INT, "30", 1, 1000000, NULL, R,
      "logins and registrations per minute per source IP" },
    { "signaling", "auth_ip_burst", PL_OPT_INT, "10", 1, 1000000, NULL, R,
      "burst of logins and registrations per source IP" },
    { "signaling", "auth_account_per_min", PL_OPT_INT, "10", 1, 1000000, NULL, R,
      "login attempts per minute per username" },
    { "signaling", "auth_account_burst", PL_OPT_INT, "5", 1, 1000000, NULL, R,
      "burst of login attempts per username" },
    { "signaling", "scrypt_log2_n", PL_OPT_INT, "15", 10, 20, NULL, 0,
      "scrypt cost for new password hashes: N = 2^this, r=8, p=1 (RFC 7914)" },
    { "signaling", "kdf_threads", PL_OPT_INT, "1", 1, 16, NULL, 0,
      "password hashing threads" },
    { "signaling", "kdf_queue_max", PL_OPT_INT, "64", 1, 100000, NULL, 0,
      "logins/registrations waiting for a hashing thread before 503 busy" },
};

static const pl_opt_table_t options = {
    "WebSocket signaling gateway, accounts, devices and sessions, HTTP API",
    defs, PL_ARRAY_LEN(defs),
};

typedef struct sig_state {
    pl_store_t *store;
    pl_sig_gateway_t *gw;
    pl_router_t *router;            /* presence and routing, shared by the parts */
    void *part_state[N_PARTS];
    bool part_started[N_PARTS];
    char *listen, *tls_listen, *tls_cert, *tls_key, *web_root;
} sig_state_t;

static bool sig_enabled(const pl_config_t *cfg)
{
    return pl_config_bool(cfg, "signaling", "enabled");
}

static int cfg_error(pl_config_error_t *err, const char *key, const char *why)
{
    snprintf(err->msg, sizeof(err->msg), "[signaling] %s: %s", key, why);
    return PL_ECONFIG;
}

static int sig_validate(const pl_config_t *cfg, pl_config_error_t *err)
{
    pl_sockaddr_t a;
    const char *cert = pl_config_str(cfg, "signaling", "tls_cert");
    const char *key = pl_config_str(cfg, "signaling", "tls_key");
    if (pl_sockaddr_parse(pl_config_str(cfg, "signaling", "listen"), -1, &a) < 0)
        return cfg_error(err, "listen", "expected host:port");
    if (cert[0] && pl_sockaddr_parse(pl_config_str(cfg, "signaling", "tls_listen"), -1, &a) < 0)
        return cfg_error(err, "tls_listen", "expected host:port");
    if (!cert[0] != !key[0])
        return cfg_error(err, cert[0] ? "tls_key" : "tls_cert",
                         "tls_cert and tls_key must be set together");
    if (cert[0] && access(cert, R_OK) != 0)
        return cfg_error(err, "tls_cert", "cannot read the file");
    if (key[0] && access(key, R_OK) != 0)
        return cfg_error(err, "tls_key", "cannot read the file");
    if (pl_config_int(cfg, "signaling", "idle_timeout") <=
        pl_config_int(cfg, "signaling", "ping_interval"))
        return cfg_error(err, "idle_timeout", "must be longer than ping_interval");
    if (pl_config_int(cfg, "signaling", "rate_burst") < 1)
        return cfg_error(err, "rate_burst", "must be at least 1");
    return pl_router_validate(cfg, err);
}

static void set_gw_limits(pl_sig_gateway_t *gw, const pl_config_t *cfg)
{
    pl_sig_gateway_set_limits(gw, (uint32_t)pl_config_int(cfg, "signaling", "rate_frames"),
                              (uint32_t)pl_config_int(cfg, "signaling", "rate_burst"),
                              (uint32_t)pl_config_int(cfg, "signaling", "max_errors"),
                              (uint32_t)pl_config_int(cfg, "signaling", "error_window"),
                              (uint32_t)pl_config_int(cfg, "signaling", "max_unauth_per_ip"));
}

/* The gateway may hold max_connections sockets: raise the soft fd limit towards the
 * hard one if it is lower (the process-wide limit is what lws sizes its tables by). */
static void raise_fd_limit(uint64_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > old)
        pl_log_info("signaling.fd_limit.raised", "from=%llu to=%llu",
                    (unsigned long long)old, (unsigned long long)rl.rlim_cur);
}

/* [signaling] threads = 0: one per online core but one, at least one. */
static unsigned gateway_threads(int64_t configured)
{
    if (configured > 0)
        return (unsigned)configured;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 2 ? (unsigned)PL_MIN(n - 1, 64) : 1;
}

static void fill_gw_opts(sig_state_t *s, const pl_config_t *cfg, pl_sig_gw_opts_t *o)
{
    s->listen = pl_xstrdup(pl_config_str(cfg, "signaling", "listen"));
    s->tls_listen = pl_xstrdup(pl_config_str(cfg, "signaling", "tls_listen"));
    s->tls_cert = pl_xstrdup(pl_config_str(cfg, "signaling", "tls_cert"));
    s->tls_key = pl_xstrdup(pl_config_str(cfg, "signaling", "tls_key"));
    s->web_root = pl_xstrdup(pl_config_str(cfg, "signaling", "web_root"));
    *o = (pl_sig_gw_opts_t){
        .listen = s->listen, .tls_listen = s->tls_listen, .tls_cert = s->tls_cert,
        .tls_key = s->tls_key, .web_root = s->web_root,
        .threads = gateway_threads(pl_config_int(cfg, "signaling", "threads")),
        .max_frame = (uint32_t)pl_config_int(cfg, "signaling", "max_frame_size"),
        .max_body = (uint32_t)pl_config_int(cfg, "signaling", "max_frame_size"),
        .send_queue_max = (uint32_t)pl_config_int(cfg, "signaling", "send_queue_max"),
        .max_connections = (uint32_t)pl_config_int(cfg, "signaling", "max_connections"),
        .auth_timeout_ms = (uint32_t)pl_config_int(cfg, "signaling", "auth_timeout"),
        .ping_interval_s = (uint16_t)PL_MIN(pl_config_int(cfg, "signaling", "ping_interval")
                                            / 1000, 65535),
        .idle_timeout_s = (uint16_t)PL_MIN(pl_config_int(cfg, "signaling", "idle_timeout")
                                           / 1000, 65535),
        .libev = strcmp(pl_config_str(cfg, "signaling", "event_loop"), "libev") == 0,
    };
}

static void sig_stop(void *state);

static int open_store(sig_state_t *s, const pl_host_t *host)
{
    const pl_store_schema_t *schemas[N_PARTS];
    size_t n = 0;
    for (size_t i = 0; i < N_PARTS; i++)
        if (parts[i]->schema)
            schemas[n++] = parts[i]->schema;
    pl_store_opts_t so;
    pl_store_opts_from_config(host->config, &so);
    so.schemas = schemas;
    so.n_schemas = n;
    so.metrics = host->metrics;
    return pl_store_open(&so, &s->store);
}

static int sig_start(const pl_host_t *host, void **state)
{
    sig_state_t *s = pl_xcalloc(1, sizeof(*s));
    pl_sig_gw_opts_t o;
    int rc = open_store(s, host);
    if (rc < 0)
        goto fail;
    fill_gw_opts(s, host->config, &o);
    raise_fd_limit((uint64_t)o.max_connections + 1024);
    pl_sig_gateway_create(&o, host->metrics, &s->gw);
    set_gw_limits(s->gw, host->config);
    rc = pl_router_create(&(pl_router_opts_t){ s->gw, host->config, host->metrics }, &s->router);
    if (rc < 0)
        goto fail;
    pl_sig_ctx_t ctx = { s->gw, s->store, host->config, host->metrics, host->main_loop,
                         s->router };
    for (size_t i = 0; i < N_PARTS; i++) {
        rc = parts[i]->init(&ctx, &s->part_state[i]);
        if (rc < 0) {
            pl_log_error("signaling.part.failed", "part=%s error=%s", parts[i]->name,
                         pl_strerror(rc));
            goto fail;
        }
        s->part_started[i] = true;
    }
    rc = pl_router_start(s->router);
    if (rc < 0)
        goto fail;
    rc = pl_sig_gateway_start(s->gw);
    if (rc < 0)
        goto fail;
    *state = s;
    return 0;

fail:
    sig_stop(s);
    return rc;
}

static void sig_stop(void *state)
{
    sig_state_t *s = state;
    if (s->gw)
        pl_sig_gateway_stop(s->gw);
    for (size_t i = N_PARTS; i-- > 0;)
        if (s->part_started[i] && parts[i]->stop)
            parts[i]->stop(s->part_state[i]);
    pl_router_stop(s->router);      /* after the gateway's last on_close hooks */
    pl_store_close(s->store);       /* runs what is queued; replies go to gateway inboxes */
    for (size_t i = N_PARTS; i-- > 0;)
        if (s->part_started[i])
            parts[i]->destroy(s->part_state[i]);
    pl_router_destroy(s->router);
    pl_sig_gateway_destroy(s->gw);  /* drains those inboxes */
    free(s->listen);
    free(s->tls_listen);
    free(s->tls_cert);
    free(s->tls_key);
    free(s->web_root);
    free(s);
}

static void sig_drain(void *state)
{
    sig_state_t *s = state;
    pl_sig_gateway_drain(s->gw);
}

static bool sig_drained(void *state)
{
    sig_state_t *s = state;
    return pl_sig_gateway_conn_count(s->gw) == 0;
}

static int sig_reload(void *state, const pl_config_t *next)
{
    sig_state_t *s = state;
    set_gw_limits(s->gw, next);
    pl_router_reload(s->router, next);
    for (size_t i = 0; i < N_PARTS; i++)
        if (parts[i]->reload)
            parts[i]->reload(s->part_state[i], next);
    return 0;
}

static bool sig_ready(void *state)
{
    sig_state_t *s = state;
    return !atomic_load(&s->gw->draining) && pl_router_ready(s->router);
}

static void sig_stats_json(void *state, pl_buf_t *out)
{
    sig_state_t *s = state;
    pl_store_stats_t st;
    pl_store_get_stats(s->store, &st);
    pl_buf_puts(out, "{\"gateway\":");
    pl_sig_gateway_stats_json(s->gw, out);
    pl_buf_puts(out, ",\"presence\":");
    pl_router_stats_json(s->router, out);
    pl_buf_printf(out, ",\"store\":{\"requests\":%llu,\"batches\":%llu,"
                  "\"commit_failures\":%llu,\"max_batch\":%llu}}",
                  (unsigned long long)st.requests, (unsigned long long)st.batches,
                  (unsigned long long)st.commit_failures, (unsigned long long)st.max_batch);
}

/* The sections of the signaling module's parts and of the store it opens. */
static const pl_opt_table_t *const more_options[] = {
    &pl_store_options, &pl_presence_options, &pl_calls_options,
#ifdef PL_HAVE_CHAT
    &pl_chat_options,
#endif
    NULL,
};

const pl_module_t pl_signaling_module = {
    .name = "signaling",
    .options = &options,
    .more_options = more_options,
    .enabled = sig_enabled,
    .validate = sig_validate,
    .start = sig_start,
    .drain = sig_drain,
    .drained = sig_drained,
    .stop = sig_stop,
    .reload = sig_reload,
    .ready = sig_ready,
    .stats_json = sig_stats_json,
};
