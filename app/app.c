/* app.c: parleyd's life cycle on the main thread: load and validate the config, start
 * the admin endpoint and every enabled module in order, then serve signals:
 *   SIGTERM/SIGINT  drain every module (reverse order) until all report drained or
 *                   [process] drain_timeout passes, then stop them in reverse order;
 *                   a second signal during the drain stops at once.
 *   SIGHUP          reload: a new snapshot from the same file, overrides and
 *                   environment; refused whole (and logged) when a non-reloadable key
 *                   changed or validation fails, so a bad edit never half-applies.
 * Signals are blocked in every thread and read from a signalfd on the main loop, so no
 * code runs in signal context. */
#include "app/app_int.h"
#include "core/pl_log.h"
#include "core/pl_net.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

extern char **environ;

typedef struct pl_app_mod {
    const pl_module_t *mod;
    void *state;
    bool started;
} pl_app_mod_t;

struct pl_app {
    pl_loop_t *loop;
    pl_metrics_t *metrics;
    pl_host_t host;
    pl_config_t *cfg;
    pl_config_source_t src;
    const pl_opt_table_t **schema;   /* owned */
    pl_admin_t *admin;
    pl_app_mod_t mods[32];
    size_t n_mods;
    int sig_fd;
    bool draining;
    uint64_t drain_deadline_ms;
    uint64_t start_wall_ms;
    pl_timer_t drain_timer;
    pl_metric_id_t m_reload_ok, m_reload_err;
};

int pl_app_validate(const pl_config_t *cfg, pl_config_error_t *err)
{
    int rc = pl_admin_validate(cfg, err);
    for (size_t i = 0; rc == 0 && i < pl_app_n_modules; i++) {
        const pl_module_t *m = pl_app_modules[i];
        if (m->validate && (!m->enabled || m->enabled(cfg)))
            rc = m->validate(cfg, err);
    }
    return rc;
}

static int load_config(pl_app_t *app, pl_config_t **out)
{
    pl_config_error_t err;
    int rc = pl_config_load((pl_config_schema_t)app->schema, &app->src, out, &err);
    if (rc == 0 && (rc = pl_app_validate(*out, &err)) != 0) {
        pl_config_unref(*out);
        *out = NULL;
    }
    if (rc != 0)
        fprintf(stderr, "parleyd: %s\n", err.msg);
    return rc;
}

static void setup_logging(const pl_config_t *cfg)
{
    pl_log_level_t level = PL_LOG_INFO;
    pl_log_format_t format = PL_LOG_TEXT;
    pl_log_level_parse(pl_config_str(cfg, "log", "level"), &level);
    pl_log_format_parse(pl_config_str(cfg, "log", "format"), &format);
    pl_log_setup(level, format, NULL, (unsigned)pl_config_int(cfg, "log", "burst"));
}

/* ---- readiness and /stats, as the admin endpoint sees them ---- */

static bool app_all_ready(void *arg, pl_buf_t *why)
{
    pl_app_t *app = arg;
    bool ok = !app->draining;
    if (app->draining)
        pl_buf_puts(why, "draining ");
    for (size_t i = 0; i < app->n_mods; i++) {
        pl_app_mod_t *m = &app->mods[i];
        if (!m->started || (m->mod->ready && !m->mod->ready(m->state))) {
            ok = false;
            pl_buf_printf(why, "%s ", m->mod->name);
        }
    }
    return ok;
}

static void app_stats_json(void *arg, pl_buf_t *out)
{
    pl_app_t *app = arg;
    pl_buf_printf(out, "{\"version\":\"%s\",\"node_id\":", PL_VERSION);
    pl_buf_json_str(out, pl_config_str(app->cfg, "process", "node_id"));
    pl_buf_printf(out, ",\"uptime_s\":%llu,\"draining\":%s,\"modules\":{",
                  (unsigned long long)((pl_now_wall_ms() - app->start_wall_ms) / 1000),
                  app->draining ? "true" : "false");
    for (size_t i = 0; i < app->n_mods; i++) {
        pl_app_mod_t *m = &app->mods[i];
        pl_buf_printf(out, "%s\"%s\":", i ? "," : "", m->mod->name);
        if (m->started && m->mod->stats_json)
            m->mod->stats_json(m->state, out);
        else
            pl_buf_printf(out, "{\"started\":%s}", m->started ? "true" : "false");
    }
    pl_buf_puts(out, "},\"metrics\":");
    pl_metrics_render_json(app->metrics, out);
    pl_buf_puts(out, "}");
}

/* ---- start and stop ---- */

static int start_modules(pl_app_t *app)
{
    for (size_t i = 0; i < pl_app_n_modules; i++) {
        const pl_module_t *m = pl_app_modules[i];
        if (m->enabled && !m->enabled(app->cfg))
            continue;
        pl_app_mod_t *slot = &app->mods[app->n_mods++];
        slot->mod = m;
        uint64_t t0 = pl_now_mono_us();
        int rc = m->start(&app->host, &slot->state);
        if (rc != 0) {
            pl_log_error("module.start_failed", "module=%s error=%s", m->name, pl_strerror(rc));
            fprintf(stderr, "parleyd: module %s failed to start: %s\n", m->name, pl_strerror(rc));
            return rc;
        }
        slot->started = true;
        pl_log_info("module.started", "module=%s start_ms=%.1f", m->name,
                    (double)(pl_now_mono_us() - t0) / 1000.0);
    }
    return 0;
}

static void stop_modules(pl_app_t *app)
{
    for (size_t i = app->n_mods; i-- > 0;) {
        pl_app_mod_t *m = &app->mods[i];
        if (!m->started)
            continue;
        m->mod->stop(m->state);
        m->started = false;
        pl_log_info("module.stopped", "module=%s", m->mod->name);
    }
    app->n_mods = 0;
}

static bool all_drained(pl_app_t *app)
{
    for (size_t i = 0; i < app->n_mods; i++) {
        pl_app_mod_t *m = &app->mods[i];
        if (m->started && m->mod->drained && !m->mod->drained(m->state))
            return false;
    }
    return true;
}

static void drain_tick(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    pl_app_t *app = arg;
    bool done = all_drained(app);
    if (!done && pl_loop_now_ms(loop) < app->drain_deadline_ms)
        return;
    pl_timer_stop(loop, t);
    if (!done)
        pl_log_warn("app.drain_deadline", "msg=\"drain deadline passed; stopping anyway\"");
    pl_loop_stop(loop);
}

static void begin_drain(pl_app_t *app, const char *why)
{
    if (app->draining) {
        pl_log_warn("app.stop_now", "signal=%s msg=\"second signal: stopping without drain\"", why);
        pl_loop_stop(app->loop);
        return;
    }
    app->draining = true;
    int64_t timeout_ms = pl_config_int(app->cfg, "process", "drain_timeout");
    pl_log_info("app.draining", "signal=%s timeout_ms=%lld", why, (long long)timeout_ms);
    for (size_t i = app->n_mods; i-- > 0;) {
        pl_app_mod_t *m = &app->mods[i];
        if (m->started && m->mod->drain)
            m->mod->drain(m->state);
    }
    app->drain_deadline_ms = pl_loop_now_ms(app->loop) + (uint64_t)timeout_ms;
    pl_timer_start(app->loop, &app->drain_timer, 0, 50, drain_tick, app);
}

/* ---- reload ---- */

static void reload(pl_app_t *app)
{
    pl_config_t *next = NULL;
    pl_config_error_t err;
    pl_log_info("config.reload_begin", "path=%s", app->src.path ? app->src.path : "-");
    int rc = pl_config_load((pl_config_schema_t)app->schema, &app->src, &next, &err);
    if (rc == 0)
        rc = pl_app_validate(next, &err);
    if (rc == 0)
        rc = pl_config_reload_check(app->cfg, next, &err);
    if (rc != 0) {
        char q[600];
        pl_log_error("config.reload_failed", "reason=%s", pl_log_q(q, sizeof q, err.msg));
        pl_metric_inc(app->host.main_shard, app->m_reload_err);
        if (next)
            pl_config_unref(next);
        return;
    }
    pl_log_level_t level = PL_LOG_INFO;
    pl_log_level_parse(pl_config_str(next, "log", "level"), &level);
    pl_log_set_level(level);
    if (app->admin)
        pl_admin_reload(app->admin, next);
    for (size_t i = 0; i < app->n_mods; i++) {
        pl_app_mod_t *m = &app->mods[i];
        if (m->started && m->mod->reload && (rc = m->mod->reload(m->state, next)) != 0)
            pl_log_error("config.reload_module_failed", "module=%s error=%s", m->mod->name,
                         pl_strerror(rc));
    }
    pl_config_unref(app->cfg);
    app->cfg = next;
    app->host.config = next;
    pl_metric_inc(app->host.main_shard, app->m_reload_ok);
    pl_log_info("config.reloaded", "level=%s", pl_config_str(next, "log", "level"));
}

static void on_signal(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(events);
    pl_app_t *app = arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM: begin_drain(app, "TERM"); break;
        case SIGINT: begin_drain(app, "INT"); break;
        case SIGHUP: reload(app); break;
        default: break;
        }
    }
}

static int setup_signals(pl_app_t *app)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* Block before any thread starts so every thread inherits the mask and only the
     * signalfd sees these signals. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    app->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (app->sig_fd < 0)
        return -errno;
    return pl_loop_add_fd(app->loop, app->sig_fd, PL_IO_READ, on_signal, app);
}

/* ---- the whole run ---- */

static double one(void *arg)
{
    PL_UNUSED(arg);
    return 1.0;
}

static void register_app_metrics(pl_app_t *app)
{
    char labels[256];
    snprintf(labels, sizeof labels, "version=\"%s\",revision=\"%s\",compiler=\"gcc %d.%d\"",
             PL_VERSION, pl_build_revision(), __GNUC__, __GNUC_MINOR__);
    pl_metrics_gauge_fn(app->metrics, "parley_build_info",
                        "Build of this parleyd: version, git revision, compiler", labels, one, NULL);
    pl_metrics_register_process(app->metrics);
    const char *help = "Configuration reloads (SIGHUP) by result";
    app->m_reload_ok = pl_metrics_counter(app->metrics, "parley_config_reloads_total", help,
                                          "result=\"ok\"");
    app->m_reload_err = pl_metrics_counter(app->metrics, "parley_config_reloads_total", help,
                                           "result=\"error\"");
}

static int app_open(pl_app_t *app, const pl_app_args_t *args)
{
    app->sig_fd = -1;
    app->start_wall_ms = pl_now_wall_ms();
    app->schema = pl_app_schema();
    app->src.path = args->config_path;
    app->src.overrides = args->overrides;
    app->src.n_overrides = args->n_overrides;
    app->src.environ = (const char *const *)environ;
    pl_timer_init(&app->drain_timer);
    return load_config(app, &app->cfg) == 0 ? 0 : PL_ECONFIG;
}

static int app_start(pl_app_t *app)
{
    int rc;
    setup_logging(app->cfg);
    app->metrics = pl_metrics_create();
    register_app_metrics(app);
    if ((rc = pl_loop_create("main", &app->loop)) != 0)
        return rc;
    if ((rc = setup_signals(app)) != 0)
        return rc;
    app->host.main_loop = app->loop;
    app->host.metrics = app->metrics;
    app->host.main_shard = pl_metrics_shard_create(app->metrics);
    app->host.config = app->cfg;
    static const pl_app_view_t view_ops = {app_all_ready, app_stats_json, NULL};
    pl_app_view_t view = view_ops;
    view.app = app;
    if ((rc = pl_admin_start(&app->host, &view, &app->admin)) != 0) {
        fprintf(stderr, "parleyd: admin endpoint failed to start: %s\n", pl_strerror(rc));
        return rc;
    }
    return start_modules(app);
}

static void app_close(pl_app_t *app)
{
    stop_modules(app);
    if (app->admin)
        pl_admin_stop(app->admin);
    if (app->loop) {
        pl_timer_stop(app->loop, &app->drain_timer);
        if (app->sig_fd >= 0)
            pl_loop_del_fd(app->loop, app->sig_fd);
        pl_loop_destroy(app->loop);
    }
    if (app->sig_fd >= 0)
        close(app->sig_fd);
    if (app->metrics)
        pl_metrics_destroy(app->metrics);
    if (app->cfg)
        pl_config_unref(app->cfg);
    free(app->schema);
}

int pl_app_main(const pl_app_args_t *args)
{
    if (args->config_docs) {
        const pl_opt_table_t **schema = pl_app_schema();
        pl_buf_t b;
        pl_buf_init(&b);
        pl_config_render_docs((pl_config_schema_t)schema, &b);
        fputs(b.data ? b.data : "", stdout);
        pl_buf_deinit(&b);
        free(schema);
        return 0;
    }
    pl_app_t *app = pl_xcalloc(1, sizeof *app);
    int status = 0;
    if (app_open(app, args) != 0) {
        status = 2;
        goto out;
    }
    if (args->check_config) {
        pl_buf_t b;
        pl_buf_init(&b);
        pl_config_render(app->cfg, &b);
        fputs(b.data ? b.data : "", stdout);
        pl_buf_deinit(&b);
        goto out;
    }
    if (app_start(app) != 0) {
        status = 1;
        goto out;
    }
    char admin_addr[PL_SOCKADDR_STRLEN];
    pl_admin_addr_str(app->admin, admin_addr, sizeof admin_addr);
    pl_log_info("app.ready", "version=%s node=%s admin=%s modules=%zu pid=%d", PL_VERSION,
                pl_config_str(app->cfg, "process", "node_id"), admin_addr, app->n_mods,
                (int)getpid());
    int rc = pl_loop_run(app->loop);
    if (rc != 0) {
        pl_log_error("app.loop_failed", "error=%s", pl_strerror(rc));
        status = 1;
    }
    pl_log_info("app.stopping", "modules=%zu", app->n_mods);
out:
    app_close(app);
    if (status == 0 && !args->check_config)
        pl_log_info("app.stopped", "status=0");
    free(app);
    return status;
}
