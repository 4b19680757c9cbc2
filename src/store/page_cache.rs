//! SQLite's own page cache (pcache1), wrapped to skip a scan it makes at the end of most of
//! the persister's transactions for nothing.
//!
//! When a b-tree insert splits or merges pages, `balance_nonroot` sorts the new sibling
//! pages by page number, and to swap two of them it parks one for a moment at the number of
//! the lock-byte page (1 GiB / page size + 1). pcache1 remembers that number as the largest
//! it has held, so when the transaction ends `sqlite3PcacheTruncate(dbSize)` believes pages
//! past the end of the file may be cached and walks its whole hash table, every cached
//! page, to drop them: there are none. At 64 agents that walk took up to a quarter of the
//! persister's time (docs/PERFORMANCE.md, "Fourth pass").
//!
//! The wrapper keeps, for each cache, an upper bound of the page numbers it holds that the
//! parking spot does not raise, and passes a truncation on only when a page can lie at or
//! past its limit. Everything else is pcache1's, called through the methods SQLite hands
//! out (`SQLITE_CONFIG_GETPCACHE2`).

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// Installs the wrapper. SQLite takes a page cache only before it initialises, that is
/// before the process opens its first connection, and the setting is not thread-safe: call
/// this first thing in `main`. Returns whether the wrapper is in place; when SQLite is
/// already initialised it is not, and SQLite runs with pcache1 as it is.
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    // SAFETY: SQLite's configuration interface, used as its documentation says: a methods
    // struct read back, and one handed in, each before initialisation (or refused after).
    *INSTALLED.get_or_init(|| unsafe { install_now() })
}

/// How many truncations the wrapper has answered without walking a cache.
pub fn truncations_skipped() -> u64 {
    TRUNCATIONS_SKIPPED.load(Ordering::Relaxed)
}

static TRUNCATIONS_SKIPPED: AtomicU64 = AtomicU64::new(0);

/// pcache1's methods, each known to be present.
struct Inner {
    init: unsafe extern "C" fn(*mut c_void) -> c_int,
    shutdown: unsafe extern "C" fn(*mut c_void),
    create: unsafe extern "C" fn(c_int, c_int, c_int) -> *mut ffi::sqlite3_pcache,
    cachesize: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_int),
    pagecount: unsafe extern "C" fn(*mut ffi::sqlite3_pcache) -> c_int,
    fetch: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_uint, c_int) -> *mut ffi::sqlite3_pcache_page,
    unpin: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, *mut ffi::sqlite3_pcache_page, c_int),
    rekey: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, *mut ffi::sqlite3_pcache_page, c_uint, c_uint),
    truncate: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_uint),
    destroy: unsafe extern "C" fn(*mut ffi::sqlite3_pcache),
    shrink: unsafe extern "C" fn(*mut ffi::sqlite3_pcache),
}

// SAFETY: plain function pointers; pcache1 guards what its caches share itself.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

static INNER: OnceLock<Inner> = OnceLock::new();

fn inner() -> &'static Inner {
    INNER.get().expect("the page cache methods are set before SQLite can call them")
}

/// One connection's cache. SQLite calls a cache's methods from one thread at a time (the
/// connection's), so its fields need no lock.
struct Cache {
    pcache1: *mut ffi::sqlite3_pcache,
    /// Every page held has a number at most this, but the one at `parking`.
    max_key: c_uint,
    /// The lock-byte page's number, where `balance_nonroot` parks a page while it swaps.
    parking: c_uint,
    parked: bool,
}

/// The lock-byte page of a database with this page size: SQLite's `PENDING_BYTE` (1 GiB)
/// over the page size, plus one. It holds no data, so only the parked page ever has it.
fn lock_byte_page(page_size: c_int) -> c_uint {
    const PENDING_BYTE: c_uint = 0x4000_0000;
    PENDING_BYTE / c_uint::try_from(page_size.max(1)).unwrap_or(1) + 1
}

unsafe fn install_now() -> bool {
    let mut methods: ffi::sqlite3_pcache_methods2 = std::mem::zeroed();
    if ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, &mut methods as *mut ffi::sqlite3_pcache_methods2)
        != ffi::SQLITE_OK
    {
        return false;
    }
    let (
        Some(init),
        Some(shutdown),
        Some(create),
        Some(cachesize),
        Some(pagecount),
        Some(fetch),
        Some(unpin),
        Some(rekey),
        Some(truncate),
        Some(destroy),
        Some(shrink),
    ) = (
        methods.xInit,
        methods.xShutdown,
        methods.xCreate,
        methods.xCachesize,
        methods.xPagecount,
        methods.xFetch,
        methods.xUnpin,
        methods.xRekey,
        methods.xTruncate,
        methods.xDestroy,
        methods.xShrink,
    )
    else {
        return false;
    };
    let arg = methods.pArg;
    let iversion = methods.iVersion;
    let inner = Inner { init, shutdown, create, cachesize, pagecount, fetch, unpin, rekey, truncate, destroy, shrink };
    if INNER.set(inner).is_err() {
        return false;
    }
    let wrapper = ffi::sqlite3_pcache_methods2 {
        iVersion: iversion,
        pArg: arg,
        xInit: Some(wrapped_init),
        xShutdown: Some(wrapped_shutdown),
        xCreate: Some(wrapped_create),
        xCachesize: Some(wrapped_cachesize),
        xPagecount: Some(wrapped_pagecount),
        xFetch: Some(wrapped_fetch),
        xUnpin: Some(wrapped_unpin),
        xRekey: Some(wrapped_rekey),
        xTruncate: Some(wrapped_truncate),
        xDestroy: Some(wrapped_destroy),
        xShrink: Some(wrapped_shrink),
    };
    // SQLite copies the struct.
    ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &wrapper as *const ffi::sqlite3_pcache_methods2) == ffi::SQLITE_OK
}

unsafe fn cache<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    &mut *cache.cast::<Cache>()
}

unsafe extern "C" fn wrapped_init(arg: *mut c_void) -> c_int {
    (inner().init)(arg)
}

unsafe extern "C" fn wrapped_shutdown(arg: *mut c_void) {
    (inner().shutdown)(arg)
}

unsafe extern "C" fn wrapped_create(page_size: c_int, extra: c_int, purgeable: c_int) -> *mut ffi::sqlite3_pcache {
    let pcache1 = (inner().create)(page_size, extra, purgeable);
    if pcache1.is_null() {
        return pcache1;
    }
    let parking = lock_byte_page(page_size);
    Box::into_raw(Box::new(Cache { pcache1, max_key: 0, parking, parked: false })).cast()
}

unsafe extern "C" fn wrapped_cachesize(p: *mut ffi::sqlite3_pcache, pages: c_int) {
    (inner().cachesize)(cache(p).pcache1, pages)
}

unsafe extern "C" fn wrapped_pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    (inner().pagecount)(cache(p).pcache1)
}

unsafe extern "C" fn wrapped_fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let cache = cache(p);
    let page = (inner().fetch)(cache.pcache1, key, create);
    // Only a fetch that may create can add a page; a plain lookup finds one already counted.
    if !page.is_null() && create != 0 {
        cache.max_key = cache.max_key.max(key);
    }
    page
}

unsafe extern "C" fn wrapped_unpin(p: *mut ffi::sqlite3_pcache, page: *mut ffi::sqlite3_pcache_page, discard: c_int) {
    (inner().unpin)(cache(p).pcache1, page, discard)
}

unsafe extern "C" fn wrapped_rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old_key: c_uint,
    new_key: c_uint,
) {
    let cache = cache(p);
    (inner().rekey)(cache.pcache1, page, old_key, new_key);
    if old_key == cache.parking {
        cache.parked = false;
    }
    if new_key == cache.parking {
        cache.parked = true;
    } else {
        cache.max_key = cache.max_key.max(new_key);
    }
}

unsafe extern "C" fn wrapped_truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let cache = cache(p);
    let parked_beyond = cache.parked && cache.parking >= limit;
    if cache.max_key < limit && !parked_beyond {
        // No page at or past `limit`: nothing to drop.
        TRUNCATIONS_SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    (inner().truncate)(cache.pcache1, limit);
    cache.max_key = cache.max_key.min(limit.saturating_sub(1));
    if parked_beyond {
        cache.parked = false;
    }
}

unsafe extern "C" fn wrapped_destroy(p: *mut ffi::sqlite3_pcache) {
    let cache = Box::from_raw(p.cast::<Cache>());
    (inner().destroy)(cache.pcache1)
}

unsafe extern "C" fn wrapped_shrink(p: *mut ffi::sqlite3_pcache) {
    (inner().shrink)(cache(p).pcache1)
}

#[cfg(test)]
mod tests {
    use super::lock_byte_page;

    #[test]
    fn the_parking_spot_is_the_lock_byte_page() {
        assert_eq!(lock_byte_page(4096), 262_145);
        assert_eq!(lock_byte_page(65_536), 16_385);
        assert_eq!(lock_byte_page(512), 2_097_153);
    }
}
