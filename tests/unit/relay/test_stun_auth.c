/* test_stun_auth.c: HMAC and CRC known answers, long-term keys, TURN REST credentials
 * and stateless nonces. Known answers come from RFC 2202/4231 and from the openssl CLI
 * (commands in the comments), not from this code. White-box: includes stun_int.h to
 * test the HMAC helper directly. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "relay/stun/pl_stun.h"
#include "relay/stun/stun_int.h"

static const uint8_t tid[12] = { 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9 };

static void unhex(const char *hex, uint8_t *out)
{
    for (size_t i = 0; hex[2 * i]; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void test_hmac_known_answers(void **state)
{
    (void)state;
    uint8_t mac[32], want[32], key[131];
    const char *jefe = "what do ya want for nothing?";
    pl_stun_iov_t iov = { jefe, strlen(jefe) };
    /* RFC 2202 §3 / RFC 4231 §4.3, test case 2. */
    assert_int_equal(pl_stun_hmac(PL_STUN_MD_SHA1, (const uint8_t *)"Jefe", 4, &iov, 1, mac), 20);
    unhex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", want);
    assert_memory_equal(mac, want, 20);
    assert_int_equal(pl_stun_hmac(PL_STUN_MD_SHA256, (const uint8_t *)"Jefe", 4, &iov, 1, mac), 32);
    unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want);
    assert_memory_equal(mac, want, 32);
    /* Keys longer than the block are hashed first: RFC 2202 case 6, RFC 4231 case 6;
     * the message is split across two iov pieces. */
    const char *big = "Test Using Larger Than Block-Size Key - Hash Key First";
    pl_stun_iov_t two[2] = { { big, 10 }, { big + 10, strlen(big) - 10 } };
    memset(key, 0xaa, sizeof(key));
    assert_int_equal(pl_stun_hmac(PL_STUN_MD_SHA1, key, 80, two, 2, mac), 20);
    unhex("aa4ae5e15272d00e95705637ce8a3b55ed402112", want);
    assert_memory_equal(mac, want, 20);
    assert_int_equal(pl_stun_hmac(PL_STUN_MD_SHA256, key, 131, two, 2, mac), 32);
    unhex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", want);
    assert_memory_equal(mac, want, 32);
}

static void test_crc32(void **state)
{
    (void)state;
    /* The CRC-32 check value (python3 -c "import zlib; print(hex(zlib.crc32(b'123456789')))"). */
    assert_int_equal(pl_stun_crc32((const uint8_t *)"123456789", 9), 0xcbf43926u);
    assert_int_equal(pl_stun_crc32(NULL, 0), 0);
    /* Long and odd-length inputs exercise the 8-byte loop and the tail:
     * python3 -c "import zlib; b=bytes((i*7)&0xff for i in range(1300));
     *             print(hex(zlib.crc32(b)), hex(zlib.crc32(b[3:])))" */
    static uint8_t b[1300];
    for (size_t i = 0; i < sizeof(b); i++)
        b[i] = (uint8_t)(i * 7);
    assert_int_equal(pl_stun_crc32(b, sizeof(b)), 0xdbdf6a16u);
    assert_int_equal(pl_stun_crc32(b + 3, sizeof(b) - 3), 0x7ae51f34u);
}

static void test_truncated_sha256_mac(void **state)
{
    (void)state;
    const uint8_t key[32] = { 7 };
    uint8_t buf[128], mac[32];
    pl_stun_builder_t b;
    pl_stun_build_init(&b, buf, sizeof(buf), 0x0001, tid);
    pl_stun_add_str(&b, PL_STUN_ATTR_USERNAME, "bob");
    size_t start = b.len;
    pl_stun_add(&b, PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256, mac, 16);
    /* RFC 8489 §14.6: the HMAC covers the header with the length up to the end of the
     * (16-byte) attribute, and the value is the first 16 bytes of the HMAC. */
    pl_stun_iov_t iov = { buf, start };
    assert_int_equal(pl_stun_hmac(PL_STUN_MD_SHA256, key, 32, &iov, 1, mac), 32);
    memcpy(buf + start + 4, mac, 16);
    pl_stun_msg_t m;
    assert_int_equal(pl_stun_parse(&m, buf, (size_t)pl_stun_build_finish(&b)), 0);
    assert_int_equal(pl_stun_check_integrity_sha256(&m, key, 32), 0);
    buf[start + 4 + 15] ^= 1;
    assert_int_equal(pl_stun_check_integrity_sha256(&m, key, 32), -EBADMSG);
}

static void test_longterm_key(void **state)
{
    (void)state;
    pl_stun_cred_t c = { "user", 4, "realm", 5, "pass", 4 };
    pl_stun_key_t k;
    /* echo -n user:realm:pass | openssl dgst -md5 / -sha256 */
    uint8_t want[32];
    assert_int_equal(pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &k), 0);
    assert_int_equal(k.len, 16);
    unhex("8493fbc53ba582fb4c044c456bdc40eb", want);
    assert_memory_equal(k.bytes, want, 16);
    assert_int_equal(pl_stun_key_longterm(&c, PL_STUN_PWALG_SHA256, &k), 0);
    assert_int_equal(k.len, 32);
    assert_int_equal(pl_stun_key_longterm(&c, 3, &k), PL_EPARSE);
}

static void test_rest_password_and_expiry(void **state)
{
    (void)state;
    char pw[PL_TURN_REST_PASSWORD_LEN + 1];
    /* echo -n "1700000000:alice" | openssl dgst -sha1 -hmac secret -binary | base64 */
    assert_int_equal(pl_turn_rest_password("secret", "1700000000:alice", 16, pw), 0);
    assert_string_equal(pw, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
    /* echo -n "1700000000" | openssl dgst -sha1 -hmac north-secret -binary | base64 */
    assert_int_equal(pl_turn_rest_password("north-secret", "1700000000", 10, pw), 0);
    assert_string_equal(pw, "KSVUc7JbPzLiz2XwcNjXxFmbP04=");

    uint64_t e;
    assert_int_equal(pl_turn_rest_expiry("1700000000:alice", 16, &e), 0);
    assert_true(e == 1700000000u);
    assert_int_equal(pl_turn_rest_expiry("1700000000", 10, &e), 0);
    assert_int_equal(pl_turn_rest_expiry("1700000000:", 11, &e), 0);
    assert_int_equal(pl_turn_rest_expiry("9999999999999999999", 19, &e), 0);
    assert_true(e == 9999999999999999999u);
    assert_int_equal(pl_turn_rest_expiry("99999999999999999999", 20, &e), PL_EPARSE);
    assert_int_equal(pl_turn_rest_expiry("", 0, &e), PL_EPARSE);
    assert_int_equal(pl_turn_rest_expiry("alice", 5, &e), PL_EPARSE);
    assert_int_equal(pl_turn_rest_expiry(":1700000000", 11, &e), PL_EPARSE);
    assert_int_equal(pl_turn_rest_expiry("17000x0000", 10, &e), PL_EPARSE);
    assert_int_equal(pl_turn_rest_expiry("-1700000000", 11, &e), PL_EPARSE);
    assert_int_equal(pl_turn_rest_expiry("1700000000 :a", 13, &e), PL_EPARSE);
}

static void test_rest_mint(void **state)
{
    (void)state;
    pl_turn_rest_cred_t c;
    assert_int_equal(pl_turn_rest_mint("secret", "alice", 1699990000, 10000, &c), 0);
    assert_string_equal(c.username, "1700000000:alice");
    assert_string_equal(c.password, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
    assert_int_equal(pl_turn_rest_mint("north-secret", NULL, 1700000000, 0, &c), 0);
    assert_string_equal(c.username, "1700000000");
    assert_string_equal(c.password, "KSVUc7JbPzLiz2XwcNjXxFmbP04=");
    char longuser[PL_TURN_REST_USER_MAX + 2];
    memset(longuser, 'u', sizeof(longuser) - 1);
    longuser[sizeof(longuser) - 1] = 0;
    assert_int_equal(pl_turn_rest_mint("s", longuser, 1, 1, &c), PL_ELIMIT);
    longuser[PL_TURN_REST_USER_MAX] = 0;
    assert_int_equal(pl_turn_rest_mint("s", longuser, UINT64_MAX, UINT64_MAX, &c), 0);
    uint64_t e;
    assert_int_equal(pl_turn_rest_expiry(c.username, strlen(c.username), &e), 0);
}

/* An Allocate request signed with REST credentials, as a client would send it. */
static int signed_request(uint8_t *buf, size_t cap, const pl_turn_rest_cred_t *c,
                          uint16_t alg)
{
    pl_stun_cred_t lc = { c->username, strlen(c->username), "parley.test", 11,
                          c->password, strlen(c->password) };
    pl_stun_key_t key;
    assert_int_equal(pl_stun_key_longterm(&lc, alg, &key), 0);
    pl_stun_builder_t b;
    pl_stun_build_init(&b, buf, cap, pl_stun_type(PL_STUN_METHOD_ALLOCATE, 0), tid);
    pl_stun_add_u32(&b, PL_STUN_ATTR_REQUESTED_TRANSPORT, 17u << 24);
    pl_stun_add_str(&b, PL_STUN_ATTR_USERNAME, c->username);
    pl_stun_add_str(&b, PL_STUN_ATTR_REALM, "parley.test");
    pl_stun_add_str(&b, PL_STUN_ATTR_NONCE, "nonce");
    if (alg == PL_STUN_PWALG_SHA256) {
        pl_stun_add_u32(&b, PL_STUN_ATTR_PASSWORD_ALGORITHM, (uint32_t)alg << 16);
        pl_stun_add_integrity_sha256(&b, key.bytes, key.len);
    } else {
        pl_stun_add_integrity(&b, key.bytes, key.len);
    }
    pl_stun_add_fingerprint(&b);
    return pl_stun_build_finish(&b);
}

static void test_rest_check(void **state)
{
    (void)state;
    const char *secrets[] = { "previous", "secret" };
    const char *wrong[] = { "nope", "also-nope" };
    pl_turn_rest_cred_t c;
    pl_stun_key_t key;
    uint8_t buf[256], want[16];
    pl_stun_msg_t m;
    assert_int_equal(pl_turn_rest_mint("secret", "alice", 1699990000, 10000, &c), 0);
    int n = signed_request(buf, sizeof(buf), &c, PL_STUN_PWALG_MD5);
    assert_int_equal(pl_stun_parse(&m, buf, (size_t)n), 0);
    assert_int_equal(pl_turn_rest_check(&m, secrets, 2, 1699999999, &key), 1);
    /* P=$(echo -n 1700000000:alice | openssl dgst -sha1 -hmac secret -binary | base64);
     * echo -n "1700000000:alice:parley.test:$P" | openssl dgst -md5 */
    unhex("283cb4a2b3094ca3ea3a6c1ea0247144", want);
    assert_int_equal(key.len, 16);
    assert_memory_equal(key.bytes, want, 16);
    assert_int_equal(pl_turn_rest_check(&m, secrets, 2, 1700000000, &key), 1);
    assert_int_equal(pl_turn_rest_check(&m, secrets, 2, 1700000001, &key), -EKEYEXPIRED);
    assert_int_equal(pl_turn_rest_check(&m, wrong, 2, 1699999999, &key), -EBADMSG);
    assert_int_equal(pl_turn_rest_check(&m, secrets, 0, 1699999999, &key), -EBADMSG);

    n = signed_request(buf, sizeof(buf), &c, PL_STUN_PWALG_SHA256);
    assert_int_equal(pl_stun_parse(&m, buf, (size_t)n), 0);
    assert_int_equal(pl_turn_rest_check(&m, secrets, 2, 1699999999, &key), 1);
    assert_int_equal(key.len, 32);

    /* Not a REST username; no integrity at all. */
    strcpy(c.username, "alice");
    n = signed_request(buf, sizeof(buf), &c, PL_STUN_PWALG_MD5);
    assert_int_equal(pl_stun_parse(&m, buf, (size_t)n), 0);
    assert_int_equal(pl_turn_rest_check(&m, secrets, 2, 0, &key), PL_EPARSE);
    pl_stun_builder_t b;
    pl_stun_build_init(&b, buf, sizeof(buf), 0x0003, tid);
    pl_stun_add_str(&b, PL_STUN_ATTR_USERNAME, "1700000000:alice");
    pl_stun_add_str(&b, PL_STUN_ATTR_REALM, "parley.test");
    assert_int_equal(pl_stun_parse(&m, buf, (size_t)pl_stun_build_finish(&b)), 0);
    assert_int_equal(pl_turn_rest_check(&m, secrets, 2, 0, &key), -ENOENT);
}

static pl_sockaddr_t ip(const char *s, uint16_t port)
{
    pl_sockaddr_t a;
    memset(&a, 0, sizeof(a));
    if (strchr(s, ':')) {
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons(port);
        inet_pton(AF_INET6, s, &a.in6.sin6_addr);
    } else {
        a.in4.sin_family = AF_INET;
        a.in4.sin_port = htons(port);
        inet_pton(AF_INET, s, &a.in4.sin_addr);
    }
    return a;
}

static void test_nonces(void **state)
{
    (void)state;
    pl_stun_nonce_key_t k = { .features = PL_STUN_FEATURE_PASSWORD_ALGORITHMS,
                              .lifetime_s = 600 };
    memset(k.secret, 0x5a, sizeof(k.secret));
    pl_sockaddr_t client = ip("203.0.113.9", 5000), other = ip("203.0.113.10", 5000);
    char n[PL_STUN_NONCE_LEN + 1];
    const uint64_t t0 = 1700000000;
    assert_int_equal(pl_stun_nonce_make(&k, t0, &client, n), PL_STUN_NONCE_LEN);
    assert_int_equal(strlen(n), PL_STUN_NONCE_LEN);
    assert_memory_equal(n, "obMatJos2AAAB6553f100", 21);    /* cookie, then hex time */
    assert_int_equal(pl_stun_nonce_features(n, PL_STUN_NONCE_LEN), 1);
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN, t0, &client), PL_STUN_NONCE_OK);
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN, t0 + 600, &client),
                     PL_STUN_NONCE_OK);
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN, t0 + 601, &client),
                     PL_STUN_NONCE_STALE);
    /* Another port of the same IP is fine (TCP reconnects); another IP is not. */
    pl_sockaddr_t same_ip = ip("203.0.113.9", 6000);
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN, t0, &same_ip),
                     PL_STUN_NONCE_OK);
    pl_sockaddr_t mapped = ip("::ffff:203.0.113.9", 1);
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN, t0, &mapped),
                     PL_STUN_NONCE_OK);
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN, t0, &other),
                     PL_STUN_NONCE_INVALID);
    /* Clock skew: a little is accepted, a lot is not. */
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN, t0 - 60, &client),
                     PL_STUN_NONCE_OK);
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN, t0 - 61, &client),
                     PL_STUN_NONCE_INVALID);
    /* Tampering anywhere, a wrong length, another server's key. */
    for (size_t i = 0; i < PL_STUN_NONCE_LEN; i++) {
        char t[PL_STUN_NONCE_LEN + 1];
        memcpy(t, n, sizeof(t));
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_int_equal(pl_stun_nonce_check(&k, t, PL_STUN_NONCE_LEN, t0, &client),
                         PL_STUN_NONCE_INVALID);
    }
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN - 1, t0, &client),
                     PL_STUN_NONCE_INVALID);
    assert_int_equal(pl_stun_nonce_check(&k, "", 0, t0, &client), PL_STUN_NONCE_INVALID);
    pl_stun_nonce_key_t k2 = k;
    k2.secret[0] ^= 1;
    assert_int_equal(pl_stun_nonce_check(&k2, n, PL_STUN_NONCE_LEN, t0, &client),
                     PL_STUN_NONCE_INVALID);
    /* IPv6 clients; non-IP addresses. */
    pl_sockaddr_t v6 = ip("2001:db8::9", 5000), v6b = ip("2001:db8::a", 5000);
    assert_int_equal(pl_stun_nonce_make(&k, t0, &v6, n), PL_STUN_NONCE_LEN);
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN, t0 + 1, &v6), PL_STUN_NONCE_OK);
    assert_int_equal(pl_stun_nonce_check(&k, n, PL_STUN_NONCE_LEN, t0, &v6b),
                     PL_STUN_NONCE_INVALID);
    pl_sockaddr_t unix_addr;
    memset(&unix_addr, 0, sizeof(unix_addr));
    unix_addr.sa.sa_family = AF_UNIX;
    assert_int_equal(pl_stun_nonce_make(&k, t0, &unix_addr, n), PL_EPARSE);
    assert_int_equal(pl_stun_nonce_features("obMatJos2gAAAxyz", 16), 0x800000);
    assert_int_equal(pl_stun_nonce_features("obMatJos2AA=Axyz", 16), -1);
    assert_int_equal(pl_stun_nonce_features("f//499k954d6OL34oL9FSTvy64sA", 28), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_known_answers),
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_truncated_sha256_mac),
        cmocka_unit_test(test_longterm_key),
        cmocka_unit_test(test_rest_password_and_expiry),
        cmocka_unit_test(test_rest_mint),
        cmocka_unit_test(test_rest_check),
        cmocka_unit_test(test_nonces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
