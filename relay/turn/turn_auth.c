/* turn_auth.c: the long-term credential mechanism on the server side (RFC 8489 §9.2.4)
 * for TURN requests: challenge (401 with REALM, NONCE, PASSWORD-ALGORITHMS), stale or
 * foreign nonces (438), static users (turn.users, by USERNAME or USERHASH) and TURN
 * REST credentials (turn.auth_secret, several secrets for rotation), MESSAGE-INTEGRITY
 * and MESSAGE-INTEGRITY-SHA256 with MD5 or SHA-256 keys.
 *
 * Nonces are stateless (pl_stun_nonce_*): bound to the client IP and stamped with the
 * time, so any relay thread can check any nonce. A nonce that is not ours (altered,
 * another IP, issued before a restart) gets 438 like a stale one: the client retries
 * once with the fresh nonce, where a 401 would make many clients give up.
 *
 * What it does not: the allocation's 441 (Wrong Credentials) check, which needs the
 * allocation (turn_perm.c), and the ALTERNATE-SERVER decision.
 *
 * Threading: the server's thread. */
#include "relay/turn/turn_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const uint16_t pw_algs[] = {PL_STUN_PWALG_MD5, PL_STUN_PWALG_SHA256};

static pl_stun_nonce_key_t nonce_key(const pl_turn_server_t *s)
{
    pl_stun_nonce_key_t k = s->shared->nonce_key;
    k.lifetime_s = s->set->nonce_lifetime_s;
    return k;
}

/* Sends 401 or 438 with REALM, NONCE and PASSWORD-ALGORITHMS (RFC 8489 §9.2.4), or
 * 400, all without integrity, unless the source is over its unauthenticated rate. */
static int challenge(pl_turn_server_t *s, const pl_turn_conn_t *conn, const pl_stun_msg_t *m,
                     int code)
{
    if (!pl_turn_rate_ok(s, conn, pl_turn_now_ms(s)))
        return code;
    pl_turn_reply_t r;
    pl_turn_reply_start(s, &r, m, PL_STUN_CLASS_ERROR, NULL);
    pl_stun_add_error(&r.b, code, NULL);
    if (code == 401 || code == 438) {
        char nonce[PL_STUN_NONCE_LEN + 1];
        pl_stun_nonce_key_t k = nonce_key(s);
        if (pl_stun_nonce_make(&k, s->io->wall_s(s->io_ctx), &conn->client, nonce) < 0)
            return code;
        pl_stun_add_str(&r.b, PL_STUN_ATTR_REALM, s->set->realm);
        pl_stun_add_str(&r.b, PL_STUN_ATTR_NONCE, nonce);
        pl_stun_add_password_algorithms(&r.b, pw_algs, PL_ARRAY_LEN(pw_algs));
    }
    pl_turn_reply_send(s, &r, conn, code);
    return code;
}

static int fail(pl_turn_server_t *s, const pl_turn_conn_t *conn, const pl_stun_msg_t *m,
                int code, pl_turn_authfail_t why)
{
    pl_metric_inc(s->shard, s->mid->authfail[why]);
    char peer[PL_SOCKADDR_STRLEN];
    pl_log_debug("turn.auth.failed", "client=%s reason=%s code=%d",
                 pl_sockaddr_str(&conn->client, peer, sizeof peer),
                 pl_turn_authfail_names[why], code);
    return challenge(s, conn, m, code);
}

/* RFC 8489 §9.2.4: with our nonce cookie advertising PASSWORD-ALGORITHMS, a request
 * that names algorithms must echo our list and pick one from it. Neither attribute
 * (an RFC 5389 client) means MD5. Returns the algorithm or 0 when the check fails. */
static uint16_t pick_algorithm(const pl_stun_msg_t *m)
{
    uint16_t algs[8], alg = 0;
    size_t n = 0;
    bool has_list = pl_stun_has(m, PL_STUN_ATTR_PASSWORD_ALGORITHMS);
    bool has_alg = pl_stun_get_password_algorithm(m, &alg) == 0;
    if (!has_list && !has_alg)
        return PL_STUN_PWALG_MD5;
    if (!has_list || !has_alg ||
        pl_stun_get_password_algorithms(m, algs, PL_ARRAY_LEN(algs), &n) != 0 ||
        n != PL_ARRAY_LEN(pw_algs) || memcmp(algs, pw_algs, sizeof pw_algs) != 0)
        return 0;
    return (alg == PL_STUN_PWALG_MD5 || alg == PL_STUN_PWALG_SHA256) ? alg : 0;
}

/* Copies an attribute that must be printable text into a C string. */
static bool copy_text(char *dst, size_t cap, const uint8_t *v, size_t len)
{
    if (len == 0 || len >= cap)
        return false;
    for (size_t i = 0; i < len; i++)
        if (v[i] < 0x20 || v[i] == 0x7F)
            return false;
    memcpy(dst, v, len);
    dst[len] = '\0';
    return true;
}

static void set_quota_user(pl_turn_auth_t *out, bool rest)
{
    const char *colon = rest ? strchr(out->user, PL_TURN_REST_SEP) : NULL;
    /* REST usernames change with every expiry: the quota counts the user part. */
    snprintf(out->quota_user, sizeof out->quota_user, "%s", colon ? colon + 1 : out->user);
}

/* Finds the key for a static user (by USERNAME or USERHASH). Returns 0, or -ENOENT. */
static int static_key(pl_turn_server_t *s, const pl_stun_msg_t *m, uint16_t alg,
                      pl_turn_auth_t *out)
{
    const uint8_t *v;
    size_t len;
    const pl_turn_user_t *u = NULL;
    if (pl_stun_get_bytes(m, PL_STUN_ATTR_USERHASH, &v, &len) == 0 && len == 32)
        u = pl_turn_settings_userhash(s->set, v);
    else if (pl_stun_get_bytes(m, PL_STUN_ATTR_USERNAME, &v, &len) == 0)
        u = pl_turn_settings_user(s->set, v, len);
    if (!u || !copy_text(out->user, sizeof out->user, (const uint8_t *)u->name, u->name_len))
        return -ENOENT;
    out->key = alg == PL_STUN_PWALG_SHA256 ? u->key_sha256 : u->key_md5;
    set_quota_user(out, false);
    return 0;
}

/* Checks the USERNAME, REALM and NONCE attributes. Returns 0 or the failure. */
static int check_attrs(pl_turn_server_t *s, const pl_turn_conn_t *conn, const pl_stun_msg_t *m,
                       pl_turn_auth_t *out, int *code)
{
    const uint8_t *user, *realm, *nonce;
    size_t ulen = 0, rlen, nlen;
    bool has_user = pl_stun_get_bytes(m, PL_STUN_ATTR_USERNAME, &user, &ulen) == 0 ||
                    pl_stun_has(m, PL_STUN_ATTR_USERHASH);
    if (!has_user || pl_stun_get_bytes(m, PL_STUN_ATTR_REALM, &realm, &rlen) != 0 ||
        pl_stun_get_bytes(m, PL_STUN_ATTR_NONCE, &nonce, &nlen) != 0) {
        *code = 400;
        return PL_TURN_AUTH_MISSING_ATTR;
    }
    if (rlen != strlen(s->set->realm) || memcmp(realm, s->set->realm, rlen) != 0) {
        *code = 401;
        return PL_TURN_AUTH_WRONG_REALM;
    }
    pl_stun_nonce_key_t k = nonce_key(s);
    if (pl_stun_nonce_check(&k, nonce, nlen, s->io->wall_s(s->io_ctx), &conn->client) !=
        PL_STUN_NONCE_OK) {
        *code = 438;
        return PL_TURN_AUTH_STALE_NONCE;
    }
    if (ulen && !copy_text(out->user, sizeof out->user, user, ulen)) {
        *code = 401;
        return PL_TURN_AUTH_UNKNOWN_USER;
    }
    return -1;
}

static int rest_key(pl_turn_server_t *s, const pl_stun_msg_t *m, pl_turn_auth_t *out,
                    int *code)
{
    int rc = pl_turn_rest_check(m, (const char *const *)s->set->secrets, s->set->n_secrets,
                                s->io->wall_s(s->io_ctx), &out->key);
    *code = 401;
    if (rc >= 0) {
        set_quota_user(out, true);
        return -1;
    }
    if (rc == -EKEYEXPIRED)
        return PL_TURN_AUTH_EXPIRED;
    if (rc == -EBADMSG)
        return PL_TURN_AUTH_BAD_INTEGRITY;
    return PL_TURN_AUTH_UNKNOWN_USER;
}

int pl_turn_auth_check(pl_turn_server_t *s, const pl_turn_conn_t *conn,
                       const pl_stun_msg_t *m, pl_turn_auth_t *out)
{
    int code = 0, why;
    memset(out, 0, sizeof *out);
    if (m->mi_idx < 0 && m->mi256_idx < 0)
        return challenge(s, conn, m, 401);      /* the normal first round trip */
    if ((why = check_attrs(s, conn, m, out, &code)) >= 0)
        return fail(s, conn, m, code, (pl_turn_authfail_t)why);
    uint16_t alg = pick_algorithm(m);
    if (alg == 0)
        return fail(s, conn, m, 400, PL_TURN_AUTH_BAD_ALGORITHM);
    out->sha256 = m->mi256_idx >= 0;
    if (static_key(s, m, alg, out) == 0) {
        int rc = pl_stun_check_auth(m, out->key.bytes, out->key.len);
        if (rc != 0)
            return fail(s, conn, m, 401, PL_TURN_AUTH_BAD_INTEGRITY);
        return 0;
    }
    if (s->set->n_secrets == 0 || out->user[0] == '\0')
        return fail(s, conn, m, 401, PL_TURN_AUTH_UNKNOWN_USER);
    if ((why = rest_key(s, m, out, &code)) >= 0)
        return fail(s, conn, m, code, (pl_turn_authfail_t)why);
    return 0;
}
