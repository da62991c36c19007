//! Debian's `/usr/bin/python3` and its `sqlite3` module loading the built
//! extension: the whole onboarding (the script asserts every table), and
//! the OpenAPI document's patterns against what the extension takes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `python/{script}` with the built extension, `args` and a fresh
/// database path, and checks that unittest ran all `tests` and passed.
fn unittest(script: &str, args: &[PathBuf], tests: usize) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg(here.join("python").join(script))
        .arg(onboarding_blackbox::extension())
        .args(args)
        .arg(dir.path().join("onboarding.db"))
        .output()
        .expect("/usr/bin/python3 is missing (apt-get install python3)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    // unittest reports on stderr; every check of the script ran.
    assert!(stderr.contains(&format!("Ran {tests} tests")), "{stderr}");
    assert!(stderr.trim_end().ends_with("OK"), "{stderr}");
}

#[test]
fn a_whole_onboarding_from_python() {
    unittest("onboarding_flow.py", &[], 8);
}

/// The OpenAPI document's phone and crawl_url patterns against the built
/// extension: every number the phone pattern matches (the 191 French mobile
/// prefixes in six forms) is taken by the business step and gets a code by
/// SMS and by call, so a tool drawing bodies from the document never sends
/// a valid one that comes back 422.
#[test]
fn the_documents_patterns_match_only_what_the_extension_takes() {
    let openapi = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/openapi.json");
    unittest("openapi_phone.py", &[openapi], 5);
}
