/* sfu_nego.c: offer/answer for one participant (JSEP, RFC 8829) on the SFU's side.
 *
 * The pattern (pl_sfu.h, docs/SFU.md): the client offers first with what it publishes
 * and the SFU answers (publish m-lines recvonly, with a=simulcast:recv for rid layers);
 * afterwards the SFU offers whenever the set of remote tracks changes, with one
 * sendonly m-line per remote track (reusing inactive m-lines of the same kind), and the
 * client answers. At most one SFU offer is outstanding; a client offer meanwhile is
 * glare and refused (the SFU is the impolite peer). Codec payload types and extension
 * ids on SFU-made m-lines are the ones the client itself used in its offer, so one
 * BUNDLE transport never maps a number to two formats (RFC 8843 §9.1).
 *
 * What it does not: forward packets (sfu_fwd.c) or manage room membership
 * (sfu_room.c). Errors go to this participant only, as "sfu.error" events.
 *
 * Threading: the participant's media thread. */
#include "relay/sfu/sfu_int.h"

#include <inttypes.h>
#include <string.h>

#define FB_MASK (PL_FB_NACK | PL_FB_PLI | PL_FB_FIR | PL_FB_REMB)

static void error(sfu_part_t *p, const char *code, const char *msg)
{
    sfu_emit_error(p->ml, p->id, code, msg);
}

/* ---- codec and extension choice ----------------------------------------------------- */

static bool h264_ok(const pl_sdp_codec_t *c, bool want_baseline)
{
    char v[16];
    if (!pl_sdp_fmtp_get(c->fmtp, "packetization-mode", v, sizeof(v)) || strcmp(v, "1") != 0)
        return false;
    if (!want_baseline)
        return true;
    return pl_sdp_fmtp_get(c->fmtp, "profile-level-id", v, sizeof(v)) &&
           (g_ascii_strncasecmp(v, "42e0", 4) == 0 || g_ascii_strncasecmp(v, "4200", 4) == 0);
}

static const pl_sdp_codec_t *pick_codec(const pl_sfu_settings_t *s, const pl_sdp_media_t *m)
{
    if (m->kind == PL_MEDIA_AUDIO) {
        for (size_t i = 0; i < m->n_codecs; i++)
            if (m->codecs[i].codec == PL_CODEC_OPUS && m->codecs[i].clock == 48000)
                return &m->codecs[i];
        return NULL;
    }
    for (size_t k = 0; k < s->n_video_codecs; k++) {
        /* H.264: packetization-mode 1, constrained baseline first (every browser). */
        for (int pass = 0; pass < (s->video_codecs[k] == PL_CODEC_H264 ? 2 : 1); pass++)
            for (size_t i = 0; i < m->n_codecs; i++) {
                const pl_sdp_codec_t *c = &m->codecs[i];
                if (c->codec != s->video_codecs[k] || c->clock != 90000)
                    continue;
                if (c->codec != PL_CODEC_H264 || h264_ok(c, pass == 0))
                    return c;
            }
    }
    return NULL;
}

static bool ext_wanted(pl_rtp_ext_kind_t k, pl_media_kind_t kind, bool publish)
{
    switch (k) {
    case PL_EXT_MID:
    case PL_EXT_ABS_SEND_TIME:
        return true;
    case PL_EXT_RID:
        return publish;
    case PL_EXT_AUDIO_LEVEL:
        return kind == PL_MEDIA_AUDIO;
    case PL_EXT_VIDEO_ORIENTATION:
        return kind == PL_MEDIA_VIDEO;
    default:
        return false;       /* transport-cc: the SFU uses REMB; RRID: no RTX upstream */
    }
}

static void take_exts(sfu_mline_t *ml, const pl_sdp_ext_t *exts, size_t n, bool publish)
{
    ml->n_exts = 0;
    for (size_t i = 0; i < n && ml->n_exts < PL_ARRAY_LEN(ml->exts); i++)
        if (ext_wanted(exts[i].kind, ml->kind, publish))
            ml->exts[ml->n_exts++] = exts[i];
}

/* Remembers the client's payload types and extension ids per kind (its numbering). */
static void learn_client(sfu_part_t *p, const pl_sdp_media_t *m)
{
    if (m->kind == PL_MEDIA_OTHER)
        return;
    int k = m->kind;
    for (size_t i = 0; i < m->n_codecs; i++) {
        bool known = false;
        for (size_t j = 0; j < p->n_client_codecs[k]; j++)
            known |= p->client_codecs[k][j].pt == m->codecs[i].pt;
        if (!known && p->n_client_codecs[k] < PL_SDP_MAX_CODECS)
            p->client_codecs[k][p->n_client_codecs[k]++] = m->codecs[i];
    }
    for (size_t i = 0; i < m->n_exts; i++) {
        bool known = false;
        for (size_t j = 0; j < p->n_client_exts[k]; j++)
            known |= p->client_exts[k][j].kind == m->exts[i].kind;
        if (!known && p->n_client_exts[k] < PL_SDP_MAX_EXTS)
            p->client_exts[k][p->n_client_exts[k]++] = m->exts[i];
    }
}

/* ---- the m-line model --------------------------------------------------------------- */

static sfu_mline_t *mline_from_offer(sfu_part_t *p, const pl_sdp_media_t *m, bool *new_track)
{
    const pl_sfu_settings_t *s = &p->ml->sfu->set;
    sfu_mline_t *ml = pl_xcalloc(1, sizeof(*ml));
    ml->kind = m->kind;
    g_strlcpy(ml->media, m->media, sizeof(ml->media));
    g_strlcpy(ml->proto, m->proto, sizeof(ml->proto));
    g_strlcpy(ml->fmt0, m->fmt0, sizeof(ml->fmt0));
    g_strlcpy(ml->mid, m->mid, sizeof(ml->mid));
    const pl_sdp_codec_t *c = m->kind != PL_MEDIA_OTHER && m->port ? pick_codec(s, m) : NULL;
    if (!c || !strstr(m->proto, "SAVPF")) {
        ml->role = ML_REJECTED;     /* data channels, unsupported codecs, plain RTP */
        return ml;
    }
    ml->has_codec = true;
    ml->codec = *c;
    ml->codec.rtx_pt = 0;           /* no RTX from publishers: they resend on the SSRC */
    ml->codec.fb &= FB_MASK;
    if (!(m->dir & PL_DIR_SENDONLY)) {
        ml->role = ML_UNUSED;       /* a receive-only line the client made: left idle */
        return ml;
    }
    ml->role = ML_PUBLISH;
    take_exts(ml, m->exts, m->n_exts, true);
    if (s->simulcast && m->kind == PL_MEDIA_VIDEO && m->n_rids > 1) {
        ml->n_rids = PL_MIN(m->n_rids, (size_t)PL_SFU_MAX_LAYERS);
        for (size_t i = 0; i < ml->n_rids; i++)
            g_strlcpy(ml->rids[i], m->rids[i], sizeof(ml->rids[i]));
    }
    sfu_track_create(p, ml);
    *new_track = true;
    return ml;
}

static bool mid_taken(const sfu_part_t *p, const char *mid)
{
    for (guint i = 0; i < p->mlines->len; i++)
        if (strcmp(((sfu_mline_t *)g_ptr_array_index(p->mlines, i))->mid, mid) == 0)
            return true;
    return false;
}

static bool pt_used(const sfu_part_t *p, int pt)
{
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < p->n_client_codecs[k]; i++)
            if (p->client_codecs[k][i].pt == pt || p->client_codecs[k][i].rtx_pt == pt)
                return true;
    return false;
}

static uint8_t free_pt(const sfu_part_t *p, int want, int also_taken)
{
    if (want >= 96 && want <= 127 && !pt_used(p, want) && want != also_taken)
        return (uint8_t)want;
    for (int pt = 96; pt <= 127; pt++)
        if (!pt_used(p, pt) && pt != also_taken)
            return (uint8_t)pt;
    for (int pt = 35; pt <= 63; pt++)
        if (!pt_used(p, pt) && pt != also_taken)
            return (uint8_t)pt;
    return 0;
}

/* The client never said what it receives of this kind (it publishes none and offered
 * no receive-only line): offer the publisher's format under payload types free in the
 * client's numbering, and the mid/abs-send-time ids it used for the other kind. The
 * client's answer accepts or rejects it. */
static const pl_sdp_codec_t *synth_codec(sfu_part_t *p, const sfu_track_t *t)
{
    int k = t->kind;
    if (p->n_client_codecs[k] >= PL_SDP_MAX_CODECS)
        return NULL;
    pl_sdp_codec_t c = t->codec;
    c.fb = k == PL_MEDIA_VIDEO ? FB_MASK : 0;
    c.pt = free_pt(p, t->codec.pt, -1);
    c.rtx_pt = k == PL_MEDIA_VIDEO ? free_pt(p, t->codec.pt + 1, c.pt) : 0;
    if (!c.pt)
        return NULL;
    if (p->n_client_exts[k] == 0)
        for (size_t i = 0; i < p->n_client_exts[1 - k]; i++) {
            pl_rtp_ext_kind_t e = p->client_exts[1 - k][i].kind;
            if (e == PL_EXT_MID || e == PL_EXT_ABS_SEND_TIME)
                p->client_exts[k][p->n_client_exts[k]++] = p->client_exts[1 - k][i];
        }
    p->client_codecs[k][p->n_client_codecs[k]] = c;
    return &p->client_codecs[k][p->n_client_codecs[k]++];
}

static const pl_sdp_codec_t *client_codec(sfu_part_t *p, const sfu_track_t *t)
{
    for (size_t i = 0; i < p->n_client_codecs[t->kind]; i++)
        if (pl_sdp_codec_same(&p->client_codecs[t->kind][i], &t->codec))
            return &p->client_codecs[t->kind][i];
    return p->n_client_codecs[t->kind] == 0 ? synth_codec(p, t) : NULL;
}

static sfu_mline_t *free_sub_line(sfu_part_t *p, pl_media_kind_t kind)
{
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        if (m->role == ML_SUBSCRIBE && !m->down && m->kind == kind)
            return m;
    }
    if (p->mlines->len >= PL_SFU_MAX_MLINES)
        return NULL;
    sfu_mline_t *m = pl_xcalloc(1, sizeof(*m));
    m->role = ML_SUBSCRIBE;
    m->kind = kind;
    do
        g_snprintf(m->mid, sizeof(m->mid), "s%u", ++p->next_mid);
    while (mid_taken(p, m->mid));
    g_ptr_array_add(p->mlines, m);
    return m;
}

static void subscribe(sfu_part_t *p, sfu_track_t *t, const pl_sdp_codec_t *cc)
{
    sfu_mline_t *m = free_sub_line(p, t->kind);
    if (!m)
        return;
    m->has_codec = true;
    m->codec = *cc;
    m->codec.fb &= FB_MASK;
    take_exts(m, p->client_exts[t->kind], p->n_client_exts[t->kind], false);
    sfu_down_t *d = pl_xcalloc(1, sizeof(*d));
    d->sub = p;
    d->track = t;
    d->ml = m;
    d->ssrc = g_random_int() | 1u;
    d->rtx_ssrc = cc->rtx_pt ? (g_random_int() | 1u) : 0;
    d->pt = cc->pt;
    d->rtx_pt = cc->rtx_pt;
    for (size_t i = 0; i < m->n_exts; i++)
        d->ext_id[m->exts[i].kind] = m->exts[i].id;
    d->cur_layer = d->target_layer = d->bwe_cap = -1;
    d->want = sfu_part_quality_for(p, t->pub->id);
    d->rtt_us = -1;
    g_ptr_array_add(t->downs, d);
    m->down = d;
}

/* Gives the participant a subscribe m-line for every remote track it lacks. */
static void sync_subscriptions(sfu_part_t *p)
{
    GPtrArray *tracks = p->room->tracks;
    for (guint i = 0; i < tracks->len; i++) {
        sfu_track_t *t = g_ptr_array_index(tracks, i);
        bool have = t->pub == p;
        for (guint j = 0; j < t->downs->len && !have; j++)
            have = ((sfu_down_t *)g_ptr_array_index(t->downs, j))->sub == p;
        if (have)
            continue;
        const pl_sdp_codec_t *cc = client_codec(p, t);
        if (!cc) {
            pl_log_warn("sfu.subscribe.no_codec", "participant=%" PRIu64 " track=%u codec=%s",
                        p->id, t->id, t->codec.name);
            continue;
        }
        subscribe(p, t, cc);
    }
}

/* ---- rendering ---------------------------------------------------------------------- */

typedef struct render_buf {
    pl_sdp_out_media_t media[PL_SFU_MAX_MLINES];
    char stream[PL_SFU_MAX_MLINES][24], track[PL_SFU_MAX_MLINES][24];
    const char *rids[PL_SFU_MAX_MLINES][PL_SFU_MAX_LAYERS];
    GPtrArray *cands;
} render_buf_t;

static void add_cand(void *arg, const char *cand)
{
    g_ptr_array_add(arg, g_strdup(cand));
}

static void render_line(render_buf_t *rb, size_t i, const sfu_mline_t *m)
{
    pl_sdp_out_media_t *om = &rb->media[i];
    memset(om, 0, sizeof(*om));
    om->kind = m->kind;
    om->mid = m->mid;
    om->media = m->media[0] ? m->media : NULL;
    om->proto = m->proto[0] ? m->proto : NULL;
    om->fmt0 = m->fmt0;
    om->rejected = m->role == ML_REJECTED;
    om->codec = m->has_codec ? &m->codec : NULL;
    om->exts = m->exts;
    om->n_exts = m->n_exts;
    om->dir = PL_DIR_INACTIVE;
    if (m->role == ML_PUBLISH) {
        om->dir = PL_DIR_RECVONLY;
        for (size_t r = 0; r < m->n_rids; r++)
            rb->rids[i][r] = m->rids[r];
        om->rids = rb->rids[i];
        om->n_rids = m->n_rids;
    } else if (m->role == ML_SUBSCRIBE && m->down) {
        const sfu_down_t *d = m->down;
        om->dir = PL_DIR_SENDONLY;
        om->ssrc = d->ssrc;
        om->rtx_ssrc = d->rtx_pt ? d->rtx_ssrc : 0;
        g_snprintf(rb->stream[i], sizeof(rb->stream[i]), "p%" PRIu64, d->track->pub->id);
        g_snprintf(rb->track[i], sizeof(rb->track[i]), "t%u", d->track->id);
        om->msid_stream = om->cname = rb->stream[i];
        om->msid_track = rb->track[i];
    }
}

static char *render(sfu_part_t *p, bool offer)
{
    render_buf_t *rb = pl_xcalloc(1, sizeof(*rb));
    rb->cands = g_ptr_array_new_with_free_func(g_free);
    pl_pc_foreach_candidate(p->pc, add_cand, rb->cands);
    for (guint i = 0; i < p->mlines->len; i++)
        render_line(rb, i, g_ptr_array_index(p->mlines, i));
    pl_sdp_out_t o = {
        .sess_id = p->sess_id, .sess_version = ++p->sess_version,
        .ufrag = pl_pc_ufrag(p->pc), .pwd = pl_pc_pwd(p->pc),
        .fingerprint = p->ml->sfu->fingerprint,
        .setup = offer ? "actpass" : (p->pc_dtls_client ? "active" : "passive"),
        .cands = (const char *const *)rb->cands->pdata, .n_cands = rb->cands->len,
        .media = rb->media, .n_media = p->mlines->len,
    };
    char *text = pl_sdp_build(&o);
    g_ptr_array_free(rb->cands, TRUE);
    free(rb);
    return text;
}

/* ---- offers and answers ------------------------------------------------------------- */

static int ensure_pc(sfu_part_t *p)
{
    if (p->pc)
        return 0;
    pl_sfu_t *sfu = p->ml->sfu;
    const char *addrs[PL_SFU_MAX_ADDRS];
    for (size_t i = 0; i < sfu->set.n_addrs; i++)
        addrs[i] = sfu->set.addrs[i];
    pl_pc_opts_t o = { .ctx = p->ml->ctx, .ssl_ctx = sfu->ssl_ctx, .controlling = false,
                       .addrs = addrs, .n_addrs = sfu->set.n_addrs,
                       .port_min = sfu->set.port_min, .port_max = sfu->set.port_max,
                       .cbs = { .on_state = sfu_on_pc_state, .on_rtp = sfu_on_rtp,
                                .on_rtcp = sfu_on_rtcp, .arg = p } };
    int rc = pl_pc_create(&o, &p->pc);
    if (rc < 0)
        return rc;
    p->pc_state = PL_PC_NEW;
    pl_metric_gauge_add(p->ml->shard, sfu->ids.pcs[PL_PC_NEW], 1);
    return 0;
}

void sfu_ice_restarted(sfu_part_t *p)
{
    pl_metric_inc(p->ml->shard, p->ml->sfu->ids.ice_restarts);
    pl_log_info("sfu.ice.restart", "participant=%" PRIu64 " restarts=%u", p->id,
                pl_pc_restarts(p->pc));
}

/* Applies the transport of the first active m-line (the BUNDLE tag in practice). */
static int apply_transport(sfu_part_t *p, const pl_sdp_desc_t *d)
{
    for (size_t i = 0; i < d->n_media; i++) {
        const pl_sdp_media_t *m = &d->media[i];
        if (m->port == 0)
            continue;
        /* RFC 8842 §5.2: answering actpass (or active) the SFU is passive, the DTLS
         * server; only a client that insists on passive makes it the DTLS client. The
         * same holds when the client answers an SFU offer (actpass). */
        bool client = strcmp(m->setup, "passive") == 0;
        int rc = ensure_pc(p);
        if (rc == 0)
            rc = pl_pc_set_remote(p->pc, m->ice_ufrag, m->ice_pwd, m->fp_alg, m->fp, client);
        if (rc == 1)
            sfu_ice_restarted(p);       /* the answer carries our new credentials */
        /* The DTLS role is fixed by the first negotiation: a later offer (a restart,
         * new tracks) says actpass again, the session keeps its roles. */
        if (rc >= 0 && !p->pc_role_fixed) {
            p->pc_dtls_client = client;
            p->pc_role_fixed = true;
        }
        return rc < 0 ? rc : 0;
    }
    return 0;
}

static void add_candidates(sfu_part_t *p, const pl_sdp_desc_t *d)
{
    for (size_t i = 0; i < d->n_cands && p->pc; i++)
        (void)pl_pc_add_remote_candidate(p->pc, d->cands[i]);
}

static int check_same_lines(const sfu_part_t *p, const pl_sdp_desc_t *d, bool exact)
{
    if (d->n_media < p->mlines->len || (exact && d->n_media != p->mlines->len) ||
        d->n_media > PL_SFU_MAX_MLINES)
        return -1;
    for (guint i = 0; i < p->mlines->len; i++) {
        const sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        if (m->role != ML_REJECTED && strcmp(m->mid, d->media[i].mid) != 0)
            return -1;
    }
    return 0;
}

void sfu_nego_offer(sfu_part_t *p, const char *sdp)
{
    char why[128];
    if (p->offer_pending) {
        error(p, "glare", "an SFU offer is pending: roll back and answer it first");
        return;
    }
    pl_sdp_desc_t *d = pl_sdp_desc_new();
    if (pl_sdp_parse(sdp, d, why, sizeof(why)) < 0) {
        error(p, "bad_sdp", why);
        goto out;
    }
    if (check_same_lines(p, d, false) < 0) {
        error(p, "bad_sdp", "m-lines were removed, reordered or too many");
        goto out;
    }
    int rc = apply_transport(p, d);
    if (rc < 0) {
        error(p, rc == PL_ESTATE ? "dtls_restart_unsupported" : "bad_sdp",
              rc == PL_ESTATE ? "the DTLS fingerprint changed (a new DTLS session): leave and "
                                "join again (an ICE restart keeps the fingerprint)"
                              : "missing or bad ICE credentials / sha-256 fingerprint");
        goto out;
    }
    bool new_track = false;
    for (size_t i = 0; i < d->n_media; i++) {
        learn_client(p, &d->media[i]);
        if (i >= p->mlines->len)
            g_ptr_array_add(p->mlines, mline_from_offer(p, &d->media[i], &new_track));
    }
    if (!p->pc) {
        error(p, "bad_sdp", "no usable m-line");
        goto out;
    }
    add_candidates(p, d);
    char *answer = render(p, false);
    sfu_emit_sdp(p, "answer", answer);
    g_free(answer);
    p->negotiated = true;
    if (new_track)
        sfu_room_tracks_changed(p->room, p);
    for (guint i = 0; i < p->room->tracks->len; i++)
        if (((sfu_track_t *)g_ptr_array_index(p->room->tracks, i))->pub != p)
            p->need_offer = true;
    sfu_nego_maybe_offer(p);
out:
    free(d);
}

static void apply_answer_line(sfu_part_t *p, sfu_mline_t *m, const pl_sdp_media_t *am,
                              uint64_t now)
{
    sfu_down_t *dn = m->down;
    if (m->role != ML_SUBSCRIBE || !dn)
        return;
    bool ok = am->port != 0 && (am->dir & PL_DIR_RECVONLY);
    const pl_sdp_codec_t *c = NULL;
    for (size_t i = 0; ok && i < am->n_codecs && !c; i++)
        if (pl_sdp_codec_same(&am->codecs[i], &m->codec))
            c = &am->codecs[i];
    if (!c) {
        dn->active = false;
        return;
    }
    dn->pt = c->pt;
    dn->rtx_pt = c->rtx_pt;
    memset(dn->ext_id, 0, sizeof(dn->ext_id));
    for (size_t i = 0; i < m->n_exts; i++)
        dn->ext_id[m->exts[i].kind] = pl_sdp_ext_id(am, m->exts[i].kind);
    if (!dn->active) {
        dn->active = true;
        dn->cur_layer = -1;
        sfu_down_select(dn, now);
        pl_log_debug("sfu.subscribed", "participant=%" PRIu64 " track=%u mid=%s", p->id,
                     dn->track->id, m->mid);
    }
}

void sfu_nego_answer(sfu_part_t *p, const char *sdp)
{
    char why[128];
    if (!p->offer_pending) {
        error(p, "no_offer", "no SFU offer is pending");
        return;
    }
    p->offer_pending = false;
    pl_sdp_desc_t *d = pl_sdp_desc_new();
    if (pl_sdp_parse(sdp, d, why, sizeof(why)) < 0) {
        error(p, "bad_sdp", why);
        goto out;
    }
    if (check_same_lines(p, d, true) < 0) {
        error(p, "bad_sdp", "the answer's m-lines do not match the offer");
        goto out;
    }
    for (size_t i = 0; i < d->n_media; i++)
        learn_client(p, &d->media[i]);
    uint64_t now = sfu_now_ms();
    for (guint i = 0; i < p->mlines->len; i++)
        apply_answer_line(p, g_ptr_array_index(p->mlines, i), &d->media[i], now);
    add_candidates(p, d);
    sfu_nego_maybe_offer(p);
out:
    free(d);
}

void sfu_nego_candidate(sfu_part_t *p, const char *cand)
{
    if (!p->pc)
        return;         /* before the first offer: nothing to check against yet */
    if (!cand || !cand[0] || strcmp(cand, "end-of-candidates") == 0 ||
        strcmp(cand, "a=end-of-candidates") == 0) {
        pl_pc_remote_candidates_done(p->pc);
        return;
    }
    if (pl_pc_add_remote_candidate(p->pc, cand) < 0)
        error(p, "bad_candidate", "unparsable ICE candidate");
}

void sfu_nego_maybe_offer(sfu_part_t *p)
{
    if (!p->need_offer || p->offer_pending || !p->pc || !p->negotiated)
        return;
    p->need_offer = false;
    sync_subscriptions(p);
    char *offer = render(p, true);
    p->offer_pending = true;
    sfu_emit_sdp(p, "offer", offer);
    g_free(offer);
}
