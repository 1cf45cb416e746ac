/* chat_devs.c: the device lists of accounts, held in memory on the store thread.
 *
 * Every direct send checks its envelopes against the recipient's devices (and "own"
 * copies against the sender's), and every acknowledgement looks for the sender's
 * devices that are away (queued receipts), as does every event: two look-ups of
 * devices by account per message, ~0.85 us each of the store thread's ~12 per message
 * (docs/BENCHMARKS.md). The list decides who can read a message, so a list held here must never be older than the database -- the
 * whole memory is dropped whenever devices may have changed:
 *   - a row of devices written through this connection (pl_store_conn_writes: account
 *     requests adding or removing a device, the clean-up of devices without sessions,
 *     cascades), rolled back later or not;
 *   - another connection's commit (pl_store_conn_foreign_version: nodes sharing the
 *     database file, an operator's tool);
 *   - the store rolling back a whole transaction (pl_store_conn_rollbacks).
 * A list read inside a batch may include a device an earlier request of the same
 * transaction added: if that transaction rolls back, the third rule drops it; a
 * request's own savepoint rollback happens before any later request reads.
 *
 * What it does not do: group member devices (a join per group send, not cached).
 *
 * Threading: store thread only. */
#include "chat/chat_int.h"

#include <stdlib.h>
#include <string.h>

#define DEVS_MAX_ACCOUNTS 65536     /* then everything is dropped and refilled */

typedef struct devs_entry {
    size_t n;
    uint64_t ids[];
} devs_entry_t;

struct chat_devs {
    chat_map_t map;                 /* account id -> devs_entry_t */
    uint64_t writes, foreign, rollbacks;
    bool valid;                     /* the three stamps above are the database's */
};

void chat_devs_free(chat_t *c)
{
    if (!c->devs)
        return;
    chat_map_clear_owned(&c->devs->map);
    chat_map_deinit(&c->devs->map);
    free(c->devs);
    c->devs = NULL;
}

/* Drops everything when a stamp moved since the memory was filled. */
static void check_stamps(chat_devs_t *d, pl_store_conn_t *conn)
{
    uint64_t w = pl_store_conn_writes(conn, "devices");
    uint64_t f = pl_store_conn_foreign_version(conn);
    uint64_t r = pl_store_conn_rollbacks(conn);
    if (d->valid && w == d->writes && f == d->foreign && r == d->rollbacks)
        return;
    if (d->map.count)
        chat_map_clear_owned(&d->map);
    d->writes = w;
    d->foreign = f;
    d->rollbacks = r;
    d->valid = true;
}

long chat_devices(chat_t *c, pl_store_conn_t *conn, uint64_t account_id, uint64_t **out)
{
    if (!c->devs) {
        c->devs = pl_xcalloc(1, sizeof(*c->devs));
        chat_map_init(&c->devs->map);
    }
    chat_devs_t *d = c->devs;
    check_stamps(d, conn);
    devs_entry_t *e = account_id ? chat_map_get(&d->map, account_id) : NULL;
    if (e) {
        *out = pl_xmalloc((e->n + 1) * sizeof(**out));
        memcpy(*out, e->ids, e->n * sizeof(**out));
        return (long)e->n;
    }
    long n = chat_sql_devices(conn, account_id, out);
    if (n < 0 || account_id == 0)
        return n;
    if (d->map.count >= DEVS_MAX_ACCOUNTS)
        chat_map_clear_owned(&d->map);
    e = pl_xmalloc(sizeof(*e) + (size_t)n * sizeof(e->ids[0]));
    e->n = (size_t)n;
    memcpy(e->ids, *out, (size_t)n * sizeof(e->ids[0]));
    chat_map_put(&d->map, account_id, e);
    return n;
}
