//! The WAL write gatherer: a VFS over SQLite's default one that turns a
//! commit's many small writes to the WAL into one.
//!
//! SQLite appends each page of a commit to the WAL with two `pwrite`s: the
//! frame's 24-byte header, then the page. A frame is 4,120 bytes, so the
//! two writes touch three page-cache pages between them. A flow's five
//! calls write about six pages, and under load the writer thread spent a
//! fifth of its time in the kernel, most of it in those writes (perf).
//! Here the writer connection's WAL writes that follow one another are
//! kept in memory and reach the file in one write when the commit frame is
//! complete, before SQLite publishes the commit in the WAL index.
//!
//! Why this keeps every promise SQLite makes:
//! - Nothing is visible before it is in the file. Other connections (the
//!   checkpointer, a `sqlite3` shell, Litestream) find frames through the
//!   WAL index header, which SQLite updates only after `walFrames` has
//!   written the commit frame; this VFS writes the gathered frames when it
//!   receives the commit frame's page, inside that same `xWrite`, and a
//!   failure is returned by it, so SQLite sees a failed commit and
//!   publishes nothing.
//! - What SQLite writes after the commit frame's page in the same commit
//!   (checksums rewritten when a spilled page changed again, copies of the
//!   last frame padding to a sector) goes straight to the file: from the
//!   commit frame's page to the end of the write transaction the file is
//!   sealed.
//! - The writer's own reads of the WAL (pages of its open transaction
//!   spilled from the cache) and every other call on the file (size,
//!   truncate, sync, lock, file control, close) write what is gathered
//!   first: the file is always what SQLite believes it wrote.
//! - When the write transaction ends (SQLite releases the WAL write lock
//!   through the database file's `xShmLock`), anything still gathered
//!   belongs to a transaction that rolled back, after the cache spilled:
//!   it is dropped, never written over frames another process may append
//!   once the lock is free.
//! - A failed write of gathered bytes fails every later call on the file
//!   until the write transaction ends: SQLite believes them written, so
//!   the transaction must not commit. It rolls back (a commit frame cannot
//!   be written), its frames past the WAL's last commit are never read, and
//!   the next transaction writes over them: a disk full for one large
//!   write, or a file size limit, fails that write alone, as it would
//!   without this VFS (it used to fail every write until a restart, while
//!   reads went on).
//! - Crash safety is the WAL's own: a commit frame is recognised by its
//!   header (bytes 4..8, the database size after the commit, are nonzero
//!   only there: sqlite.org/fileformat2.html#walformat), and after a crash
//!   SQLite recovers the prefix of frames whose checksums chain, whatever
//!   part of a write reached the disk.
//!
//! The database file is wrapped only to see the write lock's release (every
//! other method goes straight to the default VFS's object); journals and
//! temporary files are the default VFS's own objects, opened in place. In
//! exclusive locking mode the lock is never released: after the first
//! commit every write goes straight to the file, as without this VFS.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::mem::size_of;
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the writer's connection opens its database with.
const VFS_NAME: &CStr = c"onboarding-gather";

/// Past this many gathered bytes they are written at once: a commit of a
/// full batch is far below it (256 calls write about 300 frames, 1.2 MiB,
/// at worst), and memory stays bounded whatever one transaction writes.
const MAX_GATHERED: usize = 1 << 21;

/// The most one write to the default VFS may carry: its `unixWrite` masks
/// each `pwrite`'s length to 17 bits (SQLite itself never writes more than
/// a page at once) and loops on short writes, so a write of 128 KiB or
/// more writes a first part, then asks for 0 bytes and fails as "disk
/// full" (seen with 218,360 bytes). 31 pages keeps below the mask.
const MAX_WRITE: usize = 31 * 4096;

/// Size of a WAL frame header (the file format's, fixed).
const FRAME_HEADER: usize = 24;

/// Registers the VFS once (not as the default); every later call returns
/// the first outcome.
pub(super) fn register() -> Result<&'static CStr, String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which
            // lives as long as the process; the new VFS is leaked on purpose
            // (SQLite keeps a pointer to it until the process ends) and its
            // fields point at statics.
            unsafe {
                let real = ffi::sqlite3_vfs_find(ptr::null());
                if real.is_null() {
                    return Err("SQLite has no default VFS".to_string());
                }
                let vfs = Box::leak(Box::new(gather_vfs(real)));
                match ffi::sqlite3_vfs_register(vfs, 0) {
                    ffi::SQLITE_OK => Ok(()),
                    rc => Err(format!(
                        "cannot register the WAL gatherer (SQLite code {rc})"
                    )),
                }
            }
        })
        .clone()
        .map(|()| VFS_NAME)
}

/// The writes gathered for one WAL file: contiguous bytes starting at
/// `start`, where the commit frame's page will be written once its header
/// has been, whether the commit is written (sealed), and the first failed
/// write of gathered bytes.
#[derive(Debug, Default)]
struct Gather {
    bytes: Vec<u8>,
    start: i64,
    commit_page_at: Option<i64>,
    sealed: bool,
    failed: Option<c_int>,
}

impl Gather {
    /// Takes one `xWrite`; writes through `sink` what must reach the file
    /// now (a gap in the offsets, the cap, a complete commit frame, and
    /// everything once sealed). Returns SQLite's result code.
    fn write(
        &mut self,
        data: &[u8],
        offset: i64,
        sink: &mut impl FnMut(&[u8], i64) -> c_int,
    ) -> c_int {
        if let Some(rc) = self.failed {
            return rc;
        }
        if self.sealed {
            return sink(data, offset);
        }
        if !self.bytes.is_empty() && offset != self.end() {
            let rc = self.flush(sink);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if self.bytes.is_empty() {
            self.start = offset;
        }
        self.bytes.extend_from_slice(data);
        if data.len() == FRAME_HEADER && data[4..8] != [0, 0, 0, 0] {
            // A commit frame's header: the page after it ends the commit.
            self.commit_page_at = Some(offset + FRAME_HEADER as i64);
            return ffi::SQLITE_OK;
        }
        if self.commit_page_at == Some(offset) {
            let rc = self.flush(sink);
            self.sealed = rc == ffi::SQLITE_OK;
            return rc;
        }
        if self.bytes.len() >= MAX_GATHERED {
            return self.flush(sink);
        }
        ffi::SQLITE_OK
    }

    /// Writes everything gathered, in writes of at most [`MAX_WRITE`]
    /// bytes. A failure is kept and answered until the transaction ends:
    /// SQLite believes these bytes written.
    fn flush(&mut self, sink: &mut impl FnMut(&[u8], i64) -> c_int) -> c_int {
        if let Some(rc) = self.failed {
            return rc;
        }
        self.commit_page_at = None;
        let mut offset = self.start;
        for chunk in self.bytes.chunks(MAX_WRITE) {
            let rc = sink(chunk, offset);
            if rc != ffi::SQLITE_OK {
                self.bytes.clear();
                self.failed = Some(rc);
                return rc;
            }
            offset += chunk.len() as i64;
        }
        self.bytes.clear();
        ffi::SQLITE_OK
    }

    /// The write transaction ended: what is still gathered belongs to one
    /// that rolled back, and the next transaction gathers again. A failure
    /// ended with it: a transaction with a failed write never committed
    /// (every write after it failed, the commit frame's too).
    fn end_transaction(&mut self) {
        self.bytes.clear();
        self.commit_page_at = None;
        self.sealed = false;
        self.failed = None;
    }

    fn end(&self) -> i64 {
        self.start + self.bytes.len() as i64
    }
}

/// A WAL file as SQLite sees it: the methods below, then the default VFS's
/// own file object, opened in place at [`REAL_OFFSET`].
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// The database file this WAL belongs to (null once either is closed).
    db: *mut DbFile,
    gather: Gather,
}

/// A main database file: the methods below forward to the default VFS's
/// object, opened in place at [`REAL_OFFSET`]; `xShmLock` also tells the
/// WAL when the write transaction ends.
#[repr(C)]
struct DbFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// This database's WAL while it is open, else null.
    wal: *mut WalFile,
}

/// Where the default VFS's file object starts inside ours.
const REAL_OFFSET: usize = {
    let (wal, db) = (size_of::<WalFile>(), size_of::<DbFile>());
    (if wal > db { wal } else { db }).next_multiple_of(16)
};

/// The WAL index's write lock: the first of its shared-memory locks.
const WAL_WRITE_LOCK: c_int = 0;

fn gather_vfs(real: *mut ffi::sqlite3_vfs) -> ffi::sqlite3_vfs {
    // SAFETY: `real` is the registered default VFS (checked non-null).
    let real_ref = unsafe { &*real };
    ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: (REAL_OFFSET as c_int) + real_ref.szOsFile,
        mxPathname: real_ref.mxPathname,
        pNext: ptr::null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: real.cast(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    }
}

/// The default VFS this one forwards to.
///
/// # Safety
/// `vfs` must be this module's VFS.
unsafe fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    (*vfs).pAppData.cast()
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real = real_vfs(vfs);
    let Some(open) = (*real).xOpen else {
        (*file).pMethods = ptr::null();
        return ffi::SQLITE_CANTOPEN;
    };
    let wrapped = flags & (ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_MAIN_DB) != 0;
    if !wrapped {
        // A journal or a temporary file: the default VFS's object, in
        // place (ours is larger).
        return open(real, name, file, flags, out_flags);
    }
    let inner = file
        .cast::<u8>()
        .add(REAL_OFFSET)
        .cast::<ffi::sqlite3_file>();
    let rc = open(real, name, inner, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        // SQLite calls xClose only on a file whose pMethods is set.
        (*file).pMethods = ptr::null();
        if let Some(close) = (*inner).pMethods.as_ref().and_then(|m| m.xClose) {
            close(inner);
        }
        return rc;
    }
    if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
        ptr::write(
            file.cast::<DbFile>(),
            DbFile {
                base: ffi::sqlite3_file {
                    pMethods: &DB_METHODS,
                },
                real: inner,
                wal: ptr::null_mut(),
            },
        );
        return ffi::SQLITE_OK;
    }
    // SAFETY (of the link): a WAL's name is the one SQLite passed for it,
    // and its database was opened through this VFS first, so it is a
    // DbFile; SQLite closes the WAL before the database.
    let db = ffi::sqlite3_database_file_object(name).cast::<DbFile>();
    let wal = file.cast::<WalFile>();
    ptr::write(
        wal,
        WalFile {
            base: ffi::sqlite3_file {
                pMethods: &WAL_METHODS,
            },
            real: inner,
            db,
            gather: Gather::default(),
        },
    );
    if !db.is_null() {
        (*db).wal = wal;
    }
    ffi::SQLITE_OK
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The default VFS's object inside one of ours, and its methods.
///
/// # Safety
/// `real` must be an open file of the default VFS.
unsafe fn methods<'a>(real: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    &*(*real).pMethods
}

/// Our WAL file and the default VFS's object inside it.
///
/// # Safety
/// `file` must have been opened by [`x_open`] as a WAL, and not closed.
unsafe fn wal_parts<'a>(file: *mut ffi::sqlite3_file) -> (&'a mut WalFile, *mut ffi::sqlite3_file) {
    let wal = &mut *file.cast::<WalFile>();
    let real = wal.real;
    (wal, real)
}

/// Writes `bytes` at `offset` through the default VFS's file.
///
/// # Safety
/// `real` must be an open file of the default VFS.
unsafe fn write_real(real: *mut ffi::sqlite3_file, bytes: &[u8], offset: i64) -> c_int {
    match methods(real).xWrite {
        // Writes are capped at MAX_WRITE bytes, far below c_int::MAX.
        Some(write) => write(real, bytes.as_ptr().cast(), bytes.len() as c_int, offset),
        None => ffi::SQLITE_IOERR_WRITE,
    }
}

/// Writes the gathered bytes through the default VFS's file.
///
/// # Safety
/// As [`wal_parts`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    let (wal, real) = wal_parts(file);
    wal.gather
        .flush(&mut |bytes, offset| write_real(real, bytes, offset))
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let (wal, real) = wal_parts(file);
    let data = std::slice::from_raw_parts(data.cast::<u8>(), amount.max(0) as usize);
    wal.gather
        .write(data, offset, &mut |bytes, at| write_real(real, bytes, at))
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    let flushed = flush(file);
    let (wal, real) = wal_parts(file);
    if !wal.db.is_null() {
        (*wal.db).wal = ptr::null_mut();
    }
    let closed = match methods(real).xClose {
        Some(close) => close(real),
        None => ffi::SQLITE_OK,
    };
    ptr::drop_in_place(&mut wal.gather);
    (*file).pMethods = ptr::null();
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// The WAL's methods that reach the file: what is gathered is written
/// first, so each sees the file SQLite believes it wrote.
macro_rules! after_flush {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let (_, real) = wal_parts(file);
            match methods(real).$method {
                Some(method) => method(real $(, $arg)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    };
}

after_flush!(wal_read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
after_flush!(wal_truncate, xTruncate, (size: i64));
after_flush!(wal_sync, xSync, (flags: c_int));
after_flush!(wal_file_size, xFileSize, (size: *mut i64));
after_flush!(wal_lock, xLock, (level: c_int));
after_flush!(wal_unlock, xUnlock, (level: c_int));
after_flush!(wal_check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
after_flush!(wal_file_control, xFileControl, (op: c_int, arg: *mut c_void));

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (_, real) = wal_parts(file);
    methods(real).xSectorSize.map_or(4096, |f| f(real))
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (_, real) = wal_parts(file);
    methods(real).xDeviceCharacteristics.map_or(0, |f| f(real))
}

static DB_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(db_close),
    xRead: Some(db_read),
    xWrite: Some(db_write),
    xTruncate: Some(db_truncate),
    xSync: Some(db_sync),
    xFileSize: Some(db_file_size),
    xLock: Some(db_lock),
    xUnlock: Some(db_unlock),
    xCheckReservedLock: Some(db_check_reserved_lock),
    xFileControl: Some(db_file_control),
    xSectorSize: Some(db_sector_size),
    xDeviceCharacteristics: Some(db_device_characteristics),
    xShmMap: Some(db_shm_map),
    xShmLock: Some(db_shm_lock),
    xShmBarrier: Some(db_shm_barrier),
    xShmUnmap: Some(db_shm_unmap),
    xFetch: Some(db_fetch),
    xUnfetch: Some(db_unfetch),
};

/// The default VFS's object inside one of our database files.
///
/// # Safety
/// `file` must have been opened by [`x_open`] as a main database, and not
/// closed.
unsafe fn db_real(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    (*file.cast::<DbFile>()).real
}

/// Database methods, forwarded as they are; `$missing` answers a method
/// the default VFS lacks.
macro_rules! forward_db {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            let real = db_real(file);
            match methods(real).$method {
                Some(method) => method(real $(, $arg)*),
                None => $missing,
            }
        }
    };
}

forward_db!(db_read, xRead, (data: *mut c_void, amount: c_int, offset: i64) -> c_int, ffi::SQLITE_IOERR_READ);
forward_db!(db_write, xWrite, (data: *const c_void, amount: c_int, offset: i64) -> c_int, ffi::SQLITE_IOERR_WRITE);
forward_db!(db_truncate, xTruncate, (size: i64) -> c_int, ffi::SQLITE_IOERR_TRUNCATE);
forward_db!(db_sync, xSync, (flags: c_int) -> c_int, ffi::SQLITE_IOERR_FSYNC);
forward_db!(db_file_size, xFileSize, (size: *mut i64) -> c_int, ffi::SQLITE_IOERR_FSTAT);
forward_db!(db_lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_LOCK);
forward_db!(db_unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_UNLOCK);
forward_db!(db_check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
forward_db!(db_file_control, xFileControl, (op: c_int, arg: *mut c_void) -> c_int, ffi::SQLITE_NOTFOUND);
forward_db!(db_sector_size, xSectorSize, () -> c_int, 4096);
forward_db!(db_device_characteristics, xDeviceCharacteristics, () -> c_int, 0);
forward_db!(db_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR_SHMMAP);
forward_db!(db_shm_barrier, xShmBarrier, () -> (), ());
forward_db!(db_shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
forward_db!(db_fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int, {
    *out = ptr::null_mut();
    ffi::SQLITE_OK
});
forward_db!(db_unfetch, xUnfetch, (offset: i64, page: *mut c_void) -> c_int, ffi::SQLITE_OK);

/// The shared-memory locks of the WAL index. Releasing the write lock ends
/// the write transaction: the WAL drops what a rollback left gathered.
unsafe extern "C" fn db_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let db = &mut *file.cast::<DbFile>();
    let releases_write_lock = flags & ffi::SQLITE_SHM_UNLOCK != 0
        && offset <= WAL_WRITE_LOCK
        && WAL_WRITE_LOCK < offset + n;
    if releases_write_lock && !db.wal.is_null() {
        (*db.wal).gather.end_transaction();
    }
    let real = db.real;
    match methods(real).xShmLock {
        Some(lock) => lock(real, offset, n, flags),
        None => ffi::SQLITE_IOERR_SHMLOCK,
    }
}

unsafe extern "C" fn db_close(file: *mut ffi::sqlite3_file) -> c_int {
    let db = &mut *file.cast::<DbFile>();
    if !db.wal.is_null() {
        (*db.wal).db = ptr::null_mut();
    }
    let real = db.real;
    let closed = match methods(real).xClose {
        Some(close) => close(real),
        None => ffi::SQLITE_OK,
    };
    (*file).pMethods = ptr::null();
    closed
}

/// VFS methods that do not involve a file: the default VFS's, called with
/// the default VFS; `$missing` answers one it lacks.
macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            let real = real_vfs(vfs);
            match (*real).$method {
                Some(method) => method(real $(, $arg)*),
                None => $missing,
            }
        }
    };
}

/// What `xDlSym` returns, as the bindings spell it.
type Symbol = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

forward!(x_delete, xDelete, (name: *const c_char, sync_dir: c_int) -> c_int, ffi::SQLITE_IOERR_DELETE);
forward!(x_access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_ACCESS);
forward!(x_full_pathname, xFullPathname, (name: *const c_char, size: c_int, out: *mut c_char) -> c_int, ffi::SQLITE_CANTOPEN);
forward!(x_dl_open, xDlOpen, (name: *const c_char) -> *mut c_void, ptr::null_mut());
forward!(x_dl_error, xDlError, (size: c_int, out: *mut c_char) -> (), ());
forward!(x_dl_sym, xDlSym, (handle: *mut c_void, symbol: *const c_char) -> Symbol, None);
forward!(x_dl_close, xDlClose, (handle: *mut c_void) -> (), ());
forward!(x_randomness, xRandomness, (size: c_int, out: *mut c_char) -> c_int, 0);
forward!(x_sleep, xSleep, (micros: c_int) -> c_int, 0);
forward!(x_current_time, xCurrentTime, (out: *mut f64) -> c_int, ffi::SQLITE_ERROR);
forward!(x_get_last_error, xGetLastError, (size: c_int, out: *mut c_char) -> c_int, 0);
forward!(x_current_time_int64, xCurrentTimeInt64, (out: *mut ffi::sqlite3_int64) -> c_int, ffi::SQLITE_ERROR);

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header as SQLite writes it: page number, then the database
    /// size in pages for a commit frame (0 otherwise), then salts and
    /// checksums (left zero here).
    fn header(page: u32, commit_size: u32) -> Vec<u8> {
        let mut h = vec![0u8; FRAME_HEADER];
        h[0..4].copy_from_slice(&page.to_be_bytes());
        h[4..8].copy_from_slice(&commit_size.to_be_bytes());
        h
    }

    /// Runs `writes` through a gatherer and returns the writes that reached
    /// the sink, as (offset, length).
    fn sunk(gather: &mut Gather, writes: &[(Vec<u8>, i64)]) -> Vec<(i64, usize)> {
        let mut seen = Vec::new();
        for (data, offset) in writes {
            let rc = gather.write(data, *offset, &mut |bytes, at| {
                seen.push((at, bytes.len()));
                ffi::SQLITE_OK
            });
            assert_eq!(rc, ffi::SQLITE_OK);
        }
        seen
    }

    #[test]
    fn a_commit_reaches_the_file_in_one_write_when_its_commit_frame_is_complete() {
        let page = vec![7u8; 4096];
        let mut gather = Gather::default();
        let frame = (FRAME_HEADER + 4096) as i64;
        let writes = vec![
            (vec![1u8; 32], 0), // the WAL header
            (header(2, 0), 32),
            (page.clone(), 32 + 24),
            (header(5, 0), 32 + frame),
            (page.clone(), 32 + frame + 24),
            (header(9, 12), 32 + 2 * frame),
        ];
        assert_eq!(sunk(&mut gather, &writes), vec![]);
        let mut seen = Vec::new();
        let rc = gather.write(&page, 32 + 2 * frame + 24, &mut |bytes, at| {
            seen.push((at, bytes.to_vec()));
            ffi::SQLITE_OK
        });
        assert_eq!(rc, ffi::SQLITE_OK);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, 0);
        assert_eq!(seen[0].1.len(), 32 + 3 * 4120);
        // Byte for byte what the six writes would have left in the file.
        let mut expected = vec![1u8; 32];
        for (h, _) in writes.iter().skip(1).step_by(2) {
            expected.extend_from_slice(h);
            expected.extend_from_slice(&page);
        }
        assert_eq!(seen[0].1, expected);
        assert!(gather.bytes.is_empty());
        assert_eq!(gather.commit_page_at, None);
    }

    #[test]
    fn a_gap_writes_what_came_before_it_and_a_flush_the_rest() {
        let mut gather = Gather::default();
        let writes = vec![
            (header(3, 0), 32),
            (vec![0u8; 4096], 56),
            // An earlier frame's page rewritten in place (a page changed
            // again after the cache spilled it).
            (vec![0u8; 4096], 32 + 4120 + 24),
        ];
        assert_eq!(sunk(&mut gather, &writes), vec![(32, 24 + 4096)]);
        let mut seen = Vec::new();
        let rc = gather.flush(&mut |bytes, at| {
            seen.push((at, bytes.len()));
            ffi::SQLITE_OK
        });
        assert_eq!(rc, ffi::SQLITE_OK);
        assert_eq!(seen, vec![(32 + 4120 + 24, 4096)]);
        // Nothing left: a second flush writes nothing.
        let rc = gather.flush(&mut |_, _| panic!("nothing is gathered"));
        assert_eq!(rc, ffi::SQLITE_OK);
    }

    #[test]
    fn a_long_flush_is_cut_into_writes_the_default_vfs_takes_whole() {
        let mut gather = Gather::default();
        let page = vec![0u8; 4096];
        let mut writes = Vec::new();
        for k in 0..53i64 {
            writes.push((header(1, 0), 32 + k * 4120));
            writes.push((page.clone(), 32 + k * 4120 + 24));
        }
        assert_eq!(sunk(&mut gather, &writes), vec![]);
        let mut seen = Vec::new();
        let rc = gather.flush(&mut |bytes, at| {
            seen.push((at, bytes.len()));
            ffi::SQLITE_OK
        });
        assert_eq!(rc, ffi::SQLITE_OK);
        // 53 frames are 218,360 bytes, which unixWrite fails in one write
        // (its 17-bit mask leaves 131,072 bytes it asks for as 0).
        assert_eq!(seen, vec![(32, 126_976), (32 + 126_976, 91_384)]);
    }

    #[test]
    fn a_failed_write_is_returned_then_and_at_every_later_call_of_its_transaction() {
        let mut gather = Gather::default();
        assert_eq!(sunk(&mut gather, &[(header(1, 4), 32)]), vec![]);
        let rc = gather.write(&[0u8; 4096], 56, &mut |_, _| ffi::SQLITE_IOERR_WRITE);
        assert_eq!(rc, ffi::SQLITE_IOERR_WRITE);
        assert!(gather.bytes.is_empty());
        // SQLite believes those bytes written: nothing goes on after them
        // in this transaction, which cannot commit.
        let never =
            &mut |_: &[u8], _: i64| -> c_int { panic!("nothing is written after a failure") };
        assert_eq!(
            gather.write(&header(2, 0), 4152, never),
            ffi::SQLITE_IOERR_WRITE
        );
        assert_eq!(gather.flush(never), ffi::SQLITE_IOERR_WRITE);
        // It rolled back: the next transaction writes over its frames.
        gather.end_transaction();
        assert_eq!(
            sunk(&mut gather, &[(header(1, 4), 32), (vec![0u8; 4096], 56)]),
            vec![(32, 4120)]
        );
    }

    #[test]
    fn after_the_commit_frame_writes_go_straight_through_until_the_transaction_ends() {
        let mut gather = Gather::default();
        let page = vec![0u8; 4096];
        let writes = vec![
            (header(2, 0), 32),
            (page.clone(), 56),
            (header(3, 5), 4152),
            (page.clone(), 4176),
            // Checksums rewritten after the commit frame (a spilled page
            // changed again): the last header rewritten is the commit's.
            (header(3, 5), 4152),
            // Padding to a sector: copies of the last frame, the last one
            // cut at the sync point.
            (header(3, 5), 8272),
            (page[..1000].to_vec(), 8296),
        ];
        assert_eq!(
            sunk(&mut gather, &writes),
            vec![(32, 2 * 4120), (4152, 24), (8272, 24), (8296, 1000)]
        );
        assert!(gather.bytes.is_empty());
        // The next transaction gathers again.
        gather.end_transaction();
        assert_eq!(sunk(&mut gather, &[(header(4, 0), 9296)]), vec![]);
        assert_eq!(gather.bytes.len(), 24);
    }

    #[test]
    fn the_end_of_a_transaction_drops_what_a_rollback_left() {
        let mut gather = Gather::default();
        let writes = vec![(header(2, 0), 32), (vec![0u8; 4096], 56)];
        assert_eq!(sunk(&mut gather, &writes), vec![]);
        gather.end_transaction();
        let rc = gather.flush(&mut |_, _| panic!("a rolled-back frame is never written"));
        assert_eq!(rc, ffi::SQLITE_OK);
    }

    #[test]
    fn gathered_bytes_are_written_at_the_cap() {
        let mut gather = Gather::default();
        let page = vec![0u8; 4096];
        let mut writes = Vec::new();
        let mut offset = 32i64;
        while (offset as usize) < MAX_GATHERED + 32 {
            writes.push((header(1, 0), offset));
            writes.push((page.clone(), offset + 24));
            offset += 4120;
        }
        let seen = sunk(&mut gather, &writes);
        // The first write at or past the cap sends everything before it,
        // in writes of MAX_WRITE bytes that follow one another.
        let gathered = MAX_GATHERED.div_ceil(4120) * 4120;
        let expected: Vec<(i64, usize)> = (0..gathered.div_ceil(MAX_WRITE))
            .map(|i| {
                let at = i * MAX_WRITE;
                (32 + at as i64, MAX_WRITE.min(gathered - at))
            })
            .collect();
        assert_eq!(expected.len(), 17);
        assert_eq!(seen, expected);
        assert!(gather.bytes.is_empty());
    }
}

/// The gatherer under SQLite itself, with a second connection through the
/// default VFS reading what it publishes.
#[cfg(test)]
mod sqlite {
    use std::path::{Path, PathBuf};

    use rusqlite::{Connection, OpenFlags};

    fn writer(path: &Path) -> Connection {
        let vfs = super::register().unwrap();
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // As the server's writer: no automatic checkpoint, so every commit
        // stays in the WAL for the checks below.
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; \
             CREATE TABLE t(x INTEGER, y BLOB);",
        )
        .unwrap();
        conn
    }

    fn count_and_sum(conn: &Connection) -> (i64, i64) {
        conn.query_row("SELECT count(*), coalesce(sum(x), 0) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    }

    #[test]
    fn every_commit_is_in_the_file_when_the_commit_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let writer = writer(&path);
        let reader = Connection::open(&path).unwrap();
        let copy = dir.path().join("copy.db");
        for i in 0..12i64 {
            // Three rows of 3,000 bytes: a few frames per commit.
            writer
                .execute_batch(&format!(
                    "BEGIN; INSERT INTO t VALUES ({a}, zeroblob(3000)), ({b}, zeroblob(3000)), \
                     ({c}, zeroblob(3000)); COMMIT;",
                    a = 3 * i,
                    b = 3 * i + 1,
                    c = 3 * i + 2
                ))
                .unwrap();
            let n = 3 * (i + 1);
            let expected = (n, n * (n - 1) / 2);
            // Another connection sees the commit at once...
            assert_eq!(count_and_sum(&reader), expected);
            // ...and the files hold it: a copy of the database and its WAL
            // taken now (what a kill -9 here would leave) recovers it all.
            std::fs::copy(&path, &copy).unwrap();
            let mut wal = copy.as_os_str().to_owned();
            wal.push("-wal");
            std::fs::copy(dir.path().join("g.db-wal"), &wal).unwrap();
            let recovered = Connection::open(&copy).unwrap();
            assert_eq!(count_and_sum(&recovered), expected);
            let check: String = recovered
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(check, "ok");
            // Closing it checkpoints the copy and removes its WAL and index.
            drop(recovered);
        }
    }

    /// The database and its WAL copied now, as a kill -9 here would leave
    /// them, opened as SQLite would open them at the next start.
    fn crash_copy(dir: &Path, path: &Path) -> Connection {
        let copy = dir.join("copy.db");
        for stale in ["copy.db", "copy.db-wal", "copy.db-shm"] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        std::fs::copy(path, &copy).unwrap();
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::copy(&wal, dir.join("copy.db-wal")).unwrap();
        Connection::open(&copy).unwrap()
    }

    fn integrity(conn: &Connection) -> String {
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    /// A writer with ten pages of cache: a transaction of more spills
    /// pages into the WAL before it commits, and reads them back from it.
    fn spilling_writer(dir: &Path) -> (PathBuf, Connection) {
        let path = dir.join("g.db");
        let writer = writer(&path);
        writer.execute_batch("PRAGMA cache_size = 10").unwrap();
        (path, writer)
    }

    /// Inserts rows 1 to `n`, each with `blob` (an SQL expression).
    fn insert_rows(n: u32, blob: &str) -> String {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO t SELECT i, {blob} FROM n;"
        )
    }

    /// A spilled page changed again makes SQLite rewrite the frames'
    /// checksums after the commit frame, the commit frame's header last.
    #[test]
    fn checksums_rewritten_after_the_commit_frame_are_in_the_file_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = spilling_writer(dir.path());
        writer
            .execute_batch("CREATE INDEX t_x ON t(x); INSERT INTO t VALUES (0, zeroblob(10));")
            .unwrap();
        let checkpointer = Connection::open(&path).unwrap();
        writer
            .execute_batch(&format!(
                "BEGIN; {} UPDATE t SET x = x + 1 WHERE x % 7 = 0; COMMIT;",
                insert_rows(300, "zeroblob(1000)")
            ))
            .unwrap();
        // The rows 0 to 300, each multiple of 7 (0 included) plus one.
        let sevens = (0..=300i64).filter(|i| i % 7 == 0).count() as i64;
        let expected = (301, 300 * 301 / 2 + sevens);
        assert_eq!(count_and_sum(&writer), expected);
        let copy = crash_copy(dir.path(), &path);
        assert_eq!(count_and_sum(&copy), expected);
        drop(copy);
        // And once a checkpoint has copied the commit into the database.
        checkpointer
            .execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
            .unwrap();
        let copy = crash_copy(dir.path(), &path);
        assert_eq!(count_and_sum(&copy), expected);
        assert_eq!(integrity(&copy), "ok");
    }

    /// Without powersafe overwrite, synchronous=FULL pads each commit with
    /// copies of its last frame and syncs in the middle of the last one;
    /// the WAL index points at that last copy.
    #[test]
    fn a_commit_padded_to_the_sector_is_whole_for_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let uri = format!("file:{}?psow=0", path.display());
        let vfs = super::register().unwrap();
        let writer = Connection::open_with_flags_and_vfs(&uri, OpenFlags::default(), vfs).unwrap();
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        writer
            .execute_batch(
                "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; \
                 CREATE TABLE t(x INTEGER, y BLOB);",
            )
            .unwrap();
        let reader = Connection::open(&path).unwrap();
        for i in 0..24i64 {
            writer
                .execute("INSERT INTO t VALUES (?1, zeroblob(100))", [i])
                .unwrap();
            assert_eq!(count_and_sum(&reader), (i + 1, i * (i + 1) / 2));
            assert_eq!(integrity(&reader), "ok");
        }
    }

    /// Pages spilled from the cache are read back from the WAL before the
    /// commit.
    #[test]
    fn spilled_frames_are_read_back_before_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (_, writer) = spilling_writer(dir.path());
        writer
            .execute_batch(&format!("BEGIN; {}", insert_rows(1000, "randomblob(1000)")))
            .unwrap();
        assert_eq!(count_and_sum(&writer), (1000, 500_500));
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(integrity(&writer), "ok");
    }

    /// A transaction that spilled and rolled back leaves another
    /// connection's later commit, appended where its frames were, whole.
    /// (SQLite's undo reads the WAL, which writes what was gathered while
    /// the write lock is still held; the rule that drops anything left at
    /// the lock's release is pinned by the unit tests above.)
    #[test]
    fn a_rollback_after_a_spill_leaves_the_next_writers_commit_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = spilling_writer(dir.path());
        writer
            .execute_batch(&format!(
                "BEGIN; {} ROLLBACK;",
                insert_rows(500, "randomblob(1000)")
            ))
            .unwrap();
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(&insert_rows(200, "zeroblob(1000)"))
            .unwrap();
        let expected = (200, 200 * 201 / 2);
        // The writer reads the other's frames through its WAL file, and
        // would write anything still gathered first.
        assert_eq!(count_and_sum(&writer), expected);
        assert_eq!(integrity(&writer), "ok");
        let copy = crash_copy(dir.path(), &path);
        assert_eq!(count_and_sum(&copy), expected);
        assert_eq!(integrity(&copy), "ok");
    }

    #[test]
    fn transactions_past_the_cache_and_the_cap_read_back_what_they_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = spilling_writer(dir.path());
        let fill = &insert_rows(3000, "zeroblob(1000)");
        // Rolled back after spilling: none of it may show.
        writer.execute_batch("BEGIN").unwrap();
        writer.execute_batch(fill).unwrap();
        writer.execute_batch("ROLLBACK").unwrap();
        // About 3.2 MB: past the gatherer's cap, with rows changed again
        // after their pages were spilled (frames rewritten in place).
        writer.execute_batch("BEGIN").unwrap();
        writer.execute_batch(fill).unwrap();
        writer
            .execute_batch("UPDATE t SET x = x + 1 WHERE x % 7 = 0")
            .unwrap();
        writer.execute_batch("COMMIT").unwrap();
        let sevens = (1..=3000i64).filter(|i| i % 7 == 0).count() as i64;
        let expected = (3000, 3000 * 3001 / 2 + sevens);
        assert_eq!(count_and_sum(&writer), expected);
        let reader = Connection::open(&path).unwrap();
        assert_eq!(count_and_sum(&reader), expected);
        let check: String = reader
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        // And after a checkpoint copies it all back into the database file.
        drop(reader);
        writer
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        drop(writer);
        let reopened = Connection::open(&path).unwrap();
        assert_eq!(count_and_sum(&reopened), expected);
    }
}
