/* test_rtp_munger.c: sequence/timestamp continuity across simulcast switches, stale and
 * dropped packets, wrap-around; receiver statistics (loss, fraction, jitter, LSR/DLSR)
 * and round-trip time. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "relay/sfu/pl_rtp.h"

#define A 0xaaaa0001u
#define B 0xbbbb0002u
#define C 0xcccc0003u

static void map_ok(pl_rtp_munger_t *m, uint32_t src, uint16_t seq, uint32_t ts,
                   uint64_t now_us, uint16_t want_seq, uint32_t want_ts)
{
    uint16_t os;
    uint32_t ot;
    assert_int_equal(pl_rtp_munger_map(m, src, seq, ts, now_us, 90000, &os, &ot), 0);
    assert_int_equal(os, want_seq);
    assert_int_equal(ot, want_ts);
}

static void test_switch_continuity(void **state)
{
    (void)state;
    pl_rtp_munger_t m;
    memset(&m, 0, sizeof(m));
    map_ok(&m, A, 1000, 5000, 1000000, 1000, 5000);
    map_ok(&m, A, 1001, 5960, 1010000, 1001, 5960);
    /* Switch to B 20 ms later: seq continues, ts advances by 20 ms of 90 kHz. */
    map_ok(&m, B, 50, 123456, 1030000, 1002, 5960 + 1800);
    map_ok(&m, B, 51, 123456 + 3000, 1060000, 1003, 5960 + 1800 + 3000);
    /* Older than the switch point: dropped. */
    uint16_t os;
    uint32_t ot;
    assert_int_equal(pl_rtp_munger_map(&m, B, 49, 123000, 1061000, 90000, &os, &ot), -ESTALE);
    /* Reordering after the switch keeps the mapping. */
    map_ok(&m, B, 53, 129456, 1070000, 1005, 5960 + 1800 + 6000);
    map_ok(&m, B, 52, 126456, 1071000, 1004, 5960 + 1800 + 3000);
    assert_int_equal(m.last_out_seq, 1005);
    /* Switch back to A at once: the timestamp still moves forward by at least 1. */
    map_ok(&m, A, 1100, 77, 1070000, 1006, 5960 + 1800 + 6000 + 1);
}

static void test_drop_and_wrap(void **state)
{
    (void)state;
    pl_rtp_munger_t m;
    memset(&m, 0, sizeof(m));
    assert_true(pl_rtp_munger_drop(&m, A, 5));          /* nothing sent yet */
    map_ok(&m, A, 10, 100, 0, 10, 100);
    assert_true(pl_rtp_munger_drop(&m, A, 11));         /* next in order: no gap */
    map_ok(&m, A, 12, 200, 1, 11, 200);
    assert_false(pl_rtp_munger_drop(&m, A, 14));        /* 13 not seen: must forward */
    assert_false(pl_rtp_munger_drop(&m, B, 13));        /* another source */
    map_ok(&m, A, 13, 300, 2, 12, 300);
    /* A source starting right before the wrap continues through it. */
    map_ok(&m, C, 65535, 0xfffffff0u, 20002, 13, 300 + 1800);
    map_ok(&m, C, 0, 0x10, 20003, 14, 300 + 1800 + 0x20);
    map_ok(&m, C, 1, 0x20, 20004, 15, 300 + 1800 + 0x30);
    uint16_t os;
    uint32_t ot;
    assert_int_equal(pl_rtp_munger_map(&m, C, 65534, 0, 20005, 90000, &os, &ot), -ESTALE);
}

static void test_resync(void **state)
{
    (void)state;
    pl_rtp_munger_t m;
    memset(&m, 0, sizeof(m));
    pl_rtp_munger_resync(&m);                       /* before start: no effect */
    assert_false(m.resync);
    map_ok(&m, A, 100, 1000, 0, 100, 1000);
    map_ok(&m, A, 101, 1900, 10000, 101, 1900);
    /* Forwarding paused for 1 s (500 packets not sent), then resumed. */
    pl_rtp_munger_resync(&m);
    map_ok(&m, A, 601, 91900, 1010000, 102, 1900 + 90000);
    map_ok(&m, A, 602, 92800, 1020000, 103, 1900 + 90900);
}

static void test_rx_stats_loss(void **state)
{
    (void)state;
    pl_rtp_rx_stats_t s;
    memset(&s, 0, sizeof(s));
    /* 100 sequence numbers across the wrap, 5 of them lost. */
    int got = 0;
    for (int i = 0; i < 100; i++) {
        uint16_t seq = (uint16_t)(65500 + i);
        if (i % 20 == 7)
            continue;
        pl_rtp_rx_update(&s, seq, (uint32_t)i * 3000, (uint32_t)i * 3000);
        got++;
    }
    assert_int_equal(got, 95);
    pl_rtcp_rb_t rb;
    pl_rtp_rx_report(&s, 42, 0, &rb);
    assert_int_equal(rb.ssrc, 42);
    assert_int_equal(rb.cumulative_lost, 5);
    assert_int_equal(rb.fraction_lost, 5 * 256 / 100);
    assert_int_equal(rb.highest_seq, 65536u + 63);
    assert_int_equal(rb.jitter, 0);         /* arrival spacing equals the ts spacing */
    assert_int_equal(rb.lsr, 0);
    /* Second interval, no loss: fraction 0, cumulative unchanged. */
    for (int i = 100; i < 110; i++)
        pl_rtp_rx_update(&s, (uint16_t)(65500 + i), (uint32_t)i * 3000, (uint32_t)i * 3000);
    pl_rtp_rx_report(&s, 42, 0, &rb);
    assert_int_equal(rb.fraction_lost, 0);
    assert_int_equal(rb.cumulative_lost, 5);
    /* Duplicates make cumulative loss negative (RFC 3550 §6.4.1 allows it). */
    for (int i = 0; i < 8; i++)
        pl_rtp_rx_update(&s, (uint16_t)(65500 + 109), 0, 0);
    pl_rtp_rx_report(&s, 42, 0, &rb);
    assert_int_equal(rb.cumulative_lost, -3);
}

static void test_rx_stats_jitter_restart_sr(void **state)
{
    (void)state;
    pl_rtp_rx_stats_t s;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 200; i++)       /* arrivals alternate 0 and 90 ticks late */
        pl_rtp_rx_update(&s, (uint16_t)i, (uint32_t)i * 900, (uint32_t)i * 900 + (i & 1) * 90);
    pl_rtcp_rb_t rb;
    pl_rtp_rx_report(&s, 1, 0, &rb);
    assert_true(rb.jitter > 60 && rb.jitter <= 90);
    /* A jump of 10000: ignored once, accepted as a restart when the next follows. */
    pl_rtp_rx_update(&s, 10200, 0, 0);
    pl_rtp_rx_report(&s, 1, 0, &rb);
    assert_int_equal(rb.highest_seq, 199);
    pl_rtp_rx_update(&s, 10201, 0, 0);
    pl_rtp_rx_report(&s, 1, 0, &rb);
    assert_int_equal(rb.highest_seq, 10201);
    assert_int_equal(rb.cumulative_lost, 0);
    /* LSR is the middle of the SR's NTP time; DLSR counts 1/65536 s since it came. */
    pl_rtp_rx_on_sr(&s, UINT64_C(0x1122334455667788), 5000000);
    pl_rtp_rx_report(&s, 1, 5500000, &rb);
    assert_int_equal(rb.lsr, 0x33445566);
    assert_int_equal(rb.dlsr, 32768);
    /* RTT: now 0.25 s after LSR + DLSR (in NTP middle-32 units). */
    uint64_t now_ntp = ((uint64_t)(0x33445566u + 32768u + 16384u)) << 16;
    assert_int_equal(pl_rtcp_rtt_us(now_ntp, 0x33445566u, 32768), 250000);
    assert_int_equal(pl_rtcp_rtt_us(now_ntp, 0, 32768), -1);
    assert_int_equal(pl_rtcp_rtt_us(now_ntp, 0x33445566u, 65536), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_switch_continuity),
        cmocka_unit_test(test_drop_and_wrap),
        cmocka_unit_test(test_resync),
        cmocka_unit_test(test_rx_stats_loss),
        cmocka_unit_test(test_rx_stats_jitter_restart_sr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
