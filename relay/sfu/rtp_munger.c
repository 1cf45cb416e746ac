/* rtp_munger.c: sequence-number/timestamp continuity toward a subscriber across source
 * switches, and receiver statistics for RTCP reports (RFC 3550 appendix A).
 *
 * Why a munger: a subscriber sees one RTP stream per track while the SFU switches
 * between simulcast layers (different SSRCs, unrelated sequence and timestamp bases).
 * Its jitter buffer and NACK logic break on jumps, so each switch continues the output
 * sequence at last+1 and the timestamp by the elapsed wall time (RFC 7667 §3.7 leaves
 * this to the middlebox; it is what Janus, mediasoup and LiveKit do).
 *
 * What it does not: choose when to switch (the forwarder switches on keyframes), keep
 * history for retransmissions (the forwarder's sent map does).
 *
 * Threading: objects belong to the caller (the room's media thread). */
#include "relay/sfu/pl_rtp.h"

#include <errno.h>
#include <string.h>

static void munger_start(pl_rtp_munger_t *m, uint32_t src, uint16_t in_seq, uint32_t in_ts,
                         uint64_t now_us, uint32_t clock_hz)
{
    uint16_t out_seq = in_seq;
    uint32_t out_ts = in_ts;
    if (m->started) {
        out_seq = (uint16_t)(m->last_out_seq + 1);
        uint64_t elapsed = now_us > m->last_out_us ? now_us - m->last_out_us : 0;
        uint64_t ticks = elapsed * clock_hz / 1000000u;
        out_ts = m->last_out_ts + (uint32_t)(ticks ? ticks : 1);
    }
    m->started = true;
    m->src_ssrc = src;
    m->seq_offset = (uint16_t)(out_seq - in_seq);
    m->ts_offset = out_ts - in_ts;
    m->switch_in = in_seq;
    m->highest_in = in_seq;
    m->last_out_seq = out_seq;
    m->last_out_ts = out_ts;
    m->last_out_us = now_us;
}

int pl_rtp_munger_map(pl_rtp_munger_t *m, uint32_t src_ssrc, uint16_t in_seq,
                      uint32_t in_ts, uint64_t now_us, uint32_t clock_hz,
                      uint16_t *out_seq, uint32_t *out_ts)
{
    if (!m->started || src_ssrc != m->src_ssrc || m->resync) {
        munger_start(m, src_ssrc, in_seq, in_ts, now_us, clock_hz);
        m->resync = false;
    } else if (pl_seq_newer(m->switch_in, in_seq)) {
        return -ESTALE;     /* sent before the switch: its slot belongs to the old source */
    }
    uint16_t os = (uint16_t)(in_seq + m->seq_offset);
    uint32_t ot = in_ts + m->ts_offset;
    if (pl_seq_newer(in_seq, m->highest_in)) {
        m->highest_in = in_seq;
        m->last_out_seq = os;
    }
    if ((int32_t)(ot - m->last_out_ts) > 0) {
        m->last_out_ts = ot;
        m->last_out_us = now_us;
    }
    *out_seq = os;
    *out_ts = ot;
    return 0;
}

bool pl_rtp_munger_drop(pl_rtp_munger_t *m, uint32_t src_ssrc, uint16_t in_seq)
{
    if (!m->started)
        return true;            /* nothing sent yet: no gap can appear */
    if (src_ssrc != m->src_ssrc || in_seq != (uint16_t)(m->highest_in + 1))
        return false;
    /* Later packets of this source shift down by one. A retransmission of a packet
     * older than this one would now map one too low; the forwarder answers NACKs from
     * its sent map instead of re-mapping, so that never happens. */
    m->highest_in = in_seq;
    m->seq_offset = (uint16_t)(m->seq_offset - 1);
    return true;
}

/* ---- RFC 3550 A.1 / A.3 / A.8 ------------------------------------------------------ */

#define SEQ_MOD (1u << 16)
#define MAX_DROPOUT 3000u
#define MAX_MISORDER 100u

static void rx_init_seq(pl_rtp_rx_stats_t *s, uint16_t seq)
{
    s->base_seq = seq;
    s->max_seq = seq;
    s->bad_seq = SEQ_MOD + 1;
    s->cycles = 0;
    s->received = 0;
    s->received_prior = 0;
    s->expected_prior = 0;
}

void pl_rtp_rx_update(pl_rtp_rx_stats_t *s, uint16_t seq, uint32_t ts,
                      uint32_t arrival_ticks)
{
    if (!s->started) {
        rx_init_seq(s, seq);
        s->started = true;
    } else {
        uint16_t udelta = (uint16_t)(seq - s->max_seq);
        if (udelta < MAX_DROPOUT) {
            if (seq < s->max_seq)
                s->cycles += SEQ_MOD;       /* wrapped */
            s->max_seq = seq;
        } else if (udelta <= SEQ_MOD - MAX_MISORDER) {
            /* A big jump: accept it as a restart only when the next packet follows. */
            if (seq == s->bad_seq) {
                rx_init_seq(s, seq);
            } else {
                s->bad_seq = (seq + 1u) & (SEQ_MOD - 1);
                return;
            }
        }
        /* else: duplicate or reordered packet, counted */
    }
    s->received++;
    int64_t transit = (int64_t)arrival_ticks - (int64_t)ts;
    if (s->have_transit) {
        int64_t d = transit - s->last_transit;
        /* Transit differences wrap with the 32-bit clocks; fold them back. */
        d = (int64_t)(int32_t)(uint32_t)d;
        if (d < 0)
            d = -d;
        s->jitter += ((double)d - s->jitter) / 16.0;
    }
    s->last_transit = transit;
    s->have_transit = true;
}

void pl_rtp_rx_report(pl_rtp_rx_stats_t *s, uint32_t ssrc, uint64_t now_us,
                      pl_rtcp_rb_t *rb)
{
    memset(rb, 0, sizeof(*rb));
    rb->ssrc = ssrc;
    if (!s->started)
        return;
    uint32_t ext_max = s->cycles + s->max_seq;
    int64_t expected = (int64_t)ext_max - (int64_t)s->base_seq + 1;
    int64_t lost = expected - (int64_t)s->received;
    if (lost > 0x7FFFFF)
        lost = 0x7FFFFF;
    if (lost < -0x800000)
        lost = -0x800000;
    int64_t exp_int = expected - (int64_t)s->expected_prior;
    int64_t rec_int = (int64_t)s->received - (int64_t)s->received_prior;
    int64_t lost_int = exp_int - rec_int;
    s->expected_prior = (uint32_t)expected;
    s->received_prior = s->received;
    rb->fraction_lost = (exp_int == 0 || lost_int <= 0)
        ? 0 : (uint8_t)PL_MIN((lost_int << 8) / exp_int, 255);
    rb->cumulative_lost = (int32_t)lost;
    rb->highest_seq = ext_max;
    rb->jitter = (uint32_t)s->jitter;
    if (s->last_sr_us) {
        rb->lsr = s->last_sr_ntp_mid;
        uint64_t d = now_us > s->last_sr_us ? now_us - s->last_sr_us : 0;
        rb->dlsr = (uint32_t)(d * 65536u / 1000000u);
    }
}

void pl_rtp_rx_on_sr(pl_rtp_rx_stats_t *s, uint64_t ntp, uint64_t now_us)
{
    s->last_sr_ntp_mid = (uint32_t)(ntp >> 16);
    s->last_sr_us = now_us ? now_us : 1;
}
