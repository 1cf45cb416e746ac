/* pl_common.h: what every parley file may use: always-on assertions, the error
 * convention, and allocation that aborts on failure (control plane only).
 *
 * Errors: functions that can fail return 0 or a negative code: -errno, or one of the
 * PL_E* project codes below (all below -4096 so they never collide with errno).
 * pl_strerror() names either kind. Thread-safe; no state. */
#ifndef PL_COMMON_H
#define PL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define PL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PL_CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define PL_UNUSED(x) ((void)(x))

/* Project error codes (negative, below any -errno). */
enum {
    PL_EBASE = -5000,
    PL_ECONFIG,     /* invalid configuration */
    PL_EPARSE,      /* malformed input */
    PL_ELIMIT,      /* a configured limit was reached */
    PL_ESTATE,      /* operation not valid in the object's current state */
    PL_ECLOSED,     /* the object is shutting down or closed */
    PL_ECRYPTO,     /* a crypto library call failed */
    PL_ELAST
};

/* Returns a static string naming a negative error code (-errno or PL_E*). */
const char *pl_strerror(int err);

/* Always-on assertion for cheap invariants (CONVENTIONS: stays on in release builds).
 * Never use it on anything derived from network bytes. */
#define PL_ASSERT(cond) \
    do { if (__builtin_expect(!(cond), 0)) pl_assert_fail(#cond, __FILE__, __LINE__); } while (0)
_Noreturn void pl_assert_fail(const char *expr, const char *file, int line);

/* Control-plane allocation: aborts the process with a log line on failure (the
 * GLib/Redis policy). The packet path uses pools sized at start-up instead.
 * Returns an owned pointer; free with free(). */
void *pl_xmalloc(size_t n);
void *pl_xcalloc(size_t count, size_t n);
void *pl_xrealloc(void *p, size_t n);
char *pl_xstrdup(const char *s);
char *pl_xstrndup(const char *s, size_t n);

/* Monotonic and wall clocks. Thread-safe. */
uint64_t pl_now_mono_us(void);
uint64_t pl_now_mono_ms(void);
uint64_t pl_now_wall_ms(void);

/* The git revision parleyd was built from ("unknown" outside a checkout). */
const char *pl_build_revision(void);

#endif
