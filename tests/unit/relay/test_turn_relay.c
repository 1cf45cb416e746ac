/* test_turn_relay.c: the data plane with real sockets on 127.0.0.1 and ::1: relay
 * threads and the module started on free ports, a client and a peer exchanging
 * ChannelData, Send/Data indications and a burst that goes through the batched,
 * zero-copy peer->client path. */
#include "turn_fake.h"

#include <poll.h>
#include <unistd.h>

typedef struct udp {
    int fd;
    pl_sockaddr_t addr;
} udp_t;

static udp_t udp_open(const char *addr)
{
    udp_t u;
    pl_sockaddr_t a;
    assert_int_equal(pl_sockaddr_parse(addr, -1, &a), 0);
    u.fd = pl_net_listen(&a, SOCK_DGRAM, PL_LISTEN_V6ONLY, 0);
    assert_true(u.fd >= 0);
    assert_int_equal(pl_net_local_addr(u.fd, &u.addr), 0);
    return u;
}

static void udp_send(const udp_t *u, const pl_sockaddr_t *to, const void *buf, size_t len)
{
    assert_int_equal(sendto(u->fd, buf, len, 0, &to->sa, pl_sockaddr_len(to)), (ssize_t)len);
}

/* Receives one datagram within timeout_ms; returns its length or -1. */
static ssize_t udp_recv(const udp_t *u, uint8_t *buf, size_t cap, pl_sockaddr_t *from, int timeout_ms)
{
    struct pollfd p = {u->fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    socklen_t alen = sizeof *from;
    return recvfrom(u->fd, buf, cap, 0, &from->sa, &alen);
}

typedef struct client {
    udp_t sock;
    pl_sockaddr_t server;
    char nonce[64];
    uint32_t seq;
    uint8_t buf[2048];
    pl_stun_msg_t m;
} client_t;

static void client_req(client_t *c, req_t *r, uint16_t method)
{
    memset(r->tid, 0x11, sizeof r->tid);
    c->seq++;
    memcpy(r->tid, &c->seq, sizeof c->seq);
    assert_int_equal(pl_stun_build_init(&r->b, r->buf, sizeof r->buf,
                                        pl_stun_type(method, PL_STUN_CLASS_REQUEST), r->tid), 0);
}

/* Signs (when a nonce is known), sends and waits for the reply. Returns its code. */
static int client_call(client_t *c, req_t *r, bool sign)
{
    if (sign) {
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
    udp_send(&c->sock, &c->server, r->buf, (size_t)n);
    pl_sockaddr_t from;
    ssize_t got = udp_recv(&c->sock, c->buf, sizeof c->buf, &from, 2000);
    assert_true(got > 0);
    assert_int_equal(pl_stun_parse(&c->m, c->buf, (size_t)got), 0);
    assert_memory_equal(pl_stun_msg_tid(&c->m), r->tid, PL_STUN_TID_LEN);
    if (c->m.cls == PL_STUN_CLASS_SUCCESS)
        return 0;
    pl_stun_error_t err;
    assert_int_equal(pl_stun_get_error(&c->m, &err), 0);
    const uint8_t *v;
    size_t len;
    if (pl_stun_get_bytes(&c->m, PL_STUN_ATTR_NONCE, &v, &len) == 0 && len < sizeof c->nonce) {
        memcpy(c->nonce, v, len);
        c->nonce[len] = '\0';
    }
    return err.code;
}

/* Allocates (401 round trip first) and returns the relayed address. */
static pl_sockaddr_t client_allocate(client_t *c)
{
    req_t r;
    client_req(c, &r, PL_STUN_METHOD_ALLOCATE);
    req_transport(&r);
    assert_int_equal(client_call(c, &r, false), 401);
    client_req(c, &r, PL_STUN_METHOD_ALLOCATE);
    req_transport(&r);
    /* RFC 6156: without REQUESTED-ADDRESS-FAMILY the relay is IPv4 (440 on a server
     * with no IPv4 relay address). */
    if (c->sock.addr.sa.sa_family == AF_INET6)
        pl_stun_add_u32(&r.b, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 2u << 24);
    assert_int_equal(client_call(c, &r, true), 0);
    pl_sockaddr_t relayed;
    assert_int_equal(pl_stun_get_addr(&c->m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &relayed), 0);
    return relayed;
}

static void client_bind(client_t *c, uint16_t ch, const pl_sockaddr_t *peer)
{
    req_t r;
    client_req(c, &r, PL_STUN_METHOD_CHANNEL_BIND);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_CHANNEL_NUMBER, (uint32_t)ch << 16);
    pl_stun_add_addr(&r.b, PL_STUN_ATTR_XOR_PEER_ADDRESS, peer);
    assert_int_equal(client_call(c, &r, true), 0);
}

/* ---- a relay thread on its own ---- */

typedef struct plane {
    tenv_t *e;                  /* settings, shared state, metrics from the fake env */
    pl_turn_thread_t *th;
    pl_sockaddr_t server;
} plane_t;

static void plane_start(plane_t *p, const char *listen)
{
    char l[96];
    snprintf(l, sizeof l, "turn.listen=%s", listen);
    const char *ov[] = {l, "turn.allowed_peers=127.0.0.1,::1", "turn.relay_ports=45000-45999"};
    p->e = tenv_new(ov, PL_ARRAY_LEN(ov));
    pl_turn_thread_cfg_t tc = {0, p->e->set, p->e->sh, p->e->shard, &p->e->ids, p->e->set->listen,
                               p->e->set->n_listen, NULL, 0};
    assert_int_equal(pl_turn_thread_create(&tc, &p->th), 0);
    pl_turn_thread_listen_addr(p->th, 0, &p->server);
    assert_true(pl_sockaddr_port(&p->server) != 0);
    assert_int_equal(pl_turn_thread_start(p->th), 0);
}

static void plane_stop(plane_t *p)
{
    pl_turn_thread_destroy(p->th);
    /* The thread deleted its allocations: every port is back in the pool. */
    assert_int_equal(pl_turn_ports_in_use(&p->e->sh->ports[0]) + pl_turn_ports_in_use(&p->e->sh->ports[1]), 0);
    tenv_free(p->e);
}

static void relay_round_trip(const char *listen, const char *local, const char *other_ip)
{
    plane_t p;
    plane_start(&p, listen);
    client_t c = {.sock = udp_open(local), .server = p.server};
    udp_t peer = udp_open(local);
    pl_sockaddr_t relayed = client_allocate(&c);
    client_bind(&c, 0x4001, &peer.addr);
    /* client -> peer */
    uint8_t frame[64] = {0x40, 0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'};
    udp_send(&c.sock, &c.server, frame, 9);
    uint8_t buf[2048];
    pl_sockaddr_t from;
    assert_int_equal(udp_recv(&peer, buf, sizeof buf, &from, 2000), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_true(pl_sockaddr_equal(&from, &relayed));
    /* peer -> client, a burst: batched sendmmsg, headers framed in place */
    for (int i = 0; i < 200; i++) {
        uint8_t data[160];
        memset(data, i, sizeof data);
        udp_send(&peer, &relayed, data, sizeof data);
    }
    for (int i = 0; i < 200; i++) {
        ssize_t n = udp_recv(&c.sock, buf, sizeof buf, &from, 2000);
        assert_int_equal(n, 4 + 160);
        assert_true(pl_sockaddr_equal(&from, &c.server));
        assert_int_equal(pl_stun_rd16(buf), 0x4001);
        assert_int_equal(pl_stun_rd16(buf + 2), 160);
        assert_int_equal(buf[4], (uint8_t)i);
        assert_int_equal(buf[163], (uint8_t)i);
    }
    /* A peer on another IP has no permission: nothing reaches the client. */
    if (other_ip) {
        udp_t stranger = udp_open(other_ip);
        udp_send(&stranger, &relayed, "x", 1);
        assert_int_equal(udp_recv(&c.sock, buf, sizeof buf, &from, 200), -1);
        close(stranger.fd);
    }
    /* A Binding request on the same socket still works. */
    req_t r;
    client_req(&c, &r, PL_STUN_METHOD_BINDING);
    assert_int_equal(client_call(&c, &r, false), 0);
    close(c.sock.fd);
    close(peer.fd);
    plane_stop(&p);
}

static void test_relay_ipv4(void **state)
{
    (void)state;
    relay_round_trip("127.0.0.1:0", "127.0.0.1:0", "127.0.0.2:0");
}

static void test_relay_ipv6(void **state)
{
    (void)state;
    relay_round_trip("[::1]:0", "[::1]:0", NULL);
}

/* EVEN-PORT with R through real sockets: the odd port is bound by the relay thread
 * while the reservation waits (another socket cannot take it), and the claiming
 * Allocate gets it. */
static void test_reservation_holds_odd_port(void **state)
{
    (void)state;
    plane_t p;
    plane_start(&p, "127.0.0.1:0");
    client_t a = {.sock = udp_open("127.0.0.1:0"), .server = p.server};
    req_t r;
    client_req(&a, &r, PL_STUN_METHOD_ALLOCATE);
    req_transport(&r);
    assert_int_equal(client_call(&a, &r, false), 401);
    client_req(&a, &r, PL_STUN_METHOD_ALLOCATE);
    req_transport(&r);
    uint8_t even_r = 0x80;
    pl_stun_add(&r.b, PL_STUN_ATTR_EVEN_PORT, &even_r, 1);
    assert_int_equal(client_call(&a, &r, true), 0);
    pl_sockaddr_t relayed, odd;
    uint64_t token;
    assert_int_equal(pl_stun_get_addr(&a.m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &relayed), 0);
    assert_int_equal(pl_stun_get_u64(&a.m, PL_STUN_ATTR_RESERVATION_TOKEN, &token), 0);
    assert_int_equal(pl_sockaddr_port(&relayed) % 2, 0);
    odd = relayed;
    pl_sockaddr_set_port(&odd, (uint16_t)(pl_sockaddr_port(&relayed) + 1));
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, &odd.sa, pl_sockaddr_len(&odd)), -1);
    assert_int_equal(errno, EADDRINUSE);
    close(fd);
    client_t b = {.sock = udp_open("127.0.0.1:0"), .server = p.server};
    memcpy(b.nonce, a.nonce, sizeof b.nonce);
    client_req(&b, &r, PL_STUN_METHOD_ALLOCATE);
    req_transport(&r);
    pl_stun_add_u64(&r.b, PL_STUN_ATTR_RESERVATION_TOKEN, token);
    assert_int_equal(client_call(&b, &r, true), 0);
    pl_sockaddr_t got;
    assert_int_equal(pl_stun_get_addr(&b.m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &got), 0);
    assert_true(pl_sockaddr_equal(&got, &odd));
    close(a.sock.fd);
    close(b.sock.fd);
    plane_stop(&p);
}

/* ---- the module, as parleyd runs it ---- */

static void test_module_life_cycle(void **state)
{
    (void)state;
    const char *ov[] = {"turn.listen=127.0.0.1:0", "turn.threads=2"};
    pl_config_t *cfg = tenv_config(ov, 2);
    pl_metrics_t *reg = pl_metrics_create();
    pl_host_t host = {NULL, reg, pl_metrics_shard_create(reg), cfg};
    void *st = NULL;
    assert_int_equal(pl_turn_module.validate(cfg, &(pl_config_error_t){{0}}), 0);
    assert_true(pl_turn_module.enabled(cfg));
    assert_int_equal(pl_turn_module.start(&host, &st), 0);
    assert_true(pl_turn_module.ready(st));
    pl_buf_t b;
    pl_buf_init(&b);
    pl_turn_module.stats_json(st, &b);
    assert_non_null(strstr(b.data, "\"threads\":2"));
    assert_non_null(strstr(b.data, "\"allocations\":0"));
    pl_buf_deinit(&b);
    const char *ov2[] = {"turn.listen=127.0.0.1:0", "turn.threads=2", "turn.users=zed:pw"};
    pl_config_t *next = tenv_config(ov2, 3);
    assert_int_equal(pl_turn_module.reload(st, next), 0);
    pl_turn_module.drain(st);
    assert_false(pl_turn_module.ready(st));
    assert_true(pl_turn_module.drained(st));
    pl_turn_module.stop(st);
    pl_config_unref(next);
    pl_config_unref(cfg);
    pl_metrics_destroy(reg);
}

static void test_module_refuses_taken_port(void **state)
{
    (void)state;
    udp_t taken = udp_open("127.0.0.1:0");
    char l[64], a[PL_SOCKADDR_STRLEN];
    snprintf(l, sizeof l, "turn.listen=%s", pl_sockaddr_str(&taken.addr, a, sizeof a));
    const char *ov[] = {l};
    pl_config_t *cfg = tenv_config(ov, 1);
    pl_metrics_t *reg = pl_metrics_create();
    pl_host_t host = {NULL, reg, pl_metrics_shard_create(reg), cfg};
    void *st = NULL;
    assert_int_equal(pl_turn_module.start(&host, &st), -EADDRINUSE);
    close(taken.fd);
    pl_config_unref(cfg);
    pl_metrics_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_ipv4),
        cmocka_unit_test(test_relay_ipv6),
        cmocka_unit_test(test_reservation_holds_odd_port),
        cmocka_unit_test(test_module_life_cycle),
        cmocka_unit_test(test_module_refuses_taken_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
