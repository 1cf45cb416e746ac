/* turn_policy.c: which peer addresses the relay may send to.
 *
 * Default deny (RFC 8656 §21.3 "the server ... should have a policy" and coturn's
 * CVE-2020-26262): unspecified, loopback, link-local, private (RFC 1918, RFC 6598 CGNAT,
 * ULA), multicast, broadcast/reserved, IETF/benchmark ranges, the deprecated IPv4-
 * compatible and site-local IPv6 ranges, and the server's own addresses. IPv6 forms
 * that carry an IPv4 address (IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96, NAT64
 * 64:ff9b::/96, 6to4 2002::/16) are judged by that IPv4 address, so "::ffff:127.0.0.1"
 * and "64:ff9b::a00:1" are refused like 127.0.0.1 and 10.0.0.1.
 * turn.allowed_peers overrides every deny (coturn's allowed-peer-ip semantics);
 * turn.denied_peers adds ranges.
 *
 * What it does not: ports are not judged (permissions are per IP, RFC 8656 §9).
 * Threading: pure functions over an immutable snapshot. */
#include "relay/turn/turn_int.h"

#include <string.h>

typedef struct range4 {
    uint32_t net;
    uint8_t len;
} range4_t;

typedef struct range6 {
    uint8_t net[16];
    uint8_t len;
} range6_t;

static const range4_t deny4[] = {
    {0x00000000u, 8},   /* 0.0.0.0/8 "this network", includes unspecified */
    {0x0A000000u, 8},   /* 10/8 RFC 1918 */
    {0x64400000u, 10},  /* 100.64/10 RFC 6598 shared (CGNAT) */
    {0x7F000000u, 8},   /* 127/8 loopback */
    {0xA9FE0000u, 16},  /* 169.254/16 link-local (cloud metadata lives here) */
    {0xAC100000u, 12},  /* 172.16/12 RFC 1918 */
    {0xC0000000u, 24},  /* 192.0.0/24 IETF protocol assignments */
    {0xC0A80000u, 16},  /* 192.168/16 RFC 1918 */
    {0xC6120000u, 15},  /* 198.18/15 benchmarking */
    {0xE0000000u, 4},   /* 224/4 multicast */
    {0xF0000000u, 4},   /* 240/4 reserved, includes 255.255.255.255 */
};

static const range6_t deny6[] = {
    {{0}, 96},                                  /* ::/96 unspecified, ::1, IPv4-compatible */
    {{0x01, 0x00}, 64},                         /* 100::/64 discard-only */
    {{0xFC}, 7},                                /* fc00::/7 unique local */
    {{0xFE, 0x80}, 10},                         /* fe80::/10 link-local */
    {{0xFE, 0xC0}, 10},                         /* fec0::/10 site-local (deprecated) */
    {{0xFF}, 8},                                /* ff00::/8 multicast */
};

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned len)
{
    unsigned full = len / 8, rest = len % 8;
    if (memcmp(a, net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

static bool v4_denied(uint32_t ip)
{
    for (size_t i = 0; i < PL_ARRAY_LEN(deny4); i++) {
        uint32_t mask = deny4[i].len ? ~0u << (32 - deny4[i].len) : 0;
        if ((ip & mask) == deny4[i].net)
            return true;
    }
    return false;
}

/* The IPv4 address an IPv6 address embeds, if it is one of the forms above. */
static bool embedded_v4(const uint8_t *a, uint32_t *ip)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    static const uint8_t compat[12] = {0};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xFF, 0x9B};
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, compat, 12) == 0 || memcmp(a, nat64, 12) == 0) {
        *ip = pl_stun_rd32(a + 12);
        return true;
    }
    if (a[0] == 0x20 && a[1] == 0x02) {         /* 6to4: 2002:AABB:CCDD::/48 */
        *ip = pl_stun_rd32(a + 2);
        return true;
    }
    return false;
}

bool pl_turn_peer_builtin_denied(const pl_sockaddr_t *peer)
{
    if (peer->sa.sa_family == AF_INET)
        return v4_denied(ntohl(peer->in4.sin_addr.s_addr));
    if (peer->sa.sa_family != AF_INET6)
        return true;
    const uint8_t *a = peer->in6.sin6_addr.s6_addr;
    uint32_t ip;
    if (embedded_v4(a, &ip) && v4_denied(ip))
        return true;
    for (size_t i = 0; i < PL_ARRAY_LEN(deny6); i++)
        if (prefix_match(a, deny6[i].net, deny6[i].len))
            return true;
    return false;
}

/* peer as an IPv4 address when it is one or embeds one (for the CIDR lists and the
 * self check, which then see the same address in every spelling). */
static bool as_v4(const pl_sockaddr_t *peer, pl_sockaddr_t *out)
{
    uint32_t ip;
    if (peer->sa.sa_family != AF_INET6 || !embedded_v4(peer->in6.sin6_addr.s6_addr, &ip))
        return false;
    memset(out, 0, sizeof *out);
    out->in4.sin_family = AF_INET;
    out->in4.sin_addr.s_addr = htonl(ip);
    return true;
}

static bool in_list(const pl_cidr_t *list, size_t n, const pl_sockaddr_t *a,
                    const pl_sockaddr_t *v4)
{
    for (size_t i = 0; i < n; i++)
        if (pl_cidr_match(&list[i], a) || (v4 && pl_cidr_match(&list[i], v4)))
            return true;
    return false;
}

static bool is_self(const pl_turn_settings_t *s, const pl_sockaddr_t *a, const pl_sockaddr_t *v4)
{
    for (size_t i = 0; i < s->n_self; i++)
        if (pl_ipaddr_equal(&s->self[i], a) || (v4 && pl_ipaddr_equal(&s->self[i], v4)))
            return true;
    return false;
}

bool pl_turn_peer_allowed(const pl_turn_settings_t *s, const pl_sockaddr_t *peer)
{
    if (peer->sa.sa_family != AF_INET && peer->sa.sa_family != AF_INET6)
        return false;
    pl_sockaddr_t v4buf;
    const pl_sockaddr_t *v4 = as_v4(peer, &v4buf) ? &v4buf : NULL;
    if (in_list(s->allowed, s->n_allowed, peer, v4))
        return true;
    if (pl_turn_peer_builtin_denied(peer) || in_list(s->denied, s->n_denied, peer, v4))
        return false;
    return !is_self(s, peer, v4);
}
