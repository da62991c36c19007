//! The whole onboarding from Debian's `/usr/bin/python3` and its `sqlite3`
//! module loading the built extension; the script asserts every table.

use std::path::Path;
use std::process::Command;

#[test]
fn a_whole_onboarding_from_python() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/onboarding_flow.py");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(onboarding_blackbox::extension())
        .arg(dir.path().join("onboarding.db"))
        .output()
        .expect("/usr/bin/python3 is missing (apt-get install python3)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    // unittest reports on stderr; every check of the script ran.
    assert!(stderr.contains("Ran 4 tests"), "{stderr}");
    assert!(stderr.trim_end().ends_with("OK"), "{stderr}");
}
