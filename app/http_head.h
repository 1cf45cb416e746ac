/* http_head.h: a small, total parser for an HTTP/1.x request head (request line and
 * headers), for the admin endpoint. It reads only what the admin endpoint needs:
 * method, path (query string split off), version and the Authorization header.
 * Pure: no I/O, no allocation; results point into the caller's buffer. */
#ifndef PL_HTTP_HEAD_H
#define PL_HTTP_HEAD_H

#include "core/pl_common.h"

typedef struct pl_http_str {
    const char *p;
    size_t len;
} pl_http_str_t;

typedef struct pl_http_head {
    pl_http_str_t method;
    pl_http_str_t path;          /* without the query string */
    pl_http_str_t query;
    pl_http_str_t authorization; /* value of the Authorization header, if any */
    int minor_version;           /* HTTP/1.<minor> */
    size_t head_len;             /* bytes up to and including the blank line */
} pl_http_head_t;

enum { PL_HTTP_HEAD_INCOMPLETE = 1 };

/* Parses buf[0..len). Returns 0 when a whole head was parsed, PL_HTTP_HEAD_INCOMPLETE
 * when more bytes are needed, or PL_EPARSE for a malformed head. */
int pl_http_head_parse(const char *buf, size_t len, pl_http_head_t *out);
bool pl_http_str_eq(pl_http_str_t s, const char *lit);

#endif
