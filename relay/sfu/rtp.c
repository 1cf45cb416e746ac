/* rtp.c: RTP packet classification, header and RFC 8285 extension parsing, extension
 * block writing and the per-subscriber packet rewrite.
 *
 * What it does not: no payload inspection (rtp_codec.c), no state (rtp_munger.c keeps
 * the sequence mapping), no I/O, no allocation.
 *
 * Threading: pure functions, reentrant. */
#include "relay/sfu/pl_rtp.h"
#include "relay/sfu/rtp_int.h"

#include <strings.h>
#include <string.h>

pl_rtp_class_t pl_rtp_classify(const uint8_t *p, size_t len)
{
    if (len == 0)
        return PL_PKT_UNKNOWN;
    uint8_t b = p[0];
    /* RFC 7983 §7: 0-3 STUN, 20-63 DTLS, 128-191 RTP/RTCP. */
    if (b <= 3)
        return PL_PKT_STUN;
    if (b >= 20 && b <= 63)
        return PL_PKT_DTLS;
    if (b >= 128 && b <= 191) {
        if (len < 2)
            return PL_PKT_UNKNOWN;
        /* RFC 5761 §4: RTCP packet types 192-223 fall where RTP would carry PT 64-95
         * with the marker bit set; those PTs are never negotiated. */
        uint8_t pt = p[1];
        return (pt >= 192 && pt <= 223) ? PL_PKT_RTCP : PL_PKT_RTP;
    }
    return PL_PKT_UNKNOWN;
}

static int add_ext(pl_rtp_hdr_t *h, uint8_t id, uint8_t len, size_t off)
{
    if (h->n_ext >= PL_RTP_MAX_EXTS)
        return PL_EPARSE;
    h->ext[h->n_ext++] = (pl_rtp_ext_t){ .id = id, .len = len, .off = (uint16_t)off };
    return 0;
}

/* RFC 8285 §4.2: one-byte header elements; ID 0 is padding (a byte whose length bits
 * are not zero is skipped alike, as libwebrtc does), ID 15 ends the block. */
static int parse_one_byte(const uint8_t *p, size_t i, size_t end, pl_rtp_hdr_t *h)
{
    while (i < end) {
        uint8_t b = p[i];
        if ((b >> 4) == 0) {
            i++;
            continue;
        }
        uint8_t id = b >> 4;
        size_t l = (size_t)(b & 0x0f) + 1;
        if (id == 15)
            return 0;
        if (i + 1 + l > end)
            return PL_EPARSE;
        if (add_ext(h, id, (uint8_t)l, i + 1) < 0)
            return PL_EPARSE;
        i += 1 + l;
    }
    return 0;
}

/* RFC 8285 §4.3: two-byte header elements (ID, length 0..255). */
static int parse_two_byte(const uint8_t *p, size_t i, size_t end, pl_rtp_hdr_t *h)
{
    while (i < end) {
        uint8_t id = p[i];
        if (id == 0) {
            i++;
            continue;
        }
        if (i + 2 > end)
            return PL_EPARSE;
        size_t l = p[i + 1];
        if (i + 2 + l > end)
            return PL_EPARSE;
        if (add_ext(h, id, (uint8_t)l, i + 2) < 0)
            return PL_EPARSE;
        i += 2 + l;
    }
    return 0;
}

static int parse_ext_block(const uint8_t *p, size_t len, size_t *off, pl_rtp_hdr_t *h)
{
    if (*off + 4 > len)
        return PL_EPARSE;
    h->ext_profile = pl_rd16(p + *off);
    size_t start = *off + 4;
    size_t end = start + (size_t)pl_rd16(p + *off + 2) * 4;
    if (end > len)
        return PL_EPARSE;
    int rc = 0;
    if (h->ext_profile == 0xBEDE)
        rc = parse_one_byte(p, start, end, h);
    else if ((h->ext_profile & 0xFFF0) == 0x1000)
        rc = parse_two_byte(p, start, end, h);
    *off = end;
    return rc;
}

int pl_rtp_parse(const uint8_t *p, size_t len, pl_rtp_hdr_t *h)
{
    memset(h, 0, offsetof(pl_rtp_hdr_t, ext));
    h->n_ext = 0;
    if (len < PL_RTP_HEADER_LEN || len > 65535 || (p[0] >> 6) != 2)
        return PL_EPARSE;
    bool padding = p[0] & 0x20;
    h->cc = p[0] & 0x0f;
    h->marker = p[1] >> 7;
    h->pt = p[1] & 0x7f;
    h->seq = pl_rd16(p + 2);
    h->ts = pl_rd32(p + 4);
    h->ssrc = pl_rd32(p + 8);
    h->csrc_off = PL_RTP_HEADER_LEN;
    size_t off = PL_RTP_HEADER_LEN + (size_t)h->cc * 4;
    if (off > len)
        return PL_EPARSE;
    if ((p[0] & 0x10) && parse_ext_block(p, len, &off, h) < 0)
        return PL_EPARSE;
    size_t pad = 0;
    if (padding) {
        /* RFC 3550 §5.1: the last byte counts the padding, itself included. */
        if (off == len)
            return PL_EPARSE;
        pad = p[len - 1];
        if (pad == 0 || pad > len - off)
            return PL_EPARSE;
    }
    h->payload_off = (uint16_t)off;
    h->payload_len = (uint16_t)(len - off - pad);
    h->pad_len = (uint8_t)pad;
    return 0;
}

const uint8_t *pl_rtp_ext_get(const pl_rtp_hdr_t *h, const uint8_t *p, uint8_t id,
                              size_t *len)
{
    if (id == 0)
        return NULL;
    for (size_t i = 0; i < h->n_ext; i++) {
        if (h->ext[i].id == id) {
            *len = h->ext[i].len;
            return p + h->ext[i].off;
        }
    }
    return NULL;
}

int pl_rtp_ext_write(uint8_t *out, size_t cap, const pl_rtp_ext_out_t *ext, size_t n)
{
    if (n == 0)
        return 0;
    bool one = true;
    size_t body = 0;
    for (size_t i = 0; i < n; i++) {
        if (ext[i].id == 0)
            return PL_EPARSE;
        if (ext[i].id > 14 || ext[i].len < 1 || ext[i].len > 16)
            one = false;
    }
    for (size_t i = 0; i < n; i++)
        body += (one ? 1u : 2u) + ext[i].len;
    size_t words = (body + 3) / 4;
    size_t total = 4 + words * 4;
    if (total > cap || words > 0xFFFF)
        return PL_ELIMIT;
    pl_wr16(out, one ? 0xBEDE : 0x1000);
    pl_wr16(out + 2, (uint16_t)words);
    uint8_t *w = out + 4;
    for (size_t i = 0; i < n; i++) {
        if (one) {
            *w++ = (uint8_t)(ext[i].id << 4 | (ext[i].len - 1));
        } else {
            *w++ = ext[i].id;
            *w++ = ext[i].len;
        }
        if (ext[i].len)
            memcpy(w, ext[i].data, ext[i].len);
        w += ext[i].len;
    }
    memset(w, 0, (size_t)(out + total - w));
    return (int)total;
}

int pl_rtp_rewrite(const uint8_t *in, const pl_rtp_hdr_t *h, const pl_rtp_rewrite_t *rw,
                   uint8_t *out, size_t cap)
{
    size_t fixed = PL_RTP_HEADER_LEN + (size_t)h->cc * 4;
    size_t tail = (size_t)h->payload_len + h->pad_len;
    if (fixed > cap)
        return PL_ELIMIT;
    int elen = pl_rtp_ext_write(out + fixed, cap - fixed, rw->ext, rw->n_ext);
    if (elen < 0)
        return elen;
    size_t total = fixed + (size_t)elen + tail;
    if (total > cap)
        return PL_ELIMIT;
    out[0] = (uint8_t)(0x80 | (h->pad_len ? 0x20 : 0) | (elen > 0 ? 0x10 : 0) | h->cc);
    out[1] = (uint8_t)((rw->marker ? 0x80 : 0) | (rw->pt & 0x7f));
    pl_wr16(out + 2, rw->seq);
    pl_wr32(out + 4, rw->ts);
    pl_wr32(out + 8, rw->ssrc);
    memcpy(out + PL_RTP_HEADER_LEN, in + h->csrc_off, (size_t)h->cc * 4);
    memcpy(out + fixed + elen, in + h->payload_off, tail);
    return (int)total;
}

static const char *const ext_uris[PL_EXT_KIND_COUNT] = {
    [PL_EXT_MID] = "urn:ietf:params:rtp-hdrext:sdes:mid",
    [PL_EXT_RID] = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    [PL_EXT_RRID] = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    [PL_EXT_ABS_SEND_TIME] = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    [PL_EXT_TWCC] =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    [PL_EXT_AUDIO_LEVEL] = "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    [PL_EXT_VIDEO_ORIENTATION] = "urn:3gpp:video-orientation",
    [PL_EXT_TOFFSET] = "urn:ietf:params:rtp-hdrext:toffset",
};

const char *pl_rtp_ext_uri(pl_rtp_ext_kind_t kind)
{
    if ((int)kind <= PL_EXT_NONE || kind >= PL_EXT_KIND_COUNT)
        return NULL;
    return ext_uris[kind];
}

pl_rtp_ext_kind_t pl_rtp_ext_kind(const char *uri)
{
    for (int k = PL_EXT_NONE + 1; k < PL_EXT_KIND_COUNT; k++)
        if (strcmp(uri, ext_uris[k]) == 0)
            return (pl_rtp_ext_kind_t)k;
    return PL_EXT_NONE;
}

int pl_rtp_audio_level(const uint8_t *v, size_t len, uint8_t *level_dbov, bool *voice)
{
    if (len < 1)
        return PL_EPARSE;
    *voice = v[0] >> 7;
    *level_dbov = v[0] & 0x7f;
    return 0;
}

uint32_t pl_rtp_abs_send_time(uint64_t now_us)
{
    /* 6.18 fixed-point seconds, wrapping every 64 s. */
    return (uint32_t)(((now_us << 18) / 1000000u) & 0xFFFFFFu);
}

uint64_t pl_ntp_from_unix_us(uint64_t unix_us)
{
    /* RFC 5905: the NTP era starts 2,208,988,800 s before the Unix epoch. */
    uint64_t sec = unix_us / 1000000u + UINT64_C(2208988800);
    uint64_t frac = ((unix_us % 1000000u) << 32) / 1000000u;
    return sec << 32 | frac;
}

static const struct { const char *name; pl_codec_t codec; } codec_names[] = {
    { "opus", PL_CODEC_OPUS }, { "VP8", PL_CODEC_VP8 },
    { "VP9", PL_CODEC_VP9 }, { "H264", PL_CODEC_H264 },
};

pl_codec_t pl_codec_from_name(const char *name)
{
    for (size_t i = 0; i < PL_ARRAY_LEN(codec_names); i++)
        if (strcasecmp(name, codec_names[i].name) == 0)
            return codec_names[i].codec;
    return PL_CODEC_NONE;
}

const char *pl_codec_name(pl_codec_t c)
{
    for (size_t i = 0; i < PL_ARRAY_LEN(codec_names); i++)
        if (codec_names[i].codec == c)
            return codec_names[i].name;
    return "none";
}
