/* http_head.c: total HTTP/1.x request-head parser (RFC 9112 §2-§5, the subset the admin
 * endpoint needs). Rejects: control characters in the request line, a missing or
 * non-1.x version, header lines without a colon, obsolete line folding (RFC 9112 §5.2
 * allows rejecting it), bare CR. Accepts bare LF line ends (RFC 9112 §2.2). */
#include "app/http_head.h"

#include <string.h>
#include <strings.h>

bool pl_http_str_eq(pl_http_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* Finds the end of the line starting at pos; sets *next past the line ending.
 * Returns the line length or -1 when no complete line is present. */
static long line_end(const char *buf, size_t len, size_t pos, size_t *next)
{
    for (size_t i = pos; i < len; i++) {
        if (buf[i] == '\n') {
            size_t end = (i > pos && buf[i - 1] == '\r') ? i - 1 : i;
            *next = i + 1;
            return (long)(end - pos);
        }
    }
    return -1;
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int parse_request_line(const char *p, size_t n, pl_http_head_t *out)
{
    size_t i = 0;
    while (i < n && is_tchar(p[i]))
        i++;
    if (i == 0 || i >= n || p[i] != ' ')
        return PL_EPARSE;
    out->method = (pl_http_str_t){p, i};
    size_t t0 = ++i;
    while (i < n && p[i] != ' ') {
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return PL_EPARSE;
        i++;
    }
    if (i == t0 || i >= n || p[t0] != '/')
        return PL_EPARSE;
    pl_http_str_t target = {p + t0, i - t0};
    const char *q = memchr(target.p, '?', target.len);
    out->path = (pl_http_str_t){target.p, q ? (size_t)(q - target.p) : target.len};
    out->query = q ? (pl_http_str_t){q + 1, target.len - out->path.len - 1} : (pl_http_str_t){"", 0};
    i++;
    if (n - i != 8 || memcmp(p + i, "HTTP/1.", 7) != 0 || p[i + 7] < '0' || p[i + 7] > '9')
        return PL_EPARSE;
    out->minor_version = p[i + 7] - '0';
    return 0;
}

static int parse_header(const char *p, size_t n, pl_http_head_t *out)
{
    if (n > 0 && (p[0] == ' ' || p[0] == '\t'))
        return PL_EPARSE; /* obs-fold */
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return PL_EPARSE;
    size_t name_len = (size_t)(colon - p);
    for (size_t i = 0; i < name_len; i++)
        if (!is_tchar(p[i]))
            return PL_EPARSE;
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    for (const char *c = v; c < end; c++)
        if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
            return PL_EPARSE;
    if (name_len == 13 && strncasecmp(p, "Authorization", 13) == 0)
        out->authorization = (pl_http_str_t){v, (size_t)(end - v)};
    return 0;
}

int pl_http_head_parse(const char *buf, size_t len, pl_http_head_t *out)
{
    memset(out, 0, sizeof *out);
    size_t pos = 0, next = 0;
    long n = line_end(buf, len, pos, &next);
    if (n < 0)
        return PL_HTTP_HEAD_INCOMPLETE;
    if (memchr(buf, '\r', (size_t)n) || parse_request_line(buf, (size_t)n, out) != 0)
        return PL_EPARSE;
    for (;;) {
        pos = next;
        n = line_end(buf, len, pos, &next);
        if (n < 0)
            return PL_HTTP_HEAD_INCOMPLETE;
        if (n == 0) {
            out->head_len = next;
            return 0;
        }
        if (memchr(buf + pos, '\r', (size_t)n) || memchr(buf + pos, '\0', (size_t)n) ||
            parse_header(buf + pos, (size_t)n, out) != 0)
            return PL_EPARSE;
    }
}
