/* rooms_ws.c: the room.* frames of parley.v1 (docs/PROTOCOL.md "Rooms (group calls)"):
 * field tables, the checks a table cannot express (room id charset, SDP type, quality,
 * media kind), and the call into the SFU with the connection's conn id as participant.
 * The SFU's immediate answer (queued, or -EINVAL/-ENOENT/-EEXIST/closed) becomes the
 * result or a coded error frame (the participant id is the device id, rooms.c); what happens later arrives as room.event pushes.
 *
 * What it does not do: keep state (the SFU has it), or talk to other nodes.
 *
 * Threading: handlers run on the connection's gateway thread; the SFU entry points are
 * thread-safe and return at once. */
#include "signaling/rooms_int.h"

#include <errno.h>
#include <string.h>

#ifdef PL_SIG_HAVE_SFU
#include "relay/sfu/pl_sfu.h"
#endif

int pl_rooms_parse_quality(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "low") == 0)
        return 0;
    if (strcmp(s, "medium") == 0)
        return 1;
    if (strcmp(s, "high") == 0)
        return 2;
    return -1;
}

/* Room ids as the SFU takes them: 1..64 bytes of [A-Za-z0-9._:-] (docs/SFU.md). */
bool pl_rooms_room_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == ':' ||
                  ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

static const char *str_field(const pl_sig_req_t *req, const char *name)
{
    return json_string_value(json_object_get(req->frame, name));
}

/* An error frame with one of the rooms' own codes: pl_sig_reply_error knows only the
 * gateway's codes (others become "other"), a deferred error carries any code. These
 * are not the client's abuse (docs/PROTOCOL.md "Errors"). */
static void room_error(pl_sig_req_t *req, const char *code, const char *message)
{
    pl_sig_pending_error(req->gw, pl_sig_defer(req), code, message);
}

const char *pl_rooms_error_code(int rc)
{
    switch (rc) {
    case -ENOENT: return "not_joined";
    case -EEXIST: return "already_joined";
    case -EINVAL: return "bad_field";
    default: return "unavailable";
    }
}

const char *pl_rooms_error_message(int rc)
{
    switch (rc) {
    case -ENOENT: return "this device is in no room";
    case -EEXIST: return "this device is already in a room";
    case -EINVAL: return "the SFU refused an argument";
    default: return "group calls are shutting down";
    }
}

/* Replies to a queued SFU call, or maps its error code to an error frame. */
static void finish(pl_sig_req_t *req, int rc, json_t *result)
{
    if (rc == 0) {
        pl_sig_reply(req, result);
        return;
    }
    json_decref(result);
    if (rc == -EINVAL)
        pl_sig_reply_error(req, "bad_field", pl_rooms_error_message(rc));
    else
        room_error(req, pl_rooms_error_code(rc), pl_rooms_error_message(rc));
}

#ifdef PL_SIG_HAVE_SFU
/* The running SFU, or NULL after answering "unavailable". */
static pl_sfu_t *sfu_or_error(pl_sig_req_t *req)
{
    pl_sfu_t *sfu = pl_sfu_running();
    if (!sfu)
        room_error(req, "unavailable", "group calls are not enabled on this server");
    return sfu;
}

static void h_join(pl_sig_req_t *req, void *arg)
{
    pl_rooms_t *r = arg;
    const char *room = str_field(req, "room"), *display = str_field(req, "display");
    json_t *group = json_object_get(req->frame, "group_id");
    if (!room == !group) {
        pl_sig_reply_error(req, "bad_field", "exactly one of \"room\" and \"group_id\"");
        return;
    }
    if (group) {
        if (sfu_or_error(req))
            pl_rooms_join_group(req, r, (uint64_t)json_integer_value(group));
        return;
    }
    if (!pl_rooms_room_id_ok(room)) {
        pl_sig_reply_error(req, "bad_field",
                           "\"room\": 1-64 characters of A-Z a-z 0-9 . _ : -");
        return;
    }
    pl_sfu_t *sfu = sfu_or_error(req);
    if (!sfu)
        return;
    pl_sfu_join_opts_t o = { .display = display ? display : req->username };
    int rc = pl_sfu_join(sfu, room, req->device_id, &o);
    json_t *res = NULL;
    if (rc == 0) {
        res = json_pack("{s:s, s:I}", "room", room, "participant", (json_int_t)req->device_id);
        json_object_set_new(res, "ice_servers", pl_rooms_ice_servers(r, req->account_id));
    }
    finish(req, rc, res);
}

static void h_leave(pl_sig_req_t *req, void *arg)
{
    PL_UNUSED(arg);
    pl_sfu_t *sfu = sfu_or_error(req);
    if (sfu)
        finish(req, pl_sfu_leave(sfu, req->device_id), NULL);
}

static void h_sdp(pl_sig_req_t *req, void *arg)
{
    PL_UNUSED(arg);
    const char *type = str_field(req, "sdp_type"), *sdp = str_field(req, "sdp");
    bool offer = strcmp(type, "offer") == 0;
    if (!offer && strcmp(type, "answer") != 0) {
        pl_sig_reply_error(req, "bad_field", "\"sdp_type\": \"offer\" or \"answer\"");
        return;
    }
    pl_sfu_t *sfu = sfu_or_error(req);
    if (!sfu)
        return;
    int rc = offer ? pl_sfu_offer(sfu, req->device_id, sdp) : pl_sfu_answer(sfu, req->device_id, sdp);
    finish(req, rc, NULL);
}

static void h_ice(pl_sig_req_t *req, void *arg)
{
    PL_UNUSED(arg);
    const char *cand = str_field(req, "candidate"), *mid = str_field(req, "mid");
    pl_sfu_t *sfu = sfu_or_error(req);
    if (sfu)
        finish(req, pl_sfu_ice_candidate(sfu, req->device_id, cand, mid ? mid : ""), NULL);
}

static void h_quality(pl_sig_req_t *req, void *arg)
{
    PL_UNUSED(arg);
    int q = pl_rooms_parse_quality(str_field(req, "quality"));
    json_t *pub = json_object_get(req->frame, "publisher");
    if (q < 0) {
        pl_sig_reply_error(req, "bad_field", "\"quality\": \"low\", \"medium\" or \"high\"");
        return;
    }
    pl_sfu_t *sfu = sfu_or_error(req);
    if (!sfu)
        return;
    uint64_t pid = pub ? (uint64_t)json_integer_value(pub) : 0;
    finish(req, pl_sfu_set_quality(sfu, req->device_id, pid, (pl_sfu_quality_t)q), NULL);
}

static void h_mute(pl_sig_req_t *req, void *arg)
{
    PL_UNUSED(arg);
    const char *kind = str_field(req, "kind");
    if (strcmp(kind, "audio") != 0 && strcmp(kind, "video") != 0) {
        pl_sig_reply_error(req, "bad_field", "\"kind\": \"audio\" or \"video\"");
        return;
    }
    bool muted = json_is_true(json_object_get(req->frame, "muted"));
    pl_sfu_t *sfu = sfu_or_error(req);
    if (sfu)
        finish(req, pl_sfu_mute(sfu, req->device_id, kind, muted), NULL);
}
#else
static void h_none(pl_sig_req_t *req, void *arg)
{
    PL_UNUSED(arg);
    finish(req, PL_ECLOSED, NULL);
}
#define h_join h_none
#define h_leave h_none
#define h_sdp h_none
#define h_ice h_none
#define h_quality h_none
#define h_mute h_none
#endif

static const pl_sig_field_t join_fields[] = {
    { "room", PL_SIG_T_STRING, false, 1, PL_ROOMS_ID_MAX },
    { "group_id", PL_SIG_T_ID, false, 0, 0 },
    { "ring", PL_SIG_T_BOOL, false, 0, 0 },
    { "display", PL_SIG_T_STRING, false, 0, PL_ROOMS_DISPLAY_MAX },
};
static const pl_sig_field_t sdp_fields[] = {
    { "sdp_type", PL_SIG_T_STRING, true, 1, 16 },
    { "sdp", PL_SIG_T_STRING, true, 1, 1 << 20 },
};
static const pl_sig_field_t ice_fields[] = {
    { "candidate", PL_SIG_T_STRING, true, 0, 4096 },
    { "mid", PL_SIG_T_STRING, false, 0, 256 },
};
static const pl_sig_field_t quality_fields[] = {
    { "quality", PL_SIG_T_STRING, true, 1, 16 },
    { "publisher", PL_SIG_T_ID, false, 0, 0 },
};
static const pl_sig_field_t mute_fields[] = {
    { "kind", PL_SIG_T_STRING, true, 1, 16 },
    { "muted", PL_SIG_T_BOOL, true, 0, 0 },
};

#define ROOM_FRAME(type, fn, f) { type, fn, true, f, PL_ARRAY_LEN(f) }
const pl_sig_handler_t pl_rooms_handlers[] = {
    ROOM_FRAME("room.join", h_join, join_fields),
    { "room.leave", h_leave, true, NULL, 0 },
    ROOM_FRAME("room.sdp", h_sdp, sdp_fields),
    ROOM_FRAME("room.ice", h_ice, ice_fields),
    ROOM_FRAME("room.quality", h_quality, quality_fields),
    ROOM_FRAME("room.mute", h_mute, mute_fields),
};
const size_t pl_rooms_n_handlers = PL_ARRAY_LEN(pl_rooms_handlers);

const char *const pl_rooms_push_types[] = { "room.event", "room.ring" };
const size_t pl_rooms_n_push_types = PL_ARRAY_LEN(pl_rooms_push_types);
