/* test_turn_stream.c: TCP, TLS and RFC 6062 through real relay threads on loopback:
 * a stream client allocating and relaying ChannelData both ways (padded frames,
 * pipelined requests) over TCP on 127.0.0.1 and ::1 and over TLS; the allocation
 * going away with its connection; back-pressure from a client that stops reading
 * while a UDP peer floods (every datagram either delivered or counted as a
 * client_backpressure or relay_overflow drop); RFC 6062 Connect and incoming connections with raw
 * bytes both ways, a 4 MiB burst against a non-reading data connection delivered
 * intact, and ConnectionBinds handed over between two threads. */
#include "turn_fake.h"

#include <fcntl.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a blocking stream client ---------------------------------------------------- */

typedef struct sclient {
    int fd;
    SSL *ssl;
    uint8_t in[70000];
    size_t in_len;
    char nonce[64];
    uint32_t seq;
} sclient_t;

static SSL_CTX *client_ctx;

static int tcp_connect(const pl_sockaddr_t *to)
{
    int fd = socket(to->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, &to->sa, pl_sockaddr_len(to)), 0);
    return fd;
}

static sclient_t *sc_open(const pl_sockaddr_t *to, bool tls)
{
    sclient_t *c = calloc(1, sizeof *c);
    c->fd = tcp_connect(to);
    if (tls) {
        c->ssl = SSL_new(client_ctx);
        SSL_set_fd(c->ssl, c->fd);
        assert_int_equal(SSL_connect(c->ssl), 1);
    }
    return c;
}

static void sc_close(sclient_t *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    close(c->fd);
    free(c);
}

static void sc_send(sclient_t *c, const void *buf, size_t len)
{
    if (c->ssl)
        assert_int_equal(SSL_write(c->ssl, buf, (int)len), (int)len);
    else
        assert_int_equal(send(c->fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads more bytes within timeout_ms. Returns the count, 0 at EOF, -1 on timeout. */
static ssize_t sc_fill(sclient_t *c, void *buf, size_t cap, int timeout_ms)
{
    if (!(c->ssl && SSL_pending(c->ssl) > 0)) {
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) != 1)
            return -1;
    }
    if (c->ssl) {
        int n = SSL_read(c->ssl, buf, (int)cap);
        return n > 0 ? n : 0;
    }
    ssize_t n = recv(c->fd, buf, cap, 0);
    return n > 0 ? n : 0;
}

/* The next frame (STUN or padded ChannelData) into out; returns its length, 0 at EOF,
 * -1 on timeout. */
static int sc_frame(sclient_t *c, uint8_t *out, int timeout_ms)
{
    for (;;) {
        int f = pl_turn_frame_len(c->in, c->in_len);
        assert_true(f >= 0);
        if (f > 0) {
            memcpy(out, c->in, (size_t)f);
            memmove(c->in, c->in + f, c->in_len - (size_t)f);
            c->in_len -= (size_t)f;
            return f;
        }
        ssize_t n = sc_fill(c, c->in + c->in_len, sizeof c->in - c->in_len, timeout_ms);
        if (n <= 0)
            return (int)n;
        c->in_len += (size_t)n;
    }
}

static void sc_req(sclient_t *c, req_t *r, uint16_t method)
{
    memset(r->tid, 0x22, sizeof r->tid);
    c->seq++;
    memcpy(r->tid, &c->seq, sizeof c->seq);
    pl_stun_build_init(&r->b, r->buf, sizeof r->buf, pl_stun_type(method, PL_STUN_CLASS_REQUEST),
                       r->tid);
}

static size_t sc_sign(sclient_t *c, req_t *r)
{
    if (c->nonce[0]) {
        pl_stun_add_str(&r->b, PL_STUN_ATTR_USERNAME, "alice");
        pl_stun_add_str(&r->b, PL_STUN_ATTR_REALM, "example.org");
        pl_stun_add_str(&r->b, PL_STUN_ATTR_NONCE, c->nonce);
        pl_stun_cred_t cr = {"alice", 5, "example.org", 11, "wonderland", 10};
        pl_stun_key_t key;
        pl_stun_key_longterm(&cr, PL_STUN_PWALG_MD5, &key);
        pl_stun_add_integrity(&r->b, key.bytes, key.len);
    }
    int n = pl_stun_build_finish(&r->b);
    assert_true(n > 0);
    return (size_t)n;
}

/* Reads frames until the response to r; returns its code (0 success). Indications
 * met on the way are kept in *ind when given. */
static int sc_reply(sclient_t *c, const req_t *r, uint8_t *buf, pl_stun_msg_t *m)
{
    for (;;) {
        int n = sc_frame(c, buf, 3000);
        assert_true(n > 0);
        assert_int_equal(pl_stun_parse(m, buf, (size_t)n), 0);
        if (memcmp(pl_stun_msg_tid(m), r->tid, PL_STUN_TID_LEN) != 0)
            continue;
        if (m->cls == PL_STUN_CLASS_SUCCESS)
            return 0;
        pl_stun_error_t err;
        assert_int_equal(pl_stun_get_error(m, &err), 0);
        if (err.code == 401 || err.code == 438) {
            const uint8_t *v;
            size_t len;
            assert_int_equal(pl_stun_get_bytes(m, PL_STUN_ATTR_NONCE, &v, &len), 0);
            memcpy(c->nonce, v, len);
            c->nonce[len] = '\0';
        }
        return err.code;
    }
}

/* A request built by fill (may be NULL), signed, answered. Retries once after 401. */
typedef void (*fill_fn)(req_t *r, const void *arg);

static int sc_call(sclient_t *c, uint16_t method, fill_fn fill, const void *arg, uint8_t *buf,
                   pl_stun_msg_t *m)
{
    for (int attempt = 0;; attempt++) {
        req_t r;
        sc_req(c, &r, method);
        if (fill)
            fill(&r, arg);
        sc_send(c, r.buf, sc_sign(c, &r));
        int code = sc_reply(c, &r, buf, m);
        if (code != 401 || attempt > 0)
            return code;
    }
}

static void fill_udp(req_t *r, const void *arg)
{
    PL_UNUSED(arg);
    pl_stun_add_u32(&r->b, PL_STUN_ATTR_REQUESTED_TRANSPORT, (uint32_t)PL_STUN_TRANSPORT_UDP << 24);
}

static void fill_udp6(req_t *r, const void *arg)
{
    fill_udp(r, arg);
    pl_stun_add_u32(&r->b, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, (uint32_t)PL_STUN_FAMILY_IPV6 << 24);
}

static void fill_tcp(req_t *r, const void *arg)
{
    PL_UNUSED(arg);
    pl_stun_add_u32(&r->b, PL_STUN_ATTR_REQUESTED_TRANSPORT, (uint32_t)PL_STUN_TRANSPORT_TCP << 24);
}

static void fill_peer(req_t *r, const void *arg)
{
    pl_stun_add_addr(&r->b, PL_STUN_ATTR_XOR_PEER_ADDRESS, arg);
}

static void fill_chan(req_t *r, const void *arg)
{
    pl_stun_add_u32(&r->b, PL_STUN_ATTR_CHANNEL_NUMBER, 0x4001u << 16);
    pl_stun_add_addr(&r->b, PL_STUN_ATTR_XOR_PEER_ADDRESS, arg);
}

static void fill_cid(req_t *r, const void *arg)
{
    pl_stun_add_u32(&r->b, PL_STUN_ATTR_CONNECTION_ID, *(const uint32_t *)arg);
}

/* Allocates (UDP or TCP relay; an IPv6 UDP relay when v6) and returns the relayed
 * address. */
static void sc_allocate_fam(sclient_t *c, bool tcp, bool v6, pl_sockaddr_t *relayed)
{
    uint8_t buf[2048];
    pl_stun_msg_t m;
    fill_fn f = tcp ? fill_tcp : v6 ? fill_udp6 : fill_udp;
    assert_int_equal(sc_call(c, PL_STUN_METHOD_ALLOCATE, f, NULL, buf, &m), 0);
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, relayed), 0);
}

static void sc_allocate(sclient_t *c, bool tcp, pl_sockaddr_t *relayed)
{
    sc_allocate_fam(c, tcp, false, relayed);
}

/* ---- relay threads on loopback ------------------------------------------------ */

typedef struct plane {
    tenv_t *e;
    pl_turn_thread_t *th[2];
    unsigned n;
    pl_sockaddr_t tcp, tls;         /* where clients connect */
    char dir[64];
} plane_t;

/* An override plane_start adds last when set (a test's own relay_ports). */
static const char *plane_extra;

static void plane_start(plane_t *p, const char *listen, unsigned threads, bool tls)
{
    memset(p, 0, sizeof *p);
    char l[96], cert[128], key[128];
    snprintf(l, sizeof l, "turn.listen=%s", listen);
    const char *ov[8] = {l, "turn.allowed_peers=127.0.0.1,::1", "turn.relay_ports=46000-46999",
                         "turn.tls_listen=127.0.0.1:0"};
    size_t n = 4;
    if (plane_extra)
        ov[n++] = plane_extra;
    if (tls) {
        snprintf(p->dir, sizeof p->dir, "/tmp/pl-turn-tls-XXXXXX");
        assert_non_null(mkdtemp(p->dir));
        char cmd[512];
        const char *src = getenv("PL_SOURCE_DIR");
        snprintf(cmd, sizeof cmd, "%s/scripts/dev-cert %s >/dev/null", src ? src : ".", p->dir);
        assert_int_equal(system(cmd), 0);
        snprintf(cert, sizeof cert, "turn.tls_cert=%s/cert.pem", p->dir);
        snprintf(key, sizeof key, "turn.tls_key=%s/key.pem", p->dir);
        ov[n++] = cert;
        ov[n++] = key;
    }
    p->e = tenv_new(ov, n);
    pl_sockaddr_t lis[1], tlis[1] = {p->e->set->tls_listen[0]};
    /* Port 0 gives thread 0 a free UDP port; TCP on the same number may be taken (by
     * an ephemeral connection): try again with another one. */
    for (int attempt = 0;; attempt++) {
        lis[0] = p->e->set->listen[0];
        pl_turn_thread_cfg_t tc = {0, p->e->set, p->e->sh, pl_metrics_shard_create(p->e->reg),
                                   &p->e->ids, lis, 1, tlis, tls ? 1 : 0};
        int rc = pl_turn_thread_create(&tc, &p->th[0]);
        if (rc == 0)
            break;
        assert_true(rc == -EADDRINUSE && attempt < 20);
    }
    pl_turn_thread_listen_addr(p->th[0], 0, &lis[0]);
    if (tls)
        pl_turn_thread_tls_addr(p->th[0], 0, &tlis[0]);
    for (unsigned i = 1; i < threads; i++) {
        pl_turn_thread_cfg_t tc = {i, p->e->set, p->e->sh, pl_metrics_shard_create(p->e->reg),
                                   &p->e->ids, lis, 1, tlis, tls ? 1 : 0};
        assert_int_equal(pl_turn_thread_create(&tc, &p->th[i]), 0);
    }
    p->n = threads;
    p->tcp = lis[0];
    p->tls = tlis[0];
    for (unsigned i = 0; i < threads; i++)
        assert_int_equal(pl_turn_thread_start(p->th[i]), 0);
}

static uint64_t metric(plane_t *p, pl_metric_id_t id)
{
    return pl_metrics_read_counter(p->e->reg, id);
}

static size_t ports_in_use(plane_t *p)
{
    return pl_turn_ports_in_use(&p->e->sh->ports[0]) + pl_turn_ports_in_use(&p->e->sh->ports[1]);
}

/* Waits up to 3 s for the relay threads to free every port. */
static void wait_ports_free(plane_t *p)
{
    for (int i = 0; i < 300 && ports_in_use(p) > 0; i++)
        usleep(10000);
    assert_int_equal(ports_in_use(p), 0);
}

static void plane_stop(plane_t *p)
{
    for (unsigned i = 0; i < p->n; i++)
        pl_turn_thread_join(p->th[i]);
    for (unsigned i = 0; i < p->n; i++)
        pl_turn_thread_destroy(p->th[i]);
    assert_int_equal(ports_in_use(p), 0);
    assert_int_equal(pl_metrics_read_gauge(p->e->reg, p->e->ids.streams[0]), 0);
    assert_int_equal(pl_metrics_read_gauge(p->e->reg, p->e->ids.streams[1]), 0);
    assert_int_equal(pl_metrics_read_gauge(p->e->reg, p->e->ids.tcp_peers), 0);
    tenv_free(p->e);
    if (p->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", p->dir);
        assert_int_equal(system(cmd), 0);
    }
}

static int udp_peer(const char *addr, pl_sockaddr_t *bound)
{
    pl_sockaddr_t a;
    assert_int_equal(pl_sockaddr_parse(addr, -1, &a), 0);
    int fd = pl_net_listen(&a, SOCK_DGRAM, PL_LISTEN_V6ONLY, 0);
    assert_true(fd >= 0);
    int sz = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    assert_int_equal(pl_net_local_addr(fd, bound), 0);
    return fd;
}

static ssize_t udp_recv(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    return recv(fd, buf, cap, 0);
}

/* ---- TCP and TLS clients with a UDP peer ------------------------------------------- */

static void stream_roundtrip(const char *listen, const char *peer_addr, bool tls)
{
    plane_t p;
    plane_start(&p, listen, 1, tls);
    pl_sockaddr_t peer, relayed;
    int pfd = udp_peer(peer_addr, &peer);
    sclient_t *c = sc_open(tls ? &p.tls : &p.tcp, tls);
    uint8_t buf[2048];
    pl_stun_msg_t m;
    sc_allocate_fam(c, false, peer.sa.sa_family == AF_INET6, &relayed);
    assert_int_equal(sc_call(c, PL_STUN_METHOD_CHANNEL_BIND, fill_chan, &peer, buf, &m), 0);
    /* Client -> peer: ChannelData with stream padding. */
    uint8_t cd[12] = {0x40, 0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0, 0, 0};
    sc_send(c, cd, sizeof cd);
    assert_int_equal(udp_recv(pfd, buf, sizeof buf, 2000), 5);
    assert_memory_equal(buf, "hello", 5);
    /* Peer -> client: a 7-byte datagram arrives as ChannelData padded to 12. */
    assert_int_equal(sendto(pfd, "goodbye", 7, 0, &relayed.sa, pl_sockaddr_len(&relayed)), 7);
    assert_int_equal(sc_frame(c, buf, 2000), 12);
    assert_int_equal(pl_stun_rd16(buf), 0x4001);
    assert_int_equal(pl_stun_rd16(buf + 2), 7);
    assert_memory_equal(buf + 4, "goodbye", 7);
    /* Two requests in one write get two responses, in order. */
    req_t r1, r2;
    sc_req(c, &r1, PL_STUN_METHOD_BINDING);
    sc_req(c, &r2, PL_STUN_METHOD_BINDING);
    uint8_t two[64];
    int n1 = pl_stun_build_finish(&r1.b), n2 = pl_stun_build_finish(&r2.b);
    memcpy(two, r1.buf, (size_t)n1);
    memcpy(two + n1, r2.buf, (size_t)n2);
    sc_send(c, two, (size_t)(n1 + n2));
    assert_int_equal(sc_reply(c, &r1, buf, &m), 0);
    assert_int_equal(sc_reply(c, &r2, buf, &m), 0);
    pl_sockaddr_t mapped;
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped), 0);
    assert_int_equal(mapped.sa.sa_family, p.tcp.sa.sa_family);
    /* Closing the connection deletes the allocation (its port comes back). */
    assert_true(ports_in_use(&p) > 0);
    sc_close(c);
    wait_ports_free(&p);
    close(pfd);
    plane_stop(&p);
}

static void test_tcp_ipv4(void **state)
{
    (void)state;
    stream_roundtrip("127.0.0.1:0", "127.0.0.1:0", false);
}

static void test_tcp_ipv6(void **state)
{
    (void)state;
    stream_roundtrip("[::1]:0", "[::1]:0", false);
}

static void test_tls(void **state)
{
    (void)state;
    stream_roundtrip("127.0.0.1:0", "127.0.0.1:0", true);
}

static void test_bad_frame_closes(void **state)
{
    (void)state;
    plane_t p;
    plane_start(&p, "127.0.0.1:0", 1, false);
    sclient_t *c = sc_open(&p.tcp, false);
    uint64_t before = metric(&p, p.e->ids.drops[PL_TURN_DROP_MALFORMED]);
    sc_send(c, "\x80garbage-that-is-not-stun", 25);
    uint8_t buf[64];
    assert_int_equal(sc_fill(c, buf, sizeof buf, 2000), 0);    /* closed by the server */
    assert_int_equal(metric(&p, p.e->ids.drops[PL_TURN_DROP_MALFORMED]), before + 1);
    sc_close(c);
    plane_stop(&p);
}

/* A client that stops reading while its UDP peer floods: the relay stops reading
 * (back-pressure), the kernel drops what no longer fits and every drop is counted. */
static void test_backpressure_udp_peer(void **state)
{
    (void)state;
    plane_t p;
    plane_start(&p, "127.0.0.1:0", 1, false);
    pl_sockaddr_t peer, relayed;
    int pfd = udp_peer("127.0.0.1:0", &peer);
    sclient_t *c = sc_open(&p.tcp, false);
    int small = 16384;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    uint8_t buf[2048];
    pl_stun_msg_t m;
    sc_allocate(c, false, &relayed);
    assert_int_equal(sc_call(c, PL_STUN_METHOD_CHANNEL_BIND, fill_chan, &peer, buf, &m), 0);
    enum { BATCH = 2000, MAX_N = 400000, LEN = 1000 };
    uint8_t dgram[LEN];
    memset(dgram, 0xAB, sizeof dgram);
    /* Flood in batches until the relay thread has paused (its output buffer passed the
     * high-water mark). How many datagrams that takes depends on how fast the thread
     * reads (a sanitizer build reads slowly, so the kernel drops most of a burst before
     * the buffer fills), hence batches rather than a fixed count. */
    uint32_t N = 0;
    uint64_t deadline = pl_now_mono_ms() + 30000;
    while (N < MAX_N && metric(&p, p.e->ids.stream_pauses) == 0 && pl_now_mono_ms() < deadline) {
        for (int k = 0; k < BATCH; k++, N++) {
            memcpy(dgram, &N, sizeof N);
            assert_int_equal(sendto(pfd, dgram, LEN, 0, &relayed.sa, pl_sockaddr_len(&relayed)), LEN);
        }
        for (int i = 0; i < 20 && metric(&p, p.e->ids.stream_pauses) == 0; i++)
            usleep(5000);
    }
    assert_true(metric(&p, p.e->ids.stream_pauses) > 0);
    /* Now read everything: numbers only ever increase, nothing arrives twice. */
    uint64_t got = 0;
    int64_t last = -1;
    int n;
    while ((n = sc_frame(c, buf, 1000)) > 0) {
        assert_int_equal(n, 4 + LEN);
        uint32_t seq;
        memcpy(&seq, buf + 4, sizeof seq);
        assert_true((int64_t)seq > last);
        last = seq;
        got++;
    }
    /* Drops while paused are back-pressure; before the pause the flood outran the
     * thread (overflow). Either way each one is counted. */
    uint64_t dropped = metric(&p, p.e->ids.drops[PL_TURN_DROP_CLIENT_BACKPRESSURE]) +
                       metric(&p, p.e->ids.drops[PL_TURN_DROP_RELAY_OVERFLOW]);
    assert_true(got > 0);
    assert_true(dropped > 0);
    assert_int_equal(got + dropped, N);
    assert_int_equal(metric(&p, p.e->ids.drops[PL_TURN_DROP_SEND_FAILED]), 0);
    sc_close(c);
    close(pfd);
    wait_ports_free(&p);
    plane_stop(&p);
}

/* ---- RFC 6062 ---------------------------------------------------------------------- */

static int tcp_listener(pl_sockaddr_t *bound)
{
    pl_sockaddr_t a;
    pl_sockaddr_parse("127.0.0.1:0", -1, &a);
    int fd = pl_net_listen(&a, SOCK_STREAM, 0, 16);
    assert_true(fd >= 0);
    assert_int_equal(pl_net_local_addr(fd, bound), 0);
    int fl = 0;     /* blocking accepts */
    assert_int_equal(fcntl(fd, F_SETFL, fl), 0);
    return fd;
}

static void read_exact(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        struct pollfd pp = {fd, POLLIN, 0};
        assert_int_equal(poll(&pp, 1, 3000), 1);
        ssize_t n = recv(fd, buf + got, len - got, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
}

/* A data connection: raw bytes after the ConnectionBind response, the first of
 * which may have come with the response. */
typedef struct data_conn {
    int fd;
    uint8_t pre[256];
    size_t n_pre;
} data_conn_t;

static data_conn_t bind_data(plane_t *p, sclient_t *ctl, uint32_t cid)
{
    sclient_t *d = sc_open(&p->tcp, false);
    memcpy(d->nonce, ctl->nonce, sizeof d->nonce);
    uint8_t buf[2048];
    pl_stun_msg_t m;
    assert_int_equal(sc_call(d, PL_STUN_METHOD_CONNECTION_BIND, fill_cid, &cid, buf, &m), 0);
    data_conn_t dc = {d->fd, {0}, d->in_len};
    assert_true(d->in_len <= sizeof dc.pre);
    memcpy(dc.pre, d->in, d->in_len);
    free(d);
    return dc;
}

static void read_data(data_conn_t *dc, uint8_t *buf, size_t len)
{
    size_t k = PL_MIN(len, dc->n_pre);
    memcpy(buf, dc->pre, k);
    memmove(dc->pre, dc->pre + k, dc->n_pre - k);
    dc->n_pre -= k;
    read_exact(dc->fd, buf + k, len - k);
}

static void test_rfc6062_connect(void **state)
{
    (void)state;
    plane_t p;
    plane_start(&p, "127.0.0.1:0", 1, false);
    pl_sockaddr_t target, relayed;
    int lfd = tcp_listener(&target);
    sclient_t *ctl = sc_open(&p.tcp, false);
    uint8_t buf[2048];
    pl_stun_msg_t m;
    sc_allocate(ctl, true, &relayed);
    assert_int_equal(sc_call(ctl, PL_STUN_METHOD_CONNECT, fill_peer, &target, buf, &m), 403);
    assert_int_equal(sc_call(ctl, PL_STUN_METHOD_CREATE_PERMISSION, fill_peer, &target, buf, &m), 0);
    assert_int_equal(sc_call(ctl, PL_STUN_METHOD_CONNECT, fill_peer, &target, buf, &m), 0);
    uint32_t cid;
    assert_int_equal(pl_stun_get_u32(&m, PL_STUN_ATTR_CONNECTION_ID, &cid), 0);
    pl_sockaddr_t from;
    socklen_t flen = sizeof from;
    int pfd = accept(lfd, &from.sa, &flen);
    assert_true(pfd >= 0);
    /* RFC 6062 §5.2: the connection comes from the relayed transport address. */
    assert_true(pl_sockaddr_equal(&from, &relayed));
    assert_int_equal(sc_call(ctl, PL_STUN_METHOD_CONNECT, fill_peer, &target, buf, &m), 446);
    data_conn_t dc = bind_data(&p, ctl, cid);
    int dfd = dc.fd;
    assert_int_equal(send(dfd, "ping", 4, 0), 4);
    read_exact(pfd, buf, 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(send(pfd, "pong!", 5, 0), 5);
    read_data(&dc, buf, 5);
    assert_memory_equal(buf, "pong!", 5);
    /* A burst into a data connection that does not read: reading the peer stops,
     * and everything arrives once it reads. */
    /* Larger than every kernel buffer on the way (the peer's send buffer and the
     * server-side send buffer of the data connection autotune up to 4 MiB each), so
     * the relay's own output buffer must fill and pause reading the peer. */
    enum { BURST = 16 << 20 };
    uint8_t *big = malloc(BURST), *back = malloc(BURST);
    for (size_t i = 0; i < BURST; i++)
        big[i] = (uint8_t)(i * 7 + (i >> 13));
    int small = 16384;
    setsockopt(dfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    uint64_t pauses = metric(&p, p.e->ids.stream_pauses);
    size_t sent = 0;
    /* Send until the relay thread has paused reading the peer (back-pressure reached
     * it) or the whole path is full; a slow relay thread (sanitizers, a loaded
     * machine) may need several rounds of polling before it gets there. */
    uint64_t deadline = pl_now_mono_ms() + 20000;
    while (sent < BURST && metric(&p, p.e->ids.stream_pauses) == pauses &&
           pl_now_mono_ms() < deadline) {
        struct pollfd pp = {pfd, POLLOUT, 0};
        if (poll(&pp, 1, 200) != 1)
            continue;
        ssize_t n = send(pfd, big + sent, BURST - sent, MSG_DONTWAIT);
        if (n > 0)
            sent += (size_t)n;
    }
    assert_true(metric(&p, p.e->ids.stream_pauses) > pauses);
    size_t got = 0;
    while (got < BURST) {
        if (sent < BURST) {
            ssize_t n = send(pfd, big + sent, BURST - sent, MSG_DONTWAIT);
            if (n > 0)
                sent += (size_t)n;
        }
        struct pollfd pp = {dfd, POLLIN, 0};
        assert_int_equal(poll(&pp, 1, 3000), 1);
        ssize_t n = recv(dfd, back + got, BURST - got, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(back, big, BURST);
    /* Raw bytes count as relayed bytes. */
    assert_true(metric(&p, p.e->ids.bytes[PL_TURN_DIR_P2C]) >= BURST + 5);
    assert_true(metric(&p, p.e->ids.bytes[PL_TURN_DIR_C2P]) >= 4);
    free(big);
    free(back);
    /* The peer closes: the data connection ends too. */
    close(pfd);
    struct pollfd pp = {dfd, POLLIN, 0};
    assert_int_equal(poll(&pp, 1, 3000), 1);
    assert_int_equal(recv(dfd, buf, sizeof buf, 0), 0);
    close(dfd);
    sc_close(ctl);
    close(lfd);
    wait_ports_free(&p);
    plane_stop(&p);
}

/* A TCP allocation's relayed port is its own: its listener takes SO_REUSEPORT, which
 * would share a port -- and the peers connecting to it -- with another SO_REUSEPORT
 * listener of this user there (parleyd's TLS listener, another instance's relayed
 * port). With the relay range two ports, one of them such a listener's, every TCP
 * allocation gets the other; and while it lives, its port cannot be bound. */
static int bound_port(int fd)
{
    pl_sockaddr_t a;
    assert_int_equal(pl_net_local_addr(fd, &a), 0);
    return pl_sockaddr_port(&a);
}

static void test_tcp_relay_port_exclusive(void **state)
{
    (void)state;
    pl_sockaddr_t any, at;
    pl_sockaddr_parse("127.0.0.1:0", -1, &any);
    int foreign = -1, port = 0;
    for (int i = 0; i < 50 && foreign < 0; i++) {
        foreign = pl_net_listen(&any, SOCK_STREAM, PL_LISTEN_REUSEPORT, 8);
        assert_true(foreign >= 0);
        port = bound_port(foreign);
        /* The port above must be free for both protocols. */
        at = any;
        pl_sockaddr_set_port(&at, (uint16_t)(port + 1));
        int t = port < 65535 ? pl_net_listen(&at, SOCK_STREAM, 0, 1) : -1;
        int u = t >= 0 ? pl_net_listen(&at, SOCK_DGRAM, 0, 0) : -1;
        if (t >= 0)
            close(t);
        if (u >= 0)
            close(u);
        if (u < 0) {
            close(foreign);
            foreign = -1;
        }
    }
    assert_true(foreign >= 0);
    char range[64];
    snprintf(range, sizeof range, "turn.relay_ports=%d-%d", port, port + 1);
    plane_extra = range;
    plane_t p;
    plane_start(&p, "127.0.0.1:0", 1, false);
    plane_extra = NULL;
    for (int round = 0; round < 8; round++) {
        sclient_t *ctl = sc_open(&p.tcp, false);
        pl_sockaddr_t relayed;
        sc_allocate(ctl, true, &relayed);
        assert_int_equal(pl_sockaddr_port(&relayed), port + 1);
        if (round == 0) {
            int u = pl_net_listen(&relayed, SOCK_DGRAM, 0, 0);
            assert_int_equal(u, -EADDRINUSE);
        }
        sc_close(ctl);
        wait_ports_free(&p);
    }
    plane_stop(&p);
    close(foreign);
}

/* Peers connect to the relayed address; each data connection may land on either of
 * two threads, and those on the other thread are handed over. */
static void test_rfc6062_incoming_handover(void **state)
{
    (void)state;
    plane_t p;
    plane_start(&p, "127.0.0.1:0", 2, false);
    pl_sockaddr_t relayed, me;
    pl_sockaddr_parse("127.0.0.1:1", -1, &me);
    sclient_t *ctl = sc_open(&p.tcp, false);
    uint8_t buf[2048];
    pl_stun_msg_t m;
    sc_allocate(ctl, true, &relayed);
    assert_int_equal(sc_call(ctl, PL_STUN_METHOD_CREATE_PERMISSION, fill_peer, &me, buf, &m), 0);
    int rounds = 0;
    for (; rounds < 40 && (rounds < 4 || metric(&p, p.e->ids.stream_handovers) == 0); rounds++) {
        int pfd = tcp_connect(&relayed);
        int n = sc_frame(ctl, buf, 3000);
        assert_true(n > 0);
        assert_int_equal(pl_stun_parse(&m, buf, (size_t)n), 0);
        assert_int_equal(m.method, PL_STUN_METHOD_CONNECTION_ATTEMPT);
        uint32_t cid;
        assert_int_equal(pl_stun_get_u32(&m, PL_STUN_ATTR_CONNECTION_ID, &cid), 0);
        /* Bytes the peer sends before the bind wait in the kernel (RFC 6062 §5.3). */
        assert_int_equal(send(pfd, "early", 5, 0), 5);
        data_conn_t dc = bind_data(&p, ctl, cid);
        int dfd = dc.fd;
        read_data(&dc, buf, 5);
        assert_memory_equal(buf, "early", 5);
        assert_int_equal(send(dfd, "reply", 5, 0), 5);
        read_exact(pfd, buf, 5);
        assert_memory_equal(buf, "reply", 5);
        close(dfd);
        struct pollfd pp = {pfd, POLLIN, 0};
        assert_int_equal(poll(&pp, 1, 3000), 1);
        assert_int_equal(recv(pfd, buf, sizeof buf, 0), 0);   /* the pair closed */
        close(pfd);
    }
    assert_true(metric(&p, p.e->ids.stream_handovers) > 0);
    sc_close(ctl);
    wait_ports_free(&p);
    plane_stop(&p);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    client_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    return client_ctx ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    SSL_CTX_free(client_ctx);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_ipv4),
        cmocka_unit_test(test_tcp_ipv6),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_bad_frame_closes),
        cmocka_unit_test(test_backpressure_udp_peer),
        cmocka_unit_test(test_rfc6062_connect),
        cmocka_unit_test(test_rfc6062_incoming_handover),
        cmocka_unit_test(test_tcp_relay_port_exclusive),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
