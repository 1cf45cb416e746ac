/* presence_map.c: the presence thread's in-memory tables: a u64 -> u64 hash map (open
 * addressing, linear probing, backward-shift deletion so no tombstones pile up) and,
 * on top of it, the local device registry (device -> account and live connection,
 * account -> its devices here). The memory backend is this registry alone; the Redis
 * backend keeps it too, for local delivery, heartbeats and re-registration.
 *
 * What it does not do: I/O, logging, locking. Pure, so unit tests drive it directly.
 *
 * Threading: one owner thread (the presence thread), no locks. */
#include "signaling/presence_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- u64 -> u64 map ------------------------------------------------------------------ */

/* SplitMix64's finaliser: ids are sequential, so spread them before masking. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void pl_u64map_init(pl_u64map_t *m)
{
    m->cap = 16;
    m->count = 0;
    m->keys = pl_xcalloc(m->cap, sizeof(*m->keys));
    m->vals = pl_xcalloc(m->cap, sizeof(*m->vals));
}

void pl_u64map_deinit(pl_u64map_t *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

static size_t find_slot(const pl_u64map_t *m, uint64_t key)
{
    size_t mask = m->cap - 1, i = (size_t)mix(key) & mask;
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & mask;
    return i;
}

static void grow(pl_u64map_t *m)
{
    pl_u64map_t old = *m;
    m->cap *= 2;
    m->count = 0;
    m->keys = pl_xcalloc(m->cap, sizeof(*m->keys));
    m->vals = pl_xcalloc(m->cap, sizeof(*m->vals));
    for (size_t i = 0; i < old.cap; i++)
        if (old.keys[i])
            pl_u64map_put(m, old.keys[i], old.vals[i]);
    free(old.keys);
    free(old.vals);
}

bool pl_u64map_put(pl_u64map_t *m, uint64_t key, uint64_t val)
{
    PL_ASSERT(key != 0);
    if ((m->count + 1) * 4 > m->cap * 3)
        grow(m);
    size_t i = find_slot(m, key);
    bool added = m->keys[i] == 0;
    m->keys[i] = key;
    m->vals[i] = val;
    m->count += added;
    return added;
}

bool pl_u64map_get(const pl_u64map_t *m, uint64_t key, uint64_t *val)
{
    if (!key || !m->cap)
        return false;
    size_t i = find_slot(m, key);
    if (!m->keys[i])
        return false;
    if (val)
        *val = m->vals[i];
    return true;
}

bool pl_u64map_del(pl_u64map_t *m, uint64_t key)
{
    if (!key || !m->cap)
        return false;
    size_t mask = m->cap - 1, i = find_slot(m, key);
    if (!m->keys[i])
        return false;
    /* Backward-shift: pull later members of the probe run into the hole when their
     * home slot does not lie cyclically in (hole, j]. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
        size_t home = (size_t)mix(m->keys[j]) & mask;
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays)
            continue;
        m->keys[hole] = m->keys[j];
        m->vals[hole] = m->vals[j];
        hole = j;
    }
    m->keys[hole] = 0;
    m->vals[hole] = 0;
    m->count--;
    return true;
}

/* ---- the device registry ----------------------------------------------------------------- */

#define NONE UINT32_MAX

void pl_pres_map_init(pl_pres_map_t *pm)
{
    memset(pm, 0, sizeof(*pm));
    pl_u64map_init(&pm->by_device);
    pl_u64map_init(&pm->by_account);
    pm->free_head = NONE;
}

void pl_pres_map_deinit(pl_pres_map_t *pm)
{
    pl_u64map_deinit(&pm->by_device);
    pl_u64map_deinit(&pm->by_account);
    free(pm->ents);
    memset(pm, 0, sizeof(*pm));
}

static uint32_t ent_alloc(pl_pres_map_t *pm)
{
    if (pm->free_head == NONE) {
        uint32_t old = pm->n_ents, cap = old ? old * 2 : 64;
        pm->ents = pl_xrealloc(pm->ents, cap * sizeof(*pm->ents));
        for (uint32_t i = old; i < cap; i++)
            pm->ents[i] = (pl_pres_entry_t){ .next = i + 1 < cap ? i + 1 : NONE };
        pm->free_head = old;
        pm->n_ents = cap;
    }
    uint32_t i = pm->free_head;
    pm->free_head = pm->ents[i].next;
    return i;
}

static void account_unlink(pl_pres_map_t *pm, uint32_t idx)
{
    pl_pres_entry_t *e = &pm->ents[idx];
    uint64_t head;
    if (!pl_u64map_get(&pm->by_account, e->account_id, &head))
        return;
    if (head == idx) {
        if (e->next == NONE)
            pl_u64map_del(&pm->by_account, e->account_id);
        else
            pl_u64map_put(&pm->by_account, e->account_id, e->next);
        return;
    }
    for (uint32_t i = (uint32_t)head; i != NONE; i = pm->ents[i].next)
        if (pm->ents[i].next == idx) {
            pm->ents[i].next = e->next;
            return;
        }
}

uint64_t pl_pres_map_put(pl_pres_map_t *pm, uint64_t device_id, uint64_t account_id,
                         uint64_t conn_id)
{
    uint64_t idx;
    if (pl_u64map_get(&pm->by_device, device_id, &idx)) {
        pl_pres_entry_t *e = &pm->ents[idx];
        uint64_t old = e->conn_id;
        if (e->account_id != account_id) {     /* cannot happen with the store's ids */
            account_unlink(pm, (uint32_t)idx);
            e->account_id = account_id;
            uint64_t head;
            e->next = pl_u64map_get(&pm->by_account, account_id, &head) ? (uint32_t)head : NONE;
            pl_u64map_put(&pm->by_account, account_id, idx);
        }
        e->conn_id = conn_id;
        return old;
    }
    uint32_t i = ent_alloc(pm);
    uint64_t head;
    pm->ents[i] = (pl_pres_entry_t){
        .device_id = device_id, .account_id = account_id, .conn_id = conn_id,
        .next = pl_u64map_get(&pm->by_account, account_id, &head) ? (uint32_t)head : NONE,
    };
    pl_u64map_put(&pm->by_account, account_id, i);
    pl_u64map_put(&pm->by_device, device_id, i);
    pm->count++;
    return 0;
}

bool pl_pres_map_remove(pl_pres_map_t *pm, uint64_t device_id, uint64_t conn_id)
{
    uint64_t idx;
    if (!pl_u64map_get(&pm->by_device, device_id, &idx) || pm->ents[idx].conn_id != conn_id)
        return false;
    account_unlink(pm, (uint32_t)idx);
    pl_u64map_del(&pm->by_device, device_id);
    pm->ents[idx] = (pl_pres_entry_t){ .next = pm->free_head };
    pm->free_head = (uint32_t)idx;
    pm->count--;
    return true;
}

const pl_pres_entry_t *pl_pres_map_get(const pl_pres_map_t *pm, uint64_t device_id)
{
    uint64_t idx;
    return pl_u64map_get(&pm->by_device, device_id, &idx) ? &pm->ents[idx] : NULL;
}

size_t pl_pres_map_account(const pl_pres_map_t *pm, uint64_t account_id,
                           const pl_pres_entry_t **out, size_t cap)
{
    uint64_t head;
    size_t n = 0;
    if (!pl_u64map_get(&pm->by_account, account_id, &head))
        return 0;
    for (uint32_t i = (uint32_t)head; i != NONE; i = pm->ents[i].next) {
        if (n < cap)
            out[n] = &pm->ents[i];
        n++;
    }
    return n;
}

const pl_pres_entry_t *pl_pres_map_next(const pl_pres_map_t *pm, uint32_t *cursor)
{
    for (uint32_t i = *cursor; i < pm->n_ents; i++)
        if (pm->ents[i].device_id) {
            *cursor = i + 1;
            return &pm->ents[i];
        }
    *cursor = pm->n_ents;
    return NULL;
}
