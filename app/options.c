/* options.c: the app's own configuration keys ([log], [process]) and the schema that
 * gathers every module's option table. */
#include "app/app_int.h"

#include <stdlib.h>

static const pl_opt_def_t log_defs[] = {
    {"log", "level", PL_OPT_ENUM, "info", 0, 0, "debug|info|warn|error", PL_OPT_RELOADABLE,
     "Lowest level written to the log"},
    {"log", "format", PL_OPT_ENUM, "text", 0, 0, "text|json", 0,
     "Log line format: text (event key=value) or json (one object per line)"},
    {"log", "burst", PL_OPT_INT, "20", 1, 100000, NULL, 0,
     "Lines per second one event may print before repeats are suppressed and counted"},
};

static const pl_opt_def_t process_defs[] = {
    {"process", "drain_timeout", PL_OPT_DURATION, "10s", 0, 3600000, NULL, PL_OPT_RELOADABLE,
     "On SIGTERM/SIGINT, how long modules may finish current work before parleyd stops"},
    {"process", "node_id", PL_OPT_STRING, "node-1", 1, 64, NULL, 0,
     "Name of this node in logs, metrics and multi-node presence"},
};

const pl_opt_table_t pl_app_log_options = {
    "Logging: level, format and repeat suppression", log_defs, PL_ARRAY_LEN(log_defs)};
const pl_opt_table_t pl_app_process_options = {
    "The process: node name and graceful shutdown", process_defs, PL_ARRAY_LEN(process_defs)};

const pl_opt_table_t **pl_app_schema(void)
{
    size_t n = 0, cap = 3;
    for (size_t i = 0; i < pl_app_n_modules; i++) {
        cap++;
        for (const pl_opt_table_t *const *t = pl_app_modules[i]->more_options; t && *t; t++)
            cap++;
    }
    const pl_opt_table_t **schema = pl_xcalloc(cap + 1, sizeof *schema);
    schema[n++] = &pl_app_log_options;
    schema[n++] = &pl_app_process_options;
    schema[n++] = &pl_admin_options;
    for (size_t i = 0; i < pl_app_n_modules; i++) {
        const pl_module_t *m = pl_app_modules[i];
        if (m->options)
            schema[n++] = m->options;
        for (const pl_opt_table_t *const *t = m->more_options; t && *t; t++)
            schema[n++] = *t;
    }
    schema[n] = NULL;
    return schema;
}
