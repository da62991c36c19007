//! The library's version and the oldest host SQLite it runs on.

/// `onboarding_version()`: the library's version, e.g. `v0.1.0`.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// The oldest host SQLite the functions work with: 3.35.0 for `RETURNING`
/// (rusqlite 0.40's loadable flavour itself needs 3.34.1).
pub const MIN_SQLITE_VERSION: i32 = 3_035_000;

/// `Ok` when a host SQLite (as `sqlite3_libversion_number()`) is recent
/// enough, else the error text the extension's loader reports.
pub fn check_host_version(host: i32) -> std::result::Result<(), String> {
    if host >= MIN_SQLITE_VERSION {
        return Ok(());
    }
    let dotted = |v: i32| format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000);
    Err(format!(
        "onboarding needs SQLite >= {}, host is {}",
        dotted(MIN_SQLITE_VERSION),
        dotted(host)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_version_check_names_both_versions() {
        assert_eq!(check_host_version(3_040_001), Ok(()));
        assert_eq!(check_host_version(3_035_000), Ok(()));
        assert_eq!(
            check_host_version(3_034_001),
            Err("onboarding needs SQLite >= 3.35.0, host is 3.34.1".to_string())
        );
    }
}
