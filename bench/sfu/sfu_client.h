/* sfu_client.h: a small WebRTC-style client of the SFU for tests and the load tool,
 * built on the SFU's own transport (libnice in the controlling role, DTLS client,
 * SRTP) and SDP (gst-sdp) code. It offers what it publishes (Opus-like audio with
 * the audio-level extension; VP8-like video, optionally simulcast with rids q/h/f),
 * answers the SFU's offers, sends synthetic RTP whose payload names the publisher,
 * layer and frame, and checks what it receives: per-source packets, sequence gaps,
 * payload marks, the simulcast layer it is being sent, keyframe requests it gets, and
 * losses it recovers by NACK (with RTX unwrapping).
 *
 * What it does not: encode or decode media; the payload is a VP8/Opus-shaped stand-in
 * (a VP8 payload descriptor and key-frame bit so the SFU's switching logic sees real
 * frames).
 *
 * Threading: a client lives on the thread iterating its GMainContext; events from the
 * SFU must be handed to it on that thread. */
#ifndef PL_SFU_CLIENT_H
#define PL_SFU_CLIENT_H

#include "core/pl_common.h"

#include <glib.h>
#include <openssl/ssl.h>

typedef struct pl_sfc pl_sfc_t;

/* Called with the SDP the client wants delivered to the SFU ("offer" or "answer"). */
typedef void (*pl_sfc_signal_fn)(void *arg, pl_sfc_t *c, const char *type, const char *sdp);

typedef struct pl_sfc_opts {
    GMainContext *ctx;
    SSL_CTX *ssl_ctx;
    const char *fingerprint;        /* of ssl_ctx's certificate ("AB:CD:...") */
    uint64_t id;                    /* participant id (goes into the payload marks) */
    bool audio, video;              /* what it publishes; neither: it offers receive-only
                                       audio and video lines (a pure subscriber) */
    unsigned layers;                /* video layers: 1, or 3 (simulcast q/h/f) */
    unsigned video_kbps;            /* top layer bitrate; lower layers 1/4 and 1/16 */
    unsigned drop_every;            /* drop every n-th received video packet (0: none) */
    bool equal_sizes;               /* every packet of a frame the same size (default:
                                       libwebrtc's one-byte differences, see send_frame) */
    bool count_only;                /* receivers: count packets and sequence gaps from the
                                       clear SRTP header, no decryption (load tool) */
    pl_sfc_signal_fn signal;
    void *arg;
} pl_sfc_opts_t;

/* Receive statistics for one remote publisher (keyed by its participant id). */
typedef struct pl_sfc_src_stats {
    uint64_t publisher;
    uint64_t audio_packets, video_packets, bytes;
    uint64_t bad_marks;             /* payload not what that publisher sent */
    uint64_t seq_gaps;              /* missing sequence numbers, counted when seen */
    uint64_t recovered;             /* RTX or re-sent packets filling a gap */
    int last_layer;                 /* layer mark of the last video packet */
    uint64_t layer_packets[3];
    uint64_t keyframes;
} pl_sfc_src_stats_t;

pl_sfc_t *pl_sfc_create(const pl_sfc_opts_t *o);
void pl_sfc_destroy(pl_sfc_t *c);

/* Creates the transport and sends the first offer through the signal callback. */
int pl_sfc_start(pl_sfc_t *c);
/* Handles one SFU event (JSON): sfu.answer and sfu.offer are applied (an answer goes
 * out through the signal callback); others are counted. Returns 0 or PL_EPARSE. */
int pl_sfc_on_event(pl_sfc_t *c, const char *json);

/* Sends media for elapsed wall time: call often (every few ms); it keeps 50 audio
 * packets/s and 30 video frames/s per layer. */
void pl_sfc_pump(pl_sfc_t *c);
/* Sends a REMB (the client's whole downlink estimate, bps) for the streams it receives,
 * as a browser on a narrow link would. */
void pl_sfc_send_remb(pl_sfc_t *c, uint64_t bps);

bool pl_sfc_connected(const pl_sfc_t *c);
bool pl_sfc_failed(const pl_sfc_t *c);
/* Stats about what this client receives from publisher (NULL if nothing yet). */
const pl_sfc_src_stats_t *pl_sfc_source(const pl_sfc_t *c, uint64_t publisher);
/* Totals: packets sent, keyframe requests (PLI/FIR) received, NACKs sent, events. */
typedef struct pl_sfc_totals {
    uint64_t sent_packets, sent_bytes, plis_received, nacks_sent, offers, answers, errors;
    uint64_t remb_bps;
    uint64_t rx_packets, rx_bytes, rx_gaps;     /* all received RTP (gaps: missing seqs) */
} pl_sfc_totals_t;
void pl_sfc_totals(const pl_sfc_t *c, pl_sfc_totals_t *out);

#endif
