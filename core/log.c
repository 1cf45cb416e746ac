/* log.c: the structured logger behind pl_log.h. Formats `event key=value` lines as text
 * or as one JSON object per line, escapes control characters and invalid UTF-8 so a
 * value can never start a new line (log injection), caps a line at PL_LOG_LINE_MAX bytes
 * and rate-limits each event to `burst` lines per second.
 *
 * Not here: rotation, syslog, asynchronous writing (the calling thread writes its line),
 * redaction of secrets (callers never pass them).
 *
 * Threading: every entry point is thread-safe. The sink below is the one process-wide
 * object parley allows: its mutex serialises the rate-limit table and the writes, so
 * lines never interleave; the level is an atomic read without the lock. Formatting
 * happens outside the lock. */
#include "core/pl_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define PL_LOG_BURST_DEFAULT 20
#define PL_LOG_WINDOW_MS 1000
#define PL_LOG_RL_SIZE 256          /* rate-limit entries; a power of two */
#define PL_LOG_RL_PROBE 8           /* linear-probe distance before evicting */

typedef struct pl_log_rl {
    uint64_t hash;                  /* FNV-1a of the event name; 0 = free */
    uint64_t window_start_ms;
    unsigned printed;               /* lines printed in the current window */
    unsigned suppressed;            /* lines dropped in the current window */
} pl_log_rl_t;

static struct {
    pthread_mutex_t mu;
    _Atomic int level;
    pl_log_format_t format;
    FILE *out;                      /* borrowed; NULL = stderr */
    unsigned burst;
    pl_log_rl_t rl[PL_LOG_RL_SIZE];
} g_log = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .level = PL_LOG_INFO,
    .format = PL_LOG_TEXT,
    .burst = PL_LOG_BURST_DEFAULT,
};

static const char *const level_names[] = { "debug", "info", "warn", "error", "off" };

/* ---- setup ---------------------------------------------------------------------- */

void pl_log_setup(pl_log_level_t level, pl_log_format_t format, FILE *out, unsigned burst)
{
    pthread_mutex_lock(&g_log.mu);
    g_log.format = format;
    g_log.out = out;
    g_log.burst = burst ? burst : PL_LOG_BURST_DEFAULT;
    memset(g_log.rl, 0, sizeof g_log.rl);
    pthread_mutex_unlock(&g_log.mu);
    pl_log_set_level(level);
}

void pl_log_set_level(pl_log_level_t level)
{
    atomic_store_explicit(&g_log.level, (int)level, memory_order_relaxed);
}

pl_log_level_t pl_log_get_level(void)
{
    return (pl_log_level_t)atomic_load_explicit(&g_log.level, memory_order_relaxed);
}

int pl_log_level_parse(const char *s, pl_log_level_t *out)
{
    for (size_t i = 0; s && i < PL_ARRAY_LEN(level_names); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (pl_log_level_t)i;
            return 0;
        }
    }
    if (s && strcasecmp(s, "warning") == 0) {
        *out = PL_LOG_WARN;
        return 0;
    }
    return PL_EPARSE;
}

int pl_log_format_parse(const char *s, pl_log_format_t *out)
{
    if (s && strcasecmp(s, "text") == 0)
        *out = PL_LOG_TEXT;
    else if (s && strcasecmp(s, "json") == 0)
        *out = PL_LOG_JSON;
    else
        return PL_EPARSE;
    return 0;
}

/* ---- rate limiting (caller holds g_log.mu) --------------------------------------- */

static uint64_t event_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;   /* FNV-1a 64 */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3u;
    return h ? h : 1;
}

static pl_log_rl_t *rl_find(uint64_t h)
{
    pl_log_rl_t *oldest = NULL;
    for (unsigned i = 0; i < PL_LOG_RL_PROBE; i++) {
        pl_log_rl_t *e = &g_log.rl[(h + i) & (PL_LOG_RL_SIZE - 1)];
        if (e->hash == h)
            return e;
        if (e->hash == 0) {
            e->hash = h;
            return e;
        }
        if (!oldest || e->window_start_ms < oldest->window_start_ms)
            oldest = e;
    }
    /* More live events than the table holds near this hash: the least recently
     * windowed one loses its history (worst case: a few extra lines get through). */
    memset(oldest, 0, sizeof *oldest);
    oldest->hash = h;
    return oldest;
}

/* True when the line may be printed; *carry receives the number of lines suppressed in
 * the event's previous window (to print as suppressed=N), else 0. */
static bool rl_admit(const char *event, uint64_t now_ms, unsigned *carry)
{
    pl_log_rl_t *e = rl_find(event_hash(event));
    *carry = 0;
    if (e->printed == 0 && e->suppressed == 0) {
        e->window_start_ms = now_ms;
    } else if (now_ms - e->window_start_ms >= PL_LOG_WINDOW_MS) {
        *carry = e->suppressed;
        e->window_start_ms = now_ms;
        e->printed = 0;
        e->suppressed = 0;
    }
    if (e->printed >= g_log.burst) {
        e->suppressed++;
        return false;
    }
    e->printed++;
    return true;
}

/* ---- bounded line writer ---------------------------------------------------------- */

/* Pieces are appended whole or not at all, so an escape or a UTF-8 sequence is never
 * cut; `reserve` bytes stay free for the closing text written by line_tail. */
typedef struct line {
    char buf[PL_LOG_LINE_MAX + 2];
    size_t len;
    size_t reserve;
    bool full;
} line_t;

static bool line_put(line_t *l, const char *s, size_t n)
{
    if (l->full || l->len + n + l->reserve > PL_LOG_LINE_MAX) {
        l->full = true;
        return false;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

static void line_tail(line_t *l, const char *s)
{
    size_t n = strlen(s);
    PL_ASSERT(l->len + n <= sizeof l->buf);
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 §4), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4;
    else
        return 0;
    if (p[0] == 0xe0)
        lo = 0xa0;              /* overlong */
    else if (p[0] == 0xed)
        hi = 0x9f;              /* UTF-16 surrogates */
    else if (p[0] == 0xf0)
        lo = 0x90;              /* overlong */
    else if (p[0] == 0xf4)
        hi = 0x8f;              /* above U+10FFFF */
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* Appends s[0..n) escaped: control characters become \n \r \t, \xHH (text) or \u00HH
 * (JSON); invalid UTF-8 becomes \xHH (text) or U+FFFD (JSON). In text, C1 controls
 * (U+0080..U+009F) are escaped too: some terminals act on them like ESC. */
static void put_esc(line_t *l, const char *s, size_t n, bool json)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end && !l->full) {
        char tmp[16];
        const char *piece = tmp;
        unsigned c = *p;
        size_t used = c < 0x80 ? 1 : utf8_len(p, end);
        if (c == '\n') {
            piece = "\\n";
        } else if (c == '\r') {
            piece = "\\r";
        } else if (c == '\t') {
            piece = "\\t";
        } else if (json && (c == '"' || c == '\\')) {
            snprintf(tmp, sizeof tmp, "\\%c", (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof tmp, json ? "\\u%04x" : "\\x%02x", c);
        } else if (used == 0) {
            used = 1;
            piece = json ? "\\ufffd" : tmp;
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
        } else if (!json && c == 0xc2 && p[1] < 0xa0) {
            snprintf(tmp, sizeof tmp, "\\x%02x\\x%02x", c, p[1]);
        } else {
            piece = (const char *)p;
        }
        size_t plen = piece == (const char *)p ? used : strlen(piece);
        if (line_put(l, piece, plen))
            p += used;
    }
}

static void put_str(line_t *l, const char *s)
{
    line_put(l, s, strlen(s));
}

/* ISO-8601 UTC with milliseconds: 2026-11-27T18:40:01.123Z */
static void format_ts(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

/* ---- text format ------------------------------------------------------------------ */

typedef struct rec {
    const char *ts;
    pl_log_level_t level;
    const char *event;
    unsigned suppressed;
    const char *fields;
} rec_t;

static void build_text(line_t *l, const rec_t *r)
{
    char num[32];
    l->reserve = 3;
    put_str(l, r->ts);
    put_str(l, " ");
    put_str(l, level_names[r->level]);
    put_str(l, " ");
    put_esc(l, r->event, strlen(r->event), false);
    if (r->suppressed) {
        snprintf(num, sizeof num, " suppressed=%u", r->suppressed);
        put_str(l, num);
    }
    if (r->fields[0]) {
        put_str(l, " ");
        put_esc(l, r->fields, strlen(r->fields), false);
    }
    if (l->full)
        line_tail(l, "...");
}

/* ---- JSON format ------------------------------------------------------------------ */

/* One key=value token of the formatted field text. key_len 0: a bare word (msg). */
typedef struct field {
    const char *key;
    size_t key_len;
    const char *val;                /* unescaped value, in caller's scratch */
    size_t val_len;
} field_t;

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reverses pl_log_q's escapes inside a quoted value. Returns the chars consumed. */
static size_t unescape(const char *p, char *out)
{
    switch (p[1]) {
    case '"': *out = '"'; return 2;
    case '\\': *out = '\\'; return 2;
    case 'n': *out = '\n'; return 2;
    case 'r': *out = '\r'; return 2;
    case 't': *out = '\t'; return 2;
    case 'x':
        if (hexval(p[2]) >= 0 && hexval(p[3]) >= 0) {
            *out = (char)(hexval(p[2]) * 16 + hexval(p[3]));
            return 4;
        }
        break;
    default: break;
    }
    *out = '\\';
    return 1;
}

/* Parses the next field from p into f (value into scratch, which holds strlen(p)+1).
 * Returns where parsing stopped, or NULL at the end. */
static const char *next_field(const char *p, field_t *f, char *scratch)
{
    while (*p == ' ')
        p++;
    if (!*p)
        return NULL;
    const char *q = p;
    while (*q && *q != ' ' && *q != '=' && *q != '"')
        q++;
    f->key = p;
    f->key_len = 0;
    if (*q == '=' && q > p) {
        f->key_len = (size_t)(q - p);
        p = q + 1;
    }
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"';) {
            if (*p == '\\' && p[1])
                p += unescape(p, &scratch[n++]);
            else
                scratch[n++] = *p++;
        }
        if (*p == '"')
            p++;
    }
    while (*p && *p != ' ')
        scratch[n++] = *p++;
    scratch[n] = '\0';
    f->val = scratch;
    f->val_len = n;
    return p;
}

enum { J_OUT, J_KEY, J_VAL };

/* Appends ,"key":"value" tracking where a truncation left the object. */
static void json_member(line_t *l, int *state, const field_t *f, const char *key_prefix)
{
    if (!line_put(l, ",\"", 2))
        return;
    *state = J_KEY;
    put_str(l, key_prefix);
    put_esc(l, f->key, f->key_len, true);
    if (!line_put(l, "\":\"", 3))
        return;
    *state = J_VAL;
    put_esc(l, f->val, f->val_len, true);
    if (line_put(l, "\"", 1))
        *state = J_OUT;
}

static bool reserved_key(const field_t *f)
{
    static const char *const keys[] = { "ts", "level", "event", "suppressed" };
    for (size_t i = 0; i < PL_ARRAY_LEN(keys); i++)
        if (f->key_len == strlen(keys[i]) && memcmp(f->key, keys[i], f->key_len) == 0)
            return true;
    return false;
}

/* Bare words and explicit msg=... fields join into one "msg" member. */
static void msg_append(char *msg, size_t *len, const field_t *f)
{
    if (*len && *len < PL_LOG_LINE_MAX)
        msg[(*len)++] = ' ';
    size_t n = PL_MIN(f->val_len, PL_LOG_LINE_MAX - *len);
    memcpy(msg + *len, f->val, n);
    *len += n;
}

static void json_fields(line_t *l, int *state, const char *fields)
{
    char scratch[PL_LOG_LINE_MAX + 1], msg[PL_LOG_LINE_MAX + 1];
    size_t msg_len = 0;
    field_t f;
    for (const char *p = next_field(fields, &f, scratch); p; p = next_field(p, &f, scratch)) {
        if (f.key_len == 0 || (f.key_len == 3 && memcmp(f.key, "msg", 3) == 0)) {
            msg_append(msg, &msg_len, &f);
            continue;
        }
        /* A field may not shadow the line's own members: key ts becomes _ts. */
        json_member(l, state, &f, reserved_key(&f) ? "_" : "");
    }
    if (msg_len) {
        field_t m = { .key = "msg", .key_len = 3, .val = msg, .val_len = msg_len };
        json_member(l, state, &m, "");
    }
}

static void build_json(line_t *l, const rec_t *r)
{
    int state = J_OUT;
    char num[16];
    /* Worst-case closing text: ..." then :"" (truncated inside a key) then }. */
    l->reserve = 8;
    put_str(l, "{\"ts\":\"");
    put_str(l, r->ts);
    put_str(l, "\",\"level\":\"");
    put_str(l, level_names[r->level]);
    put_str(l, "\"");
    field_t ev = { .key = "event", .key_len = 5, .val = r->event, .val_len = strlen(r->event) };
    json_member(l, &state, &ev, "");
    if (r->suppressed) {
        snprintf(num, sizeof num, "%u", r->suppressed);
        field_t s = { .key = "suppressed", .key_len = 10, .val = num, .val_len = strlen(num) };
        json_member(l, &state, &s, "");
    }
    json_fields(l, &state, r->fields);
    if (l->full && state == J_KEY)
        line_tail(l, "...\":\"\"");
    else if (l->full && state == J_VAL)
        line_tail(l, "...\"");
    line_tail(l, "}");
}

/* ---- entry points ----------------------------------------------------------------- */

void pl_log(pl_log_level_t level, const char *event, const char *fmt, ...)
{
    if ((int)level < atomic_load_explicit(&g_log.level, memory_order_relaxed) ||
        level >= PL_LOG_OFF || (int)level < 0)
        return;
    if (!event)
        event = "-";
    unsigned carry;
    pthread_mutex_lock(&g_log.mu);
    bool admit = rl_admit(event, pl_now_mono_ms(), &carry);
    pl_log_format_t format = g_log.format;
    pthread_mutex_unlock(&g_log.mu);
    if (!admit)
        return;

    char fields[PL_LOG_LINE_MAX + 1], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fields, sizeof fields, fmt, ap);   /* longer text is cut: the line is too */
    va_end(ap);
    format_ts(ts);
    rec_t r = { .ts = ts, .level = level, .event = event, .suppressed = carry, .fields = fields };
    line_t l = { .len = 0, .reserve = 0, .full = false };
    if (format == PL_LOG_JSON)
        build_json(&l, &r);
    else
        build_text(&l, &r);
    line_tail(&l, "\n");

    pthread_mutex_lock(&g_log.mu);
    FILE *out = g_log.out ? g_log.out : stderr;
    fwrite(l.buf, 1, l.len, out);
    fflush(out);
    pthread_mutex_unlock(&g_log.mu);
}

static bool needs_quote(const char *v)
{
    if (!*v)
        return true;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || *p < 0x20 || *p == 0x7f)
            return true;
    return false;
}

/* Output of pl_log_q; buf NULL measures only. */
typedef struct qout {
    char *buf;
    size_t cap;
    size_t len;
    size_t reserve;         /* room kept for the "..." marker and closing quote */
} qout_t;

/* Appends one unit of p (escaped when quoted; a UTF-8 sequence is kept whole).
 * Returns the input bytes consumed, or 0 when it does not fit. */
static size_t q_unit(qout_t *q, const unsigned char *p, bool quoted)
{
    static const char *const named[] = { ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t" };
    char tmp[8];
    size_t in = 1, n = 1;
    const char *piece = (const char *)p;
    if (quoted && (*p == '"' || *p == '\\')) {
        snprintf(tmp, sizeof tmp, "\\%c", (char)*p);
        piece = tmp;
    } else if (quoted && (*p < 0x20 || *p == 0x7f)) {
        snprintf(tmp, sizeof tmp, "\\x%02x", *p);
        piece = (*p < PL_ARRAY_LEN(named) && named[*p]) ? named[*p] : tmp;
    } else {
        while (*p >= 0x80 && (p[in] & 0xc0) == 0x80 && in < 4)
            in++;
        n = in;
    }
    if (piece != (const char *)p)
        n = strlen(piece);
    if (q->buf && q->len + n + q->reserve + 1 > q->cap)
        return 0;
    if (q->buf)
        memcpy(q->buf + q->len, piece, n);
    q->len += n;
    return in;
}

char *pl_log_q(char *buf, size_t cap, const char *value)
{
    if (cap == 0)
        return buf;
    if (!value)
        value = "(null)";
    bool quoted = needs_quote(value);
    const unsigned char *p = (const unsigned char *)value;
    qout_t dry = { .buf = NULL, .cap = 0, .len = quoted ? 2 : 0, .reserve = 0 };
    while (*p)
        p += q_unit(&dry, p, quoted);
    qout_t q = { .buf = buf, .cap = cap, .len = 0, .reserve = 0 };
    if (dry.len + 1 > cap)
        q.reserve = quoted ? 4 : 3;
    if (q.reserve + (quoted ? 1 : 0) + 1 > cap) {    /* no room even for the marker */
        snprintf(buf, cap, "%s", "...");
        return buf;
    }
    if (quoted)
        buf[q.len++] = '"';
    for (p = (const unsigned char *)value; *p;) {
        size_t used = q_unit(&q, p, quoted);
        if (!used)
            break;
        p += used;
    }
    if (*p) {
        memcpy(buf + q.len, "...", 3);
        q.len += 3;
    }
    if (quoted)
        buf[q.len++] = '"';
    buf[q.len] = '\0';
    return buf;
}
