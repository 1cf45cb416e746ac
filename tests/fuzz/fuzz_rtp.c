/* fuzz_rtp.c: libFuzzer target for the SFU's RTP/RTCP codec (relay/sfu/pl_rtp.h).
 *
 * Feeds arbitrary bytes to every entry point that sees network data: classification,
 * the RTP parser and extension lookups, the per-subscriber rewrite, keyframe detection
 * for every codec, the RTCP compound walk with NACK/FIR/transport-cc decoding, the
 * munger and the receiver statistics. ASan/UBSan catch out-of-bounds reads and
 * undefined behaviour; abort() marks a broken invariant:
 *  - a parsed packet's payload, padding and extension values lie inside the input;
 *  - a rewrite that keeps every extension parses again to the same header fields,
 *    extensions and payload;
 *  - each RTCP packet lies inside the compound, NACK expansion stays within its cap;
 *  - the munger's output sequence never goes backwards across a switch.
 * Seeds: tests/fuzz/corpus/rtp (Chromium-shaped RTP packets, compound RTCP). */
#include <stdlib.h>
#include <string.h>

#include "relay/sfu/pl_rtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint32_t g_sink;

static void touch(const uint8_t *p, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    g_sink += s;
}

static void check_rewrite(const uint8_t *data, size_t size, const pl_rtp_hdr_t *h)
{
    pl_rtp_ext_out_t ext[PL_RTP_MAX_EXTS];
    for (size_t i = 0; i < h->n_ext; i++)
        ext[i] = (pl_rtp_ext_out_t){ h->ext[i].id, h->ext[i].len, data + h->ext[i].off };
    pl_rtp_rewrite_t rw = { .pt = (uint8_t)(h->pt ^ 1), .marker = !h->marker,
                            .seq = (uint16_t)(h->seq + 1), .ts = h->ts + 1,
                            .ssrc = ~h->ssrc, .ext = ext, .n_ext = h->n_ext };
    static uint8_t out[65536 + 1024];
    int n = pl_rtp_rewrite(data, h, &rw, out, sizeof(out));
    if (n == PL_ELIMIT)
        return;             /* the block grew past 65535 bytes of packet: allowed */
    if (n < 0)
        abort();            /* ids come from a parse, so they are valid */
    pl_rtp_hdr_t o;
    if ((size_t)n <= 65535) {
        if (pl_rtp_parse(out, (size_t)n, &o) != 0)
            abort();
        if (o.pt != rw.pt || o.marker != rw.marker || o.seq != rw.seq || o.ts != rw.ts ||
            o.ssrc != rw.ssrc || o.n_ext != h->n_ext || o.cc != h->cc ||
            o.payload_len != h->payload_len || o.pad_len != h->pad_len)
            abort();
        for (size_t i = 0; i < o.n_ext; i++)
            if (o.ext[i].id != h->ext[i].id || o.ext[i].len != h->ext[i].len ||
                memcmp(out + o.ext[i].off, data + h->ext[i].off, o.ext[i].len) != 0)
                abort();
        if (memcmp(out + o.payload_off, data + h->payload_off, h->payload_len) != 0)
            abort();
    }
    (void)size;
}

static void fuzz_rtp(const uint8_t *data, size_t size)
{
    pl_rtp_hdr_t h;
    if (pl_rtp_parse(data, size, &h) != 0)
        return;
    if ((size_t)h.payload_off + h.payload_len + h.pad_len != size)
        abort();
    for (size_t i = 0; i < h.n_ext; i++) {
        size_t len;
        if ((size_t)h.ext[i].off + h.ext[i].len > size)
            abort();
        const uint8_t *v = pl_rtp_ext_get(&h, data, h.ext[i].id, &len);
        if (!v)
            abort();
        touch(v, len);
        uint8_t lvl;
        bool voice;
        (void)pl_rtp_audio_level(v, len, &lvl, &voice);
    }
    touch(data + h.payload_off, h.payload_len);
    static const pl_codec_t codecs[] = { PL_CODEC_OPUS, PL_CODEC_VP8, PL_CODEC_VP9,
                                         PL_CODEC_H264 };
    for (size_t i = 0; i < PL_ARRAY_LEN(codecs); i++) {
        pl_frame_info_t fi;
        (void)pl_rtp_frame_info(codecs[i], data + h.payload_off, h.payload_len, &fi);
    }
    check_rewrite(data, size, &h);
}

static void twcc_cb(void *arg, uint16_t seq, bool received, int32_t delta)
{
    (void)arg;
    g_sink += seq + (uint32_t)received + (uint32_t)delta;
}

static void fuzz_rtcp(const uint8_t *data, size_t size)
{
    pl_rtcp_iter_t it;
    pl_rtcp_pkt_t p;
    pl_rtcp_iter_init(&it, data, size);
    while (pl_rtcp_next(&it, &p) == 1) {
        if (p.data < data || p.data + p.len > data + size || p.len < 4)
            abort();
        uint16_t seqs[64];
        if (pl_rtcp_nack_seqs(&p, seqs, 64) > 64)
            abort();
        if (p.kind == PL_RTCPK_FIR)
            for (size_t i = 0; i < p.n_fci; i++) {
                uint32_t ssrc;
                uint8_t seq;
                pl_rtcp_fir_entry(&p, i, &ssrc, &seq);
                g_sink += ssrc + seq;
            }
        if (p.kind == PL_RTCPK_TWCC)
            (void)pl_rtcp_twcc_walk(&p, twcc_cb, NULL);
        for (size_t i = 0; i < p.n_rb; i++)
            g_sink += p.rb[i].ssrc;
    }
}

/* Reads 8-byte records (ssrc selector, seq, ts, elapsed) and checks that the output
 * sequence keeps moving forward on every source switch. */
static void fuzz_munger(const uint8_t *data, size_t size)
{
    pl_rtp_munger_t m;
    pl_rtp_rx_stats_t s;
    memset(&m, 0, sizeof(m));
    memset(&s, 0, sizeof(s));
    uint64_t now = 0;
    for (size_t i = 0; i + 8 <= size; i += 8) {
        const uint8_t *r = data + i;
        uint32_t src = r[0] & 3;
        uint16_t seq = (uint16_t)(r[1] << 8 | r[2]);
        uint32_t ts = (uint32_t)r[3] << 24 | (uint32_t)r[4] << 16 | (uint32_t)r[5] << 8;
        now += (uint64_t)r[6] * 1000;
        bool sw = m.started && src != m.src_ssrc;
        uint16_t before = m.last_out_seq, os;
        uint32_t ot;
        if (r[7] & 1) {
            (void)pl_rtp_munger_drop(&m, src, seq);
            continue;
        }
        if (pl_rtp_munger_map(&m, src, seq, ts, now, 90000, &os, &ot) == 0 && sw &&
            os != (uint16_t)(before + 1))
            abort();
        pl_rtp_rx_update(&s, seq, ts, (uint32_t)now);
    }
    pl_rtcp_rb_t rb;
    pl_rtp_rx_report(&s, 1, now, &rb);
    g_sink += rb.fraction_lost;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)pl_rtp_classify(data, size);
    fuzz_rtp(data, size);
    fuzz_rtcp(data, size);
    fuzz_munger(data, size);
    return 0;
}
