/* test_rtp_codec.c: keyframe and frame-start detection from VP8, VP9 and H.264 payload
 * descriptors, including truncated descriptors, which must be errors, never reads past
 * the end. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "relay/sfu/pl_rtp.h"

static pl_frame_info_t info(pl_codec_t c, const uint8_t *p, size_t n, int want_rc)
{
    pl_frame_info_t fi;
    assert_int_equal(pl_rtp_frame_info(c, p, n, &fi), want_rc);
    return fi;
}
#define INFO(c, rc, ...) \
    info(c, (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }), rc)

static void test_vp8(void **state)
{
    (void)state;
    /* X S, I with a 15-bit picture id, payload header with P = 0: key frame. */
    pl_frame_info_t fi = INFO(PL_CODEC_VP8, 0, 0x90, 0x80, 0x80, 0x05, 0x10, 0x02);
    assert_true(fi.keyframe);
    assert_true(fi.frame_start);
    assert_int_equal(fi.temporal_id, -1);
    /* Same with P = 1: a delta frame. */
    fi = INFO(PL_CODEC_VP8, 0, 0x90, 0x80, 0x80, 0x05, 0x11, 0x02);
    assert_false(fi.keyframe);
    assert_true(fi.frame_start);
    /* S = 0: a continuation packet; its first payload byte means nothing. */
    fi = INFO(PL_CODEC_VP8, 0, 0x80, 0x80, 0x80, 0x05, 0x10);
    assert_false(fi.keyframe);
    assert_false(fi.frame_start);
    /* S = 1 but partition 1: not a frame start. */
    fi = INFO(PL_CODEC_VP8, 0, 0x11, 0x10);
    assert_false(fi.frame_start);
    /* T: temporal layer 1; L: TL0PICIDX. */
    fi = INFO(PL_CODEC_VP8, 0, 0x90, 0x60, 0x07, 0x40, 0x00);
    assert_true(fi.keyframe);
    assert_int_equal(fi.temporal_id, 1);
    /* No X: the payload header follows the first byte. */
    fi = INFO(PL_CODEC_VP8, 0, 0x10, 0x00);
    assert_true(fi.keyframe);
    /* Start of a frame with no payload byte at all: not a key frame, no error. */
    fi = INFO(PL_CODEC_VP8, 0, 0x10);
    assert_false(fi.keyframe);
    /* Truncations. */
    INFO(PL_CODEC_VP8, PL_EPARSE, 0x90);
    INFO(PL_CODEC_VP8, PL_EPARSE, 0x90, 0x80);
    INFO(PL_CODEC_VP8, PL_EPARSE, 0x90, 0x80, 0x80);
    INFO(PL_CODEC_VP8, PL_EPARSE, 0x90, 0x20);
    INFO(PL_CODEC_VP8, PL_EPARSE, 0x90, 0x40);                      /* L, no TL0PICIDX */
    assert_int_equal(pl_rtp_frame_info(PL_CODEC_VP8, NULL, 0, &fi), PL_EPARSE);
}

static void test_vp9(void **state)
{
    (void)state;
    /* I (15-bit id) B E, not inter-predicted: key frame. */
    pl_frame_info_t fi = INFO(PL_CODEC_VP9, 0, 0x8c, 0x81, 0x23, 0x00);
    assert_true(fi.keyframe);
    assert_true(fi.frame_start);
    fi = INFO(PL_CODEC_VP9, 0, 0xcc, 0x81, 0x23, 0x00);         /* P */
    assert_false(fi.keyframe);
    fi = INFO(PL_CODEC_VP9, 0, 0x04, 0x00);                     /* no B */
    assert_false(fi.frame_start);
    assert_false(fi.keyframe);
    /* L, non-flexible: TID 2, SID 1 plus TL0PICIDX: not the base layer. */
    fi = INFO(PL_CODEC_VP9, 0, 0xac, 0x05, 0x42, 0x07);
    assert_false(fi.keyframe);
    assert_int_equal(fi.temporal_id, 2);
    assert_int_equal(fi.spatial_id, 1);
    fi = INFO(PL_CODEC_VP9, 0, 0xac, 0x05, 0x40, 0x07);
    assert_true(fi.keyframe);
    assert_int_equal(fi.spatial_id, 0);
    /* Flexible mode: no TL0PICIDX. */
    fi = INFO(PL_CODEC_VP9, 0, 0x38, 0x00);
    assert_true(fi.keyframe);
    INFO(PL_CODEC_VP9, PL_EPARSE, 0xac, 0x05);
    INFO(PL_CODEC_VP9, PL_EPARSE, 0xac, 0x05, 0x42);
    INFO(PL_CODEC_VP9, PL_EPARSE, 0x80);
    INFO(PL_CODEC_VP9, PL_EPARSE, 0x80, 0x80);
}

static void test_h264(void **state)
{
    (void)state;
    assert_true(INFO(PL_CODEC_H264, 0, 0x65, 0x88).keyframe);         /* IDR */
    assert_true(INFO(PL_CODEC_H264, 0, 0x67, 0x42).keyframe);         /* SPS */
    assert_false(INFO(PL_CODEC_H264, 0, 0x41, 0x9a).keyframe);        /* P slice */
    /* STAP-A with SPS, PPS, IDR as Chromium sends a key frame's first packet. */
    pl_frame_info_t fi = INFO(PL_CODEC_H264, 0, 0x78, 0x00, 0x02, 0x67, 0x42,
                              0x00, 0x02, 0x68, 0xce, 0x00, 0x03, 0x65, 0x88, 0x84);
    assert_true(fi.keyframe);
    assert_true(fi.frame_start);
    assert_false(INFO(PL_CODEC_H264, 0, 0x78, 0x00, 0x02, 0x41, 0x00).keyframe);
    INFO(PL_CODEC_H264, PL_EPARSE, 0x78, 0x00, 0x05, 0x67);           /* NAL past end */
    INFO(PL_CODEC_H264, PL_EPARSE, 0x78, 0x00, 0x00);                 /* zero size */
    INFO(PL_CODEC_H264, PL_EPARSE, 0x78, 0x00, 0x01, 0x41, 0x00);     /* half a size */
    /* FU-A: start of an IDR, middle of one, start of a P slice. */
    fi = INFO(PL_CODEC_H264, 0, 0x7c, 0x85, 0xb8);
    assert_true(fi.keyframe);
    assert_true(fi.frame_start);
    fi = INFO(PL_CODEC_H264, 0, 0x7c, 0x05, 0xb8);
    assert_false(fi.keyframe);
    assert_false(fi.frame_start);
    fi = INFO(PL_CODEC_H264, 0, 0x5c, 0x81, 0x9a);
    assert_false(fi.keyframe);
    assert_true(fi.frame_start);
    INFO(PL_CODEC_H264, PL_EPARSE, 0x7c);
    assert_false(INFO(PL_CODEC_H264, 0, 0x00).keyframe);              /* type 0 */
}

static void test_audio_and_unknown(void **state)
{
    (void)state;
    pl_frame_info_t fi = INFO(PL_CODEC_OPUS, 0, 0xfc, 0xff, 0xfe);
    assert_true(fi.frame_start);
    assert_false(fi.keyframe);
    assert_int_equal(pl_rtp_frame_info(PL_CODEC_NONE, NULL, 0, &fi), 0);
    assert_true(fi.frame_start);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vp8),
        cmocka_unit_test(test_vp9),
        cmocka_unit_test(test_h264),
        cmocka_unit_test(test_audio_and_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
