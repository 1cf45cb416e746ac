/* redis_loop.c: hiredis's async client on a pl_loop (redis_int.h). The adapter maps
 * hiredis's idempotent add/del read/write hooks onto one epoll registration per
 * context; the connection object tracks whether hiredis still owns a live context and
 * defers freeing it until no hiredis call is on the stack.
 *
 * hiredis 0.14 ownership rules this file is built around (async.c):
 *   - a failed connect calls onConnect(REDIS_ERR) and then frees the context itself;
 *   - a lost connection runs every pending reply callback with NULL, calls ev.cleanup,
 *     then onDisconnect, then frees the context;
 *   - redisAsyncFree from inside a reply callback is deferred by hiredis, but from
 *     inside onConnect/onDisconnect it would be a double free;
 *   - connect completion is noticed on the first write event, so the adapter asks for
 *     one at attach time (newer hiredis does the same).
 *
 * What it does not do: timeouts, reconnection, AUTH (the presence backend does them).
 *
 * Threading: the loop's home thread only. */
#include "signaling/redis_int.h"
#include "core/pl_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the event adapter --------------------------------------------------------------- */

typedef struct adapter {
    pl_loop_t *loop;
    redisAsyncContext *ac;
    pl_redis_conn_t *owner;     /* NULL when attached without a connection object */
    int fd;
    uint32_t mask;              /* PL_IO_* watched now (0 = not in the epoll set) */
    bool in_io;                 /* on_io is on the stack: cleanup leaves the free to it */
    bool dead;                  /* hiredis cleaned up: the context is gone */
} adapter_t;

struct pl_redis_conn {
    pl_loop_t *loop;
    redisAsyncContext *ac;      /* NULL once hiredis freed it (or we did) */
    pl_redis_state_cb cb;
    void *arg;
    size_t pending;
    unsigned depth;             /* hiredis calls on the stack (on_io) */
    bool connected;
    bool closing;
};

static void set_mask(adapter_t *a, uint32_t mask);

static void on_io(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(fd);
    adapter_t *a = arg;
    redisAsyncContext *ac = a->ac;
    pl_redis_conn_t *c = a->owner;
    a->in_io = true;
    if (c)
        c->depth++;
    /* A read may free the context: check before writing. */
    if (events & PL_IO_READ)
        redisAsyncHandleRead(ac);
    if (!a->dead && (events & PL_IO_WRITE))
        redisAsyncHandleWrite(ac);
    a->in_io = false;
    if (a->dead)
        free(a);
    if (c) {
        c->depth--;
        if (c->closing && c->depth == 0)
            pl_redis_conn_close(c);     /* the close asked for inside a callback */
    }
}

static void set_mask(adapter_t *a, uint32_t mask)
{
    if (mask == a->mask)
        return;
    int rc;
    if (!a->mask)
        rc = pl_loop_add_fd(a->loop, a->fd, mask, on_io, a);
    else if (!mask)
        rc = pl_loop_del_fd(a->loop, a->fd);
    else
        rc = pl_loop_mod_fd(a->loop, a->fd, mask);
    PL_ASSERT(rc == 0);         /* our own fd bookkeeping; EEXIST/ENOENT would be a bug */
    a->mask = mask;
}

static void ev_add_read(void *p) { adapter_t *a = p; set_mask(a, a->mask | PL_IO_READ); }
static void ev_del_read(void *p) { adapter_t *a = p; set_mask(a, a->mask & ~(uint32_t)PL_IO_READ); }
static void ev_add_write(void *p) { adapter_t *a = p; set_mask(a, a->mask | PL_IO_WRITE); }
static void ev_del_write(void *p) { adapter_t *a = p; set_mask(a, a->mask & ~(uint32_t)PL_IO_WRITE); }

static void ev_cleanup(void *p)
{
    adapter_t *a = p;
    set_mask(a, 0);
    a->dead = true;
    if (!a->in_io)
        free(a);
}

static adapter_t *attach(pl_loop_t *loop, redisAsyncContext *ac, pl_redis_conn_t *owner)
{
    if (ac->ev.data)
        return NULL;
    adapter_t *a = pl_xcalloc(1, sizeof(*a));
    a->loop = loop;
    a->ac = ac;
    a->owner = owner;
    a->fd = ac->c.fd;
    ac->ev.data = a;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    /* hiredis 0.14 completes a non-blocking connect on the first write event. */
    ev_add_write(a);
    return a;
}

int pl_redis_attach(pl_loop_t *loop, redisAsyncContext *ac)
{
    return attach(loop, ac, NULL) ? 0 : -1;
}

/* ---- the connection object ----------------------------------------------------------- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    pl_redis_conn_t *c = ac->data;
    if (status != REDIS_OK) {
        c->ac = NULL;           /* hiredis frees it when we return */
        if (!c->closing)
            c->cb(c, -1, ac->errstr ? ac->errstr : "connect failed", c->arg);
        return;
    }
    c->connected = true;
    if (!c->closing)
        c->cb(c, 0, NULL, c->arg);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    PL_UNUSED(status);
    pl_redis_conn_t *c = ac->data;
    c->ac = NULL;               /* being freed by hiredis */
    c->connected = false;
    if (!c->closing)
        c->cb(c, -1, ac->errstr && ac->errstr[0] ? ac->errstr : "connection closed", c->arg);
}

pl_redis_conn_t *pl_redis_conn_open(pl_loop_t *loop, const char *host, int port,
                                    pl_redis_state_cb cb, void *arg, char *err, size_t cap)
{
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    if (ac->err) {
        snprintf(err, cap, "%s", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    pl_redis_conn_t *c = pl_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->ac = ac;
    c->cb = cb;
    c->arg = arg;
    ac->data = c;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    PL_ASSERT(attach(loop, ac, c) != NULL);
    return c;
}

typedef struct cmd_wrap {
    pl_redis_conn_t *c;
    pl_redis_reply_cb fn;
    void *arg;
    bool persistent;            /* SUBSCRIBE: called per message, then once with NULL */
} cmd_wrap_t;

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    PL_UNUSED(ac);
    cmd_wrap_t *w = priv;
    pl_redis_conn_t *c = w->c;
    bool last = !w->persistent || !reply;
    if (last)
        c->pending--;
    if (w->fn)
        w->fn(c, reply, w->arg);
    if (last)
        free(w);
}

int pl_redis_conn_subscribe(pl_redis_conn_t *c, const char *channel, pl_redis_reply_cb fn,
                            void *arg)
{
    if (!c->ac || c->closing)
        return -1;
    cmd_wrap_t *w = pl_xmalloc(sizeof(*w));
    *w = (cmd_wrap_t){ c, fn, arg, true };
    /* hiredis keeps the callback in its channel table (not the reply queue) and runs it
     * for the confirmation, every message, and once with NULL when the context goes. */
    const char *argv[2] = { "SUBSCRIBE", channel };
    if (redisAsyncCommandArgv(c->ac, on_reply, w, 2, argv, NULL) != REDIS_OK) {
        free(w);
        return -1;
    }
    c->pending++;
    return 0;
}

int pl_redis_conn_cmd(pl_redis_conn_t *c, pl_redis_reply_cb fn, void *arg, int argc,
                      const char **argv, const size_t *argvlen)
{
    if (!c->ac || c->closing)
        return -1;
    cmd_wrap_t *w = pl_xmalloc(sizeof(*w));
    *w = (cmd_wrap_t){ c, fn, arg, false };
    if (redisAsyncCommandArgv(c->ac, on_reply, w, argc, argv, argvlen) != REDIS_OK) {
        free(w);
        return -1;
    }
    c->pending++;
    return 0;
}

bool pl_redis_conn_connected(const pl_redis_conn_t *c)
{
    return c->ac && c->connected && !c->closing;
}

size_t pl_redis_conn_pending(const pl_redis_conn_t *c)
{
    return c->pending;
}

void pl_redis_conn_close(pl_redis_conn_t *c)
{
    if (!c)
        return;
    c->closing = true;
    if (c->depth)
        return;                 /* on_io finishes the job when hiredis has returned */
    redisAsyncContext *ac = c->ac;
    if (ac) {
        c->ac = NULL;
        /* Runs the pending callbacks with NULL, ev.cleanup and onDisconnect (ignored:
         * closing), then frees the context. */
        redisAsyncFree(ac);
    }
    PL_ASSERT(c->pending == 0);
    free(c);
}
