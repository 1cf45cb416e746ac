/* sfu_module.c: pl_sfu_module, the SFU as a parleyd module: [sfu] options, validate,
 * start (media threads), drain (refuse new joins, wait for rooms to empty), stop,
 * readiness and the /stats fragment (per room: participants, the layer, packets, loss,
 * jitter and RTT of each subscription, refreshed every 2 s by the media threads).
 *
 * pl_sfu_running() publishes the running instance to modules started after the SFU
 * (signaling): an atomic pointer set when start returns and cleared at stop, the one
 * process-wide mutable value the SFU has (docs/THREADING.md).
 *
 * Threading: the hooks run on the main thread; pl_sfu_running on any thread. */
#include "relay/sfu/sfu_int.h"
#include "core/pl_buf.h"

static _Atomic(pl_sfu_t *) g_running;

pl_sfu_t *pl_sfu_running(void)
{
    return atomic_load(&g_running);
}

static bool sfu_enabled(const pl_config_t *cfg)
{
    return pl_config_bool(cfg, "sfu", "enabled");
}

static int sfu_validate(const pl_config_t *cfg, pl_config_error_t *err)
{
    pl_sfu_settings_t s;
    return pl_sfu_settings_load(cfg, &s, err);
}

static int sfu_start(const pl_host_t *host, void **state)
{
    pl_sfu_t *sfu;
    int rc = pl_sfu_create(host->config, host->metrics, NULL, &sfu);
    if (rc < 0)
        return rc;
    atomic_store(&g_running, sfu);
    *state = sfu;
    return 0;
}

static void sfu_drain(void *state)
{
    pl_sfu_t *sfu = state;
    atomic_store(&sfu->draining, true);
}

static bool sfu_drained(void *state)
{
    pl_sfu_counts_t c;
    pl_sfu_get_counts(state, &c);
    return c.participants == 0;
}

static void sfu_stop(void *state)
{
    atomic_store(&g_running, NULL);
    pl_sfu_destroy(state);
}

static bool sfu_ready(void *state)
{
    pl_sfu_t *sfu = state;
    return !atomic_load(&sfu->draining);
}

static void sfu_stats_json(void *state, pl_buf_t *out)
{
    pl_sfu_t *sfu = state;
    pl_sfu_counts_t c;
    pl_sfu_get_counts(sfu, &c);
    pl_buf_printf(out, "{\"rooms\":%" G_GUINT64_FORMAT ",\"participants\":%" G_GUINT64_FORMAT
                  ",\"connected\":%" G_GUINT64_FORMAT ",\"threads\":%u,\"room_list\":[",
                  c.rooms, c.participants, c.connected, sfu->n_loops);
    bool first = true;
    for (unsigned i = 0; i < sfu->n_loops; i++) {
        pl_sfu_loop_t *ml = &sfu->loops[i];
        pthread_mutex_lock(&ml->stats_lock);
        /* Each loop's snapshot is a JSON array "[...]": splice its items in. */
        if (ml->stats_json && ml->stats_json[0] == '[' && ml->stats_json[1] != ']') {
            size_t n = strlen(ml->stats_json);
            if (!first)
                pl_buf_puts(out, ",");
            pl_buf_append(out, ml->stats_json + 1, n - 2);
            first = false;
        }
        pthread_mutex_unlock(&ml->stats_lock);
    }
    pl_buf_puts(out, "]}");
}

const pl_module_t pl_sfu_module = {
    .name = "sfu",
    .options = &pl_sfu_options,
    .enabled = sfu_enabled,
    .validate = sfu_validate,
    .start = sfu_start,
    .drain = sfu_drain,
    .drained = sfu_drained,
    .stop = sfu_stop,
    .ready = sfu_ready,
    .stats_json = sfu_stats_json,
};
