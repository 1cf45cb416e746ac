/* turn_config.c: the [turn] option table (key names follow coturn's options, with
 * underscores), the module's validate hook and pl_turn_mint_credentials.
 *
 * What it does not: parse values into the runtime snapshot (turn_settings.c does; the
 * validate hook simply builds one and throws it away, so validation and runtime can
 * never disagree), or touch sockets.
 *
 * Threading: the table is immutable; validate runs on the main thread; minting is
 * thread-safe. */
#include "relay/turn/turn_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define R PL_OPT_RELOADABLE
#define S PL_OPT_SECRET
#define MS(s) ((int64_t)(s) * 1000)

static const pl_opt_def_t turn_defs[] = {
    {"turn", "enabled", PL_OPT_BOOL, "false", 0, 0, NULL, 0,
     "Run the STUN/TURN server (relay threads; UDP, TCP and TLS listeners)"},
    {"turn", "listen", PL_OPT_LIST, "127.0.0.1:3478", 0, PL_TURN_MAX_LISTEN, NULL, 0,
     "STUN/TURN addresses, UDP and TCP on the same port (host:port, default port 3478; port 0 = any free port) (coturn listening-ip)"},
    {"turn", "tls_listen", PL_OPT_LIST, "127.0.0.1:5349", 0, PL_TURN_MAX_LISTEN, NULL, 0,
     "TURN over TLS addresses (default port 5349); used only when tls_cert and tls_key are set"},
    {"turn", "realm", PL_OPT_STRING, "parley", 1, 127, NULL, R,
     "Realm of the long-term credentials (RFC 8489 §9.2; coturn realm)"},
    {"turn", "users", PL_OPT_LIST, "", 0, 0, NULL, R | S,
     "Static users as user:password (coturn user=); env PARLEY_TURN_USERS"},
    {"turn", "auth_secret", PL_OPT_LIST, "", 0, 16, NULL, R | S,
     "TURN REST API shared secrets, current first, older ones still accepted (coturn static-auth-secret)"},
    {"turn", "rest_ttl", PL_OPT_DURATION, "24h", MS(60), MS(30 * 86400), NULL, R,
     "Validity of the REST credentials pl_turn_mint_credentials mints for signaling"},
    {"turn", "allowed_peers", PL_OPT_LIST, "", 0, 0, NULL, R,
     "CIDR ranges peers may be in even when denied by default or by denied_peers (coturn allowed-peer-ip)"},
    {"turn", "denied_peers", PL_OPT_LIST, "", 0, 0, NULL, R,
     "CIDR ranges refused (403) on top of the built-in private/loopback/... ranges (coturn denied-peer-ip)"},
    {"turn", "relay_ip", PL_OPT_LIST, "", 0, 2, NULL, 0,
     "Addresses relayed sockets bind to, at most one IPv4 and one IPv6; default: the first listen address of each family"},
    {"turn", "relay_ports", PL_OPT_STRING, "49152-65535", 1, 16, NULL, 0,
     "Relay port range lo-hi (coturn min-port/max-port)"},
    {"turn", "external_ip", PL_OPT_LIST, "", 0, PL_TURN_MAX_EXTERNAL, NULL, 0,
     "Advertised relay address behind 1:1 NAT: public or public/private (coturn external-ip)"},
    {"turn", "threads", PL_OPT_INT, "0", 0, 64, NULL, 0,
     "Relay threads; 0 = one per CPU core"},
    {"turn", "tls_cert", PL_OPT_STRING, "", 0, 4096, NULL, R,
     "PEM certificate chain for TURN over TLS; reloaded on SIGHUP (coturn cert)"},
    {"turn", "tls_key", PL_OPT_STRING, "", 0, 4096, NULL, R,
     "PEM private key for TURN over TLS; reloaded on SIGHUP (coturn pkey)"},
    {"turn", "max_allocations", PL_OPT_INT, "0", 0, 10000000, NULL, R,
     "Allocations on this node, all users; 0 = no limit besides relay ports (coturn total-quota; 508 beyond)"},
    {"turn", "user_quota", PL_OPT_INT, "0", 0, 1000000, NULL, R,
     "Allocations per user (REST: per user part); 0 = no limit (coturn user-quota; 486 beyond)"},
    {"turn", "max_bps", PL_OPT_INT, "0", 0, INT64_C(1) << 40, NULL, R,
     "Bytes per second per allocation and direction; 0 = no limit (coturn max-bps)"},
    {"turn", "default_lifetime", PL_OPT_DURATION, "600s", MS(10), MS(86400), NULL, R,
     "Allocation lifetime granted when the client asks for less (RFC 8656 §7.2)"},
    {"turn", "max_lifetime", PL_OPT_DURATION, "3600s", MS(10), MS(86400), NULL, R,
     "Longest allocation lifetime granted (coturn max-allocate-lifetime)"},
    {"turn", "permission_lifetime", PL_OPT_DURATION, "300s", MS(1), MS(3600), NULL, R,
     "Permission lifetime (RFC 8656 §9 fixes 300 s; shorter only for tests)"},
    {"turn", "channel_lifetime", PL_OPT_DURATION, "600s", MS(1), MS(3600), NULL, R,
     "Channel binding lifetime (RFC 8656 §12 fixes 600 s; shorter only for tests)"},
    {"turn", "nonce_lifetime", PL_OPT_DURATION, "600s", MS(1), MS(86400), NULL, R,
     "Nonce validity; older nonces get 438 Stale Nonce (coturn stale-nonce)"},
    {"turn", "alternate_servers", PL_OPT_LIST, "", 0, PL_TURN_MAX_ALT, NULL, R,
     "host:port list; when set, new allocations are redirected round-robin with 300 ALTERNATE-SERVER (coturn alternate-server)"},
    {"turn", "unauth_rate", PL_OPT_INT, "100", 0, 1000000, NULL, R,
     "Unauthenticated UDP requests per second answered per source IP (over all relay threads; TCP/TLS clients are not limited); 0 = no limit"},
    {"turn", "max_unallocated_per_ip", PL_OPT_INT, "64", 0, 1000000, NULL, R,
     "TCP/TLS client connections from one source IP that have no allocation (yet); more are closed at once (0 = no limit)"},
    {"turn", "software", PL_OPT_STRING, "parley", 0, 127, NULL, R,
     "SOFTWARE attribute text in responses; empty = none (coturn no-software-attribute)"},
};

const pl_opt_table_t pl_turn_options = {
    "STUN/TURN server (relay): listeners, credentials, peer policy, quotas", turn_defs,
    PL_ARRAY_LEN(turn_defs)};

static int check_readable(const pl_config_t *cfg, const char *key, pl_config_error_t *err)
{
    const char *path = pl_config_str(cfg, "turn", key);
    if (path[0] == '\0' || access(path, R_OK) == 0)
        return 0;
    snprintf(err->msg, sizeof err->msg, "[turn] %s: cannot read \"%s\": %s", key, path,
             strerror(errno));
    return PL_ECONFIG;
}

int pl_turn_validate(const pl_config_t *cfg, pl_config_error_t *err)
{
    bool has_cert = pl_config_str(cfg, "turn", "tls_cert")[0] != '\0';
    bool has_key = pl_config_str(cfg, "turn", "tls_key")[0] != '\0';
    if (has_cert != has_key) {
        snprintf(err->msg, sizeof err->msg, "[turn] %s: set both tls_cert and tls_key, or neither",
                 has_cert ? "tls_key" : "tls_cert");
        return PL_ECONFIG;
    }
    int rc;
    if ((rc = check_readable(cfg, "tls_cert", err)) != 0 ||
        (rc = check_readable(cfg, "tls_key", err)) != 0)
        return rc;
    /* Building the snapshot also loads the certificate and key (turn_tls.c). */
    pl_turn_settings_t *set = NULL;
    if ((rc = pl_turn_settings_build(cfg, &set, err)) != 0)
        return rc;
    pl_turn_settings_unref(set);
    return 0;
}

int pl_turn_mint_credentials(const pl_config_t *cfg, const char *user, uint64_t now_s,
                             char *username, size_t ucap, char *password, size_t pcap)
{
    const char *const *secrets = NULL;
    if (pl_config_list(cfg, "turn", "auth_secret", &secrets) == 0)
        return -ENOENT;
    uint64_t ttl_s = (uint64_t)pl_config_int(cfg, "turn", "rest_ttl") / 1000;
    pl_turn_rest_cred_t cred;
    int rc = pl_turn_rest_mint(secrets[0], user, now_s, ttl_s, &cred);
    if (rc != 0)
        return rc;
    size_t ulen = strlen(cred.username), plen = strlen(cred.password);
    if (ulen >= ucap || plen >= pcap)
        return PL_ELIMIT;
    memcpy(username, cred.username, ulen + 1);
    memcpy(password, cred.password, plen + 1);
    return 0;
}
