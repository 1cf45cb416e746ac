/* turn_int.h: declarations shared by the files of relay/turn only (not a public
 * contract: other modules include relay/turn/pl_turn.h).
 *
 * The TURN server is three layers:
 *   settings  (turn_config.c)  an immutable, reference-counted snapshot parsed from the
 *                              [turn] config section; swapped per thread on reload.
 *   core      (turn_server.c, turn_alloc.c, turn_auth.c, turn_perm.c, turn_policy.c)
 *                              the RFC 8489/8656 protocol logic of one relay thread,
 *                              written against pl_turn_io_ops_t (no sockets, no loop),
 *                              so unit tests drive it with a fake I/O and a fake clock.
 *   data plane (turn_relay.c, turn_module.c)
 *                              relay threads: a pl_loop each, SO_REUSEPORT listeners,
 *                              relayed sockets, recvmmsg/sendmmsg; the module hooks.
 * Cross-thread state lives only in pl_turn_shared_t (turn_shared.c): the relay port
 * pool (atomic bitmap), per-user allocation counts and reservation tokens (leaf
 * mutexes, control plane only).
 *
 * Threading: a pl_turn_server_t and every allocation in it belong to one relay thread;
 * all pl_turn_server_* functions run on that thread. pl_turn_shared_* are thread-safe. */
#ifndef PL_TURN_INT_H
#define PL_TURN_INT_H

#include "relay/turn/pl_turn.h"
#include "relay/stun/pl_stun.h"
#include "core/pl_counts.h"
#include "core/pl_net.h"
#include "core/pl_metrics.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---------------------------------------------------------------------------------
 * Settings: the parsed [turn] section (turn_config.c)
 * ------------------------------------------------------------------------------- */

#define PL_TURN_MAX_LISTEN 8
#define PL_TURN_MAX_EXTERNAL 4
#define PL_TURN_MAX_ALT 16
#define PL_TURN_PERMISSION_S_DEFAULT 300    /* RFC 8656 §9: permission lifetime */
#define PL_TURN_CHANNEL_S_DEFAULT 600       /* RFC 8656 §12: channel binding lifetime */
#define PL_TURN_RESERVATION_MS 30000        /* RFC 8656 §7.2: "about 30 seconds" */

typedef struct pl_turn_user {
    char *name;                 /* owned, NUL-terminated */
    size_t name_len;
    pl_stun_key_t key_md5;      /* MD5(user:realm:password) */
    pl_stun_key_t key_sha256;   /* SHA-256(user:realm:password) */
    uint8_t userhash[32];       /* SHA-256(user:realm), RFC 8489 §14.4 */
} pl_turn_user_t;

typedef struct pl_turn_external {
    pl_sockaddr_t pub;          /* advertised address (port ignored) */
    pl_sockaddr_t priv;         /* the local relay address it stands for, when has_priv */
    bool has_priv;
} pl_turn_external_t;

typedef struct pl_turn_settings {
    _Atomic unsigned refs;
    char *realm;                        /* owned */
    char *software;                     /* owned; NULL = no SOFTWARE attribute */
    pl_turn_user_t *users;              /* owned, sorted by name */
    size_t n_users;
    char **secrets;                     /* owned REST secrets, current first */
    size_t n_secrets;
    uint64_t rest_ttl_s;
    pl_cidr_t *allowed, *denied;        /* owned */
    size_t n_allowed, n_denied;
    pl_sockaddr_t *self;                /* owned: the server's own IPs (port 0) */
    size_t n_self;
    pl_sockaddr_t listen[PL_TURN_MAX_LISTEN];
    size_t n_listen;
    pl_sockaddr_t tls_listen[PL_TURN_MAX_LISTEN];
    size_t n_tls_listen;
    pl_sockaddr_t relay[2];             /* [0] IPv4, [1] IPv6 relay bind address */
    bool has_relay[2];
    pl_turn_external_t external[PL_TURN_MAX_EXTERNAL];
    size_t n_external;
    pl_sockaddr_t alt[PL_TURN_MAX_ALT]; /* ALTERNATE-SERVER candidates */
    size_t n_alt;
    uint16_t port_lo, port_hi;
    unsigned threads;                   /* resolved: >= 1 */
    uint32_t max_allocations;           /* 0 = unlimited */
    uint32_t user_quota;                /* 0 = unlimited */
    uint64_t max_bps;                   /* bytes/s per allocation and direction; 0 = none */
    uint32_t default_lifetime_s, max_lifetime_s;
    uint32_t permission_lifetime_s, channel_lifetime_s;
    uint32_t nonce_lifetime_s;
    uint32_t unauth_rate;               /* requests/s per source IP; 0 = unlimited */
    uint32_t max_unalloc_per_ip;        /* TCP/TLS connections without an allocation per
                                           source IP; 0 = unlimited */
    char *tls_cert, *tls_key;           /* owned; NULL when not set */
    struct ssl_ctx_st *tls_ctx;         /* owned reference: the loaded cert/key (turn_tls.c),
                                         * NULL without tls_cert; new TLS connections use
                                         * the one of the thread's current snapshot */
} pl_turn_settings_t;

/* The [turn] option table and validate hook (turn_config.c). */
extern const pl_opt_table_t pl_turn_options;
int pl_turn_validate(const pl_config_t *cfg, pl_config_error_t *err);

/* Builds a snapshot from cfg. Returns 0 and an owned *out (refs = 1), or PL_ECONFIG
 * with err filled in (one line). Control plane: computes every user's keys. */
int pl_turn_settings_build(const pl_config_t *cfg, pl_turn_settings_t **out,
                           pl_config_error_t *err);
pl_turn_settings_t *pl_turn_settings_ref(pl_turn_settings_t *s);
void pl_turn_settings_unref(pl_turn_settings_t *s);
/* A static user by name or by USERHASH, or NULL. */
const pl_turn_user_t *pl_turn_settings_user(const pl_turn_settings_t *s, const void *name,
                                            size_t len);
const pl_turn_user_t *pl_turn_settings_userhash(const pl_turn_settings_t *s,
                                                const uint8_t hash[32]);
/* The address advertised for a relay socket bound to local (RFC 8656 §3.2 external
 * mapping, coturn's external-ip "public/private"). */
void pl_turn_settings_advertised(const pl_turn_settings_t *s, const pl_sockaddr_t *local,
                                 pl_sockaddr_t *out);

/* ---------------------------------------------------------------------------------
 * Peer-address policy (turn_policy.c)
 * ------------------------------------------------------------------------------- */

/* True when the server may relay to peer's IP: allowed_peers matches, or neither the
 * built-in deny ranges, denied_peers nor the server's own addresses match. IPv4-mapped,
 * IPv4-compatible, NAT64 (64:ff9b::/96) and 6to4 (2002::/16) forms are judged by the
 * IPv4 address they embed (CVE-2020-26262). */
bool pl_turn_peer_allowed(const pl_turn_settings_t *s, const pl_sockaddr_t *peer);
/* True when peer's IP is in one of the built-in deny ranges (for tests and docs). */
bool pl_turn_peer_builtin_denied(const pl_sockaddr_t *peer);

/* ---------------------------------------------------------------------------------
 * Cross-thread state (turn_shared.c)
 * ------------------------------------------------------------------------------- */

typedef struct pl_turn_ports {
    uint16_t lo, hi;
    _Atomic uint64_t *bits;     /* owned; bit set = port in use */
    size_t n_words;
} pl_turn_ports_t;

typedef struct pl_turn_reservation {
    uint64_t token;
    uint64_t expires_ms;
    uint16_t port;
    uint8_t fam_idx;            /* 0 IPv4, 1 IPv6 */
    int hold_fd;                /* socket bound to the port meanwhile, or -1 */
} pl_turn_reservation_t;

typedef struct pl_turn_quota_entry pl_turn_quota_entry_t;

/* The unauthenticated rate limit: token buckets by source IP, shared by every relay
 * thread (SO_REUSEPORT spreads one address's source ports over all of them, so
 * per-thread buckets would grant threads x turn.unauth_rate). A slot is guarded by the
 * stripe lock of its index (leaf locks); a collision simply restarts the bucket. */
#define PL_TURN_RL_SLOTS 8192
#define PL_TURN_RL_STRIPES 64

typedef struct pl_turn_rl_slot {
    uint8_t ip[16];
    uint32_t tokens_milli;          /* tokens * 1000 */
    uint64_t last_ms;
} pl_turn_rl_slot_t;

typedef struct pl_turn_rl {
    uint64_t seed;                  /* hash seed, random, immutable after create */
    pthread_mutex_t lock[PL_TURN_RL_STRIPES];
    pl_turn_rl_slot_t slot[PL_TURN_RL_SLOTS];
} pl_turn_rl_t;

#define PL_TURN_MAX_THREADS 64      /* turn.threads maximum; a CONNECTION-ID names one */

typedef struct pl_turn_shared {
    pl_turn_ports_t ports[2];               /* [0] IPv4 relay, [1] IPv6 relay */
    pthread_mutex_t quota_lock;             /* leaf: guards the next three */
    pl_turn_quota_entry_t **quota;          /* open hash by user name */
    size_t quota_cap, quota_n;
    uint32_t total;                         /* allocations on all threads */
    pthread_mutex_t resv_lock;              /* leaf: guards resv */
    pl_turn_reservation_t *resv;
    size_t n_resv, cap_resv;
    pl_stun_nonce_key_t nonce_key;          /* immutable after create */
    pl_turn_rl_t rl;                        /* unauthenticated rate (turn_server.c) */
    pl_counts_t *unalloc;                   /* source IP -> stream connections without an
                                               allocation (turn_stream*.c; own leaf lock) */
    _Atomic unsigned alt_rr;                /* ALTERNATE-SERVER round robin */
    /* Every relay thread's stream side, by thread index, for the RFC 6062 ConnectionBind
     * hand-over (turn_stream.c). Written on the main thread before any relay thread
     * starts, read-only afterwards; the target is reached only by posting to its loop. */
    struct pl_turn_streams *streams[PL_TURN_MAX_THREADS];
    unsigned n_streams;
} pl_turn_shared_t;

/* Creates the shared state for ports lo..hi (inclusive). nonce_lifetime_s seeds the
 * nonce key (random secret). Returns an owned object; aborts on OOM. */
pl_turn_shared_t *pl_turn_shared_create(uint16_t lo, uint16_t hi, uint32_t nonce_lifetime_s);
void pl_turn_shared_destroy(pl_turn_shared_t *sh);

/* Takes a free port of family fam_idx, starting the search at a random point (rnd).
 * even: the port must be even; pair: port+1 is taken too (EVEN-PORT R bit). Returns 0
 * or -ENOSPC. Lock-free. */
int pl_turn_ports_take(pl_turn_ports_t *p, uint32_t rnd, bool even, bool pair,
                       uint16_t *out);
/* Takes one given port; returns 0 or -EBUSY. */
int pl_turn_ports_take_one(pl_turn_ports_t *p, uint16_t port);
void pl_turn_ports_release(pl_turn_ports_t *p, uint16_t port);
size_t pl_turn_ports_in_use(const pl_turn_ports_t *p);

/* Counts one more allocation for user (quota key) against user_quota and
 * max_total (0 = unlimited). Returns 0, -EDQUOT (user quota: 486) or -ENOSPC (total:
 * 508). */
int pl_turn_quota_acquire(pl_turn_shared_t *sh, const char *user, uint32_t user_quota,
                          uint32_t max_total);
void pl_turn_quota_release(pl_turn_shared_t *sh, const char *user);
uint32_t pl_turn_quota_user(pl_turn_shared_t *sh, const char *user);

/* Records that port (already taken in the pool; held by the socket hold_fd, or -1) is
 * reserved under token until now_ms + PL_TURN_RESERVATION_MS. Returns 0 or -ENOSPC
 * (table full; hold_fd is then still the caller's). */
typedef struct pl_turn_resv_item {
    uint64_t token;
    uint8_t fam_idx;
    uint16_t port;
    int hold_fd;
} pl_turn_resv_item_t;
int pl_turn_resv_add(pl_turn_shared_t *sh, const pl_turn_resv_item_t *item, uint64_t now_ms);
/* Removes the reservation and hands its port (still taken) and its hold descriptor
 * (close it before binding the port) to the caller. Returns 0, or -ENOENT when unknown
 * or expired. */
int pl_turn_resv_take(pl_turn_shared_t *sh, uint64_t now_ms, pl_turn_resv_item_t *item);
/* Releases the ports (and closes the hold sockets) of expired reservations. */
void pl_turn_resv_sweep(pl_turn_shared_t *sh, uint64_t now_ms);

/* ---------------------------------------------------------------------------------
 * Metrics (turn_metrics.c): ids registered once; each relay thread writes its shard.
 * ------------------------------------------------------------------------------- */

enum { PL_TURN_DIR_C2P = 0, PL_TURN_DIR_P2C = 1 };

typedef enum pl_turn_drop {
    PL_TURN_DROP_MALFORMED, PL_TURN_DROP_NOT_STUN, PL_TURN_DROP_NO_ALLOCATION,
    PL_TURN_DROP_NO_CHANNEL, PL_TURN_DROP_NO_PERMISSION,
    PL_TURN_DROP_RATE_LIMITED, PL_TURN_DROP_BANDWIDTH, PL_TURN_DROP_SEND_FAILED,
    PL_TURN_DROP_TRUNCATED, PL_TURN_DROP_BAD_FINGERPRINT, PL_TURN_DROP_UNEXPECTED,
    PL_TURN_DROP_CLIENT_BACKPRESSURE,   /* peer datagrams the kernel dropped while a
                                         * TCP/TLS client's output was full */
    PL_TURN_DROP_RELAY_OVERFLOW,        /* ... dropped while being read: the relay thread
                                         * did not keep up (stream clients' relays) */
    PL_TURN_DROP_N
} pl_turn_drop_t;

typedef enum pl_turn_authfail {
    PL_TURN_AUTH_MISSING_ATTR, PL_TURN_AUTH_UNKNOWN_USER, PL_TURN_AUTH_BAD_INTEGRITY,
    PL_TURN_AUTH_STALE_NONCE, PL_TURN_AUTH_EXPIRED, PL_TURN_AUTH_WRONG_REALM,
    PL_TURN_AUTH_BAD_ALGORITHM, PL_TURN_AUTH_WRONG_CREDENTIALS, PL_TURN_AUTH_N
} pl_turn_authfail_t;

#define PL_TURN_N_CODES 16      /* response codes tracked, see pl_turn_code_index */

typedef struct pl_turn_metric_ids {
    pl_metric_id_t allocs[3][2];            /* [transport][family] gauge */
    pl_metric_id_t pkts[2], bytes[2];       /* [direction] */
    pl_metric_id_t drops[PL_TURN_DROP_N];
    pl_metric_id_t authfail[PL_TURN_AUTH_N];
    pl_metric_id_t responses[PL_TURN_N_CODES];
    pl_metric_id_t lifetime_hist;
    pl_metric_id_t streams[2];              /* [tcp, tls] client connections open (gauge) */
    pl_metric_id_t stream_accepts[2];       /* [tcp, tls] connections accepted */
    pl_metric_id_t stream_refused;          /* closed at accept: max_unallocated_per_ip */
    pl_metric_id_t stream_pauses;           /* back-pressure pauses (output full) */
    pl_metric_id_t stream_handovers;        /* ConnectionBinds passed to their owner thread */
    pl_metric_id_t tcp_peers;               /* RFC 6062 peer data connections open (gauge) */
    pl_metric_id_t allocs_created;
} pl_turn_metric_ids_t;

/* Registers every parley_turn_* series in reg. */
void pl_turn_metrics_register(pl_metrics_t *reg, pl_turn_metric_ids_t *ids);
/* Index into responses[] for a STUN error code (0 = success); unknown codes share the
 * last slot ("other"). */
size_t pl_turn_code_index(int code);
extern const int pl_turn_codes[PL_TURN_N_CODES];
extern const char *const pl_turn_drop_names[PL_TURN_DROP_N];
extern const char *const pl_turn_authfail_names[PL_TURN_AUTH_N];

/* ---------------------------------------------------------------------------------
 * The protocol core's I/O interface
 * ------------------------------------------------------------------------------- */

/* How the client reached us. Stream transports are the seam for TCP/TLS (RFC 6062 and
 * plain TURN over TCP/TLS): the data plane frames the stream with pl_stun_frame_len and
 * hands the core one frame at a time; the core pads ChannelData for streams. */
typedef enum pl_turn_transport {
    PL_TURN_UDP = 0,
    PL_TURN_TCP = 1,
    PL_TURN_TLS = 2,
} pl_turn_transport_t;

typedef struct pl_turn_conn {
    pl_turn_transport_t transport;
    uint32_t id;                /* UDP: the thread's listener index; TCP/TLS: connection id */
    pl_sockaddr_t client;       /* remote address */
    pl_sockaddr_t local;        /* our address the client sent to */
} pl_turn_conn_t;

typedef struct pl_turn_alloc pl_turn_alloc_t;
struct pl_turn_tcpconn;             /* RFC 6062 peer data connection, below */

/* One relayed transport address of an allocation (embedded in it). */
typedef struct pl_turn_relay {
    int fd;                     /* set by relay_open; -1 when closed */
    uint8_t fam_idx;            /* 0 IPv4, 1 IPv6 */
    bool df;                    /* DF currently set on the socket (io-managed) */
    bool port_taken;            /* the port bit is ours to release */
    pl_sockaddr_t addr;         /* bound local address */
    pl_sockaddr_t advertised;   /* XOR-RELAYED-ADDRESS */
    pl_turn_alloc_t *alloc;     /* back pointer */
    void *io_data;              /* the I/O implementation's own use */
    uint32_t rxq_drops;         /* io: last SO_RXQ_OVFL count seen (stream clients) */
    int hold_fd;                /* io: a TCP allocation's UDP socket holding its port, or -1 */
} pl_turn_relay_t;

enum { PL_TURN_SEND_DF = 1u << 0 };     /* send_peer flags: DONT-FRAGMENT */

/* The core's view of the outside world. All calls happen on the server's thread. */
typedef struct pl_turn_io_ops {
    /* Monotonic milliseconds (lifetimes) and wall-clock unix seconds (nonces, REST
     * credential expiry). */
    uint64_t (*now_ms)(void *ctx);
    uint64_t (*wall_s)(void *ctx);
    /* Sends a STUN message or ChannelData frame to the client. buf is borrowed for
     * the call (the io copies or sends it before returning, or recognizes its own
     * buffer, see turn_relay.c). Returns 0 or -errno (the core counts a drop). */
    int (*send_client)(void *ctx, const pl_turn_conn_t *conn, const uint8_t *buf,
                       size_t len);
    /* Opens a UDP socket bound to relay->addr (port set) and watches it. Returns 0,
     * -EADDRINUSE (the core tries another port) or -errno. Sets relay->fd. */
    int (*relay_open)(void *ctx, pl_turn_relay_t *relay);
    /* Closes relay->fd (and stops watching it); sets relay->fd = -1. */
    void (*relay_close)(void *ctx, pl_turn_relay_t *relay);
    /* Sends one datagram from relay to peer. flags: PL_TURN_SEND_DF. Returns 0 or
     * -errno. */
    int (*send_peer)(void *ctx, pl_turn_relay_t *relay, const pl_sockaddr_t *peer,
                     const uint8_t *buf, size_t len, unsigned flags);
    /* Optional (NULL: a reservation is kept in the port pool only). Binds a UDP socket
     * to addr and returns its descriptor, so no other process takes the port while an
     * EVEN-PORT reservation waits for its RESERVATION-TOKEN (RFC 8656 §7.2); -EADDRINUSE
     * when something already has it, or -errno. The core closes the descriptor when the
     * reservation is claimed (just before the claiming relay_open) or expires, on
     * whichever relay thread that happens. */
    int (*port_hold)(void *ctx, const pl_sockaddr_t *addr);
} pl_turn_io_ops_t;

/* RFC 6062 TCP relaying: the io operations beyond pl_turn_io_ops_t, given to the
 * server with pl_turn_server_set_tcp_ops (without them TCP allocations get 442). They
 * get the server's io_ctx. relay_open of an allocation with tcp set opens a listening
 * TCP socket (peers that connect: pl_turn_server_tcp_incoming).
 *   connect  starts a non-blocking connect from relay's address to tc->peer; the io
 *            reports the outcome later with pl_turn_server_tcp_connected. 0 or -errno.
 *   bind     makes the client data connection data_conn carry tc's bytes both ways,
 *            after the success response already queued on it. 0 or -errno.
 *   close    closes the peer connection and the client data connection bound to it;
 *            the io reports nothing back. */
typedef struct pl_turn_tcp_ops {
    int (*connect)(void *ctx, pl_turn_relay_t *relay, struct pl_turn_tcpconn *tc);
    int (*bind)(void *ctx, struct pl_turn_tcpconn *tc, const pl_turn_conn_t *data_conn);
    void (*close)(void *ctx, struct pl_turn_tcpconn *tc);
} pl_turn_tcp_ops_t;

/* Room the data plane leaves before and after peer data handed to
 * pl_turn_server_peer_input, so the core can frame in place: a Data indication header
 * (20) + XOR-PEER-ADDRESS (4 + 20) + DATA header (4) = 48 before; padding (3) after. */
#define PL_TURN_HEADROOM 48u
#define PL_TURN_TAILROOM 4u

/* ---------------------------------------------------------------------------------
 * ChannelData with the RFC 5766 channel range
 *
 * RFC 8656 §12 narrowed client channels to 0x4000-0x4FFF and reserved 0x5000-0x7FFF,
 * but RFC 5766 §11 allowed 0x4000-0x7FFF and RFC 5766 clients still use it (coturn's
 * turnutils_uclient binds e.g. 0x582f). A server can accept the wider range safely:
 * first bytes 0x40-0x7F are nothing else in RFC 7983 demultiplexing. The codec's
 * pl_stun_chandata_parse/_frame implement the RFC 8656 range; the server uses these
 * wrappers around the codec's shared bodies (pl_stun_chandata_parse_upto/_write).
 * ------------------------------------------------------------------------------- */

#define PL_TURN_CHANNEL_MIN 0x4000u
#define PL_TURN_CHANNEL_MAX 0x7FFFu

static inline bool pl_turn_channel_valid(uint32_t ch)
{
    return ch >= PL_TURN_CHANNEL_MIN && ch <= PL_TURN_CHANNEL_MAX;
}

/* True when a datagram starts like ChannelData (first two bits 01). */
static inline bool pl_turn_is_chandata(const uint8_t *p, size_t n)
{
    return n >= PL_STUN_CHANDATA_HEADER_LEN && (p[0] & 0xC0) == 0x40;
}

/* Parses ChannelData (RFC 8656 §12.4, padding allowed) in the RFC 5766 channel range.
 * Returns 0 or PL_EPARSE. */
static inline int pl_turn_chandata_parse(const uint8_t *p, size_t n, pl_stun_chandata_t *out)
{
    return pl_stun_chandata_parse_upto(p, n, PL_TURN_CHANNEL_MAX, out);
}

/* Writes the 4-byte header in front of data_len bytes at buf + 4 and, for streams,
 * zero padding to a multiple of 4 (RFC 8656 §12.5). Returns the frame length, or
 * PL_EPARSE / PL_ELIMIT as pl_stun_chandata_frame. */
static inline int pl_turn_chandata_frame(uint8_t *buf, size_t cap, uint16_t channel,
                                         size_t data_len, bool stream)
{
    if (!pl_turn_channel_valid(channel))
        return PL_EPARSE;
    return pl_stun_chandata_write(buf, cap, channel, data_len, stream);
}

/* Stream framing for TCP/TLS clients (RFC 8656 §12.5) with the RFC 5766 channel range:
 * pl_stun_frame_len refuses first bytes 0x50-0x7F, which RFC 5766 clients send. Returns
 * the length of the first complete frame, 0 when more bytes are needed, or PL_EPARSE
 * (close the connection). */
static inline int pl_turn_frame_len(const uint8_t *p, size_t n)
{
    if (n >= 1 && p[0] >= 0x50 && p[0] <= 0x7F) {
        if (n < PL_STUN_CHANDATA_HEADER_LEN)
            return 0;
        size_t framed = (PL_STUN_CHANDATA_HEADER_LEN + pl_stun_rd16(p + 2) + 3) & ~(size_t)3;
        return n >= framed ? (int)framed : 0;
    }
    return pl_stun_frame_len(p, n);
}

/* ---------------------------------------------------------------------------------
 * Allocations (turn_alloc.c)
 * ------------------------------------------------------------------------------- */

typedef struct pl_turn_perm {
    uint8_t fam_idx;
    uint8_t ip[16];             /* 4 bytes used for IPv4 */
    uint64_t expires_ms;
} pl_turn_perm_t;

typedef struct pl_turn_chan {
    uint16_t num;
    pl_sockaddr_t peer;
    uint64_t expires_ms;
} pl_turn_chan_t;

#define PL_TURN_MAX_PERMS 64        /* per allocation: beyond, 508 */
#define PL_TURN_MAX_CHANS 64

typedef struct pl_turn_bucket {     /* token bucket for max_bps, one per direction */
    uint64_t tokens;
    uint64_t last_ms;
} pl_turn_bucket_t;

struct pl_turn_alloc {
    uint64_t seq;                   /* per-thread id: logs read alloc=t<thread>-<seq> */
    pl_turn_conn_t conn;            /* the 5-tuple (RFC 8656 §2.2) */
    char *user;                     /* owned: USERNAME that created it (441 check) */
    char *quota_user;               /* owned: key for user_quota (REST: the user part) */
    pl_turn_relay_t relay[2];       /* [0] IPv4, [1] IPv6; fd -1 when absent */
    uint64_t created_ms, expires_ms;
    uint8_t tid[PL_STUN_TID_LEN];   /* the creating Allocate, for retransmits */
    uint64_t resv_token;            /* RESERVATION-TOKEN handed out, 0 = none */
    uint32_t lifetime_s;            /* as granted by the last Allocate/Refresh */
    bool df_all;                    /* Allocate had DONT-FRAGMENT: DF on every datagram */
    uint8_t addr_err_fam;           /* ADDITIONAL-ADDRESS-FAMILY not served: its family */
    pl_turn_perm_t *perms;          /* owned */
    uint16_t n_perms, cap_perms;
    pl_turn_chan_t *chans;          /* owned */
    uint16_t n_chans, cap_chans;
    pl_turn_bucket_t bucket[2];     /* [direction] */
    uint64_t pkts[2], bytes[2];     /* [direction] */
    size_t list_idx;                /* index in the server's dense list */
    bool tcp;                       /* RFC 6062: relays are listening TCP sockets */
    struct pl_turn_tcpconn *tcpconns;   /* owned: its peer data connections */
};

/* ---------------------------------------------------------------------------------
 * The per-thread protocol core (turn_server.c and friends)
 * ------------------------------------------------------------------------------- */

#define PL_TURN_TXBUF 2048          /* responses are built here */

typedef struct pl_turn_server {
    const pl_turn_io_ops_t *io;
    void *io_ctx;
    pl_turn_settings_t *set;        /* a reference */
    pl_turn_shared_t *shared;       /* borrowed */
    pl_metrics_shard_t *shard;      /* borrowed, this thread's */
    const pl_turn_metric_ids_t *mid;/* borrowed */
    unsigned thread_idx;
    uint64_t next_seq;
    uint32_t rng;                   /* xorshift32 for port picks */
    bool draining;
    pl_turn_alloc_t **table;        /* open addressing by 5-tuple; owned */
    size_t table_cap, table_used;   /* used counts tombstones */
    pl_turn_alloc_t **list;         /* dense list of live allocations; owned */
    size_t n_list, cap_list;
    uint8_t tx[PL_TURN_TXBUF];
    struct pl_turn_tcp *tcp;        /* owned: RFC 6062 connection ids (turn_tcp.c) */
    const pl_turn_tcp_ops_t *tcp_ops;   /* NULL: no TCP relaying */
} pl_turn_server_t;

typedef struct pl_turn_server_cfg {
    const pl_turn_io_ops_t *io;
    void *io_ctx;
    pl_turn_settings_t *settings;   /* the server takes its own reference */
    pl_turn_shared_t *shared;
    pl_metrics_shard_t *shard;
    const pl_turn_metric_ids_t *mid;
    unsigned thread_idx;
} pl_turn_server_cfg_t;

/* Creates a server for one thread. Returns an owned object; aborts on OOM. */
pl_turn_server_t *pl_turn_server_create(const pl_turn_server_cfg_t *cfg);
/* Deletes every allocation (closing relays, releasing ports and quotas) and frees. */
void pl_turn_server_destroy(pl_turn_server_t *s);
/* Enables RFC 6062 TCP relaying with the io's TCP operations (borrowed, static). */
void pl_turn_server_set_tcp_ops(pl_turn_server_t *s, const pl_turn_tcp_ops_t *ops);
/* Swaps the settings snapshot (reload). Takes a new reference; drops the old one. */
void pl_turn_server_set_settings(pl_turn_server_t *s, pl_turn_settings_t *set);
/* Drain: new Allocates get 300 (alternate servers configured) or 508; existing
 * allocations keep working until they expire or are deleted. */
void pl_turn_server_drain(pl_turn_server_t *s);

/* A datagram (UDP) or one complete frame (TCP/TLS) from a client. buf is writable and
 * borrowed for the call. */
void pl_turn_server_input(pl_turn_server_t *s, const pl_turn_conn_t *conn, uint8_t *buf,
                          size_t len);
/* A datagram from a peer on relay. data has PL_TURN_HEADROOM writable bytes before it
 * and PL_TURN_TAILROOM after it. */
void pl_turn_server_peer_input(pl_turn_server_t *s, pl_turn_relay_t *relay,
                               const pl_sockaddr_t *peer, uint8_t *data, size_t len);
/* Expires allocations, permissions, channels and reservations. Call about once a
 * second. Returns how many allocations expired. */
size_t pl_turn_server_tick(pl_turn_server_t *s);
size_t pl_turn_server_count(const pl_turn_server_t *s);
/* Appends a JSON array of allocations (user, 5-tuple, relays, age, bytes), at most
 * max entries. */
void pl_turn_server_stats_json(const pl_turn_server_t *s, pl_buf_t *out, size_t max);

/* ---- internals shared by the core's files ---- */

/* turn_alloc.c */
pl_turn_alloc_t *pl_turn_alloc_find(const pl_turn_server_t *s, const pl_turn_conn_t *conn);
/* Creates an allocation for conn (no relays yet) after charging the quotas. Returns 0
 * and *out, -EDQUOT (user quota) or -ENOSPC (max_allocations). */
int pl_turn_alloc_new(pl_turn_server_t *s, const pl_turn_conn_t *conn, const char *user,
                      const char *quota_user, pl_turn_alloc_t **out);
/* Unlinks, closes relays, releases ports, quota and reservation, frees. why: "expired",
 * "refresh", "shutdown" (for the log line). */
void pl_turn_alloc_delete(pl_turn_server_t *s, pl_turn_alloc_t *a, const char *why);
/* Opens relay fam_idx of a on a port from the pool (even/pair per EVEN-PORT) or on
 * port (when port_given). Returns 0, -ENOSPC (no port) or -errno. With pair, *pair_port
 * gets port+1 (taken in the pool, for a reservation) and *hold_fd a socket bound to it
 * (io port_hold), or -1: a pair whose odd port another process has is skipped. */
typedef struct pl_turn_relay_req {
    uint8_t fam_idx;
    bool even, pair, port_given;
    uint16_t port;
} pl_turn_relay_req_t;
int pl_turn_alloc_open_relay(pl_turn_server_t *s, pl_turn_alloc_t *a,
                             const pl_turn_relay_req_t *req, uint16_t *pair_port,
                             int *hold_fd);
/* Closes relay fam_idx of a (if open) and releases its port. (A failed
 * pl_turn_alloc_open_relay has already released the port it took or was given.) */
void pl_turn_alloc_close_relay(pl_turn_server_t *s, pl_turn_alloc_t *a, int fam_idx);
pl_turn_perm_t *pl_turn_perm_find(pl_turn_alloc_t *a, const pl_sockaddr_t *peer,
                                  uint64_t now_ms);
/* Installs or refreshes a permission. Returns 0 or -ENOSPC. */
int pl_turn_perm_add(pl_turn_alloc_t *a, const pl_sockaddr_t *peer, uint64_t expires_ms);
pl_turn_chan_t *pl_turn_chan_by_num(pl_turn_alloc_t *a, uint16_t num, uint64_t now_ms);
pl_turn_chan_t *pl_turn_chan_by_peer(pl_turn_alloc_t *a, const pl_sockaddr_t *peer,
                                     uint64_t now_ms);
/* Binds or refreshes a channel. Returns 0 or -ENOSPC. */
int pl_turn_chan_add(pl_turn_alloc_t *a, uint16_t num, const pl_sockaddr_t *peer,
                     uint64_t expires_ms);
/* Drops expired permissions and channels of a. */
void pl_turn_alloc_prune(pl_turn_alloc_t *a, uint64_t now_ms);
/* Family index of an address (0 IPv4 incl. v4-mapped, 1 IPv6), or -1. */
int pl_turn_fam_idx(const pl_sockaddr_t *a);
/* Token bucket: true when len bytes may pass in direction dir. */
bool pl_turn_alloc_bw_ok(pl_turn_server_t *s, pl_turn_alloc_t *a, int dir, size_t len,
                         uint64_t now_ms);

/* turn_auth.c */
typedef struct pl_turn_auth {
    char user[PL_TURN_REST_USERNAME_MAX];       /* USERNAME (or the static user for USERHASH) */
    char quota_user[PL_TURN_REST_USERNAME_MAX]; /* REST: the part after "expiry:" */
    pl_stun_key_t key;          /* signs the response */
    bool sha256;                /* the request used MESSAGE-INTEGRITY-SHA256 */
} pl_turn_auth_t;
/* Authenticates a request with long-term credentials (RFC 8489 §9.2.4). Returns 0 and
 * fills *out, or a STUN error code (400, 401, 438) after sending that error response
 * (or nothing when rate limited). */
int pl_turn_auth_check(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                       const pl_stun_msg_t *m, pl_turn_auth_t *out);

/* turn_server.c: replies */
typedef struct pl_turn_reply {
    pl_stun_builder_t b;
    const pl_stun_msg_t *req;
    const pl_turn_auth_t *auth;     /* NULL: unauthenticated reply (no MI) */
} pl_turn_reply_t;
/* Starts a reply in s->tx. */
void pl_turn_reply_start(pl_turn_server_t *s, pl_turn_reply_t *r, const pl_stun_msg_t *req,
                         uint8_t cls, const pl_turn_auth_t *auth);
/* Adds SOFTWARE (when set), integrity (when auth) and FINGERPRINT (when the request
 * had one), sends it and counts the response code. */
void pl_turn_reply_send(pl_turn_server_t *s, pl_turn_reply_t *r, const pl_turn_conn_t *conn,
                        int code);
/* Sends an error response with code (and reason NULL = standard phrase). */
void pl_turn_reply_error(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                         const pl_stun_msg_t *req, const pl_turn_auth_t *auth, int code);
/* Per-source token bucket for unauthenticated responses over UDP; false = drop
 * (counted). Stream clients are never limited here: their address is proven by the
 * handshake, so they cannot aim our answers at anyone else, and their number per address
 * is capped at accept (turn.max_unallocated_per_ip). */
bool pl_turn_rate_ok(pl_turn_server_t *s, const pl_turn_conn_t *conn, uint64_t now_ms);
static inline void pl_turn_drop(pl_turn_server_t *s, pl_turn_drop_t why)
{
    pl_metric_inc(s->shard, s->mid->drops[why]);
}
static inline uint64_t pl_turn_now_ms(const pl_turn_server_t *s)
{
    return s->io->now_ms(s->io_ctx);
}

/* turn_perm.c: the methods on an existing allocation and the data paths */
void pl_turn_handle_create_permission(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                      const pl_stun_msg_t *m, const pl_turn_auth_t *auth);
void pl_turn_handle_channel_bind(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                 const pl_stun_msg_t *m, const pl_turn_auth_t *auth);
void pl_turn_handle_send(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                         const pl_stun_msg_t *m);
void pl_turn_handle_channel_data(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                 const uint8_t *buf, size_t len);
/* Looks up the allocation of conn for a request; on mismatch sends 437 / 441 and
 * returns NULL. */
pl_turn_alloc_t *pl_turn_alloc_for_request(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                           const pl_stun_msg_t *m, const pl_turn_auth_t *auth);

/* turn_allocate.c */
void pl_turn_handle_allocate(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                             const pl_stun_msg_t *m, const pl_turn_auth_t *auth);
void pl_turn_handle_refresh(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                            const pl_stun_msg_t *m, const pl_turn_auth_t *auth);

/* ---------------------------------------------------------------------------------
 * TCP/TLS client connections and RFC 6062 TCP relaying in the core (turn_tcp.c)
 * ------------------------------------------------------------------------------- */

#define PL_TURN_TCP_TIMEOUT_MS 30000    /* RFC 6062 §5.2 connect, §5.3/§5.4 bind: 30 s */

typedef enum pl_turn_tc_state {
    PL_TURN_TC_CONNECTING = 0,      /* Connect sent to the peer, not answered yet */
    PL_TURN_TC_PENDING = 1,         /* connected (or accepted), waiting for ConnectionBind */
    PL_TURN_TC_BOUND = 2,           /* relaying to a client data connection */
} pl_turn_tc_state_t;

/* How to answer a Connect once the peer connection is up or has failed. */
typedef struct pl_turn_deferred {
    uint8_t tid[PL_STUN_TID_LEN];
    pl_stun_key_t key;
    bool sha256, fingerprint;
} pl_turn_deferred_t;

/* One peer data connection of a TCP allocation (RFC 6062 §5.2, §5.3). Owned by the
 * core (listed in its allocation); its socket belongs to the io (io_data). */
typedef struct pl_turn_tcpconn {
    uint32_t cid;                   /* CONNECTION-ID: thread index << 24 | random */
    uint8_t state;                  /* pl_turn_tc_state_t */
    uint8_t fam_idx;                /* the relay it uses */
    pl_sockaddr_t peer;
    pl_turn_alloc_t *alloc;         /* owner */
    struct pl_turn_tcpconn *next;   /* in alloc->tcpconns */
    uint64_t deadline_ms;           /* CONNECTING: answer 447; PENDING: close */
    uint32_t data_conn_id;          /* BOUND: the client data connection */
    pl_turn_deferred_t reply;       /* CONNECTING: the Connect to answer */
    void *io_data;                  /* the io's socket object */
} pl_turn_tcpconn_t;

/* The relay thread that owns a CONNECTION-ID. */
static inline unsigned pl_turn_cid_thread(uint32_t cid)
{
    return cid >> 24;
}

/* RFC 6062 §5.1 checks of an Allocate asking for TCP: 0, or the error code (400 over
 * UDP or with DONT-FRAGMENT / EVEN-PORT / RESERVATION-TOKEN, 442 when the io has no
 * TCP relaying). */
int pl_turn_tcp_allocate_check(const pl_turn_server_t *s, const pl_turn_conn_t *conn,
                               const pl_stun_msg_t *m);
void pl_turn_handle_connect(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                            const pl_stun_msg_t *m, const pl_turn_auth_t *auth);
void pl_turn_handle_connection_bind(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                    const pl_stun_msg_t *m, const pl_turn_auth_t *auth);
/* Closes (io tcp_close) and frees every peer connection of a (allocation deletion). */
void pl_turn_tcp_alloc_deleted(pl_turn_server_t *s, pl_turn_alloc_t *a);
/* Answers 447 to Connects past their deadline, closes unbound connections past 30 s. */
void pl_turn_tcp_tick(pl_turn_server_t *s, uint64_t now_ms);
void pl_turn_tcp_destroy(pl_turn_server_t *s);

/* ---- what the io reports ---- */

/* A TCP/TLS client connection closed: the allocation made on it is deleted (its
 * 5-tuple names the connection, which no later request can use again). */
void pl_turn_server_conn_closed(pl_turn_server_t *s, const pl_turn_conn_t *conn);
/* The outcome of tcp_connect: err 0 answers the Connect with its CONNECTION-ID and
 * waits for ConnectionBind; an error answers 447 and frees tc (the io has already
 * closed its socket). */
void pl_turn_server_tcp_connected(pl_turn_server_t *s, pl_turn_tcpconn_t *tc, int err);
/* A peer connected to relay (a TCP allocation's listening socket) from peer. Returns
 * the new connection, after sending the client a ConnectionAttempt indication
 * (RFC 6062 §5.3), or NULL: no permission for peer, or too many connections; the io
 * then closes the socket. */
pl_turn_tcpconn_t *pl_turn_server_tcp_incoming(pl_turn_server_t *s, pl_turn_relay_t *relay,
                                               const pl_sockaddr_t *peer);
/* The io closed tc's sockets on its own (EOF or error on either side): frees tc
 * without calling tcp_close. */
void pl_turn_server_tcp_gone(pl_turn_server_t *s, pl_turn_tcpconn_t *tc);

/* ---------------------------------------------------------------------------------
 * Relay threads (turn_relay.c): the data plane around one pl_turn_server_t
 * ------------------------------------------------------------------------------- */

typedef struct pl_turn_thread pl_turn_thread_t;

typedef struct pl_turn_thread_cfg {
    unsigned idx;
    pl_turn_settings_t *settings;       /* the thread takes its own reference */
    pl_turn_shared_t *shared;
    pl_metrics_shard_t *shard;
    const pl_turn_metric_ids_t *mid;
    const pl_sockaddr_t *listen;        /* UDP (and TCP) addresses, ports resolved (0 = any) */
    size_t n_listen;
    const pl_sockaddr_t *tls_listen;    /* TLS addresses, ports resolved; used when the
                                         * settings have a tls_ctx */
    size_t n_tls_listen;
} pl_turn_thread_cfg_t;

/* Creates a relay thread's loop, server and SO_REUSEPORT listeners (not running yet).
 * Main thread. Returns 0 and an owned *out, or -errno (bind failed). */
int pl_turn_thread_create(const pl_turn_thread_cfg_t *cfg, pl_turn_thread_t **out);
/* The bound address of listener i (to resolve port 0 for the next threads). */
void pl_turn_thread_listen_addr(const pl_turn_thread_t *th, size_t i, pl_sockaddr_t *out);
/* The bound address of TLS listener i. */
void pl_turn_thread_tls_addr(const pl_turn_thread_t *th, size_t i, pl_sockaddr_t *out);
/* Starts the thread. Returns 0 or -errno. */
int pl_turn_thread_start(pl_turn_thread_t *th);
/* Stops the loop, joins the thread (which deletes its allocations and closes its
 * sockets on its own loop) and frees everything. Main thread. */
void pl_turn_thread_destroy(pl_turn_thread_t *th);
/* Stops the loop and joins the thread, leaving the loop to destroy: stop every thread
 * with this before destroying any, so a thread still running never posts (a
 * ConnectionBind hand-over) to a destroyed loop. Idempotent. Main thread. */
void pl_turn_thread_join(pl_turn_thread_t *th);
/* Posted to the thread: new settings (reload), drain. Any thread. */
void pl_turn_thread_post_settings(pl_turn_thread_t *th, pl_turn_settings_t *set);
void pl_turn_thread_post_drain(pl_turn_thread_t *th);
/* Appends the elements (comma-separated JSON objects, no brackets; nothing when
 * empty) of the thread's last published allocation list, refreshed every second, and
 * returns its allocation count. Any thread (leaf lock). */
size_t pl_turn_thread_snapshot(pl_turn_thread_t *th, pl_buf_t *out);

/* Formats "t<thread>-<seq>" into buf. */
const char *pl_turn_alloc_name(const pl_turn_server_t *s, const pl_turn_alloc_t *a,
                               char *buf, size_t cap);

#endif
