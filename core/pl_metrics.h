/* pl_metrics.h: the metrics registry: counters, gauges and histograms, rendered as
 * Prometheus text exposition (format 0.0.4) and as JSON.
 *
 * Model: metrics are registered once at start-up (before worker threads run) and get a
 * small integer id. Hot-path writers own a shard (one per thread); a shard is an array of
 * 64-bit slots written only by its owner thread with relaxed atomics (no lock, no lock
 * prefix on x86). Reading sums every shard's slot. Gauges are either set values (summed
 * over shards like counters, so each thread can add its own share) or a callback run by
 * the reader (for process metrics such as resident memory).
 *
 * A series is a metric name plus a fixed label set given at registration, e.g.
 *   id = pl_metrics_counter(reg, "parley_turn_drops_total", "Packets dropped", "reason=\"malformed\"");
 * Series of one name are rendered under one HELP/TYPE block; register them with the
 * same help text.
 *
 * Threading: registration functions and pl_metrics_shard_create: start-up, one thread.
 * pl_metric_add/set/observe: the shard's owner thread only. Rendering: any thread. */
#ifndef PL_METRICS_H
#define PL_METRICS_H

#include "core/pl_common.h"
#include "core/pl_buf.h"

#include <stdatomic.h>

typedef struct pl_metrics pl_metrics_t;
typedef struct pl_metrics_shard pl_metrics_shard_t;
typedef uint32_t pl_metric_id_t;

#define PL_METRICS_MAX_SLOTS 8192     /* slots per shard (histograms use several) */
#define PL_METRICS_MAX_SERIES 4096    /* series per registry */
#define PL_METRICS_MAX_SHARDS 256     /* shards (writer threads) per registry */

/* A writer shard. Public only so the writers below inline to a load, an add and a store;
 * other code must not touch the fields. Id 0 is never handed out: its slot is scratch, so
 * writing to a zero-initialised id is harmless and never rendered. */
struct pl_metrics_shard {
    _Alignas(64) _Atomic uint64_t slots[PL_METRICS_MAX_SLOTS];
    pl_metrics_t *reg;                /* histogram bounds for pl_metric_observe */
};

/* Reader-side gauge: returns the current value. Must be thread-safe. Called by the
 * rendering thread with no registry lock held. */
typedef double (*pl_metric_gauge_fn)(void *arg);

pl_metrics_t *pl_metrics_create(void);   /* Returns an owned registry; aborts on OOM */
void pl_metrics_destroy(pl_metrics_t *reg);  /* also destroys its shards */

/* Registration: name must match [a-zA-Z_:][a-zA-Z0-9_:]*, labels is NULL or the text
 * between the braces (`a="x",b="y"`: label names [a-zA-Z_][a-zA-Z0-9_]* not starting
 * with "__", values escaped as in the exposition format: \\ \" \n). name, help and labels
 * are copied. Aborts (start-up bug) on bad names or labels, on a name registered again
 * with another type or the same labels, on `le` in a histogram's labels, or when slots
 * or series run out. Thread-safe (a mutex), but meant for start-up. */
pl_metric_id_t pl_metrics_counter(pl_metrics_t *reg, const char *name, const char *help,
                                  const char *labels);
pl_metric_id_t pl_metrics_gauge(pl_metrics_t *reg, const char *name, const char *help,
                                const char *labels);
void pl_metrics_gauge_fn(pl_metrics_t *reg, const char *name, const char *help,
                         const char *labels, pl_metric_gauge_fn fn, void *arg);
/* Like pl_metrics_gauge_fn but typed counter (fn must never decrease), e.g. CPU seconds. */
void pl_metrics_counter_fn(pl_metrics_t *reg, const char *name, const char *help,
                           const char *labels, pl_metric_gauge_fn fn, void *arg);
/* bounds: strictly ascending finite upper bounds (the +Inf bucket is implicit), copied. */
pl_metric_id_t pl_metrics_histogram(pl_metrics_t *reg, const char *name, const char *help,
                                    const char *labels, const double *bounds, size_t n_bounds);

/* A shard for one writer thread. Returns a borrowed pointer owned by reg (64 KiB,
 * zeroed). Thread-safe: a thread may create its shard after rendering has started.
 * Aborts when PL_METRICS_MAX_SHARDS are in use. */
pl_metrics_shard_t *pl_metrics_shard_create(pl_metrics_t *reg);

/* The name and label-text rules above, for tests and for callers that build names. */
bool pl_metrics_name_valid(const char *name);
bool pl_metrics_labels_valid(const char *labels);

/* Writers: owner thread of the shard only. The single writer makes a relaxed load and
 * store exact without a read-modify-write (no lock prefix); readers load relaxed. */
static inline void pl_metric_add(pl_metrics_shard_t *s, pl_metric_id_t id, uint64_t n)
{
    _Atomic uint64_t *slot = &s->slots[id];
    atomic_store_explicit(slot, atomic_load_explicit(slot, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
static inline void pl_metric_inc(pl_metrics_shard_t *s, pl_metric_id_t id) { pl_metric_add(s, id, 1); }
/* Gauges: each shard holds its own share (signed, two's complement in the slot); the
 * rendered value is the sum over shards. */
static inline void pl_metric_gauge_add(pl_metrics_shard_t *s, pl_metric_id_t id, int64_t delta)
{
    pl_metric_add(s, id, (uint64_t)delta);
}
static inline void pl_metric_gauge_set(pl_metrics_shard_t *s, pl_metric_id_t id, int64_t value)
{
    atomic_store_explicit(&s->slots[id], (uint64_t)value, memory_order_relaxed);
}
void pl_metric_observe(pl_metrics_shard_t *s, pl_metric_id_t id, double value);

/* Reading (any thread): the sum over shards. For tests and /stats. */
uint64_t pl_metrics_read_counter(const pl_metrics_t *reg, pl_metric_id_t id);
int64_t pl_metrics_read_gauge(const pl_metrics_t *reg, pl_metric_id_t id);

/* Appends the Prometheus text exposition of every series to out. */
void pl_metrics_render_prometheus(const pl_metrics_t *reg, pl_buf_t *out);
/* Appends a JSON object {"name{labels}": value, ...} (histograms as
 * {"count":..,"sum":..,"buckets":{"le":count}} with cumulative counts; a NaN or infinite
 * value as null) to out. */
void pl_metrics_render_json(const pl_metrics_t *reg, pl_buf_t *out);

/* Registers process metrics read from /proc/self: parley_process_resident_memory_bytes,
 * parley_process_virtual_memory_bytes, parley_process_open_fds, parley_process_max_fds,
 * parley_process_cpu_seconds_total, parley_process_start_time_seconds,
 * parley_process_threads. A value that cannot be read renders as NaN. */
void pl_metrics_register_process(pl_metrics_t *reg);

#endif
