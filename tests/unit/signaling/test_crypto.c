/* test_crypto.c: password hashes and session tokens: the RFC 7914 §12 scrypt vector
 * through the verifier, round trips at a low cost, wrong passwords, malformed encodings
 * (total: no crash, PL_EPARSE), fresh salts, token format and the SHA-256 of tokens
 * (FIPS 180-2 "abc" vector). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "signaling/sig_int.h"

#include <string.h>

/* RFC 7914 §12, third vector: P="pleaseletmein", S="SodiumChloride", N=16384, r=8,
 * p=1; the first 32 bytes of its 64-byte output (PBKDF2 blocks are independent, so
 * they equal the dkLen=32 output). */
static const char rfc7914_v3[] =
    "$scrypt$ln=14,r=8,p=1$U29kaXVtQ2hsb3JpZGU$cCO9yzr9c0hGHAbNgf046/2o+7qQT44+qbVD9lRdofI";

static void test_rfc7914_vector(void **state)
{
    PL_UNUSED(state);
    assert_int_equal(pl_sig_pw_verify("pleaseletmein", 13, rfc7914_v3), 1);
    assert_int_equal(pl_sig_pw_verify("pleaseletmeiN", 13, rfc7914_v3), 0);
    assert_int_equal(pl_sig_pw_verify("pleaseletmein", 12, rfc7914_v3), 0);
}

static void test_round_trip_and_fresh_salt(void **state)
{
    PL_UNUSED(state);
    char a[PL_SIG_PWHASH_MAX], b[PL_SIG_PWHASH_MAX];
    assert_int_equal(pl_sig_pw_hash("correct horse", 13, 10, a), 0);
    assert_int_equal(pl_sig_pw_hash("correct horse", 13, 10, b), 0);
    assert_true(strncmp(a, "$scrypt$ln=10,r=8,p=1$", 22) == 0);
    assert_string_not_equal(a, b);
    assert_int_equal(pl_sig_pw_verify("correct horse", 13, a), 1);
    assert_int_equal(pl_sig_pw_verify("correct horse", 13, b), 1);
    assert_int_equal(pl_sig_pw_verify("correct horsf", 13, a), 0);
    assert_int_equal(pl_sig_pw_verify("", 0, a), 0);
    /* Passwords may hold NUL bytes: the length is what counts. */
    assert_int_equal(pl_sig_pw_hash("a\0b", 3, 10, a), 0);
    assert_int_equal(pl_sig_pw_verify("a\0b", 3, a), 1);
    assert_int_equal(pl_sig_pw_verify("a\0c", 3, a), 0);
}

static void test_malformed_encodings(void **state)
{
    PL_UNUSED(state);
    static const char *const bad[] = {
        "", "$scrypt$", "$bcrypt$ln=10,r=8,p=1$AAAA$AAAA",
        "$scrypt$ln=10,r=8,p=2$U29kaXVtQ2hsb3JpZGU$cCO9yzr9c0hGHAbNgf046/2o+7qQT44+qbVD9lRdofI",
        "$scrypt$ln=99,r=8,p=1$U29kaXVtQ2hsb3JpZGU$cCO9yzr9c0hGHAbNgf046/2o+7qQT44+qbVD9lRdofI",
        "$scrypt$ln=0,r=8,p=1$U29kaXVtQ2hsb3JpZGU$cCO9yzr9c0hGHAbNgf046/2o+7qQT44+qbVD9lRdofI",
        "$scrypt$ln=10,r=8,p=1$U29kaXVtQ2hsb3JpZGU",                    /* no hash */
        "$scrypt$ln=10,r=8,p=1$U2!k$cCO9yzr9c0hGHAbNgf046/2o+7qQT44+qbVD9lRdofI",
        "$scrypt$ln=10,r=8,p=1$U29kaXVtQ2hsb3JpZGU$cCO9",                /* short hash */
        "$scrypt$ln=10,r=8,p=1$AA$cCO9yzr9c0hGHAbNgf046/2o+7qQT44+qbVD9lRdofI", /* short salt */
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++)
        if (pl_sig_pw_verify("x", 1, bad[i]) != PL_EPARSE)
            fail_msg("case %zu not rejected: %s", i, bad[i]);
}

static void test_tokens(void **state)
{
    PL_UNUSED(state);
    char t1[PL_SIG_TOKEN_LEN + 1], t2[PL_SIG_TOKEN_LEN + 1];
    assert_int_equal(pl_sig_token_new(t1), 0);
    assert_int_equal(pl_sig_token_new(t2), 0);
    assert_int_equal(strlen(t1), PL_SIG_TOKEN_LEN);
    assert_string_not_equal(t1, t2);
    for (size_t i = 0; i < PL_SIG_TOKEN_LEN; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                               t1[i]));
    uint8_t h[32];
    pl_sig_token_hash("abc", 3, h);
    static const uint8_t want[32] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
        0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
        0xf2, 0x00, 0x15, 0xad,
    };
    assert_memory_equal(h, want, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7914_vector),
        cmocka_unit_test(test_round_trip_and_fresh_salt),
        cmocka_unit_test(test_malformed_encodings),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
