/* rtcp.c: compound RTCP parsing (RFC 3550 §6.4-6.6, RFC 4585 §6, RFC 5104 §4.3.1,
 * draft-alvestrand-rmcat-remb-03, draft-holmer-rmcat-transport-wide-cc-extensions-01)
 * and the builders of the packets the SFU sends.
 *
 * What it does not: no decisions (which NACK to answer, when to send a PLI: the
 * forwarder), no SRTCP, no allocation.
 *
 * Threading: pure functions, reentrant. */
#include "relay/sfu/pl_rtp.h"
#include "relay/sfu/rtp_int.h"

#include <string.h>

void pl_rtcp_iter_init(pl_rtcp_iter_t *it, const uint8_t *p, size_t len)
{
    it->p = p;
    it->len = len;
    it->off = 0;
}

static void parse_rb(const uint8_t *p, pl_rtcp_rb_t *rb)
{
    rb->ssrc = pl_rd32(p);
    rb->fraction_lost = p[4];
    uint32_t cl = pl_rd24(p + 5);
    rb->cumulative_lost = (cl & 0x800000) ? (int32_t)(cl | 0xFF000000u) : (int32_t)cl;
    rb->highest_seq = pl_rd32(p + 8);
    rb->jitter = pl_rd32(p + 12);
    rb->lsr = pl_rd32(p + 16);
    rb->dlsr = pl_rd32(p + 20);
}

static int parse_reports(const uint8_t *p, size_t len, size_t off, pl_rtcp_pkt_t *o)
{
    if (off + (size_t)o->fmt * 24 > len)
        return PL_EPARSE;
    o->n_rb = o->fmt;
    for (size_t i = 0; i < o->n_rb; i++)
        parse_rb(p + off + i * 24, &o->rb[i]);
    return 0;
}

static int parse_remb(const uint8_t *p, size_t len, pl_rtcp_pkt_t *o)
{
    if (len < 20 || memcmp(p + 12, "REMB", 4) != 0) {
        o->kind = PL_RTCPK_OTHER;
        return 0;
    }
    size_t n = p[16];
    if (20 + n * 4 > len)
        return PL_EPARSE;
    unsigned exp = p[17] >> 2;
    uint64_t mantissa = (uint64_t)(p[17] & 0x03) << 16 | pl_rd16(p + 18);
    /* 18-bit mantissa: shifting by more than 46 would overflow 64 bits. */
    o->remb_bps = exp > 46 ? UINT64_MAX : mantissa << exp;
    o->n_remb_ssrcs = (uint8_t)PL_MIN(n, (size_t)PL_RTCP_MAX_REMB_SSRCS);
    for (size_t i = 0; i < o->n_remb_ssrcs; i++)
        o->remb_ssrcs[i] = pl_rd32(p + 20 + i * 4);
    o->kind = PL_RTCPK_REMB;
    return 0;
}

static int parse_rtpfb(const uint8_t *p, size_t len, pl_rtcp_pkt_t *o)
{
    if (o->fmt == PL_RTCP_FMT_NACK) {
        o->kind = PL_RTCPK_NACK;
        o->n_fci = (len - 12) / 4;
        o->fci = p + 12;
        return o->n_fci ? 0 : PL_EPARSE;
    }
    if (o->fmt == PL_RTCP_FMT_TWCC) {
        if (len < 20)
            return PL_EPARSE;
        o->kind = PL_RTCPK_TWCC;
        o->twcc_base_seq = pl_rd16(p + 12);
        o->twcc_count = pl_rd16(p + 14);
        uint32_t rt = pl_rd24(p + 16);
        o->twcc_ref_time = (rt & 0x800000) ? (int32_t)(rt | 0xFF000000u) : (int32_t)rt;
        o->twcc_fb_count = p[19];
        o->fci = p + 20;
        return 0;
    }
    o->kind = PL_RTCPK_OTHER;
    return 0;
}

static int parse_psfb(const uint8_t *p, size_t len, pl_rtcp_pkt_t *o)
{
    switch (o->fmt) {
    case PL_RTCP_FMT_PLI:
        o->kind = PL_RTCPK_PLI;
        return 0;
    case PL_RTCP_FMT_FIR:
        o->kind = PL_RTCPK_FIR;
        o->fci = p + 12;
        o->n_fci = (len - 12) / 8;
        return o->n_fci ? 0 : PL_EPARSE;
    case PL_RTCP_FMT_AFB:
        return parse_remb(p, len, o);
    default:
        o->kind = PL_RTCPK_OTHER;
        return 0;
    }
}

static int parse_one(const uint8_t *p, size_t len, pl_rtcp_pkt_t *o)
{
    switch (o->pt) {
    case PL_RTCP_SR:
        if (len < 28)
            return PL_EPARSE;
        o->kind = PL_RTCPK_SR;
        o->sender_ssrc = pl_rd32(p + 4);
        o->ntp = (uint64_t)pl_rd32(p + 8) << 32 | pl_rd32(p + 12);
        o->rtp_ts = pl_rd32(p + 16);
        o->packet_count = pl_rd32(p + 20);
        o->octet_count = pl_rd32(p + 24);
        return parse_reports(p, len, 28, o);
    case PL_RTCP_RR:
        if (len < 8)
            return PL_EPARSE;
        o->kind = PL_RTCPK_RR;
        o->sender_ssrc = pl_rd32(p + 4);
        return parse_reports(p, len, 8, o);
    case PL_RTCP_SDES:
    case PL_RTCP_BYE:
        o->kind = o->pt == PL_RTCP_SDES ? PL_RTCPK_SDES : PL_RTCPK_BYE;
        if (o->fmt > 0 && len >= 8)
            o->sender_ssrc = pl_rd32(p + 4);
        return 0;
    case PL_RTCP_RTPFB:
    case PL_RTCP_PSFB:
        if (len < 12)
            return PL_EPARSE;
        o->sender_ssrc = pl_rd32(p + 4);
        o->media_ssrc = pl_rd32(p + 8);
        return o->pt == PL_RTCP_RTPFB ? parse_rtpfb(p, len, o) : parse_psfb(p, len, o);
    default:
        o->kind = PL_RTCPK_OTHER;
        return 0;
    }
}

int pl_rtcp_next(pl_rtcp_iter_t *it, pl_rtcp_pkt_t *out)
{
    if (it->off >= it->len)
        return 0;
    const uint8_t *p = it->p + it->off;
    size_t avail = it->len - it->off;
    it->off = it->len;                          /* stop here unless all is well */
    if (avail < 4 || (p[0] >> 6) != 2)
        return PL_EPARSE;
    size_t plen = ((size_t)pl_rd16(p + 2) + 1) * 4;
    if (plen > avail)
        return PL_EPARSE;
    size_t body = plen;
    if (p[0] & 0x20) {                          /* padding, counted in the last byte */
        uint8_t pad = p[plen - 1];
        if (pad == 0 || pad > plen - 4)
            return PL_EPARSE;
        body = plen - pad;
    }
    memset(out, 0, offsetof(pl_rtcp_pkt_t, rb));
    out->n_fci = 0;
    out->fci = NULL;
    out->n_remb_ssrcs = 0;
    out->remb_bps = 0;
    out->pt = p[1];
    out->fmt = p[0] & 0x1f;
    out->data = p;
    out->len = plen;
    if (parse_one(p, body, out) < 0)
        return PL_EPARSE;
    it->off = (size_t)(p - it->p) + plen;
    return 1;
}

size_t pl_rtcp_nack_seqs(const pl_rtcp_pkt_t *p, uint16_t *out, size_t cap)
{
    size_t n = 0;
    if (p->kind != PL_RTCPK_NACK)
        return 0;
    for (size_t i = 0; i < p->n_fci; i++) {
        uint16_t pid = pl_rd16(p->fci + i * 4);
        uint16_t blp = pl_rd16(p->fci + i * 4 + 2);
        if (n < cap)
            out[n++] = pid;
        /* RFC 4585 §6.2.1: bit i of BLP reports PID + i + 1 lost too. */
        for (unsigned b = 0; b < 16; b++)
            if ((blp >> b) & 1 && n < cap)
                out[n++] = (uint16_t)(pid + b + 1);
    }
    return n;
}

void pl_rtcp_fir_entry(const pl_rtcp_pkt_t *p, size_t i, uint32_t *ssrc, uint8_t *seq)
{
    *ssrc = pl_rd32(p->fci + i * 8);
    *seq = p->fci[i * 8 + 4];
}

/* State of a transport-cc walk: chunks are read at chunk_off, receive deltas at
 * delta_off (they follow the whole chunk list). */
typedef struct twcc_walk {
    const uint8_t *p, *end;
    size_t chunk_off, delta_off;
    uint16_t seq, left;
    pl_twcc_status_cb fn;
    void *arg;
} twcc_walk_t;

static int twcc_symbol(twcc_walk_t *w, unsigned sym)
{
    int32_t delta = 0;
    if (sym == 1 || sym == 2) {
        size_t n = sym == 1 ? 1 : 2;
        if (w->delta_off + n > (size_t)(w->end - w->p))
            return PL_EPARSE;
        const uint8_t *d = w->p + w->delta_off;
        delta = sym == 1 ? d[0] : (int16_t)pl_rd16(d);
        w->delta_off += n;
    }
    if (w->fn)
        w->fn(w->arg, w->seq, sym == 1 || sym == 2, delta);
    w->seq++;
    w->left--;
    return 0;
}

/* Walks the chunks, reporting each status with its delta. */
static int twcc_chunks(twcc_walk_t *w)
{
    while (w->left > 0) {
        if (w->chunk_off + 2 > (size_t)(w->end - w->p))
            return PL_EPARSE;
        uint16_t c = pl_rd16(w->p + w->chunk_off);
        w->chunk_off += 2;
        if (!(c & 0x8000)) {                    /* run length chunk */
            unsigned sym = (c >> 13) & 0x03;
            unsigned run = c & 0x1FFF;
            for (unsigned i = 0; i < run && w->left > 0; i++)
                if (twcc_symbol(w, sym) < 0)
                    return PL_EPARSE;
        } else if (!(c & 0x4000)) {             /* 14 one-bit symbols */
            for (int i = 13; i >= 0 && w->left > 0; i--)
                if (twcc_symbol(w, (c >> i) & 1) < 0)
                    return PL_EPARSE;
        } else {                                /* 7 two-bit symbols */
            for (int i = 6; i >= 0 && w->left > 0; i--)
                if (twcc_symbol(w, (c >> (i * 2)) & 3) < 0)
                    return PL_EPARSE;
        }
    }
    return 0;
}

/* Where the receive deltas start: just past the chunk list that covers every status. */
static int twcc_deltas_off(const pl_rtcp_pkt_t *p, size_t *off_out)
{
    size_t off = 20;
    uint32_t left = p->twcc_count;
    while (left > 0) {
        if (off + 2 > p->len)
            return PL_EPARSE;
        uint16_t c = pl_rd16(p->data + off);
        off += 2;
        uint32_t n = !(c & 0x8000) ? (c & 0x1FFFu) : ((c & 0x4000) ? 7u : 14u);
        left = n >= left ? 0 : left - n;
    }
    *off_out = off;
    return 0;
}

int pl_rtcp_twcc_walk(const pl_rtcp_pkt_t *p, pl_twcc_status_cb fn, void *arg)
{
    size_t deltas;
    if (p->kind != PL_RTCPK_TWCC || twcc_deltas_off(p, &deltas) < 0)
        return PL_EPARSE;
    twcc_walk_t w = { .p = p->data, .end = p->data + p->len, .chunk_off = 20,
                      .delta_off = deltas, .seq = p->twcc_base_seq,
                      .left = p->twcc_count, .fn = fn, .arg = arg };
    if (twcc_chunks(&w) < 0)
        return PL_EPARSE;
    return p->twcc_count;
}

/* ---- builders ---------------------------------------------------------------------- */

static void write_header(uint8_t *out, uint8_t count, uint8_t pt, size_t len)
{
    out[0] = (uint8_t)(0x80 | (count & 0x1f));
    out[1] = pt;
    pl_wr16(out + 2, (uint16_t)(len / 4 - 1));
}

static void write_rb(uint8_t *p, const pl_rtcp_rb_t *rb)
{
    pl_wr32(p, rb->ssrc);
    p[4] = rb->fraction_lost;
    pl_wr24(p + 5, (uint32_t)rb->cumulative_lost & 0xFFFFFFu);
    pl_wr32(p + 8, rb->highest_seq);
    pl_wr32(p + 12, rb->jitter);
    pl_wr32(p + 16, rb->lsr);
    pl_wr32(p + 20, rb->dlsr);
}

int pl_rtcp_build_sr(uint8_t *out, size_t cap, const pl_rtcp_sr_info_t *sr,
                     const pl_rtcp_rb_t *rb, size_t n_rb)
{
    size_t len = 28 + n_rb * 24;
    if (n_rb > PL_RTCP_MAX_RB || len > cap)
        return PL_ELIMIT;
    write_header(out, (uint8_t)n_rb, PL_RTCP_SR, len);
    pl_wr32(out + 4, sr->ssrc);
    pl_wr32(out + 8, (uint32_t)(sr->ntp >> 32));
    pl_wr32(out + 12, (uint32_t)sr->ntp);
    pl_wr32(out + 16, sr->rtp_ts);
    pl_wr32(out + 20, sr->packet_count);
    pl_wr32(out + 24, sr->octet_count);
    for (size_t i = 0; i < n_rb; i++)
        write_rb(out + 28 + i * 24, &rb[i]);
    return (int)len;
}

int pl_rtcp_build_rr(uint8_t *out, size_t cap, uint32_t ssrc, const pl_rtcp_rb_t *rb,
                     size_t n_rb)
{
    size_t len = 8 + n_rb * 24;
    if (n_rb > PL_RTCP_MAX_RB || len > cap)
        return PL_ELIMIT;
    write_header(out, (uint8_t)n_rb, PL_RTCP_RR, len);
    pl_wr32(out + 4, ssrc);
    for (size_t i = 0; i < n_rb; i++)
        write_rb(out + 8 + i * 24, &rb[i]);
    return (int)len;
}

int pl_rtcp_build_sdes(uint8_t *out, size_t cap, uint32_t ssrc, const char *cname)
{
    size_t n = strlen(cname);
    /* chunk: SSRC, CNAME item (type 1, length, text), then at least one null octet,
     * padded to a 32-bit boundary (RFC 3550 §6.5). */
    size_t len = (4 + 4 + 2 + n + 1 + 3) / 4 * 4;
    if (n > 255 || len > cap)
        return PL_ELIMIT;
    memset(out, 0, len);
    write_header(out, 1, PL_RTCP_SDES, len);
    pl_wr32(out + 4, ssrc);
    out[8] = 1;
    out[9] = (uint8_t)n;
    memcpy(out + 10, cname, n);
    return (int)len;
}

static int build_fb(uint8_t *out, size_t cap, uint8_t fmt, uint8_t pt, size_t fci_len)
{
    size_t len = 12 + fci_len;
    if (len > cap)
        return PL_ELIMIT;
    write_header(out, fmt, pt, len);
    return (int)len;
}

int pl_rtcp_build_nack(uint8_t *out, size_t cap, uint32_t sender, uint32_t media,
                       const uint16_t *seqs, size_t n)
{
    bool used[PL_RTCP_MAX_NACK_SEQS] = { false };
    size_t n_fci = 0;
    if (n == 0 || n > PL_RTCP_MAX_NACK_SEQS)
        return PL_ELIMIT;
    /* Greedy packing: each unused seq opens a PID; later seqs within 16 after it join
     * its BLP (RFC 4585 §6.2.1). n is small (a few dozen), so O(n^2) is fine. */
    for (size_t i = 0; i < n; i++) {
        if (used[i])
            continue;
        uint16_t pid = seqs[i];
        uint16_t blp = 0;
        for (size_t j = i; j < n; j++) {
            uint16_t d = (uint16_t)(seqs[j] - pid);
            if (d <= 16 && !used[j]) {
                if (d)
                    blp |= (uint16_t)(1u << (d - 1));
                used[j] = true;
            }
        }
        if (12 + (n_fci + 1) * 4 > cap)
            return PL_ELIMIT;
        pl_wr16(out + 12 + n_fci * 4, pid);
        pl_wr16(out + 14 + n_fci * 4, blp);
        n_fci++;
    }
    int len = build_fb(out, cap, PL_RTCP_FMT_NACK, PL_RTCP_RTPFB, n_fci * 4);
    if (len < 0)
        return len;
    pl_wr32(out + 4, sender);
    pl_wr32(out + 8, media);
    return len;
}

int pl_rtcp_build_pli(uint8_t *out, size_t cap, uint32_t sender, uint32_t media)
{
    int len = build_fb(out, cap, PL_RTCP_FMT_PLI, PL_RTCP_PSFB, 0);
    if (len < 0)
        return len;
    pl_wr32(out + 4, sender);
    pl_wr32(out + 8, media);
    return len;
}

int pl_rtcp_build_fir(uint8_t *out, size_t cap, uint32_t sender, uint32_t media,
                      uint8_t seq_nr)
{
    int len = build_fb(out, cap, PL_RTCP_FMT_FIR, PL_RTCP_PSFB, 8);
    if (len < 0)
        return len;
    /* RFC 5104 §4.3.1.2: the media source field is 0; the target is in the FCI. */
    pl_wr32(out + 4, sender);
    pl_wr32(out + 8, 0);
    pl_wr32(out + 12, media);
    out[16] = seq_nr;
    out[17] = out[18] = out[19] = 0;
    return len;
}

int pl_rtcp_build_remb(uint8_t *out, size_t cap, uint32_t sender, uint64_t bps,
                       const uint32_t *ssrcs, size_t n)
{
    if (n > 255)
        return PL_ELIMIT;
    int len = build_fb(out, cap, PL_RTCP_FMT_AFB, PL_RTCP_PSFB, 8 + n * 4);
    if (len < 0)
        return len;
    unsigned exp = 0;
    while (exp < 63 && (bps >> exp) > 0x3FFFFu)
        exp++;
    uint32_t mantissa = (uint32_t)(bps >> exp);
    pl_wr32(out + 4, sender);
    pl_wr32(out + 8, 0);
    memcpy(out + 12, "REMB", 4);
    out[16] = (uint8_t)n;
    out[17] = (uint8_t)(exp << 2 | mantissa >> 16);
    pl_wr16(out + 18, (uint16_t)mantissa);
    for (size_t i = 0; i < n; i++)
        pl_wr32(out + 20 + i * 4, ssrcs[i]);
    return len;
}

int64_t pl_rtcp_rtt_us(uint64_t now_ntp, uint32_t lsr, uint32_t dlsr)
{
    if (lsr == 0)
        return -1;
    uint32_t now_mid = (uint32_t)(now_ntp >> 16);
    int64_t rtt = (int64_t)(int32_t)(now_mid - lsr - dlsr);
    if (rtt < 0)
        return -1;
    return rtt * 1000000 / 65536;
}
