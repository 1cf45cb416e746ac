/* chat_int.h: chat's private cross-file declarations. Not for other modules.
 *
 * The shape (docs/PROTOCOL.md "Chat" has the wire side):
 *   - A chat frame's handler runs on its connection's gateway thread. It validates the
 *     frame (cheap checks: types, sizes, base64) and turns it into a chat op holding a
 *     reference to the frame, which it submits to the store.
 *   - The op's exec runs on the store thread, inside the group-commit batch: SQL, plus
 *     the store-thread state in chat_mem_t (which devices are synced for chat on this
 *     node, their delivery windows, per-device queue lengths, presence and
 *     subscriptions). Everything that must happen in one order -- a message committed,
 *     a queue page read, a device coming online -- is decided here, serially.
 *   - The op's done runs on the store thread right after the batch committed (reply
 *     target NULL): it posts the pushes the exec collected (deliveries, receipts,
 *     events) towards their connections' threads and hands the op back to the
 *     requester's gateway thread, which builds and sends the reply. Because every push
 *     for a device leaves from the store thread, a device sees its messages in commit
 *     order, the backlog before the "queue empty" marker and the live ones after it.
 *
 * Threading: chat_t is immutable after init except the limits (atomics). chat_mem_t
 * belongs to the store thread. An op has one owner at a time: the handler's thread,
 * then the store thread, then the requester's thread. A push is created on the store
 * thread and owned by the gateway thread it is posted to. */
#ifndef PL_CHAT_INT_H
#define PL_CHAT_INT_H

#include "chat/pl_chat.h"
#include "signaling/pl_router.h"

#include <pthread.h>
#include <stdatomic.h>

#define CHAT_USERNAME_MAX 32
#define CHAT_CLIENT_ID_MAX 64
#define CHAT_GROUP_NAME_MAX 64
#define CHAT_GROUP_DESC_MAX 512
#define CHAT_ASSET_MAX 128
#define CHAT_KEY_MAX 1024          /* base64 bytes of one public key or signature */
#define CHAT_IDS_MAX 1000          /* message ids in one ack/read/status frame */
#define CHAT_USERS_MAX 1024        /* usernames in one frame */
#define CHAT_PREKEYS_PER_UPLOAD 200

/* ---- limits: a snapshot taken when an op is created ---------------------------- */

typedef struct chat_limits {
    uint32_t max_payload;           /* base64 bytes of one ciphertext */
    uint32_t queue_max;             /* envelopes waiting per device */
    uint64_t ttl_ms;                /* undelivered envelopes expire after this */
    uint32_t group_max;             /* members per group */
    uint32_t window;                /* pushed but unacknowledged per device */
    uint32_t page;                  /* envelopes read per backlog page */
    uint32_t prekey_low;            /* tell the owner when fewer one-time prekeys remain */
    uint32_t prekey_max;            /* one-time prekeys stored per device */
    uint32_t fetch_per_min;         /* key bundle fetches per requester per minute */
    uint32_t fetch_burst;
    uint32_t fetch_target_per_min;  /* fetches of one target by one requester */
    uint32_t fetch_target_burst;
    uint64_t typing_ttl_ms;         /* a typing event older than this is dropped */
    uint32_t history_max;           /* rows per lookup page */
} chat_limits_t;

typedef struct chat_mem chat_mem_t;
typedef struct chat_op chat_op_t;

/* A token bucket (rate per minute, burst). Pure arithmetic: chat_bucket_take. */
typedef struct chat_bucket {
    double tokens;
    uint64_t last_ms;
} chat_bucket_t;

/* The part's state. */
/* When to take the next step of an index catch-up (chat_index.c). A hint only: the
 * catch-up's state is in the database. */
typedef struct ix_sched {
    unsigned run;                   /* messages added since the last catch-up began */
    unsigned since;                 /* ... since the last step */
    bool active;                    /* a catch-up is under way */
} ix_sched_t;

typedef struct chat {
    pl_sig_gateway_t *gw;
    pl_store_t *store;
    pl_router_t *router;            /* NULL: local delivery only */
    pl_loop_t *main_loop;
    chat_mem_t *mem;                /* store thread */
    pthread_mutex_t lim_lock;       /* leaf: guards lim (reload vs. op creation) */
    chat_limits_t lim;
    pl_timer_t sweep_timer;         /* main loop */
    uint64_t sweep_interval_ms;
    uint64_t sweep_dev, sweep_msg;  /* store thread: where the expiry scan resumes */
    ix_sched_t ix_sched;            /* store thread: when to step the history and find
                                       index catch-up (a hint, chat_index.c) */
    ix_sched_t cid_sched;           /* ... and the chat_ix_client one */
    struct chat_cids *cids;         /* store thread: client ids above the index (chat_index.c) */
    struct chat_ixruns *ixruns;     /* store thread: the sorted runs of the catch-ups under
                                       way (chat_index.c) */
    struct chat_devs *devs;         /* store thread: device lists by account (chat_devs.c) */
    pl_metrics_shard_t *shard;      /* written on the store thread only */
    struct {
        pl_metric_id_t sent_direct, sent_group, events, duplicates, pushed, acked, expired,
                       refused, store_failures, keys_fetched, prekeys_consumed, ix_rows,
                       ix_seconds;
    } m;
} chat_t;

/* ---- ops ----------------------------------------------------------------------- */

/* Runs on the store thread inside the batch. Returns >= 0 to keep the changes (the
 * outcome may still be a protocol error set with chat_op_fail), < 0 to roll back. */
typedef int (*chat_exec_fn)(chat_op_t *op, pl_store_conn_t *conn);
/* Adds the reply's fields to result (gateway thread) when the outcome is success.
 * NULL: op->result is the reply as it stands. */
typedef void (*chat_finish_fn)(chat_op_t *op, json_t *result);
/* Or, for hot replies without op->result: appends ",\"key\":value..." to b. */
typedef void (*chat_text_fn)(chat_op_t *op, pl_buf_t *b);

typedef struct chat_push chat_push_t;

/* An immutable text shared by the pushes of one message (a group's ciphertext goes to
 * every member device): a C11 atomic count, so threads share it without sharing a
 * jansson object (whose refcount checks are not thread-safe). */
typedef struct chat_body {
    _Atomic uint32_t refs;
    size_t len;
    char text[];
} chat_body_t;

chat_body_t *chat_body_new(const char *s);      /* count 1 */
chat_body_t *chat_body_ref(chat_body_t *b);
void chat_body_unref(chat_body_t *b);

/* A direct message's envelope, checked by the handler. */
typedef struct chat_env {
    uint64_t device_id;
    int ctype;
    const char *body;               /* borrowed from op->in */
} chat_env_t;

struct chat_op {
    pl_store_req_t req;
    chat_t *chat;                   /* not to be used once the op is back on a gateway
                                       thread: at shutdown the part is destroyed before
                                       the gateway drains its inboxes */
    pl_sig_gateway_t *gw;
    chat_exec_fn exec;
    chat_finish_fn finish;
    chat_text_fn text_fn;
    /* the requester; conn_id 0 = internal op without a reply */
    uint64_t conn_id;
    bool quiet;                     /* no reply (a chat.ack without an id) */
    unsigned thread;
    uint64_t account_id;
    uint64_t device_id;
    char username[CHAT_USERNAME_MAX + 1];
    json_t *req_id;                 /* a private copy of the request id, or NULL */
    char rtype[80];                 /* "<type>.result" */
    json_t *in;                     /* a private copy of the validated frame: the op's
                                       alone, so it may travel between threads; NULL
                                       for the hot ops, which copy what they need: */
    char *arena;                    /* owned: the strings below point into it */
    const char *client_id;          /* chat.send */
    const char *text;               /* chat.send to a group: the ciphertext */
    char to[CHAT_USERNAME_MAX + 1]; /* chat.send direct: the recipient, normalized */
    uint64_t target;                /* chat.send group id; chat.ack upto */
    int ctype;
    uint64_t now_ms;                /* wall clock when the op was made */
    uint64_t t0_us;                 /* monotonic, for the typing deadline */
    chat_limits_t lim;
    /* outcome (store thread writes, requester thread reads) */
    const char *err;                /* error code, or NULL on success */
    char err_msg[192];
    json_t *err_extra;              /* extra members of the error frame, or NULL */
    json_t *result;                 /* reply members; created lazily */
    int exec_rc;
    /* pushes to post after the commit, in order */
    chat_push_t *push_head;
    chat_push_t **push_tail;
    /* per-kind scratch */
    chat_env_t *envs;
    size_t n_envs;
    chat_env_t *own;                /* chat.send direct: copies for the sender's other
                                       devices (sorted by device), or NULL */
    size_t n_own;
    uint64_t u64[4];
    int ival;
};

/* Makes an op for a request (copies identity, id, type and the frame). */
chat_op_t *chat_op_new(chat_t *c, const pl_sig_req_t *req, chat_exec_fn exec);
/* The same without the frame copy: the handler copies what the exec needs. */
chat_op_t *chat_op_new_bare(chat_t *c, const pl_sig_req_t *req, chat_exec_fn exec);
/* An internal op (no requester). */
chat_op_t *chat_op_new_internal(chat_t *c, chat_exec_fn exec);
void chat_op_free(chat_op_t *op);
/* Submits op; done runs on the store thread, then the reply goes to op->thread. */
void chat_op_submit(chat_op_t *op);
/* Sets the protocol outcome (code from docs/PROTOCOL.md). Returns 0 so an exec can
 * `return chat_op_fail(...)` and keep (nothing of) its changes; see chat_op_abort. */
int chat_op_fail(chat_op_t *op, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The reply's members object (created on first use). Store thread. */
json_t *chat_op_result(chat_op_t *op);
/* Replies to a handler's request right away with a validation error (bad_field, which
 * counts towards the connection's abuse limit). */
void chat_reply_bad_field(pl_sig_req_t *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Replies right away with a chat error code (payload_too_large, not_found...). */
void chat_reply_error(pl_sig_req_t *req, const char *code, const char *message);

/* ---- pushes ---------------------------------------------------------------------- */

enum {
    CHAT_PUSH_MESSAGE,              /* a chat.message / chat.event from message data */
    CHAT_PUSH_EMPTY,                /* chat.queue_empty */
    CHAT_PUSH_FRAME,                /* a ready frame */
    CHAT_PUSH_RECEIPTS,             /* a chat.receipt from receipt data */
};

enum { CHAT_RCPT_DELIVERED, CHAT_RCPT_READ, CHAT_RCPT_EXPIRED };

/* One receipt of a chat.receipt frame ("user": who got or read it, the same for all
 * receipts of a frame; empty for expiries). */
typedef struct chat_receipt {
    uint64_t message_id;
    uint64_t group_id;              /* 0: a direct message */
    uint64_t at;
    uint8_t status;                 /* CHAT_RCPT_* */
    bool all;                       /* group: every member got there */
} chat_receipt_t;

/* What a chat.message push carries (copied or referenced, never pointing into SQLite). */
typedef struct chat_msgdata {
    uint64_t message_id;
    uint64_t from_id;
    uint64_t from_device;
    uint64_t group_id;
    uint64_t sent_at;
    int ctype;
    bool event;                     /* body is the event's JSON object text */
    char from[CHAT_USERNAME_MAX + 1];
    char to[CHAT_USERNAME_MAX + 1]; /* a copy of your own direct message: its recipient */
    char client_id[CHAT_CLIENT_ID_MAX + 1];
} chat_msgdata_t;

struct chat_push {
    pl_msg_t msg;
    chat_push_t *next;
    chat_t *chat;                   /* store thread only (see chat_op.chat) */
    pl_sig_gateway_t *gw;
    uint64_t conn_id;               /* a local connection, or 0 with route set */
    uint64_t route_account;         /* conn_id 0: route through the router to this user */
    uint64_t route_device;          /*   ... and device (0 = every device) */
    uint8_t kind;
    uint64_t deadline_us;           /* monotonic; 0 = none (typing: drop when late) */
    chat_msgdata_t md;
    chat_body_t *body;              /* CHAT_PUSH_MESSAGE: shared, counted */
    json_t *frame;                  /* CHAT_PUSH_FRAME (owned) */
    chat_receipt_t *rcpt;           /* CHAT_PUSH_RECEIPTS (owned), user in md.from */
    size_t n_rcpt;
};

/* Queues a push of a ready frame (owned) to a local connection. Store thread. */
void chat_push_frame(chat_op_t *op, uint64_t conn_id, json_t *frame);
/* Queues a chat.message push of body (a reference is taken). */
chat_push_t *chat_push_message(chat_op_t *op, uint64_t conn_id, const chat_msgdata_t *md,
                               chat_body_t *body);
void chat_push_empty(chat_op_t *op, uint64_t conn_id);
/* Sends frame (owned) to every chat-synced device of account on this node, except
 * except_device; with a router, devices on other nodes get it through the router. */
void chat_push_account(chat_op_t *op, uint64_t account_id, uint64_t except_device,
                       json_t *frame);
/* Sends chat.receipt with items (copied) to every chat-synced device of account here
 * (or through the router), receipts built on the receiving gateway thread. */
void chat_push_receipts(chat_op_t *op, uint64_t account_id, const chat_receipt_t *items,
                        size_t n, const char *user);
/* The chat.receipt frame as text, and as JSON (the router's path). Pure. */
void chat_receipts_text(const chat_receipt_t *items, size_t n, const char *user, pl_buf_t *b);
json_t *chat_receipts_frame(const chat_receipt_t *items, size_t n, const char *user);
/* Builds the chat.message / chat.event frame of a push (pure; for tests too). */
json_t *chat_msg_frame(const chat_msgdata_t *md, const char *body);
/* Appends the same chat.message frame as JSON text (not for events). Pure. */
void chat_msg_text(const chat_msgdata_t *md, const char *body, pl_buf_t *b);
/* Posts a list of pushes, in order (store thread, after the commit). */
void chat_push_post_all(chat_t *c, chat_push_t *head);
void chat_push_free(chat_push_t *p);

/* ---- store-thread state (chat_mem.c) ------------------------------------------- */

typedef struct chat_dev {
    uint64_t device_id;
    uint64_t account_id;
    uint64_t conn_id;               /* the chat-synced connection on this node, or 0 */
    int64_t queued;                 /* envelopes in the queue; -1 = unknown */
    uint64_t pushed_upto;           /* highest message id pushed on conn_id */
    uint32_t inflight;              /* pushed, not yet acknowledged */
    bool paging;                    /* live pushes paused: the backlog is read by pages */
    bool empty_sent;                /* "queue empty" marked on conn_id */
    uint64_t watch_conn;            /* the connection that subscribed to presence */
    uint64_t *watch;                /* ... and the accounts it watches */
    uint32_t n_watch;
} chat_dev_t;

typedef struct chat_acct {
    uint64_t account_id;
    uint32_t n_conns;               /* authenticated connections on this node */
    uint64_t *synced;               /* chat-synced devices on this node */
    uint32_t n_synced, cap_synced;
    uint64_t *watchers;             /* devices subscribed to this account's presence */
    uint32_t n_watchers, cap_watchers;
} chat_acct_t;

chat_mem_t *chat_mem_create(void);
void chat_mem_destroy(chat_mem_t *m);
/* Lookups return borrowed pointers valid until the next call that may create or drop. */
chat_dev_t *chat_mem_dev(chat_mem_t *m, uint64_t device_id, bool create);
chat_acct_t *chat_mem_acct(chat_mem_t *m, uint64_t account_id, bool create);
/* Marks device synced on conn (or unsynced with conn 0) and keeps the account's list. */
void chat_mem_set_synced(chat_mem_t *m, chat_dev_t *d, uint64_t conn_id);
/* Replaces d's presence subscription (made on conn_id) with accounts. */
void chat_mem_watch(chat_mem_t *m, chat_dev_t *d, uint64_t conn_id, const uint64_t *accounts,
                    size_t n);
void chat_mem_unwatch_all(chat_mem_t *m, chat_dev_t *d);
/* Forgets every cached queue length and every device's delivery state (after a failed
 * commit): calls fn for each synced connection first. */
void chat_mem_reset(chat_mem_t *m, void (*fn)(uint64_t conn_id, void *arg), void *arg);
/* The cached account id of a normalized username, or 0 (then ask the database). */
uint64_t chat_mem_name_get(const chat_mem_t *m, const char *name);
void chat_mem_name_put(chat_mem_t *m, const char *name, uint64_t account_id);
/* Whether (a, b) was seen before; remembers it. A bounded cache: false may repeat. */
bool chat_mem_pair_seen(chat_mem_t *m, uint64_t a, uint64_t b);
/* The rate bucket under key (created full on first use). */
chat_bucket_t *chat_mem_bucket(chat_mem_t *m, uint64_t key);
/* Drops entries that carry nothing (offline, unknown queue length, full buckets). */
void chat_mem_trim(chat_mem_t *m);
void chat_mem_trim_buckets(chat_mem_t *m, uint64_t now_ms);
size_t chat_mem_devices(const chat_mem_t *m);

/* A u64 -> pointer hash map (open addressing, backward-shift deletion). Pure. */
typedef struct chat_map_slot {
    uint64_t key;                   /* 0 = empty */
    void *val;
} chat_map_slot_t;
typedef struct chat_map {
    chat_map_slot_t *slots;         /* a key and its value share a cache line */
    size_t cap, count;
} chat_map_t;
void chat_map_init(chat_map_t *m);
void chat_map_deinit(chat_map_t *m);
/* Frees every value (plain allocations) and empties the map. */
void chat_map_clear_owned(chat_map_t *m);
void *chat_map_get(const chat_map_t *m, uint64_t key);
/* Sets key (!= 0) to val; returns the previous value or NULL. */
void *chat_map_put(chat_map_t *m, uint64_t key, void *val);
void *chat_map_del(chat_map_t *m, uint64_t key);
/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ... */

/* One generation of the client-id filter (chat_index.c): a blocked Bloom filter. */
typedef struct chat_cid_bloom {
    uint64_t *bits;                 /* 2^log2_blocks blocks of 512 bits */
    unsigned log2_blocks;
    size_t n, cap;                  /* keys added; keys it is sized for */
} chat_cid_bloom_t;

#define CHAT_CIDF_GENS 24
/* Memory the filter may take (about 1.5 bytes per message); past it, sends probe
 * chat_ix_client as if there were no filter. */
#define CHAT_CIDF_MAX_BYTES ((size_t)256 << 20)
/* Rows the filter reads at a time while it trails client_upto, and how often. */
#define CHAT_CIDF_CHUNK 1024
#define CHAT_CIDF_EVERY 4

/* The client ids of the messages not yet in chat_ix_client (chat_index.c): hash of
 * (sender, client id) -> a list of message ids. A hint checked against the row. And a
 * filter of the client ids of every row up to f_hw: a key it lacks is in none. */
typedef struct chat_cids {
    chat_map_t map;
    size_t n;                       /* ids held */
    size_t prune_at;                /* drop the indexed ones when n passes this */
    int64_t scan_hw;                /* rows up to this id were scanned */
    uint64_t epoch;                 /* pl_store_conn_rollbacks when built */
    uint64_t fv;                    /* pl_store_conn_foreign_version at the last scan */
    bool built, fv_valid;
    int64_t upto;                   /* client_upto when the memory was built or pruned */
    chat_cid_bloom_t gen[CHAT_CIDF_GENS];
    unsigned n_gens;
    size_t f_bytes;
    int64_t f_hw;                   /* the keys of every row with id <= f_hw are in gen */
    bool f_full;                    /* over CHAT_CIDF_MAX_BYTES: no longer used */
    unsigned f_tick;
    uint64_t probes;                /* chat_ix_client look-ups (tests) */
} chat_cids_t;

/* ---- pure helpers (chat_util.c) -------------------------------------------------- */

/* True for standard base64 (RFC 4648 §4) with padding, length a multiple of 4, > 0. */
bool chat_b64_ok(const char *s, size_t len);
/* True for a client message id: 1..64 bytes of [A-Za-z0-9_.:-]. */
bool chat_client_id_ok(const char *s);
/* True for text without control characters (names, descriptions). */
bool chat_text_ok(const char *s);
/* True for an asset id: [A-Za-z0-9_.:-]*. */
bool chat_asset_ok(const char *s);
/* Lower-cases and checks a username (3..32 of [a-z0-9_.-], first alphanumeric). */
bool chat_username_norm(const char *in, char out[CHAT_USERNAME_MAX + 1]);
/* Compares two ascending id lists: fills missing (in want, not in have) and extra (in
 * have, not in want); each out array must hold the input's length. */
void chat_ids_diff(const uint64_t *want, size_t n_want, const uint64_t *have, size_t n_have,
                   uint64_t *missing, size_t *n_missing, uint64_t *extra, size_t *n_extra);
void chat_ids_sort(uint64_t *ids, size_t n);
/* Removes duplicates from a sorted list; returns the new length. */
size_t chat_ids_uniq(uint64_t *ids, size_t n);
/* Reads an array of positive ids (at most max). Returns the count, or -1 when a member
 * is not an id in [1, 2^53-1]. *out is owned (free()). */
long chat_ids_from_json(const json_t *arr, size_t max, uint64_t **out);
json_t *chat_ids_json(const uint64_t *ids, size_t n);

/* Presence privacy. */
enum { CHAT_PRIV_EVERYONE = 0, CHAT_PRIV_CONTACTS = 1, CHAT_PRIV_NOBODY = 2 };
int chat_privacy_parse(const char *s);          /* -1 when unknown */
const char *chat_privacy_name(int p);
/* Whether viewer may see subject's presence: each side's setting must allow the other
 * (reciprocal). *_has_other: whether that side lists the other as a contact. */
bool chat_presence_visible(int subject_priv, bool subject_has_viewer, int viewer_priv,
                           bool viewer_has_subject);

/* Takes one token from b; returns true when allowed, else false with *retry_ms. */
bool chat_bucket_take(chat_bucket_t *b, uint64_t now_ms, uint32_t per_min, uint32_t burst,
                      uint64_t *retry_ms);

/* ---- per-area entry points ------------------------------------------------------- */

/* Frame tables (registered by chat_part.c). */
extern const pl_sig_handler_t chat_sync_handlers[];
extern const size_t chat_sync_n_handlers;
extern const pl_sig_handler_t chat_send_handlers[];
extern const size_t chat_send_n_handlers;
extern const pl_sig_handler_t chat_ack_handlers[];
extern const size_t chat_ack_n_handlers;
extern const pl_sig_handler_t chat_presence_handlers[];
extern const size_t chat_presence_n_handlers;
extern const pl_sig_handler_t chat_msg_handlers[];
extern const size_t chat_msg_n_handlers;
extern const pl_sig_handler_t chat_query_handlers[];
extern const size_t chat_query_n_handlers;
extern const pl_sig_handler_t chat_group_handlers[];
extern const size_t chat_group_n_handlers;
extern const pl_sig_handler_t chat_social_handlers[];
extern const size_t chat_social_n_handlers;
extern const pl_sig_handler_t chat_keys_handlers[];
extern const size_t chat_keys_n_handlers;

/* chat_deliver.c (store thread): queue pages and live pushes. */
/* Pushes the next page of d's queue (if d is synced and its window has room); marks
 * the end of the backlog. Returns 0 or a negative store error. */
int chat_deliver_page(chat_op_t *op, pl_store_conn_t *conn, chat_dev_t *d);
/* The cached queue length of d (reads it on a miss). Negative on a store error. */
int64_t chat_deliver_queued(chat_op_t *op, pl_store_conn_t *conn, chat_dev_t *d);
/* Whether d's queue is full: 1 full, 0 not, < 0 a store error. */
int chat_deliver_full(chat_op_t *op, pl_store_conn_t *conn, chat_dev_t *d);
/* Called for every envelope inserted for device d (message md): counts it, and pushes
 * it live when d is synced here and its window has room; otherwise routes it (other
 * node) or leaves it for the next page. *body is created from text on first need and
 * shared by later calls; the caller unrefs it (if set) when done. */
void chat_deliver_new(chat_op_t *op, chat_dev_t *d, const chat_msgdata_t *md,
                      const char *text, chat_body_t **body);
/* The connection ops of the gateway hooks and chat.sync. */
void chat_deliver_conn_up(chat_t *c, const pl_sig_conn_info_t *ci);
void chat_deliver_conn_down(chat_t *c, const pl_sig_conn_info_t *ci);

/* chat_event.c (store thread): durable server events (group membership, identity
 * changes) queued like messages for every device of the given accounts. body_obj is
 * the event object (borrowed). extra_devices: devices to include besides. */
int chat_event_emit(chat_op_t *op, pl_store_conn_t *conn, uint64_t group_id,
                    const uint64_t *accounts, size_t n_accounts, json_t *body_obj);
/* Receipts for account's devices: pushed live to its chat-synced devices (or through
 * the router), and queued durably -- a chat.event "receipts" -- for each of its
 * devices not chat-synced on this node, so a device that was away learns its ticks
 * when it syncs (direct receipts, and a group message's "all" ones). Returns 0 or a
 * negative store error. */
int chat_receipts_send(chat_op_t *op, pl_store_conn_t *conn, uint64_t account_id,
                       const chat_receipt_t *items, size_t n, const char *user);

/* chat_index.c (store thread): the lookup indexes chat_ix_conv, chat_ix_sender and
 * chat_ix_client trail chat_messages and catch up in sorted runs. Messages added since the last
 * catch-up that make it worth another one. */
#define CHAT_IX_RUN 32768
/* Messages between two steps of a catch-up under way (a run takes ~40 steps), the
 * messages whose keys one step reads into the sorted runs in memory, and the keys one
 * step moves from a run into its index. */
#define CHAT_IX_STEP_EVERY 512
#define CHAT_IX_FILL 4096
#define CHAT_IX_SLICE 2048
/* The most messages one spread catch-up takes on (its sorted runs are in memory). */
#define CHAT_IX_JOB_MAX (4 * CHAT_IX_RUN)
/* Brings the index tables up to the newest message; run before reading them.
 * Returns 0 or a negative store error. */
int chat_ix_catch_up(chat_t *c, pl_store_conn_t *conn);
/* A lookup catches the history and find indexes up first only when at most this many
 * rows trail them (a few milliseconds); past that, catching up in one go would hold
 * the store thread for tens of milliseconds, so the lookup reads the rows above the
 * mark from chat_messages instead. */
#define CHAT_IX_SYNC_MAX 4096
/* For a lookup in chat_ix_conv or chat_ix_sender: catches them up when at most
 * CHAT_IX_SYNC_MAX rows trail and returns INT64_MAX (the tables hold every message);
 * else returns their mark: they hold every message id up to it (and perhaps some
 * above, added by a catch-up under way), and the lookup reads the ids above it from
 * chat_messages. A negative store error otherwise. */
int64_t chat_ix_lookup_mark(chat_t *c, pl_store_conn_t *conn);
/* Brings chat_ix_client up to the newest message. Returns 0 or a negative store error. */
int chat_cid_catch_up(chat_t *c, pl_store_conn_t *conn);
/* After adding a row to chat_messages: starts a catch-up of each index set every
 * CHAT_IX_RUN rows and takes a step of one under way every CHAT_IX_STEP_EVERY. */
int chat_ix_added(chat_t *c, pl_store_conn_t *conn);
/* The message sender sent with client_id earlier: 1 (id and created_at set), 0 none,
 * or a negative store error. */
int chat_cid_find(chat_t *c, pl_store_conn_t *conn, uint64_t sender, const char *client_id,
                  uint64_t *id, uint64_t *created_at);
/* After inserting message id with a client id (in the same request). */
void chat_cid_added(chat_t *c, uint64_t sender, const char *client_id, uint64_t id);
void chat_cids_free(chat_t *c);
/* Frees the client-id memory and the catch-ups' runs (store thread, or after it ended). */
void chat_ix_free(chat_t *c);

/* ---- device lists in memory (chat_devs.c: store thread) ------------------------------ */

typedef struct chat_devs chat_devs_t;
/* chat_sql_devices through the memory: the ids of account's devices, ascending, in an
 * owned *out. Returns how many, or < 0 (store error). Never older than the database. */
long chat_devices(chat_t *c, pl_store_conn_t *conn, uint64_t account_id, uint64_t **out);
void chat_devs_free(chat_t *c);

/* chat_sql.c (store thread): small shared queries. */
/* Account id of a normalized username, or 0 (or negative on error). */
int64_t chat_sql_account(pl_store_conn_t *conn, const char *username);
/* The same through the store-thread cache of names. */
int64_t chat_lookup_account(chat_op_t *op, pl_store_conn_t *conn, const char *username);
/* Username of an account into out (empty when unknown). */
int chat_sql_username(pl_store_conn_t *conn, uint64_t account_id, char out[CHAT_USERNAME_MAX + 1]);
/* Runs sql (a string literal: statements are cached by pointer) with ?1 = id and
 * collects column 0 of every row. *out owned. Returns count or negative. */
long chat_sql_ids(pl_store_conn_t *conn, const char *sql, uint64_t id, uint64_t **out);
/* The devices of an account, ascending. *out owned. Returns count or negative. */
long chat_sql_devices(pl_store_conn_t *conn, uint64_t account_id, uint64_t **out);
/* Member role in a group: 1 admin, 0 member, -1 not a member (or no such group),
 * < -1 a store error. */
int chat_sql_member_role(pl_store_conn_t *conn, uint64_t group_id, uint64_t account_id);
/* Account ids of a group's members, ascending. */
long chat_sql_members(pl_store_conn_t *conn, uint64_t group_id, uint64_t **out);
/* Whether owner lists contact. <0 on error. */
int chat_sql_is_contact(pl_store_conn_t *conn, uint64_t owner, uint64_t contact);
/* Settings of an account: privacy and read receipts (defaults when no row). */
int chat_sql_settings(pl_store_conn_t *conn, uint64_t account_id, int *privacy,
                      bool *read_receipts, uint64_t *last_seen_at);
/* Resolves the usernames in arr (strings) to account ids (owned array). On an unknown
 * or malformed name sets the op's error and returns -1; < -1 on a store error. */
long chat_sql_resolve(chat_op_t *op, pl_store_conn_t *conn, const json_t *arr,
                      uint64_t **out);
const char *chat_sql_text(sqlite3_stmt *st, int col);

/* chat_presence.c (store thread): online/offline transitions of an account. */
void chat_presence_changed(chat_op_t *op, pl_store_conn_t *conn, uint64_t account_id,
                           bool online, uint64_t last_seen_at);

/* chat_keys.c: identity change announcements use chat_event_emit. */

/* Schema (chat_schema.c). */
extern const pl_store_schema_t chat_schema;

#endif
