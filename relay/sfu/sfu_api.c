/* sfu_api.c: the SFU instance: media threads (one GMainContext + GMainLoop each), the
 * participant directory, and the thread-safe entry points of pl_sfu.h, which copy their
 * arguments into a message and post it to the media loop that owns the room.
 *
 * Routing: a room lives on loop hash(room id) % media_threads (FNV-1a), so a join needs
 * no shared table; later calls name only the participant, so the directory maps
 * participant id -> (loop, generation). It is the one shared structure, guarded by
 * dir_lock, a leaf lock (no callback or other lock is taken under it). The generation
 * lets a media thread drop an entry (a refused join) without racing a newer join.
 *
 * Messages go through a per-loop mailbox: a queue under a pthread mutex drained by a
 * GSource on the media thread, in posting order; whatever is left at shutdown is freed
 * unread.
 *
 * Threading: create/destroy on the main thread; entry points on any thread. */
#include "relay/sfu/sfu_gpoll.h"
#include "relay/sfu/sfu_int.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

typedef enum sfu_op {
    OP_JOIN, OP_LEAVE, OP_OFFER, OP_ANSWER, OP_CAND, OP_QUALITY, OP_MUTE, OP_SINK, OP_STOP
} sfu_op_t;

typedef struct sfu_msg {
    pl_sfu_loop_t *ml;
    sfu_op_t op;
    uint64_t pid, other;
    uint32_t gen;
    int quality;
    bool flag;
    char room[PL_SFU_ROOM_ID_MAX + 1];
    char display[PL_SFU_DISPLAY_MAX + 1];
    char kind[8];
    char *text;
    pl_sfu_sink_t sink;
} sfu_msg_t;

/* ---- media thread ------------------------------------------------------------------- */

static void leave_all(pl_sfu_loop_t *ml)
{
    GList *parts = g_hash_table_get_values(ml->parts);
    for (GList *l = parts; l; l = l->next)
        sfu_part_leave(l->data, false);
    g_list_free(parts);
}

static void msg_run(sfu_msg_t *m)
{
    pl_sfu_loop_t *ml = m->ml;
    if (m->op == OP_JOIN) {
        if (sfu_part_find(ml, m->pid))
            sfu_emit_error(ml, m->pid, "already_joined", "participant is already in a room");
        else
            sfu_room_join(ml, m->room, m->pid, m->gen, m->display);
        return;
    }
    if (m->op == OP_SINK) {
        ml->sink = m->sink;
        return;
    }
    if (m->op == OP_STOP) {
        leave_all(ml);
        g_main_loop_quit(ml->loop);
        return;
    }
    sfu_part_t *p = sfu_part_find(ml, m->pid);
    if (!p || (m->op == OP_LEAVE && p->gen != m->gen)) {
        if (m->op != OP_LEAVE)
            sfu_emit_error(ml, m->pid, "not_joined", "participant is not in a room");
        return;
    }
    switch (m->op) {
    case OP_LEAVE: sfu_part_leave(p, true); break;
    case OP_OFFER: sfu_nego_offer(p, m->text); break;
    case OP_ANSWER: sfu_nego_answer(p, m->text); break;
    case OP_CAND: sfu_nego_candidate(p, m->text); break;
    case OP_QUALITY: sfu_part_set_quality(p, m->other, (pl_sfu_quality_t)m->quality); break;
    case OP_MUTE: sfu_part_mute(p, m->kind, m->flag); break;
    default: break;
    }
}

static void msg_free(sfu_msg_t *m)
{
    g_free(m->text);
    free(m);
}

/* The mailbox: a queue under a pthread mutex (so the hand-over is visible to
 * ThreadSanitizer, which cannot see GLib's futex locks) and a GSource that drains it in
 * posting order on the media thread; posters wake the context. */
typedef struct mailbox_source {
    GSource base;
    pl_sfu_loop_t *ml;
} mailbox_source_t;

static bool inbox_ready(pl_sfu_loop_t *ml)
{
    pthread_mutex_lock(&ml->inbox_lock);
    bool ready = ml->inbox.length > 0;
    pthread_mutex_unlock(&ml->inbox_lock);
    return ready;
}

static gboolean mailbox_prepare(GSource *s, gint *timeout)
{
    *timeout = -1;
    return inbox_ready(((mailbox_source_t *)s)->ml);
}

static gboolean mailbox_check(GSource *s)
{
    return inbox_ready(((mailbox_source_t *)s)->ml);
}

static gboolean mailbox_dispatch(GSource *s, GSourceFunc cb, gpointer data)
{
    PL_UNUSED(cb);
    PL_UNUSED(data);
    pl_sfu_loop_t *ml = ((mailbox_source_t *)s)->ml;
    GQueue batch = G_QUEUE_INIT;
    pthread_mutex_lock(&ml->inbox_lock);
    batch = ml->inbox;
    g_queue_init(&ml->inbox);
    pthread_mutex_unlock(&ml->inbox_lock);
    sfu_msg_t *m;
    while ((m = g_queue_pop_head(&batch))) {
        msg_run(m);
        msg_free(m);
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs mailbox_funcs = { mailbox_prepare, mailbox_check, mailbox_dispatch,
                                      NULL, NULL, NULL };

static void post(pl_sfu_loop_t *ml, sfu_msg_t *m)
{
    m->ml = ml;
    pthread_mutex_lock(&ml->inbox_lock);
    g_queue_push_tail(&ml->inbox, m);
    pthread_mutex_unlock(&ml->inbox_lock);
    g_main_context_wakeup(ml->ctx);
}

static gboolean tick(gpointer data)
{
    pl_sfu_loop_t *ml = data;
    uint64_t now = sfu_now_ms();
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, ml->rooms);
    while (g_hash_table_iter_next(&it, &k, &v))
        sfu_room_tick(v, now);
    sfu_loop_stats_json(ml, now);
    return G_SOURCE_CONTINUE;
}

static gpointer loop_main(gpointer arg)
{
    pl_sfu_loop_t *ml = arg;
    g_main_context_push_thread_default(ml->ctx);
    int rc = pl_gpoll_attach(ml->ctx);
    if (rc < 0)
        pl_log_warn("sfu.epoll.failed", "error=%d using=poll", -rc);
    ml->tick = g_timeout_source_new(100);
    g_source_set_callback(ml->tick, tick, ml, NULL);
    g_source_attach(ml->tick, ml->ctx);
    g_main_loop_run(ml->loop);
    leave_all(ml);
    g_source_destroy(ml->tick);
    g_source_unref(ml->tick);
    g_source_destroy(ml->mailbox);
    /* Release the libnice agents queued by pl_pc_destroy; bounded, since peers may
     * keep sending to sockets that are about to close. */
    gint64 end = g_get_monotonic_time() + 500 * 1000;
    while (g_main_context_iteration(ml->ctx, FALSE) && g_get_monotonic_time() < end)
        ;
    pl_gpoll_detach(ml->ctx);
    g_main_context_pop_thread_default(ml->ctx);
    return NULL;
}

/* ---- life cycle --------------------------------------------------------------------- */

static int start_loop(pl_sfu_t *sfu, unsigned i)
{
    pl_sfu_loop_t *ml = &sfu->loops[i];
    char name[16];
    ml->sfu = sfu;
    ml->index = i;
    ml->ctx = g_main_context_new();
    ml->loop = g_main_loop_new(ml->ctx, FALSE);
    ml->rooms = g_hash_table_new(g_str_hash, g_str_equal);
    ml->parts = g_hash_table_new(g_int64_hash, g_int64_equal);
    ml->shard = pl_metrics_shard_create(sfu->metrics);
    ml->mailbox = g_source_new(&mailbox_funcs, sizeof(mailbox_source_t));
    ((mailbox_source_t *)ml->mailbox)->ml = ml;
    g_source_attach(ml->mailbox, ml->ctx);
    pthread_mutex_init(&ml->stats_lock, NULL);
    pthread_mutex_init(&ml->inbox_lock, NULL);
    g_queue_init(&ml->inbox);
    g_snprintf(name, sizeof(name), "sfu-%u", i);
    GError *err = NULL;
    ml->thread = g_thread_try_new(name, loop_main, ml, &err);
    if (!ml->thread) {
        pl_log_error("sfu.thread.failed", "error=%s", PL_LOG_QUOTED(err->message));
        g_error_free(err);
        return -EAGAIN;
    }
    return 0;
}

int pl_sfu_create(const pl_config_t *cfg, pl_metrics_t *metrics, const pl_sfu_sink_t *sink,
                  pl_sfu_t **out)
{
    pl_config_error_t err;
    pl_sfu_t *sfu = pl_xcalloc(1, sizeof(*sfu));
    int rc = pl_sfu_settings_load(cfg, &sfu->set, &err);
    if (rc < 0) {
        pl_log_error("sfu.config", "error=%s", PL_LOG_QUOTED(err.msg));
        free(sfu);
        return rc;
    }
    sfu->cfg = pl_config_ref((pl_config_t *)(uintptr_t)cfg);
    sfu->own_metrics = metrics == NULL;
    sfu->metrics = metrics ? metrics : pl_metrics_create();
    pl_sfu_metrics_register(sfu->metrics, &sfu->ids);
    sfu->ssl_ctx = pl_dtls_ctx_create(NULL, sfu->fingerprint, sizeof(sfu->fingerprint));
    if (!sfu->ssl_ctx) {
        pl_log_error("sfu.dtls.failed", "error=\"cannot create the DTLS context\"");
        rc = PL_ECRYPTO;
        goto fail;
    }
    g_snprintf(sfu->fp_attr, sizeof(sfu->fp_attr), "sha-256 %s", sfu->fingerprint);
    pthread_mutex_init(&sfu->dir_lock, NULL);
    sfu->dir = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
    sfu->n_loops = sfu->set.media_threads;
    sfu->loops = pl_xcalloc(sfu->n_loops, sizeof(pl_sfu_loop_t));
    for (unsigned i = 0; i < sfu->n_loops; i++) {
        if (sink)
            sfu->loops[i].sink = *sink;
        if ((rc = start_loop(sfu, i)) < 0)
            goto fail;
    }
    pl_log_info("sfu.started", "threads=%u addresses=%zu ports=%u-%u fingerprint=%s",
                sfu->n_loops, sfu->set.n_addrs, sfu->set.port_min, sfu->set.port_max,
                sfu->fingerprint);
    *out = sfu;
    return 0;
fail:
    pl_sfu_destroy(sfu);
    return rc;
}

void pl_sfu_destroy(pl_sfu_t *sfu)
{
    if (!sfu)
        return;
    for (unsigned i = 0; sfu->loops && i < sfu->n_loops; i++) {
        pl_sfu_loop_t *ml = &sfu->loops[i];
        if (!ml->thread)
            continue;
        sfu_msg_t *m = pl_xcalloc(1, sizeof(*m));
        m->op = OP_STOP;
        post(ml, m);
        g_thread_join(ml->thread);
    }
    for (unsigned i = 0; sfu->loops && i < sfu->n_loops; i++) {
        pl_sfu_loop_t *ml = &sfu->loops[i];
        if (ml->loop)
            g_main_loop_unref(ml->loop);
        if (ml->ctx)
            g_main_context_unref(ml->ctx);
        if (ml->rooms)
            g_hash_table_destroy(ml->rooms);
        if (ml->parts)
            g_hash_table_destroy(ml->parts);
        free(ml->stats_json);
        if (ml->shard) {
            sfu_msg_t *m;
            while ((m = g_queue_pop_head(&ml->inbox)))     /* never dispatched */
                msg_free(m);
            pthread_mutex_destroy(&ml->stats_lock);
            pthread_mutex_destroy(&ml->inbox_lock);
        }
        if (ml->mailbox)
            g_source_unref(ml->mailbox);
    }
    free(sfu->loops);
    if (sfu->dir) {
        g_hash_table_destroy(sfu->dir);
        pthread_mutex_destroy(&sfu->dir_lock);
    }
    SSL_CTX_free(sfu->ssl_ctx);
    if (sfu->own_metrics)
        pl_metrics_destroy(sfu->metrics);
    if (sfu->cfg)
        pl_config_unref(sfu->cfg);
    free(sfu);
}

void pl_sfu_set_sink(pl_sfu_t *sfu, const pl_sfu_sink_t *sink)
{
    for (unsigned i = 0; i < sfu->n_loops; i++) {
        sfu_msg_t *m = pl_xcalloc(1, sizeof(*m));
        m->op = OP_SINK;
        m->sink = *sink;
        post(&sfu->loops[i], m);
    }
}

/* ---- directory ---------------------------------------------------------------------- */

static int dir_add(pl_sfu_t *sfu, uint64_t pid, unsigned loop, uint32_t *gen)
{
    int rc = 0;
    pthread_mutex_lock(&sfu->dir_lock);
    if (g_hash_table_contains(sfu->dir, &pid)) {
        rc = -EEXIST;
    } else {
        sfu_dir_entry_t *e = g_new(sfu_dir_entry_t, 1);
        e->loop = loop;
        e->gen = *gen = ++sfu->next_gen;
        g_hash_table_insert(sfu->dir, g_memdup2(&pid, sizeof(pid)), e);
    }
    pthread_mutex_unlock(&sfu->dir_lock);
    return rc;
}

static int dir_lookup(pl_sfu_t *sfu, uint64_t pid, bool remove, pl_sfu_loop_t **ml,
                      uint32_t *gen)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&sfu->dir_lock);
    sfu_dir_entry_t *e = g_hash_table_lookup(sfu->dir, &pid);
    if (e) {
        *ml = &sfu->loops[e->loop];
        *gen = e->gen;
        rc = 0;
        if (remove)
            g_hash_table_remove(sfu->dir, &pid);
    }
    pthread_mutex_unlock(&sfu->dir_lock);
    return rc;
}

void sfu_dir_remove(pl_sfu_t *sfu, uint64_t pid, uint32_t gen)
{
    pthread_mutex_lock(&sfu->dir_lock);
    sfu_dir_entry_t *e = g_hash_table_lookup(sfu->dir, &pid);
    if (e && e->gen == gen)
        g_hash_table_remove(sfu->dir, &pid);
    pthread_mutex_unlock(&sfu->dir_lock);
}

/* ---- entry points ------------------------------------------------------------------- */

static bool room_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > PL_SFU_ROOM_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!g_ascii_isalnum(id[i]) && !strchr("._:-", id[i]))
            return false;
    return true;
}

static unsigned room_loop(const pl_sfu_t *sfu, const char *id)
{
    uint32_t h = 2166136261u;       /* FNV-1a */
    for (const char *c = id; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    return h % sfu->n_loops;
}

int pl_sfu_join(pl_sfu_t *sfu, const char *room_id, uint64_t participant_id,
                const pl_sfu_join_opts_t *opts)
{
    if (!room_id_valid(room_id) || participant_id == 0 ||
        (opts && opts->display && strlen(opts->display) > PL_SFU_DISPLAY_MAX))
        return -EINVAL;
    if (atomic_load(&sfu->draining))
        return PL_ECLOSED;
    unsigned loop = room_loop(sfu, room_id);
    uint32_t gen;
    int rc = dir_add(sfu, participant_id, loop, &gen);
    if (rc < 0)
        return rc;
    sfu_msg_t *m = pl_xcalloc(1, sizeof(*m));
    m->op = OP_JOIN;
    m->pid = participant_id;
    m->gen = gen;
    g_strlcpy(m->room, room_id, sizeof(m->room));
    g_strlcpy(m->display, opts && opts->display ? opts->display : "", sizeof(m->display));
    post(&sfu->loops[loop], m);
    return 0;
}

static int post_to(pl_sfu_t *sfu, uint64_t pid, sfu_msg_t *m, bool remove)
{
    pl_sfu_loop_t *ml;
    if (dir_lookup(sfu, pid, remove, &ml, &m->gen) < 0) {
        msg_free(m);
        return -ENOENT;
    }
    m->pid = pid;
    post(ml, m);
    return 0;
}

static sfu_msg_t *msg_new(sfu_op_t op, const char *text)
{
    sfu_msg_t *m = pl_xcalloc(1, sizeof(*m));
    m->op = op;
    m->text = text ? g_strdup(text) : NULL;
    return m;
}

int pl_sfu_leave(pl_sfu_t *sfu, uint64_t participant_id)
{
    return post_to(sfu, participant_id, msg_new(OP_LEAVE, NULL), true);
}

int pl_sfu_offer(pl_sfu_t *sfu, uint64_t participant_id, const char *sdp)
{
    return sdp ? post_to(sfu, participant_id, msg_new(OP_OFFER, sdp), false) : -EINVAL;
}

int pl_sfu_answer(pl_sfu_t *sfu, uint64_t participant_id, const char *sdp)
{
    return sdp ? post_to(sfu, participant_id, msg_new(OP_ANSWER, sdp), false) : -EINVAL;
}

int pl_sfu_ice_candidate(pl_sfu_t *sfu, uint64_t participant_id, const char *candidate,
                         const char *mid)
{
    PL_UNUSED(mid);
    if (candidate && strlen(candidate) > 1024)
        return -EINVAL;
    return post_to(sfu, participant_id, msg_new(OP_CAND, candidate ? candidate : ""), false);
}

int pl_sfu_set_quality(pl_sfu_t *sfu, uint64_t participant_id, uint64_t publisher_id,
                       pl_sfu_quality_t quality)
{
    if ((unsigned)quality > PL_SFU_QUALITY_HIGH)
        return -EINVAL;
    sfu_msg_t *m = msg_new(OP_QUALITY, NULL);
    m->other = publisher_id;
    m->quality = (int)quality;
    return post_to(sfu, participant_id, m, false);
}

int pl_sfu_mute(pl_sfu_t *sfu, uint64_t participant_id, const char *kind, bool muted)
{
    if (!kind || (strcmp(kind, "audio") != 0 && strcmp(kind, "video") != 0))
        return -EINVAL;
    sfu_msg_t *m = msg_new(OP_MUTE, NULL);
    g_strlcpy(m->kind, kind, sizeof(m->kind));
    m->flag = muted;
    return post_to(sfu, participant_id, m, false);
}

void pl_sfu_get_counts(pl_sfu_t *sfu, pl_sfu_counts_t *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < sfu->n_loops; i++) {
        out->rooms += atomic_load(&sfu->loops[i].n_rooms);
        out->participants += atomic_load(&sfu->loops[i].n_parts);
        out->connected += atomic_load(&sfu->loops[i].n_connected);
    }
}

const char *pl_sfu_fingerprint(const pl_sfu_t *sfu)
{
    return sfu->fp_attr;
}
