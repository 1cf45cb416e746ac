/* metrics.c: the metrics registry of pl_metrics.h: series descriptors, per-thread shards
 * of 64-bit slots, and rendering as Prometheus text exposition 0.0.4 and as JSON.
 *
 * Slot layout: counter and gauge 1 slot; histogram n_bounds+1 per-shard bucket counts
 * (not cumulative) then 1 slot holding the bit pattern of the shard's double sum. A
 * histogram's count is the sum of its buckets rather than a slot of its own, so a render
 * racing with writers still shows +Inf bucket == count.
 *
 * Not here: process metrics (metrics_process.c), HTTP serving (app/admin), metric
 * removal (series live as long as the registry).
 *
 * Threading: registration and shard creation take reg->mu (registrants only). They
 * publish a series or a shard by storing its pointer into a fixed array and then
 * release-storing the count; readers acquire the counts and never lock, so rendering
 * runs gauge callbacks with no lock held. Slots: see pl_metrics.h. */
#include "core/pl_metrics.h"

#include <math.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum pl_mtype {
    PL_MT_COUNTER,
    PL_MT_GAUGE,
    PL_MT_HISTOGRAM,
    PL_MT_COUNTER_FN,
    PL_MT_GAUGE_FN,
} pl_mtype_t;

/* What a caller registers; borrowed strings. */
typedef struct pl_series_spec {
    const char *name;
    const char *help;
    const char *labels;
    pl_mtype_t type;
    uint32_t n_slots;
    const double *bounds;
    size_t n_bounds;
    pl_metric_gauge_fn fn;
    void *arg;
} pl_series_spec_t;

/* A published series: immutable once its pointer is visible to readers. */
typedef struct pl_series {
    char *name;
    char *help;                 /* "" when none */
    char *labels;               /* text between the braces; "" when none */
    pl_mtype_t type;
    uint32_t first;             /* first slot (= the id); 0 for callbacks */
    uint32_t n_slots;
    double *bounds;             /* histograms */
    size_t n_bounds;
    pl_metric_gauge_fn fn;      /* *_FN types */
    void *arg;
    size_t family;              /* index of the first series with this name */
} pl_series_t;

struct pl_metrics {
    pthread_mutex_t mu;         /* serialises registrants; readers never take it */
    uint32_t next_slot;
    _Atomic size_t n_series;
    _Atomic size_t n_shards;
    pl_series_t *series[PL_METRICS_MAX_SERIES];
    pl_metrics_shard_t *shards[PL_METRICS_MAX_SHARDS];
    pl_series_t *slot_series[PL_METRICS_MAX_SLOTS];  /* id -> series, for observe */
};

__attribute__((format(printf, 1, 2))) static _Noreturn void reg_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("parleyd: metrics registration bug: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

/* ---- validation ------------------------------------------------------------------- */

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool pl_metrics_name_valid(const char *name)
{
    if (!name || !(is_alpha_(name[0]) || name[0] == ':'))
        return false;
    for (const char *p = name + 1; *p; p++)
        if (!is_alpha_(*p) && !is_digit(*p) && *p != ':')
            return false;
    return true;
}

/* Parses one `k="v"` at p. Returns the end or NULL; sets *name and *name_len. */
static const char *label_pair(const char *p, const char **name, size_t *name_len)
{
    const char *k = p;
    if (!is_alpha_(*p))
        return NULL;
    while (is_alpha_(*p) || is_digit(*p))
        p++;
    *name = k;
    *name_len = (size_t)(p - k);
    /* Prometheus data model: label names starting with __ are reserved. */
    if (*name_len >= 2 && k[0] == '_' && k[1] == '_')
        return NULL;
    if (p[0] != '=' || p[1] != '"')
        return NULL;
    for (p += 2; *p != '"'; p++) {
        if (*p == '\0' || *p == '\n')
            return NULL;
        /* Exposition format: only \\, \" and \n are escapes in a label value. */
        if (*p == '\\' && !(p[1] == '\\' || p[1] == '"' || p[1] == 'n'))
            return NULL;
        if (*p == '\\')
            p++;
    }
    return p + 1;
}

static bool label_dup(const char *labels, const char *end, const char *k, size_t n)
{
    const char *name;
    size_t len;
    const char *p = labels;
    while (p < end) {
        p = label_pair(p, &name, &len);
        if (!p)
            return false;
        if (len == n && memcmp(name, k, n) == 0)
            return true;
        if (*p == ',')
            p++;
    }
    return false;
}

bool pl_metrics_labels_valid(const char *labels)
{
    if (!labels || !*labels)
        return true;
    const char *p = labels, *name;
    size_t len;
    for (;;) {
        const char *start = p;
        p = label_pair(p, &name, &len);
        if (!p || label_dup(labels, start, name, len))
            return false;
        if (*p == '\0')
            return true;
        if (*p++ != ',')
            return false;
    }
}

static bool has_label(const char *labels, const char *k)
{
    const char *end = labels + strlen(labels);
    return label_dup(labels, end, k, strlen(k));
}

/* ---- registry --------------------------------------------------------------------- */

pl_metrics_t *pl_metrics_create(void)
{
    pl_metrics_t *reg = pl_xcalloc(1, sizeof *reg);
    pthread_mutex_init(&reg->mu, NULL);
    reg->next_slot = 1;         /* slot 0 is scratch: id 0 is never handed out */
    atomic_init(&reg->n_series, 0);
    atomic_init(&reg->n_shards, 0);
    return reg;
}

void pl_metrics_destroy(pl_metrics_t *reg)
{
    if (!reg)
        return;
    size_t n = atomic_load(&reg->n_series);
    for (size_t i = 0; i < n; i++) {
        pl_series_t *s = reg->series[i];
        free(s->name);
        free(s->help);
        free(s->labels);
        free(s->bounds);
        free(s);
    }
    n = atomic_load(&reg->n_shards);
    for (size_t i = 0; i < n; i++)
        free(reg->shards[i]);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

static const char *type_name(pl_mtype_t t)
{
    switch (t) {
    case PL_MT_COUNTER:
    case PL_MT_COUNTER_FN: return "counter";
    case PL_MT_GAUGE:
    case PL_MT_GAUGE_FN: return "gauge";
    case PL_MT_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

/* Finds the family of t->name among published series (caller holds mu); checks that
 * the type agrees and the label set is new. Returns the family index or n (new). */
static size_t find_family(const pl_metrics_t *reg, size_t n, const pl_series_spec_t *t)
{
    size_t family = n;
    for (size_t i = 0; i < n; i++) {
        const pl_series_t *s = reg->series[i];
        if (strcmp(s->name, t->name) != 0)
            continue;
        if (strcmp(type_name(s->type), type_name(t->type)) != 0)
            reg_fail("%s registered as %s and %s", t->name, type_name(s->type),
                     type_name(t->type));
        if (strcmp(s->labels, t->labels) == 0)
            reg_fail("%s{%s} registered twice", t->name, t->labels);
        family = s->family;
    }
    return family;
}

static void check_spec(const pl_series_spec_t *t)
{
    if (!pl_metrics_name_valid(t->name))
        reg_fail("invalid metric name \"%s\"", t->name ? t->name : "(null)");
    if (!pl_metrics_labels_valid(t->labels))
        reg_fail("invalid labels {%s} for %s", t->labels, t->name);
    if (t->type == PL_MT_HISTOGRAM && has_label(t->labels, "le"))
        reg_fail("histogram %s may not have a label \"le\"", t->name);
    if (t->n_bounds && !t->bounds)
        reg_fail("histogram %s: NULL bounds", t->name);
    for (size_t i = 0; i < t->n_bounds; i++) {
        if (!isfinite(t->bounds[i]) || (i > 0 && !(t->bounds[i] > t->bounds[i - 1])))
            reg_fail("histogram %s: bounds must be finite and strictly ascending", t->name);
    }
}

static pl_series_t *series_copy(const pl_series_spec_t *t)
{
    pl_series_t *s = pl_xcalloc(1, sizeof *s);
    s->name = pl_xstrdup(t->name);
    s->help = pl_xstrdup(t->help ? t->help : "");
    s->labels = pl_xstrdup(t->labels);
    s->type = t->type;
    s->n_slots = t->n_slots;
    s->n_bounds = t->n_bounds;
    if (t->n_bounds) {
        s->bounds = pl_xmalloc(t->n_bounds * sizeof *s->bounds);
        memcpy(s->bounds, t->bounds, t->n_bounds * sizeof *s->bounds);
    }
    s->fn = t->fn;
    s->arg = t->arg;
    return s;
}

/* Validates, copies and publishes a series. Returns its first slot (the id). */
static pl_metric_id_t reg_add(pl_metrics_t *reg, pl_series_spec_t t)
{
    if (!t.labels)
        t.labels = "";
    check_spec(&t);
    pl_series_t *s = series_copy(&t);

    pthread_mutex_lock(&reg->mu);
    size_t n = atomic_load_explicit(&reg->n_series, memory_order_relaxed);
    if (n == PL_METRICS_MAX_SERIES)
        reg_fail("more than %d series", PL_METRICS_MAX_SERIES);
    if (s->n_slots > PL_METRICS_MAX_SLOTS - reg->next_slot)
        reg_fail("%s: out of slots (PL_METRICS_MAX_SLOTS %d)", s->name, PL_METRICS_MAX_SLOTS);
    s->family = find_family(reg, n, &t);
    s->first = s->n_slots ? reg->next_slot : 0;
    reg->next_slot += s->n_slots;
    if (s->n_slots)
        reg->slot_series[s->first] = s;
    reg->series[n] = s;
    atomic_store_explicit(&reg->n_series, n + 1, memory_order_release);
    pthread_mutex_unlock(&reg->mu);
    return s->first;
}

pl_metric_id_t pl_metrics_counter(pl_metrics_t *reg, const char *name, const char *help,
                                  const char *labels)
{
    return reg_add(reg, (pl_series_spec_t){ .name = name, .help = help, .labels = labels,
                                            .type = PL_MT_COUNTER, .n_slots = 1 });
}

pl_metric_id_t pl_metrics_gauge(pl_metrics_t *reg, const char *name, const char *help,
                                const char *labels)
{
    return reg_add(reg, (pl_series_spec_t){ .name = name, .help = help, .labels = labels,
                                            .type = PL_MT_GAUGE, .n_slots = 1 });
}

void pl_metrics_gauge_fn(pl_metrics_t *reg, const char *name, const char *help,
                         const char *labels, pl_metric_gauge_fn fn, void *arg)
{
    PL_ASSERT(fn);
    reg_add(reg, (pl_series_spec_t){ .name = name, .help = help, .labels = labels,
                                     .type = PL_MT_GAUGE_FN, .fn = fn, .arg = arg });
}

void pl_metrics_counter_fn(pl_metrics_t *reg, const char *name, const char *help,
                           const char *labels, pl_metric_gauge_fn fn, void *arg)
{
    PL_ASSERT(fn);
    reg_add(reg, (pl_series_spec_t){ .name = name, .help = help, .labels = labels,
                                     .type = PL_MT_COUNTER_FN, .fn = fn, .arg = arg });
}

pl_metric_id_t pl_metrics_histogram(pl_metrics_t *reg, const char *name, const char *help,
                                    const char *labels, const double *bounds, size_t n_bounds)
{
    if (n_bounds > PL_METRICS_MAX_SLOTS)
        reg_fail("histogram %s: %zu bounds", name ? name : "(null)", n_bounds);
    return reg_add(reg, (pl_series_spec_t){ .name = name, .help = help, .labels = labels,
                                            .type = PL_MT_HISTOGRAM, .bounds = bounds,
                                            .n_bounds = n_bounds,
                                            .n_slots = (uint32_t)n_bounds + 2 });
}

pl_metrics_shard_t *pl_metrics_shard_create(pl_metrics_t *reg)
{
    /* sizeof is a multiple of 64 (the slots' alignment), as aligned_alloc requires. */
    pl_metrics_shard_t *s = aligned_alloc(_Alignof(pl_metrics_shard_t), sizeof *s);
    if (!s)
        reg_fail("out of memory for a %zu-byte shard", sizeof *s);
    for (size_t i = 0; i < PL_METRICS_MAX_SLOTS; i++)
        atomic_init(&s->slots[i], 0);
    s->reg = reg;
    pthread_mutex_lock(&reg->mu);
    size_t n = atomic_load_explicit(&reg->n_shards, memory_order_relaxed);
    if (n == PL_METRICS_MAX_SHARDS)
        reg_fail("more than %d shards", PL_METRICS_MAX_SHARDS);
    reg->shards[n] = s;
    atomic_store_explicit(&reg->n_shards, n + 1, memory_order_release);
    pthread_mutex_unlock(&reg->mu);
    return s;
}

/* ---- writers ---------------------------------------------------------------------- */

static double bits_to_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

void pl_metric_observe(pl_metrics_shard_t *s, pl_metric_id_t id, double value)
{
    const pl_series_t *h = s->reg->slot_series[id];
    PL_ASSERT(h && h->type == PL_MT_HISTOGRAM);
    size_t i = 0;
    /* Bucket i counts bounds[i-1] < v <= bounds[i]; NaN lands in +Inf, as in the Go
     * client. */
    while (i < h->n_bounds && !(value <= h->bounds[i]))
        i++;
    pl_metric_add(s, id + (pl_metric_id_t)i, 1);
    _Atomic uint64_t *sum = &s->slots[id + h->n_bounds + 1];
    double cur = bits_to_double(atomic_load_explicit(sum, memory_order_relaxed));
    atomic_store_explicit(sum, double_to_bits(cur + value), memory_order_relaxed);
}

/* ---- reading ---------------------------------------------------------------------- */

/* The series and shards published when a read began. */
typedef struct snap {
    const pl_metrics_t *reg;
    size_t n_series;
    size_t n_shards;
} snap_t;

static snap_t snapshot(const pl_metrics_t *reg)
{
    snap_t sn = { .reg = reg };
    sn.n_series = atomic_load_explicit(&reg->n_series, memory_order_acquire);
    sn.n_shards = atomic_load_explicit(&reg->n_shards, memory_order_acquire);
    return sn;
}

static uint64_t slot_sum(const snap_t *sn, uint32_t slot)
{
    uint64_t v = 0;
    for (size_t i = 0; i < sn->n_shards; i++)
        v += atomic_load_explicit(&sn->reg->shards[i]->slots[slot], memory_order_relaxed);
    return v;
}

static double slot_sum_double(const snap_t *sn, uint32_t slot)
{
    double v = 0;
    for (size_t i = 0; i < sn->n_shards; i++)
        v += bits_to_double(
            atomic_load_explicit(&sn->reg->shards[i]->slots[slot], memory_order_relaxed));
    return v;
}

static const pl_series_t *series_of(const pl_metrics_t *reg, pl_metric_id_t id,
                                    pl_mtype_t type)
{
    PL_ASSERT(id > 0 && id < PL_METRICS_MAX_SLOTS);
    const pl_series_t *s = reg->slot_series[id];
    PL_ASSERT(s && s->type == type);
    return s;
}

uint64_t pl_metrics_read_counter(const pl_metrics_t *reg, pl_metric_id_t id)
{
    series_of(reg, id, PL_MT_COUNTER);
    snap_t sn = snapshot(reg);
    return slot_sum(&sn, id);
}

int64_t pl_metrics_read_gauge(const pl_metrics_t *reg, pl_metric_id_t id)
{
    series_of(reg, id, PL_MT_GAUGE);
    snap_t sn = snapshot(reg);
    return (int64_t)slot_sum(&sn, id);
}

/* Shortest %g that reads back as v; Prometheus spellings for the non-finite values. */
static void format_double(char out[32], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
    } else if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, 32, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

/* ---- Prometheus text exposition 0.0.4 --------------------------------------------- */

static void prom_header(pl_buf_t *out, const pl_series_t *s)
{
    if (s->help[0]) {
        pl_buf_printf(out, "# HELP %s ", s->name);
        /* Format 0.0.4: in HELP only backslash and line feed are escaped. */
        for (const char *p = s->help; *p; p++) {
            if (*p == '\\')
                pl_buf_puts(out, "\\\\");
            else if (*p == '\n')
                pl_buf_puts(out, "\\n");
            else
                pl_buf_append(out, p, 1);
        }
        pl_buf_puts(out, "\n");
    }
    pl_buf_printf(out, "# TYPE %s %s\n", s->name, type_name(s->type));
}

/* name<suffix>{labels[,le="x"]} followed by a space. */
static void prom_name(pl_buf_t *out, const pl_series_t *s, const char *suffix, const char *le)
{
    pl_buf_puts(out, s->name);
    pl_buf_puts(out, suffix);
    if (s->labels[0] || le) {
        pl_buf_puts(out, "{");
        pl_buf_puts(out, s->labels);
        if (le)
            pl_buf_printf(out, "%sle=\"%s\"", s->labels[0] ? "," : "", le);
        pl_buf_puts(out, "}");
    }
    pl_buf_puts(out, " ");
}

static void prom_histogram(const snap_t *sn, const pl_series_t *s, pl_buf_t *out)
{
    char num[32];
    uint64_t cum = 0;
    for (size_t i = 0; i <= s->n_bounds; i++) {
        cum += slot_sum(sn, s->first + (uint32_t)i);
        if (i < s->n_bounds)
            format_double(num, s->bounds[i]);
        else
            strcpy(num, "+Inf");
        prom_name(out, s, "_bucket", num);
        pl_buf_printf(out, "%" PRIu64 "\n", cum);
    }
    format_double(num, slot_sum_double(sn, s->first + (uint32_t)s->n_bounds + 1));
    prom_name(out, s, "_sum", NULL);
    pl_buf_printf(out, "%s\n", num);
    prom_name(out, s, "_count", NULL);
    pl_buf_printf(out, "%" PRIu64 "\n", cum);
}

static void prom_series(const snap_t *sn, const pl_series_t *s, pl_buf_t *out)
{
    char num[32];
    switch (s->type) {
    case PL_MT_COUNTER:
        prom_name(out, s, "", NULL);
        pl_buf_printf(out, "%" PRIu64 "\n", slot_sum(sn, s->first));
        break;
    case PL_MT_GAUGE:
        prom_name(out, s, "", NULL);
        pl_buf_printf(out, "%" PRId64 "\n", (int64_t)slot_sum(sn, s->first));
        break;
    case PL_MT_COUNTER_FN:
    case PL_MT_GAUGE_FN:
        format_double(num, s->fn(s->arg));
        prom_name(out, s, "", NULL);
        pl_buf_printf(out, "%s\n", num);
        break;
    case PL_MT_HISTOGRAM:
        prom_histogram(sn, s, out);
        break;
    }
}

void pl_metrics_render_prometheus(const pl_metrics_t *reg, pl_buf_t *out)
{
    snap_t sn = snapshot(reg);
    /* Grouped by name in order of first registration: a family is headed by the
     * series whose own index is its family index. */
    for (size_t f = 0; f < sn.n_series; f++) {
        if (reg->series[f]->family != f)
            continue;
        prom_header(out, reg->series[f]);
        for (size_t i = f; i < sn.n_series; i++)
            if (reg->series[i]->family == f)
                prom_series(&sn, reg->series[i], out);
    }
}

/* ---- JSON --------------------------------------------------------------------------- */

static void json_double(pl_buf_t *out, double v)
{
    char num[32];
    if (!isfinite(v)) {
        pl_buf_puts(out, "null");   /* JSON has no NaN or Inf */
        return;
    }
    format_double(num, v);
    pl_buf_puts(out, num);
}

static void json_key(pl_buf_t *out, const pl_series_t *s, pl_buf_t *tmp)
{
    pl_buf_reset(tmp);
    pl_buf_puts(tmp, s->name);
    if (s->labels[0])
        pl_buf_printf(tmp, "{%s}", s->labels);
    pl_buf_json_str(out, tmp->data);
    pl_buf_puts(out, ":");
}

static void json_histogram(const snap_t *sn, const pl_series_t *s, pl_buf_t *out)
{
    char num[32];
    /* Buckets read once, so count is their total even while writers run. */
    uint64_t *cum = pl_xmalloc((s->n_bounds + 1) * sizeof *cum);
    uint64_t total = 0;
    for (size_t i = 0; i <= s->n_bounds; i++)
        cum[i] = total += slot_sum(sn, s->first + (uint32_t)i);
    pl_buf_printf(out, "{\"count\":%" PRIu64 ",\"sum\":", total);
    json_double(out, slot_sum_double(sn, s->first + (uint32_t)s->n_bounds + 1));
    pl_buf_puts(out, ",\"buckets\":{");
    for (size_t i = 0; i <= s->n_bounds; i++) {
        if (i < s->n_bounds)
            format_double(num, s->bounds[i]);
        else
            strcpy(num, "+Inf");
        pl_buf_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "", num, cum[i]);
    }
    pl_buf_puts(out, "}}");
    free(cum);
}

static void json_series(const snap_t *sn, const pl_series_t *s, pl_buf_t *out)
{
    switch (s->type) {
    case PL_MT_COUNTER:
        pl_buf_printf(out, "%" PRIu64, slot_sum(sn, s->first));
        break;
    case PL_MT_GAUGE:
        pl_buf_printf(out, "%" PRId64, (int64_t)slot_sum(sn, s->first));
        break;
    case PL_MT_COUNTER_FN:
    case PL_MT_GAUGE_FN:
        json_double(out, s->fn(s->arg));
        break;
    case PL_MT_HISTOGRAM:
        json_histogram(sn, s, out);
        break;
    }
}

void pl_metrics_render_json(const pl_metrics_t *reg, pl_buf_t *out)
{
    snap_t sn = snapshot(reg);
    pl_buf_t key;
    bool first = true;
    pl_buf_init(&key);
    pl_buf_puts(out, "{");
    for (size_t f = 0; f < sn.n_series; f++) {
        if (reg->series[f]->family != f)
            continue;
        for (size_t i = f; i < sn.n_series; i++) {
            if (reg->series[i]->family != f)
                continue;
            if (!first)
                pl_buf_puts(out, ",");
            first = false;
            json_key(out, reg->series[i], &key);
            json_series(&sn, reg->series[i], out);
        }
    }
    pl_buf_puts(out, "}");
    pl_buf_deinit(&key);
}
