/* turn_alloc.c: allocations of one relay thread: the 5-tuple table (open addressing,
 * linear probing, tombstones), the dense list used for expiry sweeps and /stats,
 * relayed sockets (port from the shared pool, socket from the I/O interface),
 * permissions, channels and the per-allocation bandwidth buckets.
 *
 * What it does not: protocol decisions (which error to answer) live in the handlers.
 * Permissions and channels are small arrays scanned linearly: a call has a handful of
 * peers, and the scan beats a hash at that size; each is capped (PL_TURN_MAX_PERMS,
 * PL_TURN_MAX_CHANS) so a client cannot make the scan long.
 *
 * Threading: the server's thread only. */
#include "relay/turn/turn_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pl_turn_alloc_t tomb_obj;
#define TOMB (&tomb_obj)

int pl_turn_fam_idx(const pl_sockaddr_t *a)
{
    if (a->sa.sa_family == AF_INET)
        return 0;
    return a->sa.sa_family == AF_INET6 ? 1 : -1;
}

const char *pl_turn_alloc_name(const pl_turn_server_t *s, const pl_turn_alloc_t *a,
                               char *buf, size_t cap)
{
    snprintf(buf, cap, "t%u-%llu", s->thread_idx, (unsigned long long)a->seq);
    return buf;
}

/* ---- the 5-tuple table --------------------------------------------------------- */

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static uint64_t conn_hash(const pl_turn_conn_t *c)
{
    uint64_t h = ((uint64_t)c->transport << 56) ^ ((uint64_t)c->id << 24);
    if (c->client.sa.sa_family == AF_INET) {
        h ^= (uint64_t)c->client.in4.sin_addr.s_addr << 16 ^ c->client.in4.sin_port;
    } else {
        uint64_t w[2];
        memcpy(w, &c->client.in6.sin6_addr, 16);
        h ^= mix(w[0]) ^ w[1] ^ c->client.in6.sin6_port;
    }
    return mix(h);
}

static bool conn_equal(const pl_turn_conn_t *a, const pl_turn_conn_t *b)
{
    return a->transport == b->transport && a->id == b->id &&
           pl_sockaddr_equal(&a->client, &b->client);
}

pl_turn_alloc_t *pl_turn_alloc_find(const pl_turn_server_t *s, const pl_turn_conn_t *conn)
{
    if (s->table_cap == 0)
        return NULL;
    size_t mask = s->table_cap - 1;
    for (size_t i = conn_hash(conn) & mask;; i = (i + 1) & mask) {
        pl_turn_alloc_t *a = s->table[i];
        if (!a)
            return NULL;
        if (a != TOMB && conn_equal(&a->conn, conn))
            return a;
    }
}

static void table_put(pl_turn_alloc_t **t, size_t cap, pl_turn_alloc_t *a)
{
    size_t mask = cap - 1;
    size_t i = conn_hash(&a->conn) & mask;
    while (t[i] && t[i] != TOMB)
        i = (i + 1) & mask;
    t[i] = a;
}

static void table_insert(pl_turn_server_t *s, pl_turn_alloc_t *a)
{
    /* Keep the load (tombstones included) under 1/2 so probes stay short. */
    if ((s->table_used + 1) * 2 > s->table_cap) {
        size_t cap = s->table_cap ? s->table_cap : 64;
        while ((s->n_list + 1) * 4 > cap)
            cap *= 2;
        pl_turn_alloc_t **t = pl_xcalloc(cap, sizeof *t);
        for (size_t i = 0; i < s->n_list; i++)
            table_put(t, cap, s->list[i]);
        free(s->table);
        s->table = t;
        s->table_cap = cap;
        s->table_used = s->n_list;
    }
    table_put(s->table, s->table_cap, a);
    s->table_used++;
}

static void table_remove(pl_turn_server_t *s, const pl_turn_alloc_t *a)
{
    size_t mask = s->table_cap - 1;
    for (size_t i = conn_hash(&a->conn) & mask; s->table[i]; i = (i + 1) & mask) {
        if (s->table[i] == a) {
            /* A free slot after it ends every probe chain through it: no tombstone. */
            bool last = s->table[(i + 1) & mask] == NULL;
            s->table[i] = last ? NULL : TOMB;
            if (last)
                s->table_used--;
            return;
        }
    }
}

/* ---- create and delete --------------------------------------------------------- */

int pl_turn_alloc_new(pl_turn_server_t *s, const pl_turn_conn_t *conn, const char *user,
                      const char *quota_user, pl_turn_alloc_t **out)
{
    int rc = pl_turn_quota_acquire(s->shared, quota_user, s->set->user_quota,
                                   s->set->max_allocations);
    if (rc != 0)
        return rc;
    pl_turn_alloc_t *a = pl_xcalloc(1, sizeof *a);
    a->seq = ++s->next_seq;
    a->conn = *conn;
    a->user = pl_xstrdup(user);
    a->quota_user = pl_xstrdup(quota_user);
    a->created_ms = pl_turn_now_ms(s);
    for (int f = 0; f < 2; f++) {
        a->relay[f].fd = -1;
        a->relay[f].hold_fd = -1;
        a->relay[f].fam_idx = (uint8_t)f;
        a->relay[f].alloc = a;
    }
    table_insert(s, a);         /* before the list: a rehash walks the list */
    if (s->n_list == s->cap_list) {
        s->cap_list = s->cap_list ? s->cap_list * 2 : 64;
        s->list = pl_xrealloc(s->list, s->cap_list * sizeof *s->list);
    }
    a->list_idx = s->n_list;
    s->list[s->n_list++] = a;
    *out = a;
    return 0;
}

void pl_turn_alloc_close_relay(pl_turn_server_t *s, pl_turn_alloc_t *a, int fam_idx)
{
    pl_turn_relay_t *r = &a->relay[fam_idx];
    if (r->fd >= 0) {
        s->io->relay_close(s->io_ctx, r);
        pl_metric_gauge_add(s->shard, s->mid->allocs[a->conn.transport][r->fam_idx], -1);
    }
    r->fd = -1;
    if (r->port_taken)
        pl_turn_ports_release(&s->shared->ports[r->fam_idx], pl_sockaddr_port(&r->addr));
    r->port_taken = false;
}

void pl_turn_alloc_delete(pl_turn_server_t *s, pl_turn_alloc_t *a, const char *why)
{
    uint64_t now = pl_turn_now_ms(s);
    char name[32], peer[PL_SOCKADDR_STRLEN];
    pl_log_info("turn.alloc.deleted", "alloc=%s user=%s client=%s why=%s age_s=%llu "
                "bytes_c2p=%llu bytes_p2c=%llu", pl_turn_alloc_name(s, a, name, sizeof name),
                PL_LOG_QUOTED(a->user), pl_sockaddr_str(&a->conn.client, peer, sizeof peer),
                why, (unsigned long long)((now - a->created_ms) / 1000),
                (unsigned long long)a->bytes[PL_TURN_DIR_C2P],
                (unsigned long long)a->bytes[PL_TURN_DIR_P2C]);
    pl_metric_observe(s->shard, s->mid->lifetime_hist, (double)(now - a->created_ms) / 1000.0);
    pl_turn_tcp_alloc_deleted(s, a);
    pl_turn_alloc_close_relay(s, a, 0);
    pl_turn_alloc_close_relay(s, a, 1);
    pl_turn_quota_release(s->shared, a->quota_user);
    table_remove(s, a);
    pl_turn_alloc_t *last = s->list[--s->n_list];
    s->list[a->list_idx] = last;
    last->list_idx = a->list_idx;
    free(a->perms);
    free(a->chans);
    free(a->user);
    free(a->quota_user);
    free(a);
}

/* With a pair: binds a socket to port+1 so nothing else takes it while the reservation
 * waits. -EADDRINUSE: another process has it (the caller picks another pair); other
 * failures leave the port held by the pool only (*hold_fd -1). */
static int hold_pair(pl_turn_server_t *s, const pl_turn_relay_t *r, int *hold_fd)
{
    *hold_fd = -1;
    if (!s->io->port_hold)
        return 0;
    pl_sockaddr_t odd = r->addr;
    pl_sockaddr_set_port(&odd, (uint16_t)(pl_sockaddr_port(&r->addr) + 1));
    int fd = s->io->port_hold(s->io_ctx, &odd);
    if (fd == -EADDRINUSE)
        return fd;
    *hold_fd = fd >= 0 ? fd : -1;
    return 0;
}

/* Gives back the ports of the tries that failed (kept taken meanwhile, so the random
 * pick cannot land on a busy port twice). */
static void release_tries(pl_turn_ports_t *pool, const uint16_t *ports, int n, bool pair)
{
    for (int i = 0; i < n; i++) {
        pl_turn_ports_release(pool, ports[i]);
        if (pair)
            pl_turn_ports_release(pool, (uint16_t)(ports[i] + 1));
    }
}

int pl_turn_alloc_open_relay(pl_turn_server_t *s, pl_turn_alloc_t *a,
                             const pl_turn_relay_req_t *req, uint16_t *pair_port,
                             int *hold_fd)
{
    enum { TRIES = 8 };
    pl_turn_relay_t *r = &a->relay[req->fam_idx];
    pl_turn_ports_t *pool = &s->shared->ports[req->fam_idx];
    uint16_t busy[TRIES];
    int n_busy = 0, rc = -ENOSPC;
    *hold_fd = -1;
    /* A port taken by another process makes bind fail: try another. */
    for (int attempt = 0; attempt < TRIES; attempt++) {
        uint16_t port = req->port;
        s->rng ^= s->rng << 13, s->rng ^= s->rng >> 17, s->rng ^= s->rng << 5;
        if (!req->port_given && pl_turn_ports_take(pool, s->rng, req->even, req->pair, &port) != 0)
            break;
        r->addr = s->set->relay[req->fam_idx];
        pl_sockaddr_set_port(&r->addr, port);
        pl_turn_settings_advertised(s->set, &r->addr, &r->advertised);
        r->df = false;
        rc = s->io->relay_open(s->io_ctx, r);
        if (rc == 0 && req->pair && (rc = hold_pair(s, r, hold_fd)) != 0)
            s->io->relay_close(s->io_ctx, r);
        if (rc == 0) {
            release_tries(pool, busy, n_busy, req->pair);
            r->port_taken = true;
            if (req->pair)
                *pair_port = (uint16_t)(port + 1);
            pl_metric_gauge_add(s->shard, s->mid->allocs[a->conn.transport][req->fam_idx], 1);
            return 0;
        }
        busy[n_busy++] = port;
        if (rc != -EADDRINUSE || req->port_given)
            break;
        rc = -ENOSPC;
    }
    release_tries(pool, busy, n_busy, req->pair);
    r->fd = -1;
    return rc;
}

/* ---- permissions and channels -------------------------------------------------- */

static size_t ip_bytes(const pl_sockaddr_t *a, uint8_t out[16])
{
    memset(out, 0, 16);
    if (a->sa.sa_family == AF_INET) {
        memcpy(out, &a->in4.sin_addr, 4);
        return 4;
    }
    memcpy(out, &a->in6.sin6_addr, 16);
    return 16;
}

static pl_turn_perm_t *perm_lookup(pl_turn_alloc_t *a, const pl_sockaddr_t *peer)
{
    uint8_t ip[16];
    ip_bytes(peer, ip);
    int f = pl_turn_fam_idx(peer);
    for (uint16_t i = 0; i < a->n_perms; i++)
        if (a->perms[i].fam_idx == f && memcmp(a->perms[i].ip, ip, 16) == 0)
            return &a->perms[i];
    return NULL;
}

pl_turn_perm_t *pl_turn_perm_find(pl_turn_alloc_t *a, const pl_sockaddr_t *peer,
                                  uint64_t now_ms)
{
    pl_turn_perm_t *p = perm_lookup(a, peer);
    return p && p->expires_ms > now_ms ? p : NULL;
}

int pl_turn_perm_add(pl_turn_alloc_t *a, const pl_sockaddr_t *peer, uint64_t expires_ms)
{
    pl_turn_perm_t *p = perm_lookup(a, peer);
    if (!p) {
        if (a->n_perms >= PL_TURN_MAX_PERMS)
            return -ENOSPC;
        if (a->n_perms == a->cap_perms) {
            a->cap_perms = a->cap_perms ? (uint16_t)(a->cap_perms * 2) : 4;
            a->perms = pl_xrealloc(a->perms, a->cap_perms * sizeof *a->perms);
        }
        p = &a->perms[a->n_perms++];
        p->fam_idx = (uint8_t)pl_turn_fam_idx(peer);
        ip_bytes(peer, p->ip);
    }
    p->expires_ms = expires_ms;
    return 0;
}

pl_turn_chan_t *pl_turn_chan_by_num(pl_turn_alloc_t *a, uint16_t num, uint64_t now_ms)
{
    for (uint16_t i = 0; i < a->n_chans; i++)
        if (a->chans[i].num == num)
            return a->chans[i].expires_ms > now_ms ? &a->chans[i] : NULL;
    return NULL;
}

pl_turn_chan_t *pl_turn_chan_by_peer(pl_turn_alloc_t *a, const pl_sockaddr_t *peer,
                                     uint64_t now_ms)
{
    for (uint16_t i = 0; i < a->n_chans; i++)
        if (pl_sockaddr_equal(&a->chans[i].peer, peer))
            return a->chans[i].expires_ms > now_ms ? &a->chans[i] : NULL;
    return NULL;
}

int pl_turn_chan_add(pl_turn_alloc_t *a, uint16_t num, const pl_sockaddr_t *peer,
                     uint64_t expires_ms)
{
    pl_turn_chan_t *c = NULL;
    for (uint16_t i = 0; i < a->n_chans && !c; i++)
        if (a->chans[i].num == num)
            c = &a->chans[i];
    if (!c) {
        if (a->n_chans >= PL_TURN_MAX_CHANS)
            return -ENOSPC;
        if (a->n_chans == a->cap_chans) {
            a->cap_chans = a->cap_chans ? (uint16_t)(a->cap_chans * 2) : 4;
            a->chans = pl_xrealloc(a->chans, a->cap_chans * sizeof *a->chans);
        }
        c = &a->chans[a->n_chans++];
        c->num = num;
    }
    c->peer = *peer;
    c->expires_ms = expires_ms;
    return 0;
}

void pl_turn_alloc_prune(pl_turn_alloc_t *a, uint64_t now_ms)
{
    uint16_t k = 0;
    for (uint16_t i = 0; i < a->n_perms; i++)
        if (a->perms[i].expires_ms > now_ms)
            a->perms[k++] = a->perms[i];
    a->n_perms = k;
    k = 0;
    for (uint16_t i = 0; i < a->n_chans; i++)
        if (a->chans[i].expires_ms > now_ms)
            a->chans[k++] = a->chans[i];
    a->n_chans = k;
}

bool pl_turn_alloc_bw_ok(pl_turn_server_t *s, pl_turn_alloc_t *a, int dir, size_t len,
                         uint64_t now_ms)
{
    uint64_t rate = s->set->max_bps;
    if (rate == 0)
        return true;
    /* Tokens in milli-bytes: bytes/s times elapsed ms, so slow rates still refill
     * when packets arrive every millisecond. Burst: one second's worth. */
    pl_turn_bucket_t *b = &a->bucket[dir];
    uint64_t cap = rate * 1000;
    if (b->last_ms == 0)
        b->tokens = cap;
    else if (now_ms > b->last_ms)
        b->tokens = PL_MIN(cap, b->tokens + PL_MIN(now_ms - b->last_ms, 1000) * rate);
    b->last_ms = now_ms;
    if (b->tokens < (uint64_t)len * 1000)
        return false;
    b->tokens -= (uint64_t)len * 1000;
    return true;
}
