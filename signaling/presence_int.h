/* presence_int.h: the router's private structures and cross-file declarations:
 *   presence_map.c   the in-memory tables (u64 map, local device registry)
 *   presence.c       the router object: options, thread, gateway hooks, metrics
 *   presence_redis.c the Redis backend (registry, heartbeat, pub/sub, busy claims)
 *   router.c         delivery, node-to-node envelopes, forwarded requests (RPC)
 *   router_wire.c    the envelope codec (pure)
 * and what the calls part (calls*.c) uses of them. Not for other modules.
 *
 * Threading: everything in pl_router_t belongs to the presence thread except what is
 * marked otherwise (immutable after create, or atomic). */
#ifndef PL_PRESENCE_INT_H
#define PL_PRESENCE_INT_H

#include "signaling/pl_router.h"
#include "signaling/sig_int.h"

#include <pthread.h>
#include <stdatomic.h>

#define PL_NODE_MAX 64

/* ---- u64 -> u64 hash map (presence_map.c; pure) ---------------------------------- */

/* Keys are non-zero (0 marks an empty slot). Not thread-safe. */
typedef struct pl_u64map {
    uint64_t *keys;
    uint64_t *vals;
    size_t cap;                 /* power of two */
    size_t count;
} pl_u64map_t;

void pl_u64map_init(pl_u64map_t *m);
void pl_u64map_deinit(pl_u64map_t *m);
/* Inserts or replaces. Returns true when key was new. */
bool pl_u64map_put(pl_u64map_t *m, uint64_t key, uint64_t val);
bool pl_u64map_get(const pl_u64map_t *m, uint64_t key, uint64_t *val);
bool pl_u64map_del(pl_u64map_t *m, uint64_t key);

/* ---- local device registry (presence_map.c; pure) -------------------------------------- */

typedef struct pl_pres_entry {
    uint64_t device_id;         /* 0 = free entry */
    uint64_t account_id;
    uint64_t conn_id;
    uint32_t next;              /* private: next entry of the same account, or free list */
} pl_pres_entry_t;

typedef struct pl_pres_map {
    pl_u64map_t by_device;      /* device -> entry index */
    pl_u64map_t by_account;     /* account -> first entry index */
    pl_pres_entry_t *ents;
    uint32_t n_ents;
    uint32_t free_head;
    size_t count;               /* live entries */
} pl_pres_map_t;

void pl_pres_map_init(pl_pres_map_t *pm);
void pl_pres_map_deinit(pl_pres_map_t *pm);
/* Sets device -> (account, conn). Returns the conn it replaced, or 0. */
uint64_t pl_pres_map_put(pl_pres_map_t *pm, uint64_t device_id, uint64_t account_id,
                         uint64_t conn_id);
/* Removes device only if its entry still names conn_id. Returns true when removed. */
bool pl_pres_map_remove(pl_pres_map_t *pm, uint64_t device_id, uint64_t conn_id);
/* Returns a borrowed pointer valid until the next put/remove, or NULL. */
const pl_pres_entry_t *pl_pres_map_get(const pl_pres_map_t *pm, uint64_t device_id);
/* Fills out[0..cap) with the account's entries; returns how many there are (may
 * exceed cap). Pointers are valid until the next put/remove. */
size_t pl_pres_map_account(const pl_pres_map_t *pm, uint64_t account_id,
                           const pl_pres_entry_t **out, size_t cap);
/* Iterates every entry: start with *cursor = 0; NULL at the end. No put/remove while
 * iterating. */
const pl_pres_entry_t *pl_pres_map_next(const pl_pres_map_t *pm, uint32_t *cursor);

/* ---- node-to-node envelopes (router_wire.c; pure) ---------------------------------- */

/* One message on a node's pub/sub channel: a JSON object
 *   {"v":1,"op":"d|b|k|q|r","from":node, ...op fields..., "f":{frame}}
 *   d deliver  dev, acct, conn (0 = the device's live conn), sink, ck, f
 *   b bounce   dev, acct, sink, ck, why, f                (back to "from")
 *   k kick     dev, conn                 (the device connected to another node)
 *   q request  tok (0 = no reply), dev, acct, conn, user, f (the request frame)
 *   r response tok, ok, f (ok: result object; else {"code","message"}) */
typedef enum pl_env_op {
    PL_ENV_DELIVER = 'd', PL_ENV_BOUNCE = 'b', PL_ENV_KICK = 'k',
    PL_ENV_REQUEST = 'q', PL_ENV_RESPONSE = 'r',
} pl_env_op_t;

typedef struct pl_env {
    pl_env_op_t op;
    char from[PL_NODE_MAX + 1];
    uint64_t device_id, account_id, conn_id;
    uint64_t cookie, token;
    unsigned sink;
    int reason;                 /* pl_route_reason_t (bounce) */
    bool ok;                    /* response */
    char username[64];          /* request */
    json_t *frame;              /* decode: owned by the caller; encode: borrowed */
} pl_env_t;

/* Appends the envelope's JSON text to out. frame_text (a compact JSON object) is used
 * instead of e->frame when non-NULL (one serialization for several envelopes). */
void pl_env_encode(const pl_env_t *e, const char *frame_text, size_t frame_len, pl_buf_t *out);
/* Parses one envelope. Returns 0 (out->frame owned by the caller) or PL_EPARSE for
 * anything malformed (out->frame NULL). Total on any input. */
int pl_env_decode(const char *data, size_t len, pl_env_t *out);
/* Node names: 1..64 of [A-Za-z0-9_.-] (they become Redis keys and channels). */
bool pl_node_name_ok(const char *s);

/* ---- Redis backend (presence_redis.c) ---------------------------------------------- */

typedef struct pl_pres_redis pl_pres_redis_t;

typedef struct pl_pres_loc {
    uint64_t device_id, account_id, conn_id;
    char node[PL_NODE_MAX + 1];
} pl_pres_loc_t;

/* status: 0, or -1 when Redis failed. locs borrowed for the call. */
typedef void (*pl_pres_locs_cb)(pl_router_t *r, int status, const pl_pres_loc_t *locs,
                                size_t n, void *arg);
/* receivers: subscribers that got the message; -1 when Redis failed. */
typedef void (*pl_pres_pub_cb)(pl_router_t *r, long long receivers, void *arg);
/* outcome: 0 claimed, 1 the first account is busy, 2 the second is, -1 Redis failed. */
typedef void (*pl_pres_claim_cb)(pl_router_t *r, int outcome, void *arg);

typedef struct pl_pres_redis_opts {
    const char *host;
    int port;
    const char *user;           /* "" = none (AUTH password), else ACL AUTH user password */
    const char *password;       /* "" = none */
    int db;
    const char *prefix;
    uint64_t ttl_ms, heartbeat_ms, connect_timeout_ms, command_timeout_ms, backoff_max_ms;
} pl_pres_redis_opts_t;

/* Parses redis://[[user]:password@]host[:port][/db] into o (host and password point
 * into buf, which must outlive o). Returns 0 or PL_EPARSE. Pure. */
int pl_pres_redis_parse_url(const char *url, char *buf, size_t cap, pl_pres_redis_opts_t *o);

/* Main thread (create/destroy), presence thread (everything else). The functions that
 * return int return -1 without calling cb when Redis is not up. */
pl_pres_redis_t *pl_pres_redis_create(pl_router_t *r, const pl_pres_redis_opts_t *o);
void pl_pres_redis_destroy(pl_pres_redis_t *rd);
void pl_pres_redis_start(pl_pres_redis_t *rd);
void pl_pres_redis_stop(pl_pres_redis_t *rd);
void pl_pres_redis_register(pl_pres_redis_t *rd, const pl_pres_entry_t *e);
void pl_pres_redis_unregister(pl_pres_redis_t *rd, const pl_pres_entry_t *e);
int pl_pres_redis_lookup_device(pl_pres_redis_t *rd, uint64_t device_id, pl_pres_locs_cb cb,
                                void *arg);
int pl_pres_redis_lookup_user(pl_pres_redis_t *rd, uint64_t account_id, pl_pres_locs_cb cb,
                              void *arg);
/* Publishes text on node's channel. cb may be NULL. */
int pl_pres_redis_publish(pl_pres_redis_t *rd, const char *node, const char *text, size_t len,
                          pl_pres_pub_cb cb, void *arg);
/* Busy claims for a call: both accounts or neither. */
int pl_pres_redis_claim(pl_pres_redis_t *rd, const uint64_t acct[2], const char *call_id,
                        pl_pres_claim_cb cb, void *arg);
void pl_pres_redis_release(pl_pres_redis_t *rd, uint64_t account_id, const char *call_id);
void pl_pres_redis_set_ttl(pl_pres_redis_t *rd, uint64_t ttl_ms, uint64_t heartbeat_ms);

/* ---- the router object (presence.c, router.c) ---------------------------------------- */

typedef struct pl_rtr_metrics {
    pl_metric_id_t devices;             /* gauge: devices registered here */
    pl_metric_id_t redis_up;            /* gauge 0/1 */
    pl_metric_id_t redis_latency;       /* histogram, seconds */
    pl_metric_id_t redis_reconnects;
    pl_metric_id_t redis_errors;
    pl_metric_id_t route_local, route_remote, route_undeliverable, route_bounced;
    pl_metric_id_t kicks;
} pl_rtr_metrics_t;

typedef struct pl_rtr_sink {
    pl_route_undelivered_cb fn;
    void *arg;
} pl_rtr_sink_t;

typedef struct pl_rtr_rq pl_rtr_rq_t;
typedef void (*pl_rtr_rq_fn)(pl_rtr_rq_t *rq, void *arg);
/* A device's connection closed (after presence dropped it). Presence thread. */
typedef void (*pl_rtr_close_fn)(pl_router_t *r, const pl_pres_entry_t *gone, void *arg);
/* Runs on the presence thread just before it stops: free what lives there. */
typedef void (*pl_rtr_stop_fn)(pl_router_t *r, void *arg);

#define PL_RTR_MAX_SINKS 8
#define PL_RTR_MAX_HOOKS 4

struct pl_router {
    /* immutable after create */
    pl_sig_gateway_t *gw;
    pl_loop_t *loop;
    pl_metrics_t *metrics;
    pl_metrics_shard_t *shard;          /* presence thread's */
    pl_rtr_metrics_t m;
    char node[PL_NODE_MAX + 1];
    pl_rtr_sink_t sinks[PL_RTR_MAX_SINKS + 1];  /* [0] unused */
    unsigned n_sinks;
    pl_rtr_rq_fn rq_fn;
    void *rq_arg;
    struct { pl_rtr_close_fn fn; void *arg; } close_hooks[PL_RTR_MAX_HOOKS];
    unsigned n_close_hooks;
    struct { pl_rtr_stop_fn fn; void *arg; } stop_hooks[PL_RTR_MAX_HOOKS];
    unsigned n_stop_hooks;
    pthread_t tid;
    bool started;
    bool stopped;

    /* shared */
    atomic_bool up;                     /* backend usable */
    _Atomic uint64_t n_devices;         /* for stats */

    /* presence thread */
    pl_pres_map_t map;
    pl_pres_redis_t *redis;             /* NULL: memory backend */
    pl_u64map_t busy;                   /* account -> call key: claims held here */
    pl_u64map_t rpcs;                   /* token -> pl_rtr_rq_t* awaiting a response */
    uint64_t next_token;
    pl_timer_t rpc_timer;
};

/* Shared helpers (router.c). Presence thread unless noted. */
/* Hands frame (owned) to the sink of to (or drops it), counted as undeliverable. */
void pl_rtr_undeliverable(pl_router_t *r, const pl_route_to_t *to, uint64_t device_id,
                          pl_route_reason_t reason, json_t *frame);
/* Delivery on the presence thread (pl_router_send posts here). Takes frame. */
void pl_rtr_deliver(pl_router_t *r, const pl_route_to_t *to, json_t *frame);
/* One connection of a device on some node (a call participant, a requester). */
typedef struct pl_rtr_party {
    char node[PL_NODE_MAX + 1];
    uint64_t account_id, device_id, conn_id;
} pl_rtr_party_t;

/* Sends frame (owned) to exactly that connection: no sink, a failure is only counted. */
void pl_rtr_send_party(pl_router_t *r, const pl_rtr_party_t *p, json_t *frame);
/* A message arrived on this node's channel. */
void pl_rtr_on_envelope(pl_router_t *r, const char *data, size_t len);
/* The registry entry of a device registered here named another node: tell it to close
 * its connection (one live connection per device). */
void pl_rtr_kick(pl_router_t *r, const pl_pres_loc_t *old);
/* Fails every forwarded request still waiting (stop). */
void pl_rtr_rpc_fail_all(pl_router_t *r);
void pl_rtr_rpc_sweep(pl_loop_t *loop, pl_timer_t *t, void *arg);
/* Backend state changes (presence_redis.c calls it). */
void pl_rtr_set_up(pl_router_t *r, bool up);

/* ---- forwarded requests (router.c) ----------------------------------------------------- */

/* A client request handled by the node that owns its object (a call lives on its
 * caller's node). Built on a gateway thread, routed on the presence thread; the
 * handling node answers it exactly once with pl_rtr_rq_reply / pl_rtr_rq_error, which
 * free it; the answer reaches the requesting connection wherever it is. */
struct pl_rtr_rq {
    pl_msg_t msg;                       /* for posting it (the builder sets fn) */
    char home[PL_NODE_MAX + 1];         /* the node that handles it */
    char from[PL_NODE_MAX + 1];         /* the node of the requesting connection */
    uint64_t account_id, device_id, conn_id;
    char username[64];
    char type[PL_SIG_TYPE_MAX + 1];
    json_t *frame;                      /* owned: the request frame */
    const char *fail_code;              /* static: the error when home is unreachable */
    pl_sig_pending_t *pending;          /* requester on this node */
    uint64_t token;                     /* requester on node "from" (0 = no reply) */
    uint64_t deadline_ms;               /* while waiting here for a response */
    void *user;                         /* free for the handler's use */
};

#define PL_RTR_RPC_TIMEOUT_MS 10000

/* Gateway thread: builds a request from req (deep-copies the frame, defers the reply).
 * home: the handling node (NULL = this one). fail_code: static. */
pl_rtr_rq_t *pl_rtr_rq_new(pl_router_t *r, const pl_sig_req_t *req, const char *home,
                           const char *fail_code);
/* Presence thread: a notice with no reply (a device left a call), from this node. */
pl_rtr_rq_t *pl_rtr_rq_notice(pl_router_t *r, const char *home, const char *type,
                              const pl_pres_entry_t *who, json_t *frame);
/* Presence thread: runs the handler here or forwards rq to its home node. */
void pl_rtr_rq_route(pl_router_t *r, pl_rtr_rq_t *rq);
/* Answers and frees rq. result: owned object or NULL. Presence thread. */
void pl_rtr_rq_reply(pl_router_t *r, pl_rtr_rq_t *rq, json_t *result);
void pl_rtr_rq_error(pl_router_t *r, pl_rtr_rq_t *rq, const char *code, const char *message);
void pl_rtr_rq_free(pl_rtr_rq_t *rq);

/* Registration for the calls part (main thread, before start). */
void pl_rtr_set_rq_handler(pl_router_t *r, pl_rtr_rq_fn fn, void *arg);
void pl_rtr_add_close_hook(pl_router_t *r, pl_rtr_close_fn fn, void *arg);
void pl_rtr_add_stop_hook(pl_router_t *r, pl_rtr_stop_fn fn, void *arg);

/* ---- busy claims for calls (router.c; presence thread) ---------------------------- */

/* A claim held here: r->busy maps the account to one of these (owned by the map). */
typedef struct pl_rtr_busy {
    uint64_t key;                       /* the call's key */
    char call_id[];
} pl_rtr_busy_t;

/* Claims both accounts for the call named by key/call_id (local table, plus Redis when
 * configured and up). cb gets 0, 1 (acct[0] busy), 2 (acct[1] busy); it may run before
 * this returns. */
void pl_rtr_busy_claim(pl_router_t *r, const uint64_t acct[2], uint64_t key,
                       const char *call_id, pl_pres_claim_cb cb, void *arg);
void pl_rtr_busy_release(pl_router_t *r, uint64_t account_id, uint64_t key,
                         const char *call_id);

#endif
