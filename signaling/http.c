/* http.c: protocols[0] of every gateway vhost: the HTTP API under /v1 (routes
 * registered by parts such as accounts), the mailbox wake-up for the service thread,
 * refusing WebSocket upgrades that asked for no subprotocol, and (through lws's file
 * mount, configured in gw_threads.c) static files from web_root.
 *
 * A request is answered asynchronously: the route function gets a transaction id and
 * answers with pl_sig_http_respond from any thread; the answer travels through the
 * service thread's inbox and is written when lws says the socket is writable. Headers
 * and body go in two writable callbacks, as lws asks.
 *
 * What it does not do: HTTP/2 specifics, CORS (the web client is served from the same
 * origin), chunked responses, bodies above max_body.
 *
 * Threading: the lws callback runs on the service thread; pl_sig_http_respond and
 * pl_sig_http_error on any thread. */
#include "signaling/gw_int.h"
#include "core/pl_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct resp_msg {
    pl_msg_t msg;
    pl_sig_gateway_t *gw;
    uint64_t http_id;
    int status;
    int err;                        /* pl_sig_err_t to count, or -1 */
    unsigned char *buf;             /* LWS_PRE headroom + body */
    size_t len;
} resp_msg_t;

enum { RESP_NONE, RESP_HEADERS, RESP_BODY };

static unsigned char *render(json_t *body, size_t *len)
{
    size_t n = json_dumpb(body, NULL, 0, JSON_COMPACT);
    unsigned char *buf = pl_xmalloc(LWS_PRE + n + 1);
    *len = json_dumpb(body, (char *)buf + LWS_PRE, n, JSON_COMPACT);
    json_decref(body);
    return buf;
}

static void set_response(pl_sig_http_t *h, int status, unsigned char *buf, size_t len)
{
    free(h->resp);
    h->resp = buf;
    h->resp_len = len;
    h->status = status;
    h->responded = true;
    h->phase = RESP_HEADERS;
    lws_callback_on_writable(h->wsi);
}

static void resp_run(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    resp_msg_t *m = PL_CONTAINER_OF(msg, resp_msg_t, msg);
    pl_sig_thread_t *t = pl_sig_thread_of(m->gw, m->http_id);
    pl_sig_http_t *h = t ? pl_sig_slot_get(t, m->http_id, PL_SIG_SLOT_HTTP) : NULL;
    if (h && !h->responded) {
        if (m->err > 0)
            pl_metric_inc(t->shard, m->gw->m.errors[m->err]);
        set_response(h, m->status, m->buf, m->len);
        m->buf = NULL;
    }
    free(m->buf);
    free(m);
}

void pl_sig_http_respond(pl_sig_gateway_t *gw, uint64_t http_id, int status, json_t *body)
{
    pl_sig_thread_t *t = pl_sig_thread_of(gw, http_id);
    resp_msg_t *m = pl_xcalloc(1, sizeof(*m));
    m->msg.fn = resp_run;
    m->gw = gw;
    m->http_id = http_id;
    m->status = status;
    m->err = -1;
    m->buf = render(body ? body : json_object(), &m->len);
    if (!t) {
        free(m->buf);
        free(m);
        return;
    }
    pl_sig_post(gw, t->index, &m->msg);
}

static json_t *error_body(const char *code, const char *message)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
}

void pl_sig_http_error(pl_sig_gateway_t *gw, uint64_t http_id, int status, const char *code,
                       const char *message)
{
    pl_sig_thread_t *t = pl_sig_thread_of(gw, http_id);
    if (!t)
        return;
    resp_msg_t *m = pl_xcalloc(1, sizeof(*m));
    m->msg.fn = resp_run;
    m->gw = gw;
    m->http_id = http_id;
    m->status = status;
    m->err = (int)pl_sig_err_from_code(code);
    m->buf = render(error_body(code, message), &m->len);
    pl_sig_post(gw, t->index, &m->msg);
}

/* An answer decided on the service thread before any route ran. */
static int respond_now(pl_sig_thread_t *t, pl_sig_http_t *h, int status, pl_sig_err_t err,
                       const char *message)
{
    size_t len;
    pl_metric_inc(t->shard, t->gw->m.errors[err]);
    unsigned char *buf = render(error_body(pl_sig_err_code(err), message), &len);
    set_response(h, status, buf, len);
    return 0;
}

/* ---- requests ------------------------------------------------------------------------ */

static void http_reset(pl_sig_thread_t *t, pl_sig_http_t *h)
{
    if (h->id)
        pl_sig_slot_free(t, h->id);
    free(h->body);
    free(h->resp);
    struct lws *wsi = h->wsi;
    memset(h, 0, sizeof(*h));
    h->wsi = wsi;
}

static const pl_sig_rentry_t *find_route(pl_sig_gateway_t *gw, const char *path, int method,
                                         bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < gw->n_routes; i++) {
        const pl_sig_http_route_t *r = gw->routes[i].r;
        size_t n = strlen(r->path);
        bool match = r->prefix ? strncmp(path, r->path, n) == 0 && path[n] != '\0'
                               : strcmp(path, r->path) == 0;
        if (!match)
            continue;
        *path_known = true;
        if (r->method == method)
            return &gw->routes[i];
    }
    return NULL;
}

static void read_bearer(struct lws *wsi, char *out, size_t cap)
{
    char auth[160];
    out[0] = '\0';
    if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) <= 0)
        return;
    /* RFC 6750 §2.1: "Bearer" is case-insensitive, then one space, then the token. */
    size_t n = strlen(auth);
    if (n > 7 && n - 7 < cap && strncasecmp(auth, "Bearer ", 7) == 0)
        memcpy(out, auth + 7, n - 7 + 1);
}

static int run_route(pl_sig_thread_t *t, pl_sig_http_t *h)
{
    json_t *body = NULL;
    /* lws reports body completion even for a POST whose Content-Length was 0, which
     * we already ran: a route runs once per transaction. */
    if (h->dispatched)
        return 0;
    h->dispatched = true;
    if (h->route->r->needs_body) {
        json_error_t jerr;
        body = h->body ? pl_sig_json_loadb(h->body, h->body_len, JSON_REJECT_DUPLICATES, &jerr)
                       : NULL;
        if (!json_is_object(body)) {
            json_decref(body);
            return respond_now(t, h, 400, PL_SIG_ERR_BAD_JSON,
                               "the request body must be a JSON object");
        }
    }
    const char *suffix = h->route->r->prefix ? h->path + strlen(h->route->r->path) : "";
    pl_sig_http_req_t req = {
        .gw = t->gw, .http_id = h->id, .thread = t->index, .method = h->method,
        .path = h->path, .suffix = suffix, .body = body,
        .bearer = h->bearer[0] ? h->bearer : NULL, .peer = h->peer,
    };
    h->route->r->fn(&req, h->route->arg);
    json_decref(body);
    return 0;
}

static int on_http(pl_sig_thread_t *t, pl_sig_http_t *h, struct lws *wsi)
{
    char *uri = NULL;
    int ulen = 0;
    h->wsi = wsi;
    h->method = lws_http_get_uri_and_method(wsi, &uri, &ulen);
    h->id = pl_sig_slot_alloc(t, h, PL_SIG_SLOT_HTTP);
    pl_metric_inc(t->shard, t->gw->m.http_requests);
    lws_get_peer_simple(wsi, h->peer, sizeof(h->peer));
    read_bearer(wsi, h->bearer, sizeof(h->bearer));
    if (h->method < 0 || ulen <= 0 || (size_t)ulen >= sizeof(h->path))
        return respond_now(t, h, 414, PL_SIG_ERR_BAD_FRAME, "bad request line");
    memcpy(h->path, uri, (size_t)ulen);
    h->path[ulen] = '\0';
    bool known;
    h->route = find_route(t->gw, h->path, h->method, &known);
    if (!h->route)
        return known ? respond_now(t, h, 405, PL_SIG_ERR_BAD_FRAME, "method not allowed")
                     : respond_now(t, h, 404, PL_SIG_ERR_NOT_FOUND, "no such endpoint");
    if (h->method != LWSHUMETH_POST)
        return run_route(t, h);
    char cl[24];
    long long want = lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0
                         ? atoll(cl) : 0;
    if (want > (long long)t->gw->opts.max_body)
        return respond_now(t, h, 413, PL_SIG_ERR_BAD_FRAME, "request body too large");
    if (want <= 0)
        return run_route(t, h);
    return 0;                       /* wait for LWS_CALLBACK_HTTP_BODY(_COMPLETION) */
}

static int on_body(pl_sig_thread_t *t, pl_sig_http_t *h, const void *in, size_t len)
{
    if (h->responded || h->dispatched || !h->route || len == 0)
        return 0;
    if (h->body_len + len > t->gw->opts.max_body)
        return -1;                  /* more than its Content-Length announced */
    h->body = pl_xrealloc(h->body, h->body_len + len + 1);
    memcpy(h->body + h->body_len, in, len);
    h->body_len += len;
    return 0;
}

static int on_writeable(pl_sig_thread_t *t, pl_sig_http_t *h)
{
    if (h->phase == RESP_HEADERS) {
        unsigned char hdr[LWS_PRE + 512];
        unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
        if (lws_add_http_common_headers(h->wsi, (unsigned)h->status, "application/json",
                                        h->resp_len, &p, end) ||
            lws_add_http_header_by_name(h->wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-store", 8, &p, end) ||
            lws_finalize_write_http_header(h->wsi, start, &p, end))
            return -1;
        h->phase = RESP_BODY;       /* lws wants the body in a later writable callback */
        lws_callback_on_writable(h->wsi);
        return 0;
    }
    if (h->phase != RESP_BODY)
        return 0;
    struct lws *wsi = h->wsi;
    int n = lws_write(wsi, h->resp + LWS_PRE, h->resp_len, LWS_WRITE_HTTP_FINAL);
    http_reset(t, h);
    if (n < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

int pl_sig_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                         void *in, size_t len)
{
    pl_sig_thread_t *t = lws_context_user(lws_get_context(wsi));
    pl_sig_http_t *h = user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        pl_sig_thread_drain_inbox(t);
        pl_sig_thread_check_quit(t);
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* A WebSocket upgrade without "parley.v1" in Sec-WebSocket-Protocol lands on
         * the default protocol: refuse it (docs/PROTOCOL.md "Connecting"). */
        pl_metric_inc(t->shard, t->gw->m.rejected);
        return 1;
    case LWS_CALLBACK_HTTP:
        return on_http(t, h, wsi);
    case LWS_CALLBACK_HTTP_BODY:
        return on_body(t, h, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return h->responded || !h->route ? 0 : run_route(t, h);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return h ? on_writeable(t, h) : 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (h)
            http_reset(t, h);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}
