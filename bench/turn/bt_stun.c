/* bt_stun.c: see bt_stun.h. A minimal STUN client codec for the benchmark tools. */
#include "bt_stun.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COOKIE 0x2112A442u

static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)(v >> 16)); wr16(p + 2, (uint16_t)v); }

int bt_addr_parse(const char *s, bt_addr_t *out)
{
    char host[128];
    const char *colon;
    memset(out, 0, sizeof *out);
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host)
            return -1;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    int port = atoi(colon + 1);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        out->len = sizeof *in4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        out->len = sizeof *in6;
        return 0;
    }
    return -1;
}

const char *bt_addr_str(const bt_addr_t *a, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof ip);
        snprintf(buf, cap, "%s:%u", ip, ntohs(in4->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
    return buf;
}

void bt_cred_key(bt_cred_t *cred, const char *pass)
{
    char s[512];
    int n = snprintf(s, sizeof s, "%s:%s:%s", cred->user, cred->realm, pass);
    unsigned len = 0;
    EVP_Digest(s, (size_t)n, cred->key, &len, EVP_md5(), NULL);
    cred->have_key = true;
}

void bt_req_init(bt_msg_t *m, uint16_t method, uint8_t tid[12])
{
    /* Method bits M0-M11 around the class bits (RFC 8489 §5); class request = 0. */
    uint16_t type = (uint16_t)((method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2));
    wr16(m->buf, type);
    wr16(m->buf + 2, 0);
    wr32(m->buf + 4, COOKIE);
    RAND_bytes(m->buf + 8, 12);
    if (tid)
        memcpy(tid, m->buf + 8, 12);
    m->len = 20;
}

void bt_add_attr(bt_msg_t *m, uint16_t type, const void *val, size_t len)
{
    size_t padded = (len + 3) & ~(size_t)3;
    if (m->len + 4 + padded > sizeof m->buf)
        abort();
    wr16(m->buf + m->len, type);
    wr16(m->buf + m->len + 2, (uint16_t)len);
    memcpy(m->buf + m->len + 4, val, len);
    memset(m->buf + m->len + 4 + len, 0, padded - len);
    m->len += 4 + padded;
    wr16(m->buf + 2, (uint16_t)(m->len - 20));
}

void bt_add_u32(bt_msg_t *m, uint16_t type, uint32_t v)
{
    uint8_t b[4];
    wr32(b, v);
    bt_add_attr(m, type, b, 4);
}

void bt_add_xor_addr(bt_msg_t *m, uint16_t type, const bt_addr_t *a)
{
    uint8_t b[20] = {0};
    size_t len;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)&a->ss;
        b[1] = 1;
        wr16(b + 2, (uint16_t)(ntohs(in4->sin_port) ^ (COOKIE >> 16)));
        uint32_t ip = ntohl(in4->sin_addr.s_addr) ^ COOKIE;
        wr32(b + 4, ip);
        len = 8;
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        b[1] = 2;
        wr16(b + 2, (uint16_t)(ntohs(in6->sin6_port) ^ (COOKIE >> 16)));
        memcpy(b + 4, &in6->sin6_addr, 16);
        for (int i = 0; i < 16; i++)
            b[4 + i] ^= m->buf[4 + i];     /* cookie then transaction id */
        len = 20;
    }
    bt_add_attr(m, type, b, len);
}

void bt_add_auth(bt_msg_t *m, const bt_cred_t *cred)
{
    bt_add_attr(m, 0x0006, cred->user, strlen(cred->user));
    bt_add_attr(m, 0x0014, cred->realm, strlen(cred->realm));
    bt_add_attr(m, 0x0015, cred->nonce, cred->nonce_len);
    /* RFC 8489 §14.5: the length field covers MESSAGE-INTEGRITY while hashing. */
    wr16(m->buf + 2, (uint16_t)(m->len - 20 + 24));
    uint8_t mac[20];
    unsigned mlen = 0;
    HMAC(EVP_sha1(), cred->key, 16, m->buf, m->len, mac, &mlen);
    bt_add_attr(m, 0x0008, mac, 20);
}

static void read_xor_addr(const uint8_t *v, size_t len, const uint8_t *hdr, bt_addr_t *out)
{
    memset(out, 0, sizeof *out);
    uint16_t port = rd16(v + 2) ^ (uint16_t)(COOKIE >> 16);
    if (v[1] == 1 && len >= 8) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&out->ss;
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        uint32_t ip = ((uint32_t)v[4] << 24 | (uint32_t)v[5] << 16 | (uint32_t)v[6] << 8 | v[7]) ^ COOKIE;
        in4->sin_addr.s_addr = htonl(ip);
        out->len = sizeof *in4;
    } else if (v[1] == 2 && len >= 20) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        uint8_t *ip = (uint8_t *)&in6->sin6_addr;
        for (int i = 0; i < 16; i++)
            ip[i] = v[4 + i] ^ hdr[4 + i];
        out->len = sizeof *in6;
    }
}

int bt_parse(const uint8_t *p, size_t n, bt_resp_t *out)
{
    memset(out, 0, sizeof *out);
    if (n < 20 || (p[0] & 0xC0) != 0 || rd16(p + 4) != (COOKIE >> 16) || 20u + rd16(p + 2) != n)
        return -1;
    uint16_t type = rd16(p);
    out->cls = (uint8_t)(((type >> 4) & 1) | ((type >> 7) & 2));
    out->method = (uint16_t)((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
    memcpy(out->tid, p + 8, 12);
    for (size_t off = 20; off + 4 <= n;) {
        uint16_t t = rd16(p + off), l = rd16(p + off + 2);
        const uint8_t *v = p + off + 4;
        if (off + 4 + l > n)
            return -1;
        if (t == 0x0009 && l >= 4)
            out->error = (v[2] & 7) * 100 + v[3];
        else if (t == 0x0014)
            out->realm = v, out->realm_len = l;
        else if (t == 0x0015)
            out->nonce = v, out->nonce_len = l;
        else if (t == 0x0016 && !out->has_relayed) {
            read_xor_addr(v, l, p, &out->relayed);
            out->has_relayed = out->relayed.len != 0;
        }
        off += 4 + ((l + 3u) & ~3u);
    }
    return 0;
}

int bt_cred_from_challenge(bt_cred_t *cred, const bt_resp_t *r, const char *pass)
{
    if (!r->realm || !r->nonce || r->realm_len >= sizeof cred->realm ||
        r->nonce_len > sizeof cred->nonce)
        return -1;
    memcpy(cred->realm, r->realm, r->realm_len);
    cred->realm[r->realm_len] = '\0';
    memcpy(cred->nonce, r->nonce, r->nonce_len);
    cred->nonce_len = r->nonce_len;
    bt_cred_key(cred, pass);
    return 0;
}

uint64_t bt_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void bt_sockbufs(int fd, int bytes)
{
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}
