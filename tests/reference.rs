//! docs/reference.md is the output of docs/reference.py run against the
//! built extension: regenerate it and compare, so the page never drifts.

use std::path::Path;
use std::process::Command;

#[test]
fn reference_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("/usr/bin/python3")
        .arg(root.join("docs/reference.py"))
        .arg(onboarding_blackbox::extension())
        .output()
        .expect("/usr/bin/python3 is missing (apt-get install python3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(root.join("docs/reference.md")).unwrap();
    assert!(
        fresh == committed,
        "docs/reference.md is stale: run `make reference` and commit it"
    );
}
