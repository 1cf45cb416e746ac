/* test_stun.c: STUN parsing (valid and malformed), demultiplexing, stream framing,
 * ChannelData and the builder. Malformed inputs are hand-made bytes, not builder output,
 * so the parser is not only checked against its own writer. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "relay/stun/pl_stun.h"

static const uint8_t tid[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

/* A Binding request header with the given attribute bytes; returns the total length. */
static size_t raw_msg(uint8_t *buf, const uint8_t *attrs, size_t alen)
{
    static const uint8_t head[8] = { 0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42 };
    memcpy(buf, head, 8);
    buf[2] = (uint8_t)(alen >> 8);
    buf[3] = (uint8_t)alen;
    memcpy(buf + 8, tid, 12);
    if (alen)
        memcpy(buf + 20, attrs, alen);
    return 20 + alen;
}

static void parse_fails(const uint8_t *buf, size_t len, bool header_ok)
{
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, len), PL_EPARSE);
    assert_int_equal(m.header_ok, header_ok);
}

static void test_header_checks(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t n = raw_msg(buf, NULL, 0);
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, n), 0);
    assert_int_equal(m.n_attrs, 0);
    for (size_t cut = 0; cut < 20; cut++)            /* truncated header */
        parse_fails(buf, cut, false);
    buf[4] ^= 1;                                     /* bad cookie */
    parse_fails(buf, n, false);
    buf[4] ^= 1;
    buf[0] = 0x80;                                   /* first bits not 00 */
    parse_fails(buf, n, false);
    buf[0] = 0x00;
    uint8_t a[4] = { 0x80, 0x50, 0, 0 };
    n = raw_msg(buf, a, 4);
    buf[3] = 2;                                      /* length not a multiple of 4 */
    parse_fails(buf, n, false);
    buf[3] = 8;                                      /* length beyond the buffer */
    parse_fails(buf, n, false);
    buf[3] = 4;
    parse_fails(buf, n + 4, false);                  /* trailing bytes */
    assert_int_equal(pl_stun_parse(&m, buf, n), 0);
}

static void test_type_encoding(void **state)
{
    (void)state;
    assert_int_equal(pl_stun_type(PL_STUN_METHOD_BINDING, PL_STUN_CLASS_REQUEST), 0x0001);
    assert_int_equal(pl_stun_type(PL_STUN_METHOD_BINDING, PL_STUN_CLASS_SUCCESS), 0x0101);
    assert_int_equal(pl_stun_type(PL_STUN_METHOD_BINDING, PL_STUN_CLASS_ERROR), 0x0111);
    assert_int_equal(pl_stun_type(PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_ERROR), 0x0113);
    assert_int_equal(pl_stun_type(PL_STUN_METHOD_SEND, PL_STUN_CLASS_INDICATION), 0x0016);
    assert_int_equal(pl_stun_type(PL_STUN_METHOD_DATA, PL_STUN_CLASS_INDICATION), 0x0017);
    for (uint16_t meth = 0; meth < 0x1000; meth++)
        for (uint8_t cls = 0; cls < 4; cls++) {
            uint16_t t = pl_stun_type(meth, cls);
            assert_true(t < 0x4000);
            assert_int_equal(pl_stun_type_method(t), meth);
            assert_int_equal(pl_stun_type_class(t), cls);
        }
}

static void test_attribute_bounds(void **state)
{
    (void)state;
    uint8_t buf[128];
    /* SOFTWARE claiming 9 bytes in an 8-byte body. */
    uint8_t a[8] = { 0x80, 0x22, 0x00, 0x09, 'a', 'b', 'c', 'd' };
    parse_fails(buf, raw_msg(buf, a, sizeof(a)), true);
    pl_stun_msg_t m;
    pl_stun_parse(&m, buf, raw_msg(buf, a, sizeof(a)));
    assert_int_equal(m.bad_attr, PL_STUN_ATTR_SOFTWARE);
    assert_int_equal(m.method, PL_STUN_METHOD_BINDING);
    /* 5 bytes: fits unpadded but its padding does not. */
    uint8_t b[12] = { 0x80, 0x22, 0x00, 0x05, 'a', 'b', 'c', 'd' , 'e', 0, 0, 0 };
    assert_int_equal(pl_stun_parse(&m, buf, raw_msg(buf, b, 12)), 0);
    parse_fails(buf, raw_msg(buf, b, 9), false);     /* no padding: length 9 */
    parse_fails(buf, raw_msg(buf, b, 8), true);      /* padding cut off */
    b[3] = 0x08;
    assert_int_equal(pl_stun_parse(&m, buf, raw_msg(buf, b, 12)), 0);
    b[3] = 0x09;
    parse_fails(buf, raw_msg(buf, b, 12), true);
}

static void test_too_many_attributes(void **state)
{
    (void)state;
    uint8_t attrs[4 * 65], buf[20 + sizeof(attrs)];
    for (int i = 0; i < 65; i++) {
        attrs[4 * i] = 0x80;
        attrs[4 * i + 1] = 0x50;        /* an unknown optional type, empty */
        attrs[4 * i + 2] = attrs[4 * i + 3] = 0;
    }
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, raw_msg(buf, attrs, 4 * PL_STUN_MAX_ATTRS)), 0);
    assert_int_equal(m.n_attrs, PL_STUN_MAX_ATTRS);
    parse_fails(buf, raw_msg(buf, attrs, 4 * 65), true);
}

static void test_bad_address_family(void **state)
{
    (void)state;
    uint8_t buf[64];
    uint8_t v4[12] = { 0x00, 0x12, 0x00, 0x08, 0x00, 0x01, 0x12, 0x34, 1, 2, 3, 4 };
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, raw_msg(buf, v4, 12)), 0);
    v4[5] = 0x03;                                   /* unknown family */
    parse_fails(buf, raw_msg(buf, v4, 12), true);
    v4[5] = 0x02;                                   /* IPv6 family, IPv4 length */
    parse_fails(buf, raw_msg(buf, v4, 12), true);
    uint8_t life[8] = { 0x00, 0x0d, 0x00, 0x03, 0, 0, 1, 0 };   /* LIFETIME of 3 bytes */
    parse_fails(buf, raw_msg(buf, life, 8), true);
    uint8_t mi[8] = { 0x00, 0x08, 0x00, 0x04, 0, 0, 0, 0 };     /* MI of 4 bytes */
    parse_fails(buf, raw_msg(buf, mi, 8), true);
    uint8_t ec[8] = { 0x00, 0x09, 0x00, 0x04, 0, 0, 2, 0 };     /* ERROR-CODE class 2 */
    parse_fails(buf, raw_msg(buf, ec, 8), true);
    ec[6] = 4;
    ec[7] = 100;                                                /* number 100 */
    parse_fails(buf, raw_msg(buf, ec, 8), true);
    ec[7] = 1;
    assert_int_equal(pl_stun_parse(&m, buf, raw_msg(buf, ec, 8)), 0);
}

static void test_integrity_ordering(void **state)
{
    (void)state;
    /* USERNAME, MI, USERNAME (ignored, §14.5), MI-SHA256 (kept), SOFTWARE (ignored,
     * §14.6), FINGERPRINT, then anything: malformed (§14.7). */
    uint8_t a[] = {
        0x00, 0x06, 0x00, 0x04, 'u', 's', 'e', 'r',
        0x00, 0x08, 0x00, 0x14, 0,0,0,0, 0,0,0,0, 0,0,0,0, 0,0,0,0, 0,0,0,0,
        0x00, 0x06, 0x00, 0x04, 'e', 'v', 'i', 'l',
        0x00, 0x1c, 0x00, 0x10, 0,0,0,0, 0,0,0,0, 0,0,0,0, 0,0,0,0,
        0x80, 0x22, 0x00, 0x04, 'e', 'v', 'i', 'l',
        0x00, 0x08, 0x00, 0x14, 0,0,0,0, 0,0,0,0, 0,0,0,0, 0,0,0,0, 0,0,0,0,
        0x80, 0x28, 0x00, 0x04, 0, 0, 0, 0,
        0x80, 0x22, 0x00, 0x00,
    };
    uint8_t buf[20 + sizeof(a)];
    pl_stun_msg_t m;
    size_t n = raw_msg(buf, a, sizeof(a) - 4);
    assert_int_equal(pl_stun_parse(&m, buf, n), 0);
    assert_int_equal(m.n_attrs, 4);
    assert_int_equal(m.mi_idx, 1);
    assert_int_equal(m.mi256_idx, 2);
    assert_int_equal(m.fp_idx, 3);
    assert_int_equal(pl_stun_find(&m, PL_STUN_ATTR_USERNAME, 1), -1);
    assert_false(pl_stun_has(&m, PL_STUN_ATTR_SOFTWARE));
    const uint8_t *v;
    size_t len;
    assert_int_equal(pl_stun_get_bytes(&m, PL_STUN_ATTR_USERNAME, &v, &len), 0);
    assert_memory_equal(v, "user", 4);
    assert_int_equal(pl_stun_check_fingerprint(&m), -EBADMSG);
    assert_int_equal(pl_stun_check_integrity(&m, (const uint8_t *)"k", 1), -EBADMSG);
    assert_int_equal(pl_stun_check_auth(&m, (const uint8_t *)"k", 1), -EBADMSG);
    parse_fails(buf, raw_msg(buf, a, sizeof(a)), true);         /* after FINGERPRINT */
}

static void test_unknown_required(void **state)
{
    (void)state;
    uint8_t a[] = {
        0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0,    /* CHANGE-REQUEST: unknown, required */
        0x80, 0x50, 0x00, 0x00,                /* unknown, optional: ignored */
        0x00, 0x03, 0x00, 0x00,                /* again: listed once */
        0x7f, 0xff, 0x00, 0x00,
        0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0,   /* REQUESTED-TRANSPORT: known */
    };
    uint8_t buf[20 + sizeof(a)];
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, raw_msg(buf, a, sizeof(a))), 0);
    uint16_t unk[4];
    assert_int_equal(pl_stun_unknown_required(&m, unk, 4), 2);
    assert_int_equal(unk[0], 0x0003);
    assert_int_equal(unk[1], 0x7fff);
    assert_int_equal(pl_stun_unknown_required(&m, unk, 1), 2);  /* total, capped writes */

    /* The 420 a server sends back, parsed as a client would. */
    uint8_t out[128];
    pl_stun_builder_t b;
    pl_stun_build_reply(&b, out, sizeof(out), &m, PL_STUN_CLASS_ERROR);
    pl_stun_add_error(&b, 420, NULL);
    pl_stun_add_unknown(&b, unk, 2);
    int n = pl_stun_build_finish(&b);
    assert_true(n > 0);
    pl_stun_msg_t r;
    assert_int_equal(pl_stun_parse(&r, out, (size_t)n), 0);
    assert_int_equal(r.cls, PL_STUN_CLASS_ERROR);
    assert_memory_equal(pl_stun_msg_tid(&r), tid, 12);
    pl_stun_error_t e;
    assert_int_equal(pl_stun_get_error(&r, &e), 0);
    assert_int_equal(e.code, 420);
    assert_int_equal(e.reason_len, strlen("Unknown Attribute"));
    assert_memory_equal(e.reason, "Unknown Attribute", e.reason_len);
    uint16_t got[4];
    size_t cnt;
    assert_int_equal(pl_stun_get_unknown_attrs(&r, got, 4, &cnt), 0);
    assert_int_equal(cnt, 2);
    assert_int_equal(got[1], 0x7fff);
}

static void test_classify_and_chandata(void **state)
{
    (void)state;
    uint8_t stun[20];
    raw_msg(stun, NULL, 0);
    assert_int_equal(pl_stun_classify(stun, 20), PL_STUN_KIND_STUN);
    assert_int_equal(pl_stun_classify(stun, 19), PL_STUN_KIND_OTHER);
    uint8_t cd[12] = { 0x40, 0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0, 0, 0 };
    assert_int_equal(pl_stun_classify(cd, sizeof(cd)), PL_STUN_KIND_CHANNEL);
    pl_stun_chandata_t c;
    assert_int_equal(pl_stun_chandata_parse(cd, 9, &c), 0);
    assert_int_equal(c.channel, 0x4001);
    assert_int_equal(c.len, 5);
    assert_memory_equal(c.data, "hello", 5);
    assert_int_equal(pl_stun_chandata_parse(cd, 12, &c), 0);    /* padding allowed */
    assert_int_equal(pl_stun_chandata_parse(cd, 8, &c), PL_EPARSE);  /* beyond buffer */
    assert_int_equal(pl_stun_chandata_parse(cd, 3, &c), PL_EPARSE);
    cd[0] = 0x50;                                   /* 0x5001: reserved */
    assert_int_equal(pl_stun_classify(cd, sizeof(cd)), PL_STUN_KIND_OTHER);
    assert_int_equal(pl_stun_chandata_parse(cd, sizeof(cd), &c), PL_EPARSE);
    cd[0] = 0x3f;                                   /* below 0x4000 */
    assert_int_equal(pl_stun_chandata_parse(cd, sizeof(cd), &c), PL_EPARSE);
    cd[0] = 0x4f;
    cd[1] = 0xff;
    assert_int_equal(pl_stun_chandata_parse(cd, sizeof(cd), &c), 0);
    uint8_t rtp[12] = { 0x80, 0x60 };
    assert_int_equal(pl_stun_classify(rtp, sizeof(rtp)), PL_STUN_KIND_OTHER);
}

static void test_chandata_frame(void **state)
{
    (void)state;
    uint8_t buf[16];
    memset(buf, 0xEE, sizeof(buf));
    memcpy(buf + 4, "hello", 5);
    assert_int_equal(pl_stun_chandata_frame(buf, sizeof(buf), 0x4001, 5, false), 9);
    assert_memory_equal(buf, "\x40\x01\x00\x05hello", 9);
    assert_int_equal(buf[9], 0xEE);
    assert_int_equal(pl_stun_chandata_frame(buf, sizeof(buf), 0x4001, 5, true), 12);
    assert_memory_equal(buf + 9, "\0\0\0", 3);
    assert_int_equal(pl_stun_chandata_frame(buf, 11, 0x4001, 5, true), PL_ELIMIT);
    assert_int_equal(pl_stun_chandata_frame(buf, 16, 0x5000, 5, false), PL_EPARSE);
    assert_int_equal(pl_stun_chandata_frame(buf, 16, 0x4000, 70000, false), PL_EPARSE);
}

static void test_stream_framing(void **state)
{
    (void)state;
    uint8_t a[8] = { 0x80, 0x22, 0x00, 0x03, 'a', 'b', 'c', 0 };
    uint8_t s[64];
    size_t n = raw_msg(s, a, sizeof(a));            /* 28 bytes */
    uint8_t cd[8] = { 0x40, 0x00, 0x00, 0x03, 'x', 'y', 'z', 0 };
    memcpy(s + n, cd, sizeof(cd));                  /* then a 7-byte ChannelData, padded */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(pl_stun_frame_len(s, i), 0);
    assert_int_equal(pl_stun_frame_len(s, n), (int)n);
    assert_int_equal(pl_stun_frame_len(s, n + 5), (int)n);      /* two frames queued */
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(pl_stun_frame_len(s + n, i), 0);
    assert_int_equal(pl_stun_frame_len(s + n, 8), 8);
    /* Garbage, reported as soon as it shows. */
    uint8_t g[8] = { 0x80 };
    assert_int_equal(pl_stun_frame_len(g, 1), PL_EPARSE);
    g[0] = 0xC0;
    assert_int_equal(pl_stun_frame_len(g, 1), PL_EPARSE);
    g[0] = 0x50;                                    /* reserved channel */
    assert_int_equal(pl_stun_frame_len(g, 1), PL_EPARSE);
    g[0] = 0x7f;
    assert_int_equal(pl_stun_frame_len(g, 8), PL_EPARSE);
    memcpy(g, s, 8);
    g[3] = 0x05;                                    /* STUN length not multiple of 4 */
    assert_int_equal(pl_stun_frame_len(g, 4), PL_EPARSE);
    g[3] = 0x08;
    g[7] ^= 0xFF;                                   /* bad cookie */
    assert_int_equal(pl_stun_frame_len(g, 7), 0);
    assert_int_equal(pl_stun_frame_len(g, 8), PL_EPARSE);
    /* The largest frames fit the int result. */
    uint8_t big[4] = { 0x00, 0x01, 0xff, 0xfc };
    assert_int_equal(pl_stun_frame_len(big, 4), 0);
    uint8_t bigc[4] = { 0x4f, 0xff, 0xff, 0xff };
    assert_int_equal(pl_stun_frame_len(bigc, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_checks),
        cmocka_unit_test(test_type_encoding),
        cmocka_unit_test(test_attribute_bounds),
        cmocka_unit_test(test_too_many_attributes),
        cmocka_unit_test(test_bad_address_family),
        cmocka_unit_test(test_integrity_ordering),
        cmocka_unit_test(test_unknown_required),
        cmocka_unit_test(test_classify_and_chandata),
        cmocka_unit_test(test_chandata_frame),
        cmocka_unit_test(test_stream_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
