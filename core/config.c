/* config.c: builds immutable configuration snapshots from a schema and four layered
 * sources (defaults < INI file < PARLEY_* environment < --set overrides), and reads
 * them back through typed getters.
 *
 * Schema mistakes (duplicate keys, invalid defaults, names that map to the same
 * environment variable) are programming bugs and abort at load with a message; so do
 * getters asked for an undeclared key or the wrong type. Operator mistakes never abort:
 * they come back as one error line naming the source, key and reason.
 *
 * Environment and --set values are taken literally (no trimming, no quotes). When a key
 * is given twice with --set, the last one wins; a key given twice in the file is an
 * error. Unknown PARLEY_* variables are ignored (the app reads a few of its own).
 *
 * It does not watch files, send signals or log: the app decides when to reload and
 * reports the error line. Threading: loading is control plane; a finished snapshot is
 * immutable and readable from any thread; pl_config_ref/unref are atomic. */
#include "core/config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pl_cfg_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* Not through pl_log: this runs before logging is configured. */
    fputs("parleyd: config: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

/* ---- schema index ---- */

typedef struct name_ref {
    const char *sec, *key;
    size_t sec_len, key_len;
} name_ref_t;

static int cmp_names(const name_ref_t *a, const pl_opt_def_t *d)
{
    size_t dl = strlen(d->section);
    int c = memcmp(a->sec, d->section, PL_MIN(a->sec_len, dl));
    if (c || a->sec_len != dl)
        return c ? c : (a->sec_len < dl ? -1 : 1);
    dl = strlen(d->key);
    c = memcmp(a->key, d->key, PL_MIN(a->key_len, dl));
    if (c || a->key_len != dl)
        return c ? c : (a->key_len < dl ? -1 : 1);
    return 0;
}

static int cmp_sorted(const void *a, const void *b, void *ctx)
{
    const pl_cfg_index_t *idx = ctx;
    const pl_opt_def_t *da = idx->defs[*(const uint32_t *)a];
    const pl_opt_def_t *db = idx->defs[*(const uint32_t *)b];
    int c = strcmp(da->section, db->section);
    return c ? c : strcmp(da->key, db->key);
}

static int cmp_env(const void *a, const void *b, void *ctx)
{
    const pl_cfg_index_t *idx = ctx;
    return strcmp(idx->env_names[*(const uint32_t *)a], idx->env_names[*(const uint32_t *)b]);
}

ptrdiff_t pl_cfg_index_find(const pl_cfg_index_t *idx, const char *section,
                            size_t section_len, const char *key, size_t key_len)
{
    name_ref_t want = { section, key, section_len, key_len };
    size_t lo = 0, hi = idx->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_names(&want, idx->defs[idx->sorted[mid]]);
        if (c == 0)
            return idx->sorted[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* Schema names are lower-case so that PARLEY_<SECTION>_<KEY> maps back to one key. */
static bool schema_name_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

static char *env_name(const pl_opt_def_t *d)
{
    size_t n = 7 + strlen(d->section) + 1 + strlen(d->key) + 1;
    char *s = pl_xmalloc(n);
    snprintf(s, n, "PARLEY_%s_%s", d->section, d->key);
    for (char *p = s; *p; p++) {
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
        else if (*p == '-' || *p == '.')
            *p = '_';
    }
    return s;
}

static void check_def(const pl_opt_def_t *d)
{
    char why[PL_CFG_REASON];
    pl_cfg_val_t v;
    if (!schema_name_ok(d->section) || !schema_name_ok(d->key))
        pl_cfg_die("schema: [%s] %s: names must be non-empty [a-z0-9_-]",
                   d->section ? d->section : "(null)", d->key ? d->key : "(null)");
    if ((unsigned)d->type > PL_OPT_LIST)
        pl_cfg_die("schema: [%s] %s: unknown type %d", d->section, d->key, (int)d->type);
    if (d->type == PL_OPT_ENUM && (!d->choices || !*d->choices || strstr(d->choices, "||") ||
                                   d->choices[0] == '|' || d->choices[strlen(d->choices) - 1] == '|'))
        pl_cfg_die("schema: [%s] %s: enum needs choices \"a|b|c\"", d->section, d->key);
    if (d->min > d->max || ((d->type == PL_OPT_STRING || d->type == PL_OPT_LIST) && d->max < 0))
        pl_cfg_die("schema: [%s] %s: bad bounds", d->section, d->key);
    if (pl_cfg_parse_value(d, d->def ? d->def : "", &v, why, sizeof why) < 0)
        pl_cfg_die("schema: [%s] %s: invalid default: %s", d->section, d->key, why);
    pl_cfg_val_free(&v);
}

static void index_collect(pl_cfg_index_t *idx, pl_config_schema_t schema)
{
    size_t n = 0, k = 0;
    PL_ASSERT(schema != NULL);
    for (size_t t = 0; schema[t]; t++)
        n += schema[t]->n_defs;
    idx->n = n;
    idx->defs = pl_xcalloc(n + 1, sizeof *idx->defs);
    idx->tables = pl_xcalloc(n + 1, sizeof *idx->tables);
    idx->env_names = pl_xcalloc(n + 1, sizeof *idx->env_names);
    idx->sorted = pl_xcalloc(n + 1, sizeof *idx->sorted);
    for (size_t t = 0; schema[t]; t++) {
        for (size_t i = 0; i < schema[t]->n_defs; i++, k++) {
            idx->defs[k] = &schema[t]->defs[i];
            idx->tables[k] = schema[t];
            check_def(idx->defs[k]);
            idx->env_names[k] = env_name(idx->defs[k]);
            idx->sorted[k] = (uint32_t)k;
        }
    }
}

void pl_cfg_index_build(pl_cfg_index_t *idx, pl_config_schema_t schema)
{
    index_collect(idx, schema);
    if (idx->n == 0)
        return;
    uint32_t *by_env = pl_xmalloc(idx->n * sizeof *by_env);
    memcpy(by_env, idx->sorted, idx->n * sizeof *by_env);
    qsort_r(idx->sorted, idx->n, sizeof *idx->sorted, cmp_sorted, idx);
    qsort_r(by_env, idx->n, sizeof *by_env, cmp_env, idx);
    for (size_t i = 1; i < idx->n; i++) {
        const pl_opt_def_t *a = idx->defs[idx->sorted[i - 1]], *b = idx->defs[idx->sorted[i]];
        if (strcmp(a->section, b->section) == 0 && strcmp(a->key, b->key) == 0)
            pl_cfg_die("schema: [%s] %s is declared twice", a->section, a->key);
        a = idx->defs[by_env[i - 1]];
        b = idx->defs[by_env[i]];
        if (strcmp(idx->env_names[by_env[i - 1]], idx->env_names[by_env[i]]) == 0)
            pl_cfg_die("schema: [%s] %s and [%s] %s both map to %s", a->section, a->key,
                       b->section, b->key, idx->env_names[by_env[i]]);
    }
    free(by_env);
}

void pl_cfg_index_free(pl_cfg_index_t *idx)
{
    for (size_t i = 0; idx->env_names && i < idx->n; i++)
        free(idx->env_names[i]);
    free(idx->env_names);
    free(idx->defs);
    free(idx->tables);
    free(idx->sorted);
    memset(idx, 0, sizeof *idx);
}

/* ---- sources ---- */

static int read_file(const char *path, pl_buf_t *out, pl_config_error_t *err)
{
    int e = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto fail_errno;
    for (;;) {
        pl_buf_reserve(out, 65536);
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail_close;
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len > PL_CFG_MAX_FILE) {
            close(fd);
            snprintf(err->msg, sizeof err->msg, "%s: larger than %u MiB; not a config file",
                     path, PL_CFG_MAX_FILE >> 20);
            return PL_ECONFIG;
        }
    }
    close(fd);
    return 0;

fail_close:
    e = errno;
    close(fd);
    errno = e;
fail_errno:
    e = errno;
    snprintf(err->msg, sizeof err->msg, "%s: cannot read: %s", path, strerrordesc_np(e));
    return -e;
}

static void set_value(pl_config_t *cfg, size_t at, pl_cfg_val_t *nv, pl_cfg_origin_t origin)
{
    pl_cfg_val_free(&cfg->vals[at]);
    cfg->vals[at] = *nv;
    cfg->vals[at].origin = origin;
}

static int apply_env(pl_config_t *cfg, const char *const *env, pl_config_error_t *err)
{
    char why[PL_CFG_REASON];
    pl_cfg_val_t nv;
    for (; env && *env; env++) {
        const char *eq = strchr(*env, '=');
        if (!eq || strncmp(*env, "PARLEY_", 7) != 0)
            continue;
        size_t nlen = (size_t)(eq - *env);
        for (size_t i = 0; i < cfg->idx.n; i++) {
            const char *name = cfg->idx.env_names[i];
            if (strlen(name) != nlen || memcmp(name, *env, nlen) != 0)
                continue;
            if (pl_cfg_parse_value(cfg->idx.defs[i], eq + 1, &nv, why, sizeof why) < 0) {
                snprintf(err->msg, sizeof err->msg, "%s: %s", name, why);
                return PL_ECONFIG;
            }
            set_value(cfg, i, &nv, PL_CFG_ENV);
            break;
        }
    }
    return 0;
}

/* User text for a "--set NAME=VALUE:" prefix: escaped and cut like pl_cfg_quote, but
 * without the quotes, so it reads like the command line that was typed. */
static void show_bare(char *dst, size_t cap, const char *s, size_t len)
{
    char q[128];
    pl_cfg_quote(q, sizeof q, s, len);
    size_t n = strlen(q);
    snprintf(dst, cap, "%.*s", n >= 2 ? (int)(n - 2) : 0, q + 1);
}

static int override_unknown(const pl_config_t *cfg, const char *name, size_t len,
                            pl_config_error_t *err)
{
    char **full = pl_xcalloc(cfg->idx.n + 1, sizeof *full);
    char shown[128];
    for (size_t i = 0; i < cfg->idx.n; i++) {
        size_t n = strlen(cfg->idx.defs[i]->section) + strlen(cfg->idx.defs[i]->key) + 2;
        full[i] = pl_xmalloc(n);
        snprintf(full[i], n, "%s.%s", cfg->idx.defs[i]->section, cfg->idx.defs[i]->key);
    }
    const char *hint = pl_cfg_suggest(name, len, (const char *const *)full, cfg->idx.n);
    show_bare(shown, sizeof shown, name, len);
    if (hint)
        snprintf(err->msg, sizeof err->msg, "--set %s: unknown key (did you mean \"%s\"?)",
                 shown, hint);
    else
        snprintf(err->msg, sizeof err->msg, "--set %s: unknown key", shown);
    for (size_t i = 0; i < cfg->idx.n; i++)
        free(full[i]);
    free(full);
    return PL_ECONFIG;
}

static int apply_override(pl_config_t *cfg, const char *arg, pl_config_error_t *err)
{
    char why[PL_CFG_REASON], shown[128];
    const char *eq = strchr(arg, '=');
    size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
    const char *dot = memchr(arg, '.', nlen);
    pl_cfg_val_t nv;
    if (!eq || !dot) {
        pl_cfg_quote(shown, sizeof shown, arg, nlen);
        snprintf(err->msg, sizeof err->msg, "--set %s: expected section.key=value", shown);
        return PL_ECONFIG;
    }
    ptrdiff_t at = pl_cfg_index_find(&cfg->idx, arg, (size_t)(dot - arg), dot + 1,
                                     nlen - (size_t)(dot - arg) - 1);
    if (at < 0)
        return override_unknown(cfg, arg, nlen, err);
    const pl_opt_def_t *def = cfg->idx.defs[at];
    if (pl_cfg_parse_value(def, eq + 1, &nv, why, sizeof why) < 0) {
        if (def->flags & PL_OPT_SECRET)
            snprintf(shown, sizeof shown, "***");
        else
            show_bare(shown, sizeof shown, eq + 1, strlen(eq + 1));
        snprintf(err->msg, sizeof err->msg, "--set %s.%s=%s: %s", def->section, def->key,
                 shown, why);
        return PL_ECONFIG;
    }
    set_value(cfg, (size_t)at, &nv, PL_CFG_OVERRIDE);
    return 0;
}

static void load_defaults(pl_config_t *cfg)
{
    char why[PL_CFG_REASON];
    for (size_t i = 0; i < cfg->idx.n; i++) {
        const pl_opt_def_t *d = cfg->idx.defs[i];
        int rc = pl_cfg_parse_value(d, d->def ? d->def : "", &cfg->vals[i], why, sizeof why);
        PL_ASSERT(rc == 0);     /* pl_cfg_index_build checked every default */
        cfg->vals[i].origin = PL_CFG_DEFAULT;
    }
}

static void config_free(pl_config_t *cfg)
{
    for (size_t i = 0; i < cfg->idx.n; i++)
        pl_cfg_val_free(&cfg->vals[i]);
    free(cfg->vals);
    free(cfg->path);
    pl_cfg_index_free(&cfg->idx);
    free(cfg);
}

static int load_file(pl_config_t *cfg, const char *path, pl_config_error_t *err)
{
    pl_buf_t text;
    pl_buf_init(&text);
    int rc = read_file(path, &text, err);
    if (rc == 0)
        rc = pl_cfg_parse_ini(cfg, path, text.data ? text.data : "", text.len, err);
    pl_buf_deinit(&text);
    return rc;
}

int pl_config_load(pl_config_schema_t schema, const pl_config_source_t *src,
                   pl_config_t **out, pl_config_error_t *err)
{
    pl_config_t *cfg = pl_xcalloc(1, sizeof *cfg);
    pl_config_error_t ignored;
    int rc = 0;
    if (!err)
        err = &ignored;
    err->msg[0] = '\0';
    *out = NULL;
    pl_cfg_index_build(&cfg->idx, schema);
    cfg->vals = pl_xcalloc(cfg->idx.n + 1, sizeof *cfg->vals);
    load_defaults(cfg);
    if (src && src->path) {
        cfg->path = pl_xstrdup(src->path);
        if ((rc = load_file(cfg, src->path, err)) < 0)
            goto fail;
    }
    if (src && (rc = apply_env(cfg, src->environ, err)) < 0)
        goto fail;
    for (size_t i = 0; src && i < src->n_overrides; i++)
        if ((rc = apply_override(cfg, src->overrides[i], err)) < 0)
            goto fail;
    atomic_init(&cfg->refs, 1);
    *out = cfg;
    return 0;

fail:
    config_free(cfg);
    return rc;
}

pl_config_t *pl_config_ref(pl_config_t *cfg)
{
    PL_ASSERT(cfg != NULL);
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void pl_config_unref(pl_config_t *cfg)
{
    if (!cfg)
        return;
    /* acq_rel: the thread that frees sees every other holder's reads finished. */
    unsigned prev = atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel);
    PL_ASSERT(prev > 0);
    if (prev == 1)
        config_free(cfg);
}

/* ---- getters ---- */

static size_t lookup(const pl_config_t *cfg, const char *section, const char *key,
                     const char *caller)
{
    PL_ASSERT(cfg != NULL && section != NULL && key != NULL);
    ptrdiff_t at = pl_cfg_index_find(&cfg->idx, section, strlen(section), key, strlen(key));
    if (at < 0)
        pl_cfg_die("%s: [%s] %s is not in the schema", caller, section, key);
    return (size_t)at;
}

static const pl_cfg_val_t *get_typed(const pl_config_t *cfg, const char *section,
                                     const char *key, unsigned type_mask, const char *caller)
{
    size_t at = lookup(cfg, section, key, caller);
    const pl_opt_def_t *d = cfg->idx.defs[at];
    if (!(type_mask & (1u << d->type)))
        pl_cfg_die("%s: [%s] %s has type %s", caller, section, key, pl_cfg_type_name(d->type));
    return &cfg->vals[at];
}

bool pl_config_bool(const pl_config_t *cfg, const char *section, const char *key)
{
    return get_typed(cfg, section, key, 1u << PL_OPT_BOOL, __func__)->num != 0;
}

int64_t pl_config_int(const pl_config_t *cfg, const char *section, const char *key)
{
    unsigned mask = 1u << PL_OPT_INT | 1u << PL_OPT_DURATION | 1u << PL_OPT_SIZE;
    return get_typed(cfg, section, key, mask, __func__)->num;
}

const char *pl_config_str(const pl_config_t *cfg, const char *section, const char *key)
{
    unsigned mask = 1u << PL_OPT_STRING | 1u << PL_OPT_ENUM;
    return get_typed(cfg, section, key, mask, __func__)->str;
}

size_t pl_config_list(const pl_config_t *cfg, const char *section, const char *key,
                      const char *const **items)
{
    const pl_cfg_val_t *v = get_typed(cfg, section, key, 1u << PL_OPT_LIST, __func__);
    if (items)
        *items = (const char *const *)v->items;
    return v->n_items;
}

const char *pl_config_origin(const pl_config_t *cfg, const char *section, const char *key)
{
    static const char *const names[] = { "default", "file", "env", "override" };
    return names[cfg->vals[lookup(cfg, section, key, __func__)].origin];
}

const char *pl_config_path(const pl_config_t *cfg)
{
    return cfg->path;
}

/* ---- reload ---- */

int pl_config_reload_check(const pl_config_t *running, const pl_config_t *next,
                           pl_config_error_t *err)
{
    pl_config_error_t ignored;
    if (!err)
        err = &ignored;
    err->msg[0] = '\0';
    if (running->idx.n != next->idx.n)
        pl_cfg_die("reload check: the snapshots come from different schemas");
    for (size_t i = 0; i < running->idx.n; i++) {
        const pl_opt_def_t *d = running->idx.defs[i];
        size_t j = lookup(next, d->section, d->key, __func__);
        if (d->flags & PL_OPT_RELOADABLE)
            continue;
        if (!pl_cfg_val_equal(d, &running->vals[i], &next->vals[j])) {
            snprintf(err->msg, sizeof err->msg,
                     "[%s] %s: cannot change on reload; restart parleyd", d->section, d->key);
            return PL_ECONFIG;
        }
    }
    return 0;
}

bool pl_config_changed(const pl_config_t *a, const pl_config_t *b, const char *section,
                       const char *key)
{
    size_t i = lookup(a, section, key, __func__), j = lookup(b, section, key, __func__);
    if (a->idx.defs[i]->type != b->idx.defs[j]->type)
        return true;
    return !pl_cfg_val_equal(a->idx.defs[i], &a->vals[i], &b->vals[j]);
}
