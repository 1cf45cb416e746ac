/* test_sdp.c: SDP through gst-sdp: a Chromium offer (audio, simulcast video, data
 * channel) parsed into the SFU's structs, malformed descriptions refused, fmtp and codec
 * comparison helpers, and a built answer parsed back. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/sfu/sfu_sdp.h"

#include <glib.h>

static char *load_offer(void)
{
    const char *root = getenv("PL_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/unit/sfu/data/chrome_offer.sdp", root ? root : ".");
    gchar *text = NULL;
    assert_true(g_file_get_contents(path, &text, NULL, NULL));
    return text;
}

static void test_parse_chrome_offer(void **state)
{
    (void)state;
    char *text = load_offer();
    pl_sdp_desc_t *d = pl_sdp_desc_new();
    char err[128];
    assert_int_equal(pl_sdp_parse(text, d, err, sizeof(err)), 0);
    assert_int_equal(d->n_media, 3);
    const pl_sdp_media_t *a = &d->media[0], *v = &d->media[1], *dc = &d->media[2];
    assert_int_equal(a->kind, PL_MEDIA_AUDIO);
    assert_string_equal(a->mid, "0");
    assert_int_equal(a->dir, PL_DIR_SENDRECV);
    assert_string_equal(a->ice_ufrag, "Qx7f");
    assert_string_equal(a->fp_alg, "sha-256");
    assert_string_equal(a->setup, "actpass");
    assert_true(a->rtcp_mux);
    assert_int_equal(a->ssrc, 1001);
    const pl_sdp_codec_t *opus = pl_sdp_codec_by_pt(a, 111);
    assert_non_null(opus);
    assert_int_equal(opus->codec, PL_CODEC_OPUS);
    assert_int_equal(opus->clock, 48000);
    assert_int_equal(opus->channels, 2);
    assert_string_equal(opus->fmtp, "minptime=10;useinbandfec=1");
    assert_int_equal(opus->fb, PL_FB_TWCC);
    assert_int_equal(pl_sdp_ext_id(a, PL_EXT_AUDIO_LEVEL), 1);
    assert_int_equal(pl_sdp_ext_id(a, PL_EXT_MID), 4);
    assert_int_equal(pl_sdp_ext_id(a, PL_EXT_RID), 0);

    assert_int_equal(v->kind, PL_MEDIA_VIDEO);
    assert_int_equal(v->dir, PL_DIR_SENDONLY);
    const pl_sdp_codec_t *vp8 = pl_sdp_codec_by_pt(v, 96);
    assert_int_equal(vp8->codec, PL_CODEC_VP8);
    assert_int_equal(vp8->rtx_pt, 97);
    assert_int_equal(vp8->fb, PL_FB_NACK | PL_FB_PLI | PL_FB_FIR | PL_FB_REMB | PL_FB_TWCC);
    const pl_sdp_codec_t *h264 = pl_sdp_codec_by_pt(v, 102);
    assert_int_equal(h264->codec, PL_CODEC_H264);
    assert_int_equal(h264->rtx_pt, 103);
    char val[32];
    assert_true(pl_sdp_fmtp_get(h264->fmtp, "profile-level-id", val, sizeof(val)));
    assert_string_equal(val, "42e01f");
    assert_false(pl_sdp_fmtp_get(h264->fmtp, "profile", val, sizeof(val)));
    /* Simulcast order f;~h;q (h paused) wins over the a=rid order. */
    assert_int_equal(v->n_rids, 3);
    assert_string_equal(v->rids[0], "f");
    assert_string_equal(v->rids[1], "h");
    assert_string_equal(v->rids[2], "q");
    assert_int_equal(pl_sdp_ext_id(v, PL_EXT_RID), 10);
    assert_int_equal(pl_sdp_ext_id(v, PL_EXT_VIDEO_ORIENTATION), 13);

    assert_int_equal(dc->kind, PL_MEDIA_OTHER);
    assert_string_equal(dc->media, "application");
    assert_string_equal(dc->fmt0, "webrtc-datachannel");
    assert_int_equal(d->n_cands, 2);
    assert_true(g_str_has_prefix(d->cands[0], "candidate:2999745851 1 udp"));
    free(d);
    g_free(text);
}

static void test_parse_errors(void **state)
{
    (void)state;
    pl_sdp_desc_t *d = pl_sdp_desc_new();
    char err[128];
    assert_int_equal(pl_sdp_parse("hello", d, err, sizeof(err)), PL_EPARSE);
    assert_int_equal(pl_sdp_parse(NULL, d, err, sizeof(err)), PL_EPARSE);
    assert_string_equal(err, "not an SDP description");
    const char *nomid = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
                        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
    assert_int_equal(pl_sdp_parse(nomid, d, err, sizeof(err)), PL_EPARSE);
    assert_string_equal(err, "m-line 0 has no a=mid");
    /* A rejected m-line needs no mid; junk attributes and rtpmaps are ignored. */
    const char *ok = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
                     "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111\r\na=rtpmap:x y\r\n"
                     "a=extmap:0 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=fmtp:111\r\n"
                     "a=rid:a\r\na=simulcast:recv a\r\na=ssrc-group:FID 1\r\n";
    assert_int_equal(pl_sdp_parse(ok, d, err, sizeof(err)), 0);
    assert_int_equal(d->media[0].n_codecs, 0);
    assert_int_equal(d->media[0].n_exts, 0);
    assert_int_equal(d->media[0].n_rids, 0);
    GString *many = g_string_new("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n");
    for (int i = 0; i <= PL_SDP_MAX_MEDIA; i++)
        g_string_append(many, "m=audio 0 RTP/AVP 0\r\n");
    assert_int_equal(pl_sdp_parse(many->str, d, err, sizeof(err)), PL_EPARSE);
    g_string_free(many, TRUE);
    free(d);
}

static void test_codec_same(void **state)
{
    (void)state;
    pl_sdp_codec_t a = { .pt = 102, .codec = PL_CODEC_H264, .name = "H264", .clock = 90000,
                         .fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f" };
    pl_sdp_codec_t b = a;
    b.pt = 125;
    strcpy(b.fmtp, "packetization-mode=1;profile-level-id=42E01F");
    assert_true(pl_sdp_codec_same(&a, &b));
    strcpy(b.fmtp, "packetization-mode=0;profile-level-id=42e01f");
    assert_false(pl_sdp_codec_same(&a, &b));
    pl_sdp_codec_t o1 = { .codec = PL_CODEC_OPUS, .name = "opus", .clock = 48000, .channels = 2 };
    pl_sdp_codec_t o2 = o1;
    assert_true(pl_sdp_codec_same(&o1, &o2));
    o2.clock = 16000;
    assert_false(pl_sdp_codec_same(&o1, &o2));
    pl_sdp_codec_t v1 = { .codec = PL_CODEC_VP9, .name = "VP9", .clock = 90000, .fmtp = "profile-id=0" };
    pl_sdp_codec_t v2 = v1;
    v2.fmtp[0] = '\0';      /* profile-id defaults to 0 */
    assert_true(pl_sdp_codec_same(&v1, &v2));
    strcpy(v2.fmtp, "profile-id=2");
    assert_false(pl_sdp_codec_same(&v1, &v2));
}

static void test_build_roundtrip(void **state)
{
    (void)state;
    pl_sdp_codec_t vp8 = { .pt = 96, .codec = PL_CODEC_VP8, .name = "VP8", .clock = 90000,
                           .rtx_pt = 97, .fb = PL_FB_NACK | PL_FB_PLI | PL_FB_REMB };
    pl_sdp_codec_t opus = { .pt = 111, .codec = PL_CODEC_OPUS, .name = "opus", .clock = 48000,
                            .channels = 2, .fmtp = "minptime=10;useinbandfec=1" };
    pl_sdp_ext_t ext[] = { { 4, PL_EXT_MID }, { 10, PL_EXT_RID } };
    const char *rids[] = { "q", "h", "f" };
    const char *cands[] = { "candidate:1 1 UDP 2015363327 127.0.0.1 40001 typ host" };
    pl_sdp_out_media_t media[] = {
        { .kind = PL_MEDIA_AUDIO, .mid = "0", .dir = PL_DIR_RECVONLY, .codec = &opus },
        { .kind = PL_MEDIA_VIDEO, .mid = "1", .dir = PL_DIR_RECVONLY, .codec = &vp8,
          .exts = ext, .n_exts = 2, .rids = rids, .n_rids = 3 },
        { .kind = PL_MEDIA_OTHER, .media = "application", .proto = "UDP/DTLS/SCTP",
          .fmt0 = "webrtc-datachannel", .rejected = true, .mid = "2" },
        { .kind = PL_MEDIA_VIDEO, .mid = "s1", .dir = PL_DIR_SENDONLY, .codec = &vp8,
          .ssrc = 1234, .rtx_ssrc = 5678, .cname = "p7", .msid_stream = "p7", .msid_track = "t3" },
    };
    pl_sdp_out_t o = { .sess_id = 42, .sess_version = 3, .ufrag = "uf", .pwd = "pwdpwdpwdpwdpwdpwdpwdpwd",
                       .fingerprint = "AA:BB", .setup = "passive", .cands = cands, .n_cands = 1,
                       .media = media, .n_media = 4 };
    char *text = pl_sdp_build(&o);
    assert_non_null(strstr(text, "a=group:BUNDLE 0 1 s1\r\n"));
    assert_non_null(strstr(text, "a=simulcast:recv q;h;f\r\n"));
    assert_non_null(strstr(text, "a=rid:h recv\r\n"));
    assert_non_null(strstr(text, "a=rtcp-mux\r\n"));
    assert_non_null(strstr(text, "a=end-of-candidates\r\n"));
    assert_non_null(strstr(text, "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
    assert_non_null(strstr(text, "a=ssrc-group:FID 1234 5678\r\n"));
    assert_non_null(strstr(text, "a=msid:p7 t3\r\n"));
    assert_non_null(strstr(text, "a=fingerprint:sha-256 AA:BB\r\n"));
    pl_sdp_desc_t *d = pl_sdp_desc_new();
    char err[128];
    assert_int_equal(pl_sdp_parse(text, d, err, sizeof(err)), 0);
    assert_int_equal(d->n_media, 4);
    assert_int_equal(d->media[0].dir, PL_DIR_RECVONLY);
    assert_int_equal(pl_sdp_codec_by_pt(&d->media[0], 111)->channels, 2);
    assert_string_equal(pl_sdp_codec_by_pt(&d->media[0], 111)->fmtp, "minptime=10;useinbandfec=1");
    assert_int_equal(pl_sdp_codec_by_pt(&d->media[1], 96)->rtx_pt, 97);
    assert_int_equal(pl_sdp_codec_by_pt(&d->media[1], 96)->fb, vp8.fb);
    assert_int_equal(d->media[2].port, 0);
    assert_int_equal(d->media[3].dir, PL_DIR_SENDONLY);
    assert_int_equal(d->media[3].ssrc, 1234);
    assert_int_equal(d->media[3].rtx_ssrc, 5678);
    assert_string_equal(d->media[3].setup, "passive");
    assert_int_equal(d->n_cands, 3);    /* once per bundled m-line */
    free(d);
    g_free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_chrome_offer),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_codec_same),
        cmocka_unit_test(test_build_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
