/* turn_stream_lis.c: the edges of a relay thread's stream side: its SO_REUSEPORT TCP
 * and TLS listeners (the kernel spreads connections over the threads; a connection
 * stays on the thread that accepted it), the relayed UDP sockets of allocations made
 * over TCP/TLS (read only while the client's output has room; the kernel's drops on
 * them are counted from the socket's drop counter: SO_RXQ_OVFL stamps every datagram
 * read, SO_MEMINFO reads it on resume, every second while paused and at close, so
 * drops after the last datagram are counted too), the one-second sweep (idle, handshake and linger timeouts), and
 * the streams object's life cycle.
 *
 * What it does not: connections themselves (turn_stream.c), RFC 6062 (turn_tcprelay.c).
 *
 * Threading: the relay thread; create and destroy on the main thread while the thread
 * is not running. */
#include "relay/turn/turn_stream_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RX_BATCH 32
#define RX_SLOT 2048
#define ACCEPTS_PER_WAKEUP 64
#define RELAY_RCVBUF (512 * 1024)   /* rides out a busy moment of the thread */

/* Receive batch for the relayed sockets of stream allocations. */
struct relay_rx {
    uint8_t slot[RX_BATCH][RX_SLOT];
    struct mmsghdr msgs[RX_BATCH];
    struct iovec iov[RX_BATCH];
    pl_sockaddr_t addr[RX_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(uint32_t))];
        struct cmsghdr align;
    } ctl[RX_BATCH];
};

/* ---- accepting ----------------------------------------------------------------- */

static void accept_one(pl_turn_streams_t *st, int fd, const pl_sockaddr_t *remote, bool tls)
{
    /* A source may hold only so many connections without an allocation: each costs a
     * descriptor for up to the idle timeout and costs the client nothing. */
    char ip[48];
    uint32_t cap = st->srv->set->max_unalloc_per_ip;
    pl_ipaddr_str(remote, ip, sizeof ip);
    if (cap && !pl_counts_take(st->shared->unalloc, ip, cap)) {
        pl_metric_inc(st->srv->shard, st->srv->mid->stream_refused);
        pl_log_info("turn.stream.refused", "thread=%u ip=%s cap=%u", st->idx,
                    PL_LOG_QUOTED(ip), cap);
        close(fd);
        return;
    }
    int one = 1;
    /* Responses and ChannelData are small and latency-bound. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct ssl_st *ssl = NULL;
    if (tls && !(ssl = pl_turn_tls_new(st->srv->set->tls_ctx, fd))) {
        close(fd);
        if (cap)
            pl_counts_put(st->shared->unalloc, ip);
        return;
    }
    pl_turn_transport_t t = tls ? PL_TURN_TLS : PL_TURN_TCP;
    pl_turn_sconn_t *c = pl_turn_sconn_new(st, fd, PL_TURN_SC_CLIENT, t, remote);
    if (!c) {
        pl_turn_tls_free(ssl);
        if (cap)
            pl_counts_put(st->shared->unalloc, ip);
        return;
    }
    if (cap) {
        c->unalloc_counted = true;
        memcpy(c->ip, ip, sizeof c->ip);
    }
    pl_metric_inc(st->srv->shard, st->srv->mid->stream_accepts[t - 1]);
    c->ssl = ssl;
    c->mode = tls ? PL_TURN_SC_HANDSHAKE : PL_TURN_SC_FRAMED;
    pl_turn_sconn_update(c);
}

static void on_accept(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(events);
    pl_turn_lis_t *l = arg;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        pl_sockaddr_t a;
        socklen_t alen = sizeof a;
        int cfd = accept4(fd, &a.sa, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            accept_one(l->st, cfd, &a, l->tls);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Level-triggered: the backlog would wake us forever. Pause until the tick. */
            pl_log_warn("turn.stream.accept_failed", "thread=%u error=%s", l->st->idx,
                        pl_strerror(-errno));
            pl_loop_mod_fd(loop, fd, 0);
            l->paused = true;
        }
        return;
    }
}

/* ---- relayed UDP sockets of stream allocations -------------------------------- */

/* The socket's drop counter reads total: count what is new since the last reading,
 * as back-pressure when reading was paused for the client, else as an overflow (the
 * thread did not keep up). A datagram read late carries an older value: ignored. */
static void note_drops(pl_turn_streams_t *st, pl_turn_relay_t *relay, uint32_t total,
                       bool paused)
{
    uint32_t delta = total - relay->rxq_drops;
    if (delta == 0 || delta > 0x80000000u)
        return;
    relay->rxq_drops = total;
    pl_turn_drop_t why = paused ? PL_TURN_DROP_CLIENT_BACKPRESSURE : PL_TURN_DROP_RELAY_OVERFLOW;
    pl_metric_add(st->srv->shard, st->srv->mid->drops[why], delta);
}

static void count_kernel_drops(pl_turn_streams_t *st, pl_turn_relay_t *relay,
                               struct msghdr *mh)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SO_RXQ_OVFL)
            continue;
        uint32_t total;
        memcpy(&total, CMSG_DATA(cm), sizeof total);
        note_drops(st, relay, total, false);
    }
}

void pl_turn_streams_count_drops(pl_turn_streams_t *st, pl_turn_relay_t *relay, bool paused)
{
    uint32_t mem[SK_MEMINFO_VARS];
    socklen_t len = sizeof mem;
    if (relay->fd >= 0 && getsockopt(relay->fd, SOL_SOCKET, SO_MEMINFO, mem, &len) == 0 &&
        len > SK_MEMINFO_DROPS * sizeof mem[0])
        note_drops(st, relay, mem[SK_MEMINFO_DROPS], paused);
}

void pl_turn_streams_relay_close(pl_turn_streams_t *st, pl_turn_relay_t *relay)
{
    if (relay->fd < 0)
        return;
    if (!relay->alloc->tcp) {
        const pl_turn_sconn_t *c = pl_turn_sconn_find(st, relay->alloc->conn.id);
        pl_turn_streams_count_drops(st, relay, c && c->relays_paused);
    }
    pl_loop_del_fd(st->loop, relay->fd);
    close(relay->fd);
    relay->fd = -1;
    if (relay->hold_fd >= 0) {
        close(relay->hold_fd);
        relay->hold_fd = -1;
    }
}

static void pause_relay(pl_turn_sconn_t *c, pl_turn_relay_t *relay)
{
    pl_loop_mod_fd(c->st->loop, relay->fd, 0);
    if (!c->relays_paused) {
        c->relays_paused = true;
        pl_turn_sconn_count_pause(c);
    }
}

/* Receives a batch, never more than the client's output can take (a framed datagram
 * needs at most RX_SLOT bytes). */
static int relay_batch(pl_turn_streams_t *st, pl_turn_relay_t *relay, pl_turn_sconn_t *c)
{
    struct relay_rx *rx = st->rx;
    size_t room = c->out.len < PL_TURN_OUT_HIGH ? PL_TURN_OUT_HIGH - c->out.len : 0;
    unsigned k = (unsigned)PL_MIN(room / RX_SLOT, (size_t)RX_BATCH);
    if (k == 0) {
        pause_relay(c, relay);
        return 0;
    }
    for (unsigned j = 0; j < k; j++) {
        rx->msgs[j].msg_hdr.msg_namelen = sizeof rx->addr[j];
        rx->msgs[j].msg_hdr.msg_controllen = sizeof rx->ctl[j].buf;
    }
    int n = recvmmsg(relay->fd, rx->msgs, k, MSG_DONTWAIT, NULL);
    for (int j = 0; j < n; j++) {
        count_kernel_drops(st, relay, &rx->msgs[j].msg_hdr);
        if (rx->msgs[j].msg_hdr.msg_flags & MSG_TRUNC) {
            pl_turn_drop(st->srv, PL_TURN_DROP_TRUNCATED);
            continue;
        }
        pl_turn_server_peer_input(st->srv, relay, &rx->addr[j], rx->slot[j] + PL_TURN_HEADROOM,
                                  rx->msgs[j].msg_len);
    }
    return n > 0 && (unsigned)n == k ? n : 0;
}

static void on_relay(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(events);
    pl_turn_relay_t *relay = arg;
    pl_turn_streams_t *st = relay->io_data;
    pl_turn_sconn_t *c = pl_turn_sconn_find(st, relay->alloc->conn.id);
    if (!c || c->dead) {
        pl_loop_mod_fd(loop, fd, 0);    /* the allocation goes with its connection */
        return;
    }
    for (int round = 0; round < 4; round++)
        if (relay_batch(st, relay, c) == 0)
            return;
}

/* 0 when nothing holds addr's TCP port (a socket without SO_REUSEPORT can bind it),
 * else -EADDRINUSE or another -errno. */
static int tcp_port_free(const pl_sockaddr_t *addr)
{
    int fd = pl_net_listen(addr, SOCK_STREAM, PL_LISTEN_V6ONLY, 1);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

int pl_turn_streams_relay_open(pl_turn_streams_t *st, pl_turn_relay_t *relay)
{
    if (relay->alloc->tcp) {
        /* The relayed TCP listener takes SO_REUSEPORT (the connects to peers bind its
         * address too), and so would share its port -- and its incoming peers -- with
         * any other SO_REUSEPORT listener of this user on it: one of parleyd's own
         * listeners, another instance's relayed port. A UDP socket bound without reuse
         * holds the port exclusively, as a UDP allocation's socket does, and the pick
         * moves on to another port when it cannot. */
        int hold = pl_net_listen(&relay->addr, SOCK_DGRAM, PL_LISTEN_V6ONLY, 0);
        if (hold < 0)
            return hold;
        /* ... and a TCP socket bound without SO_REUSEPORT (then closed) finds a
         * listener that holds only TCP, such as parleyd's own TLS listener. */
        int rc = tcp_port_free(&relay->addr);
        if (rc == 0)
            rc = pl_turn_tcprelay_listen(st, relay);
        if (rc < 0) {
            close(hold);
            return rc;
        }
        relay->hold_fd = hold;
        return 0;
    }
    int fd = pl_net_listen(&relay->addr, SOCK_DGRAM, PL_LISTEN_V6ONLY, 0);
    if (fd < 0)
        return fd;
    int one = 1, sz = RELAY_RCVBUF;
    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);     /* capped by rmem_max */
    int rc = pl_loop_add_fd(st->loop, fd, PL_IO_READ, on_relay, relay);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    relay->fd = fd;
    relay->io_data = st;
    relay->rxq_drops = 0;
    return 0;
}

/* ---- the sweep ------------------------------------------------------------------ */

static bool expired(const pl_turn_streams_t *st, const pl_turn_sconn_t *c, uint64_t now)
{
    uint64_t age = now - c->since_ms;
    if (c->mode == PL_TURN_SC_HANDSHAKE)
        return age > PL_TURN_HANDSHAKE_MS;
    if (c->closing)
        return age > PL_TURN_LINGER_MS;
    /* A client connection that made no allocation, or whose allocation ended, and is
     * quiet: nothing will come of it. */
    return c->kind == PL_TURN_SC_CLIENT && c->mode == PL_TURN_SC_FRAMED &&
           age > PL_TURN_IDLE_MS && !pl_turn_alloc_find(st->srv, &c->conn);
}

/* A counted connection that made an allocation (or became an RFC 6062 data connection
 * of one) no longer counts against its address (checked each second). */
static void settle_unalloc(pl_turn_streams_t *st, pl_turn_sconn_t *c)
{
    if (c->unalloc_counted &&
        (c->mode == PL_TURN_SC_RAW || pl_turn_alloc_find(st->srv, &c->conn)))
        pl_turn_sconn_unalloc_release(c);
}

static void on_tick(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(t);
    pl_turn_streams_t *st = arg;
    uint64_t now = pl_loop_now_ms(loop);
    for (uint32_t slot = 0; slot < st->cap; slot++) {
        pl_turn_sconn_t *c = st->conns[slot];
        if (c && !c->dead)
            settle_unalloc(st, c);
        if (c && !c->dead && expired(st, c, now)) {
            pl_turn_sconn_close(c, c->mode == PL_TURN_SC_HANDSHAKE ? "handshake_timeout"
                                   : c->closing ? "linger_timeout" : "idle");
        } else if (c && !c->dead && c->relays_paused) {
            pl_turn_alloc_t *a = pl_turn_alloc_find(st->srv, &c->conn);
            for (int f = 0; a && f < 2; f++)
                pl_turn_streams_count_drops(st, &a->relay[f], true);
        }
    }
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < st->n_lis[k]; i++)
            if (st->lis[k][i].paused && pl_loop_mod_fd(loop, st->lis[k][i].fd, PL_IO_READ) == 0)
                st->lis[k][i].paused = false;
}

/* ---- life cycle ---------------------------------------------------------------- */

static int open_listeners(pl_turn_streams_t *st, int k, const pl_sockaddr_t *addrs, size_t n)
{
    for (size_t i = 0; i < n && i < PL_TURN_MAX_LISTEN; i++) {
        pl_turn_lis_t *l = &st->lis[k][i];
        l->st = st;
        l->tls = k == 1;
        l->fd = pl_net_listen(&addrs[i], SOCK_STREAM, PL_LISTEN_REUSEPORT | PL_LISTEN_V6ONLY, 1024);
        if (l->fd < 0)
            return l->fd;
        st->n_lis[k] = i + 1;
        int rc = pl_net_local_addr(l->fd, &l->addr);
        if (rc == 0)
            rc = pl_loop_add_fd(st->loop, l->fd, PL_IO_READ, on_accept, l);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void init_rx(struct relay_rx *rx)
{
    for (int j = 0; j < RX_BATCH; j++) {
        rx->iov[j].iov_base = rx->slot[j] + PL_TURN_HEADROOM;
        rx->iov[j].iov_len = RX_SLOT - PL_TURN_HEADROOM - PL_TURN_TAILROOM;
        rx->msgs[j].msg_hdr.msg_iov = &rx->iov[j];
        rx->msgs[j].msg_hdr.msg_iovlen = 1;
        rx->msgs[j].msg_hdr.msg_name = &rx->addr[j];
        rx->msgs[j].msg_hdr.msg_control = rx->ctl[j].buf;
    }
}

int pl_turn_streams_create(const pl_turn_streams_cfg_t *cfg, pl_turn_streams_t **out)
{
    pl_turn_streams_t *st = pl_xcalloc(1, sizeof *st);
    st->loop = cfg->loop;
    st->srv = cfg->srv;
    st->shared = cfg->shared;
    st->idx = cfg->idx;
    st->rx = pl_xcalloc(1, sizeof *st->rx);
    init_rx(st->rx);
    pl_timer_init(&st->flush);
    pl_timer_init(&st->tick);
    int rc = open_listeners(st, 0, cfg->listen, cfg->n_listen);
    if (rc == 0)
        rc = open_listeners(st, 1, cfg->tls_listen, cfg->n_tls_listen);
    if (rc != 0) {
        pl_turn_streams_close_all(st);
        pl_turn_streams_destroy(st);
        *out = NULL;
        return rc;
    }
    if (cfg->idx < PL_TURN_MAX_THREADS) {
        st->shared->streams[cfg->idx] = st;
        st->shared->n_streams = PL_MAX(st->shared->n_streams, cfg->idx + 1);
    }
    pl_turn_server_set_tcp_ops(st->srv, &pl_turn_stream_tcp_ops);
    pl_timer_start(st->loop, &st->tick, 1000, 1000, on_tick, st);
    *out = st;
    return 0;
}

void pl_turn_streams_tls_addr(const pl_turn_streams_t *st, size_t i, pl_sockaddr_t *out)
{
    *out = st->lis[1][i].addr;
}

void pl_turn_streams_close_all(pl_turn_streams_t *st)
{
    if (!st || st->closed)
        return;
    st->closed = true;
    pl_timer_stop(st->loop, &st->tick);
    pl_timer_stop(st->loop, &st->flush);
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < st->n_lis[k]; i++) {
            if (st->lis[k][i].fd < 0)
                continue;
            pl_loop_del_fd(st->loop, st->lis[k][i].fd);
            close(st->lis[k][i].fd);
            st->lis[k][i].fd = -1;
        }
    for (uint32_t slot = 0; slot < st->cap; slot++)
        if (st->conns[slot])
            pl_turn_sconn_close(st->conns[slot], "shutdown");
}

void pl_turn_streams_destroy(pl_turn_streams_t *st)
{
    if (!st)
        return;
    PL_ASSERT(st->n == 0);
    free(st->conns);
    free(st->gen);
    free(st->free_slots);
    free(st->rx);
    free(st);
}
