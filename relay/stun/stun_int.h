/* stun_int.h: declarations shared by the files of relay/stun only (not a public
 * contract; other modules include pl_stun.h). */
#ifndef PL_STUN_INT_H
#define PL_STUN_INT_H

#include "relay/stun/pl_stun.h"

#include <string.h>

#define PL_STUN_SHA1_LEN 20u
#define PL_STUN_SHA256_LEN 32u

static inline void pl_stun_wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void pl_stun_wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Which digest a helper uses. */
typedef enum pl_stun_md {
    PL_STUN_MD_MD5,
    PL_STUN_MD_SHA1,
    PL_STUN_MD_SHA256,
} pl_stun_md_t;

/* A scatter list for hashing non-contiguous pieces without copying them. */
typedef struct pl_stun_iov {
    const void *p;
    size_t len;
} pl_stun_iov_t;

/* Digest of the concatenated pieces. out must hold the digest (<= 32 bytes). Returns
 * the digest length or PL_ECRYPTO. (stun_auth.c) */
int pl_stun_digest(pl_stun_md_t md, const pl_stun_iov_t *iov, size_t n, uint8_t *out);
/* HMAC (RFC 2104) with SHA-1 or SHA-256 of the concatenated pieces. Returns the MAC
 * length or PL_ECRYPTO. (stun_auth.c) */
int pl_stun_hmac(pl_stun_md_t md, const uint8_t *key, size_t key_len,
                 const pl_stun_iov_t *iov, size_t n, uint8_t *out);

/* Standard base64 (RFC 4648 §4) with padding; writes 4*ceil(n/3) chars and a NUL.
 * (stun_cred.c) */
void pl_stun_base64(const uint8_t *in, size_t n, char *out);

/* IPv4 (4 bytes, also for a v4-mapped v6 address) or IPv6 (16 bytes) address bytes of a
 * socket address; returns the STUN family code, or 0 for another family.
 * (stun_build.c) */
uint8_t pl_stun_ip_bytes(const pl_sockaddr_t *a, uint8_t out[16], uint16_t *port);

#endif
