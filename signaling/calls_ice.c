/* calls_ice.c: the iceServers each call participant receives (WebRTC RTCIceServer
 * objects): parleyd's STUN URL, and its TURN URLs (UDP, TCP, and TLS when [turn] has a
 * certificate) with TURN REST API credentials (username "<expiry>:<account id>",
 * password base64(HMAC-SHA1(secret, username))) minted by relay/turn from the same
 * [turn] auth_secret the TURN server checks, valid for [turn] rest_ttl.
 *
 * URLs: [calls] stun_urls / turn_urls when set (a TURN fleet elsewhere); otherwise
 * derived from [turn] listen / tls_listen with the host [calls] ice_host, else the
 * public part of [turn] external_ip, else the listen address itself.
 *
 * What it does not do: check that the TURN server is up, or TURN over TCP (RFC 6062
 * is not served yet; clients fall back to UDP/TLS).
 *
 * Threading: init/deinit on whichever thread owns the pl_calls_ice_t (built on the
 * main thread, then owned by the presence thread); minting is thread-safe. */
#include "signaling/calls_int.h"
#include "core/pl_log.h"
#include "core/pl_net.h"
#ifdef PL_SIG_HAVE_TURN
#include "relay/turn/pl_turn.h"
#endif

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void pl_calls_default_urls(const char *host, uint16_t port, uint16_t tls_port,
                           pl_calls_ice_t *out)
{
    char h[PL_CALL_URL_MAX - 64];
    /* RFC 7064/7065: an IPv6 literal host goes in brackets. */
    if (strchr(host, ':') && host[0] != '[')
        snprintf(h, sizeof(h), "[%s]", host);
    else
        snprintf(h, sizeof(h), "%s", host);
    out->n_stun = out->n_turn = 0;
    snprintf(out->stun[out->n_stun++], PL_CALL_URL_MAX, "stun:%s:%u", h, port);
    snprintf(out->turn[out->n_turn++], PL_CALL_URL_MAX, "turn:%s:%u?transport=udp", h, port);
    snprintf(out->turn[out->n_turn++], PL_CALL_URL_MAX, "turn:%s:%u?transport=tcp", h, port);
    if (tls_port)
        snprintf(out->turn[out->n_turn++], PL_CALL_URL_MAX, "turns:%s:%u?transport=tcp", h,
                 tls_port);
}

static size_t copy_list(const pl_config_t *cfg, const char *key, char dst[][PL_CALL_URL_MAX])
{
    const char *const *items;
    size_t n = pl_config_list(cfg, "calls", key, &items), k = 0;
    for (size_t i = 0; i < n && k < PL_CALL_URLS_MAX; i++)
        snprintf(dst[k++], PL_CALL_URL_MAX, "%s", items[i]);
    return k;
}

#ifdef PL_SIG_HAVE_TURN
/* The host in derived URLs. Returns false when none is usable. */
static bool pick_host(const pl_config_t *cfg, const pl_sockaddr_t *listen, char *out, size_t cap)
{
    const char *const *items;
    const char *h = pl_config_str(cfg, "calls", "ice_host");
    if (h[0]) {
        snprintf(out, cap, "%s", h);
        return true;
    }
    if (pl_config_list(cfg, "turn", "external_ip", &items) > 0) {
        size_t n = strcspn(items[0], "/");
        snprintf(out, cap, "%.*s", (int)n, items[0]);
        return true;
    }
    pl_sockaddr_t any;
    pl_ipaddr_parse(listen->sa.sa_family == AF_INET6 ? "::" : "0.0.0.0", &any);
    if (pl_ipaddr_equal(listen, &any))
        return false;
    pl_ipaddr_str(listen, out, cap);
    return true;
}

static void derive(pl_calls_ice_t *ice, const pl_config_t *cfg)
{
    const char *const *items;
    pl_sockaddr_t a, t;
    char host[256];
    if (!pl_config_bool(cfg, "turn", "enabled") ||
        pl_config_list(cfg, "turn", "listen", &items) == 0 ||
        pl_sockaddr_parse(items[0], 3478, &a) < 0)
        return;
    uint16_t tls_port = 0;
    if (pl_config_str(cfg, "turn", "tls_cert")[0] &&
        pl_config_list(cfg, "turn", "tls_listen", &items) > 0 &&
        pl_sockaddr_parse(items[0], 5349, &t) == 0)
        tls_port = pl_sockaddr_port(&t);
    if (!pick_host(cfg, &a, host, sizeof(host))) {
        pl_log_warn("calls.ice.no_host", "msg=\"[turn] listens on a wildcard address: set "
                    "[calls] ice_host so clients get TURN URLs\"");
        return;
    }
    pl_calls_default_urls(host, pl_sockaddr_port(&a), tls_port, ice);
}
#endif

void pl_calls_ice_init(pl_calls_ice_t *ice, const pl_config_t *cfg)
{
    memset(ice, 0, sizeof(*ice));
    ice->cfg = pl_config_ref((pl_config_t *)(uintptr_t)cfg);
#ifdef PL_SIG_HAVE_TURN
    derive(ice, cfg);
#endif
    pl_calls_ice_t explicit_urls;
    size_t ns = copy_list(cfg, "stun_urls", explicit_urls.stun);
    size_t nt = copy_list(cfg, "turn_urls", explicit_urls.turn);
    if (ns) {
        memcpy(ice->stun, explicit_urls.stun, sizeof(ice->stun));
        ice->n_stun = ns;
    }
    if (nt) {
        memcpy(ice->turn, explicit_urls.turn, sizeof(ice->turn));
        ice->n_turn = nt;
    }
    pl_log_info("calls.ice", "stun=%s turn=%s turn_urls=%zu",
                ice->n_stun ? PL_LOG_QUOTED(ice->stun[0]) : "none",
                ice->n_turn ? PL_LOG_QUOTED(ice->turn[0]) : "none", ice->n_turn);
}

void pl_calls_ice_deinit(pl_calls_ice_t *ice)
{
    if (!ice)
        return;
    pl_config_unref(ice->cfg);
    ice->cfg = NULL;
}

static json_t *url_array(const char urls[][PL_CALL_URL_MAX], size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(urls[i]));
    return a;
}

json_t *pl_calls_ice_servers(const pl_calls_ice_t *ice, uint64_t account_id)
{
    json_t *servers = json_array();
    if (!ice)
        return servers;
    if (ice->n_stun)
        json_array_append_new(servers, json_pack("{s:o}", "urls", url_array(ice->stun, ice->n_stun)));
#ifdef PL_SIG_HAVE_TURN
    char user[24], username[300], password[64];
    snprintf(user, sizeof(user), "%" PRIu64, account_id);
    if (ice->n_turn &&
        pl_turn_mint_credentials(ice->cfg, user, pl_now_wall_ms() / 1000, username,
                                 sizeof(username), password, sizeof(password)) == 0)
        json_array_append_new(servers, json_pack("{s:o,s:s,s:s}", "urls",
                                                 url_array(ice->turn, ice->n_turn), "username",
                                                 username, "credential", password));
#else
    PL_UNUSED(account_id);
#endif
    return servers;
}
