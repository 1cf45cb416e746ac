/* acct_part.c: the accounts part's life cycle inside the signaling module: reads its
 * [signaling] keys, creates the login limiters and the password workers, registers its
 * frames and HTTP routes, and sweeps expired sessions from a main-loop timer.
 *
 * What it does not do: anything per request (acct_http.c, acct_ws.c, acct_kdf.c).
 *
 * Threading: init/stop/destroy/reload and the sweep timer on the main thread. */
#include "signaling/acct_int.h"
#include "core/pl_log.h"

#include <stdlib.h>

#define SWEEP_INTERVAL_MS (10 * 60 * 1000)
#define LIMITER_KEYS 65536

static void set_limits(pl_sig_accounts_t *acc, const pl_config_t *cfg)
{
    atomic_store(&acc->max_devices, (uint32_t)pl_config_int(cfg, "signaling", "max_devices"));
    atomic_store(&acc->session_ttl_ms, (uint64_t)pl_config_int(cfg, "signaling", "session_ttl"));
    atomic_store(&acc->ip_per_min, (uint32_t)pl_config_int(cfg, "signaling", "auth_ip_per_min"));
    atomic_store(&acc->ip_burst, (uint32_t)pl_config_int(cfg, "signaling", "auth_ip_burst"));
    atomic_store(&acc->user_per_min,
                 (uint32_t)pl_config_int(cfg, "signaling", "auth_account_per_min"));
    atomic_store(&acc->user_burst,
                 (uint32_t)pl_config_int(cfg, "signaling", "auth_account_burst"));
}

static void sweep_done(pl_sig_acct_op_t *op)
{
    acct_op_free(op);
}

static void sweep(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(t);
    pl_sig_accounts_t *acc = arg;
    pl_sig_acct_op_t *op = acct_op_new(acc, ACCT_SWEEP);
    op->done = sweep_done;
    op->req.reply = (pl_store_reply_t){ NULL, NULL };   /* done on the store thread */
    pl_store_submit(acc->store, &op->req);
}

static int acct_init(const pl_sig_ctx_t *ctx, void **state)
{
    pl_sig_accounts_t *acc = pl_xcalloc(1, sizeof(*acc));
    acc->gw = ctx->gw;
    acc->store = ctx->store;
    acc->main_loop = ctx->main_loop;
    acc->scrypt_log2_n = (unsigned)pl_config_int(ctx->config, "signaling", "scrypt_log2_n");
    set_limits(acc, ctx->config);
    acc->ip_limiter = pl_sig_limiter_create(LIMITER_KEYS);
    acc->user_limiter = pl_sig_limiter_create(LIMITER_KEYS);
    int rc = pl_sig_kdf_create(acc,
                               (unsigned)pl_config_int(ctx->config, "signaling", "kdf_threads"),
                               (unsigned)pl_config_int(ctx->config, "signaling", "kdf_queue_max"),
                               ctx->metrics, &acc->kdf);
    if (rc < 0)
        goto fail;
    rc = pl_sig_gateway_add_handlers(ctx->gw, pl_sig_acct_handlers, pl_sig_acct_n_handlers, acc);
    if (rc < 0)
        goto fail_kdf;
    pl_sig_gateway_add_http_routes(ctx->gw, pl_sig_acct_routes, pl_sig_acct_n_routes, acc);
    pl_timer_init(&acc->sweep_timer);
    pl_timer_start(acc->main_loop, &acc->sweep_timer, 1000, SWEEP_INTERVAL_MS, sweep, acc);
    *state = acc;
    return 0;

fail_kdf:
    pl_sig_kdf_stop(acc->kdf);
    pl_sig_kdf_destroy(acc->kdf);
fail:
    pl_sig_limiter_destroy(acc->ip_limiter);
    pl_sig_limiter_destroy(acc->user_limiter);
    free(acc);
    return rc;
}

static void acct_stop(void *state)
{
    pl_sig_accounts_t *acc = state;
    pl_timer_stop(acc->main_loop, &acc->sweep_timer);
    pl_sig_kdf_stop(acc->kdf);
}

static void acct_destroy(void *state)
{
    pl_sig_accounts_t *acc = state;
    pl_sig_kdf_destroy(acc->kdf);
    pl_sig_limiter_destroy(acc->ip_limiter);
    pl_sig_limiter_destroy(acc->user_limiter);
    free(acc);
}

static void acct_reload(void *state, const pl_config_t *next)
{
    set_limits(state, next);
}

const pl_sig_part_t pl_sig_accounts_part = {
    .name = "accounts",
    .schema = &pl_sig_accounts_schema,
    .init = acct_init,
    .stop = acct_stop,
    .destroy = acct_destroy,
    .reload = acct_reload,
};
