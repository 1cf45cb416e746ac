/* bench_chat.c: chat load generator. N users, each with one WebSocket connection
 * (bench/chat/wsc.c on one epoll thread), against a running parleyd:
 *
 *   direct: every user sends 1:1 messages to the next user (a ring), open loop at
 *           --rate messages/s in total (0: closed loop, --depth sends in flight per
 *           user); receivers acknowledge with a cursor every --ack-every messages or
 *           --ack-ms milliseconds, as a client on a busy conversation would.
 *   group:  user 0 creates a group of --group-size members and sends --rate group
 *           messages/s; every member device receives each one.
 *   ping:   every user sends parley.v1 "ping" requests (answered by the gateway, no
 *           store): the floor a chat message is compared with -- the same gateway,
 *           connections and generator, two frames and no database per round trip.
 *
 * It reports delivered messages per second over the measured interval and the
 * send-to-deliver latency (p50/p99/p999/max) of every delivery; in group mode also
 * the fan-out time of each message (until its last member had it). The send time is
 * the *scheduled* one (open loop), so a stalled generator or server shows up in the
 * latency instead of hiding (no coordinated omission).
 *
 * Usage: bench_chat --port P [--mode direct|group|ping] [--users N] [--rate R] [--depth D]
 *        [--seconds S] [--warmup S] [--payload BYTES] [--group-size G]
 *        [--ack-every K] [--ack-ms MS] [--pid PARLEYD_PID]
 * With --pid it also reports parleyd's CPU time per thread over the measured interval
 * and CPU microseconds per delivered message (server and generator): on a shared
 * machine those say more about capacity than wall-clock rates do.
 * Users are registered over HTTP first (run parleyd with a cheap scrypt cost and no
 * rate limits; bench/chat/run does).
 *
 * Threading: one thread. */
#include "wsc.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct user {
    wsc_t ws;
    int idx;
    char name[32];
    char token[96];
    uint64_t device_id;
    struct user *peer;
    int phase;                      /* 0 connecting, 1 authing, 2 syncing, 3 ready */
    uint32_t outstanding;           /* sends without a result */
    uint64_t seq;
    uint64_t max_msg;               /* highest message id received */
    uint32_t unacked;
    uint64_t last_ack_us;
    bool dirty;
    bool armed_out;
} user_t;

typedef struct grp_msg {
    uint64_t t_us;                  /* scheduled send time */
    uint32_t got;
    uint32_t max_us;
} grp_msg_t;

static struct opts {
    uint16_t port;
    const char *mode;
    int users;
    double rate;
    int depth;
    double seconds, warmup;
    int payload;
    int group_size;
    int ack_every;
    int ack_ms;
    int pid;
} o = { 0, "direct", 200, 0, 8, 10, 2, 100, 256, 32, 5, 0 };

static user_t *users;
static int ep;
static user_t **dirty;
static int n_dirty;
static char *payload_b64;
static uint64_t t_measure0, t_measure1;
static uint32_t *lat;               /* µs per delivery in the measured interval */
static size_t n_lat, cap_lat;
static uint32_t *sent_lat;
static size_t n_sent_lat, cap_sent_lat;
static uint32_t *gen_lag;           /* µs a measured send left after its scheduled time */
static size_t n_gen_lag, cap_gen_lag;
static uint64_t delivered_total, delivered_window, sent_results, errors, receipts, skipped;
static uint64_t group_id;
static grp_msg_t *gmsgs;
static size_t n_gmsgs;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void push_u32(uint32_t **a, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1 << 16;
        *a = realloc(*a, *cap * sizeof(**a));
        if (!*a)
            abort();
    }
    (*a)[(*n)++] = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static void mark_dirty(user_t *u)
{
    if (!u->dirty) {
        u->dirty = true;
        dirty[n_dirty++] = u;
    }
}

static void send_json(user_t *u, const char *s, size_t n)
{
    wsc_send_text(&u->ws, s, n);
    mark_dirty(u);
}

/* ---- CPU accounting ---------------------------------------------------------------- */

#define MAX_THREADS 64
typedef struct cpu_snap {
    int n;
    char comm[MAX_THREADS][32];
    double secs[MAX_THREADS];
    double self;
    double loadavg;
} cpu_snap_t;

static cpu_snap_t cpu0, cpu1;

static void cpu_snapshot(cpu_snap_t *s)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s->self = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
              (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &s->loadavg) != 1)
            s->loadavg = 0;
        fclose(f);
    }
    s->n = 0;
    if (!o.pid)
        return;
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/task", o.pid);
    DIR *d = opendir(path);
    struct dirent *e;
    long hz = sysconf(_SC_CLK_TCK);
    while (d && (e = readdir(d)) && s->n < MAX_THREADS) {
        if (e->d_name[0] == '.')
            continue;
        char p2[384], buf[1024];
        snprintf(p2, sizeof(p2), "%s/%s/stat", path, e->d_name);
        FILE *sf = fopen(p2, "r");
        if (!sf)
            continue;
        size_t k = fread(buf, 1, sizeof(buf) - 1, sf);
        fclose(sf);
        buf[k] = '\0';
        char *l = strchr(buf, '('), *r = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        if (!l || !r || sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                               &ut, &st) != 2)
            continue;
        snprintf(s->comm[s->n], sizeof(s->comm[0]), "%.*s", (int)(r - l - 1), l + 1);
        s->secs[s->n++] = (double)(ut + st) / (double)hz;
    }
    if (d)
        closedir(d);
}

static void report_cpu(double msgs)
{
    double wall = o.seconds, server = 0;
    printf("loadavg %.2f -> %.2f (other processes on this machine count too)\n",
           cpu0.loadavg, cpu1.loadavg);
    for (int i = 0; i < cpu1.n; i++) {
        double before = 0;
        for (int j = 0; j < cpu0.n; j++)
            if (!strcmp(cpu0.comm[j], cpu1.comm[i]))
                before = cpu0.secs[j];
        double used = cpu1.secs[i] - before;
        server += used;
        if (used / wall >= 0.01)
            printf("  parleyd thread %-10s %5.1f%% of a core\n", cpu1.comm[i], 100 * used / wall);
    }
    double gen = cpu1.self - cpu0.self;
    printf("cpu: generator %.1f%% of a core", 100 * gen / wall);
    if (o.pid)
        printf(", parleyd %.1f%%", 100 * server / wall);
    if (msgs > 0) {
        printf("; per delivered message: generator %.1f us", 1e6 * gen / msgs);
        if (o.pid)
            printf(", parleyd %.1f us", 1e6 * server / msgs);
    }
    printf("\n");
}

/* ---- JSON scraps: the server's frames are compact jansson output ------------------ */

static bool is_type(const char *msg, const char *type)
{
    size_t n = strlen(type);
    return strncmp(msg, "{\"type\":\"", 9) == 0 && strncmp(msg + 9, type, n) == 0 &&
           msg[9 + n] == '"';
}

static uint64_t num_field(const char *msg, const char *key)
{
    const char *p = strstr(msg, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

/* ---- protocol --------------------------------------------------------------------- */

static void send_ack(user_t *u, uint64_t t)
{
    char buf[96];
    int n = snprintf(buf, sizeof(buf), "{\"type\":\"chat.ack\",\"upto\":%" PRIu64 "}", u->max_msg);
    send_json(u, buf, (size_t)n);
    u->unacked = 0;
    u->last_ack_us = t;
}

static void on_delivery(user_t *u, const char *msg, uint64_t t)
{
    uint64_t id = num_field(msg, "\"message_id\":");
    if (id > u->max_msg)
        u->max_msg = id;
    const char *cid = strstr(msg, "\"client_id\":\"");
    if (cid && is_type(msg, "chat.message")) {
        /* client_id = "<user>:<seq>:<scheduled µs>" */
        const char *p = strchr(cid + 13, ':');
        p = p ? strchr(p + 1, ':') : NULL;
        uint64_t sched = p ? strtoull(p + 1, NULL, 10) : 0;
        uint64_t l = t > sched ? t - sched : 0;
        delivered_total++;
        if (sched >= t_measure0 && sched < t_measure1) {
            delivered_window++;
            push_u32(&lat, &n_lat, &cap_lat, l);
        }
        if (group_id) {
            uint64_t seq = strtoull(strchr(cid + 13, ':') + 1, NULL, 10);
            if (seq < n_gmsgs) {
                gmsgs[seq].got++;
                if (l > gmsgs[seq].max_us)
                    gmsgs[seq].max_us = l > UINT32_MAX ? UINT32_MAX : (uint32_t)l;
            }
        }
    }
    if (++u->unacked >= (uint32_t)o.ack_every)
        send_ack(u, t);
}

static void on_message(wsc_t *ws, char *msg, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    user_t *u = ws->user;
    uint64_t t = now_us();
    if (is_type(msg, "chat.message") || is_type(msg, "chat.event")) {
        on_delivery(u, msg, t);
    } else if (is_type(msg, "chat.send.result")) {
        u->outstanding--;
        sent_results++;
        uint64_t sched = num_field(msg, "\"id\":");
        if (sched >= t_measure0 && sched < t_measure1)
            push_u32(&sent_lat, &n_sent_lat, &cap_sent_lat, t > sched ? t - sched : 0);
    } else if (is_type(msg, "ping.result")) {
        u->outstanding--;
        uint64_t sched = num_field(msg, "\"id\":");
        if (sched >= t_measure0 && sched < t_measure1) {
            delivered_window++;
            push_u32(&lat, &n_lat, &cap_lat, t > sched ? t - sched : 0);
        }
    } else if (is_type(msg, "chat.receipt")) {
        receipts++;
    } else if (is_type(msg, "chat.queue_empty")) {
        u->phase = 3;
    } else if (is_type(msg, "auth.result")) {
        u->phase = 2;
        send_json(u, "{\"type\":\"chat.sync\",\"id\":1}", 27);
    } else if (is_type(msg, "chat.group.create.result")) {
        group_id = num_field(msg, "\"group_id\":");
    } else if (is_type(msg, "error")) {
        if (errors++ < 5)
            fprintf(stderr, "error frame: %.300s\n", msg);
        if (strstr(msg, "\"id\":") && u->outstanding)
            u->outstanding--;
    }
}

/* ---- set-up ------------------------------------------------------------------------ */

static int copy_str_field(const char *json, const char *key, char *out, size_t cap)
{
    const char *p = strstr(json, key);
    if (!p)
        return -1;
    p += strlen(key);
    size_t i = 0;
    while (p[i] && p[i] != '"' && i + 1 < cap) {
        out[i] = p[i];
        i++;
    }
    out[i] = '\0';
    return 0;
}

static int register_users(void)
{
    char tag[16], body[512], resp[4096];
    snprintf(tag, sizeof(tag), "b%x", (unsigned)(now_us() & 0xfffff));
    for (int i = 0; i < o.users; i++) {
        user_t *u = &users[i];
        u->idx = i;
        snprintf(u->name, sizeof(u->name), "%s_%d", tag, i);
        snprintf(body, sizeof(body), "{\"username\":\"%s\",\"password\":\"bench password\","
                 "\"device_name\":\"bench\"}", u->name);
        int st = wsc_http_post(o.port, "/v1/register", body, resp, sizeof(resp));
        if (st != 201 || copy_str_field(resp, "\"token\":\"", u->token, sizeof(u->token)) < 0) {
            fprintf(stderr, "register %s: HTTP %d %s\n", u->name, st, resp);
            return -1;
        }
        u->device_id = num_field(resp, "\"device_id\":");
    }
    return 0;
}

static void flush_dirty(void)
{
    for (int i = 0; i < n_dirty; i++) {
        user_t *u = dirty[i];
        u->dirty = false;
        int rc = wsc_flush(&u->ws);
        if (rc == 1 && !u->armed_out) {
            struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = u };
            epoll_ctl(ep, EPOLL_CTL_MOD, u->ws.fd, &ev);
            u->armed_out = true;
        }
    }
    n_dirty = 0;
}

static int poll_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++) {
        user_t *u = evs[i].data.ptr;
        if (evs[i].events & EPOLLOUT) {
            if (wsc_flush(&u->ws) == 0 && u->armed_out) {
                struct epoll_event ev = { .events = EPOLLIN, .data.ptr = u };
                epoll_ctl(ep, EPOLL_CTL_MOD, u->ws.fd, &ev);
                u->armed_out = false;
            }
            if (u->ws.state == WSC_HANDSHAKE && u->phase == 0)
                u->phase = 0;
        }
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            int prev = u->ws.state;
            if (wsc_on_readable(&u->ws, on_message, NULL) < 0) {
                fprintf(stderr, "user %d: connection closed\n", u->idx);
                epoll_ctl(ep, EPOLL_CTL_DEL, u->ws.fd, NULL);
                return -1;
            }
            if (prev == WSC_HANDSHAKE && u->ws.state == WSC_OPEN) {
                char buf[160];
                int k = snprintf(buf, sizeof(buf), "{\"type\":\"auth\",\"id\":0,\"token\":\"%s\"}",
                                 u->token);
                u->phase = 1;
                send_json(u, buf, (size_t)k);
            }
        }
    }
    flush_dirty();
    return 0;
}

static int connect_all(void)
{
    for (int i = 0; i < o.users; i++) {
        user_t *u = &users[i];
        if (wsc_connect(&u->ws, o.port, "/ws", "parley.v1") < 0)
            return -1;
        u->ws.user = u;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = u };
        epoll_ctl(ep, EPOLL_CTL_ADD, u->ws.fd, &ev);
        u->armed_out = true;
        if (i % 64 == 63 && poll_once(0) < 0)
            return -1;
    }
    uint64_t t0 = now_us();
    for (;;) {
        int ready = 0;
        for (int i = 0; i < o.users; i++)
            ready += users[i].phase == 3;
        if (ready == o.users)
            return 0;
        if (now_us() - t0 > 60000000) {
            fprintf(stderr, "only %d of %d users ready\n", ready, o.users);
            return -1;
        }
        if (poll_once(10) < 0)
            return -1;
    }
}

/* ---- load ------------------------------------------------------------------------ */

static void send_direct(user_t *u, uint64_t sched)
{
    char buf[512 + 4096];
    int n = snprintf(buf, sizeof(buf),
        "{\"type\":\"chat.send\",\"id\":%" PRIu64 ",\"client_id\":\"%d:%" PRIu64 ":%" PRIu64 "\","
        "\"to\":\"%s\",\"envelopes\":[{\"device_id\":%" PRIu64 ",\"ctype\":1,\"body\":\"%s\"}]}",
        sched, u->idx, u->seq++, sched, u->peer->name, u->peer->device_id, payload_b64);
    u->outstanding++;
    send_json(u, buf, (size_t)n);
}

static void send_ping(user_t *u, uint64_t sched)
{
    char buf[96];
    int n = snprintf(buf, sizeof(buf), "{\"type\":\"ping\",\"id\":%" PRIu64 "}", sched);
    u->outstanding++;
    send_json(u, buf, (size_t)n);
}

static void send_group(user_t *u, uint64_t sched)
{
    char buf[512 + 4096];
    if (u->seq < n_gmsgs)
        gmsgs[u->seq].t_us = sched;
    int n = snprintf(buf, sizeof(buf),
        "{\"type\":\"chat.send\",\"id\":%" PRIu64 ",\"client_id\":\"%d:%" PRIu64 ":%" PRIu64 "\","
        "\"group_id\":%" PRIu64 ",\"ctype\":3,\"body\":\"%s\"}",
        sched, u->idx, u->seq++, sched, group_id, payload_b64);
    u->outstanding++;
    send_json(u, buf, (size_t)n);
}

static void periodic_acks(uint64_t t)
{
    for (int i = 0; i < o.users; i++) {
        user_t *u = &users[i];
        if (u->unacked && t - u->last_ack_us >= (uint64_t)o.ack_ms * 1000)
            send_ack(u, t);
    }
}

static int run_load(void)
{
    bool group = strcmp(o.mode, "group") == 0, ping = strcmp(o.mode, "ping") == 0;
    void (*send_one)(user_t *, uint64_t) = group ? send_group : ping ? send_ping : send_direct;
    uint64_t t0 = now_us(), sent = 0, rr = 0, last_acks = t0;
    t_measure0 = t0 + (uint64_t)(o.warmup * 1e6);
    t_measure1 = t_measure0 + (uint64_t)(o.seconds * 1e6);
    uint64_t t_end = t_measure1 + 2000000;      /* let the measured sends land */
    int senders = group ? 1 : o.users;
    bool snap0 = false, snap1 = false;
    for (;;) {
        uint64_t t = now_us();
        if (t >= t_end)
            break;
        if (!snap0 && t >= t_measure0) {
            cpu_snapshot(&cpu0);
            snap0 = true;
        }
        if (!snap1 && t >= t_measure1) {
            cpu_snapshot(&cpu1);
            snap1 = true;
        }
        if (t < t_measure1) {
            if (o.rate > 0) {
                /* message k is due at t0 + k/rate: k = 0 goes out at once */
                uint64_t due = (uint64_t)((double)(t - t0) * o.rate / 1e6) + 1;
                while (sent < due) {
                    user_t *u = &users[rr++ % (uint64_t)senders];
                    uint64_t sched = t0 + (uint64_t)((double)sent * 1e6 / o.rate);
                    sent++;
                    if (u->outstanding >= 4096) {
                        skipped++;          /* the server is not keeping up: counted */
                        continue;
                    }
                    send_one(u, sched);
                    if (sched >= t_measure0)
                        push_u32(&gen_lag, &n_gen_lag, &cap_gen_lag, t - sched);
                }
            } else {
                for (int i = 0; i < senders; i++)
                    while (users[i].outstanding < (uint32_t)o.depth)
                        send_one(&users[i], t);
            }
        }
        if (t - last_acks >= 1000) {
            periodic_acks(t);
            last_acks = t;
        }
        if (poll_once(1) < 0)
            return -1;
    }
    return 0;
}

/* ---- report --------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint32_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i] / 1000.0;
}

static void report_lat(const char *what, uint32_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u32);
    printf("%-22s n=%zu p50=%.2f ms p99=%.2f ms p999=%.2f ms max=%.2f ms\n", what, n,
           pct(v, n, 0.50), pct(v, n, 0.99), pct(v, n, 0.999), n ? v[n - 1] / 1000.0 : 0.0);
}

static void report(void)
{
    printf("mode=%s users=%d rate=%.0f depth=%d payload=%dB seconds=%.1f ack_every=%d ack_ms=%d\n",
           o.mode, o.users, o.rate, o.depth, o.payload, o.seconds, o.ack_every, o.ack_ms);
    printf("delivered_per_s=%.0f (%s of requests sent in the measured %.1f s)\n",
           (double)delivered_window / o.seconds,
           strcmp(o.mode, "ping") ? "deliveries" : "ping answers", o.seconds);
    printf("sent_results=%" PRIu64 " delivered_total=%" PRIu64 " receipts=%" PRIu64
           " errors=%" PRIu64 " skipped=%" PRIu64 "\n", sent_results, delivered_total, receipts,
           errors, skipped);
    report_cpu((double)delivered_window);
    report_lat(strcmp(o.mode, "ping") ? "send->deliver" : "ping round trip", lat, n_lat);
    report_lat("send->sent(ack)", sent_lat, n_sent_lat);
    if (n_gen_lag)      /* open loop: the generator's own lateness, part of the figures above */
        report_lat("generator send lag", gen_lag, n_gen_lag);
    if (group_id) {
        uint32_t *fan = calloc(n_gmsgs + 1, sizeof(*fan));
        size_t k = 0, incomplete = 0;
        for (size_t i = 0; i < n_gmsgs; i++) {
            if (gmsgs[i].t_us < t_measure0 || gmsgs[i].t_us >= t_measure1)
                continue;
            if (gmsgs[i].got < (uint32_t)(o.group_size - 1))
                incomplete++;
            fan[k++] = gmsgs[i].max_us;
        }
        report_lat("group fan-out (last)", fan, k);
        printf("group messages=%zu incomplete=%zu members=%d\n", k, incomplete, o.group_size);
        free(fan);
    }
}

static void make_payload(void)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = ((size_t)o.payload + 2) / 3 * 4;
    payload_b64 = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        payload_b64[i] = b64[(i * 7 + 3) % 64];
    payload_b64[n] = '\0';
}

static int create_group(void)
{
    size_t cap = 64 + (size_t)o.group_size * 40;
    char *buf = malloc(cap);
    size_t n = (size_t)snprintf(buf, cap, "{\"type\":\"chat.group.create\",\"id\":1,"
                                "\"name\":\"bench\",\"members\":[");
    for (int i = 1; i < o.group_size; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\"", i > 1 ? "," : "", users[i].name);
    n += (size_t)snprintf(buf + n, cap - n, "]}");
    send_json(&users[0], buf, n);
    free(buf);
    uint64_t t0 = now_us();
    while (!group_id && now_us() - t0 < 10000000)
        if (poll_once(10) < 0)
            return -1;
    /* Let the creation events arrive and be acknowledged before measuring. */
    t0 = now_us();
    while (now_us() - t0 < 1000000) {
        periodic_acks(now_us());
        if (poll_once(10) < 0)
            return -1;
    }
    delivered_total = 0;
    return group_id ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_chat --port P [--mode direct|group|ping] [--users N] [--rate R]\n"
            "  [--depth D] [--seconds S] [--warmup S] [--payload B] [--group-size G]\n"
            "  [--ack-every K] [--ack-ms MS] [--pid PARLEYD_PID]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        { "port", 1, 0, 'p' }, { "mode", 1, 0, 'm' }, { "users", 1, 0, 'u' },
        { "rate", 1, 0, 'r' }, { "depth", 1, 0, 'd' }, { "seconds", 1, 0, 's' },
        { "warmup", 1, 0, 'w' }, { "payload", 1, 0, 'b' }, { "group-size", 1, 0, 'g' },
        { "ack-every", 1, 0, 'k' }, { "ack-ms", 1, 0, 'a' }, { "pid", 1, 0, 'P' },
        { 0, 0, 0, 0 } };
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'p': o.port = (uint16_t)atoi(optarg); break;
        case 'm': o.mode = optarg; break;
        case 'u': o.users = atoi(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 'd': o.depth = atoi(optarg); break;
        case 's': o.seconds = atof(optarg); break;
        case 'w': o.warmup = atof(optarg); break;
        case 'b': o.payload = atoi(optarg); break;
        case 'g': o.group_size = atoi(optarg); break;
        case 'k': o.ack_every = atoi(optarg); break;
        case 'a': o.ack_ms = atoi(optarg); break;
        case 'P': o.pid = atoi(optarg); break;
        default: usage();
        }
    }
    if (!o.port || o.users < 2 || o.payload < 1 || o.payload > 3000)
        usage();
    if (!strcmp(o.mode, "group") && o.group_size > o.users)
        o.users = o.group_size;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    struct rlimit rl = { (rlim_t)o.users + 256, (rlim_t)o.users + 256 };
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)o.users + 64)
            fprintf(stderr, "warning: RLIMIT_NOFILE %lu is low\n", (unsigned long)rl.rlim_cur);
    }
    users = calloc((size_t)o.users, sizeof(*users));
    dirty = calloc((size_t)o.users, sizeof(*dirty));
    make_payload();
    ep = epoll_create1(EPOLL_CLOEXEC);
    fprintf(stderr, "registering %d users...\n", o.users);
    if (register_users() < 0)
        return 1;
    for (int i = 0; i < o.users; i++)
        users[i].peer = &users[(i + 1) % o.users];
    fprintf(stderr, "connecting...\n");
    if (connect_all() < 0)
        return 1;
    if (!strcmp(o.mode, "group")) {
        n_gmsgs = (size_t)((o.rate > 0 ? o.rate : 1000) * (o.warmup + o.seconds + 5)) + 1024;
        gmsgs = calloc(n_gmsgs, sizeof(*gmsgs));
        if (create_group() < 0) {
            fprintf(stderr, "group create failed\n");
            return 1;
        }
    }
    fprintf(stderr, "running %.1f s (+%.1f s warm-up)...\n", o.seconds, o.warmup);
    if (run_load() < 0)
        return 1;
    report();
    for (int i = 0; i < o.users; i++)
        wsc_close(&users[i].ws);
    return errors ? 3 : 0;
}
