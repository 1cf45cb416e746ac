/* config_parse.c: turns text into typed config values, and an INI file image into
 * values of a snapshot under construction.
 *
 * The INI parser is total: any byte sequence (NUL bytes, huge lines, a missing final
 * newline, CRLF, a UTF-8 BOM) yields either values or one error line; it never reads
 * outside the buffer and never asserts. Values are taken literally after trimming
 * spaces and tabs: a trailing "# text" is part of the value, not a comment (quote the
 * value or put the comment on its own line). It does not read files or environment
 * variables (config.c does) and does not log.
 *
 * Threading: pure functions over caller-owned data; control plane only. */
#include "core/config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SHOWN 128   /* room for a quoted, escaped, truncated echo of user text */

/* ---- small text helpers ---- */

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static void trim(const char **s, size_t *len)
{
    while (*len && is_blank(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_blank((*s)[*len - 1]))
        (*len)--;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

static bool valid_name(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(s[i]))
            return false;
    return true;
}

/* Control bytes would break the one-line error and render formats (and a newline from
 * the environment would inject a line into rendered INI), so text values refuse them. */
static bool has_control(const char *s)
{
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return true;
    return false;
}

void pl_cfg_quote(char *dst, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, shown = PL_MIN(len, 48);
    if (cap < 16) {
        if (cap)
            dst[0] = '\0';
        return;
    }
    dst[o++] = '"';
    for (size_t i = 0; i < shown && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    if (shown < len && o + 4 < cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o++] = '"';
    dst[o] = '\0';
}

/* Optimal-string-alignment distance, bounded: returns 3 for anything farther than 2. */
static unsigned edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    enum { MAXL = 64 };
    unsigned rows[3][MAXL + 1];
    if (la > MAXL || lb > MAXL || (la > lb ? la - lb : lb - la) > 2)
        return 3;
    unsigned *pp = rows[0], *p = rows[1], *c = rows[2];
    for (size_t j = 0; j <= lb; j++)
        p[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        c[0] = (unsigned)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned cost = a[i - 1] != b[j - 1];
            unsigned v = PL_MIN(p[j] + 1, c[j - 1] + 1);
            v = PL_MIN(v, p[j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                v = PL_MIN(v, pp[j - 2] + 1);
            c[j] = v;
        }
        unsigned *t = pp;
        pp = p;
        p = c;
        c = t;
    }
    return PL_MIN(p[lb], 3u);
}

const char *pl_cfg_suggest(const char *word, size_t len, const char *const *cands, size_t n)
{
    const char *best = NULL;
    unsigned best_d = 3;
    for (size_t i = 0; i < n; i++) {
        size_t cl = strlen(cands[i]);
        unsigned d = edit_distance(word, len, cands[i], cl);
        /* A two-letter name two edits away is just a different word. */
        if (d < best_d && d <= cl / 2) {
            best = cands[i];
            best_d = d;
        }
    }
    return best;
}

const char *pl_cfg_type_name(pl_opt_type_t t)
{
    static const char *const names[] = { "bool", "int", "duration", "size",
                                         "string", "enum", "list" };
    return (unsigned)t < PL_ARRAY_LEN(names) ? names[t] : "?";
}

typedef struct unit { const char *name; int64_t mult; } unit_t;

static const unit_t duration_units[] = {
    { "d", 86400000 }, { "h", 3600000 }, { "m", 60000 }, { "s", 1000 }, { "ms", 1 },
};
static const unit_t size_units[] = {
    { "GiB", 1 << 30 }, { "MiB", 1 << 20 }, { "KiB", 1 << 10 }, { "B", 1 },
};

void pl_cfg_format_num(pl_opt_type_t t, int64_t v, char *dst, size_t cap)
{
    const unit_t *u = t == PL_OPT_DURATION ? duration_units : size_units;
    size_t n = t == PL_OPT_DURATION ? PL_ARRAY_LEN(duration_units) : PL_ARRAY_LEN(size_units);
    if ((t == PL_OPT_DURATION || t == PL_OPT_SIZE) && v != 0) {
        for (size_t i = 0; i < n; i++) {
            if (v % u[i].mult == 0) {
                snprintf(dst, cap, "%lld%s", (long long)(v / u[i].mult), u[i].name);
                return;
            }
        }
    }
    snprintf(dst, cap, "%lld%s", (long long)v,
             t == PL_OPT_DURATION ? "s" : t == PL_OPT_SIZE ? "B" : "");
}

/* ---- typed values ---- */

void pl_cfg_val_free(pl_cfg_val_t *v)
{
    free(v->str);
    if (v->items)
        for (size_t i = 0; i < v->n_items; i++)
            free(v->items[i]);
    free(v->items);
    v->str = NULL;
    v->items = NULL;
    v->n_items = 0;
}

bool pl_cfg_val_equal(const pl_opt_def_t *def, const pl_cfg_val_t *a, const pl_cfg_val_t *b)
{
    switch (def->type) {
    case PL_OPT_STRING:
    case PL_OPT_ENUM:
        return strcmp(a->str, b->str) == 0;
    case PL_OPT_LIST:
        if (a->n_items != b->n_items)
            return false;
        for (size_t i = 0; i < a->n_items; i++)
            if (strcmp(a->items[i], b->items[i]) != 0)
                return false;
        return true;
    default:
        return a->num == b->num;
    }
}

/* Decimal digits with an optional sign (when allow_sign). 0, -1 not a number,
 * -2 does not fit in int64. *end gets the first byte after the digits. */
static int parse_i64(const char *s, bool allow_sign, int64_t *out, const char **end)
{
    bool neg = false;
    if (allow_sign && (*s == '-' || *s == '+'))
        neg = *s++ == '-';
    if (*s < '0' || *s > '9')
        return -1;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    int rc = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (lim - d) / 10)
            rc = -2;
        else
            v = v * 10 + d;
    }
    *end = s;
    if (rc == 0)
        *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return rc;
}

static int reason(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reason(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    return PL_ECONFIG;
}

static int check_bounds(const pl_opt_def_t *def, int64_t v, char *why, size_t cap)
{
    char val[40], lim[40];
    if (def->min == 0 && def->max == 0)
        return 0;   /* (0, 0): unbounded */
    if (v >= def->min && v <= def->max)
        return 0;
    bool secret = def->flags & PL_OPT_SECRET;
    pl_cfg_format_num(def->type, v, val, sizeof val);
    pl_cfg_format_num(def->type, v < def->min ? def->min : def->max, lim, sizeof lim);
    return reason(why, cap, "%s is %s the %s %s", secret ? "the value" : val,
                  v < def->min ? "below" : "above", v < def->min ? "minimum" : "maximum", lim);
}

static int parse_bool(const char *text, int64_t *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < PL_ARRAY_LEN(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return (void)(*out = 1), 0;
        if (strcasecmp(text, no[i]) == 0)
            return (void)(*out = 0), 0;
    }
    return -1;
}

/* DURATION and SIZE: unsigned integer, optional blanks, optional unit. */
static int parse_scaled(const pl_opt_def_t *def, const char *text, int64_t *out,
                        const char *shown, char *why, size_t cap)
{
    bool dur = def->type == PL_OPT_DURATION;
    const unit_t *units = dur ? duration_units : size_units;
    size_t n = dur ? PL_ARRAY_LEN(duration_units) : PL_ARRAY_LEN(size_units);
    const char *what = dur ? "a duration (use an integer with ms, s, m, h or d)"
                           : "a size (use an integer with B, KiB, MiB or GiB)";
    int64_t v = 0, mult = 0;
    const char *rest = text;
    int rc = parse_i64(text, false, &v, &rest);
    if (rc == -1)
        return reason(why, cap, "%s is not %s", shown, what);
    while (is_blank(*rest))
        rest++;
    if (*rest == '\0')
        mult = dur ? 1000 : 1;   /* bare number: seconds / bytes */
    for (size_t i = 0; i < n && !mult; i++)
        if (strcmp(rest, units[i].name) == 0)
            mult = units[i].mult;
    if (!mult)
        return reason(why, cap, "%s is not %s", shown, what);
    if (rc == -2 || v > INT64_MAX / mult)
        return reason(why, cap, "%s is too large", shown);
    *out = v * mult;
    return 0;
}

static int parse_enum(const pl_opt_def_t *def, const char *text, const char *shown,
                      char *why, size_t cap)
{
    const char *cands[64];
    char buf[512];
    size_t n = 0, tl = strlen(text);
    snprintf(buf, sizeof buf, "%s", def->choices);
    for (char *save = NULL, *c = strtok_r(buf, "|", &save); c && n < PL_ARRAY_LEN(cands);
         c = strtok_r(NULL, "|", &save)) {
        if (strcmp(c, text) == 0)
            return 0;
        cands[n++] = c;
    }
    char list[400] = "";
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", cands[i]);
    const char *hint = (def->flags & PL_OPT_SECRET) ? NULL : pl_cfg_suggest(text, tl, cands, n);
    if (hint)
        return reason(why, cap, "%s is not one of %s (did you mean \"%s\"?)", shown, list, hint);
    return reason(why, cap, "%s is not one of %s", shown, list);
}

static int parse_list(const pl_opt_def_t *def, const char *text, pl_cfg_val_t *out,
                      char *why, size_t cap)
{
    size_t n = 0, cap_items = 4;
    char **items = pl_xmalloc(cap_items * sizeof *items);
    for (const char *p = text;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p;
        trim(&s, &len);
        if (len) {
            if (n + 1 >= cap_items)
                items = pl_xrealloc(items, (cap_items *= 2) * sizeof *items);
            items[n++] = pl_xstrndup(s, len);
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    items[n] = NULL;
    out->items = items;
    out->n_items = n;
    if (def->max > 0 && (int64_t)n > def->max) {
        pl_cfg_val_free(out);
        return reason(why, cap, "%zu items, more than the maximum %lld", n, (long long)def->max);
    }
    return 0;
}

int pl_cfg_parse_value(const pl_opt_def_t *def, const char *text, pl_cfg_val_t *out,
                       char *why, size_t cap)
{
    char shown[SHOWN];
    int rc = 0;
    const char *end = NULL;
    memset(out, 0, sizeof *out);
    if (def->flags & PL_OPT_SECRET)
        snprintf(shown, sizeof shown, "the value");
    else
        pl_cfg_quote(shown, sizeof shown, text, strlen(text));
    if (def->type >= PL_OPT_STRING && has_control(text))
        return reason(why, cap, "the value contains a control character");
    switch (def->type) {
    case PL_OPT_BOOL:
        if (parse_bool(text, &out->num) < 0)
            return reason(why, cap, "%s is not a boolean (use true/false, yes/no, on/off or 1/0)",
                          shown);
        return 0;
    case PL_OPT_INT:
        rc = parse_i64(text, true, &out->num, &end);
        if (rc == -1 || *end != '\0')
            return reason(why, cap, "%s is not an integer", shown);
        if (rc == -2)
            return reason(why, cap, "%s does not fit in 64 bits", shown);
        return check_bounds(def, out->num, why, cap);
    case PL_OPT_DURATION:
    case PL_OPT_SIZE:
        if (parse_scaled(def, text, &out->num, shown, why, cap) < 0)
            return PL_ECONFIG;
        return check_bounds(def, out->num, why, cap);
    case PL_OPT_STRING:
        if (def->max > 0 && strlen(text) > (size_t)def->max)
            return reason(why, cap, "the value is %zu bytes, longer than the maximum %lld",
                          strlen(text), (long long)def->max);
        out->str = pl_xstrdup(text);
        return 0;
    case PL_OPT_ENUM:
        if (parse_enum(def, text, shown, why, cap) < 0)
            return PL_ECONFIG;
        out->str = pl_xstrdup(text);
        return 0;
    case PL_OPT_LIST:
        return parse_list(def, text, out, why, cap);
    }
    return reason(why, cap, "unknown option type %d", (int)def->type);
}

/* ---- INI ---- */

typedef struct ini {
    pl_config_t *cfg;
    const char *name;
    pl_config_error_t *err;
    const char *section;        /* the schema's spelling, NUL-terminated; NULL before [..] */
    uint32_t line;
} ini_t;

static int ini_fail(ini_t *st, const pl_opt_def_t *def, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ini_fail(ini_t *st, const pl_opt_def_t *def, const char *fmt, ...)
{
    char why[PL_CFG_REASON];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (def)
        snprintf(st->err->msg, sizeof st->err->msg, "%s:%u: [%s] %s: %s", st->name,
                 (unsigned)st->line, def->section, def->key, why);
    else
        snprintf(st->err->msg, sizeof st->err->msg, "%s:%u: %s", st->name,
                 (unsigned)st->line, why);
    return PL_ECONFIG;
}

static int ini_section(ini_t *st, const char *s, size_t len)
{
    const pl_cfg_index_t *idx = &st->cfg->idx;
    if (s[len - 1] != ']')
        return ini_fail(st, NULL, "expected \"]\" at the end of the section header");
    const char *name = s + 1;
    size_t nlen = len - 2;
    trim(&name, &nlen);
    if (!valid_name(name, nlen)) {
        char shown[SHOWN];
        pl_cfg_quote(shown, sizeof shown, name, nlen);
        return ini_fail(st, NULL, "invalid section name %s", shown);
    }
    for (size_t i = 0; i < idx->n; i++) {
        if (strlen(idx->defs[i]->section) == nlen && memcmp(idx->defs[i]->section, name, nlen) == 0) {
            st->section = idx->defs[i]->section;
            return 0;
        }
    }
    const char **cands = pl_xmalloc((idx->n + 1) * sizeof *cands);
    for (size_t i = 0; i < idx->n; i++)
        cands[i] = idx->defs[i]->section;
    const char *hint = pl_cfg_suggest(name, nlen, cands, idx->n);
    int n = (int)PL_MIN(nlen, 64);
    int rc = hint ? ini_fail(st, NULL, "[%.*s]: unknown section (did you mean \"%s\"?)", n, name, hint)
                  : ini_fail(st, NULL, "[%.*s]: unknown section", n, name);
    free(cands);
    return rc;
}

static int ini_unknown_key(ini_t *st, const char *key, size_t klen)
{
    const pl_cfg_index_t *idx = &st->cfg->idx;
    const char **cands = pl_xmalloc((idx->n + 1) * sizeof *cands);
    size_t n = 0;
    for (size_t i = 0; i < idx->n; i++)
        if (strcmp(idx->defs[i]->section, st->section) == 0)
            cands[n++] = idx->defs[i]->key;
    const char *hint = pl_cfg_suggest(key, klen, cands, n);
    int kl = (int)PL_MIN(klen, 64);
    int rc = hint ? ini_fail(st, NULL, "[%s] %.*s: unknown key (did you mean \"%s\"?)",
                             st->section, kl, key, hint)
                  : ini_fail(st, NULL, "[%s] %.*s: unknown key", st->section, kl, key);
    free(cands);
    return rc;
}

/* A double-quoted value: \" and \\ are the only escapes; only blanks may follow. */
static int ini_unquote(ini_t *st, const pl_opt_def_t *def, const char *v, size_t len,
                       char **out)
{
    char *buf = pl_xmalloc(len + 1);
    size_t o = 0, i = 1;
    for (; i < len && v[i] != '"'; i++) {
        if (v[i] != '\\') {
            buf[o++] = v[i];
            continue;
        }
        if (i + 1 < len && (v[i + 1] == '"' || v[i + 1] == '\\')) {
            buf[o++] = v[++i];
            continue;
        }
        free(buf);
        if (i + 1 >= len)
            return ini_fail(st, def, "unterminated quoted value");
        char esc[SHOWN];
        pl_cfg_quote(esc, sizeof esc, v + i, 2);
        return ini_fail(st, def, "invalid escape %s in quoted value (only \\\" and \\\\ are allowed)",
                        esc);
    }
    if (i >= len) {
        free(buf);
        return ini_fail(st, def, "unterminated quoted value");
    }
    for (i++; i < len; i++) {
        if (!is_blank(v[i])) {
            free(buf);
            return ini_fail(st, def, "unexpected text after the closing quote");
        }
    }
    buf[o] = '\0';
    *out = buf;
    return 0;
}

static int ini_assign(ini_t *st, ptrdiff_t at, const char *v, size_t vlen)
{
    const pl_opt_def_t *def = st->cfg->idx.defs[at];
    pl_cfg_val_t *slot = &st->cfg->vals[at], nv;
    char *text = NULL, why[PL_CFG_REASON];
    if (slot->origin == PL_CFG_FILE)
        return ini_fail(st, def, "duplicate key (first set on line %u)", (unsigned)slot->line);
    if (vlen && v[0] == '"') {
        if (ini_unquote(st, def, v, vlen, &text) < 0)
            return PL_ECONFIG;
    } else {
        text = pl_xstrndup(v, vlen);
    }
    int rc = pl_cfg_parse_value(def, text, &nv, why, sizeof why);
    free(text);
    if (rc < 0)
        return ini_fail(st, def, "%s", why);
    pl_cfg_val_free(slot);
    *slot = nv;
    slot->origin = PL_CFG_FILE;
    slot->line = st->line;
    return 0;
}

static int ini_keyval(ini_t *st, const char *s, size_t len)
{
    const char *eq = memchr(s, '=', len);
    if (!eq)
        return ini_fail(st, NULL, "expected \"key = value\", \"[section]\" or a comment");
    const char *key = s, *v = eq + 1;
    size_t klen = (size_t)(eq - s), vlen = len - klen - 1;
    char shown[SHOWN];
    trim(&key, &klen);
    trim(&v, &vlen);
    if (klen == 0)
        return ini_fail(st, NULL, "missing key before \"=\"");
    pl_cfg_quote(shown, sizeof shown, key, klen);
    if (!valid_name(key, klen))
        return ini_fail(st, NULL, "invalid key name %s", shown);
    if (!st->section)
        return ini_fail(st, NULL, "key %s is outside any [section]", shown);
    ptrdiff_t at = pl_cfg_index_find(&st->cfg->idx, st->section, strlen(st->section), key, klen);
    if (at < 0)
        return ini_unknown_key(st, key, klen);
    return ini_assign(st, at, v, vlen);
}

static int ini_line(ini_t *st, const char *s, size_t len)
{
    trim(&s, &len);
    if (len == 0 || s[0] == '#' || s[0] == ';')
        return 0;
    if (s[0] == '[')
        return ini_section(st, s, len);
    return ini_keyval(st, s, len);
}

int pl_cfg_parse_ini(pl_config_t *cfg, const char *name, const char *data, size_t len,
                     pl_config_error_t *err)
{
    ini_t st = { .cfg = cfg, .name = name, .err = err };
    const char *p = data, *end = data + len;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;   /* UTF-8 byte order mark, as Windows editors write it */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        st.line++;
        if (n && p[n - 1] == '\r')
            n--;
        if (n > PL_CFG_MAX_LINE)
            return ini_fail(&st, NULL, "line is longer than %u bytes", PL_CFG_MAX_LINE);
        if (memchr(p, '\0', n))
            return ini_fail(&st, NULL, "line contains a NUL byte");
        int rc = ini_line(&st, p, n);
        if (rc < 0)
            return rc;
        p = nl ? nl + 1 : end;
    }
    return 0;
}
