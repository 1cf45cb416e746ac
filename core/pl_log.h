/* pl_log.h: structured logging. A line is an event name and key=value pairs:
 *   text: 2026-11-27T18:40:01.123Z info turn.alloc.created alloc=17 user=alice
 *   json: {"ts":"2026-11-27T18:40:01.123Z","level":"info","event":"turn.alloc.created","alloc":"17","user":"alice"}
 *
 * The fmt argument formats the key=value part. Values that may contain spaces, quotes or
 * control characters (anything from the network) must go through %s with
 * pl_log_q(buf, value) or be printed with PL_LOG_QUOTED; the logger escapes control
 * characters in any case. Secrets are never passed to the logger (CONVENTIONS); config
 * values marked secret print as "***".
 *
 * Repeats: a given event is printed at most `burst` times per second (default 20); the
 * next line printed for that event after a suppressed burst carries suppressed=N.
 *
 * Threading: every function is thread-safe. One process-wide sink (stderr by default)
 * set up once at start-up by pl_log_setup; the level is an atomic and may change on
 * reload. */
#ifndef PL_LOG_H
#define PL_LOG_H

#include "core/pl_common.h"
#include <stdio.h>

typedef enum pl_log_level {
    PL_LOG_DEBUG = 0,
    PL_LOG_INFO,
    PL_LOG_WARN,
    PL_LOG_ERROR,
    PL_LOG_OFF
} pl_log_level_t;

typedef enum pl_log_format { PL_LOG_TEXT = 0, PL_LOG_JSON } pl_log_format_t;

/* Sets level, format, output stream (borrowed; NULL = stderr) and the per-event burst
 * limit per second (0 = default). Call before threads start; level may change later. */
void pl_log_setup(pl_log_level_t level, pl_log_format_t format, FILE *out, unsigned burst);
void pl_log_set_level(pl_log_level_t level);
pl_log_level_t pl_log_get_level(void);
/* Parses "debug|info|warn|error|off"; returns 0 or PL_EPARSE. */
int pl_log_level_parse(const char *s, pl_log_level_t *out);
int pl_log_format_parse(const char *s, pl_log_format_t *out);

/* Emits one line. event: a static dotted name ("turn.alloc.created"). */
void pl_log(pl_log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quotes value for a log field into buf (cap bytes): "a b" -> "\"a b\"", truncating
 * long values with "...". Returns buf. Quotes a value that is empty or holds a space,
 * '"', '=' or a control character; inside quotes escapes \" \\ \n \r \t and \xHH. */
char *pl_log_q(char *buf, size_t cap, const char *value);

/* pl_log_q into a temporary buffer that lives until the end of the enclosing block:
 *   pl_log_info("auth.failed", "user=%s", PL_LOG_QUOTED(username)); */
#define PL_LOG_Q_MAX 256
#define PL_LOG_QUOTED(value) pl_log_q((char[PL_LOG_Q_MAX]){0}, PL_LOG_Q_MAX, (value))

/* A line is at most this many bytes before its newline; longer ones end in "...". */
#define PL_LOG_LINE_MAX 4096

#define PL_LOG_DEBUG_ON() (pl_log_get_level() <= PL_LOG_DEBUG)
#define pl_log_debug(ev, ...) do { if (PL_LOG_DEBUG_ON()) pl_log(PL_LOG_DEBUG, ev, __VA_ARGS__); } while (0)
#define pl_log_info(ev, ...)  pl_log(PL_LOG_INFO, ev, __VA_ARGS__)
#define pl_log_warn(ev, ...)  pl_log(PL_LOG_WARN, ev, __VA_ARGS__)
#define pl_log_error(ev, ...) pl_log(PL_LOG_ERROR, ev, __VA_ARGS__)

#endif
