/* sfu_config.c: the [sfu] option table, the settings snapshot the media threads read,
 * and the parley_sfu_* metric registrations.
 *
 * What it does not: start anything (sfu_module.c) or re-read config on reload: every
 * [sfu] key is fixed for the life of the process (rooms keep their threads and ports).
 *
 * Threading: the table is immutable; pl_sfu_settings_load and pl_sfu_metrics_register
 * run on the main thread at start-up (validate uses the former). */
#include "relay/sfu/sfu_int.h"
#include "core/pl_net.h"

#include <stdio.h>
#include <string.h>

#define MS(x) ((int64_t)(x))

static const pl_opt_def_t sfu_defs[] = {
    {"sfu", "enabled", PL_OPT_BOOL, "false", 0, 0, NULL, 0,
     "Run the SFU for group calls (media threads with libnice agents, DTLS-SRTP)"},
    {"sfu", "media_threads", PL_OPT_INT, "0", 0, 64, NULL, 0,
     "Media loops (a GLib main context on its own thread each); 0 = one per CPU core"},
    {"sfu", "ice_addresses", PL_OPT_LIST, "127.0.0.1", 1, PL_SFU_MAX_ADDRS, NULL, 0,
     "Local IP addresses the SFU offers as ICE host candidates"},
    {"sfu", "ports", PL_OPT_STRING, "40000-49151", 3, 16, NULL, 0,
     "UDP port range lo-hi for ICE host candidates (one port per participant)"},
    {"sfu", "max_participants", PL_OPT_INT, "32", 2, 256, NULL, 0,
     "Participants per room; a join beyond gets the room_full error"},
    {"sfu", "max_rooms", PL_OPT_INT, "0", 0, 1000000, NULL, 0,
     "Rooms on this node; 0 = no limit"},
    {"sfu", "video_codecs", PL_OPT_LIST, "VP8,H264,VP9", 1, 3, NULL, 0,
     "Video codecs accepted from publishers, in preference order (VP8, H264, VP9)"},
    {"sfu", "publisher_max_bitrate", PL_OPT_INT, "2500000", 100000, 100000000, NULL, 0,
     "Bit/s a publisher may send (all its video layers), announced in REMB"},
    {"sfu", "nack_cache", PL_OPT_INT, "256", 0, 8192, NULL, 0,
     "Packets kept per video layer to answer NACKs (rounded up to a power of two; 0 = none)"},
    {"sfu", "pli_interval", PL_OPT_DURATION, "500ms", MS(50), MS(10000), NULL, 0,
     "Minimum time between keyframe requests (PLI) to one publisher layer"},
    {"sfu", "rtcp_interval", PL_OPT_DURATION, "1s", MS(100), MS(10000), NULL, 0,
     "Interval of receiver reports and REMB to publishers and sender reports to subscribers"},
    {"sfu", "speaker_interval", PL_OPT_DURATION, "300ms", MS(100), MS(5000), NULL, 0,
     "Window over which audio levels are averaged for active-speaker detection"},
    {"sfu", "speaker_threshold", PL_OPT_INT, "60", 0, 127, NULL, 0,
     "Average audio level (-dBov, RFC 6464) at or below which a participant is speaking"},
    {"sfu", "simulcast", PL_OPT_BOOL, "true", 0, 0, NULL, 0,
     "Accept simulcast (up to three rid layers) from publishers"},
    {"sfu", "bandwidth_adaptation", PL_OPT_BOOL, "true", 0, 0, NULL, 0,
     "Send a subscriber a lower layer when its REMB estimate is below the layer's bitrate"},
};

const pl_opt_table_t pl_sfu_options = {
    "SFU for group calls (relay/sfu): media threads, ICE addresses, limits, RTCP", sfu_defs,
    PL_ARRAY_LEN(sfu_defs)};

static int bad(pl_config_error_t *err, const char *key, const char *why)
{
    if (err)
        snprintf(err->msg, sizeof(err->msg), "[sfu] %s: %s", key, why);
    return PL_ECONFIG;
}

static int load_ports(const pl_config_t *cfg, pl_sfu_settings_t *s, pl_config_error_t *err)
{
    unsigned lo, hi;
    char tail;
    const char *v = pl_config_str(cfg, "sfu", "ports");
    if (sscanf(v, "%u-%u%c", &lo, &hi, &tail) != 2 || lo < 1024 || hi > 65535 || lo > hi)
        return bad(err, "ports", "expected lo-hi with 1024 <= lo <= hi <= 65535");
    s->port_min = (uint16_t)lo;
    s->port_max = (uint16_t)hi;
    return 0;
}

static int load_lists(const pl_config_t *cfg, pl_sfu_settings_t *s, pl_config_error_t *err)
{
    const char *const *items;
    size_t n = pl_config_list(cfg, "sfu", "ice_addresses", &items);
    for (size_t i = 0; i < n; i++) {
        pl_sockaddr_t a;
        if (pl_ipaddr_parse(items[i], &a) < 0 || strlen(items[i]) >= sizeof(s->addrs[0]))
            return bad(err, "ice_addresses", "not an IP address literal");
        g_strlcpy(s->addrs[s->n_addrs++], items[i], sizeof(s->addrs[0]));
    }
    n = pl_config_list(cfg, "sfu", "video_codecs", &items);
    for (size_t i = 0; i < n; i++) {
        pl_codec_t c = pl_codec_from_name(items[i]);
        if (c != PL_CODEC_VP8 && c != PL_CODEC_VP9 && c != PL_CODEC_H264)
            return bad(err, "video_codecs", "unknown codec (VP8, H264, VP9)");
        s->video_codecs[s->n_video_codecs++] = c;
    }
    return 0;
}

int pl_sfu_settings_load(const pl_config_t *cfg, pl_sfu_settings_t *s, pl_config_error_t *err)
{
    memset(s, 0, sizeof(*s));
    s->media_threads = (unsigned)pl_config_int(cfg, "sfu", "media_threads");
    if (s->media_threads == 0)
        s->media_threads = PL_MAX(1u, g_get_num_processors());
    s->max_participants = (unsigned)pl_config_int(cfg, "sfu", "max_participants");
    s->max_rooms = (unsigned)pl_config_int(cfg, "sfu", "max_rooms");
    s->publisher_max_bps = (uint64_t)pl_config_int(cfg, "sfu", "publisher_max_bitrate");
    unsigned cache = (unsigned)pl_config_int(cfg, "sfu", "nack_cache");
    s->nack_cache = 0;
    if (cache) {
        s->nack_cache = 1;
        while (s->nack_cache < cache)
            s->nack_cache <<= 1;
    }
    s->pli_interval_ms = (unsigned)pl_config_int(cfg, "sfu", "pli_interval");
    s->rtcp_interval_ms = (unsigned)pl_config_int(cfg, "sfu", "rtcp_interval");
    s->speaker_interval_ms = (unsigned)pl_config_int(cfg, "sfu", "speaker_interval");
    s->speaker_threshold_dbov = (uint8_t)pl_config_int(cfg, "sfu", "speaker_threshold");
    s->simulcast = pl_config_bool(cfg, "sfu", "simulcast");
    s->bwe = pl_config_bool(cfg, "sfu", "bandwidth_adaptation");
    int rc = load_ports(cfg, s, err);
    return rc < 0 ? rc : load_lists(cfg, s, err);
}

static pl_metric_id_t counter2(pl_metrics_t *reg, const char *name, const char *help,
                               const char *label)
{
    return pl_metrics_counter(reg, name, help, label);
}

void pl_sfu_metrics_register(pl_metrics_t *reg, pl_sfu_ids_t *ids)
{
    static const char *const kinds[2] = { "kind=\"audio\"", "kind=\"video\"" };
    static const char *const drops[SFU_DROP_COUNT] = {
        "reason=\"srtp\"", "reason=\"malformed\"", "reason=\"unknown_ssrc\"", "reason=\"send\"",
    };
    static const double loss_b[] = { 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5 };
    static const double rtt_b[] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1 };
    ids->rooms = pl_metrics_gauge(reg, "parley_sfu_rooms", "SFU rooms open", NULL);
    ids->participants = pl_metrics_gauge(reg, "parley_sfu_participants",
                                         "SFU participants in rooms", NULL);
    for (int s = 0; s < PL_PC_STATE_COUNT; s++) {
        char l[48];
        snprintf(l, sizeof(l), "state=\"%s\"", pl_pc_state_name((pl_pc_state_t)s));
        ids->pcs[s] = pl_metrics_gauge(reg, "parley_sfu_peer_connections",
                                       "SFU peer connections by state", l);
    }
    for (int k = 0; k < 2; k++) {
        ids->fwd_packets[k] = counter2(reg, "parley_sfu_forwarded_packets_total",
                                       "RTP packets sent to subscribers", kinds[k]);
        ids->fwd_bytes[k] = counter2(reg, "parley_sfu_forwarded_bytes_total",
                                     "RTP bytes (before SRTP) sent to subscribers", kinds[k]);
        ids->rx_packets[k] = counter2(reg, "parley_sfu_received_packets_total",
                                      "RTP packets received from publishers", kinds[k]);
        ids->rx_bytes[k] = counter2(reg, "parley_sfu_received_bytes_total",
                                    "RTP bytes received from publishers", kinds[k]);
    }
    ids->nacks_rx = counter2(reg, "parley_sfu_nacks_total", "NACKed packets", "dir=\"received\"");
    ids->nacks_tx = counter2(reg, "parley_sfu_nacks_total", "NACKed packets", "dir=\"sent\"");
    ids->retransmits = pl_metrics_counter(reg, "parley_sfu_retransmits_total",
                                          "Packets resent from the cache (RTX or plain)", NULL);
    ids->nack_misses = pl_metrics_counter(reg, "parley_sfu_nack_misses_total",
                                          "NACKed packets no longer in the cache", NULL);
    ids->plis_tx = counter2(reg, "parley_sfu_plis_total", "Keyframe requests", "dir=\"sent\"");
    ids->plis_rx = counter2(reg, "parley_sfu_plis_total", "Keyframe requests", "dir=\"received\"");
    ids->layer_switches = pl_metrics_counter(reg, "parley_sfu_layer_switches_total",
                                             "Simulcast layer switches toward subscribers", NULL);
    ids->ice_restarts = pl_metrics_counter(reg, "parley_sfu_ice_restarts_total",
        "ICE restarts (a client offer with new ICE credentials: a network change)", NULL);
    for (int d = 0; d < SFU_DROP_COUNT; d++)
        ids->drops[d] = counter2(reg, "parley_sfu_dropped_packets_total",
                                 "Packets dropped by the SFU", drops[d]);
    ids->errors = pl_metrics_counter(reg, "parley_sfu_errors_total",
                                     "sfu.error events sent to participants", NULL);
    ids->loss_hist = pl_metrics_histogram(reg, "parley_sfu_subscriber_loss_ratio",
                                          "Fraction lost per subscriber receiver report", NULL,
                                          loss_b, PL_ARRAY_LEN(loss_b));
    ids->rtt_hist = pl_metrics_histogram(reg, "parley_sfu_subscriber_rtt_seconds",
                                         "Round-trip time per subscriber receiver report", NULL,
                                         rtt_b, PL_ARRAY_LEN(rtt_b));
}
