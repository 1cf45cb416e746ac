/* stun_build.c: building STUN messages into a caller buffer, and the error reason
 * phrases.
 *
 * No allocation except inside OpenSSL for the MESSAGE-INTEGRITY HMACs; no I/O, no
 * logging. A builder is used by one thread at a time; the functions keep no state. */
#include "relay/stun/stun_int.h"

#include <netinet/in.h>

static int fail(pl_stun_builder_t *b, int err)
{
    if (b->err == 0)
        b->err = err;
    return b->err;
}

int pl_stun_build_init(pl_stun_builder_t *b, uint8_t *buf, size_t cap, uint16_t type,
                       const uint8_t *tid)
{
    *b = (pl_stun_builder_t){ .buf = buf, .cap = cap };
    if (cap < PL_STUN_HEADER_LEN)
        return fail(b, PL_ELIMIT);
    /* RFC 8489 §5: two zero bits, the 14-bit type, length, cookie, transaction id. */
    pl_stun_wr16(buf, type & 0x3FFF);
    pl_stun_wr16(buf + 2, 0);
    pl_stun_wr32(buf + 4, PL_STUN_MAGIC_COOKIE);
    memcpy(buf + 8, tid, PL_STUN_TID_LEN);
    b->len = PL_STUN_HEADER_LEN;
    return 0;
}

int pl_stun_build_reply(pl_stun_builder_t *b, uint8_t *buf, size_t cap,
                        const pl_stun_msg_t *req, uint8_t cls)
{
    return pl_stun_build_init(b, buf, cap, pl_stun_type(req->method, cls),
                              pl_stun_msg_tid(req));
}

/* Reserves an attribute of value length len: writes its header and padding, bumps the
 * length field, and returns a pointer to the value (NULL on error, recorded in b). */
static uint8_t *reserve(pl_stun_builder_t *b, uint16_t type, size_t len, uint8_t max_stage)
{
    if (b->err)
        return NULL;
    if (b->stage > max_stage) {
        fail(b, PL_ESTATE);
        return NULL;
    }
    size_t padded = (len + 3) & ~(size_t)3;
    if (len > 0xFFFF || b->len + 4 + padded > b->cap ||
        b->len + 4 + padded > PL_STUN_MAX_MSG_LEN) {
        fail(b, PL_ELIMIT);
        return NULL;
    }
    uint8_t *p = b->buf + b->len;
    pl_stun_wr16(p, type);
    pl_stun_wr16(p + 2, (uint16_t)len);
    memset(p + 4 + len, b->pad, padded - len);
    b->len += 4 + padded;
    pl_stun_wr16(b->buf + 2, (uint16_t)(b->len - PL_STUN_HEADER_LEN));
    return p + 4;
}

int pl_stun_add(pl_stun_builder_t *b, uint16_t type, const void *val, size_t len)
{
    uint8_t *v = reserve(b, type, len, 0);
    if (!v)
        return b->err;
    if (len)
        memcpy(v, val, len);
    return 0;
}

int pl_stun_add_str(pl_stun_builder_t *b, uint16_t type, const char *s)
{
    return pl_stun_add(b, type, s, strlen(s));
}

int pl_stun_add_u32(pl_stun_builder_t *b, uint16_t type, uint32_t v)
{
    uint8_t be[4];
    pl_stun_wr32(be, v);
    return pl_stun_add(b, type, be, sizeof(be));
}

int pl_stun_add_u64(pl_stun_builder_t *b, uint16_t type, uint64_t v)
{
    uint8_t be[8];
    pl_stun_wr32(be, (uint32_t)(v >> 32));
    pl_stun_wr32(be + 4, (uint32_t)v);
    return pl_stun_add(b, type, be, sizeof(be));
}

uint8_t pl_stun_ip_bytes(const pl_sockaddr_t *a, uint8_t out[16], uint16_t *port)
{
    static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF };
    if (a->sa.sa_family == AF_INET) {
        memcpy(out, &a->in4.sin_addr, 4);
        *port = ntohs(a->in4.sin_port);
        return PL_STUN_FAMILY_IPV4;
    }
    if (a->sa.sa_family != AF_INET6)
        return 0;
    const uint8_t *ip = a->in6.sin6_addr.s6_addr;
    *port = ntohs(a->in6.sin6_port);
    /* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; on the wire they are
     * IPv4 (the client knows itself as IPv4). */
    if (memcmp(ip, v4mapped, sizeof(v4mapped)) == 0) {
        memcpy(out, ip + 12, 4);
        return PL_STUN_FAMILY_IPV4;
    }
    memcpy(out, ip, 16);
    return PL_STUN_FAMILY_IPV6;
}

int pl_stun_add_addr(pl_stun_builder_t *b, uint16_t type, const pl_sockaddr_t *addr)
{
    bool x = type == PL_STUN_ATTR_XOR_MAPPED_ADDRESS || type == PL_STUN_ATTR_XOR_PEER_ADDRESS ||
             type == PL_STUN_ATTR_XOR_RELAYED_ADDRESS;
    if (!x && type != PL_STUN_ATTR_MAPPED_ADDRESS && type != PL_STUN_ATTR_ALTERNATE_SERVER)
        return b->err ? b->err : fail(b, PL_EPARSE);
    uint8_t ip[16];
    uint16_t port;
    uint8_t fam = pl_stun_ip_bytes(addr, ip, &port);
    if (fam == 0)
        return b->err ? b->err : fail(b, PL_EPARSE);
    size_t alen = fam == PL_STUN_FAMILY_IPV4 ? 4 : 16;
    uint8_t *v = reserve(b, type, 4 + alen, 0);
    if (!v)
        return b->err;
    /* RFC 8489 §14.1/§14.2; the mask is cookie || transaction id, i.e. buf[4..20). */
    const uint8_t *mask = b->buf + 4;
    v[0] = 0;
    v[1] = fam;
    pl_stun_wr16(v + 2, (uint16_t)(port ^ (x ? PL_STUN_MAGIC_COOKIE >> 16 : 0)));
    for (size_t i = 0; i < alen; i++)
        v[4 + i] = (uint8_t)(ip[i] ^ (x ? mask[i] : 0));
    return 0;
}

/* ERROR-CODE and ADDRESS-ERROR-CODE share the class/number/reason layout. */
static int add_error_like(pl_stun_builder_t *b, uint16_t type, uint8_t family, int code,
                          const char *reason)
{
    if (code < 300 || code > 699)
        return b->err ? b->err : fail(b, PL_EPARSE);
    if (!reason)
        reason = pl_stun_reason(code);
    size_t rlen = strlen(reason);
    if (rlen > 763)     /* RFC 8489 §14.8: fewer than 128 characters, 763 bytes */
        return b->err ? b->err : fail(b, PL_EPARSE);
    uint8_t *v = reserve(b, type, 4 + rlen, 0);
    if (!v)
        return b->err;
    v[0] = family;
    v[1] = 0;
    v[2] = (uint8_t)(code / 100);
    v[3] = (uint8_t)(code % 100);
    memcpy(v + 4, reason, rlen);
    return 0;
}

int pl_stun_add_error(pl_stun_builder_t *b, int code, const char *reason)
{
    return add_error_like(b, PL_STUN_ATTR_ERROR_CODE, 0, code, reason);
}

int pl_stun_add_address_error(pl_stun_builder_t *b, uint8_t family, int code,
                              const char *reason)
{
    return add_error_like(b, PL_STUN_ATTR_ADDRESS_ERROR_CODE, family, code, reason);
}

int pl_stun_add_unknown(pl_stun_builder_t *b, const uint16_t *types, size_t n)
{
    if (n > 0x7FFF)
        return b->err ? b->err : fail(b, PL_ELIMIT);
    uint8_t *v = reserve(b, PL_STUN_ATTR_UNKNOWN_ATTRIBUTES, 2 * n, 0);
    if (!v)
        return b->err;
    for (size_t i = 0; i < n; i++)
        pl_stun_wr16(v + 2 * i, types[i]);
    return 0;
}

int pl_stun_add_password_algorithms(pl_stun_builder_t *b, const uint16_t *algs, size_t n)
{
    if (n > 0x3FFF)
        return b->err ? b->err : fail(b, PL_ELIMIT);
    uint8_t *v = reserve(b, PL_STUN_ATTR_PASSWORD_ALGORITHMS, 4 * n, 0);
    if (!v)
        return b->err;
    for (size_t i = 0; i < n; i++) {
        pl_stun_wr16(v + 4 * i, algs[i]);
        pl_stun_wr16(v + 4 * i + 2, 0);
    }
    return 0;
}

/* MESSAGE-INTEGRITY(-SHA256): reserve() has already set the length field to include
 * the MAC attribute, which is what RFC 8489 §14.5/§14.6 ask the HMAC input to carry;
 * the input is everything before the attribute. */
static int add_mac(pl_stun_builder_t *b, uint16_t type, pl_stun_md_t md, size_t mac_len,
                   const uint8_t *key, size_t key_len)
{
    uint8_t max_stage = type == PL_STUN_ATTR_MESSAGE_INTEGRITY ? 0 : 1;
    size_t start = b->len;
    uint8_t *v = reserve(b, type, mac_len, max_stage);
    if (!v)
        return b->err;
    pl_stun_iov_t iov = { b->buf, start };
    if (pl_stun_hmac(md, key, key_len, &iov, 1, v) < 0)
        return fail(b, PL_ECRYPTO);
    b->stage = type == PL_STUN_ATTR_MESSAGE_INTEGRITY ? 1 : 2;
    return 0;
}

int pl_stun_add_integrity(pl_stun_builder_t *b, const uint8_t *key, size_t key_len)
{
    return add_mac(b, PL_STUN_ATTR_MESSAGE_INTEGRITY, PL_STUN_MD_SHA1, PL_STUN_SHA1_LEN,
                   key, key_len);
}

int pl_stun_add_integrity_sha256(pl_stun_builder_t *b, const uint8_t *key, size_t key_len)
{
    return add_mac(b, PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256, PL_STUN_MD_SHA256,
                   PL_STUN_SHA256_LEN, key, key_len);
}

int pl_stun_add_fingerprint(pl_stun_builder_t *b)
{
    size_t start = b->len;
    uint8_t *v = reserve(b, PL_STUN_ATTR_FINGERPRINT, 4, 2);
    if (!v)
        return b->err;
    /* RFC 8489 §14.7: CRC-32 of the message up to the attribute, with the length
     * field already counting it, XOR 0x5354554e. */
    pl_stun_wr32(v, pl_stun_crc32(b->buf, start) ^ PL_STUN_FINGERPRINT_XOR);
    b->stage = 3;
    return 0;
}

int pl_stun_build_finish(const pl_stun_builder_t *b)
{
    return b->err ? b->err : (int)b->len;
}

const char *pl_stun_reason(int code)
{
    switch (code) {
    case 300: return "Try Alternate";
    case 400: return "Bad Request";
    case 401: return "Unauthenticated";     /* RFC 8489 §14.8 renamed "Unauthorized" */
    case 403: return "Forbidden";
    case 420: return "Unknown Attribute";
    case 437: return "Allocation Mismatch";
    case 438: return "Stale Nonce";
    case 440: return "Address Family not Supported";
    case 441: return "Wrong Credentials";
    case 442: return "Unsupported Transport Protocol";
    case 443: return "Peer Address Family Mismatch";
    case 446: return "Connection Already Exists";
    case 447: return "Connection Timeout or Failure";
    case 486: return "Allocation Quota Reached";
    case 487: return "Role Conflict";
    case 500: return "Server Error";
    case 508: return "Insufficient Capacity";
    default: break;
    }
    if (code >= 300 && code < 400)
        return "Redirect";
    if (code >= 400 && code < 500)
        return "Client Error";
    return "Server Error";
}
