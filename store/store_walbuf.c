/* store_walbuf.c: a VFS over SQLite's default one that joins a commit's WAL frames into
 * one write.
 *
 * SQLite appends each WAL frame with two pwrite calls, its 24-byte header and then the
 * page: two system calls per page, ~1.2 per chat message (docs/BENCHMARKS.md). This
 * VFS ("parley-walbuf") keeps such frames in a buffer and writes them with one pwrite
 * once the commit frame is complete, before SQLite publishes the commit in the
 * wal-index (which it does only after writing every frame), so no other connection can
 * look for a frame that is still in the buffer. It buffers nothing but that pattern:
 * a 24-byte write (a frame header) and the one write that follows it. Any other write
 * (the WAL header, or frames written some other way by a future SQLite), and every
 * read, sync, truncate, size query, file control and close of the WAL file, first
 * writes out what is buffered. A crash loses only frames of a commit that had not
 * finished -- as it would without the buffer. The database file and every other file
 * go straight to the default VFS.
 *
 * Threading: a file belongs to its connection, which one thread uses at a time; the
 * VFS itself is registered once (pl_store_walbuf_register) and never changes. */
#include "store/store_int.h"

#include <string.h>

/* Then written out anyway. Under 128 KiB: the unix VFS passes a write's size masked
 * with 0x1ffff to pwrite (seekAndWriteFd), so 128 KiB and more would come out short
 * and read as a full disk. */
#define WALBUF_CAP (96 * 1024)
#define WAL_FRAME_HDR 24            /* sqlite.org/fileformat2.html#walformat */

typedef struct walbuf_file {
    sqlite3_file base;              /* pMethods: ours */
    sqlite3_file *real;             /* the default VFS's file, right after this struct */
    bool wal;
    bool commit_next;               /* the last write was a commit frame's header */
    bool frame_next;                /* ... any frame's header: its page may be joined */
    unsigned char *buf;             /* WAL only: pending bytes for offsets off.. */
    size_t len;
    sqlite3_int64 off;
} walbuf_file_t;

static sqlite3_vfs g_vfs;
static sqlite3_vfs *g_real;

static walbuf_file_t *wf(sqlite3_file *f)
{
    return (walbuf_file_t *)(void *)f;
}

/* Writes the buffered frames out. */
static int flush(walbuf_file_t *f)
{
    if (!f->len)
        return SQLITE_OK;
    int rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->off);
    f->len = 0;
    return rc;
}

static int x_close(sqlite3_file *file)
{
    walbuf_file_t *f = wf(file);
    int rc = flush(f);
    int rc2 = f->real->pMethods->xClose(f->real);
    sqlite3_free(f->buf);
    f->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int x_read(sqlite3_file *file, void *p, int amt, sqlite3_int64 off)
{
    walbuf_file_t *f = wf(file);
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, p, amt, off);
}

static bool commit_header(const unsigned char *h)
{
    /* Bytes 4-7: the database size after the commit, zero for other frames. */
    return h[4] | h[5] | h[6] | h[7];
}

static int x_write(sqlite3_file *file, const void *p, int amt, sqlite3_int64 off)
{
    walbuf_file_t *f = wf(file);
    bool header = f->wal && amt == WAL_FRAME_HDR;
    bool page = f->wal && !header && f->frame_next;
    if (!header && !page) {
        /* Not the pattern this file joins: in order, straight through. */
        f->frame_next = f->commit_next = false;
        int rc = flush(f);
        return rc != SQLITE_OK ? rc : f->real->pMethods->xWrite(f->real, p, amt, off);
    }
    if (f->len && (off != f->off + (sqlite3_int64)f->len || f->len + (size_t)amt > WALBUF_CAP)) {
        int rc = flush(f);
        if (rc != SQLITE_OK)
            return rc;
    }
    if (!f->buf && !(f->buf = sqlite3_malloc(WALBUF_CAP)))
        return SQLITE_NOMEM;
    if ((size_t)amt > WALBUF_CAP)
        return f->real->pMethods->xWrite(f->real, p, amt, off);
    if (!f->len)
        f->off = off;
    memcpy(f->buf + f->len, p, (size_t)amt);
    f->len += (size_t)amt;
    if (header) {
        f->frame_next = true;
        f->commit_next = commit_header(p);
        return SQLITE_OK;
    }
    bool commit = f->commit_next;
    f->frame_next = f->commit_next = false;
    return commit ? flush(f) : SQLITE_OK;
}

static int x_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    walbuf_file_t *f = wf(file);
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int x_sync(sqlite3_file *file, int flags)
{
    walbuf_file_t *f = wf(file);
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int x_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    walbuf_file_t *f = wf(file);
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int x_lock(sqlite3_file *file, int lock)
{
    return wf(file)->real->pMethods->xLock(wf(file)->real, lock);
}

static int x_unlock(sqlite3_file *file, int lock)
{
    return wf(file)->real->pMethods->xUnlock(wf(file)->real, lock);
}

static int x_check_reserved(sqlite3_file *file, int *out)
{
    return wf(file)->real->pMethods->xCheckReservedLock(wf(file)->real, out);
}

static int x_file_control(sqlite3_file *file, int op, void *arg)
{
    walbuf_file_t *f = wf(file);
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int x_sector_size(sqlite3_file *file)
{
    return wf(file)->real->pMethods->xSectorSize(wf(file)->real);
}

static int x_device_characteristics(sqlite3_file *file)
{
    return wf(file)->real->pMethods->xDeviceCharacteristics(wf(file)->real);
}

static int x_shm_map(sqlite3_file *file, int page, int size, int extend, void volatile **out)
{
    return wf(file)->real->pMethods->xShmMap(wf(file)->real, page, size, extend, out);
}

static int x_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    return wf(file)->real->pMethods->xShmLock(wf(file)->real, offset, n, flags);
}

static void x_shm_barrier(sqlite3_file *file)
{
    wf(file)->real->pMethods->xShmBarrier(wf(file)->real);
}

static int x_shm_unmap(sqlite3_file *file, int del)
{
    return wf(file)->real->pMethods->xShmUnmap(wf(file)->real, del);
}

static int x_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **out)
{
    return wf(file)->real->pMethods->xFetch(wf(file)->real, off, amt, out);
}

static int x_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
    return wf(file)->real->pMethods->xUnfetch(wf(file)->real, off, p);
}

static const sqlite3_io_methods g_methods = {
    3, x_close, x_read, x_write, x_truncate, x_sync, x_file_size, x_lock, x_unlock,
    x_check_reserved, x_file_control, x_sector_size, x_device_characteristics, x_shm_map,
    x_shm_lock, x_shm_barrier, x_shm_unmap, x_fetch, x_unfetch,
};

static int x_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                  int *out_flags)
{
    (void)vfs;
    walbuf_file_t *f = wf(file);
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)(void *)(f + 1);
    int rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
    if (!f->real->pMethods) {
        /* SQLite calls xClose only on a file whose pMethods is set; a failed open may
         * still have set the real one's, and then ours forwards the close. */
        f->base.pMethods = NULL;
        return rc;
    }
    /* Only methods version 3 files (the unix VFS's) are wrapped whole. */
    PL_ASSERT(f->real->pMethods->iVersion >= 3);
    f->wal = (flags & SQLITE_OPEN_WAL) != 0;
    f->base.pMethods = &g_methods;
    return rc;
}

/* The rest is the default VFS's. */
static int x_delete(sqlite3_vfs *v, const char *n, int sync)
{
    (void)v;
    return g_real->xDelete(g_real, n, sync);
}

static int x_access(sqlite3_vfs *v, const char *n, int flags, int *out)
{
    (void)v;
    return g_real->xAccess(g_real, n, flags, out);
}

static int x_full_pathname(sqlite3_vfs *v, const char *n, int cap, char *out)
{
    (void)v;
    return g_real->xFullPathname(g_real, n, cap, out);
}

static void *x_dl_open(sqlite3_vfs *v, const char *n)
{
    (void)v;
    return g_real->xDlOpen(g_real, n);
}

static void x_dl_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    g_real->xDlError(g_real, n, out);
}

static void (*x_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return g_real->xDlSym(g_real, h, sym);
}

static void x_dl_close(sqlite3_vfs *v, void *h)
{
    (void)v;
    g_real->xDlClose(g_real, h);
}

static int x_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_real->xRandomness(g_real, n, out);
}

static int x_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return g_real->xSleep(g_real, us);
}

static int x_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return g_real->xCurrentTime(g_real, out);
}

static int x_get_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_real->xGetLastError(g_real, n, out);
}

static int x_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return g_real->xCurrentTimeInt64(g_real, out);
}

int pl_store_walbuf_register(void)
{
    g_real = sqlite3_vfs_find(NULL);
    if (!g_real || g_real->iVersion < 2)
        return PL_ESTATE;
    g_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(walbuf_file_t) + g_real->szOsFile,
        .mxPathname = g_real->mxPathname,
        .zName = PL_STORE_WALBUF_VFS,
        .xOpen = x_open,
        .xDelete = x_delete,
        .xAccess = x_access,
        .xFullPathname = x_full_pathname,
        .xDlOpen = x_dl_open,
        .xDlError = x_dl_error,
        .xDlSym = x_dl_sym,
        .xDlClose = x_dl_close,
        .xRandomness = x_randomness,
        .xSleep = x_sleep,
        .xCurrentTime = x_current_time,
        .xGetLastError = x_get_last_error,
        .xCurrentTimeInt64 = x_current_time_int64,
    };
    return sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK ? 0 : PL_ESTATE;
}
