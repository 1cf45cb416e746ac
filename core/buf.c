/* buf.c: growable NUL-terminated byte buffer (control plane; aborts on OOM). */
#include "core/pl_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pl_buf_init(pl_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void pl_buf_deinit(pl_buf_t *b)
{
    free(b->data);
    pl_buf_init(b);
}

void pl_buf_reset(pl_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void pl_buf_reserve(pl_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    b->data = pl_xrealloc(b->data, cap);
    b->cap = cap;
}

void pl_buf_append(pl_buf_t *b, const void *data, size_t len)
{
    pl_buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void pl_buf_puts(pl_buf_t *b, const char *s)
{
    pl_buf_append(b, s, strlen(s));
}

void pl_buf_printf(pl_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        pl_buf_append(b, small, (size_t)n);
        return;
    }
    pl_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void pl_buf_put_u64(pl_buf_t *b, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    pl_buf_append(b, tmp + i, sizeof(tmp) - i);
}

void pl_buf_put_i64(pl_buf_t *b, int64_t v)
{
    if (v < 0) {
        pl_buf_append(b, "-", 1);
        pl_buf_put_u64(b, -(uint64_t)v);        /* exact for INT64_MIN too */
    } else {
        pl_buf_put_u64(b, (uint64_t)v);
    }
}

void pl_buf_json_str(pl_buf_t *b, const char *s)
{
    pl_buf_append(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s, *run = p;
    for (;; p++) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        pl_buf_append(b, run, (size_t)(p - run));   /* the plain run before c, at once */
        run = p + 1;
        switch (c) {
        case '\0': pl_buf_append(b, "\"", 1); return;
        case '"': pl_buf_append(b, "\\\"", 2); break;
        case '\\': pl_buf_append(b, "\\\\", 2); break;
        case '\n': pl_buf_append(b, "\\n", 2); break;
        case '\r': pl_buf_append(b, "\\r", 2); break;
        case '\t': pl_buf_append(b, "\\t", 2); break;
        default: pl_buf_printf(b, "\\u%04x", c);
        }
    }
}

void pl_buf_consume(pl_buf_t *b, size_t n)
{
    if (n >= b->len) {
        pl_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}
