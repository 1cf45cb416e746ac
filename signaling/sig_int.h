/* sig_int.h: signaling's private cross-file declarations that do not involve
 * libwebsockets: the frame codec and validation (frame.c), error codes, password and
 * token crypto (crypto.c), rate limiting (ratelimit.c) and the device directory
 * (directory.c). Not for other modules. Pure parts (frame, crypto, bucket math) do no
 * I/O and no logging, so unit tests call them directly. */
#ifndef PL_SIG_INT_H
#define PL_SIG_INT_H

#include "signaling/pl_signaling.h"

#include <pthread.h>

/* ---- error codes (docs/PROTOCOL.md "Errors") ------------------------------------- */

typedef enum pl_sig_err {
    PL_SIG_ERR_NONE = 0,
    PL_SIG_ERR_BAD_JSON,            /* not JSON / not UTF-8 */
    PL_SIG_ERR_BAD_FRAME,           /* not an object, type or id missing/wrong */
    PL_SIG_ERR_UNKNOWN_TYPE,
    PL_SIG_ERR_BAD_FIELD,           /* missing, wrong-typed or out-of-range field */
    PL_SIG_ERR_AUTH_REQUIRED,
    PL_SIG_ERR_AUTH_FAILED,
    PL_SIG_ERR_ALREADY_AUTHENTICATED,
    PL_SIG_ERR_RATE_LIMITED,
    PL_SIG_ERR_NOT_FOUND,
    PL_SIG_ERR_BAD_CREDENTIALS,
    PL_SIG_ERR_USERNAME_TAKEN,
    PL_SIG_ERR_TOO_MANY_DEVICES,
    PL_SIG_ERR_BUSY,
    PL_SIG_ERR_INTERNAL,
    PL_SIG_ERR_OTHER,               /* any code registered by another part */
    PL_SIG_ERR_COUNT
} pl_sig_err_t;

const char *pl_sig_err_code(pl_sig_err_t e);
/* PL_SIG_ERR_OTHER for a code not in the list. */
pl_sig_err_t pl_sig_err_from_code(const char *code);
/* True for errors caused by a misbehaving client; they count towards max_errors. */
bool pl_sig_err_is_abuse(pl_sig_err_t e);

/* ---- JSON (json_parse.c: pure) ----------------------------------------------------- */

/* json_loadb(data, len, flags, err) with the same result on every input, faster on the
 * common one (yajl's lexer builds the tree; jansson parses whatever yajl might read
 * differently, and reports every error). flags: JSON_REJECT_DUPLICATES, optionally
 * with JSON_DECODE_ANY. Returns an owned value, or NULL with err filled in (err may be
 * NULL). */
json_t *pl_sig_json_loadb(const char *data, size_t len, size_t flags, json_error_t *err);

/* ---- frames (frame.c: pure) ------------------------------------------------------ */

#define PL_SIG_TYPE_MAX 64
#define PL_SIG_ID_MAX 128

typedef struct pl_sig_verdict {
    pl_sig_err_t err;
    char message[192];
} pl_sig_verdict_t;

/* Parses a text frame and checks the envelope: a JSON object whose "type" is a string
 * of 1..64 characters [a-z0-9_.] and whose optional "id" is a string of at most 128
 * bytes or an integer. Returns an owned frame with *type and *id borrowed from it, or
 * NULL with v filled in (bad_json, bad_frame). */
json_t *pl_sig_frame_parse(const char *data, size_t len, const char **type, json_t **id,
                           pl_sig_verdict_t *v);
/* Checks frame against a field table. Returns 0, or -1 with v filled in (bad_field,
 * message naming the field). */
int pl_sig_frame_validate(const json_t *frame, const pl_sig_field_t *fields, size_t n,
                          pl_sig_verdict_t *v);
/* Builds {"type":"error","id":id,"code":code,"message":message} (id may be NULL). */
json_t *pl_sig_frame_error(json_t *id, const char *code, const char *message);
/* Builds {"type":type,"id":id,...fields}; takes ownership of fields (object or NULL). */
json_t *pl_sig_frame_make(const char *type, json_t *id, json_t *fields);

/* ---- crypto (crypto.c) ------------------------------------------------------------ */

#define PL_SIG_TOKEN_LEN 43             /* base64url of 32 random bytes, no padding */
#define PL_SIG_PWHASH_MAX 160

/* scrypt (RFC 7914) with a fresh 16-byte random salt, r=8, p=1, N=2^log2_n, encoded
 * as "$scrypt$ln=15,r=8,p=1$<salt b64>$<hash b64>". Returns 0 or PL_ECRYPTO. Slow by
 * design: never call on a gateway thread. */
int pl_sig_pw_hash(const char *password, size_t len, unsigned log2_n,
                   char out[PL_SIG_PWHASH_MAX]);
/* Returns 1 when password matches encoded, 0 when not, PL_EPARSE for a malformed
 * encoding, PL_ECRYPTO on a library failure. Constant-time comparison. */
int pl_sig_pw_verify(const char *password, size_t len, const char *encoded);
/* A new session token: 32 bytes from the OpenSSL CSPRNG, base64url. */
int pl_sig_token_new(char out[PL_SIG_TOKEN_LEN + 1]);
/* SHA-256 of the token text: what the store keeps. */
void pl_sig_token_hash(const char *token, size_t len, uint8_t out[32]);

/* ---- rate limiting (ratelimit.c) -------------------------------------------------- */

/* A token bucket: capacity burst, refilled at rate tokens per second. Pure. */
typedef struct pl_sig_bucket {
    double tokens;
    uint64_t last_ms;
} pl_sig_bucket_t;

void pl_sig_bucket_init(pl_sig_bucket_t *b, double burst, uint64_t now_ms);
/* Takes one token. Returns true when allowed; else false and *retry_ms (if non-NULL)
 * is how long until a token is available. */
bool pl_sig_bucket_take(pl_sig_bucket_t *b, uint64_t now_ms, double rate, double burst,
                        uint64_t *retry_ms);

/* Buckets keyed by a string (an IP, a username), shared by all gateway threads behind
 * a leaf mutex. Bounded: when full, buckets that have refilled are dropped; if none
 * has, the least recently used one is. */
typedef struct pl_sig_limiter pl_sig_limiter_t;
pl_sig_limiter_t *pl_sig_limiter_create(size_t max_keys);
void pl_sig_limiter_destroy(pl_sig_limiter_t *l);
bool pl_sig_limiter_take(pl_sig_limiter_t *l, const char *key, uint64_t now_ms,
                         double rate, double burst, uint64_t *retry_ms);
size_t pl_sig_limiter_size(pl_sig_limiter_t *l);

/* ---- device directory (directory.c) ------------------------------------------------ */

/* device id -> conn id of its live connection on this node. Leaf mutex; any thread. */
typedef struct pl_sig_dir pl_sig_dir_t;
pl_sig_dir_t *pl_sig_dir_create(void);
void pl_sig_dir_destroy(pl_sig_dir_t *d);
/* Sets device -> conn. Returns the conn id it replaced, or 0. */
uint64_t pl_sig_dir_put(pl_sig_dir_t *d, uint64_t device_id, uint64_t conn_id);
/* Removes device's entry only if it still names conn_id. */
void pl_sig_dir_remove(pl_sig_dir_t *d, uint64_t device_id, uint64_t conn_id);
uint64_t pl_sig_dir_get(pl_sig_dir_t *d, uint64_t device_id);
size_t pl_sig_dir_count(pl_sig_dir_t *d);

#endif
