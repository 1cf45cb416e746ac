/* wsc.c: see wsc.h. RFC 6455 §5.2 framing; §5.3 client-to-server masking (a cheap
 * xorshift mask per frame: the load tool is not defending against cache poisoning);
 * §5.5.2 pings answered with pongs.
 *
 * Threading: one thread per wsc_t. */
#include "wsc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return q;
}

static void reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    *buf = xrealloc(*buf, n);
    *cap = n;
}

static void out_append(wsc_t *c, const void *p, size_t n)
{
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    reserve(&c->out, &c->out_cap, c->out_len + n);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

int wsc_connect(wsc_t *c, uint16_t port, const char *path, const char *proto)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        int e = -errno;
        close(c->fd);
        c->fd = -1;
        return e;
    }
    c->mask_state = 0x9E3779B97F4A7C15ull ^ ((uint64_t)c->fd << 17) ^ (uintptr_t)c;
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
                     path, port, proto);
    out_append(c, req, (size_t)n);
    c->state = WSC_HANDSHAKE;
    return 0;
}

static uint32_t next_mask(wsc_t *c)
{
    uint64_t x = c->mask_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->mask_state = x;
    return (uint32_t)x;
}

static void send_frame(wsc_t *c, uint8_t opcode, const uint8_t *data, size_t len)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t m = next_mask(c);
    uint8_t mask[4] = { (uint8_t)m, (uint8_t)(m >> 8), (uint8_t)(m >> 16), (uint8_t)(m >> 24) };
    memcpy(hdr + h, mask, 4);
    h += 4;
    out_append(c, hdr, h);
    reserve(&c->out, &c->out_cap, c->out_len + len);
    uint8_t *p = c->out + c->out_len;
    for (size_t i = 0; i < len; i++)
        p[i] = data[i] ^ mask[i & 3];
    c->out_len += len;
}

void wsc_send_text(wsc_t *c, const char *data, size_t len)
{
    send_frame(c, 0x1, (const uint8_t *)data, len);
}

bool wsc_wants_write(const wsc_t *c)
{
    return c->out_off < c->out_len;
}

int wsc_flush(wsc_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ENOTCONN)
                return 1;
            return -errno;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* The handshake answer: "HTTP/1.1 101". Returns bytes consumed, 0 if incomplete, -1. */
static long parse_handshake(wsc_t *c, const uint8_t *in, size_t n)
{
    const uint8_t *end = memmem(in, n, "\r\n\r\n", 4);
    if (!end)
        return 0;
    if (n < 12 || memcmp(in, "HTTP/1.1 101", 12) != 0)
        return -1;
    c->state = WSC_OPEN;
    return (long)(end + 4 - in);
}

/* One frame. Returns bytes consumed, 0 if incomplete, -1 on close. */
static long parse_frame(wsc_t *c, const uint8_t *in, size_t n, wsc_msg_fn fn, void *arg)
{
    if (n < 2)
        return 0;
    uint8_t b0 = in[0], b1 = in[1];
    size_t h = 2;
    uint64_t len = b1 & 0x7f;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = ((uint64_t)in[2] << 8) | in[3];
        h = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | in[2 + i];
        h = 10;
    }
    if (b1 & 0x80)
        h += 4;                     /* servers do not mask, but tolerate it */
    if (n < h + len)
        return 0;
    uint8_t op = b0 & 0x0f;
    const uint8_t *p = in + h;
    if (op == 0x8)
        return -1;
    if (op == 0x9) {
        send_frame(c, 0xA, p, (size_t)len);
    } else if (op == 0x1 || op == 0x0) {
        reserve((uint8_t **)&c->msg, &c->msg_cap, c->msg_len + len + 1);
        memcpy(c->msg + c->msg_len, p, len);
        c->msg_len += len;
        if (b0 & 0x80) {
            c->msg[c->msg_len] = '\0';
            size_t m = c->msg_len;
            c->msg_len = 0;
            fn(c, c->msg, m, arg);
        }
    }
    return (long)(h + len);
}

int wsc_on_readable(wsc_t *c, wsc_msg_fn fn, void *arg)
{
    for (;;) {
        reserve(&c->in, &c->in_cap, c->in_len + 65536);
        size_t room = c->in_cap - c->in_len;
        ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            c->state = WSC_CLOSED;
            return -1;
        }
        if (n < 0)
            break;
        c->in_len += (size_t)n;
        size_t off = 0;
        long k;
        do {
            k = c->state == WSC_HANDSHAKE ? parse_handshake(c, c->in + off, c->in_len - off)
                                          : parse_frame(c, c->in + off, c->in_len - off, fn, arg);
            if (k < 0) {
                c->state = WSC_CLOSED;
                return -1;
            }
            off += (size_t)k;
        } while (k > 0);
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
        if ((size_t)n < room)
            break;
    }
    return 0;
}

void wsc_close(wsc_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = WSC_CLOSED;
    free(c->in);
    free(c->out);
    free(c->msg);
    c->in = c->out = NULL;
    c->msg = NULL;
}

int wsc_http_post(uint16_t port, const char *path, const char *json, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    char req[2048];
    int n = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s", path, strlen(json), json);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        int e = -errno;
        close(fd);
        return e;
    }
    size_t got = 0;
    char buf[8192];
    ssize_t r;
    while (got < sizeof(buf) - 1 && (r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        return -EPROTO;
    const char *body = strstr(buf, "\r\n\r\n");
    snprintf(out, cap, "%s", body ? body + 4 : "");
    return status;
}
