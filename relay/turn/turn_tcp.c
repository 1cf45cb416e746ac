/* turn_tcp.c: the core's side of TCP/TLS clients and of RFC 6062 TCP relaying:
 * the checks on an Allocate asking for TCP (§5.1), Connect (§5.2), incoming peer
 * connections with their ConnectionAttempt indication (§5.3), ConnectionBind (§5.4),
 * the 30-second timers, CONNECTION-ID allocation and lookup, and deleting the
 * allocation of a client connection that closed.
 *
 * CONNECTION-IDs carry the relay thread in their top 8 bits, so a ConnectionBind that
 * the kernel handed to another thread's SO_REUSEPORT listener can be passed to the
 * thread that owns the connection (turn_stream.c). The low 24 bits are random; a
 * ConnectionBind must also be signed by the allocation's user, so a guessed id gives
 * nothing.
 *
 * What it does not: sockets. The io connects, accepts and relays the bytes of a bound
 * pair (turn_tcprelay.c); this file decides and answers.
 *
 * Threading: the server's thread. */
#include "relay/turn/turn_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PL_TURN_MAX_TCPCONNS 64     /* peer data connections per allocation */

/* CONNECTION-ID -> connection, open addressing with backward-shift deletion. */
struct pl_turn_tcp {
    pl_turn_tcpconn_t **tab;
    size_t cap, n;
};

/* ---- the CONNECTION-ID table ----------------------------------------------------- */

static size_t cid_home(uint32_t cid, size_t mask)
{
    return (size_t)(cid * 0x9E3779B1u) & mask;
}

static pl_turn_tcpconn_t *cid_find(const pl_turn_server_t *s, uint32_t cid)
{
    const struct pl_turn_tcp *t = s->tcp;
    if (!t || t->cap == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = cid_home(cid, mask); t->tab[i]; i = (i + 1) & mask)
        if (t->tab[i]->cid == cid)
            return t->tab[i];
    return NULL;
}

static void cid_put(pl_turn_tcpconn_t **tab, size_t cap, pl_turn_tcpconn_t *tc)
{
    size_t i = cid_home(tc->cid, cap - 1);
    while (tab[i])
        i = (i + 1) & (cap - 1);
    tab[i] = tc;
}

static void cid_insert(pl_turn_server_t *s, pl_turn_tcpconn_t *tc)
{
    if (!s->tcp)
        s->tcp = pl_xcalloc(1, sizeof *s->tcp);
    struct pl_turn_tcp *t = s->tcp;
    if ((t->n + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        pl_turn_tcpconn_t **tab = pl_xcalloc(cap, sizeof *tab);
        for (size_t i = 0; i < t->cap; i++)
            if (t->tab[i])
                cid_put(tab, cap, t->tab[i]);
        free(t->tab);
        t->tab = tab;
        t->cap = cap;
    }
    cid_put(t->tab, t->cap, tc);
    t->n++;
}

static void cid_remove(pl_turn_server_t *s, const pl_turn_tcpconn_t *tc)
{
    struct pl_turn_tcp *t = s->tcp;
    size_t mask = t->cap - 1, i = cid_home(tc->cid, mask);
    while (t->tab[i] != tc)
        i = (i + 1) & mask;
    t->tab[i] = NULL;
    t->n--;
    /* Backward shift: move later members of the probe run into the hole when their
     * home slot does not lie (cyclically) between the hole and their position. */
    for (size_t j = (i + 1) & mask; t->tab[j]; j = (j + 1) & mask) {
        size_t h = cid_home(t->tab[j]->cid, mask);
        bool between = i <= j ? (h > i && h <= j) : (h > i || h <= j);
        if (!between) {
            t->tab[i] = t->tab[j];
            t->tab[j] = NULL;
            i = j;
        }
    }
}

static uint32_t cid_new(pl_turn_server_t *s)
{
    for (;;) {
        s->rng ^= s->rng << 13, s->rng ^= s->rng >> 17, s->rng ^= s->rng << 5;
        uint32_t cid = (uint32_t)s->thread_idx << 24 | (s->rng & 0xFFFFFFu);
        if ((cid & 0xFFFFFFu) != 0 && !cid_find(s, cid))
            return cid;
    }
}

/* ---- connection records -------------------------------------------------------- */

static size_t count_conns(const pl_turn_alloc_t *a)
{
    size_t n = 0;
    for (const pl_turn_tcpconn_t *tc = a->tcpconns; tc; tc = tc->next)
        n++;
    return n;
}

static pl_turn_tcpconn_t *tc_new(pl_turn_server_t *s, pl_turn_alloc_t *a, int fam_idx,
                                 const pl_sockaddr_t *peer, pl_turn_tc_state_t state)
{
    pl_turn_tcpconn_t *tc = pl_xcalloc(1, sizeof *tc);
    tc->cid = cid_new(s);
    tc->state = (uint8_t)state;
    tc->fam_idx = (uint8_t)fam_idx;
    tc->peer = *peer;
    tc->alloc = a;
    tc->deadline_ms = pl_turn_now_ms(s) + PL_TURN_TCP_TIMEOUT_MS;
    tc->next = a->tcpconns;
    a->tcpconns = tc;
    cid_insert(s, tc);
    pl_metric_gauge_add(s->shard, s->mid->tcp_peers, 1);
    return tc;
}

static void tc_free(pl_turn_server_t *s, pl_turn_tcpconn_t *tc)
{
    pl_turn_tcpconn_t **pp = &tc->alloc->tcpconns;
    while (*pp != tc)
        pp = &(*pp)->next;
    *pp = tc->next;
    cid_remove(s, tc);
    pl_metric_gauge_add(s->shard, s->mid->tcp_peers, -1);
    free(tc);
}

static void log_tc(pl_turn_server_t *s, const pl_turn_tcpconn_t *tc, const char *event)
{
    if (!PL_LOG_DEBUG_ON())
        return;
    char name[32], p[PL_SOCKADDR_STRLEN];
    pl_log_debug(event, "alloc=%s cid=%08x peer=%s", pl_turn_alloc_name(s, tc->alloc, name,
                 sizeof name), tc->cid, pl_sockaddr_str(&tc->peer, p, sizeof p));
}

/* ---- messages the core sends on its own -------------------------------------- */

/* Answers a Connect after the fact (RFC 6062 §5.2): success with CONNECTION-ID, or
 * code, signed with the key of the request. */
static void answer_connect(pl_turn_server_t *s, const pl_turn_tcpconn_t *tc, int code)
{
    const pl_turn_deferred_t *d = &tc->reply;
    pl_stun_builder_t b;
    uint8_t cls = code ? PL_STUN_CLASS_ERROR : PL_STUN_CLASS_SUCCESS;
    pl_stun_build_init(&b, s->tx, sizeof s->tx, pl_stun_type(PL_STUN_METHOD_CONNECT, cls), d->tid);
    if (code)
        pl_stun_add_error(&b, code, NULL);
    else
        pl_stun_add_u32(&b, PL_STUN_ATTR_CONNECTION_ID, tc->cid);
    if (s->set->software)
        pl_stun_add_str(&b, PL_STUN_ATTR_SOFTWARE, s->set->software);
    if (d->sha256)
        pl_stun_add_integrity_sha256(&b, d->key.bytes, d->key.len);
    else
        pl_stun_add_integrity(&b, d->key.bytes, d->key.len);
    if (d->fingerprint)
        pl_stun_add_fingerprint(&b);
    int n = pl_stun_build_finish(&b);
    if (n < 0 || s->io->send_client(s->io_ctx, &tc->alloc->conn, s->tx, (size_t)n) != 0) {
        pl_turn_drop(s, PL_TURN_DROP_SEND_FAILED);
        return;
    }
    pl_metric_inc(s->shard, s->mid->responses[pl_turn_code_index(code)]);
}

/* RFC 6062 §5.3: tells the client about a peer that connected to its relayed address. */
static void send_attempt(pl_turn_server_t *s, const pl_turn_tcpconn_t *tc)
{
    uint8_t tid[PL_STUN_TID_LEN];
    for (size_t i = 0; i < sizeof tid; i += 4) {
        s->rng ^= s->rng << 13, s->rng ^= s->rng >> 17, s->rng ^= s->rng << 5;
        memcpy(tid + i, &s->rng, 4);
    }
    pl_stun_builder_t b;
    pl_stun_build_init(&b, s->tx, sizeof s->tx,
                       pl_stun_type(PL_STUN_METHOD_CONNECTION_ATTEMPT, PL_STUN_CLASS_INDICATION),
                       tid);
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_PEER_ADDRESS, &tc->peer);
    pl_stun_add_u32(&b, PL_STUN_ATTR_CONNECTION_ID, tc->cid);
    int n = pl_stun_build_finish(&b);
    if (n < 0 || s->io->send_client(s->io_ctx, &tc->alloc->conn, s->tx, (size_t)n) != 0)
        pl_turn_drop(s, PL_TURN_DROP_SEND_FAILED);
}

/* ---- requests ------------------------------------------------------------------ */

int pl_turn_tcp_allocate_check(const pl_turn_server_t *s, const pl_turn_conn_t *conn,
                               const pl_stun_msg_t *m)
{
    if (!s->tcp_ops)
        return 442;
    /* RFC 6062 §5.1: TCP relaying needs a TCP/TLS control connection, and the
     * UDP-only attributes make no sense for it. */
    if (conn->transport == PL_TURN_UDP || pl_stun_has(m, PL_STUN_ATTR_DONT_FRAGMENT) ||
        pl_stun_has(m, PL_STUN_ATTR_EVEN_PORT) || pl_stun_has(m, PL_STUN_ATTR_RESERVATION_TOKEN))
        return 400;
    return 0;
}

/* RFC 6062 §5.2 checks. Returns 0 and the peer, or the error code. */
static int check_connect(pl_turn_server_t *s, pl_turn_alloc_t *a, const pl_stun_msg_t *m,
                         pl_sockaddr_t *peer)
{
    if (!a->tcp || pl_stun_get_addr(m, PL_STUN_ATTR_XOR_PEER_ADDRESS, peer) != 0 ||
        pl_sockaddr_port(peer) == 0)
        return 400;
    int f = pl_turn_fam_idx(peer);
    if (f < 0 || a->relay[f].fd < 0)
        return 443;
    /* Policy first (403 like CreatePermission), then the permission the client must
     * have installed: a Connect reaches only peers a permission names (RFC 8656 §9). */
    if (!pl_turn_peer_allowed(s->set, peer) || !pl_turn_perm_find(a, peer, pl_turn_now_ms(s)))
        return 403;
    /* A Connect in progress, pending or bound to the same peer address: 446. */
    for (const pl_turn_tcpconn_t *tc = a->tcpconns; tc; tc = tc->next)
        if (pl_sockaddr_equal(&tc->peer, peer))
            return 446;
    if (count_conns(a) >= PL_TURN_MAX_TCPCONNS)
        return 508;
    return 0;
}

void pl_turn_handle_connect(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                            const pl_stun_msg_t *m, const pl_turn_auth_t *auth)
{
    pl_turn_alloc_t *a = pl_turn_alloc_for_request(s, conn, m, auth);
    if (!a)
        return;
    pl_sockaddr_t peer;
    int code = check_connect(s, a, m, &peer);
    if (code != 0) {
        pl_turn_reply_error(s, conn, m, auth, code);
        return;
    }
    int f = pl_turn_fam_idx(&peer);
    pl_turn_tcpconn_t *tc = tc_new(s, a, f, &peer, PL_TURN_TC_CONNECTING);
    memcpy(tc->reply.tid, pl_stun_msg_tid(m), PL_STUN_TID_LEN);
    tc->reply.key = auth->key;
    tc->reply.sha256 = auth->sha256;
    tc->reply.fingerprint = m->fp_idx >= 0;
    int rc = s->tcp_ops->connect(s->io_ctx, &a->relay[f], tc);
    if (rc != 0) {
        tc_free(s, tc);
        pl_turn_reply_error(s, conn, m, auth, 447);
        return;
    }
    log_tc(s, tc, "turn.tcp.connecting");
}

/* RFC 6062 §5.4 checks. Returns 0 and the connection, or the error code. */
static int check_bind(pl_turn_server_t *s, const pl_turn_conn_t *conn, const pl_stun_msg_t *m,
                      const pl_turn_auth_t *auth, pl_turn_tcpconn_t **out)
{
    uint32_t cid;
    if (conn->transport == PL_TURN_UDP ||
        pl_stun_get_u32(m, PL_STUN_ATTR_CONNECTION_ID, &cid) != 0)
        return 400;
    pl_turn_tcpconn_t *tc = cid_find(s, cid);
    if (!tc || tc->state != PL_TURN_TC_PENDING)
        return 400;
    /* The same credentials as the control connection (RFC 6062 §4.3, §5.4). */
    if (strcmp(tc->alloc->user, auth->user) != 0) {
        pl_metric_inc(s->shard, s->mid->authfail[PL_TURN_AUTH_WRONG_CREDENTIALS]);
        return 441;
    }
    /* A control connection (one with an allocation) cannot become a data connection. */
    if (pl_turn_alloc_find(s, conn))
        return 400;
    *out = tc;
    return 0;
}

void pl_turn_handle_connection_bind(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                    const pl_stun_msg_t *m, const pl_turn_auth_t *auth)
{
    pl_turn_tcpconn_t *tc = NULL;
    int code = check_bind(s, conn, m, auth, &tc);
    if (code != 0) {
        pl_turn_reply_error(s, conn, m, auth, code);
        return;
    }
    /* The success response goes out first; everything after it on this connection
     * is the peer's bytes. */
    pl_turn_reply_t r;
    pl_turn_reply_start(s, &r, m, PL_STUN_CLASS_SUCCESS, auth);
    pl_turn_reply_send(s, &r, conn, 0);
    if (s->tcp_ops->bind(s->io_ctx, tc, conn) != 0) {
        s->tcp_ops->close(s->io_ctx, tc);
        tc_free(s, tc);
        return;
    }
    tc->state = PL_TURN_TC_BOUND;
    tc->data_conn_id = conn->id;
    log_tc(s, tc, "turn.tcp.bound");
}

/* ---- what the io reports ------------------------------------------------------- */

void pl_turn_server_conn_closed(pl_turn_server_t *s, const pl_turn_conn_t *conn)
{
    pl_turn_alloc_t *a = pl_turn_alloc_find(s, conn);
    if (a)
        pl_turn_alloc_delete(s, a, "connection_closed");
}

void pl_turn_server_tcp_connected(pl_turn_server_t *s, pl_turn_tcpconn_t *tc, int err)
{
    if (tc->state != PL_TURN_TC_CONNECTING)
        return;
    if (err != 0) {
        log_tc(s, tc, "turn.tcp.connect_failed");
        answer_connect(s, tc, 447);
        tc_free(s, tc);
        return;
    }
    tc->state = PL_TURN_TC_PENDING;
    tc->deadline_ms = pl_turn_now_ms(s) + PL_TURN_TCP_TIMEOUT_MS;
    answer_connect(s, tc, 0);
    log_tc(s, tc, "turn.tcp.connected");
}

pl_turn_tcpconn_t *pl_turn_server_tcp_incoming(pl_turn_server_t *s, pl_turn_relay_t *relay,
                                               const pl_sockaddr_t *peer)
{
    pl_turn_alloc_t *a = relay->alloc;
    /* RFC 6062 §5.3: without a permission for the peer, close it right away. */
    if (!pl_turn_perm_find(a, peer, pl_turn_now_ms(s))) {
        pl_turn_drop(s, PL_TURN_DROP_NO_PERMISSION);
        return NULL;
    }
    if (count_conns(a) >= PL_TURN_MAX_TCPCONNS) {
        pl_turn_drop(s, PL_TURN_DROP_RATE_LIMITED);
        return NULL;
    }
    pl_turn_tcpconn_t *tc = tc_new(s, a, relay->fam_idx, peer, PL_TURN_TC_PENDING);
    send_attempt(s, tc);
    log_tc(s, tc, "turn.tcp.incoming");
    return tc;
}

void pl_turn_server_tcp_gone(pl_turn_server_t *s, pl_turn_tcpconn_t *tc)
{
    log_tc(s, tc, "turn.tcp.closed");
    tc_free(s, tc);
}

/* ---- allocation life cycle and timers ------------------------------------------ */

void pl_turn_tcp_alloc_deleted(pl_turn_server_t *s, pl_turn_alloc_t *a)
{
    while (a->tcpconns) {
        pl_turn_tcpconn_t *tc = a->tcpconns;
        s->tcp_ops->close(s->io_ctx, tc);
        tc_free(s, tc);
    }
}

void pl_turn_tcp_tick(pl_turn_server_t *s, uint64_t now_ms)
{
    if (!s->tcp || s->tcp->n == 0)
        return;
    for (size_t i = 0; i < s->n_list; i++) {
        pl_turn_tcpconn_t *next;
        for (pl_turn_tcpconn_t *tc = s->list[i]->tcpconns; tc; tc = next) {
            next = tc->next;
            if (tc->state == PL_TURN_TC_BOUND || tc->deadline_ms > now_ms)
                continue;
            /* RFC 6062 §5.2: a connect that takes 30 s has failed (447); §5.3/§5.4:
             * an unbound peer connection is closed after 30 s. */
            log_tc(s, tc, tc->state == PL_TURN_TC_CONNECTING ? "turn.tcp.connect_timeout"
                                                             : "turn.tcp.bind_timeout");
            s->tcp_ops->close(s->io_ctx, tc);
            if (tc->state == PL_TURN_TC_CONNECTING)
                answer_connect(s, tc, 447);
            tc_free(s, tc);
        }
    }
}

void pl_turn_server_set_tcp_ops(pl_turn_server_t *s, const pl_turn_tcp_ops_t *ops)
{
    s->tcp_ops = ops;
}

void pl_turn_tcp_destroy(pl_turn_server_t *s)
{
    if (!s->tcp)
        return;
    free(s->tcp->tab);
    free(s->tcp);
    s->tcp = NULL;
}
