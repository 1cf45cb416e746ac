/* sfu_load.c: SFU load tool. Runs the SFU (its own media threads) and, in the same
 * process on separate client threads, publishers that send synthetic 720p-class video
 * (one VP8-shaped stream at --kbps, 30 frames/s) into rooms and pure subscribers that
 * receive every publisher of their room. Reports forwarded packets per second, the CPU
 * the SFU's media threads used per 1,000 subscriber-streams, and loss measured at the
 * subscribers from RTP sequence gaps.
 *
 *   sfu_load [--rooms 4] [--publishers 2] [--subscribers 20] [--kbps 1500] [--audio]
 *            [--equal-sizes] [--seconds 10] [--media-threads 1] [--client-threads 1]
 *
 * A frame's packets differ in size by one byte the way libwebrtc splits them (the SFU
 * sends runs of equal-size datagrams with UDP GSO, so equal sizes would flatter it);
 * --equal-sizes sends them all the same size.
 *
 * Subscribers count packets from the clear SRTP header (no decryption), so the client
 * side costs less than a browser; the SFU side is the real forwarding path (decrypt,
 * rewrite, encrypt per subscriber, one sendmmsg per subscriber socket per loop
 * iteration, sfu_sendq.c). Everything runs on 127.0.0.1.
 *
 * Threading: the main thread sets up and measures; each client thread owns its clients
 * and a GMainContext; SFU events are routed to the owning client thread through a
 * pthread-locked queue. */
#include "bench/sfu/sfu_client.h"
#include "relay/sfu/sfu_int.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct ev { uint64_t to; char *json; } ev_t;

typedef struct cthread {
    unsigned index;
    GMainContext *ctx;
    GThread *thread;
    pthread_mutex_t lock;
    GQueue events;
    GArray *ids;                    /* uint64_t participant ids to create here */
    GArray *roles;                  /* bool publisher */
    GArray *rooms;                  /* unsigned room index */
    GPtrArray *clients;
    atomic_bool stop;
    atomic_uint snap_req, snap_done;
    pl_sfc_totals_t snap;           /* written by the thread, read after snap_done */
    atomic_uint connected;
} cthread_t;

static struct {
    unsigned rooms, pubs, subs, kbps, seconds, media_threads, client_threads;
    bool audio, equal_sizes;
} g_opt = { 4, 2, 20, 1500, 10, 1, 1, false, false };

static pl_sfu_t *g_sfu;
static cthread_t *g_ct;

static void sink(void *ctx, uint64_t pid, const char *json)
{
    PL_UNUSED(ctx);
    cthread_t *t = &g_ct[pid % g_opt.client_threads];
    ev_t *e = g_new(ev_t, 1);
    e->to = pid;
    e->json = g_strdup(json);
    pthread_mutex_lock(&t->lock);
    g_queue_push_tail(&t->events, e);
    pthread_mutex_unlock(&t->lock);
    g_main_context_wakeup(t->ctx);
}

static void signal_cb(void *arg, pl_sfc_t *c, const char *type, const char *sdp)
{
    PL_UNUSED(c);
    uint64_t id = (uint64_t)(uintptr_t)arg;
    if (type[0] == 'o')
        pl_sfu_offer(g_sfu, id, sdp);
    else
        pl_sfu_answer(g_sfu, id, sdp);
}

static void drain_events(cthread_t *t, SSL_CTX *ssl)
{
    PL_UNUSED(ssl);
    for (;;) {
        pthread_mutex_lock(&t->lock);
        ev_t *e = g_queue_pop_head(&t->events);
        pthread_mutex_unlock(&t->lock);
        if (!e)
            return;
        for (guint i = 0; i < t->clients->len; i++)
            if (g_array_index(t->ids, uint64_t, i) == e->to)
                pl_sfc_on_event(g_ptr_array_index(t->clients, i), e->json);
        g_free(e->json);
        g_free(e);
    }
}

static void snapshot(cthread_t *t)
{
    pl_sfc_totals_t sum = { 0 };
    unsigned connected = 0;
    for (guint i = 0; i < t->clients->len; i++) {
        pl_sfc_totals_t x;
        pl_sfc_totals(g_ptr_array_index(t->clients, i), &x);
        sum.sent_packets += x.sent_packets;
        sum.sent_bytes += x.sent_bytes;
        sum.rx_packets += x.rx_packets;
        sum.rx_bytes += x.rx_bytes;
        sum.rx_gaps += x.rx_gaps;
        sum.errors += x.errors;
        connected += pl_sfc_connected(g_ptr_array_index(t->clients, i));
    }
    t->snap = sum;
    atomic_store(&t->connected, connected);
}

static gboolean wake(gpointer d) { PL_UNUSED(d); return G_SOURCE_CONTINUE; }

static gpointer client_main(gpointer arg)
{
    cthread_t *t = arg;
    char fp[128];
    g_main_context_push_thread_default(t->ctx);
    SSL_CTX *ssl = pl_dtls_ctx_create(NULL, fp, sizeof(fp));
    for (guint i = 0; i < t->ids->len; i++) {
        uint64_t id = g_array_index(t->ids, uint64_t, i);
        bool pub = g_array_index(t->roles, gboolean, i);
        char room[32];
        g_snprintf(room, sizeof(room), "load-%u", g_array_index(t->rooms, unsigned, i));
        pl_sfu_join(g_sfu, room, id, NULL);
        pl_sfc_opts_t o = { .ctx = t->ctx, .ssl_ctx = ssl, .fingerprint = fp, .id = id,
                            .audio = pub && g_opt.audio, .video = pub, .layers = 1,
                            .video_kbps = g_opt.kbps, .count_only = !pub,
                            .equal_sizes = g_opt.equal_sizes,
                            .signal = signal_cb, .arg = (void *)(uintptr_t)id };
        pl_sfc_t *c = pl_sfc_create(&o);
        g_ptr_array_add(t->clients, c);
        pl_sfc_start(c);
    }
    GSource *tick = g_timeout_source_new(2);
    g_source_set_callback(tick, wake, NULL, NULL);
    g_source_attach(tick, t->ctx);
    unsigned seen = 0;
    while (!atomic_load(&t->stop)) {
        g_main_context_iteration(t->ctx, TRUE);
        drain_events(t, ssl);
        for (guint i = 0; i < t->clients->len; i++)
            pl_sfc_pump(g_ptr_array_index(t->clients, i));
        unsigned req = atomic_load(&t->snap_req);
        if (req != seen) {
            snapshot(t);
            seen = req;
            atomic_store(&t->snap_done, req);
        }
    }
    for (guint i = 0; i < t->clients->len; i++)
        pl_sfc_destroy(g_ptr_array_index(t->clients, i));
    g_source_destroy(tick);
    g_source_unref(tick);
    gint64 end = g_get_monotonic_time() + 500 * 1000;   /* the SFU may still send */
    while (g_main_context_iteration(t->ctx, FALSE) && g_get_monotonic_time() < end)
        ;
    SSL_CTX_free(ssl);
    g_main_context_pop_thread_default(t->ctx);
    return NULL;
}

/* CPU seconds used by threads whose name starts with prefix (/proc/self/task). */
static double threads_cpu(const char *prefix)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    double sum = 0;
    long hz = sysconf(_SC_CLK_TCK);
    while (d && (e = readdir(d))) {
        char path[300], buf[512];
        g_snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        if (!open || !close || strncmp(open + 1, prefix, strlen(prefix)) != 0)
            continue;
        unsigned long ut = 0, st = 0;
        /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt
         * cmajflt utime stime */
        sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
        sum += (double)(ut + st) / (double)hz;
    }
    if (d)
        closedir(d);
    return sum;
}

typedef struct sample {
    double t, sfu_cpu, proc_cpu;
    uint64_t fwd_pkts, fwd_bytes, sfu_rx, send_drops;
    uint64_t rcvbuf_errors, sndbuf_errors;
    pl_sfc_totals_t cl;
} sample_t;

/* UDP RcvbufErrors and SndbufErrors of this network namespace (/proc/net/snmp). */
static void udp_errors(uint64_t *rcv, uint64_t *snd)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    char names[512], vals[512];
    *rcv = *snd = 0;
    while (f && fgets(names, sizeof(names), f) && fgets(vals, sizeof(vals), f)) {
        if (strncmp(names, "Udp:", 4) != 0)
            continue;
        gchar **n = g_strsplit(names, " ", -1), **v = g_strsplit(vals, " ", -1);
        for (int i = 0; n[i] && v[i]; i++) {
            if (strcmp(n[i], "RcvbufErrors") == 0)
                *rcv = strtoull(v[i], NULL, 10);
            if (strcmp(n[i], "SndbufErrors") == 0)
                *snd = strtoull(v[i], NULL, 10);
        }
        g_strfreev(n);
        g_strfreev(v);
        break;
    }
    if (f)
        fclose(f);
}

static void take(sample_t *s)
{
    for (unsigned i = 0; i < g_opt.client_threads; i++)
        atomic_fetch_add(&g_ct[i].snap_req, 1);
    for (unsigned i = 0; i < g_opt.client_threads; i++)
        while (atomic_load(&g_ct[i].snap_done) != atomic_load(&g_ct[i].snap_req))
            g_usleep(1000);
    memset(s, 0, sizeof(*s));
    s->t = (double)g_get_monotonic_time() / 1e6;
    s->sfu_cpu = threads_cpu("sfu-");
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s->proc_cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                  (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    for (int k = 0; k < 2; k++) {
        s->fwd_pkts += pl_metrics_read_counter(g_sfu->metrics, g_sfu->ids.fwd_packets[k]);
        s->fwd_bytes += pl_metrics_read_counter(g_sfu->metrics, g_sfu->ids.fwd_bytes[k]);
        s->sfu_rx += pl_metrics_read_counter(g_sfu->metrics, g_sfu->ids.rx_packets[k]);
    }
    s->send_drops = pl_metrics_read_counter(g_sfu->metrics, g_sfu->ids.drops[SFU_DROP_SEND]);
    udp_errors(&s->rcvbuf_errors, &s->sndbuf_errors);
    for (unsigned i = 0; i < g_opt.client_threads; i++) {
        s->cl.rx_packets += g_ct[i].snap.rx_packets;
        s->cl.rx_gaps += g_ct[i].snap.rx_gaps;
        s->cl.sent_packets += g_ct[i].snap.sent_packets;
        s->cl.errors += g_ct[i].snap.errors;
    }
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        unsigned *dst = NULL;
        if (strcmp(a, "--audio") == 0) { g_opt.audio = true; continue; }
        if (strcmp(a, "--equal-sizes") == 0) { g_opt.equal_sizes = true; continue; }
        if (strcmp(a, "--rooms") == 0) dst = &g_opt.rooms;
        else if (strcmp(a, "--publishers") == 0) dst = &g_opt.pubs;
        else if (strcmp(a, "--subscribers") == 0) dst = &g_opt.subs;
        else if (strcmp(a, "--kbps") == 0) dst = &g_opt.kbps;
        else if (strcmp(a, "--seconds") == 0) dst = &g_opt.seconds;
        else if (strcmp(a, "--media-threads") == 0) dst = &g_opt.media_threads;
        else if (strcmp(a, "--client-threads") == 0) dst = &g_opt.client_threads;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "usage: sfu_load [--rooms N] [--publishers N] [--subscribers N] "
                    "[--kbps N] [--audio] [--equal-sizes] [--seconds N] [--media-threads N] "
                    "[--client-threads N]\n");
            exit(2);
        }
        *dst = (unsigned)strtoul(argv[++i], NULL, 10);
    }
    g_opt.client_threads = PL_MAX(1u, g_opt.client_threads);
}

static void start_clients(void)
{
    g_ct = pl_xcalloc(g_opt.client_threads, sizeof(cthread_t));
    for (unsigned i = 0; i < g_opt.client_threads; i++) {
        cthread_t *t = &g_ct[i];
        t->index = i;
        t->ctx = g_main_context_new();
        pthread_mutex_init(&t->lock, NULL);
        g_queue_init(&t->events);
        t->ids = g_array_new(FALSE, FALSE, sizeof(uint64_t));
        t->roles = g_array_new(FALSE, FALSE, sizeof(gboolean));
        t->rooms = g_array_new(FALSE, FALSE, sizeof(unsigned));
        t->clients = g_ptr_array_new();
    }
    for (unsigned r = 0; r < g_opt.rooms; r++)
        for (unsigned k = 0; k < g_opt.pubs + g_opt.subs; k++) {
            uint64_t id = 1 + (uint64_t)r * 10000 + k;
            gboolean pub = k < g_opt.pubs;
            cthread_t *t = &g_ct[id % g_opt.client_threads];
            g_array_append_val(t->ids, id);
            g_array_append_val(t->roles, pub);
            g_array_append_val(t->rooms, r);
        }
    for (unsigned i = 0; i < g_opt.client_threads; i++) {
        char name[16];
        g_snprintf(name, sizeof(name), "client-%u", i);
        g_ct[i].thread = g_thread_new(name, client_main, &g_ct[i]);
    }
}

static void report(const sample_t *a, const sample_t *b)
{
    double dt = b->t - a->t;
    double sfu_cores = (b->sfu_cpu - a->sfu_cpu) / dt;
    double all_cores = (b->proc_cpu - a->proc_cpu) / dt;
    double pps = (double)(b->fwd_pkts - a->fwd_pkts) / dt;
    double mbps = (double)(b->fwd_bytes - a->fwd_bytes) * 8 / dt / 1e6;
    unsigned streams = g_opt.rooms * g_opt.subs * g_opt.pubs;
    uint64_t rx = b->cl.rx_packets - a->cl.rx_packets, gaps = b->cl.rx_gaps - a->cl.rx_gaps;
    double loss = rx + gaps ? 100.0 * (double)gaps / (double)(rx + gaps) : 0;
    printf("sfu_load: %u rooms x (%u publishers -> %u subscribers), %u kbit/s video%s, "
           "%u media thread(s), %u client thread(s), %.1f s\n", g_opt.rooms, g_opt.pubs,
           g_opt.subs, g_opt.kbps, g_opt.audio ? " + audio" : "", g_opt.media_threads,
           g_opt.client_threads, dt);
    printf("  subscriber video streams: %u\n", streams);
    printf("  forwarded: %.0f packets/s, %.1f Mbit/s\n", pps, mbps);
    printf("  SFU media threads CPU: %.2f cores; per 1,000 subscriber-streams: %.2f cores\n",
           sfu_cores, streams ? sfu_cores * 1000.0 / streams : 0);
    printf("  => %.0f subscriber-streams per SFU core at this load (target 1,500; mediasoup "
           "guidance ~500, LiveKit ~1,400)\n", sfu_cores > 0 ? streams / sfu_cores : 0);
    printf("  whole process CPU (SFU + clients): %.2f cores\n", all_cores);
    printf("  SFU received %.0f packets/s from publishers (sent %.0f/s); SFU send failures %"
           G_GUINT64_FORMAT "; UDP receive-buffer overflows %" G_GUINT64_FORMAT
           ", send-buffer %" G_GUINT64_FORMAT "\n",
           (double)(b->sfu_rx - a->sfu_rx) / dt, (double)(b->cl.sent_packets - a->cl.sent_packets) / dt,
           b->send_drops - a->send_drops, b->rcvbuf_errors - a->rcvbuf_errors,
           b->sndbuf_errors - a->sndbuf_errors);
    printf("  loss at subscribers: %.3f %% (%" G_GUINT64_FORMAT " gaps in %" G_GUINT64_FORMAT
           " packets); client errors: %" G_GUINT64_FORMAT "\n", loss, gaps, rx, b->cl.errors);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    pl_log_setup(PL_LOG_WARN, PL_LOG_TEXT, stderr, 0);
    static const pl_opt_table_t *const schema[] = { &pl_sfu_options, NULL };
    char mt[64];
    g_snprintf(mt, sizeof(mt), "sfu.media_threads=%u", g_opt.media_threads);
    const char *ov[] = { mt, "sfu.max_participants=256", "sfu.ports=20000-60000" };
    pl_config_source_t src = { .overrides = ov, .n_overrides = 3 };
    pl_config_t *cfg;
    pl_config_error_t err;
    if (pl_config_load(schema, &src, &cfg, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    pl_sfu_sink_t s = { sink, NULL };
    g_ct = NULL;
    if (pl_sfu_create(cfg, NULL, &s, &g_sfu) < 0)
        return 1;
    pl_config_unref(cfg);
    start_clients();
    unsigned total = g_opt.rooms * (g_opt.pubs + g_opt.subs);
    sample_t a, b;
    for (int i = 0; i < 300; i++) {         /* up to 30 s to connect everyone */
        pl_sfu_counts_t c;
        pl_sfu_get_counts(g_sfu, &c);
        if (c.connected >= total)
            break;
        if (i % 20 == 19)
            fprintf(stderr, "sfu_load: %" G_GUINT64_FORMAT "/%u connected\n", c.connected, total);
        g_usleep(100000);
    }
    fprintf(stderr, "sfu_load: measuring\n");
    g_usleep(3 * G_USEC_PER_SEC);           /* warm-up: subscriptions, key frames */
    take(&a);
    g_usleep((gulong)g_opt.seconds * G_USEC_PER_SEC);
    take(&b);
    pl_sfu_counts_t c;
    pl_sfu_get_counts(g_sfu, &c);
    if (c.connected < total)
        printf("  warning: only %" G_GUINT64_FORMAT " of %u participants connected\n",
               c.connected, total);
    report(&a, &b);
    for (unsigned i = 0; i < g_opt.client_threads; i++) {
        atomic_store(&g_ct[i].stop, true);
        g_main_context_wakeup(g_ct[i].ctx);
        g_thread_join(g_ct[i].thread);
    }
    pl_sfu_destroy(g_sfu);
    return 0;
}
