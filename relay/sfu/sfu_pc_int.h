/* sfu_pc_int.h: the peer connection's private parts shared by sfu_pc.c (ICE and the
 * packet path) and sfu_dtls.c (OpenSSL and SRTP keying through sfu_srtp.h). Not for other files.
 * Threading: as sfu_pc.h. */
#ifndef PL_SFU_PC_INT_H
#define PL_SFU_PC_INT_H

#include "relay/sfu/sfu_pc.h"
#include "relay/sfu/sfu_sendq.h"
#include "relay/sfu/sfu_srtp.h"

#include <nice/agent.h>
#include <sys/socket.h>

#define PL_DTLS_MTU 1200
#define PL_PC_EARLY_MAX 8           /* DTLS datagrams kept before the role is known */
#define PL_DTLS_HANDSHAKE_MS 30000  /* give up on a handshake after this long */

struct pl_pc {
    GMainContext *ctx;
    NiceAgent *agent;
    guint stream;
    pl_pc_cbs_t cbs;
    pl_pc_state_t state;
    SSL_CTX *ssl_ctx;
    gchar *ufrag, *pwd;
    bool have_remote;
    bool restart_pending;           /* pl_pc_ice_restart ran; the peer's new credentials
                                       complete it */
    uint32_t n_restarts;
    gchar *remote_ufrag, *remote_pwd;
    uint8_t remote_fp[32];
    bool dtls_client;
    bool ice_ready;
    SSL *ssl;
    BIO *rbio;
    GSource *dtls_timer;
    uint64_t dtls_start_us;
    bool dtls_done;
    GQueue early;                   /* GBytes: DTLS datagrams before SSL exists */
    pl_srtp_t *srtp_in, *srtp_out;
    bool srtp_ready;
    const char *profile;
    uint64_t srtp_errors;           /* packets that failed to unprotect */
    /* Fast path: the selected pair's own UDP socket and the peer's address, so media
     * goes out through the context's send queue (one sendmmsg per socket per loop
     * iteration) instead of through libnice's locks and GSocket layers. direct is NULL
     * when the pair is relayed or not UDP; sq has no destination unless direct is set,
     * the component is connected or ready, and the pc has not failed (then media goes
     * through nice_agent_send, or not at all). */
    GSocket *direct;
    struct sockaddr_storage direct_to;
    socklen_t direct_len;
    bool comp_ready;                /* component CONNECTED or READY */
    pl_sendq_sock_t sq;
    uint8_t rx[PL_PC_BUF];
};

/* Sends a raw datagram over the selected pair (DTLS records) at once, after what the
 * send queue holds. */
void pl_pc_send_raw(pl_pc_t *pc, const uint8_t *data, size_t len);
/* Whether RTP/RTCP currently leaves through the direct socket (else nice_agent_send). */
bool pl_pc_sends_direct(const pl_pc_t *pc);
/* Forgets the direct socket until the next selected pair (tests: the libnice path). */
void pl_pc_drop_direct(pl_pc_t *pc);

/* sfu_dtls.c */
BIO *pl_dtls_bio_new(pl_pc_t *pc);
void pl_dtls_fingerprint_str(const uint8_t *md, size_t n, char *out, size_t cap);
int pl_dtls_fingerprint_parse(const char *s, uint8_t out[32]);
bool pl_dtls_peer_matches(SSL *ssl, const uint8_t want[32]);
/* Keys the inbound and outbound SRTP sessions from the DTLS exporter (RFC 5764 §4.2).
 * Returns 0 with owned *in and *out (pl_srtp_destroy) and the profile name, or
 * PL_ECRYPTO. */
int pl_dtls_srtp_setup(SSL *ssl, bool is_client, pl_srtp_t **in, pl_srtp_t **out,
                       const char **name);

#endif
