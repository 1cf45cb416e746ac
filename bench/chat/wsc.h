/* wsc.h: a small non-blocking WebSocket client (RFC 6455) for load generation: one
 * TCP connection, the opening handshake with a subprotocol, masked text frames out,
 * text frames in (fragments reassembled, pings answered, close noticed). The caller
 * owns the event loop (epoll): it calls wsc_on_readable / wsc_flush when the socket
 * is ready.
 *
 * What it does not do: TLS, extensions (no permessage-deflate), binary payloads,
 * validating the server's Sec-WebSocket-Accept (a load tool trusts its server).
 *
 * Threading: a wsc_t belongs to one thread. */
#ifndef PL_BENCH_WSC_H
#define PL_BENCH_WSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wsc {
    int fd;
    int state;                      /* WSC_* */
    uint8_t *in;                    /* received, not yet parsed */
    size_t in_len, in_cap;
    uint8_t *out;                   /* to send */
    size_t out_len, out_off, out_cap;
    char *msg;                      /* a text message being reassembled */
    size_t msg_len, msg_cap;
    uint64_t mask_state;
    void *user;
} wsc_t;

enum { WSC_HANDSHAKE, WSC_OPEN, WSC_CLOSED };

/* Called for every complete text message; msg is NUL-terminated, valid for the call. */
typedef void (*wsc_msg_fn)(wsc_t *c, char *msg, size_t len, void *arg);

/* Starts a non-blocking connection to 127.0.0.1:port and queues the handshake for
 * path with subprotocol proto. Returns 0 or -errno. */
int wsc_connect(wsc_t *c, uint16_t port, const char *path, const char *proto);
/* Queues one masked text frame. */
void wsc_send_text(wsc_t *c, const char *data, size_t len);
/* Writes what is queued. Returns 0 when all is written, 1 when the socket is full
 * (wait for EPOLLOUT), or -errno. */
int wsc_flush(wsc_t *c);
/* Reads what is available and calls fn per message. Returns 0, or -1 when the
 * connection closed or failed (state becomes WSC_CLOSED). */
int wsc_on_readable(wsc_t *c, wsc_msg_fn fn, void *arg);
bool wsc_wants_write(const wsc_t *c);
void wsc_close(wsc_t *c);

/* Blocking HTTP POST of a JSON body to 127.0.0.1:port; the response body goes into
 * out (NUL-terminated). Returns the HTTP status or -errno. For set-up only. */
int wsc_http_post(uint16_t port, const char *path, const char *json, char *out, size_t cap);

#endif
