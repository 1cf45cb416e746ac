/* sfu_pc.h: one WebRTC transport: a libnice ICE agent (one stream, one component:
 * BUNDLE + rtcp-mux), DTLS 1.2 over it (OpenSSL, memory read BIO and a datagram write
 * BIO) and SRTP/SRTCP (sfu_srtp.h) keyed from the DTLS exporter (RFC 5764).
 *
 * Private to relay/sfu, but also used by the SFU's own test client and load tool
 * (tests/, bench/sfu/) in the opposite roles (controlling ICE agent, DTLS client).
 *
 * What it does not: SDP (sfu_sdp.c), RTP semantics (the forwarder), TURN client
 * allocations (candidates are host candidates on the configured addresses).
 *
 * Threading: a pl_pc_t lives on the thread that iterates its GMainContext; every
 * function and callback runs there. pl_dtls_* set-up functions: start-up, any thread. */
#ifndef PL_SFU_PC_H
#define PL_SFU_PC_H

#include "core/pl_common.h"

#include <glib.h>
#include <openssl/ssl.h>

typedef struct pl_pc pl_pc_t;

typedef enum pl_pc_state {
    PL_PC_NEW = 0,          /* created, no remote parameters yet */
    PL_PC_CHECKING,         /* ICE checks or DTLS handshake under way */
    PL_PC_CONNECTED,        /* SRTP keys installed: media flows */
    PL_PC_FAILED,           /* ICE failed, consent lost, or DTLS failed */
    PL_PC_CLOSED,
    PL_PC_STATE_COUNT
} pl_pc_state_t;

const char *pl_pc_state_name(pl_pc_state_t s);

/* Callbacks, run on the pc's thread. on_rtp/on_rtcp get the decrypted packet in a
 * buffer of cap bytes the callee may rewrite in place (valid for the call). A callback
 * must not destroy the pc (post that instead). */
typedef struct pl_pc_cbs {
    void (*on_state)(void *arg, pl_pc_state_t state, const char *reason);
    void (*on_rtp)(void *arg, uint8_t *pkt, size_t len, size_t cap);
    void (*on_rtcp)(void *arg, uint8_t *pkt, size_t len, size_t cap);
    /* Load tools only: when set, RTP is handed over still encrypted (the header is in
     * clear text in SRTP) and on_rtp is not called: no decryption cost. */
    void (*on_srtp_raw)(void *arg, const uint8_t *pkt, size_t len);
    void *arg;
} pl_pc_cbs_t;

typedef struct pl_pc_opts {
    GMainContext *ctx;          /* borrowed; must outlive the pc */
    SSL_CTX *ssl_ctx;           /* borrowed (from pl_dtls_ctx_create) */
    bool controlling;           /* ICE role (the SFU is controlled) */
    const char *const *addrs;   /* local IP literals for host candidates */
    size_t n_addrs;
    uint16_t port_min, port_max;    /* 0, 0 = any */
    pl_pc_cbs_t cbs;
} pl_pc_opts_t;

/* Creates the agent and gathers host candidates (synchronous for host candidates).
 * Returns 0 and an owned *out, or -errno / PL_ECRYPTO. */
int pl_pc_create(const pl_pc_opts_t *o, pl_pc_t **out);
/* Closes and frees; the libnice agent is released from an idle callback so this is
 * safe from inside the pc's own callbacks' callers (not from the callbacks). */
void pl_pc_destroy(pl_pc_t *pc);

/* Local ICE credentials (borrowed, valid while the pc lives). */
const char *pl_pc_ufrag(const pl_pc_t *pc);
const char *pl_pc_pwd(const pl_pc_t *pc);
/* Calls fn with each local candidate as an SDP candidate-attribute value (without
 * "a="), e.g. "candidate:1 1 UDP 2015363327 127.0.0.1 40001 typ host". */
void pl_pc_foreach_candidate(pl_pc_t *pc, void (*fn)(void *arg, const char *cand),
                             void *arg);

/* Remote parameters from SDP: ICE credentials, the certificate fingerprint (algorithm
 * "sha-256", value "AB:CD:..."), and the DTLS role (dtls_client: we connect). Returns
 * 0 the first time and on renegotiation with the same values. New ICE credentials with
 * the same fingerprint are an ICE restart (RFC 8445 §9, RFC 8839 §4.4.1.1.1): the
 * stream restarts with new local credentials (unless pl_pc_ice_restart already did)
 * and the remote candidates are forgotten -- the peer's new ones follow -- while DTLS
 * and SRTP carry on over whatever pair the checks select; returns 1. A different
 * fingerprint (a new DTLS session) is PL_ESTATE; PL_EPARSE for a bad fingerprint. */
int pl_pc_set_remote(pl_pc_t *pc, const char *ufrag, const char *pwd, const char *fp_alg,
                     const char *fp_value, bool dtls_client);
/* Starts an ICE restart from this side: new local credentials (pl_pc_ufrag/pwd), the
 * checks and remote candidates reset; the peer's new credentials (pl_pc_set_remote)
 * complete it. Returns 0 or PL_ESTATE (no remote parameters yet, or failed). */
int pl_pc_ice_restart(pl_pc_t *pc);
/* ICE restarts so far. */
uint32_t pl_pc_restarts(const pl_pc_t *pc);
/* A remote candidate ("candidate:..." or "a=candidate:..."). Candidates given before
 * pl_pc_set_remote are queued. Returns 0, PL_EPARSE, or 0 for an ignored candidate
 * (TCP, component 2, unknown address family). */
int pl_pc_add_remote_candidate(pl_pc_t *pc, const char *cand);

/* The peer signaled end-of-candidates (RFC 8838 §8.2): ICE may now conclude failure
 * once every pair has failed. */
void pl_pc_remote_candidates_done(pl_pc_t *pc);

/* Protects pkt (len bytes of a buffer of cap bytes; cap >= len + PL_PC_SRTP_OVERHEAD)
 * in place and sends it. On a direct UDP pair, called from a dispatch of the pc's
 * context, the datagram is queued and leaves with the socket's other packets of this
 * loop iteration in one sendmmsg (sfu_sendq.h) before the loop polls again; a refusal
 * then shows in pl_pc_take_send_drops. Returns 0, PL_ESTATE when SRTP is not ready or
 * the pc failed or closed (RFC 7675: no media without consent), -EAGAIN when the
 * datagram could not be sent or queued (dropped), PL_ECRYPTO. */
#define PL_PC_BUF 2048              /* largest datagram handled, plus SRTP room */
#define PL_PC_SRTP_OVERHEAD 148     /* >= PL_SRTP_MAX_TRAILER (20); kept at libsrtp's 148 */
int pl_pc_send_rtp(pl_pc_t *pc, uint8_t *pkt, size_t len, size_t cap);
int pl_pc_send_rtcp(pl_pc_t *pc, uint8_t *pkt, size_t len, size_t cap);

pl_pc_state_t pl_pc_state(const pl_pc_t *pc);
/* Packets that failed SRTP/SRTCP authentication or replay checks since the last call. */
uint64_t pl_pc_take_srtp_errors(pl_pc_t *pc);
/* Datagrams queued by pl_pc_send_rtp/_rtcp that the kernel refused later, since the
 * last call. */
uint64_t pl_pc_take_send_drops(pl_pc_t *pc);
/* The negotiated SRTP profile name ("AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80") or
 * "" before the handshake. */
const char *pl_pc_srtp_profile(const pl_pc_t *pc);

/* ---- DTLS context ------------------------------------------------------------------ */

/* Creates the DTLS 1.2 SSL_CTX with a fresh self-signed ECDSA P-256 certificate and
 * the SRTP profiles (OpenSSL names; NULL = "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80",
 * that preference), and writes its fingerprint ("AB:CD:...", SHA-256) into fp (>= 96
 * bytes). Returns an owned SSL_CTX or NULL (OpenSSL failure). */
SSL_CTX *pl_dtls_ctx_create(const char *profiles, char *fp, size_t fp_cap);

#endif
