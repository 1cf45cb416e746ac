/* pl_sfu.h: parley's selective forwarding unit for group calls: the module parleyd
 * runs when [sfu] enabled = true, and the C API the signaling module drives it with.
 *
 * Model (details in docs/SFU.md):
 * - A room holds up to sfu.max_participants participants. Each participant has ONE
 *   peer connection (ICE via libnice, DTLS-SRTP, BUNDLE, rtcp-mux) that carries what it
 *   publishes and everything it receives from the others.
 * - Negotiation: the client offers first, once, with the tracks it publishes (sendonly
 *   or sendrecv m-lines, simulcast by rid); the SFU answers. From then on the SFU is the
 *   offerer: whenever the set of tracks a participant should receive changes (someone
 *   joins, leaves or publishes), the SFU sends that participant a new offer with one
 *   sendonly m-line per remote track and the client answers. At most one SFU offer is
 *   outstanding per participant; changes meanwhile are folded into the next one. A
 *   client offer while an SFU offer is outstanding is refused ("glare": the SFU is the
 *   impolite peer, the client rolls back and answers). A later client offer in stable
 *   state is accepted (it may add publish m-lines).
 * - Threads: sfu.media_threads media loops, each a GMainContext on its own thread. A
 *   room, its participants, their libnice agents, DTLS and SRTP state live on the loop
 *   chosen by hashing the room id. The functions below may be called from any thread:
 *   they copy their arguments into a message and post it to that loop. Nothing crosses
 *   threads by pointer to an object that can die; participants are named by id.
 * - Results come back as JSON events through the sink, called on the media thread
 *   (the signaling side posts them to its own thread). Events are listed in
 *   docs/SFU.md ("Events"); each names its "type" ("sfu.answer", "sfu.offer",
 *   "sfu.joined", "sfu.participant_joined", "sfu.participant_left",
 *   "sfu.active_speaker", "sfu.mute", "sfu.state", "sfu.error").
 *
 * Errors: the entry points return 0 when the request was queued (its outcome arrives
 * as events), or a negative code for what can be known at once: -EINVAL (bad
 * argument), -ENOENT (participant not joined), -EEXIST (participant already joined),
 * PL_ECLOSED (the SFU is draining or stopped). A bad SDP or failed DTLS handshake is an
 * "sfu.error" event to that participant alone; the room goes on. */
#ifndef PL_SFU_H
#define PL_SFU_H

#include "core/pl_module.h"

/* The module: [sfu] options, validate, start/drain/stop, ready, stats. While it runs,
 * pl_sfu_running() returns its instance. */
extern const pl_module_t pl_sfu_module;

typedef struct pl_sfu pl_sfu_t;

/* Where events go. send is called on a media thread with a NUL-terminated JSON object
 * that is borrowed for the call; it must not block and must not call back into the SFU
 * synchronously (posting is fine). */
typedef struct pl_sfu_sink {
    void (*send)(void *ctx, uint64_t participant_id, const char *json_event);
    void *ctx;
} pl_sfu_sink_t;

/* Creates an SFU from the [sfu] keys of cfg (a reference is taken): generates the
 * DTLS certificate, registers parley_sfu_* metrics in metrics (may be NULL: then a
 * private registry), starts the media threads. sink may be NULL (events dropped until
 * pl_sfu_set_sink). Returns 0 and an owned *out, PL_ECONFIG, PL_ECRYPTO or -errno.
 * Main thread (start-up). */
int pl_sfu_create(const pl_config_t *cfg, pl_metrics_t *metrics, const pl_sfu_sink_t *sink,
                  pl_sfu_t **out);
/* Stops the media threads (every participant is dropped without events) and frees the
 * SFU. No entry point may be running or called afterwards. Main thread. */
void pl_sfu_destroy(pl_sfu_t *sfu);
/* Replaces the sink (copied; posted to each media loop, so events produced after this
 * returns and the loops have run go to the new sink). Any thread. */
void pl_sfu_set_sink(pl_sfu_t *sfu, const pl_sfu_sink_t *sink);

/* The instance the module runs, or NULL when it is not running. Valid from the module's
 * start to its stop: modules started after the SFU (signaling) may keep it until their
 * own stop hook returns. Any thread. */
pl_sfu_t *pl_sfu_running(void);

/* Room ids: 1..64 bytes of [A-Za-z0-9._:-]. */
#define PL_SFU_ROOM_ID_MAX 64
#define PL_SFU_DISPLAY_MAX 64

typedef struct pl_sfu_join_opts {
    const char *display;        /* shown to the others in events; NULL = none; copied */
} pl_sfu_join_opts_t;

/* Places participant_id (non-zero, unique across the node) in room_id, creating the
 * room. Events: "sfu.joined" to it (with the others), "sfu.participant_joined" to the
 * others; "sfu.error" code "room_full" when the room is at sfu.max_participants
 * (the participant is then not joined). opts may be NULL. */
int pl_sfu_join(pl_sfu_t *sfu, const char *room_id, uint64_t participant_id,
                const pl_sfu_join_opts_t *opts);
/* Removes the participant: its peer connection closes, the others get
 * "sfu.participant_left" and a new offer without its tracks. An empty room is freed. */
int pl_sfu_leave(pl_sfu_t *sfu, uint64_t participant_id);

/* The client's offer (sdp copied). Event: "sfu.answer" or "sfu.error" (bad_sdp,
 * unsupported, glare). */
int pl_sfu_offer(pl_sfu_t *sfu, uint64_t participant_id, const char *sdp);
/* The client's answer to the SFU's last "sfu.offer" (sdp copied). Event on failure:
 * "sfu.error" (bad_sdp, no_offer). */
int pl_sfu_answer(pl_sfu_t *sfu, uint64_t participant_id, const char *sdp);
/* A trickled remote candidate: the candidate-attribute as in RTCIceCandidate.candidate
 * ("candidate:..."; "a=candidate:..." accepted too), or "" / NULL for
 * end-of-candidates. mid is informational (one BUNDLE transport). */
int pl_sfu_ice_candidate(pl_sfu_t *sfu, uint64_t participant_id, const char *candidate,
                         const char *mid);

/* Simulcast quality a subscriber asks for: the SFU sends the highest layer at or below
 * it that the publisher sends and the subscriber's bandwidth estimate allows. */
typedef enum pl_sfu_quality {
    PL_SFU_QUALITY_LOW = 0, PL_SFU_QUALITY_MEDIUM = 1, PL_SFU_QUALITY_HIGH = 2
} pl_sfu_quality_t;

/* Sets the quality participant_id receives from publisher_id's video (0 = from every
 * publisher, now and later). Switches happen on the next keyframe of the new layer (a
 * PLI is sent to the publisher, rate-limited). */
int pl_sfu_set_quality(pl_sfu_t *sfu, uint64_t participant_id, uint64_t publisher_id,
                       pl_sfu_quality_t quality);
/* The participant muted or unmuted what it publishes of kind ("audio" or "video"): the
 * SFU stops or resumes forwarding it and tells the others ("sfu.mute"). */
int pl_sfu_mute(pl_sfu_t *sfu, uint64_t participant_id, const char *kind, bool muted);

/* Counts for tests and /stats (summed over media threads, possibly a moment old). */
typedef struct pl_sfu_counts {
    uint64_t rooms, participants, connected;
} pl_sfu_counts_t;
void pl_sfu_get_counts(pl_sfu_t *sfu, pl_sfu_counts_t *out);

/* The SFU's DTLS certificate fingerprint ("sha-256 AB:CD:..."), borrowed for the SFU's
 * lifetime. For tests and logs. */
const char *pl_sfu_fingerprint(const pl_sfu_t *sfu);

#endif
