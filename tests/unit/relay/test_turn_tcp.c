/* test_turn_tcp.c: the core's RFC 6062 logic and TCP/TLS client rules on the fake I/O
 * with fake TCP operations: TCP Allocate checks (400 over UDP and with UDP-only
 * attributes, 442 without TCP relaying), Connect (deferred success with
 * CONNECTION-ID, 446, 447 now and later and on timeout, 403 without permission, 400,
 * 437), incoming peers (ConnectionAttempt, refused without permission, 30 s bind
 * deadline), ConnectionBind (400s, 441 for another user, bound once), closing a
 * client connection deleting its allocation, and the stream byte buffer. */
#include "turn_fake.h"
#include "relay/turn/turn_stream_int.h"

typedef struct tcp_fake {
    pl_turn_tcpconn_t *connects[16];
    size_t n_connects;
    pl_turn_tcpconn_t *bound;
    pl_turn_conn_t bound_conn;
    size_t n_binds;
    uint32_t closed[16];            /* CONNECTION-IDs closed through the io */
    size_t n_closed;
    int connect_err;
} tcp_fake_t;

static tcp_fake_t tf;

static int tf_connect(void *ctx, pl_turn_relay_t *relay, pl_turn_tcpconn_t *tc)
{
    PL_UNUSED(ctx);
    assert_true(relay->fd >= 0);
    if (tf.connect_err)
        return tf.connect_err;
    tf.connects[tf.n_connects++ % 16] = tc;
    tc->io_data = &tf;
    return 0;
}

static int tf_bind(void *ctx, pl_turn_tcpconn_t *tc, const pl_turn_conn_t *data_conn)
{
    PL_UNUSED(ctx);
    tf.bound = tc;
    tf.bound_conn = *data_conn;
    tf.n_binds++;
    return 0;
}

static void tf_close(void *ctx, pl_turn_tcpconn_t *tc)
{
    PL_UNUSED(ctx);
    tf.closed[tf.n_closed++ % 16] = tc->cid;
}

static const pl_turn_tcp_ops_t tf_ops = {tf_connect, tf_bind, tf_close};

static tenv_t *tcp_env(bool with_ops)
{
    memset(&tf, 0, sizeof tf);
    const char *ov[] = {"turn.allowed_peers=192.0.2.0/24"};
    tenv_t *e = tenv_new(ov, PL_ARRAY_LEN(ov));
    if (with_ops)
        pl_turn_server_set_tcp_ops(e->srv, &tf_ops);
    e->conn.transport = PL_TURN_TCP;
    e->conn.id = 7;
    return e;
}

/* An Allocate asking for TCP (plus an extra attribute type when extra != 0). */
static int allocate_tcp(tenv_t *e, uint16_t extra)
{
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_REQUESTED_TRANSPORT, (uint32_t)PL_STUN_TRANSPORT_TCP << 24);
    if (extra == PL_STUN_ATTR_EVEN_PORT)
        pl_stun_add(&r.b, extra, "\0", 1);
    else if (extra)
        pl_stun_add(&r.b, extra, "", 0);
    return roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m);
}

/* Sends Connect to peer; returns the reply code or -1 when none came (deferred). */
static int send_connect(tenv_t *e, const char *peer, pl_stun_msg_t *m)
{
    req_t r;
    req_init(e, &r, PL_STUN_METHOD_CONNECT, PL_STUN_CLASS_REQUEST);
    if (peer)
        req_peer(&r, peer);
    return roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), m);
}

/* ConnectionBind for cid on data connection conn as user; returns the reply code. */
static int send_bind(tenv_t *e, const pl_turn_conn_t *conn, const uint32_t *cid, const char *user,
                     const char *pass)
{
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_CONNECTION_BIND, PL_STUN_CLASS_REQUEST);
    if (cid)
        pl_stun_add_u32(&r.b, PL_STUN_ATTR_CONNECTION_ID, *cid);
    size_t len = req_sign(e, &r, user, pass, NULL);
    size_t before = e->io.n_client;
    pl_turn_server_input(e->srv, conn, r.buf, len);
    assert_true(e->io.n_client > before);
    return last_reply(e, &m);
}

static void test_tcp_allocate_rules(void **state)
{
    (void)state;
    tenv_t *e = tcp_env(true);
    assert_int_equal(allocate_tcp(e, PL_STUN_ATTR_DONT_FRAGMENT), 400);   /* RFC 6062 §5.1 */
    assert_int_equal(allocate_tcp(e, PL_STUN_ATTR_EVEN_PORT), 400);
    assert_int_equal(allocate_tcp(e, 0), 0);
    pl_turn_alloc_t *a = pl_turn_alloc_find(e->srv, &e->conn);
    assert_non_null(a);
    assert_true(a->tcp);
    /* Channels and Send indications do not apply to a TCP allocation. */
    assert_int_equal(do_permission(e, "192.0.2.1:5000"), 0);
    assert_int_equal(do_channel_bind(e, 0x4001, "192.0.2.1:5000"), 400);
    tenv_free(e);

    e = tcp_env(true);
    e->conn.transport = PL_TURN_UDP;        /* TCP relaying needs a TCP/TLS client */
    e->conn.id = 0;
    assert_int_equal(allocate_tcp(e, 0), 400);
    tenv_free(e);

    e = tcp_env(false);                     /* an io without TCP relaying */
    assert_int_equal(allocate_tcp(e, 0), 442);
    tenv_free(e);
}

static void test_connect_and_bind(void **state)
{
    (void)state;
    tenv_t *e = tcp_env(true);
    pl_stun_msg_t m;
    assert_int_equal(allocate_tcp(e, 0), 0);
    assert_int_equal(send_connect(e, "192.0.2.1:5000", &m), 403);  /* no permission yet */
    assert_int_equal(do_permission(e, "192.0.2.1:5000"), 0);
    size_t before = e->io.n_client;
    assert_int_equal(send_connect(e, "192.0.2.1:5000", &m), -1);   /* answered later */
    assert_int_equal(tf.n_connects, 1);
    pl_turn_tcpconn_t *tc = tf.connects[0];
    assert_int_equal(tc->state, PL_TURN_TC_CONNECTING);
    assert_int_equal(pl_turn_cid_thread(tc->cid), 0);
    /* A second Connect to the same peer while the first is in progress: 446. */
    assert_int_equal(send_connect(e, "192.0.2.1:5000", &m), 446);
    pl_turn_server_tcp_connected(e->srv, tc, 0);
    assert_int_equal(e->io.n_client, before + 2);
    assert_int_equal(last_reply(e, &m), 0);
    assert_int_equal(m.method, PL_STUN_METHOD_CONNECT);
    uint32_t cid = 0;
    assert_int_equal(pl_stun_get_u32(&m, PL_STUN_ATTR_CONNECTION_ID, &cid), 0);
    assert_int_equal(cid, tc->cid);
    /* The deferred answer is signed with alice's key. */
    pl_stun_cred_t c = {"alice", 5, "example.org", 11, "wonderland", 10};
    pl_stun_key_t key;
    pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &key);
    assert_int_equal(pl_stun_check_integrity(&m, key.bytes, key.len), 0);
    assert_int_equal(send_connect(e, "192.0.2.1:5000", &m), 446);  /* pending: still 446 */

    pl_turn_conn_t data = e->conn;
    data.id = 8;
    pl_sockaddr_parse("198.51.100.7:40001", -1, &data.client);
    assert_int_equal(send_bind(e, &data, &cid, "alice", "wonderland"), 0);
    assert_int_equal(tf.n_binds, 1);
    assert_ptr_equal(tf.bound, tc);
    assert_int_equal(tf.bound_conn.id, 8);
    assert_int_equal(tc->state, PL_TURN_TC_BOUND);
    assert_int_equal(send_bind(e, &data, &cid, "alice", "wonderland"), 400);   /* bound once */
    /* A bound connection never times out. */
    tenv_advance(e, 40000);
    pl_turn_server_tick(e->srv);
    assert_int_equal(tf.n_closed, 0);
    /* Deleting the allocation closes its peer connections through the io. */
    pl_turn_server_conn_closed(e->srv, &e->conn);
    assert_null(pl_turn_alloc_find(e->srv, &e->conn));
    assert_int_equal(tf.n_closed, 1);
    assert_int_equal(tf.closed[0], cid);
    tenv_free(e);
}

static void test_connect_errors(void **state)
{
    (void)state;
    tenv_t *e = tcp_env(true);
    pl_stun_msg_t m;
    assert_int_equal(send_connect(e, "192.0.2.1:5000", &m), 437);  /* no allocation */
    assert_int_equal(allocate_tcp(e, 0), 0);
    assert_int_equal(do_permission(e, "192.0.2.1:5000"), 0);
    assert_int_equal(do_permission(e, "192.0.2.2:5000"), 0);
    assert_int_equal(send_connect(e, NULL, &m), 400);
    assert_int_equal(send_connect(e, "192.0.2.1:0", &m), 400);
    assert_int_equal(send_connect(e, "[2001:db8::1]:5000", &m), 443);  /* no IPv6 relay */
    /* The connect cannot start: 447 at once. */
    tf.connect_err = -ENETUNREACH;
    assert_int_equal(send_connect(e, "192.0.2.1:5000", &m), 447);
    tf.connect_err = 0;
    /* It fails later: 447 then, and the peer address is free again. */
    assert_int_equal(send_connect(e, "192.0.2.1:5000", &m), -1);
    pl_turn_server_tcp_connected(e->srv, tf.connects[0], -ECONNREFUSED);
    assert_int_equal(last_reply(e, &m), 447);
    assert_int_equal(m.method, PL_STUN_METHOD_CONNECT);
    /* It never completes: 447 after 30 s, and the io closes the socket. */
    assert_int_equal(send_connect(e, "192.0.2.2:5000", &m), -1);
    uint32_t cid = tf.connects[1]->cid;
    size_t before = e->io.n_client;
    tenv_advance(e, 29000);
    pl_turn_server_tick(e->srv);
    assert_int_equal(e->io.n_client, before);
    tenv_advance(e, 1500);
    pl_turn_server_tick(e->srv);
    assert_int_equal(last_reply(e, &m), 447);
    assert_int_equal(tf.n_closed, 1);
    assert_int_equal(tf.closed[0], cid);
    /* Connect on a UDP allocation: 400. */
    tenv_free(e);
    e = tcp_env(true);
    e->conn.transport = PL_TURN_UDP;
    e->conn.id = 0;
    assert_int_equal(do_allocate(e, &m), 0);
    assert_int_equal(do_permission(e, "192.0.2.1:5000"), 0);
    assert_int_equal(send_connect(e, "192.0.2.1:5000", &m), 400);
    tenv_free(e);
}

static void test_incoming_and_bind_deadline(void **state)
{
    (void)state;
    tenv_t *e = tcp_env(true);
    pl_stun_msg_t m;
    assert_int_equal(allocate_tcp(e, 0), 0);
    pl_turn_relay_t *relay = tenv_relay(e, 0);
    pl_sockaddr_t peer;
    pl_sockaddr_parse("192.0.2.9:6000", -1, &peer);
    /* RFC 6062 §5.3: no permission for the peer, no connection. */
    uint64_t refused = drops(e, PL_TURN_DROP_NO_PERMISSION);
    assert_null(pl_turn_server_tcp_incoming(e->srv, relay, &peer));
    assert_int_equal(drops(e, PL_TURN_DROP_NO_PERMISSION), refused + 1);
    assert_int_equal(do_permission(e, "192.0.2.9:1"), 0);     /* permissions ignore ports */
    size_t before = e->io.n_client;
    pl_turn_tcpconn_t *tc = pl_turn_server_tcp_incoming(e->srv, relay, &peer);
    assert_non_null(tc);
    assert_int_equal(tc->state, PL_TURN_TC_PENDING);
    assert_int_equal(e->io.n_client, before + 1);
    fake_pkt_t *p = &e->io.to_client[(e->io.n_client - 1) % FAKE_MAX];
    assert_int_equal(p->conn.id, e->conn.id);      /* on the control connection */
    assert_int_equal(pl_stun_parse(&m, p->buf, p->len), 0);
    assert_int_equal(m.method, PL_STUN_METHOD_CONNECTION_ATTEMPT);
    assert_int_equal(m.cls, PL_STUN_CLASS_INDICATION);
    pl_sockaddr_t got;
    uint32_t cid = 0;
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_PEER_ADDRESS, &got), 0);
    assert_true(pl_sockaddr_equal(&got, &peer));
    assert_int_equal(pl_stun_get_u32(&m, PL_STUN_ATTR_CONNECTION_ID, &cid), 0);
    assert_int_equal(cid, tc->cid);
    /* Not bound within 30 s: closed, and the id is gone. */
    tenv_advance(e, 30500);
    pl_turn_server_tick(e->srv);
    assert_int_equal(tf.n_closed, 1);
    assert_int_equal(tf.closed[0], cid);
    pl_turn_conn_t data = e->conn;
    data.id = 9;
    assert_int_equal(send_bind(e, &data, &cid, "alice", "wonderland"), 400);
    assert_int_equal(tf.n_binds, 0);
    tenv_free(e);
}

static void test_bind_checks(void **state)
{
    (void)state;
    tenv_t *e = tcp_env(true);
    assert_int_equal(allocate_tcp(e, 0), 0);
    assert_int_equal(do_permission(e, "192.0.2.9:1"), 0);
    pl_sockaddr_t peer;
    pl_sockaddr_parse("192.0.2.9:6000", -1, &peer);
    pl_turn_tcpconn_t *tc = pl_turn_server_tcp_incoming(e->srv, tenv_relay(e, 0), &peer);
    assert_non_null(tc);
    uint32_t cid = tc->cid, bogus = cid ^ 0x00ABCDEFu;
    pl_turn_conn_t data = e->conn;
    data.id = 9;
    pl_turn_conn_t udp = data;
    udp.transport = PL_TURN_UDP;
    assert_int_equal(send_bind(e, &udp, &cid, "alice", "wonderland"), 400);   /* over UDP */
    assert_int_equal(send_bind(e, &data, NULL, "alice", "wonderland"), 400);  /* no id */
    assert_int_equal(send_bind(e, &data, &bogus, "alice", "wonderland"), 400);
    assert_int_equal(send_bind(e, &data, &cid, "bob", "builder"), 441);      /* other user */
    assert_int_equal(send_bind(e, &e->conn, &cid, "alice", "wonderland"), 400); /* control */
    assert_int_equal(send_bind(e, &data, &cid, "alice", "wonderland"), 0);
    assert_int_equal(tf.n_binds, 1);
    tenv_free(e);
}

static void test_closed_connection_deletes_allocation(void **state)
{
    (void)state;
    tenv_t *e = tcp_env(true);
    pl_stun_msg_t m;
    assert_int_equal(do_allocate(e, &m), 0);        /* a UDP relay over a TCP client */
    assert_non_null(pl_turn_alloc_find(e->srv, &e->conn));
    pl_turn_conn_t other = e->conn;
    other.id = 99;
    pl_turn_server_conn_closed(e->srv, &other);     /* another connection: no effect */
    assert_int_equal(pl_turn_server_count(e->srv), 1);
    pl_turn_server_conn_closed(e->srv, &e->conn);
    assert_int_equal(pl_turn_server_count(e->srv), 0);
    tenv_free(e);
}

static void test_chandata_stream_padding(void **state)
{
    (void)state;
    /* RFC 8656 §12.5 framing in both channel ranges, and a bad first byte. */
    uint8_t f[12] = {0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0};
    assert_int_equal(pl_turn_frame_len(f, 4), 0);
    assert_int_equal(pl_turn_frame_len(f, 11), 0);      /* padding still missing */
    assert_int_equal(pl_turn_frame_len(f, 12), 12);
    f[0] = 0x58;                                        /* RFC 5766 range */
    assert_int_equal(pl_turn_frame_len(f, 12), 12);
    f[0] = 0x80;
    assert_true(pl_turn_frame_len(f, 12) < 0);
}

static void test_sbuf(void **state)
{
    (void)state;
    pl_turn_sbuf_t b = {0};
    assert_int_equal(pl_turn_sbuf_reserve(&b, 100, 0), 0);  /* max 0: no room */
    assert_true(pl_turn_sbuf_reserve(&b, 100, 10000) >= 100);
    uint8_t chunk[3000];
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (uint8_t)i;
    assert_int_equal(pl_turn_sbuf_append(&b, chunk, sizeof chunk, 10000), 0);
    assert_int_equal(pl_turn_sbuf_append(&b, chunk, sizeof chunk, 10000), 0);
    assert_int_equal(pl_turn_sbuf_append(&b, chunk, sizeof chunk, 10000), 0);
    assert_int_equal(pl_turn_sbuf_append(&b, chunk, sizeof chunk, 10000), PL_ELIMIT);
    assert_int_equal(b.len, 9000);
    pl_turn_sbuf_consume(&b, 4000);
    assert_int_equal(pl_turn_sbuf_head(&b)[0], (uint8_t)(4000 % 3000));
    /* Room at the tail comes from moving the data to the front, never past max. */
    assert_int_equal(pl_turn_sbuf_reserve(&b, 6000, 10000), 5000);
    assert_int_equal(b.off, 0);
    assert_int_equal(pl_turn_sbuf_head(&b)[0], (uint8_t)(4000 % 3000));
    assert_int_equal(pl_turn_sbuf_append(&b, chunk, sizeof chunk, 10000), 0);
    pl_turn_sbuf_consume(&b, b.len);
    assert_int_equal(b.off, 0);
    pl_turn_sbuf_free(&b);
    assert_null(b.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_allocate_rules),
        cmocka_unit_test(test_connect_and_bind),
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_incoming_and_bind_deadline),
        cmocka_unit_test(test_bind_checks),
        cmocka_unit_test(test_closed_connection_deletes_allocation),
        cmocka_unit_test(test_chandata_stream_padding),
        cmocka_unit_test(test_sbuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
