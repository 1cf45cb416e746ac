/* rooms_group.c: group calls started from a chat group: room.join {group_id, ring?}
 * checks that the caller's account is a member of the group (chat's chat_members table,
 * one store round trip), places the device in the SFU room "g<group id>", and with
 * ring = true sends room.ring to every online device of the other members (through the
 * router, so members on other nodes hear it too).
 *
 * What it does not do: remember who was rung, ring timeouts or "missed" events, or
 * anything when chat is not built in (the frame then fails with "unavailable").
 *
 * Threading: the handler runs on a gateway thread and submits a store request; its
 * done callback runs on the store thread right after the read (reply target NULL) and
 * uses only thread-safe calls: the SFU API, pl_sig_pending_*, pl_router_send, minting. */
#include "signaling/rooms_int.h"
#include "signaling/pl_router.h"
#include "store/pl_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PL_SIG_HAVE_SFU
#include "relay/sfu/pl_sfu.h"
#endif

#define GROUP_MEMBERS_MAX 1024      /* members read for ringing; more are not rung */

typedef struct group_join {
    pl_store_req_t req;
    pl_rooms_t *r;
    pl_sig_pending_t *p;
    uint64_t group_id, account_id, device_id, conn_id;
    bool ring, member;
    char username[64];
    char display[PL_ROOMS_DISPLAY_MAX + 1];
    size_t n;
    uint64_t members[GROUP_MEMBERS_MAX];
} group_join_t;

void pl_rooms_group_room_id(uint64_t group_id, char out[PL_ROOMS_ID_MAX + 1])
{
    snprintf(out, PL_ROOMS_ID_MAX + 1, "g%" PRIu64, group_id);
}

#if defined(PL_SIG_HAVE_SFU) && defined(PL_HAVE_CHAT)
static int members_exec(pl_store_conn_t *conn, pl_store_req_t *req)
{
    group_join_t *g = PL_CONTAINER_OF(req, group_join_t, req);
    sqlite3_stmt *st = pl_store_prepare(conn,
        "SELECT account_id FROM chat_members WHERE group_id = ?1 ORDER BY account_id");
    if (!st)
        return PL_ESTATE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)g->group_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t a = (uint64_t)sqlite3_column_int64(st, 0);
        if (a == g->account_id)
            g->member = true;
        else if (g->n < GROUP_MEMBERS_MAX)
            g->members[g->n++] = a;
    }
    return rc == SQLITE_DONE ? 0 : pl_store_err(rc);
}

static void ring_members(group_join_t *g, const char *room)
{
    pl_router_t *rt = g->r->router;
    for (size_t i = 0; i < g->n; i++) {
        json_t *f = json_pack("{s:s, s:I, s:s, s:I, s:s, s:I}", "type", "room.ring",
                              "group_id", (json_int_t)g->group_id, "room", room,
                              "caller_id", (json_int_t)g->account_id,
                              "caller_username", g->username,
                              "caller_device_id", (json_int_t)g->device_id);
        pl_router_send(rt, &(pl_route_to_t){ .account_id = g->members[i] }, f);
    }
}

/* Store thread. */
static void members_done(pl_store_req_t *req)
{
    group_join_t *g = PL_CONTAINER_OF(req, group_join_t, req);
    pl_sfu_t *sfu = pl_sfu_running();
    char room[PL_ROOMS_ID_MAX + 1];
    pl_rooms_group_room_id(g->group_id, room);
    if (req->status < 0) {
        pl_sig_pending_error(g->r->gw, g->p, "internal", "storage error");
    } else if (!g->member) {
        pl_sig_pending_error(g->r->gw, g->p, "not_found", "no such group (or not a member)");
    } else if (!sfu) {
        pl_sig_pending_error(g->r->gw, g->p, "unavailable", "group calls are shutting down");
    } else {
        pl_sfu_join_opts_t o = { .display = g->display[0] ? g->display : g->username };
        int rc = pl_sfu_join(sfu, room, g->device_id, &o);
        /* The connection may have closed during the read: its on_close hook ran before
         * this join if the device directory no longer names it (it is removed before
         * the hooks run), so leave here; otherwise the hook is still to come. */
        if (rc == 0 && pl_sig_device_conn(g->r->gw, g->device_id) != g->conn_id)
            (void)pl_sfu_leave(sfu, g->device_id);
        if (rc == 0) {
            if (g->ring)
                ring_members(g, room);
            json_t *res = json_pack("{s:s, s:I, s:I}", "room", room, "group_id",
                                    (json_int_t)g->group_id, "participant",
                                    (json_int_t)g->device_id);
            json_object_set_new(res, "ice_servers", pl_rooms_ice_servers(g->r, g->account_id));
            pl_sig_pending_reply(g->r->gw, g->p, res);
        } else {
            pl_sig_pending_error(g->r->gw, g->p, pl_rooms_error_code(rc),
                                 pl_rooms_error_message(rc));
        }
    }
    free(g);
}

void pl_rooms_join_group(pl_sig_req_t *req, pl_rooms_t *r, uint64_t group_id)
{
    group_join_t *g = pl_xcalloc(1, sizeof(*g));
    const char *display = json_string_value(json_object_get(req->frame, "display"));
    g->req.exec = members_exec;
    g->req.done = members_done;
    g->req.reply = (pl_store_reply_t){ NULL, NULL };    /* done on the store thread */
    g->r = r;
    g->group_id = group_id;
    g->account_id = req->account_id;
    g->device_id = req->device_id;
    g->conn_id = req->conn_id;
    g->ring = json_is_true(json_object_get(req->frame, "ring"));
    snprintf(g->username, sizeof(g->username), "%s", req->username);
    snprintf(g->display, sizeof(g->display), "%s", display ? display : "");
    g->p = pl_sig_defer(req);
    pl_store_submit(r->store, &g->req);
}
#else
void pl_rooms_join_group(pl_sig_req_t *req, pl_rooms_t *r, uint64_t group_id)
{
    PL_UNUSED(r);
    PL_UNUSED(group_id);
    pl_sig_pending_error(req->gw, pl_sig_defer(req), "unavailable",
                         "group calls from chat groups need chat and the SFU");
}
#endif
