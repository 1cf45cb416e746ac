/* sfu_srtp.c: SRTP/SRTCP (RFC 3711, RFC 7714) on OpenSSL 3 for the SFU packet path.
 *
 * Why our own and not libsrtp2: Debian's libsrtp2 is built on NSS, which takes a
 * mutex and a calloc per packet (PK11 contexts); in perf it was ~20 % of the SFU's
 * media thread. This file keys one EVP_CIPHER_CTX per key at create and only re-sets
 * the IV per packet; HMAC-SHA1 starts from precomputed inner/outer pad states, so no
 * per-packet key schedule, allocation or lock (figures in docs/SFU.md).
 *
 * HMAC-SHA1 uses the SHA1_* functions that OpenSSL 3 marks deprecated: their SHA_CTX
 * is a plain struct, so the keyed pad states are copied by assignment. The EVP ways
 * allocate per packet in OpenSSL 3.0 (EVP_MD_CTX_copy_ex dups the provider context,
 * EVP_MAC_init with a NULL key does it twice) or re-hash both pad blocks; measured on
 * a 1,216-byte input: state copy 628 ns, EVP_MD_CTX_copy_ex 681 ns (1 malloc),
 * EVP_MAC re-init 720 ns (2 mallocs), EVP_DigestInit_ex + pads 755 ns (0 mallocs).
 *
 * What it does not: see sfu_srtp.h (MKI, KDR != 0, RFC 6904, other profiles).
 *
 * Threading: a session is used by one thread at a time; no globals. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "relay/sfu/sfu_srtp.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define RTP_WIN_BITS 1024u          /* the window the SFU gave libsrtp */
#define RTCP_WIN_BITS 128u          /* libsrtp's fixed SRTCP window */
#define HMAC_KEY_LEN 20             /* RFC 3711 §8.2: n_a = 160 */
#define HMAC_TAG_LEN 10             /* _80: 80-bit tag */
#define GCM_TAG_LEN 16              /* RFC 7714 §14.1: AEAD_AES_128_GCM, 16-octet tag */
#define SRTCP_WORD 4                /* E flag + 31-bit SRTCP index */
#define SRTCP_E_BIT 0x80000000u
#define SRTCP_INDEX_MAX 0x7fffffffu
#define RTP_INDEX_MAX ((UINT64_C(1) << 48) - 1)
#define PKT_MAX 65535u              /* larger than any UDP payload */
#define INITIAL_STREAMS 8u

typedef struct window {
    uint64_t top;                   /* highest index accepted */
    bool any;                       /* top is valid */
} window_t;

typedef struct stream {
    uint32_t ssrc;
    window_t rtp;                   /* top: 48-bit index, ROC << 16 | SEQ */
    window_t rtcp;                  /* top: SRTCP index received, or last sent */
    uint64_t rtp_bits[RTP_WIN_BITS / 64];   /* bit i % W: index i seen */
    uint64_t rtcp_bits[RTCP_WIN_BITS / 64];
} stream_t;

/* The session keys of one of RTP and SRTCP. */
typedef struct keys {
    EVP_CIPHER_CTX *cipher;         /* AES-128-CTR or AES-128-GCM, keyed once */
    uint8_t salt[14];               /* 14 (AES-CM) or 12 (GCM) bytes used */
    SHA_CTX ipad, opad;             /* HMAC-SHA1 states after one pad block (AES-CM) */
} keys_t;

struct pl_srtp {
    pl_srtp_profile_t profile;
    bool gcm, allow_repeat_tx;
    size_t tag_len;
    keys_t rtp, rtcp;
    stream_t *streams;              /* n used of cap, cap <= max */
    unsigned n, cap, max;
    uint16_t *slots;                /* open addressing: stream index + 1, 0 = empty */
    unsigned slot_mask;
    unsigned last;                  /* the stream found last: consecutive packets */
};

/* ---- small helpers ------------------------------------------------------------------ */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

size_t pl_srtp_salt_len(pl_srtp_profile_t profile)
{
    switch (profile) {
    case PL_SRTP_AES_CM_128_HMAC_SHA1_80: return 14;
    case PL_SRTP_AEAD_AES_128_GCM: return 12;
    default: return 0;
    }
}

const char *pl_srtp_profile_name(pl_srtp_profile_t profile)
{
    switch (profile) {
    case PL_SRTP_AES_CM_128_HMAC_SHA1_80: return "AES_CM_128_HMAC_SHA1_80";
    case PL_SRTP_AEAD_AES_128_GCM: return "AEAD_AES_128_GCM";
    default: return "?";
    }
}

const char *pl_srtp_strerror(int status)
{
    static const char *const names[] = {
        "ok", "authentication failed", "replayed packet", "packet behind the replay window",
        "bad length", "too many streams", "unknown profile", "bad key or salt length",
        "key usage exhausted", "crypto library failure",
    };
    unsigned i = status <= 0 ? (unsigned)-status : PL_ARRAY_LEN(names);
    return i < PL_ARRAY_LEN(names) ? names[i] : "?";
}

/* ---- replay windows (RFC 3711 §3.3.2) ----------------------------------------------- */

static int win_check(const window_t *w, const uint64_t *bits, unsigned nbits, uint64_t i)
{
    if (!w->any || i > w->top)
        return PL_SRTP_OK;
    if (w->top - i >= nbits)
        return PL_SRTP_EREPLAY_OLD;
    unsigned b = (unsigned)(i % nbits);
    return (bits[b / 64] >> (b % 64)) & 1 ? PL_SRTP_EREPLAY_DUP : PL_SRTP_OK;
}

/* Marks i seen; when i moves the window, the slots of the skipped indices are cleared
 * (the ring holds bit j % nbits for top - nbits < j <= top). */
static void win_add(window_t *w, uint64_t *bits, unsigned nbits, uint64_t i)
{
    if (!w->any || i > w->top) {
        if (!w->any || i - w->top >= nbits) {
            memset(bits, 0, nbits / 8);
        } else {
            for (uint64_t j = w->top + 1; j < i; j++) {
                unsigned b = (unsigned)(j % nbits);
                bits[b / 64] &= ~(UINT64_C(1) << (b % 64));
            }
        }
        w->top = i;
        w->any = true;
    }
    unsigned b = (unsigned)(i % nbits);
    bits[b / 64] |= UINT64_C(1) << (b % 64);
}

/* RFC 3711 §3.3.1 / Appendix A: the index of SEQ relative to the highest one seen. A
 * stream's first packet has ROC 0, and ROC never goes below 0 (libsrtp does the same,
 * so both ends agree on the ROC of early packets). May return RTP_INDEX_MAX + 1 and
 * more when the ROC would wrap. */
static uint64_t rtp_estimate(const stream_t *st, uint16_t seq)
{
    if (!st || !st->rtp.any)
        return seq;
    uint64_t roc = st->rtp.top >> 16;
    uint16_t s_l = (uint16_t)st->rtp.top;
    if (s_l < 0x8000) {
        if (seq > s_l && seq - s_l > 0x8000 && roc > 0)
            roc--;
    } else if (s_l - 0x8000 > seq) {
        roc++;
    }
    return roc << 16 | seq;
}

/* ---- the stream table ---------------------------------------------------------------- */

static unsigned slot_of(const pl_srtp_t *s, uint32_t ssrc)
{
    return ((ssrc * 2654435761u) >> 16) & s->slot_mask;     /* Knuth's multiplicative */
}

static stream_t *stream_find(pl_srtp_t *s, uint32_t ssrc)
{
    if (s->n && s->streams[s->last].ssrc == ssrc)
        return &s->streams[s->last];
    for (unsigned h = slot_of(s, ssrc); s->slots[h]; h = (h + 1) & s->slot_mask) {
        unsigned i = s->slots[h] - 1u;
        if (s->streams[i].ssrc == ssrc) {
            s->last = i;
            return &s->streams[i];
        }
    }
    return NULL;
}

/* Sizes the table for cap streams (slots at least twice that, a power of two). */
static int table_resize(pl_srtp_t *s, unsigned cap)
{
    unsigned nslots = 16;
    while (nslots < 2 * cap)
        nslots *= 2;
    stream_t *st = realloc(s->streams, cap * sizeof(*st));
    uint16_t *slots = calloc(nslots, sizeof(*slots));
    if (st)
        s->streams = st;
    if (!st || !slots) {
        free(slots);
        return PL_SRTP_ESTREAMS;        /* out of memory: the new SSRC is dropped */
    }
    free(s->slots);
    s->slots = slots;
    s->slot_mask = nslots - 1;
    s->cap = cap;
    for (unsigned i = 0; i < s->n; i++) {
        unsigned h = slot_of(s, s->streams[i].ssrc);
        while (s->slots[h])
            h = (h + 1) & s->slot_mask;
        s->slots[h] = (uint16_t)(i + 1);
    }
    return PL_SRTP_OK;
}

/* Adds a stream for ssrc (not present). Returns it, or NULL past max_streams. */
static stream_t *stream_add(pl_srtp_t *s, uint32_t ssrc)
{
    if (s->n >= s->max)
        return NULL;
    if (s->n == s->cap && table_resize(s, PL_MIN(2 * s->cap, s->max)) < 0)
        return NULL;
    stream_t *st = &s->streams[s->n];
    memset(st, 0, sizeof(*st));
    st->ssrc = ssrc;
    unsigned h = slot_of(s, ssrc);
    while (s->slots[h])
        h = (h + 1) & s->slot_mask;
    s->slots[h] = (uint16_t)(s->n + 1);
    s->last = s->n++;
    return st;
}

static stream_t *stream_get(pl_srtp_t *s, uint32_t ssrc)
{
    stream_t *st = stream_find(s, ssrc);
    return st ? st : stream_add(s, ssrc);
}

unsigned pl_srtp_stream_count(const pl_srtp_t *s) { return s->n; }

/* ---- primitives --------------------------------------------------------------------- */

void pl_srtp_aes_cm_iv(const uint8_t salt[14], uint32_t ssrc, uint64_t index, uint8_t iv[16])
{
    memcpy(iv, salt, 14);
    iv[14] = iv[15] = 0;
    for (int i = 0; i < 4; i++)
        iv[4 + i] ^= (uint8_t)(ssrc >> (24 - 8 * i));
    for (int i = 0; i < 6; i++)
        iv[8 + i] ^= (uint8_t)(index >> (40 - 8 * i));
}

int pl_srtp_aes_cm_keystream(const uint8_t key[PL_SRTP_KEY_LEN], const uint8_t iv[16],
                             uint8_t *out, size_t len)
{
    int outl = 0, rc = PL_SRTP_ECRYPTO;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    memset(out, 0, len);
    if (c && len <= INT32_MAX && EVP_EncryptInit_ex(c, EVP_aes_128_ctr(), NULL, key, iv) == 1 &&
        EVP_EncryptUpdate(c, out, &outl, out, (int)len) == 1)
        rc = PL_SRTP_OK;
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int pl_srtp_kdf(const uint8_t master_key[PL_SRTP_KEY_LEN], const uint8_t salt14[14],
                uint8_t label, uint8_t *out, size_t out_len)
{
    /* RFC 3711 §4.3.1: x = (label || r) XOR master_salt, right-aligned: with r = 0
     * (KDR 0) only byte 7 changes; the PRF input is x * 2^16. */
    uint8_t iv[16] = { 0 };
    memcpy(iv, salt14, 14);
    iv[7] ^= label;
    return pl_srtp_aes_cm_keystream(master_key, iv, out, out_len);
}

/* HMAC-SHA1 (RFC 2104) of data || tail (tail: NULL or 4 bytes, the ROC for SRTP). */
static void hmac_sha1(const keys_t *k, const uint8_t *data, size_t len, const uint8_t *tail,
                      uint8_t out[SHA_DIGEST_LENGTH])
{
    SHA_CTX w = k->ipad;
    SHA1_Update(&w, data, len);
    if (tail)
        SHA1_Update(&w, tail, 4);
    SHA1_Final(out, &w);
    w = k->opad;
    SHA1_Update(&w, out, SHA_DIGEST_LENGTH);
    SHA1_Final(out, &w);
}

static void hmac_pads(keys_t *k, const uint8_t key[HMAC_KEY_LEN])
{
    uint8_t pad[SHA_CBLOCK];
    memset(pad, 0x36, sizeof(pad));
    for (int i = 0; i < HMAC_KEY_LEN; i++)
        pad[i] ^= key[i];
    SHA1_Init(&k->ipad);
    SHA1_Update(&k->ipad, pad, sizeof(pad));
    memset(pad, 0x5c, sizeof(pad));
    for (int i = 0; i < HMAC_KEY_LEN; i++)
        pad[i] ^= key[i];
    SHA1_Init(&k->opad);
    SHA1_Update(&k->opad, pad, sizeof(pad));
    OPENSSL_cleanse(pad, sizeof(pad));
}

/* AES-CM: XORs the keystream of iv into p (in place). */
static int ctr_xor(EVP_CIPHER_CTX *c, const uint8_t iv[16], uint8_t *p, size_t n)
{
    int outl;
    if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) != 1)
        return PL_SRTP_ECRYPTO;
    if (n && EVP_EncryptUpdate(c, p, &outl, p, (int)n) != 1)
        return PL_SRTP_ECRYPTO;
    return PL_SRTP_OK;
}

/* One AES-GCM operation: AAD in two parts, data en/decrypted in place, tag written
 * (seal) or checked (open). */
typedef struct gcm_op {
    const uint8_t *aad;
    size_t aad_len;
    const uint8_t *aad2;            /* NULL or SRTCP_WORD bytes */
    uint8_t *data;
    size_t len;
    uint8_t *tag;
    bool seal;
} gcm_op_t;

static int gcm_run(EVP_CIPHER_CTX *c, const uint8_t iv[12], const gcm_op_t *op)
{
    int outl;
    if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, op->seal ? 1 : 0) != 1 ||
        EVP_CipherUpdate(c, NULL, &outl, op->aad, (int)op->aad_len) != 1 ||
        (op->aad2 && EVP_CipherUpdate(c, NULL, &outl, op->aad2, SRTCP_WORD) != 1) ||
        (op->len && EVP_CipherUpdate(c, op->data, &outl, op->data, (int)op->len) != 1))
        return PL_SRTP_ECRYPTO;
    if (!op->seal && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, op->tag) != 1)
        return PL_SRTP_ECRYPTO;
    if (EVP_CipherFinal_ex(c, op->data + op->len, &outl) != 1)
        return op->seal ? PL_SRTP_ECRYPTO : PL_SRTP_EAUTH;
    if (op->seal && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, op->tag) != 1)
        return PL_SRTP_ECRYPTO;
    return PL_SRTP_OK;
}

/* RFC 7714 §8.1 (SRTP) and §9.1 (SRTCP): the 12-octet IV is the session salt XOR
 * 00 00 || SSRC || ROC || SEQ, resp. 00 00 || SSRC || 00 00 || 0 + SRTCP index. */
static void gcm_iv(const uint8_t salt[12], uint32_t ssrc, uint32_t hi, uint16_t lo,
                   uint8_t iv[12])
{
    iv[0] = iv[1] = 0;
    wr32(iv + 2, ssrc);
    wr32(iv + 6, hi);
    iv[10] = (uint8_t)(lo >> 8);
    iv[11] = (uint8_t)lo;
    for (int i = 0; i < 12; i++)
        iv[i] ^= salt[i];
}

/* ---- session -------------------------------------------------------------------------- */

/* Derives one direction's keys (labels base..base+2, RFC 3711 §4.3.2) and keys its
 * cipher context. */
static int keys_init(pl_srtp_t *s, keys_t *k, const uint8_t mk[16], const uint8_t salt14[14],
                     uint8_t base)
{
    uint8_t ek[PL_SRTP_KEY_LEN], ak[HMAC_KEY_LEN];
    size_t salt_len = pl_srtp_salt_len(s->profile);
    int rc = PL_SRTP_ECRYPTO;
    k->cipher = EVP_CIPHER_CTX_new();
    if (!k->cipher || pl_srtp_kdf(mk, salt14, base, ek, sizeof(ek)) < 0 ||
        pl_srtp_kdf(mk, salt14, (uint8_t)(base + 2), k->salt, salt_len) < 0)
        goto out;
    if (s->gcm) {
        if (EVP_EncryptInit_ex(k->cipher, EVP_aes_128_gcm(), NULL, ek, NULL) != 1)
            goto out;
    } else {
        if (pl_srtp_kdf(mk, salt14, (uint8_t)(base + 1), ak, sizeof(ak)) < 0 ||
            EVP_EncryptInit_ex(k->cipher, EVP_aes_128_ctr(), NULL, ek, NULL) != 1)
            goto out;
        hmac_pads(k, ak);
    }
    rc = PL_SRTP_OK;
out:
    OPENSSL_cleanse(ek, sizeof(ek));
    OPENSSL_cleanse(ak, sizeof(ak));
    return rc;
}

int pl_srtp_create(const pl_srtp_opts_t *o, pl_srtp_t **out)
{
    size_t salt_len = pl_srtp_salt_len(o->profile);
    if (!salt_len)
        return PL_SRTP_EPROFILE;
    if (!o->master_key || !o->master_salt || o->key_len != PL_SRTP_KEY_LEN ||
        o->salt_len != salt_len)
        return PL_SRTP_EKEY;
    pl_srtp_t *s = calloc(1, sizeof(*s));
    if (!s)
        return PL_SRTP_ECRYPTO;
    s->profile = o->profile;
    s->gcm = o->profile == PL_SRTP_AEAD_AES_128_GCM;
    s->tag_len = s->gcm ? GCM_TAG_LEN : HMAC_TAG_LEN;
    s->allow_repeat_tx = o->allow_repeat_tx;
    s->max = o->max_streams ? PL_MIN(o->max_streams, PL_SRTP_MAX_STREAMS)
                            : PL_SRTP_DEFAULT_STREAMS;
    uint8_t salt14[14] = { 0 };
    memcpy(salt14, o->master_salt, salt_len);
    int rc = keys_init(s, &s->rtp, o->master_key, salt14, 0);
    if (rc == 0)
        rc = keys_init(s, &s->rtcp, o->master_key, salt14, 3);
    if (rc == 0)
        rc = table_resize(s, PL_MIN(INITIAL_STREAMS, s->max)) < 0 ? PL_SRTP_ECRYPTO : 0;
    OPENSSL_cleanse(salt14, sizeof(salt14));
    if (rc < 0) {
        pl_srtp_destroy(s);
        return rc;
    }
    *out = s;
    return PL_SRTP_OK;
}

void pl_srtp_destroy(pl_srtp_t *s)
{
    if (!s)
        return;
    EVP_CIPHER_CTX_free(s->rtp.cipher);     /* wipes the key schedules */
    EVP_CIPHER_CTX_free(s->rtcp.cipher);
    free(s->streams);
    free(s->slots);
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

/* ---- SRTP ----------------------------------------------------------------------------- */

/* RTP header length (fixed part, CSRCs, RFC 8285 extension block), or PL_SRTP_ELEN. */
static int rtp_header_len(const uint8_t *p, size_t len, size_t *hl)
{
    if (len < 12 || len > PKT_MAX || (p[0] >> 6) != 2)
        return PL_SRTP_ELEN;
    size_t h = 12 + 4 * (size_t)(p[0] & 0x0f);
    if (p[0] & 0x10) {
        if (len < h + 4)
            return PL_SRTP_ELEN;
        h += 4 + 4 * (size_t)rd16(p + h + 2);
    }
    if (h > len)
        return PL_SRTP_ELEN;
    *hl = h;
    return PL_SRTP_OK;
}

/* Encrypts the payload [hl, len) and writes the tag at pkt + len. */
static int rtp_seal(pl_srtp_t *s, uint8_t *pkt, size_t hl, size_t len, uint64_t idx)
{
    uint32_t ssrc = rd32(pkt + 8), roc = (uint32_t)(idx >> 16);
    if (s->gcm) {
        uint8_t iv[12];
        gcm_iv(s->rtp.salt, ssrc, roc, (uint16_t)idx, iv);
        gcm_op_t op = { .aad = pkt, .aad_len = hl, .data = pkt + hl, .len = len - hl,
                        .tag = pkt + len, .seal = true };
        return gcm_run(s->rtp.cipher, iv, &op);
    }
    uint8_t iv[16], roc_be[4], mac[SHA_DIGEST_LENGTH];
    pl_srtp_aes_cm_iv(s->rtp.salt, ssrc, idx, iv);
    int rc = ctr_xor(s->rtp.cipher, iv, pkt + hl, len - hl);
    if (rc < 0)
        return rc;
    /* RFC 3711 §4.2: the tag covers the header, the encrypted payload and the ROC. */
    wr32(roc_be, roc);
    hmac_sha1(&s->rtp, pkt, len, roc_be, mac);
    memcpy(pkt + len, mac, HMAC_TAG_LEN);
    return PL_SRTP_OK;
}

/* Checks the tag at the end of [0, len) and decrypts the payload [hl, len - tag). */
static int rtp_open(pl_srtp_t *s, uint8_t *pkt, size_t hl, size_t len, uint64_t idx)
{
    uint32_t ssrc = rd32(pkt + 8), roc = (uint32_t)(idx >> 16);
    size_t body = len - s->tag_len;
    if (s->gcm) {
        uint8_t iv[12];
        gcm_iv(s->rtp.salt, ssrc, roc, (uint16_t)idx, iv);
        gcm_op_t op = { .aad = pkt, .aad_len = hl, .data = pkt + hl, .len = body - hl,
                        .tag = pkt + body, .seal = false };
        return gcm_run(s->rtp.cipher, iv, &op);
    }
    uint8_t iv[16], roc_be[4], mac[SHA_DIGEST_LENGTH];
    wr32(roc_be, roc);
    hmac_sha1(&s->rtp, pkt, body, roc_be, mac);
    if (CRYPTO_memcmp(mac, pkt + body, HMAC_TAG_LEN) != 0)
        return PL_SRTP_EAUTH;
    pl_srtp_aes_cm_iv(s->rtp.salt, ssrc, idx, iv);
    return ctr_xor(s->rtp.cipher, iv, pkt + hl, body - hl);
}

int pl_srtp_protect_rtp(pl_srtp_t *s, uint8_t *pkt, size_t *len, size_t cap)
{
    size_t hl;
    int rc = rtp_header_len(pkt, *len, &hl);
    if (rc < 0)
        return rc;
    if (cap < *len || cap - *len < s->tag_len)
        return PL_SRTP_ELEN;
    stream_t *st = stream_get(s, rd32(pkt + 8));
    if (!st)
        return PL_SRTP_ESTREAMS;
    uint64_t idx = rtp_estimate(st, rd16(pkt + 2));
    if (idx > RTP_INDEX_MAX)
        return PL_SRTP_EEXHAUSTED;
    rc = win_check(&st->rtp, st->rtp_bits, RTP_WIN_BITS, idx);
    /* Re-protecting an index reuses its keystream: only for retransmissions, where the
     * payload is the same bytes (libsrtp's allow_repeat_tx). */
    if (rc == PL_SRTP_EREPLAY_DUP && s->allow_repeat_tx)
        rc = PL_SRTP_OK;
    if (rc < 0 || (rc = rtp_seal(s, pkt, hl, *len, idx)) < 0)
        return rc;
    win_add(&st->rtp, st->rtp_bits, RTP_WIN_BITS, idx);
    *len += s->tag_len;
    return PL_SRTP_OK;
}

int pl_srtp_unprotect_rtp(pl_srtp_t *s, uint8_t *pkt, size_t *len)
{
    size_t hl;
    int rc = rtp_header_len(pkt, *len, &hl);
    if (rc < 0)
        return rc;
    if (*len - hl < s->tag_len)
        return PL_SRTP_ELEN;
    uint32_t ssrc = rd32(pkt + 8);
    stream_t *st = stream_find(s, ssrc);
    if (!st && s->n >= s->max)
        return PL_SRTP_ESTREAMS;
    uint64_t idx = rtp_estimate(st, rd16(pkt + 2));
    if (idx > RTP_INDEX_MAX)
        return PL_SRTP_EEXHAUSTED;
    if (st && (rc = win_check(&st->rtp, st->rtp_bits, RTP_WIN_BITS, idx)) < 0)
        return rc;
    if ((rc = rtp_open(s, pkt, hl, *len, idx)) < 0)
        return rc;
    /* The stream exists only once a packet authenticated (libsrtp's template). */
    if (!st && !(st = stream_add(s, ssrc)))
        return PL_SRTP_ESTREAMS;
    win_add(&st->rtp, st->rtp_bits, RTP_WIN_BITS, idx);
    *len -= s->tag_len;
    return PL_SRTP_OK;
}

/* ---- SRTCP ---------------------------------------------------------------------------- */

/* Encrypts [8, len), then appends: AES-CM E||index and the tag over all before it
 * (RFC 3711 §3.4); GCM the tag then E||index, the AAD being the first 8 bytes and
 * E||index (RFC 7714 §9.1, §17). */
static int rtcp_seal(pl_srtp_t *s, uint8_t *pkt, size_t len, uint32_t index)
{
    uint32_t ssrc = rd32(pkt + 4);
    if (s->gcm) {
        uint8_t iv[12], *word = pkt + len + GCM_TAG_LEN;
        wr32(word, SRTCP_E_BIT | index);
        gcm_iv(s->rtcp.salt, ssrc, index >> 16, (uint16_t)index, iv);
        gcm_op_t op = { .aad = pkt, .aad_len = 8, .aad2 = word, .data = pkt + 8,
                        .len = len - 8, .tag = pkt + len, .seal = true };
        return gcm_run(s->rtcp.cipher, iv, &op);
    }
    uint8_t iv[16], mac[SHA_DIGEST_LENGTH];
    pl_srtp_aes_cm_iv(s->rtcp.salt, ssrc, index, iv);
    int rc = ctr_xor(s->rtcp.cipher, iv, pkt + 8, len - 8);
    if (rc < 0)
        return rc;
    wr32(pkt + len, SRTCP_E_BIT | index);
    hmac_sha1(&s->rtcp, pkt, len + SRTCP_WORD, NULL, mac);
    memcpy(pkt + len + SRTCP_WORD, mac, HMAC_TAG_LEN);
    return PL_SRTP_OK;
}

/* The inverse of rtcp_seal on a packet of len bytes whose E||index word is at word;
 * body is the length before the trailer. E=0: authenticated only. */
static int rtcp_open(pl_srtp_t *s, uint8_t *pkt, size_t body, const uint8_t *word)
{
    uint32_t ssrc = rd32(pkt + 4), w = rd32(word), index = w & SRTCP_INDEX_MAX;
    bool enc = (w & SRTCP_E_BIT) != 0;
    if (s->gcm) {
        uint8_t iv[12];
        gcm_iv(s->rtcp.salt, ssrc, index >> 16, (uint16_t)index, iv);
        /* RFC 7714 §9.3: unencrypted, the whole packet is AAD. */
        gcm_op_t op = { .aad = pkt, .aad_len = enc ? 8 : body, .aad2 = word,
                        .data = pkt + 8, .len = enc ? body - 8 : 0, .tag = pkt + body,
                        .seal = false };
        return gcm_run(s->rtcp.cipher, iv, &op);
    }
    uint8_t iv[16], mac[SHA_DIGEST_LENGTH];
    hmac_sha1(&s->rtcp, pkt, body + SRTCP_WORD, NULL, mac);
    if (CRYPTO_memcmp(mac, word + SRTCP_WORD, HMAC_TAG_LEN) != 0)
        return PL_SRTP_EAUTH;
    if (!enc)
        return PL_SRTP_OK;
    pl_srtp_aes_cm_iv(s->rtcp.salt, ssrc, index, iv);
    return ctr_xor(s->rtcp.cipher, iv, pkt + 8, body - 8);
}

int pl_srtp_protect_rtcp(pl_srtp_t *s, uint8_t *pkt, size_t *len, size_t cap)
{
    if (*len < 8 || *len > PKT_MAX || (pkt[0] >> 6) != 2)
        return PL_SRTP_ELEN;
    if (cap < *len || cap - *len < s->tag_len + SRTCP_WORD)
        return PL_SRTP_ELEN;
    stream_t *st = stream_get(s, rd32(pkt + 4));
    if (!st)
        return PL_SRTP_ESTREAMS;
    /* libsrtp sends index 1 first and stops at 2^31 - 1 (RFC 3711 §9.2). */
    if (st->rtcp.any && st->rtcp.top >= SRTCP_INDEX_MAX)
        return PL_SRTP_EEXHAUSTED;
    uint32_t index = st->rtcp.any ? (uint32_t)st->rtcp.top + 1 : 1;
    int rc = rtcp_seal(s, pkt, *len, index);
    if (rc < 0)
        return rc;
    st->rtcp.top = index;
    st->rtcp.any = true;
    *len += s->tag_len + SRTCP_WORD;
    return PL_SRTP_OK;
}

int pl_srtp_unprotect_rtcp(pl_srtp_t *s, uint8_t *pkt, size_t *len)
{
    size_t trailer = s->tag_len + SRTCP_WORD;
    if (*len < 8 + trailer || *len > PKT_MAX || (pkt[0] >> 6) != 2)
        return PL_SRTP_ELEN;
    size_t body = *len - trailer;
    const uint8_t *word = s->gcm ? pkt + *len - SRTCP_WORD : pkt + body;
    uint32_t ssrc = rd32(pkt + 4), index = rd32(word) & SRTCP_INDEX_MAX;
    stream_t *st = stream_find(s, ssrc);
    if (!st && s->n >= s->max)
        return PL_SRTP_ESTREAMS;
    int rc;
    if (st && (rc = win_check(&st->rtcp, st->rtcp_bits, RTCP_WIN_BITS, index)) < 0)
        return rc;
    if ((rc = rtcp_open(s, pkt, body, word)) < 0)
        return rc;
    if (!st && !(st = stream_add(s, ssrc)))
        return PL_SRTP_ESTREAMS;
    win_add(&st->rtcp, st->rtcp_bits, RTCP_WIN_BITS, index);
    *len = body;
    return PL_SRTP_OK;
}
