/* turn_perm.c: what happens on an existing allocation: CreatePermission (RFC 8656
 * §9-10), ChannelBind (§11-12), Send indications (§10.2 client side, §11.1 server),
 * ChannelData both ways (§12.4-12.6) and Data indications (§11.3), with the peer
 * policy (403), family checks (443), the 5-tuple and username rules (437, 441) and
 * the per-allocation bandwidth cap.
 *
 * The data paths (ChannelData from the client, any datagram from a peer) do no
 * allocation and take no lock: one hash probe for the 5-tuple (client side) or none
 * (peer side: the relay socket points at its allocation), a short scan of the
 * allocation's permissions and channels, and in-place framing in the headroom the
 * data plane left in front of the payload.
 *
 * Threading: the server's thread. */
#include "relay/turn/turn_int.h"

#include <errno.h>
#include <string.h>

pl_turn_alloc_t *pl_turn_alloc_for_request(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                           const pl_stun_msg_t *m, const pl_turn_auth_t *auth)
{
    pl_turn_alloc_t *a = pl_turn_alloc_find(s, conn);
    if (!a) {
        pl_turn_reply_error(s, conn, m, auth, 437);     /* RFC 8656 §7.3, §9, §11 */
        return NULL;
    }
    /* RFC 8656 §5: later requests must use the username that created the allocation. */
    if (strcmp(a->user, auth->user) != 0) {
        pl_metric_inc(s->shard, s->mid->authfail[PL_TURN_AUTH_WRONG_CREDENTIALS]);
        pl_turn_reply_error(s, conn, m, auth, 441);
        return NULL;
    }
    return a;
}

/* Checks a peer address for a permission or channel: 0, 443 (no relay of its family)
 * or 403 (policy). */
static int check_peer(pl_turn_server_t *s, const pl_turn_alloc_t *a, const pl_sockaddr_t *peer)
{
    int f = pl_turn_fam_idx(peer);
    if (f < 0 || a->relay[f].fd < 0)
        return 443;
    return pl_turn_peer_allowed(s->set, peer) ? 0 : 403;
}

void pl_turn_handle_create_permission(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                      const pl_stun_msg_t *m, const pl_turn_auth_t *auth)
{
    pl_turn_alloc_t *a = pl_turn_alloc_for_request(s, conn, m, auth);
    if (!a)
        return;
    int code = pl_stun_has(m, PL_STUN_ATTR_XOR_PEER_ADDRESS) ? 0 : 400;
    /* RFC 8656 §10.2: all of the addresses or none. */
    for (int i = pl_stun_find(m, PL_STUN_ATTR_XOR_PEER_ADDRESS, 0); i >= 0 && code == 0;
         i = pl_stun_find(m, PL_STUN_ATTR_XOR_PEER_ADDRESS, i + 1)) {
        pl_sockaddr_t peer;
        code = pl_stun_attr_addr(m, i, &peer) != 0 ? 400 : check_peer(s, a, &peer);
    }
    uint64_t now = pl_turn_now_ms(s);
    pl_turn_alloc_prune(a, now);
    size_t fresh = 0;
    for (int i = pl_stun_find(m, PL_STUN_ATTR_XOR_PEER_ADDRESS, 0); i >= 0 && code == 0;
         i = pl_stun_find(m, PL_STUN_ATTR_XOR_PEER_ADDRESS, i + 1)) {
        pl_sockaddr_t peer;
        pl_stun_attr_addr(m, i, &peer);
        fresh += pl_turn_perm_find(a, &peer, now) == NULL;
    }
    if (code == 0 && a->n_perms + fresh > PL_TURN_MAX_PERMS)
        code = 508;         /* capacity, checked first so the request stays all-or-none */
    uint64_t expires = now + (uint64_t)s->set->permission_lifetime_s * 1000;
    for (int i = pl_stun_find(m, PL_STUN_ATTR_XOR_PEER_ADDRESS, 0); i >= 0 && code == 0;
         i = pl_stun_find(m, PL_STUN_ATTR_XOR_PEER_ADDRESS, i + 1)) {
        pl_sockaddr_t peer;
        pl_stun_attr_addr(m, i, &peer);
        pl_turn_perm_add(a, &peer, expires);
    }
    if (code != 0) {
        pl_turn_reply_error(s, conn, m, auth, code);
        return;
    }
    pl_turn_reply_t r;
    pl_turn_reply_start(s, &r, m, PL_STUN_CLASS_SUCCESS, auth);
    pl_turn_reply_send(s, &r, conn, 0);
}

/* RFC 8656 §11.2 checks on a ChannelBind. Returns 0 or the error code. */
static int check_bind(pl_turn_server_t *s, pl_turn_alloc_t *a, const pl_stun_msg_t *m,
                      uint16_t *num, pl_sockaddr_t *peer)
{
    if (pl_stun_get_channel(m, num) != 0 || !pl_turn_channel_valid(*num) ||
        pl_stun_get_addr(m, PL_STUN_ATTR_XOR_PEER_ADDRESS, peer) != 0 ||
        pl_sockaddr_port(peer) == 0)
        return 400;
    int code = check_peer(s, a, peer);
    if (code != 0)
        return code;
    uint64_t now = pl_turn_now_ms(s);
    /* A channel is bound to one peer and a peer to one channel, until it expires. */
    pl_turn_chan_t *by_num = pl_turn_chan_by_num(a, *num, now);
    pl_turn_chan_t *by_peer = pl_turn_chan_by_peer(a, peer, now);
    if ((by_num && !pl_sockaddr_equal(&by_num->peer, peer)) || (by_peer && by_peer->num != *num))
        return 400;
    return 0;
}

void pl_turn_handle_channel_bind(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                 const pl_stun_msg_t *m, const pl_turn_auth_t *auth)
{
    pl_turn_alloc_t *a = pl_turn_alloc_for_request(s, conn, m, auth);
    if (!a)
        return;
    uint16_t num = 0;
    pl_sockaddr_t peer;
    uint64_t now = pl_turn_now_ms(s);
    pl_turn_alloc_prune(a, now);
    /* A TCP allocation (RFC 6062) relays over peer data connections, not channels. */
    int code = a->tcp ? 400 : check_bind(s, a, m, &num, &peer);
    if (code == 0 && !pl_turn_chan_by_num(a, num, now) && a->n_chans >= PL_TURN_MAX_CHANS)
        code = 508;
    if (code == 0 && !pl_turn_perm_find(a, &peer, now) && a->n_perms >= PL_TURN_MAX_PERMS)
        code = 508;
    if (code != 0) {
        pl_turn_reply_error(s, conn, m, auth, code);
        return;
    }
    /* RFC 8656 §11.2: binding (or refreshing) a channel also installs or refreshes
     * the permission for the peer's IP. */
    pl_turn_chan_add(a, num, &peer, now + (uint64_t)s->set->channel_lifetime_s * 1000);
    pl_turn_perm_add(a, &peer, now + (uint64_t)s->set->permission_lifetime_s * 1000);
    pl_turn_reply_t r;
    pl_turn_reply_start(s, &r, m, PL_STUN_CLASS_SUCCESS, auth);
    pl_turn_reply_send(s, &r, conn, 0);
}

/* Relays len bytes from the client to peer. */
static void to_peer(pl_turn_server_t *s, pl_turn_alloc_t *a, const pl_sockaddr_t *peer,
                    const uint8_t *data, size_t len, unsigned flags)
{
    uint64_t now = pl_turn_now_ms(s);
    int f = pl_turn_fam_idx(peer);
    if (a->tcp) {
        pl_turn_drop(s, PL_TURN_DROP_UNEXPECTED);   /* RFC 6062: data goes over connections */
        return;
    }
    if (f < 0 || a->relay[f].fd < 0 || !pl_turn_perm_find(a, peer, now)) {
        pl_turn_drop(s, PL_TURN_DROP_NO_PERMISSION);
        return;
    }
    if (!pl_turn_alloc_bw_ok(s, a, PL_TURN_DIR_C2P, len, now)) {
        pl_turn_drop(s, PL_TURN_DROP_BANDWIDTH);
        return;
    }
    if (a->df_all)
        flags |= PL_TURN_SEND_DF;
    if (s->io->send_peer(s->io_ctx, &a->relay[f], peer, data, len, flags) != 0) {
        pl_turn_drop(s, PL_TURN_DROP_SEND_FAILED);
        return;
    }
    a->pkts[PL_TURN_DIR_C2P]++;
    a->bytes[PL_TURN_DIR_C2P] += len;
    pl_metric_inc(s->shard, s->mid->pkts[PL_TURN_DIR_C2P]);
    pl_metric_add(s->shard, s->mid->bytes[PL_TURN_DIR_C2P], len);
}

void pl_turn_handle_send(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                         const pl_stun_msg_t *m)
{
    pl_turn_alloc_t *a = pl_turn_alloc_find(s, conn);
    if (!a) {
        pl_turn_drop(s, PL_TURN_DROP_NO_ALLOCATION);
        return;
    }
    pl_sockaddr_t peer;
    const uint8_t *data;
    size_t len;
    if (pl_stun_get_addr(m, PL_STUN_ATTR_XOR_PEER_ADDRESS, &peer) != 0 ||
        pl_stun_get_bytes(m, PL_STUN_ATTR_DATA, &data, &len) != 0) {
        pl_turn_drop(s, PL_TURN_DROP_MALFORMED);    /* RFC 8656 §10.2: discard */
        return;
    }
    unsigned flags = pl_stun_has(m, PL_STUN_ATTR_DONT_FRAGMENT) ? PL_TURN_SEND_DF : 0;
    to_peer(s, a, &peer, data, len, flags);
}

void pl_turn_handle_channel_data(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                                 const uint8_t *buf, size_t len)
{
    pl_stun_chandata_t cd;
    if (pl_turn_chandata_parse(buf, len, &cd) != 0) {
        pl_turn_drop(s, PL_TURN_DROP_MALFORMED);
        return;
    }
    pl_turn_alloc_t *a = pl_turn_alloc_find(s, conn);
    if (!a) {
        pl_turn_drop(s, PL_TURN_DROP_NO_ALLOCATION);
        return;
    }
    pl_turn_chan_t *c = pl_turn_chan_by_num(a, cd.channel, pl_turn_now_ms(s));
    if (!c) {
        pl_turn_drop(s, PL_TURN_DROP_NO_CHANNEL);   /* RFC 8656 §12.4: discard */
        return;
    }
    to_peer(s, a, &c->peer, cd.data, cd.len, 0);
}

/* Frames a Data indication (RFC 8656 §11.3) around data in place. Returns the start
 * and sets *total, or NULL. */
static uint8_t *frame_data_ind(pl_turn_server_t *s, const pl_sockaddr_t *peer, uint8_t *data,
                               size_t len, size_t *total)
{
    uint8_t hdr[PL_TURN_HEADROOM], tid[PL_STUN_TID_LEN];
    for (size_t i = 0; i < sizeof tid; i += 4) {
        s->rng ^= s->rng << 13, s->rng ^= s->rng >> 17, s->rng ^= s->rng << 5;
        memcpy(tid + i, &s->rng, 4);
    }
    pl_stun_builder_t b;
    pl_stun_build_init(&b, hdr, sizeof hdr, pl_stun_type(PL_STUN_METHOD_DATA,
                       PL_STUN_CLASS_INDICATION), tid);
    pl_stun_add_addr(&b, PL_STUN_ATTR_XOR_PEER_ADDRESS, peer);
    int n = pl_stun_build_finish(&b);
    size_t padded = (len + 3) & ~(size_t)3;
    if (n < 0 || (size_t)n + 4 > PL_TURN_HEADROOM || len > 0xFFFF - 4 - ((size_t)n - 20))
        return NULL;
    /* DATA's attribute header, then the message length covers it and the padded data. */
    hdr[n] = (uint8_t)(PL_STUN_ATTR_DATA >> 8);
    hdr[n + 1] = (uint8_t)PL_STUN_ATTR_DATA;
    hdr[n + 2] = (uint8_t)(len >> 8);
    hdr[n + 3] = (uint8_t)len;
    size_t body = (size_t)n - 20 + 4 + padded;
    hdr[2] = (uint8_t)(body >> 8);
    hdr[3] = (uint8_t)body;
    uint8_t *start = data - (n + 4);
    memcpy(start, hdr, (size_t)n + 4);
    memset(data + len, 0, padded - len);
    *total = (size_t)n + 4 + padded;
    return start;
}

void pl_turn_server_peer_input(pl_turn_server_t *s, pl_turn_relay_t *relay,
                               const pl_sockaddr_t *peer, uint8_t *data, size_t len)
{
    pl_turn_alloc_t *a = relay->alloc;
    uint64_t now = pl_turn_now_ms(s);
    /* RFC 8656 §11.3/§12.6: only from peers with a permission. */
    if (!pl_turn_perm_find(a, peer, now)) {
        pl_turn_drop(s, PL_TURN_DROP_NO_PERMISSION);
        return;
    }
    if (!pl_turn_alloc_bw_ok(s, a, PL_TURN_DIR_P2C, len, now)) {
        pl_turn_drop(s, PL_TURN_DROP_BANDWIDTH);
        return;
    }
    pl_turn_chan_t *c = pl_turn_chan_by_peer(a, peer, now);
    uint8_t *start;
    size_t total = 0;
    if (c) {
        start = data - PL_STUN_CHANDATA_HEADER_LEN;
        int n = pl_turn_chandata_frame(start, len + PL_STUN_CHANDATA_HEADER_LEN + PL_TURN_TAILROOM,
                                       c->num, len, a->conn.transport != PL_TURN_UDP);
        total = n > 0 ? (size_t)n : 0;
    } else {
        start = frame_data_ind(s, peer, data, len, &total);
    }
    if (!start || total == 0) {
        pl_turn_drop(s, PL_TURN_DROP_TRUNCATED);
        return;
    }
    if (s->io->send_client(s->io_ctx, &a->conn, start, total) != 0) {
        pl_turn_drop(s, PL_TURN_DROP_SEND_FAILED);
        return;
    }
    a->pkts[PL_TURN_DIR_P2C]++;
    a->bytes[PL_TURN_DIR_P2C] += len;
    pl_metric_inc(s->shard, s->mid->pkts[PL_TURN_DIR_P2C]);
    pl_metric_add(s->shard, s->mid->bytes[PL_TURN_DIR_P2C], len);
}
