/* rtp_codec.c: keyframe and frame-start detection from video payload descriptors:
 * VP8 (RFC 7741 §4.2-4.3), VP9 (RFC 9628 §4.2) and H.264 (RFC 6184 §5.6-5.8).
 *
 * What it does not: decode anything past the descriptor and the first codec header
 * byte; the SFU stays blind to the media, so end-to-end encrypted frames still forward.
 * (With SFrame the VP8 payload header is encrypted too: keyframe detection then relies
 * on the unencrypted descriptor bits only, which is why frame_start is reported apart.)
 *
 * Threading: pure functions, reentrant. */
#include "relay/sfu/pl_rtp.h"

static int vp8_info(const uint8_t *p, size_t len, pl_frame_info_t *out)
{
    size_t i = 1;
    if (len < 1)
        return PL_EPARSE;
    bool x = p[0] & 0x80, s = p[0] & 0x10;
    unsigned pid = p[0] & 0x07;
    if (x) {
        if (len < 2)
            return PL_EPARSE;
        uint8_t ext = p[1];
        i = 2;
        if (ext & 0x80) {                   /* I: PictureID, 7 or 15 bits (M) */
            if (i >= len)
                return PL_EPARSE;
            i += (p[i] & 0x80) ? 2 : 1;
        }
        if (ext & 0x40)                     /* L: TL0PICIDX */
            i++;
        if (ext & 0x30) {                   /* T or K: TID|Y|KEYIDX */
            if (i >= len)
                return PL_EPARSE;
            if (ext & 0x20)
                out->temporal_id = p[i] >> 6;
            i++;
        }
        if (i > len)
            return PL_EPARSE;
    }
    out->frame_start = s && pid == 0;
    /* §4.3: the first payload header byte of a frame; P (bit 0) clear means key frame. */
    if (out->frame_start && i < len)
        out->keyframe = (p[i] & 0x01) == 0;
    return 0;
}

static int vp9_info(const uint8_t *p, size_t len, pl_frame_info_t *out)
{
    if (len < 1)
        return PL_EPARSE;
    uint8_t b = p[0];
    bool has_i = b & 0x80, inter = b & 0x40, has_l = b & 0x20, flex = b & 0x10;
    bool begin = b & 0x08;
    size_t i = 1;
    if (has_i) {
        if (i >= len)
            return PL_EPARSE;
        i += (p[i] & 0x80) ? 2 : 1;
    }
    if (has_l) {
        if (i >= len)
            return PL_EPARSE;
        out->temporal_id = p[i] >> 5;
        out->spatial_id = (p[i] >> 1) & 0x07;
        i += flex ? 1 : 2;                  /* non-flexible mode adds TL0PICIDX */
    }
    if (i > len)
        return PL_EPARSE;
    out->frame_start = begin;
    /* A key picture starts with a non-inter-predicted frame of the base spatial layer. */
    out->keyframe = begin && !inter && out->spatial_id <= 0;
    return 0;
}

static bool h264_key_nal(uint8_t type)
{
    return type == 5 || type == 7;          /* IDR slice, or SPS that precedes one */
}

static int h264_info(const uint8_t *p, size_t len, pl_frame_info_t *out)
{
    if (len < 1)
        return PL_EPARSE;
    uint8_t type = p[0] & 0x1f;
    if (type >= 1 && type <= 23) {
        out->frame_start = true;
        out->keyframe = h264_key_nal(type);
    } else if (type == 24) {                /* STAP-A: 16-bit sizes, then NAL units */
        out->frame_start = true;
        size_t i = 1;
        while (i < len) {
            if (i + 2 > len)
                return PL_EPARSE;
            size_t n = (size_t)p[i] << 8 | p[i + 1];
            i += 2;
            if (n == 0 || i + n > len)
                return PL_EPARSE;
            if (h264_key_nal(p[i] & 0x1f))
                out->keyframe = true;
            i += n;
        }
    } else if (type == 28) {                /* FU-A: FU header S bit and NAL type */
        if (len < 2)
            return PL_EPARSE;
        out->frame_start = p[1] & 0x80;
        out->keyframe = out->frame_start && h264_key_nal(p[1] & 0x1f);
    }
    return 0;
}

int pl_rtp_frame_info(pl_codec_t c, const uint8_t *payload, size_t len,
                      pl_frame_info_t *out)
{
    *out = (pl_frame_info_t){ .temporal_id = -1, .spatial_id = -1 };
    switch (c) {
    case PL_CODEC_VP8:
        return vp8_info(payload, len, out);
    case PL_CODEC_VP9:
        return vp9_info(payload, len, out);
    case PL_CODEC_H264:
        return h264_info(payload, len, out);
    default:
        out->frame_start = true;
        return 0;
    }
}
