/* sfu_int.h: the SFU's private types shared by its files (not included by any other
 * module). See pl_sfu.h and docs/SFU.md for the design.
 *
 * Ownership (all on one media thread unless marked):
 *   pl_sfu_t            main thread; immutable after create except the directory
 *                       (dir_lock, a leaf lock) and atomics
 *   pl_sfu_loop_t       one per media thread; owns its rooms and participants
 *   sfu_room_t          owns its participants (parts) and their published tracks
 *   sfu_part_t          owns its pc, its m-lines and the downtracks it receives
 *   sfu_track_t         owned by the room, published by one participant; lists the
 *                       downtracks fed from it (borrowed pointers, unlinked on free)
 *   sfu_down_t          owned by the subscriber; bound to one subscribe m-line
 * Cross-links are plain pointers because every object of a room lives on the same
 * thread and every free unlinks its partners first. */
#ifndef PL_SFU_INT_H
#define PL_SFU_INT_H

#include "relay/sfu/pl_sfu.h"
#include "relay/sfu/pl_rtp.h"
#include "relay/sfu/sfu_pc.h"
#include "relay/sfu/sfu_sdp.h"
#include "core/pl_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <glib.h>

#define PL_SFU_MAX_ADDRS 8
#define PL_SFU_MAX_LAYERS 3
#define PL_SFU_SENT_MAP 512         /* per downtrack: out seq -> source packet */
#define PL_SFU_CACHE_SLOT 1500      /* bytes per cached packet */
#define PL_SFU_MAX_MLINES 256       /* per participant, all kinds */

/* ---- settings (immutable snapshot of [sfu]) -------------------------------------- */

typedef struct pl_sfu_settings {
    unsigned media_threads;
    size_t n_addrs;
    char addrs[PL_SFU_MAX_ADDRS][64];
    uint16_t port_min, port_max;
    unsigned max_participants, max_rooms;
    size_t n_video_codecs;
    pl_codec_t video_codecs[3];
    uint64_t publisher_max_bps;
    unsigned nack_cache;            /* power of two */
    unsigned pli_interval_ms, rtcp_interval_ms, speaker_interval_ms;
    uint8_t speaker_threshold_dbov;
    bool simulcast, bwe;
} pl_sfu_settings_t;

extern const pl_opt_table_t pl_sfu_options;
int pl_sfu_settings_load(const pl_config_t *cfg, pl_sfu_settings_t *out,
                         pl_config_error_t *err);

/* ---- metrics ------------------------------------------------------------------------ */

enum { SFU_DROP_SRTP, SFU_DROP_PARSE, SFU_DROP_UNKNOWN, SFU_DROP_SEND, SFU_DROP_COUNT };

typedef struct pl_sfu_ids {
    pl_metric_id_t rooms, participants, pcs[PL_PC_STATE_COUNT];
    pl_metric_id_t fwd_packets[2], fwd_bytes[2], rx_packets[2], rx_bytes[2];
    pl_metric_id_t nacks_rx, nacks_tx, retransmits, nack_misses;
    pl_metric_id_t plis_tx, plis_rx, layer_switches, ice_restarts, drops[SFU_DROP_COUNT];
    pl_metric_id_t errors, loss_hist, rtt_hist;
} pl_sfu_ids_t;

void pl_sfu_metrics_register(pl_metrics_t *reg, pl_sfu_ids_t *ids);

/* ---- objects ----------------------------------------------------------------------- */

typedef struct pl_sfu_loop pl_sfu_loop_t;
typedef struct sfu_room sfu_room_t;
typedef struct sfu_part sfu_part_t;
typedef struct sfu_track sfu_track_t;
typedef struct sfu_down sfu_down_t;

typedef struct sfu_dir_entry {
    unsigned loop;
    uint32_t gen;
} sfu_dir_entry_t;

struct pl_sfu {
    pl_config_t *cfg;
    pl_sfu_settings_t set;
    pl_metrics_t *metrics;
    bool own_metrics;
    pl_sfu_ids_t ids;
    SSL_CTX *ssl_ctx;
    char fingerprint[128];          /* "AB:CD:..." */
    char fp_attr[160];              /* "sha-256 AB:CD:..." */
    unsigned n_loops;
    pl_sfu_loop_t *loops;
    pthread_mutex_t dir_lock;       /* leaf: guards dir and next_gen */
    GHashTable *dir;                /* participant id -> sfu_dir_entry_t */
    uint32_t next_gen;
    atomic_bool draining;
};

struct pl_sfu_loop {
    pl_sfu_t *sfu;
    unsigned index;
    GMainContext *ctx;
    GMainLoop *loop;
    GThread *thread;
    pl_metrics_shard_t *shard;
    pl_sfu_sink_t sink;
    GHashTable *rooms;              /* room id -> sfu_room_t */
    GHashTable *parts;              /* participant id -> sfu_part_t */
    GSource *tick;
    GSource *mailbox;               /* dispatches the messages queued in inbox */
    pthread_mutex_t inbox_lock;     /* leaf: guards inbox */
    GQueue inbox;                   /* sfu_msg_t posted by other threads */
    _Atomic uint64_t n_rooms, n_parts, n_connected;
    pthread_mutex_t stats_lock;     /* leaf: guards stats_json */
    char *stats_json;
    uint64_t next_stats_ms;
    uint8_t out[PL_PC_BUF];         /* scratch for one outgoing packet */
};

typedef struct sfu_cache {
    unsigned n;                     /* slots, power of two; 0 = no cache */
    uint16_t *seq;
    uint16_t *len;                  /* 0 = empty */
    uint8_t *data;
} sfu_cache_t;

typedef struct sfu_layer {
    char rid[PL_SDP_NAME_MAX];
    uint32_t ssrc;
    bool bound;
    pl_rtp_rx_stats_t rx;
    uint64_t window_bytes, bitrate_bps, last_pkt_ms, last_pli_ms;
    uint16_t highest_seq;
    bool have_seq;
    uint64_t sr_ntp, sr_arrival_us;
    uint32_t sr_rtp;
    sfu_cache_t cache;
} sfu_layer_t;

struct sfu_track {
    uint32_t id;
    sfu_part_t *pub;
    char mid[PL_SDP_NAME_MAX];      /* the publisher's m-line */
    pl_media_kind_t kind;
    pl_sdp_codec_t codec;           /* as the publisher sends it */
    uint8_t ext_id[PL_EXT_KIND_COUNT];
    size_t n_layers;                /* lowest quality first */
    sfu_layer_t layers[PL_SFU_MAX_LAYERS];
    bool muted;
    GPtrArray *downs;               /* sfu_down_t*, borrowed */
    uint32_t loud_sum, loud_n;      /* audio-level window */
};

typedef struct sfu_sent {          /* what an output sequence number carried */
    uint16_t out_seq, in_seq;
    uint32_t out_ts;
    uint8_t layer;
    bool valid;
} sfu_sent_t;

struct sfu_down {
    sfu_part_t *sub;
    sfu_track_t *track;
    struct sfu_mline *ml;
    uint32_t ssrc, rtx_ssrc;
    uint8_t pt, rtx_pt;
    uint8_t ext_id[PL_EXT_KIND_COUNT];
    bool active;                    /* the subscriber's answer accepted the m-line */
    int cur_layer, target_layer;
    pl_sfu_quality_t want;
    pl_rtp_munger_t mung;
    uint16_t rtx_seq;
    sfu_sent_t sent[PL_SFU_SENT_MAP];
    uint64_t packets, bytes;
    uint32_t sr_mid;                /* middle 32 bits of the NTP time in our last SR */
    uint64_t sr_sent_us;
    int bwe_cap;                    /* highest layer the bandwidth allows, -1: none */
    uint64_t bwe_cap_until_ms;
    uint8_t fraction_lost;
    uint32_t jitter;
    int64_t rtt_us;
};

typedef enum sfu_role { ML_REJECTED = 0, ML_PUBLISH, ML_SUBSCRIBE, ML_UNUSED } sfu_role_t;

typedef struct sfu_mline {
    sfu_role_t role;
    pl_media_kind_t kind;
    char media[16], proto[PL_SDP_NAME_MAX], fmt0[PL_SDP_NAME_MAX], mid[PL_SDP_NAME_MAX];
    bool has_codec;
    pl_sdp_codec_t codec;
    size_t n_exts;
    pl_sdp_ext_t exts[8];
    size_t n_rids;
    char rids[PL_SFU_MAX_LAYERS][PL_SDP_NAME_MAX];
    sfu_track_t *track;             /* ML_PUBLISH */
    sfu_down_t *down;               /* ML_SUBSCRIBE; NULL once its track is gone */
} sfu_mline_t;

typedef struct sfu_quality_pref {
    uint64_t publisher;
    pl_sfu_quality_t quality;
} sfu_quality_pref_t;

struct sfu_part {
    uint64_t id;
    uint32_t gen;
    char display[PL_SFU_DISPLAY_MAX + 1];
    sfu_room_t *room;
    pl_sfu_loop_t *ml;
    pl_pc_t *pc;
    pl_pc_state_t pc_state;
    bool offer_pending, need_offer, negotiated;
    bool pc_dtls_client;            /* the SFU is the DTLS client on this pc */
    bool pc_role_fixed;             /* pc_dtls_client set by the first negotiation */
    uint64_t sess_id, sess_version;
    GPtrArray *mlines;              /* sfu_mline_t*, owned; never shrinks */
    unsigned next_mid;
    pl_sdp_codec_t client_codecs[2][PL_SDP_MAX_CODECS];
    size_t n_client_codecs[2];
    pl_sdp_ext_t client_exts[2][PL_SDP_MAX_EXTS];
    size_t n_client_exts[2];
    uint32_t rtcp_ssrc;
    pl_sfu_quality_t default_quality;
    GArray *prefs;                  /* sfu_quality_pref_t */
    uint64_t remb_bps, remb_ms;
    uint64_t next_rtcp_ms;
};

struct sfu_room {
    pl_sfu_loop_t *ml;
    char id[PL_SFU_ROOM_ID_MAX + 1];
    GPtrArray *parts;               /* sfu_part_t*, owned, join order */
    GPtrArray *tracks;              /* sfu_track_t*, owned */
    uint32_t next_track_id;
    uint64_t speaker, speaker_candidate;
    uint64_t next_speaker_ms;
};

/* ---- functions across files ---------------------------------------------------------- */

/* sfu_events.c: JSON events through the loop's sink. */
void sfu_emit(pl_sfu_loop_t *ml, uint64_t to, const char *json);
void sfu_emit_error(pl_sfu_loop_t *ml, uint64_t to, const char *code, const char *msg);
void sfu_emit_sdp(sfu_part_t *p, const char *type, const char *sdp);
void sfu_emit_joined(sfu_part_t *p);
void sfu_emit_peer(sfu_part_t *to, const char *type, const sfu_part_t *who);
/* The participant's pc restarted ICE on a client offer (counted, logged). */
void sfu_ice_restarted(sfu_part_t *p);
void sfu_emit_state(sfu_part_t *p, pl_pc_state_t st, const char *reason);
void sfu_emit_speaker(sfu_room_t *r);
void sfu_emit_mute(sfu_part_t *to, uint64_t who, const char *kind, bool muted);
void sfu_loop_stats_json(pl_sfu_loop_t *ml, uint64_t now_ms);

/* sfu_room.c */
void sfu_room_join(pl_sfu_loop_t *ml, const char *room_id, uint64_t pid, uint32_t gen,
                   const char *display);
void sfu_part_leave(sfu_part_t *p, bool notify);
sfu_part_t *sfu_part_find(pl_sfu_loop_t *ml, uint64_t pid);
sfu_track_t *sfu_track_create(sfu_part_t *pub, sfu_mline_t *m);
void sfu_room_tracks_changed(sfu_room_t *r, const sfu_part_t *except);
void sfu_part_mute(sfu_part_t *p, const char *kind, bool muted);
void sfu_part_set_quality(sfu_part_t *p, uint64_t publisher, pl_sfu_quality_t q);
void sfu_room_tick(sfu_room_t *r, uint64_t now_ms);
void sfu_down_free(sfu_down_t *d);
/* Moves the participant's pc-state gauge (call on every pc state change). */
void sfu_part_pc_state(sfu_part_t *p, pl_pc_state_t st);
pl_sfu_quality_t sfu_part_quality_for(const sfu_part_t *p, uint64_t publisher);

/* sfu_api.c: drops the directory entry of pid if it still has generation gen. */
void sfu_dir_remove(pl_sfu_t *sfu, uint64_t pid, uint32_t gen);

/* sfu_nego.c */
void sfu_nego_offer(sfu_part_t *p, const char *sdp);
void sfu_nego_answer(sfu_part_t *p, const char *sdp);
void sfu_nego_candidate(sfu_part_t *p, const char *cand);
void sfu_nego_maybe_offer(sfu_part_t *p);

/* sfu_fwd.c: media path */
void sfu_on_rtp(void *arg, uint8_t *pkt, size_t len, size_t cap);
void sfu_on_rtcp(void *arg, uint8_t *pkt, size_t len, size_t cap);
void sfu_on_pc_state(void *arg, pl_pc_state_t st, const char *reason);
void sfu_down_select(sfu_down_t *d, uint64_t now_ms);
void sfu_request_keyframe(sfu_track_t *t, int layer, uint64_t now_ms, bool force);
void sfu_part_rtcp_tick(sfu_part_t *p, uint64_t now_ms);
int sfu_cache_init(sfu_cache_t *c, unsigned n);
void sfu_cache_free(sfu_cache_t *c);

static inline uint64_t sfu_now_ms(void)
{
    return (uint64_t)g_get_monotonic_time() / 1000u;
}

#endif
