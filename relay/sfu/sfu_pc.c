/* sfu_pc.c: a peer connection's transport: the libnice agent (RFC 8445 full agent with
 * trickle and RFC 7675 consent freshness, host candidates on the configured addresses,
 * one component for BUNDLE + rtcp-mux), demultiplexing of what arrives (RFC 7983:
 * STUN is libnice's, DTLS goes to OpenSSL, RTP/RTCP to sfu_srtp.c), the DTLS handshake
 * with its retransmission timer, the SRTP send path, and ICE restarts (new credentials,
 * the same DTLS session).
 *
 * What it does not: SDP, RTP semantics, TURN allocations.
 *
 * Threading: everything runs on the thread iterating pc->ctx (see sfu_pc.h). */
#include "relay/sfu/sfu_pc_int.h"
#include "relay/sfu/sfu_gpoll.h"
#include "relay/sfu/pl_rtp.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>

#include <openssl/err.h>

static const char *const state_names[PL_PC_STATE_COUNT] = {
    "new", "checking", "connected", "failed", "closed",
};

const char *pl_pc_state_name(pl_pc_state_t s)
{
    return (unsigned)s < PL_PC_STATE_COUNT ? state_names[s] : "?";
}

/* Points the send queue at the direct socket while media may use it: the component is
 * connected and the pc has not failed (RFC 7675 §5.1: without consent, stop sending). */
static void update_dest(pl_pc_t *pc)
{
    bool ok = pc->direct && pc->comp_ready && pc->state != PL_PC_FAILED &&
              pc->state != PL_PC_CLOSED;
    if (ok)
        pl_sendq_sock_set_dest(&pc->sq, g_socket_get_fd(pc->direct),
                               (const struct sockaddr *)&pc->direct_to, pc->direct_len);
    else
        pl_sendq_sock_set_dest(&pc->sq, -1, NULL, 0);
}

static void set_state(pl_pc_t *pc, pl_pc_state_t st, const char *reason)
{
    if (pc->state == st || pc->state == PL_PC_FAILED || pc->state == PL_PC_CLOSED)
        return;
    pc->state = st;
    if (st == PL_PC_FAILED || st == PL_PC_CLOSED) {
        pl_sendq_sock_discard(&pc->sq);
        update_dest(pc);
    }
    if (pc->cbs.on_state)
        pc->cbs.on_state(pc->cbs.arg, st, reason);
}

static void fail(pl_pc_t *pc, const char *reason)
{
    ERR_clear_error();
    set_state(pc, PL_PC_FAILED, reason);
}

/* Sends one datagram on the selected pair: queued on the direct socket, or through
 * libnice (which refuses without a selected pair or consent). Returns 0 or -EAGAIN. */
static int pc_send(pl_pc_t *pc, const uint8_t *data, size_t len)
{
    if (pc->sq.fd >= 0)
        return pl_sendq_send(&pc->sq, data, len) == 0 ? 0 : -EAGAIN;
    gint n = pc->agent ? nice_agent_send(pc->agent, pc->stream, 1, (guint)len,
                                         (const gchar *)data) : -1;
    return n == (gint)len ? 0 : -EAGAIN;
}

void pl_pc_send_raw(pl_pc_t *pc, const uint8_t *data, size_t len)
{
    pl_sendq_sock_flush(&pc->sq);   /* DTLS never overtakes queued media */
    if (pc->sq.fd >= 0 && len <= PL_SENDQ_SLOT_BYTES) {
        (void)sendto(pc->sq.fd, data, len, MSG_DONTWAIT, (const struct sockaddr *)&pc->sq.to,
                     pc->sq.to_len);
        return;
    }
    (void)pc_send(pc, data, len);
}

bool pl_pc_sends_direct(const pl_pc_t *pc)
{
    return pc->sq.fd >= 0;
}

void pl_pc_drop_direct(pl_pc_t *pc)
{
    if (pc->direct)
        g_object_unref(pc->direct);
    pc->direct = NULL;
    update_dest(pc);
}

/* RFC 8445 §8.1.1: once a pair is nominated, media uses it. libnice reports every
 * change; a pair whose local side is a UDP socket of ours (host, or reflexive on a host
 * base) gets the direct path, anything else (TURN, TCP) stays with nice_agent_send. */
static void on_selected_pair(NiceAgent *agent, guint stream, guint comp, NiceCandidate *l,
                             NiceCandidate *r, gpointer data)
{
    pl_pc_t *pc = data;
    pl_pc_drop_direct(pc);
    if (l->transport != NICE_CANDIDATE_TRANSPORT_UDP || l->type == NICE_CANDIDATE_TYPE_RELAYED ||
        r->type == NICE_CANDIDATE_TYPE_RELAYED)
        return;
    GSocket *s = nice_agent_get_selected_socket(agent, stream, comp);
    if (!s)
        return;
    memset(&pc->direct_to, 0, sizeof(pc->direct_to));
    nice_address_copy_to_sockaddr(&r->addr, (struct sockaddr *)&pc->direct_to);
    pc->direct_len = pc->direct_to.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                         : sizeof(struct sockaddr_in);
    pc->direct = s;
    update_dest(pc);
}

/* ---- DTLS ---------------------------------------------------------------------------- */

static void dtls_arm_timer(pl_pc_t *pc);

static gboolean dtls_timeout_cb(gpointer data)
{
    pl_pc_t *pc = data;
    g_source_unref(pc->dtls_timer);
    pc->dtls_timer = NULL;
    if (pc->dtls_done || !pc->ssl)
        return G_SOURCE_REMOVE;
    if (g_get_monotonic_time() - (int64_t)pc->dtls_start_us > PL_DTLS_HANDSHAKE_MS * 1000) {
        fail(pc, "dtls_timeout");
        return G_SOURCE_REMOVE;
    }
    if (DTLSv1_handle_timeout(pc->ssl) < 0) {
        fail(pc, "dtls_failed");
        return G_SOURCE_REMOVE;
    }
    dtls_arm_timer(pc);
    return G_SOURCE_REMOVE;
}

static void dtls_cancel_timer(pl_pc_t *pc)
{
    if (pc->dtls_timer) {
        g_source_destroy(pc->dtls_timer);
        g_source_unref(pc->dtls_timer);
        pc->dtls_timer = NULL;
    }
}

static void dtls_arm_timer(pl_pc_t *pc)
{
    struct timeval tv;
    dtls_cancel_timer(pc);
    if (pc->dtls_done || !pc->ssl || DTLSv1_get_timeout(pc->ssl, &tv) != 1)
        return;
    guint ms = (guint)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
    pc->dtls_timer = g_timeout_source_new(ms ? ms : 1);
    g_source_set_callback(pc->dtls_timer, dtls_timeout_cb, pc, NULL);
    g_source_attach(pc->dtls_timer, pc->ctx);
}

static void dtls_finished(pl_pc_t *pc)
{
    pc->dtls_done = true;
    dtls_cancel_timer(pc);
    if (!pl_dtls_peer_matches(pc->ssl, pc->remote_fp)) {
        fail(pc, "dtls_fingerprint_mismatch");
        return;
    }
    if (pl_dtls_srtp_setup(pc->ssl, pc->dtls_client, &pc->srtp_in, &pc->srtp_out,
                           &pc->profile) < 0) {
        fail(pc, "srtp_setup_failed");
        return;
    }
    pc->srtp_ready = true;
    set_state(pc, PL_PC_CONNECTED, NULL);
}

/* Runs the handshake or, once done, reads (and discards) application data and alerts. */
static void dtls_drive(pl_pc_t *pc)
{
    if (!pc->dtls_done) {
        int r = SSL_do_handshake(pc->ssl);
        if (r == 1) {
            dtls_finished(pc);
            return;
        }
        int e = SSL_get_error(pc->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            fail(pc, "dtls_failed");
            return;
        }
        dtls_arm_timer(pc);
        return;
    }
    uint8_t junk[256];
    int r = SSL_read(pc->ssl, junk, sizeof(junk));
    if (r <= 0 && SSL_get_error(pc->ssl, r) == SSL_ERROR_ZERO_RETURN)
        set_state(pc, PL_PC_CLOSED, "dtls_closed");     /* close_notify from the peer */
    ERR_clear_error();
}

static void dtls_input(pl_pc_t *pc, const uint8_t *buf, size_t len)
{
    if (!pc->ssl) {
        if (g_queue_get_length(&pc->early) < PL_PC_EARLY_MAX)
            g_queue_push_tail(&pc->early, g_bytes_new(buf, len));
        return;
    }
    BIO_write(pc->rbio, buf, (int)len);
    dtls_drive(pc);
}

static int dtls_start(pl_pc_t *pc)
{
    pc->ssl = SSL_new(pc->ssl_ctx);
    BIO *wbio = pl_dtls_bio_new(pc);
    pc->rbio = BIO_new(BIO_s_mem());
    if (!pc->ssl || !wbio || !pc->rbio) {
        BIO_free(wbio);
        BIO_free(pc->rbio);
        pc->rbio = NULL;
        return PL_ECRYPTO;
    }
    BIO_set_mem_eof_return(pc->rbio, -1);       /* empty means "retry", not EOF */
    SSL_set_bio(pc->ssl, pc->rbio, wbio);
    SSL_set_options(pc->ssl, SSL_OP_NO_QUERY_MTU);
    SSL_set_mtu(pc->ssl, PL_DTLS_MTU);
    DTLS_set_link_mtu(pc->ssl, PL_DTLS_MTU);
    if (pc->dtls_client)
        SSL_set_connect_state(pc->ssl);
    else
        SSL_set_accept_state(pc->ssl);
    pc->dtls_start_us = (uint64_t)g_get_monotonic_time();
    GBytes *b;
    while ((b = g_queue_pop_head(&pc->early))) {
        gsize n;
        const void *d = g_bytes_get_data(b, &n);
        BIO_write(pc->rbio, d, (int)n);
        g_bytes_unref(b);
        if (!pc->dtls_done)
            dtls_drive(pc);
    }
    /* The client speaks first once ICE works (RFC 5763 §5); the server waits. */
    if (pc->dtls_client && pc->ice_ready && !pc->dtls_done)
        dtls_drive(pc);
    return 0;
}

/* ---- SRTP receive ------------------------------------------------------------------- */

static void srtp_input(pl_pc_t *pc, const uint8_t *buf, size_t len, bool rtcp)
{
    if (!pc->srtp_ready || len > sizeof(pc->rx))
        return;
    if (!rtcp && pc->cbs.on_srtp_raw) {
        pc->cbs.on_srtp_raw(pc->cbs.arg, buf, len);
        return;
    }
    memcpy(pc->rx, buf, len);
    size_t n = len;
    int st = rtcp ? pl_srtp_unprotect_rtcp(pc->srtp_in, pc->rx, &n)
                  : pl_srtp_unprotect_rtp(pc->srtp_in, pc->rx, &n);
    if (st != PL_SRTP_OK) {
        pc->srtp_errors++;
        return;         /* replay, bad tag, malformed, or too many SSRCs */
    }
    if (rtcp) {
        if (pc->cbs.on_rtcp)
            pc->cbs.on_rtcp(pc->cbs.arg, pc->rx, n, sizeof(pc->rx));
    } else if (pc->cbs.on_rtp) {
        pc->cbs.on_rtp(pc->cbs.arg, pc->rx, n, sizeof(pc->rx));
    }
}

static void on_recv(NiceAgent *agent, guint stream, guint comp, guint len, gchar *buf,
                    gpointer data)
{
    PL_UNUSED(agent);
    PL_UNUSED(stream);
    PL_UNUSED(comp);
    pl_pc_t *pc = data;
    const uint8_t *p = (const uint8_t *)buf;
    switch (pl_rtp_classify(p, len)) {
    case PL_PKT_DTLS:
        dtls_input(pc, p, len);
        break;
    case PL_PKT_RTP:
        srtp_input(pc, p, len, false);
        break;
    case PL_PKT_RTCP:
        srtp_input(pc, p, len, true);
        break;
    default:
        break;          /* STUN is consumed by libnice before it reaches us */
    }
}

/* ---- ICE ---------------------------------------------------------------------------- */

static void on_component_state(NiceAgent *agent, guint stream, guint comp, guint state,
                               gpointer data)
{
    PL_UNUSED(agent);
    PL_UNUSED(stream);
    PL_UNUSED(comp);
    pl_pc_t *pc = data;
    pc->comp_ready = state == NICE_COMPONENT_STATE_CONNECTED ||
                     state == NICE_COMPONENT_STATE_READY;
    update_dest(pc);
    switch (state) {
    case NICE_COMPONENT_STATE_CONNECTING:
        /* Once DTLS is up the pc stays connected through an ICE restart's checks:
         * media waits for the new pair (update_dest), the session carries on. */
        if (!pc->dtls_done)
            set_state(pc, PL_PC_CHECKING, NULL);
        break;
    case NICE_COMPONENT_STATE_CONNECTED:
    case NICE_COMPONENT_STATE_READY:
        if (!pc->dtls_done)
            set_state(pc, PL_PC_CHECKING, NULL);
        if (!pc->ice_ready) {
            pc->ice_ready = true;
            if (pc->ssl && pc->dtls_client && !pc->dtls_done)
                dtls_drive(pc);
        }
        break;
    case NICE_COMPONENT_STATE_FAILED:
        /* Checks failed, or consent freshness expired (RFC 7675 §5.1). */
        fail(pc, pc->ice_ready ? "ice_consent_lost" : "ice_failed");
        break;
    default:
        break;
    }
}

int pl_pc_create(const pl_pc_opts_t *o, pl_pc_t **out)
{
    pl_pc_t *pc = pl_xcalloc(1, sizeof(*pc));
    pc->ctx = o->ctx;
    pl_sendq_sock_init(&pc->sq, pl_sendq_for_context(o->ctx));
    pc->cbs = o->cbs;
    pc->ssl_ctx = o->ssl_ctx;
    g_queue_init(&pc->early);
    pc->agent = nice_agent_new_full(o->ctx, NICE_COMPATIBILITY_RFC5245,
                                    NICE_AGENT_OPTION_ICE_TRICKLE |
                                    NICE_AGENT_OPTION_CONSENT_FRESHNESS);
    if (!pc->agent)
        goto fail;
    g_object_set(pc->agent, "controlling-mode", o->controlling ? TRUE : FALSE,
                 "ice-tcp", FALSE, "ice-udp", TRUE, "upnp", FALSE, NULL);
    for (size_t i = 0; i < o->n_addrs; i++) {
        NiceAddress a;
        nice_address_init(&a);
        if (nice_address_set_from_string(&a, o->addrs[i]))
            nice_agent_add_local_address(pc->agent, &a);
    }
    pc->stream = nice_agent_add_stream(pc->agent, 1);
    if (!pc->stream)
        goto fail;
    if (o->port_min && o->port_max)
        nice_agent_set_port_range(pc->agent, pc->stream, 1, o->port_min, o->port_max);
    g_signal_connect(pc->agent, "component-state-changed", G_CALLBACK(on_component_state), pc);
    g_signal_connect(pc->agent, "new-selected-pair-full", G_CALLBACK(on_selected_pair), pc);
    nice_agent_attach_recv(pc->agent, pc->stream, 1, o->ctx, on_recv, pc);
    if (!nice_agent_gather_candidates(pc->agent, pc->stream) ||
        !nice_agent_get_local_credentials(pc->agent, pc->stream, &pc->ufrag, &pc->pwd))
        goto fail;
    *out = pc;
    return 0;
fail:
    pl_pc_destroy(pc);
    return -EADDRNOTAVAIL;
}

static gboolean idle_nothing(gpointer data)
{
    PL_UNUSED(data);
    return G_SOURCE_REMOVE;
}

/* The agent's sockets close with it: the thread's epoll set must re-check (a new socket
 * may reuse a descriptor number before the next iteration). */
static void release_agent(gpointer agent)
{
    g_object_unref(agent);
    pl_gpoll_changed();
}

void pl_pc_destroy(pl_pc_t *pc)
{
    if (!pc)
        return;
    dtls_cancel_timer(pc);
    pl_sendq_sock_flush(&pc->sq);   /* what this iteration produced still goes out */
    pl_sendq_sock_discard(&pc->sq);
    if (pc->direct)
        g_object_unref(pc->direct);
    pc->direct = NULL;
    if (pc->agent) {
        /* Detach first so no callback reaches the freed pc; release the agent from an
         * idle source (or when the context goes), never from inside its own signal. */
        if (pc->stream)
            nice_agent_attach_recv(pc->agent, pc->stream, 1, pc->ctx, NULL, NULL);
        g_signal_handlers_disconnect_by_data(pc->agent, pc);
        GSource *s = g_idle_source_new();
        /* Above the sockets' priority: with packets still arriving, an idle-priority
         * source would starve and the agent (and its sockets) never go. */
        g_source_set_priority(s, G_PRIORITY_HIGH);
        g_source_set_callback(s, idle_nothing, pc->agent, release_agent);
        g_source_attach(s, pc->ctx);
        g_source_unref(s);
    }
    if (pc->ssl)
        SSL_free(pc->ssl);          /* frees both BIOs */
    pl_srtp_destroy(pc->srtp_in);
    pl_srtp_destroy(pc->srtp_out);
    g_queue_clear_full(&pc->early, (GDestroyNotify)g_bytes_unref);
    g_free(pc->ufrag);
    g_free(pc->pwd);
    g_free(pc->remote_ufrag);
    g_free(pc->remote_pwd);
    free(pc);
}

const char *pl_pc_ufrag(const pl_pc_t *pc) { return pc->ufrag; }
const char *pl_pc_pwd(const pl_pc_t *pc) { return pc->pwd; }
pl_pc_state_t pl_pc_state(const pl_pc_t *pc) { return pc->state; }
uint64_t pl_pc_take_send_drops(pl_pc_t *pc)
{
    return pl_sendq_sock_take_drops(&pc->sq);
}
uint64_t pl_pc_take_srtp_errors(pl_pc_t *pc)
{
    uint64_t n = pc->srtp_errors;
    pc->srtp_errors = 0;
    return n;
}
const char *pl_pc_srtp_profile(const pl_pc_t *pc) { return pc->profile ? pc->profile : ""; }

void pl_pc_foreach_candidate(pl_pc_t *pc, void (*fn)(void *arg, const char *cand), void *arg)
{
    GSList *list = nice_agent_get_local_candidates(pc->agent, pc->stream, 1);
    for (GSList *l = list; l; l = l->next) {
        gchar *line = nice_agent_generate_local_candidate_sdp(pc->agent, l->data);
        if (line && g_str_has_prefix(line, "a="))
            fn(arg, line + 2);
        g_free(line);
    }
    g_slist_free_full(list, (GDestroyNotify)nice_candidate_free);
}

/* Restarts the stream: new local credentials, checks and remote candidates reset
 * (libnice keeps the local candidates and their sockets). No media until a pair is
 * selected again. */
static int restart_stream(pl_pc_t *pc)
{
    gchar *ufrag = NULL, *pwd = NULL;
    if (!nice_agent_restart_stream(pc->agent, pc->stream) ||
        !nice_agent_get_local_credentials(pc->agent, pc->stream, &ufrag, &pwd)) {
        g_free(ufrag);
        g_free(pwd);
        return PL_ESTATE;
    }
    g_free(pc->ufrag);
    g_free(pc->pwd);
    pc->ufrag = ufrag;
    pc->pwd = pwd;
    pc->comp_ready = false;
    update_dest(pc);
    return 0;
}

int pl_pc_ice_restart(pl_pc_t *pc)
{
    if (!pc->have_remote || pc->state == PL_PC_FAILED || pc->state == PL_PC_CLOSED)
        return PL_ESTATE;
    if (!pc->restart_pending && restart_stream(pc) < 0)
        return PL_ESTATE;
    pc->restart_pending = true;
    return 0;
}

uint32_t pl_pc_restarts(const pl_pc_t *pc) { return pc->n_restarts; }

/* The peer's new credentials: the restart it asked for (or the one we began). */
static int ice_restarted(pl_pc_t *pc, const char *ufrag, const char *pwd)
{
    if (pc->state == PL_PC_FAILED || pc->state == PL_PC_CLOSED)
        return PL_ESTATE;
    if (!pc->restart_pending && restart_stream(pc) < 0)
        return PL_ESTATE;
    pc->restart_pending = false;
    if (!nice_agent_set_remote_credentials(pc->agent, pc->stream, ufrag, pwd))
        return PL_EPARSE;
    g_free(pc->remote_ufrag);
    g_free(pc->remote_pwd);
    pc->remote_ufrag = g_strdup(ufrag);
    pc->remote_pwd = g_strdup(pwd);
    pc->n_restarts++;
    return 1;
}

int pl_pc_set_remote(pl_pc_t *pc, const char *ufrag, const char *pwd, const char *fp_alg,
                     const char *fp_value, bool dtls_client)
{
    uint8_t fp[32];
    if (!ufrag || !pwd || !fp_alg || !fp_value || g_ascii_strcasecmp(fp_alg, "sha-256") != 0 ||
        pl_dtls_fingerprint_parse(fp_value, fp) < 0)
        return PL_EPARSE;
    if (pc->have_remote) {
        /* Renegotiation: the same transport, an ICE restart, or (a new certificate) a
         * new DTLS session, which is not supported. */
        if (memcmp(fp, pc->remote_fp, 32) != 0)
            return PL_ESTATE;
        if (strcmp(ufrag, pc->remote_ufrag) == 0 && strcmp(pwd, pc->remote_pwd) == 0)
            return 0;
        return ice_restarted(pc, ufrag, pwd);
    }
    if (!nice_agent_set_remote_credentials(pc->agent, pc->stream, ufrag, pwd))
        return PL_EPARSE;
    pc->have_remote = true;
    pc->remote_ufrag = g_strdup(ufrag);
    pc->remote_pwd = g_strdup(pwd);
    memcpy(pc->remote_fp, fp, 32);
    pc->dtls_client = dtls_client;
    set_state(pc, PL_PC_CHECKING, NULL);
    return dtls_start(pc);
}

int pl_pc_add_remote_candidate(pl_pc_t *pc, const char *cand)
{
    gchar *line = g_str_has_prefix(cand, "a=") ? g_strdup(cand) : g_strconcat("a=", cand, NULL);
    NiceCandidate *c = nice_agent_parse_remote_candidate_sdp(pc->agent, pc->stream, line);
    g_free(line);
    if (!c)
        return g_str_has_prefix(cand, "candidate:") || g_str_has_prefix(cand, "a=candidate:")
                   ? 0 : PL_EPARSE;     /* well-formed but unsupported (TCP, mDNS) */
    int rc = 0;
    if (c->component_id == 1 && c->transport == NICE_CANDIDATE_TRANSPORT_UDP) {
        GSList one = { .data = c, .next = NULL };
        if (nice_agent_set_remote_candidates(pc->agent, pc->stream, 1, &one) < 0)
            rc = PL_EPARSE;
    }
    nice_candidate_free(c);
    return rc;
}

void pl_pc_remote_candidates_done(pl_pc_t *pc)
{
    nice_agent_peer_candidate_gathering_done(pc->agent, pc->stream);
}

static int srtp_send(pl_pc_t *pc, uint8_t *pkt, size_t len, size_t cap, bool rtcp)
{
    if (!pc->srtp_ready || pc->state != PL_PC_CONNECTED)
        return PL_ESTATE;
    if (cap < len + PL_PC_SRTP_OVERHEAD)
        return -ENOBUFS;
    size_t n = len;
    int st = rtcp ? pl_srtp_protect_rtcp(pc->srtp_out, pkt, &n, cap)
                  : pl_srtp_protect_rtp(pc->srtp_out, pkt, &n, cap);
    if (st != PL_SRTP_OK)
        return PL_ECRYPTO;
    return pc_send(pc, pkt, n);
}

int pl_pc_send_rtp(pl_pc_t *pc, uint8_t *pkt, size_t len, size_t cap)
{
    return srtp_send(pc, pkt, len, cap, false);
}

int pl_pc_send_rtcp(pl_pc_t *pc, uint8_t *pkt, size_t len, size_t cap)
{
    return srtp_send(pc, pkt, len, cap, true);
}
