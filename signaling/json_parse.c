/* json_parse.c: a faster json_loadb for frames, giving jansson's result on every input.
 *
 * Every WebSocket frame, router message and HTTP body is JSON, and jansson's parser
 * reads it a character at a time through a stream layer: 3.1 us for a typical
 * chat.send frame (a 136-character ciphertext), against 0.8 us when yajl's table-driven
 * lexer builds the same jansson tree (docs/BENCHMARKS.md). Handlers keep using json_t.
 *
 * Sameness by construction, not by re-implementing jansson's grammar: yajl only takes
 * the inputs on which the two parsers cannot differ, and jansson decides everything
 * else. A frame goes straight to jansson when it holds a backslash (yajl replaces bad
 * surrogate escapes with '?' where jansson refuses them, and decodes \u0000), a vertical
 * tab or form feed (whitespace to yajl, not to JSON), or an odd number of quotes (yajl
 * does not call an unterminated string after a complete value trailing garbage).
 * yajl's tree is thrown away and jansson's taken whenever yajl fails for any reason, a
 * string is not strict UTF-8 (yajl lets overlong forms and encoded surrogates through),
 * a key repeats, the nesting is deeper than PL_SIG_JSON_FAST_DEPTH, a key is longer
 * than the key buffer, or the top-level value is a scalar and JSON_DECODE_ANY was not
 * asked for. So errors are always jansson's, with its messages. tests/fuzz/fuzz_json.c
 * checks the sameness on arbitrary bytes.
 *
 * Threading: pure functions; any thread. */
#include "signaling/sig_int.h"

#include <string.h>
#include <yajl/yajl_parse.h>

#define PL_SIG_JSON_FAST_DEPTH 32
#define PL_SIG_JSON_KEY_MAX 256

typedef struct {
    json_t *root;
    json_t *stack[PL_SIG_JSON_FAST_DEPTH]; /* open objects and arrays, innermost last */
    int depth;
    size_t key_len;                        /* the pending key of the innermost object */
    char key[PL_SIG_JSON_KEY_MAX];
} fast_t;

static bool ascii_only(const unsigned char *s, size_t n)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= s[i];
    return acc < 0x80;
}

/* Attaches v (owned) to the innermost container, or makes it the root. 0 stops yajl. */
static int attach(fast_t *f, json_t *v)
{
    if (!v)
        return 0;
    if (f->depth == 0) {
        if (f->root) {          /* yajl refuses a second top-level value; be total anyway */
            json_decref(v);
            return 0;
        }
        f->root = v;
        return 1;
    }
    json_t *top = f->stack[f->depth - 1];
    if (json_is_array(top))
        return json_array_append_new(top, v) == 0;
    /* JSON_REJECT_DUPLICATES: jansson reports the repeated key. */
    if (json_object_getn(top, f->key, f->key_len)) {
        json_decref(v);
        return 0;
    }
    return json_object_setn_new_nocheck(top, f->key, f->key_len, v) == 0;
}

static int open_container(fast_t *f, json_t *c)
{
    if (!c || f->depth == PL_SIG_JSON_FAST_DEPTH) {
        json_decref(c);
        return 0;
    }
    json_incref(c);             /* attach takes one reference, the stack borrows */
    if (!attach(f, c)) {
        json_decref(c);
        return 0;
    }
    json_decref(c);
    f->stack[f->depth++] = c;
    return 1;
}

static int on_null(void *ctx)
{
    return attach(ctx, json_null());
}

static int on_boolean(void *ctx, int b)
{
    return attach(ctx, json_boolean(b));
}

static int on_integer(void *ctx, long long i)
{
    return attach(ctx, json_integer((json_int_t)i));
}

static int on_double(void *ctx, double d)
{
    return attach(ctx, json_real(d));
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    /* json_stringn checks UTF-8 as strictly as jansson's parser; NULL sends the frame
     * to jansson. */
    json_t *v = ascii_only(s, n) ? json_stringn_nocheck((const char *)s, n)
                                 : json_stringn((const char *)s, n);
    return attach(ctx, v);
}

static int on_start_map(void *ctx)
{
    return open_container(ctx, json_object());
}

static int on_map_key(void *ctx, const unsigned char *s, size_t n)
{
    fast_t *f = ctx;
    if (n >= sizeof(f->key))
        return 0;
    if (!ascii_only(s, n)) {
        json_t *check = json_stringn((const char *)s, n);
        if (!check)
            return 0;
        json_decref(check);
    }
    memcpy(f->key, s, n);
    f->key[n] = '\0';
    f->key_len = n;
    return 1;
}

static int on_end(void *ctx)
{
    fast_t *f = ctx;
    f->depth--;
    return 1;
}

static int on_start_array(void *ctx)
{
    return open_container(ctx, json_array());
}

static const yajl_callbacks fast_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_integer = on_integer,
    .yajl_double = on_double,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

static json_t *fast_parse(const char *data, size_t len, size_t flags)
{
    size_t quotes = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == '"')
            quotes++;
        else if (c == '\\' || c == '\v' || c == '\f')
            return NULL;
    }
    /* Without backslashes every quote opens or closes a string, so an odd count means
     * one is left open -- which yajl lets through after a complete value ("trailing
     * garbage" is only what it can lex to the end). */
    if (quotes % 2)
        return NULL;
    fast_t f = { 0 };
    yajl_handle h = yajl_alloc(&fast_callbacks, NULL, &f);
    if (!h)
        return NULL;
    yajl_status st = yajl_parse(h, (const unsigned char *)data, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    yajl_free(h);
    if (st != yajl_status_ok || !f.root ||
        (!(flags & JSON_DECODE_ANY) && !json_is_object(f.root) && !json_is_array(f.root))) {
        json_decref(f.root);
        return NULL;
    }
    return f.root;
}

json_t *pl_sig_json_loadb(const char *data, size_t len, size_t flags, json_error_t *err)
{
    PL_ASSERT((flags & ~(size_t)(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)) == 0);
    PL_ASSERT(flags & JSON_REJECT_DUPLICATES);
    json_t *v = len ? fast_parse(data, len, flags) : NULL;
    return v ? v : json_loadb(data, len, flags, err);
}
