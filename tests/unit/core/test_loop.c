/* test_loop.c: the core event loop: fd readiness and deletion inside a batch, the
 * timer heap against a reference model on a fake clock, repeat timers, the mailbox
 * under 4 producer threads, stop from another thread, and destroy with queued
 * messages (run under ASan to prove they are freed). */
#include "core/pl_loop.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------------- */

static void watchdog_cb(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(t);
    PL_UNUSED(arg);
    fail_msg("watchdog fired: the loop did not stop in time");
}

static void stop_cb(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(t);
    PL_UNUSED(arg);
    pl_loop_stop(loop);
}

static void make_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
                     0);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- fd readiness ---------------------------------------------------------------- */

typedef struct io_ctx {
    int calls;
    uint32_t last_events;
    char data[16];
    ssize_t nread;
} io_ctx_t;

static void read_and_stop_cb(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    io_ctx_t *c = arg;
    c->calls++;
    c->last_events = events;
    c->nread = read(fd, c->data, sizeof(c->data));
    pl_loop_stop(loop);
}

static void test_fd_read_write_hup(void **state)
{
    PL_UNUSED(state);
    pl_loop_t *loop;
    int sv[2];
    io_ctx_t c = { 0 };
    pl_timer_t wd = { 0 };
    assert_int_equal(pl_loop_create("t-io", &loop), 0);
    make_pair(sv);
    pl_timer_start(loop, &wd, 5000, 0, watchdog_cb, NULL);

    /* Writable right away; READ not reported because nothing is readable. */
    assert_int_equal(pl_loop_add_fd(loop, sv[0], PL_IO_WRITE, read_and_stop_cb, &c), 0);
    assert_int_equal(pl_loop_add_fd(loop, sv[0], PL_IO_READ, read_and_stop_cb, &c), -EEXIST);
    assert_int_equal(pl_loop_run(loop), 0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.last_events, PL_IO_WRITE);

    /* Readable after the peer writes. */
    assert_int_equal(pl_loop_mod_fd(loop, sv[0], PL_IO_READ), 0);
    assert_int_equal(write(sv[1], "hi", 2), 2);
    assert_int_equal(pl_loop_run(loop), 0);
    assert_int_equal(c.calls, 2);
    assert_int_equal(c.last_events, PL_IO_READ);
    assert_int_equal(c.nread, 2);
    assert_memory_equal(c.data, "hi", 2);

    /* Hang-up is reported as READ and the read sees EOF. */
    close(sv[1]);
    assert_int_equal(pl_loop_run(loop), 0);
    assert_int_equal(c.calls, 3);
    assert_true(c.last_events & PL_IO_READ);
    assert_int_equal(c.nread, 0);

    assert_int_equal(pl_loop_del_fd(loop, sv[0]), 0);
    assert_int_equal(pl_loop_del_fd(loop, sv[0]), -ENOENT);
    assert_int_equal(pl_loop_mod_fd(loop, sv[0], PL_IO_READ), -ENOENT);
    assert_int_equal(pl_loop_add_fd(loop, -1, PL_IO_READ, read_and_stop_cb, &c), -EBADF);
    assert_int_equal(pl_loop_del_fd(loop, 100000), -ENOENT);
    pl_timer_stop(loop, &wd);
    close(sv[0]);
    pl_loop_destroy(loop);
}

/* Two fds readable in the same epoll batch; whichever callback runs first deletes and
 * closes the other, then puts a fresh (idle) socket on the same fd number. The stale
 * event of the old registration must reach neither the old nor the new callback. */
typedef struct batch_ctx {
    int a, b;          /* the two watched fds */
    int peer_a, peer_b;
    int first_calls;
    int new_calls;
    int new_peer;
    int readded;       /* the fd number that got a new socket */
} batch_ctx_t;

static void new_fd_cb(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    batch_ctx_t *c = arg;
    char buf[8];
    PL_UNUSED(events);
    c->new_calls++;
    (void)!read(fd, buf, sizeof(buf));
    pl_loop_stop(loop);
}

static void kill_other_cb(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    batch_ctx_t *c = arg;
    int sv[2];
    PL_UNUSED(events);
    c->first_calls++;
    int other = fd == c->a ? c->b : c->a;
    assert_int_equal(pl_loop_del_fd(loop, other), 0);
    close(other);
    make_pair(sv);
    if (sv[0] != other) {   /* the kernel usually reuses the number; force it if not */
        assert_int_equal(dup3(sv[0], other, O_CLOEXEC), other);
        close(sv[0]);
    }
    c->new_peer = sv[1];
    c->readded = other;
    assert_int_equal(pl_loop_add_fd(loop, other, PL_IO_READ, new_fd_cb, c), 0);
    assert_int_equal(pl_loop_del_fd(loop, fd), 0);   /* and its own fd */
    pl_loop_stop(loop);
}

static void test_fd_delete_in_batch(void **state)
{
    PL_UNUSED(state);
    pl_loop_t *loop;
    int p1[2], p2[2];
    batch_ctx_t c = { 0 };
    pl_timer_t wd = { 0 };
    assert_int_equal(pl_loop_create("t-batch", &loop), 0);
    pl_timer_start(loop, &wd, 5000, 0, watchdog_cb, NULL);
    make_pair(p1);
    make_pair(p2);
    c.a = p1[0];
    c.b = p2[0];
    assert_int_equal(write(p1[1], "x", 1), 1);
    assert_int_equal(write(p2[1], "y", 1), 1);
    assert_int_equal(pl_loop_add_fd(loop, c.a, PL_IO_READ, kill_other_cb, &c), 0);
    assert_int_equal(pl_loop_add_fd(loop, c.b, PL_IO_READ, kill_other_cb, &c), 0);
    assert_int_equal(pl_loop_run(loop), 0);
    assert_int_equal(c.first_calls, 1);
    assert_int_equal(c.new_calls, 0);

    /* The re-added fd works normally once it really is readable. */
    assert_int_equal(write(c.new_peer, "z", 1), 1);
    assert_int_equal(pl_loop_run(loop), 0);
    assert_int_equal(c.first_calls, 1);
    assert_int_equal(c.new_calls, 1);

    assert_int_equal(pl_loop_del_fd(loop, c.readded), 0);
    assert_int_equal(pl_loop_del_fd(loop, c.readded == c.a ? c.b : c.a), -ENOENT);
    close(c.a);
    close(c.b);
    close(p1[1]);
    close(p2[1]);
    close(c.new_peer);
    pl_timer_stop(loop, &wd);
    pl_loop_destroy(loop);
}

/* ---- timers: heap against a reference model ------------------------------------- */

#define NT 1500

typedef struct model {
    pl_timer_t t[NT];
    bool armed[NT];
    uint64_t due[NT];
    uint64_t order[NT];
    uint64_t next_order;
    int fired[NT * 4];
    size_t nfired;
} model_t;

static void model_cb(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    model_t *m = arg;
    PL_UNUSED(loop);
    assert_true(m->nfired < PL_ARRAY_LEN(m->fired));
    m->fired[m->nfired++] = (int)(t - m->t);
}

static void model_start(pl_loop_t *loop, model_t *m, int i, uint64_t delay)
{
    pl_timer_start(loop, &m->t[i], delay, 0, model_cb, m);
    m->armed[i] = true;
    m->due[i] = pl_loop_now_ms(loop) + delay;
    m->order[i] = m->next_order++;
}

static int model_cmp_idx(const model_t *m, int a, int b)
{
    if (m->due[a] != m->due[b])
        return m->due[a] < m->due[b] ? -1 : 1;
    return m->order[a] < m->order[b] ? -1 : 1;
}

/* Expected firing for now: armed timers due by now, ordered by (due, start order). */
static size_t model_expect(model_t *m, uint64_t now, int *out)
{
    size_t n = 0;
    for (int i = 0; i < NT; i++) {
        if (!m->armed[i] || m->due[i] > now)
            continue;
        size_t j = n++;
        while (j > 0 && model_cmp_idx(m, i, out[j - 1]) < 0) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = i;
        m->armed[i] = false;
    }
    return n;
}

static void test_timer_order_random(void **state)
{
    PL_UNUSED(state);
    pl_loop_t *loop;
    static model_t m;
    static int expect[NT];
    memset(&m, 0, sizeof(m));
    assert_int_equal(pl_loop_create("t-timers", &loop), 0);
    uint64_t now = 1000;
    pl_loop_set_fake_now_ms(loop, now);
    assert_int_equal(pl_loop_now_ms(loop), now);
    for (int i = 0; i < NT; i++)
        model_start(loop, &m, i, rng() % 3000);   /* many share a due time */
    size_t total = 0;
    for (int step = 0; step < 400; step++) {
        for (int op = 0; op < 20; op++) {
            int i = (int)(rng() % NT);
            if (rng() % 2) {
                pl_timer_stop(loop, &m.t[i]);   /* also a no-op on unarmed timers */
                m.armed[i] = false;
            } else {
                model_start(loop, &m, i, rng() % 500);
            }
        }
        now += rng() % 25;
        pl_loop_set_fake_now_ms(loop, now);
        m.nfired = 0;
        size_t fired = pl_loop_run_timers(loop);
        size_t n = model_expect(&m, now, expect);
        assert_int_equal(fired, n);
        assert_int_equal(m.nfired, n);
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(m.fired[k], expect[k]);
            assert_false(pl_timer_is_armed(&m.t[expect[k]]));
        }
        total += n;
    }
    for (int i = 0; i < NT; i++)
        assert_int_equal(pl_timer_is_armed(&m.t[i]), m.armed[i]);
    assert_true(total > NT);   /* the test really exercised the heap */
    for (int i = 0; i < NT; i++)
        pl_timer_stop(loop, &m.t[i]);
    assert_int_equal(pl_loop_run_timers(loop), 0);
    pl_loop_destroy(loop);
}

/* ---- timers: repeat, self-restart, stop from callbacks --------------------------- */

typedef struct count_ctx {
    int calls;
    pl_timer_t *other;      /* stopped by the callback when set */
    uint64_t restart_delay; /* restarts itself when non-zero or restart is set */
    bool restart;
    bool stop_self;
} count_ctx_t;

static void count_cb(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    count_ctx_t *c = arg;
    c->calls++;
    if (c->other)
        pl_timer_stop(loop, c->other);
    if (c->restart)
        pl_timer_start(loop, t, c->restart_delay, 0, count_cb, c);
    if (c->stop_self)
        pl_timer_stop(loop, t);
}

static void test_timer_repeat(void **state)
{
    PL_UNUSED(state);
    pl_loop_t *loop;
    pl_timer_t t;
    count_ctx_t c = { 0 };
    assert_int_equal(pl_loop_create("t-repeat", &loop), 0);
    pl_loop_set_fake_now_ms(loop, 10000);
    pl_timer_init(&t);
    assert_false(pl_timer_is_armed(&t));
    pl_timer_stop(loop, &t);   /* unarmed: no-op */
    pl_timer_start(loop, &t, 10, 10, count_cb, &c);
    assert_true(pl_timer_is_armed(&t));

    pl_loop_set_fake_now_ms(loop, 10009);
    assert_int_equal(pl_loop_run_timers(loop), 0);
    pl_loop_set_fake_now_ms(loop, 10010);
    assert_int_equal(pl_loop_run_timers(loop), 1);
    assert_true(pl_timer_is_armed(&t));
    /* Late by 5 ms: fires once, and the next due time keeps the phase (10030). */
    pl_loop_set_fake_now_ms(loop, 10025);
    assert_int_equal(pl_loop_run_timers(loop), 1);
    pl_loop_set_fake_now_ms(loop, 10029);
    assert_int_equal(pl_loop_run_timers(loop), 0);
    pl_loop_set_fake_now_ms(loop, 10030);
    assert_int_equal(pl_loop_run_timers(loop), 1);
    /* A stall of 7 periods: one firing, not a burst of 7; phase still kept. */
    pl_loop_set_fake_now_ms(loop, 10100);
    assert_int_equal(pl_loop_run_timers(loop), 1);
    assert_int_equal(pl_loop_run_timers(loop), 0);
    pl_loop_set_fake_now_ms(loop, 10109);
    assert_int_equal(pl_loop_run_timers(loop), 0);
    pl_loop_set_fake_now_ms(loop, 10110);
    assert_int_equal(pl_loop_run_timers(loop), 1);
    assert_int_equal(c.calls, 5);

    /* A repeat timer that stops itself from its callback stays stopped. */
    c.stop_self = true;
    pl_loop_set_fake_now_ms(loop, 10120);
    assert_int_equal(pl_loop_run_timers(loop), 1);
    assert_false(pl_timer_is_armed(&t));
    pl_loop_set_fake_now_ms(loop, 10500);
    assert_int_equal(pl_loop_run_timers(loop), 0);
    assert_int_equal(c.calls, 6);
    pl_loop_destroy(loop);
}

static void test_timer_restart_from_callback(void **state)
{
    PL_UNUSED(state);
    pl_loop_t *loop;
    pl_timer_t t1 = { 0 }, t2 = { 0 }, t3 = { 0 };
    count_ctx_t c1 = { .restart = true, .restart_delay = 0 };
    count_ctx_t c2 = { 0 }, c3 = { 0 };
    assert_int_equal(pl_loop_create("t-restart", &loop), 0);
    pl_loop_set_fake_now_ms(loop, 500);

    /* Restarting itself with delay 0 fires once per pass, never spins. */
    pl_timer_start(loop, &t1, 0, 0, count_cb, &c1);
    assert_int_equal(pl_loop_run_timers(loop), 1);
    assert_int_equal(pl_loop_run_timers(loop), 1);
    assert_int_equal(c1.calls, 2);
    assert_true(pl_timer_is_armed(&t1));

    /* Restarting itself later moves it; restarting an armed timer re-arms it. */
    c1.restart_delay = 50;
    assert_int_equal(pl_loop_run_timers(loop), 1);
    pl_loop_set_fake_now_ms(loop, 549);
    assert_int_equal(pl_loop_run_timers(loop), 0);
    pl_timer_start(loop, &t1, 100, 0, count_cb, &c1);   /* was due at 550 */
    pl_loop_set_fake_now_ms(loop, 600);
    assert_int_equal(pl_loop_run_timers(loop), 0);
    pl_loop_set_fake_now_ms(loop, 649);
    assert_int_equal(pl_loop_run_timers(loop), 1);
    c1.restart = false;
    pl_timer_stop(loop, &t1);

    /* t2 and t3 due together; t2 (started first) fires first and stops t3. */
    c2.other = &t3;
    pl_timer_start(loop, &t2, 10, 0, count_cb, &c2);
    pl_timer_start(loop, &t3, 10, 0, count_cb, &c3);
    pl_loop_set_fake_now_ms(loop, 700);
    assert_int_equal(pl_loop_run_timers(loop), 1);
    assert_int_equal(c2.calls, 1);
    assert_int_equal(c3.calls, 0);
    assert_false(pl_timer_is_armed(&t3));
    pl_loop_destroy(loop);
}

/* The epoll timeout follows the nearest timer on the real clock. */
static void test_timer_real_clock(void **state)
{
    PL_UNUSED(state);
    pl_loop_t *loop;
    pl_timer_t t = { 0 }, wd = { 0 };
    assert_int_equal(pl_loop_create("t-real", &loop), 0);
    pl_timer_start(loop, &wd, 5000, 0, watchdog_cb, NULL);
    uint64_t start = pl_now_mono_ms();
    pl_timer_start(loop, &t, 30, 0, stop_cb, NULL);
    assert_int_equal(pl_loop_run(loop), 0);
    uint64_t elapsed = pl_now_mono_ms() - start;
    assert_true(elapsed >= 29);
    assert_true(elapsed < 2000);
    assert_true(pl_loop_now_ms(loop) >= start + 30);
    pl_timer_stop(loop, &wd);
    pl_loop_destroy(loop);
}

/* ---- mailbox ---------------------------------------------------------------------- */

#define PRODUCERS 4
#define PER_PRODUCER 10000

typedef struct tmsg {
    pl_msg_t msg;
    int producer;
    int seq;
} tmsg_t;

typedef struct mbox_ctx {
    pl_loop_t *loop;
    int next_seq[PRODUCERS];
    int delivered;
    int bad_order;
    atomic_int producers_done;
    bool hold_first;        /* first message waits until every producer is done */
    bool held;
} mbox_ctx_t;

static mbox_ctx_t *g_mbox;

static void tmsg_fn(pl_loop_t *loop, pl_msg_t *msg)
{
    tmsg_t *m = PL_CONTAINER_OF(msg, tmsg_t, msg);
    mbox_ctx_t *c = g_mbox;
    if (c->hold_first && !c->held) {
        c->held = true;
        while (atomic_load(&c->producers_done) < PRODUCERS)
            usleep(1000);
    }
    if (m->seq != c->next_seq[m->producer])
        c->bad_order++;
    c->next_seq[m->producer] = m->seq + 1;
    free(m);
    if (++c->delivered == PRODUCERS * PER_PRODUCER)
        pl_loop_stop(loop);
}

typedef struct producer_arg {
    mbox_ctx_t *ctx;
    int id;
} producer_arg_t;

static void *producer_main(void *p)
{
    producer_arg_t *a = p;
    for (int i = 0; i < PER_PRODUCER; i++) {
        tmsg_t *m = malloc(sizeof(*m));
        if (!m)
            abort();
        m->msg.fn = tmsg_fn;
        m->producer = a->id;
        m->seq = i;
        pl_loop_post(a->ctx->loop, &m->msg);
        if (!a->ctx->hold_first && i % 64 == 0)
            sched_yield();   /* interleave posting with draining: races empty/non-empty */
    }
    atomic_fetch_add(&a->ctx->producers_done, 1);
    return NULL;
}

static void run_mailbox_stress(bool hold_first, pl_loop_stats_t *st)
{
    static mbox_ctx_t c;
    memset(&c, 0, sizeof(c));
    g_mbox = &c;
    c.hold_first = hold_first;
    pl_timer_t wd = { 0 };
    pthread_t th[PRODUCERS];
    producer_arg_t args[PRODUCERS];
    assert_int_equal(pl_loop_create("t-mailbox", &c.loop), 0);
    pl_timer_start(c.loop, &wd, 30000, 0, watchdog_cb, NULL);
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (producer_arg_t){ .ctx = &c, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, producer_main, &args[i]), 0);
    }
    assert_int_equal(pl_loop_run(c.loop), 0);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(c.delivered, PRODUCERS * PER_PRODUCER);
    assert_int_equal(c.bad_order, 0);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(c.next_seq[i], PER_PRODUCER);
    pl_loop_get_stats(c.loop, st);
    assert_int_equal(st->msgs_delivered, PRODUCERS * PER_PRODUCER);
    assert_true(st->wakeups_posted >= 1);
    assert_true(st->wakeups_posted <= PRODUCERS * PER_PRODUCER);
    pl_timer_stop(c.loop, &wd);
    pl_loop_destroy(c.loop);
}

/* 4 threads x 10000 messages, drained concurrently: each delivered exactly once, FIFO
 * per producer. */
static void test_mailbox_threads(void **state)
{
    PL_UNUSED(state);
    pl_loop_stats_t st;
    run_mailbox_stress(false, &st);
    print_message("concurrent: %llu messages, %llu wake-ups, %llu iterations\n",
                  (unsigned long long)st.msgs_delivered,
                  (unsigned long long)st.wakeups_posted, (unsigned long long)st.iterations);
}

/* The loop is busy in its first message while the producers post everything: posters
 * find the inbox non-empty and do not write the eventfd. */
static void test_mailbox_busy_few_wakeups(void **state)
{
    PL_UNUSED(state);
    pl_loop_stats_t st;
    run_mailbox_stress(true, &st);
    print_message("busy: %llu messages, %llu wake-ups\n",
                  (unsigned long long)st.msgs_delivered,
                  (unsigned long long)st.wakeups_posted);
    assert_true(st.wakeups_posted <= 1 + PRODUCERS);
}

static void count_fn(pl_loop_t *loop, void *arg)
{
    PL_UNUSED(loop);
    (*(int *)arg)++;
}

static void stop_fn(pl_loop_t *loop, void *arg)
{
    PL_UNUSED(arg);
    pl_loop_stop(loop);
}

/* Posts before run: one wake-up for the whole batch, delivered in order on run. */
static void test_mailbox_single_thread(void **state)
{
    PL_UNUSED(state);
    pl_loop_t *loop;
    pl_loop_stats_t st;
    int n = 0;
    assert_int_equal(pl_loop_create("t-post", &loop), 0);
    for (int i = 0; i < 1000; i++)
        pl_loop_post_fn(loop, count_fn, &n);
    pl_loop_post_fn(loop, stop_fn, NULL);
    pl_loop_get_stats(loop, &st);
    assert_int_equal(st.wakeups_posted, 1);
    assert_int_equal(st.msgs_delivered, 0);
    assert_int_equal(pl_loop_run(loop), 0);
    assert_int_equal(n, 1000);
    pl_loop_get_stats(loop, &st);
    assert_int_equal(st.msgs_delivered, 1001);
    assert_false(pl_loop_is_stopping(loop));   /* the request was consumed */

    /* A stop requested before run makes run return; the loop runs again afterwards. */
    pl_loop_stop(loop);
    assert_true(pl_loop_is_stopping(loop));
    assert_int_equal(pl_loop_run(loop), 0);
    pl_loop_post_fn(loop, count_fn, &n);
    pl_loop_post_fn(loop, stop_fn, NULL);
    assert_int_equal(pl_loop_run(loop), 0);
    assert_int_equal(n, 1001);
    pl_loop_destroy(loop);
}

/* ---- threads: stop from elsewhere, home thread, thread name -------------------- */

static void *stopper_main(void *p)
{
    pl_loop_t *loop = p;
    usleep(30000);
    /* Not the home thread while the loop runs on the main thread. */
    if (pl_loop_on_home_thread(loop))
        return (void *)1;
    pl_loop_stop(loop);
    return NULL;
}

static void test_stop_from_other_thread(void **state)
{
    PL_UNUSED(state);
    pl_loop_t *loop;
    pl_timer_t wd = { 0 };
    pthread_t th;
    void *ret = (void *)2;
    assert_int_equal(pl_loop_create("t-stop", &loop), 0);
    assert_true(pl_loop_on_home_thread(loop));
    pl_timer_start(loop, &wd, 5000, 0, watchdog_cb, NULL);
    assert_int_equal(pthread_create(&th, NULL, stopper_main, loop), 0);
    assert_int_equal(pl_loop_run(loop), 0);   /* nothing but the stop can end it */
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_null(ret);
    assert_true(pl_loop_on_home_thread(loop));
    pl_timer_stop(loop, &wd);
    pl_loop_destroy(loop);
}

typedef struct thread_ctx {
    pl_loop_t *loop;
    char name[32];
    bool on_home;
    int rc;
} thread_ctx_t;

static void probe_fn(pl_loop_t *loop, void *arg)
{
    thread_ctx_t *c = arg;
    c->on_home = pl_loop_on_home_thread(loop);
    pthread_getname_np(pthread_self(), c->name, sizeof(c->name));
    pl_loop_stop(loop);
}

static void *loop_thread_main(void *p)
{
    thread_ctx_t *c = p;
    c->rc = pl_loop_run(c->loop);
    return NULL;
}

static void test_loop_on_own_thread(void **state)
{
    PL_UNUSED(state);
    thread_ctx_t c = { .rc = -1 };
    pthread_t th;
    assert_int_equal(pl_loop_create("relay-0123456789abcdef", &c.loop), 0);
    assert_string_equal(pl_loop_name(c.loop), "relay-0123456789abcdef");
    pl_loop_post_fn(c.loop, probe_fn, &c);
    assert_int_equal(pthread_create(&th, NULL, loop_thread_main, &c), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(c.rc, 0);
    assert_true(c.on_home);
    assert_string_equal(c.name, "relay-012345678");   /* 15 characters kept */
    assert_false(pl_loop_on_home_thread(c.loop));   /* home is the joined thread */
    pl_loop_destroy(c.loop);
}

/* ---- destroy with queued messages ------------------------------------------------ */

typedef struct owned {
    pl_msg_t msg;
    int *freed;
    bool *saw_stopping;
} owned_t;

static void owned_fn(pl_loop_t *loop, pl_msg_t *msg)
{
    owned_t *o = PL_CONTAINER_OF(msg, owned_t, msg);
    if (!pl_loop_is_stopping(loop))
        *o->saw_stopping = false;
    (*o->freed)++;
    free(o);
}

typedef struct heap_arg {
    int *freed;
    char payload[40];
} heap_arg_t;

static void free_arg_fn(pl_loop_t *loop, void *arg)
{
    heap_arg_t *a = arg;
    if (pl_loop_is_stopping(loop))
        (*a->freed)++;
    free(a);
}

static void test_destroy_delivers_queued(void **state)
{
    PL_UNUSED(state);
    pl_loop_t *loop;
    int freed = 0, freed_fn = 0;
    bool saw_stopping = true;
    assert_int_equal(pl_loop_create("t-destroy", &loop), 0);
    for (int i = 0; i < 100; i++) {
        owned_t *o = malloc(sizeof(*o));
        assert_non_null(o);
        o->msg.fn = owned_fn;
        o->freed = &freed;
        o->saw_stopping = &saw_stopping;
        pl_loop_post(loop, &o->msg);
        heap_arg_t *a = malloc(sizeof(*a));
        assert_non_null(a);
        a->freed = &freed_fn;
        pl_loop_post_fn(loop, free_arg_fn, a);
    }
    assert_false(pl_loop_is_stopping(loop));
    pl_loop_destroy(loop);   /* ASan's leak check proves the messages were freed */
    assert_int_equal(freed, 100);
    assert_int_equal(freed_fn, 100);
    assert_true(saw_stopping);
    pl_loop_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_read_write_hup),
        cmocka_unit_test(test_fd_delete_in_batch),
        cmocka_unit_test(test_timer_order_random),
        cmocka_unit_test(test_timer_repeat),
        cmocka_unit_test(test_timer_restart_from_callback),
        cmocka_unit_test(test_timer_real_clock),
        cmocka_unit_test(test_mailbox_threads),
        cmocka_unit_test(test_mailbox_busy_few_wakeups),
        cmocka_unit_test(test_mailbox_single_thread),
        cmocka_unit_test(test_stop_from_other_thread),
        cmocka_unit_test(test_loop_on_own_thread),
        cmocka_unit_test(test_destroy_delivers_queued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
