/* config_int.h: private declarations shared by config.c (snapshot, sources, getters),
 * config_parse.c (value and INI parsing) and config_render.c (INI and Markdown output).
 * No other file includes this. */
#ifndef PL_CONFIG_INT_H
#define PL_CONFIG_INT_H

#include "core/pl_config.h"

#include <stdatomic.h>

/* Longest INI line accepted (without its line ending). */
#define PL_CFG_MAX_LINE (64u * 1024u)
/* Largest config file read; anything bigger is certainly not a config file. */
#define PL_CFG_MAX_FILE (16u * 1024u * 1024u)
/* Room for a reason text ("\"abc\" is not an integer"). */
#define PL_CFG_REASON 320

typedef enum pl_cfg_origin {
    PL_CFG_DEFAULT, PL_CFG_FILE, PL_CFG_ENV, PL_CFG_OVERRIDE
} pl_cfg_origin_t;

/* One typed value. BOOL/INT/DURATION/SIZE use num; STRING/ENUM use str (owned);
 * LIST uses items (owned, NULL-terminated, n_items entries, each owned). */
typedef struct pl_cfg_val {
    int64_t num;
    char *str;
    char **items;
    size_t n_items;
    pl_cfg_origin_t origin;
    uint32_t line;              /* file line that set it (duplicate-key reports) */
} pl_cfg_val_t;

/* The schema flattened: defs in schema order, each with its table, plus an index
 * sorted by (section, key) for lookups and the PARLEY_* name of each key. */
typedef struct pl_cfg_index {
    size_t n;
    const pl_opt_def_t **defs;
    const pl_opt_table_t **tables;
    char **env_names;
    uint32_t *sorted;
} pl_cfg_index_t;

struct pl_config {
    atomic_uint refs;
    pl_cfg_index_t idx;
    pl_cfg_val_t *vals;         /* parallel to idx.defs */
    char *path;
};

/* Builds the index; aborts with a message on a schema bug (duplicate key, bad name,
 * ambiguous environment name, invalid default, bad bounds). */
void pl_cfg_index_build(pl_cfg_index_t *idx, pl_config_schema_t schema);
void pl_cfg_index_free(pl_cfg_index_t *idx);
/* Position of section.key in idx->defs, or -1 (the names need no terminator). */
ptrdiff_t pl_cfg_index_find(const pl_cfg_index_t *idx, const char *section,
                            size_t section_len, const char *key, size_t key_len);

/* Parses text (NUL-terminated, already unquoted) as def's type into *out (origin left
 * to the caller). Returns 0, or PL_ECONFIG with a one-line reason that never echoes
 * a secret's value. */
int pl_cfg_parse_value(const pl_opt_def_t *def, const char *text, pl_cfg_val_t *out,
                       char *reason, size_t reason_cap);
void pl_cfg_val_free(pl_cfg_val_t *v);
bool pl_cfg_val_equal(const pl_opt_def_t *def, const pl_cfg_val_t *a, const pl_cfg_val_t *b);

/* Parses a whole INI file image into cfg->vals (origin FILE). name is used in errors. */
int pl_cfg_parse_ini(pl_config_t *cfg, const char *name, const char *data, size_t len,
                     pl_config_error_t *err);

/* Appends to dst (cap bytes, always terminated) s[0..len) in double quotes with
 * control bytes, quotes and backslashes escaped, cut at 48 bytes with "...". */
void pl_cfg_quote(char *dst, size_t cap, const char *s, size_t len);
/* The name within edit distance 2 of word among candidates, or NULL. */
const char *pl_cfg_suggest(const char *word, size_t len, const char *const *cands, size_t n);
/* "int", "duration", ... */
const char *pl_cfg_type_name(pl_opt_type_t t);
/* Formats a DURATION (ms) or SIZE (bytes) with the largest exact unit: "90s", "1MiB". */
void pl_cfg_format_num(pl_opt_type_t t, int64_t v, char *dst, size_t cap);

_Noreturn void pl_cfg_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
