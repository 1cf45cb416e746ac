/* test_rtp.c: RTP classification, header parsing (CSRC, one-byte and two-byte RFC 8285
 * extensions, padding), malformed headers, extension writing and the per-subscriber
 * rewrite. Inputs are hand-made bytes (a Chromium-shaped VP8 packet among them), so the
 * parser is not only checked against its own writer. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "relay/sfu/pl_rtp.h"

/* A VP8 packet as Chromium sends it: PT 96, marker, seq 0x1234, ts 0xdeadbeef,
 * SSRC 0x11223344, one-byte extensions (id 4 mid "0", id 10 rid "h", id 2
 * abs-send-time, id 3 transport-cc), then 4 payload bytes. */
static const uint8_t chrome_vp8[] = {
    0x90, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x11, 0x22, 0x33, 0x44,
    0xbe, 0xde, 0x00, 0x03,
    0x40, '0',                          /* id 4 len 1 */
    0xa0, 'h',                          /* id 10 len 1 */
    0x22, 0x01, 0x02, 0x03,             /* id 2 len 3 */
    0x31, 0x00, 0x07,                   /* id 3 len 2 */
    0x00,                               /* padding to the 32-bit boundary */
    0x90, 0x80, 0x05, 0x10,             /* payload */
};

static void test_classify(void **state)
{
    (void)state;
    uint8_t b[2] = { 0, 1 };
    assert_int_equal(pl_rtp_classify(b, 0), PL_PKT_UNKNOWN);
    assert_int_equal(pl_rtp_classify(b, 2), PL_PKT_STUN);
    b[0] = 22;
    assert_int_equal(pl_rtp_classify(b, 2), PL_PKT_DTLS);
    b[0] = 0x80;
    b[1] = 96;
    assert_int_equal(pl_rtp_classify(b, 2), PL_PKT_RTP);
    b[1] = 96 | 0x80;                   /* marker set: still RTP */
    assert_int_equal(pl_rtp_classify(b, 2), PL_PKT_RTP);
    b[1] = 200;
    assert_int_equal(pl_rtp_classify(b, 2), PL_PKT_RTCP);
    b[1] = 206;
    assert_int_equal(pl_rtp_classify(b, 2), PL_PKT_RTCP);
    assert_int_equal(pl_rtp_classify(b, 1), PL_PKT_UNKNOWN);
    b[0] = 64;
    assert_int_equal(pl_rtp_classify(b, 2), PL_PKT_UNKNOWN);
}

static void test_parse_one_byte(void **state)
{
    (void)state;
    pl_rtp_hdr_t h;
    assert_int_equal(pl_rtp_parse(chrome_vp8, sizeof(chrome_vp8), &h), 0);
    assert_true(h.marker);
    assert_int_equal(h.pt, 96);
    assert_int_equal(h.seq, 0x1234);
    assert_int_equal(h.ts, 0xdeadbeef);
    assert_int_equal(h.ssrc, 0x11223344);
    assert_int_equal(h.ext_profile, 0xBEDE);
    assert_int_equal(h.n_ext, 4);
    assert_int_equal(h.payload_off, 28);
    assert_int_equal(h.payload_len, 4);
    assert_int_equal(h.pad_len, 0);
    size_t len;
    const uint8_t *v = pl_rtp_ext_get(&h, chrome_vp8, 10, &len);
    assert_non_null(v);
    assert_int_equal(len, 1);
    assert_int_equal(v[0], 'h');
    v = pl_rtp_ext_get(&h, chrome_vp8, 2, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(v, "\x01\x02\x03", 3);
    v = pl_rtp_ext_get(&h, chrome_vp8, 3, &len);
    assert_int_equal(len, 2);
    assert_int_equal(v[1], 7);
    assert_null(pl_rtp_ext_get(&h, chrome_vp8, 5, &len));
    assert_null(pl_rtp_ext_get(&h, chrome_vp8, 0, &len));
}

static void test_parse_two_byte_csrc_padding(void **state)
{
    (void)state;
    /* CC=1, X, P: two-byte profile 0x1000 with id 20 (len 0), id 1 (len 3); 4 bytes of
     * payload; 3 bytes of padding. */
    static const uint8_t pkt[] = {
        0xb1, 0x6f, 0x00, 0x01, 0, 0, 0, 9, 0, 0, 0, 5,
        0xca, 0xfe, 0xba, 0xbe,             /* CSRC */
        0x10, 0x00, 0x00, 0x02,
        20, 0, 1, 3, 'a', 'b', 'c', 0,
        1, 2, 3, 4,
        0, 0, 3,
    };
    pl_rtp_hdr_t h;
    assert_int_equal(pl_rtp_parse(pkt, sizeof(pkt), &h), 0);
    assert_int_equal(h.cc, 1);
    assert_false(h.marker);
    assert_int_equal(h.pt, 0x6f);
    assert_int_equal(h.ext_profile, 0x1000);
    assert_int_equal(h.n_ext, 2);
    assert_int_equal(h.ext[0].id, 20);
    assert_int_equal(h.ext[0].len, 0);
    assert_int_equal(h.ext[1].id, 1);
    assert_int_equal(h.ext[1].len, 3);
    assert_int_equal(h.payload_off, 28);
    assert_int_equal(h.payload_len, 4);
    assert_int_equal(h.pad_len, 3);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    pl_rtp_hdr_t h;
    uint8_t b[64];
    memcpy(b, chrome_vp8, sizeof(chrome_vp8));
    assert_int_equal(pl_rtp_parse(b, 11, &h), PL_EPARSE);       /* short */
    b[0] = 0x50;                                                /* version 1 */
    assert_int_equal(pl_rtp_parse(b, sizeof(chrome_vp8), &h), PL_EPARSE);
    memcpy(b, chrome_vp8, sizeof(chrome_vp8));
    b[15] = 0x09;                                               /* ext past the end */
    assert_int_equal(pl_rtp_parse(b, sizeof(chrome_vp8), &h), PL_EPARSE);
    memcpy(b, chrome_vp8, sizeof(chrome_vp8));
    b[0] = 0x9f;                                                /* 15 CSRCs */
    assert_int_equal(pl_rtp_parse(b, sizeof(chrome_vp8), &h), PL_EPARSE);
    memcpy(b, chrome_vp8, sizeof(chrome_vp8));
    b[20] = 0x2f;                                               /* id 2 len 16 */
    assert_int_equal(pl_rtp_parse(b, sizeof(chrome_vp8), &h), PL_EPARSE);
    memcpy(b, chrome_vp8, sizeof(chrome_vp8));
    b[0] |= 0x20;                                               /* P, last byte 0x10 */
    assert_int_equal(pl_rtp_parse(b, sizeof(chrome_vp8), &h), PL_EPARSE);
    b[sizeof(chrome_vp8) - 1] = 0;                              /* padding count 0 */
    assert_int_equal(pl_rtp_parse(b, sizeof(chrome_vp8), &h), PL_EPARSE);
    b[sizeof(chrome_vp8) - 1] = 4;                              /* the whole payload */
    assert_int_equal(pl_rtp_parse(b, sizeof(chrome_vp8), &h), 0);
    assert_int_equal(h.payload_len, 0);
    /* Extension header cut off right after the fixed header. */
    uint8_t c[14] = { 0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde };
    assert_int_equal(pl_rtp_parse(c, sizeof(c), &h), PL_EPARSE);
    /* Seventeen one-byte elements overflow the index. */
    uint8_t d[12 + 4 + 36] = { 0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 9 };
    for (int i = 0; i < 17; i++) {
        d[16 + i * 2] = 0x10;
        d[17 + i * 2] = (uint8_t)i;
    }
    assert_int_equal(pl_rtp_parse(d, sizeof(d), &h), PL_EPARSE);
}

static void test_parse_id15_and_id0(void **state)
{
    (void)state;
    /* RFC 8285 §4.2: ID 15 ends processing of the block; later bytes are ignored. */
    static const uint8_t pkt[] = {
        0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
        0xbe, 0xde, 0x00, 0x01, 0x10, 'x', 0xff, 0xff, 0xaa,
    };
    pl_rtp_hdr_t h;
    assert_int_equal(pl_rtp_parse(pkt, sizeof(pkt), &h), 0);
    assert_int_equal(h.n_ext, 1);
    assert_int_equal(h.payload_len, 1);
    /* A byte with ID 0 is padding whatever its length bits say (libwebrtc agrees). */
    static const uint8_t pad[] = {
        0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
        0xbe, 0xde, 0x00, 0x01, 0x03, 0x20, 'y', 0x00, 0xaa,
    };
    assert_int_equal(pl_rtp_parse(pad, sizeof(pad), &h), 0);
    assert_int_equal(h.n_ext, 1);
    assert_int_equal(h.ext[0].id, 2);
    assert_int_equal(h.ext[0].off, 18);
}

static void test_ext_write_forms(void **state)
{
    (void)state;
    uint8_t out[64];
    pl_rtp_ext_out_t one[2] = { { 1, 1, (const uint8_t *)"0" },
                                { 3, 3, (const uint8_t *)"\x01\x02\x03" } };
    int n = pl_rtp_ext_write(out, sizeof(out), one, 2);
    assert_int_equal(n, 4 + 8);
    static const uint8_t want1[] = { 0xbe, 0xde, 0, 2, 0x10, '0', 0x32, 1, 2, 3, 0, 0 };
    assert_memory_equal(out, want1, sizeof(want1));
    /* id 15 forces the two-byte form (and so does a zero-length value). */
    pl_rtp_ext_out_t two[2] = { { 15, 1, (const uint8_t *)"z" },
                                { 2, 0, NULL } };
    n = pl_rtp_ext_write(out, sizeof(out), two, 2);
    static const uint8_t want2[] = { 0x10, 0x00, 0, 2, 15, 1, 'z', 2, 0, 0, 0, 0 };
    assert_int_equal(n, (int)sizeof(want2));
    assert_memory_equal(out, want2, sizeof(want2));
    assert_int_equal(pl_rtp_ext_write(out, 8, one, 2), PL_ELIMIT);
    pl_rtp_ext_out_t bad = { 0, 1, (const uint8_t *)"x" };
    assert_int_equal(pl_rtp_ext_write(out, sizeof(out), &bad, 1), PL_EPARSE);
    assert_int_equal(pl_rtp_ext_write(out, sizeof(out), one, 0), 0);
}

static void test_rewrite(void **state)
{
    (void)state;
    pl_rtp_hdr_t h;
    assert_int_equal(pl_rtp_parse(chrome_vp8, sizeof(chrome_vp8), &h), 0);
    /* The subscriber's mid is "v3" with id 1, abs-send-time keeps id 2, rid dropped. */
    pl_rtp_ext_out_t ext[2] = { { 1, 2, (const uint8_t *)"v3" },
                                { 2, 3, (const uint8_t *)"\x0a\x0b\x0c" } };
    pl_rtp_rewrite_t rw = { .pt = 100, .marker = false, .seq = 7, .ts = 99,
                            .ssrc = 0xabcdef01, .ext = ext, .n_ext = 2 };
    uint8_t out[128];
    int n = pl_rtp_rewrite(chrome_vp8, &h, &rw, out, sizeof(out));
    assert_true(n > 0);
    pl_rtp_hdr_t o;
    assert_int_equal(pl_rtp_parse(out, (size_t)n, &o), 0);
    assert_int_equal(o.pt, 100);
    assert_false(o.marker);
    assert_int_equal(o.seq, 7);
    assert_int_equal(o.ts, 99);
    assert_int_equal(o.ssrc, 0xabcdef01);
    assert_int_equal(o.n_ext, 2);
    size_t len;
    const uint8_t *v = pl_rtp_ext_get(&o, out, 1, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(v, "v3", 2);
    assert_null(pl_rtp_ext_get(&o, out, 10, &len));
    assert_int_equal(o.payload_len, 4);
    assert_memory_equal(out + o.payload_off, chrome_vp8 + h.payload_off, 4);
    /* No extensions at all: X bit clear, payload right after the header. */
    rw.n_ext = 0;
    n = pl_rtp_rewrite(chrome_vp8, &h, &rw, out, sizeof(out));
    assert_int_equal(n, 16);
    assert_int_equal(out[0], 0x80);
    assert_int_equal(pl_rtp_rewrite(chrome_vp8, &h, &rw, out, 15), PL_ELIMIT);
}

static void test_rewrite_keeps_csrc_and_padding(void **state)
{
    (void)state;
    static const uint8_t pkt[] = {
        0xa1, 0x60, 0x00, 0x01, 0, 0, 0, 9, 0, 0, 0, 5,
        0xca, 0xfe, 0xba, 0xbe, 0x11, 0x22, 0, 2,
    };
    pl_rtp_hdr_t h;
    assert_int_equal(pl_rtp_parse(pkt, sizeof(pkt), &h), 0);
    assert_int_equal(h.pad_len, 2);
    pl_rtp_rewrite_t rw = { .pt = 96, .seq = 1, .ts = 2, .ssrc = 3 };
    uint8_t out[64];
    int n = pl_rtp_rewrite(pkt, &h, &rw, out, sizeof(out));
    assert_int_equal(n, (int)sizeof(pkt));
    pl_rtp_hdr_t o;
    assert_int_equal(pl_rtp_parse(out, (size_t)n, &o), 0);
    assert_int_equal(o.cc, 1);
    assert_memory_equal(out + 12, "\xca\xfe\xba\xbe", 4);
    assert_int_equal(o.pad_len, 2);
    assert_int_equal(o.payload_len, 2);
}

static void test_ext_uris_and_values(void **state)
{
    (void)state;
    assert_int_equal(pl_rtp_ext_kind("urn:ietf:params:rtp-hdrext:sdes:mid"), PL_EXT_MID);
    assert_int_equal(pl_rtp_ext_kind(
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"),
        PL_EXT_TWCC);
    assert_int_equal(pl_rtp_ext_kind("urn:example:nope"), PL_EXT_NONE);
    assert_null(pl_rtp_ext_uri(PL_EXT_NONE));
    assert_null(pl_rtp_ext_uri(PL_EXT_KIND_COUNT));
    for (int k = PL_EXT_NONE + 1; k < PL_EXT_KIND_COUNT; k++)
        assert_int_equal(pl_rtp_ext_kind(pl_rtp_ext_uri((pl_rtp_ext_kind_t)k)), k);
    uint8_t lvl;
    bool voice;
    assert_int_equal(pl_rtp_audio_level((const uint8_t *)"\x9e", 1, &lvl, &voice), 0);
    assert_true(voice);
    assert_int_equal(lvl, 30);
    assert_int_equal(pl_rtp_audio_level((const uint8_t *)"", 0, &lvl, &voice), PL_EPARSE);
    /* 1.5 s is 0x060000 in 6.18 fixed point; 64 s wraps to 0. */
    assert_int_equal(pl_rtp_abs_send_time(1500000), 0x060000);
    assert_int_equal(pl_rtp_abs_send_time(64000000), 0);
    /* 1970-01-01T00:00:00.5Z in NTP: era offset, half a second of fraction. */
    assert_int_equal(pl_ntp_from_unix_us(500000),
                     (UINT64_C(2208988800) << 32) | UINT64_C(0x80000000));
    assert_int_equal(pl_codec_from_name("vp8"), PL_CODEC_VP8);
    assert_int_equal(pl_codec_from_name("H264"), PL_CODEC_H264);
    assert_int_equal(pl_codec_from_name("AV1"), PL_CODEC_NONE);
    assert_string_equal(pl_codec_name(PL_CODEC_OPUS), "opus");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_parse_one_byte),
        cmocka_unit_test(test_parse_two_byte_csrc_padding),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_id15_and_id0),
        cmocka_unit_test(test_ext_write_forms),
        cmocka_unit_test(test_rewrite),
        cmocka_unit_test(test_rewrite_keeps_csrc_and_padding),
        cmocka_unit_test(test_ext_uris_and_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
