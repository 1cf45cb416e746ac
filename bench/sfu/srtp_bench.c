/* srtp_bench: the SFU's own SRTP (relay/sfu/sfu_srtp.c, OpenSSL 3) against libsrtp2
 * (Debian's, built on NSS), the library it replaced on the packet path. For each
 * profile and implementation: protect then unprotect 1,200-byte RTP packets (12-byte
 * header, an 8-byte RFC 8285 extension block, 1,176 payload bytes) on one SSRC, in
 * batches of 256 (about 330 KB, in cache like the SFU's working set), and prints the
 * median ns per packet over the runs and the ratio libsrtp2 / ours.
 *
 *   srtp_bench [--runs N] [--packets N]     (defaults: 7 runs of 100,000 packets)
 *
 * Not a timed test: figures go to docs/SFU.md with the command line. Single thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "bench/sfu/libsrtp_ref.h"

#define PKT_LEN 1200
#define BUF_LEN 1300
#define BATCH 256
#define MAX_RUNS 51

static uint8_t g_pkts[BATCH][BUF_LEN];
static size_t g_lens[BATCH];

typedef struct impl {
    const char *name;
    /* Opaque sessions and the four operations, so both libraries run the same loop. */
    void *out, *in;
    int (*protect)(void *s, uint8_t *p, size_t *len);
    int (*unprotect)(void *s, uint8_t *p, size_t *len);
} impl_t;

static int ours_protect(void *s, uint8_t *p, size_t *len)
{
    return pl_srtp_protect_rtp(s, p, len, BUF_LEN);
}
static int ours_unprotect(void *s, uint8_t *p, size_t *len)
{
    return pl_srtp_unprotect_rtp(s, p, len);
}
static int lib_protect(void *s, uint8_t *p, size_t *len)
{
    int n = (int)*len;
    int rc = srtp_protect(s, p, &n) == srtp_err_status_ok ? 0 : -1;
    *len = (size_t)n;
    return rc;
}
static int lib_unprotect(void *s, uint8_t *p, size_t *len)
{
    int n = (int)*len;
    int rc = srtp_unprotect(s, p, &n) == srtp_err_status_ok ? 0 : -1;
    *len = (size_t)n;
    return rc;
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void fill(uint8_t *b, uint16_t seq)
{
    memset(b, 0, PKT_LEN);
    b[0] = 0x90;
    b[1] = 96;
    b[2] = (uint8_t)(seq >> 8);
    b[3] = (uint8_t)seq;
    b[8] = 0x12, b[9] = 0x34, b[10] = 0x56, b[11] = 0x78;
    b[12] = 0xbe, b[13] = 0xde, b[14] = 0, b[15] = 2;
    for (size_t i = 16; i < PKT_LEN; i++)
        b[i] = (uint8_t)(i * 7 + seq);
}

/* One run: packets protect + unprotect; adds the ns spent in each. */
static int run(impl_t *im, unsigned packets, uint16_t *seq, double *prot, double *unprot)
{
    for (unsigned done = 0; done < packets; done += BATCH) {
        for (int i = 0; i < BATCH; i++) {
            fill(g_pkts[i], (*seq)++);
            g_lens[i] = PKT_LEN;
        }
        double t0 = now_ns();
        for (int i = 0; i < BATCH; i++)
            if (im->protect(im->out, g_pkts[i], &g_lens[i]) != 0)
                return -1;
        double t1 = now_ns();
        for (int i = 0; i < BATCH; i++)
            if (im->unprotect(im->in, g_pkts[i], &g_lens[i]) != 0 || g_lens[i] != PKT_LEN)
                return -1;
        *prot += t1 - t0;
        *unprot += now_ns() - t1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}


static pl_srtp_t *our_session(pl_srtp_profile_t p, const uint8_t *master, bool outbound)
{
    pl_srtp_opts_t o = { .profile = p, .master_key = master, .master_salt = master + 16,
                         .key_len = 16, .salt_len = pl_srtp_salt_len(p),
                         .allow_repeat_tx = outbound };
    pl_srtp_t *s = NULL;
    return pl_srtp_create(&o, &s) == 0 ? s : NULL;
}

/* Median protect, unprotect and total ns per packet of one implementation. */
static int measure(impl_t *im, unsigned runs, unsigned packets, double med[3])
{
    double pr[MAX_RUNS], un[MAX_RUNS], tot[MAX_RUNS];
    uint16_t seq = 1;
    double wp = 0, wu = 0;
    if (run(im, BATCH * 8, &seq, &wp, &wu) < 0)        /* warm-up */
        return -1;
    for (unsigned r = 0; r < runs; r++) {
        double p = 0, u = 0;
        if (run(im, packets, &seq, &p, &u) < 0)
            return -1;
        unsigned n = (packets + BATCH - 1) / BATCH * BATCH;
        pr[r] = p / n;
        un[r] = u / n;
        tot[r] = (p + u) / n;
    }
    qsort(pr, runs, sizeof(double), cmp_double);
    qsort(un, runs, sizeof(double), cmp_double);
    qsort(tot, runs, sizeof(double), cmp_double);
    med[0] = pr[runs / 2];
    med[1] = un[runs / 2];
    med[2] = tot[runs / 2];
    return 0;
}

int main(int argc, char **argv)
{
    unsigned runs = 7, packets = 100000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--runs"))
            runs = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--packets"))
            packets = (unsigned)atoi(argv[i + 1]);
    }
    if (runs < 1 || runs > MAX_RUNS || packets < BATCH) {
        fprintf(stderr, "usage: srtp_bench [--runs 1..%d] [--packets >= %d]\n", MAX_RUNS, BATCH);
        return 2;
    }
    if (srtp_init() != srtp_err_status_ok)
        return 1;
    printf("srtp_bench: %d-byte RTP packets, protect + unprotect, one SSRC, median of %u "
           "runs x %u packets\n", PKT_LEN, runs, packets);
    printf("%-24s %-9s %11s %13s %9s\n", "profile", "impl", "protect ns", "unprotect ns",
           "total ns");
    const pl_srtp_profile_t profs[] = { PL_SRTP_AEAD_AES_128_GCM,
                                        PL_SRTP_AES_CM_128_HMAC_SHA1_80 };
    int rc = 0;
    for (size_t p = 0; p < 2; p++) {
        uint8_t master[30];
        for (int i = 0; i < 30; i++)
            master[i] = (uint8_t)(i * 37 + 11);
        impl_t im[2] = {
            { "parley", our_session(profs[p], master, true), our_session(profs[p], master, false),
              ours_protect, ours_unprotect },
            { "libsrtp2", pl_libsrtp_ref_session(profs[p], master, true, false),
              pl_libsrtp_ref_session(profs[p], master, false, false), lib_protect, lib_unprotect },
        };
        double med[2][3];
        for (int k = 0; k < 2; k++) {
            if (!im[k].out || !im[k].in || measure(&im[k], runs, packets, med[k]) < 0) {
                fprintf(stderr, "srtp_bench: %s %s failed\n", im[k].name,
                        pl_srtp_profile_name(profs[p]));
                rc = 1;
                med[k][0] = med[k][1] = med[k][2] = 0;
            }
            printf("%-24s %-9s %11.0f %13.0f %9.0f\n", pl_srtp_profile_name(profs[p]),
                   im[k].name, med[k][0], med[k][1], med[k][2]);
        }
        if (med[0][2] > 0)
            printf("%-24s ratio libsrtp2/parley: %.2fx\n", pl_srtp_profile_name(profs[p]),
                   med[1][2] / med[0][2]);
        pl_srtp_destroy(im[0].out);
        pl_srtp_destroy(im[0].in);
        if (im[1].out)
            srtp_dealloc(im[1].out);
        if (im[1].in)
            srtp_dealloc(im[1].in);
    }
    srtp_shutdown();
    return rc;
}
