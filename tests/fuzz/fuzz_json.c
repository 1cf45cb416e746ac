/* fuzz_json.c: libFuzzer target for signaling/json_parse.c, differential against jansson.
 * pl_sig_json_loadb must give what json_loadb gives on every input, for both flag sets
 * parleyd uses: both NULL, or two values json_equal() calls equal with the same key
 * order in every object (handlers and re-serialised frames see members in order). */
#include "signaling/sig_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_order(json_t *a, json_t *b)
{
    if (json_is_object(a)) {
        void *ia = json_object_iter(a), *ib = json_object_iter(b);
        for (; ia && ib; ia = json_object_iter_next(a, ia),
                         ib = json_object_iter_next(b, ib)) {
            size_t na = json_object_iter_key_len(ia), nb = json_object_iter_key_len(ib);
            if (na != nb || memcmp(json_object_iter_key(ia), json_object_iter_key(ib), na))
                abort();
            same_order(json_object_iter_value(ia), json_object_iter_value(ib));
        }
        if (ia || ib)
            abort();
    } else if (json_is_array(a)) {
        for (size_t i = 0; i < json_array_size(a); i++)
            same_order(json_array_get(a, i), json_array_get(b, i));
    }
}

static void check(const char *buf, size_t size, size_t flags)
{
    json_error_t e1, e2;
    json_t *want = json_loadb(buf, size, flags, &e1);
    json_t *got = pl_sig_json_loadb(buf, size, flags, &e2);
    if (!want != !got || (want && !json_equal(want, got)))
        abort();
    if (want) {
        /* json_equal calls 1 and 1.0 different, but not reals that print differently. */
        same_order(want, got);
        char *a = json_dumps(want, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        char *b = json_dumps(got, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        if (!a || !b || strcmp(a, b))
            abort();
        free(a);
        free(b);
    }
    json_decref(want);
    json_decref(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY);
    check((const char *)data, size, JSON_REJECT_DUPLICATES);
    return 0;
}
