/* turn_settings.c: builds the immutable pl_turn_settings_t snapshot from the [turn]
 * config section: parses addresses, CIDR lists, users (with their long-term keys and
 * USERHASH precomputed), the port range and the external address map, and resolves
 * defaults (relay_ip from listen, threads from the core count).
 *
 * What it does not: no sockets, no logging. Errors are one line in err
 * ("[turn] key: reason").
 *
 * Threading: building runs on the main thread; a built snapshot is read by every relay
 * thread and freed by whichever thread drops the last reference (atomic refcount). */
#include "relay/turn/turn_int.h"
#include "relay/turn/turn_stream_int.h"

#include <errno.h>
#include <ifaddrs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(pl_config_error_t *err, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(pl_config_error_t *err, const char *key, const char *fmt, ...)
{
    int n = snprintf(err->msg, sizeof err->msg, "[turn] %s: ", key);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof err->msg)
        vsnprintf(err->msg + n, sizeof err->msg - (size_t)n, fmt, ap);
    va_end(ap);
    return PL_ECONFIG;
}

static bool is_wildcard(const pl_sockaddr_t *a)
{
    static const uint8_t zero[16];
    if (a->sa.sa_family == AF_INET)
        return a->in4.sin_addr.s_addr == 0;
    return memcmp(&a->in6.sin6_addr, zero, 16) == 0;
}

static void add_self(pl_turn_settings_t *s, const pl_sockaddr_t *a)
{
    s->self = pl_xrealloc(s->self, (s->n_self + 1) * sizeof *s->self);
    s->self[s->n_self] = *a;
    pl_sockaddr_set_port(&s->self[s->n_self], 0);
    s->n_self++;
}

static int parse_addrs(const pl_config_t *cfg, const char *key, int def_port,
                       pl_sockaddr_t *out, size_t *n, pl_config_error_t *err)
{
    const char *const *items;
    size_t k = pl_config_list(cfg, "turn", key, &items);
    for (size_t i = 0; i < k && i < PL_TURN_MAX_LISTEN; i++) {
        if (pl_sockaddr_parse(items[i], def_port, &out[i]) != 0)
            return fail(err, key, "\"%s\" is not an address (ip[:port])", items[i]);
        /* Port 0 (any free port, for tests) only where we bind. */
        if (pl_sockaddr_port(&out[i]) == 0 && strcmp(key, "alternate_servers") == 0)
            return fail(err, key, "\"%s\": port 0 is not allowed", items[i]);
    }
    *n = PL_MIN(k, (size_t)PL_TURN_MAX_LISTEN);
    return 0;
}

static int parse_cidrs(const pl_config_t *cfg, const char *key, pl_cidr_t **out, size_t *n,
                       pl_config_error_t *err)
{
    const char *const *items;
    size_t k = pl_config_list(cfg, "turn", key, &items);
    *out = k ? pl_xcalloc(k, sizeof **out) : NULL;
    *n = k;
    for (size_t i = 0; i < k; i++)
        if (pl_cidr_parse(items[i], &(*out)[i]) != 0)
            return fail(err, key, "\"%s\" is not a CIDR range (ip/prefix or ip)", items[i]);
    return 0;
}

static int user_cmp(const void *a, const void *b)
{
    const pl_turn_user_t *x = a, *y = b;
    size_t n = PL_MIN(x->name_len, y->name_len);
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static int make_user(pl_turn_user_t *u, const char *item, const char *realm)
{
    const char *colon = strchr(item, ':');
    if (!colon || colon == item || colon[1] == '\0' || colon - item > PL_TURN_REST_USER_MAX)
        return PL_EPARSE;
    u->name = pl_xstrndup(item, (size_t)(colon - item));
    u->name_len = (size_t)(colon - item);
    pl_stun_cred_t c = {u->name, u->name_len, realm, strlen(realm), colon + 1, strlen(colon + 1)};
    if (pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &u->key_md5) != 0 ||
        pl_stun_key_longterm(&c, PL_STUN_PWALG_SHA256, &u->key_sha256) != 0 ||
        pl_stun_userhash(&c, u->userhash) != 0)
        return PL_ECRYPTO;
    return 0;
}

static int parse_users(const pl_config_t *cfg, pl_turn_settings_t *s, pl_config_error_t *err)
{
    const char *const *items;
    size_t k = pl_config_list(cfg, "turn", "users", &items);
    s->users = k ? pl_xcalloc(k, sizeof *s->users) : NULL;
    for (size_t i = 0; i < k; i++) {
        int rc = make_user(&s->users[i], items[i], s->realm);
        s->n_users = i + (s->users[i].name != NULL);
        /* The item holds a password: name only its position, never its text. */
        if (rc == PL_EPARSE)
            return fail(err, "users", "entry %zu is not user:password (user 1-255 bytes)", i + 1);
        if (rc != 0)
            return fail(err, "users", "deriving keys failed (OpenSSL)");
    }
    if (s->n_users > 1)   /* qsort(NULL, 0, ...) is undefined behaviour (UBSan) */
        qsort(s->users, s->n_users, sizeof *s->users, user_cmp);
    for (size_t i = 1; i < s->n_users; i++)
        if (user_cmp(&s->users[i - 1], &s->users[i]) == 0)
            return fail(err, "users", "user \"%s\" is listed twice", s->users[i].name);
    return 0;
}

static int parse_secrets(const pl_config_t *cfg, pl_turn_settings_t *s, pl_config_error_t *err)
{
    const char *const *items;
    size_t k = pl_config_list(cfg, "turn", "auth_secret", &items);
    s->secrets = k ? pl_xcalloc(k, sizeof *s->secrets) : NULL;
    for (size_t i = 0; i < k; i++)
        s->secrets[s->n_secrets++] = pl_xstrdup(items[i]);
    s->rest_ttl_s = (uint64_t)pl_config_int(cfg, "turn", "rest_ttl") / 1000;
    (void)err;
    return 0;
}

static int parse_ports(const pl_config_t *cfg, pl_turn_settings_t *s, pl_config_error_t *err)
{
    const char *v = pl_config_str(cfg, "turn", "relay_ports");
    unsigned lo, hi;
    int used = 0;
    if (sscanf(v, "%5u-%5u%n", &lo, &hi, &used) != 2 || v[used] != '\0')
        return fail(err, "relay_ports", "\"%s\" is not a range lo-hi", v);
    if (lo < 1024 || hi > 65535 || lo > hi)
        return fail(err, "relay_ports", "\"%s\": need 1024 <= lo <= hi <= 65535", v);
    s->port_lo = (uint16_t)lo;
    s->port_hi = (uint16_t)hi;
    return 0;
}

static int parse_relay(const pl_config_t *cfg, pl_turn_settings_t *s, pl_config_error_t *err)
{
    const char *const *items;
    size_t k = pl_config_list(cfg, "turn", "relay_ip", &items);
    for (size_t i = 0; i < k; i++) {
        pl_sockaddr_t a;
        if (pl_ipaddr_parse(items[i], &a) != 0)
            return fail(err, "relay_ip", "\"%s\" is not an IP address", items[i]);
        int f = pl_turn_fam_idx(&a);
        if (s->has_relay[f])
            return fail(err, "relay_ip", "two %s addresses; give at most one per family",
                        f ? "IPv6" : "IPv4");
        s->relay[f] = a;
        s->has_relay[f] = true;
    }
    for (size_t i = 0; i < s->n_listen; i++) {
        int f = pl_turn_fam_idx(&s->listen[i]);
        if (!s->has_relay[f]) {
            s->relay[f] = s->listen[i];
            pl_sockaddr_set_port(&s->relay[f], 0);
            s->has_relay[f] = true;
        }
    }
    return 0;
}

static int parse_external(const pl_config_t *cfg, pl_turn_settings_t *s, pl_config_error_t *err)
{
    const char *const *items;
    size_t k = pl_config_list(cfg, "turn", "external_ip", &items);
    for (size_t i = 0; i < k && i < PL_TURN_MAX_EXTERNAL; i++) {
        pl_turn_external_t *e = &s->external[s->n_external++];
        char buf[128];
        snprintf(buf, sizeof buf, "%s", items[i]);
        char *slash = strchr(buf, '/');
        if (slash)
            *slash++ = '\0';
        if (pl_ipaddr_parse(buf, &e->pub) != 0 ||
            (slash && pl_ipaddr_parse(slash, &e->priv) != 0))
            return fail(err, "external_ip", "\"%s\" is not public-ip or public-ip/private-ip",
                        items[i]);
        e->has_priv = slash != NULL;
        if (e->has_priv && e->pub.sa.sa_family != e->priv.sa.sa_family)
            return fail(err, "external_ip", "\"%s\": both addresses must be one family", items[i]);
    }
    /* XOR-RELAYED-ADDRESS must be an address a peer can send to (RFC 8656 §7.2). */
    for (int f = 0; f < 2; f++) {
        if (!s->has_relay[f] || !is_wildcard(&s->relay[f]))
            continue;
        pl_sockaddr_t adv;
        pl_turn_settings_advertised(s, &s->relay[f], &adv);
        if (is_wildcard(&adv))
            return fail(err, "relay_ip", "the %s relay address is a wildcard; set relay_ip or "
                        "external_ip to an address peers can reach", f ? "IPv6" : "IPv4");
    }
    return 0;
}

static int parse_limits(const pl_config_t *cfg, pl_turn_settings_t *s, pl_config_error_t *err)
{
    s->max_allocations = (uint32_t)pl_config_int(cfg, "turn", "max_allocations");
    s->user_quota = (uint32_t)pl_config_int(cfg, "turn", "user_quota");
    s->max_bps = (uint64_t)pl_config_int(cfg, "turn", "max_bps");
    s->default_lifetime_s = (uint32_t)(pl_config_int(cfg, "turn", "default_lifetime") / 1000);
    s->max_lifetime_s = (uint32_t)(pl_config_int(cfg, "turn", "max_lifetime") / 1000);
    s->permission_lifetime_s = (uint32_t)(pl_config_int(cfg, "turn", "permission_lifetime") / 1000);
    s->channel_lifetime_s = (uint32_t)(pl_config_int(cfg, "turn", "channel_lifetime") / 1000);
    s->nonce_lifetime_s = (uint32_t)(pl_config_int(cfg, "turn", "nonce_lifetime") / 1000);
    s->unauth_rate = (uint32_t)pl_config_int(cfg, "turn", "unauth_rate");
    s->max_unalloc_per_ip = (uint32_t)pl_config_int(cfg, "turn", "max_unallocated_per_ip");
    if (s->max_lifetime_s < s->default_lifetime_s)
        return fail(err, "max_lifetime", "%us is shorter than default_lifetime (%us)",
                    s->max_lifetime_s, s->default_lifetime_s);
    if (s->permission_lifetime_s == 0 || s->channel_lifetime_s == 0 || s->nonce_lifetime_s == 0)
        return fail(err, "permission_lifetime", "lifetimes must be at least 1s");
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t t = pl_config_int(cfg, "turn", "threads");
    s->threads = (unsigned)(t > 0 ? t : (n > 0 ? n : 1));
    return 0;
}

static void collect_self(pl_turn_settings_t *s)
{
    bool wildcard = false;
    for (size_t i = 0; i < s->n_listen; i++) {
        add_self(s, &s->listen[i]);
        wildcard |= is_wildcard(&s->listen[i]);
    }
    for (size_t i = 0; i < s->n_tls_listen; i++) {
        add_self(s, &s->tls_listen[i]);
        wildcard |= is_wildcard(&s->tls_listen[i]);
    }
    for (int f = 0; f < 2; f++)
        if (s->has_relay[f]) {
            add_self(s, &s->relay[f]);
            wildcard |= is_wildcard(&s->relay[f]);
        }
    for (size_t i = 0; i < s->n_external; i++)
        add_self(s, &s->external[i].pub);
    struct ifaddrs *ifa = NULL;
    /* Bound to a wildcard, every interface address is ours (a peer there would reach
     * this server's own services through the relay). */
    if (!wildcard || getifaddrs(&ifa) != 0)
        return;
    for (struct ifaddrs *p = ifa; p; p = p->ifa_next) {
        if (!p->ifa_addr || (p->ifa_addr->sa_family != AF_INET && p->ifa_addr->sa_family != AF_INET6))
            continue;
        pl_sockaddr_t a;
        memset(&a, 0, sizeof a);
        memcpy(&a, p->ifa_addr, p->ifa_addr->sa_family == AF_INET ? sizeof a.in4 : sizeof a.in6);
        add_self(s, &a);
    }
    freeifaddrs(ifa);
}

static int build_all(const pl_config_t *cfg, pl_turn_settings_t *s, pl_config_error_t *err)
{
    int rc;
    s->realm = pl_xstrdup(pl_config_str(cfg, "turn", "realm"));
    const char *sw = pl_config_str(cfg, "turn", "software");
    s->software = sw[0] ? pl_xstrdup(sw) : NULL;
    const char *cert = pl_config_str(cfg, "turn", "tls_cert");
    const char *key = pl_config_str(cfg, "turn", "tls_key");
    s->tls_cert = cert[0] ? pl_xstrdup(cert) : NULL;
    s->tls_key = key[0] ? pl_xstrdup(key) : NULL;
    if ((rc = parse_addrs(cfg, "listen", 3478, s->listen, &s->n_listen, err)) != 0 ||
        (rc = parse_addrs(cfg, "tls_listen", 5349, s->tls_listen, &s->n_tls_listen, err)) != 0 ||
        (rc = parse_addrs(cfg, "alternate_servers", 3478, s->alt, &s->n_alt, err)) != 0)
        return rc;
    if (s->n_listen == 0)
        return fail(err, "listen", "give at least one address");
    if ((rc = parse_users(cfg, s, err)) != 0 || (rc = parse_secrets(cfg, s, err)) != 0 ||
        (rc = parse_cidrs(cfg, "allowed_peers", &s->allowed, &s->n_allowed, err)) != 0 ||
        (rc = parse_cidrs(cfg, "denied_peers", &s->denied, &s->n_denied, err)) != 0 ||
        (rc = parse_ports(cfg, s, err)) != 0 || (rc = parse_relay(cfg, s, err)) != 0 ||
        (rc = parse_external(cfg, s, err)) != 0 || (rc = parse_limits(cfg, s, err)) != 0)
        return rc;
    collect_self(s);
    /* Loading the certificate here makes --check-config and SIGHUP refuse one that
     * does not load, and hands each snapshot its own context (turn_tls.c). */
    if (s->tls_cert && s->tls_key) {
        char why[sizeof err->msg - 32];
        if (pl_turn_tls_ctx_build(s->tls_cert, s->tls_key, &s->tls_ctx, why, sizeof why) != 0)
            return fail(err, "tls_cert", "%s", why);
    }
    return 0;
}

int pl_turn_settings_build(const pl_config_t *cfg, pl_turn_settings_t **out,
                           pl_config_error_t *err)
{
    pl_turn_settings_t *s = pl_xcalloc(1, sizeof *s);
    atomic_init(&s->refs, 1);
    int rc = build_all(cfg, s, err);
    if (rc != 0) {
        pl_turn_settings_unref(s);
        *out = NULL;
        return rc;
    }
    *out = s;
    return 0;
}

pl_turn_settings_t *pl_turn_settings_ref(pl_turn_settings_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void pl_turn_settings_unref(pl_turn_settings_t *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->n_users; i++)
        free(s->users[i].name);
    for (size_t i = 0; i < s->n_secrets; i++)
        free(s->secrets[i]);
    free(s->users);
    free(s->secrets);
    free(s->allowed);
    free(s->denied);
    free(s->self);
    free(s->realm);
    free(s->software);
    free(s->tls_cert);
    free(s->tls_key);
    pl_turn_tls_ctx_free(s->tls_ctx);
    free(s);
}

const pl_turn_user_t *pl_turn_settings_user(const pl_turn_settings_t *s, const void *name,
                                            size_t len)
{
    pl_turn_user_t key = {.name = (char *)(uintptr_t)name, .name_len = len};
    if (s->n_users == 0)
        return NULL;
    return bsearch(&key, s->users, s->n_users, sizeof *s->users, user_cmp);
}

const pl_turn_user_t *pl_turn_settings_userhash(const pl_turn_settings_t *s,
                                                const uint8_t hash[32])
{
    for (size_t i = 0; i < s->n_users; i++)
        if (memcmp(s->users[i].userhash, hash, 32) == 0)
            return &s->users[i];
    return NULL;
}

void pl_turn_settings_advertised(const pl_turn_settings_t *s, const pl_sockaddr_t *local,
                                 pl_sockaddr_t *out)
{
    const pl_turn_external_t *any = NULL;
    *out = *local;
    for (size_t i = 0; i < s->n_external; i++) {
        const pl_turn_external_t *e = &s->external[i];
        if (e->pub.sa.sa_family != local->sa.sa_family)
            continue;
        if (e->has_priv && pl_ipaddr_equal(&e->priv, local)) {
            any = e;
            break;
        }
        if (!e->has_priv && !any)
            any = e;
    }
    if (!any)
        return;
    uint16_t port = pl_sockaddr_port(local);
    *out = any->pub;
    pl_sockaddr_set_port(out, port);
}
