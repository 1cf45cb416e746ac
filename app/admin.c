/* admin.c: the operators' HTTP endpoint on the main loop (default 127.0.0.1:9090):
 *   GET /metrics  Prometheus text exposition 0.0.4
 *   GET /healthz  200 while the process serves its loop
 *   GET /readyz   200 only when every enabled module is up (503 + the laggards)
 *   GET /stats    JSON: version, uptime, per-module stats, every metric
 * HEAD works like GET without the body; other methods get 405, unknown paths 404.
 * One request per connection (Connection: close): scrapers open a connection per
 * scrape anyway, and it keeps this server small. Binding a non-loopback address is
 * refused at config validation unless [admin] token is set; when a token is set every
 * request must carry "Authorization: Bearer <token>" (compared in constant time).
 * Not a general web server: heads over 8 KiB, bodies and pipelining are refused. */
#include "app/app_int.h"
#include "app/http_head.h"
#include "core/pl_log.h"
#include "core/pl_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_HEAD_MAX 8192
#define ADMIN_MAX_CONNS 64
#define ADMIN_CONN_TIMEOUT_MS 10000

static const pl_opt_def_t admin_defs[] = {
    {"admin", "listen", PL_OPT_STRING, "127.0.0.1:9090", 1, 128, NULL, 0,
     "Admin HTTP address (host:port) for /metrics /healthz /readyz /stats; non-loopback needs a token"},
    {"admin", "token", PL_OPT_STRING, "", 0, 256, NULL, PL_OPT_SECRET | PL_OPT_RELOADABLE,
     "Bearer token required on every admin request when set (env PARLEY_ADMIN_TOKEN)"},
};

const pl_opt_table_t pl_admin_options = {
    "The operators' HTTP endpoint", admin_defs, PL_ARRAY_LEN(admin_defs)};

typedef struct admin_conn admin_conn_t;

struct pl_admin {
    pl_loop_t *loop;
    pl_metrics_t *metrics;
    pl_metrics_shard_t *shard;
    pl_app_view_t view;
    char *token;
    int listen_fd;
    pl_sockaddr_t addr;
    admin_conn_t *conns;        /* doubly linked list of open connections */
    size_t n_conns;
    pl_metric_id_t m_requests[5];  /* by status class: 2xx 4xx(auth) 4xx 5xx */
};

struct admin_conn {
    pl_admin_t *admin;
    admin_conn_t *prev, *next;
    int fd;
    pl_timer_t timer;
    char in[ADMIN_HEAD_MAX];
    size_t in_len;
    pl_buf_t out;
    size_t out_off;
    bool responding;
};

enum { M_2XX, M_401, M_404, M_405, M_400 };

int pl_admin_validate(const pl_config_t *cfg, pl_config_error_t *err)
{
    pl_sockaddr_t a;
    const char *listen = pl_config_str(cfg, "admin", "listen");
    if (pl_sockaddr_parse(listen, -1, &a) != 0) {
        snprintf(err->msg, sizeof err->msg,
                 "[admin] listen: \"%s\" is not an address (host:port)", listen);
        return PL_ECONFIG;
    }
    if (!pl_sockaddr_is_loopback(&a) && pl_config_str(cfg, "admin", "token")[0] == '\0') {
        snprintf(err->msg, sizeof err->msg,
                 "[admin] listen: %s is not a loopback address; set [admin] token "
                 "(or PARLEY_ADMIN_TOKEN) to expose the admin endpoint", listen);
        return PL_ECONFIG;
    }
    return 0;
}

static void conn_close(admin_conn_t *c)
{
    pl_admin_t *a = c->admin;
    pl_timer_stop(a->loop, &c->timer);
    pl_loop_del_fd(a->loop, c->fd);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->n_conns--;
    pl_buf_deinit(&c->out);
    free(c);
}

static void conn_flush(admin_conn_t *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pl_loop_mod_fd(c->admin->loop, c->fd, PL_IO_WRITE);
            return;
        }
        if (n <= 0)
            break;
        c->out_off += (size_t)n;
    }
    conn_close(c);
}

static void respond(admin_conn_t *c, int status, const char *ctype, const pl_buf_t *body,
                    bool head_only)
{
    static const struct { int code; const char *text; } reasons[] = {
        {200, "OK"}, {400, "Bad Request"}, {401, "Unauthorized"}, {404, "Not Found"},
        {405, "Method Not Allowed"}, {431, "Request Header Fields Too Large"},
        {503, "Service Unavailable"},
    };
    const char *reason = "Error";
    for (size_t i = 0; i < PL_ARRAY_LEN(reasons); i++)
        if (reasons[i].code == status)
            reason = reasons[i].text;
    size_t len = body ? body->len : 0;
    pl_buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "Cache-Control: no-store\r\nConnection: close\r\n", status, reason, ctype, len);
    if (status == 405)
        pl_buf_puts(&c->out, "Allow: GET, HEAD\r\n");
    if (status == 401)
        pl_buf_puts(&c->out, "WWW-Authenticate: Bearer realm=\"parley-admin\"\r\n");
    pl_buf_puts(&c->out, "\r\n");
    if (body && !head_only)
        pl_buf_append(&c->out, body->data, body->len);
    c->responding = true;
    pl_loop_mod_fd(c->admin->loop, c->fd, 0);
    conn_flush(c);
}

static void respond_text(admin_conn_t *c, int status, const char *text, bool head_only)
{
    pl_buf_t b;
    pl_buf_init(&b);
    pl_buf_puts(&b, text);
    respond(c, status, "text/plain; charset=utf-8", &b, head_only);
    pl_buf_deinit(&b);
}

static bool token_ok(const pl_admin_t *a, pl_http_str_t auth)
{
    if (a->token[0] == '\0')
        return true;
    size_t tlen = strlen(a->token);
    if (auth.len != 7 + tlen || strncasecmp(auth.p, "Bearer ", 7) != 0)
        return false;
    unsigned char diff = 0;   /* constant time over the token length */
    for (size_t i = 0; i < tlen; i++)
        diff |= (unsigned char)(auth.p[7 + i] ^ a->token[i]);
    return diff == 0;
}

static void route(admin_conn_t *c, const pl_http_head_t *h)
{
    pl_admin_t *a = c->admin;
    bool is_head = pl_http_str_eq(h->method, "HEAD");
    if (!token_ok(a, h->authorization)) {
        pl_metric_inc(a->shard, a->m_requests[M_401]);
        respond_text(c, 401, "unauthorized: admin token required\n", is_head);
        return;
    }
    static const char *const paths[] = {"/metrics", "/healthz", "/readyz", "/stats"};
    size_t which = PL_ARRAY_LEN(paths);
    for (size_t i = 0; i < PL_ARRAY_LEN(paths); i++)
        if (pl_http_str_eq(h->path, paths[i]))
            which = i;
    if (which == PL_ARRAY_LEN(paths)) {
        pl_metric_inc(a->shard, a->m_requests[M_404]);
        respond_text(c, 404, "not found\n", is_head);
        return;
    }
    if (!is_head && !pl_http_str_eq(h->method, "GET")) {
        pl_metric_inc(a->shard, a->m_requests[M_405]);
        respond_text(c, 405, "method not allowed\n", false);
        return;
    }
    pl_metric_inc(a->shard, a->m_requests[M_2XX]);
    pl_buf_t body;
    pl_buf_init(&body);
    int status = 200;
    const char *ctype = "application/json";
    switch (which) {
    case 0:
        pl_metrics_render_prometheus(a->metrics, &body);
        ctype = "text/plain; version=0.0.4; charset=utf-8";
        break;
    case 1:
        pl_buf_puts(&body, "ok\n");
        ctype = "text/plain; charset=utf-8";
        break;
    case 2: {
        pl_buf_t why;
        pl_buf_init(&why);
        bool ok = a->view.all_ready(a->view.app, &why);
        status = ok ? 200 : 503;
        pl_buf_printf(&body, "%s%s\n", ok ? "ready" : "not ready: ", ok ? "" : why.data);
        pl_buf_deinit(&why);
        ctype = "text/plain; charset=utf-8";
        break;
    }
    default:
        a->view.stats_json(a->view.app, &body);
        pl_buf_puts(&body, "\n");
        break;
    }
    respond(c, status, ctype, &body, is_head);
    pl_buf_deinit(&body);
}

static void on_conn_timeout(pl_loop_t *loop, pl_timer_t *t, void *arg)
{
    PL_UNUSED(loop);
    PL_UNUSED(t);
    conn_close(arg);
}

static void on_conn_io(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(loop);
    admin_conn_t *c = arg;
    if (c->responding) {
        if (events & (PL_IO_WRITE | PL_IO_READ))
            conn_flush(c);
        return;
    }
    ssize_t n = recv(fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->in_len += (size_t)n;
    pl_http_head_t h;
    int rc = pl_http_head_parse(c->in, c->in_len, &h);
    if (rc == PL_HTTP_HEAD_INCOMPLETE && c->in_len < sizeof c->in)
        return;
    if (rc == PL_HTTP_HEAD_INCOMPLETE) {
        pl_metric_inc(c->admin->shard, c->admin->m_requests[M_400]);
        respond_text(c, 431, "request head too large\n", false);
    } else if (rc != 0) {
        pl_metric_inc(c->admin->shard, c->admin->m_requests[M_400]);
        respond_text(c, 400, "bad request\n", false);
    } else {
        route(c, &h);
    }
}

static void on_accept(pl_loop_t *loop, int fd, uint32_t events, void *arg)
{
    PL_UNUSED(events);
    pl_admin_t *a = arg;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                pl_log_warn("admin.accept_failed", "error=%s", pl_strerror(-errno));
            return;
        }
        if (a->n_conns >= ADMIN_MAX_CONNS) {
            pl_log_warn("admin.too_many_connections", "max=%d", ADMIN_MAX_CONNS);
            close(cfd);
            continue;
        }
        admin_conn_t *c = pl_xcalloc(1, sizeof *c);
        c->admin = a;
        c->fd = cfd;
        pl_buf_init(&c->out);
        pl_timer_init(&c->timer);
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        a->n_conns++;
        pl_loop_add_fd(loop, cfd, PL_IO_READ, on_conn_io, c);
        pl_timer_start(loop, &c->timer, ADMIN_CONN_TIMEOUT_MS, 0, on_conn_timeout, c);
    }
}

static void register_metrics(pl_admin_t *a)
{
    const char *name = "parley_admin_requests_total";
    const char *help = "Admin endpoint requests by HTTP status";
    a->m_requests[M_2XX] = pl_metrics_counter(a->metrics, name, help, "code=\"2xx\"");
    a->m_requests[M_401] = pl_metrics_counter(a->metrics, name, help, "code=\"401\"");
    a->m_requests[M_404] = pl_metrics_counter(a->metrics, name, help, "code=\"404\"");
    a->m_requests[M_405] = pl_metrics_counter(a->metrics, name, help, "code=\"405\"");
    a->m_requests[M_400] = pl_metrics_counter(a->metrics, name, help, "code=\"400\"");
}

int pl_admin_start(const pl_host_t *host, const pl_app_view_t *view, pl_admin_t **out)
{
    pl_admin_t *a = pl_xcalloc(1, sizeof *a);
    a->loop = host->main_loop;
    a->metrics = host->metrics;
    a->shard = host->main_shard;
    a->view = *view;
    a->token = pl_xstrdup(pl_config_str(host->config, "admin", "token"));
    register_metrics(a);
    int rc = pl_sockaddr_parse(pl_config_str(host->config, "admin", "listen"), -1, &a->addr);
    if (rc == 0 && (rc = a->listen_fd = pl_net_listen(&a->addr, SOCK_STREAM, 0, 64)) >= 0)
        rc = pl_net_local_addr(a->listen_fd, &a->addr);
    if (rc == 0)
        rc = pl_loop_add_fd(a->loop, a->listen_fd, PL_IO_READ, on_accept, a);
    if (rc != 0) {
        char s[PL_SOCKADDR_STRLEN];
        pl_log_error("admin.listen_failed", "addr=%s error=%s",
                     pl_sockaddr_str(&a->addr, s, sizeof s), pl_strerror(rc));
        if (a->listen_fd > 0)
            close(a->listen_fd);
        free(a->token);
        free(a);
        return rc;
    }
    char s[PL_SOCKADDR_STRLEN];
    pl_log_info("admin.listening", "addr=%s auth=%s", pl_sockaddr_str(&a->addr, s, sizeof s),
                a->token[0] ? "token" : "none");
    *out = a;
    return 0;
}

void pl_admin_reload(pl_admin_t *a, const pl_config_t *next)
{
    free(a->token);
    a->token = pl_xstrdup(pl_config_str(next, "admin", "token"));
}

void pl_admin_stop(pl_admin_t *a)
{
    while (a->conns)
        conn_close(a->conns);
    pl_loop_del_fd(a->loop, a->listen_fd);
    close(a->listen_fd);
    free(a->token);
    free(a);
}

void pl_admin_addr_str(const pl_admin_t *a, char *buf, size_t cap)
{
    pl_sockaddr_str(&a->addr, buf, cap);
}
