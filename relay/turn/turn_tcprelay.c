/* turn_tcprelay.c: RFC 6062 TCP relaying in the data plane: the listening socket of a
 * TCP allocation's relayed address (peers that connect become ConnectionAttempts),
 * connects to peers from the relayed address, binding a client data connection to a
 * peer data connection, relaying the raw bytes of a bound pair with back-pressure,
 * and handing a ConnectionBind to the thread that owns its CONNECTION-ID.
 *
 * Raw relaying: reading one side appends straight into the other side's output
 * buffer; when that holds PL_TURN_OUT_HIGH bytes the reading stops until it drains
 * below PL_TURN_OUT_LOW (TCP flow control then slows the sender). Nothing is dropped.
 * When one side ends (EOF or error), what was already read is delivered to the other
 * side, then both close (no half-close is carried across).
 *
 * Hand-over: SO_REUSEPORT gives a client's data connection to any thread. A
 * ConnectionBind whose CONNECTION-ID names another thread moves there: the socket, its
 * TLS object and the bytes read so far travel in a message to that thread's loop
 * (the owner of a CONNECTION-ID is in its top 8 bits); this thread forgets them first,
 * so the connection always has exactly one owner.
 *
 * Threading: the relay thread; the hand-over message runs on the receiving thread. */
#include "relay/turn/turn_stream_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PUMP_ROUNDS 8
#define PUMP_CHUNK 16384u

/* ---- the relayed TCP address ------------------------------------------------- */

static void on_relay_accept(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(events);
    pl_turn_relay_t *relay = arg;
    pl_turn_streams_t *st = relay->io_data;
    for (int i = 0; i < 16; i++) {
        pl_sockaddr_t peer;
        socklen_t alen = sizeof peer;
        int cfd = accept4(fd, &peer.sa, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;
        }
        /* RFC 6062 §5.3: accept, then keep only peers with a permission. */
        pl_turn_tcpconn_t *tc = pl_turn_server_tcp_incoming(st->srv, relay, &peer);
        if (!tc) {
            close(cfd);
            continue;
        }
        pl_turn_sconn_t *c = pl_turn_sconn_new(st, cfd, PL_TURN_SC_PEER, PL_TURN_TCP, &peer);
        if (!c) {
            pl_turn_server_tcp_gone(st->srv, tc);
            continue;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->mode = PL_TURN_SC_PENDING;
        c->tc = tc;
        tc->io_data = c;
        pl_turn_sconn_update(c);
    }
}

int pl_turn_tcprelay_listen(pl_turn_streams_t *st, pl_turn_relay_t *relay)
{
    /* SO_REUSEPORT: connects to peers bind the same address and port (RFC 6062 §5.2:
     * the local endpoint is the relayed transport address). */
    int fd = pl_net_listen(&relay->addr, SOCK_STREAM, PL_LISTEN_REUSEPORT | PL_LISTEN_V6ONLY, 64);
    if (fd < 0)
        return fd;
    int rc = pl_loop_add_fd(st->loop, fd, PL_IO_READ, on_relay_accept, relay);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    relay->fd = fd;
    relay->io_data = st;
    return 0;
}

/* ---- the io's RFC 6062 operations ------------------------------------------------- */

/* A socket bound to the relayed address, next to its listening socket. */
static int bound_socket(const pl_sockaddr_t *addr)
{
    int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1, rc = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        (addr->sa.sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, &addr->sa, pl_sockaddr_len(addr)) != 0)
        rc = -errno;
    if (rc != 0) {
        close(fd);
        return rc;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int op_connect(void *ctx, pl_turn_relay_t *relay, pl_turn_tcpconn_t *tc)
{
    pl_turn_streams_t *st = pl_turn_thread_streams(ctx);
    int fd = bound_socket(&relay->addr);
    if (fd < 0)
        return fd;
    if (connect(fd, &tc->peer.sa, pl_sockaddr_len(&tc->peer)) != 0 && errno != EINPROGRESS) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    pl_turn_sconn_t *c = pl_turn_sconn_new(st, fd, PL_TURN_SC_PEER, PL_TURN_TCP, &tc->peer);
    if (!c)
        return -ENOMEM;
    c->mode = PL_TURN_SC_CONNECTING;
    c->tc = tc;
    tc->io_data = c;
    pl_turn_sconn_update(c);
    return 0;
}

void pl_turn_tcprelay_connected(pl_turn_sconn_t *c)
{
    pl_turn_server_t *srv = c->st->srv;
    pl_turn_tcpconn_t *tc = c->tc;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        /* The core answers 447 and frees tc: detach it so closing does not report it. */
        c->tc = NULL;
        if (tc)
            tc->io_data = NULL;
        pl_turn_sconn_close(c, "connect_failed");
        if (tc)
            pl_turn_server_tcp_connected(srv, tc, -err);
        return;
    }
    c->mode = PL_TURN_SC_PENDING;
    c->since_ms = pl_loop_now_ms(c->st->loop);
    if (tc)
        pl_turn_server_tcp_connected(srv, tc, 0);
}

static int op_bind(void *ctx, pl_turn_tcpconn_t *tc, const pl_turn_conn_t *data_conn)
{
    pl_turn_streams_t *st = pl_turn_thread_streams(ctx);
    pl_turn_sconn_t *p = tc->io_data;
    pl_turn_sconn_t *d = pl_turn_sconn_find(st, data_conn->id);
    if (!p || p->dead || p->mode != PL_TURN_SC_PENDING || !d || d->dead ||
        d->mode != PL_TURN_SC_FRAMED)
        return -ENOTCONN;
    d->mode = PL_TURN_SC_RAW;
    p->mode = PL_TURN_SC_RAW;
    d->link = p;
    p->link = d;
    /* The peer's bytes, buffered by the kernel until now, may flow (after the
     * success response, which is already in d's output). */
    pl_turn_sconn_update(p);
    return 0;
}

static void op_close(void *ctx, pl_turn_tcpconn_t *tc)
{
    PL_UNUSED(ctx);
    pl_turn_sconn_t *p = tc->io_data;
    if (!p)
        return;
    tc->io_data = NULL;
    p->tc = NULL;
    pl_turn_sconn_t *d = p->link;
    if (d) {
        d->link = NULL;
        p->link = NULL;
        pl_turn_sconn_close(d, "allocation_gone");
    }
    pl_turn_sconn_close(p, "allocation_gone");
}

const pl_turn_tcp_ops_t pl_turn_stream_tcp_ops = {op_connect, op_bind, op_close};

/* ---- raw relaying ------------------------------------------------------------------ */

/* c reached EOF: deliver what it still has to write, then close (its link follows). */
static void pair_end(pl_turn_sconn_t *c)
{
    if (c->out.len == 0) {
        pl_turn_sconn_close(c, "eof");
        return;
    }
    c->closing = true;
    c->since_ms = pl_loop_now_ms(c->st->loop);
    pl_turn_sconn_update(c);
}

/* Raw bytes count as relayed bytes of the allocation (no packets: a stream has none). */
static void count_bytes(const pl_turn_sconn_t *c, size_t n)
{
    bool from_peer = c->kind == PL_TURN_SC_PEER;
    const pl_turn_sconn_t *peer = from_peer ? c : c->link;
    int dir = from_peer ? PL_TURN_DIR_P2C : PL_TURN_DIR_C2P;
    pl_turn_server_t *srv = c->st->srv;
    pl_metric_add(srv->shard, srv->mid->bytes[dir], n);
    if (peer && peer->tc)
        peer->tc->alloc->bytes[dir] += n;
}

void pl_turn_tcprelay_pump(pl_turn_sconn_t *c)
{
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        pl_turn_sconn_t *d = c->link;
        if (c->dead || c->closing || c->read_paused || !d || d->dead)
            return;
        if (d->closing) {
            /* d only flushes now; c follows it when it closes. Level-triggered epoll
             * must not keep announcing c's unread bytes meanwhile. */
            c->read_paused = true;
            pl_turn_sconn_update(c);
            return;
        }
        if (d->out.len >= PL_TURN_OUT_HIGH) {
            c->read_paused = true;
            pl_turn_sconn_count_pause(c);
            pl_turn_sconn_update(c);
            return;
        }
        size_t room = pl_turn_sbuf_reserve(&d->out, PUMP_CHUNK, PL_TURN_OUT_HIGH);
        ssize_t n = pl_turn_sconn_read(c, pl_turn_sbuf_tail(&d->out), room);
        if (n == -EAGAIN)
            return;
        if (n == 0) {
            pair_end(c);
            return;
        }
        if (n < 0) {
            pl_turn_sconn_close(c, "read_error");
            return;
        }
        pl_turn_sbuf_commit(&d->out, (size_t)n);
        pl_turn_sconn_dirty(d);
        count_bytes(c, (size_t)n);
        if ((size_t)n < room && !c->ssl)
            return;
    }
    if (c->ssl) {
        c->read_again = true;
        pl_turn_sconn_dirty(c);
    }
}

/* ---- ConnectionBind hand-over ------------------------------------------------------ */

typedef struct handover_msg {
    pl_msg_t msg;
    pl_turn_streams_t *to;
    int fd;
    struct ssl_st *ssl;
    pl_turn_transport_t transport;
    pl_sockaddr_t remote;
    size_t len;
    uint8_t data[];
} handover_msg_t;

static void handover_fn(pl_loop_t *loop, pl_msg_t *msg)
{
    handover_msg_t *m = PL_CONTAINER_OF(msg, handover_msg_t, msg);
    if (pl_loop_is_stopping(loop) || m->to->closed) {
        pl_turn_tls_free(m->ssl);
        close(m->fd);
    } else {
        pl_turn_sconn_adopt(m->to, m->fd, m->ssl, m->transport, &m->remote, m->data, m->len);
    }
    free(m);
}

/* The owner thread's streams when frame is a ConnectionBind for a connection another
 * thread holds, else NULL (handled here; the core answers). */
static pl_turn_streams_t *bind_owner(const pl_turn_sconn_t *c, const uint8_t *frame, size_t len)
{
    static const uint16_t type = 0x000B;    /* ConnectionBind request, RFC 6062 §6.1 */
    if (len < PL_STUN_HEADER_LEN || pl_stun_rd16(frame) != type)
        return NULL;
    pl_stun_msg_t m;
    uint32_t cid;
    if (pl_stun_parse(&m, frame, len) != 0 ||
        pl_stun_get_u32(&m, PL_STUN_ATTR_CONNECTION_ID, &cid) != 0)
        return NULL;
    const pl_turn_shared_t *sh = c->st->shared;
    unsigned owner = pl_turn_cid_thread(cid);
    if (owner == c->st->idx || owner >= sh->n_streams || owner >= PL_TURN_MAX_THREADS)
        return NULL;
    /* Only a fresh connection moves: nothing queued for it, no allocation on it. */
    if (c->out.len > 0 || pl_turn_alloc_find(c->st->srv, &c->conn))
        return NULL;
    return sh->streams[owner];
}

bool pl_turn_tcprelay_handover(pl_turn_sconn_t *c, const uint8_t *frame, size_t len)
{
    pl_turn_streams_t *to = bind_owner(c, frame, len);
    if (!to)
        return false;
    size_t n = c->in.len;               /* the frame is at the head of c->in */
    handover_msg_t *m = pl_xmalloc(sizeof *m + n);
    m->msg.next = NULL;
    m->msg.fn = handover_fn;
    m->to = to;
    m->fd = c->fd;
    m->ssl = c->ssl;
    m->transport = c->conn.transport;
    m->remote = c->conn.client;
    m->len = n;
    memcpy(m->data, pl_turn_sbuf_head(&c->in), n);
    if (PL_LOG_DEBUG_ON()) {
        char a[PL_SOCKADDR_STRLEN];
        pl_log_debug("turn.stream.handover", "from=%u to=%u remote=%s", c->st->idx, to->idx,
                     pl_sockaddr_str(&m->remote, a, sizeof a));
    }
    pl_metric_inc(c->st->srv->shard, c->st->srv->mid->stream_handovers);
    pl_turn_sconn_detach(c);    /* c stays allocated: the caller holds it (busy) */
    pl_loop_post(to->loop, &m->msg);
    return true;
}
