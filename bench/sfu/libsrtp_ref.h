/* libsrtp_ref.h: a libsrtp2 session set up the way the SFU used to make its own
 * (ssrc_any_inbound/outbound, replay window 1024, repeated sequence numbers allowed when
 * sending): the reference the SFU's own SRTP (relay/sfu/sfu_srtp.c) is checked against in
 * tests/unit/sfu/test_srtp.c and measured against in bench/sfu/srtp_bench.c. Only those
 * two include it; parleyd does not link libsrtp2.
 *
 * Threading: a session is used by one thread. */
#ifndef PL_BENCH_LIBSRTP_REF_H
#define PL_BENCH_LIBSRTP_REF_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <srtp2/srtp.h>

#include "relay/sfu/sfu_srtp.h"

/* master: key then salt (16 + 14 or 12 bytes). rtcp_auth_only: SRTCP with E = 0.
 * Returns the session or NULL. */
static inline srtp_t pl_libsrtp_ref_session(pl_srtp_profile_t p, uint8_t *master,
                                            bool outbound, bool rtcp_auth_only)
{
    srtp_policy_t pol;
    memset(&pol, 0, sizeof(pol));
    if (p == PL_SRTP_AEAD_AES_128_GCM) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol.rtcp);
    } else {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtcp);
    }
    if (rtcp_auth_only)
        pol.rtcp.sec_serv = sec_serv_auth;
    pol.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    pol.key = master;
    pol.window_size = 1024;
    pol.allow_repeat_tx = outbound ? 1 : 0;
    srtp_t s = NULL;
    return srtp_create(&s, &pol) == srtp_err_status_ok ? s : NULL;
}

#endif
