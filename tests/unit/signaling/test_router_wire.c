/* test_router_wire.c: what nodes publish to each other and the names that become Redis
 * keys: envelope round trips for every op (ids above 2^63 survive the signed JSON
 * integers), a table of malformed envelopes that must be refused (anyone who can talk
 * to Redis can publish on a channel), node-name rules, Redis URL parsing, and call ids
 * and the STUN/TURN URLs derived for call participants. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "signaling/calls_int.h"

#include <string.h>

static pl_env_t roundtrip(const pl_env_t *in)
{
    pl_buf_t b;
    pl_env_t out;
    pl_buf_init(&b);
    pl_env_encode(in, NULL, 0, &b);
    assert_int_equal(pl_env_decode(b.data, b.len, &out), 0);
    pl_buf_deinit(&b);
    return out;
}

static void test_deliver_and_bounce(void **state)
{
    PL_UNUSED(state);
    json_t *frame = json_pack("{s:s,s:i}", "type", "chat.msg", "n", 5);
    pl_env_t e = { .op = PL_ENV_DELIVER, .device_id = 42, .account_id = 7,
                   .conn_id = 0x0100000500000003ull, .sink = 2,
                   .cookie = 0xfedcba9876543210ull, .frame = frame };
    strcpy(e.from, "node-a.eu_1");
    pl_env_t o = roundtrip(&e);
    assert_int_equal(o.op, PL_ENV_DELIVER);
    assert_string_equal(o.from, "node-a.eu_1");
    assert_true(o.device_id == 42 && o.account_id == 7);
    assert_true(o.conn_id == 0x0100000500000003ull);
    assert_true(o.cookie == 0xfedcba9876543210ull);      /* > 2^63: two's complement */
    assert_int_equal(o.sink, 2);
    assert_true(json_equal(o.frame, frame));
    json_decref(o.frame);

    e.op = PL_ENV_BOUNCE;
    e.reason = PL_ROUTE_OFFLINE;
    o = roundtrip(&e);
    assert_int_equal(o.op, PL_ENV_BOUNCE);
    assert_int_equal(o.reason, PL_ROUTE_OFFLINE);
    assert_true(json_equal(o.frame, frame));
    json_decref(o.frame);

    /* One serialization shared by several envelopes. */
    pl_buf_t b;
    pl_buf_init(&b);
    e.frame = NULL;
    pl_env_encode(&e, "{\"type\":\"x\"}", 12, &b);
    assert_int_equal(pl_env_decode(b.data, b.len, &o), 0);
    assert_string_equal(json_string_value(json_object_get(o.frame, "type")), "x");
    json_decref(o.frame);
    pl_buf_deinit(&b);
    json_decref(frame);
}

static void test_kick_request_response(void **state)
{
    PL_UNUSED(state);
    pl_env_t e = { .op = PL_ENV_KICK, .device_id = 9, .conn_id = 77 };
    strcpy(e.from, "n1");
    pl_env_t o = roundtrip(&e);
    assert_int_equal(o.op, PL_ENV_KICK);
    assert_true(o.device_id == 9 && o.conn_id == 77);
    assert_null(o.frame);

    json_t *req = json_pack("{s:s,s:s}", "type", "call.accept", "call_id", "abc");
    e = (pl_env_t){ .op = PL_ENV_REQUEST, .token = 5, .device_id = 3, .account_id = 4,
                    .conn_id = 6, .frame = req };
    strcpy(e.from, "n2");
    strcpy(e.username, "al\"ice");
    o = roundtrip(&e);
    assert_int_equal(o.op, PL_ENV_REQUEST);
    assert_string_equal(o.username, "al\"ice");
    assert_true(o.token == 5 && o.device_id == 3 && o.account_id == 4 && o.conn_id == 6);
    assert_true(json_equal(o.frame, req));
    json_decref(o.frame);
    json_decref(req);

    json_t *res = json_pack("{s:s,s:s}", "code", "busy", "message", "in a call");
    e = (pl_env_t){ .op = PL_ENV_RESPONSE, .token = 5, .ok = false, .frame = res };
    strcpy(e.from, "n2");
    o = roundtrip(&e);
    assert_int_equal(o.op, PL_ENV_RESPONSE);
    assert_false(o.ok);
    assert_true(json_equal(o.frame, res));
    json_decref(o.frame);
    json_decref(res);
}

static const char *const bad_envelopes[] = {
    "",
    "not json",
    "[]",
    "{}",
    "{\"v\":2,\"op\":\"k\",\"from\":\"n\",\"dev\":1,\"conn\":1}",           /* version */
    "{\"v\":1,\"op\":\"x\",\"from\":\"n\",\"dev\":1,\"conn\":1}",           /* op */
    "{\"v\":1,\"op\":\"\",\"from\":\"n\",\"dev\":1,\"conn\":1}",
    "{\"v\":1,\"op\":\"kk\",\"from\":\"n\",\"dev\":1,\"conn\":1}",
    "{\"v\":1,\"op\":\"k\",\"from\":\"a b\",\"dev\":1,\"conn\":1}",         /* node name */
    "{\"v\":1,\"op\":\"k\",\"from\":\"\",\"dev\":1,\"conn\":1}",
    "{\"v\":1,\"op\":\"k\",\"from\":5,\"dev\":1,\"conn\":1}",
    "{\"v\":1,\"op\":\"k\",\"from\":\"n\",\"dev\":0,\"conn\":1}",           /* device 0 */
    "{\"v\":1,\"op\":\"k\",\"from\":\"n\",\"dev\":\"1\",\"conn\":1}",
    "{\"v\":1,\"op\":\"k\",\"from\":\"n\",\"conn\":1}",
    "{\"v\":1,\"op\":\"d\",\"from\":\"n\",\"dev\":1,\"acct\":1,\"conn\":0,\"sink\":0,"
    "\"ck\":0,\"why\":0}",                                                  /* no frame */
    "{\"v\":1,\"op\":\"d\",\"from\":\"n\",\"dev\":1,\"acct\":1,\"conn\":0,\"sink\":0,"
    "\"ck\":0,\"why\":0,\"f\":[1]}",                                        /* not an object */
    "{\"v\":1,\"op\":\"d\",\"from\":\"n\",\"dev\":1,\"acct\":1,\"conn\":0,\"sink\":99,"
    "\"ck\":0,\"why\":0,\"f\":{}}",                                         /* sink range */
    "{\"v\":1,\"op\":\"b\",\"from\":\"n\",\"dev\":1,\"acct\":1,\"conn\":0,\"sink\":1,"
    "\"ck\":0,\"why\":7,\"f\":{}}",                                         /* reason range */
    "{\"v\":1,\"op\":\"q\",\"from\":\"n\",\"tok\":1,\"dev\":1,\"acct\":1,\"conn\":1,"
    "\"f\":{}}",                                                            /* no user */
    "{\"v\":1,\"op\":\"q\",\"from\":\"n\",\"tok\":1,\"dev\":1,\"acct\":1,\"conn\":1,"
    "\"user\":\"a\\u0000b\",\"f\":{}}",                                     /* NUL in user */
    "{\"v\":1,\"op\":\"r\",\"from\":\"n\",\"tok\":0,\"ok\":true,\"f\":{}}",   /* token 0 */
    "{\"v\":1,\"op\":\"r\",\"from\":\"n\",\"tok\":1,\"ok\":1,\"f\":{}}",
    "{\"v\":1,\"op\":\"r\",\"from\":\"n\",\"tok\":1,\"ok\":true}",
    "{\"v\":1,\"v\":1,\"op\":\"k\",\"from\":\"n\",\"dev\":1,\"conn\":1}",   /* duplicate key */
};

static void test_bad_envelopes(void **state)
{
    PL_UNUSED(state);
    for (size_t i = 0; i < PL_ARRAY_LEN(bad_envelopes); i++) {
        pl_env_t o;
        const char *s = bad_envelopes[i];
        if (pl_env_decode(s, strlen(s), &o) != PL_EPARSE)
            fail_msg("accepted: %s", s);
        assert_null(o.frame);
    }
    /* Truncations of a good envelope are all refused. */
    const char *good = "{\"v\":1,\"op\":\"k\",\"from\":\"n\",\"dev\":1,\"conn\":1}";
    pl_env_t o;
    assert_int_equal(pl_env_decode(good, strlen(good), &o), 0);
    for (size_t n = 0; n < strlen(good); n++)
        assert_int_equal(pl_env_decode(good, n, &o), PL_EPARSE);
}

static void test_node_names(void **state)
{
    PL_UNUSED(state);
    assert_true(pl_node_name_ok("node-1"));
    assert_true(pl_node_name_ok("eu.west_2-B"));
    char max[PL_NODE_MAX + 2];
    memset(max, 'a', sizeof(max));
    max[PL_NODE_MAX] = '\0';
    assert_true(pl_node_name_ok(max));
    max[PL_NODE_MAX] = 'a';
    max[PL_NODE_MAX + 1] = '\0';
    assert_false(pl_node_name_ok(max));
    assert_false(pl_node_name_ok(""));
    assert_false(pl_node_name_ok("a b"));
    assert_false(pl_node_name_ok("a:b"));       /* would split Redis key parts */
    assert_false(pl_node_name_ok("a@b"));       /* call ids use @ */
    assert_false(pl_node_name_ok("n\n"));
}

static void test_redis_url(void **state)
{
    PL_UNUSED(state);
    char buf[256];
    pl_pres_redis_opts_t o;
    assert_int_equal(pl_pres_redis_parse_url("redis://10.0.0.5", buf, sizeof(buf), &o), 0);
    assert_string_equal(o.host, "10.0.0.5");
    assert_int_equal(o.port, 6379);
    assert_int_equal(o.db, 0);
    assert_string_equal(o.password, "");
    assert_int_equal(pl_pres_redis_parse_url("redis://:s3cr@t@h:6380/2", buf, sizeof(buf), &o), 0);
    assert_string_equal(o.host, "h");
    assert_string_equal(o.user, "");
    assert_string_equal(o.password, "s3cr@t");
    assert_int_equal(o.port, 6380);
    assert_int_equal(o.db, 2);
    assert_int_equal(pl_pres_redis_parse_url("redis://bob:pw@[::1]:7000", buf, sizeof(buf), &o), 0);
    assert_string_equal(o.user, "bob");
    assert_string_equal(o.password, "pw");
    assert_string_equal(o.host, "::1");
    assert_int_equal(o.port, 7000);
    static const char *const bad[] = {
        "", "http://h", "redis://", "redis://h:0", "redis://h:65536", "redis://h:x",
        "redis://h/x", "redis://h/-1", "redis://a b", "redis://[::1", "redis://:pw@",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++)
        if (pl_pres_redis_parse_url(bad[i], buf, sizeof(buf), &o) != PL_EPARSE)
            fail_msg("accepted %s", bad[i]);
    char tiny[4];
    assert_int_equal(pl_pres_redis_parse_url("redis://hostname", tiny, sizeof(tiny), &o),
                     PL_EPARSE);
}

static void test_call_ids(void **state)
{
    PL_UNUSED(state);
    uint64_t key;
    char home[PL_NODE_MAX + 1];
    assert_true(pl_call_id_parse("0123456789abcdef01234567@node-1", &key, home));
    assert_true(key == 0x0123456789abcdefull);
    assert_string_equal(home, "node-1");
    static const char *const bad[] = {
        "", "0123456789abcdef01234567", "0123456789abcdef01234567@",
        "0123456789ABCDEF01234567@n", "0123456789abcdef0123456@n", "0123456789abcdef012345678@n",
        "0000000000000000ffffffff@n",       /* key 0 */
        "0123456789abcdef01234567@a b", "0123456789abcdef01234567@n@m", "zz23456789abcdef01234567@n",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++)
        if (pl_call_id_parse(bad[i], &key, home))
            fail_msg("accepted %s", bad[i]);
}

static void test_default_urls(void **state)
{
    PL_UNUSED(state);
    pl_calls_ice_t ice;
    pl_calls_default_urls("turn.example.org", 3478, 5349, &ice);
    assert_int_equal(ice.n_stun, 1);
    assert_string_equal(ice.stun[0], "stun:turn.example.org:3478");
    assert_int_equal(ice.n_turn, 3);
    assert_string_equal(ice.turn[0], "turn:turn.example.org:3478?transport=udp");
    assert_string_equal(ice.turn[1], "turn:turn.example.org:3478?transport=tcp");
    assert_string_equal(ice.turn[2], "turns:turn.example.org:5349?transport=tcp");
    pl_calls_default_urls("2001:db8::1", 3478, 0, &ice);
    assert_int_equal(ice.n_turn, 2);            /* no TLS: no turns: URL */
    assert_string_equal(ice.stun[0], "stun:[2001:db8::1]:3478");
    assert_string_equal(ice.turn[0], "turn:[2001:db8::1]:3478?transport=udp");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_and_bounce),
        cmocka_unit_test(test_kick_request_response),
        cmocka_unit_test(test_bad_envelopes),
        cmocka_unit_test(test_node_names),
        cmocka_unit_test(test_redis_url),
        cmocka_unit_test(test_call_ids),
        cmocka_unit_test(test_default_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
