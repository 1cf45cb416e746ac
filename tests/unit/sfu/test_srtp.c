/* test_srtp.c: the SFU's SRTP/SRTCP (relay/sfu/sfu_srtp.c) against libsrtp2 as the
 * oracle, in both directions and for both profiles (AEAD_AES_128_GCM and
 * AES_CM_128_HMAC_SHA1_80): byte-identical protect output for the same input and key,
 * unprotect of each other's packets (CSRCs, header extensions, padding, empty payloads,
 * compound RTCP, E=0 SRTCP), a sequence-number wrap over 70,000 packets, replayed and
 * too-old packets, flipped bits in header, payload and tag, truncations, bad
 * parameters, the SSRC limit, and the RFC 3711 Appendix B.2/B.3 vectors. Also checks
 * that the packet path makes no OpenSSL allocation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <srtp2/srtp.h>

#include "bench/sfu/libsrtp_ref.h"
#include "relay/sfu/sfu_srtp.h"

#define CAP 2048
static const pl_srtp_profile_t profiles[] = { PL_SRTP_AES_CM_128_HMAC_SHA1_80,
                                              PL_SRTP_AEAD_AES_128_GCM };

static long g_ossl_allocs;      /* OpenSSL allocations, counted from main() on */

static void *count_malloc(size_t n, const char *f, int l)
{
    (void)f;
    (void)l;
    g_ossl_allocs++;
    return malloc(n);
}
static void *count_realloc(void *p, size_t n, const char *f, int l)
{
    (void)f;
    (void)l;
    g_ossl_allocs++;
    return realloc(p, n);
}
static void count_free(void *p, const char *f, int l)
{
    (void)f;
    (void)l;
    free(p);
}

static void hex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* ---- sessions ------------------------------------------------------------------------ */

typedef struct keyset {
    uint8_t key[16], salt[14];
} keyset_t;

static keyset_t keys_for(unsigned seed)
{
    keyset_t k;
    for (unsigned i = 0; i < 16; i++)
        k.key[i] = (uint8_t)(seed * 31 + i * 7 + 1);
    for (unsigned i = 0; i < 14; i++)
        k.salt[i] = (uint8_t)(seed * 17 + i * 13 + 5);
    return k;
}

static pl_srtp_t *ours(pl_srtp_profile_t p, const keyset_t *k, bool outbound, unsigned max)
{
    pl_srtp_opts_t o = { .profile = p, .master_key = k->key, .master_salt = k->salt,
                         .key_len = 16, .salt_len = pl_srtp_salt_len(p),
                         .max_streams = max, .allow_repeat_tx = outbound };
    pl_srtp_t *s = NULL;
    assert_int_equal(pl_srtp_create(&o, &s), PL_SRTP_OK);
    assert_non_null(s);
    return s;
}

/* libsrtp's session as the SFU used to make it (ssrc_any_*, window 1024). */
static srtp_t theirs_opt(pl_srtp_profile_t p, const keyset_t *k, bool outbound,
                         bool rtcp_auth_only)
{
    uint8_t master[30];
    memcpy(master, k->key, 16);
    memcpy(master + 16, k->salt, pl_srtp_salt_len(p));
    srtp_t s = pl_libsrtp_ref_session(p, master, outbound, rtcp_auth_only);
    assert_non_null(s);
    return s;
}

static srtp_t theirs(pl_srtp_profile_t p, const keyset_t *k, bool outbound)
{
    return theirs_opt(p, k, outbound, false);
}

/* ---- packets ------------------------------------------------------------------------- */

typedef struct shape {
    uint32_t ssrc;
    uint16_t seq;
    unsigned csrcs;             /* 0..15 */
    unsigned ext_words;         /* > 0: an RFC 8285 one-byte block of that many words */
    size_t payload;             /* bytes, padding included */
    uint8_t pad;                /* RTP padding bytes at the end of the payload */
} shape_t;

static size_t make_rtp(uint8_t *b, const shape_t *s)
{
    size_t n = 12;
    b[0] = (uint8_t)(0x80 | (s->pad ? 0x20 : 0) | (s->ext_words ? 0x10 : 0) | s->csrcs);
    b[1] = 96 | 0x80;
    b[2] = (uint8_t)(s->seq >> 8);
    b[3] = (uint8_t)s->seq;
    for (int i = 0; i < 4; i++) {
        b[4 + i] = (uint8_t)((s->seq * 960u) >> (24 - 8 * i));
        b[8 + i] = (uint8_t)(s->ssrc >> (24 - 8 * i));
    }
    for (unsigned i = 0; i < s->csrcs; i++, n += 4)
        memset(b + n, (int)(0xc0 + i), 4);
    if (s->ext_words) {
        b[n] = 0xbe, b[n + 1] = 0xde, b[n + 2] = 0, b[n + 3] = (uint8_t)s->ext_words;
        n += 4;
        for (unsigned i = 0; i < 4 * s->ext_words; i++)
            b[n++] = (uint8_t)(i == 0 ? 0x40 : 0xe0 + i);
    }
    for (size_t i = 0; i < s->payload; i++)
        b[n++] = (uint8_t)(i * 11 + s->seq);
    if (s->pad)
        b[n - 1] = s->pad;
    return n;
}

/* A compound RTCP packet: SR (sender ssrc) + SDES-like filler of extra words. */
static size_t make_rtcp(uint8_t *b, uint32_t ssrc, unsigned words)
{
    b[0] = 0x80;
    b[1] = 200;
    b[2] = 0;
    b[3] = 6;
    for (int i = 0; i < 4; i++)
        b[4 + i] = (uint8_t)(ssrc >> (24 - 8 * i));
    for (size_t i = 8; i < 28; i++)
        b[i] = (uint8_t)(i * 3);
    size_t n = 28;
    b[n] = 0x81, b[n + 1] = 202, b[n + 2] = 0, b[n + 3] = (uint8_t)words;
    n += 4;
    for (unsigned i = 0; i < 4 * words; i++)
        b[n++] = (uint8_t)(i + 1);
    return n;
}

/* Protects a copy with ours (into a) and with libsrtp (into b): the outputs must be
 * the same bytes. */
static size_t protect_both(pl_srtp_t *o_out, srtp_t t_out, const uint8_t *pkt, size_t len,
                           uint8_t *a, uint8_t *b)
{
    memcpy(a, pkt, len);
    memcpy(b, pkt, len);
    size_t alen = len;
    int blen = (int)len;
    assert_int_equal(pl_srtp_protect_rtp(o_out, a, &alen, CAP), PL_SRTP_OK);
    assert_int_equal(srtp_protect(t_out, b, &blen), srtp_err_status_ok);
    assert_int_equal(alen, (size_t)blen);
    assert_memory_equal(a, b, alen);
    return alen;
}

/* libsrtp opens ours (a), ours opens libsrtp's (b): both give back pkt. */
static void open_both(pl_srtp_t *o_in, srtp_t t_in, uint8_t *a, uint8_t *b, size_t slen,
                      const uint8_t *pkt, size_t len)
{
    int blen = (int)slen;
    size_t alen = slen;
    assert_int_equal(srtp_unprotect(t_in, a, &blen), srtp_err_status_ok);
    assert_int_equal((size_t)blen, len);
    assert_memory_equal(a, pkt, len);
    assert_int_equal(pl_srtp_unprotect_rtp(o_in, b, &alen), PL_SRTP_OK);
    assert_int_equal(alen, len);
    assert_memory_equal(b, pkt, len);
}

static void roundtrip_rtp(pl_srtp_t *o_out, srtp_t t_out, pl_srtp_t *o_in, srtp_t t_in,
                          const uint8_t *pkt, size_t len)
{
    uint8_t a[CAP], b[CAP];
    size_t slen = protect_both(o_out, t_out, pkt, len, a, b);
    open_both(o_in, t_in, a, b, slen, pkt, len);
}

static void roundtrip_rtcp(pl_srtp_t *o_out, srtp_t t_out, pl_srtp_t *o_in, srtp_t t_in,
                           const uint8_t *pkt, size_t len)
{
    uint8_t a[CAP], b[CAP];
    memcpy(a, pkt, len);
    memcpy(b, pkt, len);
    size_t alen = len;
    int blen = (int)len;
    assert_int_equal(pl_srtp_protect_rtcp(o_out, a, &alen, CAP), PL_SRTP_OK);
    assert_int_equal(srtp_protect_rtcp(t_out, b, &blen), srtp_err_status_ok);
    assert_int_equal(alen, (size_t)blen);
    assert_memory_equal(a, b, alen);
    assert_int_equal(srtp_unprotect_rtcp(t_in, a, &blen), srtp_err_status_ok);
    assert_int_equal((size_t)blen, len);
    assert_memory_equal(a, pkt, len);
    assert_int_equal(pl_srtp_unprotect_rtcp(o_in, b, &alen), PL_SRTP_OK);
    assert_int_equal(alen, len);
    assert_memory_equal(b, pkt, len);
}

typedef struct pair {
    pl_srtp_t *o_out, *o_in;
    srtp_t t_out, t_in;
} pair_t;

static pair_t pair_new(pl_srtp_profile_t p, unsigned seed, unsigned max)
{
    keyset_t k = keys_for(seed);
    pair_t x = { ours(p, &k, true, max), ours(p, &k, false, max), theirs(p, &k, true),
                 theirs(p, &k, false) };
    return x;
}

static void pair_free(pair_t *x)
{
    pl_srtp_destroy(x->o_out);
    pl_srtp_destroy(x->o_in);
    srtp_dealloc(x->t_out);
    srtp_dealloc(x->t_in);
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_rfc3711_b3_kdf(void **state)
{
    (void)state;
    uint8_t mk[16], salt[14], want[94], got[94];
    hex("E1F97A0D3E018BE0D64FA32C06DE4139", mk, 16);
    hex("0EC675AD498AFEEBB6960B3AABE6", salt, 14);
    hex("C61E7A93744F39EE10734AFE3FF7A087", want, 16);
    assert_int_equal(pl_srtp_kdf(mk, salt, 0, got, 16), 0);
    assert_memory_equal(got, want, 16);
    hex("30CBBC08863D8C85D49DB34A9AE1", want, 14);
    assert_int_equal(pl_srtp_kdf(mk, salt, 2, got, 14), 0);
    assert_memory_equal(got, want, 14);
    /* The full 94-octet auth-key output spans six AES blocks (we use the first 20). */
    hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE"
        "E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25"
        "6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2", want, 94);
    assert_int_equal(pl_srtp_kdf(mk, salt, 1, got, 94), 0);
    assert_memory_equal(got, want, 94);
}

static void test_rfc3711_b2_keystream(void **state)
{
    (void)state;
    uint8_t key[16], salt[14], iv[16], want[48];
    hex("2B7E151628AED2A6ABF7158809CF4F3C", key, 16);
    hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD", salt, 14);
    pl_srtp_aes_cm_iv(salt, 0, 0, iv);
    hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000", want, 16);
    assert_memory_equal(iv, want, 16);
    /* Up to counter 0xFF01: the RFC lists the last three blocks too. */
    size_t n = 16 * 0xff02;
    uint8_t *ks = malloc(n);
    assert_non_null(ks);
    assert_int_equal(pl_srtp_aes_cm_keystream(key, iv, ks, n), 0);
    hex("E03EAD0935C95E80E166B16DD92B4EB4D23513162B02D0F72A43A2FE4A5F97AB"
        "41E95B3BB0A2E8DD477901E4FCA894C0", want, 48);
    assert_memory_equal(ks, want, 48);
    hex("EC8CDF7398607CB0F2D21675EA9EA1E4362B7C3C6773516318A077D7FC5073AE"
        "6A2CC3787889374FBEB4C81B17BA6C44", want, 48);
    assert_memory_equal(ks + 16 * 0xfeff, want, 48);
    free(ks);
    /* SSRC and index land in their RFC 3711 §4.1.1 places. */
    pl_srtp_aes_cm_iv(salt, 0x11223344, UINT64_C(0xaabbccddeeff), iv);
    uint8_t exp[16];
    memcpy(exp, salt, 14);
    exp[14] = exp[15] = 0;
    exp[4] ^= 0x11, exp[5] ^= 0x22, exp[6] ^= 0x33, exp[7] ^= 0x44;
    for (int i = 0; i < 6; i++)
        exp[8 + i] ^= (uint8_t)(0xaa + 0x11 * i);
    assert_memory_equal(iv, exp, 16);
}

static void test_interop_shapes(void **state)
{
    (void)state;
    const shape_t shapes[] = {
        { 0x11223344, 1000, 0, 0, 160, 0 },       /* audio-like */
        { 0x11223344, 1001, 0, 0, 0, 0 },         /* empty payload */
        { 0x11223344, 1002, 3, 0, 1100, 0 },      /* CSRCs */
        { 0x11223344, 1003, 0, 2, 1180, 0 },      /* RFC 8285 extension */
        { 0x11223344, 1004, 15, 5, 200, 4 },      /* all of it plus padding */
        { 0x55667788, 7, 0, 1, 33, 1 },           /* a second SSRC */
        { 0x55667788, 8, 0, 0, 1, 0 },
    };
    for (size_t p = 0; p < PL_ARRAY_LEN(profiles); p++) {
        pair_t x = pair_new(profiles[p], (unsigned)p + 1, 0);
        uint8_t pkt[CAP];
        for (size_t i = 0; i < PL_ARRAY_LEN(shapes); i++) {
            size_t n = make_rtp(pkt, &shapes[i]);
            roundtrip_rtp(x.o_out, x.t_out, x.o_in, x.t_in, pkt, n);
        }
        for (unsigned w = 0; w < 40; w += 13) {
            size_t n = make_rtcp(pkt, 0x01020304, w);
            roundtrip_rtcp(x.o_out, x.t_out, x.o_in, x.t_in, pkt, n);
            n = make_rtcp(pkt, 0x0a0b0c0d, w + 1);
            roundtrip_rtcp(x.o_out, x.t_out, x.o_in, x.t_in, pkt, n);
        }
        assert_int_equal(pl_srtp_stream_count(x.o_in), 4);
        pair_free(&x);
    }
}

/* 70,000 packets from seq 65,000: the ROC goes 0 -> 1 -> 2 and both ends agree. The
 * packet with index 131,000 (ROC 1, seq 65,464) arrives 300 packets late, after the
 * second wrap: the receiver must still guess ROC 1 for it. */
static void test_interop_seq_wrap(void **state)
{
    (void)state;
    for (size_t p = 0; p < PL_ARRAY_LEN(profiles); p++) {
        pair_t x = pair_new(profiles[p], (unsigned)p + 9, 0);
        uint8_t pkt[CAP], late[CAP], late_a[CAP], late_b[CAP];
        size_t late_len = 0, late_slen = 0;
        shape_t s = { 0xcafe0001, 65000, 0, 1, 24, 0 };
        for (unsigned i = 0; i < 70000; i++, s.seq++) {
            s.payload = 24 + i % 7;
            size_t n = make_rtp(pkt, &s);
            if (i == 66000) {
                memcpy(late, pkt, n);
                late_len = n;
                late_slen = protect_both(x.o_out, x.t_out, pkt, n, late_a, late_b);
                continue;
            }
            roundtrip_rtp(x.o_out, x.t_out, x.o_in, x.t_in, pkt, n);
            if (i == 66300) {
                uint8_t a2[CAP], b2[CAP];
                memcpy(a2, late_a, late_slen);
                memcpy(b2, late_b, late_slen);
                open_both(x.o_in, x.t_in, late_a, late_b, late_slen, late, late_len);
                size_t m = late_slen;       /* and only once */
                assert_int_equal(pl_srtp_unprotect_rtp(x.o_in, b2, &m), PL_SRTP_EREPLAY_DUP);
            }
        }
        pair_free(&x);
    }
}

static void test_replay(void **state)
{
    (void)state;
    for (size_t p = 0; p < PL_ARRAY_LEN(profiles); p++) {
        keyset_t k = keys_for(3);
        pl_srtp_t *out = ours(profiles[p], &k, true, 0), *in = ours(profiles[p], &k, false, 0);
        uint8_t pkt[CAP], saved[2000][64];
        size_t lens[2000];
        shape_t s = { 42, 100, 0, 0, 20, 0 };
        for (unsigned i = 0; i < 2000; i++, s.seq++) {
            lens[i] = make_rtp(saved[i], &s);
            assert_int_equal(pl_srtp_protect_rtp(out, saved[i], &lens[i], 64), PL_SRTP_OK);
        }
        /* In order except #500, skipped; then replays. */
        for (unsigned i = 0; i < 1300; i++) {
            if (i == 500)
                continue;
            size_t n = lens[i];
            memcpy(pkt, saved[i], n);
            assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_OK);
        }
        size_t n = lens[1299];
        memcpy(pkt, saved[1299], n);
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_EREPLAY_DUP);
        n = lens[1000];
        memcpy(pkt, saved[1000], n);
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_EREPLAY_DUP);
        n = lens[100];          /* 1,199 behind the top: outside the 1,024 window */
        memcpy(pkt, saved[100], n);
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_EREPLAY_OLD);
        n = lens[500];          /* 799 behind, never seen: accepted once */
        memcpy(pkt, saved[500], n);
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_OK);
        n = lens[500];
        memcpy(pkt, saved[500], n);
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_EREPLAY_DUP);
        /* A jump ahead far past the window, then the old top is too old. */
        n = lens[1999];
        memcpy(pkt, saved[1999], n);
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_OK);
        n = lens[900];
        memcpy(pkt, saved[900], n);
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_EREPLAY_OLD);
        n = lens[1500];         /* skipped by the jump: inside the window, unseen */
        memcpy(pkt, saved[1500], n);
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_OK);

        /* SRTCP: replay of the same index, and one 128+ behind. */
        uint8_t rt[200][80];
        size_t rl[200];
        for (unsigned i = 0; i < 200; i++) {
            rl[i] = make_rtcp(rt[i], 7, 1);
            assert_int_equal(pl_srtp_protect_rtcp(out, rt[i], &rl[i], 80), PL_SRTP_OK);
        }
        n = rl[199];
        memcpy(pkt, rt[199], n);
        assert_int_equal(pl_srtp_unprotect_rtcp(in, pkt, &n), PL_SRTP_OK);
        n = rl[199];
        memcpy(pkt, rt[199], n);
        assert_int_equal(pl_srtp_unprotect_rtcp(in, pkt, &n), PL_SRTP_EREPLAY_DUP);
        n = rl[10];
        memcpy(pkt, rt[10], n);
        assert_int_equal(pl_srtp_unprotect_rtcp(in, pkt, &n), PL_SRTP_EREPLAY_OLD);
        n = rl[150];
        memcpy(pkt, rt[150], n);
        assert_int_equal(pl_srtp_unprotect_rtcp(in, pkt, &n), PL_SRTP_OK);
        pl_srtp_destroy(out);
        pl_srtp_destroy(in);
    }
}

/* Outbound repeats: allowed with allow_repeat_tx (same bytes out), refused without. */
static void test_repeat_tx(void **state)
{
    (void)state;
    keyset_t k = keys_for(4);
    pl_srtp_opts_t o = { .profile = PL_SRTP_AEAD_AES_128_GCM, .master_key = k.key,
                         .master_salt = k.salt, .key_len = 16, .salt_len = 12 };
    pl_srtp_t *strict;
    assert_int_equal(pl_srtp_create(&o, &strict), 0);
    pl_srtp_t *lax = ours(PL_SRTP_AEAD_AES_128_GCM, &k, true, 0);
    uint8_t a[CAP], b[CAP];
    shape_t s = { 9, 10, 0, 0, 50, 0 };
    size_t n0 = make_rtp(a, &s), na = n0, nb = n0;
    memcpy(b, a, n0);
    assert_int_equal(pl_srtp_protect_rtp(lax, a, &na, CAP), 0);
    assert_int_equal(pl_srtp_protect_rtp(lax, b, &nb, CAP), 0);
    assert_memory_equal(a, b, na);
    make_rtp(a, &s);
    na = n0;
    assert_int_equal(pl_srtp_protect_rtp(strict, a, &na, CAP), 0);
    make_rtp(a, &s);
    na = n0;
    assert_int_equal(pl_srtp_protect_rtp(strict, a, &na, CAP), PL_SRTP_EREPLAY_DUP);
    assert_int_equal(na, n0);
    pl_srtp_destroy(strict);
    pl_srtp_destroy(lax);
}

/* Every single-bit flip in header, payload, tag (and SRTCP index) is refused, and the
 * failures leave no state behind: the intact packet still opens afterwards. */
static void test_tamper(void **state)
{
    (void)state;
    for (size_t p = 0; p < PL_ARRAY_LEN(profiles); p++) {
        keyset_t k = keys_for(5);
        pl_srtp_t *out = ours(profiles[p], &k, true, 0), *in = ours(profiles[p], &k, false, 0);
        uint8_t good[CAP], pkt[CAP];
        shape_t s = { 77, 5, 2, 1, 40, 3 };
        size_t n = make_rtp(good, &s);
        assert_int_equal(pl_srtp_protect_rtp(out, good, &n, CAP), 0);
        for (size_t bit = 0; bit < 8 * n; bit++) {
            memcpy(pkt, good, n);
            pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            size_t m = n;
            int rc = pl_srtp_unprotect_rtp(in, pkt, &m);
            /* Flips in byte 0 (V, X, CC) or the extension length (bytes 22-23) may make
             * the header unparseable instead; every other flip is a forgery. */
            bool shape = bit < 8 || (bit / 8 >= 22 && bit / 8 <= 23);
            assert_true(rc == PL_SRTP_EAUTH || (shape && rc == PL_SRTP_ELEN));
            assert_int_equal(m, n);
        }
        assert_int_equal(pl_srtp_stream_count(in), 0);      /* nothing authenticated */
        memcpy(pkt, good, n);
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_OK);

        size_t rn = make_rtcp(good, 77, 2);
        assert_int_equal(pl_srtp_protect_rtcp(out, good, &rn, CAP), 0);
        for (size_t bit = 0; bit < 8 * rn; bit++) {
            memcpy(pkt, good, rn);
            pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            size_t m = rn;
            int rc = pl_srtp_unprotect_rtcp(in, pkt, &m);
            assert_true(rc == PL_SRTP_EAUTH || ((bit == 6 || bit == 7) && rc == PL_SRTP_ELEN));
        }
        memcpy(pkt, good, rn);
        assert_int_equal(pl_srtp_unprotect_rtcp(in, pkt, &rn), PL_SRTP_OK);
        pl_srtp_destroy(out);
        pl_srtp_destroy(in);
    }
}

static void test_lengths(void **state)
{
    (void)state;
    for (size_t p = 0; p < PL_ARRAY_LEN(profiles); p++) {
        keyset_t k = keys_for(6);
        pl_srtp_t *out = ours(profiles[p], &k, true, 0), *in = ours(profiles[p], &k, false, 0);
        size_t tag = profiles[p] == PL_SRTP_AEAD_AES_128_GCM ? 16 : 10;
        uint8_t good[CAP], pkt[CAP];
        shape_t s = { 1, 1, 1, 1, 30, 0 };
        size_t n0 = make_rtp(good, &s), hl = 12 + 4 + 8;
        /* Protect: no room for the tag, truncated headers. */
        memcpy(pkt, good, n0);
        size_t n = n0;
        assert_int_equal(pl_srtp_protect_rtp(out, pkt, &n, n0 + tag - 1), PL_SRTP_ELEN);
        assert_int_equal(n, n0);
        assert_memory_equal(pkt, good, n0);
        for (size_t cut = 0; cut < hl; cut++) {
            n = cut;
            assert_int_equal(pl_srtp_protect_rtp(out, pkt, &n, CAP), PL_SRTP_ELEN);
        }
        pkt[0] = 0x40;                                  /* version 1 */
        n = n0;
        assert_int_equal(pl_srtp_protect_rtp(out, pkt, &n, CAP), PL_SRTP_ELEN);
        /* Unprotect: every truncation of a good packet fails, none reads past it. */
        memcpy(pkt, good, n0);
        n = n0;
        assert_int_equal(pl_srtp_protect_rtp(out, pkt, &n, CAP), 0);
        size_t full = n;
        memcpy(good, pkt, full);
        for (size_t cut = 0; cut < full; cut++) {
            uint8_t *heap = malloc(cut ? cut : 1);      /* exact size: ASan sees overreads */
            memcpy(heap, good, cut);
            size_t m = cut;
            int rc = pl_srtp_unprotect_rtp(in, heap, &m);
            assert_true(rc == (cut < hl + tag ? PL_SRTP_ELEN : PL_SRTP_EAUTH));
            free(heap);
        }
        /* An extension length running past the end. */
        memcpy(pkt, good, full);
        pkt[12 + 4 + 3] = 200;
        n = full;
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_ELEN);
        /* RTCP. */
        size_t rn0 = make_rtcp(good, 3, 0);
        memcpy(pkt, good, rn0);
        n = rn0;
        assert_int_equal(pl_srtp_protect_rtcp(out, pkt, &n, rn0 + tag + 3), PL_SRTP_ELEN);
        n = 7;
        assert_int_equal(pl_srtp_protect_rtcp(out, pkt, &n, CAP), PL_SRTP_ELEN);
        n = rn0;
        assert_int_equal(pl_srtp_protect_rtcp(out, pkt, &n, CAP), 0);
        for (size_t cut = 0; cut < n; cut++) {
            uint8_t *heap = malloc(cut ? cut : 1);
            memcpy(heap, pkt, cut);
            size_t m = cut;
            int rc = pl_srtp_unprotect_rtcp(in, heap, &m);
            assert_true(rc == (cut < 8 + tag + 4 ? PL_SRTP_ELEN : PL_SRTP_EAUTH));
            free(heap);
        }
        pl_srtp_destroy(out);
        pl_srtp_destroy(in);
    }
}

static void test_bad_params(void **state)
{
    (void)state;
    keyset_t k = keys_for(7);
    pl_srtp_t *s = NULL;
    pl_srtp_opts_t o = { .profile = (pl_srtp_profile_t)99, .master_key = k.key,
                         .master_salt = k.salt, .key_len = 16, .salt_len = 14 };
    assert_int_equal(pl_srtp_create(&o, &s), PL_SRTP_EPROFILE);
    o.profile = PL_SRTP_AEAD_AES_128_GCM;       /* GCM wants a 12-byte salt */
    assert_int_equal(pl_srtp_create(&o, &s), PL_SRTP_EKEY);
    o.profile = PL_SRTP_AES_CM_128_HMAC_SHA1_80;
    o.key_len = 32;
    assert_int_equal(pl_srtp_create(&o, &s), PL_SRTP_EKEY);
    o.key_len = 16;
    o.master_key = NULL;
    assert_int_equal(pl_srtp_create(&o, &s), PL_SRTP_EKEY);
    assert_null(s);
    assert_int_equal(pl_srtp_salt_len((pl_srtp_profile_t)0), 0);
    assert_string_equal(pl_srtp_profile_name(PL_SRTP_AEAD_AES_128_GCM), "AEAD_AES_128_GCM");
    assert_string_equal(pl_srtp_strerror(PL_SRTP_EREPLAY_DUP), "replayed packet");
    assert_string_equal(pl_srtp_strerror(-100), "?");
    pl_srtp_destroy(NULL);
}

/* The SSRC bound: max_streams 5 takes five, refuses the sixth in both directions (an
 * authentic sixth inbound SSRC too), and the first five keep working. A 600-SSRC
 * session grows its table and stays interoperable. */
static void test_many_ssrcs(void **state)
{
    (void)state;
    for (size_t p = 0; p < PL_ARRAY_LEN(profiles); p++) {
        keyset_t k = keys_for(8);
        pl_srtp_t *out = ours(profiles[p], &k, true, 5), *in = ours(profiles[p], &k, false, 5);
        srtp_t t_out = theirs(profiles[p], &k, true);
        uint8_t pkt[CAP];
        for (uint32_t ssrc = 1; ssrc <= 6; ssrc++) {
            shape_t s = { ssrc, 1, 0, 0, 10, 0 };
            size_t n = make_rtp(pkt, &s);
            int rc = pl_srtp_protect_rtp(out, pkt, &n, CAP);
            assert_int_equal(rc, ssrc <= 5 ? PL_SRTP_OK : PL_SRTP_ESTREAMS);
            n = make_rtp(pkt, &s);
            int bl = (int)n;
            assert_int_equal(srtp_protect(t_out, pkt, &bl), srtp_err_status_ok);
            n = (size_t)bl;
            rc = pl_srtp_unprotect_rtp(in, pkt, &n);
            assert_int_equal(rc, ssrc <= 5 ? PL_SRTP_OK : PL_SRTP_ESTREAMS);
        }
        assert_int_equal(pl_srtp_stream_count(in), 5);
        shape_t s = { 3, 2, 0, 0, 10, 0 };
        size_t n = make_rtp(pkt, &s);
        int bl = (int)n;
        assert_int_equal(srtp_protect(t_out, pkt, &bl), srtp_err_status_ok);
        n = (size_t)bl;
        assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), PL_SRTP_OK);
        pl_srtp_destroy(out);
        pl_srtp_destroy(in);
        srtp_dealloc(t_out);

        pair_t x = pair_new(profiles[p], 10, 600);
        for (unsigned round = 0; round < 3; round++) {
            for (uint32_t i = 0; i < 600; i++) {
                shape_t t = { 0x9e3779b9u * (i + 1), (uint16_t)(round + i), 0, 0, 20, 0 };
                size_t m = make_rtp(pkt, &t);
                roundtrip_rtp(x.o_out, x.t_out, x.o_in, x.t_in, pkt, m);
            }
        }
        assert_int_equal(pl_srtp_stream_count(x.o_in), 600);
        pair_free(&x);
    }
}

/* SRTCP sent with E=0 (authenticated, not encrypted) by libsrtp opens with ours. */
static void test_rtcp_unencrypted(void **state)
{
    (void)state;
    for (size_t p = 0; p < PL_ARRAY_LEN(profiles); p++) {
        keyset_t k = keys_for(11);
        srtp_t t_out = theirs_opt(profiles[p], &k, true, true);
        pl_srtp_t *in = ours(profiles[p], &k, false, 0);
        uint8_t pkt[CAP], orig[CAP];
        size_t n0 = make_rtcp(orig, 0x44, 3);
        memcpy(pkt, orig, n0);
        int bl = (int)n0;
        assert_int_equal(srtp_protect_rtcp(t_out, pkt, &bl), srtp_err_status_ok);
        assert_memory_equal(pkt, orig, n0);     /* really sent in clear text */
        size_t n = (size_t)bl;
        size_t word = profiles[p] == PL_SRTP_AEAD_AES_128_GCM ? n - 4 : n0;
        assert_int_equal(pkt[word] & 0x80, 0);
        uint8_t bad[CAP];
        memcpy(bad, pkt, n);
        bad[n0 - 1] ^= 1;
        size_t m = n;
        assert_int_equal(pl_srtp_unprotect_rtcp(in, bad, &m), PL_SRTP_EAUTH);
        assert_int_equal(pl_srtp_unprotect_rtcp(in, pkt, &n), PL_SRTP_OK);
        assert_int_equal(n, n0);
        assert_memory_equal(pkt, orig, n0);
        srtp_dealloc(t_out);
        pl_srtp_destroy(in);
    }
}

/* After the first packet of a stream, protect and unprotect allocate nothing. */
static void test_no_allocation(void **state)
{
    (void)state;
    for (size_t p = 0; p < PL_ARRAY_LEN(profiles); p++) {
        keyset_t k = keys_for(12);
        pl_srtp_t *out = ours(profiles[p], &k, true, 0), *in = ours(profiles[p], &k, false, 0);
        uint8_t pkt[CAP];
        long before = 0;
        for (unsigned i = 0; i < 1000; i++) {
            if (i == 1)
                before = g_ossl_allocs;
            shape_t s = { 5, (uint16_t)i, 0, 1, 1200, 0 };
            size_t n = make_rtp(pkt, &s);
            assert_int_equal(pl_srtp_protect_rtp(out, pkt, &n, CAP), 0);
            assert_int_equal(pl_srtp_unprotect_rtp(in, pkt, &n), 0);
            n = make_rtcp(pkt, 5, 4);
            assert_int_equal(pl_srtp_protect_rtcp(out, pkt, &n, CAP), 0);
            assert_int_equal(pl_srtp_unprotect_rtcp(in, pkt, &n), 0);
        }
        assert_int_equal(g_ossl_allocs, before);
        pl_srtp_destroy(out);
        pl_srtp_destroy(in);
    }
    assert_true(g_ossl_allocs > 0);     /* the counter does see OpenSSL's allocations */
}

int main(void)
{
    /* Before OpenSSL allocates anything: count its allocations. */
    if (!CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free))
        return 1;
    if (srtp_init() != srtp_err_status_ok)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3711_b3_kdf),
        cmocka_unit_test(test_rfc3711_b2_keystream),
        cmocka_unit_test(test_interop_shapes),
        cmocka_unit_test(test_interop_seq_wrap),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_repeat_tx),
        cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_many_ssrcs),
        cmocka_unit_test(test_rtcp_unencrypted),
        cmocka_unit_test(test_no_allocation),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    srtp_shutdown();
    return rc;
}
