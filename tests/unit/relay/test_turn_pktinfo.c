/* test_turn_pktinfo.c: a UDP listener bound to 0.0.0.0 answers from the address the
 * client sent to (IP_PKTINFO): a client that sends to 127.0.0.2 gets the Binding
 * response, the Allocate responses and relayed ChannelData from 127.0.0.2, not from
 * the kernel's choice (127.0.0.1). */
#include "turn_fake.h"

#include <poll.h>
#include <unistd.h>

static int udp_socket(const char *addr, pl_sockaddr_t *bound)
{
    pl_sockaddr_t a;
    assert_int_equal(pl_sockaddr_parse(addr, -1, &a), 0);
    int fd = pl_net_listen(&a, SOCK_DGRAM, 0, 0);
    assert_true(fd >= 0);
    assert_int_equal(pl_net_local_addr(fd, bound), 0);
    return fd;
}

/* Receives one datagram (2 s) and checks where it came from. */
static ssize_t recv_from(int fd, uint8_t *buf, size_t cap, const pl_sockaddr_t *want_from)
{
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 2000), 1);
    pl_sockaddr_t from;
    socklen_t alen = sizeof from;
    ssize_t n = recvfrom(fd, buf, cap, 0, &from.sa, &alen);
    assert_true(n > 0);
    char a[PL_SOCKADDR_STRLEN], b[PL_SOCKADDR_STRLEN];
    if (!pl_sockaddr_equal(&from, want_from))
        fail_msg("datagram from %s, expected %s", pl_sockaddr_str(&from, a, sizeof a),
                 pl_sockaddr_str(want_from, b, sizeof b));
    return n;
}

/* Sends a request built in r (signed with nonce when given) and returns the reply. */
static int call(int fd, const pl_sockaddr_t *server, req_t *r, const char *nonce, uint8_t *buf,
                pl_stun_msg_t *m)
{
    if (nonce) {
        pl_stun_add_str(&r->b, PL_STUN_ATTR_USERNAME, "alice");
        pl_stun_add_str(&r->b, PL_STUN_ATTR_REALM, "example.org");
        pl_stun_add_str(&r->b, PL_STUN_ATTR_NONCE, nonce);
        pl_stun_cred_t c = {"alice", 5, "example.org", 11, "wonderland", 10};
        pl_stun_key_t key;
        pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &key);
        pl_stun_add_integrity(&r->b, key.bytes, key.len);
    }
    int n = pl_stun_build_finish(&r->b);
    assert_true(n > 0);
    assert_int_equal(sendto(fd, r->buf, (size_t)n, 0, &server->sa, pl_sockaddr_len(server)), n);
    ssize_t got = recv_from(fd, buf, 2048, server);
    assert_int_equal(pl_stun_parse(m, buf, (size_t)got), 0);
    if (m->cls == PL_STUN_CLASS_SUCCESS)
        return 0;
    pl_stun_error_t err;
    assert_int_equal(pl_stun_get_error(m, &err), 0);
    return err.code;
}

static void test_wildcard_answers_from_destination(void **state)
{
    (void)state;
    const char *ov[] = {"turn.listen=0.0.0.0:0", "turn.relay_ip=127.0.0.1",
                        "turn.allowed_peers=127.0.0.1", "turn.relay_ports=47000-47099"};
    tenv_t *e = tenv_new(ov, PL_ARRAY_LEN(ov));
    pl_turn_thread_t *th;
    pl_turn_thread_cfg_t tc = {0, e->set, e->sh, e->shard, &e->ids, e->set->listen, 1, NULL, 0};
    /* Port 0: the kernel picks the UDP port and the TCP listener must get the same
     * number on the wildcard address, which any local TCP socket of another process
     * may hold at that moment: try a few ports. */
    int rc = -EADDRINUSE;
    for (int attempt = 0; attempt < 10 && rc == -EADDRINUSE; attempt++)
        rc = pl_turn_thread_create(&tc, &th);
    assert_int_equal(rc, 0);
    pl_sockaddr_t bound, server, me, peer, relayed;
    pl_turn_thread_listen_addr(th, 0, &bound);
    assert_int_equal(pl_turn_thread_start(th), 0);
    assert_int_equal(pl_sockaddr_parse("127.0.0.2:0", -1, &server), 0);
    pl_sockaddr_set_port(&server, pl_sockaddr_port(&bound));
    int cfd = udp_socket("127.0.0.1:0", &me), pfd = udp_socket("127.0.0.1:0", &peer);
    uint8_t buf[2048];
    pl_stun_msg_t m;
    req_t r;

    req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST);
    assert_int_equal(call(cfd, &server, &r, NULL, buf, &m), 0);

    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(call(cfd, &server, &r, NULL, buf, &m), 401);
    const uint8_t *nv;
    size_t nlen;
    char nonce[64];
    assert_int_equal(pl_stun_get_bytes(&m, PL_STUN_ATTR_NONCE, &nv, &nlen), 0);
    memcpy(nonce, nv, nlen);
    nonce[nlen] = '\0';
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(call(cfd, &server, &r, nonce, buf, &m), 0);
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &relayed), 0);
    req_init(e, &r, PL_STUN_METHOD_CHANNEL_BIND, PL_STUN_CLASS_REQUEST);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_CHANNEL_NUMBER, 0x4002u << 16);
    pl_stun_add_addr(&r.b, PL_STUN_ATTR_XOR_PEER_ADDRESS, &peer);
    assert_int_equal(call(cfd, &server, &r, nonce, buf, &m), 0);
    /* Peer data goes out through the listener from 127.0.0.2 as well. */
    assert_int_equal(sendto(pfd, "data", 4, 0, &relayed.sa, pl_sockaddr_len(&relayed)), 4);
    assert_int_equal(recv_from(cfd, buf, sizeof buf, &server), 8);
    assert_int_equal(pl_stun_rd16(buf), 0x4002);
    assert_memory_equal(buf + 4, "data", 4);

    close(cfd);
    close(pfd);
    pl_turn_thread_destroy(th);
    tenv_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wildcard_answers_from_destination),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
