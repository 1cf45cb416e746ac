/* turn_module.c: pl_turn_module, the TURN server as parleyd runs it.
 *
 *   start    builds the settings, the shared state and the metrics, checks that no
 *            other process holds a listen port (SO_REUSEPORT would let a second
 *            parleyd silently share it), then opens turn.threads relay threads.
 *   drain    new Allocates get 300 (alternate servers set) or 508; existing
 *            allocations keep being served and refreshed.
 *   drained  true when no allocation is left (allocations live up to max_lifetime,
 *            so in practice [process] drain_timeout decides).
 *   stop     stops and joins every thread (each deletes its allocations and closes its
 *            sockets on its own loop), then frees them: no thread is freed while
 *            another may still post to it (ConnectionBind hand-over).
 *   reload   users, secrets, peer lists, quotas, lifetimes, alternates, software and
 *            the TLS certificate/key (a new SSL_CTX, used for new connections; open
 *            ones keep theirs): a new settings snapshot posted to every thread.
 *   stats    allocation count per thread and the list published by each thread.
 *
 * Threading: the hooks run on the main thread; threads are reached only by posting. */
#include "relay/turn/turn_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct turn_mod {
    pl_turn_settings_t *set;
    pl_turn_shared_t *shared;
    pl_turn_metric_ids_t ids;
    pl_turn_thread_t **threads;
    unsigned n_threads;
    pl_sockaddr_t listen[PL_TURN_MAX_LISTEN];   /* bound addresses (UDP and TCP) */
    size_t n_listen;
    pl_sockaddr_t tls_listen[PL_TURN_MAX_LISTEN];   /* bound TLS addresses */
    size_t n_tls_listen;
    bool draining;
} turn_mod_t;

static bool turn_enabled(const pl_config_t *cfg)
{
    return pl_config_bool(cfg, "turn", "enabled");
}

/* Fails when another socket already has the port: probes without SO_REUSEPORT. */
static int probe_free(const pl_sockaddr_t *addr, int type)
{
    if (pl_sockaddr_port(addr) == 0)
        return 0;
    int fd = pl_net_listen(addr, type, PL_LISTEN_V6ONLY, 1);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

static int open_threads(turn_mod_t *m, const pl_host_t *host)
{
    m->threads = pl_xcalloc(m->set->threads, sizeof *m->threads);
    for (unsigned i = 0; i < m->set->threads; i++) {
        pl_turn_thread_cfg_t tc = {i, m->set, m->shared, pl_metrics_shard_create(host->metrics),
                                   &m->ids, m->listen, m->n_listen, m->tls_listen,
                                   m->n_tls_listen};
        int rc = pl_turn_thread_create(&tc, &m->threads[i]);
        if (rc != 0)
            return rc;
        m->n_threads = i + 1;
        /* Port 0 means any free port: the first thread's choice binds the others. */
        for (size_t k = 0; i == 0 && k < m->n_listen; k++)
            pl_turn_thread_listen_addr(m->threads[0], k, &m->listen[k]);
        for (size_t k = 0; i == 0 && k < m->n_tls_listen; k++)
            pl_turn_thread_tls_addr(m->threads[0], k, &m->tls_listen[k]);
    }
    for (unsigned i = 0; i < m->n_threads; i++) {
        int rc = pl_turn_thread_start(m->threads[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void log_started(const turn_mod_t *m)
{
    char listen[PL_TURN_MAX_LISTEN * PL_SOCKADDR_STRLEN] = "", a[PL_SOCKADDR_STRLEN];
    char relay4[PL_SOCKADDR_STRLEN] = "-", relay6[PL_SOCKADDR_STRLEN] = "-";
    for (size_t i = 0; i < m->n_listen; i++) {
        strcat(listen, i ? "," : "");
        strcat(listen, pl_sockaddr_str(&m->listen[i], a, sizeof a));
    }
    if (m->set->has_relay[0])
        pl_ipaddr_str(&m->set->relay[0], relay4, sizeof relay4);
    if (m->set->has_relay[1])
        pl_ipaddr_str(&m->set->relay[1], relay6, sizeof relay6);
    pl_log_info("turn.started", "threads=%u listen=%s relay=%s relay6=%s ports=%u-%u users=%zu "
                "secrets=%zu realm=%s", m->n_threads, listen, relay4, relay6, m->set->port_lo,
                m->set->port_hi, m->set->n_users, m->set->n_secrets, PL_LOG_QUOTED(m->set->realm));
    if (m->set->n_users == 0 && m->set->n_secrets == 0)
        pl_log_warn("turn.no_credentials", "msg=\"no turn.users or turn.auth_secret: "
                    "STUN Binding only, every Allocate gets 401\"");
    char tls[PL_TURN_MAX_LISTEN * PL_SOCKADDR_STRLEN] = "";
    for (size_t i = 0; i < m->n_tls_listen; i++) {
        strcat(tls, i ? "," : "");
        strcat(tls, pl_sockaddr_str(&m->tls_listen[i], a, sizeof a));
    }
    if (m->n_tls_listen)
        pl_log_info("turn.tls_started", "tls_listen=%s cert=%s", tls,
                    PL_LOG_QUOTED(m->set->tls_cert));
}

/* Every listen address is free for UDP and TCP, every TLS address for TCP. */
static int probe_ports(const turn_mod_t *m)
{
    char a[PL_SOCKADDR_STRLEN];
    for (size_t i = 0; i < m->n_listen + m->n_tls_listen; i++) {
        bool tls = i >= m->n_listen;
        const pl_sockaddr_t *addr = tls ? &m->tls_listen[i - m->n_listen] : &m->listen[i];
        int rc = tls ? 0 : probe_free(addr, SOCK_DGRAM);
        if (rc == 0)
            rc = probe_free(addr, SOCK_STREAM);
        if (rc != 0) {
            pl_log_error("turn.listen_failed", "addr=%s tls=%s error=%s",
                         pl_sockaddr_str(addr, a, sizeof a), tls ? "true" : "false",
                         pl_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static void turn_stop(void *state);

static int turn_start(const pl_host_t *host, void **state)
{
    turn_mod_t *m = pl_xcalloc(1, sizeof *m);
    pl_config_error_t err;
    int rc = pl_turn_settings_build(host->config, &m->set, &err);
    if (rc != 0) {
        pl_log_error("turn.config_invalid", "reason=%s", PL_LOG_QUOTED(err.msg));
        goto fail;
    }
    m->n_listen = m->set->n_listen;
    memcpy(m->listen, m->set->listen, sizeof m->listen);
    if (m->set->tls_ctx) {
        m->n_tls_listen = m->set->n_tls_listen;
        memcpy(m->tls_listen, m->set->tls_listen, sizeof m->tls_listen);
    }
    if ((rc = probe_ports(m)) != 0)
        goto fail;
    m->shared = pl_turn_shared_create(m->set->port_lo, m->set->port_hi, m->set->nonce_lifetime_s);
    pl_turn_metrics_register(host->metrics, &m->ids);
    if ((rc = open_threads(m, host)) != 0) {
        pl_log_error("turn.start_failed", "error=%s", pl_strerror(rc));
        goto fail;
    }
    log_started(m);
    *state = m;
    return 0;
fail:
    turn_stop(m);
    return rc;
}

static void turn_stop(void *state)
{
    turn_mod_t *m = state;
    if (!m)
        return;
    for (unsigned i = 0; i < m->n_threads; i++)
        pl_turn_thread_join(m->threads[i]);
    for (unsigned i = 0; i < m->n_threads; i++)
        pl_turn_thread_destroy(m->threads[i]);
    free(m->threads);
    pl_turn_shared_destroy(m->shared);
    pl_turn_settings_unref(m->set);
    free(m);
}

static void turn_drain(void *state)
{
    turn_mod_t *m = state;
    m->draining = true;
    for (unsigned i = 0; i < m->n_threads; i++)
        pl_turn_thread_post_drain(m->threads[i]);
}

static bool turn_drained(void *state)
{
    turn_mod_t *m = state;
    pthread_mutex_lock(&m->shared->quota_lock);
    uint32_t total = m->shared->total;
    pthread_mutex_unlock(&m->shared->quota_lock);
    return total == 0;
}

static int turn_reload(void *state, const pl_config_t *next)
{
    turn_mod_t *m = state;
    pl_turn_settings_t *set;
    pl_config_error_t err;
    int rc = pl_turn_settings_build(next, &set, &err);
    if (rc != 0) {
        pl_log_error("turn.reload_failed", "reason=%s", PL_LOG_QUOTED(err.msg));
        return rc;
    }
    for (unsigned i = 0; i < m->n_threads; i++)
        pl_turn_thread_post_settings(m->threads[i], set);
    pl_turn_settings_unref(m->set);
    m->set = set;
    pl_log_info("turn.reloaded", "users=%zu secrets=%zu allowed_peers=%zu denied_peers=%zu "
                "tls=%s", set->n_users, set->n_secrets, set->n_allowed, set->n_denied,
                set->tls_ctx ? (m->n_tls_listen ? "reloaded" : "needs_restart") : "off");
    return 0;
}

static bool turn_ready(void *state)
{
    turn_mod_t *m = state;
    return m->n_threads > 0 && !m->draining;
}

static void turn_stats_json(void *state, pl_buf_t *out)
{
    turn_mod_t *m = state;
    pl_buf_t lists;
    pl_buf_init(&lists);
    char a[PL_SOCKADDR_STRLEN];
    pl_buf_printf(out, "{\"threads\":%u,\"draining\":%s,\"listen\":[", m->n_threads,
                  m->draining ? "true" : "false");
    for (size_t i = 0; i < m->n_listen; i++)
        pl_buf_printf(out, "%s\"%s\"", i ? "," : "", pl_sockaddr_str(&m->listen[i], a, sizeof a));
    pl_buf_puts(out, "],\"tls_listen\":[");
    for (size_t i = 0; i < m->n_tls_listen; i++)
        pl_buf_printf(out, "%s\"%s\"", i ? "," : "",
                      pl_sockaddr_str(&m->tls_listen[i], a, sizeof a));
    pl_buf_puts(out, "],\"allocations_per_thread\":[");
    size_t total = 0;
    for (unsigned i = 0; i < m->n_threads; i++) {
        size_t before = lists.len;
        if (before)
            pl_buf_puts(&lists, ",");
        size_t n = pl_turn_thread_snapshot(m->threads[i], &lists);
        if (lists.len == before + (before ? 1 : 0)) {
            lists.len = before;             /* this thread listed nothing: no comma */
            if (lists.data)
                lists.data[before] = '\0';
        }
        total += n;
        pl_buf_printf(out, "%s%zu", i ? "," : "", n);
    }
    pl_buf_printf(out, "],\"allocations\":%zu,\"ports_in_use\":%zu,\"allocation_list\":[", total,
                  pl_turn_ports_in_use(&m->shared->ports[0]) +
                  pl_turn_ports_in_use(&m->shared->ports[1]));
    pl_buf_puts(out, lists.data ? lists.data : "");
    pl_buf_puts(out, "]}");
    pl_buf_deinit(&lists);
}

const pl_module_t pl_turn_module = {
    .name = "turn",
    .options = &pl_turn_options,
    .enabled = turn_enabled,
    .validate = pl_turn_validate,
    .start = turn_start,
    .drain = turn_drain,
    .drained = turn_drained,
    .stop = turn_stop,
    .reload = turn_reload,
    .ready = turn_ready,
    .stats_json = turn_stats_json,
};
