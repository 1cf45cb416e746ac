/* test_gpoll.c: the epoll-backed GPollFunc of the media loops (sfu_gpoll.c) against
 * real pipes: readiness reaches the right source, events change, a closed descriptor
 * whose number is reused is found (at once after pl_gpoll_changed, within the 100 ms
 * re-check without it), two sources on one descriptor, and a thread without the epoll
 * set falling back to g_poll(). */
#include "relay/sfu/sfu_gpoll.h"

#include <errno.h>
#include <glib-unix.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <unistd.h>

typedef struct fired { int count; int fd; bool drain; } fired_t;

static gboolean on_fd(gint fd, GIOCondition cond, gpointer data)
{
    fired_t *f = data;
    (void)cond;
    f->count++;
    f->fd = fd;
    if (f->drain) {
        char buf[64];
        (void)!read(fd, buf, sizeof(buf));
    }
    return G_SOURCE_CONTINUE;
}

static GSource *watch(GMainContext *ctx, int fd, GIOCondition cond, fired_t *f)
{
    GSource *s = g_unix_fd_source_new(fd, cond);
    g_source_set_callback(s, G_SOURCE_FUNC(on_fd), f, NULL);
    g_source_attach(s, ctx);
    return s;
}

static void drop(GSource *s)
{
    g_source_destroy(s);
    g_source_unref(s);
}

static gboolean keep_ticking(gpointer data)
{
    (void)data;
    return G_SOURCE_CONTINUE;
}

/* Iterates until f fired or ms passed; returns the milliseconds it took (ms if never). */
static gint64 run_until(GMainContext *ctx, const fired_t *f, int want, gint64 ms)
{
    gint64 start = g_get_monotonic_time(), end = start + ms * 1000;
    GSource *tick = g_timeout_source_new(5);
    g_source_set_callback(tick, keep_ticking, NULL, NULL);
    g_source_attach(tick, ctx);
    while (f->count < want && g_get_monotonic_time() < end)
        g_main_context_iteration(ctx, TRUE);
    drop(tick);
    return (g_get_monotonic_time() - start) / 1000;
}

static void test_ready_and_idle(void **state)
{
    (void)state;
    GMainContext *ctx = g_main_context_new();
    assert_int_equal(pl_gpoll_attach(ctx), 0);
    int p[2], q[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(pipe(q), 0);
    fired_t fp = { .drain = true }, fq = { .drain = true };
    GSource *sp = watch(ctx, p[0], G_IO_IN, &fp), *sq = watch(ctx, q[0], G_IO_IN, &fq);
    assert_false(g_main_context_iteration(ctx, FALSE));     /* nothing readable */
    assert_int_equal(write(q[1], "x", 1), 1);
    run_until(ctx, &fq, 1, 1000);
    assert_int_equal(fq.count, 1);
    assert_int_equal(fp.count, 0);                          /* only the ready one */
    assert_false(g_main_context_iteration(ctx, FALSE));     /* drained: level gone */
    /* Level-triggered like poll(): undrained data keeps the source ready. */
    fp.drain = false;
    assert_int_equal(write(p[1], "y", 1), 1);
    run_until(ctx, &fp, 3, 1000);
    assert_true(fp.count >= 3);
    /* The events of a descriptor change: watch for writability on the write end. */
    fired_t fw = { 0 };
    GSource *sw = watch(ctx, q[1], G_IO_OUT, &fw);
    run_until(ctx, &fw, 1, 1000);
    assert_int_equal(fw.count, 1);
    drop(sw);
    drop(sp);
    drop(sq);
    pl_gpoll_detach(ctx);
    close(p[0]), close(p[1]), close(q[0]), close(q[1]);
    g_main_context_unref(ctx);
}

/* Closes the watched pipe and makes a new one on the same numbers, then checks the
 * new read end's events arrive within the bound. */
static void reuse_case(bool announce, gint64 bound_ms)
{
    GMainContext *ctx = g_main_context_new();
    assert_int_equal(pl_gpoll_attach(ctx), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    fired_t f1 = { .drain = true };
    GSource *s1 = watch(ctx, p[0], G_IO_IN, &f1);
    assert_false(g_main_context_iteration(ctx, FALSE));     /* registered now */
    int old = p[0];
    drop(s1);
    close(p[0]), close(p[1]);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(p[0], old);                            /* the number is reused */
    fired_t f2 = { .drain = true };
    GSource *s2 = watch(ctx, p[0], G_IO_IN, &f2);
    if (announce)
        pl_gpoll_changed();
    assert_int_equal(write(p[1], "z", 1), 1);
    gint64 took = run_until(ctx, &f2, 1, 2000);
    assert_int_equal(f2.count, 1);
    assert_true(took <= bound_ms);
    drop(s2);
    pl_gpoll_detach(ctx);
    close(p[0]), close(p[1]);
    g_main_context_unref(ctx);
}

static void test_reuse_announced(void **state)
{
    (void)state;
    reuse_case(true, 50);
}

static void test_reuse_safety_net(void **state)
{
    (void)state;
    reuse_case(false, 400);
}

static void test_duplicate_descriptor(void **state)
{
    (void)state;
    GMainContext *ctx = g_main_context_new();
    assert_int_equal(pl_gpoll_attach(ctx), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    fired_t a = { 0 }, b = { 0 };
    GSource *sa = watch(ctx, p[0], G_IO_IN, &a), *sb = watch(ctx, p[0], G_IO_IN, &b);
    assert_int_equal(write(p[1], "d", 1), 1);
    run_until(ctx, &b, 1, 1000);
    run_until(ctx, &a, 1, 1000);
    assert_true(a.count >= 1 && b.count >= 1);
    drop(sa);
    drop(sb);
    /* After the duplicate is gone the epoll path serves again. */
    fired_t c = { .drain = true };
    char buf[8];
    (void)!read(p[0], buf, sizeof(buf));
    GSource *sc = watch(ctx, p[0], G_IO_IN, &c);
    assert_false(g_main_context_iteration(ctx, FALSE));
    assert_int_equal(write(p[1], "e", 1), 1);
    run_until(ctx, &c, 1, 1000);
    assert_int_equal(c.count, 1);
    drop(sc);
    pl_gpoll_detach(ctx);
    assert_int_equal(pl_gpoll_attach(ctx), 0);              /* attach again works */
    assert_int_equal(pl_gpoll_attach(ctx), -EBUSY);         /* once per thread */
    pl_gpoll_detach(ctx);
    close(p[0]), close(p[1]);
    g_main_context_unref(ctx);
}

static gpointer other_thread(gpointer data)
{
    GMainContext *ctx = data;
    int p[2];
    fired_t f = { .drain = true };
    if (pipe(p) != 0)
        return GINT_TO_POINTER(0);
    GSource *s = watch(ctx, p[0], G_IO_IN, &f);
    (void)!write(p[1], "t", 1);
    run_until(ctx, &f, 1, 1000);
    drop(s);
    close(p[0]), close(p[1]);
    return GINT_TO_POINTER(f.count);
}

static void test_other_thread_falls_back(void **state)
{
    (void)state;
    GMainContext *ctx = g_main_context_new();
    assert_int_equal(pl_gpoll_attach(ctx), 0);
    GThread *t = g_thread_new("gpoll-other", other_thread, ctx);
    assert_int_equal(GPOINTER_TO_INT(g_thread_join(t)), 1);
    pl_gpoll_detach(ctx);
    pl_gpoll_changed();                                     /* no state: a no-op */
    g_main_context_unref(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_and_idle),
        cmocka_unit_test(test_reuse_announced),
        cmocka_unit_test(test_reuse_safety_net),
        cmocka_unit_test(test_duplicate_descriptor),
        cmocka_unit_test(test_other_thread_falls_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
