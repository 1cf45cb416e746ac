/* net.c: socket-address parsing and printing, CIDR ranges, non-blocking listeners.
 *
 * What it deliberately does not do: no DNS (only "localhost" is known, as 127.0.0.1),
 * no IPv6 zone ids ("fe80::1%eth0"), no logging. The parsers are total: any byte string
 * gives 0 or PL_EPARSE, never a crash (config and admin input reach them).
 *
 * Threading: no state; every function is thread-safe. */
#include "core/pl_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Longest accepted input: "[" + 45-char IPv6 text + "]:" + 5 digits, with slack. */
#define PL_NET_MAX_INPUT 96

/* Parses 1..5 decimal digits (nothing else) into a port. */
static int parse_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5)
        return PL_EPARSE;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return PL_EPARSE;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return PL_EPARSE;
    *out = (uint16_t)v;
    return 0;
}

/* Parses an IP literal of exactly len bytes; family AF_UNSPEC accepts either. */
static int parse_ip(const char *s, size_t len, int family, pl_sockaddr_t *out)
{
    char tmp[PL_NET_MAX_INPUT];
    if (len == 0 || len >= sizeof(tmp))
        return PL_EPARSE;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    memset(out, 0, sizeof(*out));
    if (family != AF_INET6 && inet_pton(AF_INET, tmp, &out->in4.sin_addr) == 1) {
        out->in4.sin_family = AF_INET;
        return 0;
    }
    if (family != AF_INET && inet_pton(AF_INET6, tmp, &out->in6.sin6_addr) == 1) {
        out->in6.sin6_family = AF_INET6;
        return 0;
    }
    memset(out, 0, sizeof(*out));
    return PL_EPARSE;
}

int pl_ipaddr_parse(const char *s, pl_sockaddr_t *out)
{
    if (!s || !out)
        return PL_EPARSE;
    return parse_ip(s, strnlen(s, PL_NET_MAX_INPUT), AF_UNSPEC, out);
}

/* An unbracketed host: "", "localhost" or an IPv4/IPv6 literal. */
static int parse_host(const char *s, size_t len, pl_sockaddr_t *out)
{
    if (len == 0 || (len == 9 && strncasecmp(s, "localhost", 9) == 0)) {
        memset(out, 0, sizeof(*out));
        out->in4.sin_family = AF_INET;
        out->in4.sin_addr.s_addr = htonl(len ? INADDR_LOOPBACK : INADDR_ANY);
        return 0;
    }
    return parse_ip(s, len, AF_UNSPEC, out);
}

/* "[v6]" or "[v6]:port". */
static int parse_bracketed(const char *s, size_t len, int default_port, pl_sockaddr_t *out,
                           uint16_t *port)
{
    const char *close = memchr(s, ']', len);
    if (!close)
        return PL_EPARSE;
    size_t host_len = (size_t)(close - s) - 1;
    size_t rest = len - (size_t)(close - s) - 1;
    if (parse_ip(s + 1, host_len, AF_INET6, out) < 0)
        return PL_EPARSE;
    if (rest == 0) {
        if (default_port < 0)
            return PL_EPARSE;
        *port = (uint16_t)default_port;
        return 0;
    }
    if (close[1] != ':')
        return PL_EPARSE;
    return parse_port(close + 2, rest - 1, port);
}

int pl_sockaddr_parse(const char *s, int default_port, pl_sockaddr_t *out)
{
    if (!s || !out || default_port > 65535)
        return PL_EPARSE;
    size_t len = strnlen(s, PL_NET_MAX_INPUT);
    if (len >= PL_NET_MAX_INPUT)
        return PL_EPARSE;
    pl_sockaddr_t a;
    uint16_t port = 0;
    int rc;
    const char *colon = memchr(s, ':', len);
    if (len > 0 && s[0] == '[') {
        rc = parse_bracketed(s, len, default_port, &a, &port);
    } else if (colon && memchr(colon + 1, ':', len - (size_t)(colon - s) - 1)) {
        /* Two or more colons without brackets: a bare IPv6 address, no port. */
        rc = default_port >= 0 ? parse_ip(s, len, AF_INET6, &a) : PL_EPARSE;
        port = (uint16_t)(default_port >= 0 ? default_port : 0);
    } else if (colon) {
        rc = parse_host(s, (size_t)(colon - s), &a);
        if (rc == 0)
            rc = parse_port(colon + 1, len - (size_t)(colon - s) - 1, &port);
    } else {
        /* A bare host; the empty string is not an address. */
        rc = default_port >= 0 && len > 0 ? parse_host(s, len, &a) : PL_EPARSE;
        port = (uint16_t)(default_port >= 0 ? default_port : 0);
    }
    if (rc < 0)
        return PL_EPARSE;
    pl_sockaddr_set_port(&a, port);
    *out = a;
    return 0;
}

socklen_t pl_sockaddr_len(const pl_sockaddr_t *a)
{
    switch (a->sa.sa_family) {
    case AF_INET: return (socklen_t)sizeof(a->in4);
    case AF_INET6: return (socklen_t)sizeof(a->in6);
    default: return 0;
    }
}

uint16_t pl_sockaddr_port(const pl_sockaddr_t *a)
{
    switch (a->sa.sa_family) {
    case AF_INET: return ntohs(a->in4.sin_port);
    case AF_INET6: return ntohs(a->in6.sin6_port);
    default: return 0;
    }
}

void pl_sockaddr_set_port(pl_sockaddr_t *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET)
        a->in4.sin_port = htons(port);
    else if (a->sa.sa_family == AF_INET6)
        a->in6.sin6_port = htons(port);
}

char *pl_ipaddr_str(const pl_sockaddr_t *a, char *buf, size_t cap)
{
    char tmp[INET6_ADDRSTRLEN];
    const void *src = a->sa.sa_family == AF_INET ? (const void *)&a->in4.sin_addr
                                                 : (const void *)&a->in6.sin6_addr;
    if (cap == 0)
        return buf;
    if ((a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6) ||
        !inet_ntop(a->sa.sa_family, src, tmp, sizeof(tmp)))
        snprintf(tmp, sizeof(tmp), "?");
    snprintf(buf, cap, "%s", tmp);
    return buf;
}

char *pl_sockaddr_str(const pl_sockaddr_t *a, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (cap == 0)
        return buf;
    pl_ipaddr_str(a, ip, sizeof(ip));
    if (a->sa.sa_family == AF_INET6)
        snprintf(buf, cap, "[%s]:%u", ip, (unsigned)pl_sockaddr_port(a));
    else if (a->sa.sa_family == AF_INET)
        snprintf(buf, cap, "%s:%u", ip, (unsigned)pl_sockaddr_port(a));
    else
        snprintf(buf, cap, "?");
    return buf;
}

bool pl_ipaddr_equal(const pl_sockaddr_t *a, const pl_sockaddr_t *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return false;
    if (a->sa.sa_family == AF_INET)
        return a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
    if (a->sa.sa_family == AF_INET6)
        return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0 &&
               a->in6.sin6_scope_id == b->in6.sin6_scope_id;
    return false;
}

bool pl_sockaddr_equal(const pl_sockaddr_t *a, const pl_sockaddr_t *b)
{
    return pl_ipaddr_equal(a, b) && pl_sockaddr_port(a) == pl_sockaddr_port(b);
}

bool pl_sockaddr_is_loopback(const pl_sockaddr_t *a)
{
    if (a->sa.sa_family == AF_INET)
        return (ntohl(a->in4.sin_addr.s_addr) >> 24) == 127;
    if (a->sa.sa_family != AF_INET6)
        return false;
    const struct in6_addr *v6 = &a->in6.sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(v6) || (IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127);
}

/* ---- CIDR ------------------------------------------------------------------------- */

static void mask_bits(uint8_t *addr, size_t len_bytes, unsigned prefix_len)
{
    for (size_t i = 0; i < len_bytes; i++) {
        unsigned bits = prefix_len > i * 8 ? PL_MIN(prefix_len - (unsigned)i * 8, 8u) : 0;
        addr[i] &= (uint8_t)(0xffu << (8 - bits));
    }
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix_len)
{
    size_t full = prefix_len / 8;
    unsigned rem = prefix_len % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rem == 0)
        return true;
    uint8_t m = (uint8_t)(0xffu << (8 - rem));
    return (a[full] & m) == (b[full] & m);
}

/* Host bits beyond the prefix are cleared ("10.1.2.3/8" reads as 10.0.0.0/8), as the
 * range is what matters for matching and printing. */
int pl_cidr_parse(const char *s, pl_cidr_t *out)
{
    if (!s || !out)
        return PL_EPARSE;
    size_t len = strnlen(s, PL_NET_MAX_INPUT);
    if (len >= PL_NET_MAX_INPUT)
        return PL_EPARSE;
    const char *slash = memchr(s, '/', len);
    size_t ip_len = slash ? (size_t)(slash - s) : len;
    pl_sockaddr_t a;
    if (parse_ip(s, ip_len, AF_UNSPEC, &a) < 0)
        return PL_EPARSE;
    pl_cidr_t c = { .family = a.sa.sa_family };
    unsigned max = c.family == AF_INET ? 32 : 128;
    unsigned prefix = max;
    if (slash) {
        uint16_t v;
        size_t plen = len - ip_len - 1;
        if (plen > 3 || parse_port(slash + 1, plen, &v) < 0 || v > max)
            return PL_EPARSE;
        prefix = v;
    }
    if (c.family == AF_INET)
        memcpy(c.addr, &a.in4.sin_addr, 4);
    else
        memcpy(c.addr, &a.in6.sin6_addr, 16);
    c.prefix_len = (uint8_t)prefix;
    mask_bits(c.addr, max / 8, prefix);
    *out = c;
    return 0;
}

/* An address and its IPv4-mapped IPv6 form (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) are the
 * same host: a dual-stack socket reports v4 peers in the mapped form. So a v4 range
 * matches the mapped form, and a v6 range such as ::ffff:10.0.0.0/104 matches the
 * plain v4 address. */
bool pl_cidr_match(const pl_cidr_t *c, const pl_sockaddr_t *a)
{
    uint8_t v6[16];
    if (c->family == AF_INET) {
        if (a->sa.sa_family == AF_INET)
            return prefix_equal(c->addr, (const uint8_t *)&a->in4.sin_addr, c->prefix_len);
        if (a->sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->in6.sin6_addr))
            return prefix_equal(c->addr, a->in6.sin6_addr.s6_addr + 12, c->prefix_len);
        return false;
    }
    if (c->family != AF_INET6)
        return false;
    if (a->sa.sa_family == AF_INET6)
        return prefix_equal(c->addr, a->in6.sin6_addr.s6_addr, c->prefix_len);
    if (a->sa.sa_family != AF_INET)
        return false;
    memset(v6, 0, 10);
    v6[10] = v6[11] = 0xff;
    memcpy(v6 + 12, &a->in4.sin_addr, 4);
    return prefix_equal(c->addr, v6, c->prefix_len);
}

char *pl_cidr_str(const pl_cidr_t *c, char *buf, size_t cap)
{
    pl_sockaddr_t a;
    char ip[INET6_ADDRSTRLEN];
    if (cap == 0)
        return buf;
    memset(&a, 0, sizeof(a));
    a.sa.sa_family = (sa_family_t)c->family;
    if (c->family == AF_INET)
        memcpy(&a.in4.sin_addr, c->addr, 4);
    else if (c->family == AF_INET6)
        memcpy(&a.in6.sin6_addr, c->addr, 16);
    pl_ipaddr_str(&a, ip, sizeof(ip));
    snprintf(buf, cap, "%s/%u", ip, (unsigned)c->prefix_len);
    return buf;
}

/* ---- sockets ---------------------------------------------------------------------- */

static int set_int_opt(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

static int apply_listen_opts(int fd, const pl_sockaddr_t *addr, int type, unsigned flags)
{
    int rc = 0;
    /* Restarting the daemon must not wait for TIME_WAIT connections of the old one. */
    if (type == SOCK_STREAM)
        rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (rc == 0 && (flags & PL_LISTEN_REUSEPORT))
        rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    /* Set V6ONLY explicitly either way: the default follows the bindv6only sysctl. */
    if (rc == 0 && addr->sa.sa_family == AF_INET6)
        rc = set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, (flags & PL_LISTEN_V6ONLY) ? 1 : 0);
    return rc;
}

int pl_net_listen(const pl_sockaddr_t *addr, int type, unsigned flags, int backlog)
{
    int rc;
    socklen_t alen = pl_sockaddr_len(addr);
    if (alen == 0)
        return -EAFNOSUPPORT;
    if (type != SOCK_STREAM && type != SOCK_DGRAM)
        return -EINVAL;
    int fd = socket(addr->sa.sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    rc = apply_listen_opts(fd, addr, type, flags);
    if (rc < 0)
        goto fail;
    if (bind(fd, &addr->sa, alen) < 0) {
        rc = -errno;
        goto fail;
    }
    if (type == SOCK_STREAM && listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) {
        rc = -errno;
        goto fail;
    }
    return fd;

fail:
    close(fd);
    return rc;
}

int pl_net_local_addr(int fd, pl_sockaddr_t *out)
{
    socklen_t len = sizeof(*out);
    memset(out, 0, sizeof(*out));
    if (getsockname(fd, &out->sa, &len) < 0)
        return -errno;
    return 0;
}
