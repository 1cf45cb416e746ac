/* calls_part.c: the calls part of the signaling module: the [calls] options, its
 * metrics, and plugging the call state machine into the gateway (call.* frames, push
 * types) and the router (request handler, close and stop hooks on the presence thread).
 *
 * What it does not do: handle frames (calls_ws.c) or hold calls (calls.c).
 *
 * Threading: init/stop/destroy/reload on the main thread; reload posts the new settings
 * to the presence thread, which owns them. */
#include "signaling/calls_int.h"
#include "core/pl_log.h"

#include <stdlib.h>
#include <string.h>

#define R PL_OPT_RELOADABLE
#define SEC 1000ll
static const pl_opt_def_t calls_defs[] = {
    { "calls", "enabled", PL_OPT_BOOL, "true", 0, 0, NULL, 0,
      "1:1 call signaling (call.* frames) on the signaling gateway" },
    { "calls", "ring_timeout", PL_OPT_DURATION, "45s", 1 * SEC, 600 * SEC, NULL, R,
      "an unanswered call is missed after this long" },
    { "calls", "max_calls", PL_OPT_INT, "100000", 1, 10000000, NULL, R,
      "calls homed on this node (placed by its users) at once" },
    { "calls", "ice_host", PL_OPT_STRING, "", 0, 255, NULL, R,
      "host in the STUN/TURN URLs derived from [turn] (empty = [turn] external_ip, else "
      "the [turn] listen address)" },
    { "calls", "stun_urls", PL_OPT_LIST, "", 0, PL_CALL_URLS_MAX, NULL, R,
      "STUN URLs handed to callers (empty = parleyd's own [turn] listener)" },
    { "calls", "turn_urls", PL_OPT_LIST, "", 0, PL_CALL_URLS_MAX, NULL, R,
      "TURN URLs handed to callers with credentials minted from [turn] auth_secret and "
      "valid for [turn] rest_ttl (empty = parleyd's own [turn]: udp, tcp, turns with TLS)" },
};

const pl_opt_table_t pl_calls_options = {
    "1:1 call signaling: ringing, answer, SDP/ICE relay, ICE servers for participants",
    calls_defs, PL_ARRAY_LEN(calls_defs),
};

static void register_metrics(pl_calls_t *c, pl_metrics_t *mx)
{
    static const double setup_bounds[] = { 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60 };
    c->m.invites = pl_metrics_counter(mx, "parley_calls_invites_total",
                                      "call.invite requests handled here", NULL);
    c->m.answered = pl_metrics_counter(mx, "parley_calls_answered_total",
                                       "Calls accepted by a callee device", NULL);
    c->m.missed = pl_metrics_counter(mx, "parley_calls_missed_total",
                                     "Calls not answered within ring_timeout", NULL);
    c->m.rejected = pl_metrics_counter(mx, "parley_calls_rejected_total",
                                       "Calls rejected by the callee", NULL);
    c->m.busy = pl_metrics_counter(mx, "parley_calls_busy_total",
                                   "Invites refused because the callee was in a call", NULL);
    c->m.cancelled = pl_metrics_counter(mx, "parley_calls_cancelled_total",
                                        "Calls cancelled by the caller while ringing", NULL);
    c->m.offline = pl_metrics_counter(mx, "parley_calls_offline_total",
                                      "Invites to a callee with no device online", NULL);
    c->m.ended = pl_metrics_counter(mx, "parley_calls_ended_total",
                                    "Calls that ended, whatever the reason", NULL);
    c->m.active = pl_metrics_gauge(mx, "parley_calls_active",
                                   "Calls homed on this node, ringing or answered", NULL);
    c->m.setup = pl_metrics_histogram(mx, "parley_calls_setup_seconds",
                                      "Time from call.invite to call.accept", NULL,
                                      setup_bounds, PL_ARRAY_LEN(setup_bounds));
}

/* ---- settings owned by the presence thread --------------------------------------- */

typedef struct settings_msg {
    pl_msg_t msg;
    pl_calls_t *c;
    pl_calls_ice_t *ice;
    uint64_t ring_timeout_ms;
    uint32_t max_calls;
} settings_msg_t;

static settings_msg_t *settings_new(pl_calls_t *c, const pl_config_t *cfg)
{
    settings_msg_t *m = pl_xcalloc(1, sizeof(*m));
    m->c = c;
    m->ice = pl_xmalloc(sizeof(*m->ice));
    pl_calls_ice_init(m->ice, cfg);
    m->ring_timeout_ms = (uint64_t)pl_config_int(cfg, "calls", "ring_timeout");
    m->max_calls = (uint32_t)pl_config_int(cfg, "calls", "max_calls");
    return m;
}

static void settings_apply(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    settings_msg_t *m = PL_CONTAINER_OF(msg, settings_msg_t, msg);
    pl_calls_t *c = m->c;
    if (c->ice && !c->r->stopped) {
        pl_calls_ice_deinit(c->ice);
        free(c->ice);
        c->ice = m->ice;
        c->ring_timeout_ms = m->ring_timeout_ms;
        c->max_calls = m->max_calls;
    } else {
        pl_calls_ice_deinit(m->ice);
        free(m->ice);
    }
    free(m);
}

/* ---- life cycle ------------------------------------------------------------------------ */

static int calls_init(const pl_sig_ctx_t *ctx, void **state)
{
    pl_calls_t *c = pl_xcalloc(1, sizeof(*c));
    c->r = ctx->router;
    c->gw = ctx->gw;
    c->store = ctx->store;
    *state = c;
    if (!pl_config_bool(ctx->config, "calls", "enabled"))
        return 0;
    c->enabled = true;
    register_metrics(c, ctx->metrics);
    settings_msg_t *m = settings_new(c, ctx->config);
    c->ice = m->ice;                /* the presence thread does not run yet */
    c->ring_timeout_ms = m->ring_timeout_ms;
    c->max_calls = m->max_calls;
    free(m);
    pl_calls_init_state(c);
    pl_rtr_set_rq_handler(c->r, pl_calls_on_rq, c);
    pl_rtr_add_close_hook(c->r, pl_calls_on_close, c);
    pl_rtr_add_stop_hook(c->r, pl_calls_on_stop, c);
    pl_sig_gateway_add_push_types(c->gw, pl_calls_push_types, pl_calls_n_push_types);
    return pl_sig_gateway_add_handlers(c->gw, pl_calls_handlers, pl_calls_n_handlers, c);
}

static void calls_destroy(void *state)
{
    pl_calls_t *c = state;
    if (c->ice) {                   /* the presence thread never ran its stop hook */
        pl_calls_ice_deinit(c->ice);
        free(c->ice);
        pl_u64map_deinit(&c->calls);
        pl_u64map_deinit(&c->peers);
    }
    free(c);
}

static void calls_reload(void *state, const pl_config_t *next)
{
    pl_calls_t *c = state;
    if (!c->enabled)
        return;                     /* enabled is not reloadable */
    settings_msg_t *m = settings_new(c, next);
    m->msg.fn = settings_apply;
    pl_loop_post(c->r->loop, &m->msg);
}

const pl_sig_part_t pl_sig_calls_part = {
    .name = "calls",
    .schema = NULL,
    .init = calls_init,
    .stop = NULL,
    .destroy = calls_destroy,
    .reload = calls_reload,
};
