/* sfu_srtp.h: SRTP and SRTCP for the SFU's packet path, on OpenSSL 3: the profiles
 * WebRTC negotiates through DTLS-SRTP (RFC 5764), AEAD_AES_128_GCM (RFC 7714) and
 * AES_CM_128_HMAC_SHA1_80 (RFC 3711), with the RFC 3711 §4.3 key derivation (AES-CM
 * PRF, key derivation rate 0) done once per session.
 *
 * A pl_srtp_t is one direction of one DTLS-SRTP association, like a libsrtp srtp_t
 * made with ssrc_any_inbound or ssrc_any_outbound: a per-SSRC stream (ROC and highest
 * sequence number with RFC 3711 §3.3.1 index estimation, a 1,024-packet RTP replay
 * window, the SRTCP index and a 128-packet SRTCP replay window) is created on the first
 * packet protected, or on the first packet that authenticates when unprotecting. The
 * number of streams is bounded (PL_SRTP_ESTREAMS past it).
 *
 * What it does not: MKI, key derivation rates other than 0, RFC 6904 header-extension
 * encryption, other profiles (AES-256, 32-bit tags, NULL cipher), re-keying. Key
 * lifetime limits (2^48 SRTP packets, 2^31 SRTCP packets, RFC 3711 §9.2) are enforced
 * as PL_SRTP_EEXHAUSTED on protect.
 *
 * Packet path: protect/unprotect do not allocate (except when a stream table grows on
 * a new SSRC, at most a few times per session), take no lock, and re-use cipher
 * contexts keyed once at create.
 *
 * Threading: thread-compatible. A session is used by one thread at a time; different
 * sessions are independent. */
#ifndef PL_SFU_SRTP_H
#define PL_SFU_SRTP_H

#include "core/pl_common.h"

typedef struct pl_srtp pl_srtp_t;

typedef enum pl_srtp_profile {
    PL_SRTP_AES_CM_128_HMAC_SHA1_80 = 1,    /* RFC 3711; 16-byte key, 14-byte salt */
    PL_SRTP_AEAD_AES_128_GCM = 2,           /* RFC 7714; 16-byte key, 12-byte salt */
} pl_srtp_profile_t;

/* Results of every function below: 0 or one of these (negative). */
typedef enum pl_srtp_status {
    PL_SRTP_OK = 0,
    PL_SRTP_EAUTH = -1,         /* authentication tag mismatch */
    PL_SRTP_EREPLAY_DUP = -2,   /* index already received (or protected) */
    PL_SRTP_EREPLAY_OLD = -3,   /* index behind the replay window */
    PL_SRTP_ELEN = -4,          /* too short, header past the end, not RTP version 2,
                                 * or no room in the buffer for the trailer */
    PL_SRTP_ESTREAMS = -5,      /* a new SSRC past the session's max_streams */
    PL_SRTP_EPROFILE = -6,      /* unknown profile */
    PL_SRTP_EKEY = -7,          /* key or salt length wrong for the profile */
    PL_SRTP_EEXHAUSTED = -8,    /* index space of this key used up (RFC 3711 §9.2) */
    PL_SRTP_ECRYPTO = -9,       /* an OpenSSL call failed */
} pl_srtp_status_t;

#define PL_SRTP_KEY_LEN 16
#define PL_SRTP_MAX_SALT_LEN 14
/* Largest growth of a packet by protect: the GCM tag plus the SRTCP index word. */
#define PL_SRTP_MAX_TRAILER 20
#define PL_SRTP_DEFAULT_STREAMS 64
#define PL_SRTP_MAX_STREAMS 4096

typedef struct pl_srtp_opts {
    pl_srtp_profile_t profile;
    const uint8_t *master_key;      /* PL_SRTP_KEY_LEN bytes; copied */
    const uint8_t *master_salt;     /* pl_srtp_salt_len(profile) bytes; copied */
    size_t key_len, salt_len;       /* must match the profile */
    unsigned max_streams;           /* SSRCs per session, 0 = PL_SRTP_DEFAULT_STREAMS,
                                     * at most PL_SRTP_MAX_STREAMS */
    /* Protect only: a sequence number already protected may be protected again (a
     * retransmission without RTX; libsrtp's allow_repeat_tx). Unprotect always
     * rejects repeats. */
    bool allow_repeat_tx;
} pl_srtp_opts_t;

/* Master salt length of a profile (14 or 12), 0 for an unknown profile. */
size_t pl_srtp_salt_len(pl_srtp_profile_t profile);
/* RFC 5764 / IANA name ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM") or "?". */
const char *pl_srtp_profile_name(pl_srtp_profile_t profile);
/* Static string naming a pl_srtp_status_t. */
const char *pl_srtp_strerror(int status);

/* Derives the session keys and keys the cipher contexts. Returns 0 and an owned
 * *out (free with pl_srtp_destroy), PL_SRTP_EPROFILE, PL_SRTP_EKEY or PL_SRTP_ECRYPTO.
 * The caller may wipe its key copy afterwards. */
int pl_srtp_create(const pl_srtp_opts_t *o, pl_srtp_t **out);
/* Wipes the keys and frees. NULL is a no-op. */
void pl_srtp_destroy(pl_srtp_t *s);

/* RTP: pkt holds *len bytes of a buffer of cap bytes. Protect encrypts the payload
 * (everything after the fixed header, CSRCs and header extension, padding included)
 * in place and appends the tag; *len grows by 10 (AES-CM) or 16 (GCM), which cap must
 * leave room for (PL_SRTP_MAX_TRAILER is always enough), else PL_SRTP_ELEN. Unprotect checks the replay window
 * and the tag, decrypts in place and shrinks *len. On any error *len is unchanged;
 * after a failed GCM unprotect the payload bytes are unspecified. */
int pl_srtp_protect_rtp(pl_srtp_t *s, uint8_t *pkt, size_t *len, size_t cap);
int pl_srtp_unprotect_rtp(pl_srtp_t *s, uint8_t *pkt, size_t *len);

/* RTCP (a compound packet; its stream is the sender SSRC in bytes 4..7): the first
 * 8 bytes stay in clear text, the rest is encrypted; protect appends the tag and the
 * E-flag/SRTCP-index word (RFC 3711 §3.4, RFC 7714 §9: 14 or 20 bytes; the first
 * index sent is 1, as libsrtp). Unprotect accepts E=0 (authenticated, not encrypted)
 * as well. Same buffer rules as RTP. A session is one direction: do not both protect
 * and unprotect RTCP with the same one. */
int pl_srtp_protect_rtcp(pl_srtp_t *s, uint8_t *pkt, size_t *len, size_t cap);
int pl_srtp_unprotect_rtcp(pl_srtp_t *s, uint8_t *pkt, size_t *len);

/* Streams (SSRCs) the session has created so far. */
unsigned pl_srtp_stream_count(const pl_srtp_t *s);

/* ---- Building blocks, exposed for the RFC 3711 Appendix B test vectors ------------ */

/* RFC 3711 §4.3.1/§4.3.3 with key_derivation_rate 0: the AES-CM PRF keyed with the
 * master key over salt14 XOR (label at byte 7), where salt14 is the master salt
 * zero-padded on the right to 14 bytes (a 12-byte GCM salt gets two zero bytes, as
 * libsrtp does). Writes out_len bytes. Returns 0 or PL_SRTP_ECRYPTO. */
int pl_srtp_kdf(const uint8_t master_key[PL_SRTP_KEY_LEN], const uint8_t salt14[14],
                uint8_t label, uint8_t *out, size_t out_len);
/* RFC 3711 §4.1.1: the AES-CM counter block for (14-byte session salt, SSRC, 48-bit
 * packet index): salt * 2^16 XOR SSRC * 2^64 XOR index * 2^16. */
void pl_srtp_aes_cm_iv(const uint8_t salt[14], uint32_t ssrc, uint64_t index,
                       uint8_t iv[16]);
/* The AES-128 counter-mode keystream from counter block iv, len bytes. Returns 0 or
 * PL_SRTP_ECRYPTO. */
int pl_srtp_aes_cm_keystream(const uint8_t key[PL_SRTP_KEY_LEN], const uint8_t iv[16],
                             uint8_t *out, size_t len);

#endif
