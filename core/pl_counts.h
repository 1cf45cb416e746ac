/* pl_counts.h: counts keyed by a short string (e.g. connections per source address),
 * shared by threads behind a leaf mutex. A key holds an entry only while its count is
 * above 0, so the table holds only what is counted. Keys are meant to be short (an
 * address); one is stored cut to 63 bytes.
 *
 * Threading: every function, any thread. */
#ifndef PL_COUNTS_H
#define PL_COUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pl_counts pl_counts_t;

pl_counts_t *pl_counts_create(void);
void pl_counts_destroy(pl_counts_t *t);
/* Adds one to key's count unless it is already at cap (>= 1): true when added. */
bool pl_counts_take(pl_counts_t *t, const char *key, uint32_t cap);
/* Takes one off key's count (a key that is not there: nothing). */
void pl_counts_put(pl_counts_t *t, const char *key);
uint32_t pl_counts_get(pl_counts_t *t, const char *key);
size_t pl_counts_size(pl_counts_t *t);

#endif
