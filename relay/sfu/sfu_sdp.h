/* sfu_sdp.h: SDP for the SFU, parsed and written with GStreamer's SDP library
 * (GstSDPMessage), never by hand: a parsed description flattened into plain structs the
 * negotiation code reads, and a builder that turns the SFU's per-participant m-line
 * model into offer or answer text (JSEP, RFC 8829; BUNDLE RFC 8843; simulcast RFC 8853;
 * rid RFC 8851; extmap RFC 8285).
 *
 * What it does not: decide anything (codec choice, roles: sfu_nego.c), or touch I/O.
 *
 * Threading: reentrant; objects belong to the caller. The parse result is large (one
 * struct per m-line with its codecs): allocate it with pl_sdp_desc_new. */
#ifndef PL_SFU_SDP_H
#define PL_SFU_SDP_H

#include "core/pl_common.h"
#include "relay/sfu/pl_rtp.h"

#define PL_SDP_MAX_MEDIA 64
#define PL_SDP_MAX_CODECS 24
#define PL_SDP_MAX_EXTS 16
#define PL_SDP_MAX_RIDS 3
#define PL_SDP_MAX_CANDS 16
#define PL_SDP_NAME_MAX 32

typedef enum pl_sdp_dir {       /* bit 0: sends, bit 1: receives (from the writer's side) */
    PL_DIR_INACTIVE = 0, PL_DIR_SENDONLY = 1, PL_DIR_RECVONLY = 2, PL_DIR_SENDRECV = 3
} pl_sdp_dir_t;

typedef enum pl_media_kind { PL_MEDIA_AUDIO = 0, PL_MEDIA_VIDEO = 1, PL_MEDIA_OTHER = 2 } pl_media_kind_t;

enum {                          /* rtcp-fb flags */
    PL_FB_NACK = 1u << 0, PL_FB_PLI = 1u << 1, PL_FB_FIR = 1u << 2, PL_FB_REMB = 1u << 3,
    PL_FB_TWCC = 1u << 4,
};

typedef struct pl_sdp_codec {
    uint8_t pt;
    pl_codec_t codec;           /* PL_CODEC_NONE for rtx/red/ulpfec/... */
    char name[16];
    uint32_t clock;
    uint8_t channels;
    char fmtp[128];
    uint8_t rtx_pt;             /* 0: no RTX bound to this codec */
    uint8_t fb;                 /* PL_FB_* */
} pl_sdp_codec_t;

typedef struct pl_sdp_ext {
    uint8_t id;
    pl_rtp_ext_kind_t kind;
} pl_sdp_ext_t;

typedef struct pl_sdp_media {
    pl_media_kind_t kind;
    char media[16];             /* "audio", "video", "application", ... */
    char proto[PL_SDP_NAME_MAX];
    char fmt0[PL_SDP_NAME_MAX]; /* first format token (echoed when rejecting) */
    uint16_t port;              /* 0: rejected */
    char mid[PL_SDP_NAME_MAX];
    pl_sdp_dir_t dir;
    size_t n_codecs;
    pl_sdp_codec_t codecs[PL_SDP_MAX_CODECS];  /* in format order, with rtpmap only */
    size_t n_exts;
    pl_sdp_ext_t exts[PL_SDP_MAX_EXTS];         /* known kinds only */
    size_t n_rids;
    char rids[PL_SDP_MAX_RIDS][PL_SDP_NAME_MAX]; /* send rids, simulcast order */
    uint32_t ssrc, rtx_ssrc;    /* first a=ssrc and its FID partner, 0 if none */
    char ice_ufrag[64], ice_pwd[256];
    char fp_alg[16], fp[128];
    char setup[16];
    bool rtcp_mux;
} pl_sdp_media_t;

typedef struct pl_sdp_desc {
    size_t n_media;
    pl_sdp_media_t media[PL_SDP_MAX_MEDIA];
    size_t n_cands;
    char cands[PL_SDP_MAX_CANDS][256];  /* "candidate:..." of every m-line */
} pl_sdp_desc_t;

pl_sdp_desc_t *pl_sdp_desc_new(void);   /* zeroed; free with free() */

/* Parses SDP text. Session-level ice-ufrag, ice-pwd, fingerprint and setup are copied
 * into m-lines that lack them. Returns 0, or PL_EPARSE with a one-line reason in err
 * (not SDP, more than PL_SDP_MAX_MEDIA m-lines, an active m-line without a=mid). */
int pl_sdp_parse(const char *text, pl_sdp_desc_t *d, char *err, size_t errcap);

/* The codec of m whose rtpmap is pt, or NULL. */
const pl_sdp_codec_t *pl_sdp_codec_by_pt(const pl_sdp_media_t *m, uint8_t pt);
/* The extension id of kind in m, 0 if absent. */
uint8_t pl_sdp_ext_id(const pl_sdp_media_t *m, pl_rtp_ext_kind_t kind);
/* Value of key k in a "k1=v1;k2=v2" fmtp into out; false when absent. */
bool pl_sdp_fmtp_get(const char *fmtp, const char *key, char *out, size_t cap);
/* True when a and b are the same payload format (codec, clock, channels and, for H.264,
 * packetization-mode and profile-level-id; for VP9, profile-id). */
bool pl_sdp_codec_same(const pl_sdp_codec_t *a, const pl_sdp_codec_t *b);

/* ---- building ------------------------------------------------------------------------ */

typedef struct pl_sdp_out_media {
    pl_media_kind_t kind;
    const char *media, *proto, *fmt0;   /* for rejected lines (port 0) */
    bool rejected;
    const char *mid;
    pl_sdp_dir_t dir;
    const pl_sdp_codec_t *codec;        /* one primary codec (with rtx_pt and fb) */
    const pl_sdp_ext_t *exts;
    size_t n_exts;
    const char *const *rids;            /* rids + a=simulcast (recv, or send if rids_send) */
    size_t n_rids;
    bool rids_send;
    uint32_t ssrc, rtx_ssrc;            /* 0: none (receive-only line) */
    const char *cname, *msid_stream, *msid_track;
} pl_sdp_out_media_t;

typedef struct pl_sdp_out {
    uint64_t sess_id, sess_version;
    const char *ufrag, *pwd;
    const char *fingerprint;            /* "AB:CD:..." (sha-256) */
    const char *setup;                  /* "actpass" in offers, "passive"/"active" */
    const char *const *cands;           /* candidate-attribute values */
    size_t n_cands;
    const pl_sdp_out_media_t *media;
    size_t n_media;
} pl_sdp_out_t;

/* Writes the description as SDP text. Returns an owned string (free with g_free). */
char *pl_sdp_build(const pl_sdp_out_t *o);

#endif
