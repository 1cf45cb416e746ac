/* test_frame.c: the parley.v1 frame codec: envelope rules on a table of good and bad
 * frames (JSON errors, non-objects, type/id rules, duplicate keys), a validation table
 * per frame type of the accounts handlers (missing, wrong-typed, out-of-range fields),
 * error codes and their abuse classification, and the frames the server builds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "signaling/acct_int.h"

#include <string.h>

typedef struct envelope_case {
    const char *text;
    pl_sig_err_t err;               /* NONE = accepted */
    const char *type;               /* expected type when accepted */
} envelope_case_t;

static const envelope_case_t envelope_cases[] = {
    { "{\"type\":\"ping\"}", PL_SIG_ERR_NONE, "ping" },
    { "{\"type\":\"ping\",\"id\":1}", PL_SIG_ERR_NONE, "ping" },
    { "{\"type\":\"ping\",\"id\":\"a-b\"}", PL_SIG_ERR_NONE, "ping" },
    { "{\"id\":7,\"type\":\"devices.list\",\"extra\":[1,2]}", PL_SIG_ERR_NONE, "devices.list" },
    { "  {\"type\":\"x_y.z9\"}\n", PL_SIG_ERR_NONE, "x_y.z9" },
    { "", PL_SIG_ERR_BAD_JSON, NULL },
    { "{", PL_SIG_ERR_BAD_JSON, NULL },
    { "{\"type\":\"ping\"} trailing", PL_SIG_ERR_BAD_JSON, NULL },
    { "{\"type\":\"ping\",\"type\":\"auth\"}", PL_SIG_ERR_BAD_JSON, NULL },  /* duplicate key */
    { "not json", PL_SIG_ERR_BAD_JSON, NULL },
    { "{\"type\":\"auth\",\"token\":\"a\\u0000b\"}", PL_SIG_ERR_BAD_JSON, NULL },
    { "[1,2,3]", PL_SIG_ERR_BAD_FRAME, NULL },
    { "\"ping\"", PL_SIG_ERR_BAD_FRAME, NULL },
    { "42", PL_SIG_ERR_BAD_FRAME, NULL },
    { "null", PL_SIG_ERR_BAD_FRAME, NULL },
    { "{}", PL_SIG_ERR_BAD_FRAME, NULL },
    { "{\"type\":5}", PL_SIG_ERR_BAD_FRAME, NULL },
    { "{\"type\":null}", PL_SIG_ERR_BAD_FRAME, NULL },
    { "{\"type\":\"\"}", PL_SIG_ERR_BAD_FRAME, NULL },
    { "{\"type\":\"Ping\"}", PL_SIG_ERR_BAD_FRAME, NULL },
    { "{\"type\":\"a b\"}", PL_SIG_ERR_BAD_FRAME, NULL },
    { "{\"type\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
      PL_SIG_ERR_BAD_FRAME, NULL },                                         /* 65 chars */
    { "{\"type\":\"ping\",\"id\":1.5}", PL_SIG_ERR_BAD_FRAME, NULL },
    { "{\"type\":\"ping\",\"id\":true}", PL_SIG_ERR_BAD_FRAME, NULL },
    { "{\"type\":\"ping\",\"id\":{}}", PL_SIG_ERR_BAD_FRAME, NULL },
    { "{\"type\":\"ping\",\"id\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
      PL_SIG_ERR_BAD_FRAME, NULL },                                         /* 131-byte id */
};

static void test_envelope_table(void **state)
{
    PL_UNUSED(state);
    for (size_t i = 0; i < PL_ARRAY_LEN(envelope_cases); i++) {
        const envelope_case_t *c = &envelope_cases[i];
        const char *type = "unset";
        json_t *id = NULL;
        pl_sig_verdict_t v;
        json_t *f = pl_sig_frame_parse(c->text, strlen(c->text), &type, &id, &v);
        if (c->err == PL_SIG_ERR_NONE) {
            if (!f)
                fail_msg("case %zu rejected: %s", i, v.message);
            assert_string_equal(type, c->type);
            json_decref(f);
        } else {
            if (f)
                fail_msg("case %zu accepted: %s", i, c->text);
            assert_int_equal(v.err, c->err);
            assert_true(v.message[0] != '\0');
            assert_null(type);
        }
    }
}

static void test_embedded_nul_and_invalid_utf8(void **state)
{
    PL_UNUSED(state);
    const char *type;
    json_t *id;
    pl_sig_verdict_t v;
    static const char nul[] = "{\"type\":\"ping\"\0}";
    assert_null(pl_sig_frame_parse(nul, sizeof(nul) - 1, &type, &id, &v));
    assert_int_equal(v.err, PL_SIG_ERR_BAD_JSON);
    static const char bad_utf8[] = "{\"type\":\"ping\",\"x\":\"\xff\xfe\"}";
    assert_null(pl_sig_frame_parse(bad_utf8, sizeof(bad_utf8) - 1, &type, &id, &v));
    assert_int_equal(v.err, PL_SIG_ERR_BAD_JSON);
    /* The error frame for it is still valid JSON (the message is sanitised). */
    json_t *e = pl_sig_frame_error(NULL, "bad_json", "near '\xff'");
    char *text = json_dumps(e, JSON_COMPACT);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"message\":\"near '?'\""));
    free(text);
    json_decref(e);
}

/* ---- per-type validation ---------------------------------------------------------- */

typedef struct vcase {
    const char *text;
    bool ok;
    const char *mention;            /* substring of the message when rejected */
} vcase_t;

static const vcase_t vcases[] = {
    /* auth: token string 1..256 */
    { "{\"type\":\"auth\",\"token\":\"abc\"}", true, NULL },
    { "{\"type\":\"auth\"}", false, "missing field \"token\"" },
    { "{\"type\":\"auth\",\"token\":null}", false, "missing field \"token\"" },
    { "{\"type\":\"auth\",\"token\":42}", false, "\"token\": wrong type" },
    { "{\"type\":\"auth\",\"token\":\"\"}", false, "too short" },
    /* devices.revoke: device_id positive integer */
    { "{\"type\":\"devices.revoke\",\"device_id\":3}", true, NULL },
    { "{\"type\":\"devices.revoke\",\"device_id\":9007199254740991}", true, NULL },
    { "{\"type\":\"devices.revoke\",\"device_id\":9007199254740992}", false, "out of range" },
    { "{\"type\":\"devices.revoke\",\"device_id\":0}", false, "out of range" },
    { "{\"type\":\"devices.revoke\",\"device_id\":-1}", false, "out of range" },
    { "{\"type\":\"devices.revoke\",\"device_id\":\"3\"}", false, "wrong type" },
    { "{\"type\":\"devices.revoke\",\"device_id\":3.0}", false, "wrong type" },
    { "{\"type\":\"devices.revoke\"}", false, "missing field \"device_id\"" },
    /* profile.get: optional username */
    { "{\"type\":\"profile.get\"}", true, NULL },
    { "{\"type\":\"profile.get\",\"username\":\"bob\"}", true, NULL },
    { "{\"type\":\"profile.get\",\"username\":[]}", false, "\"username\": wrong type" },
    /* profile.update: optional strings with limits */
    { "{\"type\":\"profile.update\",\"display_name\":\"Bob\"}", true, NULL },
    { "{\"type\":\"profile.update\",\"about\":\"\"}", true, NULL },
    { "{\"type\":\"profile.update\",\"display_name\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxx\"}", false, "too long" },                /* 65 bytes */
    { "{\"type\":\"profile.update\",\"avatar\":false}", false, "\"avatar\": wrong type" },
    /* frames without fields accept anything extra */
    { "{\"type\":\"ping\",\"whatever\":{\"a\":1}}", true, NULL },
    { "{\"type\":\"devices.list\",\"id\":\"q1\"}", true, NULL },
    { "{\"type\":\"logout\"}", true, NULL },
};

static const pl_sig_handler_t *handler_for(const char *type)
{
    for (size_t i = 0; i < pl_sig_acct_n_handlers; i++)
        if (strcmp(pl_sig_acct_handlers[i].type, type) == 0)
            return &pl_sig_acct_handlers[i];
    return NULL;
}

static void check_case(size_t i, const vcase_t *c, int rc, const pl_sig_verdict_t *v)
{
    if (c->ok && rc != 0)
        fail_msg("case %zu rejected: %s", i, v->message);
    if (!c->ok) {
        if (rc == 0)
            fail_msg("case %zu accepted: %s", i, c->text);
        assert_int_equal(v->err, PL_SIG_ERR_BAD_FIELD);
        if (!strstr(v->message, c->mention))
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, v->message, c->mention);
    }
}

static void test_validation_tables(void **state)
{
    PL_UNUSED(state);
    for (size_t i = 0; i < PL_ARRAY_LEN(vcases); i++) {
        const vcase_t *c = &vcases[i];
        const char *type;
        json_t *id;
        pl_sig_verdict_t v;
        json_t *f = pl_sig_frame_parse(c->text, strlen(c->text), &type, &id, &v);
        if (!f)
            fail_msg("case %zu did not parse: %s", i, v.message);
        const pl_sig_handler_t *h = handler_for(type);
        if (!h)
            fail_msg("case %zu: no handler for %s", i, type);
        else {
            int rc = pl_sig_frame_validate(f, h->fields, h->n_fields, &v);
            check_case(i, c, rc, &v);
        }
        json_decref(f);
    }
}

static void test_int_range_field(void **state)
{
    PL_UNUSED(state);
    static const pl_sig_field_t f[] = {
        { "n", PL_SIG_T_INT, true, -5, 5 },
        { "flag", PL_SIG_T_BOOL, false, 0, 0 },
        { "list", PL_SIG_T_ARRAY, false, 0, 2 },
        { "obj", PL_SIG_T_OBJECT, false, 0, 0 },
    };
    static const struct { const char *text; bool ok; } cases[] = {
        { "{\"n\":-5}", true }, { "{\"n\":5}", true }, { "{\"n\":6}", false },
        { "{\"n\":-6}", false }, { "{\"n\":0,\"flag\":true}", true },
        { "{\"n\":0,\"flag\":1}", false }, { "{\"n\":0,\"list\":[1,2]}", true },
        { "{\"n\":0,\"list\":[1,2,3]}", false }, { "{\"n\":0,\"obj\":[]}", false },
        { "{\"n\":0,\"obj\":{}}", true }, { "{}", false },
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        json_t *o = json_loads(cases[i].text, 0, NULL);
        pl_sig_verdict_t v;
        int rc = pl_sig_frame_validate(o, f, PL_ARRAY_LEN(f), &v);
        if ((rc == 0) != cases[i].ok)
            fail_msg("case %zu (%s): rc %d %s", i, cases[i].text, rc, v.message);
        json_decref(o);
    }
}

static void test_error_codes(void **state)
{
    PL_UNUSED(state);
    for (int i = 1; i < PL_SIG_ERR_OTHER; i++)
        assert_int_equal(pl_sig_err_from_code(pl_sig_err_code((pl_sig_err_t)i)), i);
    assert_int_equal(pl_sig_err_from_code("call_not_found"), PL_SIG_ERR_OTHER);
    assert_true(pl_sig_err_is_abuse(PL_SIG_ERR_BAD_JSON));
    assert_true(pl_sig_err_is_abuse(PL_SIG_ERR_UNKNOWN_TYPE));
    assert_true(pl_sig_err_is_abuse(PL_SIG_ERR_RATE_LIMITED));
    assert_false(pl_sig_err_is_abuse(PL_SIG_ERR_NOT_FOUND));
    assert_false(pl_sig_err_is_abuse(PL_SIG_ERR_INTERNAL));
}

static void test_builders(void **state)
{
    PL_UNUSED(state);
    json_t *id = json_string("r1");
    json_t *f = pl_sig_frame_make("ping.result", id,
                                  json_pack("{s:i,s:s,s:s}", "time_ms", 5, "type", "evil",
                                            "id", "evil"));
    char *s = json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS);
    /* The builder's type and id win over same-named result fields. */
    assert_string_equal(s, "{\"id\":\"r1\",\"time_ms\":5,\"type\":\"ping.result\"}");
    free(s);
    json_decref(f);
    f = pl_sig_frame_error(id, "bad_field", "field \"x\"");
    s = json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"code\":\"bad_field\",\"id\":\"r1\",\"message\":\"field \\\"x\\\"\","
                           "\"type\":\"error\"}");
    free(s);
    json_decref(f);
    f = pl_sig_frame_error(NULL, "internal", NULL);
    assert_null(json_object_get(f, "id"));
    json_decref(f);
    json_decref(id);
}

static void test_username_rules(void **state)
{
    PL_UNUSED(state);
    char out[PL_SIG_USERNAME_MAX + 1];
    assert_true(pl_sig_username_normalize("Alice_1", out));
    assert_string_equal(out, "alice_1");
    assert_true(pl_sig_username_normalize("b.o-b", out));
    assert_false(pl_sig_username_normalize("ab", out));
    assert_false(pl_sig_username_normalize("_alice", out));
    assert_false(pl_sig_username_normalize("al ice", out));
    assert_false(pl_sig_username_normalize("al\xc3\xa9", out));
    assert_false(pl_sig_username_normalize("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", out));  /* 33 */
    assert_true(pl_sig_text_ok("My phone"));
    assert_false(pl_sig_text_ok("a\nb"));
    assert_true(pl_sig_asset_id_ok("blob:ab12-x.png"));
    assert_false(pl_sig_asset_id_ok("../etc/passwd/x y"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_table),
        cmocka_unit_test(test_embedded_nul_and_invalid_utf8),
        cmocka_unit_test(test_validation_tables),
        cmocka_unit_test(test_int_range_field),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_builders),
        cmocka_unit_test(test_username_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
