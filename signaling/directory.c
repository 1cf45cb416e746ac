/* directory.c: which connection on this node is the live one of each device. The
 * gateway consults it at authentication (one live connection per device: a newer one
 * replaces the older) and for pl_sig_send_device. Presence across nodes (Redis) is a
 * later layer and keeps this as its local part.
 *
 * What it does not do: hold connection pointers (ids only), talk to other nodes.
 *
 * Threading: any thread; one leaf mutex around an open-addressing table (linear
 * probing with backward-shift deletion, so no tombstones pile up). */
#include "signaling/sig_int.h"

#include <stdlib.h>

typedef struct dir_entry {
    uint64_t device_id;         /* 0 = empty */
    uint64_t conn_id;
} dir_entry_t;

struct pl_sig_dir {
    pthread_mutex_t lock;
    dir_entry_t *slots;
    size_t cap;                 /* power of two */
    size_t count;
};

pl_sig_dir_t *pl_sig_dir_create(void)
{
    pl_sig_dir_t *d = pl_xcalloc(1, sizeof(*d));
    pthread_mutex_init(&d->lock, NULL);
    d->cap = 1024;
    d->slots = pl_xcalloc(d->cap, sizeof(*d->slots));
    return d;
}

void pl_sig_dir_destroy(pl_sig_dir_t *d)
{
    if (!d)
        return;
    pthread_mutex_destroy(&d->lock);
    free(d->slots);
    free(d);
}

static size_t home_of(uint64_t id, size_t cap)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdull;
    id ^= id >> 33;
    return (size_t)id & (cap - 1);
}

static dir_entry_t *find(dir_entry_t *slots, size_t cap, uint64_t device_id)
{
    size_t i = home_of(device_id, cap);
    while (slots[i].device_id && slots[i].device_id != device_id)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static void grow(pl_sig_dir_t *d)
{
    dir_entry_t *old = d->slots;
    size_t old_cap = d->cap;
    d->cap *= 2;
    d->slots = pl_xcalloc(d->cap, sizeof(*d->slots));
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].device_id)
            *find(d->slots, d->cap, old[i].device_id) = old[i];
    free(old);
}

uint64_t pl_sig_dir_put(pl_sig_dir_t *d, uint64_t device_id, uint64_t conn_id)
{
    PL_ASSERT(device_id != 0 && conn_id != 0);
    pthread_mutex_lock(&d->lock);
    if ((d->count + 1) * 4 > d->cap * 3)
        grow(d);
    dir_entry_t *e = find(d->slots, d->cap, device_id);
    uint64_t prev = e->device_id ? e->conn_id : 0;
    if (!e->device_id)
        d->count++;
    e->device_id = device_id;
    e->conn_id = conn_id;
    pthread_mutex_unlock(&d->lock);
    return prev;
}

/* Backward-shift deletion (Knuth 6.4, Algorithm R): move later members of the probe
 * run into the hole when the hole lies between their home slot and where they sit. */
static void erase_at(pl_sig_dir_t *d, size_t hole)
{
    size_t mask = d->cap - 1;
    size_t i = hole;
    for (;;) {
        i = (i + 1) & mask;
        if (!d->slots[i].device_id)
            break;
        size_t home = home_of(d->slots[i].device_id, d->cap);
        bool movable = (i > hole) ? (home <= hole || home > i) : (home <= hole && home > i);
        if (movable) {
            d->slots[hole] = d->slots[i];
            hole = i;
        }
    }
    d->slots[hole].device_id = 0;
    d->slots[hole].conn_id = 0;
}

void pl_sig_dir_remove(pl_sig_dir_t *d, uint64_t device_id, uint64_t conn_id)
{
    pthread_mutex_lock(&d->lock);
    dir_entry_t *e = find(d->slots, d->cap, device_id);
    if (e->device_id && e->conn_id == conn_id) {
        erase_at(d, (size_t)(e - d->slots));
        d->count--;
    }
    pthread_mutex_unlock(&d->lock);
}

uint64_t pl_sig_dir_get(pl_sig_dir_t *d, uint64_t device_id)
{
    pthread_mutex_lock(&d->lock);
    dir_entry_t *e = find(d->slots, d->cap, device_id);
    uint64_t conn = e->device_id ? e->conn_id : 0;
    pthread_mutex_unlock(&d->lock);
    return conn;
}

size_t pl_sig_dir_count(pl_sig_dir_t *d)
{
    pthread_mutex_lock(&d->lock);
    size_t n = d->count;
    pthread_mutex_unlock(&d->lock);
    return n;
}
