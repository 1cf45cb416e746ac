/* redis_int.h: hiredis's asynchronous client on parley's core loop: the event-library
 * adapter (redisAsyncContext ev.addRead/delRead/addWrite/delWrite/cleanup mapped onto
 * pl_loop_add_fd/mod_fd/del_fd) and a small connection object that makes hiredis's
 * ownership rules safe to live with: the context is freed either by hiredis (after a
 * failed connect or a lost connection) or by a deferred reap on the loop, never from
 * inside one of hiredis's own callbacks.
 *
 * Debian 12 ships hiredis 0.14, whose ev struct has no scheduleTimer hook and whose
 * async connect has no timeout: the owner times connects and commands itself (the
 * presence backend does, with pl_timer_t).
 *
 * Threading: everything on the loop's home thread. */
#ifndef PL_SIG_REDIS_INT_H
#define PL_SIG_REDIS_INT_H

#include "core/pl_loop.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

typedef struct pl_redis_conn pl_redis_conn_t;

/* The connection came up (status 0) or failed / went away (status -1, errstr says
 * why). Not called after pl_redis_conn_close. */
typedef void (*pl_redis_state_cb)(pl_redis_conn_t *c, int status, const char *errstr,
                                  void *arg);
/* A reply, or NULL when the connection went away before it came. */
typedef void (*pl_redis_reply_cb)(pl_redis_conn_t *c, redisReply *reply, void *arg);

/* Starts connecting to host:port (an IP literal, or a name resolved right here with
 * getaddrinfo: blocking). Returns an owned connection (close it with
 * pl_redis_conn_close), or NULL with errstr copied into err (cap bytes). */
pl_redis_conn_t *pl_redis_conn_open(pl_loop_t *loop, const char *host, int port,
                                    pl_redis_state_cb cb, void *arg, char *err, size_t cap);
/* Queues a command (argv form: binary-safe). fn may be NULL. Returns 0, or -1 when the
 * connection is not usable (fn is then not called). */
int pl_redis_conn_cmd(pl_redis_conn_t *c, pl_redis_reply_cb fn, void *arg, int argc,
                      const char **argv, const size_t *argvlen);
/* Subscribes to channel: fn runs for the confirmation and for every message (arrays
 * ["subscribe"|"message", channel, ...]), then once with NULL when the connection goes.
 * Only SUBSCRIBE may follow on that connection. Returns 0 or -1 like pl_redis_conn_cmd. */
int pl_redis_conn_subscribe(pl_redis_conn_t *c, const char *channel, pl_redis_reply_cb fn,
                            void *arg);
/* True between the connect callback (status 0) and the loss of the connection. */
bool pl_redis_conn_connected(const pl_redis_conn_t *c);
/* Replies still awaited. */
size_t pl_redis_conn_pending(const pl_redis_conn_t *c);
/* Closes and frees c: safe anywhere, including inside its callbacks. Replies still
 * awaited get their callback with NULL (later, from the loop); the state callback is
 * not called again. NULL is fine. */
void pl_redis_conn_close(pl_redis_conn_t *c);

/* Attaches hiredis's event hooks of ac to loop (the adapter alone, for callers that
 * manage the context themselves). Returns 0 or -1 when ac already has an adapter. */
int pl_redis_attach(pl_loop_t *loop, redisAsyncContext *ac);

#endif
