/* test_turn_perm.c: the TURN core on an allocation with a fake I/O and a fake clock:
 * CreatePermission, ChannelBind, Send/Data indications, ChannelData both ways, expiry
 * of permissions and channels, the bandwidth cap, Binding, 420, malformed input and the
 * unauthenticated rate limit. */
#include "turn_fake.h"

#define PEER "203.0.113.10:5000"
#define PEER2 "203.0.113.11:5000"

static tenv_t *with_alloc(const char *const *ov, size_t n)
{
    tenv_t *e = tenv_new(ov, n);
    pl_stun_msg_t m;
    assert_int_equal(do_allocate(e, &m), 0);
    return e;
}

static pl_sockaddr_t addr(const char *s)
{
    pl_sockaddr_t a;
    assert_int_equal(pl_sockaddr_parse(s, -1, &a), 0);
    return a;
}

/* Sends a Send indication from the default client. */
static void send_ind(tenv_t *e, const char *peer, const char *data, bool df)
{
    req_t r;
    req_init(e, &r, PL_STUN_METHOD_SEND, PL_STUN_CLASS_INDICATION);
    req_peer(&r, peer);
    pl_stun_add(&r.b, PL_STUN_ATTR_DATA, data, strlen(data));
    if (df)
        pl_stun_add(&r.b, PL_STUN_ATTR_DONT_FRAGMENT, NULL, 0);
    tenv_input(e, &r, req_plain(&r));
}

static void send_chandata(tenv_t *e, uint16_t ch, const char *data)
{
    uint8_t buf[256];
    size_t len = strlen(data);
    buf[0] = (uint8_t)(ch >> 8);
    buf[1] = (uint8_t)ch;
    buf[2] = 0;
    buf[3] = (uint8_t)len;
    memcpy(buf + 4, data, len);
    pl_turn_server_input(e->srv, &e->conn, buf, 4 + len);
}

/* Delivers data from peer to the relay of family f; returns packets sent to clients. */
static size_t from_peer(tenv_t *e, int f, const char *peer, const char *data)
{
    uint8_t buf[PL_TURN_HEADROOM + 256 + PL_TURN_TAILROOM];
    size_t len = strlen(data), before = e->io.n_client;
    memcpy(buf + PL_TURN_HEADROOM, data, len);
    pl_sockaddr_t p = addr(peer);
    pl_turn_server_peer_input(e->srv, tenv_relay(e, f), &p, buf + PL_TURN_HEADROOM, len);
    return e->io.n_client - before;
}

static fake_pkt_t *last_client(tenv_t *e)
{
    return &e->io.to_client[(e->io.n_client - 1) % FAKE_MAX];
}

static fake_pkt_t *last_peer(tenv_t *e)
{
    return &e->io.to_peer[(e->io.n_peer - 1) % FAKE_MAX];
}

static void test_permission_and_send_indication(void **state)
{
    (void)state;
    tenv_t *e = with_alloc(NULL, 0);
    send_ind(e, PEER, "hello", false);              /* no permission yet: dropped */
    assert_int_equal(e->io.n_peer, 0);
    assert_int_equal(drops(e, PL_TURN_DROP_NO_PERMISSION), 1);
    assert_int_equal(do_permission(e, PEER), 0);
    send_ind(e, "203.0.113.10:6000", "hello", true); /* permissions are per IP */
    assert_int_equal(e->io.n_peer, 1);
    fake_pkt_t *p = last_peer(e);
    assert_int_equal(p->len, 5);
    assert_memory_equal(p->buf, "hello", 5);
    assert_int_equal(pl_sockaddr_port(&p->peer), 6000);
    assert_int_equal(p->flags, PL_TURN_SEND_DF);
    assert_int_equal(counter(e, e->ids.pkts[PL_TURN_DIR_C2P]), 1);
    assert_int_equal(counter(e, e->ids.bytes[PL_TURN_DIR_C2P]), 5);
    send_ind(e, PEER2, "nope", false);
    assert_int_equal(e->io.n_peer, 1);
    tenv_free(e);
}

static void test_data_indication_from_peer(void **state)
{
    (void)state;
    tenv_t *e = with_alloc(NULL, 0);
    assert_int_equal(from_peer(e, 0, PEER, "x"), 0);  /* no permission: dropped */
    assert_int_equal(do_permission(e, PEER), 0);
    assert_int_equal(from_peer(e, 0, PEER, "hello"), 1);
    fake_pkt_t *p = last_client(e);
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, p->buf, p->len), 0);
    assert_int_equal(m.method, PL_STUN_METHOD_DATA);
    assert_int_equal(m.cls, PL_STUN_CLASS_INDICATION);
    pl_sockaddr_t peer;
    const uint8_t *v;
    size_t len;
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_PEER_ADDRESS, &peer), 0);
    pl_sockaddr_t want = addr(PEER);
    assert_true(pl_sockaddr_equal(&peer, &want));
    assert_int_equal(pl_stun_get_bytes(&m, PL_STUN_ATTR_DATA, &v, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(v, "hello", 5);
    assert_int_equal(p->len % 4, 0);
    assert_true(pl_sockaddr_equal(&p->conn.client, &e->conn.client));
    tenv_free(e);
}

static void test_channel_bind_and_channel_data(void **state)
{
    (void)state;
    tenv_t *e = with_alloc(NULL, 0);
    send_chandata(e, 0x4001, "early");              /* unbound: dropped */
    assert_int_equal(drops(e, PL_TURN_DROP_NO_CHANNEL), 1);
    assert_int_equal(do_channel_bind(e, 0x4001, PEER), 0);
    send_chandata(e, 0x4001, "ping");
    assert_int_equal(e->io.n_peer, 1);
    assert_memory_equal(last_peer(e)->buf, "ping", 4);
    assert_int_equal(last_peer(e)->flags, 0);
    /* Peer to client goes out as ChannelData now (the bind installed the permission). */
    assert_int_equal(from_peer(e, 0, PEER, "pong!"), 1);
    fake_pkt_t *p = last_client(e);
    assert_int_equal(p->len, 4 + 5);                /* UDP: no padding */
    assert_int_equal(pl_stun_rd16(p->buf), 0x4001);
    assert_int_equal(pl_stun_rd16(p->buf + 2), 5);
    assert_memory_equal(p->buf + 4, "pong!", 5);
    assert_int_equal(counter(e, e->ids.pkts[PL_TURN_DIR_P2C]), 1);
    /* Re-binding the same pair refreshes; conflicting binds are 400. */
    assert_int_equal(do_channel_bind(e, 0x4001, PEER), 0);
    assert_int_equal(do_channel_bind(e, 0x4001, PEER2), 400);
    assert_int_equal(do_channel_bind(e, 0x4002, PEER), 400);
    assert_int_equal(do_channel_bind(e, 0x3FFF, PEER2), 400);
    assert_int_equal(do_channel_bind(e, 0x8000, PEER2), 400);
    assert_int_equal(do_channel_bind(e, 0x4002, "203.0.113.11:0"), 400);
    assert_int_equal(do_channel_bind(e, 0x4002, PEER2), 0);
    tenv_free(e);
}

static void test_rfc5766_channel_range(void **state)
{
    (void)state;
    /* RFC 5766 clients (coturn's uclient) bind 0x5000-0x7FFF, reserved by RFC 8656. */
    tenv_t *e = with_alloc(NULL, 0);
    assert_int_equal(do_channel_bind(e, 0x7FFF, PEER), 0);
    send_chandata(e, 0x7FFF, "old");
    assert_int_equal(e->io.n_peer, 1);
    assert_int_equal(from_peer(e, 0, PEER, "client"), 1);
    assert_int_equal(pl_stun_rd16(last_client(e)->buf), 0x7FFF);
    tenv_free(e);
}

static void test_stream_framing(void **state)
{
    (void)state;
    /* ChannelData on a stream is padded to 4 (RFC 8656 §12.5), any RFC 5766 channel. */
    uint8_t f[16] = {0x58, 0x2f, 0x00, 0x05, 'a', 'b', 'c', 'd', 'e', 0, 0, 0, 0x40};
    assert_int_equal(pl_turn_frame_len(f, 3), 0);
    assert_int_equal(pl_turn_frame_len(f, 11), 0);
    assert_int_equal(pl_turn_frame_len(f, 12), 12);
    assert_int_equal(pl_turn_frame_len(f, 16), 12);
    f[0] = 0x40;
    assert_int_equal(pl_turn_frame_len(f, 16), 12);
    f[0] = 0x80;                                    /* neither STUN nor ChannelData */
    assert_true(pl_turn_frame_len(f, 16) < 0);
    /* Over TCP the peer->client ChannelData is padded. */
    tenv_t *e = with_alloc(NULL, 0);
    e->srv->list[0]->conn.transport = PL_TURN_TCP;  /* as if allocated over TCP */
    pl_turn_alloc_t *a = e->srv->list[0];
    pl_sockaddr_t peer = addr(PEER);
    pl_turn_chan_add(a, 0x4000, &peer, e->io.now_ms + 1000);
    pl_turn_perm_add(a, &peer, e->io.now_ms + 1000);
    uint8_t buf[PL_TURN_HEADROOM + 8 + PL_TURN_TAILROOM];
    memcpy(buf + PL_TURN_HEADROOM, "abcde", 5);
    pl_turn_server_peer_input(e->srv, &a->relay[0], &peer, buf + PL_TURN_HEADROOM, 5);
    fake_pkt_t *p = last_client(e);
    assert_int_equal(p->len, 12);
    assert_int_equal(pl_stun_rd16(p->buf + 2), 5);
    assert_int_equal(p->buf[9] | p->buf[10] | p->buf[11], 0);
    tenv_free(e);
}

static void test_peer_policy_and_family(void **state)
{
    (void)state;
    tenv_t *e = with_alloc(NULL, 0);
    assert_int_equal(do_permission(e, "127.0.0.1:5000"), 403);
    assert_int_equal(do_permission(e, "10.1.2.3:5000"), 403);
    assert_int_equal(do_channel_bind(e, 0x4000, "192.168.1.1:5000"), 403);
    assert_int_equal(do_permission(e, "[2001:db8::5]:5000"), 443);  /* IPv4-only allocation */
    assert_int_equal(do_channel_bind(e, 0x4000, "[2001:db8::5]:5000"), 443);
    /* All or nothing: one bad peer refuses the request. */
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_CREATE_PERMISSION, PL_STUN_CLASS_REQUEST);
    req_peer(&r, PEER);
    req_peer(&r, "169.254.169.254:80");
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 403);
    send_ind(e, PEER, "x", false);
    assert_int_equal(e->io.n_peer, 0);
    /* No XOR-PEER-ADDRESS: 400. */
    req_init(e, &r, PL_STUN_METHOD_CREATE_PERMISSION, PL_STUN_CLASS_REQUEST);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 400);
    tenv_free(e);
    const char *ov[] = {"turn.allowed_peers=127.0.0.0/8"};
    e = with_alloc(ov, 1);
    assert_int_equal(do_permission(e, "127.0.0.1:5000"), 0);
    tenv_free(e);
}

static void test_requests_without_allocation(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    assert_int_equal(do_permission(e, PEER), 437);
    assert_int_equal(do_channel_bind(e, 0x4000, PEER), 437);
    send_ind(e, PEER, "x", false);
    send_chandata(e, 0x4000, "x");
    assert_int_equal(drops(e, PL_TURN_DROP_NO_ALLOCATION), 2);
    tenv_free(e);
}

static void test_wrong_user_on_allocation_441(void **state)
{
    (void)state;
    tenv_t *e = with_alloc(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_CREATE_PERMISSION, PL_STUN_CLASS_REQUEST);
    req_peer(&r, PEER);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "bob", "builder", NULL), &m), 441);
    tenv_free(e);
}

static void test_permission_and_channel_expiry(void **state)
{
    (void)state;
    tenv_t *e = with_alloc(NULL, 0);
    assert_int_equal(do_channel_bind(e, 0x4000, PEER), 0);
    assert_int_equal(do_permission(e, PEER2), 0);
    tenv_advance(e, 299 * 1000);
    send_ind(e, PEER2, "ok", false);
    assert_int_equal(e->io.n_peer, 1);
    tenv_advance(e, 1000);                          /* 300 s: permission gone */
    send_ind(e, PEER2, "late", false);
    assert_int_equal(e->io.n_peer, 1);
    assert_int_equal(from_peer(e, 0, PEER2, "late"), 0);
    /* The channel outlives its permission unless refreshed: data needs both. */
    send_chandata(e, 0x4000, "c");
    assert_int_equal(e->io.n_peer, 1);
    assert_int_equal(do_channel_bind(e, 0x4000, PEER), 0);  /* refresh both */
    send_chandata(e, 0x4000, "c");
    assert_int_equal(e->io.n_peer, 2);
    tenv_advance(e, 600 * 1000);
    send_chandata(e, 0x4000, "c");
    assert_int_equal(e->io.n_peer, 2);
    pl_turn_server_tick(e->srv);                    /* prunes what expired */
    tenv_free(e);
}

static void test_bandwidth_cap(void **state)
{
    (void)state;
    const char *ov[] = {"turn.max_bps=1000"};
    tenv_t *e = with_alloc(ov, 1);
    assert_int_equal(do_channel_bind(e, 0x4000, PEER), 0);
    char data[101];
    memset(data, 'a', 100);
    data[100] = '\0';
    for (int i = 0; i < 15; i++)
        send_chandata(e, 0x4000, data);
    assert_int_equal(e->io.n_peer, 10);             /* one second of burst */
    assert_int_equal(drops(e, PL_TURN_DROP_BANDWIDTH), 5);
    tenv_advance(e, 500);                           /* 500 bytes more */
    for (int i = 0; i < 10; i++)
        send_chandata(e, 0x4000, data);
    assert_int_equal(e->io.n_peer, 15);
    /* The other direction has its own bucket. */
    for (int i = 0; i < 10; i++)
        from_peer(e, 0, PEER, data);
    assert_int_equal(counter(e, e->ids.pkts[PL_TURN_DIR_P2C]), 10);
    tenv_free(e);
}

static void test_binding(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST);
    size_t len = req_plain(&r);
    assert_int_equal(len, 20);
    assert_int_equal(roundtrip(e, &r, len, &m), 0);
    pl_sockaddr_t xm, mapped;
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &xm), 0);
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_MAPPED_ADDRESS, &mapped), 0);
    assert_true(pl_sockaddr_equal(&xm, &e->conn.client));
    assert_true(pl_sockaddr_equal(&mapped, &e->conn.client));
    /* Amplification bound: no SOFTWARE, no FINGERPRINT unless asked. */
    assert_int_equal(m.len, 20 + 12 + 12);
    req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST);
    pl_stun_add_fingerprint(&r.b);
    assert_int_equal(roundtrip(e, &r, req_plain(&r), &m), 0);
    assert_int_equal(pl_stun_check_fingerprint(&m), 0);
    /* IPv6 client. */
    e->conn.client = addr("[2001:db8::7]:1234");
    req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST);
    assert_int_equal(roundtrip(e, &r, req_plain(&r), &m), 0);
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &xm), 0);
    assert_true(pl_sockaddr_equal(&xm, &e->conn.client));
    tenv_free(e);
}

static void test_unknown_attribute_420(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST);
    pl_stun_add(&r.b, 0x7777, "abcd", 4);           /* comprehension-required, unknown */
    pl_stun_add(&r.b, 0xC001, "abcd", 4);           /* optional: ignored */
    assert_int_equal(roundtrip(e, &r, req_plain(&r), &m), 420);
    uint16_t types[4];
    size_t n;
    assert_int_equal(pl_stun_get_unknown_attrs(&m, types, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(types[0], 0x7777);
    tenv_free(e);
}

static void test_malformed_input(void **state)
{
    (void)state;
    tenv_t *e = with_alloc(NULL, 0);
    size_t sent = e->io.n_client;
    uint8_t junk[64] = {0xFF, 0x01, 0x02};
    pl_turn_server_input(e->srv, &e->conn, junk, sizeof junk);
    assert_int_equal(drops(e, PL_TURN_DROP_NOT_STUN), 1);
    uint8_t chan[8] = {0x40, 0x00, 0x00, 0x10};     /* length beyond the datagram */
    pl_turn_server_input(e->srv, &e->conn, chan, sizeof chan);
    assert_int_equal(drops(e, PL_TURN_DROP_MALFORMED), 1);
    /* A request whose attribute runs past the end: header fine, so 400. */
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST);
    pl_stun_add(&r.b, PL_STUN_ATTR_SOFTWARE, "abcdefgh", 8);
    size_t len = req_plain(&r);
    r.buf[23] = 200;                                /* SOFTWARE length */
    assert_int_equal(roundtrip(e, &r, len, &m), 400);
    assert_int_equal(drops(e, PL_TURN_DROP_MALFORMED), 2);
    /* A bad FINGERPRINT: dropped silently. */
    req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST);
    pl_stun_add_fingerprint(&r.b);
    len = req_plain(&r);
    r.buf[len - 1] ^= 1;
    tenv_input(e, &r, len);
    assert_int_equal(drops(e, PL_TURN_DROP_BAD_FINGERPRINT), 1);
    /* A success response sent to the server: dropped. */
    req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_SUCCESS);
    tenv_input(e, &r, req_plain(&r));
    assert_int_equal(drops(e, PL_TURN_DROP_UNEXPECTED), 1);
    assert_int_equal(e->io.n_client, sent + 1);
    /* Truncations of a valid signed request never crash or answer wrongly. */
    req_init(e, &r, PL_STUN_METHOD_REFRESH, PL_STUN_CLASS_REQUEST);
    len = req_sign(e, &r, "alice", "wonderland", NULL);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t copy[1500];
        memcpy(copy, r.buf, cut);
        pl_turn_server_input(e->srv, &e->conn, copy, cut);
    }
    assert_int_equal(pl_turn_server_count(e->srv), 1);
    tenv_free(e);
}

static void test_unauthenticated_rate_limit(void **state)
{
    (void)state;
    const char *ov[] = {"turn.unauth_rate=20"};
    tenv_t *e = tenv_new(ov, 1);
    req_t r;
    for (int i = 0; i < 50; i++) {
        req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST);
        tenv_input(e, &r, req_plain(&r));
    }
    assert_int_equal(e->io.n_client, 20);           /* burst: one second's worth */
    assert_int_equal(drops(e, PL_TURN_DROP_RATE_LIMITED), 30);
    /* Another source is not affected. */
    e->conn.client = addr("198.51.100.99:1");
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    tenv_input(e, &r, req_plain(&r));
    assert_int_equal(e->io.n_client, 21);
    /* Refill: 20 per second. */
    e->conn.client = addr("198.51.100.7:40000");
    tenv_advance(e, 500);
    for (int i = 0; i < 20; i++) {
        req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST);
        tenv_input(e, &r, req_plain(&r));
    }
    assert_int_equal(e->io.n_client, 31);
    /* A stream (TCP/TLS) client proved its address: never limited here. */
    e->conn.transport = PL_TURN_TCP;
    for (int i = 0; i < 50; i++) {
        req_init(e, &r, PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST);
        tenv_input(e, &r, req_plain(&r));
    }
    assert_int_equal(e->io.n_client, 81);
    assert_int_equal(drops(e, PL_TURN_DROP_RATE_LIMITED), 30 + 10);
    tenv_free(e);
}

static void test_dual_allocation_relays_both_families(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, 2u << 24);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 0);
    assert_int_equal(do_permission(e, "[2001:db8::5]:5000"), 0);
    assert_int_equal(do_channel_bind(e, 0x4100, PEER), 0);
    send_ind(e, "[2001:db8::5]:5000", "six", false);
    assert_int_equal(last_peer(e)->relay, tenv_relay(e, 1));
    send_chandata(e, 0x4100, "four");
    assert_int_equal(last_peer(e)->relay, tenv_relay(e, 0));
    assert_int_equal(from_peer(e, 1, "[2001:db8::5]:5000", "back"), 1);
    tenv_free(e);
}

static void test_send_failures_counted(void **state)
{
    (void)state;
    tenv_t *e = with_alloc(NULL, 0);
    assert_int_equal(do_channel_bind(e, 0x4000, PEER), 0);
    e->io.send_err = -ENOBUFS;
    send_chandata(e, 0x4000, "x");
    from_peer(e, 0, PEER, "y");
    assert_int_equal(drops(e, PL_TURN_DROP_SEND_FAILED), 2);
    e->io.send_err = 0;
    tenv_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_permission_and_send_indication),
        cmocka_unit_test(test_data_indication_from_peer),
        cmocka_unit_test(test_channel_bind_and_channel_data),
        cmocka_unit_test(test_rfc5766_channel_range),
        cmocka_unit_test(test_stream_framing),
        cmocka_unit_test(test_peer_policy_and_family),
        cmocka_unit_test(test_requests_without_allocation),
        cmocka_unit_test(test_wrong_user_on_allocation_441),
        cmocka_unit_test(test_permission_and_channel_expiry),
        cmocka_unit_test(test_bandwidth_cap),
        cmocka_unit_test(test_binding),
        cmocka_unit_test(test_unknown_attribute_420),
        cmocka_unit_test(test_malformed_input),
        cmocka_unit_test(test_unauthenticated_rate_limit),
        cmocka_unit_test(test_dual_allocation_relays_both_families),
        cmocka_unit_test(test_send_failures_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
