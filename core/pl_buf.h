/* pl_buf.h: a growable byte buffer for building responses and rendered text
 * (control plane: grows with pl_xrealloc, aborts on OOM). Always NUL-terminated.
 * Not thread-safe; owned by whoever created it. */
#ifndef PL_BUF_H
#define PL_BUF_H

#include "core/pl_common.h"

typedef struct pl_buf {
    char *data;
    size_t len;
    size_t cap;
} pl_buf_t;

void pl_buf_init(pl_buf_t *b);
void pl_buf_deinit(pl_buf_t *b);
void pl_buf_reset(pl_buf_t *b);                 /* len = 0, keeps memory */
void pl_buf_reserve(pl_buf_t *b, size_t extra);
void pl_buf_append(pl_buf_t *b, const void *data, size_t len);
void pl_buf_puts(pl_buf_t *b, const char *s);
void pl_buf_printf(pl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append v in decimal: printf's "%llu" / "%lld" without vsnprintf (hot JSON text). */
void pl_buf_put_u64(pl_buf_t *b, uint64_t v);
void pl_buf_put_i64(pl_buf_t *b, int64_t v);
/* Appends s as a JSON string literal (with quotes and escapes). */
void pl_buf_json_str(pl_buf_t *b, const char *s);
/* Removes the first n bytes. */
void pl_buf_consume(pl_buf_t *b, size_t n);

#endif
