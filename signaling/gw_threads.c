/* gw_threads.c: the gateway's life cycle: options, metric registration, one lws
 * context per service thread with a plain (and optionally a TLS) vhost on the shared
 * port, the service loops, drain, stop and /stats.
 *
 * Memory per connection is what the 100k-idle-connections benchmark measures, so the
 * lws knobs here are chosen for it: a 1 KiB per-connection rx buffer (messages larger
 * than that are reassembled on demand in conn.c), a bounded pool of HTTP header
 * buffers (only handshakes in flight hold one; lws frees it at the upgrade), and no
 * per-connection lws timers once a WebSocket is up: lws keeps every timer of a thread
 * in one sorted list (O(n) insert), so the auth deadline, session expiry, pings and
 * the idle hang-up are enforced by conn.c's 1-s sweep instead, and the lws retry
 * policy is all zero (no validity timer re-armed on every frame).
 *
 * Threading: create/start/stop/destroy on the main thread; thread_main on each service
 * thread. */
#include "signaling/gw_int.h"
#include "core/pl_log.h"
#include "core/pl_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <ev.h>
#include <fcntl.h>
#include <unistd.h>

#define WS_RX_BUFFER 1024
#define HEADER_POOL 256             /* concurrent HTTP requests/handshakes per thread */

/* ---- lws logs into ours ------------------------------------------------------------ */

static void lws_log_sink(int level, const char *line)
{
    char buf[256];
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    snprintf(buf, sizeof(buf), "%.*s", (int)PL_MIN(n, sizeof(buf) - 1), line);
    pl_log(level == LLL_ERR ? PL_LOG_ERROR : PL_LOG_WARN, "signaling.lws", "msg=%s",
           PL_LOG_QUOTED(buf));
}

/* ---- create / registration of metrics ------------------------------------------ */

int pl_sig_gateway_create(const pl_sig_gw_opts_t *opts, pl_metrics_t *metrics,
                          pl_sig_gateway_t **out)
{
    pl_sig_gateway_t *gw = pl_xcalloc(1, sizeof(*gw));
    gw->opts = *opts;
    gw->metrics = metrics;
    gw->dir = pl_sig_dir_create();
    gw->unauth = pl_counts_create();
    gw->n_threads = opts->threads ? opts->threads : 1;
    gw->threads = pl_xcalloc(gw->n_threads, sizeof(*gw->threads));
    gw->listen_fd = gw->tls_listen_fd = -1;
    for (unsigned i = 0; i < gw->n_threads; i++) {
        pl_sig_thread_t *t = &gw->threads[i];
        t->gw = gw;
        t->index = i;
        t->free_head = UINT32_MAX;
        t->in_tail = &t->in_head;
        pthread_mutex_init(&t->lock, NULL);
    }
    static const char *const builtin[] = { "error" };
    pl_sig_gateway_add_push_types(gw, builtin, 1);
    *out = gw;
    return 0;
}

void pl_sig_gateway_set_limits(pl_sig_gateway_t *gw, uint32_t rate_frames, uint32_t rate_burst,
                               uint32_t max_errors, uint32_t error_window_ms,
                               uint32_t max_unauth_per_ip)
{
    atomic_store_explicit(&gw->limits.max_unauth_per_ip, max_unauth_per_ip,
                          memory_order_relaxed);
    atomic_store_explicit(&gw->limits.rate_frames, rate_frames, memory_order_relaxed);
    atomic_store_explicit(&gw->limits.rate_burst, rate_burst, memory_order_relaxed);
    atomic_store_explicit(&gw->limits.max_errors, max_errors, memory_order_relaxed);
    atomic_store_explicit(&gw->limits.error_window_ms, error_window_ms, memory_order_relaxed);
}

static pl_metric_id_t counter_l(pl_sig_gateway_t *gw, const char *name, const char *help,
                                const char *label, const char *value)
{
    char labels[160];
    snprintf(labels, sizeof(labels), "%s=\"%s\"", label, value);
    return pl_metrics_counter(gw->metrics, name, help, labels);
}

static void register_metrics(pl_sig_gateway_t *gw)
{
    static const char *const af[PL_SIG_AF_COUNT] = {
        "token_invalid", "token_expired", "timeout", "frame_before_auth",
        "bad_credentials", "rate_limited",
    };
    pl_metrics_t *r = gw->metrics;
    pl_sig_metric_ids_t *m = &gw->m;
    m->connections = pl_metrics_gauge(r, "parley_signaling_connections",
                                      "Open WebSocket connections", NULL);
    m->handshakes = pl_metrics_counter(r, "parley_signaling_handshakes_total",
                                       "WebSocket handshakes completed", NULL);
    m->rejected = pl_metrics_counter(r, "parley_signaling_handshakes_rejected_total",
        "WebSocket handshakes refused (path, subprotocol, draining, connection limit)", NULL);
    m->dropped = pl_metrics_counter(r, "parley_signaling_frames_dropped_total",
        "Frames for connections that had closed before delivery", NULL);
    m->http_requests = pl_metrics_counter(r, "parley_signaling_http_requests_total",
                                          "HTTP API requests", NULL);
    m->auth_ok = pl_metrics_counter(r, "parley_signaling_auth_total",
                                    "Successful WebSocket authentications", NULL);
    for (int i = 0; i < PL_SIG_AF_COUNT; i++)
        m->auth_fail[i] = counter_l(gw, "parley_signaling_auth_failures_total",
                                    "Authentication failures by reason", "reason", af[i]);
    for (int i = 1; i < PL_SIG_ERR_COUNT; i++)
        m->errors[i] = counter_l(gw, "parley_signaling_errors_total",
                                 "Error frames and HTTP errors sent, by code", "code",
                                 pl_sig_err_code((pl_sig_err_t)i));
    const char *in_help = "Frames received, by type";
    const char *out_help = "Frames sent, by type";
    for (size_t i = 0; i < gw->n_handlers; i++) {
        pl_sig_hentry_t *h = &gw->handlers[i];
        h->m_in = counter_l(gw, "parley_signaling_frames_in_total", in_help, "type", h->h->type);
    }
    m->in_unknown = counter_l(gw, "parley_signaling_frames_in_total", in_help, "type", "unknown");
    for (size_t i = 0; i < gw->n_otypes; i++)
        gw->otypes[i].m_out = counter_l(gw, "parley_signaling_frames_out_total", out_help,
                                        "type", gw->otypes[i].type);
    m->out_other = counter_l(gw, "parley_signaling_frames_out_total", out_help, "type", "other");
    const char *ch = "Connections closed by the server, by reason";
    m->close_replaced = counter_l(gw, "parley_signaling_closes_total", ch, "reason", "replaced");
    m->close_slow = counter_l(gw, "parley_signaling_closes_total", ch, "reason", "slow_consumer");
    m->close_abuse = counter_l(gw, "parley_signaling_closes_total", ch, "reason", "too_many_errors");
    m->close_unauth_ip = counter_l(gw, "parley_signaling_closes_total", ch, "reason",
                                   "unauth_per_ip");
    m->close_too_big = counter_l(gw, "parley_signaling_closes_total", ch, "reason", "too_big");
    m->close_expired = counter_l(gw, "parley_signaling_closes_total", ch, "reason",
                                 "session_expired");
}

/* ---- contexts, listeners and service threads -------------------------------- */

/* lws 4.1 as packaged (LWS_MAX_SMP=1) cannot run several service threads in one
 * context nor share its listeners between contexts, and it binds "127.0.0.1" as an
 * IPv6 wildcard when IPv6 is compiled in. So the gateway opens each listener once
 * itself; every thread's lws adopts a dup of it as a raw file and the "pl-listen"
 * protocol below accepts and hands each socket to that thread's vhost. Whichever
 * thread wakes first accepts (the idlest, in practice); the others get EAGAIN.
 * SO_REUSEPORT was avoided on purpose: it would let a second parleyd started by the
 * same user bind the port too and silently take half the connections. */
static int listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len);

static const struct lws_protocols protocols[] = {
    { "http", pl_sig_http_callback, sizeof(pl_sig_http_t), 0, 0, NULL, 0 },
    { "parley.v1", pl_sig_ws_callback, sizeof(pl_sig_conn_t), WS_RX_BUFFER, 0, NULL,
      PL_SIG_COALESCE_MAX },
    { "pl-listen", listen_callback, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 },
};

#define ACCEPT_BATCH 64             /* accepts per wake-up, so one thread cannot hog */

static int listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len)
{
    PL_UNUSED(user);
    PL_UNUSED(in);
    PL_UNUSED(len);
    if (reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION)
        return 1;                   /* not a subprotocol anyone may ask for */
    if (reason != LWS_CALLBACK_RAW_RX_FILE)
        return 0;
    pl_sig_thread_t *t = lws_context_user(lws_get_context(wsi));
    struct lws_vhost *vh = lws_get_vhost(wsi);
    int lfd = lws_get_socket_fd(wsi);
    lws_adoption_type type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP |
                             (vh == t->vh_tls ? LWS_ADOPT_ALLOW_SSL : 0);
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;                  /* EAGAIN, or an aborted connection: wait for more */
        int one = 1;
        /* Signaling frames are small and latency-bound (RFC 896 batching hurts). */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        lws_sock_file_fd_type sfd = { .sockfd = fd };
        if (!lws_adopt_descriptor_vhost(vh, type, sfd, NULL, NULL))
            pl_log_warn("signaling.accept.adopt_failed", "thread=%u", t->index);
    }
    return 0;
}

/* Opens the listener for spec ("host:port"; port 0 = any). Returns fd or -errno. */
static int open_listener(const char *spec, uint16_t *bound)
{
    pl_sockaddr_t a, local;
    if (pl_sockaddr_parse(spec, -1, &a) < 0)
        return PL_ECONFIG;
    int fd = pl_net_listen(&a, SOCK_STREAM, 0, 4096);
    if (fd >= 0 && pl_net_local_addr(fd, &local) == 0)
        *bound = pl_sockaddr_port(&local);
    return fd;
}

static void setup_mounts(pl_sig_gateway_t *gw)
{
    struct lws_http_mount *api = &gw->mounts[0], *files = &gw->mounts[1];
    memset(gw->mounts, 0, sizeof(gw->mounts));
    api->mountpoint = "/v1";
    api->mountpoint_len = 3;
    api->origin = "http";                       /* protocols[0] gets LWS_CALLBACK_HTTP */
    api->origin_protocol = LWSMPRO_CALLBACK;
    if (gw->opts.web_root && gw->opts.web_root[0]) {
        files->mountpoint = "/";
        files->mountpoint_len = 1;
        files->origin = gw->opts.web_root;
        files->def = "index.html";
        files->origin_protocol = LWSMPRO_FILE;
        api->mount_next = files;
    }
}

static struct lws_vhost *make_vhost(pl_sig_thread_t *t, bool tls)
{
    pl_sig_gateway_t *gw = t->gw;
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof(vi));
    vi.vhost_name = tls ? "parley-tls" : "parley";
    vi.port = CONTEXT_PORT_NO_LISTEN_SERVER;    /* we accept; see listen_callback */
    vi.protocols = protocols;
    vi.mounts = &gw->mounts[0];
    vi.retry_and_idle_policy = &gw->retry;
    /* RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection (1007). */
    vi.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    vi.keepalive_timeout = 5;
    vi.timeout_secs = 10;
    if (tls) {
        /* lws 4.1 reads this flag from the vhost's info too, else no SSL_CTX. The OS
         * CA store is for verifying peers, which a server without client certificates
         * never does: not loading it saves ~400 KB per thread. */
        vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
        vi.ssl_cert_filepath = gw->opts.tls_cert;
        vi.ssl_private_key_filepath = gw->opts.tls_key;
    }
    return lws_create_vhost(t->ctx, &vi);
}

/* Gives a dup of listener fd to lws as a raw file on vh (lws owns and closes it). */
static int adopt_listener(struct lws_vhost *vh, int fd)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        return -errno;
    lws_sock_file_fd_type f = { .filefd = d };
    return lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, f, "pl-listen", NULL)
               ? 0 : -ENOMEM;
}

static int create_context(pl_sig_thread_t *t)
{
    pl_sig_gateway_t *gw = t->gw;
    bool tls = gw->opts.tls_cert && gw->opts.tls_cert[0];
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof(ci));
    /* VALIDATE_UTF8 here too: lws 4.1 looks for it in the context's options. The
     * OpenSSL global init/deinit belongs to one context only, thread 0's, which
     * pl_sig_gateway_stop destroys last: with it on every context, the first one
     * destroyed deinitialises OpenSSL under the others' SSL_CTXs (they then leak). */
    ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8 |
                 (tls && t->index == 0 ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0);
    ci.user = t;
    ci.count_threads = 1;
    /* fd_limit_per_thread stays 0: lws then sizes its fd lookup table by the process
     * fd limit and indexes it by fd number. A smaller limit switches lws to a linear
     * search per event, which 100k connections cannot afford; and fd numbers are
     * process-wide, so each context must be able to hold any of them. The table is
     * calloc'd, so untouched pages cost no resident memory. */
    ci.fd_limit_per_thread = 0;
    ci.max_http_header_pool = HEADER_POOL;
    ci.timeout_secs = 10;
    ci.keepalive_timeout = 5;
    ci.retry_and_idle_policy = &gw->retry;
    /* libev with its epoll backend: lws 4.1's own loop is poll(), which hands the
     * kernel every connection of the thread on each wake-up; on libev lws keeps one
     * watcher per socket and the kernel reports only what is ready. lws loads its
     * libev glue (libwebsockets-evlib_ev) as a plugin. */
    if (gw->opts.libev) {
        t->evloop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
        if (!t->evloop)
            return -ENOMEM;
        t->foreign_loops[0] = t->evloop;
        ci.foreign_loops = t->foreign_loops;
        ci.options |= LWS_SERVER_OPTION_LIBEV;
    }
    t->ctx = lws_create_context(&ci);
    if (!t->ctx) {
        if (t->evloop) {
            /* Most likely lws could not load its libev plugin. */
            pl_log_error("signaling.libev.failed", "thread=%u hint=%s", t->index,
                         PL_LOG_QUOTED("install libwebsockets-evlib-ev, or set [signaling] event_loop = poll"));
            ev_loop_destroy(t->evloop);
            t->evloop = NULL;
            return PL_ECONFIG;
        }
        return -ENOMEM;
    }
    int rc = -ENOMEM;
    t->vh_plain = make_vhost(t, false);
    if (!t->vh_plain)
        goto fail;
    if (tls && !(t->vh_tls = make_vhost(t, true))) {
        rc = PL_ECONFIG;            /* lws logged why: unreadable or mismatched PEM */
        goto fail;
    }
    if ((rc = adopt_listener(t->vh_plain, gw->listen_fd)) < 0 ||
        (tls && (rc = adopt_listener(t->vh_tls, gw->tls_listen_fd)) < 0))
        goto fail;
    return 0;

fail:
    lws_context_destroy(t->ctx);
    t->ctx = NULL;
    return rc;
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    PL_UNUSED(loop);
    PL_UNUSED(revents);
    pl_sig_conn_flush(w->data);
}

static void *thread_main(void *arg)
{
    pl_sig_thread_t *t = arg;
    char name[16];
    snprintf(name, sizeof(name), "sig-gw-%u", t->index % 100);
    pthread_setname_np(pthread_self(), name);
    pl_sig_thread_set_current(t);
    pl_sig_conn_sweep_start(t);
    if (t->evloop) {
        ev_prepare *w = pl_xcalloc(1, sizeof(*w));
        ev_prepare_init(w, on_prepare);
        w->data = t;
        ev_prepare_start(t->evloop, w);
        t->flush_w = w;
        while (!atomic_load(&t->quit))
            ev_run(t->evloop, 0);
        ev_prepare_stop(t->evloop, w);
    } else {
        while (!atomic_load(&t->quit))
            if (lws_service(t->ctx, 0) < 0)
                break;
    }
    lws_sul_cancel(&t->sweep_sul);
    pl_sig_thread_drain_inbox(t);
    /* Destroying the context closes every connection here, on the owning thread. */
    struct lws_context *ctx = t->ctx;
    pthread_mutex_lock(&t->lock);
    atomic_store(&t->dead, true);
    pthread_mutex_unlock(&t->lock);
    lws_context_destroy(ctx);
    t->ctx = NULL;
    if (t->evloop) {
        ev_run(t->evloop, EVRUN_NOWAIT);    /* lets lws finish closing its watchers */
        ev_loop_destroy(t->evloop);
        t->evloop = NULL;
    }
    pl_sig_thread_drain_inbox(t);
    return NULL;
}

void pl_sig_thread_check_quit(pl_sig_thread_t *t)
{
    if (t->evloop && atomic_load(&t->quit))
        ev_break(t->evloop, EVBREAK_ALL);
}

static void close_listeners(pl_sig_gateway_t *gw)
{
    if (gw->listen_fd >= 0)
        close(gw->listen_fd);
    if (gw->tls_listen_fd >= 0)
        close(gw->tls_listen_fd);
    gw->listen_fd = gw->tls_listen_fd = -1;
}

static int open_listeners(pl_sig_gateway_t *gw)
{
    gw->listen_fd = open_listener(gw->opts.listen, &gw->port);
    if (gw->listen_fd < 0)
        return gw->listen_fd;
    if (gw->opts.tls_cert && gw->opts.tls_cert[0]) {
        gw->tls_listen_fd = open_listener(gw->opts.tls_listen, &gw->tls_port);
        if (gw->tls_listen_fd < 0)
            return gw->tls_listen_fd;
    }
    return 0;
}

int pl_sig_gateway_start(pl_sig_gateway_t *gw)
{
    pl_sig_gateway_seal(gw);
    register_metrics(gw);
    setup_mounts(gw);
    memset(&gw->retry, 0, sizeof(gw->retry));   /* conn.c's sweep pings and hangs up */
    lws_set_log_level(LLL_ERR | (pl_log_get_level() <= PL_LOG_DEBUG ? LLL_WARN : 0),
                      lws_log_sink);
    int rc = open_listeners(gw);
    if (rc < 0) {
        pl_log_error("signaling.listen.failed", "listen=%s tls_listen=%s error=%s",
                     PL_LOG_QUOTED(gw->opts.listen), PL_LOG_QUOTED(gw->opts.tls_listen),
                     pl_strerror(rc));
        close_listeners(gw);
        return rc;
    }
    for (unsigned i = 0; rc == 0 && i < gw->n_threads; i++) {
        pl_sig_thread_t *t = &gw->threads[i];
        t->shard = pl_metrics_shard_create(gw->metrics);
        rc = create_context(t);
        if (rc < 0)
            pl_log_error("signaling.context.failed", "thread=%u error=%s", i, pl_strerror(rc));
    }
    close_listeners(gw);            /* every context holds its own dup */
    for (unsigned i = 0; rc == 0 && i < gw->n_threads; i++) {
        pl_sig_thread_t *t = &gw->threads[i];
        rc = -pthread_create(&t->tid, NULL, thread_main, t);
        t->started = rc == 0;
    }
    if (rc < 0)
        return rc;
    pl_log_info("signaling.listening", "port=%u tls_port=%u threads=%u web_root=%s loop=%s",
                gw->port, gw->tls_port, gw->n_threads, PL_LOG_QUOTED(gw->opts.web_root),
                gw->opts.libev ? "libev" : "poll");
    return 0;
}

static void close_all_msg(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    pl_sig_thread_t *t = *(pl_sig_thread_t **)(msg + 1);
    if (!atomic_load(&t->dead))
        pl_sig_conn_close_all(t);
    free(msg);
}

void pl_sig_gateway_drain(pl_sig_gateway_t *gw)
{
    atomic_store(&gw->draining, true);
    for (unsigned i = 0; i < gw->n_threads; i++) {
        if (!gw->threads[i].started)
            continue;
        pl_msg_t *m = pl_xcalloc(1, sizeof(pl_msg_t) + sizeof(pl_sig_thread_t *));
        m->fn = close_all_msg;
        *(pl_sig_thread_t **)(m + 1) = &gw->threads[i];
        pl_sig_post(gw, i, m);
    }
}

size_t pl_sig_gateway_conn_count(pl_sig_gateway_t *gw)
{
    size_t n = 0;
    for (unsigned i = 0; i < gw->n_threads; i++)
        n += (size_t)atomic_load(&gw->threads[i].n_ws);
    return n;
}

static void stop_thread(pl_sig_thread_t *t)
{
    if (t->started) {
        atomic_store(&t->quit, true);
        pthread_mutex_lock(&t->lock);
        if (!atomic_load(&t->dead) && t->ctx)
            lws_cancel_service(t->ctx);
        pthread_mutex_unlock(&t->lock);
        pthread_join(t->tid, NULL);
        t->started = false;
    }
    if (t->ctx) {                       /* created but never serviced (start failed) */
        lws_context_destroy(t->ctx);
        t->ctx = NULL;
    }
    if (t->evloop) {
        ev_loop_destroy(t->evloop);
        t->evloop = NULL;
    }
    atomic_store(&t->dead, true);
}

void pl_sig_gateway_stop(pl_sig_gateway_t *gw)
{
    /* Thread 0 last: its context owns the TLS library's global state (see
     * create_context). The others stop in parallel. */
    for (unsigned i = 1; i < gw->n_threads; i++)
        if (gw->threads[i].started)
            atomic_store(&gw->threads[i].quit, true);
    for (unsigned i = gw->n_threads; i-- > 0;)
        stop_thread(&gw->threads[i]);
}

void pl_sig_gateway_destroy(pl_sig_gateway_t *gw)
{
    if (!gw)
        return;
    pl_sig_gateway_stop(gw);
    /* Replies that arrived after the threads ended. Running one may post another (a
     * deferred reply posts its frame, to any thread), so drain until all stay empty. */
    for (bool again = true; again;) {
        again = false;
        for (unsigned i = 0; i < gw->n_threads; i++) {
            pl_sig_thread_t *t = &gw->threads[i];
            pthread_mutex_lock(&t->lock);
            bool queued = t->in_head != NULL;
            pthread_mutex_unlock(&t->lock);
            if (queued) {
                pl_sig_thread_drain_inbox(t);
                again = true;
            }
        }
    }
    for (unsigned i = 0; i < gw->n_threads; i++) {
        pthread_mutex_destroy(&gw->threads[i].lock);
        free(gw->threads[i].slots);
        free(gw->threads[i].wbuf);
        free(gw->threads[i].flush_ids);
        free(gw->threads[i].flush_w);
    }
    for (size_t i = 0; i < gw->n_otypes; i++)
        free(gw->otypes[i].type);
    free(gw->otypes);
    free(gw->handlers);
    free(gw->hooks);
    free(gw->routes);
    free(gw->threads);
    pl_sig_dir_destroy(gw->dir);
    pl_counts_destroy(gw->unauth);
    free(gw);
}

void pl_sig_gateway_stats_json(pl_sig_gateway_t *gw, pl_buf_t *out)
{
    pl_buf_printf(out, "{\"connections\":%zu,\"devices_online\":%zu,\"threads\":%u,"
                  "\"port\":%u,\"tls_port\":%u,\"draining\":%s}",
                  pl_sig_gateway_conn_count(gw), pl_sig_dir_count(gw->dir), gw->n_threads,
                  gw->port, gw->tls_port, atomic_load(&gw->draining) ? "true" : "false");
}

void pl_sig_count_auth_fail(pl_sig_thread_t *t, pl_sig_auth_fail_t why)
{
    pl_metric_inc(t->shard, t->gw->m.auth_fail[why]);
}

void pl_sig_count_error(pl_sig_thread_t *t, const char *code)
{
    pl_metric_inc(t->shard, t->gw->m.errors[pl_sig_err_from_code(code)]);
}
