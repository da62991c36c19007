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
//! - The writer's own reads of the WAL (pages of its open transaction
//!   spilled from the cache) and every other call on the file (size,
//!   truncate, sync, lock, file control, close) write what is gathered
//!   first: the file is always what SQLite believes it wrote.
//! - Crash safety is the WAL's own: a commit frame is recognised by its
//!   header (bytes 4..8, the database size after the commit, are nonzero
//!   only there: sqlite.org/fileformat2.html#walformat), and after a crash
//!   SQLite recovers the prefix of frames whose checksums chain, whatever
//!   part of a write reached the disk.
//!
//! Only the WAL is wrapped: the database file, the shared-memory index and
//! the journals are the default VFS's own objects, opened in place.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the writer's connection opens its database with.
pub(super) const VFS_NAME: &CStr = c"onboarding-gather";

/// Past this many gathered bytes they are written at once: a commit of a
/// full batch is far below it (256 calls write about 300 frames, 1.2 MiB,
/// at worst), and memory stays bounded whatever one transaction writes.
const MAX_GATHERED: usize = 1 << 21;

/// The most one write to the default VFS may carry: its `unixWrite` masks
/// each `pwrite`'s length to 17 bits (SQLite itself never writes more than
/// a page at once), so a longer write loses its tail, and one whose rest is
/// a multiple of 128 KiB fails as "disk full". 31 pages keeps well below.
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
/// `start`, and where the commit frame's page will be written, once its
/// header has been.
#[derive(Debug, Default)]
pub(super) struct Gather {
    bytes: Vec<u8>,
    start: i64,
    commit_page_at: Option<i64>,
}

impl Gather {
    /// Takes one `xWrite`; writes through `sink` what must reach the file
    /// now (a gap in the offsets, the cap, a complete commit frame).
    /// Returns SQLite's result code.
    pub(super) fn write(
        &mut self,
        data: &[u8],
        offset: i64,
        sink: &mut impl FnMut(&[u8], i64) -> c_int,
    ) -> c_int {
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
        if self.commit_page_at == Some(offset) || self.bytes.len() >= MAX_GATHERED {
            return self.flush(sink);
        }
        ffi::SQLITE_OK
    }

    /// Writes everything gathered, in writes of at most [`MAX_WRITE`]
    /// bytes; on failure the rest is dropped, and the file holds whatever
    /// the failed write left (as without gathering).
    pub(super) fn flush(&mut self, sink: &mut impl FnMut(&[u8], i64) -> c_int) -> c_int {
        self.commit_page_at = None;
        let mut rc = ffi::SQLITE_OK;
        let mut offset = self.start;
        for chunk in self.bytes.chunks(MAX_WRITE) {
            rc = sink(chunk, offset);
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        self.bytes.clear();
        rc
    }

    fn end(&self) -> i64 {
        self.start + self.bytes.len() as i64
    }
}

/// A WAL file as SQLite sees it: the methods below, then the default VFS's
/// own file object, opened in place right after this header.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    gather: Gather,
}

/// Where the default VFS's file object starts inside ours.
const REAL_OFFSET: usize = size_of::<WalFile>().next_multiple_of(16);

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
    let open = (*real).xOpen.expect("every VFS has xOpen");
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Not a WAL: the default VFS's object, in place (ours is larger).
        return open(real, name, file, flags, out_flags);
    }
    debug_assert_eq!(file as usize % align_of::<WalFile>(), 0);
    let wal = file.cast::<WalFile>();
    let inner = file
        .cast::<u8>()
        .add(REAL_OFFSET)
        .cast::<ffi::sqlite3_file>();
    let rc = open(real, name, inner, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        // SQLite calls xClose only on a file whose pMethods is set.
        (*file).pMethods = ptr::null();
        if !(*inner).pMethods.is_null() {
            let close = (*(*inner).pMethods).xClose.expect("every file has xClose");
            close(inner);
        }
        return rc;
    }
    ptr::write(
        wal,
        WalFile {
            base: ffi::sqlite3_file {
                pMethods: &WAL_METHODS,
            },
            real: inner,
            gather: Gather::default(),
        },
    );
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

/// Our WAL file and the default VFS's object inside it.
///
/// # Safety
/// `file` must have been opened by [`x_open`] as a WAL, and not closed.
unsafe fn parts<'a>(
    file: *mut ffi::sqlite3_file,
) -> (
    &'a mut WalFile,
    *mut ffi::sqlite3_file,
    &'a ffi::sqlite3_io_methods,
) {
    let wal = &mut *file.cast::<WalFile>();
    let real = wal.real;
    (wal, real, &*(*real).pMethods)
}

/// Writes the gathered bytes through the default VFS's file.
///
/// # Safety
/// As [`parts`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    let (wal, real, methods) = parts(file);
    let write = methods.xWrite.expect("every file has xWrite");
    wal.gather.flush(&mut |bytes, offset| {
        // The gathered bytes are capped far below c_int::MAX.
        write(real, bytes.as_ptr().cast(), bytes.len() as c_int, offset)
    })
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let (wal, real, methods) = parts(file);
    let write = methods.xWrite.expect("every file has xWrite");
    let data = std::slice::from_raw_parts(data.cast::<u8>(), amount as usize);
    wal.gather.write(data, offset, &mut |bytes, at| {
        write(real, bytes.as_ptr().cast(), bytes.len() as c_int, at)
    })
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    let flushed = flush(file);
    let (wal, real, methods) = parts(file);
    let closed = methods.xClose.expect("every file has xClose")(real);
    ptr::drop_in_place(&mut wal.gather);
    (*file).pMethods = ptr::null();
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// The methods that reach the file: what is gathered is written first, so
/// each sees the file SQLite believes it wrote.
macro_rules! after_flush {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let (_, real, methods) = parts(file);
            methods.$method.expect(concat!("every file has ", stringify!($method)))(real $(, $arg)*)
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
    let (_, real, methods) = parts(file);
    methods.xSectorSize.map_or(4096, |f| f(real))
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (_, real, methods) = parts(file);
    methods.xDeviceCharacteristics.map_or(0, |f| f(real))
}

/// VFS methods that do not involve a file: the default VFS's, called with
/// the default VFS.
macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            let real = real_vfs(vfs);
            (*real).$method.expect(concat!("the default VFS has ", stringify!($method)))(real $(, $arg)*)
        }
    };
}

forward!(x_delete, xDelete, (name: *const c_char, sync_dir: c_int) -> c_int);
forward!(x_access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int);
forward!(x_full_pathname, xFullPathname, (name: *const c_char, size: c_int, out: *mut c_char) -> c_int);
forward!(x_dl_open, xDlOpen, (name: *const c_char) -> *mut c_void);
forward!(x_dl_error, xDlError, (size: c_int, out: *mut c_char) -> ());
forward!(x_dl_close, xDlClose, (handle: *mut c_void) -> ());
forward!(x_randomness, xRandomness, (size: c_int, out: *mut c_char) -> c_int);
forward!(x_sleep, xSleep, (micros: c_int) -> c_int);
forward!(x_current_time, xCurrentTime, (out: *mut f64) -> c_int);
forward!(x_get_last_error, xGetLastError, (size: c_int, out: *mut c_char) -> c_int);
forward!(x_current_time_int64, xCurrentTimeInt64, (out: *mut ffi::sqlite3_int64) -> c_int);

/// What `xDlSym` returns, as the bindings spell it.
type Symbol = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

forward!(x_dl_sym, xDlSym, (handle: *mut c_void, symbol: *const c_char) -> Symbol);

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
        // 53 frames are 218,360 bytes: one write of 87,288 and one of
        // 131,072 would lose the second to unixWrite's 17-bit mask.
        assert_eq!(seen, vec![(32, 126_976), (32 + 126_976, 91_384)],);
    }

    #[test]
    fn a_failed_write_is_returned_and_drops_what_was_gathered() {
        let mut gather = Gather::default();
        assert_eq!(sunk(&mut gather, &[(header(1, 4), 32)]), vec![]);
        let rc = gather.write(&[0u8; 4096], 56, &mut |_, _| ffi::SQLITE_IOERR_WRITE);
        assert_eq!(rc, ffi::SQLITE_IOERR_WRITE);
        assert!(gather.bytes.is_empty());
        assert_eq!(gather.commit_page_at, None);
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
    use std::path::Path;

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

    #[test]
    fn transactions_past_the_cache_and_the_cap_read_back_what_they_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let writer = writer(&path);
        // Ten pages of cache: the transactions below spill pages into the
        // WAL before they commit and read them back from it.
        writer.execute_batch("PRAGMA cache_size = 10").unwrap();
        let fill =
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
                    INSERT INTO t SELECT i, zeroblob(1000) FROM n;";
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
