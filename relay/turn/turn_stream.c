/* turn_stream.c: TCP and TLS connections of a relay thread (RFC 8656 §3.1, RFC 8489
 * §6.2): the connection table, reading and stream framing (RFC 8656 §12.5, with the
 * RFC 5766 channel range), output buffers flushed once per loop iteration, the
 * back-pressure rules of turn_stream_int.h, closing (and what the core must hear of
 * it), the TLS handshake, and adopting a connection handed over by another thread.
 *
 * A connection's id is its table slot plus a 12-bit generation, so a stale id never
 * finds a newer connection in the same slot; the core uses it as pl_turn_conn_t.id.
 *
 * What it does not: listeners, accept and the relayed sockets of stream allocations
 * (turn_stream_lis.c), RFC 6062 pairs and hand-over (turn_tcprelay.c), OpenSSL calls
 * (turn_tls.c).
 *
 * Threading: the relay thread that owns the streams object. */
#include "relay/turn/turn_stream_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 16384u
#define READ_ROUNDS 4

/* ---- byte buffers -------------------------------------------------------------- */

size_t pl_turn_sbuf_reserve(pl_turn_sbuf_t *b, size_t want, size_t max)
{
    if (b->cap - b->off - b->len >= want)
        return b->cap - b->off - b->len;
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    size_t need = PL_MIN(b->len + want, max);
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need)
            cap *= 2;
        cap = PL_MIN(cap, max);
        b->data = pl_xrealloc(b->data, cap);
        b->cap = cap;
    }
    return b->cap - b->len;
}

int pl_turn_sbuf_append(pl_turn_sbuf_t *b, const void *p, size_t len, size_t max)
{
    if (b->len + len > max)
        return PL_ELIMIT;
    pl_turn_sbuf_reserve(b, len, max);
    memcpy(pl_turn_sbuf_tail(b), p, len);
    b->len += len;
    return 0;
}

void pl_turn_sbuf_free(pl_turn_sbuf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- the connection table ----------------------------------------------------- */

static uint32_t slot_take(pl_turn_streams_t *st)
{
    if (st->n_free == 0) {
        if (st->cap > PL_TURN_SC_SLOT_MASK)
            return UINT32_MAX;
        uint32_t cap = st->cap ? st->cap * 2 : 64;
        st->conns = pl_xrealloc(st->conns, cap * sizeof *st->conns);
        st->gen = pl_xrealloc(st->gen, cap * sizeof *st->gen);
        st->free_slots = pl_xrealloc(st->free_slots, cap * sizeof *st->free_slots);
        memset(st->conns + st->cap, 0, (cap - st->cap) * sizeof *st->conns);
        memset(st->gen + st->cap, 0, (cap - st->cap) * sizeof *st->gen);
        for (uint32_t s = cap; s-- > st->cap;)      /* low slots come out first */
            st->free_slots[st->n_free++] = s;
        st->cap = cap;
    }
    uint32_t slot = st->free_slots[--st->n_free];
    st->gen[slot] = (uint16_t)((st->gen[slot] + 1) & 0xFFF);
    return slot;
}

static void slot_release(pl_turn_streams_t *st, uint32_t id)
{
    uint32_t slot = id & PL_TURN_SC_SLOT_MASK;
    st->conns[slot] = NULL;
    st->free_slots[st->n_free++] = slot;
    st->n--;
}

pl_turn_sconn_t *pl_turn_sconn_find(const pl_turn_streams_t *st, uint32_t id)
{
    uint32_t slot = id & PL_TURN_SC_SLOT_MASK;
    if (slot >= st->cap)
        return NULL;
    pl_turn_sconn_t *c = st->conns[slot];
    return c && c->conn.id == id ? c : NULL;
}

static void on_io(pl_loop_t *loop, int fd, uint32_t events, void *arg);

pl_turn_sconn_t *pl_turn_sconn_new(pl_turn_streams_t *st, int fd, pl_turn_sconn_kind_t kind,
                                   pl_turn_transport_t transport, const pl_sockaddr_t *remote)
{
    uint32_t slot = slot_take(st);
    if (slot == UINT32_MAX) {
        close(fd);
        return NULL;
    }
    pl_turn_sconn_t *c = pl_xcalloc(1, sizeof *c);
    c->st = st;
    c->fd = fd;
    c->kind = (uint8_t)kind;
    c->mode = PL_TURN_SC_FRAMED;
    c->conn.transport = transport;
    c->conn.id = slot | (uint32_t)st->gen[slot] << PL_TURN_SC_SLOT_BITS;
    c->conn.client = *remote;
    pl_net_local_addr(fd, &c->conn.local);
    c->since_ms = pl_loop_now_ms(st->loop);
    if (pl_loop_add_fd(st->loop, fd, 0, on_io, c) != 0) {
        st->free_slots[st->n_free++] = slot;
        close(fd);
        free(c);
        return NULL;
    }
    st->conns[slot] = c;
    st->n++;
    if (kind == PL_TURN_SC_CLIENT)
        pl_metric_gauge_add(st->srv->shard, st->srv->mid->streams[transport - 1], 1);
    return c;
}

/* ---- reading and writing ------------------------------------------------------- */

ssize_t pl_turn_sconn_read(pl_turn_sconn_t *c, void *buf, size_t cap)
{
    if (c->ssl) {
        uint32_t want = 0;
        ssize_t n = pl_turn_tls_read(c->ssl, buf, cap, &want);
        c->tls_read_wants_write = n == -EAGAIN && want == PL_IO_WRITE;
        return n;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

ssize_t pl_turn_sconn_write(pl_turn_sconn_t *c, const void *buf, size_t len)
{
    if (c->ssl) {
        uint32_t want = 0;
        ssize_t n = pl_turn_tls_write(c->ssl, buf, len, &want);
        c->tls_write_wants_read = n == -EAGAIN && want == PL_IO_READ;
        return n;
    }
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

void pl_turn_sconn_update(pl_turn_sconn_t *c)
{
    if (c->dead)
        return;
    uint32_t ev = 0;
    switch (c->mode) {
    case PL_TURN_SC_HANDSHAKE: ev = c->tls_want ? c->tls_want : PL_IO_READ; break;
    case PL_TURN_SC_CONNECTING: ev = PL_IO_WRITE; break;
    case PL_TURN_SC_PENDING: ev = 0; break;     /* RFC 6062 §5.3: the kernel buffers */
    default:
        if (!c->read_paused && !c->closing)
            ev |= PL_IO_READ;
        if (c->out.len)
            ev |= PL_IO_WRITE;
        /* TLS: a read may wait for the socket to take a write, and vice versa. */
        if (c->tls_read_wants_write && (ev & PL_IO_READ))
            ev |= PL_IO_WRITE;
        if (c->tls_write_wants_read && c->out.len)
            ev |= PL_IO_READ;
        break;
    }
    if (ev != c->events && pl_loop_mod_fd(c->st->loop, c->fd, ev) == 0)
        c->events = ev;
}

static void on_flush(pl_loop_t *loop, pl_timer_t *t, void *arg);

void pl_turn_sconn_dirty(pl_turn_sconn_t *c)
{
    pl_turn_streams_t *st = c->st;
    if (c->dirty || c->dead)
        return;
    c->dirty = true;
    c->dirty_next = st->dirty;
    st->dirty = c;
    if (!pl_timer_is_armed(&st->flush))
        pl_timer_start(st->loop, &st->flush, 0, 0, on_flush, st);
}

void pl_turn_sconn_count_pause(pl_turn_sconn_t *c)
{
    pl_metric_inc(c->st->srv->shard, c->st->srv->mid->stream_pauses);
}

/* ---- closing ------------------------------------------------------------------- */

/* Unlinks c from list *pp; returns false when it is not there. */
static bool list_remove(pl_turn_sconn_t **pp, const pl_turn_sconn_t *c)
{
    for (; *pp; pp = &(*pp)->dirty_next) {
        if (*pp == c) {
            *pp = c->dirty_next;
            return true;
        }
    }
    return false;
}

static void sconn_free(pl_turn_sconn_t *c)
{
    if (c->dirty && !list_remove(&c->st->flushing, c))
        list_remove(&c->st->dirty, c);
    pl_turn_sbuf_free(&c->in);
    pl_turn_sbuf_free(&c->out);
    pl_turn_tls_free(c->ssl);
    free(c);
}

/* Drops a reference a callback took with busy++; frees a connection closed meanwhile. */
static void release(pl_turn_sconn_t *c)
{
    if (--c->busy > 0)
        return;
    if (c->dead)
        sconn_free(c);
    else
        pl_turn_sconn_update(c);
}

void pl_turn_sconn_unalloc_release(pl_turn_sconn_t *c)
{
    if (c->unalloc_counted) {
        c->unalloc_counted = false;
        pl_counts_put(c->st->shared->unalloc, c->ip);
    }
}

/* Out of the loop and the table; the fd is closed by the caller or kept. */
static void unregister(pl_turn_sconn_t *c)
{
    pl_turn_streams_t *st = c->st;
    c->dead = true;
    pl_loop_del_fd(st->loop, c->fd);
    slot_release(st, c->conn.id);
    pl_turn_sconn_unalloc_release(c);
    if (c->kind == PL_TURN_SC_CLIENT)
        pl_metric_gauge_add(st->srv->shard, st->srv->mid->streams[c->conn.transport - 1], -1);
}

void pl_turn_sconn_detach(pl_turn_sconn_t *c)
{
    if (c->dead)
        return;
    unregister(c);
    c->fd = -1;
    c->ssl = NULL;
    if (c->busy == 0)
        sconn_free(c);
}

/* A pair lost one side: the other flushes what it holds for its socket, then closes. */
static void unlink_pair(pl_turn_sconn_t *c)
{
    pl_turn_streams_t *st = c->st;
    pl_turn_sconn_t *link = c->link;
    pl_turn_sconn_t *peer = c->kind == PL_TURN_SC_PEER ? c : link;
    pl_turn_tcpconn_t *tc = peer ? peer->tc : NULL;
    if (link) {
        link->link = NULL;
        c->link = NULL;
    }
    if (tc) {
        tc->io_data = NULL;
        peer->tc = NULL;
        pl_turn_server_tcp_gone(st->srv, tc);
    }
    if (!link || link->dead)
        return;
    if (link->out.len > 0) {
        link->closing = true;
        link->since_ms = pl_loop_now_ms(st->loop);
        pl_turn_sconn_update(link);
    } else {
        pl_turn_sconn_close(link, "pair_closed");
    }
}

void pl_turn_sconn_close(pl_turn_sconn_t *c, const char *why)
{
    if (c->dead)
        return;
    pl_turn_streams_t *st = c->st;
    c->busy++;      /* the core may close other connections from here */
    if (PL_LOG_DEBUG_ON()) {
        char a[PL_SOCKADDR_STRLEN];
        pl_log_debug("turn.stream.closed", "thread=%u conn=%08x kind=%s remote=%s why=%s",
                     st->idx, c->conn.id, c->kind == PL_TURN_SC_PEER ? "peer" : "client",
                     pl_sockaddr_str(&c->conn.client, a, sizeof a), why);
    }
    if (c->ssl && c->mode != PL_TURN_SC_HANDSHAKE)
        pl_turn_tls_shutdown(c->ssl);
    unregister(c);
    close(c->fd);
    c->fd = -1;
    if (c->link || c->tc)
        unlink_pair(c);
    /* A control connection takes its allocation with it. */
    if (c->kind == PL_TURN_SC_CLIENT && c->mode != PL_TURN_SC_RAW)
        pl_turn_server_conn_closed(st->srv, &c->conn);
    release(c);
}

/* ---- output ---------------------------------------------------------------------- */

static void do_read(pl_turn_sconn_t *c);
static void process_frames(pl_turn_sconn_t *c);

/* c's output drained below the low-water mark: restart what feeds it. */
static void resume_feeders(pl_turn_sconn_t *c)
{
    if (c->mode == PL_TURN_SC_FRAMED) {
        if (c->relays_paused) {
            c->relays_paused = false;
            pl_turn_alloc_t *a = pl_turn_alloc_find(c->st->srv, &c->conn);
            for (int f = 0; a && !a->tcp && f < 2; f++) {
                if (a->relay[f].fd < 0)
                    continue;
                pl_turn_streams_count_drops(c->st, &a->relay[f], true);
                pl_loop_mod_fd(c->st->loop, a->relay[f].fd, PL_IO_READ);
            }
        }
        if (c->read_paused) {
            c->read_paused = false;
            process_frames(c);
            if (!c->dead && c->ssl)
                do_read(c);     /* TLS may hold decrypted bytes epoll cannot see */
        }
    } else if (c->mode == PL_TURN_SC_RAW && c->link && c->link->read_paused) {
        pl_turn_sconn_t *l = c->link;
        l->read_paused = false;
        l->busy++;
        pl_turn_tcprelay_pump(l);
        release(l);
    }
}

/* How much of c's output to hand to one write. TLS framed output goes one frame per
 * record: a record boundary means nothing in TLS, but clients that read a record as
 * one message exist (coturn's turnutils_uclient does), and coturn writes this way. */
static size_t write_chunk(pl_turn_sconn_t *c)
{
    if (!c->ssl || c->mode != PL_TURN_SC_FRAMED)
        return c->out.len;
    if (c->frame_left == 0) {
        int f = pl_turn_frame_len(pl_turn_sbuf_head(&c->out), c->out.len);
        c->frame_left = f > 0 ? (size_t)f : c->out.len;
    }
    return PL_MIN(c->frame_left, c->out.len);
}

static void do_write(pl_turn_sconn_t *c)
{
    while (c->out.len > 0) {
        size_t chunk = write_chunk(c);
        ssize_t n = pl_turn_sconn_write(c, pl_turn_sbuf_head(&c->out), chunk);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            pl_turn_sconn_close(c, "write_error");
            return;
        }
        pl_turn_sbuf_consume(&c->out, (size_t)n);
        c->frame_left = c->frame_left > (size_t)n ? c->frame_left - (size_t)n : 0;
    }
    if (c->out.len == 0 && c->closing) {
        pl_turn_sconn_close(c, "flushed");
        return;
    }
    /* An idle connection holds no buffer memory (a malloc per busy batch is cheap next
     * to its system calls). */
    if (c->out.len == 0)
        pl_turn_sbuf_free(&c->out);
    if (c->out.len <= PL_TURN_OUT_LOW)
        resume_feeders(c);
}

/* Writes what this iteration queued. Connections queued meanwhile (a write that
 * resumed a reader) wait for the next iteration, so a fast pair cannot keep the loop
 * from its other sockets. */
static void on_flush(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(t);
    pl_turn_streams_t *st = arg;
    pl_turn_sconn_t *c;
    st->flushing = st->dirty;
    st->dirty = NULL;
    while ((c = st->flushing) != NULL) {
        st->flushing = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        c->busy++;
        if (c->read_again) {
            c->read_again = false;
            do_read(c);
        }
        if (!c->dead && c->out.len)
            do_write(c);
        release(c);
    }
}

int pl_turn_streams_send(pl_turn_streams_t *st, const pl_turn_conn_t *conn, const uint8_t *buf,
                         size_t len)
{
    pl_turn_sconn_t *c = pl_turn_sconn_find(st, conn->id);
    if (!c || c->dead || c->mode != PL_TURN_SC_FRAMED || c->conn.transport != conn->transport)
        return -ENOTCONN;
    /* Unreachable by design (readers stop at the high-water mark); a bug would show
     * here as send_failed drops rather than as memory growth. */
    if (pl_turn_sbuf_append(&c->out, buf, len, PL_TURN_OUT_MAX) != 0)
        return -ENOBUFS;
    pl_turn_sconn_dirty(c);
    return 0;
}

/* ---- input --------------------------------------------------------------------- */

static void pause_reading(pl_turn_sconn_t *c)
{
    if (!c->read_paused) {
        c->read_paused = true;
        pl_turn_sconn_count_pause(c);
    }
}

/* Hands complete frames to the core while the output has room. Once a ConnectionBind
 * made c a data connection, what is left is the client's first raw bytes. */
static void process_frames(pl_turn_sconn_t *c)
{
    pl_turn_server_t *srv = c->st->srv;
    while (!c->dead && c->mode == PL_TURN_SC_FRAMED && c->in.len > 0) {
        if (c->out.len >= PL_TURN_OUT_HIGH) {
            pause_reading(c);
            return;
        }
        uint8_t *p = pl_turn_sbuf_head(&c->in);
        int flen = pl_turn_frame_len(p, c->in.len);
        if (flen < 0) {
            pl_turn_drop(srv, PL_TURN_DROP_MALFORMED);
            pl_turn_sconn_close(c, "bad_frame");
            return;
        }
        if (flen == 0)
            return;
        if (pl_turn_tcprelay_handover(c, p, (size_t)flen))
            return;
        pl_turn_server_input(srv, &c->conn, p, (size_t)flen);
        if (!c->dead)
            pl_turn_sbuf_consume(&c->in, (size_t)flen);
    }
    if (!c->dead && c->mode == PL_TURN_SC_RAW && c->in.len > 0 && c->link) {
        /* RFC 6062 §5.4: bytes after the ConnectionBind go to the peer as they are;
         * the peer's buffer is empty at bind, and in.len < PL_TURN_OUT_MAX. */
        pl_turn_sbuf_append(&c->link->out, pl_turn_sbuf_head(&c->in), c->in.len, PL_TURN_OUT_MAX);
        pl_turn_sconn_dirty(c->link);
    }
    if (!c->dead && c->mode == PL_TURN_SC_RAW)
        pl_turn_sbuf_free(&c->in);
}

/* Reads and processes; returns false when the socket has nothing more for now. */
static bool read_framed_once(pl_turn_sconn_t *c)
{
    size_t room = pl_turn_sbuf_reserve(&c->in, READ_CHUNK, PL_TURN_IN_MAX);
    ssize_t n = pl_turn_sconn_read(c, pl_turn_sbuf_tail(&c->in), room);
    if (n == -EAGAIN)
        return false;
    if (n <= 0) {
        pl_turn_sconn_close(c, n == 0 ? "eof" : "read_error");
        return false;
    }
    pl_turn_sbuf_commit(&c->in, (size_t)n);
    c->since_ms = pl_loop_now_ms(c->st->loop);
    process_frames(c);
    return (size_t)n == room || c->ssl;     /* a short plain read drained the socket */
}

static void read_framed(pl_turn_sconn_t *c)
{
    bool more = true;
    for (int round = 0; round < READ_ROUNDS && more; round++) {
        if (c->dead || c->mode != PL_TURN_SC_FRAMED || c->read_paused || c->closing)
            return;
        more = read_framed_once(c);
    }
    if (c->dead)
        return;
    if (more && c->ssl) {
        c->read_again = true;   /* TLS may hold bytes that no epoll event announces */
        pl_turn_sconn_dirty(c);
    }
    if (c->in.len == 0)
        pl_turn_sbuf_free(&c->in);  /* no partial frame: an idle connection holds nothing */
}

static void do_read(pl_turn_sconn_t *c)
{
    if (c->mode == PL_TURN_SC_RAW)
        pl_turn_tcprelay_pump(c);
    else
        read_framed(c);
}

static void step_handshake(pl_turn_sconn_t *c)
{
    uint32_t want = 0;
    int rc = pl_turn_tls_handshake(c->ssl, &want);
    if (rc < 0) {
        pl_turn_sconn_close(c, "tls_handshake_failed");
        return;
    }
    if (rc == 0) {
        c->tls_want = want;
        return;
    }
    c->mode = PL_TURN_SC_FRAMED;
    c->since_ms = pl_loop_now_ms(c->st->loop);
    do_read(c);
}

static void on_io(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(fd);
    pl_turn_sconn_t *c = arg;
    c->busy++;
    if (c->mode == PL_TURN_SC_CONNECTING) {
        pl_turn_tcprelay_connected(c);
    } else if (c->mode == PL_TURN_SC_HANDSHAKE) {
        step_handshake(c);
    } else if (c->mode == PL_TURN_SC_PENDING ||
               ((events & PL_IO_READ) && !(c->events & PL_IO_READ))) {
        /* Nothing asked to read: a hang-up or error (level-triggered, it would repeat). */
        pl_turn_sconn_close(c, "hangup");
    } else if (c->ssl) {
        if (c->out.len)
            do_write(c);
        if (!c->dead)
            do_read(c);
    } else {
        if ((events & PL_IO_WRITE) && c->out.len)
            do_write(c);
        if (!c->dead && (events & PL_IO_READ))
            do_read(c);
    }
    release(c);
}

void pl_turn_sconn_adopt(pl_turn_streams_t *st, int fd, struct ssl_st *ssl,
                         pl_turn_transport_t transport, const pl_sockaddr_t *remote,
                         const uint8_t *input, size_t len)
{
    pl_turn_sconn_t *c = pl_turn_sconn_new(st, fd, PL_TURN_SC_CLIENT, transport, remote);
    if (!c) {
        pl_turn_tls_free(ssl);
        return;
    }
    c->ssl = ssl;
    c->busy++;
    pl_turn_sbuf_append(&c->in, input, len, PL_TURN_IN_MAX);
    process_frames(c);
    if (!c->dead)
        do_read(c);
    release(c);
}
