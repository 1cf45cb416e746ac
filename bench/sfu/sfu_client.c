/* sfu_client.c: the SFU test/load client (see sfu_client.h).
 *
 * Payload marks (what lets a receiver check the SFU forwarded the right thing):
 *   audio:  A5 | layer | publisher id (8, big endian) | sequence (2) | filler
 *   video:  VP8 descriptor (S bit on a frame's first packet) | VP8 header byte (P = 0
 *           on key frames) | 5A | layer | publisher id (8) | frame number (4) | filler
 *
 * Threading: the client's GMainContext thread. */
#include "bench/sfu/sfu_client.h"
#include "relay/sfu/pl_rtp.h"
#include "relay/sfu/sfu_pc.h"
#include "relay/sfu/sfu_sdp.h"

#include <jansson.h>
#include <string.h>

enum { EXT_LEVEL = 1, EXT_AST = 2, EXT_MID = 4, EXT_RID = 10 };
enum { PT_OPUS = 111, PT_VP8 = 96, PT_RTX = 97 };
#define MAX_MISSING 64
#define PKT_MAX 1100

typedef struct sfc_layer {
    const char *rid;
    uint32_t ssrc;
    uint16_t seq;
    bool want_key;
    unsigned pkts, size;
} sfc_layer_t;

typedef struct sfc_rstream {
    uint32_t ssrc, rtx_ssrc;
    uint8_t rtx_pt;
    bool started;
    uint16_t expected;
    uint16_t missing[MAX_MISSING];
    unsigned n_missing;
    pl_rtp_rx_stats_t rx;
} sfc_rstream_t;

struct pl_sfc {
    pl_sfc_opts_t o;
    pl_pc_t *pc;
    bool connected, failed;
    uint32_t audio_ssrc, rtcp_ssrc;
    uint16_t audio_seq;
    uint32_t audio_ts, video_ts, frame_no;
    sfc_layer_t layers[3];
    int64_t next_audio_us, next_video_us, next_rtcp_us, next_key_us;
    GArray *streams;            /* sfc_rstream_t */
    GArray *srcs;               /* pl_sfc_src_stats_t */
    pl_sfc_totals_t tot;
    uint64_t rx_count;
    uint8_t buf[PL_PC_BUF];
};

static const pl_sdp_codec_t opus_codec = { .pt = PT_OPUS, .codec = PL_CODEC_OPUS, .name = "opus",
                                           .clock = 48000, .channels = 2,
                                           .fmtp = "minptime=10;useinbandfec=1" };
static const pl_sdp_codec_t vp8_codec = { .pt = PT_VP8, .codec = PL_CODEC_VP8, .name = "VP8",
                                          .clock = 90000, .rtx_pt = PT_RTX,
                                          .fb = PL_FB_NACK | PL_FB_PLI | PL_FB_FIR | PL_FB_REMB };
static const pl_sdp_ext_t audio_exts[] = { { EXT_LEVEL, PL_EXT_AUDIO_LEVEL },
                                           { EXT_AST, PL_EXT_ABS_SEND_TIME },
                                           { EXT_MID, PL_EXT_MID } };
static const pl_sdp_ext_t video_exts[] = { { EXT_AST, PL_EXT_ABS_SEND_TIME },
                                           { EXT_MID, PL_EXT_MID }, { EXT_RID, PL_EXT_RID } };
static const char *const rid_names[3] = { "q", "h", "f" };

static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)(v >> 16)); wr16(p + 2, (uint16_t)v); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)(v >> 32)); wr32(p + 4, (uint32_t)v); }
static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* ---- callbacks from the transport --------------------------------------------------- */

static void on_state(void *arg, pl_pc_state_t st, const char *reason)
{
    pl_sfc_t *c = arg;
    PL_UNUSED(reason);
    c->connected = st == PL_PC_CONNECTED;
    c->failed |= st == PL_PC_FAILED;
}

static sfc_rstream_t *stream_for(pl_sfc_t *c, uint32_t ssrc, bool *rtx)
{
    for (guint i = 0; i < c->streams->len; i++) {
        sfc_rstream_t *s = &g_array_index(c->streams, sfc_rstream_t, i);
        if (s->ssrc == ssrc || (s->rtx_ssrc && s->rtx_ssrc == ssrc)) {
            *rtx = s->rtx_ssrc == ssrc;
            return s;
        }
    }
    return NULL;
}

static pl_sfc_src_stats_t *src_for(pl_sfc_t *c, uint64_t pub)
{
    for (guint i = 0; i < c->srcs->len; i++)
        if (g_array_index(c->srcs, pl_sfc_src_stats_t, i).publisher == pub)
            return &g_array_index(c->srcs, pl_sfc_src_stats_t, i);
    pl_sfc_src_stats_t s = { .publisher = pub, .last_layer = -1 };
    g_array_append_val(c->srcs, s);
    return &g_array_index(c->srcs, pl_sfc_src_stats_t, c->srcs->len - 1);
}

static void send_rtcp(pl_sfc_t *c, uint8_t *buf, size_t len, size_t cap)
{
    if (c->pc)
        (void)pl_pc_send_rtcp(c->pc, buf, len, cap);
}

/* Sequence bookkeeping: gaps are NACKed at once; a late or resent packet filling one
 * counts as recovered. */
static void track_seq(pl_sfc_t *c, sfc_rstream_t *s, uint16_t seq, pl_sfc_src_stats_t *src)
{
    if (!s->started) {
        s->started = true;
        s->expected = (uint16_t)(seq + 1);
        return;
    }
    if (seq == s->expected) {
        s->expected++;
        return;
    }
    if (pl_seq_newer(seq, s->expected)) {
        uint16_t gap = (uint16_t)(seq - s->expected);
        uint16_t nack[MAX_MISSING];
        unsigned n = 0;
        src->seq_gaps += gap;
        c->tot.rx_gaps += gap;
        for (uint16_t i = 0; i < gap && s->n_missing < MAX_MISSING; i++) {
            s->missing[s->n_missing++] = (uint16_t)(s->expected + i);
            nack[n++] = (uint16_t)(s->expected + i);
        }
        s->expected = (uint16_t)(seq + 1);
        uint8_t buf[512];
        int len = n ? pl_rtcp_build_nack(buf, 300, c->rtcp_ssrc, s->ssrc, nack, n) : 0;
        if (len > 0) {
            c->tot.nacks_sent += n;
            send_rtcp(c, buf, (size_t)len, sizeof(buf));
        }
        return;
    }
    for (unsigned i = 0; i < s->n_missing; i++)
        if (s->missing[i] == seq) {
            s->missing[i] = s->missing[--s->n_missing];
            src->recovered++;
            return;
        }
}

static void check_marks(pl_sfc_t *c, const uint8_t *pl, size_t n, bool video, sfc_rstream_t *s,
                        uint16_t seq)
{
    size_t off = video ? 2 : 0;
    uint8_t magic = video ? 0x5A : 0xA5;
    if (n < off + 14 || pl[off] != magic) {
        src_for(c, 0)->bad_marks++;
        return;
    }
    pl_sfc_src_stats_t *src = src_for(c, rd64(pl + off + 2));
    int layer = pl[off + 1];
    src->bytes += n;
    if (video) {
        src->video_packets++;
        if (layer < 3)
            src->layer_packets[layer]++;
        src->last_layer = layer;
        if ((pl[0] & 0x10) && !(pl[1] & 0x01))
            src->keyframes++;
    } else {
        src->audio_packets++;
    }
    track_seq(c, s, seq, src);
}

static void on_srtp_raw(void *arg, const uint8_t *pkt, size_t len)
{
    pl_sfc_t *c = arg;
    pl_rtp_hdr_t h;
    bool rtx;
    if (pl_rtp_parse(pkt, len, &h) < 0)
        return;
    sfc_rstream_t *s = stream_for(c, h.ssrc, &rtx);
    if (!s || rtx)
        return;
    c->tot.rx_packets++;
    c->tot.rx_bytes += len;
    if (s->started && pl_seq_newer(h.seq, s->expected))
        c->tot.rx_gaps += (uint16_t)(h.seq - s->expected);
    if (!s->started || pl_seq_newer(h.seq, s->expected) || h.seq == s->expected)
        s->expected = (uint16_t)(h.seq + 1);
    s->started = true;
}

static void on_rtp(void *arg, uint8_t *pkt, size_t len, size_t cap)
{
    PL_UNUSED(cap);
    pl_sfc_t *c = arg;
    pl_rtp_hdr_t h;
    bool rtx = false;
    if (pl_rtp_parse(pkt, len, &h) < 0)
        return;
    sfc_rstream_t *s = stream_for(c, h.ssrc, &rtx);
    if (!s)
        return;
    c->tot.rx_packets++;
    c->tot.rx_bytes += len;
    if (!rtx && h.pt != PT_OPUS && c->o.drop_every && ++c->rx_count % c->o.drop_every == 0)
        return;         /* simulated loss, repaired by NACK */
    const uint8_t *pl = pkt + h.payload_off;
    size_t n = h.payload_len;
    uint16_t seq = h.seq;
    if (rtx) {          /* RFC 4588 §4: original sequence number first */
        if (n < 2)
            return;
        seq = (uint16_t)(pl[0] << 8 | pl[1]);
        pl += 2;
        n -= 2;
    } else {
        pl_rtp_rx_update(&s->rx, h.seq, h.ts, (uint32_t)(g_get_monotonic_time() / 11));
    }
    check_marks(c, pl, n, h.pt != PT_OPUS, s, seq);
}

static void on_rtcp(void *arg, uint8_t *pkt, size_t len, size_t cap)
{
    PL_UNUSED(cap);
    pl_sfc_t *c = arg;
    pl_rtcp_iter_t it;
    pl_rtcp_pkt_t p;
    pl_rtcp_iter_init(&it, pkt, len);
    while (pl_rtcp_next(&it, &p) == 1) {
        uint32_t target = p.media_ssrc;
        uint8_t fseq;
        if (p.kind == PL_RTCPK_FIR)
            pl_rtcp_fir_entry(&p, 0, &target, &fseq);
        if (p.kind == PL_RTCPK_PLI || p.kind == PL_RTCPK_FIR) {
            c->tot.plis_received++;
            for (int l = 0; l < 3; l++)
                if (c->layers[l].ssrc == target)
                    c->layers[l].want_key = true;
        } else if (p.kind == PL_RTCPK_REMB) {
            c->tot.remb_bps = p.remb_bps;
        }
    }
}

/* ---- negotiation -------------------------------------------------------------------- */

typedef struct cand_list {
    const char *items[16];
    char store[16][256];
    size_t n;
} cand_list_t;

static void add_cand(void *arg, const char *cand)
{
    cand_list_t *l = arg;
    if (l->n < 16) {
        g_strlcpy(l->store[l->n], cand, sizeof(l->store[0]));
        l->items[l->n] = l->store[l->n];
        l->n++;
    }
}

static void publish_lines(pl_sfc_t *c, pl_sdp_out_media_t *m, size_t *n, char msid[2][32])
{
    unsigned layers = c->o.layers == 3 ? 3 : 1;
    g_snprintf(msid[0], 32, "c%" G_GUINT64_FORMAT, c->o.id);
    g_snprintf(msid[1], 32, "v%" G_GUINT64_FORMAT, c->o.id);
    if (!c->o.audio && !c->o.video) {     /* a pure subscriber tells what it decodes */
        m[(*n)++] = (pl_sdp_out_media_t){ .kind = PL_MEDIA_AUDIO, .mid = "0",
            .dir = PL_DIR_RECVONLY, .codec = &opus_codec, .exts = audio_exts, .n_exts = 3 };
        m[(*n)++] = (pl_sdp_out_media_t){ .kind = PL_MEDIA_VIDEO, .mid = "1",
            .dir = PL_DIR_RECVONLY, .codec = &vp8_codec, .exts = video_exts, .n_exts = 2 };
        return;
    }
    if (c->o.audio)
        m[(*n)++] = (pl_sdp_out_media_t){ .kind = PL_MEDIA_AUDIO, .mid = "0",
            .dir = PL_DIR_SENDONLY, .codec = &opus_codec, .exts = audio_exts, .n_exts = 3,
            .ssrc = c->audio_ssrc, .cname = msid[0], .msid_stream = msid[0],
            .msid_track = "a" };
    if (c->o.video)
        m[(*n)++] = (pl_sdp_out_media_t){ .kind = PL_MEDIA_VIDEO, .mid = "1",
            .dir = PL_DIR_SENDONLY, .codec = &vp8_codec, .exts = video_exts,
            .n_exts = layers == 3 ? 3 : 2, .rids = layers == 3 ? rid_names : NULL,
            .n_rids = layers == 3 ? 3 : 0, .rids_send = true,
            .ssrc = layers == 3 ? 0 : c->layers[0].ssrc, .cname = msid[0],
            .msid_stream = msid[0], .msid_track = msid[1] };
}

static void signal_sdp(pl_sfc_t *c, const char *type, pl_sdp_out_media_t *m, size_t n,
                       const char *setup)
{
    cand_list_t cl = { .n = 0 };
    pl_pc_foreach_candidate(c->pc, add_cand, &cl);
    pl_sdp_out_t o = { .sess_id = c->o.id, .sess_version = c->tot.offers + c->tot.answers + 1,
                       .ufrag = pl_pc_ufrag(c->pc), .pwd = pl_pc_pwd(c->pc),
                       .fingerprint = c->o.fingerprint, .setup = setup, .cands = cl.items,
                       .n_cands = cl.n, .media = m, .n_media = n };
    char *sdp = pl_sdp_build(&o);
    c->o.signal(c->o.arg, c, type, sdp);
    g_free(sdp);
}

int pl_sfc_start(pl_sfc_t *c)
{
    const char *addrs[] = { "127.0.0.1" };
    pl_pc_opts_t po = { .ctx = c->o.ctx, .ssl_ctx = c->o.ssl_ctx, .controlling = true,
                        .addrs = addrs, .n_addrs = 1,
                        .cbs = { .on_state = on_state, .on_rtp = on_rtp, .on_rtcp = on_rtcp,
                                 .on_srtp_raw = c->o.count_only ? on_srtp_raw : NULL,
                                 .arg = c } };
    int rc = pl_pc_create(&po, &c->pc);
    if (rc < 0)
        return rc;
    pl_sdp_out_media_t m[2];
    char msid[2][32];
    size_t n = 0;
    publish_lines(c, m, &n, msid);
    signal_sdp(c, "offer", m, n, "actpass");
    return 0;
}

static int apply_transport(pl_sfc_t *c, const pl_sdp_desc_t *d)
{
    for (size_t i = 0; i < d->n_media; i++) {
        const pl_sdp_media_t *m = &d->media[i];
        if (m->port == 0)
            continue;
        int rc = pl_pc_set_remote(c->pc, m->ice_ufrag, m->ice_pwd, m->fp_alg, m->fp,
                                  strcmp(m->setup, "passive") == 0 ||
                                  strcmp(m->setup, "actpass") == 0);
        for (size_t k = 0; rc == 0 && k < d->n_cands; k++)
            (void)pl_pc_add_remote_candidate(c->pc, d->cands[k]);
        return rc;
    }
    return 0;
}

static void learn_stream(pl_sfc_t *c, const pl_sdp_media_t *m)
{
    bool rtx;
    if (!m->ssrc || stream_for(c, m->ssrc, &rtx))
        return;
    sfc_rstream_t s = { .ssrc = m->ssrc, .rtx_ssrc = m->rtx_ssrc };
    g_array_append_val(c->streams, s);
}

static void answer_offer(pl_sfc_t *c, const pl_sdp_desc_t *d)
{
    pl_sdp_out_media_t *m = g_new0(pl_sdp_out_media_t, d->n_media);
    pl_sdp_out_media_t mine[2];
    char msid[2][32];
    size_t n_mine = 0;
    publish_lines(c, mine, &n_mine, msid);
    for (size_t i = 0; i < d->n_media; i++) {
        const pl_sdp_media_t *om = &d->media[i];
        const pl_sdp_codec_t *codec = NULL;
        for (size_t k = 0; k < om->n_codecs && !codec; k++)
            if (om->codecs[k].codec != PL_CODEC_NONE)
                codec = &om->codecs[k];
        m[i] = (pl_sdp_out_media_t){ .kind = om->kind, .media = om->media, .proto = om->proto,
                                     .fmt0 = om->fmt0, .mid = om->mid, .codec = codec,
                                     .exts = om->exts, .n_exts = om->n_exts,
                                     .rejected = om->port == 0 || !codec };
        for (size_t k = 0; k < n_mine; k++)
            if (strcmp(mine[k].mid, om->mid) == 0) {
                m[i] = mine[k];
                if (m[i].dir == PL_DIR_RECVONLY)
                    m[i].dir = PL_DIR_INACTIVE;     /* the SFU left it idle */
                m[i].n_exts = m[i].dir == PL_DIR_INACTIVE ? 0 : m[i].n_exts;
            }
        if (m[i].dir == PL_DIR_INACTIVE && (om->dir & PL_DIR_SENDONLY)) {
            m[i].dir = PL_DIR_RECVONLY;
            learn_stream(c, om);
        }
    }
    signal_sdp(c, "answer", m, d->n_media, "active");
    c->tot.answers++;
    g_free(m);
}

int pl_sfc_on_event(pl_sfc_t *c, const char *json)
{
    json_error_t jerr;
    json_t *ev = json_loads(json, 0, &jerr);
    const char *type = ev ? json_string_value(json_object_get(ev, "type")) : NULL;
    const char *sdp = ev ? json_string_value(json_object_get(ev, "sdp")) : NULL;
    int rc = type ? 0 : PL_EPARSE;
    if (type && strcmp(type, "sfu.error") == 0)
        c->tot.errors++;
    if (type && sdp && (strcmp(type, "sfu.answer") == 0 || strcmp(type, "sfu.offer") == 0)) {
        pl_sdp_desc_t *d = pl_sdp_desc_new();
        char why[128];
        rc = pl_sdp_parse(sdp, d, why, sizeof(why));
        if (rc == 0)
            rc = apply_transport(c, d);
        if (rc == 0 && type[4] == 'o') {
            c->tot.offers++;
            answer_offer(c, d);
        }
        free(d);
    }
    json_decref(ev);
    return rc;
}

/* ---- sending ------------------------------------------------------------------------ */

static void send_rtp(pl_sfc_t *c, uint32_t ssrc, uint16_t seq, uint32_t ts, uint8_t pt,
                     bool marker, const pl_rtp_ext_out_t *ext, size_t n_ext,
                     const uint8_t *payload, size_t plen)
{
    uint8_t *b = c->buf;
    b[0] = 0x80;
    b[1] = (uint8_t)(pt | (marker ? 0x80 : 0));
    wr16(b + 2, seq);
    wr32(b + 4, ts);
    wr32(b + 8, ssrc);
    int e = pl_rtp_ext_write(b + 12, 256, ext, n_ext);
    if (e < 0)
        return;
    if (e > 0)
        b[0] |= 0x10;
    memcpy(b + 12 + e, payload, plen);
    size_t len = 12 + (size_t)e + plen;
    if (pl_pc_send_rtp(c->pc, b, len, sizeof(c->buf)) == 0) {
        c->tot.sent_packets++;
        c->tot.sent_bytes += len;
    }
}

static void send_audio(pl_sfc_t *c, uint8_t ast[3])
{
    uint8_t pl[80];
    memset(pl, 0x33, sizeof(pl));
    pl[0] = 0xA5;
    pl[1] = 0;
    wr64(pl + 2, c->o.id);
    wr16(pl + 10, c->audio_seq);
    uint8_t level = (uint8_t)(0x80 | (20 + c->o.id % 40));  /* voiced, -20..-59 dBov */
    pl_rtp_ext_out_t ext[] = { { EXT_LEVEL, 1, &level }, { EXT_AST, 3, ast },
                               { EXT_MID, 1, (const uint8_t *)"0" } };
    send_rtp(c, c->audio_ssrc, c->audio_seq++, c->audio_ts, PT_OPUS, false, ext, 3, pl,
             sizeof(pl));
    c->audio_ts += 960;
}

static void send_frame(pl_sfc_t *c, sfc_layer_t *L, int layer, uint8_t ast[3], bool key)
{
    uint8_t pl[PKT_MAX];
    /* libwebrtc splits a frame "about equally" (rtp_format.cc SplitAboutEqually): sizes
     * differ by one byte, the larger packets last. Frame sizes vary, so model that unless
     * asked for equal packets (the load tool's original, kinder shape for UDP GSO). */
    unsigned smaller = c->o.equal_sizes ? 0 : c->frame_no % L->pkts;
    for (unsigned k = 0; k < L->pkts; k++) {
        size_t size = k < smaller ? L->size - 1 : L->size;
        memset(pl, 0x44, size);
        pl[0] = k == 0 ? 0x10 : 0x00;               /* VP8 descriptor: S on the first */
        pl[1] = k == 0 && key ? 0x00 : 0x01;        /* VP8 header: P = 0 on a key frame */
        pl[2] = 0x5A;
        pl[3] = (uint8_t)layer;
        wr64(pl + 4, c->o.id);
        wr32(pl + 12, c->frame_no);
        pl_rtp_ext_out_t ext[] = { { EXT_AST, 3, ast }, { EXT_MID, 1, (const uint8_t *)"1" },
                                   { EXT_RID, (uint8_t)strlen(L->rid), (const uint8_t *)L->rid } };
        send_rtp(c, L->ssrc, L->seq++, c->video_ts, PT_VP8, k + 1 == L->pkts, ext,
                 c->o.layers == 3 ? 3 : 2, pl, size);
    }
}

static void send_reports(pl_sfc_t *c)
{
    pl_rtcp_rb_t rb[PL_RTCP_MAX_RB];
    size_t n = 0;
    for (guint i = 0; i < c->streams->len && n < PL_RTCP_MAX_RB; i++) {
        sfc_rstream_t *s = &g_array_index(c->streams, sfc_rstream_t, i);
        if (s->rx.started)
            pl_rtp_rx_report(&s->rx, s->ssrc, (uint64_t)g_get_monotonic_time(), &rb[n++]);
    }
    uint8_t buf[1024 + PL_PC_SRTP_OVERHEAD];
    int len = pl_rtcp_build_rr(buf, 1024, c->rtcp_ssrc, rb, n);
    if (len > 0)
        send_rtcp(c, buf, (size_t)len, sizeof(buf));
}

void pl_sfc_send_remb(pl_sfc_t *c, uint64_t bps)
{
    uint32_t ssrcs[PL_RTCP_MAX_REMB_SSRCS];
    size_t n = 0;
    for (guint i = 0; i < c->streams->len && n < PL_RTCP_MAX_REMB_SSRCS; i++) {
        sfc_rstream_t *s = &g_array_index(c->streams, sfc_rstream_t, i);
        if (s->rx.started)
            ssrcs[n++] = s->ssrc;
    }
    uint8_t buf[256 + PL_PC_SRTP_OVERHEAD];
    int len = n ? pl_rtcp_build_remb(buf, 256, c->rtcp_ssrc, bps, ssrcs, n) : 0;
    if (len > 0)
        send_rtcp(c, buf, (size_t)len, sizeof(buf));
}

void pl_sfc_pump(pl_sfc_t *c)
{
    if (!c->connected)
        return;
    int64_t now = g_get_monotonic_time();
    uint32_t v = pl_rtp_abs_send_time((uint64_t)now);
    uint8_t ast[3] = { (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    if (!c->next_audio_us)
        c->next_audio_us = c->next_video_us = c->next_rtcp_us = c->next_key_us = now;
    for (; c->o.audio && now >= c->next_audio_us; c->next_audio_us += 20000)
        send_audio(c, ast);
    bool periodic = now >= c->next_key_us;
    if (periodic)
        c->next_key_us = now + 3 * G_TIME_SPAN_SECOND;
    for (; c->o.video && now >= c->next_video_us; c->next_video_us += 33333) {
        unsigned n = c->o.layers == 3 ? 3 : 1;
        for (unsigned l = 0; l < n; l++) {
            sfc_layer_t *L = &c->layers[l];
            bool key = L->want_key || periodic;
            L->want_key = false;
            send_frame(c, L, (int)l, ast, key);
        }
        periodic = false;
        c->video_ts += 3000;
        c->frame_no++;
    }
    if (now >= c->next_rtcp_us) {
        c->next_rtcp_us = now + G_TIME_SPAN_SECOND;
        send_reports(c);
    }
}

/* ---- life cycle and accessors ------------------------------------------------------- */

pl_sfc_t *pl_sfc_create(const pl_sfc_opts_t *o)
{
    pl_sfc_t *c = pl_xcalloc(1, sizeof(*c));
    c->o = *o;
    if (!c->o.video_kbps)
        c->o.video_kbps = 1500;
    c->audio_ssrc = g_random_int() | 1;
    c->rtcp_ssrc = g_random_int() | 1;
    unsigned n = o->layers == 3 ? 3 : 1;
    for (unsigned l = 0; l < n; l++) {
        sfc_layer_t *L = &c->layers[l];
        unsigned kbps = c->o.video_kbps >> (2 * (n - 1 - l));
        unsigned bytes = PL_MAX(200u, kbps * 1000 / 8 / 30);
        L->rid = rid_names[n == 3 ? l : 2];
        L->ssrc = g_random_int() | 1;
        L->pkts = (bytes + PKT_MAX - 1) / PKT_MAX;
        L->size = bytes / L->pkts;
        L->want_key = true;
    }
    c->streams = g_array_new(FALSE, TRUE, sizeof(sfc_rstream_t));
    c->srcs = g_array_new(FALSE, TRUE, sizeof(pl_sfc_src_stats_t));
    return c;
}

void pl_sfc_destroy(pl_sfc_t *c)
{
    if (!c)
        return;
    pl_pc_destroy(c->pc);
    g_array_free(c->streams, TRUE);
    g_array_free(c->srcs, TRUE);
    free(c);
}

bool pl_sfc_connected(const pl_sfc_t *c) { return c->connected; }
bool pl_sfc_failed(const pl_sfc_t *c) { return c->failed; }

const pl_sfc_src_stats_t *pl_sfc_source(const pl_sfc_t *c, uint64_t publisher)
{
    for (guint i = 0; i < c->srcs->len; i++)
        if (g_array_index(c->srcs, pl_sfc_src_stats_t, i).publisher == publisher)
            return &g_array_index(c->srcs, pl_sfc_src_stats_t, i);
    return NULL;
}

void pl_sfc_totals(const pl_sfc_t *c, pl_sfc_totals_t *out)
{
    *out = c->tot;
}
