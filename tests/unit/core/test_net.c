/* test_net.c: address parsing (table of good and bad inputs, random bytes), printing
 * round-trips, CIDR parsing and matching edge cases, and listeners on 127.0.0.1 and
 * ::1 with their socket options read back. */
#include "core/pl_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

static pl_sockaddr_t ip(const char *s)
{
    pl_sockaddr_t a;
    assert_int_equal(pl_ipaddr_parse(s, &a), 0);
    return a;
}

/* ---- pl_sockaddr_parse ------------------------------------------------------------ */

typedef struct parse_case {
    const char *in;
    int default_port;
    const char *want;      /* formatted result, NULL = PL_EPARSE */
} parse_case_t;

static const parse_case_t parse_cases[] = {
    { "1.2.3.4:80", -1, "1.2.3.4:80" },
    { "[::1]:80", -1, "[::1]:80" },
    { "localhost:80", -1, "127.0.0.1:80" },
    { "LocalHost:8080", -1, "127.0.0.1:8080" },
    { ":80", -1, "0.0.0.0:80" },
    { ":0", 5, "0.0.0.0:0" },
    { "0.0.0.0:65535", -1, "0.0.0.0:65535" },
    { "1.2.3.4:00080", -1, "1.2.3.4:80" },
    { "1.2.3.4", 3478, "1.2.3.4:3478" },
    { "1.2.3.4", 0, "1.2.3.4:0" },
    { "1.2.3.4:9", 3478, "1.2.3.4:9" },
    { "localhost", 5349, "127.0.0.1:5349" },
    { "[::1]", 443, "[::1]:443" },
    { "::1", 443, "[::1]:443" },
    { "::", 1, "[::]:1" },
    { "2001:db8::1", 0, "[2001:db8::1]:0" },
    { "[2001:DB8::1]:65535", -1, "[2001:db8::1]:65535" },
    { "[::ffff:1.2.3.4]:1", -1, "[::ffff:1.2.3.4]:1" },
    /* bad */
    { "", -1, NULL },
    { "", 80, NULL },
    { ":", -1, NULL },
    { "1.2.3.4", -1, NULL },
    { "1.2.3.4", 65536, NULL },
    { "1.2.3.4:", -1, NULL },
    { "1.2.3.4:65536", -1, NULL },
    { "1.2.3.4:99999", -1, NULL },
    { "1.2.3.4:123456", -1, NULL },
    { "1.2.3.4:-1", -1, NULL },
    { "1.2.3.4:+80", -1, NULL },
    { "1.2.3.4:8 0", -1, NULL },
    { "1.2.3.4:80x", -1, NULL },
    { "1.2.3.4:80\n", -1, NULL },
    { " 1.2.3.4:80", -1, NULL },
    { "1.2.3:80", -1, NULL },
    { "1.2.3.4.5:80", -1, NULL },
    { "256.1.1.1:80", -1, NULL },
    { "1.2.3.4:80:80", -1, NULL },
    { "[::1]", -1, NULL },
    { "[::1]:", -1, NULL },
    { "[::1]80", -1, NULL },
    { "[::1", 80, NULL },
    { "::1]:80", -1, NULL },
    { "[]:80", -1, NULL },
    { "[]", 80, NULL },
    { "[", 80, NULL },
    { "]", 80, NULL },
    { "[1.2.3.4]:80", -1, NULL },
    { "[::1]:65536", -1, NULL },
    { "[::1]:80:80", -1, NULL },
    { "[[::1]]:80", -1, NULL },
    { "::1", -1, NULL },
    { "1:2:3", 5, NULL },
    { "localhost:", -1, NULL },
    { "localhostx:80", -1, NULL },
    { "example.com:80", -1, NULL },
    { "example.com", 80, NULL },
    { "fe80::1%eth0", 5, NULL },
    { "[fe80::1%eth0]:5", -1, NULL },
};

static void test_sockaddr_parse_table(void **state)
{
    (void)state;
    char buf[PL_SOCKADDR_STRLEN];
    for (size_t i = 0; i < PL_ARRAY_LEN(parse_cases); i++) {
        const parse_case_t *c = &parse_cases[i];
        pl_sockaddr_t a, b;
        memset(&a, 0xa5, sizeof(a));
        int rc = pl_sockaddr_parse(c->in, c->default_port, &a);
        if (!c->want) {
            if (rc != PL_EPARSE)
                fail_msg("accepted bad input \"%s\" (default %d)", c->in, c->default_port);
            continue;
        }
        if (rc != 0)
            fail_msg("rejected \"%s\" (default %d): %d", c->in, c->default_port, rc);
        assert_string_equal(pl_sockaddr_str(&a, buf, sizeof(buf)), c->want);
        /* Round trip: the printed form parses back to the same address. */
        assert_int_equal(pl_sockaddr_parse(buf, -1, &b), 0);
        assert_true(pl_sockaddr_equal(&a, &b));
        assert_int_equal(pl_sockaddr_len(&a), a.sa.sa_family == AF_INET
                                                  ? sizeof(struct sockaddr_in)
                                                  : sizeof(struct sockaddr_in6));
    }
}

static void test_sockaddr_parse_limits(void **state)
{
    (void)state;
    pl_sockaddr_t a;
    char big[4096];
    assert_int_equal(pl_sockaddr_parse(NULL, 80, &a), PL_EPARSE);
    assert_int_equal(pl_sockaddr_parse("1.2.3.4:80", 80, NULL), PL_EPARSE);
    /* Overlong input, including a valid address followed by padding. */
    memset(big, '1', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(pl_sockaddr_parse(big, 80, &a), PL_EPARSE);
    snprintf(big, sizeof(big), "1.2.3.4:%0200d", 80);
    assert_int_equal(pl_sockaddr_parse(big, -1, &a), PL_EPARSE);
    snprintf(big, sizeof(big), "[0000:0000:0000:0000:0000:0000:0000:0001]:65535");
    assert_int_equal(pl_sockaddr_parse(big, -1, &a), 0);   /* the longest real form */
    assert_int_equal(pl_sockaddr_port(&a), 65535);
    assert_true(pl_sockaddr_is_loopback(&a));
}

/* Total function: random bytes never crash, and anything accepted round-trips. */
static void test_sockaddr_parse_random(void **state)
{
    (void)state;
    static const char alphabet[] = "0123456789abcdef:.[]%/ lohstxABCDEF\xff";
    uint32_t x = 12345;
    char in[64], out[PL_SOCKADDR_STRLEN];
    int accepted = 0;
    for (int iter = 0; iter < 200000; iter++) {
        x = x * 1103515245u + 12345u;
        size_t len = (x >> 16) % sizeof(in);
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            in[i] = alphabet[(x >> 16) % (sizeof(alphabet) - 1)];
        }
        in[len] = '\0';
        pl_sockaddr_t a, b;
        int dp = (int)(x % 3) - 1;   /* -1, 0 or 1 */
        int rc = pl_sockaddr_parse(in, dp, &a);
        assert_true(rc == 0 || rc == PL_EPARSE);
        if (rc == 0) {
            accepted++;
            pl_sockaddr_str(&a, out, sizeof(out));
            assert_int_equal(pl_sockaddr_parse(out, -1, &b), 0);
            assert_true(pl_sockaddr_equal(&a, &b));
        }
        rc = pl_ipaddr_parse(in, &a);
        assert_true(rc == 0 || rc == PL_EPARSE);
        pl_cidr_t c;
        rc = pl_cidr_parse(in, &c);
        assert_true(rc == 0 || rc == PL_EPARSE);
    }
    assert_true(accepted > 0);
}

/* ---- helpers: ipaddr, equality, loopback, formatting ---------------------------- */

static void test_ipaddr_and_helpers(void **state)
{
    (void)state;
    pl_sockaddr_t a, b;
    char buf[PL_SOCKADDR_STRLEN];
    assert_int_equal(pl_ipaddr_parse("1.2.3.4", &a), 0);
    assert_int_equal(a.sa.sa_family, AF_INET);
    assert_int_equal(pl_sockaddr_port(&a), 0);
    assert_int_equal(pl_ipaddr_parse("::", &a), 0);
    assert_int_equal(a.sa.sa_family, AF_INET6);
    assert_int_equal(pl_ipaddr_parse("1.2.3.4:80", &a), PL_EPARSE);
    assert_int_equal(pl_ipaddr_parse("[::1]", &a), PL_EPARSE);
    assert_int_equal(pl_ipaddr_parse("localhost", &a), PL_EPARSE);
    assert_int_equal(pl_ipaddr_parse("", &a), PL_EPARSE);
    assert_int_equal(pl_ipaddr_parse(NULL, &a), PL_EPARSE);

    a = ip("10.0.0.1");
    b = ip("10.0.0.1");
    pl_sockaddr_set_port(&a, 1000);
    pl_sockaddr_set_port(&b, 1001);
    assert_int_equal(pl_sockaddr_port(&a), 1000);
    assert_true(pl_ipaddr_equal(&a, &b));
    assert_false(pl_sockaddr_equal(&a, &b));
    pl_sockaddr_set_port(&b, 1000);
    assert_true(pl_sockaddr_equal(&a, &b));
    b = ip("::ffff:10.0.0.1");   /* same host, other family: not equal */
    pl_sockaddr_set_port(&b, 1000);
    assert_false(pl_ipaddr_equal(&a, &b));
    assert_false(pl_sockaddr_equal(&a, &b));
    assert_string_equal(pl_ipaddr_str(&b, buf, sizeof(buf)), "::ffff:10.0.0.1");
    assert_string_equal(pl_sockaddr_str(&b, buf, sizeof(buf)), "[::ffff:10.0.0.1]:1000");

    /* Truncation keeps a terminated string; cap 0 leaves buf alone. */
    assert_string_equal(pl_sockaddr_str(&a, buf, 5), "10.0");
    buf[0] = 'X';
    assert_ptr_equal(pl_sockaddr_str(&a, buf, 0), buf);
    assert_int_equal(buf[0], 'X');
    memset(&a, 0, sizeof(a));
    a.sa.sa_family = AF_UNIX;
    assert_string_equal(pl_sockaddr_str(&a, buf, sizeof(buf)), "?");
    assert_int_equal(pl_sockaddr_len(&a), 0);
    assert_int_equal(pl_sockaddr_port(&a), 0);
    assert_false(pl_sockaddr_is_loopback(&a));
}

static void test_loopback(void **state)
{
    (void)state;
    static const struct { const char *s; bool loop; } cases[] = {
        { "127.0.0.1", true },  { "127.255.255.254", true }, { "126.255.255.255", false },
        { "128.0.0.1", false }, { "0.0.0.0", false },         { "::1", true },
        { "::2", false },       { "::", false },              { "::ffff:127.0.0.1", true },
        { "::ffff:127.9.9.9", true }, { "::ffff:10.0.0.1", false },
        { "::127.0.0.1", false },     /* deprecated v4-compatible form, not loopback */
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        pl_sockaddr_t a = ip(cases[i].s);
        if (pl_sockaddr_is_loopback(&a) != cases[i].loop)
            fail_msg("is_loopback(%s) != %d", cases[i].s, cases[i].loop);
    }
}

/* ---- CIDR ---------------------------------------------------------------------------- */

static void test_cidr_parse(void **state)
{
    (void)state;
    static const struct { const char *in, *want; } good[] = {
        { "10.0.0.0/8", "10.0.0.0/8" },   { "10.1.2.3/8", "10.0.0.0/8" },
        { "1.2.3.4", "1.2.3.4/32" },       { "0.0.0.0/0", "0.0.0.0/0" },
        { "255.255.255.255/0", "0.0.0.0/0" }, { "172.31.1.1/12", "172.16.0.0/12" },
        { "1.2.3.255/31", "1.2.3.254/31" }, { "::1", "::1/128" },
        { "fd00::/8", "fd00::/8" },       { "ffff::/7", "fe00::/7" },
        { "::/0", "::/0" },               { "2001:db8::/32", "2001:db8::/32" },
        { "::ffff:0:0/96", "::ffff:0.0.0.0/96" }, { "10.0.0.0/008", "10.0.0.0/8" },
    };
    static const char *const bad[] = {
        "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/+8",
        "10.0.0.0/8/8", "10.0.0.0/0008", "10.0.0.0/8x", "10.0.0.0 /8", "10.0.0/8",
        "localhost/8", "[::1]/128", "::1/", "fe80::1%eth0/64", "10.0.0.0:80/8",
    };
    char buf[80];
    pl_cidr_t c;
    for (size_t i = 0; i < PL_ARRAY_LEN(good); i++) {
        if (pl_cidr_parse(good[i].in, &c) != 0)
            fail_msg("rejected CIDR \"%s\"", good[i].in);
        assert_string_equal(pl_cidr_str(&c, buf, sizeof(buf)), good[i].want);
        pl_cidr_t d;
        assert_int_equal(pl_cidr_parse(buf, &d), 0);   /* round trip */
        assert_memory_equal(&c, &d, sizeof(c));
    }
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        if (pl_cidr_parse(bad[i], &c) != PL_EPARSE)
            fail_msg("accepted bad CIDR \"%s\"", bad[i]);
    }
    assert_int_equal(pl_cidr_parse(NULL, &c), PL_EPARSE);
    assert_int_equal(pl_cidr_parse("10.0.0.0/8", NULL), PL_EPARSE);
}

typedef struct match_case {
    const char *cidr, *addr;
    bool match;
} match_case_t;

static const match_case_t match_cases[] = {
    /* /0 matches its whole family (and the mapped form), nothing else */
    { "0.0.0.0/0", "1.2.3.4", true },        { "0.0.0.0/0", "255.255.255.255", true },
    { "0.0.0.0/0", "::ffff:9.9.9.9", true }, { "0.0.0.0/0", "::1", false },
    { "0.0.0.0/0", "2001:db8::1", false },   { "::/0", "2001:db8::1", true },
    { "::/0", "::", true },
    /* full-length prefixes */
    { "1.2.3.4/32", "1.2.3.4", true },       { "1.2.3.4/32", "1.2.3.5", false },
    { "1.2.3.4", "::ffff:1.2.3.4", true },   { "1.2.3.4", "::1.2.3.4", false },
    { "::1/128", "::1", true },              { "::1/128", "::2", false },
    { "::1/128", "127.0.0.1", false },
    /* prefixes off byte boundaries */
    { "172.16.0.0/12", "172.16.0.0", true }, { "172.16.0.0/12", "172.31.255.255", true },
    { "172.16.0.0/12", "172.32.0.0", false }, { "172.16.0.0/12", "172.15.255.255", false },
    { "172.16.0.0/12", "::ffff:172.20.1.1", true },
    { "1.2.3.4/31", "1.2.3.5", true },       { "1.2.3.4/31", "1.2.3.6", false },
    { "fc00::/7", "fc00::1", true },         { "fc00::/7", "fdff:ffff::1", true },
    { "fc00::/7", "fe00::1", false },        { "fc00::/7", "fb00::1", false },
    { "2001:db8::/33", "2001:db8:7fff::1", true }, { "2001:db8::/33", "2001:db8:8000::", false },
    /* v4 range against the IPv4-mapped IPv6 form */
    { "10.0.0.0/8", "::ffff:10.1.2.3", true }, { "10.0.0.0/8", "::ffff:11.0.0.1", false },
    { "10.0.0.0/8", "::a01:203", false },    /* ::10.1.2.3, not mapped */
    { "10.0.0.0/8", "10.255.255.255", true },
    /* v6 range written in mapped form: v6 addresses match normally, v4 by mapping */
    { "::ffff:0:0/96", "::ffff:1.2.3.4", true }, { "::ffff:0:0/96", "::1", false },
    { "::ffff:0:0/96", "1.2.3.4", true },
    { "::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true },
    { "::ffff:10.0.0.0/104", "10.9.9.9", true }, { "::ffff:10.0.0.0/104", "11.0.0.0", false },
};

static void test_cidr_match(void **state)
{
    (void)state;
    for (size_t i = 0; i < PL_ARRAY_LEN(match_cases); i++) {
        const match_case_t *m = &match_cases[i];
        pl_cidr_t c;
        assert_int_equal(pl_cidr_parse(m->cidr, &c), 0);
        pl_sockaddr_t a = ip(m->addr);
        pl_sockaddr_set_port(&a, 4242);   /* the port plays no part */
        if (pl_cidr_match(&c, &a) != m->match)
            fail_msg("cidr_match(%s, %s) != %d", m->cidr, m->addr, m->match);
    }
    pl_cidr_t c;
    pl_sockaddr_t unix_addr;
    memset(&unix_addr, 0, sizeof(unix_addr));
    unix_addr.sa.sa_family = AF_UNIX;
    assert_int_equal(pl_cidr_parse("0.0.0.0/0", &c), 0);
    assert_false(pl_cidr_match(&c, &unix_addr));
    assert_int_equal(pl_cidr_parse("::/0", &c), 0);
    assert_false(pl_cidr_match(&c, &unix_addr));
}

/* ---- listeners ------------------------------------------------------------------- */

static int get_int_opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void check_common(int fd, const char *want_ip)
{
    pl_sockaddr_t local;
    char buf[PL_SOCKADDR_STRLEN];
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(pl_net_local_addr(fd, &local), 0);
    assert_string_equal(pl_ipaddr_str(&local, buf, sizeof(buf)), want_ip);
    assert_int_not_equal(pl_sockaddr_port(&local), 0);
}

/* A stream listener accepts a real connection on the port it reports. */
static void connect_and_accept(int lfd)
{
    pl_sockaddr_t local;
    assert_int_equal(pl_net_local_addr(lfd, &local), 0);
    int cfd = socket(local.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cfd >= 0);
    assert_int_equal(connect(cfd, &local.sa, pl_sockaddr_len(&local)), 0);
    struct pollfd p = { .fd = lfd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 2000), 1);
    int afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(afd >= 0);
    close(afd);
    close(cfd);
}

static void test_listen_v4(void **state)
{
    (void)state;
    pl_sockaddr_t a;
    assert_int_equal(pl_sockaddr_parse("127.0.0.1:0", -1, &a), 0);
    int fd = pl_net_listen(&a, SOCK_STREAM, 0, 16);
    check_common(fd, "127.0.0.1");
    assert_int_equal(get_int_opt(fd, SOL_SOCKET, SO_REUSEADDR), 1);
    assert_int_equal(get_int_opt(fd, SOL_SOCKET, SO_REUSEPORT), 0);
    assert_int_equal(get_int_opt(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
    assert_int_equal(get_int_opt(fd, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
    connect_and_accept(fd);

    /* The same port without SO_REUSEPORT is taken. */
    pl_sockaddr_t taken;
    assert_int_equal(pl_net_local_addr(fd, &taken), 0);
    assert_int_equal(pl_net_listen(&taken, SOCK_STREAM, 0, 0), -EADDRINUSE);
    close(fd);
}

static void test_listen_dgram_reuseport(void **state)
{
    (void)state;
    pl_sockaddr_t a, bound;
    assert_int_equal(pl_sockaddr_parse("127.0.0.1", 0, &a), 0);
    int fd1 = pl_net_listen(&a, SOCK_DGRAM, PL_LISTEN_REUSEPORT, 0);
    check_common(fd1, "127.0.0.1");
    assert_int_equal(get_int_opt(fd1, SOL_SOCKET, SO_REUSEPORT), 1);
    assert_int_equal(get_int_opt(fd1, SOL_SOCKET, SO_REUSEADDR), 0);
    assert_int_equal(get_int_opt(fd1, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    assert_int_equal(pl_net_local_addr(fd1, &bound), 0);
    /* A second relay thread shares the port (ARCHITECTURE: relay x M). */
    int fd2 = pl_net_listen(&bound, SOCK_DGRAM, PL_LISTEN_REUSEPORT, 0);
    assert_true(fd2 >= 0);
    assert_int_equal(pl_net_listen(&bound, SOCK_DGRAM, 0, 0), -EADDRINUSE);
    close(fd2);
    close(fd1);
}

static void test_listen_v6(void **state)
{
    (void)state;
    pl_sockaddr_t a;
    assert_int_equal(pl_sockaddr_parse("[::1]:0", -1, &a), 0);
    int fd = pl_net_listen(&a, SOCK_STREAM, PL_LISTEN_V6ONLY, 0);
    if (fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT) {
        skip();   /* no IPv6 loopback on this host */
    }
    check_common(fd, "::1");
    assert_int_equal(get_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    connect_and_accept(fd);
    close(fd);

    /* V6ONLY is set explicitly both ways, whatever the bindv6only sysctl says. On the
     * wildcard only: Linux forces it on for a socket bound to a specific v6 address.
     * Bound, never used: no traffic leaves loopback. */
    assert_int_equal(pl_sockaddr_parse("[::]:0", -1, &a), 0);
    fd = pl_net_listen(&a, SOCK_DGRAM, 0, 0);
    check_common(fd, "::");
    assert_int_equal(get_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY), 0);
    close(fd);
    fd = pl_net_listen(&a, SOCK_DGRAM, PL_LISTEN_V6ONLY, 0);
    check_common(fd, "::");
    assert_int_equal(get_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    close(fd);
}

static void test_listen_errors(void **state)
{
    (void)state;
    pl_sockaddr_t a, out;
    assert_int_equal(pl_sockaddr_parse("127.0.0.1:0", -1, &a), 0);
    assert_int_equal(pl_net_listen(&a, SOCK_RAW, 0, 0), -EINVAL);
    memset(&a, 0, sizeof(a));
    a.sa.sa_family = AF_UNSPEC;
    assert_int_equal(pl_net_listen(&a, SOCK_STREAM, 0, 0), -EAFNOSUPPORT);
    /* An address this host does not have (TEST-NET-1, RFC 5737): bind fails. */
    assert_int_equal(pl_sockaddr_parse("192.0.2.1:0", -1, &a), 0);
    assert_int_equal(pl_net_listen(&a, SOCK_DGRAM, 0, 0), -EADDRNOTAVAIL);
    assert_int_equal(pl_net_local_addr(-1, &out), -EBADF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sockaddr_parse_table),
        cmocka_unit_test(test_sockaddr_parse_limits),
        cmocka_unit_test(test_sockaddr_parse_random),
        cmocka_unit_test(test_ipaddr_and_helpers),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_listen_v4),
        cmocka_unit_test(test_listen_dgram_reuseport),
        cmocka_unit_test(test_listen_v6),
        cmocka_unit_test(test_listen_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
