/* turn_fake.h: a fake I/O (records what the TURN core sends, opens fake relay
 * sockets), a fake clock and a client that builds signed requests, shared by the
 * test_turn_*.c suites. Everything is static (each suite is its own executable). */
#ifndef TURN_FAKE_H
#define TURN_FAKE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay/turn/turn_int.h"
#include "core/pl_log.h"

#define FAKE_FN static __attribute__((unused))
#define FAKE_MAX 64

typedef struct fake_pkt {
    pl_turn_conn_t conn;            /* client sends */
    pl_turn_relay_t *relay;         /* peer sends */
    pl_sockaddr_t peer;
    unsigned flags;
    uint8_t buf[2048];
    size_t len;
} fake_pkt_t;

typedef struct fake_io {
    uint64_t now_ms, wall_s;
    fake_pkt_t to_client[FAKE_MAX];
    size_t n_client;
    fake_pkt_t to_peer[FAKE_MAX];
    size_t n_peer;
    pl_turn_relay_t *open[1024];    /* relays currently open */
    size_t n_open;
    int next_fd;
    int open_err;                   /* relay_open returns this when non-zero */
    uint16_t hold_busy_port;        /* port_hold of this port: -EADDRINUSE (0 = none) */
    int n_holds, hold_refusals;     /* port_hold calls that held, that were refused */
    int open_err_count;             /* ... this many times */
    int send_err;                   /* send_client/send_peer return this */
} fake_io_t;

static uint64_t fake_now(void *ctx) { return ((fake_io_t *)ctx)->now_ms; }
static uint64_t fake_wall(void *ctx) { return ((fake_io_t *)ctx)->wall_s; }

static int fake_send_client(void *ctx, const pl_turn_conn_t *conn, const uint8_t *buf, size_t len)
{
    fake_io_t *io = ctx;
    if (io->send_err)
        return io->send_err;
    fake_pkt_t *p = &io->to_client[io->n_client++ % FAKE_MAX];
    p->conn = *conn;
    assert_true(len <= sizeof p->buf);
    memcpy(p->buf, buf, len);
    p->len = len;
    return 0;
}

static int fake_relay_open(void *ctx, pl_turn_relay_t *relay)
{
    fake_io_t *io = ctx;
    if (io->open_err && io->open_err_count-- > 0)
        return io->open_err;
    for (size_t i = 0; i < io->n_open; i++)     /* a port bound twice is a bug */
        assert_false(pl_sockaddr_equal(&io->open[i]->addr, &relay->addr));
    assert_true(io->n_open < PL_ARRAY_LEN(io->open));
    relay->fd = 100 + io->next_fd++;
    io->open[io->n_open++] = relay;
    return 0;
}

static void fake_relay_close(void *ctx, pl_turn_relay_t *relay)
{
    fake_io_t *io = ctx;
    for (size_t i = 0; i < io->n_open; i++)
        if (io->open[i] == relay) {
            io->open[i] = io->open[--io->n_open];
            relay->fd = -1;
            return;
        }
    fail_msg("closing a relay that is not open");
}

static int fake_send_peer(void *ctx, pl_turn_relay_t *relay, const pl_sockaddr_t *peer,
                          const uint8_t *buf, size_t len, unsigned flags)
{
    fake_io_t *io = ctx;
    assert_true(relay->fd >= 0);
    if (io->send_err)
        return io->send_err;
    fake_pkt_t *p = &io->to_peer[io->n_peer++ % FAKE_MAX];
    p->relay = relay;
    p->peer = *peer;
    p->flags = flags;
    memcpy(p->buf, buf, len);
    p->len = len;
    return 0;
}

/* Holds with a real descriptor (a pipe's read end) so the core's close is exercised. */
static int fake_port_hold(void *ctx, const pl_sockaddr_t *addr)
{
    fake_io_t *io = ctx;
    if (io->hold_busy_port && pl_sockaddr_port(addr) == io->hold_busy_port) {
        io->hold_refusals++;
        return -EADDRINUSE;
    }
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    io->n_holds++;
    return p[0];
}

static const pl_turn_io_ops_t fake_ops = {
    fake_now, fake_wall, fake_send_client, fake_relay_open, fake_relay_close, fake_send_peer,
    fake_port_hold,
};

/* ---- the test environment ---- */

typedef struct tenv {
    pl_config_t *cfg;
    pl_turn_settings_t *set;
    pl_turn_shared_t *sh;
    pl_metrics_t *reg;
    pl_turn_metric_ids_t ids;
    pl_metrics_shard_t *shard;
    pl_turn_server_t *srv;
    fake_io_t io;
    pl_turn_conn_t conn;            /* the default client */
    uint32_t tid_seq;
} tenv_t;

static const char *const base_overrides[] = {
    "turn.enabled=true",
    "turn.listen=127.0.0.1:3478,[::1]:3478",
    "turn.users=alice:wonderland,bob:builder",
    "turn.auth_secret=s3cret,0ld-s3cret",
    "turn.relay_ports=50000-50015",
    "turn.realm=example.org",
};

FAKE_FN pl_config_t *tenv_config(const char *const *extra, size_t n_extra)
{
    const char *ov[32];
    size_t n = 0;
    for (size_t i = 0; i < PL_ARRAY_LEN(base_overrides); i++)
        ov[n++] = base_overrides[i];
    for (size_t i = 0; i < n_extra; i++)
        ov[n++] = extra[i];
    static const pl_opt_table_t *const schema[] = {&pl_turn_options, NULL};
    pl_config_source_t src = {NULL, ov, n, NULL};
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    if (pl_config_load(schema, &src, &cfg, &err) != 0)
        fail_msg("config: %s", err.msg);
    return cfg;
}

FAKE_FN tenv_t *tenv_new(const char *const *extra, size_t n_extra)
{
    pl_log_setup(PL_LOG_WARN, PL_LOG_TEXT, NULL, 0);
    tenv_t *e = calloc(1, sizeof *e);
    e->cfg = tenv_config(extra, n_extra);
    pl_config_error_t err;
    if (pl_turn_settings_build(e->cfg, &e->set, &err) != 0)
        fail_msg("settings: %s", err.msg);
    e->sh = pl_turn_shared_create(e->set->port_lo, e->set->port_hi, e->set->nonce_lifetime_s);
    e->reg = pl_metrics_create();
    pl_turn_metrics_register(e->reg, &e->ids);
    e->shard = pl_metrics_shard_create(e->reg);
    e->io.now_ms = 1000000;
    e->io.wall_s = 1700000000;
    pl_turn_server_cfg_t sc = {&fake_ops, &e->io, e->set, e->sh, e->shard, &e->ids, 0};
    e->srv = pl_turn_server_create(&sc);
    e->conn.transport = PL_TURN_UDP;
    e->conn.id = 0;
    pl_sockaddr_parse("198.51.100.7:40000", -1, &e->conn.client);
    pl_sockaddr_parse("127.0.0.1:3478", -1, &e->conn.local);
    return e;
}

FAKE_FN void tenv_free(tenv_t *e)
{
    pl_turn_server_destroy(e->srv);
    assert_int_equal(e->io.n_open, 0);      /* every relay closed */
    assert_int_equal(pl_turn_ports_in_use(&e->sh->ports[0]) + pl_turn_ports_in_use(&e->sh->ports[1]), 0);
    pl_turn_shared_destroy(e->sh);
    pl_turn_settings_unref(e->set);
    pl_config_unref(e->cfg);
    pl_metrics_destroy(e->reg);
    free(e);
}

/* Advances the fake clocks by ms. */
FAKE_FN void tenv_advance(tenv_t *e, uint64_t ms)
{
    e->io.now_ms += ms;
    e->io.wall_s = 1700000000 + (e->io.now_ms - 1000000) / 1000;
}

FAKE_FN uint64_t counter(tenv_t *e, pl_metric_id_t id)
{
    return pl_metrics_read_counter(e->reg, id);
}

FAKE_FN uint64_t drops(tenv_t *e, pl_turn_drop_t why)
{
    return counter(e, e->ids.drops[why]);
}

/* ---- the client ---- */

typedef struct req {
    pl_stun_builder_t b;
    uint8_t buf[1500];
    uint8_t tid[PL_STUN_TID_LEN];
} req_t;

FAKE_FN void req_init(tenv_t *e, req_t *r, uint16_t method, uint8_t cls)
{
    memset(r->tid, 0, sizeof r->tid);
    uint32_t seq = ++e->tid_seq;
    memcpy(r->tid, &seq, sizeof seq);
    r->tid[11] = 0x5A;
    assert_int_equal(pl_stun_build_init(&r->b, r->buf, sizeof r->buf, pl_stun_type(method, cls),
                                        r->tid), 0);
}

FAKE_FN void req_transport(req_t *r)
{
    pl_stun_add_u32(&r->b, PL_STUN_ATTR_REQUESTED_TRANSPORT, (uint32_t)PL_STUN_TRANSPORT_UDP << 24);
}

FAKE_FN void req_peer(req_t *r, const char *addr)
{
    pl_sockaddr_t a;
    assert_int_equal(pl_sockaddr_parse(addr, -1, &a), 0);
    pl_stun_add_addr(&r->b, PL_STUN_ATTR_XOR_PEER_ADDRESS, &a);
}

FAKE_FN void tenv_nonce(tenv_t *e, char nonce[PL_STUN_NONCE_LEN + 1])
{
    pl_stun_nonce_key_t k = e->sh->nonce_key;
    k.lifetime_s = e->set->nonce_lifetime_s;
    assert_int_equal(pl_stun_nonce_make(&k, e->io.wall_s, &e->conn.client, nonce), PL_STUN_NONCE_LEN);
}

/* Adds USERNAME, REALM, NONCE (fresh unless nonce given) and MESSAGE-INTEGRITY with
 * the MD5 long-term key of user/pass, then FINGERPRINT. Returns the length. */
FAKE_FN size_t req_sign(tenv_t *e, req_t *r, const char *user, const char *pass, const char *nonce)
{
    char fresh[PL_STUN_NONCE_LEN + 1];
    if (!nonce) {
        tenv_nonce(e, fresh);
        nonce = fresh;
    }
    pl_stun_add_str(&r->b, PL_STUN_ATTR_USERNAME, user);
    pl_stun_add_str(&r->b, PL_STUN_ATTR_REALM, e->set->realm);
    pl_stun_add_str(&r->b, PL_STUN_ATTR_NONCE, nonce);
    pl_stun_cred_t c = {user, strlen(user), e->set->realm, strlen(e->set->realm), pass, strlen(pass)};
    pl_stun_key_t key;
    assert_int_equal(pl_stun_key_longterm(&c, PL_STUN_PWALG_MD5, &key), 0);
    pl_stun_add_integrity(&r->b, key.bytes, key.len);
    pl_stun_add_fingerprint(&r->b);
    int n = pl_stun_build_finish(&r->b);
    assert_true(n > 0);
    return (size_t)n;
}

FAKE_FN size_t req_plain(req_t *r)
{
    int n = pl_stun_build_finish(&r->b);
    assert_true(n > 0);
    return (size_t)n;
}

FAKE_FN void tenv_input(tenv_t *e, req_t *r, size_t len)
{
    pl_turn_server_input(e->srv, &e->conn, r->buf, len);
}

/* Parses the last packet sent to a client into *m (the buffer stays in the fake).
 * Returns 0 for a success response, the error code, or -1 when nothing was sent
 * since *seen (which is then updated). */
FAKE_FN int last_reply(tenv_t *e, pl_stun_msg_t *m)
{
    if (e->io.n_client == 0)
        return -1;
    fake_pkt_t *p = &e->io.to_client[(e->io.n_client - 1) % FAKE_MAX];
    assert_int_equal(pl_stun_parse(m, p->buf, p->len), 0);
    if (m->cls == PL_STUN_CLASS_SUCCESS)
        return 0;
    pl_stun_error_t err;
    assert_int_equal(m->cls, PL_STUN_CLASS_ERROR);
    assert_int_equal(pl_stun_get_error(m, &err), 0);
    return err.code;
}

/* Sends a request and returns the reply code (0 success, -1 none). */
FAKE_FN int roundtrip(tenv_t *e, req_t *r, size_t len, pl_stun_msg_t *m)
{
    size_t before = e->io.n_client;
    tenv_input(e, r, len);
    if (e->io.n_client == before)
        return -1;
    int code = last_reply(e, m);
    assert_memory_equal(pl_stun_msg_tid(m), r->tid, PL_STUN_TID_LEN);
    return code;
}

/* Allocates for the default client as alice. Returns the reply code. */
FAKE_FN int do_allocate(tenv_t *e, pl_stun_msg_t *m)
{
    req_t r;
    req_init(e, &r, PL_STUN_METHOD_ALLOCATE, PL_STUN_CLASS_REQUEST);
    req_transport(&r);
    return roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), m);
}

FAKE_FN int do_permission(tenv_t *e, const char *peer)
{
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_CREATE_PERMISSION, PL_STUN_CLASS_REQUEST);
    req_peer(&r, peer);
    return roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m);
}

FAKE_FN int do_channel_bind(tenv_t *e, uint16_t ch, const char *peer)
{
    req_t r;
    pl_stun_msg_t m;
    req_init(e, &r, PL_STUN_METHOD_CHANNEL_BIND, PL_STUN_CLASS_REQUEST);
    pl_stun_add_u32(&r.b, PL_STUN_ATTR_CHANNEL_NUMBER, (uint32_t)ch << 16);
    req_peer(&r, peer);
    return roundtrip(e, &r, req_sign(e, &r, "alice", "wonderland", NULL), &m);
}

/* The relay of the default client's allocation for family f (0/1). */
FAKE_FN pl_turn_relay_t *tenv_relay(tenv_t *e, int f)
{
    pl_turn_alloc_t *a = pl_turn_alloc_find(e->srv, &e->conn);
    assert_non_null(a);
    return &a->relay[f];
}

#endif
