/* crypto.c: password hashing with scrypt (RFC 7914) and opaque session tokens.
 *
 * Passwords: a fresh 16-byte salt per hash from the OpenSSL CSPRNG, r=8, p=1 and
 * N=2^ln from the config; the parameters travel inside the encoded hash
 * ("$scrypt$ln=15,r=8,p=1$salt$hash", base64 without padding) so changing the config
 * does not invalidate stored passwords.
 * Tokens: 32 random bytes in base64url (RFC 4648 §5); the store keeps only their
 * SHA-256, so a leaked database does not leak usable tokens.
 *
 * What it does not do: rate limiting, logging, I/O. Threading: pure functions, any
 * thread, but pl_sig_pw_hash/verify take tens of milliseconds and ~N*1 KiB of memory:
 * callers run them on the KDF workers. */
#include "signaling/sig_int.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALT_LEN 16
#define KEY_LEN 32
#define SCRYPT_R 8
#define SCRYPT_P 1

static const char b64std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64 of n bytes into out (4*ceil(n/3)+1 bytes); returns the length. */
static size_t b64_encode(const uint8_t *in, size_t n, const char *alpha, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = alpha[(v >> 18) & 63];
        out[o++] = alpha[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = alpha[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = alpha[v & 63];
    }
    out[o] = '\0';
    return o;
}

/* Decodes exactly len characters of unpadded standard base64 into at most cap bytes.
 * Returns the byte count or -1. */
static int b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        const char *p = memchr(b64std, in[i], 64);
        if (!p || !in[i])
            return -1;
        acc = (acc << 6) | (uint32_t)(p - b64std);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return len % 4 == 1 ? -1 : (int)o;
}

static int scrypt(const char *pw, size_t len, const uint8_t *salt, size_t salt_len,
                  unsigned ln, uint8_t key[KEY_LEN])
{
    uint64_t n = UINT64_C(1) << ln;
    /* RFC 7914 §6: scrypt needs 128*r*N bytes for V plus 128*r*p for B; OpenSSL's
     * default cap (32 MiB) is below N=2^15, so the limit is given explicitly. */
    uint64_t maxmem = 128ull * SCRYPT_R * (n + SCRYPT_P + 2) + (1u << 20);
    return EVP_PBE_scrypt(pw, len, salt, salt_len, n, SCRYPT_R, SCRYPT_P, maxmem, key,
                          KEY_LEN) == 1 ? 0 : PL_ECRYPTO;
}

int pl_sig_pw_hash(const char *password, size_t len, unsigned log2_n,
                   char out[PL_SIG_PWHASH_MAX])
{
    uint8_t salt[SALT_LEN], key[KEY_LEN];
    char salt64[32], key64[48];
    if (log2_n < 1 || log2_n > 30 || RAND_bytes(salt, sizeof(salt)) != 1)
        return PL_ECRYPTO;
    if (scrypt(password, len, salt, sizeof(salt), log2_n, key) < 0)
        return PL_ECRYPTO;
    b64_encode(salt, sizeof(salt), b64std, salt64);
    b64_encode(key, sizeof(key), b64std, key64);
    snprintf(out, PL_SIG_PWHASH_MAX, "$scrypt$ln=%u,r=%d,p=%d$%s$%s", log2_n, SCRYPT_R,
             SCRYPT_P, salt64, key64);
    OPENSSL_cleanse(key, sizeof(key));
    return 0;
}

int pl_sig_pw_verify(const char *password, size_t len, const char *encoded)
{
    unsigned ln = 0;
    int r = 0, p = 0, consumed = 0;
    if (sscanf(encoded, "$scrypt$ln=%u,r=%d,p=%d$%n", &ln, &r, &p, &consumed) != 3 ||
        consumed == 0 || ln < 1 || ln > 30 || r != SCRYPT_R || p != SCRYPT_P)
        return PL_EPARSE;
    const char *salt64 = encoded + consumed;
    const char *dollar = strchr(salt64, '$');
    if (!dollar)
        return PL_EPARSE;
    uint8_t salt[64], want[64], got[KEY_LEN];
    int salt_len = b64_decode(salt64, (size_t)(dollar - salt64), salt, sizeof(salt));
    int want_len = b64_decode(dollar + 1, strlen(dollar + 1), want, sizeof(want));
    if (salt_len < 8 || want_len != KEY_LEN)
        return PL_EPARSE;
    if (scrypt(password, len, salt, (size_t)salt_len, ln, got) < 0)
        return PL_ECRYPTO;
    int same = CRYPTO_memcmp(got, want, KEY_LEN) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return same;
}

int pl_sig_token_new(char out[PL_SIG_TOKEN_LEN + 1])
{
    uint8_t raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return PL_ECRYPTO;
    b64_encode(raw, sizeof(raw), b64url, out);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

void pl_sig_token_hash(const char *token, size_t len, uint8_t out[32])
{
    SHA256((const unsigned char *)token, len, out);
}
