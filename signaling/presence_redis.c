/* presence_redis.c: the Redis presence backend. Two connections owned by the presence
 * thread: one for commands, one subscribed to this node's channel. Keys (prefix P):
 *   P dev:<device>   "<device> <account> <conn> <node>", PX ttl  (the registry entry)
 *   P acct:<account> set of device ids, PEXPIRE ttl          (a user's devices)
 *   P node:<node>    set of device ids, PEXPIRE ttl          (a node's devices)
 *   P alive:<node>   instance token, PX ttl                  (the node's heartbeat)
 *   P busy:<account> call id, PX ttl                         (in a call)
 *   channel P ch:<node>                                      (envelopes for that node)
 * Every node's heartbeat refreshes the TTL of its own entries, so when a node dies its
 * entries expire; stale members of the sets are dropped when read. Multi-key updates
 * run as Lua scripts so each is atomic.
 *
 * The link: connect both, AUTH/SELECT, SUBSCRIBE, then sync (re-register every live
 * device and busy claim of this node, in chunks), then up. Any failure, a command
 * unanswered for command_timeout, or a connect+subscribe slower than connect_timeout
 * tears both connections down and retries after an exponential back-off (100 ms
 * doubling to reconnect_max, with jitter). Meanwhile the router serves local users
 * only and /readyz says not ready.
 *
 * What it does not do: decide routing (router.c); Redis Cluster (the scripts touch
 * keys of several slots) or Sentinel.
 *
 * Threading: create/destroy on the main thread; everything else on the presence
 * thread, which owns both connections. */
#include "signaling/presence_int.h"
#include "signaling/redis_int.h"
#include "core/pl_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define TICK_MS 250
#define BACKOFF_MIN_MS 100
#define CHUNK 256                   /* devices per refresh script call */

typedef struct kbuf { char s[160]; } kbuf_t;

typedef enum { RD_IDLE, RD_CONNECTING, RD_SYNCING, RD_UP, RD_BACKOFF, RD_STOPPED } rd_state_t;

struct pl_pres_redis {
    pl_router_t *r;
    char host[256], user[128], password[256], prefix[80];
    int port, db;
    uint64_t ttl_ms, hb_ms, connect_timeout_ms, command_timeout_ms, backoff_max_ms;
    char instance[33];              /* random per process: spots a duplicate node_id */

    pl_redis_conn_t *cmd, *sub;
    rd_state_t state;
    bool cmd_connected, subscribed;
    uint64_t deadline_ms;           /* CONNECTING: give up then; BACKOFF: retry then */
    uint64_t backoff_ms;
    uint64_t next_hb_ms;
    uint64_t last_progress_ms;      /* last reply, or first command after an idle spell */
    uint64_t down_since_ms;
    uint64_t epoch;                 /* bumps per link: stale sync replies are ignored */
    size_t sync_pending;
    bool sync_failed;
    uint64_t rng;                   /* xorshift64 state for back-off jitter */
    bool outage;                    /* between presence.redis.down and .up */
    pl_timer_t tick;
    struct scratch {                /* refresh_all's argument buffers */
        kbuf_t keys[2 * CHUNK + 1];
        char vals[CHUNK][160];
        char ids[CHUNK][24];
        const char *argv[3 + 4 * CHUNK];
        size_t lens[3 + 4 * CHUNK];
    } *scratch;
};

static const char REG_LUA[] =
    "local old = redis.call('GET', KEYS[1]) "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "redis.call('SADD', KEYS[2], ARGV[3]) redis.call('PEXPIRE', KEYS[2], ARGV[2]) "
    "redis.call('SADD', KEYS[3], ARGV[3]) redis.call('PEXPIRE', KEYS[3], ARGV[2]) "
    "return old";

static const char UNREG_LUA[] =
    "redis.call('SREM', KEYS[3], ARGV[2]) "
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "  redis.call('DEL', KEYS[1]) redis.call('SREM', KEYS[2], ARGV[2]) return 1 end "
    "return 0";

/* KEYS: node set, then (dev key, acct key) pairs; ARGV: ttl, then (value, id) pairs.
 * An entry that another node took over is left alone; a missing one is recreated
 * (Redis restarted empty). */
static const char REFRESH_LUA[] =
    "local ttl = ARGV[1] "
    "for i = 2, #KEYS, 2 do "
    "  local v = ARGV[i] local id = ARGV[i + 1] "
    "  local cur = redis.call('GET', KEYS[i]) "
    "  if cur == v then redis.call('PEXPIRE', KEYS[i], ttl) "
    "  elseif not cur then redis.call('SET', KEYS[i], v, 'PX', ttl) end "
    "  if (not cur) or cur == v then "
    "    redis.call('SADD', KEYS[i + 1], id) redis.call('PEXPIRE', KEYS[i + 1], ttl) "
    "    redis.call('SADD', KEYS[1], id) end "
    "end "
    "redis.call('PEXPIRE', KEYS[1], ttl) return 0";

static const char RESOLVE_LUA[] =
    "local out = {} "
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do "
    "  local v = redis.call('GET', ARGV[1] .. id) "
    "  if v then out[#out + 1] = v else redis.call('SREM', KEYS[1], id) end "
    "end return out";

static const char CLAIM_LUA[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end "
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) return 0";

static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end "
    "return 0";

static void link_fail(pl_pres_redis_t *rd, const char *why);
static void link_start(pl_pres_redis_t *rd);

static uint64_t now_ms(const pl_pres_redis_t *rd)
{
    return pl_loop_now_ms(rd->r->loop);
}

/* ---- URL ----------------------------------------------------------------------------- */

static int parse_port_db(char *rest, pl_pres_redis_opts_t *o)
{
    char *slash = strchr(rest, '/');
    if (slash) {
        *slash = '\0';
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (slash[1] && (*end || db < 0 || db > 1000000))
            return PL_EPARSE;
        o->db = slash[1] ? (int)db : 0;
    }
    char *colon = rest[0] == '[' ? strstr(rest, "]:") : strrchr(rest, ':');
    if (colon && rest[0] == '[')
        colon++;
    if (colon) {
        *colon = '\0';
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535)
            return PL_EPARSE;
        o->port = (int)port;
    }
    size_t n = strlen(rest);
    if (n >= 2 && rest[0] == '[' && rest[n - 1] == ']') {
        rest[n - 1] = '\0';
        rest++;
    }
    if (!rest[0] || strpbrk(rest, "[]@/ "))
        return PL_EPARSE;
    o->host = rest;
    return 0;
}

int pl_pres_redis_parse_url(const char *url, char *buf, size_t cap, pl_pres_redis_opts_t *o)
{
    static const char scheme[] = "redis://";
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return PL_EPARSE;
    int n = snprintf(buf, cap, "%s", url + sizeof(scheme) - 1);
    if (n < 0 || (size_t)n >= cap)
        return PL_EPARSE;
    o->port = 6379;
    o->db = 0;
    o->user = "";
    o->password = "";
    char *rest = buf, *at = strrchr(buf, '@');
    if (at) {
        *at = '\0';
        rest = at + 1;
        char *colon = strchr(buf, ':');
        if (colon) {
            *colon = '\0';
            o->user = buf;
            o->password = colon + 1;
        } else {
            o->password = buf;
        }
    }
    return parse_port_db(rest, o);
}

/* ---- commands ------------------------------------------------------------------------ */

typedef void (*rd_done_fn)(pl_pres_redis_t *rd, redisReply *reply, void *arg);

typedef struct rcmd {
    pl_pres_redis_t *rd;
    uint64_t t0_us;
    rd_done_fn done;
    void *arg;
} rcmd_t;

static void on_cmd_reply(pl_redis_conn_t *c, redisReply *reply, void *priv)
{
    PL_UNUSED(c);
    rcmd_t *w = priv;
    pl_pres_redis_t *rd = w->rd;
    pl_router_t *r = rd->r;
    if (reply) {
        rd->last_progress_ms = now_ms(rd);
        pl_metric_observe(r->shard, r->m.redis_latency,
                          (double)(pl_now_mono_us() - w->t0_us) / 1e6);
        if (reply->type == REDIS_REPLY_ERROR) {
            pl_metric_inc(r->shard, r->m.redis_errors);
            pl_log_warn("presence.redis.error", "reply=%s", PL_LOG_QUOTED(reply->str));
        }
    }
    if (w->done)
        w->done(rd, reply, w->arg);
    free(w);
}

/* Returns 0, or -1 when the command connection is not usable (done not called). */
static int rd_cmd(pl_pres_redis_t *rd, rd_done_fn done, void *arg, int argc, const char **argv,
                  const size_t *lens)
{
    if (!rd->cmd || !rd->cmd_connected)
        return -1;
    rcmd_t *w = pl_xmalloc(sizeof(*w));
    *w = (rcmd_t){ rd, pl_now_mono_us(), done, arg };
    if (pl_redis_conn_pending(rd->cmd) == 0)
        rd->last_progress_ms = now_ms(rd);
    if (pl_redis_conn_cmd(rd->cmd, on_cmd_reply, w, argc, argv, lens) < 0) {
        free(w);
        return -1;
    }
    return 0;
}

static bool reply_ok(const redisReply *reply)
{
    return reply && reply->type != REDIS_REPLY_ERROR;
}

/* ---- keys and values ----------------------------------------------------------------- */

/* Keys fit: prefix <= 64, kind <= 5, a node name <= 64 or a 20-digit id. */
static const char *key_u64(pl_pres_redis_t *rd, kbuf_t *k, const char *kind, uint64_t id)
{
    int n = snprintf(k->s, sizeof(k->s), "%s%s:%" PRIu64, rd->prefix, kind, id);
    PL_ASSERT(n > 0 && (size_t)n < sizeof(k->s));
    return k->s;
}

static const char *key_str(pl_pres_redis_t *rd, kbuf_t *k, const char *kind, const char *s)
{
    int n = snprintf(k->s, sizeof(k->s), "%s%s:%s", rd->prefix, kind, s);
    PL_ASSERT(n > 0 && (size_t)n < sizeof(k->s));
    return k->s;
}

static void entry_value(const pl_router_t *r, const pl_pres_entry_t *e, char *out, size_t cap)
{
    snprintf(out, cap, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %s", e->device_id, e->account_id,
             e->conn_id, r->node);
}

static bool parse_value(const char *s, size_t len, pl_pres_loc_t *loc)
{
    char buf[160], node[PL_NODE_MAX + 2];
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    unsigned long long d, a, c;
    int end = 0;
    if (sscanf(buf, "%llu %llu %llu %65s%n", &d, &a, &c, node, &end) != 4 ||
        (size_t)end != len || !pl_node_name_ok(node) || !d)
        return false;
    *loc = (pl_pres_loc_t){ .device_id = d, .account_id = a, .conn_id = c };
    memcpy(loc->node, node, strlen(node) + 1);     /* pl_node_name_ok: <= PL_NODE_MAX */
    return true;
}

/* ---- the link: connect, subscribe, sync ----------------------------------------------- */

static void set_up(pl_pres_redis_t *rd, bool up)
{
    pl_metric_gauge_set(rd->r->shard, rd->r->m.redis_up, up);
    pl_rtr_set_up(rd->r, up);
}

static void sync_done(pl_pres_redis_t *rd, redisReply *reply, void *arg)
{
    if ((uint64_t)(uintptr_t)arg != rd->epoch || rd->state != RD_SYNCING)
        return;                     /* a reply of a link that is gone */
    if (!reply_ok(reply))
        rd->sync_failed = true;
    if (--rd->sync_pending > 0)
        return;
    if (rd->sync_failed) {
        link_fail(rd, "re-registration failed");
        return;
    }
    uint64_t now = now_ms(rd);
    rd->state = RD_UP;
    rd->backoff_ms = 0;
    rd->next_hb_ms = now + rd->hb_ms;
    pl_log_info("presence.redis.up", "node=%s redis=%s:%d devices=%zu down_ms=%llu",
                rd->r->node, rd->host, rd->port, rd->r->map.count,
                (unsigned long long)(rd->outage ? now - rd->down_since_ms : 0));
    rd->outage = false;
    set_up(rd, true);
}

static void alive_done(pl_pres_redis_t *rd, redisReply *reply, void *arg)
{
    if (reply && reply->type == REDIS_REPLY_STRING && strcmp(reply->str, rd->instance) != 0)
        pl_log_error("presence.redis.duplicate_node",
                     "node=%s msg=\"another live parleyd uses this node_id\"", rd->r->node);
    sync_done(rd, reply, arg);
}

/* Refreshes (or recreates) the entries of every device here, the node set and the
 * alive key: the heartbeat, and the re-registration after a (re)connect. done is
 * called once per command issued; returns how many were issued. */
static size_t refresh_all(pl_pres_redis_t *rd, rd_done_fn done, void *arg)
{
    pl_router_t *r = rd->r;
    struct scratch *sc = rd->scratch;
    kbuf_t *keys = sc->keys;
    const char **argv = sc->argv;
    size_t issued = 0, n = 0;
    char ttl[24], nkeys[16];
    snprintf(ttl, sizeof(ttl), "%" PRIu64, rd->ttl_ms);
    uint32_t cursor = 0;
    const pl_pres_entry_t *e;
    do {
        e = pl_pres_map_next(&r->map, &cursor);
        if (e) {
            key_u64(rd, &keys[1 + 2 * n], "dev", e->device_id);
            key_u64(rd, &keys[2 + 2 * n], "acct", e->account_id);
            entry_value(r, e, sc->vals[n], sizeof(sc->vals[n]));
            snprintf(sc->ids[n], sizeof(sc->ids[n]), "%" PRIu64, e->device_id);
            n++;
        }
        if (n == CHUNK || (!e && (n || !issued))) {
            int k = 0;
            argv[k++] = "EVAL";
            argv[k++] = REFRESH_LUA;
            snprintf(nkeys, sizeof(nkeys), "%zu", 1 + 2 * n);
            argv[k++] = nkeys;
            argv[k++] = key_str(rd, &keys[0], "node", r->node);
            for (size_t i = 0; i < n; i++) {
                argv[k++] = keys[1 + 2 * i].s;
                argv[k++] = keys[2 + 2 * i].s;
            }
            argv[k++] = ttl;
            for (size_t i = 0; i < n; i++) {
                argv[k++] = sc->vals[i];
                argv[k++] = sc->ids[i];
            }
            for (int i = 0; i < k; i++)
                sc->lens[i] = strlen(argv[i]);
            if (rd_cmd(rd, done, arg, k, argv, sc->lens) == 0)
                issued++;
            n = 0;
        }
    } while (e);
    return issued;
}

/* Busy claims held here, refreshed (and recreated after a restart) with the heartbeat. */
static size_t refresh_busy(pl_pres_redis_t *rd, rd_done_fn done, void *arg)
{
    pl_router_t *r = rd->r;
    size_t issued = 0;
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRIu64, rd->ttl_ms);
    for (size_t i = 0; i < r->busy.cap; i++) {
        if (!r->busy.keys[i])
            continue;
        const char *call_id = ((const pl_rtr_busy_t *)(uintptr_t)r->busy.vals[i])->call_id;
        kbuf_t k;
        const char *argv[] = { "SET", key_u64(rd, &k, "busy", r->busy.keys[i]), call_id,
                               "PX", ttl };
        if (rd_cmd(rd, done, arg, 5, argv, NULL) == 0)
            issued++;
    }
    return issued;
}

static size_t set_alive(pl_pres_redis_t *rd, rd_done_fn done, void *arg, bool get)
{
    kbuf_t k;
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRIu64, rd->ttl_ms);
    const char *argv[] = { "SET", key_str(rd, &k, "alive", rd->r->node), rd->instance, "PX",
                           ttl, "GET" };
    return rd_cmd(rd, done, arg, get ? 6 : 5, argv, NULL) == 0;
}

static void sync_start(pl_pres_redis_t *rd)
{
    rd->state = RD_SYNCING;
    rd->sync_failed = false;
    void *arg = (void *)(uintptr_t)rd->epoch;
    rd->sync_pending = 1;           /* held until every command is issued */
    rd->sync_pending += set_alive(rd, alive_done, arg, true);
    rd->sync_pending += refresh_all(rd, sync_done, arg);
    rd->sync_pending += refresh_busy(rd, sync_done, arg);
    rd->sync_pending--;
    if (rd->sync_pending == 0)
        link_fail(rd, "cannot send");
}

static void maybe_ready(pl_pres_redis_t *rd)
{
    if (rd->state == RD_CONNECTING && rd->cmd_connected && rd->subscribed)
        sync_start(rd);
}

static void on_auth_reply(pl_redis_conn_t *c, redisReply *reply, void *arg)
{
    pl_pres_redis_t *rd = arg;
    if (reply && reply->type == REDIS_REPLY_ERROR && (c == rd->cmd || c == rd->sub))
        link_fail(rd, reply->str);
}

static void on_cmd_state(pl_redis_conn_t *c, int status, const char *err, void *arg)
{
    pl_pres_redis_t *rd = arg;
    if (c != rd->cmd)
        return;
    if (status < 0) {
        link_fail(rd, err);
        return;
    }
    rd->cmd_connected = true;
    maybe_ready(rd);
}

static void on_message(pl_redis_conn_t *c, redisReply *reply, void *arg)
{
    pl_pres_redis_t *rd = arg;
    if (!reply || c != rd->sub)
        return;                     /* teardown: the state callback reports the loss */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        rd->subscribed = true;
        maybe_ready(rd);
    } else if (strcmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        pl_rtr_on_envelope(rd->r, reply->element[2]->str, reply->element[2]->len);
    }
}

static void on_sub_state(pl_redis_conn_t *c, int status, const char *err, void *arg)
{
    pl_pres_redis_t *rd = arg;
    if (c == rd->sub && status < 0)
        link_fail(rd, err);
}

/* AUTH (and SELECT on the command connection) go first; hiredis buffers them until the
 * connect completes. */
static int send_auth(pl_pres_redis_t *rd, pl_redis_conn_t *c, bool select)
{
    const char *argv[3] = { "AUTH" };
    int argc = 1;
    if (rd->user[0])
        argv[argc++] = rd->user;
    argv[argc++] = rd->password;
    if (rd->password[0] && pl_redis_conn_cmd(c, on_auth_reply, rd, argc, argv, NULL) < 0)
        return -1;
    if (select && rd->db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", rd->db);
        const char *sel[2] = { "SELECT", db };
        if (pl_redis_conn_cmd(c, on_auth_reply, rd, 2, sel, NULL) < 0)
            return -1;
    }
    return 0;
}

static void link_start(pl_pres_redis_t *rd)
{
    char err[128];
    kbuf_t ch;
    rd->epoch++;
    rd->state = RD_CONNECTING;
    rd->cmd_connected = rd->subscribed = false;
    rd->deadline_ms = now_ms(rd) + rd->connect_timeout_ms;
    rd->cmd = pl_redis_conn_open(rd->r->loop, rd->host, rd->port, on_cmd_state, rd, err,
                                 sizeof(err));
    if (!rd->cmd) {
        link_fail(rd, err);
        return;
    }
    rd->sub = pl_redis_conn_open(rd->r->loop, rd->host, rd->port, on_sub_state, rd, err,
                                 sizeof(err));
    if (!rd->sub) {
        link_fail(rd, err);
        return;
    }
    if (send_auth(rd, rd->cmd, true) < 0 || send_auth(rd, rd->sub, false) < 0 ||
        pl_redis_conn_subscribe(rd->sub, key_str(rd, &ch, "ch", rd->r->node), on_message,
                                rd) < 0)
        link_fail(rd, "cannot send");
}

static void link_fail(pl_pres_redis_t *rd, const char *why)
{
    if (rd->state == RD_STOPPED || rd->state == RD_BACKOFF || rd->state == RD_IDLE)
        return;
    pl_redis_conn_t *cmd = rd->cmd, *sub = rd->sub;
    rd->cmd = rd->sub = NULL;       /* first: closing runs callbacks that may call in */
    rd->cmd_connected = rd->subscribed = false;
    rd->state = RD_BACKOFF;
    rd->epoch++;
    uint64_t now = now_ms(rd);
    if (!rd->outage) {
        rd->outage = true;
        rd->down_since_ms = now;
        pl_log_error("presence.redis.down", "node=%s redis=%s:%d reason=%s", rd->r->node,
                     rd->host, rd->port, PL_LOG_QUOTED(why ? why : "unknown"));
    } else {
        pl_log_debug("presence.redis.retry_failed", "reason=%s",
                     PL_LOG_QUOTED(why ? why : "unknown"));
    }
    set_up(rd, false);
    rd->backoff_ms = rd->backoff_ms ? PL_MIN(rd->backoff_ms * 2, rd->backoff_max_ms)
                                    : BACKOFF_MIN_MS;
    /* Jitter (50-100%) so nodes that lost Redis together do not reconnect in step. */
    rd->rng ^= rd->rng << 13;
    rd->rng ^= rd->rng >> 7;
    rd->rng ^= rd->rng << 17;
    uint64_t wait = rd->backoff_ms / 2 + rd->rng % (rd->backoff_ms / 2 + 1);
    rd->deadline_ms = now + wait;
    pl_redis_conn_close(cmd);
    pl_redis_conn_close(sub);
}

/* ---- the tick: timeouts, back-off, heartbeat ------------------------------------------ */

static void heartbeat(pl_pres_redis_t *rd)
{
    set_alive(rd, NULL, NULL, false);
    refresh_all(rd, NULL, NULL);
    refresh_busy(rd, NULL, NULL);
}

static void on_tick(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(t);
    pl_pres_redis_t *rd = arg;
    uint64_t now = now_ms(rd);
    switch (rd->state) {
    case RD_CONNECTING:
        if (now >= rd->deadline_ms)
            link_fail(rd, "connect timeout");
        break;
    case RD_BACKOFF:
        if (now >= rd->deadline_ms) {
            pl_metric_inc(rd->r->shard, rd->r->m.redis_reconnects);
            link_start(rd);
        }
        break;
    case RD_SYNCING:
    case RD_UP:
        if (rd->cmd && pl_redis_conn_pending(rd->cmd) > 0 &&
            now - rd->last_progress_ms > rd->command_timeout_ms) {
            link_fail(rd, "command timeout");
            break;
        }
        if (rd->state == RD_UP && now >= rd->next_hb_ms) {
            rd->next_hb_ms = now + rd->hb_ms;
            heartbeat(rd);
        }
        break;
    default:
        break;
    }
}

/* ---- life cycle ------------------------------------------------------------------------ */

pl_pres_redis_t *pl_pres_redis_create(pl_router_t *r, const pl_pres_redis_opts_t *o)
{
    pl_pres_redis_t *rd = pl_xcalloc(1, sizeof(*rd));
    rd->r = r;
    snprintf(rd->host, sizeof(rd->host), "%s", o->host);
    snprintf(rd->user, sizeof(rd->user), "%s", o->user ? o->user : "");
    snprintf(rd->password, sizeof(rd->password), "%s", o->password ? o->password : "");
    snprintf(rd->prefix, sizeof(rd->prefix), "%s", o->prefix);
    rd->port = o->port;
    rd->db = o->db;
    rd->ttl_ms = o->ttl_ms;
    rd->hb_ms = o->heartbeat_ms;
    rd->connect_timeout_ms = o->connect_timeout_ms;
    rd->command_timeout_ms = o->command_timeout_ms;
    rd->backoff_max_ms = PL_MAX(o->backoff_max_ms, BACKOFF_MIN_MS);
    uint64_t rnd[2] = { pl_now_mono_us(), (uint64_t)getpid() };
    if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
        pl_log_warn("presence.redis.no_random", "instance token from clock and pid");
    snprintf(rd->instance, sizeof(rd->instance), "%016" PRIx64 "%016" PRIx64, rnd[0], rnd[1]);
    rd->rng = rnd[0] | 1;
    rd->scratch = pl_xmalloc(sizeof(*rd->scratch));
    pl_timer_init(&rd->tick);
    return rd;
}

void pl_pres_redis_start(pl_pres_redis_t *rd)
{
    pl_timer_start(rd->r->loop, &rd->tick, TICK_MS, TICK_MS, on_tick, rd);
    link_start(rd);
}

void pl_pres_redis_stop(pl_pres_redis_t *rd)
{
    pl_timer_stop(rd->r->loop, &rd->tick);
    pl_redis_conn_t *cmd = rd->cmd, *sub = rd->sub;
    rd->cmd = rd->sub = NULL;
    rd->state = RD_STOPPED;
    set_up(rd, false);
    pl_redis_conn_close(cmd);
    pl_redis_conn_close(sub);
}

void pl_pres_redis_destroy(pl_pres_redis_t *rd)
{
    if (!rd)
        return;
    free(rd->scratch);
    free(rd);
}

void pl_pres_redis_set_ttl(pl_pres_redis_t *rd, uint64_t ttl_ms, uint64_t heartbeat_ms)
{
    rd->ttl_ms = ttl_ms;
    rd->hb_ms = heartbeat_ms;
}

/* ---- registry operations ------------------------------------------------------------- */

static void reg_done(pl_pres_redis_t *rd, redisReply *reply, void *arg)
{
    PL_UNUSED(arg);
    pl_pres_loc_t old;
    if (reply && reply->type == REDIS_REPLY_STRING &&
        parse_value(reply->str, reply->len, &old) && strcmp(old.node, rd->r->node) != 0)
        pl_rtr_kick(rd->r, &old);
}

static void entry_cmd(pl_pres_redis_t *rd, const pl_pres_entry_t *e, const char *lua,
                      rd_done_fn done)
{
    kbuf_t kd, ka, kn;
    char val[160], ttl[24], id[24];
    entry_value(rd->r, e, val, sizeof(val));
    snprintf(ttl, sizeof(ttl), "%" PRIu64, rd->ttl_ms);
    snprintf(id, sizeof(id), "%" PRIu64, e->device_id);
    bool reg = lua == REG_LUA;
    const char *argv[] = { "EVAL", lua, "3", key_u64(rd, &kd, "dev", e->device_id),
                           key_u64(rd, &ka, "acct", e->account_id),
                           key_str(rd, &kn, "node", rd->r->node), val, reg ? ttl : id, id };
    rd_cmd(rd, done, NULL, reg ? 9 : 8, argv, NULL);
}

void pl_pres_redis_register(pl_pres_redis_t *rd, const pl_pres_entry_t *e)
{
    /* Not connected: the sync after the reconnect registers it. */
    entry_cmd(rd, e, REG_LUA, reg_done);
}

void pl_pres_redis_unregister(pl_pres_redis_t *rd, const pl_pres_entry_t *e)
{
    entry_cmd(rd, e, UNREG_LUA, NULL);
}

typedef struct lookup_ctx {
    pl_pres_locs_cb cb;
    void *arg;
} lookup_ctx_t;

static void locs_done(pl_pres_redis_t *rd, redisReply *reply, void *arg)
{
    lookup_ctx_t lc = *(lookup_ctx_t *)arg;
    free(arg);
    pl_pres_loc_t locs[64];
    size_t n = 0;
    if (!reply_ok(reply)) {
        lc.cb(rd->r, -1, NULL, 0, lc.arg);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING) {
        n = parse_value(reply->str, reply->len, &locs[0]);
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements && n < PL_ARRAY_LEN(locs); i++) {
            redisReply *el = reply->element[i];
            if (el->type == REDIS_REPLY_STRING && parse_value(el->str, el->len, &locs[n]))
                n++;
        }
    }
    lc.cb(rd->r, 0, locs, n, lc.arg);
}

static int lookup(pl_pres_redis_t *rd, int argc, const char **argv, pl_pres_locs_cb cb,
                  void *arg)
{
    if (rd->state != RD_UP)
        return -1;
    lookup_ctx_t *lc = pl_xmalloc(sizeof(*lc));
    *lc = (lookup_ctx_t){ cb, arg };
    if (rd_cmd(rd, locs_done, lc, argc, argv, NULL) < 0) {
        free(lc);
        return -1;
    }
    return 0;
}

int pl_pres_redis_lookup_device(pl_pres_redis_t *rd, uint64_t device_id, pl_pres_locs_cb cb,
                                void *arg)
{
    kbuf_t k;
    const char *argv[] = { "GET", key_u64(rd, &k, "dev", device_id) };
    return lookup(rd, 2, argv, cb, arg);
}

int pl_pres_redis_lookup_user(pl_pres_redis_t *rd, uint64_t account_id, pl_pres_locs_cb cb,
                              void *arg)
{
    kbuf_t k, prefix;
    snprintf(prefix.s, sizeof(prefix.s), "%sdev:", rd->prefix);
    const char *argv[] = { "EVAL", RESOLVE_LUA, "1", key_u64(rd, &k, "acct", account_id),
                           prefix.s };
    return lookup(rd, 5, argv, cb, arg);
}

typedef struct pub_ctx {
    pl_pres_pub_cb cb;
    void *arg;
} pub_ctx_t;

static void pub_done(pl_pres_redis_t *rd, redisReply *reply, void *arg)
{
    pub_ctx_t pc = *(pub_ctx_t *)arg;
    free(arg);
    long long n = reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    if (pc.cb)
        pc.cb(rd->r, n, pc.arg);
}

int pl_pres_redis_publish(pl_pres_redis_t *rd, const char *node, const char *text, size_t len,
                          pl_pres_pub_cb cb, void *arg)
{
    if (rd->state != RD_UP)
        return -1;
    kbuf_t k;
    const char *argv[] = { "PUBLISH", key_str(rd, &k, "ch", node), text };
    size_t lens[] = { 7, strlen(k.s), len };
    pub_ctx_t *pc = pl_xmalloc(sizeof(*pc));
    *pc = (pub_ctx_t){ cb, arg };
    if (rd_cmd(rd, pub_done, pc, 3, argv, lens) < 0) {
        free(pc);
        return -1;
    }
    return 0;
}

typedef struct claim_ctx {
    pl_pres_claim_cb cb;
    void *arg;
} claim_ctx_t;

static void claim_done(pl_pres_redis_t *rd, redisReply *reply, void *arg)
{
    claim_ctx_t cc = *(claim_ctx_t *)arg;
    free(arg);
    int outcome = reply && reply->type == REDIS_REPLY_INTEGER &&
                  reply->integer >= 0 && reply->integer <= 2 ? (int)reply->integer : -1;
    cc.cb(rd->r, outcome, cc.arg);
}

int pl_pres_redis_claim(pl_pres_redis_t *rd, const uint64_t acct[2], const char *call_id,
                        pl_pres_claim_cb cb, void *arg)
{
    if (rd->state != RD_UP)
        return -1;
    kbuf_t k1, k2;
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRIu64, rd->ttl_ms);
    const char *argv[] = { "EVAL", CLAIM_LUA, "2", key_u64(rd, &k1, "busy", acct[0]),
                           key_u64(rd, &k2, "busy", acct[1]), call_id, ttl };
    claim_ctx_t *cc = pl_xmalloc(sizeof(*cc));
    *cc = (claim_ctx_t){ cb, arg };
    if (rd_cmd(rd, claim_done, cc, 7, argv, NULL) < 0) {
        free(cc);
        return -1;
    }
    return 0;
}

void pl_pres_redis_release(pl_pres_redis_t *rd, uint64_t account_id, const char *call_id)
{
    kbuf_t k;
    const char *argv[] = { "EVAL", RELEASE_LUA, "1", key_u64(rd, &k, "busy", account_id),
                           call_id };
    rd_cmd(rd, NULL, NULL, 5, argv, NULL);
}
