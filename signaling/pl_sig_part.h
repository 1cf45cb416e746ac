/* pl_sig_part.h: the contract of a signaling "part": a component that plugs into the
 * signaling module (accounts, presence, calls inside signaling/; chat from chat/). At
 * start each part gets the gateway before it serves and registers its frame handlers,
 * hooks, push types and HTTP routes, plus its store schema. The signaling module's
 * parts list (signaling/module.c) names them.
 *
 * Order at start: store open (every part's schema migrated) -> part init (in list
 * order) -> gateway start. At stop: gateway stop -> part stop (in reverse) -> store
 * close -> part destroy -> gateway destroy. So a part's threads may still post to the
 * gateway and submit to the store while they stop.
 *
 * Threading: every hook here runs on the main thread. */
#ifndef PL_SIG_PART_H
#define PL_SIG_PART_H

#include "signaling/pl_signaling.h"

typedef struct pl_sig_ctx {
    pl_sig_gateway_t *gw;
    pl_store_t *store;
    const pl_config_t *config;
    pl_metrics_t *metrics;
    pl_loop_t *main_loop;
    struct pl_router *router;   /* presence and routing (signaling/pl_router.h), created
                                   before the parts and stopped after them */
} pl_sig_ctx_t;

typedef struct pl_sig_part {
    const char *name;
    const pl_store_schema_t *schema;        /* or NULL */
    int (*init)(const pl_sig_ctx_t *ctx, void **state);
    void (*stop)(void *state);              /* may be NULL */
    void (*destroy)(void *state);
    void (*reload)(void *state, const pl_config_t *next);   /* may be NULL */
} pl_sig_part_t;

#endif
