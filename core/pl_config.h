/* pl_config.h: declarative configuration. Each module declares its keys in an option
 * table (type, bounds, default, reloadable flag, one-line doc); the app gathers the
 * tables into a schema and builds an immutable, reference-counted snapshot from:
 *   defaults  <  the INI file  <  PARLEY_<SECTION>_<KEY> environment  <  --set overrides.
 * A reload builds a new snapshot; only keys flagged PL_OPT_RELOADABLE may differ from
 * the running one (pl_config_reload_check says which did).
 *
 * INI syntax: `[section]`, `key = value`, comments start with # or ; at line start,
 * values may be double-quoted (then \" and \\ escapes apply). An unquoted value is
 * trimmed and taken whole: a trailing "# text" is part of it, not a comment.
 * Environment and --set values are taken literally (no trimming or quotes); the last
 * --set of a key wins. Unknown sections or keys, duplicate keys, bad values and
 * out-of-range numbers are errors naming file, line, section and key.
 *
 * Values by type (all parsed at load; getters never fail for declared keys):
 *   BOOL      true/false/yes/no/on/off/1/0
 *   INT       decimal integer within [min, max]
 *   DURATION  integer with unit ms|s|m|h|d (bare number = seconds) -> milliseconds
 *   SIZE      integer with unit B|KiB|MiB|GiB (bare number = bytes) -> bytes
 *   STRING    any text but control characters; tab is fine (max bytes = max when max > 0)
 *   ENUM      one of choices "a|b|c"
 *   LIST      comma-separated strings, trimmed, empty items dropped (at most max when > 0)
 *
 * Threading: a snapshot is immutable and may be read from any thread; take a reference
 * (pl_config_ref) to keep it alive across a reload. Loading is control-plane only. */
#ifndef PL_CONFIG_H
#define PL_CONFIG_H

#include "core/pl_common.h"
#include "core/pl_buf.h"

typedef enum pl_opt_type {
    PL_OPT_BOOL, PL_OPT_INT, PL_OPT_DURATION, PL_OPT_SIZE, PL_OPT_STRING, PL_OPT_ENUM, PL_OPT_LIST
} pl_opt_type_t;

enum {
    PL_OPT_RELOADABLE = 1u << 0,  /* may change on SIGHUP */
    PL_OPT_SECRET     = 1u << 1,  /* masked in --check-config output and logs */
};

typedef struct pl_opt_def {
    const char *section;
    const char *key;
    pl_opt_type_t type;
    const char *def;        /* default, as text in the same syntax as the INI file */
    int64_t min, max;       /* INT/DURATION(ms)/SIZE bounds (min = max = 0: unbounded);
                               STRING/LIST max length/items (0 = none) */
    const char *choices;    /* ENUM: "a|b|c" */
    unsigned flags;
    const char *doc;        /* one line for docs/OPERATIONS.md and --check-config */
} pl_opt_def_t;

typedef struct pl_opt_table {
    const char *section_doc;    /* one line describing the section */
    const pl_opt_def_t *defs;
    size_t n_defs;
} pl_opt_table_t;

/* NULL-terminated array of tables; every section.key must be unique across tables. */
typedef const pl_opt_table_t *const *pl_config_schema_t;

typedef struct pl_config pl_config_t;

typedef struct pl_config_error {
    char msg[512];          /* one line: "FILE:LINE: [section] key: reason" or
                               "--set section.key=value: reason" or "PARLEY_X_Y: reason" */
} pl_config_error_t;

typedef struct pl_config_source {
    const char *path;                    /* INI file, or NULL for defaults only */
    const char *const *overrides;        /* "section.key=value" strings */
    size_t n_overrides;
    const char *const *environ;          /* NULL-terminated "NAME=value" (environ) or NULL */
} pl_config_source_t;

/* Builds a snapshot. Returns 0 and an owned *out (refcount 1), or PL_ECONFIG with err
 * filled in, or -errno when the file cannot be read (err filled in too). */
int pl_config_load(pl_config_schema_t schema, const pl_config_source_t *src,
                   pl_config_t **out, pl_config_error_t *err);

pl_config_t *pl_config_ref(pl_config_t *cfg);
void pl_config_unref(pl_config_t *cfg);

/* Getters. Abort (a programming bug) when section.key is not in the schema or the type
 * does not match. Returned strings are borrowed, valid while the snapshot lives. */
bool pl_config_bool(const pl_config_t *cfg, const char *section, const char *key);
int64_t pl_config_int(const pl_config_t *cfg, const char *section, const char *key);     /* INT, DURATION (ms), SIZE (bytes) */
const char *pl_config_str(const pl_config_t *cfg, const char *section, const char *key); /* STRING, ENUM */
size_t pl_config_list(const pl_config_t *cfg, const char *section, const char *key,
                      const char *const **items);
/* Where the value came from: "default", "file", "env" or "override". */
const char *pl_config_origin(const pl_config_t *cfg, const char *section, const char *key);
const char *pl_config_path(const pl_config_t *cfg);   /* NULL when none */

/* Compares a freshly loaded snapshot with the running one. Returns 0 when only reloadable
 * keys differ; otherwise PL_ECONFIG with err naming the first non-reloadable key that
 * changed ("[turn] threads: cannot change on reload; restart parleyd"). */
int pl_config_reload_check(const pl_config_t *running, const pl_config_t *next,
                           pl_config_error_t *err);
/* True when section.key differs between the two snapshots. */
bool pl_config_changed(const pl_config_t *a, const pl_config_t *b, const char *section,
                       const char *key);

/* Appends the effective config as INI text with each key's doc as a comment and its
 * origin, secrets masked as "***". */
void pl_config_render(const pl_config_t *cfg, pl_buf_t *out);
/* Appends the Markdown reference of every key (a table per section: key, type, default,
 * range, reloadable, description) for docs/OPERATIONS.md. */
void pl_config_render_docs(pl_config_schema_t schema, pl_buf_t *out);

#endif
