/* sfu_gpoll.h: an epoll-backed poll function for a GMainContext iterated by one thread.
 *
 * GLib's default poll() hands the kernel every descriptor of the context on every
 * iteration; a media loop with a few hundred libnice sockets then spends a quarter of
 * its time in do_sys_poll (fdget, sock_poll and a wait-queue entry per socket per
 * wake-up, measured with perf under sfu_load). This keeps one epoll set per thread and
 * only tells the kernel what changed between iterations.
 *
 * Contract: pl_gpoll_attach(ctx) is called on the thread that will iterate ctx, before
 * it does; it installs the poll function and a thread-local epoll set. If ctx is later
 * iterated on another thread (a shutdown drain), that thread falls back to g_poll().
 * Descriptor reuse: when a descriptor closes and its number is reused between two
 * iterations with the same events, epoll would not know the new file. Whoever closes
 * sockets of this context calls pl_gpoll_changed() on the same thread; as a safety net
 * every registration is re-checked every 100 ms (one epoll_ctl per descriptor), so an
 * unannounced reuse delays that socket's events by at most that long.
 *
 * Threading: all functions act on the calling thread's state only. */
#ifndef PL_SFU_GPOLL_H
#define PL_SFU_GPOLL_H

#include <glib.h>

/* Installs the epoll poll function on ctx for the calling thread. Returns 0, or a
 * negative errno (then ctx keeps GLib's poll and still works). */
int pl_gpoll_attach(GMainContext *ctx);

/* Releases the calling thread's epoll set; ctx goes back to g_poll(). */
void pl_gpoll_detach(GMainContext *ctx);

/* Descriptors may have been closed on this thread: the next iteration re-checks every
 * registration. No-op on a thread without pl_gpoll_attach. */
void pl_gpoll_changed(void);

#endif
