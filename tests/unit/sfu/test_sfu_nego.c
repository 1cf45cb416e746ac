/* test_sfu_nego.c: the SFU's C API and its negotiation, without media: a fake sink
 * collects the events a media thread emits. Joins (limit, duplicates), the answer to a
 * Chromium offer (recvonly publish lines, simulcast recv, no RTX or transport-cc
 * upstream, the data channel rejected), SFU offers when others publish (sendonly lines
 * with the client's own payload types and extension ids), glare, bad SDP, an answer
 * without an offer, leave and the re-offer with inactive lines. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/unit/sfu/tsan_glib.h"
#include "relay/sfu/sfu_int.h"

typedef struct ev {
    uint64_t to;
    char *json;
} ev_t;

/* pthread primitives, not GLib's: ThreadSanitizer cannot see GLib's futex locks. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static GQueue g_events = G_QUEUE_INIT;

static void sink_send(void *ctx, uint64_t pid, const char *json)
{
    (void)ctx;
    ev_t *e = g_new(ev_t, 1);
    e->to = pid;
    e->json = g_strdup(json);
    pthread_mutex_lock(&g_lock);
    g_queue_push_tail(&g_events, e);
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
}

/* Waits for the next event to `to` whose JSON contains `type`; earlier events to that
 * participant of other types are dropped. Returns the owned JSON. */
static char *wait_event(uint64_t to, const char *type)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += 5;
    char want[64];
    snprintf(want, sizeof(want), "\"type\":\"%s\"", type);
    pthread_mutex_lock(&g_lock);
    for (;;) {
        for (GList *l = g_events.head; l; l = l->next) {
            ev_t *e = l->data;
            if (e->to != to)
                continue;
            g_queue_delete_link(&g_events, l);
            if (strstr(e->json, want)) {
                pthread_mutex_unlock(&g_lock);
                char *j = e->json;
                g_free(e);
                return j;
            }
            g_free(e->json);
            g_free(e);
            break;
        }
        bool more = false;
        for (GList *l = g_events.head; l; l = l->next)
            more |= ((ev_t *)l->data)->to == to;
        if (!more && pthread_cond_timedwait(&g_cond, &g_lock, &end) != 0) {
            pthread_mutex_unlock(&g_lock);
            fail_msg("no %s event for %llu", type, (unsigned long long)to);
        }
    }
}

/* Extracts and unescapes the "sdp" string of an event. */
static char *event_sdp(const char *json)
{
    const char *p = strstr(json, "\"sdp\":\"");
    assert_non_null(p);
    p += 7;
    GString *s = g_string_new(NULL);
    for (; *p && *p != '"'; p++) {
        if (*p == '\\') {
            p++;
            g_string_append_c(s, *p == 'r' ? '\r' : *p == 'n' ? '\n' : *p);
        } else {
            g_string_append_c(s, *p);
        }
    }
    return g_string_free(s, FALSE);
}

static char *g_offer;

static pl_sfu_t *make_sfu(void)
{
    static const pl_opt_table_t *const schema[] = { &pl_sfu_options, NULL };
    const char *ov[] = { "sfu.media_threads=2", "sfu.max_participants=2" };
    pl_config_source_t src = { .overrides = ov, .n_overrides = 2 };
    pl_config_t *cfg;
    pl_config_error_t err;
    assert_int_equal(pl_config_load(schema, &src, &cfg, &err), 0);
    pl_sfu_sink_t sink = { sink_send, NULL };
    pl_sfu_t *sfu;
    assert_int_equal(pl_sfu_create(cfg, NULL, &sink, &sfu), 0);
    pl_config_unref(cfg);
    return sfu;
}

static int setup(void **state)
{
    (void)state;
    char path[1024];
    const char *root = getenv("PL_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/tests/unit/sfu/data/chrome_offer.sdp", root ? root : ".");
    return g_file_get_contents(path, &g_offer, NULL, NULL) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    g_free(g_offer);
    return 0;
}

static pl_sdp_desc_t *parse(const char *sdp)
{
    pl_sdp_desc_t *d = pl_sdp_desc_new();
    char err[128];
    assert_int_equal(pl_sdp_parse(sdp, d, err, sizeof(err)), 0);
    return d;
}

static void check_answer(const char *json)
{
    char *sdp = event_sdp(json);
    pl_sdp_desc_t *d = parse(sdp);
    assert_int_equal(d->n_media, 3);
    const pl_sdp_media_t *a = &d->media[0], *v = &d->media[1];
    assert_int_equal(a->dir, PL_DIR_RECVONLY);
    assert_int_equal(a->n_codecs, 1);
    assert_int_equal(a->codecs[0].pt, 111);
    assert_int_equal(v->dir, PL_DIR_RECVONLY);
    assert_int_equal(v->n_codecs, 1);               /* VP8, no RTX upstream */
    assert_int_equal(v->codecs[0].pt, 96);
    assert_int_equal(v->codecs[0].fb & PL_FB_TWCC, 0);
    assert_int_equal(pl_sdp_ext_id(v, PL_EXT_TWCC), 0);
    assert_int_equal(pl_sdp_ext_id(v, PL_EXT_RID), 10);
    assert_int_equal(pl_sdp_ext_id(v, PL_EXT_MID), 4);
    assert_string_equal(v->setup, "passive");
    assert_string_equal(v->fp_alg, "sha-256");
    assert_true(strstr(sdp, "a=simulcast:recv f;h;q\r\n") != NULL);
    assert_int_equal(d->media[2].port, 0);
    assert_true(d->n_cands >= 1);
    assert_true(strstr(d->cands[0], "127.0.0.1") != NULL);
    free(d);
    g_free(sdp);
}

/* Turns an SFU offer into the answer a browser would send: same m-lines, receiving
 * what the SFU sends, active DTLS role. */
static char *answer_for(const char *offer)
{
    gchar **lines = g_strsplit(offer, "\r\n", -1);
    GString *out = g_string_new(NULL);
    for (gchar **l = lines; *l && **l; l++) {
        const char *line = *l;
        if (strcmp(line, "a=sendonly") == 0)
            line = "a=recvonly";
        else if (strcmp(line, "a=recvonly") == 0)
            line = "a=sendonly";
        else if (strcmp(line, "a=setup:actpass") == 0)
            line = "a=setup:active";
        else if (g_str_has_prefix(line, "a=ssrc") || g_str_has_prefix(line, "a=msid:") ||
                 g_str_has_prefix(line, "a=candidate") || g_str_has_prefix(line, "a=rid") ||
                 g_str_has_prefix(line, "a=simulcast"))
            continue;
        else if (g_str_has_prefix(line, "a=ice-ufrag:"))
            line = "a=ice-ufrag:Qx7f";
        else if (g_str_has_prefix(line, "a=ice-pwd:"))
            line = "a=ice-pwd:0dC3Tf1hYkq9yJ2mJ0iWl3Dd";
        else if (g_str_has_prefix(line, "a=fingerprint:"))
            line = "a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:"
                   "19:E5:7C:AB:3E:4B:64:2E:62:C6:F9:E7:9A:52:1C:DE";
        g_string_append_printf(out, "%s\r\n", line);
    }
    g_strfreev(lines);
    return g_string_free(out, FALSE);
}

static void test_join_limits(void **state)
{
    (void)state;
    pl_sfu_t *sfu = make_sfu();
    assert_int_equal(pl_sfu_join(sfu, "bad room", 1, NULL), -EINVAL);
    assert_int_equal(pl_sfu_join(sfu, "r", 0, NULL), -EINVAL);
    assert_int_equal(pl_sfu_join(sfu, "r1", 1, &(pl_sfu_join_opts_t){ "Ann \"A\"" }), 0);
    assert_int_equal(pl_sfu_join(sfu, "r1", 1, NULL), -EEXIST);
    char *j = wait_event(1, "sfu.joined");
    assert_non_null(strstr(j, "\"room\":\"r1\",\"participant\":1,\"participants\":[]"));
    g_free(j);
    assert_int_equal(pl_sfu_join(sfu, "r1", 2, NULL), 0);
    j = wait_event(1, "sfu.participant_joined");
    assert_non_null(strstr(j, "\"participant\":2"));
    g_free(j);
    j = wait_event(2, "sfu.joined");
    assert_non_null(strstr(j, "{\"participant\":1,\"display\":\"Ann \\\"A\\\"\"}"));
    g_free(j);
    assert_int_equal(pl_sfu_join(sfu, "r1", 3, NULL), 0);
    j = wait_event(3, "sfu.error");
    assert_non_null(strstr(j, "\"code\":\"room_full\""));
    g_free(j);
    /* The refused participant is not in the directory any more. */
    assert_int_equal(pl_sfu_offer(sfu, 3, "v=0"), -ENOENT);
    assert_int_equal(pl_sfu_offer(sfu, 99, g_offer), -ENOENT);
    assert_int_equal(pl_sfu_mute(sfu, 1, "screen", true), -EINVAL);
    assert_int_equal(pl_sfu_set_quality(sfu, 1, 0, (pl_sfu_quality_t)7), -EINVAL);
    pl_sfu_counts_t c;
    pl_sfu_get_counts(sfu, &c);
    assert_int_equal(c.rooms, 1);
    assert_int_equal(c.participants, 2);
    assert_int_equal(pl_sfu_leave(sfu, 2), 0);
    assert_int_equal(pl_sfu_leave(sfu, 2), -ENOENT);
    j = wait_event(1, "sfu.participant_left");
    g_free(j);
    pl_sfu_destroy(sfu);
}

static void test_offer_answer_flow(void **state)
{
    (void)state;
    pl_sfu_t *sfu = make_sfu();
    assert_int_equal(pl_sfu_join(sfu, "room-a", 10, NULL), 0);
    g_free(wait_event(10, "sfu.joined"));
    assert_int_equal(pl_sfu_offer(sfu, 10, "v=0\r\nnonsense"), 0);
    char *j = wait_event(10, "sfu.error");
    assert_non_null(strstr(j, "\"code\":\"bad_sdp\""));
    g_free(j);
    assert_int_equal(pl_sfu_answer(sfu, 10, g_offer), 0);
    j = wait_event(10, "sfu.error");
    assert_non_null(strstr(j, "\"code\":\"no_offer\""));
    g_free(j);
    assert_int_equal(pl_sfu_offer(sfu, 10, g_offer), 0);
    j = wait_event(10, "sfu.answer");
    check_answer(j);
    g_free(j);

    /* A second publisher: both get an SFU offer for the other's two tracks. */
    assert_int_equal(pl_sfu_join(sfu, "room-a", 11, NULL), 0);
    assert_int_equal(pl_sfu_offer(sfu, 11, g_offer), 0);
    g_free(wait_event(11, "sfu.answer"));
    j = wait_event(11, "sfu.offer");
    assert_non_null(strstr(j, "\"tracks\":[{\"mid\":\"s1\",\"participant\":10,\"track\":1,\"kind\":\"audio\""));
    char *offer = event_sdp(j);
    g_free(j);
    pl_sdp_desc_t *d = parse(offer);
    assert_int_equal(d->n_media, 5);
    const pl_sdp_media_t *sa = &d->media[3], *sv = &d->media[4];
    assert_string_equal(sa->mid, "s1");
    assert_int_equal(sa->dir, PL_DIR_SENDONLY);
    assert_int_equal(sa->codecs[0].pt, 111);
    assert_int_equal(pl_sdp_ext_id(sa, PL_EXT_AUDIO_LEVEL), 1);
    assert_int_equal(sv->dir, PL_DIR_SENDONLY);
    assert_int_equal(sv->codecs[0].pt, 96);
    assert_int_equal(sv->codecs[0].rtx_pt, 97);     /* the client's own RTX number */
    assert_true(sv->ssrc != 0 && sv->rtx_ssrc != 0);
    assert_int_equal(pl_sdp_ext_id(sv, PL_EXT_RID), 0);
    assert_string_equal(sv->setup, "actpass");
    assert_true(strstr(offer, "a=msid:p10 t2\r\n") != NULL);
    /* The publish line is still offered receive-only with its simulcast. */
    assert_int_equal(d->media[1].dir, PL_DIR_RECVONLY);
    assert_true(strstr(offer, "a=simulcast:recv f;h;q\r\n") != NULL);
    free(d);

    /* Glare: a client offer while the SFU's is pending. */
    assert_int_equal(pl_sfu_offer(sfu, 11, g_offer), 0);
    j = wait_event(11, "sfu.error");
    assert_non_null(strstr(j, "\"code\":\"glare\""));
    g_free(j);
    /* A wrong answer (one m-line short) is refused, then a right one accepted. */
    char *ans = answer_for(offer);
    char *cut = g_strdup(ans);
    *g_strrstr(cut, "m=video") = '\0';
    assert_int_equal(pl_sfu_answer(sfu, 11, cut), 0);
    j = wait_event(11, "sfu.error");
    assert_non_null(strstr(j, "\"code\":\"bad_sdp\""));
    g_free(j);
    g_free(cut);
    g_free(ans);
    g_free(offer);

    /* Participant 10 was offered 11's tracks too; 11 leaves: 10 gets the news and a new
     * offer in which the lines it had are inactive. */
    j = wait_event(10, "sfu.offer");
    offer = event_sdp(j);
    g_free(j);
    ans = answer_for(offer);
    assert_int_equal(pl_sfu_answer(sfu, 10, ans), 0);
    g_free(ans);
    g_free(offer);
    assert_int_equal(pl_sfu_leave(sfu, 11), 0);
    g_free(wait_event(10, "sfu.participant_left"));
    j = wait_event(10, "sfu.offer");
    assert_non_null(strstr(j, "\"tracks\":[]"));
    offer = event_sdp(j);
    g_free(j);
    d = parse(offer);
    assert_int_equal(d->n_media, 5);
    assert_int_equal(d->media[3].dir, PL_DIR_INACTIVE);
    assert_int_equal(d->media[4].dir, PL_DIR_INACTIVE);
    free(d);
    g_free(offer);
    /* Mute is announced to the room. */
    assert_int_equal(pl_sfu_mute(sfu, 10, "audio", true), 0);
    j = wait_event(10, "sfu.mute");
    assert_non_null(strstr(j, "\"participant\":10,\"kind\":\"audio\",\"muted\":true"));
    g_free(j);
    pl_sfu_destroy(sfu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_limits),
        cmocka_unit_test(test_offer_answer_flow),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
