//! What the black-box tests share: where the built extension is, and how to
//! run the `sqlite3` shell on a database with it loaded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `dist/libonboarding.so`, built by `make loadable`.
pub fn extension() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/libonboarding.so");
    assert!(
        path.exists(),
        "{} is missing: run `make loadable` (or `make test`) first",
        path.display()
    );
    path.canonicalize().unwrap()
}

/// The extension's path without its suffix, as `.load` takes it.
pub fn load_arg() -> String {
    let so = extension();
    so.with_extension("").to_string_lossy().into_owned()
}

/// The `sqlite3` shell on `db`, loading the extension, then running each of
/// `commands` (dot-commands or SQL) in order; stops at the first error.
pub fn sqlite3(db: &Path, commands: &[&str]) -> Output {
    let mut cmd = Command::new("sqlite3");
    cmd.arg("-bail")
        .arg(db)
        .arg(format!(".load {}", load_arg()));
    cmd.args(commands);
    cmd.output()
        .expect("the sqlite3 shell is not installed (apt-get install sqlite3)")
}

/// Runs the shell and returns its standard output, or panics with stderr.
/// Nothing may reach stderr: a connection the shell cannot close (a
/// statement left unfinalized) is reported there as it exits.
pub fn sqlite3_ok(db: &Path, commands: &[&str]) -> String {
    let out = sqlite3(db, commands);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One JSON value printed by the shell.
pub fn sqlite3_json(db: &Path, sql: &str) -> serde_json::Value {
    let text = sqlite3_ok(db, &[sql]);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
