/* sfu_fwd.c: the media path of a room. A publisher's packet is bound to its track and
 * simulcast layer (by SSRC, learned from the mid/rid header extensions, RFC 9143 and
 * RFC 8852), counted, cached for NACKs, gap-NACKed upstream, and copied to every
 * subscriber whose current layer it belongs to: payload type, SSRC, sequence number,
 * timestamp and header extensions rewritten per subscriber (pl_rtp_rewrite and the
 * munger), then SRTP-protected on the subscriber's transport. RTCP from subscribers
 * drives retransmissions (RTX when negotiated), keyframe requests upstream
 * (rate-limited PLI/FIR), loss/RTT metrics and the REMB bandwidth estimate; a periodic
 * tick sends receiver reports and REMB to publishers and sender reports to subscribers
 * and re-evaluates each subscriber's layer.
 *
 * What it does not: read or change payloads (end-to-end encrypted media forwards as
 * is), SDP, room membership. Layer switches happen only on a keyframe of the target
 * layer, so a subscriber never decodes across a switch without one.
 *
 * Threading: the room's media thread; pc callbacks arrive there. */
#include "relay/sfu/sfu_int.h"

#include <inttypes.h>
#include <string.h>

#define LAYER_IDLE_MS 1500          /* a layer without packets this long is inactive */
#define BWE_HOLD_MS 10000           /* how long a bandwidth cap holds before a retry */
#define MAX_GAP_NACK 32             /* gaps larger than this are left to the keyframe */

static pl_sfu_ids_t *ids(const sfu_part_t *p) { return &p->ml->sfu->ids; }

/* ---- packet cache ------------------------------------------------------------------- */

int sfu_cache_init(sfu_cache_t *c, unsigned n)
{
    memset(c, 0, sizeof(*c));
    if (n == 0)
        return 0;
    c->n = n;
    c->seq = pl_xcalloc(n, sizeof(*c->seq));
    c->len = pl_xcalloc(n, sizeof(*c->len));
    c->data = pl_xmalloc((size_t)n * PL_SFU_CACHE_SLOT);
    return 0;
}

void sfu_cache_free(sfu_cache_t *c)
{
    free(c->seq);
    free(c->len);
    free(c->data);
    memset(c, 0, sizeof(*c));
}

static void cache_put(sfu_cache_t *c, uint16_t seq, const uint8_t *pkt, size_t len)
{
    if (!c->n || len > PL_SFU_CACHE_SLOT)
        return;
    unsigned i = seq & (c->n - 1);
    c->seq[i] = seq;
    c->len[i] = (uint16_t)len;
    memcpy(c->data + (size_t)i * PL_SFU_CACHE_SLOT, pkt, len);
}

static const uint8_t *cache_get(const sfu_cache_t *c, uint16_t seq, size_t *len)
{
    if (!c->n)
        return NULL;
    unsigned i = seq & (c->n - 1);
    if (c->len[i] == 0 || c->seq[i] != seq)
        return NULL;
    *len = c->len[i];
    return c->data + (size_t)i * PL_SFU_CACHE_SLOT;
}

/* ---- sending to a subscriber -------------------------------------------------------- */

static void send_rtcp(sfu_part_t *p, uint8_t *buf, size_t len, size_t cap)
{
    if (p->pc && pl_pc_send_rtcp(p->pc, buf, len, cap) < 0)
        pl_metric_inc(p->ml->shard, ids(p)->drops[SFU_DROP_SEND]);
}

/* Builds the subscriber's extension list: its mid value, a fresh abs-send-time, and the
 * publisher's audio level / video orientation values when both sides negotiated them. */
static size_t build_exts(const sfu_down_t *d, const pl_rtp_hdr_t *h, const uint8_t *pkt,
                         uint64_t now_us, uint8_t ast[3], pl_rtp_ext_out_t *out)
{
    size_t n = 0, len;
    const sfu_track_t *t = d->track;
    if (d->ext_id[PL_EXT_MID])
        out[n++] = (pl_rtp_ext_out_t){ d->ext_id[PL_EXT_MID], (uint8_t)strlen(d->ml->mid),
                                       (const uint8_t *)d->ml->mid };
    if (d->ext_id[PL_EXT_ABS_SEND_TIME]) {
        uint32_t v = pl_rtp_abs_send_time(now_us);
        ast[0] = (uint8_t)(v >> 16);
        ast[1] = (uint8_t)(v >> 8);
        ast[2] = (uint8_t)v;
        out[n++] = (pl_rtp_ext_out_t){ d->ext_id[PL_EXT_ABS_SEND_TIME], 3, ast };
    }
    static const pl_rtp_ext_kind_t copied[] = { PL_EXT_AUDIO_LEVEL, PL_EXT_VIDEO_ORIENTATION };
    for (size_t i = 0; i < PL_ARRAY_LEN(copied); i++) {
        pl_rtp_ext_kind_t k = copied[i];
        const uint8_t *v = d->ext_id[k] ? pl_rtp_ext_get(h, pkt, t->ext_id[k], &len) : NULL;
        if (v)
            out[n++] = (pl_rtp_ext_out_t){ d->ext_id[k], (uint8_t)len, v };
    }
    return n;
}

/* Sends `pkt` (parsed as h) to d as out_seq/out_ts. rtx: as an RTX packet (RFC 4588
 * §4: own SSRC and sequence, the original sequence number first in the payload). */
static int send_to(sfu_down_t *d, const pl_rtp_hdr_t *h, const uint8_t *pkt, uint16_t out_seq,
                   uint32_t out_ts, bool rtx, uint64_t now_us)
{
    sfu_part_t *s = d->sub;
    uint8_t *out = s->ml->out;
    uint8_t ast[3];
    pl_rtp_ext_out_t ext[4];
    pl_rtp_rewrite_t rw = { .pt = rtx ? d->rtx_pt : d->pt, .marker = h->marker,
                            .seq = rtx ? d->rtx_seq++ : out_seq, .ts = out_ts,
                            .ssrc = rtx ? d->rtx_ssrc : d->ssrc, .ext = ext };
    rw.n_ext = build_exts(d, h, pkt, now_us, ast, ext);
    size_t cap = PL_PC_BUF - PL_PC_SRTP_OVERHEAD - 2;
    int n = pl_rtp_rewrite(pkt, h, &rw, out, cap);
    if (n < 0)
        return n;
    if (rtx) {
        size_t poff = (size_t)n - h->payload_len - h->pad_len;
        memmove(out + poff + 2, out + poff, (size_t)n - poff);
        out[poff] = (uint8_t)(out_seq >> 8);
        out[poff + 1] = (uint8_t)out_seq;
        n += 2;
    }
    int rc = pl_pc_send_rtp(s->pc, out, (size_t)n, PL_PC_BUF);
    if (rc < 0) {
        pl_metric_inc(s->ml->shard, ids(s)->drops[SFU_DROP_SEND]);
        return rc;
    }
    int k = d->track->kind == PL_MEDIA_AUDIO ? 0 : 1;
    pl_metric_inc(s->ml->shard, ids(s)->fwd_packets[k]);
    pl_metric_add(s->ml->shard, ids(s)->fwd_bytes[k], (uint64_t)n);
    d->packets++;
    d->bytes += (uint64_t)n;
    return 0;
}

static void forward(sfu_down_t *d, int layer, const pl_rtp_hdr_t *h, const uint8_t *pkt,
                    const pl_frame_info_t *fi, uint64_t now_us)
{
    sfu_track_t *t = d->track;
    if (!d->active || d->sub->pc_state != PL_PC_CONNECTED)
        return;
    if (layer != d->cur_layer) {
        if (layer != d->target_layer)
            return;
        if (t->kind == PL_MEDIA_VIDEO && !fi->keyframe) {
            /* Waiting to start or switch: ask for the key frame (rate-limited). */
            sfu_request_keyframe(t, layer, now_us / 1000, false);
            return;
        }
        if (d->cur_layer >= 0)
            pl_metric_inc(d->sub->ml->shard, ids(d->sub)->layer_switches);
        d->cur_layer = layer;
    }
    uint16_t os;
    uint32_t ot;
    if (pl_rtp_munger_map(&d->mung, h->ssrc, h->seq, h->ts, now_us, t->codec.clock, &os, &ot) < 0)
        return;
    if (send_to(d, h, pkt, os, ot, false, now_us) == 0) {
        sfu_sent_t *e = &d->sent[os % PL_SFU_SENT_MAP];
        e->out_seq = os;
        e->in_seq = h->seq;
        e->out_ts = ot;
        e->layer = (uint8_t)layer;
        e->valid = true;
    }
}

static void retransmit(sfu_down_t *d, uint16_t out_seq, uint64_t now_us)
{
    const sfu_sent_t *e = &d->sent[out_seq % PL_SFU_SENT_MAP];
    size_t len = 0;
    const uint8_t *pkt = NULL;
    pl_rtp_hdr_t h;
    if (d->track && e->valid && e->out_seq == out_seq && e->layer < d->track->n_layers)
        pkt = cache_get(&d->track->layers[e->layer].cache, e->in_seq, &len);
    if (!pkt || pl_rtp_parse(pkt, len, &h) < 0) {
        pl_metric_inc(d->sub->ml->shard, ids(d->sub)->nack_misses);
        return;
    }
    bool rtx = d->rtx_pt && d->rtx_ssrc;
    if (send_to(d, &h, pkt, out_seq, e->out_ts, rtx, now_us) == 0)
        pl_metric_inc(d->sub->ml->shard, ids(d->sub)->retransmits);
}

/* ---- keyframes and layer choice ----------------------------------------------------- */

void sfu_request_keyframe(sfu_track_t *t, int layer, uint64_t now_ms, bool force)
{
    if (!t || t->kind != PL_MEDIA_VIDEO || layer < 0 || (size_t)layer >= t->n_layers)
        return;
    sfu_layer_t *L = &t->layers[layer];
    sfu_part_t *pub = t->pub;
    if (!L->bound || !pub->pc || (!force && now_ms - L->last_pli_ms < pub->ml->sfu->set.pli_interval_ms))
        return;
    L->last_pli_ms = now_ms;
    uint8_t buf[64 + PL_PC_SRTP_OVERHEAD];
    int n;
    if (!(t->codec.fb & PL_FB_PLI) && (t->codec.fb & PL_FB_FIR))
        n = pl_rtcp_build_fir(buf, 64, pub->rtcp_ssrc, L->ssrc, (uint8_t)(now_ms / 100));
    else
        n = pl_rtcp_build_pli(buf, 64, pub->rtcp_ssrc, L->ssrc);
    pl_metric_inc(pub->ml->shard, ids(pub)->plis_tx);
    send_rtcp(pub, buf, (size_t)n, sizeof(buf));
}

static bool layer_active(const sfu_layer_t *L, uint64_t now_ms)
{
    return L->bound && now_ms - L->last_pkt_ms < LAYER_IDLE_MS;
}

void sfu_down_select(sfu_down_t *d, uint64_t now_ms)
{
    sfu_track_t *t = d->track;
    if (!t)
        return;
    if (t->kind == PL_MEDIA_AUDIO) {
        d->target_layer = 0;
        return;
    }
    int top = (int)t->n_layers - 1;
    int target = PL_MIN((int)d->want, top);
    if (d->bwe_cap >= 0 && now_ms < d->bwe_cap_until_ms)
        target = PL_MIN(target, d->bwe_cap);
    int chosen = -1;
    for (int l = target; l >= 0 && chosen < 0; l--)
        if (layer_active(&t->layers[l], now_ms))
            chosen = l;
    for (int l = target + 1; l <= top && chosen < 0; l++)
        if (layer_active(&t->layers[l], now_ms))
            chosen = l;
    d->target_layer = chosen >= 0 ? chosen : target;
    if (d->active && d->cur_layer != d->target_layer)
        sfu_request_keyframe(t, d->target_layer, now_ms, false);
}

/* REMB from a subscriber is its whole downlink: each video downtrack gets a share. When
 * a share is clearly below what its current layer needs, cap the layer for a while. */
static void apply_remb(sfu_part_t *p, uint64_t now_ms)
{
    unsigned n_video = 0;
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        n_video += m->role == ML_SUBSCRIBE && m->down && m->down->active &&
                   m->kind == PL_MEDIA_VIDEO;
    }
    if (!n_video || !p->ml->sfu->set.bwe)
        return;
    uint64_t share = p->remb_bps / n_video;
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        sfu_down_t *d = m->role == ML_SUBSCRIBE ? m->down : NULL;
        if (!d || !d->active || m->kind != PL_MEDIA_VIDEO || d->cur_layer <= 0)
            continue;
        uint64_t need = d->track->layers[d->cur_layer].bitrate_bps;
        if (share * 10 < need * 8) {
            d->bwe_cap = d->cur_layer - 1;
            d->bwe_cap_until_ms = now_ms + BWE_HOLD_MS;
            sfu_down_select(d, now_ms);
        }
    }
}

/* ---- receiving from a publisher ----------------------------------------------------- */

static sfu_track_t *find_layer(sfu_part_t *p, uint32_t ssrc, int *layer)
{
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        if (m->role != ML_PUBLISH || !m->track)
            continue;
        for (size_t l = 0; l < m->track->n_layers; l++)
            if (m->track->layers[l].bound && m->track->layers[l].ssrc == ssrc) {
                *layer = (int)l;
                return m->track;
            }
    }
    return NULL;
}

/* First packet of an SSRC: the mid (and rid) extension say which m-line (and layer) it
 * belongs to (RFC 8843 §9.2 demultiplexing). Chromium stops sending them once the SSRC
 * is acknowledged by RTCP, so the binding is remembered. */
static sfu_track_t *bind_ssrc(sfu_part_t *p, const pl_rtp_hdr_t *h, const uint8_t *pkt,
                              int *layer)
{
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        sfu_track_t *t = m->role == ML_PUBLISH ? m->track : NULL;
        size_t len;
        const uint8_t *v = t ? pl_rtp_ext_get(h, pkt, t->ext_id[PL_EXT_MID], &len) : NULL;
        if (!v || len != strlen(t->mid) || memcmp(v, t->mid, len) != 0 || h->pt != t->codec.pt)
            continue;
        const uint8_t *rid = pl_rtp_ext_get(h, pkt, t->ext_id[PL_EXT_RID], &len);
        for (size_t l = 0; l < t->n_layers; l++) {
            sfu_layer_t *L = &t->layers[l];
            bool match = t->n_layers == 1 ||
                         (rid && len == strlen(L->rid) && memcmp(rid, L->rid, len) == 0);
            if (match && !L->bound) {
                L->ssrc = h->ssrc;
                L->bound = true;
                *layer = (int)l;
                pl_log_debug("sfu.ssrc.bound", "participant=%" PRIu64 " track=%u layer=%zu ssrc=%u",
                             p->id, t->id, l, h->ssrc);
                return t;
            }
        }
    }
    return NULL;
}

static void nack_gap(sfu_part_t *p, sfu_track_t *t, sfu_layer_t *L, uint16_t seq)
{
    uint16_t gap = (uint16_t)(seq - L->highest_seq - 1);
    if (!(t->codec.fb & PL_FB_NACK) || gap == 0 || gap > MAX_GAP_NACK)
        return;
    uint16_t seqs[MAX_GAP_NACK];
    for (uint16_t i = 0; i < gap; i++)
        seqs[i] = (uint16_t)(L->highest_seq + 1 + i);
    uint8_t buf[256];
    int n = pl_rtcp_build_nack(buf, 256 - PL_PC_SRTP_OVERHEAD, p->rtcp_ssrc, L->ssrc, seqs, gap);
    if (n > 0) {
        pl_metric_add(p->ml->shard, ids(p)->nacks_tx, gap);
        send_rtcp(p, buf, (size_t)n, sizeof(buf));
    }
}

static void account(sfu_part_t *p, sfu_track_t *t, sfu_layer_t *L, const pl_rtp_hdr_t *h,
                    size_t len, uint64_t now_us)
{
    int k = t->kind == PL_MEDIA_AUDIO ? 0 : 1;
    pl_metric_inc(p->ml->shard, ids(p)->rx_packets[k]);
    pl_metric_add(p->ml->shard, ids(p)->rx_bytes[k], len);
    uint32_t ticks = (uint32_t)(now_us * t->codec.clock / 1000000u);
    pl_rtp_rx_update(&L->rx, h->seq, h->ts, ticks);
    L->window_bytes += len;
    L->last_pkt_ms = now_us / 1000;
    if (L->have_seq && pl_seq_newer(h->seq, L->highest_seq)) {
        nack_gap(p, t, L, h->seq);
        L->highest_seq = h->seq;
    } else if (!L->have_seq) {
        L->highest_seq = h->seq;
        L->have_seq = true;
    }
}

void sfu_on_rtp(void *arg, uint8_t *pkt, size_t len, size_t cap)
{
    PL_UNUSED(cap);
    sfu_part_t *p = arg;
    pl_rtp_hdr_t h;
    int layer = 0;
    if (pl_rtp_parse(pkt, len, &h) < 0) {
        pl_metric_inc(p->ml->shard, ids(p)->drops[SFU_DROP_PARSE]);
        return;
    }
    sfu_track_t *t = find_layer(p, h.ssrc, &layer);
    if (!t)
        t = bind_ssrc(p, &h, pkt, &layer);
    if (!t || h.pt != t->codec.pt) {
        pl_metric_inc(p->ml->shard, ids(p)->drops[SFU_DROP_UNKNOWN]);
        return;
    }
    uint64_t now_us = (uint64_t)g_get_monotonic_time();
    sfu_layer_t *L = &t->layers[layer];
    account(p, t, L, &h, len, now_us);
    cache_put(&L->cache, h.seq, pkt, len);
    size_t vlen;
    const uint8_t *lv = pl_rtp_ext_get(&h, pkt, t->ext_id[PL_EXT_AUDIO_LEVEL], &vlen);
    uint8_t level;
    bool voice;
    if (lv && pl_rtp_audio_level(lv, vlen, &level, &voice) == 0) {
        t->loud_sum += 127u - level;
        t->loud_n++;
    }
    if (t->muted)
        return;
    pl_frame_info_t fi = { .frame_start = true };
    if (t->kind == PL_MEDIA_VIDEO)
        (void)pl_rtp_frame_info(t->codec.codec, pkt + h.payload_off, h.payload_len, &fi);
    for (guint i = 0; i < t->downs->len; i++)
        forward(g_ptr_array_index(t->downs, i), layer, &h, pkt, &fi, now_us);
}

/* ---- RTCP from a participant -------------------------------------------------------- */

static sfu_down_t *down_by_ssrc(sfu_part_t *p, uint32_t ssrc)
{
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        if (m->role == ML_SUBSCRIBE && m->down &&
            (m->down->ssrc == ssrc || (m->down->rtx_ssrc == ssrc && ssrc)))
            return m->down;
    }
    return NULL;
}

static void on_report_block(sfu_part_t *p, const pl_rtcp_rb_t *rb, uint64_t now_us)
{
    sfu_down_t *d = down_by_ssrc(p, rb->ssrc);
    if (!d)
        return;
    d->fraction_lost = rb->fraction_lost;
    d->jitter = rb->jitter;
    pl_metric_observe(p->ml->shard, ids(p)->loss_hist, rb->fraction_lost / 256.0);
    /* RFC 3550 §6.4.1 RTT, measured on our own clock against the SR we last sent. */
    if (rb->lsr && rb->lsr == d->sr_mid) {
        int64_t rtt = (int64_t)(now_us - d->sr_sent_us) - (int64_t)rb->dlsr * 1000000 / 65536;
        if (rtt >= 0) {
            d->rtt_us = rtt;
            pl_metric_observe(p->ml->shard, ids(p)->rtt_hist, rtt / 1e6);
        }
    }
}

static void on_publisher_sr(sfu_part_t *p, const pl_rtcp_pkt_t *pk, uint64_t now_us)
{
    int layer;
    sfu_track_t *t = find_layer(p, pk->sender_ssrc, &layer);
    if (!t)
        return;
    sfu_layer_t *L = &t->layers[layer];
    pl_rtp_rx_on_sr(&L->rx, pk->ntp, now_us);
    L->sr_ntp = pk->ntp;
    L->sr_rtp = pk->rtp_ts;
    L->sr_arrival_us = now_us;
}

static void on_feedback(sfu_part_t *p, const pl_rtcp_pkt_t *pk, uint64_t now_us)
{
    uint64_t now_ms = now_us / 1000;
    if (pk->kind == PL_RTCPK_NACK) {
        sfu_down_t *d = down_by_ssrc(p, pk->media_ssrc);
        uint16_t seqs[128];
        size_t n = d ? pl_rtcp_nack_seqs(pk, seqs, PL_ARRAY_LEN(seqs)) : 0;
        pl_metric_add(p->ml->shard, ids(p)->nacks_rx, n);
        for (size_t i = 0; i < n; i++)
            retransmit(d, seqs[i], now_us);
    } else if (pk->kind == PL_RTCPK_PLI || pk->kind == PL_RTCPK_FIR) {
        uint32_t ssrc = pk->media_ssrc;
        uint8_t fseq;
        if (pk->kind == PL_RTCPK_FIR)
            pl_rtcp_fir_entry(pk, 0, &ssrc, &fseq);
        sfu_down_t *d = down_by_ssrc(p, ssrc);
        pl_metric_inc(p->ml->shard, ids(p)->plis_rx);
        if (d && d->track)
            sfu_request_keyframe(d->track, d->cur_layer >= 0 ? d->cur_layer : d->target_layer,
                                 now_ms, false);
    } else if (pk->kind == PL_RTCPK_REMB) {
        p->remb_bps = pk->remb_bps;
        p->remb_ms = now_ms;
        apply_remb(p, now_ms);
    }
}

void sfu_on_rtcp(void *arg, uint8_t *pkt, size_t len, size_t cap)
{
    PL_UNUSED(cap);
    sfu_part_t *p = arg;
    uint64_t now_us = (uint64_t)g_get_monotonic_time();
    pl_rtcp_iter_t it;
    pl_rtcp_pkt_t pk;
    pl_rtcp_iter_init(&it, pkt, len);
    int rc;
    while ((rc = pl_rtcp_next(&it, &pk)) == 1) {
        if (pk.kind == PL_RTCPK_SR)
            on_publisher_sr(p, &pk, now_us);
        for (size_t i = 0; i < pk.n_rb; i++)
            on_report_block(p, &pk.rb[i], now_us);
        on_feedback(p, &pk, now_us);
    }
    if (rc < 0)
        pl_metric_inc(p->ml->shard, ids(p)->drops[SFU_DROP_PARSE]);
}

void sfu_on_pc_state(void *arg, pl_pc_state_t st, const char *reason)
{
    sfu_part_t *p = arg;
    sfu_part_pc_state(p, st);
    pl_log_info("sfu.pc.state", "participant=%" PRIu64 " state=%s reason=%s srtp=%s", p->id,
                pl_pc_state_name(st), reason ? reason : "-", pl_pc_srtp_profile(p->pc));
    sfu_emit_state(p, st, reason);
    if (st == PL_PC_FAILED)
        sfu_emit_error(p->ml, p->id, g_str_has_prefix(reason ? reason : "", "ice") ? "ice_failed"
                       : "dtls_failed", reason ? reason : "transport failed");
    if (st != PL_PC_CONNECTED)
        return;
    uint64_t now = sfu_now_ms();
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        if (m->role == ML_SUBSCRIBE && m->down && m->down->active) {
            m->down->cur_layer = -1;
            sfu_down_select(m->down, now);
        }
    }
}

/* ---- periodic RTCP ------------------------------------------------------------------ */

static void publisher_reports(sfu_part_t *p, uint64_t interval_ms, uint64_t now_us)
{
    pl_rtcp_rb_t rb[PL_RTCP_MAX_RB];
    uint32_t video[PL_RTCP_MAX_REMB_SSRCS];
    size_t n = 0, nv = 0;
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        sfu_track_t *t = m->role == ML_PUBLISH ? m->track : NULL;
        for (size_t l = 0; t && l < t->n_layers; l++) {
            sfu_layer_t *L = &t->layers[l];
            L->bitrate_bps = L->window_bytes * 8 * 1000 / (interval_ms ? interval_ms : 1);
            L->window_bytes = 0;
            pl_log_debug("sfu.layer.rate", "participant=%" PRIu64 " track=%u layer=%zu rid=%s "
                          "bound=%d bps=%" PRIu64, p->id, t->id, l, L->rid, L->bound,
                          L->bitrate_bps);
            if (!L->bound || n >= PL_RTCP_MAX_RB)
                continue;
            pl_rtp_rx_report(&L->rx, L->ssrc, now_us, &rb[n++]);
            if (t->kind == PL_MEDIA_VIDEO && nv < PL_ARRAY_LEN(video))
                video[nv++] = L->ssrc;
        }
    }
    if (n == 0)
        return;
    uint8_t buf[1024 + PL_PC_SRTP_OVERHEAD];
    int len = pl_rtcp_build_rr(buf, 1024, p->rtcp_ssrc, rb, n);
    if (len > 0 && nv) {
        int r = pl_rtcp_build_remb(buf + len, 1024 - (size_t)len, p->rtcp_ssrc,
                                   p->ml->sfu->set.publisher_max_bps, video, nv);
        len += r > 0 ? r : 0;
    }
    if (len > 0)
        send_rtcp(p, buf, (size_t)len, sizeof(buf));
}

/* SR for one downtrack: the publisher's NTP/RTP pair carried over (so audio and video of
 * one publisher stay in sync at the subscriber), else our clock. */
static int down_sr(sfu_down_t *d, uint64_t now_us, uint8_t *out, size_t cap)
{
    sfu_track_t *t = d->track;
    if (!d->active || !d->mung.started || !t)
        return 0;
    uint32_t clock = t->codec.clock;
    pl_rtcp_sr_info_t sr = { .ssrc = d->ssrc, .packet_count = (uint32_t)d->packets,
                             .octet_count = (uint32_t)d->bytes };
    const sfu_layer_t *L = d->cur_layer >= 0 ? &t->layers[d->cur_layer] : NULL;
    if (L && L->sr_arrival_us && L->ssrc == d->mung.src_ssrc) {
        uint64_t el = now_us - L->sr_arrival_us;
        sr.ntp = L->sr_ntp + (el << 32) / 1000000u;
        sr.rtp_ts = L->sr_rtp + d->mung.ts_offset + (uint32_t)(el * clock / 1000000u);
    } else {
        sr.ntp = pl_ntp_from_unix_us((uint64_t)g_get_real_time());
        uint64_t el = now_us > d->mung.last_out_us ? now_us - d->mung.last_out_us : 0;
        sr.rtp_ts = d->mung.last_out_ts + (uint32_t)(el * clock / 1000000u);
    }
    d->sr_mid = (uint32_t)(sr.ntp >> 16);
    d->sr_sent_us = now_us;
    return pl_rtcp_build_sr(out, cap, &sr, NULL, 0);
}

static void subscriber_reports(sfu_part_t *p, uint64_t now_us)
{
    uint8_t buf[1200 + PL_PC_SRTP_OVERHEAD];
    size_t len = 0;
    uint64_t now_ms = now_us / 1000;
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        if (m->role != ML_SUBSCRIBE || !m->down)
            continue;
        sfu_down_select(m->down, now_ms);
        if (len + 28 > 1200) {
            send_rtcp(p, buf, len, sizeof(buf));
            len = 0;
        }
        int n = down_sr(m->down, now_us, buf + len, 1200 - len);
        len += n > 0 ? (size_t)n : 0;
    }
    if (len)
        send_rtcp(p, buf, len, sizeof(buf));
}

void sfu_part_rtcp_tick(sfu_part_t *p, uint64_t now_ms)
{
    unsigned interval = p->ml->sfu->set.rtcp_interval_ms;
    if (now_ms < p->next_rtcp_ms)
        return;
    p->next_rtcp_ms = now_ms + interval;
    if (p->pc) {
        pl_metric_add(p->ml->shard, ids(p)->drops[SFU_DROP_SRTP], pl_pc_take_srtp_errors(p->pc));
        pl_metric_add(p->ml->shard, ids(p)->drops[SFU_DROP_SEND], pl_pc_take_send_drops(p->pc));
    }
    if (p->pc_state != PL_PC_CONNECTED)
        return;
    uint64_t now_us = (uint64_t)g_get_monotonic_time();
    publisher_reports(p, interval, now_us);
    subscriber_reports(p, now_us);
}
