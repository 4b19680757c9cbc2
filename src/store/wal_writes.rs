//! The WAL file's writes, gathered: a transaction's frames reach the file in a few large
//! writes at its commit instead of two each (a 24-byte frame header, then the page).
//!
//! SQLite writes every frame of a commit to the WAL with two calls, and in `batch`
//! durability nothing syncs them: each is a system call and a pass through the kernel's
//! write path for the one or two pages of the page cache it touches. With about 77 frames
//! per commit under load, the calls and that path, not the copying, were about a fifth of
//! the persister's time (docs/PERFORMANCE.md, "Fifth pass").
//!
//! This is a VFS over the platform's own: every file but a WAL is the platform's, untouched.
//! A WAL file keeps the writes that extend it in a buffer and passes them on together:
//! - when a commit frame is complete. Its header is the only 24-byte write whose second
//!   field (the database size after the commit) is not zero. So every frame of a commit is
//!   in the file before the write that ends the commit returns, and an error there is that
//!   write's error: SQLite publishes the commit to readers after it, and fails it on error;
//! - before anything that reads, sizes, syncs, truncates or closes the file, and before a
//!   write that does not append (SQLite rewriting a frame or its checksums in place, or the
//!   WAL's header when the WAL starts over), which goes to the file as it is;
//! - when the buffer passes `FLUSH_AT` (a large transaction).
//!
//! Readers in other connections read only frames of published commits, which are in the
//! file by then; a process that dies loses only a commit it had not finished, as it would
//! without the buffer.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// Registers the VFS as SQLite's default, over the default it had. Call after
/// `page_cache::install` (this starts SQLite) and before the first connection opens.
/// Returns whether it is in place.
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    // SAFETY: the VFS interface used as SQLite documents it; the struct registered is
    // leaked, so it outlives every connection.
    *INSTALLED.get_or_init(|| unsafe { install_now() })
}

/// Writes SQLite asked of WAL files, and writes passed on to the file for them.
pub fn writes() -> (u64, u64) {
    (WRITES_ASKED.load(Ordering::Relaxed), WRITES_PASSED_ON.load(Ordering::Relaxed))
}

static WRITES_ASKED: AtomicU64 = AtomicU64::new(0);
static WRITES_PASSED_ON: AtomicU64 = AtomicU64::new(0);

/// A transaction larger than this goes to the file in pieces of about this size.
const FLUSH_AT: usize = 4 << 20;

/// The most one write passes on: the Unix VFS writes at most 128 KiB less a byte a call
/// (it masks the length to 17 bits), so pieces stay under that, whole pages of 4 KiB.
const MAX_WRITE: usize = 31 * 4096;

/// The size of a WAL frame's header.
const FRAME_HEADER_BYTES: c_int = 24;

/// The VFS underneath, whose `xOpen` opens every file.
struct Platform(*mut ffi::sqlite3_vfs);

// SAFETY: a registered VFS is immutable and shared by SQLite between threads.
unsafe impl Send for Platform {}
unsafe impl Sync for Platform {}

static PLATFORM: OnceLock<Platform> = OnceLock::new();

unsafe fn install_now() -> bool {
    let platform = ffi::sqlite3_vfs_find(std::ptr::null());
    if platform.is_null() || (*platform).xOpen.is_none() {
        return false;
    }
    if PLATFORM.set(Platform(platform)).is_err() {
        return false;
    }
    // Every method but `xOpen` is the platform's own, with its `pAppData`: those that look at
    // the VFS they are given find what they expect there.
    let mut vfs = *platform;
    vfs.szOsFile = WAL_FILE_BYTES + (*platform).szOsFile;
    vfs.zName = c"mission-control-wal".as_ptr();
    vfs.pNext = std::ptr::null_mut();
    vfs.xOpen = Some(open);
    let vfs = Box::leak(Box::new(vfs));
    ffi::sqlite3_vfs_register(vfs, 1) == ffi::SQLITE_OK
}

/// A WAL file: SQLite sees `base`; the platform's file follows it in the same allocation.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    platform: *mut ffi::sqlite3_file,
    /// The file offset of `pending`'s first byte.
    pending_at: i64,
    /// Where the furthest write so far ended: only a write that starts here, an append, is
    /// buffered.
    end: i64,
    pending: Vec<u8>,
    /// The last write was a commit frame's header: its page ends the commit.
    commit_frame_next: bool,
}

/// `WalFile`'s size rounded up to 16, so that the platform's file after it is aligned.
const WAL_FILE_BYTES: c_int = (size_of::<WalFile>().div_ceil(16) * 16) as c_int;

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let platform = PLATFORM.get().expect("installed before SQLite opens a file").0;
    let platform_open = (*platform).xOpen.expect("checked at install");
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // The platform's file at the start of the allocation: SQLite calls it directly.
        return platform_open(platform, name, file, flags, out_flags);
    }
    let inner = file.cast::<u8>().add(WAL_FILE_BYTES as usize).cast::<ffi::sqlite3_file>();
    let rc = platform_open(platform, name, inner, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        (*file).pMethods = std::ptr::null();
        return rc;
    }
    file.cast::<WalFile>().write(WalFile {
        base: ffi::sqlite3_file { pMethods: &WAL_METHODS },
        platform: inner,
        pending_at: 0,
        end: 0,
        pending: Vec::new(),
        commit_frame_next: false,
    });
    ffi::SQLITE_OK
}

/// The platform's methods for the file underneath.
unsafe fn methods(wal: *mut WalFile) -> &'static ffi::sqlite3_io_methods {
    &*(*(*wal).platform).pMethods
}

/// Passes the buffered bytes on, in as few writes as the platform takes.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    let wal = file.cast::<WalFile>();
    let write = methods(wal).xWrite.expect("a file can be written");
    let mut rc = ffi::SQLITE_OK;
    let mut at = (*wal).pending_at;
    for piece in (*wal).pending.chunks(MAX_WRITE) {
        WRITES_PASSED_ON.fetch_add(1, Ordering::Relaxed);
        rc = write((*wal).platform, piece.as_ptr().cast(), piece.len() as c_int, at);
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += piece.len() as i64;
    }
    let pending = &mut (*wal).pending;
    pending.clear();
    if pending.capacity() > FLUSH_AT * 2 {
        pending.shrink_to(FLUSH_AT);
    }
    (*wal).commit_frame_next = false;
    rc
}

unsafe extern "C" fn wal_write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    WRITES_ASKED.fetch_add(1, Ordering::Relaxed);
    let wal = file.cast::<WalFile>();
    let Ok(len) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
    if offset != (*wal).end {
        // Not an append: a frame rewritten in place, checksums redone after a commit, the
        // WAL's header when it starts over. What is buffered goes first, then this write.
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        // The header at offset 0 starts the WAL over: frames follow it from the start again.
        let written_to = offset + i64::from(amount);
        (*wal).end = if offset == 0 { written_to } else { (*wal).end.max(written_to) };
        WRITES_PASSED_ON.fetch_add(1, Ordering::Relaxed);
        // A commit frame's header written here (a writer's first write into a WAL another
        // connection wrote, say) still has its page follow as an append: that ends the commit.
        (*wal).commit_frame_next = is_commit_frame_header(data, amount);
        return (methods(wal).xWrite.expect("a file can be written"))((*wal).platform, data, amount, offset);
    }
    if (*wal).pending.is_empty() {
        (*wal).pending_at = offset;
    }
    (*wal).pending.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
    (*wal).end = offset + i64::from(amount);
    if is_commit_frame_header(data, amount) {
        (*wal).commit_frame_next = true;
        return ffi::SQLITE_OK;
    }
    if (*wal).commit_frame_next || (*wal).pending.len() >= FLUSH_AT {
        return flush(file);
    }
    ffi::SQLITE_OK
}

/// A frame's header whose second field, the database's size after the commit, is set: the
/// header of the frame that ends a commit.
unsafe fn is_commit_frame_header(data: *const c_void, amount: c_int) -> bool {
    amount == FRAME_HEADER_BYTES && std::slice::from_raw_parts(data.cast::<u8>(), 8)[4..8] != [0; 4]
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    let wal = file.cast::<WalFile>();
    let flushed = flush(file);
    let close = methods(wal).xClose.expect("a file can be closed");
    let closed = close((*wal).platform);
    std::ptr::drop_in_place(wal);
    (*file).pMethods = std::ptr::null();
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// Passes the buffer on, then hands the call to the platform's file; the buffer's error
/// comes first.
unsafe fn after_flush(
    file: *mut ffi::sqlite3_file,
    call: impl FnOnce(&ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) -> c_int,
) -> c_int {
    let rc = flush(file);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let wal = file.cast::<WalFile>();
    call(methods(wal), (*wal).platform)
}

unsafe extern "C" fn wal_read(file: *mut ffi::sqlite3_file, data: *mut c_void, amount: c_int, offset: i64) -> c_int {
    after_flush(file, |m, f| (m.xRead.expect("a file can be read"))(f, data, amount, offset))
}

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    after_flush(file, |m, f| (m.xTruncate.expect("a file can be truncated"))(f, size))
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_flush(file, |m, f| (m.xSync.expect("a file can be synced"))(f, flags))
}

unsafe extern "C" fn wal_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    after_flush(file, |m, f| (m.xFileSize.expect("a file has a size"))(f, size))
}

unsafe extern "C" fn wal_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let wal = file.cast::<WalFile>();
    (methods(wal).xLock.expect("a file can be locked"))((*wal).platform, level)
}

unsafe extern "C" fn wal_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let wal = file.cast::<WalFile>();
    (methods(wal).xUnlock.expect("a file can be unlocked"))((*wal).platform, level)
}

unsafe extern "C" fn wal_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let wal = file.cast::<WalFile>();
    (methods(wal).xCheckReservedLock.expect("a file's locks can be checked"))((*wal).platform, out)
}

unsafe extern "C" fn wal_file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // Some controls look at the file (its size, say): they see every byte written.
    after_flush(file, |m, f| (m.xFileControl.expect("a file takes controls"))(f, op, arg))
}

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let wal = file.cast::<WalFile>();
    (methods(wal).xSectorSize.expect("a file has a sector size"))((*wal).platform)
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let wal = file.cast::<WalFile>();
    (methods(wal).xDeviceCharacteristics.expect("a file has characteristics"))((*wal).platform)
}

/// Version 1: SQLite maps shared memory and reads pages through memory only for database
/// files, never for a WAL.
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
