/* test_sendq.c: the per-context send queue (sfu_sendq.h) over real UDP sockets on
 * 127.0.0.1: packets queued during a dispatch stay queued until the iteration ends and
 * then all arrive in order with their sizes (runs of equal sizes go out as one GSO
 * message and must come back as separate datagrams), sends outside a dispatch go at once,
 * the per-socket bound flushes early, running out of slots flushes everything, a
 * destination the kernel refuses counts drops (and falls back from GSO), discard drops,
 * bad inputs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/sfu/tsan_glib.h"
#include "relay/sfu/sfu_sendq.h"

typedef struct udp {
    int fd;
    struct sockaddr_in addr;
} udp_t;

static void udp_open(udp_t *u)
{
    u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(u->fd >= 0);
    memset(&u->addr, 0, sizeof(u->addr));
    u->addr.sin_family = AF_INET;
    u->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(u->fd, (struct sockaddr *)&u->addr, sizeof(u->addr)), 0);
    socklen_t l = sizeof(u->addr);
    assert_int_equal(getsockname(u->fd, (struct sockaddr *)&u->addr, &l), 0);
}

/* Reads every datagram waiting on u; lens[i] gets each size, the first byte must be
 * the sequence mark i + first_mark. Returns the count. */
static unsigned drain(const udp_t *u, size_t *lens, unsigned max, uint8_t first_mark)
{
    uint8_t buf[4096];
    unsigned n = 0;
    ssize_t r;
    while ((r = recv(u->fd, buf, sizeof(buf), MSG_DONTWAIT)) >= 0) {
        assert_true(n < max);
        assert_int_equal(buf[0], (uint8_t)(first_mark + n));
        lens[n++] = (size_t)r;
    }
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    return n;
}

static void send_marked(pl_sendq_sock_t *s, uint8_t mark, size_t len, int want)
{
    uint8_t buf[PL_SENDQ_SLOT_BYTES];
    memset(buf, 0xAB, len);
    buf[0] = mark;
    assert_int_equal(pl_sendq_send(s, buf, len), want);
}

typedef struct fixture {
    GMainContext *ctx;
    pl_sendq_t *q;
    udp_t tx, rx;
    pl_sendq_sock_t s;
    unsigned seen_in_dispatch;      /* datagrams already at rx inside the callback */
    size_t lens[64];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->ctx = g_main_context_new();
    f->q = pl_sendq_for_context(f->ctx);
    assert_non_null(f->q);
    assert_ptr_equal(pl_sendq_for_context(f->ctx), f->q);    /* one per context */
    udp_open(&f->tx);
    udp_open(&f->rx);
    pl_sendq_sock_init(&f->s, f->q);
    pl_sendq_sock_set_dest(&f->s, f->tx.fd, (struct sockaddr *)&f->rx.addr,
                           sizeof(f->rx.addr));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    pl_sendq_sock_discard(&f->s);
    close(f->tx.fd);
    close(f->rx.fd);
    g_main_context_unref(f->ctx);   /* frees the queue (ASan would see a leak) */
    free(f);
    return 0;
}

/* Runs fn(data) once from an idle source of f->ctx, then one more iteration (its
 * prepare flushes). */
static void in_dispatch_with(fixture_t *f, GSourceFunc fn, void *data)
{
    GSource *src = g_idle_source_new();
    g_source_set_callback(src, fn, data, NULL);
    g_source_attach(src, f->ctx);
    g_source_unref(src);
    assert_true(g_main_context_iteration(f->ctx, FALSE));
    g_main_context_iteration(f->ctx, FALSE);
}

static void in_dispatch(fixture_t *f, GSourceFunc fn)
{
    in_dispatch_with(f, fn, f);
}

static const size_t k_sizes[] = { 1100, 1100, 1100, 1099, 1101, 1101, 80, 80, 1200, 40 };

static gboolean burst_cb(gpointer data)
{
    fixture_t *f = data;
    for (size_t i = 0; i < PL_ARRAY_LEN(k_sizes); i++)
        send_marked(&f->s, (uint8_t)i, k_sizes[i], 0);
    f->seen_in_dispatch = drain(&f->rx, f->lens, 64, 0);
    return G_SOURCE_REMOVE;
}

static void test_burst_waits_for_iteration_end(void **state)
{
    fixture_t *f = *state;
    in_dispatch(f, burst_cb);
    assert_int_equal(f->seen_in_dispatch, 0);
    assert_int_equal(drain(&f->rx, f->lens, 64, 0), PL_ARRAY_LEN(k_sizes));
    for (size_t i = 0; i < PL_ARRAY_LEN(k_sizes); i++)
        assert_int_equal(f->lens[i], k_sizes[i]);
    assert_int_equal(pl_sendq_sock_take_drops(&f->s), 0);
    assert_false(f->s.no_gso);
}

static void test_outside_dispatch_sends_at_once(void **state)
{
    fixture_t *f = *state;
    send_marked(&f->s, 7, 300, 0);
    assert_int_equal(drain(&f->rx, f->lens, 64, 7), 1);
    assert_int_equal(f->lens[0], 300);
}

static gboolean bound_cb(gpointer data)
{
    fixture_t *f = data;
    for (unsigned i = 0; i <= PL_SENDQ_SOCK_MAX; i++)
        send_marked(&f->s, (uint8_t)i, 200, 0);
    f->seen_in_dispatch = drain(&f->rx, f->lens, 64, 0);
    return G_SOURCE_REMOVE;
}

static void test_socket_bound_flushes_early(void **state)
{
    fixture_t *f = *state;
    in_dispatch(f, bound_cb);
    assert_int_equal(f->seen_in_dispatch, PL_SENDQ_SOCK_MAX);
    assert_int_equal(drain(&f->rx, f->lens, 64, PL_SENDQ_SOCK_MAX), 1);
}

/* More sockets than slots: each socket stays under its own bound, so only running out
 * of the context's slots can send anything before the iteration ends. */
#define N_SOCKS 9
#define PER_SOCK 30
typedef struct many {
    fixture_t *f;
    udp_t rx[N_SOCKS];
    pl_sendq_sock_t s[N_SOCKS];
    unsigned early;
} many_t;

static gboolean many_cb(gpointer data)
{
    many_t *m = data;
    size_t lens[64];
    for (unsigned k = 0; k < PER_SOCK; k++)
        for (unsigned i = 0; i < N_SOCKS; i++)
            send_marked(&m->s[i], (uint8_t)k, 100, 0);
    for (unsigned i = 0; i < N_SOCKS; i++)
        m->early += drain(&m->rx[i], lens, 64, 0);
    return G_SOURCE_REMOVE;
}

static void test_out_of_slots_flushes_all(void **state)
{
    fixture_t *f = *state;
    _Static_assert(N_SOCKS * PER_SOCK > PL_SENDQ_SLOTS && PER_SOCK < PL_SENDQ_SOCK_MAX, "sizes");
    many_t *m = calloc(1, sizeof(*m));
    m->f = f;
    for (unsigned i = 0; i < N_SOCKS; i++) {
        udp_open(&m->rx[i]);
        pl_sendq_sock_init(&m->s[i], f->q);
        pl_sendq_sock_set_dest(&m->s[i], f->tx.fd, (struct sockaddr *)&m->rx[i].addr,
                               sizeof(m->rx[i].addr));
    }
    in_dispatch_with(f, many_cb, m);
    assert_int_equal(m->early, PL_SENDQ_SLOTS);     /* the first full set went together */
    unsigned total = m->early;
    for (unsigned i = 0; i < N_SOCKS; i++) {
        uint8_t buf[256];
        while (recv(m->rx[i].fd, buf, sizeof(buf), MSG_DONTWAIT) == 100)
            total++;
        assert_int_equal(pl_sendq_sock_take_drops(&m->s[i]), 0);
        pl_sendq_sock_discard(&m->s[i]);
        close(m->rx[i].fd);
    }
    assert_int_equal(total, N_SOCKS * PER_SOCK);
    free(m);
}

/* An IPv6 destination on an IPv4 socket: the kernel refuses every datagram. The GSO
 * message is refused first, then each datagram alone: all counted, none lost silently. */
static gboolean refused_cb(gpointer data)
{
    fixture_t *f = data;
    for (unsigned i = 0; i < 4; i++)
        send_marked(&f->s, (uint8_t)i, 500, 0);
    return G_SOURCE_REMOVE;
}

static void test_refused_counts_drops_and_drops_gso(void **state)
{
    fixture_t *f = *state;
    struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_port = htons(9),
                               .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    pl_sendq_sock_set_dest(&f->s, f->tx.fd, (struct sockaddr *)&v6, sizeof(v6));
    in_dispatch(f, refused_cb);
    assert_int_equal(pl_sendq_sock_take_drops(&f->s), 4);
    assert_int_equal(pl_sendq_sock_take_drops(&f->s), 0);
    assert_true(f->s.no_gso);
    assert_false(f->s.listed);
    /* Back to a good destination: datagrams flow again (without GSO now). */
    pl_sendq_sock_set_dest(&f->s, f->tx.fd, (struct sockaddr *)&f->rx.addr, sizeof(f->rx.addr));
    in_dispatch(f, burst_cb);
    assert_int_equal(drain(&f->rx, f->lens, 64, 0), PL_ARRAY_LEN(k_sizes));
}

static gboolean discard_cb(gpointer data)
{
    fixture_t *f = data;
    for (unsigned i = 0; i < 3; i++)
        send_marked(&f->s, (uint8_t)i, 100, 0);
    pl_sendq_sock_discard(&f->s);   /* e.g. consent lost in the same iteration */
    return G_SOURCE_REMOVE;
}

static void test_discard_drops(void **state)
{
    fixture_t *f = *state;
    in_dispatch(f, discard_cb);
    assert_int_equal(drain(&f->rx, f->lens, 64, 0), 0);
    assert_int_equal(pl_sendq_sock_take_drops(&f->s), 3);
}

/* A destination change sends what was queued to the old destination first. */
static gboolean redirect_cb(gpointer data)
{
    fixture_t *f = data;
    send_marked(&f->s, 0, 100, 0);
    pl_sendq_sock_set_dest(&f->s, -1, NULL, 0);
    send_marked(&f->s, 1, 100, PL_ESTATE);
    return G_SOURCE_REMOVE;
}

static void test_dest_change_and_bad_inputs(void **state)
{
    fixture_t *f = *state;
    in_dispatch(f, redirect_cb);
    assert_int_equal(drain(&f->rx, f->lens, 64, 0), 1);
    pl_sendq_sock_set_dest(&f->s, f->tx.fd, (struct sockaddr *)&f->rx.addr, sizeof(f->rx.addr));
    uint8_t big[PL_SENDQ_SLOT_BYTES + 1] = { 0 };
    assert_int_equal(pl_sendq_send(&f->s, big, sizeof(big)), -EMSGSIZE);
    /* An address longer than sockaddr_storage is refused: no destination. */
    pl_sendq_sock_set_dest(&f->s, f->tx.fd, (struct sockaddr *)&f->rx.addr,
                           sizeof(struct sockaddr_storage) + 1);
    assert_int_equal(f->s.fd, -1);
    send_marked(&f->s, 0, 10, PL_ESTATE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_burst_waits_for_iteration_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outside_dispatch_sends_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_bound_flushes_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_slots_flushes_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_counts_drops_and_drops_gso, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_discard_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dest_change_and_bad_inputs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
