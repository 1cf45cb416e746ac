/* acct_int.h: the accounts part of signaling (accounts, devices, sessions, profiles):
 * its store operations (acct_db.c), the password-hashing workers that orchestrate
 * register and login (acct_kdf.c), the HTTP routes (acct_http.c) and the WebSocket
 * handlers (acct_ws.c). Private to signaling/.
 *
 * Threading: an acct op is created on a gateway or KDF thread, executed on the store
 * thread, and finished (its done) on the thread its reply names; it is owned by exactly
 * one of them at a time. pl_sig_accounts_t is immutable after init except its limits
 * (atomics) and the limiters (their own leaf locks). */
#ifndef PL_SIG_ACCT_INT_H
#define PL_SIG_ACCT_INT_H

#include "signaling/gw_int.h"
#include "signaling/sig_parts.h"

#define PL_SIG_USERNAME_MAX 32
#define PL_SIG_DEVICE_NAME_MAX 64
#define PL_SIG_DISPLAY_NAME_MAX 64
#define PL_SIG_ABOUT_MAX 256
#define PL_SIG_AVATAR_MAX 128
#define PL_SIG_PASSWORD_MIN 8
#define PL_SIG_PASSWORD_MAX 1024

typedef struct pl_sig_kdf pl_sig_kdf_t;

typedef struct pl_sig_accounts {
    pl_sig_gateway_t *gw;
    pl_store_t *store;
    pl_sig_kdf_t *kdf;
    pl_sig_limiter_t *ip_limiter;
    pl_sig_limiter_t *user_limiter;
    unsigned scrypt_log2_n;
    _Atomic uint32_t max_devices;
    _Atomic uint64_t session_ttl_ms;
    _Atomic uint32_t ip_per_min, ip_burst;
    _Atomic uint32_t user_per_min, user_burst;
    pl_timer_t sweep_timer;         /* main loop */
    pl_loop_t *main_loop;
} pl_sig_accounts_t;

typedef enum pl_sig_acct_kind {
    ACCT_REGISTER,          /* insert account + first device + session */
    ACCT_FIND_LOGIN,        /* read id and password hash by username */
    ACCT_LOGIN,             /* device (new or same name) + fresh session */
    ACCT_CHECK_TOKEN,       /* session -> identity; touches last_seen */
    ACCT_DEVICES,
    ACCT_REVOKE_DEVICE,
    ACCT_PROFILE_GET,
    ACCT_PROFILE_SET,
    ACCT_SWEEP,             /* drop expired sessions and devices left without one */
} pl_sig_acct_kind_t;

enum { ACCT_SET_DISPLAY = 1, ACCT_SET_ABOUT = 2, ACCT_SET_AVATAR = 4 };

typedef struct pl_sig_acct_op pl_sig_acct_op_t;
typedef void (*pl_sig_acct_done_fn)(pl_sig_acct_op_t *op);

struct pl_sig_acct_op {
    pl_store_req_t req;
    pl_sig_acct_kind_t kind;
    pl_sig_accounts_t *acc;
    pl_sig_acct_done_fn done;       /* on the reply thread; must free with acct_op_free */

    /* who asked: a WebSocket request or an HTTP transaction */
    uint64_t conn_id;
    uint64_t http_id;
    unsigned thread;
    pl_sig_pending_t *pending;
    json_t *req_id;                 /* private deep copy of the frame id (auth) */
    char peer[64];

    /* inputs */
    bool by_token;                  /* HTTP: authenticate token_hash inside the exec */
    uint8_t token_hash[32];
    uint64_t account_id;            /* WebSocket ops: the connection's identity */
    uint64_t device_id;
    uint64_t target_id;             /* device to revoke */
    uint64_t now_ms;                /* wall clock */
    uint64_t ttl_ms;
    uint32_t max_devices;
    unsigned set_mask;
    char username[PL_SIG_USERNAME_MAX + 1];
    char target_user[PL_SIG_USERNAME_MAX + 1];     /* profile of someone else */
    char device_name[PL_SIG_DEVICE_NAME_MAX + 1];
    char display_name[PL_SIG_DISPLAY_NAME_MAX + 1];
    char about[PL_SIG_ABOUT_MAX + 1];
    char avatar[PL_SIG_AVATAR_MAX + 1];
    char pw_hash[PL_SIG_PWHASH_MAX];
    char *password;                 /* owned, wiped on free (login) */
    size_t password_len;

    /* outputs */
    pl_sig_err_t outcome;           /* PL_SIG_ERR_NONE on success */
    pl_sig_auth_fail_t fail_reason; /* when outcome is AUTH_FAILED */
    const char *message;            /* static text for the error */
    uint64_t replaced_device;       /* login reused a device: its old session died */
    uint64_t expires_at_ms;
    char token[PL_SIG_TOKEN_LEN + 1];
    json_t *result;                 /* built by the exec; owned by the op */
};

/* acct_db.c */
extern const pl_store_schema_t pl_sig_accounts_schema;
pl_sig_acct_op_t *acct_op_new(pl_sig_accounts_t *acc, pl_sig_acct_kind_t kind);
void acct_op_free(pl_sig_acct_op_t *op);
/* The store completion of every op: maps a failed batch to "internal", runs op->done. */
void acct_store_done(pl_store_req_t *req);
/* Submits op; its done runs on gateway thread op->thread. */
void acct_op_submit_to_gateway(pl_sig_acct_op_t *op);

/* acct_kdf.c: worker threads for scrypt. */
int pl_sig_kdf_create(pl_sig_accounts_t *acc, unsigned threads, unsigned queue_max,
                      pl_metrics_t *metrics, pl_sig_kdf_t **out);
void pl_sig_kdf_stop(pl_sig_kdf_t *k);
void pl_sig_kdf_destroy(pl_sig_kdf_t *k);
/* Takes ownership of op (kind ACCT_REGISTER with password, or ACCT_FIND_LOGIN).
 * Returns 0, or -EBUSY when the queue is full (op untouched, still the caller's). */
int pl_sig_kdf_submit(pl_sig_kdf_t *k, pl_sig_acct_op_t *op);

/* Input rules shared by HTTP bodies and frames. */
bool pl_sig_username_normalize(const char *in, char out[PL_SIG_USERNAME_MAX + 1]);
bool pl_sig_text_ok(const char *s);     /* no control characters */
bool pl_sig_asset_id_ok(const char *s); /* [A-Za-z0-9_.:-]* */
/* Per-IP / per-account login and registration limits. Returns true when allowed. */
bool pl_sig_acct_rate_ok(pl_sig_accounts_t *acc, const char *ip, const char *username,
                         uint64_t *retry_ms);

/* Copies display_name/about/avatar present in o into op (set_mask). Returns 0, or -1
 * with *why naming the bad or missing field. */
int pl_sig_acct_profile_fill(pl_sig_acct_op_t *op, const json_t *o, const char **why);

/* acct_http.c / acct_ws.c */
extern const pl_sig_http_route_t pl_sig_acct_routes[];
extern const size_t pl_sig_acct_n_routes;
extern const pl_sig_handler_t pl_sig_acct_handlers[];
extern const size_t pl_sig_acct_n_handlers;
/* The JSON of one device row, and of a profile. */
json_t *pl_sig_acct_profile_json(const char *username, const char *display, const char *about,
                                 const char *avatar);

#endif
