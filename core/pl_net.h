/* pl_net.h: socket-address helpers shared by every module that listens or relays:
 * parsing and printing addresses, CIDR ranges, and opening non-blocking listeners.
 * No I/O besides the socket calls of pl_net_listen; no logging. Thread-safe. */
#ifndef PL_NET_H
#define PL_NET_H

#include "core/pl_common.h"
#include <sys/socket.h>
#include <netinet/in.h>

typedef union pl_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_storage ss;
} pl_sockaddr_t;

/* Parses "1.2.3.4:80", "[::1]:80", "localhost:80" (-> 127.0.0.1), ":80" (-> 0.0.0.0)
 * or, when default_port >= 0, also a bare host ("1.2.3.4", "[::1]", "::1"). No DNS, no
 * zone ids. Total: any input gives 0 or PL_EPARSE. */
int pl_sockaddr_parse(const char *s, int default_port, pl_sockaddr_t *out);
/* Parses an IP literal without port. Returns 0 or PL_EPARSE. */
int pl_ipaddr_parse(const char *s, pl_sockaddr_t *out);
socklen_t pl_sockaddr_len(const pl_sockaddr_t *a);
uint16_t pl_sockaddr_port(const pl_sockaddr_t *a);
void pl_sockaddr_set_port(pl_sockaddr_t *a, uint16_t port);
/* Formats "1.2.3.4:80" / "[::1]:80" into buf (>= PL_SOCKADDR_STRLEN); returns buf. */
#define PL_SOCKADDR_STRLEN 64
char *pl_sockaddr_str(const pl_sockaddr_t *a, char *buf, size_t cap);
/* Formats the IP only. */
char *pl_ipaddr_str(const pl_sockaddr_t *a, char *buf, size_t cap);
/* Compare address and port (family-aware). */
bool pl_sockaddr_equal(const pl_sockaddr_t *a, const pl_sockaddr_t *b);
bool pl_ipaddr_equal(const pl_sockaddr_t *a, const pl_sockaddr_t *b);
bool pl_sockaddr_is_loopback(const pl_sockaddr_t *a);   /* 127/8, ::1, ::ffff:127/104 */

/* An IPv4 or IPv6 CIDR range. A v4 range also matches the IPv4-mapped v6 form. */
typedef struct pl_cidr {
    int family;             /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint8_t prefix_len;
} pl_cidr_t;

/* Parses "10.0.0.0/8", "fd00::/8" or a bare address (full-length prefix). Host bits
 * past the prefix are cleared ("10.1.2.3/8" is 10.0.0.0/8). Returns 0 or PL_EPARSE.
 * Matching treats an IPv4 address and its ::ffff:a.b.c.d form as the same host, both
 * ways: 10.0.0.0/8 matches ::ffff:10.1.2.3, and ::ffff:0:0/96 matches 10.1.2.3. */
int pl_cidr_parse(const char *s, pl_cidr_t *out);
bool pl_cidr_match(const pl_cidr_t *c, const pl_sockaddr_t *a);
char *pl_cidr_str(const pl_cidr_t *c, char *buf, size_t cap);

enum { PL_LISTEN_REUSEPORT = 1u << 0, PL_LISTEN_V6ONLY = 1u << 1 };
/* Opens a non-blocking, close-on-exec socket bound to addr: type SOCK_STREAM (listening,
 * backlog) or SOCK_DGRAM. Returns the fd or -errno. */
int pl_net_listen(const pl_sockaddr_t *addr, int type, unsigned flags, int backlog);
/* Fills *out with the bound address of fd. Returns 0 or -errno. */
int pl_net_local_addr(int fd, pl_sockaddr_t *out);

#endif
