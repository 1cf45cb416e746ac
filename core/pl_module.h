/* pl_module.h: the contract between parleyd's app and each module (admin, relay,
 * signaling, ...). The app starts enabled modules in the documented order (see
 * docs/ARCHITECTURE.md) and stops them in reverse.
 *
 * Life cycle, all on the main thread:
 *   validate(cfg)  at --check-config, start-up and reload: cross-key checks
 *   start(host)    open sockets, start threads; returns the module's state
 *   drain(state)   SIGTERM: stop accepting new work, let current work finish
 *   drained(state) polled during the drain deadline; true when nothing is left
 *   stop(state)    join threads, close sockets, free state (after drain or deadline)
 *   reload(state, next) SIGHUP with an already-validated snapshot (reloadable keys only)
 *   ready(state)   /readyz: true when the module serves
 *   stats_json(state, out) appends one JSON value for /stats
 * Any hook may be NULL except start and stop. */
#ifndef PL_MODULE_H
#define PL_MODULE_H

#include "core/pl_common.h"
#include "core/pl_config.h"
#include "core/pl_loop.h"
#include "core/pl_metrics.h"
#include "core/pl_buf.h"

/* What the app hands a module. Borrowed; valid until the module's stop returns.
 * config is the snapshot current at start; after a reload the module gets the new one
 * through its reload hook. */
typedef struct pl_host {
    pl_loop_t *main_loop;
    pl_metrics_t *metrics;
    pl_metrics_shard_t *main_shard;  /* shard of the main thread */
    const pl_config_t *config;
} pl_host_t;

typedef struct pl_module {
    const char *name;
    const pl_opt_table_t *options;                  /* this module's keys, or NULL */
    /* Further tables the module reads (its parts' sections), NULL-terminated, or NULL. */
    const pl_opt_table_t *const *more_options;
    bool (*enabled)(const pl_config_t *cfg);        /* NULL = always */
    int (*validate)(const pl_config_t *cfg, pl_config_error_t *err);
    int (*start)(const pl_host_t *host, void **state);
    void (*drain)(void *state);
    bool (*drained)(void *state);
    void (*stop)(void *state);
    int (*reload)(void *state, const pl_config_t *next);
    bool (*ready)(void *state);
    void (*stats_json)(void *state, pl_buf_t *out);
} pl_module_t;

#endif
