/* test_sfu_media.c: media through the SFU end to end, without a browser: clients made
 * of the SFU's own transport code in the opposite roles (controlling ICE agent, DTLS
 * client; bench/sfu/sfu_client.c) publish synthetic Opus-like audio and three-layer
 * simulcast VP8-like video into a room over 127.0.0.1 and receive each other's. Checks:
 * every packet carries the right publisher's marks, sequence numbers stay continuous
 * across simulcast switches, a subscriber asking for low quality gets layer 0 and then
 * layer 2 again, keyframe requests reach publishers, packets a subscriber drops are
 * recovered by NACK/RTX, and a participant leaving renegotiates the others. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sfu/sfu_client.h"
#include "tests/unit/sfu/tsan_glib.h"
#include "relay/sfu/sfu_int.h"

typedef struct ev {
    uint64_t to;
    char *json;
} ev_t;

typedef struct harness {
    pl_sfu_t *sfu;
    GMainContext *ctx;
    SSL_CTX *ssl;
    char fp[128];
    pl_sfc_t *c[4];
    uint64_t id[4];
    pthread_mutex_t lock;           /* pthread, not GLib: visible to ThreadSanitizer */
    GQueue events;
    unsigned offers[4];
    uint64_t speaker[4];            /* last sfu.active_speaker seen by each client */
} harness_t;

static void sink_send(void *ctx, uint64_t pid, const char *json)
{
    harness_t *h = ctx;
    ev_t *e = g_new(ev_t, 1);
    e->to = pid;
    e->json = g_strdup(json);
    pthread_mutex_lock(&h->lock);
    g_queue_push_tail(&h->events, e);
    pthread_mutex_unlock(&h->lock);
}

static void signal_cb(void *arg, pl_sfc_t *c, const char *type, const char *sdp)
{
    harness_t *h = arg;
    for (int i = 0; i < 4; i++) {
        if (h->c[i] != c)
            continue;
        int rc = type[0] == 'o' ? pl_sfu_offer(h->sfu, h->id[i], sdp)
                                : pl_sfu_answer(h->sfu, h->id[i], sdp);
        assert_int_equal(rc, 0);
    }
}

static ev_t *pop(harness_t *h)
{
    pthread_mutex_lock(&h->lock);
    ev_t *e = g_queue_pop_head(&h->events);
    pthread_mutex_unlock(&h->lock);
    return e;
}

static void dispatch(harness_t *h)
{
    ev_t *e;
    while ((e = pop(h))) {
        for (int i = 0; i < 4; i++) {
            if (h->c[i] && h->id[i] == e->to) {
                if (strstr(e->json, "\"type\":\"sfu.offer\""))
                    h->offers[i]++;
                static const char key[] = "\"type\":\"sfu.active_speaker\",\"participant\":";
                const char *sp = strstr(e->json, key);
                if (sp)
                    h->speaker[i] = strtoull(sp + sizeof(key) - 1, NULL, 10);
                assert_int_equal(pl_sfc_on_event(h->c[i], e->json), 0);
                assert_null(strstr(e->json, "\"type\":\"sfu.error\""));
            }
        }
        g_free(e->json);
        g_free(e);
    }
}

/* Runs everything until cond holds or ms pass. */
static bool run(harness_t *h, bool (*cond)(harness_t *), int ms)
{
    gint64 end = g_get_monotonic_time() + ms * 1000;
    while (g_get_monotonic_time() < end) {
        bool busy = g_main_context_iteration(h->ctx, FALSE);
        dispatch(h);
        for (int i = 0; i < 4; i++)
            if (h->c[i])
                pl_sfc_pump(h->c[i]);
        if (cond && cond(h))
            return true;
        if (!busy)
            g_usleep(500);
    }
    return cond ? cond(h) : true;
}

static void add_client(harness_t *h, int i, uint64_t id, bool video, unsigned drop)
{
    h->id[i] = id;
    assert_int_equal(pl_sfu_join(h->sfu, "media-room", id, NULL), 0);
    pl_sfc_opts_t o = { .ctx = h->ctx, .ssl_ctx = h->ssl, .fingerprint = h->fp, .id = id,
                        .audio = true, .video = video, .layers = 3, .video_kbps = 1200,
                        .drop_every = drop, .signal = signal_cb, .arg = h };
    h->c[i] = pl_sfc_create(&o);
    assert_int_equal(pl_sfc_start(h->c[i]), 0);
}

static void harness_init(harness_t *h)
{
    memset(h, 0, sizeof(*h));
    static const pl_opt_table_t *const schema[] = { &pl_sfu_options, NULL };
    const char *ov[] = { "sfu.media_threads=1", "sfu.pli_interval=100ms" };
    pl_config_source_t src = { .overrides = ov, .n_overrides = 2 };
    pl_config_t *cfg;
    pl_config_error_t err;
    assert_int_equal(pl_config_load(schema, &src, &cfg, &err), 0);
    pthread_mutex_init(&h->lock, NULL);
    g_queue_init(&h->events);
    pl_sfu_sink_t sink = { sink_send, h };
    assert_int_equal(pl_sfu_create(cfg, NULL, &sink, &h->sfu), 0);
    pl_config_unref(cfg);
    h->ctx = g_main_context_new();
    h->ssl = pl_dtls_ctx_create(NULL, h->fp, sizeof(h->fp));
    assert_non_null(h->ssl);
}

static void harness_free(harness_t *h)
{
    for (int i = 0; i < 4; i++) {
        pl_sfc_destroy(h->c[i]);
        h->c[i] = NULL;
    }
    run(h, NULL, 50);
    pl_sfu_destroy(h->sfu);
    ev_t *e;
    while ((e = pop(h))) {
        g_free(e->json);
        g_free(e);
    }
    pthread_mutex_destroy(&h->lock);
    SSL_CTX_free(h->ssl);
    g_main_context_unref(h->ctx);
}

static const pl_sfc_src_stats_t *src(harness_t *h, int at, int from)
{
    return pl_sfc_source(h->c[at], h->id[from]);
}

static bool flowing(harness_t *h)
{
    for (int a = 0; a < 2; a++) {
        const pl_sfc_src_stats_t *s = src(h, a, 1 - a);
        if (!s || s->video_packets < 150 || s->audio_packets < 40 || s->keyframes < 1)
            return false;
    }
    return true;
}

static bool got_remb(harness_t *h)
{
    pl_sfc_totals_t t;
    pl_sfc_totals(h->c[0], &t);
    return t.remb_bps > 0;
}

/* Client 202 sends a louder audio level (-22 dBov) than 101 (-41 dBov). */
static bool speaker_known(harness_t *h)
{
    return h->speaker[0] == 202 && h->speaker[1] == 202;
}

static uint64_t g_mark;

static bool video_resumed(harness_t *h)
{
    const pl_sfc_src_stats_t *s = src(h, 1, 0);
    return s->video_packets > g_mark + 60;
}

/* Client 202 reports a 60 kbit/s downlink (REMB) until the SFU gives it a layer that
 * fits: below the top one, without a sequence gap. */
static bool remb_capped(harness_t *h)
{
    static gint64 last;
    gint64 now = g_get_monotonic_time();
    if (now - last >= 100 * 1000) {                 /* ten reports a second */
        pl_sfc_send_remb(h->c[1], 60000);
        last = now;
    }
    const pl_sfc_src_stats_t *s = src(h, 1, 0);
    return s->last_layer == 0 && s->layer_packets[0] > g_mark + 30;
}

static bool low_layer(harness_t *h)
{
    const pl_sfc_src_stats_t *s = src(h, 1, 0);
    return s->last_layer == 0 && s->layer_packets[0] > g_mark + 30;
}

static bool high_layer(harness_t *h)
{
    const pl_sfc_src_stats_t *s = src(h, 1, 0);
    return s->last_layer == 2 && s->layer_packets[2] > g_mark + 100;
}

static bool third_recovers(harness_t *h)
{
    const pl_sfc_src_stats_t *s = src(h, 2, 0);
    return s && s->seq_gaps >= 10 && s->recovered >= s->seq_gaps - 2;
}

static unsigned g_offers1, g_offers2;

static bool renegotiated(harness_t *h)
{
    return h->offers[1] > g_offers1 && h->offers[2] > g_offers2;
}

static void test_media_two_then_three(void **state)
{
    (void)state;
    harness_t h;
    harness_init(&h);
    add_client(&h, 0, 101, true, 0);
    add_client(&h, 1, 202, true, 0);
    assert_true(run(&h, flowing, 15000));
    assert_true(pl_sfc_connected(h.c[0]) && pl_sfc_connected(h.c[1]));
    for (int a = 0; a < 2; a++) {
        const pl_sfc_src_stats_t *s = src(&h, a, 1 - a);
        assert_int_equal(s->bad_marks, 0);
        assert_int_equal(s->seq_gaps, 0);
        assert_int_equal(s->last_layer, 2);         /* high quality by default */
    }
    assert_null(pl_sfc_source(h.c[0], 0));          /* no unmarked packet at all */
    assert_true(run(&h, got_remb, 3000));           /* REMB from the SFU's RTCP tick */
    pl_sfc_totals_t t;
    pl_sfc_totals(h.c[0], &t);
    assert_int_equal(t.remb_bps, 2500000);          /* the default publisher cap */
    uint64_t plis = t.plis_received;

    /* Simulcast: low quality for 101's video at 202, then high again; the output
     * sequence stays continuous across both switches. */
    g_mark = src(&h, 1, 0)->layer_packets[0];
    assert_int_equal(pl_sfu_set_quality(h.sfu, 202, 101, PL_SFU_QUALITY_LOW), 0);
    assert_true(run(&h, low_layer, 5000));
    pl_sfc_totals(h.c[0], &t);
    assert_true(t.plis_received > plis);            /* the switch asked for a key frame */
    g_mark = src(&h, 1, 0)->layer_packets[2];
    assert_int_equal(pl_sfu_set_quality(h.sfu, 202, 0, PL_SFU_QUALITY_HIGH), 0);
    assert_true(run(&h, high_layer, 5000));
    assert_int_equal(src(&h, 1, 0)->seq_gaps, 0);
    assert_int_equal(src(&h, 1, 0)->bad_marks, 0);

    /* Bandwidth: the subscriber's REMB says its link is narrow; the SFU steps it down to
     * the lowest layer (one layer per report, held for a while), sequence unbroken. */
    g_mark = src(&h, 1, 0)->layer_packets[0];
    assert_true(run(&h, remb_capped, 8000));
    assert_int_equal(src(&h, 1, 0)->seq_gaps, 0);
    assert_int_equal(src(&h, 1, 0)->bad_marks, 0);
    assert_true(run(&h, speaker_known, 3000));

    /* Mute: 101's video stops reaching 202 (audio goes on), then resumes. */
    assert_int_equal(pl_sfu_mute(h.sfu, 101, "video", true), 0);
    run(&h, NULL, 300);
    uint64_t v0 = src(&h, 1, 0)->video_packets, a0 = src(&h, 1, 0)->audio_packets;
    run(&h, NULL, 500);
    assert_int_equal(src(&h, 1, 0)->video_packets, v0);
    assert_true(src(&h, 1, 0)->audio_packets > a0 + 10);
    uint64_t keys = src(&h, 1, 0)->keyframes;
    g_mark = v0;
    assert_int_equal(pl_sfu_mute(h.sfu, 101, "video", false), 0);
    assert_true(run(&h, video_resumed, 3000));
    assert_true(src(&h, 1, 0)->keyframes > keys);   /* unmute asked for a key frame */
    assert_int_equal(src(&h, 1, 0)->seq_gaps, 0);   /* and the sequence goes on */

    /* A third participant that loses every 15th video packet gets them back. */
    add_client(&h, 2, 303, false, 15);
    assert_true(run(&h, third_recovers, 15000));
    pl_sfu_counts_t c;
    pl_sfu_get_counts(h.sfu, &c);
    assert_int_equal(c.participants, 3);
    assert_int_equal(c.connected, 3);

    /* 101 leaves: 202 and 303 are re-offered without its tracks. */
    run(&h, NULL, 300);             /* let pending renegotiations settle */
    g_offers1 = h.offers[1];
    g_offers2 = h.offers[2];
    assert_int_equal(pl_sfu_leave(h.sfu, 101), 0);
    pl_sfc_destroy(h.c[0]);
    h.c[0] = NULL;
    assert_true(run(&h, renegotiated, 5000));
    harness_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_media_two_then_three),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
