/* turn_load.c: a paced TURN load client with its own echo peer, for measuring a relay's
 * CPU per forwarded packet, loss and round-trip time at a fixed packet rate.
 *
 *   setup    --sessions S UDP sockets, each its own 5-tuple. --mode turn: Allocate
 *            (401, then with long-term credentials), ChannelBind to the peer; --mode
 *            floor: one hello datagram that turn_floor echoes.
 *   data     the main thread sends --rate ChannelData datagrams per second in total,
 *            round robin over the sessions, in ticks of --tick-us (absolute-time
 *            sleeps), for --duration seconds. Each payload carries session, sequence
 *            and send time. A receiver thread (epoll + recvmmsg) counts what comes back
 *            and records the round-trip time in a 1 us histogram. The echo peer thread
 *            (recvmmsg/sendmmsg on --peer) sends every datagram back where it came from.
 *   result   one line of key=value: packets sent, received by the peer, received back;
 *            loss each way; RTT mean/p50/p99/max; and, with --pid, the relay process's
 *            CPU time over the data phase (utime+stime from /proc/PID/stat, and the
 *            nanosecond sum of /proc/PID/task/(star)/schedstat) per forwarded packet
 *            (forwarded = received by the peer + received back).
 *   teardown --mode turn: Refresh(LIFETIME 0) for every allocation.
 *
 * Every loop is bounded by --duration; traffic stays where --server and --peer point
 * (loopback in bench/turn/run). IPv4 only.
 * Threading: main (setup, pacing, teardown), receiver, echo peer; counters are atomics
 * or owned by one thread and read after join. */
#include "bt_stun.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x54424C44u       /* "TBLD" */
#define HIST_US 200000          /* RTT histogram range, 1 us buckets */
#define BATCH 64

typedef struct opts {
    bt_addr_t server, peer;
    int sessions, size, tick_us, pid;
    double rate, duration;
    bool floor, echo;
    const char *user, *pass;
} opts_t;

typedef struct session {
    int fd;
    uint16_t channel;
    bt_cred_t cred;
    bool allocated;
} session_t;

static opts_t o = {.sessions = 50, .size = 160, .tick_us = 100, .rate = 25000, .duration = 10,
                   .echo = true, .user = "user", .pass = "pass"};
static session_t *g_sess;
static atomic_bool g_stop;
static atomic_uint_fast64_t g_peer_rx, g_client_rx;
static uint32_t *g_hist;            /* receiver thread only until joined */
static uint64_t g_rtt_sum_ns, g_rtt_max_ns, g_bad;

/* ---- the relay's CPU time ---------------------------------------------------------- */

static double proc_stat_cpu_s(int pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    /* Fields after the command: state(3) ... utime(14) stime(15). */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double proc_sched_cpu_s(int pid)
{
    char path[300];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    unsigned long long total = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(path, "r");
        unsigned long long ns = 0;
        if (f && fscanf(f, "%llu", &ns) == 1)
            total += ns;
        if (f)
            fclose(f);
    }
    closedir(d);
    return (double)total / 1e9;
}

/* ---- setup ------------------------------------------------------------------------ */

/* Sends m on s and waits for the response with the same transaction id. */
static int transact(session_t *s, const bt_msg_t *m, const uint8_t tid[12], bt_resp_t *r,
                    uint8_t *rbuf, size_t rcap)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        if (send(s->fd, m->buf, m->len, 0) < 0)
            return -1;
        uint64_t deadline = bt_now_ns() + 500000000ull;
        while (bt_now_ns() < deadline) {
            ssize_t n = recv(s->fd, rbuf, rcap, MSG_DONTWAIT);
            if (n < 0) {
                struct timespec ts = {0, 200000};
                nanosleep(&ts, NULL);
                continue;
            }
            if (bt_parse(rbuf, (size_t)n, r) == 0 && memcmp(r->tid, tid, 12) == 0)
                return 0;
        }
    }
    return -1;
}

static int turn_request(session_t *s, uint16_t method, void (*add)(bt_msg_t *, void *), void *arg,
                        bt_resp_t *r, uint8_t *rbuf)
{
    for (int round = 0; round < 3; round++) {
        bt_msg_t m;
        uint8_t tid[12];
        bt_req_init(&m, method, tid);
        if (add)
            add(&m, arg);
        if (s->cred.have_key)
            bt_add_auth(&m, &s->cred);
        if (transact(s, &m, tid, r, rbuf, 1500) != 0)
            return -1;
        if (r->cls == BT_CLASS_ERROR && (r->error == 401 || r->error == 438)) {
            if (bt_cred_from_challenge(&s->cred, r, o.pass) != 0)
                return -1;
            continue;       /* retry with credentials or the fresh nonce */
        }
        return r->cls == BT_CLASS_SUCCESS ? 0 : -r->error;
    }
    return -1;
}

static void add_transport(bt_msg_t *m, void *arg)
{
    (void)arg;
    bt_add_u32(m, 0x0019, 17u << 24);          /* REQUESTED-TRANSPORT UDP */
}

static void add_bind(bt_msg_t *m, void *arg)
{
    session_t *s = arg;
    bt_add_u32(m, 0x000C, (uint32_t)s->channel << 16);
    bt_add_xor_addr(m, 0x0012, &o.peer);
}

static void add_lifetime0(bt_msg_t *m, void *arg)
{
    (void)arg;
    bt_add_u32(m, 0x000D, 0);
}

static int setup_session(session_t *s, int i)
{
    uint8_t rbuf[1500];
    bt_resp_t r;
    s->channel = (uint16_t)(0x4000 + i % 0x3FFF);
    snprintf(s->cred.user, sizeof s->cred.user, "%s", o.user);
    if (o.floor) {
        bt_msg_t m;
        uint8_t tid[12];
        bt_req_init(&m, BT_METHOD_BINDING, tid);
        return transact(s, &m, tid, &r, rbuf, sizeof rbuf);
    }
    int rc = turn_request(s, BT_METHOD_ALLOCATE, add_transport, NULL, &r, rbuf);
    if (rc != 0) {
        if (rc != -437)
            fprintf(stderr, "turn_load: session %d: Allocate failed (%d)\n", i, rc);
        return rc;
    }
    s->allocated = true;
    rc = turn_request(s, BT_METHOD_CHANNEL_BIND, add_bind, s, &r, rbuf);
    if (rc != 0)
        fprintf(stderr, "turn_load: session %d: ChannelBind failed (%d)\n", i, rc);
    return rc;
}

static int open_session(session_t *s)
{
    s->fd = socket(o.server.ss.ss_family, SOCK_DGRAM, 0);
    if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&o.server.ss, o.server.len) != 0)
        return -1;
    bt_sockbufs(s->fd, 1 << 20);
    return 0;
}

/* Opens and sets up session i. A 437 means the kernel gave this socket the port of an
 * allocation an earlier run left behind (its Refresh 0 was lost): use another port. */
static int start_session(session_t *s, int i)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        memset(s, 0, sizeof *s);
        if (open_session(s) != 0)
            return -1;
        int rc = setup_session(s, i);
        if (rc != -437)
            return rc;
        close(s->fd);
    }
    return -1;
}

/* ---- data phase ------------------------------------------------------------------- */

static void *echo_main(void *arg)
{
    int fd = *(int *)arg;
    enum { N = BATCH };
    static uint8_t bufs[N][2048];
    struct mmsghdr msgs[N];
    struct iovec iov[N];
    struct sockaddr_storage addr[N];
    while (!atomic_load(&g_stop)) {
        for (int i = 0; i < N; i++) {
            iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &addr[i], .msg_namelen = sizeof addr[i],
                                              .msg_iov = &iov[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, msgs, N, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;       /* SO_RCVTIMEO: check g_stop */
        for (int i = 0; i < n; i++)
            iov[i].iov_len = msgs[i].msg_len;
        atomic_fetch_add(&g_peer_rx, (uint64_t)n);
        for (int done = 0; done < n;) {
            int k = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
            done += k > 0 ? k : 1;
        }
    }
    return NULL;
}

static void record(const uint8_t *p, size_t n, uint64_t now)
{
    if (n < 4 + 24 || (p[0] & 0xC0) != 0x40) {
        g_bad++;
        return;
    }
    const uint8_t *d = p + 4;
    uint32_t magic;
    uint64_t ts;
    memcpy(&magic, d, 4);
    memcpy(&ts, d + 16, 8);
    if (magic != MAGIC || ts > now) {
        g_bad++;
        return;
    }
    uint64_t rtt = now - ts;
    g_rtt_sum_ns += rtt;
    if (rtt > g_rtt_max_ns)
        g_rtt_max_ns = rtt;
    uint64_t us = rtt / 1000;
    g_hist[us < HIST_US ? us : HIST_US - 1]++;
    atomic_fetch_add_explicit(&g_client_rx, 1, memory_order_relaxed);
}

static void *recv_main(void *arg)
{
    int ep = *(int *)arg;
    static uint8_t bufs[BATCH][2048];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct epoll_event evs[64];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
        msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    while (!atomic_load(&g_stop)) {
        int ne = epoll_wait(ep, evs, 64, 50);
        for (int e = 0; e < ne; e++) {
            int fd = evs[e].data.fd;
            for (;;) {
                int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
                if (n <= 0)
                    break;
                uint64_t now = bt_now_ns();
                for (int i = 0; i < n; i++)
                    record(bufs[i], msgs[i].msg_len, now);
                if (n < BATCH)
                    break;
            }
        }
    }
    return NULL;
}

/* Sends --rate datagrams/s for --duration s. Returns the number sent. */
static uint64_t pace(void)
{
    uint8_t pkt[2048];
    size_t dlen = (size_t)o.size;
    memset(pkt, 0x5A, sizeof pkt);
    uint64_t start = bt_now_ns(), sent = 0, fails = 0;
    uint64_t end = start + (uint64_t)(o.duration * 1e9);
    uint64_t total = (uint64_t)(o.rate * o.duration);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (uint64_t now = start; now < end && sent < total;) {
        uint64_t due = (uint64_t)((double)(now - start) * o.rate / 1e9) + 1;
        if (due > total)
            due = total;
        for (; sent < due; sent++) {
            session_t *s = &g_sess[sent % (uint64_t)o.sessions];
            pkt[0] = (uint8_t)(s->channel >> 8);
            pkt[1] = (uint8_t)s->channel;
            pkt[2] = (uint8_t)(dlen >> 8);
            pkt[3] = (uint8_t)dlen;
            uint32_t magic = MAGIC, idx = (uint32_t)(sent % (uint64_t)o.sessions);
            uint32_t seq = (uint32_t)(sent / (uint64_t)o.sessions);
            uint64_t ts = bt_now_ns();
            memcpy(pkt + 4, &magic, 4);
            memcpy(pkt + 8, &idx, 4);
            memcpy(pkt + 12, &seq, 4);
            memcpy(pkt + 20, &ts, 8);
            if (send(s->fd, pkt, 4 + dlen, 0) < 0)
                fails++;
        }
        next.tv_nsec += o.tick_us * 1000L;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        now = bt_now_ns();
    }
    if (fails)
        fprintf(stderr, "turn_load: %llu sends failed\n", (unsigned long long)fails);
    return sent - fails;
}

static double percentile_us(uint64_t count, double q)
{
    uint64_t want = (uint64_t)((double)count * q), acc = 0;
    for (int i = 0; i < HIST_US; i++) {
        acc += g_hist[i];
        if (acc > want)
            return i;
    }
    return HIST_US;
}

/* ---- main ------------------------------------------------------------------------- */

static int parse_opts(int argc, char **argv)
{
    static const struct option lo[] = {
        {"server", required_argument, NULL, 's'}, {"peer", required_argument, NULL, 'p'},
        {"sessions", required_argument, NULL, 'm'}, {"rate", required_argument, NULL, 'r'},
        {"size", required_argument, NULL, 'l'}, {"duration", required_argument, NULL, 'd'},
        {"tick-us", required_argument, NULL, 't'}, {"pid", required_argument, NULL, 'P'},
        {"mode", required_argument, NULL, 'M'}, {"user", required_argument, NULL, 'u'},
        {"pass", required_argument, NULL, 'w'}, {"no-echo", no_argument, NULL, 'E'},
        {NULL, 0, NULL, 0},
    };
    bool have_s = false, have_p = false;
    for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (c) {
        case 's': have_s = bt_addr_parse(optarg, &o.server) == 0; break;
        case 'p': have_p = bt_addr_parse(optarg, &o.peer) == 0; break;
        case 'm': o.sessions = atoi(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 'l': o.size = atoi(optarg); break;
        case 'd': o.duration = atof(optarg); break;
        case 't': o.tick_us = atoi(optarg); break;
        case 'P': o.pid = atoi(optarg); break;
        case 'M': o.floor = strcmp(optarg, "floor") == 0; break;
        case 'u': o.user = optarg; break;
        case 'w': o.pass = optarg; break;
        case 'E': o.echo = false; break;
        default: return -1;
        }
    }
    if (!have_s || !have_p || o.sessions < 1 || o.size < 24 || o.size > 1400 || o.rate <= 0 ||
        o.duration <= 0 || o.duration > 600 || o.tick_us < 10)
        return -1;
    return 0;
}

static int open_echo(void)
{
    int fd = socket(o.peer.ss.ss_family, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&o.peer.ss, o.peer.len) != 0) {
        perror("turn_load: echo peer bind");
        exit(1);
    }
    bt_sockbufs(fd, 4 << 20);
    struct timeval tv = {0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void teardown(void)
{
    uint8_t rbuf[1500];
    bt_resp_t r;
    for (int i = 0; i < o.sessions; i++) {
        if (g_sess[i].allocated)
            turn_request(&g_sess[i], BT_METHOD_REFRESH, add_lifetime0, NULL, &r, rbuf);
        close(g_sess[i].fd);
    }
}

int main(int argc, char **argv)
{
    if (parse_opts(argc, argv) != 0) {
        fprintf(stderr, "usage: turn_load --server IP:PORT --peer IP:PORT [--mode turn|floor] "
                "[--sessions 50] [--rate 25000] [--size 160] [--duration 10] [--tick-us 100] "
                "[--user U --pass P] [--pid RELAY_PID] [--no-echo]\n");
        return 2;
    }
    prctl(PR_SET_TIMERSLACK, 1UL);
    g_hist = calloc(HIST_US, sizeof *g_hist);
    g_sess = calloc((size_t)o.sessions, sizeof *g_sess);
    pthread_t echo_t, recv_t;
    int efd = -1;
    if (o.echo) {
        efd = open_echo();
        pthread_create(&echo_t, NULL, echo_main, &efd);
    }
    for (int i = 0; i < o.sessions; i++)
        if (start_session(&g_sess[i], i) != 0) {
            fprintf(stderr, "turn_load: setup of session %d failed\n", i);
            atomic_store(&g_stop, true);
            teardown();
            return 1;
        }
    int ep = epoll_create1(0);
    for (int i = 0; i < o.sessions; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = g_sess[i].fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, g_sess[i].fd, &ev);
    }
    pthread_create(&recv_t, NULL, recv_main, &ep);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double cpu0 = o.pid ? proc_stat_cpu_s(o.pid) : 0, sch0 = o.pid ? proc_sched_cpu_s(o.pid) : 0;
    uint64_t t0 = bt_now_ns();
    uint64_t sent = pace();
    double send_s = (double)(bt_now_ns() - t0) / 1e9;
    /* Drain: whatever is still in flight after 300 ms counts as lost. */
    struct timespec drain = {0, 300000000};
    nanosleep(&drain, NULL);
    double cpu1 = o.pid ? proc_stat_cpu_s(o.pid) : 0, sch1 = o.pid ? proc_sched_cpu_s(o.pid) : 0;
    double window_s = (double)(bt_now_ns() - t0) / 1e9;
    getrusage(RUSAGE_SELF, &ru1);
    atomic_store(&g_stop, true);
    pthread_join(recv_t, NULL);
    if (o.echo)
        pthread_join(echo_t, NULL);
    uint64_t prx = atomic_load(&g_peer_rx), crx = atomic_load(&g_client_rx);
    uint64_t fwd = prx + crx;
    double self_cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                               ru0.ru_stime.tv_sec) +
                      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                               ru0.ru_stime.tv_usec) / 1e6;
    printf("result mode=%s sessions=%d rate=%.0f size=%d duration_s=%.2f sent=%llu peer_rx=%llu "
           "client_rx=%llu loss_c2p=%lld loss_total=%lld loss_pct=%.4f fwd_per_s=%.0f "
           "rtt_mean_us=%.1f rtt_p50_us=%.0f rtt_p99_us=%.0f rtt_max_us=%.0f bad=%llu "
           "load_cpu_s=%.3f",
           o.floor ? "floor" : "turn", o.sessions, o.rate, o.size, send_s,
           (unsigned long long)sent, (unsigned long long)prx, (unsigned long long)crx,
           (long long)(sent - prx), (long long)(sent - crx),
           sent ? 100.0 * (double)(sent - crx) / (double)sent : 0, (double)fwd / send_s,
           crx ? (double)g_rtt_sum_ns / (double)crx / 1000 : 0, percentile_us(crx, 0.5),
           percentile_us(crx, 0.99), (double)g_rtt_max_ns / 1000, (unsigned long long)g_bad,
           self_cpu);
    if (o.pid)
        printf(" window_s=%.2f relay_cpu_s=%.3f relay_sched_cpu_s=%.4f us_per_fwd=%.3f "
               "sched_us_per_fwd=%.3f",
               window_s, cpu1 - cpu0, sch1 - sch0, fwd ? (cpu1 - cpu0) * 1e6 / (double)fwd : 0,
               fwd ? (sch1 - sch0) * 1e6 / (double)fwd : 0);
    printf("\n");
    teardown();
    return 0;
}
