/* options.c: the app's own configuration keys ([log], [process]) and the schema that
 * gathers every module's option table. */
#include "app/app_int.h"
#ifdef PL_HAVE_SIGNALING
#include "store/pl_store.h"
#include "signaling/pl_router.h"
#endif
#ifdef PL_HAVE_CHAT
#include "chat/pl_chat.h"
#endif

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
    size_t n = 0;
    const pl_opt_table_t **schema = pl_xcalloc(pl_app_n_modules + 8, sizeof *schema);
    schema[n++] = &pl_app_log_options;
    schema[n++] = &pl_app_process_options;
    schema[n++] = &pl_admin_options;
#ifdef PL_HAVE_SIGNALING
    schema[n++] = &pl_store_options;    /* [store]: opened by the signaling module */
    schema[n++] = &pl_presence_options; /* [presence]: the signaling module's router */
    schema[n++] = &pl_calls_options;    /* [calls]: its call signaling part */
#endif
#ifdef PL_HAVE_CHAT
    schema[n++] = &pl_chat_options;     /* [chat]: a part of the signaling module */
#endif
    for (size_t i = 0; i < pl_app_n_modules; i++)
        if (pl_app_modules[i]->options)
            schema[n++] = pl_app_modules[i]->options;
    schema[n] = NULL;
    return schema;
}
