/* sfu_room.c: rooms and participants on a media loop: join (with the participant
 * limit), leave (tracks and downtracks unlinked, the others told and re-offered),
 * published tracks and their simulcast layers, mute, subscriber quality preferences,
 * and the periodic work of a room (RTCP through sfu_fwd.c, active-speaker detection
 * from the RFC 6464 audio levels the forwarder accumulates).
 *
 * What it does not: SDP (sfu_nego.c) or packets (sfu_fwd.c).
 *
 * Threading: the room's media thread only. */
#include "relay/sfu/sfu_int.h"

#include <inttypes.h>
#include <string.h>

static pl_sfu_ids_t *ids(pl_sfu_loop_t *ml)
{
    return &ml->sfu->ids;
}

sfu_part_t *sfu_part_find(pl_sfu_loop_t *ml, uint64_t pid)
{
    return g_hash_table_lookup(ml->parts, &pid);
}

static uint32_t nonzero_random(void)
{
    uint32_t v;
    do
        v = g_random_int();
    while (v == 0);
    return v;
}

static sfu_room_t *room_get(pl_sfu_loop_t *ml, const char *room_id, bool *created)
{
    sfu_room_t *r = g_hash_table_lookup(ml->rooms, room_id);
    *created = false;
    if (r)
        return r;
    unsigned max = ml->sfu->set.max_rooms;
    if (max) {
        uint64_t total = 0;
        for (unsigned i = 0; i < ml->sfu->n_loops; i++)
            total += atomic_load(&ml->sfu->loops[i].n_rooms);
        if (total >= max)
            return NULL;
    }
    r = pl_xcalloc(1, sizeof(*r));
    r->ml = ml;
    g_strlcpy(r->id, room_id, sizeof(r->id));
    r->parts = g_ptr_array_new();
    r->tracks = g_ptr_array_new();
    r->next_track_id = 1;
    g_hash_table_insert(ml->rooms, r->id, r);
    atomic_fetch_add(&ml->n_rooms, 1);
    pl_metric_gauge_add(ml->shard, ids(ml)->rooms, 1);
    pl_log_info("sfu.room.created", "room=%s thread=%u", PL_LOG_QUOTED(r->id), ml->index);
    *created = true;
    return r;
}

static void room_free_if_empty(sfu_room_t *r)
{
    if (r->parts->len > 0)
        return;
    pl_sfu_loop_t *ml = r->ml;
    pl_log_info("sfu.room.closed", "room=%s", PL_LOG_QUOTED(r->id));
    g_hash_table_remove(ml->rooms, r->id);
    g_ptr_array_free(r->parts, TRUE);
    g_ptr_array_free(r->tracks, TRUE);
    atomic_fetch_sub(&ml->n_rooms, 1);
    pl_metric_gauge_add(ml->shard, ids(ml)->rooms, -1);
    free(r);
}

void sfu_room_join(pl_sfu_loop_t *ml, const char *room_id, uint64_t pid, uint32_t gen,
                   const char *display)
{
    bool created;
    sfu_room_t *r = room_get(ml, room_id, &created);
    if (!r || r->parts->len >= ml->sfu->set.max_participants) {
        sfu_dir_remove(ml->sfu, pid, gen);
        sfu_emit_error(ml, pid, r ? "room_full" : "too_many_rooms",
                       r ? "the room has reached its participant limit"
                         : "this node has reached its room limit");
        return;
    }
    sfu_part_t *p = pl_xcalloc(1, sizeof(*p));
    p->id = pid;
    p->gen = gen;
    g_strlcpy(p->display, display, sizeof(p->display));
    p->room = r;
    p->ml = ml;
    p->mlines = g_ptr_array_new();
    p->prefs = g_array_new(FALSE, FALSE, sizeof(sfu_quality_pref_t));
    p->rtcp_ssrc = nonzero_random();
    p->sess_id = ((uint64_t)g_random_int() << 30) ^ g_random_int();
    p->default_quality = PL_SFU_QUALITY_HIGH;
    p->pc_state = PL_PC_NEW;
    g_ptr_array_add(r->parts, p);
    g_hash_table_insert(ml->parts, &p->id, p);
    atomic_fetch_add(&ml->n_parts, 1);
    pl_metric_gauge_add(ml->shard, ids(ml)->participants, 1);
    pl_log_info("sfu.joined", "room=%s participant=%" PRIu64 " size=%u", PL_LOG_QUOTED(r->id),
                pid, r->parts->len);
    sfu_emit_joined(p);
    for (guint i = 0; i < r->parts->len; i++) {
        sfu_part_t *o = g_ptr_array_index(r->parts, i);
        if (o != p)
            sfu_emit_peer(o, "participant_joined", p);
    }
    p->need_offer = r->tracks->len > 0;     /* sent once the client's offer is answered */
}

void sfu_down_free(sfu_down_t *d)
{
    if (d->track)
        g_ptr_array_remove_fast(d->track->downs, d);
    if (d->ml)
        d->ml->down = NULL;
    free(d);
}

static void track_free(sfu_track_t *t)
{
    for (guint i = 0; i < t->downs->len; i++) {
        sfu_down_t *d = g_ptr_array_index(t->downs, i);
        d->track = NULL;            /* so sfu_down_free leaves t->downs alone */
        d->sub->need_offer = true;
        sfu_down_free(d);
    }
    for (size_t l = 0; l < t->n_layers; l++)
        sfu_cache_free(&t->layers[l].cache);
    g_ptr_array_free(t->downs, TRUE);
    free(t);
}

/* Gives each rid a quality rank: well-known names first (q/h/f, l/m/h, low/mid/high,
 * 0/1/2), otherwise the simulcast order is taken as lowest first (docs/SFU.md). */
static int rid_rank(const char *rid, bool have_m)
{
    static const char *const low[] = { "q", "l", "low", "lo", "0" };
    static const char *const mid[] = { "m", "mid", "medium", "1" };
    static const char *const high[] = { "f", "high", "hi", "full", "2" };
    for (size_t i = 0; i < PL_ARRAY_LEN(low); i++)
        if (g_ascii_strcasecmp(rid, low[i]) == 0)
            return 0;
    for (size_t i = 0; i < PL_ARRAY_LEN(mid); i++)
        if (g_ascii_strcasecmp(rid, mid[i]) == 0)
            return 1;
    for (size_t i = 0; i < PL_ARRAY_LEN(high); i++)
        if (g_ascii_strcasecmp(rid, high[i]) == 0)
            return 2;
    if (g_ascii_strcasecmp(rid, "h") == 0)
        return have_m ? 2 : 1;      /* "h" is half in q/h/f but high in l/m/h */
    return -1;
}

static void order_layers(sfu_track_t *t, const sfu_mline_t *m)
{
    int rank[PL_SFU_MAX_LAYERS];
    bool have_m = false, known = true;
    for (size_t i = 0; i < m->n_rids; i++)
        have_m |= g_ascii_strcasecmp(m->rids[i], "m") == 0;
    for (size_t i = 0; i < m->n_rids; i++) {
        rank[i] = rid_rank(m->rids[i], have_m);
        for (size_t j = 0; j < i; j++)
            known &= rank[j] != rank[i];
        known &= rank[i] >= 0;
    }
    size_t idx[PL_SFU_MAX_LAYERS] = { 0, 1, 2 };
    if (known)      /* insertion sort by rank; at most three */
        for (size_t i = 1; i < m->n_rids; i++)
            for (size_t j = i; j > 0 && rank[idx[j]] < rank[idx[j - 1]]; j--) {
                size_t tmp = idx[j];
                idx[j] = idx[j - 1];
                idx[j - 1] = tmp;
            }
    for (size_t i = 0; i < m->n_rids; i++)
        g_strlcpy(t->layers[i].rid, m->rids[idx[i]], sizeof(t->layers[i].rid));
}

sfu_track_t *sfu_track_create(sfu_part_t *pub, sfu_mline_t *m)
{
    sfu_room_t *r = pub->room;
    sfu_track_t *t = pl_xcalloc(1, sizeof(*t));
    t->id = r->next_track_id++;
    t->pub = pub;
    g_strlcpy(t->mid, m->mid, sizeof(t->mid));
    t->kind = m->kind;
    t->codec = m->codec;
    for (size_t i = 0; i < m->n_exts; i++)
        t->ext_id[m->exts[i].kind] = m->exts[i].id;
    t->n_layers = m->n_rids ? m->n_rids : 1;
    if (m->n_rids)
        order_layers(t, m);
    unsigned cache = t->kind == PL_MEDIA_VIDEO ? r->ml->sfu->set.nack_cache : 0;
    for (size_t l = 0; l < t->n_layers; l++)
        sfu_cache_init(&t->layers[l].cache, cache);
    t->downs = g_ptr_array_new();
    g_ptr_array_add(r->tracks, t);
    m->track = t;
    pl_log_info("sfu.track.published", "room=%s participant=%" PRIu64 " track=%u kind=%s "
                "codec=%s layers=%zu", PL_LOG_QUOTED(r->id), pub->id, t->id,
                t->kind == PL_MEDIA_AUDIO ? "audio" : "video", t->codec.name, t->n_layers);
    return t;
}

void sfu_room_tracks_changed(sfu_room_t *r, const sfu_part_t *except)
{
    for (guint i = 0; i < r->parts->len; i++) {
        sfu_part_t *o = g_ptr_array_index(r->parts, i);
        if (o == except)
            continue;
        o->need_offer = true;
        sfu_nego_maybe_offer(o);
    }
}

static void set_pc_state_gauge(sfu_part_t *p, pl_pc_state_t st)
{
    pl_sfu_loop_t *ml = p->ml;
    pl_metric_gauge_add(ml->shard, ids(ml)->pcs[p->pc_state], -1);
    pl_metric_gauge_add(ml->shard, ids(ml)->pcs[st], 1);
    if (p->pc_state == PL_PC_CONNECTED)
        atomic_fetch_sub(&ml->n_connected, 1);
    if (st == PL_PC_CONNECTED)
        atomic_fetch_add(&ml->n_connected, 1);
    p->pc_state = st;
}

void sfu_part_pc_state(sfu_part_t *p, pl_pc_state_t st)
{
    if (p->pc)
        set_pc_state_gauge(p, st);
}

static void drop_published(sfu_part_t *p)
{
    GPtrArray *tracks = p->room->tracks;
    for (guint i = 0; i < tracks->len;) {
        sfu_track_t *t = g_ptr_array_index(tracks, i);
        if (t->pub != p) {
            i++;
            continue;
        }
        g_ptr_array_remove_index(tracks, i);
        track_free(t);
    }
}

void sfu_part_leave(sfu_part_t *p, bool notify)
{
    sfu_room_t *r = p->room;
    pl_sfu_loop_t *ml = p->ml;
    bool published = false;
    for (guint i = 0; i < r->tracks->len; i++)
        published |= ((sfu_track_t *)g_ptr_array_index(r->tracks, i))->pub == p;
    drop_published(p);
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        if (m->down)
            sfu_down_free(m->down);
        free(m);
    }
    g_ptr_array_free(p->mlines, TRUE);
    if (p->pc) {
        pl_metric_gauge_add(ml->shard, ids(ml)->pcs[p->pc_state], -1);
        if (p->pc_state == PL_PC_CONNECTED)
            atomic_fetch_sub(&ml->n_connected, 1);
        pl_pc_destroy(p->pc);
    }
    g_ptr_array_remove(r->parts, p);
    g_hash_table_remove(ml->parts, &p->id);
    atomic_fetch_sub(&ml->n_parts, 1);
    pl_metric_gauge_add(ml->shard, ids(ml)->participants, -1);
    pl_log_info("sfu.left", "room=%s participant=%" PRIu64 " size=%u", PL_LOG_QUOTED(r->id),
                p->id, r->parts->len);
    if (notify)
        for (guint i = 0; i < r->parts->len; i++)
            sfu_emit_peer(g_ptr_array_index(r->parts, i), "participant_left", p);
    if (r->speaker == p->id) {
        r->speaker = 0;
        if (notify)
            sfu_emit_speaker(r);
    }
    g_array_free(p->prefs, TRUE);
    free(p);
    if (notify && published)
        sfu_room_tracks_changed(r, NULL);
    room_free_if_empty(r);
}

void sfu_part_mute(sfu_part_t *p, const char *kind, bool muted)
{
    pl_media_kind_t k = strcmp(kind, "audio") == 0 ? PL_MEDIA_AUDIO : PL_MEDIA_VIDEO;
    uint64_t now = sfu_now_ms();
    for (guint i = 0; i < p->room->tracks->len; i++) {
        sfu_track_t *t = g_ptr_array_index(p->room->tracks, i);
        if (t->pub != p || t->kind != k || t->muted == muted)
            continue;
        t->muted = muted;
        for (guint d = 0; d < t->downs->len; d++) {
            sfu_down_t *dn = g_ptr_array_index(t->downs, d);
            pl_rtp_munger_resync(&dn->mung);    /* no sequence gap over the pause */
            if (k == PL_MEDIA_VIDEO)
                dn->cur_layer = -1;             /* resume on a key frame */
        }
        if (!muted && k == PL_MEDIA_VIDEO)
            for (size_t l = 0; l < t->n_layers; l++)
                sfu_request_keyframe(t, (int)l, now, true);
    }
    for (guint i = 0; i < p->room->parts->len; i++)
        sfu_emit_mute(g_ptr_array_index(p->room->parts, i), p->id, kind, muted);
}

void sfu_part_set_quality(sfu_part_t *p, uint64_t publisher, pl_sfu_quality_t q)
{
    if (publisher == 0) {
        p->default_quality = q;
        g_array_set_size(p->prefs, 0);
    } else {
        guint i;
        for (i = 0; i < p->prefs->len; i++)
            if (g_array_index(p->prefs, sfu_quality_pref_t, i).publisher == publisher)
                break;
        if (i == p->prefs->len)
            g_array_append_val(p->prefs, ((sfu_quality_pref_t){ publisher, q }));
        else
            g_array_index(p->prefs, sfu_quality_pref_t, i).quality = q;
    }
    uint64_t now = sfu_now_ms();
    for (guint i = 0; i < p->mlines->len; i++) {
        sfu_mline_t *m = g_ptr_array_index(p->mlines, i);
        if (m->role != ML_SUBSCRIBE || !m->down || m->kind != PL_MEDIA_VIDEO)
            continue;
        if (publisher == 0 || m->down->track->pub->id == publisher) {
            m->down->want = q;
            sfu_down_select(m->down, now);
        }
    }
}

pl_sfu_quality_t sfu_part_quality_for(const sfu_part_t *p, uint64_t publisher)
{
    for (guint i = 0; i < p->prefs->len; i++)
        if (g_array_index(p->prefs, sfu_quality_pref_t, i).publisher == publisher)
            return g_array_index(p->prefs, sfu_quality_pref_t, i).quality;
    return p->default_quality;
}

/* Dominant speaker: the loudest voiced audio track over the window, if at or above the
 * threshold, for two windows in a row (a cough does not steal the spotlight). */
static void speaker_tick(sfu_room_t *r)
{
    unsigned need = 127u - r->ml->sfu->set.speaker_threshold_dbov;
    uint64_t best = 0;
    unsigned best_loud = 0;
    for (guint i = 0; i < r->tracks->len; i++) {
        sfu_track_t *t = g_ptr_array_index(r->tracks, i);
        if (t->kind != PL_MEDIA_AUDIO)
            continue;
        unsigned loud = t->loud_n >= 3 ? t->loud_sum / t->loud_n : 0;
        if (!t->muted && loud >= need && loud > best_loud) {
            best = t->pub->id;
            best_loud = loud;
        }
        t->loud_sum = t->loud_n = 0;
    }
    if (best == 0 || best == r->speaker) {
        r->speaker_candidate = 0;
        return;
    }
    if (best != r->speaker_candidate) {
        r->speaker_candidate = best;
        return;
    }
    r->speaker = best;
    r->speaker_candidate = 0;
    sfu_emit_speaker(r);
}

void sfu_room_tick(sfu_room_t *r, uint64_t now_ms)
{
    for (guint i = 0; i < r->parts->len; i++)
        sfu_part_rtcp_tick(g_ptr_array_index(r->parts, i), now_ms);
    if (now_ms >= r->next_speaker_ms) {
        r->next_speaker_ms = now_ms + r->ml->sfu->set.speaker_interval_ms;
        speaker_tick(r);
    }
}
