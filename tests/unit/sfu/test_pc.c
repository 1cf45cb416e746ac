/* test_pc.c: two peer-connection transports on 127.0.0.1 in one GMainContext: ICE
 * (controlling against controlled), the DTLS 1.2 handshake in both role assignments,
 * the fingerprint check (a wrong fingerprint must fail), SRTP/SRTCP both ways with the
 * payload intact, a burst through the send queue (one sendmmsg/GSO per iteration) in
 * order, the libnice fallback when there is no direct socket, and an ICE restart that
 * keeps the DTLS session. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "tests/unit/sfu/tsan_glib.h"
#include "relay/sfu/pl_rtp.h"
#include "relay/sfu/sfu_pc_int.h"

typedef struct side {
    pl_pc_t *pc;
    pl_pc_state_t state;
    char reason[64];
    int rtp, rtcp;
    int misordered;                 /* RTP not one more than the previous sequence */
    uint16_t last_seq;
    uint8_t last[256];
    size_t last_len;
} side_t;

static void on_state(void *arg, pl_pc_state_t st, const char *reason)
{
    side_t *s = arg;
    s->state = st;
    if (reason)
        g_strlcpy(s->reason, reason, sizeof(s->reason));
}

static void on_rtp(void *arg, uint8_t *pkt, size_t len, size_t cap)
{
    (void)cap;
    side_t *s = arg;
    uint16_t seq = (uint16_t)(pkt[2] << 8 | pkt[3]);
    if (s->rtp && seq != (uint16_t)(s->last_seq + 1))
        s->misordered++;
    s->last_seq = seq;
    s->rtp++;
    s->last_len = PL_MIN(len, sizeof(s->last));
    memcpy(s->last, pkt, s->last_len);
}

static void on_rtcp(void *arg, uint8_t *pkt, size_t len, size_t cap)
{
    (void)pkt;
    (void)len;
    (void)cap;
    side_t *s = arg;
    s->rtcp++;
}

typedef struct world {
    GMainContext *ctx;
    SSL_CTX *ssl_a, *ssl_b;
    char fp_a[128], fp_b[128];
    side_t a, b;
} world_t;

static void add_cand(void *arg, const char *cand)
{
    pl_pc_t *peer = arg;
    assert_int_equal(pl_pc_add_remote_candidate(peer, cand), 0);
}

static bool spin_until(world_t *w, bool (*cond)(world_t *), int ms)
{
    gint64 end = g_get_monotonic_time() + ms * 1000;
    while (!cond(w) && g_get_monotonic_time() < end)
        if (!g_main_context_iteration(w->ctx, FALSE))
            g_usleep(1000);
    return cond(w);
}

static bool both_connected(world_t *w)
{
    return w->a.state == PL_PC_CONNECTED && w->b.state == PL_PC_CONNECTED;
}

static bool any_failed(world_t *w)
{
    return w->a.state == PL_PC_FAILED || w->b.state == PL_PC_FAILED;
}

static const char *g_profiles_b;     /* SRTP profiles of side b (NULL = default) */

static void make_pair(world_t *w, bool a_is_dtls_client, bool corrupt_fp)
{
    memset(w, 0, sizeof(*w));
    w->ctx = g_main_context_new();
    w->ssl_a = pl_dtls_ctx_create(NULL, w->fp_a, sizeof(w->fp_a));
    w->ssl_b = pl_dtls_ctx_create(g_profiles_b, w->fp_b, sizeof(w->fp_b));
    assert_non_null(w->ssl_a);
    assert_non_null(w->ssl_b);
    assert_int_equal(strlen(w->fp_a), 95);
    const char *addrs[] = { "127.0.0.1" };
    pl_pc_opts_t o = { .ctx = w->ctx, .ssl_ctx = w->ssl_a, .controlling = true,
                       .addrs = addrs, .n_addrs = 1,
                       .cbs = { .on_state = on_state, .on_rtp = on_rtp, .on_rtcp = on_rtcp,
                                .arg = &w->a } };
    assert_int_equal(pl_pc_create(&o, &w->a.pc), 0);
    o.ssl_ctx = w->ssl_b;
    o.controlling = false;
    o.cbs.arg = &w->b;
    assert_int_equal(pl_pc_create(&o, &w->b.pc), 0);
    char fp_b[128];
    strcpy(fp_b, w->fp_b);
    if (corrupt_fp)
        fp_b[0] = fp_b[0] == 'A' ? 'B' : 'A';
    assert_int_equal(pl_pc_set_remote(w->a.pc, pl_pc_ufrag(w->b.pc), pl_pc_pwd(w->b.pc),
                                      "sha-256", fp_b, a_is_dtls_client), 0);
    assert_int_equal(pl_pc_set_remote(w->b.pc, pl_pc_ufrag(w->a.pc), pl_pc_pwd(w->a.pc),
                                      "sha-256", w->fp_a, !a_is_dtls_client), 0);
    pl_pc_foreach_candidate(w->a.pc, add_cand, w->b.pc);
    pl_pc_foreach_candidate(w->b.pc, add_cand, w->a.pc);
}

static void free_pair(world_t *w)
{
    pl_pc_destroy(w->a.pc);
    pl_pc_destroy(w->b.pc);
    while (g_main_context_iteration(w->ctx, FALSE))
        ;
    SSL_CTX_free(w->ssl_a);
    SSL_CTX_free(w->ssl_b);
    g_main_context_unref(w->ctx);
}

static void send_rtp(pl_pc_t *pc, uint16_t seq)
{
    uint8_t buf[512] = { 0x80, 96, (uint8_t)(seq >> 8), (uint8_t)seq, 0, 0, 0, 1,
                         0x12, 0x34, 0x56, 0x78 };
    memcpy(buf + 12, "hello media", 11);
    assert_int_equal(pl_pc_send_rtp(pc, buf, 23, sizeof(buf)), 0);
}

static bool b_got_two(world_t *w) { return w->b.rtp >= 2 && w->a.rtp >= 1 && w->a.rtcp >= 1; }

static void run_media(bool a_client, const char *want_profile)
{
    world_t w;
    make_pair(&w, a_client, false);
    assert_true(spin_until(&w, both_connected, 10000));
    assert_string_equal(pl_pc_srtp_profile(w.a.pc), want_profile);
    assert_string_equal(pl_pc_srtp_profile(w.b.pc), want_profile);
    send_rtp(w.a.pc, 1);
    send_rtp(w.a.pc, 2);
    send_rtp(w.b.pc, 7);
    uint8_t rr[256];
    int n = pl_rtcp_build_rr(rr, sizeof(rr), 5, NULL, 0);
    assert_int_equal(pl_pc_send_rtcp(w.b.pc, rr, (size_t)n, sizeof(rr)), 0);
    assert_true(spin_until(&w, b_got_two, 5000));
    assert_int_equal(w.b.last_len, 23);
    assert_memory_equal(w.b.last + 12, "hello media", 11);
    assert_int_equal(w.b.last[3], 2);
    free_pair(&w);
}

static void test_media_a_client(void **state)
{
    (void)state;
    run_media(true, "AEAD_AES_128_GCM");
}

static void test_media_b_client(void **state)
{
    (void)state;
    run_media(false, "AEAD_AES_128_GCM");
}

/* A peer offering only AES_CM_128_HMAC_SHA1_80 gets that profile, in either role. */
static void test_media_aes_cm(void **state)
{
    (void)state;
    g_profiles_b = "SRTP_AES128_CM_SHA1_80";
    run_media(true, "AES_CM_128_HMAC_SHA1_80");
    run_media(false, "AES_CM_128_HMAC_SHA1_80");
    g_profiles_b = NULL;
}

/* A video frame's worth of packets (sizes one byte apart, as libwebrtc splits frames)
 * sent from inside a dispatch: queued, then out in one go at the end of the iteration. */
static gboolean burst_cb(gpointer data)
{
    world_t *w = data;
    for (uint16_t seq = 1; seq <= 12; seq++) {
        uint8_t buf[PL_PC_BUF] = { 0x80, 96, 0, (uint8_t)seq, 0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78 };
        size_t len = seq <= 5 ? 1000 : 1001;
        memset(buf + 12, (int)seq, len - 12);
        assert_int_equal(pl_pc_send_rtp(w->a.pc, buf, len, sizeof(buf)), 0);
    }
    return G_SOURCE_REMOVE;
}

static bool b_got_12(world_t *w) { return w->b.rtp >= 12; }
static bool b_got_14(world_t *w) { return w->b.rtp >= 14; }

static void test_burst_direct_then_libnice(void **state)
{
    (void)state;
    world_t w;
    make_pair(&w, true, false);
    assert_true(spin_until(&w, both_connected, 10000));
    assert_true(pl_pc_sends_direct(w.a.pc));
    GSource *src = g_idle_source_new();
    g_source_set_callback(src, burst_cb, &w, NULL);
    g_source_attach(src, w.ctx);
    g_source_unref(src);
    assert_true(spin_until(&w, b_got_12, 5000));
    assert_int_equal(w.b.rtp, 12);
    assert_int_equal(w.b.misordered, 0);
    assert_int_equal(w.b.last_len, PL_MIN(1001, sizeof(w.b.last)));
    assert_int_equal(w.b.last[12], 12);
    assert_int_equal(pl_pc_take_send_drops(w.a.pc), 0);
    /* Without the direct socket (a relayed or TCP pair would be this case) media goes
     * through nice_agent_send, still in order. */
    pl_pc_drop_direct(w.a.pc);
    assert_false(pl_pc_sends_direct(w.a.pc));
    send_rtp(w.a.pc, 13);
    send_rtp(w.a.pc, 14);
    assert_true(spin_until(&w, b_got_14, 5000));
    assert_int_equal(w.b.misordered, 0);
    assert_int_equal(w.b.last_seq, 14);
    free_pair(&w);
}

static void test_fingerprint_mismatch(void **state)
{
    (void)state;
    world_t w;
    make_pair(&w, true, true);
    assert_true(spin_until(&w, any_failed, 10000));
    assert_int_equal(w.a.state, PL_PC_FAILED);
    assert_string_equal(w.a.reason, "dtls_fingerprint_mismatch");
    uint8_t buf[64] = { 0x80, 96 };
    assert_int_equal(pl_pc_send_rtp(w.a.pc, buf, 12, sizeof(buf)), PL_ESTATE);
    assert_false(pl_pc_sends_direct(w.a.pc));       /* a failed pc sends nothing */
    free_pair(&w);
}

static void test_bad_remote_params(void **state)
{
    (void)state;
    world_t w;
    make_pair(&w, true, false);
    assert_int_equal(pl_pc_set_remote(w.a.pc, "x", "y", "sha-1", w.fp_b, true), PL_EPARSE);
    assert_int_equal(pl_pc_set_remote(w.a.pc, "x", "y", "sha-256", "AB:CD", true), PL_EPARSE);
    /* Same parameters again: fine; a new fingerprint (a new DTLS session): refused. */
    assert_int_equal(pl_pc_set_remote(w.a.pc, pl_pc_ufrag(w.b.pc), pl_pc_pwd(w.b.pc),
                                      "sha-256", w.fp_b, true), 0);
    assert_int_equal(pl_pc_set_remote(w.a.pc, "other", pl_pc_pwd(w.b.pc), "sha-256",
                                      w.fp_a, true), PL_ESTATE);
    assert_int_equal(pl_pc_restarts(w.a.pc), 0);
    assert_int_equal(pl_pc_add_remote_candidate(w.a.pc, "garbage"), PL_EPARSE);
    assert_int_equal(pl_pc_add_remote_candidate(
        w.a.pc, "candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype active"), 0);
    free_pair(&w);
}

static bool b_got_after_restart(world_t *w) { return w->b.rtp >= 2 && w->a.rtp >= 1; }

/* An ICE restart on an established pair (a network change): a begins it (new local
 * credentials), b answers to a's new credentials (restarting itself), a takes b's new
 * ones; both exchange candidates again. DTLS and SRTP carry on: media flows again
 * without a new handshake, and the pcs never leave "connected". */
static void test_ice_restart(void **state)
{
    (void)state;
    world_t w;
    make_pair(&w, true, false);
    assert_true(spin_until(&w, both_connected, 10000));
    send_rtp(w.a.pc, 1);
    send_rtp(w.b.pc, 1);
    w.b.rtp = w.a.rtp = 0;
    char a_old[64], b_old[64];
    g_strlcpy(a_old, pl_pc_ufrag(w.a.pc), sizeof(a_old));
    g_strlcpy(b_old, pl_pc_ufrag(w.b.pc), sizeof(b_old));
    assert_int_equal(pl_pc_ice_restart(w.a.pc), 0);
    assert_string_not_equal(pl_pc_ufrag(w.a.pc), a_old);
    assert_false(pl_pc_sends_direct(w.a.pc));          /* no pair until the checks end */
    assert_int_equal(pl_pc_set_remote(w.b.pc, pl_pc_ufrag(w.a.pc), pl_pc_pwd(w.a.pc),
                                      "sha-256", w.fp_a, false), 1);
    assert_string_not_equal(pl_pc_ufrag(w.b.pc), b_old);
    assert_int_equal(pl_pc_set_remote(w.a.pc, pl_pc_ufrag(w.b.pc), pl_pc_pwd(w.b.pc),
                                      "sha-256", w.fp_b, true), 1);
    /* The same credentials again (a renegotiation after the restart): nothing new. */
    assert_int_equal(pl_pc_set_remote(w.a.pc, pl_pc_ufrag(w.b.pc), pl_pc_pwd(w.b.pc),
                                      "sha-256", w.fp_b, true), 0);
    pl_pc_foreach_candidate(w.a.pc, add_cand, w.b.pc);
    pl_pc_foreach_candidate(w.b.pc, add_cand, w.a.pc);
    assert_int_equal(w.a.state, PL_PC_CONNECTED);
    assert_int_equal(w.b.state, PL_PC_CONNECTED);
    /* Media again once the new pair is up: send until it arrives (a packet sent
     * while checks run is dropped, as on a real network change). */
    uint16_t seq = 100;
    gint64 end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (!b_got_after_restart(&w) && g_get_monotonic_time() < end) {
        if (pl_pc_sends_direct(w.a.pc)) {
            send_rtp(w.a.pc, seq++);
            send_rtp(w.b.pc, seq);
        }
        spin_until(&w, b_got_after_restart, 20);
    }
    assert_true(b_got_after_restart(&w));
    assert_memory_equal(w.b.last + 12, "hello media", 11);
    assert_int_equal(w.a.state, PL_PC_CONNECTED);
    assert_int_equal(w.b.state, PL_PC_CONNECTED);
    assert_int_equal(pl_pc_restarts(w.a.pc), 1);
    assert_int_equal(pl_pc_restarts(w.b.pc), 1);
    /* Begun twice before the answer: still one restart, one set of credentials. */
    assert_int_equal(pl_pc_ice_restart(w.a.pc), 0);
    char a_new[64];
    g_strlcpy(a_new, pl_pc_ufrag(w.a.pc), sizeof(a_new));
    assert_int_equal(pl_pc_ice_restart(w.a.pc), 0);
    assert_string_equal(pl_pc_ufrag(w.a.pc), a_new);
    free_pair(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_media_a_client),
        cmocka_unit_test(test_media_b_client),
        cmocka_unit_test(test_media_aes_cm),
        cmocka_unit_test(test_burst_direct_then_libnice),
        cmocka_unit_test(test_fingerprint_mismatch),
        cmocka_unit_test(test_bad_remote_params),
        cmocka_unit_test(test_ice_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
