/* stun.c: STUN message parsing (one pass, attribute offsets only), stream framing and
 * the typed attribute accessors.
 *
 * Does not verify MACs or FINGERPRINT (stun_auth.c) and does not build (stun_build.c).
 * Total on any input: every read is bounds-checked against the given length; there is
 * no allocation, no I/O and no logging. Thread-safe, no state. */
#include "relay/stun/stun_int.h"

#include <errno.h>
#include <netinet/in.h>

/* Longest text values (RFC 8489 §14.3: USERNAME fewer than 509 bytes; §14.9, §14.10,
 * §14.14: REALM, NONCE, SOFTWARE fewer than 128 characters / 763 bytes; ALTERNATE-DOMAIN
 * is a DNS name, RFC 1035 §2.3.4: 255 bytes). */
#define USERNAME_MAX 508u
#define TEXT_MAX 763u
#define DOMAIN_MAX 255u

int pl_stun_frame_len(const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    if ((p[0] & 0xC0) == 0) {
        /* STUN over a stream: the header's length field delimits it (RFC 8489 §6.2.2). */
        if (n >= 4 && (pl_stun_rd16(p + 2) & 3) != 0)
            return PL_EPARSE;
        if (n >= 8 && pl_stun_rd32(p + 4) != PL_STUN_MAGIC_COOKIE)
            return PL_EPARSE;
        if (n < PL_STUN_HEADER_LEN)
            return 0;
        size_t total = PL_STUN_HEADER_LEN + pl_stun_rd16(p + 2);
        return n >= total ? (int)total : 0;
    }
    /* ChannelData: 0x4000-0x4FFF; 0x5000-0x7FFF reserved, 0x8000+ not TURN (RFC 8656
     * §12). Over TCP/TLS it is padded to a multiple of 4 (RFC 8656 §12.5). */
    if ((p[0] & 0xF0) != 0x40)
        return PL_EPARSE;
    if (n < PL_STUN_CHANDATA_HEADER_LEN)
        return 0;
    size_t total = (PL_STUN_CHANDATA_HEADER_LEN + pl_stun_rd16(p + 2) + 3u) & ~(size_t)3;
    return n >= total ? (int)total : 0;
}

static bool addr_shape_ok(const uint8_t *v, uint16_t len)
{
    /* RFC 8489 §14.1: the first byte is reserved and ignored; family 1 = 4-byte
     * address, family 2 = 16-byte address. */
    if (len == 8)
        return v[1] == PL_STUN_FAMILY_IPV4;
    if (len == 20)
        return v[1] == PL_STUN_FAMILY_IPV6;
    return false;
}

static bool error_shape_ok(const uint8_t *v, uint16_t len)
{
    /* RFC 8489 §14.8: class 3-6, number 0-99, reason fewer than 128 characters. */
    if (len < 4 || len > 4 + TEXT_MAX)
        return false;
    unsigned cls = v[2] & 7u;
    return cls >= 3 && cls <= 6 && v[3] < 100;
}

static bool pwalgs_shape_ok(const uint8_t *v, uint16_t len)
{
    /* RFC 8489 §14.11: a list of (algorithm, parameters length, parameters padded to
     * 4 bytes); the list must consume the value exactly. */
    size_t off = 0;
    while (off < len) {
        if (len - off < 4)
            return false;
        size_t plen = (pl_stun_rd16(v + off + 2) + 3u) & ~3u;
        if (plen > len - off - 4)
            return false;
        off += 4 + plen;
    }
    return true;
}

static bool pwalg_shape_ok(const uint8_t *v, uint16_t len)
{
    /* RFC 8489 §14.12: algorithm, parameters length, parameters; accept the value
     * with or without the parameters' own padding. */
    if (len < 4)
        return false;
    size_t plen = pl_stun_rd16(v + 2);
    return 4 + plen <= len && len <= 4 + ((plen + 3) & ~(size_t)3);
}

/* Validates the shape of a known attribute. Unknown types are always fine here; the
 * caller decides about them (pl_stun_unknown_required). */
static bool attr_shape_ok(uint16_t type, const uint8_t *v, uint16_t len)
{
    switch (type) {
    case PL_STUN_ATTR_MAPPED_ADDRESS:
    case PL_STUN_ATTR_XOR_MAPPED_ADDRESS:
    case PL_STUN_ATTR_XOR_PEER_ADDRESS:
    case PL_STUN_ATTR_XOR_RELAYED_ADDRESS:
    case PL_STUN_ATTR_ALTERNATE_SERVER:
        return addr_shape_ok(v, len);
    case PL_STUN_ATTR_USERNAME: return len <= USERNAME_MAX;
    case PL_STUN_ATTR_REALM:
    case PL_STUN_ATTR_NONCE:
    case PL_STUN_ATTR_SOFTWARE: return len <= TEXT_MAX;
    case PL_STUN_ATTR_ALTERNATE_DOMAIN: return len <= DOMAIN_MAX;
    case PL_STUN_ATTR_USERHASH: return len == 32;
    case PL_STUN_ATTR_MESSAGE_INTEGRITY: return len == PL_STUN_SHA1_LEN;
    /* RFC 8489 §14.6: at least 16 bytes, at most 32, a multiple of 4. */
    case PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256: return len >= 16 && len <= 32 && len % 4 == 0;
    case PL_STUN_ATTR_FINGERPRINT: return len == 4;
    case PL_STUN_ATTR_ERROR_CODE: return error_shape_ok(v, len);
    /* RFC 8656 §18.10: family, reserved, then an ERROR-CODE-like class/number/reason. */
    case PL_STUN_ATTR_ADDRESS_ERROR_CODE: return error_shape_ok(v, len);
    case PL_STUN_ATTR_UNKNOWN_ATTRIBUTES: return len % 2 == 0;
    case PL_STUN_ATTR_PASSWORD_ALGORITHMS: return pwalgs_shape_ok(v, len);
    case PL_STUN_ATTR_PASSWORD_ALGORITHM: return pwalg_shape_ok(v, len);
    case PL_STUN_ATTR_CHANNEL_NUMBER:
    case PL_STUN_ATTR_LIFETIME:
    case PL_STUN_ATTR_REQUESTED_TRANSPORT:
    case PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY:
    case PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY:
    case PL_STUN_ATTR_CONNECTION_ID:
    case PL_STUN_ATTR_PRIORITY: return len == 4;
    case PL_STUN_ATTR_RESERVATION_TOKEN:
    case PL_STUN_ATTR_ICE_CONTROLLED:
    case PL_STUN_ATTR_ICE_CONTROLLING:
    case PL_STUN_ATTR_ICMP: return len == 8;
    case PL_STUN_ATTR_EVEN_PORT: return len == 1;     /* RFC 8656 §18.6 */
    case PL_STUN_ATTR_DONT_FRAGMENT:
    case PL_STUN_ATTR_USE_CANDIDATE: return len == 0;
    default: return true;                              /* DATA and unknown types */
    }
}

bool pl_stun_attr_known(uint16_t type)
{
    switch (type) {
    case PL_STUN_ATTR_MAPPED_ADDRESS: case PL_STUN_ATTR_USERNAME:
    case PL_STUN_ATTR_MESSAGE_INTEGRITY: case PL_STUN_ATTR_ERROR_CODE:
    case PL_STUN_ATTR_UNKNOWN_ATTRIBUTES: case PL_STUN_ATTR_CHANNEL_NUMBER:
    case PL_STUN_ATTR_LIFETIME: case PL_STUN_ATTR_XOR_PEER_ADDRESS:
    case PL_STUN_ATTR_DATA: case PL_STUN_ATTR_REALM: case PL_STUN_ATTR_NONCE:
    case PL_STUN_ATTR_XOR_RELAYED_ADDRESS: case PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY:
    case PL_STUN_ATTR_EVEN_PORT: case PL_STUN_ATTR_REQUESTED_TRANSPORT:
    case PL_STUN_ATTR_DONT_FRAGMENT: case PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
    case PL_STUN_ATTR_PASSWORD_ALGORITHM: case PL_STUN_ATTR_USERHASH:
    case PL_STUN_ATTR_XOR_MAPPED_ADDRESS: case PL_STUN_ATTR_RESERVATION_TOKEN:
    case PL_STUN_ATTR_PRIORITY: case PL_STUN_ATTR_USE_CANDIDATE:
    case PL_STUN_ATTR_CONNECTION_ID: case PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY:
    case PL_STUN_ATTR_ADDRESS_ERROR_CODE: case PL_STUN_ATTR_PASSWORD_ALGORITHMS:
    case PL_STUN_ATTR_ALTERNATE_DOMAIN: case PL_STUN_ATTR_ICMP:
    case PL_STUN_ATTR_SOFTWARE: case PL_STUN_ATTR_ALTERNATE_SERVER:
    case PL_STUN_ATTR_FINGERPRINT: case PL_STUN_ATTR_ICE_CONTROLLED:
    case PL_STUN_ATTR_ICE_CONTROLLING:
        return true;
    default:
        return false;
    }
}

static int parse_header(pl_stun_msg_t *m, const uint8_t *buf, size_t len)
{
    m->buf = buf;
    m->len = len;
    m->header_ok = false;
    m->bad_attr = 0;
    m->n_attrs = 0;
    m->mi_idx = m->mi256_idx = m->fp_idx = -1;
    /* RFC 8489 §6.3: first two bits zero, magic cookie, and a length that is a
     * multiple of 4 and matches the datagram (or stream frame) exactly. */
    if (len < PL_STUN_HEADER_LEN || (buf[0] & 0xC0) != 0 ||
        pl_stun_rd32(buf + 4) != PL_STUN_MAGIC_COOKIE)
        return PL_EPARSE;
    size_t body = pl_stun_rd16(buf + 2);
    if ((body & 3) != 0 || PL_STUN_HEADER_LEN + body != len)
        return PL_EPARSE;
    m->type = pl_stun_rd16(buf);
    m->method = pl_stun_type_method(m->type);
    m->cls = pl_stun_type_class(m->type);
    m->header_ok = true;
    return 0;
}

/* Where an attribute stands relative to the integrity attributes (RFC 8489 §14.5-14.7). */
enum { STAGE_OPEN, STAGE_AFTER_MI, STAGE_AFTER_MI256, STAGE_AFTER_FP };

static int index_attr(pl_stun_msg_t *m, int *stage, uint16_t type, uint16_t alen,
                      size_t off)
{
    if (*stage == STAGE_AFTER_FP)
        return PL_EPARSE;               /* §14.7: FINGERPRINT is last */
    bool integrity = type == PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256 ||
                     type == PL_STUN_ATTR_FINGERPRINT ||
                     (type == PL_STUN_ATTR_MESSAGE_INTEGRITY && *stage == STAGE_OPEN);
    /* §14.5/§14.6: after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and
     * FINGERPRINT count, after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT; the rest is
     * ignored (still walked, so the message must stay well-formed). */
    if (*stage != STAGE_OPEN && !integrity)
        return 0;
    if (*stage == STAGE_AFTER_MI256 && type != PL_STUN_ATTR_FINGERPRINT)
        return 0;
    if (!attr_shape_ok(type, m->buf + off, alen))
        return PL_EPARSE;
    if (m->n_attrs >= PL_STUN_MAX_ATTRS)
        return PL_EPARSE;
    int16_t idx = (int16_t)m->n_attrs++;
    m->attrs[idx] = (pl_stun_attr_t){ .type = type, .len = alen, .off = (uint32_t)off };
    if (type == PL_STUN_ATTR_MESSAGE_INTEGRITY) {
        m->mi_idx = idx;
        *stage = STAGE_AFTER_MI;
    } else if (type == PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256) {
        m->mi256_idx = idx;
        *stage = STAGE_AFTER_MI256;
    } else if (type == PL_STUN_ATTR_FINGERPRINT) {
        m->fp_idx = idx;
        *stage = STAGE_AFTER_FP;
    }
    return 0;
}

int pl_stun_parse(pl_stun_msg_t *m, const uint8_t *buf, size_t len)
{
    int rc = parse_header(m, buf, len);
    if (rc < 0)
        return rc;
    int stage = STAGE_OPEN;
    size_t off = PL_STUN_HEADER_LEN;
    /* off and len are multiples of 4, so off < len leaves room for a 4-byte header. */
    while (off < len) {
        uint16_t type = pl_stun_rd16(buf + off);
        uint16_t alen = pl_stun_rd16(buf + off + 2);
        size_t padded = ((size_t)alen + 3) & ~(size_t)3;
        /* RFC 8489 §14: every attribute, padding included, lies inside the message. */
        if (padded > len - off - 4 || index_attr(m, &stage, type, alen, off + 4) < 0) {
            m->bad_attr = type;
            return PL_EPARSE;
        }
        off += 4 + padded;
    }
    return 0;
}

int pl_stun_find(const pl_stun_msg_t *m, uint16_t type, int from)
{
    for (int i = from < 0 ? 0 : from; i < (int)m->n_attrs; i++)
        if (m->attrs[i].type == type)
            return i;
    return -1;
}

size_t pl_stun_unknown_required(const pl_stun_msg_t *m, uint16_t *out, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < (int)m->n_attrs; i++) {
        uint16_t t = m->attrs[i].type;
        if (t >= 0x8000 || pl_stun_attr_known(t))
            continue;
        bool dup = false;                       /* list each type once */
        for (int j = 0; j < i && !dup; j++)
            dup = m->attrs[j].type == t;
        if (dup)
            continue;
        if (n < cap)
            out[n] = t;
        n++;
    }
    return n;
}

/* ---- typed accessors ---- */

static bool is_xor_addr(uint16_t type)
{
    return type == PL_STUN_ATTR_XOR_MAPPED_ADDRESS || type == PL_STUN_ATTR_XOR_PEER_ADDRESS ||
           type == PL_STUN_ATTR_XOR_RELAYED_ADDRESS;
}

int pl_stun_attr_addr(const pl_stun_msg_t *m, int idx, pl_sockaddr_t *out)
{
    if (idx < 0 || idx >= (int)m->n_attrs)
        return PL_EPARSE;
    const pl_stun_attr_t *a = &m->attrs[idx];
    bool x = is_xor_addr(a->type);
    if (!x && a->type != PL_STUN_ATTR_MAPPED_ADDRESS && a->type != PL_STUN_ATTR_ALTERNATE_SERVER)
        return PL_EPARSE;
    const uint8_t *v = m->buf + a->off;
    /* RFC 8489 §14.2: X-Port = port ^ top 16 bits of the cookie; X-Address = address ^
     * cookie (IPv4) or ^ cookie || transaction id (IPv6). buf[4..20) is exactly that
     * 16-byte mask. */
    const uint8_t *mask = m->buf + 4;
    uint16_t port = (uint16_t)(pl_stun_rd16(v + 2) ^ (x ? PL_STUN_MAGIC_COOKIE >> 16 : 0));
    memset(out, 0, sizeof(*out));
    if (v[1] == PL_STUN_FAMILY_IPV4) {
        uint8_t *ip = (uint8_t *)&out->in4.sin_addr;
        out->in4.sin_family = AF_INET;
        out->in4.sin_port = htons(port);
        for (int i = 0; i < 4; i++)
            ip[i] = (uint8_t)(v[4 + i] ^ (x ? mask[i] : 0));
    } else {
        uint8_t *ip = out->in6.sin6_addr.s6_addr;
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons(port);
        for (int i = 0; i < 16; i++)
            ip[i] = (uint8_t)(v[4 + i] ^ (x ? mask[i] : 0));
    }
    return 0;
}

int pl_stun_get_addr(const pl_stun_msg_t *m, uint16_t type, pl_sockaddr_t *out)
{
    int i = pl_stun_find(m, type, 0);
    return i < 0 ? -ENOENT : pl_stun_attr_addr(m, i, out);
}

int pl_stun_get_bytes(const pl_stun_msg_t *m, uint16_t type, const uint8_t **val, size_t *len)
{
    int i = pl_stun_find(m, type, 0);
    if (i < 0)
        return -ENOENT;
    *val = m->buf + m->attrs[i].off;
    *len = m->attrs[i].len;
    return 0;
}

/* The value of the first attribute of type when it is exactly want bytes long. */
static int get_fixed(const pl_stun_msg_t *m, uint16_t type, size_t want, const uint8_t **v)
{
    size_t len;
    int rc = pl_stun_get_bytes(m, type, v, &len);
    if (rc < 0)
        return rc;
    return len == want ? 0 : PL_EPARSE;
}

int pl_stun_get_u32(const pl_stun_msg_t *m, uint16_t type, uint32_t *out)
{
    const uint8_t *v;
    int rc = get_fixed(m, type, 4, &v);
    if (rc == 0)
        *out = pl_stun_rd32(v);
    return rc;
}

int pl_stun_get_u64(const pl_stun_msg_t *m, uint16_t type, uint64_t *out)
{
    const uint8_t *v;
    int rc = get_fixed(m, type, 8, &v);
    if (rc == 0)
        *out = (uint64_t)pl_stun_rd32(v) << 32 | pl_stun_rd32(v + 4);
    return rc;
}

int pl_stun_get_channel(const pl_stun_msg_t *m, uint16_t *channel)
{
    const uint8_t *v;
    int rc = get_fixed(m, PL_STUN_ATTR_CHANNEL_NUMBER, 4, &v);
    if (rc == 0)
        *channel = pl_stun_rd16(v);
    return rc;
}

int pl_stun_get_transport(const pl_stun_msg_t *m, uint8_t *protocol)
{
    const uint8_t *v;
    int rc = get_fixed(m, PL_STUN_ATTR_REQUESTED_TRANSPORT, 4, &v);
    if (rc == 0)
        *protocol = v[0];
    return rc;
}

int pl_stun_get_family(const pl_stun_msg_t *m, uint16_t type, uint8_t *family)
{
    if (type != PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY &&
        type != PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY)
        return PL_EPARSE;
    const uint8_t *v;
    int rc = get_fixed(m, type, 4, &v);
    if (rc == 0)
        *family = v[0];
    return rc;
}

int pl_stun_get_even_port(const pl_stun_msg_t *m, bool *reserve_next)
{
    const uint8_t *v;
    int rc = get_fixed(m, PL_STUN_ATTR_EVEN_PORT, 1, &v);
    if (rc == 0)
        *reserve_next = (v[0] & 0x80) != 0;
    return rc;
}

static void decode_error(const uint8_t *v, size_t len, pl_stun_error_t *out)
{
    out->code = (v[2] & 7) * 100 + v[3];
    out->reason = (const char *)v + 4;
    out->reason_len = len - 4;
}

int pl_stun_get_error(const pl_stun_msg_t *m, pl_stun_error_t *out)
{
    const uint8_t *v;
    size_t len;
    int rc = pl_stun_get_bytes(m, PL_STUN_ATTR_ERROR_CODE, &v, &len);
    if (rc == 0)
        decode_error(v, len, out);
    return rc;
}

int pl_stun_get_address_error(const pl_stun_msg_t *m, uint8_t *family, pl_stun_error_t *out)
{
    const uint8_t *v;
    size_t len;
    int rc = pl_stun_get_bytes(m, PL_STUN_ATTR_ADDRESS_ERROR_CODE, &v, &len);
    if (rc == 0) {
        *family = v[0];
        decode_error(v, len, out);
    }
    return rc;
}

int pl_stun_get_icmp(const pl_stun_msg_t *m, pl_stun_icmp_t *out)
{
    const uint8_t *v;
    int rc = get_fixed(m, PL_STUN_ATTR_ICMP, 8, &v);
    if (rc == 0) {
        /* RFC 8656 §18.13: reserved (16 bits), type, code, error data. */
        out->type = v[2];
        out->code = v[3];
        out->data = pl_stun_rd32(v + 4);
    }
    return rc;
}

int pl_stun_get_unknown_attrs(const pl_stun_msg_t *m, uint16_t *out, size_t cap, size_t *n)
{
    const uint8_t *v;
    size_t len;
    int rc = pl_stun_get_bytes(m, PL_STUN_ATTR_UNKNOWN_ATTRIBUTES, &v, &len);
    if (rc < 0)
        return rc;
    *n = len / 2;
    for (size_t i = 0; i < *n && i < cap; i++)
        out[i] = pl_stun_rd16(v + 2 * i);
    return 0;
}

int pl_stun_get_password_algorithms(const pl_stun_msg_t *m, uint16_t *out, size_t cap,
                                    size_t *n)
{
    const uint8_t *v;
    size_t len;
    int rc = pl_stun_get_bytes(m, PL_STUN_ATTR_PASSWORD_ALGORITHMS, &v, &len);
    if (rc < 0)
        return rc;
    /* The shape was checked by pwalgs_shape_ok, so each step stays inside. */
    size_t count = 0;
    for (size_t off = 0; off + 4 <= len; count++) {
        if (count < cap)
            out[count] = pl_stun_rd16(v + off);
        off += 4 + ((pl_stun_rd16(v + off + 2) + 3u) & ~3u);
    }
    *n = count;
    return 0;
}

int pl_stun_get_password_algorithm(const pl_stun_msg_t *m, uint16_t *alg)
{
    const uint8_t *v;
    size_t len;
    int rc = pl_stun_get_bytes(m, PL_STUN_ATTR_PASSWORD_ALGORITHM, &v, &len);
    if (rc == 0)
        *alg = pl_stun_rd16(v);
    return rc;
}
