/* rooms.c: the rooms part of the signaling module: group calls through parleyd's SFU
 * (relay/sfu, docs/SFU.md) driven by the room.* frames of parley.v1 (docs/PROTOCOL.md
 * "Rooms (group calls)"). Each frame maps 1:1 onto the SFU's C API; every SFU event
 * comes back to the participant's connection as a room.event push.
 *
 * The participant id is the device id (unique on the node, one live connection per
 * device, and small enough for JavaScript numbers, which conn ids are not). Events go to
 * the device's live connection. A participant leaves when its connection closes
 * (on_close hook) unless the device already has a newer connection; a device that
 * authenticates leaves whatever room its previous connection was in (on_auth hook), so
 * a replaced connection (4001) never leaves a ghost in the room nor blocks a rejoin.
 *
 * What it does not do: rooms tied to chat groups (no membership check, no ringing; room
 * ids are ad hoc: any client that knows the id may join), rooms across nodes (a room
 * lives on the node its participants connect to), or keep any per-room state: the SFU
 * holds it all.
 *
 * Threading: init/stop/destroy/reload on the main thread; the iceServers settings are
 * replaced on reload under a rwlock (gateway threads read them in room.join). Handlers and the close hook run on
 * gateway threads and call the SFU's thread-safe entry points. The sink runs on SFU
 * media threads and sends by conn id (pl_sig_send_text is callable from any thread);
 * it reads the gateway pointer under a read lock that stop takes for writing, so no
 * event can reach a gateway that is going away. */
#include "signaling/rooms_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PL_SIG_HAVE_SFU
#include "relay/sfu/pl_sfu.h"
#endif

/* The sink's view of the part: static so that an event already on its way on a media
 * thread never touches freed memory, whatever the SFU does with a replaced sink. */
static pthread_rwlock_t sink_lock = PTHREAD_RWLOCK_INITIALIZER;
static pl_sig_gateway_t *sink_gw;   /* under sink_lock; NULL = drop events */

/* {"type":"room.event","event":<json_event>} without re-parsing the SFU's JSON. */
void pl_rooms_sink_send(void *ctx, uint64_t participant_id, const char *json_event)
{
    PL_UNUSED(ctx);
    static const char head[] = "{\"type\":\"room.event\",\"event\":";
    size_t n = strlen(json_event), len = sizeof(head) - 1 + n + 1;
    char *text = malloc(len + 1);
    if (!text)
        return;
    memcpy(text, head, sizeof(head) - 1);
    memcpy(text + sizeof(head) - 1, json_event, n);
    text[len - 1] = '}';
    text[len] = '\0';
    pthread_rwlock_rdlock(&sink_lock);
    uint64_t conn = sink_gw ? pl_sig_device_conn(sink_gw, participant_id) : 0;
    if (conn)
        (void)pl_sig_send_text(sink_gw, conn, "room.event", text, len);
    pthread_rwlock_unlock(&sink_lock);
    free(text);
}

static void sink_attach(pl_sig_gateway_t *gw)
{
    pthread_rwlock_wrlock(&sink_lock);
    sink_gw = gw;
    pthread_rwlock_unlock(&sink_lock);
}

/* ---- the SFU, or its absence ----------------------------------------------------------- */

static void *rooms_sfu(void)
{
#ifdef PL_SIG_HAVE_SFU
    return pl_sfu_running();
#else
    return NULL;
#endif
}

static void leave_device(uint64_t device_id)
{
#ifdef PL_SIG_HAVE_SFU
    pl_sfu_t *sfu = pl_sfu_running();
    if (sfu && device_id)
        (void)pl_sfu_leave(sfu, device_id);    /* -ENOENT: was in no room */
#else
    PL_UNUSED(device_id);
#endif
}

/* A fresh connection has joined nothing yet: a participant of this device belongs to
 * its previous connection. Queued before any room.join of this connection. */
static void on_auth(const pl_sig_conn_info_t *c, void *arg)
{
    PL_UNUSED(arg);
    leave_device(c->device_id);
}

static void on_close(const pl_sig_conn_info_t *c, void *arg)
{
    pl_rooms_t *r = arg;
    uint64_t live = pl_sig_device_conn(r->gw, c->device_id);
    if (live == 0 || live == c->conn_id)
        leave_device(c->device_id);
}

static const pl_sig_hooks_t rooms_hooks = { .on_auth = on_auth, .on_close = on_close };

/* ---- iceServers (the same as 1:1 calls get: calls_ice.c) ------------------------------ */

json_t *pl_rooms_ice_servers(pl_rooms_t *r, uint64_t account_id)
{
    pthread_rwlock_rdlock(&r->ice_lock);
    json_t *a = r->ice ? pl_calls_ice_servers(r->ice, account_id) : json_array();
    pthread_rwlock_unlock(&r->ice_lock);
    return a;
}

/* [turn] auth_secret rotation or new [calls] URLs reach the next room.join. */
static void rooms_reload(void *state, const pl_config_t *next)
{
    pl_rooms_t *r = state;
    if (!r->attached)
        return;
    pl_calls_ice_t *fresh = pl_xmalloc(sizeof(*fresh)), *old;
    pl_calls_ice_init(fresh, next);
    pthread_rwlock_wrlock(&r->ice_lock);
    old = r->ice;
    r->ice = fresh;
    pthread_rwlock_unlock(&r->ice_lock);
    pl_calls_ice_deinit(old);
    free(old);
}

/* ---- life cycle -------------------------------------------------------------------------- */

static int rooms_init(const pl_sig_ctx_t *ctx, void **state)
{
    pl_rooms_t *r = pl_xcalloc(1, sizeof(*r));
    pthread_rwlock_init(&r->ice_lock, NULL);
    *state = r;
    r->gw = ctx->gw;
    r->store = ctx->store;
    r->router = ctx->router;
    if (!rooms_sfu()) {
        pl_log_info("rooms.disabled", "reason=%s", "sfu not running");
        return pl_sig_gateway_add_handlers(ctx->gw, pl_rooms_handlers, pl_rooms_n_handlers, r);
    }
    r->ice = pl_xmalloc(sizeof(*r->ice));
    pl_calls_ice_init(r->ice, ctx->config);
    sink_attach(ctx->gw);
#ifdef PL_SIG_HAVE_SFU
    pl_sfu_set_sink(pl_sfu_running(),
                    &(pl_sfu_sink_t){ .send = pl_rooms_sink_send, .ctx = NULL });
#endif
    r->attached = true;
    pl_sig_gateway_add_hooks(ctx->gw, &rooms_hooks, r);
    pl_sig_gateway_add_push_types(ctx->gw, pl_rooms_push_types, pl_rooms_n_push_types);
    return pl_sig_gateway_add_handlers(ctx->gw, pl_rooms_handlers, pl_rooms_n_handlers, r);
}

/* After the gateway stopped (every on_close hook ran, so every participant of ours
 * left): no more events to send. */
static void rooms_stop(void *state)
{
    pl_rooms_t *r = state;
    if (r->attached)
        sink_attach(NULL);
}

static void rooms_destroy(void *state)
{
    pl_rooms_t *r = state;
    if (r->ice) {
        pl_calls_ice_deinit(r->ice);
        free(r->ice);
    }
    pthread_rwlock_destroy(&r->ice_lock);
    free(r);
}

const pl_sig_part_t pl_sig_rooms_part = {
    .name = "rooms",
    .schema = NULL,
    .init = rooms_init,
    .stop = rooms_stop,
    .destroy = rooms_destroy,
    .reload = rooms_reload,
};
