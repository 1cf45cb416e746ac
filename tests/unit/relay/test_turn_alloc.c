/* test_turn_alloc.c: the TURN core's authentication, Allocate and Refresh with a fake
 * I/O and a fake clock: every error path of RFC 8489 §9.2.4 and RFC 8656 §7. */
#include "turn_fake.h"

static int get_nonce(pl_stun_msg_t *m, char *out, size_t cap)
{
    const uint8_t *v;
    size_t len;
    if (pl_stun_get_bytes(m, PL_STUN_ATTR_NONCE, &v, &len) != 0 || len >= cap)
        return -1;
    memcpy(out, v, len);
    out[len] = '\0';
    return 0;
}

/* ---- authentication ---- */

static void test_unauthenticated_gets_401_with_realm_nonce(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    size_t req_len = req_plain(&r);
    assert_int_equal(roundtrip(e, &r, req_len, &m), 401);
    /* Amplification: the smallest Allocate (28 bytes) gets 20 + ERROR-CODE 24
     * ("Unauthenticated") + REALM 16 (11 chars) + NONCE 48 + PASSWORD-ALGORITHMS 12 =
     * 120 bytes (x4.3), no SOFTWARE, FINGERPRINT only when the request had one. */
    assert_int_equal(req_len, 28);
    assert_int_equal(m.len, 120);
    const uint8_t *v;
    size_t len;
    assert_int_equal(pl_stun_get_bytes(&m, PL_STUN_ATTR_REALM, &v, &len), 0);
    assert_memory_equal(v, "example.org", len);
    char nonce[64];
    assert_int_equal(get_nonce(&m, nonce, sizeof nonce), 0);
    assert_int_equal(strlen(nonce), PL_STUN_NONCE_LEN);
    assert_true(pl_stun_has(&m, PL_STUN_ATTR_PASSWORD_ALGORITHMS));
    assert_int_equal(m.mi_idx, -1);                 /* no integrity on a challenge */
    assert_false(pl_stun_has(&m, PL_STUN_ATTR_SOFTWARE));
    /* The nonce from the challenge works. */
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", nonce), &m), 0);
    assert_true(m.mi_idx >= 0);
    pl_stun_cred_t c = {"alice", 5, "example.org", 11, "wonderland", 10};
    pl_stun_key_t key;
    pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &key);
    assert_int_equal(pl_stun_check_integrity(&m, key.bytes, key.len), 0);
    assert_int_equal(pl_stun_check_fingerprint(&m), 0);
    tenv_free(e);
}

static void test_wrong_password_401(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wrong", NULL), &m), 401);
    assert_int_equal(counter(e, e->ids.authfail[PL_TURN_AUTH_BAD_INTEGRITY]), 1);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "mallory", "x", NULL), &m), 401);
    assert_int_equal(counter(e, e->ids.authfail[PL_TURN_AUTH_UNKNOWN_USER]), 1);
    assert_int_equal(pl_turn_server_count(e->srv), 0);
    assert_int_equal(counter(e, e->ids.responses[pl_turn_code_index(401)]), 2);
    tenv_free(e);
}

static void test_stale_and_foreign_nonce_438(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    char nonce[PL_STUN_NONCE_LEN + 1];
    tenv_nonce(e, nonce);
    tenv_advance(e, 601 * 1000);                    /* nonce_lifetime 600 s */
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", nonce), &m), 438);
    char fresh[64];
    assert_int_equal(get_nonce(&m, fresh, sizeof fresh), 0);
    assert_string_not_equal(fresh, nonce);
    assert_int_equal(counter(e, e->ids.authfail[PL_TURN_AUTH_STALE_NONCE]), 1);
    /* A made-up nonce is refused the same way. */
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", "abcdef"), &m), 438);
    tenv_free(e);
}

static void test_missing_attrs_400_and_wrong_realm_401(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    pl_stun_cred_t c = {"alice", 5, "example.org", 11, "wonderland", 10};
    pl_stun_key_t key;
    pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &key);
    /* MESSAGE-INTEGRITY without USERNAME/REALM/NONCE (RFC 8489 §9.2.4: 400). */
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add_integrity(&r.b, key.bytes, key.len);
    assert_int_equal(roundtrip(e, &r, req_plain(&r), &m), 400);
    assert_int_equal(counter(e, e->ids.authfail[PL_TURN_AUTH_MISSING_ATTR]), 1);
    /* Another realm. */
    char nonce[PL_STUN_NONCE_LEN + 1];
    tenv_nonce(e, nonce);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add_str(&r.b, PL_STUN_ATTR_USERNAME, "alice");
    pl_stun_add_str(&r.b, PL_STUN_ATTR_REALM, "evil.org");
    pl_stun_add_str(&r.b, PL_STUN_ATTR_NONCE, nonce);
    pl_stun_add_integrity(&r.b, key.bytes, key.len);
    assert_int_equal(roundtrip(e, &r, req_plain(&r), &m), 401);
    assert_int_equal(counter(e, e->ids.authfail[PL_TURN_AUTH_WRONG_REALM]), 1);
    tenv_free(e);
}

static void test_rest_credentials_rotation_and_expiry(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    pl_turn_rest_cred_t cred;
    req_t r;
    pl_stun_msg_t m;
    /* Minted with the old secret: still accepted (rotation). */
    assert_int_equal(pl_turn_rest_mint("0ld-s3cret", "carol", e->io.wall_s, 3600, &cred), 0);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, cred.username, cred.password, NULL), &m), 0);
    pl_turn_alloc_t *a = pl_turn_alloc_find(e->srv, &e->conn);
    assert_string_equal(a->user, cred.username);
    assert_string_equal(a->quota_user, "carol");    /* the quota counts the user part */
    assert_int_equal(pl_turn_quota_user(e->sh, "carol"), 1);
    /* Expired credentials, another client. */
    pl_sockaddr_parse("198.51.100.8:40000", -1, &e->conn.client);
    assert_int_equal(pl_turn_rest_mint("s3cret", "carol", e->io.wall_s - 7200, 3600, &cred), 0);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, cred.username, cred.password, NULL), &m), 401);
    assert_int_equal(counter(e, e->ids.authfail[PL_TURN_AUTH_EXPIRED]), 1);
    /* A secret we do not have. */
    assert_int_equal(pl_turn_rest_mint("other", "carol", e->io.wall_s, 3600, &cred), 0);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, cred.username, cred.password, NULL), &m), 401);
    tenv_free(e);
}

static void test_sha256_and_userhash(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    static const uint16_t algs[] = {PL_STUN_PWALG_MD5, PL_STUN_PWALG_SHA256};
    pl_stun_cred_t c = {"bob", 3, "example.org", 11, "builder", 7};
    pl_stun_key_t key;
    uint8_t uh[32];
    pl_stun_key_longterm(&c, PL_STUN_PWALG_SHA256, &key);
    pl_stun_userhash(&c, uh);
    char nonce[PL_STUN_NONCE_LEN + 1];
    tenv_nonce(e, nonce);
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add(&r.b, PL_STUN_ATTR_USERHASH, uh, 32);
    pl_stun_add_str(&r.b, PL_STUN_ATTR_REALM, "example.org");
    pl_stun_add_str(&r.b, PL_STUN_ATTR_NONCE, nonce);
    pl_stun_add_password_algorithms(&r.b, algs, 2);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_PASSWORD_ALGORITHM, (uint32_t)PL_STUN_PWALG_SHA256 << 16);
    pl_stun_add_integrity_sha256(&r.b, key.bytes, key.len);
    assert_int_equal(roundtrip(e, &r, req_plain(&r), &m), 0);
    assert_true(m.mi256_idx >= 0);                  /* answered in kind */
    assert_int_equal(pl_stun_check_integrity_sha256(&m, key.bytes, key.len), 0);
    assert_string_equal(pl_turn_alloc_find(e->srv, &e->conn)->user, "bob");
    /* PASSWORD-ALGORITHMS that differ from ours: 400 (bid-down protection). */
    e->conn.client.in4.sin_port = htons(40001);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add_str(&r.b, PL_STUN_ATTR_USERNAME, "bob");
    pl_stun_add_str(&r.b, PL_STUN_ATTR_REALM, "example.org");
    pl_stun_add_str(&r.b, PL_STUN_ATTR_NONCE, nonce);
    pl_stun_add_password_algorithms(&r.b, algs + 1, 1);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_PASSWORD_ALGORITHM, (uint32_t)PL_STUN_PWALG_SHA256 << 16);
    pl_stun_add_integrity_sha256(&r.b, key.bytes, key.len);
    assert_int_equal(roundtrip(e, &r, req_plain(&r), &m), 400);
    assert_int_equal(counter(e, e->ids.authfail[PL_TURN_AUTH_BAD_ALGORITHM]), 1);
    tenv_free(e);
}

/* ---- Allocate ---- */

static void test_allocate_success_and_retransmit(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    size_t len = req_sign(e, &r, "alice", "wonderland", NULL);
    assert_int_equal(roundtrip(e, &r, len, &m), 0);
    pl_sockaddr_t relayed, mapped;
    uint32_t lifetime;
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &relayed), 0);
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped), 0);
    assert_int_equal(pl_stun_get_u32(&m, PL_STUN_ATTR_LIFETIME, &lifetime), 0);
    assert_true(pl_sockaddr_equal(&mapped, &e->conn.client));
    assert_int_equal(relayed.sa.sa_family, AF_INET);
    assert_int_equal(ntohl(relayed.in4.sin_addr.s_addr), 0x7F000001u);
    assert_in_range(pl_sockaddr_port(&relayed), 50000, 50015);
    assert_int_equal(lifetime, 600);
    assert_true(pl_stun_has(&m, PL_STUN_ATTR_SOFTWARE));
    assert_int_equal(e->io.n_open, 1);
    assert_int_equal(pl_metrics_read_gauge(e->reg, e->ids.allocs[PL_TURN_UDP][0]), 1);
    /* The same request again (a retransmission): the same answer, no new relay. */
    tenv_input(e, &r, len);
    assert_int_equal(last_reply(e, &m), 0);
    pl_sockaddr_t again;
    pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &again);
    assert_true(pl_sockaddr_equal(&again, &relayed));
    assert_int_equal(e->io.n_open, 1);
    /* A new Allocate on the same 5-tuple: 437. */
    assert_int_equal(do_allocate(e, &m), 437);
    assert_true(m.mi_idx >= 0);
    assert_int_equal(pl_turn_server_count(e->srv), 1);
    tenv_free(e);
}

static void test_allocate_transport_errors(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 400);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_REQUESTED_TRANSPORT, (uint32_t)PL_STUN_TRANSPORT_TCP << 24);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 442);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_REQUESTED_TRANSPORT, 99u << 24);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 442);
    assert_int_equal(pl_turn_server_count(e->srv), 0);
    assert_int_equal(e->io.n_open, 0);
    tenv_free(e);
}

static int allocate_family(tenv_t *e, uint16_t attr, uint8_t fam, pl_stun_msg_t *m)
{
    req_t r;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add_u32(&r.b, attr, (uint32_t)fam << 24);
    return roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), m);
}

static void test_allocate_families(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    pl_stun_msg_t m;
    pl_sockaddr_t a;
    assert_int_equal(allocate_family(e, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 2, &m), 0);
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &a), 0);
    assert_int_equal(a.sa.sa_family, AF_INET6);
    assert_true(pl_sockaddr_is_loopback(&a));
    /* Dual: both relayed addresses. */
    e->conn.client.in4.sin_port = htons(40002);
    assert_int_equal(allocate_family(e, PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, 2, &m), 0);
    int i = pl_stun_find(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, 0);
    int j = pl_stun_find(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, i + 1);
    assert_true(i >= 0 && j > i);
    assert_false(pl_stun_has(&m, PL_STUN_ATTR_ADDRESS_ERROR_CODE));
    /* Unknown family 440; ADDITIONAL-ADDRESS-FAMILY IPv4 400. */
    e->conn.client.in4.sin_port = htons(40003);
    assert_int_equal(allocate_family(e, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 3, &m), 440);
    assert_int_equal(allocate_family(e, PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, 1, &m), 400);
    tenv_free(e);
}

static void test_allocate_family_unavailable(void **state)
{
    (void)state;
    const char *ov[] = {"turn.listen=127.0.0.1:3478"};
    tenv_t *e = tenv_new(ov, 1);
    pl_stun_msg_t m;
    assert_int_equal(allocate_family(e, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 2, &m), 440);
    /* Dual on an IPv4-only server: IPv4 plus ADDRESS-ERROR-CODE 440 for IPv6. */
    assert_int_equal(allocate_family(e, PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, 2, &m), 0);
    uint8_t fam;
    pl_stun_error_t err;
    assert_int_equal(pl_stun_get_address_error(&m, &fam, &err), 0);
    assert_int_equal(fam, PL_STUN_FAMILY_IPV6);
    assert_int_equal(err.code, 440);
    assert_int_equal(e->io.n_open, 1);
    tenv_free(e);
}

/* Allocate with EVEN-PORT and its R bit (reserve port+1) as alice; returns the code. */
static int allocate_even_port(tenv_t *e, req_t *r, pl_stun_msg_t *m)
{
    uint8_t even_r = 0x80;
    req_init(e, r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(r);
    pl_stun_add(&r->b, PL_STUN_ATTR_EVEN_PORT, &even_r, 1);
    return roundtrip(e, r, req_sign(e, r, "alice", "wonderland", NULL), m);
}

static void test_even_port_and_reservation(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    assert_int_equal(allocate_even_port(e, &r, &m), 0);
    pl_sockaddr_t a;
    uint64_t token;
    pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &a);
    assert_int_equal(pl_sockaddr_port(&a) % 2, 0);
    assert_int_equal(pl_stun_get_u64(&m, PL_STUN_ATTR_RESERVATION_TOKEN, &token), 0);
    assert_int_equal(pl_turn_ports_in_use(&e->sh->ports[0]), 2);    /* port and port+1 */
    assert_int_equal(e->io.n_holds, 1);             /* port+1 held by a socket meanwhile */
    /* Another client claims the reserved port with the token. */
    e->conn.client.in4.sin_port = htons(40010);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add_u64(&r.b, PL_STUN_ATTR_RESERVATION_TOKEN, token);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 0);
    pl_sockaddr_t b;
    pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &b);
    assert_int_equal(pl_sockaddr_port(&b), pl_sockaddr_port(&a) + 1);
    /* The token is single use: 508. */
    e->conn.client.in4.sin_port = htons(40011);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add_u64(&r.b, PL_STUN_ATTR_RESERVATION_TOKEN, token);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 508);
    /* Token with EVEN-PORT, or with REQUESTED-ADDRESS-FAMILY: 400. */
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add_u64(&r.b, PL_STUN_ATTR_RESERVATION_TOKEN, token);
    pl_stun_add(&r.b, PL_STUN_ATTR_EVEN_PORT, &(uint8_t){0x80}, 1);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 400);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add_u64(&r.b, PL_STUN_ATTR_RESERVATION_TOKEN, token);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 1u << 24);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 400);
    tenv_free(e);
}

/* RFC 8656 §7.2 wants port+1 reserved; a pair whose odd port another process already has
 * is skipped instead of being promised. Range 50000-50003: pairs 50000/1 and 50002/3. */
static void test_even_port_skips_busy_odd_port(void **state)
{
    (void)state;
    const char *ov[] = {"turn.relay_ports=50000-50003"};
    tenv_t *e = tenv_new(ov, 1);
    e->io.hold_busy_port = 50001;
    req_t r;
    pl_stun_msg_t m;
    assert_int_equal(allocate_even_port(e, &r, &m), 0);
    pl_sockaddr_t a;
    pl_stun_get_addr(&m, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &a);
    assert_int_equal(pl_sockaddr_port(&a), 50002);
    assert_true(e->io.hold_refusals <= 1);
    assert_int_equal(e->io.n_holds, 1);
    assert_int_equal(e->io.n_open, 1);              /* a relay opened on 50000 was closed */
    assert_int_equal(pl_turn_ports_in_use(&e->sh->ports[0]), 2);    /* 50002 and 50003 */
    /* Now only the busy pair is left: no reservation can be promised (508). */
    e->conn.client.in4.sin_port = htons(40012);
    assert_int_equal(allocate_even_port(e, &r, &m), 508);
    assert_int_equal(e->io.n_open, 1);
    assert_int_equal(pl_turn_ports_in_use(&e->sh->ports[0]), 2);    /* nothing leaked */
    tenv_advance(e, PL_TURN_RESERVATION_MS + 1);    /* the unclaimed reservation goes */
    pl_turn_server_tick(e->srv);
    assert_int_equal(pl_turn_ports_in_use(&e->sh->ports[0]), 1);
    tenv_free(e);
}

static void test_reservation_expires(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    req_t r;
    pl_stun_msg_t m;
    assert_int_equal(allocate_even_port(e, &r, &m), 0);
    uint64_t token;
    assert_int_equal(pl_stun_get_u64(&m, PL_STUN_ATTR_RESERVATION_TOKEN, &token), 0);
    tenv_advance(e, PL_TURN_RESERVATION_MS + 1);
    pl_turn_server_tick(e->srv);
    assert_int_equal(pl_turn_ports_in_use(&e->sh->ports[0]), 1);    /* port+1 released */
    e->conn.client.in4.sin_port = htons(40010);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    pl_stun_add_u64(&r.b, PL_STUN_ATTR_RESERVATION_TOKEN, token);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 508);
    tenv_free(e);
}

static void test_quotas(void **state)
{
    (void)state;
    const char *ov[] = {"turn.user_quota=2", "turn.max_allocations=3"};
    tenv_t *e = tenv_new(ov, 2);
    pl_stun_msg_t m;
    for (int i = 0; i < 2; i++) {
        e->conn.client.in4.sin_port = htons((uint16_t)(41000 + i));
        assert_int_equal(do_allocate(e, &m), 0);
    }
    e->conn.client.in4.sin_port = htons(41002);
    assert_int_equal(do_allocate(e, &m), 486);          /* alice's quota */
    req_t r;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "bob", "builder", NULL), &m), 0);
    e->conn.client.in4.sin_port = htons(41003);
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "bob", "builder", NULL), &m), 508);  /* total */
    assert_int_equal(pl_turn_server_count(e->srv), 3);
    tenv_free(e);
}

static void test_ports_exhausted_and_bind_failures(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    pl_stun_msg_t m;
    /* Two ports in use by someone else: the core retries on other ports. */
    e->io.open_err = -EADDRINUSE;
    e->io.open_err_count = 2;
    assert_int_equal(do_allocate(e, &m), 0);
    for (int i = 1; i < 16; i++) {
        e->conn.client.in4.sin_port = htons((uint16_t)(42000 + i));
        assert_int_equal(do_allocate(e, &m), 0);
    }
    e->conn.client.in4.sin_port = htons(42100);
    assert_int_equal(do_allocate(e, &m), 508);          /* 16 ports, all used */
    assert_int_equal(pl_turn_server_count(e->srv), 16);
    assert_int_equal(pl_turn_quota_user(e->sh, "alice"), 16);
    tenv_free(e);
}

static void test_redirect_and_drain(void **state)
{
    (void)state;
    const char *ov[] = {"turn.alternate_servers=192.0.2.1:3478,[2001:db8::1]:3478"};
    tenv_t *e = tenv_new(ov, 1);
    pl_stun_msg_t m;
    assert_int_equal(do_allocate(e, &m), 300);
    pl_sockaddr_t alt;
    assert_int_equal(pl_stun_get_addr(&m, PL_STUN_ATTR_ALTERNATE_SERVER, &alt), 0);
    assert_int_equal(alt.sa.sa_family, AF_INET);        /* the client's family */
    assert_true(m.mi_idx >= 0);
    tenv_free(e);
    e = tenv_new(NULL, 0);
    assert_int_equal(do_allocate(e, &m), 0);
    pl_turn_server_drain(e->srv);
    e->conn.client.in4.sin_port = htons(40001);
    assert_int_equal(do_allocate(e, &m), 508);
    tenv_free(e);
}

/* ---- Refresh and expiry ---- */

static int refresh(tenv_t *e, int64_t lifetime, const char *user, const char *pass)
{
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_REFRESH, PL_STUN_CLASS_REQUEST);
    if (lifetime >= 0)
        pl_stun_add_u32(&r.b, PL_STUN_ATTR_LIFETIME, (uint32_t)lifetime);
    int code = roundtrip(e, &r, req_sign(e, &r, user, pass, NULL), &m);
    uint32_t granted;
    if (code == 0) {
        assert_int_equal(pl_stun_get_u32(&m, PL_STUN_ATTR_LIFETIME, &granted), 0);
        return (int)granted + 10000;
    }
    return code;
}

static void test_refresh_lifetimes_and_delete(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    pl_stun_msg_t m;
    assert_int_equal(refresh(e, 100, "alice", "wonderland"), 437);     /* no allocation */
    assert_int_equal(do_allocate(e, &m), 0);
    assert_int_equal(refresh(e, 100, "alice", "wonderland"), 10000 + 600);   /* default floor */
    assert_int_equal(refresh(e, 99999, "alice", "wonderland"), 10000 + 3600); /* max */
    assert_int_equal(refresh(e, 1800, "alice", "wonderland"), 10000 + 1800);
    assert_int_equal(refresh(e, -1, "alice", "wonderland"), 10000 + 600);
    assert_int_equal(refresh(e, 600, "bob", "builder"), 441);  /* other user */
    assert_int_equal(counter(e, e->ids.authfail[PL_TURN_AUTH_WRONG_CREDENTIALS]), 1);
    assert_int_equal(refresh(e, 0, "alice", "wonderland"), 10000);
    assert_int_equal(pl_turn_server_count(e->srv), 0);
    assert_int_equal(e->io.n_open, 0);
    assert_int_equal(pl_metrics_read_gauge(e->reg, e->ids.allocs[PL_TURN_UDP][0]), 0);
    assert_int_equal(pl_turn_quota_user(e->sh, "alice"), 0);
    tenv_free(e);
}

static void test_refresh_family(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    pl_stun_msg_t m;
    assert_int_equal(allocate_family(e, PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, 2, &m), 0);
    req_t r;
    /* Delete only the IPv6 relay of the dual allocation. */
    req_init(e, &r, PL_STUN_METHOD_REFRESH, PL_STUN_CLASS_REQUEST);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_LIFETIME, 0);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 2u << 24);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 0);
    assert_int_equal(e->io.n_open, 1);
    assert_int_equal(pl_turn_server_count(e->srv), 1);
    /* IPv6 is gone now: 443. */
    req_init(e, &r, PL_STUN_METHOD_REFRESH, PL_STUN_CLASS_REQUEST);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 2u << 24);
    assert_int_equal(roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m), 443);
    tenv_free(e);
}

static void test_allocation_expires(void **state)
{
    (void)state;
    tenv_t *e = tenv_new(NULL, 0);
    pl_stun_msg_t m;
    assert_int_equal(do_allocate(e, &m), 0);
    tenv_advance(e, 599 * 1000);
    assert_int_equal(pl_turn_server_tick(e->srv), 0);
    assert_int_equal(refresh(e, 60, "alice", "wonderland"), 10000 + 600);
    tenv_advance(e, 599 * 1000);
    assert_int_equal(pl_turn_server_tick(e->srv), 0);
    tenv_advance(e, 1000);
    assert_int_equal(pl_turn_server_tick(e->srv), 1);
    assert_int_equal(pl_turn_server_count(e->srv), 0);
    assert_int_equal(e->io.n_open, 0);
    assert_int_equal(refresh(e, 60, "alice", "wonderland"), 437);
    tenv_free(e);
}

static void test_many_allocations_table(void **state)
{
    (void)state;
    const char *ov[] = {"turn.relay_ports=20000-29999"};
    tenv_t *e = tenv_new(ov, 1);
    pl_stun_msg_t m;
    /* Enough to grow the 5-tuple table several times, then delete in a mixed order
     * (tombstones) and check every survivor is still found. */
    for (int i = 0; i < 300; i++) {
        e->conn.client.in4.sin_port = htons((uint16_t)(10000 + i));
        assert_int_equal(do_allocate(e, &m), 0);
    }
    for (int i = 0; i < 300; i += 3) {
        e->conn.client.in4.sin_port = htons((uint16_t)(10000 + i));
        assert_int_equal(refresh(e, 0, "alice", "wonderland"), 10000);
    }
    for (int i = 0; i < 300; i++) {
        e->conn.client.in4.sin_port = htons((uint16_t)(10000 + i));
        assert_true((pl_turn_alloc_find(e->srv, &e->conn) != NULL) == (i % 3 != 0));
    }
    assert_int_equal(pl_turn_server_count(e->srv), 200);
    tenv_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unauthenticated_gets_401_with_realm_nonce),
        cmocka_unit_test(test_wrong_password_401),
        cmocka_unit_test(test_stale_and_foreign_nonce_438),
        cmocka_unit_test(test_missing_attrs_400_and_wrong_realm_401),
        cmocka_unit_test(test_rest_credentials_rotation_and_expiry),
        cmocka_unit_test(test_sha256_and_userhash),
        cmocka_unit_test(test_allocate_success_and_retransmit),
        cmocka_unit_test(test_allocate_transport_errors),
        cmocka_unit_test(test_allocate_families),
        cmocka_unit_test(test_allocate_family_unavailable),
        cmocka_unit_test(test_even_port_and_reservation),
        cmocka_unit_test(test_even_port_skips_busy_odd_port),
        cmocka_unit_test(test_reservation_expires),
        cmocka_unit_test(test_quotas),
        cmocka_unit_test(test_ports_exhausted_and_bind_failures),
        cmocka_unit_test(test_redirect_and_drain),
        cmocka_unit_test(test_refresh_lifetimes_and_delete),
        cmocka_unit_test(test_refresh_family),
        cmocka_unit_test(test_allocation_expires),
        cmocka_unit_test(test_many_allocations_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
