/* sfu_sendq.h: batched datagram sends for a GMainContext's UDP sockets.
 *
 * A media loop iteration reads a burst of publisher packets (a video frame is several
 * datagrams) and sends each one to every subscriber. Instead of one sendto per packet,
 * the packets an iteration produces for one socket are queued and leave together with
 * one sendmmsg per socket when the iteration's dispatching is over: the queue's GSource
 * flushes from its prepare step, which GLib runs at the start of the next iteration,
 * before the thread polls (so no packet waits past the iteration that produced it).
 * A socket's queue is bounded (PL_SENDQ_SOCK_MAX packets: a full queue is flushed at
 * once) and so is the context's buffer space (PL_SENDQ_SLOTS: when it runs out, all
 * queues are flushed).
 *
 * Packets are queued only while a source of the same context is dispatching on the
 * calling thread; otherwise (a test calling from outside the loop) they go out at once.
 *
 * What it does not: decide which socket or address (the peer connection does: the
 * selected ICE pair), retry (a datagram the kernel refuses is a counted drop; for RTP
 * that is what a full socket buffer means anyway).
 *
 * Threading: a pl_sendq_t belongs to its GMainContext; everything runs on the thread
 * iterating it, except pl_sendq_for_context (any thread, serialized internally). */
#ifndef PL_SFU_SENDQ_H
#define PL_SFU_SENDQ_H

#include "core/pl_common.h"

#include <glib.h>
#include <sys/socket.h>

#define PL_SENDQ_SOCK_MAX 32        /* packets queued per socket before a flush */
#define PL_SENDQ_SLOTS 256          /* packets queued per context */
#define PL_SENDQ_SLOT_BYTES 2048    /* largest datagram queued (= PL_PC_BUF) */

typedef struct pl_sendq pl_sendq_t;

/* One socket's queue, embedded in its owner (the peer connection). */
typedef struct pl_sendq_sock {
    pl_sendq_t *q;
    int fd;                         /* -1: no destination (sends fail) */
    struct sockaddr_storage to;
    socklen_t to_len;
    unsigned n;                     /* packets queued */
    uint16_t slot[PL_SENDQ_SOCK_MAX];
    uint16_t len[PL_SENDQ_SOCK_MAX];
    bool listed;                    /* on q's list of sockets with packets */
    bool no_gso;                    /* the kernel refused UDP_SEGMENT here once */
    struct pl_sendq_sock *next, **pprev;
    uint64_t drops;                 /* datagrams the kernel refused after queueing */
} pl_sendq_sock_t;

/* The context's queue, created (and attached as a GSource) on first use. It lives as
 * long as the context: it is freed when the context is. Returns a borrowed pointer. */
pl_sendq_t *pl_sendq_for_context(GMainContext *ctx);

/* Binds s to q with no destination. */
void pl_sendq_sock_init(pl_sendq_sock_t *s, pl_sendq_t *q);
/* Sets where s sends: fd (borrowed; the caller keeps it open while s may send) and the
 * peer address. Packets already queued go out first, to the old destination. fd -1
 * clears the destination. */
void pl_sendq_sock_set_dest(pl_sendq_sock_t *s, int fd, const struct sockaddr *to,
                            socklen_t to_len);

/* Queues (or, outside a dispatch of q's context, sends) one datagram of len bytes
 * (copied). Returns 0 (queued or sent), -EAGAIN when the kernel refused an immediate
 * send, -EMSGSIZE when len > PL_SENDQ_SLOT_BYTES, PL_ESTATE without a destination. */
int pl_sendq_send(pl_sendq_sock_t *s, const uint8_t *data, size_t len);

/* Sends what s has queued now (before a send that must not overtake it, or when its
 * destination goes away). */
void pl_sendq_sock_flush(pl_sendq_sock_t *s);
/* Drops what s has queued (counted in drops) and unlinks it: call before freeing s
 * or when it must stop sending (RFC 7675 consent lost). */
void pl_sendq_sock_discard(pl_sendq_sock_t *s);

/* Sends everything queued on q. */
void pl_sendq_flush(pl_sendq_t *q);

/* Datagrams s's queue failed to send since the last call. */
uint64_t pl_sendq_sock_take_drops(pl_sendq_sock_t *s);

#endif
