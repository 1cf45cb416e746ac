/* test_stun_rfc5769.c: the codec against test vectors nobody here wrote: RFC 5769
 * §2.1-§2.4 (STUN test vectors) and RFC 8489 Appendix B.1 as corrected by the verified
 * errata 6268. Each vector is parsed, its MAC/FINGERPRINT verified, its attributes
 * decoded, and it is rebuilt with the builder byte for byte.
 *
 * Padding: the RFC 5769 vectors pad SOFTWARE and USERNAME with 0x20 (spaces) in §2.1-
 * §2.3 and with 0x00 in §2.4; RFC 8489 §14 lets padding be anything and it is covered
 * by the MACs. The builder's pad byte is configurable (pl_stun_builder_t.pad), and each
 * rebuild below sets it to what the vector uses, so the comparison is exact. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "relay/stun/pl_stun.h"

/* RFC 5769 §2.1: Binding request, short-term credentials, FINGERPRINT. */
static const uint8_t req_short[] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01,
    0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x10, 'S', 'T', 'U', 'N', ' ', 't', 'e', 's', 't', ' ',
    'c', 'l', 'i', 'e', 'n', 't',
    0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
    0x00, 0x06, 0x00, 0x09, 'e', 'v', 't', 'j', ':', 'h', '6', 'v', 'Y', 0x20, 0x20, 0x20,
    0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56,
    0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2,
    0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
};

/* RFC 5769 §2.2: Binding success, XOR-MAPPED-ADDRESS 192.0.2.1:32853. */
static const uint8_t resp_v4[] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01,
    0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, 't', 'e', 's', 't', ' ', 'v', 'e', 'c', 't', 'o', 'r', 0x20,
    0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
    0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7,
    0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
};

/* RFC 5769 §2.3: Binding success, XOR-MAPPED-ADDRESS
 * [2001:db8:1234:5678:11:2233:4455:6677]:32853. */
static const uint8_t resp_v6[] = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01,
    0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, 't', 'e', 's', 't', ' ', 'v', 'e', 'c', 't', 'o', 'r', 0x20,
    0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
    0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1,
    0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41,
    0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
};

/* RFC 5769 §2.4: Binding request with long-term credentials. */
static const uint8_t req_long[] = {
    0x00, 0x01, 0x00, 0x60, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33,
    0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
    0x00, 0x06, 0x00, 0x12, 0xe3, 0x83, 0x9e, 0xe3, 0x83, 0x88, 0xe3, 0x83,
    0xaa, 0xe3, 0x83, 0x83, 0xe3, 0x82, 0xaf, 0xe3, 0x82, 0xb9, 0x00, 0x00,
    0x00, 0x15, 0x00, 0x1c, 'f', '/', '/', '4', '9', '9', 'k', '9', '5', '4', 'd', '6',
    'O', 'L', '3', '4', 'o', 'L', '9', 'F', 'S', 'T', 'v', 'y', '6', '4', 's', 'A',
    0x00, 0x14, 0x00, 0x0b, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r', 'g', 0x00,
    0x00, 0x08, 0x00, 0x14, 0xf6, 0x70, 0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e,
    0x02, 0xb8, 0xe0, 0x71, 0x2e, 0x85, 0xc9, 0xa2, 0x8c, 0xa8, 0x96, 0x66,
};

/* RFC 8489 Appendix B.1 with the verified errata 6268 (the published text has length
 * 0x9c for 0x88 bytes of attributes and no PASSWORD-ALGORITHM, so it cannot verify):
 * USERHASH, NONCE, REALM, PASSWORD-ALGORITHM SHA-256, MESSAGE-INTEGRITY-SHA256. */
static const uint8_t req_b1[] = {
    0x00, 0x01, 0x00, 0x90, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33,
    0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
    0x00, 0x1e, 0x00, 0x20, 0x4a, 0x3c, 0xf3, 0x8f, 0xef, 0x69, 0x92, 0xbd,
    0xa9, 0x52, 0xc6, 0x78, 0x04, 0x17, 0xda, 0x0f, 0x24, 0x81, 0x94, 0x15,
    0x56, 0x9e, 0x60, 0xb2, 0x05, 0xc4, 0x6e, 0x41, 0x40, 0x7f, 0x17, 0x04,
    0x00, 0x15, 0x00, 0x29, 'o', 'b', 'M', 'a', 't', 'J', 'o', 's', '2', 'A', 'A', 'A',
    'C', 'f', '/', '/', '4', '9', '9', 'k', '9', '5', '4', 'd', '6', 'O', 'L', '3',
    '4', 'o', 'L', '9', 'F', 'S', 'T', 'v', 'y', '6', '4', 's', 'A', 0x00, 0x00, 0x00,
    0x00, 0x14, 0x00, 0x0b, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r', 'g', 0x00,
    0x00, 0x1d, 0x00, 0x04, 0x00, 0x02, 0x00, 0x00,
    0x00, 0x1c, 0x00, 0x20, 0xb5, 0xc7, 0xbf, 0x00, 0x5b, 0x6c, 0x52, 0xa2,
    0x1c, 0x51, 0xc5, 0xe8, 0x92, 0xf8, 0x19, 0x24, 0x13, 0x62, 0x96, 0xcb,
    0x92, 0x7c, 0x43, 0x14, 0x93, 0x09, 0x27, 0x8c, 0xc6, 0x51, 0x8e, 0x65,
};

static const char short_pw[] = "VOkJxbRl1RmTxUk/WvJxBt";
/* U+30DE U+30C8 U+30EA U+30C3 U+30AF U+30B9 in UTF-8. */
static const char matrix_user[] = "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83"
                                  "\xe3\x82\xaf\xe3\x82\xb9";
static const char b1_nonce[] = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA";

static void assert_bytes(const pl_stun_msg_t *m, uint16_t type, const void *want, size_t n)
{
    const uint8_t *v;
    size_t len;
    assert_int_equal(pl_stun_get_bytes(m, type, &v, &len), 0);
    assert_int_equal(len, n);
    assert_memory_equal(v, want, n);
}

static void test_request_short_term(void **state)
{
    (void)state;
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, req_short, sizeof(req_short)), 0);
    assert_int_equal(m.method, PL_STUN_METHOD_BINDING);
    assert_int_equal(m.cls, PL_STUN_CLASS_REQUEST);
    assert_int_equal(m.n_attrs, 6);
    assert_memory_equal(pl_stun_msg_tid(&m), req_short + 8, 12);
    assert_bytes(&m, PL_STUN_ATTR_SOFTWARE, "STUN test client", 16);
    assert_bytes(&m, PL_STUN_ATTR_USERNAME, "evtj:h6vY", 9);
    uint32_t prio;
    uint64_t tie;
    assert_int_equal(pl_stun_get_u32(&m, PL_STUN_ATTR_PRIORITY, &prio), 0);
    assert_int_equal(prio, 0x6e0001ffu);
    assert_int_equal(pl_stun_get_u64(&m, PL_STUN_ATTR_ICE_CONTROLLED, &tie), 0);
    assert_true(tie == 0x932ff9b151263b36ull);
    assert_int_equal(pl_stun_check_fingerprint(&m), 0);
    /* Short-term credential: the key is the password itself (RFC 8489 §9.1.1). */
    assert_int_equal(pl_stun_check_integrity(&m, (const uint8_t *)short_pw, strlen(short_pw)), 0);
    assert_int_equal(pl_stun_check_integrity(&m, (const uint8_t *)"wrong", 5), -EBADMSG);
    assert_int_equal(pl_stun_check_integrity_sha256(&m, (const uint8_t *)short_pw, 22), -ENOENT);
    size_t n_unknown = pl_stun_unknown_required(&m, NULL, 0);
    assert_int_equal(n_unknown, 0);
}

static void test_request_short_term_tampered(void **state)
{
    (void)state;
    uint8_t buf[sizeof(req_short)];
    memcpy(buf, req_short, sizeof(buf));
    buf[27] ^= 0x01;        /* one bit of SOFTWARE */
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, sizeof(buf)), 0);
    assert_int_equal(pl_stun_check_fingerprint(&m), -EBADMSG);
    assert_int_equal(pl_stun_check_integrity(&m, (const uint8_t *)short_pw, 22), -EBADMSG);
}

static void test_request_short_term_rebuild(void **state)
{
    (void)state;
    uint8_t out[256];
    pl_stun_builder_t b;
    assert_int_equal(pl_stun_build_init(&b, out, sizeof(out), 0x0001, req_short + 8), 0);
    b.pad = 0x20;
    pl_stun_add_str(&b, PL_STUN_ATTR_SOFTWARE, "STUN test client");
    pl_stun_add_u32(&b, PL_STUN_ATTR_PRIORITY, 0x6e0001ffu);
    pl_stun_add_u64(&b, PL_STUN_ATTR_ICE_CONTROLLED, 0x932ff9b151263b36ull);
    pl_stun_add_str(&b, PL_STUN_ATTR_USERNAME, "evtj:h6vY");
    pl_stun_add_integrity(&b, (const uint8_t *)short_pw, strlen(short_pw));
    pl_stun_add_fingerprint(&b);
    assert_int_equal(pl_stun_build_finish(&b), sizeof(req_short));
    assert_memory_equal(out, req_short, sizeof(req_short));
}

static void check_response(const uint8_t *msg, size_t len, const pl_sockaddr_t *want)
{
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, msg, len), 0);
    assert_int_equal(m.method, PL_STUN_METHOD_BINDING);
    assert_int_equal(m.cls, PL_STUN_CLASS_SUCCESS);
    assert_bytes(&m, PL_STUN_ATTR_SOFTWARE, "test vector", 11);
    assert_int_equal(pl_stun_check_fingerprint(&m), 0);
    assert_int_equal(pl_stun_check_integrity(&m, (const uint8_t *)short_pw, 22), 0);
    pl_sockaddr_t got;
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &got), 0);
    assert_int_equal(got.sa.sa_family, want->sa.sa_family);
    if (want->sa.sa_family == AF_INET)
        assert_memory_equal(&got.in4, &want->in4, sizeof(got.in4));
    else
        assert_memory_equal(&got.in6, &want->in6, sizeof(got.in6));
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_MAPPED_ADDRESS, &got), -ENOENT);

    /* Rebuild as a reply to a request with the same transaction id. */
    pl_stun_msg_t req;
    assert_int_equal(pl_stun_parse(&req, req_short, sizeof(req_short)), 0);
    uint8_t out[256];
    pl_stun_builder_t b;
    pl_stun_build_reply(&b, out, sizeof(out), &req, PL_STUN_CLASS_SUCCESS);
    b.pad = 0x20;
    pl_stun_add_str(&b, PL_STUN_ATTR_SOFTWARE, "test vector");
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, want);
    pl_stun_add_integrity(&b, (const uint8_t *)short_pw, 22);
    pl_stun_add_fingerprint(&b);
    assert_int_equal(pl_stun_build_finish(&b), (int)len);
    assert_memory_equal(out, msg, len);
}

static void test_response_ipv4(void **state)
{
    (void)state;
    pl_sockaddr_t want;
    memset(&want, 0, sizeof(want));
    want.in4.sin_family = AF_INET;
    want.in4.sin_port = htons(32853);
    inet_pton(AF_INET, "192.0.2.1", &want.in4.sin_addr);
    check_response(resp_v4, sizeof(resp_v4), &want);
}

static void test_response_ipv6(void **state)
{
    (void)state;
    pl_sockaddr_t want;
    memset(&want, 0, sizeof(want));
    want.in6.sin6_family = AF_INET6;
    want.in6.sin6_port = htons(32853);
    inet_pton(AF_INET6, "2001:db8:1234:5678:11:2233:4455:6677", &want.in6.sin6_addr);
    check_response(resp_v6, sizeof(resp_v6), &want);
}

/* RFC 5769 §2.4 gives the password as "The<U+00AD>M<U+00AA>tr<U+2168>" before and
 * "TheMatrIX" after SASLprep. The codec does no SASLprep (pl_stun.h), so the prepared
 * form is what a caller passes. */
static pl_stun_cred_t matrix_cred(void)
{
    return (pl_stun_cred_t){ matrix_user, strlen(matrix_user), "example.org", 11,
                             "TheMatrIX", 9 };
}

static void test_request_long_term(void **state)
{
    (void)state;
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, req_long, sizeof(req_long)), 0);
    assert_bytes(&m, PL_STUN_ATTR_USERNAME, matrix_user, strlen(matrix_user));
    assert_bytes(&m, PL_STUN_ATTR_NONCE, "f//499k954d6OL34oL9FSTvy64sA", 28);
    assert_bytes(&m, PL_STUN_ATTR_REALM, "example.org", 11);
    assert_int_equal(pl_stun_check_fingerprint(&m), -ENOENT);
    pl_stun_cred_t c = matrix_cred();
    pl_stun_key_t key;
    assert_int_equal(pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &key), 0);
    assert_int_equal(key.len, 16);
    /* printf '<user>:example.org:TheMatrIX' | openssl dgst -md5 */
    static const uint8_t want_key[16] = { 0xe8, 0xca, 0x7a, 0xd5, 0x9d, 0x5e, 0xb0, 0x51,
                                          0x8e, 0x31, 0x29, 0x11, 0xd2, 0xda, 0xb2, 0xa9 };
    assert_memory_equal(key.bytes, want_key, 16);
    assert_int_equal(pl_stun_check_integrity(&m, key.bytes, key.len), 0);
    assert_int_equal(pl_stun_check_auth(&m, key.bytes, key.len), 0);
    c.password = "TheMatrix";       /* one letter off */
    assert_int_equal(pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &key), 0);
    assert_int_equal(pl_stun_check_integrity(&m, key.bytes, key.len), -EBADMSG);
}

static void test_request_long_term_rebuild(void **state)
{
    (void)state;
    pl_stun_cred_t c = matrix_cred();
    pl_stun_key_t key;
    assert_int_equal(pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &key), 0);
    uint8_t out[256];
    pl_stun_builder_t b;
    pl_stun_build_init(&b, out, sizeof(out), pl_stun_type(PL_STUN_METHOD_BINDING,
                                                          PL_STUN_CLASS_REQUEST),
                       req_long + 8);
    pl_stun_add(&b, PL_STUN_ATTR_USERNAME, matrix_user, strlen(matrix_user));
    pl_stun_add_str(&b, PL_STUN_ATTR_NONCE, "f//499k954d6OL34oL9FSTvy64sA");
    pl_stun_add_str(&b, PL_STUN_ATTR_REALM, "example.org");
    pl_stun_add_integrity(&b, key.bytes, key.len);
    assert_int_equal(pl_stun_build_finish(&b), sizeof(req_long));
    assert_memory_equal(out, req_long, sizeof(req_long));
}

static void test_rfc8489_b1(void **state)
{
    (void)state;
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, req_b1, sizeof(req_b1)), 0);
    pl_stun_cred_t c = matrix_cred();
    uint8_t uh[32];
    assert_int_equal(pl_stun_userhash(&c, uh), 0);
    assert_bytes(&m, PL_STUN_ATTR_USERHASH, uh, 32);
    assert_bytes(&m, PL_STUN_ATTR_NONCE, b1_nonce, strlen(b1_nonce));
    /* "AAAC": bit 1 (username anonymity) counted from the least significant bit. */
    assert_int_equal(pl_stun_nonce_features(b1_nonce, strlen(b1_nonce)),
                     PL_STUN_FEATURE_USERNAME_ANONYMITY);
    uint16_t alg;
    assert_int_equal(pl_stun_get_password_algorithm(&m, &alg), 0);
    assert_int_equal(alg, PL_STUN_PWALG_SHA256);
    pl_stun_key_t key;
    assert_int_equal(pl_stun_key_longterm(&c, alg, &key), 0);
    assert_int_equal(key.len, 32);
    assert_int_equal(pl_stun_check_integrity_sha256(&m, key.bytes, key.len), 0);
    assert_int_equal(pl_stun_check_auth(&m, key.bytes, key.len), 0);
    assert_int_equal(pl_stun_check_integrity(&m, key.bytes, key.len), -ENOENT);
    /* The MD5 key must not verify. */
    pl_stun_key_t md5;
    assert_int_equal(pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &md5), 0);
    assert_int_equal(pl_stun_check_auth(&m, md5.bytes, md5.len), -EBADMSG);

    uint8_t out[256];
    pl_stun_builder_t b;
    pl_stun_build_init(&b, out, sizeof(out), 0x0001, req_b1 + 8);
    pl_stun_add(&b, PL_STUN_ATTR_USERHASH, uh, 32);
    pl_stun_add_str(&b, PL_STUN_ATTR_NONCE, b1_nonce);
    pl_stun_add_str(&b, PL_STUN_ATTR_REALM, "example.org");
    pl_stun_add_u32(&b, PL_STUN_ATTR_PASSWORD_ALGORITHM, (uint32_t)PL_STUN_PWALG_SHA256 << 16);
    pl_stun_add_integrity_sha256(&b, key.bytes, key.len);
    assert_int_equal(pl_stun_build_finish(&b), sizeof(req_b1));
    assert_memory_equal(out, req_b1, sizeof(req_b1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_short_term),
        cmocka_unit_test(test_request_short_term_tampered),
        cmocka_unit_test(test_request_short_term_rebuild),
        cmocka_unit_test(test_response_ipv4),
        cmocka_unit_test(test_response_ipv6),
        cmocka_unit_test(test_request_long_term),
        cmocka_unit_test(test_request_long_term_rebuild),
        cmocka_unit_test(test_rfc8489_b1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
