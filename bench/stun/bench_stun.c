/* bench_stun.c: per-message cost of the STUN/TURN codec operations a TURN server does
 * per packet, next to the per-packet work of a do-nothing relay (a 100-byte memcpy),
 * the peer the relay's hot path is measured against.
 *
 * Run: build/bench/stun/bench_stun   (prints one line per operation: ns/op, Mops/s,
 * and the ratio to the memcpy baseline). Single-threaded; no I/O. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "relay/stun/pl_stun.h"

static volatile uint64_t g_sink;
static const uint8_t tid[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef void (*op_fn)(void);
static double g_baseline_ns;

static void run(const char *name, op_fn fn, long iters)
{
    for (long i = 0; i < iters / 10; i++)     /* warm up */
        fn();
    double t = now_s();
    for (long i = 0; i < iters; i++)
        fn();
    double ns = (now_s() - t) / (double)iters * 1e9;
    if (g_baseline_ns == 0)
        g_baseline_ns = ns;
    printf("%-44s %9.1f ns/op %9.2f Mops/s %8.1fx memcpy\n", name, ns, 1e3 / ns,
           ns / g_baseline_ns);
}

static uint8_t g_chan[104], g_send[256], g_alloc[512], g_out[512], g_copy[104];
static size_t g_send_len, g_alloc_len;
static pl_stun_msg_t g_alloc_msg;
static pl_stun_key_t g_key;
static pl_sockaddr_t g_peer;
static pl_stun_nonce_key_t g_nk = { .secret = { 1 }, .features = 1, .lifetime_s = 600 };
static char g_nonce[PL_STUN_NONCE_LEN + 1];
static const char *const g_secrets[] = { "secret" };

static void op_memcpy(void) { memcpy(g_copy, g_chan, 100); g_sink += g_copy[99]; }
static void op_classify(void) { g_sink += pl_stun_classify(g_chan, 104); }
static void op_chandata(void)
{
    pl_stun_chandata_t c = { 0 };
    g_sink += (uint64_t)pl_stun_chandata_parse(g_chan, 104, &c) + c.len;
}
static void op_chandata_frame(void)
{
    g_sink += (uint64_t)pl_stun_chandata_frame(g_chan, sizeof(g_chan), 0x4001, 100, false);
}
static void op_parse_send(void)
{
    pl_stun_msg_t m;
    g_sink += (uint64_t)pl_stun_parse(&m, g_send, g_send_len) + m.n_attrs;
}
static void op_parse_send_peer(void)
{
    pl_stun_msg_t m;
    pl_sockaddr_t a;
    const uint8_t *d;
    size_t len;
    pl_stun_parse(&m, g_send, g_send_len);
    pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_PEER_ADDRESS, &a);
    pl_stun_get_bytes(&m, PL_STUN_ATTR_DATA, &d, &len);
    g_sink += a.in4.sin_port + len;
}
static void op_build_data(void)
{
    pl_stun_builder_t b;
    pl_stun_build_init(&b, g_out, sizeof(g_out), 0x0017, tid);
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_PEER_ADDRESS, &g_peer);
    pl_stun_add(&b, PL_STUN_ATTR_DATA, g_chan, 100);
    g_sink += (uint64_t)pl_stun_build_finish(&b);
}
static void op_parse_alloc(void)
{
    pl_stun_msg_t m;
    g_sink += (uint64_t)pl_stun_parse(&m, g_alloc, g_alloc_len) + m.n_attrs;
}
static void op_fingerprint(void) { g_sink += (uint64_t)pl_stun_check_fingerprint(&g_alloc_msg); }
static void op_check_mi(void)
{
    g_sink += (uint64_t)pl_stun_check_integrity(&g_alloc_msg, g_key.bytes, g_key.len);
}
static void op_build_reply_mi_fp(void)
{
    pl_stun_builder_t b;
    pl_stun_build_reply(&b, g_out, sizeof(g_out), &g_alloc_msg, PL_STUN_CLASS_SUCCESS);
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &g_peer);
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &g_peer);
    pl_stun_add_u32(&b, PL_STUN_ATTR_LIFETIME, 600);
    pl_stun_add_integrity(&b, g_key.bytes, g_key.len);
    pl_stun_add_fingerprint(&b);
    g_sink += (uint64_t)pl_stun_build_finish(&b);
}
static void op_rest_check(void)
{
    pl_stun_key_t k;
    g_sink += (uint64_t)pl_turn_rest_check(&g_alloc_msg, g_secrets, 1, 1699999999, &k);
}
static void op_nonce_make(void) { g_sink += (uint64_t)pl_stun_nonce_make(&g_nk, 1700000000, &g_peer, g_nonce); }
static void op_nonce_check(void)
{
    g_sink += pl_stun_nonce_check(&g_nk, g_nonce, PL_STUN_NONCE_LEN, 1700000001, &g_peer);
}

static void setup(void)
{
    memset(&g_peer, 0, sizeof(g_peer));
    g_peer.in4.sin_family = AF_INET;
    g_peer.in4.sin_port = htons(49152);
    inet_pton(AF_INET, "198.51.100.2", &g_peer.in4.sin_addr);
    memset(g_chan + 4, 0xab, 100);
    pl_stun_chandata_frame(g_chan, sizeof(g_chan), 0x4001, 100, false);
    pl_stun_builder_t b;
    pl_stun_build_init(&b, g_send, sizeof(g_send), 0x0016, tid);
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_PEER_ADDRESS, &g_peer);
    pl_stun_add(&b, PL_STUN_ATTR_DATA, g_chan + 4, 100);
    g_send_len = (size_t)pl_stun_build_finish(&b);
    pl_turn_rest_cred_t c;
    pl_turn_rest_mint("secret", "alice", 1699990000, 10000, &c);
    pl_stun_cred_t lc = { c.username, strlen(c.username), "parley.test", 11, c.password,
                          strlen(c.password) };
    pl_stun_key_longterm(&lc, PL_STUN_PWALG_MD5, &g_key);
    pl_stun_build_init(&b, g_alloc, sizeof(g_alloc), 0x0003, tid);
    pl_stun_add_u32(&b, PL_STUN_ATTR_REQUESTED_TRANSPORT, 17u << 24);
    pl_stun_add_u32(&b, PL_STUN_ATTR_LIFETIME, 600);
    pl_stun_add_str(&b, PL_STUN_ATTR_USERNAME, c.username);
    pl_stun_add_str(&b, PL_STUN_ATTR_REALM, "parley.test");
    pl_stun_nonce_make(&g_nk, 1700000000, &g_peer, g_nonce);
    pl_stun_add_str(&b, PL_STUN_ATTR_NONCE, g_nonce);
    pl_stun_add_str(&b, PL_STUN_ATTR_SOFTWARE, "bench client 1.0");
    pl_stun_add_integrity(&b, g_key.bytes, g_key.len);
    pl_stun_add_fingerprint(&b);
    g_alloc_len = (size_t)pl_stun_build_finish(&b);
    pl_stun_parse(&g_alloc_msg, g_alloc, g_alloc_len);
}

int main(void)
{
    setup();
    printf("STUN codec, one thread; baseline = memcpy of a 100-byte payload\n");
    run("memcpy 100 B (do-nothing relay baseline)", op_memcpy, 50000000);
    run("classify datagram", op_classify, 50000000);
    run("ChannelData parse (100 B)", op_chandata, 50000000);
    run("ChannelData frame header in place", op_chandata_frame, 50000000);
    run("parse Send indication (peer+100 B data)", op_parse_send, 10000000);
    run("  + decode XOR-PEER-ADDRESS and DATA", op_parse_send_peer, 10000000);
    run("build Data indication (peer+100 B data)", op_build_data, 10000000);
    run("parse Allocate request (8 attributes)", op_parse_alloc, 10000000);
    run("check FINGERPRINT (Allocate, 140 B)", op_fingerprint, 5000000);
    run("check MESSAGE-INTEGRITY (HMAC-SHA1)", op_check_mi, 1000000);
    run("build Allocate success with MI + FP", op_build_reply_mi_fp, 1000000);
    run("REST check: password+MD5 key+MI verify", op_rest_check, 500000);
    run("nonce make", op_nonce_make, 1000000);
    run("nonce check", op_nonce_check, 1000000);
    return g_sink == 42 ? 1 : 0;
}
