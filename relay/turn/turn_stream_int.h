/* turn_stream_int.h: TCP and TLS in the relay threads' data plane, shared by
 *   turn_stream.c     listeners, client connections, stream framing, output buffers,
 *                     back-pressure, the relayed UDP sockets of stream allocations
 *   turn_tcprelay.c   RFC 6062: relayed TCP listeners, connects to peers, raw relaying
 *                     of bound pairs, the ConnectionBind hand-over between threads
 *   turn_tls.c        OpenSSL: contexts, non-blocking handshake/read/write
 * and the hooks turn_relay.c calls. Not a contract outside relay/turn.
 *
 * Connections (pl_turn_sconn_t) are of two kinds: CLIENT (accepted on a TCP or TLS
 * listener; framed TURN, or raw bytes once bound as an RFC 6062 client data
 * connection) and PEER (an RFC 6062 peer data connection from or to a relayed TCP
 * address). A bound CLIENT/PEER pair relays raw bytes: reading one side appends to
 * the other side's output buffer.
 *
 * Back-pressure, never a silent drop: every output buffer has a high-water mark.
 * Above it, whatever feeds the buffer stops being read: the client's own socket (its
 * requests produce responses), the allocation's relayed UDP sockets (peer datagrams
 * then wait in the kernel, which drops them when its buffer is full: counted as
 * drops{reason="client_backpressure"} from the socket's drop counter; drops while the
 * socket was being read count as relay_overflow), or the other side of a raw
 * pair (TCP flow control pushes back to the sender). Reading resumes below the
 * low-water mark.
 *
 * Threading: a connection belongs to the relay thread that accepted or opened it;
 * only the ConnectionBind hand-over moves one (its fd and SSL object travel in a
 * message; the sender forgets them first). */
#ifndef PL_TURN_STREAM_INT_H
#define PL_TURN_STREAM_INT_H

#include "relay/turn/turn_int.h"
#include "core/pl_loop.h"

#include <sys/socket.h>

struct ssl_st;

/* ---- a byte buffer: data[off, off + len), grown up to a caller's maximum ---- */

typedef struct pl_turn_sbuf {
    uint8_t *data;                  /* owned; NULL until first needed */
    size_t off, len, cap;
} pl_turn_sbuf_t;

/* Makes at least want bytes free after the data (moving the data to the front or
 * growing, never past max bytes in all) and returns the free tail room, which is
 * smaller than want only when max does not allow more. */
size_t pl_turn_sbuf_reserve(pl_turn_sbuf_t *b, size_t want, size_t max);
/* Appends len bytes. Returns 0, or PL_ELIMIT (nothing appended) beyond max. */
int pl_turn_sbuf_append(pl_turn_sbuf_t *b, const void *p, size_t len, size_t max);
void pl_turn_sbuf_free(pl_turn_sbuf_t *b);

static inline uint8_t *pl_turn_sbuf_head(const pl_turn_sbuf_t *b)
{
    return b->data + b->off;
}
static inline uint8_t *pl_turn_sbuf_tail(const pl_turn_sbuf_t *b)
{
    return b->data + b->off + b->len;
}
static inline void pl_turn_sbuf_commit(pl_turn_sbuf_t *b, size_t n)
{
    b->len += n;
}
static inline void pl_turn_sbuf_consume(pl_turn_sbuf_t *b, size_t n)
{
    b->off += n;
    b->len -= n;
    if (b->len == 0)
        b->off = 0;
}

/* Output above HIGH stops the readers that feed it; below LOW they resume. MAX bounds
 * the buffer: by design at most one response (< PL_TURN_TXBUF) is added past HIGH. */
#define PL_TURN_OUT_HIGH (256u * 1024u)
#define PL_TURN_OUT_LOW (64u * 1024u)
#define PL_TURN_OUT_MAX (PL_TURN_OUT_HIGH + 2u * PL_TURN_TXBUF)
/* Input: one whole frame (the largest STUN message) always fits. */
#define PL_TURN_IN_MAX (PL_STUN_MAX_MSG_LEN + 64u)
#define PL_TURN_IDLE_MS 60000u          /* a client connection without an allocation */
#define PL_TURN_HANDSHAKE_MS 10000u     /* TLS handshake */
#define PL_TURN_LINGER_MS 10000u        /* flushing the output of a closing connection */

/* ---- connections ---- */

typedef enum pl_turn_sconn_kind { PL_TURN_SC_CLIENT = 0, PL_TURN_SC_PEER = 1 } pl_turn_sconn_kind_t;

typedef enum pl_turn_sconn_mode {
    PL_TURN_SC_HANDSHAKE,   /* TLS handshake in progress */
    PL_TURN_SC_FRAMED,      /* TURN messages and ChannelData (RFC 8656 §12.5 framing) */
    PL_TURN_SC_RAW,         /* a bound RFC 6062 pair: bytes to/from the link */
    PL_TURN_SC_CONNECTING,  /* PEER: non-blocking connect in progress */
    PL_TURN_SC_PENDING,     /* PEER: connected, not read until bound (RFC 6062 §5.3) */
} pl_turn_sconn_mode_t;

typedef struct pl_turn_streams pl_turn_streams_t;
typedef struct pl_turn_sconn pl_turn_sconn_t;

struct pl_turn_sconn {
    pl_turn_streams_t *st;
    pl_turn_conn_t conn;            /* transport, id (table key), client (remote), local */
    int fd;
    struct ssl_st *ssl;             /* owned (TLS clients) */
    uint8_t kind, mode;
    bool dead;                      /* closed; freed when no callback holds it */
    bool closing;                   /* flush the output, then close (no more reading) */
    bool read_paused;               /* back-pressure: what this connection feeds is full */
    bool relays_paused;             /* this client's full output stopped its relays */
    bool dirty;                     /* on the flush list */
    bool read_again;                /* TLS: a read budget ran out; read on the flush */
    bool unalloc_counted;           /* in shared->unalloc under ip (no allocation yet) */
    char ip[48];
    bool tls_read_wants_write, tls_write_wants_read;
    uint32_t tls_want;              /* HANDSHAKE: PL_IO_* the handshake waits for */
    uint32_t events;                /* current epoll interest */
    unsigned busy;                  /* callbacks on the stack holding it */
    uint64_t since_ms;              /* last input (idle), handshake or linger start */
    size_t frame_left;              /* TLS framed: bytes of the frame being written */
    pl_turn_sbuf_t in, out;
    pl_turn_sconn_t *link;          /* RAW pair: the other side */
    pl_turn_tcpconn_t *tc;          /* PEER: the core's record (NULL once detached) */
    pl_turn_sconn_t *dirty_next;
};

/* The connection no longer counts against its address (turn.max_unallocated_per_ip):
 * it made an allocation, became a data connection, or leaves. */
void pl_turn_sconn_unalloc_release(pl_turn_sconn_t *c);

/* Thread hooks (turn_relay.c). The streams object lives as long as the thread. */
typedef struct pl_turn_streams_cfg {
    pl_loop_t *loop;
    pl_turn_server_t *srv;
    pl_turn_shared_t *shared;
    unsigned idx;
    const pl_sockaddr_t *listen;    /* TCP listeners: the UDP addresses as bound */
    size_t n_listen;
    const pl_sockaddr_t *tls_listen;
    size_t n_tls_listen;            /* 0 unless the settings carry a TLS context */
} pl_turn_streams_cfg_t;

/* Opens the SO_REUSEPORT TCP and TLS listeners, registers in shared->streams and
 * gives the server the RFC 6062 operations. Returns 0 and an owned *out, or -errno. */
int pl_turn_streams_create(const pl_turn_streams_cfg_t *cfg, pl_turn_streams_t **out);
/* Closes every connection and listener (their allocations are deleted) on the home
 * thread, before the server is destroyed. The object stays valid for posters. */
void pl_turn_streams_close_all(pl_turn_streams_t *st);
/* Frees. After every relay thread has stopped. */
void pl_turn_streams_destroy(pl_turn_streams_t *st);
void pl_turn_streams_tls_addr(const pl_turn_streams_t *st, size_t i, pl_sockaddr_t *out);
/* io send_client for TCP/TLS connections: copies into the output buffer. 0 or
 * -ENOTCONN (closed), -ENOBUFS (beyond PL_TURN_OUT_MAX, counted). */
int pl_turn_streams_send(pl_turn_streams_t *st, const pl_turn_conn_t *conn, const uint8_t *buf,
                         size_t len);
/* io relay_open for allocations of TCP/TLS clients: a UDP socket read with
 * back-pressure, or for TCP allocations a listening TCP socket. */
int pl_turn_streams_relay_open(pl_turn_streams_t *st, pl_turn_relay_t *relay);
/* io relay_close for allocations of TCP/TLS clients (counts the last kernel drops). */
void pl_turn_streams_relay_close(pl_turn_streams_t *st, pl_turn_relay_t *relay);
/* Counts the kernel's drops on a stream allocation's relayed UDP socket so far, as
 * client_backpressure when reading it was paused, else as relay_overflow. */
void pl_turn_streams_count_drops(pl_turn_streams_t *st, pl_turn_relay_t *relay, bool paused);
/* The thread's streams from the io context (turn_relay.c). */
pl_turn_streams_t *pl_turn_thread_streams(void *io_ctx);

/* ---- shared by turn_stream.c and turn_tcprelay.c ---- */

typedef struct pl_turn_lis {
    pl_turn_streams_t *st;
    int fd;
    bool tls;
    bool paused;                                /* out of fds: resumed by the tick */
    pl_sockaddr_t addr;                         /* bound */
} pl_turn_lis_t;

struct pl_turn_streams {
    pl_loop_t *loop;
    pl_turn_server_t *srv;
    pl_turn_shared_t *shared;
    unsigned idx;
    pl_turn_lis_t lis[2][PL_TURN_MAX_LISTEN];   /* [tcp, tls] */
    size_t n_lis[2];
    pl_turn_sconn_t **conns;                    /* by id & PL_TURN_SC_SLOT_MASK */
    uint32_t cap, n;
    uint32_t *free_slots;
    uint32_t n_free;
    uint16_t *gen;                              /* per slot, changes on every reuse */
    pl_turn_sconn_t *dirty;                     /* flush list */
    pl_turn_sconn_t *flushing;                  /* the part being flushed now */
    pl_timer_t flush, tick;
    struct relay_rx *rx;                        /* owned: receive batch for relays */
    bool closed;
};

#define PL_TURN_SC_SLOT_BITS 20
#define PL_TURN_SC_SLOT_MASK ((1u << PL_TURN_SC_SLOT_BITS) - 1)

/* Creates a connection for fd (non-blocking, now owned), watched by the loop.
 * Returns NULL (fd closed) when the table is full or epoll fails. */
pl_turn_sconn_t *pl_turn_sconn_new(pl_turn_streams_t *st, int fd, pl_turn_sconn_kind_t kind,
                                   pl_turn_transport_t transport, const pl_sockaddr_t *remote);
pl_turn_sconn_t *pl_turn_sconn_find(const pl_turn_streams_t *st, uint32_t id);
/* Closes c (why for the debug log): unlinks its pair and tells the core (allocation
 * deleted, tcp_gone); the other side of a pair flushes its output first. Frees c now
 * or when the last callback holding it returns. */
void pl_turn_sconn_close(pl_turn_sconn_t *c, const char *why);
/* Forgets c without closing its fd or freeing its TLS object (the caller took both):
 * out of the loop and the table, freed when no callback holds it. */
void pl_turn_sconn_detach(pl_turn_sconn_t *c);
/* Recomputes the epoll interest from the connection's state. */
void pl_turn_sconn_update(pl_turn_sconn_t *c);
/* Queues c for writing at the end of this loop iteration. */
void pl_turn_sconn_dirty(pl_turn_sconn_t *c);
/* Reads/writes the socket or TLS. Returns > 0 bytes, 0 at EOF (read), -EAGAIN, or
 * another negative code (the connection is broken). */
ssize_t pl_turn_sconn_read(pl_turn_sconn_t *c, void *buf, size_t cap);
ssize_t pl_turn_sconn_write(pl_turn_sconn_t *c, const void *buf, size_t len);
/* Counts a back-pressure pause. */
void pl_turn_sconn_count_pause(pl_turn_sconn_t *c);
/* Adopts a client connection handed over by another thread: input holds the bytes
 * read so far (from the ConnectionBind frame on). Takes ownership of fd and ssl. */
void pl_turn_sconn_adopt(pl_turn_streams_t *st, int fd, struct ssl_st *ssl,
                         pl_turn_transport_t transport, const pl_sockaddr_t *remote,
                         const uint8_t *input, size_t len);

/* turn_tcprelay.c */
extern const pl_turn_tcp_ops_t pl_turn_stream_tcp_ops;
/* Opens the listening TCP socket of a TCP allocation's relay. 0 or -errno. */
int pl_turn_tcprelay_listen(pl_turn_streams_t *st, pl_turn_relay_t *relay);
/* RAW mode: reads from c into its link's output, with back-pressure. */
void pl_turn_tcprelay_pump(pl_turn_sconn_t *c);
/* CONNECTING: the socket became writable. */
void pl_turn_tcprelay_connected(pl_turn_sconn_t *c);
/* A complete frame at the head of c->in that is a ConnectionBind for a connection
 * another thread owns: hands c over to that thread (c is closed here without
 * touching its fd) and returns true. */
bool pl_turn_tcprelay_handover(pl_turn_sconn_t *c, const uint8_t *frame, size_t len);

/* turn_tls.c */
/* Loads cert (PEM chain) and key into a new server context. Returns 0, or
 * PL_ECRYPTO with a one-line reason in err. */
int pl_turn_tls_ctx_build(const char *cert, const char *key, struct ssl_ctx_st **out,
                          char *err, size_t cap);
void pl_turn_tls_ctx_free(struct ssl_ctx_st *ctx);
/* A server-side TLS object on fd (not owned). NULL on failure. */
struct ssl_st *pl_turn_tls_new(struct ssl_ctx_st *ctx, int fd);
void pl_turn_tls_free(struct ssl_st *ssl);
/* One handshake step: 1 done, 0 in progress (*want = PL_IO_READ/WRITE), < 0 failed. */
int pl_turn_tls_handshake(struct ssl_st *ssl, uint32_t *want);
/* As pl_turn_sconn_read/write; on -EAGAIN *want tells what the call waits for. */
ssize_t pl_turn_tls_read(struct ssl_st *ssl, void *buf, size_t cap, uint32_t *want);
ssize_t pl_turn_tls_write(struct ssl_st *ssl, const void *buf, size_t len, uint32_t *want);
/* Sends close_notify, best effort (never blocks). */
void pl_turn_tls_shutdown(struct ssl_st *ssl);

#endif
