/* metrics_process.c: the standard process metrics (the names node_exporter-style
 * dashboards expect, with the parley_ prefix), read from /proc/self at render time.
 *
 * Not here: per-thread CPU, cgroup limits, anything not Linux.
 *
 * Threading: the callbacks run on whichever thread renders; they keep no state and
 * use only reentrant calls. A value that cannot be read is NaN. */
#include "core/pl_metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Reads a small /proc file into buf (NUL-terminated). Returns false on failure. */
static bool read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return len > 0;
}

/* Field `field` (1-based, as in proc(5)) of /proc/self/stat. Field 2, comm, may hold
 * spaces and parentheses, so counting starts after the last ')'. */
static bool stat_field(int field, unsigned long long *out)
{
    char buf[2048];
    if (field < 3 || !read_file("/proc/self/stat", buf, sizeof buf))
        return false;
    char *p = strrchr(buf, ')');
    if (!p)
        return false;
    p++;
    for (int i = 3; i <= field; i++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return false;
        if (i == field) {
            char *end;
            *out = strtoull(p, &end, 10);
            return end != p;
        }
        while (*p && *p != ' ')
            p++;
    }
    return false;
}

/* Field `index` (0-based) of /proc/self/statm, in bytes. */
static double statm_bytes(int index)
{
    char buf[256];
    unsigned long long v[2];
    if (!read_file("/proc/self/statm", buf, sizeof buf) ||
        sscanf(buf, "%llu %llu", &v[0], &v[1]) != 2)
        return NAN;
    return (double)v[index] * (double)sysconf(_SC_PAGESIZE);
}

static double proc_rss(void *arg)
{
    PL_UNUSED(arg);
    return statm_bytes(1);
}

static double proc_vsize(void *arg)
{
    PL_UNUSED(arg);
    return statm_bytes(0);
}

static double proc_open_fds(void *arg)
{
    PL_UNUSED(arg);
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return NAN;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        /* Not the descriptor this listing itself holds open. */
        if (atoi(e->d_name) == dirfd(d))
            continue;
        n++;
    }
    closedir(d);
    return n;
}

static double proc_max_fds(void *arg)
{
    PL_UNUSED(arg);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return NAN;
    return rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

static double proc_cpu_seconds(void *arg)
{
    PL_UNUSED(arg);
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return NAN;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Boot time (btime, seconds since the epoch) from /proc/stat. Read line by line: the
 * "intr" line before it is tens of kilobytes on large machines. */
static bool boot_time(unsigned long long *out)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0)
        found = sscanf(line, "btime %llu", out) == 1;
    free(line);
    fclose(f);
    return found;
}

static double proc_start_time(void *arg)
{
    PL_UNUSED(arg);
    unsigned long long start_ticks, btime;
    long hz = sysconf(_SC_CLK_TCK);
    /* proc(5): field 22, starttime, in clock ticks since boot. */
    if (hz <= 0 || !stat_field(22, &start_ticks) || !boot_time(&btime))
        return NAN;
    return (double)btime + (double)start_ticks / (double)hz;
}

static double proc_threads(void *arg)
{
    PL_UNUSED(arg);
    unsigned long long n;
    return stat_field(20, &n) ? (double)n : NAN;   /* proc(5): num_threads */
}

void pl_metrics_register_process(pl_metrics_t *reg)
{
    pl_metrics_gauge_fn(reg, "parley_process_resident_memory_bytes",
                        "Resident memory size in bytes.", NULL, proc_rss, NULL);
    pl_metrics_gauge_fn(reg, "parley_process_virtual_memory_bytes",
                        "Virtual memory size in bytes.", NULL, proc_vsize, NULL);
    pl_metrics_gauge_fn(reg, "parley_process_open_fds", "Number of open file descriptors.",
                        NULL, proc_open_fds, NULL);
    pl_metrics_gauge_fn(reg, "parley_process_max_fds",
                        "Maximum number of open file descriptors (RLIMIT_NOFILE).", NULL,
                        proc_max_fds, NULL);
    pl_metrics_counter_fn(reg, "parley_process_cpu_seconds_total",
                          "Total user and system CPU time spent in seconds.", NULL,
                          proc_cpu_seconds, NULL);
    pl_metrics_gauge_fn(reg, "parley_process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.", NULL,
                        proc_start_time, NULL);
    pl_metrics_gauge_fn(reg, "parley_process_threads", "Number of OS threads in the process.",
                        NULL, proc_threads, NULL);
}
