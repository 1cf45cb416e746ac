/* test_turn_config.c: the [turn] settings (parsing, defaults, validation errors),
 * pl_turn_mint_credentials, the external address map, and the shared state (port
 * pool, quotas, reservations). */
#include "turn_fake.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

static int validate(const char *const *ov, size_t n, char *msg, size_t cap)
{
    pl_config_t *cfg = tenv_config(ov, n);
    pl_config_error_t err = {{0}};
    int rc = pl_turn_validate(cfg, &err);
    snprintf(msg, cap, "%s", err.msg);
    pl_config_unref(cfg);
    return rc;
}

static void expect_error(const char *ov, const char *needle)
{
    char msg[512];
    const char *list[] = {ov};
    assert_int_equal(validate(list, 1, msg, sizeof msg), PL_ECONFIG);
    if (!strstr(msg, needle))
        fail_msg("for %s: \"%s\" does not mention \"%s\"", ov, msg, needle);
    assert_null(strchr(msg, '\n'));
}

static void test_validation_errors(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(validate(NULL, 0, msg, sizeof msg), 0);
    expect_error("turn.listen=nonsense", "[turn] listen");
    expect_error("turn.listen=", "[turn] listen");
    expect_error("turn.allowed_peers=10.0.0.0/33", "[turn] allowed_peers: \"10.0.0.0/33\"");
    expect_error("turn.denied_peers=hello", "[turn] denied_peers");
    expect_error("turn.relay_ports=5000", "[turn] relay_ports");
    expect_error("turn.relay_ports=60000-50000", "lo <= hi");
    expect_error("turn.relay_ports=100-2000", "1024");
    expect_error("turn.users=alice", "[turn] users: entry 1");
    expect_error("turn.users=alice:x,alice:y", "listed twice");
    expect_error("turn.max_lifetime=60s", "[turn] max_lifetime");
    expect_error("turn.relay_ip=::1,fe80::1", "at most one per family");
    expect_error("turn.relay_ip=banana", "[turn] relay_ip");
    expect_error("turn.external_ip=1.2.3.4/::1", "one family");
    expect_error("turn.alternate_servers=x:y", "[turn] alternate_servers");
    expect_error("turn.tls_cert=/etc/hostname", "set both");
    const char *both[] = {"turn.tls_cert=/nonexistent/cert.pem", "turn.tls_key=/nonexistent/key.pem"};
    assert_int_equal(validate(both, 2, msg, sizeof msg), PL_ECONFIG);
    assert_non_null(strstr(msg, "cannot read"));
    /* A wildcard relay address needs something peers can reach. */
    const char *wild[] = {"turn.listen=0.0.0.0:3478"};
    assert_int_equal(validate(wild, 1, msg, sizeof msg), PL_ECONFIG);
    assert_non_null(strstr(msg, "wildcard"));
    const char *wild_ok[] = {"turn.listen=0.0.0.0:3478", "turn.external_ip=203.0.113.5"};
    assert_int_equal(validate(wild_ok, 2, msg, sizeof msg), 0);
    /* The password never appears in an error. */
    expect_error("turn.users=alice:hunter2,:x", "entry 2");
    const char *pw[] = {"turn.users=alice:hunter2,:x"};
    validate(pw, 1, msg, sizeof msg);
    assert_null(strstr(msg, "hunter2"));
}

static void test_settings_defaults(void **state)
{
    (void)state;
    const char *ov[] = {"turn.threads=3", "turn.external_ip=198.51.100.9"};
    pl_config_t *cfg = tenv_config(ov, 2);
    pl_turn_settings_t *s;
    pl_config_error_t err;
    assert_int_equal(pl_turn_settings_build(cfg, &s, &err), 0);
    assert_int_equal(s->n_listen, 2);
    assert_true(s->has_relay[0] && s->has_relay[1]);
    assert_true(pl_sockaddr_is_loopback(&s->relay[0]));
    assert_int_equal(pl_sockaddr_port(&s->relay[0]), 0);
    assert_int_equal(s->threads, 3);
    assert_int_equal(s->default_lifetime_s, 600);
    assert_int_equal(s->max_lifetime_s, 3600);
    assert_int_equal(s->permission_lifetime_s, 300);
    assert_int_equal(s->channel_lifetime_s, 600);
    assert_int_equal(s->n_users, 2);
    assert_non_null(pl_turn_settings_user(s, "bob", 3));
    assert_null(pl_turn_settings_user(s, "bo", 2));
    assert_null(pl_turn_settings_user(s, "carol", 5));
    assert_string_equal(s->software, "parley");
    /* External address: the IPv4 relay is advertised as 198.51.100.9, same port. */
    pl_sockaddr_t local = s->relay[0], adv;
    pl_sockaddr_set_port(&local, 50001);
    pl_turn_settings_advertised(s, &local, &adv);
    char buf[PL_SOCKADDR_STRLEN];
    assert_string_equal(pl_sockaddr_str(&adv, buf, sizeof buf), "198.51.100.9:50001");
    local = s->relay[1];                            /* no IPv6 mapping: unchanged */
    pl_turn_settings_advertised(s, &local, &adv);
    assert_true(pl_sockaddr_equal(&adv, &local));
    pl_turn_settings_unref(s);
    pl_config_unref(cfg);
}

static void test_external_ip_private_mapping(void **state)
{
    (void)state;
    const char *ov[] = {"turn.listen=127.0.0.1:3478,127.0.0.2:3478",
                        "turn.external_ip=198.51.100.1/127.0.0.2,198.51.100.2/127.0.0.1"};
    pl_config_t *cfg = tenv_config(ov, 2);
    pl_turn_settings_t *s;
    pl_config_error_t err;
    assert_int_equal(pl_turn_settings_build(cfg, &s, &err), 0);
    pl_sockaddr_t adv, local;
    pl_sockaddr_parse("127.0.0.1:50000", -1, &local);
    pl_turn_settings_advertised(s, &local, &adv);
    char buf[PL_SOCKADDR_STRLEN];
    assert_string_equal(pl_sockaddr_str(&adv, buf, sizeof buf), "198.51.100.2:50000");
    pl_turn_settings_unref(s);
    pl_config_unref(cfg);
}

static void test_mint_credentials(void **state)
{
    (void)state;
    const char *ov[] = {"turn.rest_ttl=1h"};
    pl_config_t *cfg = tenv_config(ov, 1);
    char user[300], pass[64];
    assert_int_equal(pl_turn_mint_credentials(cfg, "dave", 1000, user, sizeof user, pass, sizeof pass), 0);
    assert_string_equal(user, "4600:dave");
    char want[PL_TURN_REST_PASSWORD_LEN + 1];
    pl_turn_rest_password("s3cret", user, strlen(user), want);   /* the first secret */
    assert_string_equal(pass, want);
    assert_int_equal(pl_turn_mint_credentials(cfg, "dave", 1000, user, 5, pass, sizeof pass), PL_ELIMIT);
    assert_int_equal(pl_turn_mint_credentials(cfg, "dave", 1000, user, sizeof user, pass, 10), PL_ELIMIT);
    pl_config_unref(cfg);
    const char *none[] = {"turn.auth_secret="};
    cfg = tenv_config(none, 1);
    assert_int_equal(pl_turn_mint_credentials(cfg, "dave", 1000, user, sizeof user, pass, sizeof pass), -ENOENT);
    pl_config_unref(cfg);
}

/* ---- shared state ---- */

static void test_port_pool(void **state)
{
    (void)state;
    pl_turn_shared_t *sh = pl_turn_shared_create(50001, 50010, 600);
    pl_turn_ports_t *p = &sh->ports[0];
    uint16_t port;
    bool seen[10] = {false};
    for (int i = 0; i < 10; i++) {
        assert_int_equal(pl_turn_ports_take(p, (uint32_t)i * 7919u, false, false, &port), 0);
        assert_in_range(port, 50001, 50010);
        assert_false(seen[port - 50001]);
        seen[port - 50001] = true;
    }
    assert_int_equal(pl_turn_ports_take(p, 1, false, false, &port), -ENOSPC);
    assert_int_equal(pl_turn_ports_in_use(p), 10);
    for (uint16_t q = 50001; q <= 50010; q++)
        pl_turn_ports_release(p, q);
    /* Even ports and even/odd pairs: 50002..50010 holds 4 pairs (50010 has no +1). */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pl_turn_ports_take(p, (uint32_t)i, true, true, &port), 0);
        assert_int_equal(port % 2, 0);
        assert_true(port < 50010);
    }
    assert_int_equal(pl_turn_ports_take(p, 0, true, true, &port), -ENOSPC);
    assert_int_equal(pl_turn_ports_take(p, 0, true, false, &port), 0);
    assert_int_equal(port, 50010);
    assert_int_equal(pl_turn_ports_take_one(p, 50010), -EBUSY);
    assert_int_equal(pl_turn_ports_take_one(p, 60000), -EBUSY);
    assert_int_equal(pl_turn_ports_in_use(&sh->ports[1]), 0);   /* families are separate */
    pl_turn_shared_destroy(sh);
}

typedef struct race {
    pl_turn_shared_t *sh;
    uint16_t got[2000];
    int n;
} race_t;

static void *race_thread(void *arg)
{
    race_t *r = arg;
    uint16_t port;
    for (uint32_t i = 0; pl_turn_ports_take(&r->sh->ports[0], i * 2654435761u, false, false, &port) == 0; i++)
        r->got[r->n++] = port;
    return NULL;
}

static void test_port_pool_threads(void **state)
{
    (void)state;
    /* Two threads drain a 2000-port pool: every port handed out exactly once. */
    pl_turn_shared_t *sh = pl_turn_shared_create(30000, 31999, 600);
    static race_t a, b;
    a.sh = b.sh = sh;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, race_thread, &a);
    pthread_create(&tb, NULL, race_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.n + b.n, 2000);
    static uint8_t count[2000];
    for (int i = 0; i < a.n; i++)
        count[a.got[i] - 30000]++;
    for (int i = 0; i < b.n; i++)
        count[b.got[i] - 30000]++;
    for (int i = 0; i < 2000; i++)
        assert_int_equal(count[i], 1);
    pl_turn_shared_destroy(sh);
}

static void test_quota_counts(void **state)
{
    (void)state;
    pl_turn_shared_t *sh = pl_turn_shared_create(50000, 50001, 600);
    char name[32];
    /* Many users: the table grows; counts survive. */
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "user%d", i);
        assert_int_equal(pl_turn_quota_acquire(sh, name, 2, 0), 0);
    }
    assert_int_equal(pl_turn_quota_acquire(sh, "user7", 2, 0), 0);
    assert_int_equal(pl_turn_quota_acquire(sh, "user7", 2, 0), -EDQUOT);
    assert_int_equal(pl_turn_quota_user(sh, "user7"), 2);
    assert_int_equal(pl_turn_quota_acquire(sh, "newbie", 0, 1001), -ENOSPC);
    pl_turn_quota_release(sh, "user7");
    assert_int_equal(pl_turn_quota_acquire(sh, "newbie", 0, 1001), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "user%d", i);
        pl_turn_quota_release(sh, name);
    }
    assert_int_equal(pl_turn_quota_user(sh, "user7"), 0);
    assert_int_equal(pl_turn_quota_user(sh, "user8"), 0);
    pl_turn_quota_release(sh, "newbie");
    pl_turn_quota_release(sh, "never-seen");        /* harmless */
    assert_int_equal(sh->total, 0);
    pl_turn_shared_destroy(sh);
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void test_reservations(void **state)
{
    (void)state;
    pl_turn_shared_t *sh = pl_turn_shared_create(50000, 50009, 600);
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    assert_int_equal(pl_turn_ports_take_one(&sh->ports[0], 50005), 0);
    pl_turn_resv_item_t in = { 42, 0, 50005, p[0] }, out = { .token = 43 };
    assert_int_equal(pl_turn_resv_add(sh, &in, 1000), 0);
    assert_int_equal(pl_turn_resv_take(sh, 1000, &out), -ENOENT);
    out.token = 42;
    assert_int_equal(pl_turn_resv_take(sh, 1000 + PL_TURN_RESERVATION_MS - 1, &out), 0);
    assert_int_equal(out.port, 50005);
    assert_int_equal(out.fam_idx, 0);
    assert_int_equal(out.hold_fd, p[0]);          /* the taker closes the hold */
    assert_true(fd_open(p[0]));
    close(out.hold_fd);
    assert_int_equal(pl_turn_resv_take(sh, 1000, &out), -ENOENT);   /* used */
    assert_int_equal(pl_turn_ports_in_use(&sh->ports[0]), 1);  /* the taker owns it now */
    pl_turn_ports_release(&sh->ports[0], 50005);
    /* Expiry releases the port and closes the hold. */
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    assert_int_equal(pl_turn_ports_take_one(&sh->ports[1], 50006), 0);
    pl_turn_resv_item_t in2 = { 7, 1, 50006, p[0] };
    assert_int_equal(pl_turn_resv_add(sh, &in2, 1000), 0);
    pl_turn_resv_sweep(sh, 1000 + PL_TURN_RESERVATION_MS);
    assert_int_equal(pl_turn_ports_in_use(&sh->ports[1]), 0);
    assert_false(fd_open(p[0]));
    out.token = 7;
    assert_int_equal(pl_turn_resv_take(sh, 1000, &out), -ENOENT);
    /* A reservation without a hold, and one left when the table goes (closed then). */
    pl_turn_resv_item_t in3 = { 8, 0, 50007, -1 };
    assert_int_equal(pl_turn_ports_take_one(&sh->ports[0], 50007), 0);
    assert_int_equal(pl_turn_resv_add(sh, &in3, 1000), 0);
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    pl_turn_resv_item_t in4 = { 9, 0, 50009, p[0] };
    assert_int_equal(pl_turn_ports_take_one(&sh->ports[0], 50009), 0);
    assert_int_equal(pl_turn_resv_add(sh, &in4, 1000), 0);
    out.token = 8;
    assert_int_equal(pl_turn_resv_take(sh, 1000, &out), 0);
    assert_int_equal(out.hold_fd, -1);
    pl_turn_shared_destroy(sh);
    assert_false(fd_open(p[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_settings_defaults),
        cmocka_unit_test(test_external_ip_private_mapping),
        cmocka_unit_test(test_mint_credentials),
        cmocka_unit_test(test_port_pool),
        cmocka_unit_test(test_port_pool_threads),
        cmocka_unit_test(test_quota_counts),
        cmocka_unit_test(test_reservations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
