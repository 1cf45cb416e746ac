/* turn_allocate.c: the Allocate (RFC 8656 §7.2) and Refresh (§7.3) methods:
 * REQUESTED-TRANSPORT, DONT-FRAGMENT, REQUESTED-ADDRESS-FAMILY and
 * ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §7.2, RFC 6156), EVEN-PORT and RESERVATION-TOKEN,
 * lifetimes, quotas (486, 508), the 5-tuple rule (437, retransmissions answered again)
 * and ALTERNATE-SERVER redirects (300).
 *
 * Redirects: when turn.alternate_servers is set, every new Allocate from an
 * authenticated client is answered 300 with the next server of the client's address
 * family (coturn's alternate-server load balancing); while draining, a node with
 * alternates redirects and a node without answers 508. Redirects come after
 * authentication so the server never hands its fleet's addresses to anonymous probes.
 *
 * REQUESTED-TRANSPORT TCP (RFC 6062) makes a TCP allocation when the io relays TCP
 * (turn_tcp.c checks it and runs Connect/ConnectionBind); otherwise it gets 442.
 *
 * What it does not: EVEN-PORT with the R bit together with
 * ADDITIONAL-ADDRESS-FAMILY is refused (400): a token reserves one port of one family.
 *
 * Threading: the server's thread. */
#include "relay/turn/turn_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

typedef struct alloc_params {
    bool fam[2];            /* relayed families wanted: [0] IPv4, [1] IPv6 */
    bool dual;              /* ADDITIONAL-ADDRESS-FAMILY */
    bool even, reserve;     /* EVEN-PORT, its R bit */
    bool has_token;
    uint64_t token;
    bool df;
    bool tcp;               /* REQUESTED-TRANSPORT TCP (RFC 6062) */
} alloc_params_t;

static uint32_t grant_lifetime(const pl_turn_settings_t *set, const pl_stun_msg_t *m)
{
    uint32_t req;
    if (pl_stun_get_u32(m, PL_STUN_ATTR_LIFETIME, &req) != 0)
        return set->default_lifetime_s;
    /* RFC 8656 §7.2: min(requested, maximum), but never below the default. */
    return PL_MAX(PL_MIN(req, set->max_lifetime_s), set->default_lifetime_s);
}

/* Reads the family attributes. Returns 0 or the error code. */
static int parse_families(const pl_stun_msg_t *m, alloc_params_t *p)
{
    uint8_t fam = 0, extra = 0;
    bool has_req = pl_stun_get_family(m, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, &fam) == 0;
    p->dual = pl_stun_get_family(m, PL_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, &extra) == 0;
    /* RFC 8656 §7.2: the two family attributes exclude each other, a token excludes
     * both, and ADDITIONAL-ADDRESS-FAMILY may only ask for IPv6. */
    if ((has_req && p->dual) || (p->has_token && (has_req || p->dual)))
        return 400;
    if (p->dual) {
        if (extra != PL_STUN_FAMILY_IPV6 || p->reserve)
            return 400;
        p->fam[0] = p->fam[1] = true;
        return 0;
    }
    if (has_req && fam != PL_STUN_FAMILY_IPV4 && fam != PL_STUN_FAMILY_IPV6)
        return 440;
    p->fam[has_req && fam == PL_STUN_FAMILY_IPV6] = true;
    return 0;
}

static int parse_params(const pl_turn_server_t *s, const pl_turn_conn_t *conn,
                        const pl_stun_msg_t *m, alloc_params_t *p)
{
    uint8_t proto;
    memset(p, 0, sizeof *p);
    int rc = pl_stun_get_transport(m, &proto);
    if (rc != 0)
        return 400;     /* RFC 8656 §7.2: REQUESTED-TRANSPORT is mandatory */
    if (proto == PL_STUN_TRANSPORT_TCP) {
        int code = pl_turn_tcp_allocate_check(s, conn, m);
        if (code != 0)
            return code;
        p->tcp = true;
    } else if (proto != PL_STUN_TRANSPORT_UDP) {
        return 442;
    }
    p->df = pl_stun_has(m, PL_STUN_ATTR_DONT_FRAGMENT);
    p->has_token = pl_stun_get_u64(m, PL_STUN_ATTR_RESERVATION_TOKEN, &p->token) == 0;
    p->even = pl_stun_get_even_port(m, &p->reserve) == 0;
    if (p->has_token && p->even)
        return 400;     /* RFC 8656 §7.2 */
    return parse_families(m, p);
}

static void send_success(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                         const pl_stun_msg_t *m, const pl_turn_auth_t *auth,
                         const pl_turn_alloc_t *a)
{
    uint64_t now = pl_turn_now_ms(s);
    pl_turn_reply_t r;
    pl_turn_reply_start(s, &r, m, PL_STUN_CLASS_SUCCESS, auth);
    for (int f = 0; f < 2; f++)
        if (a->relay[f].fd >= 0)
            pl_stun_add_addr(&r.b, PL_STUN_ATTR_XOR_RELAYED_ADDRESS, &a->relay[f].advertised);
    if (a->addr_err_fam)
        pl_stun_add_address_error(&r.b, a->addr_err_fam, 440, NULL);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_LIFETIME,
                    (uint32_t)(a->expires_ms > now ? (a->expires_ms - now + 999) / 1000 : 0));
    if (a->resv_token)
        pl_stun_add_u64(&r.b, PL_STUN_ATTR_RESERVATION_TOKEN, a->resv_token);
    pl_stun_add_addr(&r.b, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &conn->client);
    pl_turn_reply_send(s, &r, conn, 0);
}

/* RFC 8489 §10 / RFC 8656 §7.2: 300 Try Alternate. Returns true when redirected. */
static bool redirect(pl_turn_server_t *s, const pl_turn_conn_t *conn, const pl_stun_msg_t *m,
                     const pl_turn_auth_t *auth)
{
    const pl_turn_settings_t *set = s->set;
    size_t n = set->n_alt;
    if (n == 0)
        return false;
    unsigned start = atomic_fetch_add_explicit(&s->shared->alt_rr, 1, memory_order_relaxed);
    for (size_t k = 0; k < n; k++) {
        const pl_sockaddr_t *alt = &set->alt[(start + k) % n];
        /* Only an alternate the client can reach over its own address family. */
        if (alt->sa.sa_family != conn->client.sa.sa_family)
            continue;
        pl_turn_reply_t r;
        pl_turn_reply_start(s, &r, m, PL_STUN_CLASS_ERROR, auth);
        pl_stun_add_error(&r.b, 300, NULL);
        pl_stun_add_addr(&r.b, PL_STUN_ATTR_ALTERNATE_SERVER, alt);
        pl_turn_reply_send(s, &r, conn, 300);
        return true;
    }
    return false;
}

/* Opens the relays. Returns 0 or an error code; on error the caller deletes a. */
static int open_relays(pl_turn_server_t *s, pl_turn_alloc_t *a, alloc_params_t *p,
                       uint16_t token_port, uint8_t token_fam)
{
    const pl_turn_settings_t *set = s->set;
    bool want[2] = {p->fam[0] && set->has_relay[0], p->fam[1] && set->has_relay[1]};
    if (!want[0] && !want[1])
        return 440;
    if (p->dual && !(want[0] && want[1]))
        a->addr_err_fam = want[0] ? PL_STUN_FAMILY_IPV6 : PL_STUN_FAMILY_IPV4;
    for (int f = 0; f < 2; f++) {
        if (!want[f])
            continue;
        pl_turn_relay_req_t req = {(uint8_t)f, p->even, p->reserve, p->has_token, token_port};
        uint16_t pair = 0;
        int hold = -1;
        if (p->has_token && f != token_fam)
            continue;
        int rc = pl_turn_alloc_open_relay(s, a, &req, &pair, &hold);
        if (rc != 0)
            return 508;
        if (!p->reserve)
            continue;
        pl_turn_resv_item_t item = { 0, (uint8_t)f, pair, hold };
        while (item.token == 0 &&
               getrandom(&item.token, sizeof item.token, 0) == (ssize_t)sizeof item.token) {
        }
        if (item.token == 0 || pl_turn_resv_add(s->shared, &item, pl_turn_now_ms(s)) != 0) {
            if (hold >= 0)
                close(hold);
            pl_turn_ports_release(&s->shared->ports[f], pair);
            return 508;
        }
        a->resv_token = item.token;
    }
    return 0;
}

static void log_created(pl_turn_server_t *s, const pl_turn_alloc_t *a)
{
    char name[32], c[PL_SOCKADDR_STRLEN], r0[PL_SOCKADDR_STRLEN], r1[PL_SOCKADDR_STRLEN];
    pl_log_info("turn.alloc.created", "alloc=%s user=%s client=%s relay=%s relay6=%s "
                "lifetime_s=%u", pl_turn_alloc_name(s, a, name, sizeof name),
                PL_LOG_QUOTED(a->user), pl_sockaddr_str(&a->conn.client, c, sizeof c),
                a->relay[0].fd >= 0 ? pl_sockaddr_str(&a->relay[0].advertised, r0, sizeof r0) : "-",
                a->relay[1].fd >= 0 ? pl_sockaddr_str(&a->relay[1].advertised, r1, sizeof r1) : "-",
                a->lifetime_s);
}

/* Creates the allocation. Returns 0 (success sent) or an error code to send. */
static int create(pl_turn_server_t *s, const pl_turn_conn_t *conn, const pl_stun_msg_t *m,
                  const pl_turn_auth_t *auth, alloc_params_t *p)
{
    pl_turn_resv_item_t item = { .token = p->token, .hold_fd = -1 };
    /* RFC 8656 §7.2: an unknown or expired token is 508. */
    if (p->has_token && pl_turn_resv_take(s->shared, pl_turn_now_ms(s), &item) != 0)
        return 508;
    /* The hold socket kept the port from other processes; let go so relay_open binds. */
    if (item.hold_fd >= 0)
        close(item.hold_fd);
    uint16_t token_port = item.port;
    uint8_t token_fam = item.fam_idx;
    if (p->has_token) {
        p->fam[token_fam] = true;
        p->fam[!token_fam] = false;
    }
    pl_turn_alloc_t *a;
    int rc = pl_turn_alloc_new(s, conn, auth->user, auth->quota_user, &a);
    if (rc != 0) {
        if (p->has_token)
            pl_turn_ports_release(&s->shared->ports[token_fam], token_port);
        return rc == -EDQUOT ? 486 : 508;
    }
    a->tcp = p->tcp;
    int code = open_relays(s, a, p, token_port, token_fam);
    if (code != 0) {
        /* The token's port was released by the failed open, or is owned by the open
         * relay that pl_turn_alloc_delete closes. */
        pl_turn_alloc_delete(s, a, "failed");
        return code;
    }
    memcpy(a->tid, pl_stun_msg_tid(m), PL_STUN_TID_LEN);
    a->df_all = p->df;
    a->lifetime_s = grant_lifetime(s->set, m);
    a->expires_ms = pl_turn_now_ms(s) + (uint64_t)a->lifetime_s * 1000;
    pl_metric_inc(s->shard, s->mid->allocs_created);
    log_created(s, a);
    send_success(s, conn, m, auth, a);
    return 0;
}

void pl_turn_handle_allocate(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                             const pl_stun_msg_t *m, const pl_turn_auth_t *auth)
{
    pl_turn_alloc_t *a = pl_turn_alloc_find(s, conn);
    if (a) {
        /* RFC 8656 §7.2: the 5-tuple is taken. A retransmission of the request that
         * created it gets the success response again; anything else is 437. */
        if (memcmp(a->tid, pl_stun_msg_tid(m), PL_STUN_TID_LEN) == 0 &&
            strcmp(a->user, auth->user) == 0)
            send_success(s, conn, m, auth, a);
        else
            pl_turn_reply_error(s, conn, m, auth, 437);
        return;
    }
    alloc_params_t p;
    int code = parse_params(s, conn, m, &p);
    if (code == 0 && redirect(s, conn, m, auth))
        return;
    if (code == 0 && s->draining)
        code = 508;
    if (code == 0)
        code = create(s, conn, m, auth, &p);
    if (code != 0)
        pl_turn_reply_error(s, conn, m, auth, code);
}

void pl_turn_handle_refresh(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                            const pl_stun_msg_t *m, const pl_turn_auth_t *auth)
{
    pl_turn_alloc_t *a = pl_turn_alloc_for_request(s, conn, m, auth);
    if (!a)
        return;
    uint8_t fam = 0;
    int only = -1;
    if (pl_stun_get_family(m, PL_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, &fam) == 0) {
        only = fam == PL_STUN_FAMILY_IPV4 ? 0 : fam == PL_STUN_FAMILY_IPV6 ? 1 : -2;
        /* RFC 8656 §7.3: a family the allocation does not have is 443. */
        if (only < 0 || a->relay[only].fd < 0) {
            pl_turn_reply_error(s, conn, m, auth, 443);
            return;
        }
    }
    uint32_t req = 1;
    bool has_lifetime = pl_stun_get_u32(m, PL_STUN_ATTR_LIFETIME, &req) == 0;
    pl_turn_reply_t r;
    pl_turn_reply_start(s, &r, m, PL_STUN_CLASS_SUCCESS, auth);
    if (has_lifetime && req == 0) {
        /* Lifetime 0 deletes the allocation, or one family of a dual allocation. */
        bool other = only >= 0 && a->relay[!only].fd >= 0;
        if (other) {
            pl_turn_alloc_close_relay(s, a, only);
        } else {
            pl_turn_alloc_delete(s, a, "refresh");
        }
        pl_stun_add_u32(&r.b, PL_STUN_ATTR_LIFETIME, 0);
    } else {
        a->lifetime_s = grant_lifetime(s->set, m);
        a->expires_ms = pl_turn_now_ms(s) + (uint64_t)a->lifetime_s * 1000;
        pl_stun_add_u32(&r.b, PL_STUN_ATTR_LIFETIME, a->lifetime_s);
    }
    pl_turn_reply_send(s, &r, conn, 0);
}
