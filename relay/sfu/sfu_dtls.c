/* sfu_dtls.c: the DTLS side of a peer connection: the shared SSL_CTX (DTLS 1.2, a
 * self-signed ECDSA P-256 certificate made at start, use_srtp with AEAD_AES_128_GCM
 * and AES_CM_128_HMAC_SHA1_80), the write BIO that sends each DTLS datagram through
 * ICE, the certificate-fingerprint check (RFC 8122 §5) and SRTP keying from the
 * exporter (RFC 5764 §4.2).
 *
 * What it does not: drive the handshake (sfu_pc.c does, on ICE events and timers), or
 * validate certificates against a CA: WebRTC authenticates the peer by the fingerprint
 * carried in the signaled SDP, so any self-signed certificate is accepted by OpenSSL
 * and checked against that fingerprint once the handshake completes.
 *
 * Threading: pl_dtls_ctx_create at start-up; the BIO method is created once per
 * process (pthread_once). An SSL object and its SRTP sessions belong to their pc's
 * thread; SSL_CTX is shared read-only after set-up (OpenSSL allows SSL_new from
 * several threads). */
#include "relay/sfu/sfu_pc_int.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *g_bio_method;

/* Write side of the SSL object: one BIO_write is one DTLS datagram, sent at once over
 * the selected ICE pair (a memory BIO would glue flights together past the MTU). */
static int bio_write(BIO *b, const char *data, int len)
{
    pl_pc_t *pc = BIO_get_data(b);
    if (pc && len > 0)
        pl_pc_send_raw(pc, (const uint8_t *)data, (size_t)len);
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    PL_UNUSED(b);
    PL_UNUSED(num);
    PL_UNUSED(ptr);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_DGRAM_QUERY_MTU:
        return PL_DTLS_MTU;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    BIO_set_data(b, NULL);
    return 1;
}

static int bio_destroy(BIO *b)
{
    BIO_set_data(b, NULL);
    return 1;
}

static void once_init(void)
{
    g_bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "parley-ice");
    if (g_bio_method) {
        BIO_meth_set_write(g_bio_method, bio_write);
        BIO_meth_set_ctrl(g_bio_method, bio_ctrl);
        BIO_meth_set_create(g_bio_method, bio_create);
        BIO_meth_set_destroy(g_bio_method, bio_destroy);
    }
}

BIO *pl_dtls_bio_new(pl_pc_t *pc)
{
    pthread_once(&g_once, once_init);
    if (!g_bio_method)
        return NULL;
    BIO *b = BIO_new(g_bio_method);
    if (b)
        BIO_set_data(b, pc);
    return b;
}

static int verify_any(int ok, X509_STORE_CTX *store)
{
    PL_UNUSED(ok);
    PL_UNUSED(store);
    return 1;       /* the fingerprint check after the handshake authenticates */
}

static X509 *make_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    uint32_t serial;
    RAND_bytes((unsigned char *)&serial, sizeof(serial));
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(serial & 0x7fffffff));
    X509_gmtime_adj(X509_getm_notBefore(x), -86400);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"parley-sfu",
                               -1, -1, 0);
    if (X509_set_pubkey(x, key) != 1 || X509_set_issuer_name(x, name) != 1 ||
        X509_sign(x, key, EVP_sha256()) <= 0) {
        X509_free(x);
        return NULL;
    }
    return x;
}

void pl_dtls_fingerprint_str(const uint8_t *md, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, i ? ":%02X" : "%02X", md[i]);
    out[o < cap ? o : cap - 1] = '\0';
}

SSL_CTX *pl_dtls_ctx_create(const char *profiles, char *fp, size_t fp_cap)
{
    pthread_once(&g_once, once_init);
    if (!g_bio_method)
        return NULL;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = key ? make_cert(key) : NULL;
    SSL_CTX *ctx = cert ? SSL_CTX_new(DTLS_method()) : NULL;
    if (!ctx)
        goto fail;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    /* Note: SSL_CTX_set_tlsext_use_srtp returns 0 on success. */
    if (SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1 ||
        SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:"
                                "ECDHE-ECDSA-AES256-GCM-SHA384:"
                                "ECDHE-ECDSA-CHACHA20-POLY1305") != 1 ||
        SSL_CTX_set_tlsext_use_srtp(ctx, profiles ? profiles
                                            : "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80") != 0 ||
        X509_digest(cert, EVP_sha256(), md, &mdlen) != 1)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_any);
    pl_dtls_fingerprint_str(md, mdlen, fp, fp_cap);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return NULL;
}

int pl_dtls_fingerprint_parse(const char *s, uint8_t out[32])
{
    /* "AB:CD:..." with 32 bytes for sha-256. */
    size_t n = 0;
    while (*s && n < 32) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1 || !g_ascii_isxdigit(s[0]) || !g_ascii_isxdigit(s[1]))
            return PL_EPARSE;
        out[n++] = (uint8_t)v;
        s += 2;
        if (*s == ':')
            s++;
        else if (*s)
            return PL_EPARSE;
    }
    return (n == 32 && *s == '\0') ? 0 : PL_EPARSE;
}

bool pl_dtls_peer_matches(SSL *ssl, const uint8_t want[32])
{
    X509 *peer = SSL_get1_peer_certificate(ssl);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    bool ok = peer && X509_digest(peer, EVP_sha256(), md, &n) == 1 && n == 32 &&
              CRYPTO_memcmp(md, want, 32) == 0;
    X509_free(peer);
    return ok;
}

/* A subscriber's outbound session carries two SSRCs (media and RTX) per forwarded
 * m-line: room for every m-line a participant may have (PL_SFU_MAX_MLINES, 256) and a
 * few RTCP-only senders. */
#define SRTP_MAX_STREAMS (2 * 256 + 16)

static int make_session(pl_srtp_t **out, const SRTP_PROTECTION_PROFILE *prof,
                        const uint8_t *key, const uint8_t *salt, bool inbound)
{
    bool gcm = prof->id == SRTP_AEAD_AES_128_GCM;
    pl_srtp_opts_t o = {
        .profile = gcm ? PL_SRTP_AEAD_AES_128_GCM : PL_SRTP_AES_CM_128_HMAC_SHA1_80,
        .master_key = key,
        .master_salt = salt,
        .key_len = PL_SRTP_KEY_LEN,
        .salt_len = gcm ? 12 : 14,
        .max_streams = SRTP_MAX_STREAMS,
        /* Retransmissions without RTX resend a sequence number already protected. */
        .allow_repeat_tx = !inbound,
    };
    return pl_srtp_create(&o, out) == PL_SRTP_OK ? 0 : PL_ECRYPTO;
}

int pl_dtls_srtp_setup(SSL *ssl, bool is_client, pl_srtp_t **in, pl_srtp_t **out,
                       const char **name)
{
    const SRTP_PROTECTION_PROFILE *prof = SSL_get_selected_srtp_profile(ssl);
    if (!prof || (prof->id != SRTP_AEAD_AES_128_GCM && prof->id != SRTP_AES128_CM_SHA1_80))
        return PL_ECRYPTO;
    size_t key_len = PL_SRTP_KEY_LEN, salt_len = prof->id == SRTP_AEAD_AES_128_GCM ? 12 : 14;
    uint8_t mat[2 * (16 + 14)];
    size_t total = 2 * (key_len + salt_len);
    /* RFC 5764 §4.2: client key, server key, client salt, server salt. */
    if (SSL_export_keying_material(ssl, mat, total, "EXTRACTOR-dtls_srtp", 19, NULL, 0, 0) != 1)
        return PL_ECRYPTO;
    const uint8_t *ck = mat, *sk = mat + key_len;
    const uint8_t *cs = mat + 2 * key_len, *ss = cs + salt_len;
    int rc = make_session(in, prof, is_client ? sk : ck, is_client ? ss : cs, true);
    if (rc == 0) {
        rc = make_session(out, prof, is_client ? ck : sk, is_client ? cs : ss, false);
        if (rc < 0) {
            pl_srtp_destroy(*in);
            *in = NULL;
        }
    }
    OPENSSL_cleanse(mat, sizeof(mat));
    *name = prof->id == SRTP_AEAD_AES_128_GCM ? "AEAD_AES_128_GCM" : "AES_CM_128_HMAC_SHA1_80";
    return rc;
}
