/* turn_relay.c: a relay thread: one pl_loop, one SO_REUSEPORT UDP socket per listen
 * address (the kernel spreads clients over the threads by 4-tuple hash, so a client's
 * packets always reach the thread that holds its allocation), the relayed sockets of
 * the thread's allocations, and the I/O interface the protocol core runs on.
 *
 * Packet path, no malloc and no lock:
 *   client -> peer: recvmmsg (batch of PL_TURN_BATCH) on the listener into the
 *     thread's receive buffers; the core parses ChannelData and sends with one
 *     sendto on the allocation's relayed socket.
 *   peer -> client: recvmmsg on the relayed socket straight into free slots of the
 *     listener's transmit batch, PL_TURN_HEADROOM bytes in; the core frames the
 *     ChannelData header (or Data indication) in front of the payload and hands the
 *     same pointer back to send_client, which queues it without a copy. Responses
 *     built elsewhere are copied into a slot. The batch goes out with sendmmsg at the
 *     start of the next loop iteration (a zero-delay timer) or when it is full, so
 *     datagrams of many allocations share one system call.
 *
 * TCP/TLS clients and RFC 6062 live in the thread's streams object (turn_stream*.c,
 * turn_tcprelay.c): send_client and relay_open of their allocations go there.
 *
 * Wildcard listeners (0.0.0.0, ::) learn each datagram's destination address with
 * IP_PKTINFO / IPV6_RECVPKTINFO and send from it, so replies and relayed data leave
 * from the address the client used (a multi-homed host would otherwise answer from
 * the kernel's choice, which the client's NAT or connected socket drops).
 *
 * Threading: everything runs on the relay thread, except create (main thread, before
 * the loop runs), destroy (main thread, after joining) and the post/snapshot calls. */
#include "relay/turn/turn_int.h"
#include "relay/turn/turn_stream_int.h"
#include "core/pl_log.h"
#include "core/pl_loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PL_TURN_BATCH 32
#define PL_TURN_SLOT 2048           /* bytes per datagram buffer, headroom included */
#define PL_TURN_SOCKBUF (4 << 20)   /* listener socket buffers (capped by rmem_max) */
#define PL_TURN_STATS_MAX 1000      /* allocations listed per thread in /stats */

/* Room for one IP_PKTINFO or IPV6_PKTINFO control message. */
typedef union pktinfo_cmsg {
    char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
    struct cmsghdr align;
} pktinfo_cmsg_t;

typedef struct listener {
    struct pl_turn_thread *th;
    int fd;
    bool pktinfo;                           /* wildcard: per-datagram local address */
    pl_sockaddr_t addr;                     /* bound address */
    uint8_t (*slots)[PL_TURN_SLOT];         /* owned: PL_TURN_BATCH transmit buffers */
    unsigned n_slots;                       /* slots handed out since the last flush */
    unsigned n_msgs;                        /* datagrams queued */
    struct mmsghdr msgs[PL_TURN_BATCH];
    struct iovec iov[PL_TURN_BATCH];
    pl_sockaddr_t dst[PL_TURN_BATCH];
    pktinfo_cmsg_t ctl[PL_TURN_BATCH];      /* pktinfo: source address per datagram */
    /* Relay reads for this listener's clients: descriptor k receives into slot k. */
    struct mmsghdr prx_msgs[PL_TURN_BATCH];
    struct iovec prx_iov[PL_TURN_BATCH];
    pl_sockaddr_t prx_addr[PL_TURN_BATCH];
} listener_t;

struct pl_turn_thread {
    unsigned idx;
    pl_loop_t *loop;
    pthread_t tid;
    bool started, joined;
    pl_turn_streams_t *streams;             /* TCP/TLS clients, RFC 6062 */
    pl_turn_server_t *srv;
    pl_turn_shared_t *shared;
    pl_turn_settings_t *set;                /* a reference, for the server's creation */
    listener_t lis[PL_TURN_MAX_LISTEN];
    size_t n_lis;
    pl_timer_t tick, flush;
    /* Receive batch for listener reads, and peer addresses for relay reads. */
    uint8_t (*rx)[PL_TURN_SLOT];
    struct mmsghdr rx_msgs[PL_TURN_BATCH];
    struct iovec rx_iov[PL_TURN_BATCH];
    pl_sockaddr_t rx_addr[PL_TURN_BATCH];
    pktinfo_cmsg_t rx_ctl[PL_TURN_BATCH];       /* destination addresses (wildcard) */
    int rx_pktinfo;                             /* rx_msgs set up for: -1 none, 0, 1 */
    struct mmsghdr prx_msgs[PL_TURN_BATCH];     /* relay reads, stream clients */
    struct iovec prx_iov[PL_TURN_BATCH];
    pl_sockaddr_t prx_addr[PL_TURN_BATCH];
    /* /stats snapshot, published once a second. */
    pthread_mutex_t snap_lock;
    pl_buf_t snap;
    size_t snap_count;
};

typedef struct settings_msg {
    pl_msg_t msg;
    pl_turn_thread_t *th;
    pl_turn_settings_t *set;
} settings_msg_t;

/* ---- transmit batch ------------------------------------------------------------ */

static void flush(listener_t *l)
{
    unsigned done = 0;
    while (done < l->n_msgs) {
        int n = sendmmsg(l->fd, l->msgs + done, l->n_msgs - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* The first datagram failed (unreachable, buffer full): skip it. */
            pl_turn_drop(l->th->srv, PL_TURN_DROP_SEND_FAILED);
            n = 1;
        }
        done += (unsigned)n;
    }
    l->n_msgs = 0;
    l->n_slots = 0;
}

static void on_flush(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(t);
    pl_turn_thread_t *th = arg;
    for (size_t i = 0; i < th->n_lis; i++)
        if (th->lis[i].n_msgs)
            flush(&th->lis[i]);
}

static void arm_flush(pl_turn_thread_t *th)
{
    if (!pl_timer_is_armed(&th->flush))
        pl_timer_start(th->loop, &th->flush, 0, 0, on_flush, th);
}

/* Sends the datagram from src: the address the client sent to (wildcard listeners). */
static void set_source(struct msghdr *mh, pktinfo_cmsg_t *ctl, const pl_sockaddr_t *src)
{
    memset(ctl, 0, sizeof *ctl);
    mh->msg_control = ctl->buf;
    mh->msg_controllen = sizeof ctl->buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(mh);
    if (src->sa.sa_family == AF_INET) {
        struct in_pktinfo pi = {.ipi_spec_dst = src->in4.sin_addr};
        cm->cmsg_level = IPPROTO_IP;
        cm->cmsg_type = IP_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof pi);
        memcpy(CMSG_DATA(cm), &pi, sizeof pi);
        mh->msg_controllen = CMSG_SPACE(sizeof pi);
    } else {
        struct in6_pktinfo pi = {.ipi6_addr = src->in6.sin6_addr};
        cm->cmsg_level = IPPROTO_IPV6;
        cm->cmsg_type = IPV6_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof pi);
        memcpy(CMSG_DATA(cm), &pi, sizeof pi);
        mh->msg_controllen = CMSG_SPACE(sizeof pi);
    }
}

/* The destination address of a datagram received on a wildcard listener (port kept). */
static void local_from_pktinfo(struct msghdr *mh, pl_sockaddr_t *local)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO &&
            local->sa.sa_family == AF_INET) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof pi);
            local->in4.sin_addr = pi.ipi_addr;
        } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO &&
                   local->sa.sa_family == AF_INET6) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof pi);
            local->in6.sin6_addr = pi.ipi6_addr;
        }
    }
}

static int io_send_client(void *ctx, const pl_turn_conn_t *conn, const uint8_t *buf, size_t len)
{
    pl_turn_thread_t *th = ctx;
    if (conn->transport != PL_TURN_UDP)
        return pl_turn_streams_send(th->streams, conn, buf, len);
    if (conn->id >= th->n_lis)
        return -ENOTSUP;
    listener_t *l = &th->lis[conn->id];
    const uint8_t *base = l->slots[0], *end = l->slots[PL_TURN_BATCH];
    const uint8_t *p = buf;
    if (p < base || p >= end) {
        /* Not one of our slots: copy into the next free one. */
        if (len > PL_TURN_SLOT)
            return -EMSGSIZE;
        if (l->n_slots == PL_TURN_BATCH)
            flush(l);
        memcpy(l->slots[l->n_slots], buf, len);
        p = l->slots[l->n_slots++];
    }
    unsigned k = l->n_msgs++;
    l->dst[k] = conn->client;
    l->iov[k].iov_base = (void *)(uintptr_t)p;
    l->iov[k].iov_len = len;
    l->msgs[k].msg_hdr.msg_name = &l->dst[k];
    l->msgs[k].msg_hdr.msg_namelen = pl_sockaddr_len(&conn->client);
    if (l->pktinfo)
        set_source(&l->msgs[k].msg_hdr, &l->ctl[k], &conn->local);
    arm_flush(th);
    if (l->n_msgs == PL_TURN_BATCH)
        flush(l);
    return 0;
}

/* ---- the other I/O operations --------------------------------------------------- */

static uint64_t io_now_ms(void *ctx)
{
    return pl_loop_now_ms(((pl_turn_thread_t *)ctx)->loop);
}

static uint64_t io_wall_s(void *ctx)
{
    PL_UNUSED(ctx);
    return pl_now_wall_ms() / 1000;
}

static void on_relay(pl_loop_t *loop, int fd, uint32_t events, void *arg);

static int io_relay_open(void *ctx, pl_turn_relay_t *relay)
{
    pl_turn_thread_t *th = ctx;
    if (relay->alloc->conn.transport != PL_TURN_UDP)
        return pl_turn_streams_relay_open(th->streams, relay);
    int fd = pl_net_listen(&relay->addr, SOCK_DGRAM, PL_LISTEN_V6ONLY, 0);
    if (fd < 0)
        return fd;
    int rc = pl_loop_add_fd(th->loop, fd, PL_IO_READ, on_relay, relay);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    relay->fd = fd;
    relay->io_data = th;
    return 0;
}

static void io_relay_close(void *ctx, pl_turn_relay_t *relay)
{
    pl_turn_thread_t *th = ctx;
    if (relay->fd < 0)
        return;
    if (relay->alloc->conn.transport != PL_TURN_UDP) {
        pl_turn_streams_relay_close(th->streams, relay);
        return;
    }
    pl_loop_del_fd(th->loop, relay->fd);
    close(relay->fd);
    relay->fd = -1;
}

/* DONT-FRAGMENT (RFC 8656 §7.2, §10.2): DF is a socket option on Linux, switched only
 * when a datagram asks for the other state. */
static void set_df(pl_turn_relay_t *relay, bool df)
{
    int v4 = df ? IP_PMTUDISC_DO : IP_PMTUDISC_WANT;
    int v6 = df ? IPV6_PMTUDISC_DO : IPV6_PMTUDISC_WANT;
    if (relay->fam_idx == 0)
        setsockopt(relay->fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4, sizeof v4);
    else
        setsockopt(relay->fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v6, sizeof v6);
    relay->df = df;
}

static int io_send_peer(void *ctx, pl_turn_relay_t *relay, const pl_sockaddr_t *peer,
                        const uint8_t *buf, size_t len, unsigned flags)
{
    PL_UNUSED(ctx);
    bool df = (flags & PL_TURN_SEND_DF) != 0;
    if (df != relay->df)
        set_df(relay, df);
    ssize_t n = sendto(relay->fd, buf, len, 0, &peer->sa, pl_sockaddr_len(peer));
    return n < 0 ? -errno : 0;
}

/* A bound UDP socket nobody reads: it only keeps the port (no SO_REUSEADDR, so no
 * other socket can bind it meanwhile). Datagrams sent to it are dropped by the kernel
 * once its small buffer fills; nothing is relayed on a reserved port anyway. */
static int io_port_hold(void *ctx, const pl_sockaddr_t *addr)
{
    PL_UNUSED(ctx);
    return pl_net_listen(addr, SOCK_DGRAM, PL_LISTEN_V6ONLY, 0);
}

static const pl_turn_io_ops_t relay_io = {
    io_now_ms, io_wall_s, io_send_client, io_relay_open, io_relay_close, io_send_peer,
    io_port_hold,
};

/* ---- receive paths ------------------------------------------------------------- */

static void reset_rx(pl_turn_thread_t *th, int i, bool pktinfo)
{
    struct msghdr *mh = &th->rx_msgs[i].msg_hdr;
    mh->msg_namelen = sizeof th->rx_addr[i];
    mh->msg_control = pktinfo ? th->rx_ctl[i].buf : NULL;
    mh->msg_controllen = pktinfo ? sizeof th->rx_ctl[i].buf : 0;
}

static void on_listener(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(events);
    listener_t *l = arg;
    pl_turn_thread_t *th = l->th;
    pl_turn_conn_t conn = {.transport = PL_TURN_UDP, .id = (uint32_t)(l - th->lis), .local = l->addr};
    /* The kernel overwrites only the lengths of the descriptors it fills: all of them
     * are set up when the kind of listener changes, and the used ones reset after use
     * (a full set-up per read cost more than the rest of the user-space path). */
    if (th->rx_pktinfo != (int)l->pktinfo) {
        for (int i = 0; i < PL_TURN_BATCH; i++)
            reset_rx(th, i, l->pktinfo);
        th->rx_pktinfo = (int)l->pktinfo;
    }
    /* A few batches per wake-up, then give the other sockets their turn. */
    for (int round = 0; round < 4; round++) {
        int n = recvmmsg(fd, th->rx_msgs, PL_TURN_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++) {
            if (th->rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
                pl_turn_drop(th->srv, PL_TURN_DROP_TRUNCATED);
            } else {
                conn.client = th->rx_addr[i];
                if (l->pktinfo) {
                    conn.local = l->addr;
                    local_from_pktinfo(&th->rx_msgs[i].msg_hdr, &conn.local);
                }
                pl_turn_server_input(th->srv, &conn, th->rx[i], th->rx_msgs[i].msg_len);
            }
            reset_rx(th, i, l->pktinfo);
        }
        if (n < PL_TURN_BATCH)
            return;
    }
}

static void on_relay(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(events);
    pl_turn_relay_t *relay = arg;
    pl_turn_thread_t *th = relay->io_data;
    const pl_turn_conn_t *conn = &relay->alloc->conn;
    for (int round = 0; round < 4; round++) {
        /* Receive straight into the transmit slots of the listener the client uses
         * (UDP); a stream client's data goes through the receive buffers and is
         * copied by its send path. */
        listener_t *l = conn->transport == PL_TURN_UDP ? &th->lis[conn->id] : NULL;
        if (l && l->n_slots == PL_TURN_BATCH)
            flush(l);
        /* Descriptor k points at slot k (or receive buffer k) from start-up; only the
         * address lengths the kernel overwrote are reset, after use. */
        unsigned base = l ? l->n_slots : 0, k = PL_TURN_BATCH - base;
        struct mmsghdr *msgs = l ? l->prx_msgs + base : th->prx_msgs;
        int n = recvmmsg(fd, msgs, k, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        if (l)
            l->n_slots += (unsigned)n;      /* reserved until the next flush */
        for (int j = 0; j < n; j++) {
            struct msghdr *mh = &msgs[j].msg_hdr;
            if (mh->msg_flags & MSG_TRUNC)
                pl_turn_drop(th->srv, PL_TURN_DROP_TRUNCATED);
            else
                pl_turn_server_peer_input(th->srv, relay, mh->msg_name, mh->msg_iov->iov_base,
                                          msgs[j].msg_len);
            mh->msg_namelen = sizeof(pl_sockaddr_t);
        }
        if ((unsigned)n < k)
            return;
    }
}

/* ---- life cycle ---------------------------------------------------------------- */

static void on_tick(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(t);
    pl_turn_thread_t *th = arg;
    pl_turn_server_tick(th->srv);
    pl_buf_t b;
    pl_buf_init(&b);
    pl_turn_server_stats_json(th->srv, &b, PL_TURN_STATS_MAX);
    size_t count = pl_turn_server_count(th->srv);
    pthread_mutex_lock(&th->snap_lock);
    pl_buf_t old = th->snap;
    th->snap = b;
    th->snap_count = count;
    pthread_mutex_unlock(&th->snap_lock);
    pl_buf_deinit(&old);
}

/* Deletes the thread's allocations and closes its sockets, on the loop's home thread
 * (after pl_loop_run returned, or before the thread ever ran). */
static void teardown(pl_turn_thread_t *th)
{
    if (th->loop) {
        pl_timer_stop(th->loop, &th->tick);
        pl_timer_stop(th->loop, &th->flush);
    }
    for (size_t i = 0; i < th->n_lis; i++)
        if (th->lis[i].n_msgs)
            flush(&th->lis[i]);
    /* Closing the stream connections deletes their allocations: before the server. */
    pl_turn_streams_close_all(th->streams);
    pl_turn_server_destroy(th->srv);
    th->srv = NULL;
    for (size_t i = 0; i < th->n_lis; i++) {
        listener_t *l = &th->lis[i];
        if (l->fd >= 0) {
            pl_loop_del_fd(th->loop, l->fd);
            close(l->fd);
            l->fd = -1;
        }
    }
}

static void *thread_main(void *arg)
{
    pl_turn_thread_t *th = arg;
    int rc = pl_loop_run(th->loop);
    if (rc != 0)
        pl_log_error("turn.thread.loop_failed", "thread=%u error=%s", th->idx, pl_strerror(rc));
    teardown(th);
    return NULL;
}

/* Relay-read descriptors: k receives into bufs[k] + PL_TURN_HEADROOM, the room the
 * core frames ChannelData or a Data indication in. */
static void init_relay_reads(struct mmsghdr *msgs, struct iovec *iov, pl_sockaddr_t *addr,
                             uint8_t (*bufs)[PL_TURN_SLOT])
{
    for (int k = 0; k < PL_TURN_BATCH; k++) {
        iov[k] = (struct iovec){bufs[k] + PL_TURN_HEADROOM,
                                PL_TURN_SLOT - PL_TURN_HEADROOM - PL_TURN_TAILROOM};
        msgs[k].msg_hdr = (struct msghdr){.msg_name = &addr[k], .msg_namelen = sizeof addr[k],
                                          .msg_iov = &iov[k], .msg_iovlen = 1};
    }
}

static void init_batches(pl_turn_thread_t *th)
{
    th->rx = pl_xcalloc(PL_TURN_BATCH, PL_TURN_SLOT);
    for (int i = 0; i < PL_TURN_BATCH; i++) {
        th->rx_iov[i] = (struct iovec){th->rx[i], PL_TURN_SLOT};
        th->rx_msgs[i].msg_hdr.msg_iov = &th->rx_iov[i];
        th->rx_msgs[i].msg_hdr.msg_iovlen = 1;
        th->rx_msgs[i].msg_hdr.msg_name = &th->rx_addr[i];
        reset_rx(th, i, false);
    }
    th->rx_pktinfo = 0;
    init_relay_reads(th->prx_msgs, th->prx_iov, th->prx_addr, th->rx);
}

static int open_listener(pl_turn_thread_t *th, listener_t *l, const pl_sockaddr_t *addr)
{
    l->th = th;
    l->fd = pl_net_listen(addr, SOCK_DGRAM, PL_LISTEN_REUSEPORT | PL_LISTEN_V6ONLY, 0);
    if (l->fd < 0)
        return l->fd;
    int sz = PL_TURN_SOCKBUF;
    /* Best effort: the kernel caps these at net.core.{r,w}mem_max. */
    setsockopt(l->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(l->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    int rc = pl_net_local_addr(l->fd, &l->addr);
    if (rc != 0)
        return rc;
    static const uint8_t any6[16];
    int one = 1;
    if (l->addr.sa.sa_family == AF_INET && l->addr.in4.sin_addr.s_addr == 0)
        l->pktinfo = setsockopt(l->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0;
    else if (l->addr.sa.sa_family == AF_INET6 && memcmp(&l->addr.in6.sin6_addr, any6, 16) == 0)
        l->pktinfo = setsockopt(l->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) == 0;
    l->slots = pl_xcalloc(PL_TURN_BATCH, PL_TURN_SLOT);
    init_relay_reads(l->prx_msgs, l->prx_iov, l->prx_addr, l->slots);
    for (int k = 0; k < PL_TURN_BATCH; k++) {
        l->msgs[k].msg_hdr.msg_iov = &l->iov[k];
        l->msgs[k].msg_hdr.msg_iovlen = 1;
    }
    return pl_loop_add_fd(th->loop, l->fd, PL_IO_READ, on_listener, l);
}

static int create_once(const pl_turn_thread_cfg_t *cfg, pl_turn_thread_t **out)
{
    pl_turn_thread_t *th = pl_xcalloc(1, sizeof *th);
    char name[16];
    int rc;
    th->idx = cfg->idx;
    th->shared = cfg->shared;
    th->set = pl_turn_settings_ref(cfg->settings);
    pthread_mutex_init(&th->snap_lock, NULL);
    pl_buf_init(&th->snap);
    for (size_t i = 0; i < PL_TURN_MAX_LISTEN; i++)
        th->lis[i].fd = -1;
    snprintf(name, sizeof name, "turn-%u", cfg->idx);
    if ((rc = pl_loop_create(name, &th->loop)) != 0)
        goto fail;
    init_batches(th);
    pl_turn_server_cfg_t sc = {&relay_io, th, cfg->settings, cfg->shared, cfg->shard, cfg->mid,
                               cfg->idx};
    th->srv = pl_turn_server_create(&sc);
    for (size_t i = 0; i < cfg->n_listen && i < PL_TURN_MAX_LISTEN; i++) {
        th->n_lis = i + 1;
        if ((rc = open_listener(th, &th->lis[i], &cfg->listen[i])) != 0)
            goto fail;
    }
    pl_sockaddr_t bound[PL_TURN_MAX_LISTEN];
    for (size_t i = 0; i < th->n_lis; i++)
        bound[i] = th->lis[i].addr;     /* TCP on the port UDP got */
    pl_turn_streams_cfg_t stc = {th->loop, th->srv, cfg->shared, cfg->idx, bound, th->n_lis,
                                 cfg->tls_listen, cfg->n_tls_listen};
    if ((rc = pl_turn_streams_create(&stc, &th->streams)) != 0)
        goto fail;
    pl_timer_init(&th->tick);
    pl_timer_init(&th->flush);
    pl_timer_start(th->loop, &th->tick, 1000, 1000, on_tick, th);
    *out = th;
    return 0;
fail:
    pl_turn_thread_destroy(th);
    *out = NULL;
    return rc;
}

int pl_turn_thread_create(const pl_turn_thread_cfg_t *cfg, pl_turn_thread_t **out)
{
    /* Port 0 (any free port): UDP picks one and TCP binds the same number, which another
     * socket may hold -- the ephemeral port of some outgoing connection, say. Then pick
     * again, a few times. A configured port that is taken fails at once. */
    bool any = false;
    for (size_t i = 0; i < cfg->n_listen && i < PL_TURN_MAX_LISTEN; i++)
        any |= pl_sockaddr_port(&cfg->listen[i]) == 0;
    for (int attempt = 1;; attempt++) {
        int rc = create_once(cfg, out);
        if (rc != -EADDRINUSE || !any || attempt == 8)
            return rc;
    }
}

void pl_turn_thread_listen_addr(const pl_turn_thread_t *th, size_t i, pl_sockaddr_t *out)
{
    *out = th->lis[i].addr;
}

void pl_turn_thread_tls_addr(const pl_turn_thread_t *th, size_t i, pl_sockaddr_t *out)
{
    pl_turn_streams_tls_addr(th->streams, i, out);
}

pl_turn_streams_t *pl_turn_thread_streams(void *io_ctx)
{
    return ((pl_turn_thread_t *)io_ctx)->streams;
}

int pl_turn_thread_start(pl_turn_thread_t *th)
{
    int rc = pthread_create(&th->tid, NULL, thread_main, th);
    if (rc != 0)
        return -rc;
    th->started = true;
    return 0;
}

void pl_turn_thread_join(pl_turn_thread_t *th)
{
    if (!th || !th->started || th->joined)
        return;
    pl_loop_stop(th->loop);
    pthread_join(th->tid, NULL);
    th->joined = true;
}

void pl_turn_thread_destroy(pl_turn_thread_t *th)
{
    if (!th)
        return;
    if (th->started)
        pl_turn_thread_join(th);
    else
        teardown(th);
    pl_loop_destroy(th->loop);      /* delivers queued messages, which see "stopping" */
    pl_turn_streams_destroy(th->streams);
    for (size_t i = 0; i < PL_TURN_MAX_LISTEN; i++)
        free(th->lis[i].slots);
    free(th->rx);
    pl_turn_settings_unref(th->set);
    pl_buf_deinit(&th->snap);
    pthread_mutex_destroy(&th->snap_lock);
    free(th);
}

static void settings_fn(pl_loop_t *loop, pl_msg_t *msg)
{
    settings_msg_t *m = PL_CONTAINER_OF(msg, settings_msg_t, msg);
    if (!pl_loop_is_stopping(loop) && m->th->srv)
        pl_turn_server_set_settings(m->th->srv, m->set);
    pl_turn_settings_unref(m->set);
    free(m);
}

void pl_turn_thread_post_settings(pl_turn_thread_t *th, pl_turn_settings_t *set)
{
    settings_msg_t *m = pl_xcalloc(1, sizeof *m);
    m->msg.fn = settings_fn;
    m->th = th;
    m->set = pl_turn_settings_ref(set);
    pl_loop_post(th->loop, &m->msg);
}

static void drain_fn(pl_loop_t *loop, void *arg)
{
    pl_turn_thread_t *th = arg;
    if (!pl_loop_is_stopping(loop) && th->srv)
        pl_turn_server_drain(th->srv);
}

void pl_turn_thread_post_drain(pl_turn_thread_t *th)
{
    pl_loop_post_fn(th->loop, drain_fn, th);
}

size_t pl_turn_thread_snapshot(pl_turn_thread_t *th, pl_buf_t *out)
{
    pthread_mutex_lock(&th->snap_lock);
    /* The published text is a JSON array: hand out its elements. */
    if (th->snap.len > 2)
        pl_buf_append(out, th->snap.data + 1, th->snap.len - 2);
    size_t n = th->snap_count;
    pthread_mutex_unlock(&th->snap_lock);
    return n;
}
