//! Links the extension so that it is never unloaded (`-z nodelete`).
//!
//! SQLite unloads an extension when the last connection that loaded it
//! closes. Rust's standard library, linked into it, registers per-thread
//! destructors (`pthread_key_create`) the first time a thread parks or asks
//! for its handle here: two connections loading the extension at once on
//! two threads do, waiting on the phone metadata's one-time initialisation.
//! Unloaded, the library leaves those destructors pointing at unmapped
//! code, and the threads' exit crashed the host (Node's worker_threads, a
//! Go pool, any C client with threads). Kept loaded, it costs the process
//! nothing more than the first load did.

fn main() {
    // ELF linkers (Linux, Android, the BSDs) take the flag; Apple's and
    // Windows' have no such one.
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let unix =
        std::env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|f| f.split(',').any(|f| f == "unix"));
    if unix
        && !matches!(
            os.as_str(),
            "macos" | "ios" | "tvos" | "watchos" | "visionos"
        )
    {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
}
