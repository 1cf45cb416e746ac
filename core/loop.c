/* loop.c: the core event loop: one epoll set (level-triggered), a binary min-heap of
 * timers and a multi-producer single-consumer mailbox woken through an eventfd.
 *
 * What it deliberately does not do: no buffering, no edge-triggered mode, no signal
 * handling, no logging (failures are returned; invariants are PL_ASSERTs).
 *
 * Threading: everything runs on the loop's home thread (recorded by pl_loop_run),
 * except pl_loop_post/pl_loop_post_fn/pl_loop_stop, which touch only atomics and the
 * eventfd. The epoll fd, the watcher table and the timer heap are home-thread only. */
#include "core/pl_loop.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define PL_LOOP_MAX_EVENTS 128

/* One slot per fd number. gen changes on every add so that an epoll event queued for
 * an earlier registration of the same fd number (deleted, closed, reopened and re-added
 * by a callback earlier in the same batch) is recognised as stale and dropped. */
typedef struct pl_watcher {
    pl_io_cb cb;
    void *arg;
    uint32_t events;
    uint32_t gen;
    bool active;
} pl_watcher_t;

struct pl_loop {
    char *name;
    int epfd;
    int evfd;

    pl_watcher_t *watchers;         /* indexed by fd */
    size_t watchers_cap;

    pl_timer_t **heap;              /* min-heap on (due_ms, seq) */
    size_t heap_len;
    size_t heap_cap;
    uint64_t timer_seq;

    uint64_t now_ms;
    uint64_t fake_now_ms;           /* 0 = real clock */

    /* Mailbox: a Treiber stack. See pl_loop_post for why lock-free. */
    _Atomic(pl_msg_t *) inbox;
    atomic_uint_least64_t wakeups_posted;
    atomic_bool stopping;
    bool destroying;
    bool running;                   /* inside pl_loop_run */

    pthread_t home;
    atomic_bool home_set;

    uint64_t iterations;
    uint64_t msgs_delivered;
};

/* ---- clock ---------------------------------------------------------------------- */

static void update_time(pl_loop_t *loop)
{
    loop->now_ms = loop->fake_now_ms ? loop->fake_now_ms : pl_now_mono_ms();
}

uint64_t pl_loop_now_ms(const pl_loop_t *loop)
{
    return loop->now_ms;
}

void pl_loop_set_fake_now_ms(pl_loop_t *loop, uint64_t now_ms)
{
    loop->fake_now_ms = now_ms;
    update_time(loop);
}

/* ---- identity and home thread ------------------------------------------------- */

const char *pl_loop_name(const pl_loop_t *loop)
{
    return loop->name;
}

bool pl_loop_on_home_thread(const pl_loop_t *loop)
{
    /* home is written once before the release store of home_set. */
    if (!atomic_load_explicit(&loop->home_set, memory_order_acquire))
        return true;
    return pthread_equal(loop->home, pthread_self()) != 0;
}

bool pl_loop_is_stopping(const pl_loop_t *loop)
{
    return atomic_load_explicit(&loop->stopping, memory_order_acquire) || loop->destroying;
}

/* ---- fd watchers ---------------------------------------------------------------- */

static uint32_t to_epoll(uint32_t events)
{
    return ((events & PL_IO_READ) ? (uint32_t)EPOLLIN : 0u) |
           ((events & PL_IO_WRITE) ? (uint32_t)EPOLLOUT : 0u);
}

static void watchers_reserve(pl_loop_t *loop, size_t fd)
{
    if (fd < loop->watchers_cap)
        return;
    size_t cap = loop->watchers_cap ? loop->watchers_cap : 64;
    while (cap <= fd)
        cap *= 2;
    loop->watchers = pl_xrealloc(loop->watchers, cap * sizeof(*loop->watchers));
    memset(loop->watchers + loop->watchers_cap, 0,
           (cap - loop->watchers_cap) * sizeof(*loop->watchers));
    loop->watchers_cap = cap;
}

static pl_watcher_t *watcher_get(pl_loop_t *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->watchers_cap || !loop->watchers[fd].active)
        return NULL;
    return &loop->watchers[fd];
}

int pl_loop_add_fd(pl_loop_t *loop, int fd, uint32_t events, pl_io_cb cb, void *arg)
{
    PL_ASSERT(pl_loop_on_home_thread(loop));
    PL_ASSERT(cb != NULL);
    if (fd < 0)
        return -EBADF;
    if (watcher_get(loop, fd))
        return -EEXIST;
    watchers_reserve(loop, (size_t)fd);
    pl_watcher_t *w = &loop->watchers[fd];
    uint32_t gen = w->gen + 1;
    struct epoll_event ev = { .events = to_epoll(events),
                              .data.u64 = ((uint64_t)gen << 32) | (uint32_t)fd };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    *w = (pl_watcher_t){ .cb = cb, .arg = arg, .events = events, .gen = gen,
                         .active = true };
    return 0;
}

int pl_loop_mod_fd(pl_loop_t *loop, int fd, uint32_t events)
{
    PL_ASSERT(pl_loop_on_home_thread(loop));
    pl_watcher_t *w = watcher_get(loop, fd);
    if (!w)
        return -ENOENT;
    struct epoll_event ev = { .events = to_epoll(events),
                              .data.u64 = ((uint64_t)w->gen << 32) | (uint32_t)fd };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
        return -errno;
    w->events = events;
    return 0;
}

int pl_loop_del_fd(pl_loop_t *loop, int fd)
{
    PL_ASSERT(pl_loop_on_home_thread(loop));
    pl_watcher_t *w = watcher_get(loop, fd);
    if (!w)
        return -ENOENT;
    /* The slot is cleared whatever epoll says: an fd closed before del_fd has already
     * left the epoll set (EBADF/ENOENT), and no callback may run for it afterwards. */
    w->active = false;
    w->cb = NULL;
    w->arg = NULL;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != EBADF &&
        errno != ENOENT)
        return -errno;
    return 0;
}

static void dispatch_io(pl_loop_t *loop, const struct epoll_event *evs, int n)
{
    for (int i = 0; i < n; i++) {
        int fd = (int)(uint32_t)evs[i].data.u64;
        uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
        pl_watcher_t *w = watcher_get(loop, fd);
        /* Deleted earlier in this batch, or deleted and re-added (fd number reuse). */
        if (!w || w->gen != gen)
            continue;
        uint32_t e = evs[i].events, mask = 0;
        if (e & (EPOLLIN | EPOLLHUP | EPOLLERR))
            mask |= PL_IO_READ;
        if (e & EPOLLOUT)
            mask |= PL_IO_WRITE;
        /* A callback earlier in the batch may have narrowed the interest with mod_fd;
         * hang-up and error still surface as READ. */
        if (!(e & (EPOLLHUP | EPOLLERR)))
            mask &= w->events;
        if (mask)
            w->cb(loop, fd, mask, w->arg);
    }
}

/* ---- timers ----------------------------------------------------------------------- */

void pl_timer_init(pl_timer_t *t)
{
    memset(t, 0, sizeof(*t));
}

bool pl_timer_is_armed(const pl_timer_t *t)
{
    return t->heap_index != 0;
}

static bool timer_less(const pl_timer_t *a, const pl_timer_t *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_set(pl_loop_t *loop, size_t i, pl_timer_t *t)
{
    loop->heap[i] = t;
    t->heap_index = i + 1;
}

static void heap_sift_up(pl_loop_t *loop, size_t i)
{
    pl_timer_t *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_less(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_sift_down(pl_loop_t *loop, size_t i)
{
    pl_timer_t *t = loop->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const pl_timer_t *best = t;
        if (l < loop->heap_len && timer_less(loop->heap[l], best)) {
            m = l;
            best = loop->heap[l];
        }
        if (r < loop->heap_len && timer_less(loop->heap[r], best))
            m = r;
        if (m == i)
            break;
        heap_set(loop, i, loop->heap[m]);
        i = m;
    }
    heap_set(loop, i, t);
}

static void heap_insert(pl_loop_t *loop, pl_timer_t *t)
{
    if (loop->heap_len == loop->heap_cap) {
        loop->heap_cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        loop->heap = pl_xrealloc(loop->heap, loop->heap_cap * sizeof(*loop->heap));
    }
    heap_set(loop, loop->heap_len++, t);
    heap_sift_up(loop, loop->heap_len - 1);
}

static void heap_remove(pl_loop_t *loop, pl_timer_t *t)
{
    size_t i = t->heap_index - 1;
    PL_ASSERT(i < loop->heap_len && loop->heap[i] == t);   /* armed on this loop */
    t->heap_index = 0;
    pl_timer_t *last = loop->heap[--loop->heap_len];
    if (last == t)
        return;
    heap_set(loop, i, last);
    if (i > 0 && timer_less(last, loop->heap[(i - 1) / 2]))
        heap_sift_up(loop, i);
    else
        heap_sift_down(loop, i);
}

void pl_timer_start(pl_loop_t *loop, pl_timer_t *t, uint64_t delay_ms, uint64_t repeat_ms,
                    pl_timer_cb cb, void *arg)
{
    PL_ASSERT(pl_loop_on_home_thread(loop));
    PL_ASSERT(cb != NULL);
    if (t->heap_index)
        heap_remove(loop, t);
    t->due_ms = delay_ms > UINT64_MAX - loop->now_ms ? UINT64_MAX : loop->now_ms + delay_ms;
    t->repeat_ms = repeat_ms;
    t->seq = ++loop->timer_seq;
    t->cb = cb;
    t->arg = arg;
    heap_insert(loop, t);
}

void pl_timer_stop(pl_loop_t *loop, pl_timer_t *t)
{
    PL_ASSERT(pl_loop_on_home_thread(loop));
    if (t->heap_index)
        heap_remove(loop, t);
}

/* Next due time of a repeat timer: the first point of its original schedule after now.
 * Keeping the phase (due + k*repeat) avoids drift; skipping the missed points instead
 * of replaying them avoids a burst after a stall. */
static uint64_t next_due(const pl_timer_t *t, uint64_t now)
{
    uint64_t k = now >= t->due_ms ? (now - t->due_ms) / t->repeat_ms + 1 : 1;
    if (k > (UINT64_MAX - t->due_ms) / t->repeat_ms)
        return UINT64_MAX;
    return t->due_ms + k * t->repeat_ms;
}

/* Fires the timers due at loop->now_ms. A timer (re)started by a callback during this
 * pass has seq >= first_new and due >= now, so it sorts after every timer that was
 * already due and ends the pass: each timer fires at most once per pass, and a
 * callback restarting itself with delay 0 cannot spin the loop. */
static size_t fire_due(pl_loop_t *loop)
{
    uint64_t first_new = loop->timer_seq + 1;
    size_t fired = 0;
    while (loop->heap_len > 0) {
        pl_timer_t *t = loop->heap[0];
        if (t->due_ms > loop->now_ms || t->seq >= first_new)
            break;
        heap_remove(loop, t);
        if (t->repeat_ms) {
            t->due_ms = next_due(t, loop->now_ms);
            heap_insert(loop, t);   /* keeps its seq: still "old" for this pass */
        }
        fired++;
        t->cb(loop, t, t->arg);
    }
    return fired;
}

size_t pl_loop_run_timers(pl_loop_t *loop)
{
    PL_ASSERT(pl_loop_on_home_thread(loop));
    update_time(loop);
    return fire_due(loop);
}

static int next_timeout_ms(const pl_loop_t *loop)
{
    if (atomic_load_explicit(&loop->stopping, memory_order_acquire))
        return 0;
    if (loop->heap_len == 0)
        return -1;
    uint64_t due = loop->heap[0]->due_ms;
    if (due <= loop->now_ms)
        return 0;
    return (int)PL_MIN(due - loop->now_ms, (uint64_t)INT_MAX);
}

/* ---- mailbox ---------------------------------------------------------------------- */

static void wake(pl_loop_t *loop)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated, i.e. a wake-up is already pending. */
    ssize_t rc = write(loop->evfd, &one, sizeof(one));
    PL_UNUSED(rc);
}

/* Lock-free (Treiber stack) rather than a mutex-protected list: posters include packet
 * threads that must never wait behind a preempted lock holder, and a push is one CAS.
 * The consumer takes the whole stack with one exchange, so there is no pop and hence no
 * ABA problem; reversing the taken chain restores FIFO order. The CAS that succeeds
 * against NULL tells the poster the inbox was empty, which is exactly when it must
 * write the eventfd. */
void pl_loop_post(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_ASSERT(msg != NULL && msg->fn != NULL);
    pl_msg_t *head = atomic_load_explicit(&loop->inbox, memory_order_relaxed);
    do {
        msg->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&loop->inbox, &head, msg,
                                                    memory_order_release,
                                                    memory_order_relaxed));
    if (head == NULL) {
        atomic_fetch_add_explicit(&loop->wakeups_posted, 1, memory_order_relaxed);
        wake(loop);
    }
}

typedef struct pl_fn_msg {
    pl_msg_t msg;
    void (*fn)(pl_loop_t *loop, void *arg);
    void *arg;
} pl_fn_msg_t;

static void fn_msg_run(pl_loop_t *loop, pl_msg_t *msg)
{
    pl_fn_msg_t *m = PL_CONTAINER_OF(msg, pl_fn_msg_t, msg);
    m->fn(loop, m->arg);
    free(m);
}

void pl_loop_post_fn(pl_loop_t *loop, void (*fn)(pl_loop_t *loop, void *arg), void *arg)
{
    PL_ASSERT(fn != NULL);
    pl_fn_msg_t *m = pl_xmalloc(sizeof(*m));
    m->msg.next = NULL;
    m->msg.fn = fn_msg_run;
    m->fn = fn;
    m->arg = arg;
    pl_loop_post(loop, &m->msg);
}

/* Delivers everything posted so far in FIFO order. Messages posted by these callbacks
 * land in the (now empty) inbox and wake the next iteration. Returns the count. */
static size_t drain_inbox(pl_loop_t *loop)
{
    pl_msg_t *stack = atomic_exchange_explicit(&loop->inbox, NULL, memory_order_acquire);
    pl_msg_t *fifo = NULL;
    while (stack) {
        pl_msg_t *next = stack->next;
        stack->next = fifo;
        fifo = stack;
        stack = next;
    }
    size_t n = 0;
    while (fifo) {
        pl_msg_t *next = fifo->next;   /* fn owns and may free the message */
        fifo->next = NULL;
        loop->msgs_delivered++;
        n++;
        fifo->fn(loop, fifo);
        fifo = next;
    }
    return n;
}

static void on_mailbox(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(events);
    PL_UNUSED(arg);
    /* Read the eventfd before taking the inbox: a poster that finds the inbox empty
     * after our exchange writes the eventfd after this read, so its wake-up is kept. */
    uint64_t count;
    ssize_t rc = read(fd, &count, sizeof(count));
    PL_UNUSED(rc);
    drain_inbox(loop);
}

void pl_loop_stop(pl_loop_t *loop)
{
    atomic_store_explicit(&loop->stopping, true, memory_order_release);
    wake(loop);
}

/* ---- lifecycle -------------------------------------------------------------------- */

int pl_loop_create(const char *name, pl_loop_t **out)
{
    int rc;
    pl_loop_t *loop = pl_xcalloc(1, sizeof(*loop));
    loop->name = pl_xstrdup(name ? name : "loop");
    atomic_init(&loop->inbox, NULL);
    atomic_init(&loop->wakeups_posted, 0);
    atomic_init(&loop->stopping, false);
    atomic_init(&loop->home_set, false);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        rc = -errno;
        goto fail_epoll;
    }
    loop->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->evfd < 0) {
        rc = -errno;
        goto fail_eventfd;
    }
    update_time(loop);
    rc = pl_loop_add_fd(loop, loop->evfd, PL_IO_READ, on_mailbox, NULL);
    if (rc < 0)
        goto fail_add;
    *out = loop;
    return 0;

fail_add:
    close(loop->evfd);
fail_eventfd:
    close(loop->epfd);
fail_epoll:
    free(loop->watchers);
    free(loop->name);
    free(loop);
    *out = NULL;
    return rc;
}

void pl_loop_destroy(pl_loop_t *loop)
{
    if (!loop)
        return;
    PL_ASSERT(!loop->running);
    /* Owners free their messages from fn when they see pl_loop_is_stopping(). A fn that
     * posts again is served too, until the inbox stays empty. */
    loop->destroying = true;
    while (drain_inbox(loop) > 0) {
    }
    /* Armed timers belong to their owners' structs, which may be gone: not touched. */
    close(loop->evfd);
    close(loop->epfd);
    free(loop->heap);
    free(loop->watchers);
    free(loop->name);
    free(loop);
}

static void set_thread_name(const pl_loop_t *loop)
{
    char name[16];   /* Linux limit: 15 characters and the NUL */
    size_t len = strnlen(loop->name, sizeof(name) - 1);
    memcpy(name, loop->name, len);
    name[len] = '\0';
    (void)pthread_setname_np(pthread_self(), name);
}

static int run_once(pl_loop_t *loop)
{
    struct epoll_event evs[PL_LOOP_MAX_EVENTS];
    update_time(loop);
    fire_due(loop);
    int n = epoll_wait(loop->epfd, evs, PL_LOOP_MAX_EVENTS, next_timeout_ms(loop));
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    update_time(loop);
    dispatch_io(loop, evs, n);
    loop->iterations++;
    return 0;
}

int pl_loop_run(pl_loop_t *loop)
{
    if (atomic_load_explicit(&loop->home_set, memory_order_acquire)) {
        PL_ASSERT(pl_loop_on_home_thread(loop));   /* the home thread is fixed */
    } else {
        loop->home = pthread_self();
        atomic_store_explicit(&loop->home_set, true, memory_order_release);
    }
    PL_ASSERT(!loop->running);   /* not re-entrant */
    set_thread_name(loop);
    loop->running = true;
    int rc = 0;
    while (rc == 0 && !atomic_load_explicit(&loop->stopping, memory_order_acquire))
        rc = run_once(loop);
    /* The stop request is consumed so the loop can be run again (tests do). */
    atomic_store_explicit(&loop->stopping, false, memory_order_release);
    loop->running = false;
    return rc;
}

void pl_loop_get_stats(const pl_loop_t *loop, pl_loop_stats_t *out)
{
    out->iterations = loop->iterations;
    out->wakeups_posted = atomic_load_explicit(&loop->wakeups_posted, memory_order_relaxed);
    out->msgs_delivered = loop->msgs_delivered;
}
