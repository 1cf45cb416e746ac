/* rooms_int.h: the rooms part (group calls through the SFU, docs/PROTOCOL.md "Rooms
 * (group calls)"):
 *   rooms.c     the part: life cycle, the SFU event sink, leaving on connection close
 *   rooms_ws.c  the room.* frame handlers
 *   rooms_group.c  room.join {group_id}: chat group membership, ringing the members
 *
 * Threading: see each file. pl_rooms_t is written on the main thread in init and only
 * read afterwards (gateway threads), except ice, replaced on reload under ice_lock. */
#ifndef PL_SIG_ROOMS_INT_H
#define PL_SIG_ROOMS_INT_H

#include "signaling/calls_int.h"    /* pl_calls_ice_t: the same iceServers as 1:1 calls */

#include <pthread.h>

#define PL_ROOMS_ID_MAX 64
#define PL_ROOMS_DISPLAY_MAX 64

typedef struct pl_rooms {
    pl_sig_gateway_t *gw;
    pl_store_t *store;
    struct pl_router *router;
    pthread_rwlock_t ice_lock;      /* readers: gateway threads minting; writer: reload */
    pl_calls_ice_t *ice;            /* under ice_lock; NULL when the SFU is not running */
    bool attached;                  /* the sink points at gw */
} pl_rooms_t;

/* The iceServers for a participant of account_id (an empty array without the SFU).
 * Owned result. Any thread. */
json_t *pl_rooms_ice_servers(pl_rooms_t *r, uint64_t account_id);

/* rooms.c: the part for signaling/module.c's list. */
extern const pl_sig_part_t pl_sig_rooms_part;

/* The SFU sink: wraps json_event as {"type":"room.event","event":...} and sends it to
 * connection participant_id. Any thread; drops the event when the part is stopped. */
void pl_rooms_sink_send(void *ctx, uint64_t participant_id, const char *json_event);

/* rooms_ws.c */
extern const pl_sig_handler_t pl_rooms_handlers[];
extern const size_t pl_rooms_n_handlers;
extern const char *const pl_rooms_push_types[];
extern const size_t pl_rooms_n_push_types;

/* The error code and message for an SFU entry point's failure (-ENOENT not_joined,
 * -EEXIST already_joined, -EINVAL bad_field, else unavailable). */
const char *pl_rooms_error_code(int rc);
const char *pl_rooms_error_message(int rc);

/* rooms_group.c: room.join with group_id (validated by the caller): replies later. */
void pl_rooms_join_group(pl_sig_req_t *req, pl_rooms_t *r, uint64_t group_id);
/* "g<group id>". Pure. */
void pl_rooms_group_room_id(uint64_t group_id, char out[PL_ROOMS_ID_MAX + 1]);

/* "low" / "medium" / "high" -> 0 / 1 / 2 (pl_sfu_quality_t); -1 for anything else. */
int pl_rooms_parse_quality(const char *s);
/* A room id the SFU takes: 1..64 bytes of [A-Za-z0-9._:-]. NULL is not. Pure. */
bool pl_rooms_room_id_ok(const char *s);

#endif
