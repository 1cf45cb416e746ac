/* test_rooms.c: the rooms part's pure pieces: room ids as the SFU takes them, quality
 * names, the room.* field tables (through the gateway's validator: missing, wrong-typed
 * and out-of-range fields refused, good frames accepted), the push type list, and the
 * chat group room ids, the SFU sink dropping events while no gateway is attached. The frames against a running
 * SFU are covered by tests/browser/ (Chromium through parleyd). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "signaling/rooms_int.h"
#include "signaling/sig_int.h"

#include <string.h>

static void test_room_ids(void **state)
{
    PL_UNUSED(state);
    char longest[65], too_long[66];
    memset(longest, 'a', 64);
    longest[64] = '\0';
    memset(too_long, 'b', 65);
    too_long[65] = '\0';
    assert_true(pl_rooms_room_id_ok("room-1"));
    assert_true(pl_rooms_room_id_ok("g42:call_7.x"));
    assert_true(pl_rooms_room_id_ok(longest));
    assert_false(pl_rooms_room_id_ok(too_long));
    assert_false(pl_rooms_room_id_ok(""));
    assert_false(pl_rooms_room_id_ok(NULL));
    assert_false(pl_rooms_room_id_ok("with space"));
    assert_false(pl_rooms_room_id_ok("slash/room"));
    assert_false(pl_rooms_room_id_ok("caf\xc3\xa9"));
}

static void test_group_room_id(void **state)
{
    PL_UNUSED(state);
    char id[PL_ROOMS_ID_MAX + 1];
    pl_rooms_group_room_id(42, id);
    assert_string_equal(id, "g42");
    assert_true(pl_rooms_room_id_ok(id));
    pl_rooms_group_room_id(UINT64_MAX, id);
    assert_string_equal(id, "g18446744073709551615");
    assert_true(pl_rooms_room_id_ok(id));
}

static void test_quality(void **state)
{
    PL_UNUSED(state);
    assert_int_equal(pl_rooms_parse_quality("low"), 0);
    assert_int_equal(pl_rooms_parse_quality("medium"), 1);
    assert_int_equal(pl_rooms_parse_quality("high"), 2);
    assert_int_equal(pl_rooms_parse_quality("HIGH"), -1);
    assert_int_equal(pl_rooms_parse_quality("ultra"), -1);
    assert_int_equal(pl_rooms_parse_quality(""), -1);
    assert_int_equal(pl_rooms_parse_quality(NULL), -1);
}

static const pl_sig_handler_t *handler(const char *type)
{
    for (size_t i = 0; i < pl_rooms_n_handlers; i++)
        if (strcmp(pl_rooms_handlers[i].type, type) == 0)
            return &pl_rooms_handlers[i];
    return NULL;
}

/* 0 when the frame (JSON text) passes the field table of its type. */
static int validate(const char *text)
{
    json_error_t e;
    json_t *f = json_loads(text, 0, &e);
    if (!f)
        fail_msg("bad test JSON %s", text);
    const pl_sig_handler_t *h = handler(json_string_value(json_object_get(f, "type")));
    if (!h)
        fail_msg("no handler for %s", text);
    else
        assert_true(h->requires_auth);
    pl_sig_verdict_t v;
    int rc = h ? pl_sig_frame_validate(f, h->fields, h->n_fields, &v) : 0;
    json_decref(f);
    return rc;
}

static void test_field_tables(void **state)
{
    PL_UNUSED(state);
    assert_int_equal(pl_rooms_n_handlers, 6);
    assert_int_equal(validate("{\"type\":\"room.join\",\"room\":\"r1\"}"), 0);
    assert_int_equal(validate("{\"type\":\"room.join\",\"room\":\"r1\",\"display\":\"Al\"}"), 0);
    /* room and group_id are both optional in the table; the handler wants one. */
    assert_int_equal(validate("{\"type\":\"room.join\"}"), 0);
    assert_int_equal(validate("{\"type\":\"room.join\",\"group_id\":5,\"ring\":true}"), 0);
    assert_int_equal(validate("{\"type\":\"room.join\",\"group_id\":0}"), -1);
    assert_int_equal(validate("{\"type\":\"room.join\",\"group_id\":\"5\"}"), -1);
    assert_int_equal(validate("{\"type\":\"room.join\",\"group_id\":5,\"ring\":1}"), -1);
    assert_int_equal(validate("{\"type\":\"room.join\",\"room\":\"\"}"), -1);
    assert_int_equal(validate("{\"type\":\"room.join\",\"room\":7}"), -1);
    assert_int_equal(validate("{\"type\":\"room.leave\"}"), 0);
    assert_int_equal(validate("{\"type\":\"room.sdp\",\"sdp_type\":\"offer\",\"sdp\":\"v=0\"}"), 0);
    assert_int_equal(validate("{\"type\":\"room.sdp\",\"sdp_type\":\"offer\"}"), -1);
    assert_int_equal(validate("{\"type\":\"room.sdp\",\"sdp_type\":\"offer\",\"sdp\":\"\"}"), -1);
    assert_int_equal(validate("{\"type\":\"room.ice\",\"candidate\":\"\"}"), 0);
    assert_int_equal(validate("{\"type\":\"room.ice\",\"candidate\":{}}"), -1);
    assert_int_equal(validate("{\"type\":\"room.quality\",\"quality\":\"low\",\"publisher\":3}"), 0);
    assert_int_equal(validate("{\"type\":\"room.quality\",\"quality\":\"low\",\"publisher\":0}"), -1);
    assert_int_equal(validate("{\"type\":\"room.quality\"}"), -1);
    assert_int_equal(validate("{\"type\":\"room.mute\",\"kind\":\"audio\",\"muted\":true}"), 0);
    assert_int_equal(validate("{\"type\":\"room.mute\",\"kind\":\"audio\",\"muted\":\"yes\"}"), -1);
    assert_int_equal(validate("{\"type\":\"room.mute\",\"muted\":false}"), -1);
    assert_int_equal(pl_rooms_n_push_types, 2);
    assert_string_equal(pl_rooms_push_types[0], "room.event");
    assert_string_equal(pl_rooms_push_types[1], "room.ring");
}

/* No gateway attached (the part never started): events are dropped, nothing crashes. */
static void test_sink_detached(void **state)
{
    PL_UNUSED(state);
    pl_rooms_sink_send(NULL, 1, "{\"type\":\"sfu.state\",\"state\":\"closed\"}");
    pl_rooms_sink_send(NULL, 0, "{}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_room_ids),
        cmocka_unit_test(test_group_room_id),
        cmocka_unit_test(test_quality),
        cmocka_unit_test(test_field_tables),
        cmocka_unit_test(test_sink_detached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
