/* test_log.c: pl_log text and JSON lines parsed back, log injection attempts, level
 * filtering, the 4 KiB line cap, per-event rate limiting with suppressed=N, pl_log_q,
 * and concurrent writers never interleaving. Output goes to an open_memstream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "core/pl_log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- capture ---------------------------------------------------------------------- */

typedef struct capture {
    FILE *f;
    char *buf;
    size_t len;
} capture_t;

static void cap_begin(capture_t *c, pl_log_level_t level, pl_log_format_t fmt, unsigned burst)
{
    c->buf = NULL;
    c->f = open_memstream(&c->buf, &c->len);
    assert_non_null(c->f);
    pl_log_setup(level, fmt, c->f, burst);
}

/* Returns the captured text (owned) and points the logger back at stderr. */
static char *cap_end(capture_t *c)
{
    pl_log_setup(PL_LOG_INFO, PL_LOG_TEXT, NULL, 0);
    fclose(c->f);
    return c->buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Splits text into lines in place; returns the count (at most max). */
static size_t split_lines(char *text, char **lines, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l && n < max; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

/* ---- a strict parser for flat JSON objects of string members ---------------------- */

#define J_MAX_MEMBERS 32
typedef struct jobj {
    size_t n;
    char *key[J_MAX_MEMBERS];
    char *val[J_MAX_MEMBERS];
} jobj_t;

static void jobj_free(jobj_t *o)
{
    for (size_t i = 0; i < o->n; i++) {
        free(o->key[i]);
        free(o->val[i]);
    }
    o->n = 0;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
}

/* Raw bytes must be valid UTF-8 (RFC 8259 §8.1); a lone surrogate escape is refused. */
static size_t utf8_ok(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = (p[0] >= 0xc2 && p[0] <= 0xdf) ? 2 : (p[0] >= 0xe0 && p[0] <= 0xef) ? 3
             : (p[0] >= 0xf0 && p[0] <= 0xf4) ? 4 : 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* Parses a JSON string at *pp into a new heap string. Returns NULL when malformed. */
static char *jstr(const char **pp)
{
    const char *p = *pp;
    if (*p++ != '"')
        return NULL;
    char *out = malloc(strlen(p) * 3 + 1);
    size_t n = 0;
    while (*p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            goto bad;                       /* also the terminating NUL */
        if (c != '\\') {
            size_t u = utf8_ok((const unsigned char *)p);
            if (!u)
                goto bad;
            memcpy(out + n, p, u);
            n += u;
            p += u;
            continue;
        }
        p++;
        const char *simple = strchr("\"\\/bfnrt", *p);
        if (*p && simple) {
            out[n++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            p++;
        } else if (*p == 'u' && hex4(p + 1) >= 0) {
            int cp = hex4(p + 1);
            if (cp >= 0xd800 && cp <= 0xdfff)
                goto bad;
            n += put_utf8(out + n, (unsigned)cp);
            p += 5;
        } else {
            goto bad;
        }
    }
    out[n] = '\0';
    *pp = p + 1;
    return out;
bad:
    free(out);
    return NULL;
}

/* A whole line must be exactly one object of string members, nothing else. */
static bool parse_flat(const char *line, jobj_t *o)
{
    const char *p = line;
    o->n = 0;
    if (*p++ != '{')
        return false;
    if (*p == '}')
        return p[1] == '\0';
    for (;;) {
        if (o->n == J_MAX_MEMBERS)
            return false;
        char *k = jstr(&p);
        if (!k)
            return false;
        o->key[o->n] = k;
        o->val[o->n] = NULL;
        o->n++;
        if (*p++ != ':')
            return false;
        if (!(o->val[o->n - 1] = jstr(&p)))
            return false;
        if (*p == '}')
            return p[1] == '\0';
        if (*p++ != ',')
            return false;
    }
}

static const char *jget(const jobj_t *o, const char *key)
{
    const char *found = NULL;
    for (size_t i = 0; i < o->n; i++) {
        if (o->val[i] && strcmp(o->key[i], key) == 0) {
            assert_null(found);             /* duplicate member names */
            found = o->val[i];
        }
    }
    return found;
}

/* Parses the single JSON line in text into o (asserting exactly one line). */
static void parse_one_json(char *text, jobj_t *o)
{
    assert_int_equal(count_lines(text), 1);
    size_t len = strlen(text);
    assert_true(len >= 2 && text[len - 1] == '\n');
    text[len - 1] = '\0';
    bool ok = parse_flat(text, o);
    if (!ok)
        fprintf(stderr, "not valid JSON: %s\n", text);
    assert_true(ok);
}

/* ---- timestamps -------------------------------------------------------------------- */

/* Checks "YYYY-MM-DDTHH:MM:SS.mmmZ" and that it is within a minute of now. */
static void check_ts(const char *ts)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd')
            assert_true(ts[i] >= '0' && ts[i] <= '9');
        else
            assert_int_equal(ts[i], shape[i]);
    }
    struct tm tm = { 0 };
    assert_non_null(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm);
    assert_true(llabs((long long)(t - time(NULL))) < 60);
}

/* ---- text format ------------------------------------------------------------------ */

static void test_text_line(void **state)
{
    (void)state;
    capture_t c;
    cap_begin(&c, PL_LOG_INFO, PL_LOG_TEXT, 0);
    pl_log_info("turn.alloc.created", "alloc=%d user=%s", 17, "alice");
    pl_log_warn("turn.alloc.expired", "alloc=%d", 18);
    pl_log_error("core.empty", "%s", "");
    char *out = cap_end(&c);
    char *lines[4];
    assert_int_equal(split_lines(out, lines, 4), 3);
    check_ts(lines[0]);
    assert_int_equal(strlen(lines[0]), 24 + strlen(" info turn.alloc.created alloc=17 user=alice"));
    assert_string_equal(lines[0] + 24, " info turn.alloc.created alloc=17 user=alice");
    check_ts(lines[1]);
    assert_string_equal(lines[1] + 24, " warn turn.alloc.expired alloc=18");
    assert_string_equal(lines[2] + 24, " error core.empty");   /* no trailing space */
    free(out);
}

/* ---- JSON format ------------------------------------------------------------------ */

static void test_json_line(void **state)
{
    (void)state;
    capture_t c;
    jobj_t o;
    cap_begin(&c, PL_LOG_DEBUG, PL_LOG_JSON, 0);
    pl_log_debug("turn.alloc.created", "alloc=%d user=%s", 17, "alice");
    char *out = cap_end(&c);
    parse_one_json(out, &o);
    assert_int_equal(o.n, 5);
    assert_string_equal(o.key[0], "ts");
    assert_string_equal(o.key[1], "level");
    assert_string_equal(o.key[2], "event");
    check_ts(jget(&o, "ts"));
    assert_string_equal(jget(&o, "level"), "debug");
    assert_string_equal(jget(&o, "event"), "turn.alloc.created");
    assert_string_equal(jget(&o, "alloc"), "17");
    assert_string_equal(jget(&o, "user"), "alice");
    jobj_free(&o);
    free(out);
}

/* Quoted values come back unescaped; bare words join into msg; a field named like a
 * line member cannot replace it. */
static void test_json_fields(void **state)
{
    (void)state;
    capture_t c;
    jobj_t o;
    char q[128];
    cap_begin(&c, PL_LOG_INFO, PL_LOG_JSON, 0);
    pl_log_info("chat.msg", "hello world user=%s level=error ts=0 tail empty=%s x=a\"b",
                pl_log_q(q, sizeof q, "Bob \"the\" Builder=1"), PL_LOG_QUOTED(""));
    char *out = cap_end(&c);
    parse_one_json(out, &o);
    assert_string_equal(jget(&o, "user"), "Bob \"the\" Builder=1");
    assert_string_equal(jget(&o, "level"), "info");
    assert_string_equal(jget(&o, "_level"), "error");
    assert_string_equal(jget(&o, "_ts"), "0");
    assert_string_equal(jget(&o, "msg"), "hello world tail");
    assert_string_equal(jget(&o, "empty"), "");
    assert_string_equal(jget(&o, "x"), "a\"b");
    assert_string_equal(o.key[o.n - 1], "msg");
    jobj_free(&o);
    free(out);
}

/* ---- injection -------------------------------------------------------------------- */

static const char *const nasty[] = {
    "bob\n2026-01-01T00:00:00.000Z error admin.login user=root",
    "x\",\"level\":\"error",
    "back\\slash\\\" and \\n literal",
    "cr\rlf\r\n tab\t esc\x1b[31m del\x7f bell\a",
    "\"",
    "\\",
    "=",
    "utf8 \xc3\xa9\xe2\x82\xac ok",
};

static void test_injection_text(void **state)
{
    (void)state;
    for (size_t i = 0; i < PL_ARRAY_LEN(nasty); i++) {
        capture_t c;
        char q[256];
        cap_begin(&c, PL_LOG_INFO, PL_LOG_TEXT, 0);
        pl_log_info("inj.raw", "user=%s", nasty[i]);
        pl_log_info("inj.quoted", "user=%s", pl_log_q(q, sizeof q, nasty[i]));
        char *out = cap_end(&c);
        assert_int_equal(count_lines(out), 2);
        for (const unsigned char *p = (const unsigned char *)out; *p; p++)
            assert_true(*p == '\n' || (*p >= 0x20 && *p != 0x7f));
        free(out);
    }
    capture_t c;
    cap_begin(&c, PL_LOG_INFO, PL_LOG_TEXT, 0);
    pl_log_info("inj.raw", "user=%s", "a\nb\x01");
    char *out = cap_end(&c);
    assert_non_null(strstr(out, " inj.raw user=a\\nb\\x01\n"));
    free(out);
}

/* Both paths give valid JSON on one line; through pl_log_q the value survives exactly. */
static void test_injection_json(void **state)
{
    (void)state;
    for (size_t i = 0; i < PL_ARRAY_LEN(nasty); i++) {
        capture_t c;
        jobj_t o;
        cap_begin(&c, PL_LOG_INFO, PL_LOG_JSON, 0);
        pl_log_info("inj.quoted", "user=%s", PL_LOG_QUOTED(nasty[i]));
        char *out = cap_end(&c);
        parse_one_json(out, &o);
        assert_string_equal(jget(&o, "level"), "info");
        assert_string_equal(jget(&o, "user"), nasty[i]);
        jobj_free(&o);
        free(out);

        cap_begin(&c, PL_LOG_INFO, PL_LOG_JSON, 0);
        pl_log_info("inj.raw", "user=%s", nasty[i]);
        out = cap_end(&c);
        parse_one_json(out, &o);
        assert_string_equal(jget(&o, "level"), "info");
        assert_string_equal(jget(&o, "event"), "inj.raw");
        jobj_free(&o);
        free(out);
    }
}

/* Invalid UTF-8 cannot make the JSON invalid: it becomes U+FFFD. */
static void test_json_invalid_utf8(void **state)
{
    (void)state;
    capture_t c;
    jobj_t o;
    cap_begin(&c, PL_LOG_INFO, PL_LOG_JSON, 0);
    pl_log_info("bad.utf8", "v=a\xff\xc3(\xed\xa0\x80z");
    char *out = cap_end(&c);
    parse_one_json(out, &o);
    const char *v = jget(&o, "v");
    assert_non_null(v);
    assert_int_equal(v[0], 'a');
    assert_memory_equal(v + 1, "\xef\xbf\xbd", 3);
    assert_int_equal(v[strlen(v) - 1], 'z');
    jobj_free(&o);
    free(out);

    cap_begin(&c, PL_LOG_INFO, PL_LOG_TEXT, 0);
    pl_log_info("bad.utf8", "v=a\xff\xc2\x9b" "b");
    out = cap_end(&c);
    assert_non_null(strstr(out, "v=a\\xff\\xc2\\x9bb\n"));   /* C1 CSI escaped too */
    free(out);
}

/* ---- levels ------------------------------------------------------------------------ */

static void test_levels(void **state)
{
    (void)state;
    capture_t c;
    cap_begin(&c, PL_LOG_WARN, PL_LOG_TEXT, 0);
    assert_int_equal(pl_log_get_level(), PL_LOG_WARN);
    assert_false(PL_LOG_DEBUG_ON());
    pl_log_debug("lvl.d", "n=1");
    pl_log_info("lvl.i", "n=2");
    pl_log_warn("lvl.w", "n=3");
    pl_log_error("lvl.e", "n=4");
    pl_log(PL_LOG_OFF, "lvl.off", "n=5");           /* OFF is not a message level */
    pl_log((pl_log_level_t)42, "lvl.bogus", "n=6");
    pl_log_set_level(PL_LOG_DEBUG);
    assert_true(PL_LOG_DEBUG_ON());
    pl_log_debug("lvl.d", "n=7");
    pl_log_set_level(PL_LOG_OFF);
    pl_log_error("lvl.e", "n=8");
    char *out = cap_end(&c);
    char *lines[8];
    assert_int_equal(split_lines(out, lines, 8), 3);
    assert_string_equal(lines[0] + 24, " warn lvl.w n=3");
    assert_string_equal(lines[1] + 24, " error lvl.e n=4");
    assert_string_equal(lines[2] + 24, " debug lvl.d n=7");
    free(out);
}

static void test_parse(void **state)
{
    (void)state;
    pl_log_level_t l = PL_LOG_OFF;
    pl_log_format_t f = PL_LOG_JSON;
    assert_int_equal(pl_log_level_parse("debug", &l), 0);
    assert_int_equal(l, PL_LOG_DEBUG);
    assert_int_equal(pl_log_level_parse("WARN", &l), 0);
    assert_int_equal(l, PL_LOG_WARN);
    assert_int_equal(pl_log_level_parse("off", &l), 0);
    assert_int_equal(l, PL_LOG_OFF);
    assert_int_equal(pl_log_level_parse("error", &l), 0);
    assert_int_equal(l, PL_LOG_ERROR);
    assert_int_equal(pl_log_level_parse("verbose", &l), PL_EPARSE);
    assert_int_equal(pl_log_level_parse("", &l), PL_EPARSE);
    assert_int_equal(pl_log_level_parse(NULL, &l), PL_EPARSE);
    assert_int_equal(l, PL_LOG_ERROR);             /* untouched on failure */
    assert_int_equal(pl_log_format_parse("text", &f), 0);
    assert_int_equal(f, PL_LOG_TEXT);
    assert_int_equal(pl_log_format_parse("json", &f), 0);
    assert_int_equal(f, PL_LOG_JSON);
    assert_int_equal(pl_log_format_parse("xml", &f), PL_EPARSE);
}

/* ---- rate limiting ----------------------------------------------------------------- */

static void test_rate_limit(void **state)
{
    (void)state;
    capture_t c;
    cap_begin(&c, PL_LOG_INFO, PL_LOG_TEXT, 0);
    for (int i = 0; i < 1000; i++)
        pl_log_info("rl.burst", "i=%d", i);
    pl_log_info("rl.other", "i=0");                 /* another event is not limited */
    usleep(1100 * 1000);
    pl_log_info("rl.burst", "i=1000");
    pl_log_info("rl.burst", "i=1001");
    char *out = cap_end(&c);
    char *lines[64];
    assert_int_equal(split_lines(out, lines, 64), 20 + 1 + 2);
    assert_string_equal(lines[0] + 24, " info rl.burst i=0");
    assert_string_equal(lines[19] + 24, " info rl.burst i=19");
    assert_string_equal(lines[20] + 24, " info rl.other i=0");
    assert_string_equal(lines[21] + 24, " info rl.burst suppressed=980 i=1000");
    assert_string_equal(lines[22] + 24, " info rl.burst i=1001");
    free(out);
}

static void test_rate_limit_json_custom_burst(void **state)
{
    (void)state;
    capture_t c;
    jobj_t o;
    cap_begin(&c, PL_LOG_INFO, PL_LOG_JSON, 5);
    for (int i = 0; i < 1000; i++)
        pl_log_warn("rl.json", "i=%d", i);
    usleep(1100 * 1000);
    pl_log_warn("rl.json", "i=%d", 1000);
    char *out = cap_end(&c);
    char *lines[16];
    assert_int_equal(split_lines(out, lines, 16), 6);
    assert_true(parse_flat(lines[5], &o));
    assert_string_equal(jget(&o, "suppressed"), "995");
    assert_string_equal(jget(&o, "i"), "1000");
    jobj_free(&o);
    free(out);
}

/* ---- line cap ---------------------------------------------------------------------- */

static void test_truncation(void **state)
{
    (void)state;
    char *big = malloc(10001), *ctl = malloc(3001);
    memset(big, 'a', 10000);
    big[10000] = '\0';
    memset(ctl, '\x01', 3000);
    ctl[3000] = '\0';
    capture_t c;
    jobj_t o;

    cap_begin(&c, PL_LOG_INFO, PL_LOG_TEXT, 0);
    pl_log_info("trunc.text", "v=%s", big);
    char *out = cap_end(&c);
    assert_int_equal(count_lines(out), 1);
    size_t len = strlen(out);
    assert_int_equal(len, PL_LOG_LINE_MAX + 1);
    assert_string_equal(out + len - 6, "aa...\n");
    free(out);

    const char *vals[] = { big, ctl };
    for (size_t i = 0; i < 2; i++) {
        cap_begin(&c, PL_LOG_INFO, PL_LOG_JSON, 0);
        pl_log_info("trunc.json", "k=v v=%s", vals[i]);
        out = cap_end(&c);
        assert_true(strlen(out) <= PL_LOG_LINE_MAX + 1);
        assert_true(strlen(out) > PL_LOG_LINE_MAX - 16);
        parse_one_json(out, &o);
        const char *v = jget(&o, "v");
        assert_string_equal(jget(&o, "k"), "v");
        assert_string_equal(v + strlen(v) - 3, "...");
        jobj_free(&o);
        free(out);
    }

    /* Cut inside a key: still one valid object. */
    cap_begin(&c, PL_LOG_INFO, PL_LOG_JSON, 0);
    pl_log_info("trunc.key", "a=1 %.4050s=x", big);   /* fits the fields, not the line */
    out = cap_end(&c);
    parse_one_json(out, &o);
    assert_string_equal(jget(&o, "a"), "1");
    assert_string_equal(o.key[o.n - 1] + strlen(o.key[o.n - 1]) - 3, "...");
    jobj_free(&o);
    free(out);
    free(big);
    free(ctl);
}

/* ---- pl_log_q ---------------------------------------------------------------------- */

static void test_quote(void **state)
{
    (void)state;
    char b[64];
    assert_string_equal(pl_log_q(b, sizeof b, "plain"), "plain");
    assert_string_equal(pl_log_q(b, sizeof b, ""), "\"\"");
    assert_string_equal(pl_log_q(b, sizeof b, "a b"), "\"a b\"");
    assert_string_equal(pl_log_q(b, sizeof b, "k=v"), "\"k=v\"");
    assert_string_equal(pl_log_q(b, sizeof b, "say \"hi\""), "\"say \\\"hi\\\"\"");
    assert_string_equal(pl_log_q(b, sizeof b, "a\\b"), "a\\b");
    assert_string_equal(pl_log_q(b, sizeof b, "a b\\c"), "\"a b\\\\c\"");
    assert_string_equal(pl_log_q(b, sizeof b, "l1\nl2\r\t\x01"), "\"l1\\nl2\\r\\t\\x01\"");
    assert_string_equal(pl_log_q(b, sizeof b, NULL), "(null)");
    assert_string_equal(PL_LOG_QUOTED("x y"), "\"x y\"");

    /* Exact fit is not truncated; one byte less is. */
    assert_string_equal(pl_log_q(b, 6, "abcde"), "abcde");
    assert_string_equal(pl_log_q(b, 5, "abcde"), "a...");
    assert_string_equal(pl_log_q(b, 8, "ab cd"), "\"ab cd\"");
    assert_string_equal(pl_log_q(b, 7, "ab cd"), "\"a...\"");
    assert_string_equal(pl_log_q(b, 3, "abcdef"), "..");
    assert_string_equal(pl_log_q(b, 1, "abcdef"), "");
    b[0] = 'z';
    assert_ptr_equal(pl_log_q(b, 0, "abc"), b);
    assert_int_equal(b[0], 'z');

    char long_v[300];
    memset(long_v, 'x', sizeof long_v - 1);
    long_v[sizeof long_v - 1] = '\0';
    pl_log_q(b, 32, long_v);
    assert_int_equal(strlen(b), 31);
    assert_string_equal(b + 28, "...");
    for (size_t i = 0; i < sizeof long_v - 1; i += 3)
        memcpy(long_v + i, "a b", PL_MIN(3, sizeof long_v - 1 - i));
    pl_log_q(b, 32, long_v);
    assert_true(strlen(b) <= 31);
    assert_int_equal(b[0], '"');
    assert_string_equal(b + strlen(b) - 4, "...\"");

    /* A UTF-8 sequence is never cut: the byte before "..." ends a character. */
    char e[201];
    for (size_t i = 0; i < 200; i += 2)
        memcpy(e + i, "\xc3\xa9", 2);
    e[200] = '\0';
    for (size_t cap = 6; cap < 20; cap++) {
        pl_log_q(b, cap, e);
        size_t n = strlen(b);
        assert_true(n < cap);
        assert_string_equal(b + n - 3, "...");
        assert_int_equal((n - 3) % 2, 0);
    }
}

/* ---- threads ---------------------------------------------------------------------- */

#define T_THREADS 4
#define T_LINES 200

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char ev[32], pad[301];
    memset(pad, 'p', 300);
    pad[300] = '\0';
    snprintf(ev, sizeof ev, "thr.w%d", id);
    for (int i = 0; i < T_LINES; i++)
        pl_log_info(ev, "t=%d i=%d pad=%s", id, i, pad);
    return NULL;
}

static void test_threads_no_interleave(void **state)
{
    (void)state;
    capture_t c;
    pthread_t th[T_THREADS];
    cap_begin(&c, PL_LOG_INFO, PL_LOG_JSON, 1000);
    for (int i = 0; i < T_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < T_THREADS; i++)
        pthread_join(th[i], NULL);
    char *out = cap_end(&c);
    char **lines = calloc(T_THREADS * T_LINES + 1, sizeof *lines);
    int seen[T_THREADS] = { 0 };
    assert_int_equal(split_lines(out, lines, T_THREADS * T_LINES + 1), T_THREADS * T_LINES);
    for (size_t i = 0; i < T_THREADS * T_LINES; i++) {
        jobj_t o;
        assert_true(parse_flat(lines[i], &o));
        int t = atoi(jget(&o, "t"));
        assert_true(t >= 0 && t < T_THREADS);
        assert_int_equal(atoi(jget(&o, "i")), seen[t]++);   /* in order per thread */
        assert_int_equal(strlen(jget(&o, "pad")), 300);
        jobj_free(&o);
    }
    free(lines);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_line),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_injection_text),
        cmocka_unit_test(test_injection_json),
        cmocka_unit_test(test_json_invalid_utf8),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_rate_limit_json_custom_burst),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_threads_no_interleave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
