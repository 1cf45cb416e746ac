/* fuzz_http_head.c: libFuzzer target for the admin endpoint's request-head parser.
 * Invariants checked beyond "no crash": a parsed head's fields lie inside the input and
 * head_len never exceeds it. */
#include "app/http_head.h"

#include <stdlib.h>

static void inside(const pl_http_str_t *s, const char *buf, size_t len)
{
    if (s->len && (s->p < buf || s->p + s->len > buf + len))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    pl_http_head_t h;
    if (pl_http_head_parse(buf, size, &h) == 0) {
        if (h.head_len > size || h.head_len == 0)
            abort();
        inside(&h.method, buf, size);
        inside(&h.path, buf, size);
        inside(&h.query, buf, size);
        inside(&h.authorization, buf, size);
    }
    return 0;
}
