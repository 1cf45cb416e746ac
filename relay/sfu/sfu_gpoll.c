/* sfu_gpoll.c: the epoll-backed GPollFunc of sfu_gpoll.h.
 *
 * Each call walks GLib's descriptor array once in user space (a generation stamp per
 * descriptor number), adds what is new, modifies what changed, deletes what went away,
 * then waits in epoll_wait and copies the ready events back into the array. Epoll is
 * level-triggered, so the result is what poll() would have returned: a socket that still
 * holds data stays ready. Descriptor numbers are small integers, so the per-descriptor
 * state is an array indexed by number.
 *
 * Not handled by epoll: the same descriptor twice in one array (two sources on one
 * socket); that call falls back to g_poll(). A closed descriptor still in the array
 * (a bug in its owner) yields no G_IO_NVAL here.
 *
 * Threading: the state is thread-local; GLib's poll function has no user pointer, and a
 * context is iterated by the thread that attached it. */
#include "relay/sfu/sfu_gpoll.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* GIOCondition, poll() and epoll share bit values on Linux; the copy relies on it. */
_Static_assert((int)G_IO_IN == (int)EPOLLIN && (int)G_IO_OUT == (int)EPOLLOUT &&
                   (int)G_IO_PRI == (int)EPOLLPRI && (int)G_IO_ERR == (int)EPOLLERR &&
                   (int)G_IO_HUP == (int)EPOLLHUP,
               "GIOCondition and epoll bits differ");

#define GPOLL_VERIFY_US (100 * 1000)
#define GPOLL_EVENTS 256

typedef struct gp_slot {
    uint32_t gen;       /* call that last saw this descriptor in the array */
    uint32_t idx;       /* its index in that call's array */
    uint16_t events;    /* events registered with epoll */
    uint8_t reg;        /* registered with epoll */
} gp_slot_t;

typedef struct gpoll {
    int epfd;
    uint32_t gen;
    gp_slot_t *slots;
    size_t nslots;
    int *reg;           /* registered descriptor numbers */
    size_t nreg, capreg;
    gint64 next_verify;
    bool verify;
} gpoll_t;

static __thread gpoll_t *t_gp;

static bool grow_slots(gpoll_t *gp, int fd)
{
    size_t n = gp->nslots ? gp->nslots : 64;
    while (n <= (size_t)fd)
        n *= 2;
    gp_slot_t *s = realloc(gp->slots, n * sizeof(*s));
    if (!s)
        return false;
    for (size_t i = gp->nslots; i < n; i++)
        s[i] = (gp_slot_t){ 0 };
    gp->slots = s;
    gp->nslots = n;
    return true;
}

static bool push_reg(gpoll_t *gp, int fd)
{
    if (gp->nreg == gp->capreg) {
        size_t cap = gp->capreg ? gp->capreg * 2 : 64;
        int *r = realloc(gp->reg, cap * sizeof(*r));
        if (!r)
            return false;
        gp->reg = r;
        gp->capreg = cap;
    }
    gp->reg[gp->nreg++] = fd;
    return true;
}

static int ctl(gpoll_t *gp, int op, int fd, uint16_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };
    return epoll_ctl(gp->epfd, op, fd, &ev);
}

typedef enum { SYNC_OK, SYNC_DUP, SYNC_FAIL } sync_rc_t;

/* Brings one array entry's registration up to date. Anything but SYNC_OK: this call
 * uses g_poll(); SYNC_FAIL (memory, an epoll_ctl error) also re-checks everything next
 * time. */
static sync_rc_t sync_one(gpoll_t *gp, const GPollFD *p, uint32_t idx, bool verify)
{
    int fd = p->fd;
    if ((size_t)fd >= gp->nslots && !grow_slots(gp, fd))
        return SYNC_FAIL;
    gp_slot_t *s = &gp->slots[fd];
    if (s->gen == gp->gen)
        return SYNC_DUP;                /* duplicate descriptor in the array */
    s->gen = gp->gen;
    s->idx = idx;
    uint16_t want = (uint16_t)(p->events & (G_IO_IN | G_IO_OUT | G_IO_PRI));
    if (!s->reg) {
        if (!push_reg(gp, fd))
            return SYNC_FAIL;
        s->reg = 1;
        s->events = want;
        return ctl(gp, EPOLL_CTL_ADD, fd, want) == 0 || errno == EEXIST ? SYNC_OK : SYNC_FAIL;
    }
    if (s->events == want && !verify)
        return SYNC_OK;
    s->events = want;
    if (ctl(gp, EPOLL_CTL_MOD, fd, want) == 0)
        return SYNC_OK;
    /* ENOENT: the number now names another file (closed and reused). */
    return errno == ENOENT && ctl(gp, EPOLL_CTL_ADD, fd, want) == 0 ? SYNC_OK : SYNC_FAIL;
}

/* Deletes registrations whose descriptor is no longer in the array. */
static void sweep(gpoll_t *gp)
{
    size_t i = 0;
    while (i < gp->nreg) {
        int fd = gp->reg[i];
        gp_slot_t *s = &gp->slots[fd];
        if (s->gen == gp->gen) {
            i++;
            continue;
        }
        (void)ctl(gp, EPOLL_CTL_DEL, fd, 0);    /* EBADF/ENOENT: already gone */
        s->reg = 0;
        gp->reg[i] = gp->reg[--gp->nreg];
    }
}

static gint epoll_poll(GPollFD *ufds, guint nfds, gint timeout)
{
    gpoll_t *gp = t_gp;
    if (!gp)
        return g_poll(ufds, nfds, timeout);
    gint64 now = g_get_monotonic_time();
    bool verify = gp->verify || now >= gp->next_verify;
    if (verify) {
        gp->verify = false;
        gp->next_verify = now + GPOLL_VERIFY_US;
    }
    gp->gen++;
    for (guint i = 0; i < nfds; i++) {
        ufds[i].revents = 0;
        sync_rc_t rc = ufds[i].fd >= 0 ? sync_one(gp, &ufds[i], i, verify) : SYNC_OK;
        if (rc != SYNC_OK) {
            gp->verify |= rc == SYNC_FAIL;
            return g_poll(ufds, nfds, timeout);
        }
    }
    sweep(gp);
    struct epoll_event evs[GPOLL_EVENTS];
    int n = epoll_wait(gp->epfd, evs, GPOLL_EVENTS, timeout);
    if (n < 0)
        return -1;                      /* errno from epoll_wait (EINTR) */
    gint ready = 0;
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        if (fd < 0 || (size_t)fd >= gp->nslots || gp->slots[fd].gen != gp->gen)
            continue;                   /* a stale registration of a reused number */
        GPollFD *p = &ufds[gp->slots[fd].idx];
        gushort rev = (gushort)(evs[i].events & (p->events | G_IO_ERR | G_IO_HUP));
        if (rev && !p->revents)
            ready++;
        p->revents |= rev;
    }
    return ready;
}

int pl_gpoll_attach(GMainContext *ctx)
{
    if (t_gp)
        return -EBUSY;
    gpoll_t *gp = calloc(1, sizeof(*gp));
    if (!gp)
        return -ENOMEM;
    gp->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (gp->epfd < 0) {
        int e = errno;
        free(gp);
        return -e;
    }
    t_gp = gp;
    g_main_context_set_poll_func(ctx, epoll_poll);
    return 0;
}

void pl_gpoll_detach(GMainContext *ctx)
{
    gpoll_t *gp = t_gp;
    if (!gp)
        return;
    g_main_context_set_poll_func(ctx, g_poll);
    t_gp = NULL;
    close(gp->epfd);
    free(gp->slots);
    free(gp->reg);
    free(gp);
}

void pl_gpoll_changed(void)
{
    if (t_gp)
        t_gp->verify = true;
}
