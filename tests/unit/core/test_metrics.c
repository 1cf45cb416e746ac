/* test_metrics.c: the metrics registry. Exact totals from several writer threads (one
 * shard each, created late while the main thread renders), a golden Prometheus
 * rendering, every rendering parsed back by a strict exposition-format checker, JSON
 * validated by a strict parser, the name/label validators, registration bugs aborting
 * (in a forked child), and plausible process metrics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "core/pl_metrics.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- a strict checker for the Prometheus text format 0.0.4 ------------------------- */

#define P_MAX_SAMPLES 512
#define P_MAX_FAMILIES 128

typedef struct prom {
    size_t n;
    char *key[P_MAX_SAMPLES];            /* name{labels} exactly as rendered */
    double val[P_MAX_SAMPLES];
    size_t n_fam;
    char *fam[P_MAX_FAMILIES];
} prom_t;

typedef struct hist {                    /* the histogram series being read */
    bool active, inf, count;
    char base[512];                      /* its labels without le */
    double last_le, last_cum, inf_val;
} hist_t;

static void prom_free(prom_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->key[i]);
    for (size_t i = 0; i < p->n_fam; i++)
        free(p->fam[i]);
    p->n = p->n_fam = 0;
}

static bool pfail(const char *why, const char *line)
{
    fprintf(stderr, "exposition check: %s: [%s]\n", why, line);
    return false;
}

static bool name_char(char c, bool first, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (colon && c == ':') || (!first && c >= '0' && c <= '9');
}

/* Reads a metric (colon) or label name at p; returns its end or NULL. */
static const char *read_name(const char *p, bool colon)
{
    if (!name_char(*p, true, colon))
        return NULL;
    while (name_char(*p, false, colon))
        p++;
    return p;
}

static bool parse_value(const char *s, double *v)
{
    if (!strcmp(s, "+Inf") || !strcmp(s, "-Inf") || !strcmp(s, "NaN")) {
        *v = !strcmp(s, "NaN") ? NAN : s[0] == '+' ? INFINITY : -INFINITY;
        return true;
    }
    if (!*s || strspn(s, "0123456789+-.e") != strlen(s))
        return false;
    char *end;
    *v = strtod(s, &end);
    return *end == '\0';
}

/* Parses {k="v",...} at p: names valid and unique, escapes only \\ \" \n. Copies the
 * label text without `le` into base and le's value into le (or "" when absent).
 * Returns the end or NULL. */
static const char *parse_labels(const char *p, char *base, char *le)
{
    char names[16][64];
    size_t n = 0, blen = 0;
    base[0] = le[0] = '\0';
    if (*p != '{')
        return p;
    for (p++; *p != '}';) {
        const char *k = p, *e = read_name(p, false);
        if (!e || e[0] != '=' || e[1] != '"' || n == 16 || (size_t)(e - k) >= 64)
            return NULL;
        memcpy(names[n], k, (size_t)(e - k));
        names[n][e - k] = '\0';
        for (size_t i = 0; i < n; i++)
            if (!strcmp(names[i], names[n]))
                return NULL;
        bool is_le = !strcmp(names[n++], "le");
        const char *v = e + 2;
        for (p = v; *p != '"'; p++) {
            if (!*p || *p == '\n' || (*p == '\\' && !strchr("\\\"n", p[1]) ) || (*p == '\\' && !p[1]))
                return NULL;
            if (*p == '\\')
                p++;
        }
        if (is_le) {
            memcpy(le, v, (size_t)(p - v));
            le[p - v] = '\0';
        } else {
            blen += (size_t)snprintf(base + blen, 512 - blen, "%s%.*s", blen ? "," : "",
                                     (int)(p - k + 1), k);
        }
        p++;
        if (*p == ',' && p[1] != '}')
            p++;
        else if (*p != '}')
            return NULL;
    }
    return p + 1;
}

static bool help_ok(const char *s)
{
    for (; *s; s++)
        if (*s == '\\' && (s[1] != '\\' && s[1] != 'n'))
            return false;
        else if (*s == '\\')
            s++;
    return true;
}

/* Histogram sample rules: buckets ascending in le and cumulative, +Inf last, then _sum,
 * then _count equal to the +Inf bucket. */
static bool hist_sample(hist_t *h, const char *suffix, const char *base, const char *le,
                        double v, const char *line)
{
    if (!strcmp(suffix, "_bucket")) {
        double lev;
        if (!h->active || strcmp(h->base, base) != 0) {
            if (h->active && !h->count)
                return pfail("histogram series without _count", line);
            *h = (hist_t){ .active = true, .last_le = -INFINITY };
            snprintf(h->base, sizeof h->base, "%s", base);
        }
        if (!le[0] || !parse_value(le, &lev) || h->inf || !(lev > h->last_le))
            return pfail("bad or unordered le", line);
        if (v < h->last_cum)
            return pfail("buckets not cumulative", line);
        h->last_le = lev;
        h->last_cum = v;
        if (isinf(lev)) {
            h->inf = true;
            h->inf_val = v;
        }
        return true;
    }
    if (le[0] || !h->active || strcmp(h->base, base) != 0 || !h->inf || h->count)
        return pfail("_sum/_count outside its series", line);
    if (!strcmp(suffix, "_count")) {
        if (v != h->inf_val)
            return pfail("_count != +Inf bucket", line);
        h->count = true;
    }
    return true;
}

typedef struct fam_state {
    char name[128], type[16], help_for[128];
    hist_t h;
} fam_state_t;

static bool comment_line(prom_t *p, fam_state_t *f, const char *line)
{
    char name[128], rest[4096];
    bool help = !strncmp(line, "# HELP ", 7);
    if (!help && strncmp(line, "# TYPE ", 7) != 0)
        return pfail("unknown comment", line);
    if (f->h.active && !f->h.count)
        return pfail("histogram series without _count", line);
    const char *e = read_name(line + 7, true);
    if (!e || *e != ' ' || (size_t)(e - line - 7) >= sizeof name)
        return pfail("bad name", line);
    snprintf(name, sizeof name, "%.*s", (int)(e - line - 7), line + 7);
    snprintf(rest, sizeof rest, "%s", e + 1);
    for (size_t i = 0; i < p->n_fam; i++)
        if (!strcmp(p->fam[i], name))
            return pfail("family appears twice", line);
    if (help) {
        if (!help_ok(rest))
            return pfail("bad escape in HELP", line);
        snprintf(f->help_for, sizeof f->help_for, "%s", name);
        return true;
    }
    if (f->help_for[0] && strcmp(f->help_for, name) != 0)
        return pfail("HELP not followed by its TYPE", line);
    if (strcmp(rest, "counter") && strcmp(rest, "gauge") && strcmp(rest, "histogram"))
        return pfail("bad type", line);
    f->help_for[0] = '\0';
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->type, sizeof f->type, "%.15s", rest);
    f->h.active = false;
    PL_ASSERT(p->n_fam < P_MAX_FAMILIES);
    p->fam[p->n_fam++] = strdup(name);
    return true;
}

static bool sample_line(prom_t *p, fam_state_t *f, const char *line)
{
    char base[512], le[64];
    double v;
    const char *e = read_name(line, true);
    if (!e || !f->name[0] || f->help_for[0])
        return pfail("sample outside a TYPE block", line);
    size_t nlen = (size_t)(e - line), flen = strlen(f->name);
    const char *end = parse_labels(e, base, le);
    if (!end || *end != ' ' || !parse_value(end + 1, &v))
        return pfail("bad labels or value", line);
    if (nlen < flen || strncmp(line, f->name, flen) != 0)
        return pfail("sample of another family", line);
    char suffix[16];
    snprintf(suffix, sizeof suffix, "%.*s", (int)(nlen - flen), line + flen);
    if (!strcmp(f->type, "histogram")) {
        if (strcmp(suffix, "_bucket") && strcmp(suffix, "_sum") && strcmp(suffix, "_count"))
            return pfail("bad histogram suffix", line);
        if (!hist_sample(&f->h, suffix, base, le, v, line))
            return false;
    } else if (suffix[0]) {
        return pfail("sample of another family", line);
    }
    if (!strcmp(f->type, "counter") && !(v >= 0))
        return pfail("negative counter", line);
    char *key = strndup(line, (size_t)(end - line));
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->key[i], key)) {
            free(key);
            return pfail("duplicate series", line);
        }
    PL_ASSERT(p->n < P_MAX_SAMPLES);
    p->key[p->n] = key;
    p->val[p->n++] = v;
    return true;
}

static bool prom_check(const char *text, prom_t *p)
{
    fam_state_t f = { .name = "" };
    p->n = p->n_fam = 0;
    bool ok = true;
    size_t len = strlen(text);
    if (len && text[len - 1] != '\n')
        return pfail("no final newline", text);
    for (const char *l = text; ok && *l;) {
        const char *nl = strchr(l, '\n');
        char *line = strndup(l, (size_t)(nl - l));
        if (!line[0])
            ok = pfail("empty line", line);
        else if (line[0] == '#')
            ok = comment_line(p, &f, line);
        else
            ok = sample_line(p, &f, line);
        free(line);
        l = nl + 1;
    }
    if (ok && f.h.active && !f.h.count)
        ok = pfail("histogram series without _count", "(end)");
    if (ok && f.help_for[0])
        ok = pfail("HELP without TYPE", "(end)");
    return ok;
}

static double prom_get(const prom_t *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->key[i], key))
            return p->val[i];
    fprintf(stderr, "no sample %s\n", key);
    fail_msg("missing sample");
    return NAN;
}

/* ---- a strict JSON validator (RFC 8259) ------------------------------------------- */

static const char *jv(const char *p, int depth);

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *jstring(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
                        return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return p + 1;
}

static const char *jnumber(const char *p)
{
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (*p == '.') {
        if (!(*++p >= '0' && *p <= '9'))
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return p;
}

static const char *jcontainer(const char *p, int depth, char close)
{
    p = ws(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            if (!(p = jstring(p)) || *(p = ws(p)) != ':')
                return NULL;
            p++;
        }
        if (!(p = jv(p, depth + 1)))
            return NULL;
        p = ws(p);
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
        p = ws(p);
    }
}

static const char *jv(const char *p, int depth)
{
    p = ws(p);
    if (depth > 32)
        return NULL;
    switch (*p) {
    case '{': return jcontainer(p, depth, '}');
    case '[': return jcontainer(p, depth, ']');
    case '"': return jstring(p);
    case 't': return strncmp(p, "true", 4) ? NULL : p + 4;
    case 'f': return strncmp(p, "false", 5) ? NULL : p + 5;
    case 'n': return strncmp(p, "null", 4) ? NULL : p + 4;
    default: return jnumber(p);
    }
}

static bool json_valid(const char *s)
{
    const char *e = jv(s, 0);
    return e && *ws(e) == '\0';
}

/* ---- validators --------------------------------------------------------------------- */

static void test_name_valid(void **state)
{
    (void)state;
    const char *good[] = { "a", "_", ":", "parley_turn_drops_total", "A:b_9", "_x:y:z" };
    const char *bad[] = { "", "1abc", "a-b", "a b", "caf\xc3\xa9", "a.b", "a{", "a\n" };
    for (size_t i = 0; i < PL_ARRAY_LEN(good); i++)
        assert_true(pl_metrics_name_valid(good[i]));
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++)
        assert_false(pl_metrics_name_valid(bad[i]));
    assert_false(pl_metrics_name_valid(NULL));
}

static void test_labels_valid(void **state)
{
    (void)state;
    const char *good[] = {
        "a=\"x\"", "a=\"x\",b=\"y\"", "reason=\"\"", "_a9=\"q \\\"quoted\\\" \\\\ \\n\"",
        "le=\"0.5\"", "a=\"with,comma\",b=\"and=equals\"",
    };
    const char *bad[] = {
        "a=x", "1a=\"x\"", "a=\"x\",", ",a=\"x\"", "a=\"x\"b=\"y\"", "a=\"unterminated",
        "__a=\"x\"", "a=\"x\",a=\"y\"", "a=\"bad\\q\"", "a=\"raw\nnewline\"", "a =\"x\"",
        "a=\"x\" ", "{a=\"x\"}", "a-b=\"x\"", "a=\"trailing\\\"",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(good); i++)
        assert_true(pl_metrics_labels_valid(good[i]));
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        if (pl_metrics_labels_valid(bad[i]))
            fail_msg("accepted bad labels [%s]", bad[i]);
    }
    assert_true(pl_metrics_labels_valid(NULL));
    assert_true(pl_metrics_labels_valid(""));
}

/* ---- registration bugs abort -------------------------------------------------------- */

static void bad_name(pl_metrics_t *r) { pl_metrics_counter(r, "bad-name", "h", NULL); }
static void bad_labels(pl_metrics_t *r) { pl_metrics_gauge(r, "ok", "h", "a=x"); }
static void dup_series(pl_metrics_t *r)
{
    pl_metrics_counter(r, "c_total", "h", "a=\"1\"");
    pl_metrics_counter(r, "c_total", "h", "a=\"1\"");
}
static void type_clash(pl_metrics_t *r)
{
    pl_metrics_counter(r, "m", "h", "a=\"1\"");
    pl_metrics_gauge(r, "m", "h", "a=\"2\"");
}
static void hist_le(pl_metrics_t *r)
{
    double b[] = { 1 };
    pl_metrics_histogram(r, "h", "h", "le=\"1\"", b, 1);
}
static void hist_order(pl_metrics_t *r)
{
    double b[] = { 1, 1 };
    pl_metrics_histogram(r, "h", "h", NULL, b, 2);
}
static void hist_inf(pl_metrics_t *r)
{
    double b[] = { 1, INFINITY };
    pl_metrics_histogram(r, "h", "h", NULL, b, 2);
}
static void out_of_slots(pl_metrics_t *r)
{
    char name[32];
    for (int i = 0; i <= PL_METRICS_MAX_SLOTS; i++) {
        snprintf(name, sizeof name, "c%d", i);
        pl_metrics_counter(r, name, "h", NULL);
    }
}
static void ok_registration(pl_metrics_t *r)
{
    double b[] = { 1, 2 };
    pl_metrics_counter(r, "c_total", "h", "a=\"1\"");
    pl_metrics_counter(r, "c_total", "h", "a=\"2\"");
    pl_metrics_histogram(r, "h", "h", NULL, b, 2);
}

/* Runs fn in a child; true when the child died of SIGABRT. */
static bool aborts(void (*fn)(pl_metrics_t *))
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        pl_metrics_t *r = pl_metrics_create();
        fn(r);
        pl_metrics_destroy(r);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void test_registration_bugs_abort(void **state)
{
    (void)state;
    assert_false(aborts(ok_registration));
    assert_true(aborts(bad_name));
    assert_true(aborts(bad_labels));
    assert_true(aborts(dup_series));
    assert_true(aborts(type_clash));
    assert_true(aborts(hist_le));
    assert_true(aborts(hist_order));
    assert_true(aborts(hist_inf));
    assert_true(aborts(out_of_slots));
}

/* ---- golden rendering ------------------------------------------------------------- */

static double ret_nan(void *a) { (void)a; return NAN; }
static double ret_inf(void *a) { (void)a; return INFINITY; }
static double ret_ninf(void *a) { (void)a; return -INFINITY; }
static double ret_arg(void *a) { return *(const double *)a; }

static const char golden[] =
    "# HELP parley_t_requests_total Requests \\\\ handled.\\nSecond line\n"
    "# TYPE parley_t_requests_total counter\n"
    "parley_t_requests_total{method=\"get\"} 3\n"
    "parley_t_requests_total{method=\"post\",path=\"a\\\"b\\\\c\\nd\"} 7\n"
    "# TYPE parley_t_temp gauge\n"
    "parley_t_temp -5\n"
    "# HELP parley_t_latency_seconds Latency.\n"
    "# TYPE parley_t_latency_seconds histogram\n"
    "parley_t_latency_seconds_bucket{op=\"x\",le=\"0.005\"} 0\n"
    "parley_t_latency_seconds_bucket{op=\"x\",le=\"0.125\"} 2\n"
    "parley_t_latency_seconds_bucket{op=\"x\",le=\"1\"} 3\n"
    "parley_t_latency_seconds_bucket{op=\"x\",le=\"2.5\"} 3\n"
    "parley_t_latency_seconds_bucket{op=\"x\",le=\"+Inf\"} 4\n"
    "parley_t_latency_seconds_sum{op=\"x\"} 3.9375\n"
    "parley_t_latency_seconds_count{op=\"x\"} 4\n"
    "parley_t_latency_seconds_bucket{op=\"y\",le=\"0.005\"} 0\n"
    "parley_t_latency_seconds_bucket{op=\"y\",le=\"0.125\"} 0\n"
    "parley_t_latency_seconds_bucket{op=\"y\",le=\"1\"} 0\n"
    "parley_t_latency_seconds_bucket{op=\"y\",le=\"2.5\"} 0\n"
    "parley_t_latency_seconds_bucket{op=\"y\",le=\"+Inf\"} 0\n"
    "parley_t_latency_seconds_sum{op=\"y\"} 0\n"
    "parley_t_latency_seconds_count{op=\"y\"} 0\n"
    "# HELP parley_t_fn Callbacks.\n"
    "# TYPE parley_t_fn gauge\n"
    "parley_t_fn{v=\"nan\"} NaN\n"
    "parley_t_fn{v=\"inf\"} +Inf\n"
    "parley_t_fn{v=\"ninf\"} -Inf\n"
    "parley_t_fn{v=\"tenth\"} 0.1\n"
    "parley_t_fn{v=\"third\"} 0.3333333333333333\n"
    "parley_t_fn{v=\"big\"} 1e+21\n"
    "# HELP parley_t_cpu_seconds_total CPU.\n"
    "# TYPE parley_t_cpu_seconds_total counter\n"
    "parley_t_cpu_seconds_total 1.5\n"
    "# HELP parley_t_nobounds Only +Inf.\n"
    "# TYPE parley_t_nobounds histogram\n"
    "parley_t_nobounds_bucket{le=\"+Inf\"} 1\n"
    "parley_t_nobounds_sum -2.5\n"
    "parley_t_nobounds_count 1\n";

static double d_tenth = 0.1, d_third = 1.0 / 3, d_big = 1e21, d_cpu = 1.5;

/* Families registered interleaved; rendering groups them by first registration. */
static pl_metrics_t *golden_registry(void)
{
    static const double b[] = { 0.005, 0.125, 1, 2.5 };
    pl_metrics_t *r = pl_metrics_create();
    pl_metrics_shard_t *s = pl_metrics_shard_create(r);
    pl_metrics_shard_t *s2 = pl_metrics_shard_create(r);
    pl_metric_id_t get = pl_metrics_counter(r, "parley_t_requests_total",
                                            "Requests \\ handled.\nSecond line", "method=\"get\"");
    pl_metric_id_t temp = pl_metrics_gauge(r, "parley_t_temp", NULL, NULL);
    pl_metric_id_t lat = pl_metrics_histogram(r, "parley_t_latency_seconds", "Latency.",
                                              "op=\"x\"", b, 4);
    pl_metric_id_t post = pl_metrics_counter(r, "parley_t_requests_total", "Requests",
                                             "method=\"post\",path=\"a\\\"b\\\\c\\nd\"");
    pl_metrics_gauge_fn(r, "parley_t_fn", "Callbacks.", "v=\"nan\"", ret_nan, NULL);
    pl_metrics_gauge_fn(r, "parley_t_fn", "Callbacks.", "v=\"inf\"", ret_inf, NULL);
    pl_metrics_histogram(r, "parley_t_latency_seconds", "Latency.", "op=\"y\"", b, 4);
    pl_metrics_gauge_fn(r, "parley_t_fn", "Callbacks.", "v=\"ninf\"", ret_ninf, NULL);
    pl_metrics_gauge_fn(r, "parley_t_fn", "Callbacks.", "v=\"tenth\"", ret_arg,
                        &d_tenth);
    pl_metrics_gauge_fn(r, "parley_t_fn", "Callbacks.", "v=\"third\"", ret_arg,
                        &d_third);
    pl_metrics_gauge_fn(r, "parley_t_fn", "Callbacks.", "v=\"big\"", ret_arg,
                        &d_big);
    pl_metrics_counter_fn(r, "parley_t_cpu_seconds_total", "CPU.", NULL, ret_arg,
                          &d_cpu);
    pl_metric_id_t nb = pl_metrics_histogram(r, "parley_t_nobounds", "Only +Inf.", "", NULL, 0);

    assert_true(get > 0 && temp > get && lat > temp && post > lat);
    pl_metric_inc(s, get);
    pl_metric_inc(s, get);
    pl_metric_inc(s2, get);
    pl_metric_add(s2, post, 7);
    pl_metric_gauge_set(s, temp, 3);
    pl_metric_gauge_add(s2, temp, -8);
    pl_metric_observe(s, lat, 0.125);        /* on a bound: le="0.125" */
    pl_metric_observe(s2, lat, 0.0625);
    pl_metric_observe(s, lat, 0.75);
    pl_metric_observe(s2, lat, 3);
    pl_metric_observe(s, nb, -2.5);
    pl_metric_inc(s, 0);                     /* id 0 is scratch: never rendered */
    return r;
}

static void test_prometheus_golden(void **state)
{
    (void)state;
    pl_metrics_t *r = golden_registry();
    pl_buf_t out;
    pl_buf_init(&out);
    pl_metrics_render_prometheus(r, &out);
    if (strcmp(out.data, golden) != 0)
        fprintf(stderr, "got:\n%s", out.data);
    assert_string_equal(out.data, golden);
    prom_t *p = calloc(1, sizeof *p);
    assert_true(prom_check(out.data, p));
    assert_int_equal(p->n_fam, 6);
    assert_true(prom_get(p, "parley_t_latency_seconds_count{op=\"x\"}") == 4);
    prom_free(p);
    free(p);
    pl_buf_deinit(&out);
    pl_metrics_destroy(r);
}

/* The checker itself must reject broken expositions, or passing it means nothing. */
static void test_checker_rejects(void **state)
{
    (void)state;
    const char *bad[] = {
        "x 1\n",                                                    /* no TYPE */
        "# TYPE x counter\nx 1",                                    /* no newline */
        "# TYPE x counter\ny 1\n",                                  /* other family */
        "# TYPE x counter\nx -1\n",
        "# TYPE x counter\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n",
        "# TYPE x counter\nx{a=1} 1\n",
        "# TYPE x gauge\nx one\n",
        "# TYPE x gauge\n# TYPE x gauge\n",
        "# HELP x a\\b\n# TYPE x gauge\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 3\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 0\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n",
    };
    prom_t *p = calloc(1, sizeof *p);
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        if (prom_check(bad[i], p))
            fail_msg("checker accepted case %zu", i);
        prom_free(p);
    }
    free(p);
    assert_false(json_valid("{\"a\":1,}"));
    assert_false(json_valid("{\"a\":NaN}"));
    assert_false(json_valid("{\"a\":01}"));
    assert_false(json_valid("{\"a\":\"x\n\"}"));
    assert_true(json_valid("{\"a\":[1,-0.5e+3,null,true],\"b\":{}}"));
}

static void test_json_render(void **state)
{
    (void)state;
    pl_metrics_t *r = golden_registry();
    pl_buf_t out;
    pl_buf_init(&out);
    pl_metrics_render_json(r, &out);
    assert_true(json_valid(out.data));
    const char *want[] = {
        "{\"parley_t_requests_total{method=\\\"get\\\"}\":3,",
        "\"parley_t_requests_total{method=\\\"post\\\",path=\\\"a\\\\\\\"b\\\\\\\\c\\\\nd\\\"}\":7,",
        "\"parley_t_temp\":-5,",
        "\"parley_t_latency_seconds{op=\\\"x\\\"}\":{\"count\":4,\"sum\":3.9375,"
        "\"buckets\":{\"0.005\":0,\"0.125\":2,\"1\":3,\"2.5\":3,\"+Inf\":4}},",
        "\"parley_t_fn{v=\\\"nan\\\"}\":null,\"parley_t_fn{v=\\\"inf\\\"}\":null,",
        "\"parley_t_fn{v=\\\"tenth\\\"}\":0.1,",
        "\"parley_t_cpu_seconds_total\":1.5,",
        "\"parley_t_nobounds\":{\"count\":1,\"sum\":-2.5,\"buckets\":{\"+Inf\":1}}}",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(want); i++)
        if (!strstr(out.data, want[i]))
            fail_msg("JSON lacks %s in %s", want[i], out.data);

    pl_metrics_t *empty = pl_metrics_create();
    pl_buf_reset(&out);
    pl_metrics_render_json(empty, &out);
    assert_string_equal(out.data, "{}");
    pl_buf_reset(&out);
    pl_metrics_render_prometheus(empty, &out);
    assert_int_equal(out.len, 0);
    pl_metrics_destroy(empty);
    pl_buf_deinit(&out);
    pl_metrics_destroy(r);
}

/* ---- concurrent writers ------------------------------------------------------------ */

#define W_THREADS 4
#define W_ITERS 100000

static atomic_int writers_mid, writers_go, writers_done;

typedef struct wctx {
    pl_metrics_t *reg;
    pl_metric_id_t c, c_lab, g, g_set, h;
    int idx;
} wctx_t;

static void *metric_writer(void *arg)
{
    const wctx_t *w = arg;
    static const double obs[5] = { 0.5, 1, 1.5, 3, 100 };
    /* Each thread makes its own shard, after rendering has started. */
    pl_metrics_shard_t *s = pl_metrics_shard_create(w->reg);
    for (int i = 0; i < W_ITERS; i++) {
        if (i == W_ITERS / 2) {         /* pause so main can check an exact midpoint */
            atomic_fetch_add(&writers_mid, 1);
            while (!atomic_load(&writers_go))
                sched_yield();
        }
        pl_metric_inc(s, w->c);
        pl_metric_add(s, w->c_lab, 3);
        pl_metric_gauge_add(s, w->g, 2);
        pl_metric_gauge_add(s, w->g, -1);
        pl_metric_observe(s, w->h, obs[i % 5]);
    }
    pl_metric_gauge_set(s, w->g_set, w->idx + 1);
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

static void test_threads_exact(void **state)
{
    (void)state;
    static const double b[] = { 1, 2, 4 };
    pl_metrics_t *r = pl_metrics_create();
    wctx_t w[W_THREADS];
    pthread_t th[W_THREADS];
    wctx_t base = { .reg = r };
    base.c = pl_metrics_counter(r, "parley_w_total", "Adds.", NULL);
    base.c_lab = pl_metrics_counter(r, "parley_w_labeled_total", "Adds.", "k=\"v\"");
    base.g = pl_metrics_gauge(r, "parley_w_gauge", "Net.", NULL);
    base.g_set = pl_metrics_gauge(r, "parley_w_share", "Shares.", NULL);
    base.h = pl_metrics_histogram(r, "parley_w_hist", "Obs.", "t=\"1\"", b, 3);
    pl_metrics_register_process(r);
    atomic_store(&writers_done, 0);
    atomic_store(&writers_mid, 0);
    atomic_store(&writers_go, 0);
    for (int i = 0; i < W_THREADS; i++) {
        w[i] = base;
        w[i].idx = i;
        assert_int_equal(pthread_create(&th[i], NULL, metric_writer, &w[i]), 0);
    }
    const uint64_t n = (uint64_t)W_THREADS * W_ITERS;
    pl_buf_t out;
    pl_buf_init(&out);
    prom_t *p = calloc(1, sizeof *p);
    while (atomic_load(&writers_mid) < W_THREADS)
        sched_yield();
    pl_metrics_render_prometheus(r, &out);
    assert_true(prom_check(out.data, p));
    assert_true(prom_get(p, "parley_w_total") == (double)(n / 2));
    assert_true(prom_get(p, "parley_w_hist_count{t=\"1\"}") == (double)(n / 2));
    prom_free(p);
    atomic_store(&writers_go, 1);

    /* Render until the writers finish: each exposition is well formed, counts grow. */
    uint64_t last = n / 2;
    int renders = 0;
    for (; atomic_load(&writers_done) < W_THREADS || renders < 10; renders++) {
        pl_buf_reset(&out);
        pl_metrics_render_prometheus(r, &out);
        assert_true(prom_check(out.data, p));
        prom_free(p);
        uint64_t now = pl_metrics_read_counter(r, base.c);
        assert_true(now >= last);
        last = now;
    }
    for (int i = 0; i < W_THREADS; i++)
        pthread_join(th[i], NULL);

    assert_int_equal(pl_metrics_read_counter(r, base.c), n);
    assert_int_equal(pl_metrics_read_counter(r, base.c_lab), 3 * n);
    assert_int_equal(pl_metrics_read_gauge(r, base.g), (int64_t)n);
    assert_int_equal(pl_metrics_read_gauge(r, base.g_set), 1 + 2 + 3 + 4);
    pl_buf_reset(&out);
    pl_metrics_render_prometheus(r, &out);
    assert_true(prom_check(out.data, p));
    assert_true(prom_get(p, "parley_w_total") == (double)n);
    assert_true(prom_get(p, "parley_w_labeled_total{k=\"v\"}") == 3.0 * (double)n);
    assert_true(prom_get(p, "parley_w_hist_bucket{t=\"1\",le=\"1\"}") == 2.0 * (double)n / 5);
    assert_true(prom_get(p, "parley_w_hist_bucket{t=\"1\",le=\"2\"}") == 3.0 * (double)n / 5);
    assert_true(prom_get(p, "parley_w_hist_bucket{t=\"1\",le=\"4\"}") == 4.0 * (double)n / 5);
    assert_true(prom_get(p, "parley_w_hist_bucket{t=\"1\",le=\"+Inf\"}") == (double)n);
    assert_true(prom_get(p, "parley_w_hist_count{t=\"1\"}") == (double)n);
    assert_true(prom_get(p, "parley_w_hist_sum{t=\"1\"}") == 106.0 * (double)n / 5);
    pl_buf_reset(&out);
    pl_metrics_render_json(r, &out);
    assert_true(json_valid(out.data));
    prom_free(p);
    free(p);
    pl_buf_deinit(&out);
    pl_metrics_destroy(r);
}

/* ---- process metrics ---------------------------------------------------------------- */

static void render_process(pl_metrics_t *r, prom_t *p)
{
    pl_buf_t out;
    pl_buf_init(&out);
    prom_free(p);
    pl_metrics_render_prometheus(r, &out);
    assert_true(prom_check(out.data, p));
    pl_buf_deinit(&out);
}

static void *blocked_reader(void *arg)
{
    char c;
    PL_UNUSED(read(*(int *)arg, &c, 1));
    return NULL;
}

static void test_process(void **state)
{
    (void)state;
    pl_metrics_t *r = pl_metrics_create();
    prom_t *p = calloc(1, sizeof *p);
    pl_metrics_register_process(r);
    render_process(r, p);
    assert_int_equal(p->n, 7);
    double rss = prom_get(p, "parley_process_resident_memory_bytes");
    double vsz = prom_get(p, "parley_process_virtual_memory_bytes");
    double fds = prom_get(p, "parley_process_open_fds");
    double max = prom_get(p, "parley_process_max_fds");
    double cpu = prom_get(p, "parley_process_cpu_seconds_total");
    double start = prom_get(p, "parley_process_start_time_seconds");
    double threads = prom_get(p, "parley_process_threads");
    assert_true(rss > 4096 && vsz >= rss);
    assert_true(fds >= 3 && max >= fds);
    assert_true(cpu > 0 && cpu < 3600);
    assert_true(fabs(start - (double)time(NULL)) < 600);
    assert_true(threads >= 1);

    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    render_process(r, p);
    assert_true(prom_get(p, "parley_process_open_fds") == fds + 2);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, blocked_reader, &pfd[0]), 0);
    render_process(r, p);
    assert_true(prom_get(p, "parley_process_threads") == threads + 1);
    assert_true(prom_get(p, "parley_process_cpu_seconds_total") >= cpu);
    assert_int_equal(write(pfd[1], "x", 1), 1);
    pthread_join(th, NULL);
    close(pfd[0]);
    close(pfd[1]);
    prom_free(p);
    free(p);
    pl_metrics_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_labels_valid),
        cmocka_unit_test(test_registration_bugs_abort),
        cmocka_unit_test(test_checker_rejects),
        cmocka_unit_test(test_prometheus_golden),
        cmocka_unit_test(test_json_render),
        cmocka_unit_test(test_threads_exact),
        cmocka_unit_test(test_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
