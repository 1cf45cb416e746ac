/* sfu_events.c: the JSON events the SFU sends participants through the sink (the list
 * is in docs/SFU.md "Events"), and the per-loop /stats snapshot.
 *
 * What it does not: deliver anything itself; the sink (signaling) does, on its own
 * thread. JSON is written with pl_buf_json_str, so SDP and display names are escaped.
 *
 * Threading: the media thread that owns the objects; the stats snapshot is swapped
 * under the loop's stats_lock (a leaf) for readers on the main thread. */
#include "relay/sfu/sfu_int.h"
#include "core/pl_buf.h"

#include <inttypes.h>

void sfu_emit(pl_sfu_loop_t *ml, uint64_t to, const char *json)
{
    if (ml->sink.send)
        ml->sink.send(ml->sink.ctx, to, json);
}

void sfu_emit_error(pl_sfu_loop_t *ml, uint64_t to, const char *code, const char *msg)
{
    pl_buf_t b;
    pl_buf_init(&b);
    pl_buf_puts(&b, "{\"type\":\"sfu.error\",\"code\":");
    pl_buf_json_str(&b, code);
    pl_buf_puts(&b, ",\"message\":");
    pl_buf_json_str(&b, msg);
    pl_buf_puts(&b, "}");
    pl_metric_inc(ml->shard, ml->sfu->ids.errors);
    pl_log_info("sfu.error", "participant=%" PRIu64 " code=%s message=%s", to, code,
                PL_LOG_QUOTED(msg));
    sfu_emit(ml, to, b.data);
    pl_buf_deinit(&b);
}

static void tracks_json(pl_buf_t *b, const sfu_part_t *p)
{
    bool first = true;
    pl_buf_puts(b, ",\"tracks\":[");
    for (guint i = 0; i < p->mlines->len; i++) {
        const sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        if (m->role != ML_SUBSCRIBE || !m->down)
            continue;
        pl_buf_printf(b, "%s{\"mid\":", first ? "" : ",");
        pl_buf_json_str(b, m->mid);
        pl_buf_printf(b, ",\"participant\":%" PRIu64 ",\"track\":%u,\"kind\":\"%s\",\"muted\":%s}",
                      m->down->track->pub->id, m->down->track->id,
                      m->kind == PL_MEDIA_AUDIO ? "audio" : "video",
                      m->down->track->muted ? "true" : "false");
        first = false;
    }
    pl_buf_puts(b, "]");
}

void sfu_emit_sdp(sfu_part_t *p, const char *type, const char *sdp)
{
    pl_buf_t b;
    pl_buf_init(&b);
    pl_buf_printf(&b, "{\"type\":\"sfu.%s\",\"sdp\":", type);
    pl_buf_json_str(&b, sdp);
    if (type[0] == 'o')
        tracks_json(&b, p);
    pl_buf_puts(&b, "}");
    sfu_emit(p->ml, p->id, b.data);
    pl_buf_deinit(&b);
}

static void peer_json(pl_buf_t *b, const sfu_part_t *who)
{
    pl_buf_printf(b, "{\"participant\":%" PRIu64 ",\"display\":", who->id);
    pl_buf_json_str(b, who->display);
    pl_buf_puts(b, "}");
}

void sfu_emit_joined(sfu_part_t *p)
{
    pl_buf_t b;
    pl_buf_init(&b);
    pl_buf_puts(&b, "{\"type\":\"sfu.joined\",\"room\":");
    pl_buf_json_str(&b, p->room->id);
    pl_buf_printf(&b, ",\"participant\":%" PRIu64 ",\"participants\":[", p->id);
    bool first = true;
    for (guint i = 0; i < p->room->parts->len; i++) {
        const sfu_part_t *o = g_ptr_array_index(p->room->parts, i);
        if (o == p)
            continue;
        if (!first)
            pl_buf_puts(&b, ",");
        peer_json(&b, o);
        first = false;
    }
    pl_buf_printf(&b, "],\"active_speaker\":%" PRIu64 "}", p->room->speaker);
    sfu_emit(p->ml, p->id, b.data);
    pl_buf_deinit(&b);
}

void sfu_emit_peer(sfu_part_t *to, const char *type, const sfu_part_t *who)
{
    pl_buf_t b;
    pl_buf_init(&b);
    pl_buf_printf(&b, "{\"type\":\"sfu.%s\",\"participant\":%" PRIu64 ",\"display\":",
                  type, who->id);
    pl_buf_json_str(&b, who->display);
    pl_buf_puts(&b, "}");
    sfu_emit(to->ml, to->id, b.data);
    pl_buf_deinit(&b);
}

void sfu_emit_state(sfu_part_t *p, pl_pc_state_t st, const char *reason)
{
    pl_buf_t b;
    pl_buf_init(&b);
    pl_buf_printf(&b, "{\"type\":\"sfu.state\",\"state\":\"%s\"", pl_pc_state_name(st));
    if (reason) {
        pl_buf_puts(&b, ",\"reason\":");
        pl_buf_json_str(&b, reason);
    }
    pl_buf_puts(&b, "}");
    sfu_emit(p->ml, p->id, b.data);
    pl_buf_deinit(&b);
}

void sfu_emit_speaker(sfu_room_t *r)
{
    char json[96];
    g_snprintf(json, sizeof(json), "{\"type\":\"sfu.active_speaker\",\"participant\":%" PRIu64 "}",
               r->speaker);
    for (guint i = 0; i < r->parts->len; i++) {
        sfu_part_t *p = g_ptr_array_index(r->parts, i);
        sfu_emit(r->ml, p->id, json);
    }
}

void sfu_emit_mute(sfu_part_t *to, uint64_t who, const char *kind, bool muted)
{
    char json[128];
    g_snprintf(json, sizeof(json),
               "{\"type\":\"sfu.mute\",\"participant\":%" PRIu64 ",\"kind\":\"%s\",\"muted\":%s}",
               who, kind, muted ? "true" : "false");
    sfu_emit(to->ml, to->id, json);
}

static void down_stats_json(pl_buf_t *b, const sfu_down_t *d, bool first)
{
    pl_buf_printf(b, "%s{\"from\":%" PRIu64 ",\"track\":%u,\"layer\":%d,\"packets\":%" PRIu64
                  ",\"bytes\":%" PRIu64 ",\"loss\":%.4f,\"jitter\":%u,\"rtt_ms\":%.1f}",
                  first ? "" : ",", d->track->pub->id, d->track->id, d->cur_layer, d->packets,
                  d->bytes, d->fraction_lost / 256.0, d->jitter,
                  d->rtt_us < 0 ? -1.0 : d->rtt_us / 1000.0);
}

static void part_stats_json(pl_buf_t *b, const sfu_part_t *p)
{
    pl_buf_printf(b, "{\"id\":%" PRIu64 ",\"state\":\"%s\",\"remb_bps\":%" PRIu64 ",\"receives\":[",
                  p->id, pl_pc_state_name(p->pc_state), p->remb_bps);
    bool first = true;
    for (guint i = 0; i < p->mlines->len; i++) {
        const sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        if (m->role == ML_SUBSCRIBE && m->down) {
            down_stats_json(b, m->down, first);
            first = false;
        }
    }
    pl_buf_puts(b, "]}");
}

/* Rebuilds this loop's /stats fragment: {"rooms":[{"id":..,"participants":[...]}]}. */
void sfu_loop_stats_json(pl_sfu_loop_t *ml, uint64_t now_ms)
{
    if (now_ms < ml->next_stats_ms)
        return;
    ml->next_stats_ms = now_ms + 2000;
    pl_buf_t b;
    pl_buf_init(&b);
    pl_buf_puts(&b, "[");
    GHashTableIter it;
    gpointer key, val;
    bool first = true;
    g_hash_table_iter_init(&it, ml->rooms);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        const sfu_room_t *r = val;
        pl_buf_printf(&b, "%s{\"id\":", first ? "" : ",");
        pl_buf_json_str(&b, r->id);
        pl_buf_printf(&b, ",\"active_speaker\":%" PRIu64 ",\"participants\":[", r->speaker);
        for (guint i = 0; i < r->parts->len; i++) {
            if (i)
                pl_buf_puts(&b, ",");
            part_stats_json(&b, g_ptr_array_index(r->parts, i));
        }
        pl_buf_puts(&b, "]}");
        first = false;
    }
    pl_buf_puts(&b, "]");
    pthread_mutex_lock(&ml->stats_lock);
    char *old = ml->stats_json;
    ml->stats_json = b.data;        /* takes the buffer's memory */
    pthread_mutex_unlock(&ml->stats_lock);
    free(old);
}
