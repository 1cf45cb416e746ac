/* frame.c: the parley.v1 frame codec: envelope checks, per-type field validation
 * tables, error codes, and building result/error frames (docs/PROTOCOL.md).
 *
 * What it does not do: I/O, logging, dispatch (gateway), knowledge of any frame type.
 * Total on any input: every byte sequence yields a frame or a verdict.
 *
 * Threading: pure functions; any thread. */
#include "signaling/sig_int.h"

#include <stdio.h>
#include <string.h>

static const char *const err_codes[PL_SIG_ERR_COUNT] = {
    [PL_SIG_ERR_NONE] = "none",
    [PL_SIG_ERR_BAD_JSON] = "bad_json",
    [PL_SIG_ERR_BAD_FRAME] = "bad_frame",
    [PL_SIG_ERR_UNKNOWN_TYPE] = "unknown_type",
    [PL_SIG_ERR_BAD_FIELD] = "bad_field",
    [PL_SIG_ERR_AUTH_REQUIRED] = "auth_required",
    [PL_SIG_ERR_AUTH_FAILED] = "auth_failed",
    [PL_SIG_ERR_ALREADY_AUTHENTICATED] = "already_authenticated",
    [PL_SIG_ERR_RATE_LIMITED] = "rate_limited",
    [PL_SIG_ERR_NOT_FOUND] = "not_found",
    [PL_SIG_ERR_BAD_CREDENTIALS] = "bad_credentials",
    [PL_SIG_ERR_USERNAME_TAKEN] = "username_taken",
    [PL_SIG_ERR_TOO_MANY_DEVICES] = "too_many_devices",
    [PL_SIG_ERR_BUSY] = "busy",
    [PL_SIG_ERR_INTERNAL] = "internal",
    [PL_SIG_ERR_OTHER] = "other",
};

const char *pl_sig_err_code(pl_sig_err_t e)
{
    return (unsigned)e < PL_SIG_ERR_COUNT ? err_codes[e] : "other";
}

pl_sig_err_t pl_sig_err_from_code(const char *code)
{
    for (int i = 1; i < PL_SIG_ERR_OTHER; i++)
        if (strcmp(err_codes[i], code) == 0)
            return (pl_sig_err_t)i;
    return PL_SIG_ERR_OTHER;
}

bool pl_sig_err_is_abuse(pl_sig_err_t e)
{
    switch (e) {
    case PL_SIG_ERR_BAD_JSON:
    case PL_SIG_ERR_BAD_FRAME:
    case PL_SIG_ERR_UNKNOWN_TYPE:
    case PL_SIG_ERR_BAD_FIELD:
    case PL_SIG_ERR_AUTH_REQUIRED:
    case PL_SIG_ERR_ALREADY_AUTHENTICATED:
    case PL_SIG_ERR_RATE_LIMITED:
        return true;
    default:
        return false;
    }
}

static int fail(pl_sig_verdict_t *v, pl_sig_err_t err, const char *prefix, const char *text)
{
    v->err = err;
    snprintf(v->message, sizeof(v->message), "%s%s", prefix, text);
    return -1;
}

static bool type_chars_ok(const char *s, size_t len)
{
    if (len == 0 || len > PL_SIG_TYPE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static int check_envelope(json_t *frame, const char **type, json_t **id, pl_sig_verdict_t *v)
{
    if (!json_is_object(frame))
        return fail(v, PL_SIG_ERR_BAD_FRAME, "", "a frame must be a JSON object");
    json_t *jid = json_object_get(frame, "id");
    if (jid && !(json_is_integer(jid) ||
                 (json_is_string(jid) && json_string_length(jid) <= PL_SIG_ID_MAX)))
        return fail(v, PL_SIG_ERR_BAD_FRAME, "",
                    "\"id\" must be an integer or a string of at most 128 bytes");
    *id = jid;
    json_t *jtype = json_object_get(frame, "type");
    if (!json_is_string(jtype))
        return fail(v, PL_SIG_ERR_BAD_FRAME, "", "\"type\" must be a string");
    if (!type_chars_ok(json_string_value(jtype), json_string_length(jtype)))
        return fail(v, PL_SIG_ERR_BAD_FRAME, "",
                    "\"type\" must be 1-64 characters of a-z, 0-9, '_' and '.'");
    *type = json_string_value(jtype);
    return 0;
}

json_t *pl_sig_frame_parse(const char *data, size_t len, const char **type, json_t **id,
                           pl_sig_verdict_t *v)
{
    json_error_t jerr;
    *type = NULL;
    *id = NULL;
    v->err = PL_SIG_ERR_NONE;
    v->message[0] = '\0';
    /* Duplicate keys are rejected: two "type" members would let a proxy and the
     * server disagree about what a frame is. */
    json_t *frame = pl_sig_json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!frame) {
        fail(v, PL_SIG_ERR_BAD_JSON, "invalid JSON: ", jerr.text);
        return NULL;
    }
    if (check_envelope(frame, type, id, v) < 0) {
        json_decref(frame);
        *type = NULL;
        *id = NULL;
        return NULL;
    }
    return frame;
}

static const char *type_name(pl_sig_ftype_t t)
{
    switch (t) {
    case PL_SIG_T_STRING: return "a string";
    case PL_SIG_T_INT: return "an integer";
    case PL_SIG_T_ID: return "a positive integer id";
    case PL_SIG_T_BOOL: return "a boolean";
    case PL_SIG_T_OBJECT: return "an object";
    case PL_SIG_T_ARRAY: return "an array";
    }
    return "?";
}

static bool range_ok(int64_t v, int64_t min, int64_t max)
{
    if (min == 0 && max == 0)
        return true;
    return v >= min && v <= max;
}

/* Returns NULL when value fits field, else a reason suffix. */
static const char *check_value(const pl_sig_field_t *f, const json_t *val)
{
    switch (f->type) {
    case PL_SIG_T_STRING: {
        if (!json_is_string(val))
            return "wrong type";
        size_t n = json_string_length(val);
        if (strlen(json_string_value(val)) != n)
            return "contains NUL";
        if (f->max && (int64_t)n > f->max)
            return "too long";
        if ((int64_t)n < f->min)
            return "too short";
        return NULL;
    }
    case PL_SIG_T_INT:
        if (!json_is_integer(val))
            return "wrong type";
        return range_ok(json_integer_value(val), f->min, f->max) ? NULL : "out of range";
    case PL_SIG_T_ID:
        if (!json_is_integer(val))
            return "wrong type";
        return range_ok(json_integer_value(val), 1, (INT64_C(1) << 53) - 1) ? NULL
                                                                             : "out of range";
    case PL_SIG_T_BOOL:
        return json_is_boolean(val) ? NULL : "wrong type";
    case PL_SIG_T_OBJECT:
        return json_is_object(val) ? NULL : "wrong type";
    case PL_SIG_T_ARRAY:
        if (!json_is_array(val))
            return "wrong type";
        return f->max && (int64_t)json_array_size(val) > f->max ? "too many items" : NULL;
    }
    return "wrong type";
}

int pl_sig_frame_validate(const json_t *frame, const pl_sig_field_t *fields, size_t n,
                          pl_sig_verdict_t *v)
{
    for (size_t i = 0; i < n; i++) {
        const pl_sig_field_t *f = &fields[i];
        const json_t *val = json_object_get(frame, f->name);
        if (!val || json_is_null(val)) {
            if (!f->required)
                continue;
            v->err = PL_SIG_ERR_BAD_FIELD;
            snprintf(v->message, sizeof(v->message), "missing field \"%s\" (%s)", f->name,
                     type_name(f->type));
            return -1;
        }
        const char *why = check_value(f, val);
        if (why) {
            v->err = PL_SIG_ERR_BAD_FIELD;
            if (f->type == PL_SIG_T_STRING && f->max)
                snprintf(v->message, sizeof(v->message),
                         "field \"%s\": %s (%s of %lld-%lld bytes)", f->name, why,
                         type_name(f->type), (long long)f->min, (long long)f->max);
            else if (f->type == PL_SIG_T_INT && (f->min || f->max))
                snprintf(v->message, sizeof(v->message), "field \"%s\": %s (%s in %lld..%lld)",
                         f->name, why, type_name(f->type), (long long)f->min,
                         (long long)f->max);
            else
                snprintf(v->message, sizeof(v->message), "field \"%s\": %s (%s)", f->name,
                         why, type_name(f->type));
            return -1;
        }
    }
    return 0;
}

json_t *pl_sig_frame_make(const char *type, json_t *id, json_t *fields)
{
    json_t *f = json_object();
    json_object_set_new(f, "type", json_string(type));
    if (id)
        json_object_set(f, "id", id);
    if (fields) {
        const char *k;
        json_t *val;
        json_object_foreach(fields, k, val) {
            if (strcmp(k, "type") != 0 && strcmp(k, "id") != 0)
                json_object_set(f, k, val);
        }
        json_decref(fields);
    }
    return f;
}

/* A JSON string of s; bytes that would make it invalid UTF-8 become '?' (messages may
 * quote a parser's view of client bytes). */
static json_t *safe_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char buf[256];
    size_t i = 0;
    for (; s[i] && i < sizeof(buf) - 1; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    buf[i] = '\0';
    return json_string(buf);
}

json_t *pl_sig_frame_error(json_t *id, const char *code, const char *message)
{
    json_t *f = json_object();
    json_object_set_new(f, "type", json_string("error"));
    if (id)
        json_object_set(f, "id", id);
    json_object_set_new(f, "code", safe_string(code));
    json_object_set_new(f, "message", safe_string(message ? message : ""));
    return f;
}
