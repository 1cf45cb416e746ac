/* turn_shared.c: the only state relay threads share, all off the packet path:
 *   - the relay port pool: one bitmap per family, taken and released with atomic
 *     fetch_or / fetch_and (lock-free; a port is free when its bit is clear);
 *   - allocation counts per user and in total, for turn.user_quota and
 *     turn.max_allocations (a leaf mutex around a small chained hash);
 *   - RESERVATION-TOKENs (RFC 8656 §7.2, EVEN-PORT with R): token -> reserved port
 *     and the socket that holds it bound (io port_hold), about 30 s, because the
 *     Allocate that claims it may arrive on another thread (a leaf mutex around a
 *     small array);
 *   - the nonce secret (random at start, immutable).
 *
 * What it does not: open sockets (the io does); it only closes the hold sockets of
 * reservations that expire or go with the table.
 *
 * Threading: every function is thread-safe; the mutexes are leaves (nothing is called
 * while they are held). */
#include "relay/turn/turn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define RESV_MAX 4096

struct pl_turn_quota_entry {
    pl_turn_quota_entry_t *next;
    uint32_t count;
    char name[];
};

/* ---- port pool ----------------------------------------------------------------- */

static void ports_init(pl_turn_ports_t *p, uint16_t lo, uint16_t hi)
{
    p->lo = lo;
    p->hi = hi;
    p->n_words = ((size_t)(hi - lo) + 1 + 63) / 64;
    p->bits = pl_xcalloc(p->n_words, sizeof *p->bits);
}

static bool bit_take(pl_turn_ports_t *p, size_t idx)
{
    uint64_t bit = UINT64_C(1) << (idx % 64);
    return !(atomic_fetch_or_explicit(&p->bits[idx / 64], bit, memory_order_acq_rel) & bit);
}

static void bit_clear(pl_turn_ports_t *p, size_t idx)
{
    uint64_t bit = UINT64_C(1) << (idx % 64);
    atomic_fetch_and_explicit(&p->bits[idx / 64], ~bit, memory_order_acq_rel);
}

int pl_turn_ports_take_one(pl_turn_ports_t *p, uint16_t port)
{
    if (port < p->lo || port > p->hi)
        return -EBUSY;
    return bit_take(p, (size_t)(port - p->lo)) ? 0 : -EBUSY;
}

void pl_turn_ports_release(pl_turn_ports_t *p, uint16_t port)
{
    if (port >= p->lo && port <= p->hi)
        bit_clear(p, (size_t)(port - p->lo));
}

/* Bits of a word whose port has the wanted parity (index 0 is port lo). */
static uint64_t parity_mask(const pl_turn_ports_t *p, bool even)
{
    if (!even)
        return ~UINT64_C(0);
    /* Even ports sit at even indexes when lo is even, odd indexes otherwise. */
    return (p->lo % 2 == 0) ? UINT64_C(0x5555555555555555) : UINT64_C(0xAAAAAAAAAAAAAAAA);
}

static bool try_index(pl_turn_ports_t *p, size_t idx, bool pair)
{
    size_t n = (size_t)(p->hi - p->lo) + 1;
    if (idx >= n || (pair && idx + 1 >= n))
        return false;
    if (!bit_take(p, idx))
        return false;
    if (pair && !bit_take(p, idx + 1)) {
        bit_clear(p, idx);
        return false;
    }
    return true;
}

int pl_turn_ports_take(pl_turn_ports_t *p, uint32_t rnd, bool even, bool pair, uint16_t *out)
{
    uint64_t want = parity_mask(p, even);
    size_t start = rnd % p->n_words;
    for (size_t k = 0; k < p->n_words; k++) {
        size_t w = (start + k) % p->n_words;
        uint64_t free_bits = ~atomic_load_explicit(&p->bits[w], memory_order_acquire) & want;
        /* Start inside the word at a random bit too, so two threads rarely collide. */
        unsigned rot = (rnd >> 8) % 64;
        uint64_t rotated = rot ? (free_bits >> rot) | (free_bits << (64 - rot)) : free_bits;
        while (rotated) {
            unsigned b = ((unsigned)__builtin_ctzll(rotated) + rot) % 64;
            rotated &= rotated - 1;
            size_t idx = w * 64 + b;
            if (try_index(p, idx, pair)) {
                *out = (uint16_t)(p->lo + idx);
                return 0;
            }
        }
    }
    return -ENOSPC;
}

size_t pl_turn_ports_in_use(const pl_turn_ports_t *p)
{
    size_t n = 0;
    for (size_t w = 0; w < p->n_words; w++)
        n += (size_t)__builtin_popcountll(atomic_load_explicit(&p->bits[w], memory_order_relaxed));
    return n;
}

/* ---- quotas -------------------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;      /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static pl_turn_quota_entry_t **quota_slot(pl_turn_shared_t *sh, const char *user)
{
    pl_turn_quota_entry_t **pp = &sh->quota[hash_str(user) & (sh->quota_cap - 1)];
    while (*pp && strcmp((*pp)->name, user) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void quota_grow(pl_turn_shared_t *sh)
{
    size_t cap = sh->quota_cap * 2;
    pl_turn_quota_entry_t **t = pl_xcalloc(cap, sizeof *t);
    for (size_t i = 0; i < sh->quota_cap; i++) {
        for (pl_turn_quota_entry_t *e = sh->quota[i], *next; e; e = next) {
            next = e->next;
            size_t b = hash_str(e->name) & (cap - 1);
            e->next = t[b];
            t[b] = e;
        }
    }
    free(sh->quota);
    sh->quota = t;
    sh->quota_cap = cap;
}

int pl_turn_quota_acquire(pl_turn_shared_t *sh, const char *user, uint32_t user_quota,
                          uint32_t max_total)
{
    int rc = 0;
    pthread_mutex_lock(&sh->quota_lock);
    pl_turn_quota_entry_t **pp = quota_slot(sh, user);
    if (max_total && sh->total >= max_total) {
        rc = -ENOSPC;
    } else if (user_quota && *pp && (*pp)->count >= user_quota) {
        rc = -EDQUOT;
    } else {
        if (!*pp) {
            size_t len = strlen(user);
            pl_turn_quota_entry_t *e = pl_xcalloc(1, sizeof *e + len + 1);
            memcpy(e->name, user, len + 1);
            *pp = e;
            sh->quota_n++;
        }
        (*pp)->count++;
        sh->total++;
        if (sh->quota_n > sh->quota_cap)
            quota_grow(sh);
    }
    pthread_mutex_unlock(&sh->quota_lock);
    return rc;
}

void pl_turn_quota_release(pl_turn_shared_t *sh, const char *user)
{
    pthread_mutex_lock(&sh->quota_lock);
    pl_turn_quota_entry_t **pp = quota_slot(sh, user);
    pl_turn_quota_entry_t *e = *pp;
    if (e) {
        sh->total--;
        if (--e->count == 0) {
            *pp = e->next;
            sh->quota_n--;
            free(e);
        }
    }
    pthread_mutex_unlock(&sh->quota_lock);
}

uint32_t pl_turn_quota_user(pl_turn_shared_t *sh, const char *user)
{
    pthread_mutex_lock(&sh->quota_lock);
    pl_turn_quota_entry_t *e = *quota_slot(sh, user);
    uint32_t n = e ? e->count : 0;
    pthread_mutex_unlock(&sh->quota_lock);
    return n;
}

/* ---- reservations -------------------------------------------------------------- */

/* Under resv_lock: drops expired entries, releasing their ports and holds (close is
 * a syscall under a leaf lock: rare, and nothing else waits on this lock for long). */
static void resv_sweep_locked(pl_turn_shared_t *sh, uint64_t now_ms)
{
    for (size_t i = 0; i < sh->n_resv;) {
        pl_turn_reservation_t *r = &sh->resv[i];
        if (r->expires_ms > now_ms) {
            i++;
            continue;
        }
        if (r->hold_fd >= 0)
            close(r->hold_fd);
        pl_turn_ports_release(&sh->ports[r->fam_idx], r->port);
        sh->resv[i] = sh->resv[--sh->n_resv];
    }
}

int pl_turn_resv_add(pl_turn_shared_t *sh, const pl_turn_resv_item_t *item, uint64_t now_ms)
{
    int rc = 0;
    pthread_mutex_lock(&sh->resv_lock);
    resv_sweep_locked(sh, now_ms);
    if (sh->n_resv >= RESV_MAX) {
        rc = -ENOSPC;
    } else {
        if (sh->n_resv == sh->cap_resv) {
            sh->cap_resv = sh->cap_resv ? sh->cap_resv * 2 : 16;
            sh->resv = pl_xrealloc(sh->resv, sh->cap_resv * sizeof *sh->resv);
        }
        sh->resv[sh->n_resv++] = (pl_turn_reservation_t){
            item->token, now_ms + PL_TURN_RESERVATION_MS, item->port, item->fam_idx,
            item->hold_fd};
    }
    pthread_mutex_unlock(&sh->resv_lock);
    return rc;
}

int pl_turn_resv_take(pl_turn_shared_t *sh, uint64_t now_ms, pl_turn_resv_item_t *item)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&sh->resv_lock);
    resv_sweep_locked(sh, now_ms);
    for (size_t i = 0; i < sh->n_resv; i++) {
        if (sh->resv[i].token != item->token)
            continue;
        item->fam_idx = sh->resv[i].fam_idx;
        item->port = sh->resv[i].port;
        item->hold_fd = sh->resv[i].hold_fd;
        sh->resv[i] = sh->resv[--sh->n_resv];
        rc = 0;
        break;
    }
    pthread_mutex_unlock(&sh->resv_lock);
    return rc;
}

void pl_turn_resv_sweep(pl_turn_shared_t *sh, uint64_t now_ms)
{
    pthread_mutex_lock(&sh->resv_lock);
    resv_sweep_locked(sh, now_ms);
    pthread_mutex_unlock(&sh->resv_lock);
}

/* ---- life cycle ---------------------------------------------------------------- */

pl_turn_shared_t *pl_turn_shared_create(uint16_t lo, uint16_t hi, uint32_t nonce_lifetime_s)
{
    pl_turn_shared_t *sh = pl_xcalloc(1, sizeof *sh);
    ports_init(&sh->ports[0], lo, hi);
    ports_init(&sh->ports[1], lo, hi);
    pthread_mutex_init(&sh->quota_lock, NULL);
    pthread_mutex_init(&sh->resv_lock, NULL);
    sh->unalloc = pl_counts_create();
    sh->quota_cap = 256;
    sh->quota = pl_xcalloc(sh->quota_cap, sizeof *sh->quota);
    /* The nonce secret never leaves the process; a restart invalidates old nonces,
     * which clients recover from with one 438 round trip. */
    if (getrandom(sh->nonce_key.secret, sizeof sh->nonce_key.secret, 0) !=
        (ssize_t)sizeof sh->nonce_key.secret)
        PL_ASSERT(!"getrandom failed");
    sh->nonce_key.features = PL_STUN_FEATURE_PASSWORD_ALGORITHMS |
                             PL_STUN_FEATURE_USERNAME_ANONYMITY;
    sh->nonce_key.lifetime_s = nonce_lifetime_s;
    if (getrandom(&sh->rl.seed, sizeof sh->rl.seed, 0) != (ssize_t)sizeof sh->rl.seed)
        PL_ASSERT(!"getrandom failed");
    for (size_t i = 0; i < PL_TURN_RL_STRIPES; i++)
        pthread_mutex_init(&sh->rl.lock[i], NULL);
    atomic_init(&sh->alt_rr, 0);
    return sh;
}

void pl_turn_shared_destroy(pl_turn_shared_t *sh)
{
    if (!sh)
        return;
    for (size_t i = 0; i < sh->quota_cap; i++)
        for (pl_turn_quota_entry_t *e = sh->quota[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(sh->quota);
    pl_counts_destroy(sh->unalloc);
    for (size_t i = 0; i < sh->n_resv; i++)
        if (sh->resv[i].hold_fd >= 0)
            close(sh->resv[i].hold_fd);
    free(sh->resv);
    free(sh->ports[0].bits);
    free(sh->ports[1].bits);
    pthread_mutex_destroy(&sh->quota_lock);
    pthread_mutex_destroy(&sh->resv_lock);
    for (size_t i = 0; i < PL_TURN_RL_STRIPES; i++)
        pthread_mutex_destroy(&sh->rl.lock[i]);
    free(sh);
}
