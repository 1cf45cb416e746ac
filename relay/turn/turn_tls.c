/* turn_tls.c: OpenSSL for TURN over TLS (RFC 8656 §3.1, RFC 8489 §6.2.3): server
 * contexts built from the PEM certificate chain and key of [turn] tls_cert/tls_key,
 * and non-blocking handshake, read and write steps for the relay threads' loops.
 *
 * Reload: a context belongs to a settings snapshot (turn_settings.c builds it, so
 * --check-config and SIGHUP fail on a certificate that does not load). A new snapshot
 * brings a new context for new connections; an SSL object holds a reference to the
 * context it was made from, so open connections keep theirs.
 *
 * What it does not: DTLS (RFC 7350), client certificates, OCSP stapling.
 *
 * Threading: building and freeing contexts on the main thread (the last unref may be
 * on a relay thread: SSL_CTX reference counts are atomic); an SSL object on the thread
 * that owns its connection. */
#include "relay/turn/turn_stream_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static int ssl_fail(char *err, size_t cap, const char *what, const char *path)
{
    unsigned long e = ERR_peek_last_error();
    char reason[160] = "unknown error";
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    snprintf(err, cap, "%s \"%s\": %s", what, path, reason);
    ERR_clear_error();
    return PL_ECRYPTO;
}

int pl_turn_tls_ctx_build(const char *cert, const char *key, SSL_CTX **out, char *err,
                          size_t cap)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int rc;
    if (!ctx)
        return ssl_fail(err, cap, "creating a TLS context for", cert);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Renegotiation is an old DoS lever; nothing in TURN needs it. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Our output buffer may move between a blocked SSL_write and its retry, and a
     * partial write is progress; idle connections give their 2 x 16 KiB back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        rc = ssl_fail(err, cap, "loading the certificate chain", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        rc = ssl_fail(err, cap, "loading the private key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        rc = ssl_fail(err, cap, "the private key does not match the certificate", key);
        goto fail;
    }
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    *out = NULL;
    return rc;
}

void pl_turn_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

SSL *pl_turn_tls_new(SSL_CTX *ctx, int fd)
{
    if (!ctx)
        return NULL;
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

void pl_turn_tls_free(SSL *ssl)
{
    SSL_free(ssl);
}

/* Maps an SSL_* result: -EAGAIN with *want for the retry, 0 for a clean close,
 * -EPROTO / -errno for a broken connection. */
static ssize_t ssl_result(SSL *ssl, int rc, uint32_t *want)
{
    int e = SSL_get_error(ssl, rc);
    int saved = errno;
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ: *want = PL_IO_READ; return -EAGAIN;
    case SSL_ERROR_WANT_WRITE: *want = PL_IO_WRITE; return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN: return 0;
    case SSL_ERROR_SYSCALL: return saved ? -saved : -EPIPE;
    default: return -EPROTO;
    }
}

int pl_turn_tls_handshake(SSL *ssl, uint32_t *want)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl);
    if (rc == 1)
        return 1;
    ssize_t r = ssl_result(ssl, rc, want);
    return r == -EAGAIN ? 0 : (r == 0 ? -EPROTO : (int)r);
}

ssize_t pl_turn_tls_read(SSL *ssl, void *buf, size_t cap, uint32_t *want)
{
    ERR_clear_error();
    int n = SSL_read(ssl, buf, (int)PL_MIN(cap, (size_t)INT32_MAX));
    return n > 0 ? n : ssl_result(ssl, n, want);
}

ssize_t pl_turn_tls_write(SSL *ssl, const void *buf, size_t len, uint32_t *want)
{
    ERR_clear_error();
    int n = SSL_write(ssl, buf, (int)PL_MIN(len, (size_t)INT32_MAX));
    if (n > 0)
        return n;
    ssize_t r = ssl_result(ssl, n, want);
    return r == 0 ? -EPIPE : r;
}

void pl_turn_tls_shutdown(SSL *ssl)
{
    ERR_clear_error();
    if (SSL_is_init_finished(ssl))
        (void)SSL_shutdown(ssl);
    ERR_clear_error();
}
