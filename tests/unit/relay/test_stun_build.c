/* test_stun_build.c: the builder (sticky errors, ordering rules, XOR addresses, TURN
 * attributes) checked by parsing its output back, and the reason phrases. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "relay/stun/pl_stun.h"

static const uint8_t tid[12] = { 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
                                 0xfa, 0x87, 0xdf, 0xae };

static pl_sockaddr_t addr(const char *ip, uint16_t port)
{
    pl_sockaddr_t a;
    memset(&a, 0, sizeof(a));
    if (strchr(ip, ':')) {
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, ip, &a.in6.sin6_addr), 1);
    } else {
        a.in4.sin_family = AF_INET;
        a.in4.sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, ip, &a.in4.sin_addr), 1);
    }
    return a;
}

static void assert_addr(const pl_sockaddr_t *got, const pl_sockaddr_t *want)
{
    assert_int_equal(got->sa.sa_family, want->sa.sa_family);
    if (want->sa.sa_family == AF_INET)
        assert_memory_equal(&got->in4, &want->in4, sizeof(got->in4));
    else
        assert_memory_equal(&got->in6, &want->in6, sizeof(got->in6));
}

static void test_overflow_is_sticky(void **state)
{
    (void)state;
    uint8_t buf[40];
    pl_stun_builder_t b;
    assert_int_equal(pl_stun_build_init(&b, buf, 19, 0x0001, tid), PL_ELIMIT);
    assert_int_equal(pl_stun_build_finish(&b), PL_ELIMIT);
    assert_int_equal(pl_stun_build_init(&b, buf, sizeof(buf), 0x0001, tid), 0);
    assert_int_equal(pl_stun_add_str(&b, PL_STUN_ATTR_SOFTWARE, "0123456789ab"), 0);
    assert_int_equal(b.len, 36);
    assert_int_equal(pl_stun_add_u32(&b, PL_STUN_ATTR_LIFETIME, 600), PL_ELIMIT);
    assert_int_equal(b.len, 36);                      /* nothing half-written */
    assert_int_equal(pl_stun_add_fingerprint(&b), PL_ELIMIT);
    assert_int_equal(pl_stun_build_finish(&b), PL_ELIMIT);
    /* Exactly full is fine. */
    assert_int_equal(pl_stun_build_init(&b, buf, sizeof(buf), 0x0001, tid), 0);
    pl_stun_add_str(&b, PL_STUN_ATTR_SOFTWARE, "0123456789ab");
    assert_int_equal(pl_stun_add(&b, PL_STUN_ATTR_DONT_FRAGMENT, NULL, 0), 0);
    assert_int_equal(pl_stun_build_finish(&b), 40);
    assert_int_equal(buf[3], 20);
}

static void test_ordering_rules(void **state)
{
    (void)state;
    uint8_t buf[256];
    pl_stun_builder_t b;
    const uint8_t key[16] = { 1 };
    pl_stun_build_init(&b, buf, sizeof(buf), 0x0001, tid);
    assert_int_equal(pl_stun_add_integrity(&b, key, 16), 0);
    assert_int_equal(pl_stun_add_str(&b, PL_STUN_ATTR_SOFTWARE, "late"), PL_ESTATE);
    assert_int_equal(pl_stun_build_finish(&b), PL_ESTATE);

    pl_stun_build_init(&b, buf, sizeof(buf), 0x0001, tid);
    pl_stun_add_integrity(&b, key, 16);
    assert_int_equal(pl_stun_add_integrity_sha256(&b, key, 16), 0);
    assert_int_equal(pl_stun_add_integrity(&b, key, 16), PL_ESTATE);

    pl_stun_build_init(&b, buf, sizeof(buf), 0x0001, tid);
    pl_stun_add_integrity(&b, key, 16);
    pl_stun_add_integrity_sha256(&b, key, 16);
    pl_stun_add_fingerprint(&b);
    int n = pl_stun_build_finish(&b);
    assert_int_equal(n, 20 + 24 + 36 + 8);
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, (size_t)n), 0);
    assert_int_equal(pl_stun_check_integrity(&m, key, 16), 0);
    assert_int_equal(pl_stun_check_integrity_sha256(&m, key, 16), 0);
    assert_int_equal(pl_stun_check_fingerprint(&m), 0);
    assert_int_equal(pl_stun_add_fingerprint(&b), PL_ESTATE);

    /* Cutting MESSAGE-INTEGRITY-SHA256 to 16 bytes changes the length field the MAC
     * covers, so it no longer verifies (the positive truncation case is in
     * test_stun_auth.c). */
    buf[2] = 0;
    buf[3] = 24 + 20;
    buf[20 + 24 + 3] = 16;
    assert_int_equal(pl_stun_parse(&m, buf, 20 + 24 + 20), 0);
    assert_int_equal(pl_stun_check_integrity_sha256(&m, key, 16), -EBADMSG);
}

static void test_addresses(void **state)
{
    (void)state;
    uint8_t buf[256];
    pl_stun_builder_t b;
    pl_sockaddr_t v4 = addr("192.0.2.1", 32853), v6 = addr("2001:db8::1", 3478);
    pl_sockaddr_t mapped = addr("::ffff:198.51.100.7", 40000);
    pl_sockaddr_t want_mapped = addr("198.51.100.7", 40000);
    pl_stun_build_init(&b, buf, sizeof(buf), 0x0101, tid);
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped);
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &v6);
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_PEER_ADDRESS, &v4);
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_PEER_ADDRESS, &v6);
    pl_stun_add_addr(&b, PL_STUN_ATTR_MAPPED_ADDRESS, &v4);
    pl_stun_add_addr(&b, PL_STUN_ATTR_ALTERNATE_SERVER, &v6);
    int n = pl_stun_build_finish(&b);
    assert_true(n > 0);
    /* XOR-MAPPED-ADDRESS bytes for 192.0.2.1:32853 are RFC 5769 §2.2's. */
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, (size_t)n), 0);
    const uint8_t *v = pl_stun_attr_value(&m, pl_stun_find(&m, PL_STUN_ATTR_XOR_PEER_ADDRESS, 0));
    assert_memory_equal(v, "\x00\x01\xa1\x47\xe1\x12\xa6\x43", 8);
    v = pl_stun_attr_value(&m, pl_stun_find(&m, PL_STUN_ATTR_MAPPED_ADDRESS, 0));
    assert_memory_equal(v, "\x00\x01\x80\x55\xc0\x00\x02\x01", 8);

    pl_sockaddr_t got;
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &got), 0);
    assert_addr(&got, &want_mapped);
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &got), 0);
    assert_addr(&got, &v6);
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_MAPPED_ADDRESS, &got), 0);
    assert_addr(&got, &v4);
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_ALTERNATE_SERVER, &got), 0);
    assert_addr(&got, &v6);
    const pl_sockaddr_t *peers[2] = { &v4, &v6 };
    int count = 0;
    for (int i = pl_stun_find(&m, PL_STUN_ATTR_XOR_PEER_ADDRESS, 0); i >= 0;
         i = pl_stun_find(&m, PL_STUN_ATTR_XOR_PEER_ADDRESS, i + 1)) {
        assert_true(count < 2);
        assert_int_equal(pl_stun_attr_addr(&m, i, &got), 0);
        assert_addr(&got, peers[count++]);
    }
    assert_int_equal(count, 2);
    /* Not an address attribute / not an IP family. */
    assert_int_equal(pl_stun_attr_addr(&m, 99, &got), PL_EPARSE);
    pl_sockaddr_t unix_addr;
    memset(&unix_addr, 0, sizeof(unix_addr));
    unix_addr.sa.sa_family = AF_UNIX;
    pl_stun_build_init(&b, buf, sizeof(buf), 0x0101, tid);
    assert_int_equal(pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &unix_addr),
                     PL_EPARSE);
    pl_stun_build_init(&b, buf, sizeof(buf), 0x0101, tid);
    assert_int_equal(pl_stun_add_addr(&b, PL_STUN_ATTR_SOFTWARE, &v4), PL_EPARSE);
}

static void test_turn_attributes(void **state)
{
    (void)state;
    uint8_t buf[512];
    pl_stun_builder_t b;
    pl_stun_build_init(&b, buf, sizeof(buf),
                       pl_stun_type(PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST), tid);
    pl_stun_add_u32(&b, PL_STUN_ATTR_REQUESTED_TRANSPORT, (uint32_t)PL_STUN_TRANSPORT_UDP << 24);
    pl_stun_add_u32(&b, PL_STUN_ATTR_LIFETIME, 3600);
    pl_stun_add_u32(&b, PL_STUN_ATTR_CHANNEL_NUMBER, 0x4abcu << 16);
    pl_stun_add_u32(&b, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, (uint32_t)PL_STUN_FAMILY_IPV6 << 24);
    pl_stun_add_u32(&b, PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, (uint32_t)PL_STUN_FAMILY_IPV6 << 24);
    pl_stun_add(&b, PL_STUN_ATTR_EVEN_PORT, "\x80", 1);
    pl_stun_add(&b, PL_STUN_ATTR_DONT_FRAGMENT, NULL, 0);
    pl_stun_add_u64(&b, PL_STUN_ATTR_RESERVATION_TOKEN, 0x0102030405060708ull);
    pl_stun_add_u32(&b, PL_STUN_ATTR_CONNECTION_ID, 77);
    pl_stun_add(&b, PL_STUN_ATTR_ICMP, "\0\0\x03\x04\x00\x00\x05\xdc", 8);
    pl_stun_add(&b, PL_STUN_ATTR_DATA, "payload", 7);
    pl_stun_add_address_error(&b, PL_STUN_FAMILY_IPV6, 440, NULL);
    const uint16_t algs[2] = { PL_STUN_PWALG_MD5, PL_STUN_PWALG_SHA256 };
    pl_stun_add_password_algorithms(&b, algs, 2);
    pl_stun_add_str(&b, PL_STUN_ATTR_ALTERNATE_DOMAIN, "turn.example.org");
    int n = pl_stun_build_finish(&b);
    assert_true(n > 0);

    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, (size_t)n), 0);
    assert_int_equal(m.method, PL_STUN_METHOD_ALLOCATE);
    uint8_t u8;
    uint16_t ch;
    uint32_t u32;
    uint64_t u64;
    bool even;
    assert_int_equal(pl_stun_get_transport(&m, &u8), 0);
    assert_int_equal(u8, PL_STUN_TRANSPORT_UDP);
    assert_int_equal(pl_stun_get_u32(&m, PL_STUN_ATTR_LIFETIME, &u32), 0);
    assert_int_equal(u32, 3600);
    assert_int_equal(pl_stun_get_channel(&m, &ch), 0);
    assert_int_equal(ch, 0x4abc);
    assert_int_equal(pl_stun_get_family(&m, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, &u8), 0);
    assert_int_equal(u8, PL_STUN_FAMILY_IPV6);
    assert_int_equal(pl_stun_get_family(&m, PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, &u8), 0);
    assert_int_equal(pl_stun_get_family(&m, PL_STUN_ATTR_LIFETIME, &u8), PL_EPARSE);
    assert_int_equal(pl_stun_get_even_port(&m, &even), 0);
    assert_true(even);
    assert_true(pl_stun_has(&m, PL_STUN_ATTR_DONT_FRAGMENT));
    assert_int_equal(pl_stun_get_u64(&m, PL_STUN_ATTR_RESERVATION_TOKEN, &u64), 0);
    assert_true(u64 == 0x0102030405060708ull);
    assert_int_equal(pl_stun_get_u64(&m, PL_STUN_ATTR_LIFETIME, &u64), PL_EPARSE);
    assert_int_equal(pl_stun_get_u32(&m, PL_STUN_ATTR_CONNECTION_ID, &u32), 0);
    assert_int_equal(u32, 77);
    pl_stun_icmp_t icmp;
    assert_int_equal(pl_stun_get_icmp(&m, &icmp), 0);
    assert_int_equal(icmp.type, 3);
    assert_int_equal(icmp.code, 4);
    assert_int_equal(icmp.data, 1500);
    const uint8_t *v;
    size_t len;
    assert_int_equal(pl_stun_get_bytes(&m, PL_STUN_ATTR_DATA, &v, &len), 0);
    assert_int_equal(len, 7);
    assert_memory_equal(v, "payload", 7);
    pl_stun_error_t e;
    assert_int_equal(pl_stun_get_address_error(&m, &u8, &e), 0);
    assert_int_equal(u8, PL_STUN_FAMILY_IPV6);
    assert_int_equal(e.code, 440);
    assert_int_equal(pl_stun_get_error(&m, &e), -ENOENT);
    uint16_t got[1];
    size_t cnt;
    assert_int_equal(pl_stun_get_password_algorithms(&m, got, 1, &cnt), 0);
    assert_int_equal(cnt, 2);
    assert_int_equal(got[0], PL_STUN_PWALG_MD5);
    assert_int_equal(pl_stun_get_password_algorithm(&m, &ch), -ENOENT);
    assert_int_equal(pl_stun_unknown_required(&m, got, 1), 0);
    assert_int_equal(pl_stun_get_u32(&m, PL_STUN_ATTR_PRIORITY, &u32), -ENOENT);
}

static void test_error_codes(void **state)
{
    (void)state;
    uint8_t buf[128];
    pl_stun_builder_t b;
    pl_stun_build_init(&b, buf, sizeof(buf), 0x0113, tid);
    assert_int_equal(pl_stun_add_error(&b, 299, NULL), PL_EPARSE);
    pl_stun_build_init(&b, buf, sizeof(buf), 0x0113, tid);
    assert_int_equal(pl_stun_add_error(&b, 700, "x"), PL_EPARSE);
    pl_stun_build_init(&b, buf, sizeof(buf), 0x0113, tid);
    assert_int_equal(pl_stun_add_error(&b, 438, NULL), 0);
    pl_stun_add_str(&b, PL_STUN_ATTR_NONCE, "n");
    int n = pl_stun_build_finish(&b);
    /* ERROR-CODE 438 "Stale Nonce": class 4, number 38, 11-byte reason, 1 byte pad. */
    assert_memory_equal(buf + 20, "\x00\x09\x00\x0f\x00\x00\x04\x26Stale Nonce\0", 20);
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, (size_t)n), 0);
    pl_stun_error_t e;
    assert_int_equal(pl_stun_get_error(&m, &e), 0);
    assert_int_equal(e.code, 438);

    static const int codes[] = { 300, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443,
                                 446, 447, 486, 500, 508 };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *r = pl_stun_reason(codes[i]);
        assert_non_null(r);
        assert_string_not_equal(r, "Client Error");
        assert_string_not_equal(r, "Redirect");
    }
    assert_string_equal(pl_stun_reason(401), "Unauthenticated");
    assert_string_equal(pl_stun_reason(486), "Allocation Quota Reached");
    assert_string_equal(pl_stun_reason(508), "Insufficient Capacity");
    assert_string_equal(pl_stun_reason(499), "Client Error");
    assert_string_equal(pl_stun_reason(-1), "Server Error");
}

static void test_padding_byte(void **state)
{
    (void)state;
    uint8_t buf[64];
    pl_stun_builder_t b;
    pl_stun_build_init(&b, buf, sizeof(buf), 0x0001, tid);
    pl_stun_add_str(&b, PL_STUN_ATTR_USERNAME, "abcde");
    assert_memory_equal(buf + 24, "abcde\0\0\0", 8);
    b.pad = 0x20;
    pl_stun_add_str(&b, PL_STUN_ATTR_SOFTWARE, "x");
    assert_memory_equal(buf + 36, "x   ", 4);
    assert_int_equal(pl_stun_build_finish(&b), 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflow_is_sticky),
        cmocka_unit_test(test_ordering_rules),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_turn_attributes),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_padding_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
