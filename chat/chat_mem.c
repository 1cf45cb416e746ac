/* chat_mem.c: chat's store-thread state: per device (its chat-synced connection on
 * this node, delivery window, cached queue length, presence subscriptions) and per
 * account (authenticated connections here, synced devices, presence watchers).
 *
 * It is a cache and a registry, never the truth about messages: queue lengths are
 * re-read from the database on a miss, and chat_mem_reset forgets everything after a
 * failed commit so nothing stale survives it.
 *
 * What it does not do: SQL, sending.
 *
 * Threading: the store thread only (no locks). */
#include "chat/chat_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct chat_mem {
    chat_map_t devs;                /* device id -> chat_dev_t */
    chat_map_t accts;               /* account id -> chat_acct_t */
    chat_map_t buckets;             /* rate key -> chat_bucket_t */
    chat_map_t names;               /* hash of a username -> name_entry_t */
    chat_map_t pairs;               /* hash of (a, b) -> pair_entry_t */
};

/* Usernames never change and accounts are not deleted, so a resolved name stays true. */
typedef struct name_entry {
    uint64_t account_id;
    char name[CHAT_USERNAME_MAX + 1];
} name_entry_t;

typedef struct pair_entry {
    uint64_t a, b;
} pair_entry_t;

#define NAMES_MAX 262144
#define PAIRS_MAX 1048576

chat_mem_t *chat_mem_create(void)
{
    chat_mem_t *m = pl_xcalloc(1, sizeof(*m));
    chat_map_init(&m->devs);
    chat_map_init(&m->accts);
    chat_map_init(&m->buckets);
    chat_map_init(&m->names);
    chat_map_init(&m->pairs);
    return m;
}

static void dev_free(chat_dev_t *d)
{
    free(d->watch);
    free(d);
}

static void acct_free(chat_acct_t *a)
{
    free(a->synced);
    free(a->watchers);
    free(a);
}

void chat_mem_destroy(chat_mem_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->devs.cap; i++)
        if (m->devs.slots[i].key)
            dev_free(m->devs.slots[i].val);
    for (size_t i = 0; i < m->accts.cap; i++)
        if (m->accts.slots[i].key)
            acct_free(m->accts.slots[i].val);
    chat_map_t *owned[] = { &m->buckets, &m->names, &m->pairs };
    for (size_t k = 0; k < PL_ARRAY_LEN(owned); k++) {
        for (size_t i = 0; i < owned[k]->cap; i++)
            free(owned[k]->slots[i].val);
        chat_map_deinit(owned[k]);
    }
    chat_map_deinit(&m->devs);
    chat_map_deinit(&m->accts);
    free(m);
}

chat_dev_t *chat_mem_dev(chat_mem_t *m, uint64_t device_id, bool create)
{
    chat_dev_t *d = chat_map_get(&m->devs, device_id);
    if (d || !create)
        return d;
    d = pl_xcalloc(1, sizeof(*d));
    d->device_id = device_id;
    d->queued = -1;
    chat_map_put(&m->devs, device_id, d);
    return d;
}

chat_acct_t *chat_mem_acct(chat_mem_t *m, uint64_t account_id, bool create)
{
    chat_acct_t *a = chat_map_get(&m->accts, account_id);
    if (a || !create)
        return a;
    a = pl_xcalloc(1, sizeof(*a));
    a->account_id = account_id;
    chat_map_put(&m->accts, account_id, a);
    return a;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;         /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h | 1;                               /* never the empty key */
}

uint64_t chat_mem_name_get(const chat_mem_t *m, const char *name)
{
    const name_entry_t *e = chat_map_get(&m->names, hash_name(name));
    return e && strcmp(e->name, name) == 0 ? e->account_id : 0;
}

void chat_mem_name_put(chat_mem_t *m, const char *name, uint64_t account_id)
{
    if (m->names.count >= NAMES_MAX)
        chat_map_clear_owned(&m->names);
    name_entry_t *e = pl_xcalloc(1, sizeof(*e));
    e->account_id = account_id;
    snprintf(e->name, sizeof(e->name), "%s", name);
    free(chat_map_put(&m->names, hash_name(name), e));
}

bool chat_mem_pair_seen(chat_mem_t *m, uint64_t a, uint64_t b)
{
    uint64_t k = ((a * 0x9E3779B97F4A7C15ull) ^ (b * 0xC2B2AE3D27D4EB4Full)) | 1;
    pair_entry_t *e = chat_map_get(&m->pairs, k);
    if (e && e->a == a && e->b == b)
        return true;
    if (m->pairs.count >= PAIRS_MAX)
        chat_map_clear_owned(&m->pairs);
    e = pl_xmalloc(sizeof(*e));
    e->a = a;
    e->b = b;
    free(chat_map_put(&m->pairs, k, e));
    return false;
}

chat_bucket_t *chat_mem_bucket(chat_mem_t *m, uint64_t key)
{
    chat_bucket_t *b = chat_map_get(&m->buckets, key);
    if (!b) {
        b = pl_xcalloc(1, sizeof(*b));
        chat_map_put(&m->buckets, key, b);
    }
    return b;
}

/* Small sets of ids kept as arrays: a user has a handful of devices. */
static void ids_add(uint64_t **ids, uint32_t *n, uint32_t *cap, uint64_t id)
{
    for (uint32_t i = 0; i < *n; i++)
        if ((*ids)[i] == id)
            return;
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        *ids = pl_xrealloc(*ids, *cap * sizeof(**ids));
    }
    (*ids)[(*n)++] = id;
}

static void ids_remove(uint64_t *ids, uint32_t *n, uint64_t id)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (ids[i] == id) {
            ids[i] = ids[--*n];
            return;
        }
    }
}

void chat_mem_set_synced(chat_mem_t *m, chat_dev_t *d, uint64_t conn_id)
{
    PL_ASSERT(d->account_id != 0);
    chat_acct_t *a = chat_mem_acct(m, d->account_id, true);
    if (conn_id)
        ids_add(&a->synced, &a->n_synced, &a->cap_synced, d->device_id);
    else
        ids_remove(a->synced, &a->n_synced, d->device_id);
    d->conn_id = conn_id;
    d->pushed_upto = 0;
    d->inflight = 0;
    d->paging = true;
    d->empty_sent = false;
}

void chat_mem_unwatch_all(chat_mem_t *m, chat_dev_t *d)
{
    for (uint32_t i = 0; i < d->n_watch; i++) {
        chat_acct_t *a = chat_mem_acct(m, d->watch[i], false);
        if (a)
            ids_remove(a->watchers, &a->n_watchers, d->device_id);
    }
    free(d->watch);
    d->watch = NULL;
    d->n_watch = 0;
    d->watch_conn = 0;
}

void chat_mem_watch(chat_mem_t *m, chat_dev_t *d, uint64_t conn_id, const uint64_t *accounts,
                    size_t n)
{
    chat_mem_unwatch_all(m, d);
    d->watch_conn = conn_id;
    if (!n)
        return;
    d->watch = pl_xmalloc(n * sizeof(*d->watch));
    memcpy(d->watch, accounts, n * sizeof(*d->watch));
    d->n_watch = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        chat_acct_t *a = chat_mem_acct(m, accounts[i], true);
        ids_add(&a->watchers, &a->n_watchers, &a->cap_watchers, d->device_id);
    }
}

void chat_mem_reset(chat_mem_t *m, void (*fn)(uint64_t conn_id, void *arg), void *arg)
{
    for (size_t i = 0; i < m->devs.cap; i++) {
        if (!m->devs.slots[i].key)
            continue;
        chat_dev_t *d = m->devs.slots[i].val;
        if (d->conn_id && fn)
            fn(d->conn_id, arg);
        if (d->watch_conn && d->watch_conn != d->conn_id && fn)
            fn(d->watch_conn, arg);
        chat_mem_unwatch_all(m, d);
        if (d->conn_id)
            chat_mem_set_synced(m, d, 0);
        d->queued = -1;
    }
    chat_map_clear_owned(&m->names);
    chat_map_clear_owned(&m->pairs);
}

void chat_mem_trim(chat_mem_t *m)
{
    for (size_t i = 0; i < m->devs.cap;) {
        chat_dev_t *d = m->devs.slots[i].key ? m->devs.slots[i].val : NULL;
        if (d && !d->conn_id && !d->watch_conn) {
            chat_map_del(&m->devs, d->device_id);
            dev_free(d);
            continue;           /* the slot now holds a shifted entry (or is empty) */
        }
        i++;
    }
    for (size_t i = 0; i < m->accts.cap;) {
        chat_acct_t *a = m->accts.slots[i].key ? m->accts.slots[i].val : NULL;
        if (a && !a->n_conns && !a->n_synced && !a->n_watchers) {
            chat_map_del(&m->accts, a->account_id);
            acct_free(a);
            continue;
        }
        i++;
    }
}

/* Drops buckets idle for ten minutes: refilled long ago, they equal a new one as long
 * as the configured rates refill a burst within that time. */
void chat_mem_trim_buckets(chat_mem_t *m, uint64_t now_ms)
{
    for (size_t i = 0; i < m->buckets.cap;) {
        chat_bucket_t *b = m->buckets.slots[i].key ? m->buckets.slots[i].val : NULL;
        if (b && now_ms - b->last_ms > 600000) {
            chat_map_del(&m->buckets, m->buckets.slots[i].key);
            free(b);
            continue;
        }
        i++;
    }
}

size_t chat_mem_devices(const chat_mem_t *m)
{
    return m->devs.count;
}
