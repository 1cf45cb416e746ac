/* gateway.c: the signaling gateway's skeleton: N service threads, each owning one
 * libwebsockets context whose vhosts listen on the shared port(s) (SO_REUSEPORT via
 * LWS_SERVER_OPTION_ALLOW_LISTEN_SHARE, so the kernel spreads connections); the
 * registration tables; the per-thread inbox (a locked FIFO plus lws_cancel_service,
 * which wakes the thread with LWS_CALLBACK_EVENT_WAIT_CANCELLED); connection ids; and
 * sending/closing by id from any thread.
 *
 * What it does not do: frame handling (conn.c), HTTP (http.c), accounts (accounts.c).
 *
 * Threading: registration and start/stop/destroy on the main thread. Everything a
 * service thread owns (slots, connections, shard) is touched only by it, except after
 * it has ended, when the stopping thread drains what is left. */
#include "signaling/gw_int.h"
#include "core/pl_log.h"
#include "core/pl_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOT_NONE 0x3fffffffu
#define WS_RX_BUFFER 1024           /* per-connection lws rx buffer (memory per conn) */

/* ---- ids and slots ----------------------------------------------------------------- */

/* conn id = thread (8 bits) | generation (24 bits) | slot (32 bits); generation starts
 * at 1, so 0 is never an id, and a freed slot's old ids stop matching. */
unsigned pl_sig_conn_thread(uint64_t conn_id)
{
    return (unsigned)(conn_id >> 56);
}

pl_sig_thread_t *pl_sig_thread_of(pl_sig_gateway_t *gw, uint64_t id)
{
    unsigned t = pl_sig_conn_thread(id);
    return id && t < gw->n_threads ? &gw->threads[t] : NULL;
}

uint64_t pl_sig_slot_alloc(pl_sig_thread_t *t, void *obj, unsigned kind)
{
    if (t->free_head == UINT32_MAX) {
        uint32_t old = t->n_slots, cap = old ? old * 2 : 256;
        PL_ASSERT(cap < SLOT_NONE);
        t->slots = pl_xrealloc(t->slots, cap * sizeof(*t->slots));
        for (uint32_t i = old; i < cap; i++)
            t->slots[i] = (pl_sig_slot_t){ NULL, 1, i + 1 < cap ? i + 1 : SLOT_NONE,
                                           PL_SIG_SLOT_FREE };
        t->free_head = old;
        t->n_slots = cap;
    }
    uint32_t i = t->free_head;
    pl_sig_slot_t *s = &t->slots[i];
    t->free_head = s->next_free == SLOT_NONE ? UINT32_MAX : s->next_free;
    s->obj = obj;
    s->kind = kind & 3u;
    return ((uint64_t)t->index << 56) | ((uint64_t)(s->gen & 0xffffffu) << 32) | i;
}

static pl_sig_slot_t *slot_lookup(pl_sig_thread_t *t, uint64_t id)
{
    uint32_t i = (uint32_t)id;
    if (i >= t->n_slots)
        return NULL;
    pl_sig_slot_t *s = &t->slots[i];
    if ((s->gen & 0xffffffu) != ((id >> 32) & 0xffffffu) || s->kind == PL_SIG_SLOT_FREE)
        return NULL;
    return s;
}

void pl_sig_slot_free(pl_sig_thread_t *t, uint64_t id)
{
    pl_sig_slot_t *s = slot_lookup(t, id);
    if (!s)
        return;
    s->obj = NULL;
    s->kind = PL_SIG_SLOT_FREE;
    s->gen = (s->gen + 1) & 0xffffffu;
    if (s->gen == 0)
        s->gen = 1;
    s->next_free = t->free_head == UINT32_MAX ? SLOT_NONE : t->free_head;
    t->free_head = (uint32_t)id;
}

void *pl_sig_slot_get(pl_sig_thread_t *t, uint64_t id, unsigned kind)
{
    pl_sig_slot_t *s = slot_lookup(t, id);
    return s && s->kind == kind ? s->obj : NULL;
}

/* ---- inbox --------------------------------------------------------------------------- */

void pl_sig_post(pl_sig_gateway_t *gw, unsigned thread, pl_msg_t *msg)
{
    PL_ASSERT(thread < gw->n_threads);
    pl_sig_thread_t *t = &gw->threads[thread];
    msg->next = NULL;
    pthread_mutex_lock(&t->lock);
    bool was_empty = t->in_head == NULL;
    *t->in_tail = msg;
    t->in_tail = &msg->next;
    /* Wake under the lock: the service thread marks itself dead under it before
     * destroying its context, so ctx is valid here. The wake is a pipe write. */
    if (was_empty && !atomic_load(&t->dead) && t->ctx)
        lws_cancel_service(t->ctx);
    pthread_mutex_unlock(&t->lock);
}

void pl_sig_thread_drain_inbox(pl_sig_thread_t *t)
{
    pthread_mutex_lock(&t->lock);
    pl_msg_t *m = t->in_head;
    t->in_head = NULL;
    t->in_tail = &t->in_head;
    pthread_mutex_unlock(&t->lock);
    while (m) {
        pl_msg_t *next = m->next;
        m->fn(NULL, m);
        m = next;
    }
}

static void post_to_thread(void *target, pl_msg_t *msg)
{
    pl_sig_thread_t *t = target;
    pl_sig_post(t->gw, t->index, msg);
}

pl_store_reply_t pl_sig_thread_reply(pl_sig_gateway_t *gw, unsigned thread)
{
    PL_ASSERT(thread < gw->n_threads);
    return (pl_store_reply_t){ .post = post_to_thread, .target = &gw->threads[thread] };
}

/* ---- registration -------------------------------------------------------------------- */

int pl_sig_gateway_add_handlers(pl_sig_gateway_t *gw, const pl_sig_handler_t *table,
                                size_t n, void *arg)
{
    PL_ASSERT(!gw->started);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < gw->n_handlers; j++)
            if (strcmp(gw->handlers[j].h->type, table[i].type) == 0)
                return -EEXIST;
    gw->handlers = pl_xrealloc(gw->handlers, (gw->n_handlers + n) * sizeof(*gw->handlers));
    for (size_t i = 0; i < n; i++) {
        PL_ASSERT(strlen(table[i].type) <= PL_SIG_TYPE_MAX && table[i].fn);
        gw->handlers[gw->n_handlers++] = (pl_sig_hentry_t){ .h = &table[i], .arg = arg };
    }
    return 0;
}

void pl_sig_gateway_add_push_types(pl_sig_gateway_t *gw, const char *const *types, size_t n)
{
    PL_ASSERT(!gw->started);
    gw->otypes = pl_xrealloc(gw->otypes, (gw->n_otypes + n) * sizeof(*gw->otypes));
    for (size_t i = 0; i < n; i++)
        gw->otypes[gw->n_otypes++] = (pl_sig_otype_t){ .type = pl_xstrdup(types[i]) };
}

void pl_sig_gateway_add_hooks(pl_sig_gateway_t *gw, const pl_sig_hooks_t *hooks, void *arg)
{
    PL_ASSERT(!gw->started);
    gw->hooks = pl_xrealloc(gw->hooks, (gw->n_hooks + 1) * sizeof(*gw->hooks));
    gw->hooks[gw->n_hooks++] = (pl_sig_hookent_t){ hooks, arg };
}

int pl_sig_gateway_add_http_routes(pl_sig_gateway_t *gw, const pl_sig_http_route_t *routes,
                                   size_t n, void *arg)
{
    PL_ASSERT(!gw->started);
    gw->routes = pl_xrealloc(gw->routes, (gw->n_routes + n) * sizeof(*gw->routes));
    for (size_t i = 0; i < n; i++)
        gw->routes[gw->n_routes++] = (pl_sig_rentry_t){ &routes[i], arg };
    return 0;
}

static int hentry_cmp(const void *a, const void *b)
{
    return strcmp(((const pl_sig_hentry_t *)a)->h->type, ((const pl_sig_hentry_t *)b)->h->type);
}

static int otype_cmp(const void *a, const void *b)
{
    return strcmp(((const pl_sig_otype_t *)a)->type, ((const pl_sig_otype_t *)b)->type);
}

const pl_sig_hentry_t *pl_sig_handler_find(const pl_sig_gateway_t *gw, const char *type)
{
    pl_sig_handler_t key_h = { .type = type };
    pl_sig_hentry_t key = { .h = &key_h };
    return bsearch(&key, gw->handlers, gw->n_handlers, sizeof(key), hentry_cmp);
}

pl_metric_id_t pl_sig_out_metric(const pl_sig_gateway_t *gw, const char *type)
{
    pl_sig_otype_t key = { .type = (char *)(uintptr_t)type };
    const pl_sig_otype_t *o = bsearch(&key, gw->otypes, gw->n_otypes, sizeof(key), otype_cmp);
    return o ? o->m_out : gw->m.out_other;
}

/* Adds "<type>.result" of every handler to the out types, drops duplicates and sorts
 * both tables; lookups bsearch them from then on. */
void pl_sig_gateway_seal(pl_sig_gateway_t *gw)
{
    gw->otypes = pl_xrealloc(gw->otypes, (gw->n_otypes + gw->n_handlers) * sizeof(*gw->otypes));
    for (size_t i = 0; i < gw->n_handlers; i++) {
        char buf[PL_SIG_TYPE_MAX + 8];
        snprintf(buf, sizeof(buf), "%s.result", gw->handlers[i].h->type);
        gw->otypes[gw->n_otypes++] = (pl_sig_otype_t){ .type = pl_xstrdup(buf) };
    }
    qsort(gw->otypes, gw->n_otypes, sizeof(*gw->otypes), otype_cmp);
    size_t w = 0;
    for (size_t i = 0; i < gw->n_otypes; i++) {
        if (w && strcmp(gw->otypes[w - 1].type, gw->otypes[i].type) == 0) {
            free(gw->otypes[i].type);
            continue;
        }
        gw->otypes[w++] = gw->otypes[i];
    }
    gw->n_otypes = w;
    qsort(gw->handlers, gw->n_handlers, sizeof(*gw->handlers), hentry_cmp);
    gw->started = true;
}
