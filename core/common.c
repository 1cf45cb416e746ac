/* common.c: error names, assertion failure, aborting allocators and clocks.
 * Thread-safe, no state. */
#include "core/pl_common.h"
#include "core/pl_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *pl_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case PL_ECONFIG: return "invalid configuration";
    case PL_EPARSE: return "malformed input";
    case PL_ELIMIT: return "limit reached";
    case PL_ESTATE: return "invalid state";
    case PL_ECLOSED: return "closed";
    case PL_ECRYPTO: return "crypto failure";
    default: break;
    }
    if (err < 0 && err > -4096)
        return strerrorname_np(-err) ? strerrorname_np(-err) : "unknown errno";
    return "unknown error";
}

void pl_assert_fail(const char *expr, const char *file, int line)
{
    /* Not through pl_log: the logger may be what failed. */
    fprintf(stderr, "parleyd: assertion failed: %s at %s:%d\n", expr, file, line);
    fflush(stderr);
    abort();
}

static _Noreturn void oom(size_t n)
{
    fprintf(stderr, "parleyd: out of memory allocating %zu bytes\n", n);
    fflush(stderr);
    abort();
}

void *pl_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *pl_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        oom(count * n);
    return p;
}

void *pl_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *pl_xstrdup(const char *s)
{
    return pl_xstrndup(s, strlen(s));
}

char *pl_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = pl_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static uint64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t pl_now_mono_us(void) { return clock_us(CLOCK_MONOTONIC); }
uint64_t pl_now_mono_ms(void) { return clock_us(CLOCK_MONOTONIC) / 1000u; }
uint64_t pl_now_wall_ms(void) { return clock_us(CLOCK_REALTIME) / 1000u; }

#ifndef PL_GIT_REV
#define PL_GIT_REV "unknown"
#endif

const char *pl_build_revision(void)
{
    return PL_GIT_REV;
}
