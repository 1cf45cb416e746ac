/* config_render.c: prints a snapshot back as INI (for --check-config) and a schema as
 * Markdown tables (for docs/OPERATIONS.md).
 *
 * The INI output re-parses to the same values (secrets aside, which print as "***"):
 * values that would not survive trimming are quoted, and the origin of a value goes on
 * its own comment line because the parser keeps a trailing "# ..." as part of a value.
 * Output is deterministic: schema order, sections grouped by first appearance.
 * It does not write files. Threading: reads an immutable snapshot; any thread. */
#include "core/config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Distinct sections in order of first appearance, each with the table that documents
 * it: the first table whose first key is in that section (NULL when none is). */
typedef struct sections {
    size_t n;
    const char **names;
    const pl_opt_table_t **tables;
} sections_t;

static void sections_collect(const pl_cfg_index_t *idx, sections_t *s)
{
    s->n = 0;
    s->names = pl_xcalloc(idx->n + 1, sizeof *s->names);
    s->tables = pl_xcalloc(idx->n + 1, sizeof *s->tables);
    for (size_t i = 0; i < idx->n; i++) {
        size_t j = 0;
        while (j < s->n && strcmp(s->names[j], idx->defs[i]->section) != 0)
            j++;
        if (j == s->n)
            s->names[s->n++] = idx->defs[i]->section;
        const pl_opt_table_t *t = idx->tables[i];
        if (!s->tables[j] && t->n_defs && &t->defs[0] == idx->defs[i])
            s->tables[j] = t;
    }
}

static void sections_free(sections_t *s)
{
    free(s->names);
    free(s->tables);
}

/* The value in INI syntax, unquoted. */
static void value_text(const pl_opt_def_t *d, const pl_cfg_val_t *v, pl_buf_t *out)
{
    char num[48];
    switch (d->type) {
    case PL_OPT_BOOL:
        pl_buf_puts(out, v->num ? "true" : "false");
        break;
    case PL_OPT_INT:
    case PL_OPT_DURATION:
    case PL_OPT_SIZE:
        pl_cfg_format_num(d->type, v->num, num, sizeof num);
        pl_buf_puts(out, num);
        break;
    case PL_OPT_STRING:
    case PL_OPT_ENUM:
        pl_buf_puts(out, v->str);
        break;
    case PL_OPT_LIST:
        for (size_t i = 0; i < v->n_items; i++)
            pl_buf_printf(out, "%s%s", i ? ", " : "", v->items[i]);
        break;
    }
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* Appends text as an INI value: bare when it survives the parser's trimming and does
 * not start with a quote; otherwise double-quoted with \" and \\ escapes. */
static void ini_value(pl_buf_t *out, const char *text, size_t len)
{
    bool quote = len == 0 || is_blank(text[0]) || is_blank(text[len - 1]) || text[0] == '"';
    if (!quote) {
        pl_buf_append(out, text, len);
        return;
    }
    pl_buf_puts(out, "\"");
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"' || text[i] == '\\')
            pl_buf_puts(out, "\\");
        pl_buf_append(out, &text[i], 1);
    }
    pl_buf_puts(out, "\"");
}

/* "int 1..64", "duration 1s..1h", "enum udp|tcp", "string max 255 bytes", "list". */
static void type_text(const pl_opt_def_t *d, pl_buf_t *out, const char *range_sep)
{
    char lo[48], hi[48];
    pl_buf_puts(out, pl_cfg_type_name(d->type));
    switch (d->type) {
    case PL_OPT_INT:
    case PL_OPT_DURATION:
    case PL_OPT_SIZE:
        if (d->min == 0 && d->max == 0)
            break;
        pl_cfg_format_num(d->type, d->min, lo, sizeof lo);
        pl_cfg_format_num(d->type, d->max, hi, sizeof hi);
        if (d->max == INT64_MAX)
            pl_buf_printf(out, "%smin %s", range_sep, lo);
        else if (d->min == INT64_MIN)
            pl_buf_printf(out, "%smax %s", range_sep, hi);
        else
            pl_buf_printf(out, "%s%s..%s", range_sep, lo, hi);
        break;
    case PL_OPT_STRING:
    case PL_OPT_LIST:
        if (d->max > 0)
            pl_buf_printf(out, "%smax %lld %s", range_sep, (long long)d->max,
                          d->type == PL_OPT_STRING ? "bytes" : "items");
        break;
    case PL_OPT_ENUM:
        pl_buf_printf(out, "%s%s", range_sep, d->choices);
        break;
    case PL_OPT_BOOL:
        break;
    }
}

static void render_key(const pl_config_t *cfg, size_t i, pl_buf_t *out, pl_buf_t *tmp)
{
    const pl_opt_def_t *d = cfg->idx.defs[i];
    const pl_cfg_val_t *v = &cfg->vals[i];
    bool secret = d->flags & PL_OPT_SECRET;
    const char *def = d->def ? d->def : "";
    pl_buf_printf(out, "# %s (", d->doc ? d->doc : "");
    type_text(d, out, " ");
    /* Quoted when it has blanks or commas, so it cannot blur into the flags after it. */
    bool q = !*def || strpbrk(def, " \t,") != NULL;
    pl_buf_printf(out, ", default %s%s%s%s%s)\n", q ? "\"" : "", secret && *def ? "***" : def,
                  q ? "\"" : "", d->flags & PL_OPT_RELOADABLE ? ", reloadable" : "",
                  secret ? ", secret" : "");
    if (v->origin == PL_CFG_FILE)
        pl_buf_printf(out, "# from file, line %u\n", (unsigned)v->line);
    else if (v->origin == PL_CFG_ENV)
        pl_buf_printf(out, "# from env, %s\n", cfg->idx.env_names[i]);
    else if (v->origin == PL_CFG_OVERRIDE)
        pl_buf_puts(out, "# from override (--set)\n");
    pl_buf_reset(tmp);
    value_text(d, v, tmp);
    pl_buf_printf(out, "%s = ", d->key);
    if (secret && tmp->len)
        pl_buf_puts(out, "***");
    else
        ini_value(out, tmp->data ? tmp->data : "", tmp->len);
    pl_buf_puts(out, "\n\n");
}

void pl_config_render(const pl_config_t *cfg, pl_buf_t *out)
{
    sections_t secs;
    pl_buf_t tmp;
    pl_buf_init(&tmp);
    sections_collect(&cfg->idx, &secs);
    pl_buf_printf(out, "# parley effective configuration (file: %s)\n\n",
                  cfg->path ? cfg->path : "none");
    for (size_t s = 0; s < secs.n; s++) {
        pl_buf_printf(out, "[%s]\n", secs.names[s]);
        if (secs.tables[s] && secs.tables[s]->section_doc)
            pl_buf_printf(out, "# %s\n", secs.tables[s]->section_doc);
        pl_buf_puts(out, "\n");
        for (size_t i = 0; i < cfg->idx.n; i++)
            if (strcmp(cfg->idx.defs[i]->section, secs.names[s]) == 0)
                render_key(cfg, i, out, &tmp);
    }
    pl_buf_deinit(&tmp);
    sections_free(&secs);
}

/* ---- Markdown ---- */

/* Table-cell text: a pipe would end the cell, so it is escaped (GFM allows \| even in
 * code spans). */
static void md_cell(pl_buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            pl_buf_puts(out, "\\");
        pl_buf_append(out, s, 1);
    }
}

static void md_code(pl_buf_t *out, const char *s)
{
    const char *fence = strchr(s, '`') ? "`` " : "`";
    pl_buf_puts(out, fence);
    md_cell(out, *s ? s : "\"\"");
    pl_buf_puts(out, strchr(s, '`') ? " ``" : "`");
}

static void md_row(const pl_opt_def_t *d, pl_buf_t *out, pl_buf_t *tmp)
{
    pl_buf_puts(out, "| ");
    md_code(out, d->key);
    pl_buf_printf(out, " | %s%s | ", pl_cfg_type_name(d->type),
                  d->flags & PL_OPT_SECRET ? " (secret)" : "");
    md_code(out, d->def ? d->def : "");
    pl_buf_puts(out, " | ");
    if (d->type == PL_OPT_ENUM) {
        pl_buf_reset(tmp);
        pl_buf_puts(tmp, d->choices);
        size_t n = 0;
        for (char *save = NULL, *c = strtok_r(tmp->data, "|", &save); c;
             c = strtok_r(NULL, "|", &save)) {
            pl_buf_puts(out, n++ ? ", " : "");
            md_code(out, c);
        }
    } else {
        pl_buf_reset(tmp);
        type_text(d, tmp, "\x01");
        const char *range = strchr(tmp->data, '\x01');
        md_cell(out, range ? range + 1 : "");
    }
    pl_buf_printf(out, " | %s | ", d->flags & PL_OPT_RELOADABLE ? "yes" : "no");
    md_cell(out, d->doc ? d->doc : "");
    pl_buf_puts(out, " |\n");
}

void pl_config_render_docs(pl_config_schema_t schema, pl_buf_t *out)
{
    pl_cfg_index_t idx;
    sections_t secs;
    pl_buf_t tmp;
    pl_buf_init(&tmp);
    pl_cfg_index_build(&idx, schema);
    sections_collect(&idx, &secs);
    for (size_t s = 0; s < secs.n; s++) {
        pl_buf_printf(out, "### [%s]\n\n", secs.names[s]);
        if (secs.tables[s] && secs.tables[s]->section_doc)
            pl_buf_printf(out, "%s\n\n", secs.tables[s]->section_doc);
        pl_buf_puts(out, "| key | type | default | range / choices | reload | description |\n"
                         "|---|---|---|---|---|---|\n");
        for (size_t i = 0; i < idx.n; i++)
            if (strcmp(idx.defs[i]->section, secs.names[s]) == 0)
                md_row(idx.defs[i], out, &tmp);
        pl_buf_puts(out, "\n");
    }
    pl_buf_deinit(&tmp);
    sections_free(&secs);
    pl_cfg_index_free(&idx);
}
