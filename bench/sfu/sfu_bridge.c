/* sfu_bridge.c: drives an SFU over stdin/stdout with JSON lines, so a test can put real
 * browsers in a room without the signaling module (tests and interop checks only; in
 * parleyd the signaling module calls the same C API).
 *
 *   sfu_bridge [--set sfu.key=value]...
 *   stdin, one command per line:
 *     {"op":"join","room":"r1","id":1,"display":"ann"}
 *     {"op":"offer"|"answer","id":1,"sdp":"..."}
 *     {"op":"candidate","id":1,"candidate":"candidate:...","mid":"0"}   ("" = end)
 *     {"op":"quality","id":1,"publisher":2,"quality":"low"|"medium"|"high"}
 *     {"op":"mute","id":1,"kind":"audio","muted":true}
 *     {"op":"leave","id":1}
 *     {"op":"metrics"}
 *   stdout, one line each:
 *     {"to":1,"event":{...}}                 an SFU event for participant 1
 *     {"op":"join","rc":0}                   the result of each command (0 or -errno)
 *     {"metrics":"...prometheus text..."}
 * EOF on stdin stops the SFU and exits 0.
 *
 * Threading: commands run on the main thread; events are written from media threads
 * under a mutex, each line whole. */
#include "relay/sfu/sfu_int.h"
#include "core/pl_buf.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t g_out = PTHREAD_MUTEX_INITIALIZER;

static void out_line(const char *line)
{
    pthread_mutex_lock(&g_out);
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&g_out);
}

static void sink(void *ctx, uint64_t pid, const char *json)
{
    PL_UNUSED(ctx);
    char *line = g_strdup_printf("{\"to\":%" G_GUINT64_FORMAT ",\"event\":%s}", pid, json);
    out_line(line);
    g_free(line);
}

static const char *str(json_t *cmd, const char *key)
{
    const char *s = json_string_value(json_object_get(cmd, key));
    return s ? s : "";
}

static pl_sfu_quality_t quality(const char *q)
{
    return strcmp(q, "low") == 0 ? PL_SFU_QUALITY_LOW
         : strcmp(q, "medium") == 0 ? PL_SFU_QUALITY_MEDIUM : PL_SFU_QUALITY_HIGH;
}

static int run_cmd(pl_sfu_t *sfu, pl_metrics_t *reg, json_t *cmd, const char *op)
{
    uint64_t id = (uint64_t)json_integer_value(json_object_get(cmd, "id"));
    if (strcmp(op, "join") == 0) {
        pl_sfu_join_opts_t o = { .display = str(cmd, "display") };
        return pl_sfu_join(sfu, str(cmd, "room"), id, &o);
    }
    if (strcmp(op, "offer") == 0)
        return pl_sfu_offer(sfu, id, str(cmd, "sdp"));
    if (strcmp(op, "answer") == 0)
        return pl_sfu_answer(sfu, id, str(cmd, "sdp"));
    if (strcmp(op, "candidate") == 0)
        return pl_sfu_ice_candidate(sfu, id, str(cmd, "candidate"), str(cmd, "mid"));
    if (strcmp(op, "quality") == 0)
        return pl_sfu_set_quality(sfu, id,
                                  (uint64_t)json_integer_value(json_object_get(cmd, "publisher")),
                                  quality(str(cmd, "quality")));
    if (strcmp(op, "mute") == 0)
        return pl_sfu_mute(sfu, id, str(cmd, "kind"), json_is_true(json_object_get(cmd, "muted")));
    if (strcmp(op, "leave") == 0)
        return pl_sfu_leave(sfu, id);
    if (strcmp(op, "metrics") == 0) {
        pl_buf_t b;
        pl_buf_init(&b);
        pl_metrics_render_prometheus(reg, &b);
        json_t *o = json_pack("{s:s}", "metrics", b.data ? b.data : "");
        char *line = json_dumps(o, JSON_COMPACT);
        out_line(line);
        free(line);
        json_decref(o);
        pl_buf_deinit(&b);
        return 0;
    }
    return -EINVAL;
}

int main(int argc, char **argv)
{
    static const pl_opt_table_t *const schema[] = { &pl_sfu_options, NULL };
    const char *sets[64];
    size_t n = 0;
    for (int i = 1; i + 1 < argc && n < 64; i += 2)
        if (strcmp(argv[i], "--set") == 0)
            sets[n++] = argv[i + 1];
    pl_config_source_t src = { .overrides = sets, .n_overrides = n };
    pl_config_t *cfg;
    pl_config_error_t err;
    pl_log_level_t level = PL_LOG_INFO;
    if (getenv("SFU_LOG_LEVEL"))
        (void)pl_log_level_parse(getenv("SFU_LOG_LEVEL"), &level);
    pl_log_setup(level, PL_LOG_TEXT, stderr, 0);
    if (pl_config_load(schema, &src, &cfg, &err) < 0) {
        fprintf(stderr, "sfu_bridge: %s\n", err.msg);
        return 2;
    }
    pl_metrics_t *reg = pl_metrics_create();
    pl_sfu_sink_t s = { sink, NULL };
    pl_sfu_t *sfu;
    if (pl_sfu_create(cfg, reg, &s, &sfu) < 0)
        return 1;
    pl_config_unref(cfg);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        json_error_t jerr;
        json_t *cmd = json_loads(line, 0, &jerr);
        const char *op = cmd ? str(cmd, "op") : "";
        int rc = cmd ? run_cmd(sfu, reg, cmd, op) : -EINVAL;
        json_t *res = json_pack("{s:s,s:i}", "op", op, "rc", rc);
        char *text = json_dumps(res, JSON_COMPACT);
        out_line(text);
        free(text);
        json_decref(res);
        json_decref(cmd);
    }
    free(line);
    pl_sfu_destroy(sfu);
    pl_metrics_destroy(reg);
    return 0;
}
