/* test_turn_policy.c: the peer-address policy: every built-in denied range (and the
 * IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms), the server's own addresses,
 * turn.denied_peers and the turn.allowed_peers override. */
#include "turn_fake.h"

static bool allowed(const pl_turn_settings_t *s, const char *ip)
{
    pl_sockaddr_t a;
    if (pl_ipaddr_parse(ip, &a) != 0)
        fail_msg("bad test address %s", ip);
    return pl_turn_peer_allowed(s, &a);
}

static pl_turn_settings_t *settings(const char *const *ov, size_t n)
{
    pl_config_t *cfg = tenv_config(ov, n);
    pl_turn_settings_t *s;
    pl_config_error_t err;
    assert_int_equal(pl_turn_settings_build(cfg, &s, &err), 0);
    pl_config_unref(cfg);
    return s;
}

static void test_builtin_denied_ranges(void **state)
{
    (void)state;
    pl_turn_settings_t *s = settings(NULL, 0);
    static const char *const denied[] = {
        "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.255",
        "127.0.0.1", "127.255.0.1", "169.254.169.254", "172.16.0.1", "172.31.255.255",
        "192.0.0.8", "192.168.0.1", "192.168.255.255", "198.18.0.1", "198.19.255.255",
        "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
        "::", "::1", "::2", "::a00:1", "100::1", "fc00::1", "fd12:3456::1", "fe80::1",
        "febf::1", "fec0::1", "ff02::1", "ff0e::1",
        /* IPv4 carried in IPv6 */
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:192.168.1.1", "::ffff:0.0.0.0",
        "::ffff:169.254.169.254", "::ffff:224.0.0.1", "64:ff9b::a00:1", "64:ff9b::7f00:1",
        "2002:7f00:1::1", "2002:c0a8:101::1",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(denied); i++)
        if (allowed(s, denied[i]))
            fail_msg("%s is allowed", denied[i]);
    static const char *const ok[] = {
        "8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
        "192.167.255.255", "192.169.0.0", "203.0.113.10", "223.255.255.255",
        "2001:db8::1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(ok); i++)
        if (!allowed(s, ok[i]))
            fail_msg("%s is refused", ok[i]);
    pl_turn_settings_unref(s);
}

static void test_own_addresses_denied(void **state)
{
    (void)state;
    const char *ov[] = {"turn.listen=203.0.113.1:3478", "turn.external_ip=198.51.100.1/203.0.113.1",
                        "turn.allowed_peers=", "turn.relay_ip=203.0.113.2"};
    pl_turn_settings_t *s = settings(ov, PL_ARRAY_LEN(ov));
    assert_false(allowed(s, "203.0.113.1"));        /* listen */
    assert_false(allowed(s, "203.0.113.2"));        /* relay */
    assert_false(allowed(s, "198.51.100.1"));       /* external */
    assert_false(allowed(s, "::ffff:203.0.113.1"));
    assert_true(allowed(s, "203.0.113.3"));
    pl_turn_settings_unref(s);
}

static void test_denied_and_allowed_lists(void **state)
{
    (void)state;
    const char *ov[] = {"turn.denied_peers=203.0.113.0/24,2001:db8::/32",
                        "turn.allowed_peers=127.0.0.1,10.1.0.0/16,203.0.113.7,fd00::/8"};
    pl_turn_settings_t *s = settings(ov, PL_ARRAY_LEN(ov));
    assert_false(allowed(s, "203.0.113.1"));
    assert_false(allowed(s, "::ffff:203.0.113.1"));
    assert_false(allowed(s, "2001:db8:1::1"));
    assert_true(allowed(s, "203.0.113.7"));         /* allowed wins over denied */
    assert_true(allowed(s, "127.0.0.1"));           /* ... over the built-ins */
    assert_true(allowed(s, "::ffff:127.0.0.1"));
    assert_false(allowed(s, "127.0.0.2"));
    assert_true(allowed(s, "10.1.2.3"));
    assert_false(allowed(s, "10.2.0.1"));
    assert_true(allowed(s, "fd00::1"));
    assert_false(allowed(s, "fc00::1"));
    assert_true(allowed(s, "8.8.4.4"));
    pl_turn_settings_unref(s);
}

static void test_not_an_ip_family(void **state)
{
    (void)state;
    pl_turn_settings_t *s = settings(NULL, 0);
    pl_sockaddr_t a;
    memset(&a, 0, sizeof a);
    a.sa.sa_family = AF_UNIX;
    assert_false(pl_turn_peer_allowed(s, &a));
    assert_true(pl_turn_peer_builtin_denied(&a));
    pl_turn_settings_unref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_denied_ranges),
        cmocka_unit_test(test_own_addresses_denied),
        cmocka_unit_test(test_denied_and_allowed_lists),
        cmocka_unit_test(test_not_an_ip_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
