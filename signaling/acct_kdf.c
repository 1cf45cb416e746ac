/* acct_kdf.c: the password workers. scrypt costs tens of milliseconds and tens of MiB
 * by design (RFC 7914 §2), so it runs on its own small pool of core-loop threads
 * ("sig-kdf-N"), never on a gateway or the store thread. The workers also orchestrate
 * the two flows that need a password:
 *   register: hash on the worker -> insert account+device+session on the store ->
 *             done on the requester's gateway thread;
 *   login:    read the stored hash (store, reply to this worker) -> verify here ->
 *             device+session on the store -> done on the gateway thread.
 * An unknown username is verified against a dummy hash, so "no such user" and "wrong
 * password" take the same time.
 *
 * What it does not do: rate limiting (before submit, acct_http.c), replies.
 *
 * Threading: pl_sig_kdf_submit from gateway threads; kdf_run and kdf_found on a
 * worker; create/stop/destroy on the main thread. The queue bound is an atomic. */
#include "signaling/acct_int.h"
#include "core/pl_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

struct pl_sig_kdf {
    pl_sig_accounts_t *acc;
    unsigned n;
    pl_loop_t **loops;
    pthread_t *tids;
    bool *started;
    unsigned queue_max;
    _Atomic unsigned next;
    _Atomic int inflight;           /* accepted jobs not yet handed to a gateway thread */
    atomic_bool closing;
    char dummy_hash[PL_SIG_PWHASH_MAX];
};

static void job_finished(pl_sig_kdf_t *k)
{
    atomic_fetch_sub(&k->inflight, 1);
}

static void finish_on_gateway_msg(pl_loop_t *loop, pl_msg_t *msg)
{
    PL_UNUSED(loop);
    pl_sig_acct_op_t *op = PL_CONTAINER_OF(msg, pl_sig_acct_op_t, req.msg);
    op->done(op);
}

/* Hands a finished (failed) op to its gateway thread for the reply. */
static void finish_on_gateway(pl_sig_acct_op_t *op)
{
    op->req.msg.fn = finish_on_gateway_msg;
    pl_sig_post(op->acc->gw, op->thread, &op->req.msg);
}

static void wipe_password(pl_sig_acct_op_t *op)
{
    if (!op->password)
        return;
    OPENSSL_cleanse(op->password, op->password_len);
    free(op->password);
    op->password = NULL;
}

/* Store reply of ACCT_FIND_LOGIN, on this worker. */
static void kdf_found(pl_sig_acct_op_t *op)
{
    pl_sig_kdf_t *k = op->acc->kdf;
    bool known = op->req.status >= 0 && op->outcome == PL_SIG_ERR_NONE;
    if (op->req.status < 0 && op->outcome == PL_SIG_ERR_NONE) {
        op->outcome = PL_SIG_ERR_INTERNAL;
        op->message = "storage error";
        wipe_password(op);
        finish_on_gateway(op);
        job_finished(k);
        return;
    }
    int ok = pl_sig_pw_verify(op->password, op->password_len,
                              known ? op->pw_hash : k->dummy_hash);
    wipe_password(op);
    if (!known || ok != 1) {
        op->outcome = PL_SIG_ERR_BAD_CREDENTIALS;
        op->message = "wrong username or password";
        op->fail_reason = PL_SIG_AF_BAD_CREDENTIALS;
        if (known && ok < 0)
            pl_log_error("signaling.login.hash_unreadable", "account=%llu",
                         (unsigned long long)op->account_id);
        finish_on_gateway(op);
    } else {
        op->kind = ACCT_LOGIN;
        op->outcome = PL_SIG_ERR_NONE;
        acct_op_submit_to_gateway(op);
    }
    job_finished(k);
}

static void kdf_found_trampoline(pl_store_req_t *req);

static void kdf_run(pl_loop_t *loop, pl_msg_t *msg)
{
    pl_sig_acct_op_t *op = PL_CONTAINER_OF(msg, pl_sig_acct_op_t, req.msg);
    pl_sig_kdf_t *k = op->acc->kdf;
    if (op->kind == ACCT_REGISTER) {
        int rc = pl_sig_pw_hash(op->password, op->password_len, op->acc->scrypt_log2_n,
                                op->pw_hash);
        wipe_password(op);
        if (rc < 0) {
            op->outcome = PL_SIG_ERR_INTERNAL;
            op->message = "password hashing failed";
            finish_on_gateway(op);
        } else {
            acct_op_submit_to_gateway(op);
        }
        job_finished(k);
        return;
    }
    /* ACCT_FIND_LOGIN: the reply comes back to this worker, which verifies. */
    op->req.done = kdf_found_trampoline;
    op->req.reply = pl_store_reply_loop(loop);
    pl_store_submit(op->acc->store, &op->req);
}

static void kdf_found_trampoline(pl_store_req_t *req)
{
    pl_sig_acct_op_t *op = PL_CONTAINER_OF(req, pl_sig_acct_op_t, req);
    /* Restore the generic completion for the login step that follows. */
    req->done = acct_store_done;
    kdf_found(op);
}

int pl_sig_kdf_submit(pl_sig_kdf_t *k, pl_sig_acct_op_t *op)
{
    if (atomic_load(&k->closing))
        return -EBUSY;
    if (atomic_fetch_add(&k->inflight, 1) >= (int)k->queue_max) {
        atomic_fetch_sub(&k->inflight, 1);
        return -EBUSY;
    }
    unsigned i = atomic_fetch_add(&k->next, 1) % k->n;
    op->req.msg.fn = kdf_run;
    pl_loop_post(k->loops[i], &op->req.msg);
    return 0;
}

static void *kdf_main(void *arg)
{
    pl_loop_t *loop = arg;
    int rc = pl_loop_run(loop);
    if (rc < 0)
        pl_log_error("signaling.kdf.loop_failed", "error=%s", pl_strerror(rc));
    return NULL;
}

int pl_sig_kdf_create(pl_sig_accounts_t *acc, unsigned threads, unsigned queue_max,
                      pl_metrics_t *metrics, pl_sig_kdf_t **out)
{
    PL_UNUSED(metrics);
    pl_sig_kdf_t *k = pl_xcalloc(1, sizeof(*k));
    k->acc = acc;
    k->n = threads ? threads : 1;
    k->queue_max = queue_max ? queue_max : 1;
    k->loops = pl_xcalloc(k->n, sizeof(*k->loops));
    k->tids = pl_xcalloc(k->n, sizeof(*k->tids));
    k->started = pl_xcalloc(k->n, sizeof(*k->started));
    static const char dummy[] = "parley-dummy-password-for-timing";
    int rc = pl_sig_pw_hash(dummy, sizeof(dummy) - 1, acc->scrypt_log2_n, k->dummy_hash);
    for (unsigned i = 0; rc == 0 && i < k->n; i++) {
        char name[24];
        snprintf(name, sizeof(name), "sig-kdf-%u", i % 100);
        rc = pl_loop_create(name, &k->loops[i]);
        if (rc == 0) {
            rc = -pthread_create(&k->tids[i], NULL, kdf_main, k->loops[i]);
            k->started[i] = rc == 0;
        }
    }
    if (rc < 0) {
        pl_sig_kdf_stop(k);
        pl_sig_kdf_destroy(k);
        return rc;
    }
    *out = k;
    return 0;
}

void pl_sig_kdf_stop(pl_sig_kdf_t *k)
{
    if (!k)
        return;
    atomic_store(&k->closing, true);
    /* Jobs in flight may be waiting on the store, whose reply names our loops: let
     * them finish before the loops go (the store still runs; bounded wait). */
    for (int i = 0; i < 10000 && atomic_load(&k->inflight) > 0; i++)
        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
    if (atomic_load(&k->inflight) > 0)
        pl_log_warn("signaling.kdf.stop_timeout", "inflight=%d", atomic_load(&k->inflight));
    for (unsigned i = 0; i < k->n; i++)
        if (k->started[i]) {
            pl_loop_stop(k->loops[i]);
            pthread_join(k->tids[i], NULL);
            k->started[i] = false;
        }
}

void pl_sig_kdf_destroy(pl_sig_kdf_t *k)
{
    if (!k)
        return;
    for (unsigned i = 0; i < k->n; i++)
        if (k->loops[i])
            pl_loop_destroy(k->loops[i]);
    free(k->loops);
    free(k->tids);
    free(k->started);
    free(k);
}
