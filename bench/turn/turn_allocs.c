/* turn_allocs.c: authenticated allocation rate and memory per allocation of a TURN
 * server over UDP.
 *
 * Rate (default): --concurrency W slots, each running the full sequence a real client
 * runs, over and over, for --duration seconds:
 *     Allocate (no credentials) -> 401 with REALM and NONCE
 *     Allocate (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY) -> success
 *     Refresh LIFETIME=0 (authenticated) -> success (the allocation is deleted)
 * then the slot closes its socket and opens a new one (a new source port, so every
 * allocation is a new 5-tuple). Lost datagrams are retransmitted after 500 ms and
 * counted. Prints allocations/s and the latency of the whole sequence.
 *
 * Memory (--hold N): N sockets each create one allocation and keep it; with --pid the
 * relay's VmRSS is read before, with N live allocations, and after deleting them all
 * (Refresh 0); prints bytes per allocation = (RSS held - RSS before) / N.
 *
 * Bounded: --duration (rate) or N (hold), plus a 60 s cap on any phase. IPv4 or IPv6.
 * Threading: one thread, one epoll set. */
#include "bt_stun.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#define RTO_NS 500000000ull
#define PHASE_CAP_NS 60000000000ull
#define LAT_BUCKETS 10000           /* 0.1 ms buckets up to 1 s */

enum { ST_IDLE, ST_UNAUTH, ST_AUTH, ST_REFRESH, ST_HELD, ST_RESTART };

typedef struct slot {
    int fd;
    int state;
    uint8_t tid[12];
    bt_msg_t req;
    uint64_t sent_ns, start_ns;
    bt_cred_t cred;
} slot_t;

static bt_addr_t g_server;
static const char *g_user = "user", *g_pass = "pass";
static int g_ep;
static uint64_t g_done, g_retx, g_err[700], g_lat[LAT_BUCKETS];

static long rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static int slot_open(slot_t *s, uint32_t idx)
{
    s->fd = socket(g_server.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&g_server.ss, g_server.len) != 0) {
        perror("turn_allocs: socket");
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = idx};
    return epoll_ctl(g_ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static void slot_send(slot_t *s)
{
    if (send(s->fd, s->req.buf, s->req.len, 0) < 0 && errno != EAGAIN)
        perror("turn_allocs: send");
    s->sent_ns = bt_now_ns();
}

static void send_allocate(slot_t *s, bool auth)
{
    bt_req_init(&s->req, BT_METHOD_ALLOCATE, s->tid);
    bt_add_u32(&s->req, 0x0019, 17u << 24);       /* REQUESTED-TRANSPORT UDP */
    if (auth)
        bt_add_auth(&s->req, &s->cred);
    s->state = auth ? ST_AUTH : ST_UNAUTH;
    slot_send(s);
}

static void send_refresh0(slot_t *s)
{
    bt_req_init(&s->req, BT_METHOD_REFRESH, s->tid);
    bt_add_u32(&s->req, 0x000D, 0);               /* LIFETIME 0: delete */
    bt_add_auth(&s->req, &s->cred);
    s->state = ST_REFRESH;
    slot_send(s);
}

static void slot_start(slot_t *s)
{
    memset(&s->cred, 0, sizeof s->cred);
    snprintf(s->cred.user, sizeof s->cred.user, "%s", g_user);
    s->start_ns = bt_now_ns();
    send_allocate(s, false);
}

static void count_error(int code)
{
    g_err[code > 0 && code < 700 ? code : 0]++;
}

/* Advances a slot on a response. hold: stop after the allocation. Returns true when the
 * slot finished one allocation cycle (rate) or holds its allocation (hold). */
static bool on_response(slot_t *s, const bt_resp_t *r, bool hold)
{
    if (s->state == ST_UNAUTH) {
        if (r->cls == BT_CLASS_ERROR && r->error == 401 && bt_cred_from_challenge(&s->cred, r, g_pass) == 0)
            send_allocate(s, true);
        else {
            /* coturn answers 437 when the kernel hands out a client port whose old
             * session it has not yet cleaned up: counted, and retried on a new port. */
            count_error(r->error);
            s->state = ST_RESTART;
            return true;
        }
        return false;
    }
    if (r->cls == BT_CLASS_ERROR && r->error == 438 && bt_cred_from_challenge(&s->cred, r, g_pass) == 0) {
        if (s->state == ST_AUTH)
            send_allocate(s, true);
        else
            send_refresh0(s);
        return false;
    }
    if (r->cls != BT_CLASS_SUCCESS) {
        /* Start over on a new socket (a new 5-tuple): after a 437 the old one is stuck. */
        count_error(r->error);
        s->state = ST_RESTART;
        return true;
    }
    if (s->state == ST_AUTH) {
        if (hold) {
            s->state = ST_HELD;
            return true;
        }
        send_refresh0(s);
        return false;
    }
    if (s->state == ST_REFRESH) {
        uint64_t lat = (bt_now_ns() - s->start_ns) / 100000;
        g_lat[lat < LAT_BUCKETS ? lat : LAT_BUCKETS - 1]++;
        s->state = ST_IDLE;
        return true;
    }
    return false;
}

static void retransmit(slot_t *slots, int n, uint64_t now)
{
    for (int i = 0; i < n; i++) {
        slot_t *s = &slots[i];
        if ((s->state == ST_UNAUTH || s->state == ST_AUTH || s->state == ST_REFRESH) &&
            now - s->sent_ns > RTO_NS) {
            g_retx++;
            slot_send(s);
        }
    }
}

enum { LOOP_RATE, LOOP_HOLD, LOOP_DRAIN };

/* Runs the epoll loop until *finished reaches target or the deadline passes. RATE:
 * a finished slot starts over on a new socket; HOLD: slots stop once allocated; DRAIN:
 * slots stop after their Refresh(0). */
static void run_loop(slot_t *slots, int n, int mode, uint64_t deadline, uint64_t *finished,
                     uint64_t target)
{
    bool hold = mode == LOOP_HOLD;
    struct epoll_event evs[256];
    uint8_t buf[1500];
    uint64_t last_scan = bt_now_ns();
    while (*finished < target) {
        uint64_t now = bt_now_ns();
        if (now >= deadline)
            break;
        int ne = epoll_wait(g_ep, evs, 256, 20);
        for (int e = 0; e < ne; e++) {
            slot_t *s = &slots[evs[e].data.u32];
            for (;;) {
                ssize_t len = recv(s->fd, buf, sizeof buf, 0);
                if (len < 0)
                    break;
                bt_resp_t r;
                if (bt_parse(buf, (size_t)len, &r) != 0 || memcmp(r.tid, s->tid, 12) != 0)
                    continue;
                if (!on_response(s, &r, hold))
                    continue;
                bool restart = s->state == ST_RESTART && mode != LOOP_DRAIN;
                if (!restart)
                    (*finished)++;
                if (mode == LOOP_RATE || restart) {
                    epoll_ctl(g_ep, EPOLL_CTL_DEL, s->fd, NULL);
                    close(s->fd);
                    if (slot_open(s, evs[e].data.u32) == 0)
                        slot_start(s);
                }
                break;
            }
        }
        now = bt_now_ns();
        if (now - last_scan > 100000000ull) {
            retransmit(slots, n, now);
            last_scan = now;
        }
    }
}

static double lat_pct_ms(double q)
{
    uint64_t total = 0, acc = 0;
    for (int i = 0; i < LAT_BUCKETS; i++)
        total += g_lat[i];
    for (int i = 0; i < LAT_BUCKETS; i++) {
        acc += g_lat[i];
        if (acc > (uint64_t)((double)total * q))
            return i / 10.0;
    }
    return LAT_BUCKETS / 10.0;
}

static void print_errors(void)
{
    for (int c = 0; c < 700; c++)
        if (g_err[c])
            printf(" err_%d=%llu", c, (unsigned long long)g_err[c]);
}

static int run_rate(int conc, double duration)
{
    slot_t *slots = calloc((size_t)conc, sizeof *slots);
    for (int i = 0; i < conc; i++)
        if (slot_open(&slots[i], (uint32_t)i) != 0)
            return 1;
    uint64_t t0 = bt_now_ns();
    for (int i = 0; i < conc; i++)
        slot_start(&slots[i]);
    uint64_t deadline = t0 + (uint64_t)(duration * 1e9);
    run_loop(slots, conc, LOOP_RATE, deadline, &g_done, UINT64_MAX);
    double secs = (double)(bt_now_ns() - t0) / 1e9;
    printf("result mode=rate concurrency=%d duration_s=%.2f allocations=%llu allocs_per_s=%.0f "
           "retransmits=%llu seq_p50_ms=%.1f seq_p99_ms=%.1f",
           conc, secs, (unsigned long long)g_done, (double)g_done / secs,
           (unsigned long long)g_retx, lat_pct_ms(0.5), lat_pct_ms(0.99));
    print_errors();
    printf("\n");
    /* Leave nothing behind: slots caught mid-sequence may hold an allocation. */
    for (int i = 0; i < conc; i++) {
        if (slots[i].state == ST_REFRESH || slots[i].state == ST_AUTH) {
            send_refresh0(&slots[i]);
        }
    }
    usleep(200000);
    return 0;
}

static int run_hold(int n, int conc, int pid)
{
    slot_t *slots = calloc((size_t)n, sizeof *slots);
    long before = pid ? rss_kb(pid) : -1;
    uint64_t t0 = bt_now_ns(), held = 0;
    for (int i = 0; i < n; i++)
        if (slot_open(&slots[i], (uint32_t)i) != 0)
            return 1;
    /* At most conc sequences in flight: start the next ones as others finish. */
    int started = 0;
    while (held < (uint64_t)n && bt_now_ns() - t0 < PHASE_CAP_NS) {
        while (started < n && (uint64_t)started - held < (uint64_t)conc)
            slot_start(&slots[started++]);
        run_loop(slots, started, LOOP_HOLD, bt_now_ns() + 50000000ull, &held, held + 1);
    }
    usleep(300000);
    long with = pid ? rss_kb(pid) : -1;
    double secs = (double)(bt_now_ns() - t0) / 1e9;
    for (int i = 0; i < n; i++)
        if (slots[i].state == ST_HELD)
            send_refresh0(&slots[i]);
    uint64_t deleted = 0;
    run_loop(slots, n, LOOP_DRAIN, bt_now_ns() + 20000000000ull, &deleted, held);
    usleep(1200000);    /* the relay publishes and frees on its own ticks */
    long after = pid ? rss_kb(pid) : -1;
    printf("result mode=hold allocations=%llu seconds=%.2f deleted=%llu rss_before_kb=%ld "
           "rss_held_kb=%ld rss_after_kb=%ld bytes_per_alloc=%.0f retransmits=%llu",
           (unsigned long long)held, secs, (unsigned long long)deleted, before, with, after,
           held && pid ? (double)(with - before) * 1024.0 / (double)held : 0,
           (unsigned long long)g_retx);
    print_errors();
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    int conc = 64, hold = 0, pid = 0;
    double duration = 5;
    bool have_server = false;
    static const struct option lo[] = {
        {"server", required_argument, NULL, 's'}, {"user", required_argument, NULL, 'u'},
        {"pass", required_argument, NULL, 'w'}, {"concurrency", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'}, {"hold", required_argument, NULL, 'H'},
        {"pid", required_argument, NULL, 'P'}, {NULL, 0, NULL, 0},
    };
    for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (c) {
        case 's': have_server = bt_addr_parse(optarg, &g_server) == 0; break;
        case 'u': g_user = optarg; break;
        case 'w': g_pass = optarg; break;
        case 'c': conc = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'H': hold = atoi(optarg); break;
        case 'P': pid = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!have_server || conc < 1 || conc > 4096 || duration <= 0 || duration > 60 || hold < 0 ||
        hold > 15000) {
        fprintf(stderr, "usage: turn_allocs --server IP:PORT [--user U --pass P] "
                "[--concurrency 64] [--duration 5] | [--hold N --pid RELAY_PID]\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    g_ep = epoll_create1(0);
    return hold ? run_hold(hold, conc, pid) : run_rate(conc, duration);
}
