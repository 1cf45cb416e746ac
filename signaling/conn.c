/* conn.c: one parley.v1 WebSocket connection on its gateway thread: the handshake
 * filter (path /ws, subprotocol, limits), message reassembly up to max_frame_size,
 * parse -> auth state -> rate limit -> validate -> dispatch, the bounded send queue
 * with its slow-consumer policy, the abuse counter, closing with a code after the
 * queued frames, and the per-thread 1-s sweep that enforces the auth deadline, session
 * expiry, WebSocket pings after ping_interval of silence and the idle hang-up.
 *
 * Why a sweep and not lws timers: lws keeps all of a thread's timers in one sorted
 * list, so each lws_set_timer_usecs or validity re-arm (on every frame) walked up to
 * n entries; with ~20k connections that was ~40 % of the gateway threads. The sweep
 * walks the thread's connections once a second (O(n) per second, not per event).
 *
 * What it does not do: know any frame type besides the rules for the authenticating
 * one; accounts (accounts.c) supply "auth" and the rest.
 *
 * Threading: the lws callback and every static function run on the connection's
 * service thread; so do pl_sig_reply* (inside a handler) and the auth verdicts. */
#include "signaling/gw_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CLOSE_BACKSTOP_S 5          /* kill a closing conn whose peer stops reading */
#define HARD_QUEUE_FACTOR 4         /* send queue bound even while the socket drains */
#define WRITES_PER_CALLBACK 16
#define COALESCE_MAX PL_SIG_COALESCE_MAX
/* Before auth only the auth frame is expected (a few hundred bytes): a connection that
 * has not proved who it is may not make the server buffer max_frame_size for it. */
#define PREAUTH_FRAME_MAX (8 * 1024)
#define SWEEP_MS 1000
/* A ping goes out when the silence reaches ping_interval minus half a sweep, so the
 * 1-s granularity cannot stretch the ping period to nearly 2 s (for 1 s). */
#define PING_SLACK_MS (SWEEP_MS / 2)

static uint64_t now_ms(void)
{
    return pl_now_mono_ms();
}

static const char *default_reason(int code)
{
    switch (code) {
    case PL_SIG_CLOSE_NORMAL: return "bye";
    case PL_SIG_CLOSE_GOING_AWAY: return "server shutting down";
    case PL_SIG_CLOSE_TOO_BIG: return "frame too large";
    case PL_SIG_CLOSE_AUTH_REQUIRED: return "auth required";
    case PL_SIG_CLOSE_REPLACED: return "replaced";
    case PL_SIG_CLOSE_AUTH_TIMEOUT: return "auth timeout";
    case PL_SIG_CLOSE_AUTH_FAILED: return "auth failed";
    case PL_SIG_CLOSE_REVOKED: return "revoked";
    case PL_SIG_CLOSE_SLOW_CONSUMER: return "slow consumer";
    case PL_SIG_CLOSE_TOO_MANY_ERRORS: return "too many errors";
    case PL_SIG_CLOSE_SESSION_EXPIRED: return "session expired";
    case PL_SIG_CLOSE_UNAUTH_PER_IP: return "too many unauthenticated connections from your address";
    default: return "";
    }
}

/* ---- sending and closing ---------------------------------------------------------- */

void pl_sig_conn_close(pl_sig_thread_t *t, pl_sig_conn_t *c, int code, const char *reason)
{
    PL_UNUSED(t);
    if (c->state == PL_SIG_CONN_CLOSING)
        return;                     /* the first close decides the code */
    c->state = PL_SIG_CONN_CLOSING;
    c->close_code = (uint16_t)code;
    if (reason)
        c->close_reason = pl_xstrndup(reason, 120);
    lws_callback_on_writable(c->wsi);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_BACKSTOP_S);
}

static void drop_queue(pl_sig_conn_t *c)
{
    while (c->out_head) {
        pl_sig_out_t *o = c->out_head;
        c->out_head = o->next;
        free(o);
    }
    c->out_tail = NULL;
    c->out_bytes = 0;
}

void pl_sig_conn_queue(pl_sig_thread_t *t, pl_sig_conn_t *c, pl_sig_out_t *out,
                       pl_metric_id_t m_out)
{
    if (c->state == PL_SIG_CONN_CLOSING) {
        free(out);
        return;
    }
    uint64_t after = (uint64_t)c->out_bytes + out->len, max = t->gw->opts.send_queue_max;
    /* Slow consumer: memory per connection stays bounded; the client reconnects and
     * resyncs rather than the server buffering without limit. Beyond send_queue_max
     * only counts while the socket is backed up: the answers of one store batch may
     * arrive together for a client that reads fine. The hard bound holds regardless. */
    if (after > max && (after > HARD_QUEUE_FACTOR * max || lws_partial_buffered(c->wsi) ||
                        lws_send_pipe_choked(c->wsi))) {
        free(out);
        drop_queue(c);
        pl_metric_inc(t->shard, t->gw->m.close_slow);
        pl_log_info("signaling.conn.slow_consumer", "conn=%llx device=%llu",
                    (unsigned long long)c->id, (unsigned long long)c->device_id);
        pl_sig_conn_close(t, c, PL_SIG_CLOSE_SLOW_CONSUMER, NULL);
        return;
    }
    if (c->out_tail)
        c->out_tail->next = out;
    else
        c->out_head = out;
    c->out_tail = out;
    c->out_bytes += out->len;
    pl_metric_inc(t->shard, m_out);
    if (!t->evloop) {
        lws_callback_on_writable(c->wsi);
        return;
    }
    if (!c->flush_listed) {
        if (t->n_flush == t->cap_flush) {
            t->cap_flush = t->cap_flush ? 2 * t->cap_flush : 256;
            t->flush_ids = pl_xrealloc(t->flush_ids, t->cap_flush * sizeof(*t->flush_ids));
        }
        t->flush_ids[t->n_flush++] = c->id;
        c->flush_listed = true;
    }
}

void pl_sig_conn_send(pl_sig_thread_t *t, pl_sig_conn_t *c, json_t *frame)
{
    const char *type = json_string_value(json_object_get(frame, "type"));
    pl_metric_id_t m = pl_sig_out_metric(t->gw, type ? type : "");
    pl_sig_conn_queue(t, c, pl_sig_out_new(frame), m);
}

/* Counts a client error in the current window; closes c past max_errors. */
static void note_abuse(pl_sig_thread_t *t, pl_sig_conn_t *c)
{
    uint64_t now = now_ms();
    uint32_t window = atomic_load_explicit(&t->gw->limits.error_window_ms, memory_order_relaxed);
    uint32_t max = atomic_load_explicit(&t->gw->limits.max_errors, memory_order_relaxed);
    if (now - c->err_window_start_ms >= window) {
        c->err_window_start_ms = now;
        c->err_count = 0;
    }
    if (c->err_count < UINT16_MAX)
        c->err_count++;
    if (max && c->err_count >= max) {
        pl_metric_inc(t->shard, t->gw->m.close_abuse);
        pl_log_info("signaling.conn.abuse", "conn=%llx device=%llu errors=%u",
                    (unsigned long long)c->id, (unsigned long long)c->device_id, c->err_count);
        pl_sig_conn_close(t, c, PL_SIG_CLOSE_TOO_MANY_ERRORS, NULL);
    }
}

static void send_error(pl_sig_thread_t *t, pl_sig_conn_t *c, json_t *id, pl_sig_err_t err,
                       const char *message)
{
    pl_metric_inc(t->shard, t->gw->m.errors[err]);
    pl_sig_conn_send(t, c, pl_sig_frame_error(id, pl_sig_err_code(err), message));
    if (pl_sig_err_is_abuse(err))
        note_abuse(t, c);
}

/* A frame other than the authenticating one before authentication: error, then close
 * (docs/PROTOCOL.md "Authentication"). */
static void reject_before_auth(pl_sig_thread_t *t, pl_sig_conn_t *c, json_t *id,
                               const char *message)
{
    pl_sig_count_auth_fail(t, PL_SIG_AF_FRAME_BEFORE_AUTH);
    pl_metric_inc(t->shard, t->gw->m.errors[PL_SIG_ERR_AUTH_REQUIRED]);
    pl_sig_conn_send(t, c, pl_sig_frame_error(id, "auth_required", message));
    pl_sig_conn_close(t, c, PL_SIG_CLOSE_AUTH_REQUIRED, NULL);
}

/* ---- dispatch ------------------------------------------------------------------- */

/* Checks the connection's auth state against the frame. Returns false when the frame
 * was refused (and answered). */
static bool auth_gate(pl_sig_thread_t *t, pl_sig_conn_t *c, const pl_sig_hentry_t *h,
                      json_t *id)
{
    switch (c->state) {
    case PL_SIG_CONN_NEW:
        if (!h || h->h->requires_auth) {
            reject_before_auth(t, c, id, "the first frame must be auth");
            return false;
        }
        return true;
    case PL_SIG_CONN_AUTHING:
        reject_before_auth(t, c, id, "wait for auth.result before sending other frames");
        return false;
    default:
        if (!h) {
            pl_metric_inc(t->shard, t->gw->m.in_unknown);
            send_error(t, c, id, PL_SIG_ERR_UNKNOWN_TYPE, "unknown frame type");
            return false;
        }
        if (!h->h->requires_auth) {
            send_error(t, c, id, PL_SIG_ERR_ALREADY_AUTHENTICATED,
                       "the connection is already authenticated");
            return false;
        }
        return true;
    }
}

static bool rate_ok(pl_sig_thread_t *t, pl_sig_conn_t *c)
{
    double rate = atomic_load_explicit(&t->gw->limits.rate_frames, memory_order_relaxed);
    double burst = atomic_load_explicit(&t->gw->limits.rate_burst, memory_order_relaxed);
    return rate <= 0 || pl_sig_bucket_take(&c->rate, now_ms(), rate, burst, NULL);
}

static void dispatch(pl_sig_thread_t *t, pl_sig_conn_t *c, const char *data, size_t len)
{
    pl_sig_verdict_t v;
    const char *type;
    json_t *id;
    json_t *frame = pl_sig_frame_parse(data, len, &type, &id, &v);
    if (!frame) {
        if (c->state != PL_SIG_CONN_AUTHED)
            reject_before_auth(t, c, NULL, v.message);
        else
            send_error(t, c, NULL, v.err, v.message);
        return;
    }
    const pl_sig_hentry_t *h = pl_sig_handler_find(t->gw, type);
    if (!auth_gate(t, c, h, id))
        goto done;
    if (!rate_ok(t, c)) {
        send_error(t, c, id, PL_SIG_ERR_RATE_LIMITED, "too many frames; slow down");
        goto done;
    }
    if (pl_sig_frame_validate(frame, h->h->fields, h->h->n_fields, &v) < 0) {
        send_error(t, c, id, v.err, v.message);
        goto done;
    }
    pl_metric_inc(t->shard, h->m_in);
    if (!h->h->requires_auth)
        c->state = PL_SIG_CONN_AUTHING;
    pl_sig_req_t req = {
        .gw = t->gw, .conn_id = c->id, .account_id = c->account_id,
        .device_id = c->device_id, .username = c->username ? c->username : "",
        .type = type, .id = id, .frame = frame, .thread = t->index,
    };
    h->h->fn(&req, h->arg);
done:
    json_decref(frame);
}

/* ---- lws events --------------------------------------------------------------------- */

static int close_too_big(pl_sig_thread_t *t, pl_sig_conn_t *c)
{
    pl_metric_inc(t->shard, t->gw->m.close_too_big);
    static const char why[] = "frame too large";
    /* RFC 6455 §7.4.1: 1009 = message too big to process. */
    lws_close_reason(c->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                     (unsigned char *)(uintptr_t)why, sizeof(why) - 1);
    return -1;
}

static int on_receive(pl_sig_thread_t *t, pl_sig_conn_t *c, const char *in, size_t len)
{
    if (c->state == PL_SIG_CONN_CLOSING)
        return 0;
    bool last = lws_is_final_fragment(c->wsi) && lws_remaining_packet_payload(c->wsi) == 0;
    if (c->rx_discard) {
        c->rx_discard = !last;
        return 0;
    }
    if (lws_frame_is_binary(c->wsi)) {
        /* parley.v1 is text only; the rest of this message is skipped. */
        c->rx_discard = !last;
        free(c->rx);
        c->rx = NULL;
        c->rx_len = 0;
        if (c->state == PL_SIG_CONN_AUTHED)
            send_error(t, c, NULL, PL_SIG_ERR_BAD_FRAME, "binary frames are not supported");
        else
            reject_before_auth(t, c, NULL, "binary frames are not supported");
        return 0;
    }
    size_t total = (size_t)c->rx_len + len + lws_remaining_packet_payload(c->wsi);
    size_t limit = t->gw->opts.max_frame;
    if (c->state != PL_SIG_CONN_AUTHED)
        limit = PL_MIN(limit, (size_t)PREAUTH_FRAME_MAX);
    if (total > limit)
        return close_too_big(t, c);
    if (last && !c->rx) {
        dispatch(t, c, in, len);        /* the common case: no copy */
        return 0;
    }
    /* Grow to what this WebSocket frame still announces (bounded by max_frame). */
    c->rx = pl_xrealloc(c->rx, total);
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += (uint32_t)len;
    if (last) {
        char *msg = c->rx;
        size_t n = c->rx_len;
        c->rx = NULL;
        c->rx_len = 0;
        dispatch(t, c, msg, n);
        free(msg);
    }
    return 0;
}

/* Takes the first queued frame off the send queue (the caller frees it). */
static pl_sig_out_t *pop_out(pl_sig_conn_t *c)
{
    pl_sig_out_t *o = c->out_head;
    c->out_head = o->next;
    if (!c->out_head)
        c->out_tail = NULL;
    c->out_bytes -= o->len;
    return o;
}

/* Appends one unmasked FIN text frame header for len bytes (RFC 6455 §5.2). */
static size_t ws_header(unsigned char *h, size_t len)
{
    h[0] = 0x81;
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

/* Several queued frames in one send: each lws_write is a syscall and a TCP segment, and
 * a store batch often answers one connection several times at once. The frames are
 * framed here (server frames are unmasked, no extension is negotiated) and handed to
 * lws as raw bytes, which lws 4.1 sends as they are and buffers if the kernel takes
 * only part. Returns 0 after writing, 1 when the first frame alone is too big for the
 * buffer (the caller writes it the usual way), -1 to close. */
static int write_coalesced(pl_sig_thread_t *t, pl_sig_conn_t *c)
{
    if (!t->wbuf)
        t->wbuf = pl_xmalloc(LWS_PRE + COALESCE_MAX);
    unsigned char *p = t->wbuf + LWS_PRE;
    size_t used = 0;
    int frames = 0;
    while (c->out_head && frames < WRITES_PER_CALLBACK &&
           used + c->out_head->len + 10 <= COALESCE_MAX) {
        pl_sig_out_t *o = pop_out(c);
        used += ws_header(p + used, o->len);
        memcpy(p + used, o->buf + LWS_PRE, o->len);
        used += o->len;
        free(o);
        frames++;
    }
    if (!frames)
        return 1;               /* the first frame alone is too big: the usual path */
    if (lws_write(c->wsi, p, used, LWS_WRITE_RAW) < (int)used)
        return -1;
    if (c->out_head || c->state == PL_SIG_CONN_CLOSING)
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* The frames queued during one loop iteration -- a store batch's answers, the replies
 * to what was read -- are written when it ends, straight from the loop instead of from
 * a WRITEABLE callback. On libev each lws_callback_on_writable is an epoll_ctl to
 * watch for POLLOUT, a wake-up to be told the socket (nearly always) has room, and
 * another epoll_ctl to stop watching: measured at 2.5 epoll_ctl per chat message on
 * the gateways at moderate load (docs/BENCHMARKS.md). lws_write of raw bytes sends
 * what the kernel takes and keeps the rest (lws_issue_raw), asking for POLLOUT itself,
 * so the WRITEABLE path remains for what this cannot write: a connection with a
 * partial write pending, a ping due, a close in progress, a frame too big to join,
 * or more than one callback's share. A write error kills the connection through lws
 * (LWS_TO_KILL_ASYNC), which calls CLOSED as on any other error. Connections are
 * listed by id: one that closed meanwhile is simply gone. */
void pl_sig_conn_flush(pl_sig_thread_t *t)
{
    for (uint32_t i = 0; i < t->n_flush; i++) {
        pl_sig_conn_t *c = pl_sig_slot_get(t, t->flush_ids[i], PL_SIG_SLOT_WS);
        if (!c)
            continue;
        c->flush_listed = false;
        if (!c->out_head)
            continue;
        if (c->state == PL_SIG_CONN_CLOSING || c->ping_due || lws_partial_buffered(c->wsi)) {
            lws_callback_on_writable(c->wsi);
            continue;
        }
        int rc = write_coalesced(t, c);
        if (rc == 1)
            lws_callback_on_writable(c->wsi);
        else if (rc < 0)
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    t->n_flush = 0;
}

/* Our close, as a lingering close: the close frame (written as raw bytes after
 * whatever is still queued in lws), then a half-close (FIN) once it is out, and the
 * socket stays open, its input read and dropped (on_receive ignores a closing
 * connection), until the peer closes its side or the backstop timeout fires. Closing
 * the socket at once would turn any input still in flight from the client -- a burst
 * of requests from a slow consumer, say -- into a TCP reset, which destroys the
 * close frame in the client's receive buffer (the client would see 1006, not the
 * code). Returns 0 (lws closes the connection at the peer's EOF), or -1 to close now. */
static int close_lingering(pl_sig_conn_t *c)
{
    if (lws_partial_buffered(c->wsi)) {
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (!c->close_sent) {
        const char *r = c->close_reason ? c->close_reason : default_reason(c->close_code);
        size_t rn = PL_MIN(strlen(r), (size_t)123);     /* control payload <= 125 */
        unsigned char buf[LWS_PRE + 4 + 123];
        unsigned char *p = buf + LWS_PRE;
        p[0] = 0x88;                                    /* FIN + close (RFC 6455 §5.5.1) */
        p[1] = (unsigned char)(2 + rn);
        p[2] = (unsigned char)(c->close_code >> 8);
        p[3] = (unsigned char)c->close_code;
        memcpy(p + 4, r, rn);
        c->close_sent = true;
        if (lws_write(c->wsi, p, 4 + rn, LWS_WRITE_RAW) < (int)(4 + rn))
            return -1;
        if (lws_partial_buffered(c->wsi)) {
            lws_callback_on_writable(c->wsi);
            return 0;
        }
    }
    if (!c->shut_wr) {
        c->shut_wr = true;
        if (shutdown(lws_get_socket_fd(c->wsi), SHUT_WR) < 0)
            return -1;
    }
    return 0;
}

static int on_writeable(pl_sig_thread_t *t, pl_sig_conn_t *c)
{
    if (c->ping_due && c->state != PL_SIG_CONN_CLOSING && !lws_partial_buffered(c->wsi)) {
        /* RFC 6455 §5.5.2/§5.5.3: the peer echoes the payload in its PONG, which counts
         * as activity. One byte, not none: lws 4.1 gives no RECEIVE_PONG callback for
         * an empty PONG. */
        unsigned char ping[LWS_PRE + 1];
        c->ping_due = false;
        c->ping_sent = true;
        ping[LWS_PRE] = 'p';
        if (lws_write(c->wsi, ping + LWS_PRE, 1, LWS_WRITE_PING) < 0)
            return -1;
    }
    if (c->out_head && c->out_head->next && !lws_partial_buffered(c->wsi)) {
        int rc = write_coalesced(t, c);
        if (rc <= 0)
            return rc;
    }
    if (c->out_head) {
        /* Several frames per callback while the kernel takes them whole; lws keeps
         * the tail of a partial write itself and calls back when it has sent it. */
        for (int i = 0; i < WRITES_PER_CALLBACK && c->out_head; i++) {
            pl_sig_out_t *o = pop_out(c);
            int n = lws_write(c->wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT);
            bool ok = n >= (int)o->len;
            free(o);
            if (!ok)
                return -1;
            if (lws_partial_buffered(c->wsi))
                break;
        }
        if (c->out_head || c->state == PL_SIG_CONN_CLOSING)
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (c->state == PL_SIG_CONN_CLOSING)
        return close_lingering(c);
    return 0;
}

/* The auth deadline or the session expiry has passed. */
static void on_deadline(pl_sig_thread_t *t, pl_sig_conn_t *c)
{
    if (c->state == PL_SIG_CONN_NEW || c->state == PL_SIG_CONN_AUTHING) {
        pl_sig_count_auth_fail(t, PL_SIG_AF_TIMEOUT);
        pl_metric_inc(t->shard, t->gw->m.errors[PL_SIG_ERR_AUTH_REQUIRED]);
        pl_sig_conn_send(t, c, pl_sig_frame_error(NULL, "auth_required",
                                                  "no auth frame within auth_timeout"));
        pl_sig_conn_close(t, c, PL_SIG_CLOSE_AUTH_TIMEOUT, NULL);
    } else if (c->state == PL_SIG_CONN_AUTHED) {
        pl_metric_inc(t->shard, t->gw->m.close_expired);
        pl_sig_conn_close(t, c, PL_SIG_CLOSE_SESSION_EXPIRED, NULL);
    }
}

/* ---- the sweep ---------------------------------------------------------------------- */

static void sweep_link(pl_sig_thread_t *t, pl_sig_conn_t *c)
{
    c->sw_prev = NULL;
    c->sw_next = t->sweep_head;
    if (t->sweep_head)
        t->sweep_head->sw_prev = c;
    t->sweep_head = c;
}

/* Idempotent: an unlinked conn has no prev and is not the head. */
static void sweep_unlink(pl_sig_thread_t *t, pl_sig_conn_t *c)
{
    if (!c->sw_prev && t->sweep_head != c)
        return;
    if (c->sw_prev)
        c->sw_prev->sw_next = c->sw_next;
    else
        t->sweep_head = c->sw_next;
    if (c->sw_next)
        c->sw_next->sw_prev = c->sw_prev;
    c->sw_prev = c->sw_next = NULL;
}

static void sweep_one(pl_sig_thread_t *t, pl_sig_conn_t *c, uint64_t now)
{
    if (c->state == PL_SIG_CONN_CLOSING)
        return;                     /* lws_set_timeout's backstop has it */
    if (c->deadline_ms && now >= c->deadline_ms) {
        c->deadline_ms = 0;
        on_deadline(t, c);
        return;
    }
    uint64_t quiet = now - c->last_rx_ms;
    uint64_t idle_ms = (uint64_t)t->gw->opts.idle_timeout_s * 1000;
    uint64_t ping_ms = (uint64_t)t->gw->opts.ping_interval_s * 1000;
    if (idle_ms && quiet >= idle_ms) {
        /* No frame nor pong for idle_timeout: the peer is gone. Dropped without a
         * close frame (it would not read one), as lws's hang-up did. */
        sweep_unlink(t, c);
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    } else if (ping_ms && !c->ping_sent && quiet + PING_SLACK_MS >= ping_ms) {
        c->ping_due = true;
        lws_callback_on_writable(c->wsi);
    }
}

static void sweep_cb(lws_sorted_usec_list_t *sul)
{
    pl_sig_thread_t *t = (pl_sig_thread_t *)(void *)((char *)sul -
                                                     offsetof(pl_sig_thread_t, sweep_sul));
    uint64_t now = now_ms();
    for (pl_sig_conn_t *c = t->sweep_head, *next; c; c = next) {
        next = c->sw_next;          /* sweep_one may unlink c, never another */
        sweep_one(t, c, now);
    }
    lws_sul_schedule(t->ctx, 0, &t->sweep_sul, sweep_cb, (lws_usec_t)SWEEP_MS * 1000);
}

void pl_sig_conn_sweep_start(pl_sig_thread_t *t)
{
    lws_sul_schedule(t->ctx, 0, &t->sweep_sul, sweep_cb, (lws_usec_t)SWEEP_MS * 1000);
}

/* Any frame or pong from the peer: it is alive. */
static void note_rx(pl_sig_conn_t *c)
{
    c->last_rx_ms = now_ms();
    c->ping_sent = false;
}

static int on_filter(pl_sig_thread_t *t, struct lws *wsi)
{
    char uri[16];
    pl_sig_gateway_t *gw = t->gw;
    bool ok = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) > 0 &&
              strcmp(uri, "/ws") == 0 && !atomic_load(&gw->draining) &&
              pl_sig_gateway_conn_count(gw) < gw->opts.max_connections;
    if (!ok)
        pl_metric_inc(t->shard, gw->m.rejected);
    return ok ? 0 : 1;
}

static void on_established(pl_sig_thread_t *t, pl_sig_conn_t *c, struct lws *wsi)
{
    c->wsi = wsi;
    c->id = pl_sig_slot_alloc(t, c, PL_SIG_SLOT_WS);
    c->state = PL_SIG_CONN_NEW;
    pl_sig_bucket_init(&c->rate, atomic_load(&t->gw->limits.rate_burst), now_ms());
    c->err_window_start_ms = now_ms();
    atomic_fetch_add(&t->n_ws, 1);
    pl_metric_gauge_add(t->shard, t->gw->m.connections, 1);
    pl_metric_inc(t->shard, t->gw->m.handshakes);
    c->last_rx_ms = now_ms();
    c->deadline_ms = c->last_rx_ms + t->gw->opts.auth_timeout_ms;
    sweep_link(t, c);
    /* A source may hold only so many connections that have not authenticated: each
     * costs a descriptor for up to auth_timeout, and they cost an attacker nothing. */
    uint32_t cap = atomic_load_explicit(&t->gw->limits.max_unauth_per_ip, memory_order_relaxed);
    if (cap) {
        lws_get_peer_simple(wsi, c->ip, sizeof(c->ip));
        c->unauth_counted = pl_counts_take(t->gw->unauth, c->ip, cap);
        if (!c->unauth_counted) {
            pl_metric_inc(t->shard, t->gw->m.close_unauth_ip);
            pl_log_info("signaling.conn.unauth_per_ip", "ip=%s cap=%u", PL_LOG_QUOTED(c->ip),
                        cap);
            pl_sig_conn_close(t, c, PL_SIG_CLOSE_UNAUTH_PER_IP, NULL);
        }
    }
}

/* The connection authenticated or closes: it no longer counts against its address. */
static void unauth_release(pl_sig_thread_t *t, pl_sig_conn_t *c)
{
    if (c->unauth_counted) {
        c->unauth_counted = false;
        pl_counts_put(t->gw->unauth, c->ip);
    }
}

static void on_closed(pl_sig_thread_t *t, pl_sig_conn_t *c)
{
    if (!c->id)
        return;
    unauth_release(t, c);
    sweep_unlink(t, c);
    if (c->device_id) {
        pl_sig_dir_remove(t->gw->dir, c->device_id, c->id);
        pl_sig_conn_info_t info = { c->id, c->account_id, c->device_id, t->index };
        for (size_t i = 0; i < t->gw->n_hooks; i++)
            if (t->gw->hooks[i].hooks->on_close)
                t->gw->hooks[i].hooks->on_close(&info, t->gw->hooks[i].arg);
    }
    drop_queue(c);
    free(c->rx);
    free(c->username);
    free(c->close_reason);
    pl_sig_slot_free(t, c->id);
    c->id = 0;
    atomic_fetch_sub(&t->n_ws, 1);
    pl_metric_gauge_add(t->shard, t->gw->m.connections, -1);
}

int pl_sig_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                       void *in, size_t len)
{
    pl_sig_thread_t *t = lws_context_user(lws_get_context(wsi));
    pl_sig_conn_t *c = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return on_filter(t, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        on_established(t, c, wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        note_rx(c);
        return on_receive(t, c, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        note_rx(c);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(t, c);
    case LWS_CALLBACK_CLOSED:
        on_closed(t, c);
        return 0;
    default:
        return 0;
    }
}

void pl_sig_conn_close_all(pl_sig_thread_t *t)
{
    for (uint32_t i = 0; i < t->n_slots; i++)
        if (t->slots[i].kind == PL_SIG_SLOT_WS)
            pl_sig_conn_close(t, t->slots[i].obj, PL_SIG_CLOSE_GOING_AWAY, NULL);
}

/* ---- handler replies and auth verdicts ------------------------------------------ */

static pl_sig_conn_t *conn_of(pl_sig_gateway_t *gw, uint64_t conn_id, pl_sig_thread_t **t)
{
    *t = pl_sig_thread_of(gw, conn_id);
    return *t ? pl_sig_slot_get(*t, conn_id, PL_SIG_SLOT_WS) : NULL;
}

void pl_sig_reply(pl_sig_req_t *req, json_t *result)
{
    pl_sig_thread_t *t;
    pl_sig_conn_t *c = conn_of(req->gw, req->conn_id, &t);
    char type[PL_SIG_TYPE_MAX + 8];
    snprintf(type, sizeof(type), "%s.result", req->type);
    json_t *frame = pl_sig_frame_make(type, req->id, result);
    if (!c) {
        json_decref(frame);
        return;
    }
    pl_sig_conn_send(t, c, frame);
}

void pl_sig_reply_error(pl_sig_req_t *req, const char *code, const char *message)
{
    pl_sig_thread_t *t;
    pl_sig_conn_t *c = conn_of(req->gw, req->conn_id, &t);
    if (c)
        send_error(t, c, req->id, pl_sig_err_from_code(code), message);
}

int pl_sig_conn_authenticated(pl_sig_gateway_t *gw, uint64_t conn_id, json_t *id,
                              const pl_sig_identity_t *who, json_t *result)
{
    pl_sig_thread_t *t;
    pl_sig_conn_t *c = conn_of(gw, conn_id, &t);
    if (!c || c->state != PL_SIG_CONN_AUTHING) {
        json_decref(result);
        return -ENOENT;
    }
    c->state = PL_SIG_CONN_AUTHED;
    unauth_release(t, c);
    c->account_id = who->account_id;
    c->device_id = who->device_id;
    c->username = pl_xstrdup(who->username);
    uint64_t old = pl_sig_dir_put(gw->dir, who->device_id, conn_id);
    if (old && old != conn_id) {
        pl_metric_inc(t->shard, gw->m.close_replaced);
        pl_sig_close(gw, old, PL_SIG_CLOSE_REPLACED, "replaced by a newer connection");
    }
    /* The session expiry is wall time; the sweep compares monotonic time. */
    uint64_t wall = pl_now_wall_ms();
    c->deadline_ms = who->expires_at_ms > wall ? now_ms() + (who->expires_at_ms - wall) : 0;
    pl_metric_inc(t->shard, gw->m.auth_ok);
    pl_sig_conn_send(t, c, pl_sig_frame_make("auth.result", id, result));
    pl_sig_conn_info_t info = { c->id, c->account_id, c->device_id, t->index };
    for (size_t i = 0; i < gw->n_hooks; i++)
        if (gw->hooks[i].hooks->on_auth)
            gw->hooks[i].hooks->on_auth(&info, gw->hooks[i].arg);
    return 0;
}

void pl_sig_conn_auth_failed(pl_sig_gateway_t *gw, uint64_t conn_id, json_t *id,
                             const char *code, const char *message, int close_code)
{
    pl_sig_thread_t *t;
    pl_sig_conn_t *c = conn_of(gw, conn_id, &t);
    if (!c)
        return;
    pl_sig_count_error(t, code);
    pl_sig_conn_send(t, c, pl_sig_frame_error(id, code, message));
    pl_sig_conn_close(t, c, close_code, NULL);
}
