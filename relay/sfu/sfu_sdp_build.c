/* sfu_sdp_build.c: writes the SFU's offers and answers through GstSDPMessage.
 *
 * One BUNDLE group with every accepted m-line (RFC 8843), the transport attributes
 * (ice-ufrag/pwd, fingerprint, setup, candidates, end-of-candidates) repeated on every
 * bundled m-line as JSEP writes them, rtcp-mux and rtcp-rsize, one primary codec per
 * m-line with its RTX partner and feedback, the extmaps, receive rids with
 * a=simulcast:recv, and for sending lines a=msid plus a=ssrc/ssrc-group:FID so the
 * browser can demultiplex by SSRC and group a publisher's audio and video by CNAME.
 *
 * Threading: reentrant. */
#include "relay/sfu/sfu_sdp.h"

#include <gst/sdp/sdp.h>
#include <string.h>

static const char *dir_attr(pl_sdp_dir_t d)
{
    switch (d) {
    case PL_DIR_SENDONLY: return "sendonly";
    case PL_DIR_RECVONLY: return "recvonly";
    case PL_DIR_SENDRECV: return "sendrecv";
    default: return "inactive";
    }
}

static void add_codec(GstSDPMedia *m, const pl_sdp_codec_t *c)
{
    char v[192];
    g_snprintf(v, sizeof(v), "%u", c->pt);
    gst_sdp_media_add_format(m, v);
    if (c->channels > 1)
        g_snprintf(v, sizeof(v), "%u %s/%u/%u", c->pt, c->name, c->clock, c->channels);
    else
        g_snprintf(v, sizeof(v), "%u %s/%u", c->pt, c->name, c->clock);
    gst_sdp_media_add_attribute(m, "rtpmap", v);
    static const struct { uint8_t flag; const char *text; } fbs[] = {
        { PL_FB_REMB, "goog-remb" }, { PL_FB_TWCC, "transport-cc" }, { PL_FB_FIR, "ccm fir" },
        { PL_FB_NACK, "nack" }, { PL_FB_PLI, "nack pli" },
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(fbs); i++) {
        if (c->fb & fbs[i].flag) {
            g_snprintf(v, sizeof(v), "%u %s", c->pt, fbs[i].text);
            gst_sdp_media_add_attribute(m, "rtcp-fb", v);
        }
    }
    if (c->fmtp[0]) {
        g_snprintf(v, sizeof(v), "%u %s", c->pt, c->fmtp);
        gst_sdp_media_add_attribute(m, "fmtp", v);
    }
    if (c->rtx_pt) {
        g_snprintf(v, sizeof(v), "%u", c->rtx_pt);
        gst_sdp_media_add_format(m, v);
        g_snprintf(v, sizeof(v), "%u rtx/%u", c->rtx_pt, c->clock);
        gst_sdp_media_add_attribute(m, "rtpmap", v);
        g_snprintf(v, sizeof(v), "%u apt=%u", c->rtx_pt, c->pt);
        gst_sdp_media_add_attribute(m, "fmtp", v);
    }
}

static void add_transport(GstSDPMedia *m, const pl_sdp_out_t *o)
{
    char v[160];
    gst_sdp_media_add_attribute(m, "ice-ufrag", o->ufrag);
    gst_sdp_media_add_attribute(m, "ice-pwd", o->pwd);
    g_snprintf(v, sizeof(v), "sha-256 %s", o->fingerprint);
    gst_sdp_media_add_attribute(m, "fingerprint", v);
    gst_sdp_media_add_attribute(m, "setup", o->setup);
    for (size_t i = 0; i < o->n_cands; i++) {
        const char *c = o->cands[i];
        gst_sdp_media_add_attribute(m, "candidate",
                                    g_str_has_prefix(c, "candidate:") ? c + 10 : c);
    }
    gst_sdp_media_add_attribute(m, "end-of-candidates", NULL);
}

static void add_send_ssrcs(GstSDPMedia *m, const pl_sdp_out_media_t *om)
{
    char v[256];
    g_snprintf(v, sizeof(v), "%s %s", om->msid_stream, om->msid_track);
    gst_sdp_media_add_attribute(m, "msid", v);
    if (om->rtx_ssrc) {
        g_snprintf(v, sizeof(v), "FID %u %u", om->ssrc, om->rtx_ssrc);
        gst_sdp_media_add_attribute(m, "ssrc-group", v);
    }
    uint32_t ssrcs[2] = { om->ssrc, om->rtx_ssrc };
    for (size_t i = 0; i < 2 && ssrcs[i]; i++) {
        g_snprintf(v, sizeof(v), "%u cname:%s", ssrcs[i], om->cname);
        gst_sdp_media_add_attribute(m, "ssrc", v);
        g_snprintf(v, sizeof(v), "%u msid:%s %s", ssrcs[i], om->msid_stream, om->msid_track);
        gst_sdp_media_add_attribute(m, "ssrc", v);
    }
}

static void add_rids(GstSDPMedia *m, const pl_sdp_out_media_t *om)
{
    const char *dir = om->rids_send ? "send" : "recv";
    GString *sim = g_string_new(dir);
    g_string_append_c(sim, ' ');
    char v[64];
    for (size_t i = 0; i < om->n_rids; i++) {
        g_snprintf(v, sizeof(v), "%s %s", om->rids[i], dir);
        gst_sdp_media_add_attribute(m, "rid", v);
        g_string_append_printf(sim, "%s%s", i ? ";" : "", om->rids[i]);
    }
    gst_sdp_media_add_attribute(m, "simulcast", sim->str);
    g_string_free(sim, TRUE);
}

static void add_media(GstSDPMessage *msg, const pl_sdp_out_t *o, const pl_sdp_out_media_t *om)
{
    GstSDPMedia *m;
    char v[64];
    gst_sdp_media_new(&m);
    gst_sdp_media_set_media(m, om->media ? om->media
                                         : om->kind == PL_MEDIA_AUDIO ? "audio" : "video");
    gst_sdp_media_set_port_info(m, om->rejected ? 0 : 9, 1);
    gst_sdp_media_set_proto(m, om->proto ? om->proto : "UDP/TLS/RTP/SAVPF");
    gst_sdp_media_add_connection(m, "IN", "IP4", "0.0.0.0", 0, 0);
    if (om->rejected || !om->codec) {
        gst_sdp_media_add_format(m, om->fmt0 && om->fmt0[0] ? om->fmt0 : "0");
        if (om->mid && om->mid[0])
            gst_sdp_media_add_attribute(m, "mid", om->mid);
        if (!om->rejected)
            gst_sdp_media_add_attribute(m, "inactive", NULL);
        goto done;
    }
    gst_sdp_media_add_attribute(m, "rtcp", "9 IN IP4 0.0.0.0");
    add_transport(m, o);
    gst_sdp_media_add_attribute(m, "mid", om->mid);
    for (size_t i = 0; i < om->n_exts; i++) {
        g_snprintf(v, sizeof(v), "%u", om->exts[i].id);
        char line[256];
        g_snprintf(line, sizeof(line), "%s %s", v, pl_rtp_ext_uri(om->exts[i].kind));
        gst_sdp_media_add_attribute(m, "extmap", line);
    }
    gst_sdp_media_add_attribute(m, dir_attr(om->dir), NULL);
    if (om->ssrc && (om->dir & PL_DIR_SENDONLY))
        add_send_ssrcs(m, om);
    gst_sdp_media_add_attribute(m, "rtcp-mux", NULL);
    gst_sdp_media_add_attribute(m, "rtcp-rsize", NULL);
    add_codec(m, om->codec);
    if (om->n_rids)
        add_rids(m, om);
done:
    gst_sdp_message_add_media(msg, m);
    gst_sdp_media_free(m);
}

char *pl_sdp_build(const pl_sdp_out_t *o)
{
    GstSDPMessage *msg;
    char id[32], ver[32];
    gst_sdp_message_new(&msg);
    gst_sdp_message_set_version(msg, "0");
    g_snprintf(id, sizeof(id), "%" G_GUINT64_FORMAT, o->sess_id);
    g_snprintf(ver, sizeof(ver), "%" G_GUINT64_FORMAT, o->sess_version);
    gst_sdp_message_set_origin(msg, "-", id, ver, "IN", "IP4", "127.0.0.1");
    gst_sdp_message_set_session_name(msg, "-");
    gst_sdp_message_add_time(msg, "0", "0", NULL);
    GString *bundle = g_string_new("BUNDLE");
    for (size_t i = 0; i < o->n_media; i++)
        if (!o->media[i].rejected && o->media[i].mid)
            g_string_append_printf(bundle, " %s", o->media[i].mid);
    if (bundle->len > 6)
        gst_sdp_message_add_attribute(msg, "group", bundle->str);
    g_string_free(bundle, TRUE);
    gst_sdp_message_add_attribute(msg, "msid-semantic", " WMS *");
    for (size_t i = 0; i < o->n_media; i++)
        add_media(msg, o, &o->media[i]);
    char *text = gst_sdp_message_as_text(msg);
    gst_sdp_message_free(msg);
    return text;
}
