/* ratelimit.c: token buckets, alone (per connection, owned by its gateway thread) and
 * keyed by string (per source IP, per account: shared by every gateway thread).
 *
 * What it does not do: cross-node limits (a Redis backend can replace the keyed
 * limiter later behind the same calls).
 *
 * Threading: pl_sig_bucket_* are pure. A pl_sig_limiter_t is shared; its mutex is a
 * leaf (no callbacks or blocking calls under it). */
#include "signaling/sig_int.h"

#include <stdlib.h>
#include <string.h>

void pl_sig_bucket_init(pl_sig_bucket_t *b, double burst, uint64_t now_ms)
{
    b->tokens = burst;
    b->last_ms = now_ms;
}

bool pl_sig_bucket_take(pl_sig_bucket_t *b, uint64_t now_ms, double rate, double burst,
                        uint64_t *retry_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        b->last_ms = now_ms;
    }
    if (b->tokens > burst)
        b->tokens = burst;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    if (retry_ms)
        *retry_ms = rate > 0 ? (uint64_t)((1.0 - b->tokens) * 1000.0 / rate) + 1 : UINT64_MAX;
    return false;
}

/* ---- keyed limiter --------------------------------------------------------------- */

#define KEY_MAX 64

typedef struct entry {
    char key[KEY_MAX];          /* "" = empty slot */
    pl_sig_bucket_t bucket;
} entry_t;

struct pl_sig_limiter {
    pthread_mutex_t lock;
    entry_t *slots;
    size_t cap;                 /* power of two, >= 2 * max_keys */
    size_t count;
    size_t max_keys;
};

pl_sig_limiter_t *pl_sig_limiter_create(size_t max_keys)
{
    pl_sig_limiter_t *l = pl_xcalloc(1, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    l->max_keys = max_keys ? max_keys : 1;
    l->cap = 16;
    while (l->cap < 2 * l->max_keys)
        l->cap *= 2;
    l->slots = pl_xcalloc(l->cap, sizeof(*l->slots));
    return l;
}

void pl_sig_limiter_destroy(pl_sig_limiter_t *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->lock);
    free(l->slots);
    free(l);
}

static size_t key_hash(const char *k)
{
    uint64_t h = 1469598103934665603ull;        /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (uint8_t)*k) * 1099511628211ull;
    return (size_t)h;
}

static entry_t *find_slot(entry_t *slots, size_t cap, const char *key)
{
    size_t i = key_hash(key) & (cap - 1);
    while (slots[i].key[0] && strcmp(slots[i].key, key) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* Rebuilds the table keeping only buckets that have not refilled to burst (a full
 * bucket carries no information); if every bucket is still in use, the least recently
 * used one goes too, so the new key always finds room. */
static uint64_t idle_ms(const entry_t *e, uint64_t now_ms)
{
    /* Callers read the clock before taking the lock, so last_ms may be a little ahead. */
    return now_ms > e->bucket.last_ms ? now_ms - e->bucket.last_ms : 0;
}

static void sweep(pl_sig_limiter_t *l, uint64_t now_ms, double rate, double burst)
{
    entry_t *old = l->slots;
    uint64_t full_after_ms = rate > 0 ? (uint64_t)(burst * 1000.0 / rate) : UINT64_MAX;
    size_t lru = SIZE_MAX, survivors = 0;
    for (size_t i = 0; i < l->cap; i++) {
        if (!old[i].key[0])
            continue;
        if (lru == SIZE_MAX || old[i].bucket.last_ms < old[lru].bucket.last_ms)
            lru = i;
        if (idle_ms(&old[i], now_ms) < full_after_ms)
            survivors++;
    }
    l->slots = pl_xcalloc(l->cap, sizeof(*l->slots));
    l->count = 0;
    for (size_t i = 0; i < l->cap; i++) {
        if (!old[i].key[0] || idle_ms(&old[i], now_ms) >= full_after_ms)
            continue;
        if (i == lru && survivors >= l->max_keys)
            continue;
        *find_slot(l->slots, l->cap, old[i].key) = old[i];
        l->count++;
    }
    free(old);
}

bool pl_sig_limiter_take(pl_sig_limiter_t *l, const char *key, uint64_t now_ms,
                         double rate, double burst, uint64_t *retry_ms)
{
    char k[KEY_MAX];
    size_t n = strlen(key);
    if (n >= KEY_MAX)
        n = KEY_MAX - 1;
    memcpy(k, key, n);
    k[n] = '\0';
    if (!k[0])
        return true;
    pthread_mutex_lock(&l->lock);
    entry_t *e = find_slot(l->slots, l->cap, k);
    if (!e->key[0]) {
        if (l->count >= l->max_keys) {
            sweep(l, now_ms, rate, burst);
            e = find_slot(l->slots, l->cap, k);
        }
        memcpy(e->key, k, n + 1);
        pl_sig_bucket_init(&e->bucket, burst, now_ms);
        l->count++;
    }
    bool ok = pl_sig_bucket_take(&e->bucket, now_ms, rate, burst, retry_ms);
    pthread_mutex_unlock(&l->lock);
    return ok;
}

size_t pl_sig_limiter_size(pl_sig_limiter_t *l)
{
    pthread_mutex_lock(&l->lock);
    size_t n = l->count;
    pthread_mutex_unlock(&l->lock);
    return n;
}
