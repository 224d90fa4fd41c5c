/*
 * The SQLite VFS of eventbus: the platform's default VFS ("unix"), except that a WAL file's
 * writes are gathered in memory and reach the file as one write per commit (issue 12).
 *
 * SQLite appends a commit to the WAL as two writes per page, a 24-byte frame header and the
 * page, and nothing in between needs them in the file: other connections read the WAL only up
 * to the last commit the wal-index names, and SQLite updates the wal-index after it has written
 * every frame of the commit. At 1 KiB pages and some 18 pages a commit, that was 36 write calls a
 * commit; they were a fifth of the server's samples under pipelined publishing.
 *
 * The rules, for a file opened with SQLITE_OPEN_WAL:
 *   - a write that continues the gathered run is appended to it; any other write sends the run
 *     first, so writes reach the file in the order SQLite made them;
 *   - the page that follows a commit frame's header (one whose "database size after commit" is
 *     not 0) ends the commit: the run is sent before xWrite returns, so a commit is in the file
 *     (in the operating system's cache; xSync makes it durable) before SQLite publishes it in the
 *     wal-index, and before the commit returns to its caller;
 *   - after that, writes go straight to the file until one appends after the commit frame or
 *     writes a new WAL header: a commit that overwrote frames it had spilled rewrites their
 *     headers' checksums after its commit frame, and those must be in the file before the
 *     commit returns, or a crash would lose it (the next start-up's recovery stops at the first
 *     frame whose checksum fails);
 *   - every other call on the file (read, sync, truncate, size, file control, close) sends the
 *     run first, so the connection's own reads of frames it spilled mid-transaction see them;
 *   - a run is sent before it would pass 64 KiB: the default VFS writes less than 128 KiB a
 *     call (it keeps the low 17 bits of the length), and a large transaction takes no more
 *     memory than that.
 * So the run only ever holds frames of a transaction that has not committed yet. A write that
 * fails reports its error to the call that sent the run (the commit's last page, or the sync),
 * and the run is dropped: SQLite then rolls the transaction back and writes its frames again,
 * from the same offset, in the next one. Every other file (the database, its shared memory,
 * journals) is the default VFS's, untouched.
 *
 * The VFS registers itself as SQLite's default, under the name "eventbus-wal", when the program
 * starts (register_at_start, a constructor, before main and any thread): engine/build.rs links
 * this file whole into every binary that links the engine crate, and nothing calls it by name.
 * That initializes SQLite before main, which only forbids sqlite3_config (neither rusqlite nor
 * sqlx calls it). If registering fails, connections use the platform's VFS: slower, no less
 * correct; the engine's tests (store/vfs.rs) check that it is the default.
 */

#include <string.h>

#include "sqlite3.h"

/* The most a run holds (a page is at most 64 KiB). */
#define RUN_MAX (64 * 1024)
/* The size of a WAL frame header; SQLite writes every header alone (WAL_FRAME_HDRSIZE). */
#define FRAME_HEADER 24
/* The size of the WAL's own header, written at offset 0 when the WAL starts again. */
#define WAL_HEADER 32

static sqlite3_vfs *base_vfs;

typedef struct File {
  sqlite3_file file;    /* this VFS's methods; must be first */
  sqlite3_file *base;   /* the default VFS's file, allocated right after this struct */
  int wal;              /* a WAL file: writes are gathered */
  int commit_pending;   /* the last write was a commit frame's header */
  int through;          /* a commit was sent: write straight to the file until the next append */
  sqlite3_int64 next_frame; /* the offset after the last commit sent */
  unsigned char *run;   /* the gathered writes, contiguous from run_offset */
  sqlite3_int64 run_offset;
  int run_len;
} File;

/* Writes the gathered run to the file and empties it, whatever the outcome. */
static int send_run(File *f) {
  int rc = SQLITE_OK;
  if (f->run_len > 0) {
    rc = f->base->pMethods->xWrite(f->base, f->run, f->run_len, f->run_offset);
    f->run_len = 0;
  }
  return rc;
}

static int x_close(sqlite3_file *file) {
  File *f = (File *)file;
  int rc = send_run(f);
  int closed = f->base->pMethods->xClose(f->base);
  sqlite3_free(f->run);
  f->run = 0;
  return rc != SQLITE_OK ? rc : closed;
}

static int x_read(sqlite3_file *file, void *out, int amount, sqlite3_int64 offset) {
  File *f = (File *)file;
  int rc = send_run(f);
  if (rc != SQLITE_OK) return rc;
  return f->base->pMethods->xRead(f->base, out, amount, offset);
}

static int x_write(sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset) {
  File *f = (File *)file;
  if (!f->wal) return f->base->pMethods->xWrite(f->base, data, amount, offset);
  if (f->through) {
    if (offset != f->next_frame && !(offset == 0 && amount == WAL_HEADER)) {
      return f->base->pMethods->xWrite(f->base, data, amount, offset);
    }
    f->through = 0;
  }
  int rc;
  if (f->run_len > 0 && (offset != f->run_offset + f->run_len || f->run_len + amount > RUN_MAX)) {
    rc = send_run(f);
    if (rc != SQLITE_OK) return rc;
  }

  /* Whether this write ends a commit: the page after a commit frame's header. */
  int ends_commit = 0;
  if (amount == FRAME_HEADER) {
    const unsigned char *h = data;
    f->commit_pending = (h[4] | h[5] | h[6] | h[7]) != 0;
  } else {
    ends_commit = f->commit_pending;
    f->commit_pending = 0;
  }

  if (!f->run) f->run = sqlite3_malloc(RUN_MAX);
  if (f->run && amount <= RUN_MAX) {
    if (f->run_len == 0) f->run_offset = offset;
    memcpy(f->run + f->run_len, data, (size_t)amount);
    f->run_len += amount;
  } else {
    /* No memory for a run (or a write larger than pages are): the run is empty here (it was
     * never allocated, or sent above), so this one goes to the file as it is. */
    rc = f->base->pMethods->xWrite(f->base, data, amount, offset);
    if (rc != SQLITE_OK) return rc;
  }
  if (!ends_commit) return SQLITE_OK;
  rc = send_run(f);
  if (rc == SQLITE_OK) {
    f->through = 1;
    f->next_frame = offset + amount;
  }
  return rc;
}

static int x_truncate(sqlite3_file *file, sqlite3_int64 size) {
  File *f = (File *)file;
  int rc = send_run(f);
  if (rc != SQLITE_OK) return rc;
  return f->base->pMethods->xTruncate(f->base, size);
}

static int x_sync(sqlite3_file *file, int flags) {
  File *f = (File *)file;
  int rc = send_run(f);
  if (rc != SQLITE_OK) return rc;
  return f->base->pMethods->xSync(f->base, flags);
}

static int x_file_size(sqlite3_file *file, sqlite3_int64 *size) {
  File *f = (File *)file;
  int rc = send_run(f);
  if (rc != SQLITE_OK) return rc;
  return f->base->pMethods->xFileSize(f->base, size);
}

static int x_lock(sqlite3_file *file, int lock) {
  File *f = (File *)file;
  return f->base->pMethods->xLock(f->base, lock);
}

static int x_unlock(sqlite3_file *file, int lock) {
  File *f = (File *)file;
  return f->base->pMethods->xUnlock(f->base, lock);
}

static int x_check_reserved_lock(sqlite3_file *file, int *out) {
  File *f = (File *)file;
  return f->base->pMethods->xCheckReservedLock(f->base, out);
}

static int x_file_control(sqlite3_file *file, int op, void *arg) {
  File *f = (File *)file;
  int rc = send_run(f);
  if (rc != SQLITE_OK) return rc;
  return f->base->pMethods->xFileControl(f->base, op, arg);
}

static int x_sector_size(sqlite3_file *file) {
  File *f = (File *)file;
  return f->base->pMethods->xSectorSize(f->base);
}

static int x_device_characteristics(sqlite3_file *file) {
  File *f = (File *)file;
  return f->base->pMethods->xDeviceCharacteristics(f->base);
}

static int x_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out) {
  File *f = (File *)file;
  return f->base->pMethods->xShmMap(f->base, region, size, extend, out);
}

static int x_shm_lock(sqlite3_file *file, int offset, int n, int flags) {
  File *f = (File *)file;
  return f->base->pMethods->xShmLock(f->base, offset, n, flags);
}

static void x_shm_barrier(sqlite3_file *file) {
  File *f = (File *)file;
  f->base->pMethods->xShmBarrier(f->base);
}

static int x_shm_unmap(sqlite3_file *file, int delete_flag) {
  File *f = (File *)file;
  return f->base->pMethods->xShmUnmap(f->base, delete_flag);
}

static int x_fetch(sqlite3_file *file, sqlite3_int64 offset, int amount, void **out) {
  File *f = (File *)file;
  return f->base->pMethods->xFetch(f->base, offset, amount, out);
}

static int x_unfetch(sqlite3_file *file, sqlite3_int64 offset, void *page) {
  File *f = (File *)file;
  return f->base->pMethods->xUnfetch(f->base, offset, page);
}

/* Version 3 (shared memory, memory-mapped reads): the methods' version must not pass the
 * default VFS's files', which x_open checks. */
static const sqlite3_io_methods methods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved_lock,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

static int x_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags, int *out_flags) {
  (void)vfs;
  File *f = (File *)file;
  memset(f, 0, sizeof(*f));
  f->base = (sqlite3_file *)&f[1];
  f->wal = (flags & SQLITE_OPEN_WAL) != 0;
  int rc = base_vfs->xOpen(base_vfs, name, f->base, flags, out_flags);
  if (f->base->pMethods && f->base->pMethods->iVersion < methods.iVersion) {
    /* Never on Linux ("unix" files are version 3); refuse rather than forward to nothing. */
    f->base->pMethods->xClose(f->base);
    f->base->pMethods = 0;
    rc = rc == SQLITE_OK ? SQLITE_CANTOPEN : rc;
  }
  /* SQLite closes a file whose methods are set, even when opening it failed. */
  f->file.pMethods = f->base->pMethods ? &methods : 0;
  return rc;
}

static int x_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
  (void)vfs;
  return base_vfs->xDelete(base_vfs, name, sync_dir);
}

static int x_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
  (void)vfs;
  return base_vfs->xAccess(base_vfs, name, flags, out);
}

static int x_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out) {
  (void)vfs;
  return base_vfs->xFullPathname(base_vfs, name, n, out);
}

static void *x_dl_open(sqlite3_vfs *vfs, const char *name) {
  (void)vfs;
  return base_vfs->xDlOpen(base_vfs, name);
}

static void x_dl_error(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  base_vfs->xDlError(base_vfs, n, out);
}

static void (*x_dl_sym(sqlite3_vfs *vfs, void *lib, const char *symbol))(void) {
  (void)vfs;
  return base_vfs->xDlSym(base_vfs, lib, symbol);
}

static void x_dl_close(sqlite3_vfs *vfs, void *lib) {
  (void)vfs;
  base_vfs->xDlClose(base_vfs, lib);
}

static int x_randomness(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  return base_vfs->xRandomness(base_vfs, n, out);
}

static int x_sleep(sqlite3_vfs *vfs, int micros) {
  (void)vfs;
  return base_vfs->xSleep(base_vfs, micros);
}

static int x_current_time(sqlite3_vfs *vfs, double *out) {
  (void)vfs;
  return base_vfs->xCurrentTime(base_vfs, out);
}

static int x_get_last_error(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  return base_vfs->xGetLastError(base_vfs, n, out);
}

static int x_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
  (void)vfs;
  return base_vfs->xCurrentTimeInt64(base_vfs, out);
}

static sqlite3_vfs vfs = {
    2,    /* version: the system-call hooks of version 3 are the default VFS's own business */
    0,    /* szOsFile, set by register_at_start */
    0,    /* mxPathname, likewise */
    0,    /* pNext */
    "eventbus-wal",
    0,    /* pAppData */
    x_open,
    x_delete,
    x_access,
    x_full_pathname,
    x_dl_open,
    x_dl_error,
    x_dl_sym,
    x_dl_close,
    x_randomness,
    x_sleep,
    x_current_time,
    x_get_last_error,
    x_current_time_int64,
    0,
    0,
    0,
};

__attribute__((constructor)) static void register_at_start(void) {
  sqlite3_vfs *found = sqlite3_vfs_find(0);
  if (!found || found->iVersion < 2 || base_vfs) return;
  base_vfs = found;
  vfs.szOsFile = (int)sizeof(File) + found->szOsFile;
  vfs.mxPathname = found->mxPathname;
  sqlite3_vfs_register(&vfs, 1);
}
