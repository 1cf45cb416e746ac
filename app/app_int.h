/* app_int.h: parleyd's application layer, private to app/: the module table, the
 * process life cycle (start order, signals, drain, reload) and the admin endpoint.
 * Threading: everything here runs on the main thread. */
#ifndef PL_APP_INT_H
#define PL_APP_INT_H

#include "core/pl_module.h"

typedef struct pl_app pl_app_t;

/* The modules parleyd knows, in start order (stop order is the reverse). */
extern const pl_module_t *const pl_app_modules[];
extern const size_t pl_app_n_modules;

/* The app's own options ([log], [process]) and the admin endpoint's ([admin]). */
extern const pl_opt_table_t pl_app_log_options;
extern const pl_opt_table_t pl_app_process_options;
extern const pl_opt_table_t pl_admin_options;

/* Builds the NULL-terminated schema of every module's option table. Returns an owned
 * array (free()). */
const pl_opt_table_t **pl_app_schema(void);

/* Command-line options. */
typedef struct pl_app_args {
    const char *config_path;        /* NULL: defaults only */
    const char **overrides;         /* "section.key=value" */
    size_t n_overrides;
    bool check_config;
    bool config_docs;               /* print the Markdown key reference and exit */
} pl_app_args_t;

/* Loads and validates the config, runs parleyd until SIGTERM/SIGINT and drains.
 * Returns the process exit status: 0 after a clean stop, 2 on a config error, 1 when
 * a module fails to start. */
int pl_app_main(const pl_app_args_t *args);

/* What the admin module sees of the app: readiness and stats of every module. */
typedef struct pl_app_view {
    bool (*all_ready)(void *app, pl_buf_t *why);      /* appends not-ready module names */
    void (*stats_json)(void *app, pl_buf_t *out);     /* appends the /stats document */
    void *app;
} pl_app_view_t;

/* The admin endpoint (GET /metrics /healthz /readyz /stats) on the main loop. It is
 * started before every module and stopped after them all, so operators can watch
 * start-up and drain. */
typedef struct pl_admin pl_admin_t;
int pl_admin_validate(const pl_config_t *cfg, pl_config_error_t *err);
/* Binds [admin] listen. Returns 0 and an owned *out, or -errno (port taken...). */
int pl_admin_start(const pl_host_t *host, const pl_app_view_t *view, pl_admin_t **out);
void pl_admin_reload(pl_admin_t *admin, const pl_config_t *next);
void pl_admin_stop(pl_admin_t *admin);
/* The bound address (for logs; port 0 in the config means "any free port"). */
void pl_admin_addr_str(const pl_admin_t *admin, char *buf, size_t cap);

/* Validates every enabled module's cross-key rules. Returns 0 or PL_ECONFIG. */
int pl_app_validate(const pl_config_t *cfg, pl_config_error_t *err);

#endif
