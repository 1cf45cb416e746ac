/* test_rtcp.c: compound RTCP parsing (SR, RR, SDES, BYE, NACK, PLI, FIR, REMB,
 * transport-cc, unknown types), malformed packets, and the builders checked against
 * hand-made known-answer bytes and by parsing their output back. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "relay/sfu/pl_rtp.h"

/* REMB of 1,000,000 bps (exponent 2, mantissa 250000 = 0x3d090) for one SSRC. */
static const uint8_t remb_1m[] = {
    0x8f, 0xce, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    'R', 'E', 'M', 'B', 0x01, 0x0b, 0xd0, 0x90, 0x11, 0x22, 0x33, 0x44,
};

/* NACK for 100 with BLP 0b101: 100, 101, 103. */
static const uint8_t nack_100[] = {
    0x81, 0xcd, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x11, 0x22, 0x33, 0x44,
    0x00, 0x64, 0x00, 0x05,
};

static void twcc_cb(void *arg, uint16_t seq, bool rx, int32_t d)
{
    (void)arg;
    check_expected(seq);
    check_expected(rx);
    check_expected(d);
}

static void rb_equal(const pl_rtcp_rb_t *a, const pl_rtcp_rb_t *b)
{
    assert_int_equal(a->ssrc, b->ssrc);
    assert_int_equal(a->fraction_lost, b->fraction_lost);
    assert_int_equal(a->cumulative_lost, b->cumulative_lost);
    assert_int_equal(a->highest_seq, b->highest_seq);
    assert_int_equal(a->jitter, b->jitter);
    assert_int_equal(a->lsr, b->lsr);
    assert_int_equal(a->dlsr, b->dlsr);
}

static int parse_all(const uint8_t *p, size_t len, pl_rtcp_pkt_t *out, int max)
{
    pl_rtcp_iter_t it;
    pl_rtcp_iter_init(&it, p, len);
    int n = 0, rc;
    while (n < max && (rc = pl_rtcp_next(&it, &out[n])) == 1)
        n++;
    return rc < 0 ? rc : n;
}

static void test_known_remb_nack(void **state)
{
    (void)state;
    pl_rtcp_pkt_t pk[2];
    assert_int_equal(parse_all(remb_1m, sizeof(remb_1m), pk, 2), 1);
    assert_int_equal(pk[0].kind, PL_RTCPK_REMB);
    assert_int_equal(pk[0].remb_bps, 1000000);
    assert_int_equal(pk[0].n_remb_ssrcs, 1);
    assert_int_equal(pk[0].remb_ssrcs[0], 0x11223344);
    uint8_t out[64];
    uint32_t ssrc = 0x11223344;
    assert_int_equal(pl_rtcp_build_remb(out, sizeof(out), 1, 1000000, &ssrc, 1),
                     (int)sizeof(remb_1m));
    assert_memory_equal(out, remb_1m, sizeof(remb_1m));

    assert_int_equal(parse_all(nack_100, sizeof(nack_100), pk, 2), 1);
    assert_int_equal(pk[0].kind, PL_RTCPK_NACK);
    assert_int_equal(pk[0].sender_ssrc, 1);
    assert_int_equal(pk[0].media_ssrc, 0x11223344);
    uint16_t seqs[40];
    assert_int_equal(pl_rtcp_nack_seqs(&pk[0], seqs, 40), 3);
    assert_int_equal(seqs[0], 100);
    assert_int_equal(seqs[1], 101);
    assert_int_equal(seqs[2], 103);
    assert_int_equal(pl_rtcp_nack_seqs(&pk[0], seqs, 2), 2);
    uint16_t in[] = { 100, 103, 101 };
    assert_int_equal(pl_rtcp_build_nack(out, sizeof(out), 1, 0x11223344, in, 3),
                     (int)sizeof(nack_100));
    assert_memory_equal(out, nack_100, sizeof(nack_100));
}

static void test_build_nack_packing(void **state)
{
    (void)state;
    /* Two groups (one crossing the wrap) and a duplicate. */
    uint16_t in[] = { 65530, 100, 65535, 2, 116, 100, 117 };
    uint8_t out[128];
    int n = pl_rtcp_build_nack(out, sizeof(out), 9, 8, in, PL_ARRAY_LEN(in));
    assert_int_equal(n, 12 + 3 * 4);
    pl_rtcp_pkt_t pk;
    assert_int_equal(parse_all(out, (size_t)n, &pk, 1), 1);
    uint16_t seqs[64];
    size_t k = pl_rtcp_nack_seqs(&pk, seqs, 64);
    assert_int_equal(k, 6);
    static const uint16_t want[] = { 65530, 65535, 2, 100, 116, 117 };
    assert_memory_equal(seqs, want, sizeof(want));
    assert_int_equal(pl_rtcp_build_nack(out, 20, 9, 8, in, PL_ARRAY_LEN(in)), PL_ELIMIT);
    assert_int_equal(pl_rtcp_build_nack(out, sizeof(out), 9, 8, in, 0), PL_ELIMIT);
}

static void test_compound_sr_sdes_pli_fir(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t off = 0;
    pl_rtcp_sr_info_t sr = { .ssrc = 0x01020304, .ntp = UINT64_C(0xe1234567) << 32 | 0x8000,
                             .rtp_ts = 90000, .packet_count = 10, .octet_count = 12000 };
    pl_rtcp_rb_t rb = { .ssrc = 0x0a0b0c0d, .fraction_lost = 25, .cumulative_lost = -2,
                        .highest_seq = 70000, .jitter = 33, .lsr = 0x12345678,
                        .dlsr = 65536 };
    off += (size_t)pl_rtcp_build_sr(buf + off, sizeof(buf) - off, &sr, &rb, 1);
    off += (size_t)pl_rtcp_build_sdes(buf + off, sizeof(buf) - off, 0x01020304, "parley");
    off += (size_t)pl_rtcp_build_pli(buf + off, sizeof(buf) - off, 0x01020304, 0x55);
    off += (size_t)pl_rtcp_build_fir(buf + off, sizeof(buf) - off, 0x01020304, 0x66, 7);
    off += (size_t)pl_rtcp_build_rr(buf + off, sizeof(buf) - off, 0x01020304, NULL, 0);
    assert_int_equal(off, 52 + 20 + 12 + 20 + 8);
    pl_rtcp_pkt_t pk[6];
    assert_int_equal(parse_all(buf, off, pk, 6), 5);
    assert_int_equal(pk[0].kind, PL_RTCPK_SR);
    assert_int_equal(pk[0].sender_ssrc, 0x01020304);
    assert_int_equal(pk[0].ntp, sr.ntp);
    assert_int_equal(pk[0].rtp_ts, 90000);
    assert_int_equal(pk[0].packet_count, 10);
    assert_int_equal(pk[0].octet_count, 12000);
    assert_int_equal(pk[0].n_rb, 1);
    rb_equal(&pk[0].rb[0], &rb);
    assert_int_equal(pk[1].kind, PL_RTCPK_SDES);
    assert_int_equal(pk[1].sender_ssrc, 0x01020304);
    assert_int_equal(pk[2].kind, PL_RTCPK_PLI);
    assert_int_equal(pk[2].media_ssrc, 0x55);
    assert_int_equal(pk[3].kind, PL_RTCPK_FIR);
    assert_int_equal(pk[3].n_fci, 1);
    uint32_t ssrc;
    uint8_t seq;
    pl_rtcp_fir_entry(&pk[3], 0, &ssrc, &seq);
    assert_int_equal(ssrc, 0x66);
    assert_int_equal(seq, 7);
    assert_int_equal(pk[4].kind, PL_RTCPK_RR);
    assert_int_equal(pk[4].n_rb, 0);
    /* SDES chunk: CNAME item then a null octet, padded: "parley" fills it exactly. */
    assert_memory_equal(buf + 52 + 8, "\x01\x06parley\x00\x00", 10);
    assert_int_equal(pl_rtcp_build_sr(buf, 40, &sr, &rb, 1), PL_ELIMIT);
    assert_int_equal(pl_rtcp_build_sdes(buf, 8, 1, "x"), PL_ELIMIT);
}

static void test_twcc(void **state)
{
    (void)state;
    /* base 100, 5 statuses: run of 3 small deltas, then a 2-bit vector [0, 2]. */
    static const uint8_t fb[] = {
        0x8f, 0xcd, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 2,
        0x00, 0x64, 0x00, 0x05, 0xff, 0xff, 0xfe, 0x09,
        0x20, 0x03, 0xc8, 0x00,
        4, 8, 12, 0xff, 0xfc, 0, 0, 0,
    };
    pl_rtcp_pkt_t pk;
    assert_int_equal(parse_all(fb, sizeof(fb), &pk, 1), 1);
    assert_int_equal(pk.kind, PL_RTCPK_TWCC);
    assert_int_equal(pk.twcc_base_seq, 100);
    assert_int_equal(pk.twcc_count, 5);
    assert_int_equal(pk.twcc_ref_time, -2);
    assert_int_equal(pk.twcc_fb_count, 9);
    struct { uint16_t seq; bool rx; int32_t d; } want[] = {
        { 100, true, 4 }, { 101, true, 8 }, { 102, true, 12 }, { 103, false, 0 },
        { 104, true, -4 },
    };
    for (size_t i = 0; i < 5; i++) {
        expect_value(twcc_cb, seq, want[i].seq);
        expect_value(twcc_cb, rx, want[i].rx);
        expect_value(twcc_cb, d, want[i].d);
    }
    assert_int_equal(pl_rtcp_twcc_walk(&pk, twcc_cb, NULL), 5);
    /* Cut the last delta short: the walk fails after the statuses it could read. */
    uint8_t cut[sizeof(fb)];
    memcpy(cut, fb, sizeof(fb));
    cut[3] = 0x06;                              /* 28 bytes: one delta byte missing */
    assert_int_equal(parse_all(cut, 28, &pk, 1), 1);
    for (size_t i = 0; i < 3; i++) {
        expect_value(twcc_cb, seq, want[i].seq);
        expect_value(twcc_cb, rx, want[i].rx);
        expect_value(twcc_cb, d, want[i].d);
    }
    expect_value(twcc_cb, seq, 103);
    expect_value(twcc_cb, rx, false);
    expect_value(twcc_cb, d, 0);
    assert_int_equal(pl_rtcp_twcc_walk(&pk, twcc_cb, NULL), PL_EPARSE);
    /* Chunks that never cover the count. */
    cut[3] = 0x04;
    cut[15] = 0x50;
    assert_int_equal(parse_all(cut, 20, &pk, 1), 1);
    assert_int_equal(pl_rtcp_twcc_walk(&pk, twcc_cb, NULL), PL_EPARSE);
}

static void test_malformed(void **state)
{
    (void)state;
    pl_rtcp_pkt_t pk[4];
    uint8_t b[64];
    memcpy(b, nack_100, sizeof(nack_100));
    b[0] = 0x41;                                            /* version 1 */
    assert_int_equal(parse_all(b, sizeof(nack_100), pk, 4), PL_EPARSE);
    memcpy(b, nack_100, sizeof(nack_100));
    b[3] = 0x04;                                            /* past the end */
    assert_int_equal(parse_all(b, sizeof(nack_100), pk, 4), PL_EPARSE);
    b[3] = 0x02;                                            /* NACK without FCI */
    assert_int_equal(parse_all(b, 12, pk, 4), PL_EPARSE);
    assert_int_equal(parse_all(b, 3, pk, 4), PL_EPARSE);
    /* SR claiming one report block in a 28-byte packet. */
    static const uint8_t sr[28] = { 0x81, 200, 0, 6 };
    assert_int_equal(parse_all(sr, sizeof(sr), pk, 4), PL_EPARSE);
    static const uint8_t sr_short[8] = { 0x80, 200, 0, 1 };
    assert_int_equal(parse_all(sr_short, sizeof(sr_short), pk, 4), PL_EPARSE);
    /* FIR with no entry; REMB claiming 3 SSRCs with room for 1; zero padding count. */
    static const uint8_t fir[12] = { 0x84, 206, 0, 2 };
    assert_int_equal(parse_all(fir, sizeof(fir), pk, 4), PL_EPARSE);
    memcpy(b, remb_1m, sizeof(remb_1m));
    b[16] = 3;
    assert_int_equal(parse_all(b, sizeof(remb_1m), pk, 4), PL_EPARSE);
    static const uint8_t pad0[8] = { 0xa0, 201, 0, 1, 0, 0, 0, 0 };
    assert_int_equal(parse_all(pad0, sizeof(pad0), pk, 4), PL_EPARSE);
    /* A good packet, then garbage: the first parses, then the error, then nothing. */
    memcpy(b, nack_100, sizeof(nack_100));
    b[16] = 0x40;
    pl_rtcp_iter_t it;
    pl_rtcp_iter_init(&it, b, 20);
    assert_int_equal(pl_rtcp_next(&it, &pk[0]), 1);
    assert_int_equal(pl_rtcp_next(&it, &pk[0]), PL_EPARSE);
    assert_int_equal(pl_rtcp_next(&it, &pk[0]), 0);
}

static void test_other_types(void **state)
{
    (void)state;
    static const uint8_t c[] = {
        0x81, 203, 0, 1, 0, 0, 0, 9,                    /* BYE */
        0x80, 204, 0, 2, 0, 0, 0, 9, 'n', 'a', 'm', 'e', /* APP */
        0x80, 207, 0, 1, 0, 0, 0, 9,                    /* XR */
        0x8f, 206, 0, 4, 0, 0, 0, 9, 0, 0, 0, 0, 'A', 'B', 'C', 'D', 0, 0, 0, 0,
    };
    pl_rtcp_pkt_t pk[5];
    assert_int_equal(parse_all(c, sizeof(c), pk, 5), 4);
    assert_int_equal(pk[0].kind, PL_RTCPK_BYE);
    assert_int_equal(pk[0].sender_ssrc, 9);
    assert_int_equal(pk[1].kind, PL_RTCPK_OTHER);
    assert_int_equal(pk[2].kind, PL_RTCPK_OTHER);
    assert_int_equal(pk[3].kind, PL_RTCPK_OTHER);   /* AFB that is not REMB */
    uint16_t seqs[4];
    assert_int_equal(pl_rtcp_nack_seqs(&pk[0], seqs, 4), 0);
    assert_int_equal(pl_rtcp_twcc_walk(&pk[0], NULL, NULL), PL_EPARSE);
}

static void test_remb_range(void **state)
{
    (void)state;
    uint8_t out[64];
    pl_rtcp_pkt_t pk;
    uint64_t vals[] = { 0, 1, 262143, 262144, 30000000, UINT64_C(1) << 40 };
    for (size_t i = 0; i < PL_ARRAY_LEN(vals); i++) {
        int n = pl_rtcp_build_remb(out, sizeof(out), 1, vals[i], NULL, 0);
        assert_int_equal(n, 20);
        assert_int_equal(parse_all(out, (size_t)n, &pk, 1), 1);
        /* Rounded down to 18 significant bits, never up. */
        assert_true(pk.remb_bps <= vals[i]);
        assert_true(pk.remb_bps >= vals[i] - (vals[i] >> 17));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_remb_nack),
        cmocka_unit_test(test_build_nack_packing),
        cmocka_unit_test(test_compound_sr_sdes_pli_fir),
        cmocka_unit_test(test_twcc),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_other_types),
        cmocka_unit_test(test_remb_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
