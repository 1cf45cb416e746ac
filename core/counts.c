/* counts.c: counts keyed by a short string (connections per source address), shared by
 * threads behind a leaf mutex; a key leaves the table when its count returns to 0.
 *
 * Threading: any thread; the mutex is a leaf (nothing is called under it). */
#include "core/pl_counts.h"
#include "core/pl_common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PL_COUNTS_KEY_MAX 64

static size_t key_hash(const char *k)
{
    uint64_t h = 1469598103934665603ull;        /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (uint8_t)*k) * 1099511628211ull;
    return (size_t)h;
}

#define COUNTS_BUCKETS 1024

typedef struct count {
    struct count *next;
    uint32_t n;
    char key[PL_COUNTS_KEY_MAX];
} count_t;

struct pl_counts {
    pthread_mutex_t lock;
    count_t *buckets[COUNTS_BUCKETS];
    size_t size;
};

pl_counts_t *pl_counts_create(void)
{
    pl_counts_t *t = pl_xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void pl_counts_destroy(pl_counts_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < COUNTS_BUCKETS; i++)
        while (t->buckets[i]) {
            count_t *c = t->buckets[i];
            t->buckets[i] = c->next;
            free(c);
        }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* The link that points at key's entry (or at the NULL ending its chain). Locked. */
static count_t **count_link(pl_counts_t *t, const char *key)
{
    count_t **p = &t->buckets[key_hash(key) & (COUNTS_BUCKETS - 1)];
    while (*p && strncmp((*p)->key, key, PL_COUNTS_KEY_MAX - 1) != 0)
        p = &(*p)->next;
    return p;
}

bool pl_counts_take(pl_counts_t *t, const char *key, uint32_t cap)
{
    pthread_mutex_lock(&t->lock);
    count_t **p = count_link(t, key);
    bool ok = cap > 0 && (!*p || (*p)->n < cap);
    if (ok && !*p) {
        count_t *c = pl_xcalloc(1, sizeof(*c));
        snprintf(c->key, sizeof(c->key), "%s", key);
        *p = c;
        t->size++;
    }
    if (ok)
        (*p)->n++;
    pthread_mutex_unlock(&t->lock);
    return ok;
}

void pl_counts_put(pl_counts_t *t, const char *key)
{
    pthread_mutex_lock(&t->lock);
    count_t **p = count_link(t, key);
    count_t *c = *p;
    if (c && --c->n == 0) {
        *p = c->next;
        free(c);
        t->size--;
    }
    pthread_mutex_unlock(&t->lock);
}

uint32_t pl_counts_get(pl_counts_t *t, const char *key)
{
    pthread_mutex_lock(&t->lock);
    count_t *c = *count_link(t, key);
    uint32_t n = c ? c->n : 0;
    pthread_mutex_unlock(&t->lock);
    return n;
}

size_t pl_counts_size(pl_counts_t *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->size;
    pthread_mutex_unlock(&t->lock);
    return n;
}
