/* chat_util.c: chat's pure helpers: input rules (base64 ciphertext, client ids,
 * names, asset ids), id list arithmetic (sorting, de-duplication, the missing/extra
 * device diff), presence privacy and a token bucket.
 *
 * What it does not do: I/O, logging, SQL.
 *
 * Threading: pure functions; any thread. */
#include "chat/chat_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- input rules -------------------------------------------------------------------- */

static bool b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

bool chat_b64_ok(const char *s, size_t len)
{
    /* RFC 4648 §4: groups of four characters, '=' padding only at the very end (at
     * most two). Ciphertext is opaque; this only keeps the wire format honest. */
    if (len == 0 || len % 4 != 0)
        return false;
    size_t pad = 0;
    if (s[len - 1] == '=')
        pad = s[len - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < len - pad; i++)
        if (!b64_char((unsigned char)s[i]))
            return false;
    return true;
}

static bool id_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '.' || c == ':' || c == '-';
}

bool chat_client_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CHAT_CLIENT_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char((unsigned char)s[i]))
            return false;
    return true;
}

bool chat_asset_ok(const char *s)
{
    for (; *s; s++)
        if (!id_char((unsigned char)*s))
            return false;
    return true;
}

bool chat_text_ok(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

bool chat_username_norm(const char *in, char out[CHAT_USERNAME_MAX + 1])
{
    size_t n = strlen(in);
    if (n < 3 || n > CHAT_USERNAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = (char)tolower((unsigned char)in[i]);
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
            return false;
        out[i] = c;
    }
    out[n] = '\0';
    return true;
}

/* ---- id lists --------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void chat_ids_sort(uint64_t *ids, size_t n)
{
    if (n > 1)
        qsort(ids, n, sizeof(*ids), cmp_u64);
}

size_t chat_ids_uniq(uint64_t *ids, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || ids[k - 1] != ids[i])
            ids[k++] = ids[i];
    return k;
}

void chat_ids_diff(const uint64_t *want, size_t n_want, const uint64_t *have, size_t n_have,
                   uint64_t *missing, size_t *n_missing, uint64_t *extra, size_t *n_extra)
{
    size_t i = 0, j = 0;
    *n_missing = *n_extra = 0;
    while (i < n_want || j < n_have) {
        if (j == n_have || (i < n_want && want[i] < have[j]))
            missing[(*n_missing)++] = want[i++];
        else if (i == n_want || have[j] < want[i])
            extra[(*n_extra)++] = have[j++];
        else {
            i++;
            j++;
        }
    }
}

long chat_ids_from_json(const json_t *arr, size_t max, uint64_t **out)
{
    size_t n = json_array_size(arr);
    *out = NULL;
    if (!json_is_array(arr) || n > max)
        return -1;
    uint64_t *ids = pl_xmalloc((n ? n : 1) * sizeof(*ids));
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        json_int_t x = json_is_integer(v) ? json_integer_value(v) : 0;
        if (x < 1 || x > (json_int_t)((INT64_C(1) << 53) - 1)) {
            free(ids);
            return -1;
        }
        ids[i] = (uint64_t)x;
    }
    *out = ids;
    return (long)n;
}

json_t *chat_ids_json(const uint64_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((json_int_t)ids[i]));
    return a;
}

/* ---- presence privacy -------------------------------------------------------------- */

int chat_privacy_parse(const char *s)
{
    if (strcmp(s, "everyone") == 0)
        return CHAT_PRIV_EVERYONE;
    if (strcmp(s, "contacts") == 0)
        return CHAT_PRIV_CONTACTS;
    if (strcmp(s, "nobody") == 0)
        return CHAT_PRIV_NOBODY;
    return -1;
}

const char *chat_privacy_name(int p)
{
    switch (p) {
    case CHAT_PRIV_EVERYONE: return "everyone";
    case CHAT_PRIV_CONTACTS: return "contacts";
    default: return "nobody";
    }
}

static bool allows(int priv, bool lists_other)
{
    return priv == CHAT_PRIV_EVERYONE || (priv == CHAT_PRIV_CONTACTS && lists_other);
}

bool chat_presence_visible(int subject_priv, bool subject_has_viewer, int viewer_priv,
                           bool viewer_has_subject)
{
    /* Reciprocal, as WhatsApp's last seen: who does not show theirs to someone does
     * not see that someone's either. */
    return allows(subject_priv, subject_has_viewer) && allows(viewer_priv, viewer_has_subject);
}

/* ---- token bucket ------------------------------------------------------------------- */

bool chat_bucket_take(chat_bucket_t *b, uint64_t now_ms, uint32_t per_min, uint32_t burst,
                      uint64_t *retry_ms)
{
    double rate = per_min / 60000.0;        /* tokens per millisecond */
    if (b->last_ms == 0 || now_ms < b->last_ms) {
        if (b->last_ms == 0)
            b->tokens = burst;
        b->last_ms = now_ms;
    }
    b->tokens += (double)(now_ms - b->last_ms) * rate;
    if (b->tokens > burst)
        b->tokens = burst;
    b->last_ms = now_ms;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    if (retry_ms)
        *retry_ms = rate > 0 ? (uint64_t)((1.0 - b->tokens) / rate) + 1 : UINT64_MAX;
    return false;
}

/* ---- u64 map ---------------------------------------------------------------------- */

void chat_map_init(chat_map_t *m)
{
    m->cap = 64;
    m->count = 0;
    m->slots = pl_xcalloc(m->cap, sizeof(*m->slots));
}

void chat_map_clear_owned(chat_map_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].val);
    chat_map_deinit(m);
    chat_map_init(m);
}

void chat_map_deinit(chat_map_t *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static size_t home(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

static size_t slot_of(const chat_map_t *m, uint64_t key)
{
    size_t i = home(key, m->cap);
    while (m->slots[i].key && m->slots[i].key != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

void *chat_map_get(const chat_map_t *m, uint64_t key)
{
    size_t i = slot_of(m, key);
    return m->slots[i].key ? m->slots[i].val : NULL;
}

static void grow(chat_map_t *m)
{
    chat_map_t n = { pl_xcalloc(m->cap * 2, sizeof(*m->slots)), m->cap * 2, m->count };
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t j = slot_of(&n, m->slots[i].key);
        n.slots[j] = m->slots[i];
    }
    free(m->slots);
    *m = n;
}

void *chat_map_put(chat_map_t *m, uint64_t key, void *val)
{
    PL_ASSERT(key != 0);
    if ((m->count + 1) * 4 > m->cap * 3)
        grow(m);
    size_t i = slot_of(m, key);
    void *prev = m->slots[i].key ? m->slots[i].val : NULL;
    if (!m->slots[i].key)
        m->count++;
    m->slots[i].key = key;
    m->slots[i].val = val;
    return prev;
}

void *chat_map_del(chat_map_t *m, uint64_t key)
{
    size_t hole = slot_of(m, key), mask = m->cap - 1;
    if (!m->slots[hole].key)
        return NULL;
    void *prev = m->slots[hole].val;
    /* Backward-shift deletion (Knuth 6.4, Algorithm R): no tombstones. */
    for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
        size_t h = home(m->slots[i].key, m->cap);
        bool movable = (i > hole) ? (h <= hole || h > i) : (h <= hole && h > i);
        if (movable) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    m->slots[hole].key = 0;
    m->slots[hole].val = NULL;
    m->count--;
    return prev;
}
