/* turn_server.c: the per-thread protocol core's entry points: demultiplexing client
 * input (STUN request, Send indication, ChannelData), Binding (RFC 8489 §7.3), the
 * 420 check (RFC 8489 §6.3.1), response building (SOFTWARE, integrity, FINGERPRINT),
 * the unauthenticated-response rate limit, expiry sweeps and /stats.
 *
 * Unauthenticated responses (Binding, 400, 401, 420, 438) carry no SOFTWARE and, over
 * UDP, go through a per-source token bucket (turn.unauth_rate) shared by all relay
 * threads (pl_turn_shared_t.rl; SO_REUSEPORT spreads one source's ports over them), so
 * the server is a poor reflector: a 20-byte Binding request gets 44 bytes (52 with
 * FINGERPRINT), the smallest Allocate (28 bytes) a 120-byte 401 with realm
 * "example.org" (x4.3). Stream clients proved their address in the handshake.
 *
 * What it does not: sockets and time (the I/O interface), method logic on allocations
 * (turn_allocate.c, turn_perm.c), authentication (turn_auth.c).
 *
 * Threading: one server per relay thread; every function runs on that thread (the
 * shared rate buckets take their stripe's leaf lock). */
#include "relay/turn/turn_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---- life cycle ---------------------------------------------------------------- */

pl_turn_server_t *pl_turn_server_create(const pl_turn_server_cfg_t *cfg)
{
    pl_turn_server_t *s = pl_xcalloc(1, sizeof *s);
    s->io = cfg->io;
    s->io_ctx = cfg->io_ctx;
    s->set = pl_turn_settings_ref(cfg->settings);
    s->shared = cfg->shared;
    s->shard = cfg->shard;
    s->mid = cfg->mid;
    s->thread_idx = cfg->thread_idx;
    if (getrandom(&s->rng, sizeof s->rng, 0) != (ssize_t)sizeof s->rng || s->rng == 0)
        s->rng = 0x9E3779B9u ^ cfg->thread_idx;
    return s;
}

void pl_turn_server_destroy(pl_turn_server_t *s)
{
    if (!s)
        return;
    while (s->n_list > 0)
        pl_turn_alloc_delete(s, s->list[s->n_list - 1], "shutdown");
    pl_turn_tcp_destroy(s);
    free(s->table);
    free(s->list);
    pl_turn_settings_unref(s->set);
    free(s);
}

void pl_turn_server_set_settings(pl_turn_server_t *s, pl_turn_settings_t *set)
{
    pl_turn_settings_t *old = s->set;
    s->set = pl_turn_settings_ref(set);
    pl_turn_settings_unref(old);
}

void pl_turn_server_drain(pl_turn_server_t *s)
{
    s->draining = true;
}

size_t pl_turn_server_count(const pl_turn_server_t *s)
{
    return s->n_list;
}

/* ---- replies ------------------------------------------------------------------- */

void pl_turn_reply_start(pl_turn_server_t *s, pl_turn_reply_t *r, const pl_stun_msg_t *req,
                         uint8_t cls, const pl_turn_auth_t *auth)
{
    r->req = req;
    r->auth = auth;
    pl_stun_build_reply(&r->b, s->tx, sizeof s->tx, req, cls);
}

void pl_turn_reply_send(pl_turn_server_t *s, pl_turn_reply_t *r, const pl_turn_conn_t *conn,
                        int code)
{
    if (r->auth && s->set->software)
        pl_stun_add_str(&r->b, PL_STUN_ATTR_SOFTWARE, s->set->software);
    if (r->auth && r->auth->sha256)
        pl_stun_add_integrity_sha256(&r->b, r->auth->key.bytes, r->auth->key.len);
    else if (r->auth)
        pl_stun_add_integrity(&r->b, r->auth->key.bytes, r->auth->key.len);
    /* RFC 8489 §14.7: answer with FINGERPRINT when the request used one (ICE agents
     * demultiplex with it). */
    if (r->req->fp_idx >= 0)
        pl_stun_add_fingerprint(&r->b);
    int n = pl_stun_build_finish(&r->b);
    if (n < 0) {
        pl_log_error("turn.reply.build_failed", "method=%u code=%d error=%s",
                     r->req->method, code, pl_strerror(n));
        pl_turn_drop(s, PL_TURN_DROP_SEND_FAILED);
        return;
    }
    pl_metric_inc(s->shard, s->mid->responses[pl_turn_code_index(code)]);
    if (code != 0 && PL_LOG_DEBUG_ON()) {
        char c[PL_SOCKADDR_STRLEN];
        pl_log_debug("turn.reply.error", "client=%s method=0x%03x code=%d",
                     pl_sockaddr_str(&conn->client, c, sizeof c), r->req->method, code);
    }
    if (s->io->send_client(s->io_ctx, conn, s->tx, (size_t)n) != 0)
        pl_turn_drop(s, PL_TURN_DROP_SEND_FAILED);
}

void pl_turn_reply_error(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                         const pl_stun_msg_t *req, const pl_turn_auth_t *auth, int code)
{
    pl_turn_reply_t r;
    pl_turn_reply_start(s, &r, req, PL_STUN_CLASS_ERROR, auth);
    pl_stun_add_error(&r.b, code, NULL);
    pl_turn_reply_send(s, &r, conn, code);
}

/* An unauthenticated error reply, subject to the per-source rate. */
static void reply_unauth_error(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                               const pl_stun_msg_t *req, int code)
{
    if (pl_turn_rate_ok(s, conn, pl_turn_now_ms(s)))
        pl_turn_reply_error(s, conn, req, NULL, code);
}

/* ---- unauthenticated rate limit ----------------------------------------------- */

bool pl_turn_rate_ok(pl_turn_server_t *s, const pl_turn_conn_t *conn, uint64_t now_ms)
{
    uint32_t rate = s->set->unauth_rate;
    if (rate == 0 || conn->transport != PL_TURN_UDP)
        return true;
    const pl_sockaddr_t *src = &conn->client;
    uint8_t ip[16] = {0};
    if (src->sa.sa_family == AF_INET)
        memcpy(ip, &src->in4.sin_addr, 4);
    else
        memcpy(ip, &src->in6.sin6_addr, 16);
    pl_turn_rl_t *rl = &s->shared->rl;
    uint64_t h = 14695981039346656037ull ^ rl->seed;
    for (int i = 0; i < 16; i++)
        h = (h ^ ip[i]) * 1099511628211ull;
    size_t idx = (size_t)(h % PL_TURN_RL_SLOTS);
    pl_turn_rl_slot_t *sl = &rl->slot[idx];
    /* Burst of one second's worth (at least 10), refilled continuously. */
    uint64_t cap = (uint64_t)PL_MAX(rate, 10u) * 1000;
    pthread_mutex_t *lock = &rl->lock[idx % PL_TURN_RL_STRIPES];
    pthread_mutex_lock(lock);
    if (memcmp(sl->ip, ip, 16) != 0 || sl->last_ms == 0) {
        memcpy(sl->ip, ip, 16);
        sl->tokens_milli = (uint32_t)PL_MIN(cap, UINT32_MAX);
    } else if (now_ms > sl->last_ms) {
        uint64_t t = sl->tokens_milli + PL_MIN(now_ms - sl->last_ms, 10000) * rate;
        sl->tokens_milli = (uint32_t)PL_MIN(PL_MIN(t, cap), UINT32_MAX);
    }
    /* Threads read the clock a moment apart: last_ms never moves back (nor to 0,
     * which marks a free slot). */
    uint64_t t = now_ms ? now_ms : 1;
    if (t > sl->last_ms)
        sl->last_ms = t;
    bool ok = sl->tokens_milli >= 1000;
    if (ok)
        sl->tokens_milli -= 1000;
    pthread_mutex_unlock(lock);
    if (!ok)
        pl_turn_drop(s, PL_TURN_DROP_RATE_LIMITED);
    return ok;
}

/* ---- requests ------------------------------------------------------------------ */

static void handle_binding(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                           const pl_stun_msg_t *m)
{
    if (!pl_turn_rate_ok(s, conn, pl_turn_now_ms(s)))
        return;
    pl_turn_reply_t r;
    pl_turn_reply_start(s, &r, m, PL_STUN_CLASS_SUCCESS, NULL);
    pl_stun_add_addr(&r.b, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &conn->client);
    /* RFC 8489 §14.1: MAPPED-ADDRESS for RFC 3489-era clients that read only it. */
    pl_stun_add_addr(&r.b, PL_STUN_ATTR_MAPPED_ADDRESS, &conn->client);
    pl_turn_reply_send(s, &r, conn, 0);
}

/* Methods that need long-term credentials (RFC 8656 §5). */
static void handle_authenticated(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                 const pl_stun_msg_t *m)
{
    pl_turn_auth_t auth;
    if (pl_turn_auth_check(s, conn, m, &auth) != 0)
        return;
    switch (m->method) {
    case PL_STUN_METHOD_ALLOCATE: pl_turn_handle_allocate(s, conn, m, &auth); break;
    case PL_STUN_METHOD_REFRESH: pl_turn_handle_refresh(s, conn, m, &auth); break;
    case PL_STUN_METHOD_CREATE_PERMISSION:
        pl_turn_handle_create_permission(s, conn, m, &auth);
        break;
    case PL_STUN_METHOD_CHANNEL_BIND: pl_turn_handle_channel_bind(s, conn, m, &auth); break;
    case PL_STUN_METHOD_CONNECT: pl_turn_handle_connect(s, conn, m, &auth); break;
    case PL_STUN_METHOD_CONNECTION_BIND:
        pl_turn_handle_connection_bind(s, conn, m, &auth);
        break;
    default: pl_turn_reply_error(s, conn, m, &auth, 400); break;
    }
}

static void handle_request(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                           const pl_stun_msg_t *m)
{
    uint16_t unknown[16];
    size_t n = pl_stun_unknown_required(m, unknown, PL_ARRAY_LEN(unknown));
    if (n > 0) {
        /* RFC 8489 §6.3.1.1: 420 listing the comprehension-required attributes we do
         * not understand. */
        if (!pl_turn_rate_ok(s, conn, pl_turn_now_ms(s)))
            return;
        pl_turn_reply_t r;
        pl_turn_reply_start(s, &r, m, PL_STUN_CLASS_ERROR, NULL);
        pl_stun_add_error(&r.b, 420, NULL);
        pl_stun_add_unknown(&r.b, unknown, PL_MIN(n, PL_ARRAY_LEN(unknown)));
        pl_turn_reply_send(s, &r, conn, 420);
        return;
    }
    switch (m->method) {
    case PL_STUN_METHOD_BINDING: handle_binding(s, conn, m); break;
    case PL_STUN_METHOD_ALLOCATE:
    case PL_STUN_METHOD_REFRESH:
    case PL_STUN_METHOD_CREATE_PERMISSION:
    case PL_STUN_METHOD_CHANNEL_BIND:
    case PL_STUN_METHOD_CONNECT:
    case PL_STUN_METHOD_CONNECTION_BIND:
        handle_authenticated(s, conn, m);
        break;
    default: reply_unauth_error(s, conn, m, 400); break;
    }
}

void pl_turn_server_input(pl_turn_server_t *s, const pl_turn_conn_t *conn, uint8_t *buf,
                          size_t len)
{
    if (pl_turn_is_chandata(buf, len)) {
        pl_turn_handle_channel_data(s, conn, buf, len);
        return;
    }
    if (pl_stun_classify(buf, len) != PL_STUN_KIND_STUN) {
        pl_turn_drop(s, PL_TURN_DROP_NOT_STUN);
        return;
    }
    pl_stun_msg_t m;
    if (pl_stun_parse(&m, buf, len) != 0) {
        pl_turn_drop(s, PL_TURN_DROP_MALFORMED);
        /* RFC 8489 §6.3: a request with a valid header but bad attributes gets 400. */
        if (m.header_ok && m.cls == PL_STUN_CLASS_REQUEST)
            reply_unauth_error(s, conn, &m, 400);
        return;
    }
    if (m.fp_idx >= 0 && pl_stun_check_fingerprint(&m) != 0) {
        pl_turn_drop(s, PL_TURN_DROP_BAD_FINGERPRINT);
        return;
    }
    if (m.cls == PL_STUN_CLASS_REQUEST)
        handle_request(s, conn, &m);
    else if (m.cls == PL_STUN_CLASS_INDICATION && m.method == PL_STUN_METHOD_SEND)
        pl_turn_handle_send(s, conn, &m);
    else
        pl_turn_drop(s, PL_TURN_DROP_UNEXPECTED);
}

/* ---- expiry and stats ---------------------------------------------------------- */

size_t pl_turn_server_tick(pl_turn_server_t *s)
{
    uint64_t now = pl_turn_now_ms(s);
    size_t expired = 0;
    for (size_t i = s->n_list; i-- > 0;) {
        pl_turn_alloc_t *a = s->list[i];
        if (a->expires_ms <= now) {
            pl_turn_alloc_delete(s, a, "expired");
            expired++;
        } else {
            pl_turn_alloc_prune(a, now);
        }
    }
    pl_turn_resv_sweep(s->shared, now);
    pl_turn_tcp_tick(s, now);
    return expired;
}

static const char *transport_name(pl_turn_transport_t t)
{
    return t == PL_TURN_UDP ? "udp" : t == PL_TURN_TCP ? "tcp" : "tls";
}

static void alloc_json(const pl_turn_server_t *s, const pl_turn_alloc_t *a, uint64_t now,
                       pl_buf_t *out)
{
    char name[32], c[PL_SOCKADDR_STRLEN], l[PL_SOCKADDR_STRLEN];
    pl_buf_printf(out, "{\"id\":\"%s\",\"user\":", pl_turn_alloc_name(s, a, name, sizeof name));
    pl_buf_json_str(out, a->user);
    pl_buf_printf(out, ",\"transport\":\"%s\",\"client\":\"%s\",\"server\":\"%s\",\"relay\":[",
                  transport_name(a->conn.transport),
                  pl_sockaddr_str(&a->conn.client, c, sizeof c),
                  pl_sockaddr_str(&a->conn.local, l, sizeof l));
    bool first = true;
    for (int f = 0; f < 2; f++) {
        if (a->relay[f].fd < 0)
            continue;
        pl_buf_printf(out, "%s\"%s\"", first ? "" : ",",
                      pl_sockaddr_str(&a->relay[f].advertised, c, sizeof c));
        first = false;
    }
    size_t peer_conns = 0;
    for (const pl_turn_tcpconn_t *tc = a->tcpconns; tc; tc = tc->next)
        peer_conns++;
    /* RFC 6062: a TCP allocation relays over peer connections. */
    pl_buf_printf(out, "],\"relay_transport\":\"%s\",\"peer_connections\":%zu",
                  a->tcp ? "tcp" : "udp", peer_conns);
    pl_buf_printf(out, ",\"age_s\":%llu,\"expires_in_s\":%llu,\"permissions\":%u,"
                  "\"channels\":%u,\"pkts_c2p\":%llu,\"pkts_p2c\":%llu,\"bytes_c2p\":%llu,"
                  "\"bytes_p2c\":%llu}",
                  (unsigned long long)((now - a->created_ms) / 1000),
                  (unsigned long long)(a->expires_ms > now ? (a->expires_ms - now) / 1000 : 0),
                  a->n_perms, a->n_chans, (unsigned long long)a->pkts[0],
                  (unsigned long long)a->pkts[1], (unsigned long long)a->bytes[0],
                  (unsigned long long)a->bytes[1]);
}

void pl_turn_server_stats_json(const pl_turn_server_t *s, pl_buf_t *out, size_t max)
{
    uint64_t now = pl_turn_now_ms(s);
    pl_buf_puts(out, "[");
    for (size_t i = 0; i < s->n_list && i < max; i++) {
        if (i)
            pl_buf_puts(out, ",");
        alloc_json(s, s->list[i], now, out);
    }
    pl_buf_puts(out, "]");
}
