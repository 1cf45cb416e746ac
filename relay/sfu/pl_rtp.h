/* pl_rtp.h: the pure RTP/RTCP codec the SFU forwards with (RFC 3550 RTP/RTCP, RFC 8285
 * header extensions, RFC 4585/5104 feedback, RFC 7983 demultiplexing).
 *
 * What it does:
 *  - parses an RTP header in one pass into an index of extension offsets (no copy) and
 *    rewrites a packet for one subscriber: payload type, SSRC, sequence number,
 *    timestamp and a freshly written extension block (one-byte or two-byte form);
 *  - keeps a subscriber's sequence numbers and timestamps continuous across source
 *    switches (simulcast layer changes) and dropped packets (the munger);
 *  - tells keyframes and frame starts of VP8 (RFC 7741), H.264 (RFC 6184) and VP9
 *    (RFC 9628) payloads apart;
 *  - walks compound RTCP (SR, RR, SDES, BYE, NACK, PLI, FIR, REMB, transport-cc) and
 *    builds the packets the SFU sends (SR, RR, NACK, PLI, FIR, REMB);
 *  - receiver statistics for reports (RFC 3550 A.1 sequence tracking, A.3 loss, A.8
 *    jitter).
 *
 * What it does not: no I/O, no logging, no allocation, no crypto (SRTP is the caller's),
 * no payload changes: the SFU never needs the media, so end-to-end encrypted frames
 * (SFrame / insertable streams) pass through unchanged; only the RTP header is read.
 *
 * Threading: every function is reentrant; objects (munger, stats) belong to their
 * caller. Parsers are total: any input gives a result or PL_EPARSE, never a read outside
 * the given bytes. Builders return the length written or PL_ELIMIT when cap is short. */
#ifndef PL_RTP_H
#define PL_RTP_H

#include "core/pl_common.h"

/* ------------------------------------------------------------------------------------
 * Demultiplexing (RFC 7983 §7; RFC 5761 §4 for RTP versus RTCP on one port)
 * ---------------------------------------------------------------------------------- */

typedef enum pl_rtp_class {
    PL_PKT_UNKNOWN = 0,
    PL_PKT_STUN,            /* first byte 0..3 */
    PL_PKT_DTLS,            /* 20..63 */
    PL_PKT_RTP,             /* 128..191, second byte's PT not 192..223 */
    PL_PKT_RTCP,            /* 128..191, second byte 192..223 (SR..PSFB and XR) */
} pl_rtp_class_t;

pl_rtp_class_t pl_rtp_classify(const uint8_t *p, size_t len);

/* ------------------------------------------------------------------------------------
 * RTP header and extensions
 * ---------------------------------------------------------------------------------- */

#define PL_RTP_HEADER_LEN 12u
#define PL_RTP_MAX_EXTS 16      /* extensions indexed per packet; more is malformed */

typedef struct pl_rtp_ext {
    uint8_t id;             /* 1..14 one-byte form, 1..255 two-byte form */
    uint8_t len;            /* value bytes (one-byte form: 1..16; two-byte: 0..255) */
    uint16_t off;           /* offset of the value from the packet start */
} pl_rtp_ext_t;

typedef struct pl_rtp_hdr {
    bool marker;
    uint8_t pt;
    uint8_t cc;             /* CSRC count */
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    uint16_t ext_profile;   /* 0xBEDE, 0x100X (two-byte) or other; 0 when no extension */
    uint8_t n_ext;          /* indexed RFC 8285 elements (0 for other profiles) */
    pl_rtp_ext_t ext[PL_RTP_MAX_EXTS];
    uint16_t csrc_off;      /* = 12: the CSRC list (cc * 4 bytes) */
    uint16_t payload_off;   /* first payload byte */
    uint16_t payload_len;   /* without padding */
    uint8_t pad_len;        /* RFC 3550 §5.1 padding, counted in the last byte */
} pl_rtp_hdr_t;

/* Parses an RTP packet of len bytes (at most 65535). Returns 0 or PL_EPARSE (version not
 * 2, truncated header, CSRC list or extension block, padding count of 0 or beyond the
 * payload, malformed RFC 8285 element, more than PL_RTP_MAX_EXTS elements). */
int pl_rtp_parse(const uint8_t *p, size_t len, pl_rtp_hdr_t *out);

/* The value of extension id: returns a borrowed pointer into p and sets *len, or NULL
 * when absent. id 0 is never present. */
const uint8_t *pl_rtp_ext_get(const pl_rtp_hdr_t *h, const uint8_t *p, uint8_t id,
                              size_t *len);

/* One extension element to write. */
typedef struct pl_rtp_ext_out {
    uint8_t id;             /* 1..255 */
    uint8_t len;            /* 0..255 */
    const uint8_t *data;
} pl_rtp_ext_out_t;

/* Writes an extension block (the 4-byte profile header, the elements, zero padding to a
 * 32-bit boundary) into out. Uses the one-byte form (RFC 8285 §4.2) when every id is
 * 1..14 and every len 1..16, else the two-byte form (§4.3). n == 0 writes nothing.
 * Returns the bytes written, PL_ELIMIT when cap is short, PL_EPARSE for id 0. */
int pl_rtp_ext_write(uint8_t *out, size_t cap, const pl_rtp_ext_out_t *ext, size_t n);

/* What a subscriber's copy of a packet gets. */
typedef struct pl_rtp_rewrite {
    uint8_t pt;
    bool marker;
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    const pl_rtp_ext_out_t *ext;    /* the new extension block (replaces the old one) */
    size_t n_ext;
} pl_rtp_rewrite_t;

/* Writes into out the packet `in` (parsed as h) with the fields of rw: header, CSRC list
 * kept, new extension block, the payload and its padding unchanged. out must not overlap
 * in. Returns the length written, PL_ELIMIT or PL_EPARSE (bad extension id). */
int pl_rtp_rewrite(const uint8_t *in, const pl_rtp_hdr_t *h, const pl_rtp_rewrite_t *rw,
                   uint8_t *out, size_t cap);

/* Well-known header extensions the SFU understands (SDP a=extmap URIs). */
typedef enum pl_rtp_ext_kind {
    PL_EXT_NONE = 0,
    PL_EXT_MID,             /* urn:ietf:params:rtp-hdrext:sdes:mid (RFC 9143) */
    PL_EXT_RID,             /* ...:sdes:rtp-stream-id (RFC 8852) */
    PL_EXT_RRID,            /* ...:sdes:repaired-rtp-stream-id (RFC 8852) */
    PL_EXT_ABS_SEND_TIME,   /* webrtc abs-send-time: 24-bit 6.18 fixed-point seconds */
    PL_EXT_TWCC,            /* transport-wide-cc-extensions-01: 16-bit sequence */
    PL_EXT_AUDIO_LEVEL,     /* urn:ietf:params:rtp-hdrext:ssrc-audio-level (RFC 6464) */
    PL_EXT_VIDEO_ORIENTATION, /* urn:3gpp:video-orientation */
    PL_EXT_TOFFSET,         /* urn:ietf:params:rtp-hdrext:toffset (RFC 5450) */
    PL_EXT_KIND_COUNT
} pl_rtp_ext_kind_t;

/* The URI of a kind (NULL for NONE or out of range) and the kind of a URI (NONE when
 * unknown). */
const char *pl_rtp_ext_uri(pl_rtp_ext_kind_t kind);
pl_rtp_ext_kind_t pl_rtp_ext_kind(const char *uri);

/* RFC 6464 audio level: *level_dbov 0..127 (-dBov; 127 = silence) and the voice bit
 * from the first value byte (later bytes are padding). Returns 0 or PL_EPARSE (len 0). */
int pl_rtp_audio_level(const uint8_t *v, size_t len, uint8_t *level_dbov, bool *voice);

/* abs-send-time value for a monotonic time in microseconds (24 bits, 6.18 seconds). */
uint32_t pl_rtp_abs_send_time(uint64_t now_us);

/* ------------------------------------------------------------------------------------
 * Keyframes (payload descriptors only; the media itself is never read)
 * ---------------------------------------------------------------------------------- */

typedef enum pl_codec {
    PL_CODEC_NONE = 0, PL_CODEC_OPUS, PL_CODEC_VP8, PL_CODEC_VP9, PL_CODEC_H264
} pl_codec_t;

/* Returns the codec of an SDP encoding name (case-insensitive), PL_CODEC_NONE when
 * unsupported. */
pl_codec_t pl_codec_from_name(const char *name);
const char *pl_codec_name(pl_codec_t c);

typedef struct pl_frame_info {
    bool keyframe;          /* this packet starts (or, H.264, carries) a keyframe */
    bool frame_start;       /* this packet begins a frame */
    int temporal_id;        /* VP8/VP9 TID, -1 when absent */
    int spatial_id;         /* VP9 SID, -1 when absent */
} pl_frame_info_t;

/* Inspects a payload of codec c. Returns 0 or PL_EPARSE (truncated descriptor). Audio
 * and unknown codecs report every packet as a frame start, never a keyframe. */
int pl_rtp_frame_info(pl_codec_t c, const uint8_t *payload, size_t len,
                      pl_frame_info_t *out);

/* ------------------------------------------------------------------------------------
 * Munger: one outgoing stream toward a subscriber, fed by switching sources
 * ---------------------------------------------------------------------------------- */

typedef struct pl_rtp_munger {
    bool started;
    bool resync;                /* treat the next packet as a new source */
    uint32_t src_ssrc;          /* the source currently forwarded */
    uint16_t seq_offset;        /* out = in + offset (mod 2^16) */
    uint32_t ts_offset;
    uint16_t highest_in;        /* highest input seq forwarded since the switch */
    uint16_t switch_in;         /* first input seq of the current source */
    uint16_t last_out_seq;      /* highest output seq sent */
    uint32_t last_out_ts;
    uint64_t last_out_us;       /* arrival time of the packet that set last_out_ts */
} pl_rtp_munger_t;

/* Maps a packet of source src_ssrc. On a new source (first packet or switch) the output
 * continues at last seq + 1 and at a timestamp advanced by the wall time since the last
 * packet (clock_hz: the RTP clock rate), at least 1 tick, so the subscriber sees one
 * continuous stream (the caller switches only on keyframes). Returns 0 with *out_seq and
 * *out_ts, or -ESTALE for a packet of the current source older than the switch point
 * (drop it; a packet of another source is always treated as a switch). */
int pl_rtp_munger_map(pl_rtp_munger_t *m, uint32_t src_ssrc, uint16_t in_seq,
                      uint32_t in_ts, uint64_t now_us, uint32_t clock_hz,
                      uint16_t *out_seq, uint32_t *out_ts);

/* Drops the packet in_seq of the current source without leaving a gap: succeeds (true)
 * only when it is the next in order, so later packets shift down by one. Otherwise the
 * caller must forward it (false). */
bool pl_rtp_munger_drop(pl_rtp_munger_t *m, uint32_t src_ssrc, uint16_t in_seq);

/* Makes the next packet start a new segment as if the source had switched (after a
 * pause in forwarding, e.g. mute): no sequence gap, timestamp advanced by wall time. */
static inline void pl_rtp_munger_resync(pl_rtp_munger_t *m)
{
    m->resync = m->started;
}

/* Serial-number arithmetic (RFC 1982): a is newer than b. */
static inline bool pl_seq_newer(uint16_t a, uint16_t b)
{
    return a != b && (uint16_t)(a - b) < 0x8000u;
}

/* ------------------------------------------------------------------------------------
 * Receiver statistics (RFC 3550 appendix A)
 * ---------------------------------------------------------------------------------- */

typedef struct pl_rtp_rx_stats {
    bool started;
    uint16_t max_seq;
    uint32_t cycles;            /* shifted count of seq wraps (<< 16) */
    uint32_t base_seq;
    uint32_t bad_seq;
    uint32_t received;
    uint32_t expected_prior, received_prior;
    double jitter;              /* in timestamp units (A.8) */
    int64_t last_transit;
    bool have_transit;
    uint32_t last_sr_ntp_mid;   /* middle 32 bits of the last SR's NTP time */
    uint64_t last_sr_us;        /* arrival of that SR */
} pl_rtp_rx_stats_t;

/* Counts one packet: seq and its timestamp, arrival in the same clock units (ticks). */
void pl_rtp_rx_update(pl_rtp_rx_stats_t *s, uint16_t seq, uint32_t ts,
                      uint32_t arrival_ticks);

typedef struct pl_rtcp_rb {
    uint32_t ssrc;
    uint8_t fraction_lost;      /* 8-bit fixed point */
    int32_t cumulative_lost;    /* 24-bit signed */
    uint32_t highest_seq;       /* extended */
    uint32_t jitter;
    uint32_t lsr;
    uint32_t dlsr;              /* 1/65536 s */
} pl_rtcp_rb_t;

/* Notes an SR from the stream's sender (ntp: its NTP timestamp) for LSR/DLSR. */
void pl_rtp_rx_on_sr(pl_rtp_rx_stats_t *s, uint64_t ntp, uint64_t now_us);

/* Fills a report block for ssrc (A.3 interval loss) and starts a new interval. now_us
 * and the last SR arrival give DLSR. */
void pl_rtp_rx_report(pl_rtp_rx_stats_t *s, uint32_t ssrc, uint64_t now_us,
                      pl_rtcp_rb_t *rb);

/* ------------------------------------------------------------------------------------
 * RTCP
 * ---------------------------------------------------------------------------------- */

enum {
    PL_RTCP_SR = 200, PL_RTCP_RR = 201, PL_RTCP_SDES = 202, PL_RTCP_BYE = 203,
    PL_RTCP_APP = 204, PL_RTCP_RTPFB = 205, PL_RTCP_PSFB = 206, PL_RTCP_XR = 207,
};
enum { PL_RTCP_FMT_NACK = 1, PL_RTCP_FMT_TWCC = 15 };                  /* RTPFB */
enum { PL_RTCP_FMT_PLI = 1, PL_RTCP_FMT_FIR = 4, PL_RTCP_FMT_AFB = 15 }; /* PSFB */

typedef enum pl_rtcp_kind {
    PL_RTCPK_SR = 1, PL_RTCPK_RR, PL_RTCPK_SDES, PL_RTCPK_BYE, PL_RTCPK_NACK,
    PL_RTCPK_PLI, PL_RTCPK_FIR, PL_RTCPK_REMB, PL_RTCPK_TWCC, PL_RTCPK_OTHER
} pl_rtcp_kind_t;

#define PL_RTCP_MAX_RB 31
#define PL_RTCP_MAX_REMB_SSRCS 16

/* One packet of a compound. Pointers borrow from the compound buffer. */
typedef struct pl_rtcp_pkt {
    pl_rtcp_kind_t kind;
    uint8_t pt, fmt;            /* header fields (fmt = RC/SC/FMT) */
    uint32_t sender_ssrc;       /* SR/RR/feedback packet sender; first SSRC of SDES/BYE */
    uint32_t media_ssrc;        /* feedback: the media source (0 for FIR/REMB) */
    const uint8_t *data;        /* the whole packet, header included */
    size_t len;
    /* SR */
    uint64_t ntp;
    uint32_t rtp_ts, packet_count, octet_count;
    /* SR/RR report blocks */
    uint8_t n_rb;
    pl_rtcp_rb_t rb[PL_RTCP_MAX_RB];
    /* NACK: FCI entries (PID, BLP) at data + 12, n_fci of them */
    const uint8_t *fci;
    size_t n_fci;
    /* FIR: entries (SSRC, seq nr) at fci, n_fci of them */
    /* REMB */
    uint64_t remb_bps;
    uint8_t n_remb_ssrcs;
    uint32_t remb_ssrcs[PL_RTCP_MAX_REMB_SSRCS];
    /* transport-cc: header fields; pl_rtcp_twcc_walk decodes the body */
    uint16_t twcc_base_seq, twcc_count;
    int32_t twcc_ref_time;      /* 64 ms units, 24-bit signed */
    uint8_t twcc_fb_count;
} pl_rtcp_pkt_t;

typedef struct pl_rtcp_iter {
    const uint8_t *p;
    size_t len, off;
} pl_rtcp_iter_t;

void pl_rtcp_iter_init(pl_rtcp_iter_t *it, const uint8_t *p, size_t len);
/* Parses the next packet of the compound: returns 1 with *out filled, 0 at the end, or
 * PL_EPARSE (bad version, length past the end, a packet too short for its type). The
 * iterator stops at the first error. Unknown types come back as PL_RTCPK_OTHER. */
int pl_rtcp_next(pl_rtcp_iter_t *it, pl_rtcp_pkt_t *out);

/* NACK: expands the FCI entries into sequence numbers (PID plus the BLP bits). Returns
 * how many were written (at most cap). */
size_t pl_rtcp_nack_seqs(const pl_rtcp_pkt_t *p, uint16_t *out, size_t cap);
/* FIR entry i (< n_fci): the target SSRC and command sequence number. */
void pl_rtcp_fir_entry(const pl_rtcp_pkt_t *p, size_t i, uint32_t *ssrc, uint8_t *seq);

/* transport-cc feedback: calls fn for each packet status in order: its transport-wide
 * sequence number, whether it arrived, and its receive delta in 250 us units (0 when not
 * received). Returns the number of statuses or PL_EPARSE (chunks or deltas truncated). */
typedef void (*pl_twcc_status_cb)(void *arg, uint16_t seq, bool received,
                                  int32_t delta_250us);
int pl_rtcp_twcc_walk(const pl_rtcp_pkt_t *p, pl_twcc_status_cb fn, void *arg);

/* Builders: each writes one RTCP packet into out and returns its length, or PL_ELIMIT.
 * Concatenate them for a compound (RFC 3550 §6.1; reduced size per RFC 5506 is fine
 * with rtcp-rsize). */
typedef struct pl_rtcp_sr_info {
    uint32_t ssrc;
    uint64_t ntp;               /* NTP timestamp, 32.32 */
    uint32_t rtp_ts, packet_count, octet_count;
} pl_rtcp_sr_info_t;
int pl_rtcp_build_sr(uint8_t *out, size_t cap, const pl_rtcp_sr_info_t *sr,
                     const pl_rtcp_rb_t *rb, size_t n_rb);
int pl_rtcp_build_rr(uint8_t *out, size_t cap, uint32_t ssrc, const pl_rtcp_rb_t *rb,
                     size_t n_rb);
/* SDES with one CNAME item (RFC 3550 §6.5); cname at most 255 bytes. */
int pl_rtcp_build_sdes(uint8_t *out, size_t cap, uint32_t ssrc, const char *cname);
/* Generic NACK (RFC 4585 §6.2.1) for the given sequence numbers, packed into PID/BLP
 * pairs (seqs in any order; duplicates fine); 1..PL_RTCP_MAX_NACK_SEQS of them. */
#define PL_RTCP_MAX_NACK_SEQS 256
int pl_rtcp_build_nack(uint8_t *out, size_t cap, uint32_t sender, uint32_t media,
                       const uint16_t *seqs, size_t n);
int pl_rtcp_build_pli(uint8_t *out, size_t cap, uint32_t sender, uint32_t media);
/* FIR (RFC 5104 §4.3.1) with one entry. */
int pl_rtcp_build_fir(uint8_t *out, size_t cap, uint32_t sender, uint32_t media,
                      uint8_t seq_nr);
/* REMB (draft-alvestrand-rmcat-remb): bitrate as 6-bit exponent and 18-bit mantissa. */
int pl_rtcp_build_remb(uint8_t *out, size_t cap, uint32_t sender, uint64_t bps,
                       const uint32_t *ssrcs, size_t n);

/* 64-bit NTP time (RFC 5905: seconds since 1900 in the upper 32 bits) of a Unix time
 * in microseconds. */
uint64_t pl_ntp_from_unix_us(uint64_t unix_us);

/* Round-trip time from a report block about a stream we sent (RFC 3550 §6.4.1):
 * now minus LSR minus DLSR, all in the middle 32 bits of NTP time. Returns the RTT in
 * microseconds, or -1 when the block carries no LSR or the result is negative. */
int64_t pl_rtcp_rtt_us(uint64_t now_ntp, uint32_t lsr, uint32_t dlsr);

#endif
