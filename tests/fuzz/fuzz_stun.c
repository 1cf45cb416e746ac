/* fuzz_stun.c: libFuzzer target for the STUN/TURN codec (relay/stun).
 *
 * Feeds arbitrary bytes to every entry point that sees network data: classification,
 * stream framing, ChannelData parsing, the STUN parser and all accessors, MAC and
 * FINGERPRINT checks, REST username parsing and checking, nonce checking. ASan/UBSan
 * catch out-of-bounds reads and undefined behaviour; abort() marks a broken invariant:
 *  - a parsed message rebuilt from its indexed attributes parses again to the same
 *    attribute list (the builder and the parser agree);
 *  - a frame length is never larger than the input or than a STUN message can be;
 *  - a ChannelData view lies inside the input.
 * Seeds: tests/fuzz/corpus/stun (RFC 5769 and RFC 8489 B.1 vectors, TURN messages). */
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "relay/stun/pl_stun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint32_t g_sink;

static void touch(const uint8_t *p, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    g_sink += s;
}

static void exercise_accessors(const pl_stun_msg_t *m)
{
    pl_sockaddr_t a;
    const uint8_t *v;
    size_t len, n;
    uint32_t u32;
    uint64_t u64;
    uint16_t u16, list[8];
    uint8_t u8;
    bool b;
    pl_stun_error_t e;
    pl_stun_icmp_t icmp;
    for (int i = 0; i < (int)m->n_attrs; i++) {
        touch(pl_stun_attr_value(m, i), m->attrs[i].len);
        (void)pl_stun_attr_addr(m, i, &a);
    }
    static const uint16_t types[] = {
        PL_STUN_ATTR_MAPPED_ADDRESS, PL_STUN_ATTR_XOR_MAPPED_ADDRESS,
        PL_STUN_ATTR_XOR_PEER_ADDRESS, PL_STUN_ATTR_XOR_RELAYED_ADDRESS,
        PL_STUN_ATTR_ALTERNATE_SERVER, PL_STUN_ATTR_LIFETIME, PL_STUN_ATTR_PRIORITY,
        PL_STUN_ATTR_CONNECTION_ID, PL_STUN_ATTR_ICE_CONTROLLING, PL_STUN_ATTR_USERNAME,
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        (void)pl_stun_get_addr(m, types[i], &a);
        (void)pl_stun_get_u32(m, types[i], &u32);
        (void)pl_stun_get_u64(m, types[i], &u64);
        if (pl_stun_get_bytes(m, types[i], &v, &len) == 0)
            touch(v, len);
    }
    (void)pl_stun_get_channel(m, &u16);
    (void)pl_stun_get_transport(m, &u8);
    (void)pl_stun_get_family(m, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, &u8);
    (void)pl_stun_get_family(m, PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, &u8);
    (void)pl_stun_get_even_port(m, &b);
    if (pl_stun_get_error(m, &e) == 0)
        touch((const uint8_t *)e.reason, e.reason_len);
    if (pl_stun_get_address_error(m, &u8, &e) == 0)
        touch((const uint8_t *)e.reason, e.reason_len);
    (void)pl_stun_get_icmp(m, &icmp);
    (void)pl_stun_get_unknown_attrs(m, list, 8, &n);
    (void)pl_stun_get_password_algorithms(m, list, 8, &n);
    (void)pl_stun_get_password_algorithm(m, &u16);
    (void)pl_stun_unknown_required(m, list, 8);
}

static void exercise_auth(const pl_stun_msg_t *m)
{
    static const uint8_t key[16] = { 1, 2, 3, 4 };
    static const char *const secrets[] = { "secret" };
    pl_stun_key_t k;
    (void)pl_stun_check_fingerprint(m);
    (void)pl_stun_check_auth(m, key, sizeof(key));
    (void)pl_stun_check_integrity(m, key, sizeof(key));
    (void)pl_stun_check_integrity_sha256(m, key, sizeof(key));
    (void)pl_turn_rest_check(m, secrets, 1, 1700000000u, &k);
}

/* Rebuilds m from its indexed attributes as raw bytes and checks the parser sees the
 * same list again. */
static void check_rebuild(const pl_stun_msg_t *m)
{
    static uint8_t out[PL_STUN_MAX_MSG_LEN];
    pl_stun_builder_t b;
    pl_stun_build_init(&b, out, sizeof(out), m->type, pl_stun_msg_tid(m));
    for (int i = 0; i < (int)m->n_attrs; i++)
        pl_stun_add(&b, m->attrs[i].type, pl_stun_attr_value(m, i), m->attrs[i].len);
    int n = pl_stun_build_finish(&b);
    pl_stun_msg_t r;
    if (n <= 0 || pl_stun_parse(&r, out, (size_t)n) != 0 || r.n_attrs != m->n_attrs ||
        r.method != m->method || r.cls != m->cls)
        abort();
    for (int i = 0; i < (int)m->n_attrs; i++)
        if (r.attrs[i].type != m->attrs[i].type || r.attrs[i].len != m->attrs[i].len ||
            memcmp(pl_stun_attr_value(&r, i), pl_stun_attr_value(m, i), m->attrs[i].len))
            abort();
}

static void exercise_text(const uint8_t *data, size_t size)
{
    static const pl_stun_nonce_key_t nk = { .secret = { 9 }, .features = 1, .lifetime_s = 60 };
    pl_sockaddr_t client;
    memset(&client, 0, sizeof(client));
    client.in4.sin_family = AF_INET;
    uint64_t expiry;
    (void)pl_stun_nonce_check(&nk, data, size, 1700000000u, &client);
    (void)pl_stun_nonce_features(data, size);
    (void)pl_turn_rest_expiry(data, size, &expiry);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)pl_stun_classify(data, size);
    int fl = pl_stun_frame_len(data, size);
    if (fl > 0 && ((size_t)fl > size || (size_t)fl > PL_STUN_MAX_MSG_LEN))
        abort();
    pl_stun_chandata_t cd;
    if (pl_stun_chandata_parse(data, size, &cd) == 0) {
        if (cd.data < data || cd.data + cd.len > data + size)
            abort();
        touch(cd.data, cd.len);
    }
    pl_stun_msg_t m;
    if (pl_stun_parse(&m, data, size) == 0) {
        exercise_accessors(&m);
        exercise_auth(&m);
        check_rebuild(&m);
    } else if (m.header_ok) {
        touch(pl_stun_msg_tid(&m), PL_STUN_TID_LEN);
    }
    exercise_text(data, size);
    return 0;
}
