/* pl_router.h: presence and routing, the signaling module's "who is where" layer that
 * calls and chat build on.
 *
 * Presence: which device is connected to which parleyd node. Two backends behind one
 * interface ([presence] backend): "memory" (one node, the embedded default) and
 * "redis" (several nodes sharing a Redis: a registry entry device -> node with a TTL
 * that each node's heartbeat refreshes, a per-node set of its devices, and a pub/sub
 * channel per node). The gateway's on_auth / on_close hooks feed it.
 *
 * Routing: an event (a parley.v1 JSON frame) goes to every online device of a user or
 * to one device: on this node straight into the connection's send queue
 * (pl_sig_send), on another node by publishing it on that node's channel, where its
 * router hands it to the connection. An event that cannot be delivered comes back to
 * the caller through the sink it named, with the reason (offline: no live connection
 * anywhere; unreachable: the owning node or the Redis registry could not be reached).
 * Chat stores such events for later.
 *
 * Delivery is best effort and at most once: "delivered" means handed to the live
 * connection's send queue on the owning node; a connection that closes right then
 * loses what was queued (so chat keeps a message until the device acknowledges it).
 * Events to one device arrive in the order they were sent from one thread.
 *
 * When Redis is down, parleyd keeps serving its own users: events to devices
 * connected here are delivered; anything that needs another node or the registry is
 * handed back as unreachable. The router reconnects with exponential back-off and
 * re-registers every live device; /readyz reports not ready meanwhile.
 *
 * Threading: the router runs on its own core loop thread, "presence", which owns the
 * registry, the Redis connections and the call state of the calls part. Every
 * function below is callable from any thread unless it says otherwise; sink and query
 * callbacks run on the presence thread (they must not block; post elsewhere if the
 * work is long). Users name devices and accounts by id, never by pointer. */
#ifndef PL_ROUTER_H
#define PL_ROUTER_H

#include "core/pl_common.h"
#include "core/pl_buf.h"
#include "core/pl_config.h"
#include "core/pl_loop.h"
#include "core/pl_metrics.h"

#include <jansson.h>

typedef struct pl_router pl_router_t;
struct pl_sig_gateway;

/* ---- delivering events ---------------------------------------------------------- */

typedef enum pl_route_reason {
    PL_ROUTE_OFFLINE = 1,       /* no live connection for the device (for a user: for
                                   any of its devices) on any node */
    PL_ROUTE_UNREACHABLE = 2,   /* the owning node or the registry could not be reached
                                   (Redis down, or no node listens on the channel) */
} pl_route_reason_t;

/* "offline" / "unreachable" (logs, metrics, wire). */
const char *pl_route_reason_name(pl_route_reason_t reason);

/* An event handed back. */
typedef struct pl_route_undelivered {
    uint64_t account_id;        /* the target user */
    uint64_t device_id;         /* the device that missed it; 0 when the event went to
                                   a user and none of its devices got it */
    pl_route_reason_t reason;
    uint64_t cookie;            /* from pl_route_to_t */
    json_t *frame;              /* owned by the callback: keep it or json_decref it */
} pl_route_undelivered_t;

/* Runs on the presence thread. */
typedef void (*pl_route_undelivered_cb)(pl_route_undelivered_t *u, void *arg);

/* Registers a sink for undeliverable events and returns its id (1, 2, ...). Main
 * thread, before the gateway serves (a part's init). A bounce from another node names
 * the sink by id, so every node must register the same sinks in the same order (the
 * parts list is fixed, so they do). */
unsigned pl_router_add_sink(pl_router_t *r, pl_route_undelivered_cb fn, void *arg);

/* Where an event goes. */
typedef struct pl_route_to {
    uint64_t account_id;        /* required: the target user */
    uint64_t device_id;         /* that device only (it must belong to account_id, else
                                   it counts as offline); 0 = every online device of
                                   account_id */
    uint64_t except_device;     /* with device_id == 0: skip this device (the sender's
                                   own, say); 0 = none */
    unsigned sink;              /* where an undeliverable event goes; 0 = dropped
                                   (counted as undeliverable all the same) */
    uint64_t cookie;            /* handed back with it (a message id) */
} pl_route_to_t;

/* Delivers frame (a JSON object; takes ownership) as described above. Never fails:
 * the outcome is asynchronous; failures come back through the sink. For a user:
 * the sink hears once (device_id 0) when no device got the event; a device that goes
 * away on another node in the meantime comes back on its own (its device_id). With
 * except_device set and no other device online, nothing is undeliverable. Any thread. */
void pl_router_send(pl_router_t *r, const pl_route_to_t *to, json_t *frame);

/* ---- asking who is online ----------------------------------------------------------- */

typedef struct pl_route_device {
    uint64_t device_id;
    bool local;                 /* connected to this node */
} pl_route_device_t;

/* status: 0, or PL_ROUTE_UNREACHABLE when the registry is down (devs then lists the
 * devices connected to this node only). devs is borrowed for the call. */
typedef void (*pl_route_devices_cb)(int status, const pl_route_device_t *devs, size_t n,
                                    void *arg);

/* Asks which devices of account_id are online on any node. cb runs exactly once, on
 * the presence thread (possibly before this returns when called there). Any thread. */
void pl_router_query_user(pl_router_t *r, uint64_t account_id, pl_route_devices_cb cb,
                          void *arg);

/* ---- the presence thread ---------------------------------------------------------------- */

/* The presence thread's loop: parts may keep state there and post to it (the calls
 * part does). Valid from create to destroy. */
pl_loop_t *pl_router_loop(pl_router_t *r);
/* This node's name ([process] node_id). Borrowed, valid until destroy. */
const char *pl_router_node(const pl_router_t *r);
/* True while the presence backend is usable (memory: always; redis: both connections
 * up and this node's devices registered). Any thread. */
bool pl_router_backend_up(const pl_router_t *r);

/* ---- life cycle (the signaling module only) ------------------------------------- */

typedef struct pl_router_opts {
    struct pl_sig_gateway *gw;
    const pl_config_t *config;
    pl_metrics_t *metrics;
} pl_router_opts_t;

/* Reads [presence] and [process] node_id, registers metrics and the gateway hooks.
 * Main thread, before the gateway starts. Returns 0 or a negative error (logged). */
int pl_router_create(const pl_router_opts_t *o, pl_router_t **out);
/* Starts the presence thread (and the Redis connections). Main thread. Returns 0 or
 * -errno. */
int pl_router_start(pl_router_t *r);
/* Stops and joins the presence thread after the gateway has stopped (its last
 * on_close hooks are handled first). Main thread. Idempotent. */
void pl_router_stop(pl_router_t *r);
/* Frees everything (stops first if needed). Main thread. NULL is fine. */
void pl_router_destroy(pl_router_t *r);
/* /readyz: pl_router_backend_up. */
bool pl_router_ready(const pl_router_t *r);
/* Applies the reloadable [presence] keys. Main thread. */
void pl_router_reload(pl_router_t *r, const pl_config_t *next);
/* Appends a JSON object for /stats. Any thread. */
void pl_router_stats_json(const pl_router_t *r, pl_buf_t *out);
/* [presence] cross-key checks (--check-config, start, reload). */
int pl_router_validate(const pl_config_t *cfg, pl_config_error_t *err);

/* Option tables for the app's schema: [presence] (this router) and [calls] (1:1 call
 * signaling, signaling/calls*.c). */
extern const pl_opt_table_t pl_presence_options;
extern const pl_opt_table_t pl_calls_options;

#endif
