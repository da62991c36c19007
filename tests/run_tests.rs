//! `scripts/run-tests`, the runner `make test` uses, on a workspace of its
//! own: a copy of the script in a temporary project whose test binaries
//! pass, fail, hang past `--timeout` and leave a process running, built
//! with the same cargo. What it prints and its exit status are what CI
//! reads; a process left behind would outlive CI's run.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

/// The project: a library with a unit test and a doc test, and four test
/// binaries. Each process a test starts sleeps for `mark` seconds, a number
/// no other process on the machine is running with.
fn project(root: &Path) {
    let files = [
        (
            "Cargo.toml",
            "[package]\nname = \"runner-fixture\"\nversion = \"0.3.1\"\nedition = \"2021\"\n\
             [lib]\npath = \"lib.rs\"\n[workspace]\n",
        ),
        (
            "lib.rs",
            "/// ```\n/// assert_eq!(runner_fixture::two(), 2);\n/// ```\n\
             pub fn two() -> u32 { 2 }\n\
             #[test]\nfn unit() { assert_eq!(two(), 2); }\n",
        ),
        (
            "tests/passes.rs",
            // What cargo would give the binary, and RUST_TEST_THREADS=8.
            "#[test]\nfn cargo_variables() {\n\
             let dir = std::env::var(\"CARGO_MANIFEST_DIR\").unwrap();\n\
             assert_eq!(std::env::current_dir().unwrap(), std::path::PathBuf::from(&dir));\n\
             assert_eq!(std::env::var(\"CARGO_PKG_NAME\").unwrap(), \"runner-fixture\");\n\
             assert_eq!(std::env::var(\"CARGO_PKG_VERSION\").unwrap(), \"0.3.1\");\n\
             assert!(std::path::Path::new(&std::env::var(\"CARGO\").unwrap()).is_absolute());\n\
             assert_eq!(std::env::var(\"RUST_TEST_THREADS\").unwrap(), \"8\");\n}\n\
             #[test]\nfn another() {}\n",
        ),
        (
            "tests/fails.rs",
            "#[test]\nfn fails() { panic!(\"the fixture's failure\"); }\n",
        ),
        (
            "tests/leaves.rs",
            // In a process group of its own, as chromedriver is: only the
            // binary's session still holds it.
            "use std::os::unix::process::CommandExt;\n\
             #[test]\nfn leaves_a_process() {\n\
             std::process::Command::new(\"sleep\").arg(std::env::var(\"FIXTURE_MARK\").unwrap())\n\
             .process_group(0).spawn().unwrap();\n}\n",
        ),
        (
            "tests/hangs.rs",
            "#[test]\nfn hangs() {\n\
             let _child = std::process::Command::new(\"sleep\").arg(std::env::var(\"FIXTURE_MARK\").unwrap())\n\
             .spawn().unwrap();\n\
             // Past libtest's capture of print!, which a killed test never shows.\n\
             std::io::Write::write_all(&mut std::io::stdout(), b\"printed before the timeout\\n\").unwrap();\n\
             std::thread::sleep(std::time::Duration::from_secs(120));\n}\n",
        ),
    ];
    for (path, text) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    fs::create_dir_all(root.join("scripts")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/run-tests");
    fs::copy(script, root.join("scripts/run-tests")).unwrap();
}

/// The copy run by its interpreter, which only reads it: executed itself,
/// it failed now and then with "Text file busy", a process the other test
/// started meanwhile holding the copy this one was writing.
fn run_tests(root: &Path, mark: &str, args: &[&str]) -> Output {
    Command::new("/usr/bin/python3")
        .arg(root.join("scripts/run-tests"))
        .args(args)
        .current_dir(root)
        // The project's own target directory, whatever the caller's.
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env("FIXTURE_MARK", mark)
        .env_remove("RUST_TEST_THREADS")
        .output()
        .expect("run scripts/run-tests")
}

/// Kills what a failed run left with the mark when the test ends, passed
/// or not: a runner that failed to must not leave it to the machine.
struct Reaper<'a>(&'a str);

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        for process in running_with(self.0) {
            let pid = process.split(':').next().unwrap();
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

/// The processes whose command line holds `mark`: `pid: command line`.
fn running_with(mark: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.contains(&mark.as_bytes()) {
            let args = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push(format!("{}: {args}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn run_tests_runs_every_binary_names_the_failures_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    project(root);
    // Ten minutes and this process's id: no other sleep has it, and one
    // left by a failed runner ends by itself.
    let mark = format!("600.{:07}", std::process::id());
    let _reaper = Reaper(&mark);
    // 30 s: the doc test's job compiles its test too, which a loaded
    // machine can make slow; the hung binary sleeps 120 s.
    let out = run_tests(root, &mark, &["--jobs", "2", "--timeout", "30"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{context}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.contains(&"run-tests: 6 jobs (the test binaries and the doc tests), 2 at a time"),
        "{context}"
    );
    // Each binary's output whole, under its name: the failure's message,
    // and what the hung one printed before it was killed.
    assert!(stdout.contains("the fixture's failure"), "{context}");
    assert!(stdout.contains("printed before the timeout"), "{context}");
    // The process left by a binary that ended: killed and named.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("run-tests: killed what the binary left running: sleep (")),
        "{context}"
    );
    let summary = lines
        .iter()
        .find(|l| l.starts_with("run-tests: 6 jobs in "))
        .unwrap_or_else(|| panic!("no summary line\n{context}"));
    assert!(
        summary.ends_with("; 5 passed, 1 failed, 0 ignored; 2 jobs failed"),
        "{summary}"
    );
    // The failures, in the order they ended, each with how and the
    // command that runs it alone.
    let listed = lines
        .iter()
        .position(|l| *l == "run-tests: failed (each with the command that runs it alone):")
        .unwrap_or_else(|| panic!("no list of failures\n{context}"));
    let mut failures: Vec<(String, String)> = lines[listed + 1..]
        .chunks(2)
        .map(|pair| {
            let (label, how) = pair[0].trim().rsplit_once(": ").unwrap();
            let label = label.split(" (").next().unwrap();
            (format!("{label}: {how}"), pair[1].trim().to_string())
        })
        .collect();
    failures.sort();
    assert_eq!(
        failures,
        [
            (
                "tests/fails.rs: exit status 101".to_string(),
                "cargo test -p runner-fixture --test fails".to_string()
            ),
            (
                "tests/hangs.rs: killed after 30 s (--timeout)".to_string(),
                "cargo test -p runner-fixture --test hangs".to_string()
            ),
        ],
        "{context}"
    );
    assert_eq!(running_with(&mark), Vec::<String>::new());
}

#[test]
fn run_tests_refuses_bad_arguments_before_building() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let usage = "usage: scripts/run-tests [--jobs N] [--timeout SECONDS] [-- TEST-ARGS...]\n";
    for (args, said) in [
        (
            &["--jobs"][..],
            "--jobs needs a value: a whole number of at least 1",
        ),
        (
            &["--jobs=x"],
            "--jobs 'x' is not a whole number of at least 1",
        ),
        (
            &["--timeout", "0"],
            "--timeout '0' is not a whole number of at least 1",
        ),
        (&["--fast"], "unknown argument '--fast'"),
    ] {
        let out = run_tests(dir.path(), "0", args);
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
                out.stdout.len()
            ),
            (Some(2), format!("run-tests: {said}\n{usage}"), 0),
            "{args:?}"
        );
    }
    assert!(!dir.path().join("target").exists(), "nothing was built");
}
