/* pl_loop.h: the core event loop: one epoll set, a min-heap of timers and a
 * cross-thread mailbox, run by exactly one thread (the loop's home thread).
 *
 * Threading: every function here must be called on the loop's home thread (the thread
 * that calls pl_loop_run), except pl_loop_post() and pl_loop_stop(), which any thread
 * may call. The home thread is fixed by pl_loop_run(); before that, the creating thread
 * may set the loop up.
 *
 * What it deliberately does not do: no per-fd buffering, no thread pool, no signal
 * handling (the app uses signalfd on its loop). */
#ifndef PL_LOOP_H
#define PL_LOOP_H

#include "core/pl_common.h"

typedef struct pl_loop pl_loop_t;

enum { PL_IO_READ = 1u << 0, PL_IO_WRITE = 1u << 1 };

/* Called on the home thread when fd is ready. events is a mask of PL_IO_READ,
 * PL_IO_WRITE, plus PL_IO_READ when the peer hung up or the fd errored (so the callback
 * sees the EOF/error from its next read). The callback may delete its own fd. */
typedef void (*pl_io_cb)(pl_loop_t *loop, int fd, uint32_t events, void *arg);

/* Timers are embedded in the owner's struct; the loop keeps a pointer to them while
 * they are armed. Zero-initialise (or pl_timer_init) before first use. */
typedef struct pl_timer pl_timer_t;
typedef void (*pl_timer_cb)(pl_loop_t *loop, pl_timer_t *t, void *arg);
struct pl_timer {
    uint64_t due_ms;        /* private */
    uint64_t repeat_ms;     /* private */
    uint64_t seq;           /* private: start order; equal due_ms fire in start order */
    size_t heap_index;      /* private: 0 = not armed, else index+1 */
    pl_timer_cb cb;         /* private */
    void *arg;              /* private */
};

/* Cross-thread messages: embed pl_msg_t in your message struct, set fn, then post it.
 * fn runs on the loop's home thread and owns the message (frees it). */
typedef struct pl_msg pl_msg_t;
typedef void (*pl_msg_fn)(pl_loop_t *loop, pl_msg_t *msg);
struct pl_msg {
    pl_msg_t *next;         /* private */
    pl_msg_fn fn;
};

/* Creates a loop. name is copied and used in logs and thread names ("relay-0").
 * Returns 0 or -errno. */
int pl_loop_create(const char *name, pl_loop_t **out);
/* Destroys a loop that is not running. Queued messages are delivered to their fn first
 * (so their owners can free them), with the loop flagged as closing. */
void pl_loop_destroy(pl_loop_t *loop);

/* Runs until pl_loop_stop(). Returns 0 or -errno on an epoll failure. */
int pl_loop_run(pl_loop_t *loop);
/* Asks the loop to return from pl_loop_run after the current iteration. Any thread.
 * A stop asked before run makes the next run return at once; run consumes the request
 * when it returns, so the loop may be run again. */
void pl_loop_stop(pl_loop_t *loop);
/* True after pl_loop_stop or while pl_loop_destroy drains messages. */
bool pl_loop_is_stopping(const pl_loop_t *loop);
const char *pl_loop_name(const pl_loop_t *loop);
/* True when called on the loop's home thread (or before it runs). For PL_ASSERT. */
bool pl_loop_on_home_thread(const pl_loop_t *loop);

/* Watches fd. Returns 0, -EEXIST or -errno. The loop does not own fd. */
int pl_loop_add_fd(pl_loop_t *loop, int fd, uint32_t events, pl_io_cb cb, void *arg);
int pl_loop_mod_fd(pl_loop_t *loop, int fd, uint32_t events);
/* Stops watching fd; safe from within any callback, including fd's own: no callback
 * runs for fd after this, even for events already fetched. Call it before close(fd). */
int pl_loop_del_fd(pl_loop_t *loop, int fd);

/* Loop time in ms (monotonic), updated once per iteration: cheap, for timers. */
uint64_t pl_loop_now_ms(const pl_loop_t *loop);
/* Overrides the clock for tests (fake time); 0 returns to the real clock. */
void pl_loop_set_fake_now_ms(pl_loop_t *loop, uint64_t now_ms);

void pl_timer_init(pl_timer_t *t);
/* Arms (or re-arms) t to fire after delay_ms, then every repeat_ms if non-zero. */
void pl_timer_start(pl_loop_t *loop, pl_timer_t *t, uint64_t delay_ms, uint64_t repeat_ms,
                    pl_timer_cb cb, void *arg);
void pl_timer_stop(pl_loop_t *loop, pl_timer_t *t);
bool pl_timer_is_armed(const pl_timer_t *t);
/* Runs every due timer now (for tests with a fake clock). Returns how many fired. */
size_t pl_loop_run_timers(pl_loop_t *loop);

/* Posts msg to the loop's mailbox. Any thread. Takes ownership of msg: its fn runs
 * once on the home thread. Wakes the loop (eventfd write) only when the mailbox was
 * empty. Never fails. */
void pl_loop_post(pl_loop_t *loop, pl_msg_t *msg);
/* Convenience: posts a heap message that calls fn(loop, arg) on the home thread. */
void pl_loop_post_fn(pl_loop_t *loop, void (*fn)(pl_loop_t *loop, void *arg), void *arg);

/* Counters for tests and metrics (read on the home thread). */
typedef struct pl_loop_stats {
    uint64_t iterations;
    uint64_t wakeups_posted;     /* eventfd writes done by posters */
    uint64_t msgs_delivered;
} pl_loop_stats_t;
void pl_loop_get_stats(const pl_loop_t *loop, pl_loop_stats_t *out);

#endif
