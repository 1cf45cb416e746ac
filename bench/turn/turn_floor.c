/* turn_floor.c: the do-nothing relay, the floor parleyd's TURN data plane is measured
 * against. It moves ChannelData between clients and one peer exactly the way
 * relay/turn/turn_relay.c does, with none of the protocol work:
 *
 *   threads      N threads, each an epoll loop with its own SO_REUSEPORT UDP listener
 *                (the kernel spreads clients by 4-tuple hash, as for parleyd).
 *   sessions     the first non-ChannelData datagram from a new client address opens a
 *                "session": a UDP relay socket on relay-ip:0 in the thread's epoll set
 *                (an allocation without Allocate); the datagram is echoed as the ack.
 *                The lookup is an array indexed by the client's port (loopback only);
 *                a hello from a known port is acked again (a later run reusing it).
 *   client->peer recvmmsg (batch 32, at most 4 batches per wake-up, as parleyd) on
 *                the listener; per datagram, strip the 4-byte ChannelData header and
 *                sendto() the payload on the session's relay socket to the peer (one
 *                system call per datagram, as parleyd).
 *   peer->client recvmmsg on the relay socket straight into the listener's transmit
 *                slots, 4 bytes in; write the ChannelData header in place; the batch
 *                goes out with sendmmsg when full or at the end of the loop iteration.
 *
 * No permissions, channels, authentication, expiry, metrics or clock reads: whatever
 * parleyd spends above this program's CPU per forwarded packet is its protocol cost.
 *
 * Run: turn_floor --listen 127.0.0.1:PORT --peer 127.0.0.1:PORT [--relay-ip 127.0.0.1]
 *      [--threads N]; stops on SIGTERM/SIGINT and prints its counters.
 * Threading: one thread per loop, nothing shared but atomic-free per-thread counters
 * read after join. */
#include "bt_stun.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define BATCH 32
#define SLOT 2048
#define HEADROOM 64
#define MAX_EVENTS 64

typedef struct session {
    int fd;
    struct sockaddr_in client;
} session_t;

typedef struct worker {
    pthread_t tid;
    int ep, lfd;
    session_t **by_port;                    /* [65536] */
    /* listener receive batch */
    uint8_t (*rx)[SLOT];
    struct mmsghdr rx_msgs[BATCH];
    struct iovec rx_iov[BATCH];
    struct sockaddr_in rx_addr[BATCH];
    /* listener transmit batch (peer->client) */
    uint8_t (*tx)[SLOT];
    unsigned n_tx;
    struct mmsghdr tx_msgs[BATCH];
    struct iovec tx_iov[BATCH];
    struct sockaddr_in tx_addr[BATCH];
    /* relay receive descriptors */
    struct mmsghdr prx_msgs[BATCH];
    struct iovec prx_iov[BATCH];
    uint64_t c2p, p2c, sessions, send_fail;
} worker_t;

static bt_addr_t g_listen, g_peer, g_relay;
static volatile sig_atomic_t g_stop;
static int g_wake[2];

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (write(g_wake[1], "x", 1) < 0) {
        /* nothing to do: the loops also poll g_stop */
    }
}

static void flush_tx(worker_t *w)
{
    unsigned done = 0;
    while (done < w->n_tx) {
        int n = sendmmsg(w->lfd, w->tx_msgs + done, w->n_tx - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            w->send_fail++;
            n = 1;
        }
        done += (unsigned)n;
    }
    w->n_tx = 0;
}

static void open_session(worker_t *w, const struct sockaddr_in *client, const uint8_t *buf,
                         size_t len)
{
    session_t *s = calloc(1, sizeof *s);
    s->client = *client;
    s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in r = *(const struct sockaddr_in *)&g_relay.ss;
    r.sin_port = 0;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&r, sizeof r) != 0) {
        perror("relay socket");
        exit(1);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
    epoll_ctl(w->ep, EPOLL_CTL_ADD, s->fd, &ev);
    w->by_port[ntohs(client->sin_port)] = s;
    w->sessions++;
    sendto(w->lfd, buf, len, 0, (const struct sockaddr *)client, sizeof *client);
}

static void on_listener(worker_t *w)
{
    /* At most 4 batches per wake-up, then the relay sockets get their turn (as parleyd). */
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < BATCH; i++)
            w->rx_msgs[i].msg_hdr.msg_namelen = sizeof w->rx_addr[i];
        int n = recvmmsg(w->lfd, w->rx_msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++) {
            const uint8_t *p = w->rx[i];
            size_t len = w->rx_msgs[i].msg_len;
            const struct sockaddr_in *src = &w->rx_addr[i];
            session_t *s = w->by_port[ntohs(src->sin_port)];
            if (len >= 4 && (p[0] & 0xC0) == 0x40) {
                if (!s)
                    continue;
                size_t dlen = (size_t)(p[2] << 8 | p[3]);
                if (dlen + 4 > len)
                    continue;
                if (sendto(s->fd, p + 4, dlen, 0, (const struct sockaddr *)&g_peer.ss, g_peer.len) < 0)
                    w->send_fail++;
                else
                    w->c2p++;
            } else if (!s) {
                open_session(w, src, p, len);
            } else {
                /* A new client that got an old one's port: ack again, same session. */
                s->client = *src;
                sendto(w->lfd, p, len, 0, (const struct sockaddr *)src, sizeof *src);
            }
        }
        if (n < BATCH)
            return;
    }
}

static void on_relay(worker_t *w, session_t *s)
{
    for (int round = 0; round < 4; round++) {
        if (w->n_tx == BATCH)
            flush_tx(w);
        unsigned base = w->n_tx, k = BATCH - base;
        for (unsigned j = 0; j < k; j++) {
            w->prx_iov[j].iov_base = w->tx[base + j] + HEADROOM;
            w->prx_iov[j].iov_len = SLOT - HEADROOM;
            w->prx_msgs[j].msg_hdr.msg_iov = &w->prx_iov[j];
            w->prx_msgs[j].msg_hdr.msg_iovlen = 1;
            w->prx_msgs[j].msg_hdr.msg_name = NULL;
        }
        int n = recvmmsg(s->fd, w->prx_msgs, k, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        for (int j = 0; j < n; j++) {
            unsigned slot = base + (unsigned)j;
            uint8_t *hdr = w->tx[slot] + HEADROOM - 4;
            size_t len = w->prx_msgs[j].msg_len;
            hdr[0] = 0x40;
            hdr[1] = 0x00;
            hdr[2] = (uint8_t)(len >> 8);
            hdr[3] = (uint8_t)len;
            w->tx_addr[slot] = s->client;
            w->tx_iov[slot].iov_base = hdr;
            w->tx_iov[slot].iov_len = len + 4;
            w->tx_msgs[slot].msg_hdr.msg_name = &w->tx_addr[slot];
            w->tx_msgs[slot].msg_hdr.msg_namelen = sizeof w->tx_addr[slot];
            w->tx_msgs[slot].msg_hdr.msg_iov = &w->tx_iov[slot];
            w->tx_msgs[slot].msg_hdr.msg_iovlen = 1;
        }
        w->n_tx += (unsigned)n;
        w->p2c += (uint64_t)n;
        if ((unsigned)n < k)
            return;
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    struct epoll_event evs[MAX_EVENTS];
    while (!g_stop) {
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == w)
                on_listener(w);
            else if (p != NULL)
                on_relay(w, p);
        }
        /* End of the loop iteration: datagrams of many sessions share one sendmmsg. */
        if (w->n_tx)
            flush_tx(w);
    }
    return NULL;
}

static void worker_init(worker_t *w)
{
    w->by_port = calloc(65536, sizeof *w->by_port);
    w->rx = calloc(BATCH, SLOT);
    w->tx = calloc(BATCH, SLOT);
    for (int i = 0; i < BATCH; i++) {
        w->rx_iov[i] = (struct iovec){w->rx[i], SLOT};
        w->rx_msgs[i].msg_hdr.msg_iov = &w->rx_iov[i];
        w->rx_msgs[i].msg_hdr.msg_iovlen = 1;
        w->rx_msgs[i].msg_hdr.msg_name = &w->rx_addr[i];
    }
    w->ep = epoll_create1(0);
    w->lfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(w->lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    bt_sockbufs(w->lfd, 4 << 20);
    if (bind(w->lfd, (struct sockaddr *)&g_listen.ss, g_listen.len) != 0) {
        perror("bind listener");
        exit(1);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
    epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev);
    struct epoll_event wake = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(w->ep, EPOLL_CTL_ADD, g_wake[0], &wake);
}

int main(int argc, char **argv)
{
    const char *listen_s = NULL, *peer_s = NULL, *relay_s = "127.0.0.1:0";
    int threads = 1;
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'}, {"peer", required_argument, NULL, 'p'},
        {"relay-ip", required_argument, NULL, 'r'}, {"threads", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (c == 'l') listen_s = optarg;
        else if (c == 'p') peer_s = optarg;
        else if (c == 'r') relay_s = optarg;
        else if (c == 't') threads = atoi(optarg);
        else return 2;
    }
    char relay_buf[80];
    if (!strchr(relay_s, ':')) {
        snprintf(relay_buf, sizeof relay_buf, "%s:0", relay_s);
        relay_s = relay_buf;
    }
    if (!listen_s || !peer_s || bt_addr_parse(listen_s, &g_listen) || bt_addr_parse(peer_s, &g_peer) ||
        bt_addr_parse(relay_s, &g_relay) || g_listen.ss.ss_family != AF_INET || threads < 1 ||
        threads > 64) {
        fprintf(stderr, "usage: turn_floor --listen IPv4:PORT --peer IP:PORT [--relay-ip IPv4] [--threads N]\n");
        return 2;
    }
    if (pipe(g_wake) != 0)
        return 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    worker_t *ws = calloc((size_t)threads, sizeof *ws);
    for (int i = 0; i < threads; i++)
        worker_init(&ws[i]);
    for (int i = 0; i < threads; i++)
        pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
    printf("turn_floor ready listen=%s threads=%d\n", listen_s, threads);
    fflush(stdout);
    uint64_t c2p = 0, p2c = 0, sessions = 0, fail = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(ws[i].tid, NULL);
        c2p += ws[i].c2p, p2c += ws[i].p2c, sessions += ws[i].sessions, fail += ws[i].send_fail;
    }
    printf("turn_floor stopped sessions=%llu c2p=%llu p2c=%llu send_failed=%llu\n",
           (unsigned long long)sessions, (unsigned long long)c2p, (unsigned long long)p2c,
           (unsigned long long)fail);
    return 0;
}
