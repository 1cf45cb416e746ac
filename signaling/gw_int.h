/* gw_int.h: the gateway's private structures, shared by gateway.c (threads, contexts,
 * inboxes, registration, sending by id), conn.c (the parley.v1 WebSocket protocol) and
 * http.c (the HTTP API and static files). Not for other modules.
 *
 * Threading: a pl_sig_thread_t's slots, connections and metric shard belong to its
 * service thread; its inbox is shared behind a leaf mutex. The gateway's tables are
 * immutable once started; its reloadable limits are atomics. */
#ifndef PL_SIG_GW_INT_H
#define PL_SIG_GW_INT_H

#include "signaling/sig_int.h"
#include "core/pl_counts.h"
#include "core/pl_metrics.h"

#include <libwebsockets.h>
#include <stdatomic.h>

/* ---- HTTP routes (http.c) -------------------------------------------------------- */

typedef struct pl_sig_http_req {
    pl_sig_gateway_t *gw;
    uint64_t http_id;           /* names the transaction for pl_sig_http_respond */
    unsigned thread;
    int method;                 /* LWSHUMETH_* */
    const char *path;           /* "/v1/devices/17" */
    const char *suffix;         /* for prefix routes: what follows the prefix */
    json_t *body;               /* parsed JSON body (POST), or NULL */
    const char *bearer;         /* Authorization: Bearer token, or NULL */
    const char *peer;           /* client IP text */
} pl_sig_http_req_t;

typedef void (*pl_sig_http_fn)(pl_sig_http_req_t *req, void *arg);

typedef struct pl_sig_http_route {
    int method;                 /* LWSHUMETH_GET / POST / DELETE */
    const char *path;           /* exact path, or a prefix ending in '/' when prefix */
    bool prefix;
    bool needs_body;            /* POST: a JSON object body is required */
    pl_sig_http_fn fn;
} pl_sig_http_route_t;

int pl_sig_gateway_add_http_routes(pl_sig_gateway_t *gw, const pl_sig_http_route_t *routes,
                                   size_t n, void *arg);
/* Answers an HTTP transaction with status and a JSON body (owned; NULL = empty object).
 * Any thread. A transaction whose client has gone is dropped. */
void pl_sig_http_respond(pl_sig_gateway_t *gw, uint64_t http_id, int status, json_t *body);
/* Answers with {"error":{"code":code,"message":message}}. Any thread. */
void pl_sig_http_error(pl_sig_gateway_t *gw, uint64_t http_id, int status, const char *code,
                       const char *message);

/* ---- options --------------------------------------------------------------------- */

typedef struct pl_sig_gw_opts {
    const char *listen;             /* borrowed from the config snapshot */
    const char *tls_listen;
    const char *tls_cert;           /* "" = no TLS listener */
    const char *tls_key;
    const char *web_root;           /* "" = no static files */
    unsigned threads;
    uint32_t max_frame;             /* bytes */
    uint32_t send_queue_max;        /* bytes */
    uint32_t max_connections;
    uint32_t max_body;              /* HTTP request body bytes */
    uint32_t auth_timeout_ms;
    uint16_t ping_interval_s;
    uint16_t idle_timeout_s;
    bool libev;                     /* lws on a libev (epoll) loop, else lws_service/poll */
} pl_sig_gw_opts_t;

/* Limits that may change on reload (atomics, relaxed: each is independent). */
typedef struct pl_sig_limits {
    _Atomic uint32_t rate_frames;   /* frames per second per connection */
    _Atomic uint32_t rate_burst;
    _Atomic uint32_t max_errors;    /* client errors per window before close */
    _Atomic uint32_t error_window_ms;
    _Atomic uint32_t max_unauth_per_ip; /* 0 = no limit */
} pl_sig_limits_t;

/* ---- metrics ids ------------------------------------------------------------------ */

typedef enum pl_sig_auth_fail {
    PL_SIG_AF_TOKEN_INVALID,
    PL_SIG_AF_TOKEN_EXPIRED,
    PL_SIG_AF_TIMEOUT,
    PL_SIG_AF_FRAME_BEFORE_AUTH,
    PL_SIG_AF_BAD_CREDENTIALS,
    PL_SIG_AF_RATE_LIMITED,
    PL_SIG_AF_COUNT
} pl_sig_auth_fail_t;

typedef struct pl_sig_metric_ids {
    pl_metric_id_t connections, handshakes, rejected, dropped, http_requests;
    pl_metric_id_t auth_ok;
    pl_metric_id_t auth_fail[PL_SIG_AF_COUNT];
    pl_metric_id_t errors[PL_SIG_ERR_COUNT];
    pl_metric_id_t in_unknown, out_other;
    pl_metric_id_t close_replaced, close_slow, close_abuse, close_too_big, close_expired,
        close_unauth_ip;
} pl_sig_metric_ids_t;

/* ---- registered tables ------------------------------------------------------------ */

typedef struct pl_sig_hentry {
    const pl_sig_handler_t *h;
    void *arg;
    pl_metric_id_t m_in;
    pl_metric_id_t m_out;           /* "<type>.result" */
} pl_sig_hentry_t;

typedef struct pl_sig_otype {       /* frames-out series: results, errors, pushes */
    char *type;                     /* owned */
    pl_metric_id_t m_out;
} pl_sig_otype_t;

typedef struct pl_sig_hookent {
    const pl_sig_hooks_t *hooks;
    void *arg;
} pl_sig_hookent_t;

typedef struct pl_sig_rentry {
    const pl_sig_http_route_t *r;
    void *arg;
} pl_sig_rentry_t;

/* ---- threads and connections ------------------------------------------------------ */

/* Bytes of queued frames joined into one write (conn.c), and so the ws protocol's
 * tx_packet_size: lws_issue_raw sends at most tx_packet_size (else rx_buffer_size, 1 KiB
 * here) plus LWS_PRE + 4 per call and buffers the rest for a POLLOUT round trip. */
#define PL_SIG_COALESCE_MAX (32 * 1024)

enum { PL_SIG_SLOT_FREE, PL_SIG_SLOT_WS, PL_SIG_SLOT_HTTP };

typedef struct pl_sig_slot {
    void *obj;                      /* pl_sig_conn_t or pl_sig_http_t */
    uint32_t gen;                   /* 24 bits used; bumps on every free */
    uint32_t next_free : 30;
    uint32_t kind : 2;              /* PL_SIG_SLOT_* */
} pl_sig_slot_t;

typedef struct pl_sig_thread {
    pl_sig_gateway_t *gw;
    unsigned index;
    struct lws_context *ctx;
    struct lws_vhost *vh_plain;
    struct lws_vhost *vh_tls;
    pthread_t tid;
    bool started;
    atomic_bool quit;
    atomic_bool dead;               /* service loop ended: inbox drained by the owner */
    atomic_int n_ws;                /* live WebSocket connections (read by drained()) */

    pthread_mutex_t lock;           /* leaf lock: the inbox */
    pl_msg_t *in_head;
    pl_msg_t **in_tail;

    pl_sig_slot_t *slots;           /* service thread only */
    uint32_t n_slots;
    uint32_t free_head;             /* UINT32_MAX = none */
    pl_metrics_shard_t *shard;
    /* conn.c: one 1-s sweep over the thread's WebSockets enforces deadlines, pings and
     * the idle hang-up (per-connection lws timers cost an O(n) sorted insert each). */
    lws_sorted_usec_list_t sweep_sul;
    struct pl_sig_conn *sweep_head;
    unsigned char *wbuf;            /* conn.c: queued frames joined into one write */
    /* conn.c: connections (ids) that queued frames in this loop iteration, written at
     * its end (libev loop only; see pl_sig_conn_flush) */
    uint64_t *flush_ids;
    uint32_t n_flush, cap_flush;
    void *flush_w;                  /* the libev prepare watcher that runs the flush */
    void *evloop;                   /* libev loop lws runs on (epoll), or NULL: lws_service */
    void *foreign_loops[1];
} pl_sig_thread_t;

enum { PL_SIG_CONN_NEW, PL_SIG_CONN_AUTHING, PL_SIG_CONN_AUTHED, PL_SIG_CONN_CLOSING };

typedef struct pl_sig_out {
    struct pl_sig_out *next;
    uint32_t len;
    unsigned char buf[];            /* LWS_PRE bytes of headroom, then len bytes */
} pl_sig_out_t;

/* The parley.v1 per-session data (lws allocates and zeroes it). Kept small: a
 * benchmark holds 100k idle connections. */
typedef struct pl_sig_conn {
    struct lws *wsi;
    uint64_t id;
    uint64_t account_id;
    uint64_t device_id;
    char *username;                 /* owned, after auth */
    pl_sig_out_t *out_head;
    pl_sig_out_t *out_tail;
    char *rx;                       /* reassembly of a message spanning callbacks */
    char *close_reason;             /* owned, or NULL for the code's default */
    uint32_t rx_len;
    uint32_t out_bytes;
    pl_sig_bucket_t rate;
    struct pl_sig_conn *sw_prev;    /* the thread's sweep list (conn.c) */
    struct pl_sig_conn *sw_next;
    uint64_t last_rx_ms;            /* monotonic: last frame or pong received */
    uint64_t deadline_ms;           /* monotonic: auth deadline, then session expiry; 0 none */
    uint64_t err_window_start_ms;
    uint16_t err_count;
    uint16_t close_code;
    uint8_t state;
    bool unauth_counted;            /* counted in gw->unauth under ip */
    bool close_sent;                /* our close frame is written (conn.c lingering close) */
    bool shut_wr;                   /* ... and the socket half-closed after it */
    char ip[48];                    /* the peer's address, for the per-IP count */
    bool rx_discard;                /* dropping the rest of a rejected message */
    bool ping_due;                  /* write a PING at the next writeable callback */
    bool ping_sent;                 /* a PING went out since last_rx_ms */
    bool flush_listed;              /* in the thread's flush_ids */
} pl_sig_conn_t;

/* The HTTP per-transaction data. */
typedef struct pl_sig_http {
    struct lws *wsi;
    uint64_t id;
    const pl_sig_rentry_t *route;
    char *body;
    size_t body_len;
    unsigned char *resp;            /* LWS_PRE headroom + JSON */
    size_t resp_len;
    int status;
    int method;
    uint8_t phase;                  /* http.c: none, headers next, body next */
    bool dispatched;                /* the route function has run */
    bool responded;
    char path[256];
    char bearer[128];
    char peer[64];
} pl_sig_http_t;

struct pl_sig_gateway {
    pl_sig_gw_opts_t opts;
    pl_sig_limits_t limits;
    pl_metrics_t *metrics;
    pl_sig_metric_ids_t m;
    pl_sig_dir_t *dir;
    pl_counts_t *unauth;        /* source IP -> connections not yet authenticated */

    pl_sig_hentry_t *handlers;      /* sorted by type at start */
    size_t n_handlers;
    pl_sig_otype_t *otypes;         /* sorted by type at start */
    size_t n_otypes;
    pl_sig_hookent_t *hooks;
    size_t n_hooks;
    pl_sig_rentry_t *routes;
    size_t n_routes;

    pl_sig_thread_t *threads;
    unsigned n_threads;
    int listen_fd, tls_listen_fd;   /* during start only; the contexts hold dups */
    uint16_t port;                  /* bound plain port */
    uint16_t tls_port;
    struct lws_http_mount mounts[2];    /* /v1 (callback) and / (web_root files) */
    lws_retry_bo_t retry;           /* all zero: lws's own ping/hang-up timers off */
    atomic_bool draining;
    bool started;
};

/* gateway.c */
int pl_sig_gateway_create(const pl_sig_gw_opts_t *opts, pl_metrics_t *metrics,
                          pl_sig_gateway_t **out);
/* Registers metrics, creates the lws contexts (binding the ports) and starts the
 * threads. Returns 0 or a negative error (logged). */
int pl_sig_gateway_start(pl_sig_gateway_t *gw);
/* Closes every WebSocket with 1001 and refuses new ones. Any thread. */
void pl_sig_gateway_drain(pl_sig_gateway_t *gw);
size_t pl_sig_gateway_conn_count(pl_sig_gateway_t *gw);
/* Stops and joins the threads (connections close). Messages posted later are run on
 * the calling thread by pl_sig_gateway_destroy. */
void pl_sig_gateway_stop(pl_sig_gateway_t *gw);
void pl_sig_gateway_destroy(pl_sig_gateway_t *gw);
void pl_sig_gateway_set_limits(pl_sig_gateway_t *gw, uint32_t rate_frames, uint32_t rate_burst,
                               uint32_t max_errors, uint32_t error_window_ms,
                               uint32_t max_unauth_per_ip);
void pl_sig_gateway_stats_json(pl_sig_gateway_t *gw, pl_buf_t *out);

/* Freezes the registration tables (sorted, result types added). Before metrics. */
void pl_sig_gateway_seal(pl_sig_gateway_t *gw);
pl_sig_thread_t *pl_sig_thread_of(pl_sig_gateway_t *gw, uint64_t id);
/* Slots: service thread only. */
uint64_t pl_sig_slot_alloc(pl_sig_thread_t *t, void *obj, unsigned kind);
void pl_sig_slot_free(pl_sig_thread_t *t, uint64_t id);
/* The object named by id if it is alive and of that kind, else NULL. */
void *pl_sig_slot_get(pl_sig_thread_t *t, uint64_t id, unsigned kind);
/* Runs every queued inbox message. Service thread (or the owner after it ended). */
void pl_sig_thread_drain_inbox(pl_sig_thread_t *t);
/* On the thread, from LWS_CALLBACK_EVENT_WAIT_CANCELLED: ends its event loop once
 * pl_sig_gateway_stop asked it to quit. */
void pl_sig_thread_check_quit(pl_sig_thread_t *t);
const pl_sig_hentry_t *pl_sig_handler_find(const pl_sig_gateway_t *gw, const char *type);
pl_metric_id_t pl_sig_out_metric(const pl_sig_gateway_t *gw, const char *type);
/* Marks the calling thread as service thread t (gw_send.c sends from it directly). */
void pl_sig_thread_set_current(const pl_sig_thread_t *t);
/* Serializes frame (owned) into a send-queue entry. */
pl_sig_out_t *pl_sig_out_new(json_t *frame);
void pl_sig_count_auth_fail(pl_sig_thread_t *t, pl_sig_auth_fail_t why);
void pl_sig_count_error(pl_sig_thread_t *t, const char *code);

/* conn.c */
int pl_sig_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                       void *in, size_t len);
/* Starts t's 1-s sweep (deadlines, pings, idle hang-up). Service thread, before the
 * loop; lws_sul_cancel(&t->sweep_sul) before destroying the context. */
void pl_sig_conn_sweep_start(pl_sig_thread_t *t);
/* Closes every WebSocket of t with 1001 (drain). Service thread. */
void pl_sig_conn_close_all(pl_sig_thread_t *t);
/* Writes the frames queued in this loop iteration (the libev loop's prepare watcher,
 * before it waits). Service thread. */
void pl_sig_conn_flush(pl_sig_thread_t *t);
/* Queues out (owned) on c; closes c as a slow consumer on overflow. */
void pl_sig_conn_queue(pl_sig_thread_t *t, pl_sig_conn_t *c, pl_sig_out_t *out,
                       pl_metric_id_t m_out);
/* Sends json (owned) on c. */
void pl_sig_conn_send(pl_sig_thread_t *t, pl_sig_conn_t *c, json_t *frame);
/* Closes c after its queued frames with code and reason (copied; NULL = default). */
void pl_sig_conn_close(pl_sig_thread_t *t, pl_sig_conn_t *c, int code, const char *reason);

/* http.c */
int pl_sig_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                         void *in, size_t len);

#endif
