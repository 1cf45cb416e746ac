/* calls_int.h: the calls part (1:1 call signaling, docs/PROTOCOL.md "Calls"):
 *   calls.c      the call state machine on the presence thread
 *   calls_ws.c   the call.* frame handlers (gateway threads) and the username lookup
 *   calls_ice.c  iceServers: STUN/TURN URLs and minted TURN REST credentials
 *   calls_part.c the part: [calls] options, metrics, life cycle
 *
 * Where a call lives: on its caller's node (the node that took the invite), as one
 * pl_call_t on the presence thread there. Its id says so: "<24 hex>@<node>". Frames of
 * the callee (accept, sdp, ...) go to that node as forwarded requests (router.c), and
 * the home node sends every event of the call to the exact connection of each party,
 * wherever it is. Busy state is per account: a claim in the router (and Redis), so a
 * callee in a call homed on another node is busy too. A node keeps, per device of its
 * own in a call, the call's id and home, so that a closing connection ends the call
 * there ("call.leave"). If the home node dies, its calls die with it; the parties'
 * busy claims expire with its presence TTL.
 *
 * Threading: pl_calls_t and every pl_call_t belong to the presence thread. The part's
 * init/stop/destroy/reload run on the main thread; handlers on gateway threads only
 * build requests and post them. */
#ifndef PL_SIG_CALLS_INT_H
#define PL_SIG_CALLS_INT_H

#include "signaling/presence_int.h"
#include "signaling/pl_sig_part.h"

#define PL_CALL_ID_HEX 24
#define PL_CALL_ID_MAX (PL_CALL_ID_HEX + 1 + PL_NODE_MAX)
#define PL_CALL_URLS_MAX 8
#define PL_CALL_URL_MAX 300

/* ---- iceServers (calls_ice.c) ------------------------------------------------------- */

typedef struct pl_calls_ice {
    pl_config_t *cfg;                       /* reference: minting reads [turn] from it */
    char stun[PL_CALL_URLS_MAX][PL_CALL_URL_MAX];
    size_t n_stun;
    char turn[PL_CALL_URLS_MAX][PL_CALL_URL_MAX];
    size_t n_turn;
} pl_calls_ice_t;

/* The URLs parleyd's own TURN serves on host (an IP literal or a name; IPv6 gets
 * brackets): stun:H:P; turn:H:P?transport=udp and ?transport=tcp; and when tls_port is
 * non-zero turns:H:TP?transport=tcp. Returns how many URLs of each kind were written
 * (*n_stun, *n_turn). Pure. */
void pl_calls_default_urls(const char *host, uint16_t port, uint16_t tls_port,
                           pl_calls_ice_t *out);
/* Builds the URL lists from [calls] (explicit lists win) or from [turn]. Takes a
 * reference on cfg. Logs what it hands out. */
void pl_calls_ice_init(pl_calls_ice_t *ice, const pl_config_t *cfg);
void pl_calls_ice_deinit(pl_calls_ice_t *ice);
/* The iceServers array for a participant (TURN credentials minted for account_id, valid
 * for [turn] rest_ttl); without a TURN secret, STUN only. Returns an owned array. */
json_t *pl_calls_ice_servers(const pl_calls_ice_t *ice, uint64_t account_id);

/* ---- call ids (calls.c; pure) ------------------------------------------------------------ */

/* Checks "<24 hex>@<node>", extracting the table key (the first 16 hex digits) and the
 * home node. Returns false for anything else. */
bool pl_call_id_parse(const char *id, uint64_t *key, char home[PL_NODE_MAX + 1]);

/* ---- the calls object ------------------------------------------------------------------- */

typedef struct pl_calls_metrics {
    pl_metric_id_t invites, answered, missed, rejected, busy, cancelled, offline, ended;
    pl_metric_id_t active;                  /* gauge */
    pl_metric_id_t setup;                   /* histogram, seconds from invite to accept */
} pl_calls_metrics_t;

typedef struct pl_calls {
    pl_router_t *r;
    pl_sig_gateway_t *gw;
    pl_store_t *store;
    pl_calls_metrics_t m;
    unsigned sink;                          /* for undeliverable pushes: 0 (dropped) */
    bool enabled;                           /* main thread */

    /* presence thread */
    pl_calls_ice_t *ice;                    /* replaced on reload (posted) */
    uint64_t ring_timeout_ms;
    uint32_t max_calls;
    pl_u64map_t calls;                      /* key -> pl_call_t* homed here */
    pl_u64map_t peers;                      /* device here -> pl_call_peer_t* */
} pl_calls_t;

/* calls_part.c: the part for signaling/module.c's list. */
extern const pl_sig_part_t pl_sig_calls_part;

/* calls.c: presence thread. */
void pl_calls_init_state(pl_calls_t *c);
/* The request handler the router runs for call.* frames homed here. */
void pl_calls_on_rq(pl_rtr_rq_t *rq, void *arg);
/* A device here closed: ends its call (through the call's home). */
void pl_calls_on_close(pl_router_t *r, const pl_pres_entry_t *gone, void *arg);
/* Ends every call here without telling anyone (shutdown) and frees them. */
void pl_calls_on_stop(pl_router_t *r, void *arg);
/* Before a request leaves this node: remember devices that answer a call. */
void pl_calls_note_outgoing(pl_calls_t *c, const pl_rtr_rq_t *rq);

/* calls_ws.c */
extern const pl_sig_handler_t pl_calls_handlers[];
extern const size_t pl_calls_n_handlers;
extern const char *const pl_calls_push_types[];
extern const size_t pl_calls_n_push_types;

#endif
