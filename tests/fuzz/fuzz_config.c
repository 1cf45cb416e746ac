/* fuzz_config.c: libFuzzer target for the INI config loader, through the public API
 * (pl_config_load reads the input from a memfd). Invariants beyond "no crash": a
 * failure always yields exactly one non-empty line of error text; a success renders. */
#include "core/pl_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const pl_opt_def_t defs[] = {
    {"a", "flag", PL_OPT_BOOL, "false", 0, 0, NULL, PL_OPT_RELOADABLE, "a bool"},
    {"a", "n", PL_OPT_INT, "5", -100, 100000, NULL, 0, "an int"},
    {"a", "t", PL_OPT_DURATION, "10s", 0, 86400000, NULL, 0, "a duration"},
    {"a", "sz", PL_OPT_SIZE, "1KiB", 0, 0, NULL, 0, "a size"},
    {"b", "s", PL_OPT_STRING, "x", 0, 64, NULL, PL_OPT_SECRET, "a secret string"},
    {"b", "e", PL_OPT_ENUM, "one", 0, 0, "one|two|three", 0, "an enum"},
    {"b", "l", PL_OPT_LIST, "", 0, 8, NULL, 0, "a list"},
};
static const pl_opt_table_t table = {"fuzz", defs, sizeof defs / sizeof defs[0]};
static const pl_opt_table_t *const schema[] = {&table, NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.ini", MFD_CLOEXEC);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    pl_config_source_t src = {.path = path};
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    if (pl_config_load(schema, &src, &cfg, &err) != 0) {
        if (strchr(err.msg, '\n') || err.msg[0] == '\0')
            abort();
    } else {
        pl_buf_t b;
        pl_buf_init(&b);
        pl_config_render(cfg, &b);
        pl_buf_deinit(&b);
        pl_config_unref(cfg);
    }
    close(fd);
    return 0;
}
