/* stun_cred.c: TURN REST API credentials (draft-uberti-behave-turn-rest-00, as coturn's
 * use-auth-secret implements it) and stateless nonces (RFC 8489 §9.2).
 *
 * Pure functions of their arguments and the caller's clock value: no I/O, no logging,
 * no state, no clock reads. Thread-safe. */
#include "relay/stun/stun_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define NONCE_COOKIE "obMatJos2"
#define NONCE_COOKIE_LEN 13u        /* "obMatJos2" + 4 base64 chars (RFC 8489 §9.2) */
#define NONCE_PREFIX_LEN 9u
#define NONCE_TS_LEN 8u             /* hex issue time */
#define NONCE_TAG_BYTES 15u         /* 120 bits of HMAC-SHA256: 20 base64 chars */
#define NONCE_SIGNED_LEN (NONCE_COOKIE_LEN + NONCE_TS_LEN)

void pl_stun_base64(const uint8_t *in, size_t n, char *out)
{
    /* EVP_EncodeBlock writes 4*ceil(n/3) chars plus a NUL, no line breaks, no
     * allocation. */
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* ---- TURN REST API ---- */

int pl_turn_rest_password(const char *secret, const void *username, size_t username_len,
                          char out[PL_TURN_REST_PASSWORD_LEN + 1])
{
    uint8_t mac[PL_STUN_SHA1_LEN];
    pl_stun_iov_t iov = { username, username_len };
    if (pl_stun_hmac(PL_STUN_MD_SHA1, (const uint8_t *)secret, strlen(secret), &iov, 1,
                     mac) < 0)
        return PL_ECRYPTO;
    pl_stun_base64(mac, sizeof(mac), out);
    return 0;
}

int pl_turn_rest_mint(const char *secret, const char *user, uint64_t now_s, uint64_t ttl_s,
                      pl_turn_rest_cred_t *out)
{
    size_t ulen = user ? strlen(user) : 0;
    if (ulen > PL_TURN_REST_USER_MAX)
        return PL_ELIMIT;
    uint64_t expiry = ttl_s > UINT64_MAX - now_s ? UINT64_MAX : now_s + ttl_s;
    if (expiry > 9999999999999999999u)     /* pl_turn_rest_expiry reads 19 digits */
        expiry = 9999999999999999999u;
    int n;
    if (ulen)
        n = snprintf(out->username, sizeof(out->username), "%" PRIu64 "%c%s", expiry,
                     PL_TURN_REST_SEP, user);
    else
        n = snprintf(out->username, sizeof(out->username), "%" PRIu64, expiry);
    if (n < 0 || (size_t)n >= sizeof(out->username))
        return PL_ELIMIT;
    return pl_turn_rest_password(secret, out->username, (size_t)n, out->password);
}

int pl_turn_rest_expiry(const void *username, size_t username_len, uint64_t *expiry_s)
{
    const uint8_t *u = username;
    uint64_t v = 0;
    size_t i = 0;
    /* At most 19 digits, so v never overflows 64 bits. */
    while (i < username_len && i < 19 && u[i] >= '0' && u[i] <= '9')
        v = v * 10 + (uint64_t)(u[i++] - '0');
    if (i == 0 || (i < username_len && u[i] != PL_TURN_REST_SEP))
        return PL_EPARSE;
    *expiry_s = v;
    return 0;
}

static int rest_key(const char *secret, const uint8_t *user, size_t ulen,
                    const uint8_t *realm, size_t rlen, uint16_t alg, pl_stun_key_t *key)
{
    char password[PL_TURN_REST_PASSWORD_LEN + 1];
    int rc = pl_turn_rest_password(secret, user, ulen, password);
    if (rc == 0) {
        pl_stun_cred_t c = { user, ulen, realm, rlen, password, PL_TURN_REST_PASSWORD_LEN };
        rc = pl_stun_key_longterm(&c, alg, key);
    }
    OPENSSL_cleanse(password, sizeof(password));
    return rc;
}

int pl_turn_rest_check(const pl_stun_msg_t *m, const char *const *secrets, size_t n_secrets,
                       uint64_t now_s, pl_stun_key_t *key)
{
    const uint8_t *user, *realm;
    size_t ulen, rlen;
    uint64_t expiry;
    uint16_t alg = PL_STUN_PWALG_MD5;
    if (pl_stun_get_bytes(m, PL_STUN_ATTR_USERNAME, &user, &ulen) < 0 ||
        pl_stun_get_bytes(m, PL_STUN_ATTR_REALM, &realm, &rlen) < 0 ||
        (m->mi_idx < 0 && m->mi256_idx < 0))
        return -ENOENT;
    if (pl_turn_rest_expiry(user, ulen, &expiry) < 0)
        return PL_EPARSE;
    if (expiry < now_s)
        return -EKEYEXPIRED;
    /* RFC 8489 §9.2.4: the request's PASSWORD-ALGORITHM picks the key derivation. */
    if (pl_stun_get_password_algorithm(m, &alg) == 0 && alg != PL_STUN_PWALG_MD5 &&
        alg != PL_STUN_PWALG_SHA256)
        return PL_EPARSE;
    for (size_t i = 0; i < n_secrets; i++) {
        int rc = rest_key(secrets[i], user, ulen, realm, rlen, alg, key);
        if (rc == 0)
            rc = pl_stun_check_auth(m, key->bytes, key->len);
        if (rc == 0)
            return (int)i;
        if (rc != -EBADMSG)
            return rc;
    }
    OPENSSL_cleanse(key, sizeof(*key));
    return -EBADMSG;
}

/* ---- stateless nonces ---- */

/* tag = first 15 bytes of HMAC-SHA256(secret, signed text | family | IP), base64. The
 * signed text is the cookie and the hex time as they appear in the nonce, so altering
 * the advertised features (a bid-down, RFC 8489 §9.2.1) breaks the tag too. */
static int nonce_tag(const pl_stun_nonce_key_t *k, const char *signed_text,
                     const pl_sockaddr_t *client, char tag_b64[21])
{
    uint8_t ip[16], mac[PL_STUN_SHA256_LEN];
    uint16_t port;
    uint8_t fam = pl_stun_ip_bytes(client, ip, &port);
    if (fam == 0)
        return PL_EPARSE;
    pl_stun_iov_t iov[3] = {
        { signed_text, NONCE_SIGNED_LEN },
        { &fam, 1 },
        { ip, fam == PL_STUN_FAMILY_IPV4 ? 4u : 16u },
    };
    if (pl_stun_hmac(PL_STUN_MD_SHA256, k->secret, sizeof(k->secret), iov, 3, mac) < 0)
        return PL_ECRYPTO;
    pl_stun_base64(mac, NONCE_TAG_BYTES, tag_b64);
    return 0;
}

int pl_stun_nonce_make(const pl_stun_nonce_key_t *k, uint64_t now_s,
                       const pl_sockaddr_t *client, char out[PL_STUN_NONCE_LEN + 1])
{
    /* RFC 8489 §9.2: "obMatJos2" then the 24-bit security feature set in base64. */
    uint8_t feat[3] = { (uint8_t)(k->features >> 16), (uint8_t)(k->features >> 8),
                        (uint8_t)k->features };
    memcpy(out, NONCE_COOKIE, NONCE_PREFIX_LEN);
    pl_stun_base64(feat, sizeof(feat), out + NONCE_PREFIX_LEN);
    snprintf(out + NONCE_COOKIE_LEN, NONCE_TS_LEN + 1, "%08" PRIx32, (uint32_t)now_s);
    int rc = nonce_tag(k, out, client, out + NONCE_SIGNED_LEN);
    if (rc < 0)
        return rc;
    return PL_STUN_NONCE_LEN;
}

static bool parse_hex32(const uint8_t *p, uint32_t *out)
{
    uint32_t v = 0;
    for (size_t i = 0; i < NONCE_TS_LEN; i++) {
        uint8_t c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10u;
        else
            return false;
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

pl_stun_nonce_result_t pl_stun_nonce_check(const pl_stun_nonce_key_t *k, const void *nonce,
                                           size_t len, uint64_t now_s,
                                           const pl_sockaddr_t *client)
{
    const uint8_t *n = nonce;
    char signed_text[NONCE_SIGNED_LEN + 1], tag[21];
    uint32_t issued;
    if (len != PL_STUN_NONCE_LEN || !parse_hex32(n + NONCE_COOKIE_LEN, &issued))
        return PL_STUN_NONCE_INVALID;
    memcpy(signed_text, n, NONCE_SIGNED_LEN);
    if (nonce_tag(k, signed_text, client, tag) < 0 ||
        CRYPTO_memcmp(tag, n + NONCE_SIGNED_LEN, PL_STUN_NONCE_LEN - NONCE_SIGNED_LEN) != 0)
        return PL_STUN_NONCE_INVALID;
    /* Times are 32-bit; unsigned differences handle the wrap in 2106. */
    uint32_t age = (uint32_t)now_s - issued;
    if (age > UINT32_MAX / 2)       /* issued in the future */
        return issued - (uint32_t)now_s > PL_STUN_NONCE_MAX_SKEW_S ? PL_STUN_NONCE_INVALID
                                                                  : PL_STUN_NONCE_OK;
    return age > k->lifetime_s ? PL_STUN_NONCE_STALE : PL_STUN_NONCE_OK;
}

static int b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int32_t pl_stun_nonce_features(const void *nonce, size_t len)
{
    const uint8_t *n = nonce;
    if (len < NONCE_COOKIE_LEN || memcmp(n, NONCE_COOKIE, NONCE_PREFIX_LEN) != 0)
        return -1;
    int32_t v = 0;
    for (size_t i = NONCE_PREFIX_LEN; i < NONCE_COOKIE_LEN; i++) {
        int d = b64_value(n[i]);
        if (d < 0)
            return -1;
        v = v << 6 | d;
    }
    return v;
}
