/* sfu_sendq.c: the per-context send queue of sfu_sendq.h.
 *
 * The queue is a GSource of its own (found again through its GSourceFuncs, so there is
 * no registry of contexts) with the highest priority on the context: GLib prepares
 * sources in priority order and stops at the first lower priority than a ready one, so
 * the first source is always prepared. Its prepare flushes; it never dispatches.
 * Buffer space is one arena of fixed slots per context, allocated on the first queued
 * packet; a free-slot stack hands them out. Sockets with packets form a doubly linked
 * list so a flush or a discard unlinks in O(1).
 *
 * Why: the kernel's per-datagram send path (skb allocation, route lookup, device
 * transmit) was most of the SFU media thread. sendmmsg alone pays the syscall once per
 * socket per iteration (measured: a few percent, as it copies a msghdr per datagram);
 * UDP GSO (Linux 4.18) sends a run of equal-size datagrams as one skb that is cut up
 * late, which is where the gain is (sfu_load: 0.84 -> 0.55 cores per 1,000 streams).
 *
 * Threading: see sfu_sendq.h. */
#include "relay/sfu/sfu_sendq.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103             /* linux/udp.h, Linux 4.18 */
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

/* Ahead of every other source of the context (libnice's sockets are G_PRIORITY_DEFAULT,
 * the agent release idle G_PRIORITY_HIGH). */
#define SENDQ_PRIORITY (G_PRIORITY_HIGH - 100)
/* One GSO message stays below the 64 KiB IP datagram limit with its headers. */
#define SENDQ_GSO_MAX_BYTES 60000

struct pl_sendq {
    GSource src;                    /* first: the queue is its own GSource */
    GMainContext *ctx;
    uint8_t *arena;                 /* PL_SENDQ_SLOTS * PL_SENDQ_SLOT_BYTES, lazily */
    uint16_t free_slot[PL_SENDQ_SLOTS];
    unsigned n_free;
    pl_sendq_sock_t *head;          /* sockets with queued packets */
};

_Static_assert(PL_SENDQ_SLOTS <= 65536 && PL_SENDQ_SLOT_BYTES <= 65535, "slot indices");

static gboolean q_prepare(GSource *src, gint *timeout)
{
    *timeout = -1;
    pl_sendq_flush((pl_sendq_t *)src);
    return FALSE;
}

static gboolean q_check(GSource *src)
{
    PL_UNUSED(src);
    return FALSE;
}

static gboolean q_dispatch(GSource *src, GSourceFunc cb, gpointer data)
{
    PL_UNUSED(src);
    PL_UNUSED(cb);
    PL_UNUSED(data);
    return G_SOURCE_CONTINUE;
}

/* The context is going away; its peer connections (which must not outlive it) are gone. */
static void q_finalize(GSource *src)
{
    pl_sendq_t *q = (pl_sendq_t *)src;
    free(q->arena);
    q->arena = NULL;
}

static GSourceFuncs q_funcs = { q_prepare, q_check, q_dispatch, q_finalize, NULL, NULL };

/* g_main_context_find_source_by_funcs_user_data only looks at sources with a callback. */
static gboolean q_marker(gpointer data)
{
    PL_UNUSED(data);
    return G_SOURCE_CONTINUE;
}

pl_sendq_t *pl_sendq_for_context(GMainContext *ctx)
{
    static GMutex lock;             /* serializes find-or-create only */
    g_mutex_lock(&lock);
    GSource *s = g_main_context_find_source_by_funcs_user_data(ctx, &q_funcs, NULL);
    if (!s) {
        s = g_source_new(&q_funcs, sizeof(pl_sendq_t));
        pl_sendq_t *q = (pl_sendq_t *)s;
        q->ctx = ctx;
        q->n_free = PL_SENDQ_SLOTS;
        for (unsigned i = 0; i < PL_SENDQ_SLOTS; i++)
            q->free_slot[i] = (uint16_t)(PL_SENDQ_SLOTS - 1 - i);
        g_source_set_callback(s, q_marker, NULL, NULL);
        g_source_set_priority(s, SENDQ_PRIORITY);
        g_source_set_name(s, "pl_sendq");
        g_source_attach(s, ctx);
        g_source_unref(s);          /* the context owns it */
    }
    g_mutex_unlock(&lock);
    return (pl_sendq_t *)s;
}

void pl_sendq_sock_init(pl_sendq_sock_t *s, pl_sendq_t *q)
{
    memset(s, 0, sizeof(*s));
    s->q = q;
    s->fd = -1;
}

static void unlink_sock(pl_sendq_sock_t *s)
{
    if (!s->listed)
        return;
    if (s->next)
        s->next->pprev = s->pprev;
    *s->pprev = s->next;
    s->listed = false;
    s->next = NULL;
    s->pprev = NULL;
}

static void release_slots(pl_sendq_sock_t *s)
{
    pl_sendq_t *q = s->q;
    for (unsigned i = 0; i < s->n; i++)
        q->free_slot[q->n_free++] = s->slot[i];
    s->n = 0;
    unlink_sock(s);
}

/* Messages for packets [from, n) of s: with GSO, a run of equal-size datagrams shares one
 * message with a UDP_SEGMENT size (the kernel cuts it back into datagrams, in the NIC or
 * in software; only the run's last datagram may be shorter, udp(7)). */
typedef struct flush_buf {
    struct mmsghdr m[PL_SENDQ_SOCK_MAX];
    struct iovec iov[PL_SENDQ_SOCK_MAX];
    unsigned first[PL_SENDQ_SOCK_MAX];      /* index of each message's first packet */
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } cm[PL_SENDQ_SOCK_MAX];
} flush_buf_t;

static unsigned run_end(const pl_sendq_sock_t *s, unsigned i, bool gso)
{
    unsigned j = i + 1;
    size_t seg = s->len[i], total = seg;
    while (gso && j < s->n && s->len[j] <= seg && total + s->len[j] <= SENDQ_GSO_MAX_BYTES) {
        total += s->len[j];
        if (s->len[j++] < seg)
            break;                  /* a shorter datagram ends a run */
    }
    return j;
}

static unsigned build_msgs(pl_sendq_sock_t *s, unsigned from, bool gso, flush_buf_t *b)
{
    unsigned nm = 0;
    for (unsigned i = from; i < s->n; i++) {
        b->iov[i].iov_base = s->q->arena + (size_t)s->slot[i] * PL_SENDQ_SLOT_BYTES;
        b->iov[i].iov_len = s->len[i];
    }
    for (unsigned i = from; i < s->n; nm++) {
        unsigned j = run_end(s, i, gso);
        struct msghdr *h = &b->m[nm].msg_hdr;
        *h = (struct msghdr){ .msg_name = &s->to, .msg_namelen = s->to_len,
                              .msg_iov = &b->iov[i], .msg_iovlen = j - i };
        if (j - i > 1) {
            h->msg_control = b->cm[nm].buf;
            h->msg_controllen = sizeof(b->cm[nm].buf);
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t seg = s->len[i];
            memcpy(CMSG_DATA(c), &seg, sizeof(seg));
        }
        b->m[nm].msg_len = 0;
        b->first[nm] = i;
        i = j;
    }
    return nm;
}

/* Sends packets [from, n) of s; returns how many the kernel refused. A GSO message the
 * kernel cannot take (no checksum offload on the route: EIO; too large: EMSGSIZE/EINVAL)
 * turns GSO off for the socket and goes again one datagram per message. A full send
 * buffer drops the rest: retrying in a loop would only spin. */
static unsigned send_from(pl_sendq_sock_t *s, unsigned from)
{
    flush_buf_t b;
    bool gso = !s->no_gso;
    unsigned nm = build_msgs(s, from, gso, &b), off = 0, refused = 0;
    while (off < nm && s->fd >= 0) {
        int r = sendmmsg(s->fd, b.m + off, nm - off, MSG_DONTWAIT);
        if (r > 0) {
            off += (unsigned)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
            break;
        unsigned first = b.first[off];
        unsigned count = (off + 1 < nm ? b.first[off + 1] : s->n) - first;
        if (gso && count > 1) {
            s->no_gso = true;
            return refused + send_from(s, first);
        }
        refused++;                  /* this datagram was refused (EMSGSIZE, a filter) */
        off++;
    }
    for (unsigned k = off; k < nm; k++)
        refused += (k + 1 < nm ? b.first[k + 1] : s->n) - b.first[k];
    return refused;
}

/* One sendmmsg for everything queued (more only after a refused datagram). */
void pl_sendq_sock_flush(pl_sendq_sock_t *s)
{
    if (!s->n)
        return;
    s->drops += send_from(s, 0);
    release_slots(s);
}

void pl_sendq_sock_discard(pl_sendq_sock_t *s)
{
    s->drops += s->n;
    release_slots(s);
}

void pl_sendq_flush(pl_sendq_t *q)
{
    while (q->head)
        pl_sendq_sock_flush(q->head);
}

void pl_sendq_sock_set_dest(pl_sendq_sock_t *s, int fd, const struct sockaddr *to,
                            socklen_t to_len)
{
    pl_sendq_sock_flush(s);
    s->fd = -1;
    if (fd < 0 || !to || to_len == 0 || to_len > sizeof(s->to))
        return;
    memset(&s->to, 0, sizeof(s->to));
    memcpy(&s->to, to, to_len);
    s->to_len = to_len;
    s->fd = fd;
}

/* Packets queue only while the calling thread dispatches a source of q's context: then
 * the context's next prepare (before it polls) is sure to come and flush them. */
static bool dispatching(const pl_sendq_t *q)
{
    GSource *cur = g_main_current_source();
    return cur && g_source_get_context(cur) == q->ctx;
}

int pl_sendq_send(pl_sendq_sock_t *s, const uint8_t *data, size_t len)
{
    pl_sendq_t *q = s->q;
    if (s->fd < 0)
        return PL_ESTATE;
    if (len > PL_SENDQ_SLOT_BYTES)
        return -EMSGSIZE;
    if (!dispatching(q)) {
        ssize_t n = sendto(s->fd, data, len, MSG_DONTWAIT, (const struct sockaddr *)&s->to,
                           s->to_len);
        return n == (ssize_t)len ? 0 : -EAGAIN;
    }
    if (!q->arena)
        q->arena = pl_xmalloc((size_t)PL_SENDQ_SLOTS * PL_SENDQ_SLOT_BYTES);
    if (q->n_free == 0)
        pl_sendq_flush(q);
    uint16_t slot = q->free_slot[--q->n_free];
    memcpy(q->arena + (size_t)slot * PL_SENDQ_SLOT_BYTES, data, len);
    s->slot[s->n] = slot;
    s->len[s->n] = (uint16_t)len;
    s->n++;
    if (!s->listed) {
        s->next = q->head;
        if (q->head)
            q->head->pprev = &s->next;
        s->pprev = &q->head;
        q->head = s;
        s->listed = true;
    }
    if (s->n == PL_SENDQ_SOCK_MAX)
        pl_sendq_sock_flush(s);
    return 0;
}

uint64_t pl_sendq_sock_take_drops(pl_sendq_sock_t *s)
{
    uint64_t n = s->drops;
    s->drops = 0;
    return n;
}
