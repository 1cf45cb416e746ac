/* store_int.h: private declarations shared by store.c (thread, queue, group commit)
 * and store_db.c (SQLite connection, migrations, statement cache). Not for other
 * modules. Threading: a pl_store_conn_t belongs to whichever thread holds the database:
 * the opener during pl_store_open, then the store thread. */
#ifndef PL_STORE_INT_H
#define PL_STORE_INT_H

#include "store/pl_store.h"

typedef struct pl_store_stmt_slot {
    const char *sql;                /* key (pointer identity); NULL = empty */
    sqlite3_stmt *stmt;
    bool used;                      /* stepped during the current request */
} pl_store_stmt_slot_t;

struct pl_store_conn {
    sqlite3 *db;
    pl_store_stmt_slot_t *slots;    /* open addressing, power-of-two capacity */
    size_t cap;
    size_t count;
    const char **used;              /* keys of the slots to reset after the request */
    size_t n_used;
    size_t used_cap;
};

/* Opens path with the pragmas of opts. Returns 0 or PL_ESTATE (logged). */
int pl_store_conn_open(pl_store_conn_t *c, const char *path, bool synchronous_normal);
/* Finalizes every cached statement and closes the database. */
void pl_store_conn_close(pl_store_conn_t *c);
/* Resets the statements the last request used. */
void pl_store_conn_reset_used(pl_store_conn_t *c);
/* Runs sql (no result rows) with sqlite3_exec. Returns 0 or PL_ESTATE (logged with
 * what, unless quiet). */
int pl_store_conn_exec(pl_store_conn_t *c, const char *sql, const char *what);
/* Applies the missing migration steps of every schema. Returns 0, PL_ESTATE or
 * PL_EPARSE (see pl_store_open). */
int pl_store_migrate(pl_store_conn_t *c, const pl_store_schema_t *const *schemas, size_t n);

#endif
