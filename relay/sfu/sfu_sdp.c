/* sfu_sdp.c: SDP parsing into pl_sdp_desc_t and SDP writing from pl_sdp_out_t, both
 * through GstSDPMessage (gst-sdp); see sfu_sdp.h.
 *
 * Parsing is total for any text: gst-sdp tolerates junk lines; what the SFU needs is
 * then checked here (v=0, at most PL_SDP_MAX_MEDIA m-lines, a=mid on every active
 * m-line), and values are copied with bounds. Unknown attributes are ignored.
 *
 * Threading: reentrant. */
#include "relay/sfu/sfu_sdp.h"

#include <gst/sdp/sdp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pl_sdp_desc_t *pl_sdp_desc_new(void)
{
    return pl_xcalloc(1, sizeof(pl_sdp_desc_t));
}

static void copy(char *dst, size_t cap, const char *src)
{
    g_strlcpy(dst, src ? src : "", cap);
}

static pl_sdp_codec_t *codec_find(pl_sdp_media_t *m, int pt)
{
    for (size_t i = 0; i < m->n_codecs; i++)
        if (m->codecs[i].pt == pt)
            return &m->codecs[i];
    return NULL;
}

/* "96 VP8/90000" or "111 opus/48000/2" */
static void parse_rtpmap(pl_sdp_media_t *m, const char *v)
{
    int pt;
    char enc[64];
    unsigned clock = 0, ch = 0;
    int n = sscanf(v, "%d %63[^/]/%u/%u", &pt, enc, &clock, &ch);
    if (n < 3 || pt < 0 || pt > 127 || codec_find(m, pt) || m->n_codecs >= PL_SDP_MAX_CODECS)
        return;
    pl_sdp_codec_t *c = &m->codecs[m->n_codecs++];
    memset(c, 0, sizeof(*c));
    c->pt = (uint8_t)pt;
    copy(c->name, sizeof(c->name), enc);
    c->codec = pl_codec_from_name(enc);
    c->clock = clock;
    c->channels = (uint8_t)(n == 4 ? ch : 0);
}

static void parse_fmtp(pl_sdp_media_t *m, const char *v)
{
    char *end;
    long pt = strtol(v, &end, 10);
    pl_sdp_codec_t *c = (end != v && *end == ' ') ? codec_find(m, (int)pt) : NULL;
    if (c)
        copy(c->fmtp, sizeof(c->fmtp), end + 1);
}

static uint8_t fb_flag(const char *what)
{
    if (strcmp(what, "nack") == 0)
        return PL_FB_NACK;
    if (strcmp(what, "nack pli") == 0)
        return PL_FB_PLI;
    if (strcmp(what, "ccm fir") == 0)
        return PL_FB_FIR;
    if (strcmp(what, "goog-remb") == 0)
        return PL_FB_REMB;
    if (strcmp(what, "transport-cc") == 0)
        return PL_FB_TWCC;
    return 0;
}

/* "96 nack pli" or "* nack" (RFC 4585 §4.2: * applies to every format). Applied after
 * all rtpmaps are known. */
static void parse_rtcp_fb(pl_sdp_media_t *m, const char *v)
{
    const char *sp = strchr(v, ' ');
    if (!sp)
        return;
    uint8_t f = fb_flag(sp + 1);
    if (v[0] == '*') {
        for (size_t i = 0; i < m->n_codecs; i++)
            m->codecs[i].fb |= f;
        return;
    }
    pl_sdp_codec_t *c = codec_find(m, atoi(v));
    if (c)
        c->fb |= f;
}

/* "1 urn:..." or "1/sendonly urn:..." */
static void parse_extmap(pl_sdp_media_t *m, const char *v)
{
    char *end;
    long id = strtol(v, &end, 10);
    if (end == v || id < 1 || id > 255 || m->n_exts >= PL_SDP_MAX_EXTS)
        return;
    const char *uri = strchr(end, ' ');
    if (!uri)
        return;
    char buf[256];
    copy(buf, sizeof(buf), uri + 1);
    char *sp = strchr(buf, ' ');        /* drop extension attributes */
    if (sp)
        *sp = '\0';
    pl_rtp_ext_kind_t k = pl_rtp_ext_kind(buf);
    if (k != PL_EXT_NONE)
        m->exts[m->n_exts++] = (pl_sdp_ext_t){ (uint8_t)id, k };
}

/* "q send [pt=...;max-width=...]": only send rids matter to a receiver. */
static void parse_rid(pl_sdp_media_t *m, const char *v)
{
    char name[PL_SDP_NAME_MAX], dir[16];
    if (sscanf(v, "%31s %15s", name, dir) != 2 || strcmp(dir, "send") != 0 ||
        m->n_rids >= PL_SDP_MAX_RIDS)
        return;
    for (size_t i = 0; i < m->n_rids; i++)
        if (strcmp(m->rids[i], name) == 0)
            return;
    copy(m->rids[m->n_rids++], PL_SDP_NAME_MAX, name);
}

/* "send q;h;f" (RFC 8853 §5.1; "~" marks a paused stream, alternatives after ","):
 * reorders the rids into the simulcast order and drops rids it does not list. */
static void parse_simulcast(pl_sdp_media_t *m, const char *v)
{
    if (strncmp(v, "send ", 5) != 0)
        return;
    char order[PL_SDP_MAX_RIDS][PL_SDP_NAME_MAX];
    size_t n = 0;
    gchar **alts = g_strsplit(v + 5, ";", -1);
    for (gchar **a = alts; *a && n < PL_SDP_MAX_RIDS; a++) {
        gchar **first = g_strsplit(*a, ",", 2);
        const char *r = first[0] ? first[0] : "";
        if (*r == '~')
            r++;
        for (size_t i = 0; i < m->n_rids; i++)
            if (strcmp(m->rids[i], r) == 0)
                copy(order[n++], PL_SDP_NAME_MAX, r);
        g_strfreev(first);
    }
    g_strfreev(alts);
    for (size_t i = 0; i < n; i++)
        copy(m->rids[i], PL_SDP_NAME_MAX, order[i]);
    m->n_rids = n;
}

static void parse_ssrc_group(pl_sdp_media_t *m, const char *v)
{
    unsigned long a, b;
    if (sscanf(v, "FID %lu %lu", &a, &b) == 2 && m->rtx_ssrc == 0) {
        m->ssrc = (uint32_t)a;
        m->rtx_ssrc = (uint32_t)b;
    }
}

static void parse_fingerprint(char *alg, char *fp, const char *v)
{
    char a[16], f[128];
    if (sscanf(v, "%15s %127s", a, f) == 2) {
        copy(alg, 16, a);
        copy(fp, 128, f);
    }
}

static void parse_attr(pl_sdp_desc_t *d, pl_sdp_media_t *m, const char *k, const char *v)
{
    if (!v)
        v = "";
    if (strcmp(k, "mid") == 0)
        copy(m->mid, sizeof(m->mid), v);
    else if (strcmp(k, "sendrecv") == 0)
        m->dir = PL_DIR_SENDRECV;
    else if (strcmp(k, "sendonly") == 0)
        m->dir = PL_DIR_SENDONLY;
    else if (strcmp(k, "recvonly") == 0)
        m->dir = PL_DIR_RECVONLY;
    else if (strcmp(k, "inactive") == 0)
        m->dir = PL_DIR_INACTIVE;
    else if (strcmp(k, "rtpmap") == 0)
        parse_rtpmap(m, v);
    else if (strcmp(k, "extmap") == 0)
        parse_extmap(m, v);
    else if (strcmp(k, "rid") == 0)
        parse_rid(m, v);
    else if (strcmp(k, "ssrc") == 0 && m->ssrc == 0)
        m->ssrc = (uint32_t)strtoul(v, NULL, 10);
    else if (strcmp(k, "ssrc-group") == 0)
        parse_ssrc_group(m, v);
    else if (strcmp(k, "ice-ufrag") == 0)
        copy(m->ice_ufrag, sizeof(m->ice_ufrag), v);
    else if (strcmp(k, "ice-pwd") == 0)
        copy(m->ice_pwd, sizeof(m->ice_pwd), v);
    else if (strcmp(k, "fingerprint") == 0)
        parse_fingerprint(m->fp_alg, m->fp, v);
    else if (strcmp(k, "setup") == 0)
        copy(m->setup, sizeof(m->setup), v);
    else if (strcmp(k, "rtcp-mux") == 0)
        m->rtcp_mux = true;
    else if (strcmp(k, "candidate") == 0 && d->n_cands < PL_SDP_MAX_CANDS)
        g_snprintf(d->cands[d->n_cands++], sizeof(d->cands[0]), "candidate:%s", v);
}

/* Second pass: attributes that refer to payload types known only after every rtpmap. */
static void parse_attr_late(pl_sdp_media_t *m, const char *k, const char *v)
{
    if (!v)
        return;
    if (strcmp(k, "fmtp") == 0)
        parse_fmtp(m, v);
    else if (strcmp(k, "rtcp-fb") == 0)
        parse_rtcp_fb(m, v);
    else if (strcmp(k, "simulcast") == 0)
        parse_simulcast(m, v);
}

static void bind_rtx(pl_sdp_media_t *m)
{
    char apt[8];
    for (size_t i = 0; i < m->n_codecs; i++) {
        pl_sdp_codec_t *c = &m->codecs[i];
        if (g_ascii_strcasecmp(c->name, "rtx") != 0 || !pl_sdp_fmtp_get(c->fmtp, "apt", apt, sizeof(apt)))
            continue;
        pl_sdp_codec_t *p = codec_find(m, atoi(apt));
        if (p && p->rtx_pt == 0)
            p->rtx_pt = c->pt;
    }
}

static void parse_media(pl_sdp_desc_t *d, const GstSDPMedia *gm, pl_sdp_media_t *m)
{
    const char *media = gst_sdp_media_get_media(gm);
    copy(m->media, sizeof(m->media), media);
    m->kind = g_strcmp0(media, "audio") == 0 ? PL_MEDIA_AUDIO
            : g_strcmp0(media, "video") == 0 ? PL_MEDIA_VIDEO : PL_MEDIA_OTHER;
    copy(m->proto, sizeof(m->proto), gst_sdp_media_get_proto(gm));
    m->port = (uint16_t)gst_sdp_media_get_port(gm);
    m->dir = PL_DIR_SENDRECV;           /* RFC 3264 §5.1 default */
    if (gst_sdp_media_formats_len(gm) > 0)
        copy(m->fmt0, sizeof(m->fmt0), gst_sdp_media_get_format(gm, 0));
    guint n = gst_sdp_media_attributes_len(gm);
    for (guint i = 0; i < n; i++) {
        const GstSDPAttribute *a = gst_sdp_media_get_attribute(gm, i);
        parse_attr(d, m, a->key, a->value);
    }
    for (guint i = 0; i < n; i++) {
        const GstSDPAttribute *a = gst_sdp_media_get_attribute(gm, i);
        parse_attr_late(m, a->key, a->value);
    }
    bind_rtx(m);
}

static void inherit_session(const GstSDPMessage *msg, pl_sdp_media_t *m)
{
    const char *v;
    if (!m->ice_ufrag[0] && (v = gst_sdp_message_get_attribute_val(msg, "ice-ufrag")))
        copy(m->ice_ufrag, sizeof(m->ice_ufrag), v);
    if (!m->ice_pwd[0] && (v = gst_sdp_message_get_attribute_val(msg, "ice-pwd")))
        copy(m->ice_pwd, sizeof(m->ice_pwd), v);
    if (!m->fp[0] && (v = gst_sdp_message_get_attribute_val(msg, "fingerprint")))
        parse_fingerprint(m->fp_alg, m->fp, v);
    if (!m->setup[0] && (v = gst_sdp_message_get_attribute_val(msg, "setup")))
        copy(m->setup, sizeof(m->setup), v);
}

int pl_sdp_parse(const char *text, pl_sdp_desc_t *d, char *err, size_t errcap)
{
    GstSDPMessage *msg = NULL;
    int rc = PL_EPARSE;
    memset(d, 0, sizeof(*d));
    if (!text || !g_str_has_prefix(text, "v=0") ||
        gst_sdp_message_new_from_text(text, &msg) != GST_SDP_OK) {
        g_snprintf(err, errcap, "not an SDP description");
        goto out;
    }
    guint n = gst_sdp_message_medias_len(msg);
    if (n > PL_SDP_MAX_MEDIA) {
        g_snprintf(err, errcap, "more than %d m-lines", PL_SDP_MAX_MEDIA);
        goto out;
    }
    for (guint i = 0; i < n; i++) {
        pl_sdp_media_t *m = &d->media[i];
        parse_media(d, gst_sdp_message_get_media(msg, i), m);
        inherit_session(msg, m);
        if (m->port != 0 && !m->mid[0]) {
            g_snprintf(err, errcap, "m-line %u has no a=mid", i);
            goto out;
        }
    }
    d->n_media = n;
    rc = 0;
out:
    if (msg)
        gst_sdp_message_free(msg);
    return rc;
}

const pl_sdp_codec_t *pl_sdp_codec_by_pt(const pl_sdp_media_t *m, uint8_t pt)
{
    return codec_find((pl_sdp_media_t *)(uintptr_t)m, pt);
}

uint8_t pl_sdp_ext_id(const pl_sdp_media_t *m, pl_rtp_ext_kind_t kind)
{
    for (size_t i = 0; i < m->n_exts; i++)
        if (m->exts[i].kind == kind)
            return m->exts[i].id;
    return 0;
}

bool pl_sdp_fmtp_get(const char *fmtp, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    const char *p = fmtp;
    while (p && *p) {
        while (*p == ' ' || *p == ';')
            p++;
        if (g_ascii_strncasecmp(p, key, klen) == 0 && p[klen] == '=') {
            const char *v = p + klen + 1;
            size_t n = strcspn(v, ";");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
        p = strchr(p, ';');
    }
    return false;
}

static bool fmtp_same(const char *a, const char *b, const char *key, const char *dflt)
{
    char va[64], vb[64];
    if (!pl_sdp_fmtp_get(a, key, va, sizeof(va)))
        copy(va, sizeof(va), dflt);
    if (!pl_sdp_fmtp_get(b, key, vb, sizeof(vb)))
        copy(vb, sizeof(vb), dflt);
    return g_ascii_strcasecmp(va, vb) == 0;
}

bool pl_sdp_codec_same(const pl_sdp_codec_t *a, const pl_sdp_codec_t *b)
{
    if (g_ascii_strcasecmp(a->name, b->name) != 0 || a->clock != b->clock ||
        (a->channels ? a->channels : 1) != (b->channels ? b->channels : 1))
        return false;
    if (a->codec == PL_CODEC_H264)
        return fmtp_same(a->fmtp, b->fmtp, "packetization-mode", "0") &&
               fmtp_same(a->fmtp, b->fmtp, "profile-level-id", "420010");
    if (a->codec == PL_CODEC_VP9)
        return fmtp_same(a->fmtp, b->fmtp, "profile-id", "0");
    return true;
}
