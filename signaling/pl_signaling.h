/* pl_signaling.h: the signaling module's public contract: the module itself (for the
 * app's table) and the gateway API other parts (presence, calls, chat) build on.
 *
 * The gateway: N libwebsockets service threads, each owning its lws context and the
 * connections accepted on it. A WebSocket connection speaks parley.v1 (docs/PROTOCOL.md):
 * JSON text frames {"type": ..., "id": ..., ...}. The gateway parses, validates and
 * dispatches each frame by "type" to a handler registered in a table; handlers run on
 * the connection's gateway thread.
 *
 * Naming: a connection is named by its conn id (uint64, never reused while the process
 * runs; encodes its gateway thread), a device by its device id (from the store). Other
 * threads never hold a connection pointer: they send by id, and a frame for a
 * connection that has gone is dropped (counted).
 *
 * Threading: registration (pl_sig_gateway_add_*) only from the main thread before the
 * gateway starts serving (the signaling module's parts do it in their init). Handler
 * and hook callbacks run on the connection's gateway thread. The send/close/post
 * functions below are callable from any thread. */
#ifndef PL_SIGNALING_H
#define PL_SIGNALING_H

#include "core/pl_common.h"
#include "core/pl_loop.h"
#include "core/pl_module.h"
#include "store/pl_store.h"

#include <jansson.h>

/* The module for the app's table: [signaling] options, gateway, accounts, store. */
extern const pl_module_t pl_signaling_module;

typedef struct pl_sig_gateway pl_sig_gateway_t;

/* ---- frame validation tables ----------------------------------------------------- */

typedef enum pl_sig_ftype {
    PL_SIG_T_STRING,        /* JSON string, [min, max] bytes of UTF-8, no NUL */
    PL_SIG_T_INT,           /* JSON integer in [min, max] */
    PL_SIG_T_ID,            /* JSON integer in [1, 2^53-1] (database ids) */
    PL_SIG_T_BOOL,
    PL_SIG_T_OBJECT,
    PL_SIG_T_ARRAY,         /* at most max items when max > 0 */
} pl_sig_ftype_t;

typedef struct pl_sig_field {
    const char *name;
    pl_sig_ftype_t type;
    bool required;
    int64_t min, max;       /* see the types; 0/0 = no bound */
} pl_sig_field_t;

/* ---- handlers ------------------------------------------------------------------- */

/* What a handler sees of one request. Borrowed for the duration of the call. */
typedef struct pl_sig_req {
    pl_sig_gateway_t *gw;
    uint64_t conn_id;
    uint64_t account_id;        /* 0 before authentication */
    uint64_t device_id;
    const char *username;       /* "" before authentication */
    const char *type;           /* the frame's type */
    json_t *id;                 /* the request id (string or integer), or NULL */
    json_t *frame;              /* the whole validated frame */
    unsigned thread;            /* gateway thread index */
} pl_sig_req_t;

typedef void (*pl_sig_handler_fn)(pl_sig_req_t *req, void *arg);

/* One row of a dispatch table.
 * requires_auth = true: the frame is only accepted on an authenticated connection.
 * requires_auth = false: the frame authenticates the connection ("auth"); it is only
 *   accepted before authentication, and once dispatched the connection waits for the
 *   handler's verdict (pl_sig_conn_authenticated / pl_sig_conn_auth_failed); any frame
 *   before that verdict is a protocol error. */
typedef struct pl_sig_handler {
    const char *type;           /* "devices.list"; at most 64 bytes */
    pl_sig_handler_fn fn;
    bool requires_auth;
    const pl_sig_field_t *fields;   /* validated before fn runs; unknown fields ignored */
    size_t n_fields;
} pl_sig_handler_t;

/* Adds a table (borrowed: must outlive the gateway). arg is passed to every fn.
 * Returns 0, or -EEXIST when a type is already registered. Main thread, before start. */
int pl_sig_gateway_add_handlers(pl_sig_gateway_t *gw, const pl_sig_handler_t *table,
                                size_t n, void *arg);

/* Server-initiated frame types ("call.ring"): gives them their own frames-out metric
 * series instead of "other". types is borrowed. Main thread, before start. */
void pl_sig_gateway_add_push_types(pl_sig_gateway_t *gw, const char *const *types, size_t n);

/* Connection life-cycle hooks, run on the connection's gateway thread. */
typedef struct pl_sig_conn_info {
    uint64_t conn_id;
    uint64_t account_id;
    uint64_t device_id;
    unsigned thread;
} pl_sig_conn_info_t;

typedef struct pl_sig_hooks {
    void (*on_auth)(const pl_sig_conn_info_t *c, void *arg);    /* after auth succeeded */
    void (*on_close)(const pl_sig_conn_info_t *c, void *arg);   /* authenticated conns */
} pl_sig_hooks_t;

/* hooks is borrowed. Main thread, before start. */
void pl_sig_gateway_add_hooks(pl_sig_gateway_t *gw, const pl_sig_hooks_t *hooks, void *arg);

/* ---- replying from a handler (gateway thread, during the call) ------------------ */

/* Sends {"type": "<req type>.result", "id": <id>, ...fields of result}. Takes ownership
 * of result (a JSON object, or NULL for no fields). */
void pl_sig_reply(pl_sig_req_t *req, json_t *result);
/* Sends {"type": "error", "id": <id>, "code": code, "message": message} and counts it
 * towards the connection's abuse limit when it is the client's fault (see
 * docs/PROTOCOL.md "Errors"). code: a stable snake_case string. */
void pl_sig_reply_error(pl_sig_req_t *req, const char *code, const char *message);

/* For a reply that comes later (after a store round trip): captures conn id, type and
 * id. Returns an owned pending reply; finish it exactly once, from any thread, with one
 * of the two functions below (which free it). */
typedef struct pl_sig_pending pl_sig_pending_t;
pl_sig_pending_t *pl_sig_defer(const pl_sig_req_t *req);
void pl_sig_pending_reply(pl_sig_gateway_t *gw, pl_sig_pending_t *p, json_t *result);
void pl_sig_pending_error(pl_sig_gateway_t *gw, pl_sig_pending_t *p, const char *code,
                          const char *message);
uint64_t pl_sig_pending_conn(const pl_sig_pending_t *p);

/* ---- authentication verdicts (the conn's gateway thread) ------------------------ */

typedef struct pl_sig_identity {
    uint64_t account_id;
    uint64_t device_id;
    char username[64];
    uint64_t expires_at_ms;     /* wall clock; the connection is closed (4007) then */
} pl_sig_identity_t;

/* Marks the connection authenticated (replacing any other live connection of the same
 * device, which is closed with 4001), sends {"type":"auth.result","id":..} built from
 * result (owned; may be NULL) and runs the on_auth hooks. Returns 0, or -ENOENT when
 * the connection has gone (result is freed). Must run on the conn's gateway thread:
 * post there with pl_sig_thread_reply / pl_sig_post. */
int pl_sig_conn_authenticated(pl_sig_gateway_t *gw, uint64_t conn_id, json_t *id,
                              const pl_sig_identity_t *who, json_t *result);
/* Sends an error frame with code/message and closes the connection with close_code
 * (4003 auth_failed...). Conn's gateway thread. */
void pl_sig_conn_auth_failed(pl_sig_gateway_t *gw, uint64_t conn_id, json_t *id,
                             const char *code, const char *message, int close_code);

/* ---- sending and closing by id (any thread) ------------------------------------- */

/* Sends frame (owned; serialized on the calling thread) to the connection. Returns 0
 * when queued for its thread (it may still have closed: then the frame is dropped), or
 * -ENOENT when conn_id names no gateway thread. */
int pl_sig_send(pl_sig_gateway_t *gw, uint64_t conn_id, json_t *frame);
/* Like pl_sig_send for a frame the caller serialized itself (hot paths that build
 * their JSON without jansson): text is one JSON object of len bytes whose "type" is
 * type (it names the frames-out metric series); both are copied. */
int pl_sig_send_text(pl_sig_gateway_t *gw, uint64_t conn_id, const char *type,
                     const char *text, size_t len);
/* Sends frame (owned) to the live connection of device_id on this node. Returns 0 or
 * -ENOENT when the device has no live connection here. */
int pl_sig_send_device(pl_sig_gateway_t *gw, uint64_t device_id, json_t *frame);
/* Closes the connection with a WebSocket close code (RFC 6455 §7.4; 4000-4999 are
 * parley's, see docs/PROTOCOL.md) after the frames already queued for it. reason is
 * copied (at most 120 bytes). Returns 0 or -ENOENT like pl_sig_send. */
int pl_sig_close(pl_sig_gateway_t *gw, uint64_t conn_id, int code, const char *reason);
int pl_sig_close_device(pl_sig_gateway_t *gw, uint64_t device_id, int code,
                        const char *reason);
/* The conn id of device_id's live connection on this node, or 0. */
uint64_t pl_sig_device_conn(pl_sig_gateway_t *gw, uint64_t device_id);

/* Runs msg->fn(NULL, msg) on gateway thread `thread` (which then owns msg). Any thread.
 * Messages to one thread run in posting order. */
void pl_sig_post(pl_sig_gateway_t *gw, unsigned thread, pl_msg_t *msg);
/* The gateway thread a conn id lives on. */
unsigned pl_sig_conn_thread(uint64_t conn_id);
/* A store reply target that delivers to gateway thread `thread`. */
pl_store_reply_t pl_sig_thread_reply(pl_sig_gateway_t *gw, unsigned thread);

/* Close codes (RFC 6455 §7.4.2: 4000-4999 are for applications). */
enum {
    PL_SIG_CLOSE_NORMAL = 1000,
    PL_SIG_CLOSE_GOING_AWAY = 1001,         /* server shutting down */
    PL_SIG_CLOSE_TOO_BIG = 1009,            /* frame larger than max_frame_size */
    PL_SIG_CLOSE_INTERNAL = 1011,
    PL_SIG_CLOSE_AUTH_REQUIRED = 4000,      /* a frame other than auth before auth */
    PL_SIG_CLOSE_REPLACED = 4001,           /* the same device connected again */
    PL_SIG_CLOSE_AUTH_TIMEOUT = 4002,       /* no auth within auth_timeout */
    PL_SIG_CLOSE_AUTH_FAILED = 4003,        /* token invalid, expired or revoked */
    PL_SIG_CLOSE_REVOKED = 4004,            /* session revoked or logged out */
    PL_SIG_CLOSE_SLOW_CONSUMER = 4005,      /* send queue overflow */
    PL_SIG_CLOSE_TOO_MANY_ERRORS = 4006,    /* abuse limit */
    PL_SIG_CLOSE_SESSION_EXPIRED = 4007,    /* session reached its expiry */
    PL_SIG_CLOSE_UNAUTH_PER_IP = 4008,      /* too many unauthenticated connections from
                                               the client's address */
};

#endif
