//! The C side: the system SQLite's configuration and automatic extensions,
//! `dlopen` of libonboarding.so, and libdqlite's node lifecycle.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::path::Path;

#[repr(C)]
struct DqliteNode {
    _private: [u8; 0],
}

#[link(name = "dqlite")]
extern "C" {
    fn dqlite_node_create(
        id: u64,
        address: *const c_char,
        data_dir: *const c_char,
        node: *mut *mut DqliteNode,
    ) -> c_int;
    fn dqlite_node_destroy(node: *mut DqliteNode);
    fn dqlite_node_set_bind_address(node: *mut DqliteNode, address: *const c_char) -> c_int;
    fn dqlite_node_set_network_latency_ms(node: *mut DqliteNode, ms: c_uint) -> c_int;
    fn dqlite_node_set_snapshot_params(
        node: *mut DqliteNode,
        snapshot_threshold: c_uint,
        snapshot_trailing: c_uint,
    ) -> c_int;
    fn dqlite_node_start(node: *mut DqliteNode) -> c_int;
    fn dqlite_node_stop(node: *mut DqliteNode) -> c_int;
    fn dqlite_node_errmsg(node: *mut DqliteNode) -> *const c_char;
}

// The same SQLite libdqlite links: the system's, never a bundled one.
#[link(name = "sqlite3")]
extern "C" {
    fn sqlite3_config(option: c_int, ...) -> c_int;
    fn sqlite3_auto_extension(init: Option<unsafe extern "C" fn()>) -> c_int;
    fn sqlite3_libversion() -> *const c_char;
}

#[link(name = "dl")]
extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *const c_char;
}

extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
}

const SQLITE_CONFIG_SINGLETHREAD: c_int = 1;
const RTLD_NOW: c_int = 2;
const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

fn c_text(text: &str, what: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| format!("{what} '{text}' has a NUL byte"))
}

/// Single-thread mode, as go-dqlite's hosts use: the node's loop thread is
/// SQLite's only user. Must run before SQLite initialises.
pub fn configure_sqlite() -> Result<(), String> {
    // SAFETY: called first thing, before any other SQLite call in the process.
    let rc = unsafe { sqlite3_config(SQLITE_CONFIG_SINGLETHREAD) };
    if rc != 0 {
        return Err(format!(
            "sqlite3_config(SINGLETHREAD) failed with code {rc}"
        ));
    }
    Ok(())
}

/// Loads `so` and registers its `sqlite3_onboarding_init` for every
/// connection opened from now on (the node's database included).
pub fn register_extension(so: &Path) -> Result<(), String> {
    let shown = so.display();
    let path = c_text(&so.to_string_lossy(), "extension path")?;
    // SAFETY: dlopen/dlsym with valid C strings; the handle is never closed,
    // so the init function stays mapped for the life of the process.
    let init = unsafe {
        let handle = dlopen(path.as_ptr(), RTLD_NOW);
        if handle.is_null() {
            return Err(format!("cannot load {shown}: {}", last_dl_error()));
        }
        let symbol = dlsym(handle, c"sqlite3_onboarding_init".as_ptr());
        if symbol.is_null() {
            return Err(format!("{shown} has no sqlite3_onboarding_init"));
        }
        std::mem::transmute::<*mut c_void, unsafe extern "C" fn()>(symbol)
    };
    // SAFETY: `init` has the signature SQLite calls automatic extensions
    // with (db, error message, api routines), which sqlite3_auto_extension
    // declares as a void function by convention.
    let rc = unsafe { sqlite3_auto_extension(Some(init)) };
    if rc != 0 {
        return Err(format!("sqlite3_auto_extension failed with code {rc}"));
    }
    Ok(())
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string.
    unsafe {
        let e = dlerror();
        if e.is_null() {
            "unknown error".to_string()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

/// SIGTERM and SIGINT call `handler` (which only stores a flag).
pub fn on_termination(handler: extern "C" fn(c_int)) {
    // SAFETY: the handler is async-signal-safe (one atomic store).
    unsafe {
        signal(SIGTERM, handler);
        signal(SIGINT, handler);
    }
}

/// Why `address` cannot be bound, as the system says it (in use, no such
/// host), for a bind dqlite refused without a message.
fn bind_error(address: &str) -> String {
    match std::net::TcpListener::bind(address) {
        Err(e) => e.to_string(),
        Ok(_) => "dqlite refused it".to_string(),
    }
}

/// A running dqlite node.
pub struct Node(*mut DqliteNode);

impl Node {
    /// Creates and starts the node: `address` is what the cluster knows it
    /// by, `bind` where it listens (the same by default); `snapshot`: Raft
    /// log entries between two snapshots, and kept after one.
    pub fn start(
        id: u64,
        address: &str,
        bind: Option<&str>,
        dir: &Path,
        latency_ms: u32,
        snapshot: (u32, u32),
    ) -> Result<Node, String> {
        let c_address = c_text(address, "address")?;
        let c_bind = c_text(bind.unwrap_or(address), "bind address")?;
        let c_dir = c_text(&dir.to_string_lossy(), "data directory")?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid C strings; dqlite copies them.
        let rc = unsafe { dqlite_node_create(id, c_address.as_ptr(), c_dir.as_ptr(), &mut raw) };
        let node = Node(raw);
        if rc != 0 {
            return Err(format!("dqlite_node_create failed: {}", node.errmsg()));
        }
        // SAFETY: `raw` is a created, not yet started node.
        unsafe {
            if dqlite_node_set_bind_address(raw, c_bind.as_ptr()) != 0 {
                return Err(format!(
                    "cannot bind {}: {}",
                    c_bind.to_string_lossy(),
                    node.errmsg_or(|| bind_error(bind.unwrap_or(address)))
                ));
            }
            if dqlite_node_set_network_latency_ms(raw, latency_ms) != 0 {
                return Err(format!(
                    "cannot set the latency to {latency_ms} ms: {}",
                    node.errmsg_or(|| "dqlite refused it".to_string())
                ));
            }
            if dqlite_node_set_snapshot_params(raw, snapshot.0, snapshot.1) != 0 {
                return Err(format!(
                    "cannot set the snapshot parameters: {}",
                    node.errmsg()
                ));
            }
            if dqlite_node_start(raw) != 0 {
                return Err(format!("dqlite_node_start failed: {}", node.errmsg()));
            }
        }
        Ok(node)
    }

    /// dqlite's message, or `why` where it left none (a bind's failure
    /// left it empty).
    fn errmsg_or(&self, why: impl FnOnce() -> String) -> String {
        Some(self.errmsg())
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(why)
    }

    fn errmsg(&self) -> String {
        if self.0.is_null() {
            return "out of memory".to_string();
        }
        // SAFETY: the node is alive; errmsg is NUL-terminated or NULL.
        unsafe {
            let m = dqlite_node_errmsg(self.0);
            if m.is_null() {
                String::new()
            } else {
                CStr::from_ptr(m).to_string_lossy().into_owned()
            }
        }
    }

    /// Stops the node (its loop thread joins) and frees it.
    pub fn stop(self) -> Result<(), String> {
        // SAFETY: a started node, stopped once, destroyed after.
        let rc = unsafe { dqlite_node_stop(self.0) };
        let result = if rc == 0 {
            Ok(())
        } else {
            Err(format!("dqlite_node_stop failed: {}", self.errmsg()))
        };
        unsafe { dqlite_node_destroy(self.0) };
        std::mem::forget(self);
        result
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by dqlite_node_create, not destroyed yet.
            unsafe { dqlite_node_destroy(self.0) };
        }
    }
}

/// The SQLite version linked, for the start line.
pub fn sqlite_version() -> String {
    // SAFETY: a static NUL-terminated string.
    unsafe {
        CStr::from_ptr(sqlite3_libversion())
            .to_string_lossy()
            .into_owned()
    }
}
