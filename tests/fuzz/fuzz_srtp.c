/* fuzz_srtp.c: libFuzzer target for the SFU's SRTP/SRTCP (relay/sfu/sfu_srtp.h).
 *
 * An input is a profile byte then records [kind][n][8n bytes] (cut at the end). Each
 * record is fed, as received bytes, to unprotect (RTP or RTCP by kind) on an inbound
 * session, and, as a plaintext packet, through protect on an outbound session and
 * unprotect on a second inbound session with the same key. ASan/UBSan catch
 * out-of-bounds access; abort() marks a broken invariant:
 *  - unprotect of arbitrary bytes never succeeds (no forgery without the key) and never
 *    changes *len on failure;
 *  - what protect accepts, the matching inbound session opens back to the same bytes
 *    (both ends keep the same replay and ROC state over the same packet sequence),
 *    with the trailer length the profile says.
 * Seeds: tests/fuzz/corpus/srtp. */
#include <stdlib.h>
#include <string.h>

#include "relay/sfu/sfu_srtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 2048

typedef struct sessions {
    pl_srtp_t *out, *in, *raw;
} sessions_t;

static pl_srtp_t *make(pl_srtp_profile_t p)
{
    static const uint8_t master[30] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                        16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
                                        29, 30 };
    pl_srtp_opts_t o = { .profile = p, .master_key = master, .master_salt = master + 16,
                         .key_len = 16, .salt_len = pl_srtp_salt_len(p), .max_streams = 8,
                         .allow_repeat_tx = false };
    pl_srtp_t *s = NULL;
    if (pl_srtp_create(&o, &s) != 0)
        abort();
    return s;
}

static void one(sessions_t *s, bool rtcp, const uint8_t *pkt, size_t len, size_t trailer)
{
    uint8_t buf[CAP], orig[CAP];
    memcpy(buf, pkt, len);
    size_t n = len;
    int rc = rtcp ? pl_srtp_unprotect_rtcp(s->raw, buf, &n)
                  : pl_srtp_unprotect_rtp(s->raw, buf, &n);
    if (rc == PL_SRTP_OK || n != len)
        abort();
    memcpy(buf, pkt, len);
    memcpy(orig, pkt, len);
    n = len;
    rc = rtcp ? pl_srtp_protect_rtcp(s->out, buf, &n, CAP)
              : pl_srtp_protect_rtp(s->out, buf, &n, CAP);
    if (rc != PL_SRTP_OK) {
        if (n != len)
            abort();
        return;
    }
    if (n != len + trailer)
        abort();
    rc = rtcp ? pl_srtp_unprotect_rtcp(s->in, buf, &n)
              : pl_srtp_unprotect_rtp(s->in, buf, &n);
    if (rc != PL_SRTP_OK || n != len || memcmp(buf, orig, len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    pl_srtp_profile_t p = (data[0] & 1) ? PL_SRTP_AEAD_AES_128_GCM
                                        : PL_SRTP_AES_CM_128_HMAC_SHA1_80;
    size_t tag = p == PL_SRTP_AEAD_AES_128_GCM ? 16 : 10;
    sessions_t s = { make(p), make(p), make(p) };
    size_t i = 1;
    while (i + 2 <= size) {
        bool rtcp = data[i] & 1;
        size_t len = PL_MIN((size_t)data[i + 1] * 8, size - i - 2);
        one(&s, rtcp, data + i + 2, len, rtcp ? tag + 4 : tag);
        i += 2 + len;
    }
    pl_srtp_destroy(s.out);
    pl_srtp_destroy(s.in);
    pl_srtp_destroy(s.raw);
    return 0;
}
