/* bench_ws.c: the signaling gateway's connection benchmark (not a test). A minimal
 * hand-rolled WebSocket client on epoll (RFC 6455: upgrade, masked client frames,
 * pings/pongs, close) that opens N connections to parleyd, authenticates each with its
 * own device token (parley.v1 "auth"), keeps them idle with pings, and reports:
 *   - connect+auth rate (handshake + auth.result, per second),
 *   - parleyd's resident memory per connection (VmRSS from /proc/<pid>/status),
 *   - parleyd's CPU at rest (utime+stime from /proc/<pid>/stat over --hold seconds).
 *
 *   bench_ws setup --port P --n N --tokens FILE [--threads T]
 *       registers N users over HTTP (POST /v1/register, one device each) and writes one
 *       session token per line to FILE.
 *   bench_ws run --port P --tokens FILE --n N --pid PARLEYD_PID [--procs K]
 *       [--src 127.0.0.2-127.0.0.9] [--inflight M] [--hold S] [--ping S]
 *
 * Several source addresses get past the ~28k ephemeral ports of one (IP_BIND_ADDRESS_NO_PORT
 * lets the kernel pick a port per 4-tuple at connect); several worker processes get past
 * a per-process file limit. Workers report to the parent over a pipe.
 *
 * What it does not do: TLS, fragmentation, extensions, anything after auth but pings.
 *
 * Threading: one thread per worker process (run); setup uses T blocking threads. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RX_CAP 1024
#define MAX_SRC 64

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* ---- options ------------------------------------------------------------------------ */

typedef struct opts {
    const char *mode, *tokens, *host;
    int port, n, procs, inflight, threads, hold_s, ping_s;
    pid_t pid;
    struct in_addr src[MAX_SRC];
    int n_src;
} opts_t;

static void parse_src(opts_t *o, const char *s)
{
    char a[32], b[32];
    struct in_addr lo, hi;
    if (sscanf(s, "%31[0-9.]-%31[0-9.]", a, b) != 2 || !inet_aton(a, &lo) || !inet_aton(b, &hi))
        die("--src: expected A.B.C.D-A.B.C.E");
    for (uint32_t x = ntohl(lo.s_addr); x <= ntohl(hi.s_addr) && o->n_src < MAX_SRC; x++)
        o->src[o->n_src++].s_addr = htonl(x);
}

static void parse_opts(opts_t *o, int argc, char **argv)
{
    *o = (opts_t){ .host = "127.0.0.1", .procs = 1, .inflight = 500, .threads = 16,
                   .hold_s = 60, .ping_s = 25 };
    if (argc < 2)
        die("usage: bench_ws setup|run --port P --n N --tokens FILE [--pid PID] ...");
    o->mode = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) o->port = atoi(v);
        else if (!strcmp(k, "--n")) o->n = atoi(v);
        else if (!strcmp(k, "--tokens")) o->tokens = v;
        else if (!strcmp(k, "--pid")) o->pid = (pid_t)atoi(v);
        else if (!strcmp(k, "--procs")) o->procs = atoi(v);
        else if (!strcmp(k, "--inflight")) o->inflight = atoi(v);
        else if (!strcmp(k, "--threads")) o->threads = atoi(v);
        else if (!strcmp(k, "--hold")) o->hold_s = atoi(v);
        else if (!strcmp(k, "--ping")) o->ping_s = atoi(v);
        else if (!strcmp(k, "--src")) parse_src(o, v);
        else die("unknown option %s", k);
    }
    if (!o->port || o->n <= 0 || !o->tokens)
        die("--port, --n and --tokens are required");
    if (!o->n_src) {
        o->src[0].s_addr = htonl(INADDR_LOOPBACK);
        o->n_src = 1;
    }
}

/* ---- /proc ------------------------------------------------------------------------------ */

static long proc_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(buf, sizeof(buf), f)) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    const char *p = strrchr(buf, ')');     /* comm may hold spaces */
    unsigned long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- tokens ------------------------------------------------------------------------------ */

static char **load_tokens(const char *path, int n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("%s: %s", path, strerror(errno));
    char **t = calloc((size_t)n, sizeof(*t)), line[256];
    int k = 0;
    while (k < n && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0])
            t[k++] = strdup(line);
    }
    fclose(f);
    if (k < n)
        die("%s has %d tokens, %d needed (run setup)", path, k, n);
    return t;
}

/* ---- setup: registration over HTTP ------------------------------------------------------- */

typedef struct setup_ctx {
    const opts_t *o;
    int next;
    int failed;
    char **tokens;
    pthread_mutex_t lock;
} setup_ctx_t;

static int http_register(const opts_t *o, int i, char *token, size_t cap)
{
    char body[160], req[512], resp[4096];
    int bl = snprintf(body, sizeof(body),
                      "{\"username\":\"bench%07d\",\"password\":\"bench-password\","
                      "\"device_name\":\"d\"}", i);
    int rl = snprintf(req, sizeof(req),
                      "POST /v1/register HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\nConnection: close\r\n\r\n%s", o->host, o->port, bl, body);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port) };
    inet_aton(o->host, &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        write(fd, req, (size_t)rl) != rl) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t got = 0;
    ssize_t r;
    while (got < sizeof(resp) - 1 && (r = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
        got += (size_t)r;
    resp[got] = '\0';
    struct linger lg = { 1, 0 };        /* no TIME_WAIT pile-up on the client side */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    const char *t = strstr(resp, "\"token\":\"");
    if (strncmp(resp, "HTTP/1.1 201", 12) != 0 || !t)
        return strstr(resp, " 503 ") || strstr(resp, " 429 ") ? 1 : -1;   /* 1: retry */
    t += 9;
    size_t n = strcspn(t, "\"");
    if (n >= cap)
        return -1;
    memcpy(token, t, n);
    token[n] = '\0';
    return 0;
}

static void *setup_thread(void *arg)
{
    setup_ctx_t *s = arg;
    char tok[128];
    for (;;) {
        pthread_mutex_lock(&s->lock);
        int i = s->next++;
        pthread_mutex_unlock(&s->lock);
        if (i >= s->o->n)
            return NULL;
        int rc, tries = 0;
        while ((rc = http_register(s->o, i, tok, sizeof(tok))) == 1 && tries++ < 1000)
            usleep(20000);
        pthread_mutex_lock(&s->lock);
        if (rc == 0)
            s->tokens[i] = strdup(tok);
        else
            s->failed++;
        pthread_mutex_unlock(&s->lock);
    }
}

static int run_setup(const opts_t *o)
{
    setup_ctx_t s = { .o = o, .tokens = calloc((size_t)o->n, sizeof(char *)) };
    pthread_mutex_init(&s.lock, NULL);
    pthread_t th[64];
    int nt = o->threads < 64 ? o->threads : 64;
    uint64_t t0 = now_us();
    for (int i = 0; i < nt; i++)
        pthread_create(&th[i], NULL, setup_thread, &s);
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(now_us() - t0) / 1e6;
    FILE *f = fopen(o->tokens, "w");
    if (!f)
        die("%s: %s", o->tokens, strerror(errno));
    for (int i = 0; i < o->n; i++)
        if (s.tokens[i])
            fprintf(f, "%s\n", s.tokens[i]);
    fclose(f);
    printf("setup: registered %d users in %.1f s (%.0f/s, scrypt on parleyd's KDF threads), "
           "%d failed\n", o->n - s.failed, secs, (o->n - s.failed) / secs, s.failed);
    return s.failed ? 1 : 0;
}

/* ---- run: one worker's connections -------------------------------------------------------- */

enum { C_CONNECTING = 1, C_UPGRADING, C_AUTHING, C_AUTHED, C_DEAD };

typedef struct conn {
    int fd;
    uint8_t state;
    uint16_t rx_len;
    const char *token;
    char *rx;                       /* RX_CAP bytes */
    uint64_t skip;                  /* payload bytes of a large frame still to drop */
} conn_t;

typedef struct report {              /* worker -> parent, over a pipe */
    int authed, failed, closed;
} report_t;

typedef struct worker {
    const opts_t *o;
    int ep, inflight, started, n;
    conn_t *conns;
    int first;                      /* global index of conns[0] */
    report_t rep;
    uint32_t mask_seed;
} worker_t;

static uint32_t next_mask(worker_t *w)
{
    w->mask_seed = w->mask_seed * 1664525u + 1013904223u;
    return w->mask_seed;
}

/* A masked client frame (RFC 6455 §5.3: clients mask every frame). */
static int send_frame(worker_t *w, conn_t *c, int opcode, const void *data, size_t len)
{
    uint8_t buf[512];
    size_t h = 0;
    if (len > sizeof(buf) - 8)
        return -1;
    buf[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        buf[h++] = (uint8_t)(0x80 | len);
    } else {
        buf[h++] = 0x80 | 126;
        buf[h++] = (uint8_t)(len >> 8);
        buf[h++] = (uint8_t)len;
    }
    uint32_t m = next_mask(w);
    memcpy(buf + h, &m, 4);
    const uint8_t *mk = buf + h, *p = data;
    h += 4;
    for (size_t i = 0; i < len; i++)
        buf[h + i] = p[i] ^ mk[i & 3];
    return write(c->fd, buf, h + len) == (ssize_t)(h + len) ? 0 : -1;
}

static void conn_fail(worker_t *w, conn_t *c, bool was_authed)
{
    if (c->state == C_DEAD)
        return;
    if (c->state != C_AUTHED)
        w->inflight--;
    if (was_authed)
        w->rep.closed++;
    else
        w->rep.failed++;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = C_DEAD;
}

static void conn_start(worker_t *w, int i)
{
    conn_t *c = &w->conns[i];
    int g = w->first + i;
    struct sockaddr_in src = { .sin_family = AF_INET, .sin_addr = w->o->src[g % w->o->n_src] };
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)w->o->port) };
    inet_aton(w->o->host, &dst.sin_addr);
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->rx = malloc(RX_CAP);
    c->state = C_CONNECTING;
    w->inflight++;
    if (c->fd < 0) {
        w->rep.failed++;
        w->inflight--;
        c->state = C_DEAD;
        return;
    }
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)i };
    if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) ||
        epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        close(c->fd);
        w->rep.failed++;
        w->inflight--;
        c->state = C_DEAD;
    }
}

static void on_connected(worker_t *w, conn_t *c, int i)
{
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: cGFybGV5LWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: parley.v1\r\n\r\n", w->o->host, w->o->port);
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    if (write(c->fd, req, (size_t)n) != n) {
        conn_fail(w, c, false);
        return;
    }
    c->state = C_UPGRADING;
}

/* One complete server frame at c->rx: acts on it. */
static void on_frame(worker_t *w, conn_t *c, int op, const uint8_t *pl, size_t len)
{
    if (op == 0x9) {                        /* ping -> pong with the same payload */
        if (send_frame(w, c, 0xA, pl, len) < 0)
            conn_fail(w, c, c->state == C_AUTHED);
    } else if (op == 0x8) {
        conn_fail(w, c, c->state == C_AUTHED);
    } else if (op == 0x1 && c->state == C_AUTHING) {
        if (len >= 26 && memmem(pl, len, "\"auth.result\"", 13)) {
            c->state = C_AUTHED;
            w->inflight--;
            w->rep.authed++;
        } else {
            conn_fail(w, c, false);
        }
    }
}

/* Consumes whole frames from c->rx; large payloads are skipped as they stream in. */
static void parse_frames(worker_t *w, conn_t *c)
{
    size_t off = 0;
    while (c->state != C_DEAD) {
        uint8_t *p = (uint8_t *)c->rx + off;
        size_t avail = c->rx_len - off;
        if (c->skip) {
            size_t k = avail < c->skip ? avail : c->skip;
            c->skip -= k;
            off += k;
            if (c->skip)
                break;
            continue;
        }
        if (avail < 2)
            break;
        int op = p[0] & 0x0f;
        uint64_t len = p[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
            h = 10;
        }
        if (h + len > RX_CAP) {             /* a push we do not read: drop it */
            off += h;
            c->skip = len;
            continue;
        }
        if (avail < h + len)
            break;
        on_frame(w, c, op, p + h, (size_t)len);
        off += h + (size_t)len;
    }
    if (c->state != C_DEAD) {
        memmove(c->rx, c->rx + off, c->rx_len - off);
        c->rx_len = (uint16_t)(c->rx_len - off);
    }
}

static void on_upgrade_data(worker_t *w, conn_t *c)
{
    char *end = memmem(c->rx, c->rx_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->rx_len == RX_CAP)
            conn_fail(w, c, false);
        return;
    }
    if (strncmp(c->rx, "HTTP/1.1 101", 12) != 0) {
        conn_fail(w, c, false);
        return;
    }
    size_t hl = (size_t)(end + 4 - c->rx);
    memmove(c->rx, c->rx + hl, c->rx_len - hl);
    c->rx_len = (uint16_t)(c->rx_len - hl);
    char auth[256];
    int n = snprintf(auth, sizeof(auth), "{\"type\":\"auth\",\"id\":1,\"token\":\"%s\"}", c->token);
    c->state = C_AUTHING;
    if (send_frame(w, c, 0x1, auth, (size_t)n) < 0)
        conn_fail(w, c, false);
    else if (c->rx_len)
        parse_frames(w, c);
}

static void on_readable(worker_t *w, conn_t *c)
{
    for (;;) {
        ssize_t r = read(c->fd, c->rx + c->rx_len, RX_CAP - c->rx_len);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_fail(w, c, c->state == C_AUTHED);
            return;
        }
        if (r < 0)
            return;
        c->rx_len = (uint16_t)(c->rx_len + r);
        if (c->state == C_UPGRADING)
            on_upgrade_data(w, c);
        else
            parse_frames(w, c);
        if (c->state == C_DEAD || c->rx_len == RX_CAP)
            return;
    }
}

static void on_event(worker_t *w, uint32_t i, uint32_t events)
{
    conn_t *c = &w->conns[i];
    if (c->state == C_DEAD)
        return;
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            conn_fail(w, c, false);
            return;
        }
        if (events & EPOLLOUT)
            on_connected(w, c, (int)i);
        return;
    }
    on_readable(w, c);
}

/* Sends each authenticated connection a WebSocket ping every ping_s seconds, spread
 * over the period (the server answers with a pong: both ends see traffic). */
static void ping_some(worker_t *w, uint64_t *cursor, uint64_t now, uint64_t *last)
{
    if (!w->o->ping_s || now - *last < 100000)
        return;
    uint64_t per_tick = (uint64_t)w->n * (now - *last) / ((uint64_t)w->o->ping_s * 1000000u) + 1;
    *last = now;
    for (uint64_t k = 0; k < per_tick; k++, (*cursor)++) {
        conn_t *c = &w->conns[*cursor % (uint64_t)w->n];
        if (c->state == C_AUTHED && send_frame(w, c, 0x9, NULL, 0) < 0)
            conn_fail(w, c, true);
    }
}

static void worker_main(const opts_t *o, int first, int n, char **tokens, int report_fd)
{
    worker_t w = { .o = o, .n = n, .first = first, .mask_seed = (uint32_t)getpid() };
    w.ep = epoll_create1(EPOLL_CLOEXEC);
    w.conns = calloc((size_t)n, sizeof(*w.conns));
    for (int i = 0; i < n; i++)
        w.conns[i].token = tokens[first + i];
    struct epoll_event evs[1024];
    uint64_t last_report = 0, last_ping = now_us(), ping_cursor = 0;
    for (;;) {
        while (w.started < n && w.inflight < o->inflight)
            conn_start(&w, w.started++);
        int k = epoll_wait(w.ep, evs, 1024, 50);
        for (int j = 0; j < k; j++)
            on_event(&w, evs[j].data.u32, evs[j].events);
        uint64_t now = now_us();
        if (w.started == n && w.inflight == 0)
            ping_some(&w, &ping_cursor, now, &last_ping);
        if (now - last_report > 50000) {
            last_report = now;
            if (write(report_fd, &w.rep, sizeof(w.rep)) != sizeof(w.rep))
                exit(0);            /* the parent is gone */
        }
    }
}

/* ---- run: the parent --------------------------------------------------------------------- */

typedef struct totals {
    report_t sum;
    report_t *per;
} totals_t;

static void collect(int *fds, int procs, totals_t *t, int timeout_ms)
{
    struct timespec ts = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    t->sum = (report_t){ 0 };
    for (int p = 0; p < procs; p++) {
        report_t r;
        while (read(fds[p], &r, sizeof(r)) == sizeof(r))
            t->per[p] = r;          /* the latest report wins */
        t->sum.authed += t->per[p].authed;
        t->sum.failed += t->per[p].failed;
        t->sum.closed += t->per[p].closed;
    }
}

static int run_bench(const opts_t *o)
{
    char **tokens = load_tokens(o->tokens, o->n);
    int procs = o->procs, fds[256];
    pid_t kids[256];
    if (procs < 1 || procs > 256)
        die("--procs 1..256");
    long rss0 = o->pid ? proc_rss_kib(o->pid) : -1;
    totals_t t = { .per = calloc((size_t)procs, sizeof(report_t)) };
    uint64_t t0 = now_us();
    for (int p = 0; p < procs; p++) {
        int pf[2];
        if (pipe(pf) < 0)
            die("pipe: %s", strerror(errno));
        int first = (int)((long)o->n * p / procs), last = (int)((long)o->n * (p + 1) / procs);
        kids[p] = fork();
        if (kids[p] == 0) {
            close(pf[0]);
            worker_main(o, first, last - first, tokens, pf[1]);
        }
        close(pf[1]);
        fcntl(pf[0], F_SETFL, O_NONBLOCK);
        fds[p] = pf[0];
    }
    uint64_t t_done = 0, last_print = t0;
    printf("connecting %d WebSockets from %d worker(s), %d source address(es), %d in flight "
           "per worker...\n", o->n, procs, o->n_src, o->inflight);
    for (;;) {
        collect(fds, procs, &t, 50);        /* workers report every 200 ms */
        uint64_t now = now_us();
        double el = (double)(now - t0) / 1e6;
        bool done = t.sum.authed + t.sum.failed >= o->n;
        if (now - last_print >= 1000000 || done) {
            last_print = now;
            printf("  t=%5.1fs authed=%d failed=%d closed=%d rss=%ld KiB\n", el, t.sum.authed,
                   t.sum.failed, t.sum.closed, o->pid ? proc_rss_kib(o->pid) : -1L);
        }
        if (done) {
            t_done = now;
            break;
        }
        if (el > 600)
            break;
    }
    double setup_s = (double)((t_done ? t_done : now_us()) - t0) / 1e6;
    /* Let allocator caches and the kernel settle before reading memory. */
    collect(fds, procs, &t, 3000);
    long rss1 = o->pid ? proc_rss_kib(o->pid) : -1;
    double cpu0 = o->pid ? proc_cpu_s(o->pid) : -1;
    uint64_t h0 = now_us();
    for (int s = 0; s < o->hold_s; s += 5)
        collect(fds, procs, &t, 5000);
    double held = (double)(now_us() - h0) / 1e6;
    double cpu1 = o->pid ? proc_cpu_s(o->pid) : -1;
    long rss2 = o->pid ? proc_rss_kib(o->pid) : -1;
    printf("\nresults\n");
    printf("  connections authenticated   %d of %d (%d failed, %d closed while idle)\n",
           t.sum.authed, o->n, t.sum.failed, t.sum.closed);
    printf("  connect+auth                %.2f s, %.0f per second\n", setup_s,
           t.sum.authed / setup_s);
    if (o->pid) {
        printf("  parleyd RSS                 %ld KiB before, %ld KiB with all connected, "
               "%ld KiB after %.0f s idle\n", rss0, rss1, rss2, held);
        printf("  parleyd RSS per connection  %.2f KiB (target <= 10 KiB)\n",
               t.sum.authed ? (double)(rss2 - rss0) / t.sum.authed : 0.0);
        printf("  parleyd CPU at rest         %.2f%% of one core over %.0f s (%d connections, "
               "client pings every %d s)\n", (cpu1 - cpu0) / held * 100, held, t.sum.authed,
               o->ping_s);
    }
    for (int p = 0; p < procs; p++) {
        kill(kids[p], SIGKILL);
        waitpid(kids[p], NULL, 0);
    }
    return t.sum.authed == o->n ? 0 : 1;
}

int main(int argc, char **argv)
{
    opts_t o;
    parse_opts(&o, argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(o.mode, "setup"))
        return run_setup(&o);
    if (!strcmp(o.mode, "run"))
        return run_bench(&o);
    die("mode must be setup or run");
}
